//! From the command line to a connected database: the environment resolved once, the policy
//! checked before any secret is read, the managed dev cluster started, the connection.

use anyhow::{Context, Result};
use ecomind_config::{
    ConfirmError, Environment, Flags, LoadOptions, Policy, Server, Settings,
    Target as SettingsTarget,
};

use crate::args::Target;
use crate::output::Output;

/// The `application_name` every connection of ours carries, so operators see it in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "ecomind-db";

/// A command's database: its settings, the server, and a connection to it.
pub struct Opened {
    pub settings: Settings,
    pub server: Server,
    pub client: postgres::Client,
}

/// The command line's connection overrides.
pub fn flags(target: &Target) -> Flags {
    Flags {
        host: target.host.clone(),
        port: target.port,
        dbname: target.dbname.clone(),
        user: target.user.clone(),
        password_file: target.password_file.clone(),
        sslmode: target.sslmode,
    }
}

/// Resolves `target`'s environment once, with the command line's overrides.
pub fn environment(target: &Target) -> Result<Environment> {
    resolve(target)
        .with_context(|| format!("cannot load the settings of environment '{}'", target.env))
}

/// As [`environment`], without context, for callers that say what they were doing.
pub fn resolve(target: &Target) -> Result<Environment, ecomind_config::Error> {
    let flags = flags(target);
    Environment::resolve(&LoadOptions {
        env: &target.env,
        environments_dir: target.environments.as_deref(),
        flags: &flags,
    })
}

/// The environment's settings with its password; its warnings go to stderr.
pub fn settings(environment: &Environment, target: &Target, out: &Output) -> Result<Settings> {
    let settings = environment
        .settings()
        .with_context(|| format!("cannot load the settings of environment '{}'", target.env))?;
    for warning in &settings.warnings {
        out.log(&format!("warning: {warning}"));
    }
    Ok(settings)
}

/// Connects for a command that changes nothing the policy guards.
pub fn open(target: &Target, out: &Output) -> Result<Opened> {
    let environment = environment(target)?;
    let settings = settings(&environment, target, out)?;
    connect(settings, out)
}

/// Connects for a destructive command: `check` sees the policy before any secret is read,
/// and stderr says which database the command acts on and where that came from.
pub fn open_destructive(
    target: &Target,
    out: &Output,
    command: &str,
    check: impl FnOnce(&Policy, &str) -> Result<(), ConfirmError>,
) -> Result<Opened> {
    let environment = environment(target)?;
    let policy = environment
        .settings_without_secrets()
        .with_context(|| format!("cannot load the settings of environment '{}'", target.env))?;
    check(&policy.policy, &policy.env)?;
    let settings = settings(&environment, target, out)?;
    let opened = connect(settings, out)?;
    announce(out, command, &environment, &opened.server);
    Ok(opened)
}

/// Says on stderr, before a destructive command changes anything, which database it acts on and
/// where the target and the policy came from, so a stray PGHOST, DATABASE_URL or policy variable
/// cannot go unnoticed.
fn announce(out: &Output, command: &str, environment: &Environment, server: &Server) {
    let Ok(explanation) = environment.explain() else {
        return;
    };
    let source = |key: &str| {
        explanation
            .values
            .iter()
            .find(|v| v.key == key)
            .map_or_else(|| "default".to_owned(), |v| v.source.clone())
    };
    out.log(&format!(
        "{command} on {} (environment {}; host from {}, database from {})",
        server.describe(),
        explanation.env,
        source("database.host"),
        source("database.dbname")
    ));
    for key in ["policy.allow_rollback", "policy.require_confirm"] {
        let from = source(key);
        if from.starts_with("env ") || from.starts_with("flag ") {
            out.log(&format!(
                "note: {key} comes from {from}, not from the environment file"
            ));
        }
    }
}

/// The server to talk to; for the managed dev cluster, starts it first (creating it on first use).
pub fn server(settings: &Settings, out: &Output) -> Result<Server> {
    match &settings.target {
        SettingsTarget::Server(server) => Ok(server.clone()),
        SettingsTarget::Managed { root, dbname } => {
            let root = dev_root(root, out)?;
            let cluster = ecomind_snapshot::start_dev_cluster(&root, dbname)?;
            Ok(Server::local_socket(
                cluster.socket_dir(),
                cluster.port(),
                cluster.superuser(),
                dbname,
            ))
        }
    }
}

/// Where the local dev cluster configured at `configured` lives; says so on stderr when that is
/// not where it was configured.
pub fn dev_root(configured: &std::path::Path, out: &Output) -> Result<std::path::PathBuf> {
    let placed = ecomind_snapshot::dev_root(configured)?;
    if placed.moved {
        out.log(&format!(
            "note: the local dev cluster lives in {} because the unprivileged `postgres` user that runs the server cannot reach {}",
            placed.root.display(),
            configured.display()
        ));
    }
    Ok(placed.root)
}

/// Connects to the settings' database.
fn connect(settings: Settings, out: &Output) -> Result<Opened> {
    let server = server(&settings, out)?;
    // `ConnectError` already says "cannot connect to <server>: ..."; a context would repeat it.
    let client = server.connect(APPLICATION_NAME)?;
    Ok(Opened {
        settings,
        server,
        client,
    })
}
