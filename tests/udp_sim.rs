//! Fastboot over UDP end to end on 127.0.0.1: mi-flash's `UdpTransport` and Debian's `fastboot`
//! (AOSP 29.0.6) against `mi-flash simulate --listen udp:...`, including a link that loses and
//! duplicates datagrams (a proxy between the two), checked against what the simulator stored.

mod common;
use common::*;
use mi_flash::fastboot::FastbootClient;
use mi_flash::transport::udp::{UdpOptions, UdpTransport};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PROFILE: &str = r#"
product = "marble"
serialno = "udp-1"
unlocked = true
anti = 1
max-download-size = 16777216
[partitions]
boot = 8388608
system = 33554432
userdata = 4194304
"#;

/// `mi-flash simulate --listen udp:127.0.0.1:0`, killed when dropped.
struct UdpSim {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl UdpSim {
    fn start(dir: &Path) -> UdpSim {
        UdpSim::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> UdpSim {
        let profile = write_profile(dir, PROFILE);
        let store = dir.join("store");
        let child = mi_flash()
            .args(["simulate", "--listen", "udp:127.0.0.1:0", "--profile"])
            .arg(&profile)
            .arg("--store")
            .arg(&store)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mi-flash simulate");
        let mut child = common::KillOnDrop(Some(child));
        let line = common::first_line(child.get());
        let port = line
            .trim()
            .strip_prefix("listening on udp:127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from simulate: {line:?}"));
        UdpSim { child: child.take(), port, store }
    }

    fn partition(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.store.join("partitions").join(format!("{name}.img"))).unwrap_or_else(|e| panic!("partition {name}: {e}"))
    }

