//! USB link to a phone in fastboot mode, over libusb (rusb).
//!
//! Devices are found by their fastboot interface (class ff, subclass 42, protocol 03), whatever
//! the vendor, as AOSP fastboot does: Xiaomi bootloaders show up as `18d1:d00d`, fastbootd and
//! other phones use other IDs. The first bulk IN and the first bulk OUT endpoint of that
//! interface carry the packets.
//!
//! Boundaries: this module moves packets and knows nothing of fastboot commands. It makes the
//! USB-specific promises the protocol needs: writes go out as large bulk transfers (1 MiB by
//! default, never a zero-length packet), reads always offer the device a buffer of at least
//! 256 bytes rounded up to whole USB packets (so a response can never overflow it), and every
//! libusb error becomes a [`TransportError`] that tells the user what to do next.

use std::time::Duration;

use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext};

use super::{Transport, TransportError};

/// Interface class / subclass / protocol of a fastboot interface.
pub const FASTBOOT_INTERFACE: (u8, u8, u8) = (0xff, 0x42, 0x03);

/// Default size of one bulk OUT transfer during a data phase.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;
/// Smallest accepted chunk size: the size AOSP fastboot falls back to when usbfs is short of
/// memory. Anything smaller only makes flashing slower.
pub const MIN_CHUNK_SIZE: usize = 16 * 1024;
/// Largest accepted chunk size: Linux usbfs allows 16 MiB of transfers in flight in total.
pub const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;
/// How long one bulk OUT transfer may take before the phone counts as unresponsive.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Responses are at most 256 bytes; a read never offers less than this.
const MIN_RESPONSE_READ: usize = 256;
/// Largest single bulk IN transfer (data-phase reads, e.g. `upload`).
const MAX_READ: usize = 1024 * 1024;
/// Timeout for the small control requests made while listing devices.
const DESCRIPTOR_TIMEOUT: Duration = Duration::from_millis(500);

/// One phone in fastboot mode, as found on the USB bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDeviceInfo {
    /// The USB serial number (what `fastboot devices` prints), if the device has one.
    pub serial: Option<String>,
    /// The USB product string (`Android` for most Xiaomi bootloaders).
    pub product: Option<String>,
    /// The USB manufacturer string.
    pub manufacturer: Option<String>,
    pub vendor_id: u16,
    pub product_id: u16,
    pub bus: u8,
    pub address: u8,
    /// Physical port, Linux sysfs style: `BUS-PORT[.PORT...]`, e.g. `1-4.2`. Stays the same
    /// across re-plugs into the same port, unlike the address.
    pub port_path: String,
    /// The fastboot interface number.
    pub interface: u8,
    /// Why mi-flash cannot open this device (permissions, driver), with the next step.
    /// `None` when it can be opened.
    pub problem: Option<String>,
}

impl UsbDeviceInfo {
    /// The device in `-s` syntax: `usb:SERIAL`, or `usb:PORT` for a device without a serial.
    pub fn id(&self) -> String {
        match &self.serial {
            Some(s) => format!("usb:{s}"),
            None => format!("usb:{}", self.port_path),
        }
    }

    /// Whether `selector` names this device: its serial (with or without `usb:`) or its port
    /// path as `usb:BUS-PORT`.
    pub fn matches(&self, selector: &str) -> bool {
        let bare = selector.strip_prefix("usb:").unwrap_or(selector);
        self.serial.as_deref() == Some(bare) || bare == self.port_path
    }
}

/// Tunables of a USB link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbOptions {
    /// Bytes per bulk OUT transfer, between [`MIN_CHUNK_SIZE`] and [`MAX_CHUNK_SIZE`].
    pub chunk_size: usize,
    /// Timeout of one bulk OUT transfer.
    pub write_timeout: Duration,
}

impl Default for UsbOptions {
    fn default() -> Self {
        UsbOptions { chunk_size: DEFAULT_CHUNK_SIZE, write_timeout: DEFAULT_WRITE_TIMEOUT }
    }
}

impl UsbOptions {
    /// These options with another chunk size, checked against the allowed range.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Result<Self, TransportError> {
        self.chunk_size = check_chunk_size(chunk_size).map_err(TransportError::Protocol)?;
        Ok(self)
    }
}

