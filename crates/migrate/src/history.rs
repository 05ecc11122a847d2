//! The history tables: refinery's `refinery_schema_history` and our event log beside it, with
//! the [`Actor`] each event-log row names.

use postgres::Client;
use serde::Serialize;

use crate::quote::literal;
use crate::Error;

/// refinery's history table: one row per applied migration.
pub const HISTORY_TABLE: &str = "refinery_schema_history";
/// Our audit trail: one row per attempt to apply, roll back, baseline or repair a migration.
pub const EVENT_TABLE: &str = "ecomind_migration_events";

/// Creates both tables if they do not exist yet. Called only under the migration lock.
/// The history layout is refinery's own, so refinery's tools can read it.
pub(crate) const ENSURE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS refinery_schema_history (
    version int4 PRIMARY KEY,
    name varchar(255),
    applied_on varchar(255),
    checksum varchar(255)
);
CREATE TABLE IF NOT EXISTS ecomind_migration_events (
    id bigserial PRIMARY KEY,
    version int4 NOT NULL,
    name text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('up', 'down', 'baseline', 'repair')),
    outcome text NOT NULL CHECK (outcome IN ('started', 'applied', 'failed')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration_ms double precision,
    database_user text NOT NULL DEFAULT current_user,
    os_user text NOT NULL,
    client_host text NOT NULL,
    tool_version text NOT NULL,
    error text,
    detail text
);
-- Databases migrated before the event log had these columns. A `started` row is written and
-- committed before a script runs; the row that ends the attempt names it in `attempt`.
ALTER TABLE ecomind_migration_events
    ADD COLUMN IF NOT EXISTS detail text,
    ADD COLUMN IF NOT EXISTS attempt bigint,
    ADD COLUMN IF NOT EXISTS backend_pid int4,
    ADD COLUMN IF NOT EXISTS backend_start timestamptz,
    ADD COLUMN IF NOT EXISTS transactional boolean,
    ADD COLUMN IF NOT EXISTS statements_total int4,
    ADD COLUMN IF NOT EXISTS statements_done int4,
    ALTER COLUMN finished_at DROP NOT NULL,
    ALTER COLUMN duration_ms DROP NOT NULL,
    DROP CONSTRAINT IF EXISTS ecomind_migration_events_outcome_check,
    ADD CONSTRAINT ecomind_migration_events_outcome_check CHECK (outcome IN ('started', 'applied', 'failed'));
CREATE INDEX IF NOT EXISTS ecomind_migration_events_attempt ON ecomind_migration_events (attempt);
COMMENT ON TABLE ecomind_migration_events IS 'ecomind-db audit trail: every migration applied, rolled back or failed, by whom and when';
";

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

impl Actor {
    /// This process: the operating-system user (`USER`, else `LOGNAME`) and the host name,
    /// `unknown` where they cannot be read, running `tool_version`.
    pub fn of_this_process(tool_version: String) -> Actor {
        let os_user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Actor {
            os_user,
            host,
            tool_version,
        }
    }
}

/// One row of refinery's history.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedMigration {
    /// The version.
    pub version: i32,
    /// The name recorded when it was applied.
    pub name: String,
    /// When it was applied (RFC 3339, as refinery writes it).
    pub applied_on: String,
    /// The checksum recorded when it was applied (refinery's, as a decimal string).
    pub checksum: String,
    /// `no-op` when the migration's down file has no statement (in [`crate::status`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<&'static str>,
}

pub(crate) fn ensure_tables(client: &mut Client) -> Result<(), Error> {
    // DDL only when something is missing: on an up-to-date database a run changes no catalog,
    // takes no table lock, and needs no ownership of the history tables.
    if tables_complete(client)? {
        return Ok(());
    }
    create_tables(client)
}

/// Creates the history tables, or adds the columns an older version's lack.
pub(crate) fn create_tables(client: &mut Client) -> Result<(), Error> {
    // The server emits a NOTICE for each table that exists; the client ignores notices.
    client
        .batch_execute(ENSURE_TABLES)
        .map_err(Error::db("cannot create the migration history tables"))
}

/// True (`t`) when both history tables exist with every column this version writes: one SQL
/// expression, for [`tables_complete`] and the probe's state row alike.
macro_rules! tables_complete_sql {
    () => {
        "to_regclass('refinery_schema_history') IS NOT NULL \
         AND to_regclass('ecomind_migration_events') IS NOT NULL \
         AND EXISTS (SELECT 1 FROM pg_attribute \
                     WHERE attrelid = to_regclass('ecomind_migration_events') \
                       AND attname = 'statements_done' AND NOT attisdropped)"
    };
}
pub(crate) use tables_complete_sql;

