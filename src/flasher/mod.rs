//! Runs a verified [`Plan`] on a phone.
//!
//! [`prepare`] reads the phone and decides everything before the first write: the product,
//! anti-rollback and other checks, the lock state and mode, which conditional steps run, that
//! every image fits its partition, how each image is split, and (with `--resume`) where to
//! continue. [`execute`] then runs the steps, stopping at the first failure, and reports
//! [`Event`]s; it never draws. The resume journal and the image feeds live here too.

pub mod event;
pub mod feed;
pub mod journal;

pub use event::Event;
pub use feed::{ArchiveStream, FeedError, ImageFeed, PackageFeed, StreamFeed};
pub use journal::{Journal, JournalError, JournalStore};

use crate::fastboot::image::{self, ImageError, ImageEvent, SendError};
use crate::fastboot::{FastbootClient, FastbootError, RebootTarget};
use crate::rom::plan::{Action, AntiSource, Mode, Plan, RebootTarget as PlanReboot};
use crate::sparse::{self, DownloadPlan, SparseLayout};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What verification measured of one image, to check it again while it is read for flashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChecksums {
    pub len: u64,
    pub crc32: u32,
    /// CRC-32 of each [`crate::rom::verify::IMAGE_WINDOW`] bytes, the last window shorter.
    pub windows: Vec<u32>,
}

/// What is being flashed.
pub struct Job<'a> {
    pub plan: &'a Plan,
    pub mode: Mode,
    /// Layout of every image the plan flashes, from verification (size, sparse chunks).
    pub layouts: &'a HashMap<String, SparseLayout>,
    /// Size and CRCs of every image as verification read it: the flash pass reads the package
    /// again and sends no byte of an image that no longer matches.
    pub checksums: &'a HashMap<String, ImageChecksums>,
    /// Content identity of the package (journal key).
    pub package_id: String,
    pub package_name: String,
}

#[derive(Clone, Default)]
pub struct FlashOptions {
    pub resume: bool,
    /// Where resume journals go; `None` keeps none.
    pub journal_dir: Option<std::path::PathBuf>,
    /// Overrides the phone's `max-download-size` (like AOSP's `-S`).
    pub max_download_size: Option<u64>,
    /// Set to stop at the next chunk (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
    /// How often a piece whose download failed on the link (timeout, closed connection, USB
    /// error) is sent again after reconnecting; 0 stops at the first such failure. A failed
    /// `flash:` or `erase:` is never retried: the phone may have written part of the partition.
    pub retries: u32,
    /// Wait before the first retry; each further retry waits twice as long (at most 10 s, or
    /// `retry_delay` itself if that is longer).
    pub retry_delay: Duration,
}

/// The longest wait between two retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// The wait before retry number `attempt` (from 1): `first`, then twice as long each time, at
/// most 10 s or `first`, whichever is longer.
fn retry_wait(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.saturating_sub(1).min(8)).min(MAX_RETRY_DELAY.max(first))
}

/// The largest CRC list kept in memory to be sent again after a reconnect.
const MAX_CRC_LIST_LEN: u64 = 16 << 20;

/// Why a flash did not happen or did not finish. Every message names what failed and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// Refused before anything was written.
    #[error("{message}")]
    Refused { check: String, message: String, hint: Option<String> },
    /// A step failed after the checks passed (boxed: it is the largest variant, and every
    /// `Result` of the flasher carries it).
    #[error("step {} ({}) failed: {}", .0.index, .0.description, .0.message)]
    Step(Box<StepFailure>),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("cannot read the phone: {0}")]
    Device(FastbootError),
    #[error("stopped by the user during step {index} ({description})")]
    Cancelled { index: usize, description: String },
}

/// The step that failed, where, and what the phone said.
#[derive(Debug)]
pub struct StepFailure {
    pub index: usize,
    pub description: String,
    pub partition: Option<String>,
    pub message: String,
    pub device_message: Option<String>,
    pub hint: Option<String>,
}

impl FlashError {
    pub fn hint(&self) -> Option<String> {
        match self {
            FlashError::Refused { hint, .. } => hint.clone(),
            FlashError::Step(f) => f.hint.clone(),
            FlashError::Device(e) => e.hint(),
            FlashError::Cancelled { .. } => Some("run the same command with --resume to continue from this step".into()),
            FlashError::Journal(_) => None,
        }
    }

    /// True when nothing was written to the phone.
    pub fn before_first_write(&self) -> bool {
        matches!(self, FlashError::Refused { .. } | FlashError::Device(_))
    }
}

fn refuse(check: &str, message: String, hint: Option<&str>) -> FlashError {
    FlashError::Refused { check: check.into(), message, hint: hint.map(str::to_string) }
}

/// `getvar` answers, asked once each.
pub struct DeviceFacts {
    vars: BTreeMap<String, Option<String>>,
}

impl DeviceFacts {
    fn get(&mut self, client: &mut FastbootClient, name: &str) -> Result<Option<String>, FlashError> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        let v = client.getvar_opt(name).map_err(FlashError::Device)?;
        self.vars.insert(name.to_string(), v.clone());
        Ok(v)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.vars.get(name).and_then(|v| v.as_deref())
    }
}

/// What [`prepare`] decided for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// A check that passed before the first write; `detail` says what was compared.
    Checked(String),
    Skip(String),
}

