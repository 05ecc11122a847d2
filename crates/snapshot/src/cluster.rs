//! A PostgreSQL cluster in a folder of its own: created on first use, started when needed, reused when running.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use crate::os::{self, RunAs};
use crate::process::{self, Tool};
use crate::{Binaries, Error};

/// The database superuser every cluster is created with.
const SUPERUSER: &str = "postgres";
/// The port of socket-only clusters; each has its own socket folder, so they never clash.
const DEFAULT_PORT: u16 = 5432;
/// Settings file that this crate rewrites at every start; postgresql.conf includes it.
const MANAGED_CONF: &str = "ecomind.conf";
/// Records the authentication method chosen at creation.
const AUTH_MARKER: &str = "auth-method";
/// Lock file that serializes creating, starting and stopping a cluster.
const LOCK_FILE: &str = "lock";
/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long a start or a stop may take before it is reported as an error.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the children of a killed server to notice and exit.
const ORPHAN_WAIT: Duration = Duration::from_secs(10);

/// Where a cluster listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Unix socket only (`listen_addresses = ''`), in the cluster's private socket folder.
    Socket,
    /// The unix socket and also 127.0.0.1 on this port; 0 picks a free port (kept across restarts).
    Tcp {
        /// The TCP port, or 0 for any free one.
        port: u16,
    },
}

/// How clients authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone who can reach the socket (or 127.0.0.1) is let in.
    Trust,
    /// scram-sha-256 for every connection; this is the superuser's password, set at creation
    /// through a 0600 file (never on a command line).
    Password(SecretString),
}

impl Auth {
    fn method(&self) -> &'static str {
        match self {
            Auth::Trust => "trust",
            Auth::Password(_) => "scram-sha-256",
        }
    }
}

/// How to create and run a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions<'a> {
    /// The server binaries.
    pub binaries: &'a Binaries,
    /// Where the server listens.
    pub listen: Listen,
    /// How clients authenticate (fixed when the cluster is created).
    pub auth: Auth,
    /// false for throwaway clusters: fsync=off, synchronous_commit=off, full_page_writes=off,
    /// and initdb skips its final sync.
    pub durable: bool,
    /// Extra postgresql.conf settings, e.g. `("ssl", "on")`, `("ssl_cert_file", "/abs/path")`;
    /// applied at every start.
    pub settings: &'a [(&'a str, &'a str)],
}

/// A cluster in a folder: `root/data` (PGDATA), a socket folder (`root/run`, or a short
/// folder under /tmp when that path would exceed the unix socket path limit) and the
/// server log `root/postgres.log`.
#[derive(Debug, Clone)]
pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    password: Option<SecretString>,
}

/// Where a cluster that should live in `preferred` can live. Usually `preferred` itself. When the
/// tool runs as root, the server runs as an unprivileged user; if that user cannot enter a folder
/// above `preferred` (a home folder with mode 0700), the cluster goes to
/// `/var/tmp/ecomind-db/<preferred, flattened>` instead, which survives reboots, and the caller
/// should say so. The answer depends only on `preferred` and the file system, so every command
/// (start, stop, destroy) finds the same place.
pub fn placement(preferred: &Path) -> Result<PathBuf, Error> {
    let run_as = os::run_as()?;
    match os::check_traversable(preferred.parent().unwrap_or(preferred), &run_as) {
        Ok(()) => Ok(preferred.to_path_buf()),
        Err(Error::NotTraversable { .. }) => {
            let flat: String = preferred
                .to_string_lossy()
                .trim_matches('/')
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            Ok(Path::new("/var/tmp/ecomind-db").join(flat))
        }
        Err(e) => Err(e),
    }
}

