//! Helpers for the `flash --rom` end-to-end tests (`tests/flash_rom_*.rs`): run the mi-flash
//! binary, make sample packages (cached per build, since generation dominates debug test
//! time), build packages around the real Xiaomi scripts in the shared fixtures, and compare a
//! simulator's store and log with the package and its plan.
#![allow(dead_code)]

use super::{mi_flash, random_bytes};
use mi_flash::rom::plan::{Action, MemoryFiles, Plan, RebootTarget};
use mi_flash::rom::sample::{write_sample_folder, write_sample_package, SampleOptions};
use mi_flash::sparse::{self, CrcList, ScanOptions, SparseCrcList};
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

/// The outcome of one mi-flash run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with both outputs unless the run exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "exit code {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr);
        self
    }

    /// A failed run never claims success.
    pub fn expect_no_success_message(&self) -> &Run {
        let all = self.all();
        assert!(!all.contains("Finished") && !all.contains("Done."), "a failed run printed a success line:\n{all}");
        self
    }
}

/// Runs mi-flash with no terminal on stdin (so it never waits for an answer).
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = mi_flash()
        .args(args)
        .env_remove("MI_FLASH_JOURNAL_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run mi-flash");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---- sample packages ----

/// Which container the sample comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Tgz,
    Folder,
    Zip,
}

/// A sample package on disk: `rom` is what `--rom` takes, `root` the folder holding its
/// `images/` (the same bytes, for comparisons).
#[derive(Debug, Clone)]
pub struct Sample {
    pub rom: PathBuf,
    pub root: PathBuf,
}

