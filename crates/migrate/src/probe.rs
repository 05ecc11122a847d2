//! Where a database stands, in one round trip and without the migration lock: the server's
//! version, whether it is a standby, whether the history tables are complete, the applied
//! migrations and, for `status`, the invalid indexes and the unfinished attempts.
//!
//! Every deploy runs `migrate` and every API replica runs `status --check` at start-up, nearly
//! always on an up-to-date database, so this is the one thing the tool does most. The questions
//! go as one simple-protocol message (no prepared statements: each would cost a round trip of
//! its own), and `status` asks only whether there is an invalid index or an unfinished attempt
//! (their lists, which read pg_stat_activity and pg_locks, follow only when there is). When one of them cannot be asked that way (a database never migrated has no
//! history table, an older tool's event log lacks a column), the server refuses the message
//! and they are asked one at a time, each answering for its own table.

use postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::history::{self, AppliedMigration, UnfinishedAttempt};
use crate::plan::{self, InvalidIndex};
use crate::Error;

/// What one probe found.
pub(crate) struct Probe {
    /// `server_version_num`, e.g. 170002.
    pub server_version_num: i32,
    /// True on a standby (a server in recovery).
    pub in_recovery: bool,
    /// True when both history tables exist with every column this version writes.
    pub tables_complete: bool,
    /// The applied migrations, lowest version first (empty when there is no history table).
    pub applied: Vec<AppliedMigration>,
    /// For `status`: the invalid indexes and the unfinished attempts.
    pub status: Option<(Vec<InvalidIndex>, Vec<UnfinishedAttempt>)>,
    /// When asked ([`Ask::Lock`]): true when no run held the migration lock while the history
    /// was read; `None` when not asked or not known (then take the lock).
    pub lock_free: Option<bool>,
}

/// True for the errors that asking one question at a time answers better.
fn is_missing_or_forbidden(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    error.code().is_some_and(|code| {
        [
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ]
        .contains(code)
    })
}

/// The server and the history tables, as one row.
const STATE: &str = concat!(
    "SELECT current_setting('server_version_num'), pg_is_in_recovery(), ",
    history::tables_complete_sql!(),
    ", to_regclass('refinery_schema_history') IS NOT NULL"
);

/// The applied migrations.
const HISTORY: &str = "SELECT version, coalesce(name, ''), coalesce(applied_on, ''), \
    coalesce(checksum, '') FROM refinery_schema_history ORDER BY version";

/// Whether no run holds the migration lock, asked first so that the history read after it in
/// the same message sees no run half way: a shared lock on the migration key for the message's
/// own transaction, which conflicts with a run's exclusive one and ends with the message. A
/// standby is not asked (its refusal comes from the state).
fn lock_free() -> String {
    format!(
        "SELECT CASE WHEN pg_is_in_recovery() THEN true \
         ELSE pg_try_advisory_xact_lock_shared({}) END",
        crate::lock::KEY
    )
}

/// What a probe asks besides the state and the history.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Nothing more.
    History,
    /// Whether a run holds the migration lock (for a run that may end without it).
    Lock,
    /// What `status` shows: invalid indexes and unfinished attempts.
    Status,
}

