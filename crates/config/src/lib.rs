//! Resolves an environment's database settings from `environments/<env>.toml`,
//! environment variables, secret files and command-line flags, keeping every
//! secret in a `secrecy` type and every value's source for `config show`.
//!
//! Precedence, lowest to highest: built-in defaults, the environment file,
//! `ECOMIND_DB_*`, libpq's `PG*`, `DATABASE_URL`, flags. A variable that is
//! set but empty counts as unset.

mod connect;
mod error;
mod passfile;
mod resolve;
mod schema;
mod secret;
mod settings;
mod url;
mod wait;

#[cfg(test)]
mod fuzz;

use std::path::{Path, PathBuf};

pub use connect::{ConnectError, ConnectErrorKind};
pub use error::Error;
pub use schema::MAX_DURATION;
pub use secrecy::SecretString;
pub use settings::{
    ConfirmError, EnvironmentsLocation, ParseSslModeError, ParseTargetSessionAttrsError, Policy,
    Server, Settings, SslMode, Target, TargetSessionAttrs,
};
pub use wait::WaitError;

/// Command-line overrides, the highest layer. There is deliberately no
/// password flag: argv is visible to every user of the machine.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--host`: host name(s) or socket folder.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--dbname`.
    pub dbname: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--password-file`: a secret file (mode 0600 or stricter).
    pub password_file: Option<PathBuf>,
    /// `--sslmode`.
    pub sslmode: Option<SslMode>,
}

/// What to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// The environment's name: `dev`, `staging`, `prod`, ...
    pub env: &'a str,
    /// `--environments DIR`; `None` means `ECOMIND_DB_ENVIRONMENTS`, else
    /// `environments/` upward from the working directory, else the embedded copies.
    pub environments_dir: Option<&'a Path>,
    /// Command-line overrides.
    pub flags: &'a Flags,
}

/// Resolves an environment's settings, reading its password (from a secret
/// file if one is configured) when the target is a server.
pub fn load(opts: &LoadOptions<'_>) -> Result<Settings, Error> {
    Environment::resolve(opts)?.settings()
}

/// Resolves an environment like [`load`] but reads no secret file, so the result has no
/// password. For decisions that must not depend on a mounted secret, such as a policy that
/// forbids a command: the refusal should be the same on any machine.
pub fn load_without_secrets(opts: &LoadOptions<'_>) -> Result<Settings, Error> {
    Environment::resolve(opts)?.settings_without_secrets()
}

/// One environment, resolved once (every layer merged), from which a command takes what it
/// needs: the settings without secrets to check its policy, then the settings with the
/// password, and where each value came from.
pub struct Environment {
    resolution: resolve::Resolution,
}

impl Environment {
    /// Merges every layer of the environment `opts` names.
    pub fn resolve(opts: &LoadOptions<'_>) -> Result<Environment, Error> {
        Ok(Environment {
            resolution: resolve::resolve(opts, true)?,
        })
    }

    /// The settings, reading the password (from a secret file if one is configured) when the
    /// target is a server.
    pub fn settings(&self) -> Result<Settings, Error> {
        self.resolution.settings(true)
    }

    /// The settings without reading any secret: enough to apply the policy.
    pub fn settings_without_secrets(&self) -> Result<Settings, Error> {
        self.resolution.settings(false)
    }

    /// Every value with the source that won, for `config show` and for announcing a
    /// destructive command.
    pub fn explain(&self) -> Result<Explanation, Error> {
        explain_resolution(&self.resolution)
    }
}

/// One resolved value and where it came from, for `config show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    /// Dotted key, for example `database.port`.
    pub key: String,
    /// The value as text; `[redacted]` for a secret; `None` when unset.
    pub value: Option<String>,
    /// Where it came from: `environments/prod.toml`, `env ECOMIND_DB_PORT`,
    /// `flag --port`, `default`, ...
    pub source: String,
}

/// Every resolved value of one environment, for `config show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The environment.
    pub env: String,
    /// Where the environment files were found.
    pub environments: String,
    /// The environment file used (`environments/prod.toml`, or `embedded environments/prod.toml`).
    pub file: String,
    /// `managed cluster in <root>` or `server user@host:port/dbname`.
    pub target: String,
    /// Each key with its winning value and source.
    pub values: Vec<Resolved>,
    /// Warnings about the environment (unknown `ECOMIND_DB_*` variables, ...).
    pub warnings: Vec<String>,
}

