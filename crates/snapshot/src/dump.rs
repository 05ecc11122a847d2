//! Reading what a pg_dump output is from its bytes: the format, and for archives the header
//! (archive version, compression, source server and pg_dump versions), without restoring it.
//!
//! The custom format (and each directory or tar archive's `toc.dat`) starts with `PGDMP`, then
//! one byte each for the archive version's major, minor and revision, the size of an integer
//! and of a file offset, and the format. Then comes the compression: one byte naming the
//! algorithm from archive 1.15 (PostgreSQL 16) on, an integer level before. Then the creation
//! time as seven integers, the database name, and from 1.10 on the source server's version
//! string and pg_dump's. An integer is a sign byte followed by `int size` bytes, least
//! significant first; a string is an integer length (negative for none) and its bytes.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::Error;

/// How much of a file is read to recognise it.
const SNIFF_BYTES: usize = 64 * 1024;
/// A tar header block.
const TAR_BLOCK: usize = 512;

/// The five shapes pg_dump writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `pg_dump -Fc`: one file starting with `PGDMP`.
    Custom,
    /// `pg_dump -Fd`: a folder with `toc.dat` and one file per table.
    Directory,
    /// `pg_dump -Ft`: a tar file whose first member is `toc.dat`.
    Tar,
    /// `pg_dump -Fp`: an SQL script for psql.
    Plain,
    /// A plain SQL script compressed with gzip.
    PlainGzip,
}

impl DumpFormat {
    /// The name used in reports: `custom`, `directory`, `tar`, `plain` or `plain-gzip`.
    pub fn as_str(self) -> &'static str {
        match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Directory => "directory",
            DumpFormat::Tar => "tar",
            DumpFormat::Plain => "plain",
            DumpFormat::PlainGzip => "plain-gzip",
        }
    }

    /// True for the archive formats that pg_restore reads (custom, directory, tar).
    pub fn is_archive(self) -> bool {
        matches!(
            self,
            DumpFormat::Custom | DumpFormat::Directory | DumpFormat::Tar
        )
    }
}

impl fmt::Display for DumpFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The archive version in a `PGDMP` header, e.g. 1.14.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchiveVersion {
    /// Always 1 so far.
    pub major: u8,
    /// 14 for PostgreSQL 12 to 15, 15 for 16, 16 for 17 and 18.
    pub minor: u8,
    /// The revision.
    pub revision: u8,
}

impl fmt::Display for ArchiveVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.revision)
    }
}

/// What a dump is, read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The file or folder, as given.
    pub path: PathBuf,
    /// Its format.
    pub format: DumpFormat,
    /// Its size in bytes (for a folder, the sum of its files).
    pub bytes: u64,
    /// The archive version (archives only).
    pub archive_version: Option<ArchiveVersion>,
    /// How the archive's data is compressed: `none`, `gzip`, `lz4`, `zstd` (archives only).
    pub compression: Option<String>,
    /// The database the dump was taken from, when the dump says.
    pub database: Option<String>,
    /// The source server's version string, e.g. `15.14 (Debian 15.14-1.pgdg120+1)`.
    pub source_server_version: Option<String>,
    /// pg_dump's version string.
    pub pg_dump_version: Option<String>,
}

