//! Rescue: helping a user who cannot get into their phone. Mode detection on USB, the ADB
//! message layer and the Mi Recovery (MiAssistant) client, the guided decision tree of
//! `mi-flash rescue`, the checks of `mi-flash doctor`, and the text catalogue all of them speak
//! from (English and Bahasa Indonesia).
//!
//! Boundaries: this module talks to phones only through [`crate::transport`] and never prints;
//! the guide writes to the `Write` it is given and reads answers from the `BufRead` it is given,
//! so tests can drive it. The simulated Mi Recovery is in `sim::recovery`.

pub mod adb;
pub mod doctor;
pub mod guide;
pub mod miassistant;
pub mod mode;
pub mod tcp;
pub mod text;
pub mod usb;

pub use adb::{AdbError, AdbLink};
pub use miassistant::{DeviceInfo, FormatOutcome, MiAssistant, RebootTarget};
pub use mode::PhoneMode;
pub use text::{Catalogue, Lang};
