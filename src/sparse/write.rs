//! Producing the bytes of split pieces from the image they were planned for, exactly as
//! libsparse writes them: header (`total_chunks` counted, `image_checksum` 0), then the
//! piece's chunks in block order with a DONT_CARE chunk before each gap and one at the end.
//!
//! [`PieceWriter::new`] reads a forward-only source once, piece after piece, and checks on the
//! way that the source still matches its layout (chunk headers of a sparse image, FILL blocks
//! of a raw one). [`PieceWriter::seekable`] serves pieces in any order (a retried download)
//! from a seekable source and reads only RAW data. Memory stays at two small buffers.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::error::SparseError;
use super::format::{ChunkHeader, CHUNK_TYPE_DONT_CARE, CHUNK_TYPE_FILL, CHUNK_TYPE_RAW};
use super::layout::{ImageFormat, SparseLayout};
use super::reader::{Chunk, ChunkKind, ChunkReader};
use super::scan::RAW_BLOCK_SIZE;
use super::source::{read_full_from, ForwardSource, Source, COPY_BUF_LEN};
use super::split::{PieceData, SparsePiece};

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

impl Source for Box<dyn Source + '_> {
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_full(buf)
    }
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        (**self).skip(n)
    }
    fn position(&self) -> u64 {
        (**self).position()
    }
}

