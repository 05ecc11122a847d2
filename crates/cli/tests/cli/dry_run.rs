//! `ecomind-db dry-run` end to end, on snapshots the tests make themselves: a database at V1
//! with data and history, dumped in every format, dry-run in a private TMPDIR that must be
//! empty of sandboxes afterwards.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ecomind_snapshot::{Auth, Binaries, ClusterOptions, Listen, Sandbox};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ecomind-db");

/// An installation with pg_dump: `ECOMIND_DB_BIN_DIR` when it is a full one, else the search
/// (the server-only builds CI tests other majors with have no pg_dump, and Debian's pg_dump
/// refuses servers newer than itself).
fn full_binaries() -> Binaries {
    if let Some(dir) = std::env::var_os("ECOMIND_DB_BIN_DIR").map(PathBuf::from) {
        let binaries = Binaries::locate(Some(&dir)).expect("configured binaries");
        if binaries.tool("pg_dump").is_some() {
            return binaries;
        }
    }
    Binaries::locate(None).expect("PostgreSQL binaries")
}

/// The repository's migrations folder.
fn migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// The snapshot source: V1 applied by `ecomind-db migrate`, with rows in every table, dumped
/// in every format into the sandbox's folder (removed with it when the process ends).
pub(super) struct Snapshots {
    _sandbox: Sandbox,
    pub(super) files: Vec<(&'static str, PathBuf)>,
    /// A database with V1's schema and data but no history, dumped in custom format.
    without_history: PathBuf,
}

pub(super) fn snapshots() -> &'static Snapshots {
    static SNAPSHOTS: OnceLock<Snapshots> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        let binaries = full_binaries();
        let sandbox = Sandbox::start(&ClusterOptions {
            binaries: &binaries,
            listen: Listen::Socket,
            auth: Auth::Trust,
            durable: false,
            settings: &[],
        })
        .expect("source sandbox");
        let cluster = sandbox.cluster();
        let dir = cluster.root().join("dumps");
        std::fs::create_dir(&dir).expect("dumps folder");
        for db in ["ecomind", "hand_made"] {
            cluster.ensure_database(db).expect("database");
            let output = Command::new(BIN)
                .args(["migrate", "--env", "dev", "--to", "1", "--migrations"])
                .arg(migrations())
                .env("PGHOST", cluster.socket_dir())
                .env("PGPORT", cluster.port().to_string())
                .env("PGUSER", cluster.superuser())
                .env("PGDATABASE", db)
                .env_remove("DATABASE_URL")
                .output()
                .expect("migrate runs");
            assert!(output.status.success(), "{output:?}");
            let mut client = cluster.connect(db).expect("connect");
            client
                .batch_execute(
                    "INSERT INTO organizations (org_id, name) SELECT 'org-' || g, 'Org ' || g FROM generate_series(1, 5) g; \
                     INSERT INTO users (user_id, org_id, email) SELECT 'user-' || g, 'org-' || (g % 5 + 1), 'u' || g || '@example.com' FROM generate_series(1, 20) g; \
                     INSERT INTO events_enriched (id, org_id, user_id, provider, kwh, water_l, co2_kg, ts) \
                       SELECT md5(g::text), 'org-' || (g % 5 + 1), 'user-' || (g % 20 + 1), 'openai', 0.1, 0.2, 0.3, now() - g * interval '1 minute' \
                       FROM generate_series(1, 300) g; \
                     INSERT INTO audit_logs (org_id, action) SELECT 'org-1', 'login' FROM generate_series(1, 40) g;",
                )
                .expect("fill");
        }
        {
            let mut client = cluster.connect("hand_made").expect("connect");
            client
                .batch_execute("DROP TABLE refinery_schema_history, ecomind_migration_events")
                .expect("forget the history");
        }
        let mut files = Vec::new();
        for (format, flag, name, extra) in [
            ("custom", "-Fc", "ecomind.dump", None),
            ("directory", "-Fd", "ecomind.dir", None),
            ("tar", "-Ft", "ecomind.tar", None),
            ("plain", "-Fp", "ecomind.sql", None),
            ("plain-gzip", "-Fp", "ecomind.sql.gz", Some("--compress=6")),
        ] {
            let path = dir.join(name);
            let mut args = vec![flag.to_owned(), format!("--file={}", path.display())];
            args.extend(extra.map(str::to_owned));
            cluster
                .run_client(&binaries, "pg_dump", &args, "ecomind")
                .expect("pg_dump");
            files.push((format, path));
        }
        let without_history = dir.join("hand_made.dump");
        cluster
            .run_client(
                &binaries,
                "pg_dump",
                ["-Fc".to_owned(), format!("--file={}", without_history.display())],
                "hand_made",
            )
            .expect("pg_dump");
        Snapshots {
            _sandbox: sandbox,
            files,
            without_history,
        }
    })
}

