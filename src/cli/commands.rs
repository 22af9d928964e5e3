//! One function per subcommand. They talk to the library and print for the user.

use super::target::{self, Target};
use super::{CliError, Cmd, Context, RebootArg};
use crate::fastboot::{FastbootClient, RebootTarget};
use crate::rescue::text::{Catalogue, Lang};
use crate::rescue::PhoneMode;
use crate::sim::{self, Fault, ListenSpec, SimOptions};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Address to serve on: HOST:PORT, tcp:HOST:PORT or udp:HOST:PORT (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5554")]
    pub listen: ListenSpec,
    /// Profile: a .toml file, or a built-in name (moonstone, oxygen, cereus).
    #[arg(long)]
    pub profile: String,
    /// Directory for partition files (partitions/NAME.img) and the command log (log.jsonl).
    #[arg(long)]
    pub store: PathBuf,
    /// Inject a fault (repeatable): fail-on=CMD[#N], stall-on=CMD[#N], drop-on=CMD[#N],
    /// garbage-on=CMD[#N], fail-empty-on=CMD[#N], info-flood-on=CMD[#N], long-on=CMD[#N],
    /// data-on=CMD[#N], drop-after-bytes=N (docs/simulator.md).
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<Fault>,
    /// Throttle download data to this many bytes per second, like a USB 2.0 link.
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    pub link_rate: Option<u64>,
    /// Write every download payload to DIR/000001.bin, DIR/000002.bin, ...
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,
    /// Serve a phone in Mi Recovery ("Connect with MIAssistant", ADB) instead of fastboot.
    #[arg(long)]
    pub recovery: bool,
}

pub fn run(cmd: Cmd, ctx: &Context) -> Result<(), CliError> {
    match cmd {
        Cmd::Devices { json, lang } => devices(ctx, json, lang),
        Cmd::Getvar { name } if name == "all" => {
            // Every variable, one `name: value` line each, as the phone sends them.
            let mut c = connect(ctx)?;
            for (k, v) in c.getvar_all().map_err(|e| CliError::from_fastboot("", e))? {
                println!("{k}: {v}");
            }
            Ok(())
        }
        Cmd::Getvar { name } => {
            let mut c = connect(ctx)?;
            let v = c.getvar(&name).map_err(|e| CliError::from_fastboot("", e))?;
            println!("{name}: {v}");
            Ok(())
        }
        Cmd::Info { json } => info(ctx, json),
        Cmd::Flash { partition, file, rom, mode, manifest, max_download_size, records, opts } => match (rom, partition, file) {
            (Some(rom), _, _) => {
                let args = super::rom::RomArgs { rom, mode, manifest, max_download_size, records };
                super::rom::flash_rom(ctx, &args, &opts)
            }
            (None, Some(partition), Some(file)) => flash_one(ctx, &partition, &file, max_download_size),
            _ => Err(CliError::new("flash needs PARTITION FILE, or --rom PATH").code(2)),
        },
        Cmd::Verify { rom, json } => super::rom::verify_cmd(&rom, json),
        Cmd::Plan { rom, json } => super::rom::plan_cmd(&rom, json),
        Cmd::Wipe { yes } => super::rom::wipe(ctx, yes),
        Cmd::Manifest(super::ManifestCmd::Add { package, manifest }) => super::rom::manifest_add(&manifest, &package),
        Cmd::SampleRom { out, folder, max_download_size, super_mib, incompressible, gzip_level } => {
            super::rom::sample_rom(&out, folder, max_download_size, super_mib, incompressible, gzip_level)
        }
        Cmd::Completions { shell } => {
            let mut cmd = <super::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "mi-flash", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man => {
            let cmd = <super::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::new(format!("cannot write the manual page: {e}")))
        }
        Cmd::Erase { partition } => {
            check_partition_name(&partition)?;
            let mut c = connect(ctx)?;
            let started = std::time::Instant::now();
            c.erase(&partition).map_err(|e| CliError::from_fastboot(&format!("erasing {partition}"), e))?;
            println!("Erased '{partition}' ({:.1}s)", started.elapsed().as_secs_f64());
            Ok(())
        }
        Cmd::Reboot { target } => {
            let mut c = connect(ctx)?;
            let r = match target.unwrap_or(RebootArg::System) {
                RebootArg::System => c.reboot(RebootTarget::System),
                RebootArg::Bootloader => c.reboot(RebootTarget::Bootloader),
                RebootArg::Fastboot => c.reboot(RebootTarget::Fastboot),
                RebootArg::Recovery => c.reboot(RebootTarget::Recovery),
                RebootArg::Edl => c.oem("edl").map(drop),
            };
            r.map_err(|e| CliError::from_fastboot("reboot", e))?;
            println!("Rebooting");
            Ok(())
        }
        Cmd::SetActive { slot } => {
            let mut c = connect(ctx)?;
            // Like AOSP: a phone without A/B slots is not asked (U-Boot would answer OKAY).
            let slots = c.getvar_opt("slot-count").map_err(|e| CliError::from_fastboot("", e))?;
            if slots.as_deref().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0) < 2 {
                return Err(CliError::new(format!(
                    "{} does not have A/B slots (slot-count: {})",
                    c.describe(),
                    slots.as_deref().unwrap_or("not reported")
                ))
                .hint("set-active only applies to A/B phones; flash the partitions without a slot suffix"));
            }
            c.set_active(&slot).map_err(|e| CliError::from_fastboot("", e))?;
            println!("Slot {} is now active", slot.trim_start_matches('_'));
            Ok(())
        }
        Cmd::Oem { args } => {
            let mut c = connect(ctx)?;
            c.on_message(|m| match m {
                crate::fastboot::DeviceMessage::Info(s) | crate::fastboot::DeviceMessage::Text(s) => {
                    println!("(bootloader) {s}")
                }
            });
            let v = c.oem(&args.join(" ")).map_err(|e| CliError::from_fastboot("", e))?;
            if !v.is_empty() {
                println!("{v}");
            }
            println!("OKAY");
            Ok(())
        }
        Cmd::Crc { images, max_download_size } => crc(&images, max_download_size),
        Cmd::Simulate(args) => simulate(args),
        Cmd::Recovery(args) => super::rescue::recovery(args, ctx),
        Cmd::Rescue(args) => super::rescue::rescue(args, ctx),
        Cmd::Doctor(args) => super::rescue::doctor(args),
        Cmd::UdevRules => {
            // The rules ship inside the binary: a user who installed only mi-flash has them too.
            print!("{}", include_str!("../../udev/51-mi-flash.rules"));
            Ok(())
        }
    }
}

