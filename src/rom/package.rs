//! Access to a Xiaomi fastboot ROM package: a `.tgz` as downloaded, a plain `.tar`, a `.zip`,
//! or an extracted folder.
//!
//! Job: list the package, keep its small text files (scripts, `misc.txt`, CRC lists, ...) in
//! memory, and stream image contents — without ever extracting an archive to disk. Boundaries:
//! nothing here parses scripts or talks to a device; `verify` builds its checks on
//! [`Package::scan`], the script parser reads files through [`PackageFiles`].
//!
//! Safety rules (every package is untrusted input until verified):
//! * The package root is the folder that contains `images/` (and the `flash_all*` scripts),
//!   found by content, never by its name.
//! * Archive entries must stay inside the archive: absolute paths, `..`, backslashes and drive
//!   letters are refused.
//! * Archives (`.tgz`, `.tar`, `.zip`) may hold only regular files and folders. Symlinks and
//!   hard links are refused whatever they point at — Xiaomi never ships them, and following
//!   them is how archive tools get tricked into reading or writing outside the package.
//!   Device files, FIFOs and other special entries are refused too.
//! * In an extracted folder, a symlink to a regular file is followed only when its target lies
//!   inside the package root (a ROM maintainer may link freshly built images); symlinked
//!   folders, links leaving the root, and special files are refused.
//! * Duplicate entries (also differing only in letter case, which collide on Windows and
//!   macOS) and names that are both a file and a folder are refused.
//! * Declared sizes must fit what the archive can hold: a gzip stream cannot expand more than
//!   1032×, so a header claiming more than that is refused before any data is read; a stream
//!   that ends early is reported as an incomplete download.
//! * Every allocation is bounded: small files ≤ 1 MiB each, 32 MiB in total, ≤ 100 000 entries.

pub mod name;
mod tar;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use md5::{Digest as _, Md5};

use super::hashing::BackgroundHash;
use serde::Serialize;
use sha2::Sha256;

pub use name::PackageName;

use self::tar::{TarError, TarKind, TarReader};

/// Largest small text file kept in memory.
pub const SMALL_FILE_LIMIT: u64 = 1024 * 1024;
/// Largest total of small files kept in memory.
const SMALL_TOTAL_LIMIT: u64 = 32 * 1024 * 1024;
/// More entries than any real package has (they have 100–300).
const MAX_ENTRIES: usize = 100_000;
/// Deflate cannot expand data more than 1032:1 (258-byte matches coded in 2 bits).
const DEFLATE_MAX_RATIO: u64 = 1032;
/// How deep to look for the package root inside an extracted folder.
const MAX_ROOT_DEPTH: usize = 4;
const READ_BUFFER: usize = 256 * 1024;

/// Names (last path component, lowercase) of the small files kept in memory, besides scripts.
const SMALL_NAMES: &[&str] = &[
    "misc.txt",
    "md5sum.xml",
    "crclist.txt",
    "sparsecrclist.txt",
    "anti_version.txt",
    "platform_security_patch.txt",
    "flash_gen_crc_list.py",
];

/// Small files that must be readable when present at their place in the package.
const REQUIRED_SMALL: &[&str] = &[
    "misc.txt",
    "md5sum.xml",
    "images/crclist.txt",
    "images/sparsecrclist.txt",
    "images/anti_version.txt",
    "images/platform_security_patch.txt",
];

/// What the package is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// gzip-compressed tar, the form Xiaomi publishes.
    Tgz,
    /// Uncompressed tar.
    Tar,
    Zip,
    /// An extracted folder.
    Dir,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Tgz => "tgz",
            SourceKind::Tar => "tar",
            SourceKind::Zip => "zip",
            SourceKind::Dir => "folder",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
}

/// One file or folder of the package, path relative to the package root with `/`
/// separators (`images/boot.img`, `flash_all.sh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub kind: EntryKind,
}

/// Digests of the whole archive file as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveDigest {
    pub size: u64,
    /// Lowercase hex.
    pub md5: String,
    /// Lowercase hex.
    pub sha256: String,
}

/// Why a package cannot be used. Each message names the file or entry and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: the download is incomplete or damaged ({detail}): re-download the package")]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path}: refusing entry `{entry}`: {reason}. Official Xiaomi packages never contain \
         this; the file was altered or is not a Xiaomi ROM: re-download it from Xiaomi"
    )]
    UnsafeEntry {
        path: PathBuf,
        entry: String,
        reason: String,
    },
    #[error(
        "{path}: entry `{entry}` declares {declared} bytes, more than this archive can hold \
         (at most {limit} bytes): the archive is damaged or hostile: re-download it"
    )]
    ImpossibleSize {
        path: PathBuf,
        entry: String,
        declared: u64,
        limit: u64,
    },
    #[error(
        "{path}: `{entry}` is {size} bytes, too large for a package text file (limit {limit}): \
         the package is damaged or not a Xiaomi fastboot ROM"
    )]
    SmallFileTooLarge {
        path: PathBuf,
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "{path}: no folder with an `images/` subfolder found: this is not a Xiaomi fastboot \
         ROM (they are named <codename>_images_<build>_..._<md5>.tgz); download the fastboot \
         ROM, not the recovery ROM"
    )]
    NoPackageRoot { path: PathBuf },
    #[error(
        "{path}: several package folders found ({}): give the folder of one of them (an \
         archive holding several packages has to be extracted first)",
        candidates.join(", ")
    )]
    AmbiguousRoot {
        path: PathBuf,
        candidates: Vec<String>,
    },
    #[error("{path}: more than {limit} entries: this is not a Xiaomi fastboot ROM")]
    TooManyEntries { path: PathBuf, limit: usize },
    #[error(
        "{path}: not a .tgz, .tar, .zip or folder (first bytes {magic}): give the fastboot ROM \
         package as downloaded, or the folder it was extracted to"
    )]
    UnknownFormat { path: PathBuf, magic: String },
    #[error("{path}: the package has no file `{entry}`")]
    NoSuchEntry { path: PathBuf, entry: String },
}

pub use super::plan::PackageFiles;

/// Receives every regular file of an archive in stream order during [`Package::scan`].
///
/// `path` is the entry's full normalised path inside the archive (the package root is only
/// known at the end of a `.tgz`); map it with [`Package::relative_path`] afterwards. The
/// visitor may read all, part or none of `data`.
pub trait ScanVisitor {
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()>;
}

