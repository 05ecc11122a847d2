//! Planning and applying migrations: status, the plan, and the apply loop.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use postgres::Client;
use serde::Serialize;

use crate::catalog::{Catalog, Migration};
use crate::history::{self, AppliedMigration, EventRow};
use crate::{lock, split, Error};

/// Who runs the engine, as recorded in the event log.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The operating-system user.
    pub os_user: String,
    /// The host the tool runs on.
    pub host: String,
    /// The tool's version.
    pub tool_version: String,
}

/// How to migrate. Every safety-relevant choice is explicit: there is no `Default`.
#[derive(Clone, Debug)]
pub struct MigrateOptions<'a> {
    /// Apply up to and including this version; `None` applies everything pending.
    pub target: Option<i32>,
    /// How long to wait for another run's migration lock before giving up.
    pub lock_wait: Duration,
    /// `lock_timeout` for the migration statements; `None` keeps the server's setting.
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` for the migration statements; `None` keeps the server's setting.
    pub statement_timeout: Option<Duration>,
    /// Apply a never-applied migration whose version is below the applied head instead of refusing.
    pub allow_out_of_order: bool,
    /// Recorded in the event log.
    pub actor: &'a Actor,
}

/// What the engine tells its caller while it works; the caller decides how to show it.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The plan is known: these migrations will be applied, in this order.
    Planned(&'a [&'a Migration]),
    /// A migration starts.
    Started(&'a Migration),
    /// A migration is applied and recorded.
    Applied(&'a Migration, Duration),
}

/// One migration applied by a run.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedStep {
    /// The version.
    pub version: i32,
    /// The name.
    pub name: String,
    /// Wall time from start to commit.
    pub duration_ms: f64,
    /// False when it ran outside a transaction.
    pub transactional: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MigrateReport {
    /// The migrations this run applied, in order.
    pub applied: Vec<AppliedStep>,
    /// The highest applied version once the run ended.
    pub head: Option<i32>,
}

/// A migration not applied yet.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    /// The version.
    pub version: i32,
    /// The name.
    pub name: String,
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
}

impl Status {
    /// True when something needs a human: divergence or a half-done migration. An index that
    /// is being built right now is not half-done.
    pub fn needs_attention(&self) -> bool {
        !self.problems.is_empty() || self.invalid_indexes.iter().any(|i| !i.being_built)
    }
}

/// Reads where the database stands, without taking the lock or changing anything.
pub fn status(client: &mut Client, catalog: &Catalog) -> Result<Status, Error> {
    let applied = history::read(client)?;
    let (pending, problems) = plan(catalog, &applied, false);
    let invalid_indexes = invalid_indexes(client)?;
    Ok(Status {
        pending: pending
            .iter()
            .map(|m| Pending {
                version: m.version(),
                name: m.name().to_owned(),
            })
            .collect(),
        applied,
        problems,
        invalid_indexes,
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

/// Applies pending migrations under the migration lock, each committed together with its
/// history row and its event-log row.
pub fn migrate(
    client: &mut Client,
    catalog: &Catalog,
    options: &MigrateOptions<'_>,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<MigrateReport, Error> {
    if let Some(target) = options.target {
        if catalog.get(target).is_none() {
            return Err(Error::UnknownTarget(target));
        }
    }
    lock::holding(client, options.lock_wait, |client| {
        migrate_locked(client, catalog, options, on_progress)
    })
}

fn migrate_locked(
    client: &mut Client,
    catalog: &Catalog,
    options: &MigrateOptions<'_>,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<MigrateReport, Error> {
    history::ensure_tables(client)?;
    let applied = history::read(client)?;
    let (mut pending, problems) = plan(catalog, &applied, options.allow_out_of_order);
    if !problems.is_empty() {
        return Err(Error::Diverged(problems));
    }
    let mut report = MigrateReport {
        applied: Vec::new(),
        head: applied.iter().map(|a| a.version).max(),
    };
    if let (Some(target), Some(head)) = (options.target, report.head) {
        if target < head {
            return Err(Error::TargetBelowHead { head, target });
        }
    }
    if let Some(target) = options.target {
        pending.retain(|m| m.version() <= target);
    }
    on_progress(Progress::Planned(&pending));
    if pending.is_empty() {
        return Ok(report);
    }
    let session = Session::establish(client, options.lock_timeout, options.statement_timeout)?;
    for migration in pending {
        on_progress(Progress::Started(migration));
        let started = Instant::now();
        let script = Script {
            migration,
            direction: Direction::Up,
        };
        if let Err(failure) = run_script(client, &session, &script, options.actor) {
            return Err(failure.into_error(migration, report));
        }
        let took = started.elapsed();
        report.applied.push(AppliedStep {
            version: migration.version(),
            name: migration.name().to_owned(),
            duration_ms: took.as_secs_f64() * 1000.0,
            transactional: migration.is_transactional(),
        });
        report.head = Some(
            report
                .head
                .map_or(migration.version(), |h| h.max(migration.version())),
        );
        on_progress(Progress::Applied(migration, took));
    }
    Ok(report)
}

/// Session settings for every engine connection.
pub(crate) fn prepare_session(client: &mut Client) -> Result<(), Error> {
    if server_version(client)? >= 140000 {
        client
            .batch_execute(CONNECTION_CHECK)
            .map_err(Error::db("cannot set client_connection_check_interval"))?;
    }
    Ok(())
}

/// The session state every script starts from. It is restored after a script that may have
/// changed it, so what one migration sets for the session (search_path, role, timeouts) never
/// leaks into the next: a migration behaves the same whether it runs alone or after others.
pub(crate) struct Session {
    /// Restores the state; sent ahead of the next script when the last one touched it.
    reset: String,
    /// Restores the policy's lock_timeout after a CONCURRENTLY statement.
    lock_timeout: String,
    /// Restores role, search_path and the policy's timeouts for the rest of a transaction, so a
    /// script's own SET LOCAL cannot decide who writes the history rows, where, or how long
    /// they may take.
    restore_in_transaction: String,
    /// True when the last script may have changed the session.
    dirty: std::cell::Cell<bool>,
}

/// True when a statement may change the session's settings or role (SET, RESET, set_config).
/// A function that calls set_config internally is not seen; SET LOCAL counts, because it lasts
/// until the history rows are written in the same transaction.
fn touches_session(sql: &str) -> bool {
    let first = sql
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .find(|w| !w.is_empty())
        .unwrap_or_default();
    first.eq_ignore_ascii_case("set")
        || first.eq_ignore_ascii_case("reset")
        || sql.to_ascii_lowercase().contains("set_config")
}

impl Session {
    /// The reset to send ahead of the next script, if the last one may have changed the session.
    fn take_reset(&self) -> Option<&str> {
        self.dirty.replace(false).then_some(self.reset.as_str())
    }
}

impl Session {
    /// Computes the state from the policy's timeouts (`None` keeps the server's setting) and
    /// applies it.
    pub(crate) fn establish(
        client: &mut Client,
        lock_timeout: Option<Duration>,
        statement_timeout: Option<Duration>,
    ) -> Result<Session, Error> {
        let lock_timeout_value = lock_timeout;
        let lock_timeout = match lock_timeout {
            Some(t) => format!("SET lock_timeout = {}", t.as_millis()),
            None => "RESET lock_timeout".to_owned(),
        };
        let mut reset =
            format!("RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; {lock_timeout}; ");
        if server_version(client)? >= 140000 {
            reset.push_str(CONNECTION_CHECK);
        }
        if let Some(t) = statement_timeout {
            reset.push_str(&format!("SET statement_timeout = {}; ", t.as_millis()));
        }
        client
            .batch_execute(&reset)
            .map_err(Error::db("cannot set up the migration session"))?;
        let local = |name: &str, value: Option<Duration>| match value {
            Some(t) => format!("SET LOCAL {name} = {}; ", t.as_millis()),
            None => format!("SET LOCAL {name} TO DEFAULT; "),
        };
        let restore_in_transaction = format!(
            "RESET ROLE; SET LOCAL search_path TO DEFAULT; {}{}\n",
            local("lock_timeout", lock_timeout_value),
            local("statement_timeout", statement_timeout)
        );
        Ok(Session {
            reset,
            lock_timeout,
            restore_in_transaction,
            dirty: std::cell::Cell::new(false),
        })
    }
}

/// If this process dies mid-migration, the server notices within a second, rolls the migration
/// back and frees the migration lock, instead of finishing a long statement first (PostgreSQL 14+).
const CONNECTION_CHECK: &str = "SET client_connection_check_interval = '1s'; ";

fn server_version(client: &mut Client) -> Result<i32, Error> {
    Ok(client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map_err(Error::db("cannot read the server version"))?
        .get(0))
}

/// Which way a script moves the schema: the up file applies a migration, the down file reverts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
}

impl Direction {
    /// The event log's `direction`.
    fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// One script to run: a migration's up file, or its down file. Up and down run through the
/// same code, in or outside a transaction as the file's directive says.
pub(crate) struct Script<'m> {
    pub migration: &'m Migration,
    pub direction: Direction,
}

impl Script<'_> {
    fn sql(&self) -> &str {
        match self.direction {
            Direction::Up => self.migration.up_sql(),
            // Rollback refuses irreversible migrations before it runs anything.
            Direction::Down => self.migration.down_sql().unwrap_or_default(),
        }
    }

    pub fn file_name(&self) -> String {
        match self.direction {
            Direction::Up => self.migration.file_name(),
            Direction::Down => self.migration.down_file_name(),
        }
    }

    pub fn is_transactional(&self) -> bool {
        match self.direction {
            Direction::Up => self.migration.is_transactional(),
            Direction::Down => self.migration.is_down_transactional(),
        }
    }

    fn statements(&self) -> Result<Vec<split::Statement<'_>>, Failure> {
        split::statements(self.sql()).map_err(|e| {
            Failure::Engine(Error::InvalidCatalog {
                file: self.file_name(),
                reason: e.to_string(),
            })
        })
    }

    /// Records the script's effect in the history and the event log, then commits: the
    /// inserts travel with the `COMMIT` in one round trip. The caller has begun the transaction.
    fn record_and_commit(
        &self,
        client: &mut Client,
        actor: &crate::Actor,
        elapsed: Duration,
        restore: Option<&str>,
    ) -> Result<(), Error> {
        let m = self.migration;
        let event = history::event_sql(
            actor,
            &EventRow {
                version: m.version(),
                name: m.name(),
                direction: self.direction.as_str(),
                outcome: "applied",
                elapsed,
                error: None,
                detail: None,
            },
        );
        let restore = restore.unwrap_or_default();
        let batch = match self.direction {
            Direction::Up => format!(
                "{restore}{};\n{event};\nCOMMIT",
                history::applied_sql(m.version(), m.name(), m.checksum())
            ),
            Direction::Down => {
                if !restore.is_empty() {
                    client.batch_execute(restore).map_err(Error::db(
                        "cannot restore the session to record the migration",
                    ))?;
                }
                // The deletion must remove exactly one row, which only a separate query can tell.
                history::record_reverted(client, m.version())?;
                format!("{event};\nCOMMIT")
            }
        };
        client.batch_execute(&batch).map_err(Error::db(
            "cannot record and commit the migration (if the connection was lost during COMMIT, whether it committed is unknown: run status)",
        ))
    }
}

/// Runs one script, in a transaction together with its history change, or statement by
/// statement outside a transaction and then records it.
pub(crate) fn run_script(
    client: &mut Client,
    session: &Session,
    script: &Script<'_>,
    actor: &crate::Actor,
) -> Result<(), Failure> {
    if script.is_transactional() {
        run_in_transaction(client, session, script, actor)
    } else {
        run_outside_transaction(client, session, script, actor)
    }
}

/// Why one script did not run, before it is turned into an [`Error`] with the report.
pub(crate) enum Failure {
    Engine(Error),
    RolledBack(String),
    HalfApplied { detail: String, state: String },
}

impl Failure {
    fn into_error(self, migration: &Migration, report: MigrateReport) -> Error {
        match self {
            Failure::Engine(e) => e,
            Failure::RolledBack(detail) => Error::MigrationFailed {
                file: migration.file_name(),
                detail,
                report,
            },
            Failure::HalfApplied { detail, state } => Error::HalfApplied {
                file: migration.file_name(),
                detail,
                state,
                report,
            },
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

/// Sent with a transactional script's first statement, after the session reset, so neither costs
/// a round trip of its own.
const BEGIN: &str = "BEGIN; ";

/// Ends a transaction that failed part way. Best effort: when the connection is gone, the server
/// has rolled it back already.
fn roll_back(client: &mut Client) {
    let _ = client.batch_execute("ROLLBACK");
}

fn run_in_transaction(
    client: &mut Client,
    session: &Session,
    script: &Script<'_>,
    actor: &crate::Actor,
) -> Result<(), Failure> {
    let statements = script.statements()?;
    if statements.is_empty() {
        return Err(Failure::Engine(Error::InvalidCatalog {
            file: script.file_name(),
            reason: "it has no SQL statement".to_owned(),
        }));
    }
    let started = Instant::now();
    let touched = statements.iter().any(|s| touches_session(s.sql));
    let reset = session.take_reset().unwrap_or_default();
    // Each statement is its own round trip so a failure names its statement; the transaction
    // spans them all, and the history and event rows commit with it.
    for (index, statement) in statements.iter().enumerate() {
        let (sent, prefix_chars) = if index == 0 {
            let prefix = format!("{reset}{BEGIN}");
            let chars = prefix.chars().count();
            (std::borrow::Cow::Owned(prefix + statement.sql), chars)
        } else {
            (std::borrow::Cow::Borrowed(statement.sql), 0)
        };
        if let Err(e) = client.batch_execute(&sent) {
            let detail = describe_failure_at(index, statements.len(), statement, &e, prefix_chars);
            // Nothing of this script stays.
            roll_back(client);
            record_failure(client, script, actor, started.elapsed(), &detail);
            return Err(Failure::RolledBack(detail));
        }
    }
    if let Err(e) = script.record_and_commit(
        client,
        actor,
        started.elapsed(),
        touched.then_some(session.restore_in_transaction.as_str()),
    ) {
        roll_back(client);
        return Err(Failure::Engine(e));
    }
    session.dirty.set(touched);
    Ok(())
}

/// True for a statement that waits for other transactions by design (`CREATE INDEX
/// CONCURRENTLY` and its kin): `lock_timeout` would cancel it and leave an invalid index behind.
fn waits_by_design(sql: &str) -> bool {
    sql.split_whitespace()
        .take(8)
        .any(|w| w.eq_ignore_ascii_case("concurrently"))
}

