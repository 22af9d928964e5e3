//! The one error type of the sparse library. Every variant names where in the input the
//! problem is (byte offset, chunk number, field, or file line) and renders as a sentence a
//! user can act on.

use std::io;

/// Everything that can go wrong while reading, splitting or writing sparse images, or while
/// reading CRC lists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SparseError {
    /// The input ended before a structure was complete.
    #[error(
        "{what} at offset {offset:#x}: the input ends after {available} of {needed} bytes; \
         the image is truncated (download or extract it again)"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },

    /// The first four bytes are not the sparse magic.
    #[error(
        "sparse header at offset 0x0: magic {found:#010x} is not 0xed26ff3a; \
         this is not an Android sparse image"
    )]
    BadMagic { found: u32 },

    /// A field of the 28-byte file header is out of range.
    #[error("sparse header at offset {offset:#x}: {field} {value:#x} {problem}")]
    BadHeader {
        offset: u64,
        field: &'static str,
        value: u64,
        problem: String,
    },

    /// A chunk header is inconsistent (size, type, block count).
    #[error("chunk {index} at offset {offset:#x}: {field} {value:#x} {problem}")]
    BadChunk {
        index: u32,
        offset: u64,
        field: &'static str,
        value: u64,
        problem: String,
    },

    /// After all `total_chunks` chunks the block count does not reach `total_blks`.
    #[error(
        "sparse image ends at offset {offset:#x} after {chunks} chunks covering {blocks} blocks, \
         but the header says total_blks {total_blks}; the image is damaged"
    )]
    BlockCountMismatch {
        offset: u64,
        chunks: u32,
        blocks: u64,
        total_blks: u32,
    },

    /// The image cannot be described by one sparse file (e.g. more than 2^32-1 blocks).
    #[error("{0}")]
    Unrepresentable(String),

    /// The download limit is too small to make progress with this block size.
    #[error(
        "max-download-size {max_len:#x} is too small to split an image with {blk_sz}-byte blocks \
         (at least {min:#x} is needed); check the value reported by the device or given with \
         --max-download-size"
    )]
    LimitTooSmall { max_len: u64, min: u64, blk_sz: u32 },

    /// The download limit is larger than a fastboot `download:%08x` command can carry.
    #[error("max-download-size {max_len:#x} is above 0xffffffff; fastboot cannot send that much at once")]
    LimitTooLarge { max_len: u64 },

    /// While producing pieces, the source no longer matches the layout computed from it.
    #[error(
        "the image changed while it was being read: at offset {offset:#x} {detail}; \
         make sure nothing writes to the file during flashing and start again"
    )]
    SourceChanged { offset: u64, detail: String },

    /// Pieces must be produced in order from one forward pass over the source.
    #[error("piece {index} was requested out of order (next is piece {expected}); pieces consume the source in order")]
    PieceOutOfOrder { index: usize, expected: usize },

    /// A line of crclist.txt / sparsecrclist.txt cannot be read.
    #[error("{file} line {line}: {problem}")]
    CrcListSyntax {
        file: String,
        line: usize,
        problem: String,
    },

    /// An I/O error from the reader or writer the caller passed in.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl SparseError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        SparseError::Io {
            context: context.into(),
            source,
        }
    }
}