/// How one image goes out, for this phone.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub download: DownloadPlan,
    pub bytes: u64,
}

/// Everything decided before the first write.
pub struct Prepared {
    pub serial: String,
    pub product: Option<String>,
    pub decisions: Vec<Decision>,
    pub transfers: HashMap<String, Transfer>,
    /// Images the steps that run will read, in order (for the archive stream).
    pub images: Vec<String>,
    pub bytes: u64,
    pub max_download_size: Option<u64>,
    pub resumed_from: Option<usize>,
    pub facts: DeviceFacts,
    pub warnings: Vec<String>,
}

impl Prepared {
    pub fn steps_to_run(&self) -> usize {
        self.decisions.iter().filter(|d| **d == Decision::Run).count()
    }
}

fn yes_no(v: Option<&str>) -> Option<bool> {
    v.map(|s| matches!(s.trim(), "yes" | "true" | "1"))
}

/// The partition a flash writes, for `partition-size`: Xiaomi's `_ab` names both slots and
/// has no size of its own, so slot a stands for it.
fn size_names(partition: &str) -> Vec<String> {
    match partition.strip_suffix("_ab") {
        Some(base) => vec![format!("{base}_a"), base.to_string()],
        None => vec![partition.to_string()],
    }
}

/// Xiaomi's CRC-list pseudo-partitions, flashed before the images they describe.
fn is_crc_list(partition: &str) -> bool {
    matches!(partition, "crclist" | "sparsecrclist")
}