/// A sample with `super_mib` MiB of super data and CRC lists for `max_download_size` pieces,
/// generated once per build of mi-flash (the sample is reproducible, so a cached copy is the
/// same bytes) and never modified by tests (tests that damage it copy it first).
pub fn sample(form: Form, super_mib: u64, max_download_size: u64) -> Sample {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let stamp = std::fs::metadata(env!("CARGO_BIN_EXE_mi-flash"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flash-rom-samples");
    let dir = base.join(format!("s{super_mib}-m{max_download_size}-{stamp}"));
    if !dir.join("complete").exists() {
        std::fs::create_dir_all(&base).expect("sample cache dir");
        // Samples of earlier builds are not used again.
        let prefix = format!("s{super_mib}-m{max_download_size}-");
        for old in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            if old.file_name().to_string_lossy().starts_with(&prefix) && old.path() != dir {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        let tmp = tempfile::tempdir_in(&base).expect("temp dir");
        let opts = SampleOptions { super_data: super_mib << 20, max_download_size, ..Default::default() };
        let pkg = write_sample_package(&tmp.path().join("tgz"), &opts).expect("sample package");
        let folder = write_sample_folder(&tmp.path().join("folder"), &opts).expect("sample folder");
        zip_folder(&folder, &tmp.path().join("zip").join("sample.zip"));
        std::fs::write(tmp.path().join("tgz-name"), &pkg.file_name).unwrap();
        std::fs::write(tmp.path().join("folder-name"), folder.file_name().unwrap().to_string_lossy().as_bytes()).unwrap();
        std::fs::write(tmp.path().join("complete"), b"").unwrap();
        let tmp = tmp.keep();
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another test process made it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).expect("sample cache entry");
    let root = dir.join("folder").join(read("folder-name"));
    let rom = match form {
        Form::Tgz => dir.join("tgz").join(read("tgz-name")),
        Form::Folder => root.clone(),
        Form::Zip => dir.join("zip").join("sample.zip"),
    };
    Sample { rom, root }
}

pub fn zip_folder(folder: &Path, out: &Path) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let top = folder.file_name().unwrap().to_string_lossy().into_owned();
    let mut stack = vec![(folder.to_path_buf(), top)];
    while let Some((dir, rel)) = stack.pop() {
        w.add_directory(format!("{rel}/"), opts).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let r = format!("{rel}/{}", p.file_name().unwrap().to_string_lossy());
            if p.is_dir() {
                stack.push((p, r));
            } else {
                w.start_file(r, opts).unwrap();
                w.write_all(&std::fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    w.finish().unwrap();
}

/// Packs a package folder as a `.tgz` (the folder becomes the archive's top folder).
pub fn tgz_folder(folder: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(folder.file_name().unwrap(), folder).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

/// Extracts a `.tgz` into `dest` and returns the folder that holds `images/`.
pub fn extract_tgz(tgz: &Path, dest: &Path) -> PathBuf {
    let f = std::fs::File::open(tgz).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f)).unpack(dest).unwrap();
    let mut dirs = vec![dest.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if d.join("images").is_dir() {
            return d;
        }
        dirs.extend(std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()));
    }
    panic!("no images/ folder in {}", tgz.display());
}

/// The moonstone profile with a small `max-download-size`, so `super.img` goes in pieces, and
/// `overrides` (`key`, TOML value) replacing keys anywhere in it (partition sizes too) or
/// adding top-level ones.
pub fn moonstone_profile(dir: &Path, max_download_size: u64, overrides: &[(&str, &str)]) -> PathBuf {
    let text = mi_flash::sim::profile::BUILTIN.iter().find(|(n, _)| *n == "moonstone").unwrap().1;
    let mut all: Vec<(String, String)> = vec![("max-download-size".into(), max_download_size.to_string())];
    all.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut used = vec![false; all.len()];
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match all.iter().position(|(k, _)| k == key) {
            Some(i) if line.contains('=') => {
                used[i] = true;
                lines.push(format!("{key} = {}", all[i].1));
            }
            _ => lines.push(line.to_string()),
        }
    }
    // Keys not in the built-in profile are top-level ones: before the first table.
    let table = lines.iter().position(|l| l.starts_with('[')).unwrap_or(lines.len());
    for (i, (k, v)) in all.iter().enumerate().rev() {
        if !used[i] {
            lines.insert(table, format!("{k} = {v}"));
        }
    }
    let p = dir.join(format!("moonstone-{max_download_size}-{}.toml", dir_unique()));
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn dir_unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

// ---- plans, logs, stores ----

/// `mi-flash plan --rom ROM --mode MODE --json`, parsed (once per package and mode: each run
/// verifies the whole package).
pub fn plan(rom: &Path, mode: &str) -> Plan {
    static PLANS: Mutex<BTreeMap<(PathBuf, String), Plan>> = Mutex::new(BTreeMap::new());
    let key = (rom.to_path_buf(), mode.to_string());
    if let Some(p) = PLANS.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return p.clone();
    }
    let r = run(&["plan", "--rom", &s(rom), "--mode", mode, "--json"]);
    r.expect_code(0);
    let plan: Plan = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("plan --json output does not parse: {e}\n{}", r.stdout));
    PLANS.lock().unwrap_or_else(|p| p.into_inner()).insert(key, plan.clone());
    plan
}

/// Whether a step runs on a phone whose variables are `vars` (for `when` conditions).
pub fn runs(step: &mi_flash::rom::plan::Step, vars: &HashMap<&str, &str>) -> bool {
    step.when.as_ref().map_or(true, |c| c.holds(vars.get(c.var()).copied()))
}

/// The commands that change the phone, in plan order, as the simulator logs them.
pub fn expected_ops(plan: &Plan, vars: &HashMap<&str, &str>) -> Vec<String> {
    let mut out = Vec::new();
    for step in plan.steps.iter().filter(|s| runs(s, vars)) {
        let op = match &step.action {
            Action::Flash(f) => format!("flash:{}", f.partition),
            Action::Erase { partition } => format!("erase:{partition}"),
            Action::SetActive { slot } => format!("set_active:{slot}"),
            Action::Reboot { target } => match target {
                RebootTarget::System => "reboot".to_string(),
                RebootTarget::Bootloader => "reboot-bootloader".to_string(),
                RebootTarget::Fastboot => "reboot-fastboot".to_string(),
                RebootTarget::Recovery => "reboot-recovery".to_string(),
            },
            Action::Lock { command } => command.trim().to_string(),
            Action::Oem { command } => format!("oem {command}"),
            _ => continue,
        };
        out.push(op);
    }
    out
}

/// The successful commands that changed the phone, from log entries, with the consecutive
/// `flash:` of one split image's pieces counted once. Also checks that every `flash:` came
/// right after a successful download.
pub fn logged_ops(log: &[serde_json::Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut downloaded = false;
    for e in log {
        let cmd = e["cmd"].as_str().unwrap_or_default();
        let ok = e["result"] == "OKAY";
        if cmd.starts_with("getvar:") {
            continue;
        }
        if cmd.starts_with("download:") {
            downloaded = ok;
            continue;
        }
        if !ok {
            continue;
        }
        if cmd.starts_with("flash:") {
            assert!(downloaded, "{cmd} without a download before it (log entry {e})");
            downloaded = false;
            if out.last().map(String::as_str) == Some(cmd) {
                continue;
            }
        }
        out.push(cmd.to_string());
    }
    out
}

/// Store files a flash or erase of `partition` writes (`_ab`: both slots). The profiles used
/// with these helpers list every plain name of an A/B package as `unslotted`.
pub fn store_targets(partition: &str) -> Vec<String> {
    match partition.strip_suffix("_ab") {
        Some(base) => vec![format!("{base}_a"), format!("{base}_b")],
        None => vec![partition.to_string()],
    }
}

/// An image as a partition holds it: sparse images expanded (DONT_CARE as zeros).
/// Expanded by AOSP's `simg2img` where it is installed (always in CI), so the comparison does
/// not rest on the crate's own decoder, which the simulator also uses to write.
pub fn expand(bytes: &[u8]) -> Vec<u8> {
    if !sparse::is_sparse(bytes) {
        return bytes.to_vec();
    }
    let simg2img = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("simg2img")).find(|p| p.is_file()));
    if let Some(tool) = simg2img {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in.img"), dir.path().join("out.raw"));
        std::fs::write(&input, bytes).unwrap();
        let status = std::process::Command::new(tool).arg(&input).arg(&output).status().unwrap();
        assert!(status.success(), "simg2img refused a package image");
        return std::fs::read(&output).unwrap();
    }
    let mut out = Cursor::new(Vec::new());
    let summary = sparse::decode_into(bytes, &mut out).expect("package sparse image decodes");
    let mut v = out.into_inner();
    v.resize(summary.expanded_len as usize, 0);
    v
}