impl<F: FnMut(&str, u64, &mut dyn Read) -> io::Result<()>> ScanVisitor for F {
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        self(path, size, data)
    }
}

/// Options for [`Package::scan`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Also compute MD5 and SHA-256 of the archive file (in the same pass for `.tgz`/`.tar`).
    pub digest: bool,
}

/// Error from [`Package::for_each_file`]: either the package (damaged, changed since it was
/// opened) or the caller's callback.
#[derive(Debug)]
pub enum VisitError<E> {
    Package(PackageError),
    Visitor(E),
}

impl<E: fmt::Display> fmt::Display for VisitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VisitError::Package(e) => e.fmt(f),
            VisitError::Visitor(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for VisitError<E> {}

/// An opened, listed package. Cheap to keep: it holds the listing and the small files only.
#[derive(Debug, Clone)]
pub struct Package {
    path: PathBuf,
    kind: SourceKind,
    /// Path of the package root inside the archive / below `path`; "" when it is the top.
    root: String,
    entries: Vec<Entry>,
    small: BTreeMap<String, Vec<u8>>,
    digest: Option<ArchiveDigest>,
    zip_members: HashMap<String, ZipMember>,
}

impl Package {
    /// Opens and lists a package (one decompression pass for a `.tgz`).
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        Package::scan(
            path,
            ScanOptions::default(),
            &mut |_: &str, _: u64, _: &mut dyn Read| Ok(()),
        )
    }

    /// Opens a package and shows every regular file to `visitor` during the same pass — the
    /// basis of single-pass verification.
    pub fn scan(
        path: &Path,
        options: ScanOptions,
        visitor: &mut dyn ScanVisitor,
    ) -> Result<Package, PackageError> {
        let kind = detect_kind(path)?;
        let mut collector = Collector::new(path, visitor);
        let mut zip_members = HashMap::new();
        let (digest, root) = match kind {
            SourceKind::Tgz | SourceKind::Tar => {
                let digest = scan_tar_stream(path, kind, options.digest, &mut collector)?;
                (digest, None)
            }
            SourceKind::Zip => {
                let members = list_zip(path)?;
                for m in &members {
                    if m.is_dir {
                        collector.entry(m.name.as_bytes(), RawKind::Dir, 0, None)?;
                    } else {
                        let mut reader = m.open(path)?;
                        collector.entry(
                            m.name.as_bytes(),
                            RawKind::File,
                            m.size,
                            Some(&mut reader),
                        )?;
                    }
                }
                let digest = if options.digest {
                    Some(digest_file(path)?)
                } else {
                    None
                };
                for m in members {
                    if !m.is_dir {
                        if let Ok(p) = normalize_entry_path(m.name.as_bytes()) {
                            zip_members.insert(p, m);
                        }
                    }
                }
                (digest, None)
            }
            SourceKind::Dir => {
                let root = find_dir_root(path)?;
                scan_dir(path, &root, &mut collector)?;
                (None, Some(root))
            }
        };
        let root = match root {
            Some(r) => r,
            None => resolve_root(path, &collector.files)?,
        };
        let mut package = collector.finish(kind, root, digest)?;
        if kind == SourceKind::Zip {
            let prefix = root_prefix(&package.root);
            package.zip_members = zip_members
                .into_iter()
                .filter_map(|(p, m)| p.strip_prefix(&prefix).map(|rel| (rel.to_string(), m)))
                .collect();
        }
        Ok(package)
    }

    /// Rebuilds an archive package from what a record of its earlier verification kept
    /// (`super::record`): the listing and the small files. A zip's member table is read again
    /// from the file (its central directory, no decompression).
    pub(crate) fn from_record(
        path: &Path,
        kind: SourceKind,
        root: String,
        entries: Vec<Entry>,
        small: BTreeMap<String, Vec<u8>>,
        digest: ArchiveDigest,
    ) -> Result<Package, PackageError> {
        let mut zip_members = HashMap::new();
        if kind == SourceKind::Zip {
            let prefix = root_prefix(&root);
            for m in list_zip(path)? {
                if m.is_dir {
                    continue;
                }
                if let Ok(p) = normalize_entry_path(m.name.as_bytes()) {
                    if let Some(rel) = p.strip_prefix(&prefix) {
                        zip_members.insert(rel.to_string(), m);
                    }
                }
            }
        }
        Ok(Package { path: path.to_path_buf(), kind, root, entries, small, digest: Some(digest), zip_members })
    }

    /// The small files kept in memory (scripts, lists, text files), by relative path.
    pub(crate) fn small_files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.small
    }

    /// The path given to [`Package::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File (or folder) name of the package.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The package root's path inside the archive (or below the given folder); "" when the
    /// archive holds the package files at its top.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// All files and folders below the root, in archive order (sorted for folders).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `rel` (relative to the root, `/` or `\` separators).
    pub fn entry(&self, rel: &str) -> Option<&Entry> {
        let rel = normalize_rel(rel)?;
        self.entries.iter().find(|e| e.path == rel)
    }

    /// Regular files under `images/`, in archive order.
    pub fn images(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.path.starts_with("images/"))
    }

    /// A small text file kept from the scan (see [`PackageFiles::read_small`]).
    pub fn small_file(&self, rel: &str) -> Option<&[u8]> {
        let rel = normalize_rel(rel)?;
        self.small.get(&rel).map(Vec::as_slice)
    }

    /// MD5 / SHA-256 of the archive file, when the scan computed them.
    pub fn digest(&self) -> Option<&ArchiveDigest> {
        self.digest.as_ref()
    }

    /// Maps a full archive path as given to a [`ScanVisitor`] to a root-relative path;
    /// `None` for entries outside the package root.
    pub fn relative_path(&self, archive_path: &str) -> Option<String> {
        if self.root.is_empty() {
            return Some(archive_path.to_string());
        }
        archive_path
            .strip_prefix(&root_prefix(&self.root))
            .map(str::to_string)
    }

    /// Streams every regular file below the root in archive order (one pass over a `.tgz`).
    /// The archive is read again and checked again, so a file changed since `open` is caught.
    pub fn for_each_file<E, F>(&self, mut f: F) -> Result<(), VisitError<E>>
    where
        F: FnMut(&Entry, &mut dyn Read) -> Result<(), E>,
    {
        let sizes: HashMap<&str, &Entry> =
            self.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        match self.kind {
            SourceKind::Tgz | SourceKind::Tar => {
                let prefix = root_prefix(&self.root);
                let mut visitor_error: Option<E> = None;
                let mut visit = |full: &str, _size: u64, data: &mut dyn Read| -> io::Result<()> {
                    let rel = if self.root.is_empty() {
                        Some(full)
                    } else {
                        full.strip_prefix(&prefix)
                    };
                    let Some(entry) = rel.and_then(|r| sizes.get(r)) else {
                        return Ok(());
                    };
                    if let Err(e) = f(entry, data) {
                        visitor_error = Some(e);
                        return Err(io::Error::other(VisitorFailed));
                    }
                    Ok(())
                };
                let mut collector = Collector::new(&self.path, &mut visit);
                let result = scan_tar_stream(&self.path, self.kind, false, &mut collector);
                drop(collector);
                match (result, visitor_error) {
                    (_, Some(e)) => Err(VisitError::Visitor(e)),
                    (Err(e), None) => Err(VisitError::Package(e)),
                    (Ok(_), None) => Ok(()),
                }
            }
            SourceKind::Zip | SourceKind::Dir => {
                for entry in self.entries.iter().filter(|e| e.kind == EntryKind::File) {
                    let reader = self.open_file(&entry.path).map_err(VisitError::Package)?;
                    let mut tap = ErrorTap::new(reader);
                    if let Err(e) = f(entry, &mut tap) {
                        return Err(match tap.error.take() {
                            Some(io) => VisitError::Package(self.read_error(&entry.path, io)),
                            None => VisitError::Visitor(e),
                        });
                    }
                    if let Some(io) = tap.error.take() {
                        return Err(VisitError::Package(self.read_error(&entry.path, io)));
                    }
                }
                Ok(())
            }
        }
    }

    /// [`Package::for_each_file`] restricted to files under `images/`.
    pub fn for_each_image<E, F>(&self, mut f: F) -> Result<(), VisitError<E>>
    where
        F: FnMut(&Entry, &mut dyn Read) -> Result<(), E>,
    {
        self.for_each_file(|entry, data| {
            if entry.path.starts_with("images/") {
                f(entry, data)
            } else {
                Ok(())
            }
        })
    }

    /// Opens one file for reading. Random access for folders and `.zip`; for a `.tgz` the
    /// archive is decompressed from the start up to the file (prefer
    /// [`Package::for_each_image`] to read several).
    pub fn open_file(&self, rel: &str) -> Result<Box<dyn Read + Send>, PackageError> {
        let no_such = || PackageError::NoSuchEntry {
            path: self.path.clone(),
            entry: rel.to_string(),
        };
        let rel = normalize_rel(rel).ok_or_else(no_such)?;
        match self.entries.iter().find(|e| e.path == rel) {
            Some(e) if e.kind == EntryKind::File => {}
            _ => return Err(no_such()),
        }
        match self.kind {
            SourceKind::Dir => {
                let p = self.path.join(&self.root).join(&rel);
                let file = File::open(&p).map_err(|e| PackageError::Io {
                    path: p.clone(),
                    source: e,
                })?;
                Ok(Box::new(file))
            }
            SourceKind::Zip => {
                let member = self.zip_members.get(&rel).ok_or_else(no_such)?;
                Ok(Box::new(member.open(&self.path)?))
            }
            SourceKind::Tgz | SourceKind::Tar => {
                let full = format!("{}{}", root_prefix(&self.root), rel);
                open_tar_member(&self.path, self.kind, &full)
            }
        }
    }

    fn read_error(&self, entry: &str, e: io::Error) -> PackageError {
        read_error(&self.path, entry, e)
    }
}

