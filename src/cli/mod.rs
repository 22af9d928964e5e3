//! The command line: clap definitions, device selection, and how results are shown. The only
//! module that prints for the user or knows about terminals.

mod commands;
mod progress;
mod rom;
mod rescue;
mod target;
mod usb;

pub use target::Target;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// An error for the user: what happened, and the next step.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    pub code: i32,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), hint: None, code: 1 }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
    pub fn code(mut self, code: i32) -> CliError {
        self.code = code;
        self
    }
    pub fn from_transport(context: &str, e: crate::transport::TransportError) -> CliError {
        let hint = e.hint();
        CliError { message: format!("{context}: {e}"), hint, code: 1 }
    }
    pub fn from_fastboot(context: &str, e: crate::fastboot::FastbootError) -> CliError {
        let hint = e.hint();
        let message = if context.is_empty() { e.to_string() } else { format!("{context}: {e}") };
        CliError { message, hint, code: 1 }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "mi-flash",
    version,
    about = "Flash Xiaomi, Redmi and POCO phones in fastboot mode, safely",
    long_about = "Finds phones in fastboot mode, verifies Xiaomi fastboot ROM packages and flashes them \
                  partition by partition. `-s sim:moonstone` talks to a built-in simulated phone."
)]
pub struct Cli {
    /// The phone to use: SERIAL, usb:SERIAL, tcp:HOST[:PORT], udp:HOST[:PORT] or sim:PROFILE (a
    /// built-in profile name or a profile .toml file). `flash --rom` takes it several times.
    #[arg(short = 's', long = "serial", global = true, env = "ANDROID_SERIAL", value_name = "DEVICE")]
    pub serial: Vec<Target>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Seconds to wait for an answer from the phone.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,

    /// Seconds to wait for a `flash` or `erase` to finish.
    #[arg(long, global = true, default_value_t = 600, value_name = "SECONDS")]
    pub write_timeout: u64,

    /// Where `-s sim:PROFILE` keeps the simulated phone's partitions and log (default: the
    /// user's state directory, mi-flash/sim/PROFILE). With several sim: phones in one command,
    /// each keeps DIR/NAME.
    #[arg(long, global = true, env = "MI_FLASH_SIM_STORE", value_name = "DIR")]
    pub sim_store: Option<PathBuf>,

    /// Bytes per USB bulk transfer (16K to 16M; default 1M). Smaller values help some USB
    /// controllers that misbehave with large transfers.
    #[arg(long, global = true, value_parser = crate::transport::usb::parse_chunk_size, value_name = "SIZE")]
    pub usb_chunk_size: Option<usize>,

    /// How often `flash --rom` sends a piece again after its download failed on the link
    /// (timeout, dropped connection, USB error): it reconnects, checks it is the same phone
    /// and resends. 0 stops at the first failure. A failed `flash:`/`erase:` is never retried.
    #[arg(long, global = true, default_value_t = 2, value_name = "N")]
    pub retries: u32,

