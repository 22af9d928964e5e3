//! Sending one image file to one partition: unchanged when it fits the device's
//! `max-download-size`, otherwise as sparse pieces split exactly as AOSP fastboot splits them
//! (Xiaomi bootloaders check each piece's CRC against the package's list).

use super::{FastbootClient, FastbootError};
use crate::sparse::{self, DownloadPlan, PieceWriter, SparseError, SparseLayout};
use std::fs::File;
use std::cell::RefCell;
use std::rc::Rc;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What happens while an image is sent, for progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageEvent {
    /// A download starts: piece `piece` of `pieces` (1-based), `bytes` long.
    Sending { partition: String, piece: u32, pieces: u32, bytes: u64 },
    /// Bytes of the current download sent so far.
    Progress { partition: String, sent: u64, total: u64 },
    /// The device is writing the piece just sent.
    Writing { partition: String, piece: u32, pieces: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashReport {
    pub partition: String,
    /// Bytes that crossed the link (sparse headers included).
    pub bytes_sent: u64,
    pub pieces: u32,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usable image: {source}")]
    Sparse { path: PathBuf, source: SparseError },
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    #[error("{path} holds {image} bytes of partition data but partition {partition} holds {size}: nothing was sent")]
    TooLarge { path: PathBuf, partition: String, image: u64, size: u64 },
    #[error("flashing {partition}: {source}")]
    Device { partition: String, source: FastbootError },
}

impl ImageError {
    pub fn device_error(&self) -> Option<&FastbootError> {
        match self {
            ImageError::Device { source, .. } => Some(source),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ImageError::Device { source, .. } => source.hint(),
            ImageError::Sparse { .. } => {
                Some("the file is damaged or not a partition image: get it again from the ROM package".into())
            }
            ImageError::TooLarge { .. } => Some("check the partition name and that the image is for this phone".into()),
            _ => None,
        }
    }
}

/// Reads `max-download-size` (hex with `0x`, or decimal). `None` when the device does not say.
pub fn max_download_size(client: &mut FastbootClient) -> Result<Option<u64>, FastbootError> {
    Ok(client.getvar_opt("max-download-size")?.and_then(|v| super::codec::parse_size(&v)).filter(|v| *v > 0))
}

/// Sends the image file at `path` to `partition` (the name is sent unchanged).
/// `max_download` overrides what the device reports (like AOSP's `-S`).
pub fn flash_file(
    client: &mut FastbootClient,
    partition: &str,
    path: &Path,
    max_download: Option<u64>,
    events: &mut dyn FnMut(ImageEvent),
) -> Result<FlashReport, ImageError> {
    let started = Instant::now();
    let open = || File::open(path).map_err(|e| ImageError::Open { path: path.to_path_buf(), source: e });
    let sparse_err = |e| ImageError::Sparse { path: path.to_path_buf(), source: e };
    let dev = |e| ImageError::Device { partition: partition.to_string(), source: e };
    let meta = open()?.metadata().map_err(|e| ImageError::Open { path: path.to_path_buf(), source: e })?;
    if !meta.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file (a device, a pipe or a folder): give an image file");
        return Err(ImageError::Open { path: path.to_path_buf(), source });
    }
    let len = meta.len();
    if len == 0 {
        return Err(ImageError::Empty { path: path.to_path_buf() });
    }
    // Before anything is sent: a sparse image must be well-formed and complete (a phone would
    // otherwise take part of it), and the image must fit the partition where the phone says
    // how large it is.
    let layout = sparse::scan_seekable(BufReader::with_capacity(1 << 20, open()?), &sparse::ScanOptions::default()).map_err(sparse_err)?.layout;
    let image = layout.expanded_len();
    if let Some(size) = client.getvar_opt(&format!("partition-size:{partition}")).map_err(dev)?.as_deref().and_then(super::codec::parse_partition_size) {
        if image > size {
            return Err(ImageError::TooLarge { path: path.to_path_buf(), partition: partition.to_string(), image, size });
        }
    }
    let limit = match max_download {
        Some(m) => Some(m),
        None => max_download_size(client).map_err(dev)?,
    };
    // The layout is needed only to split; a file that fits goes as it is, as AOSP sends it.
    if sparse::resparse_limit(len, limit).is_none() {
        let mut f = BufReader::with_capacity(1 << 20, open()?);
        send_stream(client, partition, &mut f, len, 1, 1, events).map_err(|(_, e)| e)?;
        return Ok(FlashReport { partition: partition.to_string(), bytes_sent: len, pieces: 1, elapsed: started.elapsed() });
    }
    let plan = sparse::plan_download(&layout, limit).map_err(sparse_err)?;
    let sent = send_planned(client, partition, &layout, &plan, BufReader::with_capacity(1 << 20, open()?), events)
        .map_err(|e| match e {
            SendError::Image(e) => sparse_err(e),
            SendError::Device { error, .. } => error,
        })?;
    Ok(FlashReport { partition: partition.to_string(), bytes_sent: sent, pieces: plan.downloads() as u32, elapsed: started.elapsed() })
}

/// Which half of a piece's exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `download:` and its data phase: nothing was written to the partition yet, so the piece
    /// may be sent again.
    Download,
    /// `flash:`: the phone may have written part of the partition.
    Flash,
}

/// Why sending a planned image stopped.
#[derive(Debug)]
pub enum SendError {
    /// The image source failed or did not match its layout.
    Image(SparseError),
    /// The device (or the link) failed on `piece` (0-based), at `stage`.
    Device { piece: usize, stage: Stage, error: ImageError },
}

impl SendError {
    /// True when the failure is the link's (timeout, closed connection, USB error) during a
    /// piece's download, before its `flash:` was sent: the phone wrote nothing of that piece,
    /// so sending it again after reconnecting is safe.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            SendError::Device { stage: Stage::Download, error: ImageError::Device { source: FastbootError::Transport { .. }, .. }, .. }
        )
    }
}

