//! `ecomind-db-man DIR`: writes the man pages of `ecomind-db` (one for the command, one per
//! subcommand) into DIR, from the same clap definitions as `--help`. Run by `cargo xtask man`.

#[allow(dead_code)]
#[path = "../args.rs"]
mod args;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory as _;

fn main() -> ExitCode {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/man".to_owned()),
    );
    match write_pages(&dir) {
        Ok(count) => {
            println!("wrote {count} man pages to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot write the man pages to {}: {e}",
                dir.display()
            );
            ExitCode::from(1)
        }
    }
}

/// Writes `ecomind-db.1` and `ecomind-db-<subcommand>.1` for every subcommand, nested ones too.
fn write_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut command = args::Cli::command();
    command.build();
    let mut count = 0;
    // (page name, how the command is typed, its definition)
    let mut stack = vec![("ecomind-db".to_owned(), "ecomind-db".to_owned(), command)];
    while let Some((page, typed, command)) = stack.pop() {
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                stack.push((
                    format!("{page}-{}", sub.get_name()),
                    format!("{typed} {}", sub.get_name()),
                    sub.clone(),
                ));
            }
        }
        let command = command.bin_name(typed);
        let mut out = Vec::new();
        clap_mangen::Man::new(command)
            .title(page.to_uppercase())
            .render(&mut out)?;
        std::fs::write(dir.join(format!("{page}.1")), out)?;
        count += 1;
    }
    Ok(count)
}
