//! Secrets and bad input through the `ecomind-db` binary, against a password-protected sandbox
//! cluster on 127.0.0.1: a recognisable password, given through each of its sources, appears in
//! no output, JSON document, query, argv, history row or server log, while the commands really
//! succeed; and every bad input fails with a clear message and its documented exit code, changing
//! nothing in the database.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ecomind_migrate::{EVENT_TABLE, HISTORY_TABLE};
use ecomind_snapshot::Sandbox;
use ecomind_testkit::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_ecomind-db");

/// The sandbox superuser's password: recognisable, and with every character a URL must encode.
const PASSWORD: &str = "Pw-LEAK-4f9c2e7b-s3cret/@:% #?&=+x";
/// A password the server refuses, as recognisable.
const WRONG_PASSWORD: &str = "Pw-WRONG-91d3a6c0-n0pe/@:% x";
/// Parts of the two passwords that any leak, whole, encoded or cut at a special character, shows.
const MARKERS: [&str; 2] = ["4f9c2e7b", "91d3a6c0"];
/// The environment every test writes into its environments folder.
const ENV: &str = "leak";
/// The migration lock key of the engine: the first eight bytes of "ecomind-db".
const LOCK_KEY: i64 = i64::from_be_bytes(*b"ecomind-");
/// A process of the binary that runs longer than this hangs: the test fails instead of waiting.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The sandbox, its databases and the folders the binary reads.
// ---------------------------------------------------------------------------------------------

/// The password sandbox of this test process (testkit's): scram-sha-256 with [`PASSWORD`], TCP on
/// 127.0.0.1, no TLS.
fn sandbox() -> &'static Sandbox {
    ecomind_testkit::password_sandbox(PASSWORD)
}

/// A fresh database in the password sandbox, dropped with the value.
struct Db {
    db: TestDb,
    name: String,
}

impl Db {
    fn new() -> Db {
        let db = ecomind_testkit::database_in(sandbox());
        let name = db.name().to_owned();
        Db { db, name }
    }

    /// A superuser connection over the unix socket (the test's own, not the binary's).
    fn client(&self) -> postgres::Client {
        self.db.client()
    }

    fn table_exists(client: &mut postgres::Client, table: &str) -> bool {
        client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .expect("to_regclass")
            .get(0)
    }

    /// The applied versions as `Some([..])`, or `None` while there is no history table, as text.
    fn history(&self) -> String {
        let mut client = self.client();
        if !Db::table_exists(&mut client, HISTORY_TABLE) {
            return "None".to_owned();
        }
        let versions: Vec<i32> = client
            .query(
                &format!("SELECT version FROM {HISTORY_TABLE} ORDER BY version"),
                &[],
            )
            .expect("history")
            .iter()
            .map(|row| row.get(0))
            .collect();
        format!("Some({versions:?})")
    }

    fn has_table(&self, table: &str) -> bool {
        Db::table_exists(&mut self.client(), table)
    }

    /// Every row the engine recorded (history and event log), as JSON text.
    fn recorded(&self) -> String {
        let mut client = self.client();
        let mut text = String::new();
        for table in [HISTORY_TABLE, EVENT_TABLE] {
            if Db::table_exists(&mut client, table) {
                let rows: Option<String> = client
                    .query_one(
                        &format!("SELECT string_agg(row_to_json(t)::text, E'\\n') FROM {table} t"),
                        &[],
                    )
                    .expect("recorded rows")
                    .get(0);
                text.push_str(&rows.unwrap_or_default());
                text.push('\n');
            }
        }
        text
    }
}

/// The environment file that points at `dbname` in the sandbox over TCP, without a password.
fn environment_file(dbname: &str) -> String {
    format!(
        "[database]
target = \"server\"
host = \"127.0.0.1\"
port = {port}
dbname = \"{dbname}\"
user = \"postgres\"
connect_timeout = \"10s\"

[policy]
lock_wait = \"30s\"
lock_timeout = \"0\"
statement_timeout = \"0\"
allow_rollback = true
require_confirm = false
",
        port = sandbox().cluster().port()
    )
}

/// A test's folder: `environments/leak.toml`, the secret files, migration folders; the working
/// folder of every process the test runs.
struct Workspace {
    dir: tempfile::TempDir,
    dbname: String,
}

