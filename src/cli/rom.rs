//! The ROM commands: `verify`, `plan`, `flash --rom`, `wipe`, `manifest add`, `sample-rom`.
//! Order of work for `flash --rom`: connect to every phone (reads only), verify the package in
//! one pass, build the plan, prepare each phone (all checks, nothing written), say what will be
//! destroyed and ask, then flash the phones in parallel from one decompression of the package.

use super::progress::{Renderer, Style};
use super::target::{self, Connector, Target};
use super::{CliError, Context};
use crate::fastboot::FastbootClient;
use crate::flasher::{self, ArchiveStream, Decision, FlashError, FlashOptions, ImageFeed, Job, PackageFeed, Prepared};
use crate::rom::manifest::Manifest;
use crate::rom::plan::{Dialect, Mode, Plan};
use crate::rom::verify::{self, CheckStatus, Verified, VerifyOptions};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit codes (docs/flashing.md).
pub const EXIT_FLASH_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_REFUSED: i32 = 3;
pub const EXIT_BAD_PACKAGE: i32 = 4;
pub const EXIT_CANCELLED: i32 = 130;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// flash_all: everything, user data erased.
    Clean,
    /// flash_all_except_storage (or _except_data): user data kept.
    KeepData,
    /// flash_all_lock: everything, then the bootloader is relocked. Only when asked for.
    Lock,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Clean => Mode::Clean,
            ModeArg::KeepData => Mode::KeepData,
            ModeArg::Lock => Mode::Lock,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct RomArgs {
    /// The fastboot ROM: the .tgz as downloaded, a .zip, or the extracted folder.
    #[arg(long, value_name = "PATH")]
    pub rom: PathBuf,
    /// Which of the package's scripts: clean (flash_all), keep-data (flash_all_except_storage),
    /// lock (flash_all_lock).
    #[arg(long, value_enum, default_value = "clean")]
    pub mode: ModeArg,
    /// A manifest of known packages to check against, besides the one built into mi-flash and
    /// roms-manifest.toml in the current folder (where `manifest add` writes).
    #[arg(long, value_name = "FILE", env = "MI_FLASH_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Piece size the package's per-piece CRC list is checked for (default: 768 MiB, what
    /// Xiaomi's generator uses; when flashing, the phone's own size if it checks CRC lists).
    #[arg(long, value_parser = super::parse_size_arg, value_name = "BYTES")]
    pub max_download_size: Option<u64>,
    #[command(flatten)]
    pub records: RecordArgs,
}

/// Records of archives verified before (docs/packages.md, "Verifying the same archive again").
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RecordArgs {
    /// Where mi-flash keeps records of archives it has verified completely (default: the
    /// user's cache directory, mi-flash/verified).
    #[arg(long, value_name = "DIR", env = "MI_FLASH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Decompress and check the whole archive even if this exact file (same SHA-256) was
    /// verified before. `mi-flash verify` always does.
    #[arg(long, env = "MI_FLASH_FULL_VERIFY", value_parser = clap::builder::BoolishValueParser::new())]
    pub full_verify: bool,
}

/// The manifest `mi-flash manifest add` writes to by default, in the current folder; `verify`
/// and `flash` read it from there too.
pub const LOCAL_MANIFEST: &str = "roms-manifest.toml";

/// The manifest built into mi-flash, plus `roms-manifest.toml` in the current folder if there
/// is one (where `manifest add` puts entries), plus `--manifest FILE`.
fn manifest(extra: Option<&Path>) -> Result<Manifest, CliError> {
    let mut m = Manifest::parse(include_str!("../../roms-manifest.toml"), Path::new("roms-manifest.toml (built in)"))
        .map_err(|e| CliError::new(e.to_string()))?;
    let local = Path::new(LOCAL_MANIFEST);
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let mut files: Vec<&Path> = Vec::new();
    if local.is_file() && !extra.is_some_and(|e| same(e, local)) {
        files.push(local);
    }
    files.extend(extra);
    for p in files {
        let user = Manifest::load(p).map_err(|e| {
            let err = CliError::new(e.to_string()).code(EXIT_USAGE);
            if p == local {
                err.hint("mi-flash reads roms-manifest.toml from the current folder by itself: fix it, or run from another folder")
            } else {
                err
            }
        })?;
        m.packages.extend(user.packages);
    }
    Ok(m)
}