    fn logged_commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.store.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("log line is JSON")["cmd"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for UdpSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fast_options() -> UdpOptions {
    UdpOptions { response_timeout: Duration::from_millis(100), connect_attempts: 4, attempts: 50, ..Default::default() }
}

fn client(port: u16, options: UdpOptions) -> FastbootClient {
    let t = UdpTransport::connect("127.0.0.1", port, options).expect("connect over UDP");
    FastbootClient::new(Box::new(t)).with_timeouts(Duration::from_secs(10), Duration::from_secs(30))
}

#[test]
fn client_and_simulator_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UdpSim::start(dir.path());
    let mut c = client(sim.port, fast_options());
    assert_eq!(c.describe(), format!("udp:127.0.0.1:{}", sim.port));
    assert_eq!(c.getvar("product").unwrap(), "marble");
    assert_eq!(c.getvar("anti").unwrap(), "1");
    assert_eq!(c.getvar("max-download-size").unwrap(), "0x1000000");
    assert!(c.getvar("nosuchvar").is_err(), "an unknown variable is a FAIL");
    let all = c.getvar_all().unwrap();
    assert!(all.contains(&("partition-size:system".into(), "0x2000000".into())), "{all:?}");
    assert!(all.contains(&("serialno".into(), "udp-1".into())), "{all:?}");

    // Several MiB: thousands of datagrams, each acknowledged.
    let image = random_bytes(3 * 1024 * 1024 + 777, 21);
    c.download(&image).unwrap();
    c.flash("boot").unwrap();
    assert_eq!(sim.partition("boot"), image);
    // Device to host data with continuation: upload reads the staged bytes back.
    assert_eq!(c.upload().unwrap(), image);
    c.erase("userdata").unwrap();
    assert!(sim.partition("userdata").is_empty());
    assert_eq!(c.flash("nosuch").unwrap_err().device_message(), Some("No such partition: nosuch"));
    drop(c);

    // A second host session: the phone kept its state.
    let mut c = client(sim.port, fast_options());
    assert_eq!(c.getvar("product").unwrap(), "marble");
    let log = sim.logged_commands();
    assert!(log.contains(&"flash:boot".to_string()) && log.contains(&"getvar:all".to_string()), "{log:?}");
}

/// Forwards datagrams between a host and the simulator, losing and duplicating some of them.
/// `drop_every`/`dup_every` count datagrams per direction (0 = never).
struct LossyLink {
    port: u16,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    duplicated: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LossyLink {
    fn start(device_port: u16, drop_every: usize, dup_every: usize) -> LossyLink {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(("127.0.0.1", device_port)).unwrap();
        front.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        back.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let port = front.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let duplicated = Arc::new(AtomicUsize::new(0));
        let (s, d, u) = (stop.clone(), dropped.clone(), duplicated.clone());
        let thread = std::thread::spawn(move || {
            let mut host: Option<SocketAddr> = None;
            let mut buf = vec![0u8; 65536];
            let (mut up, mut down) = (0usize, 0usize);
            // How many copies of the n-th datagram of a direction go through, counted.
            let fate = |n: &mut usize| -> usize {
                let i = *n;
                *n += 1;
                let copies = if drop_every > 0 && i % drop_every == drop_every - 1 {
                    0
                } else if dup_every > 0 && i % dup_every == dup_every - 1 {
                    2
                } else {
                    1
                };
                match copies {
                    0 => d.fetch_add(1, Ordering::Relaxed),
                    2 => u.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                copies
            };
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    host = Some(from);
                    for _ in 0..fate(&mut up) {
                        let _ = back.send(&buf[..n]);
                    }
                }
                if let (Ok(n), Some(h)) = (back.recv(&mut buf), host) {
                    for _ in 0..fate(&mut down) {
                        let _ = front.send_to(&buf[..n], h);
                    }
                }
            }
        });
        LossyLink { port, stop, dropped, duplicated, thread: Some(thread) }
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn lost_and_duplicated_datagrams_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UdpSim::start(dir.path());
    // Every 7th datagram each way is lost, every 5th (of the rest) arrives twice: lost requests
    // are retransmitted, lost answers are replayed by the phone for the repeated sequence
    // number, and duplicates on either side are recognised as such.
    let link = LossyLink::start(sim.port, 7, 5);
    let options = UdpOptions { response_timeout: Duration::from_millis(30), connect_attempts: 10, attempts: 100, ..Default::default() };
    let mut c = client(link.port, options);
    assert_eq!(c.getvar("product").unwrap(), "marble");
    let image = mixed_image(1024 * 1024 + 4096, 5);
    c.download(&image).unwrap();
    c.flash("boot").unwrap();
    assert_eq!(c.getvar("serialno").unwrap(), "udp-1");
    assert_eq!(sim.partition("boot"), image, "every byte arrives once and in order");
    let downloads = sim.logged_commands().iter().filter(|c| c.starts_with("download:")).count();
    assert_eq!(downloads, 1, "a replayed answer must not run a command twice");
    assert!(link.dropped.load(Ordering::Relaxed) > 20, "the link lost datagrams");
    assert!(link.duplicated.load(Ordering::Relaxed) > 20, "the link duplicated datagrams");
}

#[test]
fn a_phone_that_never_answers_times_out_and_a_new_session_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UdpSim::start_with(dir.path(), &["--fault", "stall-on=getvar:product#1"]);
    let options = UdpOptions { response_timeout: Duration::from_millis(50), connect_attempts: 4, attempts: 6, ..Default::default() };
    let mut c = client(sim.port, options.clone());
    let started = std::time::Instant::now();
    let err = c.getvar("product").unwrap_err();
    assert!(err.to_string().contains("no answer from the device"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "gave up after {:?}", started.elapsed());
    // The stalled phone still hears queries, and an Init abandons what it was stuck on.
    let mut c = client(sim.port, options);
    assert_eq!(c.getvar("product").unwrap(), "marble");
}

#[test]
fn a_phone_that_hangs_up_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UdpSim::start_with(dir.path(), &["--fault", "drop-on=getvar:anti"]);
    let mut c = client(sim.port, fast_options());
    let started = std::time::Instant::now();
    let err = c.getvar("anti").unwrap_err();
    assert!(err.to_string().contains("the device closed the connection"), "{err}");
    // At once, not after the 5 s a silent phone is given (50 attempts of 100 ms).
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    // The phone comes back for the next session.
    let mut c = client(sim.port, fast_options());
    assert_eq!(c.getvar("product").unwrap(), "marble");
}

#[test]
fn cli_and_simulate_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    let sim = UdpSim::start(dir.path());
    let target = format!("udp:127.0.0.1:{}", sim.port);
    let out = mi_flash().args(["-s", &target, "getvar", "product"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "product: marble");
    let img = dir.path().join("boot.img");
    let image = random_bytes(2 * 1024 * 1024 + 3, 8);
    std::fs::write(&img, &image).unwrap();
    let out = mi_flash().args(["-s", &target, "flash", "boot"]).arg(&img).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sim.partition("boot"), image);
    let out = mi_flash().args(["-s", &target, "devices", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("devices --json prints JSON");
    assert_eq!(v["devices"][0]["transport"], "udp");
    assert_eq!(v["devices"][0]["product"], "marble");

    // Nothing listening: a clear error, quickly (4 queries of 500 ms).
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let out = mi_flash()
        .args(["-s", &format!("udp:127.0.0.1:{}", quiet.local_addr().unwrap().port()), "getvar", "product"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing answers fastboot on udp:127.0.0.1:"), "{err}");
    // The handshake's few attempts, not the minute a command is given.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

fn fastboot(bin: &Path, port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin).arg("-s").arg(format!("udp:127.0.0.1:{port}")).args(args).output().expect("run fastboot");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn debian_fastboot_against_the_udp_simulator() {
    let Some(fb) = require_tool("fastboot") else { return };
    let dir = tempfile::tempdir().unwrap();
    let sim = UdpSim::start(dir.path());
    let (ok, out) = fastboot(&fb, sim.port, &["getvar", "product"]);
    assert!(ok && out.contains("product: marble"), "{out}");
    let (ok, out) = fastboot(&fb, sim.port, &["getvar", "all"]);
    assert!(ok && out.contains("(bootloader) anti:1") && !out.contains("unknown status"), "{out}");

    let image = mixed_image(5 * 1024 * 1024, 9);
    let img = dir.path().join("boot.img");
    std::fs::write(&img, &image).unwrap();
    let (ok, out) = fastboot(&fb, sim.port, &["flash", "boot", img.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(sim.partition("boot"), image);
    // Split into sparse pieces of at most 1 MiB: many downloads in one UDP session.
    std::fs::write(sim.store.join("partitions/boot.img"), b"").unwrap();
    let (ok, out) = fastboot(&fb, sim.port, &["-S", "1M", "flash", "boot", img.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("Sending sparse 'boot' 1/"), "{out}");
    assert_eq!(sim.partition("boot"), image);
    let (ok, out) = fastboot(&fb, sim.port, &["erase", "userdata"]);
    assert!(ok, "{out}");
}