/// Reads the phone and decides everything; writes nothing.
pub fn prepare(
    client: &mut FastbootClient,
    job: &Job,
    opts: &FlashOptions,
    events: &mut dyn FnMut(Event),
) -> Result<Prepared, FlashError> {
    let mut facts = DeviceFacts { vars: BTreeMap::new() };
    let product = facts.get(client, "product")?;
    let serial = facts.get(client, "serialno")?.unwrap_or_else(|| client.describe());
    let unlocked = yes_no(facts.get(client, "unlocked")?.as_deref());
    let current_slot = facts.get(client, "current-slot")?.map(|s| s.trim_start_matches('_').to_string());
    let max_download = match opts.max_download_size {
        Some(m) => Some(m),
        None => facts.get(client, "max-download-size")?.and_then(|v| crate::fastboot::codec::parse_size(&v)).filter(|v| *v > 0),
    };
    let anti_var = job
        .plan
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::CheckAnti(a) => Some(a.var.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "anti".into());
    let device_anti = facts.get(client, &anti_var)?.and_then(|v| v.trim().parse::<u32>().ok());
    events(Event::Device {
        serial: serial.clone(),
        product: product.clone(),
        unlocked,
        anti: device_anti,
        current_slot,
        max_download_size: max_download,
    });
    let mut check = |name: &str, ok: bool, detail: String| events(Event::Check { name: name.into(), ok, detail });
    let mut warnings = Vec::new();

    if yes_no(facts.get(client, "is-userspace")?.as_deref()) == Some(true) {
        check("mode", false, "the phone is in fastbootd (userspace fastboot)".into());
        return Err(refuse(
            "mode",
            "the phone is in fastbootd (userspace fastboot), but Xiaomi packages are flashed from the bootloader".into(),
            Some("run `mi-flash reboot bootloader`, wait for the FASTBOOT screen, then run this command again"),
        ));
    }
    check("mode", true, "bootloader fastboot".into());
    match unlocked {
        Some(false) => {
            check("lock", false, "the bootloader is locked".into());
            return Err(refuse(
                "lock",
                "the phone's bootloader is locked: it refuses to be flashed".into(),
                Some("flashing a fastboot ROM needs an unlocked bootloader (Xiaomi's Mi Unlock tool, after its waiting period); if you are locked out of the phone, `mi-flash rescue` explains your options"),
            ));
        }
        Some(true) => check("lock", true, "the bootloader is unlocked".into()),
        None => warnings.push("the phone does not report whether its bootloader is unlocked".to_string()),
    }

    if job.plan.product_check().is_none() {
        warnings.push(format!(
            "{} does not check the phone model: make sure this package is for your phone ({})",
            job.plan.script,
            product.as_deref().unwrap_or("unknown model")
        ));
        if job.mode == Mode::Lock {
            return Err(refuse(
                "lock-mode",
                format!("{} relocks the bootloader but does not check the phone model", job.plan.script),
                Some("relocking with a package that is not exactly for this phone can leave it unbootable and locked; use --mode clean"),
            ));
        }
    }
    if job.plan.locks() && job.mode != Mode::Lock {
        return Err(refuse(
            "lock-mode",
            format!("{} relocks the bootloader, and that was not asked for", job.plan.script),
            Some("relocking is only done with an explicit --mode lock"),
        ));
    }

    let mut decisions = Vec::with_capacity(job.plan.steps.len());
    let mut transfers = HashMap::new();
    for step in &job.plan.steps {
        if let Some(cond) = &step.when {
            let v = facts.get(client, cond.var())?;
            if !cond.holds(v.as_deref()) {
                decisions.push(Decision::Skip(format!(
                    "only when {cond}; the phone says {}: {}",
                    cond.var(),
                    v.as_deref().unwrap_or("(not reported)")
                )));
                continue;
            }
        }
        let decision = match &step.action {
            Action::CheckProduct(c) => {
                let actual = product.clone().unwrap_or_default();
                if !c.matches(&actual) {
                    check("product", false, format!("package for {}, phone is {actual}", c.expected()));
                    return Err(refuse(
                        "product",
                        format!(
                            "this package is for {}, the phone is {} ({})",
                            c.expected(),
                            if actual.is_empty() { "a model that does not say" } else { &actual },
                            step.source
                        ),
                        Some("download the fastboot ROM made for this phone's codename (see `mi-flash info`)"),
                    ));
                }
                let d = format!("phone {actual} matches {}", c.expected());
                check("product", true, d.clone());
                Decision::Checked(d)
            }
            Action::CheckAnti(a) => {
                if matches!(a.from, AntiSource::Missing(_) | AntiSource::Disabled) {
                    warnings.push(format!("the package's anti-rollback check is incomplete ({}); mi-flash compares {} {} with the package's {}", step.source, a.var, device_anti.map(|d| d.to_string()).unwrap_or_else(|| "0".into()), a.max));
                }
                if !a.allows(device_anti) {
                    let d = device_anti.unwrap_or(0);
                    check("anti-rollback", false, format!("phone {d}, package {}", a.max));
                    return Err(refuse(
                        "anti-rollback",
                        format!(
                            "the phone's anti-rollback index is {d} but this package's is {}: flashing it would brick the phone",
                            a.max
                        ),
                        Some(&format!("use a package with anti-rollback index {d} or higher (a newer build for this phone); this check has no override")),
                    ));
                }
                let d = format!("phone {} {}, package {}", a.var, device_anti.unwrap_or(0), a.max);
                check("anti-rollback", true, d.clone());
                Decision::Checked(d)
            }
            Action::CheckVar(c) => {
                let v = facts.get(client, c.var())?;
                if !c.allows(v.as_deref()) {
                    check(c.var(), false, format!("{} is {}", c.var(), v.as_deref().unwrap_or("(not reported)")));
                    return Err(refuse(
                        c.var(),
                        format!("the package requires {} to be {}, the phone says {} ({})", c.var(), c.expected(), v.as_deref().unwrap_or("nothing"), step.source),
                        None,
                    ));
                }
                let d = format!("{} is {}", c.var(), v.as_deref().unwrap_or("(not reported)"));
                check(c.var(), true, d.clone());
                Decision::Checked(d)
            }
            Action::CheckNumber(c) => {
                let v = facts.get(client, &c.var)?;
                if !c.allows(v.as_deref()) {
                    check(&c.var, false, format!("{} is {}", c.var, v.as_deref().unwrap_or("(not reported)")));
                    return Err(refuse(
                        &c.var,
                        format!("this package refuses phones whose {} is {} {} (the phone says {}; {})", c.var, c.refuse_if.symbol(), c.limit, v.as_deref().unwrap_or("nothing"), step.source),
                        None,
                    ));
                }
                let d = format!("{} is {}", c.var, v.as_deref().unwrap_or("(not reported)"));
                check(&c.var, true, d.clone());
                Decision::Checked(d)
            }
            Action::CheckSecurityPatch(c) => {
                let v = facts.get(client, &c.var)?;
                if !c.allows(v.as_deref()) {
                    check("security-patch", false, format!("phone {}, package {}", v.as_deref().unwrap_or("?"), c.max));
                    return Err(refuse(
                        "security-patch",
                        format!("the phone's security patch level {} is newer than this package's {}: that would be a downgrade", v.as_deref().unwrap_or("?"), c.max),
                        Some("use a package at least as new as the phone's software, or --mode clean if the package allows it"),
                    ));
                }
                let d = format!("phone {}, package {}", v.as_deref().unwrap_or("(not reported)"), c.max);
                check("security-patch", true, d.clone());
                Decision::Checked(d)
            }
            Action::Flash(f) => {
                let layout = job.layouts.get(&f.image).ok_or_else(|| {
                    refuse("package", format!("{} was not verified with the package", f.image), Some("run `mi-flash verify --rom` on the package"))
                })?;
                let expanded = layout.expanded_len();
                let mut part_size = None;
                for name in size_names(&f.partition) {
                    if let Some(v) = facts.get(client, &format!("partition-size:{name}"))? {
                        part_size = crate::fastboot::codec::parse_partition_size(&v);
                        if part_size.is_some() {
                            break;
                        }
                    }
                }
                if let Some(size) = part_size {
                    // A raw image is written as it is; a sparse one expands to its full size.
                    let needed = if layout.is_sparse() { expanded } else { layout.source_len };
                    if needed > size {
                        check("fits", false, format!("{} is {needed} bytes, partition {} is {size}", f.image, f.partition));
                        return Err(refuse(
                            "fits",
                            format!("{} ({needed} bytes) does not fit partition {} ({size} bytes)", f.image, f.partition),
                            Some("this package is not made for this phone's partition layout: check the model and the package"),
                        ));
                    }
                }
                if !transfers.contains_key(&f.image) {
                    let download = sparse::plan_download(layout, max_download).map_err(|e| {
                        refuse("package", format!("{} cannot be split for this phone: {e}", f.image), None)
                    })?;
                    let bytes = match &download {
                        DownloadPlan::Unchanged { len } => *len,
                        DownloadPlan::Pieces { pieces, .. } => pieces.iter().map(|p| p.encoded_len()).sum(),
                    };
                    transfers.insert(f.image.clone(), Transfer { download, bytes });
                }
                Decision::Run
            }
            _ => Decision::Run,
        };
        decisions.push(decision);
    }
    check("fits", true, "every image fits its partition where the phone reports sizes".into());

    let mut resumed_from = None;
    if opts.resume {
        let dir = opts.journal_dir.clone().ok_or_else(|| refuse("resume", "--resume needs the resume journal, and journals are off".into(), None))?;
        let store = JournalStore::new(dir);
        let j = store.load(&serial, &job.package_id)?.ok_or_else(|| {
            refuse(
                "resume",
                format!("there is no unfinished flash of this package on phone {serial} to resume"),
                Some("run the command without --resume to flash from the start"),
            )
        })?;
        if j.product != product || j.script != job.plan.script {
            return Err(refuse(
                "resume",
                format!("the unfinished flash on {serial} was for {} with {}, not this phone model and script", j.product.as_deref().unwrap_or("?"), j.script),
                Some("run the command without --resume to flash from the start"),
            ));
        }
        // The CRC lists are the phone's state, not partitions: a phone that rebooted since has
        // forgotten them, and one that did not still counts the pieces of the image that was
        // cut short. Sending them again makes it check the resumed images from their first
        // piece.
        let crc_list = |i: usize| matches!(&job.plan.steps[i].action, Action::Flash(f) if is_crc_list(&f.partition));
        for (i, d) in decisions.iter_mut().enumerate() {
            if j.done.contains(&(i + 1)) && *d == Decision::Run && !crc_list(i) {
                *d = Decision::Skip("done before (resumed)".into());
            }
        }
        resumed_from = decisions
            .iter()
            .enumerate()
            .position(|(i, d)| *d == Decision::Run && !(crc_list(i) && j.done.contains(&(i + 1))))
            .map(|i| i + 1);
        check("resume", true, format!("continuing at step {}", resumed_from.unwrap_or(decisions.len() + 1)));
    } else if let Some(dir) = &opts.journal_dir {
        let store = JournalStore::new(dir.clone());
        // Without a journal a failed flash could not be resumed: refuse before the first write.
        store.check_writable().map_err(|e| {
            refuse("journal", e.to_string(), Some("choose a writable folder with --journal-dir (or MI_FLASH_JOURNAL_DIR): the journal is what lets --resume continue a flash that stopped"))
        })?;
        if let Ok(Some(j)) = store.load(&serial, &job.package_id) {
            if !j.complete {
                warnings.push(format!(
                    "an earlier flash of this package on this phone stopped at step {}; this one starts from the beginning (use --resume to continue instead)",
                    j.interrupted.or_else(|| j.done.iter().max().map(|m| m + 1)).unwrap_or(1)
                ));
            }
        }
    }

    let mut images = Vec::new();
    let mut bytes = 0;
    for (step, d) in job.plan.steps.iter().zip(&decisions) {
        if let (Action::Flash(f), Decision::Run) = (&step.action, d) {
            images.push(f.image.clone());
            bytes += transfers.get(&f.image).map(|t| t.bytes).unwrap_or(0);
        }
    }
    for w in &warnings {
        events(Event::Warning { message: w.clone() });
    }
    Ok(Prepared {
        serial,
        product,
        decisions,
        transfers,
        images,
        bytes,
        max_download_size: max_download,
        resumed_from,
        facts,
        warnings,
    })
}

