//! Streaming reader of a sparse file: header, then one checked chunk at a time, with the RAW
//! data read or skipped by the caller. Nothing is buffered beyond one header, so the same code
//! serves validation, decoding, layout scanning and piece production.

use super::error::SparseError;
use super::format::{
    ChunkHeader, SparseHeader, CHUNK_HEADER_LEN, CHUNK_TYPE_CRC32, CHUNK_TYPE_DONT_CARE,
    CHUNK_TYPE_FILL, CHUNK_TYPE_RAW, FILE_HEADER_LEN, SPARSE_MAGIC,
};
use super::source::Source;

/// What a chunk does to the expanded image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// Data stored in the file, `blocks * blk_sz` bytes.
    Raw,
    /// The 4-byte little-endian pattern (as a `u32`) repeated over every block.
    Fill(u32),
    /// Blocks the image does not define; a writer leaves them untouched.
    DontCare,
    /// A CRC-32 of the image so far, covering no blocks (kept, not verified: libsparse and
    /// fastboot do not verify it either).
    Crc32(u32),
}

/// One chunk: where it lands in the expanded image and where its data is in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub kind: ChunkKind,
    /// First block of the expanded image this chunk covers.
    pub start_block: u32,
    /// Blocks covered (0 for CRC32).
    pub blocks: u32,
    /// Offset in the source of the chunk's RAW data (for a raw image: of its first block).
    /// For other kinds, offset just past the chunk (informational).
    pub data_offset: u64,
}

impl Chunk {
    /// One past the last block covered.
    pub fn end_block(&self) -> u64 {
        self.start_block as u64 + self.blocks as u64
    }
}

pub(crate) struct ChunkReader<S> {
    src: S,
    header: SparseHeader,
    next_index: u32,
    cur_block: u64,
    /// RAW bytes of the current chunk not yet read by the caller.
    pending: u64,
    pending_index: u32,
}

impl<S: Source> ChunkReader<S> {
    /// Reads and checks the file header (skipping extra header bytes).
    pub(crate) fn new(mut src: S) -> Result<Self, SparseError> {
        let mut bytes = [0u8; FILE_HEADER_LEN as usize];
        let got = src
            .read_full(&mut bytes)
            .map_err(|e| SparseError::io("reading the sparse header", e))?;
        if got >= 4 {
            let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if magic != SPARSE_MAGIC {
                return Err(SparseError::BadMagic { found: magic });
            }
        }
        let header = SparseHeader::parse(&bytes[..got])?;
        let extra = (header.file_hdr_sz - FILE_HEADER_LEN) as u64;
        skip_exact(&mut src, extra, "extra sparse header bytes")?;
        Ok(ChunkReader { src, header, next_index: 0, cur_block: 0, pending: 0, pending_index: 0 })
    }

    pub(crate) fn header(&self) -> &SparseHeader {
        &self.header
    }

    pub(crate) fn position(&self) -> u64 {
        self.src.position()
    }

    /// Number of chunks returned so far.
    pub(crate) fn chunks_read(&self) -> u32 {
        self.next_index
    }

    /// The next chunk, or `None` after the last one (when the block count is checked).
    /// Unread RAW data of the previous chunk is skipped first.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<Chunk>, SparseError> {
        if self.pending > 0 {
            let what = format!("RAW data of chunk {}", self.pending_index);
            let left = self.pending;
            self.pending = 0;
            skip_exact(&mut self.src, left, &what)?;
        }
        if self.next_index == self.header.total_chunks {
            if self.cur_block != self.header.total_blks as u64 {
                return Err(SparseError::BlockCountMismatch {
                    offset: self.src.position(),
                    chunks: self.next_index,
                    blocks: self.cur_block,
                    total_blks: self.header.total_blks,
                });
            }
            return Ok(None);
        }
        let index = self.next_index;
        let offset = self.src.position();
        let mut raw = [0u8; CHUNK_HEADER_LEN as usize];
        read_exact(&mut self.src, &mut raw, &format!("header of chunk {index}"))?;
        let extra = (self.header.chunk_hdr_sz - CHUNK_HEADER_LEN) as u64;
        skip_exact(&mut self.src, extra, &format!("extra header bytes of chunk {index}"))?;
        let ch = ChunkHeader::parse(&raw);
        let body = ch.check(&self.header, index, offset, self.cur_block)?;
        let kind = match ch.chunk_type {
            CHUNK_TYPE_RAW => ChunkKind::Raw,
            CHUNK_TYPE_FILL | CHUNK_TYPE_CRC32 => {
                let mut v = [0u8; 4];
                read_exact(&mut self.src, &mut v, &format!("value of chunk {index}"))?;
                let v = u32::from_le_bytes(v);
                if ch.chunk_type == CHUNK_TYPE_FILL {
                    ChunkKind::Fill(v)
                } else {
                    ChunkKind::Crc32(v)
                }
            }
            CHUNK_TYPE_DONT_CARE => ChunkKind::DontCare,
            // `check` has rejected every other type.
            other => {
                return Err(SparseError::BadChunk {
                    index,
                    offset,
                    field: "chunk_type",
                    value: other.into(),
                    problem: "is not a known chunk type".into(),
                })
            }
        };
        let data_offset = self.src.position();
        if kind == ChunkKind::Raw {
            self.pending = body;
            self.pending_index = index;
        }
        // `check` guarantees start + blocks <= total_blks <= u32::MAX.
        let chunk = Chunk {
            kind,
            start_block: self.cur_block as u32,
            blocks: ch.chunk_sz,
            data_offset,
        };
        self.cur_block += ch.chunk_sz as u64;
        self.next_index += 1;
        Ok(Some(chunk))
    }

    /// Skips the next `n` RAW bytes of the current chunk (no more than remain in it).
    pub(crate) fn skip_data(&mut self, n: u64) -> Result<(), SparseError> {
        let n = n.min(self.pending);
        let what = format!("RAW data of chunk {}", self.pending_index);
        skip_exact(&mut self.src, n, &what)?;
        self.pending -= n;
        Ok(())
    }

    /// Reads the next `buf.len()` RAW bytes of the current chunk (no more than remain in it).
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> Result<(), SparseError> {
        if buf.len() as u64 > self.pending {
            return Err(SparseError::Unrepresentable(format!(
                "internal error: {} bytes wanted from chunk {} which has {} left; please report this",
                buf.len(),
                self.pending_index,
                self.pending
            )));
        }
        let what = format!("RAW data of chunk {}", self.pending_index);
        read_exact(&mut self.src, buf, &what)?;
        self.pending -= buf.len() as u64;
        Ok(())
    }
}

pub(crate) fn read_exact<S: Source>(src: &mut S, buf: &mut [u8], what: &str) -> Result<(), SparseError> {
    let offset = src.position();
    let got = src
        .read_full(buf)
        .map_err(|e| SparseError::io(format!("reading {what} at offset {offset:#x}"), e))?;
    if got < buf.len() {
        return Err(SparseError::Truncated {
            what: what.to_string(),
            offset,
            needed: buf.len() as u64,
            available: got as u64,
        });
    }
    Ok(())
}

pub(crate) fn skip_exact<S: Source>(src: &mut S, n: u64, what: &str) -> Result<(), SparseError> {
    if n == 0 {
        return Ok(());
    }
    let offset = src.position();
    let got = src
        .skip(n)
        .map_err(|e| SparseError::io(format!("reading {what} at offset {offset:#x}"), e))?;
    if got < n {
        return Err(SparseError::Truncated { what: what.to_string(), offset, needed: n, available: got });
    }
    Ok(())
}
