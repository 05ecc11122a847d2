//! Helpers shared by the engine's integration tests.

use std::path::Path;
use std::time::Duration;

use ecomind_migrate::{migrate, Actor, Catalog, Error, MigrateOptions, RunOptions, Target};
use ecomind_testkit::TestDb;

/// The actor every test records in the event log.
pub fn actor() -> Actor {
    Actor {
        os_user: "tester".to_owned(),
        host: "testhost".to_owned(),
        tool_version: "test".to_owned(),
    }
}

/// The repository's own migrations.
pub fn repo_catalog() -> Catalog {
    Catalog::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations"))
        .expect("the repository's migrations load")
}

/// A catalog of `(file name, SQL)` pairs that must be valid.
pub fn catalog(files: &[(&str, &str)]) -> Catalog {
    Catalog::from_files(files.iter().copied()).expect("test catalog is valid")
}

/// The versions in refinery's history, lowest first; none when the history table does not exist.
pub fn applied_versions(db: &TestDb) -> Vec<i32> {
    if !table_exists(db, "refinery_schema_history") {
        return Vec::new();
    }
    db.client()
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .expect("history readable")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Whether a relation of this name is visible.
pub fn table_exists(db: &TestDb, name: &str) -> bool {
    db.client()
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .expect("query")
        .get(0)
}

/// Migrate options as the tests use them: everything pending, a generous lock wait, the
/// server's own timeouts.
pub fn options(actor: &Actor) -> MigrateOptions<'_> {
    MigrateOptions {
        target: Target::Latest,
        allow_out_of_order: false,
        run: run_options(actor),
    }
}

/// How the tests run scripts: a generous lock wait, the server's own timeouts, no observer.
pub fn run_options(actor: &Actor) -> RunOptions<'_> {
    RunOptions {
        lock_wait: Duration::from_secs(30),
        lock_timeout: None,
        statement_timeout: None,
        actor,
        observer: None,
    }
}

/// Migrates up to `target` (everything when `None`) with the test options.
pub fn migrate_to(
    client: &mut postgres::Client,
    catalog: &Catalog,
    target: Option<i32>,
) -> Result<(), Error> {
    let actor = actor();
    let options = MigrateOptions {
        target: target.map_or(Target::Latest, Target::UpTo),
        ..options(&actor)
    };
    migrate(client, catalog, &options, &mut |_| {}).map(|_| ())
}
