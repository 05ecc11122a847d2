//! The developer's local dev cluster: where it lives, creating and starting it, and the one
//! place `ECOMIND_DB_BIN_DIR` is read.

use std::path::{Path, PathBuf};

use crate::{placement, Auth, Binaries, Cluster, ClusterOptions, Error, Listen};

/// The variable that names the PostgreSQL bin folder to use.
pub const BIN_DIR_VARIABLE: &str = "ECOMIND_DB_BIN_DIR";

/// The folder `ECOMIND_DB_BIN_DIR` names, when it is set and not empty.
pub fn configured_bin_dir() -> Option<PathBuf> {
    std::env::var_os(BIN_DIR_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Binaries {
    /// Finds the server binaries: `ECOMIND_DB_BIN_DIR` when set, else `pg_config --bindir`,
    /// else the newest `/usr/lib/postgresql/*/bin`.
    pub fn from_env() -> Result<Binaries, Error> {
        Binaries::locate(configured_bin_dir().as_deref())
    }
}

/// Where the dev cluster configured at `configured` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevRoot {
    /// The folder the cluster is in.
    pub root: PathBuf,
    /// True when that is not the configured folder: when run as root and the unprivileged
    /// server user cannot reach it, the cluster lives under /var/tmp (say so once).
    pub moved: bool,
}

/// Places the dev cluster configured at `configured` (see [`placement`]).
pub fn dev_root(configured: &Path) -> Result<DevRoot, Error> {
    let root = placement(configured).map_err(|e| Error::DevCluster {
        context: format!(
            "cannot place the local dev cluster for {}",
            configured.display()
        ),
        source: Box::new(e),
    })?;
    Ok(DevRoot {
        moved: root != configured,
        root,
    })
}

/// Starts (or reuses, creating it on first use) the dev cluster in `root` (as placed by
/// [`dev_root`]), with the database `dbname` in it.
pub fn start_dev_cluster(root: &Path, dbname: &str) -> Result<Cluster, Error> {
    let binaries = Binaries::from_env().map_err(|e| Error::DevCluster {
        context: "the local dev cluster needs PostgreSQL server binaries".to_owned(),
        source: Box::new(e),
    })?;
    let cluster = Cluster::ensure_running(
        root,
        &ClusterOptions {
            binaries: &binaries,
            listen: Listen::Socket,
            auth: Auth::Trust,
            durable: true,
            settings: &[],
        },
    )
    .map_err(|e| Error::DevCluster {
        context: format!("cannot start the local dev cluster in {}", root.display()),
        source: Box::new(e),
    })?;
    cluster
        .ensure_database(dbname)
        .map_err(|e| Error::DevCluster {
            context: format!("cannot create database '{dbname}' in the local dev cluster"),
            source: Box::new(e),
        })?;
    Ok(cluster)
}
