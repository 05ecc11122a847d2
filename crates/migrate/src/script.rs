//! Running one script, up or down: in one transaction together with its history change, or
//! statement by statement outside a transaction and then recorded. Up and down run through the
//! same code, as the file's directive says.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::catalog::Migration;
use crate::classify::classify;
use crate::history::{self, Actor, EventRow};
use crate::observe::{Direction, Observer, ScriptRun, StatementRun};
use crate::plan::{invalid_indexes, InvalidIndex};
use crate::session::Session;
use crate::{split, Error};

/// One script to run: a migration's up file, or its down file.
pub(crate) struct Script<'m> {
    pub migration: &'m Migration,
    pub direction: Direction,
}

impl Script<'_> {
    pub(crate) fn sql(&self) -> &str {
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

    /// The `started` event-log row of an attempt to run this script, committed on its own
    /// before the script runs. Its commit does not wait for the WAL flush
    /// (`synchronous_commit = off`): the script's own commit, or any later one, flushes it, so
    /// it is lost only in a server crash that also loses everything the attempt did.
    pub(crate) fn start_row_sql(&self, actor: &Actor, statements: usize) -> String {
        format!(
            "BEGIN; {START_ROW_SETTING}; {}; COMMIT; ",
            self.attempt_start_sql(actor, statements)
        )
    }

    /// The `started` event-log row of an attempt to run this script.
    pub(crate) fn attempt_start_sql(&self, actor: &Actor, statements: usize) -> String {
        history::attempt_start_sql(
            actor,
            &history::AttemptStart {
                version: self.migration.version(),
                name: self.migration.name(),
                direction: self.direction.as_str(),
                transactional: self.is_transactional(),
                statements,
            },
        )
    }

    /// What the observer is told about this script.
    pub fn run_info(&self) -> ScriptRun<'_> {
        ScriptRun {
            migration: self.migration,
            direction: self.direction,
            transactional: self.is_transactional(),
        }
    }

    pub(crate) fn statements(&self) -> Result<Vec<split::Statement<'_>>, Failure> {
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
        actor: &Actor,
        elapsed: Duration,
        restore: Option<&str>,
        attempt: history::Attempt,
    ) -> Result<(), Error> {
        let restore = restore.unwrap_or_default();
        let batch = self.record_sql(actor, elapsed, Some(restore), attempt);
        client.batch_execute(&batch).map_err(|e| {
            if history::is_history_changed(&e) {
                return Error::HistoryChanged {
                    version: self.migration.version(),
                };
            }
            Error::db(
                "cannot record and commit the migration (if the connection was lost during COMMIT, whether it committed is unknown: run status)",
            )(e)
        })
    }

    /// What records the script and commits: the session restore (if any), the history insert
    /// (going up) or the checked removal (going down), the event row and `COMMIT`, sent as one
    /// batch.
    pub(crate) fn record_sql(
        &self,
        actor: &Actor,
        elapsed: Duration,
        restore: Option<&str>,
        attempt: history::Attempt,
    ) -> String {
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
                attempt,
            },
        );
        match self.direction {
            Direction::Up => format!(
                "{}{};\n{event};\nCOMMIT",
                restore.unwrap_or_default(),
                history::applied_sql(m.version(), m.name(), m.checksum())
            ),
            Direction::Down => format!(
                "{}{};\n{event};\nCOMMIT",
                restore.unwrap_or_default(),
                history::reverted_sql(m.version())
            ),
        }
    }
}

/// What every script of one run shares: the session, who runs it, and the observer.
pub(crate) struct Runner<'a> {
    pub session: &'a Session,
    pub actor: &'a Actor,
    pub observer: Option<&'a dyn Observer>,
    /// The attempt at the current script and how many there may be at most, for the event log
    /// of a script that ran into `lock_timeout`.
    pub attempt: std::cell::Cell<(u32, u32)>,
    /// The id of the running attempt's `started` row, as its insert returned it; `None` until
    /// then (the rows that follow find it in the session instead).
    pub start_id: std::cell::Cell<Option<i64>>,
    /// Set when the caller interrupts the run (and cancels the running statement).
    pub interrupt: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Why one script did not run, before it is turned into an [`Error`] with the report.
