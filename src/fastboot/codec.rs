//! The fastboot wire format, one definition for both sides: the client encodes commands and
//! parses responses; the simulated device parses commands and encodes responses.
//!
//! A command is one ASCII packet; a response is one packet of at most 256 bytes whose first
//! four bytes are the status (`OKAY`, `FAIL`, `DATA`, `INFO`, `TEXT`).

use std::fmt;

/// Largest response packet a device may send (AOSP `FB_RESPONSE_SZ`).
pub const MAX_RESPONSE_LEN: usize = 256;
/// Largest command mi-flash sends: old Xiaomi bootloaders (LK/ABL) accept 64 bytes.
pub const MAX_COMMAND_LEN: usize = 64;
/// Largest command the simulated device accepts (newer clients send up to 4096).
pub const MAX_DEVICE_COMMAND_LEN: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("the device sent an empty response")]
    EmptyResponse,
    #[error("the device sent a response that is not fastboot ({0})")]
    UnknownStatus(String),
    #[error("the device sent a malformed DATA response ({0})")]
    BadDataLength(String),
    #[error("command `{0}` is longer than {MAX_COMMAND_LEN} bytes; old bootloaders reject it")]
    CommandTooLong(String),
    #[error("command contains a control character or non-ASCII byte")]
    BadCommandBytes,
    #[error("malformed command `{0}`")]
    BadCommand(String),
}

/// One response packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Okay(String),
    Fail(String),
    /// Start of a data phase of this many bytes.
    Data(u32),
    Info(String),
    Text(String),
}

impl Response {
    pub fn parse(packet: &[u8]) -> Result<Response, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::EmptyResponse);
        }
        if packet.len() < 4 {
            return Err(CodecError::UnknownStatus(printable(packet)));
        }
        let (status, rest) = packet.split_at(4);
        let text = || String::from_utf8_lossy(rest).trim_end_matches('\0').to_string();
        match status {
            b"OKAY" => Ok(Response::Okay(text())),
            b"FAIL" => Ok(Response::Fail(text())),
            b"INFO" => Ok(Response::Info(text())),
            b"TEXT" => Ok(Response::Text(text())),
            b"DATA" => {
                let t = text();
                if t.len() != 8 {
                    return Err(CodecError::BadDataLength(t));
                }
                u32::from_str_radix(&t, 16).map(Response::Data).map_err(|_| CodecError::BadDataLength(t))
            }
            _ => Err(CodecError::UnknownStatus(printable(packet))),
        }
    }

    /// Encodes the packet, cutting the payload so the packet stays within 256 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (status, payload) = match self {
            Response::Okay(s) => ("OKAY", s.clone()),
            Response::Fail(s) => ("FAIL", s.clone()),
            Response::Info(s) => ("INFO", s.clone()),
            Response::Text(s) => ("TEXT", s.clone()),
            Response::Data(n) => ("DATA", format!("{n:08x}")),
        };
        let mut out = status.as_bytes().to_vec();
        let mut p = payload.into_bytes();
        p.truncate(MAX_RESPONSE_LEN - 4);
        out.extend_from_slice(&p);
        out
    }
}

/// Reboot targets the protocol knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootTarget {
    System,
    Bootloader,
    Fastboot,
    Recovery,
}

/// One fastboot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    GetVar(String),
    Download(u32),
    Upload,
    Flash(String),
    Erase(String),
    SetActive(String),
    Reboot(RebootTarget),
    Continue,
    Boot,
    /// `oem <args>`, space separated.
    Oem(String),
    /// `flashing <args>` (lock, unlock, get_unlock_ability, ...).
    Flashing(String),
}

impl Command {
    pub fn to_wire(&self) -> String {
        match self {
            Command::GetVar(v) => format!("getvar:{v}"),
            Command::Download(n) => format!("download:{n:08x}"),
            Command::Upload => "upload".into(),
            Command::Flash(p) => format!("flash:{p}"),
            Command::Erase(p) => format!("erase:{p}"),
            Command::SetActive(s) => format!("set_active:{s}"),
            Command::Reboot(RebootTarget::System) => "reboot".into(),
            Command::Reboot(RebootTarget::Bootloader) => "reboot-bootloader".into(),
            Command::Reboot(RebootTarget::Fastboot) => "reboot-fastboot".into(),
            Command::Reboot(RebootTarget::Recovery) => "reboot-recovery".into(),
            Command::Continue => "continue".into(),
            Command::Boot => "boot".into(),
            Command::Oem(a) => format!("oem {a}"),
            Command::Flashing(a) => format!("flashing {a}"),
        }
    }

