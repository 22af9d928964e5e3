//! Offline verification of a fastboot ROM package, before anything touches a device.
//!
//! One pass over the archive computes everything: the listing and small files (through
//! [`Package::scan`]), MD5 and SHA-256 of the archive file as its compressed bytes are read,
//! and per file the CRC-32, the MD5 (files under `images/`) and, for Android sparse images, the
//! chunk structure and the CRCs of `sparsecrclist.txt`. The checks then compare:
//!
//! * the MD5 fragment in the file name (first 10 hex digits of the `.tgz`'s MD5);
//! * `roms-manifest.toml`, when it lists the package (size, SHA-256, MD5, anti);
//! * `md5sum.xml` (per-image MD5), `images/crclist.txt` (CRC-32 of whole images),
//!   `images/sparsecrclist.txt` (old single-CRC and new per-piece formats);
//! * every image the flash plan references exists and is not empty; every file that claims to
//!   be sparse (magic, or listed in `sparsecrclist.txt`) is a valid sparse image;
//! * `anti_version.txt` is a number; `misc.txt`'s device matches the file name.
//!
//! The result is a [`VerifyReport`] (serde-serialisable for `--json`); each failed check names
//! the file and what differed. Nothing here talks to a device or parses scripts beyond a
//! partition→image lookup for the CRC lists.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;

use super::hashing::BackgroundHash;
use md5::{Digest as _, Md5};
use regex::Regex;
use serde::Serialize;

use super::manifest::Manifest;
use super::package::{
    hex, ArchiveDigest, EntryKind, Package, PackageError, PackageName, ScanOptions, ScanVisitor,
    SourceKind,
};
use crate::sparse::{
    self, CrcList, ImageScan, SparseCrcList, SparseCrcValues, SparseLayout, NEW_SPARSE_CRC_SPLIT,
    OLD_SPARSE_CRC_SPLIT,
};

/// Images are verified again while they are read for flashing, window by window: the
/// CRC-32 of every `IMAGE_WINDOW` bytes is measured here, and the flasher sends no byte of a
/// window before the window read again has the same CRC (docs/flashing.md).
pub const IMAGE_WINDOW: u64 = 1 << 20;

/// Split size of the old (single CRC + piece count) `sparsecrclist.txt` format.
pub const OLD_FORMAT_SPLIT_SIZE: u64 = OLD_SPARSE_CRC_SPLIT;


/// Inputs besides the package itself.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Image paths (relative to the package root, e.g. `images/boot.img`) that the flash plan
    /// references — `Plan::images()`. `None`: not checked.
    pub plan_images: Option<Vec<String>>,
    /// `(partition, image path)` pairs from the plan, used to find the image of each
    /// CRC-list entry (`_ab` suffixes are stripped). The package's own scripts and
    /// `flash_gen_crc_list.py` are used as well.
    pub partition_images: Vec<(String, String)>,
    /// The max-download-size the per-piece CRCs of `sparsecrclist.txt` are computed for: the
    /// phone's when it checks CRC lists (its pieces must match the list), otherwise `None`
    /// for Xiaomi's generator size (768 MiB).
    pub max_download_size: Option<u64>,
    /// Known packages; when this package is listed, its size, hashes and anti are compared.
    pub manifest: Option<Manifest>,
    /// Folder of records of completely verified archives (`super::record`): `None` keeps
    /// none. A complete pass whose checks all pass writes one.
    pub records: Option<std::path::PathBuf>,
    /// Use a record of this exact archive (same SHA-256) instead of decompressing it again.
    pub reuse_record: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Failed,
    Skipped,
}

/// One verification step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable identifier: `md5-fragment`, `manifest`, `md5sum.xml`, `crclist`,
    /// `sparsecrclist`, `plan-image`, `sparse-image`, `anti-version`, `misc-device`.
    pub name: String,
    /// The file the check is about (relative to the package root, or the package file).
    pub file: String,
    pub status: CheckStatus,
    /// What was checked, what differed, or why it was skipped.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