pub(crate) enum Failure {
    Engine(Error),
    RolledBack(String),
    /// A transactional script ran into `lock_timeout` (SQLSTATE 55P03) and was rolled back
    /// whole; `sql` is the statement that waited.
    LockTimeout {
        detail: String,
        sql: String,
    },
    /// The caller interrupted the run while this transactional script ran; it was rolled back.
    Interrupted(String),
    HalfApplied {
        detail: String,
        state: String,
    },
    /// A non-transactional script's first statement failed and left nothing behind.
    NothingApplied(String),
    Observer(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

/// The start row's transaction does not wait for the WAL flush (see `Script::start_row_sql`).
pub(crate) const START_ROW_SETTING: &str = "SET LOCAL synchronous_commit = off";

/// Sent with a transactional script's first statement, after the session reset, so neither costs
/// a round trip of its own.
pub(crate) const BEGIN: &str = "BEGIN; ";

/// Sent before a statement that waits by design (CREATE/DROP INDEX CONCURRENTLY): it runs
/// without lock_timeout; the policy's is restored after it.
pub(crate) const NO_LOCK_TIMEOUT: &str = "SET lock_timeout = 0";

/// Ends a transaction that failed part way. Best effort: when the connection is gone, the server
/// has rolled it back already.
fn roll_back(client: &mut Client) {
    let _ = client.batch_execute("ROLLBACK");
}

/// Why a statement failed: the server's error, or the observer's after the statement succeeded.
enum StatementError {
    Server(postgres::Error, usize),
    Observer(String),
}

/// The id a start row's `RETURNING` gave back: the first row of the batch.
fn returned_id(messages: &[postgres::SimpleQueryMessage]) -> Option<i64> {
    messages.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
        _ => None,
    })
}

