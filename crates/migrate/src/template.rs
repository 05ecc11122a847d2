//! A new migration pair from the template: the next `V{n}__{name}.sql` and its `.down.sql`,
//! with header comments that say what the directives mean and that the down must be the exact
//! inverse. Files are created, never overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, DESTRUCTIVE, IRREVERSIBLE, NO_TRANSACTION};
use crate::Error;

/// The pair that was written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewMigration {
    /// Its version.
    pub version: i32,
    /// Its name.
    pub name: String,
    /// The up file.
    pub up: PathBuf,
    /// The down file.
    pub down: PathBuf,
}

/// What to write.
#[derive(Clone, Copy, Debug)]
pub struct NewOptions<'a> {
    /// The migrations folder.
    pub dir: &'a Path,
    /// The name, in snake_case.
    pub name: &'a str,
    /// The version; `None` takes the one after the folder's highest.
    pub version: Option<i32>,
}

/// Writes the next migration pair into the folder, after checking the folder loads as a catalog,
/// the name is snake_case and the version is new and above every existing one.
pub fn write_new(options: &NewOptions<'_>) -> Result<NewMigration, Error> {
    let name = options.name;
    check_name(name)?;
    let catalog = Catalog::load_dir(options.dir)?;
    let head = catalog.migrations().last().map_or(0, |m| m.version());
    let version = options.version.unwrap_or(head + 1);
    let refuse = |reason: String| Error::InvalidCatalog {
        file: format!("V{version}__{name}.sql"),
        reason,
    };
    if let Some(existing) = catalog.get(version) {
        return Err(refuse(format!(
            "version {version} exists ({}); leave out --version to take V{}",
            existing.file_name(),
            head + 1
        )));
    }
    if version <= head {
        return Err(refuse(format!(
            "version {version} is below V{head}, the highest in the folder, and `migrate` refuses a migration older than the applied head; leave out --version to take V{}",
            head + 1
        )));
    }
    if version < 1 {
        return Err(refuse("versions start at 1".to_owned()));
    }
    let up = options.dir.join(format!("V{version}__{name}.sql"));
    let down = options.dir.join(format!("V{version}__{name}.down.sql"));
    create(&up, &up_text(version, name))?;
    if let Err(e) = create(&down, &down_text(version, name)) {
        let _ = std::fs::remove_file(&up);
        return Err(e);
    }
    Ok(NewMigration {
        version,
        name: name.to_owned(),
        up,
        down,
    })
}

/// snake_case: lowercase letters and digits in words joined by single underscores, starting
/// with a letter (the catalog's file-name rule, minus what makes names hard to read).
fn check_name(name: &str) -> Result<(), Error> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.contains("__")
        && !name.ends_with('_');
    if ok {
        return Ok(());
    }
    Err(Error::InvalidCatalog {
        file: format!("V{{n}}__{name}.sql"),
        reason: format!(
            "`{name}` is not a snake_case name: use lowercase letters, digits and single underscores, starting with a letter, such as add_api_key_scopes"
        ),
    })
}

fn create(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| Error::WriteMigration {
            path: path.display().to_string(),
            source,
        })
}

fn up_text(version: i32, name: &str) -> String {
    format!(
        "\
-- V{version}__{name}: what this migration changes and why, in a sentence or two.
--
-- Directives, if any, go on the very first lines of the file, each alone on its line:
--   {NO_TRANSACTION:<27}run outside a transaction, one statement at a time (needed
--   {blank:<27}for CREATE/DROP INDEX CONCURRENTLY); write every statement
--   {blank:<27}so that it can be rerun (IF NOT EXISTS, IF EXISTS)
--   {IRREVERSIBLE:<27}there is no down file: delete it; rollback refuses to pass this
--   {DESTRUCTIVE:<27}it deletes data on purpose (drops a table or a column)
-- Without {NO_TRANSACTION} the file runs in one transaction together with its history
-- row: no BEGIN or COMMIT here. The environment's lock_timeout and statement_timeout apply.
-- `cargo xtask lint` names what would lock or rewrite a busy table, and the safe pattern.

-- Replace this statement with the change; it is here so that the new pair already passes CI.
SELECT 1;
",
        blank = ""
    )
}

fn down_text(version: i32, name: &str) -> String {
    format!(
        "\
-- V{version}__{name} (down): reverses V{version}__{name}.sql exactly.
--
-- It must leave the schema exactly as it was before the up ran: CI applies the up, this file
-- and the up again, and compares schema fingerprints. Undo in reverse order what the up did;
-- a down that drops indexes concurrently needs {NO_TRANSACTION} on its first line.
-- If the change cannot be undone, delete this file and start the up with {IRREVERSIBLE}.

-- Replace this statement with the inverse of the up.
SELECT 1;
"
    )
}