impl Check {
    fn new(name: &str, file: &str, status: CheckStatus, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            file: file.into(),
            status,
            detail: detail.into(),
            expected: None,
            actual: None,
        }
    }
    pub(crate) fn ok(name: &str, file: &str, detail: impl Into<String>) -> Check {
        Check::new(name, file, CheckStatus::Ok, detail)
    }
    pub(crate) fn skipped(name: &str, file: &str, detail: impl Into<String>) -> Check {
        Check::new(name, file, CheckStatus::Skipped, detail)
    }
    pub(crate) fn failed(name: &str, file: &str, detail: impl Into<String>) -> Check {
        Check::new(name, file, CheckStatus::Failed, detail)
    }
    pub(crate) fn differs(
        name: &str,
        file: &str,
        detail: impl Into<String>,
        expected: String,
        actual: String,
    ) -> Check {
        Check {
            expected: Some(expected),
            actual: Some(actual),
            ..Check::failed(name, file, detail)
        }
    }
}

/// Sparse layout of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SparseInfo {
    pub block_size: u32,
    pub total_blocks: u32,
    pub raw_chunks: u32,
    pub fill_chunks: u32,
    pub dont_care_chunks: u32,
    pub crc_chunks: u32,
    /// CRC-32 of RAW + expanded FILL data, Python `hex()` form.
    pub data_crc: String,
    pub splits: Vec<SplitInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitInfo {
    pub max_download_size: u64,
    /// Per-piece CRC-32s in Python `hex()` form; empty when `error` is set.
    pub piece_crcs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one pass measured for a file of the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// Relative to the package root.
    pub path: String,
    pub size: u64,
    /// CRC-32 of the whole file, Python `hex()` form (`crclist.txt` style).
    pub crc32: String,
    /// MD5 (files under `images/` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Present when the file starts with the sparse magic and parsed cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse: Option<SparseInfo>,
    /// Present when the file starts with the sparse magic but is malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_error: Option<String>,
    #[serde(skip)]
    crc32_value: u32,
    /// Layout and CRCs measured in the pass (images only).
    #[serde(skip)]
    scan: Option<ImageScan>,
    /// CRC-32 of each [`IMAGE_WINDOW`] bytes, the last window shorter.
    #[serde(skip)]
    windows: Vec<u32>,
}

impl FileInfo {
    /// A file from its measurements (taken by this pass, or by an earlier one and kept in a
    /// record).
    pub(crate) fn from_measurements(
        path: String,
        size: u64,
        crc32_value: u32,
        md5: Option<String>,
        sparse_error: Option<String>,
        scan: Option<ImageScan>,
        windows: Vec<u32>,
    ) -> FileInfo {
        FileInfo {
            path,
            size,
            crc32: py_hex(crc32_value),
            md5,
            sparse: scan.as_ref().filter(|s| s.layout.is_sparse()).map(sparse_info),
            sparse_error,
            crc32_value,
            scan,
            windows,
        }
    }

    /// The CRC-32 of each [`IMAGE_WINDOW`] bytes of the file (empty for an empty file).
    pub fn windows(&self) -> &[u32] {
        &self.windows
    }

    pub(crate) fn scan(&self) -> Option<&ImageScan> {
        self.scan.as_ref()
    }

    pub fn crc32_value(&self) -> u32 {
        self.crc32_value
    }
    /// The image's layout (sparse chunks, or the raw image's blocks), as the flasher needs it
    /// to split the image without reading it twice.
    pub fn layout(&self) -> Option<&SparseLayout> {
        self.scan.as_ref().map(|s| &s.layout)
    }
}

/// The verification result.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Package file (or folder) name.
    pub package: String,
    pub kind: SourceKind,
    /// Package root inside the archive.
    pub root: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<PackageName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<ArchiveDigest>,
    /// Anti-rollback index from `images/anti_version.txt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anti: Option<u32>,
    /// `key=value` pairs of `misc.txt`.
    pub misc: BTreeMap<String, String>,
    pub checks: Vec<Check>,
    /// Files below the root with their measured sizes and checksums, archive order.
    pub files: Vec<FileInfo>,
}

