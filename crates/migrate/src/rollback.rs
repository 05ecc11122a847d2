//! Planning a rollback: which migrations a run down to a target reverts, newest first.
//!
//! The down scripts then run through the same loop and the same code as up scripts
//! (`apply.rs`, `script.rs`): in one transaction, or statement by statement outside a
//! transaction when the down file's first line says `-- ecomind:no-transaction` (V2's
//! `DROP INDEX CONCURRENTLY`), each committed together with the removal of its history row.

use crate::catalog::{Catalog, Migration};
use crate::history;
use crate::{plan, Error};

/// How far to roll back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RollbackTarget {
    /// Revert every applied migration above this version; 0 reverts them all.
    ToVersion(i32),
    /// Revert this many of the newest applied migrations.
    Steps(usize),
}

/// The migrations a rollback to `target` reverts, newest first, checked against the
/// history and the catalog: nothing runs unless every one of them can be reverted.
pub(crate) fn plan<'c>(
    catalog: &'c Catalog,
    applied: &[history::AppliedMigration],
    target: RollbackTarget,
) -> Result<Vec<&'c Migration>, Error> {
    // A never-applied file below the head does not stop a rollback: it is not touched, and
    // rolling back below it is one way to put it in order.
    let (_, problems) = plan::plan(catalog, applied, true);
    if !problems.is_empty() {
        return Err(Error::Diverged(problems));
    }
    let mut versions: Vec<i32> = applied.iter().map(|a| a.version).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let chosen: Vec<i32> = match target {
        RollbackTarget::ToVersion(to) => {
            if to != 0 && !versions.contains(&to) {
                let mut ascending = versions.clone();
                ascending.reverse();
                return Err(Error::RollbackTargetNotApplied {
                    target: to,
                    applied: ascending,
                });
            }
            versions.into_iter().filter(|&v| v > to).collect()
        }
        RollbackTarget::Steps(steps) => {
            if steps > versions.len() {
                return Err(Error::TooManySteps {
                    steps,
                    applied: versions.len(),
                });
            }
            versions.into_iter().take(steps).collect()
        }
    };
    let mut out = Vec::with_capacity(chosen.len());
    for version in chosen {
        // The divergence check above guarantees every applied version has its file.
        let Some(migration) = catalog.get(version) else {
            continue;
        };
        if migration.down_sql().is_none() {
            return Err(Error::Irreversible {
                file: migration.file_name(),
                version,
            });
        }
        out.push(migration);
    }
    Ok(out)
}