impl Dump {
    /// Reads the dump at `path` and recognises it from its bytes, not its name.
    ///
    /// Refused, each with a sentence that says what was found and what to do: a missing path, an
    /// empty file, a folder without `toc.dat`, bytes that are none of pg_dump's formats, and an
    /// archive whose header is cut short.
    pub fn inspect(path: &Path) -> Result<Dump, Error> {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::DumpMissing {
                path: path.to_path_buf(),
            },
            _ => Error::io("read", path, source),
        })?;
        if meta.is_dir() {
            return inspect_directory(path);
        }
        if meta.len() == 0 {
            return Err(Error::DumpEmpty {
                path: path.to_path_buf(),
            });
        }
        let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let head = read_up_to(&mut file, SNIFF_BYTES).map_err(|e| Error::io("read", path, e))?;
        let mut dump = Dump {
            path: path.to_path_buf(),
            format: DumpFormat::Custom,
            bytes: meta.len(),
            archive_version: None,
            compression: None,
            database: None,
            source_server_version: None,
            pg_dump_version: None,
        };
        if head.starts_with(b"PGDMP") {
            let header = Header::parse(&head).map_err(|reason| Error::DumpTruncated {
                path: path.to_path_buf(),
                detail: reason,
            })?;
            if header.format != FORMAT_CUSTOM {
                return Err(unrecognized(
                    path,
                    &format!(
                        "a pg_dump header for format {} in a single file",
                        header.format
                    ),
                ));
            }
            header.fill(&mut dump);
            return Ok(dump);
        }
        if is_tar(&head) {
            dump.format = DumpFormat::Tar;
            let toc = &head[TAR_BLOCK..];
            if !toc.starts_with(b"PGDMP") {
                return Err(unrecognized(
                    path,
                    "a tar file whose first member is not a pg_dump toc.dat",
                ));
            }
            let header = Header::parse(toc).map_err(|reason| Error::DumpTruncated {
                path: path.to_path_buf(),
                detail: reason,
            })?;
            header.fill(&mut dump);
            return Ok(dump);
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            dump.format = DumpFormat::PlainGzip;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| Error::io("read", path, e))?;
            let mut decoder = flate2::read::GzDecoder::new(BufReader::new(file));
            let text = read_up_to(&mut decoder, SNIFF_BYTES).map_err(|e| Error::DumpTruncated {
                path: path.to_path_buf(),
                detail: format!("its gzip stream cannot be read: {e}"),
            })?;
            if !read_plain_header(&text, &mut dump) {
                return Err(unrecognized(
                    path,
                    "a gzip file that does not hold a pg_dump SQL script",
                ));
            }
            return Ok(dump);
        }
        if read_plain_header(&head, &mut dump) {
            dump.format = DumpFormat::Plain;
            if !plain_is_complete(&mut file).map_err(|e| Error::io("read", path, e))? {
                return Err(Error::DumpTruncated {
                    path: path.to_path_buf(),
                    detail: "the SQL script lacks pg_dump's closing `-- PostgreSQL database dump complete` line".to_owned(),
                });
            }
            return Ok(dump);
        }
        Err(unrecognized(path, &describe_bytes(&head)))
    }

    /// The source server's major version (13, 15, ...), when the dump names it.
    pub fn source_major(&self) -> Option<u32> {
        self.source_server_version
            .as_deref()
            .and_then(leading_major)
    }

    /// The file name, for reports.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// The newest archive minor version (1.N) that pg_restore of this major reads.
pub fn newest_readable_minor(pg_restore_major: u32) -> u8 {
    match pg_restore_major {
        0..=11 => 13,
        12..=15 => 14,
        16 => 15,
        _ => 16,
    }
}

/// The first number of a version string: `15` of `15.14 (Debian ...)`, `9` of `9.6.2`.
pub(crate) fn leading_major(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn unrecognized(path: &Path, found: &str) -> Error {
    Error::DumpUnrecognized {
        path: path.to_path_buf(),
        found: found.to_owned(),
    }
}

fn inspect_directory(path: &Path) -> Result<Dump, Error> {
    let toc = path.join("toc.dat");
    let mut file = File::open(&toc).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::DumpDirectoryWithoutToc {
            path: path.to_path_buf(),
        },
        _ => Error::io("open", &toc, source),
    })?;
    let head = read_up_to(&mut file, SNIFF_BYTES).map_err(|e| Error::io("read", &toc, e))?;
    if head.is_empty() {
        return Err(Error::DumpTruncated {
            path: path.to_path_buf(),
            detail: "its toc.dat is empty".to_owned(),
        });
    }
    if !head.starts_with(b"PGDMP") {
        return Err(unrecognized(
            path,
            "a folder whose toc.dat is not a pg_dump table of contents",
        ));
    }
    let header = Header::parse(&head).map_err(|reason| Error::DumpTruncated {
        path: path.to_path_buf(),
        detail: reason,
    })?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(path).map_err(|e| Error::io("read", path, e))? {
        let entry = entry.map_err(|e| Error::io("read", path, e))?;
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                bytes += meta.len();
            }
        }
    }
    let mut dump = Dump {
        path: path.to_path_buf(),
        format: DumpFormat::Directory,
        bytes,
        archive_version: None,
        compression: None,
        database: None,
        source_server_version: None,
        pg_dump_version: None,
    };
    header.fill(&mut dump);
    Ok(dump)
}

/// The `format` byte of a custom archive (directory and tar archives write their own into toc.dat).
const FORMAT_CUSTOM: u8 = 1;

/// A parsed `PGDMP` header.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    version: ArchiveVersion,
    format: u8,
    compression: String,
    database: Option<String>,
    server_version: Option<String>,
    dump_version: Option<String>,
}

