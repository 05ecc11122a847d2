//! Planning and status: the history set against the catalog, what is pending, what disagrees,
//! and the invalid indexes a half-done migration left.

use std::collections::BTreeMap;
use std::fmt;

use postgres::Client;
use serde::Serialize;

use crate::catalog::{Catalog, Migration};
use crate::history::{AppliedMigration, UnfinishedAttempt};
use crate::Error;

/// A migration not applied yet.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    /// The version.
    pub version: i32,
    /// The name.
    pub name: String,
    /// `no-op` when its down file has no statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<&'static str>,
}

/// A disagreement between the history and the files. Any of them stops `migrate` before it changes anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// An applied migration's file changed since it was applied.
    ChecksumChanged {
        /// The version.
        version: i32,
        /// The file as it is now.
        file: String,
        /// The name in the history.
        applied_name: String,
    },
    /// An applied migration has no file any more.
    MissingFile {
        /// The version.
        version: i32,
        /// The name in the history.
        applied_name: String,
    },
    /// A never-applied file has a version below the applied head.
    OutOfOrder {
        /// The version.
        version: i32,
        /// The file.
        file: String,
        /// The highest applied version.
        head: i32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ChecksumChanged { version, file, applied_name } => write!(
                f,
                "{file} changed after it was applied as V{version}__{applied_name} (checksum differs); restore the file as it was applied and put the change in a new migration"
            ),
            Problem::MissingFile { version, applied_name } => write!(
                f,
                "V{version}__{applied_name} is applied but its file V{version}__{applied_name}.sql is missing; restore it"
            ),
            Problem::OutOfOrder { version, file, head } => write!(
                f,
                "{file} (version {version}) was never applied and is older than the applied head V{head}; give it a version above {head}, or pass --allow-out-of-order if applying it late is safe"
            ),
        }
    }
}

/// An invalid index: left behind by an interrupted `CREATE INDEX CONCURRENTLY`, or one being
/// built right now (every concurrent build is invalid until it finishes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvalidIndex {
    /// Its schema.
    pub schema: String,
    /// Its table.
    pub table: String,
    /// Its name.
    pub name: String,
    /// True while some session may still be building it: a build shows in
    /// `pg_stat_progress_create_index`, or another session holds the SHARE UPDATE EXCLUSIVE lock
    /// on its table that a concurrent build holds throughout (the progress view hides other
    /// roles' builds; VACUUM takes that lock too, so this errs on the side of leaving it alone).
    pub being_built: bool,
}

impl fmt::Display for InvalidIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} on {}", self.schema, self.name, self.table)
    }
}

/// Where a database stands against the catalog.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Applied migrations, from the history.
    pub applied: Vec<AppliedMigration>,
    /// Migrations of the catalog not applied yet.
    pub pending: Vec<Pending>,
    /// Disagreements between history and files.
    pub problems: Vec<Problem>,
    /// Invalid indexes that need repair.
    pub invalid_indexes: Vec<InvalidIndex>,
    /// True when this was read from a standby (a server in recovery), which may lag behind
    /// its primary.
    pub standby: bool,
    /// Attempts that never finished (killed, connection lost) and still matter: the newest
    /// attempt of a migration whose history shows it did not happen, or one running now.
    pub unfinished: Vec<UnfinishedAttempt>,
}

impl Status {
    /// True when something needs a human: divergence or a half-done migration. An index that
    /// is being built right now is not half-done.
    pub fn needs_attention(&self) -> bool {
        !self.problems.is_empty()
            || self.invalid_indexes.iter().any(|i| !i.being_built)
            || self.unfinished.iter().any(UnfinishedAttempt::needs_repair)
    }
}

