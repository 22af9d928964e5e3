//! Where a simulated device keeps what it was sent (a public contract): partition contents as
//! raw files `DIR/partitions/NAME.img`, and one JSON object per received command in
//! `DIR/log.jsonl`. The downloaded-but-not-yet-flashed data stays in the device's memory, as in a
//! phone's download buffer.

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Store {
    root: PathBuf,
    log: File,
    seq: u64,
}

impl Store {
    pub fn open(root: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(root.join("partitions"))?;
        let log = OpenOptions::new().create(true).append(true).open(root.join("log.jsonl"))?;
        Ok(Store { root: root.to_path_buf(), log, seq: 0 })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn partition_path(&self, name: &str) -> PathBuf {
        self.root.join("partitions").join(format!("{name}.img"))
    }

    /// Appends one log entry: `cmd`, `result`, `message`, plus any extra fields.
    pub fn log(&mut self, cmd: &str, result: &str, message: &str, extra: Value) {
        self.seq += 1;
        let mut entry = json!({ "seq": self.seq, "cmd": cmd, "result": result, "message": message });
        if let (Some(map), Value::Object(more)) = (entry.as_object_mut(), extra) {
            map.extend(more);
        }
        // One write per line, so that a reader following the log never sees half an entry
        // (`writeln!` on a file issues a write per formatted piece). A log write failure must
        // not take the device down; it is reported on stderr.
        if let Err(e) = self.log.write_all(format!("{entry}\n").as_bytes()) {
            eprintln!("mi-flash simulate: cannot write {}: {e}", self.root.join("log.jsonl").display());
        }
    }
}
