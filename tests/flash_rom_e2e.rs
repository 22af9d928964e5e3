//! `mi-flash flash --rom` end to end against the simulated phone, over TCP (a `mi-flash
//! simulate` process) and in-process (`-s sim:PROFILE`): the sample package as .tgz, folder
//! and .zip, and packages built around real Xiaomi scripts (A/B piano and liuqin, non-A/B
//! oxygen, raphaelin and land, MediaTek cereus in lock mode, ysl keeping data). Afterwards
//! every partition the plan writes is byte-identical to its image (sparse images expanded),
//! and the simulator's log shows the plan's operations in the plan's order.
//!
//! The real scripts are read at test time from `../shared/fixtures/xiaomi-scripts` (or
//! `MI_FLASH_XIAOMI_SCRIPTS`); without them those tests print a notice and pass, except under
//! CI=true.

mod common;
use common::rom::*;
use common::Sim;
use std::collections::HashMap;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Flashes `rom` with `target` args, then checks exit, store and log against the plan.
fn flash_and_check(target: &[String], store: &Path, rom: &Path, root: &Path, mode: &str, vars: &HashMap<&str, &str>) -> Run {
    let journal = tempfile::tempdir().unwrap();
    let before = log_len(store);
    let mut args: Vec<String> = target.to_vec();
    args.extend(["flash", "--rom", &s(rom), "--mode", mode, "--yes", "--journal-dir", &s(journal.path())].map(String::from));
    let r = run(&args);
    r.expect_code(0);
    assert!(r.stdout.contains("Finished:"), "{}", r.stdout);
    let plan = plan(rom, mode);
    let log = read_log(store, before);
    assert_eq!(logged_ops(&log), expected_ops(&plan, vars), "the phone's log does not follow the plan");
    let compared = assert_store_matches(store, root, &plan, vars);
    assert!(compared >= 10, "only {compared} partitions compared");
    // The journal of a finished flash is removed.
    assert_eq!(std::fs::read_dir(journal.path()).map(|d| d.count()).unwrap_or(0), 0, "a journal was left behind");
    r
}

fn pieces_of(store: &Path, partition: &str) -> usize {
    read_log(store, 0).iter().filter(|e| e["cmd"] == format!("flash:{partition}") && e["result"] == "OKAY").count()
}

/// How many pieces the package's `sparsecrclist.txt` lists for `partition`: the phone takes
/// exactly these, each once (a piece sent twice would be one too many).
fn listed_pieces(root: &Path, partition: &str) -> usize {
    let list = std::fs::read_to_string(root.join("images/sparsecrclist.txt")).unwrap();
    // `super 5 0x443b7c08 0x131161b6 ...`: the name, the count, one CRC per piece.
    let line = list.lines().find(|l| l.split_whitespace().next() == Some(partition)).expect("partition listed");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let n: usize = fields[1].parse().unwrap();
    assert_eq!(fields.len(), 2 + n, "{line}");
    assert!(n > 1, "sparsecrclist.txt lists {n} pieces of {partition}");
    n
}