impl VerifyReport {
    /// No check failed.
    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Failed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
    }

    /// Adds the checks that every image the flash plan uses is present, non-empty and (when
    /// it claims to be) a valid sparse image; replaces the "no plan given" note.
    pub fn add_plan_checks(&mut self, package: &Package, script: &str, images: &[String]) {
        self.checks.retain(|c| !(c.name == "plan-image" && c.status == CheckStatus::Skipped));
        if images.is_empty() {
            // A "flash" that writes nothing would end in a false "Done".
            self.checks.push(Check::failed(
                "plan-image",
                script,
                "the script flashes no image at all: it is not a working flash script; use an official package",
            ));
        }
        let mut plan_checks: Vec<Check> = check_images(package, &[], Some(images));
        // Only the package's images are measured for flashing (layout, piece and window
        // CRCs); a plan that flashes anything else (the script itself, misc.txt) is refused
        // here, not later at the phone.
        for c in plan_checks.iter_mut().filter(|c| c.status == CheckStatus::Ok) {
            if self.file(&c.file).and_then(FileInfo::layout).is_none() {
                *c = Check::failed(
                    "plan-image",
                    &c.file,
                    "the flash plan writes this file to a partition, but it is not one of the package's images: the script was modified; use an official package",
                );
            }
        }
        self.checks.extend(plan_checks);
    }

    pub fn file(&self, rel: &str) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.path == rel)
    }
}

/// A verified package: the opened package (ready for planning/flashing) and the report.
#[derive(Debug, Clone)]
pub struct Verified {
    pub package: Package,
    pub report: VerifyReport,
    /// The record of this verification that was written (a complete pass over an archive
    /// whose checks all passed, with records kept), so a later flash of the same file only
    /// hashes it.
    pub record: Option<std::path::PathBuf>,
}

impl Verified {
    /// The layout of every image (path relative to the package root → layout).
    pub fn layouts(&self) -> HashMap<String, SparseLayout> {
        self.report.files.iter().filter_map(|f| Some((f.path.clone(), f.layout()?.clone()))).collect()
    }
}

/// Opens and verifies a package in one pass. `Err` means the package could not even be read
/// safely (damaged, hostile, not a package); check failures are in the report.
pub fn verify(path: &Path, options: &VerifyOptions) -> Result<Verified, PackageError> {
    let split_size = options.max_download_size.unwrap_or(NEW_SPARSE_CRC_SPLIT);
    let records = options.records.as_deref().filter(|_| super::record::applies_to(path));
    if let (Some(dir), true) = (records, options.reuse_record) {
        match super::record::find(dir, path, split_size) {
            Ok(Some(found)) => {
                let note = Check::new(
                    "verified-before",
                    &found.package.file_name(),
                    CheckStatus::Ok,
                    format!(
                        "this exact archive (SHA-256 {}) was decompressed and measured completely \
                         on {}; the checks were run again on those measurements (--full-verify \
                         decompresses it again)",
                        found.sha256,
                        super::record::utc(found.verified_at)
                    ),
                );
                let mut report = build_report(&found.package, found.files, options, split_size);
                report.checks.insert(0, note);
                return Ok(Verified { package: found.package, report, record: None });
            }
            Ok(None) => {}
            Err(e) => log::warn!("ignoring the record of an earlier verification of {}: {e}", path.display()),
        }
    }
    // Per-image MD5s only serve md5sum.xml, which packages since about 2022 no longer ship;
    // a folder or zip tells up front whether it has one, a .tgz only once it is read.
    let image_md5 = super::package::may_hold_md5sum_xml(path);
    let mut digester = Digester { split_size, image_md5, files: HashMap::new() };
    let package = Package::scan(path, ScanOptions { digest: true }, &mut digester)?;
    let mut files = Vec::new();
    for entry in package.entries().iter().filter(|e| e.kind == EntryKind::File) {
        let full = if package.root().is_empty() {
            entry.path.clone()
        } else {
            format!("{}/{}", package.root(), entry.path)
        };
        if let Some(mut info) = digester.files.remove(&full) {
            info.path = entry.path.clone();
            files.push(info);
        }
    }
    let record = records.map(|dir| (dir, super::record::prepare(&package, &files, split_size)));
    let report = build_report(&package, files, options, split_size);
    let mut written = None;
    if let Some((dir, Some(record))) = record {
        if report.is_ok() {
            match super::record::write(dir, record) {
                Ok(path) => written = Some(path),
                Err(e) => log::warn!("cannot keep a record of this verification in {}: {e}", dir.display()),
            }
        }
    }
    Ok(Verified { package, report, record: written })
}

/// Computes the per-file measurements during the scan.
struct Digester {
    split_size: u64,
    /// Compute each image's MD5 (on a worker thread, beside the decompression).
    image_md5: bool,
    files: HashMap<String, FileInfo>,
}

