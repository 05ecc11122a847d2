//! The EcoMind migration engine: the catalog of migration files, the plan, and applying it
//! safely under an advisory lock, one transaction per migration together with its history row.
//!
//! refinery supplies the migration identity (name parsing rules and checksum) and the history
//! table layout, so refinery's own tools can read our databases. The apply loop is ours because
//! refinery commits a migration and its history row separately, takes no lock and cannot run a
//! statement outside a transaction.

mod apply;
pub mod baseline;
mod blockers;
pub mod catalog;
pub mod classify;
pub mod fingerprint;
mod history;
mod lock;
mod observe;
mod plan;
mod preview;
mod probe;
pub mod quote;
mod rehearsal;
pub mod repair;
mod rollback;
mod script;
mod session;
pub mod split;
pub mod template;
pub mod verify;

pub use apply::{migrate, AppliedStep, MigrateOptions, Progress, Report, RunOptions, Target};
pub use baseline::{baseline, BaselineOptions, BaselineProgress, BaselineReport, TableRows};
pub use catalog::{Catalog, Migration};
pub use classify::{classify, StatementKind};
pub use fingerprint::{diff, fingerprint, Difference, Fingerprint};
pub use history::{Actor, AppliedMigration, UnfinishedAttempt, EVENT_TABLE, HISTORY_TABLE};
pub use observe::{Direction, Observer, ObserverError, ScriptRun, StatementRun};
pub use plan::{status, InvalidIndex, Pending, Problem, Status};
pub use preview::{preview, SqlPreview};
pub use repair::{repair, AcceptedChecksum, RepairOptions, RepairReport};
pub use template::{write_new, NewMigration, NewOptions};
pub use verify::{verify, VerifyOptions, VerifyReport};