/// A verified package and the plan for one mode.
pub struct Rom {
    pub verified: Verified,
    pub plan: Result<Plan, CliError>,
}

fn bad_package(e: impl std::fmt::Display) -> CliError {
    CliError::new(e.to_string()).code(EXIT_BAD_PACKAGE)
}

/// A folder that holds just the downloaded archive (no extracted package) stands for that
/// archive: users often point at the download folder.
fn resolve_rom_path(path: &Path) -> Result<PathBuf, CliError> {
    if !path.is_dir() || path.join("images").is_dir() {
        return Ok(path.to_path_buf());
    }
    let Ok(rd) = std::fs::read_dir(path) else { return Ok(path.to_path_buf()) };
    let mut archives = Vec::new();
    let mut folders = 0;
    for e in rd.flatten() {
        let p = e.path();
        let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if p.is_dir() {
            folders += 1;
        } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") || name.ends_with(".zip") || name.ends_with(".tar") {
            archives.push(p);
        }
    }
    if archives.len() == 1 && folders == 0 {
        let a = archives.remove(0);
        log::info!("{} holds one package archive: using {}", path.display(), a.display());
        return Ok(a);
    }
    if archives.len() > 1 && folders == 0 {
        archives.sort();
        let names: Vec<String> = archives.iter().filter_map(|a| a.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        return Err(CliError::new(format!("{} holds {} package archives ({}): mi-flash will not guess which one to use", path.display(), names.len(), names.join(", ")))
            .hint("give the one to flash: --rom FOLDER/NAME.tgz")
            .code(EXIT_USAGE));
    }
    Ok(path.to_path_buf())
}

/// Verifies the package in one pass (or, for an archive verified before, from the record of
/// that pass) and builds the plan for `mode`.
pub fn load(args: &RomArgs, split: Option<u64>) -> Result<Rom, CliError> {
    let rom_path = resolve_rom_path(&args.rom)?;
    let opts = VerifyOptions {
        manifest: Some(manifest(args.manifest.as_deref())?),
        max_download_size: split.or(args.max_download_size),
        records: Some(args.records.cache_dir.clone().unwrap_or_else(crate::rom::record::default_dir)),
        reuse_record: !args.records.full_verify,
        ..Default::default()
    };
    let mut verified = verify::verify(&rom_path, &opts).map_err(|e| {
        let denied = matches!(&e, crate::rom::package::PackageError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied);
        bad_package(e).hint(if denied {
            "mi-flash may not read it: check the permissions of the file and of the folders above it"
        } else {
            "re-download the package, or give the folder or .tgz of a Xiaomi fastboot ROM"
        })
    })?;
    let plan = build_plan(&verified, args.mode.into());
    if let Ok(p) = &plan {
        let images: Vec<String> = p.images().iter().map(|s| s.to_string()).collect();
        let package = verified.package.clone();
        verified.report.add_plan_checks(&package, &p.script, &images);
    }
    Ok(Rom { verified, plan })
}

fn build_plan(v: &Verified, mode: Mode) -> Result<Plan, CliError> {
    let names = v.package.script_names();
    let script = crate::rom::plan::select_script(&names, mode, Dialect::Sh).map_err(bad_package)?;
    let text = v
        .package
        .small_file(&script)
        .ok_or_else(|| bad_package(format!("{script} is too large to be a flash script")))?;
    let mut plan = crate::rom::script::parse_script(&script, text, &v.package).map_err(|e| {
        bad_package(e).hint("mi-flash never runs a package's scripts; it refuses lines it does not understand. Report the line if the package is an official one")
    })?;
    plan.annotate(|image| v.report.file(image).map(|f| (f.size, f.sparse.is_some())));
    Ok(plan)
}

fn print_failures(v: &Verified) {
    for c in v.report.failures() {
        eprintln!("✗ {} {}: {}", c.name, c.file, c.detail);
        if let (Some(e), Some(a)) = (&c.expected, &c.actual) {
            eprintln!("    expected {e}, found {a}");
        }
    }
}

