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
    outcome text NOT NULL CHECK (outcome IN ('applied', 'failed')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    duration_ms double precision NOT NULL,
    database_user text NOT NULL DEFAULT current_user,
    os_user text NOT NULL,
    client_host text NOT NULL,
    tool_version text NOT NULL,
    error text,
    detail text
);
-- Databases migrated before the event log had this column.
ALTER TABLE ecomind_migration_events ADD COLUMN IF NOT EXISTS detail text;
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
}

pub(crate) fn ensure_tables(client: &mut Client) -> Result<(), Error> {
    // DDL only when something is missing: on an up-to-date database a run changes no catalog,
    // takes no table lock, and needs no ownership of the history tables.
    if tables_complete(client)? {
        return Ok(());
    }
    // The server emits a NOTICE for each table that exists; the client ignores notices.
    client
        .batch_execute(ENSURE_TABLES)
        .map_err(Error::db("cannot create the migration history tables"))
}

/// True when both history tables exist with every column this version writes.
pub(crate) fn tables_complete(client: &mut Client) -> Result<bool, Error> {
    let rows = client
        .simple_query(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL \
                AND to_regclass('ecomind_migration_events') IS NOT NULL \
                AND EXISTS (SELECT 1 FROM pg_attribute \
                            WHERE attrelid = to_regclass('ecomind_migration_events') \
                              AND attname = 'detail' AND NOT attisdropped)",
        )
        .map_err(Error::db("cannot look for the migration history tables"))?;
    Ok(rows
        .iter()
        .any(|m| matches!(m, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))))
}

/// Reads the history, or an empty one when the table does not exist yet (a database never migrated).
pub(crate) fn read(client: &mut Client) -> Result<Vec<AppliedMigration>, Error> {
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .map_err(Error::db("cannot look for the migration history table"))?;
    if !exists.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, coalesce(name, ''), coalesce(applied_on, ''), coalesce(checksum, '') \
             FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .map_err(Error::db("cannot read the migration history"))?;
    Ok(rows
        .into_iter()
        .map(|r| AppliedMigration {
            version: r.get(0),
            name: r.get(1),
            applied_on: r.get(2),
            checksum: r.get(3),
        })
        .collect())
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

/// The statement that removes a reverted migration's history row.
pub(crate) fn reverted_sql(version: i32) -> String {
    format!("DELETE FROM refinery_schema_history WHERE version = {version}")
}

/// Removes a reverted migration's history row inside the transaction of its down script.
pub(crate) fn record_reverted(
    tx: &mut impl postgres::GenericClient,
    version: i32,
) -> Result<(), Error> {
    // The simple protocol, like the inserts: one round trip.
    let messages = tx.simple_query(&reverted_sql(version)).map_err(Error::db(
        "cannot remove the migration from refinery_schema_history",
    ))?;
    let removed = messages.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
        _ => None,
    });
    if removed != Some(1) {
        return Err(Error::HistoryChanged { version });
    }
    Ok(())
}

/// The statement that writes one event-log row.
pub(crate) fn event_sql(actor: &Actor, row: &EventRow<'_>) -> String {
    let elapsed_ms = row.elapsed.as_secs_f64() * 1000.0;
    format!(
        "INSERT INTO ecomind_migration_events \
         (version, name, direction, outcome, started_at, finished_at, duration_ms, os_user, client_host, tool_version, error, detail) \
         VALUES ({version}, {name}, {direction}, {outcome}, \
                 clock_timestamp() - make_interval(secs => {elapsed_secs:.6}), clock_timestamp(), {elapsed_ms:.3}, \
                 {os_user}, {host}, {tool}, {error}, {detail})",
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
