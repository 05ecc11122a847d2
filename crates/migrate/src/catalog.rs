//! The migration catalog: the `V{n}__{name}.sql` files, checked before anything connects.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::classify::classify;
use crate::split;
use crate::Error;

/// The first-line directive of a migration that must run outside a transaction.
pub const NO_TRANSACTION: &str = "-- ecomind:no-transaction";
/// The first-line directive of a migration that has no down file and cannot be rolled back.
pub const IRREVERSIBLE: &str = "-- ecomind:irreversible";
/// The first-line directive of a migration that deletes data on purpose (drops a table or a
/// column): the lint and the dry-run accept its drops and show them as intended.
pub const DESTRUCTIVE: &str = "-- ecomind:destructive";
const DIRECTIVE_PREFIX: &str = "-- ecomind:";

/// One versioned migration: its up script, its down script, and how it must run.
#[derive(Clone)]
pub struct Migration {
    version: i32,
    name: String,
    up: String,
    down: Option<String>,
    down_is_noop: bool,
    transactional: bool,
    down_transactional: bool,
    destructive: bool,
    checksum: u64,
}

impl Migration {
    /// The version, unique across the catalog.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The name after `V{n}__`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The up script's file name, as it appears in the folder.
    pub fn file_name(&self) -> String {
        format!("V{}__{}.sql", self.version, self.name)
    }

    /// The down script's file name.
    pub fn down_file_name(&self) -> String {
        format!("V{}__{}.down.sql", self.version, self.name)
    }

    /// The up script.
    pub fn up_sql(&self) -> &str {
        &self.up
    }

    /// The down script, `None` for a migration marked irreversible.
    pub fn down_sql(&self) -> Option<&str> {
        self.down.as_deref()
    }

    /// True when the down file holds no statement (it is empty or only comments): an explicit
    /// no-op, as diesel and sqlx write for data fixes and backfills. Reverting the migration
    /// changes no schema and only removes its history row.
    pub fn has_noop_down(&self) -> bool {
        self.down_is_noop
    }

    /// False for a migration whose first line is the no-transaction directive.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// False for a migration whose down file starts with the no-transaction directive.
    pub fn is_down_transactional(&self) -> bool {
        self.down_transactional
    }

    /// True for a migration whose up file declares `-- ecomind:destructive`: it deletes data on purpose.
    pub fn is_destructive(&self) -> bool {
        self.destructive
    }

    /// The checksum refinery computes for this migration, so refinery's own tools agree with ours.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("name", &self.name)
            .field("transactional", &self.transactional)
            .field("reversible", &self.down.is_some())
            .field("noop_down", &self.down_is_noop)
            .finish()
    }
}

/// Every migration of a folder, ordered by version.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    migrations: Vec<Migration>,
}

/// What a file name says it is.
enum FileKind {
    Up,
    Down,
}

