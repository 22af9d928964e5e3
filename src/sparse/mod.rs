//! Android sparse images: read, check, decode, lay out, split and write them, and compute and
//! check Xiaomi's CRC lists. A pure library: callers hand in readers and writers, nothing here
//! opens files or talks to a device.
//!
//! The split reproduces AOSP libsparse (`sparse_file_resparse`, as used by fastboot 29.0.6)
//! piece for piece and byte for byte, because Xiaomi bootloaders check per-piece CRCs computed
//! for exactly that split.

mod crclist;
mod decode;
mod error;
mod format;
mod layout;
mod reader;
mod scan;
mod source;
mod split;
mod write;

pub use crclist::{
    python_hex, CrcEntry, CrcList, CrcMismatch, CrcVerdict, MismatchKind, SparseCrcEntry,
    SparseCrcList, SparseCrcValues, NEW_SPARSE_CRC_SPLIT, OLD_SPARSE_CRC_SPLIT,
};
pub use decode::{decode_bytes_into, decode_into, validate, DecodeSummary};
pub(crate) use decode::write_fill;
pub(crate) use source::read_full_from;
pub use error::SparseError;
pub use format::{
    is_sparse, ChunkHeader, SparseHeader, CHUNK_HEADER_LEN, CHUNK_TYPE_CRC32, CHUNK_TYPE_DONT_CARE,
    CHUNK_TYPE_FILL, CHUNK_TYPE_RAW, FILE_HEADER_LEN, SPARSE_MAGIC,
};
pub use layout::{ImageFormat, SparseLayout};
pub use reader::{Chunk, ChunkKind};
pub use scan::{scan, scan_seekable, ImageScan, PieceCrcs, ScanOptions, RAW_BLOCK_SIZE};
pub use split::{
    plan_download, resparse_limit, single_piece, split, DownloadPlan, PieceChunk, PieceData,
    SparsePiece, PIECE_OVERHEAD, RESPARSE_LIMIT,
};
pub use write::PieceWriter;

#[cfg(test)]
pub(crate) mod testutil;
