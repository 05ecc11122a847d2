//! The rules: which of squawk's rules run and how they are configured for our engine, and the
//! message (why it is dangerous) and help (the safe pattern) of every rule we document.

use serde::Serialize;
use squawk_linter::{Linter, Rule as SquawkRule};

use crate::Finding;

/// How bad a finding is. Every finding fails `lint`; the severity tells a reader (and a GitHub
/// annotation) whether it is a known danger or one of squawk's other advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Locks, rewrites, breaks the running application, loses data, or cannot run.
    Error,
    /// Another of squawk's rules: worth a look, suppress it with a reason if it is fine here.
    Warning,
}

/// A rule: the ones we document (with our own message and safe pattern), and any other rule of
/// squawk's maintained set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// CREATE INDEX without CONCURRENTLY on a table that existed before the migration.
    RequireConcurrentIndexCreation,
    /// DROP INDEX without CONCURRENTLY.
    RequireConcurrentIndexDeletion,
    /// CONCURRENTLY in a migration that runs in a transaction (ours: squawk cannot know the directive).
    ConcurrentlyInTransaction,
    /// ADD COLUMN ... NOT NULL without a default.
    AddingRequiredField,
    /// ADD COLUMN with a volatile default.
    AddingFieldWithDefault,
    /// ALTER COLUMN ... TYPE.
    ChangingColumnType,
    /// SET NOT NULL without a validated CHECK first.
    AddingNotNullableField,
    /// ADD FOREIGN KEY or CHECK without NOT VALID.
    ConstraintMissingNotValid,
    /// ADD UNIQUE without an index built concurrently first.
    DisallowedUniqueConstraint,
    /// ADD PRIMARY KEY without an index built concurrently first.
    AddingSerialPrimaryKeyField,
    /// DROP TABLE.
    BanDropTable,
    /// DROP COLUMN.
    BanDropColumn,
    /// RENAME of a table.
    RenamingTable,
    /// RENAME of a column.
    RenamingColumn,
    /// A statement PostgreSQL's grammar cannot parse (ours).
    SyntaxError,
    /// Two files with one version (ours).
    DuplicateVersion,
    /// A file the catalog refuses (ours).
    InvalidCatalog,
    /// A suppression comment without a known rule or a reason (ours).
    InvalidSuppression,
    /// Any other rule of squawk's default set that we keep.
    Squawk(SquawkRule),
}

/// Squawk rules we turn off, each with the reason (also in the README).
pub const TURNED_OFF: &[(SquawkRule, &str)] = &[
    (SquawkRule::RequireLockTimeout, "the engine sets the environment's lock_timeout on every migration's session"),
    (SquawkRule::RequireStatementTimeout, "the engine sets the environment's statement_timeout on every migration's session"),
    (SquawkRule::RequireTimeoutSettings, "an alias of the two rules above"),
    (SquawkRule::PreferRobustStmts, "a transactional migration is all or nothing, so IF NOT EXISTS adds nothing to it"),
    (SquawkRule::BanConcurrentIndexCreationInTransaction, "replaced by concurrently-in-transaction, which knows the no-transaction directive and also covers DROP INDEX, REINDEX and single-statement files"),
    (SquawkRule::AddingForeignKeyConstraint, "the same finding as constraint-missing-not-valid for a foreign key"),
    (SquawkRule::TransactionNesting, "the catalog already refuses BEGIN, COMMIT and ROLLBACK in a migration (invalid-catalog)"),
    (SquawkRule::BanUncommittedTransaction, "the catalog already refuses BEGIN in a migration (invalid-catalog)"),
    (SquawkRule::PreferBigintOverInt, "a schema-design preference, not a migration danger; V1 reproduces production's types exactly"),
    (SquawkRule::PreferBigintOverSmallint, "a schema-design preference, not a migration danger"),
    (SquawkRule::PreferIdentity, "a schema-design preference, not a migration danger; production's audit_logs uses bigserial"),
    (SquawkRule::PreferTextField, "a schema-design preference: widening a varchar needs no rewrite, and production's columns are varchar"),
];

