//! The simulated Mi Recovery in "Connect with MIAssistant" mode: the device side of the ADB
//! link (`rescue::adb`) with Xiaomi's services, as one Mi Recovery build answers them.
//!
//! It serves the read-only queries from the profile's `[recovery]` table, performs
//! `format-data:` on its store (the `userdata` and `metadata` partition files are emptied, the
//! log records it), answers the reboot services and then closes the connection (the phone
//! goes away; the simulator keeps serving its next connection in recovery mode). Unknown
//! services are refused with `CLSE(0, id)`, as the phone does. `--fault` specs match the
//! service name (`fail-on=format-data:`, `stall-on=getsn:`, ...); `drop-after-bytes=N` drops
//! the connection once N bytes have come from the host.

use super::device::{Hangup, SimOptions};
use super::fault::{FaultKind, FaultPlan};
use super::profile::Profile;
use super::store::Store;
use crate::rescue::adb::{AdbError, AdbLink, Command, Message, HEADER_LEN};
use crate::rescue::tcp::AdbTcpTransport;
use crate::transport::inproc::InProcTransport;
use crate::transport::Transport;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// The `[recovery]` table of a profile: what the simulated Mi Recovery reports. Every key is
/// optional (kebab-case in TOML).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecoveryProfile {
    /// `getdevice:`, the codename with region suffix; default: the profile's `product`.
    pub device: Option<String>,
    /// `getversion:`, e.g. `OS1.0.5.0.UMOMIXM`; default `unknown` (what the phone says for a
    /// missing property).
    pub version: Option<String>,
    /// `getsn:`, the hardware serial; default `0x` and 16 hex digits derived from `serialno`.
    pub sn: Option<String>,
    /// `getcodebase:`, the Android version; default `unknown`.
    pub codebase: Option<String>,
    /// `getbranch:`, `F` (stable, default) or `X`.
    pub branch: Option<String>,
    /// `getlanguage:`, default `en`.
    pub language: Option<String>,
    /// `getregion:`, default `US`.
    pub region: Option<String>,
    /// `getromzone:`, 1 (China) or 2 (global, default).
    pub romzone: Option<u8>,
    /// The phone is flagged as not resettable: `format-data:` answers
    /// `Format_data_is_already_disable.` and erases nothing.
    #[serde(default)]
    pub format_disabled: bool,
    /// How long a format takes, in seconds (the answer comes only when it is done).
    #[serde(default)]
    pub format_seconds: f64,
}

/// Partitions a format-data empties in the store.
const FORMATTED: [&str; 2] = ["userdata", "metadata"];
/// What the simulator sends for a `garbage-on` fault: longer than a header, not ADB.
const GARBAGE: &[u8] = b"\x00\xffGARBAGE, NOT AN ADB MESSAGE\x01";

pub struct SimRecovery {
    profile: Profile,
    store: Store,
    faults: FaultPlan,
    next_stream: u32,
}

/// What the simulator does after a message.
enum Next {
    Continue,
    Hangup(Hangup),
}

