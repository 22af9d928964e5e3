//! Showing the flasher's events: progress bars on a terminal, plain lines otherwise (so CI
//! logs show progress), or one JSON object per event per line with `--json`.

use crate::flasher::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bars,
    Lines,
    Json,
}

impl Style {
    pub fn pick(json: bool) -> Style {
        use std::io::IsTerminal;
        if json {
            Style::Json
        } else if std::io::stdout().is_terminal() {
            Style::Bars
        } else {
            Style::Lines
        }
    }
}

pub fn kb(bytes: u64) -> u64 {
    bytes.div_ceil(1024)
}

pub fn human(bytes: u64) -> String {
    super::commands::human_size(bytes)
}

/// State of one phone's display.
struct Row {
    label: String,
    overall: Option<ProgressBar>,
    current: Option<ProgressBar>,
    plan_bytes: u64,
    done_bytes: u64,
    step_started: Option<Instant>,
    step_line: String,
}

/// Renders events of one or several phones. Cheap to clone; one instance per flash session.
#[derive(Clone)]
pub struct Renderer {
    style: Style,
    multi: MultiProgress,
    rows: Arc<Mutex<HashMap<String, Row>>>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    several: bool,
}

impl Renderer {
    pub fn new(style: Style, several: bool) -> Renderer {
        Renderer::with_output(style, several, Box::new(std::io::stdout()))
    }

    /// Renders into `out` (tests use a buffer); bars are drawn only on a terminal.
    pub fn with_output(style: Style, several: bool, out: Box<dyn Write + Send>) -> Renderer {
        let target = if style == Style::Bars { ProgressDrawTarget::stdout() } else { ProgressDrawTarget::hidden() };
        Renderer { style, multi: MultiProgress::with_draw_target(target), rows: Default::default(), out: Arc::new(Mutex::new(out)), several }
    }

    /// Prints a message above the bars (or as a line).
    pub fn println(&self, line: &str) {
        match self.style {
            Style::Bars => {
                let _ = self.multi.println(line);
            }
            Style::Lines => self.write_line(line),
            Style::Json => {}
        }
    }