impl Catalog {
    /// Loads every migration of a folder (not recursive: migrations live side by side).
    pub fn load_dir(dir: &Path) -> Result<Catalog, Error> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadCatalog {
            path: dir.display().to_string(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::ReadCatalog {
                path: dir.display().to_string(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.eq_ignore_ascii_case("README.md") {
                continue;
            }
            // The entry's type comes with the listing; only a symbolic link (or a filesystem
            // that does not say) costs a `stat`, which follows the link.
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if regular || is_file_behind(&entry.path(), &name)? {
                paths.push((name, entry.path()));
            }
        }
        // Reading is most of the work for a long history: two or more threads share it.
        let files = in_parallel(&paths, Vec::new, |buffer, entry| read_file(entry, buffer))
            .into_iter()
            .collect::<Result<Vec<_>, Error>>()?;
        Catalog::from_files(files)
    }

    /// Builds a catalog from `(file name, contents)` pairs, such as the copies embedded in the binary.
    pub fn from_files<N, T>(files: impl IntoIterator<Item = (N, T)>) -> Result<Catalog, Error>
    where
        N: AsRef<str>,
        T: AsRef<str>,
    {
        let files: Vec<(String, String)> = files
            .into_iter()
            .map(|(file, text)| (file.as_ref().to_owned(), text.as_ref().to_owned()))
            .collect();
        // Splitting every file into statements is the work that grows with the history: it is
        // done up front, on two or more threads for a long one. The checks below consult it in
        // the same order as ever, so the error a bad folder gets does not change.
        let results = in_parallel(
            &files,
            || (),
            |(), (file, text)| {
                let (kind, _, _) = parse_file_name(file).ok()?;
                if text.contains('\0') {
                    return None;
                }
                let emptiness = match kind {
                    FileKind::Up => Emptiness::Refused,
                    FileKind::Down => Emptiness::NoOp,
                };
                Some(check_statements(file, text, emptiness))
            },
        );
        let mut statements: std::collections::HashMap<&str, Result<bool, Error>> = files
            .iter()
            .zip(results)
            .filter_map(|((file, _), result)| Some((file.as_str(), result?)))
            .collect();
        let mut checked = |file: &str, text: &str, emptiness: Emptiness| {
            statements
                .remove(file)
                .unwrap_or_else(|| check_statements(file, text, emptiness))
        };
        let mut ups: BTreeMap<i32, (String, String, String)> = BTreeMap::new();
        let mut downs: BTreeMap<i32, (String, String, String)> = BTreeMap::new();
        for (file, text) in &files {
            let (file, text) = (file.as_str(), text.as_str());
            let (kind, version, name) = parse_file_name(file)?;
            check_no_nul(file, text)?;
            let slot = match kind {
                FileKind::Up => &mut ups,
                FileKind::Down => &mut downs,
            };
            if let Some((other, _, _)) = slot.get(&version) {
                let (first, second) = if other.as_str() < file {
                    (other.as_str(), file)
                } else {
                    (file, other.as_str())
                };
                return Err(Error::DuplicateVersion {
                    version,
                    first: first.to_owned(),
                    second: second.to_owned(),
                });
            }
            slot.insert(version, (file.to_owned(), name, text.to_owned()));
        }

        let mut migrations = Vec::with_capacity(ups.len());
        for (version, (file, name, up)) in ups {
            let directives = directives(&file, &up)?;
            checked(&file, &up, Emptiness::Refused)?;
            let mut down_transactional = true;
            let mut down_is_noop = false;
            let down = match downs.remove(&version) {
                Some((down_file, down_name, down)) => {
                    if down_name != name {
                        return Err(Error::InvalidCatalog {
                            file: down_file,
                            reason: format!("its name does not match the up file {file}"),
                        });
                    }
                    if directives.irreversible {
                        return Err(Error::InvalidCatalog {
                            file,
                            reason: format!(
                                "it is marked irreversible but has a down file {down_file}; delete one of the two"
                            ),
                        });
                    }
                    down_transactional = !directives_of_down(&down_file, &down)?.no_transaction;
                    down_is_noop = checked(&down_file, &down, Emptiness::NoOp)?;
                    Some(down)
                }
                None if directives.irreversible => None,
                None => {
                    return Err(Error::InvalidCatalog {
                        file,
                        reason: format!(
                            "it has no down file; write V{version}__{name}.down.sql, or start the up file with `{IRREVERSIBLE}`"
                        ),
                    })
                }
            };
            let checksum = refinery_checksum(&name, version, &up);
            migrations.push(Migration {
                version,
                name,
                up,
                down,
                down_is_noop,
                transactional: !directives.no_transaction,
                down_transactional,
                destructive: directives.destructive,
                checksum,
            });
        }
        if let Some((_, (down_file, _, _))) = downs.into_iter().next() {
            return Err(Error::InvalidCatalog {
                file: down_file,
                reason: "it has no up file with the same version and name".to_owned(),
            });
        }
        Ok(Catalog { migrations })
    }

    /// The migrations, lowest version first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with this version.
    pub fn get(&self, version: i32) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }
}

/// True for a name the migrations folder cannot hold as anything but a migration file.
/// `work` over every item, in order; on two or more threads (each with its own `init` state)
/// when there are enough items to pay for them.
fn in_parallel<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len() / 64)
        .max(1);
    if threads == 1 {
        let mut state = init();
        return items.iter().map(|item| work(&mut state, item)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let (init, work) = (&init, &work);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut state = init();
                    part.iter()
                        .map(|item| work(&mut state, item))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a catalog worker does not panic"))
            .collect()
    })
}

