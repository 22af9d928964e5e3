//! Streaming check of an Android sparse image plus the CRCs Xiaomi's `sparsecrclist.txt`
//! holds, computed while the image streams past (no buffering, no second read).
//!
//! Fed bytes in any slicing, it validates the image the way libsparse's reader does and
//! computes:
//! * the CRC-32 of all RAW data and expanded FILL data in chunk order (DONT_CARE skipped) —
//!   the old single-CRC `sparsecrclist.txt` format;
//! * for each requested max-download-size, the pieces host fastboot (libsparse
//!   `sparse_file_resparse` / `move_chunks_up_to_len`) would send, and per piece the CRC-32 of
//!   its RAW and expanded FILL data — the new `SPARSECRC-LIST` format.
//!
//! Piece boundaries depend only on chunk headers, so they are decided when a header arrives
//! and the data is cut as it passes. One CRC runs over the data; at every boundary of any
//! split size the segment CRC is appended to each size's running piece CRC with
//! `crc32fast::Hasher::combine`, so extra split sizes cost almost nothing. FILL runs are never
//! expanded: their CRC is built by doubling.
//!
//! This mirrors the splitting rules in `fastboot-protocol.md` §9.2; the flasher's own splitter
//! (module `sparse`) must produce the same pieces — tests cross-check against AOSP `simg2simg`.

use crc32fast::Hasher;

const MAGIC: u32 = 0xed26_ff3a;
const CHUNK_RAW: u16 = 0xcac1;
const CHUNK_FILL: u16 = 0xcac2;
const CHUNK_DONT_CARE: u16 = 0xcac3;
const CHUNK_CRC32: u16 = 0xcac4;
/// libsparse: sparse header + two chunk headers (trailing skip, CRC) + CRC value.
const SPLIT_OVERHEAD: i64 = 28 + 2 * 12 + 4;
/// fastboot never resparses to pieces larger than this (`RESPARSE_LIMIT`).
const RESPARSE_LIMIT: u64 = 1 << 30;

/// True when `head` starts with the sparse magic.
pub fn is_sparse(head: &[u8]) -> bool {
    head.len() >= 4 && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == MAGIC
}

/// What a finished scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseSummary {
    pub block_size: u32,
    pub total_blocks: u32,
    pub raw_chunks: u32,
    pub fill_chunks: u32,
    pub dont_care_chunks: u32,
    pub crc_chunks: u32,
    /// CRC-32 of all RAW data and expanded FILL data (old `sparsecrclist.txt` format).
    pub data_crc: u32,
    /// Per requested max-download-size, the per-piece CRCs (or why they could not be made).
    pub splits: Vec<SplitCrcs>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCrcs {
    pub max_download_size: u64,
    pub pieces: Result<Vec<u32>, String>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    FileHeader,
    ChunkHeader,
    /// Skipping `left` bytes of header padding (file_hdr_sz / chunk_hdr_sz larger than usual).
    Skip {
        left: u64,
        then_chunk: bool,
    },
    Raw {
        left: u64,
    },
    Fill,
    Crc32,
    Done,
}

/// Incremental scanner; see the module documentation.
pub struct SparseScanner {
    file_size: u64,
    state: State,
    head: Vec<u8>,
    file_hdr_sz: u64,
    chunk_hdr_sz: u64,
    block_size: u64,
    total_blocks: u64,
    total_chunks: u64,
    chunks: u64,
    block: u64,
    counts: [u32; 4],
    fill_block: u64,
    fill_blocks: u64,
    pending_fill: Option<(u64, u64, [u8; 4])>,
    /// What follows the current chunk header (after any header padding).
    body: State,
    crcs: Crcs,
    error: Option<String>,
    consumed: u64,
}

