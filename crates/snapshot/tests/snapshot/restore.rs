//! Reading dumps and restoring them into sandboxes, with dumps the tests make themselves.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ecomind_snapshot::restore::{restore, RestoreOptions, RestoreProgress};
use ecomind_snapshot::{
    Auth, Binaries, ClusterOptions, Dump, DumpFormat, Error, Listen, Sandbox, TemplateCache,
};

/// An installation that has pg_dump: `ECOMIND_DB_BIN_DIR` when it is a full one, else the
/// search (server-only builds of other majors have no pg_dump, and Debian's pg_dump refuses
/// servers newer than itself).
fn full_binaries() -> Binaries {
    if let Some(dir) = ecomind_snapshot::configured_bin_dir() {
        let binaries = Binaries::locate(Some(&dir)).expect("configured binaries");
        if binaries.tool("pg_dump").is_some() {
            return binaries;
        }
    }
    Binaries::locate(None).expect("PostgreSQL binaries")
}

/// Dumps of one small database in every format, made once per test process.
struct Dumps {
    /// The source cluster; its folder (which holds the dumps) goes when the process ends.
    _sandbox: Sandbox,
    files: Vec<(DumpFormat, PathBuf)>,
}

fn dumps() -> &'static Dumps {
    static DUMPS: OnceLock<Dumps> = OnceLock::new();
    DUMPS.get_or_init(|| {
        let binaries = full_binaries();
        let sandbox = Sandbox::start(&ClusterOptions {
            binaries: &binaries,
            listen: Listen::Socket,
            auth: Auth::Trust,
            durable: false,
            settings: &[],
        })
        .expect("source sandbox");
        let cluster = sandbox.cluster();
        cluster.ensure_database("shop").expect("database");
        let mut client = cluster.connect("shop").expect("connect");
        client
            .batch_execute(
                "CREATE ROLE shop_owner; \
                 CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); \
                 INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g; \
                 CREATE INDEX items_name ON items (name); \
                 ALTER TABLE items OWNER TO shop_owner; \
                 GRANT SELECT ON items TO PUBLIC;",
            )
            .expect("fill");
        let dir = cluster.root().join("dumps");
        std::fs::create_dir(&dir).expect("dumps folder");
        let mut files = Vec::new();
        for (format, flag, name) in [
            (DumpFormat::Custom, "-Fc", "shop.dump"),
            (DumpFormat::Directory, "-Fd", "shop.dir"),
            (DumpFormat::Tar, "-Ft", "shop.tar"),
            (DumpFormat::Plain, "-Fp", "shop.sql"),
            (DumpFormat::PlainGzip, "-Fp", "shop.sql.gz"),
        ] {
            let path = dir.join(name);
            let mut args = vec![flag.to_owned(), format!("--file={}", path.display())];
            if format == DumpFormat::PlainGzip {
                args.push("--compress=6".to_owned());
            }
            cluster
                .run_client(&binaries, "pg_dump", &args, "shop")
                .expect("pg_dump");
            files.push((format, path));
        }
        drop(client);
        Dumps {
            _sandbox: sandbox,
            files,
        }
    })
}

fn restore_options<'a>(dump: &'a Dump, cache: Option<&'a TemplateCache>) -> RestoreOptions<'a> {
    RestoreOptions {
        dump,
        configured_bin_dir: None,
        jobs: 2,
        cache,
        server_major: None,
    }
}

fn count_items(restored: &ecomind_snapshot::Restored) -> i64 {
    let mut client = restored
        .sandbox
        .cluster()
        .connect(&restored.database)
        .expect("connect");
    client
        .query_one("SELECT count(*) FROM items", &[])
        .expect("count")
        .get(0)
}

#[test]
fn every_format_is_recognised_from_its_bytes_and_restored() {
    let server_major = full_binaries().major();
    // One thread per format: each restore has a sandbox of its own.
    std::thread::scope(|scope| {
        for (format, path) in &dumps().files {
            scope.spawn(move || check_format(*format, path, server_major));
        }
    });
}

fn check_format(format: DumpFormat, path: &Path, server_major: u32) {
    let dump = Dump::inspect(path).expect("inspect");
    assert_eq!(dump.format, format, "{}", path.display());
    assert!(dump.bytes > 0);
    assert_eq!(dump.source_major(), Some(server_major), "{format}");
    assert!(dump.pg_dump_version.is_some(), "{format}");
    if format.is_archive() {
        let version = dump.archive_version.expect("archive version");
        assert_eq!(version.major, 1);
        assert_eq!(dump.database.as_deref(), Some("shop"));
        assert!(dump.compression.is_some());
    }
    let mut saw_progress = false;
    let restored = restore(&restore_options(&dump, None), &mut |p| {
        saw_progress |= matches!(p, RestoreProgress::Loading { .. });
    })
    .unwrap_or_else(|e| panic!("{format}: {}", chain(&e)));
    assert!(saw_progress, "{format}");
    assert!(!restored.from_cache);
    assert_eq!(count_items(&restored), 500, "{format}");
    let root = restored.sandbox.root().to_path_buf();
    assert!(root.exists());
    drop(restored);
    assert!(!root.exists(), "{format}: the sandbox folder is gone");
}

