//! Ctrl-C during `flash --rom`: the flash stops at the next chunk with exit code 130 and a
//! message naming the step, never claims success, and `--resume` then completes it.
#![cfg(unix)]

mod common;
use common::rom::*;
use common::Sim;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

#[test]
fn ctrl_c_inside_super_stops_cleanly_and_resumes() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    // 2 MB/s: the 4.3 MiB super takes a couple of seconds, long enough to be interrupted.
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--link-rate", "2000000"]);
    let journal = dir.path().join("journal");
    let args = ["-s".to_string(), sim.target(), "flash".into(), "--rom".into(), s(&sample.rom), "--yes".into(), "--journal-dir".into(), s(&journal)];
    let mut child = common::mi_flash().args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
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
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut waited = 0;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if waited >= 200 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mi-flash did not stop within 20 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    };
    let out = reader.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(err.contains("stopped by the user during step 21"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(!out.contains("Finished") && !out.contains("Done."), "{out}");

    let resumed = run(&args.iter().map(String::as_str).chain(["--resume"]).collect::<Vec<_>>());
    resumed.expect_code(0);
    assert!(resumed.stdout.contains("resuming at step 21"), "{}", resumed.stdout);
    assert_store_matches(&sim.store, &sample.root, &plan(&sample.rom, "clean"), &moonstone_vars());
}
