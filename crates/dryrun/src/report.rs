//! What a dry run found, as data: the CLI renders it as text, JSON or Markdown.

use serde::Serialize;

use crate::census::Loss;

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct DryRunReport {
    /// The dump.
    pub snapshot: SnapshotInfo,
    /// How it was restored.
    pub restore: RestoreInfo,
    /// The snapshot's applied head before the dry run (after the rehearsed baseline, if any).
    pub start_version: Option<i32>,
    /// The version a rehearsed baseline stamped, when `--baseline` was given.
    pub baseline: Option<i32>,
    /// The pending migrations, in the order they ran.
    pub migrations: Vec<MigrationRun>,
    /// Possible data loss, declared or not.
    pub data_loss: Vec<DataLoss>,
    /// The rollback rehearsal.
    pub rollback: RollbackInfo,
    /// `verify` after the migrations ran (again).
    pub verify: Option<VerifyInfo>,
    /// The migration that failed, with the server's message.
    pub failure: Option<String>,
    /// `pass` or `fail`.
    pub verdict: Verdict,
}

/// pass or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every migration ran, no undeclared data loss, the rollback rehearsal passed.
    Pass,
    /// Something did not.
    Fail,
}

impl DryRunReport {
    /// True when a migration failed to apply (exit 1).
    pub fn migration_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Undeclared data loss, a failed rollback rehearsal or drift after the run (exit 4).
    pub fn needs_attention(&self) -> bool {
        self.data_loss.iter().any(|d| !d.declared)
            || (self.rollback.ran && !self.rollback.ok)
            || self.verify.as_ref().is_some_and(|v| !v.ok)
    }
}

/// The dump, as read from its bytes.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    /// The path given.
    pub path: String,
    /// `custom`, `directory`, `tar`, `plain` or `plain-gzip`.
    pub format: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The source server's version string.
    pub source_server_version: Option<String>,
    /// pg_dump's version string.
    pub pg_dump_version: Option<String>,
    /// The archive version (archives only).
    pub archive_version: Option<String>,
    /// The archive's compression (archives only).
    pub compression: Option<String>,
    /// The database the dump was taken from.
    pub database: Option<String>,
}

/// How the dump got into the sandbox.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreInfo {
    /// Wall time of the restore or template copy, ANALYZE included.
    pub seconds: f64,
    /// True when a cached template was copied.
    pub from_cache: bool,
    /// How the template was copied or saved: `reflink` or `copy`.
    pub copy_method: Option<String>,
    /// The cache folder (it holds production data).
    pub cache_dir: Option<String>,
    /// The sandbox server's `postgres --version`.
    pub server_version: String,
    /// Set when the sandbox's major differs from the dump's.
    pub major_note: Option<String>,
    /// The server settings the migrations ran under.
    pub settings: Vec<(String, String)>,
}

/// One migration of the dry run.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationRun {
    /// Its version.
    pub version: i32,
    /// Its name.
    pub name: String,
    /// Wall time from start to commit.
    pub seconds: f64,
    /// False when it ran outside a transaction.
    pub transactional: bool,
    /// False outside a transaction: each statement's locks are released before they can be read.
    pub locks_traced: bool,
    /// True when its up file declares `-- ecomind:destructive`.
    pub destructive: bool,
    /// Each statement, in order.
    pub statements: Vec<StatementRecord>,
    /// Row counts of every table before and after.
    pub rows: Vec<RowCount>,
    #[serde(skip)]
    pub(crate) losses: Vec<Loss>,
}

impl MigrationRun {
    /// Locks that block reads or writes, with the statement line that took them.
    pub fn dangerous_locks(&self) -> impl Iterator<Item = (usize, &LockHeld)> {
        self.statements.iter().flat_map(|s| {
            s.locks
                .iter()
                .filter(|l| l.blocks.is_some())
                .map(move |l| (s.line, l))
        })
    }

    /// Relations rewritten, with the statement line that rewrote them.
    pub fn rewrites(&self) -> impl Iterator<Item = (usize, &str)> {
        self.statements
            .iter()
            .flat_map(|s| s.rewrites.iter().map(move |r| (s.line, r.as_str())))
    }
}

/// One statement.
#[derive(Clone, Debug, Serialize)]
pub struct StatementRecord {
    /// The line of the file it starts on.
    pub line: usize,
    /// Its text, on one line, abbreviated.
    pub sql: String,
    /// How long it took.
    pub seconds: f64,
    /// The relation locks it took, held until commit.
    pub locks: Vec<LockHeld>,
    /// Relations whose files it replaced (a table or index rewrite).
    pub rewrites: Vec<String>,
}

/// A relation lock and how long it was held.
#[derive(Clone, Debug, Serialize)]
pub struct LockHeld {
    /// The table or index.
    pub relation: String,
    /// The mode, e.g. `ACCESS EXCLUSIVE`.
    pub mode: String,
    /// From the start of the statement that took it until commit.
    pub held_seconds: f64,
    /// What it blocks for other sessions (`reads and writes`, `writes`), if anything. Locks
    /// on relations the migration itself created block nobody: they are invisible until commit.
    pub blocks: Option<String>,
    /// True when the migration created the relation.
    pub created_here: bool,
}

/// A table's rows around one migration; `None` where it did not exist.
#[derive(Clone, Debug, Serialize)]
pub struct RowCount {
    /// The table.
    pub table: String,
    /// Rows before.
    pub before: Option<i64>,
    /// Rows after.
    pub after: Option<i64>,
}

/// Possible data loss caused by one migration.
#[derive(Clone, Debug, Serialize)]
pub struct DataLoss {
    /// The migration.
    pub version: i32,
    /// Its name.
    pub name: String,
    /// `rows_lost`, `table_dropped` or `column_dropped`.
    pub kind: &'static str,
    /// The table.
    pub table: String,
    /// The column, for a dropped column.
    pub column: Option<String>,
    /// Rows before.
    pub before: i64,
    /// Rows after (0 for a dropped table).
    pub after: i64,
    /// True when the migration declares it with `-- ecomind:destructive`.
    pub declared: bool,
}

/// The rollback rehearsal.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RollbackInfo {
    /// False when it was not run (`--no-rollback`, nothing pending, a failed migration, an
    /// irreversible migration).
    pub ran: bool,
    /// The downs ran, the schema equals the restored one and every table has its rows.
    pub ok: bool,
    /// The schema fingerprint after the downs equals the restored one.
    pub schema_identical: bool,
    /// Every table of the restored database has its rows after the downs.
    pub rows_intact: bool,
    /// Wall time of the downs.
    pub seconds: f64,
    /// How the schema differs, or which table lost rows.
    pub differences: Vec<String>,
    /// Why it did not run or what failed.
    pub note: Option<String>,
}

/// `verify` after the run.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyInfo {
    /// True when the live schema is what the applied migrations produce.
    pub ok: bool,
    /// The differences.
    pub differences: Vec<String>,
}