impl PackageFiles for Package {
    fn exists(&self, rel: &str) -> bool {
        let Some(rel) = normalize_rel(rel) else {
            return false;
        };
        rel.is_empty() || self.entries.iter().any(|e| e.path == rel)
    }

    fn read_small(&self, rel: &str) -> Option<Vec<u8>> {
        self.small_file(rel).map(<[u8]>::to_vec)
    }

    fn folder_name(&self) -> Option<String> {
        let top = self.root.rsplit('/').next().filter(|s| !s.is_empty());
        match top {
            Some(t) => Some(t.to_string()),
            // A folder package opened at its root: the folder's own name.
            None => self.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        }
    }
}

impl Package {
    /// Names of the `.sh` / `.bat` scripts at the package root, sorted.
    pub fn script_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && !e.path.contains('/') && is_script_name(&e.path))
            .map(|e| e.path.clone())
            .collect();
        names.sort();
        names
    }
}

fn root_prefix(root: &str) -> String {
    if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    }
}

fn is_script_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".sh") || lower.ends_with(".bat")
}

/// Normalises a caller-given relative path; `None` if it tries to leave the root.
fn normalize_rel(rel: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in rel.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Validates an archive entry name and returns it normalised (`a/b/c`, no trailing `/`).
fn normalize_entry_path(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "its name is not valid UTF-8".to_string())?;
    if s.len() > 4096 {
        return Err("its name is longer than 4096 bytes".into());
    }
    if s.starts_with('/') {
        return Err("it has an absolute path".into());
    }
    if s.contains('\\') {
        return Err(
            "its name contains a backslash, which Windows reads as a folder separator".into(),
        );
    }
    if s.chars().any(char::is_control) {
        return Err("its name contains control characters".into());
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("its path contains `..` and would leave the package folder".into()),
            p if p.contains(':') => {
                return Err("its name contains `:` (a drive letter or Windows stream name)".into())
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawKind {
    File,
    Dir,
    Refused(&'static str),
}

/// Checks and records entries as they stream past; shared by all source kinds.
struct Collector<'a> {
    path: PathBuf,
    visitor: &'a mut dyn ScanVisitor,
    /// Full path → (size, order).
    files: Vec<(String, u64)>,
    dirs: BTreeSet<String>,
    /// Lowercase path → original, to catch duplicates and case collisions.
    seen: HashMap<String, String>,
    small: BTreeMap<String, Vec<u8>>,
    small_total: u64,
    too_large: BTreeMap<String, u64>,
    entries: Vec<(String, u64, EntryKind)>,
}

impl<'a> Collector<'a> {
    fn new(path: &Path, visitor: &'a mut dyn ScanVisitor) -> Self {
        Collector {
            path: path.to_path_buf(),
            visitor,
            files: Vec::new(),
            dirs: BTreeSet::new(),
            seen: HashMap::new(),
            small: BTreeMap::new(),
            small_total: 0,
            too_large: BTreeMap::new(),
            entries: Vec::new(),
        }
    }

    fn unsafe_entry(&self, entry: &str, reason: impl Into<String>) -> PackageError {
        PackageError::UnsafeEntry {
            path: self.path.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn entry(
        &mut self,
        raw_path: &[u8],
        kind: RawKind,
        size: u64,
        data: Option<&mut dyn Read>,
    ) -> Result<(), PackageError> {
        let shown = String::from_utf8_lossy(raw_path).into_owned();
        let path = normalize_entry_path(raw_path).map_err(|r| self.unsafe_entry(&shown, r))?;
        let kind = match kind {
            RawKind::File => EntryKind::File,
            RawKind::Dir => EntryKind::Dir,
            RawKind::Refused(what) => {
                return Err(self.unsafe_entry(&shown, format!("it is {what}")))
            }
        };
        if path.is_empty() {
            if kind == EntryKind::Dir {
                return Ok(()); // "./" — the archive's own top folder
            }
            return Err(self.unsafe_entry(&shown, "it has an empty name"));
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(PackageError::TooManyEntries {
                path: self.path.clone(),
                limit: MAX_ENTRIES,
            });
        }
        let key = path.to_lowercase();
        if let Some(prev) = self.seen.get(&key) {
            let reason = if *prev == path {
                "it appears twice in the archive (a later copy would silently replace the first)"
                    .to_string()
            } else {
                format!("it collides with `{prev}` on file systems that ignore letter case")
            };
            return Err(self.unsafe_entry(&path, reason));
        }
        // A name must not be both a file and a folder (`a` as file and `a/b`).
        let parents: Vec<String> = {
            let parts: Vec<&str> = path.split('/').collect();
            (1..parts.len()).map(|i| parts[..i].join("/")).collect()
        };
        for parent in &parents {
            let pk = parent.to_lowercase();
            if let Some(prev) = self.seen.get(&pk) {
                if self.files.iter().any(|(f, _)| f == prev) {
                    return Err(self.unsafe_entry(
                        &path,
                        format!("its folder `{prev}` is a file in the same archive"),
                    ));
                }
            }
        }
        if kind == EntryKind::File && self.dirs.contains(&path) {
            return Err(self.unsafe_entry(&path, "the same name is also used as a folder"));
        }
        self.seen.insert(key, path.clone());
        for parent in parents {
            self.seen
                .entry(parent.to_lowercase())
                .or_insert_with(|| parent.clone());
            self.dirs.insert(parent);
        }
        match kind {
            EntryKind::Dir => {
                self.dirs.insert(path.clone());
                self.entries.push((path, 0, EntryKind::Dir));
            }
            EntryKind::File => {
                self.files.push((path.clone(), size));
                self.entries.push((path.clone(), size, EntryKind::File));
                if let Some(data) = data {
                    self.read_file(&path, size, data)?;
                }
            }
        }
        Ok(())
    }

    fn read_file(
        &mut self,
        path: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), PackageError> {
        let base = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let wanted = is_script_name(&base) || SMALL_NAMES.contains(&base.as_str());
        let mut tap = ErrorTap::new(data);
        let result =
            if wanted && size <= SMALL_FILE_LIMIT && self.small_total + size <= SMALL_TOTAL_LIMIT {
                let mut content = Vec::with_capacity(size as usize);
                // Read on to the end of the member, so the archive's own check of it (a zip
                // entry's CRC-32) runs for the files mi-flash reads whole, too.
                let read = (&mut tap).take(size).read_to_end(&mut content).and_then(|_| io::copy(&mut tap, &mut io::sink()));
                match read {
                    Ok(0) if content.len() as u64 == size => {
                        self.small_total += size;
                        let r = self.visitor.file(path, size, &mut &content[..]);
                        self.small.insert(path.to_string(), content);
                        r
                    }
                    Ok(extra) if extra > 0 => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the file holds more data than its declared size",
                    )),
                    Ok(_) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file is shorter than declared",
                    )),
                    Err(e) => Err(e),
                }
            } else {
                if wanted {
                    self.too_large.insert(path.to_string(), size);
                }
                let r = self.visitor.file(path, size, &mut tap);
                // Data the visitor did not read still has to pass (and be checked) for archives.
                r.and_then(|()| io::copy(&mut tap, &mut io::sink()).map(|_| ()))
            };
        match (result, tap.error.take()) {
            (_, Some(e)) => Err(read_error(&self.path, path, e)),
            (Err(e), None) => Err(PackageError::Io {
                path: self.path.clone(),
                source: e,
            }),
            (Ok(()), None) => Ok(()),
        }
    }

    fn finish(
        self,
        kind: SourceKind,
        root: String,
        digest: Option<ArchiveDigest>,
    ) -> Result<Package, PackageError> {
        let prefix = root_prefix(&root);
        let rel = |p: &str| -> Option<String> {
            if root.is_empty() {
                Some(p.to_string())
            } else {
                p.strip_prefix(&prefix).map(str::to_string)
            }
        };
        for (p, size) in &self.too_large {
            if let Some(r) = rel(p) {
                let at_root_script = !r.contains('/') && is_script_name(&r);
                if at_root_script || REQUIRED_SMALL.contains(&r.to_ascii_lowercase().as_str()) {
                    return Err(PackageError::SmallFileTooLarge {
                        path: self.path.clone(),
                        entry: r,
                        size: *size,
                        limit: SMALL_FILE_LIMIT,
                    });
                }
            }
        }
        let entries = self
            .entries
            .into_iter()
            .filter_map(|(p, size, kind)| {
                rel(&p)
                    .filter(|r| !r.is_empty())
                    .map(|path| Entry { path, size, kind })
            })
            .collect();
        let small = self
            .small
            .into_iter()
            .filter_map(|(p, c)| rel(&p).map(|r| (r, c)))
            .collect();
        Ok(Package {
            path: self.path,
            kind,
            root,
            entries,
            small,
            digest,
            zip_members: HashMap::new(),
        })
    }
}

/// Marker error a `for_each_file` callback failure travels under through the scan.
#[derive(Debug)]
struct VisitorFailed;
impl fmt::Display for VisitorFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stopped by the caller")
    }
}
impl std::error::Error for VisitorFailed {}