impl Cluster {
    /// Makes sure the cluster in `root` exists and runs, and returns it.
    ///
    /// Idempotent and safe when several threads or processes call it at once (they
    /// serialize on a lock file in `root`): creates the cluster with initdb on first use
    /// (superuser `postgres`, UTF8, locale C, authentication per `opts`), starts it when
    /// it is not running (a stale `postmaster.pid` left by a crash is removed first), and
    /// reuses it otherwise. Settings are rewritten every time and take effect at the next
    /// start; authentication is fixed at creation and a different request is an error.
    pub fn ensure_running(root: &Path, opts: &ClusterOptions) -> Result<Cluster, Error> {
        let run_as = os::run_as()?;
        let root = prepare_root(root, &run_as)?;
        let lock = lock(&root, true)?;

        let mut cluster = Cluster::open(&root);
        if let Auth::Password(password) = &opts.auth {
            cluster.password = Some(password.clone());
        }
        cluster.prepare_socket_dir(&run_as)?;
        if !cluster.data.join("PG_VERSION").is_file() {
            cluster.initdb(opts, &run_as)?;
        }
        cluster.check_auth(&opts.auth)?;
        if cluster.is_running() {
            cluster.port = read_pid_file_port(&cluster.data).unwrap_or(cluster.port);
        } else {
            cluster.port = cluster.choose_port(opts.listen)?;
            cluster.write_settings(opts, &run_as)?;
            cluster.remove_stale_locks();
            cluster.start(opts.binaries)?;
        }
        // The lock is released when `lock` is dropped here.
        drop(lock);
        Ok(cluster)
    }

    /// The cluster in `root`, as it is: no side effects. For `stop`, `destroy` and status.
    pub fn open(root: &Path) -> Cluster {
        let root = absolute(root);
        let data = root.join("data");
        let socket_dir = socket_dir_for(&root);
        let port = read_pid_file_port(&data)
            .filter(|_| running_pid(&data).is_some())
            .or_else(|| read_managed_port(&data))
            .unwrap_or(DEFAULT_PORT);
        Cluster {
            root,
            data,
            socket_dir,
            port,
            password: None,
        }
    }

    /// The same cluster, connecting with this superuser password (for clusters created
    /// with [`Auth::Password`] and reached through [`Cluster::open`]).
    pub fn with_password(mut self, password: SecretString) -> Cluster {
        self.password = Some(password);
        self
    }

    /// Whether a server is running on this cluster's data folder.
    pub fn is_running(&self) -> bool {
        self.running_pid().is_some()
    }

    /// The process id of the running server (the postmaster), if any.
    pub fn server_pid(&self) -> Option<u32> {
        self.running_pid()
    }

    /// Stops the server (fast shutdown: sessions are ended, data is flushed); fine if not running.
    pub fn stop(&self) -> Result<(), Error> {
        let _lock = self.lock_if_present()?;
        self.signal_and_wait(rustix::process::Signal::INT)
    }

    /// Stops the server without a shutdown checkpoint (it recovers at the next start);
    /// for throwaway clusters. Fine if not running.
    pub fn stop_immediately(&self) -> Result<(), Error> {
        let _lock = self.lock_if_present()?;
        self.signal_and_wait(rustix::process::Signal::QUIT)
    }

    /// Stops the server, then removes the cluster folder (and its socket folder); fine if absent.
    ///
    /// As a guard against a wrong path, a folder holding anything a cluster does not
    /// create is refused and left alone.
    pub fn destroy(self) -> Result<(), Error> {
        if let Some(stranger) = foreign_entry(&self.root) {
            return Err(Error::NotACluster {
                root: self.root.clone(),
                entry: stranger,
            });
        }
        self.stop()?;
        remove_tree(&self.root)?;
        if !self.socket_dir.starts_with(&self.root) {
            remove_tree(&self.socket_dir)?;
        }
        Ok(())
    }