/// The documented rules, in the order the README lists them.
pub const DOCUMENTED: &[Rule] = &[
    Rule::RequireConcurrentIndexCreation,
    Rule::RequireConcurrentIndexDeletion,
    Rule::ConcurrentlyInTransaction,
    Rule::AddingRequiredField,
    Rule::AddingFieldWithDefault,
    Rule::ChangingColumnType,
    Rule::AddingNotNullableField,
    Rule::ConstraintMissingNotValid,
    Rule::DisallowedUniqueConstraint,
    Rule::AddingSerialPrimaryKeyField,
    Rule::BanDropTable,
    Rule::BanDropColumn,
    Rule::RenamingTable,
    Rule::RenamingColumn,
    Rule::SyntaxError,
    Rule::DuplicateVersion,
    Rule::InvalidCatalog,
    Rule::InvalidSuppression,
];

/// squawk's linter as our engine needs it: PostgreSQL 13 (the oldest we support), and a
/// transactional file treated as one transaction, so tables it creates may be indexed plainly.
pub(crate) fn squawk_linter(transactional: bool) -> Linter {
    let off: Vec<SquawkRule> = TURNED_OFF.iter().map(|(rule, _)| *rule).collect();
    let mut linter = Linter::with_rules(&[], &off);
    linter.settings.assume_in_transaction = transactional;
    linter.settings.pg_version = "13".parse().expect("13 is a version");
    linter
}

pub(crate) fn finding(rule: Rule, file: &str, line: usize, message: String) -> Finding {
    Finding {
        file: file.to_owned(),
        line,
        rule: rule.id(),
        severity: rule.severity(),
        message,
        help: rule.help().to_owned(),
    }
}

impl Rule {
    /// Our rule for a squawk rule.
    pub fn of_squawk(rule: SquawkRule) -> Option<Rule> {
        Some(match rule {
            SquawkRule::RequireConcurrentIndexCreation => Rule::RequireConcurrentIndexCreation,
            SquawkRule::RequireConcurrentIndexDeletion => Rule::RequireConcurrentIndexDeletion,
            SquawkRule::AddingRequiredField => Rule::AddingRequiredField,
            SquawkRule::AddingFieldWithDefault => Rule::AddingFieldWithDefault,
            SquawkRule::ChangingColumnType => Rule::ChangingColumnType,
            SquawkRule::AddingNotNullableField => Rule::AddingNotNullableField,
            SquawkRule::ConstraintMissingNotValid => Rule::ConstraintMissingNotValid,
            SquawkRule::DisallowedUniqueConstraint => Rule::DisallowedUniqueConstraint,
            SquawkRule::AddingSerialPrimaryKeyField => Rule::AddingSerialPrimaryKeyField,
            SquawkRule::BanDropTable => Rule::BanDropTable,
            SquawkRule::BanDropColumn => Rule::BanDropColumn,
            SquawkRule::RenamingTable => Rule::RenamingTable,
            SquawkRule::RenamingColumn => Rule::RenamingColumn,
            // squawk reports ignores it did not use; ours are checked by our own rule.
            SquawkRule::UnusedIgnore => return None,
            other => Rule::Squawk(other),
        })
    }

    /// The rule named by an id, as a suppression comment writes it; `None` if no rule runs under that id.
    pub fn from_id(id: &str) -> Option<Rule> {
        if let Some(rule) = DOCUMENTED.iter().find(|r| r.id() == id) {
            return Some(*rule);
        }
        let squawk = SquawkRule::try_from(id).ok()?;
        if TURNED_OFF.iter().any(|(off, _)| *off == squawk) {
            return None;
        }
        Rule::of_squawk(squawk)
    }

    /// The id printed in findings and written in suppressions.
    pub fn id(&self) -> String {
        match self {
            Rule::ConcurrentlyInTransaction => "concurrently-in-transaction".to_owned(),
            Rule::SyntaxError => "syntax-error".to_owned(),
            Rule::DuplicateVersion => "duplicate-version".to_owned(),
            Rule::InvalidCatalog => "invalid-catalog".to_owned(),
            Rule::InvalidSuppression => "invalid-suppression".to_owned(),
            other => other.squawk().map(|r| r.to_string()).unwrap_or_default(),
        }
    }

