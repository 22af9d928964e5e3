//! The host side of fastboot: typed calls over any [`Transport`].
//!
//! Every call sends one command and reads responses until `OKAY` or `FAIL`. `INFO`/`TEXT`
//! lines go to the caller's message hook and restart the response timeout (a device that is
//! still talking is not stalled). `flash` and `erase` wait longer, since writing a large
//! partition can take minutes.

use super::codec::{Command, RebootTarget, Response, MAX_RESPONSE_LEN};
use super::FastbootError;
use crate::transport::Transport;
use std::io::{Read, Write};
use std::time::Duration;

/// The error for a device that keeps sending `INFO`/`TEXT` lines without finishing a command.
fn endless_messages(cmd: &Command, expected: &str) -> FastbootError {
    FastbootError::Unexpected {
        command: cmd.to_string(),
        got: format!("more than {MAX_MESSAGES_PER_COMMAND} INFO/TEXT lines and no final answer"),
        expected: expected.into(),
    }
}

/// A line the device printed while working on a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMessage {
    Info(String),
    Text(String),
}

type MessageHook = Box<dyn FnMut(&DeviceMessage) + Send>;

/// Default wait for a response (AOSP waits 30 s between reads too).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default wait for the result of `flash`/`erase`.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest read of an `upload` data phase, and the most memory reserved before data arrives.
const UPLOAD_READ_CHUNK: usize = 1 << 20;
/// Most `INFO`/`TEXT` lines one command may produce before its final answer. A bootloader's
/// `getvar:all` sends a few hundred and `oem` commands a few dozen; since each line restarts
/// the response timeout, a device that never stops talking would otherwise hold the host
/// forever.
pub const MAX_MESSAGES_PER_COMMAND: usize = 100_000;

pub struct FastbootClient {
    link: Box<dyn Transport>,
    response_timeout: Duration,
    write_timeout: Duration,
    on_message: Option<MessageHook>,
}

impl FastbootClient {
    pub fn new(link: Box<dyn Transport>) -> FastbootClient {
        FastbootClient {
            link,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            on_message: None,
        }
    }

    pub fn with_timeouts(mut self, response: Duration, write: Duration) -> FastbootClient {
        self.response_timeout = response;
        self.write_timeout = write.max(response);
        self
    }

    /// Where `INFO` / `TEXT` lines from the device go (default: the log at info level).
    pub fn on_message(&mut self, hook: impl FnMut(&DeviceMessage) + Send + 'static) {
        self.on_message = Some(Box::new(hook));
    }

    pub fn describe(&self) -> String {
        self.link.describe()
    }

    fn emit(&mut self, m: DeviceMessage) {
        match &mut self.on_message {
            Some(hook) => hook(&m),
            None => match &m {
                DeviceMessage::Info(s) | DeviceMessage::Text(s) => log::info!("(bootloader) {s}"),
            },
        }
    }

    fn send(&mut self, cmd: &Command) -> Result<(), FastbootError> {
        let bytes = cmd.encode().map_err(|e| FastbootError::codec(cmd, e))?;
        log::debug!("> {cmd}");
        self.link.write(&bytes).map_err(|e| FastbootError::transport(cmd, e))
    }

    /// Closes the link (a phone that is served one connection at a time can then be reached
    /// again); every later call fails with a closed connection.
    pub fn close(&mut self) {
        let name = self.link.describe();
        self.link = Box::new(Disconnected { name });
    }

    /// Reads one response packet. A packet longer than the protocol's 256 bytes is an error,
    /// not two responses: reading it in parts would answer the next command with its rest.
    fn read_response(&mut self, cmd: &Command, timeout: Duration) -> Result<Response, FastbootError> {
        let mut buf = [0u8; MAX_RESPONSE_LEN + 1];
        loop {
            let n = self.link.read(&mut buf, Some(timeout)).map_err(|e| FastbootError::transport(cmd, e))?;
            if n == 0 {
                // Zero-length packets are ignored, as the protocol says.
                continue;
            }
            if n > MAX_RESPONSE_LEN {
                return Err(FastbootError::Unexpected {
                    command: cmd.to_string(),
                    got: format!("a response longer than {MAX_RESPONSE_LEN} bytes (starting {})", crate::transport::printable(&buf[..32])),
                    expected: format!("at most {MAX_RESPONSE_LEN} bytes"),
                });
            }
            let r = Response::parse(&buf[..n]).map_err(|e| FastbootError::codec(cmd, e))?;
            log::debug!("< {r:?}");
            return Ok(r);
        }
    }

