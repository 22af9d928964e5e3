//! The simulated Xiaomi phone. It is a device, not a test helper: `mi-flash simulate` ships it
//! so that ROM maintainers can test packages in CI, and `-s sim:PROFILE` embeds it so mi-flash
//! can be tried with no phone. It speaks the same codec as the client (`fastboot::codec`).

pub mod crc;
pub mod device;
pub mod fault;
pub mod profile;
pub mod recovery;
pub mod store;

pub use device::{Hangup, SimDevice, SimOptions};
pub use fault::Fault;
pub use profile::Profile;
pub use store::Store;

use crate::transport::inproc::{self, InProcTransport};
use crate::transport::tcp::TcpTransport;
use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// A simulated phone reachable from inside this process. Each `connect` is a new connection
/// (like plugging the cable in again); the phone's state carries over between them.
#[derive(Clone)]
pub struct SimHandle {
    device: Arc<Mutex<SimDevice>>,
    name: String,
}

impl SimHandle {
    pub fn new(device: SimDevice, name: &str) -> SimHandle {
        SimHandle { device: Arc::new(Mutex::new(device)), name: name.to_string() }
    }

    pub fn connect(&self) -> InProcTransport {
        let (host, mut dev_end) = inproc::pair(&format!("sim:{}", self.name));
        let device = self.device.clone();
        std::thread::spawn(move || {
            let mut dev = device.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = dev.serve(&mut dev_end) {
                log::warn!("simulated device: connection ended: {e}");
            }
        });
        host
    }

    pub fn serial(&self) -> String {
        self.device.lock().unwrap_or_else(|p| p.into_inner()).profile().serialno.clone()
    }
}

/// Where `mi-flash simulate --listen` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    Tcp { host: String, port: u16 },
}

impl std::str::FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenSpec, String> {
        let rest = s.strip_prefix("tcp:").unwrap_or(s);
        if s.starts_with("udp:") {
            return Err("UDP is not served yet: use tcp:HOST:PORT".into());
        }
        let (host, port) = crate::transport::tcp::parse_host_port(rest, crate::transport::tcp::DEFAULT_PORT)?;
        Ok(ListenSpec::Tcp { host, port })
    }
}

/// Serves connections one at a time, until the process is killed. Prints
/// `listening on tcp:HOST:PORT` as the first line on stdout once the socket is bound.
pub fn serve_tcp(spec: &ListenSpec, device: &mut SimDevice) -> std::io::Result<()> {
    let (listener, _) = bind_announced(spec)?;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        let mut link = match TcpTransport::accept(stream) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("handshake failed: {e}");
                continue;
            }
        };
        match device.serve(&mut link) {
            Ok(h) => log::info!("connection ended ({h:?})"),
            Err(e) => log::warn!("connection ended: {e}"),
        }
    }
    Ok(())
}

/// Binds the listening socket and prints `listening on tcp:HOST:PORT` (the real port) as the
/// first line on stdout. Returns the listener and that address.
pub(crate) fn bind_announced(spec: &ListenSpec) -> std::io::Result<(TcpListener, String)> {
    let ListenSpec::Tcp { host, port } = spec;
    let listener = TcpListener::bind((host.as_str(), *port))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the simulator listens on {} which other machines can reach; use 127.0.0.1 unless that is what you want",
            addr.ip()
        );
    }
    let shown = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let address = format!("tcp:{shown}:{}", addr.port());
    let mut out = std::io::stdout();
    writeln!(out, "listening on {address}")?;
    out.flush()?;
    Ok((listener, address))
}

/// Builds a simulated device from a profile spec (file path or built-in name).
pub fn build(profile_spec: &str, store: &std::path::Path, options: SimOptions) -> Result<(SimDevice, String), String> {
    let (profile, name) = Profile::load(profile_spec).map_err(|e| e.to_string())?;
    let store = Store::open(store).map_err(|e| format!("cannot use store {}: {e}", store.display()))?;
    let dev = SimDevice::new(profile, store, options).map_err(|e| format!("cannot set up the simulator: {e}"))?;
    Ok((dev, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs() {
        assert_eq!("127.0.0.1:0".parse::<ListenSpec>().unwrap(), ListenSpec::Tcp { host: "127.0.0.1".into(), port: 0 });
        assert_eq!("tcp:localhost".parse::<ListenSpec>().unwrap(), ListenSpec::Tcp { host: "localhost".into(), port: 5554 });
        assert!("tcp:x:y".parse::<ListenSpec>().is_err());
    }
}
