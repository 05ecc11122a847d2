//! Finding the PostgreSQL server binaries: a configured folder, `pg_config --bindir`, or the newest Debian install.

use std::path::{Path, PathBuf};

use crate::process::Tool;
use crate::Error;

/// The programs a folder must hold to run a cluster.
const REQUIRED: &[&str] = &["initdb", "pg_ctl", "postgres"];

/// Located PostgreSQL server binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    dir: PathBuf,
    major: u32,
    version: String,
}

impl Binaries {
    /// Finds the server binaries.
    ///
    /// Order: `configured` (when given, it is the only candidate: a wrong setting is an
    /// error, not a reason to pick another version), then `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/*/bin`. The folder must contain `initdb`, `pg_ctl`
    /// and `postgres`; the error lists where it looked.
    pub fn locate(configured: Option<&Path>) -> Result<Binaries, Error> {
        let mut looked = Vec::new();
        if let Some(dir) = configured {
            return match missing(dir) {
                None => Binaries::at(dir),
                Some(why) => Err(Error::BinariesNotFound {
                    looked: format!("configured bin dir {} ({why})", dir.display()),
                }),
            };
        }
        match pg_config_bindir() {
            Ok(dir) => match missing(&dir) {
                None => return Binaries::at(&dir),
                Some(why) => {
                    looked.push(format!("`pg_config --bindir` = {} ({why})", dir.display()))
                }
            },
            Err(why) => looked.push(format!("`pg_config --bindir` ({why})")),
        }
        let mut installed = debian_bin_dirs();
        installed.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
        for (_, dir) in &installed {
            match missing(dir) {
                None => return Binaries::at(dir),
                Some(why) => looked.push(format!("{} ({why})", dir.display())),
            }
        }
        if installed.is_empty() {
            looked.push("/usr/lib/postgresql/*/bin (none)".to_owned());
        }
        Err(Error::BinariesNotFound {
            looked: looked.join("; "),
        })
    }

    /// Every PostgreSQL installation found here, newest major first: `configured`, `pg_config
    /// --bindir`, every `/usr/lib/postgresql/*/bin`, and the server-only builds that `cargo
    /// xtask majors` unpacks (`$ECOMIND_DB_PG_CACHE/*/package/native/bin`, by default under
    /// the temporary folder). Folders without the server programs are left out.
    pub fn installed(configured: Option<&Path>) -> Vec<Binaries> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        dirs.extend(configured.map(Path::to_path_buf));
        dirs.extend(pg_config_bindir().ok());
        dirs.extend(debian_bin_dirs().into_iter().map(|(_, dir)| dir));
        let cache = std::env::var_os("ECOMIND_DB_PG_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("ecomind-db-postgres"));
        if let Ok(entries) = std::fs::read_dir(&cache) {
            dirs.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path().join("package/native/bin")),
            );
        }
        let mut found: Vec<Binaries> = Vec::new();
        for dir in dirs {
            if missing(&dir).is_some() {
                continue;
            }
            let Ok(binaries) = Binaries::at(&dir) else {
                continue;
            };
            if !found.iter().any(|b| b.dir == binaries.dir) {
                found.push(binaries);
            }
        }
        found.sort_by_key(|b| std::cmp::Reverse(b.major));
        found
    }

    /// Builds the value for a folder known to contain the required programs.
    fn at(dir: &Path) -> Result<Binaries, Error> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, e))?;
        let output = Tool::new("postgres --version", &dir.join("postgres"), Path::new("/"))?
            .arg("--version")
            .run()?;
        let version = output.trim().to_owned();
        let major = parse_major(&version).ok_or_else(|| Error::UnexpectedOutput {
            tool: "postgres --version".to_owned(),
            output: version.clone(),
        })?;
        Ok(Binaries {
            dir,
            major,
            version,
        })
    }

    /// Binaries of `major` that exist only in unit tests.
    #[cfg(test)]
    pub(crate) fn fake(major: u32) -> Binaries {
        Binaries {
            dir: PathBuf::from(format!("/nonexistent/postgresql/{major}/bin")),
            major,
            version: format!("postgres (PostgreSQL) {major}.0"),
        }
    }

    /// The folder holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's major version, from `postgres --version` (e.g. 15).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The full version line that `postgres --version` printed.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A program in the bin folder, if present: `psql`, `pg_dump` and `pg_restore` are
    /// missing from server-only (embedded) builds.
    pub fn tool(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir.join(name);
        is_executable(&path).then_some(path)
    }

    /// A program that [`Binaries::locate`] guaranteed to exist.
    pub(crate) fn required(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Why `dir` does not hold the required programs, or `None` if it does.
fn missing(dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return Some("not a folder".to_owned());
    }
    let absent: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|name| !is_executable(&dir.join(name)))
        .collect();
    (!absent.is_empty()).then(|| format!("no {}", absent.join(", ")))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Asks `pg_config` on the PATH for its bin folder.
fn pg_config_bindir() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let program = std::env::split_paths(&path)
        .map(|dir| dir.join("pg_config"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| "not on PATH".to_owned())?;
    let output = Tool::new("pg_config --bindir", &program, Path::new("/"))
        .and_then(|tool| tool.arg("--bindir").run())
        .map_err(|e| e.to_string())?;
    let dir = output.trim();
    if dir.is_empty() {
        return Err("printed nothing".to_owned());
    }
    Ok(PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<major>/bin` folders, with their major versions.
fn debian_bin_dirs() -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let major = parse_major(name.to_str()?)?;
            Some((major, entry.path().join("bin")))
        })
        .collect()
}

/// The major version in `postgres (PostgreSQL) 15.14 (Debian ...)`, `16beta1` or a folder name like `15`.
fn parse_major(text: &str) -> Option<u32> {
    let word = text
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_major_versions() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.14 (Debian 15.14-1.pgdg120+1)"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta2"), Some(18));
        assert_eq!(parse_major("9.6"), Some(9));
        assert_eq!(parse_major("postgres"), None);
    }
}
