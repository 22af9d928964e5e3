//! mi-flash's own client against the simulated phone, over TCP (a `mi-flash simulate`
//! process) and in-process (`SimHandle`): variables, writes, Xiaomi's refusals, and every kind
//! of injected fault ending in a clear error rather than a hang.

mod common;
use common::*;
use mi_flash::fastboot::{FastbootClient, FastbootError, RebootTarget};
use mi_flash::sim::{self, SimHandle, SimOptions};
use mi_flash::transport::tcp::TcpTransport;
use mi_flash::transport::TransportError;
use std::time::Duration;

const AB_PROFILE: &str = r#"
product = "piano"
serialno = "ab-1"
anti = 3
crc = false
slot-count = 2
current-slot = "a"
max-download-size = 1048576
[partitions]
boot = 4194304
xbl = 65536
userdata = 8388608
"#;

fn tcp_client(sim: &Sim) -> FastbootClient {
    let t = TcpTransport::connect("127.0.0.1", sim.port, Duration::from_secs(5)).expect("connect");
    FastbootClient::new(Box::new(t)).with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
}

fn inproc(profile: &str, store: &std::path::Path, faults: &[&str]) -> SimHandle {
    let p = sim::Profile::parse(profile, "test profile").unwrap();
    let opts = SimOptions { faults: faults.iter().map(|f| f.parse().unwrap()).collect(), ..Default::default() };
    let dev = sim::SimDevice::new(p, sim::Store::open(store).unwrap(), opts).unwrap();
    SimHandle::new(dev, "test")
}

fn client_of(h: &SimHandle) -> FastbootClient {
    FastbootClient::new(Box::new(h.connect())).with_timeouts(Duration::from_millis(500), Duration::from_secs(2))
}

#[test]
fn variables_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), AB_PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &[]);
    let mut c = tcp_client(&sim);
    assert_eq!(c.getvar("product").unwrap(), "piano");
    assert_eq!(c.getvar("anti").unwrap(), "3");
    assert_eq!(c.getvar("slot-count").unwrap(), "2");
    assert_eq!(c.getvar("current-slot").unwrap(), "a");
    assert_eq!(c.getvar("has-slot:boot").unwrap(), "yes");
    assert_eq!(c.getvar("partition-size:boot_b").unwrap(), "0x400000");
    assert_eq!(c.getvar("max-download-size").unwrap(), "0x100000");
    assert_eq!(c.getvar("unlocked").unwrap(), "yes");
    assert!(matches!(c.getvar("nonsense"), Err(FastbootError::Refused { .. })));
    let all = c.getvar_all().unwrap();
    assert!(all.contains(&("partition-size:userdata_a".into(), "0x800000".into())), "{all:?}");
    // Each `key:value` line fits a 256-byte INFO packet (4 bytes of "INFO" + 252).
    assert!(all.iter().all(|(k, v)| k.len() + 1 + v.len() <= 252));
}

#[test]
fn writes_over_tcp_and_inproc_store_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), AB_PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &[]);
    let image = random_bytes(700_000, 3);
    let mut c = tcp_client(&sim);
    c.download(&image).unwrap();
    c.flash("boot_ab").unwrap();
    assert_eq!(sim.partition("boot_a"), image);
    assert_eq!(sim.partition("boot_b"), image);
    c.erase("boot_b").unwrap();
    assert!(sim.partition("boot_b").is_empty());
    c.set_active("b").unwrap();
    assert_eq!(c.getvar("current-slot").unwrap(), "b");
    c.download(&image[..1000]).unwrap();
    assert_eq!(c.upload().unwrap(), image[..1000].to_vec());
    let log = sim.log();
    let dl = log.iter().find(|e| e["cmd"] == "download:000aae60").expect("download logged");
    assert_eq!(dl["bytes"], 700_000);
    assert_eq!(dl["result"], "OKAY");

    let h = inproc(AB_PROFILE, &dir.path().join("i"), &[]);
    let mut c = client_of(&h);
    c.download(&image).unwrap();
    c.flash("xbl_a").unwrap_err(); // 700 kB does not fit a 64 KiB partition
    c.flash("boot").unwrap(); // a bare name goes to the active slot
    assert_eq!(std::fs::read(dir.path().join("i/partitions/boot_a.img")).unwrap(), image);
    // A partition is written over in place: a shorter image leaves exactly its own bytes.
    let shorter = random_bytes(300_001, 4);
    c.download(&shorter).unwrap();
    c.flash("boot").unwrap();
    assert_eq!(std::fs::read(dir.path().join("i/partitions/boot_a.img")).unwrap(), shorter);
}