/// Marks errors that come from reading the archive file itself (disk errors), as opposed to
/// decoding its content (damaged download).
#[derive(Debug)]
struct FileReadError(io::Error);
impl fmt::Display for FileReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for FileReadError {}

fn read_error(path: &Path, entry: &str, e: io::Error) -> PackageError {
    if let Some(inner) = e.get_ref().and_then(|r| r.downcast_ref::<FileReadError>()) {
        return PackageError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(inner.0.kind(), inner.0.to_string()),
        };
    }
    PackageError::Damaged {
        path: path.to_path_buf(),
        detail: format!("while reading `{entry}`: {e}"),
    }
}

/// Remembers the first error of the wrapped reader, so a caller's failure can be told apart
/// from a damaged package.
struct ErrorTap<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R> ErrorTap<R> {
    fn new(inner: R) -> Self {
        ErrorTap { inner, error: None }
    }
}

impl<R: Read> Read for ErrorTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = match e.get_ref().and_then(|r| r.downcast_ref::<FileReadError>()) {
                    Some(f) => io::Error::new(
                        e.kind(),
                        FileReadError(io::Error::new(f.0.kind(), f.0.to_string())),
                    ),
                    None => io::Error::new(e.kind(), e.to_string()),
                };
                self.error.get_or_insert(copy);
                Err(e)
            }
        }
    }
}