#[test]
fn the_cache_serves_a_copy_and_keeps_at_most_n_templates() {
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = TemplateCache::new(&cache_dir.path().join("cache"), 1);
    let files = &dumps().files;
    let custom = Dump::inspect(&files[0].1).expect("inspect");
    let first = restore(&restore_options(&custom, Some(&cache)), &mut |_| {}).expect("first");
    assert!(!first.from_cache);
    assert!(first.copy_method.is_some());
    {
        // A write in the restored copy never reaches the template.
        let mut client = first.sandbox.cluster().connect(&first.database).unwrap();
        client.batch_execute("DELETE FROM items").unwrap();
    }
    drop(first);
    let second = restore(&restore_options(&custom, Some(&cache)), &mut |_| {}).expect("second");
    assert!(second.from_cache);
    assert_eq!(count_items(&second), 500);
    drop(second);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cache.dir()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    let tar = Dump::inspect(&files[2].1).expect("inspect");
    drop(restore(&restore_options(&tar, Some(&cache)), &mut |_| {}).expect("tar"));
    let templates: Vec<_> = std::fs::read_dir(cache.dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with("initdb-"))
        .collect();
    assert_eq!(templates.len(), 1, "at most one template is kept");
    let pruned = cache.prune().expect("prune");
    assert_eq!(pruned.templates, 1);
    assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 0);
}

/// One bad input: how to make it, and the words its error must contain.
fn check_refused(make: impl FnOnce(&Path) -> PathBuf, expected: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make(dir.path());
    let error = Dump::inspect(&path).expect_err("refused");
    let text = chain(&error);
    assert!(text.contains(expected), "{text}");
    assert!(!text.ends_with('.'), "{text}");
}

#[test]
fn bad_inputs_are_refused_with_a_sentence() {
    let custom = std::fs::read(&dumps().files[0].1).unwrap();
    check_refused(|dir| dir.join("nothing-here.dump"), "does not exist");
    check_refused(
        |dir| {
            let path = dir.join("empty.dump");
            std::fs::write(&path, b"").unwrap();
            path
        },
        "is empty",
    );
    check_refused(
        |dir| {
            let path = dir.join("random.dump");
            let bytes: Vec<u8> = (0u32..4096)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            std::fs::write(&path, bytes).unwrap();
            path
        },
        "is not a pg_dump dump",
    );
    check_refused(
        |dir| {
            let path = dir.join("cut.dump");
            std::fs::write(&path, &custom[..20]).unwrap();
            path
        },
        "is truncated",
    );
    check_refused(
        |dir| {
            let path = dir.join("folder");
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("1234.dat"), b"x").unwrap();
            path
        },
        "without toc.dat",
    );
    check_refused(
        |dir| {
            let path = dir.join("cut.sql");
            std::fs::write(
                &path,
                "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (a int);\n",
            )
            .unwrap();
            path
        },
        "is truncated",
    );
}

#[test]
fn a_truncated_archive_fails_the_restore() {
    let custom = std::fs::read(&dumps().files[0].1).unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("half.dump");
    std::fs::write(&path, &custom[..custom.len() * 2 / 3]).unwrap();
    let dump = Dump::inspect(&path).expect("the header is intact");
    let error = restore(&restore_options(&dump, None), &mut |_| {}).expect_err("truncated");
    assert!(
        matches!(
            error,
            Error::DumpTruncated { .. } | Error::RestoreFailed { .. }
        ),
        "{}",
        chain(&error)
    );
}

#[test]
fn an_archive_newer_than_every_pg_restore_is_refused_before_anything_starts() {
    let mut custom = std::fs::read(&dumps().files[0].1).unwrap();
    // The archive version's minor: 1.99 is newer than any pg_restore.
    custom[6] = 99;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("future.dump");
    std::fs::write(&path, &custom).unwrap();
    let dump = Dump::inspect(&path).expect("inspect");
    let error = restore(&restore_options(&dump, None), &mut |_| {}).expect_err("too new");
    let text = chain(&error);
    assert!(matches!(error, Error::ArchiveTooNew { .. }), "{text}");
    assert!(text.contains("newer than the newest pg_restore"), "{text}");
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
