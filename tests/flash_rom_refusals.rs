//! `flash --rom` refuses before the first write: a package for another phone, a lower
//! anti-rollback index, a locked bootloader, an image larger than its partition, a damaged
//! package (an image changed inside the .tgz, a wrong MD5 fragment in the name), no terminal
//! to confirm on, a missing lock script; and `--dry-run` writes nothing. Each time the
//! simulator's log shows no download, flash or erase, the exit code says why, and no success
//! line is printed.

mod common;
use common::rom::*;
use common::Sim;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
const EXIT_USAGE: i32 = 2;
const EXIT_REFUSED: i32 = 3;
const EXIT_BAD_PACKAGE: i32 = 4;

/// Runs `flash --rom` on an in-process simulator with `profile` and returns the run and the
/// phone's log.
fn flash_in_process(profile: &Path, rom: &Path, store: &Path, extra: &[&str]) -> (Run, Vec<serde_json::Value>) {
    let journal = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["-s".into(), format!("sim:{}", s(profile)), "--sim-store".into(), s(store)];
    args.extend(["flash", "--rom", &s(rom), "--journal-dir", &s(journal.path())].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    let r = run(&args);
    (r, read_log(store, 0))
}

fn assert_nothing_written(log: &[serde_json::Value]) {
    assert!(!log.is_empty(), "the phone was never asked anything");
    assert_eq!(writes(log), Vec::<String>::new(), "the phone was written to");
}

/// A refusal from the phone checks: exit 3, the message, nothing written.
fn refused(overrides: &[(&str, &str)], expect: &[&str]) {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, overrides);
    let (r, log) = flash_in_process(&profile, &sample.rom, &dir.path().join("store"), &["--yes"]);
    r.expect_code(EXIT_REFUSED).expect_no_success_message();
    for e in expect {
        assert!(r.all().contains(e), "no {e:?} in\n{}", r.all());
    }
    assert_nothing_written(&log);
}

#[test]
fn product_mismatch_over_tcp() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[("product", "\"piano\"")]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    let journal = tempfile::tempdir().unwrap();
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(journal.path())]);
    r.expect_code(EXIT_REFUSED).expect_no_success_message();
    assert!(r.all().contains("this package is for moonstone, the phone is piano"), "{}", r.all());
    assert_nothing_written(&sim.log());
}

#[test]
fn lower_anti_rollback_is_refused() {
    refused(&[("anti", "2")], &["anti-rollback index is 2", "brick"]);
}

#[test]
fn locked_bootloader_is_refused() {
    refused(&[("unlocked", "false")], &["bootloader is locked"]);
}

#[test]
fn image_larger_than_its_partition_is_refused() {
    refused(&[("boot", "4096")], &["images/boot.img (262144 bytes) does not fit partition boot_ab (4096 bytes)"]);
}

/// Extracts the sample .tgz, changes one byte of `image`, and packs it again under `name`.
fn damaged_copy(sample: &Sample, dir: &Path, image: &str, offset: u64, name: &str) -> PathBuf {
    let root = extract_tgz(&sample.rom, &dir.join("x"));
    let path = root.join(image);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let out = dir.join(name);
    tgz_folder(&root, &out);
    out
}

#[test]
fn an_image_changed_inside_the_tgz_is_refused() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    // A raw image (crclist.txt catches it) and a byte of RAW data in the split sparse super
    // (sparsecrclist.txt catches it), each in its own otherwise intact package without an MD5
    // fragment in its name (so only the CRC lists can tell).
    let offset_in_super_data = 28 + 12 + 5000;
    for (image, offset, check) in [("images/boot.img", 1000, "crclist images/boot.img"), ("images/super.img", offset_in_super_data, "sparsecrclist images/super.img")] {
        let case = dir.path().join(image.replace('/', "_"));
        let rom = damaged_copy(&sample, &case, image, offset, "moonstone_images_OS1.0.6.0.UMNCNXM_20240601.0000.00_14.0_cn.tgz");
        let (r, log) = flash_in_process(&profile, &rom, &case.join("store"), &["--yes"]);
        r.expect_code(EXIT_BAD_PACKAGE).expect_no_success_message();
        assert!(r.stderr.contains(check), "no {check:?} in\n{}", r.all());
        assert!(r.all().contains("nothing was written"), "{}", r.all());
        // Verification fails before the phone is asked to take anything.
        assert!(writes(&log).is_empty(), "{log:?}");
    }
}

#[test]
fn a_wrong_md5_fragment_in_the_name_is_refused() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let name = sample.rom.file_name().unwrap().to_string_lossy().into_owned();
    let (head, tail) = name.rsplit_once('_').unwrap();
    let wrong = format!("{head}_{}.tgz", if tail.starts_with('0') { "1111111111" } else { "0000000000" });
    let rom = dir.path().join(&wrong);
    std::fs::copy(&sample.rom, &rom).unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let (r, log) = flash_in_process(&profile, &rom, &dir.path().join("store"), &["--yes"]);
    r.expect_code(EXIT_BAD_PACKAGE).expect_no_success_message();
    assert!(r.stderr.contains("md5-fragment"), "{}", r.all());
    assert!(writes(&log).is_empty(), "{log:?}");
}

