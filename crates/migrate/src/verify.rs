//! Verifying a live schema against the schema its migrations should produce.
//!
//! The expected schema is built on the target server itself, by a rehearsal: inside one
//! transaction that is always rolled back, a scratch schema is created, the search path is set
//! to it alone, the migrations run there, and the result is fingerprinted with every mention
//! of the scratch schema read as the live home schema. This needs no PostgreSQL binaries on
//! the deploy host, and the expected schema is printed by the same server major version, with
//! the same extensions, as the live one, so the comparison is exact.
//!
//! Limits, each refused with a clear error rather than guessed around:
//! - Statements that cannot run in a transaction cannot be rehearsed as written. For
//!   `-- ecomind:no-transaction` migrations, `CREATE INDEX CONCURRENTLY`,
//!   `DROP INDEX CONCURRENTLY` and `REINDEX ... CONCURRENTLY` are rehearsed without
//!   `CONCURRENTLY`, which builds the same object. Anything else (VACUUM, ...) fails the rehearsal.
//! - Migrations must create their objects unqualified, in the home schema: a migration that
//!   touches a live relation (`public.users` spelt out) is caught by the locks it took and
//!   refused, and transaction control or `search_path` changes in a migration are refused
//!   before they run. Other schemas are not part of the comparison; extensions are, database-wide.

use std::time::Duration;

use postgres::Client;
use serde::Serialize;

use crate::catalog::{Catalog, Migration};
use crate::classify::{classify, StatementKind};
use crate::fingerprint::{self, Difference, Fingerprint};
use crate::{history, lock, plan, rehearsal, script, Error};

