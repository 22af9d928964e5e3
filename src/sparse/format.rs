//! The on-disk sparse format: the 28-byte file header and the 12-byte chunk header, their
//! checks, and their encoding. All fields are little-endian.
//!
//! The checks follow what AOSP libsparse's reader accepts, made stricter where libsparse would
//! misbehave on hostile input (zero or unaligned block size, chunks past `total_blks`,
//! arithmetic overflow): a piece that passes here decodes the same everywhere.

use super::error::SparseError;

/// `0xed26ff3a`, stored as bytes `3a ff 26 ed`.
pub const SPARSE_MAGIC: u32 = 0xed26_ff3a;
/// Length of the file header this library writes (and the minimum it reads).
pub const FILE_HEADER_LEN: u16 = 28;
/// Length of the chunk header this library writes (and the minimum it reads).
pub const CHUNK_HEADER_LEN: u16 = 12;
/// Chunk types.
pub const CHUNK_TYPE_RAW: u16 = 0xCAC1;
pub const CHUNK_TYPE_FILL: u16 = 0xCAC2;
pub const CHUNK_TYPE_DONT_CARE: u16 = 0xCAC3;
pub const CHUNK_TYPE_CRC32: u16 = 0xCAC4;

/// True when `first_bytes` start with the sparse magic. Four bytes are enough; a shorter
/// slice is never sparse. This only sniffs the format: use [`super::validate`] or the
/// layout scanners to know whether the image is well formed.
pub fn is_sparse(first_bytes: &[u8]) -> bool {
    first_bytes.len() >= 4 && read_u32(first_bytes, 0) == SPARSE_MAGIC
}

/// The sparse file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseHeader {
    pub major_version: u16,
    pub minor_version: u16,
    pub file_hdr_sz: u16,
    pub chunk_hdr_sz: u16,
    pub blk_sz: u32,
    pub total_blks: u32,
    pub total_chunks: u32,
    pub image_checksum: u32,
}

impl SparseHeader {
    /// The header libsparse writes for a file of `total_blks` blocks in `total_chunks` chunks
    /// (version 1.0, standard header sizes, checksum 0).
    pub fn new(blk_sz: u32, total_blks: u32, total_chunks: u32) -> Self {
        SparseHeader {
            major_version: 1,
            minor_version: 0,
            file_hdr_sz: FILE_HEADER_LEN,
            chunk_hdr_sz: CHUNK_HEADER_LEN,
            blk_sz,
            total_blks,
            total_chunks,
            image_checksum: 0,
        }
    }