/// Parses a chunk size as given on the command line: bytes, or with a `K`/`KiB`/`M`/`MiB`
/// suffix (`256K`, `1M`, `524288`), and checks the allowed range. Usable as a clap
/// `value_parser`.
pub fn parse_chunk_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size: use bytes or K/M, e.g. 256K or 1M"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("unknown size unit `{other}` in `{text}`: use K or M, e.g. 256K or 1M")),
    };
    let size = number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is far too large for a USB chunk"))?;
    check_chunk_size(size)
}

fn check_chunk_size(size: usize) -> Result<usize, String> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(format!(
            "USB chunk size {size} bytes is out of range: pick between {}K and {}M (default {}M)",
            MIN_CHUNK_SIZE / 1024,
            MAX_CHUNK_SIZE / (1024 * 1024),
            DEFAULT_CHUNK_SIZE / (1024 * 1024)
        ))
    }
}

/// The libusb version in use, for `mi-flash doctor` and bug reports.
pub fn libusb_version() -> String {
    let v = rusb::version();
    format!("{}.{}.{}.{}", v.major(), v.minor(), v.micro(), v.nano())
}

/// Every USB device with a fastboot interface, sorted by port. Devices mi-flash cannot open
/// are listed too, with [`UsbDeviceInfo::problem`] saying why.
pub fn list_fastboot_devices() -> Result<Vec<UsbDeviceInfo>, TransportError> {
    let ctx = new_context()?;
    Ok(scan(&ctx)?.into_iter().map(|c| c.info).collect())
}

/// A claimed fastboot interface: the [`Transport`] to a phone over USB.
pub struct UsbTransport {
    handle: DeviceHandle<Context>,
    info: UsbDeviceInfo,
    ep_in: u8,
    ep_out: u8,
    /// wMaxPacketSize of the IN endpoint: reads are whole multiples of it.
    in_packet: usize,
    /// Smallest read: 256 bytes rounded up to whole packets.
    min_read: usize,
    options: UsbOptions,
    /// Current OUT transfer size; halved (down to [`MIN_CHUNK_SIZE`]) when usbfs runs out of
    /// memory, as AOSP fastboot does.
    chunk: usize,
    /// A packet that did not fit into the caller's buffer, handed out by the next reads.
    pending: Vec<u8>,
    pending_pos: usize,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for UsbTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsbTransport")
            .field("info", &self.info)
            .field("ep_in", &self.ep_in)
            .field("ep_out", &self.ep_out)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

impl UsbTransport {
    /// Opens the phone whose serial (or `usb:PORT`) is `serial`, or the only phone in fastboot
    /// mode when `serial` is `None`, and claims its fastboot interface.
    pub fn open(serial: Option<&str>) -> Result<UsbTransport, TransportError> {
        UsbTransport::open_with(serial, UsbOptions::default())
    }

