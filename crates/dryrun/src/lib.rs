//! The dry run: the pending migrations run against a restored copy of production in a
//! throwaway cluster, with timings, the locks each statement takes, row counts, a rollback
//! rehearsal and `verify`, without any production credentials.
//!
//! [`dry_run`] restores the dump (ecomind-snapshot), reads the snapshot's own history, and
//! runs the pending migrations through the engine's one entry point, `ecomind_migrate::migrate`,
//! with an observer that reads `pg_locks` and relfilenodes after each statement inside the
//! migration's transaction and takes a census of the tables around each migration. It returns a
//! [`DryRunReport`]; the CLI renders it.

mod census;
pub mod report;
mod trace;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ecomind_migrate::{
    Actor, BaselineOptions, Catalog, MigrateOptions, Progress, RunOptions, Target, VerifyOptions,
};
use ecomind_snapshot::restore::{RestoreOptions, RestoreProgress, RUN_SETTINGS};
use ecomind_snapshot::{Dump, TemplateCache};

pub use report::{
    DataLoss, DryRunReport, LockHeld, MigrationRun, RestoreInfo, RollbackInfo, RowCount,
    SnapshotInfo, StatementRecord, Verdict, VerifyInfo,
};

/// The first-lines directive of a migration that removes data on purpose; the dry run then
/// reports its data loss instead of failing on it.
pub const DESTRUCTIVE: &str = ecomind_migrate::catalog::DESTRUCTIVE;

/// How to dry-run. There is no `Default`: the policy's timeouts must be given.
#[derive(Clone, Debug)]
pub struct DryRunOptions<'a> {
    /// The dump: a pg_dump file (custom, tar, plain SQL, gzipped SQL) or directory archive.
    pub snapshot: &'a Path,
    /// The migrations.
    pub catalog: &'a Catalog,
    /// The environment's lock wait.
    pub lock_wait: Duration,
    /// The environment's `lock_timeout` for the migration statements.
    pub lock_timeout: Option<Duration>,
    /// The environment's `statement_timeout` for the migration statements.
    pub statement_timeout: Option<Duration>,
    /// The environment's `lock_retries`: how often a migration that ran into `lock_timeout` is
    /// run again (nobody else uses the sandbox, so this only matters for the migration's own locks).
    pub lock_retries: u32,
    /// The environment's `lock_retry_backoff`.
    pub lock_retry_backoff: Duration,
    /// Rehearse the rollback (downs back to the snapshot's version, then up again).
    pub rollback: bool,
    /// For a snapshot without history: rehearse `baseline --version V` first.
    pub baseline: Option<i32>,
    /// The template cache; `None` restores from the dump and keeps nothing.
    pub cache: Option<&'a TemplateCache>,
    /// A configured PostgreSQL bin folder, one candidate among the installations found.
    pub configured_bin_dir: Option<&'a Path>,
    /// pg_restore's `--jobs`.
    pub jobs: usize,
    /// Run the sandbox on this installed PostgreSQL major instead of the dump's own (not older).
    pub server_major: Option<u32>,
    /// Recorded in the sandbox's event log.
    pub actor: &'a Actor,
}

/// What the dry run tells its caller while it works.
#[derive(Debug)]
pub enum Stage<'a> {
    /// The dump was read.
    Inspected(&'a Dump),
    /// The restore is under way.
    Restore(RestoreProgress),
    /// The dump is in the sandbox.
    Restored {
        /// Restore (or copy) time.
        seconds: f64,
        /// True for a cache hit.
        from_cache: bool,
    },
    /// The engine's own progress, up and down.
    Engine(Progress<'a>),
    /// The rollback rehearsal starts.
    RollingBack,
    /// `verify` runs.
    Verifying,
}

/// Everything that stops a dry run before it can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The dump could not be read or restored.
    #[error(transparent)]
    Snapshot(Box<ecomind_snapshot::Error>),
    /// The engine refused or failed before any migration ran (divergence, a bad baseline...).
    #[error(transparent)]
    Migrate(Box<ecomind_migrate::Error>),
    /// The snapshot has no history table.
    #[error("the snapshot has no migration history ({table} is missing), so which migrations are pending is unknown; if its database was built by hand before migrations existed, pass --baseline to rehearse baseline, then migrate")]
    NoHistory {
        /// The history table.
        table: &'static str,
    },
    /// A query of the dry run itself failed.
    #[error("{context}: {error}")]
    Database {
        /// What was being done.
        context: String,
        /// The driver's error.
        error: postgres::Error,
    },
}

impl From<ecomind_snapshot::Error> for Error {
    fn from(e: ecomind_snapshot::Error) -> Error {
        Error::Snapshot(Box::new(e))
    }
}

impl From<ecomind_migrate::Error> for Error {
    fn from(e: ecomind_migrate::Error) -> Error {
        Error::Migrate(Box::new(e))
    }
}

impl Error {
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error {
        let context = context.into();
        move |error| Error::Database { context, error }
    }

    /// True when the engine found divergence or a half-done state (exit 4).
    pub fn needs_attention(&self) -> bool {
        matches!(self, Error::Migrate(e) if e.needs_attention())
    }
}