impl SimRecovery {
    pub fn new(profile: Profile, store: Store, options: SimOptions) -> Result<SimRecovery, String> {
        let s = profile.recovery.format_seconds;
        if !(0.0..=3600.0).contains(&s) {
            return Err(format!("[recovery] format-seconds must be between 0 and 3600, not {s}"));
        }
        Ok(SimRecovery { profile, store, faults: FaultPlan::new(options.faults), next_stream: 0x100 })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The CNXN banner: `sideload::` and the product properties, no features.
    pub fn banner(&self) -> Vec<u8> {
        let p = &self.profile.product;
        format!("sideload::ro.product.name={p};ro.product.model={p};ro.product.device={p};").into_bytes()
    }

    /// The answer to a read-only query, or `None` for a service this recovery does not know.
    fn query(&self, service: &str) -> Option<String> {
        let r = &self.profile.recovery;
        let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
        Some(match service {
            "getdevice:" => or(&r.device, &self.profile.product),
            "getversion:" => or(&r.version, "unknown"),
            "getsn:" => r.sn.clone().unwrap_or_else(|| {
                format!("0x{:016x}", u64::from(crc32fast::hash(self.profile.serialno.as_bytes())))
            }),
            "getcodebase:" => or(&r.codebase, "unknown"),
            "getbranch:" => or(&r.branch, "F"),
            "getlanguage:" => or(&r.language, "en"),
            "getregion:" => or(&r.region, "US"),
            "getromzone:" => r.romzone.unwrap_or(2).to_string(),
            _ => return None,
        })
    }

    /// Serves one connection until either side closes it.
    pub fn serve(&mut self, link: Box<dyn Transport>) -> Result<Hangup, AdbError> {
        let mut adb = AdbLink::new(link);
        let banner = self.banner();
        match adb.accept_device(&banner) {
            Ok(host) => self.store.log("CNXN", "OKAY", &String::from_utf8_lossy(&banner), json!({ "host": host.kind })),
            Err(e) if e.is_disconnect() => return Ok(Hangup::HostClosed),
            Err(e) => return Err(e),
        }
        loop {
            let m = match adb.recv(None) {
                Ok(m) => m,
                Err(e) if e.is_disconnect() => return Ok(Hangup::HostClosed),
                Err(e) => return Err(e),
            };
            if self.faults.on_download_bytes((HEADER_LEN + m.payload.len()) as u64).is_some() {
                self.store.log(m.command.name(), "DROP", "closed the connection (drop-after-bytes)", json!({}));
                return Ok(Hangup::DeviceClosed);
            }
            let next = match m.command {
                Command::Cnxn => {
                    // A host may start over on the same link.
                    adb.send(&Message::connect(adb.version(), crate::rescue::adb::MAX_PAYLOAD, &banner))?;
                    Next::Continue
                }
                Command::Open => self.open(&mut adb, &m),
                // Acknowledgements and closes of finished streams need no answer.
                _ => Next::Continue,
            };
            match next {
                Next::Continue => {}
                Next::Hangup(h) => return Ok(h),
            }
        }
    }

    fn open(&mut self, adb: &mut AdbLink, m: &Message) -> Next {
        match self.try_open(adb, m) {
            Ok(next) => next,
            Err(e) if e.is_disconnect() => Next::Hangup(Hangup::HostClosed),
            Err(e) => {
                log::warn!("simulated recovery: {e}");
                Next::Hangup(Hangup::HostClosed)
            }
        }
    }

    fn try_open(&mut self, adb: &mut AdbLink, m: &Message) -> Result<Next, AdbError> {
        let host_id = m.arg0;
        let service = String::from_utf8_lossy(&m.payload).trim_end_matches('\0').to_string();
        if let Some((kind, fault)) = self.faults.on_command(&service) {
            let extra = json!({ "fault": fault.to_string() });
            match kind {
                // The fastboot-only kinds map onto what a recovery can do wrong.
                FaultKind::Fail | FaultKind::FailEmpty => {
                    if service.starts_with("format-data") {
                        return self.answer(adb, host_id, &service, "Format_data_failed.", extra);
                    }
                    self.store.log(&service, "REFUSED", "injected fault", extra);
                    adb.send(&Message::close(0, host_id))?;
                    return Ok(Next::Continue);
                }
                FaultKind::Garbage | FaultKind::Long | FaultKind::Data => {
                    self.store.log(&service, "GARBAGE", "answered bytes that are not ADB", extra);
                    adb.send_raw(GARBAGE)?;
                    return Ok(Next::Continue);
                }
                FaultKind::Drop => {
                    self.store.log(&service, "DROP", "closed the connection", extra);
                    return Ok(Next::Hangup(Hangup::DeviceClosed));
                }
                FaultKind::Stall => {
                    self.store.log(&service, "STALL", "never answered", extra);
                    // Swallow everything until the host gives up and closes the link.
                    while adb.recv(None).is_ok() {}
                    return Ok(Next::Hangup(Hangup::HostClosed));
                }
                FaultKind::InfoFlood => {}
            }
        }
        if let Some(value) = self.query(&service) {
            return self.answer(adb, host_id, &service, &value, json!({}));
        }
        match service.as_str() {
            "format-data:" => {
                let (line, erased) = self.format_data();
                self.answer(adb, host_id, &service, line, json!({ "erased": erased }))
            }
            s if s.starts_with("reboot:") => {
                let line = match s {
                    "reboot:bootloader" => "reboot-bootloader.",
                    "reboot:fastboot" => "reboot-fastboot.",
                    "reboot:recovery" => "reboot-recovery.",
                    _ => "reboot.",
                };
                self.answer(adb, host_id, &service, line, json!({}))?;
                // The phone restarts: the USB device goes away.
                Ok(Next::Hangup(Hangup::DeviceClosed))
            }
            _ => {
                self.store.log(&service, "REFUSED", "unknown service", json!({}));
                adb.send(&Message::close(0, host_id))?;
                Ok(Next::Continue)
            }
        }
    }

    /// Empties the data partitions in the store, after the profile's format time.
    fn format_data(&mut self) -> (&'static str, Vec<String>) {
        let r = &self.profile.recovery;
        if r.format_disabled {
            return ("Format_data_is_already_disable.", Vec::new());
        }
        if r.format_seconds > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(r.format_seconds));
        }
        let mut erased = Vec::new();
        for name in FORMATTED {
            let path = self.store.partition_path(name);
            if path.exists() {
                if let Err(e) = std::fs::File::create(&path) {
                    log::warn!("simulated recovery: cannot empty {}: {e}", path.display());
                    return ("Format_data_failed.", erased);
                }
                erased.push(name.to_string());
            }
        }
        ("Format_data_success.", erased)
    }

    /// OKAY, one WRTE with `line` and a newline, CLSE: how Mi Recovery answers every service.
    fn answer(
        &mut self,
        adb: &mut AdbLink,
        host_id: u32,
        service: &str,
        line: &str,
        extra: serde_json::Value,
    ) -> Result<Next, AdbError> {
        self.next_stream = self.next_stream.wrapping_add(1).max(1);
        let own = self.next_stream;
        self.store.log(service, "OKAY", line, extra);
        adb.send(&Message::okay(own, host_id))?;
        adb.send(&Message::write(own, host_id, format!("{line}\n")))?;
        // Xiaomi's tools do not acknowledge the WRTE; the stream closes either way.
        adb.send(&Message::close(own, host_id))?;
        Ok(Next::Continue)
    }
}