    /// Seconds `flash --rom` waits before the first retry (each further one waits twice as
    /// long, at most 10 s or this). A longer wait gives a phone whose USB comes back slowly,
    /// or a cable being reseated, time to reappear.
    #[arg(long, global = true, default_value = "1", value_parser = parse_retry_delay, value_name = "SECONDS")]
    pub retry_delay: Duration,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List phones in fastboot mode.
    Devices {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Language of the text: en (English) or id (Bahasa Indonesia); default from the locale
        /// (with --json: English unless --lang is given, so scripts see the same text).
        #[arg(long, value_parser = rescue::parse_lang)]
        lang: Option<crate::rescue::Lang>,
    },
    /// Print one variable of the phone (`all`: every variable, one per line).
    Getvar { name: String },
    /// A readable summary of what the phone reports.
    Info {
        /// The raw `getvar all` answers as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write one image to one partition (raw or Android sparse; large images are split).
    ///
    /// With --rom, flash a whole Xiaomi fastboot ROM (the .tgz as downloaded, a .zip or the
    /// extracted folder): verified first, checked against the phone, then flashed step by step.
    #[command(override_usage = "mi-flash flash PARTITION FILE\n       mi-flash flash --rom PATH [--mode clean|keep-data|lock] [--yes] [--dry-run] [--resume] [--all] [--json]")]
    Flash {
        #[arg(required_unless_present = "rom", conflicts_with = "rom")]
        partition: Option<String>,
        #[arg(required_unless_present = "rom", conflicts_with = "rom")]
        file: Option<PathBuf>,
        /// The fastboot ROM: the .tgz as downloaded, a .zip, or the extracted folder.
        #[arg(long, value_name = "PATH")]
        rom: Option<PathBuf>,
        /// With --rom: clean (flash_all), keep-data (flash_all_except_storage), lock (flash_all_lock).
        #[arg(long, value_enum, default_value = "clean", requires = "rom")]
        mode: rom::ModeArg,
        /// With --rom: also check against this manifest of known packages (besides the one built
        /// into mi-flash and roms-manifest.toml in the current folder).
        #[arg(long, value_name = "FILE", env = "MI_FLASH_MANIFEST")]
        manifest: Option<PathBuf>,
        /// Split images larger than this (like AOSP's -S) instead of the phone's own
        /// max-download-size. Decimal, 0x hex, or with K/M/G.
        #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
        max_download_size: Option<u64>,
        #[command(flatten)]
        records: rom::RecordArgs,
        #[command(flatten)]
        opts: rom::FlashRomArgs,
    },
    /// Verify a fastboot ROM package offline: file name MD5 fragment, md5sum.xml, CRC lists,
    /// manifest, and that the flash script's images are there. Exit 0 only if all is well.
    Verify {
        #[command(flatten)]
        rom: rom::RomArgs,
        #[arg(long)]
        json: bool,
    },
    /// Print the plan mi-flash builds from a package's flash script (without running it).
    Plan {
        #[command(flatten)]
        rom: rom::RomArgs,
        #[arg(long)]
        json: bool,
    },
    /// Erase userdata and metadata: a factory reset from fastboot (needs an unlocked bootloader).
    Wipe {
        #[arg(long)]
        yes: bool,
    },
    /// Manage the list of known packages (roms-manifest.toml).
    #[command(subcommand)]
    Manifest(ManifestCmd),
    /// Write a small generated Xiaomi-style fastboot ROM (for trying mi-flash and for tests).
    SampleRom {
        /// Folder to write into.
        out: PathBuf,
        /// Write the extracted folder instead of the .tgz.
        #[arg(long)]
        folder: bool,
        /// Piece size the sample's sparsecrclist.txt is made for (default 768 MiB).
        #[arg(long, value_parser = parse_size_arg, value_name = "BYTES")]
        max_download_size: Option<u64>,
        /// MiB of data in super.img (default 18).
        #[arg(long, value_name = "MIB")]
        super_mib: Option<u64>,
        /// Random, incompressible data (for benchmarks).
        #[arg(long)]
        incompressible: bool,
        /// gzip level of the .tgz, 0 to 9 (default 6, like `tar czf`).
        #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u32).range(0..=9))]
        gzip_level: Option<u32>,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Man,
    /// Erase a partition.
    Erase { partition: String },
    /// Reboot the phone: to Android, or to bootloader, fastboot (fastbootd), recovery or edl.
    Reboot {
        #[arg(value_enum)]
        target: Option<RebootArg>,
    },
    /// Make slot a or b the active one.
    SetActive { slot: String },
    /// Send an OEM command (for example `oem device-info`).
    Oem {
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the CRC lists Xiaomi packages carry (crclist.txt, sparsecrclist.txt in both
    /// formats) for these images.
    Crc {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Split size the piece CRCs assume (default: what Xiaomi's generators use, 768 MiB for
        /// the per-piece format and 512 MiB for the old one). Hex with 0x, or decimal.
        #[arg(long, value_parser = parse_size_arg, value_name = "BYTES")]
        max_download_size: Option<u64>,
    },
    /// Run a simulated Xiaomi phone that fastboot clients (mi-flash, AOSP fastboot) can use.
    Simulate(commands::SimulateArgs),
    /// Talk to a phone in Mi Recovery ("Connect with MIAssistant"): read it, factory reset,
    /// reboot.
    Recovery(rescue::RecoveryArgs),
    /// A step-by-step guide for a phone you cannot get into (English / Bahasa Indonesia).
    Rescue(rescue::RescueArgs),
    /// Check this computer: USB access, udev rule or driver, disk space, state directory.
    Doctor(rescue::DoctorArgs),
    /// Print the Linux udev rules that let a normal user open Xiaomi phones over USB (install
    /// them with `mi-flash udev-rules | sudo tee /etc/udev/rules.d/51-mi-flash.rules`).
    UdevRules,
}

/// A byte count: decimal, hex with 0x, or with a K/M/G suffix (powers of 1024).
pub fn parse_size_arg(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    crate::fastboot::codec::parse_size(num)
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a size (bytes, 0x hex, or with K/M/G)"))
}

#[derive(Subcommand, Debug)]
pub enum ManifestCmd {
    /// Verify a package and append its entry (name, size, SHA-256, MD5, anti).
    Add {
        package: PathBuf,
        /// The manifest file to append to.
        #[arg(long, default_value = "roms-manifest.toml")]
        manifest: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootArg {
    System,
    Bootloader,
    Fastboot,
    Recovery,
    Edl,
}

/// Settings every device command shares.
fn parse_retry_delay(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=600.0).contains(v))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds from 0 to 600"))
}

pub struct Context {
    /// Phones named with `-s` (or `ANDROID_SERIAL`), in order.
    pub targets: Vec<Target>,
    pub connect: target::ConnectOptions,
    /// `--retries`.
    pub retries: u32,
    /// `--retry-delay`.
    pub retry_delay: Duration,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let ctx = Context {
        targets: cli.serial.clone(),
        connect: target::ConnectOptions {
            response_timeout: Duration::from_secs(cli.timeout.max(1)),
            write_timeout: Duration::from_secs(cli.write_timeout.max(1)),
            sim_store: cli.sim_store.clone(),
            sim_store_per_phone: cli.serial.iter().filter(|t| matches!(t, Target::Sim { .. })).count() > 1,
            usb_chunk_size: cli.usb_chunk_size,
        },
        retries: cli.retries,
        retry_delay: cli.retry_delay,
    };
    let result = target::check_sim_store_names(&ctx.targets, &ctx.connect).and_then(|()| commands::run(cli.command, &ctx));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(h) = &e.hint {
                eprintln!("  next: {h}");
            }
            e.code
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env).format_timestamp(None).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_takes_seconds_from_0_to_600() {
        assert_eq!(parse_retry_delay("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_retry_delay("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_retry_delay("0"), Ok(Duration::ZERO));
        for bad in ["-1", "601", "nan", "inf", "", "1s"] {
            let e = parse_retry_delay(bad).unwrap_err();
            assert!(e.contains("seconds from 0 to 600"), "{bad}: {e}");
        }
        let cli = Cli::try_parse_from(["mi-flash", "--retry-delay", "3", "devices"]).unwrap();
        assert_eq!(cli.retry_delay, Duration::from_secs(3));
        let cli = Cli::try_parse_from(["mi-flash", "devices"]).unwrap();
        assert_eq!(cli.retry_delay, Duration::from_secs(1));
    }
}
