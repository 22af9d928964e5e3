//! Every real Xiaomi flash script in the shared fixtures parses, and its plan lists every
//! `flash` / `erase` of the script in order with the right partition and image — checked
//! against an independent, deliberately simple line-by-line extraction.

use std::path::{Path, PathBuf};

use mi_flash::rom::plan::{Action, AntiSource, MemoryFiles, Plan};
use mi_flash::rom::script::parse_script;
use regex::Regex;

mod common;
use common::fixtures;

fn scripts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("sh") | Some("bat")))
        .collect();
    v.sort();
    v
}

/// A package as the fixtures' scripts expect it; `exaid` toggles lmi's optional image.
fn package(exaid: bool) -> MemoryFiles {
    let mut f = MemoryFiles::new()
        .with("images/anti_version.txt", b"1\n")
        .with("images/platform_security_patch.txt", b"2025-11-01\n")
        .with_folder("land_global_images_V8.5.4.0.MALMIED_20170913.0000.00_6.0_global");
    if exaid {
        f = f.with("images/exaid.img", b"x");
    }
    f
}

/// The script's real name (fixtures are stored as `<codename>__<variant>__<owner>.<ext>`).
fn script_name(path: &Path) -> String {
    let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let variant = file.split("__").nth(1).unwrap_or("flash_all");
    format!("{variant}.{ext}")
}

fn normalise_roots(line: &str) -> String {
    ["`dirname $0`", "$(dirname $0)", "${SCRIPT_PATH}", "%~dp0"].iter().fold(line.to_string(), |acc, p| acc.replace(p, ""))
}

fn normalise_image(raw: &str) -> String {
    normalise_roots(raw.trim_matches('"')).replace('\\', "/").trim_start_matches('/').to_string()
}

/// Independent extraction: `(op, partition, image)` of every fastboot flash/erase on a
/// non-comment line, resolving `if exist X ( ... ) else ( ... )` blocks by `exists`.
fn expected(text: &str, exists: &dyn Fn(&str) -> bool) -> Vec<(String, String, String)> {
    let cmd = Regex::new(r"^@?fastboot\s+(?:[$%]\*\s+)*(flash|erase)\s+(\S+)(?:\s+(\S+))?").unwrap();
    let if_exist = Regex::new(r#"^\s*if exist "?([^"\s]+)"?\s+\(\s*$"#).unwrap();
    let mut out = Vec::new();
    // None: outside a block; Some(take) while inside one branch.
    let mut block: Option<(bool, bool)> = None; // (condition, in_else)
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.starts_with("::") {
            continue;
        }
        if let Some(c) = if_exist.captures(t) {
            block = Some((exists(&normalise_image(&c[1])), false));
            continue;
        }
        if let Some((cond, _)) = block {
            if t == ") else (" {
                block = Some((cond, true));
                continue;
            }
            if t == ")" {
                block = None;
                continue;
            }
        }
        if let Some((cond, in_else)) = block {
            if cond == in_else {
                continue;
            }
        }
        let t = normalise_roots(t);
        if let Some(c) = cmd.captures(&t) {
            let image = if &c[1] == "flash" { normalise_image(c.get(3).map_or("", |m| m.as_str())) } else { String::new() };
            out.push((c[1].to_string(), c[2].to_string(), image));
        }
    }
    out
}

fn actual(plan: &Plan) -> Vec<(String, String, String)> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Flash(f) => Some(("flash".to_string(), f.partition.clone(), f.image.clone())),
            Action::Erase { partition } => Some(("erase".to_string(), partition.clone(), String::new())),
            _ => None,
        })
        .collect()
}

#[test]
fn every_fixture_plans_every_flash_and_erase_in_order() {
    let Some(dir) = fixtures() else { return };
    let all = scripts(&dir);
    assert_eq!(all.len(), 31, "expected the 31 fixture scripts");
    for path in &all {
        let bytes = std::fs::read(path).expect("read fixture");
        let text = String::from_utf8_lossy(&bytes).to_string();
        for exaid in [true, false] {
            let files = package(exaid);
            let plan = parse_script(&script_name(path), &bytes, &files).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want = expected(&text, &|p| mi_flash::rom::plan::PackageFiles::exists(&files, p));
            assert_eq!(actual(&plan), want, "{} (exaid {exaid})\n{plan}", path.display());
            assert!(plan.steps.iter().all(|s| s.source.line > 0 || matches!(s.action, Action::CheckAnti(_))));
            for img in plan.images() {
                assert!(img.starts_with("images/"), "{}: {img}", path.display());
            }
        }
    }
}

