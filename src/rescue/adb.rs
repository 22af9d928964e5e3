//! The ADB message layer, as spoken by Mi Recovery in "Connect with MIAssistant" mode (and by
//! every adbd): 24-byte little-endian headers, the CNXN handshake, OPEN/OKAY/WRTE/CLSE streams.
//!
//! Boundaries: [`Message`] and [`Header`] are the pure codec (exact bytes, both checksum rules);
//! [`AdbLink`] runs them over any [`Transport`] — USB (header and payload as two bulk transfers),
//! a raw TCP byte stream, or the in-process channel to the simulated recovery. It knows nothing
//! of Xiaomi's services: that is `miassistant`. The simulated recovery uses the device side of
//! the same link, so there is one definition of the wire format.

use crate::transport::{printable, Transport, TransportError};
use std::time::{Duration, Instant};

/// Length of every message header.
pub const HEADER_LEN: usize = 24;
/// The original protocol: `data_check` is the byte sum of the payload.
pub const A_VERSION_MIN: u32 = 0x0100_0000;
/// Since December 2017 senders put 0 in `data_check` once both sides speak this version.
pub const A_VERSION_SKIP_CHECKSUM: u32 = 0x0100_0001;
/// Limit for payloads sent before the peer's maximum is known (CNXN, AUTH).
pub const MAX_PAYLOAD_V1: u32 = 4096;
/// The largest payload mi-flash offers to receive, as current adb does.
pub const MAX_PAYLOAD: u32 = 1024 * 1024;
/// What mi-flash says it is: a host, no serial, no features (advertising `delayed_ack` would
/// change OPEN/OKAY semantics).
pub const HOST_BANNER: &[u8] = b"host::\0";
/// Payloads received are refused above this size, whatever the peer announced: it bounds the
/// memory a broken or hostile device can make mi-flash allocate.
const RECEIVE_LIMIT: u32 = MAX_PAYLOAD;
/// Non-CNXN messages tolerated while waiting for the handshake answer (older tools skip 10).
const HANDSHAKE_SKIP: usize = 16;

/// The message kinds. `SYNC` is obsolete and never on the wire; `STLS` is only used by
/// wireless debugging; both are parsed so they can be named in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Cnxn,
    Auth,
    Open,
    Okay,
    Wrte,
    Clse,
    Stls,
    Sync,
}

impl Command {
    pub const ALL: [Command; 8] =
        [Command::Cnxn, Command::Auth, Command::Open, Command::Okay, Command::Wrte, Command::Clse, Command::Stls, Command::Sync];

    /// The four ASCII letters read as a little-endian `u32`.
    pub fn code(self) -> u32 {
        u32::from_le_bytes(*self.tag())
    }

    fn tag(self) -> &'static [u8; 4] {
        match self {
            Command::Cnxn => b"CNXN",
            Command::Auth => b"AUTH",
            Command::Open => b"OPEN",
            Command::Okay => b"OKAY",
            Command::Wrte => b"WRTE",
            Command::Clse => b"CLSE",
            Command::Stls => b"STLS",
            Command::Sync => b"SYNC",
        }
    }

    pub fn name(self) -> &'static str {
        std::str::from_utf8(self.tag()).unwrap_or("????")
    }

    pub fn from_code(code: u32) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// `AUTH` arg0 values.
pub const AUTH_TOKEN: u32 = 1;

/// One ADB message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub command: Command,
    pub arg0: u32,
    pub arg1: u32,
    pub payload: Vec<u8>,
}

