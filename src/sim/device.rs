//! The simulated Xiaomi bootloader: the device side of the fastboot protocol, with a
//! bootloader's rules (lock state, partition table, slots, `_ab` names, download limit) and
//! Xiaomi's wording for refusals. It answers every command, FAIL rather than a dropped
//! connection (old clients spin forever on a closed socket), never sends TEXT, and keeps every
//! response within 256 bytes.

use super::fault::{Fault, FaultKind, FaultPlan};
use super::profile::Profile;
use super::store::Store;
use crate::fastboot::codec::{Command, RebootTarget, Response, MAX_DEVICE_COMMAND_LEN};
use crate::transport::{Transport, TransportError};
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Any partition name is accepted up to this size when a profile has no `[partitions]` table.
const UNLISTED_PARTITION_LIMIT: u64 = 32 << 30;
/// `INFO` lines an `info-flood-on` fault sends.
const INFO_FLOOD_LINES: usize = 5000;
/// Pseudo-partitions Xiaomi scripts flash before the images they describe.
const CRC_PSEUDO_PARTITIONS: [&str; 2] = ["crclist", "sparsecrclist"];

/// Options beyond the profile.
#[derive(Debug, Default, Clone)]
pub struct SimOptions {
    pub faults: Vec<Fault>,
    /// Throttle download data to this many bytes per second (as a USB 2.0 link would).
    pub link_rate: Option<u64>,
    /// Write every download payload to `DIR/000001.bin`, `DIR/000002.bin`, ...
    pub capture: Option<PathBuf>,
}

/// How a connection ended, from the device's point of view.
#[derive(Debug, PartialEq, Eq)]
pub enum Hangup {
    /// The host closed the link.
    HostClosed,
    /// The device closed it: a reboot, or an injected drop fault.
    DeviceClosed,
}

pub struct SimDevice {
    profile: Profile,
    store: Store,
    unlocked: bool,
    current_slot: Option<String>,
    userspace: bool,
    faults: FaultPlan,
    link_rate: Option<u64>,
    capture: Option<PathBuf>,
    captured: u64,
    /// The download buffer, in memory like a phone's: `download` fills its first `staged`
    /// bytes, `flash`, `upload` and `boot` use them. Its allocation is kept for the next
    /// download, so it grows to the largest download seen (at most `max-download-size`).
    buffer: Vec<u8>,
    staged: Option<usize>,
    crc: super::crc::CrcState,
}

enum Next {
    Continue,
    Hangup,
}