    /// [`UsbTransport::open`] with explicit options (chunk size, write timeout).
    pub fn open_with(serial: Option<&str>, options: UsbOptions) -> Result<UsbTransport, TransportError> {
        check_chunk_size(options.chunk_size).map_err(TransportError::Protocol)?;
        let ctx = new_context()?;
        let candidates = scan(&ctx)?;
        let known = || candidates.iter().map(|c| c.info.id()).collect::<Vec<_>>().join(", ");
        let chosen = match serial {
            Some(sel) => match candidates.iter().position(|c| c.info.matches(sel)) {
                Some(i) => i,
                None if candidates.is_empty() => return Err(no_device_error(Some(sel))),
                None => {
                    return Err(TransportError::Usb {
                        message: format!("no phone in fastboot mode with serial `{sel}` on USB (found: {})", known()),
                        hint: Some("check the serial with `mi-flash devices`".into()),
                    })
                }
            },
            None => match candidates.len() {
                0 => return Err(no_device_error(None)),
                1 => 0,
                n => {
                    return Err(TransportError::Usb {
                        message: format!("{n} phones in fastboot mode are connected: {}", known()),
                        hint: Some("pick one by its serial (`mi-flash devices` lists them)".into()),
                    })
                }
            },
        };
        let mut candidate = candidates.into_iter().nth(chosen).ok_or_else(|| no_device_error(serial))?;
        let what = format!("opening {}", candidate.info.id());
        let handle = candidate.device.open().map_err(|e| map_usb_error(e, &what, None))?;
        let interface = candidate.info.interface;
        handle
            .claim_interface(interface)
            .map_err(|e| map_usb_error(e, &format!("claiming the fastboot interface of {}", candidate.info.id()), None))?;
        if candidate.alt_setting != 0 {
            handle
                .set_alternate_setting(interface, candidate.alt_setting)
                .map_err(|e| map_usb_error(e, &what, None))?;
        }
        if candidate.info.serial.is_none() {
            candidate.info.serial = read_string(&handle, candidate.serial_index);
        }
        let in_packet = candidate.in_packet.max(1);
        let min_read = MIN_RESPONSE_READ.div_ceil(in_packet) * in_packet;
        log::debug!(
            "opened {} (bus {} address {}), interface {} IN {:#04x} OUT {:#04x}, IN packets of {} bytes",
            candidate.info.id(),
            candidate.info.bus,
            candidate.info.address,
            interface,
            candidate.ep_in,
            candidate.ep_out,
            in_packet
        );
        Ok(UsbTransport {
            handle,
            info: candidate.info,
            ep_in: candidate.ep_in,
            ep_out: candidate.ep_out,
            in_packet,
            min_read,
            chunk: options.chunk_size,
            options,
            pending: Vec::new(),
            pending_pos: 0,
            scratch: Vec::new(),
        })
    }

    /// What was found about the opened device.
    pub fn info(&self) -> &UsbDeviceInfo {
        &self.info
    }

    /// Changes the size of bulk OUT transfers (e.g. from `--usb-chunk-size`).
    pub fn set_chunk_size(&mut self, chunk_size: usize) -> Result<(), TransportError> {
        self.chunk = check_chunk_size(chunk_size).map_err(TransportError::Protocol)?;
        self.options.chunk_size = self.chunk;
        Ok(())
    }

    /// Current size of one bulk OUT transfer.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    fn fail(&self, err: rusb::Error, what: &str, timeout: Option<Duration>, endpoint: u8) -> TransportError {
        if err == rusb::Error::Pipe {
            // Un-stall the endpoint so that a retry after re-plugging into another port, or the
            // next command, is not refused by the host side.
            if let Err(e) = self.handle.clear_halt(endpoint) {
                log::debug!("clearing the halt on endpoint {endpoint:#04x} failed: {e}");
            }
        }
        map_usb_error(err, what, timeout)
    }

    fn take_pending(&mut self, buf: &mut [u8]) -> usize {
        let rest = &self.pending[self.pending_pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pending_pos += n;
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
        }
        n
    }
}

impl Drop for UsbTransport {
    fn drop(&mut self) {
        if let Err(e) = self.handle.release_interface(self.info.interface) {
            log::debug!("releasing the fastboot interface of {} failed: {e}", self.info.id());
        }
    }
}

