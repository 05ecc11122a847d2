//! One function per subcommand: resolve the arguments, make one library call, render its result.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use ecomind_config::Target as SettingsTarget;
use ecomind_migrate::{
    Actor, AppliedStep, BaselineOptions, BaselineProgress, Catalog, Direction, MigrateOptions,
    Migration, Progress, RepairOptions, Report, RunOptions, Target, VerifyOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::args::{
    BaselineArgs, CompletionsArgs, ConfigAction, ConfigArgs, DevDbAction, DevDbArgs, LintArgs,
    LintFormat, MigrateArgs, NewArgs, RepairArgs, RollbackArgs, Shell, Source, StatusArgs,
    VerifyArgs, WaitArgs,
};
use crate::connect;
use crate::exit;
use crate::output::Output;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));
}

/// The migrations: from `--migrations DIR`, else the copies built into the binary.
pub(crate) fn catalog(source: &Source) -> Result<Catalog> {
    match &source.migrations {
        Some(dir) => Catalog::load_dir(dir)
            .with_context(|| format!("the migrations in {} are not usable", dir.display())),
        None => Catalog::from_files(embedded::EMBEDDED.iter().copied())
            .context("the migrations built into this binary are not usable"),
    }
}

/// `migrate`.
pub fn migrate(args: &MigrateArgs, out: &Output) -> Result<u8> {
    // The catalog is checked before anything connects.
    let catalog = catalog(&args.source)?;
    let mut db = connect::open(&args.target, out)?;
    let actor = actor();
    let options = MigrateOptions {
        target: args.to.map_or(Target::Latest, Target::UpTo),
        allow_out_of_order: args.allow_out_of_order,
        run: run_options(&db.settings, &actor),
    };
    if args.sql {
        let preview = ecomind_migrate::preview(&mut db.client, &catalog, &options)
            .with_context(|| format!("cannot compute the SQL for {}", db.server.describe()))?;
        out.result(
            &preview.sql,
            &json!({
                "environment": db.settings.env,
                "database": db.server.describe(),
                "migrations": preview.migrations,
                "sql": preview.sql,
            }),
        );
        return Ok(exit::OK);
    }
    let mut progress = ProgressView::new(out);
    let result = ecomind_migrate::migrate(&mut db.client, &catalog, &options, &mut |p| {
        progress.update(p)
    });
    progress.finish();
    let report = result.map_err(|e| stopped(out, e, "migrate", &db.server))?;
    render_run(out, &db.settings.env, &db.server, &report);
    Ok(exit::OK)
}

/// Says what a failed migrate or rollback did before it failed, and adds which database.
fn stopped(
    out: &Output,
    e: ecomind_migrate::Error,
    command: &str,
    server: &ecomind_config::Server,
) -> anyhow::Error {
    if let Some(partial) = e.partial_report() {
        for step in &partial.steps {
            out.log(&format!(
                "{} V{} {} before the failure",
                partial.direction.done(),
                step.version,
                step.name
            ));
        }
    }
    anyhow::Error::new(e).context(format!("{command} on {} stopped", server.describe()))
}

/// The result of a migrate or rollback: a line per step and where the database stands.
fn render_run(out: &Output, env: &str, server: &ecomind_config::Server, report: &Report) {
    let done = report.direction.done();
    let text = if report.steps.is_empty() && report.direction == Direction::Up {
        format!(
            "{}: up to date at {}",
            server.describe(),
            version_label(report.head)
        )
    } else {
        steps_text(&report.steps, done, server, report.head)
    };
    out.result(
        &text,
        &json!({
            "environment": env,
            "database": server.describe(),
            done: report.steps,
            "head": report.head,
        }),
    );
}

/// How migrate and rollback run their scripts: the policy's limits, no observer.
fn run_options<'a>(settings: &ecomind_config::Settings, actor: &'a Actor) -> RunOptions<'a> {
    RunOptions {
        lock_wait: settings.policy.lock_wait,
        lock_timeout: settings.policy.lock_timeout,
        statement_timeout: settings.policy.statement_timeout,
        actor,
        observer: None,
    }
}

