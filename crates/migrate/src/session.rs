//! The migration session: the settings every engine connection starts with, and the state every
//! script starts from, restored after a script that may have changed it.

use std::cell::Cell;
use std::time::Duration;

use postgres::Client;

use crate::Error;

/// Reads the server's version before the migration lock is taken, and refuses a standby (a
/// server in recovery) at once: it accepts no writes, and its advisory locks do not exclude a
/// run on the primary.
pub(crate) fn prepare(client: &mut Client) -> Result<i32, Error> {
    let messages = client
        .simple_query("SELECT current_setting('server_version_num'), pg_is_in_recovery()")
        .map_err(Error::db("cannot read the server version"))?;
    let row = first_row(&messages)?;
    if row.get(1) == Some("t") {
        return Err(Error::Standby);
    }
    version_of(row.get(0))
}

fn first_row(
    messages: &[postgres::SimpleQueryMessage],
) -> Result<&postgres::SimpleQueryRow, Error> {
    messages
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| Error::UnreadableHistory("the server did not say its version".into()))
}

pub(crate) fn version_of(text: Option<&str>) -> Result<i32, Error> {
    text.and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::UnreadableHistory("server_version_num is not a number".into()))
}

/// The connection check for servers that have it (PostgreSQL 14+).
pub(crate) fn connection_check(server_version_num: i32) -> Option<&'static str> {
    (server_version_num >= 140000).then_some(CONNECTION_CHECK)
}

/// The session state every script starts from. It is restored after a script that may have
/// changed it, so what one migration sets for the session (search_path, role, timeouts) never
/// leaks into the next: a migration behaves the same whether it runs alone or after others.
pub(crate) struct Session {
    /// Restores the state; sent ahead of the next script when the last one touched it.
    reset: String,
    /// Restores the policy's lock_timeout after a CONCURRENTLY statement.
    pub(crate) lock_timeout: String,
    /// Restores role, search_path and the policy's timeouts for the rest of a transaction, so a
    /// script's own SET LOCAL cannot decide who writes the history rows, where, or how long
    /// they may take.
    pub(crate) restore_in_transaction: String,
    /// True when the last script may have changed the session.
    dirty: Cell<bool>,
}

impl Session {
    /// Computes the state from the policy's timeouts (`None` keeps the server's setting) and
    /// applies it.
    pub(crate) fn establish(
        client: &mut Client,
        lock_timeout: Option<Duration>,
        statement_timeout: Option<Duration>,
    ) -> Result<Session, Error> {
        let version = server_version(client)?;
        Session::establish_for(client, version, lock_timeout, statement_timeout)
    }

    /// As [`Session::establish`], on a server whose version the caller has read.
    pub(crate) fn establish_for(
        client: &mut Client,
        server_version_num: i32,
        lock_timeout: Option<Duration>,
        statement_timeout: Option<Duration>,
    ) -> Result<Session, Error> {
        let session = Session::new(server_version_num, lock_timeout, statement_timeout);
        client
            .batch_execute(&session.reset)
            .map_err(Error::db("cannot set up the migration session"))?;
        Ok(session)
    }

    /// Computes the state for a server of this version, without applying it.
    pub(crate) fn new(
        server_version_num: i32,
        lock_timeout: Option<Duration>,
        statement_timeout: Option<Duration>,
    ) -> Session {
        let lock_timeout_value = lock_timeout;
        let lock_timeout = match lock_timeout {
            Some(t) => format!("SET lock_timeout = {}", t.as_millis()),
            None => "RESET lock_timeout".to_owned(),
        };
        let mut reset =
            format!("RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; {lock_timeout}; ");
        if let Some(check) = connection_check(server_version_num) {
            reset.push_str(check);
        }
        if let Some(t) = statement_timeout {
            reset.push_str(&format!("SET statement_timeout = {}; ", t.as_millis()));
        }
        let local = |name: &str, value: Option<Duration>| match value {
            Some(t) => format!("SET LOCAL {name} = {}; ", t.as_millis()),
            None => format!("SET LOCAL {name} TO DEFAULT; "),
        };
        let restore_in_transaction = format!(
            "RESET ROLE; SET LOCAL search_path TO DEFAULT; {}{}\n",
            local("lock_timeout", lock_timeout_value),
            local("statement_timeout", statement_timeout)
        );
        Session {
            reset,
            lock_timeout,
            restore_in_transaction,
            dirty: Cell::new(false),
        }
    }

    /// The statements that set the session up (and restore it after a script that changed it).
    pub(crate) fn reset_sql(&self) -> &str {
        &self.reset
    }

    /// The reset to send ahead of the next script, if the last one may have changed the session.
    pub(crate) fn take_reset(&self) -> Option<&str> {
        self.dirty.replace(false).then_some(self.reset.as_str())
    }

    /// Notes whether the script that just ran may have changed the session.
    pub(crate) fn set_dirty(&self, touched: bool) {
        self.dirty.set(touched);
    }
}

/// If this process dies mid-migration, the server notices within a second, rolls the migration
/// back and frees the migration lock, instead of finishing a long statement first (PostgreSQL 14+).
const CONNECTION_CHECK: &str = "SET client_connection_check_interval = '1s'; ";

pub(crate) fn server_version(client: &mut Client) -> Result<i32, Error> {
    let messages = client
        .simple_query("SELECT current_setting('server_version_num')")
        .map_err(Error::db("cannot read the server version"))?;
    version_of(first_row(&messages)?.get(0))
}
