//! The typed result of loading an environment: where the database is and what
//! the environment's policy allows.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use secrecy::SecretString;

/// An environment's resolved settings.
///
/// `Debug` is derived but safe: the only secret is a [`SecretString`], whose
/// `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The environment's name (`dev`, `staging`, `prod`, ...).
    pub env: String,
    /// The database to work on.
    pub target: Target,
    /// What the environment allows.
    pub policy: Policy,
    /// Where the environment files were found.
    pub environments: EnvironmentsLocation,
    /// Things worth telling the user that are not errors (an unknown
    /// `ECOMIND_DB_*` variable, for example); the CLI prints them on stderr.
    pub warnings: Vec<String>,
}

/// The database an environment points at.
// Built once per command; boxing the server would only make every match noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Target {
    /// The cluster the tool manages itself (dev's default). The caller starts
    /// it under `root` (for example with `ecomind_snapshot`) and then connects
    /// with [`Server::local_socket`].
    Managed {
        /// The cluster's folder, for example `<repo>/.dev-db`.
        root: PathBuf,
        /// The database inside it.
        dbname: String,
    },
    /// A server reached over TCP or a unix socket.
    Server(Server),
}

/// How to reach a PostgreSQL server. Built by [`crate::load`] or by
/// [`Server::local_socket`]; the password can only be set, never read back.
#[derive(Debug, Clone)]
pub struct Server {
    /// Host names, IP addresses or absolute socket folders, tried in order.
    pub hosts: Vec<String>,
    /// One port for every host, or one port per host in the order of `hosts`
    /// (for a socket folder: the number in the socket file's name).
    pub ports: Vec<u16>,
    /// The database name.
    pub dbname: String,
    /// The role to log in as.
    pub user: String,
    pub(crate) password: Option<SecretString>,
    /// Where the password came from, for messages (`env PGPASSWORD`, ...).
    pub(crate) password_origin: Option<String>,
    /// How TLS is negotiated and verified.
    pub sslmode: SslMode,
    /// The CA certificate file (PEM) for `verify-ca` / `verify-full`, or
    /// `system` for the operating system's trust store.
    pub sslrootcert: Option<PathBuf>,
    /// The client certificate (PEM) presented for mutual TLS; needs `sslkey`.
    pub sslcert: Option<PathBuf>,
    /// The client certificate's private key (PEM); refused when group or
    /// others can access it.
    pub sslkey: Option<PathBuf>,
    /// Certificate revocation lists (PEM) checked against the server's chain;
    /// needs `sslrootcert`.
    pub sslcrl: Option<PathBuf>,
    /// Which server of `hosts` is acceptable: any, or only one that accepts writes.
    pub target_session_attrs: TargetSessionAttrs,
    /// libpq's password file, consulted per host when no other source gives a password.
    pub(crate) passfile: Option<crate::passfile::PassFile>,
    /// How long one connection attempt may take, TLS and authentication
    /// included. Zero means no limit, as in libpq: an attempt on a server
    /// that accepts but never answers then waits for ever.
    pub connect_timeout: Duration,
}

impl Server {
    /// A server on a unix socket, with no password and no TLS (sockets never use TLS).
    pub fn local_socket(socket_dir: &Path, port: u16, user: &str, dbname: &str) -> Server {
        Server {
            hosts: vec![socket_dir.display().to_string()],
            ports: vec![port],
            dbname: dbname.to_owned(),
            user: user.to_owned(),
            password: None,
            password_origin: None,
            sslmode: SslMode::Disable,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            sslcrl: None,
            target_session_attrs: TargetSessionAttrs::Any,
            passfile: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the password; `origin` says where it came from, for error messages
    /// (for example `"sandbox"` or `"env PGPASSWORD"`).
    pub fn with_password(mut self, password: SecretString, origin: &str) -> Server {
        self.password = Some(password);
        self.password_origin = Some(origin.to_owned());
        self
    }

    /// Whether a password is set (its value is never readable outside this crate).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Where the password came from, if there is one.
    pub fn password_origin(&self) -> Option<&str> {
        self.password_origin.as_deref()
    }

    /// The port of the host at `index` in `hosts`.
    pub fn port_of(&self, index: usize) -> u16 {
        self.ports
            .get(index)
            .or_else(|| self.ports.first())
            .copied()
            .unwrap_or(5432)
    }

    /// `user@host:port/dbname` (`user@a:5432,b:5433/dbname` for several
    /// hosts), for messages; never contains a password.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| format!("{host}:{}", self.port_of(index)))
            .collect();
        format!("{}@{}/{}", self.user, hosts.join(","), self.dbname)
    }
}

/// libpq's `sslmode`: whether TLS is used and what is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Plain TCP, never TLS.
    Disable,
    /// TLS if the server offers it, without verifying the certificate (libpq's default).
    Prefer,
    /// TLS or fail; the certificate is verified against `sslrootcert` only if one is set.
    Require,
    /// TLS, and the certificate must be signed by the CA in `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling: `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an [`SslMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
pub struct ParseSslModeError(String);

impl FromStr for SslMode {
    type Err = ParseSslModeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(ParseSslModeError(text.to_owned())),
        }
    }
}