fn verify_options(settings: &ecomind_config::Settings) -> VerifyOptions {
    VerifyOptions {
        lock_wait: settings.policy.lock_wait,
        lock_timeout: settings.policy.lock_timeout,
        statement_timeout: settings.policy.statement_timeout,
    }
}

/// `rollback`.
pub fn rollback(args: &RollbackArgs, out: &Output) -> Result<u8> {
    let catalog = catalog(&args.source)?;
    let confirm = args.confirm.confirm.as_deref();
    let mut db = connect::open_destructive(&args.target, out, "rollback", |policy, env| {
        policy.check_rollback(env, confirm)
    })?;
    let actor = actor();
    let target = match (args.to, args.steps) {
        (Some(v), _) => Target::DownTo(v),
        (None, Some(n)) => Target::DownSteps(n as usize),
        (None, None) => unreachable!("clap requires --to or --steps"),
    };
    let options = MigrateOptions {
        target,
        allow_out_of_order: false,
        run: run_options(&db.settings, &actor),
    };
    let mut progress = ProgressView::new(out);
    let result = ecomind_migrate::migrate(&mut db.client, &catalog, &options, &mut |p| {
        progress.update(p)
    });
    progress.finish();
    let report = result.map_err(|e| stopped(out, e, "rollback", &db.server))?;
    render_run(out, &db.settings.env, &db.server, &report);
    Ok(exit::OK)
}

/// `verify`.
pub fn verify(args: &VerifyArgs, out: &Output) -> Result<u8> {
    let catalog = catalog(&args.source)?;
    let mut db = connect::open(&args.target, out)?;
    let server = &db.server;
    let report = ecomind_migrate::verify(&mut db.client, &catalog, &verify_options(&db.settings))
        .with_context(|| format!("cannot verify {}", server.describe()))?;
    let mut text = String::new();
    if report.matches() {
        let _ = write!(
            text,
            "{}: schema {} matches the {} applied migration(s) ({} objects)",
            server.describe(),
            report.schema,
            report.versions.len(),
            report.expected_objects
        );
    } else {
        let _ = writeln!(
            text,
            "{}: schema {} has drifted from what the {} applied migration(s) produce:",
            server.describe(),
            report.schema,
            report.versions.len()
        );
        for d in &report.differences {
            let _ = writeln!(text, "  {d}");
        }
        let _ = write!(text, "{} difference(s)", report.differences.len());
    }
    out.result(&text, &report);
    Ok(if report.matches() {
        exit::OK
    } else {
        exit::ATTENTION
    })
}

/// `baseline`.
pub fn baseline(args: &BaselineArgs, out: &Output) -> Result<u8> {
    let catalog = catalog(&args.source)?;
    let confirm = args.confirm.confirm.as_deref();
    let mut db = connect::open_destructive(&args.target, out, "baseline", |policy, env| {
        policy.check_confirm(env, confirm)
    })?;
    let server = &db.server;
    let actor = actor();
    let options = BaselineOptions {
        version: args.version,
        verify: verify_options(&db.settings),
        actor: &actor,
    };
    let report = ecomind_migrate::baseline(&mut db.client, &catalog, &options, &mut |p| match p {
        BaselineProgress::Counted(tables) => {
            out.log("the schema matches; row counts before stamping:");
            for t in tables {
                out.log(&format!("  {}.{}: {} rows", t.schema, t.table, t.rows));
            }
        }
    })
    .with_context(|| format!("cannot baseline {}", server.describe()))?;
    let mut text = String::new();
    for t in &report.tables {
        let _ = writeln!(
            text,
            "  {:<40} {:>12} rows",
            format!("{}.{}", t.schema, t.table),
            t.rows
        );
    }
    let versions: Vec<String> = report
        .recorded
        .iter()
        .map(|p| format!("V{}", p.version))
        .collect();
    let _ = write!(
        text,
        "{}: schema {} matched ({} objects); recorded {} as applied without running them",
        server.describe(),
        report.schema,
        report.objects,
        versions.join(", ")
    );
    out.result(&text, &report);
    Ok(exit::OK)
}

