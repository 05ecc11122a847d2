//! The apply loop, one for both directions: `migrate` runs up files oldest first to go up, or
//! down files newest first to go down (a rollback), each script committed with its history
//! change, the caller told of each step and the observer (if any) of each statement.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use postgres::Client;
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::catalog::{Catalog, Migration};
use crate::history::{self, Actor, AppliedMigration};
use crate::observe::{Direction, Observer};
use crate::rollback::{self, RollbackTarget};
use crate::script::{Failure, Runner, Script};
use crate::session::Session;
use crate::{lock, plan, probe, Error};

/// How reports and the status name a down file without statements.
pub const NOOP_DOWN: &str = "no-op";

/// Where a run takes the database, and so which way it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Up: apply everything pending.
    Latest,
    /// Up: apply everything pending up to and including this version.
    UpTo(i32),
    /// Down: revert every applied migration above this version; 0 reverts them all.
    DownTo(i32),
    /// Down: revert this many of the newest applied migrations.
    DownSteps(usize),
}

impl Target {
    /// Which way a run to this target goes.
    pub fn direction(self) -> Direction {
        match self {
            Target::Latest | Target::UpTo(_) => Direction::Up,
            Target::DownTo(_) | Target::DownSteps(_) => Direction::Down,
        }
    }
}

/// How to migrate, up or down. Every safety-relevant choice is explicit: there is no
/// `Default`. Whether the environment allows going down and whether a human confirmed it is
/// the caller's business.
#[derive(Clone, Debug)]
pub struct MigrateOptions<'a> {
    /// Where to take the database.
    pub target: Target,
    /// Going up, apply a never-applied migration whose version is below the applied head
    /// instead of refusing. Going down, such a file is never touched, so it does not matter.
    pub allow_out_of_order: bool,
    /// How to run the scripts.
    pub run: RunOptions<'a>,
}