impl Workspace {
    fn new(db: &Db) -> Workspace {
        let ws = Workspace {
            dir: tempfile::Builder::new()
                .prefix("ecomind-secrets-")
                .tempdir()
                .expect("temp folder"),
            dbname: db.name.clone(),
        };
        ws.write(
            &format!("environments/{ENV}.toml"),
            &environment_file(&db.name),
            0o644,
        );
        ws.write("secrets/password", &format!("{PASSWORD}\n"), 0o600);
        ws.write("secrets/wrong", &format!("{WRONG_PASSWORD}\n"), 0o600);
        ws
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("folder");
        fs::write(&path, contents).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// A migrations folder `name` made of `(file, sql)` pairs.
    fn migrations(&self, name: &str, files: &[(&str, &str)]) -> String {
        for (file, sql) in files {
            self.write(&format!("{name}/{file}"), sql, 0o644);
        }
        self.path(name).display().to_string()
    }

    fn url(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            percent_encode(password),
            sandbox().cluster().port(),
            self.dbname
        )
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Everything that must never be shown: both passwords, raw and percent-encoded, and their markers.
fn secrets() -> Vec<String> {
    let mut all = Vec::new();
    for password in [PASSWORD, WRONG_PASSWORD] {
        all.push(password.to_owned());
        all.push(percent_encode(password));
    }
    all.extend(MARKERS.iter().map(|m| (*m).to_owned()));
    all
}

/// A port nothing listens on: bound by us, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

// ---------------------------------------------------------------------------------------------
// Running the binary.
// ---------------------------------------------------------------------------------------------

/// One command line of the binary, with its environment; nothing of ours is inherited.
#[derive(Clone)]
struct Invocation {
    args: Vec<String>,
    vars: Vec<(String, String)>,
    cwd: PathBuf,
}

impl Invocation {
    /// `ecomind-db <args>` in `ws`, finding its environments through `ECOMIND_DB_ENVIRONMENTS`.
    fn new(ws: &Workspace, args: &[&str]) -> Invocation {
        Invocation {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            vars: vec![(
                "ECOMIND_DB_ENVIRONMENTS".to_owned(),
                ws.path("environments").display().to_string(),
            )],
            cwd: ws.dir.path().to_path_buf(),
        }
    }

    fn arg(mut self, arg: impl Into<String>) -> Invocation {
        self.args.push(arg.into());
        self
    }

    fn var(mut self, key: &str, value: impl Into<String>) -> Invocation {
        self.vars.push((key.to_owned(), value.into()));
        self
    }

    fn label(&self) -> String {
        let vars: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        format!("`ecomind-db {}` with {vars:?}", self.args.join(" "))
    }

    fn spawn(&self) -> Child {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PG") || key.starts_with("ECOMIND_DB_") || key == "DATABASE_URL" {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ecomind-db starts")
    }

    fn run(&self) -> Run {
        finish(self.spawn(), self.label())
    }
}

/// What one process of the binary did.
struct Run {
    label: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Waits for `child` (at most [`PROCESS_DEADLINE`], then kills it) and collects its output.
fn finish(mut child: Child, label: String) -> Run {
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + PROCESS_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label} did not finish within {PROCESS_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        label,
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Polls `condition` until it holds, or fails after a generous deadline.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// What a test found: failures, and every text it saw, scanned for secrets at the end.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    seen: Vec<(String, String)>,
}

impl Report {
    fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }

    fn saw(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.seen.push((what.into(), text.into()));
    }

    fn merge(&mut self, other: Report) {
        self.failures.extend(other.failures);
        self.seen.extend(other.seen);
    }

    /// Records `run` and checks its exit code and that stdout and stderr hold the given parts.
    fn run(&mut self, run: &Run, exit: i32, stdout: &[&str], stderr: &[&str]) {
        self.saw(format!("{} stdout", run.label), run.stdout.clone());
        self.saw(format!("{} stderr", run.label), run.stderr.clone());
        if run.code != exit {
            self.fail(format!(
                "{}: exit {} instead of {exit}\n  stdout: {}\n  stderr: {}",
                run.label, run.code, run.stdout, run.stderr
            ));
            return;
        }
        for part in stdout {
            if !run.stdout.contains(part) {
                self.fail(format!(
                    "{}: stdout lacks {part:?}:\n{}",
                    run.label, run.stdout
                ));
            }
        }
        for part in stderr {
            if !run.stderr.contains(part) {
                self.fail(format!(
                    "{}: stderr lacks {part:?}:\n{}",
                    run.label, run.stderr
                ));
            }
        }
        if run.label.contains(" --json") && exit != 2 {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&run.stdout) {
                self.fail(format!(
                    "{}: stdout is not one JSON document ({e}):\n{}",
                    run.label, run.stdout
                ));
            }
        }
    }

    /// Checks that a failed `run` reported one clear error on stderr: `error: ` and a lowercase
    /// message without a trailing full stop that does not repeat any part of itself; under
    /// `--json`, also a JSON document on stdout with the message and the exit code.
    fn error_style(&mut self, run: &Run) {
        let Some(line) = run.stderr.lines().find(|l| l.starts_with("error: ")) else {
            self.fail(format!("{}: no `error: ` line:\n{}", run.label, run.stderr));
            return;
        };
        let message = &line["error: ".len()..];
        // The whole report: a message may continue on indented lines (a list of problems).
        let start = run.stderr.find(line).unwrap_or(0) + "error: ".len();
        let whole = run.stderr[start..].trim_end();
        if message.starts_with(char::is_uppercase) || message.ends_with('.') {
            self.fail(format!(
                "{}: not house style (lowercase, no full stop): {message}",
                run.label
            ));
        }
        let mut parts = BTreeSet::new();
        for part in message.split(": ").filter(|p| p.len() >= 12) {
            if !parts.insert(part) {
                self.fail(format!(
                    "{}: the message says {part:?} twice: {message}",
                    run.label
                ));
            }
        }
        if run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count()
            > 1
        {
            self.fail(format!(
                "{}: more than one error reported:\n{}",
                run.label, run.stderr
            ));
        }
        if run.label.contains(" --json") && run.code != 2 {
            match serde_json::from_str::<serde_json::Value>(&run.stdout) {
                Ok(doc) => {
                    if doc["exit_code"] != run.code {
                        self.fail(format!(
                            "{}: JSON exit_code {} but the process exited {}",
                            run.label, doc["exit_code"], run.code
                        ));
                    }
                    if doc["error"].as_str() != Some(whole) {
                        self.fail(format!(
                            "{}: JSON error {} differs from stderr's {whole:?}",
                            run.label, doc["error"]
                        ));
                    }
                }
                Err(e) => self.fail(format!(
                    "{}: no JSON error document ({e}):\n{}",
                    run.label, run.stdout
                )),
            }
        }
    }

