//! Records of archives that mi-flash has read and checked completely, so that flashing the
//! same file again (the next phone of a batch, a retry, a CI job) does not decompress it twice.
//!
//! Verifying a `.tgz` means decompressing all of it (about 5 s per GiB) before the first
//! write. What that pass measures — the listing, the small files, each file's size, CRC-32,
//! MD5 and sparse layout, the per-piece CRCs — depends only on the archive's bytes and on the
//! piece size the CRCs were computed for. A record keeps these measurements under the
//! archive's SHA-256 and size. When the same archive is verified again, mi-flash hashes the
//! file (one read, no decompression) and, if a record matches, re-runs every *check* on the
//! recorded measurements with today's options and manifest. The flash pass then compares each
//! image it reads with the recorded size and CRC-32, as it does after a full pass.
//!
//! Store layout: one JSON file per archive and piece size,
//! `DIR/<size>-<sha256>-<piece size>.json`, where DIR is `--cache-dir`, `MI_FLASH_CACHE_DIR`
//! or `<user cache dir>/mi-flash/verified`. A record is written only after a pass whose checks
//! all passed, and only by this mi-flash version (other versions' records are ignored). At
//! most [`KEEP`] records are kept, the least recently used are removed. A record that cannot
//! be read or does not match is ignored: the archive is then verified completely.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::hashing::BackgroundHash;
use super::package::{hex, ArchiveDigest, Entry, EntryKind, Package, PackageError, SourceKind};
use super::verify::FileInfo;
use crate::sparse::{Chunk, ChunkKind, ImageFormat, ImageScan, PieceCrcs, SparseHeader, SparseLayout};

/// Records kept; older ones (by last use) are removed when a new one is written.
pub const KEEP: usize = 16;
/// Version of the record format (with the mi-flash version, both must match). Raised when
/// what a verification measures or checks changes (3: CRC32 chunks of sparse images checked).
const FORMAT: u32 = 3;

/// The default folder: `<user cache dir>/mi-flash/verified`.
pub fn default_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("mi-flash").join("verified")
}

/// A record found for an archive: what the earlier pass measured.
pub(crate) struct Found {
    pub package: Package,
    pub files: Vec<FileInfo>,
    /// When the complete pass ran (seconds since 1970, UTC).
    pub verified_at: u64,
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    format: u32,
    mi_flash: String,
    verified_at: u64,
    size: u64,
    sha256: String,
    md5: String,
    kind: String,
    root: String,
    split_size: u64,
    /// `(path, size, is_dir)` in archive order.
    entries: Vec<(String, u64, bool)>,
    /// Small files, hex.
    small: BTreeMap<String, String>,
    files: Vec<FileRecord>,
}

#[derive(Serialize, Deserialize)]
struct FileRecord {
    path: String,
    size: u64,
    crc32: u32,
    md5: Option<String>,
    sparse_error: Option<String>,
    scan: Option<ScanRecord>,
    /// CRC-32 of each `IMAGE_WINDOW` bytes.
    windows: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct ScanRecord {
    /// The sparse header's fields in file order, `None` for a raw image.
    header: Option<[u32; 8]>,
    blk_sz: u32,
    total_blks: u32,
    source_len: u64,
    /// `[kind, value, start_block, blocks, data_offset]`; kind 0 RAW, 1 FILL, 2 DONT_CARE,
    /// 3 CRC32.
    chunks: Vec<[u64; 5]>,
    file_crc: Option<u32>,
    data_crc: Option<u32>,
    piece_crcs: Option<(u64, Vec<u32>)>,
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Tgz => "tgz",
        SourceKind::Tar => "tar",
        SourceKind::Zip => "zip",
        SourceKind::Dir => "folder",
    }
}

/// Records are kept for single-file archives only: a folder is checked as fast as it can be
/// hashed, and its files can change one by one.
pub(crate) fn applies_to(path: &Path) -> bool {
    path.is_file()
}

fn file_name(size: u64, sha256: &str, split_size: u64) -> String {
    format!("{size}-{sha256}-{split_size}.json")
}

