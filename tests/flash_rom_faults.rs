//! A phone that fails mid-flash (every `--fault` kind of the simulator, at several points,
//! including inside the split sparse `super`): mi-flash stops with an error naming the step
//! and the partition, exits non-zero and never claims success; then `flash --rom X --resume
//! --yes` against the same, still running phone continues from the failed step and the phone
//! ends byte-identical to the package.

mod common;
use common::rom::*;
use common::Sim;

const MIB: u64 = 1 << 20;

// Steps of the sample's flash_all.sh (see `mi-flash plan`): 20 flashes boot_ab, 21 the sparse
// super (5 pieces at 1 MiB), 22 cust, 23 erases metadata.
const STEP_BOOT: usize = 20;
const STEP_SUPER: usize = 21;
const STEP_CUST: usize = 22;
const STEP_ERASE_METADATA: usize = 23;

struct Case {
    fault: &'static str,
    form: Form,
    /// Extra global options for the failing run.
    options: &'static [&'static str],
    step: usize,
    partition: &'static str,
    /// Something the error must say about the cause.
    says: &'static str,
    /// Whether the failing run retried before it gave up.
    retried: bool,
}

fn fault_then_resume(case: Case) {
    let sample = sample(case.form, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    // Several faults are separated by spaces.
    let faults: Vec<&str> = case.fault.split(' ').flat_map(|f| ["--fault", f]).collect();
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &faults);
    let journal = dir.path().join("journal");
    let rom = s(&sample.rom);
    // The case's options (short timeouts, no retries) are for the failing run; the resumed run
    // uses the defaults, so a busy machine cannot make it time out.
    let flash = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["-s".into(), sim.target()];
        if !extra.contains(&"--resume") {
            args.extend(case.options.iter().map(|o| o.to_string()));
        }
        args.extend(["flash", "--rom", &rom, "--yes", "--journal-dir", &s(&journal)].map(String::from));
        args.extend(extra.iter().map(|e| e.to_string()));
        run(&args)
    };

    let failed = flash(&[]);
    assert_ne!(failed.code, 0, "{}", failed.all());
    failed.expect_no_success_message();
    let all = failed.all();
    assert!(all.contains(&format!("FAILED at step {} ({})", case.step, case.partition)), "[{}] the failure does not name step {} ({}):\n{all}", case.fault, case.step, case.partition);
    assert!(failed.stderr.contains(&format!("step {}", case.step)), "[{}] {}", case.fault, failed.stderr);
    assert!(all.to_lowercase().contains(&case.says.to_lowercase()), "[{}] the failure does not say {:?}:\n{all}", case.fault, case.says);
    assert!(all.contains("--resume"), "[{}] the user is not told about --resume:\n{all}", case.fault);
    // The journal says where to continue: the failed step is not done, the ones before it are.
    let journals: Vec<_> = std::fs::read_dir(&journal).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(journals.len(), 1, "[{}] {journals:?}", case.fault);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&journals[0]).unwrap()).unwrap();
    assert_eq!(j["interrupted"], case.step, "[{}] journal {j}", case.fault);
    let plan = plan(&sample.rom, "clean");
    let vars = moonstone_vars();
    // Done: every step before the failed one that runs on this phone, but for the checks
    // decided before the first write (product, anti-rollback, security patch).
    use mi_flash::rom::plan::Action;
    let checked_first = |a: &Action| matches!(a, Action::CheckProduct(_) | Action::CheckAnti(_) | Action::CheckSecurityPatch(_));
    let ran_before: Vec<u64> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(i, st)| i + 1 < case.step && runs(st, &vars) && !checked_first(&st.action))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let done: Vec<u64> = j["done"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
    assert_eq!(done, ran_before, "[{}] journal {j}", case.fault);
    // The failed run stopped at the failed step: the phone took the plan's operations before
    // it (and of the failed step at most its first pieces), nothing after it.
    let first_ops = |n: usize| {
        let mut until = plan.clone();
        until.steps.truncate(n);
        expected_ops(&until, &vars)
    };
    let took = logged_ops(&sim.log());
    assert!(took == first_ops(case.step - 1) || took == first_ops(case.step), "[{}] the failed run went on:\n{took:?}", case.fault);
    if !case.retried {
        assert!(!all.contains("to send it again (retry"), "[{}] retried:\n{all}", case.fault);
    }

    let before = sim.log().len();
    let resumed = flash(&["--resume"]);
    resumed.expect_code(0);
    assert!(resumed.stdout.contains(&format!("resuming at step {}", case.step)), "[{}] {}", case.fault, resumed.stdout);
    assert_store_matches(&sim.store, &sample.root, &plan, &vars);
    // The resumed run redid the failed step and what followed, not the steps before it.
    let log = read_log(&sim.store, before);
    let redone = logged_ops(&log);
    let from_failed: Vec<String> = {
        let mut p = plan.clone();
        let keep: Vec<bool> = (0..p.steps.len()).map(|i| i + 1 >= case.step || matches!(&p.steps[i].action, mi_flash::rom::plan::Action::Flash(f) if f.partition.ends_with("crclist"))).collect();
        let mut k = keep.iter();
        p.steps.retain(|_| *k.next().unwrap());
        expected_ops(&p, &vars)
    };
    assert_eq!(redone, from_failed, "[{}] the resumed run did not continue at step {}", case.fault, case.step);
    assert_eq!(std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0), 0, "the journal of the finished flash is left");
}

