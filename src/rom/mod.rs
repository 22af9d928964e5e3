//! ROM packages: from a Xiaomi fastboot package to a typed, printable [`plan::Plan`], verified
//! before anything touches a phone.
//!
//! `package` opens a `.tgz` / `.zip` / folder without extracting it and refuses unsafe entries;
//! `plan` holds the plan's types (steps, checks, conditions, script selection) and `script`
//! turns a `flash_all*.sh` / `.bat` into a plan without ever running it; `verify` checks the
//! package offline (md5 fragment, md5sum.xml, CRC lists, images) in one pass; `manifest` is
//! the list of known packages; `sample` generates a small package for tests and the README.
//! Nothing here talks to a device.

mod hashing;
pub mod manifest;
pub mod package;
pub mod plan;
pub mod record;
pub mod sample;
pub mod script;
pub mod verify;
