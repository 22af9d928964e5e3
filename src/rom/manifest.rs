//! `roms-manifest.toml`: a list of known packages (codename, region, version, file name, size,
//! SHA-256, MD5, anti-rollback index) that verification compares a package against, and the
//! logic behind `mi-flash manifest add PACKAGE`.
//!
//! The file name's 10-digit MD5 fragment is only a 40-bit integrity check; a manifest entry
//! pins the full SHA-256, so a team (or a ROM maintainer's CI) can record the exact packages it
//! trusts. Format: docs/packages.md.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::package::{ArchiveDigest, PackageError};
use super::verify::{self, Check, VerifyOptions, VerifyReport};

/// One known package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub codename: String,
    pub region: String,
    pub version: String,
    /// File name as downloaded.
    pub file: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Lowercase hex.
    pub md5: String,
    /// Anti-rollback index of the package, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti: Option<u32>,
}

/// The whole manifest file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "package", default)]
    pub packages: Vec<ManifestEntry>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid manifest: {detail}; see docs/packages.md for the format")]
    Parse { path: PathBuf, detail: String },
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(
        "{file} is already listed in {path} (as {listed}); remove that entry first to replace it"
    )]
    AlreadyListed {
        path: PathBuf,
        file: String,
        listed: String,
    },
    #[error(
        "{package}: verification failed, not adding it to the manifest: {failures}; \
         re-download the package"
    )]
    NotVerified { package: String, failures: String },
    #[error("{package}: only an archive (.tgz, .tar or .zip) can be listed (its size and hashes identify it), not a folder")]
    NotAnArchive { package: String },
}