/// What a finished flash did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub steps: usize,
    pub bytes_sent: u64,
    pub elapsed: Duration,
}

fn op_name(a: &Action) -> &'static str {
    match a {
        Action::Flash(_) => "flash",
        Action::Erase { .. } => "erase",
        Action::SetActive { .. } => "set-active",
        Action::Reboot { .. } => "reboot",
        Action::Lock { .. } => "lock",
        Action::Oem { .. } => "oem",
        Action::CheckProduct(_) => "check-product",
        Action::CheckAnti(_) => "check-anti",
        Action::CheckVar(_) => "check-var",
        Action::CheckNumber(_) => "check-number",
        Action::CheckSecurityPatch(_) => "check-security-patch",
    }
}

fn partition_of(a: &Action) -> Option<String> {
    match a {
        Action::Flash(f) => Some(f.partition.clone()),
        Action::Erase { partition } => Some(partition.clone()),
        _ => None,
    }
}

/// Reads from a feed and stops when the user cancels.
struct Cancellable<R> {
    inner: R,
    cancel: Option<Arc<AtomicBool>>,
}

impl<R: Read> Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            // Not `ErrorKind::Interrupted`: `io::copy` and `read_exact` retry on that, forever.
            return Err(std::io::Error::other("stopped by the user"));
        }
        self.inner.read(buf)
    }
}