/// Hashes (optionally) and counts the bytes read from the archive file.
struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<DigestState>>,
}

/// Shared so the digest can be read after the reader was consumed by the decoder chain.
/// The hashing runs on a worker thread, beside the decompression.
struct DigestState {
    hashes: Option<BackgroundHash<(Md5, Sha256)>>,
    count: u64,
}

impl DigestState {
    fn shared(want_digest: bool) -> Arc<Mutex<DigestState>> {
        Arc::new(Mutex::new(DigestState {
            hashes: want_digest.then(|| BackgroundHash::new("mi-flash-digest")),
            count: 0,
        }))
    }

    /// The digest of every byte read; `Err` if hashing failed (its worker died).
    fn finish(path: &Path, state: &Mutex<DigestState>) -> Result<Option<ArchiveDigest>, PackageError> {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let count = s.count;
        let Some(hashes) = s.hashes.take() else { return Ok(None) };
        let (md5, sha) = hashes.finish().ok_or_else(|| PackageError::Damaged {
            path: path.to_path_buf(),
            detail: "the archive could not be hashed (hashing thread failed)".into(),
        })?;
        Ok(Some(ArchiveDigest {
            size: count,
            md5: hex(&md5.finalize()),
            sha256: hex(&sha.finalize()),
        }))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), FileReadError(e)))?;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hashes) = &mut s.hashes {
            hashes.update(&buf[..n]);
        }
        s.count += n as u64;
        Ok(n)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the package at `path` may hold `md5sum.xml` (beside `images/`), decided before any
/// data is read so that one-pass verification knows whether to compute per-image MD5s. A
/// folder or a zip lists its files up front; a `.tgz` / `.tar` cannot tell before its stream
/// is read, so the answer is then `true` (as it is whenever the listing fails: hashing more
/// is always safe).
pub fn may_hold_md5sum_xml(path: &Path) -> bool {
    match detect_kind(path) {
        Ok(SourceKind::Dir) => match find_dir_root(path) {
            Ok(root) => fs::symlink_metadata(path.join(&root).join("md5sum.xml")).is_ok(),
            Err(_) => true,
        },
        Ok(SourceKind::Zip) => match list_zip(path) {
            Ok(members) => members.iter().any(|m| {
                let name = m.name.rsplit(['/', '\\']).next().unwrap_or(&m.name);
                name.eq_ignore_ascii_case("md5sum.xml")
            }),
            Err(_) => true,
        },
        _ => true,
    }
}

pub(crate) fn detect_kind(path: &Path) -> Result<SourceKind, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Ok(SourceKind::Dir);
    }
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(io_err)?;
    let mut n = 0;
    while n < head.len() {
        let r = file.read(&mut head[n..]).map_err(io_err)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(SourceKind::Tgz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(SourceKind::Zip)
    } else if head.len() >= 263 && &head[257..262] == b"ustar" {
        Ok(SourceKind::Tar)
    } else {
        Err(PackageError::UnknownFormat {
            path: path.to_path_buf(),
            magic: head
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }
}

fn digest_file(path: &Path) -> Result<ArchiveDigest, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let state = DigestState::shared(true);
    let file = File::open(path).map_err(io_err)?;
    let mut reader = HashingReader {
        inner: file,
        state: Arc::clone(&state),
    };
    io::copy(&mut reader, &mut io::sink()).map_err(io_err)?;
    DigestState::finish(path, &state)?.ok_or_else(|| PackageError::Damaged {
        path: path.to_path_buf(),
        detail: "no digest".into(),
    })
}

/// An opened tar stream, the most bytes it can hold, and its file digest (filled as read).
type TarStream = (
    TarReader<Box<dyn Read + Send>>,
    u64,
    Arc<Mutex<DigestState>>,
);

/// Opens the uncompressed tar stream of a `.tgz` / `.tar`, hashing the file's bytes as they
/// are read when `want_digest`. Also returns the most bytes the stream can hold.
fn open_tar_stream(
    path: &Path,
    kind: SourceKind,
    want_digest: bool,
) -> Result<TarStream, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let state = DigestState::shared(want_digest);
    let hashing = HashingReader {
        inner: file,
        state: Arc::clone(&state),
    };
    let buffered = BufReader::with_capacity(READ_BUFFER, hashing);
    let (reader, limit): (Box<dyn Read + Send>, u64) = if kind == SourceKind::Tgz {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        let limit = file_len
            .saturating_mul(DEFLATE_MAX_RATIO)
            .saturating_add(1 << 20);
        (
            Box::new(BufReader::with_capacity(READ_BUFFER, decoder)),
            limit,
        )
    } else {
        (Box::new(buffered), file_len)
    };
    Ok((TarReader::new(reader), limit, state))
}

