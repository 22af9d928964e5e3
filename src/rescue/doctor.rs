//! `mi-flash doctor`: what stands between the user and a working flash on this computer.
//! USB access (libusb starts, devices enumerate, phones can be opened, the udev rule on Linux,
//! the driver on Windows), free disk space where mi-flash spills large images, and the state
//! directory. Each check says what it found and, when something is wrong, the fix.
//!
//! Boundaries: checks only, no printing; the places checked come in a [`DoctorEnv`] so tests
//! can point them at temporary directories.

use crate::transport::usb::{libusb_version, list_fastboot_devices};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Below this much free space a full ROM's largest images may not fit while being unpacked.
pub const SPILL_WARN_BYTES: u64 = 10 << 30;
pub const SPILL_FAIL_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not applicable on this system.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `libusb`, `usb-devices`, `phones`, `udev-rule`, `driver`, `disk-space`,
    /// `state-dir`.
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check { name, status, detail: detail.into(), fix }
    }
}

/// Where the checks look.
#[derive(Debug, Clone)]
pub struct DoctorEnv {
    /// Where large images are unpacked (the temporary directory).
    pub spill_dir: PathBuf,
    /// mi-flash's state directory (resume journals, simulator stores).
    pub state_dir: PathBuf,
    /// Directories holding udev rules (Linux).
    pub udev_dirs: Vec<PathBuf>,
    /// Whether to look at USB at all (tests without USB turn it off).
    pub usb: bool,
}

impl DoctorEnv {
    /// The real places on this computer.
    pub fn system() -> DoctorEnv {
        let base = dirs::state_dir().or_else(dirs::data_local_dir).unwrap_or_else(std::env::temp_dir);
        DoctorEnv {
            spill_dir: std::env::temp_dir(),
            state_dir: base.join("mi-flash"),
            udev_dirs: ["/etc/udev/rules.d", "/run/udev/rules.d", "/usr/lib/udev/rules.d", "/lib/udev/rules.d"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            usb: true,
        }
    }
}

pub fn run_checks(env: &DoctorEnv) -> Vec<Check> {
    let mut checks = Vec::new();
    if env.usb {
        usb_checks(&mut checks);
    }
    if cfg!(target_os = "linux") {
        checks.push(udev_check(&env.udev_dirs));
    }
    checks.push(disk_check(&env.spill_dir));
    checks.push(state_dir_check(&env.state_dir));
    checks
}

fn usb_checks(checks: &mut Vec<Check>) {
    let ctx = match rusb::Context::new() {
        Ok(ctx) => {
            checks.push(Check::new("libusb", Status::Ok, format!("libusb {} started", libusb_version()), None));
            ctx
        }
        Err(e) => {
            let fix = if cfg!(target_os = "linux") {
                "USB is not reachable here: on a normal Linux system check that /dev/bus/usb exists; inside a container pass the bus through (`--device /dev/bus/usb`); in a VM attach the phone to the VM"
            } else {
                "reconnect the phone and try again; if it persists, reinstall mi-flash"
            };
            checks.push(Check::new("libusb", Status::Fail, format!("libusb {} could not start: {e}", libusb_version()), Some(fix.into())));
            return;
        }
    };
    use rusb::UsbContext;
    match ctx.devices() {
        Ok(list) if list.is_empty() => checks.push(Check::new(
            "usb-devices",
            Status::Warn,
            "no USB devices are visible at all",
            Some("inside a container or VM, pass the USB bus or the phone through; otherwise check the cable (a data cable, not a charge-only one)".into()),
        )),
        Ok(list) => checks.push(Check::new("usb-devices", Status::Ok, format!("{} USB devices visible", list.len()), None)),
        Err(e) => {
            checks.push(Check::new("usb-devices", Status::Fail, format!("USB devices cannot be listed: {e}"), None));
            return;
        }
    }
    let mut problems = Vec::new();
    let mut count = 0;
    match list_fastboot_devices() {
        Ok(phones) => {
            count += phones.len();
            problems.extend(phones.iter().filter_map(|p| p.problem.as_ref().map(|why| format!("{}: {why}", p.id()))));
        }
        Err(e) => problems.push(e.to_string()),
    }
    match super::usb::list_other_modes() {
        Ok(phones) => {
            count += phones.len();
            problems.extend(phones.iter().filter_map(|p| p.problem.as_ref().map(|why| format!("{}: {why}", p.id()))));
        }
        Err(e) => problems.push(e.to_string()),
    }
    let check = if !problems.is_empty() {
        let fix = if cfg!(target_os = "windows") {
            "install the WinUSB driver for the phone (Xiaomi's USB driver, Google's USB driver, or Zadig; see docs/usb.md), remove old ADB/fastboot drivers, and re-plug the phone"
        } else if cfg!(target_os = "linux") {
            "install the udev rule (see udev-rule below) and re-plug the phone; close adb (`adb kill-server`) and other flashing tools"
        } else {
            "close other flashing tools and adb (`adb kill-server`), then re-plug the phone"
        };
        Check::new("phones", Status::Fail, problems.join("; "), Some(fix.into()))
    } else if count == 0 {
        Check::new(
            "phones",
            Status::Warn,
            "no phone connected, so opening one could not be tried",
            Some("connect the phone in fastboot mode (Volume Down + Power) and run `mi-flash doctor` again".into()),
        )
    } else {
        Check::new("phones", Status::Ok, format!("{count} phone(s) found, all can be opened"), None)
    };
    checks.push(check);
    if cfg!(target_os = "windows") {
        checks.push(Check::new(
            "driver",
            Status::Ok,
            "Windows needs the WinUSB driver for each phone mode; a phone listed above without a problem has it",
            None,
        ));
    }
}

/// Looks for a udev rule that gives the logged-in user access to fastboot phones.
pub fn udev_check(dirs: &[PathBuf]) -> Check {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            if path.extension().and_then(|e| e.to_str()) != Some("rules") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let lower = text.to_ascii_lowercase();
            if lower.contains("ff4203") || (lower.contains("18d1") && lower.contains("d00d")) {
                return Check::new("udev-rule", Status::Ok, format!("fastboot access rule in {}", path.display()), None);
            }
        }
    }
    Check::new(
        "udev-rule",
        Status::Warn,
        "no udev rule for phones in fastboot mode was found: only root may open them",
        Some(
            "sudo install -m 0644 udev/51-mi-flash.rules /etc/udev/rules.d/ && sudo udevadm control --reload && sudo udevadm trigger, then re-plug the phone (docs/usb.md)"
                .into(),
        ),
    )
}

