//! A scripted transport for unit tests: it holds the exact conversation (what the host must
//! write, what the device answers) and reports the first byte that differs.

use super::{Transport, TransportError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// The host must write exactly these bytes next.
    HostWrites(Vec<u8>),
    /// The device answers with this packet.
    DeviceSends(Vec<u8>),
    /// The next read times out.
    Silence,
    /// The link drops.
    Disconnect,
}

#[derive(Clone)]
pub struct MockTransport {
    script: Arc<Mutex<VecDeque<Exchange>>>,
    mismatch: Arc<Mutex<Option<String>>>,
}

impl MockTransport {
    pub fn new(script: impl IntoIterator<Item = Exchange>) -> MockTransport {
        MockTransport { script: Arc::new(Mutex::new(script.into_iter().collect())), mismatch: Arc::new(Mutex::new(None)) }
    }

    /// Convenience: a command and its responses.
    pub fn conversation(pairs: &[(&[u8], &[&[u8]])]) -> MockTransport {
        let mut v = Vec::new();
        for (cmd, replies) in pairs {
            v.push(Exchange::HostWrites(cmd.to_vec()));
            v.extend(replies.iter().map(|r| Exchange::DeviceSends(r.to_vec())));
        }
        MockTransport::new(v)
    }

    /// Panics (it is a test helper) unless the whole script was played and nothing differed.
    pub fn assert_done(&self) {
        if let Some(m) = self.mismatch.lock().map(|m| m.clone()).unwrap_or(None) {
            panic!("mock transport: {m}");
        }
        let left = self.script.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(left, 0, "mock transport: {left} exchanges were not played");
    }

    fn fail(&self, msg: String) -> TransportError {
        if let Ok(mut m) = self.mismatch.lock() {
            m.get_or_insert(msg.clone());
        }
        TransportError::Protocol(format!("mock: {msg}"))
    }
}

impl Transport for MockTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let next = self.script.lock().ok().and_then(|mut s| s.pop_front());
        match next {
            Some(Exchange::HostWrites(expected)) if expected == data => Ok(()),
            Some(Exchange::HostWrites(expected)) => Err(self.fail(format!(
                "host wrote `{}`, expected `{}`",
                super::printable(data),
                super::printable(&expected)
            ))),
            Some(Exchange::Disconnect) => Err(TransportError::Closed),
            other => Err(self.fail(format!("host wrote `{}` but the script has {other:?}", super::printable(data)))),
        }
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        let next = self.script.lock().ok().and_then(|mut s| s.pop_front());
        match next {
            Some(Exchange::DeviceSends(p)) => {
                if p.len() > buf.len() {
                    return Err(self.fail(format!("read buffer of {} bytes for a {}-byte packet", buf.len(), p.len())));
                }
                buf[..p.len()].copy_from_slice(&p);
                Ok(p.len())
            }
            Some(Exchange::Silence) => Err(TransportError::Timeout(timeout.unwrap_or_default())),
            Some(Exchange::Disconnect) | None => Err(TransportError::Closed),
            Some(other) => Err(self.fail(format!("host read while the script has {other:?}"))),
        }
    }

    fn describe(&self) -> String {
        "mock".into()
    }
}
