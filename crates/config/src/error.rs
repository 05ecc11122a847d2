//! The one error type of the configuration loader; no variant ever holds a secret.

use std::path::PathBuf;

/// Why an environment's settings could not be resolved.
///
/// Every message names the source of the bad value (file, variable or flag) and
/// says what to do. None of them contains a password or a URL that carries one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The environment name has no file among the known environments.
    #[error(
        "unknown environment `{env}`: known environments are {known} ({location}){suggestion}"
    )]
    UnknownEnvironment {
        /// The name that was asked for.
        env: String,
        /// The known environment names, comma separated.
        known: String,
        /// Where the environment files were looked for.
        location: String,
        /// `"; did you mean `x`"` or empty.
        suggestion: String,
    },
    /// An environments folder given explicitly does not exist.
    #[error("environments folder {} does not exist (from {origin}): pass an existing folder or unset it", path.display())]
    EnvironmentsDirMissing {
        /// The folder that was given.
        path: PathBuf,
        /// `flag --environments` or `env ECOMIND_DB_ENVIRONMENTS`.
        origin: String,
    },
    /// An environment file exists but cannot be read.
    #[error("cannot read environment file {}: {reason}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// An environment file is not valid TOML.
    #[error("{file}: malformed TOML at line {line}, column {column}: {message}")]
    MalformedToml {
        /// The file, as shown to the user.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message (never an excerpt of the file).
        message: String,
    },
    /// A key that the loader does not know.
    #[error("{file}: unknown key `{key}`{suggestion}")]
    UnknownKey {
        /// The file, as shown to the user.
        file: String,
        /// The dotted key.
        key: String,
        /// `"; did you mean `database.port`?"` or a list of the known keys.
        suggestion: String,
    },
    /// A value of the wrong type.
    #[error("{origin}: `{key}` must be {expected}, found {found}")]
    WrongType {
        /// Where the value came from.
        origin: String,
        /// The dotted key.
        key: String,
        /// What the key takes.
        expected: String,
        /// What was found (its type, or the value for non-secret keys).
        found: String,
    },
    /// A port outside 1..=65535 or not a number.
    #[error("{origin}: invalid port {value} for `{key}`: use a number between 1 and 65535")]
    InvalidPort {
        /// Where the value came from.
        origin: String,
        /// The dotted key.
        key: String,
        /// The value as given.
        value: String,
    },
    /// A value of the right type that is not acceptable.
    #[error("{origin}: invalid value for `{key}`: {message}")]
    InvalidValue {
        /// Where the value came from.
        origin: String,
        /// The dotted key.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A literal password in an environment file where none is allowed.
    #[error("{file}: a literal password is not allowed in the `{env}` environment file: remove `password` and set `password_file` (for example \"/run/secrets/ecomind_db_password\") or ECOMIND_DB_PASSWORD_FILE")]
    LiteralPassword {
        /// The file, as shown to the user.
        file: String,
        /// The environment.
        env: String,
    },
    /// Two sources of the same precedence give the same setting.
    #[error("both {first} and {second} are set: keep only one of them")]
    Conflict {
        /// One source.
        first: String,
        /// The other source.
        second: String,
    },
    /// `DATABASE_URL` cannot be parsed; the URL itself is never shown.
    #[error("env DATABASE_URL: {reason} (the URL is not shown because it may carry a password)")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A secret file named by the configuration does not exist.
    #[error("secret file {} (from {origin}) does not exist: create it, or mount the secret there", path.display())]
    SecretFileMissing {
        /// The file.
        path: PathBuf,
        /// What named it.
        origin: String,
    },
    /// A secret file exists but cannot be read.
    #[error("cannot read secret file {} (from {origin}): {reason}", path.display())]
    SecretFileUnreadable {
        /// The file.
        path: PathBuf,
        /// What named it.
        origin: String,
        /// Why (never the contents).
        reason: String,
    },
    /// A secret file that group or others may read, as libpq refuses for `.pgpass`.
    #[error("secret file {} (from {origin}) is accessible by group or others (mode {mode:04o}): run `chmod 600 {}`{hint}", path.display(), path.display())]
    SecretFileLoosePermissions {
        /// The file.
        path: PathBuf,
        /// What named it.
        origin: String,
        /// The permission bits.
        mode: u32,
        /// Extra advice for mounted secrets, or empty.
        hint: String,
    },
    /// A secret file with more than one line: a password has none, so the file is not what the
    /// setting should point at (a `.pgpass`, a certificate, an env file).
    #[error("secret file {} (from {origin}) holds {lines} lines, but a password file holds the password alone on one line (one trailing newline is allowed): point the setting at a file that holds only the password", path.display())]
    SecretFileMultiline {
        /// The file.
        path: PathBuf,
        /// What named it.
        origin: String,
        /// How many lines it has (never their contents).
        lines: usize,
    },
    /// A secret file that holds nothing.
    #[error("secret file {} (from {origin}) is empty: write the password into it", path.display())]
    SecretFileEmpty {
        /// The file.
        path: PathBuf,
        /// What named it.
        origin: String,
    },
    /// The resolved settings cannot describe a usable connection.
    #[error("environment `{env}`: {message}")]
    Incomplete {
        /// The environment.
        env: String,
        /// What is missing and how to supply it.
        message: String,
    },
    /// A variable or flag would loosen the policy of an environment whose file says
    /// `require_confirm = true`.
    #[error("{origin} would loosen {key} of environment '{env}', whose file {file} says require_confirm = true, so variables and flags may only tighten its policy; unset it, or change {key} in {file}")]
    PolicyLoosened {
        /// The variable or flag, as `env ECOMIND_DB_ALLOW_ROLLBACK`.
        origin: String,
        /// The dotted key.
        key: String,
        /// The environment.
        env: String,
        /// The environment file to edit.
        file: String,
    },
}
