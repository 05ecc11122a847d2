//! The `ecomind-db` binary end to end, against real PostgreSQL in this process's sandbox cluster.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ecomind_testkit::{database, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_ecomind-db");

/// `ecomind-db <args>` pointed at `db` through the PG* variables, with nothing else of ours inherited.
fn command(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    isolate(&mut cmd);
    for (k, v) in db.pg_env() {
        cmd.env(k, v);
    }
    cmd.args(args);
    cmd
}

fn isolate(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PG") || key.starts_with("ECOMIND_DB_") || key == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
}

fn run(db: &TestDb, args: &[&str]) -> Output {
    command(db, args).output().expect("ecomind-db runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        code(output),
        expected,
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn applied_versions(db: &TestDb) -> Vec<i32> {
    db.client()
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A migrations folder made of `(file, sql)` pairs, removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn new(files: &[(&str, &str)]) -> Folder {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ecomind-cli-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp folder");
        for (name, sql) in files {
            std::fs::write(dir.join(name), sql).expect("write migration");
        }
        Folder(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `condition` until it holds, failing the test after a generous deadline.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn migrate_applies_everything_then_nothing_and_status_check_agrees() {
    let db = database();
    let pending = run(&db, &["status", "--env", "dev", "--check"]);
    assert_exit(&pending, 3);

    let first = run(&db, &["migrate", "--env", "dev"]);
    assert_exit(&first, 0);
    let out = text(&first.stdout);
    assert!(out.contains("4 migration(s) applied, now at V4"), "{out}");
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);

    let second = run(&db, &["migrate", "--env", "dev", "--json"]);
    assert_exit(&second, 0);
    let doc: serde_json::Value = serde_json::from_slice(&second.stdout).expect("one JSON document");
    assert_eq!(doc["applied"], serde_json::json!([]));
    assert_eq!(doc["head"], 4);

    let clean = run(&db, &["status", "--env", "dev", "--check", "--json"]);
    assert_exit(&clean, 0);
    let doc: serde_json::Value = serde_json::from_slice(&clean.stdout).expect("one JSON document");
    let applied = doc["applied"].as_array().expect("applied list");
    assert_eq!(applied.len(), 4);
    assert_eq!(applied[1]["version"], 2);
    assert_eq!(applied[1]["name"], "performance_indexes");
    assert!(applied[1]["applied_on"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(doc["pending"], serde_json::json!([]));
}

#[test]
fn status_json_lists_pending_migrations() {
    let db = database();
    assert_exit(&run(&db, &["migrate", "--env", "dev", "--to", "2"]), 0);
    let out = run(&db, &["status", "--env", "dev", "--json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        doc["pending"],
        serde_json::json!([
            {"version": 3, "name": "user_credentials"},
            {"version": 4, "name": "api_keys_and_refresh_tokens"}
        ])
    );
}

#[test]
fn eight_migrate_processes_at_once_apply_each_migration_exactly_once() {
    let db = database();
    let children: Vec<Child> = (0..8)
        .map(|_| {
            command(&db, &["migrate", "--env", "dev"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_exit(&output, 0);
    }
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    let events = db
        .client()
        .query(
            "SELECT version, count(*) FROM ecomind_migration_events \
             WHERE direction = 'up' AND outcome = 'applied' GROUP BY version ORDER BY version",
            &[],
        )
        .expect("events");
    let counts: Vec<(i32, i64)> = events.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(counts, vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
    let failed: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ecomind_migration_events s WHERE outcome = 'failed' \
                OR (outcome = 'started' AND NOT EXISTS \
                    (SELECT 1 FROM ecomind_migration_events e WHERE e.attempt = s.id))",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(failed, 0, "no failed and no unfinished attempt");
}

#[test]
fn a_migrate_killed_mid_migration_leaves_nothing_of_it_and_the_next_run_applies_it() {
    let db = database();
    let folder = Folder::new(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        (
            "V2__slow.sql",
            "CREATE TABLE slow (id int);\nINSERT INTO slow VALUES (1);\n\
             SELECT pg_sleep(coalesce(nullif(current_setting('ecomind_test.sleep', true), ''), '0')::float8);\n",
        ),
        ("V2__slow.down.sql", "DROP TABLE slow;"),
    ]);
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET ecomind_test.sleep = '600'",
            db.name()
        ))
        .expect("make V2 slow for new sessions");

    let mut child = command(
        &db,
        &["migrate", "--env", "dev", "--migrations", folder.path()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let mut backend: Option<i32> = None;
    eventually("the slow migration to be running", || {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'ecomind-db' AND query LIKE '%pg_sleep%' AND state = 'active'",
                &[],
            )
            .expect("pg_stat_activity");
        backend = row.map(|r| r.get(0));
        backend.is_some()
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" RESET ecomind_test.sleep",
            db.name()
        ))
        .expect("reset");
    let server_version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .expect("version")
        .get(0);
    if server_version < 140000 {
        // Before PostgreSQL 14 the server cannot notice a dead client while a statement runs; an
        // operator ends the orphaned backend, whose pid the lock-timeout error names.
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&backend])
            .expect("terminate the orphaned backend");
    }
    // From PostgreSQL 14 on, the server notices the dead client by itself
    // (client_connection_check_interval) and rolls the migration back.
    eventually("the killed run's backend to end", || {
        admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&backend])
            .expect("pg_stat_activity")
            .is_none()
    });
    assert_eq!(applied_versions(&db), vec![1], "no history row for V2");
    let slow: bool = admin
        .query_one("SELECT to_regclass('slow') IS NOT NULL", &[])
        .expect("query")
        .get(0);
    assert!(!slow, "no part of V2 stays");

    let rerun = run(
        &db,
        &["migrate", "--env", "dev", "--migrations", folder.path()],
    );
    assert_exit(&rerun, 0);
    assert_eq!(applied_versions(&db), vec![1, 2]);
}

#[test]
fn divergence_exits_4_and_changes_nothing() {
    let base = [
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
        ("V3__c.down.sql", "DROP TABLE c;"),
    ];
    let new_v4 = [
        ("V4__d.sql", "CREATE TABLE d (id int);"),
        ("V4__d.down.sql", "DROP TABLE d;"),
    ];
    type Files<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Files, &str); 3] = [
        (
            "checksum",
            [
                &[
                    ("V1__a.sql", "CREATE TABLE a (id bigint);"),
                    ("V1__a.down.sql", "DROP TABLE a;"),
                ],
                &base[2..],
                &new_v4[..],
            ]
            .concat(),
            "V1__a.sql changed after it was applied",
        ),
        (
            "missing",
            [&base[..2], &new_v4[..]].concat(),
            "V3__c is applied but its file V3__c.sql is missing",
        ),
        (
            "out of order",
            [
                &base[..],
                &[
                    ("V2__b.sql", "CREATE TABLE b (id int);"),
                    ("V2__b.down.sql", "DROP TABLE b;"),
                ],
                &new_v4[..],
            ]
            .concat(),
            "V2__b.sql (version 2) was never applied and is older than the applied head V3",
        ),
    ];
    for (name, files, expected) in cases {
        let db = database();
        let original = Folder::new(&base);
        assert_exit(
            &run(
                &db,
                &["migrate", "--env", "dev", "--migrations", original.path()],
            ),
            0,
        );
        let changed = Folder::new(&files);
        let out = run(
            &db,
            &["migrate", "--env", "dev", "--migrations", changed.path()],
        );
        assert_exit(&out, 4);
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{name}: {stderr}");
        assert_eq!(applied_versions(&db), vec![1, 3], "{name}");
        let d_exists: bool = db
            .client()
            .query_one("SELECT to_regclass('d') IS NOT NULL", &[])
            .expect("query")
            .get(0);
        assert!(!d_exists, "{name}: V4 must not run");
        let status = run(
            &db,
            &[
                "status",
                "--env",
                "dev",
                "--check",
                "--migrations",
                changed.path(),
            ],
        );
        assert_exit(&status, 4);
    }
}

#[test]
fn a_bad_migration_folder_is_refused_before_connecting() {
    let folder = Folder::new(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let mut cmd = Command::new(BIN);
    isolate(&mut cmd);
    // Nothing listens there: the catalog must fail first.
    let out = cmd
        .env("PGHOST", "/nonexistent-ecomind-socket-dir")
        .args(["migrate", "--env", "dev", "--migrations", folder.path()])
        .output()
        .expect("runs");
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("V1__a.sql is invalid: it has no down file"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let out = Command::new(BIN).args(["migrate"]).output().expect("runs");
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let help = Command::new(BIN).arg("--help").output().expect("runs");
    let help = text(&help.stdout);
    for line in [
        "3  status --check: migrations are pending",
        "4  drift, divergence",
    ] {
        assert!(help.contains(line), "{help}");
    }
}

/// A cluster root beside the sandbox's, started only when the test says so.
fn later_cluster_root() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::env::temp_dir().join(format!("ecomind-wait-{}-{n}", std::process::id()))
}

fn wait_command(socket_dir: &Path, timeout: &str) -> Command {
    let mut cmd = Command::new(BIN);
    isolate(&mut cmd);
    cmd.env("PGHOST", socket_dir)
        .env("PGPORT", "5432")
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres")
        .args(["wait", "--env", "dev", "--timeout", timeout]);
    cmd
}

#[test]
fn wait_returns_once_a_late_server_accepts_connections() {
    let root = later_cluster_root();
    let cluster = ecomind_snapshot::Cluster::open(&root);
    let mut child = wait_command(cluster.socket_dir(), "120")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    // `wait` says it is waiting once its first attempt failed: the server is not there yet.
    let mut first_line = String::new();
    BufReader::new(child.stderr.take().expect("stderr"))
        .read_line(&mut first_line)
        .expect("read stderr");
    assert!(first_line.contains("waiting for"), "{first_line}");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still waiting"
    );

    let binaries = ecomind_snapshot::Binaries::from_env().expect("binaries");
    let started = ecomind_snapshot::Cluster::ensure_running(
        &root,
        &ecomind_snapshot::ClusterOptions {
            binaries: &binaries,
            listen: ecomind_snapshot::Listen::Socket,
            auth: ecomind_snapshot::Auth::Trust,
            durable: false,
            settings: &[],
        },
    )
    .expect("start the late server");
    let output = child.wait_with_output().expect("wait exits");
    let _ = started.destroy();
    assert_exit(&output, 0);
    assert!(text(&output.stdout).contains("accepts connections"));
}

#[test]
fn wait_gives_up_clearly_when_its_timeout_passes() {
    let root = later_cluster_root();
    let cluster = ecomind_snapshot::Cluster::open(&root);
    let out = wait_command(cluster.socket_dir(), "1")
        .output()
        .expect("runs");
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("did not accept connections within 1s"),
        "{stderr}"
    );
}

#[test]
fn verify_passes_on_a_migrated_database_and_exits_4_on_drift() {
    let db = database();
    assert_exit(&run(&db, &["migrate", "--env", "dev"]), 0);
    let clean = run(&db, &["verify", "--env", "dev"]);
    assert_exit(&clean, 0);
    assert!(text(&clean.stdout).contains("matches the 4 applied migration(s)"));

    db.client()
        .batch_execute("DROP INDEX idx_events_ts; ALTER TABLE users ADD COLUMN nickname text")
        .expect("drift by hand");
    let drift = run(&db, &["verify", "--env", "dev"]);
    assert_exit(&drift, 4);
    let out = text(&drift.stdout);
    assert!(out.contains("idx_events_ts"), "{out}");
    assert!(out.contains("nickname"), "{out}");
    let doc: serde_json::Value =
        serde_json::from_slice(&run(&db, &["verify", "--env", "dev", "--json"]).stdout)
            .expect("JSON");
    // The dropped index, the extra column, and the table whose column list changed.
    assert_eq!(
        doc["differences"].as_array().map(Vec::len),
        Some(3),
        "{doc}"
    );
}

#[test]
fn rollback_reverts_newest_first_and_migrate_reapplies() {
    let db = database();
    assert_exit(&run(&db, &["migrate", "--env", "dev"]), 0);
    let back = run(&db, &["rollback", "--env", "dev", "--steps", "2"]);
    assert_exit(&back, 0);
    let out = text(&back.stdout);
    assert!(
        out.contains("reverted V4") && out.contains("reverted V3"),
        "{out}"
    );
    assert!(out.contains("now at V2"), "{out}");
    assert_eq!(applied_versions(&db), vec![1, 2]);
    assert_exit(&run(&db, &["rollback", "--env", "dev", "--to", "0"]), 0);
    assert_eq!(applied_versions(&db), Vec::<i32>::new());
    assert_exit(&run(&db, &["migrate", "--env", "dev"]), 0);
    assert_eq!(applied_versions(&db), vec![1, 2, 3, 4]);
    let downs: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM ecomind_migration_events WHERE direction = 'down' AND outcome = 'applied'",
            &[],
        )
        .expect("events")
        .get(0);
    assert_eq!(downs, 4, "two, then the last two");
}

#[test]
fn destructive_commands_follow_the_policy_and_confirm() {
    let db = database();
    assert_exit(&run(&db, &["migrate", "--env", "dev"]), 0);
    struct Case {
        args: &'static [&'static str],
        env: &'static [(&'static str, &'static str)],
        code: i32,
        message: &'static str,
    }
    let cases = [
        Case {
            args: &["rollback", "--env", "dev", "--steps", "1"],
            env: &[("ECOMIND_DB_REQUIRE_CONFIRM", "true")],
            code: 1,
            message: "requires confirmation for this command: pass --confirm dev",
        },
        Case {
            args: &[
                "rollback",
                "--env",
                "dev",
                "--steps",
                "1",
                "--confirm",
                "prod",
            ],
            env: &[],
            code: 1,
            message: "--confirm prod does not match environment `dev`",
        },
        Case {
            args: &[
                "rollback",
                "--env",
                "dev",
                "--steps",
                "1",
                "--confirm",
                "dev",
            ],
            env: &[("ECOMIND_DB_ALLOW_ROLLBACK", "false")],
            code: 1,
            message: "does not allow rollback",
        },
        Case {
            args: &["repair", "--env", "dev", "--accept-checksum", "1"],
            env: &[],
            code: 1,
            message: "pass --confirm dev too",
        },
        Case {
            args: &["baseline", "--env", "dev"],
            env: &[("ECOMIND_DB_REQUIRE_CONFIRM", "true")],
            code: 1,
            message: "pass --confirm dev",
        },
        Case {
            args: &["rollback", "--env", "dev"],
            env: &[],
            code: 2,
            message: "--to <VERSION>|--steps <N>",
        },
    ];
    for case in cases {
        let mut cmd = command(&db, case.args);
        for (k, v) in case.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("runs");
        assert_exit(&out, case.code);
        let stderr = text(&out.stderr);
        assert!(stderr.contains(case.message), "{:?}: {stderr}", case.args);
        assert_eq!(
            applied_versions(&db),
            vec![1, 2, 3, 4],
            "{:?} changed nothing",
            case.args
        );
    }
    let confirmed = command(
        &db,
        &[
            "rollback",
            "--env",
            "dev",
            "--steps",
            "1",
            "--confirm",
            "dev",
        ],
    )
    .env("ECOMIND_DB_REQUIRE_CONFIRM", "true")
    .output()
    .expect("runs");
    assert_exit(&confirmed, 0);
    assert_eq!(applied_versions(&db), vec![1, 2, 3]);
}