fn connect(ctx: &Context) -> Result<FastbootClient, CliError> {
    if ctx.targets.len() > 1 {
        return Err(CliError::new("this command works on one phone; -s was given several times").code(2));
    }
    let t = target::choose(ctx.targets.first())?;
    target::connect(&t, &ctx.connect)
}

/// What `devices` shows for one phone.
#[derive(serde::Serialize)]
struct DeviceRow {
    serial: String,
    transport: String,
    product: Option<String>,
    unlocked: Option<bool>,
    anti: Option<u32>,
    current_slot: Option<String>,
    mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    /// What the user can do next with a phone in this mode.
    next: Option<String>,
    /// VID:PID, for phones in modes other than fastboot.
    #[serde(skip_serializing_if = "Option::is_none")]
    usb_id: Option<String>,
}

impl DeviceRow {
    /// A fastboot row that could not be asked anything.
    fn unprobed(serial: String, problem: String, text: &Catalogue) -> DeviceRow {
        let mode = PhoneMode::Bootloader;
        let next = Some(mode.next(text));
        DeviceRow {
            serial,
            transport: "usb".into(),
            product: None,
            unlocked: None,
            anti: None,
            current_slot: None,
            mode: mode.id().into(),
            problem: Some(problem),
            next,
            usb_id: None,
        }
    }
}

fn yes(v: Option<String>) -> Option<bool> {
    v.map(|s| matches!(s.as_str(), "yes" | "true" | "1"))
}

/// `serial` is what `-s` accepts for this phone; for USB that is the USB serial, which is what
/// the row shows even if the bootloader's `serialno` differs.
fn probe(client: &mut FastbootClient, serial: String, transport: &str, text: &Catalogue) -> DeviceRow {
    let mut get = |n: &str| client.getvar_opt(n).ok().flatten();
    let product = get("product");
    let serial = if transport == "usb" { serial } else { get("serialno").unwrap_or(serial) };
    let unlocked = yes(get("unlocked"));
    let anti = get("anti").and_then(|a| a.parse().ok());
    let current_slot = get("current-slot").map(|s| s.trim_start_matches('_').to_string());
    let mode = if yes(get("is-userspace")) == Some(true) { PhoneMode::Fastbootd } else { PhoneMode::Bootloader };
    let next = Some(mode.next(text));
    DeviceRow { serial, transport: transport.into(), product, unlocked, anti, current_slot, mode: mode.id().into(), problem: None, next, usb_id: None }
}