/// Restores the snapshot and rehearses the pending migrations on it; see the crate docs.
///
/// Errors before any migration ran (an unreadable dump, a failed restore, divergence, no
/// history without `baseline`) are returned as `Err`; a failed migration is part of the report
/// (`failure`), with what ran before it. The sandbox is gone when this returns, however it returns.
pub fn dry_run(
    opts: &DryRunOptions<'_>,
    on_progress: &mut dyn FnMut(Stage<'_>),
) -> Result<DryRunReport, Error> {
    let dump = Dump::inspect(opts.snapshot)?;
    on_progress(Stage::Inspected(&dump));
    let restored = ecomind_snapshot::restore(
        &RestoreOptions {
            dump: &dump,
            configured_bin_dir: opts.configured_bin_dir,
            jobs: opts.jobs,
            cache: opts.cache,
            server_major: opts.server_major,
        },
        &mut |p| on_progress(Stage::Restore(p)),
    )?;
    on_progress(Stage::Restored {
        seconds: restored.seconds,
        from_cache: restored.from_cache,
    });
    let snapshot = SnapshotInfo {
        path: dump.path.display().to_string(),
        format: dump.format.as_str().to_owned(),
        bytes: dump.bytes,
        source_server_version: dump.source_server_version.clone(),
        pg_dump_version: dump.pg_dump_version.clone(),
        archive_version: dump.archive_version.map(|v| v.to_string()),
        compression: dump.compression.clone(),
        database: dump.database.clone(),
    };
    let restore = RestoreInfo {
        seconds: restored.seconds,
        from_cache: restored.from_cache,
        copy_method: restored.copy_method.map(|m| m.as_str().to_owned()),
        cache_dir: restored.cache_dir.as_ref().map(|d| d.display().to_string()),
        server_version: restored.server.version().to_owned(),
        major_note: restored.major_note.clone(),
        settings: RUN_SETTINGS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let mut client = restored.sandbox.cluster().connect(&restored.database)?;
    rehearse(opts, &mut client, snapshot, restore, on_progress)
}

/// The engine's run options under the environment's policy.
fn run_options<'a>(
    opts: &DryRunOptions<'a>,
    observer: Option<&'a dyn ecomind_migrate::Observer>,
) -> RunOptions<'a> {
    RunOptions {
        lock_wait: opts.lock_wait,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
        actor: opts.actor,
        observer,
        lock_retries: opts.lock_retries,
        lock_retry_backoff: opts.lock_retry_backoff,
        interrupt: None,
    }
}