impl Manifest {
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        for (i, p) in manifest.packages.iter().enumerate() {
            let bad_hex =
                |s: &str, n: usize| s.len() != n || !s.bytes().all(|b| b.is_ascii_hexdigit());
            if bad_hex(&p.sha256, 64) || bad_hex(&p.md5, 32) {
                return Err(ManifestError::Parse {
                    path: path.to_path_buf(),
                    detail: format!(
                        "package {} ({}): sha256 must be 64 and md5 32 hex digits",
                        i + 1,
                        p.file
                    ),
                });
            }
        }
        Ok(manifest)
    }

    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = fs::read_to_string(path).map_err(|e| ManifestError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Manifest::parse(&text, path)
    }

    /// The entry for a package, by file name or SHA-256 (a renamed download still matches).
    pub fn find(&self, file_name: &str, sha256: Option<&str>) -> Option<&ManifestEntry> {
        self.packages
            .iter()
            .find(|p| p.file == file_name)
            .or_else(|| {
                sha256.and_then(|h| {
                    self.packages
                        .iter()
                        .find(|p| p.sha256.eq_ignore_ascii_case(h))
                })
            })
    }

    /// Compares a package with its entry; one skipped check when it is not listed.
    pub fn check(
        &self,
        file_name: &str,
        digest: Option<&ArchiveDigest>,
        anti: Option<u32>,
    ) -> Vec<Check> {
        const NAME: &str = "manifest";
        let Some(entry) = self.find(file_name, digest.map(|d| d.sha256.as_str())) else {
            return vec![Check::skipped(
                NAME,
                file_name,
                "not listed in the manifest",
            )];
        };
        let Some(digest) = digest else {
            return vec![Check::skipped(
                NAME,
                file_name,
                "listed, but a folder has no archive hashes to compare",
            )];
        };
        let mut checks = Vec::new();
        let mut field = |what: &str, expected: String, actual: String| {
            if expected.eq_ignore_ascii_case(&actual) {
                checks.push(Check::ok(
                    NAME,
                    file_name,
                    format!("{what} matches the manifest entry for {}", entry.file),
                ));
            } else {
                checks.push(Check::differs(
                    NAME,
                    file_name,
                    format!("{what} differs from the manifest entry for {}: this is not the listed package; re-download it", entry.file),
                    expected,
                    actual,
                ));
            }
        };
        field("size", entry.size.to_string(), digest.size.to_string());
        field("SHA-256", entry.sha256.clone(), digest.sha256.clone());
        field("MD5", entry.md5.clone(), digest.md5.clone());
        if let Some(expected) = entry.anti {
            field(
                "anti-rollback index",
                expected.to_string(),
                anti.map_or_else(|| "(none)".to_string(), |a| a.to_string()),
            );
        }
        checks
    }

    /// A manifest entry describing a verified package.
    pub fn entry_for(report: &VerifyReport) -> Result<ManifestEntry, ManifestError> {
        let digest = report
            .digest
            .as_ref()
            .ok_or_else(|| ManifestError::NotAnArchive {
                package: report.package.clone(),
            })?;
        let name = report.name.as_ref();
        let codename = report
            .misc
            .get("device")
            .cloned()
            .or_else(|| name.map(|n| n.device.split('_').next().unwrap_or(&n.device).to_string()))
            .unwrap_or_default();
        let version = name
            .and_then(|n| n.build.clone())
            .or_else(|| report.misc.get("build_number").cloned())
            .unwrap_or_default();
        Ok(ManifestEntry {
            codename,
            region: name.and_then(|n| n.region.clone()).unwrap_or_default(),
            version,
            file: report.package.clone(),
            size: digest.size,
            sha256: digest.sha256.clone(),
            md5: digest.md5.clone(),
            anti: report.anti,
        })
    }

    /// `manifest add`: verifies `package` (it must pass) and appends its entry to the
    /// manifest file (created if missing; existing text and comments are kept).
    pub fn add(manifest_path: &Path, package: &Path) -> Result<ManifestEntry, ManifestError> {
        let existing = match fs::read_to_string(manifest_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(ManifestError::Read {
                    path: manifest_path.to_path_buf(),
                    source: e,
                })
            }
        };
        let manifest = match &existing {
            Some(text) => Manifest::parse(text, manifest_path)?,
            None => Manifest::default(),
        };
        let verified = verify::verify(package, &VerifyOptions::default())?;
        let report = &verified.report;
        if !report.is_ok() {
            let failures = report
                .failures()
                .map(|c| format!("{} {}: {}", c.name, c.file, c.detail))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ManifestError::NotVerified {
                package: report.package.clone(),
                failures,
            });
        }
        let entry = Manifest::entry_for(report)?;
        if let Some(listed) = manifest.find(&entry.file, Some(&entry.sha256)) {
            return Err(ManifestError::AlreadyListed {
                path: manifest_path.to_path_buf(),
                file: entry.file.clone(),
                listed: listed.file.clone(),
            });
        }
        let block = toml::to_string(&Manifest {
            packages: vec![entry.clone()],
        })
        .map_err(|e| ManifestError::Parse {
            path: manifest_path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let mut text = existing.unwrap_or_default();
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push_str(if text.ends_with('\n') { "\n" } else { "\n\n" });
        }
        text.push_str(&block);
        // Write beside and rename, so an interrupted write never leaves half a manifest.
        let tmp = manifest_path.with_extension("toml.tmp");
        let write = |p: &Path| -> std::io::Result<()> {
            let mut f = fs::File::create(p)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write(&tmp).map_err(|e| ManifestError::Write {
            path: tmp.clone(),
            source: e,
        })?;
        fs::rename(&tmp, manifest_path).map_err(|e| ManifestError::Write {
            path: manifest_path.to_path_buf(),
            source: e,
        })?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rom::verify::CheckStatus;

    const TEXT: &str = r#"
# comment kept
[[package]]
codename = "moonstone"
region = "cn"
version = "OS1.0.6.0.UMNCNXM"
file = "a.tgz"
size = 10
sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
md5 = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
anti = 1
"#;

    #[test]
    fn listed_packages_are_compared_field_by_field() {
        let m = Manifest::parse(TEXT, Path::new("m.toml")).unwrap();
        let digest = ArchiveDigest {
            size: 10,
            sha256: "a".repeat(64),
            md5: "c".repeat(32),
        };
        let checks = m.check("a.tgz", Some(&digest), Some(1));
        let failed: Vec<_> = checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].detail.starts_with("MD5"));
        // Found by hash even when renamed.
        assert_eq!(m.check("renamed.tgz", Some(&digest), Some(1)).len(), 4);
        assert_eq!(
            m.check("other.tgz", None, None)[0].status,
            CheckStatus::Skipped
        );
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_reason() {
        let bad = TEXT.replace("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "xyz");
        assert!(Manifest::parse(&bad, Path::new("m.toml"))
            .unwrap_err()
            .to_string()
            .contains("md5"));
        assert!(Manifest::parse("[[package]]\nfile = 1", Path::new("m.toml")).is_err());
    }
}
