//! Baselining: bringing a database built by hand before migrations existed under management,
//! by recording V1..V as applied without running them, and only when its schema is exactly
//! what V1..V produce.

use postgres::Client;
use serde::Serialize;

use crate::catalog::{Catalog, Migration};
use crate::history::Actor;
use crate::history::{self, EventRow};
use crate::plan::Pending;
use crate::verify::{self, VerifyOptions};
use crate::{lock, Error};

/// How to baseline. There is no `Default`: the version and the waits are the caller's choice.
#[derive(Clone, Debug)]
pub struct BaselineOptions<'a> {
    /// Record migrations up to and including this version (the cli's default is 1).
    pub version: i32,
    /// Waits and timeouts for the lock and for the rehearsal that builds the expected schema.
    pub verify: VerifyOptions,
    /// Recorded in the event log.
    pub actor: &'a Actor,
}

/// The rows of one table when the database was stamped: evidence for the change record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableRows {
    /// The schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// Its exact row count.
    pub rows: i64,
}

/// What baselining tells its caller while it works.
#[derive(Debug)]
pub enum BaselineProgress<'a> {
    /// The live schema matches the expected one; these are the row counts, taken before the
    /// stamp is written.
    Counted(&'a [TableRows]),
}

/// What a baseline did.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineReport {
    /// The schema compared.
    pub schema: String,
    /// The migrations recorded as applied without running them.
    pub recorded: Vec<Pending>,
    /// How many objects the compared schema has.
    pub objects: usize,
    /// Every table's row count, taken before the stamp.
    pub tables: Vec<TableRows>,
}

/// Compares the live schema with the schema migrations 1..=`version` produce and, only when
/// they are identical, records those migrations as applied. Refuses a database with history.
pub fn baseline(
    client: &mut Client,
    catalog: &Catalog,
    options: &BaselineOptions<'_>,
    on_progress: &mut dyn FnMut(BaselineProgress<'_>),
) -> Result<BaselineReport, Error> {
    if catalog.get(options.version).is_none() {
        return Err(Error::UnknownTarget(options.version));
    }
    lock::holding(client, options.verify.lock_wait, |client| {
        baseline_locked(client, catalog, options, on_progress)
    })
}

fn baseline_locked(
    client: &mut Client,
    catalog: &Catalog,
    options: &BaselineOptions<'_>,
    on_progress: &mut dyn FnMut(BaselineProgress<'_>),
) -> Result<BaselineReport, Error> {
    let applied = history::read(client)?;
    if let Some(head) = applied.iter().map(|a| a.version).max() {
        return Err(Error::BaselineHasHistory { head });
    }
    let migrations: Vec<&Migration> = catalog
        .migrations()
        .iter()
        .filter(|m| m.version() <= options.version)
        .collect();
    let comparison = verify::compare(client, &migrations, &options.verify)?;
    if !comparison.differences.is_empty() {
        return Err(Error::BaselineMismatch {
            version: options.version,
            differences: comparison.differences,
        });
    }
    history::ensure_tables(client)?;
    // The row counts scan every table: the policy's timeouts bound them like any statement.
    crate::session::Session::establish(
        client,
        options.verify.lock_timeout,
        options.verify.statement_timeout,
    )?;
    let mut tx = client
        .transaction()
        .map_err(Error::db("cannot begin the baseline transaction"))?;
    let tables = row_counts(&mut tx, &comparison.schema)?;
    on_progress(BaselineProgress::Counted(&tables));
    let started = std::time::Instant::now();
    for m in &migrations {
        history::record_applied(&mut tx, m.version(), m.name(), m.checksum())?;
        history::record_event(
            &mut tx,
            options.actor,
            &EventRow {
                version: m.version(),
                name: m.name(),
                direction: "baseline",
                outcome: "applied",
                elapsed: started.elapsed(),
                error: None,
                detail: None,
                attempt: history::Attempt::None,
            },
        )?;
    }
    tx.commit()
        .map_err(Error::db("cannot commit the baseline"))?;
    Ok(BaselineReport {
        schema: comparison.schema,
        recorded: migrations
            .iter()
            .map(|m| Pending {
                version: m.version(),
                name: m.name().to_owned(),
                down: None,
            })
            .collect(),
        objects: comparison.expected_objects,
        tables,
    })
}

/// The exact row count of every table of the schema (the bookkeeping tables aside), in the
/// transaction that writes the stamp.
fn row_counts(tx: &mut postgres::Transaction<'_>, schema: &str) -> Result<Vec<TableRows>, Error> {
    let tables = tx
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND c.relname NOT IN ($2, $3) ORDER BY 1",
            &[&schema, &history::HISTORY_TABLE, &history::EVENT_TABLE],
        )
        .map_err(Error::db("cannot list the tables to count"))?;
    let mut out = Vec::with_capacity(tables.len());
    for row in tables {
        let table: String = row.get(0);
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            crate::quote::ident(schema),
            crate::quote::ident(&table)
        );
        let rows: i64 = tx
            .query_one(&sql, &[])
            .map_err(Error::db(format!(
                "cannot count the rows of {schema}.{table}"
            )))?
            .get(0);
        out.push(TableRows {
            schema: schema.to_owned(),
            table,
            rows,
        });
    }
    Ok(out)
}
