//! AOSP fastboot UDP protocol v1, host side, plus the packet format the simulator's device side
//! (`sim::udp`) shares.
//!
//! Every datagram starts with a 4-byte header `[id u8][flags u8][seq u16 BE]`. The host sends
//! exactly one packet at a time and the device answers each with exactly one packet carrying the
//! same sequence number; the host retransmits after a silence of 500 ms. A session starts with a
//! Query (the device tells the sequence number it expects next) and an Init (both sides give
//! their protocol version and largest packet; the smaller packet size wins). Fastboot traffic is
//! then wrapped in Fastboot packets: to write, the host sends data and the device acknowledges
//! with an empty packet; to read, the host sends an empty packet and the device answers with
//! data (or with nothing, when it has nothing yet). A fastboot packet larger than a datagram is
//! sent as several, all but the last flagged as continued; each piece is its own exchange.
//!
//! [`UdpTransport`] maps this onto the packet-oriented [`Transport`]: one `write` is one fastboot
//! packet (possibly several datagrams), one `read` returns one fastboot packet the device sent
//! (polling until it has one).

use super::{Transport, TransportError};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// The port fastboot devices listen on (AOSP `udp:HOST[:PORT]` default).
pub const DEFAULT_PORT: u16 = 5554;
pub const HEADER_LEN: usize = 4;
/// Every device must handle packets of this size; Query and Init never exceed it.
pub const MIN_PACKET_SIZE: usize = 512;
/// The largest packet mi-flash offers, as AOSP's host does.
pub const HOST_MAX_PACKET_SIZE: u16 = 8192;
pub const PROTOCOL_VERSION: u16 = 1;
pub const FLAG_CONTINUATION: u8 = 0x01;

/// Packet kinds (the header's first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketId {
    Error = 0x00,
    Query = 0x01,
    Init = 0x02,
    Fastboot = 0x03,
}

impl PacketId {
    pub fn from_byte(b: u8) -> Option<PacketId> {
        Some(match b {
            0x00 => PacketId::Error,
            0x01 => PacketId::Query,
            0x02 => PacketId::Init,
            0x03 => PacketId::Fastboot,
            _ => return None,
        })
    }
}

/// The 4-byte header of every datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: PacketId,
    pub continuation: bool,
    pub seq: u16,
}

impl Header {
    pub fn new(id: PacketId, seq: u16) -> Header {
        Header { id, continuation: false, seq }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [hi, lo] = self.seq.to_be_bytes();
        [self.id as u8, if self.continuation { FLAG_CONTINUATION } else { 0 }, hi, lo]
    }

    /// Splits a datagram into header and data. `None` for one too short to hold a header or
    /// with an unknown id (both are ignored by either side, as stray traffic).
    pub fn parse(datagram: &[u8]) -> Option<(Header, &[u8])> {
        if datagram.len() < HEADER_LEN {
            return None;
        }
        let id = PacketId::from_byte(datagram[0])?;
        let header = Header {
            id,
            continuation: datagram[1] & FLAG_CONTINUATION != 0,
            seq: u16::from_be_bytes([datagram[2], datagram[3]]),
        };
        Some((header, &datagram[HEADER_LEN..]))
    }
}

/// A whole datagram: header then data.
pub fn packet(header: Header, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER_LEN + data.len());
    p.extend_from_slice(&header.encode());
    p.extend_from_slice(data);
    p
}

/// The 4 data bytes of an Init packet: version, then largest packet size, both big-endian.
pub fn init_data(version: u16, max_packet: u16) -> [u8; 4] {
    let [v0, v1] = version.to_be_bytes();
    let [m0, m1] = max_packet.to_be_bytes();
    [v0, v1, m0, m1]
}

/// Retransmission settings. The defaults are AOSP's: 500 ms per attempt, 4 attempts for the
/// first Query (fail fast when nothing is there), 120 attempts (one minute) afterwards.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    pub response_timeout: Duration,
    pub connect_attempts: u32,
    pub attempts: u32,
    /// The largest packet to offer in Init (the device may choose smaller).
    pub max_packet: u16,
}