/// Asserts that every partition the plan writes on this phone holds exactly its image from
/// `root` (the last write wins; an erase that nothing follows leaves it empty). Returns how
/// many partition files were compared.
pub fn assert_store_matches(store: &Path, root: &Path, plan: &Plan, vars: &HashMap<&str, &str>) -> usize {
    let mut want: BTreeMap<String, Option<String>> = BTreeMap::new();
    for step in plan.steps.iter().filter(|s| runs(s, vars)) {
        match &step.action {
            Action::Flash(f) => store_targets(&f.partition).into_iter().for_each(|t| {
                want.insert(t, Some(f.image.clone()));
            }),
            Action::Erase { partition } => store_targets(partition).into_iter().for_each(|t| {
                want.insert(t, None);
            }),
            _ => {}
        }
    }
    let mut images: HashMap<String, Vec<u8>> = HashMap::new();
    for (target, image) in &want {
        let path = store.join("partitions").join(format!("{target}.img"));
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match image {
            Some(image) => {
                let expected = images
                    .entry(image.clone())
                    .or_insert_with(|| expand(&std::fs::read(root.join(image)).unwrap_or_else(|e| panic!("{image}: {e}"))));
                assert!(
                    got == *expected,
                    "partition {target} ({} bytes) differs from {image} ({} bytes expanded){}",
                    got.len(),
                    expected.len(),
                    got.iter().zip(expected.iter()).position(|(a, b)| a != b).map(|p| format!(", first at byte {p}")).unwrap_or_default()
                );
            }
            None => assert!(got.is_empty(), "partition {target} was erased last but holds {} bytes", got.len()),
        }
    }
    want.len()
}

