//! Writing a sparse image's content into a partition-like target: RAW and FILL chunks land at
//! their absolute block offsets, DONT_CARE blocks are left untouched. Because of that, the
//! pieces of a split image can be decoded one after the other into the same target and build
//! the whole partition, which is what a device does with `flash:` after each `download:`.
//!
//! [`decode_into`] streams from a forward-only reader and writes as it goes, so a damaged
//! input can leave a partial write; [`decode_bytes_into`] checks the whole buffer first and
//! writes nothing when it is malformed (the simulator's case: it holds the downloaded piece).

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use super::error::SparseError;
use super::layout::SparseLayout;
use super::reader::{ChunkKind, ChunkReader};
use super::source::{ForwardSource, SeekSource, Source, COPY_BUF_LEN};

/// What a decode did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSummary {
    pub blk_sz: u32,
    pub total_blks: u32,
    /// `total_blks * blk_sz`: the size of the image this piece belongs to.
    pub expanded_len: u64,
    /// Blocks written (RAW and FILL); DONT_CARE blocks are not counted.
    pub blocks_written: u64,
    /// Chunks read.
    pub chunks: u32,
}

/// Decodes the sparse image read from `src` into `dst` at absolute block offsets
/// (`start_block * blk_sz` from the start of `dst`). DONT_CARE regions are not written and
/// `dst` is not truncated or extended beyond the last written block: the caller decides the
/// partition size (see [`DecodeSummary::expanded_len`]).
///
/// Errors stop the decode; what was written before stays written. Use [`decode_bytes_into`]
/// (or [`validate`] first) when a malformed input must write nothing.
pub fn decode_into<R: Read, W: Write + Seek>(
    src: R,
    dst: &mut W,
) -> Result<DecodeSummary, SparseError> {
    decode_from(ChunkReader::new(ForwardSource::new(src))?, dst)
}

/// Checks the whole sparse image in `bytes`, then decodes it into `dst` (see [`decode_into`]).
/// A malformed image writes nothing.
pub fn decode_bytes_into<W: Write + Seek>(
    bytes: &[u8],
    dst: &mut W,
) -> Result<DecodeSummary, SparseError> {
    validate(bytes)?;
    decode_into(bytes, dst)
}

/// Checks a complete sparse image held in memory and returns its layout, without writing
/// anything. Every structural rule of the format is checked (see the `format` module).
pub fn validate(bytes: &[u8]) -> Result<SparseLayout, SparseError> {
    let src = SeekSource::new(Cursor::new(bytes))
        .map_err(|e| SparseError::io("reading the in-memory image", e))?;
    SparseLayout::from_sparse_reader(ChunkReader::new(src)?)
}

fn decode_from<S: Source, W: Write + Seek>(
    mut reader: ChunkReader<S>,
    dst: &mut W,
) -> Result<DecodeSummary, SparseError> {
    let header = *reader.header();
    let blk_sz = header.blk_sz as u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut blocks_written = 0u64;
    while let Some(chunk) = reader.next_chunk()? {
        let at = chunk.start_block as u64 * blk_sz;
        let len = chunk.blocks as u64 * blk_sz;
        match chunk.kind {
            ChunkKind::Raw => {
                seek_to(dst, at)?;
                if buf.len() < COPY_BUF_LEN.min(len as usize) {
                    buf.resize(COPY_BUF_LEN.min(len as usize), 0);
                }
                let mut left = len;
                let mut pos = at;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    reader.read_data(&mut buf[..n])?;
                    dst.write_all(&buf[..n])
                        .map_err(|e| SparseError::io(format!("writing at offset {pos:#x}"), e))?;
                    left -= n as u64;
                    pos += n as u64;
                }
                blocks_written += chunk.blocks as u64;
            }
            ChunkKind::Fill(value) => {
                seek_to(dst, at)?;
                write_fill(dst, value, len, at)?;
                blocks_written += chunk.blocks as u64;
            }
            ChunkKind::DontCare | ChunkKind::Crc32(_) => {}
        }
    }
    Ok(DecodeSummary {
        blk_sz: header.blk_sz,
        total_blks: header.total_blks,
        expanded_len: header.expanded_len(),
        blocks_written,
        chunks: reader.chunks_read(),
    })
}

fn seek_to<W: Seek>(dst: &mut W, at: u64) -> Result<(), SparseError> {
    dst.seek(SeekFrom::Start(at))
        .map(|_| ())
        .map_err(|e| SparseError::io(format!("seeking the target to offset {at:#x}"), e))
}

