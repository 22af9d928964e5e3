//! The simulated phone over fastboot UDP (`mi-flash simulate --listen udp:HOST:PORT`).
//!
//! The datagram protocol (`transport::udp`) is turned back into a packet link so that
//! [`SimDevice::serve`] runs unchanged: this side keeps the UDP session (sequence numbers,
//! continuation, replaying the last answer when the host retransmits) and passes whole fastboot
//! packets through an in-process channel pair to the device, which runs on its own thread.
//! Each Init starts a new connection, as a TCP accept would; the phone's state carries over.

use super::SimDevice;
use crate::transport::inproc::{self, InProcTransport};
use crate::transport::udp::{self, Header, PacketId, HEADER_LEN, MIN_PACKET_SIZE, PROTOCOL_VERSION};
use crate::transport::{Transport, TransportError};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Device-side settings.
#[derive(Debug, Clone)]
pub struct UdpServeOptions {
    /// The largest datagram the simulated phone accepts (the host may choose smaller).
    pub max_packet: u16,
    /// While the phone works on an answer, how often the socket is checked for a new host.
    pub answer_wait: Duration,
}

impl Default for UdpServeOptions {
    fn default() -> UdpServeOptions {
        UdpServeOptions { max_packet: udp::HOST_MAX_PACKET_SIZE, answer_wait: Duration::from_millis(20) }
    }
}

/// Serves the phone on `host:port` until the process is killed. Prints
/// `listening on udp:HOST:PORT` as the first line on stdout once the socket is bound.
pub fn serve_udp(host: &str, port: u16, device: &mut SimDevice) -> std::io::Result<()> {
    let socket = UdpSocket::bind((host, port))?;
    super::announce("udp", socket.local_addr()?)?;
    serve_udp_socket(socket, device, &UdpServeOptions::default())
}

/// Serves the phone on an already bound socket (tests bind port 0 themselves).
pub fn serve_udp_socket(socket: UdpSocket, device: &mut SimDevice, options: &UdpServeOptions) -> std::io::Result<()> {
    let name = match socket.local_addr() {
        Ok(a) => format!("udp:{a}"),
        Err(_) => "udp".into(),
    };
    let mut session = Session::new(socket, options.clone());
    loop {
        let (host_end, mut dev_end) = inproc::pair(&name);
        let phone = &mut *device;
        let result = std::thread::scope(|s| {
            // The phone's end moves into its thread, so a hang-up closes the channel at once.
            let served = s.spawn(move || phone.serve(&mut dev_end));
            // Returns when a host starts a new session or the phone hangs up; dropping
            // `host_end` ends a connection the phone is still serving.
            let r = session.run(host_end);
            match served.join() {
                Ok(Ok(h)) => log::info!("udp connection ended ({h:?})"),
                Ok(Err(e)) => log::warn!("udp connection ended: {e}"),
                Err(_) => log::error!("the simulated phone's thread panicked"),
            }
            r
        });
        result?;
    }
}

/// The UDP side of one simulated phone.
struct Session {
    socket: UdpSocket,
    options: UdpServeOptions,
    /// The sequence number the phone expects next (told to the host by Query).
    expected: u16,
    /// The host of the current session, once it sent Init.
    peer: Option<SocketAddr>,
    /// Data bytes per datagram agreed with `peer`.
    max_data: usize,
    /// The last answer, for a retransmitted request: (host, sequence, datagram).
    last: Option<(SocketAddr, u16, Vec<u8>)>,
    /// A fastboot packet from the host still arriving in continued pieces.
    incoming: Vec<u8>,
    /// The rest of a packet from the phone that did not fit one datagram.
    outgoing: Vec<u8>,
    /// Reads from the phone's side of the channel.
    read_buf: Vec<u8>,
}

enum RunEnd {
    NewSession,
    PhoneHungUp,
}