/// For an entry the listing did not call a regular file: true when it leads to one (a
/// symbolic link to a file), false when it is something else not named like a migration, and
/// an error for anything else named like one.
fn is_file_behind(path: &Path, name: &str) -> Result<bool, Error> {
    // `metadata` follows symbolic links, so a link to a migration file is read as one.
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(true),
        // A folder or other entry not named like a migration is none of ours.
        Ok(_) | Err(_) if !looks_like_migration(name) => Ok(false),
        Ok(metadata) => {
            let what = if metadata.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            Err(unreadable_entry(
                name,
                format!("it is {what}, so it cannot be read as a migration; replace it with the SQL file or rename it so it does not look like a migration"),
            ))
        }
        Err(source) => {
            let reason = match std::fs::read_link(path) {
                Ok(target) if source.raw_os_error() == Some(libc::ELOOP) => format!(
                    "it is a symbolic link to {} that loops back on itself; point it at the SQL file",
                    target.display()
                ),
                Ok(target) if source.kind() == std::io::ErrorKind::NotFound => format!(
                    "it is a symbolic link to {}, which does not exist; point it at the SQL file or remove it",
                    target.display()
                ),
                _ => format!("it cannot be read ({source})"),
            };
            Err(unreadable_entry(name, reason))
        }
    }
}

/// A file's text: open, read until the end into `buffer` (one per thread, reused), close. No
/// `stat` for a size hint and no fresh zeroed buffer per file: migrations are small, and on a
/// long history each system call and page fault counts.
fn read_file(
    (name, path): &(String, std::path::PathBuf),
    buffer: &mut Vec<u8>,
) -> Result<(String, String), Error> {
    use std::io::Read as _;
    let failed = |source| Error::ReadCatalog {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(failed)?;
    if buffer.is_empty() {
        buffer.resize(64 * 1024, 0);
    }
    let mut len = 0;
    loop {
        if len == buffer.len() {
            buffer.resize(len * 2, 0);
        }
        match file.read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let text = std::str::from_utf8(&buffer[..len]).map_err(|_| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })?;
    Ok((name.clone(), text.to_owned()))
}

/// The checksum refinery records for `V{version}__{name}` with this SQL: SipHash 1-3 (zero keys)
/// over the name, the version and the SQL, as `refinery_core::Migration::unapplied` computes it
/// (without its file-name regex, which costs more to build than a long history to hash). Names
/// are `[a-z0-9_]+` here, all of which refinery's `\w+` takes. A test holds the two equal.
pub(crate) fn refinery_checksum(name: &str, version: i32, sql: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = siphasher::sip::SipHasher13::new();
    name.hash(&mut hasher);
    version.hash(&mut hasher);
    sql.hash(&mut hasher);
    hasher.finish()
}

fn looks_like_migration(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".sql") || parse_file_name(name).is_ok()
}

fn unreadable_entry(name: &str, reason: String) -> Error {
    Error::InvalidCatalog {
        file: name.to_owned(),
        reason,
    }
}