/// Passes a file's bytes on while hashing them (CRC-32 always, MD5 for images), and keeps
/// the first I/O error so that a damaged archive is reported as such, not as a bad image.
struct Tee<'a> {
    inner: &'a mut dyn Read,
    md5: Option<BackgroundHash<Md5>>,
    /// The window CRCs, and from them the whole file's CRC-32.
    windows: Windows,
    total: u64,
    error: Option<io::Error>,
}

/// CRC-32s of consecutive fixed-size windows of a stream, and of the whole stream (combined
/// from the windows' CRCs, so each byte is hashed once).
#[derive(Default)]
pub(crate) struct Windows {
    hasher: crc32fast::Hasher,
    filled: u64,
    crcs: Vec<u32>,
    whole: crc32fast::Hasher,
}

impl Windows {
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((IMAGE_WINDOW - self.filled) as usize).min(data.len());
            self.hasher.update(&data[..take]);
            self.filled += take as u64;
            data = &data[take..];
            if self.filled == IMAGE_WINDOW {
                let h = std::mem::take(&mut self.hasher);
                self.whole.combine(&h);
                self.crcs.push(h.finalize());
                self.filled = 0;
            }
        }
    }

    /// The window CRCs and the CRC-32 of everything.
    pub(crate) fn finish(mut self) -> (Vec<u32>, u32) {
        if self.filled > 0 {
            self.whole.combine(&self.hasher);
            self.crcs.push(self.hasher.finalize());
        }
        (self.crcs, self.whole.finalize())
    }
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    if let Some(m) = &mut self.md5 {
                        m.update(&buf[..n]);
                    }
                    self.windows.update(&buf[..n]);
                    self.total += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    self.error.get_or_insert(e);
                    return Err(copy);
                }
            }
        }
    }
}

/// Files under `images/`: anything there may be flashed (the CRC lists themselves are
/// flashed to pseudo-partitions), so each gets a layout.
fn is_image(path: &str) -> bool {
    path.split('/').rev().skip(1).any(|c| c == "images")
}

impl ScanVisitor for Digester {
    fn file(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        let in_images = path.split('/').rev().skip(1).any(|c| c == "images");
        let md5 = (in_images && self.image_md5).then(|| BackgroundHash::new("mi-flash-md5"));
        let mut tee = Tee { inner: data, md5, windows: Windows::default(), total: 0, error: None };
        let mut scan = None;
        let mut sparse_error = None;
        if is_image(path) {
            // The sparse module tells sparse from raw by the first bytes and reads on from there.
            let mut head = [0u8; 28];
            let got = sparse::read_full_from(&mut tee, &mut head)?;
            let is_sparse = sparse::is_sparse(&head[..got]);
            let opts = sparse::ScanOptions {
                file_crc: false,
                data_crc: is_sparse,
                piece_crcs_for: is_sparse.then_some(self.split_size),
                check_crc_chunks: true,
            };
            let result = sparse::scan((&head[..got]).chain(&mut tee), &opts);
            if let Some(e) = tee.error.take() {
                return Err(e);
            }
            match result {
                Ok(s) => scan = Some(s),
                Err(e) if is_sparse => sparse_error = Some(e.to_string()),
                // A raw image that cannot be laid out (empty) is reported by the image checks.
                Err(_) => {}
            }
        }
        io::copy(&mut tee, &mut io::sink())?;
        let (windows, crc32_value) = std::mem::take(&mut tee.windows).finish();
        let md5 = match tee.md5.take() {
            Some(h) => Some(hex(&h.finish().ok_or_else(|| io::Error::other(format!("{path}: the MD5 could not be computed (hashing thread failed)")))?.finalize())),
            None => None,
        };
        let info = FileInfo::from_measurements(path.to_string(), tee.total, crc32_value, md5, sparse_error, scan, windows);
        self.files.insert(path.to_string(), info);
        Ok(())
    }
}

/// CRC value the way Xiaomi's Python generator writes it: lowercase, no zero padding.
pub fn py_hex(v: u32) -> String {
    format!("{v:#x}")
}

fn sparse_info(s: &ImageScan) -> SparseInfo {
    let count = |f: fn(&sparse::ChunkKind) -> bool| s.layout.chunks.iter().filter(|c| f(&c.kind)).count() as u32;
    SparseInfo {
        block_size: s.layout.blk_sz,
        total_blocks: s.layout.total_blks,
        raw_chunks: count(|k| matches!(k, sparse::ChunkKind::Raw)),
        fill_chunks: count(|k| matches!(k, sparse::ChunkKind::Fill(_))),
        dont_care_chunks: count(|k| matches!(k, sparse::ChunkKind::DontCare)),
        crc_chunks: count(|k| matches!(k, sparse::ChunkKind::Crc32(_))),
        data_crc: py_hex(s.data_crc.unwrap_or(0)),
        splits: s
            .piece_crcs
            .iter()
            .map(|p| SplitInfo {
                max_download_size: p.max_download_size,
                piece_crcs: p.crcs.iter().map(|&c| py_hex(c)).collect(),
                error: None,
            })
            .collect(),
    }
}

