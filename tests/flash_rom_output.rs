//! What `flash --rom` prints. With `--json`: one JSON event per stdout line and nothing else,
//! in the documented order, with byte counts that add up (each step's `bytes_sent` sums to
//! `finished.bytes_sent`, which equals the download bytes the phone logged for the run and
//! the `plan` event's bytes). Without a terminal: one plain line per step with its size and
//! time, so CI logs show progress.

mod common;
use common::rom::*;
use common::Sim;
use regex::Regex;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}")))
        .collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn json_events_parse_and_bytes_add_up() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&sample.rom), "--yes", "--json", "--journal-dir", &s(&dir.path().join("j"))]);
    r.expect_code(0);
    let events = json_lines(&r.stdout);
    assert!(events.iter().all(|e| e["device"] == sim.target().as_str()), "every event names its phone");
    assert_eq!(events.first().unwrap()["event"], "device");
    assert_eq!(events.last().unwrap()["event"], "finished");
    let plan_event = of(&events, "plan");
    assert_eq!(plan_event.len(), 1);
    let first_step = events.iter().position(|e| e["event"] == "step-started").unwrap();
    let plan_at = events.iter().position(|e| e["event"] == "plan").unwrap();
    assert!(events[..plan_at].iter().all(|e| ["device", "check", "warning"].contains(&e["event"].as_str().unwrap())));
    assert!(plan_at < first_step);

    let finished = of(&events, "finished")[0];
    let step_sum: u64 = of(&events, "step-finished").iter().map(|e| e["bytes_sent"].as_u64().unwrap()).sum();
    let total = finished["bytes_sent"].as_u64().unwrap();
    assert!(total > 4 * MIB, "{total}");
    assert_eq!(step_sum, total, "step bytes do not add up to the total");
    assert_eq!(downloaded_bytes(&sim.log()), total, "the phone received other byte counts than reported");
    assert_eq!(plan_event[0]["bytes"].as_u64().unwrap(), total, "the plan announced other byte counts");

    // Every started step finishes (or was skipped), in order, once.
    let started: Vec<u64> = of(&events, "step-started").iter().map(|e| e["index"].as_u64().unwrap()).collect();
    let done: Vec<u64> = of(&events, "step-finished").iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(started, done);
    assert!(started.windows(2).all(|w| w[0] < w[1]));

    // The split super: its pieces add up to its step, and progress never goes backwards.
    let super_start = of(&events, "step-started").into_iter().find(|e| e["partition"] == "super").unwrap();
    let index = super_start["index"].as_u64().unwrap();
    let pieces: Vec<&Value> = events.iter().filter(|e| e["event"] == "piece" && e["index"] == index).collect();
    assert_eq!(pieces.len() as u64, super_start["pieces"].as_u64().unwrap());
    assert!(pieces.len() >= 4);
    let piece_sum: u64 = pieces.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    let super_done = of(&events, "step-finished").into_iter().find(|e| e["index"] == index).unwrap();
    assert_eq!(piece_sum, super_done["bytes_sent"].as_u64().unwrap());
    assert_eq!(piece_sum, super_start["bytes"].as_u64().unwrap());
    let progress: Vec<u64> = events.iter().filter(|e| e["event"] == "progress" && e["index"] == index).map(|e| e["sent"].as_u64().unwrap()).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress went backwards: {progress:?}");
    assert_eq!(progress.last().copied(), Some(piece_sum));
}

#[test]
fn json_failure_is_the_last_event_and_names_step_and_partition() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &["--fault", "fail-on=flash:super#2"]);
    let r = run(&["-s", &sim.target(), "flash", "--rom", &s(&sample.rom), "--yes", "--json", "--journal-dir", &s(&dir.path().join("j"))]);
    r.expect_code(1);
    let events = json_lines(&r.stdout);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "failed", "{last}");
    assert_eq!(last["index"], 21);
    assert_eq!(last["partition"], "super");
    assert!(last["device_message"].as_str().unwrap().contains("injected fault"), "{last}");
    assert!(of(&events, "finished").is_empty());
    // What was sent before the failure is accounted for too.
    let step_sum: u64 = of(&events, "step-finished").iter().map(|e| e["bytes_sent"].as_u64().unwrap()).sum();
    let logged_ok: u64 = sim.log().iter().filter(|e| e["cmd"].as_str().unwrap().starts_with("download:")).filter_map(|e| e["bytes"].as_u64()).sum();
    let piece_bytes = of(&events, "piece").iter().filter(|e| e["index"] == 21).map(|e| e["bytes"].as_u64().unwrap()).take(2).sum::<u64>();
    assert_eq!(step_sum + piece_bytes, logged_ok, "bytes of finished steps plus the failed step's pieces");
}

#[test]
fn plain_lines_one_per_step_with_size_and_time() {
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let store = dir.path().join("store");
    let r = run(&["-s", &format!("sim:{}", s(&profile)), "--sim-store", &s(&store), "flash", "--rom", &s(&sample.rom), "--yes", "--journal-dir", &s(&dir.path().join("j"))]);
    r.expect_code(0);
    let plan = plan(&sample.rom, "clean");
    let total = plan.steps.len();
    let step_line = Regex::new(r"^\[(\d+)/(\d+)\] (.*) OKAY \[(\d+\.\d{3})s\]$").unwrap();
    let mut seen = Vec::new();
    for line in r.stdout.lines() {
        if let Some(c) = step_line.captures(line) {
            assert_eq!(c[2].parse::<usize>().unwrap(), total, "{line}");
            let index: usize = c[1].parse().unwrap();
            let what = &c[3];
            match &plan.steps[index - 1].action {
                mi_flash::rom::plan::Action::Flash(f) => {
                    let size = Regex::new(&format!(r"^Sending (sparse )?'{}'( in \d+ pieces)? \((\d+) KB\)$", regex::escape(&f.partition))).unwrap();
                    assert!(size.is_match(what), "flash step line without its size: {line}");
                }
                other => assert_eq!(what, other.to_string(), "{line}"),
            }
            seen.push(index);
        } else {
            assert!(!line.starts_with('['), "a step line in another shape: {line}");
        }
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "not one line per step:\n{}", r.stdout);
    assert!(r.stdout.contains("Sending sparse 'super' in 5 pieces"), "{}", r.stdout);
    // No terminal: no progress bar escape sequences.
    assert!(!r.stdout.contains('\u{1b}'), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.starts_with("Finished: 26 steps")), "{}", r.stdout);
}