/// True when both history tables exist with every column this version writes.
pub(crate) fn tables_complete(client: &mut Client) -> Result<bool, Error> {
    let rows = client
        .simple_query(concat!("SELECT ", tables_complete_sql!()))
        .map_err(Error::db("cannot look for the migration history tables"))?;
    Ok(rows
        .iter()
        .any(|m| matches!(m, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))))
}

/// Reads the history, or an empty one when the table does not exist yet (a database never migrated).
pub(crate) fn read(client: &mut Client) -> Result<Vec<AppliedMigration>, Error> {
    Ok(crate::probe::probe(client, crate::probe::Ask::History)?.applied)
}

/// The first event-log row of an attempt to run a script: written and committed before the
/// script runs, so an attempt that never ends (a killed process, a lost connection, a terminated
/// backend) stays visible with who ran it, from where, and how far it got.
pub(crate) struct AttemptStart<'a> {
    pub version: i32,
    pub name: &'a str,
    pub direction: &'a str,
    pub transactional: bool,
    pub statements: usize,
}

/// The statement that writes an attempt's `started` row. It names the server backend (its pid
/// and start time), so a reader can tell an attempt still running from one that died; and it
/// keeps the row's id in the session's `ecomind.attempt`, where the rows that follow find it
/// ([`this_attempt`]). The backend is read with `pg_stat_get_activity(pid)`, not the
/// pg_stat_activity view, which costs more to plan than the row costs to write.
pub(crate) fn attempt_start_sql(actor: &Actor, start: &AttemptStart<'_>) -> String {
    format!(
        "INSERT INTO ecomind_migration_events \
         (version, name, direction, outcome, started_at, os_user, client_host, tool_version, \
          backend_pid, backend_start, transactional, statements_total, statements_done) \
         SELECT {version}, {name}, {direction}, 'started', clock_timestamp(), {os_user}, {host}, {tool}, \
                a.pid, a.backend_start, {transactional}, {statements}, 0 \
         FROM pg_stat_get_activity(pg_backend_pid()) a \
         RETURNING set_config('ecomind.attempt', id::text, false)",
        version = start.version,
        name = literal(start.name),
        direction = literal(start.direction),
        os_user = literal(&actor.os_user),
        host = literal(&actor.host),
        tool = literal(&actor.tool_version),
        transactional = start.transactional,
        statements = start.statements,
    )
}

/// The id of this session's `started` row for a version and direction: the attempt running
/// now, which no row has ended yet. It is the id the start row kept in `ecomind.attempt`,
/// looked up by primary key. A script can clear that setting (`RESET ALL`, also from inside a
/// function or a DO block, where no classifier sees it); then, and only then, the newest such
/// row of this backend is looked up instead (COALESCE evaluates the second subquery only when
/// the first is NULL). The run holds the migration lock, so no other session writes one
/// meanwhile, and the backend's start time tells this session from an earlier one that had the
/// same pid.
fn this_attempt(version: i32, direction: &str) -> String {
    let direction = literal(direction);
    format!(
        "coalesce(\
           (SELECT s.id FROM ecomind_migration_events s \
            WHERE s.id = nullif(current_setting('ecomind.attempt', true), '')::bigint \
              AND s.outcome = 'started' AND s.version = {version} AND s.direction = {direction} \
              AND NOT EXISTS (SELECT 1 FROM ecomind_migration_events e WHERE e.attempt = s.id)), \
           (SELECT max(s.id) FROM ecomind_migration_events s, pg_stat_get_activity(pg_backend_pid()) a \
            WHERE s.outcome = 'started' AND s.backend_pid = a.pid AND s.backend_start = a.backend_start \
              AND s.version = {version} AND s.direction = {direction}))"
    )
}

/// The statement that records how many statements of the running non-transactional attempt
/// completed.
pub(crate) fn attempt_progress_sql(
    version: i32,
    direction: &str,
    done: usize,
    id: Option<i64>,
) -> String {
    let attempt = id.map_or_else(|| this_attempt(version, direction), |id| id.to_string());
    format!("UPDATE ecomind_migration_events SET statements_done = {done} WHERE id = {attempt}")
}

/// An attempt whose `started` row has no end: its process was killed, lost its connection or
/// had its backend terminated while the script ran (or it is running right now).
#[derive(Clone, Debug, Serialize)]
pub struct UnfinishedAttempt {
    /// The id of its `started` row in the event log.
    pub id: i64,
    /// The migration's version.
    pub version: i32,
    /// The migration's name.
    pub name: String,
    /// `up` (migrate) or `down` (rollback).
    pub direction: String,
    /// When it started, by the server's clock (UTC).
    pub started_at: String,
    /// The database user.
    pub database_user: String,
    /// The operating-system user who ran the tool.
    pub os_user: String,
    /// The host the tool ran on.
    pub client_host: String,
    /// The tool's version.
    pub tool_version: String,
    /// False when the script ran outside a transaction, one statement at a time: what its
    /// completed statements did stays applied.
    pub transactional: bool,
    /// How many statements the script has.
    pub statements_total: i32,
    /// How many of them had completed, as far as the event log knows. The next one may have
    /// completed too, just before the attempt was cut off.
    pub statements_done: i32,
    /// True when the backend that runs it is still connected: the attempt is running now.
    pub running: bool,
}