fn build_report(
    package: &Package,
    files: Vec<FileInfo>,
    options: &VerifyOptions,
    split_size: u64,
) -> VerifyReport {
    let by_path: HashMap<&str, &FileInfo> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    let file_name = package.file_name();
    let name = PackageName::parse(&file_name).or_else(|| {
        let root_name = package.root().rsplit('/').next().unwrap_or("");
        PackageName::parse(root_name)
    });
    let misc = parse_misc(package.small_file("misc.txt"));
    let mut checks = Vec::new();

    checks.push(check_md5_fragment(package));
    let anti = check_anti_version(package, &mut checks);
    if let Some(manifest) = &options.manifest {
        checks.extend(manifest.check(&file_name, package.digest(), anti));
    }
    checks.push(check_misc_device(name.as_ref(), &misc));
    checks.extend(check_md5sum_xml(package, &by_path));
    let map = partition_image_map(package, options);
    checks.extend(check_crclist(package, &by_path, &map));
    checks.extend(check_sparsecrclist(package, &by_path, &map, split_size));
    checks.extend(check_images(
        package,
        &files,
        options.plan_images.as_deref(),
    ));

    VerifyReport {
        package: file_name,
        kind: package.kind(),
        root: package.root().to_string(),
        name,
        digest: package.digest().cloned(),
        anti,
        misc,
        checks,
        files,
    }
}

fn check_md5_fragment(package: &Package) -> Check {
    const NAME: &str = "md5-fragment";
    let file_name = package.file_name();
    if package.kind() != SourceKind::Tgz {
        return Check::skipped(
            NAME,
            &file_name,
            format!(
                "the package is a {}, not the .tgz as downloaded from Xiaomi",
                package.kind()
            ),
        );
    }
    let Some(fragment) = super::package::name::md5_fragment(&file_name) else {
        return Check::skipped(NAME, &file_name, "the file name has no MD5 fragment (renamed or repacked); integrity rests on the CRC lists");
    };
    let Some(digest) = package.digest() else {
        return Check::skipped(NAME, &file_name, "the archive MD5 was not computed");
    };
    if digest.md5.starts_with(&fragment) {
        Check::ok(
            NAME,
            &file_name,
            format!("MD5 {} starts with the file name's {fragment}", digest.md5),
        )
    } else {
        Check::differs(
            NAME,
            &file_name,
            "the archive's MD5 does not start with the fragment in its name: the download is damaged or the file is not what its name says; re-download it",
            fragment,
            digest.md5[..10].to_string(),
        )
    }
}

fn check_anti_version(package: &Package, checks: &mut Vec<Check>) -> Option<u32> {
    const NAME: &str = "anti-version";
    const FILE: &str = "images/anti_version.txt";
    let Some(raw) = package.small_file(FILE) else {
        checks.push(Check::skipped(NAME, FILE, "no anti_version.txt (older package); the scripts may hard-code the anti-rollback index"));
        return None;
    };
    let text = String::from_utf8_lossy(raw);
    match text.trim().parse::<u32>() {
        Ok(v) => {
            checks.push(Check::ok(NAME, FILE, format!("anti-rollback index {v}")));
            Some(v)
        }
        Err(_) => {
            checks.push(Check::failed(
                NAME,
                FILE,
                format!(
                    "not a number: {:?}; the anti-rollback check cannot be done safely",
                    text.trim()
                ),
            ));
            None
        }
    }
}

