//! Phone modes and the MiAssistant conversation over the real rusb → libusb → usbdevfs path,
//! under umockdev: `mi-flash devices` reports each mode from emulated USB descriptors
//! (tests/usb/modes/*.umockdev), and `mi-flash recovery` talks to a fake Mi Recovery phone
//! (tests/usb/fake_adb_device.py) bridged to `mi-flash simulate --recovery`.
//!
//! The tests start `umockdev-run` or the fake phone around the `mi-flash` binary itself (never
//! around cargo). Without umockdev, gir1.2-umockdev-1.0 and python3-gi they print "skipped:"
//! and pass, except with CI=true. `scripts/run-rescue-usb-tests.sh` runs them.

mod common;
use common::{require_tool, write_profile};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// libusb busy-waits on umockdev's fake device nodes: one emulated phone at a time.
static USB: Mutex<()> = Mutex::new(());

const PYTHON: &str = "/usr/bin/python3";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mi-flash")
}

fn usb_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/usb")
}

fn skip(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is not installed, but CI=true: install umockdev gir1.2-umockdev-1.0 python3-gi");
    }
    eprintln!("skipped: {what} not installed");
    true
}

fn have_umockdev() -> bool {
    require_tool("umockdev-run").is_some()
}

fn have_python_umockdev() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || !skip("python3-gi with gir1.2-umockdev-1.0 (/usr/bin/python3)")
}

fn clean(mut c: Command) -> Command {
    c.env_remove("ANDROID_SERIAL").env_remove("MI_FLASH_SIM_STORE").env_remove("RUST_LOG").env("LC_ALL", "C");
    c
}

/// How long one emulated run may take (libusb busy-waits under umockdev; CI machines are slow).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs `c` with its output in files, not pipes: a helper process left behind by a crashed
/// fake phone must not keep the test waiting for the end of a pipe. Killed after [`RUN_LIMIT`].
fn run(c: Command) -> Output {
    let mut c = c;
    let out = tempfile::tempfile().expect("temp file");
    let err = tempfile::tempfile().expect("temp file");
    let (out_read, err_read) = (out.try_clone().expect("dup"), err.try_clone().expect("dup"));
    // Its own process group: on a timeout the whole group goes, the fake phone's helpers
    // (a simulator, mi-flash) included.
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("start the emulation");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the emulation") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |mut f: std::fs::File| {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_end(&mut buf)).expect("read the output");
        buf
    };
    Output { status, stdout: read(out_read), stderr: read(err_read) }
}