/// Asks everything in one round trip.
pub(crate) fn probe(client: &mut Client, ask: Ask) -> Result<Probe, Error> {
    let with_status = ask == Ask::Status;
    let mut batch = String::new();
    if ask == Ask::Lock {
        batch.push_str(&lock_free());
        batch.push_str("; ");
    }
    batch.push_str(&format!("{STATE}; {HISTORY}"));
    if with_status {
        // Whether there is anything to list; the lists themselves are asked for only then.
        batch.push_str(&format!(
            "; {}; {}",
            plan::ANY_INVALID_INDEX,
            history::ANY_UNFINISHED
        ));
    }
    match client.simple_query(&batch) {
        Ok(messages) => {
            let mut results = split_results(messages);
            let lock_free = if ask == Ask::Lock {
                let rows = results.remove(0);
                Some(rows.first().is_some_and(|row| row.get(0) == Some("t")))
            } else {
                None
            };
            let state = state(results.first())?;
            let applied = history_rows(results.get(1))?;
            let any = |i: usize| {
                results
                    .get(i)
                    .and_then(|rows| rows.first())
                    .is_some_and(|row| row.get(0) == Some("t"))
            };
            let status = if with_status {
                let invalid = if any(2) {
                    plan::invalid_indexes(client)?
                } else {
                    Vec::new()
                };
                let unfinished = if any(3) {
                    history::unfinished_after_ensure(client)?
                } else {
                    Vec::new()
                };
                Some((invalid, unfinished))
            } else {
                None
            };
            Ok(Probe {
                server_version_num: state.0,
                in_recovery: state.1,
                tables_complete: state.2,
                applied,
                status,
                lock_free,
            })
        }
        // A table or a column is missing (a database never migrated, an older event log), or
        // cannot be read: ask one question at a time, so each answers for itself. Any other
        // error (a cancel, a shutdown, a timeout) is the answer.
        Err(e) if is_missing_or_forbidden(&e) => one_at_a_time(client, with_status),
        Err(e) => Err(Error::db("cannot read the migration history")(e)),
    }
}

/// The same questions, one round trip each, skipping those whose table does not exist.
pub(crate) fn one_at_a_time(client: &mut Client, with_status: bool) -> Result<Probe, Error> {
    let messages = client
        .simple_query(STATE)
        .map_err(Error::db("cannot read the server's state"))?;
    let (server_version_num, in_recovery, tables_complete, history_exists) =
        state(split_results(messages).first())?;
    let applied = if history_exists {
        let messages = client
            .simple_query(HISTORY)
            .map_err(Error::db("cannot read the migration history"))?;
        history_rows(split_results(messages).first())?
    } else {
        Vec::new()
    };
    let status = if with_status {
        Some((plan::invalid_indexes(client)?, history::unfinished(client)?))
    } else {
        None
    };
    Ok(Probe {
        server_version_num,
        in_recovery,
        tables_complete,
        applied,
        status,
        lock_free: None,
    })
}

/// The rows of each statement of a simple query, in order.
pub(crate) fn split_results(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<SimpleQueryRow>> {
    let mut results = vec![Vec::new()];
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => results.last_mut().expect("never empty").push(row),
            SimpleQueryMessage::CommandComplete(_) => results.push(Vec::new()),
            _ => {}
        }
    }
    results.pop();
    results
}

fn state(rows: Option<&Vec<SimpleQueryRow>>) -> Result<(i32, bool, bool, bool), Error> {
    let row = rows
        .and_then(|rows| rows.first())
        .ok_or_else(|| Error::UnreadableHistory("the server's state came back empty".into()))?;
    let version = crate::session::version_of(row.get(0))?;
    let flag = |i: usize| row.get(i) == Some("t");
    Ok((version, flag(1), flag(2), flag(3)))
}

fn history_rows(rows: Option<&Vec<SimpleQueryRow>>) -> Result<Vec<AppliedMigration>, Error> {
    let Some(rows) = rows else {
        return Ok(Vec::new());
    };
    rows.iter()
        .map(|row| {
            let text = |i: usize| row.get(i).unwrap_or_default().to_owned();
            let version = row.get(0).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::UnreadableHistory(format!("a row has the version {:?}", row.get(0)))
            })?;
            Ok(AppliedMigration {
                version,
                name: text(1),
                applied_on: text(2),
                checksum: text(3),
                down: None,
            })
        })
        .collect()
}

pub(crate) fn invalid_rows(rows: Option<&Vec<SimpleQueryRow>>) -> Vec<InvalidIndex> {
    rows.map(|rows| {
        rows.iter()
            .map(|row| {
                let text = |i: usize| row.get(i).unwrap_or_default().to_owned();
                InvalidIndex {
                    schema: text(0),
                    table: text(1),
                    name: text(2),
                    being_built: row.get(3) == Some("t"),
                }
            })
            .collect()
    })
    .unwrap_or_default()
}
