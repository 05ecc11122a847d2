//! `migrate --sql`: the SQL a run would send, in order, for a reviewer to approve, built from
//! the engine's own pieces (the session settings, the lock statements, the history DDL, each
//! script's statements as the splitter cuts them, the CONCURRENTLY handling, and the history and
//! event-log writes with their transaction boundaries) so that it cannot drift from the apply
//! path. It takes no lock and changes nothing: the session is read-only while it reads the
//! history and the server version.

use std::fmt::Write as _;
use std::time::Duration;

use postgres::Client;
use serde::Serialize;

use crate::apply::{steps, MigrateOptions};
use crate::catalog::{Catalog, Migration};
use crate::classify::classify;
use crate::history;
use crate::observe::Direction;
use crate::script::{Failure, Script, BEGIN, NO_LOCK_TIMEOUT, START_ROW_SETTING};
use crate::session::{self, Session};
use crate::{lock, Error};

/// The SQL of a run that has not happened.
#[derive(Clone, Debug, Serialize)]
pub struct SqlPreview {
    /// Up or down.
    pub direction: Direction,
    /// The migrations it would run, in order: `(version, name)`.
    pub migrations: Vec<(i32, String)>,
    /// Every statement, in the order the engine sends them, with comments that say why.
    pub sql: String,
}

/// Computes the SQL a `migrate` with these options would send to this database now. Refuses
/// what `migrate` would refuse before running anything (divergence, an unknown target).
pub fn preview(
    client: &mut Client,
    catalog: &Catalog,
    options: &MigrateOptions<'_>,
) -> Result<SqlPreview, Error> {
    if let crate::Target::UpTo(target) = options.target {
        if catalog.get(target).is_none() {
            return Err(Error::UnknownTarget(target));
        }
    }
    // Nothing this session does from here can write: every transaction is read-only.
    client
        .batch_execute("SET default_transaction_read_only = on")
        .map_err(Error::db("cannot make the session read-only"))?;
    let probe = crate::probe::probe(client, crate::probe::Ask::History)?;
    let (server_version, tables_complete) = (probe.server_version_num, probe.tables_complete);
    let applied = probe.applied;
    let direction = options.target.direction();
    let planned = steps(catalog, &applied, options)?;

    let run = &options.run;
    let mut sql = String::new();
    let names: Vec<String> = planned.iter().map(|m| m.file_name()).collect();
    let _ = writeln!(
        sql,
        "-- What `migrate` would send to this database, in order: {} migration(s){}.\n\
         -- Nothing here has run: no lock was taken and the history was only read.",
        planned.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    );
    if planned.is_empty() && tables_complete {
        let _ = writeln!(
            sql,
            "\n-- Nothing to run: the run reads the history in one message and ends, without the\n\
             -- migration lock and without writing (if another run holds the lock, it waits for it\n\
             -- and reads the history again first)."
        );
        return Ok(SqlPreview {
            direction,
            migrations: Vec::new(),
            sql,
        });
    }
    if let Some(check) = session::connection_check(server_version) {
        let _ = writeln!(
            sql,
            "\n-- The connection: a killed client is noticed within a second.\n{}",
            check.trim()
        );
    }
    let _ = writeln!(
        sql,
        "\n-- The migration lock, tried every {} ms for up to {} s:\n{};",
        lock::POLL.as_millis(),
        run.lock_wait.as_secs(),
        lock::take_sql()
    );
    if direction == Direction::Up && !tables_complete {
        let _ = writeln!(
            sql,
            "\n-- The history tables, missing from this database:\n{}",
            history::ENSURE_TABLES.trim()
        );
    }
    if !planned.is_empty() {
        let session = Session::new(server_version, run.lock_timeout, run.statement_timeout);
        let _ = writeln!(
            sql,
            "\n-- The migration session: the policy's timeouts.\n{}",
            session.reset_sql().trim()
        );
        let mut dirty = false;
        for &migration in &planned {
            let script = Script {
                migration,
                direction,
            };
            render_script(&mut sql, &script, &session, run.actor, &mut dirty)?;
        }
    } else {
        let _ = writeln!(sql, "\n-- Nothing to run.");
    }
    let _ = writeln!(sql, "\n{};", lock::release_sql());
    Ok(SqlPreview {
        direction,
        migrations: planned
            .iter()
            .map(|m: &&Migration| (m.version(), m.name().to_owned()))
            .collect(),
        sql,
    })
}

/// One script as `Runner::run` sends it.
fn render_script(
    sql: &mut String,
    script: &Script<'_>,
    session: &Session,
    actor: &history::Actor,
    dirty: &mut bool,
) -> Result<(), Error> {
    let statements = script.statements().map_err(|failure| match failure {
        Failure::Engine(e) => e,
        _ => Error::InvalidCatalog {
            file: script.file_name(),
            reason: "it cannot be split into statements".to_owned(),
        },
    })?;
    let touched = statements.iter().any(|s| classify(s.sql).session_change);
    let reset = if std::mem::replace(dirty, touched) {
        Some(session.reset_sql().trim())
    } else {
        None
    };
    let restore = touched.then_some(session.restore_in_transaction.as_str());
    // The real run writes the measured duration, and names the attempt by the id its start
    // row returned; nothing has been measured or returned here, so the lookup shows instead.
    let record = script.record_sql(actor, Duration::ZERO, restore, history::Attempt::Running);
    if script.is_transactional() {
        let _ = writeln!(
            sql,
            "\n-- {}: in one transaction together with its history and event rows.",
            script.file_name()
        );
        if let Some(reset) = reset {
            let _ = writeln!(sql, "{reset}");
        }
        // The attempt's start row commits on its own first.
        let _ = writeln!(
            sql,
            "BEGIN;\n{START_ROW_SETTING};\n{};\nCOMMIT;",
            script.attempt_start_sql(actor, statements.len())
        );
        let _ = writeln!(sql, "{}", BEGIN.trim());
        for statement in &statements {
            let _ = writeln!(sql, "{};", statement.sql);
        }
    } else {
        let _ = writeln!(
            sql,
            "\n-- {}: outside a transaction, one statement at a time; recorded after the last.",
            script.file_name()
        );
        if let Some(reset) = reset {
            let _ = writeln!(sql, "{reset}");
        }
        let _ = writeln!(
            sql,
            "BEGIN;\n{START_ROW_SETTING};\n{};\nCOMMIT;",
            script.attempt_start_sql(actor, statements.len())
        );
        for (index, statement) in statements.iter().enumerate() {
            let progress = history::attempt_progress_sql(
                script.migration.version(),
                script.direction.as_str(),
                index + 1,
                None,
            );
            if classify(statement.sql).waits_by_design() {
                let _ = writeln!(
                    sql,
                    "{NO_LOCK_TIMEOUT};\n{};\n{};\n{progress};",
                    statement.sql, session.lock_timeout
                );
            } else {
                let _ = writeln!(sql, "{};\n{progress};", statement.sql);
            }
        }
        let _ = writeln!(sql, "BEGIN;");
    }
    let _ = writeln!(sql, "{};", record.trim_end());
    Ok(())
}