#[test]
fn baseline_refuses_a_schema_that_differs_and_a_database_with_history() {
    let db = database();
    db.client()
        .batch_execute(
            "CREATE TABLE organizations (org_id varchar(100) PRIMARY KEY, name varchar(255) NOT NULL)",
        )
        .expect("a hand-made table");
    let out = run(&db, &["baseline", "--env", "dev"]);
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("organizations"), "{stderr}");
    let history: bool = db
        .client()
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .expect("query")
        .get(0);
    assert!(!history, "nothing recorded");

    let migrated = database();
    assert_exit(&run(&migrated, &["migrate", "--env", "dev"]), 0);
    let out = run(&migrated, &["baseline", "--env", "dev"]);
    assert_exit(&out, 1);
    assert!(text(&out.stderr).contains("already has migration history"));
}

#[test]
fn a_failed_run_says_what_it_applied_before_the_failure_in_text_and_json() {
    let db = database();
    let folder = Folder::new(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        ("V2__b.sql", "CREATE TABLE b (id int);\nSELECT 1 / 0;"),
        ("V2__b.down.sql", "DROP TABLE b;"),
    ]);
    let out = run(
        &db,
        &[
            "migrate",
            "--env",
            "dev",
            "--migrations",
            folder.path(),
            "--json",
        ],
    );
    assert_exit(&out, 1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["applied"][0]["version"], 1, "{doc}");
    assert_eq!(doc["applied"].as_array().map(Vec::len), Some(1), "{doc}");
    let error = doc["error"].as_str().expect("error text");
    assert!(
        error.contains("V2__b.sql") && error.contains("division by zero"),
        "{error}"
    );
    assert!(
        text(&out.stderr).contains("applied V1 a before the failure"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(applied_versions(&db), vec![1]);
}

#[test]
fn wait_gives_up_on_a_server_that_never_answers_even_without_a_connect_timeout() {
    // The kernel completes the handshake for a listener that never accepts: a black hole.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("address").port().to_string();
    let mut cmd = Command::new(BIN);
    isolate(&mut cmd);
    let mut child = cmd
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres")
        .env("PGSSLMODE", "disable")
        .env("ECOMIND_DB_CONNECT_TIMEOUT", "0")
        .args(["wait", "--env", "dev", "--timeout", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    // A generous bound only to turn a hang into a failure; wait's own timeout is 1 s.
    eventually("wait to give up by itself", || {
        child.try_wait().expect("try_wait").is_some()
    });
    let out = child.wait_with_output().expect("output");
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("did not accept connections within 1s"),
        "{stderr}"
    );
    drop(listener);
}

/// A primary and its streaming replica, for this test process.
fn primary_and_standby() -> &'static (ecomind_snapshot::Sandbox, ecomind_snapshot::Sandbox) {
    static PAIR: std::sync::OnceLock<(ecomind_snapshot::Sandbox, ecomind_snapshot::Sandbox)> =
        std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let binaries = ecomind_snapshot::Binaries::locate(
            std::env::var_os("ECOMIND_DB_BIN_DIR")
                .as_deref()
                .map(Path::new),
        )
        .expect("PostgreSQL server binaries");
        let opts = ecomind_snapshot::ClusterOptions {
            binaries: &binaries,
            listen: ecomind_snapshot::Listen::Tcp { port: 0 },
            auth: ecomind_snapshot::Auth::Trust,
            durable: false,
            settings: &[],
        };
        let primary = ecomind_snapshot::Sandbox::start(&opts).expect("the primary starts");
        let standby = primary.start_standby(&opts).expect("the standby starts");
        (primary, standby)
    })
}

