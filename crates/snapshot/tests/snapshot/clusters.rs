//! Integration tests of ecomind-snapshot against real PostgreSQL servers that the tests start themselves.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecomind_snapshot::{
    Auth, Binaries, Cluster, ClusterOptions, Error, Listen, Sandbox, SecretString,
};

/// Set in the environment of the child process that `sandbox_is_removed_when_its_process_is_killed` starts,
/// which then holds a sandbox until killed instead of testing.
const HOLDER_ENV: &str = "ECOMIND_SNAPSHOT_TEST_HOLDER";

/// The binaries under test: `ECOMIND_DB_BIN_DIR` when set (CI's other major versions), else the search.
fn binaries() -> Binaries {
    Binaries::from_env().expect("PostgreSQL server binaries")
}

fn throwaway(binaries: &Binaries) -> ClusterOptions<'_> {
    ClusterOptions {
        binaries,
        listen: Listen::Socket,
        auth: Auth::Trust,
        durable: false,
        settings: &[],
    }
}

/// Whether a live (not zombie) process has this pid.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// Polls `condition` until it holds, failing the test after a generous deadline.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn select_one(cluster: &Cluster, dbname: &str) -> i32 {
    let mut client = cluster.connect(dbname).expect("connect");
    client.query_one("SELECT 1", &[]).expect("select").get(0)
}

/// A cluster folder in a fresh temporary folder that the server user may enter; with
/// `long_path`, so long that its socket cannot live inside it.
fn cluster_root(long_path: bool) -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::Builder::new()
        .prefix("ecomind-snapshot-test-")
        .tempdir()
        .expect("tempdir");
    // When root, the server user must be able to traverse it.
    std::fs::set_permissions(
        parent.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    let name = if long_path {
        "cluster-".repeat(12)
    } else {
        "cluster".to_owned()
    };
    let root = parent.path().join(name);
    (parent, root)
}

#[test]
fn binaries_are_located_and_a_wrong_bin_dir_is_refused() {
    let found = binaries();
    assert!(found.dir().join("initdb").is_file());
    assert!(found.major() >= 13, "major {}", found.major());
    assert_eq!(found.tool("no-such-tool"), None);

    let error = Binaries::locate(Some(Path::new("/nonexistent/bin"))).expect_err("bad dir");
    let message = error.to_string();
    assert!(matches!(error, Error::BinariesNotFound { .. }), "{message}");
    assert!(message.contains("/nonexistent/bin"), "{message}");
    assert!(
        message.contains("apt-get install postgresql-15"),
        "{message}"
    );
}

#[test]
fn sandbox_accepts_connections_and_is_gone_after_drop() {
    // A leftover of a process that died along with its reaper: swept when a sandbox starts.
    let leftover = tempfile::Builder::new()
        .prefix("ecomind-sandbox-")
        .tempdir()
        .expect("tempdir")
        .keep();
    std::fs::write(leftover.join("owner"), "4294967295 1\n4294967294 1\n").expect("owner file");

    let binaries = binaries();
    let sandbox = Sandbox::start(&throwaway(&binaries)).expect("sandbox");
    assert!(
        !leftover.exists(),
        "leftover {} not swept",
        leftover.display()
    );
    let cluster = sandbox.cluster();
    assert!(cluster.is_running());
    assert_eq!(cluster.superuser(), "postgres");
    assert_eq!(select_one(cluster, "postgres"), 1);
    let mut client = cluster.connect("postgres").expect("connect");
    let fsync: String = client.query_one("SHOW fsync", &[]).expect("show").get(0);
    assert_eq!(fsync, "off");
    drop(client);

    let root = cluster.root().to_path_buf();
    let pid = cluster.server_pid().expect("server pid");
    drop(sandbox);
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(!alive(pid), "server {pid} still running");
}

/// The test runs this test binary again, with only itself selected and `HOLDER_ENV` set: that
/// child holds a sandbox until it is killed with SIGKILL, and the sandbox must go all the same.
#[test]
fn sandbox_is_removed_when_its_process_is_killed() {
    if std::env::var_os(HOLDER_ENV).is_some() {
        hold_a_sandbox_until_killed();
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "clusters::sandbox_is_removed_when_its_process_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start child");
    let stdout = child.stdout.take().expect("child stdout");
    let (mut root, mut pid) = (None, None);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        // libtest may print "test <name> ... " in front of the first line.
        if let Some((_, value)) = line.split_once("sandbox-root=") {
            root = Some(PathBuf::from(value));
        } else if let Some((_, value)) = line.split_once("server-pid=") {
            pid = Some(value.parse::<u32>().expect("pid"));
            break;
        }
    }
    let (root, pid) = (
        root.expect("child printed its sandbox"),
        pid.expect("child printed the server pid"),
    );
    assert!(root.exists() && alive(pid));

    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    wait_until("the orphaned server has stopped", || !alive(pid));
    wait_until("the orphaned sandbox folder is removed", || !root.exists());
}

