//! Restoring a dump into a sandbox: the server of the dump's major version where we have it,
//! restore-speed settings for the load, pg_restore in parallel (or psql for SQL scripts),
//! ANALYZE, and the template cache around it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::{self, CopyMethod, TemplateCache};
use crate::dump::{self, Dump, DumpFormat};
use crate::process::Tool;
use crate::{Auth, Binaries, Cluster, ClusterOptions, Error, Listen, Sandbox};

/// Server settings for the load. fsync, synchronous_commit and full_page_writes are off in
/// every sandbox already (`durable: false`).
pub const LOAD_SETTINGS: &[(&str, &str)] = &[
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("autovacuum", "off"),
    ("maintenance_work_mem", "512MB"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "1h"),
];

/// The settings the sandbox runs under once the load is done (autovacuum back on), for reports.
pub const RUN_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "minimal"),
    ("autovacuum", "on"),
];

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions<'a> {
    /// The dump, as [`Dump::inspect`] read it.
    pub dump: &'a Dump,
    /// A configured PostgreSQL bin folder (one candidate among the installations found).
    pub configured_bin_dir: Option<&'a Path>,
    /// pg_restore's `--jobs` for custom and directory archives (at least 1).
    pub jobs: usize,
    /// The template cache; `None` restores from the dump every time and keeps nothing.
    pub cache: Option<&'a TemplateCache>,
    /// Run the sandbox on this installed major instead of the dump's own (e.g. the major an
    /// upgrade goes to); not older than the dump's.
    pub server_major: Option<u32>,
}

/// What the restore tells its caller while it works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreProgress {
    /// Computing the dump's checksum for the cache.
    Checksum,
    /// Copying a cached template.
    CopyingTemplate,
    /// Loading: `done` of `total` table-of-contents entries (archives) or bytes (SQL scripts).
    Loading {
        /// Done so far.
        done: u64,
        /// All of them.
        total: u64,
        /// `entries` or `bytes`.
        unit: &'static str,
    },
    /// Running ANALYZE.
    Analyzing,
    /// Saving the restored cluster as a template.
    SavingTemplate,
}

/// A restored dump in a running sandbox; dropping it stops the server and removes everything.
#[derive(Debug)]
pub struct Restored {
    /// The sandbox (drop it to remove everything).
    pub sandbox: Sandbox,
    /// The database that holds the dump.
    pub database: String,
    /// The server that runs the sandbox.
    pub server: Binaries,
    /// Set when the sandbox's major differs from the dump's source: which major timings come from and why.
    pub major_note: Option<String>,
    /// Wall time of the restore (or of the template copy), including ANALYZE.
    pub seconds: f64,
    /// True when a cached template was copied instead of restoring.
    pub from_cache: bool,
    /// How the template was copied (cache hits), or how it was saved (misses with a cache).
    pub copy_method: Option<CopyMethod>,
    /// The cache folder, when a cache was used.
    pub cache_dir: Option<PathBuf>,
    /// The cache key (dump checksum, major and options).
    pub cache_key: Option<String>,
    /// The SHA-256 of the dump, when it was computed for the cache.
    pub checksum: Option<String>,
}