/// `ecomind-db <args>` against the pair through PG* variables: `ports` lists the servers in
/// the order they are tried, on 127.0.0.1.
fn on_pair(ports: &[u16], extra: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    isolate(&mut cmd);
    let hosts = vec!["127.0.0.1"; ports.len()].join(",");
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    cmd.env("PGHOST", hosts)
        .env("PGPORT", ports.join(","))
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres");
    for (name, value) in extra {
        cmd.env(name, value);
    }
    cmd.args(args).output().expect("ecomind-db runs")
}

#[test]
fn a_standby_is_refused_before_any_lock_and_read_write_finds_the_primary() {
    let (primary, standby) = primary_and_standby();
    let (p, s) = (primary.cluster().port(), standby.cluster().port());

    // The standby alone: every write command is refused at once, before the lock, saying why.
    for args in [
        &["migrate", "--env", "dev"][..],
        &["rollback", "--env", "dev", "--steps", "1"][..],
        &["repair", "--env", "dev"][..],
        &["verify", "--env", "dev"][..],
    ] {
        let out = on_pair(&[s], &[], args);
        assert_exit(&out, 1);
        let err = text(&out.stderr);
        assert!(
            err.contains("the server is a standby (in recovery), which accepts no writes: point the environment at the primary"),
            "{args:?}: {err}"
        );
    }
    // The refusals changed nothing on the primary either: no lock is left there.
    let mut client = primary.cluster().connect("postgres").expect("primary");
    let locks: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);

    // status reads the standby and says so.
    let out = on_pair(&[s], &[], &["status", "--env", "dev"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("read from a standby (in recovery)"),
        "{}",
        text(&out.stdout)
    );
    let out = on_pair(&[s], &[], &["status", "--env", "dev", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["standby"], true);

    // The standby listed first, with read-write: the primary is migrated.
    let out = on_pair(
        &[s, p],
        &[("PGTARGETSESSIONATTRS", "read-write")],
        &["migrate", "--env", "dev"],
    );
    assert_exit(&out, 0);
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, 4);
}