/// Everything the engine can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The migrations folder could not be read.
    #[error("cannot read migrations from {path}")]
    ReadCatalog {
        /// The folder or file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A new migration file could not be written.
    #[error("cannot write {path}")]
    WriteMigration {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the catalog is malformed.
    #[error("migration file {file} is invalid: {reason}")]
    InvalidCatalog {
        /// The file name.
        file: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Two files claim one version.
    #[error("migration files {first} and {second} both have version {version}; give one of them a new version")]
    DuplicateVersion {
        /// The version.
        version: i32,
        /// One file.
        first: String,
        /// The other file.
        second: String,
    },
    /// The database's history disagrees with the files: nothing was changed.
    #[error("{}", describe_problems(.0))]
    Diverged(Vec<Problem>),
    /// The server is a standby: refused before the migration lock, since it accepts no writes.
    #[error("the server is a standby (in recovery), which accepts no writes: point the environment at the primary, or list every node in `host` with target_session_attrs = \"read-write\" so the primary is found")]
    Standby,
    /// Another run held the migration lock for longer than we were allowed to wait.
    #[error("another migration run holds the migration lock on this database ({holder}); waited {waited_secs}s. Let it finish, or raise the lock wait")]
    LockTimeout {
        /// Who holds it: pid and application_name, as far as we can see.
        holder: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// `--to` names a version below what is applied.
    #[error("the database is at version {head}, above the target {target}; migrate only goes up, use `rollback --to {target}` to go down")]
    TargetBelowHead {
        /// Highest applied version.
        head: i32,
        /// The requested target.
        target: i32,
    },
    /// `--to` names a version that no file has.
    #[error("there is no migration with version {0}")]
    UnknownTarget(i32),
    /// The caller interrupted the run (Ctrl-C, SIGTERM): the running script's statement was
    /// cancelled and its transaction rolled back, and no further script started.
    #[error("{}", interrupted(.file.as_deref(), .detail, .report))]
    Interrupted {
        /// The file that was running and was rolled back, if one was.
        file: Option<String>,
        /// Its statement and the server's message, or when the run stopped.
        detail: String,
        /// The migrations that were applied or reverted (and committed) before it.
        report: Report,
    },
    /// An up or down file failed; its transaction was rolled back, so nothing of it is
    /// applied (up) or its migration stays applied (down).
    #[error("{}: {detail}", failed(.file, .report.direction))]
    MigrationFailed {
        /// The up or down file.
        file: String,
        /// The statement, its line and the server's message.
        detail: String,
        /// The migrations that were applied or reverted before this one.
        report: Report,
    },
    /// A non-transactional up or down file failed part way: some of it may be applied.
    #[error("{} runs outside a transaction and failed part way: {detail}. {state}", script_name(.file, .report.direction))]
    HalfApplied {
        /// The up or down file.
        file: String,
        /// The statement, its line and the server's message.
        detail: String,
        /// What was left behind, and what to do about it.
        state: String,
        /// The migrations that were applied or reverted before this one.
        report: Report,
    },
    /// A non-transactional up or down file failed at its first statement and left nothing
    /// behind (no completed statement, no invalid index): nothing of it was applied.
    #[error("{} runs outside a transaction and its first statement failed, so nothing was applied{}: {detail}", script_name(.file, .report.direction), nothing_applied(.report.direction))]
    NothingApplied {
        /// The up or down file.
        file: String,
        /// The statement, its line and the server's message.
        detail: String,
        /// The migrations that were applied or reverted before this one.
        report: Report,
    },
    /// Earlier attempts never finished and left the database half-done; nothing was changed.
    #[error("{}", describe_unfinished(.0))]
    UnfinishedAttempts(Vec<UnfinishedAttempt>),
    /// The observer stopped the run at this file.
    #[error("{} was stopped: {detail}", script_name(.file, .report.direction))]
    Observer {
        /// The up or down file.
        file: String,
        /// When and why.
        detail: String,
        /// The migrations that were applied or reverted before it stopped.
        report: Report,
    },
    /// Invalid indexes, left by an interrupted `CREATE INDEX CONCURRENTLY`, block a migration.
    #[error("{}", describe_invalid(.0))]
    InvalidIndexes(Vec<InvalidIndex>),
    /// A rollback target that is neither 0 nor an applied version.
    #[error("version {target} is not applied (applied: {}); roll back to one of those, or to 0 to revert everything", list_versions(.applied))]
    RollbackTargetNotApplied {
        /// The requested target.
        target: i32,
        /// The applied versions, lowest first.
        applied: Vec<i32>,
    },
    /// More rollback steps than applied migrations.
    #[error("cannot roll back {steps} migrations: only {applied} are applied")]
    TooManySteps {
        /// The requested steps.
        steps: usize,
        /// How many migrations are applied.
        applied: usize,
    },
    /// The rollback would have to pass a migration that has no down file; nothing was rolled back.
    #[error("{file} is marked irreversible and has no down file, so rollback cannot pass it; nothing was rolled back. Roll back to version {version} or above")]
    Irreversible {
        /// The up file of the irreversible migration.
        file: String,
        /// Its version: the lowest version a rollback can reach.
        version: i32,
    },
    /// The search path names no existing schema, so there is no schema to compare.
    #[error("the search path names no existing schema; set search_path (or create the schema it names) so migrations know where their objects live")]
    NoHomeSchema,
    /// A migration could not be rehearsed to build the expected schema; nothing was changed.
    #[error("cannot build the expected schema: {file} failed in the rehearsal (a scratch schema inside a transaction that is rolled back, nothing was changed): {detail}")]
    Rehearsal {
        /// The up file.
        file: String,
        /// The statement and the server's message, or why it cannot be rehearsed.
        detail: String,
    },
    /// Baseline refuses a database that already has migration history.
    #[error("the database already has migration history (applied up to version {head}); baseline is only for a database built before migrations existed, use migrate or status instead")]
    BaselineHasHistory {
        /// The highest applied version.
        head: i32,
    },
    /// The live schema is not what the migrations up to the baseline version produce; nothing was recorded.
    #[error("the live schema differs from the schema migrations up to version {version} produce, so nothing was recorded; make the database match (or pick the version it matches) and run baseline again:\n{}", fingerprint::describe(.differences))]
    BaselineMismatch {
        /// The baseline version.
        version: i32,
        /// How the live schema differs from the expected one.
        differences: Vec<Difference>,
    },
    /// `--accept-checksum` named a version whose checksum cannot be accepted; nothing was changed.
    #[error("cannot accept the checksum of version {version}: {reason}; nothing was repaired")]
    AcceptChecksum {
        /// The version.
        version: i32,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A history row vanished while this run held the migration lock.
    #[error("the history row of version {version} disappeared while the migration lock was held; someone edits refinery_schema_history by hand, find out who before running again")]
    HistoryChanged {
        /// The version.
        version: i32,
    },
    /// The history table holds something this version cannot read.
    #[error("cannot read the migration history: {0}; look at refinery_schema_history by hand")]
    UnreadableHistory(String),
    /// The server refused a query of the engine itself.
    #[error("{context}: {}", db_message(.error))]
    Database {
        /// What the engine was doing.
        context: String,
        /// The server's error (its message is part of this error's; not a separate cause, so
        /// it is not printed twice).
        error: postgres::Error,
    },
}

impl Error {
    /// True when the error means the database diverged from the files or needs repair (exit code 4).
    pub fn needs_attention(&self) -> bool {
        matches!(
            self,
            Error::Diverged(_)
                | Error::HalfApplied { .. }
                | Error::BaselineMismatch { .. }
                | Error::InvalidIndexes(_)
                | Error::UnfinishedAttempts(_)
        )
    }

    /// What a migrate or rollback applied or reverted before a failure, if anything.
    pub fn partial_report(&self) -> Option<&Report> {
        match self {
            Error::MigrationFailed { report, .. }
            | Error::Interrupted { report, .. }
            | Error::HalfApplied { report, .. }
            | Error::NothingApplied { report, .. }
            | Error::Observer { report, .. } => Some(report),
            _ => None,
        }
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error {
        let context = context.into();
        move |error| Error::Database { context, error }
    }
}

/// "interrupted: V3__x.sql was rolled back, nothing of it is applied (...); V1, V2 stay applied".
fn interrupted(file: Option<&str>, detail: &str, report: &Report) -> String {
    let done = report.direction.done();
    let kept = if report.steps.is_empty() {
        format!("nothing was {done} before it")
    } else {
        let versions: Vec<String> = report
            .steps
            .iter()
            .map(|s| format!("V{}", s.version))
            .collect();
        format!(
            "{} stay {done} (committed before the interrupt)",
            versions.join(", ")
        )
    };
    match file {
        Some(file) => {
            format!("interrupted: {file} was rolled back and is not {done} ({detail}); {kept}")
        }
        None => format!("interrupted {detail}; {kept}"),
    }
}

/// The server's message with its detail and hint, or the client-side error.
pub(crate) fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut out = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                out.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                out.push_str(&format!("; hint: {hint}"));
            }
            out
        }
        None => e.to_string(),
    }
}

/// "migration V3__x.sql failed and was rolled back, nothing of it is applied", or the down file's.
fn failed(file: &str, direction: Direction) -> String {
    match direction {
        Direction::Up => {
            format!("migration {file} failed and was rolled back, nothing of it is applied")
        }
        Direction::Down => {
            format!("down file {file} failed and was undone, its migration stays applied")
        }
    }
}

fn nothing_applied(direction: Direction) -> &'static str {
    match direction {
        Direction::Up => "",
        Direction::Down => " and its migration stays applied",
    }
}

