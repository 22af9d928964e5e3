//! The modes a phone can be in on USB, and how each is recognised. Pure: descriptors and
//! handshake answers in, a [`PhoneMode`] out; the USB scan that feeds it is in `usb`.
//!
//! Recognition follows what each mode exposes: fastboot (bootloader and fastbootd) and ADB are
//! found by their interface (ff/42/03, ff/42/01) whatever the vendor ID, since Xiaomi phones
//! use both Google's 18d1 and Xiaomi's 2717; Qualcomm EDL and the MediaTek download modes by
//! their fixed IDs; a Xiaomi phone with neither interface by Xiaomi's vendor ID.

use super::text::Catalogue;

/// Interface class / subclass / protocol of an ADB interface.
pub const ADB_INTERFACE: (u8, u8, u8) = (0xff, 0x42, 0x01);
/// ... and of a fastboot interface.
pub const FASTBOOT_INTERFACE: (u8, u8, u8) = (0xff, 0x42, 0x03);
pub const XIAOMI_VENDOR: u16 = 0x2717;
pub const QUALCOMM_EDL: (u16, u16) = (0x05c6, 0x9008);
pub const MEDIATEK_PRELOADER: (u16, u16) = (0x0e8d, 0x2000);
pub const MEDIATEK_BROM: (u16, u16) = (0x0e8d, 0x0003);

/// Every mode mi-flash tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneMode {
    /// Bootloader fastboot (`is-userspace` no).
    Bootloader,
    /// fastbootd, fastboot inside recovery/userspace (`is-userspace` yes).
    Fastbootd,
    /// Android with USB debugging on (the ADB interface asks for an RSA key).
    AndroidAdb,
    /// Mi Recovery connected to MIAssistant, or AOSP's ADB sideload (banner `sideload`).
    MiRecovery,
    /// Another ADB mode (a custom recovery, AOSP rescue), or an ADB interface that could not
    /// be asked (held by an adb server).
    Adb,
    /// Qualcomm emergency download mode (05c6:9008).
    Edl,
    /// MediaTek preloader (0e8d:2000).
    MtkPreloader,
    /// MediaTek boot ROM download mode (0e8d:0003).
    MtkBrom,
    /// A Xiaomi phone running Android without USB debugging (file transfer, charging).
    Android,
}

impl PhoneMode {
    pub const ALL: [PhoneMode; 9] = [
        PhoneMode::Bootloader,
        PhoneMode::Fastbootd,
        PhoneMode::AndroidAdb,
        PhoneMode::MiRecovery,
        PhoneMode::Adb,
        PhoneMode::Edl,
        PhoneMode::MtkPreloader,
        PhoneMode::MtkBrom,
        PhoneMode::Android,
    ];

    /// The value of `mode` in `mi-flash devices --json` (a public contract).
    pub fn id(self) -> &'static str {
        match self {
            PhoneMode::Bootloader => "bootloader",
            PhoneMode::Fastbootd => "fastbootd",
            PhoneMode::AndroidAdb => "android-adb",
            PhoneMode::MiRecovery => "mi-recovery",
            PhoneMode::Adb => "adb",
            PhoneMode::Edl => "edl",
            PhoneMode::MtkPreloader => "mtk-preloader",
            PhoneMode::MtkBrom => "mtk-brom",
            PhoneMode::Android => "android",
        }
    }

    pub fn from_id(id: &str) -> Option<PhoneMode> {
        PhoneMode::ALL.into_iter().find(|m| m.id() == id)
    }

    /// Whether mi-flash can flash in this mode (given an unlocked bootloader).
    pub fn can_flash(self) -> bool {
        matches!(self, PhoneMode::Bootloader | PhoneMode::Fastbootd)
    }

    /// The readable name, in the catalogue's language.
    pub fn name(self, text: &Catalogue) -> String {
        text.get(&format!("mode.{}.name", self.id()))
    }

    /// What mi-flash can do with a phone in this mode.
    pub fn can(self, text: &Catalogue) -> String {
        text.get(&format!("mode.{}.can", self.id()))
    }

    /// What the user can do next.
    pub fn next(self, text: &Catalogue) -> String {
        text.get(&format!("mode.{}.next", self.id()))
    }
}

impl serde::Serialize for PhoneMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// What a USB device's descriptors alone say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbKind {
    /// Has a fastboot interface: bootloader or fastbootd, told apart by `getvar is-userspace`.
    Fastboot,
    /// Has an ADB interface: which ADB mode needs a handshake ([`mode_from_handshake`]).
    Adb,
    /// A mode known from the IDs alone.
    Fixed(PhoneMode),
}

