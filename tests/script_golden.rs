//! Golden plans: the JSON and the dry-run text of one script per family, compared with the
//! committed files under tests/golden/. Regenerate with `UPDATE_GOLDEN=1 cargo test --test
//! script_golden` and review the diff.
//!
//! The scripts are third-party files, so the golden files keep line numbers but not the
//! scripts' line texts.

use std::path::Path;

use mi_flash::rom::plan::{MemoryFiles, Plan};
use mi_flash::rom::script::parse_script;

mod common;
use common::fixtures;

/// (fixture, golden name, the package is a newer one with anti_version.txt etc.)
const GOLDEN: &[(&str, &str, bool)] = &[
    // old Qualcomm, eMMC, no A/B
    ("oxygen__flash_all__hardikjain54.sh", "oxygen_flash_all_sh", false),
    // Qualcomm A/B, HyperOS
    ("piano__flash_all__thiraphit7.sh", "piano_flash_all_sh", true),
    // MediaTek
    ("cereus__flash_all_lock__sortmirror.sh", "cereus_flash_all_lock_sh", false),
    // .bat with the crc gate and anti_version.txt
    ("liuqin__flash_all__G0246.bat", "liuqin_flash_all_bat", true),
    // .bat with `if exist` blocks (this package has no exaid.img: erase it)
    ("lmi__flash_all__i0Ek3.bat", "lmi_flash_all_bat", true),
    // security patch level check (.bat, powershell date)
    ("piano__flash_all_except_storage__thiraphit7.bat", "piano_flash_all_except_storage_bat", true),
    // hw-revision gate, set_active then oem lock
    ("zeus__flash_all_lock__windy003.bat", "zeus_flash_all_lock_bat", true),
];

fn package(newer: bool) -> MemoryFiles {
    if !newer {
        return MemoryFiles::new().with_folder("oxygen_global_images_V11.0.2.0.NDDMIXM_20191023.0000.00_7.1_global");
    }
    MemoryFiles::new()
        .with("images/anti_version.txt", b"1\n")
        .with("images/platform_security_patch.txt", b"2025-11-01\n")
        .with_folder("piano_images_OS3.0.9.0.WPYCNXM_16.0")
}

fn strip_texts(mut plan: Plan) -> Plan {
    for s in &mut plan.steps {
        if s.source.line > 0 {
            s.source.text.clear();
        }
    }
    for w in &mut plan.warnings {
        if let Some(s) = &mut w.source {
            s.text.clear();
        }
    }
    for d in &mut plan.disabled {
        d.text.clear();
    }
    plan
}

fn script_name(fixture: &str) -> String {
    let ext = fixture.rsplit('.').next().unwrap_or("sh");
    format!("{}.{ext}", fixture.split("__").nth(1).unwrap_or("flash_all"))
}

fn check(path: &Path, actual: &str, update: bool) {
    // Rewriting the expectations would make the test pass whatever the code does: not in CI.
    assert!(!(update && std::env::var("CI").as_deref() == Ok("true")), "UPDATE_GOLDEN=1 is refused under CI=true");
    if update {
        std::fs::write(path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| panic!("missing golden file {}; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{} differs; if the change is intended, run with UPDATE_GOLDEN=1 and review the diff", path.display());
}

#[test]
fn golden_plans() {
    let Some(dir) = fixtures() else { return };
    let golden = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
    let update = std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1");
    for (fixture, name, newer) in GOLDEN {
        let bytes = std::fs::read(dir.join(fixture)).expect("read fixture");
        let plan = parse_script(&script_name(fixture), &bytes, &package(*newer)).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let plan = strip_texts(plan);
        let json = serde_json::to_string_pretty(&plan).expect("json") + "\n";
        check(&golden.join(format!("{name}.json")), &json, update);
        check(&golden.join(format!("{name}.txt")), &plan.to_string(), update);
        // The JSON is a contract: it reads back to the same plan.
        let back: Plan = serde_json::from_str(&json).expect("golden JSON reads back");
        assert_eq!(back, plan);
    }
}