    /// Parses and checks the first 28 bytes of a sparse file.
    pub fn parse(bytes: &[u8]) -> Result<Self, SparseError> {
        if bytes.len() < FILE_HEADER_LEN as usize {
            return Err(SparseError::Truncated {
                what: "sparse header".into(),
                offset: 0,
                needed: FILE_HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        }
        let magic = read_u32(bytes, 0);
        if magic != SPARSE_MAGIC {
            return Err(SparseError::BadMagic { found: magic });
        }
        let header = SparseHeader {
            major_version: read_u16(bytes, 4),
            minor_version: read_u16(bytes, 6),
            file_hdr_sz: read_u16(bytes, 8),
            chunk_hdr_sz: read_u16(bytes, 10),
            blk_sz: read_u32(bytes, 12),
            total_blks: read_u32(bytes, 16),
            total_chunks: read_u32(bytes, 20),
            image_checksum: read_u32(bytes, 24),
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<(), SparseError> {
        let bad = |offset: u64, field: &'static str, value: u64, problem: &str| {
            Err(SparseError::BadHeader {
                offset,
                field,
                value,
                problem: problem.into(),
            })
        };
        if self.major_version != 1 {
            return bad(
                4,
                "major_version",
                self.major_version.into(),
                "is not 1 (this sparse format version is not supported)",
            );
        }
        if self.file_hdr_sz < FILE_HEADER_LEN {
            return bad(8, "file_hdr_sz", self.file_hdr_sz.into(), "is below 28");
        }
        if self.chunk_hdr_sz < CHUNK_HEADER_LEN {
            return bad(10, "chunk_hdr_sz", self.chunk_hdr_sz.into(), "is below 12");
        }
        if self.blk_sz == 0 || self.blk_sz % 4 != 0 {
            return bad(
                12,
                "blk_sz",
                self.blk_sz.into(),
                "is not a non-zero multiple of 4",
            );
        }
        if self.total_blks == 0 {
            return bad(16, "total_blks", 0, "is zero (an empty image)");
        }
        Ok(())
    }

    /// Size of the expanded image in bytes (`total_blks * blk_sz`).
    pub fn expanded_len(&self) -> u64 {
        self.total_blks as u64 * self.blk_sz as u64
    }

    /// The 28 bytes of this header. Extra header bytes (`file_hdr_sz > 28`) are not kept, so
    /// this is only used for headers this library writes.
    pub fn encode(&self) -> [u8; 28] {
        let mut out = [0u8; 28];
        out[0..4].copy_from_slice(&SPARSE_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&self.major_version.to_le_bytes());
        out[6..8].copy_from_slice(&self.minor_version.to_le_bytes());
        out[8..10].copy_from_slice(&self.file_hdr_sz.to_le_bytes());
        out[10..12].copy_from_slice(&self.chunk_hdr_sz.to_le_bytes());
        out[12..16].copy_from_slice(&self.blk_sz.to_le_bytes());
        out[16..20].copy_from_slice(&self.total_blks.to_le_bytes());
        out[20..24].copy_from_slice(&self.total_chunks.to_le_bytes());
        out[24..28].copy_from_slice(&self.image_checksum.to_le_bytes());
        out
    }
}

/// A chunk header as stored (12 bytes; longer headers carry ignored extra bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub chunk_type: u16,
    pub reserved1: u16,
    /// Blocks of output this chunk covers.
    pub chunk_sz: u32,
    /// Bytes of this chunk in the file, header included.
    pub total_sz: u32,
}

impl ChunkHeader {
    pub fn parse(bytes: &[u8; 12]) -> Self {
        ChunkHeader {
            chunk_type: read_u16(bytes, 0),
            reserved1: read_u16(bytes, 2),
            chunk_sz: read_u32(bytes, 4),
            total_sz: read_u32(bytes, 8),
        }
    }

    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[0..2].copy_from_slice(&self.chunk_type.to_le_bytes());
        out[2..4].copy_from_slice(&self.reserved1.to_le_bytes());
        out[4..8].copy_from_slice(&self.chunk_sz.to_le_bytes());
        out[8..12].copy_from_slice(&self.total_sz.to_le_bytes());
        out
    }

    /// Checks this header against the file header and the blocks already covered, and returns
    /// the bytes of chunk body that follow the header (RAW data, fill value or CRC).
    ///
    /// `index` and `offset` (of the chunk header) only serve the error message.
    pub fn check(
        &self,
        file: &SparseHeader,
        index: u32,
        offset: u64,
        blocks_before: u64,
    ) -> Result<u64, SparseError> {
        let bad = |field: &'static str, value: u64, problem: String| {
            Err(SparseError::BadChunk {
                index,
                offset,
                field,
                value,
                problem,
            })
        };
        let hdr = file.chunk_hdr_sz as u64;
        let total = self.total_sz as u64;
        let blocks = self.chunk_sz as u64;
        let body = match total.checked_sub(hdr) {
            Some(body) => body,
            None => {
                return bad(
                    "total_sz",
                    total,
                    format!("is smaller than chunk_hdr_sz {hdr:#x}"),
                );
            }
        };
        match self.chunk_type {
            CHUNK_TYPE_RAW => {
                let want = blocks * file.blk_sz as u64 + hdr;
                if total != want {
                    return bad(
                        "total_sz",
                        total,
                        format!(
                            "does not match chunk_sz*blk_sz+{hdr} = {blocks:#x}*{:#x}+{hdr} = {want:#x}",
                            file.blk_sz
                        ),
                    );
                }
            }
            CHUNK_TYPE_FILL | CHUNK_TYPE_CRC32 => {
                if body != 4 {
                    return bad(
                        "total_sz",
                        total,
                        format!("is not {:#x} (header + 4-byte value)", hdr + 4),
                    );
                }
            }
            CHUNK_TYPE_DONT_CARE => {
                if body != 0 {
                    return bad(
                        "total_sz",
                        total,
                        format!("is not {hdr:#x} (a DONT_CARE chunk has no body)"),
                    );
                }
            }
            other => {
                return bad(
                    "chunk_type",
                    other.into(),
                    "is not a known chunk type (RAW 0xcac1, FILL 0xcac2, DONT_CARE 0xcac3, CRC32 0xcac4)".into(),
                );
            }
        }
        match self.chunk_type {
            CHUNK_TYPE_RAW | CHUNK_TYPE_FILL if blocks == 0 => {
                return bad(
                    "chunk_sz",
                    0,
                    "is zero: a data chunk must cover at least one block".into(),
                );
            }
            CHUNK_TYPE_CRC32 if blocks != 0 => {
                return bad("chunk_sz", blocks, "is not 0 for a CRC32 chunk".into());
            }
            _ => {}
        }
        let end = blocks_before + blocks;
        if end > file.total_blks as u64 {
            return bad(
                "chunk_sz",
                blocks,
                format!(
                    "runs past total_blks {:#x} (chunk starts at block {blocks_before:#x})",
                    file.total_blks
                ),
            );
        }
        Ok(body)
    }
}

