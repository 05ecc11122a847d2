//! Running cells: one sandbox server per major, and for each environment the steps of
//! `ci/matrix.toml`, through the `ecomind-db` binary (so each environment file is exercised as a
//! deploy job would use it, pointed at the sandbox) and, for the round trip, the engine itself.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ecomind_migrate::{Actor, Catalog, MigrateOptions, RunOptions, Target};
use ecomind_snapshot::{Auth, Binaries, Cluster, ClusterOptions, Listen, Sandbox};

use crate::matrix::Step;
use crate::{chain, Error};

/// What running the cells of one major needs.
#[derive(Clone, Debug)]
pub struct CellSetup<'a> {
    /// The repository root (with `environments/` and `migrations/`).
    pub root: &'a Path,
    /// The `ecomind-db` binary to run.
    pub cli: &'a Path,
    /// The major's server binaries.
    pub bin_dir: &'a Path,
    /// The steps, in order.
    pub steps: &'a [Step],
}

/// How one step went.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Which step.
    pub step: Step,
    /// `None` on success, else what failed.
    pub failure: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// How one cell went.
#[derive(Clone, Debug)]
pub struct CellReport {
    /// The environment.
    pub env: String,
    /// The server's `server_version`.
    pub server_version: String,
    /// Each step run (a cell stops at its first failed step).
    pub steps: Vec<StepReport>,
    /// The whole cell's time.
    pub duration: Duration,
}

impl CellReport {
    /// True when every step passed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.failure.is_none())
    }
}

/// Starts a sandbox server from `setup.bin_dir` and runs the cell of each environment in turn,
/// telling `on_cell` as each finishes. Fails only if the sandbox cannot start.
pub fn run_major(
    setup: &CellSetup<'_>,
    environments: &[String],
    on_cell: &mut dyn FnMut(&CellReport),
) -> Result<Vec<CellReport>, Error> {
    let binaries = Binaries::locate(Some(setup.bin_dir)).map_err(|e| {
        Error::new(format!(
            "no PostgreSQL server in {}: {}",
            setup.bin_dir.display(),
            chain(&e)
        ))
    })?;
    let sandbox = start_sandbox(&binaries)?;
    let server_version = sandbox
        .cluster()
        .connect("postgres")
        .ok()
        .and_then(|mut c| c.query_one("SHOW server_version", &[]).ok())
        .map_or_else(|| binaries.version().to_owned(), |row| row.get(0));
    // Trust authentication ignores it, but staging and prod name a secret file that must exist.
    let secrets = PrivateDir::new("secrets")?;
    let password_file = secrets.path().join("password");
    write_secret(&password_file)?;

    let mut reports = Vec::new();
    for env in environments {
        let cell = Run {
            setup,
            binaries: &binaries,
            sandbox: &sandbox,
            env,
            password_file: &password_file,
        };
        let started = Instant::now();
        let mut steps = Vec::new();
        for &step in setup.steps {
            let step_started = Instant::now();
            let failure = cell.step(step).err().map(|e| e.0);
            let failed = failure.is_some();
            steps.push(StepReport {
                step,
                failure,
                duration: step_started.elapsed(),
            });
            if failed {
                break;
            }
        }
        let report = CellReport {
            env: env.clone(),
            server_version: server_version.clone(),
            steps,
            duration: started.elapsed(),
        };
        on_cell(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// A throwaway server of `binaries`: unix socket only, trust authentication, not durable.
fn start_sandbox(binaries: &Binaries) -> Result<Sandbox, Error> {
    Sandbox::start(&ClusterOptions {
        binaries,
        listen: Listen::Socket,
        auth: Auth::Trust,
        durable: false,
        settings: &[],
    })
    .map_err(|e| {
        Error::new(format!(
            "cannot start a sandbox server of {}: {}",
            binaries.version(),
            chain(&e)
        ))
    })
}

/// A private (0700) folder in the temporary folder, removed with everything in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new(purpose: &str) -> Result<PrivateDir, Error> {
        use std::os::unix::fs::DirBuilderExt as _;
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ecomind-ci-{}-{}-{purpose}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
        Ok(PrivateDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_secret(path: &Path) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(b"unused-with-trust-authentication\n"))
        .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))
}

/// One environment's cell on one sandbox.
struct Run<'a> {
    setup: &'a CellSetup<'a>,
    /// The cell's server binaries (the sandbox's).
    binaries: &'a Binaries,
    sandbox: &'a Sandbox,
    env: &'a str,
    password_file: &'a Path,
}