/// Restores `opts.dump` into a new sandbox.
///
/// Chooses the server of the dump's major version where it is installed (else the nearest,
/// and says so; or the major `opts.server_major` asks for), checks that a pg_restore here can read the archive, restores with
/// `pg_restore --jobs N --no-owner --no-privileges --exit-on-error` (psql with
/// `ON_ERROR_STOP` and ownership and privilege statements left out for SQL scripts), runs
/// ANALYZE, and turns autovacuum back on. With a cache, an earlier restore of the same dump is
/// copied instead, and a new restore is saved. Whatever happens, a failed restore leaves
/// nothing behind: the sandbox removes itself.
pub fn restore(
    opts: &RestoreOptions<'_>,
    on_progress: &mut dyn FnMut(RestoreProgress),
) -> Result<Restored, Error> {
    let installed = Binaries::installed(opts.configured_bin_dir);
    let (server, major_note) =
        choose_server(&installed, opts.dump.source_major(), opts.server_major)?;
    let client = choose_client(&installed, opts.dump)?;
    let database = opts
        .dump
        .database
        .clone()
        .filter(|name| !name.is_empty() && name.len() < 64)
        .unwrap_or_else(|| "snapshot".to_owned());
    let started = Instant::now();
    let cluster_options = ClusterOptions {
        binaries: &server,
        listen: Listen::Socket,
        auth: Auth::Trust,
        durable: false,
        settings: LOAD_SETTINGS,
    };
    let mut checksum = None;
    let mut cache_key = None;
    if let Some(cache) = opts.cache {
        on_progress(RestoreProgress::Checksum);
        let sum = cache::checksum(&opts.dump.path)?;
        let key = format!(
            "{}-pg{}-{}",
            &sum[..32],
            server.major(),
            options_tag(opts.dump.format)
        );
        if let Some(template) = cache.lookup(&key) {
            on_progress(RestoreProgress::CopyingTemplate);
            let mut method = None;
            let sandbox = Sandbox::start_from(&cluster_options, &mut |data| {
                method = Some(cache::copy_tree(&template, data)?);
                Ok(())
            })?;
            after_load(sandbox.cluster(), &database)?;
            return Ok(Restored {
                sandbox,
                database,
                server,
                major_note,
                seconds: started.elapsed().as_secs_f64(),
                from_cache: true,
                copy_method: method,
                cache_dir: Some(cache.dir().to_path_buf()),
                cache_key: Some(key),
                checksum: Some(sum),
            });
        }
        checksum = Some(sum);
        cache_key = Some(key);
    }
    let mut sandbox = match opts.cache {
        // initdb takes seconds; a copy of the empty cluster it made last time takes a fraction.
        Some(cache) => Sandbox::start_from(&cluster_options, &mut |data| {
            empty_cluster(cache, &cluster_options, data)
        })?,
        None => Sandbox::start(&cluster_options)?,
    };
    let cluster = sandbox.cluster().clone();
    create_database(&cluster, &database)?;
    load(opts, &cluster, &client, &database, on_progress)?;
    on_progress(RestoreProgress::Analyzing);
    let mut db = cluster.connect(&database)?;
    db.batch_execute("ANALYZE; CHECKPOINT")
        .map_err(|source| Error::Postgres {
            action: "ANALYZE the restored database".to_owned(),
            socket_dir: cluster.socket_dir().to_path_buf(),
            source,
        })?;
    drop(db);
    let mut copy_method = None;
    if let (Some(cache), Some(key)) = (opts.cache, &cache_key) {
        on_progress(RestoreProgress::SavingTemplate);
        let description = format!(
            "dump: {}\nformat: {}\nbytes: {}\nsha256: {}\nserver: {}\ndatabase: {database}\n",
            opts.dump.path.display(),
            opts.dump.format,
            opts.dump.bytes,
            checksum.as_deref().unwrap_or_default(),
            server.version()
        );
        copy_method = Some(sandbox.with_server_stopped(&cluster_options, |cluster| {
            cache.store(key, cluster.data_dir(), &description)
        })?);
    }
    after_load(sandbox.cluster(), &database)?;
    Ok(Restored {
        sandbox,
        database,
        server,
        major_note,
        seconds: started.elapsed().as_secs_f64(),
        from_cache: false,
        copy_method,
        cache_dir: opts.cache.map(|c| c.dir().to_path_buf()),
        cache_key,
        checksum,
    })
}

