//! USB transport tests through the real rusb → libusb → usbdevfs path, against the fake USB
//! phone of tests/usb/fake_device.py (umockdev), which bridges to `mi-flash simulate`.
//!
//! Run with `scripts/run-usb-tests.sh`. Under a plain `cargo test` (no UMOCKDEV_DIR) every test
//! prints "skipped: not under umockdev" and passes, unless MI_FLASH_REQUIRE_UMOCKDEV=1.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mi_flash::fastboot::FastbootClient;
use mi_flash::transport::usb::{list_fastboot_devices, UsbOptions, UsbTransport};
use mi_flash::transport::{Transport, TransportError};

/// The fake phone keeps one URB queue: tests must not talk to it at the same time.
static PHONE: Mutex<()> = Mutex::new(());

const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

struct FakePhone {
    serial: String,
    store: PathBuf,
    urb_log: PathBuf,
    _lock: MutexGuard<'static, ()>,
}

fn fake_phone() -> Option<FakePhone> {
    let lock = PHONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if std::env::var_os("UMOCKDEV_DIR").is_none() {
        if std::env::var("MI_FLASH_REQUIRE_UMOCKDEV").as_deref() == Ok("1") {
            panic!("MI_FLASH_REQUIRE_UMOCKDEV=1 but UMOCKDEV_DIR is unset: run through scripts/run-usb-tests.sh");
        }
        eprintln!("skipped: not under umockdev");
        return None;
    }
    let serial = std::env::var("MI_FLASH_FAKE_USB_SERIAL").expect("fake_device.py sets MI_FLASH_FAKE_USB_SERIAL");
    let store = std::env::var_os("MI_FLASH_FAKE_USB_STORE").expect("fake_device.py sets MI_FLASH_FAKE_USB_STORE");
    let urb_log = std::env::var_os("MI_FLASH_FAKE_USB_URB_LOG").expect("fake_device.py sets MI_FLASH_FAKE_USB_URB_LOG");
    Some(FakePhone { serial, store: PathBuf::from(store), urb_log: PathBuf::from(urb_log), _lock: lock })
}

impl FakePhone {
    /// Bulk URBs the fake phone completed so far, one `OUT len status` / `IN buflen actual
    /// status` line each.
    fn urbs(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.urb_log)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.urb_log.display()));
        text.lines().map(str::to_string).collect()
    }
}

