//! mi-flash: find Xiaomi phones in fastboot mode, verify fastboot ROM packages, and flash them.
//!
//! Data flows one way through the modules:
//! `cli` → `flasher` → `rom` / `fastboot` → `transport`; `sim` is the device side of the same
//! fastboot codec; `sparse` is a pure library used by `fastboot`, `rom` and `sim`; `rescue`
//! detects phone modes and speaks ADB / Mi Recovery for users locked out of their phone.

pub mod sparse;
pub mod transport;
pub mod fastboot;
pub mod flasher;
pub mod rom;
pub mod sim;
pub mod rescue;
pub mod cli;