impl SparseScanner {
    /// `file_size` is the sparse file's size (fastboot only splits files larger than the
    /// limit); `split_sizes` are the max-download-size values to compute pieces for.
    pub fn new(file_size: u64, split_sizes: &[u64]) -> Self {
        SparseScanner {
            file_size,
            state: State::FileHeader,
            head: Vec::with_capacity(28),
            file_hdr_sz: 28,
            chunk_hdr_sz: 12,
            block_size: 0,
            total_blocks: 0,
            total_chunks: 0,
            chunks: 0,
            block: 0,
            counts: [0; 4],
            fill_block: 0,
            fill_blocks: 0,
            pending_fill: None,
            body: State::ChunkHeader,
            crcs: Crcs::new(split_sizes),
            error: None,
            consumed: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            let used = match self.step(data) {
                Ok(n) => n,
                Err(e) => {
                    self.error = Some(format!("{e} (at byte {})", self.consumed));
                    return;
                }
            };
            self.consumed += used as u64;
            data = &data[used..];
        }
    }

    /// Ends the scan: the image must have ended exactly after its last chunk.
    pub fn finish(mut self) -> Result<SparseSummary, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !matches!(self.state, State::Done) {
            return Err(format!(
                "the image ends after {} of {} chunks ({} bytes)",
                self.chunks, self.total_chunks, self.consumed
            ));
        }
        self.flush_fill();
        let splits = self.crcs.finish();
        Ok(SparseSummary {
            block_size: self.block_size as u32,
            total_blocks: self.total_blocks as u32,
            raw_chunks: self.counts[0],
            fill_chunks: self.counts[1],
            dont_care_chunks: self.counts[2],
            crc_chunks: self.counts[3],
            data_crc: self.crcs.total.clone().finalize(),
            splits,
        })
    }

    /// Collects `want` header bytes; returns bytes used and whether the header is complete.
    fn gather(&mut self, data: &[u8], want: usize) -> (usize, bool) {
        let need = want - self.head.len();
        let n = need.min(data.len());
        self.head.extend_from_slice(&data[..n]);
        (n, self.head.len() == want)
    }

    fn step(&mut self, data: &[u8]) -> Result<usize, String> {
        match self.state {
            State::FileHeader => {
                let (n, done) = self.gather(data, 28);
                if done {
                    self.parse_file_header()?;
                }
                Ok(n)
            }
            State::ChunkHeader => {
                let (n, done) = self.gather(data, 12);
                if done {
                    self.parse_chunk_header()?;
                }
                Ok(n)
            }
            State::Skip { left, then_chunk } => {
                let n = (left.min(data.len() as u64)) as usize;
                let left = left - n as u64;
                if left == 0 {
                    self.state = if then_chunk {
                        self.after_chunk_header()
                    } else {
                        self.next_chunk_state()
                    };
                } else {
                    self.state = State::Skip { left, then_chunk };
                }
                Ok(n)
            }
            State::Raw { left } => {
                let n = (left.min(data.len() as u64)) as usize;
                self.crcs.feed(&data[..n]);
                let left = left - n as u64;
                self.state = if left == 0 {
                    self.next_chunk_state()
                } else {
                    State::Raw { left }
                };
                Ok(n)
            }
            State::Fill => {
                let (n, done) = self.gather(data, 4);
                if done {
                    let pattern = [self.head[0], self.head[1], self.head[2], self.head[3]];
                    self.head.clear();
                    self.add_fill(self.fill_block, self.fill_blocks, pattern);
                    self.state = self.next_chunk_state();
                }
                Ok(n)
            }
            State::Crc32 => {
                let (n, done) = self.gather(data, 4);
                if done {
                    self.head.clear();
                    self.state = self.next_chunk_state();
                }
                Ok(n)
            }
            State::Done => Err(format!(
                "{} bytes of trailing data after the last chunk",
                data.len()
            )),
        }
    }

    fn parse_file_header(&mut self) -> Result<(), String> {
        let h = std::mem::take(&mut self.head);
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([h[o], h[o + 1]]));
        let u32_at = |o: usize| u64::from(u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]));
        if u32_at(0) != u64::from(MAGIC) {
            return Err("not a sparse image (bad magic)".into());
        }
        if u16_at(4) != 1 {
            return Err(format!("unsupported sparse major version {}", u16_at(4)));
        }
        self.file_hdr_sz = u16_at(8);
        self.chunk_hdr_sz = u16_at(10);
        self.block_size = u32_at(12);
        self.total_blocks = u32_at(16);
        self.total_chunks = u32_at(20);
        if self.file_hdr_sz < 28 || self.chunk_hdr_sz < 12 {
            return Err(format!(
                "header sizes {}/{} are below 28/12",
                self.file_hdr_sz, self.chunk_hdr_sz
            ));
        }
        if self.block_size == 0 || self.block_size % 4 != 0 {
            return Err(format!(
                "block size {} is not a positive multiple of 4",
                self.block_size
            ));
        }
        if self.total_blocks == 0 {
            return Err("the image declares 0 blocks".into());
        }
        if self.total_chunks == 0 {
            return Err("the image declares 0 chunks".into());
        }
        self.state = if self.file_hdr_sz > 28 {
            State::Skip {
                left: self.file_hdr_sz - 28,
                then_chunk: false,
            }
        } else {
            self.next_chunk_state()
        };
        Ok(())
    }

    fn next_chunk_state(&mut self) -> State {
        if self.chunks == self.total_chunks {
            State::Done
        } else {
            State::ChunkHeader
        }
    }

    fn parse_chunk_header(&mut self) -> Result<(), String> {
        let h = std::mem::take(&mut self.head);
        let kind = u16::from_le_bytes([h[0], h[1]]);
        let blocks = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        let total = u64::from(u32::from_le_bytes([h[8], h[9], h[10], h[11]]));
        let index = self.chunks;
        self.chunks += 1;
        let body = total.checked_sub(self.chunk_hdr_sz).ok_or_else(|| {
            format!("chunk {index}: total size {total} is smaller than its header")
        })?;
        let expected_body = match kind {
            CHUNK_RAW => blocks * self.block_size,
            CHUNK_FILL | CHUNK_CRC32 => 4,
            CHUNK_DONT_CARE => 0,
            other => return Err(format!("chunk {index}: unknown chunk type {other:#06x}")),
        };
        if body != expected_body {
            return Err(format!(
                "chunk {index} ({kind:#06x}): {body} data bytes, expected {expected_body}"
            ));
        }
        if kind != CHUNK_CRC32 && self.block + blocks > self.total_blocks {
            return Err(format!(
                "chunk {index}: blocks {}..{} run past the image's {} blocks",
                self.block,
                self.block + blocks,
                self.total_blocks
            ));
        }
        self.head.clear();
        let start = self.block;
        match kind {
            CHUNK_RAW => {
                self.counts[0] += 1;
                self.flush_fill();
                self.crcs.plan(
                    start,
                    blocks * self.block_size,
                    true,
                    self.block_size,
                    self.file_size,
                );
            }
            CHUNK_FILL => {
                self.counts[1] += 1;
                self.fill_block = start;
                self.fill_blocks = blocks;
            }
            CHUNK_DONT_CARE => {
                self.counts[2] += 1;
                self.flush_fill();
            }
            _ => self.counts[3] += 1,
        }
        if kind != CHUNK_CRC32 {
            self.block += blocks;
        }
        self.body = match kind {
            CHUNK_RAW if blocks > 0 => State::Raw {
                left: blocks * self.block_size,
            },
            CHUNK_RAW | CHUNK_DONT_CARE => State::ChunkHeader,
            CHUNK_FILL => State::Fill,
            _ => State::Crc32,
        };
        if self.chunks == self.total_chunks && self.block != self.total_blocks {
            return Err(format!(
                "the chunks cover {} blocks but the header declares {}",
                self.block, self.total_blocks
            ));
        }
        self.state = if self.chunk_hdr_sz > 12 {
            State::Skip {
                left: self.chunk_hdr_sz - 12,
                then_chunk: true,
            }
        } else {
            self.after_chunk_header()
        };
        Ok(())
    }

    /// State for the body of the chunk whose header was just read.
    fn after_chunk_header(&mut self) -> State {
        match self.body {
            // Chunks without a body (DONT_CARE, empty RAW) go straight to the next header.
            State::ChunkHeader => self.next_chunk_state(),
            other => other,
        }
    }

    /// FILL runs are held back one chunk: libsparse merges adjacent FILL chunks of the same
    /// value into one block run, which changes where pieces split.
    fn add_fill(&mut self, start: u64, blocks: u64, pattern: [u8; 4]) {
        if let Some((s, n, p)) = self.pending_fill {
            if p == pattern && s + n == start {
                self.pending_fill = Some((s, n + blocks, p));
                return;
            }
        }
        self.flush_fill();
        if blocks > 0 {
            self.pending_fill = Some((start, blocks, pattern));
        }
    }

    fn flush_fill(&mut self) {
        if let Some((start, blocks, pattern)) = self.pending_fill.take() {
            let len = blocks * self.block_size;
            self.crcs
                .plan(start, len, false, self.block_size, self.file_size);
            self.crcs.feed_fill(pattern, len);
        }
    }
}

