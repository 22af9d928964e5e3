//! One forward pass over an image that yields its [`SparseLayout`] and, on request, the CRC-32
//! values Xiaomi's CRC lists hold: of the whole file (`crclist.txt`), of all RAW and expanded
//! FILL data (old `sparsecrclist.txt`), and of each piece of the split fastboot makes for a
//! given `max-download-size` (new `sparsecrclist.txt`). No image data is kept.
//!
//! Raw images are cut into 4096-byte blocks as libsparse's `sparse_file_read_normal` does: a
//! block whose u32 words are all equal is FILL with that value, any other block RAW; adjacent
//! RAW blocks form one run, adjacent FILL blocks with one value form one run. A last partial
//! block is zero-padded first (fastboot 29.0.6 would produce malformed pieces for such a file;
//! padding gives the pieces fastboot sends for the padded image).

use std::io::{Read, Seek, SeekFrom};

use crc32fast::Hasher;

use super::error::SparseError;
use super::format::{is_sparse, FILE_HEADER_LEN};
use super::layout::{ImageFormat, SparseLayout};
use super::reader::{Chunk, ChunkKind, ChunkReader};
use super::source::{read_full_from, ForwardSource, SeekSource, Source, COPY_BUF_LEN};
use super::split::{resparse_limit, Backed, PieceData, Placement, Planner, RESPARSE_LIMIT};

/// Block size libsparse uses for raw images.
pub const RAW_BLOCK_SIZE: u32 = 4096;

/// Which CRCs to compute while scanning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// CRC-32 of every byte of the file, as in `crclist.txt`.
    pub file_crc: bool,
    /// CRC-32 of all RAW data and expanded FILL data, DONT_CARE skipped, as in the old
    /// `sparsecrclist.txt` format.
    pub data_crc: bool,
    /// Per-piece CRC-32s for the pieces fastboot sends with this `max-download-size`, as in
    /// the new `sparsecrclist.txt` format.
    pub piece_crcs_for: Option<u64>,
    /// Check each CRC32 chunk against the CRC-32 of the expanded image before it (DONT_CARE
    /// as zeros), as libsparse does when asked to. Bootloaders and AOSP `fastboot` ignore these
    /// chunks; package verification checks them.
    pub check_crc_chunks: bool,
}

impl ScanOptions {
    fn wants_data(&self) -> bool {
        self.file_crc || self.data_crc || self.piece_crcs_for.is_some()
    }
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScan {
    pub layout: SparseLayout,
    pub file_crc: Option<u32>,
    pub data_crc: Option<u32>,
    pub piece_crcs: Option<PieceCrcs>,
}

/// CRC-32 of each piece fastboot sends for one `max-download-size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceCrcs {
    pub max_download_size: u64,
    /// One value per `download:`. When the image is sent unchanged (not larger than the
    /// limit) this is one value: the data CRC of a sparse image, the file CRC of a raw one.
    pub crcs: Vec<u32>,
}

/// Scans an image (sparse or raw, detected from its first bytes) from a forward-only reader.
pub fn scan<R: Read>(src: R, opts: &ScanOptions) -> Result<ImageScan, SparseError> {
    let mut src = src;
    let mut head = [0u8; FILE_HEADER_LEN as usize];
    let got =
        read_full_from(&mut src, &mut head).map_err(|e| SparseError::io("reading the image", e))?;
    let whole = (&head[..got]).chain(src);
    if is_sparse(&head[..got]) {
        scan_sparse(ForwardSource::new(whole), opts)
    } else {
        scan_raw(whole, opts)
    }
}

/// Like [`scan`], for a seekable source such as a file: when no CRC is asked for, the RAW data
/// of a sparse image is skipped by seeking, so only chunk headers are read.
pub fn scan_seekable<R: Read + Seek>(src: R, opts: &ScanOptions) -> Result<ImageScan, SparseError> {
    let mut src = src;
    if opts.wants_data() {
        return scan(src, opts);
    }
    let start = src
        .stream_position()
        .map_err(|e| SparseError::io("reading the image", e))?;
    let mut head = [0u8; 4];
    let got =
        read_full_from(&mut src, &mut head).map_err(|e| SparseError::io("reading the image", e))?;
    src.seek(SeekFrom::Start(start))
        .map_err(|e| SparseError::io("seeking the image", e))?;
    if is_sparse(&head[..got]) {
        let source = SeekSource::new(src).map_err(|e| SparseError::io("seeking the image", e))?;
        scan_sparse(source, opts)
    } else {
        scan_raw(src, opts)
    }
}

