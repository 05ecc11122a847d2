//! `dry-run`: restore a snapshot into a throwaway cluster and rehearse the pending migrations on
//! it (one call to `ecomind_dryrun::dry_run`), then render its report as text, JSON or Markdown.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ecomind_dryrun::{DryRunOptions, DryRunReport, Stage, Verdict};
use ecomind_snapshot::{RestoreProgress, TemplateCache};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::Output;

/// `dry-run`: resolves the arguments and runs it.
pub fn command(args: &crate::args::DryRunArgs, out: &Output) -> Result<u8> {
    let resolved = DryRun {
        env: args.env.as_deref(),
        environments: args.environments.as_deref(),
        snapshot: args.snapshot.as_deref(),
        no_rollback: args.no_rollback,
        no_cache: args.no_cache,
        prune_cache: args.prune_cache,
        keep_templates: usize::from(args.keep_templates),
        baseline: args.baseline,
        report: args.report.as_deref(),
        pg_major: args.pg_major,
    };
    run(
        &resolved,
        || crate::commands::catalog(&args.source),
        &crate::commands::actor(),
        out,
    )
}

/// `dry-run`, resolved from its arguments.
pub struct DryRun<'a> {
    /// The environment whose policy applies (`None` only with `--prune-cache`).
    pub env: Option<&'a str>,
    /// `--environments DIR`.
    pub environments: Option<&'a Path>,
    /// `--snapshot FILE`.
    pub snapshot: Option<&'a Path>,
    /// `--no-rollback`.
    pub no_rollback: bool,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--prune-cache`.
    pub prune_cache: bool,
    /// `--keep-templates N`.
    pub keep_templates: usize,
    /// `--baseline [V]`.
    pub baseline: Option<i32>,
    /// `--report FILE.md`.
    pub report: Option<&'a Path>,
    /// `--pg-major N`.
    pub pg_major: Option<u32>,
}

/// Runs `dry-run` and returns the exit code: 0 pass, 1 a migration failed, 4 possible data
/// loss, a failed rollback rehearsal or drift after the run.
pub fn run(
    args: &DryRun<'_>,
    catalog: impl FnOnce() -> Result<ecomind_migrate::Catalog>,
    actor: &ecomind_migrate::Actor,
    out: &Output,
) -> Result<u8> {
    let cache_dir = TemplateCache::default_dir();
    if args.prune_cache {
        let Some(dir) = cache_dir else {
            anyhow::bail!(
                "neither XDG_CACHE_HOME nor HOME is set, so there is no template cache to prune"
            );
        };
        let cache = TemplateCache::new(&dir, args.keep_templates);
        let pruned = cache
            .prune()
            .with_context(|| format!("cannot prune the template cache in {}", dir.display()))?;
        out.result(
            &format!(
                "removed {} template(s), {} from {}",
                pruned.templates,
                human_bytes(pruned.bytes),
                dir.display()
            ),
            &serde_json::json!({
                "cache_dir": dir.display().to_string(),
                "templates_removed": pruned.templates,
                "bytes_freed": pruned.bytes,
            }),
        );
        return Ok(crate::exit::OK);
    }
    let (Some(env), Some(snapshot)) = (args.env, args.snapshot) else {
        anyhow::bail!("dry-run needs --env and --snapshot (or --prune-cache alone)");
    };
    let catalog = catalog()?;
    // Only the policy: a dry run never reads the environment's secrets or connects to its server.
    let flags = ecomind_config::Flags::default();
    let settings = ecomind_config::load_without_secrets(&ecomind_config::LoadOptions {
        env,
        environments_dir: args.environments,
        flags: &flags,
    })
    .with_context(|| format!("cannot load the policy of environment '{env}'"))?;
    let cache = match (&cache_dir, args.no_cache) {
        (Some(dir), false) => Some(TemplateCache::new(dir, args.keep_templates)),
        _ => None,
    };
    let bin_dir = std::env::var_os("ECOMIND_DB_BIN_DIR").map(PathBuf::from);
    let jobs = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let options = DryRunOptions {
        snapshot,
        catalog: &catalog,
        lock_wait: settings.policy.lock_wait,
        lock_timeout: settings.policy.lock_timeout,
        statement_timeout: settings.policy.statement_timeout,
        lock_retries: settings.policy.lock_retries,
        lock_retry_backoff: settings.policy.lock_retry_backoff,
        rollback: !args.no_rollback,
        baseline: args.baseline,
        cache: cache.as_ref(),
        configured_bin_dir: bin_dir.as_deref(),
        jobs,
        server_major: args.pg_major,
        actor,
    };
    let mut view = StageView::new(out);
    let result = ecomind_dryrun::dry_run(&options, &mut |stage| view.update(stage));
    view.finish();
    let report = result.map_err(|e| {
        anyhow::Error::new(e).context(format!("dry-run of {} stopped", snapshot.display()))
    })?;
    if let Some(path) = args.report {
        std::fs::write(path, markdown(&report, env))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        out.log(&format!("wrote the report to {}", path.display()));
    }
    out.result(&text(&report, env), &report);
    Ok(if report.migration_failed() {
        crate::exit::ERROR
    } else if report.needs_attention() {
        crate::exit::ATTENTION
    } else {
        crate::exit::OK
    })
}

/// Progress on stderr: a bar over the restore's entries (or bytes) on a terminal, lines otherwise.
struct StageView<'o> {
    out: &'o Output,
    bar: Option<ProgressBar>,
    verb: &'static str,
}

impl<'o> StageView<'o> {
    fn new(out: &'o Output) -> StageView<'o> {
        StageView {
            out,
            bar: None,
            verb: "applying",
        }
    }

    fn update(&mut self, stage: Stage<'_>) {
        match stage {
            Stage::Inspected(dump) => self.out.log(&format!(
                "snapshot {}: {} dump, {}, from PostgreSQL {}",
                dump.path.display(),
                dump.format,
                human_bytes(dump.bytes),
                dump.source_server_version.as_deref().unwrap_or("(unknown)")
            )),
            Stage::Restore(RestoreProgress::Checksum) => {
                self.out.log("checksumming the dump for the template cache")
            }
            Stage::Restore(RestoreProgress::CopyingTemplate) => {
                self.out.log("copying the cached template")
            }
            Stage::Restore(RestoreProgress::Loading { done, total, unit }) => {
                if !self.out.stderr_is_terminal() {
                    if done == 0 {
                        self.out.log(&format!("restoring ({total} {unit})"));
                    }
                    return;
                }
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(total);
                    let template = if unit == "bytes" {
                        "restoring [{bar:30}] {bytes}/{total_bytes} {elapsed}"
                    } else {
                        "restoring [{bar:30}] {pos}/{len} entries {elapsed}"
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar
                });
                bar.set_position(done);
            }
            Stage::Restore(RestoreProgress::Analyzing) => {
                self.finish();
                self.out.log("running ANALYZE");
            }
            Stage::Restore(RestoreProgress::SavingTemplate) => {
                self.out.log("saving the restored cluster as a template")
            }
            Stage::Restored {
                seconds,
                from_cache,
            } => {
                self.finish();
                self.out.log(&format!(
                    "{} in {seconds:.1} s",
                    if from_cache {
                        "copied from the template cache"
                    } else {
                        "restored"
                    }
                ));
            }
            Stage::Engine(ecomind_migrate::Progress::Planned(direction, _)) => {
                self.verb = match direction {
                    ecomind_migrate::Direction::Up => "applying",
                    ecomind_migrate::Direction::Down => "reverting",
                };
            }
            Stage::Engine(ecomind_migrate::Progress::Started(m)) => {
                self.out
                    .log(&format!("{} V{} {}", self.verb, m.version(), m.name()))
            }
            Stage::Engine(_) => {}
            Stage::RollingBack => self.out.log("rehearsing the rollback"),
            Stage::Verifying => self.out.log("verifying the schema"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `1.2 GB`, `340 kB`.
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn version_label(v: Option<i32>) -> String {
    v.map_or_else(|| "no version".to_owned(), |v| format!("V{v}"))
}

/// One row per migration: time, statements, dangerous locks, rewrites, row deltas.
fn migration_rows(report: &DryRunReport) -> Vec<[String; 6]> {
    report
        .migrations
        .iter()
        .map(|m| {
            let locks: Vec<String> = if m.locks_traced {
                m.dangerous_locks()
                    .map(|(line, l)| {
                        format!(
                            "{} on {} for {} (line {line}, blocks {})",
                            l.mode,
                            l.relation,
                            seconds(l.held_seconds),
                            l.blocks.as_deref().unwrap_or_default()
                        )
                    })
                    .collect()
            } else {
                vec!["not traced (runs outside a transaction)".to_owned()]
            };
            let rewrites: Vec<String> = m
                .rewrites()
                .map(|(line, r)| format!("{r} (line {line})"))
                .collect();
            let deltas: Vec<String> = m
                .rows
                .iter()
                .filter(|r| r.before != r.after)
                .map(|r| match (r.before, r.after) {
                    (Some(b), Some(a)) => format!("{} {b} -> {a}", r.table),
                    (None, Some(a)) => format!("{} new ({a})", r.table),
                    (Some(b), None) => format!("{} dropped ({b})", r.table),
                    (None, None) => r.table.clone(),
                })
                .collect();
            let join = |v: Vec<String>| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    v.join("; ")
                }
            };
            [
                format!(
                    "V{} {}{}",
                    m.version,
                    m.name,
                    if m.destructive { " (destructive)" } else { "" }
                ),
                seconds(m.seconds),
                m.statements.len().to_string(),
                join(locks),
                join(rewrites),
                if deltas.is_empty() {
                    "rows unchanged".to_owned()
                } else {
                    deltas.join("; ")
                },
            ]
        })
        .collect()
}

fn rollback_line(report: &DryRunReport) -> String {
    let r = &report.rollback;
    if !r.ran {
        return r.note.clone().unwrap_or_else(|| "not rehearsed".to_owned());
    }
    let mut line = if r.ok {
        format!(
            "passed in {}: back to {}, schema identical to the restored one, every table has its rows, then applied again",
            seconds(r.seconds),
            version_label(report.start_version)
        )
    } else {
        format!(
            "FAILED: schema identical: {}, rows intact: {}",
            yes_no(r.schema_identical),
            yes_no(r.rows_intact)
        )
    };
    if let Some(note) = &r.note {
        let _ = write!(line, "; {note}");
    }
    for d in &r.differences {
        let _ = write!(line, "\n    {d}");
    }
    line
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn loss_line(d: &ecomind_dryrun::DataLoss) -> String {
    let what = match d.kind {
        "rows_lost" => format!(
            "{} loses {} of {} rows",
            d.table,
            d.before - d.after,
            d.before
        ),
        "table_dropped" => format!("table {} ({} rows) is dropped", d.table, d.before),
        _ => format!(
            "column {}.{} ({} rows) is dropped",
            d.table,
            d.column.as_deref().unwrap_or_default(),
            d.before
        ),
    };
    format!(
        "V{} {}: {what}{}",
        d.version,
        d.name,
        if d.declared {
            " (declared with -- ecomind:destructive)"
        } else {
            " (NOT declared: add `-- ecomind:destructive` to its first lines if intended)"
        }
    )
}

fn verdict_word(report: &DryRunReport) -> &'static str {
    match report.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    }
}

fn restore_line(report: &DryRunReport) -> String {
    let r = &report.restore;
    let mut line = if r.from_cache {
        format!(
            "copied from the template cache ({}) in {}",
            r.copy_method.as_deref().unwrap_or("copy"),
            seconds(r.seconds)
        )
    } else {
        format!("restored in {}", seconds(r.seconds))
    };
    let _ = write!(line, " on {}", r.server_version);
    if let Some(note) = &r.major_note {
        let _ = write!(line, "; {note}");
    }
    line
}

/// The human report on stdout.
fn text(report: &DryRunReport, env: &str) -> String {
    let mut out = String::new();
    let s = &report.snapshot;
    let _ = writeln!(
        out,
        "dry-run of {} ({}, {}, PostgreSQL {}) with the policy of {env}",
        s.path,
        s.format,
        human_bytes(s.bytes),
        s.source_server_version.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(out, "restore: {}", restore_line(report));
    if let Some(dir) = &report.restore.cache_dir {
        let _ = writeln!(
            out,
            "cache: {dir} (holds production data; `dry-run --prune-cache` empties it)"
        );
    }
    if let Some(v) = report.baseline {
        let _ = writeln!(out, "baseline: rehearsed at V{v}");
    }
    let _ = writeln!(out, "snapshot at {}", version_label(report.start_version));
    if report.migrations.is_empty() {
        let _ = writeln!(out, "nothing pending");
    }
    for row in migration_rows(report) {
        let _ = writeln!(out, "  {}  {}, {} statement(s)", row[0], row[1], row[2]);
        let _ = writeln!(out, "    locks that block others: {}", row[3]);
        let _ = writeln!(out, "    rewrites: {}", row[4]);
        let _ = writeln!(out, "    rows: {}", row[5]);
    }
    if let Some(failure) = &report.failure {
        let _ = writeln!(out, "failed: {failure}");
    }
    for d in &report.data_loss {
        let _ = writeln!(out, "possible data loss: {}", loss_line(d));
    }
    let _ = writeln!(out, "rollback: {}", rollback_line(report));
    if let Some(v) = &report.verify {
        if v.ok {
            let _ = writeln!(out, "verify: the schema matches the migrations");
        } else {
            let _ = writeln!(out, "verify: DRIFT\n    {}", v.differences.join("\n    "));
        }
    }
    let _ = writeln!(out, "verdict: {}", verdict_word(report));
    out
}

/// A cell of a Markdown table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

/// The Markdown report for a change request.
fn markdown(report: &DryRunReport, env: &str) -> String {
    let mut out = String::new();
    let s = &report.snapshot;
    let name = Path::new(&s.path)
        .file_name()
        .map_or_else(|| s.path.clone(), |n| n.to_string_lossy().into_owned());
    let _ = writeln!(
        out,
        "## Dry run of the pending migrations: {}\n",
        verdict_word(report)
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| snapshot | `{}` |", cell(&name));
    let _ = writeln!(out, "| size | {} |", human_bytes(s.bytes));
    let _ = writeln!(out, "| format | {} |", s.format);
    let _ = writeln!(
        out,
        "| source server | PostgreSQL {} |",
        cell(s.source_server_version.as_deref().unwrap_or("unknown"))
    );
    let _ = writeln!(out, "| policy | environment `{env}` |");
    let _ = writeln!(out, "| restore | {} |", cell(&restore_line(report)));
    let settings: Vec<String> = report
        .restore
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "| sandbox settings | {} |", settings.join(", "));
    let _ = writeln!(
        out,
        "| snapshot version | {} |\n",
        version_label(report.start_version)
    );
    if report.migrations.is_empty() {
        let _ = writeln!(out, "Nothing was pending.\n");
    } else {
        let _ = writeln!(
            out,
            "| migration | time | statements | locks that block others (held) | rewrites | rows |\n|---|---|---|---|---|---|"
        );
        for row in migration_rows(report) {
            let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    if let Some(failure) = &report.failure {
        let _ = writeln!(out, "**Failed:** {}\n", cell(failure));
    }
    if !report.data_loss.is_empty() {
        let _ = writeln!(out, "**Possible data loss:**\n");
        for d in &report.data_loss {
            let _ = writeln!(out, "- {}", loss_line(d));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "**Rollback rehearsal:** {}\n",
        rollback_line(report).replace("\n    ", "\n  - ")
    );
    if let Some(v) = &report.verify {
        let _ = writeln!(
            out,
            "**Verify:** {}\n",
            if v.ok {
                "the schema matches the migrations".to_owned()
            } else {
                format!("drift: {}", v.differences.join("; "))
            }
        );
    }
    let _ = writeln!(out, "**Verdict: {}**", verdict_word(report));
    out
}
