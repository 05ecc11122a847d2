//! The observer: a hook the apply loop calls around each script and after each statement, in
//! both directions. The dry-run reads `pg_locks` and relfilenodes with it; plain `migrate` has
//! none and pays nothing for it.

use std::fmt;
use std::time::Duration;

use postgres::Client;
use serde::Serialize;

use crate::catalog::Migration;

/// Which way a script moves the schema: the up file applies a migration, the down file
/// reverts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The up file: `migrate`.
    Up,
    /// The down file: `rollback`.
    Down,
}

impl Direction {
    /// The event log's `direction`: `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    /// What a finished script did to its migration: `applied` or `reverted`. Also the name of
    /// the report's list of steps in JSON.
    pub fn done(self) -> &'static str {
        match self {
            Direction::Up => "applied",
            Direction::Down => "reverted",
        }
    }
}

/// The script the observer is told about.
#[derive(Clone, Copy, Debug)]
pub struct ScriptRun<'a> {
    /// The migration whose up or down file runs.
    pub migration: &'a Migration,
    /// Up or down.
    pub direction: Direction,
    /// True when the script runs in one transaction together with its history change; false
    /// when it runs statement by statement outside any transaction.
    pub transactional: bool,
}

/// A statement that has just succeeded.
#[derive(Clone, Copy, Debug)]
pub struct StatementRun<'a> {
    /// Its 0-based position in the script.
    pub index: usize,
    /// How many statements the script has.
    pub total: usize,
    /// The 1-based line of the script it starts on.
    pub line: usize,
    /// Its text, as sent.
    pub sql: &'a str,
    /// How long the server took, by the client's clock (the round trip included).
    pub duration: Duration,
}

/// Why an observer stopped a run.
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Called by the apply loop, in both directions. Every method has a no-op default. An error
/// stops the run like a failed statement: a transactional script is rolled back, a
/// non-transactional one is reported half-done. Methods take `&self` because the options that
/// carry the observer are shared; keep state in a `RefCell` or `Mutex`.
///
/// The observer shares the migration's connection: what it runs inside a transactional script
/// runs inside the migration's transaction, and a query that fails there aborts it.
pub trait Observer {
    /// Before a script starts, outside its transaction.
    fn script_starting(
        &self,
        client: &mut Client,
        script: &ScriptRun<'_>,
    ) -> Result<(), ObserverError> {
        let _ = (client, script);
        Ok(())
    }

    /// After each statement succeeded: inside the migration's transaction for a transactional
    /// script, so `pg_locks` for `pg_backend_pid()` shows what the script holds so far.
    fn statement_done(
        &self,
        client: &mut Client,
        script: &ScriptRun<'_>,
        statement: &StatementRun<'_>,
    ) -> Result<(), ObserverError> {
        let _ = (client, script, statement);
        Ok(())
    }

    /// After the script committed together with its history change; `elapsed` runs from the
    /// script's start to its commit.
    fn script_committed(
        &self,
        client: &mut Client,
        script: &ScriptRun<'_>,
        elapsed: Duration,
    ) -> Result<(), ObserverError> {
        let _ = (client, script, elapsed);
        Ok(())
    }
}

impl fmt::Debug for dyn Observer + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}