/// Free space where mi-flash unpacks large images.
pub fn disk_check(dir: &Path) -> Check {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    match free_bytes(existing) {
        Ok(Some(free)) => {
            let gib = free as f64 / (1u64 << 30) as f64;
            let detail = format!("{gib:.1} GiB free in {}", existing.display());
            let fix = || {
                Some(format!(
                    "free some space there, or point TMPDIR to a disk with at least {} GiB free",
                    SPILL_WARN_BYTES >> 30
                ))
            };
            if free < SPILL_FAIL_BYTES {
                Check::new("disk-space", Status::Fail, detail, fix())
            } else if free < SPILL_WARN_BYTES {
                Check::new("disk-space", Status::Warn, detail, fix())
            } else {
                Check::new("disk-space", Status::Ok, detail, None)
            }
        }
        Ok(None) => Check::new("disk-space", Status::Skip, "free space is not checked on this system", None),
        Err(e) => Check::new(
            "disk-space",
            Status::Warn,
            format!("free space in {} could not be read: {e}", existing.display()),
            None,
        ),
    }
}

#[cfg(unix)]
fn free_bytes(path: &Path) -> std::io::Result<Option<u64>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statvfs only writes into the zero-initialised struct we own; the path is a
    // valid NUL-terminated string that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64)))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> std::io::Result<Option<u64>> {
    Ok(None)
}

/// The state directory exists (or can be made) and is writable.
pub fn state_dir_check(dir: &Path) -> Check {
    let fix = || {
        Some(format!(
            "make {} writable for your user (or remove it so mi-flash can create it)",
            dir.display()
        ))
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::new("state-dir", Status::Fail, format!("cannot create {}: {e}", dir.display()), fix());
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"mi-flash doctor") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Check::new("state-dir", Status::Ok, format!("{} is writable", dir.display()), None)
        }
        Err(e) => Check::new("state-dir", Status::Fail, format!("cannot write in {}: {e}", dir.display()), fix()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udev_rules_are_found_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let c = udev_check(&[dir.path().to_path_buf()]);
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.unwrap_or_default().contains("51-mi-flash.rules"));
        std::fs::write(dir.path().join("70-other.rules"), "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"046d\"\n").unwrap();
        assert_eq!(udev_check(&[dir.path().to_path_buf()]).status, Status::Warn);
        std::fs::write(dir.path().join("51-android.rules"), "ENV{ID_USB_INTERFACES}==\"*:ff4203:*\", TAG+=\"uaccess\"\n").unwrap();
        let c = udev_check(&[PathBuf::from("/nonexistent"), dir.path().to_path_buf()]);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("51-android.rules"));
    }

    #[test]
    fn state_dir_and_disk_checks() {
        let dir = tempfile::tempdir().unwrap();
        let c = state_dir_check(&dir.path().join("a/b"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(dir.path().join("a/b").is_dir());
        // A file in the way of the directory is a failure with a fix.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let c = state_dir_check(&dir.path().join("file/sub"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.is_some());
        let c = disk_check(&dir.path().join("not/yet/there"));
        assert_ne!(c.status, Status::Fail, "{c:?}");
        if cfg!(unix) {
            assert!(c.detail.contains("GiB free"), "{c:?}");
        }
    }

    #[test]
    fn checks_without_usb_cover_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let env = DoctorEnv {
            spill_dir: dir.path().to_path_buf(),
            state_dir: dir.path().join("state"),
            udev_dirs: vec![dir.path().to_path_buf()],
            usb: false,
        };
        let names: Vec<&str> = run_checks(&env).iter().map(|c| c.name).collect();
        assert!(names.contains(&"disk-space") && names.contains(&"state-dir"), "{names:?}");
        assert_eq!(names.contains(&"udev-rule"), cfg!(target_os = "linux"));
    }
}
