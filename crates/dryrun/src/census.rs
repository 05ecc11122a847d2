//! A census of the user tables: each table's exact row count and columns, keyed by OID so a
//! rename is not mistaken for a loss.

use std::collections::BTreeMap;

use postgres::Client;

use crate::Error;

/// One table at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    /// `schema.name`, or `name` in `public`.
    pub name: String,
    /// Exact row count.
    pub rows: i64,
    /// Column number to column name.
    pub columns: BTreeMap<i16, String>,
    /// The quoted, schema-qualified name for SQL.
    pub sql_name: String,
}

/// Every user table (ordinary and partitioned), by OID. Our own history tables are left out:
/// a migration and its down change them by design.
pub(crate) type Census = BTreeMap<u32, Table>;

/// Counts every user table exactly. The sandbox is ours, so `count(*)` is affordable.
pub(crate) fn take(client: &mut Client) -> Result<Census, Error> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, a.attnum, a.attname::text, \
                    quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
               AND NOT (n.nspname = 'public' AND c.relname IN ($1, $2)) \
             ORDER BY 1, 4",
            &[
                &ecomind_migrate::HISTORY_TABLE,
                &ecomind_migrate::EVENT_TABLE,
            ],
        )
        .map_err(Error::db("cannot list the tables"))?;
    let mut census = Census::new();
    for row in rows {
        let oid: u32 = row.get(0);
        let schema: String = row.get(1);
        let name: String = row.get(2);
        let table = census.entry(oid).or_insert_with(|| Table {
            name: qualified(&schema, &name),
            rows: 0,
            columns: BTreeMap::new(),
            sql_name: row.get(5),
        });
        if let (Some(number), Some(column)) = (row.get::<_, Option<i16>>(3), row.get(4)) {
            table.columns.insert(number, column);
        }
    }
    for table in census.values_mut() {
        let count = client
            .query_one(
                &format!("SELECT count(*) FROM ONLY {}", table.sql_name),
                &[],
            )
            .map_err(Error::db(format!(
                "cannot count the rows of {}",
                table.name
            )))?;
        table.rows = count.get(0);
    }
    Ok(census)
}

/// `name` for tables in `public`, `schema.name` elsewhere.
pub(crate) fn qualified(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// What may have lost data between two censuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Fewer rows than before.
    Rows {
        table: String,
        before: i64,
        after: i64,
    },
    /// The table is gone (with its rows).
    Table { table: String, rows: i64 },
    /// A column is gone.
    Column {
        table: String,
        column: String,
        rows: i64,
    },
}

/// Compares two censuses.
pub(crate) fn losses(before: &Census, after: &Census) -> Vec<Loss> {
    let mut out = Vec::new();
    for (oid, old) in before {
        let Some(new) = after.get(oid) else {
            out.push(Loss::Table {
                table: old.name.clone(),
                rows: old.rows,
            });
            continue;
        };
        if new.rows < old.rows {
            out.push(Loss::Rows {
                table: new.name.clone(),
                before: old.rows,
                after: new.rows,
            });
        }
        for (number, column) in &old.columns {
            if !new.columns.contains_key(number) {
                out.push(Loss::Column {
                    table: new.name.clone(),
                    column: column.clone(),
                    rows: old.rows,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, rows: i64, columns: &[&str]) -> Table {
        Table {
            name: name.to_owned(),
            rows,
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (i as i16 + 1, (*c).to_owned()))
                .collect(),
            sql_name: name.to_owned(),
        }
    }

    #[test]
    fn renames_are_not_losses_but_drops_and_deletes_are() {
        let before: Census = [
            (1, table("users", 10, &["id", "email"])),
            (2, table("events", 5, &["id"])),
            (3, table("audit", 3, &["id", "note"])),
        ]
        .into();
        let after: Census = [
            (1, table("accounts", 10, &["id", "email"])),
            (3, table("audit", 1, &["id"])),
        ]
        .into();
        assert_eq!(
            losses(&before, &after),
            vec![
                Loss::Table {
                    table: "events".to_owned(),
                    rows: 5
                },
                Loss::Rows {
                    table: "audit".to_owned(),
                    before: 3,
                    after: 1
                },
                Loss::Column {
                    table: "audit".to_owned(),
                    column: "note".to_owned(),
                    rows: 3
                },
            ]
        );
    }
}