/// The child's side of `sandbox_is_removed_when_its_process_is_killed`: starts a sandbox, says
/// where it is, and blocks until the parent kills this process.
fn hold_a_sandbox_until_killed() -> ! {
    let binaries = binaries();
    let sandbox = Sandbox::start(&throwaway(&binaries)).expect("sandbox");
    println!("sandbox-root={}", sandbox.cluster().root().display());
    println!(
        "server-pid={}",
        sandbox.cluster().server_pid().expect("server pid")
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    panic!("the parent closed stdin instead of killing this process");
}

#[test]
fn cluster_starts_once_for_concurrent_callers_restarts_with_its_data_and_is_destroyed() {
    let binaries = binaries();
    let (_parent, root) = cluster_root(true);

    // Two callers at once: one initdb, one server, both get it.
    let clusters: Vec<Cluster> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    Cluster::ensure_running(&root, &throwaway(&binaries)).expect("ensure_running")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("thread"))
            .collect()
    });
    let pid = clusters[0].server_pid().expect("running");
    assert_eq!(clusters[1].server_pid(), Some(pid));
    assert_eq!(clusters[0].socket_dir(), clusters[1].socket_dir());
    assert!(
        !clusters[0].socket_dir().starts_with(&root),
        "socket path would be too long"
    );

    // Reuse: a third call changes nothing.
    let cluster = Cluster::ensure_running(&root, &throwaway(&binaries)).expect("reuse");
    assert_eq!(cluster.server_pid(), Some(pid));
    cluster.ensure_database("kept").expect("create database");
    cluster
        .ensure_database("kept")
        .expect("create database again");
    cluster
        .connect("kept")
        .expect("connect")
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('still here')")
        .expect("write");

    // Stop, then start again: the data is kept.
    let opened = Cluster::open(&root);
    opened.stop().expect("stop");
    assert!(!opened.is_running() && !alive(pid));
    opened.stop().expect("stopping a stopped cluster is fine");

    // A postmaster.pid naming a live process that is not this cluster's server (a pid
    // reused after a crash) must not block the start.
    let pid_file = opened.data_dir().join("postmaster.pid");
    std::fs::write(
        &pid_file,
        format!("{}\n{}\n", std::process::id(), opened.data_dir().display()),
    )
    .expect("fake pid file");
    let restarted = Cluster::ensure_running(&root, &throwaway(&binaries)).expect("restart");
    assert!(restarted.is_running());
    let value: String = restarted
        .connect("kept")
        .expect("connect")
        .query_one("SELECT v FROM t", &[])
        .expect("read")
        .get(0);
    assert_eq!(value, "still here");

    // A crash: the server is killed and leaves its pid file (and, for a moment, its
    // children) behind. The next call starts it again.
    let killed = restarted.server_pid().expect("running");
    let raw = rustix::process::Pid::from_raw(i32::try_from(killed).expect("pid")).expect("pid");
    rustix::process::kill_process(raw, rustix::process::Signal::KILL).expect("SIGKILL the server");
    wait_until("the killed server is gone", || !alive(killed));
    assert!(pid_file.exists());
    let recovered =
        Cluster::ensure_running(&root, &throwaway(&binaries)).expect("start after a crash");
    assert_ne!(recovered.server_pid(), Some(killed));
    assert_eq!(select_one(&recovered, "kept"), 1);

    // A setting the server rejects: the error names the tool and quotes the server log.
    recovered.stop().expect("stop");
    let bad = ClusterOptions {
        settings: &[("no_such_setting", "1")],
        ..throwaway(&binaries)
    };
    let error = Cluster::ensure_running(&root, &bad).expect_err("bad setting accepted");
    let message = error.to_string();
    assert!(
        message.contains("pg_ctl start") && message.contains("no_such_setting"),
        "{message}"
    );
    let restarted = Cluster::ensure_running(&root, &throwaway(&binaries))
        .expect("settings are rewritten at start");

    let socket_dir = restarted.socket_dir().to_path_buf();
    let pid = restarted.server_pid().expect("running");
    Cluster::open(&root).destroy().expect("destroy");
    assert!(!root.exists() && !socket_dir.exists() && !alive(pid));
    Cluster::open(&root)
        .destroy()
        .expect("destroying an absent cluster is fine");
}

