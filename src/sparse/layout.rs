//! The layout of an image: which blocks are RAW data (and where that data sits in the source),
//! which are FILL, which are not defined. It is small (a few words per chunk) and holds no
//! image data, so it can be computed in one forward pass and then drive splitting and piece
//! production.

use super::error::SparseError;
use super::format::SparseHeader;
use super::reader::{Chunk, ChunkKind, ChunkReader};
use super::source::Source;

/// Whether the source is a sparse file or a plain ("raw") image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// An Android sparse file with this header.
    Sparse(SparseHeader),
    /// A plain image, seen as 4096-byte blocks; the last block is zero-padded when the length
    /// is not a multiple of 4096.
    Raw,
}

/// The chunks of an image and where their data is in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseLayout {
    pub format: ImageFormat,
    pub blk_sz: u32,
    pub total_blks: u32,
    /// Bytes of source the layout was read from: for a sparse file, up to the end of its last
    /// chunk (anything after it is ignored, as libsparse does); for a raw image, its length.
    pub source_len: u64,
    /// For a sparse file: its chunks in file order (DONT_CARE and CRC32 included). For a raw
    /// image: maximal runs of RAW blocks and of FILL blocks with one value, in block order
    /// (blocks are never DONT_CARE).
    pub chunks: Vec<Chunk>,
}

impl SparseLayout {
    /// Size of the expanded image in bytes.
    pub fn expanded_len(&self) -> u64 {
        self.total_blks as u64 * self.blk_sz as u64
    }

    pub fn is_sparse(&self) -> bool {
        matches!(self.format, ImageFormat::Sparse(_))
    }

    /// Blocks holding data (RAW or FILL).
    pub fn data_blocks(&self) -> u64 {
        self.chunks
            .iter()
            .filter(|c| matches!(c.kind, ChunkKind::Raw | ChunkKind::Fill(_)))
            .map(|c| c.blocks as u64)
            .sum()
    }

    pub(crate) fn from_sparse_reader<S: Source>(
        mut reader: ChunkReader<S>,
    ) -> Result<Self, SparseError> {
        let header = *reader.header();
        // total_chunks comes from the file: don't trust it for an allocation.
        let mut chunks = Vec::with_capacity((header.total_chunks as usize).min(4096));
        while let Some(chunk) = reader.next_chunk()? {
            chunks.push(chunk);
        }
        Ok(SparseLayout {
            format: ImageFormat::Sparse(header),
            blk_sz: header.blk_sz,
            total_blks: header.total_blks,
            source_len: reader.position(),
            chunks,
        })
    }
}