impl SparseLayout {
    /// The layout of an image (sparse or raw) read from a forward-only reader.
    pub fn read<R: Read>(src: R) -> Result<Self, SparseError> {
        Ok(scan(src, &ScanOptions::default())?.layout)
    }

    /// The layout of an image read from a seekable source; a sparse image's RAW data is
    /// skipped by seeking.
    pub fn read_seekable<R: Read + Seek>(src: R) -> Result<Self, SparseError> {
        Ok(scan_seekable(src, &ScanOptions::default())?.layout)
    }
}

/// CRC-32 state of the data and of each piece, fed in block order.
struct CrcSink {
    data: Option<Hasher>,
    planner: Option<Planner>,
    pieces: Vec<Hasher>,
    max_download_size: u64,
}

impl CrcSink {
    fn new(opts: &ScanOptions, blk_sz: u32) -> Result<Self, SparseError> {
        let planner = match opts.piece_crcs_for {
            Some(mds) if mds > 0 => Some(Planner::new(blk_sz, mds.min(RESPARSE_LIMIT))?),
            _ => None,
        };
        Ok(CrcSink {
            data: (opts.data_crc || opts.piece_crcs_for.is_some()).then(Hasher::new),
            planner,
            pieces: Vec::new(),
            max_download_size: opts.piece_crcs_for.unwrap_or(0),
        })
    }

    fn piece(&mut self, index: usize) -> &mut Hasher {
        if self.pieces.len() <= index {
            self.pieces.resize_with(index + 1, Hasher::new);
        }
        &mut self.pieces[index]
    }

    fn place(&mut self, b: Backed) -> Vec<Placement> {
        self.planner.as_mut().map(|p| p.push(b)).unwrap_or_default()
    }

    /// A complete FILL run.
    fn fill(&mut self, b: Backed, blk_sz: u32) {
        let PieceData::Fill(value) = b.data else {
            return;
        };
        if let Some(data) = &mut self.data {
            data.combine(&fill_hasher(value, b.blocks * blk_sz as u64));
        }
        for p in self.place(b) {
            let h = fill_hasher(value, p.blocks * blk_sz as u64);
            self.piece(p.piece).combine(&h);
        }
    }

    fn finish(
        self,
        layout: &SparseLayout,
        whole_file: Option<u32>,
    ) -> (Option<u32>, Option<PieceCrcs>) {
        let data = self.data.map(Hasher::finalize);
        let mds = self.max_download_size;
        let pieces = match (self.planner, resparse_limit(layout.source_len, Some(mds))) {
            (Some(planner), Some(_)) => {
                let n = planner.finish(layout.total_blks).len();
                let mut hashers = self.pieces;
                hashers.resize_with(n, Hasher::new);
                Some(hashers.into_iter().map(Hasher::finalize).collect())
            }
            _ if layout.is_sparse() => data.map(|d| vec![d]),
            _ => whole_file.map(|f| vec![f]),
        };
        (
            data,
            pieces.map(|crcs| PieceCrcs {
                max_download_size: mds,
                crcs,
            }),
        )
    }
}

/// The CRC-32 state of `len` bytes of the little-endian `value` repeated (`len % 4 == 0`),
/// built by doubling so that a FILL run of gigabytes costs a few dozen combines.
fn fill_hasher(value: u32, len: u64) -> Hasher {
    let mut out = Hasher::new();
    if len == 0 {
        return out;
    }
    let mut unit = Hasher::new();
    let word: Vec<u8> = value
        .to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    unit.update(&word);
    let mut units = len / 4096;
    let rest = (len % 4096) as usize;
    while units > 0 {
        if units & 1 == 1 {
            out.combine(&unit);
        }
        units >>= 1;
        if units > 0 {
            let copy = unit.clone();
            unit.combine(&copy);
        }
    }
    out.update(&word[..rest]);
    out
}