fn devices(ctx: &Context, as_json: bool, lang: Option<Lang>) -> Result<(), CliError> {
    // JSON is read by scripts: its text does not change with the locale, only with --lang.
    let t = super::rescue::catalogue(if as_json { Some(lang.unwrap_or(Lang::En)) } else { lang })?;
    let mut rows = Vec::new();
    let mut usb_problem: Option<String> = None;
    match ctx.targets.first() {
        Some(target) => {
            let mut c = target::connect(target, &ctx.connect)?;
            let transport = match target {
                Target::Usb(_) => "usb",
                Target::Tcp { .. } => "tcp",
                Target::Udp { .. } => "udp",
                Target::Sim { .. } => "sim",
            };
            rows.push(probe(&mut c, target.to_string(), transport, &t));
        }
        None => {
            // A machine without a USB bus (a container, a CI runner) has no phone either.
            let found = match super::usb::devices() {
                Ok(found) => found,
                Err(e) => {
                    usb_problem = Some(match &e.hint {
                        Some(h) => format!("{} ({h})", e.message),
                        None => e.message.clone(),
                    });
                    Vec::new()
                }
            };
            for d in found {
                let id = d.id();
                match &d.problem {
                    Some(p) => rows.push(DeviceRow::unprobed(d.serial.clone().unwrap_or_else(|| id.clone()), p.clone(), &t)),
                    None => match target::connect(&Target::Usb(Some(id.clone())), &ctx.connect) {
                        Ok(mut c) => rows.push(probe(&mut c, d.serial.clone().unwrap_or(id), "usb", &t)),
                        Err(e) => rows.push(DeviceRow::unprobed(
                            d.serial.clone().unwrap_or(id),
                            match e.hint {
                                Some(h) => format!("{} ({h})", e.message),
                                None => e.message,
                            },
                            &t,
                        )),
                    },
                }
            }
            // Phones in every other mode: ADB, Mi Recovery, EDL, MediaTek, plain Android.
            if usb_problem.is_none() {
                match super::rescue::other_mode_phones() {
                    Ok(phones) => rows.extend(phones.into_iter().map(|p| DeviceRow {
                        serial: p.serial.clone().unwrap_or_else(|| p.id()),
                        transport: "usb".into(),
                        product: p.product.clone(),
                        unlocked: None,
                        anti: None,
                        current_slot: None,
                        mode: p.mode.id().into(),
                        problem: p.problem.clone(),
                        next: Some(p.mode.next(&t)),
                        usb_id: Some(p.usb_id()),
                    })),
                    Err(e) => usb_problem = Some(e),
                }
            }
        }
    }
    if as_json {
        let mut out = json!({ "devices": rows });
        if let Some(p) = &usb_problem {
            out["usb_problem"] = json!(p);
        }
        println!("{out}");
        return Ok(());
    }
    if rows.is_empty() {
        println!("{}", t.get("devices.none"));
        if let Some(p) = &usb_problem {
            println!("{}", t.fill("devices.usb_unusable", &[("problem", p)]));
        }
        println!("{}", t.get("devices.start"));
        println!("{}", t.get("devices.try_sim"));
        return Ok(());
    }
    for r in &rows {
        if let Some(mode) = PhoneMode::from_id(&r.mode).filter(|m| !m.can_flash()) {
            let usb_id = r.usb_id.as_deref().unwrap_or("?");
            println!("{}\t{}\t{}\t{}\t{}", r.serial, r.transport, r.product.as_deref().unwrap_or(usb_id), usb_id, r.mode);
            println!("\t{}", t.fill("devices.can", &[("mode", &mode.name(&t)), ("can", &mode.can(&t))]));
            if let Some(next) = &r.next {
                println!("\t{}", t.fill("devices.next", &[("next", next)]));
            }
            if let Some(p) = &r.problem {
                println!("\t{p}");
            }
            continue;
        }
        let unlocked = match r.unlocked {
            Some(true) => t.get("devices.unlocked"),
            Some(false) => t.get("devices.locked"),
            None => t.get("devices.lock_unknown"),
        };
        let anti = match r.anti {
            Some(a) => t.fill("devices.anti", &[("anti", &a.to_string())]),
            None => t.get("devices.no_anti"),
        };
        let slot = match &r.current_slot {
            Some(s) => t.fill("devices.slot", &[("slot", s)]),
            None => t.get("devices.no_slots"),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.serial,
            r.transport,
            r.product.as_deref().unwrap_or("?"),
            unlocked,
            anti,
            slot,
            r.mode
        );
        if let Some(p) = &r.problem {
            println!("\t{p}");
        }
        if let Some(next) = &r.next {
            println!("\t{}", t.fill("devices.next", &[("next", next)]));
        }
    }
    Ok(())
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn info(ctx: &Context, as_json: bool) -> Result<(), CliError> {
    let mut c = connect(ctx)?;
    // Some bootloaders (U-Boot) do not implement `getvar all`: ask one by one then.
    let all = match c.getvar_all() {
        Ok(all) => all,
        Err(crate::fastboot::FastbootError::Refused { .. }) => {
            let mut v = Vec::new();
            for n in ["product", "serialno", "unlocked", "secure", "anti", "crc", "max-download-size", "slot-count", "current-slot", "is-userspace", "version-bootloader"] {
                if let Ok(Some(val)) = c.getvar_opt(n) {
                    v.push((n.to_string(), val));
                }
            }
            v
        }
        Err(e) => return Err(CliError::from_fastboot("reading the phone's variables", e)),
    };
    if as_json {
        let map: serde_json::Map<String, serde_json::Value> =
            all.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        println!("{}", serde_json::Value::Object(map));
        return Ok(());
    }
    let get = |k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    println!("Phone        {} ({})", get("product").unwrap_or("?"), c.describe());
    println!("Serial       {}", get("serialno").unwrap_or("?"));
    let mode = if get("is-userspace") == Some("yes") { "fastbootd (userspace)" } else { "bootloader fastboot" };
    println!("Mode         {mode}");
    let lock = match get("unlocked") {
        Some("yes") => "unlocked: images can be flashed",
        Some("no") => "LOCKED: flashing is refused until the bootloader is unlocked",
        _ => "unknown",
    };
    println!("Bootloader   {lock}");
    if let Some(v) = get("version-bootloader") {
        println!("Version      {v}");
    }
    match get("anti") {
        Some(a) => println!("Anti-rollback index {a}: never flash a package with a lower index"),
        None => println!("Anti-rollback not reported"),
    }
    if get("crc") == Some("1") {
        println!("CRC checks   on: the phone checks images against the package's CRC lists");
    }
    match (get("slot-count"), get("current-slot")) {
        (Some(n), Some(s)) if n != "0" => println!("Slots        {n}, active {s}"),
        _ => println!("Slots        none (not an A/B phone)"),
    }
    if let Some(m) = get("max-download-size").and_then(crate::fastboot::codec::parse_size) {
        println!("Max download {} per transfer", human_size(m));
    }
    let parts: Vec<(&str, u64)> = all
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("partition-size:")?;
            Some((name, crate::fastboot::codec::parse_partition_size(v)?))
        })
        .collect();
    if !parts.is_empty() {
        println!("Partitions   {}", parts.len());
        for (name, size) in parts {
            println!("  {name:<20} {:>10}", human_size(size));
        }
    }
    Ok(())
}

