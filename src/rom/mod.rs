//! ROM packages: from a Xiaomi fastboot package to a typed, printable [`plan::Plan`].
//!
//! `plan` holds the plan's types (steps, checks, conditions, script selection) and the small
//! [`plan::PackageFiles`] view of a package that plan building needs; `script` turns a
//! `flash_all*.sh` / `.bat` into a plan without ever running it. Nothing here talks to a device.

pub mod plan;
pub mod script;
