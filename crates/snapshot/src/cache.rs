//! The template cache: restored clusters kept (stopped) in a private folder, so the next dry
//! run of the same dump copies a template instead of restoring it again.
//!
//! An entry is keyed by the dump's SHA-256, the server's major version and the restore
//! options. A template is copied with `cp --reflink=always` where the file system can share
//! blocks, else copied plainly; never hard-linked, because PostgreSQL writes relation files in
//! place and a write in the copy would change the template.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::Digest;

use crate::leftovers::Leftovers;
use crate::process::Tool;
use crate::Error;

/// Prefix of entries being written; removed when their writer is gone.
const PARTIAL: &str = ".partial-";
/// Prefix of empty clusters (initdb's output, no data), which do not count as templates.
pub(crate) const EMPTY: &str = "initdb-";
/// The file in an entry that describes it.
const META: &str = "template.txt";

/// How a template was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// `cp --reflink=always`: the copy shares blocks with the template until written.
    Reflink,
    /// `cp -a`: every byte copied.
    Copy,
}

impl CopyMethod {
    /// `reflink` or `copy`.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMethod::Reflink => "reflink",
            CopyMethod::Copy => "copy",
        }
    }
}

/// The cache folder and how many templates it keeps.
#[derive(Debug, Clone)]
pub struct TemplateCache {
    dir: PathBuf,
    keep: usize,
}

/// What `prune` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Templates removed.
    pub templates: usize,
    /// Bytes freed.
    pub bytes: u64,
}

impl TemplateCache {
    /// `$XDG_CACHE_HOME/ecomind-db`, else `$HOME/.cache/ecomind-db`.
    pub fn default_dir() -> Option<PathBuf> {
        let from = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        from("XDG_CACHE_HOME")
            .or_else(|| from("HOME").map(|home| home.join(".cache")))
            .map(|base| base.join("ecomind-db"))
    }

    /// The cache in `dir`, keeping at most `keep` templates (at least 1). The folder is created
    /// with mode 0700 when first written to.
    pub fn new(dir: &Path, keep: usize) -> TemplateCache {
        TemplateCache {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        }
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The template's data folder for `key`, if cached; marks it as used.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let entry = self.dir.join(key);
        let data = entry.join("data");
        if !data.join("PG_VERSION").is_file() || !entry.join(META).is_file() {
            return None;
        }
        let _ = fs::File::options()
            .append(true)
            .open(entry.join(META))
            .and_then(|file| file.set_modified(SystemTime::now()));
        Some(data)
    }

    /// Copies the stopped cluster's data folder `data` into the cache as `key`, then keeps only
    /// the newest templates. `description` is written beside it for people.
    pub fn store(&self, key: &str, data: &Path, description: &str) -> Result<CopyMethod, Error> {
        self.create_dir()?;
        self.sweep_partials();
        let partial = self.dir.join(format!(
            "{PARTIAL}{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut leftovers = Leftovers::start()?;
        leftovers.add(&partial)?;
        fs::create_dir(&partial).map_err(|e| Error::io("create directory", &partial, e))?;
        let method = copy_tree(data, &partial.join("data"))?;
        let meta = partial.join(META);
        fs::write(&meta, description).map_err(|e| Error::io("write", &meta, e))?;
        let entry = self.dir.join(key);
        if fs::rename(&partial, &entry).is_err() {
            // Another run stored the same template first; ours goes with the guard.
            return Ok(method);
        }
        drop(leftovers);
        if !key.starts_with(EMPTY) {
            self.prune_to(self.keep);
        }
        Ok(method)
    }

    /// Removes every template; returns how many and their size.
    pub fn prune(&self) -> Result<Pruned, Error> {
        self.sweep_partials();
        let mut pruned = Pruned::default();
        for (entry, _) in self.entries(true) {
            let empty = entry
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(EMPTY));
            pruned.bytes += tree_size(&entry);
            fs::remove_dir_all(&entry).map_err(|e| Error::io("remove", &entry, e))?;
            if !empty {
                pruned.templates += 1;
            }
        }
        Ok(pruned)
    }

    /// Keeps the `keep` most recently used templates and removes the others.
    fn prune_to(&self, keep: usize) {
        let mut entries = self.entries(false);
        entries.sort_by_key(|(_, used)| std::cmp::Reverse(*used));
        for (entry, _) in entries.into_iter().skip(keep) {
            let _ = fs::remove_dir_all(entry);
        }
    }

    /// Templates with their last use; with `empty`, the empty clusters too.
    fn entries(&self, empty: bool) -> Vec<(PathBuf, SystemTime)> {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| empty || !e.file_name().to_string_lossy().starts_with(EMPTY))
            .filter_map(|e| {
                let used = fs::metadata(e.path().join(META))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                e.path().is_dir().then(|| (e.path(), used))
            })
            .collect()
    }

    /// Removes entries left half-written by processes that are gone.
    fn sweep_partials(&self) {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in read.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PARTIAL) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_none_or(|pid| !crate::os::is_alive(pid)) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    fn create_dir(&self) -> Result<(), Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("create directory", &self.dir, e))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("set permissions of", &self.dir, e))
    }
}

/// Copies a stopped cluster's folder, keeping owners and modes: a reflink copy where the file
/// system allows it, else a plain one. Never hard links. Whether reflinks work is probed with
/// one small file first: `cp --reflink=always` on a tree where they do not would otherwise try,
/// and fail, file by file.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<CopyMethod, Error> {
    let cp = |reflink: bool, from: &Path, to: &Path| {
        let mut tool = Tool::client("cp", Path::new("/bin/cp"), Path::new("/")).arg("-a");
        if reflink {
            tool = tool.arg("--reflink=always");
        }
        tool.arg("--").arg(from).arg(to).run()
    };
    let probe_to = to.with_extension("reflink-probe");
    let reflink = cp(true, &from.join("PG_VERSION"), &probe_to).is_ok();
    let _ = fs::remove_file(&probe_to);
    if reflink && cp(true, from, to).is_ok() {
        return Ok(CopyMethod::Reflink);
    }
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| Error::io("remove", to, e))?;
    }
    cp(false, from, to)?;
    Ok(CopyMethod::Copy)
}

/// The size of the files under `path`.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map_or(0, |read| {
        read.filter_map(Result::ok)
            .map(|e| tree_size(&e.path()))
            .sum()
    })
}

/// The SHA-256 of a dump, hex: of the file, or of a directory archive's files by name.
pub fn checksum(path: &Path) -> Result<String, Error> {
    let mut hasher = sha2::Sha256::new();
    let feed = |file: &Path, hasher: &mut sha2::Sha256| -> Result<(), Error> {
        let mut reader = fs::File::open(file).map_err(|e| Error::io("open", file, e))?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = reader
                .read(&mut buffer)
                .map_err(|e| Error::io("read", file, e))?;
            if read == 0 {
                return Ok(());
            }
            hasher.update(&buffer[..read]);
        }
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map_err(|e| Error::io("read", path, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            hasher.update(file.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update([0]);
            feed(&file, &mut hasher)?;
        }
    } else {
        feed(path, &mut hasher)?;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