/// Sends an image whose layout and download plan are known, reading it once, forward only,
/// from `src` (which may be a decompressing stream). Returns the bytes sent.
pub fn send_planned<R: Read>(
    client: &mut FastbootClient,
    partition: &str,
    layout: &SparseLayout,
    plan: &DownloadPlan,
    src: R,
    events: &mut dyn FnMut(ImageEvent),
) -> Result<u64, SendError> {
    send_planned_from(client, partition, layout, plan, src, 0, events)
}

/// [`send_planned`] starting at piece `first` (0-based) of a split image: `src` is read from
/// the start of the image and the pieces before `first` are generated into `io::sink()`, so a
/// forward-only stream works too. Returns the bytes sent (of the pieces sent).
pub fn send_planned_from<R: Read>(
    client: &mut FastbootClient,
    partition: &str,
    layout: &SparseLayout,
    plan: &DownloadPlan,
    mut src: R,
    first: usize,
    events: &mut dyn FnMut(ImageEvent),
) -> Result<u64, SendError> {
    match plan {
        DownloadPlan::Unchanged { len } => {
            send_stream(client, partition, &mut src, *len, 1, 1, events)
                .map_err(|(stage, error)| SendError::Device { piece: 0, stage, error })?;
            Ok(*len)
        }
        DownloadPlan::Pieces { pieces, .. } => {
            let n = pieces.len() as u32;
            // The writer reads only up to the last chunk it needs; the rest of the source is
            // read before the last piece's download ends (see `drain`), so a reader that
            // checks the whole image can still stop it.
            let shared = Rc::new(RefCell::new(src));
            let mut writer = PieceWriter::new(SharedRead(Rc::clone(&shared)), layout).map_err(SendError::Image)?;
            for piece in pieces.iter().take(first) {
                writer.write_piece(piece, &mut std::io::sink()).map_err(SendError::Image)?;
            }
            let mut sent = 0;
            for piece in pieces.iter().skip(first) {
                let len = piece.encoded_len();
                let mut image_error = None;
                let last = piece.index + 1 == pieces.len();
                let r = send_with(client, partition, len, piece.index as u32 + 1, n, events, &mut |sink| {
                    writer.write_piece(piece, sink).map(drop).map_err(|e| {
                        let msg = e.to_string();
                        image_error = Some(e);
                        std::io::Error::other(msg)
                    })?;
                    if last {
                        drain(&mut SharedRead(Rc::clone(&shared)))?;
                    }
                    Ok(())
                });
                // When the link fails under the piece writer, the writer reports the failed
                // write as its own error too: the link's failure is the real one.
                let link_failed = matches!(&r, Err((_, ImageError::Device { source: FastbootError::Transport { .. }, .. })));
                if let (Some(e), false) = (image_error, link_failed) {
                    return Err(SendError::Image(e));
                }
                r.map_err(|(stage, error)| SendError::Device { piece: piece.index, stage, error })?;
                sent += len;
            }
            Ok(sent)
        }
    }
}

/// Reads what is left of an image's source (nothing, for a well-formed image) before its last
/// download ends, so that a source which checks the whole image on its last byte can still
/// fail the download and keep the `flash:` from being sent.
fn drain(src: &mut dyn Read) -> std::io::Result<()> {
    std::io::copy(src, &mut std::io::sink()).map(drop)
}

/// Lets the piece writer and [`drain`] read the same source in turn.
struct SharedRead<R>(Rc<RefCell<R>>);

impl<R: Read> Read for SharedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Read buffer of [`send_stream`]: as large as the largest transfer of the network links.
const STREAM_BUFFER: usize = 4 << 20;

fn send_stream(
    client: &mut FastbootClient,
    partition: &str,
    src: &mut dyn Read,
    len: u64,
    piece: u32,
    pieces: u32,
    events: &mut dyn FnMut(ImageEvent),
) -> Result<(), (Stage, ImageError)> {
    send_with(client, partition, len, piece, pieces, events, &mut |sink| {
        // Whole transfers (up to 4 MiB) are read and handed on in one piece, so the link
        // sends them from this buffer without another copy.
        let mut buf = vec![0u8; (len as usize).min(STREAM_BUFFER)];
        let mut left = len;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let filled = sparse::read_full_from(src, &mut buf[..want])?;
            if filled == 0 {
                // Short source: the client reports the bytes missing.
                return Ok(());
            }
            sink.write_all(&buf[..filled])?;
            left -= filled as u64;
        }
        drain(src)
    })
}

/// One `download` (its data written by `produce`) followed by `flash`.
fn send_with(
    client: &mut FastbootClient,
    partition: &str,
    len: u64,
    piece: u32,
    pieces: u32,
    events: &mut dyn FnMut(ImageEvent),
    produce: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), (Stage, ImageError)> {
    let dev = |stage: Stage| move |e| (stage, ImageError::Device { partition: partition.to_string(), source: e });
    let len32 = u32::try_from(len).map_err(|_| {
        dev(Stage::Download)(FastbootError::Unexpected {
            command: "download".into(),
            got: format!("a {len}-byte piece"),
            expected: "at most 4 GiB - 1 per download".into(),
        })
    })?;
    events(ImageEvent::Sending { partition: partition.to_string(), piece, pieces, bytes: len });
    let name = partition.to_string();
    client
        .download_with(len32, &mut |sent| events(ImageEvent::Progress { partition: name.clone(), sent, total: len }), produce)
        .map_err(dev(Stage::Download))?;
    events(ImageEvent::Writing { partition: partition.to_string(), piece, pieces });
    client.flash(partition).map_err(dev(Stage::Flash))
}