/// Reads where the database stands, without taking the lock or changing anything.
pub fn status(client: &mut Client, catalog: &Catalog) -> Result<Status, Error> {
    let probe = crate::probe::probe(client, crate::probe::Ask::Status)?;
    let standby = probe.in_recovery;
    let mut applied = probe.applied;
    let (invalid_indexes, unfinished) = probe.status.unwrap_or_default();
    let noop = |version: i32| {
        catalog
            .get(version)
            .filter(|m| m.has_noop_down())
            .map(|_| crate::apply::NOOP_DOWN)
    };
    for a in &mut applied {
        a.down = noop(a.version);
    }
    let (pending, problems) = plan(catalog, &applied, false);
    Ok(Status {
        unfinished,
        pending: pending
            .iter()
            .map(|m| Pending {
                version: m.version(),
                name: m.name().to_owned(),
                down: noop(m.version()),
            })
            .collect(),
        applied,
        problems,
        invalid_indexes,
        standby,
    })
}

/// Compares the history with the catalog: what is pending, and what disagrees.
pub(crate) fn plan<'c>(
    catalog: &'c Catalog,
    applied: &[AppliedMigration],
    allow_out_of_order: bool,
) -> (Vec<&'c Migration>, Vec<Problem>) {
    let mut problems = Vec::new();
    let applied_by_version: BTreeMap<i32, &AppliedMigration> =
        applied.iter().map(|a| (a.version, a)).collect();
    for a in applied {
        match catalog.get(a.version) {
            None => problems.push(Problem::MissingFile {
                version: a.version,
                applied_name: a.name.clone(),
            }),
            Some(m) if m.checksum().to_string() != a.checksum || m.name() != a.name => problems
                .push(Problem::ChecksumChanged {
                    version: a.version,
                    file: m.file_name(),
                    applied_name: a.name.clone(),
                }),
            Some(_) => {}
        }
    }
    let head = applied.iter().map(|a| a.version).max();
    let mut pending = Vec::new();
    for m in catalog.migrations() {
        if applied_by_version.contains_key(&m.version()) {
            continue;
        }
        if let Some(head) = head.filter(|&h| m.version() < h) {
            if !allow_out_of_order {
                problems.push(Problem::OutOfOrder {
                    version: m.version(),
                    file: m.file_name(),
                    head,
                });
                continue;
            }
        }
        pending.push(m);
    }
    (pending, problems)
}

/// Invalid indexes outside the system schemas, and whether each is being built right now.
pub(crate) const INVALID_INDEXES: &str =
    "SELECT n.nspname::text, t.relname::text, i.relname::text, \
        EXISTS (SELECT 1 FROM pg_stat_progress_create_index p \
                WHERE p.index_relid = x.indexrelid) \
        OR EXISTS (SELECT 1 FROM pg_locks l \
                   WHERE l.locktype = 'relation' AND l.relation = x.indrelid \
                     AND l.database = (SELECT oid FROM pg_database \
                                       WHERE datname = current_database()) \
                     AND l.mode = 'ShareUpdateExclusiveLock' AND l.granted \
                     AND l.pid <> pg_backend_pid()) \
    FROM pg_index x \
    JOIN pg_class i ON i.oid = x.indexrelid \
    JOIN pg_class t ON t.oid = x.indrelid \
    JOIN pg_namespace n ON n.oid = i.relnamespace \
    WHERE NOT x.indisvalid \
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname NOT LIKE 'pg_toast%' \
    ORDER BY 1, 3";

/// Whether there is any invalid index at all (in the system schemas too): the cheap check
/// `status` makes first, nearly always false.
pub(crate) const ANY_INVALID_INDEX: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_index WHERE NOT indisvalid)";

/// Invalid indexes outside the system schemas.
pub(crate) fn invalid_indexes(client: &mut Client) -> Result<Vec<InvalidIndex>, Error> {
    let messages = client
        .simple_query(INVALID_INDEXES)
        .map_err(Error::db("cannot look for invalid indexes"))?;
    Ok(crate::probe::invalid_rows(
        crate::probe::split_results(messages).first(),
    ))
}