impl Transport for UsbTransport {
    fn write(&mut self, data: &[u8]) -> Result<(), TransportError> {
        // An empty write would be a zero-length packet, which freezes some bootloaders; there
        // is nothing to send anyway.
        let mut sent = 0;
        while sent < data.len() {
            let end = data.len().min(sent + self.chunk);
            match self.handle.write_bulk(self.ep_out, &data[sent..end], self.options.write_timeout) {
                // libusb reports a transfer that timed out after moving some bytes as a short
                // success: continue with the rest.
                Ok(n) if n > 0 => sent += n,
                Ok(_) => return Err(map_usb_error(rusb::Error::Timeout, "sending data", Some(self.options.write_timeout))),
                Err(rusb::Error::NoMem) if self.chunk > MIN_CHUNK_SIZE => {
                    self.chunk = (self.chunk / 2).max(MIN_CHUNK_SIZE);
                    log::warn!("USB transfer memory is short; sending {} KiB per transfer from now on", self.chunk / 1024);
                }
                Err(e) => {
                    let what = if sent == 0 && data.len() <= 64 { "sending a command" } else { "sending data" };
                    return Err(self.fail(e, what, Some(self.options.write_timeout), self.ep_out));
                }
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending_pos < self.pending.len() {
            return Ok(self.take_pending(buf));
        }
        // libusb treats 0 as "wait forever"; a tiny requested timeout must not turn into that.
        let usb_timeout = match timeout {
            None => Duration::ZERO,
            Some(t) => t.max(Duration::from_millis(1)),
        };
        if buf.len() >= self.min_read {
            // Whole packets only: a device filling its last packet would overflow a buffer
            // that ends mid-packet.
            let want = (buf.len().min(MAX_READ) / self.in_packet) * self.in_packet;
            return self
                .handle
                .read_bulk(self.ep_in, &mut buf[..want], usb_timeout)
                .map_err(|e| self.fail(e, "waiting for the phone's answer", timeout, self.ep_in));
        }
        // The caller's buffer is small: read a full response into our own buffer and hand it
        // out piece by piece.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(self.min_read, 0);
        let result = self.handle.read_bulk(self.ep_in, &mut scratch, usb_timeout);
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                self.scratch = scratch;
                return Err(self.fail(e, "waiting for the phone's answer", timeout, self.ep_in));
            }
        };
        let first = n.min(buf.len());
        buf[..first].copy_from_slice(&scratch[..first]);
        self.pending.clear();
        self.pending.extend_from_slice(&scratch[first..n]);
        self.pending_pos = 0;
        self.scratch = scratch;
        Ok(first)
    }

    fn describe(&self) -> String {
        self.info.id()
    }

    fn max_write_chunk(&self) -> usize {
        self.chunk
    }
}

/// A device with a fastboot interface, with what is needed to open it.
struct Candidate {
    device: Device<Context>,
    info: UsbDeviceInfo,
    alt_setting: u8,
    ep_in: u8,
    ep_out: u8,
    in_packet: usize,
    serial_index: Option<u8>,
}

pub(crate) fn new_context() -> Result<Context, TransportError> {
    Context::new().map_err(|e| TransportError::Usb {
        message: format!("cannot start the USB library (libusb): {e}"),
        hint: Some(if cfg!(target_os = "linux") {
            "check that /dev/bus/usb exists (inside a container, pass the USB bus through, e.g. `--device /dev/bus/usb`)".into()
        } else {
            "reconnect the phone and run the command again; if it persists, run `mi-flash doctor`".into()
        }),
    })
}

fn no_device_error(serial: Option<&str>) -> TransportError {
    let message = match serial {
        Some(s) => format!("no phone in fastboot mode with serial `{s}` on USB"),
        None => "no phone in fastboot mode found on USB".to_string(),
    };
    TransportError::Usb {
        message,
        hint: Some(
            "switch the phone off, hold Volume Down + Power until FASTBOOT appears, connect it with a data cable, \
             then run `mi-flash devices`"
                .into(),
        ),
    }
}

fn scan(ctx: &Context) -> Result<Vec<Candidate>, TransportError> {
    let devices = ctx.devices().map_err(|e| map_usb_error(e, "listing USB devices", None))?;
    let mut found: Vec<Candidate> = devices.iter().filter_map(|d| fastboot_candidate(&d)).collect();
    found.sort_by(|a, b| a.info.port_path.cmp(&b.info.port_path));
    Ok(found)
}