/// Streams a `.tgz` / `.tar` through `collector`, checking every header. Returns the archive
/// digest if requested.
fn scan_tar_stream(
    path: &Path,
    kind: SourceKind,
    want_digest: bool,
    collector: &mut Collector<'_>,
) -> Result<Option<ArchiveDigest>, PackageError> {
    let (mut tar, limit, state) = open_tar_stream(path, kind, want_digest)?;
    walk_tar(path, &mut tar, limit, collector, None)?;
    // Read to the end: the gzip trailer (CRC-32 and length of the whole stream) is only
    // checked there, and the digest must cover every byte of the file.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| read_error(path, "(end of archive)", e))?;
    DigestState::finish(path, &state)
}

/// Walks tar members through the collector. With `stop_at`, stops at that member (full
/// normalised path) before reading its data and returns `true`.
fn walk_tar<R: Read>(
    path: &Path,
    tar: &mut TarReader<R>,
    limit: u64,
    collector: &mut Collector<'_>,
    stop_at: Option<&str>,
) -> Result<bool, PackageError> {
    loop {
        let header = match tar.next_header() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(false),
            Err(e) => {
                return Err(tar_error(
                    path,
                    e,
                    collector.entries.last().map(|e| e.0.as_str()),
                ))
            }
        };
        let shown = String::from_utf8_lossy(&header.path).into_owned();
        if tar.offset().saturating_add(header.size) > limit {
            return Err(PackageError::ImpossibleSize {
                path: path.to_path_buf(),
                entry: shown,
                declared: header.size,
                limit: limit.saturating_sub(tar.offset()),
            });
        }
        let kind = match header.kind {
            TarKind::File => RawKind::File,
            TarKind::Dir => RawKind::Dir,
            TarKind::Symlink => RawKind::Refused("a symbolic link"),
            TarKind::HardLink => RawKind::Refused("a hard link"),
            TarKind::CharDevice => RawKind::Refused("a character device"),
            TarKind::BlockDevice => RawKind::Refused("a block device"),
            TarKind::Fifo => RawKind::Refused("a FIFO (named pipe)"),
            TarKind::Other(b'S') => RawKind::Refused("a GNU sparse file"),
            TarKind::Other(_) => RawKind::Refused("an entry of an unsupported type"),
        };
        let is_target = kind == RawKind::File
            && stop_at.is_some_and(|t| normalize_entry_path(&header.path).is_ok_and(|p| p == t));
        if kind == RawKind::File && !is_target {
            let mut data = tar.data_reader();
            collector.entry(&header.path, kind, header.size, Some(&mut data))?;
        } else {
            collector.entry(&header.path, kind, header.size, None)?;
        }
        if is_target {
            return Ok(true);
        }
    }
}

fn tar_error(path: &Path, e: TarError, last: Option<&str>) -> PackageError {
    let after = last.map(|l| format!(" after `{l}`")).unwrap_or_default();
    match e {
        TarError::Io(e) => read_error(path, &format!("the archive{after}"), e),
        TarError::Truncated { offset } => PackageError::Damaged {
            path: path.to_path_buf(),
            detail: format!("the archive ends early at byte {offset} of its content{after}"),
        },
        TarError::Corrupt { offset, detail } => PackageError::Damaged {
            path: path.to_path_buf(),
            detail: format!("{detail} at byte {offset} of the archive content{after}"),
        },
    }
}

/// Streams a `.tgz` up to `full` (checking everything before it) and returns a reader over
/// that member's data.
fn open_tar_member(
    path: &Path,
    kind: SourceKind,
    full: &str,
) -> Result<Box<dyn Read + Send>, PackageError> {
    let (mut tar, limit, _) = open_tar_stream(path, kind, false)?;
    let mut noop = |_: &str, _: u64, _: &mut dyn Read| Ok(());
    // Collector with a visitor that reads nothing, so the member's data stays unread; it
    // still checks every header before the member.
    let found = {
        let mut collector = Collector::new(path, &mut noop);
        walk_tar(path, &mut tar, limit, &mut collector, Some(full))?
    };
    if !found {
        return Err(PackageError::NoSuchEntry {
            path: path.to_path_buf(),
            entry: full.to_string(),
        });
    }
    Ok(Box::new(TarMemberReader {
        tar,
        path: path.to_path_buf(),
        entry: full.to_string(),
    }))
}

struct TarMemberReader<R: Read> {
    tar: TarReader<R>,
    path: PathBuf,
    entry: String,
}

impl<R: Read> Read for TarMemberReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tar.data_reader().read(buf).map_err(|e| {
            let msg = read_error(&self.path, &self.entry, e).to_string();
            io::Error::new(io::ErrorKind::InvalidData, msg)
        })
    }
}