// Step 19 erases boot_ab; step 20 flashes it. With the CRC lists (steps 3, 4), downloads 1-2
// are the lists, 3-17 the raw images of steps 5-18 and 20, 18-22 super's five pieces.
const STEP_ERASE_BOOT: usize = 19;

#[test]
fn fail_on_a_raw_image() {
    fault_then_resume(Case { fault: "fail-on=flash:boot_ab", form: Form::Folder, options: &[], step: STEP_BOOT, partition: "boot_ab", says: "injected fault", retried: false });
}

#[test]
fn fail_on_the_second_piece_of_super() {
    fault_then_resume(Case { fault: "fail-on=flash:super#2", form: Form::Tgz, options: &[], step: STEP_SUPER, partition: "super", says: "injected fault", retried: false });
}

#[test]
fn stall_on_a_download_inside_super() {
    // Downloads: 2 CRC lists, 15 raw images, then super's pieces: #20 is its third piece.
    fault_then_resume(Case { fault: "stall-on=download#20", form: Form::Folder, options: &["--timeout", "2", "--retries", "0"], step: STEP_SUPER, partition: "super", says: "no answer from the device within 2s", retried: false });
}

#[test]
fn drop_on_an_erase() {
    fault_then_resume(Case { fault: "drop-on=erase:metadata", form: Form::Tgz, options: &[], step: STEP_ERASE_METADATA, partition: "metadata", says: "connection to the device was closed", retried: false });
}

#[test]
fn drop_after_bytes_inside_super() {
    fault_then_resume(Case { fault: "drop-after-bytes=3000000", form: Form::Tgz, options: &["--retries", "0"], step: STEP_SUPER, partition: "super", says: "connection to the device was closed", retried: false });
}

#[test]
fn garbage_on_the_fourth_piece_of_super() {
    fault_then_resume(Case { fault: "garbage-on=flash:super#4", form: Form::Folder, options: &[], step: STEP_SUPER, partition: "super", says: "not fastboot", retried: false });
}

#[test]
fn garbage_on_a_sparse_image_after_super() {
    fault_then_resume(Case { fault: "garbage-on=flash:cust", form: Form::Tgz, options: &[], step: STEP_CUST, partition: "cust", says: "not fastboot", retried: false });
}

#[test]
fn stall_on_a_flash_times_out_with_the_write_timeout() {
    // `flash:` may take long on a real phone: it is bounded by --write-timeout (never shorter
    // than --timeout).
    fault_then_resume(Case { fault: "stall-on=flash:cust", form: Form::Tgz, options: &["--timeout", "1", "--write-timeout", "2"], step: STEP_CUST, partition: "cust", says: "no answer from the device within 2s", retried: false });
}