impl Runner<'_> {
    /// How the rows that end or count on the running attempt name it: by the id its start
    /// row returned, or, when that is not known, by looking it up.
    fn this_attempt(&self) -> history::Attempt {
        self.start_id
            .get()
            .map_or(history::Attempt::Running, history::Attempt::Id)
    }

    /// Runs one script, in a transaction together with its history change, or statement by
    /// statement outside a transaction and then records it.
    pub fn run(&self, client: &mut Client, script: &Script<'_>) -> Result<(), Failure> {
        // The rows of this attempt must never name an earlier attempt's start row.
        self.start_id.set(None);
        if script.is_transactional() {
            self.run_in_transaction(client, script)
        } else {
            self.run_outside_transaction(client, script)
        }
    }

    /// Tells the observer, if any, that a statement succeeded.
    fn observe(
        &self,
        client: &mut Client,
        script: &Script<'_>,
        index: usize,
        total: usize,
        statement: &split::Statement<'_>,
        duration: Duration,
    ) -> Result<(), String> {
        let Some(observer) = self.observer else {
            return Ok(());
        };
        let run = StatementRun {
            index,
            total,
            line: statement.line,
            sql: statement.sql,
            duration,
        };
        observer
            .statement_done(client, &script.run_info(), &run)
            .map_err(|e| format!("the observer failed after it: {e}"))
    }

    fn run_in_transaction(&self, client: &mut Client, script: &Script<'_>) -> Result<(), Failure> {
        let statements = script.statements()?;
        let started = Instant::now();
        let touched = statements.iter().any(|s| classify(s.sql).session_change);
        let reset = self.session.take_reset().unwrap_or_default();
        let total = statements.len();
        // The attempt's start row commits on its own before the script's transaction begins,
        // in the round trip that begins it: a killed run stays visible in the event log.
        let start = format!("{reset}{}{BEGIN}", script.start_row_sql(self.actor, total));
        if statements.is_empty() {
            // An empty down file: an explicit no-op that only removes the history row.
            let messages = client
                .simple_query(&start)
                .map_err(Error::db("cannot begin the no-op down"))?;
            self.start_id.set(returned_id(&messages));
        }
        // Each statement is its own round trip so a failure names its statement; the
        // transaction spans them all, and the history and event rows commit with it.
        for (index, statement) in statements.iter().enumerate() {
            let (sent, prefix_chars) = if index == 0 {
                let chars = start.chars().count();
                (Cow::Owned(format!("{start}{}", statement.sql)), chars)
            } else {
                (Cow::Borrowed(statement.sql), 0)
            };
            let sent_at = Instant::now();
            let result = client
                .simple_query(&sent)
                .map(|messages| {
                    if index == 0 {
                        self.start_id.set(returned_id(&messages));
                    }
                })
                .map_err(|e| StatementError::Server(e, prefix_chars))
                .and_then(|()| {
                    self.observe(client, script, index, total, statement, sent_at.elapsed())
                        .map_err(StatementError::Observer)
                });
            if let Err(e) = result {
                let detail = describe(index, total, statement, &e);
                // Nothing of this script stays.
                roll_back(client);
                let interrupted = self
                    .interrupt
                    .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst));
                if interrupted {
                    let logged = format!("interrupted: {detail}");
                    record_event(
                        client,
                        script,
                        self.actor,
                        started.elapsed(),
                        &logged,
                        Some("interrupted"),
                        self.this_attempt(),
                    );
                    return Err(Failure::Interrupted(detail));
                }
                if let StatementError::Server(error, _) = &e {
                    if error.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                        let (attempt, attempts) = self.attempt.get();
                        let logged = format!("{detail} (attempt {attempt} of {attempts})");
                        record_failure(
                            client,
                            script,
                            self.actor,
                            started.elapsed(),
                            &logged,
                            self.this_attempt(),
                        );
                        return Err(Failure::LockTimeout {
                            detail,
                            sql: statement.sql.to_owned(),
                        });
                    }
                }
                record_failure(
                    client,
                    script,
                    self.actor,
                    started.elapsed(),
                    &detail,
                    self.this_attempt(),
                );
                return Err(Failure::RolledBack(detail));
            }
        }
        if let Err(e) = script.record_and_commit(
            client,
            self.actor,
            started.elapsed(),
            touched.then_some(self.session.restore_in_transaction.as_str()),
            self.this_attempt(),
        ) {
            roll_back(client);
            return Err(Failure::Engine(e));
        }
        self.session.set_dirty(touched);
        Ok(())
    }

    fn run_outside_transaction(
        &self,
        client: &mut Client,
        script: &Script<'_>,
    ) -> Result<(), Failure> {
        let statements = script.statements()?;
        let before = invalid_indexes(client)?;
        let left_over: Vec<InvalidIndex> = before.into_iter().filter(|i| !i.being_built).collect();
        if !left_over.is_empty() {
            return Err(Failure::Engine(Error::InvalidIndexes(left_over)));
        }
        // The attempt's start row commits before the first statement runs (with the session
        // reset, in one round trip), and each completed statement is counted on it, so a run
        // cut off between statements leaves a record of how far it got.
        let reset = self.session.take_reset().unwrap_or_default();
        let messages = client
            .simple_query(&format!(
                "{reset}{}",
                script.start_row_sql(self.actor, statements.len())
            ))
            .map_err(Error::db(
                "cannot set up the migration session and record the attempt's start",
            ))?;
        self.start_id.set(returned_id(&messages));
        let touched = statements.iter().any(|s| classify(s.sql).session_change);
        // Even a failed script may have changed the session before it failed.
        self.session.set_dirty(touched);
        let started = Instant::now();
        let total = statements.len();
        for (index, statement) in statements.iter().enumerate() {
            // One statement per simple query: a multi-statement query would run in an implicit
            // transaction block, where CREATE INDEX CONCURRENTLY is refused. A CONCURRENTLY
            // statement runs without lock_timeout (statement_timeout still bounds it); it takes
            // no lock that blocks reads or writes.
            let concurrent = classify(statement.sql).waits_by_design();
            let sent_at = Instant::now();
            let result = (|| {
                if concurrent {
                    client.batch_execute(NO_LOCK_TIMEOUT)?;
                }
                client.batch_execute(statement.sql)?;
                let progress = history::attempt_progress_sql(
                    script.migration.version(),
                    script.direction.as_str(),
                    index + 1,
                    self.start_id.get(),
                );
                if concurrent {
                    client.batch_execute(&format!("{}; {progress}", self.session.lock_timeout))?;
                } else {
                    client.batch_execute(&progress)?;
                }
                Ok::<(), postgres::Error>(())
            })()
            .map_err(|e| StatementError::Server(e, 0))
            .and_then(|()| {
                self.observe(client, script, index, total, statement, sent_at.elapsed())
                    .map_err(StatementError::Observer)
            });
            if let Err(e) = result {
                // A statement the observer stopped after did complete.
                let completed = match e {
                    StatementError::Server(..) => index,
                    StatementError::Observer(_) => index + 1,
                };
                let detail = describe(index, total, statement, &e);
                let left = invalid_indexes(client).unwrap_or_default();
                record_failure(
                    client,
                    script,
                    self.actor,
                    started.elapsed(),
                    &detail,
                    self.this_attempt(),
                );
                if completed == 0 && left.iter().all(|i| i.being_built) {
                    return Err(Failure::NothingApplied(detail));
                }
                let state = half_done_state(completed, total, &left, script.direction);
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
                self.actor,
                started.elapsed(),
                touched.then_some(self.session.restore_in_transaction.as_str()),
                self.this_attempt(),
            )
        })();
        if let Err(e) = recorded {
            roll_back(client);
            let detail = format!("all {total} statement(s) succeeded, then: {e}");
            let left = invalid_indexes(client).unwrap_or_default();
            let state = half_done_state(total, total, &left, script.direction);
            record_failure(
                client,
                script,
                self.actor,
                started.elapsed(),
                &detail,
                self.this_attempt(),
            );
            return Err(Failure::HalfApplied { detail, state });
        }
        Ok(())
    }
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
    actor: &Actor,
    elapsed: Duration,
    detail: &str,
    attempt: history::Attempt,
) {
    record_event(client, script, actor, elapsed, detail, None, attempt);
}

/// Records a failed attempt in the event log, with `what` (`interrupted`) in its detail column.
fn record_event(
    client: &mut Client,
    script: &Script<'_>,
    actor: &Actor,
    elapsed: Duration,
    detail: &str,
    what: Option<&str>,
    attempt: history::Attempt,
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
            detail: what,
            attempt,
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
    describe_server(index, total, statement, error, 0)
}

fn describe(
    index: usize,
    total: usize,
    statement: &split::Statement<'_>,
    error: &StatementError,
) -> String {
    match error {
        StatementError::Server(error, prefix_chars) => {
            describe_server(index, total, statement, error, *prefix_chars)
        }
        StatementError::Observer(message) => {
            describe_at(index, total, statement.line, statement.sql, message)
        }
    }
}

/// As [`describe_failure`], for a statement sent after `prefix_chars` characters of something else.
fn describe_server(
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
    describe_at(index, total, line, statement.sql, &crate::db_message(error))
}

fn describe_at(index: usize, total: usize, line: usize, sql: &str, message: &str) -> String {
    format!(
        "statement {} of {} (line {}: `{}`): {}",
        index + 1,
        total,
        line,
        abbreviate(sql),
        message
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
