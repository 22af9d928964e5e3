//! Ctrl-C during `flash --rom`: the flash stops at the next chunk with exit code 130 and a
//! message naming the step, never claims success, removes its spill folder, and `--resume`
//! then completes it. A second Ctrl-C ends mi-flash at once, and removes the spill folder too.
#![cfg(unix)]

mod common;
use common::rom::*;
use common::Sim;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// The spill folders in `tmp`.
fn spill_folders(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mi-flash-spill-"))
        .collect()
}

/// Starts flashing the sample `.tgz` (TMPDIR in `tmp`), waits until super is being sent and
/// `ready` holds, checks the spill folder is there, sends `interrupts` SIGINTs, and returns the
/// exit code, stdout and stderr.
fn flash_and_interrupt(
    args: &[String],
    tmp: &std::path::Path,
    interrupts: usize,
    gap: Duration,
    ready: &dyn Fn() -> bool,
) -> (Option<i32>, String, String) {
    let child = common::mi_flash().args(args).env("TMPDIR", tmp).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Killed if the test fails before mi-flash ends.
    let mut guard = common::KillOnDrop(Some(child));
    let child = guard.get();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Step 20 (boot_ab) done: super is being sent.
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("[20/28]") => break,
            Ok(_) => {}
            Err(e) => panic!("no step 20 line: {e}"),
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "mi-flash never reached the point to interrupt");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(spill_folders(tmp).len(), 1, "no spill folder while flashing a .tgz");
    for i in 0..interrupts {
        // Signals sent at once would merge into one.
        std::thread::sleep(gap);
        let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        // A second signal may find mi-flash already gone.
        assert!(status.success() || i > 0);
    }
    let mut waited = 0;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if waited >= 200 {
            panic!("mi-flash did not stop within 20 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    };
    let out = reader.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (code, out, err)
}

#[test]
fn ctrl_c_inside_super_stops_cleanly_and_resumes() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    // 2 MB/s: the 4.3 MiB super takes a couple of seconds, long enough to be interrupted.
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--link-rate", "2000000"]);
    let journal = dir.path().join("journal");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let args = ["-s".to_string(), sim.target(), "flash".into(), "--rom".into(), s(&sample.rom), "--yes".into(), "--journal-dir".into(), s(&journal)];
    let (code, out, err) = flash_and_interrupt(&args, &tmp, 1, Duration::ZERO, &|| true);
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert_eq!(spill_folders(&tmp), Vec::<String>::new(), "the spill folder was left behind");
    assert!(err.contains("stopped by the user during step 21"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!out.contains("Finished") && !out.contains("Done."), "{out}");

    let resumed = run(&args.iter().map(String::as_str).chain(["--resume"]).collect::<Vec<_>>());
    resumed.expect_code(0);
    assert!(resumed.stdout.contains("resuming at step 21"), "{}", resumed.stdout);
    assert_store_matches(&sim.store, &sample.root, &plan(&sample.rom, "clean"), &moonstone_vars());
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_still_removes_the_spill_folder() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    // super's third piece is never answered: mi-flash waits for the phone (up to --timeout)
    // and the first Ctrl-C cannot stop it before that; the second one ends it at once.
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--fault", "stall-on=download#20"]);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let args = ["-s".to_string(), sim.target(), "--timeout".into(), "60".into(), "flash".into(), "--rom".into(), s(&sample.rom), "--yes".into(), "--journal-dir".into(), s(&dir.path().join("journal"))];
    let started = std::time::Instant::now();
    // Both signals go once the phone has taken the stalled download command, so mi-flash is
    // waiting for its answer.
    let stalled = || sim.log().iter().any(|e| e["result"] == "STALL");
    let (code, out, err) = flash_and_interrupt(&args, &tmp, 2, Duration::from_millis(500), &stalled);
    assert!(started.elapsed() < Duration::from_secs(30), "mi-flash waited for the phone instead of exiting");
    assert!(!err.contains("stopped by the user"), "the first Ctrl-C stopped the flash: the second one was not tested\n{err}");
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(!out.contains("Finished") && !out.contains("Done."), "{out}");
    assert_eq!(spill_folders(&tmp), Vec::<String>::new(), "the spill folder was left behind");
}
