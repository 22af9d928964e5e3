//! USB for the rescue helper, over libusb (rusb): listing phones in every mode that is not
//! fastboot (fastboot phones are listed by `transport::usb`), and the ADB link to a phone in
//! Mi Recovery's MIAssistant mode.
//!
//! ADB interfaces (ff/42/01) are found by interface, never by VID:PID (Mi Recovery's IDs are
//! not fixed). Each ADB message goes out as two bulk transfers, header then payload, with a
//! zero-length packet after a transfer whose length is a whole number of USB packets (the
//! phone reads with a large fixed-size request and would otherwise wait for more); reads ask
//! for whole packets and keep what the caller did not take.

use super::adb::{AdbError, AdbLink};
use super::miassistant::MiAssistant;
use super::mode::{classify, mode_from_handshake, Handshake, PhoneMode, UsbKind, ADB_INTERFACE};
use crate::transport::usb::{map_usb_error, new_context, port_path, read_string, read_sysfs_attribute};
use crate::transport::{Transport, TransportError};
use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext};
use serde::Serialize;
use std::time::Duration;

/// How long a bulk OUT transfer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest single bulk IN transfer: one maximal ADB payload.
const MAX_READ: usize = 1024 * 1024;
/// How long `devices` waits for an ADB phone to answer the handshake.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One phone on USB in a mode other than fastboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsbPhone {
    pub mode: PhoneMode,
    pub serial: Option<String>,
    pub product: Option<String>,
    pub manufacturer: Option<String>,
    pub vendor_id: u16,
    pub product_id: u16,
    pub port_path: String,
    /// Why mi-flash could not ask the phone (permissions, interface busy), with the next step.
    pub problem: Option<String>,
}

impl UsbPhone {
    /// `usb:SERIAL`, or `usb:PORT` without a serial.
    pub fn id(&self) -> String {
        match &self.serial {
            Some(s) => format!("usb:{s}"),
            None => format!("usb:{}", self.port_path),
        }
    }

    /// `2717:ff48`.
    pub fn usb_id(&self) -> String {
        format!("{:04x}:{:04x}", self.vendor_id, self.product_id)
    }

    pub fn matches(&self, selector: &str) -> bool {
        let bare = selector.strip_prefix("usb:").unwrap_or(selector);
        self.serial.as_deref() == Some(bare) || bare == self.port_path
    }
}

/// An ADB interface: where it is and how to talk to it.
struct AdbCandidate {
    device: Device<Context>,
    interface: u8,
    alt_setting: u8,
    ep_in: u8,
    ep_out: u8,
    in_packet: usize,
    out_packet: usize,
}

/// Every phone on USB that is not in fastboot mode. ADB phones are asked with a handshake
/// (at most [`PROBE_TIMEOUT`] each) to tell Mi Recovery from Android with USB debugging.
pub fn list_other_modes() -> Result<Vec<UsbPhone>, TransportError> {
    let ctx = new_context()?;
    let devices = ctx.devices().map_err(|e| map_usb_error(e, "listing USB devices", None))?;
    let mut phones = Vec::new();
    for device in devices.iter() {
        let Some((kind, mut phone, adb)) = describe(&device) else { continue };
        match kind {
            UsbKind::Fastboot => continue,
            UsbKind::Fixed(mode) => phone.mode = mode,
            UsbKind::Adb => {
                let (mode, problem) = match adb {
                    Some(c) => probe(&c, &phone),
                    None => (PhoneMode::Adb, None),
                };
                phone.mode = mode;
                phone.problem = problem;
            }
        }
        phones.push(phone);
    }
    phones.sort_by(|a, b| a.port_path.cmp(&b.port_path));
    Ok(phones)
}

/// Reads what the descriptors (and sysfs or string descriptors) say about `device`.
fn describe(device: &Device<Context>) -> Option<(UsbKind, UsbPhone, Option<AdbCandidate>)> {
    let desc = device.device_descriptor().ok()?;
    let config = device.active_config_descriptor().or_else(|_| device.config_descriptor(0)).ok()?;
    let mut triples = Vec::new();
    let mut adb = None;
    for intf in config.interfaces() {
        for alt in intf.descriptors() {
            let triple = (alt.class_code(), alt.sub_class_code(), alt.protocol_code());
            triples.push(triple);
            if triple == ADB_INTERFACE && adb.is_none() {
                let bulk = |dir: Direction| {
                    alt.endpoint_descriptors().find(|ep| ep.direction() == dir && ep.transfer_type() == TransferType::Bulk)
                };
                if let (Some(i), Some(o)) = (bulk(Direction::In), bulk(Direction::Out)) {
                    adb = Some(AdbCandidate {
                        device: device.clone(),
                        interface: alt.interface_number(),
                        alt_setting: alt.setting_number(),
                        ep_in: i.address(),
                        ep_out: o.address(),
                        in_packet: usize::from(i.max_packet_size() & 0x7ff).max(64),
                        out_packet: usize::from(o.max_packet_size() & 0x7ff).max(64),
                    });
                }
            }
        }
    }
    let kind = classify(desc.vendor_id(), desc.product_id(), &triples)?;
    let port_path = port_path(device);
    let mut phone = UsbPhone {
        mode: PhoneMode::Adb,
        serial: None,
        product: None,
        manufacturer: None,
        vendor_id: desc.vendor_id(),
        product_id: desc.product_id(),
        port_path,
        problem: None,
    };
    if kind == UsbKind::Fastboot {
        return Some((kind, phone, None));
    }
    // sysfs first (no permission needed, nothing sent to the phone), as for fastboot.
    if cfg!(target_os = "linux") {
        phone.serial = read_sysfs_attribute(&phone.port_path, "serial");
        phone.product = read_sysfs_attribute(&phone.port_path, "product");
        phone.manufacturer = read_sysfs_attribute(&phone.port_path, "manufacturer");
    }
    // EDL and the MediaTek modes are only named: mi-flash sends them nothing at all.
    if kind == UsbKind::Adb && phone.serial.is_none() {
        if let Ok(handle) = device.open() {
            phone.serial = read_string(&handle, desc.serial_number_string_index());
            phone.product = phone.product.or_else(|| read_string(&handle, desc.product_string_index()));
            phone.manufacturer = phone.manufacturer.or_else(|| read_string(&handle, desc.manufacturer_string_index()));
        }
    }
    Some((kind, phone, adb))
}

