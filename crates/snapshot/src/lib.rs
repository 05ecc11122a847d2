//! PostgreSQL clusters that ecomind-db runs itself: the developer's persistent dev cluster and throwaway sandboxes for tests and dry runs.
//!
//! [`Binaries::locate`] finds the server programs, [`Cluster::ensure_running`] creates,
//! starts or reuses a cluster in a folder, and [`Sandbox::start`] makes a cluster that
//! removes itself when its owner goes away. Every subprocess runs through one helper
//! (`process`) with a controlled environment, as the `postgres` OS user when this process
//! is root; passwords travel only in files, never on a command line.
//!
//! For dry runs, [`Dump::inspect`] reads what a pg_dump output is from its bytes, and
//! [`restore`] restores it into a sandbox, through the [`TemplateCache`] when given one.

mod binaries;
pub mod cache;
mod cluster;
mod dev;
pub mod dump;
mod error;
mod leftovers;
mod os;
mod process;
pub mod restore;
mod sandbox;

pub use binaries::Binaries;
pub use cache::TemplateCache;
pub use cluster::{placement, Auth, Cluster, ClusterOptions, Listen};
pub use dev::{configured_bin_dir, dev_root, start_dev_cluster, DevRoot, BIN_DIR_VARIABLE};
pub use dump::{Dump, DumpFormat};
pub use error::Error;
pub use restore::{restore, RestoreOptions, RestoreProgress, Restored};
pub use sandbox::Sandbox;

/// Re-exported so callers can build [`Auth::Password`] without naming the crate.
pub use secrecy::SecretString;
