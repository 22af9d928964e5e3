//! `mi-flash doctor`: what stands between the user and a working flash on this computer.
//! USB access (libusb starts, devices enumerate, phones can be opened, the udev rule on Linux,
//! the driver on Windows), free disk space where mi-flash spills large images, and the state
//! directory. Each check says what it found and, when something is wrong, the fix.
//!
//! Boundaries: checks only, no printing; the places checked come in a [`DoctorEnv`] so tests
//! can point them at temporary directories. The sentences come from the rescue text catalogue
//! (`doctor.*`), in English or Bahasa Indonesia: the Indonesian rescue guide sends its users
//! here when USB does not work.

use super::text::Catalogue;
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

pub fn run_checks(env: &DoctorEnv, t: &Catalogue) -> Vec<Check> {
    let mut checks = Vec::new();
    if env.usb {
        usb_checks(&mut checks, t);
    }
    if cfg!(target_os = "linux") {
        checks.push(udev_check(&env.udev_dirs, t));
    }
    checks.push(disk_check(&env.spill_dir, t));
    checks.push(state_dir_check(&env.state_dir, t));
    checks
}

fn usb_checks(checks: &mut Vec<Check>, t: &Catalogue) {
    let version = libusb_version();
    let ctx = match rusb::Context::new() {
        Ok(ctx) => {
            checks.push(Check::new("libusb", Status::Ok, t.fill("doctor.libusb_ok", &[("version", &version)]), None));
            ctx
        }
        Err(e) => {
            let fix = if cfg!(target_os = "linux") { "doctor.libusb_fix_linux" } else { "doctor.libusb_fix_other" };
            let detail = t.fill("doctor.libusb_fail", &[("version", &version), ("error", &e.to_string())]);
            checks.push(Check::new("libusb", Status::Fail, detail, Some(t.get(fix))));
            return;
        }
    };
    use rusb::UsbContext;
    match ctx.devices() {
        Ok(list) if list.is_empty() => {
            checks.push(Check::new("usb-devices", Status::Warn, t.get("doctor.usb_none"), Some(t.get("doctor.usb_none_fix"))))
        }
        Ok(list) => checks.push(Check::new("usb-devices", Status::Ok, t.fill("doctor.usb_count", &[("count", &list.len().to_string())]), None)),
        Err(e) => {
            checks.push(Check::new("usb-devices", Status::Fail, t.fill("doctor.usb_list_fail", &[("error", &e.to_string())]), None));
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
            "doctor.phones_fix_windows"
        } else if cfg!(target_os = "linux") {
            "doctor.phones_fix_linux"
        } else {
            "doctor.phones_fix_other"
        };
        Check::new("phones", Status::Fail, problems.join("; "), Some(t.get(fix)))
    } else if count == 0 {
        Check::new("phones", Status::Warn, t.get("doctor.phones_none"), Some(t.get("doctor.phones_none_fix")))
    } else {
        Check::new("phones", Status::Ok, t.fill("doctor.phones_ok", &[("count", &count.to_string())]), None)
    };
    checks.push(check);
    if cfg!(target_os = "windows") {
        checks.push(Check::new("driver", Status::Ok, t.get("doctor.driver_windows"), None));
    }
}

/// Looks for a udev rule that gives the logged-in user access to fastboot phones.
pub fn udev_check(dirs: &[PathBuf], t: &Catalogue) -> Check {
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
                return Check::new("udev-rule", Status::Ok, t.fill("doctor.udev_ok", &[("path", &path.display().to_string())]), None);
            }
        }
    }
    Check::new("udev-rule", Status::Warn, t.get("doctor.udev_missing"), Some(t.get("doctor.udev_fix")))
}

