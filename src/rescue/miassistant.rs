//! The Mi Recovery (MiAssistant) client: Xiaomi's services over an ADB link, as the phone
//! offers them after "Connect with MIAssistant" in Mi Recovery.
//!
//! Only safe services are reachable from here, by construction: the [`Service`] enum lists
//! the read-only queries, `format-data:` (a factory reset, which the user confirms in the CLI)
//! and reboot. Services that destroy device identity (`wipe-efs:` zeroes the modem data and
//! IMEI) or need Xiaomi's signature (`format-frp:`, sideload tokens) are never offered.

use super::adb::{AdbError, AdbLink, Banner};
use crate::transport::Transport;
use serde::Serialize;
use std::time::Duration;

/// The services mi-flash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    GetDevice,
    GetVersion,
    GetSn,
    GetCodebase,
    GetBranch,
    GetLanguage,
    GetRegion,
    GetRomzone,
    FormatData,
    Reboot(RebootTarget),
}

/// Where `reboot:` sends the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootTarget {
    System,
    Bootloader,
    Recovery,
}

impl Service {
    /// The queries, in the order Xiaomi's own tools send them.
    pub const QUERIES: [Service; 8] = [
        Service::GetDevice,
        Service::GetVersion,
        Service::GetSn,
        Service::GetCodebase,
        Service::GetBranch,
        Service::GetLanguage,
        Service::GetRegion,
        Service::GetRomzone,
    ];

    /// The service name as sent in OPEN (no trailing NUL; the phone accepts both).
    pub fn wire(self) -> &'static str {
        match self {
            Service::GetDevice => "getdevice:",
            Service::GetVersion => "getversion:",
            Service::GetSn => "getsn:",
            Service::GetCodebase => "getcodebase:",
            Service::GetBranch => "getbranch:",
            Service::GetLanguage => "getlanguage:",
            Service::GetRegion => "getregion:",
            Service::GetRomzone => "getromzone:",
            Service::FormatData => "format-data:",
            Service::Reboot(RebootTarget::System) => "reboot:",
            Service::Reboot(RebootTarget::Bootloader) => "reboot:bootloader",
            Service::Reboot(RebootTarget::Recovery) => "reboot:recovery",
        }
    }
}

/// What Mi Recovery reports about the phone. Missing properties read `unknown` on the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// `getdevice:`, the codename with its region suffix (`gale_global`).
    pub codename: String,
    /// `getversion:`, the MIUI / HyperOS version (`V816.0.3.0.UGPEUXM`).
    pub version: String,
    /// `getsn:`, the hardware serial (`0x…`), not the USB serial.
    pub serial: String,
    /// `getcodebase:`, the Android version.
    pub codebase: String,
    /// `getbranch:`: `F` stable, `X` development.
    pub branch: String,
    pub language: String,
    pub region: String,
    /// `getromzone:`: 1 China, 2 global.
    pub romzone: String,
}

/// The phone's answer to `format-data:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "answer", rename_all = "kebab-case")]
pub enum FormatOutcome {
    /// `Format_data_success.`
    Success,
    /// `Format_data_failed.`
    Failed,
    /// `Format_data_is_already_disable.`: the phone is flagged as not resettable.
    Disabled,
    /// Anything else, verbatim.
    Other(String),
}

impl FormatOutcome {
    pub fn from_answer(answer: &str) -> FormatOutcome {
        match answer.trim() {
            "Format_data_success." => FormatOutcome::Success,
            "Format_data_failed." => FormatOutcome::Failed,
            "Format_data_is_already_disable." => FormatOutcome::Disabled,
            other => FormatOutcome::Other(other.to_string()),
        }
    }
}

/// A phone in Mi Recovery, connected to MIAssistant.
#[derive(Debug)]
pub struct MiAssistant {
    adb: AdbLink,
    banner: Banner,
    timeout: Duration,
}