    /// Reads responses until a final one; `INFO`/`TEXT` are passed on (at most
    /// [`MAX_MESSAGES_PER_COMMAND`]).
    fn read_final(&mut self, cmd: &Command, timeout: Duration) -> Result<Response, FastbootError> {
        for _ in 0..=MAX_MESSAGES_PER_COMMAND {
            match self.read_response(cmd, timeout)? {
                Response::Info(s) => self.emit(DeviceMessage::Info(s)),
                Response::Text(s) => self.emit(DeviceMessage::Text(s)),
                other => return Ok(other),
            }
        }
        Err(endless_messages(cmd, "OKAY, FAIL or DATA"))
    }

    fn timeout_for(&self, cmd: &Command) -> Duration {
        match cmd {
            Command::Flash(_) | Command::Erase(_) | Command::Oem(_) | Command::Flashing(_) => self.write_timeout,
            _ => self.response_timeout,
        }
    }

    /// Sends a command that has no data phase; returns the `OKAY` payload.
    pub fn run(&mut self, cmd: &Command) -> Result<String, FastbootError> {
        self.send(cmd)?;
        let timeout = self.timeout_for(cmd);
        match self.read_final(cmd, timeout)? {
            Response::Okay(v) => Ok(v),
            Response::Fail(m) => Err(FastbootError::Refused { command: cmd.to_string(), message: m }),
            Response::Data(n) => Err(FastbootError::Unexpected {
                command: cmd.to_string(),
                got: format!("DATA{n:08x}"),
                expected: "OKAY or FAIL".into(),
            }),
            // read_final passes INFO/TEXT on; an error rather than a panic all the same.
            other @ (Response::Info(_) | Response::Text(_)) => Err(FastbootError::Unexpected {
                command: cmd.to_string(),
                got: format!("{other:?}"),
                expected: "OKAY or FAIL".into(),
            }),
        }
    }

    pub fn getvar(&mut self, name: &str) -> Result<String, FastbootError> {
        self.run(&Command::GetVar(name.to_string()))
    }

