//! `ecomind-bench`: times `ecomind-db` against the floor psql sets for the same work, on one fresh
//! sandbox cluster in one run, and prints the ratios. Run it with `cargo xtask bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecomind_snapshot::{Auth, Binaries, Cluster, ClusterOptions, Listen, Sandbox};

mod dry_run;

const NOOP_RUNS: usize = 30;
const APPLY_RUNS: usize = 5;
const GENERATED: usize = 500;
/// The history the start-up rows read from a folder (the measurement used 200).
const STARTUP_HISTORY: usize = 200;
/// What `cargo xtask bench [SECTION ...]` can run.
const SECTIONS: &[&str] = &["startup", "apply", "dry-run"];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let ecomind_db = PathBuf::from(
        args.next()
            .ok_or("usage: ecomind-bench <path to ecomind-db> [startup] [apply] [dry-run]")?,
    );
    // The sections to run; all of them when none is named.
    let sections: Vec<String> = args.collect();
    for section in &sections {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(format!(
                "unknown section `{section}`: choose from {}",
                SECTIONS.join(", ")
            ));
        }
    }
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let binaries = Binaries::from_env().map_err(|e| e.to_string())?;
    let psql = binaries
        .tool("psql")
        .ok_or("the floor needs psql beside the server binaries (Debian: postgresql-client-15)")?;
    let sandbox = Sandbox::start(&ClusterOptions {
        binaries: &binaries,
        listen: Listen::Socket,
        auth: Auth::Trust,
        durable: false,
        settings: &[],
    })
    .map_err(|e| e.to_string())?;
    let cluster = sandbox.cluster();
    let bench = Bench {
        ecomind_db,
        psql,
        socket_dir: cluster.socket_dir().to_path_buf(),
        port: cluster.port(),
        user: cluster.superuser().to_owned(),
    };
    println!(
        "{} sandbox in {}, {} cores, load average {}; medians of {NOOP_RUNS} (no-op, status) and {APPLY_RUNS} (apply, rollback) runs\n",
        binaries.version(),
        std::env::temp_dir().display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned())
    );

    let dir = tempdir_for_migrations()?;
    let generated = generate(&dir.0)?;
    let migrations = dir.0.join("migrations");
    if wanted("startup") {
        startup(&bench, cluster, &migrations)?;
    }
    if wanted("apply") {
        apply(&bench, cluster, &migrations, &generated)?;
    }
    if wanted("dry-run") {
        println!();
        dry_run::run(&bench, cluster, &binaries)?;
    }
    Ok(())
}

/// No-op migrate and `status --check` on up-to-date databases, against `psql -X -c 'select 1'`,
/// interleaved so all of them see the same machine: with the migrations built into the binary
/// (as a deploy job runs it) and with a history of [`STARTUP_HISTORY`] read from a folder.
fn startup(bench: &Bench, cluster: &Cluster, generated: &Path) -> Result<(), String> {
    let dir = tempdir("startup")?;
    let folder = dir.0.join("migrations");
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    for n in 1..=STARTUP_HISTORY {
        for file in [
            format!("V{n}__bench_{n}.sql"),
            format!("V{n}__bench_{n}.down.sql"),
        ] {
            std::fs::copy(generated.join(&file), folder.join(&file)).map_err(|e| e.to_string())?;
        }
    }
    cluster.ensure_database("noop").map_err(|e| e.to_string())?;
    cluster
        .ensure_database("noop_folder")
        .map_err(|e| e.to_string())?;
    bench.ecomind("noop", &["migrate"], None)?;
    bench.ecomind("noop_folder", &["migrate"], Some(&folder))?;
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for _ in 0..NOOP_RUNS {
        samples[0].push(bench.ecomind("noop", &["migrate"], None)?);
        samples[1].push(bench.ecomind("noop", &["status", "--check"], None)?);
        samples[2].push(bench.ecomind("noop_folder", &["migrate"], Some(&folder))?);
        samples[3].push(bench.ecomind("noop_folder", &["status", "--check"], Some(&folder))?);
        samples[4].push(bench.psql("noop", &["-c", "select 1"])?);
    }
    let floor = median(&samples[4]);
    let rows = [
        "no-op migrate (V1..V4 built in)".to_owned(),
        "status --check (V1..V4 built in)".to_owned(),
        format!("no-op migrate ({STARTUP_HISTORY} in a folder)"),
        format!("status --check ({STARTUP_HISTORY} in a folder)"),
    ];
    for (row, ours) in rows.iter().zip(&samples) {
        report(row, median(ours), floor, "psql -X -c 'select 1'", 0.9);
    }
    Ok(())
}

