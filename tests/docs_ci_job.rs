//! The GitHub Actions job in docs/flashing.md ("Testing a package in CI") is what ROM
//! maintainers copy: its shell steps run here as written, against the sample package (the
//! job's `product = "piano"` becomes the sample's `moonstone`, its build step `sample-rom`).
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Command;

/// The `run: |` block of the step named `name` in the doc's YAML, dedented.
fn step(doc: &str, name: &str) -> String {
    let start = doc.find(&format!("- name: {name}\n")).unwrap_or_else(|| panic!("no step {name:?} in docs/flashing.md"));
    let after = &doc[start..];
    let run = after.find("run: |\n").unwrap_or_else(|| panic!("step {name:?} has no run: | block")) + "run: |\n".len();
    let mut lines = Vec::new();
    let mut indent = None;
    for line in after[run..].lines() {
        let depth = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent.is_some_and(|i| depth < i) || line.starts_with("```") {
            break;
        }
        let i = *indent.get_or_insert(depth);
        lines.push(line.get(i..).unwrap_or("").to_string());
    }
    lines.join("\n") + "\n"
}

/// Kills the simulated phones the job left running in `dir` (the job starts one with `&` and
/// lets the runner clean up; here the test does).
struct KillSimulatorsIn<'a>(&'a Path);

impl Drop for KillSimulatorsIn<'_> {
    fn drop(&mut self) {
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let (Ok(cwd), Ok(cmd)) = (std::fs::read_link(e.path().join("cwd")), std::fs::read(e.path().join("cmdline"))) else { continue };
            if cwd == self.0 && String::from_utf8_lossy(&cmd).contains("simulate") {
                let _ = Command::new("kill").arg(e.file_name()).status();
            }
        }
    }
}

#[test]
fn the_documented_ci_job_flashes_the_sample_and_checks_the_phone() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/flashing.md")).unwrap();
    let doc = &doc[doc.find("## Testing a package in CI").expect("the CI section")..];
    let start = step(doc, "Start the simulated phone");
    assert!(start.contains("product = \"piano\""), "{start}");
    let start = start.replace("product = \"piano\"", "product = \"moonstone\"");
    let flash = step(doc, "Verify and flash");
    let check = step(doc, "Check what the phone received");

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().canonicalize().unwrap();
    let _cleanup = KillSimulatorsIn(&work);
    let bin = Path::new(env!("CARGO_BIN_EXE_mi-flash")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let github_env = work.join("github.env");
    std::fs::write(&github_env, "").unwrap();
    let run = |name: &str, script: &str| {
        // A step that waits forever fails the test instead of hanging it.
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "bash", "-e", "-c", script]).current_dir(&work).env("PATH", &path).env("GITHUB_ENV", &github_env);
        // What the job keeps (journals, records) stays in the test's folder.
        for var in ["XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"] {
            cmd.env(var, work.join("home").join(var));
        }
        cmd.env_remove("MI_FLASH_SIM_STORE").env_remove("ANDROID_SERIAL").env_remove("MI_FLASH_CACHE_DIR");
        for line in std::fs::read_to_string(&github_env).unwrap().lines() {
            if let Some((k, v)) = line.split_once('=') {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "step {name:?} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run("Build the package", "mi-flash sample-rom out/ >/dev/null\n");
    run("Start the simulated phone", &start);
    assert!(std::fs::read_to_string(&github_env).unwrap().starts_with("PHONE=tcp:127.0.0.1:"));
    run("Verify and flash", &flash);
    let verify: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("verify.json")).unwrap()).unwrap();
    assert_eq!(verify["ok"], true);
    let events = std::fs::read_to_string(work.join("flash.jsonl")).unwrap();
    assert!(events.lines().last().is_some_and(|l| l.contains("\"event\":\"finished\"")), "{events}");
    let tail = run("Check what the phone received", &check);
    assert!(tail.contains("\"cmd\":\"reboot\""), "{tail}");
}