impl Session {
    fn new(socket: UdpSocket, options: UdpServeOptions) -> Session {
        Session {
            socket,
            options,
            expected: 0,
            peer: None,
            max_data: MIN_PACKET_SIZE - HEADER_LEN,
            last: None,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            read_buf: vec![0u8; 1 << 20],
        }
    }

    fn run(&mut self, mut link: InProcTransport) -> std::io::Result<()> {
        let mut datagram = vec![0u8; 65536];
        self.socket.set_read_timeout(None)?;
        loop {
            let (n, from) = match self.socket.recv_from(&mut datagram) {
                Ok(r) => r,
                // An ICMP error from an earlier answer to a host that went away.
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset) => continue,
                Err(e) => return Err(e),
            };
            match self.handle(&datagram[..n], from, &mut link)? {
                None => {}
                Some(RunEnd::NewSession) => return Ok(()),
                Some(RunEnd::PhoneHungUp) => {
                    // A rebooting phone forgets the session; the host must connect again.
                    self.peer = None;
                    return Ok(());
                }
            }
        }
    }

    fn send(&mut self, to: SocketAddr, header: Header, data: &[u8]) -> std::io::Result<()> {
        let datagram = udp::packet(header, data);
        self.socket.send_to(&datagram, to)?;
        if header.id != PacketId::Query {
            self.last = Some((to, header.seq, datagram));
        }
        Ok(())
    }

    fn handle(&mut self, datagram: &[u8], from: SocketAddr, link: &mut InProcTransport) -> std::io::Result<Option<RunEnd>> {
        let Some((header, data)) = Header::parse(datagram) else {
            log::debug!("ignoring a malformed datagram of {} bytes from {from}", datagram.len());
            return Ok(None);
        };
        // The host must always learn where the sequence stands, whatever it sent before.
        if header.id == PacketId::Query {
            self.socket.send_to(&udp::packet(Header::new(PacketId::Query, header.seq), &self.expected.to_be_bytes()), from)?;
            return Ok(None);
        }
        if let Some((to, seq, answer)) = &self.last {
            if *to == from && *seq == header.seq {
                log::trace!("replaying the answer to seq {seq} for {from}");
                self.socket.send_to(answer, from)?;
                return Ok(None);
            }
        }
        if header.seq != self.expected {
            log::debug!("ignoring seq {} from {from} (expecting {})", header.seq, self.expected);
            return Ok(None);
        }
        match header.id {
            PacketId::Query => Ok(None),
            PacketId::Error => Ok(None),
            PacketId::Init => self.start_session(header, data, from),
            PacketId::Fastboot => {
                if self.peer != Some(from) {
                    self.send(
                        from,
                        Header::new(PacketId::Error, header.seq),
                        b"no fastboot session: send query and init first",
                    )?;
                    self.expected = self.expected.wrapping_add(1);
                    return Ok(None);
                }
                let end = self.fastboot(header, data, from, link)?;
                // An abandoned request's sequence number was already given to the new session.
                if !matches!(end, Some(RunEnd::NewSession)) {
                    self.expected = self.expected.wrapping_add(1);
                }
                Ok(end)
            }
        }
    }

    /// Init: agree on the packet size and start a new connection to the phone.
    fn start_session(&mut self, header: Header, data: &[u8], from: SocketAddr) -> std::io::Result<Option<RunEnd>> {
        if data.len() < 4 {
            self.send(from, Header::new(PacketId::Error, header.seq), b"init needs a version and a packet size")?;
            self.expected = self.expected.wrapping_add(1);
            return Ok(None);
        }
        let host_max = u16::from_be_bytes([data[2], data[3]]);
        let size = host_max.min(self.options.max_packet).max(MIN_PACKET_SIZE as u16);
        self.max_data = size as usize - HEADER_LEN;
        self.peer = Some(from);
        self.incoming.clear();
        self.outgoing.clear();
        let answer = udp::init_data(PROTOCOL_VERSION, self.options.max_packet.max(MIN_PACKET_SIZE as u16));
        self.send(from, Header::new(PacketId::Init, header.seq), &answer)?;
        self.expected = self.expected.wrapping_add(1);
        log::info!("udp session from {from}, packets of {size} bytes");
        Ok(Some(RunEnd::NewSession))
    }

    /// Looks at what arrived while the phone works on request `busy_seq`: retransmissions of
    /// it are dropped, queries are answered, and an Init from a host that queried meanwhile
    /// abandons the request and starts that host's session (true).
    fn while_busy(&mut self, busy_seq: u16) -> std::io::Result<bool> {
        let mut datagram = [0u8; 2048];
        self.socket.set_nonblocking(true)?;
        let result = loop {
            let (n, from) = match self.socket.recv_from(&mut datagram) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(false),
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset) => continue,
                Err(e) => break Err(e),
            };
            let Some((header, data)) = Header::parse(&datagram[..n]) else { continue };
            let next = busy_seq.wrapping_add(1);
            match header.id {
                PacketId::Query => {
                    let answer = udp::packet(Header::new(PacketId::Query, header.seq), &next.to_be_bytes());
                    if let Err(e) = self.socket.send_to(&answer, from) {
                        break Err(e);
                    }
                }
                PacketId::Init if header.seq == next && data.len() >= 4 => {
                    log::info!("a new session from {from} abandons the request in progress");
                    self.expected = next;
                    let data = data.to_vec();
                    break self.start_session(header, &data, from).map(|_| true);
                }
                _ => log::trace!("busy: dropping seq {} from {from}", header.seq),
            }
        };
        self.socket.set_nonblocking(false)?;
        result
    }

    fn fastboot(
        &mut self,
        header: Header,
        data: &[u8],
        from: SocketAddr,
        link: &mut InProcTransport,
    ) -> std::io::Result<Option<RunEnd>> {
        let ack = Header::new(PacketId::Fastboot, header.seq);
        if !data.is_empty() {
            self.incoming.extend_from_slice(data);
            if !header.continuation {
                let whole = std::mem::take(&mut self.incoming);
                if link.write(&whole).is_err() {
                    // The phone hung up (a reboot) before this arrived.
                    self.send(from, Header::new(PacketId::Error, header.seq), b"the device restarted: connect again")?;
                    return Ok(Some(RunEnd::PhoneHungUp));
                }
            }
            self.send(from, ack, &[])?;
            return Ok(None);
        }
        // An empty packet asks for data: the rest of a long answer, or the phone's next one.
        // The answer waits until the phone has one: AOSP fastboot before 30 takes an empty
        // answer to a read for an empty (invalid) response, so a busy phone must stay silent
        // (the host retransmits, and the retransmissions are dropped here) rather than answer
        // "nothing yet".
        let mut hung_up = false;
        while self.outgoing.is_empty() {
            match link.read(&mut self.read_buf, Some(self.options.answer_wait)) {
                Ok(0) => {}
                Ok(n) => self.outgoing = self.read_buf[..n].to_vec(),
                Err(TransportError::Timeout(_)) => {
                    if self.while_busy(header.seq)? {
                        return Ok(Some(RunEnd::NewSession));
                    }
                }
                Err(_) => {
                    hung_up = true;
                    break;
                }
            }
        }
        if hung_up {
            // Like a phone that rebooted: the host learns it at once instead of retrying.
            self.send(from, Header::new(PacketId::Error, header.seq), b"the device closed the connection")?;
            return Ok(Some(RunEnd::PhoneHungUp));
        }
        let n = self.outgoing.len().min(self.max_data);
        let rest = self.outgoing.split_off(n);
        let piece = std::mem::replace(&mut self.outgoing, rest);
        let header = Header { continuation: !self.outgoing.is_empty(), ..ack };
        self.send(from, header, &piece)?;
        Ok(None)
    }
}
