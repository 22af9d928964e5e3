//! The MiAssistant conversation against the simulated Mi Recovery: over TCP (a
//! `mi-flash simulate --recovery` process) and in-process (`RecoveryHandle`), through the
//! library and through `mi-flash recovery`. Faults end in clear errors, format-data lands in
//! the store and log, and format-data without confirmation is refused.

mod common;
use common::*;
use mi_flash::rescue::adb::AdbError;
use mi_flash::rescue::miassistant::{FormatOutcome, MiAssistant, RebootTarget};
use mi_flash::rescue::tcp::AdbTcpTransport;
use mi_flash::sim::recovery::{RecoveryHandle, SimRecovery};
use mi_flash::sim::{self, SimOptions};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const PROFILE: &str = r#"
product = "gale"
serialno = "sim-gale"
[recovery]
device = "gale_global"
version = "OS1.0.12.0.UGPMIXM"
sn = "0x000004324148738f"
codebase = "14"
branch = "F"
language = "pt"
region = "PT"
romzone = 2
"#;

fn tcp_phone(sim: &Sim) -> MiAssistant {
    let link = AdbTcpTransport::connect("127.0.0.1", sim.port, Duration::from_secs(5)).expect("connect");
    MiAssistant::connect(Box::new(link), Duration::from_secs(5)).expect("handshake")
}

fn inproc(profile: &str, store: &std::path::Path, faults: &[&str]) -> RecoveryHandle {
    let p = sim::Profile::parse(profile, "test profile").unwrap();
    let opts = SimOptions { faults: faults.iter().map(|f| f.parse().unwrap()).collect(), ..Default::default() };
    RecoveryHandle::new(SimRecovery::new(p, sim::Store::open(store).unwrap(), opts).unwrap(), "gale")
}

fn check_info(phone: &mut MiAssistant) {
    assert_eq!(phone.banner().kind, "sideload");
    assert_eq!(phone.banner().prop("ro.product.device"), Some("gale"));
    let info = phone.read_info().expect("info");
    assert_eq!(info.codename, "gale_global");
    assert_eq!(info.version, "OS1.0.12.0.UGPMIXM");
    assert_eq!(info.serial, "0x000004324148738f");
    assert_eq!(info.codebase, "14");
    assert_eq!(info.branch, "F");
    assert_eq!(info.language, "pt");
    assert_eq!(info.region, "PT");
    assert_eq!(info.romzone, "2");
}

#[test]
fn info_format_and_reboot_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &["--recovery"]);
    // Data the format must erase.
    std::fs::write(dir.path().join("s/partitions/userdata.img"), vec![0xAB; 4096]).unwrap();
    let mut phone = tcp_phone(&sim);
    check_info(&mut phone);
    assert_eq!(phone.format_data(Duration::from_secs(10)).unwrap(), FormatOutcome::Success);
    assert!(sim.partition("userdata").is_empty(), "userdata was not formatted");
    assert_eq!(phone.reboot(RebootTarget::Bootloader).unwrap(), "reboot-bootloader.");
    let log = sim.log();
    let services: Vec<&str> = log.iter().filter_map(|e| e["cmd"].as_str()).collect();
    assert_eq!(
        services,
        [
            "CNXN",
            "getdevice:",
            "getversion:",
            "getsn:",
            "getcodebase:",
            "getbranch:",
            "getlanguage:",
            "getregion:",
            "getromzone:",
            "format-data:",
            "reboot:bootloader"
        ]
    );
    let format = log.iter().find(|e| e["cmd"] == "format-data:").unwrap();
    assert_eq!(format["message"], "Format_data_success.");
    assert_eq!(format["erased"], serde_json::json!(["userdata"]));
    // The simulator keeps serving after the phone "rebooted".
    let mut again = tcp_phone(&sim);
    assert_eq!(again.read_info().unwrap().codename, "gale_global");
}