/// Resolves an environment like [`load`] but without reading secret files,
/// and reports every value with the source that won.
pub fn explain(opts: &LoadOptions<'_>) -> Result<Explanation, Error> {
    Environment::resolve(opts)?.explain()
}

fn explain_resolution(resolution: &resolve::Resolution) -> Result<Explanation, Error> {
    let settings = resolution.settings(false)?;
    let mut values = Vec::new();
    for key in schema::KEYS {
        let value = resolution
            .figment
            .find_value(key.name)
            .ok()
            .map(|value| match value {
                figment::value::Value::String(_, text) => text,
                figment::value::Value::Bool(_, flag) => flag.to_string(),
                figment::value::Value::Num(_, number) => number
                    .to_u128()
                    .map_or_else(|| format!("{number:?}"), |number| number.to_string()),
                other => format!("{other:?}"),
            });
        let mut source = resolution
            .source(key.name)
            .map(|(name, _)| name)
            .unwrap_or_else(|| "unset".to_owned());
        let mut value = value;
        if key.name == "database.target" {
            if let Some(by) = value
                .as_deref()
                .and_then(|target| resolution.server_override(target))
            {
                value = Some("server".to_owned());
                source =
                    format!("{by} (a host setting above {source} overrides target = \"managed\")");
            }
        }
        values.push(Resolved {
            key: key.name.to_owned(),
            value,
            source,
        });
    }
    let passfile = match &settings.target {
        Target::Server(server) => server.password_origin.clone(),
        Target::Managed { .. } => None,
    };
    let (value, source) = match (&resolution.password, passfile) {
        (Some((_, source)), _) => (Some("[redacted]".to_owned()), source.describe()),
        (None, Some(passfile)) => (None, format!("unset here; the last resort is {passfile}")),
        (None, None) => (None, "unset".to_owned()),
    };
    values.push(Resolved {
        key: schema::PASSWORD.to_owned(),
        value,
        source,
    });
    let target = match &settings.target {
        Target::Managed { root, dbname } => {
            format!("managed cluster in {}, database {dbname}", root.display())
        }
        Target::Server(server) => format!("server {}", server.describe()),
    };
    Ok(Explanation {
        env: resolution.env.clone(),
        environments: resolution.location.to_string(),
        file: resolution.file_label.clone(),
        target,
        values,
        warnings: resolution.warnings.clone(),
    })
}

/// Which environments [`check`] validates.
#[derive(Debug, Clone, Copy)]
pub enum CheckScope<'a> {
    /// One environment (`config check --env E`).
    One(&'a str),
    /// Every environment file found (`config check --all`).
    All,
}

/// The outcome of checking one environment file.
#[derive(Debug)]
pub struct CheckReport {
    /// The environment.
    pub env: String,
    /// The file checked.
    pub file: String,
    /// Every problem found; empty means the file is valid.
    pub problems: Vec<Error>,
}

impl CheckReport {
    /// Whether the file is valid.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Validates environment files without connecting and without reading
/// variables or secret files: TOML syntax, unknown keys (with the closest
/// known key), types, ports, literal passwords, and that the file's settings
/// form a usable target. An unknown environment name is an error that lists
/// the known ones.
pub fn check(
    scope: CheckScope<'_>,
    environments_dir: Option<&Path>,
) -> Result<Vec<CheckReport>, Error> {
    let location = resolve::locate(environments_dir)?;
    let names = match scope {
        CheckScope::One(env) => {
            resolve::read_env_file(&location, env)?;
            vec![env.to_owned()]
        }
        CheckScope::All => resolve::environments(&location),
    };
    let flags = Flags::default();
    let mut reports = Vec::new();
    for env in names {
        let file = resolve::read_env_file(&location, &env)?;
        let problems = match resolve::parse_file(&file, &env) {
            Err(problems) => problems,
            Ok(_) => {
                let opts = LoadOptions {
                    env: &env,
                    environments_dir,
                    flags: &flags,
                };
                match resolve::resolve(&opts, false)
                    .and_then(|resolution| resolution.settings(false))
                {
                    Ok(_) => Vec::new(),
                    Err(err) => vec![err],
                }
            }
        };
        reports.push(CheckReport {
            env,
            file: file.label,
            problems,
        });
    }
    Ok(reports)
}

/// The environment names available: in `dir` if given, else where [`load`]
/// would look. Sorted; empty if the folder cannot be read.
pub fn known_environments(dir: Option<&Path>) -> Vec<String> {
    resolve::locate(dir)
        .map(|location| resolve::environments(&location))
        .unwrap_or_default()
}