impl UnfinishedAttempt {
    /// True when the attempt left the database half-done: it ran outside a transaction and
    /// is not running any more.
    pub fn needs_repair(&self) -> bool {
        !self.transactional && !self.running
    }
}

impl std::fmt::Display for UnfinishedAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "V{} {} ({}) started {} by {}@{} (database user {}, ecomind-db {}), event #{}: ",
            self.version,
            self.name,
            self.direction,
            self.started_at,
            self.os_user,
            self.client_host,
            self.database_user,
            self.tool_version,
            self.id
        )?;
        if self.running {
            return write!(f, "running now");
        }
        if self.transactional {
            return write!(
                f,
                "it never finished, but it ran in one transaction, so nothing of it stayed"
            );
        }
        let next = self.statements_done + 1;
        if self.statements_done == 0 {
            write!(
                f,
                "no statement of {} is known to have completed",
                self.statements_total
            )?;
        } else {
            write!(
                f,
                "statement(s) 1 to {} of {} completed and stay applied",
                self.statements_done, self.statements_total
            )?;
        }
        if next <= self.statements_total {
            write!(
                f,
                "; statement {next} was running when it stopped and may have completed too"
            )?;
        }
        Ok(())
    }
}

/// The attempts that never ended and still matter: the newest attempt of a migration and
/// direction, when the history shows it did not happen (an `up` not applied, a `down` still
/// applied). Empty when the event log has no start rows yet.
pub(crate) fn unfinished(client: &mut Client) -> Result<Vec<UnfinishedAttempt>, Error> {
    // The start rows and their columns exist only once this version has made the tables.
    let ready = tables_complete(client)?;
    if !ready {
        return Ok(Vec::new());
    }
    unfinished_after_ensure(client)
}

/// As [`unfinished`], once [`ensure_tables`] has made sure the event log has its columns.
pub(crate) fn unfinished_after_ensure(
    client: &mut Client,
) -> Result<Vec<UnfinishedAttempt>, Error> {
    let rows = client.simple_query(UNFINISHED).map_err(Error::db(
        "cannot read the unfinished attempts from the event log",
    ))?;
    Ok(rows
        .iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => Some(unfinished_row(row)),
            _ => None,
        })
        .collect())
}

/// One row of [`UNFINISHED`].
pub(crate) fn unfinished_row(row: &postgres::SimpleQueryRow) -> UnfinishedAttempt {
    let text = |i: usize| row.get(i).unwrap_or_default().to_owned();
    let number = |i: usize| {
        row.get(i)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_default()
    };
    UnfinishedAttempt {
        id: number(0),
        version: i32::try_from(number(1)).unwrap_or_default(),
        name: text(2),
        direction: text(3),
        started_at: text(4),
        database_user: text(5),
        os_user: text(6),
        client_host: text(7),
        tool_version: text(8),
        transactional: row.get(9) != Some("f"),
        statements_total: i32::try_from(number(10)).unwrap_or_default(),
        statements_done: i32::try_from(number(11)).unwrap_or_default(),
        running: row.get(12) == Some("t"),
    }
}

/// The attempts [`UNFINISHED`] lists: the newest start row of a migration and direction that
/// no row ended, where the history shows it did not happen.
macro_rules! unfinished_from {
    () => {
        "FROM ecomind_migration_events s \
         WHERE s.outcome = 'started' \
           AND NOT EXISTS (SELECT 1 FROM ecomind_migration_events e WHERE e.attempt = s.id) \
           AND NOT EXISTS (SELECT 1 FROM ecomind_migration_events l \
                           WHERE l.outcome = 'started' AND l.version = s.version \
                             AND l.direction = s.direction AND l.id > s.id) \
           AND (s.direction = 'up') = NOT EXISTS (SELECT 1 FROM refinery_schema_history h \
                                                   WHERE h.version = s.version)"
    };
}

pub(crate) const UNFINISHED: &str = concat!(
    "SELECT s.id, s.version, s.name, s.direction, \
            to_char(s.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
            s.database_user, s.os_user, s.client_host, s.tool_version, \
            coalesce(s.transactional, true), coalesce(s.statements_total, 0), \
            coalesce(s.statements_done, 0), \
            EXISTS (SELECT 1 FROM pg_stat_activity a \
                    WHERE a.pid = s.backend_pid AND a.backend_start = s.backend_start) ",
    unfinished_from!(),
    " ORDER BY s.id"
);