enum Input<'a> {
    /// A sparse image read forward, its chunks checked against the layout.
    Sparse { reader: ChunkReader<Box<dyn Source + 'a>>, next_chunk: usize, current: Option<Chunk> },
    /// A raw image read forward; skipped blocks are checked to still be FILL blocks.
    Raw { src: Box<dyn Source + 'a> },
    /// Any image, read at the offsets of RAW data only.
    Seekable { src: Box<dyn ReadSeek + 'a>, base: u64 },
}

/// Writes the pieces of a split image (see the module documentation).
pub struct PieceWriter<'a> {
    layout: &'a SparseLayout,
    input: Input<'a>,
    next_piece: usize,
    buf: Vec<u8>,
}

impl<'a> PieceWriter<'a> {
    /// Pieces from a forward-only reader positioned at the start of the image the layout was
    /// computed from. Pieces must be written in order, each exactly once.
    pub fn new<R: Read + 'a>(src: R, layout: &'a SparseLayout) -> Result<Self, SparseError> {
        let source: Box<dyn Source + 'a> = Box::new(ForwardSource::new(src));
        let input = match layout.format {
            ImageFormat::Sparse(header) => {
                let reader = ChunkReader::new(source)?;
                if *reader.header() != header {
                    return Err(SparseError::SourceChanged {
                        offset: 0,
                        detail: "the sparse header differs from the one scanned".into(),
                    });
                }
                Input::Sparse { reader, next_chunk: 0, current: None }
            }
            ImageFormat::Raw => Input::Raw { src: source },
        };
        Ok(PieceWriter { layout, input, next_piece: 0, buf: Vec::new() })
    }

    /// Pieces from a seekable source (the image starts at its current position), in any order.
    pub fn seekable<R: Read + Seek + 'a>(mut src: R, layout: &'a SparseLayout) -> Result<Self, SparseError> {
        let base = src.stream_position().map_err(|e| SparseError::io("seeking the image", e))?;
        Ok(PieceWriter { layout, input: Input::Seekable { src: Box::new(src), base }, next_piece: 0, buf: Vec::new() })
    }

    /// Writes one piece to `out` and returns its length (always `piece.encoded_len()`).
    pub fn write_piece<W: Write + ?Sized>(&mut self, piece: &SparsePiece, out: &mut W) -> Result<u64, SparseError> {
        if !matches!(self.input, Input::Seekable { .. }) && piece.index != self.next_piece {
            return Err(SparseError::PieceOutOfOrder { index: piece.index, expected: self.next_piece });
        }
        if piece.blk_sz != self.layout.blk_sz || piece.total_blks != self.layout.total_blks {
            return Err(SparseError::Unrepresentable(format!(
                "piece {} was planned for another image ({} blocks of {} bytes, this one has {} of {})",
                piece.index, piece.total_blks, piece.blk_sz, self.layout.total_blks, self.layout.blk_sz
            )));
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF_LEN + 64];
        }
        let bs = piece.blk_sz as u64;
        let mut out = Counting { inner: out, written: 0 };
        // Headers wait here and go out with the next data, so writes stay large.
        let mut head: Vec<u8> = piece.header().encode().to_vec();
        let mut last = 0u64;
        for c in &piece.chunks {
            if c.start_block as u64 > last {
                head.extend_from_slice(&dont_care(c.start_block as u64 - last));
            }
            match c.data {
                PieceData::Fill(value) => {
                    let h = ChunkHeader { chunk_type: CHUNK_TYPE_FILL, reserved1: 0, chunk_sz: c.blocks, total_sz: 16 };
                    head.extend_from_slice(&h.encode());
                    head.extend_from_slice(&value.to_le_bytes());
                }
                PieceData::Raw { source_offset } => {
                    let len = c.blocks as u64 * bs;
                    let h = ChunkHeader {
                        chunk_type: CHUNK_TYPE_RAW,
                        reserved1: 0,
                        chunk_sz: c.blocks,
                        total_sz: u32::try_from(12 + len).map_err(|_| {
                            SparseError::Unrepresentable(format!("piece {}: a RAW chunk of {len} bytes is too long", piece.index))
                        })?,
                    };
                    head.extend_from_slice(&h.encode());
                    self.copy_raw(source_offset, len, &mut head, &mut out)?;
                }
            }
            last = c.end_block();
        }
        if last < piece.total_blks as u64 {
            head.extend_from_slice(&dont_care(piece.total_blks as u64 - last));
        }
        out.write(&head)?;
        if out.written != piece.encoded_len() {
            return Err(SparseError::Unrepresentable(format!(
                "internal error: piece {} came out {} bytes long instead of {}; please report this",
                piece.index,
                out.written,
                piece.encoded_len()
            )));
        }
        self.next_piece = piece.index + 1;
        Ok(out.written)
    }

    /// Copies `len` bytes of RAW data at `offset` of the source to `out`, `head` first.
    fn copy_raw<W: Write + ?Sized>(
        &mut self,
        offset: u64,
        len: u64,
        head: &mut Vec<u8>,
        out: &mut Counting<'_, W>,
    ) -> Result<(), SparseError> {
        self.seek_data(offset, len)?;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            let mut left = len;
            let mut at = offset;
            while left > 0 {
                let h = head.len();
                let n = left.min((buf.len() - h) as u64) as usize;
                buf[..h].copy_from_slice(head);
                head.clear();
                read_into(&mut self.input, self.layout, &mut buf[h..h + n], at)?;
                out.write(&buf[..h + n])?;
                left -= n as u64;
                at += n as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        result
    }

    /// Positions the input at `offset`, the start of `len` bytes of RAW data.
    fn seek_data(&mut self, offset: u64, len: u64) -> Result<(), SparseError> {
        let layout = self.layout;
        match &mut self.input {
            Input::Seekable { src, base } => {
                src.seek(SeekFrom::Start(*base + offset))
                    .map_err(|e| SparseError::io(format!("seeking the image to offset {offset:#x}"), e))?;
            }
            Input::Raw { src } => {
                let pos = src.position();
                if offset < pos {
                    return Err(SparseError::SourceChanged {
                        offset,
                        detail: format!("RAW data wanted behind the read position {pos:#x}"),
                    });
                }
                let mut scratch = std::mem::take(&mut self.buf);
                let result = skip_fill_blocks(src, offset - pos, &mut scratch);
                self.buf = scratch;
                result?;
            }
            Input::Sparse { reader, next_chunk, current } => loop {
                if let Some(c) = current {
                    let end = c.data_offset + c.blocks as u64 * layout.blk_sz as u64;
                    let pos = reader.position();
                    if offset >= pos && offset + len <= end {
                        return reader.skip_data(offset - pos);
                    }
                }
                let found = reader.next_chunk()?;
                let expected = layout.chunks.get(*next_chunk);
                match (found, expected) {
                    (Some(f), Some(e)) if f == *e => {
                        *next_chunk += 1;
                        // Only a RAW chunk's data range is data in the file.
                        *current = (f.kind == ChunkKind::Raw).then_some(f);
                    }
                    (found, _) => {
                        return Err(SparseError::SourceChanged {
                            offset: reader.position(),
                            detail: format!("chunk {} reads as {found:?}, scanned as {expected:?}", *next_chunk),
                        })
                    }
                }
            },
        }
        Ok(())
    }
}

