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
}

fn fault_then_resume(case: Case) {
    let sample = sample(case.form, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--fault", case.fault]);
    let journal = dir.path().join("journal");
    let rom = s(&sample.rom);
    let flash = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["-s".into(), sim.target()];
        args.extend(case.options.iter().map(|o| o.to_string()));
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

    let before = sim.log().len();
    let resumed = flash(&["--resume"]);
    resumed.expect_code(0);
    assert!(resumed.stdout.contains(&format!("resuming at step {}", case.step)), "[{}] {}", case.fault, resumed.stdout);
    let plan = plan(&sample.rom, "clean");
    let vars = moonstone_vars();
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

#[test]
fn fail_on_a_raw_image() {
    fault_then_resume(Case { fault: "fail-on=flash:boot_ab", form: Form::Folder, options: &[], step: STEP_BOOT, partition: "boot_ab", says: "injected fault" });
}

#[test]
fn fail_on_the_second_piece_of_super() {
    fault_then_resume(Case { fault: "fail-on=flash:super#2", form: Form::Tgz, options: &[], step: STEP_SUPER, partition: "super", says: "injected fault" });
}

#[test]
fn stall_on_a_download_inside_super() {
    // Downloads: 2 CRC lists, 15 raw images, then super's pieces: #20 is its third piece.
    fault_then_resume(Case { fault: "stall-on=download#20", form: Form::Folder, options: &["--timeout", "2"], step: STEP_SUPER, partition: "super", says: "no answer from the device within 2s" });
}

#[test]
fn drop_on_an_erase() {
    fault_then_resume(Case { fault: "drop-on=erase:metadata", form: Form::Tgz, options: &[], step: STEP_ERASE_METADATA, partition: "metadata", says: "connection to the device was closed" });
}

#[test]
fn drop_after_bytes_inside_super() {
    fault_then_resume(Case { fault: "drop-after-bytes=3000000", form: Form::Tgz, options: &[], step: STEP_SUPER, partition: "super", says: "connection to the device was closed" });
}

#[test]
fn garbage_on_the_fourth_piece_of_super() {
    fault_then_resume(Case { fault: "garbage-on=flash:super#4", form: Form::Folder, options: &[], step: STEP_SUPER, partition: "super", says: "not fastboot" });
}

#[test]
fn garbage_on_a_sparse_image_after_super() {
    fault_then_resume(Case { fault: "garbage-on=flash:cust", form: Form::Tgz, options: &[], step: STEP_CUST, partition: "cust", says: "not fastboot" });
}

#[test]
fn stall_on_a_flash_times_out_with_the_write_timeout() {
    // `flash:` may take long on a real phone: it is bounded by --write-timeout (never shorter
    // than --timeout).
    fault_then_resume(Case { fault: "stall-on=flash:cust", form: Form::Tgz, options: &["--timeout", "1", "--write-timeout", "2"], step: STEP_CUST, partition: "cust", says: "no answer from the device within 2s" });
}
