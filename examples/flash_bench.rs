//! Flashing speed and memory, each measured next to a baseline in the same run (ratios, since
//! the machine is shared and noisy). The numbers and commands are in docs/performance.md.
//!
//! ```text
//! cargo build --release --bin mi-flash
//! cargo run --release --example flash_bench -- [--scenarios fastboot,gzip,link,memory,multi] [--rounds N] ...
//! ```
//!
//! Scenarios (each starts its own simulators, `mi-flash simulate` on 127.0.0.1 port 0, with
//! fresh stores in a temporary folder unless said otherwise, and stops them). mi-flash verifies
//! each package completely (`MI_FLASH_FULL_VERIFY=1`, the first flash of a download) unless a
//! case says "verified before" (the record of an earlier pass is used; docs/packages.md):
//!
//! * `fastboot`: `mi-flash flash --rom FOLDER` against the package's own `flash_all.sh` driving
//!   AOSP `fastboot` (`sh flash_all.sh -s tcp:127.0.0.1:PORT`), same sample, same simulator
//!   profile (built-in `moonstone`), over TCP loopback.
//! * `gzip`: `mi-flash flash --rom X.tgz -s sim:PROFILE` (the simulator inside the process)
//!   against `gzip -dc X.tgz > /dev/null`, on a package with incompressible super data; also
//!   the same archive verified before.
//! * `link`: against a simulator throttled to `--link-rate`, the flash pass (from the `plan`
//!   event to the end) and the whole run against the bytes sent divided by the link rate: the
//!   `.tgz` and the folder, the `.tgz` verified before, and both onto a phone flashed before
//!   (one store kept across the rounds, its partition files written over in place).
//! * `memory`: peak RSS (VmHWM) of `mi-flash flash --rom X.tgz` and, separately, of the
//!   simulator process, for a large sparse super split at `--memory-max-download-size`.
//! * `multi`: one `.tgz` flashed to `--phones` throttled simulators at once against one.
//!
//! mi-flash runs with `--json`; the benchmark timestamps each event line as it arrives to split
//! a run into its verify pass (start to the first `device` event), the checks, and the flash
//! pass (first `plan` event to the end). Peak memory is read from /proc/PID/status (VmHWM)
//! every 10 ms while the process runs.

use clap::Parser;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mi_flash::rom::sample::{write_sample_folder, write_sample_package, SampleOptions};

#[derive(Parser, Debug)]
#[command(about = "Flashing benchmarks against side-by-side baselines (docs/performance.md)")]
struct Args {
    /// Comma-separated: fastboot, gzip, link, memory, multi.
    #[arg(long, default_value = "fastboot,gzip,link,memory,multi", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Rounds per scenario (baseline and mi-flash alternate within a round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// MiB of super data for the fastboot comparison; several sizes comma-separated. The
    /// built-in moonstone profile's super partition (256 MiB) must hold it.
    #[arg(long, default_value = "18,200", value_delimiter = ',')]
    fastboot_super_mib: Vec<u64>,
    /// MiB of incompressible super data for the gzip comparison.
    #[arg(long, default_value_t = 256)]
    gzip_super_mib: u64,
    /// MiB of incompressible super data for the link-rate scenario.
    #[arg(long, default_value_t = 128)]
    link_super_mib: u64,
    /// Simulated link speed in bytes per second (USB 2.0 in practice: about 40 MB/s).
    #[arg(long, default_value_t = 40_000_000)]
    link_rate: u64,
    /// MiB of super data for the memory scenario (compressible data: the package stays small).
    #[arg(long, default_value_t = 512)]
    memory_super_mib: u64,
    /// max-download-size of the memory scenario's simulator (and the sample's CRC list).
    #[arg(long, default_value_t = 536_870_912)]
    memory_max_download_size: u64,
    /// MiB of incompressible super data for the multi-phone scenario.
    #[arg(long, default_value_t = 64)]
    multi_super_mib: u64,
    /// Phones in the multi-phone scenario.
    #[arg(long, default_value_t = 4)]
    phones: usize,
    /// gzip level of the incompressible packages (random data is stored at any level).
    #[arg(long, default_value_t = 1)]
    gzip_level: u32,
    /// Where the temporary folder goes (packages, simulator stores).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The mi-flash binary (default: target/release/mi-flash next to this example).
    #[arg(long)]
    mi_flash: Option<PathBuf>,
    /// AOSP fastboot.
    #[arg(long, default_value = "fastboot")]
    fastboot: PathBuf,
}

