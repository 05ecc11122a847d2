//! The dry-run rows: on a generated EcoMind snapshot, the first dry run's restore against
//! `pg_restore --jobs` of the same dump alone, the cached repeat against the first, and the
//! dry-run process's peak memory on two dump sizes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecomind_snapshot::{Binaries, Cluster};

use crate::Bench;

/// Events in the large snapshot (the target is measured on at least a million).
const LARGE: u64 = 1_000_000;
/// Events in the small snapshot, for the memory comparison.
const SMALL: u64 = 100_000;
/// The rows of a generated snapshot at V1, with `:events` events (shared with the CI cells).
const SEED: &str = include_str!("../../../ci/snapshot-seed.sql");

/// What one dry run reported and cost.
struct Measured {
    restore_seconds: f64,
    from_cache: bool,
    verdict: String,
    peak_rss_kb: u64,
}

pub(crate) fn run(bench: &Bench, cluster: &Cluster, binaries: &Binaries) -> Result<(), String> {
    let pg_dump = binaries
        .tool("pg_dump")
        .ok_or("the dry-run rows need pg_dump beside the server binaries")?;
    let pg_restore = binaries
        .tool("pg_restore")
        .ok_or("the dry-run rows need pg_restore beside the server binaries")?;
    let dir = crate::tempdir("dry-run")?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());

    let small = snapshot(bench, cluster, &pg_dump, &dir.0, SMALL)?;
    let large = snapshot(bench, cluster, &pg_dump, &dir.0, LARGE)?;
    let size = std::fs::metadata(&large).map_or(0, |m| m.len());
    println!(
        "dry-run on a generated snapshot: {LARGE} events, custom format, {:.1} MB; pg_restore --jobs {jobs}",
        size as f64 / 1e6
    );

    // The floor: pg_restore of the same dump alone, into a fresh database of a running server.
    cluster
        .ensure_database("floor_restore")
        .map_err(|e| e.to_string())?;
    let mut floor = bench.command(&pg_restore, "floor_restore");
    floor
        .args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .arg(format!("--jobs={jobs}"))
        .arg("--dbname=floor_restore")
        .arg(&large);
    let floor = crate::timed(floor, "pg_restore")?;

    // A machine that has never dry-run makes its first empty cluster with initdb; every later
    // first restore of a new dump copies that cluster instead. Both are measured: the cold one
    // in a cache of its own, the usual one after a small dry run has filled the cache.
    let cold = dry_run(bench, &large, &dir.0.join("cold-cache"))?;
    let cache = dir.0.join("cache");
    let small_run = dry_run(bench, &small, &cache)?;
    let first = dry_run(bench, &large, &cache)?;
    let cached = dry_run(bench, &large, &cache)?;
    if cold.from_cache || first.from_cache || !cached.from_cache {
        return Err("the second dry run did not come from the template cache".to_owned());
    }
    for m in [&cold, &small_run, &first, &cached] {
        if m.verdict != "pass" {
            return Err(format!("the dry run's verdict was {}", m.verdict));
        }
    }
    for (what, m) in [
        ("first restore of a new dump", &first),
        ("  the same, never dry-run before", &cold),
    ] {
        let ratio = m.restore_seconds / floor.as_secs_f64();
        println!(
            "{what:<34} ecomind-db {:>9.1} ms   floor {:>9.1} ms (pg_restore --jobs {jobs} alone)   ratio {ratio:.2}x (target <= 1.15x) {}",
            m.restore_seconds * 1000.0,
            floor.as_secs_f64() * 1000.0,
            if ratio <= 1.15 { "ok" } else { "OVER TARGET" }
        );
    }
    let ratio = cached.restore_seconds / first.restore_seconds;
    println!(
        "{:<34} ecomind-db {:>9.1} ms   first {:>9.1} ms   ratio {ratio:.2}x (target <= 0.10x) {}",
        "cached repeat restore",
        cached.restore_seconds * 1000.0,
        first.restore_seconds * 1000.0,
        if ratio <= 0.10 { "ok" } else { "OVER TARGET" }
    );
    // The alternative to copying a stopped cluster: a template database copied by the server.
    let mut client = cluster.connect("postgres").map_err(|e| e.to_string())?;
    if binaries.major() >= 15 {
        let started = Instant::now();
        client
            .batch_execute("CREATE DATABASE file_copy TEMPLATE floor_restore STRATEGY FILE_COPY")
            .map_err(|e| format!("CREATE DATABASE ... STRATEGY FILE_COPY failed: {e}"))?;
        let file_copy = started.elapsed();
        println!(
            "{:<34} copy of the stopped cluster + start {:>9.1} ms   CREATE DATABASE ... STRATEGY FILE_COPY {:>9.1} ms",
            "template copy",
            cached.restore_seconds * 1000.0,
            file_copy.as_secs_f64() * 1000.0
        );
    }
    println!(
        "{:<34} {SMALL} events {:>7} kB   {LARGE} events {:>7} kB (cached repeat {:>7} kB)   ratio {:.2}x",
        "peak RSS of the dry-run process",
        small_run.peak_rss_kb,
        first.peak_rss_kb,
        cached.peak_rss_kb,
        first.peak_rss_kb as f64 / small_run.peak_rss_kb.max(1) as f64
    );
    Ok(())
}