/// Classifies a USB device from its IDs and the class triples of its interfaces. `None`: not
/// a phone mi-flash knows (keyboards, disks, ...).
pub fn classify(vendor: u16, product: u16, interfaces: &[(u8, u8, u8)]) -> Option<UsbKind> {
    if interfaces.contains(&FASTBOOT_INTERFACE) {
        return Some(UsbKind::Fastboot);
    }
    if interfaces.contains(&ADB_INTERFACE) {
        return Some(UsbKind::Adb);
    }
    match (vendor, product) {
        QUALCOMM_EDL => Some(UsbKind::Fixed(PhoneMode::Edl)),
        MEDIATEK_PRELOADER => Some(UsbKind::Fixed(PhoneMode::MtkPreloader)),
        MEDIATEK_BROM => Some(UsbKind::Fixed(PhoneMode::MtkBrom)),
        (XIAOMI_VENDOR, _) => Some(UsbKind::Fixed(PhoneMode::Android)),
        _ => None,
    }
}

/// The outcome of an ADB handshake attempt, as far as mode detection cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The device answered CNXN with this banner type (`sideload`, `device`, `recovery`...).
    Banner(String),
    /// The device asked for authorisation (AUTH): Android with USB debugging.
    AuthRequired,
    /// No answer could be had (interface busy, no permission, silence).
    Unknown,
}

pub fn mode_from_handshake(h: &Handshake) -> PhoneMode {
    match h {
        Handshake::Banner(kind) if kind == "sideload" => PhoneMode::MiRecovery,
        Handshake::Banner(kind) if kind == "device" => PhoneMode::AndroidAdb,
        Handshake::AuthRequired => PhoneMode::AndroidAdb,
        _ => PhoneMode::Adb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rescue::text::{Catalogue, Lang};

    #[test]
    fn descriptors_classify_each_mode() {
        let fb = [(0xff, 0x42, 0x03)];
        let adb = [(0x06, 0x01, 0x01), (0xff, 0x42, 0x01)];
        let mtp = [(0x06, 0x01, 0x01)];
        assert_eq!(classify(0x18d1, 0xd00d, &fb), Some(UsbKind::Fastboot));
        // fastbootd on a Xiaomi phone uses Xiaomi's vendor ID: the interface decides.
        assert_eq!(classify(0x2717, 0xff48, &fb), Some(UsbKind::Fastboot));
        assert_eq!(classify(0x2717, 0xff48, &adb), Some(UsbKind::Adb));
        assert_eq!(classify(0x18d1, 0xd001, &[(0xff, 0x42, 0x01)]), Some(UsbKind::Adb));
        assert_eq!(classify(0x05c6, 0x9008, &[(0xff, 0xff, 0xff)]), Some(UsbKind::Fixed(PhoneMode::Edl)));
        assert_eq!(classify(0x0e8d, 0x2000, &[(0x0a, 0, 0)]), Some(UsbKind::Fixed(PhoneMode::MtkPreloader)));
        assert_eq!(classify(0x0e8d, 0x0003, &[(0x0a, 0, 0)]), Some(UsbKind::Fixed(PhoneMode::MtkBrom)));
        assert_eq!(classify(0x2717, 0xff40, &mtp), Some(UsbKind::Fixed(PhoneMode::Android)));
        assert_eq!(classify(0x046d, 0xc52b, &[(0x03, 0x01, 0x02)]), None);
        // Qualcomm's diagnostic port is not EDL.
        assert_eq!(classify(0x05c6, 0x901d, &[(0xff, 0xff, 0xff)]), None);
    }

    #[test]
    fn handshakes_name_the_adb_mode() {
        assert_eq!(mode_from_handshake(&Handshake::Banner("sideload".into())), PhoneMode::MiRecovery);
        assert_eq!(mode_from_handshake(&Handshake::Banner("device".into())), PhoneMode::AndroidAdb);
        assert_eq!(mode_from_handshake(&Handshake::AuthRequired), PhoneMode::AndroidAdb);
        assert_eq!(mode_from_handshake(&Handshake::Banner("recovery".into())), PhoneMode::Adb);
        assert_eq!(mode_from_handshake(&Handshake::Unknown), PhoneMode::Adb);
    }

    #[test]
    fn every_mode_is_explained_in_both_languages() {
        for lang in Lang::ALL {
            let text = Catalogue::load(lang).unwrap();
            for m in PhoneMode::ALL {
                assert_eq!(PhoneMode::from_id(m.id()), Some(m));
                for part in ["name", "can", "next"] {
                    assert!(text.has(&format!("mode.{}.{part}", m.id())), "{lang:?}: mode.{}.{part}", m.id());
                }
            }
        }
        let en = Catalogue::load(Lang::En).unwrap();
        assert!(PhoneMode::Edl.can(&en).contains("authorised"));
        assert!(!PhoneMode::Edl.can_flash() && !PhoneMode::MtkBrom.can_flash() && PhoneMode::Bootloader.can_flash());
    }
}
