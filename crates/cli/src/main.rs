//! `ecomind-db`: the command-line front of the EcoMind migration tool. The only crate that
//! prints, renders JSON and picks exit codes; everything it does is one call into a library.

mod args;
mod commands;
mod connect;
mod dry_run;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::output::Output;

/// Exit codes, documented in `--help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any error.
    pub const ERROR: u8 = 1;
    /// Usage error (clap's own code for bad arguments).
    pub const USAGE: u8 = 2;
    /// `status --check` found pending migrations.
    pub const PENDING: u8 = 3;
    /// Drift, divergence or a failed migration needing repair.
    pub const ATTENTION: u8 = 4;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    let result = match &cli.command {
        Command::Migrate(a) => commands::migrate(a, &out),
        Command::Rollback(a) => commands::rollback(a, &out),
        Command::Verify(a) => commands::verify(a, &out),
        Command::Baseline(a) => commands::baseline(a, &out),
        Command::Repair(a) => commands::repair(a, &out),
        Command::Status(a) => commands::status(a, &out),
        Command::Wait(a) => commands::wait(a, &out),
        Command::Config(a) => commands::config(a, &out),
        Command::DryRun(a) => dry_run::command(a, &out),
        Command::DevDb(a) => commands::dev_db(a, &out),
        Command::New(a) => commands::new(a, &out),
        Command::Lint(a) => commands::lint(a, &out),
        Command::Completions(a) => commands::completions(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = exit_code_of(&error);
            out.error(&error, code, done_before(&error));
            ExitCode::from(code)
        }
    }
}

/// What a failed migrate or rollback completed before it failed, for the JSON error document.
fn done_before(error: &anyhow::Error) -> Option<(&'static str, serde_json::Value)> {
    let engine = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ecomind_migrate::Error>())?;
    let report = engine.partial_report()?;
    Some((
        report.direction.done(),
        serde_json::to_value(&report.steps).ok()?,
    ))
}

/// Maps an error to its documented exit code.
fn exit_code_of(error: &anyhow::Error) -> u8 {
    let attention = error.chain().any(|cause| {
        cause
            .downcast_ref::<ecomind_migrate::Error>()
            .is_some_and(ecomind_migrate::Error::needs_attention)
            || cause
                .downcast_ref::<ecomind_dryrun::Error>()
                .is_some_and(ecomind_dryrun::Error::needs_attention)
    });
    if attention {
        exit::ATTENTION
    } else {
        exit::ERROR
    }
}