/// How to verify. There is no `Default`: the waits are the caller's choice.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// How long to wait for a running migration's lock (verify does not compare a schema
    /// half way through a migration).
    pub lock_wait: Duration,
    /// `lock_timeout` for the rehearsal; it only locks its own scratch objects, so a wait
    /// means a migration reached for a live object.
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` for the rehearsal.
    pub statement_timeout: Option<Duration>,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The schema compared: where unqualified DDL creates objects.
    pub schema: String,
    /// The applied versions whose migrations built the expected schema, lowest first.
    pub versions: Vec<i32>,
    /// How many objects the expected schema has.
    pub expected_objects: usize,
    /// How the live schema differs from the expected one, ordered by object; empty when it matches.
    pub differences: Vec<Difference>,
}

impl VerifyReport {
    /// True when the live schema is exactly what the applied migrations produce.
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares the live schema with the schema the applied migrations produce. Drift is not an
/// error: it is in the report (the cli exits 4 on it). A history that disagrees with the files
/// is an error, because the expected schema cannot be known.
pub fn verify(
    client: &mut Client,
    catalog: &Catalog,
    options: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    lock::holding(client, options.lock_wait, |client| {
        verify_locked(client, catalog, options)
    })
}

fn verify_locked(
    client: &mut Client,
    catalog: &Catalog,
    options: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    let applied = history::read(client)?;
    let (_, problems) = plan::plan(catalog, &applied, true);
    if !problems.is_empty() {
        return Err(Error::Diverged(problems));
    }
    let migrations: Vec<&Migration> = applied
        .iter()
        .filter_map(|a| catalog.get(a.version))
        .collect();
    let comparison = compare(client, &migrations, options)?;
    Ok(VerifyReport {
        schema: comparison.schema,
        versions: migrations.iter().map(|m| m.version()).collect(),
        expected_objects: comparison.expected_objects,
        differences: comparison.differences,
    })
}

/// A live schema set against a rehearsed one.
pub(crate) struct Comparison {
    pub schema: String,
    pub expected_objects: usize,
    pub differences: Vec<Difference>,
}

/// Fingerprints the live home schema, rehearses `migrations` in a scratch schema, and diffs.
pub(crate) fn compare(
    client: &mut Client,
    migrations: &[&Migration],
    options: &VerifyOptions,
) -> Result<Comparison, Error> {
    let live = {
        let mut tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .map_err(Error::db("cannot begin the fingerprint transaction"))?;
        let home = fingerprint::home_schema(&mut tx)?.ok_or(Error::NoHomeSchema)?;
        let database = Database::read(&mut tx, &home)?;
        set_local_search_path(&mut tx, &database.fingerprint_path(&home))?;
        let found = fingerprint::collect_schema(&mut tx, &home)?;
        tx.commit()
            .map_err(Error::db("cannot end the fingerprint transaction"))?;
        (home, database, found)
    };
    let (home, database, live) = live;
    let expected = rehearse(client, migrations, &home, &database, options)?;
    Ok(Comparison {
        expected_objects: expected.len(),
        differences: fingerprint::diff(&expected, &live),
        schema: home,
    })
}

/// What the rehearsal needs to know of the database it runs in.
struct Database {
    /// Installed extensions and existing schemas.
    installed: rehearsal::Installed,
    /// The schemas of installed extensions, but `pg_catalog`.
    extension_schemas: Vec<String>,
    /// The existing schemas of the session's search path, the home schema first.
    search_path: Vec<String>,
}

impl Database {
    fn read(tx: &mut postgres::Transaction<'_>, home: &str) -> Result<Database, Error> {
        let rows = tx
            .query(
                "SELECT e.extname::text, n.nspname::text FROM pg_extension e \
                 JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 2, 1",
                &[],
            )
            .map_err(Error::db("cannot read the extensions of the database"))?;
        let mut extensions = std::collections::HashSet::new();
        let mut extension_schemas: Vec<String> = Vec::new();
        for row in rows {
            extensions.insert(row.get::<_, String>(0));
            let schema: String = row.get(1);
            if schema != "pg_catalog" && !extension_schemas.contains(&schema) {
                extension_schemas.push(schema);
            }
        }
        let schemas = tx
            .query("SELECT nspname::text FROM pg_namespace", &[])
            .map_err(Error::db("cannot read the schemas of the database"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut search_path: Vec<String> = tx
            .query_one("SELECT current_schemas(false)::text[]", &[])
            .map_err(Error::db("cannot read the search path"))?
            .get(0);
        search_path.retain(|s| s != home);
        search_path.insert(0, home.to_owned());
        Ok(Database {
            installed: rehearsal::Installed {
                extensions,
                schemas,
            },
            extension_schemas,
            search_path,
        })
    }

    /// The schemas besides the home (or scratch) schema whose names print unqualified: the rest
    /// of the session's search path, then the extensions' schemas.
    fn others(&self, home: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for schema in self.search_path.iter().chain(&self.extension_schemas) {
            if schema != home && !out.contains(&schema.as_str()) {
                out.push(schema);
            }
        }
        out
    }

    /// The search path a schema is fingerprinted under: the live home schema first, and the
    /// same other schemas for the live and the rehearsed schema, so both print the same names.
    fn fingerprint_path<'a>(&'a self, home: &'a str) -> Vec<&'a str> {
        let mut path = vec![home];
        path.extend(self.others(home));
        path
    }

    /// The search path migrations are rehearsed under: the scratch schema takes the place of
    /// the home schema, and the home schema follows it only when an extension lives there
    /// (so `ltree` or `gin_trgm_ops` installed in `public` resolve).
    fn rehearsal_path<'a>(&'a self, scratch: &'a str, home: &'a str) -> Vec<&'a str> {
        let mut path = vec![scratch];
        if self.extension_schemas.iter().any(|s| s == home) {
            path.push(home);
        }
        path.extend(self.others(home));
        path
    }
}

fn set_local_search_path(
    conn: &mut impl postgres::GenericClient,
    path: &[&str],
) -> Result<(), Error> {
    let path: Vec<String> = path.iter().map(|s| crate::quote::ident(s)).collect();
    conn.batch_execute(&format!("SET LOCAL search_path = {}", path.join(", ")))
        .map_err(Error::db("cannot set the search path"))
}

/// Builds the schema `migrations` produce in a scratch schema inside a transaction that is
/// rolled back, and fingerprints it as if it were `home`.
fn rehearse(
    client: &mut Client,
    migrations: &[&Migration],
    home: &str,
    database: &Database,
    options: &VerifyOptions,
) -> Result<Fingerprint, Error> {
    let script = rehearsal::plan(migrations, &database.installed)?;
    let mut tx = client
        .transaction()
        .map_err(Error::db("cannot begin the rehearsal transaction"))?;
    let scratch: String = tx
        .query_one(
            "SELECT 'ecomind_expected_' || pg_backend_pid() || '_' \
                    || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            &[],
        )
        .map_err(Error::db("cannot name the rehearsal schema"))?
        .get(0);
    let mut setup = format!("CREATE SCHEMA {scratch};");
    if let Some(t) = options.lock_timeout {
        setup.push_str(&format!("SET LOCAL lock_timeout = {};", t.as_millis()));
    }
    if let Some(t) = options.statement_timeout {
        setup.push_str(&format!("SET LOCAL statement_timeout = {};", t.as_millis()));
    }
    tx.batch_execute(&setup).map_err(Error::db(
        "cannot create the rehearsal schema (the user needs CREATE on the database)",
    ))?;
    set_local_search_path(&mut tx, &database.rehearsal_path(&scratch, home))?;
    for (migration, statements) in migrations.iter().zip(&script.migrations) {
        let file = migration.file_name();
        for (index, (statement, step)) in statements.iter().enumerate() {
            if let Some(reason) = unrehearsable(&classify(statement.sql)) {
                return Err(Error::Rehearsal {
                    file,
                    detail: format!("statement {} (line {}) {reason}", index + 1, statement.line),
                });
            }
            let rehearsal::Step::Run(sql) = step else {
                continue;
            };
            let sql = if migration.is_transactional() {
                sql.clone()
            } else {
                classify(sql).without_concurrently().into_owned()
            };
            if let Err(e) = tx.batch_execute(&sql) {
                // A rewritten statement's error positions do not match the file: name the line.
                let detail = if sql == statement.sql {
                    script::describe_failure(index, statements.len(), statement, &e)
                } else {
                    format!(
                        "statement {} of {} (line {}, rehearsed as `{}`): {}",
                        index + 1,
                        statements.len(),
                        statement.line,
                        sql,
                        crate::db_message(&e)
                    )
                };
                return Err(Error::Rehearsal { file, detail });
            }
        }
        let outside = live_relations_locked(&mut tx, &scratch)?;
        if !outside.is_empty() {
            return Err(Error::Rehearsal {
                file,
                detail: format!(
                    "it reached for objects outside the schema it is rehearsed in: {}; migrations must name their objects unqualified",
                    outside.join(", ")
                ),
            });
        }
    }
    let mut path = vec![scratch.as_str()];
    path.extend(database.fingerprint_path(home));
    set_local_search_path(&mut tx, &path)?;
    let expected = fingerprint::collect_schema_as(&mut tx, &scratch, home)?;
    // Dropping the transaction rolls it back: the scratch schema never existed for anyone else.
    drop(tx);
    Ok(expected)
}

/// Why a statement cannot be rehearsed, if it cannot.
fn unrehearsable(statement: &crate::classify::Statement<'_>) -> Option<&'static str> {
    if statement.controls_transaction() || statement.kind == StatementKind::Savepoint {
        Some("controls the transaction, which a migration must not do")
    } else if statement.search_path_change {
        Some("changes the search path, which a migration must not do")
    } else {
        None
    }
}

/// Relations outside the scratch schema and the system catalogs that this transaction has
/// locked: a migration that touched a live object.
fn live_relations_locked(
    tx: &mut postgres::Transaction<'_>,
    scratch: &str,
) -> Result<Vec<String>, Error> {
    let rows = tx
        .query(
            "SELECT DISTINCT n.nspname::text || '.' || c.relname::text \
             FROM pg_locks l \
             JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) \
               AND n.nspname NOT LIKE 'pg\\_toast%' \
             ORDER BY 1",
            &[&scratch],
        )
        .map_err(Error::db("cannot check what the rehearsal locked"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::unrehearsable;
    use crate::classify::classify;

    #[test]
    fn transaction_control_and_search_path_are_refused() {
        let cases = [
            ("COMMIT", true),
            ("-- first\nbegin", true),
            ("SAVEPOINT s", true),
            ("SET search_path = x", true),
            ("set local SEARCH_PATH to x", true),
            ("SET lock_timeout = 5", false),
            ("SET application_name = 'search_path'", false),
            ("CREATE TABLE t (x int)", false),
            ("/* commit */ CREATE TABLE t (x int)", false),
        ];
        for (sql, refused) in cases {
            assert_eq!(unrehearsable(&classify(sql)).is_some(), refused, "{sql:?}");
        }
    }
}