#[test]
fn password_cluster_over_tcp_rejects_a_wrong_password_and_accepts_the_right_one() {
    let binaries = binaries();
    let (_parent, root) = cluster_root(false);
    let password = SecretString::from("s3cret 'with' quotes");
    let opts = ClusterOptions {
        binaries: &binaries,
        listen: Listen::Tcp { port: 0 },
        auth: Auth::Password(password.clone()),
        durable: false,
        settings: &[("work_mem", "8MB")],
    };
    assert!(
        !format!("{opts:?}").contains("s3cret"),
        "password in Debug output"
    );
    let cluster = Cluster::ensure_running(&root, &opts).expect("ensure_running");
    assert!(
        !format!("{cluster:?}").contains("s3cret"),
        "password in Debug output"
    );
    assert_ne!(cluster.port(), 0);
    assert!(
        !root.join("initdb.pw").exists(),
        "password file left behind"
    );

    let tcp = |secret: &str| {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(cluster.port())
            .user("postgres")
            .dbname("postgres")
            .password(secret)
            .connect(postgres::NoTls)
    };
    let Err(error) = tcp("wrong") else {
        panic!("wrong password accepted");
    };
    let code = error.as_db_error().map(|db| db.code().clone());
    assert_eq!(
        code,
        Some(postgres::error::SqlState::INVALID_PASSWORD),
        "{error:?}"
    );
    let mut client = tcp("s3cret 'with' quotes").expect("right password");
    let work_mem: String = client.query_one("SHOW work_mem", &[]).expect("show").get(0);
    assert_eq!(work_mem, "8MB");

    // Over the socket too: without the password it is refused, with it accepted.
    let opened = Cluster::open(&root);
    assert!(
        opened.connect("postgres").is_err(),
        "connected without a password"
    );
    assert_eq!(select_one(&opened.with_password(password), "postgres"), 1);
    cluster
        .ensure_database("app")
        .expect("ensure_database with password");
    if binaries.tool("psql").is_some() {
        // Client programs get the password through the environment.
        let out = cluster
            .run_client(
                &binaries,
                "psql",
                ["-Atc", "SELECT current_database()"],
                "app",
            )
            .expect("psql");
        assert_eq!(out.trim(), "app");
    }
    let missing = cluster.run_client(&binaries, "no-such-tool", ["--version"], "app");
    assert!(
        matches!(missing, Err(Error::ToolMissing { .. })),
        "{missing:?}"
    );

    // The authentication method is fixed at creation.
    let trust = Cluster::ensure_running(&root, &throwaway(&binaries)).expect_err("auth changed");
    assert!(matches!(trust, Error::AuthMismatch { .. }), "{trust}");

    Cluster::open(&root).destroy().expect("destroy");
}

#[test]
fn folders_that_are_not_clusters_or_not_reachable_are_refused() {
    let folder = tempfile::tempdir().expect("tempdir");
    let precious = folder.path().join("precious.txt");
    std::fs::write(&precious, "keep me").expect("write");
    let error = Cluster::open(folder.path())
        .destroy()
        .expect_err("destroyed a folder that is not a cluster");
    assert!(matches!(error, Error::NotACluster { .. }), "{error}");
    assert!(precious.exists());

    if rustix::process::geteuid().is_root() {
        // A folder that only root may enter: the `postgres` user cannot reach a cluster in it.
        std::fs::set_permissions(
            folder.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        let binaries = binaries();
        let error = Cluster::ensure_running(&folder.path().join("cluster"), &throwaway(&binaries))
            .expect_err("server user cannot reach this folder");
        assert!(
            matches!(&error, Error::NotTraversable { path, .. } if path == folder.path()),
            "{error}"
        );
    }
}

#[test]
fn testkit_gives_each_test_its_own_database() {
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|n| {
                scope.spawn(move || {
                    let db = ecomind_testkit::database();
                    let mut client = db.client();
                    client
                        .batch_execute(&format!(
                            "CREATE TABLE mine (n int); INSERT INTO mine VALUES ({n})"
                        ))
                        .expect("same table name in every database");
                    let rows: Vec<i32> = client
                        .query("SELECT n FROM mine", &[])
                        .expect("read")
                        .iter()
                        .map(|row| row.get(0))
                        .collect();
                    assert_eq!(rows, vec![n]);
                    let env = db.pg_env();
                    assert!(env.contains(&("PGDATABASE".to_owned(), db.name().to_owned())));
                    assert!(db.conninfo().contains(&format!("dbname={}", db.name())));
                    db.name().to_owned()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("thread"))
            .collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn a_cluster_the_server_user_cannot_reach_is_placed_under_var_tmp() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let preferred = home.path().join("repo/.dev-db");
    let placed = ecomind_snapshot::placement(&preferred).expect("placement");
    let root = rustix::process::geteuid().is_root();
    if root {
        // The server runs as `postgres`, which cannot enter a 0700 folder owned by root.
        assert!(
            placed.starts_with("/var/tmp/ecomind-db"),
            "{}",
            placed.display()
        );
        assert_ne!(placed, preferred);
        assert_eq!(
            placed,
            ecomind_snapshot::placement(&preferred).expect("again"),
            "stable"
        );
    } else {
        assert_eq!(placed, preferred, "the server runs as us: no need to move");
    }
    let open = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let reachable = open.path().join(".dev-db");
    assert_eq!(
        ecomind_snapshot::placement(&reachable).expect("placement"),
        reachable
    );
}