impl SimDevice {
    pub fn new(profile: Profile, store: Store, options: SimOptions) -> std::io::Result<SimDevice> {
        if let Some(dir) = &options.capture {
            std::fs::create_dir_all(dir)?;
        }
        let profile_crc = profile.crc;
        Ok(SimDevice {
            unlocked: profile.unlocked,
            current_slot: profile.current_slot(),
            userspace: profile.is_userspace,
            profile,
            store,
            faults: FaultPlan::new(options.faults),
            link_rate: options.link_rate.filter(|r| *r > 0),
            capture: options.capture,
            captured: 0,
            crc: super::crc::CrcState::new(profile_crc),
            buffer: Vec::new(),
            staged: None,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Serves one connection until either side closes it.
    pub fn serve(&mut self, link: &mut dyn Transport) -> Result<Hangup, TransportError> {
        let mut buf = vec![0u8; MAX_DEVICE_COMMAND_LEN + 1];
        loop {
            let n = match link.read(&mut buf, None) {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) if e.is_disconnect() => return Ok(Hangup::HostClosed),
                Err(e) => return Err(e),
            };
            match self.handle(&buf[..n], link) {
                Ok(Next::Continue) => {}
                Ok(Next::Hangup) => return Ok(Hangup::DeviceClosed),
                Err(e) if e.is_disconnect() => return Ok(Hangup::HostClosed),
                Err(e) => return Err(e),
            }
        }
    }

    fn reply(&mut self, link: &mut dyn Transport, wire: &str, r: Response) -> Result<Next, TransportError> {
        let (result, message) = match &r {
            Response::Okay(m) => ("OKAY", m.clone()),
            Response::Fail(m) => ("FAIL", m.clone()),
            Response::Data(n) => ("DATA", format!("{n:08x}")),
            Response::Info(m) | Response::Text(m) => ("INFO", m.clone()),
        };
        self.store.log(wire, result, &message, json!({}));
        link.write(&r.encode())?;
        Ok(Next::Continue)
    }

    fn handle(&mut self, packet: &[u8], link: &mut dyn Transport) -> Result<Next, TransportError> {
        let wire = String::from_utf8_lossy(packet).into_owned();
        if let Some((kind, fault)) = self.faults.on_command(&wire) {
            if kind == FaultKind::InfoFlood {
                // A chatty bootloader: the lines come first, then the command is served as usual.
                self.store.log(&wire, "INFO", &format!("{INFO_FLOOD_LINES} INFO lines"), json!({ "fault": fault.to_string() }));
                for i in 0..INFO_FLOOD_LINES {
                    link.write(&Response::Info(format!("injected INFO line {} of {INFO_FLOOD_LINES}", i + 1)).encode())?;
                }
            } else {
                return self.act_out(kind, &fault, &wire, link);
            }
        }
        let cmd = match Command::parse(packet) {
            Ok(c) => c,
            Err(_) => {
                let shown = crate::transport::printable(packet);
                return self.reply(link, &shown, Response::Fail(format!("Unrecognized command {shown}")));
            }
        };
        match cmd {
            Command::GetVar(name) if name == "all" => self.getvar_all(link, &wire),
            Command::GetVar(name) => {
                let r = match self.getvar(&name) {
                    Some(v) => Response::Okay(v),
                    None => Response::Fail("GetVar Variable Not found".into()),
                };
                self.reply(link, &wire, r)
            }
            Command::Download(len) => self.download(link, &wire, len),
            Command::Upload => self.upload(link, &wire),
            Command::Flash(p) => {
                let r = self.flash(&p);
                self.reply(link, &wire, r)
            }
            Command::Erase(p) => {
                let r = self.erase(&p);
                self.reply(link, &wire, r)
            }
            Command::SetActive(slot) => {
                let r = self.set_active(&slot);
                self.reply(link, &wire, r)
            }
            Command::Reboot(target) => {
                self.reply(link, &wire, Response::Okay(String::new()))?;
                match target {
                    RebootTarget::Fastboot => self.userspace = true,
                    RebootTarget::Bootloader => self.userspace = false,
                    RebootTarget::System | RebootTarget::Recovery => {}
                }
                // The phone goes away and comes back; the simulator keeps serving in its new mode.
                Ok(Next::Hangup)
            }
            Command::Continue | Command::Boot => {
                if matches!(cmd, Command::Boot) && self.staged.is_none() {
                    return self.reply(link, &wire, Response::Fail("No image downloaded".into()));
                }
                self.reply(link, &wire, Response::Okay(String::new()))?;
                Ok(Next::Hangup)
            }
            Command::Oem(args) => self.oem(link, &wire, &args),
            Command::Flashing(args) => self.flashing(link, &wire, &args),
        }
    }

    fn act_out(&mut self, kind: FaultKind, fault: &Fault, wire: &str, link: &mut dyn Transport) -> Result<Next, TransportError> {
        let extra = json!({ "fault": fault.to_string() });
        match kind {
            FaultKind::Fail => {
                let msg = format!("injected fault ({fault})");
                self.store.log(wire, "FAIL", &msg, extra);
                link.write(&Response::Fail(msg).encode())?;
                Ok(Next::Continue)
            }
            FaultKind::FailEmpty => {
                self.store.log(wire, "FAIL", "", extra);
                link.write(b"FAIL")?;
                Ok(Next::Continue)
            }
            FaultKind::Long => {
                self.store.log(wire, "LONG", "answered a 300-byte response", extra);
                let mut packet = b"OKAY".to_vec();
                packet.resize(300, b'x');
                link.write(&packet)?;
                Ok(Next::Continue)
            }
            FaultKind::Data => {
                self.store.log(wire, "DATA", "answered DATA where none belongs", extra);
                link.write(&Response::Data(0x1000).encode())?;
                Ok(Next::Continue)
            }
            // Handled before the command is served.
            FaultKind::InfoFlood => Ok(Next::Continue),
            FaultKind::Garbage => {
                self.store.log(wire, "GARBAGE", "answered bytes that are not fastboot", extra);
                link.write(b"\x00\xff\xfeGARBAGE\x01")?;
                Ok(Next::Continue)
            }
            FaultKind::Drop => {
                self.store.log(wire, "DROP", "closed the connection", extra);
                Ok(Next::Hangup)
            }
            FaultKind::Stall => {
                self.store.log(wire, "STALL", "never answered", extra);
                // Swallow everything until the host gives up and closes the link.
                let mut sink = vec![0u8; 64 * 1024];
                loop {
                    match link.read(&mut sink, None) {
                        Ok(_) => {}
                        Err(_) => return Ok(Next::Hangup),
                    }
                }
            }
        }
    }

    // ---- variables ----

    fn base_and_slot<'a>(&self, name: &'a str) -> (&'a str, Option<&'a str>) {
        if self.profile.slot_count == 2 {
            for suffix in ["_ab", "_a", "_b"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    if self.is_slotted(base) {
                        return (base, Some(&suffix[1..]));
                    }
                }
            }
        }
        (name, None)
    }