impl Run<'_> {
    fn step(&self, step: Step) -> Result<(), Error> {
        match step {
            Step::ConfigCheck => {
                let environments = self.setup.root.join("environments");
                let dir = environments.to_string_lossy();
                let args = ["config", "check", "--env", self.env, "--environments", &dir];
                self.cli(&args, None, 0)
            }
            Step::Migrate => {
                let db = self.fresh_database("m")?;
                self.cli(&["migrate"], Some(&db), 0)?;
                self.cli(&["status", "--check"], Some(&db), 0)
            }
            Step::RoundTrip => self.round_trip(),
            Step::Baseline => {
                let db = self.fresh_database("b")?;
                self.hand_made_schema(&db)?;
                self.cli(&["baseline", "--confirm", self.env], Some(&db), 0)?;
                self.cli(&["migrate"], Some(&db), 0)?;
                self.cli(&["status", "--check"], Some(&db), 0)
            }
            Step::Verify => {
                // On the database the migrate step left (or a new one, migrated here).
                let db = self.database_name("m");
                if self.sandbox.cluster().connect(&db).is_err() {
                    self.sandbox
                        .cluster()
                        .ensure_database(&db)
                        .map_err(|e| Error::new(chain(&e)))?;
                    self.cli(&["migrate"], Some(&db), 0)?;
                }
                self.cli(&["verify"], Some(&db), 0)
            }
            Step::Lint => {
                let migrations = self.setup.root.join("migrations");
                let dir = migrations.to_string_lossy();
                self.cli(&["lint", "--migrations", &dir], None, 0)
            }
            Step::DryRun => self.dry_run(),
        }
    }

    fn database_name(&self, purpose: &str) -> String {
        let env: String = self
            .env
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("cell_{env}_{purpose}")
    }

    /// An empty database for one step (dropped first if a previous run left it).
    fn fresh_database(&self, purpose: &str) -> Result<String, Error> {
        let name = self.database_name(purpose);
        fresh_database(self.sandbox.cluster(), &name)?;
        Ok(name)
    }

    /// Production's schema as it was made by hand before migrations existed: V1's DDL, run
    /// directly, without the tool.
    fn hand_made_schema(&self, db: &str) -> Result<(), Error> {
        let path = self.setup.root.join("migrations/V1__baseline.sql");
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
        self.sandbox
            .cluster()
            .connect(db)
            .map_err(|e| Error::new(chain(&e)))?
            .batch_execute(&sql)
            .map_err(|e| Error::new(format!("the hand-made schema failed: {}", chain(&e))))
    }

    /// Runs `ecomind-db <args>` and expects its exit code; with `db`, as the environment's
    /// command pointed at that sandbox database (`--env E`, the connection flags, the folders).
    fn cli(&self, args: &[&str], db: Option<&str>, expect: i32) -> Result<(), Error> {
        let target = db.map(|db| (self.sandbox.cluster(), db));
        self.run_cli(args, target, &[], expect).map(|_| ())
    }

    /// [`Run::cli`] against a database of any cluster, with extra environment variables set
    /// after the CI machine's own are removed; returns what the command printed on stdout.
    fn run_cli(
        &self,
        args: &[&str],
        target: Option<(&Cluster, &str)>,
        env: &[(&str, &OsStr)],
        expect: i32,
    ) -> Result<String, Error> {
        let mut cmd = Command::new(self.setup.cli);
        cmd.args(args).current_dir(self.setup.root);
        let mut shown = args.join(" ");
        if let Some((cluster, db)) = target {
            shown.push_str(&format!(" --env {}", self.env));
            cmd.args(["--env", self.env])
                .arg("--environments")
                .arg(self.setup.root.join("environments"))
                .arg("--migrations")
                .arg(self.setup.root.join("migrations"))
                .arg("--host")
                .arg(cluster.socket_dir())
                .args(["--port", &cluster.port().to_string()])
                .args(["--dbname", db, "--user", cluster.superuser()])
                .args(["--sslmode", "disable"]);
        }
        // Only what this cell sets: nothing from the CI machine's own PG* or ECOMIND_DB_*.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("PG") || key.starts_with("ECOMIND_DB_") || key == "DATABASE_URL" {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.env("ECOMIND_DB_PASSWORD_FILE", self.password_file);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let output = cmd
            .output()
            .map_err(|e| Error::new(format!("cannot run {}: {e}", self.setup.cli.display())))?;
        let code = output.status.code().unwrap_or(-1);
        if code == expect {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut said: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
        said.drain(..said.len().saturating_sub(6));
        Err(Error::new(format!(
            "`ecomind-db {shown}` exited {code}, expected {expect}: {}",
            said.join(" | ")
        )))
    }

    /// Up, down and up again for every migration, under the environment's timeouts; the schema
    /// after each down must equal the schema before the up, and the second up the first.
    fn round_trip(&self) -> Result<(), Error> {
        let db = self.fresh_database("rt")?;
        let catalog = Catalog::load_dir(&self.setup.root.join("migrations"))
            .map_err(|e| Error::new(chain(&e)))?;
        let policy = self.policy()?;
        let actor = Actor {
            os_user: "ci".to_owned(),
            host: "sandbox".to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let mut client = self
            .sandbox
            .cluster()
            .connect(&db)
            .map_err(|e| Error::new(chain(&e)))?;
        let run = |client: &mut postgres::Client, target: Target| {
            let options = MigrateOptions {
                target,
                allow_out_of_order: false,
                run: RunOptions {
                    lock_wait: policy.lock_wait,
                    lock_timeout: policy.lock_timeout,
                    statement_timeout: policy.statement_timeout,
                    actor: &actor,
                    observer: None,
                    lock_retries: policy.lock_retries,
                    lock_retry_backoff: policy.lock_retry_backoff,
                    interrupt: None,
                },
            };
            ecomind_migrate::migrate(client, &catalog, &options, &mut |_| {})
                .map(|_| ())
                .map_err(|e| Error::new(format!("{target:?}: {}", chain(&e))))
        };
        let fingerprint = |client: &mut postgres::Client| {
            ecomind_migrate::fingerprint(client).map_err(|e| Error::new(chain(&e)))
        };
        let mut previous = 0;
        for migration in catalog.migrations() {
            let version = migration.version();
            let before = fingerprint(&mut client)?;
            run(&mut client, Target::UpTo(version))?;
            let up = fingerprint(&mut client)?;
            if migration.down_sql().is_some() {
                run(&mut client, Target::DownTo(previous))?;
                let down = fingerprint(&mut client)?;
                let differences = ecomind_migrate::diff(&before, &down);
                if !differences.is_empty() {
                    return Err(Error::new(format!(
                        "V{version}'s down does not restore the schema before its up: {}",
                        ecomind_migrate::fingerprint::describe(&differences)
                    )));
                }
                run(&mut client, Target::UpTo(version))?;
                let again = fingerprint(&mut client)?;
                let differences = ecomind_migrate::diff(&up, &again);
                if !differences.is_empty() {
                    return Err(Error::new(format!(
                        "V{version} up after its down differs from its first up: {}",
                        ecomind_migrate::fingerprint::describe(&differences)
                    )));
                }
            }
            previous = version;
        }
        Ok(())
    }

    /// A database at V1 (`migrate --to 1`) seeded by `ci/snapshot-seed.sql`, dumped with
    /// `pg_dump -Fc`, then `dry-run --no-cache` of the dump on this cell's major: it must pass,
    /// starting at V1 and applying every later migration. pg_dump cannot dump a server newer
    /// than itself, so when no pg_dump here is as new as the cell's major, the snapshot comes
    /// from a second sandbox of the installation that has one and the dry-run runs with
    /// `--pg-major` of the cell.
    fn dry_run(&self) -> Result<(), Error> {
        let major = self.binaries.major();
        let with_pg_dump: Vec<Binaries> = Binaries::installed(Some(self.binaries.dir()))
            .into_iter()
            .filter(|b| b.tool("pg_dump").is_some())
            .collect();
        let majors: Vec<u32> = with_pg_dump.iter().map(Binaries::major).collect();
        let (pg_dump, other) = match dump_plan(major, &majors)? {
            DumpPlan::OwnServer(i) => (&with_pg_dump[i], None),
            DumpPlan::OtherServer(i) => (&with_pg_dump[i], Some(start_sandbox(&with_pg_dump[i])?)),
        };
        let source = other
            .as_ref()
            .map_or_else(|| self.sandbox.cluster(), Sandbox::cluster);
        let pg_major = other.as_ref().map(|_| major.to_string());
        let folder = PrivateDir::new("dry-run")?;
        let snapshot = folder.path().join("snapshot.dump");
        let db = self.database_name("dr");
        fresh_database(source, &db)?;
        let dumped = self.snapshot(source, &db, pg_dump, &snapshot);
        // The source goes before the dry-run starts servers of its own.
        let cleaned = match other {
            Some(sandbox) => {
                drop(sandbox);
                Ok(())
            }
            None => drop_database(source, &db),
        };
        dumped.and(cleaned)?;

        let root = self.setup.root;
        let (environments, migrations) = (root.join("environments"), root.join("migrations"));
        let (environments, migrations) =
            (environments.to_string_lossy(), migrations.to_string_lossy());
        let snapshot_arg = snapshot.to_string_lossy();
        let mut args = vec![
            "dry-run",
            "--env",
            self.env,
            "--environments",
            &environments,
            "--migrations",
            &migrations,
            "--snapshot",
            &snapshot_arg,
            "--no-cache",
            "--json",
        ];
        if let Some(pg_major) = &pg_major {
            args.extend(["--pg-major", pg_major]);
        }
        // The cell's server among the installations the dry-run looks through, whatever
        // ECOMIND_DB_PG_CACHE says (the CI machine's variables are not passed on).
        let bin_dir = [(
            ecomind_snapshot::BIN_DIR_VARIABLE,
            self.binaries.dir().as_os_str(),
        )];
        let stdout = self.run_cli(&args, None, &bin_dir, 0)?;
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .map_err(|e| Error::new(format!("`ecomind-db dry-run --json` printed no JSON: {e}")))?;
        let catalog = Catalog::load_dir(&self.setup.root.join("migrations"))
            .map_err(|e| Error::new(chain(&e)))?;
        let pending: Vec<i64> = catalog
            .migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .filter(|&v| v > 1)
            .collect();
        check_dry_run(&report, major, &pending)
    }

    /// Fills `db` (empty, on `cluster`) with the generated snapshot and dumps it to `path`.
    fn snapshot(
        &self,
        cluster: &Cluster,
        db: &str,
        pg_dump: &Binaries,
        path: &Path,
    ) -> Result<(), Error> {
        self.run_cli(&["migrate", "--to", "1"], Some((cluster, db)), &[], 0)?;
        let seed = self.setup.root.join("ci/snapshot-seed.sql");
        let sql = std::fs::read_to_string(&seed)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", seed.display())))?
            .replace(":events", &SNAPSHOT_EVENTS.to_string());
        cluster
            .connect(db)
            .map_err(|e| Error::new(chain(&e)))?
            .batch_execute(&sql)
            .map_err(|e| Error::new(format!("{} failed: {}", seed.display(), chain(&e))))?;
        cluster
            .run_client(
                pg_dump,
                "pg_dump",
                ["-Fc".to_owned(), format!("--file={}", path.display())],
                db,
            )
            .map(|_| ())
            .map_err(|e| Error::new(format!("pg_dump failed: {}", chain(&e))))
    }

    /// The environment's policy (timeouts), without reading its secrets.
    fn policy(&self) -> Result<ecomind_config::Policy, Error> {
        let cluster = self.sandbox.cluster();
        let flags = ecomind_config::Flags {
            host: Some(cluster.socket_dir().to_string_lossy().into_owned()),
            port: Some(cluster.port()),
            dbname: Some("postgres".to_owned()),
            user: Some(cluster.superuser().to_owned()),
            password_file: None,
            sslmode: Some(ecomind_config::SslMode::Disable),
        };
        let environments = self.setup.root.join("environments");
        ecomind_config::load_without_secrets(&ecomind_config::LoadOptions {
            env: self.env,
            environments_dir: Some(&environments),
            flags: &flags,
        })
        .map(|settings| settings.policy)
        .map_err(|e| Error::new(chain(&e)))
    }
}

/// Events in the dry-run step's generated snapshot.
const SNAPSHOT_EVENTS: u32 = 2_000;

/// Where the dry-run step's snapshot comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DumpPlan {
    /// The cell's own server, dumped by the pg_dump of this installation (at least as new).
    OwnServer(usize),
    /// A second sandbox of this installation, dumped by its own pg_dump (all are older than the
    /// cell's major).
    OtherServer(usize),
}

