//! What every command prints, text and `--json`, with its exit code, as reviewed insta snapshots:
//! a change of output is a diff to review. What varies between runs (times, durations, ports,
//! socket folders, temporary paths, database names, the server's version) is masked.

use std::path::Path;
use std::process::{Command, Output};

use ecomind_testkit::{database, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_ecomind-db");

/// Where and against what a command runs.
struct Ctx<'a> {
    db: Option<&'a TestDb>,
    dir: &'a Path,
    /// More values to mask, with their names (a dump's path, the server's version).
    known: Vec<(String, &'static str)>,
}

impl<'a> Ctx<'a> {
    fn new(db: Option<&'a TestDb>, dir: &'a Path) -> Ctx<'a> {
        Ctx {
            db,
            dir,
            known: vec![],
        }
    }

    fn output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PG") || key.starts_with("ECOMIND_DB_") || key == "DATABASE_URL" {
                cmd.env_remove(&key);
            }
        }
        if let Some(db) = self.db {
            for (k, v) in db.pg_env() {
                cmd.env(k, v);
            }
        }
        cmd.env("HOME", self.dir)
            .env("XDG_CACHE_HOME", self.dir)
            .env("USER", "reviewer")
            .env_remove("LOGNAME");
        cmd.args(args)
            .current_dir(self.dir)
            .output()
            .expect("ecomind-db runs")
    }

    /// Runs `args` twice, as text and with `--json`, and snapshots each stdout with its exit code,
    /// which must be `expected` both times.
    fn snapshot(&self, name: &str, args: &[&str], expected: i32) {
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        for (suffix, args) in [("text", args), ("json", &json_args[..])] {
            let output = self.output(args);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(
                output.status.code(),
                Some(expected),
                "{name} ({suffix}): {args:?}\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            if suffix == "json" {
                serde_json::from_str::<serde_json::Value>(&stdout)
                    .unwrap_or_else(|e| panic!("{name}: not one JSON document: {e}\n{stdout}"));
            }
            let body = format!("exit: {expected}\n{}", self.masked(&stdout));
            insta::with_settings!({ description => args.join(" "), omit_expression => true }, {
                insta::assert_snapshot!(format!("{name}_{suffix}"), body);
            });
        }
    }

    /// `out` with what varies between runs masked.
    fn masked(&self, out: &str) -> String {
        let mut text = out.to_owned();
        let mut known: Vec<(String, &str)> = self.known.clone();
        if let Some(db) = self.db {
            let env = db.pg_env();
            // The database name first: it may contain the port's digits.
            for (key, name) in [
                ("PGDATABASE", "[database]"),
                ("PGHOST", "[socket]"),
                ("PGPORT", "[port]"),
            ] {
                if let Some((_, value)) = env.iter().find(|(k, _)| k == key) {
                    known.push((value.clone(), name));
                }
            }
        }
        // The temporary folder, also as the canonical path the binary may print.
        if let Ok(canonical) = self.dir.canonicalize() {
            known.push((canonical.display().to_string(), "[dir]"));
        }
        known.push((self.dir.display().to_string(), "[dir]"));
        // The client host and the tool's version, as the history and event rows record them.
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            known.push((format!("E'{}'", host.trim()), "E'[host]'"));
        }
        known.push((
            format!("ecomind-db {}", env!("CARGO_PKG_VERSION")),
            "ecomind-db [version]",
        ));
        for (value, name) in known {
            text = text.replace(&value, name);
        }
        // PostgreSQL 14+ only: `migrate --sql` shows this setting where the server has it, so
        // the reviewed output leaves it out to be the same on every major CI runs.
        for newline in ["\n", "\\n"] {
            text = text.replace(
                &format!(
                    "-- The connection: a killed client is noticed within a second.{newline}SET client_connection_check_interval = '1s';{newline}{newline}"
                ),
                "",
            );
        }
        text = text.replace(" SET client_connection_check_interval = '1s';", "");
        // How many catalog objects a schema has depends on the major (18 lists NOT NULL
        // constraints), so the count is masked; the differences themselves are not.
        text = mask_number_between(&text, "(", " objects)");
        text = mask_number_between(&text, "\"objects\": ", ",");
        text = mask_number_between(&text, "\"expected_objects\": ", ",");
        mask_json_times(&mask_durations(&mask_timestamps(&mask_toast(&text))))
    }
}

