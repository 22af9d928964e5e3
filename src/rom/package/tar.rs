//! A small streaming tar reader with hard limits, used for `.tgz` packages.
//!
//! Why not the `tar` crate: it reads GNU long names and PAX headers into memory without a size
//! limit, so a few hundred KiB of gzip could make it allocate gigabytes. This reader bounds every
//! allocation, verifies each header checksum, understands ustar/GNU/PAX paths and sizes (base-256
//! and PAX `size` for images over 8 GiB), and reports entry types as they are; the package layer
//! decides which types it accepts. It never touches the file system.

use std::io::{self, Read};

/// Longest GNU long name / PAX header we accept. Real paths in a package are < 200 bytes.
const MAX_EXTENSION_SIZE: u64 = 64 * 1024;
const BLOCK: u64 = 512;

/// What a tar header says an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TarKind {
    File,
    Dir,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// Any other type flag (GNU sparse, multi-volume, volume label, ...).
    Other(u8),
}

/// One member header after GNU/PAX extensions were applied.
#[derive(Debug, Clone)]
pub(crate) struct TarHeader {
    /// Raw path bytes as stored (not yet validated).
    pub path: Vec<u8>,
    /// Declared data size in bytes.
    pub size: u64,
    pub kind: TarKind,
}

/// Why the stream is not a readable tar archive.
#[derive(Debug)]
pub(crate) enum TarError {
    /// Reading the underlying stream failed (for a .tgz: truncated or corrupt gzip).
    Io(io::Error),
    /// The stream ended in the middle of a header or data.
    Truncated { offset: u64 },
    /// Header bytes are not a valid tar header.
    Corrupt { offset: u64, detail: String },
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

/// Streaming reader: `next_header`, then read (part of) the data with `data_reader`, then
/// `next_header` again (unread data and padding are skipped).
pub(crate) struct TarReader<R: Read> {
    inner: R,
    /// Bytes consumed from the uncompressed stream.
    offset: u64,
    /// Data bytes of the current member not yet consumed.
    remaining: u64,
    /// Padding after the current member's data.
    padding: u64,
    finished: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            offset: 0,
            remaining: 0,
            padding: 0,
            finished: false,
        }
    }

    /// Bytes of the uncompressed stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Gives the underlying reader back (after the end-of-archive marker), so the caller can
    /// drain what follows (gzip trailer check, whole-file hashes).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Next member, or `None` after the end-of-archive marker.
    pub fn next_header(&mut self) -> Result<Option<TarHeader>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        loop {
            let offset = self.offset;
            let mut block = [0u8; 512];
            if !self.read_block(&mut block)? {
                // A clean end of stream where a header should be: the end-of-archive marker is
                // missing, which a complete archive always has.
                return Err(TarError::Truncated { offset });
            }
            if block.iter().all(|&b| b == 0) {
                // End-of-archive marker (two zero blocks; tolerate a missing second one).
                let mut second = [0u8; 512];
                let _ = self.read_block(&mut second)?;
                self.finished = true;
                return Ok(None);
            }
            verify_checksum(&block, offset)?;
            let size = parse_size(&block[124..136]).ok_or_else(|| TarError::Corrupt {
                offset,
                detail: "unreadable size field".into(),
            })?;
            let type_flag = block[156];
            match type_flag {
                b'L' | b'K' | b'x' | b'g' => {
                    if size > MAX_EXTENSION_SIZE {
                        return Err(TarError::Corrupt {
                            offset,
                            detail: format!(
                                "extension header of {size} bytes (limit {MAX_EXTENSION_SIZE})"
                            ),
                        });
                    }
                    let data = self.read_exact_data(size)?;
                    match type_flag {
                        b'L' => {
                            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                            long_name = Some(data[..end].to_vec());
                        }
                        b'x' => {
                            let (path, sz) = parse_pax(&data)
                                .map_err(|detail| TarError::Corrupt { offset, detail })?;
                            if path.is_some() {
                                pax_path = path;
                            }
                            if sz.is_some() {
                                pax_size = sz;
                            }
                        }
                        // Long link names and global PAX headers carry nothing we use.
                        _ => {}
                    }
                    continue;
                }
                _ => {}
            }
            let path = match (pax_path, long_name) {
                (Some(p), _) => p,
                (None, Some(l)) => l,
                (None, None) => header_path(&block),
            };
            let size = pax_size.unwrap_or(size);
            let kind = match type_flag {
                b'0' | 0 | b'7' => TarKind::File,
                b'5' => TarKind::Dir,
                b'1' => TarKind::HardLink,
                b'2' => TarKind::Symlink,
                b'3' => TarKind::CharDevice,
                b'4' => TarKind::BlockDevice,
                b'6' => TarKind::Fifo,
                other => TarKind::Other(other),
            };
            // Links, devices and directories carry no data even if the size field says so
            // (GNU tar writes 0; a hostile header might not). Treat their data as absent so the
            // stream stays aligned the way GNU tar reads it.
            let data_size = match kind {
                TarKind::File | TarKind::Other(_) => size,
                _ => 0,
            };
            self.remaining = data_size;
            self.padding = padding(data_size);
            return Ok(Some(TarHeader { path, size, kind }));
        }
    }

    /// Reader over the current member's remaining data. Ends with `UnexpectedEof` if the
    /// stream stops early.
    pub fn data_reader(&mut self) -> DataReader<'_, R> {
        DataReader { tar: self }
    }

    /// Discards the rest of the current member and its padding.
    fn skip_rest(&mut self) -> Result<(), TarError> {
        let mut scratch = [0u8; 8192];
        let mut left = self.remaining + self.padding;
        while left > 0 {
            let want = left.min(scratch.len() as u64) as usize;
            let n = self.inner.read(&mut scratch[..want])?;
            if n == 0 {
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
            left -= n as u64;
            self.offset += n as u64;
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    /// Reads one 512-byte block; `false` on a clean end of stream before its first byte.
    fn read_block(&mut self, block: &mut [u8; 512]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < block.len() {
            let n = match self.inner.read(&mut block[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
            filled += n;
            self.offset += n as u64;
        }
        Ok(true)
    }

    fn read_exact_data(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let mut data = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < data.len() {
            let n = self.inner.read(&mut data[filled..])?;
            if n == 0 {
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
            filled += n;
            self.offset += n as u64;
        }
        self.remaining = 0;
        self.padding = padding(size);
        self.skip_rest()?;
        Ok(data)
    }
}

/// Reads the current member's data; see [`TarReader::data_reader`].
pub(crate) struct DataReader<'a, R: Read> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.tar.remaining) as usize;
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of this file",
            ));
        }
        self.tar.remaining -= n as u64;
        self.tar.offset += n as u64;
        Ok(n)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn verify_checksum(block: &[u8; 512], offset: u64) -> Result<(), TarError> {
    let stored = parse_octal(&block[148..156]).ok_or_else(|| TarError::Corrupt {
        offset,
        detail: "unreadable header checksum".into(),
    })?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    // Some historic writers summed signed bytes; accept either like GNU tar does.
    if stored == unsigned || (signed >= 0 && stored == signed as u64) {
        Ok(())
    } else {
        Err(TarError::Corrupt {
            offset,
            detail: format!("header checksum mismatch (stored {stored}, computed {unsigned})"),
        })
    }
}

fn header_path(block: &[u8; 512]) -> Vec<u8> {
    let name = cstr(&block[0..100]);
    // POSIX ustar ("ustar\0") has a prefix field; GNU ("ustar  \0") uses those bytes for
    // other things and relies on long-name headers instead.
    if &block[257..263] == b"ustar\0" {
        let prefix = cstr(&block[345..500]);
        if !prefix.is_empty() {
            let mut p = prefix.to_vec();
            p.push(b'/');
            p.extend_from_slice(name);
            return p;
        }
    }
    name.to_vec()
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = cstr(field);
    let s: Vec<u8> = s.iter().copied().filter(|&b| b != b' ').collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn parse_size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // GNU base-256: big-endian number in the remaining bits.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    parse_octal(field)
}

/// PAX records: "<len> <key>=<value>\n". Returns the `path` and `size` values if present.
fn parse_pax(data: &[u8]) -> Result<(Option<Vec<u8>>, Option<u64>), String> {
    let mut path = None;
    let mut size = None;
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| "PAX record without length".to_string())?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "PAX record with an unreadable length".to_string())?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("PAX record length does not match its content".into());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| "PAX record without '='".to_string())?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => path = Some(value.to_vec()),
            b"size" => {
                size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| "PAX size is not a number".to_string())?,
                )
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, flag: u8) -> [u8; 512] {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(flag));
        h.set_mode(0o644);
        let bytes = h.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        *h.as_bytes()
    }

    fn archive(parts: &[(&str, &[u8], u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, flag) in parts {
            out.extend_from_slice(&header(name, data.len() as u64, *flag));
            out.extend_from_slice(data);
            out.resize(out.len() + padding(data.len() as u64) as usize, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn reads_members_and_data_in_order() {
        let bytes = archive(&[
            ("a/", b"", b'5'),
            ("a/x.txt", b"hello", b'0'),
            ("a/y", b"12345678", b'0'),
        ]);
        let mut t = TarReader::new(&bytes[..]);
        let h = t.next_header().unwrap().unwrap();
        assert_eq!((h.path.as_slice(), h.kind), (&b"a/"[..], TarKind::Dir));
        let h = t.next_header().unwrap().unwrap();
        assert_eq!(h.path, b"a/x.txt");
        let mut s = Vec::new();
        t.data_reader().read_to_end(&mut s).unwrap();
        assert_eq!(s, b"hello");
        // Data of the third member is skipped, not read.
        let h = t.next_header().unwrap().unwrap();
        assert_eq!((h.path.as_slice(), h.size), (&b"a/y"[..], 8));
        assert!(t.next_header().unwrap().is_none());
    }

    #[test]
    fn gnu_long_names_and_pax_paths_apply_to_the_next_member() {
        let long = "d/".repeat(120) + "f.img";
        let mut bytes = archive(&[("././@LongLink", format!("{long}\0").as_bytes(), b'L')]);
        bytes.truncate(bytes.len() - 1024);
        let pax = "18 path=p/pax.img\n";
        assert_eq!(pax.len(), 18);
        bytes.extend_from_slice(&archive(&[
            ("x", b"1", b'0'),
            ("PaxHeader", pax.as_bytes(), b'x'),
            ("y", b"22", b'0'),
        ]));
        let mut t = TarReader::new(&bytes[..]);
        assert_eq!(t.next_header().unwrap().unwrap().path, long.as_bytes());
        assert_eq!(t.next_header().unwrap().unwrap().path, b"p/pax.img");
    }

    #[test]
    fn bad_checksum_and_truncation_are_errors() {
        let mut bytes = archive(&[("a", b"data", b'0')]);
        bytes[10] ^= 1;
        assert!(matches!(
            TarReader::new(&bytes[..]).next_header(),
            Err(TarError::Corrupt { .. })
        ));
        let bytes = archive(&[("a", b"data", b'0')]);
        let cut = &bytes[..514];
        let mut t = TarReader::new(cut);
        t.next_header().unwrap().unwrap();
        let mut s = Vec::new();
        assert!(t.data_reader().read_to_end(&mut s).is_err());
        let mut t = TarReader::new(&bytes[..512]);
        t.next_header().unwrap().unwrap();
        assert!(matches!(t.next_header(), Err(TarError::Truncated { .. })));
    }

    #[test]
    fn oversized_extension_headers_are_refused_without_allocating() {
        let mut h = header("././@LongLink", 0, b'L');
        // Claim 1 TiB of long name.
        let mut th = tar::Header::from_byte_slice(&h).clone();
        th.set_size(1 << 40);
        th.set_cksum();
        h.copy_from_slice(th.as_bytes());
        let r = TarReader::new(&h[..]).next_header();
        assert!(matches!(r, Err(TarError::Corrupt { .. })), "{r:?}");
    }

    #[test]
    fn base256_sizes_are_understood() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[8..12].copy_from_slice(&[0x02, 0x40, 0x00, 0x00]);
        assert_eq!(parse_size(&f), Some(0x0240_0000));
        assert_eq!(parse_size(b"00000001000\0"), Some(512));
        assert_eq!(parse_size(b"0000000100x\0"), None);
    }
}
