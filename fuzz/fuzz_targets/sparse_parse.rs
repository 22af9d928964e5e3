//! Android sparse images from a ROM package or a host that may send anything.
//!
//! The input is taken as an image file (sparse or raw). Checks, besides "no panic, no hang,
//! no huge allocation":
//! * `validate` and a forward-only `scan` agree on the layout;
//! * decoding into a target that refuses to grow past 1 MiB fails cleanly;
//! * for images up to 1 MiB expanded, every split (several download limits) produces pieces
//!   whose bytes have exactly the announced length, are valid sparse files, and decode — one
//!   after the other into one target — to exactly what decoding the whole image gives;
//! * the per-piece CRCs a scan computes in one pass (Xiaomi's `sparsecrclist.txt` values: the
//!   CRC-32 of each piece's RAW data and expanded FILL data) match the pieces written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mi_flash::sparse::{
    self, plan_download, split, ChunkKind, DownloadPlan, ImageFormat, PieceWriter, ScanOptions, SparseLayout,
    PIECE_OVERHEAD,
};
use std::io::{self, Cursor, Seek, SeekFrom, Write};

/// Largest expanded image the round-trip checks build in memory (small: every input that
/// reaches it allocates it several times, and speed is coverage).
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let validated = sparse::validate(data);
    let scanned = sparse::scan(data, &ScanOptions::default());
    if let (Ok(v), Ok(s)) = (&validated, &scanned) {
        assert_eq!(v, &s.layout, "validate and scan disagree on the layout");
    }
    if sparse::is_sparse(data) {
        assert_eq!(validated.is_ok(), scanned.is_ok(), "validate and scan disagree: {validated:?} / {:?}", scanned.as_ref().err());
    }

    // The streaming decoder writes as it reads: a bounded target must stop it with an error.
    let mut target = Capped::new();
    let _ = sparse::decode_into(data, &mut target);

    let Ok(layout) = scanned.map(|s| s.layout) else { return };
    if layout.expanded_len() > CAP {
        return;
    }
    let whole = expand(data, &layout);
    for max_len in limits(&layout) {
        check_split(data, &layout, &whole, max_len);
    }
    for mds in [None, Some(0), Some(layout.source_len), Some(layout.source_len.saturating_sub(1))] {
        if let Ok(plan) = plan_download(&layout, mds) {
            if let DownloadPlan::Unchanged { len } = plan {
                assert_eq!(len, layout.source_len);
            }
        }
    }
});

/// The image as the device would hold it: decoded sparse data, or the raw bytes padded to
/// whole blocks.
fn expand(data: &[u8], layout: &SparseLayout) -> Vec<u8> {
    let len = layout.expanded_len() as usize;
    match layout.format {
        ImageFormat::Sparse(_) => {
            let mut target = Cursor::new(vec![0u8; len]);
            sparse::decode_bytes_into(data, &mut target).expect("a validated image decodes");
            let mut out = target.into_inner();
            assert_eq!(out.len(), len, "decoding wrote past the expanded length");
            out.truncate(len);
            out
        }
        ImageFormat::Raw => {
            let mut out = data.to_vec();
            out.resize(len, 0);
            out
        }
    }
}

/// A few download limits around the smallest one the splitter accepts for this block size.
fn limits(layout: &SparseLayout) -> Vec<u64> {
    let bs = layout.blk_sz as u64;
    let min = 8 * bs + PIECE_OVERHEAD + 12;
    let mut v = vec![min - 1, min, min + bs / 2 + 3, 2 * min + 7, 3 * min, layout.source_len, layout.source_len + 1];
    v.retain(|&m| m <= CAP);
    v.dedup();
    v
}

