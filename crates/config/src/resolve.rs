//! The layers of configuration and their precedence: defaults < environment
//! file < `ECOMIND_DB_*` < libpq `PG*` < `DATABASE_URL` < flags, merged with
//! figment so every value keeps the name of its source.

use std::{
    collections::HashMap,
    env, fs,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    value::{Dict, Map, Value},
    Figment, Metadata, Profile, Provider,
};
use secrecy::SecretString;
use serde::Deserialize;

use crate::{
    passfile::PassFile,
    schema::{self, Raw},
    secret::PasswordSource,
    settings::{EnvironmentsLocation, Policy, Server, Settings, SslMode, Target},
    url, Error, LoadOptions,
};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Precedence of a layer; a higher rank wins.
pub(crate) type Rank = u8;
pub(crate) const RANK_DEFAULT: Rank = 0;
pub(crate) const RANK_FILE: Rank = 1;
pub(crate) const RANK_ECOMIND: Rank = 2;
pub(crate) const RANK_LIBPQ: Rank = 3;
pub(crate) const RANK_URL: Rank = 4;
pub(crate) const RANK_FLAG: Rank = 5;

/// libpq variables and the keys they set.
const LIBPQ_VARS: &[(&str, &str)] = &[
    ("PGHOST", "database.host"),
    ("PGPORT", "database.port"),
    ("PGDATABASE", "database.dbname"),
    ("PGUSER", "database.user"),
    ("PGSSLMODE", "database.sslmode"),
    ("PGSSLROOTCERT", "database.sslrootcert"),
    ("PGCONNECT_TIMEOUT", "database.connect_timeout"),
    ("PGSSLCERT", "database.sslcert"),
    ("PGSSLKEY", "database.sslkey"),
    ("PGSSLCRL", "database.sslcrl"),
    ("PGTARGETSESSIONATTRS", "database.target_session_attrs"),
    ("PGPASSFILE", "database.passfile"),
];

/// One named source of values, as a figment provider.
struct Layer {
    name: String,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn insert(dict: &mut Dict, dotted: &str, value: Value) {
    let (section, key) = dotted.split_once('.').expect("keys are section.key");
    let entry = dict
        .entry(section.to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, inner) = entry {
        inner.insert(key.to_owned(), value);
    }
}

/// Reads a variable; set-but-empty counts as unset.
fn var(name: &str) -> Result<Option<String>, Error> {
    match env::var_os(name) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|_| Error::InvalidValue {
                origin: format!("env {name}"),
                key: name.to_owned(),
                message: "it is not valid UTF-8".to_owned(),
            }),
    }
}

/// Reads a secret variable straight into a secret.
fn secret_var(name: &str) -> Result<Option<SecretString>, Error> {
    Ok(var(name)?.map(SecretString::from))
}

/// Finds the environment files: the explicit folder, `ECOMIND_DB_ENVIRONMENTS`,
/// `environments/` upward from the working directory, else the embedded copies.
pub(crate) fn locate(explicit: Option<&Path>) -> Result<EnvironmentsLocation, Error> {
    let given = match explicit {
        Some(dir) => Some((dir.to_owned(), "flag --environments")),
        None => var("ECOMIND_DB_ENVIRONMENTS")?
            .map(|dir| (PathBuf::from(dir), "env ECOMIND_DB_ENVIRONMENTS")),
    };
    if let Some((dir, how)) = given {
        if !dir.is_dir() {
            return Err(Error::EnvironmentsDirMissing {
                path: dir,
                origin: how.to_owned(),
            });
        }
        let path = dir.canonicalize().unwrap_or(dir);
        return Ok(EnvironmentsLocation::Dir {
            path,
            how: how.to_owned(),
        });
    }
    if let Ok(cwd) = env::current_dir() {
        for folder in cwd.ancestors() {
            let candidate = folder.join("environments");
            if candidate.is_dir() && !list_dir(&candidate).is_empty() {
                return Ok(EnvironmentsLocation::Dir {
                    path: candidate,
                    how: "found upward from the working directory".to_owned(),
                });
            }
        }
    }
    Ok(EnvironmentsLocation::Embedded)
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|read| {
            read.filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "toml"))
                .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The environment names a location holds, sorted.
