//! Throwaway clusters in temporary folders that disappear with their owner, however it ends.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, SystemTime};

use crate::os;
use crate::process::Tool;
use crate::{Cluster, ClusterOptions, Error};

/// Name prefix of sandbox folders in the temporary folder.
const PREFIX: &str = "ecomind-sandbox-";
/// File in a sandbox folder naming the process that owns it and its reaper.
pub(crate) const OWNER_FILE: &str = "owner";
/// A sandbox folder without an owner file younger than this may still be starting up.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// The reaper: waits until its stdin reaches end of file (the sandbox was dropped, or its
/// process died), then stops the server at once and removes the folders.
/// Arguments: $1 pg_ctl, $2 data folder, $3 sandbox folder, $4 socket folder outside it (or empty).
const REAPER_SCRIPT: &str = r#"trap '' HUP INT TERM PIPE
while read -r _; do :; done
if [ -f "$2/postmaster.pid" ]; then "$1" stop -D "$2" -m immediate -w -s >/dev/null 2>&1; fi
rm -rf "$3"
if [ -n "$4" ]; then rm -rf "$4"; fi
"#;

/// Fills a sandbox's data folder (the path it must create) instead of initdb.
pub type Populate<'a> = &'a mut dyn FnMut(&Path) -> Result<(), Error>;

/// An ephemeral cluster in a temporary folder, stopped and removed when dropped, and also
/// when the owning process dies without dropping it (a static in a test binary, a panic
/// that aborts, SIGKILL).
///
/// A small reaper process (`sh`) reads a pipe that only this value holds; when the pipe
/// closes, the reaper stops the server (immediate shutdown) and removes the folder.
/// `Drop` closes the pipe and waits for the reaper, so after a drop the server and the
/// folder are gone. Creating a sandbox also removes leftovers of dead processes.
#[derive(Debug)]
pub struct Sandbox {
    cluster: Cluster,
    reaper: Option<Child>,
}

impl Sandbox {
    /// Creates and starts a sandbox cluster in a new folder under the temporary folder.
    pub fn start(opts: &ClusterOptions) -> Result<Sandbox, Error> {
        Sandbox::start_with(opts, None)
    }

    /// Like [`Sandbox::start`], but the data folder is first filled by `populate` (given the
    /// path it must create, e.g. by copying a stopped cluster there) instead of by initdb.
    /// The sandbox already guards the folder while `populate` runs, so nothing is left
    /// behind if it fails or the process dies.
    pub fn start_from(opts: &ClusterOptions, populate: Populate<'_>) -> Result<Sandbox, Error> {
        Sandbox::start_with(opts, Some(populate))
    }

    /// Starts a streaming replica (a hot standby) of this sandbox in a new sandbox, with
    /// server binaries alone (no pg_basebackup): a non-exclusive base backup taken with
    /// `pg_backup_start`/`pg_backup_stop` (`pg_start_backup`/`pg_stop_backup` before
    /// PostgreSQL 15) around a file copy, then `standby.signal` and `primary_conninfo` over
    /// this sandbox's unix socket. The primary must let its superuser replicate over the
    /// socket without a password ([`crate::Auth::Trust`]). `opts` are the standby's own;
    /// `primary_conninfo` is added to its settings.
    pub fn start_standby(&self, opts: &ClusterOptions) -> Result<Sandbox, Error> {
        let run_as = os::run_as()?;
        let modern = opts.binaries.major() >= 15;
        let (start, stop) = if modern {
            (
                "SELECT pg_backup_start('ecomind-standby', true)::text",
                "SELECT labelfile FROM pg_backup_stop(true)",
            )
        } else {
            (
                "SELECT pg_start_backup('ecomind-standby', true, false)::text",
                "SELECT labelfile FROM pg_stop_backup(false, true)",
            )
        };
        let backup_error = |what: &str, source: postgres::Error| Error::Postgres {
            action: format!("{what} the base backup of the standby"),
            socket_dir: self.cluster.socket_dir().to_path_buf(),
            source,
        };
        let mut populate = |data: &Path| -> Result<(), Error> {
            let mut primary = self.cluster.connect("postgres")?;
            primary
                .simple_query(start)
                .map_err(|e| backup_error("start", e))?;
            let copied = copy_tree(self.cluster.data_dir(), data, &run_as);
            let label: String = primary
                .query_one(stop, &[])
                .map_err(|e| backup_error("stop", e))?
                .get(0);
            copied?;
            for (name, text) in [("backup_label", label.as_str()), ("standby.signal", "")] {
                let path = data.join(name);
                fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
                os::own_file(&path, &run_as)?;
            }
            Ok(())
        };
        let conninfo = self.cluster.conninfo("postgres");
        let mut settings: Vec<(&str, &str)> = opts.settings.to_vec();
        settings.push(("primary_conninfo", conninfo.as_str()));
        settings.push(("hot_standby", "on"));
        let standby_opts = ClusterOptions {
            settings: &settings,
            ..opts.clone()
        };
        Sandbox::start_from(&standby_opts, &mut populate)
    }