/// Checks that an image read again for flashing is the one verification read, before any of
/// it is sent: the image is read one window ([`crate::rom::verify::IMAGE_WINDOW`] bytes) ahead,
/// and a window is handed on only when its CRC-32 is the one verification measured. A package
/// file replaced or changed on disk between verification and flashing therefore fails the
/// download that would carry its first changed byte, and no `flash:` follows. The whole
/// image's size and CRC-32 are compared at its end as well; an image longer or shorter than
/// verified fails too.
struct Unchanged<'a, R> {
    inner: R,
    image: String,
    sums: &'a ImageChecksums,
    /// The current window, verified; `buf[at..]` is not handed on yet.
    buf: Vec<u8>,
    at: usize,
    /// Windows read so far, and bytes.
    window: usize,
    seen: u64,
    whole: crc32fast::Hasher,
}

impl<'a, R: Read> Unchanged<'a, R> {
    fn new(inner: R, image: &str, sums: &'a ImageChecksums) -> Unchanged<'a, R> {
        Unchanged { inner, image: image.to_string(), sums, buf: Vec::new(), at: 0, window: 0, seen: 0, whole: crc32fast::Hasher::new() }
    }

    fn changed(&self, what: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} changed since it was verified ({what}); nothing changed was sent: verify the package again", self.image),
        )
    }

    /// Reads and checks the next window into `buf`; `Ok(false)` at the verified end.
    fn next_window(&mut self) -> std::io::Result<bool> {
        let window = crate::rom::verify::IMAGE_WINDOW;
        let left = self.sums.len - self.seen;
        if left == 0 {
            // Past the verified end there must be nothing more.
            let mut probe = [0u8; 1];
            return match crate::sparse::read_full_from(&mut self.inner, &mut probe)? {
                0 => Ok(false),
                _ => Err(self.changed(format!("longer than the {} bytes verified", self.sums.len))),
            };
        }
        let want = left.min(window) as usize;
        self.buf.resize(want, 0);
        let got = crate::sparse::read_full_from(&mut self.inner, &mut self.buf)?;
        if got < want {
            return Err(self.changed(format!("{} bytes long, verified {}", self.seen + got as u64, self.sums.len)));
        }
        // One CRC pass: the window's hasher also extends the whole image's CRC.
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.buf);
        self.whole.combine(&hasher);
        let crc = hasher.finalize();
        let from = self.seen;
        let expected = self.sums.windows.get(self.window).copied();
        if expected != Some(crc) {
            return Err(self.changed(format!("bytes {from}..{} differ", from + want as u64)));
        }
        self.window += 1;
        self.seen += want as u64;
        self.at = 0;
        if self.seen == self.sums.len {
            let whole = self.whole.clone().finalize();
            if whole != self.sums.crc32 || self.window != self.sums.windows.len() {
                return Err(self.changed(format!("CRC-32 {whole:#010x}, verified {:#010x}", self.sums.crc32)));
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for Unchanged<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.at == self.buf.len() && !self.next_window()? {
            return Ok(0);
        }
        let n = (self.buf.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Opens a new connection to the same phone: after it rebooted into fastboot, or to retry a
/// download after the link failed.
pub type Reconnect<'a> = dyn FnMut() -> Result<FastbootClient, String> + 'a;

/// Why a reconnect for a retry did not give back the same, working phone.
enum ReconnectError {
    /// Could not connect or the new link failed too: another attempt may work.
    Failed(String),
    /// Another phone answers: stop.
    OtherPhone(String),
}

/// Waits (stopping early on Ctrl-C), opens a new connection and checks that the phone that
/// answers is the one prepared: same `serialno` and `product`.
fn reconnect_same_phone(
    prepared: &Prepared,
    reconnect: &mut Reconnect,
    delay: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<FastbootClient, ReconnectError> {
    let until = Instant::now() + delay;
    while Instant::now() < until && !cancelled() {
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    let mut c = reconnect().map_err(ReconnectError::Failed)?;
    let failed = |e: FastbootError| ReconnectError::Failed(e.to_string());
    let serial = c.getvar_opt("serialno").map_err(failed)?;
    let product = c.getvar_opt("product").map_err(failed)?;
    let same_serial = serial.as_deref().map_or(true, |s| s == prepared.serial);
    if !same_serial || product != prepared.product {
        return Err(ReconnectError::OtherPhone(format!(
            "after reconnecting, the phone that answers is {} ({}), not {} ({})",
            serial.as_deref().unwrap_or("?"),
            product.as_deref().unwrap_or("?"),
            prepared.serial,
            prepared.product.as_deref().unwrap_or("?")
        )));
    }
    Ok(c)
}

/// Sends the CRC lists sent earlier in this flash again, on a phone that checks them: a
/// phone that lost its link may have reset its piece count, and loading the lists resets it
/// for certain, so the image being retried then starts from its first piece.
fn resend_crc_lists(c: &mut FastbootClient, lists: &[(String, Vec<u8>)]) -> Result<bool, FastbootError> {
    if lists.is_empty() || c.getvar_opt("crc")?.as_deref() != Some("1") {
        return Ok(false);
    }
    for (partition, bytes) in lists {
        c.download(bytes)?;
        c.flash(partition)?;
    }
    Ok(true)
}

/// The connection in use: a new one after a reboot or a retry, else the caller's.
fn current_client<'c>(owned: &'c mut Option<FastbootClient>, caller: &'c mut FastbootClient) -> &'c mut FastbootClient {
    match owned.as_mut() {
        Some(c) => c,
        None => caller,
    }
}

/// Runs the prepared steps. Stops at the first failure.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    client: &mut FastbootClient,
    job: &Job,
    prepared: &Prepared,
    feed: &mut dyn ImageFeed,
    opts: &FlashOptions,
    events: &mut dyn FnMut(Event),
    reconnect: &mut Reconnect,
) -> Result<Summary, FlashError> {
    let started = Instant::now();
    let total = job.plan.steps.len();
    events(Event::Plan {
        script: job.plan.script.clone(),
        steps: prepared.steps_to_run(),
        bytes: prepared.bytes,
        resumed_from: prepared.resumed_from,
    });
    let store = opts.journal_dir.clone().map(JournalStore::new);
    let mut journal = match (&store, opts.resume) {
        (Some(s), true) => s.load(&prepared.serial, &job.package_id)?,
        _ => None,
    }
    .unwrap_or(Journal {
        serial: prepared.serial.clone(),
        product: prepared.product.clone(),
        package: job.package_id.clone(),
        package_name: job.package_name.clone(),
        script: job.plan.script.clone(),
        done: Vec::new(),
        interrupted: None,
        complete: false,
    });
    let cancelled = || opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    let mut bytes_sent = 0u64;
    let mut steps_run = 0;
    let mut owned_client: Option<FastbootClient> = None;
    // The CRC lists sent so far, to send again after a reconnect.
    let mut crc_lists: Vec<(String, Vec<u8>)> = Vec::new();

    for (i, (step, decision)) in job.plan.steps.iter().zip(&prepared.decisions).enumerate() {
        let index = i + 1;
        let description = step.action.to_string();
        match decision {
            Decision::Skip(reason) => {
                events(Event::StepSkipped { index, reason: reason.clone() });
                continue;
            }
            Decision::Checked(detail) => {
                events(Event::StepStarted { index, total, op: op_name(&step.action).into(), description: description.clone(), partition: None, image: None, bytes: None, pieces: None });
                log::info!("step {index}: {detail}");
                events(Event::StepFinished { index, elapsed_ms: 0, bytes_sent: 0 });
                continue;
            }
            Decision::Run => {}
        }
        if cancelled() {
            return Err(FlashError::Cancelled { index, description });
        }
        let transfer = match &step.action {
            Action::Flash(f) => prepared.transfers.get(&f.image),
            _ => None,
        };
        events(Event::StepStarted {
            index,
            total,
            op: op_name(&step.action).into(),
            description: description.clone(),
            partition: partition_of(&step.action),
            image: match &step.action {
                Action::Flash(f) => Some(f.image.clone()),
                _ => None,
            },
            bytes: transfer.map(|t| t.bytes),
            pieces: transfer.map(|t| t.download.downloads() as u32),
        });
        if let Some(s) = &store {
            journal.interrupted = Some(index);
            s.save(&journal)?;
        }
        let step_started = Instant::now();
        let step_error = |message: String, device_message: Option<String>, hint: Option<String>| {
            FlashError::Step(Box::new(StepFailure {
                index,
                description: description.clone(),
                partition: partition_of(&step.action),
                message,
                device_message,
                hint,
            }))
        };
        let fb = |e: FastbootError| {
            let dm = e.device_message().map(str::to_string);
            let hint = e.hint();
            step_error(e.to_string(), dm, hint)
        };
        let mut sent_this_step = 0u64;
        let mut rebooted_to: Option<RebootTarget> = None;
        match &step.action {
            Action::Flash(f) => {
                let t = transfer.ok_or_else(|| step_error(format!("{} has no transfer plan", f.image), None, None))?;
                let layout = &job.layouts[&f.image];
                let piece_lens: Vec<u64> = match &t.download {
                    DownloadPlan::Unchanged { len } => vec![*len],
                    DownloadPlan::Pieces { pieces, .. } => pieces.iter().map(|p| p.encoded_len()).collect(),
                };
                // A CRC list is small: it goes out from memory, and is kept to be sent again
                // after a reconnect.
                let list = if is_crc_list(&f.partition) {
                    if layout.source_len > MAX_CRC_LIST_LEN {
                        return Err(step_error(format!("{} is {} bytes, too large for a CRC list", f.image, layout.source_len), None, None));
                    }
                    let mut bytes = Vec::new();
                    let mut r = feed.open(&f.image).map_err(|e| step_error(e.to_string(), None, None))?;
                    r.read_to_end(&mut bytes).map_err(|e| step_error(format!("{} could not be read: {e}", f.image), None, None))?;
                    Some(bytes)
                } else {
                    None
                };
                let step_total = t.bytes;
                let partition = f.partition.clone();
                let mut first = 0usize;
                let mut attempt = 0u32;
                loop {
                    let c: &mut FastbootClient = match owned_client.as_mut() {
                        Some(c) => c,
                        None => &mut *client,
                    };
                    let reader: Box<dyn Read + Send + '_> = match &list {
                        Some(bytes) => Box::new(&bytes[..]),
                        None if attempt == 0 => feed.open(&f.image).map_err(|e| step_error(e.to_string(), None, None))?,
                        None => feed.reopen(&f.image).map_err(|e| step_error(e.to_string(), None, None))?,
                    };
                    let reader = Cancellable { inner: reader, cancel: opts.cancel.clone() };
                    let reader = match job.checksums.get(&f.image) {
                        Some(sums) if list.is_none() => Box::new(Unchanged::new(reader, &f.image, sums)) as Box<dyn Read + Send + '_>,
                        _ => Box::new(reader),
                    };
                    let mut done_before: u64 = piece_lens[..first].iter().sum();
                    let mut current = 0u64;
                    let result = image::send_planned_from(c, &f.partition, layout, &t.download, reader, first, &mut |e| match e {
                        ImageEvent::Sending { piece, pieces, bytes, .. } => {
                            done_before += current;
                            current = bytes;
                            if pieces > 1 {
                                events(Event::Piece { index, partition: partition.clone(), piece, pieces, bytes });
                            }
                        }
                        ImageEvent::Progress { sent, .. } => {
                            events(Event::Progress { index, partition: partition.clone(), sent: done_before + sent, total: step_total })
                        }
                        ImageEvent::Writing { .. } => {}
                    });
                    let e = match result {
                        Ok(_) => {
                            sent_this_step = step_total;
                            break;
                        }
                        Err(_) if cancelled() => return Err(FlashError::Cancelled { index, description }),
                        Err(e) => e,
                    };
                    if !e.retryable() || attempt >= opts.retries {
                        let retried = if attempt > 0 { format!(" (after {attempt} {})", if attempt == 1 { "retry" } else { "retries" }) } else { String::new() };
                        return Err(match e {
                            SendError::Image(e) => step_error(format!("{} could not be read: {e}", f.image), None, Some("the package changed or is damaged since it was verified: verify it again".into())),
                            SendError::Device { error: ImageError::Device { source, .. }, .. } => {
                                let dm = source.device_message().map(str::to_string);
                                step_error(format!("{source}{retried}"), dm, source.hint())
                            }
                            SendError::Device { error, .. } => step_error(format!("{error}{retried}"), None, error.hint()),
                        });
                    }
                    // retryable() is true only for device errors.
                    let SendError::Device { piece, error, .. } = &e else {
                        return Err(step_error(format!("{} could not be sent: {e:?}", f.image), None, None));
                    };
                    let mut failure = error.to_string();
                    let what = if piece_lens.len() > 1 { format!("piece {}/{} of {partition}", piece + 1, piece_lens.len()) } else { partition.clone() };
                    // Reconnect, check it is the same phone, send the CRC lists again where
                    // the phone checks them; each failed reconnect uses up a retry too.
                    loop {
                        attempt += 1;
                        let wait = retry_wait(opts.retry_delay, attempt);
                        let message = format!(
                            "step {index}: sending {what} failed: {failure}; reconnecting in {:.1} s to send it again (retry {attempt} of {})",
                            wait.as_secs_f64(),
                            opts.retries
                        );
                        log::info!("{message}");
                        events(Event::Warning { message });
                        match owned_client.as_mut() {
                            Some(c) => c.close(),
                            None => client.close(),
                        }
                        let delay = wait;
                        let reconnected = reconnect_same_phone(prepared, reconnect, delay, &cancelled).and_then(|mut c| {
                            match resend_crc_lists(&mut c, &crc_lists) {
                                Ok(sent) => Ok((c, sent)),
                                Err(FastbootError::Refused { command, message }) => Err(ReconnectError::OtherPhone(format!("sending the CRC lists again: the phone refused `{command}`: {message}"))),
                                Err(e) => Err(ReconnectError::Failed(format!("sending the CRC lists again: {e}"))),
                            }
                        });
                        if cancelled() {
                            return Err(FlashError::Cancelled { index, description });
                        }
                        match reconnected {
                            Ok((c, lists_sent)) => {
                                owned_client = Some(c);
                                // Lists sent again reset the phone's piece count: the image
                                // starts over. Otherwise only the failed piece goes again.
                                first = if lists_sent { 0 } else { *piece };
                                break;
                            }
                            Err(ReconnectError::OtherPhone(m)) => {
                                return Err(step_error(m, None, Some("connect the phone that was being flashed".into())));
                            }
                            Err(ReconnectError::Failed(m)) if attempt < opts.retries => failure = format!("{failure}; reconnecting failed: {m}"),
                            Err(ReconnectError::Failed(m)) => {
                                return Err(step_error(format!("{error} (after {attempt} {}; reconnecting failed: {m})", if attempt == 1 { "retry" } else { "retries" }), None, Some("check the cable and that the phone still shows FASTBOOT".into())));
                            }
                        }
                    }
                }
                if let Some(bytes) = list {
                    crc_lists.retain(|(p, _)| *p != f.partition);
                    crc_lists.push((f.partition.clone(), bytes));
                }
            }
            Action::Erase { partition } => current_client(&mut owned_client, client).erase(partition).map_err(fb)?,
            Action::SetActive { slot } => current_client(&mut owned_client, client).set_active(slot).map_err(fb)?,
            Action::Reboot { target } => {
                let t = match target {
                    PlanReboot::System => RebootTarget::System,
                    PlanReboot::Bootloader => RebootTarget::Bootloader,
                    PlanReboot::Recovery => RebootTarget::Recovery,
                    PlanReboot::Fastboot => RebootTarget::Fastboot,
                };
                current_client(&mut owned_client, client).reboot(t).map_err(fb)?;
                rebooted_to = Some(t);
            }
            Action::Lock { command } => {
                let c = current_client(&mut owned_client, client);
                match command.trim() {
                    "flashing lock" => c.flashing("lock"),
                    _ => c.oem("lock"),
                }
                .map_err(fb)?;
            }
            Action::Oem { command } => {
                current_client(&mut owned_client, client).oem(command).map_err(fb)?;
            }
            other => return Err(step_error(format!("mi-flash cannot run `{other}`"), None, None)),
        }
        bytes_sent += sent_this_step;
        steps_run += 1;
        journal.done.push(index);
        journal.interrupted = None;
        if let Some(s) = &store {
            s.save(&journal)?;
        }
        events(Event::StepFinished { index, elapsed_ms: step_started.elapsed().as_millis() as u64, bytes_sent: sent_this_step });
        // A reboot into fastboot in the middle of a plan: wait for the phone to come back.
        let more = prepared.decisions[index..].contains(&Decision::Run);
        if more && matches!(rebooted_to, Some(RebootTarget::Bootloader | RebootTarget::Fastboot)) {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let last = match reconnect() {
                    Ok(c) => {
                        owned_client = Some(c);
                        break;
                    }
                    Err(e) => e,
                };
                if Instant::now() > deadline {
                    return Err(step_error(
                        format!("the phone did not come back after rebooting: {last}"),
                        None,
                        Some("check the phone's screen and cable, then run the command again with --resume".into()),
                    ));
                }
            }
        }
    }
    journal.complete = true;
    if let Some(s) = &store {
        let _ = std::fs::remove_file(s.path(&journal.serial, &journal.package));
    }
    let elapsed = started.elapsed();
    events(Event::Finished { steps: steps_run, bytes_sent, elapsed_ms: elapsed.as_millis() as u64 });
    Ok(Summary { steps: steps_run, bytes_sent, elapsed })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn retry_waits_double_up_to_ten_seconds_or_the_first_wait() {
        let waits = |first: u64| (1..=6).map(|a| super::retry_wait(Duration::from_secs(first), a).as_secs()).collect::<Vec<_>>();
        assert_eq!(waits(1), [1, 2, 4, 8, 10, 10]);
        assert_eq!(waits(3), [3, 6, 10, 10, 10, 10]);
        assert_eq!(waits(20), [20, 20, 20, 20, 20, 20]);
        assert_eq!(waits(0), [0; 6]);
        assert_eq!(super::retry_wait(Duration::from_secs(1), 100), Duration::from_secs(10));
    }

    use super::Unchanged;
    use std::io::Read;

    fn read_all_in(step: usize, r: &mut dyn Read) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn sums(data: &[u8]) -> super::ImageChecksums {
        let mut w = crate::rom::verify::Windows::default();
        w.update(data);
        let (windows, crc32) = w.finish();
        assert_eq!(crc32, crc32fast::hash(data), "the combined CRC is the whole CRC");
        super::ImageChecksums { len: data.len() as u64, crc32, windows }
    }

    #[test]
    fn an_unchanged_image_passes_and_a_changed_window_is_never_handed_on() {
        const W: usize = crate::rom::verify::IMAGE_WINDOW as usize;
        let data: Vec<u8> = (0..(3 * W + 1000) as u32).map(|i| (i * 31 % 251) as u8).collect();
        let verified = sums(&data);
        for step in [1, 4096, 99_999, W, W + 1, 4 << 20] {
            let mut ok = Unchanged::new(&data[..], "images/boot.img", &verified);
            assert_eq!(read_all_in(step, &mut ok).unwrap(), data, "step {step}");
        }
        // A byte of the third window changed: the first two windows are handed on whole, then
        // the read that would start the third fails; no byte of it comes out.
        let mut changed = data.clone();
        changed[2 * W + 10] ^= 1;
        let mut r = Unchanged::new(&changed[..], "images/boot.img", &verified);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 60_000];
        let e = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("the changed image was read to its end"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(got, data[..2 * W], "exactly the unchanged windows were handed on");
        assert!(e.to_string().contains("images/boot.img changed since it was verified"), "{e}");
        assert!(e.to_string().contains(&format!("bytes {}..{} differ", 2 * W, 3 * W)), "{e}");
        assert!(e.to_string().contains("verify the package again"), "{e}");
        // The last, short window is checked the same way.
        let mut changed = data.clone();
        *changed.last_mut().unwrap() ^= 1;
        let mut r = Unchanged::new(&changed[..], "images/boot.img", &verified);
        assert!(read_all_in(W, &mut r).is_err());
    }

    #[test]
    fn an_image_shorter_than_verified_fails() {
        let data = vec![7u8; 5000];
        let verified = sums(&data);
        let mut r = Unchanged::new(&data[..4000], "images/misc.img", &verified);
        let e = read_all_in(5000, &mut r).unwrap_err();
        assert!(e.to_string().contains("4000 bytes long, verified 5000"), "{e}");
    }

    #[test]
    fn an_image_longer_than_verified_fails() {
        let data = vec![7u8; 5000];
        let verified = sums(&data[..4096]);
        let mut r = Unchanged::new(&data[..], "images/misc.img", &verified);
        let e = read_all_in(5000, &mut r).unwrap_err();
        assert!(e.to_string().contains("longer than the 4096 bytes verified"), "{e}");
    }
}
