//! The split must give the pieces Debian's fastboot 29.0.6 sends, byte for byte. fastboot does
//! the split with the libsparse it links (`libsparse.so.0`, Debian package android-libsparse
//! 29.0.6); these tests drive that same library through Python's ctypes
//! (`sparse_file_import_auto` + `sparse_file_resparse` + `sparse_file_write`, fastboot's own
//! calls) and compare every piece with ours. They also round-trip the pieces through
//! `simg2img` and our `decode_into`, and compare our whole-image encoding with `img2simg`.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use mi_flash::sparse::{
    decode_into, scan, single_piece, split, validate, ChunkKind, ImageScan, PieceWriter,
    ScanOptions, SparseLayout,
};

const MIB: usize = 1 << 20;

fn required(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} not installed, and CI=true requires it");
    }
    eprintln!("skipped: {what} not installed");
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn libsparse() -> Option<PathBuf> {
    let dir = fs::read_dir("/usr/lib").ok()?;
    dir.flatten()
        .map(|e| e.path().join("android/libsparse.so.0"))
        .find(|p| p.is_file())
}

/// Tools needed: `(python3 with ctypes, libsparse.so.0, simg2img, img2simg)`.
fn tools() -> Option<(PathBuf, PathBuf, PathBuf, PathBuf)> {
    let python = Path::new("/usr/bin/python3");
    let found = (
        python.is_file().then(|| python.to_path_buf()),
        libsparse(),
        tool("simg2img"),
        tool("img2simg"),
    );
    match found {
        (Some(p), Some(l), Some(s), Some(i)) => Some((p, l, s, i)),
        (p, l, s, _) => {
            let missing = if p.is_none() {
                "python3"
            } else if l.is_none() {
                "libsparse.so.0 (android-libsparse)"
            } else if s.is_none() {
                "simg2img"
            } else {
                "img2simg"
            };
            required(missing);
            None
        }
    }
}

const ORACLE: &str = r#"
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
lib.sparse_file_import_auto.restype = ctypes.c_void_p
lib.sparse_file_import_auto.argtypes = [ctypes.c_int, ctypes.c_bool, ctypes.c_bool]
lib.sparse_file_resparse.restype = ctypes.c_int
lib.sparse_file_resparse.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
lib.sparse_file_write.restype = ctypes.c_int
lib.sparse_file_write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_bool, ctypes.c_bool, ctypes.c_bool]
src, max_len, outdir = sys.argv[2], int(sys.argv[3]), sys.argv[4]
fd = os.open(src, os.O_RDONLY)
s = lib.sparse_file_import_auto(fd, False, False)
if not s:
    sys.exit("libsparse could not read " + src)
n = lib.sparse_file_resparse(s, max_len, None, 0)
pieces = (ctypes.c_void_p * n)()
if lib.sparse_file_resparse(s, max_len, pieces, n) != n:
    sys.exit("resparse failed")
for i in range(n):
    out = os.open(os.path.join(outdir, "piece%03d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    if lib.sparse_file_write(pieces[i], out, False, True, False) != 0:
        sys.exit("write failed")
    os.close(out)
"#;

struct Tools {
    python: PathBuf,
    libsparse: PathBuf,
    simg2img: PathBuf,
    img2simg: PathBuf,
}

impl Tools {
    fn get() -> Option<Tools> {
        tools().map(|(python, libsparse, simg2img, img2simg)| Tools {
            python,
            libsparse,
            simg2img,
            img2simg,
        })
    }

    /// The pieces libsparse (as fastboot uses it) makes of `input` for `max_len`.
    fn libsparse_pieces(&self, input: &Path, max_len: u64, dir: &Path) -> Vec<Vec<u8>> {
        // A fresh folder per call: pieces of an earlier image must not mix into this one.
        let out = dir.join(format!("oracle-{max_len}"));
        if out.exists() {
            fs::remove_dir_all(&out).unwrap();
        }
        fs::create_dir_all(&out).unwrap();
        let status = Command::new(&self.python)
            .arg("-c")
            .arg(ORACLE)
            .arg(&self.libsparse)
            .arg(input)
            .arg(max_len.to_string())
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "libsparse oracle failed");
        let mut names: Vec<PathBuf> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names.iter().map(|p| fs::read(p).unwrap()).collect()
    }

    fn simg2img(&self, inputs: &[PathBuf], out: &Path) -> Vec<u8> {
        let status = Command::new(&self.simg2img)
            .args(inputs)
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success(), "simg2img failed on {inputs:?}");
        fs::read(out).unwrap()
    }

    fn img2simg(&self, input: &Path, out: &Path) -> Vec<u8> {
        let status = Command::new(&self.img2simg)
            .arg(input)
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success(), "img2simg failed");
        fs::read(out).unwrap()
    }
}

