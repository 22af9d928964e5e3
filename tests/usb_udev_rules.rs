//! Checks udev/51-mi-flash.rules: it must grant access through `uaccess` only (never a
//! world-writable MODE), cover the fastboot interface of any vendor plus the Xiaomi IDs, and
//! keep its GOTO/LABEL structure intact. No udev needed: the file is read as text.

const RULES: &str = include_str!("../udev/51-mi-flash.rules");

/// Rule lines without comments, with backslash continuations joined.
fn rules() -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in RULES.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    out
}

#[test]
fn access_comes_from_uaccess_never_from_mode_or_owner() {
    for rule in rules() {
        assert!(!rule.contains("MODE"), "no MODE in the rules: {rule}");
        assert!(!rule.contains("OWNER"), "no OWNER in the rules: {rule}");
        // A GROUP makes the node 0660 for that group: every member could flash every phone.
        assert!(!rule.contains("GROUP"), "no GROUP in the rules: {rule}");
        assert!(!rule.contains("RUN"), "rules must not run programs: {rule}");
        if rule.contains("TAG") {
            assert!(rule.contains("TAG+=\"uaccess\""), "{rule}");
        }
    }
}

#[test]
fn fastboot_and_xiaomi_devices_are_covered() {
    let granting: Vec<String> = rules().into_iter().filter(|r| r.contains("TAG+=\"uaccess\"")).collect();
    let has = |parts: &[&str]| granting.iter().any(|r| parts.iter().all(|p| r.contains(p)));
    assert!(has(&["ENV{ID_USB_INTERFACES}==\"*:ff4203:*\""]), "fastboot interface of any vendor");
    assert!(has(&["ATTR{idVendor}==\"18d1\"", "ATTR{idProduct}==\"d00d\""]), "Xiaomi bootloader 18d1:d00d");
    assert!(has(&["ATTR{idVendor}==\"2717\"", "*:ff4201:*"]), "Xiaomi ADB / recovery");
    assert!(has(&["ATTR{idVendor}==\"18d1\"", "*:ff4201:*"]), "ADB / recovery on Google's vendor ID");
    // A rule that grants access to a whole vendor would also open its other devices.
    for rule in &granting {
        assert!(rule.contains("ff4203") || rule.contains("ff4201") || rule.contains("idProduct"), "too broad: {rule}");
    }
}

#[test]
fn only_usb_devices_are_touched_and_every_goto_has_its_label() {
    let rules = rules();
    let skip_non_usb = rules.iter().position(|r| r.contains("SUBSYSTEM!=\"usb\"") && r.contains("GOTO"));
    let first_grant = rules.iter().position(|r| r.contains("uaccess"));
    assert!(matches!((skip_non_usb, first_grant), (Some(s), Some(g)) if s < g), "non-USB devices must be skipped first");
    assert!(rules.iter().any(|r| r.contains("ENV{DEVTYPE}!=\"usb_device\"") && r.contains("GOTO")));
    let labels: Vec<&str> = rules.iter().filter_map(|r| r.strip_prefix("LABEL=\"")?.strip_suffix('"')).collect();
    assert_eq!(labels, ["mi_flash_end"]);
    for rule in &rules {
        if let Some(pos) = rule.find("GOTO=\"") {
            let target = rule[pos + 6..].split('"').next().unwrap_or_default();
            assert_eq!(target, "mi_flash_end", "{rule}");
        }
    }
    assert!(rules.last().is_some_and(|r| r.starts_with("LABEL=")), "the label must end the file");
}

#[test]
fn the_binary_prints_the_same_rules() {
    // `mi-flash udev-rules` is what doctor tells a user with only the binary to install.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mi-flash")).arg("udev-rules").output().unwrap();
    assert!(out.status.success());
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/udev/51-mi-flash.rules")).unwrap();
    assert_eq!(out.stdout, file);
}
