//! Benchmark of sparse piece production against plain reading of the same file.
//!
//! Generates a sparse image on disk (default: 2 GiB expanded, half of it RAW data in 8 MiB
//! chunks, a quarter FILL, a quarter DONT_CARE), then measures side by side, several rounds:
//!
//! * `read`: reading the file from disk to nowhere (1 MiB buffer);
//! * `pieces (seekable)`: layout scan that seeks over RAW data + split + every piece written to
//!   a sink, as `mi-flash flash` does with a file;
//! * `pieces (forward-only)`: layout scan reading everything + pieces, from plain `Read`s;
//! * `crc scan`: the layout scan with whole-file, data and per-piece CRCs (`mi-flash crc`).
//!
//! and reports the time ratios and the peak RSS (VmHWM). Run with
//! `cargo run --release --example sparse_bench -- [--expanded-gib N] [--max-download-size BYTES]
//! [--rounds N] [--dir DIR] [--cold]`. With `--cold` the file is dropped from the page cache
//! before every measurement, so `read` measures the disk.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mi_flash::sparse::{
    scan, scan_seekable, split, PieceWriter, ScanOptions, SparseHeader, SparseLayout, SparsePiece,
    CHUNK_TYPE_DONT_CARE, CHUNK_TYPE_FILL, CHUNK_TYPE_RAW,
};

const MIB: u64 = 1 << 20;
const BLK: u64 = 4096;

struct Args {
    expanded_gib: u64,
    max_download_size: u64,
    rounds: usize,
    dir: Option<PathBuf>,
    /// Evict the file from the page cache before each measurement (`dd iflag=nocache`).
    cold: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        expanded_gib: 2,
        max_download_size: 512 * MIB,
        rounds: 3,
        dir: None,
        cold: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--expanded-gib" => {
                args.expanded_gib = value()?
                    .parse()
                    .map_err(|e| format!("--expanded-gib: {e}"))?
            }
            "--max-download-size" => {
                args.max_download_size = value()?
                    .parse()
                    .map_err(|e| format!("--max-download-size: {e}"))?
            }
            "--rounds" => args.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--cold" => args.cold = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.expanded_gib == 0 || args.rounds == 0 {
        return Err("--expanded-gib and --rounds must be at least 1".into());
    }
    Ok(args)
}

fn chunk_header(ty: u16, blocks: u64, total: u64) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&ty.to_le_bytes());
    h[4..8].copy_from_slice(&(blocks as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(total as u32).to_le_bytes());
    h
}

/// Writes the benchmark image: per 64 MiB of expanded image, 4 RAW chunks of 8 MiB, one
/// 16 MiB FILL chunk and 16 MiB of DONT_CARE. Returns (file length, RAW bytes).
fn generate(path: &Path, expanded_gib: u64) -> io::Result<(u64, u64)> {
    let regions = expanded_gib * 16;
    let total_blks = regions * 64 * MIB / BLK;
    let chunks = regions * 6;
    let mut out = BufWriter::with_capacity(MIB as usize, File::create(path)?);
    out.write_all(&SparseHeader::new(BLK as u32, total_blks as u32, chunks as u32).encode())?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = vec![0u8; (8 * MIB) as usize];
    let mut raw = 0;
    for region in 0..regions {
        for _ in 0..4 {
            for word in data.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            out.write_all(&chunk_header(CHUNK_TYPE_RAW, 8 * MIB / BLK, 12 + 8 * MIB))?;
            out.write_all(&data)?;
            raw += 8 * MIB;
        }
        out.write_all(&chunk_header(CHUNK_TYPE_FILL, 16 * MIB / BLK, 16))?;
        out.write_all(&(region as u32).to_le_bytes())?;
        out.write_all(&chunk_header(CHUNK_TYPE_DONT_CARE, 16 * MIB / BLK, 12))?;
    }
    out.flush()?;
    Ok((out.get_ref().metadata()?.len(), raw))
}

fn read_to_nowhere(path: &Path) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn pieces_seekable(path: &Path, mds: u64) -> Result<(u64, usize), Box<dyn std::error::Error>> {
    let layout = scan_seekable(File::open(path)?, &ScanOptions::default())?.layout;
    let pieces = split(&layout, mds.min(1 << 30))?;
    let mut writer = PieceWriter::seekable(File::open(path)?, &layout)?;
    let mut total = 0;
    for p in &pieces {
        total += writer.write_piece(p, &mut io::sink())?;
    }
    Ok((total, pieces.len()))
}