    /// Fails the test with every failure, and with every place a secret showed up.
    fn finish(mut self) {
        let secrets = secrets();
        for (what, text) in &self.seen {
            for secret in &secrets {
                if text.contains(secret.as_str()) {
                    self.failures
                        .push(format!("LEAK of {secret:?} in {what}:\n{text}"));
                }
            }
        }
        assert!(
            self.failures.is_empty(),
            "{} failure(s):\n\n{}",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The password's sources.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    EcomindPassword,
    PgPassword,
    DatabaseUrl,
    PasswordFileVariable,
    PasswordFileFlag,
}

/// Which password a source carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Right,
    Wrong,
}

impl Secret {
    fn text(self) -> &'static str {
        match self {
            Secret::Right => PASSWORD,
            Secret::Wrong => WRONG_PASSWORD,
        }
    }

    fn file(self, ws: &Workspace) -> String {
        let name = match self {
            Secret::Right => "secrets/password",
            Secret::Wrong => "secrets/wrong",
        };
        ws.path(name).display().to_string()
    }
}

impl Source {
    const ALL: [Source; 5] = [
        Source::EcomindPassword,
        Source::PgPassword,
        Source::DatabaseUrl,
        Source::PasswordFileVariable,
        Source::PasswordFileFlag,
    ];

    /// How `config show` names the source.
    fn origin(self) -> &'static str {
        match self {
            Source::EcomindPassword => "env ECOMIND_DB_PASSWORD",
            Source::PgPassword => "env PGPASSWORD",
            Source::DatabaseUrl => "env DATABASE_URL",
            Source::PasswordFileVariable => "(named by env ECOMIND_DB_PASSWORD_FILE)",
            Source::PasswordFileFlag => "(named by flag --password-file)",
        }
    }

    /// `inv` with `secret` given through this source. `config check` takes no connection flags,
    /// so `--password-file` goes only to commands that take `--env`.
    fn supply(self, inv: Invocation, ws: &Workspace, secret: Secret) -> Invocation {
        match self {
            Source::EcomindPassword => inv.var("ECOMIND_DB_PASSWORD", secret.text()),
            Source::PgPassword => inv.var("PGPASSWORD", secret.text()),
            Source::DatabaseUrl => inv.var("DATABASE_URL", ws.url(secret.text())),
            Source::PasswordFileVariable => inv.var("ECOMIND_DB_PASSWORD_FILE", secret.file(ws)),
            Source::PasswordFileFlag if inv.args.iter().any(|a| a == "--env") => {
                inv.arg("--password-file").arg(secret.file(ws))
            }
            Source::PasswordFileFlag => inv,
        }
    }
}