/// The fastboot interface of `device`, if it has one. Devices whose descriptors cannot be read
/// are skipped: they are not phones in fastboot mode as far as we can tell.
fn fastboot_candidate(device: &Device<Context>) -> Option<Candidate> {
    let desc = device.device_descriptor().ok()?;
    let config = device.active_config_descriptor().or_else(|_| device.config_descriptor(0)).ok()?;
    let (interface, alt_setting, ep_in, ep_out, in_packet) = config.interfaces().find_map(|intf| {
        intf.descriptors().find_map(|alt| {
            if (alt.class_code(), alt.sub_class_code(), alt.protocol_code()) != FASTBOOT_INTERFACE {
                return None;
            }
            let bulk = |dir: Direction| {
                alt.endpoint_descriptors()
                    .find(|ep| ep.direction() == dir && ep.transfer_type() == TransferType::Bulk)
            };
            let ep_in = bulk(Direction::In)?;
            let ep_out = bulk(Direction::Out)?;
            Some((
                alt.interface_number(),
                alt.setting_number(),
                ep_in.address(),
                ep_out.address(),
                usize::from(ep_in.max_packet_size() & 0x7ff),
            ))
        })
    })?;
    let port_path = port_path(device);
    let mut info = UsbDeviceInfo {
        serial: None,
        product: None,
        manufacturer: None,
        vendor_id: desc.vendor_id(),
        product_id: desc.product_id(),
        bus: device.bus_number(),
        address: device.address(),
        port_path,
        interface,
        problem: None,
    };
    // Like AOSP fastboot, prefer sysfs on Linux: it needs no permission on the device node and
    // sends no request to a bootloader that may be busy flashing.
    if cfg!(target_os = "linux") {
        let attr = |name: &str| read_sysfs_attribute(&info.port_path, name);
        info.serial = attr("serial");
        info.product = attr("product");
        info.manufacturer = attr("manufacturer");
    }
    let serial_index = desc.serial_number_string_index();
    match device.open() {
        Ok(handle) => {
            if info.serial.is_none() {
                info.serial = read_string(&handle, serial_index);
            }
            if info.product.is_none() {
                info.product = read_string(&handle, desc.product_string_index());
            }
            if info.manufacturer.is_none() {
                info.manufacturer = read_string(&handle, desc.manufacturer_string_index());
            }
        }
        Err(e) => {
            let err = map_usb_error(e, "opening the device", None);
            info.problem = Some(match err.hint() {
                Some(hint) => format!("{err}: {hint}"),
                None => err.to_string(),
            });
        }
    }
    Some(Candidate { device: device.clone(), info, alt_setting, ep_in, ep_out, in_packet, serial_index })
}

/// Physical port, Linux sysfs style (`BUS-PORT[.PORT...]`).
pub(crate) fn port_path(device: &Device<Context>) -> String {
    match device.port_numbers() {
        Ok(ports) if !ports.is_empty() => format!(
            "{}-{}",
            device.bus_number(),
            ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(".")
        ),
        _ => format!("{}-0{}", device.bus_number(), device.address()),
    }
}

