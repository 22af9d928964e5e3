//! Splitting an image into pieces no larger than a download limit, exactly as AOSP libsparse's
//! `sparse_file_resparse` does for fastboot, so that every piece is byte-identical to what the
//! reference client sends (Xiaomi bootloaders check per-piece CRCs of that split).
//!
//! The rules, mirrored from `move_chunks_up_to_len`:
//! * the image is a list of "backed blocks": RAW runs and FILL runs (consecutive FILL chunks
//!   with one value merge; RAW chunks of a sparse file never merge; DONT_CARE is not a block);
//! * each piece has a budget of `max_len - (28 + 2*12 + 4)` bytes;
//! * a block costs its encoded size (RAW `12 + data`, FILL 16) plus 12 when a gap (a DONT_CARE
//!   chunk) precedes it in the piece — the first block of every piece after the first has one;
//! * when a block does not fit, 12 is added to the piece's size; then if the piece is empty, or
//!   more than 1/8 of the budget remains, the block is cut at the remaining budget rounded down
//!   to whole blocks and the first part ends the piece (when the whole block fits under that
//!   bound it ends the piece uncut, and a last piece with no blocks may follow); otherwise the
//!   piece ends before the block;
//! * every piece is a complete sparse file of the image's full `total_blks`, with DONT_CARE
//!   before, between and after its own chunks.
//!
//! The planner works online (one backed block at a time, in order) so that the scan can compute
//! per-piece CRCs in the same pass that builds the layout.
//!
//! Where libsparse 29.0.6 stores lengths in 32 bits (a RAW or FILL run of 4 GiB or more in a
//! raw image, a FILL chunk of 4 GiB or more in a sparse file) it silently truncates; this
//! planner keeps 64-bit lengths and sends the whole run instead.

use super::error::SparseError;
use super::format::SparseHeader;
use super::layout::SparseLayout;
use super::reader::ChunkKind;

/// fastboot never resparses with a limit above 1 GiB (`RESPARSE_LIMIT`).
pub const RESPARSE_LIMIT: u64 = 1 << 30;
/// Bytes libsparse keeps free in every piece: file header, a trailing DONT_CARE chunk header
/// and a CRC32 chunk.
pub const PIECE_OVERHEAD: u64 = 28 + 2 * 12 + 4;

/// What a piece chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PieceData {
    /// RAW data read from the source at this byte offset (`blocks * blk_sz` bytes; for a raw
    /// image the part past its end reads as zeros).
    Raw { source_offset: u64 },
    /// A FILL chunk with this value.
    Fill(u32),
}

/// One RAW or FILL chunk of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PieceChunk {
    pub data: PieceData,
    pub start_block: u32,
    pub blocks: u32,
}

impl PieceChunk {
    pub fn end_block(&self) -> u64 {
        self.start_block as u64 + self.blocks as u64
    }
}

/// One piece of a split image: a complete sparse file covering the whole image, defining only
/// its own chunks (everything else is DONT_CARE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparsePiece {
    /// 0-based position in the split.
    pub index: usize,
    pub blk_sz: u32,
    pub total_blks: u32,
    /// RAW and FILL chunks in block order; the DONT_CARE fillers are implied.
    pub chunks: Vec<PieceChunk>,
}

impl SparsePiece {
    /// Chunks in the encoded file: own chunks plus DONT_CARE fillers before, between, after.
    pub fn total_chunks(&self) -> u32 {
        let (gaps, tail) = self.gaps();
        (self.chunks.len() as u64 + gaps + tail as u64) as u32
    }

    /// Exact size of the encoded piece: the length to announce with `download:%08x`.
    pub fn encoded_len(&self) -> u64 {
        let (gaps, tail) = self.gaps();
        let body: u64 = self.chunks.iter().map(|c| self.chunk_len(c)).sum();
        28 + 12 * (gaps + tail as u64) + body
    }

    /// The file header of the encoded piece.
    pub fn header(&self) -> SparseHeader {
        SparseHeader::new(self.blk_sz, self.total_blks, self.total_chunks())
    }