#[test]
fn info_format_and_reboot_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let handle = inproc(PROFILE, dir.path(), &[]);
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    check_info(&mut phone);
    assert_eq!(phone.format_data(Duration::from_secs(5)).unwrap(), FormatOutcome::Success);
    assert_eq!(phone.reboot(RebootTarget::System).unwrap(), "reboot.");
    let log = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    assert!(log.contains("\"format-data:\"") && log.contains("Format_data_success."), "{log}");
}

#[test]
fn disabled_and_failed_formats_are_reported_and_erase_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disabled = format!("{PROFILE}format-disabled = true\n");
    let handle = inproc(&disabled, dir.path(), &[]);
    std::fs::write(dir.path().join("partitions/userdata.img"), b"keep me").unwrap();
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    assert_eq!(phone.format_data(Duration::from_secs(5)).unwrap(), FormatOutcome::Disabled);
    assert_eq!(std::fs::read(dir.path().join("partitions/userdata.img")).unwrap(), b"keep me");

    let dir = tempfile::tempdir().unwrap();
    let handle = inproc(PROFILE, dir.path(), &["fail-on=format-data:"]);
    std::fs::write(dir.path().join("partitions/userdata.img"), b"keep me").unwrap();
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    assert_eq!(phone.format_data(Duration::from_secs(5)).unwrap(), FormatOutcome::Failed);
    assert_eq!(std::fs::read(dir.path().join("partitions/userdata.img")).unwrap(), b"keep me");
    // The fault fires once: the next format goes through.
    assert_eq!(phone.format_data(Duration::from_secs(5)).unwrap(), FormatOutcome::Success);
}

#[test]
fn format_waits_for_the_phone_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let slow = format!("{PROFILE}format-seconds = 0.6\n");
    let handle = inproc(&slow, dir.path(), &[]);
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(phone.format_data(Duration::from_secs(5)).unwrap(), FormatOutcome::Success);
    assert!(started.elapsed() >= Duration::from_millis(600));
    // Too short a wait is a timeout, not a wrong answer.
    let handle = inproc(&slow, dir.path(), &[]);
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    let e = phone.format_data(Duration::from_millis(100)).unwrap_err();
    assert!(e.to_string().contains("no answer"), "{e}");
}