// ---- link failures during a download with --retries: reconnect, send again, finish ----

/// The flash ends in success with `--retries 2`, says it retried, and the phone ends
/// byte-identical to the package. Returns the simulator's log.
fn fault_then_retry(fault: &str, form: Form, options: &[&str], crc: bool) -> Vec<serde_json::Value> {
    // A phone that does not check CRC lists has the package's lists verified for Xiaomi's
    // piece size: that sample is made for it.
    let sample = sample(form, 4, if crc { MIB } else { 768 * MIB });
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, if crc { &[] } else { &[("crc", "false")] });
    let faults: Vec<&str> = fault.split(' ').flat_map(|f| ["--fault", f]).collect();
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &faults);
    let journal = dir.path().join("journal");
    let mut args: Vec<String> = vec!["-s".into(), sim.target(), "--retries".into(), "2".into()];
    args.extend(options.iter().map(|o| o.to_string()));
    args.extend(["flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&journal)].map(String::from));
    let r = run(&args);
    r.expect_code(0);
    assert!(r.stdout.contains("retry 1 of 2") && r.stdout.contains("step 21: sending piece"), "[{fault}] no retry reported:\n{}", r.all());
    assert!(r.stdout.contains("Finished"), "{}", r.stdout);
    let vars = if crc { moonstone_vars() } else { std::collections::HashMap::new() };
    assert_store_matches(&sim.store, &sample.root, &plan(&sample.rom, "clean"), &vars);
    assert_eq!(std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0), 0, "the journal of the finished flash is left");
    sim.log()
}

fn okay_count(log: &[serde_json::Value], cmd: &str) -> usize {
    log.iter().filter(|e| e["cmd"] == cmd && e["result"] == "OKAY").count()
}

#[test]
fn retry_after_the_link_drops_inside_super() {
    let log = fault_then_retry("drop-after-bytes=3000000", Form::Tgz, &[], true);
    // A phone that checks CRC lists gets them again, and super starts over from its first
    // piece: piece 1 went through before the drop (inside piece 2), then all five.
    assert_eq!(okay_count(&log, "flash:crclist"), 2);
    assert_eq!(okay_count(&log, "flash:sparsecrclist"), 2);
    assert_eq!(okay_count(&log, "flash:super"), 1 + 5);
}

#[test]
fn retry_after_a_download_stalls_inside_super() {
    let log = fault_then_retry("stall-on=download#20", Form::Folder, &["--timeout", "2"], true);
    assert!(log.iter().any(|e| e["result"] == "STALL"));
    assert_eq!(okay_count(&log, "flash:super"), 2 + 5);
}

#[test]
fn retry_after_a_download_command_drops_inside_super() {
    let log = fault_then_retry("drop-on=download#20", Form::Tgz, &[], true);
    assert!(log.iter().any(|e| e["result"] == "DROP"));
    assert_eq!(okay_count(&log, "flash:sparsecrclist"), 2);
    assert_eq!(okay_count(&log, "flash:super"), 2 + 5);
}

#[test]
fn retry_sends_only_the_failed_piece_to_a_phone_without_crc_lists() {
    // No CRC lists: downloads 1-15 are the raw images, 16-20 super's pieces; #18 is piece 3.
    let log = fault_then_retry("drop-on=download#18", Form::Tgz, &[], false);
    assert_eq!(okay_count(&log, "flash:super"), 5, "pieces 1-2 were not sent again");
    assert_eq!(okay_count(&log, "flash:crclist"), 0);
    let downloads: Vec<&str> = log.iter().filter(|e| e["cmd"].as_str().unwrap_or("").starts_with("download:")).map(|e| e["result"].as_str().unwrap_or("")).collect();
    assert_eq!(downloads.iter().filter(|r| **r == "DROP").count(), 1, "{downloads:?}");
}

#[test]
fn retries_run_out() {
    // Two drops in a row with --retries 1: the second one ends the flash, resumable.
    fault_then_resume(Case { fault: "drop-on=download#20 drop-on=download#21", form: Form::Tgz, options: &["--retries", "1"], step: STEP_SUPER, partition: "super", says: "after 1 retry", retried: true });
}

