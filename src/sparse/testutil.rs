//! Builders for hand-made sparse files used by the unit tests.

use super::format::*;

pub(crate) enum Part {
    Raw(Vec<u8>),
    Fill(u32, u32),
    Skip(u32),
    Crc(u32),
}

pub(crate) fn blocks_of(blk_sz: u32, p: &Part) -> u32 {
    match p {
        Part::Raw(d) => (d.len() / blk_sz as usize) as u32,
        Part::Fill(_, n) | Part::Skip(n) => *n,
        Part::Crc(_) => 0,
    }
}

/// A sparse file with these chunks and `total_blks` = their sum.
pub(crate) fn build(blk_sz: u32, parts: &[Part]) -> Vec<u8> {
    let total: u32 = parts.iter().map(|p| blocks_of(blk_sz, p)).sum();
    let mut out = SparseHeader::new(blk_sz, total, parts.len() as u32)
        .encode()
        .to_vec();
    for p in parts {
        let blocks = blocks_of(blk_sz, p);
        let (ty, body): (u16, Vec<u8>) = match p {
            Part::Raw(d) => (CHUNK_TYPE_RAW, d.clone()),
            Part::Fill(v, _) => (CHUNK_TYPE_FILL, v.to_le_bytes().to_vec()),
            Part::Skip(_) => (CHUNK_TYPE_DONT_CARE, vec![]),
            Part::Crc(v) => (CHUNK_TYPE_CRC32, v.to_le_bytes().to_vec()),
        };
        let h = ChunkHeader {
            chunk_type: ty,
            reserved1: 0,
            chunk_sz: blocks,
            total_sz: 12 + body.len() as u32,
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(&body);
    }
    out
}

/// The expanded image, DONT_CARE blocks shown as `skip_byte`.
pub(crate) fn expand(blk_sz: u32, parts: &[Part], skip_byte: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        match p {
            Part::Raw(d) => out.extend_from_slice(d),
            Part::Fill(v, n) => {
                for _ in 0..(*n as usize * blk_sz as usize / 4) {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Part::Skip(n) => {
                out.extend(std::iter::repeat(skip_byte).take(*n as usize * blk_sz as usize))
            }
            Part::Crc(_) => {}
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), never four equal u32 words in a row.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
