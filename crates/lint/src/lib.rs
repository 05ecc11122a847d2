//! The migration lint: finds statements that would lock or rewrite a production table, break
//! the running application, or lose data, with the rule, the file and line, why it is dangerous
//! and the safe pattern.
//!
//! Every file (up and down) is parsed by squawk's PostgreSQL parser and checked with squawk's
//! maintained rule set, configured for how our engine runs migrations (see [`rules`]); a few
//! rules are ours because only we know the directives and the folder: `CONCURRENTLY` in a
//! transactional migration, two files sharing a version, a file the tool would refuse, and a
//! suppression without a reason. Like the other libraries it returns data and never prints.

mod context;
pub mod rules;
mod suppress;

use std::collections::BTreeMap;
use std::path::Path;

use ecomind_migrate::catalog::{DESTRUCTIVE, NO_TRANSACTION};
use serde::Serialize;
use squawk_syntax::SourceFile;

pub use rules::{Rule, Severity};

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file name, as it appears in the migrations folder.
    pub file: String,
    /// The 1-based line where the problem starts.
    pub line: usize,
    /// The rule's id, such as `require-concurrent-index-creation`.
    pub rule: String,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong and why it is dangerous.
    pub message: String,
    /// The safe way to do it.
    pub help: String,
}

/// Every finding of a folder, in file then line order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// How many files were read.
    pub files: usize,
    /// What was found; empty when the folder is clean.
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or the folder could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The folder or file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Lints every migration file of a folder (the same files the catalog loads).
pub fn lint_dir(dir: &Path) -> Result<Report, Error> {
    let read_error = |path: &Path, source| Error::Read {
        path: path.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.eq_ignore_ascii_case("README.md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
        files.push((name, text));
    }
    Ok(lint(&files))
}

/// Lints `(file name, contents)` pairs, such as a folder's files or the copies in the binary.
pub fn lint<N: AsRef<str>, T: AsRef<str>>(files: &[(N, T)]) -> Report {
    let mut files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_ref(), t.as_ref()))
        .collect();
    files.sort();
    let mut findings = duplicate_versions(&files);
    if findings.is_empty() {
        findings.extend(catalog_problems(&files));
    }
    let ups: BTreeMap<&str, &str> = files
        .iter()
        .filter(|(name, _)| !name.ends_with(".down.sql"))
        .map(|(name, text)| (name.trim_end_matches(".sql"), *text))
        .collect();
    for (name, text) in &files {
        if !name.ends_with(".sql") {
            continue;
        }
        let up = name
            .strip_suffix(".down.sql")
            .and_then(|stem| ups.get(stem).copied());
        findings.extend(lint_file(name, text, up));
    }
    findings.sort_by(|a, b| (&a.file, a.line, &a.rule).cmp(&(&b.file, b.line, &b.rule)));
    findings.dedup();
    Report {
        files: files.len(),
        findings,
    }
}

/// How a file runs, from its leading directive lines.
#[derive(Clone, Copy, Debug, Default)]
struct Directives {
    transactional: bool,
    destructive: bool,
}

fn directives(text: &str) -> Directives {
    let mut found = Directives {
        transactional: true,
        destructive: false,
    };
    for line in text
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("--"))
    {
        match line {
            NO_TRANSACTION => found.transactional = false,
            DESTRUCTIVE => found.destructive = true,
            _ => {}
        }
    }
    found
}

