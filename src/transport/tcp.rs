//! AOSP fastboot TCP protocol v1: a `FB01` handshake both ways, then every packet framed as
//! an 8-byte big-endian length followed by the payload. The device is the server (default
//! port 5554); the same framing serves the simulator's side of a connection.

use super::{Transport, TransportError};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 5554;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(2000);
/// Largest frame the simulator accepts in one piece; bigger announced frames are a protocol
/// error rather than a memory allocation.
const MAX_FRAME: u64 = 1 << 40;

/// One end of a framed fastboot TCP connection.
pub struct TcpTransport {
    stream: TcpStream,
    peer: String,
    /// Bytes of the current incoming frame not yet returned by `read`.
    frame_left: u64,
}

/// Splits `HOST[:PORT]` (IPv6 as `[::1]:PORT`), with the AOSP default port.
pub fn parse_host_port(spec: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("`{spec}` is not HOST[:PORT]");
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match spec.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
        Some(_) => Ok((spec.to_string(), default_port)),
        None if spec.is_empty() => Err(bad()),
        None => Ok((spec.to_string(), default_port)),
    }
}

pub(crate) fn map_io(e: std::io::Error, timeout: Option<Duration>) -> TransportError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::Timeout(timeout.unwrap_or_default()),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            TransportError::Closed
        }
        _ => TransportError::Io(e),
    }
}

/// Connects to the first address of `host:port` that answers. A refused connection says
/// what to check (`what_to_check`, in the caller's words).
pub(crate) fn connect_stream(host: &str, port: u16, timeout: Duration, what_to_check: &str) -> Result<TcpStream, TransportError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| TransportError::Protocol(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == ErrorKind::ConnectionRefused => {
            TransportError::Protocol(format!("nothing is listening on tcp:{host}:{port} ({what_to_check})"))
        }
        Some(e) => map_io(e, Some(timeout)),
        None => TransportError::Protocol(format!("{host} has no address")),
    })
}

impl TcpTransport {
    /// Host side: connect and send `FB01`, expect `FBnn` (nn ≥ 1) back within 2 s.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpTransport, TransportError> {
        let stream = connect_stream(host, port, timeout, "is the phone in network fastboot mode, or is `mi-flash simulate` running?")?;
        let mut t = TcpTransport::from_stream(stream)?;
        t.handshake_as_host()?;
        Ok(t)
    }

    /// Device side: wrap an accepted connection, read the host's `FBnn`, answer `FB01`.
    pub fn accept(stream: TcpStream) -> Result<TcpTransport, TransportError> {
        let mut t = TcpTransport::from_stream(stream)?;
        let mut hello = [0u8; 4];
        t.stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        t.stream.read_exact(&mut hello).map_err(|e| map_io(e, Some(HANDSHAKE_TIMEOUT)))?;
        check_hello(&hello)?;
        t.stream.write_all(b"FB01")?;
        Ok(t)
    }

    fn from_stream(stream: TcpStream) -> Result<TcpTransport, TransportError> {
        stream.set_nodelay(true)?;
        let peer = match stream.peer_addr() {
            Ok(SocketAddr::V6(a)) => format!("tcp:[{}]:{}", a.ip(), a.port()),
            Ok(a) => format!("tcp:{a}"),
            Err(_) => "tcp:?".into(),
        };
        Ok(TcpTransport { stream, peer, frame_left: 0 })
    }

    fn handshake_as_host(&mut self) -> Result<(), TransportError> {
        self.stream.write_all(b"FB01")?;
        let mut hello = [0u8; 4];
        self.stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        self.stream.read_exact(&mut hello).map_err(|e| match map_io(e, Some(HANDSHAKE_TIMEOUT)) {
            TransportError::Timeout(_) | TransportError::Closed => TransportError::Protocol(
                "no fastboot handshake from the other end: it may not support TCP fastboot".into(),
            ),
            other => other,
        })?;
        check_hello(&hello)
    }

    /// Name the connection by the address the user gave rather than the resolved peer.
    pub fn with_name(mut self, name: String) -> TcpTransport {
        self.peer = name;
        self
    }
}