/// Looks for a record of `path` measured for `split_size`. Hashes the file only when a record
/// of its size exists. `Ok(None)`: no usable record (verify completely).
pub(crate) fn find(dir: &Path, path: &Path, split_size: u64) -> io::Result<Option<Found>> {
    let size = fs::metadata(path)?.len();
    let prefix = format!("{size}-");
    let suffix = format!("-{split_size}.json");
    let candidates: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if candidates.is_empty() {
        return Ok(None);
    }
    let sha256 = sha256_of(path)?;
    let name = file_name(size, &sha256, split_size);
    if !candidates.contains(&name) {
        return Ok(None);
    }
    let record_path = dir.join(&name);
    let text = fs::read(&record_path)?;
    let record: Record = serde_json::from_slice(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", record_path.display())))?;
    let kind = super::package::detect_kind(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if record.format != FORMAT
        || record.mi_flash != env!("CARGO_PKG_VERSION")
        || record.size != size
        || record.sha256 != sha256
        || record.split_size != split_size
        || record.kind != kind_name(kind)
    {
        return Ok(None);
    }
    let found = rebuild(path, kind, record)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", record_path.display())))?;
    // Last use, for the pruning.
    if let Ok(f) = File::options().append(true).open(&record_path) {
        let _ = f.set_modified(SystemTime::now());
    }
    Ok(Some(found))
}

/// The record of a complete pass, taken before the checks consume the measurements; `None`
/// when the package has no archive digest (a folder).
pub(crate) fn prepare(package: &Package, files: &[FileInfo], split_size: u64) -> Option<Record> {
    let digest = package.digest()?;
    Some(Record {
        format: FORMAT,
        mi_flash: env!("CARGO_PKG_VERSION").to_string(),
        verified_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs(),
        size: digest.size,
        sha256: digest.sha256.clone(),
        md5: digest.md5.clone(),
        kind: kind_name(package.kind()).to_string(),
        root: package.root().to_string(),
        split_size,
        entries: package.entries().iter().map(|e| (e.path.clone(), e.size, e.kind == EntryKind::Dir)).collect(),
        small: package.small_files().iter().map(|(k, v)| (k.clone(), hex(v))).collect(),
        files: files.iter().map(file_record).collect(),
    })
}

/// Writes a record (atomically) and removes old records beyond [`KEEP`].
pub(crate) fn write(dir: &Path, record: Record) -> io::Result<PathBuf> {
    create_private_dir(dir)?;
    let name = file_name(record.size, &record.sha256, record.split_size);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, &record)?;
    tmp.flush()?;
    let path = dir.join(name);
    tmp.persist(&path).map_err(|e| e.error)?;
    prune(dir, KEEP);
    Ok(path)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Removes the least recently used records beyond `keep` (errors are ignored: it is a cache).
fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut records: Vec<(SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if records.len() <= keep {
        return;
    }
    records.sort();
    let excess = records.len() - keep;
    for (_, p) in records.into_iter().take(excess) {
        let _ = fs::remove_file(p);
    }
}

/// SHA-256 of a file, lowercase hex, hashed on a worker thread while this one reads (the
/// hashing is the slower half: about 1.8 GB/s with SHA-NI).
pub(crate) fn sha256_of(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut hash = BackgroundHash::<Sha256>::new("mi-flash-sha256");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match crate::sparse::read_full_from(&mut f, &mut buf)? {
            0 => break,
            n => hash.update(&buf[..n]),
        }
    }
    let sha = hash.finish().ok_or_else(|| io::Error::other("the SHA-256 could not be computed (hashing thread failed)"))?;
    Ok(hex(&sha.finalize()))
}

fn file_record(f: &FileInfo) -> FileRecord {
    FileRecord {
        path: f.path.clone(),
        size: f.size,
        crc32: f.crc32_value(),
        md5: f.md5.clone(),
        sparse_error: f.sparse_error.clone(),
        scan: f.scan().map(scan_record),
        windows: f.windows().to_vec(),
    }
}

fn scan_record(s: &ImageScan) -> ScanRecord {
    let l = &s.layout;
    let header = match &l.format {
        ImageFormat::Sparse(h) => Some([
            h.major_version as u32,
            h.minor_version as u32,
            h.file_hdr_sz as u32,
            h.chunk_hdr_sz as u32,
            h.blk_sz,
            h.total_blks,
            h.total_chunks,
            h.image_checksum,
        ]),
        ImageFormat::Raw => None,
    };
    let chunks = l
        .chunks
        .iter()
        .map(|c| {
            let (kind, value) = match c.kind {
                ChunkKind::Raw => (0, 0),
                ChunkKind::Fill(v) => (1, v as u64),
                ChunkKind::DontCare => (2, 0),
                ChunkKind::Crc32(v) => (3, v as u64),
            };
            [kind, value, c.start_block as u64, c.blocks as u64, c.data_offset]
        })
        .collect();
    ScanRecord {
        header,
        blk_sz: l.blk_sz,
        total_blks: l.total_blks,
        source_len: l.source_len,
        chunks,
        file_crc: s.file_crc,
        data_crc: s.data_crc,
        piece_crcs: s.piece_crcs.as_ref().map(|p| (p.max_download_size, p.crcs.clone())),
    }
}

fn narrow<T: TryFrom<u64>>(v: u64, what: &str) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
}