/// A private TMPDIR (traversable by the server user) and cache folder for one dry run.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let dir = tempfile::Builder::new()
            .prefix("ecomind-dry-run-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        std::fs::set_permissions(
            dir.path().join("tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        Place { dir }
    }

    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PG") || key == "DATABASE_URL" || key == "ECOMIND_DB_PASSWORD" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("TMPDIR", self.tmp())
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("ecomind-db runs")
    }

    /// Waits (bounded) until nothing of a sandbox is left in the private TMPDIR: a killed run's
    /// reaper finishes just after it.
    fn assert_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left: Vec<String> = std::fs::read_dir(self.tmp())
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind in TMPDIR: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&output.stdout), text(&output.stderr)))
}

fn dry_run(place: &Place, snapshot: &Path, migrations: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["dry-run", "--env", "dev", "--json", "--snapshot"];
    let snapshot = snapshot.to_string_lossy().into_owned();
    let migrations = migrations.to_string_lossy().into_owned();
    args.push(&snapshot);
    args.extend(["--migrations", &migrations]);
    args.extend(extra);
    place.run(&args)
}

/// The locks of one migration as `MODE on relation` strings.
fn locks(migration: &Value) -> Vec<String> {
    migration["statements"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["locks"].as_array().unwrap().iter())
        .map(|l| {
            format!(
                "{} on {}",
                l["mode"].as_str().unwrap(),
                l["relation"].as_str().unwrap()
            )
        })
        .collect()
}