/// `mi-flash devices --json` with these static device descriptions.
fn devices_with(files: &[&str]) -> Vec<serde_json::Value> {
    let mut c = clean(Command::new("umockdev-run"));
    for f in files {
        c.arg("--device").arg(usb_dir().join("modes").join(format!("{f}.umockdev")));
    }
    c.args(["--", bin(), "devices", "--json"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("devices --json prints JSON");
    assert!(v.get("usb_problem").is_none(), "{v}");
    v["devices"].as_array().cloned().unwrap_or_default()
}

#[test]
fn devices_reports_each_mode_from_descriptors() {
    let _lock = USB.lock().unwrap_or_else(|p| p.into_inner());
    if !have_umockdev() {
        return;
    }
    let expected = [
        ("edl", "edl", "05c6:9008", "usb:1-2"),
        ("mtk-preloader", "mtk-preloader", "0e8d:2000", "usb:1-3"),
        ("mtk-brom", "mtk-brom", "0e8d:0003", "usb:1-4"),
        ("android", "android", "2717:ff40", "f1e2d3c4"),
    ];
    for (file, mode, usb_id, serial) in expected {
        let rows = devices_with(&[file]);
        assert_eq!(rows.len(), 1, "{file}: {rows:?}");
        let r = &rows[0];
        assert_eq!(r["mode"], mode, "{r}");
        assert_eq!(r["usb_id"], usb_id, "{r}");
        assert_eq!(r["serial"], serial, "{r}");
        assert_eq!(r["transport"], "usb");
        assert!(r["next"].as_str().is_some_and(|n| !n.is_empty()), "{r}");
    }
    let rows = devices_with(&["fastboot"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["mode"], "bootloader");
    assert_eq!(rows[0]["serial"], "fb5e7a11");

    // All at once: each phone keeps its own mode.
    let rows = devices_with(&["edl", "mtk-preloader", "mtk-brom", "android", "fastboot"]);
    let mut modes: Vec<&str> = rows.iter().filter_map(|r| r["mode"].as_str()).collect();
    modes.sort();
    assert_eq!(modes, ["android", "bootloader", "edl", "mtk-brom", "mtk-preloader"]);

    // The human output explains EDL instead of offering to flash it.
    let mut c = clean(Command::new("umockdev-run"));
    c.arg("--device").arg(usb_dir().join("modes/edl.umockdev")).args(["--", bin(), "devices"]);
    let out = run(c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("05c6:9008") && text.contains("authorised by Xiaomi") && text.contains("next:"), "{text}");
}

/// Runs `mi-flash ARGS` on the fake ADB phone; returns its output.
fn on_adb_phone(mode: &str, store: &Path, profile: Option<&Path>, extra_devices: &[&str], args: &[&str]) -> Output {
    let mut c = clean(Command::new(PYTHON));
    c.arg(usb_dir().join("fake_adb_device.py")).args(["--mode", mode, "--mi-flash", bin(), "--store"]).arg(store);
    if let Some(p) = profile {
        c.arg("--profile").arg(p);
    }
    for d in extra_devices {
        c.arg("--add-device").arg(usb_dir().join("modes").join(format!("{d}.umockdev")));
    }
    c.arg("--").arg(bin()).args(args);
    run(c)
}

const PROFILE: &str = r#"
product = "gale"
serialno = "sim-gale"
[recovery]
device = "gale_eea_global"
version = "V816.0.3.0.UGPEUXM"
sn = "0x000004324148738f"
codebase = "14"
region = "DE"
language = "de"
"#;

#[test]
fn devices_tells_mi_recovery_from_android_with_debugging() {
    let _lock = USB.lock().unwrap_or_else(|p| p.into_inner());
    if !have_umockdev() || !have_python_umockdev() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = on_adb_phone("recovery", &dir.path().join("s1"), None, &["edl"], &["devices", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["devices"].as_array().cloned().unwrap_or_default();
    let recovery = rows.iter().find(|r| r["usb_id"] == "18d1:d001").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(recovery["mode"], "mi-recovery");
    assert_eq!(recovery["serial"], "adb5e7a1");
    assert!(recovery["next"].as_str().unwrap_or_default().contains("mi-flash recovery info"));
    assert!(rows.iter().any(|r| r["mode"] == "edl"), "{v}");

    let out = on_adb_phone("android", &dir.path().join("s2"), None, &[], &["devices", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["devices"][0]["mode"], "android-adb", "{v}");
    assert_eq!(v["devices"][0]["usb_id"], "2717:ff48", "{v}");
}

#[test]
fn miassistant_info_and_format_data_over_usb() {
    let _lock = USB.lock().unwrap_or_else(|p| p.into_inner());
    if !have_umockdev() || !have_python_umockdev() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("partitions")).unwrap();
    std::fs::write(store.join("partitions/userdata.img"), vec![0x5A; 65536]).unwrap();

    let out = on_adb_phone("recovery", &store, Some(&profile), &[], &["recovery", "info", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["codename"], "gale_eea_global");
    assert_eq!(v["version"], "V816.0.3.0.UGPEUXM");
    assert_eq!(v["serial"], "0x000004324148738f");
    assert_eq!(v["codebase"], "14");
    assert_eq!(v["region"], "DE");
    assert_eq!(v["link"], "usb:adb5e7a1");

    // Without --yes and without a terminal, nothing reaches the phone.
    let out = on_adb_phone("recovery", &store, Some(&profile), &[], &["recovery", "format-data"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(store.join("partitions/userdata.img")).unwrap().len(), 65536);

    let out = on_adb_phone("recovery", &store, Some(&profile), &[], &["recovery", "format-data", "--yes", "--lang", "en"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gale_eea_global (0x000004324148738f)") && text.contains("Format_data_success."), "{text}");
    assert!(std::fs::read(store.join("partitions/userdata.img")).unwrap().is_empty());

    let out = on_adb_phone("recovery", &store, Some(&profile), &[], &["recovery", "reboot", "bootloader", "--lang", "en"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reboot-bootloader."));

    let log = std::fs::read_to_string(store.join("log.jsonl")).unwrap();
    let cmds: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["cmd"].as_str().map(str::to_string))
        .collect();
    assert_eq!(cmds.iter().filter(|c| *c == "format-data:").count(), 1, "{cmds:?}");
    assert_eq!(cmds.last().map(String::as_str), Some("reboot:bootloader"), "{cmds:?}");
}

#[test]
fn recovery_commands_refuse_a_phone_running_android() {
    let _lock = USB.lock().unwrap_or_else(|p| p.into_inner());
    if !have_umockdev() || !have_python_umockdev() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = on_adb_phone("android", dir.path(), None, &[], &["recovery", "info"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("USB debugging") && err.contains("Connect with MIAssistant"), "{err}");
}