fn scan_sparse<S: Source>(src: S, opts: &ScanOptions) -> Result<ImageScan, SparseError> {
    // The file CRC needs every byte: count them through a hashing source.
    let mut file = opts.file_crc.then(Hasher::new);
    let src = HashingSource {
        inner: src,
        hasher: file.as_mut(),
        scratch: Vec::new(),
    };
    let mut reader = ChunkReader::new(src)?;
    let header = *reader.header();
    let blk_sz = header.blk_sz;
    let mut sink = CrcSink::new(opts, blk_sz)?;
    let read_data = sink.data.is_some();
    let mut chunks = Vec::with_capacity((header.total_chunks as usize).min(4096));
    let mut pending_fill: Option<Backed> = None;
    let mut buf = Vec::new();
    // What a CRC32 chunk may state, kept when asked for and the data is read anyway. libsparse
    // disagrees with itself: its reader checks the CRC-32 of the expanded image so far
    // (DONT_CARE as zeros), its writer computes one over the RAW data, one block of each FILL
    // and nothing for DONT_CARE. Either is accepted.
    let mut expanded = (read_data && opts.check_crc_chunks).then(Hasher::new);
    let mut as_written = (read_data && opts.check_crc_chunks).then(Hasher::new);
    while let Some(chunk) = reader.next_chunk()? {
        chunks.push(chunk);
        if let (Some(e), Some(w)) = (&mut expanded, &mut as_written) {
            let len = chunk.blocks as u64 * blk_sz as u64;
            match chunk.kind {
                ChunkKind::Fill(v) => {
                    e.combine(&fill_hasher(v, len));
                    w.combine(&fill_hasher(v, blk_sz as u64));
                }
                ChunkKind::DontCare => e.combine(&fill_hasher(0, len)),
                ChunkKind::Crc32(stated) => {
                    let actual = e.clone().finalize();
                    if actual != stated && w.clone().finalize() != stated {
                        return Err(SparseError::BadChunk {
                            index: chunks.len() as u32 - 1,
                            offset: chunk.data_offset.saturating_sub(header.chunk_hdr_sz as u64 + 4),
                            field: "CRC32 value",
                            value: stated as u64,
                            problem: format!("does not match the CRC-32 of the image up to it ({actual:#010x}); the image is damaged"),
                        });
                    }
                }
                ChunkKind::Raw => {} // hashed below, as its data is read
            }
        }
        let backed = match chunk.kind {
            ChunkKind::Raw => Backed {
                data: PieceData::Raw {
                    source_offset: chunk.data_offset,
                },
                start_block: chunk.start_block as u64,
                blocks: chunk.blocks as u64,
            },
            ChunkKind::Fill(v) => Backed {
                data: PieceData::Fill(v),
                start_block: chunk.start_block as u64,
                blocks: chunk.blocks as u64,
            },
            // Zero-block chunks between two FILL runs keep them adjacent, so no flush here.
            ChunkKind::DontCare | ChunkKind::Crc32(_) => continue,
        };
        if let Some(p) = &mut pending_fill {
            if p.absorb(&backed) {
                continue;
            }
        }
        if let Some(p) = pending_fill.take() {
            sink.fill(p, blk_sz);
        }
        if matches!(backed.data, PieceData::Fill(_)) {
            pending_fill = Some(backed);
            continue;
        }
        if !read_data {
            continue;
        }
        let mut placements = sink.place(backed);
        if placements.is_empty() {
            placements.push(Placement {
                piece: usize::MAX,
                from: 0,
                blocks: backed.blocks,
            });
        }
        for p in placements {
            let mut left = p.blocks * blk_sz as u64;
            while left > 0 {
                let n = left.min(COPY_BUF_LEN as u64) as usize;
                if buf.len() < n {
                    buf.resize(n, 0);
                }
                reader.read_data(&mut buf[..n])?;
                // One pass over the bytes, combined into every running CRC that wants them
                // (the whole data, its piece, and the CRC32-chunk checks).
                let mut h = Hasher::new();
                h.update(&buf[..n]);
                for running in [sink.data.as_mut(), expanded.as_mut(), as_written.as_mut()].into_iter().flatten() {
                    running.combine(&h);
                }
                if p.piece != usize::MAX {
                    sink.piece(p.piece).combine(&h);
                }
                left -= n as u64;
            }
        }
    }
    if let Some(p) = pending_fill.take() {
        sink.fill(p, blk_sz);
    }
    let layout = SparseLayout {
        format: ImageFormat::Sparse(header),
        blk_sz,
        total_blks: header.total_blks,
        source_len: reader.position(),
        chunks,
    };
    drop(reader);
    let file_crc = file.map(Hasher::finalize);
    let (data_crc, piece_crcs) = sink.finish(&layout, file_crc);
    Ok(ImageScan {
        layout,
        file_crc,
        data_crc: data_crc.filter(|_| opts.data_crc),
        piece_crcs,
    })
}

