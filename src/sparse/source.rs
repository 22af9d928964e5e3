//! Byte sources the sparse code reads from: a forward-only [`Read`] (skipping means reading and
//! discarding) or a [`Read`] + [`Seek`] (skipping means seeking). Both count the offset so that
//! every error can name where it happened.

use std::io::{self, Read, Seek, SeekFrom};

/// Size of the scratch buffers used for copying and skipping. Small and fixed so memory does
/// not grow with the image.
pub(crate) const COPY_BUF_LEN: usize = 1 << 20;

pub(crate) trait Source {
    /// Reads until `buf` is full or the input ends; returns how many bytes were read.
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Moves `n` bytes forward; returns how many could be skipped before the input ended.
    fn skip(&mut self, n: u64) -> io::Result<u64>;
    /// Offset of the next byte, counted from where the source started.
    fn position(&self) -> u64;
}

pub(crate) struct ForwardSource<R> {
    inner: R,
    pos: u64,
    scratch: Vec<u8>,
}

impl<R: Read> ForwardSource<R> {
    pub(crate) fn new(inner: R) -> Self {
        ForwardSource {
            inner,
            pos: 0,
            scratch: Vec::new(),
        }
    }
}

pub(crate) fn read_full_from<R: Read + ?Sized>(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match inner.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl<R: Read> Source for ForwardSource<R> {
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = read_full_from(&mut self.inner, buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        if self.scratch.is_empty() && n > 0 {
            self.scratch = vec![0u8; COPY_BUF_LEN.min(n as usize).max(4096)];
        }
        let mut left = n;
        while left > 0 {
            let want = left.min(self.scratch.len() as u64) as usize;
            let got = read_full_from(&mut self.inner, &mut self.scratch[..want])?;
            self.pos += got as u64;
            left -= got as u64;
            if got < want {
                break;
            }
        }
        Ok(n - left)
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

pub(crate) struct SeekSource<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> SeekSource<R> {
    /// Starts at the reader's current position; the end is where the reader ends.
    pub(crate) fn new(mut inner: R) -> io::Result<Self> {
        let start = inner.stream_position()?;
        let end = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(start))?;
        Ok(SeekSource {
            inner,
            pos: 0,
            len: end.saturating_sub(start),
        })
    }
}

impl<R: Read + Seek> Source for SeekSource<R> {
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = read_full_from(&mut self.inner, buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let step = n.min(self.len.saturating_sub(self.pos));
        if step > 0 {
            let step_i64 = i64::try_from(step)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "skip too large"))?;
            self.inner.seek(SeekFrom::Current(step_i64))?;
            self.pos += step;
        }
        Ok(step)
    }

    fn position(&self) -> u64 {
        self.pos
    }
}