/// libpq's `target_session_attrs`: which of several hosts is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetSessionAttrs {
    /// The first server that accepts the connection (libpq's default).
    #[default]
    Any,
    /// Only a server that accepts writes (a primary): standbys are skipped.
    ReadWrite,
}

impl TargetSessionAttrs {
    /// The libpq spelling: `any` or `read-write`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`TargetSessionAttrs`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target_session_attrs {0:?}: use any or read-write")]
pub struct ParseTargetSessionAttrsError(String);

impl FromStr for TargetSessionAttrs {
    type Err = ParseTargetSessionAttrsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "any" => Ok(TargetSessionAttrs::Any),
            "read-write" => Ok(TargetSessionAttrs::ReadWrite),
            _ => Err(ParseTargetSessionAttrsError(text.to_owned())),
        }
    }
}

/// What an environment allows migration runs to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long `migrate` waits for the advisory lock held by another run.
    pub lock_wait: Duration,
    /// `SET lock_timeout` for migration sessions. `Some(Duration::ZERO)`
    /// (configured as `"0"`) means no limit, overriding any server or role
    /// setting; `None` (not configured anywhere, defaults included) keeps the
    /// server's setting.
    pub lock_timeout: Option<Duration>,
    /// `SET statement_timeout` for migration sessions. `Some(Duration::ZERO)`
    /// (configured as `"0"`) means no limit, overriding any server or role
    /// setting; `None` (not configured anywhere, defaults included) keeps the
    /// server's setting.
    pub statement_timeout: Option<Duration>,
    /// Whether `rollback` may run at all.
    pub allow_rollback: bool,
    /// Whether destructive commands need `--confirm <env>`.
    pub require_confirm: bool,
}