#[test]
fn bootloader_rules_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let h = inproc(AB_PROFILE, dir.path(), &[]);
    let mut c = client_of(&h);
    let err = c.download(&vec![0u8; 1048577]).unwrap_err();
    assert_eq!(err.device_message(), Some("Requested download size is more than max allowed"));
    c.download(b"x").unwrap();
    assert_eq!(c.flash("nosuch").unwrap_err().device_message(), Some("No such partition: nosuch"));
    assert!(c.set_active("c").is_err());
    c.oem("lock").unwrap();
    assert_eq!(c.getvar("unlocked").unwrap(), "no");
    assert_eq!(c.flash("boot_a").unwrap_err().device_message(), Some("Flashing is not allowed in Lock State"));
    assert_eq!(c.erase("boot_a").unwrap_err().device_message(), Some("Erase is not allowed in Lock State"));
    assert_eq!(c.set_active("b").unwrap_err().device_message(), Some("Slot Change is not allowed in Lock State"));
    c.flashing("unlock").unwrap();
    c.flash("boot_a").unwrap();
    // Reboot ends the connection; the phone comes back on the next one.
    c.reboot(RebootTarget::Fastboot).unwrap();
    let mut c = client_of(&h);
    assert_eq!(c.getvar("is-userspace").unwrap(), "yes");
}

fn transport_error(e: FastbootError) -> TransportError {
    match e {
        FastbootError::Transport { source, .. } => source,
        other => panic!("expected a transport error, got {other}"),
    }
}

#[test]
fn faults_end_in_clear_errors_and_fire_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = inproc(
        AB_PROFILE,
        dir.path(),
        &["fail-on=getvar:product#2", "garbage-on=getvar:anti", "stall-on=flash:boot_a", "drop-on=erase", "drop-after-bytes=1500000"],
    );
    let mut c = client_of(&h);
    assert_eq!(c.getvar("product").unwrap(), "piano");
    let e = c.getvar("product").unwrap_err();
    assert!(e.device_message().unwrap().contains("injected fault"), "{e}");
    assert_eq!(c.getvar("product").unwrap(), "piano", "a fault fires once");
    assert!(matches!(c.getvar("anti"), Err(FastbootError::Codec { .. })));
    assert_eq!(c.getvar("anti").unwrap(), "3");

    c.download(&random_bytes(1_000_000, 1)).unwrap();
    let started = std::time::Instant::now();
    let e = transport_error(c.flash("boot_a").unwrap_err());
    assert!(matches!(e, TransportError::Timeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(c);

    let mut c = client_of(&h);
    let e = transport_error(c.erase("userdata_a").unwrap_err());
    assert!(e.is_disconnect(), "{e}");

    let mut c = client_of(&h);
    let e = transport_error(c.download(&random_bytes(1_000_000, 2)).unwrap_err());
    assert!(e.is_disconnect(), "{e}");
    let log: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cut = log.iter().rev().find(|e| e["fault"] == "drop-after-bytes").expect("drop logged");
    assert_eq!(cut["bytes"], 500_000);
    for kind in ["fail-on=getvar:product#2", "garbage-on=getvar:anti#1", "stall-on=flash:boot_a#1", "drop-on=erase#1"] {
        assert!(log.iter().any(|e| e["fault"] == kind), "{kind} not logged");
    }
}

#[test]
fn stall_over_tcp_times_out_and_the_simulator_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), AB_PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &["--fault", "stall-on=getvar:serialno"]);
    let mut c = tcp_client(&sim);
    let e = transport_error(c.getvar("serialno").unwrap_err());
    assert!(matches!(e, TransportError::Timeout(_)), "{e}");
    drop(c);
    let mut c = tcp_client(&sim);
    assert_eq!(c.getvar("serialno").unwrap(), "ab-1");
}