/// Free space where mi-flash unpacks large images.
pub fn disk_check(dir: &Path, t: &Catalogue) -> Check {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    let path = existing.display().to_string();
    match free_bytes(existing) {
        Ok(Some(free)) => {
            let gib = format!("{:.1}", free as f64 / (1u64 << 30) as f64);
            let detail = t.fill("doctor.disk_free", &[("gib", &gib), ("path", &path)]);
            let fix = || Some(t.fill("doctor.disk_fix", &[("gib", &(SPILL_WARN_BYTES >> 30).to_string())]));
            if free < SPILL_FAIL_BYTES {
                Check::new("disk-space", Status::Fail, detail, fix())
            } else if free < SPILL_WARN_BYTES {
                Check::new("disk-space", Status::Warn, detail, fix())
            } else {
                Check::new("disk-space", Status::Ok, detail, None)
            }
        }
        Ok(None) => Check::new("disk-space", Status::Skip, t.get("doctor.disk_skip"), None),
        Err(e) => Check::new("disk-space", Status::Warn, t.fill("doctor.disk_unreadable", &[("path", &path), ("error", &e.to_string())]), None),
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
pub fn state_dir_check(dir: &Path, t: &Catalogue) -> Check {
    let path = dir.display().to_string();
    let fix = || Some(t.fill("doctor.state_fix", &[("path", &path)]));
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::new("state-dir", Status::Fail, t.fill("doctor.state_create_fail", &[("path", &path), ("error", &e.to_string())]), fix());
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"mi-flash doctor") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Check::new("state-dir", Status::Ok, t.fill("doctor.state_ok", &[("path", &path)]), None)
        }
        Err(e) => Check::new("state-dir", Status::Fail, t.fill("doctor.state_write_fail", &[("path", &path), ("error", &e.to_string())]), fix()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rescue::text::Lang;

    fn en() -> Catalogue {
        Catalogue::load(Lang::En).unwrap()
    }

    #[test]
    fn udev_rules_are_found_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let c = udev_check(&[dir.path().to_path_buf()], &en());
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.unwrap_or_default().contains("51-mi-flash.rules"));
        std::fs::write(dir.path().join("70-other.rules"), "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"046d\"\n").unwrap();
        assert_eq!(udev_check(&[dir.path().to_path_buf()], &en()).status, Status::Warn);
        std::fs::write(dir.path().join("51-android.rules"), "ENV{ID_USB_INTERFACES}==\"*:ff4203:*\", TAG+=\"uaccess\"\n").unwrap();
        let c = udev_check(&[PathBuf::from("/nonexistent"), dir.path().to_path_buf()], &en());
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("51-android.rules"));
    }

    #[test]
    fn state_dir_and_disk_checks() {
        let dir = tempfile::tempdir().unwrap();
        let c = state_dir_check(&dir.path().join("a/b"), &en());
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(dir.path().join("a/b").is_dir());
        // A file in the way of the directory is a failure with a fix.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let c = state_dir_check(&dir.path().join("file/sub"), &en());
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.is_some());
        let c = disk_check(&dir.path().join("not/yet/there"), &en());
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
        let names: Vec<&str> = run_checks(&env, &en()).iter().map(|c| c.name).collect();
        assert!(names.contains(&"disk-space") && names.contains(&"state-dir"), "{names:?}");
        assert_eq!(names.contains(&"udev-rule"), cfg!(target_os = "linux"));
    }

    #[test]
    fn the_checks_speak_bahasa_indonesia_too() {
        let dir = tempfile::tempdir().unwrap();
        let id = Catalogue::load(Lang::Id).unwrap();
        let c = udev_check(&[dir.path().to_path_buf()], &id);
        assert!(c.detail.contains("tidak ditemukan aturan udev"), "{c:?}");
        assert!(c.fix.unwrap_or_default().contains("51-mi-flash.rules"));
        let c = state_dir_check(&dir.path().join("s"), &id);
        assert!(c.detail.ends_with("bisa ditulisi"), "{c:?}");
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let c = state_dir_check(&dir.path().join("file/sub"), &id);
        assert!(c.detail.contains("tidak bisa dibuat") && c.fix.unwrap_or_default().contains("jadikan"), "{}", c.detail);
        if cfg!(unix) {
            assert!(disk_check(dir.path(), &id).detail.contains("GiB kosong di"));
        }
    }
}
