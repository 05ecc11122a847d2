//! The one error type of ecomind-snapshot.
//!
//! A variant with a `source` does not repeat it in its message: print the whole chain
//! (anyhow's `{:#}`) to see the cause.

use std::path::PathBuf;

/// Everything that can go wrong while locating binaries or running a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something about the developer's local dev cluster failed; the cause follows.
    #[error("{context}")]
    DevCluster {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; looked in: {looked}; \
         install Debian's postgresql-15 (`apt-get install postgresql-15`) or set the PostgreSQL bin dir"
    )]
    BinariesNotFound {
        /// Every place that was tried, with the reason it did not fit.
        looked: String,
    },
    /// A subprocess could not be started at all.
    #[error("could not run {tool} ({path}); check that the PostgreSQL binaries are installed and executable")]
    Spawn {
        /// Name of the tool, e.g. `initdb`.
        tool: String,
        /// The program that was executed.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A client program is not among the located binaries.
    #[error(
        "{tool} is not in {dir} (server-only builds lack it); install Debian's postgresql-client-15 \
         or set the bin dir to a full PostgreSQL installation"
    )]
    ToolMissing {
        /// The program asked for, e.g. `pg_restore`.
        tool: String,
        /// The bin folder that was searched.
        dir: PathBuf,
    },
    /// A subprocess ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// Name of the tool, e.g. `pg_ctl start`.
        tool: String,
        /// Its exit status, as text.
        status: String,
        /// The last lines of its standard error (and, for a server start, of the server log).
        stderr: String,
    },
    /// The server did not exit after it was told to stop.
    #[error("the server (pid {pid}) is still running {seconds} s after it was told to stop; see {log}, then stop it by hand")]
    StopTimeout {
        /// The postmaster's pid.
        pid: u32,
        /// How long we waited.
        seconds: u64,
        /// The server log.
        log: PathBuf,
    },
    /// A file system operation failed.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done, e.g. `create directory`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Running as root needs an unprivileged OS user for the server, and it is missing.
    #[error(
        "running as root, but the unprivileged OS user `{user}` that must own and run the server was not found; \
         create it (`adduser --system --group {user}`, or install Debian's postgresql-15) or run as a non-root user"
    )]
    NoServerUser {
        /// The user name that was looked up.
        user: String,
    },
    /// A folder on the way to the cluster cannot be entered by the server user.
    #[error(
        "the server runs as OS user `{user}`, which cannot enter {path}; \
         put the cluster somewhere else or make that folder traversable (`chmod o+x {path}`)"
    )]
    NotTraversable {
        /// The server user.
        user: String,
        /// The first folder that user cannot enter.
        path: PathBuf,
    },
    /// A folder that the cluster uses belongs to somebody else.
    #[error("{path} exists but belongs to uid {owner}, not to the server user (uid {expected}); remove it and try again")]
    ForeignOwner {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The uid the server runs as.
        expected: u32,
    },
    /// `destroy` was asked to remove a folder that holds more than a cluster.
    #[error("refusing to remove {root}: it holds {entry:?}, which is not part of a cluster; check the path, or remove the folder by hand")]
    NotACluster {
        /// The folder.
        root: PathBuf,
        /// An entry that a cluster does not create.
        entry: String,
    },
    /// The cluster was created with a different authentication method than requested.
    #[error(
        "the cluster in {root} was created with {existing} authentication, but {requested} was requested; \
         use the same setting, or destroy the cluster so it is created anew"
    )]
    AuthMismatch {
        /// The cluster folder.
        root: PathBuf,
        /// What the cluster has.
        existing: &'static str,
        /// What the caller asked for.
        requested: &'static str,
    },
    /// A configuration setting or value that cannot be written safely into postgresql.conf.
    #[error("invalid server setting {name:?}: {reason}")]
    InvalidSetting {
        /// The setting name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Output of a tool that could not be understood.
    #[error(
        "could not understand the output of {tool}: {output:?}; check the PostgreSQL installation"
    )]
    UnexpectedOutput {
        /// Name of the tool.
        tool: String,
        /// What it printed.
        output: String,
    },
    /// Connecting to or querying the cluster failed.
    #[error("{action} on the cluster at {socket_dir} failed")]
    Postgres {
        /// What was being done, e.g. `create database "x"`.
        action: String,
        /// The cluster's socket folder.
        socket_dir: PathBuf,
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
    /// The reaper process of a sandbox could not be set up.
    #[error("could not set up the sandbox reaper: {reason}")]
    Reaper {
        /// What went wrong.
        reason: String,
    },
    /// The dump path does not exist.
    #[error("{path} does not exist; give the path of a pg_dump file (custom, tar, plain SQL, gzipped SQL) or directory archive")]
    DumpMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The dump file is empty.
    #[error("{path} is empty, so it holds no dump; take the dump again (pg_dump -Fc)")]
    DumpEmpty {
        /// The file.
        path: PathBuf,
    },
    /// A folder that is not a directory archive.
    #[error("{path} is a folder without toc.dat, so it is not a pg_dump directory archive; give the folder pg_dump -Fd wrote, or a dump file")]
    DumpDirectoryWithoutToc {
        /// The folder.
        path: PathBuf,
    },
    /// Bytes that are none of pg_dump's formats.
    #[error("{path} is not a pg_dump dump: found {found}; give a file written by pg_dump (custom, directory, tar or plain SQL, optionally gzipped)")]
    DumpUnrecognized {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// A dump that ends before its end.
    #[error("{path} is truncated: {detail}; copy or take the dump again")]
    DumpTruncated {
        /// The file.
        path: PathBuf,
        /// Where it ends.
        detail: String,
    },
    /// An archive newer than every pg_restore available.
    #[error("{path} is a pg_dump archive of version {archive} (pg_dump {pg_dump}), newer than the newest pg_restore here ({pg_restore}, which reads archives up to 1.{readable}); install the PostgreSQL client of the dump's version (e.g. Debian's postgresql-client-{needed}) or point the bin dir at a full installation of it")]
    ArchiveTooNew {
        /// The dump.
        path: PathBuf,
        /// Its archive version.
        archive: String,
        /// The pg_dump that wrote it.
        pg_dump: String,
        /// The newest pg_restore found.
        pg_restore: String,
        /// The newest archive minor version it reads.
        readable: u8,
        /// The major version whose client would read it.
        needed: String,
    },
    /// No pg_restore or psql anywhere.
    #[error("no {tool} found in any PostgreSQL installation ({looked}); install Debian's postgresql-client-15 or point the bin dir at a full PostgreSQL installation")]
    NoClient {
        /// `pg_restore` or `psql`.
        tool: String,
        /// The folders searched.
        looked: String,
    },
    /// The major asked for is not among the installations found.
    #[error("PostgreSQL {major} is not installed here (found {found}); install its server (e.g. Debian's postgresql-{major}) or set ECOMIND_DB_BIN_DIR to its bin folder, or ask for one of the majors found")]
    MajorNotInstalled {
        /// The major asked for.
        major: u32,
        /// The majors found, newest first, or `none`.
        found: String,
    },
    /// The major asked for is older than the dump's.
    #[error("the dump comes from PostgreSQL {source_major}, and PostgreSQL {major} is older: pg_dump output is only supported into the same or a newer major; ask for {source_major} or newer")]
    MajorOlderThanDump {
        /// The major asked for.
        major: u32,
        /// The dump's major.
        source_major: u32,
    },
    /// Restoring the dump failed.
    #[error("restoring {path} failed: {detail}")]
    RestoreFailed {
        /// The dump.
        path: PathBuf,
        /// The tool's message.
        detail: String,
    },
    /// The restore was cancelled by its caller.
    #[error("the restore was cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