#[test]
fn sample_tgz_over_tcp_with_split_super() {
    let sample = sample(Form::Tgz, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let sim = Sim::start(&s(&profile), &dir.path().join("store"), &[]);
    let root = extract_tgz(&sample.rom, &dir.path().join("extracted"));
    let r = flash_and_check(&["-s".into(), sim.target()], &sim.store, &sample.rom, &root, "clean", &moonstone_vars());
    assert!(r.stdout.contains("Done."), "{}", r.stdout);
    // A clean flash already erased everything: it does not suggest one.
    assert!(!r.stdout.contains("--mode clean"), "{}", r.stdout);
    assert_eq!(pieces_of(&sim.store, "super"), listed_pieces(&root, "super"), "{:?}", sim.logged_commands());
    assert!(r.stdout.contains("Sending sparse 'super' in"), "{}", r.stdout);
}

#[test]
fn sample_lock_mode_says_the_phone_restarts_by_itself() {
    // The sample's flash_all_lock.sh ends with `oem lock`, as Xiaomi's do: no `reboot`.
    let sample = sample(Form::Folder, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let store = dir.path().join("store");
    let target = ["-s".into(), format!("sim:{}", s(&profile)), "--sim-store".into(), s(&store)];
    let r = flash_and_check(&target, &store, &sample.rom, &sample.root, "lock", &moonstone_vars());
    assert!(r.stdout.contains("Done. After relocking, the phone restarts by itself"), "{}", r.stdout);
    assert!(r.stdout.contains("The bootloader is locked again"), "{}", r.stdout);
    assert!(!r.stdout.contains("mi-flash reboot"), "{}", r.stdout);
}

#[test]
fn default_sample_folder_in_process_on_builtin_moonstone() {
    let sample = sample(Form::Folder, 18, mi_flash::sparse::NEW_SPARSE_CRC_SPLIT);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let target = ["-s".into(), "sim:moonstone".into(), "--sim-store".into(), s(&store)];
    flash_and_check(&target, &store, &sample.rom, &sample.root, "clean", &moonstone_vars());
}

#[test]
fn sample_zip_in_process_keep_data() {
    let sample = sample(Form::Zip, 4, MIB);
    let dir = tempfile::tempdir().unwrap();
    let profile = moonstone_profile(dir.path(), MIB, &[]);
    let store = dir.path().join("store");
    let target = ["-s".into(), format!("sim:{}", s(&profile)), "--sim-store".into(), s(&store)];
    let r = flash_and_check(&target, &store, &sample.rom, &sample.root, "keep-data", &moonstone_vars());
    // What to do next fits the mode: after keeping the data, a clean flash is the next step.
    assert!(r.stdout.contains("Done. The phone reboots") && r.stdout.contains("--mode clean (that erases the phone's data)"), "{}", r.stdout);
    // flash_all_except_storage leaves user data alone.
    assert!(!store.join("partitions/userdata.img").exists());
    assert_eq!(pieces_of(&store, "super"), listed_pieces(&sample.root, "super"));
}

#[test]
fn piano_ab_script_as_tgz_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pkg) = fixture_package(&PIANO, &dir.path().join("pkg")) else { return };
    let tgz = dir.path().join("piano_images_V14.0.1.0.TEST_20240101.0000.00_14.0_cn.tgz");
    tgz_folder(&pkg.root, &tgz);
    let sim = Sim::start(&s(&pkg.profile), &dir.path().join("store"), &[]);
    flash_and_check(&["-s".into(), sim.target()], &sim.store, &tgz, &pkg.root, "clean", &pkg.vars);
    let cmds = sim.logged_commands();
    assert!(cmds.iter().any(|c| c == "flash:boot_ab") && cmds.iter().any(|c| c == "set_active:a"), "{cmds:?}");
    assert!(pieces_of(&sim.store, "super") >= 3, "super was not split: {cmds:?}");
    assert!(pieces_of(&sim.store, "modem_ab") >= 2, "the large raw image was not split: {cmds:?}");
}

#[test]
fn oxygen_non_ab_script_folder_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pkg) = fixture_package(&OXYGEN, &dir.path().join("pkg")) else { return };
    let store = dir.path().join("store");
    let target = ["-s".into(), format!("sim:{}", s(&pkg.profile)), "--sim-store".into(), s(&store)];
    flash_and_check(&target, &store, &pkg.root, &pkg.root, "clean", &pkg.vars);
    assert!(pieces_of(&store, "system") >= 3);
    // sbl1 and its backup come from one image.
    assert_eq!(std::fs::read(store.join("partitions/sbl1.img")).unwrap(), std::fs::read(store.join("partitions/sbl1bak.img")).unwrap());
}