fn run_outside_transaction(
    client: &mut Client,
    session: &Session,
    script: &Script<'_>,
    actor: &crate::Actor,
) -> Result<(), Failure> {
    let statements = script.statements()?;
    let before = invalid_indexes(client)?;
    let left_over: Vec<InvalidIndex> = before.into_iter().filter(|i| !i.being_built).collect();
    if !left_over.is_empty() {
        return Err(Failure::Engine(Error::InvalidIndexes(left_over)));
    }
    if let Some(reset) = session.take_reset() {
        client
            .batch_execute(reset)
            .map_err(Error::db("cannot set up the migration session"))?;
    }
    let touched = statements.iter().any(|s| touches_session(s.sql));
    // Even a failed script may have changed the session before it failed.
    session.dirty.set(touched);
    let started = Instant::now();
    let total = statements.len();
    for (index, statement) in statements.iter().enumerate() {
        // One statement per simple query: a multi-statement query would run in an implicit
        // transaction block, where CREATE INDEX CONCURRENTLY is refused. A CONCURRENTLY
        // statement runs without lock_timeout (statement_timeout still bounds it); it takes
        // no lock that blocks reads or writes.
        let concurrent = waits_by_design(statement.sql);
        let result = (|| {
            if concurrent {
                client.batch_execute("SET lock_timeout = 0")?;
            }
            client.batch_execute(statement.sql)?;
            if concurrent {
                client.batch_execute(&session.lock_timeout)?;
            }
            Ok::<(), postgres::Error>(())
        })();
        if let Err(e) = result {
            let detail = describe_failure(index, total, statement, &e);
            let left = invalid_indexes(client).unwrap_or_default();
            let state = half_done_state(index, total, &left, script.direction);
            record_failure(client, script, actor, started.elapsed(), &detail);
            return Err(Failure::HalfApplied { detail, state });
        }
    }
    // Every statement is applied from here on: any failure leaves the script applied but not
    // recorded, which is half-done (exit 4), not a plain error.
    let recorded = (|| {
        let left: Vec<InvalidIndex> = invalid_indexes(client)?
            .into_iter()
            .filter(|i| !i.being_built)
            .collect();
        if !left.is_empty() {
            return Err(Error::InvalidIndexes(left));
        }
        client
            .batch_execute("BEGIN")
            .map_err(Error::db("cannot begin a transaction"))?;
        script.record_and_commit(
            client,
            actor,
            started.elapsed(),
            touched.then_some(session.restore_in_transaction.as_str()),
        )
    })();
    if let Err(e) = recorded {
        roll_back(client);
        let detail = format!("all {total} statement(s) succeeded, then: {e}");
        let left = invalid_indexes(client).unwrap_or_default();
        let state = half_done_state(total, total, &left, script.direction);
        record_failure(client, script, actor, started.elapsed(), &detail);
        return Err(Failure::HalfApplied { detail, state });
    }
    Ok(())
}