    /// Blocks this piece defines (RAW and FILL).
    pub fn data_blocks(&self) -> u64 {
        self.chunks.iter().map(|c| c.blocks as u64).sum()
    }

    /// Bytes of RAW data this piece carries.
    pub fn raw_bytes(&self) -> u64 {
        self.chunks
            .iter()
            .filter(|c| matches!(c.data, PieceData::Raw { .. }))
            .map(|c| c.blocks as u64 * self.blk_sz as u64)
            .sum()
    }

    fn chunk_len(&self, c: &PieceChunk) -> u64 {
        match c.data {
            PieceData::Raw { .. } => 12 + c.blocks as u64 * self.blk_sz as u64,
            PieceData::Fill(_) => 16,
        }
    }

    /// (DONT_CARE chunks before or between own chunks, whether a trailing one is needed).
    fn gaps(&self) -> (u64, bool) {
        let mut last = 0u64;
        let mut gaps = 0;
        for c in &self.chunks {
            if c.start_block as u64 > last {
                gaps += 1;
            }
            last = c.end_block();
        }
        (gaps, last < self.total_blks as u64)
    }
}

/// How to send an image to a device with a given `max-download-size`, as fastboot does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadPlan {
    /// Send the file as it is, in one `download:` of `len` bytes: it is not larger than the
    /// limit, or the device reported no limit.
    Unchanged { len: u64 },
    /// Send each piece with its own `download:` and `flash:`. `limit` is the resparse size
    /// used (`min(max-download-size, 1 GiB)`).
    Pieces { limit: u64, pieces: Vec<SparsePiece> },
}

impl DownloadPlan {
    /// Number of `download:` commands.
    pub fn downloads(&self) -> usize {
        match self {
            DownloadPlan::Unchanged { .. } => 1,
            DownloadPlan::Pieces { pieces, .. } => pieces.len(),
        }
    }
}

/// The resparse limit fastboot 29.0.6 uses for a file of `file_len` bytes: `None` when the
/// file is sent unchanged (no limit, or the file is not larger than it), else
/// `min(max_download_size, 1 GiB)`.
pub fn resparse_limit(file_len: u64, max_download_size: Option<u64>) -> Option<u64> {
    match max_download_size {
        Some(limit) if limit > 0 && file_len > limit => Some(limit.min(RESPARSE_LIMIT)),
        _ => None,
    }
}

/// What fastboot does with this image for this `max-download-size` (`None` or 0: the device
/// reported none): send it unchanged, or resparse it into pieces.
pub fn plan_download(layout: &SparseLayout, max_download_size: Option<u64>) -> Result<DownloadPlan, SparseError> {
    match resparse_limit(layout.source_len, max_download_size) {
        None => Ok(DownloadPlan::Unchanged { len: layout.source_len }),
        Some(limit) => Ok(DownloadPlan::Pieces { limit, pieces: split(layout, limit)? }),
    }
}

/// Splits the image into pieces of at most `max_len` bytes each, as libsparse's
/// `sparse_file_resparse(s, max_len, ...)` does. This is the raw rule: it always splits, even
/// when the image would fit; [`plan_download`] adds fastboot's decision of whether to split.
pub fn split(layout: &SparseLayout, max_len: u64) -> Result<Vec<SparsePiece>, SparseError> {
    let mut planner = Planner::new(layout.blk_sz, max_len)?;
    for block in backed_blocks(layout) {
        planner.push(block);
    }
    Ok(planner.finish(layout.total_blks))
}