/// The 32-bit byte sum the original protocol puts in `data_check` (it was called a CRC, but
/// never was one).
pub fn checksum(payload: &[u8]) -> u32 {
    payload.iter().fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

impl Message {
    pub fn new(command: Command, arg0: u32, arg1: u32, payload: impl Into<Vec<u8>>) -> Message {
        Message { command, arg0, arg1, payload: payload.into() }
    }

    pub fn connect(version: u32, max_payload: u32, banner: &[u8]) -> Message {
        Message::new(Command::Cnxn, version, max_payload, banner)
    }

    pub fn open(local_id: u32, service: &str) -> Message {
        Message::new(Command::Open, local_id, 0, service.as_bytes())
    }

    pub fn okay(own_id: u32, peer_id: u32) -> Message {
        Message::new(Command::Okay, own_id, peer_id, Vec::new())
    }

    pub fn write(own_id: u32, peer_id: u32, data: impl Into<Vec<u8>>) -> Message {
        Message::new(Command::Wrte, own_id, peer_id, data)
    }

    pub fn close(own_id: u32, peer_id: u32) -> Message {
        Message::new(Command::Clse, own_id, peer_id, Vec::new())
    }

    /// The header as sent by a side speaking `version`: below [`A_VERSION_SKIP_CHECKSUM`] the
    /// payload's byte sum goes into `data_check`, from it on 0.
    pub fn header(&self, version: u32) -> [u8; HEADER_LEN] {
        let code = self.command.code();
        let check = if version >= A_VERSION_SKIP_CHECKSUM { 0 } else { checksum(&self.payload) };
        let mut h = [0u8; HEADER_LEN];
        for (i, word) in [code, self.arg0, self.arg1, self.payload.len() as u32, check, code ^ 0xFFFF_FFFF]
            .into_iter()
            .enumerate()
        {
            h[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        h
    }

    /// Header and payload in one buffer (TCP sends them back to back).
    pub fn encode(&self, version: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.header(version));
        out.extend_from_slice(&self.payload);
        out
    }

    /// One line for logs and error messages: `OPEN(1, 0, "getdevice:")`.
    pub fn describe(&self) -> String {
        if self.payload.is_empty() {
            format!("{}({}, {})", self.command.name(), self.arg0, self.arg1)
        } else {
            format!("{}({}, {}, \"{}\")", self.command.name(), self.arg0, self.arg1, printable(&self.payload))
        }
    }
}

/// A parsed, checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command: Command,
    pub arg0: u32,
    pub arg1: u32,
    pub data_length: u32,
    pub data_check: u32,
}

impl Header {
    /// Checks what current adbd checks (`magic`, a known command, the length limit).
    pub fn parse(bytes: &[u8; HEADER_LEN], max_payload: u32) -> Result<Header, AdbError> {
        let word = |i: usize| u32::from_le_bytes([bytes[i * 4], bytes[i * 4 + 1], bytes[i * 4 + 2], bytes[i * 4 + 3]]);
        let code = word(0);
        if word(5) != code ^ 0xFFFF_FFFF {
            return Err(AdbError::Garbage(format!(
                "a message header with a wrong magic value ({})",
                printable(bytes)
            )));
        }
        let command = Command::from_code(code)
            .ok_or_else(|| AdbError::Garbage(format!("an unknown message kind {}", printable(&code.to_le_bytes()))))?;
        let data_length = word(3);
        if data_length > max_payload {
            return Err(AdbError::TooLong { command: command.name(), length: data_length, limit: max_payload });
        }
        Ok(Header { command, arg0: word(1), arg1: word(2), data_length, data_check: word(4) })
    }

    /// Old senders (version below [`A_VERSION_SKIP_CHECKSUM`]) put the byte sum here; newer
    /// ones put 0. A non-zero value that does not match means the bytes were damaged on the way.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), AdbError> {
        if self.data_check != 0 && self.data_check != checksum(payload) {
            return Err(AdbError::Checksum { command: self.command.name(), expected: self.data_check, actual: checksum(payload) });
        }
        Ok(())
    }
}

