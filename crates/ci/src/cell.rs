//! Running cells: one sandbox server per major, and for each environment the steps of
//! `ci/matrix.toml`, through the `ecomind-db` binary (so each environment file is exercised as a
//! deploy job would use it, pointed at the sandbox) and, for the round trip, the engine itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ecomind_migrate::{Actor, Catalog, MigrateOptions, RunOptions, Target};
use ecomind_snapshot::{Auth, Binaries, ClusterOptions, Listen, Sandbox};

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
    let sandbox = Sandbox::start(&ClusterOptions {
        binaries: &binaries,
        listen: Listen::Socket,
        auth: Auth::Trust,
        durable: false,
        settings: &[],
    })
    .map_err(|e| Error::new(format!("cannot start a sandbox server: {}", chain(&e))))?;
    let server_version = sandbox
        .cluster()
        .connect("postgres")
        .ok()
        .and_then(|mut c| c.query_one("SHOW server_version", &[]).ok())
        .map_or_else(|| binaries.version().to_owned(), |row| row.get(0));
    // Trust authentication ignores it, but staging and prod name a secret file that must exist.
    let secrets = tempfile_dir()?;
    let password_file = secrets.join("password");
    write_secret(&password_file)?;

    let mut reports = Vec::new();
    for env in environments {
        let cell = Run {
            setup,
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
    let _ = std::fs::remove_dir_all(&secrets);
    Ok(reports)
}

/// A private folder for the placeholder secret, removed at the end of the run.
fn tempfile_dir() -> Result<PathBuf, Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = std::env::temp_dir().join(format!("ecomind-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
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
        let mut admin = self
            .sandbox
            .cluster()
            .connect("postgres")
            .map_err(|e| Error::new(chain(&e)))?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .map_err(|e| Error::new(chain(&e)))?;
        self.sandbox
            .cluster()
            .ensure_database(&name)
            .map_err(|e| Error::new(chain(&e)))?;
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
        let cluster = self.sandbox.cluster();
        let mut cmd = Command::new(self.setup.cli);
        cmd.args(args).current_dir(self.setup.root);
        let mut shown = args.join(" ");
        if let Some(db) = db {
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
        let output = cmd
            .output()
            .map_err(|e| Error::new(format!("cannot run {}: {e}", self.setup.cli.display())))?;
        let code = output.status.code().unwrap_or(-1);
        if code == expect {
            return Ok(());
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
