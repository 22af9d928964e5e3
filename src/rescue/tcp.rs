//! ADB over TCP: the messages back to back on a plain byte stream, no framing and no
//! handshake of its own (unlike fastboot's `FB01`). Phones expose Mi Recovery over USB only;
//! this is how mi-flash reaches the simulated recovery (`mi-flash simulate --recovery`).

use crate::transport::tcp::{connect_stream, map_io};
use crate::transport::{Transport, TransportError};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct AdbTcpTransport {
    stream: TcpStream,
    name: String,
}

impl AdbTcpTransport {
    /// Host side: connect to `host:port`.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<AdbTcpTransport, TransportError> {
        let stream = connect_stream(host, port, timeout, "is `mi-flash simulate --recovery` running there?")?;
        AdbTcpTransport::from_stream(stream, format!("tcp:{host}:{port}"))
    }

    /// Either side: wrap a connected stream.
    pub fn from_stream(stream: TcpStream, name: String) -> Result<AdbTcpTransport, TransportError> {
        stream.set_nodelay(true)?;
        Ok(AdbTcpTransport { stream, name })
    }
}

impl Transport for AdbTcpTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.stream.write_all(data).map_err(|e| map_io(e, None))
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.stream.set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
        match self.stream.read(buf) {
            Ok(0) => Err(TransportError::Closed),
            Ok(n) => Ok(n),
            Err(e) => Err(map_io(e, timeout)),
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn bytes_pass_unframed_and_close_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 5];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hello");
            s.write_all(b"world").unwrap();
        });
        let mut t = AdbTcpTransport::connect("127.0.0.1", port, Duration::from_secs(2)).unwrap();
        assert_eq!(t.describe(), format!("tcp:127.0.0.1:{port}"));
        t.write(b"hello").unwrap();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = t.read(&mut buf, Some(Duration::from_secs(2))).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"world");
        peer.join().unwrap();
        assert!(t.read(&mut buf, Some(Duration::from_secs(2))).unwrap_err().is_disconnect());
    }

    #[test]
    fn refused_connection_names_the_simulator() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = AdbTcpTransport::connect("127.0.0.1", port, Duration::from_secs(2)).err().unwrap();
        assert!(e.to_string().contains("simulate --recovery"), "{e}");
    }
}
