//! A transport connected directly to a simulated device inside the same process: two bounded
//! channels of packets, no sockets. Used by tests and by `-s sim:PROFILE`.

use super::{Transport, TransportError};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// Packets in flight per direction; bounds memory while a download streams.
const QUEUE_DEPTH: usize = 8;

pub struct InProcTransport {
    tx: SyncSender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    pos: usize,
    name: String,
}

/// A connected pair: give the first to the host, the second to the simulated device.
pub fn pair(name: &str) -> (InProcTransport, InProcTransport) {
    let (to_dev, from_host) = sync_channel(QUEUE_DEPTH);
    let (to_host, from_dev) = sync_channel(QUEUE_DEPTH);
    (
        InProcTransport { tx: to_dev, rx: from_dev, pending: Vec::new(), pos: 0, name: name.to_string() },
        InProcTransport { tx: to_host, rx: from_host, pending: Vec::new(), pos: 0, name: format!("{name} (device side)") },
    )
}

impl Transport for InProcTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.tx.send(data.to_vec()).map_err(|_| TransportError::Closed)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        while self.pos >= self.pending.len() {
            let next = match timeout {
                Some(t) => self.rx.recv_timeout(t).map_err(|e| match e {
                    RecvTimeoutError::Timeout => TransportError::Timeout(t),
                    RecvTimeoutError::Disconnected => TransportError::Closed,
                })?,
                None => self.rx.recv().map_err(|_| TransportError::Closed)?,
            };
            self.pending = next;
            self.pos = 0;
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_keep_their_boundaries_and_close_is_seen() {
        let (mut host, mut dev) = pair("sim:test");
        host.write(b"getvar:product").unwrap();
        host.write(b"abc").unwrap();
        let mut buf = [0u8; 256];
        let n = dev.read(&mut buf, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(&buf[..n], b"getvar:product");
        let n = dev.read(&mut buf[..2], Some(Duration::from_secs(1))).unwrap();
        assert_eq!(&buf[..n], b"ab");
        let n = dev.read(&mut buf, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(&buf[..n], b"c");
        assert!(matches!(dev.read(&mut buf, Some(Duration::from_millis(10))), Err(TransportError::Timeout(_))));
        drop(host);
        assert!(matches!(dev.read(&mut buf, Some(Duration::from_secs(1))), Err(TransportError::Closed)));
    }
}