/// A simulated Mi Recovery reachable from inside this process (`-s sim:PROFILE` for the
/// `recovery` commands). Each `connect` is a new connection; the state carries over.
pub type RecoveryHandle = super::InProcHandle<SimRecovery>;

impl super::ServeInProc for SimRecovery {
    fn label(name: &str) -> String {
        format!("sim:{name} (recovery)")
    }
    fn serve_inproc(&mut self, link: InProcTransport) -> Result<(), String> {
        self.serve(Box::new(link)).map(|_| ()).map_err(|e| format!("simulated recovery: connection ended: {e}"))
    }
}

/// Serves ADB connections one at a time on `spec`, until the process is killed. Prints
/// `listening on tcp:HOST:PORT` first, like the fastboot simulator.
pub fn serve_tcp(spec: &super::ListenSpec, device: &mut SimRecovery) -> std::io::Result<()> {
    let (listener, shown) = super::bind_announced(spec)?;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        let name = stream.peer_addr().map(|a| format!("tcp:{a}")).unwrap_or_else(|_| shown.clone());
        let link = match AdbTcpTransport::from_stream(stream, name) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("connection setup failed: {e}");
                continue;
            }
        };
        match device.serve(Box::new(link)) {
            Ok(h) => log::info!("connection ended ({h:?})"),
            Err(e) => log::warn!("connection ended: {e}"),
        }
    }
    Ok(())
}

/// Builds a simulated recovery from a profile spec (file path or built-in name).
pub fn build(profile_spec: &str, store: &std::path::Path, options: SimOptions) -> Result<(SimRecovery, String), String> {
    let (profile, name) = Profile::load(profile_spec).map_err(|e| e.to_string())?;
    let store = Store::open(store).map_err(|e| format!("cannot use store {}: {e}", store.display()))?;
    Ok((SimRecovery::new(profile, store, options)?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_table_parses_with_defaults() {
        let p = Profile::parse("product = \"gale\"\n", "t").unwrap();
        assert_eq!(p.recovery, RecoveryProfile::default());
        let p = Profile::parse(
            "product = \"gale\"\n[recovery]\ndevice = \"gale_global\"\nromzone = 1\nformat-disabled = true\nformat-seconds = 0.5\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.recovery.device.as_deref(), Some("gale_global"));
        assert_eq!(p.recovery.romzone, Some(1));
        assert!(p.recovery.format_disabled);
        let e = Profile::parse("product = \"x\"\n[recovery]\nwipe-efs = true\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("wipe-efs"), "{e}");
    }

    #[test]
    fn queries_answer_from_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let p = Profile::parse("product = \"gale\"\nserialno = \"s1\"\n[recovery]\nversion = \"V1\"\n", "t").unwrap();
        let r = SimRecovery::new(p, Store::open(dir.path()).unwrap(), SimOptions::default()).unwrap();
        assert_eq!(r.query("getdevice:").as_deref(), Some("gale"));
        assert_eq!(r.query("getversion:").as_deref(), Some("V1"));
        assert_eq!(r.query("getromzone:").as_deref(), Some("2"));
        let sn = r.query("getsn:").unwrap();
        assert!(sn.starts_with("0x") && sn.len() == 18, "{sn}");
        assert_eq!(r.query("wipe-efs:"), None);
        assert!(String::from_utf8_lossy(&r.banner()).starts_with("sideload::"));
    }
}