    fn squawk(&self) -> Option<SquawkRule> {
        Some(match self {
            Rule::RequireConcurrentIndexCreation => SquawkRule::RequireConcurrentIndexCreation,
            Rule::RequireConcurrentIndexDeletion => SquawkRule::RequireConcurrentIndexDeletion,
            Rule::AddingRequiredField => SquawkRule::AddingRequiredField,
            Rule::AddingFieldWithDefault => SquawkRule::AddingFieldWithDefault,
            Rule::ChangingColumnType => SquawkRule::ChangingColumnType,
            Rule::AddingNotNullableField => SquawkRule::AddingNotNullableField,
            Rule::ConstraintMissingNotValid => SquawkRule::ConstraintMissingNotValid,
            Rule::DisallowedUniqueConstraint => SquawkRule::DisallowedUniqueConstraint,
            Rule::AddingSerialPrimaryKeyField => SquawkRule::AddingSerialPrimaryKeyField,
            Rule::BanDropTable => SquawkRule::BanDropTable,
            Rule::BanDropColumn => SquawkRule::BanDropColumn,
            Rule::RenamingTable => SquawkRule::RenamingTable,
            Rule::RenamingColumn => SquawkRule::RenamingColumn,
            Rule::Squawk(rule) => *rule,
            _ => return None,
        })
    }

