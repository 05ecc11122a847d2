//! libpq's password file (`~/.pgpass`, `PGPASSFILE`): the password source of
//! last resort, matched per host with libpq's rules.
//!
//! Each line is `hostname:port:database:username:password`. A field of `*`
//! matches anything; `\:` and `\\` stand for a literal colon and backslash;
//! lines starting with `#` are comments; the first matching line wins. As in
//! libpq, `localhost` also matches a connection over the default unix socket
//! folder, and a socket folder otherwise matches its own path.
//!
//! libpq ignores a password file that group or others can access, with a
//! warning. We refuse it instead, with the `chmod` that fixes it, as we do for
//! every other secret file: an ignored file turns into a puzzling
//! authentication failure later, and a warning is easy to miss in a deploy log.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use secrecy::SecretString;

use crate::Error;

/// Socket folders libpq treats as its default, where `localhost` matches.
const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/run/postgresql", "/tmp"];

/// One line of the file.
#[derive(Debug, Clone)]
struct Entry {
    host: String,
    port: String,
    database: String,
    user: String,
    password: SecretString,
    line: usize,
}

/// A parsed password file.
#[derive(Debug, Clone)]
pub(crate) struct PassFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl PassFile {
    /// Reads the file at `path`. A missing file is no file (`Ok(None)`)
    /// unless `explicit` (named by a setting), when it is an error. A file
    /// that group or others can access is refused.
    pub(crate) fn load(path: &Path, origin: &str, explicit: bool) -> Result<Option<Self>, Error> {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == ErrorKind::NotFound && !explicit => return Ok(None),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Err(Error::SecretFileMissing {
                    path: path.to_owned(),
                    origin: origin.to_owned(),
                })
            }
            Err(err) => {
                return Err(Error::SecretFileUnreadable {
                    path: path.to_owned(),
                    origin: origin.to_owned(),
                    reason: err.to_string(),
                })
            }
        };
        if !metadata.is_file() {
            return Err(Error::SecretFileUnreadable {
                path: path.to_owned(),
                origin: origin.to_owned(),
                reason: "it is not a regular file: point PGPASSFILE at the password file"
                    .to_owned(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::SecretFileLoosePermissions {
                path: path.to_owned(),
                origin: origin.to_owned(),
                mode,
                hint: String::new(),
            });
        }
        let text = fs::read(path)
            .map_err(|err| Error::SecretFileUnreadable {
                path: path.to_owned(),
                origin: origin.to_owned(),
                reason: err.to_string(),
            })
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| Error::SecretFileUnreadable {
                    path: path.to_owned(),
                    origin: origin.to_owned(),
                    reason: "it is not valid UTF-8".to_owned(),
                })
            })?;
        Ok(Some(PassFile {
            path: path.to_owned(),
            entries: parse(&text),
        }))
    }

    /// The password of the first line matching this connection, with a
    /// description of where it came from (`line 3 of /root/.pgpass`).
    pub(crate) fn lookup(
        &self,
        host: &str,
        port: u16,
        database: &str,
        user: &str,
    ) -> Option<(SecretString, String)> {
        let port = port.to_string();
        let socket = host.starts_with('/');
        let default_socket = socket
            && DEFAULT_SOCKET_DIRS
                .iter()
                .any(|dir| Path::new(host) == Path::new(dir));
        let host_matches = |pattern: &str| {
            pattern == "*" || pattern == host || (pattern == "localhost" && default_socket)
        };
        let field = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        self.entries
            .iter()
            .find(|entry| {
                host_matches(&entry.host)
                    && field(&entry.port, &port)
                    && field(&entry.database, database)
                    && field(&entry.user, user)
            })
            .map(|entry| {
                (
                    entry.password.clone(),
                    format!("line {} of {}", entry.line, self.path.display()),
                )
            })
    }
}

/// Splits the lines into entries; lines with fewer than five fields are
/// skipped, as libpq skips them.
fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::with_capacity(5);
        let mut current = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
                // As libpq: an unescaped colon ends the password too.
                ':' => break,
                c => current.push(c),
            }
        }
        if fields.len() < 4 {
            continue;
        }
        let mut fields = fields.into_iter();
        let mut next = || fields.next().unwrap_or_default();
        entries.push(Entry {
            host: next(),
            port: next(),
            database: next(),
            user: next(),
            password: SecretString::from(current),
            line: index + 1,
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use secrecy::ExposeSecret;

    use super::*;

    /// `(host, port, database, user)` against a file, and the password expected.
    type Connection<'a> = (&'a str, u16, &'a str, &'a str);

    fn check(file: &str, cases: &[(Connection<'_>, Option<&str>)]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, file).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let passfile = PassFile::load(&path, "test", true).unwrap().unwrap();
        for ((host, port, database, user), expected) in cases {
            let got = passfile.lookup(host, *port, database, user);
            assert_eq!(
                got.as_ref().map(|(secret, _)| secret.expose_secret()),
                *expected,
                "{host}:{port}:{database}:{user}"
            );
        }
    }

    #[test]
    fn matches_like_libpq() {
        check(
            "# comment\n\
             db.example:5432:eco:app:first\n\
             db.example:*:*:app:second\n\
             *:5433:*:*:any-host\n\
             localhost:5432:*:*:local\n\
             /srv/run:5432:*:*:socket\n\
             we\\:ird:5432:*:u\\\\ser:esc\\:aped\\\\pw\n\
             short:line\n\
             *:*:*:last:pass:with:colons\r\n",
            &[
                (("db.example", 5432, "eco", "app"), Some("first")),
                (("db.example", 6000, "other", "app"), Some("second")),
                (("db.example", 5432, "eco", "someone"), None),
                (("replica", 5433, "eco", "someone"), Some("any-host")),
                (("localhost", 5432, "eco", "x"), Some("local")),
                (("/var/run/postgresql", 5432, "eco", "x"), Some("local")),
                (("/tmp", 5432, "eco", "x"), Some("local")),
                (("/srv/run", 5432, "eco", "x"), Some("socket")),
                (("/elsewhere", 5432, "eco", "x"), None),
                (("we:ird", 5432, "eco", "u\\ser"), Some("esc:aped\\pw")),
                (("short", 5432, "eco", "last"), Some("pass")),
            ],
        );
    }

    #[test]
    fn names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, "a:1:*:*:x\nb:*:*:*:y\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o400)).unwrap();
        let passfile = PassFile::load(&path, "test", false).unwrap().unwrap();
        let (_, origin) = passfile.lookup("b", 5432, "d", "u").unwrap();
        assert_eq!(origin, format!("line 2 of {}", path.display()));
    }

    #[test]
    fn refuses_loose_permissions_and_ignores_a_missing_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, "*:*:*:*:s3cret\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let message = PassFile::load(&path, "default ~/.pgpass", false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("(mode 0644): run `chmod 600"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let missing = dir.path().join("missing");
        assert!(PassFile::load(&missing, "default", false)
            .unwrap()
            .is_none());
        let message = PassFile::load(&missing, "env PGPASSFILE", true)
            .unwrap_err()
            .to_string();
        assert!(message.contains("does not exist"), "{message}");
    }
}
