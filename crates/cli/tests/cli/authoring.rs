//! The authoring commands end to end, without a database: `new`, `lint`, `completions`, the
//! examples that end every command's `--help`, and the man pages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ecomind-db");
const MAN: &str = env!("CARGO_BIN_EXE_ecomind-db-man");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PG") || key.starts_with("ECOMIND_DB_") || key == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
    cmd.args(args)
        .current_dir(dir)
        .output()
        .expect("ecomind-db runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// A scratch checkout: a copy of the project's migrations folder.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    for entry in std::fs::read_dir(repo().join("migrations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), migrations.join(entry.file_name())).unwrap();
    }
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn new_writes_the_next_pair_from_the_template_and_it_lints_clean() {
    let dir = checkout();
    let nested = dir.path().join("src/deep");
    std::fs::create_dir_all(&nested).unwrap();
    // Found upward from a folder inside the checkout.
    let output = run(&nested, &["new", "add_sessions"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("V5__add_sessions.sql"),
        "{}",
        stdout(&output)
    );
    let up = std::fs::read_to_string(dir.path().join("migrations/V5__add_sessions.sql")).unwrap();
    let down =
        std::fs::read_to_string(dir.path().join("migrations/V5__add_sessions.down.sql")).unwrap();
    assert!(up.starts_with("-- V5__add_sessions: "), "{up}");
    assert!(up.contains("-- ecomind:no-transaction") && up.contains("-- ecomind:irreversible"));
    assert!(
        down.contains("reverses V5__add_sessions.sql exactly"),
        "{down}"
    );
    // The pair loads as a catalog (as every command would) and passes the lint.
    let catalog = ecomind_migrate::Catalog::load_dir(&dir.path().join("migrations")).unwrap();
    assert_eq!(catalog.migrations().last().unwrap().version(), 5);
    assert!(catalog.migrations().last().unwrap().is_transactional());
    assert_exit(&run(dir.path(), &["lint"]), 0);

    let output = run(dir.path(), &["--json", "new", "add_webhooks"]);
    assert_exit(&output, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(doc["version"], 6);
}

#[test]
fn new_refuses_names_that_are_not_snake_case_and_versions_that_exist() {
    let dir = checkout();
    let before = names(dir.path());
    for (args, said) in [
        (
            vec!["new", "AddSessions"],
            "`AddSessions` is not a snake_case name",
        ),
        (vec!["new", "add-sessions"], "is not a snake_case name"),
        (vec!["new", "add__sessions"], "is not a snake_case name"),
        (vec!["new", "1st_table"], "is not a snake_case name"),
        (
            vec!["new", "add_sessions", "--version", "4"],
            "version 4 exists (V4__api_keys_and_refresh_tokens.sql)",
        ),
    ] {
        let output = run(dir.path(), &args);
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains(said),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(names(dir.path()), before, "{args:?} changed the folder");
    }
    let empty = tempfile::tempdir().unwrap();
    let output = run(empty.path(), &["new", "add_sessions"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("no migrations folder"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn two_files_with_one_version_fail_the_lint_with_the_renumbering_advice() {
    let dir = checkout();
    assert_exit(&run(dir.path(), &["new", "add_sessions"]), 0);
    // Another branch also added V5.
    let migrations = dir.path().join("migrations");
    std::fs::write(migrations.join("V5__add_webhooks.sql"), "SELECT 1;\n").unwrap();
    std::fs::write(migrations.join("V5__add_webhooks.down.sql"), "SELECT 1;\n").unwrap();
    let output = run(dir.path(), &["lint"]);
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(text.contains("error[duplicate-version]"), "{text}");
    assert!(
        text.contains("git mv V5__add_webhooks.sql V6__add_webhooks.sql"),
        "{text}"
    );
}

#[test]
fn lint_prints_json_and_github_annotations_and_exits_1_on_findings() {
    let dangerous =
        repo().join("crates/lint/tests/corpus/require-concurrent-index-creation/dangerous");
    let dir = dangerous.to_string_lossy();
    let output = run(&repo(), &["--json", "lint", "--migrations", &dir]);
    assert_exit(&output, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let findings = doc["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{doc}");
    let finding = findings[0].as_object().unwrap();
    let mut keys: Vec<&str> = finding.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["file", "help", "line", "message", "rule", "severity"]
    );
    assert_eq!(finding["rule"], "require-concurrent-index-creation");
    assert_eq!(finding["line"], 2);
    assert_eq!(finding["severity"], "error");
    assert!(finding["file"]
        .as_str()
        .unwrap()
        .ends_with("dangerous/V1__index_users_role.sql"));

    let output = run(
        &repo(),
        &["lint", "--migrations", &dir, "--format", "github"],
    );
    assert_exit(&output, 1);
    let line = stdout(&output);
    assert!(
        line.starts_with("::error file=")
            && line.contains(",line=2,title=require-concurrent-index-creation::"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "one line per finding: {line}");

    let output = run(&repo(), &["--json", "lint", "--migrations", "migrations"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), "{\n  \"findings\": []\n}");
}

#[test]
fn completions_come_from_the_same_definitions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&repo(), &["completions", shell]);
        assert_exit(&output, 0);
        let script = stdout(&output);
        for word in ["migrate", "rollback", "lint", "--env"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    assert_exit(&run(&repo(), &["completions", "tcsh"]), 2);
}

#[test]
fn every_commands_help_ends_with_two_or_three_examples() {
    let help = stdout(&run(&repo(), &["--help"]));
    let commands: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    for command in &commands {
        let output = run(&repo(), &[command.as_str(), "--help"]);
        assert_exit(&output, 0);
        let text = stdout(&output);
        let (_, examples) = text
            .rsplit_once("Examples:\n")
            .unwrap_or_else(|| panic!("{command} --help has no examples:\n{text}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            (2..=3).contains(&lines.len())
                && lines
                    .iter()
                    .all(|l| l.starts_with("  ecomind-db ") || l.starts_with("  cargo xtask ")),
            "{command}: {lines:?}"
        );
    }
}

#[test]
fn the_man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(MAN).arg(dir.path()).output().unwrap();
    assert_exit(&output, 0);
    for page in [
        "ecomind-db.1",
        "ecomind-db-migrate.1",
        "ecomind-db-lint.1",
        "ecomind-db-new.1",
        "ecomind-db-completions.1",
        "ecomind-db-config-check.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
}
