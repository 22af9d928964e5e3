//! Xiaomi's CRC lists, flashed to the pseudo-partitions `crclist` and `sparsecrclist` before
//! the images so that the bootloader can check what it receives:
//!
//! * `crclist.txt`: `CRC-LIST`, then `<partition> 0x<crc32 of the whole file>`;
//! * `sparsecrclist.txt`: `SPARSECRC-LIST`, then either the old line
//!   `<partition> 0x<crc32 of all RAW + expanded FILL data> <pieces>` (Xiaomi's generator used
//!   a 512 MiB split) or the new line `<partition> <pieces> 0x<crc32 of piece 1> …` (768 MiB).
//!
//! Values are written like Python's `hex()`: lowercase, no zero padding (`0xb5cc636`). The
//! parsers accept what those generators wrote (including Python 2's trailing `L`) and name the
//! file line of anything else. [`CrcList::compare`] and [`SparseCrcList::compare`] check an
//! [`ImageScan`] against an entry and return structured mismatches.

use std::fmt;

use super::error::SparseError;
use super::scan::ImageScan;

/// Split size of Xiaomi's old `sparsecrclist.txt` generator (`max_download_size`).
pub const OLD_SPARSE_CRC_SPLIT: u64 = 512 << 20;
/// Split size of Xiaomi's new generator (`MAX_DOWNLOAD_SIZE` in `flash_gen_crc_list.py`).
pub const NEW_SPARSE_CRC_SPLIT: u64 = 768 << 20;

const CRC_LIST_HEADER: &str = "CRC-LIST";
const SPARSE_CRC_LIST_HEADER: &str = "SPARSECRC-LIST";

/// `value` as Python's `hex()` writes it.
pub fn python_hex(value: u32) -> String {
    format!("{value:#x}")
}

/// One line of `crclist.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrcEntry {
    pub partition: String,
    /// CRC-32 (zlib) of the whole image file.
    pub crc: u32,
    /// 1-based line in the file it was read from (0 when built in memory).
    pub line: usize,
}

/// `crclist.txt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrcList {
    pub entries: Vec<CrcEntry>,
}

/// What one line of `sparsecrclist.txt` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SparseCrcValues {
    /// Old format: one CRC over the data of the whole image, and the number of pieces.
    Whole { crc: u32, pieces: usize },
    /// New format: one CRC per piece.
    PerPiece { crcs: Vec<u32> },
}

impl SparseCrcValues {
    pub fn pieces(&self) -> usize {
        match self {
            SparseCrcValues::Whole { pieces, .. } => *pieces,
            SparseCrcValues::PerPiece { crcs } => crcs.len(),
        }
    }
}

/// One line of `sparsecrclist.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseCrcEntry {
    pub partition: String,
    pub values: SparseCrcValues,
    /// 1-based line in the file it was read from (0 when built in memory).
    pub line: usize,
}

/// `sparsecrclist.txt`, either format (each line says which).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseCrcList {
    pub entries: Vec<SparseCrcEntry>,
}

/// The result of checking an image against a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrcVerdict {
    /// The list has no line for this partition.
    NotListed,
    /// Every value matches.
    Match,
    /// Something differs; see each mismatch.
    Mismatch(Vec<CrcMismatch>),
}

/// What differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// A CRC-32 value (`expected`/`actual` are CRCs).
    Crc,
    /// The number of pieces (`expected`/`actual` are counts).
    PieceCount,
}

/// One difference between a list and an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrcMismatch {
    pub partition: String,
    /// 0-based piece for a per-piece CRC; `None` for a whole-image value.
    pub piece: Option<usize>,
    pub kind: MismatchKind,
    pub expected: u64,
    pub actual: u64,
    /// 1-based line of the list entry.
    pub line: usize,
}

impl fmt::Display for CrcMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.partition)?;
        if let Some(p) = self.piece {
            write!(f, " piece {}", p + 1)?;
        }
        match self.kind {
            MismatchKind::Crc => write!(
                f,
                ": CRC-32 is {:#x}, the list (line {}) says {:#x}",
                self.actual, self.line, self.expected
            ),
            MismatchKind::PieceCount => write!(
                f,
                ": the image is sent in {} pieces, the list (line {}) says {}",
                self.actual, self.line, self.expected
            ),
        }
    }
}