/// Picks the package root among the folders that contain `images/`.
fn resolve_root(path: &Path, files: &[(String, u64)]) -> Result<String, PackageError> {
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    for (f, _) in files {
        let parts: Vec<&str> = f.split('/').collect();
        for k in 0..parts.len().saturating_sub(1) {
            if parts[k] == "images" {
                candidates.insert(parts[..k].join("/"));
            }
        }
    }
    let with_scripts: Vec<&String> = candidates
        .iter()
        .filter(|c| {
            let prefix = root_prefix(c);
            files.iter().any(|(f, _)| {
                f.strip_prefix(&prefix).is_some_and(|rest| {
                    !rest.contains('/') && rest.starts_with("flash_all") && is_script_name(rest)
                })
            })
        })
        .collect();
    match (with_scripts.len(), candidates.len()) {
        (1, _) => Ok(with_scripts[0].clone()),
        (0, 1) => Ok(candidates.into_iter().next().unwrap_or_default()),
        (0, 0) => Err(PackageError::NoPackageRoot {
            path: path.to_path_buf(),
        }),
        (0, _) => Err(PackageError::AmbiguousRoot {
            path: path.to_path_buf(),
            candidates: candidates.into_iter().collect(),
        }),
        _ => Err(PackageError::AmbiguousRoot {
            path: path.to_path_buf(),
            candidates: with_scripts.into_iter().cloned().collect(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// .zip

/// Where one zip member's data lies, so it can be read without keeping the archive open.
#[derive(Debug, Clone)]
struct ZipMember {
    name: String,
    is_dir: bool,
    size: u64,
    compressed_size: u64,
    crc32: u32,
    data_start: u64,
    deflated: bool,
}

impl ZipMember {
    fn open(&self, path: &Path) -> Result<ZipMemberReader, PackageError> {
        let io_err = |e| PackageError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let mut file = File::open(path).map_err(io_err)?;
        file.seek(SeekFrom::Start(self.data_start))
            .map_err(io_err)?;
        let raw = BufReader::with_capacity(READ_BUFFER, file).take(self.compressed_size);
        let inner: Box<dyn Read + Send> = if self.deflated {
            Box::new(flate2::bufread::DeflateDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        Ok(ZipMemberReader {
            inner,
            expected_size: self.size,
            expected_crc: self.crc32,
            count: 0,
            crc: crc32fast::Hasher::new(),
        })
    }
}

/// Reads a zip member and checks its size and CRC-32 against the central directory.
struct ZipMemberReader {
    inner: Box<dyn Read + Send>,
    expected_size: u64,
    expected_crc: u32,
    count: u64,
    crc: crc32fast::Hasher,
}

impl Read for ZipMemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than declared so a member that inflates past its size is seen.
        let room = (self.expected_size - self.count.min(self.expected_size)).saturating_add(1);
        let want = (buf.len() as u64).min(room) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        self.count += n as u64;
        if self.count > self.expected_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file holds more data than the zip directory declares",
            ));
        }
        self.crc.update(&buf[..n]);
        if n == 0 {
            if self.count != self.expected_size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ends after {} of {} bytes",
                        self.count, self.expected_size
                    ),
                ));
            }
            let crc = self.crc.clone().finalize();
            if crc != self.expected_crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "CRC-32 {crc:08x} does not match the zip directory ({:08x})",
                        self.expected_crc
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// Reads the zip's central directory records from `start`; when they hold more entries than
/// the `distinct` names the zip library kept, returns the first name listed twice.
fn zip_name_listed_twice(path: &Path, start: u64, distinct: usize) -> io::Result<Option<String>> {
    let mut r = BufReader::new(File::open(path)?);
    r.seek(SeekFrom::Start(start))?;
    let mut names = std::collections::HashSet::new();
    let mut header = [0u8; 46];
    while names.len() <= MAX_ENTRIES {
        if r.read_exact(&mut header).is_err() || header[..4] != *b"PK\x01\x02" {
            break;
        }
        let field = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as usize;
        let (name_len, extra_len, comment_len) = (field(28), field(30), field(32));
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name)?;
        r.seek_relative((extra_len + comment_len) as i64)?;
        if !names.insert(name.clone()) {
            return Ok(Some(String::from_utf8_lossy(&name).into_owned()));
        }
    }
    // Whatever the records held, the library's count must agree with them.
    if names.len() != distinct {
        return Ok(Some(format!("(the zip directory lists {} entries, {} of them readable)", names.len(), distinct)));
    }
    Ok(None)
}

fn list_zip(path: &Path) -> Result<Vec<ZipMember>, PackageError> {
    let io_err = |e| PackageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let damaged = |detail: String| PackageError::Damaged {
        path: path.to_path_buf(),
        detail,
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| damaged(format!("unreadable zip directory: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(PackageError::TooManyEntries {
            path: path.to_path_buf(),
            limit: MAX_ENTRIES,
        });
    }
    // The zip library keeps one entry per name: a name listed twice in the directory would
    // silently stand for one of its copies (and another unzip tool may pick the other).
    if let Some(twice) = zip_name_listed_twice(path, archive.central_directory_start(), archive.len()).map_err(io_err)? {
        return Err(PackageError::UnsafeEntry {
            path: path.to_path_buf(),
            entry: twice,
            reason: "it appears twice in the archive (a later copy would silently replace the first)".into(),
        });
    }
    let mut members = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let f = archive
            .by_index_raw(i)
            .map_err(|e| damaged(format!("zip entry {i}: {e}")))?;
        let raw_name = f.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason: &str| PackageError::UnsafeEntry {
            path: path.to_path_buf(),
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let name = std::str::from_utf8(&raw_name)
            .map_err(|_| refuse("its name is not valid UTF-8"))?
            .to_string();
        let mode = f.unix_mode().unwrap_or(0) & 0o170000;
        match mode {
            0o120000 => return Err(refuse("it is a symbolic link")),
            0o020000 => return Err(refuse("it is a character device")),
            0o060000 => return Err(refuse("it is a block device")),
            0o010000 => return Err(refuse("it is a FIFO (named pipe)")),
            0o140000 => return Err(refuse("it is a socket")),
            _ => {}
        }
        if f.encrypted() {
            return Err(refuse("it is encrypted"));
        }
        let is_dir = f.is_dir();
        let deflated = match f.compression() {
            zip::CompressionMethod::Stored => false,
            zip::CompressionMethod::Deflated => true,
            other => {
                return Err(refuse(&format!(
                    "it uses compression {other:?}; re-pack the folder with ordinary deflate"
                )));
            }
        };
        let (size, compressed_size) = (f.size(), f.compressed_size());
        let data_start = f.data_start();
        if data_start.saturating_add(compressed_size) > file_len {
            return Err(damaged(format!(
                "`{shown}` extends past the end of the file"
            )));
        }
        let limit = if deflated {
            compressed_size
                .saturating_mul(DEFLATE_MAX_RATIO)
                .saturating_add(1024)
        } else {
            compressed_size
        };
        if size > limit {
            return Err(PackageError::ImpossibleSize {
                path: path.to_path_buf(),
                entry: shown,
                declared: size,
                limit,
            });
        }
        members.push(ZipMember {
            name,
            is_dir,
            size,
            compressed_size,
            crc32: f.crc32(),
            data_start,
            deflated,
        });
    }
    Ok(members)
}

// ---------------------------------------------------------------------------------------------
// Extracted folders

