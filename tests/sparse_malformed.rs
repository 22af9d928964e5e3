//! Damaged and hostile sparse images give errors that name the place and never panic, and a
//! source that changes between the scan and the piece production is caught.

use std::io::Cursor;

use mi_flash::sparse::{
    decode_bytes_into, decode_into, scan, split, validate, PieceWriter, ScanOptions, SparseError,
    SparseLayout,
};

fn header(blk_sz: u32, total_blks: u32, total_chunks: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xed26ff3au32.to_le_bytes());
    b.extend_from_slice(&[1, 0, 0, 0, 28, 0, 12, 0]);
    for v in [blk_sz, total_blks, total_chunks, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

fn chunk(ty: u16, chunk_sz: u32, total_sz: u32) -> Vec<u8> {
    let mut b = ty.to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&chunk_sz.to_le_bytes());
    b.extend_from_slice(&total_sz.to_le_bytes());
    b
}

fn image(blk_sz: u32, total_blks: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut b = header(blk_sz, total_blks, chunks.len() as u32);
    for c in chunks {
        b.extend_from_slice(c);
    }
    b
}

/// Every entry point rejects `bytes` with an error whose text contains `want`.
fn rejected(bytes: &[u8], want: &str) {
    let err = validate(bytes).unwrap_err().to_string();
    assert!(err.contains(want), "validate: `{err}` lacks `{want}`");
    let mut dst = Cursor::new(Vec::new());
    let err = decode_bytes_into(bytes, &mut dst).unwrap_err().to_string();
    assert!(err.contains(want), "decode: `{err}` lacks `{want}`");
    assert!(
        dst.into_inner().is_empty(),
        "a malformed image must write nothing"
    );
    assert!(decode_into(bytes, &mut Cursor::new(Vec::new())).is_err());
    let err = scan(
        bytes,
        &ScanOptions {
            file_crc: true,
            data_crc: true,
            piece_crcs_for: Some(1 << 20),
            check_crc_chunks: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(want), "scan: `{err}` lacks `{want}`");
    assert!(SparseLayout::read_seekable(Cursor::new(bytes)).is_err());
}

#[test]
fn truncated_header() {
    let h = header(4096, 1, 1);
    rejected(
        &h[..20],
        "sparse header at offset 0x0: the input ends after 20 of 28 bytes",
    );
}

#[test]
fn zero_and_unaligned_block_size() {
    rejected(
        &image(0, 1, &[chunk(0xCAC3, 1, 12)]),
        "offset 0xc: blk_sz 0x0 is not a non-zero multiple of 4",
    );
    rejected(&image(4097, 1, &[chunk(0xCAC3, 1, 12)]), "blk_sz 0x1001");
}

#[test]
fn bad_header_fields() {
    let mut b = image(4096, 1, &[chunk(0xCAC3, 1, 12)]);
    b[4] = 2;
    rejected(&b, "major_version 0x2");
    let mut b = image(4096, 1, &[chunk(0xCAC3, 1, 12)]);
    b[8] = 20;
    rejected(&b, "file_hdr_sz 0x14 is below 28");
    rejected(&image(4096, 0, &[]), "total_blks 0x0 is zero");
}

#[test]
fn raw_size_overflowing() {
    // chunk_sz * blk_sz does not fit 32 bits: total_sz can never match.
    rejected(
        &image(4096, 0x10_0000, &[chunk(0xCAC1, 0x10_0000, 12)]),
        "chunk 0 at offset 0x1c: total_sz 0xc does not match chunk_sz*blk_sz+12 = 0x100000*0x1000+12 = 0x10000000c",
    );
    rejected(
        &image(4096, 1, &[chunk(0xCAC1, 1, 8)]),
        "total_sz 0x8 is smaller than chunk_hdr_sz 0xc",
    );
    rejected(
        &image(
            4096,
            u32::MAX,
            &[chunk(0xCAC3, u32::MAX, 12), chunk(0xCAC3, 5, 12)],
        ),
        "chunk 1 at offset 0x28: chunk_sz 0x5 runs past total_blks",
    );
}

#[test]
fn raw_data_missing() {
    let mut b = image(4096, 2, &[chunk(0xCAC1, 2, 12 + 8192)]);
    b.extend(vec![7u8; 5000]);
    rejected(
        &b,
        "RAW data of chunk 0 at offset 0x28: the input ends after 5000 of 8192 bytes",
    );
}

#[test]
fn block_count_mismatch() {
    rejected(
        &image(4096, 10, &[chunk(0xCAC3, 4, 12)]),
        "after 1 chunks covering 4 blocks, but the header says total_blks 10",
    );
}

#[test]
fn unknown_and_malformed_chunks() {
    rejected(
        &image(4096, 1, &[chunk(0xCAC5, 1, 12)]),
        "chunk 0 at offset 0x1c: chunk_type 0xcac5 is not a known chunk type",
    );
    let mut fill = chunk(0xCAC2, 1, 20);
    fill.extend([0u8; 8]);
    rejected(&image(4096, 1, &[fill]), "total_sz 0x14 is not 0x10");
    rejected(
        &image(4096, 1, &[chunk(0xCAC3, 1, 16)]),
        "a DONT_CARE chunk has no body",
    );
    let mut crc = chunk(0xCAC4, 1, 16);
    crc.extend([0u8; 4]);
    rejected(
        &image(4096, 1, &[crc, chunk(0xCAC3, 1, 12)]),
        "chunk_sz 0x1 is not 0 for a CRC32 chunk",
    );
    let mut empty_fill = chunk(0xCAC2, 0, 16);
    empty_fill.extend([0u8; 4]);
    rejected(
        &image(4096, 1, &[empty_fill, chunk(0xCAC3, 1, 12)]),
        "chunk_sz 0x0 is zero",
    );
}

#[test]
fn huge_counts_in_a_tiny_file() {
    // total_chunks 2^32-1 and chunk_hdr_sz 65535 in a 40-byte file: errors, no allocation storm.
    let mut b = header(4096, 1, u32::MAX);
    b.extend(chunk(0xCAC3, 1, 12));
    rejected(&b, "header of chunk 1");
    let mut b = image(4096, 1, &[chunk(0xCAC3, 1, 12)]);
    b[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
    rejected(&b, "extra header bytes of chunk 0");
}

#[test]
fn limit_out_of_range() {
    let b = image(4096, 1, &[chunk(0xCAC3, 1, 12)]);
    let layout = validate(&b).unwrap();
    assert!(matches!(
        split(&layout, 100),
        Err(SparseError::LimitTooSmall { .. })
    ));
    assert!(matches!(
        split(&layout, 1 << 33),
        Err(SparseError::LimitTooLarge { .. })
    ));
    let err = scan(
        &b[..],
        &ScanOptions {
            piece_crcs_for: Some(100),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("max-download-size 0x64 is too small"),
        "{err}"
    );
}

#[test]
fn raw_source_changed_after_scan() {
    let mut img: Vec<u8> = (0..4096 * 40).map(|i| (i * 7 % 251) as u8).collect();
    img[4096 * 10..4096 * 15].fill(0);
    let layout = SparseLayout::read(&img[..]).unwrap();
    let pieces = split(&layout, 8 * 4096 + 80).unwrap();
    assert!(pieces.len() > 1);
    let mut changed = img.clone();
    changed[4096 * 12 + 17] = 1;
    let mut writer = PieceWriter::new(&changed[..], &layout).unwrap();
    let mut sink = Vec::new();
    let result: Result<Vec<u64>, SparseError> = pieces
        .iter()
        .map(|p| writer.write_piece(p, &mut sink))
        .collect();
    let err = result.unwrap_err();
    assert!(
        matches!(err, SparseError::SourceChanged { offset: 0xc000, .. }),
        "{err}"
    );

    let mut writer = PieceWriter::new(&img[..4096 * 30], &layout).unwrap();
    let result: Result<Vec<u64>, SparseError> = pieces
        .iter()
        .map(|p| writer.write_piece(p, &mut sink))
        .collect();
    assert!(matches!(result, Err(SparseError::SourceChanged { .. })));
}

#[test]
fn sparse_source_changed_after_scan_and_pieces_out_of_order() {
    let mut b = header(4096, 3, 3);
    b.extend(chunk(0xCAC1, 1, 12 + 4096));
    b.extend((0..4096).map(|i| (i / 3) as u8));
    b.extend(chunk(0xCAC3, 1, 12));
    b.extend(chunk(0xCAC1, 1, 12 + 4096));
    b.extend((0..4096).map(|i| i as u8));
    let layout = validate(&b).unwrap();
    let pieces = split(&layout, 8 * 4096 + 80).unwrap();
    assert_eq!(pieces.len(), 1);
    let mut writer = PieceWriter::new(&b[..], &layout).unwrap();
    let err = writer
        .write_piece(&pieces[0], &mut Vec::new())
        .and_then(|_| writer.write_piece(&pieces[0], &mut Vec::new()));
    assert!(
        matches!(
            err,
            Err(SparseError::PieceOutOfOrder {
                index: 0,
                expected: 1
            })
        ),
        "{err:?}"
    );
    let pieces = [pieces[0].clone(), pieces[0].clone()].map(|mut p| {
        p.index = 1;
        p
    });

    let mut writer = PieceWriter::new(&b[..], &layout).unwrap();
    let err = writer.write_piece(&pieces[1], &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            SparseError::PieceOutOfOrder {
                index: 1,
                expected: 0
            }
        ),
        "{err}"
    );

    // The DONT_CARE chunk now reads as one block of FILL: same size, different meaning.
    let mut changed = b.clone();
    let dont_care = 28 + 12 + 4096;
    changed[dont_care..dont_care + 12].copy_from_slice(&chunk(0xCAC2, 1, 16));
    changed.splice(dont_care + 12..dont_care + 12, [0u8; 4]);
    let layout_again = validate(&changed).unwrap();
    assert_ne!(layout_again, layout);
    let pieces = split(&layout, 8 * 4096 + 80).unwrap();
    let mut writer = PieceWriter::new(&changed[..], &layout).unwrap();
    let err = writer.write_piece(&pieces[0], &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, SparseError::SourceChanged { offset: 4152, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chunk 1 reads as"), "{err}");
}

#[test]
fn a_crc32_chunk_is_checked_when_the_data_is_read() {
    // RAW (1 block) + FILL (1 block) + DONT_CARE (1 block) + CRC32: the CRC chunk states the
    // CRC-32 of the 3 blocks before it, DONT_CARE counted as zeros (as libsparse checks it).
    let bs = 4096u32;
    let raw: Vec<u8> = (0..bs).map(|i| (i * 7 % 251) as u8).collect();
    let mut expanded = raw.clone();
    expanded.extend(0x1234_5678u32.to_le_bytes().iter().cycle().take(bs as usize));
    expanded.extend(std::iter::repeat_n(0u8, bs as usize));
    let good = crc32fast::hash(&expanded);
    let build = |stated: u32| {
        let mut r = chunk(0xCAC1, 1, 12 + bs);
        r.extend_from_slice(&raw);
        let mut f = chunk(0xCAC2, 1, 16);
        f.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        let d = chunk(0xCAC3, 1, 12);
        let mut c = chunk(0xCAC4, 0, 16);
        c.extend_from_slice(&stated.to_le_bytes());
        image(bs, 3, &[r, f, d, c])
    };
    let opts = ScanOptions { file_crc: false, data_crc: true, piece_crcs_for: None, check_crc_chunks: true };
    scan(&build(good)[..], &opts).unwrap();
    // libsparse's writer states another CRC: RAW data, one block of each FILL, no DONT_CARE.
    let mut as_written = raw.clone();
    as_written.extend(0x1234_5678u32.to_le_bytes().iter().cycle().take(bs as usize));
    scan(&build(crc32fast::hash(&as_written))[..], &opts).unwrap();
    let err = scan(&build(good ^ 1)[..], &opts).unwrap_err().to_string();
    assert!(err.contains("chunk 3") && err.contains("CRC32 value") && err.contains(&format!("{good:#010x}")), "{err}");
    // Only when asked (package verification): bootloaders and AOSP fastboot ignore the chunk.
    assert!(scan(&build(good ^ 1)[..], &ScanOptions { check_crc_chunks: false, ..opts }).is_ok());
    assert!(scan(&build(good ^ 1)[..], &ScanOptions::default()).is_ok());
}