    /// With slots, a partition named in the profile exists once per slot (`boot_a`,
    /// `boot_b`); the CRC pseudo-partitions never have slots.
    fn is_slotted(&self, base: &str) -> bool {
        self.profile.slot_count == 2
            && !CRC_PSEUDO_PARTITIONS.contains(&base)
            && !self.profile.unslotted.iter().any(|u| u == base)
            && match &self.profile.partitions {
                Some(table) => table.contains_key(base),
                None => true,
            }
    }

    /// The size of a concrete partition (with its slot suffix), if it exists.
    fn partition_size(&self, name: &str) -> Option<u64> {
        if !super::profile::is_partition_name(name) {
            return None;
        }
        let (base, slot) = self.base_and_slot(name);
        match (&self.profile.partitions, slot) {
            (_, Some("ab")) => None,
            (Some(table), Some(_)) => table.get(base).copied(),
            (Some(table), None) => {
                if self.is_slotted(base) {
                    None // exists only with a slot suffix
                } else {
                    table.get(name).copied()
                }
            }
            (None, _) => Some(UNLISTED_PARTITION_LIMIT),
        }
    }

    fn partition_type(name: &str) -> &'static str {
        match name.trim_end_matches("_a").trim_end_matches("_b") {
            "userdata" => "f2fs",
            "metadata" | "cache" | "cust" => "ext4",
            _ => "raw",
        }
    }

    fn yes_no(b: bool) -> String {
        if b { "yes" } else { "no" }.into()
    }

    fn getvar(&self, name: &str) -> Option<String> {
        let p = &self.profile;
        if let Some(v) = p.vars.get(name) {
            return Some(v.clone());
        }
        if let Some((var, arg)) = name.split_once(':') {
            return match var {
                "has-slot" => Some(Self::yes_no(self.is_slotted(arg))),
                "partition-size" if p.partitions.is_some() => self.partition_size(arg).map(|s| format!("0x{s:X}")),
                "partition-type" => self.partition_size(arg).map(|_| Self::partition_type(arg).to_string()),
                "is-logical" => self.partition_size(arg).map(|_| "no".to_string()),
                _ => None,
            };
        }
        Some(match name {
            "product" => p.product.clone(),
            "serialno" => p.serialno.clone(),
            "unlocked" => Self::yes_no(self.unlocked),
            "secure" => Self::yes_no(p.secure),
            "anti" => p.anti?.to_string(),
            "crc" => if p.crc { "1" } else { "0" }.into(),
            "max-download-size" => format!("0x{:X}", p.max_download_size),
            "slot-count" => p.slot_count.to_string(),
            "current-slot" => self.current_slot.clone()?,
            "is-userspace" => Self::yes_no(self.userspace),
            "version" => "0.4".into(),
            "version-bootloader" => p.version_bootloader.clone().unwrap_or_else(|| format!("{}-sim", p.product)),
            "version-baseband" => p.version_baseband.clone()?,
            "hw-revision" => p.hw_revision.clone()?,
            "security-patch-level" => p.security_patch_level.clone()?,
            _ => return None,
        })
    }

    fn getvar_all(&mut self, link: &mut dyn Transport, wire: &str) -> Result<Next, TransportError> {
        let mut lines = Vec::new();
        for name in [
            "version", "version-bootloader", "version-baseband", "product", "serialno", "secure", "unlocked", "anti",
            "crc", "max-download-size", "slot-count", "current-slot", "is-userspace", "hw-revision",
            "security-patch-level",
        ] {
            if let Some(v) = self.getvar(name) {
                lines.push(format!("{name}:{v}"));
            }
        }
        for (k, v) in &self.profile.vars {
            lines.push(format!("{k}:{v}"));
        }
        let mut parts = Vec::new();
        for (base, _) in self.profile.partitions.iter().flatten() {
            if self.is_slotted(base) {
                lines.push(format!("has-slot:{base}:yes"));
                parts.push(format!("{base}_a"));
                parts.push(format!("{base}_b"));
            } else {
                lines.push(format!("has-slot:{base}:no"));
                parts.push(base.clone());
            }
        }
        for part in parts {
            if let Some(size) = self.partition_size(&part) {
                lines.push(format!("partition-size:{part}:0x{size:X}"));
                lines.push(format!("partition-type:{part}:{}", Self::partition_type(&part)));
            }
        }
        for l in lines {
            link.write(&Response::Info(l).encode())?;
        }
        self.reply(link, wire, Response::Okay(String::new()))
    }

    // ---- data ----

    fn download(&mut self, link: &mut dyn Transport, wire: &str, len: u32) -> Result<Next, TransportError> {
        if len == 0 {
            return self.reply(link, wire, Response::Fail("Invalid download size 0".into()));
        }
        if len as u64 > self.profile.max_download_size {
            return self.reply(link, wire, Response::Fail("Requested download size is more than max allowed".into()));
        }
        self.staged = None;
        let len = len as usize;
        if self.buffer.len() < len {
            // Grows only past the largest download so far. A fresh zeroed allocation (not
            // `resize`, which would write every byte first): the operating system hands out
            // zero pages that are touched once, when the data arrives.
            self.buffer = Vec::new();
            // `vec!` aborts when memory runs out; a failed trial reservation is a FAIL instead.
            if Vec::<u8>::new().try_reserve_exact(len).is_err() {
                return self.reply(link, wire, Response::Fail(format!("Cannot allocate a {len}-byte download buffer")));
            }
            self.buffer = vec![0u8; len];
        }
        let mut capture = match &self.capture {
            Some(dir) => {
                self.captured += 1;
                let path = dir.join(format!("{:06}.bin", self.captured));
                match File::create(&path) {
                    Ok(f) => Some(BufWriter::with_capacity(1 << 20, f)),
                    Err(e) => return self.reply(link, wire, Response::Fail(format!("Cannot write capture {}: {e}", path.display()))),
                }
            }
            None => None,
        };
        link.write(&Response::Data(len as u32).encode())?;
        let mut got: usize = 0;
        let start = Instant::now();
        while got < len {
            // Read in pieces of at most 1 MiB so the link rate is kept smoothly.
            let want = (len - got).min(1 << 20);
            let n = match link.read(&mut self.buffer[got..got + want], None) {
                Ok(n) => n,
                Err(e) => {
                    self.store.log(wire, "DATA", &format!("connection lost after {got} of {len} bytes"), json!({ "bytes": got }));
                    return Err(e);
                }
            };
            let mut keep = n;
            let drop_now = self.faults.on_download_bytes(n as u64);
            if let Some(accept) = drop_now {
                keep = (accept as usize).min(n);
            }
            if let Some(c) = &mut capture {
                if let Err(e) = c.write_all(&self.buffer[got..got + keep]) {
                    return self.reply(link, wire, Response::Fail(format!("Cannot write capture: {e}")));
                }
            }
            got += keep;
            if drop_now.is_some() {
                if let Some(c) = &mut capture {
                    let _ = c.flush();
                }
                self.store.log(
                    wire,
                    "DATA",
                    &format!("closed the connection after {got} of {len} bytes"),
                    json!({ "bytes": got, "fault": "drop-after-bytes" }),
                );
                return Ok(Next::Hangup);
            }
            if let Some(rate) = self.link_rate {
                let due = Duration::from_secs_f64(got as f64 / rate as f64);
                let spent = start.elapsed();
                if due > spent {
                    std::thread::sleep(due - spent);
                }
            }
        }
        if let Some(Err(e)) = capture.as_mut().map(|c| c.flush()) {
            return self.reply(link, wire, Response::Fail(format!("Cannot write capture: {e}")));
        }
        self.staged = Some(len);
        self.store.log(wire, "OKAY", "", json!({ "bytes": got }));
        link.write(&Response::Okay(String::new()).encode())?;
        Ok(Next::Continue)
    }

    fn upload(&mut self, link: &mut dyn Transport, wire: &str) -> Result<Next, TransportError> {
        let Some(len) = self.staged else {
            return self.reply(link, wire, Response::Fail("No data staged".into()));
        };
        link.write(&Response::Data(len as u32).encode())?;
        for piece in self.buffer[..len].chunks(1 << 20) {
            link.write(piece)?;
        }
        self.store.log(wire, "OKAY", "", json!({ "bytes": len }));
        link.write(&Response::Okay(String::new()).encode())?;
        Ok(Next::Continue)
    }

    /// The concrete partitions a name written by the host stands for.
    fn resolve(&self, name: &str) -> Result<Vec<String>, String> {
        if CRC_PSEUDO_PARTITIONS.contains(&name) {
            return Ok(vec![name.to_string()]);
        }
        let (base, slot) = self.base_and_slot(name);
        let names = match slot {
            Some("ab") => vec![format!("{base}_a"), format!("{base}_b")],
            Some(_) => vec![name.to_string()],
            None if self.is_slotted(name) => {
                vec![format!("{name}_{}", self.current_slot.as_deref().unwrap_or("a"))]
            }
            None => vec![name.to_string()],
        };
        for n in &names {
            if self.partition_size(n).is_none() {
                return Err(format!("No such partition: {name}"));
            }
        }
        Ok(names)
    }

    fn flash(&mut self, name: &str) -> Response {
        if !self.unlocked {
            return Response::Fail("Flashing is not allowed in Lock State".into());
        }
        let Some(len) = self.staged else {
            return Response::Fail("No image downloaded: send download first".into());
        };
        let targets = match self.resolve(name) {
            Ok(t) => t,
            Err(m) => return Response::Fail(m),
        };
        let data = &self.buffer[..len];
        if CRC_PSEUDO_PARTITIONS.contains(&name) {
            if let Err(m) = self.crc.load_list(name, data) {
                return Response::Fail(m);
            }
            return match std::fs::write(self.store.partition_path(name), data) {
                Ok(()) => Response::Okay(String::new()),
                Err(e) => Response::Fail(format!("Write of {name} failed: {e}")),
            };
        }
        let result = if crate::sparse::is_sparse(data) { self.flash_sparse(name, &targets, len) } else { self.flash_raw(name, &targets, len) };
        match result {
            Ok(()) => Response::Okay(String::new()),
            Err(m) => Response::Fail(m),
        }
    }

    fn flash_raw(&mut self, name: &str, targets: &[String], len: usize) -> Result<(), String> {
        let limit = targets.iter().filter_map(|t| self.partition_size(t)).min().unwrap_or(0);
        if len as u64 > limit {
            return Err(format!("Image size {len} exceeds partition {name} size {limit}"));
        }
        let data = &self.buffer[..len];
        self.crc.check_raw(name, data)?;
        for t in targets {
            // Written over in place, like a phone's partition, and cut to the image's length:
            // truncating first would free the file's cached pages only to allocate them again.
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(self.store.partition_path(t))
                .and_then(|mut f| write_in_pieces(&mut f, data).and_then(|_| f.set_len(len as u64)))
                .map_err(|e| format!("Write of {t} failed: {e}"))?;
        }
        Ok(())
    }

    fn flash_sparse(&mut self, name: &str, targets: &[String], len: usize) -> Result<(), String> {
        let data = &self.buffer[..len];
        // The piece is checked whole (its chunk headers) before anything is written, so a
        // malformed one writes nothing.
        let layout = crate::sparse::validate(data).map_err(|e| format!("Invalid sparse image: {e}"))?;
        let expanded = layout.expanded_len();
        let limit = targets.iter().filter_map(|t| self.partition_size(t)).min().unwrap_or(0);
        if expanded > limit {
            return Err(format!("Sparse image size {expanded} exceeds partition {name} size {limit}"));
        }
        self.crc.check_sparse_piece(name, data, &layout)?;
        for t in targets {
            let path = self.store.partition_path(t);
            let mut out = OpenOptions::new().create(true).write(true).truncate(false).open(&path)
                .map_err(|e| format!("Write of {t} failed: {e}"))?;
            // A partition keeps what DONT_CARE regions cover, so the pieces of one split image
            // build it together; a file of another size held some other image and starts over.
            let current = out.metadata().map(|m| m.len()).unwrap_or(0);
            if current != expanded {
                out.set_len(0).and_then(|_| out.set_len(expanded)).map_err(|e| format!("Write of {t} failed: {e}"))?;
            }
            write_chunks(data, &layout, &mut out).map_err(|e| format!("Write of {t} failed: {e}"))?;
        }
        Ok(())
    }

    fn erase(&mut self, name: &str) -> Response {
        if !self.unlocked {
            return Response::Fail("Erase is not allowed in Lock State".into());
        }
        let targets = match self.resolve(name) {
            Ok(t) => t,
            Err(m) => return Response::Fail(m),
        };
        for t in targets {
            if let Err(e) = File::create(self.store.partition_path(&t)) {
                return Response::Fail(format!("Erase of {t} failed: {e}"));
            }
        }
        Response::Okay(String::new())
    }

    fn set_active(&mut self, slot: &str) -> Response {
        if self.profile.slot_count != 2 {
            return Response::Fail("Slots are not supported on this device".into());
        }
        if !self.unlocked {
            return Response::Fail("Slot Change is not allowed in Lock State".into());
        }
        let slot = slot.trim_start_matches('_');
        if slot != "a" && slot != "b" {
            return Response::Fail(format!("Invalid slot {slot}"));
        }
        self.current_slot = Some(slot.to_string());
        Response::Okay(String::new())
    }

    fn set_lock(&mut self, link: &mut dyn Transport, wire: &str, lock: bool) -> Result<Next, TransportError> {
        if lock != self.unlocked {
            let state = if lock { "locked" } else { "unlocked" };
            return self.reply(link, wire, Response::Fail(format!("Device already {state}")));
        }
        self.unlocked = !lock;
        self.reply(link, wire, Response::Okay(String::new()))
    }

    fn oem(&mut self, link: &mut dyn Transport, wire: &str, args: &str) -> Result<Next, TransportError> {
        match args.trim() {
            "device-info" => {
                for l in [
                    format!("Device unlocked: {}", self.unlocked),
                    format!("Device critical unlocked: {}", self.unlocked),
                    "Charger screen enabled: false".to_string(),
                ] {
                    link.write(&Response::Info(l).encode())?;
                }
                self.reply(link, wire, Response::Okay(String::new()))
            }
            "edl" => {
                self.reply(link, wire, Response::Okay(String::new()))?;
                Ok(Next::Hangup)
            }
            "lock" => self.set_lock(link, wire, true),
            "unlock" => self.set_lock(link, wire, false),
            // Seen unchecked at the end of MediaTek scripts; harmless here.
            "cdms" => self.reply(link, wire, Response::Okay(String::new())),
            other => self.reply(link, wire, Response::Fail(format!("Unknown OEM command: {other}"))),
        }
    }

    fn flashing(&mut self, link: &mut dyn Transport, wire: &str, args: &str) -> Result<Next, TransportError> {
        match args.trim() {
            "lock" => self.set_lock(link, wire, true),
            "unlock" => self.set_lock(link, wire, false),
            "get_unlock_ability" => {
                link.write(&Response::Info("get_unlock_ability: 1".into()).encode())?;
                self.reply(link, wire, Response::Okay(String::new()))
            }
            "lock_critical" | "unlock_critical" => self.reply(link, wire, Response::Okay(String::new())),
            other => self.reply(link, wire, Response::Fail(format!("Unknown flashing command: {other}"))),
        }
    }
}