/// The whole image as one sparse file with no size limit: what `img2simg` writes for a raw
/// image, or a normalised copy of a sparse one. Fails when a RAW run is too long for one chunk.
pub fn single_piece(layout: &SparseLayout) -> Result<SparsePiece, SparseError> {
    let chunks: Vec<PieceChunk> =
        backed_blocks(layout).iter().map(|b| b.part(0, b.blocks, layout.blk_sz)).collect();
    for c in &chunks {
        if matches!(c.data, PieceData::Raw { .. }) && 12 + c.blocks as u64 * layout.blk_sz as u64 > u32::MAX as u64 {
            return Err(SparseError::Unrepresentable(format!(
                "the RAW run at block {} is {} blocks long, too long for one sparse chunk; split the image instead",
                c.start_block, c.blocks
            )));
        }
    }
    Ok(SparsePiece { index: 0, blk_sz: layout.blk_sz, total_blks: layout.total_blks, chunks })
}

/// A libsparse backed block: a RAW or FILL run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backed {
    pub(crate) data: PieceData,
    pub(crate) start_block: u64,
    pub(crate) blocks: u64,
}

impl Backed {
    pub(crate) fn end_block(&self) -> u64 {
        self.start_block + self.blocks
    }

    /// The part `[from, from + blocks)` (blocks relative to this run) as a piece chunk.
    pub(crate) fn part(&self, from: u64, blocks: u64, blk_sz: u32) -> PieceChunk {
        let data = match self.data {
            PieceData::Raw { source_offset } => {
                PieceData::Raw { source_offset: source_offset + from * blk_sz as u64 }
            }
            fill => fill,
        };
        // Block numbers stay below total_blks, a u32.
        PieceChunk { data, start_block: (self.start_block + from) as u32, blocks: blocks as u32 }
    }

    /// libsparse's `merge_bb` for blocks read in order: a FILL run absorbs an adjacent FILL run
    /// of the same value. RAW runs never merge (in a sparse file a chunk header sits between
    /// their data; a raw image's RAW blocks are merged while it is scanned).
    pub(crate) fn absorb(&mut self, next: &Backed) -> bool {
        let mergeable = matches!(next.data, PieceData::Fill(_))
            && self.data == next.data
            && self.end_block() == next.start_block;
        if mergeable {
            self.blocks += next.blocks;
        }
        mergeable
    }
}

/// The layout's chunks as libsparse's backed blocks: RAW chunks as they are, FILL chunks merged
/// into an adjacent preceding FILL run of the same value, DONT_CARE and CRC32 dropped.
pub(crate) fn backed_blocks(layout: &SparseLayout) -> Vec<Backed> {
    let mut out: Vec<Backed> = Vec::with_capacity(layout.chunks.len());
    for c in &layout.chunks {
        let data = match c.kind {
            ChunkKind::Raw => PieceData::Raw { source_offset: c.data_offset },
            ChunkKind::Fill(v) => PieceData::Fill(v),
            ChunkKind::DontCare | ChunkKind::Crc32(_) => continue,
        };
        let b = Backed { data, start_block: c.start_block as u64, blocks: c.blocks as u64 };
        if let Some(last) = out.last_mut() {
            if last.absorb(&b) {
                continue;
            }
        }
        out.push(b);
    }
    out
}

/// Where a part of a backed block went: `blocks` blocks starting `from` blocks into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) piece: usize,
    pub(crate) from: u64,
    pub(crate) blocks: u64,
}

/// libsparse's `move_chunks_up_to_len`, fed one backed block at a time.
pub(crate) struct Planner {
    blk_sz: u32,
    /// `max_len - PIECE_OVERHEAD`.
    budget: i64,
    pieces: Vec<SparsePiece>,
    /// Chunks of the piece being filled (libsparse's `last_bb != NULL` ⇔ not empty).
    current: Vec<PieceChunk>,
    file_len: i64,
    last_block: u64,
}

impl Planner {
    pub(crate) fn new(blk_sz: u32, max_len: u64) -> Result<Self, SparseError> {
        if max_len > u32::MAX as u64 {
            return Err(SparseError::LimitTooLarge { max_len });
        }
        // Below this, libsparse can emit empty chunks or loop forever; real limits are MiBs.
        let min = 8 * blk_sz as u64 + PIECE_OVERHEAD + 12;
        if max_len < min {
            return Err(SparseError::LimitTooSmall { max_len, min, blk_sz });
        }
        Ok(Planner {
            blk_sz,
            budget: (max_len - PIECE_OVERHEAD) as i64,
            pieces: Vec::new(),
            current: Vec::new(),
            file_len: 0,
            last_block: 0,
        })
    }

