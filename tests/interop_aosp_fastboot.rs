//! Debian's `fastboot` (AOSP 29.0.6) against `mi-flash simulate` over TCP: the simulator must
//! behave like a device the reference client accepts, and store exactly what it was sent.

mod common;
use common::*;
use std::process::Command;

const PROFILE: &str = r#"
product = "lavender"
serialno = "interop-1"
unlocked = true
anti = 2
max-download-size = 33554432
[partitions]
boot = 16777216
system = 67108864
cache = 8388608
"#;

fn fastboot(bin: &std::path::Path, sim: &Sim, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .arg("-s")
        .arg(sim.target())
        .args(args)
        .output()
        .expect("run fastboot");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn getvar_product_and_all() {
    let Some(fb) = require_tool("fastboot") else { return };
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("store"), &[]);
    let (ok, out) = fastboot(&fb, &sim, &["getvar", "product"]);
    assert!(ok, "{out}");
    assert!(out.contains("product: lavender"), "{out}");
    let (ok, out) = fastboot(&fb, &sim, &["getvar", "all"]);
    assert!(ok, "{out}");
    for line in ["(bootloader) product:lavender", "(bootloader) anti:2", "(bootloader) partition-size:boot:0x1000000", "(bootloader) max-download-size:0x2000000"] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains("unknown status"), "{out}");
    let (ok, out) = fastboot(&fb, &sim, &["getvar", "nosuchvar"]);
    assert!(ok, "a FAIL to getvar still exits 0 in fastboot 29: {out}");
    let log = sim.logged_commands();
    assert!(log.contains(&"getvar:all".to_string()), "{log:?}");
}

#[test]
fn flash_raw_then_forced_sparse_then_erase_and_reboot() {
    let Some(fb) = require_tool("fastboot") else { return };
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), PROFILE);
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("store"), &[]);

    let image = mixed_image(5 * 1024 * 1024, 7);
    let img_path = dir.path().join("boot.img");
    std::fs::write(&img_path, &image).unwrap();
    let (ok, out) = fastboot(&fb, &sim, &["flash", "boot", img_path.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(sim.partition("boot"), image, "raw flash must store the image byte for byte");

    // The same image forced through sparse pieces of at most 1 MiB.
    std::fs::write(sim.store.join("partitions/boot.img"), b"").unwrap();
    let (ok, out) = fastboot(&fb, &sim, &["-S", "1M", "flash", "boot", img_path.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("Sending sparse 'boot' 1/"), "expected a split: {out}");
    assert_eq!(sim.partition("boot"), image, "sparse pieces must rebuild the image byte for byte");

    // A sparse image made by img2simg, sent whole and split; compared with simg2img's output.
    if let (Some(img2simg), Some(simg2img)) = (require_tool("img2simg"), require_tool("simg2img")) {
        let sys = mixed_image(12 * 1024 * 1024, 11);
        let raw = dir.path().join("system.raw");
        let sparse = dir.path().join("system.img");
        std::fs::write(&raw, &sys).unwrap();
        assert!(Command::new(img2simg).arg(&raw).arg(&sparse).status().unwrap().success());
        for limit in [None, Some("4M")] {
            let mut args = vec![];
            if let Some(l) = limit {
                args.extend(["-S", l]);
            }
            args.extend(["flash", "system", sparse.to_str().unwrap()]);
            // Each pass starts from an empty partition, so it has to write every byte itself.
            std::fs::write(sim.store.join("partitions/system.img"), b"").unwrap();
            let (ok, out) = fastboot(&fb, &sim, &args);
            assert!(ok, "{out}");
            if limit.is_some() {
                assert!(out.contains("Sending sparse 'system' 1/"), "expected a split: {out}");
            }
            let expanded = dir.path().join("expanded.raw");
            assert!(Command::new(&simg2img).arg(&sparse).arg(&expanded).status().unwrap().success());
            assert_eq!(sim.partition("system"), std::fs::read(&expanded).unwrap(), "limit {limit:?}");
        }
    }

    let (ok, out) = fastboot(&fb, &sim, &["erase", "cache"]);
    assert!(ok, "{out}");
    assert!(sim.partition("cache").is_empty());

    let (ok, out) = fastboot(&fb, &sim, &["reboot"]);
    assert!(ok, "{out}");
    let log = sim.log();
    let last = log.last().unwrap();
    assert_eq!(last["cmd"], "reboot");
    assert_eq!(last["result"], "OKAY");
}

#[test]
fn refusals_reach_the_reference_client() {
    let Some(fb) = require_tool("fastboot") else { return };
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(dir.path(), &PROFILE.replace("unlocked = true", "unlocked = false"));
    let sim = Sim::start(profile.to_str().unwrap(), &dir.path().join("store"), &[]);
    let img = dir.path().join("boot.img");
    std::fs::write(&img, random_bytes(4096, 1)).unwrap();
    let (ok, out) = fastboot(&fb, &sim, &["flash", "boot", img.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("Flashing is not allowed in Lock State"), "{out}");
    let (ok, out) = fastboot(&fb, &sim, &["erase", "boot"]);
    assert!(!ok);
    assert!(out.contains("Erase is not allowed in Lock State"), "{out}");
    assert!(!sim.store.join("partitions/boot.img").exists());
    // The simulator still answers after every refusal.
    let (ok, out) = fastboot(&fb, &sim, &["getvar", "product"]);
    assert!(ok && out.contains("lavender"), "{out}");
}