fn describe_unfinished(attempts: &[UnfinishedAttempt]) -> String {
    let mut out = String::from(
        "an earlier attempt never finished and ran outside a transaction, so the database may be half-done; nothing was changed",
    );
    for attempt in attempts {
        out.push_str("\n  - ");
        out.push_str(&attempt.to_string());
    }
    out.push_str("\nfind out what the completed statements did, undo them by hand or make the file safe to run again (IF NOT EXISTS), then run `ecomind-db repair` to close the attempt and run the command again");
    out
}

/// "migration V3__x.sql" or "down file V3__x.down.sql".
fn script_name(file: &str, direction: Direction) -> String {
    match direction {
        Direction::Up => format!("migration {file}"),
        Direction::Down => format!("down file {file}"),
    }
}

fn list_versions(versions: &[i32]) -> String {
    if versions.is_empty() {
        return "none".to_owned();
    }
    versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_problems(problems: &[Problem]) -> String {
    let mut out = String::from(
        "the database's migration history does not match the migration files; nothing was changed",
    );
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string());
    }
    out
}

fn describe_invalid(indexes: &[InvalidIndex]) -> String {
    let names: Vec<String> = indexes.iter().map(|i| i.to_string()).collect();
    format!(
        "the database has invalid indexes left by an interrupted CREATE INDEX CONCURRENTLY: {}; run `ecomind-db repair` to drop them, then migrate again",
        names.join(", ")
    )
}
