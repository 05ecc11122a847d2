//! Who blocks a migration: the sessions holding locks on the tables a statement that ran into
//! `lock_timeout` names, so the final error after the lock retries can say whom to wait for or
//! end.

use std::fmt;

use postgres::Client;
use serde::Serialize;

/// A session holding a lock on a table a failed statement needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// The backend's process id (for `pg_terminate_backend`).
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Its state (`active`, `idle in transaction`, ...).
    pub state: String,
    /// When its current (or last) query started.
    pub query_start: String,
    /// The first line of that query.
    pub query: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application_name {:?}, {}, query started {}: {})",
            self.pid, self.application_name, self.state, self.query_start, self.query
        )
    }
}

/// The names a statement may refer to a table by: its identifiers, unquoted ones folded to lower
/// case as PostgreSQL folds them.
fn names(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut name = String::new();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        name.push('"');
                        continue;
                    }
                    break;
                }
                name.push(c);
            }
            names.push(name);
        } else if c.is_alphabetic() || c == '_' {
            let mut name = c.to_lowercase().to_string();
            while let Some(&next) = chars.peek() {
                if next.is_alphanumeric() || next == '_' || next == '$' {
                    name.extend(next.to_lowercase());
                    chars.next();
                } else {
                    break;
                }
            }
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The other sessions of this database holding a granted lock on a table (or index, sequence,
/// view) that `sql` names. Best effort: an error reading the catalogs gives no blockers.
pub(crate) fn find(client: &mut Client, sql: &str) -> Vec<Blocker> {
    let names = names(sql);
    let rows = client.query(
        "SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), \
                coalesce(to_char(a.query_start, 'YYYY-MM-DD HH24:MI:SS TZ'), ''), \
                coalesce(split_part(a.query, E'\\n', 1), '') \
         FROM pg_locks l \
         JOIN pg_class c ON c.oid = l.relation \
         JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.granted AND l.pid <> pg_backend_pid() \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND c.relname = ANY($1) \
         ORDER BY a.pid",
        &[&names],
    );
    rows.map(|rows| {
        rows.iter()
            .map(|row| Blocker {
                pid: row.get(0),
                application_name: row.get(1),
                state: row.get(2),
                query_start: row.get(3),
                query: row.get(4),
            })
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_fold_unquoted_identifiers_and_keep_quoted_ones() {
        let mut expected = vec![
            "add",
            "alter",
            "column",
            "events_enriched",
            "int",
            "Mixed\"Case",
            "public",
            "table",
        ];
        expected.sort();
        assert_eq!(
            names("ALTER TABLE public.Events_Enriched ADD COLUMN \"Mixed\"\"Case\" int"),
            expected
        );
    }
}