#[test]
fn every_fixture_also_parses_with_crlf_and_without_final_newline() {
    let Some(dir) = fixtures() else { return };
    for path in scripts(&dir) {
        let bytes = std::fs::read(&path).expect("read fixture");
        let files = package(true);
        let lf = parse_script(&script_name(&path), &bytes, &files).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&bytes).to_string();
        let crlf = text.replace('\n', "\r\n");
        let p2 = parse_script(&script_name(&path), crlf.as_bytes(), &files).unwrap_or_else(|e| panic!("{} (CRLF): {e}", path.display()));
        assert_eq!(lf.steps.iter().map(|s| &s.action).collect::<Vec<_>>(), p2.steps.iter().map(|s| &s.action).collect::<Vec<_>>());
        let trimmed = text.trim_end_matches('\n');
        let p3 = parse_script(&script_name(&path), trimmed.as_bytes(), &files).unwrap_or_else(|e| panic!("{} (no final newline): {e}", path.display()));
        assert_eq!(lf.steps.len(), p3.steps.len());
    }
}

fn plan_of(dir: &Path, fixture: &str, files: &MemoryFiles) -> Plan {
    let path = dir.join(fixture);
    let bytes = std::fs::read(&path).expect("read fixture");
    parse_script(&script_name(&path), &bytes, files).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn checks_match_the_scripts() {
    let Some(dir) = fixtures() else { return };
    let files = package(true);
    // Every script but the 2015 one checks the product; the check is the first step.
    for path in scripts(&dir) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let plan = plan_of(&dir, &name, &files);
        let codename = name.split("__").next().unwrap_or_default();
        match plan.product_check() {
            None => assert_eq!(codename, "wt88047", "{name} has no product check"),
            Some(c) => {
                let want = if codename == "land" && name.ends_with(".bat") { "land" } else { codename };
                assert_eq!(c.expected(), want, "{name}");
                assert!(c.matches(want), "{name}");
                assert!(!c.matches("someotherphone"), "{name}");
            }
        }
        // Steps that write never come before the product check.
        if let Some(pos) = plan.steps.iter().position(|s| matches!(s.action, Action::CheckProduct(_))) {
            assert!(plan.steps[..pos].iter().all(|s| !s.action.changes_device()), "{name}");
        }
        assert_eq!(plan.locks(), name.contains("_lock"), "{name}");
    }
}

#[test]
fn anti_rollback_both_generations() {
    let Some(dir) = fixtures() else { return };
    let files = package(true);
    for (fixture, max, from_file) in [
        ("raphaelin__flash_all__naxl.sh", 1, false),
        ("raphaelin__flash_all__naxl.bat", 1, false),
        ("liuqin__flash_all__G0246.sh", 1, true),
        ("liuqin__flash_all__G0246.bat", 1, true),
        ("lmi__flash_all__i0Ek3.bat", 1, true),
        ("piano__flash_all__thiraphit7.sh", 1, true),
        ("zeus__flash_all_lock__windy003.bat", 1, true),
    ] {
        let plan = plan_of(&dir, fixture, &files);
        let checks: Vec<_> = plan.steps.iter().filter_map(|s| if let Action::CheckAnti(a) = &s.action { Some((a, s)) } else { None }).collect();
        assert_eq!(checks.len(), 1, "{fixture}\n{plan}");
        let (c, step) = checks[0];
        assert_eq!(c.max, max, "{fixture}");
        assert_eq!(c.var, "anti");
        assert_eq!(matches!(c.from, AntiSource::File(_)), from_file, "{fixture}: {:?}", c.from);
        assert!(step.source.line > 0);
        assert!(c.allows(None) && c.allows(Some(1)) && !c.allows(Some(2)));
    }
    // anti_version.txt says 3: the plan follows the package.
    let files3 = MemoryFiles::new().with("images/anti_version.txt", b"3");
    let plan = plan_of(&dir, "piano__flash_all__thiraphit7.bat", &files3);
    let max = plan.steps.iter().find_map(|s| if let Action::CheckAnti(a) = &s.action { Some(a.max) } else { None });
    assert_eq!(max, Some(3));
    // Without the file, the scripts fall back to 0 — and say so.
    let none = MemoryFiles::new();
    let plan = plan_of(&dir, "piano__flash_all__thiraphit7.sh", &none);
    let c = plan.steps.iter().find_map(|s| if let Action::CheckAnti(a) = &s.action { Some(a.clone()) } else { None }).expect("anti check");
    assert_eq!(c.max, 0);
    assert!(matches!(c.from, AntiSource::Missing(_)));
    assert!(!plan.warnings.is_empty());
}