/// Deterministic bytes in which no 4096-byte block is uniform.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn pattern(len: usize, word: u32) -> Vec<u8> {
    word.to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// CRC-32 over the RAW data and expanded FILL data of a sparse file, DONT_CARE skipped.
fn data_crc(sparse: &[u8]) -> u32 {
    let layout = validate(sparse).unwrap();
    let mut h = crc32fast::Hasher::new();
    for c in &layout.chunks {
        let len = c.blocks as usize * layout.blk_sz as usize;
        match c.kind {
            ChunkKind::Raw => {
                h.update(&sparse[c.data_offset as usize..c.data_offset as usize + len])
            }
            ChunkKind::Fill(v) => h.update(&pattern(len, v)),
            _ => {}
        }
    }
    h.finalize()
}

fn scan_file(path: &Path, opts: &ScanOptions) -> ImageScan {
    scan(fs::File::open(path).unwrap(), opts).unwrap()
}

/// Splits `input` with every limit, compares with libsparse, and round-trips the pieces.
fn check(t: &Tools, dir: &Path, name: &str, input: &[u8], limits: &[u64]) {
    let path = dir.join(format!("{name}.img"));
    fs::write(&path, input).unwrap();
    let expanded = t.simg2img_or_raw(input, &path, dir);
    // libsparse mis-splits unaligned raw images (§9.3); the reference is the padded image.
    let oracle_path = if expanded.len() != input.len() && !mi_flash::sparse::is_sparse(input) {
        let padded = dir.join(format!("{name}-padded.img"));
        fs::write(&padded, &expanded).unwrap();
        padded
    } else {
        path.clone()
    };
    let layout = SparseLayout::read(fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(layout.expanded_len(), expanded.len() as u64, "{name}");
    for &limit in limits {
        let pieces = split(&layout, limit).unwrap();
        let reference = t.libsparse_pieces(&oracle_path, limit, dir);
        assert_eq!(
            pieces.len(),
            reference.len(),
            "{name} limit {limit:#x}: piece count"
        );

        // Forward-only production, in order, from one reader.
        let file = fs::File::open(&path).unwrap();
        let mut writer = PieceWriter::new(file, &layout).unwrap();
        let mut ours = Vec::new();
        for (piece, want) in pieces.iter().zip(&reference) {
            let mut bytes = Vec::new();
            let n = writer.write_piece(piece, &mut bytes).unwrap();
            assert_eq!(n, bytes.len() as u64);
            assert_eq!(
                piece.encoded_len(),
                want.len() as u64,
                "{name} limit {limit:#x} piece {}",
                piece.index
            );
            assert!(
                bytes == *want,
                "{name} limit {limit:#x}: piece {} differs from libsparse",
                piece.index
            );
            assert!(bytes.len() as u64 <= limit, "{name}: piece over the limit");
            ours.push(bytes);
        }

        // Seekable production in reverse order gives the same bytes.
        let file = fs::File::open(&path).unwrap();
        let mut writer = PieceWriter::seekable(file, &layout).unwrap();
        for piece in pieces.iter().rev() {
            let mut bytes = Vec::new();
            writer.write_piece(piece, &mut bytes).unwrap();
            assert!(
                bytes == ours[piece.index],
                "{name}: seekable piece {} differs",
                piece.index
            );
        }

        // Per-piece CRCs from the single scan pass match the pieces.
        let scanned = scan_file(
            &path,
            &ScanOptions {
                piece_crcs_for: Some(limit),
                data_crc: true,
                file_crc: true,
                check_crc_chunks: false,
            },
        );
        assert_eq!(scanned.layout, layout);
        let crcs = scanned.piece_crcs.unwrap().crcs;
        if input.len() as u64 > limit {
            let want: Vec<u32> = ours.iter().map(|p| data_crc(p)).collect();
            assert_eq!(crcs, want, "{name} limit {limit:#x}: piece CRCs");
        } else {
            assert_eq!(crcs.len(), 1);
        }
        assert_eq!(scanned.file_crc, Some(crc32fast::hash(input)));
        let whole: Vec<u8> = single_piece_bytes(&path, &layout);
        assert_eq!(scanned.data_crc, Some(data_crc(&whole)));

        // simg2img accepts every piece and all of them together rebuild the image.
        let piece_paths: Vec<PathBuf> = ours
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let f = dir.join(format!("{name}-{limit}-{i}.simg"));
                fs::write(&f, p).unwrap();
                f
            })
            .collect();
        let rebuilt = t.simg2img(&piece_paths, &dir.join("rebuilt.img"));
        assert!(
            rebuilt == expanded,
            "{name} limit {limit:#x}: simg2img of the pieces differs"
        );

        // Our decoder, piece after piece into one target, rebuilds it too.
        let mut target = Cursor::new(vec![0u8; expanded.len()]);
        for p in &ours {
            decode_into(&p[..], &mut target).unwrap();
        }
        assert!(
            target.into_inner() == expanded,
            "{name} limit {limit:#x}: decode_into of the pieces differs"
        );
    }
}

