//! The history tables: refinery's `refinery_schema_history` and our event log beside it.

use postgres::{Client, Transaction};
use serde::Serialize;

use crate::Error;

/// refinery's history table: one row per applied migration.
pub const HISTORY_TABLE: &str = "refinery_schema_history";
/// Our audit trail: one row per attempt to apply, roll back, baseline or repair a migration.
pub const EVENT_TABLE: &str = "ecomind_migration_events";

/// Creates both tables if they do not exist yet. Called only under the migration lock.
/// The history layout is refinery's own, so refinery's tools can read it.
const ENSURE_TABLES: &str = "
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
    error text
);
COMMENT ON TABLE ecomind_migration_events IS 'ecomind-db audit trail: every migration applied, rolled back or failed, by whom and when';
";

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

/// The server's clock now.
pub(crate) fn server_now(
    conn: &mut impl postgres::GenericClient,
) -> Result<std::time::SystemTime, Error> {
    conn.query_one("SELECT clock_timestamp()", &[])
        .map(|r| r.get(0))
        .map_err(Error::db("cannot read the server's clock"))
}

pub(crate) fn ensure_tables(client: &mut Client) -> Result<(), Error> {
    // The server emits a NOTICE for each table that exists; the client ignores notices.
    client
        .batch_execute(ENSURE_TABLES)
        .map_err(Error::db("cannot create the migration history tables"))
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
    /// The server's clock when the step began (never the client's: clocks differ).
    pub started_at: std::time::SystemTime,
    pub error: Option<&'a str>,
}

const INSERT_HISTORY: &str = "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
     VALUES ($1, $2, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), $3)";

const INSERT_EVENT: &str = "INSERT INTO ecomind_migration_events \
     (version, name, direction, outcome, started_at, finished_at, duration_ms, os_user, client_host, tool_version, error) \
     VALUES ($1, $2, $3, $4, $5, clock_timestamp(), \
             greatest(0, extract(epoch FROM clock_timestamp() - $5) * 1000), $6, $7, $8, $9)";

/// Records an applied migration inside its own transaction.
pub(crate) fn record_applied(
    tx: &mut Transaction<'_>,
    version: i32,
    name: &str,
    checksum: u64,
) -> Result<(), Error> {
    tx.execute(INSERT_HISTORY, &[&version, &name, &checksum.to_string()])
        .map_err(Error::db(
            "cannot record the migration in refinery_schema_history",
        ))?;
    Ok(())
}

/// Writes one event-log row, in the given transaction or connection.
pub(crate) fn record_event(
    conn: &mut impl postgres::GenericClient,
    actor: &crate::Actor,
    row: &EventRow<'_>,
) -> Result<(), Error> {
    conn.execute(
        INSERT_EVENT,
        &[
            &row.version,
            &row.name,
            &row.direction,
            &row.outcome,
            &row.started_at,
            &actor.os_user,
            &actor.host,
            &actor.tool_version,
            &row.error,
        ],
    )
    .map_err(Error::db("cannot write the migration event log"))?;
    Ok(())
}