/// One split size's piece planner: libsparse `move_chunks_up_to_len`, one backed block run
/// at a time.
struct Planner {
    /// Budget per piece: max size minus header/skip/CRC overhead.
    len: i64,
    file_len: i64,
    last_block: u64,
    piece_has_data: bool,
    /// The image fits in one download: fastboot sends it unchanged.
    whole: bool,
}

impl Planner {
    fn new(max_download_size: u64, file_size: u64) -> Self {
        let max = max_download_size.min(RESPARSE_LIMIT) as i64;
        Planner {
            len: max - SPLIT_OVERHEAD,
            file_len: 0,
            last_block: 0,
            piece_has_data: false,
            whole: file_size <= max_download_size,
        }
    }

    fn new_piece(&mut self) {
        self.file_len = 0;
        self.last_block = 0;
        self.piece_has_data = false;
    }

    /// Places a run of `len` bytes starting at block `block`; returns offsets into the run
    /// (0..=len) where a piece ends.
    fn place(
        &mut self,
        block: u64,
        len: u64,
        raw: bool,
        block_size: u64,
    ) -> Result<Vec<u64>, String> {
        let mut cuts = Vec::new();
        if self.whole {
            return Ok(cuts);
        }
        let mut offset = 0u64;
        loop {
            let cur_block = block + offset / block_size;
            let cur_len = len - offset;
            let encoded = if raw {
                12 + cur_len.div_ceil(block_size) * block_size
            } else {
                16
            };
            let gap = if cur_block > self.last_block { 12 } else { 0 };
            let count = (gap + encoded) as i64;
            self.last_block = cur_block + cur_len.div_ceil(block_size);
            if self.file_len + count <= self.len {
                self.file_len += count;
                self.piece_has_data = true;
                return Ok(cuts);
            }
            self.file_len += 12;
            let room = self.len - self.file_len;
            if !self.piece_has_data || room > self.len / 8 {
                // Split here; a negative room wraps to a huge unsigned size in libsparse,
                // which means "no split": the whole run stays in this piece.
                let split = if room < 0 {
                    u64::MAX
                } else {
                    (room as u64) / block_size * block_size
                };
                if split == 0 {
                    return Err(format!(
                        "max-download-size too small for {block_size}-byte blocks"
                    ));
                }
                if cur_len > split {
                    offset += split;
                    cuts.push(offset);
                    self.new_piece();
                    continue;
                }
                // The run fits after all: it ends this piece, and libsparse starts a new one
                // (which stays empty if nothing follows).
                cuts.push(len);
                self.new_piece();
                return Ok(cuts);
            }
            // Not worth splitting: end the piece before this run and retry in a fresh one.
            cuts.push(offset);
            self.new_piece();
        }
    }
}