fn half_done_state(
    completed: usize,
    total: usize,
    invalid: &[InvalidIndex],
    direction: Direction,
) -> String {
    let (recorded, command) = match direction {
        Direction::Up => ("it is not recorded as applied", "migrate"),
        Direction::Down => ("the migration stays recorded as applied", "rollback"),
    };
    let mut out =
        format!("{completed} of {total} statement(s) completed and stay applied; {recorded}");
    let invalid: Vec<String> = invalid
        .iter()
        .filter(|i| !i.being_built)
        .map(|i| i.to_string())
        .collect();
    if invalid.is_empty() {
        out.push_str(&format!(
            ". Undo or finish those statements by hand (or make the file safe to rerun), then run {command} again"
        ));
    } else {
        out.push_str(&format!(
            ". It left invalid indexes: {}. Run `repair` (or DROP INDEX CONCURRENTLY them), then run {command} again",
            invalid.join(", ")
        ));
    }
    out
}

/// Writes the failed attempt to the event log, outside the rolled-back transaction.
/// Best effort: the connection may be the thing that failed.
fn record_failure(
    client: &mut Client,
    script: &Script<'_>,
    actor: &crate::Actor,
    elapsed: Duration,
    detail: &str,
) {
    let _ = history::record_event(
        client,
        actor,
        &EventRow {
            version: script.migration.version(),
            name: script.migration.name(),
            direction: script.direction.as_str(),
            outcome: "failed",
            elapsed,
            error: Some(detail),
            detail: None,
        },
    );
}