    /// Index of the piece being filled.
    pub(crate) fn current_piece(&self) -> usize {
        self.pieces.len()
    }

    fn close(&mut self) {
        let chunks = std::mem::take(&mut self.current);
        self.pieces.push(SparsePiece {
            index: self.pieces.len(),
            blk_sz: self.blk_sz,
            // Set by `finish`: the decisions never depend on it, and a scan learns it last.
            total_blks: 0,
            chunks,
        });
        self.file_len = 0;
        self.last_block = 0;
    }

    /// Places the next backed block (blocks must come in increasing block order).
    pub(crate) fn push(&mut self, b: Backed) -> Vec<Placement> {
        let bs = self.blk_sz as u64;
        let mut placed = Vec::with_capacity(1);
        let mut from = 0u64;
        loop {
            let rest = b.blocks - from;
            let start = b.start_block + from;
            let gap: i64 = if start > self.last_block { 12 } else { 0 };
            let encoded = match b.data {
                PieceData::Raw { .. } => 12 + rest * bs,
                PieceData::Fill(_) => 16,
            };
            let count = gap + encoded as i64;
            self.last_block = start + rest;
            if self.file_len + count <= self.budget {
                self.file_len += count;
                self.current.push(b.part(from, rest, self.blk_sz));
                placed.push(Placement { piece: self.current_piece(), from, blocks: rest });
                return placed;
            }
            self.file_len += 12;
            let remaining = self.budget - self.file_len;
            if self.current.is_empty() || remaining > self.budget / 8 {
                // libsparse hands `remaining` over as an unsigned int and rounds it down to
                // whole blocks; a block that fits under it moves whole (and still ends the
                // piece). `new` guarantees at least one block fits.
                let cut = if remaining < 0 { u64::MAX } else { remaining as u64 / bs };
                let take = rest.min(cut).max(1);
                self.current.push(b.part(from, take, self.blk_sz));
                placed.push(Placement { piece: self.current_piece(), from, blocks: take });
                self.close();
                from += take;
                if from == b.blocks {
                    return placed;
                }
            } else {
                self.close();
            }
        }
    }

    /// Where a RAW run starting now would be cut if it were endless: at `first`, then every
    /// `step` blocks (relative to the run's start). The cuts of a run of any length are among
    /// these, which lets the scan hash a RAW run of a raw image before its length is known.
    pub(crate) fn raw_cuts(&self) -> (u64, u64) {
        let bs = self.blk_sz as u64;
        let remaining = self.budget - (self.file_len + 12);
        let first = if self.current.is_empty() || remaining > self.budget / 8 {
            remaining.max(0) as u64 / bs
        } else {
            0
        };
        (first, (self.budget - 12) as u64 / bs)
    }