/// Only the piece production, the layout and split already known (as when a flasher has
/// planned the downloads before sending).
fn pieces_only(
    path: &Path,
    layout: &SparseLayout,
    pieces: &[SparsePiece],
) -> Result<(u64, usize), Box<dyn std::error::Error>> {
    let mut writer = PieceWriter::seekable(File::open(path)?, layout)?;
    let mut total = 0;
    for p in pieces {
        total += writer.write_piece(p, &mut io::sink())?;
    }
    Ok((total, pieces.len()))
}

fn pieces_forward(path: &Path, mds: u64) -> Result<(u64, usize), Box<dyn std::error::Error>> {
    let layout = scan(File::open(path)?, &ScanOptions::default())?.layout;
    let pieces = split(&layout, mds.min(1 << 30))?;
    let mut writer = PieceWriter::new(File::open(path)?, &layout)?;
    let mut total = 0;
    for p in &pieces {
        total += writer.write_piece(p, &mut io::sink())?;
    }
    Ok((total, pieces.len()))
}

fn crc_scan(path: &Path, mds: u64) -> Result<(u64, usize), Box<dyn std::error::Error>> {
    let opts = ScanOptions {
        file_crc: true,
        data_crc: true,
        piece_crcs_for: Some(mds),
        check_crc_chunks: false,
    };
    let s = scan(File::open(path)?, &opts)?;
    Ok((
        s.layout.source_len,
        s.piece_crcs.map_or(0, |p| p.crcs.len()),
    ))
}

/// Drops the file's pages from the page cache (coreutils `dd` calls posix_fadvise DONTNEED).
fn evict(path: &Path) -> io::Result<()> {
    let status = std::process::Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()?;
    if !status.success() {
        return Err(io::Error::other("dd iflag=nocache failed"));
    }
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\nusage: sparse_bench [--expanded-gib N] [--max-download-size BYTES] [--rounds N] [--dir DIR] [--cold]"))?;
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let path = tmp.path().join("bench.simg");
    let started = Instant::now();
    let (file_len, raw) = generate(&path, args.expanded_gib)?;
    println!(
        "image: {} GiB expanded, file {:.1} MiB ({:.1} MiB RAW data), generated in {:.1?}; max-download-size {} MiB",
        args.expanded_gib,
        file_len as f64 / MIB as f64,
        raw as f64 / MIB as f64,
        started.elapsed(),
        args.max_download_size / MIB
    );
    let layout = scan_seekable(File::open(&path)?, &ScanOptions::default())?.layout;
    let pieces = split(&layout, args.max_download_size.min(1 << 30))?;
    let names = [
        "read file to nowhere",
        "pieces only (layout known)",
        "layout + pieces (seekable)",
        "layout + pieces (forward-only)",
        "crc scan (file, data, per piece)",
    ];
    let mut best = [Duration::MAX; 5];
    for round in 0..args.rounds {
        for (i, name) in names.iter().enumerate() {
            if args.cold {
                evict(&path)?;
            }
            let mds = args.max_download_size;
            let t = Instant::now();
            let (bytes, count) = match i {
                0 => (read_to_nowhere(&path)?, 0),
                1 => pieces_only(&path, &layout, &pieces)?,
                2 => pieces_seekable(&path, mds)?,
                3 => pieces_forward(&path, mds)?,
                _ => crc_scan(&path, mds)?,
            };
            let dt = t.elapsed();
            best[i] = best[i].min(dt);
            println!(
                "round {round} {name:<34} {dt:>10.2?} {:>8.0} MiB/s of file  ({bytes} bytes, {count} pieces)",
                file_len as f64 / MIB as f64 / dt.as_secs_f64()
            );
        }
    }
    println!(
        "best of {} rounds{}:",
        args.rounds,
        if args.cold {
            ", cold page cache"
        } else {
            ", warm page cache"
        }
    );
    for (i, name) in names.iter().enumerate() {
        println!(
            "  {name:<34} {:>10.2?}  ratio to read {:.2}",
            best[i],
            best[i].as_secs_f64() / best[0].as_secs_f64()
        );
    }
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: /proc/self/status not available"),
    }
    Ok(())
}