    /// The bytes a host sends; refuses what an old bootloader would choke on.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let s = self.to_wire();
        if s.len() > MAX_COMMAND_LEN {
            return Err(CodecError::CommandTooLong(s));
        }
        if s.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(CodecError::BadCommandBytes);
        }
        Ok(s.into_bytes())
    }

    /// Device side: what did the host ask for?
    pub fn parse(packet: &[u8]) -> Result<Command, CodecError> {
        if packet.len() > MAX_DEVICE_COMMAND_LEN {
            return Err(CodecError::BadCommand(format!("{} bytes", packet.len())));
        }
        if packet.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
            return Err(CodecError::BadCommandBytes);
        }
        // Checked ASCII above, so this cannot fail; still avoid unwrap on device input.
        let s = String::from_utf8_lossy(packet).into_owned();
        let bad = || CodecError::BadCommand(s.clone());
        if let Some(rest) = s.strip_prefix("oem ") {
            return Ok(Command::Oem(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("flashing ") {
            return Ok(Command::Flashing(rest.to_string()));
        }
        let (verb, arg) = match s.split_once(':') {
            Some((v, a)) => (v, Some(a)),
            None => (s.as_str(), None),
        };
        let need = |a: Option<&str>| a.filter(|a| !a.is_empty()).map(str::to_string).ok_or_else(bad);
        Ok(match verb {
            "getvar" => Command::GetVar(need(arg)?),
            "download" => {
                let a = arg.ok_or_else(bad)?;
                if a.len() != 8 {
                    return Err(bad());
                }
                Command::Download(u32::from_str_radix(a, 16).map_err(|_| bad())?)
            }
            "upload" if arg.is_none() => Command::Upload,
            "flash" => Command::Flash(need(arg)?),
            "erase" => Command::Erase(need(arg)?),
            "set_active" => Command::SetActive(need(arg)?),
            "reboot" if arg.is_none() => Command::Reboot(RebootTarget::System),
            "reboot-bootloader" => Command::Reboot(RebootTarget::Bootloader),
            "reboot-fastboot" => Command::Reboot(RebootTarget::Fastboot),
            "reboot-recovery" => Command::Reboot(RebootTarget::Recovery),
            "continue" => Command::Continue,
            "boot" => Command::Boot,
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

/// Parses a size variable the way AOSP's client does: `0x` prefix means hex, otherwise
/// decimal (Sony reports `max-download-size` in decimal).
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim();
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

/// `partition-size` is hex even without `0x` (AOSP `fb_fix_numeric_var`).
pub fn parse_partition_size(value: &str) -> Option<u64> {
    let v = value.trim();
    let h = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
    u64::from_str_radix(h, 16).ok()
}

pub use crate::transport::printable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip() {
        for r in [
            Response::Okay("lavender".into()),
            Response::Okay(String::new()),
            Response::Fail("Flashing is not allowed in Lock State".into()),
            Response::Info("partition-size:boot_a:0x4000000".into()),
            Response::Text("hello".into()),
            Response::Data(0x1234),
        ] {
            assert_eq!(Response::parse(&r.encode()).unwrap(), r);
        }
        assert_eq!(Response::Data(0x1234).encode(), b"DATA00001234");
    }

    #[test]
    fn responses_are_cut_to_256_bytes() {
        let r = Response::Info("x".repeat(400));
        assert_eq!(r.encode().len(), MAX_RESPONSE_LEN);
    }

    #[test]
    fn bad_responses_are_errors() {
        assert_eq!(Response::parse(b""), Err(CodecError::EmptyResponse));
        assert!(matches!(Response::parse(b"OK"), Err(CodecError::UnknownStatus(_))));
        assert!(matches!(Response::parse(b"LLLLxyz"), Err(CodecError::UnknownStatus(_))));
        assert!(matches!(Response::parse(b"DATA12"), Err(CodecError::BadDataLength(_))));
        assert!(matches!(Response::parse(b"DATAzzzzzzzz"), Err(CodecError::BadDataLength(_))));
    }

    #[test]
    fn commands_encode_exact_bytes() {
        assert_eq!(Command::GetVar("product".into()).encode().unwrap(), b"getvar:product");
        assert_eq!(Command::Download(0x3200000).encode().unwrap(), b"download:03200000");
        assert_eq!(Command::Flash("boot_ab".into()).encode().unwrap(), b"flash:boot_ab");
        assert_eq!(Command::SetActive("a".into()).encode().unwrap(), b"set_active:a");
        assert_eq!(Command::Oem("device-info".into()).encode().unwrap(), b"oem device-info");
        assert_eq!(Command::Flashing("lock".into()).encode().unwrap(), b"flashing lock");
        assert_eq!(Command::Reboot(RebootTarget::Bootloader).encode().unwrap(), b"reboot-bootloader");
        assert!(matches!(Command::Flash("x".repeat(60)).encode(), Err(CodecError::CommandTooLong(_))));
        assert_eq!(Command::Oem("a\nb".into()).encode(), Err(CodecError::BadCommandBytes));
    }

    #[test]
    fn commands_parse_back() {
        for c in [
            Command::GetVar("partition-size:boot_a".into()),
            Command::Download(1),
            Command::Upload,
            Command::Flash("super".into()),
            Command::Erase("userdata".into()),
            Command::SetActive("b".into()),
            Command::Reboot(RebootTarget::System),
            Command::Reboot(RebootTarget::Recovery),
            Command::Reboot(RebootTarget::Fastboot),
            Command::Continue,
            Command::Oem("edl".into()),
            Command::Flashing("unlock".into()),
        ] {
            assert_eq!(Command::parse(&c.encode().unwrap()).unwrap(), c);
        }
        for bad in [&b"download:"[..], b"download:0", b"download:-1", b"download:2PPPPPPP", b"getvar:", b"nonsense", b"flash", b"get\0var:x"] {
            assert!(Command::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sizes_parse_like_aosp() {
        assert_eq!(parse_size("0x10000000"), Some(0x1000_0000));
        assert_eq!(parse_size("536870912"), Some(536_870_912));
        assert_eq!(parse_size(" 0X20 "), Some(32));
        assert_eq!(parse_size("zz"), None);
        assert_eq!(parse_partition_size("4000000"), Some(0x400_0000));
        assert_eq!(parse_partition_size("0x0000000004000000"), Some(0x400_0000));
    }
}
