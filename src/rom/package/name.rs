//! The Xiaomi package file name: `<codename>[_<region-prefix>]_images_<build>_<date>_<android>_<region>_<md5-10>.tgz`.
//!
//! Parsed from the right, because the codename part and the region suffix may both contain `_`
//! (`eea_global`, `cn_chinatelecom`). Only the MD5 fragment matters for verification; the other
//! fields are for display and for the manifest.

use serde::Serialize;

/// Fields of a package file name. Missing parts are `None` (renamed repacks, folders).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageName {
    /// Everything before `_images_`: the codename, possibly with a region prefix
    /// (`fog_global`). Telling them apart needs a table, so they are kept together.
    pub device: String,
    pub build: Option<String>,
    pub date: Option<String>,
    pub android: Option<String>,
    pub region: Option<String>,
    /// First 10 hex digits of the MD5 of the whole `.tgz`, lowercase.
    pub md5_fragment: Option<String>,
}

impl PackageName {
    /// Parses a file or folder name. Returns `None` when there is no `_images_` part.
    pub fn parse(file_name: &str) -> Option<PackageName> {
        let stem = strip_archive_extension(file_name);
        let (device, rest) = stem.split_once("_images_")?;
        if device.is_empty() {
            return None;
        }
        let mut rest = rest.to_string();
        let md5_fragment = match rest.rsplit_once('_') {
            Some((before, last)) if is_md5_fragment(last) => {
                let frag = last.to_ascii_lowercase();
                rest = before.to_string();
                Some(frag)
            }
            _ => None,
        };
        // <build>_<date>_<android>_<region...>; the newer top-folder form is <build>_<android>.
        let parts: Vec<&str> = rest.splitn(4, '_').collect();
        let (build, date, android, region) = match parts.as_slice() {
            [b, d, a, r] if is_date(d) => (Some(*b), Some(*d), Some(*a), Some(*r)),
            [b, d, a] if is_date(d) => (Some(*b), Some(*d), Some(*a), None),
            [b, a] => (Some(*b), None, Some(*a), None),
            [b] if !b.is_empty() => (Some(*b), None, None, None),
            _ => (None, None, None, None),
        };
        Some(PackageName {
            device: device.to_string(),
            build: build.map(str::to_string),
            date: date.map(str::to_string),
            android: android.map(str::to_string),
            region: region.map(str::to_string),
            md5_fragment,
        })
    }
}

/// The MD5 fragment of a file name, if it has one: the last `_` field before `.tgz`, exactly
/// 10 hex digits.
pub fn md5_fragment(file_name: &str) -> Option<String> {
    let stem = strip_archive_extension(file_name);
    let last = stem.rsplit('_').next()?;
    is_md5_fragment(last).then(|| last.to_ascii_lowercase())
}

fn strip_archive_extension(name: &str) -> &str {
    for ext in [".tgz", ".tar.gz", ".tar", ".zip"] {
        if name.len() > ext.len() && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext) {
            return &name[..name.len() - ext.len()];
        }
    }
    name
}

fn is_md5_fragment(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_date(s: &str) -> bool {
    // 20201104.0000.00
    let b = s.as_bytes();
    b.len() >= 8 && b[..8].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_names_from_the_right() {
        let n = PackageName::parse(
            "elish_images_V14.0.5.0.TKYCNXM_20230920.0000.00_13.0_cn_chinatelecom_4e4fbbaf24.tgz",
        )
        .unwrap();
        assert_eq!(n.device, "elish");
        assert_eq!(n.build.as_deref(), Some("V14.0.5.0.TKYCNXM"));
        assert_eq!(n.date.as_deref(), Some("20230920.0000.00"));
        assert_eq!(n.android.as_deref(), Some("13.0"));
        assert_eq!(n.region.as_deref(), Some("cn_chinatelecom"));
        assert_eq!(n.md5_fragment.as_deref(), Some("4e4fbbaf24"));

        let n = PackageName::parse(
            "myron_eea_global_images_OS3.0.7.0.WPMEUXM_20260112.0000.00_16.0_eea_cee0eaf4a6.tgz",
        )
        .unwrap();
        assert_eq!(n.device, "myron_eea_global");
        assert_eq!(n.region.as_deref(), Some("eea"));
        assert_eq!(n.md5_fragment.as_deref(), Some("cee0eaf4a6"));
    }

    #[test]
    fn folders_and_repacks_have_no_fragment() {
        let n = PackageName::parse("piano_images_OS3.0.9.0.WPYCNXM_16.0").unwrap();
        assert_eq!(
            (n.build.as_deref(), n.android.as_deref()),
            (Some("OS3.0.9.0.WPYCNXM"), Some("16.0"))
        );
        assert_eq!(n.md5_fragment, None);
        assert_eq!(
            md5_fragment("x_images_V1_20200101.0000.00_11.0_global.tar.bz2"),
            None
        );
        assert_eq!(
            md5_fragment("a_356DB336FA.tgz").as_deref(),
            Some("356db336fa")
        );
        assert!(PackageName::parse("random.tgz").is_none());
    }
}