/// Counts every byte that passes through into a hasher (skips are read, not seeked).
struct HashingSource<'h, S> {
    inner: S,
    hasher: Option<&'h mut Hasher>,
    scratch: Vec<u8>,
}

impl<S: Source> Source for HashingSource<'_, S> {
    fn read_full(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read_full(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> std::io::Result<u64> {
        if self.hasher.is_none() {
            return self.inner.skip(n);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(COPY_BUF_LEN, 0);
        let mut done = 0u64;
        let result = loop {
            if done == n {
                break Ok(done);
            }
            let want = (n - done).min(scratch.len() as u64) as usize;
            match self.read_full(&mut scratch[..want]) {
                Ok(got) => {
                    done += got as u64;
                    if got < want {
                        break Ok(done);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.scratch = scratch;
        result
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

/// A RAW run of a raw image being hashed before its length is known: its data CRC is kept in
/// segments cut where the split could cut it (see `Planner::raw_cuts`).
struct RawRun {
    start_block: u64,
    blocks: u64,
    segment: Hasher,
    /// (end block relative to the run, CRC state of the segment ending there).
    segments: Vec<(u64, Hasher)>,
    next_cut: u64,
    step: u64,
    /// Segments are only needed for per-piece CRCs.
    hash: bool,
}

enum Run {
    Raw(RawRun),
    Fill {
        value: u32,
        start_block: u64,
        blocks: u64,
    },
}

fn scan_raw<R: Read>(mut src: R, opts: &ScanOptions) -> Result<ImageScan, SparseError> {
    let bs = RAW_BLOCK_SIZE as usize;
    let mut sink = CrcSink::new(opts, RAW_BLOCK_SIZE)?;
    let mut file = (opts.file_crc || sink.planner.is_some()).then(Hasher::new);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut run: Option<Run> = None;
    let mut buf = vec![0u8; COPY_BUF_LEN];
    let mut len = 0u64;
    let mut block = 0u64;
    loop {
        let got = read_full_from(&mut src, &mut buf)
            .map_err(|e| SparseError::io(format!("reading the image at offset {len:#x}"), e))?;
        if let Some(f) = &mut file {
            f.update(&buf[..got]);
        }
        len += got as u64;
        // Zero-pad a last partial block.
        let padded = got.div_ceil(bs) * bs;
        buf[got..padded].fill(0);
        for data in buf[..padded].chunks_exact(bs) {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            // The words are all equal exactly when the block equals itself shifted by 4.
            let uniform = data[4..] == data[..bs - 4];
            run = Some(match (run.take(), uniform) {
                (
                    Some(Run::Fill {
                        value: v,
                        start_block,
                        blocks,
                    }),
                    true,
                ) if v == value => Run::Fill {
                    value,
                    start_block,
                    blocks: blocks + 1,
                },
                (Some(Run::Raw(mut r)), false) => {
                    r.add(data);
                    Run::Raw(r)
                }
                (previous, uniform) => {
                    if let Some(p) = previous {
                        end_run(p, &mut sink, &mut chunks)?;
                    }
                    if uniform {
                        Run::Fill {
                            value,
                            start_block: block,
                            blocks: 1,
                        }
                    } else {
                        let (first, step) = sink
                            .planner
                            .as_ref()
                            .map_or((u64::MAX, u64::MAX), |p| p.raw_cuts());
                        let mut r = RawRun {
                            start_block: block,
                            blocks: 0,
                            segment: Hasher::new(),
                            segments: Vec::new(),
                            next_cut: first,
                            step,
                            hash: sink.planner.is_some(),
                        };
                        r.add(data);
                        Run::Raw(r)
                    }
                }
            });
            if let (Some(d), false) = (&mut sink.data, uniform) {
                d.update(data);
            }
            block += 1;
        }
        if got < buf.len() {
            break;
        }
    }
    if let Some(p) = run.take() {
        end_run(p, &mut sink, &mut chunks)?;
    }
    if len == 0 {
        return Err(SparseError::Unrepresentable(
            "the image is empty (0 bytes); there is nothing to flash".into(),
        ));
    }
    let total_blks = u32::try_from(block).map_err(|_| {
        SparseError::Unrepresentable(format!(
            "the image has {block} blocks of 4096 bytes, more than a sparse image can describe (2^32-1)"
        ))
    })?;
    let layout = SparseLayout {
        format: ImageFormat::Raw,
        blk_sz: RAW_BLOCK_SIZE,
        total_blks,
        source_len: len,
        chunks,
    };
    let file_crc = file.map(Hasher::finalize);
    let (data_crc, piece_crcs) = sink.finish(&layout, file_crc);
    Ok(ImageScan {
        layout,
        file_crc: file_crc.filter(|_| opts.file_crc),
        data_crc: data_crc.filter(|_| opts.data_crc),
        piece_crcs,
    })
}

impl RawRun {
    fn add(&mut self, data: &[u8]) {
        if !self.hash {
            self.blocks += 1;
            return;
        }
        if self.blocks == self.next_cut {
            let done = std::mem::replace(&mut self.segment, Hasher::new());
            self.segments.push((self.blocks, done));
            self.next_cut = self.next_cut.saturating_add(self.step);
        }
        self.segment.update(data);
        self.blocks += 1;
    }
}

fn end_run(run: Run, sink: &mut CrcSink, chunks: &mut Vec<Chunk>) -> Result<(), SparseError> {
    let bs = RAW_BLOCK_SIZE as u64;
    let too_many = || {
        SparseError::Unrepresentable("the image has more than 2^32-1 blocks of 4096 bytes".into())
    };
    match run {
        Run::Fill {
            value,
            start_block,
            blocks,
        } => {
            chunks.push(Chunk {
                kind: ChunkKind::Fill(value),
                start_block: u32::try_from(start_block).map_err(|_| too_many())?,
                blocks: u32::try_from(blocks).map_err(|_| too_many())?,
                data_offset: start_block * bs,
            });
            sink.fill(
                Backed {
                    data: PieceData::Fill(value),
                    start_block,
                    blocks,
                },
                RAW_BLOCK_SIZE,
            );
        }
        Run::Raw(mut r) => {
            chunks.push(Chunk {
                kind: ChunkKind::Raw,
                start_block: u32::try_from(r.start_block).map_err(|_| too_many())?,
                blocks: u32::try_from(r.blocks).map_err(|_| too_many())?,
                data_offset: r.start_block * bs,
            });
            r.segments.push((r.blocks, r.segment));
            let backed = Backed {
                data: PieceData::Raw {
                    source_offset: r.start_block * bs,
                },
                start_block: r.start_block,
                blocks: r.blocks,
            };
            let placements = sink.place(backed);
            let mut segments = r.segments.into_iter().peekable();
            let mut seg_start = 0u64;
            for p in placements {
                let end = p.from + p.blocks;
                while let Some((seg_end, _)) = segments.peek() {
                    if *seg_end > end {
                        break;
                    }
                    let (seg_end, h) = segments.next().unwrap_or((end, Hasher::new()));
                    if seg_start < p.from {
                        return Err(SparseError::Unrepresentable(format!(
                            "internal error: a piece starts at block {} inside a hashed segment; please report this",
                            r.start_block + p.from
                        )));
                    }
                    sink.piece(p.piece).combine(&h);
                    seg_start = seg_end;
                }
                if seg_start != end {
                    return Err(SparseError::Unrepresentable(format!(
                        "internal error: a piece ends at block {} inside a hashed segment; please report this",
                        r.start_block + end
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::testutil::{build, noise, Part};

    fn pattern(len: usize, v: u32) -> Vec<u8> {
        v.to_le_bytes().iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn fill_hasher_equals_hashing_the_bytes() {
        for (v, len) in [
            (0u32, 4096u64),
            (0xdeadbeef, 512),
            (7, 4096 * 13 + 1024),
            (9, 4),
            (1, 0),
            (3, 4096 * 1024 + 8),
        ] {
            let mut h = Hasher::new();
            h.update(&pattern(len as usize, v));
            assert_eq!(fill_hasher(v, len).finalize(), h.finalize(), "{v:#x} {len}");
        }
    }

    #[test]
    fn raw_blocks_become_runs_like_libsparse() {
        let mut img = noise(4096 * 3, 1);
        img.extend(pattern(4096 * 2, 0));
        img.extend(pattern(4096, 5));
        img.extend(pattern(4096, 5));
        let mut almost = pattern(4096, 5);
        almost[4095] = 6;
        img.extend(&almost);
        img.extend(b"tail");
        let layout = SparseLayout::read(&img[..]).unwrap();
        let shape: Vec<(ChunkKind, u32, u32, u64)> = layout
            .chunks
            .iter()
            .map(|c| (c.kind, c.start_block, c.blocks, c.data_offset))
            .collect();
        assert_eq!(
            shape,
            [
                (ChunkKind::Raw, 0, 3, 0),
                (ChunkKind::Fill(0), 3, 2, 3 * 4096),
                (ChunkKind::Fill(5), 5, 2, 5 * 4096),
                (ChunkKind::Raw, 7, 2, 7 * 4096),
            ]
        );
        assert_eq!(layout.total_blks, 9);
        assert_eq!(layout.source_len, img.len() as u64);
        assert_eq!(layout.format, ImageFormat::Raw);
    }

    #[test]
    fn zero_tail_block_becomes_fill() {
        let mut img = noise(4096, 1);
        img.extend([0u8; 100]);
        let layout = SparseLayout::read(&img[..]).unwrap();
        assert_eq!(layout.chunks[1].kind, ChunkKind::Fill(0));
        assert_eq!(layout.expanded_len(), 8192);
    }

    #[test]
    fn empty_raw_image_is_refused() {
        assert!(matches!(
            SparseLayout::read(&[][..]),
            Err(SparseError::Unrepresentable(_))
        ));
    }

    #[test]
    fn crcs_of_a_sparse_image() {
        let a = noise(2048, 1);
        let b = noise(1024, 2);
        let parts = [
            Part::Raw(a.clone()),
            Part::Fill(0x01020304, 2),
            Part::Skip(5),
            Part::Crc(0),
            Part::Raw(b.clone()),
        ];
        let bytes = build(512, &parts);
        let opts = ScanOptions {
            file_crc: true,
            data_crc: true,
            piece_crcs_for: Some(1 << 20),
            check_crc_chunks: false,
        };
        let s = scan(&bytes[..], &opts).unwrap();
        let mut h = Hasher::new();
        h.update(&a);
        h.update(&pattern(1024, 0x01020304));
        h.update(&b);
        let data = h.finalize();
        assert_eq!(s.data_crc, Some(data));
        assert_eq!(s.file_crc, Some(crc32fast::hash(&bytes)));
        // Smaller than the limit: sent unchanged, one piece whose CRC is the data CRC.
        assert_eq!(
            s.piece_crcs,
            Some(PieceCrcs {
                max_download_size: 1 << 20,
                crcs: vec![data]
            })
        );
        // The seekable scan gives the same layout while skipping the data.
        let seekable =
            scan_seekable(std::io::Cursor::new(&bytes), &ScanOptions::default()).unwrap();
        assert_eq!(seekable.layout, s.layout);
        assert_eq!(seekable.data_crc, None);
    }

    #[test]
    fn crcs_of_a_raw_image() {
        let mut img = noise(4096 * 20, 3);
        img.extend(pattern(4096 * 30, 0));
        img.extend(noise(5000, 4));
        let opts = ScanOptions {
            file_crc: true,
            data_crc: true,
            piece_crcs_for: Some(40 * 1024),
            check_crc_chunks: false,
        };
        let s = scan(&img[..], &opts).unwrap();
        let mut padded = img.clone();
        padded.resize(4096 * 52, 0);
        assert_eq!(s.file_crc, Some(crc32fast::hash(&img)));
        assert_eq!(s.data_crc, Some(crc32fast::hash(&padded)));
        let crcs = s.piece_crcs.unwrap().crcs;
        // Piece CRCs, combined in order, are the CRC of all data.
        let pieces = crate::sparse::split(&s.layout, 40 * 1024).unwrap();
        assert_eq!(crcs.len(), pieces.len());
        let mut whole = Hasher::new();
        for (p, crc) in pieces.iter().zip(&crcs) {
            let mut h = Hasher::new();
            for c in &p.chunks {
                let range = c.start_block as usize * 4096..c.end_block() as usize * 4096;
                h.update(&padded[range]);
            }
            assert_eq!(h.clone().finalize(), *crc, "piece {}", p.index);
            whole.combine(&h);
        }
        assert_eq!(whole.finalize(), crc32fast::hash(&padded));
        // Not larger than the limit: one piece, the raw file itself.
        let s = scan(
            &img[..],
            &ScanOptions {
                piece_crcs_for: Some(1 << 20),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.piece_crcs.unwrap().crcs, [crc32fast::hash(&img)]);
        assert_eq!(s.file_crc, None);
    }
}