fn single_piece_bytes(path: &Path, layout: &SparseLayout) -> Vec<u8> {
    let piece = single_piece(layout).unwrap();
    let mut out = Vec::new();
    PieceWriter::new(fs::File::open(path).unwrap(), layout)
        .unwrap()
        .write_piece(&piece, &mut out)
        .unwrap();
    out
}

impl Tools {
    /// The expanded image: `simg2img` of a sparse input, the zero-padded input if raw.
    fn simg2img_or_raw(&self, input: &[u8], path: &Path, dir: &Path) -> Vec<u8> {
        if mi_flash::sparse::is_sparse(input) {
            self.simg2img(&[path.to_path_buf()], &dir.join("expanded.img"))
        } else {
            let mut v = input.to_vec();
            v.resize(input.len().div_ceil(4096) * 4096, 0);
            v
        }
    }
}

/// 20 MiB random, 10 MiB zeros, 20 MiB random: the example of fastboot-protocol.md §9.2,
/// whose pieces Debian's fastboot sends as 0xfff034, 0xfff05c and 0x802034 bytes.
#[test]
fn raw_50_mib_example_matches_libsparse_and_observed_sizes() {
    let Some(t) = Tools::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut img = noise(20 * MIB, 1);
    img.extend(vec![0u8; 10 * MIB]);
    img.extend(noise(20 * MIB, 2));
    let path = dir.path().join("a.img");
    fs::write(&path, &img).unwrap();
    let sizes: Vec<usize> = t
        .libsparse_pieces(&path, 0x100_0000, dir.path())
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [0xfff034, 0xfff05c, 0x802034]);
    check(
        &t,
        dir.path(),
        "fifty",
        &img,
        &[0x100_0000, 3 * MIB as u64 + 4096 * 5 + 13],
    );
}