/// "statement 2 of 3 (line 7: `ALTER TABLE ...`): the server's message".
pub(crate) fn describe_failure(
    index: usize,
    total: usize,
    statement: &split::Statement<'_>,
    error: &postgres::Error,
) -> String {
    describe_failure_at(index, total, statement, error, 0)
}

/// As [`describe_failure`], for a statement sent after `prefix_chars` characters of something else.
fn describe_failure_at(
    index: usize,
    total: usize,
    statement: &split::Statement<'_>,
    error: &postgres::Error,
    prefix_chars: usize,
) -> String {
    let mut line = statement.line;
    if let Some(postgres::error::ErrorPosition::Original(pos)) =
        error.as_db_error().and_then(|d| d.position())
    {
        let within = (*pos as usize).saturating_sub(prefix_chars);
        let upto: String = statement.sql.chars().take(within).collect();
        line += upto.matches('\n').count();
    }
    format!(
        "statement {} of {} (line {}: `{}`): {}",
        index + 1,
        total,
        line,
        abbreviate(statement.sql),
        crate::db_message(error)
    )
}

fn abbreviate(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 100 {
        let head: String = flat.chars().take(97).collect();
        format!("{head}...")
    } else {
        flat
    }
}

/// Invalid indexes outside the system schemas.
pub(crate) fn invalid_indexes(client: &mut Client) -> Result<Vec<InvalidIndex>, Error> {
    let rows = client
        .query(
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
             ORDER BY 1, 3",
            &[],
        )
        .map_err(Error::db("cannot look for invalid indexes"))?;
    Ok(rows
        .into_iter()
        .map(|r| InvalidIndex {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            being_built: r.get(3),
        })
        .collect())
}
