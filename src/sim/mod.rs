//! The simulated Xiaomi phone. It is a device, not a test helper: `mi-flash simulate` ships it
//! so that ROM maintainers can test packages in CI, and `-s sim:PROFILE` embeds it so mi-flash
//! can be tried with no phone. It speaks the same codec as the client (`fastboot::codec`).

pub mod crc;
pub mod device;
pub mod fault;
pub mod profile;
pub mod recovery;
pub mod store;
pub mod udp;

pub use device::{Hangup, SimDevice, SimOptions};
pub use fault::Fault;
pub use profile::Profile;
pub use store::Store;

use crate::transport::inproc::{self, InProcTransport};
use crate::transport::tcp::TcpTransport;
use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// A simulated phone (fastboot or recovery) reachable from inside this process. Each `connect`
/// is a new connection (like plugging the cable in again), served on its own thread; the
/// phone's state carries over between them, and one connection is served at a time.
pub struct InProcHandle<D> {
    device: Arc<Mutex<D>>,
    name: String,
}

impl<D> Clone for InProcHandle<D> {
    fn clone(&self) -> Self {
        InProcHandle { device: self.device.clone(), name: self.name.clone() }
    }
}

/// A simulated phone that serves one in-process connection until it ends.
pub trait ServeInProc: Send + 'static {
    /// How the connection is labelled (`sim:NAME` for fastboot).
    fn label(name: &str) -> String;
    /// Serves `link` until the host hangs up; the error is only logged.
    fn serve_inproc(&mut self, link: InProcTransport) -> Result<(), String>;
}

impl ServeInProc for SimDevice {
    fn label(name: &str) -> String {
        format!("sim:{name}")
    }
    fn serve_inproc(&mut self, mut link: InProcTransport) -> Result<(), String> {
        self.serve(&mut link).map(|_| ()).map_err(|e| format!("simulated device: connection ended: {e}"))
    }
}

impl<D: ServeInProc> InProcHandle<D> {
    pub fn new(device: D, name: &str) -> InProcHandle<D> {
        InProcHandle { device: Arc::new(Mutex::new(device)), name: name.to_string() }
    }

    pub fn connect(&self) -> InProcTransport {
        let (host, dev_end) = inproc::pair(&D::label(&self.name));
        let device = self.device.clone();
        std::thread::spawn(move || {
            let mut dev = device.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = dev.serve_inproc(dev_end) {
                log::warn!("{e}");
            }
        });
        host
    }
}

/// The simulated bootloader, in-process (`-s sim:PROFILE`).
pub type SimHandle = InProcHandle<SimDevice>;

impl SimHandle {
    pub fn serial(&self) -> String {
        self.device.lock().unwrap_or_else(|p| p.into_inner()).profile().serialno.clone()
    }
}

/// Where `mi-flash simulate --listen` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    Tcp { host: String, port: u16 },
    /// AOSP fastboot over UDP (`udp:HOST:PORT`).
    Udp { host: String, port: u16 },
}

impl std::str::FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenSpec, String> {
        if let Some(rest) = s.strip_prefix("udp:") {
            let (host, port) = crate::transport::tcp::parse_host_port(rest, crate::transport::udp::DEFAULT_PORT)?;
            return Ok(ListenSpec::Udp { host, port });
        }
        let rest = s.strip_prefix("tcp:").unwrap_or(s);
        let (host, port) = crate::transport::tcp::parse_host_port(rest, crate::transport::tcp::DEFAULT_PORT)?;
        Ok(ListenSpec::Tcp { host, port })
    }
}

/// Serves connections one at a time, until the process is killed. Prints
/// `listening on tcp:HOST:PORT` as the first line on stdout once the socket is bound.
pub fn serve_tcp(spec: &ListenSpec, device: &mut SimDevice) -> std::io::Result<()> {
    let ListenSpec::Tcp { host, port } = spec else {
        return serve(spec, device);
    };
    let listener = TcpListener::bind((host.as_str(), *port))?;
    announce("tcp", listener.local_addr()?)?;
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

/// The warning for a simulator that other machines can reach (every address but loopback).
fn exposure_warning(ip: IpAddr) -> Option<String> {
    (!ip.is_loopback()).then(|| {
        format!("warning: the simulator listens on {ip} which other machines can reach; use 127.0.0.1 unless that is what you want")
    })
}

/// Prints `listening on SCHEME:HOST:PORT` (the first stdout line, which scripts wait for) and
/// warns when the address is reachable from other machines.
pub(crate) fn announce(scheme: &str, addr: std::net::SocketAddr) -> std::io::Result<String> {
    if let Some(w) = exposure_warning(addr.ip()) {
        eprintln!("{w}");
    }
    let shown = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let address = format!("{scheme}:{shown}:{}", addr.port());
    let mut out = std::io::stdout();
    writeln!(out, "listening on {address}")?;
    out.flush()?;
    Ok(address)
}

/// Binds a TCP listening socket and announces it (see [`announce`]). Returns the listener and
/// the announced address.
pub(crate) fn bind_announced(spec: &ListenSpec) -> std::io::Result<(TcpListener, String)> {
    let ListenSpec::Tcp { host, port } = spec else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "this simulator serves TCP only: use tcp:HOST:PORT"));
    };
    let listener = TcpListener::bind((host.as_str(), *port))?;
    let address = announce("tcp", listener.local_addr()?)?;
    Ok((listener, address))
}

/// Serves on whatever `spec` names: TCP connections one at a time, or UDP sessions.
pub fn serve(spec: &ListenSpec, device: &mut SimDevice) -> std::io::Result<()> {
    match spec {
        ListenSpec::Tcp { .. } => serve_tcp(spec, device),
        ListenSpec::Udp { host, port } => udp::serve_udp(host, *port, device),
    }
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
    fn only_loopback_addresses_go_without_a_warning() {
        for ip in ["127.0.0.1", "::1", "127.8.9.10"] {
            assert_eq!(exposure_warning(ip.parse().unwrap()), None, "{ip}");
        }
        for ip in ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1"] {
            let w = exposure_warning(ip.parse().unwrap()).unwrap_or_default();
            assert!(w.contains("other machines can reach") && w.contains(ip), "{ip}: {w}");
        }
    }

    #[test]
    fn listen_specs() {
        assert_eq!("127.0.0.1:0".parse::<ListenSpec>().unwrap(), ListenSpec::Tcp { host: "127.0.0.1".into(), port: 0 });
        assert_eq!("tcp:localhost".parse::<ListenSpec>().unwrap(), ListenSpec::Tcp { host: "localhost".into(), port: 5554 });
        assert!("tcp:x:y".parse::<ListenSpec>().is_err());
        assert_eq!("udp:127.0.0.1:0".parse::<ListenSpec>().unwrap(), ListenSpec::Udp { host: "127.0.0.1".into(), port: 0 });
        assert_eq!("udp:localhost".parse::<ListenSpec>().unwrap(), ListenSpec::Udp { host: "localhost".into(), port: 5554 });
    }
}
