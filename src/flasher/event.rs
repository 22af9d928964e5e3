//! What the flasher reports while it works. The library never draws: the CLI renders these as
//! progress bars, plain lines or JSON lines (`--json`, a public contract documented in
//! docs/flashing.md). Order for one phone: `device`, `check`…, `warning`…, `plan`, then per
//! step `step-started` (`piece` / `progress`…) `step-finished` or `step-skipped`, and last
//! `finished` or `failed`. A retry after the link failed is a `warning` inside its step; the
//! step's `piece` / `progress` events then start again from the piece sent again.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The phone, as it answered before anything was written.
    Device {
        serial: String,
        product: Option<String>,
        unlocked: Option<bool>,
        anti: Option<u32>,
        current_slot: Option<String>,
        max_download_size: Option<u64>,
    },
    /// A check on the phone or the package, before the first write.
    Check { name: String, ok: bool, detail: String },
    Warning { message: String },
    /// What will run: steps to run (skipped ones excluded) and the image bytes they send.
    Plan { script: String, steps: usize, bytes: u64, resumed_from: Option<usize> },
    StepStarted {
        /// 1-based position in the plan.
        index: usize,
        total: usize,
        op: String,
        description: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        partition: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// Bytes that will cross the link for this step (sparse headers included).
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pieces: Option<u32>,
    },
    /// A download of a split image starts (1-based `piece` of `pieces`).
    Piece { index: usize, partition: String, piece: u32, pieces: u32, bytes: u64 },
    /// Bytes of the current download sent so far.
    Progress { index: usize, partition: String, sent: u64, total: u64 },
    StepFinished { index: usize, elapsed_ms: u64, bytes_sent: u64 },
    StepSkipped { index: usize, reason: String },
    Finished { steps: usize, bytes_sent: u64, elapsed_ms: u64 },
    Failed {
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        partition: Option<String>,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        device_message: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
}