    /// Errors for the documented rules, warnings for squawk's others.
    pub fn severity(&self) -> Severity {
        match self {
            Rule::Squawk(_) => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// True for rules about deleting data, which `-- ecomind:destructive` acknowledges.
    pub fn is_drop(&self) -> bool {
        let id = self.id();
        id.starts_with("ban-drop-") || id == "ban-truncate-cascade"
    }

    /// Why it is dangerous.
    pub fn why(&self) -> &'static str {
        match self {
            Rule::RequireConcurrentIndexCreation => "CREATE INDEX without CONCURRENTLY on a table that exists before this migration blocks every write to it (SHARE lock) until the whole index is built",
            Rule::RequireConcurrentIndexDeletion => "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table: reads and writes queue behind it, and behind any long transaction it waits for",
            Rule::ConcurrentlyInTransaction => "CONCURRENTLY cannot run inside a transaction block, and this migration runs in one (its first line is not `-- ecomind:no-transaction`): PostgreSQL will refuse it",
            Rule::AddingRequiredField => "ADD COLUMN ... NOT NULL without a DEFAULT fails on a table that has rows, and breaks every INSERT of the running application that does not name the new column",
            Rule::AddingFieldWithDefault => "a volatile DEFAULT (random(), gen_random_uuid(), clock_timestamp(), nextval(), ...) makes PostgreSQL rewrite the whole table under an ACCESS EXCLUSIVE lock, blocking reads and writes",
            Rule::ChangingColumnType => "ALTER COLUMN ... TYPE rewrites the table and its indexes under an ACCESS EXCLUSIVE lock (but for a few binary-compatible changes), and breaks clients that read the old type",
            Rule::AddingNotNullableField => "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock to prove it holds no NULL, blocking reads and writes meanwhile",
            Rule::ConstraintMissingNotValid => "adding a FOREIGN KEY or CHECK constraint checks every existing row while holding a lock that blocks writes (on both tables for a foreign key); NOT VALID then VALIDATE in one transaction is no better",
            Rule::DisallowedUniqueConstraint => "ADD CONSTRAINT ... UNIQUE builds its index while holding an ACCESS EXCLUSIVE lock: reads and writes wait for the whole build",
            Rule::AddingSerialPrimaryKeyField => "ADD PRIMARY KEY builds its index (and checks for NULLs) while holding an ACCESS EXCLUSIVE lock: reads and writes wait for the whole build",
            Rule::BanDropTable => "DROP TABLE deletes the table and its data for good, and the application still running the previous release fails on its next query of it",
            Rule::BanDropColumn => "DROP COLUMN deletes the column's data for good, and the application still running the previous release fails when it reads or writes it",
            Rule::RenamingTable => "the application still running the previous release (during a rolling deploy, or after a rollback of the code) queries the old name and fails",
            Rule::RenamingColumn => "the application still running the previous release (during a rolling deploy, or after a rollback of the code) uses the old column name and fails",
            Rule::SyntaxError => "PostgreSQL cannot parse this statement, so the migration would fail when it runs",
            Rule::DuplicateVersion => "two files have one version: every command refuses the folder",
            Rule::InvalidCatalog => "every command refuses this migrations folder",
            Rule::InvalidSuppression => "a suppression must name a rule that runs and say why the finding is safe here",
            Rule::Squawk(_) => "",
        }
    }

    /// The safe pattern.
    pub fn help(&self) -> &'static str {
        match self {
            Rule::RequireConcurrentIndexCreation => "build it in a migration whose first line is `-- ecomind:no-transaction`: CREATE INDEX CONCURRENTLY IF NOT EXISTS name ON table (...); a table created earlier in the same file needs no CONCURRENTLY",
            Rule::RequireConcurrentIndexDeletion => "DROP INDEX CONCURRENTLY IF EXISTS name, in a migration whose first line is `-- ecomind:no-transaction`",
            Rule::ConcurrentlyInTransaction => "put the statement in its own migration whose first line is `-- ecomind:no-transaction`, with IF NOT EXISTS (or IF EXISTS) so that a rerun after a failure is safe",
            Rule::AddingRequiredField => "add the column nullable, or with a constant DEFAULT (no rewrite since PostgreSQL 11); backfill, then make it NOT NULL in a later migration through a validated CHECK",
            Rule::AddingFieldWithDefault => "add the column without a default (or with a constant one), backfill existing rows in batches, then ALTER COLUMN ... SET DEFAULT for new rows",
            Rule::ChangingColumnType => "add a column of the new type, backfill it in batches and write both from the application, switch readers, then drop the old column in a later release",
            Rule::AddingNotNullableField => "ADD CONSTRAINT name CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT name in a later (or a `-- ecomind:no-transaction`) migration; SET NOT NULL then uses the validated check and skips the scan, and the CHECK can be dropped",
            Rule::ConstraintMissingNotValid => "ADD CONSTRAINT ... NOT VALID (instant), then VALIDATE CONSTRAINT in a later migration or a `-- ecomind:no-transaction` one: validating takes only a SHARE UPDATE EXCLUSIVE lock, so reads and writes go on",
            Rule::DisallowedUniqueConstraint => "CREATE UNIQUE INDEX CONCURRENTLY name ON table (...) in a `-- ecomind:no-transaction` migration, then ADD CONSTRAINT name UNIQUE USING INDEX name",
            Rule::AddingSerialPrimaryKeyField => "CREATE UNIQUE INDEX CONCURRENTLY name ON table (...) in a `-- ecomind:no-transaction` migration, then ADD CONSTRAINT name PRIMARY KEY USING INDEX name",
            Rule::BanDropTable => "stop using the table in a release first; then drop it in a migration whose first lines include `-- ecomind:destructive`, so the lint, the dry-run and the reviewer see that the data loss is intended",
            Rule::BanDropColumn => "stop reading and writing the column in a release first; then drop it in a migration whose first lines include `-- ecomind:destructive`, so the lint, the dry-run and the reviewer see that the data loss is intended",
            Rule::RenamingTable => "expand and contract: create the new table (or a view under the new name), move readers and writers over in a release, then drop the old one in a later migration",
            Rule::RenamingColumn => "expand and contract: add the new column, write both and backfill, switch readers in a release, then drop the old column in a later migration",
            Rule::SyntaxError => "fix the statement; `cargo xtask migrate --env dev` runs it against the local dev database",
            Rule::DuplicateVersion => "renumber the migration merged last to the next free version (both its up and down files)",
            Rule::InvalidCatalog => "fix the file as the message says",
            Rule::InvalidSuppression => "write `-- ecomind-lint: allow <rule> <why it is safe here>` on the line above the statement",
            Rule::Squawk(_) => "see squawk's documentation of this rule, or suppress it with `-- ecomind-lint: allow <rule> <why it is safe here>`",
        }
    }
}
