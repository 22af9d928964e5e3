//! Writes the sample fastboot ROM package (the same one `mi-flash sample-rom OUT_DIR` makes).
//!
//! `cargo run --example make_sample_rom -- OUT_DIR [SUPER_MIB] [--incompressible] [--folder]`

use std::path::PathBuf;
use std::process::ExitCode;

use mi_flash::rom::sample::{write_sample_folder, write_sample_package, SampleOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!("usage: make_sample_rom OUT_DIR [SUPER_MIB] [--incompressible] [--folder]");
        return ExitCode::from(2);
    };
    let mut options = SampleOptions::default();
    if let Some(mib) = args.get(1).filter(|a| !a.starts_with("--")) {
        match mib.parse::<u64>() {
            Ok(m) => options.super_data = m << 20,
            Err(_) => {
                eprintln!("SUPER_MIB must be a number of MiB, got {mib:?}");
                return ExitCode::from(2);
            }
        }
    }
    options.incompressible = args.iter().any(|a| a == "--incompressible");
    if args.iter().any(|a| a == "--folder") {
        return match write_sample_folder(&out, &options) {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match write_sample_package(&out, &options) {
        Ok(p) => {
            println!(
                "{}\n  size {}\n  md5 {}\n  sha256 {}",
                p.path.display(),
                p.size,
                p.md5,
                p.sha256
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