impl Policy {
    /// The keys in which this policy is looser than `reviewed`: rollback allowed where it was
    /// not, no confirmation where one was required, a longer wait or a higher (or no) limit.
    pub(crate) fn loosened_from(&self, reviewed: &Policy) -> Vec<&'static str> {
        // No limit (`Some(ZERO)`) is the loosest; the server's own setting (`None`) is
        // unknown, so only "no limit" counts as looser than it.
        let limit = |d: Duration| if d.is_zero() { Duration::MAX } else { d };
        let looser = |now: Option<Duration>, was: Option<Duration>| match (now, was) {
            (Some(now), Some(was)) => limit(now) > limit(was),
            (Some(now), None) => now.is_zero(),
            (None, _) => false,
        };
        let mut out = Vec::new();
        if self.lock_wait > reviewed.lock_wait {
            out.push("policy.lock_wait");
        }
        if looser(self.lock_timeout, reviewed.lock_timeout) {
            out.push("policy.lock_timeout");
        }
        if looser(self.statement_timeout, reviewed.statement_timeout) {
            out.push("policy.statement_timeout");
        }
        if self.allow_rollback && !reviewed.allow_rollback {
            out.push("policy.allow_rollback");
        }
        if !self.require_confirm && reviewed.require_confirm {
            out.push("policy.require_confirm");
        }
        out
    }

    /// Refuses `rollback` where the policy forbids it, then checks its confirmation.
    pub fn check_rollback(&self, env: &str, confirm: Option<&str>) -> Result<(), ConfirmError> {
        if !self.allow_rollback {
            return Err(ConfirmError::RollbackForbidden {
                env: env.to_owned(),
            });
        }
        self.check_confirm(env, confirm)
    }

    /// Checks the confirmation of `repair`: rewriting a recorded checksum always needs
    /// `--confirm`, whatever the policy says.
    pub fn check_repair(
        &self,
        env: &str,
        accept_checksum: Option<i32>,
        confirm: Option<&str>,
    ) -> Result<(), ConfirmError> {
        if let (Some(version), None) = (accept_checksum, confirm) {
            return Err(ConfirmError::ChecksumUnconfirmed {
                version,
                env: env.to_owned(),
            });
        }
        self.check_confirm(env, confirm)
    }

    /// Checks a `--confirm` value for a destructive command: passing it is
    /// always accepted when it names this environment, and required when the
    /// policy says so.
    pub fn check_confirm(&self, env: &str, confirm: Option<&str>) -> Result<(), ConfirmError> {
        match confirm {
            Some(given) if given == env => Ok(()),
            Some(given) => Err(ConfirmError::Mismatch {
                env: env.to_owned(),
                given: given.to_owned(),
            }),
            None if self.require_confirm => Err(ConfirmError::Required {
                env: env.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// A destructive command that the policy forbids, or that was not confirmed as it requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// The policy forbids `rollback`.
    #[error("environment '{env}' does not allow rollback (policy.allow_rollback = false); write a new migration that reverses the change instead")]
    RollbackForbidden {
        /// The environment.
        env: String,
    },
    /// `--accept-checksum` without `--confirm`.
    #[error("--accept-checksum {version} rewrites the recorded history: pass --confirm {env} too")]
    ChecksumUnconfirmed {
        /// The version whose checksum would be rewritten.
        version: i32,
        /// The environment.
        env: String,
    },
    /// The policy requires `--confirm` and none was given.
    #[error("environment `{env}` requires confirmation for this command: pass --confirm {env}")]
    Required {
        /// The environment.
        env: String,
    },
    /// `--confirm` names another environment.
    #[error("--confirm {given} does not match environment `{env}`: pass --confirm {env}")]
    Mismatch {
        /// The environment.
        env: String,
        /// What was passed.
        given: String,
    },
}

/// Where the environment files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentsLocation {
    /// A folder on disk.
    Dir {
        /// The folder.
        path: PathBuf,
        /// How it was found: `flag --environments`, `env ECOMIND_DB_ENVIRONMENTS`
        /// or `found upward from the working directory`.
        how: String,
    },
    /// The copies embedded in the binary at build time.
    Embedded,
}

impl fmt::Display for EnvironmentsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvironmentsLocation::Dir { path, how } => write!(f, "{} ({how})", path.display()),
            EnvironmentsLocation::Embedded => {
                f.write_str("the copies embedded in the binary at build time")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn confirm() {
        let policy = |require_confirm| Policy {
            lock_wait: Duration::ZERO,
            lock_timeout: None,
            statement_timeout: None,
            allow_rollback: true,
            require_confirm,
        };
        assert_eq!(policy(true).check_confirm("prod", Some("prod")), Ok(()));
        assert_eq!(policy(false).check_confirm("dev", Some("dev")), Ok(()));
        assert_eq!(policy(false).check_confirm("dev", None), Ok(()));
        let required = policy(true).check_confirm("prod", None).unwrap_err();
        assert_eq!(
            required.to_string(),
            "environment `prod` requires confirmation for this command: pass --confirm prod"
        );
        let mismatch = policy(false)
            .check_confirm("dev", Some("prod"))
            .unwrap_err();
        assert_eq!(
            mismatch.to_string(),
            "--confirm prod does not match environment `dev`: pass --confirm dev"
        );
    }

    #[test]
    fn sslmodes_round_trip() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<SslMode>(), Ok(mode));
        }
        assert_eq!("VERIFY_FULL".parse::<SslMode>(), Ok(SslMode::VerifyFull));
        assert!("allow".parse::<SslMode>().is_err());
    }
}