impl CrcList {
    /// Reads `crclist.txt`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, SparseError> {
        let mut entries = Vec::new();
        for (line, tokens) in lines_after_header(text, file, CRC_LIST_HEADER)? {
            match tokens.as_slice() {
                [partition, crc] => entries.push(CrcEntry {
                    partition: partition.to_string(),
                    crc: parse_hex(crc, file, line)?,
                    line,
                }),
                _ => {
                    return Err(syntax(
                        file,
                        line,
                        format!(
                            "expected `<partition> 0x<crc>`, found {} fields",
                            tokens.len()
                        ),
                    ))
                }
            }
        }
        Ok(CrcList { entries })
    }

    /// The first entry for `partition`.
    pub fn get(&self, partition: &str) -> Option<&CrcEntry> {
        self.entries.iter().find(|e| e.partition == partition)
    }

    /// Adds a line for an image whose whole-file CRC-32 is `crc` (the generators skip 0).
    pub fn push(&mut self, partition: &str, crc: u32) {
        self.entries.push(CrcEntry {
            partition: partition.into(),
            crc,
            line: 0,
        });
    }

    /// Checks an image scanned with `file_crc` against the line for `partition`.
    pub fn compare(&self, partition: &str, scan: &ImageScan) -> Result<CrcVerdict, SparseError> {
        let Some(entry) = self.get(partition) else {
            return Ok(CrcVerdict::NotListed);
        };
        let actual = scan
            .file_crc
            .ok_or_else(|| missing("file CRC", "file_crc"))?;
        if actual == entry.crc {
            return Ok(CrcVerdict::Match);
        }
        Ok(CrcVerdict::Mismatch(vec![CrcMismatch {
            partition: partition.into(),
            piece: None,
            kind: MismatchKind::Crc,
            expected: entry.crc.into(),
            actual: actual.into(),
            line: entry.line,
        }]))
    }
}

impl fmt::Display for CrcList {
    /// The file as Xiaomi's generator writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{CRC_LIST_HEADER}")?;
        for e in &self.entries {
            writeln!(f, "{} {}", e.partition, python_hex(e.crc))?;
        }
        Ok(())
    }
}