pub(crate) fn environments(location: &EnvironmentsLocation) -> Vec<String> {
    match location {
        EnvironmentsLocation::Dir { path, .. } => list_dir(path),
        EnvironmentsLocation::Embedded => EMBEDDED
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect(),
    }
}

/// An environment file's text, with the label used in messages.
pub(crate) struct EnvFile {
    /// `environments/prod.toml` (relative to the working directory when
    /// possible) or `embedded environments/prod.toml`.
    pub label: String,
    /// The TOML text.
    pub text: String,
    /// Relative paths in the file are resolved against this folder.
    pub base_dir: PathBuf,
}

pub(crate) fn read_env_file(
    location: &EnvironmentsLocation,
    env_name: &str,
) -> Result<EnvFile, Error> {
    let known = environments(location);
    if !known.iter().any(|name| name == env_name) {
        let suggestion = schema::closest(env_name, known.iter().map(String::as_str))
            .map(|name| format!("; did you mean `{name}`?"))
            .unwrap_or_default();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        return Err(Error::UnknownEnvironment {
            env: env_name.to_owned(),
            known,
            location: format!("in {location}"),
            suggestion,
        });
    }
    match location {
        EnvironmentsLocation::Dir { path, .. } => {
            let file = path.join(format!("{env_name}.toml"));
            let text = fs::read_to_string(&file).map_err(|err| Error::ReadFile {
                path: file.clone(),
                reason: err.to_string(),
            })?;
            let label = env::current_dir()
                .ok()
                .and_then(|cwd| file.strip_prefix(&cwd).ok().map(Path::to_owned))
                .unwrap_or_else(|| file.clone())
                .display()
                .to_string();
            let base_dir = path
                .parent()
                .map(Path::to_owned)
                .unwrap_or_else(|| path.clone());
            Ok(EnvFile {
                label,
                text,
                base_dir,
            })
        }
        EnvironmentsLocation::Embedded => {
            let text = EMBEDDED
                .iter()
                .find(|(name, _)| *name == env_name)
                .map(|(_, text)| (*text).to_owned())
                .unwrap_or_default();
            Ok(EnvFile {
                label: format!("embedded environments/{env_name}.toml"),
                text,
                base_dir: env::current_dir().unwrap_or_default(),
            })
        }
    }
}