/// What can go wrong on an ADB link. Each message says what happened; `hint` the next step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdbError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the phone sent {0}, which is not ADB")]
    Garbage(String),
    #[error("the phone announced a {command} message of {length} bytes, more than the {limit} allowed")]
    TooLong { command: &'static str, length: u32, limit: u32 },
    #[error("the {command} message arrived damaged (checksum {actual:#x}, expected {expected:#x})")]
    Checksum { command: &'static str, expected: u32, actual: u32 },
    #[error("the phone asks for ADB authorisation (RSA key): it is running Android with USB debugging, not Mi Recovery")]
    AuthRequired,
    #[error("no ADB handshake from the phone: {0}")]
    Handshake(String),
    #[error("the phone refused the service `{0}`")]
    Refused(String),
    #[error("ADB protocol error: {0}")]
    Protocol(String),
}

impl AdbError {
    pub fn hint(&self) -> Option<String> {
        match self {
            AdbError::Transport(e) => e.hint(),
            AdbError::Garbage(_) | AdbError::Checksum { .. } | AdbError::TooLong { .. } => {
                Some("re-plug the phone (a USB 2.0 port helps) and run the command again".into())
            }
            AdbError::AuthRequired => Some(
                "to use Mi Recovery, switch the phone off, hold Volume Up + Power, choose \"Connect with MIAssistant\", then run the command again"
                    .into(),
            ),
            AdbError::Handshake(_) => Some(
                "check that the phone shows the MIAssistant connection screen, stop other adb tools (`adb kill-server`), and run the command again"
                    .into(),
            ),
            _ => None,
        }
    }

    pub fn is_disconnect(&self) -> bool {
        matches!(self, AdbError::Transport(e) if e.is_disconnect())
    }
}

/// The identity string a device sends in its CNXN: `<type>:<serial>:<props>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `sideload` (Mi Recovery / ADB sideload), `device` (Android), `recovery`, `rescue`, ...
    pub kind: String,
    pub serial: String,
    /// `key=value` pairs from the third field, in order.
    pub props: Vec<(String, String)>,
}

impl Banner {
    pub fn parse(payload: &[u8]) -> Banner {
        let text = String::from_utf8_lossy(payload);
        let text = text.trim_end_matches('\0');
        let mut parts = text.splitn(3, ':');
        let kind = parts.next().unwrap_or_default().to_string();
        let serial = parts.next().unwrap_or_default().to_string();
        let props = parts
            .next()
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Banner { kind, serial, props }
    }

    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// An ADB connection over a packet or byte [`Transport`].
pub struct AdbLink {
    link: Box<dyn Transport>,
    /// Bytes read but not yet used (a TCP read may return more than one message).
    rx: Vec<u8>,
    /// The version used for sending: [`A_VERSION_MIN`] until the handshake, so the first CNXN
    /// carries a real checksum (as AOSP adb does), then the negotiated one.
    version: u32,
    /// The peer's receive limit, once known.
    peer_max: u32,
    next_local_id: u32,
}

impl AdbLink {
    pub fn new(link: Box<dyn Transport>) -> AdbLink {
        AdbLink { link, rx: Vec::new(), version: A_VERSION_MIN, peer_max: MAX_PAYLOAD_V1, next_local_id: 1 }
    }

    pub fn describe(&self) -> String {
        self.link.describe()
    }

    /// The negotiated version (valid after a handshake).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Sends one message: the header, then the payload as a second write (over USB they must
    /// be two bulk transfers).
    pub fn send(&mut self, m: &Message) -> Result<(), AdbError> {
        let limit = if m.command == Command::Cnxn || m.command == Command::Auth { MAX_PAYLOAD_V1 } else { self.peer_max };
        if m.payload.len() as u64 > u64::from(limit) {
            return Err(AdbError::Protocol(format!(
                "{} payload of {} bytes exceeds the peer's limit of {limit}",
                m.command.name(),
                m.payload.len()
            )));
        }
        log::trace!("adb > {}", m.describe());
        self.link.write(&m.header(self.version))?;
        if !m.payload.is_empty() {
            self.link.write(&m.payload)?;
        }
        Ok(())
    }

    /// Writes bytes that are not a message (the simulator's `garbage-on` fault).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), AdbError> {
        Ok(self.link.write(bytes)?)
    }