pub fn verify_cmd(args: &RomArgs, json: bool) -> Result<(), CliError> {
    // `verify` is asked for a complete check: it reads everything (and keeps the record).
    let mut args = args.clone();
    args.records.full_verify = true;
    let rom = load(&args, None)?;
    let ok = rom.verified.report.is_ok() && rom.plan.is_ok();
    if json {
        let mut v = serde_json::to_value(&rom.verified.report).unwrap_or_default();
        v["ok"] = serde_json::Value::Bool(ok);
        if let Err(e) = &rom.plan {
            v["plan_error"] = serde_json::Value::String(e.message.clone());
        }
        println!("{v}");
    } else {
        let r = &rom.verified.report;
        println!("Package {} ({})", r.package, r.kind);
        for c in &r.checks {
            let mark = match c.status {
                CheckStatus::Ok => "✓",
                CheckStatus::Failed => "✗",
                CheckStatus::Skipped => "-",
            };
            println!("{mark} {:<14} {}: {}", c.name, c.file, c.detail);
            if let (Some(e), Some(a)) = (&c.expected, &c.actual) {
                println!("    expected {e}, found {a}");
            }
        }
        match &rom.plan {
            Ok(p) => println!("✓ {:<14} {}: {} steps", "script", p.script, p.steps.len()),
            Err(e) => println!("✗ {:<14} {}", "script", e.message),
        }
        println!("{}", if ok { "The package is intact and complete." } else { "The package FAILED verification: do not flash it." });
        if ok && rom.verified.record.is_some() {
            println!("mi-flash keeps a record of this check: flashing this exact file again only hashes it (--full-verify reads it all again).");
        }
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::new("the package failed verification").code(EXIT_BAD_PACKAGE).hint("re-download the package; `mi-flash verify --rom PATH` lists what differed"))
    }
}

pub fn plan_cmd(args: &RomArgs, json: bool) -> Result<(), CliError> {
    let rom = load(args, None)?;
    let mut plan = rom.plan?;
    // The plan of a package that failed verification is still shown, with the failure among
    // its warnings (text and JSON) and the failed checks on stderr. `plan` only shows what the
    // script does (a CRC list made for another piece size than the one assumed here is not a
    // fault of the script); `verify` is the gate, with its exit code.
    let failed = !rom.verified.report.is_ok();
    const FAILED: &str = "the package failed verification (run `mi-flash verify --rom ...`): mi-flash will not flash it";
    if json {
        if failed {
            plan.warnings.push(crate::rom::plan::PlanWarning { message: FAILED.into(), source: None });
        }
        println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
    } else {
        print!("{plan}");
        if failed {
            println!("warning: {FAILED}");
        }
    }
    if failed {
        print_failures(&rom.verified);
    }
    Ok(())
}

/// What the user must agree to before anything is written.
fn destruction(mode: Mode, plan: &Plan) -> String {
    let mut s = match mode {
        Mode::Clean => "CLEAN mode: everything on the phone is erased — photos, apps, accounts, files — and the system is replaced.".to_string(),
        Mode::KeepData => "KEEP-DATA mode: the system is replaced and user data is kept. Back up anyway: a failed flash can still lose data.".to_string(),
        Mode::Lock => "LOCK mode: everything on the phone is erased, the system is replaced, and then the bootloader is LOCKED again. After that, only official ROMs for this exact phone will boot, and unlocking again takes Xiaomi's waiting period.".to_string(),
    };
    if plan.locks() && mode != Mode::Lock {
        s.push_str(" This script relocks the bootloader.");
    }
    s
}