impl Default for UdpOptions {
    fn default() -> UdpOptions {
        UdpOptions {
            response_timeout: Duration::from_millis(500),
            connect_attempts: 4,
            attempts: 60 * 1000 / 500,
            max_packet: HOST_MAX_PACKET_SIZE,
        }
    }
}

/// Host side of a fastboot UDP session.
pub struct UdpTransport {
    socket: UdpSocket,
    name: String,
    options: UdpOptions,
    seq: u16,
    /// Data bytes per datagram (negotiated packet size minus the header).
    max_data: usize,
    /// Whole fastboot packets received from the device and not yet read.
    received: VecDeque<Vec<u8>>,
    /// The packet `read` is returning piece by piece, and how far it got.
    current: Vec<u8>,
    pos: usize,
    rx_buf: Vec<u8>,
}

/// What one request/response exchange brought back.
struct Reply {
    header: Header,
    data: Vec<u8>,
}

fn nothing_answers(name: &str) -> TransportError {
    TransportError::Protocol(format!(
        "nothing answers fastboot on {name} (is the phone or board in network fastboot mode, e.g. U-Boot's `fastboot udp`, or is `mi-flash simulate --listen {name}` running?)"
    ))
}

impl UdpTransport {
    /// Connects to a device at `host:port`: Query, then Init. Fails after
    /// `options.connect_attempts` unanswered queries.
    pub fn connect(host: &str, port: u16, options: UdpOptions) -> Result<UdpTransport, TransportError> {
        let name = if host.contains(':') { format!("udp:[{host}]:{port}") } else { format!("udp:{host}:{port}") };
        let addr: SocketAddr = (host, port)
            .to_socket_addrs()
            .map_err(|e| TransportError::Protocol(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| TransportError::Protocol(format!("{host} has no address")))?;
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        // A connected socket only hears from the device, and learns of an ICMP "port
        // unreachable" (nothing listening) as a refused receive.
        socket.connect(addr)?;
        let max_packet = options.max_packet.max(MIN_PACKET_SIZE as u16);
        let mut t = UdpTransport {
            socket,
            name,
            options,
            seq: 0,
            max_data: MIN_PACKET_SIZE - HEADER_LEN,
            received: VecDeque::new(),
            current: Vec::new(),
            pos: 0,
            rx_buf: vec![0u8; MIN_PACKET_SIZE],
        };
        t.handshake(max_packet)?;
        Ok(t)
    }

    fn handshake(&mut self, max_packet: u16) -> Result<(), TransportError> {
        let attempts = self.options.connect_attempts.max(1);
        let reply = self.exchange(PacketId::Query, &[], false, attempts).map_err(|e| match e {
            TransportError::Timeout(_) => nothing_answers(&self.name),
            other => other,
        })?;
        if reply.data.len() < 2 {
            return Err(TransportError::Protocol(format!(
                "{}: the device's answer to the UDP query is too short ({} bytes)",
                self.name,
                reply.data.len()
            )));
        }
        self.seq = u16::from_be_bytes([reply.data[0], reply.data[1]]);
        let reply = self.exchange(PacketId::Init, &init_data(PROTOCOL_VERSION, max_packet), false, self.options.attempts)?;
        if reply.data.len() < 4 {
            return Err(TransportError::Protocol(format!(
                "{}: the device's answer to the UDP init is too short ({} bytes)",
                self.name,
                reply.data.len()
            )));
        }
        let version = u16::from_be_bytes([reply.data[0], reply.data[1]]);
        let device_max = u16::from_be_bytes([reply.data[2], reply.data[3]]);
        if version < PROTOCOL_VERSION {
            return Err(TransportError::Protocol(format!("{}: the device reports UDP protocol version {version}", self.name)));
        }
        if (device_max as usize) < MIN_PACKET_SIZE {
            return Err(TransportError::Protocol(format!(
                "{}: the device reports a largest UDP packet of {device_max} bytes, below the protocol's minimum of {MIN_PACKET_SIZE}",
                self.name
            )));
        }
        let size = device_max.min(max_packet) as usize;
        self.max_data = size - HEADER_LEN;
        // Room for a datagram larger than agreed, so an oversized one is seen whole and refused
        // rather than silently cut.
        self.rx_buf = vec![0u8; size.max(HOST_MAX_PACKET_SIZE as usize) + HEADER_LEN];
        log::debug!("{}: UDP session open, packets of {size} bytes, next sequence {}", self.name, self.seq);
        Ok(())
    }

    /// The negotiated largest datagram, header included.
    pub fn max_packet_size(&self) -> usize {
        self.max_data + HEADER_LEN
    }

    /// Name the link by the address the user gave.
    pub fn with_name(mut self, name: String) -> UdpTransport {
        self.name = name;
        self
    }

    /// Sends one datagram and waits for the matching answer, retransmitting after each silent
    /// `response_timeout`, `attempts` times in all. Answers with another sequence number are
    /// stale duplicates and are skipped.
    fn exchange_once(&mut self, header: Header, data: &[u8], attempts: u32) -> Result<Reply, TransportError> {
        let datagram = packet(header, data);
        let per_try = self.options.response_timeout.max(Duration::from_millis(1));
        let mut refused = false;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                log::trace!("{}: retransmitting seq {} (attempt {})", self.name, header.seq, attempt + 1);
            }
            match self.socket.send(&datagram) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    refused = true;
                    std::thread::sleep(per_try);
                    continue;
                }
                Err(e) => return Err(TransportError::Io(e)),
            }
            let deadline = Instant::now() + per_try;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                let n = match self.socket.recv(&mut self.rx_buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        // Nothing listens (yet): wait out this attempt, then try again.
                        refused = true;
                        std::thread::sleep(left);
                        break;
                    }
                    Err(e) => return Err(TransportError::Io(e)),
                };
                let Some((rh, rdata)) = Header::parse(&self.rx_buf[..n]) else {
                    log::debug!("{}: ignoring a malformed datagram of {n} bytes", self.name);
                    continue;
                };
                if rh.seq != header.seq || (rh.id != header.id && rh.id != PacketId::Error) {
                    log::trace!("{}: ignoring a stale answer (seq {}, waiting for {})", self.name, rh.seq, header.seq);
                    continue;
                }
                if rdata.len() > self.max_data && rh.id == PacketId::Fastboot {
                    return Err(TransportError::Protocol(format!(
                        "{}: the device sent a {n}-byte datagram, larger than the agreed {} bytes",
                        self.name,
                        self.max_packet_size()
                    )));
                }
                return Ok(Reply { header: rh, data: rdata.to_vec() });
            }
        }
        if refused {
            return Err(nothing_answers(&self.name));
        }
        Err(TransportError::Timeout(per_try * attempts.max(1)))
    }

    /// One request and its whole answer: when the device flags its answer as continued, it is
    /// prompted with empty packets for the rest. Returns the answer's data, joined.
    fn exchange(&mut self, id: PacketId, data: &[u8], continuation: bool, attempts: u32) -> Result<Reply, TransportError> {
        let mut header = Header { id, continuation, seq: self.seq };
        let mut reply = self.exchange_once(header, data, attempts)?;
        self.seq = self.seq.wrapping_add(1);
        let mut joined = std::mem::take(&mut reply.data);
        while reply.header.continuation {
            header = Header { id: reply.header.id, continuation: false, seq: self.seq };
            reply = self.exchange_once(header, &[], attempts)?;
            self.seq = self.seq.wrapping_add(1);
            joined.extend_from_slice(&reply.data);
        }
        if reply.header.id == PacketId::Error && id != PacketId::Error {
            return Err(TransportError::Protocol(format!(
                "{}: the device reported an error: {}",
                self.name,
                String::from_utf8_lossy(&joined).trim()
            )));
        }
        Ok(Reply { header: reply.header, data: joined })
    }

    /// Asks the device for data with empty packets until it has some, or `timeout` passes.
    /// The pause between empty answers grows to 20 ms: a device with nothing to say yet is
    /// busy (writing a partition), and a fast poll would only cost it time.
    fn poll(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut pause = Duration::ZERO;
        loop {
            let reply = self.exchange(PacketId::Fastboot, &[], false, self.options.attempts)?;
            if !reply.data.is_empty() {
                self.received.push_back(reply.data);
                return Ok(());
            }
            if let (Some(d), Some(t)) = (deadline, timeout) {
                if Instant::now() >= d {
                    return Err(TransportError::Timeout(t));
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).clamp(Duration::from_millis(1), Duration::from_millis(20));
        }
    }
}