fn check_hello(hello: &[u8; 4]) -> Result<(), TransportError> {
    let ok = &hello[..2] == b"FB"
        && std::str::from_utf8(&hello[2..]).ok().and_then(|v| v.parse::<u32>().ok()).is_some_and(|v| v >= 1);
    if ok {
        Ok(())
    } else {
        Err(TransportError::Protocol(format!(
            "unrecognised fastboot TCP handshake `{}`",
            crate::transport::printable(hello)
        )))
    }
}

impl Transport for TcpTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let mut header = [0u8; 8];
        header.copy_from_slice(&(data.len() as u64).to_be_bytes());
        // One write for small packets keeps a command in one TCP segment.
        if data.len() <= 4096 {
            let mut buf = Vec::with_capacity(8 + data.len());
            buf.extend_from_slice(&header);
            buf.extend_from_slice(data);
            self.stream.write_all(&buf).map_err(|e| map_io(e, None))
        } else {
            self.stream.write_all(&header).map_err(|e| map_io(e, None))?;
            self.stream.write_all(data).map_err(|e| map_io(e, None))
        }
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.stream.set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
        while self.frame_left == 0 {
            let mut header = [0u8; 8];
            self.stream.read_exact(&mut header).map_err(|e| map_io(e, timeout))?;
            let len = u64::from_be_bytes(header);
            if len > MAX_FRAME {
                return Err(TransportError::Protocol(format!("absurd TCP frame length {len}")));
            }
            // Zero-length frames carry nothing and are skipped, as fastboot ignores empty packets.
            self.frame_left = len;
        }
        let n = (buf.len() as u64).min(self.frame_left) as usize;
        self.stream.read_exact(&mut buf[..n]).map_err(|e| map_io(e, timeout))?;
        self.frame_left -= n as u64;
        Ok(n)
    }

    fn describe(&self) -> String {
        self.peer.clone()
    }

    fn max_write_chunk(&self) -> usize {
        4 * 1024 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("127.0.0.1", 5554).unwrap(), ("127.0.0.1".into(), 5554));
        assert_eq!(parse_host_port("localhost:1234", 5554).unwrap(), ("localhost".into(), 1234));
        assert_eq!(parse_host_port("[::1]:99", 5554).unwrap(), ("::1".into(), 99));
        assert_eq!(parse_host_port("[::1]", 5554).unwrap(), ("::1".into(), 5554));
        assert!(parse_host_port("host:notaport", 5554).is_err());
        assert!(parse_host_port("", 5554).is_err());
    }

    #[test]
    fn handshake_and_framing_exact_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dev = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 4 + 8 + 14];
            s.read_exact(&mut got[..4]).unwrap();
            assert_eq!(&got[..4], b"FB01");
            s.write_all(b"FB01").unwrap();
            s.read_exact(&mut got[4..]).unwrap();
            assert_eq!(&got[4..12], &[0, 0, 0, 0, 0, 0, 0, 14]);
            assert_eq!(&got[12..], b"getvar:product");
            s.write_all(&[0, 0, 0, 0, 0, 0, 0, 12]).unwrap();
            s.write_all(b"OKAYlavender").unwrap();
        });
        let mut t = TcpTransport::connect("127.0.0.1", port, Duration::from_secs(2)).unwrap();
        t.write(b"getvar:product").unwrap();
        let mut buf = [0u8; 256];
        let n = t.read(&mut buf, Some(Duration::from_secs(2))).unwrap();
        assert_eq!(&buf[..n], b"OKAYlavender");
        dev.join().unwrap();
    }

    #[test]
    fn bad_handshake_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dev = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut hello = [0u8; 4];
            s.read_exact(&mut hello).unwrap();
            s.write_all(b"HTTP").unwrap();
        });
        let err = TcpTransport::connect("127.0.0.1", port, Duration::from_secs(2)).err().unwrap();
        assert!(err.to_string().contains("handshake"), "{err}");
        dev.join().unwrap();
    }

    #[test]
    fn refused_connection_says_what_to_check() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = TcpTransport::connect("127.0.0.1", port, Duration::from_secs(2)).err().unwrap();
        assert!(err.to_string().contains("nothing is listening"), "{err}");
    }
}