fn check_format(format: &str, path: &Path) {
    let place = Place::new();
    let output = dry_run(&place, path, &migrations(), &[]);
    assert_exit(&output, 0);
    let doc = json(&output);
    assert_eq!(doc["snapshot"]["format"], format);
    assert!(
        doc["snapshot"]["source_server_version"].is_string(),
        "{doc}"
    );
    assert_eq!(doc["restore"]["from_cache"], false);
    assert_eq!(doc["start_version"], 1);
    let migrations = doc["migrations"].as_array().unwrap();
    let versions: Vec<i64> = migrations
        .iter()
        .map(|m| m["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 3, 4], "{format}");
    for m in migrations {
        assert!(m["seconds"].as_f64().unwrap() > 0.0);
        assert!(!m["statements"].as_array().unwrap().is_empty());
        for row in m["rows"].as_array().unwrap() {
            if !row["before"].is_null() {
                assert_eq!(row["before"], row["after"], "{format}: rows of {row}");
            }
        }
    }
    // V3 adds columns to users: ACCESS EXCLUSIVE, held until commit.
    assert!(
        locks(&migrations[1]).contains(&"ACCESS EXCLUSIVE on users".to_owned()),
        "{format}: {:?}",
        locks(&migrations[1])
    );
    // V4's foreign keys lock the referenced tables against writes.
    assert!(
        locks(&migrations[2]).contains(&"SHARE ROW EXCLUSIVE on organizations".to_owned()),
        "{format}: {:?}",
        locks(&migrations[2])
    );
    assert_eq!(doc["data_loss"].as_array().unwrap().len(), 0);
    assert_eq!(doc["rollback"]["ran"], true);
    assert_eq!(doc["rollback"]["ok"], true, "{doc}");
    assert_eq!(doc["rollback"]["schema_identical"], true);
    assert_eq!(doc["rollback"]["rows_intact"], true);
    assert_eq!(doc["verdict"], "pass");
    place.assert_empty();
}

#[test]
fn every_format_dry_runs_v2_to_v4_with_timings_locks_rows_and_a_rollback() {
    std::thread::scope(|scope| {
        for (format, path) in &snapshots().files {
            scope.spawn(move || check_format(format, path));
        }
    });
}

#[test]
fn the_second_run_copies_the_cached_template_and_prune_cache_empties_it() {
    let place = Place::new();
    let custom = &snapshots().files[0].1;
    let first = dry_run(&place, custom, &migrations(), &["--no-rollback"]);
    assert_exit(&first, 0);
    assert_eq!(json(&first)["restore"]["from_cache"], false);
    let second = dry_run(&place, custom, &migrations(), &["--no-rollback"]);
    assert_exit(&second, 0);
    let doc = json(&second);
    assert_eq!(doc["restore"]["from_cache"], true);
    assert_eq!(doc["rollback"]["ran"], false);
    assert!(doc["restore"]["cache_dir"].as_str().unwrap().starts_with(
        &place
            .dir
            .path()
            .join("cache")
            .to_string_lossy()
            .into_owned()
    ));
    let pruned = place.run(&["dry-run", "--prune-cache", "--json"]);
    assert_exit(&pruned, 0);
    assert_eq!(json(&pruned)["templates_removed"], 1);
    place.assert_empty();
}

/// The repository's migrations plus a V5 that deletes audit rows, with or without the directive.
fn with_deleting_migration(declared: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(migrations()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let directive = if declared {
        "-- ecomind:destructive\n"
    } else {
        ""
    };
    std::fs::write(
        dir.path().join("V5__purge_logins.sql"),
        format!("{directive}DELETE FROM audit_logs WHERE action = 'login' AND id % 2 = 0;\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V5__purge_logins.down.sql"),
        "-- the deleted rows cannot come back\nSELECT 1;\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_migration_that_deletes_rows_fails_the_verdict_unless_it_declares_it() {
    let custom = &snapshots().files[0].1;
    let place = Place::new();
    let undeclared = with_deleting_migration(false);
    let output = dry_run(&place, custom, undeclared.path(), &["--no-cache"]);
    assert_exit(&output, 4);
    let doc = json(&output);
    assert_eq!(doc["verdict"], "fail");
    let loss = &doc["data_loss"][0];
    assert_eq!(loss["version"], 5);
    assert_eq!(loss["kind"], "rows_lost");
    assert_eq!(loss["table"], "audit_logs");
    assert_eq!(loss["before"], 40);
    assert_eq!(loss["after"], 20);
    assert_eq!(loss["declared"], false);

    let declared = with_deleting_migration(true);
    let report = place.dir.path().join("report.md");
    let output = dry_run(
        &place,
        custom,
        declared.path(),
        &["--no-cache", "--report", &report.to_string_lossy()],
    );
    assert_exit(&output, 0);
    let doc = json(&output);
    assert_eq!(doc["verdict"], "pass");
    assert_eq!(doc["migrations"][3]["destructive"], true);
    assert_eq!(doc["data_loss"][0]["declared"], true);
    let markdown = std::fs::read_to_string(&report).unwrap();
    assert!(
        markdown.contains("V5 purge_logins (destructive)"),
        "{markdown}"
    );
    assert!(
        markdown.contains("declared with -- ecomind:destructive"),
        "{markdown}"
    );
    assert!(markdown.contains("**Verdict: PASS**"), "{markdown}");
    place.assert_empty();
}

#[test]
fn a_snapshot_without_history_needs_baseline() {
    let place = Place::new();
    let snapshot = &snapshots().without_history;
    let output = dry_run(
        &place,
        snapshot,
        &migrations(),
        &["--no-cache", "--no-rollback"],
    );
    assert_exit(&output, 1);
    assert!(
        text(&output.stderr).contains("pass --baseline"),
        "{}",
        text(&output.stderr)
    );
    let output = dry_run(
        &place,
        snapshot,
        &migrations(),
        &["--no-cache", "--no-rollback", "--baseline"],
    );
    assert_exit(&output, 0);
    let doc = json(&output);
    assert_eq!(doc["baseline"], 1);
    assert_eq!(doc["migrations"].as_array().unwrap().len(), 3);
    place.assert_empty();
}

#[test]
fn bad_inputs_exit_1_with_a_sentence_and_leave_nothing() {
    let custom = std::fs::read(&snapshots().files[0].1).unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let random = inputs.path().join("random.dump");
    let bytes: Vec<u8> = (0u32..8192)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&random, bytes).unwrap();
    let truncated = inputs.path().join("truncated.dump");
    std::fs::write(&truncated, &custom[..custom.len() / 2]).unwrap();
    let empty = inputs.path().join("empty.dump");
    std::fs::write(&empty, b"").unwrap();
    let folder = inputs.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let missing = inputs.path().join("missing.dump");
    for (path, expected) in [
        (&random, "is not a pg_dump dump"),
        (&truncated, "is truncated"),
        (&empty, "is empty"),
        (&folder, "without toc.dat"),
        (&missing, "does not exist"),
    ] {
        let place = Place::new();
        let output = place.run(&[
            "dry-run",
            "--env",
            "dev",
            "--no-cache",
            "--snapshot",
            &path.to_string_lossy(),
        ]);
        assert_exit(&output, 1);
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{}: {stderr}", path.display());
        let errors = stderr.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(errors, 1, "one error: {stderr}");
        place.assert_empty();
    }
}

#[test]
fn a_pg_major_that_is_not_installed_exits_1_naming_the_majors_found_and_leaves_nothing() {
    let place = Place::new();
    let custom = snapshots().files[0].1.to_string_lossy().into_owned();
    let output = place.run(&[
        "dry-run",
        "--env",
        "dev",
        "--no-cache",
        "--snapshot",
        &custom,
        "--pg-major",
        "99",
    ]);
    assert_exit(&output, 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("PostgreSQL 99 is not installed here (found ")
            && stderr.contains("or ask for one of the majors found"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1
    );
    place.assert_empty();
    assert!(!place.dir.path().join("cache").exists(), "nothing cached");
}

#[test]
fn sigterm_during_the_restore_leaves_nothing_behind() {
    let place = Place::new();
    let snapshot = &snapshots().files[0].1;
    let mut child = place
        .command(&[
            "dry-run",
            "--env",
            "dev",
            "--no-cache",
            "--snapshot",
            &snapshot.to_string_lossy(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.by_ref() {
        if line.expect("stderr").starts_with("restoring") {
            break;
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    drop(lines);
    place.assert_empty();
}