#[test]
fn sigterm_during_a_long_statement_cancels_it_records_the_interrupt_and_exits_143() {
    let db = database();
    let folder = Folder::new(&[
        ("V1__quick.sql", "CREATE TABLE quick (id int);\n"),
        ("V1__quick.down.sql", "DROP TABLE quick;\n"),
        (
            "V2__slow.sql",
            "CREATE TABLE slow (id int);\nSELECT pg_sleep(600) /* ecomind-sigterm-test */;\n",
        ),
        ("V2__slow.down.sql", "DROP TABLE slow;\n"),
    ]);
    let mut child = command(
        &db,
        &["migrate", "--env", "dev", "--migrations", folder.path()],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("ecomind-db starts");
    let mut client = db.client();
    let running = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
                &[],
            )
            .expect("pg_stat_activity")
            .get(0)
    };
    eventually("the long statement to run", || {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
            panic!("migrate ended ({status}) before the long statement ran: {err}");
        }
        running(&mut client) == 1
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("ecomind-db exits");
    assert_exit(&output, 143);
    // The server-side statement was cancelled before the process exited, not left to run.
    assert_eq!(running(&mut client), 0, "the statement is gone");
    let err = text(&output.stderr);
    assert!(
        err.contains("SIGTERM received: cancelling the running statement"),
        "{err}"
    );
    assert!(
        err.contains("interrupted: V2__slow.sql was rolled back and is not applied")
            && err.contains("V1 stay applied (committed before the interrupt)"),
        "{err}"
    );
    assert_eq!(applied_versions(&db), vec![1]);
    let row = client
        .query_one(
            "SELECT outcome, detail, error FROM ecomind_migration_events \
             WHERE version = 2 AND outcome <> 'started'",
            &[],
        )
        .expect("one event for V2");
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("interrupted")
    );
    assert!(row
        .get::<_, Option<String>>(2)
        .unwrap_or_default()
        .starts_with("interrupted: "));
    // The migration lock was released.
    let locks: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
}