impl Header {
    /// Parses a header from the start of `bytes`; the error says where it was cut short.
    fn parse(bytes: &[u8]) -> Result<Header, String> {
        let mut reader = HeaderReader {
            bytes,
            at: 5,
            int_size: 4,
            version: 0,
        };
        let cut = |what: &str| format!("its pg_dump header ends before the {what}");
        let major = reader.byte().ok_or_else(|| cut("archive version"))?;
        let minor = reader.byte().ok_or_else(|| cut("archive version"))?;
        let revision = if major > 1 || (major == 1 && minor > 0) {
            reader.byte().ok_or_else(|| cut("archive version"))?
        } else {
            0
        };
        let version = ArchiveVersion {
            major,
            minor,
            revision,
        };
        reader.version = make_version(major, minor, revision);
        reader.int_size = usize::from(reader.byte().ok_or_else(|| cut("integer size"))?);
        if reader.int_size == 0 || reader.int_size > 32 {
            return Err(format!(
                "its pg_dump header gives an impossible integer size ({})",
                reader.int_size
            ));
        }
        if reader.version >= make_version(1, 7, 0) {
            reader.byte().ok_or_else(|| cut("offset size"))?;
        }
        let format = reader.byte().ok_or_else(|| cut("format"))?;
        let compression = if reader.version >= make_version(1, 15, 0) {
            match reader.byte().ok_or_else(|| cut("compression"))? {
                0 => "none".to_owned(),
                1 => "gzip".to_owned(),
                2 => "lz4".to_owned(),
                3 => "zstd".to_owned(),
                other => format!("unknown ({other})"),
            }
        } else if reader.version >= make_version(1, 2, 0) {
            let level = if reader.version < make_version(1, 4, 0) {
                i64::from(reader.byte().ok_or_else(|| cut("compression"))?)
            } else {
                reader.int().ok_or_else(|| cut("compression"))?
            };
            if level == 0 { "none" } else { "gzip" }.to_owned()
        } else {
            "gzip".to_owned()
        };
        let mut header = Header {
            version,
            format,
            compression,
            database: None,
            server_version: None,
            dump_version: None,
        };
        if reader.version >= make_version(1, 4, 0) {
            for _ in 0..7 {
                reader.int().ok_or_else(|| cut("creation date"))?;
            }
            header.database = reader.string().ok_or_else(|| cut("database name"))?;
        }
        if reader.version >= make_version(1, 10, 0) {
            header.server_version = reader.string().ok_or_else(|| cut("server version"))?;
            header.dump_version = reader.string().ok_or_else(|| cut("pg_dump version"))?;
        }
        Ok(header)
    }

    fn fill(self, dump: &mut Dump) {
        dump.archive_version = Some(self.version);
        dump.compression = Some(self.compression);
        dump.database = self.database;
        dump.source_server_version = self.server_version;
        dump.pg_dump_version = self.dump_version;
    }
}

fn make_version(major: u8, minor: u8, revision: u8) -> u32 {
    (u32::from(major) * 256 + u32::from(minor)) * 256 + u32::from(revision)
}

struct HeaderReader<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
    version: u32,
}

impl HeaderReader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// pg_dump's ReadInt: a sign byte (from archive 1.0 on), then `int_size` bytes, least significant first.
    fn int(&mut self) -> Option<i64> {
        let negative = if self.version > make_version(1, 0, 0) {
            self.byte()? != 0
        } else {
            false
        };
        let mut value: i64 = 0;
        for index in 0..self.int_size {
            let byte = i64::from(self.byte()?);
            if index < 8 {
                value |= byte << (index * 8);
            }
        }
        Some(if negative { -value } else { value })
    }

    /// pg_dump's ReadStr: a length (negative for NULL), then that many bytes.
    fn string(&mut self) -> Option<Option<String>> {
        let length = self.int()?;
        if length < 0 {
            return Some(None);
        }
        let length = usize::try_from(length).ok()?;
        let end = self.at.checked_add(length)?;
        let text = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(Some(String::from_utf8_lossy(text).into_owned()))
    }
}

/// A ustar header: the magic at offset 257 and a valid header checksum.
fn is_tar(head: &[u8]) -> bool {
    if head.len() < 2 * TAR_BLOCK || &head[257..262] != b"ustar" {
        return false;
    }
    let stored: String = head[148..156]
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| char::from(*b))
        .collect();
    let Ok(stored) = u32::from_str_radix(stored.trim(), 8) else {
        return false;
    };
    let sum: u32 = head[..TAR_BLOCK]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

/// Reads pg_dump's plain-format preamble: true when the text is a pg_dump SQL script.
fn read_plain_header(head: &[u8], dump: &mut Dump) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines().take(40);
    if !lines.any(|line| line.trim() == "-- PostgreSQL database dump") {
        return false;
    }
    for line in text.lines().take(40) {
        if let Some(v) = line.strip_prefix("-- Dumped from database version ") {
            dump.source_server_version = Some(v.trim().to_owned());
        }
        if let Some(v) = line.strip_prefix("-- Dumped by pg_dump version ") {
            dump.pg_dump_version = Some(v.trim().to_owned());
        }
    }
    true
}

