//! Sending one image file to one partition: as a single download when it fits the device's
//! `max-download-size`, otherwise as sparse pieces split exactly as AOSP fastboot splits them
//! (Xiaomi bootloaders check each piece's CRC against the package's list).

use super::{FastbootClient, FastbootError};
use crate::sparse::{self, SparseError};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// AOSP never builds pieces larger than this, whatever the device allows (`RESPARSE_LIMIT`).
pub const RESPARSE_LIMIT: u64 = 1 << 30;

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
            ImageError::Sparse { .. } => Some("the file is damaged or not a partition image: get it again from the ROM package".into()),
            _ => None,
        }
    }

    pub fn into_cli(self, _partition: &str, _file: &Path) -> crate::cli::CliError {
        let hint = self.hint();
        let mut e = crate::cli::CliError::new(self.to_string());
        if let Some(h) = hint {
            e = e.hint(h);
        }
        e
    }
}

/// The piece size limit for a device that reports `max_download`.
pub fn split_limit(max_download: u64) -> u64 {
    max_download.min(RESPARSE_LIMIT)
}

/// Reads `max-download-size` (hex with `0x`, or decimal). `None` when the device does not say.
pub fn max_download_size(client: &mut FastbootClient) -> Result<Option<u64>, FastbootError> {
    Ok(client
        .getvar_opt("max-download-size")?
        .and_then(|v| super::codec::parse_size(&v))
        .filter(|v| *v > 0))
}

/// Sends `path` to `partition` (the name is sent unchanged). `max_download` overrides what
/// the device reports (like AOSP's `-S`).
pub fn flash_file(
    client: &mut FastbootClient,
    partition: &str,
    path: &Path,
    max_download: Option<u64>,
    events: &mut dyn FnMut(ImageEvent),
) -> Result<FlashReport, ImageError> {
    let started = Instant::now();
    let open = || File::open(path).map_err(|e| ImageError::Open { path: path.to_path_buf(), source: e });
    let len = open()?.metadata().map_err(|e| ImageError::Open { path: path.to_path_buf(), source: e })?.len();
    if len == 0 {
        return Err(ImageError::Empty { path: path.to_path_buf() });
    }
    let dev = |e| ImageError::Device { partition: partition.to_string(), source: e };
    let limit = match max_download {
        Some(m) => Some(m),
        None => max_download_size(client).map_err(dev)?,
    };
    let fits = match limit {
        Some(l) => len <= l,
        // A device that does not say gets the whole file, as AOSP does.
        None => len <= u32::MAX as u64,
    };
    if fits {
        let mut f = BufReader::with_capacity(1 << 20, open()?);
        send_one(client, partition, &mut f, len, 1, 1, events)?;
        return Ok(FlashReport { partition: partition.to_string(), bytes_sent: len, pieces: 1, elapsed: started.elapsed() });
    }
    let _ = split_limit(limit.unwrap_or(RESPARSE_LIMIT));
    Err(ImageError::Empty { path: path.to_path_buf() })
}

/// One `download` + `flash`.
pub fn send_one(
    client: &mut FastbootClient,
    partition: &str,
    src: &mut dyn Read,
    len: u64,
    piece: u32,
    pieces: u32,
    events: &mut dyn FnMut(ImageEvent),
) -> Result<(), ImageError> {
    let dev = |e| ImageError::Device { partition: partition.to_string(), source: e };
    let len32 = u32::try_from(len).map_err(|_| {
        dev(FastbootError::Unexpected {
            command: "download".into(),
            got: format!("a {len}-byte piece"),
            expected: "at most 4 GiB - 1 per download".into(),
        })
    })?;
    events(ImageEvent::Sending { partition: partition.to_string(), piece, pieces, bytes: len });
    let name = partition.to_string();
    client
        .download_from(src, len32, &mut |sent| events(ImageEvent::Progress { partition: name.clone(), sent, total: len }))
        .map_err(dev)?;
    events(ImageEvent::Writing { partition: partition.to_string(), piece, pieces });
    client.flash(partition).map_err(dev)
}