impl SparseCrcList {
    /// Reads `sparsecrclist.txt` in either format; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, SparseError> {
        let mut entries = Vec::new();
        for (line, tokens) in lines_after_header(text, file, SPARSE_CRC_LIST_HEADER)? {
            let values = match tokens.as_slice() {
                [_, crc, pieces] if is_hex(crc) => SparseCrcValues::Whole {
                    crc: parse_hex(crc, file, line)?,
                    pieces: parse_count(pieces, file, line)?,
                },
                [_, count, crcs @ ..] if !crcs.is_empty() => {
                    let n = parse_count(count, file, line)?;
                    if n != crcs.len() {
                        return Err(syntax(
                            file,
                            line,
                            format!("says {n} pieces but lists {} CRC values", crcs.len()),
                        ));
                    }
                    let crcs = crcs
                        .iter()
                        .map(|c| parse_hex(c, file, line))
                        .collect::<Result<_, _>>()?;
                    SparseCrcValues::PerPiece { crcs }
                }
                _ => return Err(syntax(
                    file,
                    line,
                    "expected `<partition> <pieces> 0x<crc>...` or `<partition> 0x<crc> <pieces>`"
                        .into(),
                )),
            };
            entries.push(SparseCrcEntry {
                partition: tokens[0].to_string(),
                values,
                line,
            });
        }
        Ok(SparseCrcList { entries })
    }

    /// The first entry for `partition`.
    pub fn get(&self, partition: &str) -> Option<&SparseCrcEntry> {
        self.entries.iter().find(|e| e.partition == partition)
    }

    /// Adds a new-format line from a scan made with `piece_crcs_for`.
    pub fn push(&mut self, partition: &str, scan: &ImageScan) -> Result<(), SparseError> {
        let crcs = scan
            .piece_crcs
            .as_ref()
            .ok_or_else(|| missing("per-piece CRCs", "piece_crcs_for"))?;
        self.entries.push(SparseCrcEntry {
            partition: partition.into(),
            values: SparseCrcValues::PerPiece {
                crcs: crcs.crcs.clone(),
            },
            line: 0,
        });
        Ok(())
    }

    /// Checks an image against the line for `partition`. An old-format line needs a scan with
    /// `data_crc` and `piece_crcs_for` (the piece count); a new-format one `piece_crcs_for`.
    /// The split size must be the one the list was made for ([`OLD_SPARSE_CRC_SPLIT`],
    /// [`NEW_SPARSE_CRC_SPLIT`], or the device's `max-download-size`).
    pub fn compare(&self, partition: &str, scan: &ImageScan) -> Result<CrcVerdict, SparseError> {
        let Some(entry) = self.get(partition) else {
            return Ok(CrcVerdict::NotListed);
        };
        let pieces = &scan
            .piece_crcs
            .as_ref()
            .ok_or_else(|| missing("per-piece CRCs", "piece_crcs_for"))?
            .crcs;
        let mismatch = |piece, kind, expected: u64, actual: u64| CrcMismatch {
            partition: partition.into(),
            piece,
            kind,
            expected,
            actual,
            line: entry.line,
        };
        let mut out = Vec::new();
        if entry.values.pieces() != pieces.len() {
            out.push(mismatch(
                None,
                MismatchKind::PieceCount,
                entry.values.pieces() as u64,
                pieces.len() as u64,
            ));
        }
        match &entry.values {
            SparseCrcValues::Whole { crc, .. } => {
                let actual = scan
                    .data_crc
                    .ok_or_else(|| missing("data CRC", "data_crc"))?;
                if actual != *crc {
                    out.push(mismatch(
                        None,
                        MismatchKind::Crc,
                        (*crc).into(),
                        actual.into(),
                    ));
                }
            }
            SparseCrcValues::PerPiece { crcs } => {
                for (i, (want, got)) in crcs.iter().zip(pieces).enumerate() {
                    if want != got {
                        out.push(mismatch(
                            Some(i),
                            MismatchKind::Crc,
                            (*want).into(),
                            (*got).into(),
                        ));
                    }
                }
            }
        }
        Ok(if out.is_empty() {
            CrcVerdict::Match
        } else {
            CrcVerdict::Mismatch(out)
        })
    }
}

impl fmt::Display for SparseCrcList {
    /// The file as Xiaomi's generators write it (each line in its own format).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{SPARSE_CRC_LIST_HEADER}")?;
        for e in &self.entries {
            match &e.values {
                SparseCrcValues::Whole { crc, pieces } => {
                    writeln!(f, "{} {} {pieces}", e.partition, python_hex(*crc))?
                }
                SparseCrcValues::PerPiece { crcs } => {
                    write!(f, "{} {}", e.partition, crcs.len())?;
                    for c in crcs {
                        write!(f, " {}", python_hex(*c))?;
                    }
                    writeln!(f)?;
                }
            }
        }
        Ok(())
    }
}

fn missing(what: &str, option: &str) -> SparseError {
    SparseError::Unrepresentable(format!(
        "the image was scanned without its {what}; scan it with ScanOptions::{option}"
    ))
}

fn syntax(file: &str, line: usize, problem: String) -> SparseError {
    SparseError::CrcListSyntax {
        file: file.into(),
        line,
        problem,
    }
}

/// The non-empty lines after the header line, split into fields, with 1-based line numbers.
fn lines_after_header<'t>(
    text: &'t str,
    file: &str,
    header: &str,
) -> Result<Vec<(usize, Vec<&'t str>)>, SparseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, first)) if first.eq_ignore_ascii_case(header) => {}
        Some((line, first)) => {
            return Err(syntax(
                file,
                line,
                format!("expected the header `{header}`, found `{}`", shorten(first)),
            ))
        }
        None => {
            return Err(syntax(
                file,
                1,
                format!("the file is empty (expected the header `{header}`)"),
            ))
        }
    }
    Ok(lines
        .map(|(n, l)| (n, l.split_whitespace().collect()))
        .collect())
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn is_hex(token: &str) -> bool {
    // By bytes: a token may start with any UTF-8 character.
    token.len() > 2 && token.as_bytes()[..2].eq_ignore_ascii_case(b"0x")
}