/// Finds the package root below `path` (the folder itself or up to a few levels down).
fn find_dir_root(path: &Path) -> Result<String, PackageError> {
    let io_err = |p: &Path, e| PackageError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let mut candidates: Vec<(String, bool)> = Vec::new();
    let mut queue: Vec<(PathBuf, String, usize)> = vec![(path.to_path_buf(), String::new(), 0)];
    let mut visited = 0usize;
    while let Some((dir, rel, depth)) = queue.pop() {
        visited += 1;
        if visited > 10_000 {
            break;
        }
        let images = dir.join("images");
        if fs::symlink_metadata(&images).is_ok_and(|m| m.is_dir()) {
            let has_scripts = fs::read_dir(&dir)
                .map_err(|e| io_err(&dir, e))?
                .filter_map(Result::ok)
                .any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("flash_all") && is_script_name(&n)
                });
            candidates.push((rel.clone(), has_scripts));
        }
        if depth >= MAX_ROOT_DEPTH {
            continue;
        }
        let Ok(read) = fs::read_dir(&dir) else {
            continue;
        };
        let mut children: Vec<(PathBuf, String)> = read
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let child_rel = if rel.is_empty() {
                    n.clone()
                } else {
                    format!("{rel}/{n}")
                };
                (e.path(), child_rel)
            })
            // The root's own images/ folder is not a place to look for another root.
            .filter(|(p, _)| p.file_name() != Some(std::ffi::OsStr::new("images")))
            .collect();
        children.sort_by(|a, b| b.1.cmp(&a.1));
        for (p, r) in children {
            queue.push((p, r, depth + 1));
        }
    }
    let with_scripts: Vec<&(String, bool)> = candidates.iter().filter(|c| c.1).collect();
    match (with_scripts.len(), candidates.len()) {
        (1, _) => Ok(with_scripts[0].0.clone()),
        (0, 1) => Ok(candidates[0].0.clone()),
        (0, 0) => Err(PackageError::NoPackageRoot {
            path: path.to_path_buf(),
        }),
        (0, _) => Err(PackageError::AmbiguousRoot {
            path: path.to_path_buf(),
            candidates: candidates.into_iter().map(|c| c.0).collect(),
        }),
        _ => Err(PackageError::AmbiguousRoot {
            path: path.to_path_buf(),
            candidates: with_scripts.into_iter().map(|c| c.0.clone()).collect(),
        }),
    }
}

/// Lists the root folder (sorted, depth-first) through the collector, reading every file.
fn scan_dir(path: &Path, root: &str, collector: &mut Collector<'_>) -> Result<(), PackageError> {
    let root_path = path.join(root);
    let io_err = |p: &Path, e| PackageError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let canonical_root = fs::canonicalize(&root_path).map_err(|e| io_err(&root_path, e))?;
    let prefix = root_prefix(root);
    let mut stack: Vec<(PathBuf, String)> = vec![(root_path.clone(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children: Vec<(String, PathBuf)> = fs::read_dir(&dir)
            .map_err(|e| io_err(&dir, e))?
            .map(|e| e.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())))
            .collect::<Result<_, _>>()
            .map_err(|e| io_err(&dir, e))?;
        children.sort();
        let mut subdirs = Vec::new();
        for (name, child) in children {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let full = format!("{prefix}{child_rel}");
            let meta = fs::symlink_metadata(&child).map_err(|e| io_err(&child, e))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::canonicalize(&child).map_err(|e| io_err(&child, e))?;
                let tmeta = fs::metadata(&target).map_err(|e| io_err(&target, e))?;
                if !target.starts_with(&canonical_root) {
                    collector.entry(
                        full.as_bytes(),
                        RawKind::Refused("a symbolic link pointing outside the package folder"),
                        0,
                        None,
                    )?;
                } else if !tmeta.is_file() {
                    collector.entry(
                        full.as_bytes(),
                        RawKind::Refused("a symbolic link to something other than a regular file"),
                        0,
                        None,
                    )?;
                } else {
                    let mut f = File::open(&target).map_err(|e| io_err(&target, e))?;
                    collector.entry(full.as_bytes(), RawKind::File, tmeta.len(), Some(&mut f))?;
                }
            } else if ft.is_dir() {
                collector.entry(full.as_bytes(), RawKind::Dir, 0, None)?;
                subdirs.push((child, child_rel));
            } else if ft.is_file() {
                let mut f = File::open(&child).map_err(|e| io_err(&child, e))?;
                // Read exactly the listed size: a file growing meanwhile must not desync the
                // checks, and one shrinking is reported by the collector.
                let mut limited = (&mut f).take(meta.len());
                collector.entry(
                    full.as_bytes(),
                    RawKind::File,
                    meta.len(),
                    Some(&mut limited),
                )?;
            } else {
                collector.entry(
                    full.as_bytes(),
                    RawKind::Refused("a device file, FIFO or socket"),
                    0,
                    None,
                )?;
            }
        }
        subdirs.reverse();
        stack.extend(subdirs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_confined() {
        assert_eq!(
            normalize_entry_path(b"./top/images/boot.img").unwrap(),
            "top/images/boot.img"
        );
        assert_eq!(normalize_entry_path(b"top//images/").unwrap(), "top/images");
        for bad in [
            &b"/etc/passwd"[..],
            b"top/../../x",
            b"..",
            b"a\\b",
            b"C:/x",
            b"a/\xff",
            b"a\nb",
        ] {
            assert!(
                normalize_entry_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            normalize_rel("images\\boot.img").as_deref(),
            Some("images/boot.img")
        );
        assert_eq!(normalize_rel("../x"), None);
    }

    #[test]
    fn root_is_the_folder_holding_images_and_scripts() {
        let files = |v: &[&str]| v.iter().map(|s| (s.to_string(), 1)).collect::<Vec<_>>();
        let p = Path::new("x.tgz");
        assert_eq!(
            resolve_root(p, &files(&["t/images/a.img", "t/flash_all.sh"])).unwrap(),
            "t"
        );
        assert_eq!(
            resolve_root(p, &files(&["images/a.img", "flash_all.bat"])).unwrap(),
            ""
        );
        // A nested images/ folder without scripts does not compete with the real root.
        assert_eq!(
            resolve_root(
                p,
                &files(&["t/images/a.img", "t/flash_all.sh", "t/images/x/images/b"])
            )
            .unwrap(),
            "t"
        );
        assert!(matches!(
            resolve_root(p, &files(&["t/boot.img"])),
            Err(PackageError::NoPackageRoot { .. })
        ));
        assert!(matches!(
            resolve_root(
                p,
                &files(&[
                    "a/images/x",
                    "a/flash_all.sh",
                    "b/images/x",
                    "b/flash_all.sh"
                ])
            ),
            Err(PackageError::AmbiguousRoot { .. })
        ));
    }
}
