//! Hashing beside decompression: MD5 and SHA-256 cost more CPU than inflating a `.tgz`, so
//! verification hands the bytes to a worker thread instead of hashing them on the thread that
//! decompresses. The worker sees exactly the bytes the reader saw (copies, in order), so the
//! digests describe the data that was checked, not a second read of the file.
//!
//! Memory stays bounded: bytes are batched into [`BATCH`]-byte buffers and at most
//! [`IN_FLIGHT`] batches wait for the worker (the reader blocks when it is that far ahead).
//! If no thread can be started, the same hashing is done inline.

use md5::Md5;
use sha2::Sha256;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

/// Bytes handed to the worker at a time.
pub(crate) const BATCH: usize = 512 * 1024;
/// Batches queued for the worker before the reader waits.
const IN_FLIGHT: usize = 4;

/// Something that digests bytes in order.
pub(crate) trait Update: Send + 'static {
    fn update(&mut self, data: &[u8]);
}

impl Update for Md5 {
    fn update(&mut self, data: &[u8]) {
        md5::Digest::update(self, data);
    }
}

impl Update for Sha256 {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(self, data);
    }
}

impl Update for (Md5, Sha256) {
    fn update(&mut self, data: &[u8]) {
        md5::Digest::update(&mut self.0, data);
        sha2::Digest::update(&mut self.1, data);
    }
}

/// Hashers fed on a worker thread (or inline when no thread could be started).
pub(crate) enum BackgroundHash<H: Update + Default> {
    Inline(H),
    Worker {
        pending: Vec<u8>,
        tx: SyncSender<Vec<u8>>,
        handle: JoinHandle<H>,
    },
}

impl<H: Update + Default> BackgroundHash<H> {
    /// Fresh hashers on a worker thread called `name`.
    pub(crate) fn new(name: &str) -> BackgroundHash<H> {
        let (tx, rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let mut h = H::default();
            for batch in rx {
                h.update(&batch);
            }
            h
        });
        match spawned {
            Ok(handle) => BackgroundHash::Worker { pending: Vec::with_capacity(BATCH), tx, handle },
            Err(_) => BackgroundHash::Inline(H::default()),
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        match self {
            BackgroundHash::Inline(h) => h.update(data),
            BackgroundHash::Worker { pending, tx, .. } => {
                while !data.is_empty() {
                    let take = (BATCH - pending.len()).min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if pending.len() == BATCH {
                        let full = std::mem::replace(pending, Vec::with_capacity(BATCH));
                        // A worker that is gone shows up in `finish`.
                        let _ = tx.send(full);
                    }
                }
            }
        }
    }

    /// Waits for the worker and returns the hashers with every byte fed; `None` if the
    /// worker died (it cannot, short of a bug), so a digest is never reported over part of
    /// the data.
    pub(crate) fn finish(self) -> Option<H> {
        match self {
            BackgroundHash::Inline(h) => Some(h),
            BackgroundHash::Worker { pending, tx, handle } => {
                let sent = pending.is_empty() || tx.send(pending).is_ok();
                drop(tx);
                let h = handle.join().ok()?;
                sent.then_some(h)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn worker_digest_equals_inline_digest_for_any_batching() {
        let data: Vec<u8> = (0..(3 * BATCH + 12345)).map(|i| (i * 7 + i / 999) as u8).collect();
        let expected_md5 = Md5::digest(&data);
        let expected_sha = Sha256::digest(&data);
        for step in [1usize, 4096, BATCH - 1, BATCH, BATCH + 1, data.len()] {
            let mut bg = BackgroundHash::<(Md5, Sha256)>::new("test-hash");
            assert!(matches!(bg, BackgroundHash::Worker { .. }));
            for piece in data.chunks(step) {
                bg.update(piece);
            }
            let (md5, sha) = bg.finish().expect("worker finished");
            assert_eq!(md5.finalize(), expected_md5, "step {step}");
            assert_eq!(sha.finalize(), expected_sha, "step {step}");
        }
    }

    #[test]
    fn empty_input_gives_the_empty_digest() {
        let bg = BackgroundHash::<Md5>::new("test-hash");
        assert_eq!(bg.finish().expect("worker finished").finalize(), Md5::digest(b""));
    }
}