/// How long one query may take; Mi Recovery serves commands one at a time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl MiAssistant {
    /// Handshakes over `link` and checks that the other end is Mi Recovery (banner
    /// `sideload`). `timeout` bounds the handshake and each query.
    pub fn connect(link: Box<dyn Transport>, timeout: Duration) -> Result<MiAssistant, AdbError> {
        let mut adb = AdbLink::new(link);
        let banner = adb.connect_host(timeout)?;
        MiAssistant::from_connected(adb, banner, timeout)
    }

    /// Wraps a link whose handshake is done.
    pub fn from_connected(adb: AdbLink, banner: Banner, timeout: Duration) -> Result<MiAssistant, AdbError> {
        if banner.kind != "sideload" {
            return Err(AdbError::Handshake(format!(
                "the phone is in ADB mode `{}`, not Mi Recovery's MIAssistant mode",
                banner.kind
            )));
        }
        Ok(MiAssistant { adb, banner, timeout })
    }

    pub fn banner(&self) -> &Banner {
        &self.banner
    }

    pub fn describe(&self) -> String {
        self.adb.describe()
    }

    /// One service, its one-line answer without the trailing newline.
    fn ask(&mut self, service: Service, timeout: Duration) -> Result<String, AdbError> {
        let reply = self.adb.call(service.wire(), timeout)?;
        let text = String::from_utf8_lossy(&reply);
        Ok(text.strip_suffix('\n').unwrap_or(&text).trim_end_matches('\r').to_string())
    }

    /// Reads every property Mi Recovery reports.
    pub fn read_info(&mut self) -> Result<DeviceInfo, AdbError> {
        let t = self.timeout;
        let mut values = Vec::with_capacity(Service::QUERIES.len());
        for s in Service::QUERIES {
            values.push(self.ask(s, t)?);
        }
        let mut v = values.into_iter();
        let mut next = || v.next().unwrap_or_default();
        Ok(DeviceInfo {
            codename: next(),
            version: next(),
            serial: next(),
            codebase: next(),
            branch: next(),
            language: next(),
            region: next(),
            romzone: next(),
        })
    }

    /// Factory reset. The phone answers only once the format is finished, so `wait` must be
    /// long (minutes). Confirmation is the caller's job.
    pub fn format_data(&mut self, wait: Duration) -> Result<FormatOutcome, AdbError> {
        let answer = self.ask(Service::FormatData, wait)?;
        Ok(FormatOutcome::from_answer(&answer))
    }

    /// Asks the phone to restart; returns its answer (`reboot.`, `reboot-bootloader.`...).
    /// The phone disconnects right after, which is not an error.
    pub fn reboot(mut self, target: RebootTarget) -> Result<String, AdbError> {
        let t = self.timeout;
        self.ask(Service::Reboot(target), t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_services_exist() {
        let all = [
            Service::QUERIES.to_vec(),
            vec![
                Service::FormatData,
                Service::Reboot(RebootTarget::System),
                Service::Reboot(RebootTarget::Bootloader),
                Service::Reboot(RebootTarget::Recovery),
            ],
        ]
        .concat();
        for s in all {
            let w = s.wire();
            assert!(!w.contains("efs") && !w.contains("frp") && !w.contains("sideload") && !w.contains("mitoken"), "{w}");
            assert!(w.starts_with("get") || w == "format-data:" || w.starts_with("reboot:"), "{w}");
        }
    }

    #[test]
    fn format_answers_are_recognised() {
        assert_eq!(FormatOutcome::from_answer("Format_data_success."), FormatOutcome::Success);
        assert_eq!(FormatOutcome::from_answer("Format_data_failed."), FormatOutcome::Failed);
        assert_eq!(FormatOutcome::from_answer("Format_data_is_already_disable."), FormatOutcome::Disabled);
        assert_eq!(FormatOutcome::from_answer("what"), FormatOutcome::Other("what".into()));
    }
}