    /// Receives one message, waiting at most `timeout` for all of it (`None`: forever).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Message, AdbError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let head = self.take(HEADER_LEN, deadline, timeout)?;
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(&head);
        let header = Header::parse(&bytes, RECEIVE_LIMIT)?;
        let payload = self.take(header.data_length as usize, deadline, timeout)?;
        header.check_payload(&payload)?;
        let m = Message { command: header.command, arg0: header.arg0, arg1: header.arg1, payload };
        log::trace!("adb < {}", m.describe());
        Ok(m)
    }

    fn take(&mut self, n: usize, deadline: Option<Instant>, timeout: Option<Duration>) -> Result<Vec<u8>, AdbError> {
        let mut chunk = vec![0u8; 64 * 1024];
        while self.rx.len() < n {
            let remaining = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(TransportError::Timeout(timeout.unwrap_or_default()).into());
                    }
                    Some(left)
                }
                None => None,
            };
            // Ask for exactly what is missing: over USB a read of a packet-aligned length ends
            // when that many bytes arrived (the device sends no zero-length packet after it).
            let want = (n - self.rx.len()).min(chunk.len());
            let got = match self.link.read(&mut chunk[..want], remaining) {
                Ok(got) => got,
                Err(TransportError::Timeout(_)) => return Err(TransportError::Timeout(timeout.unwrap_or_default()).into()),
                Err(e) => return Err(e.into()),
            };
            self.rx.extend_from_slice(&chunk[..got]);
        }
        let rest = self.rx.split_off(n);
        Ok(std::mem::replace(&mut self.rx, rest))
    }

    /// Host side of the handshake: send CNXN, wait for the device's CNXN, agree on the lower
    /// version and payload limit. Messages before the answer are ignored (as the protocol
    /// says); an AUTH means the phone is running Android and wants an RSA key.
    pub fn connect_host(&mut self, timeout: Duration) -> Result<Banner, AdbError> {
        self.send(&Message::connect(A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, HOST_BANNER))?;
        let deadline = Instant::now() + timeout;
        for _ in 0..HANDSHAKE_SKIP {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.recv(Some(left.max(Duration::from_millis(1)))) {
                Ok(m) => m,
                Err(AdbError::Transport(TransportError::Timeout(_))) => {
                    return Err(AdbError::Handshake(format!("no answer to CNXN within {timeout:?}")))
                }
                Err(e) => return Err(e),
            };
            match m.command {
                Command::Cnxn => {
                    if m.arg0 < A_VERSION_MIN || m.arg1 == 0 {
                        return Err(AdbError::Handshake(format!(
                            "unsupported version {:#x} / payload limit {}",
                            m.arg0, m.arg1
                        )));
                    }
                    self.version = m.arg0.min(A_VERSION_SKIP_CHECKSUM);
                    self.peer_max = m.arg1.min(MAX_PAYLOAD);
                    return Ok(Banner::parse(&m.payload));
                }
                Command::Auth => return Err(AdbError::AuthRequired),
                _ => log::debug!("ignoring {} before the handshake", m.describe()),
            }
        }
        Err(AdbError::Handshake(format!("{HANDSHAKE_SKIP} messages without a CNXN")))
    }

    /// Device side of the handshake: wait for the host's CNXN (ignoring anything else) and
    /// answer with `banner`. Returns the host's banner.
    pub fn accept_device(&mut self, banner: &[u8]) -> Result<Banner, AdbError> {
        loop {
            let m = self.recv(None)?;
            if m.command != Command::Cnxn {
                log::debug!("device: ignoring {} before the handshake", m.describe());
                continue;
            }
            let version = m.arg0.clamp(A_VERSION_MIN, A_VERSION_SKIP_CHECKSUM);
            // The answer is sent with the negotiated version: the host knows it from now on.
            self.version = version;
            self.peer_max = m.arg1.clamp(MAX_PAYLOAD_V1, MAX_PAYLOAD);
            self.send(&Message::connect(version, MAX_PAYLOAD, banner))?;
            return Ok(Banner::parse(&m.payload));
        }
    }

    /// Runs one service as the host: OPEN, collect every WRTE (acknowledging each with OKAY,
    /// as the protocol requires) until the device closes the stream. `timeout` bounds the
    /// whole exchange — Mi Recovery answers `format-data:` only once the format is finished.
    pub fn call(&mut self, service: &str, timeout: Duration) -> Result<Vec<u8>, AdbError> {
        let local = self.next_local_id;
        self.next_local_id = self.next_local_id.checked_add(1).filter(|&i| i != 0).unwrap_or(1);
        self.send(&Message::open(local, service))?;
        let deadline = Instant::now() + timeout;
        let mut remote = None;
        let mut reply = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(timeout).into());
            }
            let m = match self.recv(Some(left)) {
                Ok(m) => m,
                Err(AdbError::Transport(TransportError::Timeout(_))) => return Err(TransportError::Timeout(timeout).into()),
                // A phone that answered a whole line and then went away (reboot) has answered.
                Err(e) if e.is_disconnect() && reply.ends_with(b"\n") => return Ok(reply),
                Err(e) => return Err(e),
            };
            if m.arg1 != local {
                log::debug!("ignoring {} for another stream", m.describe());
                continue;
            }
            match (m.command, remote) {
                (Command::Okay, None) => remote = Some(m.arg0),
                (Command::Clse, None) => return Err(AdbError::Refused(service.to_string())),
                (Command::Wrte, _) => {
                    // Some devices write before their OKAY; the writer's id is in arg0 anyway.
                    let peer = *remote.get_or_insert(m.arg0);
                    reply.extend_from_slice(&m.payload);
                    // The phone may already be gone (reboot); what it wrote is still read.
                    match self.send(&Message::okay(local, peer)) {
                        Err(e) if !e.is_disconnect() => return Err(e),
                        _ => {}
                    }
                }
                (Command::Okay, Some(_)) => {}
                (Command::Clse, Some(_)) => return Ok(reply),
                (other, _) => {
                    return Err(AdbError::Protocol(format!("unexpected {} during `{service}`", other.name())))
                }
            }
        }
    }
}