/// True when a plain script ends with pg_dump's closing comment.
fn plain_is_complete(file: &mut File) -> std::io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(4096);
    file.seek(SeekFrom::Start(start))?;
    let tail = read_up_to(file, 4096)?;
    Ok(ends_complete(&tail))
}

/// True when the last lines of a plain script hold pg_dump's closing comment.
pub(crate) fn ends_complete(tail: &[u8]) -> bool {
    String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .take(10)
        .any(|line| line.trim() == "-- PostgreSQL database dump complete")
}

/// What random bytes look like, in a few words for an error.
fn describe_bytes(head: &[u8]) -> String {
    let printable = head
        .iter()
        .take(512)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if printable {
        let first = String::from_utf8_lossy(head)
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect::<String>();
        format!("text starting with {first:?}, not a pg_dump SQL script")
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("binary data starting with bytes {}", hex.join(" "))
    }
}

fn read_up_to(reader: &mut impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::with_capacity(max.min(SNIFF_BYTES));
    reader.take(max as u64).read_to_end(&mut buffer)?;
    Ok(buffer)
}

/// Counts the table-of-contents entries in `pg_restore --list` output.
pub(crate) fn count_toc_entries(listing: &str) -> usize {
    listing
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !line.is_empty() && !line.starts_with(';')
        })
        .count()
}

/// Reads lines of a reader; used to stream a plain script through a filter.
pub(crate) fn lines_of(reader: impl Read) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => Some(Ok(line)),
            Err(e) => Some(Err(e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as pg_dump writes it: integers of size 4 with a sign byte.
    fn header(minor: u8, format: u8, server: &str, dump: &str) -> Vec<u8> {
        let int = |out: &mut Vec<u8>, value: i32| {
            out.push(u8::from(value < 0));
            out.extend_from_slice(&value.unsigned_abs().to_le_bytes());
        };
        let string = |out: &mut Vec<u8>, text: &str| {
            int(out, text.len() as i32);
            out.extend_from_slice(text.as_bytes());
        };
        let mut out = b"PGDMP".to_vec();
        out.extend_from_slice(&[1, minor, 0, 4, 8, format]);
        if minor >= 15 {
            out.push(1);
        } else {
            int(&mut out, -1);
        }
        for value in [1, 2, 3, 20, 10, 126, 0] {
            int(&mut out, value);
        }
        string(&mut out, "ecomind");
        string(&mut out, server);
        string(&mut out, dump);
        out
    }

    #[test]
    fn parses_headers_of_each_archive_version() {
        let cases = [
            (14, "15.14 (Debian 15.14-1.pgdg120+1)", "15.14", "gzip"),
            (15, "16.10", "16.10", "gzip"),
            (16, "17.6", "18.0", "gzip"),
        ];
        for (minor, server, dump, compression) in cases {
            let parsed = Header::parse(&header(minor, 1, server, dump)).unwrap();
            assert_eq!(parsed.version.minor, minor);
            assert_eq!(parsed.format, 1);
            assert_eq!(parsed.compression, compression, "1.{minor}");
            assert_eq!(parsed.database.as_deref(), Some("ecomind"));
            assert_eq!(parsed.server_version.as_deref(), Some(server));
            assert_eq!(parsed.dump_version.as_deref(), Some(dump));
        }
    }

    #[test]
    fn a_header_cut_short_says_where() {
        let full = header(14, 1, "15.14", "15.14");
        for (cut, expected) in [
            (6, "archive version"),
            (8, "integer size"),
            (9, "offset size"),
            (10, "format"),
            (14, "compression"),
            (30, "creation date"),
            (full.len() - 3, "pg_dump version"),
        ] {
            let error = Header::parse(&full[..cut]).unwrap_err();
            assert!(error.ends_with(expected), "cut at {cut}: {error}");
        }
    }

    #[test]
    fn majors_and_readable_archive_versions() {
        assert_eq!(leading_major("15.14 (Debian 15.14-1.pgdg120+1)"), Some(15));
        assert_eq!(leading_major("18beta1"), Some(18));
        assert_eq!(leading_major("x"), None);
        assert_eq!(newest_readable_minor(15), 14);
        assert_eq!(newest_readable_minor(16), 15);
        assert_eq!(newest_readable_minor(17), 16);
    }

    #[test]
    fn counts_toc_entries_and_recognises_the_closing_line() {
        let listing = ";\n; Archive created at ...\n;\n215; 1259 16385 TABLE public t postgres\n3350; 0 16385 TABLE DATA public t postgres\n";
        assert_eq!(count_toc_entries(listing), 2);
        assert!(ends_complete(
            b"\n--\n-- PostgreSQL database dump complete\n--\n\n"
        ));
        assert!(!ends_complete(b"COPY public.t (id) FROM stdin;\n1\n"));
    }
}
