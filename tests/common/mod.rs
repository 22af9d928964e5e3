//! Shared helpers for the end-to-end tests: start `mi-flash simulate` on a free loopback port
//! and stop it afterwards, find Debian's tools, make test images.
#![allow(dead_code)]

pub mod rom;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn mi_flash() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mi-flash"));
    c.env_remove("ANDROID_SERIAL").env_remove("MI_FLASH_SIM_STORE").env_remove("RUST_LOG");
    // Every test verifies its package completely (tests/package_record.rs covers the records
    // of earlier verifications), and the records it leaves stay out of the user's cache.
    c.env("MI_FLASH_FULL_VERIFY", "1").env("MI_FLASH_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-records"));
    c
}

/// Returns the path of a Debian tool, or None (with a notice) when it is missing outside CI.
/// Under CI=true a missing tool fails the test: CI must have installed it.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is not installed, but CI=true: .ci/run must install it");
        }
        eprintln!("skipped: {name} not installed");
    }
    found
}

/// A `mi-flash simulate` process on 127.0.0.1, killed when dropped.
pub struct Sim {
    child: Child,
    pub port: u16,
    pub store: PathBuf,
}

impl Sim {
    pub fn start(profile: &str, store: &Path, extra: &[&str]) -> Sim {
        let child = mi_flash()
            .args(["simulate", "--listen", "127.0.0.1:0", "--profile", profile, "--store"])
            .arg(store)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mi-flash simulate");
        // Killed if the banner is not what it should be.
        let mut child = KillOnDrop(Some(child));
        let line = first_line(child.get());
        let port = line
            .trim()
            .strip_prefix("listening on tcp:127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from simulate: {line:?}"));
        Sim { child: child.take(), port, store: store.to_path_buf() }
    }

    pub fn target(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    pub fn partition(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.store.join("partitions").join(format!("{name}.img")))
            .unwrap_or_else(|e| panic!("partition {name}: {e}"))
    }

    pub fn log(&self) -> Vec<serde_json::Value> {
        complete_log_lines(&std::fs::read_to_string(self.store.join("log.jsonl")).unwrap_or_default())
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    pub fn logged_commands(&self) -> Vec<String> {
        self.log().iter().map(|e| e["cmd"].as_str().unwrap_or("").to_string()).collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that is killed (and reaped) when this guard is dropped, also when a test
/// panics; `take` hands the child over for a normal end.
pub struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    pub fn get(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already taken")
    }

    pub fn take(&mut self) -> Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The first line a child prints on its piped stdout (empty if it printed none).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    line
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image with random data, zero runs and a repeated pattern: sparse-friendly.
pub fn mixed_image(len: usize, seed: u64) -> Vec<u8> {
    let mut img = random_bytes(len, seed);
    let q = len / 8;
    img[q..2 * q].fill(0);
    for (i, b) in img[4 * q..5 * q].iter_mut().enumerate() {
        *b = [0xde, 0xad, 0xbe, 0xef][i % 4];
    }
    img
}

pub fn write_profile(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("profile.toml");
    std::fs::write(&p, text).expect("write profile");
    p
}

/// The shared Xiaomi script fixtures (`../shared/fixtures/xiaomi-scripts` beside the crate, or
/// `MI_FLASH_XIAOMI_SCRIPTS`), or None with a notice when absent outside CI; under CI=true a
/// missing folder fails the test.
pub fn fixtures() -> Option<PathBuf> {
    let dir = match std::env::var_os("MI_FLASH_XIAOMI_SCRIPTS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/xiaomi-scripts")),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("fixtures not found at {} (CI=true)", dir.display());
    }
    println!("skipped: fixtures not found");
    None
}

/// The finished lines of a simulator log that may still be being written (a line without its
/// newline is an entry the simulator is writing at this moment).
pub fn complete_log_lines(text: &str) -> impl Iterator<Item = &str> {
    let done = text.rfind('\n').map_or(0, |i| i + 1);
    text[..done].lines()
}