/// What an environment file contributes.
pub(crate) struct FileLayer {
    values: Vec<(&'static str, Value)>,
    password: Option<PasswordSource>,
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

fn resolve_path(base: &Path, value: &str) -> String {
    let path = Path::new(value);
    if value == "system" || path.is_absolute() {
        value.to_owned()
    } else {
        base.join(path).display().to_string()
    }
}

/// Parses and validates an environment file, collecting every problem.
pub(crate) fn parse_file(file: &EnvFile, env_name: &str) -> Result<FileLayer, Vec<Error>> {
    let table: toml::Table = match file.text.parse() {
        Ok(table) => table,
        Err(err) => {
            let (line, column) = err
                .span()
                .map_or((1, 1), |span| line_column(&file.text, span.start));
            return Err(vec![Error::MalformedToml {
                file: file.label.clone(),
                line,
                column,
                message: err.message().trim().replace('\n', "; "),
            }]);
        }
    };
    let mut layer = FileLayer {
        values: Vec::new(),
        password: None,
    };
    let mut problems = Vec::new();
    let unknown = |key: String, candidates: Vec<&'static str>| {
        let suggestion = match schema::closest(&key, candidates.iter().copied()) {
            Some(name) => format!("; did you mean `{name}`?"),
            None => format!(
                "; known keys are {}",
                schema::all_file_keys().collect::<Vec<_>>().join(", ")
            ),
        };
        Error::UnknownKey {
            file: file.label.clone(),
            key,
            suggestion,
        }
    };
    for (section, value) in &table {
        let toml::Value::Table(inner) = value else {
            let candidates = schema::all_file_keys().collect();
            problems.push(unknown(section.clone(), candidates));
            continue;
        };
        if section != "database" && section != "policy" {
            problems.push(unknown(section.clone(), vec!["database", "policy"]));
            continue;
        }
        for (name, value) in inner {
            let dotted = format!("{section}.{name}");
            if dotted == schema::PASSWORD {
                if !schema::THROWAWAY_ENVIRONMENTS.contains(&env_name) {
                    problems.push(Error::LiteralPassword {
                        file: file.label.clone(),
                        env: env_name.to_owned(),
                    });
                    continue;
                }
                match value {
                    toml::Value::String(secret) if !secret.is_empty() => {
                        layer.password = Some(PasswordSource::Literal {
                            secret: SecretString::from(secret.clone()),
                            origin: file.label.clone(),
                        });
                    }
                    _ => problems.push(Error::WrongType {
                        origin: file.label.clone(),
                        key: dotted,
                        expected: "a non-empty string".to_owned(),
                        found: "another type or an empty string".to_owned(),
                    }),
                }
                continue;
            }
            if dotted == schema::PASSWORD_FILE {
                match value {
                    toml::Value::String(path) if !path.trim().is_empty() => {
                        if layer.password.is_some() {
                            problems.push(Error::Conflict {
                                first: format!("`database.password` in {}", file.label),
                                second: format!("`database.password_file` in {}", file.label),
                            });
                        }
                        layer.password = Some(PasswordSource::File {
                            path: PathBuf::from(resolve_path(&file.base_dir, path)),
                            origin: file.label.clone(),
                        });
                    }
                    other => problems.push(Error::WrongType {
                        origin: file.label.clone(),
                        key: dotted,
                        expected: "a path (a string)".to_owned(),
                        found: format!("{other}"),
                    }),
                }
                continue;
            }
            let Some(key) = schema::key(&dotted) else {
                problems.push(unknown(dotted, schema::all_file_keys().collect()));
                continue;
            };
            match schema::validate(key, Raw::Toml(value), &file.label) {
                Ok(value) => {
                    let value = match (key.kind, value) {
                        (schema::Kind::Path, Value::String(tag, path)) => {
                            Value::String(tag, resolve_path(&file.base_dir, &path))
                        }
                        (_, value) => value,
                    };
                    layer.values.push((key.name, value));
                }
                Err(err) => problems.push(err),
            }
        }
    }
    if problems.is_empty() {
        Ok(layer)
    } else {
        Err(problems)
    }
}

/// Every layer of one environment, merged.
pub(crate) struct Resolution {
    pub env: String,
    pub location: EnvironmentsLocation,
    pub file_label: String,
    pub figment: Figment,
    /// Defaults and the environment file only: the policy as reviewed.
    reviewed: Figment,
    /// The file says `require_confirm = true`: variables and flags may only tighten its policy.
    file_locks_policy: bool,
    ranks: HashMap<String, Rank>,
    pub password: Option<(Rank, PasswordSource)>,
    pub url_present: bool,
    pub warnings: Vec<String>,
}

struct Builder {
    figment: Figment,
    ranks: HashMap<String, Rank>,
}

impl Builder {
    fn add(&mut self, name: String, rank: Rank, values: Vec<(&'static str, Value)>) {
        if values.is_empty() {
            return;
        }
        let mut dict = Dict::new();
        for (key, value) in values {
            insert(&mut dict, key, value);
        }
        self.ranks.insert(name.clone(), rank);
        let figment = std::mem::take(&mut self.figment);
        self.figment = figment.merge(Layer { name, dict });
    }
}

fn defaults(base_dir: &Path) -> Vec<(&'static str, Value)> {
    vec![
        ("database.target", Value::from("server")),
        (
            "database.managed_root",
            Value::from(base_dir.join(".dev-db").display().to_string()),
        ),
        ("database.host", Value::from("localhost")),
        ("database.port", Value::from(5432_u16)),
        ("database.dbname", Value::from("ecomind")),
        ("database.user", Value::from("ecomind")),
        ("database.sslmode", Value::from("prefer")),
        ("database.connect_timeout", Value::from("10s")),
        ("database.target_session_attrs", Value::from("any")),
        ("policy.lock_wait", Value::from("1min")),
        ("policy.lock_timeout", Value::from("5s")),
        ("policy.statement_timeout", Value::from("0")),
        ("policy.allow_rollback", Value::from(false)),
        ("policy.require_confirm", Value::from(true)),
    ]
}

/// Chooses the password source of the highest rank; two at one rank conflict.
fn offer(
    current: &mut Option<(Rank, PasswordSource)>,
    rank: Rank,
    source: PasswordSource,
) -> Result<(), Error> {
    if let Some((existing, previous)) = current {
        if *existing == rank {
            return Err(Error::Conflict {
                first: previous.describe(),
                second: source.describe(),
            });
        }
    }
    *current = Some((rank, source));
    Ok(())
}

/// Merges the layers. With `runtime` false only defaults and the file count
/// (what `config check` validates); otherwise variables and flags too.
pub(crate) fn resolve(opts: &LoadOptions<'_>, runtime: bool) -> Result<Resolution, Error> {
    let location = locate(opts.environments_dir)?;
    let file = read_env_file(&location, opts.env)?;
    let file_layer = parse_file(&file, opts.env).map_err(|mut problems| problems.remove(0))?;

    let mut builder = Builder {
        figment: Figment::new(),
        ranks: HashMap::new(),
    };
    let mut warnings = Vec::new();
    builder.add("default".to_owned(), RANK_DEFAULT, defaults(&file.base_dir));
    let file_locks_policy = file_layer
        .values
        .iter()
        .any(|(key, value)| *key == "policy.require_confirm" && value.to_bool() == Some(true));
    builder.add(file.label.clone(), RANK_FILE, file_layer.values);
    let reviewed = builder.figment.clone();
    let mut password = file_layer.password.map(|source| (RANK_FILE, source));
    let mut url_present = false;

    if runtime {
        // ECOMIND_DB_* variables.
        for key in schema::KEYS {
            if let Some(text) = var(key.var)? {
                let origin = format!("env {}", key.var);
                let value = schema::validate(key, Raw::Text(&text), &origin)?;
                builder.add(origin, RANK_ECOMIND, vec![(key.name, value)]);
            }
        }
        if let Some(secret) = secret_var("ECOMIND_DB_PASSWORD")? {
            offer(
                &mut password,
                RANK_ECOMIND,
                PasswordSource::Literal {
                    secret,
                    origin: "env ECOMIND_DB_PASSWORD".to_owned(),
                },
            )?;
        }
        if let Some(path) = var("ECOMIND_DB_PASSWORD_FILE")? {
            let source = PasswordSource::File {
                path: PathBuf::from(path),
                origin: "env ECOMIND_DB_PASSWORD_FILE".to_owned(),
            };
            offer(&mut password, RANK_ECOMIND, source)?;
        }
        for (name, _) in env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("ECOMIND_DB_")
                && !schema::KEYS.iter().any(|key| key.var == name)
                && !schema::OTHER_VARS.contains(&name)
            {
                let known = schema::KEYS
                    .iter()
                    .map(|key| key.var)
                    .chain(schema::OTHER_VARS.iter().copied());
                let hint = schema::closest(name, known)
                    .map(|near| format!(" (did you mean {near}?)"))
                    .unwrap_or_default();
                warnings.push(format!("env {name} is not a setting and is ignored{hint}"));
            }
        }

        // libpq variables.
        for (name, dotted) in LIBPQ_VARS {
            if let Some(text) = var(name)? {
                let origin = format!("env {name}");
                let key = schema::key(dotted).expect("libpq keys are known");
                let text = if *name == "PGCONNECT_TIMEOUT" {
                    let seconds: u64 = text.trim().parse().map_err(|_| Error::InvalidValue {
                        origin: origin.clone(),
                        key: dotted.to_string(),
                        message: format!("{text:?} is not a whole number of seconds"),
                    })?;
                    format!("{seconds}s")
                } else {
                    text
                };
                let value = schema::validate(key, Raw::Text(&text), &origin)?;
                builder.add(origin, RANK_LIBPQ, vec![(key.name, value)]);
            }
        }
        if let Some(secret) = secret_var("PGPASSWORD")? {
            offer(
                &mut password,
                RANK_LIBPQ,
                PasswordSource::Literal {
                    secret,
                    origin: "env PGPASSWORD".to_owned(),
                },
            )?;
        }

        // DATABASE_URL.
        if let Some(url) = secret_var("DATABASE_URL")? {
            url_present = true;
            let parts = url::parse(&url)?;
            let origin = "env DATABASE_URL".to_owned();
            builder.add(origin.clone(), RANK_URL, url::values(&parts)?);
            if let Some(secret) = parts.password {
                offer(
                    &mut password,
                    RANK_URL,
                    PasswordSource::Literal { secret, origin },
                )?;
            }
        }

        // Command-line flags.
        let flags = opts.flags;
        let port = flags.port.map(|port| port.to_string());
        let sslmode = flags.sslmode.map(|mode| mode.as_str().to_owned());
        for (flag, dotted, value) in [
            ("--host", "database.host", flags.host.clone()),
            ("--port", "database.port", port),
            ("--dbname", "database.dbname", flags.dbname.clone()),
            ("--user", "database.user", flags.user.clone()),
            ("--sslmode", "database.sslmode", sslmode),
        ] {
            if let Some(text) = value.filter(|text| !text.is_empty()) {
                let origin = format!("flag {flag}");
                let key = schema::key(dotted).expect("flag keys are known");
                let value = schema::validate(key, Raw::Text(&text), &origin)?;
                builder.add(origin, RANK_FLAG, vec![(key.name, value)]);
            }
        }
        if let Some(path) = &flags.password_file {
            let source = PasswordSource::File {
                path: path.clone(),
                origin: "flag --password-file".to_owned(),
            };
            offer(&mut password, RANK_FLAG, source)?;
        }
    }