/// One response packet as text.
fn read_packet(t: &mut UsbTransport) -> Result<String, TransportError> {
    let mut buf = [0u8; 256];
    let n = t.read(&mut buf, Some(ANSWER_TIMEOUT))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Sends `cmd` and returns the final response (OKAY/FAIL/DATA...), skipping INFO/TEXT lines.
fn command(t: &mut UsbTransport, cmd: &str) -> String {
    t.write(cmd.as_bytes()).unwrap_or_else(|e| panic!("sending {cmd:?}: {e}"));
    final_response(t, cmd)
}

fn final_response(t: &mut UsbTransport, what: &str) -> String {
    loop {
        let r = read_packet(t).unwrap_or_else(|e| panic!("answer to {what:?}: {e}"));
        if !(r.starts_with("INFO") || r.starts_with("TEXT")) {
            return r;
        }
    }
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn partition_under_test() -> String {
    std::env::var("MI_FLASH_USB_TEST_PARTITION").unwrap_or_else(|_| "boot".into())
}

#[test]
fn lists_the_fake_phone_with_serial_and_product() {
    let Some(phone) = fake_phone() else { return };
    let devices = list_fastboot_devices().expect("listing USB devices");
    assert_eq!(devices.len(), 1, "{devices:#?}");
    let d = &devices[0];
    assert_eq!(d.serial.as_deref(), Some(phone.serial.as_str()));
    assert_eq!((d.vendor_id, d.product_id), (0x18d1, 0xd00d));
    assert_eq!(d.product.as_deref(), Some("Android"));
    assert_eq!(d.manufacturer.as_deref(), Some("Xiaomi"));
    assert_eq!((d.bus, d.address, d.interface), (1, 2, 0));
    assert_eq!(d.port_path, "1-1");
    assert_eq!(d.problem, None);
    assert_eq!(d.id(), format!("usb:{}", phone.serial));
}

#[test]
fn open_selects_by_serial_and_rejects_unknown_serials() {
    let Some(phone) = fake_phone() else { return };
    let t = UsbTransport::open(Some(&phone.serial)).expect("open by serial");
    assert_eq!(t.describe(), format!("usb:{}", phone.serial));
    assert_eq!(t.info().serial.as_deref(), Some(phone.serial.as_str()));
    drop(t);
    let t = UsbTransport::open(None).expect("open the only phone");
    assert_eq!(t.info().port_path, "1-1");
    drop(t);
    let t = UsbTransport::open(Some("usb:1-1")).expect("open by port");
    drop(t);
    let err = UsbTransport::open(Some("not-a-phone")).expect_err("unknown serial");
    let text = err.to_string();
    assert!(text.contains("not-a-phone") && text.contains(&phone.serial), "{text}");
    assert!(err.hint().is_some());
}

#[test]
fn getvar_product_round_trip() {
    let Some(phone) = fake_phone() else { return };
    let mut t = UsbTransport::open(Some(&phone.serial)).expect("open");
    let before = phone.urbs().len();
    let r = command(&mut t, "getvar:product");
    // One OUT transfer with the command; one IN transfer offering at least 256 bytes in whole
    // 512-byte packets.
    let urbs = phone.urbs();
    assert_eq!(urbs[before], "OUT 14 0");
    assert_eq!(urbs[before + 1], format!("IN 512 {} 0", r.len()));
    let product = r.strip_prefix("OKAY").unwrap_or_else(|| panic!("getvar:product answered {r:?}"));
    assert!(!product.is_empty(), "empty product name");
    if let Ok(expected) = std::env::var("MI_FLASH_USB_TEST_PRODUCT") {
        assert_eq!(product, expected);
    }
}

#[test]
fn small_read_buffers_get_the_response_in_pieces() {
    let Some(phone) = fake_phone() else { return };
    let mut t = UsbTransport::open(Some(&phone.serial)).expect("open");
    let expected = command(&mut t, "getvar:product");
    assert!(expected.starts_with("OKAY"), "{expected:?}");
    t.write(b"getvar:product").expect("send");
    // The transport still offers libusb a whole-packet buffer and keeps the rest for us.
    let mut whole = Vec::new();
    let mut piece = [0u8; 3];
    while whole.len() < expected.len() {
        let n = t.read(&mut piece, Some(ANSWER_TIMEOUT)).expect("read a piece");
        assert!(n > 0 && n <= 3);
        whole.extend_from_slice(&piece[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&whole), expected);
    // Nothing of that answer may leak into the next one.
    assert_eq!(command(&mut t, "getvar:product"), expected);
}

/// download + flash of `data` over `t`, then the simulator's store must hold exactly `data`,
/// and the data must have gone out as bulk transfers of the transport's chunk size.
fn flash_and_check_store(t: &mut UsbTransport, phone: &FakePhone, data: &[u8]) {
    let partition = partition_under_test();
    let r = command(t, &format!("download:{:08x}", data.len()));
    assert_eq!(r, format!("DATA{:08x}", data.len()));
    let before = phone.urbs().len();
    // One call: the transport cuts it into bulk transfers of its chunk size.
    t.write(data).expect("data phase");
    let chunk = t.max_write_chunk();
    let expected: Vec<String> = data.chunks(chunk).map(|c| format!("OUT {} 0", c.len())).collect();
    assert_eq!(phone.urbs()[before..], expected[..], "bulk OUT transfers of the data phase");
    let r = final_response(t, "download data");
    assert!(r.starts_with("OKAY"), "download answered {r:?}");
    let r = command(t, &format!("flash:{partition}"));
    assert!(r.starts_with("OKAY"), "flash:{partition} answered {r:?}");
    let stored_path = phone.store.join("partitions").join(format!("{partition}.img"));
    let stored = std::fs::read(&stored_path).unwrap_or_else(|e| panic!("reading {}: {e}", stored_path.display()));
    assert_eq!(stored.len(), data.len());
    assert!(stored == data, "{} differs from the bytes sent over USB", stored_path.display());
}

#[test]
fn download_and_flash_2_mib_lands_in_the_store() {
    let Some(phone) = fake_phone() else { return };
    let mut t = UsbTransport::open(Some(&phone.serial)).expect("open");
    assert_eq!(t.max_write_chunk(), 1024 * 1024);
    flash_and_check_store(&mut t, &phone, &pseudo_random(2 * 1024 * 1024 + 4096 + 3, 0x5eed_1234_abcd_0001));
}

#[test]
fn smaller_chunks_carry_the_same_bytes() {
    let Some(phone) = fake_phone() else { return };
    let options = UsbOptions::default().with_chunk_size(256 * 1024).expect("valid chunk size");
    let mut t = UsbTransport::open_with(Some(&phone.serial), options).expect("open");
    assert_eq!(t.max_write_chunk(), 256 * 1024);
    flash_and_check_store(&mut t, &phone, &pseudo_random(1024 * 1024 + 17, 0x0dd_c0ffee));
}

#[test]
fn fastboot_client_over_usb_downloads_and_reads_back() {
    let Some(phone) = fake_phone() else { return };
    let t = UsbTransport::open(Some(&phone.serial)).expect("open");
    let mut client = FastbootClient::new(Box::new(t)).with_timeouts(ANSWER_TIMEOUT, ANSWER_TIMEOUT);
    assert_eq!(client.describe(), format!("usb:{}", phone.serial));
    let product = client.getvar("product").expect("getvar product");
    if let Ok(expected) = std::env::var("MI_FLASH_USB_TEST_PRODUCT") {
        assert_eq!(product, expected);
    }
    // 1.5 MiB + 100: the upload's data phase ends with a short read smaller than a packet.
    let data = pseudo_random(3 * 512 * 1024 + 100, 0xfeed_beef);
    client.download(&data).expect("download");
    let back = client.upload().expect("upload of the staged data");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "uploaded bytes differ from the downloaded ones");
    // The session goes on normally after the data phases.
    assert_eq!(client.getvar("product").expect("getvar after upload"), product);
}

#[test]
fn stall_on_a_command_is_reported_with_usb_port_advice() {
    let Some(phone) = fake_phone() else { return };
    let mut t = UsbTransport::open(Some(&phone.serial)).expect("open");
    let err = t.write(b"oem fake-usb stall-out").expect_err("the fake phone stalls this write");
    assert!(matches!(err, TransportError::Usb { .. }), "{err:?}");
    assert!(err.to_string().contains("stalled"), "{err}");
    let hint = err.hint().unwrap_or_default();
    assert!(hint.contains("USB 2.0") && hint.contains("AMD"), "{hint}");
    // The halt is cleared: the link keeps working.
    assert!(command(&mut t, "getvar:product").starts_with("OKAY"));

    t.write(b"oem fake-usb stall-in").expect("accepted");
    let err = read_packet(&mut t).expect_err("the fake phone stalls this read");
    assert!(err.to_string().contains("stalled") && err.hint().unwrap_or_default().contains("USB 2.0"), "{err}");
    assert!(command(&mut t, "getvar:product").starts_with("OKAY"));
}

#[test]
fn silent_phone_times_out_and_the_link_recovers() {
    let Some(phone) = fake_phone() else { return };
    let mut t = UsbTransport::open(Some(&phone.serial)).expect("open");
    t.write(b"oem fake-usb hang").expect("accepted");
    // Short timeout: libusb busy-waits on umockdev's fake device node.
    let timeout = Duration::from_millis(300);
    let mut buf = [0u8; 256];
    let started = std::time::Instant::now();
    let err = t.read(&mut buf, Some(timeout)).expect_err("nothing to read");
    assert!(matches!(err, TransportError::Timeout(d) if d == timeout), "{err:?}");
    assert!(started.elapsed() >= timeout);
    assert!(err.hint().is_some());
    // The cancelled read must not swallow the next answer.
    assert!(command(&mut t, "getvar:product").starts_with("OKAY"));
}

#[test]
fn unplugged_phone_is_a_closed_link() {
    let Some(phone) = fake_phone() else { return };
    let mut t = UsbTransport::open(Some(&phone.serial)).expect("open");
    t.write(b"oem fake-usb unplug").expect("accepted");
    let err = read_packet(&mut t).expect_err("device gone");
    assert!(err.is_disconnect(), "{err:?}");
    assert!(err.hint().unwrap_or_default().contains("cable"));
}