#[test]
fn cereus_mediatek_lock_script_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pkg) = fixture_package(&CEREUS, &dir.path().join("pkg")) else { return };
    let sim = Sim::start(&s(&pkg.profile), &dir.path().join("store"), &[]);
    let r = flash_and_check(&["-s".into(), sim.target()], &sim.store, &pkg.root, &pkg.root, "lock", &pkg.vars);
    assert!(r.stdout.contains("relock the bootloader"), "{}", r.stdout);
    let cmds = sim.logged_commands();
    let lock = cmds.iter().position(|c| c == "oem lock").expect("oem lock was sent");
    assert!(cmds[lock + 1..].iter().all(|c| !c.starts_with("flash:") && !c.starts_with("download:")), "writes after the relock: {cmds:?}");
    assert!(pieces_of(&sim.store, "system") >= 3);
    // The phone is locked now (the simulator serves the next connection in its new state).
    let r = run(&["-s", &sim.target(), "getvar", "unlocked"]);
    r.expect_code(0);
    assert_eq!(r.stdout.trim(), "unlocked: no", "{}", r.all());
}

#[test]
fn crc_lists_name_partitions_of_dirname_style_scripts() {
    // Most .sh scripts write `dirname $0`/images/FILE; crclist.txt names the partition (xbl),
    // not the file (xbl_s.melf): verification must find the image through the script.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("moonstone_images_V1.0.0.0.TEST_14.0");
    std::fs::create_dir_all(root.join("images")).unwrap();
    let image = common::random_bytes(8192 + 5, 7);
    std::fs::write(root.join("images/xbl_s.melf"), &image).unwrap();
    let mut list = mi_flash::sparse::CrcList::default();
    list.push("xbl", crc32fast::hash(&image));
    std::fs::write(root.join("images/crclist.txt"), list.to_string()).unwrap();
    std::fs::write(
        root.join("flash_all.sh"),
        "fastboot $* getvar product 2>&1 | grep \"^product: *moonstone\"\n\
         if [ $? -ne 0  ] ; then echo \"Missmatching image and device\"; exit 1; fi\n\
         fastboot $* flash crclist `dirname $0`/images/crclist.txt\n\
         if [ $? -ne 0 ] ; then echo \"Flash crclist error\"; exit 1; fi\n\
         fastboot $* flash xbl_ab `dirname $0`/images/xbl_s.melf\n\
         if [ $? -ne 0 ] ; then echo \"Flash xbl error\"; exit 1; fi\n\
         fastboot $* reboot\n",
    )
    .unwrap();
    let r = run(&["verify", "--rom", &s(&root)]);
    r.expect_code(0);
    assert!(r.stdout.contains("xbl: CRC-32"), "{}", r.stdout);
}

/// Builds a package around `family`'s script and flashes it on an in-process simulator.
fn real_script_in_process(family: Family, mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(pkg) = fixture_package(&family, &dir.path().join("pkg")) else { return };
    let store = dir.path().join("store");
    let target = ["-s".into(), format!("sim:{}", s(&pkg.profile)), "--sim-store".into(), s(&store)];
    flash_and_check(&target, &store, &pkg.root, &pkg.root, mode, &pkg.vars);
}

#[test]
fn liuqin_recent_ab_tablet_script() {
    real_script_in_process(Family { fixture: "liuqin__flash_all__G0246.sh", script: "flash_all.sh", codename: "liuqin", ab: true, crc: true, anti: Some(1), partition_table: true, max_download_size: MIB }, "clean");
}

#[test]
fn raphaelin_non_ab_script_with_its_own_anti_check() {
    real_script_in_process(Family { fixture: "raphaelin__flash_all__naxl.sh", script: "flash_all.sh", codename: "raphaelin", ab: false, crc: true, anti: Some(1), partition_table: true, max_download_size: MIB }, "clean");
}

#[test]
fn land_2016_script_that_flashes_its_partition_table() {
    real_script_in_process(Family { fixture: "land__flash_all__puresoul.sh", script: "flash_all.sh", codename: "land", ab: false, crc: false, anti: None, partition_table: false, max_download_size: MIB }, "clean");
}

#[test]
fn ysl_keep_data_script() {
    real_script_in_process(Family { fixture: "ysl__flash_all_except_data__luthfina16.sh", script: "flash_all_except_data.sh", codename: "ysl", ab: false, crc: false, anti: None, partition_table: false, max_download_size: MIB }, "keep-data");
}