/// Every whole number that stands between `before` and `after` becomes `[n]`.
fn mask_number_between(text: &str, before: &str, after: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(before) {
        let (head, tail) = rest.split_at(at + before.len());
        out.push_str(head);
        let digits = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        if digits > 0 && tail[digits..].starts_with(after) {
            out.push_str("[n]");
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// `pg_toast_16539` (an object id) becomes `pg_toast_[oid]`.
fn mask_toast(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split("pg_toast_");
    out.push_str(parts.next().unwrap_or_default());
    for part in parts {
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        out.push_str("pg_toast_");
        out.push_str(if digits > 0 { "[oid]" } else { "" });
        out.push_str(&part[digits..]);
    }
    out
}

/// `2026-12-02 07:42:45.123456+00` and `2026-12-02T07:42:45Z` forms become `[time]`.
fn mask_timestamps(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if is_date_at(bytes, i) {
            let mut end = i + 10;
            if end < bytes.len()
                && (bytes[end] == b' ' || bytes[end] == b'T')
                && end + 1 < bytes.len()
                && bytes[end + 1].is_ascii_digit()
            {
                end += 1;
                while end < bytes.len()
                    && (bytes[end].is_ascii_digit() || b":.+-Z".contains(&bytes[end]))
                {
                    end += 1;
                }
                // A UTC suffix written out.
                if text[end..].starts_with(" UTC") {
                    end += 4;
                }
            }
            out.push_str("[time]");
            i = end;
        } else {
            let ch = text[i..].chars().next().expect("char");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_date_at(b: &[u8], i: usize) -> bool {
    let d = |k: usize| b.get(i + k).is_some_and(u8::is_ascii_digit);
    (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        && (0..4).all(d)
        && b.get(i + 4) == Some(&b'-')
        && d(5)
        && d(6)
        && b.get(i + 7) == Some(&b'-')
        && d(8)
        && d(9)
}

/// A run's measured durations become `[duration]`: `(12 ms` in a report line, `waited 0.3s`, and
/// dry-run's `for 14 ms`, `in 4.93 s`; configured durations (`10s`, `100 ms` in a comment) are left
/// as they are. A dump's size (`, 28.4 kB`) becomes `[size]`.
fn mask_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = [
            ("(", " ms"),
            ("waited ", "s"),
            ("  ", " ms,"),
            ("for ", " ms"),
            ("in ", " ms"),
            ("in ", " s "),
            (", ", " kB"),
        ]
        .iter()
        .filter_map(|(before, unit)| {
            let mut from = 0;
            while let Some(at) = rest[from..].find(before) {
                let start = from + at + before.len();
                let digits = rest[start..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len() - start);
                if digits > 0 && rest[start + digits..].starts_with(unit) {
                    return Some((start, start + digits + unit.len()));
                }
                from = start;
            }
            None
        })
        .min();
        let Some((start, end)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let matched = &rest[start..end];
        out.push_str(if matched.contains("kB") {
            "[size]"
        } else {
            "[duration]"
        });
        // The punctuation the pattern matched after the unit stays.
        let unit_end = matched
            .rfind(|c: char| c.is_alphabetic())
            .map_or(matched.len(), |i| i + 1);
        out.push_str(&matched[unit_end..]);
        rest = &rest[end..];
    }
}

/// In pretty JSON, the number of a key naming a duration (`..._ms`, `..._seconds`) or a process id
/// becomes `"[masked]"`; so does the server's version string.
fn mask_json_times(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let Some(rest) = trimmed.strip_prefix('"') else {
                return line.to_owned();
            };
            let Some((key, value)) = rest.split_once("\": ") else {
                return line.to_owned();
            };
            let varies = key.ends_with("_ms")
                || key == "seconds"
                || key == "archive_version"
                || key == "bytes"
                || key.ends_with("_seconds")
                || key.ends_with("_secs")
                || key == "pid"
                || key == "server_version";
            if !varies {
                return line.to_owned();
            }
            let indent = &line[..line.len() - trimmed.len()];
            let comma = if value.ends_with(',') { "," } else { "" };
            format!("{indent}\"{key}\": \"[masked]\"{comma}")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// A migrations folder inside `dir`, made of `(file, sql)` pairs.
fn folder(dir: &Path, name: &str, files: &[(&str, &str)]) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).expect("folder");
    for (file, sql) in files {
        std::fs::write(path.join(file), sql).expect("write migration");
    }
    path.to_str().expect("utf-8 path").to_owned()
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The database commands, each state they report, in the order a project meets them.
#[test]
fn database_commands_print_what_was_reviewed() {
    let db = database();
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = Ctx::new(Some(&db), dir.path());
    let dev = |args: &[&'static str]| -> Vec<&'static str> {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--env", "dev"]);
        all
    };

    // A fresh database.
    ctx.snapshot("wait", &dev(&["wait", "--timeout", "30"]), 0);
    ctx.snapshot("sql_fresh", &dev(&["migrate", "--sql"]), 0);
    // `--to` applies some; the JSON run then has nothing more to apply up to the same version.
    ctx.snapshot_once("migrate_fresh", &dev(&["migrate"]), 0);
    ctx.restore(0);
    ctx.snapshot_once("migrate_to_2", &dev(&["migrate", "--to", "2"]), 0);
    ctx.snapshot("migrate_to_2_again", &dev(&["migrate", "--to", "2"]), 0);
    ctx.restore(4);
    ctx.snapshot("migrate_noop", &dev(&["migrate"]), 0);
    ctx.snapshot("sql_noop", &dev(&["migrate", "--sql"]), 0);
    ctx.snapshot("status_current", &dev(&["status"]), 0);
    ctx.snapshot("verify_match", &dev(&["verify"]), 0);
    ctx.snapshot("repair_nothing", &dev(&["repair"]), 0);

    // Rollback both ways, each applied to the same state for text and JSON.
    ctx.snapshot_once("rollback_steps", &dev(&["rollback", "--steps", "1"]), 0);
    ctx.snapshot_once("rollback_to", &dev(&["rollback", "--to", "1"]), 0);
    ctx.snapshot("status_pending", &dev(&["status", "--check"]), 3);
    ctx.snapshot_once("migrate_rest", &dev(&["migrate"]), 0);

    // Drift.
    db.client()
        .batch_execute("DROP INDEX idx_events_ts; ALTER TABLE users ADD COLUMN nickname text")
        .expect("drift by hand");
    ctx.snapshot("verify_drift", &dev(&["verify"]), 4);
}

impl Ctx<'_> {
    /// For a command that changes the database: runs the text form and the JSON form against the
    /// same starting state, moving the database back with migrate or rollback in between.
    fn snapshot_once(&self, name: &str, args: &[&str], expected: i32) {
        let before = self.head();
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        for (suffix, args) in [("text", args), ("json", &json_args[..])] {
            self.restore(before);
            let output = self.output(args);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(
                output.status.code(),
                Some(expected),
                "{name} ({suffix}): {args:?}\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let body = format!("exit: {expected}\n{}", self.masked(&stdout));
            insta::with_settings!({ description => args.join(" "), omit_expression => true }, {
                insta::assert_snapshot!(format!("{name}_{suffix}"), body);
            });
        }
    }

    /// The applied head, 0 when nothing is.
    fn head(&self) -> i32 {
        let mut client = self.db.expect("a database").client();
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                &[],
            )
            .expect("history table")
            .get(0);
        if !exists {
            return 0;
        }
        client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
                &[],
            )
            .expect("head")
            .get(0)
    }

    /// Moves the database to `version` with the binary's own migrate and rollback.
    fn restore(&self, version: i32) {
        let head = self.head();
        let to = version.to_string();
        let args: Vec<&str> = if head < version {
            vec!["migrate", "--env", "dev", "--to", &to]
        } else if head > version {
            vec!["rollback", "--env", "dev", "--to", &to]
        } else {
            return;
        };
        let output = self.output(&args);
        assert_eq!(output.status.code(), Some(0), "{output:?}");
    }
}

/// `baseline` and `repair --accept-checksum` on a folder of their own.
#[test]
fn baseline_and_repair_print_what_was_reviewed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let v1 = "CREATE TABLE a (id int PRIMARY KEY);\n";
    let migrations = folder(
        dir.path(),
        "migrations",
        &[("V1__a.sql", v1), ("V1__a.down.sql", "DROP TABLE a;\n")],
    );
    for suffix in ["text", "json"] {
        let db = database();
        let ctx = Ctx::new(Some(&db), dir.path());
        db.client().batch_execute(v1).expect("a hand-made table");
        let mut args = vec!["baseline", "--env", "dev", "--migrations", &migrations];
        if suffix == "json" {
            args.insert(0, "--json");
        }
        ctx.snapshot_single(&format!("baseline_{suffix}"), &args, 0);

        // The file is edited after it was applied: accept its new checksum.
        let edited = folder(
            dir.path(),
            &format!("edited-{suffix}"),
            &[
                (
                    "V1__a.sql",
                    "-- reviewed\nCREATE TABLE a (id int PRIMARY KEY);\n",
                ),
                ("V1__a.down.sql", "DROP TABLE a;\n"),
            ],
        );
        let mut args = vec![
            "repair",
            "--env",
            "dev",
            "--migrations",
            &edited,
            "--accept-checksum",
            "1",
            "--confirm",
            "dev",
        ];
        if suffix == "json" {
            args.insert(0, "--json");
        }
        ctx.snapshot_single(&format!("repair_checksum_{suffix}"), &args, 0);
    }
}

impl Ctx<'_> {
    fn snapshot_single(&self, name: &str, args: &[&str], expected: i32) {
        let output = self.output(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{name}: {args:?}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let body = format!("exit: {expected}\n{}", self.masked(&stdout));
        insta::with_settings!({ description => args.join(" "), omit_expression => true }, {
            insta::assert_snapshot!(name.to_owned(), body);
        });
    }
}

/// The commands that need no database: config, dev-db status, new and lint.
#[test]
fn offline_commands_print_what_was_reviewed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = Ctx::new(None, dir.path());
    ctx.snapshot("config_show", &["config", "show", "--env", "prod"], 0);
    ctx.snapshot("config_check", &["config", "check", "--all"], 0);
    ctx.snapshot("dev_db_status", &["dev-db", "status"], 0);

    // `new` and `lint` in a checkout of the project's migrations.
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).expect("migrations folder");
    for entry in std::fs::read_dir(repo().join("migrations")).expect("migrations") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), migrations.join(entry.file_name())).expect("copy");
    }
    ctx.snapshot("lint_clean", &["lint"], 0);
    ctx.snapshot_single("new_text", &["new", "add_sessions"], 0);
    ctx.snapshot_single("new_json", &["--json", "new", "add_webhooks"], 0);
    std::fs::write(
        migrations.join("V9__findings.sql"),
        "CREATE INDEX idx_users_email2 ON users (email);\nALTER TABLE users DROP COLUMN email;\n",
    )
    .expect("a migration with findings");
    ctx.snapshot("lint_findings", &["lint"], 1);
}

/// `dry-run` of the project's migrations on a V1 dump with data (`dry_run`'s custom-format one).
#[test]
fn dry_run_prints_what_was_reviewed() {
    let (_, dump) = super::dry_run::snapshots()
        .files
        .iter()
        .find(|(format, _)| *format == "custom")
        .expect("a custom-format dump");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ctx = Ctx::new(None, dir.path());
    let dump = dump.to_str().expect("utf-8 path");
    ctx.known.push((dump.to_owned(), "[dump]"));
    let version = String::from_utf8(
        Command::new("pg_dump")
            .arg("--version")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    // `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`: the version is what follows.
    if let Some((_, version)) = version.trim().split_once(") ") {
        ctx.known
            .insert(0, (version.to_owned(), "[server version]"));
    }
    let migrations = repo().join("migrations");
    let migrations = migrations.to_str().expect("utf-8 path");
    ctx.snapshot(
        "dry_run",
        &[
            "dry-run",
            "--env",
            "dev",
            "--snapshot",
            dump,
            "--migrations",
            migrations,
        ],
        0,
    );
}
