//! From the command line to a connected database: settings, the managed dev cluster, the connection.

use anyhow::{Context, Result};
use ecomind_config::{Flags, LoadOptions, Server, Settings, Target as SettingsTarget};
use ecomind_snapshot::{Auth, Binaries, Cluster, ClusterOptions, Listen};

use crate::args::Target;

/// The `application_name` every connection of ours carries, so operators see it in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "ecomind-db";

/// Resolves the environment's settings with the command line's overrides.
pub fn settings(target: &Target) -> Result<Settings> {
    let flags = flags(target);
    let settings = ecomind_config::load(&load_options(target, &flags))
        .with_context(|| format!("cannot load the settings of environment '{}'", target.env))?;
    for warning in &settings.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(settings)
}

/// The environment's settings without its secrets: enough to apply its policy before a secret is read.
pub fn policy_settings(target: &Target) -> Result<Settings> {
    let flags = flags(target);
    ecomind_config::load_without_secrets(&load_options(target, &flags))
        .with_context(|| format!("cannot load the settings of environment '{}'", target.env))
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

/// What the loader needs to resolve `target`'s environment.
pub fn load_options<'a>(target: &'a Target, flags: &'a Flags) -> LoadOptions<'a> {
    LoadOptions {
        env: &target.env,
        environments_dir: target.environments.as_deref(),
        flags,
    }
}

/// The server to talk to; for the managed dev cluster, starts it first (creating it on first use).
pub fn server(settings: &Settings) -> Result<Server> {
    match &settings.target {
        SettingsTarget::Server(server) => Ok(server.clone()),
        SettingsTarget::Managed { root, dbname } => {
            let cluster = start_managed(root)?;
            cluster.ensure_database(dbname).with_context(|| {
                format!("cannot create database '{dbname}' in the local dev cluster")
            })?;
            Ok(Server::local_socket(
                cluster.socket_dir(),
                cluster.port(),
                cluster.superuser(),
                dbname,
            ))
        }
    }
}

/// Where the local dev cluster configured at `configured` lives: there, or, when run as root and
/// the unprivileged server user cannot reach it, under /var/tmp (said once on stderr).
pub fn managed_root(configured: &std::path::Path) -> Result<std::path::PathBuf> {
    let root = ecomind_snapshot::placement(configured).with_context(|| {
        format!(
            "cannot place the local dev cluster for {}",
            configured.display()
        )
    })?;
    if root != configured {
        eprintln!(
            "note: the local dev cluster lives in {} because the unprivileged `postgres` user that runs the server cannot reach {}",
            root.display(),
            configured.display()
        );
    }
    Ok(root)
}

/// Starts (or reuses) the local dev cluster configured at `root`.
pub fn start_managed(root: &std::path::Path) -> Result<Cluster> {
    let root = &managed_root(root)?;
    let binaries = binaries()?;
    Cluster::ensure_running(
        root,
        &ClusterOptions {
            binaries: &binaries,
            listen: Listen::Socket,
            auth: Auth::Trust,
            durable: true,
            settings: &[],
        },
    )
    .with_context(|| format!("cannot start the local dev cluster in {}", root.display()))
}

/// The PostgreSQL server binaries: `ECOMIND_DB_BIN_DIR` when set, else `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`.
pub fn binaries() -> Result<Binaries> {
    let configured = std::env::var_os("ECOMIND_DB_BIN_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    Binaries::locate(configured.as_deref())
        .context("the local dev cluster needs PostgreSQL server binaries")
}

/// Connects to the environment's database.
pub fn connect(settings: &Settings) -> Result<(postgres::Client, Server)> {
    let server = server(settings)?;
    // `ConnectError` already says "cannot connect to <server>: ..."; a context would repeat it.
    let client = server.connect(APPLICATION_NAME)?;
    Ok((client, server))
}