/// Asks on the terminal; with `--yes` it does not ask; with no terminal it refuses.
pub fn confirm(what: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(format!("{what}\nmi-flash will not do this without a confirmation, and there is no terminal to ask on"))
            .hint("pass --yes to confirm in a script")
            .code(EXIT_USAGE));
    }
    eprintln!("{what}");
    eprint!("Type yes to continue: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?;
    if line.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(CliError::new("not confirmed: nothing was written").code(EXIT_USAGE))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct FlashRomArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Check the phone and print what would be done; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue an interrupted flash of the same package on the same phone.
    #[arg(long)]
    pub resume: bool,
    /// Flash every phone in fastboot mode on USB, in parallel.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per event per line on stdout (docs/flashing.md).
    #[arg(long)]
    pub json: bool,
    /// Where resume journals are kept (default: the user's state directory).
    #[arg(long, value_name = "DIR", env = "MI_FLASH_JOURNAL_DIR")]
    pub journal_dir: Option<PathBuf>,
}

struct Phone {
    label: String,
    connect: Connector,
    client: FastbootClient,
}

fn targets(ctx: &Context, all: bool) -> Result<Vec<Target>, CliError> {
    let mut t: Vec<Target> = ctx.targets.clone();
    if all {
        for id in super::usb::list()? {
            let usb = Target::Usb(Some(id.trim_start_matches("usb:").to_string()));
            if !t.contains(&usb) {
                t.push(usb);
            }
        }
        if t.is_empty() {
            return Err(CliError::new("--all found no phone in fastboot mode").hint("connect the phones in fastboot mode and check `mi-flash devices`"));
        }
        return Ok(t);
    }
    if t.is_empty() {
        t.push(target::choose(None)?);
    }
    Ok(t)
}

