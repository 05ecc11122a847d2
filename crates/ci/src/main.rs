//! `ecomind-ci`: runs the CI matrix for `cargo xtask ci` and prints each cell's result, server
//! version and time, then one closing line counting the cells.
//!
//! ```text
//! ecomind-ci cells --root DIR --cli PATH --postgres MAJOR=BINDIR... [--pg N] [--env E]
//! ecomind-ci branch --root DIR
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ecomind_ci::{check_branch_versions, run_major, CellSetup, Matrix};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cells") => cells(&args[1..]),
        Some("branch") => branch(&args[1..]),
        _ => Err("usage: ecomind-ci cells --root DIR --cli PATH --postgres MAJOR=BINDIR... [--pg N] [--env E] | ecomind-ci branch --root DIR".to_owned()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--name value` pairs, a name possibly repeated.
fn values<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

fn one<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    values(args, name).into_iter().next_back()
}

fn cells(args: &[String]) -> Result<bool, String> {
    let root = PathBuf::from(one(args, "--root").ok_or("--root is required")?);
    let cli = PathBuf::from(one(args, "--cli").ok_or("--cli is required")?);
    let pg = one(args, "--pg")
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| format!("--pg {v}: not a major version"))
        })
        .transpose()?;
    let env = one(args, "--env");
    let mut bin_dirs = Vec::new();
    for pair in values(args, "--postgres") {
        let (major, dir) = pair
            .split_once('=')
            .ok_or_else(|| format!("--postgres {pair}: expected MAJOR=BINDIR"))?;
        let major: u32 = major
            .parse()
            .map_err(|_| format!("--postgres {pair}: `{major}` is not a major"))?;
        bin_dirs.push((major, PathBuf::from(dir)));
    }
    let matrix = Matrix::load(&root).map_err(|e| e.to_string())?;
    let cells = matrix.cells(pg, env).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (mut passed, mut failed) = (0usize, 0usize);
    for major in &matrix.majors {
        let environments: Vec<String> = cells
            .iter()
            .filter(|c| c.major == major.major)
            .map(|c| c.env.clone())
            .collect();
        if environments.is_empty() {
            continue;
        }
        let Some((_, bin_dir)) = bin_dirs.iter().find(|(m, _)| *m == major.major) else {
            return Err(format!(
                "no server binaries given for PostgreSQL {} (--postgres {}=BINDIR)",
                major.major, major.major
            ));
        };
        let setup = CellSetup {
            root: &root,
            cli: &cli,
            bin_dir,
            steps: &matrix.steps,
        };
        let result = run_major(&setup, &environments, &mut |report| {
            let times: Vec<String> = report
                .steps
                .iter()
                .map(|s| format!("{} {:.1}s", s.step.name(), s.duration.as_secs_f64()))
                .collect();
            println!(
                "cell {:<8} x PostgreSQL {:<2} {} in {:>5.1}s  server {}  [{}]",
                report.env,
                major.major,
                if report.passed() { "ok    " } else { "FAILED" },
                report.duration.as_secs_f64(),
                report.server_version,
                times.join(", "),
            );
            for step in &report.steps {
                if let Some(failure) = &step.failure {
                    println!("    {} failed: {failure}", step.step.name());
                }
            }
        });
        match result {
            Ok(reports) => {
                for report in reports {
                    if report.passed() {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            Err(e) => {
                println!("PostgreSQL {}: {e}", major.major);
                failed += environments.len();
            }
        }
    }
    println!(
        "matrix: {} cells in {:.1}s",
        passed + failed,
        started.elapsed().as_secs_f64()
    );
    println!("cells: {passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn branch(args: &[String]) -> Result<bool, String> {
    let root = PathBuf::from(one(args, "--root").ok_or("--root is required")?);
    let check = check_branch_versions(&root).map_err(|e| e.to_string())?;
    match &check.main_ref {
        None => println!("branch versions: no main branch to compare with; skipped"),
        Some(main) => println!(
            "branch versions: {} migration(s) added since the merge base with {main}, whose head is V{}",
            check.added.len(),
            check.main_head.unwrap_or(0)
        ),
    }
    for problem in &check.problems {
        println!("error: {problem}");
    }
    Ok(check.problems.is_empty())
}