/// Writes `len` bytes of the little-endian `value` repeated (`len` is a multiple of 4).
pub(crate) fn write_fill<W: Write + ?Sized>(
    dst: &mut W,
    value: u32,
    len: u64,
    at: u64,
) -> Result<(), SparseError> {
    let pattern = value.to_le_bytes();
    let buf_len = ((len.min(COPY_BUF_LEN as u64) as usize) & !3).max(4);
    let buf: Vec<u8> = pattern.iter().copied().cycle().take(buf_len).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        dst.write_all(&buf[..n]).map_err(|e| {
            SparseError::io(
                format!("writing fill data at offset {:#x}", at + (len - left)),
                e,
            )
        })?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::format::*;
    use crate::sparse::testutil::{build, expand, noise, Part};

    fn sample() -> Vec<Part> {
        vec![
            Part::Raw(noise(2 * 512, 1)),
            Part::Fill(0xdeadbeef, 3),
            Part::Skip(2),
            Part::Crc(0x1234),
            Part::Raw(noise(512, 2)),
            Part::Skip(1),
        ]
    }

    #[test]
    fn decodes_at_block_offsets_and_leaves_dont_care_untouched() {
        let parts = sample();
        let bytes = build(512, &parts);
        let mut dst = std::io::Cursor::new(vec![0xAAu8; 9 * 512]);
        let summary = decode_into(&bytes[..], &mut dst).unwrap();
        assert_eq!(dst.into_inner(), expand(512, &parts, 0xAA));
        assert_eq!(
            summary,
            DecodeSummary {
                blk_sz: 512,
                total_blks: 9,
                expanded_len: 9 * 512,
                blocks_written: 6,
                chunks: 6
            }
        );
    }

    #[test]
    fn validate_returns_layout() {
        let bytes = build(512, &sample());
        let layout = validate(&bytes).unwrap();
        assert_eq!(layout.chunks.len(), 6);
        assert_eq!(layout.source_len, bytes.len() as u64);
        assert_eq!(layout.chunks[1].kind, ChunkKind::Fill(0xdeadbeef));
        assert_eq!(layout.chunks[1].start_block, 2);
        assert_eq!(
            layout.chunks[4].data_offset,
            (28 + 12 + 1024 + 16 + 12 + 16 + 12) as u64
        );
        assert_eq!(layout.data_blocks(), 6);
    }

    #[test]
    fn malformed_input_writes_nothing() {
        let mut bytes = build(512, &sample());
        // Cut into the second RAW chunk: the first chunks are fine, the image is not.
        bytes.truncate(bytes.len() - 100);
        let mut dst = std::io::Cursor::new(vec![0xAAu8; 9 * 512]);
        let err = decode_bytes_into(&bytes, &mut dst).unwrap_err();
        assert!(matches!(err, SparseError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("RAW data of chunk 4"), "{err}");
        assert!(dst.into_inner().iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn block_count_mismatch_is_reported() {
        let mut bytes = build(512, &sample());
        bytes[16..20].copy_from_slice(&10u32.to_le_bytes());
        let err = validate(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                SparseError::BlockCountMismatch {
                    blocks: 9,
                    total_blks: 10,
                    ..
                }
            ),
            "{err}"
        );
        bytes[16..20].copy_from_slice(&8u32.to_le_bytes());
        let err = validate(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("chunk 5") && err.contains("runs past total_blks"),
            "{err}"
        );
    }

    #[test]
    fn longer_headers_are_skipped() {
        // file_hdr_sz 32 and chunk_hdr_sz 16, as some vendor tools write.
        let data = noise(1024, 3);
        let mut bytes = SparseHeader {
            file_hdr_sz: 32,
            chunk_hdr_sz: 16,
            ..SparseHeader::new(512, 3, 2)
        }
        .encode()
        .to_vec();
        bytes.extend_from_slice(&[0xEE; 4]);
        let raw = ChunkHeader {
            chunk_type: CHUNK_TYPE_RAW,
            reserved1: 0,
            chunk_sz: 2,
            total_sz: 16 + 1024,
        };
        bytes.extend_from_slice(&raw.encode());
        bytes.extend_from_slice(&[0xEE; 4]);
        bytes.extend_from_slice(&data);
        let fill = ChunkHeader {
            chunk_type: CHUNK_TYPE_FILL,
            reserved1: 0,
            chunk_sz: 1,
            total_sz: 20,
        };
        bytes.extend_from_slice(&fill.encode());
        bytes.extend_from_slice(&[0xEE; 4]);
        bytes.extend_from_slice(&7u32.to_le_bytes());
        let mut dst = std::io::Cursor::new(Vec::new());
        decode_bytes_into(&bytes, &mut dst).unwrap();
        let mut want = data;
        want.extend(std::iter::repeat([7u8, 0, 0, 0]).take(128).flatten());
        assert_eq!(dst.into_inner(), want);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = build(512, &sample());
        for cut in 0..bytes.len() {
            assert!(validate(&bytes[..cut]).is_err(), "cut at {cut}");
            let mut dst = std::io::Cursor::new(Vec::new());
            assert!(
                decode_into(&bytes[..cut], &mut dst).is_err(),
                "cut at {cut}"
            );
        }
    }
}