/// Runs `work` once per source, in parallel, and merges what each found.
fn for_every_source(work: fn(Source) -> Report) -> Report {
    std::thread::scope(|scope| {
        let workers: Vec<_> = Source::ALL
            .iter()
            .map(|&source| scope.spawn(move || work(source)))
            .collect();
        let mut report = Report::default();
        for (worker, source) in workers.into_iter().zip(Source::ALL) {
            match worker.join() {
                Ok(found) => report.merge(found),
                Err(_) => report.fail(format!("{source:?}: the worker panicked (see above)")),
            }
        }
        report
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Every command, with the password from each source: it works, and shows the password nowhere.
// ---------------------------------------------------------------------------------------------

struct Step {
    args: &'static [&'static str],
    exit: i32,
    stdout: &'static [&'static str],
    /// The history afterwards, as [`Db::history`] writes it.
    history: &'static str,
}

/// Every command, each also with `--json`, in an order that makes each of them do real work.
const STEPS: &[Step] = &[
    Step {
        args: &["status", "--env", ENV],
        exit: 0,
        stdout: &["pending  V1", "baseline", "migrations pending"],
        history: "None",
    },
    Step {
        args: &["status", "--env", ENV, "--json"],
        exit: 0,
        stdout: &["\"name\": \"api_keys_and_refresh_tokens\""],
        history: "None",
    },
    Step {
        args: &["status", "--env", ENV, "--check"],
        exit: 3,
        stdout: &["migrations pending"],
        history: "None",
    },
    Step {
        args: &["status", "--env", ENV, "--check", "--json"],
        exit: 3,
        stdout: &["\"version\": 4"],
        history: "None",
    },
    Step {
        args: &["migrate", "--env", ENV, "--to", "2"],
        exit: 0,
        stdout: &["2 migration(s) applied, now at V2"],
        history: "Some([1, 2])",
    },
    Step {
        args: &["status", "--env", ENV, "--check"],
        exit: 3,
        stdout: &["pending  V3"],
        history: "",
    },
    Step {
        args: &["migrate", "--env", ENV, "--json"],
        exit: 0,
        stdout: &["\"name\": \"user_credentials\"", "\"head\": 4"],
        history: "Some([1, 2, 3, 4])",
    },
    Step {
        args: &["migrate", "--env", ENV],
        exit: 0,
        stdout: &["up to date at V4"],
        history: "",
    },
    Step {
        args: &["status", "--env", ENV, "--check"],
        exit: 0,
        stdout: &["up to date"],
        history: "",
    },
    Step {
        args: &["status", "--env", ENV, "--check", "--json"],
        exit: 0,
        stdout: &["\"pending\": []"],
        history: "",
    },
    Step {
        args: &["wait", "--env", ENV, "--timeout", "10"],
        exit: 0,
        stdout: &["accepts connections"],
        history: "",
    },
    Step {
        args: &["wait", "--env", ENV, "--json"],
        exit: 0,
        stdout: &["\"ready\": true"],
        history: "",
    },
    Step {
        args: &["config", "show", "--env", ENV],
        exit: 0,
        stdout: &[
            "database.password",
            "[redacted]",
            "(env ECOMIND_DB_ENVIRONMENTS)",
        ],
        history: "",
    },
    Step {
        args: &["config", "show", "--env", ENV, "--json"],
        exit: 0,
        stdout: &["\"value\": \"[redacted]\""],
        history: "",
    },
    Step {
        args: &["config", "check", "--all"],
        exit: 0,
        stdout: &["1 environment file(s) valid"],
        history: "",
    },
    Step {
        args: &["config", "check", "--all", "--json"],
        exit: 0,
        stdout: &["\"valid\": true"],
        history: "Some([1, 2, 3, 4])",
    },
];

fn every_command(source: Source) -> Report {
    let db = Db::new();
    let ws = Workspace::new(&db);
    let mut report = Report::default();
    for step in STEPS {
        let run = source
            .supply(Invocation::new(&ws, step.args), &ws, Secret::Right)
            .run();
        report.run(&run, step.exit, step.stdout, &[]);
        if step.args[..2] == ["config", "show"] && !run.stdout.contains(source.origin()) {
            report.fail(format!(
                "{}: does not name the password's source {:?}:\n{}",
                run.label,
                source.origin(),
                run.stdout
            ));
        }
        if !step.history.is_empty() && db.history() != step.history {
            report.fail(format!(
                "{}: history {} instead of {}",
                run.label,
                db.history(),
                step.history
            ));
        }
    }
    report.saw(format!("{source:?}: recorded rows"), db.recorded());
    report
}

#[test]
fn every_command_works_with_every_password_source_and_never_shows_the_password() {
    for_every_source(every_command).finish();
}

// ---------------------------------------------------------------------------------------------
// 2. The failure paths, with the password from each source.
// ---------------------------------------------------------------------------------------------

const V1: (&str, &str) = ("V1__a.sql", "CREATE TABLE a (id int);\n");
const V1_DOWN: (&str, &str) = ("V1__a.down.sql", "DROP TABLE a;\n");

fn failure_paths(source: Source) -> Report {
    let db = Db::new();
    let ws = Workspace::new(&db);
    let mut report = Report::default();
    let good = ws.migrations("good", &[V1, V1_DOWN]);
    let failing = ws.migrations(
        "failing",
        &[
            V1,
            V1_DOWN,
            ("V2__fails.sql", "CREATE TABLE b (id int);\nSELECT 1 / 0;\n"),
            ("V2__fails.down.sql", "DROP TABLE b;\n"),
        ],
    );
    let changed = ws.migrations(
        "changed",
        &[("V1__a.sql", "CREATE TABLE a (id bigint);\n"), V1_DOWN],
    );
    let pending = ws.migrations(
        "pending",
        &[
            V1,
            V1_DOWN,
            ("V2__c.sql", "CREATE TABLE c (id int);\n"),
            ("V2__c.down.sql", "DROP TABLE c;\n"),
        ],
    );
    let closed = closed_port().to_string();
    let invocation =
        |args: &[&str], secret: Secret| source.supply(Invocation::new(&ws, args), &ws, secret);
    let expect_error = |report: &mut Report, inv: Invocation, exit: i32, stderr: &[&str]| {
        for inv in [inv.clone(), inv.arg("--json")] {
            let run = inv.run();
            report.run(&run, exit, &[], stderr);
            if run.code == exit {
                report.error_style(&run);
            }
        }
    };

    // The wrong password: every command that connects says so, and names the source.
    for args in [
        &["migrate", "--env", ENV][..],
        &["status", "--env", ENV],
        &["wait", "--env", ENV, "--timeout", "5"],
    ] {
        expect_error(
            &mut report,
            invocation(args, Secret::Wrong),
            1,
            &["password authentication failed for user \"postgres\""],
        );
    }

    // Nothing listens on the port.
    for (args, message) in [
        (
            &["migrate", "--env", ENV, "--port", &closed][..],
            "connection refused",
        ),
        (
            &["status", "--env", ENV, "--port", &closed],
            "connection refused",
        ),
        (
            &["wait", "--env", ENV, "--timeout", "1", "--port", &closed],
            "did not accept connections within 1s",
        ),
    ] {
        expect_error(&mut report, invocation(args, Secret::Right), 1, &[message]);
    }
    if db.history() != "None" {
        report.fail(format!(
            "{source:?}: failed connections changed the history: {}",
            db.history()
        ));
    }

    // A migration that fails is rolled back; the one before it stays.
    let run = invocation(
        &["migrate", "--env", ENV, "--migrations", &good],
        Secret::Right,
    )
    .run();
    report.run(&run, 0, &["1 migration(s) applied"], &[]);
    expect_error(
        &mut report,
        invocation(
            &["migrate", "--env", ENV, "--migrations", &failing],
            Secret::Right,
        ),
        1,
        &[
            "V2__fails.sql failed and was rolled back",
            "division by zero",
        ],
    );
    if db.history() != "Some([1])" || db.has_table("b") {
        report.fail(format!(
            "{source:?}: the failed migration left something: {}",
            db.history()
        ));
    }

    // A file changed after it was applied: divergence, exit 4, nothing changed.
    expect_error(
        &mut report,
        invocation(
            &["migrate", "--env", ENV, "--migrations", &changed],
            Secret::Right,
        ),
        4,
        &[
            "V1__a.sql changed after it was applied",
            "nothing was changed",
        ],
    );
    let run = invocation(
        &[
            "status",
            "--env",
            ENV,
            "--check",
            "--json",
            "--migrations",
            &changed,
        ],
        Secret::Right,
    )
    .run();
    report.run(&run, 4, &["V1__a.sql"], &[]);

    // Another session holds the migration lock: the run gives up after the lock wait.
    let mut holder = db.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .expect("take the migration lock");
    let locked = invocation(
        &["migrate", "--env", ENV, "--migrations", &pending],
        Secret::Right,
    )
    .var("ECOMIND_DB_LOCK_WAIT", "1s");
    // One lock wait per source keeps the test short; text and JSON alternate between sources.
    let locked = if Source::ALL.iter().position(|s| *s == source).unwrap_or(0) % 2 == 1 {
        locked.arg("--json")
    } else {
        locked
    };
    let run = locked.run();
    report.run(
        &run,
        1,
        &[],
        &[
            "another migration run holds the migration lock",
            "application_name 'ecomind-snapshot'",
        ],
    );
    if run.code == 1 {
        report.error_style(&run);
    }
    drop(holder);
    if db.history() != "Some([1])" || db.has_table("c") {
        report.fail(format!(
            "{source:?}: the locked-out run changed something: {}",
            db.history()
        ));
    }
    report.saw(format!("{source:?}: recorded rows"), db.recorded());
    report
}

#[test]
fn the_failure_paths_say_what_failed_and_never_show_the_password() {
    let mut report = for_every_source(failure_paths);
    let log = fs::read_to_string(sandbox().cluster().log_file()).unwrap_or_default();
    if !log.contains("password authentication failed for user \"postgres\"") {
        report.fail(format!("the server log does not show the failed logins, so the scan below proves little:\n{log}"));
    }
    report.saw("the server log", log);
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. While a migration runs: what the server and the process table show.
// ---------------------------------------------------------------------------------------------

/// Every process id in /proc.
fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The parent of `pid`, from /proc/<pid>/stat (after the parenthesised command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in all_pids() {
        if let Some(parent) = parent_of(p) {
            children.entry(parent).or_default().push(p);
        }
    }
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        tree.extend(children.get(&tree[next]).into_iter().flatten());
        next += 1;
    }
    tree
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

fn running_migration(source: Source) -> Report {
    let db = Db::new();
    let ws = Workspace::new(&db);
    let mut report = Report::default();
    let mut admin = db.client();
    admin
        .batch_execute("CREATE TABLE gate (id int)")
        .expect("gate table");
    let gated = ws.migrations(
        "gated",
        &[
            (
                "V1__gated.sql",
                "SELECT count(*) FROM gate;\nCREATE TABLE gated (id int);\n",
            ),
            ("V1__gated.down.sql", "DROP TABLE gated;\n"),
        ],
    );
    // The migration blocks on `gate` until this transaction ends.
    let mut holder = db.client();
    let mut gate = holder.transaction().expect("transaction");
    gate.batch_execute("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE")
        .expect("lock gate");

    let inv = source.supply(
        Invocation::new(&ws, &["migrate", "--env", ENV, "--migrations", &gated]),
        &ws,
        Secret::Right,
    );
    let mut child = inv.spawn();
    eventually("the migration to block on the gate table", || {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("{source:?}: migrate ended ({status}) before blocking on the gate: {stderr}");
        }
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'ecomind-db' AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .expect("pg_stat_activity")
            .get::<_, i64>(0)
            > 0
    });

    let activity: Vec<(String, String)> = admin
        .query(
            "SELECT coalesce(application_name, ''), coalesce(query, '') FROM pg_stat_activity",
            &[],
        )
        .expect("pg_stat_activity")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    if !activity
        .iter()
        .any(|(app, query)| app == "ecomind-db" && query.contains("FROM gate"))
    {
        report.fail(format!(
            "{source:?}: the running migration is not in pg_stat_activity: {activity:?}"
        ));
    }
    report.saw(
        format!("{source:?}: pg_stat_activity.query"),
        format!("{activity:?}"),
    );

    let tree = process_tree(child.id());
    let own = cmdline(child.id());
    if !own.contains("migrate") {
        report.fail(format!(
            "{source:?}: could not read the argv of ecomind-db: {own:?}"
        ));
    }
    for pid in &tree {
        report.saw(
            format!("{source:?}: argv of {pid} (ecomind-db or its child)"),
            cmdline(*pid),
        );
    }
    // And every other process's argv: no process on this machine should carry the password.
    for pid in all_pids() {
        report.saw(format!("argv of process {pid}"), cmdline(pid));
    }

    gate.rollback().expect("open the gate");
    let run = finish(child, inv.label());
    report.run(&run, 0, &["1 migration(s) applied, now at V1"], &[]);
    if db.history() != "Some([1])" || !db.has_table("gated") {
        report.fail(format!(
            "{source:?}: the gated migration did not apply: {}",
            db.history()
        ));
    }
    report.saw(format!("{source:?}: recorded rows"), db.recorded());
    report
}

#[test]
fn a_running_migration_shows_the_password_in_no_query_and_no_argv() {
    let mut report = for_every_source(running_migration);
    let log = fs::read_to_string(sandbox().cluster().log_file()).unwrap_or_default();
    report.saw("the server log", log);
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. Bad input: a clear message, the documented exit code, nothing changed.
// ---------------------------------------------------------------------------------------------

/// One bad input, given to `migrate --migrations <a catalog with V2 pending>`.
struct Case {
    name: &'static str,
    /// `--env`; `None` leaves it out.
    env: Option<&'static str>,
    /// Files written into the case's own environments folder (beside a valid `leak.toml`).
    files: Vec<(&'static str, String)>,
    vars: Vec<(&'static str, String)>,
    args: Vec<String>,
    /// Give the right password through `ECOMIND_DB_PASSWORD`.
    password: bool,
    exit: i32,
    /// Parts of the message on stderr.
    expect: Vec<String>,
    /// Also run `config check --env` and expect this exit code (and the message when it fails).
    config_check: Option<i32>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        env: Some(ENV),
        files: Vec::new(),
        vars: Vec::new(),
        args: Vec::new(),
        password: false,
        exit: 1,
        expect: Vec::new(),
        config_check: None,
    }
}

impl Case {
    fn env(mut self, env: Option<&'static str>) -> Case {
        self.env = env;
        self
    }
    fn file(mut self, name: &'static str, contents: impl Into<String>) -> Case {
        self.files.push((name, contents.into()));
        self
    }
    fn var(mut self, key: &'static str, value: impl Into<String>) -> Case {
        self.vars.push((key, value.into()));
        self
    }
    fn args(mut self, args: &[&str]) -> Case {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
    fn password(mut self) -> Case {
        self.password = true;
        self
    }
    fn exit(mut self, code: i32) -> Case {
        self.exit = code;
        self
    }
    fn expect(mut self, part: impl Into<String>) -> Case {
        self.expect.push(part.into());
        self
    }
    fn config_check(mut self, code: i32) -> Case {
        self.config_check = Some(code);
        self
    }
}

/// What the bad-input cases share: one database at V1, a catalog with V2 pending, secret files.
struct Fixture {
    db: Db,
    ws: Workspace,
    catalog: String,
    next: AtomicUsize,
}

/// Runs `case` (text and `--json`, and `config check` when asked) and checks that nothing changed.
fn check(fx: &Fixture, case: &Case) -> Report {
    let mut report = Report::default();
    let folder = format!("environments-{}", fx.next.fetch_add(1, Ordering::SeqCst));
    fx.ws.write(
        &format!("{folder}/{ENV}.toml"),
        &environment_file(&fx.db.name),
        0o644,
    );
    for (name, contents) in &case.files {
        fx.ws.write(&format!("{folder}/{name}"), contents, 0o644);
    }
    let dress = |mut inv: Invocation| {
        inv.vars[0].1 = fx.ws.path(&folder).display().to_string();
        if let Some(env) = case.env {
            inv = inv.arg("--env").arg(env);
        }
        if case.password {
            inv = inv.var("ECOMIND_DB_PASSWORD", PASSWORD);
        }
        for (key, value) in &case.vars {
            inv = inv.var(key, value.clone());
        }
        inv
    };
    let migrate = {
        let mut inv = dress(Invocation::new(
            &fx.ws,
            &["migrate", "--migrations", &fx.catalog],
        ));
        inv.args.extend(case.args.iter().cloned());
        inv
    };
    let expect: Vec<&str> = case.expect.iter().map(String::as_str).collect();
    let mut runs = vec![migrate.clone()];
    if case.exit != 2 {
        runs.push(migrate.arg("--json"));
    }
    for inv in runs {
        let mut run = inv.run();
        run.label = format!("{}: {}", case.name, run.label);
        report.run(&run, case.exit, &[], &expect);
        if run.code == case.exit {
            report.error_style(&run);
            if !run.stdout.is_empty() && !run.label.contains(" --json") {
                report.fail(format!(
                    "{}: a failure printed a result on stdout:\n{}",
                    run.label, run.stdout
                ));
            }
        }
    }
    if let Some(code) = case.config_check {
        let mut run = dress(Invocation::new(&fx.ws, &["config", "check"])).run();
        run.label = format!("{}: {}", case.name, run.label);
        let both = format!("{}{}", run.stdout, run.stderr);
        report.run(&run, code, &[], &[]);
        if code != 0 {
            for part in &expect {
                if !both.contains(part) {
                    report.fail(format!(
                        "{}: config check lacks {part:?}:\n{both}",
                        run.label
                    ));
                }
            }
        }
    }
    if fx.db.history() != "Some([1])" || fx.db.has_table("should_not_exist") {
        report.fail(format!(
            "{}: the database changed: history {}",
            case.name,
            fx.db.history()
        ));
    }
    report
}

#[test]
fn bad_input_fails_clearly_with_its_exit_code_and_changes_nothing() {
    let db = Db::new();
    let ws = Workspace::new(&db);
    let catalog = ws.migrations(
        "catalog",
        &[
            V1,
            V1_DOWN,
            (
                "V2__should_not_exist.sql",
                "CREATE TABLE should_not_exist (id int);\n",
            ),
            (
                "V2__should_not_exist.down.sql",
                "DROP TABLE should_not_exist;\n",
            ),
        ],
    );
    // The database starts at V1, through the binary itself: the setup below does work.
    let start = Invocation::new(
        &ws,
        &[
            "migrate",
            "--env",
            ENV,
            "--to",
            "1",
            "--migrations",
            &catalog,
        ],
    )
    .var("ECOMIND_DB_PASSWORD", PASSWORD)
    .run();
    assert_eq!(start.code, 0, "{}\n{}", start.stdout, start.stderr);
    assert_eq!(db.history(), "Some([1])");

    let missing = ws.path("secrets/missing").display().to_string();
    let directory = ws.path("secrets").display().to_string();
    let loose = ws
        .write("secrets/loose", &format!("{PASSWORD}\n"), 0o644)
        .display()
        .to_string();
    let group = ws
        .write("secrets/group", &format!("{PASSWORD}\n"), 0o640)
        .display()
        .to_string();
    let right = ws.path("secrets/password").display().to_string();
    let ca = ws
        .write("ca.pem", &ca_certificate(), 0o644)
        .display()
        .to_string();
    // Accepts TCP connections (the kernel does, from the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("address").port().to_string();
    let closed = closed_port().to_string();

    let cases = vec![
        case("unknown environment")
            .env(Some("prdo"))
            .file("dev.toml", "")
            .file("prod.toml", "")
            .file("staging.toml", "")
            .expect("unknown environment `prdo`: known environments are dev, leak, prod, staging")
            .expect("did you mean `prod`?")
            .config_check(1),
        case("missing environment file")
            .env(Some("qa"))
            .expect("unknown environment `qa`: known environments are leak")
            .config_check(1),
        case("missing environments folder")
            .var("ECOMIND_DB_ENVIRONMENTS", "/nonexistent/ecomind-environments")
            .expect("environments folder /nonexistent/ecomind-environments does not exist (from env ECOMIND_DB_ENVIRONMENTS)")
            .config_check(1),
        case("missing --env").env(None).exit(2).expect("--env <ENV>"),
        case("malformed TOML")
            .file("leak.toml", "[database]\nhost = \"127.0.0.1\"\nport = = 5\n")
            .expect("leak.toml: malformed TOML at line 3, column")
            .config_check(1),
        case("unknown key")
            .file("leak.toml", "[database]\nhost = \"127.0.0.1\"\nprot = 5432\n")
            .expect("leak.toml: unknown key `database.prot`; did you mean `database.port`?")
            .config_check(1),
        case("wrong type")
            .file("leak.toml", "[database]\nport = \"abc\"\n")
            .expect("leak.toml: `database.port` must be an integer between 1 and 65535 (or a comma-separated list of them, one per host), found the string \"abc\"")
            .config_check(1),
        case("invalid port in the file")
            .file("leak.toml", "[database]\nport = 70000\n")
            .expect("leak.toml: invalid port 70000 for `database.port`: use a number between 1 and 65535")
            .config_check(1),
        case("invalid port in a variable")
            .var("ECOMIND_DB_PORT", "99999")
            .expect("env ECOMIND_DB_PORT: invalid port \"99999\" for `database.port`")
            .config_check(0),
        case("invalid port flag")
            .args(&["--port", "70000"])
            .exit(2)
            .expect("invalid value '70000' for '--port <PORT>'"),
        case("port zero flag")
            .args(&["--port", "0"])
            .exit(2)
            .expect("invalid value '0' for '--port <PORT>'"),
        case("unknown sslmode flag")
            .args(&["--sslmode", "verify"])
            .exit(2)
            .expect("invalid value 'verify' for '--sslmode <MODE>'"),
        case("missing secret file")
            .args(&["--password-file", &missing])
            .expect(format!("secret file {missing} (from flag --password-file) does not exist"))
            .config_check(0),
        case("unreadable secret file (a folder)")
            .var("ECOMIND_DB_PASSWORD_FILE", &directory)
            .expect(format!("cannot read secret file {directory} (from env ECOMIND_DB_PASSWORD_FILE): it is not a regular file")),
        case("secret file readable by others")
            .args(&["--password-file", &loose])
            .expect(format!("secret file {loose} (from flag --password-file) is accessible by group or others (mode 0644): run `chmod 600 {loose}`")),
        case("secret file readable by group, named in the environment file")
            .file(
                "leak.toml",
                environment_file(&db.name)
                    .replacen("[policy]", &format!("password_file = \"{group}\"\n\n[policy]"), 1),
            )
            .expect(format!("(mode 0640): run `chmod 600 {group}`")),
        case("two passwords at one level")
            .password()
            .var("ECOMIND_DB_PASSWORD_FILE", &right)
            .expect("keep only one of them"),
        case("literal password in prod")
            .env(Some("prod"))
            .file("prod.toml", format!("[database]\nhost = \"127.0.0.1\"\npassword = \"{PASSWORD}\"\n"))
            .expect("prod.toml: a literal password is not allowed in the `prod` environment file")
            .expect("password_file")
            .config_check(1),
        case("literal password in staging")
            .env(Some("staging"))
            .file("staging.toml", format!("[database]\npassword = \"{PASSWORD}\"\n"))
            .expect("a literal password is not allowed in the `staging` environment file")
            .config_check(1),
        case("DATABASE_URL with a bad port")
            .var(
                "DATABASE_URL",
                format!("postgres://postgres:{}@127.0.0.1:notaport/x", percent_encode(PASSWORD)),
            )
            .expect("env DATABASE_URL: its port is not valid: use an integer between 1 and 65535")
            .expect("(the URL is not shown because it may carry a password)"),
        case("DATABASE_URL with the password not encoded")
            .var("DATABASE_URL", format!("postgres://postgres:{PASSWORD}@127.0.0.1/x"))
            .expect("env DATABASE_URL: ")
            .expect("(the URL is not shown because it may carry a password)"),
        case("unreachable host")
            .password()
            .var("ECOMIND_DB_HOST", "db.invalid")
            .var("ECOMIND_DB_CONNECT_TIMEOUT", "2s")
            .expect("cannot connect to postgres@db.invalid:"),
        case("server that never answers")
            .password()
            .var("ECOMIND_DB_PORT", &silent_port)
            .var("ECOMIND_DB_CONNECT_TIMEOUT", "2s")
            .expect("did not complete the connection within connect_timeout (2s)"),
        case("nothing listens on the port")
            .password()
            .var("ECOMIND_DB_PORT", &closed)
            .expect("connection refused"),
        case("wrong password")
            .var("ECOMIND_DB_PASSWORD", WRONG_PASSWORD)
            .expect("password authentication failed for user \"postgres\": check the password from env ECOMIND_DB_PASSWORD"),
        case("no password")
            .expect("the server asks for a password but none is configured"),
        case("verify-full against a server without TLS")
            .password()
            .args(&["--sslmode", "verify-full"])
            .var("ECOMIND_DB_SSLROOTCERT", &ca)
            .expect("the server does not accept TLS but sslmode is verify-full"),
        case("verify-full without a CA")
            .password()
            .args(&["--sslmode", "verify-full"])
            .expect("sslmode verify-full (from flag --sslmode) needs a CA certificate"),
    ];

    let fixture = Fixture {
        db,
        ws,
        catalog,
        next: AtomicUsize::new(0),
    };
    let mut report = std::thread::scope(|scope| {
        let workers: Vec<_> = cases
            .iter()
            .map(|case| scope.spawn(|| check(&fixture, case)))
            .collect();
        let mut report = Report::default();
        for (worker, case) in workers.into_iter().zip(&cases) {
            match worker.join() {
                Ok(found) => report.merge(found),
                Err(_) => report.fail(format!("{}: the check panicked (see above)", case.name)),
            }
        }
        report
    });
    drop(silent);
    report.saw("recorded rows", fixture.db.recorded());
    report.finish();
}

/// A self-signed CA certificate (PEM) that signed nothing the sandbox has.
fn ca_certificate() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ecomind secrets test CA");
    params.self_signed(&key).expect("self-signed").pem()
}