/// Running CRCs: the whole data stream plus every split size's pieces.
struct Crcs {
    total: Hasher,
    segment: Hasher,
    offset: u64,
    splits: Vec<SplitState>,
}

struct SplitState {
    max: u64,
    planner: Planner,
    /// Absolute data-stream offsets where a piece ends, in order.
    cuts: std::collections::VecDeque<u64>,
    current: Hasher,
    pieces: Vec<u32>,
    failed: Option<String>,
}

impl Crcs {
    fn new(split_sizes: &[u64]) -> Self {
        let splits = split_sizes
            .iter()
            .map(|&max| SplitState {
                max,
                planner: Planner::new(max, 0),
                cuts: Default::default(),
                current: Hasher::new(),
                pieces: Vec::new(),
                failed: (max < 64 * 1024).then(|| format!("max-download-size {max} is too small")),
            })
            .collect();
        Crcs {
            total: Hasher::new(),
            segment: Hasher::new(),
            offset: 0,
            splits,
        }
    }

    fn plan(&mut self, block: u64, len: u64, raw: bool, block_size: u64, file_size: u64) {
        for s in &mut self.splits {
            if s.failed.is_some() {
                continue;
            }
            s.planner.whole = file_size <= s.max;
            match s.planner.place(block, len, raw, block_size) {
                Ok(cuts) => s.cuts.extend(cuts.into_iter().map(|c| self.offset + c)),
                Err(e) => s.failed = Some(e),
            }
        }
        self.close_segment();
    }