    fn write_line(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Handles one event of phone `device`.
    pub fn event(&self, device: &str, e: &Event) {
        if self.style == Style::Json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("device".into(), serde_json::Value::String(device.to_string()));
            }
            self.write_line(&v.to_string());
            return;
        }
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry(device.to_string()).or_insert_with(|| Row {
            label: device.to_string(),
            overall: None,
            current: None,
            plan_bytes: 0,
            done_bytes: 0,
            step_started: None,
            step_line: String::new(),
        });
        let prefix = if self.several { format!("[{}] ", row.label) } else { String::new() };
        let mut lines: Vec<String> = Vec::new();
        match e {
            Event::Device { serial, product, unlocked, anti, current_slot, .. } => lines.push(format!(
                "{prefix}Phone {} ({serial}): bootloader {}, anti-rollback {}, {}",
                product.as_deref().unwrap_or("?"),
                match unlocked {
                    Some(true) => "unlocked",
                    Some(false) => "locked",
                    None => "lock state unknown",
                },
                anti.map(|a| a.to_string()).unwrap_or_else(|| "not reported".into()),
                current_slot.as_ref().map(|s| format!("active slot {s}")).unwrap_or_else(|| "no slots".into())
            )),
            Event::Check { name, ok, detail } => {
                lines.push(format!("{prefix}{} {name}: {detail}", if *ok { "✓" } else { "✗" }))
            }
            Event::Warning { message } => lines.push(format!("{prefix}warning: {message}")),
            Event::Plan { script, steps, bytes, resumed_from } => {
                row.plan_bytes = *bytes;
                let from = resumed_from.map(|s| format!(", resuming at step {s}")).unwrap_or_default();
                lines.push(format!("{prefix}Running {script}: {steps} steps, {}{from}", human(*bytes)));
                if self.style == Style::Bars {
                    let bar = self.multi.add(ProgressBar::new(*bytes));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix}{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(prefix.clone());
                    row.overall = Some(bar);
                }
            }
            Event::StepStarted { index, total, description, bytes, pieces, partition, .. } => {
                row.step_started = Some(Instant::now());
                row.step_line = match (partition, bytes) {
                    (Some(p), Some(b)) if pieces.unwrap_or(1) > 1 => {
                        format!("{prefix}[{index}/{total}] Sending sparse '{p}' in {} pieces ({} KB)", pieces.unwrap_or(1), kb(*b))
                    }
                    (Some(p), Some(b)) => format!("{prefix}[{index}/{total}] Sending '{p}' ({} KB)", kb(*b)),
                    _ => format!("{prefix}[{index}/{total}] {description}"),
                };
                if self.style == Style::Bars {
                    if let Some(b) = bytes {
                        let bar = self.multi.add(ProgressBar::new(*b));
                        bar.set_style(
                            ProgressStyle::with_template("{prefix}{msg:<28} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar.set_prefix(prefix.clone());
                        bar.set_message(partition.clone().unwrap_or_default());
                        row.current = Some(bar);
                    }
                }
            }
            Event::Piece { partition, piece, pieces, .. } => {
                if let Some(b) = &row.current {
                    b.set_message(format!("{partition} sparse {piece}/{pieces}"));
                }
            }
            Event::Progress { sent, .. } => {
                if let Some(b) = &row.current {
                    b.set_position(*sent);
                }
                if let Some(o) = &row.overall {
                    o.set_position(row.done_bytes + sent);
                }
            }
            Event::StepFinished { elapsed_ms, bytes_sent, .. } => {
                row.done_bytes += bytes_sent;
                if let Some(b) = row.current.take() {
                    b.finish_and_clear();
                }
                if let Some(o) = &row.overall {
                    o.set_position(row.done_bytes);
                }
                lines.push(format!("{} OKAY [{:.3}s]", row.step_line, *elapsed_ms as f64 / 1000.0));
            }
            Event::StepSkipped { index, reason } => lines.push(format!("{prefix}[{index}] skipped: {reason}")),
            Event::Finished { steps, bytes_sent, elapsed_ms } => {
                if let Some(o) = row.overall.take() {
                    o.finish_and_clear();
                }
                let secs = (*elapsed_ms as f64 / 1000.0).max(0.001);
                lines.push(format!(
                    "{prefix}Finished: {steps} steps, {} sent in {secs:.1}s ({}/s)",
                    human(*bytes_sent),
                    human((*bytes_sent as f64 / secs) as u64)
                ));
            }
            Event::Failed { index, partition, message, device_message, hint } => {
                for b in [row.current.take(), row.overall.take()].into_iter().flatten() {
                    b.abandon();
                }
                let at = match (index, partition) {
                    (Some(i), Some(p)) => format!(" at step {i} ({p})"),
                    (Some(i), None) => format!(" at step {i}"),
                    _ => String::new(),
                };
                lines.push(format!("{prefix}FAILED{at}: {message}"));
                if let Some(d) = device_message {
                    lines.push(format!("{prefix}  the phone said: {d}"));
                }
                if let Some(h) = hint {
                    lines.push(format!("{prefix}  next: {h}"));
                }
            }
        }
        drop(rows);
        for l in lines {
            self.println(&l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn events() -> Vec<Event> {
        vec![
            Event::Plan { script: "flash_all.sh".into(), steps: 2, bytes: 3000, resumed_from: None },
            Event::StepStarted { index: 1, total: 3, op: "flash".into(), description: "flash boot_ab images/boot.img".into(), partition: Some("boot_ab".into()), image: Some("images/boot.img".into()), bytes: Some(3000), pieces: Some(2) },
            Event::Piece { index: 1, partition: "boot_ab".into(), piece: 1, pieces: 2, bytes: 2000 },
            Event::Progress { index: 1, partition: "boot_ab".into(), sent: 2000, total: 3000 },
            Event::Piece { index: 1, partition: "boot_ab".into(), piece: 2, pieces: 2, bytes: 1000 },
            Event::Progress { index: 1, partition: "boot_ab".into(), sent: 3000, total: 3000 },
            Event::StepFinished { index: 1, elapsed_ms: 1500, bytes_sent: 3000 },
            Event::StepSkipped { index: 2, reason: "only when crc is 1".into() },
            Event::Failed { index: Some(3), partition: Some("super".into()), message: "boom".into(), device_message: Some("size too large".into()), hint: Some("check".into()) },
        ]
    }

    #[test]
    fn lines_are_one_per_step_with_size_and_time() {
        let buf = Buf::default();
        let r = Renderer::with_output(Style::Lines, false, Box::new(buf.clone()));
        for e in events() {
            r.event("sim-1", &e);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("[1/3] Sending sparse 'boot_ab' in 2 pieces (3 KB) OKAY [1.500s]"), "{text}");
        assert!(text.contains("[2] skipped: only when crc is 1"), "{text}");
        assert!(text.contains("FAILED at step 3 (super): boom"), "{text}");
        assert!(text.contains("the phone said: size too large"), "{text}");
        assert!(!text.contains("Finished"));
    }

    #[test]
    fn json_lines_parse_and_carry_the_device() {
        let buf = Buf::default();
        let r = Renderer::with_output(Style::Json, true, Box::new(buf.clone()));
        for e in events() {
            r.event("sim-1", &e);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), events().len());
        assert!(parsed.iter().all(|v| v["device"] == "sim-1"));
        assert_eq!(parsed[0]["event"], "plan");
        assert_eq!(parsed[1]["event"], "step-started");
        // Each event keeps its own numbers (the sums over a real flash are checked against the
        // simulator's log in tests/flash_rom_output.rs).
        let names: Vec<&str> = parsed.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["plan", "step-started", "piece", "progress", "piece", "progress", "step-finished", "step-skipped", "failed"]);
        assert_eq!((parsed[6]["index"].as_u64(), parsed[6]["elapsed_ms"].as_u64(), parsed[6]["bytes_sent"].as_u64()), (Some(1), Some(1500), Some(3000)));
        assert_eq!(parsed[8]["device_message"], "size too large");
        let bytes: Vec<u64> = parsed.iter().filter(|v| v["event"] == "piece").map(|v| v["bytes"].as_u64().unwrap()).collect();
        assert_eq!(bytes, [2000, 1000]);
    }
}
