//! The observer the dry run hands the engine: after each statement, inside the migration's
//! transaction, it reads the relation locks our own backend holds (`pg_locks` for
//! `pg_backend_pid()`, joined to `pg_class`) and the relfilenodes of the relations that existed
//! before the script; around each script it takes a census of the tables.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ecomind_migrate::{Direction, Observer, ObserverError, ScriptRun, StatementRun};
use postgres::Client;

use crate::census::{self, Census, Loss};
use crate::report::{LockHeld, MigrationRun, RowCount, StatementRecord};

/// Lock modes that block other sessions' reads or writes, with what they block.
pub(crate) fn blocks(mode: &str) -> Option<&'static str> {
    match mode {
        "AccessExclusiveLock" => Some("reads and writes"),
        "ExclusiveLock" | "ShareRowExclusiveLock" | "ShareLock" => Some("writes"),
        _ => None,
    }
}

/// The lock modes as PostgreSQL's documentation names them.
pub(crate) fn mode_name(mode: &str) -> String {
    let mut out = String::new();
    let bare = mode.strip_suffix("Lock").unwrap_or(mode);
    for (i, c) in bare.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A lock first seen after a statement: held from that statement's start until commit.
struct Seen {
    relation: String,
    mode: String,
    since: Instant,
    statement: usize,
}

/// The script being traced.
struct Current {
    version: i32,
    name: String,
    transactional: bool,
    destructive: bool,
    statements: Vec<StatementRecord>,
    locks: BTreeMap<(u32, String), Seen>,
    relfilenodes: BTreeMap<u32, (String, u32)>,
    /// Every relation that existed before the script: only locks on these can block anyone
    /// (a relation the script creates is invisible to others until it commits).
    existing: BTreeSet<u32>,
    rewritten: BTreeSet<u32>,
    before: Census,
}

/// The tracer: handed to the engine as its observer for the up run of the dry run.
pub(crate) struct Tracer {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    last_census: Option<Census>,
    done: Vec<MigrationRun>,
}

impl Tracer {
    /// A tracer that starts from `census` (the restored database's).
    pub(crate) fn new(census: Census) -> Tracer {
        Tracer {
            state: RefCell::new(State {
                last_census: Some(census),
                ..State::default()
            }),
        }
    }

    /// The migrations traced so far, and the one that was running when the run stopped.
    pub(crate) fn finish(self) -> (Vec<MigrationRun>, Option<MigrationRun>) {
        let state = self.state.into_inner();
        let partial = state.current.map(|c| MigrationRun {
            version: c.version,
            name: c.name,
            seconds: 0.0,
            transactional: c.transactional,
            locks_traced: c.transactional,
            destructive: c.destructive,
            statements: c.statements,
            rows: Vec::new(),
            losses: Vec::new(),
        });
        (state.done, partial)
    }
}

/// Reads our backend's granted relation locks in this database, outside the system schemas.
fn read_locks(client: &mut Client) -> Result<Vec<(u32, String, String)>, postgres::Error> {
    let rows = client.query(
        "SELECT l.relation, l.mode, \
                coalesce(CASE WHEN n.nspname = 'public' THEN c.relname::text \
                              ELSE n.nspname || '.' || c.relname END, \
                         'relation ' || l.relation::text) \
         FROM pg_locks l \
         LEFT JOIN pg_class c ON c.oid = l.relation \
         LEFT JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND coalesce(n.nspname, '') NOT IN ('pg_catalog', 'information_schema')",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Relfilenodes of the user relations (tables, indexes, materialized views, TOAST tables).
fn read_relfilenodes(client: &mut Client) -> Result<BTreeMap<u32, (String, u32)>, postgres::Error> {
    let rows = client.query(
        "SELECT c.oid, CASE WHEN n.nspname = 'public' THEN c.relname::text \
                            ELSE n.nspname || '.' || c.relname END, c.relfilenode \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'i', 'm') AND c.relfilenode <> 0 \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> ObserverError {
    Box::new(e)
}

impl Observer for Tracer {
    fn script_starting(
        &self,
        client: &mut Client,
        script: &ScriptRun<'_>,
    ) -> Result<(), ObserverError> {
        if script.direction != Direction::Up {
            return Ok(());
        }
        let mut state = self.state.borrow_mut();
        let before = match state.last_census.take() {
            Some(census) => census,
            None => census::take(client).map_err(boxed)?,
        };
        let relfilenodes = read_relfilenodes(client).map_err(boxed)?;
        let existing = client
            .query("SELECT oid FROM pg_class", &[])
            .map_err(boxed)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        state.current = Some(Current {
            version: script.migration.version(),
            name: script.migration.name().to_owned(),
            transactional: script.transactional,
            destructive: script.migration.is_destructive(),
            statements: Vec::new(),
            locks: BTreeMap::new(),
            relfilenodes,
            existing,
            rewritten: BTreeSet::new(),
            before,
        });
        Ok(())
    }

    fn statement_done(
        &self,
        client: &mut Client,
        script: &ScriptRun<'_>,
        statement: &StatementRun<'_>,
    ) -> Result<(), ObserverError> {
        if script.direction != Direction::Up {
            return Ok(());
        }
        let now = Instant::now();
        let started = now.checked_sub(statement.duration).unwrap_or(now);
        let locks = if script.transactional {
            read_locks(client).map_err(boxed)?
        } else {
            Vec::new()
        };
        let nodes = read_relfilenodes(client).map_err(boxed)?;
        let mut state = self.state.borrow_mut();
        let Some(current) = state.current.as_mut() else {
            return Ok(());
        };
        let index = current.statements.len();
        for (oid, mode, relation) in locks {
            current
                .locks
                .entry((oid, mode.clone()))
                .or_insert_with(|| Seen {
                    relation,
                    mode,
                    since: started,
                    statement: index,
                });
        }
        let mut rewrites = Vec::new();
        for (oid, (name, node)) in &current.relfilenodes {
            if current.rewritten.contains(oid) {
                continue;
            }
            if let Some((_, now_node)) = nodes.get(oid) {
                if now_node != node {
                    rewrites.push(name.clone());
                    current.rewritten.insert(*oid);
                }
            }
        }
        current.statements.push(StatementRecord {
            line: statement.line,
            sql: abbreviate(statement.sql),
            seconds: statement.duration.as_secs_f64(),
            locks: Vec::new(),
            rewrites,
        });
        Ok(())
    }

    fn script_committed(
        &self,
        client: &mut Client,
        script: &ScriptRun<'_>,
        elapsed: Duration,
    ) -> Result<(), ObserverError> {
        if script.direction != Direction::Up {
            return Ok(());
        }
        let committed = Instant::now();
        let after = census::take(client).map_err(boxed)?;
        let mut state = self.state.borrow_mut();
        let Some(mut current) = state.current.take() else {
            return Ok(());
        };
        for ((oid, _), seen) in &current.locks {
            let existed = current.existing.contains(oid);
            if let Some(record) = current.statements.get_mut(seen.statement) {
                record.locks.push(LockHeld {
                    relation: seen.relation.clone(),
                    mode: mode_name(&seen.mode),
                    held_seconds: committed.duration_since(seen.since).as_secs_f64(),
                    blocks: blocks(&seen.mode).filter(|_| existed).map(str::to_owned),
                    created_here: !existed,
                });
            }
        }
        let mut rows: Vec<RowCount> = Vec::new();
        let names: BTreeSet<&u32> = current.before.keys().chain(after.keys()).collect();
        for oid in names {
            let old = current.before.get(oid);
            let new = after.get(oid);
            rows.push(RowCount {
                table: new.or(old).map(|t| t.name.clone()).unwrap_or_default(),
                before: old.map(|t| t.rows),
                after: new.map(|t| t.rows),
            });
        }
        let losses: Vec<Loss> = census::losses(&current.before, &after);
        state.done.push(MigrationRun {
            version: current.version,
            name: std::mem::take(&mut current.name),
            seconds: elapsed.as_secs_f64(),
            transactional: current.transactional,
            locks_traced: current.transactional,
            destructive: current.destructive,
            statements: std::mem::take(&mut current.statements),
            rows,
            losses,
        });
        state.last_census = Some(after);
        Ok(())
    }
}

/// One line of at most 100 characters.
fn abbreviate(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 100 {
        let head: String = flat.chars().take(97).collect();
        format!("{head}...")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_modes_and_what_they_block() {
        assert_eq!(mode_name("AccessExclusiveLock"), "ACCESS EXCLUSIVE");
        assert_eq!(mode_name("ShareRowExclusiveLock"), "SHARE ROW EXCLUSIVE");
        assert_eq!(blocks("AccessExclusiveLock"), Some("reads and writes"));
        assert_eq!(blocks("ShareLock"), Some("writes"));
        assert_eq!(blocks("RowExclusiveLock"), None);
        assert_eq!(blocks("ShareUpdateExclusiveLock"), None);
    }
}