pub fn flash_rom(ctx: &Context, rom_args: &RomArgs, args: &FlashRomArgs) -> Result<(), CliError> {
    let style = Style::pick(args.json);
    let mut phones = Vec::new();
    for t in targets(ctx, args.all)? {
        let mut connect = target::connector(&t, &ctx.connect)?;
        let client = connect()?;
        phones.push(Phone { label: t.to_string(), connect, client });
    }
    let several = phones.len() > 1;
    let renderer = Renderer::new(style, several);

    // A phone that checks CRC lists checks the pieces of its own split: verify for that size.
    let mut split = None;
    for p in &mut phones {
        let crc = p.client.getvar_opt("crc").map_err(|e| CliError::from_fastboot(&p.label, e))?;
        if crc.as_deref() == Some("1") {
            let mds = crate::fastboot::image::max_download_size(&mut p.client).map_err(|e| CliError::from_fastboot(&p.label, e))?;
            let size = rom_args.max_download_size.or(mds).map(|m| m.min(crate::sparse::RESPARSE_LIMIT));
            match (split, size) {
                (Some(a), Some(b)) if a != b => {
                    return Err(CliError::new("the phones check CRC lists for different piece sizes: flash them separately").code(EXIT_USAGE))
                }
                (_, Some(b)) => split = Some(b),
                _ => {}
            }
        }
    }
    if style != Style::Json {
        renderer.println(&format!("Verifying {} ...", rom_args.rom.display()));
    }
    // For a phone that does not check CRC lists, --max-download-size only splits the transfer:
    // the package's list is checked for Xiaomi's own piece size, not for that split.
    let rom = load(&RomArgs { max_download_size: None, ..rom_args.clone() }, split)?;
    if !rom.verified.report.is_ok() {
        print_failures(&rom.verified);
        return Err(CliError::new("the package failed verification: nothing was written to the phone")
            .hint("re-download the package; `mi-flash verify --rom PATH` lists what differed")
            .code(EXIT_BAD_PACKAGE));
    }
    let plan = rom.plan?;
    let layouts = rom.verified.layouts();
    let report = &rom.verified.report;
    let package_id = flasher::journal::package_id(report.files.iter().map(|f| (f.path.as_str(), f.size, f.crc32_value())));
    let mode: Mode = rom_args.mode.into();
    let done = done_message(mode, &plan);
    let checksums: std::collections::HashMap<String, flasher::ImageChecksums> = report
        .files
        .iter()
        .map(|f| (f.path.clone(), flasher::ImageChecksums { len: f.size, crc32: f.crc32_value(), windows: f.windows().to_vec() }))
        .collect();
    let job = Job { plan: &plan, mode, layouts: &layouts, checksums: &checksums, package_id, package_name: report.package.clone() };
    let cancel = Arc::new(AtomicBool::new(false));
    // The spill folder of a streamed package, removed by a second Ctrl-C too.
    let spill: Arc<std::sync::Mutex<Option<PathBuf>>> = Arc::default();
    {
        let c = cancel.clone();
        let spill = spill.clone();
        // The second Ctrl-C ends the process at once; the first lets the flash stop cleanly.
        let _ = ctrlc::set_handler(move || {
            if c.swap(true, Ordering::SeqCst) {
                // Exiting skips destructors: the spilled images would stay in the temp folder.
                if let Some(p) = spill.lock().ok().and_then(|p| p.clone()) {
                    let _ = std::fs::remove_dir_all(p);
                }
                std::process::exit(EXIT_CANCELLED);
            }
        });
    }
    let journal_dir = args.journal_dir.clone().unwrap_or_else(flasher::journal::default_dir);
    let opts = FlashOptions {
        resume: args.resume,
        journal_dir: Some(journal_dir),
        max_download_size: rom_args.max_download_size,
        cancel: Some(cancel.clone()),
        retries: ctx.retries,
        retry_delay: ctx.retry_delay,
    };

    let earlier = report.checks.iter().find(|c| c.name == "verified-before");
    // Prepare every phone: all checks, nothing written.
    let mut ready: Vec<(Phone, Prepared)> = Vec::new();
    let mut results: Vec<(String, Result<String, CliError>)> = Vec::new();
    for mut p in phones {
        let label = p.label.clone();
        let r = flasher::prepare(&mut p.client, &job, &opts, &mut |e| {
            renderer.event(&label, &e);
            // How the package was verified, among the checks, right after the phone's facts.
            if let (crate::flasher::Event::Device { .. }, Some(c)) = (&e, &earlier) {
                renderer.event(&label, &crate::flasher::Event::Check { name: c.name.clone(), ok: true, detail: c.detail.clone() });
            }
        });
        match r {
            Ok(prep) => ready.push((p, prep)),
            Err(e) => {
                let err = flash_error(e);
                renderer.event(&label, &crate::flasher::Event::Failed { index: None, partition: None, message: err.message.clone(), device_message: None, hint: err.hint.clone() });
                results.push((label, Err(err)));
            }
        }
    }
    if ready.is_empty() {
        return finish(results, several, &renderer, &done);
    }
    // The resume journal is kept per serial: two phones with one serial (cheap phones do that)
    // would share it.
    for (i, (a, pa)) in ready.iter().enumerate() {
        if let Some((b, _)) = ready[i + 1..].iter().find(|(_, pb)| pb.serial == pa.serial) {
            return Err(CliError::new(format!("{} and {} report the same serial number {}", a.label, b.label, pa.serial))
                .hint("flash these phones one at a time")
                .code(EXIT_USAGE));
        }
    }
    if args.dry_run {
        for (p, prep) in &ready {
            renderer.println(&format!("Dry run for {} ({}): nothing was written.", p.label, prep.product.as_deref().unwrap_or("?")));
            for (i, (step, d)) in plan.steps.iter().zip(&prep.decisions).enumerate() {
                let what = match d {
                    Decision::Run => "run".to_string(),
                    Decision::Checked(detail) => format!("checked: {detail}"),
                    Decision::Skip(reason) => format!("skip: {reason}"),
                };
                renderer.println(&format!("{:>3}. {:<50} {what}", i + 1, step.action.to_string()));
            }
            renderer.println(&format!("{} steps would run, sending {}.", prep.steps_to_run(), super::commands::human_size(prep.bytes)));
        }
        return finish(results, several, &renderer, &done);
    }
    let who = ready.iter().map(|(p, prep)| format!("{} ({})", p.label, prep.product.as_deref().unwrap_or("?"))).collect::<Vec<_>>().join(", ");
    confirm(&format!("About to flash {} with {} ({}) on {who}.\n{}", report.package, plan.script, mode, destruction(mode, &plan)), args.yes)?;

    // One decompression feeds every phone (a folder or zip is read at random instead).
    let package = Arc::new(rom.verified.package.clone());
    let streamed = flasher::feed::is_streamed(&package);
    let (stream, mut feeds): (Option<ArchiveStream>, Vec<Box<dyn ImageFeed>>) = if streamed {
        let wants = ready.iter().map(|(_, prep)| prep.images.clone()).collect();
        let (s, f) = ArchiveStream::start(package.clone(), wants).map_err(|e| CliError::new(e.to_string()))?;
        if let Ok(mut p) = spill.lock() {
            *p = Some(s.spill_path().to_path_buf());
        }
        (Some(s), f.into_iter().map(|f| Box::new(f) as Box<dyn ImageFeed>).collect())
    } else {
        (None, ready.iter().map(|_| Box::new(PackageFeed::new(package.clone())) as Box<dyn ImageFeed>).collect())
    };
    let outcomes: Vec<(String, Result<String, CliError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ready
            .into_iter()
            .zip(feeds.drain(..))
            .map(|((mut phone, prep), mut feed)| {
                let (job, opts, renderer) = (&job, &opts, &renderer);
                scope.spawn(move || {
                    let label = phone.label.clone();
                    let mut reconnect = |/* after a reboot into fastboot */| (phone.connect)().map_err(|e| e.message);
                    let r = flasher::execute(&mut phone.client, job, &prep, feed.as_mut(), opts, &mut |e| renderer.event(&label, &e), &mut reconnect);
                    drop(feed);
                    let r = match r {
                        Ok(s) => Ok(format!("{} steps, {} in {:.1}s", s.steps, super::commands::human_size(s.bytes_sent), s.elapsed.as_secs_f64())),
                        Err(e) => {
                            let (index, partition, device_message) = match &e {
                                FlashError::Step(f) => (Some(f.index), f.partition.clone(), f.device_message.clone()),
                                FlashError::Cancelled { index, .. } => (Some(*index), None, None),
                                _ => (None, None, None),
                            };
                            let err = flash_error(e);
                            renderer.event(&label, &crate::flasher::Event::Failed { index, partition, message: err.message.clone(), device_message, hint: err.hint.clone() });
                            Err(err)
                        }
                    };
                    (label, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| ("?".into(), Err(CliError::new("a flashing thread crashed"))))).collect()
    });
    if let Some(s) = stream {
        if let Some(e) = s.finish() {
            log::warn!("reading the package: {e}");
        }
    }
    results.extend(outcomes);
    finish(results, several, &renderer, &done)
}

fn flash_error(e: FlashError) -> CliError {
    let code = match &e {
        FlashError::Refused { .. } => EXIT_REFUSED,
        FlashError::Cancelled { .. } => EXIT_CANCELLED,
        _ => EXIT_FLASH_FAILED,
    };
    let mut hint = e.hint();
    // Something was written: the journal lets the user continue instead of starting over.
    if let FlashError::Step(f) = &e {
        let index = f.index;
        let resume = format!("to continue from step {index}, run the same command with --resume");
        hint = Some(match hint {
            Some(h) => format!("{h}; {resume}"),
            None => resume,
        });
    }
    let mut err = CliError::new(e.to_string()).code(code);
    err.hint = hint;
    err
}

/// What to do after a successful flash: it depends on whether the plan restarts the phone and
/// on what the mode already did to the user's data and the bootloader.
fn done_message(mode: Mode, plan: &Plan) -> String {
    use crate::rom::plan::{Action, RebootTarget};
    let reboots = plan.steps.iter().any(|s| matches!(s.action, Action::Reboot { target: RebootTarget::System }));
    let start = if reboots {
        "Done. The phone reboots into the new system; the first boot can take several minutes."
    } else if plan.locks() {
        // Xiaomi's lock scripts end with the relock: the bootloader then restarts the phone.
        "Done. After relocking, the phone restarts by itself into the new system (unplug it only once it has); the first boot can take several minutes."
    } else {
        "Done. The script does not restart the phone: `mi-flash reboot` starts the new system (the first boot can take several minutes)."
    };
    let if_not = match mode {
        Mode::KeepData => "If it does not boot, run the same flash with --mode clean (that erases the phone's data).",
        Mode::Clean => "If it does not boot, check that the package is for this exact model and region; `mi-flash rescue` lists what else can be done.",
        Mode::Lock => "The bootloader is locked again. If it does not boot, `mi-flash rescue` lists what can be done.",
    };
    format!("{start} {if_not}")
}

/// The closing summary: per phone for several, and what to do next.
fn finish(results: Vec<(String, Result<String, CliError>)>, several: bool, renderer: &Renderer, done: &str) -> Result<(), CliError> {
    let failed: Vec<&(String, Result<String, CliError>)> = results.iter().filter(|(_, r)| r.is_err()).collect();
    if several {
        renderer.println("Summary:");
        for (label, r) in &results {
            match r {
                Ok(s) => renderer.println(&format!("  {label}: OK ({s})")),
                Err(e) => renderer.println(&format!("  {label}: FAILED: {}", e.message)),
            }
        }
    }
    if failed.is_empty() {
        if results.iter().any(|(_, r)| r.is_ok()) && !results.iter().all(|(_, r)| r.as_ref().is_ok_and(|s| s.is_empty())) {
            renderer.println(done);
        }
        return Ok(());
    }
    if several {
        let code = failed.iter().filter_map(|(_, r)| r.as_ref().err().map(|e| e.code)).max().unwrap_or(EXIT_FLASH_FAILED);
        return Err(CliError::new(format!("{} of {} phones failed", failed.len(), results.len())).code(code));
    }
    // One phone, and it failed: its own error (and exit code).
    match results.into_iter().find_map(|(_, r)| r.err()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn wipe(ctx: &Context, yes: bool) -> Result<(), CliError> {
    let t = target::choose(ctx.targets.first())?;
    let mut c = target::connect(&t, &ctx.connect)?;
    let fb = |e| CliError::from_fastboot("", e);
    if c.getvar_opt("unlocked").map_err(fb)?.as_deref() == Some("no") {
        return Err(CliError::new("the bootloader is locked, and a locked bootloader refuses to erase partitions")
            .hint("to erase a locked phone, use the recovery's \"Wipe data\" (mi-flash recovery format-data, see `mi-flash rescue`)")
            .code(EXIT_REFUSED));
    }
    let mut parts = vec!["userdata".to_string()];
    if c.getvar_opt("partition-type:metadata").map_err(fb)?.is_some() {
        parts.push("metadata".into());
    }
    confirm(&format!("About to erase {} on {t}: all apps, accounts, photos and files on the phone are lost.", parts.join(" and ")), yes)?;
    for p in &parts {
        c.erase(p).map_err(|e| CliError::from_fastboot(&format!("erasing {p}"), e))?;
        println!("Erased '{p}'");
    }
    println!("Done. The phone starts as new after its next reboot (`mi-flash reboot`).");
    Ok(())
}

pub fn sample_rom(out: &Path, folder: bool, max_download_size: Option<u64>, super_mib: Option<u64>, incompressible: bool, gzip_level: Option<u32>) -> Result<(), CliError> {
    use crate::rom::sample::{write_sample_folder, write_sample_package, SampleOptions};
    let mut o = SampleOptions::default();
    if let Some(m) = max_download_size {
        o.max_download_size = m;
    }
    if let Some(s) = super_mib {
        o.super_data = s << 20;
    }
    o.incompressible = incompressible;
    if let Some(level) = gzip_level {
        o.compression_level = level;
    }
    std::fs::create_dir_all(out).map_err(|e| CliError::new(format!("cannot create {}: {e}", out.display())))?;
    if folder {
        let p = write_sample_folder(out, &o).map_err(|e| CliError::new(e.to_string()))?;
        println!("{}", p.display());
    } else {
        let p = write_sample_package(out, &o).map_err(|e| CliError::new(e.to_string()))?;
        println!("{}", p.path.display());
    }
    Ok(())
}

pub fn manifest_add(manifest: &Path, package: &Path) -> Result<(), CliError> {
    let entry = Manifest::add(manifest, package).map_err(|e| CliError::new(e.to_string()).code(EXIT_BAD_PACKAGE))?;
    println!("Added {} ({} {}, anti {}) to {}", entry.file, entry.codename, entry.version, entry.anti.map(|a| a.to_string()).unwrap_or_else(|| "-".into()), manifest.display());
    Ok(())
}