pub(crate) fn read_sysfs_attribute(port_path: &str, name: &str) -> Option<String> {
    let path = format!("/sys/bus/usb/devices/{port_path}/{name}");
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub(crate) fn read_string(handle: &DeviceHandle<Context>, index: Option<u8>) -> Option<String> {
    let index = index?;
    let language = *handle.read_languages(DESCRIPTOR_TIMEOUT).ok()?.first()?;
    let text = handle.read_string_descriptor(language, index, DESCRIPTOR_TIMEOUT).ok()?;
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn access_hint() -> String {
    if cfg!(target_os = "linux") {
        "install the udev rules from udev/ (see docs/usb.md) and re-plug the phone; `mi-flash doctor` checks this".into()
    } else if cfg!(target_os = "windows") {
        "install the WinUSB driver for the phone's fastboot interface (Zadig, or Google's USB driver; see docs/usb.md) and re-plug the phone".into()
    } else {
        "re-plug the phone and run the command again; `mi-flash doctor` checks USB access".into()
    }
}

const USB3_HINT: &str = "this often happens on USB 3 ports, especially with AMD (Ryzen) USB controllers: \
plug the phone into a USB 2.0 port or through a USB 2.0 hub, use a short data cable, \
reboot the phone to fastboot and run the command again";

/// Turns a libusb error during `what` into a [`TransportError`] with the user's next step.
/// `timeout` is the timeout the failed transfer had, if any.
pub fn map_usb_error(err: rusb::Error, what: &str, timeout: Option<Duration>) -> TransportError {
    let usb = |message: String, hint: Option<String>| TransportError::Usb { message, hint };
    match err {
        rusb::Error::Timeout => TransportError::Timeout(timeout.unwrap_or_default()),
        rusb::Error::NoDevice => TransportError::Closed,
        rusb::Error::Access => usb(format!("permission denied while {what}"), Some(access_hint())),
        rusb::Error::Busy => usb(
            format!("the phone is in use by another program ({what})"),
            Some("another program holds the phone: close other fastboot/adb tools, MiFlash, Android Studio, then run the command again".into()),
        ),
        rusb::Error::Pipe => usb(format!("the phone stalled the USB transfer while {what}"), Some(USB3_HINT.into())),
        rusb::Error::Overflow => usb(
            format!("the phone sent more data than expected while {what} (USB overflow)"),
            Some("re-plug the phone and run the command again; if it happens again, try another cable or a USB 2.0 port".into()),
        ),
        rusb::Error::Io => usb(format!("USB input/output error while {what}"), Some(USB3_HINT.into())),
        rusb::Error::NotSupported | rusb::Error::NotFound if cfg!(target_os = "windows") => usb(
            format!("Windows has no usable driver for the phone ({what})"),
            Some(access_hint()),
        ),
        rusb::Error::NotFound => usb(
            format!("the phone's fastboot interface disappeared while {what}"),
            Some("re-plug the phone, check it still shows FASTBOOT, and run the command again".into()),
        ),
        rusb::Error::NoMem => usb(
            format!("the system ran out of memory for USB transfers while {what}"),
            Some("use smaller USB transfers, e.g. --usb-chunk-size 256K".into()),
        ),
        other => usb(format!("{other} while {what}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(serial: Option<&str>) -> UsbDeviceInfo {
        UsbDeviceInfo {
            serial: serial.map(str::to_string),
            product: None,
            manufacturer: None,
            vendor_id: 0x18d1,
            product_id: 0xd00d,
            bus: 1,
            address: 7,
            port_path: "1-4.2".into(),
            interface: 0,
            problem: None,
        }
    }

    #[test]
    fn chunk_sizes_parse_with_units_and_stay_in_range() {
        assert_eq!(parse_chunk_size("1M"), Ok(1024 * 1024));
        assert_eq!(parse_chunk_size("256K"), Ok(256 * 1024));
        assert_eq!(parse_chunk_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_chunk_size("524288"), Ok(524288));
        assert!(parse_chunk_size("4K").unwrap_err().contains("out of range"));
        assert!(parse_chunk_size("64M").unwrap_err().contains("out of range"));
        assert!(parse_chunk_size("1G").unwrap_err().contains("unknown size unit"));
        assert!(parse_chunk_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_chunk_size("99999999999999999999M").is_err());
        assert!(UsbOptions::default().with_chunk_size(1024).is_err());
        assert_eq!(UsbOptions::default().with_chunk_size(MIN_CHUNK_SIZE).map(|o| o.chunk_size).ok(), Some(MIN_CHUNK_SIZE));
    }

    #[test]
    fn devices_are_selected_by_serial_or_port() {
        let d = info(Some("3c1a7f2e"));
        assert!(d.matches("3c1a7f2e"));
        assert!(d.matches("usb:3c1a7f2e"));
        assert!(d.matches("usb:1-4.2"));
        assert!(!d.matches("3c1a7f2"));
        assert_eq!(d.id(), "usb:3c1a7f2e");
        assert_eq!(info(None).id(), "usb:1-4.2");
    }

    #[test]
    fn errors_carry_the_next_step() {
        let e = map_usb_error(rusb::Error::Access, "opening usb:x", None);
        assert!(e.to_string().contains("permission denied"));
        if cfg!(target_os = "linux") {
            let hint = e.hint().unwrap_or_default();
            assert!(hint.contains("udev/") && hint.contains("mi-flash doctor"), "{hint}");
        }
        let e = map_usb_error(rusb::Error::Busy, "claiming", None);
        assert!(e.hint().unwrap_or_default().contains("MiFlash"));
        let e = map_usb_error(rusb::Error::Pipe, "sending a command", None);
        assert!(e.hint().unwrap_or_default().contains("USB 2.0"));
        assert!(e.hint().unwrap_or_default().contains("AMD"));
        assert!(matches!(
            map_usb_error(rusb::Error::Timeout, "x", Some(Duration::from_millis(300))),
            TransportError::Timeout(d) if d == Duration::from_millis(300)
        ));
        let gone = map_usb_error(rusb::Error::NoDevice, "x", None);
        assert!(gone.is_disconnect());
        assert!(map_usb_error(rusb::Error::Overflow, "x", None).to_string().contains("overflow"));
    }
}