/// The long history written for these tests (see its README): 32 migrations as a real project
/// writes them.
fn long_history() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrate/tests/long_history")
        .canonicalize()
        .expect("the long history folder")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_long_real_world_history_migrates_verifies_rolls_back_to_zero_and_migrates_again() {
    let db = database();
    let folder = long_history();
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| (*a).to_owned())
            .chain(["--env", "dev", "--migrations", &folder].map(str::to_owned))
            .collect()
    };
    let run_with = |args: &[&str]| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&db, &args)
    };
    let all: Vec<i32> = (1..=32).collect();

    let first = run_with(&["migrate"]);
    assert_exit(&first, 0);
    assert!(
        text(&first.stdout).contains("32 migration(s) applied, now at V32"),
        "{}",
        text(&first.stdout)
    );
    assert_eq!(applied_versions(&db), all);

    let clean = run_with(&["verify"]);
    assert_exit(&clean, 0);
    assert!(
        text(&clean.stdout).contains("matches the 32 applied migration(s)"),
        "{}",
        text(&clean.stdout)
    );

    db.client()
        .batch_execute(
            "DROP INDEX categories_label_trgm;\n\
             ALTER TYPE user_role ADD VALUE 'guest';\n\
             ALTER TABLE categories ALTER COLUMN label TYPE extensions.citext;",
        )
        .expect("drift by hand");
    let drift = run_with(&["verify"]);
    assert_exit(&drift, 4);
    let out = text(&drift.stdout);
    for named in [
        "categories_label_trgm",
        "'guest'",
        "public.categories.label",
    ] {
        assert!(out.contains(named), "{named} missing from:\n{out}");
    }

    let status = run_with(&["status", "--json"]);
    assert_exit(&status, 0);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let noop: Vec<i64> = doc["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .filter(|a| a["down"] == "no-op")
        .filter_map(|a| a["version"].as_i64())
        .collect();
    assert_eq!(noop, vec![14, 28], "{doc}");

    let back = run_with(&["rollback", "--to", "0"]);
    assert_exit(&back, 0);
    let out = text(&back.stdout);
    for line in [
        "reverted V28 audit_history_start (",
        "reverted V14 seed_house_organization (",
    ] {
        let found = out
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_default();
        assert!(found.ends_with(", no-op down)"), "{line}… in:\n{out}");
    }
    assert_eq!(applied_versions(&db), Vec::<i32>::new());
    let left: i64 = db
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'public' AND c.relname NOT IN ('refinery_schema_history', 'ecomind_migration_events') \
                       AND c.relname NOT LIKE 'refinery_schema_history%' AND c.relname NOT LIKE 'ecomind_migration_events%') \
                  + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql') \
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = 'extensions')",
            &[],
        )
        .expect("what is left")
        .get(0);
    assert_eq!(left, 0, "rollback to 0 leaves no object of the history");

    assert_exit(&run_with(&["migrate"]), 0);
    assert_eq!(applied_versions(&db), all);
    let again = run_with(&["verify"]);
    assert_exit(&again, 0);
}