impl std::fmt::Debug for AdbLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdbLink").field("link", &self.link.describe()).field("version", &self.version).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::mock::MockTransport;

    #[test]
    fn command_codes_and_magic_match_the_protocol() {
        let expected = [
            (Command::Cnxn, 0x4E58_4E43, 0xB1A7_B1BC),
            (Command::Auth, 0x4854_5541, 0xB7AB_AABE),
            (Command::Open, 0x4E45_504F, 0xB1BA_AFB0),
            (Command::Okay, 0x5941_4B4F, 0xA6BE_B4B0),
            (Command::Wrte, 0x4554_5257, 0xBAAB_ADA8),
            (Command::Clse, 0x4553_4C43, 0xBAAC_B3BC),
            (Command::Stls, 0x534C_5453, 0xACB3_ABAC),
            (Command::Sync, 0x434E_5953, 0xBCB1_A6AC),
        ];
        for (c, code, magic) in expected {
            assert_eq!(c.code(), code, "{}", c.name());
            assert_eq!(c.code() ^ 0xFFFF_FFFF, magic, "{}", c.name());
            assert_eq!(Command::from_code(code), Some(c));
        }
        assert_eq!(Command::from_code(0x1234_5678), None);
    }

    #[test]
    fn host_cnxn_exact_bytes_with_checksum_skipped() {
        let m = Message::connect(A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, HOST_BANNER);
        // The bytes MiAssistant tools send (reference: MAT miasst.c).
        let expected: [u8; 24] = [
            0x43, 0x4E, 0x58, 0x4E, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xBC, 0xB1, 0xA7, 0xB1,
        ];
        assert_eq!(m.header(A_VERSION_SKIP_CHECKSUM), expected);
        let mut all = expected.to_vec();
        all.extend_from_slice(b"host::\0");
        assert_eq!(m.encode(A_VERSION_SKIP_CHECKSUM), all);
    }

    #[test]
    fn version_1_puts_the_byte_sum_in_data_check() {
        let m = Message::connect(A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, HOST_BANNER);
        assert_eq!(checksum(HOST_BANNER), 0x232);
        let h = m.header(A_VERSION_MIN);
        assert_eq!(&h[16..20], &[0x32, 0x02, 0x00, 0x00]);
        // Everything else is the same as with the newer version.
        assert_eq!(&h[..16], &m.header(A_VERSION_SKIP_CHECKSUM)[..16]);
        assert_eq!(&h[20..], &m.header(A_VERSION_SKIP_CHECKSUM)[20..]);
        // The sum wraps instead of overflowing.
        assert_eq!(checksum(&vec![0xFF; 1 << 25]), 0xFFu32.wrapping_mul(1 << 25));
    }

    #[test]
    fn open_okay_wrte_clse_exact_bytes() {
        let open = Message::open(1, "getdevice:").encode(A_VERSION_SKIP_CHECKSUM);
        assert_eq!(
            open[..24],
            [
                0x4F, 0x50, 0x45, 0x4E, 1, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0xB0, 0xAF, 0xBA, 0xB1
            ]
        );
        assert_eq!(&open[24..], b"getdevice:");
        let okay = Message::okay(1, 0x2A).encode(A_VERSION_MIN);
        assert_eq!(okay, [0x4F, 0x4B, 0x41, 0x59, 1, 0, 0, 0, 0x2A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xB0, 0xB4, 0xBE, 0xA6]);
        let wrte = Message::write(0x2A, 1, b"lavender\n".to_vec()).encode(A_VERSION_MIN);
        assert_eq!(&wrte[..4], b"WRTE");
        assert_eq!(&wrte[12..16], &[9, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes([wrte[16], wrte[17], wrte[18], wrte[19]]), checksum(b"lavender\n"));
        assert_eq!(&wrte[20..24], &[0xA8, 0xAD, 0xAB, 0xBA]);
        let clse = Message::close(0x2A, 1).encode(A_VERSION_SKIP_CHECKSUM);
        assert_eq!(&clse[..12], &[0x43, 0x4C, 0x53, 0x45, 0x2A, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_named() {
        let m = Message::write(7, 9, b"abc".to_vec());
        for version in [A_VERSION_MIN, A_VERSION_SKIP_CHECKSUM] {
            let h = m.header(version);
            let parsed = Header::parse(&h, MAX_PAYLOAD).unwrap();
            assert_eq!((parsed.command, parsed.arg0, parsed.arg1, parsed.data_length), (Command::Wrte, 7, 9, 3));
            parsed.check_payload(b"abc").unwrap();
        }
        let mut bad = m.header(A_VERSION_MIN);
        bad[20] ^= 1;
        assert!(matches!(Header::parse(&bad, MAX_PAYLOAD), Err(AdbError::Garbage(_))));
        let mut unknown = [0u8; 24];
        unknown[..4].copy_from_slice(b"ABCD");
        let magic = u32::from_le_bytes(*b"ABCD") ^ 0xFFFF_FFFF;
        unknown[20..].copy_from_slice(&magic.to_le_bytes());
        let e = Header::parse(&unknown, MAX_PAYLOAD).unwrap_err();
        assert!(e.to_string().contains("unknown message kind ABCD"), "{e}");
        let long = Message::write(1, 2, vec![0; 10]).header(A_VERSION_MIN);
        assert!(matches!(Header::parse(&long, 9), Err(AdbError::TooLong { length: 10, limit: 9, .. })));
        // A damaged payload under the old protocol is caught; a zero check is never verified.
        let parsed = Header::parse(&m.header(A_VERSION_MIN), MAX_PAYLOAD).unwrap();
        assert!(matches!(parsed.check_payload(b"abd"), Err(AdbError::Checksum { .. })));
        let parsed = Header::parse(&m.header(A_VERSION_SKIP_CHECKSUM), MAX_PAYLOAD).unwrap();
        parsed.check_payload(b"abd").unwrap();
    }

    #[test]
    fn banners_parse() {
        let b = Banner::parse(b"sideload::ro.product.name=gale;ro.product.device=gale;features=cmd\0");
        assert_eq!(b.kind, "sideload");
        assert_eq!(b.serial, "");
        assert_eq!(b.prop("ro.product.device"), Some("gale"));
        assert_eq!(b.prop("features"), Some("cmd"));
        let b = Banner::parse(b"device");
        assert_eq!((b.kind.as_str(), b.props.len()), ("device", 0));
    }

    use crate::transport::mock::Exchange;

    fn dev(version: u32, m: &Message) -> Vec<Exchange> {
        let mut v = vec![Exchange::DeviceSends(m.header(version).to_vec())];
        if !m.payload.is_empty() {
            v.push(Exchange::DeviceSends(m.payload.clone()));
        }
        v
    }

    fn host(version: u32, m: &Message) -> Vec<Exchange> {
        let mut v = vec![Exchange::HostWrites(m.header(version).to_vec())];
        if !m.payload.is_empty() {
            v.push(Exchange::HostWrites(m.payload.clone()));
        }
        v
    }

    #[test]
    fn host_handshake_and_call_exact_conversation() {
        let v2 = A_VERSION_SKIP_CHECKSUM;
        let script: Vec<Exchange> = [
            // The first CNXN carries a real checksum: the device's version is not known yet.
            host(A_VERSION_MIN, &Message::connect(v2, MAX_PAYLOAD, HOST_BANNER)),
            dev(v2, &Message::connect(v2, 0x40000, b"sideload::ro.product.device=gale")),
            host(v2, &Message::open(1, "getdevice:")),
            dev(v2, &Message::okay(0x55, 1)),
            dev(v2, &Message::write(0x55, 1, b"gale_global\n".to_vec())),
            host(v2, &Message::okay(1, 0x55)),
            dev(v2, &Message::close(0x55, 1)),
            host(v2, &Message::open(2, "getversion:")),
        ]
        .concat();
        let mock = MockTransport::new(script);
        let mut adb = AdbLink::new(Box::new(mock.clone()));
        let banner = adb.connect_host(Duration::from_secs(1)).unwrap();
        assert_eq!(banner.kind, "sideload");
        assert_eq!(adb.version(), v2);
        assert_eq!(adb.call("getdevice:", Duration::from_secs(1)).unwrap(), b"gale_global\n");
        // Each stream gets a new local id.
        assert!(adb.call("getversion:", Duration::from_secs(1)).is_err());
        mock.assert_done();
    }

    #[test]
    fn old_device_keeps_checksums_and_refusal_is_reported() {
        let v1 = A_VERSION_MIN;
        let script: Vec<Exchange> = [
            host(v1, &Message::connect(A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, HOST_BANNER)),
            // Anything before the CNXN answer is ignored.
            dev(v1, &Message::okay(3, 3)),
            dev(v1, &Message::connect(v1, 4096, b"sideload::")),
            // After agreeing on the old version, every header carries the byte sum.
            host(v1, &Message::open(1, "wipe-nothing:")),
            dev(v1, &Message::close(0, 1)),
        ]
        .concat();
        let mock = MockTransport::new(script);
        let mut adb = AdbLink::new(Box::new(mock.clone()));
        adb.connect_host(Duration::from_secs(1)).unwrap();
        assert_eq!(adb.version(), v1);
        let e = adb.call("wipe-nothing:", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(&e, AdbError::Refused(s) if s == "wipe-nothing:"), "{e}");
        mock.assert_done();
        assert_ne!(Message::open(1, "wipe-nothing:").header(v1)[16..20], [0, 0, 0, 0]);
    }

    #[test]
    fn device_handshake_answers_with_the_lower_version() {
        let v1 = A_VERSION_MIN;
        let script: Vec<Exchange> = [
            dev(v1, &Message::connect(v1, 4096, b"host::")),
            host(v1, &Message::connect(v1, MAX_PAYLOAD, b"sideload::")),
        ]
        .concat();
        let mock = MockTransport::new(script);
        let mut adb = AdbLink::new(Box::new(mock.clone()));
        let peer = adb.accept_device(b"sideload::").unwrap();
        assert_eq!(peer.kind, "host");
        mock.assert_done();
    }

    #[test]
    fn auth_means_android_with_debugging() {
        let script: Vec<Exchange> = [
            host(A_VERSION_MIN, &Message::connect(A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, HOST_BANNER)),
            dev(A_VERSION_MIN, &Message::new(Command::Auth, AUTH_TOKEN, 0, vec![7u8; 20])),
        ]
        .concat();
        let mut adb = AdbLink::new(Box::new(MockTransport::new(script)));
        let e = adb.connect_host(Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, AdbError::AuthRequired), "{e}");
        assert!(e.hint().unwrap_or_default().contains("MIAssistant"));
    }

    #[test]
    fn garbage_and_silence_are_errors_not_hangs() {
        let cnxn = host(A_VERSION_MIN, &Message::connect(A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, HOST_BANNER));
        let mut script = cnxn.clone();
        script.push(Exchange::DeviceSends(b"this is no ADB header!!!".to_vec()));
        let mut adb = AdbLink::new(Box::new(MockTransport::new(script)));
        let e = adb.connect_host(Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, AdbError::Garbage(_)), "{e}");
        assert!(e.hint().is_some());
        let mut script = cnxn;
        script.push(Exchange::Silence);
        let mut adb = AdbLink::new(Box::new(MockTransport::new(script)));
        let e = adb.connect_host(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, AdbError::Handshake(_)), "{e}");
    }
}