fn scan_from(r: ScanRecord) -> Result<ImageScan, String> {
    let format = match r.header {
        Some(h) => ImageFormat::Sparse(SparseHeader {
            major_version: narrow(h[0] as u64, "sparse major version")?,
            minor_version: narrow(h[1] as u64, "sparse minor version")?,
            file_hdr_sz: narrow(h[2] as u64, "sparse header size")?,
            chunk_hdr_sz: narrow(h[3] as u64, "chunk header size")?,
            blk_sz: h[4],
            total_blks: h[5],
            total_chunks: h[6],
            image_checksum: h[7],
        }),
        None => ImageFormat::Raw,
    };
    let mut chunks = Vec::with_capacity(r.chunks.len());
    for [kind, value, start, blocks, data_offset] in r.chunks {
        let value: u32 = narrow(value, "chunk value")?;
        let kind = match kind {
            0 => ChunkKind::Raw,
            1 => ChunkKind::Fill(value),
            2 => ChunkKind::DontCare,
            3 => ChunkKind::Crc32(value),
            k => return Err(format!("unknown chunk kind {k}")),
        };
        chunks.push(Chunk { kind, start_block: narrow(start, "chunk start")?, blocks: narrow(blocks, "chunk length")?, data_offset });
    }
    Ok(ImageScan {
        layout: SparseLayout { format, blk_sz: r.blk_sz, total_blks: r.total_blks, source_len: r.source_len, chunks },
        file_crc: r.file_crc,
        data_crc: r.data_crc,
        piece_crcs: r.piece_crcs.map(|(max_download_size, crcs)| PieceCrcs { max_download_size, crcs }),
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("odd-length hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16).map_err(|_| "bad hex".to_string()))
        .collect()
}

fn rebuild(path: &Path, kind: SourceKind, r: Record) -> Result<Found, String> {
    let entries = r
        .entries
        .into_iter()
        .map(|(path, size, dir)| Entry { path, size, kind: if dir { EntryKind::Dir } else { EntryKind::File } })
        .collect();
    let mut small = BTreeMap::new();
    for (k, v) in r.small {
        let bytes = unhex(&v).map_err(|e| format!("small file {k}: {e}"))?;
        small.insert(k, bytes);
    }
    let digest = ArchiveDigest { size: r.size, md5: r.md5, sha256: r.sha256.clone() };
    let package = Package::from_record(path, kind, r.root, entries, small, digest).map_err(|e: PackageError| e.to_string())?;
    let mut files = Vec::with_capacity(r.files.len());
    for f in r.files {
        let windows = f.size.div_ceil(super::verify::IMAGE_WINDOW);
        if f.windows.len() as u64 != windows {
            return Err(format!("{}: {} window CRCs for {} bytes", f.path, f.windows.len(), f.size));
        }
        let scan = f.scan.map(scan_from).transpose().map_err(|e| format!("{}: {e}", f.path))?;
        files.push(FileInfo::from_measurements(f.path, f.size, f.crc32, f.md5, f.sparse_error, scan, f.windows));
    }
    Ok(Found { package, files, verified_at: r.verified_at, sha256: r.sha256 })
}

/// `2026-11-23 16:40 UTC` for seconds since 1970.
pub(crate) fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_451_400), "2026-11-23 16:30 UTC");
    }

    #[test]
    fn file_sha256_across_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 5, 4 << 20, (8 << 20) + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            fs::write(&p, &data).unwrap();
            assert_eq!(sha256_of(&p).unwrap(), hex(&Sha256::digest(&data)), "{len} bytes");
        }
        assert!(sha256_of(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn prune_keeps_the_most_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let base = SystemTime::now() - Duration::from_secs(1000);
        for i in 0..5u64 {
            let p = dir.path().join(format!("{i}-x-1.json"));
            fs::write(&p, "{}").unwrap();
            File::options().append(true).open(&p).unwrap().set_modified(base + Duration::from_secs(i * 10)).unwrap();
        }
        fs::write(dir.path().join("other.txt"), "kept").unwrap();
        prune(dir.path(), 3);
        let mut left: Vec<String> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["2-x-1.json", "3-x-1.json", "4-x-1.json", "other.txt"]);
    }
}