/// Like AOSP: `flash boot` on an A/B phone writes the active slot's `boot_a`/`boot_b`. Names
/// with a slot suffix, and Xiaomi's `_ab` (both slots), are sent unchanged.
fn slot_partition(c: &mut FastbootClient, partition: &str) -> Result<String, CliError> {
    if ["_a", "_b", "_ab"].iter().any(|s| partition.ends_with(s)) {
        return Ok(partition.to_string());
    }
    let fb = |e| CliError::from_fastboot("", e);
    if c.getvar_opt(&format!("has-slot:{partition}")).map_err(fb)?.as_deref() != Some("yes") {
        return Ok(partition.to_string());
    }
    match c.getvar_opt("current-slot").map_err(fb)? {
        Some(slot) => Ok(format!("{partition}_{}", slot.trim_start_matches('_'))),
        None => Ok(partition.to_string()),
    }
}

/// Refuses a name no phone has before connecting: nothing is sent for it.
fn check_partition_name(partition: &str) -> Result<(), CliError> {
    if crate::rom::plan::is_partition_name(partition) {
        return Ok(());
    }
    Err(CliError::new(format!("`{partition}` is not a partition name: partitions are named with at most 36 letters, digits, `_`, `-` and `.`"))
        .hint("`mi-flash getvar all` lists the phone's partitions (partition-size:NAME)")
        .code(super::rom::EXIT_USAGE))
}