/// Everything after the restore, on the sandbox's database.
fn rehearse(
    opts: &DryRunOptions<'_>,
    client: &mut postgres::Client,
    snapshot: SnapshotInfo,
    restore: RestoreInfo,
    on_progress: &mut dyn FnMut(Stage<'_>),
) -> Result<DryRunReport, Error> {
    let verify_options = VerifyOptions {
        lock_wait: opts.lock_wait,
        lock_timeout: opts.lock_timeout,
        statement_timeout: opts.statement_timeout,
    };
    let has_history: bool = client
        .query_one(
            "SELECT to_regclass(quote_ident(current_schema()) || '.' || $1) IS NOT NULL",
            &[&ecomind_migrate::HISTORY_TABLE],
        )
        .map_err(Error::db("cannot look for the history table"))?
        .get(0);
    let mut baseline = None;
    match (has_history, opts.baseline) {
        (false, None) => {
            return Err(Error::NoHistory {
                table: ecomind_migrate::HISTORY_TABLE,
            })
        }
        (_, Some(version)) => {
            ecomind_migrate::baseline(
                client,
                opts.catalog,
                &BaselineOptions {
                    version,
                    verify: verify_options.clone(),
                    actor: opts.actor,
                },
                &mut |_| {},
            )?;
            baseline = Some(version);
        }
        (true, None) => {}
    }
    let status = ecomind_migrate::status(client, opts.catalog)?;
    let start_version = status.applied.iter().map(|a| a.version).max();
    let restored_schema = ecomind_migrate::fingerprint(client)?;
    let restored_census = census::take(client)?;

    let tracer = trace::Tracer::new(restored_census.clone());
    let result = ecomind_migrate::migrate(
        client,
        opts.catalog,
        &MigrateOptions {
            target: Target::Latest,
            allow_out_of_order: false,
            run: run_options(opts, Some(&tracer)),
        },
        &mut |p| on_progress(Stage::Engine(p)),
    );
    let (mut migrations, partial) = tracer.finish();
    let mut failure = None;
    if let Err(error) = result {
        if error.partial_report().is_none() {
            return Err(error.into());
        }
        failure = Some(error.to_string());
        migrations.extend(partial);
    }
    let data_loss = data_loss(&migrations);

    let mut rollback = RollbackInfo::default();
    if !opts.rollback {
        rollback.note = Some("not rehearsed (--no-rollback)".to_owned());
    } else if failure.is_some() {
        rollback.note = Some("not rehearsed: a migration failed".to_owned());
    } else if migrations.is_empty() {
        rollback.note = Some("not rehearsed: nothing was pending".to_owned());
    } else if let Some(m) = migrations
        .iter()
        .filter_map(|m| opts.catalog.get(m.version))
        .find(|m| m.down_sql().is_none())
    {
        rollback.note = Some(format!("not rehearsed: {} is irreversible", m.file_name()));
    } else {
        on_progress(Stage::RollingBack);
        let declared: Vec<&str> = data_loss
            .iter()
            .filter(|d| d.declared)
            .map(|d| d.table.as_str())
            .collect();
        rollback = rehearse_rollback(
            client,
            opts,
            &run_options(opts, None),
            start_version.unwrap_or(0),
            &restored_schema,
            &restored_census,
            &declared,
            on_progress,
        )?;
    }

    let verify = if failure.is_none() {
        on_progress(Stage::Verifying);
        let report = ecomind_migrate::verify(client, opts.catalog, &verify_options)?;
        Some(VerifyInfo {
            ok: report.differences.is_empty(),
            differences: report.differences.iter().map(|d| d.to_string()).collect(),
        })
    } else {
        None
    };
    let mut report = DryRunReport {
        snapshot,
        restore,
        start_version,
        baseline,
        migrations,
        data_loss,
        rollback,
        verify,
        failure,
        verdict: Verdict::Pass,
    };
    if report.migration_failed() || report.needs_attention() {
        report.verdict = Verdict::Fail;
    }
    Ok(report)
}

/// Downs back to `to`, proof that schema and rows are as restored (except the tables whose
/// loss a destructive migration declared), then up again.
#[allow(clippy::too_many_arguments)]
fn rehearse_rollback(
    client: &mut postgres::Client,
    opts: &DryRunOptions<'_>,
    run: &RunOptions<'_>,
    to: i32,
    restored_schema: &ecomind_migrate::Fingerprint,
    restored_census: &census::Census,
    declared_losses: &[&str],
    on_progress: &mut dyn FnMut(Stage<'_>),
) -> Result<RollbackInfo, Error> {
    let mut info = RollbackInfo {
        ran: true,
        ..RollbackInfo::default()
    };
    let started = Instant::now();
    let down = ecomind_migrate::migrate(
        client,
        opts.catalog,
        &MigrateOptions {
            target: Target::DownTo(to),
            allow_out_of_order: false,
            run: run.clone(),
        },
        &mut |p| on_progress(Stage::Engine(p)),
    );
    info.seconds = started.elapsed().as_secs_f64();
    if let Err(error) = down {
        info.note = Some(format!("the downs failed: {error}"));
        return Ok(info);
    }
    let schema = ecomind_migrate::fingerprint(client)?;
    let differences = ecomind_migrate::diff(restored_schema, &schema);
    info.schema_identical = differences.is_empty();
    info.differences = differences.iter().map(|d| d.to_string()).collect();
    let now: BTreeMap<String, i64> = census::take(client)?
        .into_values()
        .map(|t| (t.name, t.rows))
        .collect();
    info.rows_intact = true;
    for table in restored_census.values() {
        if declared_losses.contains(&table.name.as_str()) {
            // A destructive migration said so; its down cannot bring the rows back.
            continue;
        }
        match now.get(&table.name) {
            Some(rows) if *rows == table.rows => {}
            Some(rows) => {
                info.rows_intact = false;
                info.differences.push(format!(
                    "table {} had {} rows when restored and has {rows} after the downs",
                    table.name, table.rows
                ));
            }
            None => {
                info.rows_intact = false;
                info.differences.push(format!(
                    "table {} ({} rows when restored) is gone after the downs",
                    table.name, table.rows
                ));
            }
        }
    }
    let up = ecomind_migrate::migrate(
        client,
        opts.catalog,
        &MigrateOptions {
            target: Target::Latest,
            allow_out_of_order: false,
            run: run.clone(),
        },
        &mut |p| on_progress(Stage::Engine(p)),
    );
    if let Err(error) = up {
        info.note = Some(format!("applying the migrations again failed: {error}"));
        return Ok(info);
    }
    info.ok = info.schema_identical && info.rows_intact;
    Ok(info)
}

/// The possible data loss of each migration, declared or not.
fn data_loss(migrations: &[MigrationRun]) -> Vec<DataLoss> {
    let mut out = Vec::new();
    for m in migrations {
        for loss in &m.losses {
            let (kind, table, column, before, after) = match loss {
                census::Loss::Rows {
                    table,
                    before,
                    after,
                } => ("rows_lost", table, None, *before, *after),
                census::Loss::Table { table, rows } => ("table_dropped", table, None, *rows, 0),
                census::Loss::Column {
                    table,
                    column,
                    rows,
                } => ("column_dropped", table, Some(column.clone()), *rows, *rows),
            };
            out.push(DataLoss {
                version: m.version,
                name: m.name.clone(),
                kind,
                table: table.clone(),
                column,
                before,
                after,
                declared: m.destructive,
            });
        }
    }
    out
}