/// Chooses among the installations that have pg_dump (their majors, newest first): the oldest
/// pg_dump that can dump the cell's server, else the newest, on a server of its own.
fn dump_plan(cell_major: u32, with_pg_dump: &[u32]) -> Result<DumpPlan, Error> {
    if let Some((i, _)) = with_pg_dump
        .iter()
        .enumerate()
        .filter(|(_, &m)| m >= cell_major)
        .min_by_key(|(_, &m)| m)
    {
        return Ok(DumpPlan::OwnServer(i));
    }
    if let Some((i, _)) = with_pg_dump.iter().enumerate().max_by_key(|(_, &m)| m) {
        return Ok(DumpPlan::OtherServer(i));
    }
    Err(Error::new(
        "no pg_dump in any PostgreSQL installation here, so the dry-run step cannot dump its \
         snapshot; install the PostgreSQL client (Debian's postgresql-client-15)",
    ))
}

/// Drops `name` if it exists, then creates it empty.
fn fresh_database(cluster: &Cluster, name: &str) -> Result<(), Error> {
    drop_database(cluster, name)?;
    cluster
        .ensure_database(name)
        .map_err(|e| Error::new(chain(&e)))
}

fn drop_database(cluster: &Cluster, name: &str) -> Result<(), Error> {
    cluster
        .connect("postgres")
        .map_err(|e| Error::new(chain(&e)))?
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .map_err(|e| Error::new(chain(&e)))
}