    /// Bytes to the next cut of any split size.
    fn room(&self) -> u64 {
        self.splits
            .iter()
            .filter_map(|s| s.cuts.front())
            .map(|&c| c.saturating_sub(self.offset))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (self.room().min(data.len() as u64)) as usize;
            self.segment.update(&data[..n]);
            self.offset += n as u64;
            data = &data[n..];
            self.close_segment();
        }
    }

    fn feed_fill(&mut self, pattern: [u8; 4], mut len: u64) {
        while len > 0 {
            let n = self.room().min(len);
            self.segment.combine(&fill_crc(pattern, n));
            self.offset += n;
            len -= n;
            self.close_segment();
        }
        self.close_segment();
    }

    /// Appends the current segment to every running CRC and ends the pieces cut here.
    fn close_segment(&mut self) {
        let segment = std::mem::replace(&mut self.segment, Hasher::new());
        self.total.combine(&segment);
        for s in &mut self.splits {
            s.current.combine(&segment);
            while s.cuts.front() == Some(&self.offset) {
                s.cuts.pop_front();
                let piece = std::mem::replace(&mut s.current, Hasher::new());
                s.pieces.push(piece.finalize());
            }
        }
    }

    fn finish(&mut self) -> Vec<SplitCrcs> {
        self.close_segment();
        self.splits
            .iter_mut()
            .map(|s| {
                let pieces = match s.failed.take() {
                    Some(e) => Err(e),
                    None => {
                        let mut p = std::mem::take(&mut s.pieces);
                        p.push(std::mem::replace(&mut s.current, Hasher::new()).finalize());
                        Ok(p)
                    }
                };
                SplitCrcs {
                    max_download_size: s.max,
                    pieces,
                }
            })
            .collect()
    }
}

