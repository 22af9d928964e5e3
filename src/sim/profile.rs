//! What a simulated phone is: a TOML profile (a public contract: ROM maintainers write these).
//!
//! Keys, all optional except `product`: `product`, `serialno`, `unlocked`, `anti`, `crc`,
//! `slot-count`, `current-slot`, `max-download-size`, `is-userspace`, and a `[partitions]`
//! table of `name = size-in-bytes`. Extensions: `secure`, `version-bootloader`,
//! `version-baseband`, `hw-revision`, `security-patch-level`, `unslotted` (partitions of the
//! table that have no slots on an A/B phone), a `[vars]` table of extra `getvar` answers, and
//! a `[recovery]` table for the simulated Mi Recovery ([`super::recovery::RecoveryProfile`]).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    pub product: String,
    #[serde(default = "default_serial")]
    pub serialno: String,
    #[serde(default = "yes")]
    pub unlocked: bool,
    #[serde(default)]
    pub anti: Option<u32>,
    #[serde(default)]
    pub crc: bool,
    #[serde(default)]
    pub slot_count: u8,
    #[serde(default)]
    pub current_slot: Option<String>,
    #[serde(default = "default_max_download")]
    pub max_download_size: u64,
    #[serde(default)]
    pub is_userspace: bool,
    #[serde(default = "yes")]
    pub secure: bool,
    #[serde(default)]
    pub version_bootloader: Option<String>,
    #[serde(default)]
    pub version_baseband: Option<String>,
    #[serde(default)]
    pub hw_revision: Option<String>,
    #[serde(default)]
    pub security_patch_level: Option<String>,
    #[serde(default)]
    pub partitions: Option<BTreeMap<String, u64>>,
    /// Partitions of the table that exist once even on an A/B phone (`super`, `userdata`,
    /// `metadata`, ...).
    #[serde(default)]
    pub unslotted: Vec<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub recovery: super::recovery::RecoveryProfile,
}

fn default_serial() -> String {
    "0123456789ab".into()
}
fn yes() -> bool {
    true
}
fn default_max_download() -> u64 {
    512 * 1024 * 1024
}

/// Profiles shipped inside the binary, usable as `-s sim:NAME` or `--profile NAME`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("moonstone", include_str!("../../profiles/moonstone.toml")),
    ("oxygen", include_str!("../../profiles/oxygen.toml")),
    ("cereus", include_str!("../../profiles/cereus.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("profile {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("`{0}` is neither a profile file nor a built-in profile (built-in: {1})")]
    Unknown(String, String),
}

impl Profile {
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let p: Profile = toml::from_str(text)
            .map_err(|e| ProfileError::Invalid { path: origin.to_string(), message: e.message().to_string() })?;
        p.validate(origin)?;
        Ok(p)
    }

    /// A path to a TOML file, or the name of a built-in profile.
    pub fn load(spec: &str) -> Result<(Profile, String), ProfileError> {
        let path = Path::new(spec);
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ProfileError::Read { path: spec.to_string(), source: e })?;
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| spec.into());
            return Ok((Profile::parse(&text, spec)?, name));
        }
        match BUILTIN.iter().find(|(n, _)| *n == spec) {
            Some((n, text)) => Ok((Profile::parse(text, &format!("built-in profile {n}"))?, n.to_string())),
            None => Err(ProfileError::Unknown(
                spec.to_string(),
                BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ProfileError> {
        let bad = |m: String| Err(ProfileError::Invalid { path: origin.to_string(), message: m });
        if self.product.trim().is_empty() {
            return bad("`product` must not be empty".into());
        }
        if self.slot_count != 0 && self.slot_count != 2 {
            return bad(format!("`slot-count` must be 0 or 2, not {}", self.slot_count));
        }
        if let Some(s) = &self.current_slot {
            if self.slot_count == 0 {
                return bad("`current-slot` needs `slot-count = 2`".into());
            }
            if s != "a" && s != "b" {
                return bad(format!("`current-slot` must be \"a\" or \"b\", not {s:?}"));
            }
        }
        if self.max_download_size == 0 || self.max_download_size > u32::MAX as u64 {
            return bad("`max-download-size` must be between 1 and 4294967295 bytes".into());
        }
        for name in &self.unslotted {
            match &self.partitions {
                Some(t) if !t.contains_key(name) => return bad(format!("`unslotted` names {name:?}, which is not in [partitions]")),
                None if !is_partition_name(name) => {
                    return bad(format!("`unslotted` names {name:?}, which is not a partition name (letters, digits, `_`, `-` and `.`)"))
                }
                _ => {}
            }
        }
        for (name, _) in self.partitions.iter().flatten() {
            if !is_partition_name(name) {
                return bad(format!("partition name {name:?} may only use letters, digits, `_`, `-` and `.`"));
            }
        }
        Ok(())
    }

    pub fn current_slot(&self) -> Option<String> {
        (self.slot_count == 2).then(|| self.current_slot.clone().unwrap_or_else(|| "a".into()))
    }
}

/// Whether `name` can be a partition of the simulated phone: letters, digits, `_`, `-` and `.`,
/// 1 to 64 of them. A partition is a file `partitions/NAME.img` in the store, so a name from
/// the wire with a `/` (or anything else) must never reach the file system.
pub fn is_partition_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_load() {
        for (name, _) in BUILTIN {
            let (p, n) = Profile::load(name).unwrap();
            assert_eq!(&n, name);
            assert!(!p.product.is_empty());
        }
    }

    #[test]
    fn unslotted_names_partitions_of_the_table_or_any_valid_name_without_one() {
        let ok = "product = \"piano\"\nslot-count = 2\nunslotted = [\"super\", \"userdata\"]\n";
        assert_eq!(Profile::parse(ok, "t").unwrap().unslotted, ["super", "userdata"]);
        let e = Profile::parse("product = \"piano\"\nunslotted = [\"../x\"]\n", "t").unwrap_err();
        assert!(e.to_string().contains("not a partition name"), "{e}");
        let e = Profile::parse("product = \"piano\"\nunslotted = [\"super\"]\n[partitions]\nboot = 4096\n", "t").unwrap_err();
        assert!(e.to_string().contains("not in [partitions]"), "{e}");
        assert!(is_partition_name("vendor_boot") && is_partition_name("a.b-c"));
        assert!(!is_partition_name("") && !is_partition_name("a/b") && !is_partition_name(&"p".repeat(65)));
    }

    #[test]
    fn minimal_profile_has_defaults() {
        let p = Profile::parse("product = \"lavender\"\n", "t").unwrap();
        assert!(p.unlocked);
        assert_eq!(p.slot_count, 0);
        assert_eq!(p.current_slot(), None);
        assert_eq!(p.max_download_size, 512 * 1024 * 1024);
        assert!(p.partitions.is_none());
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let e = Profile::parse("serialno = \"x\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("product"), "{e}");
        let e = Profile::parse("product = \"x\"\nslot-count = 3\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("slot-count"), "{e}");
        let e = Profile::parse("product = \"x\"\ncolour = 1\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let e = Profile::load("no-such-profile").unwrap_err().to_string();
        assert!(e.contains("moonstone"), "{e}");
    }
}