/// Fills `data` with an empty cluster: a copy of the cached one of this server version, or
/// initdb's output, which is then cached (it holds no data).
fn empty_cluster(cache: &TemplateCache, opts: &ClusterOptions, data: &Path) -> Result<(), Error> {
    let version = opts.binaries.version();
    let hash = version.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let key = format!("{}pg{}-{hash:016x}", cache::EMPTY, opts.binaries.major());
    if let Some(template) = cache.lookup(&key) {
        cache::copy_tree(&template, data)?;
        return Ok(());
    }
    let root = data.parent().unwrap_or(data);
    Cluster::open(root).initdb(opts, &crate::os::run_as()?)?;
    let description = format!("an empty cluster made by initdb of {version}\n");
    cache.store(&key, data, &description)?;
    Ok(())
}

/// What distinguishes restores of one dump on one major: the tool and its options.
fn options_tag(format: DumpFormat) -> &'static str {
    if format.is_archive() {
        "pg_restore-no-owner-no-privileges"
    } else {
        "psql-no-owner-no-privileges"
    }
}

/// The server for a dump from `source_major`: `wanted` when given (it must be installed and not
/// older than the dump's major), else the dump's major if installed, else the lowest newer one,
/// else the newest; with a sentence when it is not the dump's own.
pub fn choose_server(
    installed: &[Binaries],
    source_major: Option<u32>,
    wanted: Option<u32>,
) -> Result<(Binaries, Option<String>), Error> {
    if let Some(major) = wanted {
        return chosen_major(installed, source_major, major);
    }
    let Some(newest) = installed.first() else {
        return Binaries::locate(None).map(|b| (b, None));
    };
    let Some(source) = source_major else {
        return Ok((
            newest.clone(),
            Some(format!(
                "the dump does not say which PostgreSQL it came from; the sandbox runs PostgreSQL {}",
                newest.major()
            )),
        ));
    };
    if let Some(exact) = installed.iter().find(|b| b.major() == source) {
        return Ok((exact.clone(), None));
    }
    let chosen = installed
        .iter()
        .filter(|b| b.major() > source)
        .min_by_key(|b| b.major())
        .unwrap_or(newest);
    let majors: Vec<String> = installed.iter().map(|b| b.major().to_string()).collect();
    Ok((
        chosen.clone(),
        Some(format!(
            "the dump comes from PostgreSQL {source}, which is not installed here (found {}); timings come from PostgreSQL {}",
            majors.join(", "),
            chosen.major()
        )),
    ))
}

/// The server of the major asked for, with a sentence when it is not the dump's own.
fn chosen_major(
    installed: &[Binaries],
    source_major: Option<u32>,
    major: u32,
) -> Result<(Binaries, Option<String>), Error> {
    let Some(server) = installed.iter().find(|b| b.major() == major) else {
        let found: Vec<String> = installed.iter().map(|b| b.major().to_string()).collect();
        return Err(Error::MajorNotInstalled {
            major,
            found: if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            },
        });
    };
    let note = match source_major {
        Some(source) if source == major => None,
        Some(source) if source > major => {
            return Err(Error::MajorOlderThanDump {
                major,
                source_major: source,
            })
        }
        Some(source) => Some(format!(
            "the dump comes from PostgreSQL {source}; the sandbox runs PostgreSQL {major}, as asked, so timings come from PostgreSQL {major}"
        )),
        None => Some(format!(
            "the dump does not say which PostgreSQL it came from; the sandbox runs PostgreSQL {major}, as asked"
        )),
    };
    Ok((server.clone(), note))
}