/// The simulator's log as JSON values, from entry `from` on (0-based).
pub fn read_log(store: &Path, from: usize) -> Vec<serde_json::Value> {
    super::complete_log_lines(&std::fs::read_to_string(store.join("log.jsonl")).unwrap_or_default())
        .skip(from)
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}

pub fn log_len(store: &Path) -> usize {
    std::fs::read_to_string(store.join("log.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}

/// Log entries that wrote to the phone (download, flash, erase).
pub fn writes(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .filter_map(|e| e["cmd"].as_str())
        .filter(|c| c.starts_with("download:") || c.starts_with("flash:") || c.starts_with("erase:") || c.starts_with("set_active"))
        .map(str::to_string)
        .collect()
}

/// Bytes the phone received in downloads, per the log.
pub fn downloaded_bytes(log: &[serde_json::Value]) -> u64 {
    log.iter()
        .filter(|e| e["cmd"].as_str().is_some_and(|c| c.starts_with("download:")))
        .filter_map(|e| e["bytes"].as_u64())
        .sum()
}

// ---- packages around the real Xiaomi scripts ----

pub use super::fixtures;

/// Images whose names say they hold a file system: written as Android sparse images.
fn looks_sparse(image: &str) -> bool {
    let stem = image.rsplit('/').next().unwrap_or(image).split('.').next().unwrap_or("");
    matches!(stem, "super" | "userdata" | "cust" | "system" | "cache" | "vendor")
}

/// One chunk of a hand-written sparse image.
#[derive(Debug, Clone)]
pub enum Chunk {
    Raw(Vec<u8>),
    Fill { blocks: u32, value: u32 },
    DontCare { blocks: u32 },
}

/// A minimal Android sparse writer (header, RAW/FILL/DONT_CARE chunks; block size 4096),
/// independent of mi-flash's own writer.
pub fn write_sparse(chunks: &[Chunk]) -> Vec<u8> {
    const BS: u32 = 4096;
    let total_blks: u32 = chunks
        .iter()
        .map(|c| match c {
            Chunk::Raw(d) => {
                assert_eq!(d.len() % BS as usize, 0, "RAW chunk data must be whole blocks");
                (d.len() / BS as usize) as u32
            }
            Chunk::Fill { blocks, .. } | Chunk::DontCare { blocks } => *blocks,
        })
        .sum();
    let mut out = Vec::new();
    out.extend_from_slice(&0xed26ff3au32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&28u16.to_le_bytes());
    out.extend_from_slice(&12u16.to_le_bytes());
    out.extend_from_slice(&BS.to_le_bytes());
    out.extend_from_slice(&total_blks.to_le_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for c in chunks {
        let (kind, blocks, body): (u16, u32, Vec<u8>) = match c {
            Chunk::Raw(d) => (0xCAC1, (d.len() / BS as usize) as u32, d.clone()),
            Chunk::Fill { blocks, value } => (0xCAC2, *blocks, value.to_le_bytes().to_vec()),
            Chunk::DontCare { blocks } => (0xCAC3, *blocks, Vec::new()),
        };
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&blocks.to_le_bytes());
        out.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// A package folder built around one real Xiaomi script, and a simulator profile for it.
#[derive(Debug, Clone)]
pub struct FixturePackage {
    /// The package folder (holds the script and `images/`).
    pub root: PathBuf,
    /// The script's name in the package (`flash_all.sh`, `flash_all_lock.sh`).
    pub script: String,
    /// A simulator profile TOML for a phone this package is made for.
    pub profile: PathBuf,
    /// The phone's answers to `when` conditions (`crc`).
    pub vars: HashMap<&'static str, &'static str>,
}

/// What kind of phone a fixture script is for.
pub struct Family {
    /// Fixture file under the shared fixtures.
    pub fixture: &'static str,
    /// Its name in the package.
    pub script: &'static str,
    pub codename: &'static str,
    /// A/B: `_ab` names are slotted, plain names `unslotted`.
    pub ab: bool,
    pub crc: bool,
    pub anti: Option<u32>,
    /// Give the profile a partition table (sizes: twice each image, at least 1 MiB).
    pub partition_table: bool,
    pub max_download_size: u64,
}

/// Builds a package folder under `out` for `family`: copies the fixture script (at test time:
/// fixtures are never committed), creates every image its plan references (small random raw
/// images; sparse images for file-system names, large enough to be split at the profile's
/// `max-download-size`), `anti_version.txt` where the script reads it, and `crclist.txt` /
/// `sparsecrclist.txt` when the script flashes them. None when the fixtures are absent.
pub fn fixture_package(family: &Family, out: &Path) -> Option<FixturePackage> {
    let dir = fixtures()?;
    let text = std::fs::read(dir.join(family.fixture)).unwrap_or_else(|e| panic!("fixture {}: {e}", family.fixture));
    let text_str = String::from_utf8_lossy(&text).into_owned();
    let folder = format!("{}_images_V14.0.1.0.TEST_20240101.0000.00_14.0", family.codename);
    let root = out.join(&folder);
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::write(root.join(family.script), &text).unwrap();
    let mut files = MemoryFiles::new().with_folder(&folder);
    if text_str.contains("anti_version.txt") {
        let anti = format!("{}\n", family.anti.unwrap_or(0));
        std::fs::write(root.join("images/anti_version.txt"), &anti).unwrap();
        files = files.with("images/anti_version.txt", anti.as_bytes());
    }
    let plan = mi_flash::rom::script::parse_script(family.script, &text, &files)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", family.fixture));

    // The images, each written once (several partitions may share one).
    let mds = family.max_download_size as usize;
    let mut written: HashMap<String, Vec<u8>> = HashMap::new();
    for (i, image) in plan.images().into_iter().enumerate() {
        if image.ends_with("crclist.txt") {
            continue;
        }
        let seed = 1000 + i as u64;
        let bytes = if looks_sparse(image) {
            // About 2.5 pieces of RAW data at the phone's download size, plus FILL and
            // DONT_CARE regions, so the image is split and the pieces rebuild it together.
            let raw = |blocks: usize, seed: u64| Chunk::Raw(random_bytes(blocks * 4096, seed));
            let big = (mds * 5 / 4 / 4096).max(1);
            write_sparse(&[
                raw(big, seed),
                Chunk::Fill { blocks: 64, value: 0xdead_beef },
                Chunk::DontCare { blocks: 100 },
                raw(big, seed + 1),
                Chunk::Fill { blocks: 3, value: 0 },
                raw(5, seed + 2),
                Chunk::DontCare { blocks: 20 },
            ])
        } else if image.contains("NON-HLOS") || image.contains("md1img") {
            // A raw image larger than one download: sent in sparse pieces.
            random_bytes(mds + mds / 2, seed)
        } else {
            // Small raw images, some not a whole number of blocks.
            let len = 4096 * (1 + i % 5) + if i % 3 == 0 { 123 } else { 0 };
            random_bytes(len, seed)
        };
        std::fs::write(root.join(image), &bytes).unwrap();
        written.insert(image.to_string(), bytes);
    }

    // CRC lists as Xiaomi's generator writes them: partitions without slot suffix, raw images
    // by whole-file CRC, sparse ones by per-piece CRC for the split the phone will see.
    let flashes_list = |name: &str| plan.images().iter().any(|i| i.ends_with(name));
    let crc_split = if family.crc { family.max_download_size } else { sparse::NEW_SPARSE_CRC_SPLIT };
    let mut crclist = CrcList::default();
    let mut sparse_list = SparseCrcList::default();
    let mut listed = Vec::new();
    for step in &plan.steps {
        let Action::Flash(f) = &step.action else { continue };
        let Some(bytes) = written.get(&f.image) else { continue };
        let base = f.partition.strip_suffix("_ab").unwrap_or(&f.partition).to_string();
        if listed.contains(&base) {
            continue;
        }
        listed.push(base.clone());
        if sparse::is_sparse(bytes) {
            let scan = sparse::scan(&bytes[..], &ScanOptions { piece_crcs_for: Some(crc_split), ..Default::default() }).unwrap();
            sparse_list.push(&base, &scan).unwrap();
        } else {
            crclist.push(&base, crc32fast::hash(bytes));
        }
    }
    if flashes_list("/crclist.txt") {
        std::fs::write(root.join("images/crclist.txt"), crclist.to_string()).unwrap();
    }
    if flashes_list("/sparsecrclist.txt") {
        std::fs::write(root.join("images/sparsecrclist.txt"), sparse_list.to_string()).unwrap();
    }

    // The phone: every partition the plan names, sized generously.
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut unslotted = Vec::new();
    for step in &plan.steps {
        let (partition, image) = match &step.action {
            Action::Flash(f) => (f.partition.clone(), Some(f.image.clone())),
            Action::Erase { partition } => (partition.clone(), None),
            _ => continue,
        };
        if partition == "crclist" || partition == "sparsecrclist" {
            continue;
        }
        let (base, slotted) = match partition.strip_suffix("_ab") {
            Some(b) => (b.to_string(), true),
            None => (partition.clone(), false),
        };
        if family.ab && !slotted && !unslotted.contains(&base) {
            unslotted.push(base.clone());
        }
        let need = image.and_then(|i| written.get(&i)).map(|b| expand(b).len() as u64).unwrap_or(0);
        let size = (need * 2).max(1 << 20);
        let e = sizes.entry(base).or_insert(0);
        *e = (*e).max(size);
    }
    let mut profile = format!(
        "product = \"{}\"\nserialno = \"fx-{}\"\nunlocked = true\ncrc = {}\nmax-download-size = {}\n",
        family.codename, family.codename, family.crc, family.max_download_size
    );
    if let Some(a) = family.anti {
        profile.push_str(&format!("anti = {a}\n"));
    }
    if family.ab {
        profile.push_str("slot-count = 2\ncurrent-slot = \"a\"\n");
        let list: Vec<String> = unslotted.iter().map(|u| format!("\"{u}\"")).collect();
        profile.push_str(&format!("unslotted = [{}]\n", list.join(", ")));
    }
    if family.partition_table || family.ab {
        profile.push_str("[partitions]\n");
        for (name, size) in &sizes {
            profile.push_str(&format!("\"{name}\" = {size}\n"));
        }
    }
    let profile_path = out.join(format!("{}.toml", family.codename));
    std::fs::write(&profile_path, profile).unwrap();
    let mut vars = HashMap::new();
    vars.insert("crc", if family.crc { "1" } else { "0" });
    Some(FixturePackage { root, script: family.script.to_string(), profile: profile_path, vars })
}

pub const PIANO: Family = Family {
    fixture: "piano__flash_all__thiraphit7.sh",
    script: "flash_all.sh",
    codename: "piano",
    ab: true,
    crc: true,
    anti: Some(1),
    partition_table: true,
    max_download_size: 1 << 20,
};

pub const OXYGEN: Family = Family {
    fixture: "oxygen__flash_all__hardikjain54.sh",
    script: "flash_all.sh",
    codename: "oxygen",
    ab: false,
    crc: false,
    anti: None,
    partition_table: false,
    max_download_size: 1 << 20,
};

pub const CEREUS: Family = Family {
    fixture: "cereus__flash_all_lock__sortmirror.sh",
    script: "flash_all_lock.sh",
    codename: "cereus",
    ab: false,
    crc: true,
    anti: Some(0),
    partition_table: true,
    max_download_size: 1 << 20,
};

/// The phone variables of the moonstone-based profiles for `when` conditions.
pub fn moonstone_vars() -> HashMap<&'static str, &'static str> {
    let mut v = HashMap::new();
    v.insert("crc", "1");
    v
}