    Ok(Resolution {
        env: opts.env.to_owned(),
        location,
        file_label: file.label,
        figment: builder.figment,
        reviewed,
        file_locks_policy,
        ranks: builder.ranks,
        password,
        url_present,
        warnings,
    })
}

#[derive(Deserialize)]
struct RawSettings {
    database: RawDatabase,
    policy: RawPolicy,
}

#[derive(Deserialize)]
struct RawDatabase {
    target: String,
    managed_root: String,
    host: String,
    port: RawPort,
    dbname: String,
    user: String,
    sslmode: String,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    sslcrl: Option<String>,
    target_session_attrs: String,
    passfile: Option<String>,
    connect_timeout: String,
}

/// One port (a number) or a validated comma-separated list of them (text).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPort {
    One(u16),
    List(String),
}

#[derive(Deserialize)]
struct RawPolicy {
    lock_wait: String,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
    allow_rollback: bool,
    require_confirm: bool,
}

impl Resolution {
    /// The source name and rank of the winning value of a key.
    pub(crate) fn source(&self, key: &str) -> Option<(String, Rank)> {
        let metadata = self.figment.find_metadata(key)?;
        let name = metadata.name.to_string();
        let rank = self.ranks.get(&name).copied().unwrap_or(RANK_DEFAULT);
        Some((name, rank))
    }