fn parse_misc(raw: Option<&[u8]>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(raw) = raw {
        for line in String::from_utf8_lossy(raw).lines() {
            if let Some((k, v)) = line.split_once('=') {
                map.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    map
}

fn check_misc_device(name: Option<&PackageName>, misc: &BTreeMap<String, String>) -> Check {
    const NAME: &str = "misc-device";
    let Some(device) = misc.get("device") else {
        return Check::skipped(NAME, "misc.txt", "no misc.txt or no device= line");
    };
    let Some(name) = name else {
        return Check::skipped(NAME, "misc.txt", format!("device={device}; the package name does not follow Xiaomi's pattern, nothing to compare"));
    };
    if name.device == *device || name.device.starts_with(&format!("{device}_")) {
        Check::ok(
            NAME,
            "misc.txt",
            format!("device={device} matches the package name"),
        )
    } else {
        Check::differs(NAME, "misc.txt", "misc.txt names another device than the package name: the package may be renamed or mixed up", name.device.clone(), device.clone())
    }
}

fn check_md5sum_xml(package: &Package, files: &HashMap<&str, &FileInfo>) -> Vec<Check> {
    const NAME: &str = "md5sum.xml";
    let Some(raw) = package.small_file("md5sum.xml") else {
        return vec![Check::skipped(
            NAME,
            "md5sum.xml",
            "no md5sum.xml (packages since about 2022 do not ship it)",
        )];
    };
    let text = String::from_utf8_lossy(raw);
    let digest_re = Regex::new(r#"(?s)<digest\b([^>]*)>\s*([0-9A-Fa-f]{32})\s*</digest>"#)
        .expect("static regex");
    let attr_re = Regex::new(r#"(\w+)\s*=\s*"([^"]*)""#).expect("static regex");
    let mut checks = Vec::new();
    for cap in digest_re.captures_iter(&text) {
        let attrs: HashMap<&str, &str> = attr_re
            .captures_iter(cap.get(1).map_or("", |m| m.as_str()))
            .filter_map(|a| Some((a.get(1)?.as_str(), a.get(2)?.as_str())))
            .collect();
        if attrs
            .get("hash")
            .is_some_and(|h| !h.eq_ignore_ascii_case("md5"))
        {
            continue;
        }
        let Some(name) = attrs.get("name") else {
            continue;
        };
        let expected = cap[2].to_ascii_lowercase();
        let rel = format!("images/{}", name.trim_start_matches("images/"));
        match files.get(rel.as_str()) {
            None => checks.push(Check::failed(
                NAME,
                &rel,
                "listed in md5sum.xml but missing from the package: re-download it",
            )),
            Some(f) => match &f.md5 {
                Some(actual) if *actual == expected => {
                    checks.push(Check::ok(NAME, &rel, "MD5 matches"))
                }
                Some(actual) => checks.push(Check::differs(
                    NAME,
                    &rel,
                    "MD5 differs from md5sum.xml: the image is damaged; re-download the package",
                    expected,
                    actual.clone(),
                )),
                None => checks.push(Check::skipped(NAME, &rel, "MD5 not computed for this file")),
            },
        }
    }
    if checks.is_empty() {
        checks.push(Check::failed(
            NAME,
            "md5sum.xml",
            "md5sum.xml holds no MD5 digests: it is damaged",
        ));
    }
    checks
}

/// Partition name → image path (relative to the root), from the plan, the package's
/// `flash_gen_crc_list.py`, and `flash <partition> …images/<file>` lines of its scripts.
fn partition_image_map(package: &Package, options: &VerifyOptions) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    let add = |map: &mut HashMap<String, String>, part: &str, image: &str| {
        let image = image.replace('\\', "/");
        let image = image.trim_start_matches("./").to_string();
        let image = if image.starts_with("images/") {
            image
        } else {
            format!("images/{image}")
        };
        map.entry(part.to_string()).or_insert_with(|| image.clone());
        for suffix in ["_ab", "_a", "_b"] {
            if let Some(base) = part.strip_suffix(suffix) {
                map.entry(base.to_string()).or_insert_with(|| image.clone());
            }
        }
    };
    for (part, image) in &options.partition_images {
        add(&mut map, part, image);
    }
    if let Some(py) = package.small_file("flash_gen_crc_list.py") {
        let re =
            Regex::new(r#""([A-Za-z0-9_.\-]+)"\s*:\s*"([A-Za-z0-9_.\-]+)""#).expect("static regex");
        for cap in re.captures_iter(&String::from_utf8_lossy(py)) {
            add(&mut map, &cap[1], &cap[2]);
        }
    }
    let re = Regex::new(r#"flash\s+([A-Za-z0-9_.\-]+)\s+"?[^\s"]*?images[/\\]([^\s"]+)"#)
        .expect("static regex");
    for script in package.script_names() {
        if let Some(text) = package.small_file(&script) {
            // Most .sh scripts name the package root `dirname $0`, with a space inside.
            let text = String::from_utf8_lossy(text).replace("`dirname $0`", "").replace("$(dirname $0)", "");
            for cap in re.captures_iter(&text) {
                add(&mut map, &cap[1], &cap[2]);
            }
        }
    }
    map
}

/// The image for a CRC-list partition: the map, else `images/<partition>.img`, else the only
/// file in `images/` whose stem is the partition name.
fn image_for<'a>(
    partition: &str,
    map: &HashMap<String, String>,
    files: &HashMap<&'a str, &'a FileInfo>,
) -> Option<&'a FileInfo> {
    if let Some(f) = map.get(partition).and_then(|p| files.get(p.as_str())) {
        return Some(f);
    }
    if let Some(f) = files.get(format!("images/{partition}.img").as_str()) {
        return Some(f);
    }
    let mut matches = files.iter().filter(|(p, _)| {
        p.strip_prefix("images/")
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(stem, _)| stem == partition)
    });
    match (matches.next(), matches.next()) {
        (Some((_, f)), None) => Some(*f),
        _ => None,
    }
}

fn check_crclist(
    package: &Package,
    files: &HashMap<&str, &FileInfo>,
    map: &HashMap<String, String>,
) -> Vec<Check> {
    const NAME: &str = "crclist";
    const FILE: &str = "images/crclist.txt";
    let Some(raw) = package.small_file(FILE) else {
        return vec![Check::skipped(NAME, FILE, "no crclist.txt in this package")];
    };
    let list = match CrcList::parse(&String::from_utf8_lossy(raw), FILE) {
        Ok(l) => l,
        Err(e) => return vec![Check::failed(NAME, FILE, format!("{e}: the file is damaged; re-download the package"))],
    };
    let mut checks = Vec::new();
    for entry in &list.entries {
        let part = &entry.partition;
        let value = entry.crc;
        if value == 0 {
            checks.push(Check::skipped(NAME, FILE, format!("{part}: CRC 0 means no check (Xiaomi's generator skips it)")));
            continue;
        }
        match image_for(part, map, files) {
            None => checks.push(Check::failed(NAME, FILE, format!("{part} (line {}): listed in crclist.txt but no image for it was found in images/: the package is incomplete; re-download it", entry.line))),
            Some(f) if f.crc32_value == value => checks.push(Check::ok(NAME, &f.path, format!("{part}: CRC-32 {} matches", py_hex(value)))),
            Some(f) => checks.push(Check::differs(
                NAME,
                &f.path,
                format!("{part}: CRC-32 differs from crclist.txt line {}: the image is damaged; re-download the package", entry.line),
                py_hex(value),
                f.crc32.clone(),
            )),
        }
    }
    checks
}

fn size_text(size: u64) -> String {
    if size % (1 << 20) == 0 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{size:#x}")
    }
}

/// Checks `sparsecrclist.txt`: new-format lines against the per-piece CRCs of the split for
/// `split_size`; old-format lines against the data CRC and the piece count of a 512 MiB split.
fn check_sparsecrclist(
    package: &Package,
    files: &HashMap<&str, &FileInfo>,
    map: &HashMap<String, String>,
    split_size: u64,
) -> Vec<Check> {
    const NAME: &str = "sparsecrclist";
    const FILE: &str = "images/sparsecrclist.txt";
    let Some(raw) = package.small_file(FILE) else {
        return vec![Check::skipped(NAME, FILE, "no sparsecrclist.txt in this package")];
    };
    let list = match SparseCrcList::parse(&String::from_utf8_lossy(raw), FILE) {
        Ok(l) => l,
        Err(e) => return vec![Check::failed(NAME, FILE, format!("{e}: the file is damaged; re-download the package"))],
    };
    let fmt_list = |v: &[u32]| v.iter().map(|&c| py_hex(c)).collect::<Vec<_>>().join(" ");
    let mut checks = Vec::new();
    for entry in &list.entries {
        let part = &entry.partition;
        let Some(f) = image_for(part, map, files) else {
            checks.push(Check::failed(NAME, FILE, format!("{part} (line {}): listed in sparsecrclist.txt but no image for it was found in images/: re-download the package", entry.line)));
            continue;
        };
        let Some(scan) = f.scan.as_ref().filter(|s| s.layout.is_sparse()) else {
            checks.push(Check::failed(NAME, &f.path, format!("{part}: listed in sparsecrclist.txt but not a valid sparse image")));
            continue;
        };
        match &entry.values {
            SparseCrcValues::PerPiece { crcs } => {
                let ours = scan.piece_crcs.as_ref().map(|p| p.crcs.clone()).unwrap_or_default();
                if ours == *crcs {
                    checks.push(Check::ok(NAME, &f.path, format!("{part}: {} piece CRCs match at max-download-size {}", crcs.len(), size_text(split_size))));
                } else {
                    checks.push(Check::differs(
                        NAME,
                        &f.path,
                        format!(
                            "{part}: per-piece CRCs differ from sparsecrclist.txt line {} at max-download-size {}: the image is damaged, or the list was made for pieces of another size (a phone that checks CRC lists would refuse these pieces)",
                            entry.line,
                            size_text(split_size)
                        ),
                        fmt_list(crcs),
                        fmt_list(&ours),
                    ));
                }
            }
            SparseCrcValues::Whole { crc, pieces } => {
                let data = scan.data_crc.unwrap_or(0);
                let count = sparse::plan_download(&scan.layout, Some(OLD_FORMAT_SPLIT_SIZE)).map(|p| p.downloads()).unwrap_or(0);
                if data != *crc {
                    checks.push(Check::differs(NAME, &f.path, format!("{part}: CRC of the sparse data differs from sparsecrclist.txt line {}: the image is damaged; re-download the package", entry.line), py_hex(*crc), py_hex(data)));
                } else if count != *pieces {
                    checks.push(Check::differs(NAME, &f.path, format!("{part}: data CRC matches but the image is sent in {count} pieces of at most 512 MiB, the list (line {}) says {pieces}", entry.line), pieces.to_string(), count.to_string()));
                } else {
                    checks.push(Check::ok(NAME, &f.path, format!("{part}: data CRC {} matches; {pieces} pieces at 512 MiB", py_hex(data))));
                }
            }
        }
    }
    if checks.is_empty() {
        checks.push(Check::skipped(NAME, FILE, "sparsecrclist.txt lists no images"));
    }
    checks
}

fn check_images(
    package: &Package,
    files: &[FileInfo],
    plan_images: Option<&[String]>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match plan_images {
        None => checks.push(Check::skipped(
            "plan-image",
            "images/",
            "no flash plan given: referenced images not checked",
        )),
        Some(images) => {
            for image in images {
                let rel = image.replace('\\', "/");
                match package.entry(&rel) {
                    Some(e) if e.kind == EntryKind::File && e.size > 0 => checks.push(Check::ok("plan-image", &e.path, format!("present, {} bytes", e.size))),
                    Some(e) if e.kind == EntryKind::File => checks.push(Check::failed("plan-image", &e.path, "the flash plan uses this image but it is empty: re-download the package")),
                    _ => checks.push(Check::failed("plan-image", &rel, "the flash plan uses this image but the package does not contain it: re-download the package")),
                }
            }
        }
    }
    for f in files {
        if let Some(e) = &f.sparse_error {
            checks.push(Check::failed("sparse-image", &f.path, format!("starts like an Android sparse image but is malformed: {e}; re-download the package")));
        } else if let Some(s) = &f.sparse {
            checks.push(Check::ok(
                "sparse-image",
                &f.path,
                format!(
                    "valid sparse image: {} blocks of {} bytes, {} chunks",
                    s.total_blocks,
                    s.block_size,
                    s.raw_chunks + s.fill_chunks + s.dont_care_chunks + s.crc_chunks
                ),
            ));
        }
    }
    checks
}

#[cfg(test)]
mod window_tests {
    use super::{Windows, IMAGE_WINDOW};

    #[test]
    fn window_crcs_and_the_combined_whole_crc() {
        let w = IMAGE_WINDOW as usize;
        for len in [0, 1, w - 1, w, w + 1, 3 * w + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 + i / 977) as u8).collect();
            // Fed in uneven slices that cross the window boundaries.
            let mut windows = Windows::default();
            for part in data.chunks(70_001) {
                windows.update(part);
            }
            let (crcs, whole) = windows.finish();
            assert_eq!(whole, crc32fast::hash(&data), "{len} bytes");
            let expected: Vec<u32> = data.chunks(w).map(crc32fast::hash).collect();
            assert_eq!(crcs, expected, "{len} bytes");
        }
    }
}
