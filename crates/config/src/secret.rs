//! Password sources and secret files: every password is wrapped in a
//! [`SecretString`] the moment it is read.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use secrecy::SecretString;

use crate::Error;

/// Where a password comes from.
#[derive(Debug, Clone)]
pub(crate) enum PasswordSource {
    /// The value itself, already secret (a variable, a URL, a dev file).
    Literal {
        /// The password.
        secret: SecretString,
        /// `env PGPASSWORD`, `env DATABASE_URL`, `environments/dev.toml`.
        origin: String,
    },
    /// A file to read when the password is needed.
    File {
        /// The secret file.
        path: PathBuf,
        /// What named the file.
        origin: String,
    },
}

impl PasswordSource {
    /// A human description of the source, without the secret.
    pub(crate) fn describe(&self) -> String {
        match self {
            PasswordSource::Literal { origin, .. } => origin.clone(),
            PasswordSource::File { path, origin } => {
                format!("file {} (named by {origin})", path.display())
            }
        }
    }

    /// Reads the password (from its file if it has one).
    pub(crate) fn resolve(&self) -> Result<SecretString, Error> {
        match self {
            PasswordSource::Literal { secret, .. } => Ok(secret.clone()),
            PasswordSource::File { path, origin } => read_secret_file(path, origin),
        }
    }
}

/// Reads a secret file the way libpq treats `.pgpass`: it must be a regular
/// file that neither group nor others can access. One trailing newline
/// (`\n` or `\r\n`) is stripped; a file with more lines is refused. Symbolic links are followed, as Kubernetes
/// secret volumes use them.
pub(crate) fn read_secret_file(path: &Path, origin: &str) -> Result<SecretString, Error> {
    let unreadable = |reason: String| Error::SecretFileUnreadable {
        path: path.to_owned(),
        origin: origin.to_owned(),
        reason,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Err(Error::SecretFileMissing {
                path: path.to_owned(),
                origin: origin.to_owned(),
            });
        }
        Err(err) => return Err(unreadable(err.to_string())),
    };
    if !metadata.is_file() {
        return Err(unreadable(
            "it is not a regular file: point the setting at the file that holds the password"
                .to_owned(),
        ));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let hint = if path.starts_with("/run/secrets") {
            " (for a Kubernetes secret volume set `defaultMode: 0400`; for a Docker secret set `mode: 0400`)".to_owned()
        } else {
            String::new()
        };
        return Err(Error::SecretFileLoosePermissions {
            path: path.to_owned(),
            origin: origin.to_owned(),
            mode,
            hint,
        });
    }
    let bytes = fs::read(path).map_err(|err| unreadable(err.to_string()))?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| unreadable("it is not valid UTF-8".to_owned()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.contains(['\n', '\r']) {
        return Err(Error::SecretFileMultiline {
            path: path.to_owned(),
            origin: origin.to_owned(),
            lines: text.lines().count().max(2),
        });
    }
    if text.is_empty() {
        return Err(Error::SecretFileEmpty {
            path: path.to_owned(),
            origin: origin.to_owned(),
        });
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use secrecy::ExposeSecret;

    use super::*;

    fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn strips_exactly_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (contents, expected) in [
            ("s3cret", "s3cret"),
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            (" s3cret ", " s3cret "),
        ] {
            let path = write(dir.path(), "pw", contents, 0o600);
            let secret = read_secret_file(&path, "test").unwrap();
            assert_eq!(secret.expose_secret(), expected, "{contents:?}");
        }
    }

    #[test]
    fn refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let loose = write(dir.path(), "loose", "s3cret", 0o644);
        let group = write(dir.path(), "group", "s3cret", 0o640);
        let empty = write(dir.path(), "empty", "\n", 0o400);
        let two_lines = write(dir.path(), "two", "s3cret\nother\n", 0o600);
        let blank_second = write(dir.path(), "blank", "s3cret\n\n", 0o600);
        let bare_cr = write(dir.path(), "cr", "s3cret\rx", 0o600);
        let folder = dir.path().join("folder");
        fs::create_dir(&folder).unwrap();
        fs::set_permissions(&folder, Permissions::from_mode(0o700)).unwrap();
        let check = |path: &Path, expected: &str| {
            let message = read_secret_file(path, "test").unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        };
        check(&loose, "run `chmod 600");
        check(&group, "mode 0640");
        check(&empty, "is empty");
        check(
            &two_lines,
            "holds 2 lines, but a password file holds the password alone on one line",
        );
        check(&blank_second, "holds 2 lines");
        check(&bare_cr, "holds 2 lines");
        check(&folder, "not a regular file");
        check(&dir.path().join("missing"), "does not exist");
    }
}