#[test]
fn a_migrate_killed_between_statements_outside_a_transaction_is_named_until_repair_closes_it() {
    let db = database();
    let folder = Folder::new(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        (
            "V2__indexes.sql",
            "-- ecomind:no-transaction\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id ON a (id);\n\
             SELECT pg_advisory_lock(424242);\n\
             SELECT pg_advisory_unlock(424242);\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id_desc ON a (id DESC);\n",
        ),
        (
            "V2__indexes.down.sql",
            "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS a_id_desc;\nDROP INDEX CONCURRENTLY IF EXISTS a_id;\n",
        ),
    ]);
    let migrate_args = ["migrate", "--env", "dev", "--migrations", folder.path()];
    // The test holds the advisory lock that V2's second statement waits for: the run is
    // between statement 1 (done) and statement 3 when it is killed.
    let mut holder = db.client();
    holder
        .batch_execute("SELECT pg_advisory_lock(424242)")
        .expect("hold the lock");
    let mut child = command(&db, &migrate_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut admin = db.client();
    let mut backend: Option<i32> = None;
    eventually("V2's second statement to wait for the test's lock", || {
        backend = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'ecomind-db' AND wait_event_type = 'Lock' \
                 AND query LIKE '%pg_advisory_lock(424242)%'",
                &[],
            )
            .expect("pg_stat_activity")
            .map(|r| r.get(0));
        backend.is_some()
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // PostgreSQL 14+ notices the dead client while it waits; 13 when the statement returns.
    holder
        .batch_execute("SELECT pg_advisory_unlock(424242)")
        .expect("release the lock");
    eventually("the killed run's backend to end", || {
        admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&backend])
            .expect("pg_stat_activity")
            .is_none()
    });
    assert_eq!(applied_versions(&db), vec![1]);

    let status = run(
        &db,
        &[
            "status",
            "--env",
            "dev",
            "--check",
            "--migrations",
            folder.path(),
        ],
    );
    assert_exit(&status, 4);
    let out = text(&status.stdout);
    for part in [
        "unfinished attempt V2 indexes (up) started ",
        "statement(s) 1 to 1 of 4 completed and stay applied; statement 2 was running when it stopped",
        "run `repair` to close the attempt",
        "needs attention",
    ] {
        assert!(out.contains(part), "{part} missing from:\n{out}");
    }
    let doc: serde_json::Value = serde_json::from_slice(
        &run(
            &db,
            &[
                "status",
                "--env",
                "dev",
                "--json",
                "--migrations",
                folder.path(),
            ],
        )
        .stdout,
    )
    .expect("JSON");
    let attempt = &doc["unfinished"][0];
    assert_eq!(attempt["version"], 2, "{doc}");
    assert_eq!(attempt["statements_done"], 1, "{doc}");
    assert_eq!(attempt["statements_total"], 4, "{doc}");
    assert_eq!(attempt["transactional"], false, "{doc}");
    assert_eq!(attempt["running"], false, "{doc}");
    let (outcome, os_user, host, done): (String, String, String, i32) = admin
        .query_one(
            "SELECT outcome, os_user, client_host, statements_done FROM ecomind_migration_events \
             WHERE version = 2 AND direction = 'up' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .expect("the event log holds the attempt");
    assert_eq!((outcome.as_str(), done), ("started", 1));
    assert!(!os_user.is_empty() && !host.is_empty());
    assert!(out.contains(&format!("by {os_user}@{host}")), "{out}");

    // migrate refuses to run past it, and says what to do.
    let refused = run(&db, &migrate_args);
    assert_exit(&refused, 4);
    let err = text(&refused.stderr);
    assert!(err.contains("an earlier attempt never finished"), "{err}");
    assert!(
        err.contains("run `ecomind-db repair` to close the attempt"),
        "{err}"
    );
    assert_eq!(applied_versions(&db), vec![1]);

    // V2 is safe to rerun (IF NOT EXISTS): repair closes the attempt, migrate finishes V2.
    let repaired = run(
        &db,
        &["repair", "--env", "dev", "--migrations", folder.path()],
    );
    assert_exit(&repaired, 0);
    assert!(text(&repaired.stdout).contains("closed unfinished attempt V2 indexes (up)"));
    assert_exit(&run(&db, &migrate_args), 0);
    assert_eq!(applied_versions(&db), vec![1, 2]);
    assert_exit(
        &run(
            &db,
            &[
                "status",
                "--env",
                "dev",
                "--check",
                "--migrations",
                folder.path(),
            ],
        ),
        0,
    );
}