type Failure = String;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    let bin = mi_flash_binary(args)?;
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("mi-flash-bench-")
        .tempdir_in(&parent)
        .map_err(|e| format!("cannot create a temporary folder in {}: {e}", parent.display()))?;
    println!("mi-flash: {}", bin.display());
    println!("work dir: {}", work.path().display());
    println!("load at start: {}", loadavg());
    let bench = Bench { bin, work: work.path().to_path_buf(), args };
    for s in &args.scenarios {
        match s.as_str() {
            "fastboot" => {
                for &mib in &args.fastboot_super_mib {
                    bench.fastboot(mib)?
                }
            }
            "gzip" => bench.gzip()?,
            "link" => bench.link()?,
            "memory" => bench.memory()?,
            "multi" => bench.multi()?,
            other => return Err(format!("unknown scenario {other:?} (fastboot, gzip, link, memory, multi)")),
        }
    }
    println!("load at end: {}", loadavg());
    Ok(())
}

fn mi_flash_binary(args: &Args) -> Result<PathBuf, Failure> {
    let path = match &args.mi_flash {
        Some(p) => p.clone(),
        None => {
            // target/release/examples/flash_bench -> target/release/mi-flash
            let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
            let dir = exe.parent().and_then(Path::parent).ok_or("cannot find the target folder")?;
            dir.join(format!("mi-flash{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !path.is_file() {
        return Err(format!("{} does not exist: run `cargo build --release --bin mi-flash` first, or pass --mi-flash PATH", path.display()));
    }
    // A binary older than the sources would measure old code.
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if let (Some(b), Some(s)) = (modified(&path), newest(&src)) {
        if b < s {
            eprintln!("warning: {} is older than the sources in {}: run `cargo build --release --bin mi-flash`", path.display(), src.display());
        }
    }
    Ok(path)
}

/// Newest modification time of the files below `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() { newest(&path) } else { entry.metadata().and_then(|m| m.modified()).ok() };
        best = best.max(t);
    }
    best
}

/// Writes dirty pages out before a timed run, so one run's writes are not paid by the next.
fn settle() {
    let _ = Command::new("sync").status();
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Peak resident memory of a running process, KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A `mi-flash simulate` process on 127.0.0.1, stopped when dropped.
struct Sim {
    child: Child,
    target: String,
    peak_kib: Arc<Mutex<u64>>,
    _store: Option<tempfile::TempDir>,
}

impl Sim {
    /// A simulator with a fresh, empty store (a phone whose partition files do not exist yet).
    fn start(bin: &Path, work: &Path, profile: &str, link_rate: Option<u64>) -> Result<Sim, Failure> {
        let store = tempfile::Builder::new()
            .prefix("store-")
            .tempdir_in(work)
            .map_err(|e| format!("cannot create a simulator store: {e}"))?;
        let mut sim = Sim::start_with_store(bin, store.path(), profile, link_rate)?;
        sim._store = Some(store);
        Ok(sim)
    }

    /// A simulator on `store`, which may hold what an earlier flash wrote (a phone flashed
    /// before: its partitions are written over in place).
    fn start_with_store(bin: &Path, store: &Path, profile: &str, link_rate: Option<u64>) -> Result<Sim, Failure> {
        let mut cmd = Command::new(bin);
        cmd.args(["simulate", "--listen", "127.0.0.1:0", "--profile", profile, "--store"])
            .arg(store)
            .env_remove("ANDROID_SERIAL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(r) = link_rate {
            cmd.arg("--link-rate").arg(r.to_string());
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("simulator has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the simulator did not say where it listens".into());
            }
        };
        let Some(target) = first.strip_prefix("listening on ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("unexpected first line from the simulator: {first}"));
        };
        // Keep draining stdout so the simulator never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let peak_kib = Arc::new(Mutex::new(0));
        Ok(Sim { child, target, peak_kib, _store: None })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sample_memory(&self) {
        if let Some(k) = vm_hwm_kib(self.pid()) {
            let mut p = self.peak_kib.lock().unwrap_or_else(|p| p.into_inner());
            *p = (*p).max(k);
        }
    }

    fn peak_mib(&self) -> f64 {
        self.sample_memory();
        *self.peak_kib.lock().unwrap_or_else(|p| p.into_inner()) as f64 / 1024.0
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One timed run of a process.
struct Run {
    total: Duration,
    peak_kib: u64,
    /// JSON event lines with their arrival time since the start.
    events: Vec<(Duration, serde_json::Value)>,
}

impl Run {
    fn first(&self, event: &str) -> Option<Duration> {
        self.events.iter().find(|(_, v)| v["event"] == event).map(|(t, _)| *t)
    }

    /// Start to the first `device` event: connecting, and verifying the package.
    fn verify_pass(&self) -> Option<Duration> {
        self.first("device")
    }

    /// First `plan` event to the end of the process.
    fn flash_pass(&self) -> Option<Duration> {
        self.first("plan").map(|t| self.total.saturating_sub(t))
    }

    fn bytes_sent(&self) -> u64 {
        self.events.iter().filter(|(_, v)| v["event"] == "finished").map(|(_, v)| v["bytes_sent"].as_u64().unwrap_or(0)).sum()
    }

    /// Time the host waited for the phone after the last byte of each download was handed to
    /// the link (the phone writing the partition), summed over the run, for one phone.
    /// Whether mi-flash verified the package from the record of an earlier complete pass.
    fn used_record(&self) -> bool {
        self.events.iter().any(|(_, v)| v["event"] == "check" && v["name"] == "verified-before")
    }

    fn device_wait(&self) -> Duration {
        self.device_wait_of(None)
    }

    /// Per phone (by the events' `device` field): its flash time (`finished.elapsed_ms`)
    /// minus the time it waited for its phone to write, i.e. the time mi-flash needed.
    fn host_times(&self) -> Vec<f64> {
        self.events
            .iter()
            .filter(|(_, v)| v["event"] == "finished")
            .map(|(_, v)| {
                let device = v["device"].as_str();
                v["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0 - self.device_wait_of(device).as_secs_f64()
            })
            .collect()
    }

    fn device_wait_of(&self, device: Option<&str>) -> Duration {
        let mut wait = Duration::ZERO;
        // `progress` counts the bytes of the whole step; a download ends when that count
        // reaches the end of the current piece (or of the step, unsplit).
        let (mut piece_end, mut pieces_sum) = (None, 0);
        let mut data_done: Option<Duration> = None;
        for (t, v) in self.events.iter().filter(|(_, v)| device.is_none() || v["device"].as_str() == device) {
            match v["event"].as_str() {
                Some("step-started") => {
                    piece_end = v["bytes"].as_u64();
                    pieces_sum = 0;
                }
                Some("piece") => {
                    if let Some(d) = data_done.take() {
                        wait += t.saturating_sub(d);
                    }
                    pieces_sum += v["bytes"].as_u64().unwrap_or(0);
                    piece_end = Some(pieces_sum);
                }
                Some("progress") if v["sent"].as_u64() == piece_end => data_done = Some(*t),
                Some("step-finished") => {
                    if let Some(d) = data_done.take() {
                        wait += t.saturating_sub(d);
                    }
                }
                _ => {}
            }
        }
        wait
    }
}

/// Runs `cmd` to the end, sampling its peak memory; with `json`, its stdout lines are
/// timestamped JSON events.
fn run_process(mut cmd: Command, json: bool, what: &str, watch: &[&Sim]) -> Result<Run, Failure> {
    cmd.env_remove("ANDROID_SERIAL").env_remove("MI_FLASH_SIM_STORE").stdin(Stdio::null());
    cmd.stdout(if json { Stdio::piped() } else { Stdio::null() }).stderr(Stdio::piped());
    settle();
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
    let pid = child.id();
    let events = Arc::new(Mutex::new(Vec::new()));
    let reader = child.stdout.take().map(|out| {
        let events = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let t = start.elapsed();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    events.lock().unwrap_or_else(|p| p.into_inner()).push((t, v));
                }
            }
        })
    });
    let stderr = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(err), &mut s);
            s
        })
    });
    let mut peak = 0;
    let status = loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        for s in watch {
            s.sample_memory();
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    let total = start.elapsed();
    if let Some(r) = reader {
        let _ = r.join();
    }
    let err_text = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(format!("{what} failed ({status}):\n{}", err_text.trim_end()));
    }
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|p| p.into_inner()));
    if json && !events.iter().any(|(_, v)| v["event"] == "finished") {
        return Err(format!("{what} ended without a `finished` event:\n{}", err_text.trim_end()));
    }
    Ok(Run { total, peak_kib: peak, events })
}

