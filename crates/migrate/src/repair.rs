//! Repairs: the way out of what a failed non-transactional migration left behind (invalid
//! indexes), and re-recording the checksum of an applied file that was edited on purpose.
//! Every repair is written to the event log (direction `repair`, its `detail` column saying
//! what was repaired).

use std::time::Duration;

use postgres::Client;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::history::{self, EventRow};
use crate::history::{Actor, UnfinishedAttempt};
use crate::plan::{self, InvalidIndex};
use crate::session::Session;
use crate::{lock, quote, Error};

/// What to repair. There is no `Default`. Whether the environment requires a confirmation is
/// the caller's business.
#[derive(Clone, Debug)]
pub struct RepairOptions<'a> {
    /// Re-record the checksum (and name) of this applied version from its file as it is now.
    pub accept_checksum: Option<i32>,
    /// How long to wait for another run's migration lock before giving up.
    pub lock_wait: Duration,
    /// `lock_timeout` for `DROP INDEX CONCURRENTLY`; `None` keeps the server's setting.
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` for the repair statements; `None` keeps the server's setting.
    pub statement_timeout: Option<Duration>,
    /// Recorded in the event log.
    pub actor: &'a Actor,
}

/// A checksum re-recorded for an edited file.
#[derive(Clone, Debug, Serialize)]
pub struct AcceptedChecksum {
    /// The version.
    pub version: i32,
    /// The name recorded before.
    pub previous_name: String,
    /// The checksum recorded before.
    pub previous_checksum: String,
    /// The name now recorded (the file's).
    pub name: String,
    /// The checksum now recorded (the file's).
    pub checksum: String,
}

/// What a repair did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Invalid indexes dropped.
    pub dropped_indexes: Vec<InvalidIndex>,
    /// Invalid indexes left alone because a `CREATE INDEX CONCURRENTLY` is building them right now.
    pub still_building: Vec<InvalidIndex>,
    /// The checksum re-recorded, if one was asked for.
    pub accepted_checksum: Option<AcceptedChecksum>,
    /// Attempts that never finished outside a transaction, now closed in the event log: whoever
    /// runs repair has dealt with what their completed statements did.
    pub closed_attempts: Vec<UnfinishedAttempt>,
}

impl RepairReport {
    /// True when there was nothing to repair.
    pub fn is_empty(&self) -> bool {
        self.dropped_indexes.is_empty()
            && self.still_building.is_empty()
            && self.accepted_checksum.is_none()
            && self.closed_attempts.is_empty()
    }
}

/// Drops the invalid indexes an interrupted `CREATE INDEX CONCURRENTLY` left (not those being
/// built right now), and re-records one checksum if asked, under the migration lock.
pub fn repair(
    client: &mut Client,
    catalog: &Catalog,
    options: &RepairOptions<'_>,
) -> Result<RepairReport, Error> {
    lock::holding(client, options.lock_wait, |client| {
        repair_locked(client, catalog, options)
    })
}

fn repair_locked(
    client: &mut Client,
    catalog: &Catalog,
    options: &RepairOptions<'_>,
) -> Result<RepairReport, Error> {
    let mut report = RepairReport::default();
    // Checked before anything changes, so a wrong version changes nothing.
    let accept = match options.accept_checksum {
        Some(version) => Some(checksum_to_accept(client, catalog, version)?),
        None => None,
    };
    let invalid = plan::invalid_indexes(client)?;
    let unfinished: Vec<UnfinishedAttempt> = history::unfinished(client)?
        .into_iter()
        .filter(UnfinishedAttempt::needs_repair)
        .collect();
    if !invalid.is_empty() || accept.is_some() || !unfinished.is_empty() {
        history::ensure_tables(client)?;
        Session::establish(client, options.lock_timeout, options.statement_timeout)?;
    }
    let culprit = match (invalid.is_empty(), unfinished.last()) {
        (true, _) => None,
        (false, Some(attempt)) => Some((attempt.version, attempt.name.clone())),
        (false, None) => Some(last_failed_migration(client)?),
    };
    for index in invalid {
        if index.being_built {
            report.still_building.push(index);
            continue;
        }
        let (version, name) = culprit.clone().unwrap_or((0, "unknown".to_owned()));
        let started = std::time::Instant::now();
        // Outside a transaction, one statement per query: DROP INDEX CONCURRENTLY refuses a
        // transaction block, and does not block writes to the table while it waits.
        client
            .batch_execute(&format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                quote::ident(&index.schema),
                quote::ident(&index.name)
            ))
            .map_err(Error::db(format!("cannot drop the invalid index {index}")))?;
        let what = format!(
            "dropped invalid index {index}, left by an interrupted CREATE INDEX CONCURRENTLY"
        );
        log_repair(
            client,
            options.actor,
            version,
            &name,
            started.elapsed(),
            &what,
            history::Attempt::None,
        )?;
        report.dropped_indexes.push(index);
    }
    for attempt in unfinished {
        let what = format!(
            "closed the unfinished attempt {attempt}; what its completed statements did stays as it is"
        );
        log_repair(
            client,
            options.actor,
            attempt.version,
            &attempt.name,
            Duration::ZERO,
            &what,
            history::Attempt::Id(attempt.id),
        )?;
        report.closed_attempts.push(attempt);
    }
    if let Some(accepted) = accept {
        let started = std::time::Instant::now();
        let mut tx = client
            .transaction()
            .map_err(Error::db("cannot begin the repair transaction"))?;
        let updated = tx
            .execute(
                "UPDATE refinery_schema_history SET name = $2, checksum = $3 WHERE version = $1",
                &[&accepted.version, &accepted.name, &accepted.checksum],
            )
            .map_err(Error::db("cannot re-record the checksum"))?;
        if updated != 1 {
            return Err(Error::HistoryChanged {
                version: accepted.version,
            });
        }
        let what = format!(
            "accepted the edited file: checksum {} (was {}), name {} (was {})",
            accepted.checksum, accepted.previous_checksum, accepted.name, accepted.previous_name
        );
        log_repair(
            &mut tx,
            options.actor,
            accepted.version,
            &accepted.name,
            started.elapsed(),
            &what,
            history::Attempt::None,
        )?;
        tx.commit()
            .map_err(Error::db("cannot commit the checksum repair"))?;
        report.accepted_checksum = Some(accepted);
    }
    Ok(report)
}

fn checksum_to_accept(
    client: &mut Client,
    catalog: &Catalog,
    version: i32,
) -> Result<AcceptedChecksum, Error> {
    let refuse = |reason: &str| Error::AcceptChecksum {
        version,
        reason: reason.to_owned(),
    };
    let applied = history::read(client)?;
    let Some(row) = applied.iter().find(|a| a.version == version) else {
        return Err(refuse(
            "it is not applied, so there is no checksum to accept",
        ));
    };
    let Some(migration) = catalog.get(version) else {
        return Err(refuse(
            "its file is missing; restore the file as it was applied instead",
        ));
    };
    let checksum = migration.checksum().to_string();
    if checksum == row.checksum && migration.name() == row.name {
        return Err(refuse(
            "its file is unchanged since it was applied; check the version",
        ));
    }
    Ok(AcceptedChecksum {
        version,
        previous_name: row.name.clone(),
        previous_checksum: row.checksum.clone(),
        name: migration.name().to_owned(),
        checksum,
    })
}

/// The migration whose most recent attempt failed: the one that left the invalid indexes.
fn last_failed_migration(client: &mut Client) -> Result<(i32, String), Error> {
    let row = client
        .query_opt(
            "SELECT version, name FROM ecomind_migration_events \
             WHERE outcome = 'failed' AND direction IN ('up', 'down') ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map_err(Error::db("cannot read the migration event log"))?;
    Ok(row.map_or((0, "unknown".to_owned()), |r| (r.get(0), r.get(1))))
}

fn log_repair(
    conn: &mut impl postgres::GenericClient,
    actor: &Actor,
    version: i32,
    name: &str,
    elapsed: Duration,
    what: &str,
    attempt: history::Attempt,
) -> Result<(), Error> {
    history::record_event(
        conn,
        actor,
        &EventRow {
            version,
            name,
            direction: "repair",
            outcome: "applied",
            elapsed,
            error: None,
            detail: Some(what),
            attempt,
        },
    )
}
