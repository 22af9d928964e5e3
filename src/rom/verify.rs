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

mod sparse_scan;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;

use md5::{Digest as _, Md5};
use regex::Regex;
use serde::Serialize;

use super::manifest::Manifest;
use super::package::{
    hex, ArchiveDigest, EntryKind, Package, PackageError, PackageFiles, PackageName, ScanOptions,
    ScanVisitor, SourceKind,
};

pub use sparse_scan::{is_sparse, SparseScanner, SparseSummary, SplitCrcs};

/// Split sizes tried for `sparsecrclist.txt`: Xiaomi's HyperOS generator (768 MiB), the
/// pre-2022 generator (512 MiB), and the simulator's / sample package's 16 MiB.
pub const DEFAULT_SPLIT_SIZES: &[u64] = &[768 << 20, 512 << 20, 16 << 20];
/// Split size of the old (single CRC + piece count) `sparsecrclist.txt` format.
pub const OLD_FORMAT_SPLIT_SIZE: u64 = 512 << 20;

const READ_CHUNK: usize = 1 << 20;

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
    /// More max-download-size values to try for `sparsecrclist.txt` (e.g. the device's).
    pub extra_split_sizes: Vec<u64>,
    /// Known packages; when this package is listed, its size, hashes and anti are compared.
    pub manifest: Option<Manifest>,
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
    #[serde(skip)]
    sparse_summary: Option<SparseSummary>,
}

impl FileInfo {
    pub fn crc32_value(&self) -> u32 {
        self.crc32_value
    }
    pub fn sparse_summary(&self) -> Option<&SparseSummary> {
        self.sparse_summary.as_ref()
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

    pub fn file(&self, rel: &str) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.path == rel)
    }
}

/// A verified package: the opened package (ready for planning/flashing) and the report.
#[derive(Debug, Clone)]
pub struct Verified {
    pub package: Package,
    pub report: VerifyReport,
}

/// Opens and verifies a package in one pass. `Err` means the package could not even be read
/// safely (damaged, hostile, not a package); check failures are in the report.
pub fn verify(path: &Path, options: &VerifyOptions) -> Result<Verified, PackageError> {
    let mut split_sizes: Vec<u64> = DEFAULT_SPLIT_SIZES.to_vec();
    for &s in &options.extra_split_sizes {
        if !split_sizes.contains(&s) {
            split_sizes.push(s);
        }
    }
    let mut digester = Digester {
        split_sizes: &split_sizes,
        files: HashMap::new(),
        buf: vec![0; READ_CHUNK],
    };
    let package = Package::scan(path, ScanOptions { digest: true }, &mut digester)?;
    let mut files = Vec::new();
    for entry in package
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::File)
    {
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
    let report = build_report(&package, files, options, &split_sizes);
    Ok(Verified { package, report })
}

/// Computes the per-file measurements during the scan.
struct Digester<'a> {
    split_sizes: &'a [u64],
    files: HashMap<String, FileInfo>,
    buf: Vec<u8>,
}

impl ScanVisitor for Digester<'_> {
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let in_images = path.split('/').rev().skip(1).any(|c| c == "images");
        let mut crc = crc32fast::Hasher::new();
        let mut md5 = in_images.then(Md5::new);
        let mut sparse: Option<SparseScanner> = None;
        let mut first = true;
        let mut total = 0u64;
        loop {
            // The first read must see at least the 4 magic bytes to tell sparse from raw.
            let n = if first {
                read_at_least(data, &mut self.buf, 4)?
            } else {
                read_retry(data, &mut self.buf)?
            };
            if first {
                first = false;
                if is_sparse(&self.buf[..n]) {
                    sparse = Some(SparseScanner::new(size, self.split_sizes));
                }
            }
            if n == 0 {
                break;
            }
            let chunk = &self.buf[..n];
            total += n as u64;
            crc.update(chunk);
            if let Some(m) = &mut md5 {
                m.update(chunk);
            }
            if let Some(s) = &mut sparse {
                s.update(chunk);
            }
        }
        let crc32_value = crc.finalize();
        let (sparse_summary, sparse_error) = match sparse.map(SparseScanner::finish) {
            Some(Ok(s)) => (Some(s), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        self.files.insert(
            path.to_string(),
            FileInfo {
                path: path.to_string(),
                size: total,
                crc32: py_hex(crc32_value),
                md5: md5.map(|m| hex(&m.finalize())),
                sparse: sparse_summary.as_ref().map(sparse_info),
                sparse_error,
                crc32_value,
                sparse_summary,
            },
        );
        Ok(())
    }
}