/// Reads RAW data at `at` (the input is positioned there). A raw image reads as zeros past its
/// end, up to the end of its last block.
fn read_into(input: &mut Input<'_>, layout: &SparseLayout, dst: &mut [u8], at: u64) -> Result<(), SparseError> {
    let in_file = match layout.format {
        ImageFormat::Raw => (layout.source_len.saturating_sub(at)).min(dst.len() as u64) as usize,
        ImageFormat::Sparse(_) => dst.len(),
    };
    let got = match input {
        Input::Sparse { reader, .. } => {
            reader.read_data(dst)?;
            return Ok(());
        }
        Input::Raw { src } => src.read_full(&mut dst[..in_file]),
        Input::Seekable { src, .. } => read_full_from(src, &mut dst[..in_file]),
    }
    .map_err(|e| SparseError::io(format!("reading the image at offset {at:#x}"), e))?;
    if got < in_file {
        return Err(SparseError::SourceChanged {
            offset: at + got as u64,
            detail: "the image ends earlier than when it was scanned".into(),
        });
    }
    dst[in_file..].fill(0);
    Ok(())
}

/// Skips `n` bytes (whole blocks) of a raw image, checking that each block is still a FILL
/// block (all u32 words equal), as the scan classified it.
fn skip_fill_blocks(src: &mut Box<dyn Source + '_>, n: u64, scratch: &mut [u8]) -> Result<(), SparseError> {
    let bs = RAW_BLOCK_SIZE as usize;
    let mut left = n;
    while left > 0 {
        let want = left.min((scratch.len() / bs * bs) as u64) as usize;
        let at = src.position();
        let got = src
            .read_full(&mut scratch[..want])
            .map_err(|e| SparseError::io(format!("reading the image at offset {at:#x}"), e))?;
        if got < want {
            return Err(SparseError::SourceChanged {
                offset: at + got as u64,
                detail: "the image ends earlier than when it was scanned".into(),
            });
        }
        for (i, block) in scratch[..want].chunks(bs).enumerate() {
            if block.len() > 4 && block[4..] != block[..block.len() - 4] {
                return Err(SparseError::SourceChanged {
                    offset: at + (i * bs) as u64,
                    detail: "a block scanned as FILL now holds varying data".into(),
                });
            }
        }
        left -= want as u64;
    }
    Ok(())
}

/// Counts what goes to the caller's writer.
struct Counting<'w, W: ?Sized> {
    inner: &'w mut W,
    written: u64,
}

impl<W: Write + ?Sized> Counting<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SparseError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.inner
            .write_all(bytes)
            .map_err(|e| SparseError::io(format!("writing piece data at piece offset {:#x}", self.written), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn dont_care(blocks: u64) -> [u8; 12] {
    // Block counts stay below total_blks, a u32.
    ChunkHeader { chunk_type: CHUNK_TYPE_DONT_CARE, reserved1: 0, chunk_sz: blocks as u32, total_sz: 12 }.encode()
}