/// A database at V1 with `events` events and what goes with them, dumped in custom format.
fn snapshot(
    bench: &Bench,
    cluster: &Cluster,
    pg_dump: &Path,
    dir: &Path,
    events: u64,
) -> Result<std::path::PathBuf, String> {
    let db = format!("snapshot_{events}");
    cluster.ensure_database(&db).map_err(|e| e.to_string())?;
    let mut migrate = bench.command(&bench.ecomind_db, &db);
    migrate.args(["migrate", "--env", "dev", "--to", "1"]);
    crate::timed(migrate, "ecomind-db migrate --to 1")?;
    let mut client = cluster.connect(&db).map_err(|e| e.to_string())?;
    client
        .batch_execute(&SEED.replace(":events", &events.to_string()))
        .map_err(|e| format!("cannot generate the snapshot: {e}"))?;
    drop(client);
    let path = dir.join(format!("ecomind-{events}.dump"));
    let mut dump = bench.command(pg_dump, &db);
    dump.arg("-Fc").arg(format!("--file={}", path.display()));
    crate::timed(dump, "pg_dump")?;
    Ok(path)
}

/// Runs `ecomind-db dry-run --json` with the cache in `cache`, polling its peak RSS (VmHWM).
fn dry_run(bench: &Bench, snapshot: &Path, cache: &Path) -> Result<Measured, String> {
    let mut cmd = Command::new(&bench.ecomind_db);
    for var in [
        "DATABASE_URL",
        "PGPASSWORD",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["dry-run", "--env", "dev", "--json", "--snapshot"])
        .arg(snapshot)
        .env("XDG_CACHE_HOME", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run ecomind-db dry-run: {e}"))?;
    let pid = child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let hwm = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
                match hwm {
                    Some(kb) => {
                        peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                    }
                    // A zombie has no memory line: it has exited.
                    None => break,
                }
                if started.elapsed() > Duration::from_secs(3600) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for ecomind-db dry-run: {e}"))?;
    let _ = watcher.join();
    if !output.status.success() {
        return Err(format!(
            "ecomind-db dry-run failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("ecomind-db dry-run printed no JSON document: {e}"))?;
    Ok(Measured {
        restore_seconds: doc["restore"]["seconds"].as_f64().unwrap_or(f64::NAN),
        from_cache: doc["restore"]["from_cache"].as_bool().unwrap_or(false),
        verdict: doc["verdict"].as_str().unwrap_or_default().to_owned(),
        peak_rss_kb: peak.load(std::sync::atomic::Ordering::Relaxed),
    })
}