/// `repair`.
pub fn repair(args: &RepairArgs, out: &Output) -> Result<u8> {
    let catalog = catalog(&args.source)?;
    let confirm = args.confirm.confirm.as_deref();
    let mut db = connect::open_destructive(&args.target, out, "repair", |policy, env| {
        policy.check_repair(env, args.accept_checksum, confirm)
    })?;
    let server = &db.server;
    let actor = actor();
    let options = RepairOptions {
        accept_checksum: args.accept_checksum,
        lock_wait: db.settings.policy.lock_wait,
        lock_timeout: db.settings.policy.lock_timeout,
        statement_timeout: db.settings.policy.statement_timeout,
        actor: &actor,
    };
    let report = ecomind_migrate::repair(&mut db.client, &catalog, &options)
        .with_context(|| format!("cannot repair {}", server.describe()))?;
    let mut text = String::new();
    for i in &report.dropped_indexes {
        let _ = writeln!(text, "dropped invalid index {i}");
    }
    for i in &report.still_building {
        let _ = writeln!(
            text,
            "left invalid index {i} alone: a CREATE INDEX CONCURRENTLY is building it right now"
        );
    }
    for a in &report.closed_attempts {
        let _ = writeln!(
            text,
            "closed unfinished attempt {a}; what its completed statements did stays as it is"
        );
    }
    if let Some(a) = &report.accepted_checksum {
        let _ = writeln!(
            text,
            "re-recorded V{} {} with checksum {} (was {} {})",
            a.version, a.name, a.checksum, a.previous_name, a.previous_checksum
        );
    }
    if report.is_empty() {
        let _ = write!(text, "{}: nothing to repair", server.describe());
    } else {
        let _ = write!(
            text,
            "{}: repaired; the event log records it",
            server.describe()
        );
    }
    out.result(&text, &report);
    Ok(if report.still_building.is_empty() {
        exit::OK
    } else {
        exit::ATTENTION
    })
}

/// `status`.
pub fn status(args: &StatusArgs, out: &Output) -> Result<u8> {
    let catalog = catalog(&args.source)?;
    let mut db = connect::open(&args.target, out)?;
    let server = &db.server;
    let status = ecomind_migrate::status(&mut db.client, &catalog)
        .with_context(|| format!("cannot read the status of {}", server.describe()))?;

    let mut text = format!("{} ({})\n", server.describe(), db.settings.env);
    let down = |down: Option<&str>| down.map_or_else(String::new, |d| format!("  ({d} down)"));
    for a in &status.applied {
        let _ = writeln!(
            text,
            "  applied  V{:<4} {:<40} {}{}",
            a.version,
            a.name,
            a.applied_on,
            down(a.down)
        );
    }
    for p in &status.pending {
        let _ = writeln!(
            text,
            "  pending  V{:<4} {}{}",
            p.version,
            p.name,
            down(p.down)
        );
    }
    for p in &status.problems {
        let _ = writeln!(text, "  problem  {p}");
    }
    for i in &status.invalid_indexes {
        if i.being_built {
            let _ = writeln!(
                text,
                "  building index {i} is being built right now (or its table is being vacuumed); leave it alone"
            );
        } else {
            let _ = writeln!(
                text,
                "  repair   invalid index {i}, left by an interrupted CREATE INDEX CONCURRENTLY: run `repair` to drop it"
            );
        }
    }
    for u in &status.unfinished {
        if u.running {
            let _ = writeln!(text, "  running  {u}");
        } else if u.needs_repair() {
            let _ = writeln!(
                text,
                "  repair   unfinished attempt {u}. Find out what its completed statements did, undo them by hand or make the file safe to run again, then run `repair` to close the attempt"
            );
        } else {
            let _ = writeln!(text, "  note     unfinished attempt {u}");
        }
    }
    let summary = if status.needs_attention() {
        "needs attention: see the problems above"
    } else if status.pending.is_empty() {
        "up to date"
    } else {
        "migrations pending"
    };
    let _ = write!(text, "{summary}");
    out.result(&text, &status);

    let code = if !args.check {
        exit::OK
    } else if status.needs_attention() {
        exit::ATTENTION
    } else if !status.pending.is_empty() {
        exit::PENDING
    } else {
        exit::OK
    };
    Ok(code)
}

