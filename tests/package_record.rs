//! Records of archives verified before (src/rom/record.rs): `mi-flash verify` keeps one, and
//! a later `flash` or `plan` of the same archive hashes the file instead of decompressing it,
//! re-runs every check on the recorded measurements and flashes the same bytes. A changed
//! archive, a doctored record, another version's record or an unreadable one never lets an
//! unverified package through.

mod common;
use common::rom::*;
use common::mi_flash;
use mi_flash::rom::verify::{verify, CheckStatus, VerifyOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;

const MIB: u64 = 1 << 20;
const EXIT_BAD_PACKAGE: i32 = 4;
const NOTE: &str = "was decompressed and measured completely";

/// Runs mi-flash with records kept in `records` and used (no `--full-verify`).
fn run_with(records: &Path, args: &[String]) -> Run {
    let out = mi_flash()
        .env_remove("MI_FLASH_FULL_VERIFY")
        .env("MI_FLASH_CACHE_DIR", records)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mi-flash");
    Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `flash --rom` to a fresh in-process moonstone phone whose store is `store`.
fn flash(records: &Path, profile: &Path, rom: &Path, store: &Path) -> Run {
    let journal = store.with_extension("journal");
    run_with(
        records,
        &args(&["-s", &format!("sim:{}", s(profile)), "--sim-store", &s(store), "flash", "--rom", &s(rom), "--yes", "--journal-dir", &s(&journal)]),
    )
}

fn record_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_verified_tgz_and_zip_flash_from_their_records_with_the_same_result() {
    for form in [Form::Tgz, Form::Zip] {
        let sample = sample(form, 4, MIB);
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records");
        let profile = moonstone_profile(dir.path(), MIB, &[]);

        // A flash with no record verifies completely and keeps a record.
        let first = flash(&records, &profile, &sample.rom, &dir.path().join("first"));
        first.expect_code(0);
        assert!(!first.all().contains(NOTE), "{form:?}: no record existed yet\n{}", first.all());
        assert_eq!(record_files(&records).len(), 1, "{form:?}: one record kept");

        // The same archive again: measured from the record, the same operations, the same bytes.
        let second = flash(&records, &profile, &sample.rom, &dir.path().join("second"));
        second.expect_code(0);
        assert!(second.all().contains(NOTE), "{form:?}: the record was not used\n{}", second.all());
        let plan = plan(&sample.rom, "clean");
        let vars = moonstone_vars();
        assert!(assert_store_matches(&dir.path().join("second"), &sample.root, &plan, &vars) > 5);
        assert_eq!(
            logged_ops(&read_log(&dir.path().join("second"), 0)),
            logged_ops(&read_log(&dir.path().join("first"), 0)),
            "{form:?}: the phone saw other operations"
        );

        // --full-verify decompresses again.
        let full = run_with(&records, &args(&["plan", "--rom", &s(&sample.rom), "--max-download-size", "1M", "--full-verify"]));
        full.expect_code(0);
        assert!(!full.all().contains(NOTE), "{}", full.all());
    }
}

#[test]
fn a_record_holds_exactly_what_the_complete_pass_measured() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let opts = |reuse| VerifyOptions { records: Some(dir.path().to_path_buf()), reuse_record: reuse, max_download_size: Some(MIB), ..Default::default() };
    let full = verify(&sample.rom, &opts(false)).unwrap();
    assert!(full.report.is_ok());
    assert_eq!(full.record.as_deref().map(|p| p.parent().unwrap()), Some(dir.path()));
    let again = verify(&sample.rom, &opts(true)).unwrap();
    assert!(again.record.is_none(), "a verification from a record writes none");
    assert_eq!(again.report.checks[0].name, "verified-before");
    assert_eq!(again.report.checks[0].status, CheckStatus::Ok);
    assert_eq!(again.report.files, full.report.files);
    assert_eq!(again.report.checks[1..], full.report.checks[..]);
    assert_eq!(again.report.digest, full.report.digest);
    assert_eq!(again.layouts(), full.layouts());
    assert_eq!(again.package.entries(), full.package.entries());
    for e in full.package.entries() {
        assert_eq!(again.package.small_file(&e.path), full.package.small_file(&e.path), "{}", e.path);
    }
    // A record is per piece size: the CRCs of another split are measured, not guessed.
    let other = VerifyOptions { max_download_size: Some(2 * MIB), ..opts(true) };
    let v = verify(&sample.rom, &other).unwrap();
    assert_ne!(v.report.checks[0].name, "verified-before");
    // The sample's list is for 1 MiB pieces, so that pass failed, and a failed pass keeps no record.
    assert!(!v.report.is_ok());
    assert_eq!(record_files(dir.path()).len(), 1);
}

#[test]
fn a_changed_archive_is_verified_completely_and_refused() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let rom = dir.path().join("moonstone_images_OS1.0.6.0.UMNCNXM_20240601.0000.00_14.0_cn.tgz");
    std::fs::copy(&sample.rom, &rom).unwrap();
    let r = run_with(&records, &args(&["verify", "--rom", &s(&rom), "--max-download-size", "1M"]));
    r.expect_code(0);
    assert!(r.stdout.contains("keeps a record of this check"), "{}", r.stdout);
    assert_eq!(record_files(&records).len(), 1);

    // One byte of the compressed stream changed, same size: the SHA-256 differs, so the
    // archive is read completely, and its damage is found before the phone is asked anything.
    let mut bytes = std::fs::read(&rom).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&rom, bytes).unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let store = dir.path().join("store");
    let r = flash(&records, &profile, &rom, &store);
    r.expect_code(EXIT_BAD_PACKAGE).expect_no_success_message();
    assert!(!r.all().contains(NOTE), "{}", r.all());
    assert!(writes(&read_log(&store, 0)).is_empty(), "the phone was written to");
}