#[test]
fn cli_commands_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), AB_PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("s"), &[]);
    let run = |args: &[&str]| {
        let out = mi_flash().arg("-s").arg(sim.target()).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, out, _) = run(&["getvar", "product"]);
    assert_eq!((code, out.trim()), (Some(0), "product: piano"));
    let (code, out, _) = run(&["info"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("piano") && out.contains("Slots        2, active a"), "{out}");
    let (code, out, _) = run(&["devices", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"][0]["product"], "piano");
    assert_eq!(v["devices"][0]["anti"], 3);
    assert_eq!(v["devices"][0]["mode"], "bootloader");
    let img = dir.path().join("boot.img");
    std::fs::write(&img, random_bytes(300_000, 9)).unwrap();
    let (code, _, err) = run(&["flash", "boot", img.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(sim.partition("boot_a"), std::fs::read(&img).unwrap());
    let (code, _, err) = run(&["flash", "xbl_a", img.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("xbl_a"), "{err}");
    let (code, _, _) = run(&["set-active", "b"]);
    assert_eq!(code, Some(0));
    let (code, out, _) = run(&["oem", "device-info"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("(bootloader) Device unlocked: true"), "{out}");
    let (code, _, _) = run(&["erase", "userdata_a"]);
    assert_eq!(code, Some(0));
    let (code, _, _) = run(&["reboot", "edl"]);
    assert_eq!(code, Some(0));
    let cmds = sim.logged_commands();
    assert!(cmds.contains(&"oem edl".to_string()), "{cmds:?}");
}

#[test]
fn devices_without_any_phone_exits_zero() {
    let out = mi_flash().arg("devices").env("LC_ALL", "C").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No phone in fastboot mode found"));
    // The same in Bahasa Indonesia, from the locale or from --lang.
    for args in [vec!["devices"], vec!["devices", "--lang", "id"]] {
        let mut cmd = mi_flash();
        cmd.args(&args).env("LC_ALL", if args.len() == 1 { "id_ID.UTF-8" } else { "C" });
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Tidak ditemukan HP dalam mode fastboot"), "{args:?}: {stdout}");
        assert!(!stdout.contains("No phone"), "{args:?}: {stdout}");
    }
}

#[test]
fn devices_rows_speak_the_users_language_and_json_keeps_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let row = |lang: &str, json: bool| {
        let mut cmd = mi_flash();
        cmd.args(["-s", "sim:moonstone", "--sim-store"]).arg(dir.path()).args(["devices", "--lang", lang]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let en = row("en", false);
    assert!(en.starts_with("sim-moonstone\tsim\tmoonstone\tunlocked\tanti 1\tslot a\tbootloader\n"), "{en}");
    assert!(en.contains("\tnext: `mi-flash info`"), "{en}");
    let id = row("id", false);
    assert!(id.starts_with("sim-moonstone\tsim\tmoonstone\tterbuka (unlocked)\tanti 1\tslot a\tbootloader\n"), "{id}");
    assert!(id.contains("\tlangkah berikutnya: `mi-flash info`; untuk keluar"), "{id}");
    // JSON: the same fields and values in both languages; only the human hint is translated.
    let parse = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
    let (mut en, mut id) = (parse(row("en", true)), parse(row("id", true)));
    assert!(en["devices"][0]["next"].as_str().unwrap().contains("to leave"));
    assert!(id["devices"][0]["next"].as_str().unwrap().contains("untuk keluar"));
    en["devices"][0]["next"] = serde_json::Value::Null;
    id["devices"][0]["next"] = serde_json::Value::Null;
    assert_eq!(en, id);
    assert_eq!(en["devices"][0]["unlocked"], true);
    // The locale does not change --json output; only --lang does.
    let out = mi_flash().args(["-s", "sim:moonstone", "--sim-store"]).arg(dir.path()).args(["devices", "--json"]).env("LC_ALL", "id_ID.UTF-8").output().unwrap();
    let mut by_locale: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(by_locale["devices"][0]["next"].as_str().unwrap().contains("to leave"), "{by_locale}");
    by_locale["devices"][0]["next"] = serde_json::Value::Null;
    assert_eq!(by_locale, en);
    assert_eq!(en["devices"][0]["mode"], "bootloader");
}

#[test]
fn embedded_simulator_needs_no_setup() {
    let dir = tempfile::tempdir().unwrap();
    let out = mi_flash().args(["-s", "sim:moonstone", "--sim-store"]).arg(dir.path()).arg("info").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("moonstone"));
    let out = mi_flash().args(["-s", "sim:nosuch", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in"));
}

#[test]
fn partition_names_from_the_wire_never_leave_the_store() {
    // A profile without a [partitions] table takes any partition name; a name that is not
    // letters, digits, `_`, `-` and `.` is no partition at all, so `flash:../x` or an absolute
    // path cannot create or truncate files outside the store.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let h = inproc("product = \"oxygen\"\n", &store, &[]);
    let mut c = client_of(&h);
    let outside = dir.path().join("outside");
    let abs = outside.to_str().unwrap().to_string();
    for name in ["../../outside", "../outside", abs.as_str(), "a/b", "boot:a", "", "boot\\x"] {
        c.download(b"data").unwrap();
        let e = c.flash(name).unwrap_err();
        let want = if name.is_empty() { "Unrecognized command" } else { "No such partition" };
        assert!(matches!(&e, FastbootError::Refused { message, .. } if message.contains(want)), "flash:{name}: {e}");
        if !name.is_empty() {
            let e = c.erase(name).unwrap_err();
            assert!(matches!(&e, FastbootError::Refused { message, .. } if message.contains("No such partition")), "erase:{name}: {e}");
        }
    }
    let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["store"], "files appeared beside the store");
    assert_eq!(std::fs::read_dir(store.join("partitions")).unwrap().count(), 0);
    // Ordinary names still work on such a phone.
    c.download(b"data").unwrap();
    c.flash("boot").unwrap();
    assert_eq!(std::fs::read(store.join("partitions/boot.img")).unwrap(), b"data");
}

#[test]
fn single_image_flash_refuses_bad_names_broken_sparse_and_oversize_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = |args: &[&str]| {
        let out = mi_flash().args(["-s", "sim:moonstone", "--sim-store"]).arg(&store).args(args).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let downloads = || {
        std::fs::read_to_string(store.join("log.jsonl")).unwrap_or_default().lines().filter(|l| l.contains("\"download:")).count()
    };
    // A sparse header: total_blks 100, one RAW chunk of 100 blocks, but only 1 block of data.
    let mut short = Vec::new();
    for v in [0xed26ff3au32, 0x0000_0001, 0x000c_001c, 4096, 100, 1, 0] {
        short.extend_from_slice(&v.to_le_bytes());
    }
    short.extend_from_slice(&0xCAC1u16.to_le_bytes());
    short.extend_from_slice(&0u16.to_le_bytes());
    short.extend_from_slice(&100u32.to_le_bytes());
    short.extend_from_slice(&(12 + 100 * 4096u32).to_le_bytes());
    short.extend_from_slice(&[7u8; 4096]);
    let short_path = dir.path().join("short.img");
    std::fs::write(&short_path, &short).unwrap();
    let big = dir.path().join("big.img");
    std::fs::File::create(&big).unwrap().set_len(2 << 20).unwrap();
    let small = dir.path().join("small.img");
    std::fs::write(&small, [1u8; 4096]).unwrap();

    let (code, out) = run(&["flash", "../../x", small.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("is not a partition name"), "{out}");
    let (code, out) = run(&["erase", "boot:ab"]);
    assert_eq!(code, Some(2), "{out}");
    let (code, out) = run(&["flash", "cust", short_path.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("the image is truncated"), "{out}");
    // misc holds 1 MiB on moonstone.
    let (code, out) = run(&["flash", "misc", big.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("but partition misc holds 1048576: nothing was sent"), "{out}");
    assert_eq!(downloads(), 0, "something was sent");
    // A good image still goes, and `getvar all` lists what the phone reports.
    let (code, out) = run(&["flash", "misc", small.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(downloads(), 1);
    let (code, out) = run(&["getvar", "all"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l == "product: moonstone") && out.lines().any(|l| l.starts_with("partition-size:misc: ")), "{out}");
}