#[test]
fn a_non_transactional_migration_whose_first_statement_fails_applied_nothing_and_exits_1() {
    let db = database();
    let folder = Folder::new(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V1__a.down.sql", "DROP TABLE a;"),
        (
            "V2__index.sql",
            "-- ecomind:no-transaction\nCREATE INDEX CONCURRENTLY a_missing ON a (missing_column);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n",
        ),
        (
            "V2__index.down.sql",
            "-- ecomind:no-transaction\nDROP INDEX CONCURRENTLY a_id;\nDROP INDEX CONCURRENTLY a_missing;\n",
        ),
    ]);
    let failed = run(
        &db,
        &["migrate", "--env", "dev", "--migrations", folder.path()],
    );
    assert_exit(&failed, 1);
    let err = text(&failed.stderr);
    assert!(
        err.contains("migration V2__index.sql runs outside a transaction and its first statement failed, so nothing was applied"),
        "{err}"
    );
    assert!(err.contains("missing_column"), "{err}");
    assert_eq!(applied_versions(&db), vec![1]);
    // Nothing is left to repair, and the attempt is closed in the event log.
    let status = run(
        &db,
        &[
            "status",
            "--env",
            "dev",
            "--check",
            "--migrations",
            folder.path(),
        ],
    );
    assert_exit(&status, 3);
}