#[test]
fn a_doctored_record_fails_the_checks_it_feeds() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    run_with(&records, &args(&["verify", "--rom", &s(&sample.rom), "--max-download-size", "1M"])).expect_code(0);
    let [record] = &record_files(&records)[..] else { panic!("one record") };
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    let boot = json["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == "images/boot.img").expect("boot.img recorded");
    boot["crc32"] = serde_json::json!(boot["crc32"].as_u64().unwrap() ^ 1);
    std::fs::write(record, serde_json::to_vec(&json).unwrap()).unwrap();

    // The checks are run again on the recorded measurements: crclist.txt disagrees.
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let store = dir.path().join("store");
    let r = flash(&records, &profile, &sample.rom, &store);
    r.expect_code(EXIT_BAD_PACKAGE).expect_no_success_message();
    assert!(r.stderr.contains("crclist images/boot.img"), "{}", r.all());
    assert!(writes(&read_log(&store, 0)).is_empty(), "the phone was written to");
}

#[test]
fn records_of_another_version_or_unreadable_ones_are_ignored() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let opts = VerifyOptions { records: Some(dir.path().to_path_buf()), reuse_record: true, max_download_size: Some(MIB), ..Default::default() };
    let used = || verify(&sample.rom, &opts).unwrap().report.checks[0].name == "verified-before";
    assert!(!used(), "no record yet");
    assert!(used(), "the first pass kept a record");
    let [record] = &record_files(dir.path())[..] else { panic!("one record") };

    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    json["mi_flash"] = serde_json::json!("0.0.1");
    std::fs::write(record, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(!used(), "another version's record was used");
    assert!(used(), "the complete pass replaced it");

    // Window CRCs that do not cover the file are as unusable as garbage.
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    json["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == "images/super.img").expect("super.img recorded")["windows"]
        .as_array_mut()
        .unwrap()
        .pop();
    std::fs::write(record, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(!used(), "a record with too few window CRCs was used");
    assert!(used(), "the complete pass replaced it");

    for garbage in [&b"{ not json"[..], b"", br#"{"format":1}"#] {
        std::fs::write(record, garbage).unwrap();
        assert!(!used(), "an unreadable record was used");
        assert!(used(), "the complete pass replaced the unreadable record");
    }
}

#[test]
fn a_folder_keeps_no_record() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let r = run_with(&records, &args(&["verify", "--rom", &s(&sample.rom), "--max-download-size", "1M"]));
    r.expect_code(0);
    assert!(!r.stdout.contains("keeps a record"), "{}", r.stdout);
    assert!(record_files(&records).is_empty());
}