/// The generated migrations applied and rolled back, against `psql -X -1 -f` of the same SQL
/// (the floor the targets are set against), and against `psql -X -f` of the same SQL with each
/// migration in its own transaction (the contract the tool keeps, shown for reference).
fn apply(
    bench: &Bench,
    cluster: &Cluster,
    migrations: &Path,
    generated: &Generated,
) -> Result<(), String> {
    // ours, psql -1, psql with a transaction per migration; apply and rollback each.
    let mut samples: [[Vec<Duration>; 2]; 3] = Default::default();
    let steps = GENERATED.to_string();
    let path = |p: &Path| p.display().to_string();
    let (all, all_down) = (path(&generated.all), path(&generated.all_down));
    let (each, each_down) = (path(&generated.each), path(&generated.each_down));
    for i in 0..APPLY_RUNS {
        // Each run gets a database created just before it, and the order rotates, so none
        // inherits another's (or CREATE DATABASE's) background writes more than the others.
        for k in 0..3 {
            let side = (i + k) % 3;
            let db = format!("apply_{side}_{i}");
            cluster.ensure_database(&db).map_err(|e| e.to_string())?;
            let (up, down) = match side {
                0 => (
                    bench.ecomind(&db, &["migrate"], Some(migrations))?,
                    bench.ecomind(&db, &["rollback", "--steps", &steps], Some(migrations))?,
                ),
                1 => (
                    bench.psql(&db, &["-1", "-f", &all])?,
                    bench.psql(&db, &["-1", "-f", &all_down])?,
                ),
                _ => (
                    bench.psql(&db, &["-f", &each])?,
                    bench.psql(&db, &["-f", &each_down])?,
                ),
            };
            samples[side][0].push(up);
            samples[side][1].push(down);
        }
    }
    for (d, (what, floor_name, target)) in [
        ("apply", "psql -X -1 -f (same SQL)", 1.05),
        ("rollback", "psql -X -1 -f (same downs)", 1.2),
    ]
    .into_iter()
    .enumerate()
    {
        let ours = median(&samples[0][d]);
        report(
            &format!("{what} {GENERATED} migrations"),
            ours,
            median(&samples[1][d]),
            floor_name,
            target,
        );
        let each = median(&samples[2][d]);
        println!(
            "{:<34} ecomind-db {:>9.1} ms   psql -X -f, a transaction per migration {:.1} ms   ratio {:.2}x (for reference)",
            format!("  {what}, same contract"),
            ours.as_secs_f64() * 1000.0,
            each.as_secs_f64() * 1000.0,
            ours.as_secs_f64() / each.as_secs_f64()
        );
    }
    Ok(())
}

pub(crate) struct Bench {
    pub(crate) ecomind_db: PathBuf,
    psql: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    user: String,
}

impl Bench {
    pub(crate) fn command(&self, program: &Path, dbname: &str) -> Command {
        let mut cmd = Command::new(program);
        for var in ["DATABASE_URL", "PGPASSWORD", "PGSERVICE", "PGOPTIONS"] {
            cmd.env_remove(var);
        }
        cmd.env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", dbname)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Times `ecomind-db <command> --env dev` (dev: rollback allowed, no confirmation).
    fn ecomind(
        &self,
        dbname: &str,
        command: &[&str],
        migrations: Option<&Path>,
    ) -> Result<Duration, String> {
        let mut cmd = self.command(&self.ecomind_db, dbname);
        cmd.args(command).args(["--env", "dev"]);
        if let Some(dir) = migrations {
            cmd.arg("--migrations").arg(dir);
        }
        timed(cmd, &format!("ecomind-db {}", command.join(" ")))
    }

    fn psql(&self, dbname: &str, args: &[&str]) -> Result<Duration, String> {
        let mut cmd = self.command(&self.psql, dbname);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]).args(args);
        timed(cmd, "psql")
    }
}

pub(crate) fn timed(mut cmd: Command, what: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let took = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(took)
}

/// A folder removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir_for_migrations() -> Result<TempDir, String> {
    tempdir("migrations")
}

pub(crate) fn tempdir(what: &str) -> Result<TempDir, String> {
    let dir = std::env::temp_dir().join(format!("ecomind-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(TempDir(dir))
}

/// The generated migrations and the same SQL concatenated for psql.
struct Generated {
    /// The ups in order, for `psql -1 -f`.
    all: PathBuf,
    /// The downs newest first, for `psql -1 -f`.
    all_down: PathBuf,
    /// The ups, each between `BEGIN` and `COMMIT`: the contract the tool keeps (every migration
    /// commits on its own, with its history row), without the history.
    each: PathBuf,
    /// The downs likewise.
    each_down: PathBuf,
}

/// Writes V1..V{GENERATED} (each a table with an index and a comment) and their downs into
/// `dir/migrations`, and the same SQL concatenated for psql.
fn generate(dir: &Path) -> Result<Generated, String> {
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(&migrations).map_err(|e| e.to_string())?;
    let (mut all, mut each) = (String::new(), String::new());
    let mut downs = Vec::new();
    for n in 1..=GENERATED {
        let up = format!(
            "CREATE TABLE bench_{n} (id bigint PRIMARY KEY, org_id text NOT NULL, kwh double precision NOT NULL DEFAULT 0, ts timestamptz NOT NULL DEFAULT now());\n\
             CREATE INDEX bench_{n}_org_ts ON bench_{n} (org_id, ts);\n\
             COMMENT ON TABLE bench_{n} IS 'generated table {n}';\n"
        );
        std::fs::write(migrations.join(format!("V{n}__bench_{n}.sql")), &up)
            .map_err(|e| e.to_string())?;
        let down = format!("DROP TABLE bench_{n};\n");
        std::fs::write(migrations.join(format!("V{n}__bench_{n}.down.sql")), &down)
            .map_err(|e| e.to_string())?;
        all.push_str(&up);
        each.push_str(&format!("BEGIN;\n{up}COMMIT;\n"));
        downs.push(down);
    }
    downs.reverse();
    let write = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    };
    Ok(Generated {
        all: write("all.sql", all)?,
        each: write("each.sql", each)?,
        all_down: write("all.down.sql", downs.concat())?,
        each_down: write(
            "each.down.sql",
            downs
                .iter()
                .map(|d| format!("BEGIN;\n{d}COMMIT;\n"))
                .collect(),
        )?,
    })
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn report(what: &str, ours: Duration, floor: Duration, floor_name: &str, target: f64) {
    let ratio = ours.as_secs_f64() / floor.as_secs_f64();
    println!(
        "{what:<34} ecomind-db {:>9.1} ms   floor {:>9.1} ms ({floor_name})   ratio {ratio:.2}x (target <= {target}x) {}",
        ours.as_secs_f64() * 1000.0,
        floor.as_secs_f64() * 1000.0,
        if ratio <= target { "ok" } else { "OVER TARGET" }
    );
}