/// `wait`: polls until the server accepts a connection, or the timeout passes.
pub fn wait(args: &WaitArgs, out: &Output) -> Result<u8> {
    let environment = connect::environment(&args.target)?;
    let settings = connect::settings(&environment, &args.target, out)?;
    let server = connect::server(&settings, out)?;
    let waited = server.wait_until_ready(
        connect::APPLICATION_NAME,
        Duration::from_secs(args.timeout),
        &mut |e| out.log(&format!("waiting for {}: {e}", server.describe())),
    )?;
    out.result(
        &format!("{} accepts connections (waited {:.1}s)", server.describe(), waited.as_secs_f64()),
        &json!({ "database": server.describe(), "ready": true, "waited_ms": waited.as_millis() as u64 }),
    );
    Ok(exit::OK)
}

/// `dev-db`.
pub fn dev_db(args: &DevDbArgs, out: &Output) -> Result<u8> {
    let dev = crate::args::Target {
        env: "dev".to_owned(),
        environments: None,
        host: None,
        port: None,
        dbname: None,
        user: None,
        password_file: None,
        sslmode: None,
    };
    let settings = connect::settings(&connect::environment(&dev)?, &dev, out)?;
    let SettingsTarget::Managed {
        root: configured,
        dbname,
    } = &settings.target
    else {
        anyhow::bail!(
            "the dev environment points at a server of its own (DATABASE_URL, PG* or ECOMIND_DB_* variables, or environments/dev.toml), not at the local dev cluster; unset them to use it"
        );
    };
    let root = &connect::dev_root(configured, out)?;
    let (text, value) = match args.action {
        DevDbAction::Start => {
            let server = connect::server(&settings, out)?;
            (
                format!(
                    "local dev cluster running in {}: {}",
                    root.display(),
                    server.describe()
                ),
                json!({ "root": root, "running": true, "database": server.describe() }),
            )
        }
        DevDbAction::Status => {
            let cluster = ecomind_snapshot::Cluster::open(root);
            let running = cluster.is_running();
            (
                format!(
                    "local dev cluster in {}: {} (database {dbname})",
                    root.display(),
                    if running { "running" } else { "stopped" }
                ),
                json!({ "root": root, "running": running, "database": dbname }),
            )
        }
        DevDbAction::Stop => {
            ecomind_snapshot::Cluster::open(root)
                .stop()
                .context("cannot stop the local dev cluster")?;
            (
                format!(
                    "local dev cluster in {} stopped; its data stays",
                    root.display()
                ),
                json!({ "root": root, "running": false }),
            )
        }
        DevDbAction::Destroy => {
            ecomind_snapshot::Cluster::open(root)
                .destroy()
                .context("cannot destroy the local dev cluster")?;
            (
                format!("local dev cluster in {} destroyed", root.display()),
                json!({ "root": root, "running": false, "destroyed": true }),
            )
        }
    };
    out.result(&text, &value);
    Ok(exit::OK)
}