/// What a passing dry-run of the generated snapshot reports: verdict pass (no rows lost, the
/// rollback rehearsal and verify passed), from V1, every later migration applied, on the cell's
/// major.
fn check_dry_run(report: &serde_json::Value, major: u32, pending: &[i64]) -> Result<(), Error> {
    let server = report["restore"]["server_version"].as_str().unwrap_or("?");
    if !server.contains(&format!("(PostgreSQL) {major}.")) {
        return Err(Error::new(format!(
            "the dry-run ran on {server}, not on this cell's PostgreSQL {major}"
        )));
    }
    let applied: Vec<i64> = report["migrations"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["version"].as_i64()).collect())
        .unwrap_or_default();
    if report["start_version"].as_i64() != Some(1) || applied != pending {
        return Err(Error::new(format!(
            "the dry-run started at {} and applied {applied:?}; expected V1 and {pending:?}",
            report["start_version"]
        )));
    }
    match report["verdict"].as_str() {
        Some("pass") => Ok(()),
        other => Err(Error::new(format!(
            "the dry-run's verdict is {}, not pass",
            other.unwrap_or("missing")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_comes_from_the_cell_s_server_when_a_pg_dump_is_as_new() {
        assert_eq!(dump_plan(13, &[15]).unwrap(), DumpPlan::OwnServer(0));
        assert_eq!(dump_plan(15, &[15]).unwrap(), DumpPlan::OwnServer(0));
        assert_eq!(dump_plan(14, &[17, 15]).unwrap(), DumpPlan::OwnServer(1));
        assert_eq!(dump_plan(16, &[17, 15]).unwrap(), DumpPlan::OwnServer(0));
    }

    #[test]
    fn else_from_a_server_of_the_newest_pg_dump_and_without_one_the_step_says_what_to_install() {
        assert_eq!(dump_plan(17, &[15]).unwrap(), DumpPlan::OtherServer(0));
        assert_eq!(dump_plan(18, &[16, 15]).unwrap(), DumpPlan::OtherServer(0));
        let error = dump_plan(17, &[]).unwrap_err().to_string();
        assert!(error.contains("postgresql-client-15"), "{error}");
    }

    #[test]
    fn a_dry_run_report_passes_only_from_v1_with_every_later_migration_on_the_cell_s_major() {
        let report = |server: &str, start: i64, versions: &[i64], verdict: &str| {
            let migrations: Vec<serde_json::Value> = versions
                .iter()
                .map(|v| serde_json::json!({ "version": v }))
                .collect();
            serde_json::json!({
                "restore": { "server_version": server },
                "start_version": start,
                "migrations": migrations,
                "verdict": verdict,
            })
        };
        let pg17 = "postgres (PostgreSQL) 17.10";
        check_dry_run(&report(pg17, 1, &[2, 3, 4], "pass"), 17, &[2, 3, 4]).unwrap();
        let pg15 = "postgres (PostgreSQL) 15.14 (Debian 15.14-1.pgdg120+1)";
        let error = check_dry_run(&report(pg15, 1, &[2, 3, 4], "pass"), 17, &[2, 3, 4]);
        assert!(error
            .unwrap_err()
            .0
            .contains("not on this cell's PostgreSQL 17"));
        let error = check_dry_run(&report(pg17, 4, &[], "pass"), 17, &[2, 3, 4]);
        assert!(error.unwrap_err().0.contains("expected V1 and [2, 3, 4]"));
        let error = check_dry_run(&report(pg17, 1, &[2, 3, 4], "fail"), 17, &[2, 3, 4]);
        assert_eq!(
            error.unwrap_err().0,
            "the dry-run's verdict is fail, not pass"
        );
    }
}