#[test]
fn faults_end_in_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let handle = inproc(PROFILE, dir.path(), &["fail-on=getsn:", "garbage-on=getregion:", "drop-on=getversion:#3"]);
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    let e = phone.read_info().unwrap_err();
    assert!(matches!(&e, AdbError::Refused(s) if s == "getsn:"), "{e}");
    let e = phone.read_info().unwrap_err();
    assert!(matches!(e, AdbError::Garbage(_)), "{e}");
    // One connection at a time, as on a real phone: hang up before dialling again.
    drop(phone);
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_secs(5)).unwrap();
    let e = phone.read_info().unwrap_err();
    assert!(e.is_disconnect(), "{e}");

    let handle = inproc(PROFILE, dir.path(), &["stall-on=getdevice:"]);
    let mut phone = MiAssistant::connect(Box::new(handle.connect()), Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let e = phone.read_info().unwrap_err();
    assert!(e.to_string().contains("no answer"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_fastboot_simulator_is_not_mi_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start("moonstone", &dir.path().join("s"), &[]);
    let link = AdbTcpTransport::connect("127.0.0.1", sim.port, Duration::from_secs(5)).unwrap();
    let e = MiAssistant::connect(Box::new(link), Duration::from_millis(500)).unwrap_err();
    assert!(e.hint().is_some(), "{e}");
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = mi_flash().args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_recovery_info_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &["--recovery"]);
    let target = format!("tcp:127.0.0.1:{}", sim.port);
    let (code, out, err) = run(&["-s", &target, "recovery", "info", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["codename"], "gale_global");
    assert_eq!(v["serial"], "0x000004324148738f");
    assert_eq!(v["romzone"], "2");
    assert_eq!(v["link"], target.as_str());
    let (code, out, _) = run(&["-s", &target, "recovery", "info", "--lang", "en"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Codename") && out.contains("gale_global") && out.contains("2 (global)"), "{out}");
    let (code, out, _) = run(&["-s", &target, "recovery", "--lang", "id", "info"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Nama kode") && out.contains("F (stabil)"), "{out}");
}

#[test]
fn cli_format_data_is_refused_without_confirmation_when_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &["--recovery"]);
    std::fs::write(dir.path().join("s/partitions/userdata.img"), b"precious").unwrap();
    let target = format!("tcp:127.0.0.1:{}", sim.port);
    // Even "yes" on a pipe does not count: only a terminal or --yes does.
    let mut child = mi_flash()
        .args(["-s", &target, "recovery", "format-data", "--lang", "en"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // mi-flash may have refused and exited before reading: a closed pipe is fine here.
    if let Err(e) = child.stdin.take().unwrap().write_all(b"yes\n") {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a terminal") && err.contains("--yes"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("s/partitions/userdata.img")).unwrap(), b"precious");
    assert!(!sim.logged_commands().iter().any(|c| c.starts_with("format")), "{:?}", sim.logged_commands());

    let (code, out, err) = run(&["-s", &target, "recovery", "format-data", "--lang", "id"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("bukan terminal"), "{err}{out}");
}

#[test]
fn cli_format_data_with_yes_names_what_is_erased_and_reports_success() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &["--recovery"]);
    std::fs::write(dir.path().join("s/partitions/userdata.img"), b"precious").unwrap();
    let target = format!("tcp:127.0.0.1:{}", sim.port);
    let (code, out, err) = run(&["-s", &target, "recovery", "format-data", "--yes", "--lang", "en"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ERASES EVERYTHING") && out.contains("gale_global (0x000004324148738f)"), "{out}");
    assert!(out.contains("does NOT remove the Mi Account lock"), "{out}");
    assert!(out.contains("Format_data_success."), "{out}");
    assert!(sim.partition("userdata").is_empty());
    let (code, out, _) = run(&["-s", &target, "recovery", "reboot", "recovery", "--lang", "en"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("reboot-recovery."), "{out}");
}

#[test]
fn cli_format_data_failure_is_a_plain_error() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &["--recovery", "--fault", "fail-on=format-data:"]);
    let target = format!("tcp:127.0.0.1:{}", sim.port);
    let (code, _, err) = run(&["-s", &target, "recovery", "format-data", "--yes", "--lang", "en"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("could not erase") && err.contains("Format_data_failed."), "{err}");
    let disabled = write_profile(dir.path(), &format!("{PROFILE}format-disabled = true\n"));
    let sim = Sim::start(disabled.to_str().unwrap(), &dir.path().join("s2"), &["--recovery"]);
    let target = format!("tcp:127.0.0.1:{}", sim.port);
    let (code, _, err) = run(&["-s", &target, "recovery", "format-data", "--yes", "--lang", "en"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("Format_data_is_already_disable."), "{err}");
}

#[test]
fn cli_embedded_recovery_shares_the_simulator_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Flash userdata through the embedded fastboot simulator, then format it from recovery.
    let img = dir.path().join("data.img");
    std::fs::write(&img, vec![7u8; 8192]).unwrap();
    let out = mi_flash().args(["-s", "sim:oxygen", "--sim-store"]).arg(&store).arg("flash").arg("userdata").arg(&img).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(store.join("partitions/userdata.img")).unwrap().len(), 8192);
    let out = mi_flash()
        .args(["-s", "sim:oxygen", "--sim-store"])
        .arg(&store)
        .args(["recovery", "format-data", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(store.join("partitions/userdata.img")).unwrap().is_empty());
}

#[test]
fn cli_recovery_without_a_phone_says_how_to_enter_mi_recovery() {
    let (code, _, err) = run(&["recovery", "info", "--lang", "en"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("next:"), "{err}");
}