/// Every relation, sequence, function and type in the database, to prove nothing changed.
fn catalog_snapshot(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT c.relkind::text || ' ' || n.nspname || '.' || c.relname \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
             UNION ALL SELECT 'function ' || p.proname FROM pg_proc p \
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' \
             ORDER BY 1",
            &[],
        )
        .expect("catalog")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn migrate_sql_prints_what_would_run_and_changes_nothing() {
    let db = database();
    let before = catalog_snapshot(&db);
    let output = run(&db, &["migrate", "--env", "dev", "--sql"]);
    assert_exit(&output, 0);
    let sql = text(&output.stdout);
    assert_eq!(
        catalog_snapshot(&db),
        before,
        "migrate --sql changed the database"
    );
    assert!(before.is_empty(), "{before:?}");
    // No lock is left behind either.
    let locks: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);

    for version in 1..=4 {
        assert!(
            sql.contains(&format!(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ({version}, "
            )),
            "no history write of V{version}:\n{sql}"
        );
    }
    // Each attempt's start row, then the row that ends it.
    assert_eq!(
        sql.matches("INSERT INTO ecomind_migration_events").count(),
        8
    );
    assert!(sql.contains("CREATE TABLE IF NOT EXISTS refinery_schema_history"));
    assert!(
        sql.contains("SELECT pg_try_advisory_lock(") && sql.contains("SELECT pg_advisory_unlock(")
    );
    // Each migration commits its start row on its own (without waiting for the WAL flush);
    // V1, V3, V4 then run in a transaction; V2 outside one, then recorded in its own.
    assert_eq!(sql.matches("\nBEGIN;\n").count(), 8, "{sql}");
    assert_eq!(sql.matches("\nCOMMIT;\n").count(), 8, "{sql}");
    assert_eq!(
        sql.matches("\nSET LOCAL synchronous_commit = off;\n")
            .count(),
        4,
        "{sql}"
    );
    let v2 = &sql[sql.find("-- V2__performance_indexes.sql").unwrap()..];
    assert!(
        v2.starts_with("-- V2__performance_indexes.sql: outside a transaction")
            && v2.contains("SET lock_timeout = 0;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_org_id_ts"),
        "{v2}"
    );

    // It is exactly what a run does: sent statement by statement to another empty database, it
    // leaves the schema and history a real migrate leaves.
    let replayed = database();
    let mut client = replayed.client();
    for statement in ecomind_migrate::split::statements(&sql).expect("the SQL splits") {
        client
            .batch_execute(statement.sql)
            .unwrap_or_else(|e| panic!("line {}: {e}: {}", statement.line, statement.sql));
    }
    assert_exit(&run(&db, &["migrate", "--env", "dev"]), 0);
    let fingerprint = |db: &TestDb| ecomind_migrate::fingerprint(&mut db.client()).unwrap();
    assert!(ecomind_migrate::diff(&fingerprint(&db), &fingerprint(&replayed)).is_empty());
    assert_eq!(applied_versions(&replayed), [1, 2, 3, 4]);
    let checksums = |db: &TestDb| -> Vec<String> {
        db.client()
            .query(
                "SELECT checksum FROM refinery_schema_history ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(checksums(&db), checksums(&replayed));

    // On an up-to-date database there is nothing to run.
    let output = run(&db, &["migrate", "--env", "dev", "--sql"]);
    assert_exit(&output, 0);
    let sql = text(&output.stdout);
    assert!(
        sql.contains("0 migration(s)") && sql.contains("-- Nothing to run: "),
        "{sql}"
    );
    // Nor does a real run on it take the lock: the preview shows no lock either.
    assert!(!sql.contains("CREATE TABLE"), "{sql}");
    assert!(!sql.contains("pg_try_advisory_lock"), "{sql}");
}

/// `out` with what varies between runs masked: the server's socket folder and port, and every
/// `applied_on` time the JSON document carries.
fn masked(db: &TestDb, out: &[u8], json: Option<&serde_json::Value>) -> String {
    let mut text = text(out);
    let env = db.pg_env();
    // The database name first: it may contain the port's digits.
    for (key, name) in [
        ("PGDATABASE", "[database]"),
        ("PGHOST", "[socket]"),
        ("PGPORT", "[port]"),
    ] {
        if let Some((_, value)) = env.iter().find(|(k, _)| k == key) {
            text = text.replace(value.as_str(), name);
        }
    }
    let times = json
        .and_then(|j| j.get("applied"))
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("applied_on").and_then(|t| t.as_str()));
    for time in times {
        text = text.replace(time, "[time]");
    }
    text
}

/// `status`, text and JSON, before and after migrate: a change of output is a reviewed diff.
#[test]
fn status_output_is_as_reviewed() {
    let db = database();
    let snapshot = |name: &str, db: &TestDb| {
        let json_out = run(db, &["status", "--env", "dev", "--json"]);
        assert_exit(&json_out, 0);
        let json: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("json");
        let text_out = run(db, &["status", "--env", "dev"]);
        assert_exit(&text_out, 0);
        insta::assert_snapshot!(
            format!("{name}_text"),
            masked(db, &text_out.stdout, Some(&json))
        );
        insta::assert_snapshot!(
            format!("{name}_json"),
            masked(db, &json_out.stdout, Some(&json))
        );
    };
    snapshot("status_pending", &db);
    assert_exit(&run(&db, &["migrate", "--env", "dev"]), 0);
    snapshot("status_up_to_date", &db);
}