#[test]
fn no_terminal_and_no_yes_refuses_and_writes_nothing() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let (r, log) = flash_in_process(&profile, &sample.rom, &dir.path().join("store"), &[]);
    r.expect_code(EXIT_USAGE).expect_no_success_message();
    assert!(r.stderr.contains("--yes"), "{}", r.all());
    assert!(r.stderr.contains("CLEAN mode"), "the user is not told what would be erased: {}", r.all());
    assert_nothing_written(&log);
}

#[test]
fn dry_run_lists_the_steps_and_writes_nothing() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let (r, log) = flash_in_process(&profile, &sample.rom, &dir.path().join("store"), &["--dry-run"]);
    r.expect_code(0).expect_no_success_message();
    assert!(r.stdout.contains("nothing was written"), "{}", r.stdout);
    let plan = plan(&sample.rom, "clean");
    for (i, step) in plan.steps.iter().enumerate() {
        let line = format!("{:>3}. {}", i + 1, step.action);
        assert!(r.stdout.contains(&line), "dry run does not list {line:?}:\n{}", r.stdout);
    }
    assert!(r.stdout.contains("steps would run"), "{}", r.stdout);
    assert_nothing_written(&log);
}

#[test]
fn lock_mode_without_a_lock_script_names_the_scripts() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(sample.root.file_name().unwrap());
    copy_dir(&sample.root, &root);
    for f in ["flash_all_lock.sh", "flash_all_lock.bat"] {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let (r, log) = flash_in_process(&profile, &root, &dir.path().join("store"), &["--mode", "lock", "--yes"]);
    r.expect_code(EXIT_BAD_PACKAGE).expect_no_success_message();
    assert!(r.stderr.contains("flash_all.sh") && r.stderr.contains("flash_all_except_storage.sh"), "{}", r.all());
    assert!(writes(&log).is_empty(), "{log:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn resume_without_an_unfinished_flash_is_refused() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let (r, log) = flash_in_process(&profile, &sample.rom, &dir.path().join("store"), &["--yes", "--resume"]);
    r.expect_code(EXIT_REFUSED).expect_no_success_message();
    assert!(r.stderr.contains("no unfinished flash of this package"), "{}", r.all());
    assert_nothing_written(&log);
}

#[test]
fn a_script_that_flashes_a_non_image_or_nothing_fails_verification_everywhere() {
    // Two modified flash_all.sh: one also writes misc.txt (not one of the images) to a
    // partition, one flashes nothing at all (a "flash" that would end in a false "Done").
    // verify and flash fail with exit 4, naming the script or file, and nothing is written;
    // plan shows the plan with the failure among its warnings (text and --json) and the
    // failed check on stderr.
    let sample = sample(Form::Folder, 4, MIB);
    for (case, script, file, why) in [
        ("non-image", None, "misc.txt", "not one of the package's images"),
        ("nothing", Some("echo flashing\nexit 0\n"), "flash_all.sh", "flashes no image at all"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(sample.root.file_name().unwrap());
        copy_dir(&sample.root, &root);
        let path = root.join("flash_all.sh");
        let text = match script {
            Some(t) => t.to_string(),
            None => std::fs::read_to_string(&path).unwrap().replacen("fastboot $* reboot", "fastboot $* flash misc `dirname $0`/misc.txt\nfastboot $* reboot", 1),
        };
        std::fs::write(&path, text).unwrap();
        let r = run(&["verify", "--rom", &s(&root)]);
        r.expect_code(EXIT_BAD_PACKAGE);
        assert!(r.stdout.contains(&format!("✗ plan-image     {file}: ")) && r.stdout.contains(why), "{case}: {}", r.all());
        let r = run(&["plan", "--rom", &s(&root)]);
        assert!(r.stdout.contains("warning: the package failed verification"), "{case}: {}", r.all());
        assert!(r.stderr.contains(why), "{case}: {}", r.all());
        let r = run(&["plan", "--rom", &s(&root), "--json"]);
        let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(plan["warnings"].as_array().unwrap().iter().any(|w| w["message"].as_str().unwrap().contains("failed verification")), "{case}: {plan}");
        let profile = moonstone_profile(dir.path(), MIB, &[]);
        let (r, log) = flash_in_process(&profile, &root, &dir.path().join("store"), &["--yes"]);
        r.expect_code(EXIT_BAD_PACKAGE).expect_no_success_message();
        assert!(r.stderr.contains(why), "{case}: {}", r.all());
        assert!(writes(&log).is_empty(), "{case}: {log:?}");
    }
}