    /// The pieces; the last one is always emitted, even with no blocks, as libsparse does.
    pub(crate) fn finish(mut self, total_blks: u32) -> Vec<SparsePiece> {
        self.close();
        for p in &mut self.pieces {
            p.total_blks = total_blks;
        }
        self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::layout::ImageFormat;
    use crate::sparse::reader::Chunk;

    const MIB: u64 = 1 << 20;

    fn layout(blk_sz: u32, chunks: &[(ChunkKind, u32)]) -> SparseLayout {
        let mut out = Vec::new();
        let mut block = 0u32;
        let mut offset = 0u64;
        for &(kind, blocks) in chunks {
            out.push(Chunk { kind, start_block: block, blocks, data_offset: offset });
            block += blocks;
            offset += blocks as u64 * blk_sz as u64;
        }
        SparseLayout { format: ImageFormat::Raw, blk_sz, total_blks: block, source_len: offset, chunks: out }
    }

    fn describe(p: &SparsePiece) -> String {
        let mut s = Vec::new();
        let mut last = 0u64;
        for c in &p.chunks {
            if c.start_block as u64 > last {
                s.push(format!("DONT_CARE {}", c.start_block as u64 - last));
            }
            s.push(match c.data {
                PieceData::Raw { .. } => format!("RAW {}", c.blocks),
                PieceData::Fill(v) => format!("FILL({v:#x}) {}", c.blocks),
            });
            last = c.end_block();
        }
        if last < p.total_blks as u64 {
            s.push(format!("DONT_CARE {}", p.total_blks as u64 - last));
        }
        s.join(", ")
    }

    /// fastboot-protocol.md §9.2: 50 MiB raw (20 MiB random, 10 MiB zero, 20 MiB random),
    /// limit 0x1000000, as observed with Debian's fastboot 29.0.6.
    #[test]
    fn observed_split_of_50_mib_raw_image() {
        let l = layout(4096, &[(ChunkKind::Raw, 5120), (ChunkKind::Fill(0), 2560), (ChunkKind::Raw, 5120)]);
        let plan = plan_download(&l, Some(0x100_0000)).unwrap();
        let DownloadPlan::Pieces { limit, pieces } = plan else { panic!("must split") };
        assert_eq!(limit, 0x100_0000);
        let sizes: Vec<u64> = pieces.iter().map(|p| p.encoded_len()).collect();
        assert_eq!(sizes, [0x00ff_f034, 0x00ff_f05c, 0x0080_2034]);
        let shapes: Vec<String> = pieces.iter().map(describe).collect();
        assert_eq!(
            shapes,
            [
                "RAW 4095, DONT_CARE 8705",
                "DONT_CARE 4095, RAW 1025, FILL(0x0) 2560, RAW 3070, DONT_CARE 2050",
                "DONT_CARE 10750, RAW 2050",
            ]
        );
        assert_eq!(pieces.iter().map(|p| p.total_chunks()).collect::<Vec<_>>(), [2, 5, 2]);
        // RAW data is taken from the right place of the source.
        assert_eq!(pieces[1].chunks[0].data, PieceData::Raw { source_offset: 4095 * 4096 });
        assert_eq!(pieces[1].chunks[2].data, PieceData::Raw { source_offset: 7680 * 4096 });
    }

    /// fastboot-protocol.md §8/§9.2: the 64 MiB image made by img2simg (6 chunks, 12 MiB
    /// sparse file) sent with limit 0x400000 as 4 pieces of 4190260/4190272/4190332/12356 bytes.
    #[test]
    fn observed_split_of_img2simg_example() {
        let l = layout(
            4096,
            &[
                (ChunkKind::Raw, 2048),
                (ChunkKind::Fill(0), 3072),
                (ChunkKind::Fill(0xdeadbeef), 256),
                (ChunkKind::Fill(0), 4864),
                (ChunkKind::Raw, 1024),
                (ChunkKind::Fill(0), 5120),
            ],
        );
        let pieces = split(&l, 0x40_0000).unwrap();
        let sizes: Vec<u64> = pieces.iter().map(|p| p.encoded_len()).collect();
        assert_eq!(sizes, [4190260, 4190272, 4190332, 12356]);
        assert_eq!(describe(&pieces[3]), "DONT_CARE 11261, RAW 3, FILL(0x0) 5120");
    }

    #[test]
    fn small_files_are_sent_unchanged() {
        let l = layout(4096, &[(ChunkKind::Raw, 256)]);
        assert_eq!(plan_download(&l, Some(MIB)).unwrap(), DownloadPlan::Unchanged { len: MIB });
        assert_eq!(plan_download(&l, None).unwrap(), DownloadPlan::Unchanged { len: MIB });
        assert_eq!(plan_download(&l, Some(0)).unwrap(), DownloadPlan::Unchanged { len: MIB });
        assert_eq!(resparse_limit(3 << 30, Some(2 << 30)), Some(RESPARSE_LIMIT));
    }

    #[test]
    fn a_block_that_fits_uncut_ends_the_piece_and_an_empty_piece_follows() {
        // Budget len = max - 56. Piece 1: RAW 10 (no gap) costs 12 + 40960. Then a RAW block
        // behind a gap that fits only without its gap header: it moves whole, the piece ends,
        // and libsparse emits one more piece with no blocks.
        let max = 41040 + 54 * 4096 + 5;
        let budget = max - PIECE_OVERHEAD;
        let used = 12 + 10 * 4096;
        // Second block: data d with used + 12 + 12 + d > budget but d <= budget - used - 12.
        let d_blocks = (budget - used - 12) / 4096;
        assert!(used + 24 + d_blocks * 4096 > budget);
        let l = layout(
            4096,
            &[(ChunkKind::Raw, 10), (ChunkKind::DontCare, 1), (ChunkKind::Raw, d_blocks as u32)],
        );
        let pieces = split(&l, max).unwrap();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].chunks.len(), 2);
        assert!(pieces[1].chunks.is_empty());
        assert_eq!(pieces[1].encoded_len(), 40);
        assert_eq!(pieces[1].total_chunks(), 1);
    }

    #[test]
    fn fill_runs_merge_like_libsparse() {
        let l = layout(
            4096,
            &[
                (ChunkKind::Fill(7), 2),
                (ChunkKind::Crc32(0), 0),
                (ChunkKind::Fill(7), 3),
                (ChunkKind::Fill(8), 1),
                (ChunkKind::DontCare, 1),
                (ChunkKind::Fill(8), 1),
                (ChunkKind::Raw, 1),
                (ChunkKind::Raw, 1),
            ],
        );
        let b = backed_blocks(&l);
        let shape: Vec<(PieceData, u64, u64)> = b.iter().map(|b| (b.data, b.start_block, b.blocks)).collect();
        assert_eq!(
            shape,
            [
                (PieceData::Fill(7), 0, 5),
                (PieceData::Fill(8), 5, 1),
                (PieceData::Fill(8), 7, 1),
                (PieceData::Raw { source_offset: 8 * 4096 }, 8, 1),
                (PieceData::Raw { source_offset: 9 * 4096 }, 9, 1),
            ]
        );
        let whole = single_piece(&l).unwrap();
        assert_eq!(whole.total_chunks(), 6);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        let l = layout(4096, &[(ChunkKind::Raw, 100)]);
        assert!(matches!(split(&l, 1 << 32), Err(SparseError::LimitTooLarge { .. })));
        assert!(matches!(split(&l, 8 * 4096), Err(SparseError::LimitTooSmall { .. })));
        let min = 8 * 4096 + PIECE_OVERHEAD + 12;
        let pieces = split(&l, min).unwrap();
        assert!(pieces.iter().all(|p| p.encoded_len() <= min));
        assert_eq!(pieces.iter().map(|p| p.data_blocks()).sum::<u64>(), 100);
    }

    #[test]
    fn raw_cuts_predict_the_split_of_any_run_length() {
        for prefix in [0u32, 1, 30, 55, 60] {
            for len in 1..200u32 {
                let max = 64 * 4096u64;
                let mut chunks = vec![];
                if prefix > 0 {
                    chunks.push((ChunkKind::Raw, prefix));
                    chunks.push((ChunkKind::DontCare, 1));
                }
                chunks.push((ChunkKind::Raw, len));
                let l = layout(4096, &chunks);
                let blocks = backed_blocks(&l);
                let mut planner = Planner::new(4096, max).unwrap();
                for b in &blocks[..blocks.len() - 1] {
                    planner.push(*b);
                }
                let (first, step) = planner.raw_cuts();
                for p in planner.push(*blocks.last().unwrap()) {
                    for edge in [p.from, p.from + p.blocks] {
                        let on_cut = edge >= first && (edge - first) % step == 0;
                        assert!(edge == 0 || edge == len as u64 || on_cut, "prefix {prefix} len {len}: {edge}");
                    }
                }
            }
        }
    }
}