impl Transport for UdpTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let mut rest = data;
        loop {
            let n = rest.len().min(self.max_data);
            let (piece, after) = rest.split_at(n);
            let reply = self.exchange(PacketId::Fastboot, piece, !after.is_empty(), self.options.attempts)?;
            // A device may put data into an acknowledgement; it is the next thing to read.
            if !reply.data.is_empty() {
                self.received.push_back(reply.data);
            }
            rest = after;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.current.len() {
            if self.received.is_empty() {
                self.poll(timeout)?;
            }
            self.current = self.received.pop_front().unwrap_or_default();
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn max_write_chunk(&self) -> usize {
        // Each datagram is a round trip anyway; bigger writes only hold more memory.
        64 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        assert_eq!(Header::new(PacketId::Query, 0).encode(), [0x01, 0x00, 0x00, 0x00]);
        let h = Header { id: PacketId::Fastboot, continuation: true, seq: 0x1234 };
        assert_eq!(h.encode(), [0x03, 0x01, 0x12, 0x34]);
        assert_eq!(Header::parse(&[0x03, 0x01, 0x12, 0x34, b'x']), Some((h, &b"x"[..])));
        assert_eq!(Header::parse(&[0x00, 0x00, 0xff, 0xff]).map(|(h, d)| (h.id, h.seq, d.len())), Some((PacketId::Error, 0xffff, 0)));
        assert_eq!(Header::parse(&[0x03, 0x00, 0x00]), None, "too short for a header");
        assert_eq!(Header::parse(&[0x09, 0x00, 0x00, 0x00]), None, "unknown id");
        // Only bit 0 of the flags means anything.
        assert!(!Header::parse(&[0x03, 0x02, 0, 0]).map(|(h, _)| h.continuation).unwrap_or(true));
    }

    #[test]
    fn init_bytes() {
        assert_eq!(init_data(1, 8192), [0x00, 0x01, 0x20, 0x00]);
        assert_eq!(
            packet(Header::new(PacketId::Init, 7), &init_data(PROTOCOL_VERSION, HOST_MAX_PACKET_SIZE)),
            vec![0x02, 0x00, 0x00, 0x07, 0x00, 0x01, 0x20, 0x00]
        );
    }

    /// A scripted device on a loopback socket: for each expected datagram, the answers to send.
    fn scripted_device(script: Vec<(Vec<u8>, Vec<Vec<u8>>)>) -> (u16, std::thread::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 9000];
            for (expect, answers) in script {
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let (n, from) = sock.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &expect[..], "datagram from the host");
                for a in answers {
                    sock.send_to(&a, from).unwrap();
                }
            }
        });
        (port, h)
    }

    fn fast() -> UdpOptions {
        UdpOptions { response_timeout: Duration::from_millis(100), connect_attempts: 2, attempts: 5, ..Default::default() }
    }

    #[test]
    fn handshake_and_getvar_exact_bytes() {
        let (port, dev) = scripted_device(vec![
            // Query with seq 0; the device expects 0x0005 next.
            (vec![1, 0, 0, 0], vec![vec![1, 0, 0, 0, 0x00, 0x05]]),
            // Init at that sequence: version 1, 8192; the device wants 1024.
            (vec![2, 0, 0, 5, 0, 1, 0x20, 0], vec![vec![2, 0, 0, 5, 0, 1, 0x04, 0x00]]),
            (packet(Header::new(PacketId::Fastboot, 6), b"getvar:product"), vec![vec![3, 0, 0, 6]]),
            // Nothing yet, then a stale duplicate and the answer.
            (vec![3, 0, 0, 7], vec![vec![3, 0, 0, 7]]),
            (vec![3, 0, 0, 8], vec![vec![3, 0, 0, 7], packet(Header::new(PacketId::Fastboot, 8), b"OKAYmarble")]),
        ]);
        let mut t = UdpTransport::connect("127.0.0.1", port, fast()).unwrap();
        assert_eq!(t.max_packet_size(), 1024);
        assert_eq!(t.describe(), format!("udp:127.0.0.1:{port}"));
        t.write(b"getvar:product").unwrap();
        let mut buf = [0u8; 256];
        let n = t.read(&mut buf, Some(Duration::from_secs(2))).unwrap();
        assert_eq!(&buf[..n], b"OKAYmarble");
        dev.join().unwrap();
    }

    #[test]
    fn large_packets_use_continuation_both_ways() {
        let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let md = 512 - HEADER_LEN;
        let frag = |seq: u16, cont: bool, d: &[u8]| packet(Header { id: PacketId::Fastboot, continuation: cont, seq }, d);
        let (port, dev) = scripted_device(vec![
            (vec![1, 0, 0, 0], vec![vec![1, 0, 0, 0, 0, 0]]),
            (vec![2, 0, 0, 0, 0, 1, 0x20, 0], vec![vec![2, 0, 0, 0, 0, 1, 0x02, 0x00]]),
            (frag(1, true, &data[..md]), vec![vec![3, 0, 0, 1]]),
            (frag(2, true, &data[md..2 * md]), vec![vec![3, 0, 0, 2]]),
            (frag(3, false, &data[2 * md..]), vec![vec![3, 0, 0, 3]]),
            // A read answered in two pieces: the host prompts for the second.
            (vec![3, 0, 0, 4], vec![frag(4, true, b"DATA0000")]),
            (vec![3, 0, 0, 5], vec![frag(5, false, b"05dc")]),
        ]);
        let mut t = UdpTransport::connect("127.0.0.1", port, fast()).unwrap();
        assert_eq!(t.max_packet_size(), 512);
        t.write(&data).unwrap();
        let mut buf = [0u8; 256];
        let n = t.read(&mut buf, Some(Duration::from_secs(2))).unwrap();
        assert_eq!(&buf[..n], b"DATA000005dc");
        dev.join().unwrap();
    }

    #[test]
    fn lost_answers_are_retransmitted_and_errors_reported() {
        let (port, dev) = scripted_device(vec![
            (vec![1, 0, 0, 0], vec![]),
            (vec![1, 0, 0, 0], vec![vec![1, 0, 0, 0, 0, 9]]),
            (vec![2, 0, 0, 9, 0, 1, 0x20, 0], vec![vec![2, 0, 0, 9, 0, 1, 0x20, 0]]),
            (packet(Header::new(PacketId::Fastboot, 10), b"reboot"), vec![packet(Header::new(PacketId::Error, 10), b"session lost")]),
        ]);
        let mut t = UdpTransport::connect("127.0.0.1", port, fast()).unwrap();
        assert_eq!(t.max_packet_size(), 8192);
        let err = t.write(b"reboot").unwrap_err();
        assert!(err.to_string().contains("reported an error: session lost"), "{err}");
        dev.join().unwrap();
    }

    #[test]
    fn small_device_packet_size_is_refused() {
        let (port, dev) = scripted_device(vec![
            (vec![1, 0, 0, 0], vec![vec![1, 0, 0, 0, 0, 0]]),
            (vec![2, 0, 0, 0, 0, 1, 0x20, 0], vec![vec![2, 0, 0, 0, 0, 1, 0x01, 0x00]]),
        ]);
        let err = UdpTransport::connect("127.0.0.1", port, fast()).err().unwrap();
        assert!(err.to_string().contains("below the protocol's minimum"), "{err}");
        dev.join().unwrap();
    }

    #[test]
    fn silence_means_nothing_answers() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = quiet.local_addr().unwrap().port();
        let started = Instant::now();
        let err = UdpTransport::connect("127.0.0.1", port, fast()).err().unwrap();
        assert!(err.to_string().contains("nothing answers fastboot on udp:127.0.0.1"), "{err}");
        // Two attempts of 100 ms, with room for a busy machine.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        drop(quiet);
        // A closed port (ICMP port unreachable) gives the same sentence.
        let err = UdpTransport::connect("127.0.0.1", port, fast()).err().unwrap();
        assert!(err.to_string().contains("nothing answers"), "{err}");
    }
}
