//! CRC checking as recent Xiaomi bootloaders do it (`getvar crc` → 1): once the host has
//! flashed the package's `crclist` / `sparsecrclist` pseudo-partitions, every later raw image
//! is checked against its CRC-32 in `crclist.txt`, and every sparse piece against the
//! per-piece CRC in `sparsecrclist.txt` (or, for the old format, the pieces together against
//! one CRC and a piece count). A mismatch is refused with a FAIL naming the partition and piece.

use crate::sparse::{ChunkKind, CrcList, SparseCrcList, SparseCrcValues, SparseLayout};
use std::collections::HashMap;

/// Progress through the pieces of one partition's current image.
#[derive(Default)]
struct PieceRun {
    received: usize,
    blocks: u64,
    hasher: crc32fast::Hasher,
}

#[derive(Default)]
pub struct CrcState {
    enabled: bool,
    crclist: Option<CrcList>,
    sparse: Option<SparseCrcList>,
    runs: HashMap<String, PieceRun>,
}

/// The name a CRC list uses for a partition the host named with a slot suffix.
fn list_names(partition: &str) -> Vec<&str> {
    let mut names = vec![partition];
    for suffix in ["_ab", "_a", "_b"] {
        if let Some(base) = partition.strip_suffix(suffix) {
            names.push(base);
        }
    }
    names
}

/// Feeds a sparse image's RAW data and expanded FILL data (DONT_CARE skipped) into `hasher`,
/// taking the RAW data from `data` (the whole piece) at the offsets of its validated layout;
/// returns how many blocks it defines.
fn feed_sparse_data(data: &[u8], layout: &SparseLayout, hasher: &mut crc32fast::Hasher) -> Result<u64, String> {
    let bs = layout.blk_sz as usize;
    let mut blocks = 0u64;
    for c in &layout.chunks {
        match c.kind {
            ChunkKind::Raw => {
                let from = c.data_offset as usize;
                let raw = from.checked_add(c.blocks as usize * bs).and_then(|to| data.get(from..to));
                hasher.update(raw.ok_or("Invalid sparse image: RAW data past the end of the download")?);
                blocks += c.blocks as u64;
            }
            ChunkKind::Fill(v) => {
                let block: Vec<u8> = v.to_le_bytes().iter().copied().cycle().take(bs).collect();
                for _ in 0..c.blocks {
                    hasher.update(&block);
                }
                blocks += c.blocks as u64;
            }
            ChunkKind::DontCare | ChunkKind::Crc32(_) => {}
        }
    }
    Ok(blocks)
}

impl CrcState {
    pub fn new(enabled: bool) -> CrcState {
        CrcState { enabled, ..Default::default() }
    }

    /// The host flashed `crclist` or `sparsecrclist`: parse and keep it.
    pub fn load_list(&mut self, name: &str, bytes: &[u8]) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let text = String::from_utf8_lossy(bytes);
        match name {
            "crclist" => self.crclist = Some(CrcList::parse(&text, name).map_err(|e| format!("Invalid crclist: {e}"))?),
            _ => {
                self.sparse = Some(SparseCrcList::parse(&text, name).map_err(|e| format!("Invalid sparsecrclist: {e}"))?)
            }
        }
        self.runs.clear();
        Ok(())
    }

    /// A raw image for `partition`, held in the download buffer.
    pub fn check_raw(&mut self, partition: &str, data: &[u8]) -> Result<(), String> {
        let Some(list) = &self.crclist else { return Ok(()) };
        let Some(entry) = list_names(partition).into_iter().find_map(|n| list.get(n)) else { return Ok(()) };
        let crc = crc32fast::hash(data);
        if crc != entry.crc {
            return Err(format!("CRC mismatch: {partition} is {crc:#x}, crclist says {:#x}", entry.crc));
        }
        Ok(())
    }

    /// A sparse piece for `partition` held in `data`, already validated (`layout` of `data`).
    pub fn check_sparse_piece(&mut self, partition: &str, data: &[u8], layout: &SparseLayout) -> Result<(), String> {
        let names = list_names(partition);
        if let Some(entry) = self.sparse.as_ref().and_then(|l| names.iter().find_map(|n| l.get(n))).cloned() {
            let run = self.runs.entry(partition.to_string()).or_default();
            let k = run.received;
            let total = entry.values.pieces();
            if k >= total {
                self.runs.remove(partition);
                return Err(format!("CRC mismatch: {partition} piece {} is more than the {total} pieces in sparsecrclist", k + 1));
            }
            run.received += 1;
            let result = match &entry.values {
                SparseCrcValues::PerPiece { crcs } => {
                    let mut h = crc32fast::Hasher::new();
                    feed_sparse_data(data, layout, &mut h)?;
                    let crc = h.finalize();
                    if crc == crcs[k] {
                        Ok(())
                    } else {
                        Err(format!("CRC mismatch: {partition} piece {}/{total} is {crc:#x}, sparsecrclist says {:#x}", k + 1, crcs[k]))
                    }
                }
                SparseCrcValues::Whole { crc: expected, .. } => {
                    feed_sparse_data(data, layout, &mut run.hasher)?;
                    if run.received < total {
                        Ok(())
                    } else {
                        let crc = run.hasher.clone().finalize();
                        if crc == *expected {
                            Ok(())
                        } else {
                            Err(format!("CRC mismatch: {partition} pieces 1-{total} are {crc:#x}, sparsecrclist says {expected:#x}"))
                        }
                    }
                }
            };
            if result.is_err() || self.runs.get(partition).is_some_and(|r| r.received == total) {
                self.runs.remove(partition);
            }
            return result;
        }
        // A raw image the host split into pieces: its pieces define every block, so their data
        // together is the file the crclist CRC was computed over.
        let Some(entry) = self.crclist.as_ref().and_then(|l| names.iter().find_map(|n| l.get(n))).cloned() else {
            return Ok(());
        };
        let run = self.runs.entry(partition.to_string()).or_default();
        run.received += 1;
        run.blocks += feed_sparse_data(data, layout, &mut run.hasher)?;
        if run.blocks < layout.total_blks as u64 {
            return Ok(());
        }
        let crc = run.hasher.clone().finalize();
        let pieces = run.received;
        self.runs.remove(partition);
        if crc == entry.crc {
            Ok(())
        } else {
            Err(format!("CRC mismatch: {partition} (in {pieces} pieces) is {crc:#x}, crclist says {:#x}", entry.crc))
        }
    }
}
