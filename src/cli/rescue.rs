//! `mi-flash recovery`, `mi-flash rescue` and `mi-flash doctor`, the simulated recovery of
//! `mi-flash simulate --recovery`, and the non-fastboot rows of `mi-flash devices`.
//!
//! Every sentence of `recovery`, `rescue` and `doctor` comes from the rescue text catalogue,
//! in the language of `--lang` or the locale.

use super::target::{self, Target};
use super::{CliError, Context};
use crate::rescue::adb::AdbError;
use crate::rescue::doctor::{self, DoctorEnv, Status};
use crate::rescue::guide::{self, Detection};
use crate::rescue::miassistant::{FormatOutcome, MiAssistant, RebootTarget};
use crate::rescue::tcp::AdbTcpTransport;
use crate::rescue::text::{Catalogue, Lang};
use crate::rescue::{usb as rescue_usb, PhoneMode};
use crate::sim::recovery::{self as sim_recovery, RecoveryHandle};
use crate::sim::SimOptions;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

pub(super) fn parse_lang(text: &str) -> Result<Lang, String> {
    Lang::parse(text).ok_or_else(|| format!("`{text}` is not a supported language: use en (English) or id (Bahasa Indonesia)"))
}

#[derive(clap::Args, Debug)]
pub struct RecoveryArgs {
    /// Language of the messages: en or id (default: from the locale).
    #[arg(long, value_parser = parse_lang, global = true)]
    pub lang: Option<Lang>,
    #[command(subcommand)]
    pub command: RecoveryCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum RecoveryCmd {
    /// What Mi Recovery reports: codename, version, serial, Android version, branch, language,
    /// region, ROM zone.
    Info {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Factory reset: erase all user data (works with a locked bootloader; does NOT remove the
    /// Mi Account lock). Asks for confirmation.
    FormatData {
        /// Do not ask (for scripts). Without it, a stdin that is not a terminal is refused.
        #[arg(long)]
        yes: bool,
    },
    /// Restart the phone: to Android (default), the bootloader (fastboot) or Mi Recovery.
    Reboot {
        #[arg(value_enum)]
        target: Option<RecoveryRebootArg>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryRebootArg {
    System,
    Bootloader,
    Recovery,
}

#[derive(clap::Args, Debug)]
pub struct RescueArgs {
    /// Language: en (English) or id (Bahasa Indonesia); default from the locale.
    #[arg(long, value_parser = parse_lang)]
    pub lang: Option<Lang>,
    /// Print the whole decision tree instead of asking questions.
    #[arg(long)]
    pub non_interactive: bool,
    /// Do not look for a phone on USB.
    #[arg(long)]
    pub no_detect: bool,
}

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Language: en (English) or id (Bahasa Indonesia); default from the locale.
    #[arg(long, value_parser = parse_lang)]
    pub lang: Option<Lang>,
}

pub(super) fn catalogue(lang: Option<Lang>) -> Result<Catalogue, CliError> {
    Catalogue::load(lang.unwrap_or_else(Lang::from_env)).map_err(|e| CliError::new(e.to_string()))
}

fn adb_error(context: &str, e: AdbError) -> CliError {
    let hint = e.hint();
    CliError { message: format!("{context}: {e}"), hint, code: 1 }
}

/// Connects to Mi Recovery on the target: `-s tcp:HOST:PORT` (a simulated recovery),
/// `-s sim:PROFILE` (one inside this process), else USB.
fn connect(ctx: &Context) -> Result<MiAssistant, CliError> {
    let timeout = ctx.connect.response_timeout;
    let what = "cannot talk to Mi Recovery";
    match ctx.targets.first() {
        Some(Target::Tcp { host, port }) => {
            let link = AdbTcpTransport::connect(host, *port, Duration::from_secs(5))
                .map_err(|e| CliError::from_transport(&format!("cannot connect to tcp:{host}:{port}"), e))?;
            MiAssistant::connect(Box::new(link), timeout).map_err(|e| adb_error(what, e))
        }
        Some(Target::Sim { profile }) => {
            let (p, name) = crate::sim::Profile::load(profile).map_err(|e| CliError::new(e.to_string()))?;
            let store_dir = ctx.connect.sim_store.clone().unwrap_or_else(|| target::default_sim_store(&name));
            let store = crate::sim::Store::open(&store_dir)
                .map_err(|e| CliError::new(format!("cannot use the simulator store {}: {e}", store_dir.display())))?;
            let dev = sim_recovery::SimRecovery::new(p, store, SimOptions::default()).map_err(CliError::new)?;
            let handle = RecoveryHandle::new(dev, &name);
            MiAssistant::connect(Box::new(handle.connect()), timeout).map_err(|e| adb_error(what, e))
        }
        Some(Target::Usb(serial)) => rescue_usb::open_mi_recovery(serial.as_deref(), timeout).map_err(|e| adb_error(what, e)),
        Some(Target::Udp { .. }) => Err(CliError::new("Mi Recovery is reached over USB (or tcp: for the simulated one), not UDP").code(2)),
        None => rescue_usb::open_mi_recovery(None, timeout).map_err(|e| adb_error(what, e)),
    }
}

pub fn recovery(args: RecoveryArgs, ctx: &Context) -> Result<(), CliError> {
    let t = catalogue(args.lang)?;
    match args.command {
        RecoveryCmd::Info { json } => info(&t, ctx, json),
        RecoveryCmd::FormatData { yes } => format_data(&t, ctx, yes),
        RecoveryCmd::Reboot { target } => {
            let to = match target.unwrap_or(RecoveryRebootArg::System) {
                RecoveryRebootArg::System => RebootTarget::System,
                RecoveryRebootArg::Bootloader => RebootTarget::Bootloader,
                RecoveryRebootArg::Recovery => RebootTarget::Recovery,
            };
            let phone = connect(ctx)?;
            let answer = phone.reboot(to).map_err(|e| adb_error("reboot", e))?;
            println!("{}", t.fill("recovery.reboot_done", &[("answer", &answer)]));
            Ok(())
        }
    }
}

fn info(t: &Catalogue, ctx: &Context, as_json: bool) -> Result<(), CliError> {
    let mut phone = connect(ctx)?;
    let info = phone.read_info().map_err(|e| adb_error("reading the phone", e))?;
    if as_json {
        let mut v = serde_json::to_value(&info).map_err(|e| CliError::new(e.to_string()))?;
        v["link"] = serde_json::Value::String(phone.describe());
        println!("{v}");
        return Ok(());
    }
    let branch = match info.branch.as_str() {
        "F" => t.get("recovery.branch_stable"),
        "X" => t.get("recovery.branch_dev"),
        other => other.to_string(),
    };
    let romzone = match info.romzone.as_str() {
        "1" => t.get("recovery.romzone_china"),
        "2" => t.get("recovery.romzone_global"),
        other => other.to_string(),
    };
    println!("{}", t.fill("recovery.info_heading", &[("link", &phone.describe())]));
    for (key, value) in [
        ("codename", &info.codename),
        ("version", &info.version),
        ("serial", &info.serial),
        ("android", &info.codebase),
        ("branch", &branch),
        ("language", &info.language),
        ("region", &info.region),
        ("romzone", &romzone),
    ] {
        println!("  {:<12} {value}", t.get(&format!("recovery.{key}")));
    }
    Ok(())
}

fn format_data(t: &Catalogue, ctx: &Context, yes: bool) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    // Refuse before touching the phone: a script that forgot --yes must not erase anything.
    if !yes && !stdin.is_terminal() {
        return Err(CliError::new(t.get("recovery.format_refused_no_tty"))
            .hint(t.get("recovery.format_refused_no_tty_hint"))
            .code(2));
    }
    let mut phone = connect(ctx)?;
    let info = phone.read_info().map_err(|e| adb_error("reading the phone", e))?;
    let device = format!("{} ({})", info.codename, info.serial);
    println!("{}", t.fill("recovery.format_what", &[("device", &device), ("link", &phone.describe())]));
    println!("{}", t.get("recovery.format_mi_lock"));
    if !yes {
        print!("{} ", t.get("recovery.format_confirm"));
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer).map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "ya") {
            println!("{}", t.get("recovery.format_cancelled"));
            return Ok(());
        }
    }
    println!("{}", t.get("recovery.format_waiting"));
    let outcome = phone.format_data(ctx.connect.write_timeout).map_err(|e| adb_error("format-data", e))?;
    match outcome {
        FormatOutcome::Success => {
            println!("{}", t.get("recovery.format_success"));
            Ok(())
        }
        FormatOutcome::Failed => Err(CliError::new(t.get("recovery.format_failed"))),
        FormatOutcome::Disabled => Err(CliError::new(t.get("recovery.format_disabled"))),
        FormatOutcome::Other(answer) => Err(CliError::new(t.fill("recovery.format_other", &[("answer", &answer)]))),
    }
}

/// Every phone on USB with its mode, for the guide. Fastboot phones are asked whether they
/// are in fastbootd.
fn detect(ctx: &Context) -> Detection {
    let mut detection = Detection::default();
    match crate::transport::usb::list_fastboot_devices() {
        Ok(phones) => {
            for p in phones {
                let mode = target::connect(&Target::Usb(Some(p.id())), &ctx.connect)
                    .ok()
                    .and_then(|mut c| c.getvar_opt("is-userspace").ok().flatten())
                    .map(|v| if v == "yes" { PhoneMode::Fastbootd } else { PhoneMode::Bootloader })
                    .unwrap_or(PhoneMode::Bootloader);
                detection.phones.push((mode, format!("{}, {:04x}:{:04x}", p.id(), p.vendor_id, p.product_id)));
            }
        }
        Err(e) => {
            detection.error = Some(e.to_string());
            return detection;
        }
    }
    match rescue_usb::list_other_modes() {
        Ok(phones) => detection.phones.extend(phones.iter().map(|p| (p.mode, format!("{}, {}", p.id(), p.usb_id())))),
        Err(e) => detection.error = Some(e.to_string()),
    }
    detection
}

pub fn rescue(args: RescueArgs, ctx: &Context) -> Result<(), CliError> {
    let t = catalogue(args.lang)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| CliError::new(format!("cannot write the guide: {e}"));
    if args.non_interactive {
        return guide::print_tree(&t, &mut out).map_err(io);
    }
    let detection = if args.no_detect { Detection { skipped: true, ..Default::default() } } else { detect(ctx) };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    guide::run_interactive(&t, &detection, &mut input, &mut out).map_err(io)?;
    Ok(())
}

pub fn doctor(args: DoctorArgs) -> Result<(), CliError> {
    let t = catalogue(args.lang)?;
    let checks = doctor::run_checks(&DoctorEnv::system(), &t);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if args.json {
        println!("{}", serde_json::json!({ "checks": checks, "ok": failed == 0 }));
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Ok => " ok ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            println!("[{tag}] {}: {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("       {}: {fix}", t.get("doctor.fix_label"));
            }
        }
    }
    if failed > 0 {
        return Err(CliError::new(t.fill("doctor.failed", &[("count", &failed.to_string())])).hint(t.get("doctor.failed_hint")));
    }
    Ok(())
}

/// `mi-flash simulate --recovery`.
pub fn simulate_recovery(
    listen: &crate::sim::ListenSpec,
    profile: &str,
    store: &std::path::Path,
    options: SimOptions,
) -> Result<(), CliError> {
    let (mut dev, _name) = sim_recovery::build(profile, store, options).map_err(CliError::new)?;
    sim_recovery::serve_tcp(listen, &mut dev)
        .map_err(|e| CliError::new(format!("cannot serve on {listen:?}: {e}")).hint("choose another port, or port 0 for a free one"))
}

/// The `next` hint of a `devices` row in `mode` (English, like the rest of `devices`).
/// Phones on USB in modes other than fastboot, as `devices` rows: (mode, id, USB product
/// string, USB ID, problem), or why USB could not be listed.
pub fn other_mode_phones() -> Result<Vec<rescue_usb::UsbPhone>, String> {
    rescue_usb::list_other_modes().map_err(|e| match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    })
}

