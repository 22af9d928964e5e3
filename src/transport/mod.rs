//! Moving packets between mi-flash and a device. Knows nothing of fastboot.
//!
//! The fastboot protocol is packet oriented on every link: a command is one packet, every
//! response is one packet (≤ 256 bytes), a download's data phase is a run of packets of any
//! size. A [`Transport`] therefore writes and reads whole packets; each implementation maps
//! that onto its link (USB bulk transfers, AOSP TCP frames, an in-process channel, a mock).
//! The same trait serves the device side of the simulator.

pub mod usb;

use std::time::Duration;

pub mod inproc;
pub mod mock;
pub mod tcp;
pub mod udp;


/// What can go wrong while moving bytes. Every variant renders as a sentence that tells the
/// user what happened; [`TransportError::hint`] adds what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("no answer from the device within {0:?}")]
    Timeout(Duration),
    #[error("the connection to the device was closed")]
    Closed,
    #[error("I/O error talking to the device: {0}")]
    Io(#[from] std::io::Error),
    #[error("USB error: {message}")]
    Usb { message: String, hint: Option<String> },
    #[error("{0}")]
    Protocol(String),
}

impl TransportError {
    /// The next step for the user, where there is a useful one.
    pub fn hint(&self) -> Option<String> {
        match self {
            TransportError::Usb { hint, .. } => hint.clone(),
            TransportError::Closed => Some(
                "check the cable and that the phone is still in fastboot mode, then run the command again"
                    .into(),
            ),
            TransportError::Timeout(_) => Some(
                "the phone stopped answering: check the cable (a USB 2.0 port or hub helps with flaky USB 3 ports) and try again"
                    .into(),
            ),
            _ => None,
        }
    }

    /// True when the link is gone (as opposed to a slow device).
    pub fn is_disconnect(&self) -> bool {
        matches!(self, TransportError::Closed)
            || matches!(self, TransportError::Io(e) if matches!(e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionAborted))
    }
}

/// A packet link to a fastboot device (or, on the simulator's side, to a host).
pub trait Transport: Send {
    /// Send one packet: a command, a response, or a piece of a data phase. Never called with
    /// an empty slice (zero-length packets freeze some devices).
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError>;

    /// Receive one packet, or the next part of it if it is larger than `buf`. Waits at most
    /// `timeout`; `None` waits as long as it takes.
    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError>;

    /// Where this link goes, in `-s` syntax where possible (`tcp:127.0.0.1:5554`, `usb:SERIAL`).
    fn describe(&self) -> String;

    /// The largest packet worth writing in one call during a data phase.
    fn max_write_chunk(&self) -> usize {
        1024 * 1024
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        (**self).write(data)
    }
    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        (**self).read(buf, timeout)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn max_write_chunk(&self) -> usize {
        (**self).max_write_chunk()
    }
}

/// Renders bytes from a device for a message: printable ASCII kept, the rest escaped, cut to a
/// readable length.
pub fn printable(bytes: &[u8]) -> String {
    let mut s: String =
        bytes.iter().take(64).flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
    if bytes.len() > 64 {
        s.push('…');
    }
    s
}