/// `config show` and `config check`.
pub fn config(args: &ConfigArgs, out: &Output) -> Result<u8> {
    match &args.action {
        ConfigAction::Show(target) => {
            let explanation = connect::resolve(target)
                .and_then(|environment| environment.explain())
                .with_context(|| {
                    format!(
                        "cannot resolve the settings of environment '{}'",
                        target.env
                    )
                })?;
            let mut text = format!(
                "environment {} from {} ({})
target: {}
",
                explanation.env, explanation.file, explanation.environments, explanation.target
            );
            let width = explanation
                .values
                .iter()
                .map(|v| v.key.len())
                .max()
                .unwrap_or(0);
            let value_width = explanation
                .values
                .iter()
                .map(|v| v.value.as_deref().unwrap_or("(unset)").len())
                .max()
                .unwrap_or(0);
            for v in &explanation.values {
                let _ = writeln!(
                    text,
                    "  {:<width$}  {:<value_width$}  {}",
                    v.key,
                    v.value.as_deref().unwrap_or("(unset)"),
                    v.source
                );
            }
            // Variables that stand for flags: named, so a stray one is seen.
            let mut chosen_by = serde_json::Map::new();
            for (variable, flag) in [
                ("ECOMIND_DB_ENV", "--env"),
                ("ECOMIND_DB_MIGRATIONS", "--migrations"),
            ] {
                if let Some(value) = std::env::var_os(variable).filter(|v| !v.is_empty()) {
                    let value = value.to_string_lossy().into_owned();
                    let _ = writeln!(text, "{flag} {value} comes from env {variable}");
                    chosen_by.insert(variable.to_owned(), json!(value));
                }
            }
            for w in &explanation.warnings {
                let _ = writeln!(text, "warning: {w}");
            }
            let mut value = serde_json::to_value(&explanation)?;
            if let (false, Some(map)) = (chosen_by.is_empty(), value.as_object_mut()) {
                map.insert("flags_from_env".to_owned(), chosen_by.into());
            }
            out.result(&text, &value);
            Ok(exit::OK)
        }
        ConfigAction::Check(check) => {
            let scope = match &check.env {
                Some(env) => ecomind_config::CheckScope::One(env),
                None => ecomind_config::CheckScope::All,
            };
            let reports = ecomind_config::check(scope, check.environments.as_deref())
                .context("cannot check the environment files")?;
            let mut text = String::new();
            let mut docs = Vec::new();
            for r in &reports {
                if r.ok() {
                    let _ = writeln!(text, "ok       {} ({})", r.env, r.file);
                } else {
                    let _ = writeln!(text, "invalid  {} ({})", r.env, r.file);
                    for p in &r.problems {
                        let _ = writeln!(text, "           {p}");
                    }
                }
                docs.push(json!({
                    "env": r.env,
                    "file": r.file,
                    "ok": r.ok(),
                    "problems": r.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }));
            }
            let failed = reports.iter().filter(|r| !r.ok()).count();
            if failed > 0 {
                let _ = write!(
                    text,
                    "{failed} of {} environment file(s) invalid",
                    reports.len()
                );
            } else {
                let _ = write!(text, "{} environment file(s) valid", reports.len());
            }
            out.result(
                &text,
                &json!({ "environments": docs, "valid": failed == 0 }),
            );
            Ok(if failed > 0 { exit::ERROR } else { exit::OK })
        }
    }
}

/// One line per migration applied or reverted, then where the database stands.
fn steps_text(
    steps: &[AppliedStep],
    done: &str,
    server: &ecomind_config::Server,
    head: Option<i32>,
) -> String {
    let mut text = String::new();
    for step in steps {
        let how = match (step.transactional, step.down) {
            (_, Some(down)) => format!(", {down} down"),
            (true, None) => String::new(),
            (false, None) => ", outside a transaction".to_owned(),
        };
        let _ = writeln!(
            text,
            "{done} V{} {} ({:.0} ms{how})",
            step.version, step.name, step.duration_ms
        );
    }
    let _ = write!(
        text,
        "{}: {} migration(s) {done}, now at {}",
        server.describe(),
        steps.len(),
        version_label(head)
    );
    text
}

fn version_label(head: Option<i32>) -> String {
    head.map_or_else(|| "no migrations".to_owned(), |v| format!("V{v}"))
}

/// Who runs this, for the event log.
pub(crate) fn actor() -> Actor {
    Actor::of_this_process(format!("ecomind-db {}", env!("CARGO_PKG_VERSION")))
}

/// Progress: a bar with the current migration's name on a terminal, plain lines on stderr otherwise.
struct ProgressView<'o> {
    out: &'o Output,
    /// "apply", "applying", "applied", or the same for revert; set when the plan is known.
    verb: [&'static str; 3],
    bar: Option<ProgressBar>,
}