fn flash_one(ctx: &Context, partition: &str, file: &std::path::Path, max_download: Option<u64>) -> Result<(), CliError> {
    check_partition_name(partition)?;
    let mut c = connect(ctx)?;
    let partition = &slot_partition(&mut c, partition)?;
    let report = crate::fastboot::image::flash_file(&mut c, partition, file, max_download, &mut |e| {
        use crate::fastboot::image::ImageEvent;
        match e {
            ImageEvent::Sending { partition, piece, pieces, bytes } if pieces > 1 => {
                println!("Sending sparse '{partition}' {piece}/{pieces} ({} KB)", bytes.div_ceil(1024))
            }
            ImageEvent::Sending { partition, bytes, .. } => println!("Sending '{partition}' ({} KB)", bytes.div_ceil(1024)),
            ImageEvent::Writing { partition, .. } => println!("Writing '{partition}'"),
            ImageEvent::Progress { .. } => {}
        }
    })
    .map_err(|e| {
        let hint = e.hint();
        let err = CliError::new(e.to_string());
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    })?;
    println!(
        "Finished: {} ({}) written to '{}' in {:.1}s",
        file.display(),
        human_size(report.bytes_sent),
        report.partition,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn simulate(args: SimulateArgs) -> Result<(), CliError> {
    let options = SimOptions { faults: args.faults, link_rate: args.link_rate, capture: args.capture };
    if args.recovery {
        return super::rescue::simulate_recovery(&args.listen, &args.profile, &args.store, options);
    }
    let (mut dev, _name) = sim::build(&args.profile, &args.store, options).map_err(CliError::new)?;
    sim::serve(&args.listen, &mut dev)
        .map_err(|e| CliError::new(format!("cannot serve on {:?}: {e}", args.listen)).hint("choose another port, or port 0 for a free one"))
}

/// The partition a list names an image by: its file name without `.img`.
fn partition_of(path: &std::path::Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".img").map(str::to_string).unwrap_or(name)
}

fn crc(images: &[PathBuf], max_download: Option<u64>) -> Result<(), CliError> {
    use crate::sparse::{self, ScanOptions, NEW_SPARSE_CRC_SPLIT, OLD_SPARSE_CRC_SPLIT};
    let new_split = max_download.unwrap_or(NEW_SPARSE_CRC_SPLIT);
    let old_split = max_download.unwrap_or(OLD_SPARSE_CRC_SPLIT);
    let mut raw = Vec::new();
    let mut new_fmt = Vec::new();
    let mut old_fmt = Vec::new();
    for path in images {
        let scan = |split| {
            let f = std::fs::File::open(path)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
            let opts = ScanOptions { file_crc: true, data_crc: true, piece_crcs_for: Some(split), check_crc_chunks: false };
            sparse::scan(std::io::BufReader::with_capacity(1 << 20, f), &opts)
                .map_err(|e| CliError::new(format!("{}: {e}", path.display())))
        };
        let name = partition_of(path);
        let s = scan(new_split)?;
        if s.layout.is_sparse() {
            let crcs = s.piece_crcs.as_ref().map(|p| p.crcs.clone()).unwrap_or_default();
            let list: Vec<String> = crcs.iter().map(|c| sparse::python_hex(*c)).collect();
            new_fmt.push(format!("{name} {} {}", crcs.len(), list.join(" ")));
            let old = if old_split == new_split { None } else { Some(scan(old_split)?) };
            let old_pieces = old.as_ref().unwrap_or(&s).piece_crcs.as_ref().map(|p| p.crcs.len()).unwrap_or(0);
            let data_crc = s.data_crc.unwrap_or(0);
            old_fmt.push(format!("{name} {} {old_pieces}", sparse::python_hex(data_crc)));
        } else {
            raw.push(format!("{name} {}", sparse::python_hex(s.file_crc.unwrap_or(0))));
        }
    }
    println!("# crclist.txt (raw images: CRC-32 of the whole file)");
    println!("CRC-LIST");
    raw.iter().for_each(|l| println!("{l}"));
    println!("# sparsecrclist.txt, per-piece format, pieces of at most {new_split} bytes");
    println!("SPARSECRC-LIST");
    new_fmt.iter().for_each(|l| println!("{l}"));
    println!("# sparsecrclist.txt, old format (one CRC, piece count for {old_split}-byte pieces)");
    old_fmt.iter().for_each(|l| println!("{l}"));
    Ok(())
}
