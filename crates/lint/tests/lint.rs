//! The lint against its corpus (one dangerous and one safe migrations folder per rule, in
//! `tests/corpus/<rule>/`) and against the project's own migrations.

use std::path::{Path, PathBuf};

use ecomind_lint::rules::DOCUMENTED;
use ecomind_lint::{lint, lint_dir, Finding, Report};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{}:{}: {} {}\n", f.file, f.line, f.rule, f.message))
        .collect()
}

fn lint_case(dir: &Path) -> Report {
    lint_dir(dir).unwrap_or_else(|e| panic!("cannot lint {}: {e}", dir.display()))
}

#[test]
fn every_documented_rule_has_a_dangerous_and_a_safe_case() {
    for rule in DOCUMENTED {
        let id = rule.id();
        for kind in ["dangerous", "safe"] {
            let dir = corpus().join(&id).join(kind);
            assert!(dir.is_dir(), "no corpus case {}", dir.display());
        }
    }
}

#[test]
fn each_rule_fires_on_its_dangerous_case_and_nothing_fires_on_its_safe_case() {
    let mut failures = String::new();
    for entry in std::fs::read_dir(corpus()).expect("corpus folder") {
        let dir = entry.expect("corpus entry").path();
        let rule = dir.file_name().unwrap().to_string_lossy().into_owned();
        let dangerous = lint_case(&dir.join("dangerous"));
        let hits: Vec<&Finding> = dangerous
            .findings
            .iter()
            .filter(|f| f.rule == rule)
            .collect();
        if hits.is_empty() {
            failures.push_str(&format!(
                "{rule}: the dangerous case found no {rule}, only:\n{}",
                render(&dangerous.findings)
            ));
        }
        for hit in hits {
            if hit.line == 0 || hit.message.is_empty() || hit.help.is_empty() {
                failures.push_str(&format!("{rule}: incomplete finding {hit:?}\n"));
            }
        }
        let safe = lint_case(&dir.join("safe"));
        if !safe.is_clean() {
            failures.push_str(&format!(
                "{rule}: the safe case is not clean:\n{}",
                render(&safe.findings)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn the_projects_own_migrations_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let report = lint_case(&dir);
    assert!(report.files >= 8, "read only {} files", report.files);
    assert!(report.is_clean(), "{}", render(&report.findings));
}

/// `check(files, expected)`: the rendered findings of a folder given as data.
fn check(files: &[(&str, &str)], expected: &str) {
    let got = render(&lint(files).findings);
    assert_eq!(got, expected, "\nexpected:\n{expected}\ngot:\n{got}");
}

#[test]
fn findings_name_the_line_of_the_statement() {
    check(
        &[(
            "V7__two.sql",
            "-- ecomind:irreversible\n-- two statements\n\nALTER TABLE users\n    ADD COLUMN a integer NOT NULL;\n\nDROP INDEX idx_users_email;\n",
        )],
        "V7__two.sql:5: adding-required-field ADD COLUMN ... NOT NULL without a DEFAULT fails on a table that has rows, and breaks every INSERT of the running application that does not name the new column\n\
         V7__two.sql:7: require-concurrent-index-deletion DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table: reads and writes queue behind it, and behind any long transaction it waits for\n",
    );
}

#[test]
fn a_suppression_covers_only_the_rule_it_names_on_the_statement_below() {
    let sql = "-- ecomind:irreversible\n\
               -- ecomind-lint: allow ban-drop-column the column is unused since release 40\n\
               -- (a second comment line between is fine)\n\
               ALTER TABLE users DROP COLUMN role;\n\
               ALTER TABLE users DROP COLUMN email;\n";
    let report = lint(&[("V3__x.sql", sql)]);
    let lines: Vec<(usize, &str)> = report
        .findings
        .iter()
        .map(|f| (f.line, f.rule.as_str()))
        .collect();
    assert_eq!(lines, [(5, "ban-drop-column")]);
}

#[test]
fn a_suppression_of_an_unknown_or_turned_off_rule_is_a_finding() {
    for (id, why) in [
        ("no-such-rule", "`no-such-rule` is not a rule the lint runs"),
        (
            "require-lock-timeout",
            "`require-lock-timeout` is not a rule the lint runs",
        ),
        ("", "the suppression names no rule"),
    ] {
        let sql = format!("-- ecomind:irreversible\n-- ecomind-lint: allow {id}\nSELECT 1;\n");
        let report = lint(&[("V1__x.sql", sql.as_str())]);
        assert_eq!(report.findings.len(), 1, "{id}: {:?}", report.findings);
        assert_eq!(report.findings[0].rule, "invalid-suppression");
        assert!(
            report.findings[0].message.starts_with(why),
            "{id}: {}",
            report.findings[0].message
        );
    }
}

#[test]
fn a_down_may_drop_only_what_its_own_up_created() {
    let up = "CREATE TABLE a (id int);\nALTER TABLE users ADD COLUMN b text;\n";
    let down = "DROP TABLE a;\nALTER TABLE users DROP COLUMN b;\nALTER TABLE users DROP COLUMN role;\nDROP TABLE organizations;\n";
    let report = lint(&[("V9__x.sql", up), ("V9__x.down.sql", down)]);
    let lines: Vec<(usize, &str)> = report
        .findings
        .iter()
        .map(|f| (f.line, f.rule.as_str()))
        .collect();
    assert_eq!(lines, [(3, "ban-drop-column"), (4, "ban-drop-table")]);
}

#[test]
fn duplicate_versions_get_renumbering_advice_past_the_head() {
    let report = lint(&[
        ("V4__a.sql", "-- ecomind:irreversible\nSELECT 1;\n"),
        ("V5__b.sql", "-- ecomind:irreversible\nSELECT 1;\n"),
        ("V5__c.sql", "-- ecomind:irreversible\nSELECT 1;\n"),
    ]);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(finding.rule, "duplicate-version");
    assert_eq!(finding.file, "V5__c.sql");
    assert!(
        finding.help.contains("git mv V5__c.sql V6__c.sql"),
        "{}",
        finding.help
    );
}

#[test]
fn concurrently_in_a_transactional_file_is_found_for_every_kind() {
    let sql = "-- ecomind:irreversible\n\
               CREATE UNIQUE INDEX CONCURRENTLY a ON users (email);\n\
               DROP INDEX CONCURRENTLY b;\n\
               REINDEX INDEX CONCURRENTLY c;\n\
               REFRESH MATERIALIZED VIEW CONCURRENTLY d;\n";
    let report = lint(&[("V1__x.sql", sql)]);
    let lines: Vec<usize> = report
        .findings
        .iter()
        .filter(|f| f.rule == "concurrently-in-transaction")
        .map(|f| f.line)
        .collect();
    assert_eq!(lines, [2, 3, 4]);
}