    /// Why the target is a server although the file says `managed`, if it is.
    pub(crate) fn server_override(&self, target: &str) -> Option<String> {
        if target != "managed" {
            return None;
        }
        let (_, target_rank) = self.source("database.target")?;
        let host = self
            .source("database.host")
            .filter(|(_, rank)| *rank > target_rank);
        match host {
            Some((name, _)) => Some(name),
            None if self.url_present && RANK_URL > target_rank => {
                Some("env DATABASE_URL".to_owned())
            }
            None => None,
        }
    }

    fn raw(&self) -> Result<RawSettings, Error> {
        self.figment.extract().map_err(|err| Error::Incomplete {
            env: self.env.clone(),
            message: format!("the merged settings do not fit together: {}", err.kind),
        })
    }

    /// The policy of `raw`, its durations parsed.
    fn policy(&self, raw: &RawPolicy) -> Result<Policy, Error> {
        let duration = |key: &str, text: &str| {
            schema::parse_duration(text).map_err(|message| Error::InvalidValue {
                origin: self.source(key).map(|(name, _)| name).unwrap_or_default(),
                key: key.to_owned(),
                message,
            })
        };
        // A configured "0" is `Some(ZERO)`: no limit, which the engine sets
        // explicitly so that a server or role setting does not apply. `None`
        // (keep the server's setting) only when no layer sets the key.
        let optional = |key: &str, text: &Option<String>| -> Result<Option<Duration>, Error> {
            text.as_deref().map(|text| duration(key, text)).transpose()
        };
        Ok(Policy {
            lock_wait: duration("policy.lock_wait", &raw.lock_wait)?,
            lock_timeout: optional("policy.lock_timeout", &raw.lock_timeout)?,
            statement_timeout: optional("policy.statement_timeout", &raw.statement_timeout)?,
            allow_rollback: raw.allow_rollback,
            require_confirm: raw.require_confirm,
        })
    }