fn parse_file_name(file: &str) -> Result<(FileKind, i32, String), Error> {
    let invalid = |reason: &str| Error::InvalidCatalog {
        file: file.to_owned(),
        reason: reason.to_owned(),
    };
    let (stem, kind) = if let Some(stem) = file.strip_suffix(".down.sql") {
        (stem, FileKind::Down)
    } else if let Some(stem) = file.strip_suffix(".sql") {
        (stem, FileKind::Up)
    } else {
        return Err(invalid(
            "only V{n}__{name}.sql and V{n}__{name}.down.sql files belong in the migrations folder",
        ));
    };
    let malformed = "its name is not V{n}__{snake_name}.sql (n a positive whole number, name of lowercase letters, digits and _)";
    let rest = stem.strip_prefix('V').ok_or_else(|| invalid(malformed))?;
    let (digits, name) = rest.split_once("__").ok_or_else(|| invalid(malformed))?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(invalid(malformed));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(malformed));
    }
    let version: i32 = digits
        .parse()
        .map_err(|_| invalid("its version does not fit in a 32-bit integer"))?;
    if version == 0 {
        return Err(invalid("versions start at 1"));
    }
    Ok((kind, version, name.to_owned()))
}

#[derive(Default)]
struct Directives {
    no_transaction: bool,
    irreversible: bool,
    destructive: bool,
}

/// Reads the directives on the leading comment lines of an up file; an unknown one is an error.
fn directives(file: &str, text: &str) -> Result<Directives, Error> {
    let mut found = Directives::default();
    for line in leading_directive_lines(text) {
        match line {
            NO_TRANSACTION => found.no_transaction = true,
            IRREVERSIBLE => found.irreversible = true,
            DESTRUCTIVE => found.destructive = true,
            other => {
                return Err(Error::InvalidCatalog {
                    file: file.to_owned(),
                    reason: format!(
                        "unknown directive `{other}`; the known ones are `{NO_TRANSACTION}`, `{IRREVERSIBLE}` and `{DESTRUCTIVE}`"
                    ),
                })
            }
        }
    }
    Ok(found)
}

/// A down file may only say `no-transaction`.
fn directives_of_down(file: &str, text: &str) -> Result<Directives, Error> {
    let found = directives(file, text)?;
    if found.irreversible {
        return Err(Error::InvalidCatalog {
            file: file.to_owned(),
            reason: format!("`{IRREVERSIBLE}` belongs on the up file"),
        });
    }
    Ok(found)
}

fn leading_directive_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("--"))
        .filter(|l| l.starts_with(DIRECTIVE_PREFIX))
}

/// What an empty script (no statement, perhaps comments) means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emptiness {
    /// An up file must do something.
    Refused,
    /// A down file may deliberately do nothing: the up was a data fix or a backfill.
    NoOp,
}

/// Checks a script's statements leave transactions to the engine; returns true when it has
/// none, which only a down file may.
fn check_statements(file: &str, text: &str, emptiness: Emptiness) -> Result<bool, Error> {
    let statements = split::statements(text).map_err(|e| Error::InvalidCatalog {
        file: file.to_owned(),
        reason: e.to_string(),
    })?;
    if statements.is_empty() {
        if emptiness == Emptiness::NoOp {
            return Ok(true);
        }
        return Err(Error::InvalidCatalog {
            file: file.to_owned(),
            reason: "it has no SQL statement".to_owned(),
        });
    }
    if let Some(statement) = statements
        .iter()
        .find(|s| classify(s.sql).controls_transaction())
    {
        return Err(Error::InvalidCatalog {
            file: file.to_owned(),
            reason: format!(
                "line {} controls the transaction (`{}`); the engine runs each migration in one transaction together with its history row (or outside any, with `{NO_TRANSACTION}`), so remove it",
                statement.line,
                statement.sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ),
        });
    }
    if let Some(statement) = statements
        .iter()
        .find(|s| classify(s.sql).releases_advisory_locks)
    {
        return Err(Error::InvalidCatalog {
            file: file.to_owned(),
            reason: format!(
                "line {} releases the session's advisory locks (`{}`), the migration lock among them, so a second deploy could start migrating at the same time; remove it (DISCARD TEMP, PLANS or SEQUENCES release nothing)",
                statement.line,
                statement.sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            ),
        });
    }
    Ok(false)
}