#[test]
fn crc_gate_becomes_a_condition() {
    let Some(dir) = fixtures() else { return };
    let files = package(true);
    for fixture in ["liuqin__flash_all__G0246.sh", "liuqin__flash_all__G0246.bat", "piano__flash_all_except_storage__thiraphit7.bat", "zeus__flash_all_lock__windy003.bat"] {
        let plan = plan_of(&dir, fixture, &files);
        let gated: Vec<_> = plan.steps.iter().filter(|s| s.when.is_some()).collect();
        let parts: Vec<_> = gated.iter().map(|s| match &s.action {
            Action::Flash(f) => f.partition.as_str(),
            _ => "?",
        }).collect();
        assert_eq!(parts, vec!["crclist", "sparsecrclist"], "{fixture}\n{plan}");
        let w = gated[0].when.as_ref().expect("when");
        assert_eq!(w.var(), "crc");
        assert!(w.holds(Some("1")));
        assert!(!w.holds(Some("0")));
        assert!(!w.holds(None));
    }
    // Older scripts flash the lists unconditionally.
    let plan = plan_of(&dir, "oxygen__flash_all__hardikjain54.sh", &files);
    assert!(plan.steps.iter().all(|s| s.when.is_none()));
}

#[test]
fn other_gates() {
    let Some(dir) = fixtures() else { return };
    let files = package(true);
    let plan = plan_of(&dir, "zeus__flash_all_lock__windy003.bat", &files);
    let hw = plan.steps.iter().find_map(|s| if let Action::CheckNumber(n) = &s.action { Some(n.clone()) } else { None }).expect("hw-revision check");
    assert_eq!(hw.var, "hw-revision");
    assert!(!hw.allows(Some("10000")) && hw.allows(Some("10001")) && !hw.allows(None));
    let plan = plan_of(&dir, "oxygen__flash_all_lock_crc__hardikjain54.bat", &files);
    let sec = plan.steps.iter().find_map(|s| if let Action::CheckVar(v) = &s.action { Some(v.clone()) } else { None }).expect("secure check");
    assert_eq!(sec.var(), "secure");
    assert!(sec.allows(Some("yes")) && !sec.allows(Some("no")));
    for fixture in ["piano__flash_all_except_storage__thiraphit7.sh", "piano__flash_all_except_storage__thiraphit7.bat"] {
        let plan = plan_of(&dir, fixture, &files);
        let spl = plan.steps.iter().find_map(|s| if let Action::CheckSecurityPatch(c) = &s.action { Some(c.clone()) } else { None }).unwrap_or_else(|| panic!("{fixture}: no SPL check\n{plan}"));
        assert_eq!(spl.max, "2025-11-01");
        assert!(spl.allows(Some("2025-10-01")) && !spl.allows(Some("2025-12-05")));
    }
    // Without images/platform_security_patch.txt the .sh test errors in the shell and never
    // refuses (a warning says so); the .bat cannot even be read as intended.
    let no_spl = MemoryFiles::new().with("images/anti_version.txt", b"1");
    let plan = plan_of(&dir, "piano__flash_all_except_storage__thiraphit7.sh", &no_spl);
    assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::CheckSecurityPatch(_))));
    assert!(plan.warnings.iter().any(|w| w.message.contains("empty value")), "{plan}");
    let bytes = std::fs::read(dir.join("piano__flash_all_except_storage__thiraphit7.bat")).expect("read");
    let err = parse_script("flash_all_except_storage.bat", &bytes, &no_spl).unwrap_err();
    assert_eq!(err.kind, mi_flash::rom::script::ScriptErrorKind::Package, "{err}");
    assert!(err.to_string().contains("platform_security_patch.txt"), "{err}");
}

#[test]
fn land_bat_reads_the_folder_name() {
    let Some(dir) = fixtures() else { return };
    let china = MemoryFiles::new().with_folder("land_images_V8.5.1.0.MALCNED_20170712.0000.00_6.0_china");
    let plan = plan_of(&dir, "land__flash_all__puresoul.bat", &china);
    let c = plan.product_check().expect("product check");
    assert_eq!(c.expected(), "landx");
    assert!(c.matches("landx") && !c.matches("land"));
    let global = package(false);
    let c = plan_of(&dir, "land__flash_all__puresoul.bat", &global).product_check().cloned().expect("product check");
    assert!(c.matches("land") && !c.matches("landx"), "/x makes it a whole-line match");
    // The .sh is a prefix match on `land`.
    let c = plan_of(&dir, "land__flash_all__puresoul.sh", &global).product_check().cloned().expect("product check");
    assert!(c.matches("land") && c.matches("landx"));
    // Unknown folder: the .bat cannot be planned, and says why.
    let unknown = MemoryFiles::new();
    let path = dir.join("land__flash_all__puresoul.bat");
    let err = parse_script("flash_all.bat", &std::fs::read(path).expect("read"), &unknown).unwrap_err();
    assert!(err.reason.contains("folder name"), "{err}");
}

#[test]
fn commented_out_lines_are_recorded() {
    let Some(dir) = fixtures() else { return };
    let plan = plan_of(&dir, "lmi__flash_all__i0Ek3.bat", &package(true));
    assert!(plan.disabled.iter().any(|d| d.text.contains("xblbak")), "{plan}");
    assert!(plan.disabled.iter().all(|d| d.line > 0));
}