    fn start_with(opts: &ClusterOptions, populate: Option<Populate<'_>>) -> Result<Sandbox, Error> {
        sweep();
        let run_as = os::run_as()?;
        let base = std::env::temp_dir();
        os::check_traversable(&base, &run_as)?;
        let root = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&base)
            .map_err(|e| Error::io("create a folder in", &base, e))?
            .keep();
        let root = fs::canonicalize(&root).unwrap_or(root);
        os::own_dir(&root, &run_as, 0o700)?;

        let cluster = Cluster::open(&root);
        let outside_socket_dir = if cluster.socket_dir().starts_with(&root) {
            PathBuf::new()
        } else {
            cluster.socket_dir().to_path_buf()
        };
        let reaper =
            Tool::new("sandbox reaper", Path::new("/bin/sh"), Path::new("/")).and_then(|tool| {
                tool.arg("-c")
                    .arg(REAPER_SCRIPT)
                    .arg("ecomind-sandbox-reaper")
                    .arg(opts.binaries.required("pg_ctl"))
                    .arg(cluster.data_dir())
                    .arg(&root)
                    .arg(&outside_socket_dir)
                    .spawn_piped()
            });
        let reaper = match reaper {
            Ok(child) => child,
            Err(error) => {
                let _ = fs::remove_dir_all(&root);
                return Err(error);
            }
        };
        // From here on, dropping `sandbox` (also on an early return) removes everything.
        let mut sandbox = Sandbox {
            cluster,
            reaper: Some(reaper),
        };
        sandbox.write_owner_file()?;
        if let Some(populate) = populate {
            populate(sandbox.cluster.data_dir())?;
        }
        sandbox.cluster = Cluster::ensure_running(&root, opts)?;
        Ok(sandbox)
    }

    /// The running cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The sandbox folder (removed with the sandbox).
    pub fn root(&self) -> &Path {
        self.cluster.root()
    }

    /// Stops the server cleanly (a shutdown checkpoint, so its files can be copied), runs
    /// `while_stopped`, then starts it again with `opts`.
    pub fn with_server_stopped<T>(
        &mut self,
        opts: &ClusterOptions,
        while_stopped: impl FnOnce(&Cluster) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.cluster.stop()?;
        let result = while_stopped(&self.cluster);
        self.cluster = Cluster::ensure_running(self.cluster.root(), opts)?;
        result
    }

    /// Records this process and the reaper, so a later sweep can tell whether both are gone.
    fn write_owner_file(&self) -> Result<(), Error> {
        let me = std::process::id();
        let reaper = self.reaper.as_ref().map_or(0, Child::id);
        let stamp = |pid: u32| os::process_info(pid).map_or(0, |info| info.start_time);
        let path = self.cluster.root().join(OWNER_FILE);
        let text = format!("{me} {}\n{reaper} {}\n", stamp(me), stamp(reaper));
        let mut file = fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io("write", &path, e))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut reaper) = self.reaper.take() {
            // Closing the pipe tells the reaper to stop the server and remove the folder.
            drop(reaper.stdin.take());
            let _ = reaper.wait();
        }
    }
}

/// Copies a running cluster's data folder for a base backup, giving every entry to the
/// server user. The server's own lock files are left out; files that vanish while being
/// copied (temporary files, statistics) are skipped, as pg_basebackup skips them.
fn copy_tree(from: &Path, to: &Path, run_as: &os::RunAs) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(|e| Error::io("create", to, e))?;
    os::own_dir(to, run_as, 0o700)?;
    let entries = fs::read_dir(from).map_err(|e| Error::io("read", from, e))?;
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if matches!(
            name.to_str(),
            Some("postmaster.pid" | "postmaster.opts" | "backup_label" | "standby.signal")
        ) {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            copy_tree(&source, &target, run_as)?;
        } else if kind.is_file() {
            match fs::copy(&source, &target) {
                Ok(_) => os::own_file(&target, run_as)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("copy", &source, e)),
            }
        }
    }
    Ok(())
}

/// Removes sandbox folders whose owner and reaper are both dead (best effort).
fn sweep() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let root = entry.path();
        let abandoned = match fs::read_to_string(root.join(OWNER_FILE)) {
            Ok(text) => !text.lines().any(owner_line_alive),
            Err(_) => entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age > ORPHAN_AGE),
        };
        if abandoned {
            let cluster = Cluster::open(&root);
            let _ = cluster.stop_immediately();
            let _ = cluster.destroy();
        }
    }
}

/// Whether a `pid start_time` line names a process that is still alive.
fn owner_line_alive(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let (Some(Ok(pid)), Some(Ok(start))) = (
        fields.next().map(str::parse::<u32>),
        fields.next().map(str::parse::<u64>),
    ) else {
        return false;
    };
    os::process_info(pid).is_some_and(|info| start == 0 || info.start_time == start)
}