/// The installation whose pg_restore and psql restore the dump: the newest that has them.
fn choose_client(installed: &[Binaries], dump: &Dump) -> Result<Binaries, Error> {
    let tool = if dump.format.is_archive() {
        "pg_restore"
    } else {
        "psql"
    };
    let client = installed
        .iter()
        .find(|b| b.tool(tool).is_some() && b.tool("psql").is_some())
        .cloned()
        .ok_or_else(|| Error::NoClient {
            tool: tool.to_owned(),
            looked: if installed.is_empty() {
                "no installation found".to_owned()
            } else {
                installed
                    .iter()
                    .map(|b| b.dir().display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    if let Some(version) = dump.archive_version {
        let readable = dump::newest_readable_minor(client.major());
        if version.major > 1 || version.minor > readable {
            return Err(too_new(dump, &client, readable));
        }
    }
    Ok(client)
}

fn too_new(dump: &Dump, client: &Binaries, readable: u8) -> Error {
    let needed = dump
        .pg_dump_version
        .as_deref()
        .and_then(dump::leading_major)
        .map_or_else(|| "newer".to_owned(), |m| m.to_string());
    Error::ArchiveTooNew {
        path: dump.path.clone(),
        archive: dump
            .archive_version
            .map_or_else(|| "?".to_owned(), |v| format!("{}.{}", v.major, v.minor)),
        pg_dump: dump
            .pg_dump_version
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
        pg_restore: format!("pg_restore {}", client.major()),
        readable,
        needed,
    }
}

fn create_database(cluster: &Cluster, name: &str) -> Result<(), Error> {
    let mut client = cluster.connect("postgres")?;
    let sql = format!(
        "CREATE DATABASE \"{}\" TEMPLATE template0",
        name.replace('"', "\"\"")
    );
    client
        .batch_execute(&sql)
        .map_err(|source| Error::Postgres {
            action: format!("create database {name:?}"),
            socket_dir: cluster.socket_dir().to_path_buf(),
            source,
        })
}

/// After a restore or a template copy: autovacuum on again, as production has it.
fn after_load(cluster: &Cluster, database: &str) -> Result<(), Error> {
    let mut client = cluster.connect(database)?;
    client
        .batch_execute("ALTER SYSTEM SET autovacuum = on")
        .and_then(|()| client.batch_execute("SELECT pg_reload_conf()"))
        .map_err(|source| Error::Postgres {
            action: "turn autovacuum back on".to_owned(),
            socket_dir: cluster.socket_dir().to_path_buf(),
            source,
        })
}

/// Runs pg_restore or psql with the controlled environment of every tool.
fn client_tool(cluster: &Cluster, client: &Binaries, program: &str, database: &str) -> Tool {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    Tool::client(program, &client.dir().join(program), &cwd)
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", cluster.superuser())
        .env("PGDATABASE", database)
        .env("PGAPPNAME", "ecomind-db dry-run restore")
        .env("PSQLRC", "/dev/null")
}

fn load(
    opts: &RestoreOptions<'_>,
    cluster: &Cluster,
    client: &Binaries,
    database: &str,
    on_progress: &mut dyn FnMut(RestoreProgress),
) -> Result<(), Error> {
    let dump = opts.dump;
    let failed = |detail: String| Error::RestoreFailed {
        path: dump.path.clone(),
        detail,
    };
    if dump.format.is_archive() {
        let listing = client_tool(cluster, client, "pg_restore", database)
            .arg("--list")
            .arg(&dump.path)
            .run()
            .map_err(|e| archive_error(dump, client, e))?;
        let total = dump::count_toc_entries(&listing) as u64;
        on_progress(RestoreProgress::Loading {
            done: 0,
            total,
            unit: "entries",
        });
        let mut done = 0u64;
        let mut tool = client_tool(cluster, client, "pg_restore", database)
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--verbose",
            ])
            .arg(format!("--dbname={database}"));
        if dump.format != DumpFormat::Tar {
            tool = tool.arg(format!("--jobs={}", opts.jobs.max(1)));
        }
        tool.arg(&dump.path)
            .run_streaming(
                None,
                &mut |line| {
                    if line.contains("processing item") || line.contains("finished item") {
                        done = (done + 1).min(total);
                        on_progress(RestoreProgress::Loading {
                            done,
                            total,
                            unit: "entries",
                        });
                    }
                },
                &mut || {},
            )
            .map_err(|e| archive_error(dump, client, e))
    } else {
        let file = std::fs::File::open(&dump.path).map_err(|e| Error::io("open", &dump.path, e))?;
        let total = dump.bytes;
        let counter = Counting {
            inner: file,
            read: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let read = counter.read.clone();
        let text: Box<dyn Read> = if dump.format == DumpFormat::PlainGzip {
            Box::new(flate2::read::MultiGzDecoder::new(counter))
        } else {
            Box::new(counter)
        };
        let mut filtered = PlainFilter::new(text);
        let result = client_tool(cluster, client, "psql", database)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .run_streaming(Some(&mut filtered), &mut |_| {}, &mut || {
                on_progress(RestoreProgress::Loading {
                    done: read.load(std::sync::atomic::Ordering::Relaxed).min(total),
                    total,
                    unit: "bytes",
                });
            });
        result.map_err(|e| match e {
            Error::Tool { stderr, .. } => failed(stderr),
            other => other,
        })?;
        if !filtered.complete {
            return Err(Error::DumpTruncated {
                path: dump.path.clone(),
                detail: "the SQL script lacks pg_dump's closing `-- PostgreSQL database dump complete` line".to_owned(),
            });
        }
        Ok(())
    }
}

/// Turns a pg_restore failure into the error that says what to do.
fn archive_error(dump: &Dump, client: &Binaries, error: Error) -> Error {
    let Error::Tool { stderr, .. } = &error else {
        return error;
    };
    if stderr.contains("unsupported version") {
        return too_new(dump, client, dump::newest_readable_minor(client.major()));
    }
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| {
            line.contains("error:") || line.contains("detail:") || line.contains("FATAL")
        })
        .collect();
    let detail = if errors.is_empty() {
        stderr.clone()
    } else {
        errors.join("; ")
    };
    if detail.contains("end of file") || detail.contains("could not read from input file") {
        return Error::DumpTruncated {
            path: dump.path.clone(),
            detail: format!("pg_restore ran out of data ({detail})"),
        };
    }
    Error::RestoreFailed {
        path: dump.path.clone(),
        detail,
    }
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Streams a plain SQL script without the statements that need the source's roles
/// (`ALTER ... OWNER TO`, `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`): what pg_restore's
/// `--no-owner --no-privileges` leave out. pg_dump writes each of these on one line; lines
/// inside `COPY ... FROM stdin` data are passed through untouched. Also notes whether the
/// script ends with pg_dump's closing line.
struct PlainFilter<R> {
    lines: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>>>,
    pending: Vec<u8>,
    at: usize,
    in_copy: bool,
    tail: Vec<Vec<u8>>,
    complete: bool,
    _reader: std::marker::PhantomData<R>,
}

impl<R: Read + 'static> PlainFilter<R> {
    fn new(reader: R) -> PlainFilter<R> {
        PlainFilter {
            lines: Box::new(dump::lines_of(reader)),
            pending: Vec::new(),
            at: 0,
            in_copy: false,
            tail: Vec::new(),
            complete: false,
            _reader: std::marker::PhantomData,
        }
    }

    /// Whether a line outside COPY data is left out.
    fn skipped(line: &[u8]) -> bool {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        (text.starts_with("ALTER ") && text.contains(" OWNER TO ") && text.ends_with(';'))
            || (text.starts_with("GRANT ") && text.ends_with(';'))
            || (text.starts_with("REVOKE ") && text.ends_with(';'))
            || text.starts_with("ALTER DEFAULT PRIVILEGES ")
    }
}

impl<R: Read + 'static> Read for PlainFilter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.pending.len() {
            let Some(line) = self.lines.next() else {
                self.complete = self.tail.iter().any(|l| dump::ends_complete(l));
                return Ok(0);
            };
            let line = line?;
            self.pending.clear();
            self.at = 0;
            if self.in_copy {
                if line == b"\\.\n" || line == b"\\.\r\n" || line == b"\\." {
                    self.in_copy = false;
                }
                self.pending = line;
                continue;
            }
            if line.starts_with(b"COPY ") && line.trim_ascii_end().ends_with(b"FROM stdin;") {
                self.in_copy = true;
            }
            self.tail.push(line.clone());
            if self.tail.len() > 12 {
                self.tail.remove(0);
            }
            if !Self::skipped(&line) {
                self.pending = line;
            }
        }
        let n = (self.pending.len() - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(majors: &[u32]) -> Vec<Binaries> {
        majors.iter().map(|&m| Binaries::fake(m)).collect()
    }

    fn chosen(majors: &[u32], source: Option<u32>, wanted: Option<u32>) -> (u32, Option<String>) {
        let (server, note) = choose_server(&installed(majors), source, wanted).expect("a server");
        (server.major(), note)
    }

    #[test]
    fn the_dump_s_own_major_when_installed_else_the_lowest_newer_one() {
        assert_eq!(chosen(&[17, 15, 13], Some(15), None), (15, None));
        let (major, note) = chosen(&[17, 16, 13], Some(15), None);
        assert_eq!(major, 16);
        assert_eq!(
            note.as_deref(),
            Some("the dump comes from PostgreSQL 15, which is not installed here (found 17, 16, 13); timings come from PostgreSQL 16")
        );
        let (major, note) = chosen(&[17, 15], None, None);
        assert_eq!(major, 17);
        assert!(note.unwrap().starts_with("the dump does not say"));
    }

    #[test]
    fn an_asked_for_major_runs_the_sandbox_and_the_note_says_so() {
        assert_eq!(chosen(&[17, 15], Some(17), Some(17)), (17, None));
        let (major, note) = chosen(&[18, 17, 15], Some(15), Some(17));
        assert_eq!(major, 17);
        assert_eq!(
            note.as_deref(),
            Some("the dump comes from PostgreSQL 15; the sandbox runs PostgreSQL 17, as asked, so timings come from PostgreSQL 17")
        );
        let (major, note) = chosen(&[17, 15], None, Some(15));
        assert_eq!(major, 15);
        assert_eq!(
            note.as_deref(),
            Some("the dump does not say which PostgreSQL it came from; the sandbox runs PostgreSQL 15, as asked")
        );
    }

    #[test]
    fn an_asked_for_major_that_is_missing_or_older_than_the_dump_is_refused() {
        let error = choose_server(&installed(&[17, 15, 13]), Some(15), Some(16)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "PostgreSQL 16 is not installed here (found 17, 15, 13); install its server (e.g. Debian's postgresql-16) or set ECOMIND_DB_BIN_DIR to its bin folder, or ask for one of the majors found"
        );
        let error = choose_server(&[], Some(15), Some(16)).unwrap_err();
        assert!(error.to_string().contains("(found none)"), "{error}");
        let error = choose_server(&installed(&[17, 15, 13]), Some(15), Some(13)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the dump comes from PostgreSQL 15, and PostgreSQL 13 is older: pg_dump output is only supported into the same or a newer major; ask for 15 or newer"
        );
    }

    #[test]
    fn the_plain_filter_leaves_out_owners_and_privileges_but_not_data() {
        let script = "--\n-- PostgreSQL database dump\n--\nCREATE TABLE public.t (a text);\nALTER TABLE public.t OWNER TO app;\nCOPY public.t (a) FROM stdin;\nGRANT ALL ON x TO y;\n\\.\nGRANT SELECT ON TABLE public.t TO reader;\nREVOKE ALL ON SCHEMA public FROM PUBLIC;\n--\n-- PostgreSQL database dump complete\n--\n\n";
        let mut filter = PlainFilter::new(std::io::Cursor::new(script.as_bytes().to_vec()));
        let mut out = String::new();
        filter.read_to_string(&mut out).unwrap();
        assert_eq!(
            out,
            "--\n-- PostgreSQL database dump\n--\nCREATE TABLE public.t (a text);\nCOPY public.t (a) FROM stdin;\nGRANT ALL ON x TO y;\n\\.\n--\n-- PostgreSQL database dump complete\n--\n\n"
        );
        assert!(filter.complete);
    }
}