    /// The cluster folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data folder (PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server log file.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// The folder holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's port: the TCP port, and the number in the unix socket's file name.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database superuser, `postgres`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// A libpq key/value connection string over the unix socket
    /// (`host=<socket dir> port=<port> user=postgres dbname=<dbname>`), without password.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_value(SUPERUSER),
            conninfo_value(dbname)
        )
    }

    /// A `postgres` crate configuration for `dbname` over the unix socket, with the
    /// password when the cluster has one.
    pub fn client_config(&self, dbname: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("ecomind-snapshot");
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        config
    }

    /// Connects to `dbname` as the superuser over the unix socket.
    pub fn connect(&self, dbname: &str) -> Result<postgres::Client, Error> {
        self.client_config(dbname)
            .connect(postgres::NoTls)
            .map_err(|source| {
                self.postgres_error(format!("connect to database {dbname:?}"), source)
            })
    }

    /// Creates database `name` unless it exists (safe when callers race).
    pub fn ensure_database(&self, name: &str) -> Result<(), Error> {
        let mut client = self.connect("postgres")?;
        let exists = |client: &mut postgres::Client| {
            client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .map(|row| row.is_some())
                .map_err(|source| self.postgres_error(format!("look up database {name:?}"), source))
        };
        if exists(&mut client)? {
            return Ok(());
        }
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        match client.batch_execute(&sql) {
            Ok(()) => Ok(()),
            // Another caller created it between our check and our CREATE.
            Err(source) if is_duplicate(&source) && exists(&mut client)? => Ok(()),
            Err(source) => Err(self.postgres_error(format!("create database {name:?}"), source)),
        }
    }

    /// Runs a client program of `binaries` (`psql`, `pg_dump`, `pg_restore`...) against
    /// `dbname` on this cluster and returns its standard output.
    ///
    /// The program gets `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE` (and `PGPASSWORD`
    /// when the cluster has a password) in a controlled environment, runs as this
    /// process's user in its working folder, and never reads a `.psqlrc`. Pass no secret in `args`.
    pub fn run_client<I, S>(
        &self,
        binaries: &Binaries,
        program: &str,
        args: I,
        dbname: &str,
    ) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let path = binaries.tool(program).ok_or_else(|| Error::ToolMissing {
            tool: program.to_owned(),
            dir: binaries.dir().to_path_buf(),
        })?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let mut tool = Tool::client(program, &path, &cwd)
            .args(args)
            .env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", SUPERUSER)
            .env("PGDATABASE", dbname)
            .env("PGAPPNAME", "ecomind-snapshot")
            .env("PSQLRC", "/dev/null");
        if let Some(password) = &self.password {
            tool = tool.env("PGPASSWORD", password.expose_secret());
        }
        tool.run()
    }

    /// Takes the cluster's lock when its lock file exists (without creating anything).
    fn lock_if_present(&self) -> Result<Option<fs::File>, Error> {
        if self.root.join(LOCK_FILE).exists() {
            lock(&self.root, false)
        } else {
            Ok(None)
        }
    }

    fn postgres_error(&self, action: String, source: postgres::Error) -> Error {
        Error::Postgres {
            action,
            socket_dir: self.socket_dir.clone(),
            source,
        }
    }

    fn running_pid(&self) -> Option<u32> {
        running_pid(&self.data)
    }

    /// Creates the socket folder with mode 0700, owned by the server user.
    fn prepare_socket_dir(&self, run_as: &RunAs) -> Result<(), Error> {
        let dir = &self.socket_dir;
        match fs::symlink_metadata(dir) {
            Ok(meta) => {
                let expected = run_as
                    .ids()
                    .map_or_else(|| rustix::process::geteuid().as_raw(), |(uid, _)| uid);
                if !meta.is_dir() || meta.uid() != expected {
                    return Err(Error::ForeignOwner {
                        path: dir.clone(),
                        owner: meta.uid(),
                        expected,
                    });
                }
                Ok(())
            }
            Err(_) => {
                fs::create_dir(dir).map_err(|e| Error::io("create directory", dir, e))?;
                os::own_dir(dir, run_as, 0o700)
            }
        }
    }

    /// Runs initdb into a scratch folder and renames it into place, so a crash never
    /// leaves a half-made data folder where a finished one is expected.
    pub(crate) fn initdb(&self, opts: &ClusterOptions, run_as: &RunAs) -> Result<(), Error> {
        let scratch = self.root.join("data.init");
        remove_tree(&scratch)?;
        let mut tool = Tool::new("initdb", &opts.binaries.required("initdb"), &self.root)?
            .arg("-D")
            .arg(&scratch)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
            .arg(format!("--auth={}", opts.auth.method()));
        if !opts.durable {
            tool = tool.arg("--no-sync");
        }
        let pwfile = self.root.join("initdb.pw");
        if let Auth::Password(password) = &opts.auth {
            write_secret_file(&pwfile, password, run_as)?;
            tool = tool.arg(format!("--pwfile={}", pwfile.display()));
        }
        let result = tool.run();
        if pwfile.exists() {
            fs::remove_file(&pwfile).map_err(|e| Error::io("remove", &pwfile, e))?;
        }
        result?;
        let conf = scratch.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| Error::io("open", &conf, e))?;
        writeln!(
            file,
            "\n# Added by ecomind-snapshot: settings it manages, rewritten at every start.\ninclude_if_exists = '{MANAGED_CONF}'"
        )
        .map_err(|e| Error::io("write", &conf, e))?;
        let marker = self.root.join(AUTH_MARKER);
        fs::write(&marker, opts.auth.method()).map_err(|e| Error::io("write", &marker, e))?;
        fs::rename(&scratch, &self.data).map_err(|e| Error::io("rename into place", &scratch, e))
    }

    fn check_auth(&self, auth: &Auth) -> Result<(), Error> {
        let marker = self.root.join(AUTH_MARKER);
        let Ok(existing) = fs::read_to_string(&marker) else {
            // Created by something else; nothing to compare with.
            return Ok(());
        };
        let existing = match existing.trim() {
            "trust" => "trust",
            "scram-sha-256" => "scram-sha-256",
            _ => return Ok(()),
        };
        if existing == auth.method() {
            Ok(())
        } else {
            Err(Error::AuthMismatch {
                root: self.root.clone(),
                existing,
                requested: auth.method(),
            })
        }
    }

    fn choose_port(&self, listen: Listen) -> Result<u16, Error> {
        match listen {
            Listen::Socket => Ok(DEFAULT_PORT),
            Listen::Tcp { port } if port != 0 => Ok(port),
            Listen::Tcp { .. } => {
                let previous = fs::read_to_string(self.data.join(MANAGED_CONF))
                    .ok()
                    .filter(|text| text.contains("listen_addresses = '127.0.0.1'"))
                    .and_then(|_| read_managed_port(&self.data));
                match previous {
                    // Keep the port across restarts while it is free.
                    Some(port) if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() => {
                        Ok(port)
                    }
                    _ => free_port(),
                }
            }
        }
    }

    /// Writes the managed settings file, owned by the server user.
    fn write_settings(&self, opts: &ClusterOptions, run_as: &RunAs) -> Result<(), Error> {
        let mut text = String::from("# Managed by ecomind-snapshot; rewritten at every start.\n");
        let listen = match opts.listen {
            Listen::Socket => "",
            Listen::Tcp { .. } => "127.0.0.1",
        };
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", listen.to_owned()),
            ("port", self.port.to_string()),
            (
                "unix_socket_directories",
                self.socket_dir.to_string_lossy().into_owned(),
            ),
            ("unix_socket_permissions", "0700".to_owned()),
        ];
        if !opts.durable {
            for name in ["fsync", "synchronous_commit", "full_page_writes"] {
                settings.push((name, "off".to_owned()));
            }
        }
        settings.extend(
            opts.settings
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        for (name, value) in &settings {
            let _ = writeln!(text, "{name} = {}", conf_value(name, value)?);
        }
        let path = self.data.join(MANAGED_CONF);
        let scratch = self.data.join(format!("{MANAGED_CONF}.new"));
        fs::write(&scratch, text).map_err(|e| Error::io("write", &scratch, e))?;
        os::own_file(&scratch, run_as)?;
        fs::rename(&scratch, &path).map_err(|e| Error::io("rename into place", &scratch, e))
    }

    /// Removes `postmaster.pid` and socket lock files whose process is not this cluster's
    /// server, after waiting (bounded) for children of a killed server to exit: while they
    /// hold its shared memory, a new server refuses to start.
    fn remove_stale_locks(&self) {
        let deadline = Instant::now() + ORPHAN_WAIT;
        while !os::postgres_processes_in(&self.data).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid_file = self.data.join("postmaster.pid");
        if read_pid(&pid_file).is_some_and(|pid| !os::is_postmaster_of(pid, &self.data)) {
            let _ = fs::remove_file(&pid_file);
        }
        let Ok(entries) = fs::read_dir(&self.socket_dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(socket) = name.strip_suffix(".lock") else {
                continue;
            };
            if !name.starts_with(".s.PGSQL.") {
                continue;
            }
            if read_pid(&entry.path()).is_some_and(|pid| !os::is_postmaster_of(pid, &self.data)) {
                let _ = fs::remove_file(entry.path());
                let _ = fs::remove_file(self.socket_dir.join(socket));
            }
        }
    }

    fn start(&self, binaries: &Binaries) -> Result<(), Error> {
        let log = self.log_file();
        let result = Tool::new("pg_ctl start", &binaries.required("pg_ctl"), &self.root)?
            .arg("start")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-s", "-t", &SERVER_TIMEOUT.as_secs().to_string()])
            .run();
        match result {
            Ok(_) => Ok(()),
            Err(Error::Tool {
                tool,
                status,
                stderr,
            }) => {
                let log_text = fs::read_to_string(&log).unwrap_or_default();
                let log_tail = process::tail(&log_text, 1500);
                Err(Error::Tool {
                    tool,
                    status,
                    stderr: format!("{stderr}; server log {}: {log_tail}", log.display()),
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Sends `signal` to the postmaster and waits until it has exited.
    fn signal_and_wait(&self, signal: rustix::process::Signal) -> Result<(), Error> {
        let Some(pid) = self.running_pid() else {
            return Ok(());
        };
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(raw) = raw {
            match rustix::process::kill_process(raw, signal) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => return Err(Error::io("signal the server of", &self.data, e.into())),
            }
        }
        let deadline = Instant::now() + SERVER_TIMEOUT;
        while os::is_alive(pid) {
            if Instant::now() > deadline {
                return Err(Error::StopTimeout {
                    pid,
                    seconds: SERVER_TIMEOUT.as_secs(),
                    log: self.log_file(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Waits for the exclusive lock on `root/lock` and returns the open file that holds it
/// (released when dropped); `None` if the file is absent and `create` is false.
fn lock(root: &Path, create: bool) -> Result<Option<fs::File>, Error> {
    let path = root.join(LOCK_FILE);
    let file = match fs::OpenOptions::new()
        .create(create)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io("lock", &path, e.into()))?;
    Ok(Some(file))
}

/// Creates `root` if needed, checks the server user can reach it, and returns its absolute path.
fn prepare_root(root: &Path, run_as: &RunAs) -> Result<PathBuf, Error> {
    let root = absolute(root);
    os::check_traversable(root.parent().unwrap_or(&root), run_as)?;
    let created = !root.exists();
    fs::create_dir_all(&root).map_err(|e| Error::io("create directory", &root, e))?;
    let root = fs::canonicalize(&root).map_err(|e| Error::io("resolve", &root, e))?;
    let meta = fs::metadata(&root).map_err(|e| Error::io("read", &root, e))?;
    let owner_ok = run_as.ids().is_none_or(|(uid, _)| meta.uid() == uid);
    if created || !owner_ok {
        os::own_dir(&root, run_as, 0o700)?;
    }
    os::check_traversable(&root, run_as)?;
    Ok(root)
}

/// The first entry of `root` that a cluster or sandbox does not create, if any.
fn foreign_entry(root: &Path) -> Option<String> {
    const OURS: &[&str] = &[
        "data",
        "data.init",
        "run",
        LOCK_FILE,
        "postgres.log",
        AUTH_MARKER,
        "initdb.pw",
        crate::sandbox::OWNER_FILE,
    ];
    fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| !OURS.contains(&name.as_str()))
}

/// `path` made absolute: resolved when it exists, joined to the working folder otherwise.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(resolved) = fs::canonicalize(path) {
        return resolved;
    }
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    }
}

/// `root/run`, or `/tmp/ecomind-pg-<hash of root>` when a socket path in `root/run` would be too long.
pub(crate) fn socket_dir_for(root: &Path) -> PathBuf {
    let preferred = root.join("run");
    let longest_socket_name = "/.s.PGSQL.65535".len();
    if preferred.as_os_str().len() + longest_socket_name <= MAX_SOCKET_PATH {
        return preferred;
    }
    PathBuf::from(format!(
        "/tmp/ecomind-pg-{:016x}",
        fnv1a(root.as_os_str().as_encoded_bytes())
    ))
}

/// FNV-1a: a stable hash (unlike std's), so every process derives the same socket folder.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The pid in `data/postmaster.pid` when that process is this cluster's running server.
fn running_pid(data: &Path) -> Option<u32> {
    read_pid(&data.join("postmaster.pid")).filter(|pid| os::is_postmaster_of(*pid, data))
}

/// Line 4 of postmaster.pid: the port the server listens on.
fn read_pid_file_port(data: &Path) -> Option<u16> {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .nth(3)?
        .trim()
        .parse()
        .ok()
}

/// The port in the managed settings file.
fn read_managed_port(data: &Path) -> Option<u16> {
    let text = fs::read_to_string(data.join(MANAGED_CONF)).ok()?;
    text.lines().rev().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == "port").then(|| value.trim().trim_matches('\'').parse().ok())?
    })
}

/// A TCP port on 127.0.0.1 that is free right now.
fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::io("find a free port on", "127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("find a free port on", "127.0.0.1", e))?
        .port();
    Ok(port)
}

/// Writes a secret into a new 0600 file readable by the server user.
fn write_secret_file(path: &Path, secret: &SecretString, run_as: &RunAs) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    os::own_file(path, run_as)?;
    file.write_all(secret.expose_secret().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| Error::io("write", path, e))
}

fn remove_tree(path: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// A postgresql.conf value, quoted; refuses names and values that could break out of their line.
fn conf_value(name: &str, value: &str) -> Result<String, Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::InvalidSetting {
            name: name.to_owned(),
            reason: "names contain only letters, digits, `_` and `.`",
        });
    }
    if value.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
        return Err(Error::InvalidSetting {
            name: name.to_owned(),
            reason: "values cannot contain line breaks or NUL",
        });
    }
    Ok(format!(
        "'{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// A libpq conninfo value, quoted when needed.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An SQL identifier, double-quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_duplicate(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == postgres::error::SqlState::DUPLICATE_DATABASE
            || *code == postgres::error::SqlState::UNIQUE_VIOLATION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_roots_get_a_short_socket_folder() {
        let short = Path::new("/tmp/x");
        assert_eq!(socket_dir_for(short), Path::new("/tmp/x/run"));
        let long = PathBuf::from(format!("/tmp/{}", "a".repeat(120)));
        let dir = socket_dir_for(&long);
        assert!(
            dir.to_string_lossy().starts_with("/tmp/ecomind-pg-"),
            "{}",
            dir.display()
        );
        assert_eq!(dir, socket_dir_for(&long));
    }

    #[test]
    fn quotes_conf_and_conninfo_values() {
        assert_eq!(conf_value("ssl", "on").unwrap(), "'on'");
        assert_eq!(conf_value("x", r"it's \ here").unwrap(), r"'it''s \\ here'");
        assert!(conf_value("bad name", "x").is_err());
        assert!(conf_value("x", "a\nb").is_err());
        assert_eq!(conninfo_value("/tmp/run"), "/tmp/run");
        assert_eq!(conninfo_value("a b'c"), r"'a b\'c'");
        assert_eq!(conninfo_value(""), "''");
    }
}
