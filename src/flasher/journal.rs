//! The resume journal: which steps of which package are done on which phone. Kept in the
//! user's state directory, one small JSON file per phone serial and package, written after
//! every step (atomically: a temporary file renamed over the old one). A step that was
//! interrupted mid-write is not marked done, so `--resume` redoes it from its start.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub serial: String,
    pub product: Option<String>,
    /// Identifies the package by content (see [`package_id`]).
    pub package: String,
    pub package_name: String,
    pub script: String,
    /// 1-based plan positions of the finished steps.
    pub done: Vec<usize>,
    /// The step that was running when the flash stopped, if it stopped inside one.
    #[serde(default)]
    pub interrupted: Option<usize>,
    #[serde(default)]
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the resume journal in {dir}: {message} (check that the directory is writable, or set XDG_STATE_HOME)")]
    Write { dir: PathBuf, message: String },
    #[error("the resume journal {path} is damaged: {message} (delete it and flash from the start)")]
    Damaged { path: PathBuf, message: String },
}

/// Default folder: `$XDG_STATE_HOME/mi-flash/journal` (or the platform's equivalent).
pub fn default_dir() -> PathBuf {
    let base = dirs::state_dir().or_else(dirs::data_local_dir).unwrap_or_else(std::env::temp_dir);
    base.join("mi-flash").join("journal")
}

/// A content identity for a package: its images' names, sizes and CRC-32s.
pub fn package_id<'a>(files: impl IntoIterator<Item = (&'a str, u64, u32)>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut items: Vec<_> = files.into_iter().collect();
    items.sort();
    for (path, size, crc) in items {
        h.update(format!("{path}\0{size}\0{crc:08x}\n").as_bytes());
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn file_name(serial: &str, package: &str) -> String {
    let safe: String = serial.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{safe}-{package}.json")
}

pub struct JournalStore {
    dir: PathBuf,
}

impl JournalStore {
    pub fn new(dir: PathBuf) -> JournalStore {
        JournalStore { dir }
    }

    pub fn path(&self, serial: &str, package: &str) -> PathBuf {
        self.dir.join(file_name(serial, package))
    }

    pub fn load(&self, serial: &str, package: &str) -> Result<Option<Journal>, JournalError> {
        let path = self.path(serial, package);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JournalError::Damaged { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(JournalError::Damaged { path, message: e.to_string() }),
        }
    }

    pub fn save(&self, j: &Journal) -> Result<(), JournalError> {
        let err = |e: std::io::Error| JournalError::Write { dir: self.dir.clone(), message: e.to_string() };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let path = self.path(&j.serial, &j.package);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(j).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Checks up front that journals can be written, so a flash does not fail after its
    /// first write for want of a state directory.
    pub fn check_writable(&self) -> Result<(), JournalError> {
        let err = |e: std::io::Error| JournalError::Write { dir: self.dir.clone(), message: e.to_string() };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let probe = self.dir.join(".write-test");
        std::fs::write(&probe, b"").map_err(err)?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::new(dir.path().join("j"));
        store.check_writable().unwrap();
        let id = package_id([("images/boot.img", 10, 1), ("images/a.img", 5, 2)]);
        assert_eq!(id, package_id([("images/a.img", 5, 2), ("images/boot.img", 10, 1)]));
        assert_ne!(id, package_id([("images/a.img", 5, 3), ("images/boot.img", 10, 1)]));
        let j = Journal {
            serial: "ab/c".into(),
            product: Some("piano".into()),
            package: id.clone(),
            package_name: "x.tgz".into(),
            script: "flash_all.sh".into(),
            done: vec![1, 2],
            interrupted: Some(3),
            complete: false,
        };
        store.save(&j).unwrap();
        assert_eq!(store.load("ab/c", &id).unwrap(), Some(j));
        assert_eq!(store.load("other", &id).unwrap(), None);
        std::fs::write(store.path("bad", &id), b"{").unwrap();
        assert!(matches!(store.load("bad", &id), Err(JournalError::Damaged { .. })));
    }
}