    /// A variable that may not exist: `FAIL` and an empty `OKAY` both mean "not set".
    pub fn getvar_opt(&mut self, name: &str) -> Result<Option<String>, FastbootError> {
        match self.getvar(name) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => Ok(Some(v.trim().to_string())),
            Err(FastbootError::Refused { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `getvar:all`: the device streams one `INFO name:value` line per variable.
    pub fn getvar_all(&mut self) -> Result<Vec<(String, String)>, FastbootError> {
        let cmd = Command::GetVar("all".into());
        self.send(&cmd)?;
        let mut lines = Vec::new();
        for read in 0.. {
            if read > MAX_MESSAGES_PER_COMMAND {
                return Err(endless_messages(&cmd, "OKAY after the variables"));
            }
            match self.read_response(&cmd, self.response_timeout)? {
                Response::Info(s) => lines.push(s),
                Response::Text(s) => self.emit(DeviceMessage::Text(s)),
                Response::Okay(_) => break,
                Response::Fail(m) => return Err(FastbootError::Refused { command: cmd.to_string(), message: m }),
                Response::Data(n) => {
                    return Err(FastbootError::Unexpected {
                        command: cmd.to_string(),
                        got: format!("DATA{n:08x}"),
                        expected: "INFO or OKAY".into(),
                    })
                }
            }
        }
        Ok(lines.iter().map(|l| split_var_line(l)).collect())
    }

    /// Downloads `len` bytes read from `src` into the device's buffer. `progress` is called
    /// with the number of bytes sent so far.
    pub fn download_from(
        &mut self,
        src: &mut dyn Read,
        len: u32,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), FastbootError> {
        self.download_with(len, progress, &mut |sink| {
            std::io::copy(&mut src.take(len as u64), sink).map(drop)
        })
    }

    /// Downloads `len` bytes that `produce` writes into the sink it is given (for example the
    /// pieces of a split sparse image, generated on the fly). The sink sends large packets
    /// and never a zero-length one; `produce` must write exactly `len` bytes.
    pub fn download_with(
        &mut self,
        len: u32,
        progress: &mut dyn FnMut(u64),
        produce: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), FastbootError> {
        let cmd = Command::Download(len);
        if len == 0 {
            return Err(FastbootError::Unexpected {
                command: cmd.to_string(),
                got: "an empty image".into(),
                expected: "at least one byte".into(),
            });
        }
        self.send(&cmd)?;
        match self.read_final(&cmd, self.response_timeout)? {
            Response::Data(n) if n == len => {}
            Response::Data(n) => {
                return Err(FastbootError::Unexpected {
                    command: cmd.to_string(),
                    got: format!("DATA{n:08x}"),
                    expected: format!("DATA{len:08x}"),
                })
            }
            Response::Fail(m) => return Err(FastbootError::Refused { command: cmd.to_string(), message: m }),
            Response::Okay(v) => {
                return Err(FastbootError::Unexpected {
                    command: cmd.to_string(),
                    got: format!("OKAY{v}"),
                    expected: "DATA".into(),
                })
            }
            other @ (Response::Info(_) | Response::Text(_)) => {
                return Err(FastbootError::Unexpected { command: cmd.to_string(), got: format!("{other:?}"), expected: "DATA".into() })
            }
        }
        let chunk = self.link.max_write_chunk().clamp(1, 16 << 20).min(len as usize);
        let mut sink = DataSink { link: &mut *self.link, buf: Vec::with_capacity(chunk), chunk, sent: 0, limit: len as u64, failed: None, progress };
        let produced = produce(&mut sink).and_then(|_| sink.flush());
        let (sent, failed) = (sink.sent, sink.failed.take());
        if let Some(e) = failed {
            return Err(FastbootError::transport(&cmd, e));
        }
        if let Err(e) = produced {
            return Err(FastbootError::Source { command: cmd.to_string(), source: e });
        }
        if sent != len as u64 {
            return Err(FastbootError::Source {
                command: cmd.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the image gave {sent} of the {len} bytes announced"),
                ),
            });
        }
        match self.read_final(&cmd, self.response_timeout)? {
            Response::Okay(_) => Ok(()),
            Response::Fail(m) => Err(FastbootError::Refused { command: cmd.to_string(), message: m }),
            other => Err(FastbootError::Unexpected {
                command: cmd.to_string(),
                got: format!("{other:?}"),
                expected: "OKAY after the data".into(),
            }),
        }
    }

    pub fn download(&mut self, data: &[u8]) -> Result<(), FastbootError> {
        let len = u32::try_from(data.len()).map_err(|_| FastbootError::Unexpected {
            command: "download".into(),
            got: format!("{} bytes", data.len()),
            expected: "at most 4 GiB - 1 per download".into(),
        })?;
        self.download_from(&mut &data[..], len, &mut |_| {})
    }

    /// `upload`: reads back what the device stages (AOSP `get_staged`).
    pub fn upload(&mut self) -> Result<Vec<u8>, FastbootError> {
        let cmd = Command::Upload;
        self.send(&cmd)?;
        let len = match self.read_final(&cmd, self.response_timeout)? {
            Response::Data(n) => n as usize,
            Response::Fail(m) => return Err(FastbootError::Refused { command: cmd.to_string(), message: m }),
            other => {
                return Err(FastbootError::Unexpected {
                    command: cmd.to_string(),
                    got: format!("{other:?}"),
                    expected: "DATA".into(),
                })
            }
        };
        // The length comes from the device: grow with the data that arrives instead of
        // allocating it up front (`DATAffffffff` would ask for 4 GiB before the first byte).
        let mut data = Vec::with_capacity(len.min(UPLOAD_READ_CHUNK));
        let mut buf = vec![0u8; len.min(UPLOAD_READ_CHUNK)];
        while data.len() < len {
            let want = (len - data.len()).min(buf.len());
            let n = self
                .link
                .read(&mut buf[..want], Some(self.response_timeout))
                .map_err(|e| FastbootError::transport(&cmd, e))?;
            data.extend_from_slice(&buf[..n]);
        }
        match self.read_final(&cmd, self.response_timeout)? {
            Response::Okay(_) => Ok(data),
            Response::Fail(m) => Err(FastbootError::Refused { command: cmd.to_string(), message: m }),
            other => Err(FastbootError::Unexpected {
                command: cmd.to_string(),
                got: format!("{other:?}"),
                expected: "OKAY after the data".into(),
            }),
        }
    }

    pub fn flash(&mut self, partition: &str) -> Result<(), FastbootError> {
        self.run(&Command::Flash(partition.to_string())).map(drop)
    }

    pub fn erase(&mut self, partition: &str) -> Result<(), FastbootError> {
        self.run(&Command::Erase(partition.to_string())).map(drop)
    }

    pub fn set_active(&mut self, slot: &str) -> Result<(), FastbootError> {
        let slot = slot.trim_start_matches('_');
        self.run(&Command::SetActive(slot.to_string())).map(drop)
    }

    pub fn reboot(&mut self, target: RebootTarget) -> Result<(), FastbootError> {
        self.run(&Command::Reboot(target)).map(drop)
    }

    pub fn oem(&mut self, args: &str) -> Result<String, FastbootError> {
        self.run(&Command::Oem(args.to_string()))
    }

    pub fn flashing(&mut self, args: &str) -> Result<String, FastbootError> {
        self.run(&Command::Flashing(args.to_string()))
    }

    pub fn continue_boot(&mut self) -> Result<(), FastbootError> {
        self.run(&Command::Continue).map(drop)
    }
}

/// What a closed client holds instead of its link.
struct Disconnected {
    name: String,
}

impl Transport for Disconnected {
    fn write(&mut self, _: &[u8]) -> Result<(), crate::transport::TransportError> {
        Err(crate::transport::TransportError::Closed)
    }
    fn read(&mut self, _: &mut [u8], _: Option<Duration>) -> Result<usize, crate::transport::TransportError> {
        Err(crate::transport::TransportError::Closed)
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Collects a data phase into packets of `chunk` bytes. A transport failure is kept so the
/// caller reports it as such, not as an I/O error of the image.
struct DataSink<'a> {
    link: &'a mut dyn Transport,
    buf: Vec<u8>,
    chunk: usize,
    sent: u64,
    limit: u64,
    failed: Option<crate::transport::TransportError>,
    progress: &'a mut dyn FnMut(u64),
}

impl DataSink<'_> {
    /// Sends `data` on the link, counting it; a link error is kept for the client.
    fn send(link: &mut dyn Transport, failed: &mut Option<crate::transport::TransportError>, sent: &mut u64, progress: &mut dyn FnMut(u64), data: &[u8]) -> std::io::Result<()> {
        if let Err(e) = link.write(data) {
            let msg = e.to_string();
            *failed = Some(e);
            return Err(std::io::Error::other(msg));
        }
        *sent += data.len() as u64;
        progress(*sent);
        Ok(())
    }

    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        Self::send(self.link, &mut self.failed, &mut self.sent, self.progress, &self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl Write for DataSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.failed.is_some() {
            return Err(std::io::Error::other("the link to the device failed"));
        }
        let room = self.limit - self.sent - self.buf.len() as u64;
        if data.len() as u64 > room {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the image is longer than announced"));
        }
        if self.buf.is_empty() && data.len() >= self.chunk {
            // A whole transfer is at hand: send it from the caller's buffer, without a copy.
            Self::send(self.link, &mut self.failed, &mut self.sent, self.progress, &data[..self.chunk])?;
            return Ok(self.chunk);
        }
        let take = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == self.chunk {
            self.send_buffered()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffered()
    }
}

/// Splits a `getvar:all` line (`name:value`, or `name:arg:value` for per-partition variables)
/// at its last colon, tolerating the blanks some bootloaders print.
fn split_var_line(line: &str) -> (String, String) {
    match line.rsplit_once(':') {
        Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
        None => (line.trim().to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::mock::{Exchange, MockTransport};
    use crate::transport::TransportError;
    use std::sync::{Arc, Mutex};

    fn client(m: &MockTransport) -> FastbootClient {
        FastbootClient::new(Box::new(m.clone()))
    }

    #[test]
    fn getvar_sends_exact_bytes() {
        let m = MockTransport::conversation(&[(b"getvar:product", &[b"OKAYlavender"])]);
        assert_eq!(client(&m).getvar("product").unwrap(), "lavender");
        m.assert_done();
    }

    #[test]
    fn optional_getvar_treats_fail_and_empty_as_unset() {
        let m = MockTransport::conversation(&[
            (b"getvar:anti", &[b"FAILVariable not implemented"]),
            (b"getvar:crc", &[b"OKAY"]),
            (b"getvar:unlocked", &[b"OKAYyes"]),
        ]);
        let mut c = client(&m);
        assert_eq!(c.getvar_opt("anti").unwrap(), None);
        assert_eq!(c.getvar_opt("crc").unwrap(), None);
        assert_eq!(c.getvar_opt("unlocked").unwrap(), Some("yes".into()));
        m.assert_done();
    }

    #[test]
    fn info_lines_reach_the_hook_and_fail_is_refused() {
        let m = MockTransport::conversation(&[(
            b"oem device-info",
            &[b"INFODevice unlocked: true", b"INFODevice critical unlocked: false", b"OKAY"],
        )]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut c = client(&m);
        let s = seen.clone();
        c.on_message(move |msg| s.lock().unwrap().push(msg.clone()));
        c.oem("device-info").unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        m.assert_done();

        let m = MockTransport::conversation(&[(b"flash:boot", &[b"FAILFlashing is not allowed in Lock State"])]);
        let err = client(&m).flash("boot").unwrap_err();
        assert_eq!(err.to_string(), "the device refused `flash:boot`: Flashing is not allowed in Lock State");
    }

    #[test]
    fn getvar_all_collects_lines() {
        let m = MockTransport::conversation(&[(
            b"getvar:all",
            &[b"INFOproduct:piano", b"INFOpartition-size:boot_a: 0x4000000", b"OKAY"],
        )]);
        let all = client(&m).getvar_all().unwrap();
        assert_eq!(all, vec![("product".into(), "piano".into()), ("partition-size:boot_a".into(), "0x4000000".into())]);
        m.assert_done();
    }

    #[test]
    fn download_sends_header_data_and_reads_okay() {
        let data = vec![7u8; 300];
        let mut script = vec![Exchange::HostWrites(b"download:0000012c".to_vec()), Exchange::DeviceSends(b"DATA0000012c".to_vec())];
        script.push(Exchange::HostWrites(data.clone()));
        script.push(Exchange::DeviceSends(b"OKAY".to_vec()));
        let m = MockTransport::new(script);
        client(&m).download(&data).unwrap();
        m.assert_done();
    }

    #[test]
    fn download_refused_or_wrong_length() {
        let m = MockTransport::conversation(&[(b"download:00000004", &[b"FAILRequested download size is more than max allowed"])]);
        assert!(matches!(client(&m).download(b"abcd"), Err(FastbootError::Refused { .. })));
        let m = MockTransport::conversation(&[(b"download:00000004", &[b"DATA00000003"])]);
        assert!(matches!(client(&m).download(b"abcd"), Err(FastbootError::Unexpected { .. })));
    }

    #[test]
    fn stall_and_drop_are_errors_not_hangs() {
        let m = MockTransport::new([Exchange::HostWrites(b"getvar:product".to_vec()), Exchange::Silence]);
        let err = client(&m).getvar("product").unwrap_err();
        assert!(matches!(err, FastbootError::Transport { source: TransportError::Timeout(_), .. }));
        let m = MockTransport::new([Exchange::HostWrites(b"getvar:product".to_vec()), Exchange::Disconnect]);
        let err = client(&m).getvar("product").unwrap_err();
        assert!(matches!(err, FastbootError::Transport { source: TransportError::Closed, .. }));
    }

    #[test]
    fn garbage_is_reported() {
        let m = MockTransport::conversation(&[(b"getvar:product", &[b"\x01\x02garbage"])]);
        let err = client(&m).getvar("product").unwrap_err();
        assert!(err.to_string().contains("not fastboot"), "{err}");
    }

    #[test]
    fn over_long_responses_and_unexpected_data_are_errors() {
        // Over a stream-like link the packet arrives whole, however small the read buffer.
        let (host, mut dev) = crate::transport::inproc::pair("test");
        dev.write(&[b"OKAY".as_slice(), &[b'x'; 300]].concat()).unwrap();
        let err = FastbootClient::new(Box::new(host)).getvar("product").unwrap_err();
        assert!(err.to_string().contains("longer than 256 bytes"), "{err}");
        assert!(err.hint().is_some());
        let m = MockTransport::conversation(&[(b"flash:boot", &[b"DATA00001000"])]);
        let err = client(&m).flash("boot").unwrap_err();
        assert!(err.to_string().contains("DATA00001000") && err.to_string().contains("OKAY or FAIL"), "{err}");
    }

    #[test]
    fn info_floods_are_passed_on_and_the_answer_still_arrives() {
        let lines: Vec<Vec<u8>> = (0..5000).map(|i| format!("INFOline {i}").into_bytes()).chain([b"OKAY".to_vec()]).collect();
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let m = MockTransport::conversation(&[(b"oem device-info", &refs)]);
        let seen = Arc::new(Mutex::new(0usize));
        let mut c = client(&m);
        let s = seen.clone();
        c.on_message(move |_| *s.lock().unwrap() += 1);
        c.oem("device-info").unwrap();
        assert_eq!(*seen.lock().unwrap(), 5000);
    }

    #[test]
    fn a_device_that_never_stops_sending_info_is_given_up_on() {
        let lines: Vec<Vec<u8>> = (0..=MAX_MESSAGES_PER_COMMAND).map(|i| format!("INFOline {i}").into_bytes()).chain([b"OKAY".to_vec()]).collect();
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        for cmd in [&b"oem device-info"[..], b"getvar:all"] {
            let m = MockTransport::conversation(&[(cmd, &refs)]);
            let mut c = client(&m);
            c.on_message(|_| {});
            let err = if cmd == b"getvar:all" { c.getvar_all().unwrap_err() } else { c.oem("device-info").unwrap_err() };
            assert!(err.to_string().contains("more than 100000 INFO/TEXT lines"), "{err}");
            assert!(err.hint().is_some());
        }
    }

    #[test]
    fn a_fail_without_a_message_says_so() {
        let m = MockTransport::conversation(&[(b"flash:boot", &[b"FAIL"])]);
        let err = client(&m).flash("boot").unwrap_err();
        assert_eq!(err.to_string(), "the device refused `flash:boot` without giving a reason");
    }

    #[test]
    fn a_closed_client_fails_cleanly() {
        let m = MockTransport::conversation(&[]);
        let mut c = client(&m);
        let name = c.describe();
        c.close();
        assert_eq!(c.describe(), name);
        assert!(matches!(c.getvar("product"), Err(FastbootError::Transport { source: TransportError::Closed, .. })));
    }

    #[test]
    fn upload_reads_data_phase() {
        let m = MockTransport::new([
            Exchange::HostWrites(b"upload".to_vec()),
            Exchange::DeviceSends(b"DATA00000003".to_vec()),
            Exchange::DeviceSends(b"xyz".to_vec()),
            Exchange::DeviceSends(b"OKAY".to_vec()),
        ]);
        assert_eq!(client(&m).upload().unwrap(), b"xyz");
        m.assert_done();
    }

    #[test]
    fn set_active_strips_underscore() {
        let m = MockTransport::conversation(&[(b"set_active:a", &[b"OKAY"])]);
        client(&m).set_active("_a").unwrap();
        m.assert_done();
    }
}