fn parse_hex(token: &str, file: &str, line: usize) -> Result<u32, SparseError> {
    let bad = || {
        syntax(
            file,
            line,
            format!("`{}` is not a CRC like 0x1a2b3c4d", shorten(token)),
        )
    };
    if !is_hex(token) {
        return Err(bad());
    }
    // Python 2 wrote longs as `0x...L`.
    let digits = token[2..].trim_end_matches(['L', 'l']);
    u32::from_str_radix(digits, 16).map_err(|_| bad())
}

fn parse_count(token: &str, file: &str, line: usize) -> Result<usize, SparseError> {
    match token.parse::<usize>() {
        Ok(n) if n > 0 && token.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(syntax(
            file,
            line,
            format!(
                "`{}` is not a piece count (a whole number from 1)",
                shorten(token)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::scan::{scan, ScanOptions};
    use crate::sparse::testutil::{build, noise, Part};

    const PIANO: &str = "SPARSECRC-LIST\nuserdata 2 0xe8e5c657 0x57f0061a\nrescue 1 0x6e6bfcd6\nmetadata 1 0x4eac68fc\nvm-bootsys 1 0x15079b4\n";

    #[test]
    fn python_hex_has_no_padding() {
        assert_eq!(python_hex(0xb5cc636), "0xb5cc636");
        assert_eq!(python_hex(0x011ffca6), "0x11ffca6");
        assert_eq!(python_hex(0), "0x0");
        assert_eq!(python_hex(0xA6C00DAF), "0xa6c00daf");
    }

    #[test]
    fn new_format_round_trips() {
        let list = SparseCrcList::parse(PIANO, "sparsecrclist.txt").unwrap();
        assert_eq!(list.entries.len(), 4);
        let userdata = list.get("userdata").unwrap();
        assert_eq!(
            userdata.values,
            SparseCrcValues::PerPiece {
                crcs: vec![0xe8e5c657, 0x57f0061a]
            }
        );
        assert_eq!(userdata.line, 2);
        assert_eq!(
            list.get("vm-bootsys").unwrap().values,
            SparseCrcValues::PerPiece {
                crcs: vec![0x15079b4]
            }
        );
        assert_eq!(list.to_string(), PIANO);
    }

    #[test]
    fn old_format_and_python2_longs_are_read() {
        let text = "SPARSECRC-LIST\r\nsystem 0xb5c652e9 7\r\n\r\nvendor 0x1234abcdL 2\r\n";
        let list = SparseCrcList::parse(text, "sparsecrclist.txt").unwrap();
        assert_eq!(
            list.get("system").unwrap().values,
            SparseCrcValues::Whole {
                crc: 0xb5c652e9,
                pieces: 7
            }
        );
        assert_eq!(
            list.get("vendor").unwrap().values,
            SparseCrcValues::Whole {
                crc: 0x1234abcd,
                pieces: 2
            }
        );
        assert_eq!(list.get("vendor").unwrap().line, 4);
        assert_eq!(
            list.to_string(),
            "SPARSECRC-LIST\nsystem 0xb5c652e9 7\nvendor 0x1234abcd 2\n"
        );
    }

    #[test]
    fn crclist_round_trips() {
        let text = "CRC-LIST\nboot 0xa6c00daf\nvbmeta 0x11ffca6\n";
        let list = CrcList::parse(text, "crclist.txt").unwrap();
        assert_eq!(list.get("boot").unwrap().crc, 0xa6c00daf);
        assert_eq!(list.to_string(), text);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let cases: [(&str, &str); 8] = [
            // Found by the package fuzzer: a token starting with a multi-byte character.
            ("CRC-LIST\nboot 0\u{fffd}1\n", "crclist.txt line 2: `0\u{fffd}1` is not a CRC"),
            ("CRC-LIST\nboot \u{e9}x12\n", "crclist.txt line 2"),
            (
                "CRC-LIST\nboot 0xa6c00daf\nvbmeta 11ffca6\n",
                "crclist.txt line 3: `11ffca6` is not a CRC",
            ),
            (
                "CRC-LIST\nboot\n",
                "crclist.txt line 2: expected `<partition> 0x<crc>`",
            ),
            (
                "boot 0x1\n",
                "crclist.txt line 1: expected the header `CRC-LIST`",
            ),
            ("", "crclist.txt line 1: the file is empty"),
            (
                "CRC-LIST\nboot 0x1ffffffff\n",
                "crclist.txt line 2: `0x1ffffffff` is not a CRC",
            ),
            ("CRC-LIST\nboot 0x 1\n", "crclist.txt line 2"),
        ];
        for (text, want) in cases {
            let err = CrcList::parse(text, "crclist.txt").unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
        let sparse_cases: [(&str, &str); 4] = [
            (
                "SPARSECRC-LIST\nsuper 3 0x1 0x2\n",
                "line 2: says 3 pieces but lists 2 CRC values",
            ),
            (
                "SPARSECRC-LIST\nsuper 0x1\n",
                "line 2: expected `<partition> <pieces>",
            ),
            (
                "SPARSECRC-LIST\n\nsuper 0x1 seven\n",
                "line 3: `seven` is not a piece count",
            ),
            (
                "SPARSECRC-LIST\nsuper 1 0xzz\n",
                "line 2: `0xzz` is not a CRC",
            ),
        ];
        for (text, want) in sparse_cases {
            let err = SparseCrcList::parse(text, "sparsecrclist.txt")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn compare_reports_each_difference() {
        // Three RAW chunks of 64 KiB each with a 80 KiB split: 3 pieces (one per chunk).
        let parts = [
            Part::Raw(noise(65536, 1)),
            Part::Skip(3),
            Part::Raw(noise(65536, 2)),
            Part::Raw(noise(65536, 3)),
        ];
        let bytes = build(4096, &parts);
        let opts = ScanOptions {
            file_crc: true,
            data_crc: true,
            piece_crcs_for: Some(80 * 1024),
            check_crc_chunks: false,
        };
        let scanned = scan(&bytes[..], &opts).unwrap();
        let crcs = scanned.piece_crcs.clone().unwrap().crcs;
        assert_eq!(crcs.len(), 3);

        let mut list = SparseCrcList::default();
        list.push("super", &scanned).unwrap();
        assert_eq!(list.compare("super", &scanned).unwrap(), CrcVerdict::Match);
        assert_eq!(
            list.compare("system", &scanned).unwrap(),
            CrcVerdict::NotListed
        );

        let text = format!(
            "SPARSECRC-LIST\nsuper 3 {} 0x1 {}\n",
            python_hex(crcs[0]),
            python_hex(crcs[2])
        );
        let list = SparseCrcList::parse(&text, "sparsecrclist.txt").unwrap();
        let CrcVerdict::Mismatch(m) = list.compare("super", &scanned).unwrap() else {
            panic!("must differ")
        };
        assert_eq!(
            m,
            [CrcMismatch {
                partition: "super".into(),
                piece: Some(1),
                kind: MismatchKind::Crc,
                expected: 1,
                actual: crcs[1].into(),
                line: 2
            }]
        );
        assert_eq!(
            m[0].to_string(),
            format!(
                "super piece 2: CRC-32 is {:#x}, the list (line 2) says 0x1",
                crcs[1]
            )
        );

        let old = format!(
            "SPARSECRC-LIST\nsuper {} 2\n",
            python_hex(scanned.data_crc.unwrap())
        );
        let CrcVerdict::Mismatch(m) = SparseCrcList::parse(&old, "s")
            .unwrap()
            .compare("super", &scanned)
            .unwrap()
        else {
            panic!("piece count differs")
        };
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].kind, m[0].expected, m[0].actual),
            (MismatchKind::PieceCount, 2, 3)
        );

        let mut crc_list = CrcList::default();
        crc_list.push("super", crc32fast::hash(&bytes));
        assert_eq!(
            crc_list.compare("super", &scanned).unwrap(),
            CrcVerdict::Match
        );
        let without = scan(&bytes[..], &ScanOptions::default()).unwrap();
        assert!(crc_list.compare("super", &without).is_err());
    }
}