#[test]
fn drop_on_a_download_command_without_retries() {
    fault_then_resume(Case { fault: "drop-on=download#20", form: Form::Tgz, options: &["--retries", "0"], step: STEP_SUPER, partition: "super", says: "connection to the device was closed", retried: false });
}

#[test]
fn a_failed_flash_is_never_retried() {
    // A FAIL, a dropped connection and a timeout while waiting for `flash:`'s result: the
    // phone may have written part of the partition, so nothing is sent again.
    fault_then_resume(Case { fault: "drop-on=flash:super#3", form: Form::Tgz, options: &["--retries", "2"], step: STEP_SUPER, partition: "super", says: "connection to the device was closed", retried: false });
}

#[test]
fn a_stalled_erase_is_never_retried() {
    fault_then_resume(Case { fault: "stall-on=erase:boot_ab", form: Form::Folder, options: &["--timeout", "1", "--write-timeout", "1"], step: STEP_ERASE_BOOT, partition: "boot_ab", says: "no answer from the device within 1s", retried: false });
}

// ---- device answers that are not what they should be ----

#[test]
fn garbage_answer_to_a_download() {
    fault_then_resume(Case { fault: "garbage-on=download#20", form: Form::Folder, options: &[], step: STEP_SUPER, partition: "super", says: "not fastboot", retried: false });
}

#[test]
fn fail_without_a_message() {
    fault_then_resume(Case { fault: "fail-empty-on=flash:cust", form: Form::Folder, options: &[], step: STEP_CUST, partition: "cust", says: "without giving a reason", retried: false });
}

#[test]
fn over_long_response() {
    fault_then_resume(Case { fault: "long-on=flash:super#2", form: Form::Tgz, options: &[], step: STEP_SUPER, partition: "super", says: "longer than 256 bytes", retried: false });
}

#[test]
fn unexpected_data_answer() {
    fault_then_resume(Case { fault: "data-on=erase:metadata", form: Form::Folder, options: &[], step: STEP_ERASE_METADATA, partition: "metadata", says: "answered DATA00001000", retried: false });
}

#[test]
fn info_flood_does_not_stop_the_flash() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--fault", "info-flood-on=flash:super#2", "--fault", "info-flood-on=getvar:product"]);
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&dir.path().join("journal"))]);
    r.expect_code(0);
    // The lines go to the log (-v), not over the user's screen.
    assert!(r.all().lines().count() < 200, "{} lines of output", r.all().lines().count());
    assert_store_matches(&sim.store, &sample.root, &plan(&sample.rom, "clean"), &moonstone_vars());
    assert_eq!(sim.log().iter().filter(|e| e["result"] == "INFO").count(), 2);
}

#[test]
fn stall_before_the_first_write_writes_nothing() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--fault", "stall-on=getvar:unlocked"]);
    let journal = dir.path().join("journal");
    let r = run(&["-s", &sim.target(), "--timeout", "1", "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&journal)]);
    assert_ne!(r.code, 0);
    r.expect_no_success_message();
    assert!(r.stderr.contains("getvar:unlocked") && r.stderr.contains("no answer from the device within 1s"), "{}", r.stderr);
    let writes: Vec<String> = sim.logged_commands().into_iter().filter(|c| !c.starts_with("getvar")).collect();
    assert!(writes.is_empty(), "commands other than getvar reached the phone: {writes:?}");
    assert_eq!(std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0), 0, "a journal was written though nothing was flashed");
}

// ---- the package changes on disk between verification and flashing ----

