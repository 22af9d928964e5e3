//! mi-flash: find Xiaomi phones in fastboot mode, verify fastboot ROM packages, and flash them.
//!
//! Data flows one way through the modules:
//! `cli` → `flasher` → `rom` / `fastboot` → `transport`; `sim` is the device side of the same
//! fastboot codec; `sparse` is a pure library used by `fastboot`, `rom` and `sim`.

pub mod sparse;
pub mod transport;
pub mod fastboot;
pub mod flasher;
pub mod rom;
pub mod sim;
pub mod cli;