/// The 64 MiB img2simg example of fastboot-protocol.md §8, as a raw image and as the sparse
/// file img2simg makes of it (sent by fastboot in 4 pieces with a 4 MiB limit).
#[test]
fn img2simg_example_matches_libsparse() {
    let Some(t) = Tools::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut img = vec![0u8; 64 * MIB];
    img[..8 * MIB].copy_from_slice(&noise(8 * MIB, 3));
    img[20 * MIB..21 * MIB].copy_from_slice(&pattern(MIB, 0xdeadbeef));
    img[40 * MIB..44 * MIB].copy_from_slice(&noise(4 * MIB, 4));
    let raw = dir.path().join("example.img");
    fs::write(&raw, &img).unwrap();
    let simg = t.img2simg(&raw, &dir.path().join("example.simg"));

    // Our encoding of the whole raw image is img2simg's, byte for byte.
    let layout = SparseLayout::read(fs::File::open(&raw).unwrap()).unwrap();
    assert_eq!(single_piece_bytes(&raw, &layout), simg);
    assert_eq!(simg.len(), 0xc0_0074);

    let simg_path = dir.path().join("example.simg");
    let sizes: Vec<u64> = split(
        &SparseLayout::read(fs::File::open(&simg_path).unwrap()).unwrap(),
        0x40_0000,
    )
    .unwrap()
    .iter()
    .map(|p| p.encoded_len())
    .collect();
    assert_eq!(sizes, [4190260, 4190272, 4190332, 12356]);
    check(
        &t,
        dir.path(),
        "example-sparse",
        &simg,
        &[0x40_0000, 2 * MIB as u64 + 77, 5 * MIB as u64],
    );
    check(
        &t,
        dir.path(),
        "example-raw",
        &img,
        &[0x40_0000, 9 * MIB as u64],
    );
}

/// Short runs of every kind next to each other: FILL runs with different and equal values,
/// single RAW blocks, blocks that differ only in their last word.
#[test]
fn mixed_short_runs_match_libsparse() {
    let Some(t) = Tools::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut img = Vec::new();
    for round in 0..300u32 {
        let seed = 10 + round as u64;
        match round % 7 {
            0 => img.extend(noise(4096 * (1 + round as usize % 5), seed)),
            1 => img.extend(pattern(4096 * (1 + round as usize % 3), 0)),
            2 => img.extend(pattern(4096, 0x1111_1111 * (round % 3))),
            3 => {
                let mut b = pattern(4096, 7);
                b[4095] = 8;
                img.extend(b);
            }
            4 => img.extend(pattern(4096 * 2, 0xffff_ffff)),
            5 => img.extend(noise(4096 * 40, seed)),
            _ => img.extend(pattern(4096 * 9, round)),
        }
    }
    let limits = [40 * 1024, 64 * 1024 + 12, 200 * 1024, 1 << 20];
    check(&t, dir.path(), "mixed", &img, &limits);
    let path = dir.path().join("mixed.img");
    let simg = t.img2simg(&path, &dir.path().join("mixed.simg"));
    check(&t, dir.path(), "mixed-sparse", &simg, &limits);
}