pub(crate) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes() -> Vec<u8> {
        SparseHeader::new(4096, 16, 1).encode().to_vec()
    }

    #[test]
    fn sniffs_magic() {
        assert!(is_sparse(&[0x3a, 0xff, 0x26, 0xed]));
        assert!(!is_sparse(&[0x3a, 0xff, 0x26]));
        assert!(!is_sparse(b"ANDROID!"));
    }

    #[test]
    fn header_round_trips() {
        let h = SparseHeader::parse(&header_bytes()).unwrap();
        assert_eq!(h, SparseHeader::new(4096, 16, 1));
        assert_eq!(h.expanded_len(), 16 * 4096);
    }

    #[test]
    fn header_rejections_name_field_and_offset() {
        let cases: [(usize, u32, &str); 5] = [
            (12, 0, "blk_sz 0x0"),
            (12, 4098, "blk_sz 0x1002"),
            (16, 0, "total_blks 0x0"),
            (4, 2, "major_version 0x2"),
            (10, 8, "chunk_hdr_sz 0x8"),
        ];
        for (at, value, text) in cases {
            let mut b = header_bytes();
            if at == 4 || at == 10 {
                b[at..at + 2].copy_from_slice(&(value as u16).to_le_bytes());
            } else {
                b[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            let err = SparseHeader::parse(&b).unwrap_err().to_string();
            assert!(err.contains(text), "{err}");
            assert!(err.contains(&format!("offset {at:#x}")), "{err}");
        }
        assert!(matches!(
            SparseHeader::parse(&header_bytes()[..27]),
            Err(SparseError::Truncated { .. })
        ));
        assert!(matches!(
            SparseHeader::parse(&[0u8; 28]),
            Err(SparseError::BadMagic { found: 0 })
        ));
    }

    #[test]
    fn chunk_checks() {
        let file = SparseHeader::new(4096, 16, 1);
        let raw = ChunkHeader {
            chunk_type: CHUNK_TYPE_RAW,
            reserved1: 0,
            chunk_sz: 2,
            total_sz: 12 + 8192,
        };
        assert_eq!(raw.check(&file, 0, 28, 0).unwrap(), 8192);
        let err = ChunkHeader {
            total_sz: 12 + 8191,
            ..raw
        }
        .check(&file, 3, 0x1c, 0)
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "chunk 3 at offset 0x1c: total_sz 0x200b does not match chunk_sz*blk_sz+12 = 0x2*0x1000+12 = 0x200c"
        );
        assert!(raw.check(&file, 0, 28, 15).is_err(), "runs past total_blks");
        let fill = ChunkHeader {
            chunk_type: CHUNK_TYPE_FILL,
            reserved1: 0,
            chunk_sz: 16,
            total_sz: 16,
        };
        assert_eq!(fill.check(&file, 0, 28, 0).unwrap(), 4);
        assert!(ChunkHeader {
            total_sz: 20,
            ..fill
        }
        .check(&file, 0, 28, 0)
        .is_err());
        let skip = ChunkHeader {
            chunk_type: CHUNK_TYPE_DONT_CARE,
            reserved1: 0,
            chunk_sz: 16,
            total_sz: 12,
        };
        assert_eq!(skip.check(&file, 0, 28, 0).unwrap(), 0);
        let unknown = ChunkHeader {
            chunk_type: 0xCAC5,
            ..skip
        };
        assert!(unknown
            .check(&file, 0, 28, 0)
            .unwrap_err()
            .to_string()
            .contains("chunk_type 0xcac5"));
        let tiny = ChunkHeader {
            total_sz: 4,
            ..skip
        };
        assert!(tiny.check(&file, 0, 28, 0).is_err());
    }
}