impl<'o> ProgressView<'o> {
    fn new(out: &'o Output) -> ProgressView<'o> {
        ProgressView {
            out,
            verb: ["apply", "applying", "applied"],
            bar: None,
        }
    }

    fn planned(&mut self, direction: Direction, count: usize) {
        self.verb = match direction {
            Direction::Up => ["apply", "applying", "applied"],
            Direction::Down => ["revert", "reverting", "reverted"],
        };
        if count == 0 {
            return;
        }
        if self.out.stderr_is_terminal() {
            let bar = ProgressBar::new(count as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        } else {
            self.out
                .log(&format!("{count} migration(s) to {}", self.verb[0]));
        }
    }

    fn started(&mut self, m: &Migration) {
        let label = format!("V{} {}", m.version(), m.name());
        match &self.bar {
            Some(bar) => bar.set_message(label),
            None => self.out.log(&format!("{} {label}", self.verb[1])),
        }
    }

    fn done(&mut self, m: &Migration, took: Duration) {
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => self.out.log(&format!(
                "{} V{} {} in {:.0} ms",
                self.verb[2],
                m.version(),
                m.name(),
                took.as_secs_f64() * 1000.0
            )),
        }
    }

    fn update(&mut self, progress: Progress<'_>) {
        match progress {
            Progress::Planned(direction, plan) => self.planned(direction, plan.len()),
            Progress::Started(m) => self.started(m),
            Progress::Done(m, took) => self.done(m, took),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The migrations folder a developer means: `--migrations DIR`, else `migrations/` in the
/// working directory or the nearest folder above it.
fn migrations_folder(given: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    if let Some(dir) = given {
        return Some(dir.to_path_buf());
    }
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .map(|dir| dir.join("migrations"))
        .find(|dir| dir.is_dir())
}

/// `new`.
pub fn new(args: &NewArgs, out: &Output) -> Result<u8> {
    let dir = migrations_folder(args.migrations.as_deref()).context(
        "no migrations folder in this directory or above it; run from the repository or pass --migrations DIR",
    )?;
    let options = ecomind_migrate::NewOptions {
        dir: &dir,
        name: &args.name,
        version: args.version,
    };
    let created = ecomind_migrate::write_new(&options)?;
    out.result(
        &format!(
            "wrote {}\nwrote {}\nedit both; the down must undo the up exactly",
            created.up.display(),
            created.down.display()
        ),
        &created,
    );
    Ok(exit::OK)
}

/// `lint`.
pub fn lint(args: &LintArgs, out: &Output) -> Result<u8> {
    let folder = migrations_folder(args.migrations.as_deref());
    let report = match &folder {
        Some(dir) => ecomind_lint::lint_dir(dir)
            .with_context(|| format!("cannot lint the migrations in {}", dir.display()))?,
        None => ecomind_lint::lint(embedded::EMBEDDED),
    };
    // Findings name files as a reader finds them: under the folder that was linted.
    let path = |file: &str| match &folder {
        Some(dir) => dir.join(file).display().to_string(),
        None => file.to_owned(),
    };
    let findings: Vec<ecomind_lint::Finding> = report
        .findings
        .iter()
        .map(|f| ecomind_lint::Finding {
            file: path(&f.file),
            ..f.clone()
        })
        .collect();
    let text = match args.format {
        LintFormat::Text => lint_text(&findings, report.files),
        LintFormat::Github => lint_github(&findings),
    };
    out.result(&text, &json!({ "findings": findings }));
    Ok(if findings.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

fn lint_text(findings: &[ecomind_lint::Finding], files: usize) -> String {
    let mut text = String::new();
    for f in findings {
        let severity = serde_json::to_value(f.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "{}:{}: {severity}[{}]: {}\n  help: {}\n",
            f.file, f.line, f.rule, f.message, f.help
        );
    }
    let _ = match findings.len() {
        0 => writeln!(text, "lint: {files} files, no findings"),
        n => writeln!(text, "lint: {n} finding(s) in {files} files"),
    };
    text
}

/// GitHub Actions workflow commands: one annotation per finding, on the file and line.
fn lint_github(findings: &[ecomind_lint::Finding]) -> String {
    // https://docs.github.com/actions/reference/workflow-commands-for-github-actions
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let property = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let mut text = String::new();
    for f in findings {
        let level = match f.severity {
            ecomind_lint::Severity::Error => "error",
            ecomind_lint::Severity::Warning => "warning",
        };
        let _ = writeln!(
            text,
            "::{level} file={},line={},title={}::{}",
            property(&f.file),
            f.line,
            property(&f.rule),
            data(&format!("{}\nsafe pattern: {}", f.message, f.help))
        );
    }
    text
}

/// `completions`.
pub fn completions(args: &CompletionsArgs) -> Result<u8> {
    use clap::CommandFactory as _;
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = crate::args::Cli::command();
    let mut stdout = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "ecomind-db", &mut stdout);
    Ok(exit::OK)
}
