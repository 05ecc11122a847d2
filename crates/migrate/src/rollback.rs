//! Rolling back: down files run newest first under the migration lock, each committed
//! together with the removal of its history row and an event-log row.
//!
//! A down script runs through the same code as an up script (`engine::run_script`): in one
//! transaction, or statement by statement outside a transaction when its first line says
//! `-- ecomind:no-transaction` (V2's `DROP INDEX CONCURRENTLY`). Everything that would stop
//! the rollback half way through for a reason known in advance (divergence, an irreversible
//! migration, an unreachable target) is refused before the first down file runs.

use std::time::{Duration, Instant};

use postgres::Client;
use serde::Serialize;

use crate::catalog::{Catalog, Migration};
use crate::engine::{self, AppliedStep, Direction, Failure, Script};
use crate::{history, lock, Actor, Error};

/// How far to roll back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackTarget {
    /// Revert every applied migration above this version; 0 reverts them all.
    ToVersion(i32),
    /// Revert this many of the newest applied migrations.
    Steps(usize),
}

/// How to roll back. Every safety-relevant choice is explicit: there is no `Default`.
/// Whether the environment allows a rollback and whether a human confirmed it is the caller's
/// business.
#[derive(Clone, Debug)]
pub struct RollbackOptions<'a> {
    /// How far.
    pub to: RollbackTarget,
    /// How long to wait for another run's migration lock before giving up.
    pub lock_wait: Duration,
    /// `lock_timeout` for the down statements; `None` keeps the server's setting.
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` for the down statements; `None` keeps the server's setting.
    pub statement_timeout: Option<Duration>,
    /// Recorded in the event log.
    pub actor: &'a Actor,
}

/// What the rollback tells its caller while it works.
#[derive(Debug)]
pub enum RollbackProgress<'a> {
    /// The plan is known: these migrations will be reverted, in this order (newest first).
    Planned(&'a [&'a Migration]),
    /// A down file starts.
    Started(&'a Migration),
    /// A migration is reverted and its history row removed.
    Reverted(&'a Migration, Duration),
}

/// What a rollback did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RollbackReport {
    /// The migrations this run reverted, newest first.
    pub reverted: Vec<AppliedStep>,
    /// The highest applied version once the run ended; `None` when nothing stays applied.
    pub head: Option<i32>,
}

/// Reverts applied migrations down to the target, under the migration lock.
pub fn rollback(
    client: &mut Client,
    catalog: &Catalog,
    options: &RollbackOptions<'_>,
    on_progress: &mut dyn FnMut(RollbackProgress<'_>),
) -> Result<RollbackReport, Error> {
    lock::holding(client, options.lock_wait, |client| {
        rollback_locked(client, catalog, options, on_progress)
    })
}

/// The migrations a rollback to `target` reverts, newest first, checked against the
/// history and the catalog: nothing runs unless every one of them can be reverted.
fn plan<'c>(
    catalog: &'c Catalog,
    applied: &[history::AppliedMigration],
    target: RollbackTarget,
) -> Result<Vec<&'c Migration>, Error> {
    // A never-applied file below the head does not stop a rollback: it is not touched, and
    // rolling back below it is one way to put it in order.
    let (_, problems) = engine::plan(catalog, applied, true);
    if !problems.is_empty() {
        return Err(Error::Diverged(problems));
    }
    let mut versions: Vec<i32> = applied.iter().map(|a| a.version).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let chosen: Vec<i32> = match target {
        RollbackTarget::ToVersion(to) => {
            if to != 0 && !versions.contains(&to) {
                let mut ascending = versions.clone();
                ascending.reverse();
                return Err(Error::RollbackTargetNotApplied {
                    target: to,
                    applied: ascending,
                });
            }
            versions.into_iter().filter(|&v| v > to).collect()
        }
        RollbackTarget::Steps(steps) => {
            if steps > versions.len() {
                return Err(Error::TooManySteps {
                    steps,
                    applied: versions.len(),
                });
            }
            versions.into_iter().take(steps).collect()
        }
    };
    let mut out = Vec::with_capacity(chosen.len());
    for version in chosen {
        // The divergence check above guarantees every applied version has its file.
        let Some(migration) = catalog.get(version) else {
            continue;
        };
        if migration.down_sql().is_none() {
            return Err(Error::Irreversible {
                file: migration.file_name(),
                version,
            });
        }
        out.push(migration);
    }
    Ok(out)
}

fn rollback_locked(
    client: &mut Client,
    catalog: &Catalog,
    options: &RollbackOptions<'_>,
    on_progress: &mut dyn FnMut(RollbackProgress<'_>),
) -> Result<RollbackReport, Error> {
    let applied = history::read(client)?;
    let steps = plan(catalog, &applied, options.to)?;
    let mut remaining: Vec<i32> = applied.iter().map(|a| a.version).collect();
    let mut report = RollbackReport {
        reverted: Vec::new(),
        head: remaining.iter().copied().max(),
    };
    on_progress(RollbackProgress::Planned(&steps));
    if steps.is_empty() {
        return Ok(report);
    }
    history::ensure_tables(client)?;
    let session =
        engine::Session::establish(client, options.lock_timeout, options.statement_timeout)?;
    for migration in steps {
        on_progress(RollbackProgress::Started(migration));
        let started = Instant::now();
        let script = Script {
            migration,
            direction: Direction::Down,
        };
        if let Err(failure) = engine::run_script(client, &session, &script, options.actor) {
            return Err(into_error(failure, script.file_name(), report));
        }
        let took = started.elapsed();
        remaining.retain(|&v| v != migration.version());
        report.reverted.push(AppliedStep {
            version: migration.version(),
            name: migration.name().to_owned(),
            duration_ms: took.as_secs_f64() * 1000.0,
            transactional: script.is_transactional(),
        });
        report.head = remaining.iter().copied().max();
        on_progress(RollbackProgress::Reverted(migration, took));
    }
    Ok(report)
}

fn into_error(failure: Failure, file: String, report: RollbackReport) -> Error {
    match failure {
        Failure::Engine(e) => e,
        Failure::RolledBack(detail) => Error::RollbackFailed {
            file,
            detail,
            report,
        },
        Failure::HalfApplied { detail, state } => Error::RollbackHalfApplied {
            file,
            detail,
            state,
            report,
        },
    }
}
