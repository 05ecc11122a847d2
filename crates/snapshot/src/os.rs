//! Facts about the operating system: who runs the server, which processes are alive, who may enter a folder.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Error;

/// The OS user that owns the data directory and runs the server when this process is root.
pub(crate) const SERVER_USER: &str = "postgres";

/// Whom subprocesses run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// This process's own user (not root).
    Current,
    /// We are root; tools run as this unprivileged user.
    User {
        /// Its name.
        name: String,
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
    },
}

impl RunAs {
    /// The uid/gid that owns cluster folders, if it must be changed from ours.
    pub(crate) fn ids(&self) -> Option<(u32, u32)> {
        match self {
            RunAs::Current => None,
            RunAs::User { uid, gid, .. } => Some((*uid, *gid)),
        }
    }
}

/// Decides (once per process) whom subprocesses run as.
pub(crate) fn run_as() -> Result<RunAs, Error> {
    static RUN_AS: OnceLock<Option<RunAs>> = OnceLock::new();
    let found = RUN_AS.get_or_init(|| {
        if !rustix::process::geteuid().is_root() {
            return Some(RunAs::Current);
        }
        lookup_user(SERVER_USER).map(|(uid, gid)| RunAs::User {
            name: SERVER_USER.to_owned(),
            uid,
            gid,
        })
    });
    found.clone().ok_or_else(|| Error::NoServerUser {
        user: SERVER_USER.to_owned(),
    })
}

/// Looks a user up in /etc/passwd, then through NSS with `getent`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    if let Ok(text) = fs::read_to_string("/etc/passwd") {
        if let Some(ids) = parse_passwd(&text, name) {
            return Some(ids);
        }
    }
    // `getent` consults NSS (LDAP, sssd...). It only reads, so it needs none of the
    // environment control that the PostgreSQL tools get from `process`.
    let out = std::process::Command::new("getent")
        .arg("passwd")
        .arg(name)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    parse_passwd(&String::from_utf8_lossy(&out.stdout), name)
}

fn parse_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Gives `path` to the server user (when root) and sets its mode.
pub(crate) fn own_dir(path: &Path, run_as: &RunAs, mode: u32) -> Result<(), Error> {
    if let Some((uid, gid)) = run_as.ids() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io("change the owner of", path, e))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions of", path, e))
}

/// Gives a file to the server user (when root).
pub(crate) fn own_file(path: &Path, run_as: &RunAs) -> Result<(), Error> {
    if let Some((uid, gid)) = run_as.ids() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io("change the owner of", path, e))?;
    }
    Ok(())
}

/// Checks that the server user can enter every existing ancestor of `path` (and `path` itself).
pub(crate) fn check_traversable(path: &Path, run_as: &RunAs) -> Result<(), Error> {
    let RunAs::User { name, uid, gid } = run_as else {
        return Ok(());
    };
    // Ancestors from the top down, so the error names the first folder that blocks.
    let mut chain: Vec<&Path> = path.ancestors().collect();
    chain.reverse();
    for dir in chain {
        let Ok(meta) = fs::metadata(dir) else {
            // Not created yet: we will create it and give it to the server user.
            break;
        };
        let mode = meta.mode();
        let allowed = if meta.uid() == *uid {
            mode & 0o100 != 0
        } else if meta.gid() == *gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !allowed {
            return Err(Error::NotTraversable {
                user: name.clone(),
                path: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// What /proc says about a process.
pub(crate) struct ProcessInfo {
    /// `comm`: the executable's name, at most 15 bytes.
    pub(crate) comm: String,
    /// Start time in clock ticks since boot; with the pid it names one process for good.
    pub(crate) start_time: u64,
}

/// Reads a live (not zombie) process's name and start time.
pub(crate) fn process_info(pid: u32) -> Option<ProcessInfo> {
    if pid == 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    let state = rest.first()?;
    if *state == "Z" || *state == "X" || *state == "x" {
        return None;
    }
    let start_time = rest.get(19)?.parse().ok()?;
    Some(ProcessInfo { comm, start_time })
}

/// Whether a process with this pid is alive (zombies count as dead).
pub(crate) fn is_alive(pid: u32) -> bool {
    process_info(pid).is_some()
}

/// The working directory of a process, when we may read it.
pub(crate) fn process_cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Whether `pid` is a postmaster serving `data_dir` (it chdirs into its data directory).
pub(crate) fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    let Some(info) = process_info(pid) else {
        return false;
    };
    match (process_cwd(pid), fs::canonicalize(data_dir)) {
        (Some(cwd), Ok(data)) => cwd == data,
        // Without access to its cwd, trust the name: a reused pid rarely names a postgres.
        _ => info.comm == "postgres",
    }
}

/// Live `postgres` processes whose working folder is `data_dir`: a server and its
/// children, or children left behind by a server that was killed.
pub(crate) fn postgres_processes_in(data_dir: &Path) -> Vec<u32> {
    let Ok(data) = fs::canonicalize(data_dir) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_info(*pid).is_some_and(|info| info.comm == "postgres"))
        .filter(|pid| process_cwd(*pid).is_some_and(|cwd| cwd == data))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let text = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(text, "postgres"), Some((101, 104)));
        assert_eq!(parse_passwd(text, "nobody"), None);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(0));
    }
}