fn check_split(data: &[u8], layout: &SparseLayout, whole: &[u8], max_len: u64) {
    let Ok(pieces) = split(layout, max_len) else { return };
    let mut written = Vec::with_capacity(pieces.len());
    let mut writer = PieceWriter::new(data, layout).expect("a scanned image opens for writing pieces");
    let mut rebuilt = Cursor::new(vec![0u8; whole.len()]);
    for piece in &pieces {
        let mut bytes = Vec::new();
        let n = writer.write_piece(piece, &mut bytes).expect("pieces of a scanned image write");
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(n, piece.encoded_len(), "piece {} is not as long as announced", piece.index);
        assert!(n <= max_len.max(PIECE_OVERHEAD), "piece {} is longer than the limit {max_len}", piece.index);
        let piece_layout = sparse::validate(&bytes).expect("a written piece is a valid sparse file");
        assert_eq!(piece_layout.total_blks, layout.total_blks);
        sparse::decode_bytes_into(&bytes, &mut rebuilt).expect("a written piece decodes");
        written.push(bytes);
    }
    assert!(rebuilt.get_ref()[..] == whole[..], "decoding the pieces does not rebuild the image (limit {max_len})");

    // Pieces served out of order from a seekable source are the same bytes.
    let mut seekable = PieceWriter::seekable(Cursor::new(data), layout).expect("seekable writer");
    for piece in pieces.iter().rev() {
        let mut bytes = Vec::new();
        seekable.write_piece(piece, &mut bytes).expect("seekable piece writes");
        assert!(bytes == written[piece.index], "seekable piece {} differs", piece.index);
    }

    // The one-pass scan's per-piece CRCs are those of the pieces fastboot would send.
    let opts = ScanOptions { file_crc: true, data_crc: true, piece_crcs_for: Some(max_len), check_crc_chunks: true };
    let scan = sparse::scan(data, &opts).expect("the image scanned before scans again");
    let crcs = scan.piece_crcs.expect("piece CRCs were asked for").crcs;
    match plan_download(layout, Some(max_len)).expect("split worked, so planning works") {
        DownloadPlan::Pieces { pieces: planned, .. } => {
            assert_eq!(planned, pieces);
            let actual: Vec<u32> = written.iter().map(|b| data_crc(b)).collect();
            assert_eq!(crcs, actual, "scan's piece CRCs differ from the pieces written (limit {max_len})");
        }
        DownloadPlan::Unchanged { .. } => assert_eq!(crcs.len(), 1),
    }
    // The file CRC covers the image's bytes (for a sparse file, up to the end of its last chunk).
    assert_eq!(scan.file_crc, Some(crc32fast::hash(&data[..layout.source_len as usize])));
}

/// CRC-32 of a sparse file's RAW data and expanded FILL data in chunk order, DONT_CARE skipped.
fn data_crc(piece: &[u8]) -> u32 {
    let layout = sparse::validate(piece).expect("a written piece is a valid sparse file");
    let bs = layout.blk_sz as usize;
    let mut h = crc32fast::Hasher::new();
    for c in &layout.chunks {
        let len = c.blocks as usize * bs;
        match c.kind {
            ChunkKind::Raw => h.update(&piece[c.data_offset as usize..][..len]),
            ChunkKind::Fill(v) => {
                let block: Vec<u8> = v.to_le_bytes().iter().copied().cycle().take(bs).collect();
                for _ in 0..c.blocks {
                    h.update(&block);
                }
            }
            ChunkKind::DontCare | ChunkKind::Crc32(_) => {}
        }
    }
    h.finalize()
}

/// A write target that refuses to grow beyond [`CAP`], so that a FILL of 4 GiB or a seek to
/// the end of a huge partition fails instead of allocating.
struct Capped(Cursor<Vec<u8>>);

impl Capped {
    fn new() -> Self {
        Capped(Cursor::new(Vec::new()))
    }
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.position() + buf.len() as u64 > CAP {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "fuzz target is full"));
        }
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Capped {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let at = self.0.seek(pos)?;
        if at > CAP {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "seek past the fuzz target's end"));
        }
        Ok(at)
    }
}