/// Lints one file; `up` is the matching up script when `file` is a down script.
fn lint_file(file: &str, text: &str, up: Option<&str>) -> Vec<Finding> {
    let lines = context::Lines::new(text);
    let parse = SourceFile::parse(text);
    let errors = parse.errors();
    if !errors.is_empty() {
        // A broken tree gives meaningless findings: report where the parser gave up, once a line.
        let mut seen = std::collections::BTreeSet::new();
        return errors
            .iter()
            .filter_map(|e| {
                let line = lines.line_of(u32::from(e.range().start()) as usize);
                seen.insert(line).then(|| {
                    rules::finding(
                        Rule::SyntaxError,
                        file,
                        line,
                        format!(
                            "{}: PostgreSQL cannot parse this statement, so the migration would fail when it runs",
                            e.message()
                        ),
                    )
                })
            })
            .collect();
    }
    let directives = directives(text);
    let tree = parse.tree();
    let mut linter = rules::squawk_linter(directives.transactional);
    let violations = linter.lint(&parse, text);
    let created = context::Created::by(&tree);
    let undone = up.map(|up| context::Created::by(&SourceFile::parse(up).tree()));

    let mut findings = Vec::new();
    let mut kept = Vec::new();
    for v in &violations {
        let start = u32::from(v.text_range.start()) as usize;
        let Some(rule) = Rule::of_squawk(v.code) else {
            continue;
        };
        // Context squawk lacks: in a no-transaction file, a table created earlier in the same
        // file is still new and unused when it is indexed.
        if rule == Rule::RequireConcurrentIndexCreation && created.indexes_new_table(&tree, start) {
            continue;
        }
        // A down script that drops what its own up created is the exact inverse, as it must be.
        if let Some(undone) = &undone {
            if matches!(rule, Rule::BanDropTable | Rule::BanDropColumn)
                && undone.covers_drop(&tree, start)
            {
                continue;
            }
        }
        if directives.destructive && rule.is_drop() {
            continue;
        }
        kept.push((rule, v));
    }
    // One problem, one finding: the specific rule wins over the generic "missing NOT VALID"
    // that squawk also reports for UNIQUE and PRIMARY KEY, which cannot be NOT VALID.
    for (rule, v) in &kept {
        if *rule == Rule::ConstraintMissingNotValid
            && kept.iter().any(|(other, o)| {
                matches!(
                    other,
                    Rule::DisallowedUniqueConstraint | Rule::AddingSerialPrimaryKeyField
                ) && v.text_range.contains_range(o.text_range)
            })
        {
            continue;
        }
        let line = lines.line_of(u32::from(v.text_range.start()) as usize);
        let message = match rule {
            Rule::Squawk(_) => v.message.to_string(),
            _ => rule.why().to_owned(),
        };
        let mut finding = rules::finding(*rule, file, line, message);
        if let (Rule::Squawk(_), Some(help)) = (rule, &v.help) {
            finding.help = help.to_string();
        }
        findings.push((u32::from(v.text_range.start()) as usize, finding));
    }
    if directives.transactional {
        for offset in context::concurrent_statements(text) {
            findings.push((
                offset,
                rules::finding(
                    Rule::ConcurrentlyInTransaction,
                    file,
                    lines.line_of(offset),
                    Rule::ConcurrentlyInTransaction.why().to_owned(),
                ),
            ));
        }
    }
    suppress::apply(file, &lines, &tree, findings)
}

/// Two up files (or two down files) with one version: the usual result of two branches that
/// each added the next version.
fn duplicate_versions(files: &[(&str, &str)]) -> Vec<Finding> {
    let mut by_version: BTreeMap<(u64, bool), Vec<&str>> = BTreeMap::new();
    let mut head = 0;
    for (name, _) in files {
        let Some(version) = version_of(name) else {
            continue;
        };
        head = head.max(version);
        by_version
            .entry((version, name.ends_with(".down.sql")))
            .or_default()
            .push(name);
    }
    let mut findings = Vec::new();
    let mut next = head + 1;
    for ((version, _), names) in by_version {
        if names.len() < 2 {
            continue;
        }
        for (i, name) in names.iter().enumerate().skip(1) {
            let others: Vec<&str> = names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| *n)
                .collect();
            let stem = name.trim_end_matches(".sql").trim_end_matches(".down");
            let rest = stem.split_once("__").map_or(stem, |(_, rest)| rest);
            let mut finding = rules::finding(
                Rule::DuplicateVersion,
                name,
                1,
                format!(
                    "{name} and {} both have version {version}: every command refuses the folder; this happens when two branches each add the next version",
                    others.join(", ")
                ),
            );
            finding.help = format!(
                "renumber the migration merged last to the next free version: `git mv {name} V{next}__{rest}{suffix}` (and its {pair} file); versions must be above the head of the main branch",
                suffix = if name.ends_with(".down.sql") { ".down.sql" } else { ".sql" },
                pair = if name.ends_with(".down.sql") { "up" } else { "down" },
            );
            findings.push(finding);
            if !name.ends_with(".down.sql") {
                next += 1;
            }
        }
    }
    findings
}

fn version_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('V')?.split_once("__")?.0;
    digits.parse().ok()
}

/// What the catalog itself refuses (malformed names, missing down files, unknown directives,
/// transaction control): every command would refuse the folder.
fn catalog_problems(files: &[(&str, &str)]) -> Option<Finding> {
    let error = ecomind_migrate::Catalog::from_files(files.iter().copied()).err()?;
    let file = match &error {
        ecomind_migrate::Error::InvalidCatalog { file, .. } => file.clone(),
        _ => String::new(),
    };
    let text = files
        .iter()
        .find(|(name, _)| *name == file)
        .map_or("", |(_, text)| *text);
    // "line N controls the transaction": point at that line.
    let message = error.to_string();
    let line = message
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .filter(|n: &usize| *n >= 1 && *n <= text.lines().count().max(1))
        .unwrap_or(1);
    Some(rules::finding(Rule::InvalidCatalog, &file, line, message))
}