    /// Refuses a variable or flag that loosens the policy of a file that says
    /// `require_confirm = true`; tightening is fine.
    fn check_not_loosened(&self, policy: &Policy) -> Result<(), Error> {
        if !self.file_locks_policy {
            return Ok(());
        }
        let reviewed: RawSettings = self.reviewed.extract().map_err(|err| Error::Incomplete {
            env: self.env.clone(),
            message: format!("the environment file does not fit together: {}", err.kind),
        })?;
        let reviewed = self.policy(&reviewed.policy)?;
        for key in policy.loosened_from(&reviewed) {
            if let Some((origin, rank)) = self.source(key) {
                if rank > RANK_FILE {
                    return Err(Error::PolicyLoosened {
                        origin,
                        key: key.to_owned(),
                        env: self.env.clone(),
                        file: self.file_label.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds the typed settings; with `read_password` the secret file (if any) is read.
    pub(crate) fn settings(&self, read_password: bool) -> Result<Settings, Error> {
        let raw = self.raw()?;
        let duration = |key: &str, text: &str| {
            schema::parse_duration(text).map_err(|message| Error::InvalidValue {
                origin: self.source(key).map(|(name, _)| name).unwrap_or_default(),
                key: key.to_owned(),
                message,
            })
        };
        let policy = self.policy(&raw.policy)?;
        self.check_not_loosened(&policy)?;
        let db = raw.database;
        let managed = db.target == "managed" && self.server_override(&db.target).is_none();
        let target = if managed {
            Target::Managed {
                root: PathBuf::from(db.managed_root),
                dbname: db.dbname,
            }
        } else {
            let sslmode: SslMode =
                db.sslmode
                    .parse()
                    .map_err(|err: crate::ParseSslModeError| Error::InvalidValue {
                        origin: self
                            .source("database.sslmode")
                            .map(|(name, _)| name)
                            .unwrap_or_default(),
                        key: "database.sslmode".to_owned(),
                        message: err.to_string(),
                    })?;
            if sslmode.verifies() && db.sslrootcert.is_none() {
                return Err(Error::Incomplete {
                    env: self.env.clone(),
                    message: format!(
                        "sslmode {sslmode} (from {}) needs a CA certificate: set `sslrootcert` in {}, ECOMIND_DB_SSLROOTCERT or PGSSLROOTCERT to a PEM file, or to \"system\"",
                        self.source("database.sslmode").map(|(name, _)| name).unwrap_or_default(),
                        self.file_label
                    ),
                });
            }
            let hosts = schema::parse_hosts(&db.host).map_err(|message| Error::InvalidValue {
                origin: self
                    .source("database.host")
                    .map(|(name, _)| name)
                    .unwrap_or_default(),
                key: "database.host".to_owned(),
                message,
            })?;
            let origin = |key: &str| self.source(key).map(|(name, _)| name).unwrap_or_default();
            let ports = match db.port {
                RawPort::One(port) => vec![port],
                RawPort::List(list) => {
                    schema::parse_ports(&list).map_err(|message| Error::InvalidValue {
                        origin: origin("database.port"),
                        key: "database.port".to_owned(),
                        message,
                    })?
                }
            };
            if ports.len() > 1 && ports.len() != hosts.len() {
                return Err(Error::Incomplete {
                    env: self.env.clone(),
                    message: format!(
                        "{} ports (from {}) for {} hosts (from {}): give one port for every host, or one port per host in the same order",
                        ports.len(),
                        origin("database.port"),
                        hosts.len(),
                        origin("database.host"),
                    ),
                });
            }
            let target_session_attrs = db.target_session_attrs.parse().map_err(
                |err: crate::ParseTargetSessionAttrsError| Error::InvalidValue {
                    origin: origin("database.target_session_attrs"),
                    key: "database.target_session_attrs".to_owned(),
                    message: err.to_string(),
                },
            )?;
            if db.sslcert.is_some() != db.sslkey.is_some() {
                let (set, missing) = if db.sslcert.is_some() {
                    ("sslcert", "sslkey")
                } else {
                    ("sslkey", "sslcert")
                };
                return Err(Error::Incomplete {
                    env: self.env.clone(),
                    message: format!(
                        "{set} (from {}) needs {missing}: set both the client certificate and its key, or neither",
                        origin(&format!("database.{set}"))
                    ),
                });
            }
            if db.sslcrl.is_some() && db.sslrootcert.is_none() {
                return Err(Error::Incomplete {
                    env: self.env.clone(),
                    message: format!(
                        "sslcrl (from {}) needs sslrootcert: revocation lists are checked while verifying the server certificate against a CA",
                        origin("database.sslcrl")
                    ),
                });
            }
            let mut server = Server {
                hosts,
                ports,
                dbname: db.dbname,
                user: db.user,
                password: None,
                password_origin: None,
                sslmode,
                sslrootcert: db.sslrootcert.map(PathBuf::from),
                sslcert: db.sslcert.map(PathBuf::from),
                sslkey: db.sslkey.map(PathBuf::from),
                sslcrl: db.sslcrl.map(PathBuf::from),
                target_session_attrs,
                passfile: None,
                connect_timeout: duration("database.connect_timeout", &db.connect_timeout)?,
            };
            if let Some((_, source)) = &self.password {
                server.password_origin = Some(source.describe());
                if read_password {
                    server.password = Some(source.resolve()?);
                }
            } else if let Some((path, named_by)) =
                passfile_path(db.passfile.as_deref(), || origin("database.passfile"))
                    .filter(|(path, _)| db.passfile.is_some() || path.exists())
            {
                server.password_origin = Some(format!(
                    "the matching line of {} (libpq's password file, named by {named_by})",
                    path.display()
                ));
                if read_password {
                    let explicit = db.passfile.is_some();
                    server.passfile = PassFile::load(&path, &named_by, explicit)?;
                    if server.passfile.is_none() {
                        server.password_origin = None;
                    }
                }
            }
            Target::Server(server)
        };
        Ok(Settings {
            env: self.env.clone(),
            target,
            policy,
            environments: self.location.clone(),
            warnings: self.warnings.clone(),
        })
    }
}

/// The password file to consult when nothing else gives a password: the
/// configured one, else `~/.pgpass` as libpq.
pub(crate) fn passfile_path(
    configured: Option<&str>,
    origin: impl FnOnce() -> String,
) -> Option<(PathBuf, String)> {
    match configured {
        Some(path) => Some((PathBuf::from(path), origin())),
        None => {
            let home = env::var_os("HOME").filter(|home| !home.is_empty())?;
            Some((
                Path::new(&home).join(".pgpass"),
                "the default, ~/.pgpass".to_owned(),
            ))
        }
    }
}

#[cfg(test)]
// figment's `Jail` closures must return `figment::Result`, whose error is large.
#[allow(clippy::result_large_err)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt};

    use figment::Jail;
    use secrecy::ExposeSecret;

    use crate::{Flags, LoadOptions, Target};

    /// The password that wins is the one of the highest layer, read from its
    /// file when it is a file, with its trailing newline stripped.
    #[test]
    fn the_password_of_the_highest_layer_is_the_one_used() {
        let layers: &[(&str, &str)] = &[
            ("file", "from-file"),
            ("ECOMIND_DB_PASSWORD", "from-ecomind"),
            ("PGPASSWORD", "from-pg"),
            ("DATABASE_URL", "from-url"),
            ("flag", "from-flag"),
        ];
        for depth in 1..=layers.len() {
            Jail::expect_with(|jail| {
                jail.clear_env();
                jail.create_dir("environments")?;
                jail.create_dir("secrets")?;
                for (name, contents) in [
                    ("secrets/file", "from-file\n"),
                    ("secrets/flag", "from-flag\n"),
                ] {
                    let path = jail.directory().join(name);
                    fs::write(&path, contents).map_err(|e| e.to_string())?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .map_err(|e| e.to_string())?;
                }
                jail.create_file(
                    "environments/qa.toml",
                    "[database]\npassword_file = \"secrets/file\"\n",
                )?;
                let mut flags = Flags::default();
                for (layer, value) in &layers[1..depth] {
                    match *layer {
                        "DATABASE_URL" => jail.set_env(layer, format!("postgres://u:{value}@h/d")),
                        "flag" => flags.password_file = Some(jail.directory().join("secrets/flag")),
                        _ => jail.set_env(layer, value),
                    }
                }
                let settings = crate::load(&LoadOptions {
                    env: "qa",
                    environments_dir: None,
                    flags: &flags,
                })
                .map_err(|e| e.to_string())?;
                let Target::Server(server) = settings.target else {
                    return Err("expected a server".into());
                };
                let password = server
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned());
                assert_eq!(
                    password.as_deref(),
                    Some(layers[depth - 1].1),
                    "with {depth} layers"
                );
                Ok(())
            });
        }
    }
}