/// Runs both, the first one first in odd rounds and second in even rounds, so neither always
/// pays for what the other left behind (dirty pages, a warm or cold cache).
fn alternate<A, B>(round: usize, a: impl FnOnce() -> Result<A, Failure>, b: impl FnOnce() -> Result<B, Failure>) -> Result<(A, B), Failure> {
    if round % 2 == 1 {
        let x = a()?;
        Ok((x, b()?))
    } else {
        let y = b()?;
        Ok((a()?, y))
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Prints `name: best X, median Y` for a series of seconds.
fn summary(name: &str, v: &[f64]) {
    println!("  {name:<34} best {:>8.2}s  median {:>8.2}s", best(v), median(v));
}

fn ratio(name: &str, num: &[f64], den: &[f64]) {
    println!(
        "  {name:<34} best/best {:>5.2}  median/median {:>5.2}",
        best(num) / best(den),
        median(num) / median(den)
    );
}

/// The built-in moonstone profile with a bigger super partition, another download size and
/// the serial number `sim-NAME` (phones flashed together need their own serials: the resume
/// journal is kept per serial).
fn custom_profile(dir: &Path, name: &str, super_bytes: u64, max_download: u64) -> Result<PathBuf, Failure> {
    let (_, text) = mi_flash::sim::profile::BUILTIN
        .iter()
        .find(|(n, _)| *n == "moonstone")
        .ok_or("the moonstone profile is not built in")?;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("super = ") {
            out.push_str(&format!("super = {super_bytes}\n"));
        } else if line.starts_with("max-download-size = ") {
            out.push_str(&format!("max-download-size = {max_download}\n"));
        } else if line.starts_with("serialno = ") {
            out.push_str(&format!("serialno = \"sim-{name}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The moonstone profile's download size (the sample's CRC lists are computed for it).
const MOONSTONE_MAX_DOWNLOAD: u64 = 805_306_368;

struct Bench<'a> {
    bin: PathBuf,
    work: PathBuf,
    args: &'a Args,
}

impl Bench<'_> {
    fn sample_options(&self, super_mib: u64, incompressible: bool, max_download: u64) -> SampleOptions {
        SampleOptions {
            super_data: super_mib << 20,
            incompressible,
            compression_level: if incompressible { self.args.gzip_level } else { 6 },
            max_download_size: max_download,
            ..SampleOptions::default()
        }
    }

    fn package(&self, name: &str, o: &SampleOptions) -> Result<(PathBuf, u64), Failure> {
        let t = Instant::now();
        let dir = self.work.join(name);
        let p = write_sample_package(&dir, o).map_err(|e| e.to_string())?;
        println!("  package {} ({:.0} MiB) built in {}", p.file_name, p.size as f64 / 1048576.0, secs(t.elapsed()));
        Ok((p.path, p.size))
    }

    fn journal_dir(&self) -> PathBuf {
        self.work.join("journals")
    }

    /// `mi-flash -s T... flash --rom PATH --yes --json`, verifying the package completely (the
    /// first flash of a download).
    fn mi_flash(&self, targets: &[String], rom: &Path, extra: &[&str]) -> Command {
        let mut cmd = self.mi_flash_again(targets, rom, extra);
        cmd.env("MI_FLASH_FULL_VERIFY", "1");
        cmd
    }

    /// The same, using the record of an earlier complete verification of the same archive
    /// when there is one (the next flash of the same download).
    fn mi_flash_again(&self, targets: &[String], rom: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("MI_FLASH_CACHE_DIR", self.work.join("records")).env_remove("MI_FLASH_FULL_VERIFY");
        for t in targets {
            cmd.arg("-s").arg(t);
        }
        cmd.args(extra);
        cmd.args(["flash", "--yes", "--json", "--rom"]).arg(rom).arg("--journal-dir").arg(self.journal_dir());
        cmd
    }

    fn fastboot(&self, super_mib: u64) -> Result<(), Failure> {
        println!("\n== fastboot: mi-flash flash --rom FOLDER vs sh flash_all.sh (AOSP fastboot), {super_mib} MiB super, TCP loopback ==");
        if Command::new(&self.args.fastboot).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(format!("{} is not installed (Debian: apt install fastboot)", self.args.fastboot.display()));
        }
        let o = self.sample_options(super_mib, false, MOONSTONE_MAX_DOWNLOAD);
        let t = Instant::now();
        let dir = self.work.join(format!("folder-{super_mib}"));
        let folder = write_sample_folder(&dir, &o).map_err(|e| e.to_string())?;
        println!("  sample folder {} built in {}", folder.display(), secs(t.elapsed()));
        let path_env = match self.args.fastboot.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The script calls plain `fastboot`: put the chosen one first on PATH.
            Some(p) => format!("{}:{}", p.display(), std::env::var("PATH").unwrap_or_default()),
            None => std::env::var("PATH").unwrap_or_default(),
        };
        // Two set-ups: a fresh simulator process (empty store) for every run, and one
        // simulator serving every run of both tools (a phone that stays connected: its
        // download buffer and partition files exist after the first flash).
        let kept_store = self.work.join(format!("fastboot-phone-{super_mib}"));
        std::fs::create_dir_all(&kept_store).map_err(|e| e.to_string())?;
        let shared = Sim::start_with_store(&self.bin, &kept_store, "moonstone", None)?;
        for setup in ["fresh simulator per run", "one simulator for all runs"] {
            let one_sim = setup.starts_with("one");
            let baseline = || -> Result<Run, Failure> {
                let fresh = if one_sim { None } else { Some(Sim::start(&self.bin, &self.work, "moonstone", None)?) };
                let target = fresh.as_ref().map_or(&shared.target, |s| &s.target);
                let mut cmd = Command::new("sh");
                cmd.arg("flash_all.sh").arg("-s").arg(target).current_dir(&folder).env("PATH", &path_env);
                run_process(cmd, false, "sh flash_all.sh", &[])
            };
            let ours = || -> Result<Run, Failure> {
                let fresh = if one_sim { None } else { Some(Sim::start(&self.bin, &self.work, "moonstone", None)?) };
                let target = fresh.as_ref().map_or(&shared.target, |s| &s.target);
                run_process(self.mi_flash(std::slice::from_ref(target), &folder, &[]), true, "mi-flash flash --rom", &[])
            };
            if one_sim {
                // Untimed: the first flash creates the partition files and the download buffer.
                baseline()?;
                ours()?;
            }
            println!("  -- {setup}");
            let (mut fb, mut mf, mut mf_verify, mut mf_flash, mut mem) = (vec![], vec![], vec![], vec![], vec![]);
            for round in 1..=self.args.rounds {
                let (f, m) = alternate(round, baseline, ours)?;
                println!(
                    "  round {round}: flash_all.sh+fastboot {}  mi-flash {} (verify {}, flash {})  ratio {:.2}  mi-flash peak {:.1} MiB",
                    secs(f.total),
                    secs(m.total),
                    secs(m.verify_pass().unwrap_or_default()),
                    secs(m.flash_pass().unwrap_or_default()),
                    f.total.as_secs_f64() / m.total.as_secs_f64(),
                    m.peak_kib as f64 / 1024.0
                );
                fb.push(f.total.as_secs_f64());
                mf.push(m.total.as_secs_f64());
                mf_verify.push(m.verify_pass().unwrap_or_default().as_secs_f64());
                mf_flash.push(m.flash_pass().unwrap_or_default().as_secs_f64());
                mem.push(m.peak_kib as f64 / 1024.0);
            }
            summary("sh flash_all.sh (fastboot)", &fb);
            summary("mi-flash flash --rom FOLDER", &mf);
            summary("  of which verify pass", &mf_verify);
            summary("  of which flash pass", &mf_flash);
            ratio(&format!("speed-up (fastboot / mi-flash), {setup}"), &fb, &mf);
            println!("  mi-flash peak RSS: max {:.1} MiB", mem.iter().copied().fold(0.0, f64::max));
        }
        Ok(())
    }

    fn gzip(&self) -> Result<(), Failure> {
        let mib = self.args.gzip_super_mib;
        println!("\n== gzip: mi-flash flash --rom X.tgz -s sim:PROFILE vs gzip -dc X.tgz > /dev/null, {mib} MiB incompressible super ==");
        let profile = custom_profile(&self.work, "bench-gzip", (mib << 20) + (1 << 30), MOONSTONE_MAX_DOWNLOAD)?;
        let (tgz, size) = self.package("gzip", &self.sample_options(mib, true, MOONSTONE_MAX_DOWNLOAD))?;
        let target = format!("sim:{}", profile.display());
        let (mut gz, mut mf, mut ver, mut prep, mut fl, mut mem, mut waits) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut mf_again, mut ver_again) = (vec![], vec![]);
        for round in 1..=self.args.rounds {
            let baseline = || {
                let mut cmd = Command::new("gzip");
                cmd.arg("-dc").arg(&tgz);
                run_process(cmd, false, "gzip -dc", &[])
            };
            let ours = || -> Result<Run, Failure> {
                let store = tempfile::Builder::new().prefix("store-").tempdir_in(&self.work).map_err(|e| e.to_string())?;
                let store_arg = store.path().display().to_string();
                run_process(self.mi_flash(std::slice::from_ref(&target), &tgz, &["--sim-store", &store_arg]), true, "mi-flash flash --rom", &[])
            };
            let (g, m) = alternate(round, baseline, ours)?;
            // The same archive again: its record (kept by the run above) replaces the
            // decompression of the verify pass by a SHA-256 of the file.
            let again = {
                let store = tempfile::Builder::new().prefix("store-").tempdir_in(&self.work).map_err(|e| e.to_string())?;
                let store_arg = store.path().display().to_string();
                run_process(self.mi_flash_again(std::slice::from_ref(&target), &tgz, &["--sim-store", &store_arg]), true, "mi-flash flash --rom (verified before)", &[])?
            };
            if !again.used_record() {
                return Err("the second flash did not use the record of the first verification".into());
            }
            println!(
                "  round {round}: verified before: mi-flash {} (verify {}, flash {})  ratio {:.2}",
                secs(again.total),
                secs(again.verify_pass().unwrap_or_default()),
                secs(again.flash_pass().unwrap_or_default()),
                again.total.as_secs_f64() / g.total.as_secs_f64()
            );
            mf_again.push(again.total.as_secs_f64());
            ver_again.push(again.verify_pass().unwrap_or_default().as_secs_f64());
            let v = m.verify_pass().unwrap_or_default();
            let f = m.flash_pass().unwrap_or_default();
            let p = m.total.saturating_sub(v).saturating_sub(f);
            println!(
                "  round {round}: gzip -dc {}  mi-flash {} (verify {}, checks {}, flash {})  ratio {:.2} (verify/gzip {:.2}, flash/gzip {:.2})  peak {:.1} MiB",
                secs(g.total),
                secs(m.total),
                secs(v),
                secs(p),
                secs(f),
                m.total.as_secs_f64() / g.total.as_secs_f64(),
                v.as_secs_f64() / g.total.as_secs_f64(),
                f.as_secs_f64() / g.total.as_secs_f64(),
                m.peak_kib as f64 / 1024.0
            );
            gz.push(g.total.as_secs_f64());
            mf.push(m.total.as_secs_f64());
            ver.push(v.as_secs_f64());
            prep.push(p.as_secs_f64());
            fl.push(f.as_secs_f64());
            mem.push(m.peak_kib as f64 / 1024.0);
            waits.push(m.device_wait().as_secs_f64());
        }
        println!("  package {:.0} MiB; gzip -dc best {:.0} MB/s of .tgz", size as f64 / 1048576.0, size as f64 / best(&gz) / 1e6);
        summary("gzip -dc", &gz);
        summary("mi-flash flash --rom (sim inside)", &mf);
        summary("  verify pass", &ver);
        summary("  phone checks", &prep);
        summary("  flash pass", &fl);
        summary("    of which the phone writing", &waits);
        summary("mi-flash, archive verified before", &mf_again);
        summary("  verify pass (SHA-256 of the file)", &ver_again);
        ratio("mi-flash / gzip", &mf, &gz);
        ratio("  verify pass / gzip", &ver, &gz);
        ratio("  flash pass / gzip", &fl, &gz);
        ratio("verified before / gzip", &mf_again, &gz);
        println!("  peak RSS (mi-flash + simulator in one process): max {:.1} MiB", mem.iter().copied().fold(0.0, f64::max));
        Ok(())
    }

    fn link(&self) -> Result<(), Failure> {
        let (mib, rate) = (self.args.link_super_mib, self.args.link_rate);
        println!("\n== link: flash pass and whole run vs bytes / link rate, {mib} MiB super, --link-rate {rate} ==");
        let profile = custom_profile(&self.work, "bench-link", (mib << 20) + (1 << 30), MOONSTONE_MAX_DOWNLOAD)?;
        let o = self.sample_options(mib, true, MOONSTONE_MAX_DOWNLOAD);
        let (tgz, _) = self.package("link", &o)?;
        let folder = write_sample_folder(&self.work.join("link-folder"), &o).map_err(|e| e.to_string())?;
        let profile = profile.display().to_string();
        // A phone flashed before: one store kept across the rounds, filled once here (its
        // partition files exist, as a phone's partitions do, and are written over in place).
        let kept_store = self.work.join("link-phone-flashed-before");
        std::fs::create_dir_all(&kept_store).map_err(|e| e.to_string())?;
        {
            let sim = Sim::start_with_store(&self.bin, &kept_store, &profile, None)?;
            run_process(self.mi_flash(std::slice::from_ref(&sim.target), &tgz, &[]), true, "mi-flash flash --rom (filling the kept store)", &[&sim])?;
        }
        // (label, package, verified before, phone flashed before)
        let cases: [(&str, &Path, bool, bool); 5] = [
            (".tgz", &tgz, false, false),
            ("folder", &folder, false, false),
            (".tgz verified before", &tgz, true, false),
            (".tgz verified before, phone flashed before", &tgz, true, true),
            ("folder, phone flashed before", &folder, false, true),
        ];
        let mut whole: Vec<Vec<f64>> = vec![vec![]; cases.len()];
        let (mut fl, mut ideal, mut waits, mut host, mut fl_kept, mut waits_kept) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for round in 1..=self.args.rounds {
            for (c, &(label, rom, again, kept)) in cases.iter().enumerate() {
                let sim = if kept { Sim::start_with_store(&self.bin, &kept_store, &profile, Some(rate))? } else { Sim::start(&self.bin, &self.work, &profile, Some(rate))? };
                let cmd = if again { self.mi_flash_again(std::slice::from_ref(&sim.target), rom, &[]) } else { self.mi_flash(std::slice::from_ref(&sim.target), rom, &[]) };
                let m = run_process(cmd, true, "mi-flash flash --rom", &[&sim])?;
                drop(sim);
                if again && !m.used_record() {
                    return Err("the flash did not use the record of the earlier verification".into());
                }
                let f = m.flash_pass().unwrap_or_default().as_secs_f64();
                let bytes = m.bytes_sent();
                let i = bytes as f64 / rate as f64;
                let w = m.device_wait().as_secs_f64();
                let t = m.total.as_secs_f64();
                println!(
                    "  round {round}, {label}: {bytes} bytes sent; wire time {i:.2}s; verify pass {:.2}s; flash pass {f:.2}s, ratio {:.3}; waits for the phone after data {w:.2}s, without them {:.3}; whole run {t:.2}s, ratio {:.3}",
                    m.verify_pass().unwrap_or_default().as_secs_f64(),
                    f / i,
                    (f - w) / i,
                    t / i
                );
                whole[c].push(t);
                if c == 0 {
                    fl.push(f);
                    ideal.push(i);
                    waits.push(w);
                    host.push(f - w);
                }
                if kept && again {
                    fl_kept.push(f);
                    waits_kept.push(w);
                }
            }
        }
        summary("bytes / link rate", &ideal);
        summary("flash pass (.tgz, fresh phone)", &fl);
        summary("  waits for the phone after data", &waits);
        summary("  flash pass without those waits", &host);
        summary("flash pass (phone flashed before)", &fl_kept);
        summary("  waits for the phone after data", &waits_kept);
        for (c, (label, ..)) in cases.iter().enumerate() {
            summary(&format!("whole run, {label}"), &whole[c]);
        }
        ratio("flash pass / (bytes / rate)", &fl, &ideal);
        ratio("  without the waits / (bytes / rate)", &host, &ideal);
        ratio("flash pass, phone flashed before / (bytes / rate)", &fl_kept, &ideal);
        for (c, (label, ..)) in cases.iter().enumerate() {
            ratio(&format!("whole run {label} / (bytes / rate)"), &whole[c], &ideal);
        }
        Ok(())
    }

    fn memory(&self) -> Result<(), Failure> {
        let (mib, mds) = (self.args.memory_super_mib, self.args.memory_max_download_size);
        println!("\n== memory: peak RSS of mi-flash flash --rom X.tgz, {mib} MiB sparse super split at {mds} ==");
        let profile = custom_profile(&self.work, "bench-memory", (mib << 20) + (1 << 30), mds)?;
        let (tgz, _) = self.package("memory", &self.sample_options(mib, false, mds))?;
        let profile = profile.display().to_string();
        let (mut mf, mut sims, mut times) = (vec![], vec![], vec![]);
        for round in 1..=self.args.rounds {
            let sim = Sim::start(&self.bin, &self.work, &profile, None)?;
            let m = run_process(self.mi_flash(std::slice::from_ref(&sim.target), &tgz, &[]), true, "mi-flash flash --rom", &[&sim])?;
            let pieces = m.events.iter().filter(|(_, v)| v["event"] == "piece").count();
            let sim_peak = sim.peak_mib();
            drop(sim);
            println!(
                "  round {round}: mi-flash peak {:.1} MiB, simulator peak {sim_peak:.1} MiB, {pieces} pieces, {} bytes sent, total {}",
                m.peak_kib as f64 / 1024.0,
                m.bytes_sent(),
                secs(m.total)
            );
            mf.push(m.peak_kib as f64 / 1024.0);
            sims.push(sim_peak);
            times.push(m.total.as_secs_f64());
        }
        println!("  mi-flash peak RSS: max {:.1} MiB, min {:.1} MiB", mf.iter().copied().fold(0.0, f64::max), best(&mf));
        println!("  simulator peak RSS: max {:.1} MiB", sims.iter().copied().fold(0.0, f64::max));
        summary("mi-flash flash --rom", &times);
        Ok(())
    }

    fn multi(&self) -> Result<(), Failure> {
        let (mib, rate, n) = (self.args.multi_super_mib, self.args.link_rate, self.args.phones.max(2));
        println!("\n== multi: one .tgz to {n} simulators vs 1, each --link-rate {rate}, {mib} MiB incompressible super ==");
        let profiles = (0..n)
            .map(|i| custom_profile(&self.work, &format!("bench-multi-{}", i + 1), (mib << 20) + (1 << 30), MOONSTONE_MAX_DOWNLOAD).map(|p| p.display().to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let (tgz, _) = self.package("multi", &self.sample_options(mib, true, MOONSTONE_MAX_DOWNLOAD))?;
        let (mut ones, mut many, mut one_t, mut many_t, mut mem, mut one_h, mut many_h) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for round in 1..=self.args.rounds {
            let one = || -> Result<Run, Failure> {
                let sim = Sim::start(&self.bin, &self.work, &profiles[0], Some(rate))?;
                run_process(self.mi_flash(std::slice::from_ref(&sim.target), &tgz, &[]), true, "mi-flash flash --rom (1 phone)", &[])
            };
            let several = || -> Result<Run, Failure> {
                let sims = profiles.iter().map(|p| Sim::start(&self.bin, &self.work, p, Some(rate))).collect::<Result<Vec<_>, _>>()?;
                let targets: Vec<String> = sims.iter().map(|s| s.target.clone()).collect();
                run_process(self.mi_flash(&targets, &tgz, &[]), true, "mi-flash flash --rom (several phones)", &[])
            };
            let (a, b) = alternate(round, one, several)?;
            let finished = b.events.iter().filter(|(_, v)| v["event"] == "finished").count();
            if finished != n {
                return Err(format!("{finished} of {n} phones finished"));
            }
            let (fa, fb) = (a.flash_pass().unwrap_or_default(), b.flash_pass().unwrap_or_default());
            let ha = a.host_times().into_iter().fold(0.0, f64::max);
            let hb = b.host_times().into_iter().fold(0.0, f64::max);
            println!(
                "  round {round}: 1 phone flash {} (total {}), {n} phones flash {} (total {}), ratio {:.2}; without the phones' write time {ha:.2}s vs {hb:.2}s (slowest phone), ratio {:.2}; peak {:.1} MiB",
                secs(fa),
                secs(a.total),
                secs(fb),
                secs(b.total),
                fb.as_secs_f64() / fa.as_secs_f64(),
                hb / ha,
                b.peak_kib as f64 / 1024.0
            );
            one_h.push(ha);
            many_h.push(hb);
            ones.push(fa.as_secs_f64());
            many.push(fb.as_secs_f64());
            one_t.push(a.total.as_secs_f64());
            many_t.push(b.total.as_secs_f64());
            mem.push(b.peak_kib as f64 / 1024.0);
        }
        summary("1 phone, flash pass", &ones);
        summary(&format!("{n} phones, flash pass"), &many);
        summary("1 phone, whole run", &one_t);
        summary(&format!("{n} phones, whole run"), &many_t);
        ratio(&format!("flash pass {n} / 1"), &many, &ones);
        ratio(&format!("whole run {n} / 1"), &many_t, &one_t);
        ratio(&format!("without the phones' writing {n} / 1"), &many_h, &one_h);
        println!("  mi-flash peak RSS with {n} phones: max {:.1} MiB", mem.iter().copied().fold(0.0, f64::max));
        let _ = std::io::stdout().flush();
        Ok(())
    }
}
