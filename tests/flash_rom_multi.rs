//! Several phones at once: `flash --rom` with three `-s tcp:...` simulators fed from one
//! decompression of the .tgz, one of them failing mid-way through the split `super`. The two
//! others end byte-identical to the package, the summary has one OK or FAILED line per phone,
//! the exit code is non-zero, and the failed phone alone can then be resumed.

mod common;
use common::rom::*;
use common::Sim;

const MIB: u64 = 1 << 20;

#[test]
fn three_phones_one_fails_the_others_finish() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let sims: Vec<Sim> = (1..=3)
        .map(|n| {
            let profile = moonstone_profile(dir.path(), MIB, &[("serialno", &format!("\"multi-{n}\""))]);
            let fault: &[&str] = if n == 2 { &["--fault", "fail-on=flash:super#3"] } else { &[] };
            Sim::start(&s(&profile), &dir.path().join(format!("store-{n}")), fault)
        })
        .collect();
    let journal = dir.path().join("journal");
    let mut args: Vec<String> = Vec::new();
    for sim in &sims {
        args.extend(["-s".to_string(), sim.target()]);
    }
    args.extend(["flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&journal)].map(String::from));
    let r = run(&args);
    assert_ne!(r.code, 0, "{}", r.all());
    // The phones that finished say so; the failed one does not, and neither does the end.
    assert!(!r.all().contains("Done."), "{}", r.all());
    assert!(!r.stdout.contains(&format!("[{}] Finished", sims[1].target())), "{}", r.stdout);
    assert_eq!(r.stdout.matches("] Finished: 26 steps").count(), 2, "{}", r.stdout);

    let plan = plan(&sample.rom, "clean");
    let vars = moonstone_vars();
    let summary: Vec<&str> = r.stdout.lines().skip_while(|l| *l != "Summary:").collect();
    assert_eq!(summary.len(), 4, "summary:\n{}", r.stdout);
    for (n, sim) in sims.iter().enumerate() {
        let line = summary.iter().find(|l| l.contains(&sim.target())).unwrap_or_else(|| panic!("no summary line for {}:\n{}", sim.target(), r.stdout));
        if n == 1 {
            assert!(line.contains(": FAILED:") && line.contains("step 21"), "{line}");
            // Each line of the flash is marked with its phone; the failure names the step.
            assert!(r.stdout.contains(&format!("[{}] FAILED at step 21 (super)", sim.target())), "{}", r.stdout);
        } else {
            assert!(line.contains(": OK ("), "{line}");
            assert_store_matches(&sim.store, &sample.root, &plan, &vars);
            assert_eq!(logged_ops(&sim.log()), expected_ops(&plan, &vars));
        }
    }
    assert!(r.stderr.contains("1 of 3 phones failed"), "{}", r.stderr);

    // The failed phone continues alone.
    let resumed = run(&["-s", &sims[1].target(), "flash", "--rom", &s(&sample.rom), "--yes", "--resume", "--journal-dir", &s(&journal)]);
    resumed.expect_code(0);
    assert!(resumed.stdout.contains("resuming at step 21"), "{}", resumed.stdout);
    assert_store_matches(&sims[1].store, &sample.root, &plan, &vars);
}

#[test]
fn a_phone_refused_before_writing_does_not_stop_the_others() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let ok = Sim::start(&s(&moonstone_profile(dir.path(), MIB, &[("serialno", "\"multi-ok\"")])), &dir.path().join("ok"), &[]);
    let locked = moonstone_profile(dir.path(), MIB, &[("serialno", "\"multi-locked\""), ("unlocked", "false")]);
    let locked = Sim::start(&s(&locked), &dir.path().join("locked"), &[]);
    let r = run(&["-s", &ok.target(), "-s", &locked.target(), "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&dir.path().join("j"))]);
    // Refused is the worst outcome here, so it is the exit code.
    r.expect_code(3);
    assert!(!r.all().contains("Done."), "{}", r.all());
    assert!(r.stdout.contains(&format!("  {}: OK (", ok.target())), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("  {}: FAILED: the phone's bootloader is locked", locked.target())), "{}", r.stdout);
    assert_store_matches(&ok.store, &sample.root, &plan(&sample.rom, "clean"), &moonstone_vars());
    assert!(writes(&locked.log()).is_empty(), "{:?}", locked.logged_commands());
}

#[test]
fn several_in_process_phones_keep_their_own_stores_under_one_sim_store() {
    // `-s sim:A -s sim:B --sim-store DIR`: each simulated phone keeps DIR/NAME, instead of
    // both writing into the same partitions folder and log.
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profiles: Vec<std::path::PathBuf> =
        (1..=2).map(|n| moonstone_profile(dir.path(), MIB, &[("serialno", &format!("\"inproc-{n}\""))])).collect();
    let store = dir.path().join("stores");
    let mut args: Vec<String> = Vec::new();
    for p in &profiles {
        args.extend(["-s".to_string(), format!("sim:{}", s(p))]);
    }
    args.extend(["--sim-store", &s(&store), "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&dir.path().join("j"))].map(String::from));
    let r = run(&args);
    r.expect_code(0);
    let plan = plan(&sample.rom, "clean");
    for p in &profiles {
        let own = store.join(p.file_stem().unwrap());
        let compared = assert_store_matches(&own, &sample.root, &plan, &moonstone_vars());
        assert!(compared >= 10, "{}: only {compared} partitions", own.display());
        assert_eq!(logged_ops(&read_log(&own, 0)), expected_ops(&plan, &moonstone_vars()), "{}", own.display());
    }
    assert!(!store.join("partitions").exists(), "a store shared by both phones");
    // Two profile files with the same name would share DIR/NAME: refused before anything.
    let twin = dir.path().join("twin");
    std::fs::create_dir(&twin).unwrap();
    let twin_profile = twin.join(profiles[0].file_name().unwrap());
    std::fs::write(&twin_profile, std::fs::read_to_string(&profiles[1]).unwrap()).unwrap();
    let r = run(&["-s", &format!("sim:{}", s(&profiles[0])), "-s", &format!("sim:{}", s(&twin_profile)), "--sim-store", &s(&dir.path().join("s2")), "flash", "--rom", &s(&sample.rom), "--yes"]);
    r.expect_code(2);
    assert!(r.stderr.contains("would both keep their store in --sim-store DIR/"), "{}", r.stderr);
    assert!(!dir.path().join("s2").exists());
}