/// Writes a validated sparse image held in memory into `out`: RAW data straight from `data`,
/// FILL patterns expanded, DONT_CARE left as it is.
fn write_chunks(data: &[u8], layout: &crate::sparse::SparseLayout, out: &mut File) -> Result<(), crate::sparse::SparseError> {
    use crate::sparse::{ChunkKind, SparseError};
    let bs = layout.blk_sz as u64;
    for c in &layout.chunks {
        let at = c.start_block as u64 * bs;
        let len = c.blocks as u64 * bs;
        let io = |e: std::io::Error| SparseError::io(format!("writing at offset {at:#x}"), e);
        match c.kind {
            ChunkKind::Raw => {
                let from = c.data_offset as usize;
                out.seek(SeekFrom::Start(at)).map_err(io)?;
                write_in_pieces(out, &data[from..from + len as usize]).map_err(io)?;
            }
            ChunkKind::Fill(value) => {
                out.seek(SeekFrom::Start(at)).map_err(io)?;
                crate::sparse::write_fill(out, value, len, at)?;
            }
            ChunkKind::DontCare | ChunkKind::Crc32(_) => {}
        }
    }
    Ok(())
}

/// Writes `data` in 1 MiB writes. One write of hundreds of MiB is much slower on Linux when
/// the page cache has to find that much fresh memory in one call (measured 0.8 s against
/// 0.07 s for 256 MiB, docs/performance.md); the bytes written are the same.
fn write_in_pieces(out: &mut File, data: &[u8]) -> std::io::Result<()> {
    for piece in data.chunks(1 << 20) {
        out.write_all(piece)?;
    }
    Ok(())
}