/// Copies a folder tree (the cached samples are never modified).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Flashes a copy of the sample (CRC list for `list_mds` pieces) to a phone taking 1 MiB
/// pieces that drops the link inside super; while mi-flash waits to reconnect (`--retry-delay
/// 5`, far longer than the test needs to notice the drop), one byte of super.img (at the
/// offset `pick` chooses in its layout) changes on disk, in place. Returns mi-flash's output,
/// whether it succeeded, and the phone's log.
fn change_super_during_retry(
    list_mds: u64,
    overrides: &[(&str, &str)],
    pick: impl Fn(&mi_flash::sparse::SparseLayout) -> usize,
) -> (String, bool, Vec<serde_json::Value>) {
    let sample = sample(Form::Folder, 4, list_mds);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pkg").join(sample.root.file_name().unwrap());
    copy_tree(&sample.root, &root);
    let profile = moonstone_profile(dir.path(), MIB, overrides);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--fault", "drop-after-bytes=3000000"]);
    let child = common::mi_flash()
        .args(["-s", &sim.target(), "--retries", "2", "--retry-delay", "5", "flash", "--rom", &s(&root), "--yes"])
        .args(["--journal-dir", &s(&dir.path().join("journal"))])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(Some(child));
    let super_img = root.join("images/super.img");
    let bytes = std::fs::read(&super_img).unwrap();
    let layout = mi_flash::sparse::SparseLayout::read_seekable(std::io::Cursor::new(&bytes)).unwrap();
    let at = pick(&layout);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sim.log().iter().any(|e| e.get("fault").is_some()) {
        assert!(std::time::Instant::now() < deadline, "the link never dropped");
        assert!(child.get().try_wait().unwrap().is_none(), "mi-flash ended before the link dropped");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // One byte written in place: the file never looks truncated or half-written to mi-flash.
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(&super_img).unwrap().write_all_at(&[bytes[at] ^ 0x5a], at as u64).unwrap();
    let out = child.take().wait_with_output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (all, out.status.success(), sim.log())
}

fn raw_chunks(layout: &mi_flash::sparse::SparseLayout) -> impl DoubleEndedIterator<Item = &mi_flash::sparse::Chunk> {
    layout.chunks.iter().filter(|c| matches!(c.kind, mi_flash::sparse::ChunkKind::Raw))
}

#[test]
fn an_image_changed_after_verification_is_not_flashed() {
    // A byte near the end of the last RAW chunk's data: the sparse structure stays valid and
    // the byte goes out in the last piece (an earlier piece would be refused by the phone's
    // own per-piece CRC check first). The retry reads the image again: it no longer matches
    // what was verified, so the piece holding the change is never sent and the run fails
    // saying why.
    let (all, ok, log) = change_super_during_retry(MIB, &[], |layout| {
        let raw = raw_chunks(layout).next_back().expect("a RAW chunk");
        raw.data_offset as usize + raw.blocks as usize * layout.blk_sz as usize - 100
    });
    assert!(!ok, "{all}");
    assert!(all.contains("images/super.img changed since it was verified"), "{all}");
    assert!(!all.contains("Finished"), "{all}");
    // Super goes in 5 pieces: piece 1 before the drop, then after the reconnect pieces 1-4,
    // which hold no changed byte; the 5th, which holds the change, is never sent whole.
    assert_eq!(okay_count(&log, "flash:super"), 1 + 4, "{log:?}");
    assert!(!log.iter().any(|e| e["cmd"] == "flash:cust"), "flashing went on after super");
}

#[test]
fn no_changed_byte_is_sent_even_to_a_phone_that_does_not_check_crc_lists() {
    // The byte changes in super's first RAW data and the phone checks no CRC lists, so only
    // mi-flash can notice. The retry reads super again one verified window at a time: the
    // window holding the change fails before anything of it is sent, so only the piece that
    // went through before the drop was ever flashed. (The package's CRC list is for Xiaomi's
    // 768 MiB pieces, what is checked for such a phone; the phone still takes 1 MiB pieces.)
    let (all, ok, log) = change_super_during_retry(768 * MIB, &[("crc", "false")], |layout| {
        raw_chunks(layout).next().expect("a RAW chunk").data_offset as usize + 100
    });
    assert!(!ok, "{all}");
    assert!(all.contains("images/super.img changed since it was verified"), "{all}");
    assert!(all.contains("nothing changed was sent"), "{all}");
    assert!(!all.contains("Finished"), "{all}");
    assert_eq!(okay_count(&log, "flash:super"), 1, "{log:?}");
    assert!(!log.iter().any(|e| e["cmd"] == "flash:cust"), "flashing went on after super");
}