fn read_retry(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn read_at_least(r: &mut dyn Read, buf: &mut [u8], min: usize) -> io::Result<usize> {
    let mut filled = 0;
    while filled < min {
        let n = read_retry(r, &mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// CRC value the way Xiaomi's Python generator writes it: lowercase, no zero padding.
pub fn py_hex(v: u32) -> String {
    format!("{v:#x}")
}

fn sparse_info(s: &SparseSummary) -> SparseInfo {
    SparseInfo {
        block_size: s.block_size,
        total_blocks: s.total_blocks,
        raw_chunks: s.raw_chunks,
        fill_chunks: s.fill_chunks,
        dont_care_chunks: s.dont_care_chunks,
        crc_chunks: s.crc_chunks,
        data_crc: py_hex(s.data_crc),
        splits: s
            .splits
            .iter()
            .map(|sp| match &sp.pieces {
                Ok(p) => SplitInfo {
                    max_download_size: sp.max_download_size,
                    piece_crcs: p.iter().map(|&c| py_hex(c)).collect(),
                    error: None,
                },
                Err(e) => SplitInfo {
                    max_download_size: sp.max_download_size,
                    piece_crcs: Vec::new(),
                    error: Some(e.clone()),
                },
            })
            .collect(),
    }
}

fn build_report(
    package: &Package,
    files: Vec<FileInfo>,
    options: &VerifyOptions,
    split_sizes: &[u64],
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
    checks.extend(check_sparsecrclist(package, &by_path, &map, split_sizes));
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
            for cap in re.captures_iter(&String::from_utf8_lossy(text)) {
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

fn parse_hex(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u32::from_str_radix(digits, 16).ok()
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
    let text = String::from_utf8_lossy(raw);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, l)) if l.trim() == "CRC-LIST" => {}
        _ => {
            return vec![Check::failed(
                NAME,
                FILE,
                "does not start with CRC-LIST: the file is damaged",
            )]
        }
    }
    let mut checks = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (part, value) = match fields.as_slice() {
            [p, v] => match parse_hex(v) {
                Some(v) => (*p, v),
                None => {
                    checks.push(Check::failed(
                        NAME,
                        FILE,
                        format!("line {}: {v:?} is not a 0x… CRC value", i + 1),
                    ));
                    continue;
                }
            },
            _ => {
                checks.push(Check::failed(
                    NAME,
                    FILE,
                    format!(
                        "line {}: expected `<partition> 0x<crc>`, found {line:?}",
                        i + 1
                    ),
                ));
                continue;
            }
        };
        if value == 0 {
            checks.push(Check::skipped(
                NAME,
                FILE,
                format!("{part}: CRC 0 means no check (Xiaomi's generator skips it)"),
            ));
            continue;
        }
        match image_for(part, map, files) {
            None => checks.push(Check::failed(NAME, FILE, format!("{part}: listed in crclist.txt but no image for it was found in images/: the package is incomplete; re-download it"))),
            Some(f) if f.crc32_value == value => checks.push(Check::ok(NAME, &f.path, format!("{part}: CRC-32 {} matches", py_hex(value)))),
            Some(f) => checks.push(Check::differs(
                NAME,
                &f.path,
                format!("{part}: CRC-32 differs from crclist.txt: the image is damaged; re-download the package"),
                py_hex(value),
                f.crc32.clone(),
            )),
        }
    }
    checks
}

/// Checks `sparsecrclist.txt` against the sparse layouts measured in the pass. This is the
/// hook between package verification and sparse splitting: it only needs each image's
/// [`SparseSummary`] (data CRC and per-split piece CRCs).
pub fn check_sparsecrclist_text(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<(String, Option<SparseSummary>)>,
    split_sizes: &[u64],
) -> Vec<Check> {
    const NAME: &str = "sparsecrclist";
    const FILE: &str = "images/sparsecrclist.txt";
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let new_format = lines
        .peek()
        .is_some_and(|(_, l)| l.trim() == "SPARSECRC-LIST");
    if new_format {
        lines.next();
    }
    let mut checks = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |what: &str| {
            Check::failed(
                NAME,
                FILE,
                format!("line {}: {what}, found {line:?}", i + 1),
            )
        };
        let Some(part) = fields.first().copied() else {
            continue;
        };
        let (expected_crcs, expected_count): (Vec<u32>, usize) = if new_format {
            let Some(count) = fields.get(1).and_then(|c| c.parse::<usize>().ok()) else {
                checks.push(bad("expected `<partition> <pieces> 0x<crc>…`"));
                continue;
            };
            let crcs: Option<Vec<u32>> = fields[2..].iter().map(|v| parse_hex(v)).collect();
            match crcs {
                Some(c) if c.len() == count => (c, count),
                _ => {
                    checks.push(bad(&format!("expected {count} CRC values")));
                    continue;
                }
            }
        } else {
            match (
                fields.len(),
                fields.get(1).and_then(|v| parse_hex(v)),
                fields.get(2).and_then(|c| c.parse::<usize>().ok()),
            ) {
                (3, Some(crc), Some(count)) => (vec![crc], count),
                _ => {
                    checks.push(bad("expected `<partition> 0x<crc> <pieces>`"));
                    continue;
                }
            }
        };
        let Some((path, summary)) = lookup(part) else {
            checks.push(Check::failed(NAME, FILE, format!("{part}: listed in sparsecrclist.txt but no image for it was found in images/: re-download the package")));
            continue;
        };
        let Some(summary) = summary else {
            checks.push(Check::failed(
                NAME,
                &path,
                format!("{part}: listed in sparsecrclist.txt but not a valid sparse image"),
            ));
            continue;
        };
        let fmt_list = |v: &[u32]| v.iter().map(|&c| py_hex(c)).collect::<Vec<_>>().join(" ");
        if !new_format {
            if summary.data_crc != expected_crcs[0] {
                checks.push(Check::differs(NAME, &path, format!("{part}: CRC of the sparse data differs: the image is damaged; re-download the package"), py_hex(expected_crcs[0]), py_hex(summary.data_crc)));
                continue;
            }
            let counts: Vec<(u64, usize)> = summary
                .splits
                .iter()
                .filter_map(|s| {
                    s.pieces
                        .as_ref()
                        .ok()
                        .map(|p| (s.max_download_size, p.len()))
                })
                .collect();
            match counts.iter().find(|(_, n)| *n == expected_count) {
                Some((size, _)) => checks.push(Check::ok(NAME, &path, format!("{part}: data CRC {} matches; {expected_count} pieces at max-download-size {}", py_hex(summary.data_crc), size_text(*size)))),
                None => checks.push(Check::differs(
                    NAME,
                    &path,
                    format!("{part}: data CRC matches but the piece count differs for every split size tried ({}): the package was made for another max-download-size", sizes_text(split_sizes)),
                    expected_count.to_string(),
                    counts.iter().map(|(s, n)| format!("{n}@{}", size_text(*s))).collect::<Vec<_>>().join(" "),
                )),
            }
            continue;
        }
        let matching = summary
            .splits
            .iter()
            .find(|s| s.pieces.as_ref().is_ok_and(|p| *p == expected_crcs));
        if let Some(s) = matching {
            checks.push(Check::ok(
                NAME,
                &path,
                format!(
                    "{part}: {expected_count} piece CRCs match at max-download-size {}",
                    size_text(s.max_download_size)
                ),
            ));
            continue;
        }
        // Show the closest candidate: same piece count if any, else the first split size.
        let shown = summary
            .splits
            .iter()
            .find(|s| s.pieces.as_ref().is_ok_and(|p| p.len() == expected_count))
            .or_else(|| summary.splits.first());
        let actual = match shown.map(|s| (s.max_download_size, &s.pieces)) {
            Some((size, Ok(p))) => format!("{} (at {})", fmt_list(p), size_text(size)),
            Some((size, Err(e))) => format!("(at {}: {e})", size_text(size)),
            None => "(no split sizes)".to_string(),
        };
        checks.push(Check::differs(
            NAME,
            &path,
            format!("{part}: per-piece CRCs differ for every split size tried ({}): the image is damaged, or the list was made for another max-download-size (pass it as an extra split size)", sizes_text(split_sizes)),
            fmt_list(&expected_crcs),
            actual,
        ));
    }
    if checks.is_empty() {
        checks.push(Check::skipped(
            NAME,
            FILE,
            "sparsecrclist.txt lists no images",
        ));
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

fn sizes_text(sizes: &[u64]) -> String {
    sizes
        .iter()
        .map(|&s| size_text(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_sparsecrclist(
    package: &Package,
    files: &HashMap<&str, &FileInfo>,
    map: &HashMap<String, String>,
    split_sizes: &[u64],
) -> Vec<Check> {
    const FILE: &str = "images/sparsecrclist.txt";
    let Some(raw) = package.small_file(FILE) else {
        return vec![Check::skipped(
            "sparsecrclist",
            FILE,
            "no sparsecrclist.txt in this package",
        )];
    };
    let lookup = |part: &str| {
        image_for(part, map, files).map(|f| (f.path.clone(), f.sparse_summary.clone()))
    };
    check_sparsecrclist_text(&String::from_utf8_lossy(raw), &lookup, split_sizes)
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