/// CRC state of `len` bytes (a multiple of 4) of a repeated 4-byte pattern, by doubling.
fn fill_crc(pattern: [u8; 4], len: u64) -> Hasher {
    const UNIT: usize = 4096;
    let unit_bytes: Vec<u8> = pattern.iter().copied().cycle().take(UNIT).collect();
    let mut acc = Hasher::new();
    let mut power = Hasher::new();
    power.update(&unit_bytes);
    let mut units = len / UNIT as u64;
    while units > 0 {
        if units & 1 == 1 {
            acc.combine(&power);
        }
        let copy = power.clone();
        power.combine(&copy);
        units >>= 1;
    }
    let rest = (len % UNIT as u64) as usize;
    acc.update(&unit_bytes[..rest]);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse image writer good enough for tests: (kind, blocks, payload).
    pub(crate) fn sparse(block_size: u32, chunks: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
        let total: u32 = chunks
            .iter()
            .filter(|c| c.0 != CHUNK_CRC32)
            .map(|c| c.1)
            .sum();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&28u16.to_le_bytes());
        out.extend_from_slice(&12u16.to_le_bytes());
        out.extend_from_slice(&block_size.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for (kind, blocks, payload) in chunks {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&blocks.to_le_bytes());
            out.extend_from_slice(&(12 + payload.len() as u32).to_le_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    fn scan(bytes: &[u8], sizes: &[u64], step: usize) -> Result<SparseSummary, String> {
        let mut s = SparseScanner::new(bytes.len() as u64, sizes);
        for c in bytes.chunks(step) {
            s.update(c);
        }
        s.finish()
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn data_crc_covers_raw_and_expanded_fill_only() {
        let raw = data(8192, 1);
        let img = sparse(
            4096,
            &[
                (CHUNK_RAW, 2, raw.clone()),
                (CHUNK_DONT_CARE, 3, vec![]),
                (CHUNK_FILL, 2, vec![0xef, 0xbe, 0xad, 0xde]),
                (CHUNK_CRC32, 0, vec![0; 4]),
            ],
        );
        let mut expected = raw.clone();
        expected.extend([0xef, 0xbe, 0xad, 0xde].iter().cycle().take(8192));
        for step in [1, 7, 4096, 1 << 20] {
            let s = scan(&img, &[], step).unwrap();
            assert_eq!(s.data_crc, crc32fast::hash(&expected), "step {step}");
            assert_eq!(
                (
                    s.raw_chunks,
                    s.fill_chunks,
                    s.dont_care_chunks,
                    s.crc_chunks
                ),
                (1, 1, 1, 1)
            );
            assert_eq!(s.total_blocks, 7);
        }
    }

    #[test]
    fn fill_crc_by_doubling_matches_plain_crc() {
        for len in [0u64, 4, 4092, 4096, 4100, 3 * 4096 + 8, 1 << 20] {
            let bytes: Vec<u8> = [1u8, 2, 3, 4]
                .iter()
                .copied()
                .cycle()
                .take(len as usize)
                .collect();
            assert_eq!(
                fill_crc([1, 2, 3, 4], len).finalize(),
                crc32fast::hash(&bytes),
                "len {len}"
            );
        }
    }

    #[test]
    fn malformed_images_are_reported_not_panicked_on() {
        let good = sparse(4096, &[(CHUNK_RAW, 1, data(4096, 3))]);
        assert!(scan(&good, &[], 5).is_ok());
        assert!(scan(&good[..good.len() - 1], &[], 5)
            .unwrap_err()
            .contains("ends after"));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(scan(&trailing, &[], 5).unwrap_err().contains("trailing"));
        let mut bad_type = good.clone();
        bad_type[28] = 0x99;
        assert!(scan(&bad_type, &[], 5)
            .unwrap_err()
            .contains("unknown chunk type"));
        let mut wrong_blocks = good.clone();
        wrong_blocks[16] = 2; // total_blks 2, chunks cover 1
        assert!(scan(&wrong_blocks, &[], 5).is_err());
        let mut bad_block_size = good;
        bad_block_size[12] = 3;
        assert!(scan(&bad_block_size, &[], 5).is_err());
    }

    #[test]
    fn small_images_are_one_piece_and_large_ones_split_under_the_limit() {
        let img = sparse(4096, &[(CHUNK_RAW, 64, data(64 * 4096, 9))]);
        let s = scan(&img, &[1 << 20, 1 << 30], 65536).unwrap();
        // 256 KiB fits in one download for both limits: sent unchanged, one piece.
        assert_eq!(s.splits[0].pieces.as_ref().unwrap(), &vec![s.data_crc]);
        assert_eq!(s.splits[1].pieces.as_ref().unwrap(), &vec![s.data_crc]);
        let img = sparse(4096, &[(CHUNK_RAW, 600, data(600 * 4096, 5))]);
        let s = scan(&img, &[1 << 20], 1 << 16).unwrap();
        let pieces = s.splits[0].pieces.as_ref().unwrap();
        assert_eq!(pieces.len(), 3, "{pieces:x?}");
        // Piece boundaries: 1 MiB - 56 - 12 (chunk header) rounded down to 255 blocks.
        let bytes = data(600 * 4096, 5);
        assert_eq!(pieces[0], crc32fast::hash(&bytes[..255 * 4096]));
        assert_eq!(pieces[1], crc32fast::hash(&bytes[255 * 4096..510 * 4096]));
        assert_eq!(pieces[2], crc32fast::hash(&bytes[510 * 4096..]));
    }
}