/// Handshakes with an ADB interface to learn its mode.
fn probe(c: &AdbCandidate, phone: &UsbPhone) -> (PhoneMode, Option<String>) {
    let link = match AdbUsbTransport::open(c, phone.id()) {
        Ok(l) => l,
        Err(e) => {
            let text = match e.hint() {
                Some(h) => format!("{e}: {h}"),
                None => e.to_string(),
            };
            return (PhoneMode::Adb, Some(text));
        }
    };
    let mut adb = AdbLink::new(Box::new(link));
    let handshake = match adb.connect_host(PROBE_TIMEOUT) {
        Ok(banner) => Handshake::Banner(banner.kind),
        Err(AdbError::AuthRequired) => Handshake::AuthRequired,
        Err(e) => {
            log::info!("{}: no ADB handshake: {e}", phone.id());
            return (PhoneMode::Adb, Some(format!("the phone did not answer the ADB handshake ({e})")));
        }
    };
    (mode_from_handshake(&handshake), None)
}

/// Opens the phone in Mi Recovery's MIAssistant mode: the one named by `selector` (serial or
/// `usb:PORT`), or the only ADB phone whose handshake says `sideload`.
pub fn open_mi_recovery(selector: Option<&str>, timeout: Duration) -> Result<MiAssistant, AdbError> {
    let ctx = new_context()?;
    let devices = ctx.devices().map_err(|e| map_usb_error(e, "listing USB devices", None))?;
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for device in devices.iter() {
        let Some((UsbKind::Adb, phone, Some(candidate))) = describe(&device) else { continue };
        if selector.is_some_and(|s| !phone.matches(s)) {
            continue;
        }
        let link = match AdbUsbTransport::open(&candidate, phone.id()) {
            Ok(l) => l,
            Err(e) => {
                seen.push(format!("{}: {e}", phone.id()));
                continue;
            }
        };
        let mut adb = AdbLink::new(Box::new(link));
        match adb.connect_host(timeout) {
            Ok(banner) if banner.kind == "sideload" => found.push((adb, banner, phone)),
            Ok(banner) => seen.push(format!("{} is in ADB mode `{}`", phone.id(), banner.kind)),
            Err(AdbError::AuthRequired) => seen.push(format!("{} is running Android with USB debugging", phone.id())),
            Err(e) => seen.push(format!("{}: {e}", phone.id())),
        }
    }
    match found.len() {
        1 => {
            let (adb, banner, _) = found.remove(0);
            MiAssistant::from_connected(adb, banner, timeout)
        }
        0 => Err(AdbError::Transport(TransportError::Usb {
            message: if seen.is_empty() {
                "no phone in Mi Recovery (MIAssistant) mode found on USB".into()
            } else {
                format!("no phone in Mi Recovery (MIAssistant) mode found on USB ({})", seen.join("; "))
            },
            hint: Some(
                "switch the phone off, hold Volume Up + Power until Mi Recovery opens, choose \"Connect with MIAssistant\", connect a data cable; stop other adb tools (`adb kill-server`); `mi-flash devices` shows the mode"
                    .into(),
            ),
        })),
        n => Err(AdbError::Transport(TransportError::Usb {
            message: format!(
                "{n} phones in Mi Recovery mode are connected: {}",
                found.iter().map(|(_, _, p)| p.id()).collect::<Vec<_>>().join(", ")
            ),
            hint: Some("choose one with -s SERIAL (`mi-flash devices` lists them)".into()),
        })),
    }
}

/// A claimed ADB interface.
pub struct AdbUsbTransport {
    handle: DeviceHandle<Context>,
    interface: u8,
    ep_in: u8,
    ep_out: u8,
    in_packet: usize,
    out_packet: usize,
    name: String,
    pending: Vec<u8>,
    pending_pos: usize,
}

