//! Properties of the sparse library over generated and mutated inputs: nothing panics, and
//! for every image that reads as valid, its pieces (for any limit) decode back to the image
//! and carry the CRCs the scan predicted.

use std::io::Cursor;

use mi_flash::sparse::{
    decode_into, scan, split, validate, ChunkKind, PieceWriter, ScanOptions, SparseLayout,
    PIECE_OVERHEAD,
};
use proptest::prelude::*;

/// Largest expanded image the properties decode into memory.
const MAX_EXPANDED: u64 = 4 << 20;

/// A target that refuses to grow past `MAX_EXPANDED`, like a full partition: decoding a
/// mutated image that claims terabytes ends with an error instead of eating the memory.
struct Bounded(Cursor<Vec<u8>>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.position() + buf.len() as u64 > MAX_EXPANDED {
            return Err(std::io::Error::other("partition full"));
        }
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for Bounded {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(to)
    }
}

fn bounded() -> Bounded {
    Bounded(Cursor::new(Vec::new()))
}

#[derive(Debug, Clone)]
enum Spec {
    Raw(u32, u8),
    Fill(u32, u32),
    Skip(u32),
    Crc,
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (1..24u32, any::<u8>()).prop_map(|(n, s)| Spec::Raw(n, s)),
        (
            1..40u32,
            prop_oneof![Just(0u32), Just(0xdeadbeef), any::<u32>()]
        )
            .prop_map(|(n, v)| Spec::Fill(n, v)),
        (0..30u32).prop_map(Spec::Skip),
        Just(Spec::Crc),
    ]
}

fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut x = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn build(blk_sz: u32, specs: &[Spec]) -> Vec<u8> {
    let bs = blk_sz as usize;
    let blocks = |s: &Spec| match s {
        Spec::Raw(n, _) | Spec::Fill(n, _) | Spec::Skip(n) => *n,
        Spec::Crc => 0,
    };
    let mut total: u32 = specs.iter().map(blocks).sum();
    let mut chunks: Vec<(u16, u32, Vec<u8>)> = specs
        .iter()
        .map(|s| match s {
            Spec::Raw(n, seed) => (0xCAC1, *n, noise(*n as usize * bs, *seed)),
            Spec::Fill(n, v) => (0xCAC2, *n, v.to_le_bytes().to_vec()),
            Spec::Skip(n) => (0xCAC3, *n, vec![]),
            Spec::Crc => (0xCAC4, 0, vec![1, 2, 3, 4]),
        })
        .collect();
    if total == 0 {
        chunks.push((0xCAC3, 1, vec![]));
        total = 1;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0xed26ff3au32.to_le_bytes());
    out.extend_from_slice(&[1, 0, 0, 0, 28, 0, 12, 0]);
    for v in [blk_sz, total, chunks.len() as u32, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (ty, n, body) in chunks {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// CRC-32 of the RAW and expanded FILL data of an encoded piece.
fn piece_data_crc(piece: &[u8]) -> u32 {
    let layout = validate(piece).unwrap();
    let mut h = crc32fast::Hasher::new();
    for c in &layout.chunks {
        let len = c.blocks as usize * layout.blk_sz as usize;
        match c.kind {
            ChunkKind::Raw => {
                h.update(&piece[c.data_offset as usize..c.data_offset as usize + len])
            }
            ChunkKind::Fill(v) => {
                let fill: Vec<u8> = v.to_le_bytes().iter().copied().cycle().take(len).collect();
                h.update(&fill);
            }
            _ => {}
        }
    }
    h.finalize()
}

/// Splits `image` with `limit` and checks every property; the image must be valid and small.
fn check_split(image: &[u8], limit: u64) -> Result<(), TestCaseError> {
    let scanned = scan(
        image,
        &ScanOptions {
            file_crc: true,
            data_crc: true,
            piece_crcs_for: Some(limit),
            check_crc_chunks: false,
        },
    )
    .unwrap();
    let layout = &scanned.layout;
    let mut expected = Cursor::new(vec![0u8; layout.expanded_len() as usize]);
    if layout.is_sparse() {
        decode_into(image, &mut expected).unwrap();
    } else {
        expected.get_mut()[..image.len()].copy_from_slice(image);
    }
    let pieces = split(layout, limit).unwrap();
    let mut writer = PieceWriter::new(image, layout).unwrap();
    let mut rebuilt = Cursor::new(vec![0u8; layout.expanded_len() as usize]);
    let mut crcs = Vec::new();
    for p in &pieces {
        let mut bytes = Vec::new();
        writer.write_piece(p, &mut bytes).unwrap();
        prop_assert_eq!(bytes.len() as u64, p.encoded_len());
        prop_assert!(
            bytes.len() as u64 <= limit,
            "piece {} is {} bytes, limit {}",
            p.index,
            bytes.len(),
            limit
        );
        let summary = decode_into(&bytes[..], &mut rebuilt).unwrap();
        prop_assert_eq!(summary.blocks_written, p.data_blocks());
        crcs.push(piece_data_crc(&bytes));
    }
    prop_assert!(
        rebuilt.into_inner() == expected.into_inner(),
        "pieces do not rebuild the image"
    );
    if image.len() as u64 > limit {
        prop_assert_eq!(&scanned.piece_crcs.unwrap().crcs, &crcs);
    }
    prop_assert_eq!(scanned.file_crc, Some(crc32fast::hash(image)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn sparse_images_split_and_rebuild(
        specs in prop::collection::vec(spec(), 0..30),
        blk_sz in prop_oneof![Just(512u32), Just(1024), Just(4096)],
        limit_blocks in 8u64..64,
        extra in 0u64..4096,
    ) {
        let image = build(blk_sz, &specs);
        let limit = limit_blocks * blk_sz as u64 + PIECE_OVERHEAD + 12 + extra;
        check_split(&image, limit)?;
    }

    #[test]
    fn raw_images_split_and_rebuild(
        blocks in prop::collection::vec((0u8..4, any::<u8>()), 1..60),
        tail in 0usize..4096,
        limit_blocks in 8u64..40,
        extra in 0u64..4096,
    ) {
        let mut image = Vec::new();
        for (kind, seed) in blocks {
            match kind {
                0 => image.extend(noise(4096, seed)),
                1 => image.extend([0u8; 4096]),
                2 => image.extend([seed; 4096]),
                _ => {
                    let mut b = [seed; 4096];
                    b[seed as usize * 16] ^= 1;
                    image.extend(b);
                }
            }
        }
        image.extend(noise(tail, 9));
        let limit = limit_blocks * 4096 + PIECE_OVERHEAD + 12 + extra;
        check_split(&image, limit)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate(&bytes);
        let _ = decode_into(&bytes[..], &mut bounded());
        let _ = SparseLayout::read_seekable(Cursor::new(&bytes));
        let _ = scan(&bytes[..], &ScanOptions { file_crc: true, data_crc: true, piece_crcs_for: Some(1 << 16), check_crc_chunks: false });
    }

    #[test]
    fn mutated_images_never_panic_and_valid_ones_still_rebuild(
        specs in prop::collection::vec(spec(), 1..12),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut image = build(512, &specs);
        for (at, value) in edits {
            let i = at.index(image.len());
            image[i] = value;
        }
        if truncate {
            image.truncate(cut.index(image.len() + 1));
        }
        let _ = decode_into(&image[..], &mut bounded());
        if let Ok(layout) = validate(&image) {
            prop_assert_eq!(SparseLayout::read(&image[..]).unwrap(), layout.clone());
            if layout.expanded_len() <= MAX_EXPANDED {
                check_split(&image, 16 * layout.blk_sz as u64 + PIECE_OVERHEAD + 12)?;
            }
        } else {
            prop_assert!(scan(&image[..], &ScanOptions::default()).map(|s| !s.layout.is_sparse()).unwrap_or(true));
        }
    }
}