/// Whether [`UNFINISHED`] would list anything, without its cost (pg_stat_activity): the check
/// `status` makes on every start-up, nearly always false.
pub(crate) const ANY_UNFINISHED: &str =
    concat!("SELECT EXISTS (SELECT 1 ", unfinished_from!(), ")");

/// Which attempt an event-log row ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// None: the row is an event of its own (a baseline, a repair).
    None,
    /// The attempt this session is running at the row's version and direction.
    Running,
    /// An earlier attempt, by the id of its `started` row (a repair settling it).
    Id(i64),
}

/// One event-log row; the actor comes separately.
pub(crate) struct EventRow<'a> {
    pub version: i32,
    pub name: &'a str,
    pub direction: &'a str,
    pub outcome: &'a str,
    /// How long the step took, by the client's monotonic clock. The server's clock dates it:
    /// it started `elapsed` before the row is written (client and server clocks may differ).
    pub elapsed: std::time::Duration,
    pub error: Option<&'a str>,
    /// What was done, where the direction alone does not say (a repair).
    pub detail: Option<&'a str>,
    /// The attempt this row ends, if any.
    pub attempt: Attempt,
}

/// The statement that records an applied migration, in the layout refinery writes.
///
/// History and event rows are written with the simple protocol and literals, so the engine can
/// send them together with `COMMIT` in one round trip (a parameterised statement costs two).
pub(crate) fn applied_sql(version: i32, name: &str, checksum: u64) -> String {
    format!(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ({version}, {}, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '{checksum}')",
        literal(name)
    )
}

/// Records an applied migration in the given transaction or connection.
pub(crate) fn record_applied(
    conn: &mut impl postgres::GenericClient,
    version: i32,
    name: &str,
    checksum: u64,
) -> Result<(), Error> {
    conn.batch_execute(&applied_sql(version, name, checksum))
        .map_err(Error::db(
            "cannot record the migration in refinery_schema_history",
        ))
}

/// The statement that removes a reverted migration's history row, and fails (so the batch it
/// travels in, which ends with `COMMIT`, commits nothing) unless it removed exactly one: the
/// check and the removal cost no round trip of their own. [`is_history_changed`] recognises
/// the failure.
pub(crate) fn reverted_sql(version: i32) -> String {
    format!(
        "WITH removed AS (DELETE FROM refinery_schema_history WHERE version = {version} RETURNING 1) \
         SELECT CASE WHEN count(*) = 1 THEN 1 \
                ELSE ('{HISTORY_CHANGED} {version}: ' || count(*) || ' rows')::int END \
         FROM removed"
    )
}

/// What [`reverted_sql`]'s failure says.
const HISTORY_CHANGED: &str = "ecomind-db: history rows removed for version";

/// True when `error` is [`reverted_sql`] finding no history row (or more than one) to remove.
pub(crate) fn is_history_changed(error: &postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &postgres::error::SqlState::INVALID_TEXT_REPRESENTATION
            && db.message().contains(HISTORY_CHANGED)
    })
}

/// The statement that writes one event-log row.
pub(crate) fn event_sql(actor: &Actor, row: &EventRow<'_>) -> String {
    let elapsed_ms = row.elapsed.as_secs_f64() * 1000.0;
    format!(
        "INSERT INTO ecomind_migration_events \
         (version, name, direction, outcome, started_at, finished_at, duration_ms, os_user, client_host, tool_version, error, detail, attempt) \
         VALUES ({version}, {name}, {direction}, {outcome}, \
                 clock_timestamp() - make_interval(secs => {elapsed_secs:.6}), clock_timestamp(), {elapsed_ms:.3}, \
                 {os_user}, {host}, {tool}, {error}, {detail}, {attempt})",
        version = row.version,
        name = literal(row.name),
        direction = literal(row.direction),
        outcome = literal(row.outcome),
        elapsed_secs = elapsed_ms / 1000.0,
        os_user = literal(&actor.os_user),
        host = literal(&actor.host),
        tool = literal(&actor.tool_version),
        error = row.error.map_or_else(|| "NULL".to_owned(), literal),
        detail = row.detail.map_or_else(|| "NULL".to_owned(), literal),
        attempt = match row.attempt {
            Attempt::None => "NULL".to_owned(),
            Attempt::Running => this_attempt(row.version, row.direction),
            Attempt::Id(id) => id.to_string(),
        },
    )
}

/// Writes one event-log row, in the given transaction or connection.
pub(crate) fn record_event(
    conn: &mut impl postgres::GenericClient,
    actor: &Actor,
    row: &EventRow<'_>,
) -> Result<(), Error> {
    conn.batch_execute(&event_sql(actor, row))
        .map_err(Error::db("cannot write the migration event log"))
}
