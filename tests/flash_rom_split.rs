//! `flash --rom --max-download-size`: the package's per-piece CRC list is checked for the pieces
//! a phone that checks CRC lists receives; for a phone that does not, the option only splits the
//! transfer and the list is checked for Xiaomi's own piece size. Runs the mi-flash binary
//! against simulated phones made from the `moonstone` profile, with the sample package.

mod common;

use common::rom::{assert_store_matches, extract_tgz, moonstone_vars, plan, read_log, writes};
use std::path::Path;
use std::process::{Command, Output};

fn mi_flash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mi-flash"))
        .args(args)
        .env("MI_FLASH_FULL_VERIFY", "1")
        .env("MI_FLASH_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-records"))
        .output()
        .expect("the mi-flash binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The built-in moonstone phone with CRC-list checking on or off.
fn profile(dir: &Path, crc: bool) -> String {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/moonstone.toml"))
        .expect("profiles/moonstone.toml is part of the crate");
    assert!(base.contains("\ncrc = true\n"), "the moonstone profile checks CRC lists");
    let path = dir.join(format!("moonstone-crc-{crc}.toml"));
    std::fs::write(&path, base.replace("\ncrc = true\n", &format!("\ncrc = {crc}\n"))).expect("write the profile");
    format!("sim:{}", path.display())
}

fn flash(dir: &Path, phone: &str, store: &str) -> Output {
    let rom = dir.join("rom");
    let store = dir.join(store);
    let journal = dir.join("journal");
    mi_flash(&[
        "-s",
        phone,
        "--sim-store",
        store.to_str().expect("utf-8 temp path"),
        "flash",
        "--rom",
        rom.to_str().expect("utf-8 temp path"),
        "--max-download-size",
        "4194304",
        "--yes",
        "--journal-dir",
        journal.to_str().expect("utf-8 temp path"),
    ])
}

#[test]
fn max_download_size_splits_the_transfer_without_failing_the_crc_list_of_a_phone_that_ignores_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = mi_flash(&["sample-rom", dir.path().join("rom").to_str().expect("utf-8 temp path")]);
    assert!(out.status.success(), "sample-rom: {}", text(&out));

    // The sample's sparsecrclist.txt is made for 16 MiB pieces; 4 MiB pieces have other CRCs.
    let out = flash(dir.path(), &profile(dir.path(), false), "plain");
    assert!(out.status.success(), "flash --rom on a phone without CRC checks: {}", text(&out));
    assert!(text(&out).contains("Sending sparse 'super' in 5 pieces"), "{}", text(&out));
    let tgz = std::fs::read_dir(dir.path().join("rom")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "tgz")).unwrap();
    let root = extract_tgz(&tgz, &dir.path().join("extracted"));
    // This phone checks no CRC lists, so mi-flash does not send them.
    let mut vars = moonstone_vars();
    vars.insert("crc", "0");
    let compared = assert_store_matches(&dir.path().join("plain"), &root, &plan(&tgz, "clean"), &vars);
    assert!(compared >= 10, "only {compared} partitions compared");

    // A phone that checks CRC lists would refuse those pieces: refused before anything is sent.
    let out = flash(dir.path(), &profile(dir.path(), true), "crc");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("per-piece CRCs differ from sparsecrclist.txt"), "{}", text(&out));
    assert!(!text(&out).contains("Sending"), "{}", text(&out));
    let log = read_log(&dir.path().join("crc"), 0);
    assert!(!log.is_empty(), "the phone was never asked anything");
    assert_eq!(writes(&log), Vec::<String>::new(), "written before the refusal");
}