/// PostgreSQL cannot receive a NUL byte in a query: refuse it before anything runs, where it is.
fn check_no_nul(file: &str, text: &str) -> Result<(), Error> {
    let Some(offset) = text.find('\0') else {
        return Ok(());
    };
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    Err(Error::InvalidCatalog {
        file: file.to_owned(),
        reason: format!(
            "line {line}, column {column} holds a NUL byte, which PostgreSQL cannot receive in SQL; remove it (was the file saved as UTF-16?)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    /// What a case adds to the folder.
    type Setup = Box<dyn FnOnce(&Path)>;

    /// A folder with a valid V1 and whatever `setup` adds, loaded: the error message, or "ok".
    fn load_with(setup: impl FnOnce(&Path)) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a ();").expect("write");
        std::fs::write(dir.path().join("V1__a.down.sql"), "DROP TABLE a;").expect("write");
        setup(dir.path());
        match Catalog::load_dir(dir.path()) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_statement_that_releases_the_migration_lock_is_refused() {
        let load = |up: &str| {
            Catalog::from_files([("V1__a.sql", up), ("V1__a.down.sql", "SELECT 1;")])
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for up in [
            "-- ecomind:no-transaction\nCREATE TABLE a (id int);\nDISCARD ALL;\n",
            "SELECT pg_advisory_unlock_all();",
            "DO $$BEGIN PERFORM pg_catalog.pg_advisory_unlock_all(); END$$;",
        ] {
            let err = load(up).expect_err(up);
            assert!(
                err.contains("releases the session's advisory locks"),
                "{err}"
            );
        }
        load("-- ecomind:no-transaction\nDISCARD TEMP;\n").expect("DISCARD TEMP keeps the lock");
        load("SELECT 'DISCARD ALL';").expect("a string is not a statement");
    }

    #[test]
    fn the_checksum_is_refinerys() {
        let sqls = [
            "",
            "CREATE TABLE a (id int);",
            "-- ecomind:no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);\n",
            "SELECT 'é ünïcode ✓';\n\n",
        ];
        for (i, sql) in sqls.iter().enumerate() {
            for (version, name) in [(1, "baseline"), (42, "add_x_2"), (i32::MAX, "_")] {
                let refinery =
                    refinery_core::Migration::unapplied(&format!("V{version}__{name}"), sql)
                        .expect("refinery parses the name")
                        .checksum();
                assert_eq!(
                    refinery_checksum(name, version, sql),
                    refinery,
                    "sql #{i}, V{version}__{name}"
                );
            }
        }
    }

    #[test]
    fn entries_named_like_migrations_that_are_not_files_are_refused_at_load() {
        let cases: Vec<(&str, Setup, &str)> = vec![
            (
                "directory",
                Box::new(|d| std::fs::create_dir(d.join("V7__x.sql")).expect("mkdir")),
                "migration file V7__x.sql is invalid: it is a directory, so it cannot be read as a migration",
            ),
            (
                "directory named like a down file",
                Box::new(|d| std::fs::create_dir(d.join("V1__a.down.sql.d.sql")).expect("mkdir")),
                "V1__a.down.sql.d.sql is invalid: it is a directory",
            ),
            (
                "dangling symlink",
                Box::new(|d| symlink(d.join("gone.sql"), d.join("V7__x.sql")).expect("symlink")),
                "migration file V7__x.sql is invalid: it is a symbolic link to ",
            ),
            (
                "symlink loop",
                Box::new(|d| {
                    symlink(d.join("V8__y.sql"), d.join("V7__x.sql")).expect("symlink");
                    symlink(d.join("V7__x.sql"), d.join("V8__y.sql")).expect("symlink");
                }),
                "that loops back on itself",
            ),
            (
                "a symlink to a migration is read",
                Box::new(|d| {
                    std::fs::create_dir(d.join("archive")).expect("mkdir");
                    std::fs::write(d.join("archive/V2__b.sql"), "CREATE TABLE b ();").expect("write");
                    std::fs::write(d.join("archive/V2__b.down.sql"), "DROP TABLE b;").expect("write");
                    symlink(d.join("archive/V2__b.sql"), d.join("V2__b.sql")).expect("symlink");
                    symlink(d.join("archive/V2__b.down.sql"), d.join("V2__b.down.sql")).expect("symlink");
                }),
                "ok",
            ),
            (
                "a folder not named like a migration is left alone",
                Box::new(|d| std::fs::create_dir(d.join("archive")).expect("mkdir")),
                "ok",
            ),
        ];
        for (name, setup, expected) in cases {
            let got = load_with(setup);
            assert!(
                got.contains(expected),
                "{name}: expected `{expected}` in `{got}`"
            );
        }
        let dangling =
            load_with(|d| symlink(d.join("gone.sql"), d.join("V7__x.sql")).expect("symlink"));
        assert!(
            dangling.contains("gone.sql, which does not exist"),
            "{dangling}"
        );
    }

    #[test]
    fn an_empty_or_comment_only_down_is_a_noop_and_an_empty_up_is_refused() {
        for down in [
            "",
            "\n",
            "-- backfill only, nothing to undo\n",
            "-- ecomind:no-transaction\n/* nothing */",
        ] {
            let catalog = Catalog::from_files([
                ("V1__fix.sql", "UPDATE t SET x = 1;"),
                ("V1__fix.down.sql", down),
            ])
            .unwrap_or_else(|e| panic!("{down:?}: {e}"));
            assert!(catalog.get(1).expect("V1").has_noop_down(), "{down:?}");
        }
        let real = Catalog::from_files([
            ("V1__a.sql", "CREATE TABLE a ();"),
            ("V1__a.down.sql", "DROP TABLE a;"),
        ])
        .expect("valid");
        assert!(!real.get(1).expect("V1").has_noop_down());
        for up in ["", "-- nothing\n"] {
            let err = Catalog::from_files([("V1__fix.sql", up), ("V1__fix.down.sql", "")])
                .expect_err("an empty up is an error")
                .to_string();
            assert!(
                err.contains("V1__fix.sql is invalid: it has no SQL statement"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_nul_byte_is_refused_naming_file_line_and_column() {
        let check = |files: &[(&str, &str)], expected: &str| {
            let got = Catalog::from_files(files.iter().copied())
                .expect_err(expected)
                .to_string();
            assert!(got.contains(expected), "expected `{expected}` in `{got}`");
        };
        check(
            &[
                ("V1__a.sql", "CREATE TABLE a ();\nSELECT 'é\0';"),
                ("V1__a.down.sql", "DROP TABLE a;"),
            ],
            "migration file V1__a.sql is invalid: line 2, column 10 holds a NUL byte",
        );
        check(
            &[
                ("V1__a.sql", "CREATE TABLE a ();"),
                ("V1__a.down.sql", "\0DROP TABLE a;"),
            ],
            "V1__a.down.sql is invalid: line 1, column 1 holds a NUL byte",
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Any valid name, version and SQL: our checksum is the one refinery records.
        #[test]
        fn the_checksum_is_refinerys_for_any_migration(
            version in 1..=i32::MAX,
            name in "[a-z0-9_]{1,40}",
            sql in proptest::prelude::any::<String>(),
        ) {
            let refinery = refinery_core::Migration::unapplied(&format!("V{version}__{name}"), &sql)
                .expect("refinery parses the name")
                .checksum();
            proptest::prop_assert_eq!(refinery_checksum(&name, version, &sql), refinery);
        }

        /// No file name and no contents make loading panic: every input is a catalog or an error.
        #[test]
        fn loading_any_file_never_panics(
            name in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[VU]?[0-9]{0,12}_{0,3}[a-zA-Z0-9_é.]{0,12}(\\.down)?\\.(sql|SQL|txt|)",
            ],
            text in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "(--[^\n]*\n|/\\*|\\*/|\\$[a-z]?\\$|'|\"|E'|;|\\\\|BEGIN|CREATE TABLE t \\(\\)|\0| |\n){0,20}",
            ],
        ) {
            let _ = parse_file_name(&name);
            let _ = Catalog::from_files([(name.as_str(), text.as_str()), ("V1__a.down.sql", text.as_str())]);
            let _ = split::statements(&text);
        }
    }
}