/// How to run scripts, in either direction: the lock wait, the policy's timeouts, who runs
/// them and who watches. There is no `Default`.
#[derive(Clone, Debug)]
pub struct RunOptions<'a> {
    /// How long to wait for another run's migration lock before giving up.
    pub lock_wait: Duration,
    /// `lock_timeout` for the migration statements; `None` keeps the server's setting.
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` for the migration statements; `None` keeps the server's setting.
    pub statement_timeout: Option<Duration>,
    /// Recorded in the event log.
    pub actor: &'a Actor,
    /// Told of each script and statement (the dry-run); `None` for a plain run.
    pub observer: Option<&'a dyn Observer>,
    /// How many times a transactional script that ran into `lock_timeout` (SQLSTATE 55P03) is
    /// rolled back and run again, whole, still under the migration lock; 0 never retries.
    /// Statements outside a transaction are never retried: what they did stays.
    pub lock_retries: u32,
    /// The wait before the first retry; each further one waits twice as long, plus up to half
    /// as much again at random, so that retries do not fall into step with the blocker.
    pub lock_retry_backoff: Duration,
    /// Set (by a signal handler) when the run must stop: the script that is running is rolled
    /// back (its statement cancelled by the caller) and no further script starts. `None`: the
    /// run is never interrupted.
    pub interrupt: Option<&'a std::sync::atomic::AtomicBool>,
}

/// What the engine tells its caller while it works, in either direction; the caller decides
/// how to show it.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The plan is known: these migrations will be applied (oldest first) or reverted
    /// (newest first).
    Planned(Direction, &'a [&'a Migration]),
    /// A script starts.
    Started(&'a Migration),
    /// A script is done and recorded, after this long.
    Done(&'a Migration, Duration),
    /// A script ran into `lock_timeout` and was rolled back; it runs again after `wait`.
    LockRetry {
        /// The migration.
        migration: &'a Migration,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// How many attempts there may be.
        attempts: u32,
        /// How long until the next.
        wait: Duration,
    },
}

/// One migration applied or reverted by a run.
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
    /// How many attempts it took: more than 1 when it ran into `lock_timeout` and was retried.
    pub attempts: u32,
    /// `no-op` for a down file with no statement (empty or only comments): reverting it only
    /// removed the history row. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<&'static str>,
}

/// What a run did, in either direction. In JSON its steps are `applied` (up) or `reverted`
/// (down), next to `head`.
#[derive(Clone, Debug)]
pub struct Report {
    /// Up for `migrate`, down for `rollback`.
    pub direction: Direction,
    /// The migrations this run applied (oldest first) or reverted (newest first).
    pub steps: Vec<AppliedStep>,
    /// The highest applied version once the run ended; `None` when nothing is applied.
    pub head: Option<i32>,
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.direction.done(), &self.steps)?;
        map.serialize_entry("head", &self.head)?;
        map.end()
    }
}

/// Applies pending migrations (or reverts applied ones) under the migration lock, each
/// committed together with its history change and its event-log row. Everything that would
/// stop the run half way for a reason known in advance (divergence, an irreversible migration,
/// an unreachable target) is refused before the first script runs.
pub fn migrate(
    client: &mut Client,
    catalog: &Catalog,
    options: &MigrateOptions<'_>,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, Error> {
    if let Target::UpTo(target) = options.target {
        if catalog.get(target).is_none() {
            return Err(Error::UnknownTarget(target));
        }
    }
    let direction = options.target.direction();
    // Nearly every run finds nothing to do: one round trip tells, and then the migration lock is
    // not taken and nothing is written. That answer counts only when no run held the lock while
    // the history was read: a run applying migrations shows them as pending, but one rolling
    // back still shows the rows it is removing. Otherwise this run waits for the lock below and
    // reads the history again under it.
    let first = probe::probe(client, probe::Ask::Lock)?;
    if first.in_recovery {
        return Err(Error::Standby);
    }
    if first.tables_complete && first.lock_free == Some(true) {
        if let Ok(steps) = steps(catalog, &first.applied, options) {
            if steps.is_empty() {
                on_progress(Progress::Planned(direction, &[]));
                return Ok(Report {
                    direction,
                    steps: Vec::new(),
                    head: first.applied.iter().map(|a| a.version).max(),
                });
            }
        }
    }
    let server_version_num = first.server_version_num;
    lock::holding_prepared(
        client,
        server_version_num,
        options.run.lock_wait,
        |client| {
            // Read again under the lock: another run may have finished in between.
            let probe = if first.tables_complete {
                probe::probe(client, probe::Ask::History)?
            } else {
                // The history table was not there a moment ago; most likely it still is not, so
                // its questions are asked one at a time rather than refused as one message.
                probe::one_at_a_time(client, false)?
            };
            let steps = steps(catalog, &probe.applied, options)?;
            if !probe.tables_complete && (direction == Direction::Up || !steps.is_empty()) {
                history::create_tables(client)?;
            }
            options.run.apply(
                direction,
                client,
                server_version_num,
                &steps,
                &probe.applied,
                on_progress,
            )
        },
    )
}

/// The scripts a run to the options' target runs, in order: the plan, checked (divergence, an
/// irreversible migration, an unreachable target are refused here).
pub(crate) fn steps<'c>(
    catalog: &'c Catalog,
    applied: &[AppliedMigration],
    options: &MigrateOptions<'_>,
) -> Result<Vec<&'c Migration>, Error> {
    match options.target {
        Target::Latest => pending(catalog, applied, None, options.allow_out_of_order),
        Target::UpTo(to) => pending(catalog, applied, Some(to), options.allow_out_of_order),
        Target::DownTo(to) => rollback::plan(catalog, applied, RollbackTarget::ToVersion(to)),
        Target::DownSteps(n) => rollback::plan(catalog, applied, RollbackTarget::Steps(n)),
    }
}

/// The migrations a run up to `target` (everything when `None`) applies, oldest first.
fn pending<'c>(
    catalog: &'c Catalog,
    applied: &[AppliedMigration],
    target: Option<i32>,
    allow_out_of_order: bool,
) -> Result<Vec<&'c Migration>, Error> {
    let (mut pending, problems) = plan::plan(catalog, applied, allow_out_of_order);
    if !problems.is_empty() {
        return Err(Error::Diverged(problems));
    }
    let head = applied.iter().map(|a| a.version).max();
    if let (Some(target), Some(head)) = (target, head) {
        if target < head {
            return Err(Error::TargetBelowHead { head, target });
        }
    }
    if let Some(target) = target {
        pending.retain(|m| m.version() <= target);
    }
    Ok(pending)
}

impl RunOptions<'_> {
    /// Runs the scripts of `steps` in order (up files for `Up`, down files for `Down`) on a
    /// database where `applied` are applied. The plan has been checked; the lock is held.
    pub(crate) fn apply(
        &self,
        direction: Direction,
        client: &mut Client,
        server_version_num: i32,
        steps: &[&Migration],
        applied: &[AppliedMigration],
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Report, Error> {
        let mut applied: BTreeSet<i32> = applied.iter().map(|a| a.version).collect();
        let mut report = Report {
            direction,
            steps: Vec::new(),
            head: applied.last().copied(),
        };
        on_progress(Progress::Planned(direction, steps));
        if steps.is_empty() {
            return Ok(report);
        }
        // An attempt that was cut off outside a transaction may have left statements applied:
        // nothing runs until someone has looked (only read when there is something to run).
        let half_done: Vec<_> = history::unfinished_after_ensure(client)?
            .into_iter()
            .filter(|a| a.needs_repair())
            .collect();
        if !half_done.is_empty() {
            return Err(Error::UnfinishedAttempts(half_done));
        }
        let session = Session::establish_for(
            client,
            server_version_num,
            self.lock_timeout,
            self.statement_timeout,
        )?;
        let runner = Runner {
            session: &session,
            actor: self.actor,
            observer: self.observer,
            attempt: std::cell::Cell::new((1, 1)),
            start_id: std::cell::Cell::new(None),
            interrupt: self.interrupt,
        };
        for &migration in steps {
            if self.interrupted() {
                return Err(Error::Interrupted {
                    file: None,
                    detail: "between migrations, before the next one started".to_owned(),
                    report,
                });
            }
            on_progress(Progress::Started(migration));
            let script = Script {
                migration,
                direction,
            };
            if let Some(observer) = self.observer {
                if let Err(e) = observer.script_starting(client, &script.run_info()) {
                    let detail = format!("the observer stopped the run before it started: {e}");
                    return Err(into_error(Failure::Observer(detail), &script, report));
                }
            }
            let started = Instant::now();
            let attempts = if script.is_transactional() {
                self.lock_retries.saturating_add(1)
            } else {
                1
            };
            let mut attempt = 1;
            loop {
                runner.attempt.set((attempt, attempts));
                match runner.run(client, &script) {
                    Ok(()) => break,
                    Err(Failure::LockTimeout { .. })
                        if attempt < attempts && !self.interrupted() =>
                    {
                        let wait = self.backoff(attempt);
                        on_progress(Progress::LockRetry {
                            migration,
                            attempt,
                            attempts,
                            wait,
                        });
                        std::thread::sleep(wait);
                        attempt += 1;
                    }
                    Err(Failure::LockTimeout { detail, sql }) => {
                        let blockers = crate::blockers::find(client, &sql);
                        let named = if blockers.is_empty() {
                            "no session holding a lock on the tables it names is visible now"
                                .to_owned()
                        } else {
                            format!(
                                "blocked by {}",
                                blockers
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        };
                        let detail = format!(
                            "{detail}; rolled back after {attempts} attempt(s) (lock_retries = {}), {named}: wait for it to finish or end it with pg_terminate_backend(pid), then migrate again",
                            self.lock_retries
                        );
                        return Err(into_error(Failure::RolledBack(detail), &script, report));
                    }
                    Err(failure) => return Err(into_error(failure, &script, report)),
                }
            }
            let took = started.elapsed();
            match direction {
                Direction::Up => applied.insert(migration.version()),
                Direction::Down => applied.remove(&migration.version()),
            };
            report.steps.push(AppliedStep {
                version: migration.version(),
                name: migration.name().to_owned(),
                duration_ms: took.as_secs_f64() * 1000.0,
                transactional: script.is_transactional(),
                attempts: attempt,
                down: (direction == Direction::Down && migration.has_noop_down())
                    .then_some(NOOP_DOWN),
            });
            report.head = applied.last().copied();
            if let Some(observer) = self.observer {
                if let Err(e) = observer.script_committed(client, &script.run_info(), took) {
                    let detail = format!(
                        "the observer stopped the run after it was committed (it stays {}): {e}",
                        direction.done()
                    );
                    return Err(into_error(Failure::Observer(detail), &script, report));
                }
            }
            on_progress(Progress::Done(migration, took));
        }
        Ok(report)
    }
}

impl RunOptions<'_> {
    /// True once the caller asked the run to stop.
    fn interrupted(&self) -> bool {
        self.interrupt
            .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The wait after failed attempt `attempt` (1 for the first): the backoff doubled for each
    /// earlier retry, plus up to half of that at random.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .lock_retry_backoff
            .saturating_mul(1_u32 << (attempt - 1).min(16));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.subsec_nanos());
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
        base.saturating_add(jitter)
    }
}

/// Turns a script's failure into the error that carries what the run did before it.
fn into_error(failure: Failure, script: &Script<'_>, report: Report) -> Error {
    let file = script.file_name();
    match failure {
        Failure::Engine(e) => e,
        Failure::Interrupted(detail) => Error::Interrupted {
            file: Some(file),
            detail,
            report,
        },
        Failure::RolledBack(detail) | Failure::LockTimeout { detail, .. } => {
            Error::MigrationFailed {
                file,
                detail,
                report,
            }
        }
        Failure::NothingApplied(detail) => Error::NothingApplied {
            file,
            detail,
            report,
        },
        Failure::HalfApplied { detail, state } => Error::HalfApplied {
            file,
            detail,
            state,
            report,
        },
        Failure::Observer(detail) => Error::Observer {
            file,
            detail,
            report,
        },
    }
}