/// A sparse file with DONT_CARE holes (also at both ends), consecutive FILL chunks of one
/// value that libsparse merges, RAW chunks back to back, a CRC32 chunk and an 8-byte block size.
#[test]
fn hand_made_sparse_with_holes_matches_libsparse() {
    let Some(t) = Tools::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    for blk_sz in [4096u32, 1024] {
        let bs = blk_sz as usize;
        let mut chunks: Vec<(u16, u32, Vec<u8>)> = Vec::new();
        for i in 0..40u32 {
            let seed = 100 + i as u64;
            let blocks = 1 + (i * 37 % 23);
            let (ty, body) = match i % 6 {
                0 => (0xCAC3u16, vec![]),
                1 | 4 => (0xCAC1, noise(bs * blocks as usize, seed)),
                2 | 3 => (0xCAC2, 5u32.to_le_bytes().to_vec()),
                _ => (0xCAC2, (i % 2).to_le_bytes().to_vec()),
            };
            chunks.push((ty, blocks, body));
            if i == 20 {
                chunks.push((0xCAC4, 0, 0xabcdu32.to_le_bytes().to_vec()));
            }
        }
        chunks.push((0xCAC3, 3, vec![]));
        let total: u32 = chunks.iter().map(|c| c.1).sum();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xed26ff3au32.to_le_bytes());
        bytes.extend_from_slice(&[1, 0, 0, 0, 28, 0, 12, 0]);
        bytes.extend_from_slice(&blk_sz.to_le_bytes());
        bytes.extend_from_slice(&total.to_le_bytes());
        bytes.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        for (ty, blocks, body) in &chunks {
            bytes.extend_from_slice(&ty.to_le_bytes());
            bytes.extend_from_slice(&0u16.to_le_bytes());
            bytes.extend_from_slice(&blocks.to_le_bytes());
            bytes.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(body);
        }
        let limits = [
            8 * bs as u64 + 68,
            40 * bs as u64 + 3,
            100 * bs as u64,
            300 * bs as u64,
        ];
        check(&t, dir.path(), &format!("holes-{blk_sz}"), &bytes, &limits);
    }
}

/// A raw image whose length is not a multiple of 4096 is split as its zero-padded copy would
/// be (fastboot 29.0.6 writes malformed pieces for the unpadded file).
#[test]
fn unaligned_raw_image_is_split_as_if_padded() {
    let Some(t) = Tools::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut img = noise(5_000_000, 9);
    img[1_000_000..2_000_000].fill(0);
    let padded_path = dir.path().join("padded.img");
    let mut padded = img.clone();
    padded.resize(img.len().div_ceil(4096) * 4096, 0);
    fs::write(&padded_path, &padded).unwrap();
    let path = dir.path().join("unaligned.img");
    fs::write(&path, &img).unwrap();
    let layout = SparseLayout::read(fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(layout.source_len, 5_000_000);
    for limit in [0x10_0000u64, 0x30_0000] {
        let reference = t.libsparse_pieces(&padded_path, limit, dir.path());
        let pieces = split(&layout, limit).unwrap();
        let mut writer = PieceWriter::new(fs::File::open(&path).unwrap(), &layout).unwrap();
        assert_eq!(pieces.len(), reference.len());
        for (p, want) in pieces.iter().zip(&reference) {
            let mut bytes = Vec::new();
            writer.write_piece(p, &mut bytes).unwrap();
            assert!(bytes == *want, "limit {limit:#x} piece {}", p.index);
        }
    }
    check(&t, dir.path(), "unaligned", &img, &[0x10_0000]);
}

/// A RAW chunk behind a hole that fits the remaining budget only without its DONT_CARE header:
/// libsparse moves it whole, ends the piece, and then sends one more piece with no data.
#[test]
fn uncut_chunk_and_trailing_empty_piece_match_libsparse() {
    let Some(t) = Tools::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let max = 41040 + 54 * 4096 + 5;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0xed26ff3au32.to_le_bytes());
    bytes.extend_from_slice(&[1, 0, 0, 0, 28, 0, 12, 0]);
    for v in [4096u32, 10 + 1 + 54, 3, 0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for (ty, blocks, body) in [
        (0xCAC1u16, 10u32, noise(10 * 4096, 1)),
        (0xCAC3, 1, vec![]),
        (0xCAC1, 54, noise(54 * 4096, 2)),
    ] {
        bytes.extend_from_slice(&ty.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&blocks.to_le_bytes());
        bytes.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
    }
    let path = dir.path().join("edge.img");
    fs::write(&path, &bytes).unwrap();
    let reference = t.libsparse_pieces(&path, max, dir.path());
    assert_eq!(reference.len(), 2);
    assert_eq!(reference[1].len(), 40);
    check(&t, dir.path(), "edge", &bytes, &[max]);
}