impl AdbUsbTransport {
    fn open(c: &AdbCandidate, name: String) -> Result<AdbUsbTransport, TransportError> {
        let what = format!("opening {name}");
        let handle = c.device.open().map_err(|e| map_usb_error(e, &what, None))?;
        handle
            .claim_interface(c.interface)
            .map_err(|e| map_usb_error(e, &format!("claiming the ADB interface of {name}"), None))?;
        if c.alt_setting != 0 {
            handle
                .set_alternate_setting(c.interface, c.alt_setting)
                .map_err(|e| map_usb_error(e, &format!("selecting the ADB interface of {name}"), None))?;
        }
        Ok(AdbUsbTransport {
            handle,
            interface: c.interface,
            ep_in: c.ep_in,
            ep_out: c.ep_out,
            in_packet: c.in_packet,
            out_packet: c.out_packet,
            name,
            pending: Vec::new(),
            pending_pos: 0,
        })
    }

    fn fail(&self, err: rusb::Error, what: &str, timeout: Option<Duration>, endpoint: u8) -> TransportError {
        if err == rusb::Error::Pipe {
            if let Err(e) = self.handle.clear_halt(endpoint) {
                log::debug!("clearing the halt on endpoint {endpoint:#04x} failed: {e}");
            }
        }
        map_usb_error(err, what, timeout)
    }
}

/// Whether a bulk OUT transfer of `len` bytes must be followed by a zero-length packet.
pub fn needs_zero_length_packet(len: usize, packet: usize) -> bool {
    len > 0 && packet > 0 && len % packet == 0
}

impl Drop for AdbUsbTransport {
    fn drop(&mut self) {
        if let Err(e) = self.handle.release_interface(self.interface) {
            log::debug!("releasing the ADB interface of {} failed: {e}", self.name);
        }
    }
}

impl Transport for AdbUsbTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        let mut sent = 0;
        while sent < data.len() {
            match self.handle.write_bulk(self.ep_out, &data[sent..], WRITE_TIMEOUT) {
                Ok(n) if n > 0 => sent += n,
                Ok(_) => return Err(map_usb_error(rusb::Error::Timeout, "sending to the phone", Some(WRITE_TIMEOUT))),
                Err(e) => return Err(self.fail(e, "sending to the phone", Some(WRITE_TIMEOUT), self.ep_out)),
            }
        }
        if needs_zero_length_packet(data.len(), self.out_packet) {
            self.handle
                .write_bulk(self.ep_out, &[], WRITE_TIMEOUT)
                .map_err(|e| self.fail(e, "ending a transfer", Some(WRITE_TIMEOUT), self.ep_out))?;
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending_pos < self.pending.len() {
            let rest = &self.pending[self.pending_pos..];
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pending_pos += n;
            return Ok(n);
        }
        // libusb treats 0 as "wait forever"; a tiny requested timeout must not turn into that.
        let usb_timeout = timeout.map(|t| t.max(Duration::from_millis(1))).unwrap_or(Duration::ZERO);
        let want = buf.len().min(MAX_READ).div_ceil(self.in_packet) * self.in_packet;
        if want == buf.len() {
            return self
                .handle
                .read_bulk(self.ep_in, buf, usb_timeout)
                .map_err(|e| self.fail(e, "waiting for the phone's answer", timeout, self.ep_in));
        }
        // Whole packets only: a phone filling its last packet would overflow a buffer that
        // ends mid-packet. What the caller cannot take waits for the next read.
        let mut scratch = vec![0u8; want];
        let n = self
            .handle
            .read_bulk(self.ep_in, &mut scratch, usb_timeout)
            .map_err(|e| self.fail(e, "waiting for the phone's answer", timeout, self.ep_in))?;
        let first = n.min(buf.len());
        buf[..first].copy_from_slice(&scratch[..first]);
        scratch.truncate(n);
        self.pending = scratch;
        self.pending_pos = first;
        Ok(first)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_length_packets_follow_whole_packet_transfers_only() {
        assert!(needs_zero_length_packet(512, 512));
        assert!(needs_zero_length_packet(1024, 512));
        assert!(!needs_zero_length_packet(24, 512));
        assert!(!needs_zero_length_packet(0, 512));
        assert!(!needs_zero_length_packet(513, 512));
        assert!(needs_zero_length_packet(64, 64));
    }

    #[test]
    fn phones_are_selected_by_serial_or_port_and_serialise_their_mode() {
        let p = UsbPhone {
            mode: PhoneMode::Edl,
            serial: None,
            product: Some("QUSB__BULK".into()),
            manufacturer: None,
            vendor_id: 0x05c6,
            product_id: 0x9008,
            port_path: "1-2".into(),
            problem: None,
        };
        assert_eq!(p.id(), "usb:1-2");
        assert_eq!(p.usb_id(), "05c6:9008");
        assert!(p.matches("usb:1-2") && p.matches("1-2") && !p.matches("1-3"));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["mode"], "edl");
    }
}
