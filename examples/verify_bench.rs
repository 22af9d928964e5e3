//! Package verification speed next to `gzip -dc` on the same file, in the same run.
//!
//! `cargo run --release --example verify_bench -- [SIZE_MIB] [DIR]`
//! builds (once, reused afterwards) a sample package with SIZE_MIB (default 1024) of random,
//! incompressible super.img data in DIR (default target/bench), then times
//! `gzip -dc FILE > /dev/null` and `verify` alternately, three rounds each, and prints the
//! best times, their ratio and the peak memory of this process.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mi_flash::rom::sample::{write_sample_package, SampleOptions};
use mi_flash::rom::verify::{verify, VerifyOptions};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: u64 = match args.first().map(|a| a.parse()) {
        None => 1024,
        Some(Ok(m)) => m,
        Some(Err(_)) => {
            eprintln!("usage: verify_bench [SIZE_MIB] [DIR]");
            return ExitCode::from(2);
        }
    };
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    let options = SampleOptions {
        super_data: mib << 20,
        incompressible: true,
        compression_level: 1,
        ..SampleOptions::default()
    };
    let existing = std::fs::read_dir(&dir).ok().and_then(|rd| {
        rd.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.extension().is_some_and(|x| x == "tgz")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > mib << 20)
        })
    });
    let path = match existing {
        Some(p) => p,
        None => {
            let t = Instant::now();
            match write_sample_package(&dir, &options) {
                Ok(p) => {
                    eprintln!(
                        "built {} ({} bytes) in {:.1?}",
                        p.path.display(),
                        p.size,
                        t.elapsed()
                    );
                    p.path
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut gzip_best = Duration::MAX;
    let mut verify_best = Duration::MAX;
    for round in 1..=3 {
        let t = Instant::now();
        let status = Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .stdout(Stdio::null())
            .status();
        let gz = t.elapsed();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("gzip -dc failed (is gzip installed?)");
            return ExitCode::FAILURE;
        }
        let t = Instant::now();
        let report = match verify(&path, &VerifyOptions::default()) {
            Ok(v) => v.report,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let v = t.elapsed();
        if !report.is_ok() {
            eprintln!(
                "verification failed: {:?}",
                report.failures().collect::<Vec<_>>()
            );
            return ExitCode::FAILURE;
        }
        println!(
            "round {round}: gzip -dc {gz:.2?}  verify {v:.2?}  ratio {:.2}",
            v.as_secs_f64() / gz.as_secs_f64()
        );
        gzip_best = gzip_best.min(gz);
        verify_best = verify_best.min(v);
    }
    println!(
        "package {} MiB: best gzip -dc {:.2?} ({:.0} MB/s compressed), best verify {:.2?}, ratio {:.2}, peak RSS {} MiB",
        size >> 20,
        gzip_best,
        size as f64 / gzip_best.as_secs_f64() / 1e6,
        verify_best,
        verify_best.as_secs_f64() / gzip_best.as_secs_f64(),
        peak_rss_kib().map_or_else(|| "?".to_string(), |k| (k / 1024).to_string())
    );
    ExitCode::SUCCESS
}
