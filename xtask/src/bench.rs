//! `cargo xtask bench`: builds release binaries and runs `ecomind-bench`, which times ecomind-db
//! against psql floors on a fresh sandbox cluster (`cargo xtask bench startup apply` runs only
//! those sections). Not a test: it reports, it does not judge.

use std::path::Path;
use std::process::Command;

/// Builds in release mode and runs the benchmark.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    crate::step(
        "build (release)",
        &[
            "build",
            "--release",
            "--package",
            "ecomind-db",
            "--package",
            "ecomind-bench",
        ],
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release");
    let mut bench = Command::new(target.join("ecomind-bench"));
    // The sections (startup, apply, dry-run) are checked by the benchmark itself.
    bench.arg(target.join("ecomind-db")).args(args);
    // The sandbox goes on tmpfs where there is one: this VM's disk swings file-creation costs
    // by 3x from minute to minute, which would measure the disk instead of the tool. Both the
    // tool and its floor run against the same cluster either way.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        bench.env("TMPDIR", shm);
    }
    let status = bench
        .status()
        .map_err(|e| format!("cannot run ecomind-bench: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the benchmark failed ({status})"))
    }
}
