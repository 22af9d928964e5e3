//! `mi-flash rescue`: the printed decision tree covers every branch in both languages, the
//! interactive guide follows scripted answers down several paths (through the library, with a
//! detected phone, and through the binary's stdin), and both languages carry the same set of
//! messages.

mod common;
use common::mi_flash;
use mi_flash::rescue::guide::{self, base_plan, Detection, Outcome, Remedy, Screen, Situation, Warning};
use mi_flash::rescue::text::{placeholders, Catalogue, Lang};
use mi_flash::rescue::PhoneMode;
use std::io::Write;
use std::process::Stdio;

fn tree(lang: &str) -> String {
    let out = mi_flash().args(["rescue", "--non-interactive", "--lang", lang]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the guide is UTF-8")
}

/// Every situation, screen, option, warning and mode, and the prevention tips, appear in the
/// printed tree, in that language's words.
fn assert_tree_covers_everything(lang: Lang, text: &str) {
    let t = Catalogue::load(lang).unwrap();
    // A key the catalogue lacks would print as `[key]` in the tree and in the expectation
    // alike: every key looked up here must exist.
    let t = Checked(t);
    let mut expected = vec![t.get("ui.title"), t.get("prevention.text"), t.get("ui.prevention_heading")];
    for s in Situation::ALL {
        expected.push(t.get(&format!("situation.{}.title", s.id())));
        expected.push(t.get(&format!("situation.{}.intro", s.id())));
    }
    for s in Screen::ALL {
        expected.push(t.get(&format!("screen.{}.title", s.id())));
        expected.push(t.get(&format!("screen.{}.means", s.id())).lines().next().unwrap_or_default().to_string());
    }
    for r in Remedy::ALL {
        expected.push(t.get(&format!("remedy.{}.title", r.id())));
        expected.push(t.get(&format!("remedy.{}.data", r.id())));
        for line in t.get(&format!("remedy.{}.steps", r.id())).lines() {
            expected.push(line.trim().to_string());
        }
    }
    for w in Warning::ALL {
        expected.push(t.get(&format!("warning.{}.text", w.id())));
    }
    for m in PhoneMode::ALL {
        for part in ["name", "can", "next"] {
            expected.push(t.get(&format!("mode.{}.{part}", m.id())));
        }
        assert_eq!(m.name(&t), t.get(&format!("mode.{}.name", m.id())));
    }
    for e in expected {
        assert!(text.contains(&e), "{lang:?} tree lacks: {e}");
    }
    // Each situation lists its own options in order.
    for s in Situation::ALL {
        let heading = t.fill("ui.tree_situation", &[("title", &t.get(&format!("situation.{}.title", s.id())))]);
        let start = text.find(&heading).unwrap_or_else(|| panic!("no section for {s:?}"));
        // The section ends where the next situation's begins.
        let end = Situation::ALL
            .iter()
            .filter_map(|o| text.find(&t.fill("ui.tree_situation", &[("title", &t.get(&format!("situation.{}.title", o.id())))])))
            .filter(|&p| p > start)
            .min()
            .unwrap_or(text.len());
        let section = &text[start..end];
        let mut at = 0;
        for (i, r) in base_plan(s).1.iter().enumerate() {
            let line = format!("{}. {}", i + 1, t.get(&format!("remedy.{}.title", r.id())));
            let pos = section[at..].find(&line).unwrap_or_else(|| panic!("{lang:?} {s:?}: option {line:?} missing from its section or out of order"));
            at += pos + line.len();
        }
    }
}

/// A catalogue whose lookups fail the test for a missing key instead of answering `[key]`.
struct Checked(Catalogue);

impl Checked {
    fn get(&self, key: &str) -> String {
        assert!(self.0.has(key), "the catalogue has no `{key}`");
        self.0.get(key)
    }

    fn fill(&self, key: &str, args: &[(&str, &str)]) -> String {
        assert!(self.0.has(key), "the catalogue has no `{key}`");
        self.0.fill(key, args)
    }
}

impl std::ops::Deref for Checked {
    type Target = Catalogue;
    fn deref(&self) -> &Catalogue {
        &self.0
    }
}

#[test]
fn non_interactive_english_covers_every_branch() {
    let text = tree("en");
    assert_tree_covers_everything(Lang::En, &text);
    // The honest core, in plain words.
    assert!(text.contains("does NOT remove the Mi Account lock"));
    assert!(text.contains("three working days"));
    assert!(text.contains("account.xiaomi.com") && text.contains("i.mi.com"));
    assert!(text.contains("`mi-flash recovery format-data`") && text.contains("`mi-flash flash`"));
}

#[test]
fn non_interactive_indonesian_covers_every_branch() {
    let text = tree("id");
    assert_tree_covers_everything(Lang::Id, &text);
    assert!(text.contains("TIDAK menghapus kunci Akun Mi"));
    assert!(text.contains("tiga hari kerja"));
    // No English option titles leak into the Indonesian guide.
    let en = Catalogue::load(Lang::En).unwrap();
    for r in Remedy::ALL {
        let title = en.get(&format!("remedy.{}.title", r.id()));
        assert!(!text.contains(&title), "English text in the Indonesian guide: {title}");
    }
}

#[test]
fn language_follows_the_locale_and_rejects_unknown_ones() {
    let locale = |lc_all: &str| {
        mi_flash()
            .args(["rescue", "--non-interactive"])
            .env_remove("LC_MESSAGES")
            .env_remove("LANGUAGE")
            .env("LC_ALL", lc_all)
            .env("LANG", "id_ID.UTF-8")
            .output()
            .unwrap()
    };
    let out = locale("");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Bila: "));
    // LC_ALL wins over LANG.
    let out = locale("C");
    assert!(String::from_utf8_lossy(&out.stdout).contains("If: "));
    let out = mi_flash().args(["rescue", "--lang", "fr"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("en (English) or id"));
}

#[test]
fn both_languages_have_the_same_messages() {
    let en = Catalogue::load(Lang::En).unwrap();
    let id = Catalogue::load(Lang::Id).unwrap();
    let en_keys: Vec<&str> = en.keys().collect();
    let id_keys: Vec<&str> = id.keys().collect();
    assert_eq!(en_keys, id_keys, "the catalogues must have the same keys");
    for k in en_keys {
        assert_eq!(placeholders(&en.get(k)), placeholders(&id.get(k)), "{k}");
        if !k.starts_with("mode.") && !k.starts_with("recovery.") && k != "ui.lang_note" {
            // Identical text in both files usually means a forgotten translation; the
            // exceptions are names and commands.
            let same = en.get(k) == id.get(k);
            let allowed = ["recovery.serial", "recovery.android", "devices.anti", "devices.slot"].contains(&k);
            assert!(!same || allowed, "`{k}` is not translated");
        }
    }
}

/// Runs the guide with scripted answers; returns the outcome and the text shown.
fn interactive(lang: Lang, detection: &Detection, answers: &str) -> (Outcome, String) {
    let t = Catalogue::load(lang).unwrap();
    let mut input = answers.as_bytes();
    let mut out = Vec::new();
    let outcome = guide::run_interactive(&t, detection, &mut input, &mut out).unwrap();
    (outcome, String::from_utf8(out).unwrap())
}

fn position(text: &str, needle: &str) -> usize {
    text.find(needle).unwrap_or_else(|| panic!("missing {needle:?} in:\n{text}"))
}

#[test]
fn path_forgot_mi_password_first_option_works() {
    // 2 = forgot Mi Account password, 2 = "This device is locked", then "it worked".
    let (outcome, text) = interactive(Lang::En, &Detection::default(), "2\n2\n1\n");
    assert_eq!(outcome, Outcome::Solved(Remedy::ForgotPassword));
    let t = Catalogue::load(Lang::En).unwrap();
    assert!(text.contains(&t.get("ui.detected_none")));
    let warn = position(&text, &t.get("warning.reset-keeps-mi-lock.text"));
    let first = position(&text, "Option 1 of 3: Reset the Mi Account password at account.xiaomi.com");
    assert!(warn < first, "warnings come before the options");
    assert!(!text.contains("Option 2 of 3"));
    assert!(text.contains(&t.get("prevention.text")));
}

#[test]
fn path_boot_loop_walks_to_the_factory_reset() {
    // 4 = boot loop, 3 = logo again and again; next, next, then it worked.
    let (outcome, text) = interactive(Lang::En, &Detection::default(), "4\n3\n2\n2\n1\n");
    assert_eq!(outcome, Outcome::Solved(Remedy::RecoveryReset));
    let a = position(&text, "Option 1 of 4: Force a restart");
    let b = position(&text, "Option 2 of 4: Install the official fastboot ROM");
    let c = position(&text, "Option 3 of 4: Factory reset from Mi Recovery");
    assert!(a < b && b < c);
    assert!(!text.contains("Option 4 of 4"));
    assert!(text.contains("Never flash a ROM with a lower anti-rollback index"));
}

#[test]
fn path_stuck_in_edl_detected_on_usb_to_the_end() {
    let detection = Detection { phones: vec![(PhoneMode::Edl, "usb:1-2, 05c6:9008".into())], error: None, ..Default::default() };
    // 5 = stuck, 6 = black screen; next, then after the last option "stop".
    let (outcome, text) = interactive(Lang::Id, &detection, "5\n6\n2\n2\n");
    assert_eq!(outcome, Outcome::Exhausted);
    let t = Catalogue::load(Lang::Id).unwrap();
    assert!(text.contains("Ditemukan lewat USB: Qualcomm EDL"), "{text}");
    assert!(text.contains(&PhoneMode::Edl.can(&t)));
    // Only a restart and the service centre help in EDL: no flashing offered.
    assert!(text.contains("Pilihan 1 dari 2: Paksa mulai ulang dengan tombol"));
    assert!(text.contains("Pilihan 2 dari 2: Datang ke layanan pelanggan Xiaomi"));
    assert!(!text.contains(&t.get("remedy.flash-rom.title")));
    assert!(text.contains(&t.get("ui.no_more")));
}

#[test]
fn path_screen_overrides_the_answer_and_bad_input_is_asked_again() {
    // 1 = forgot lock screen, but the phone shows the Mi Account lock; "x" and "9" are not
    // choices; then stop at the first option.
    let (outcome, text) = interactive(Lang::En, &Detection::default(), "1\nx\n9\n2\n3\n");
    assert_eq!(outcome, Outcome::Stopped);
    let t = Catalogue::load(Lang::En).unwrap();
    assert_eq!(text.matches("Please type one of the numbers shown (1-7)").count(), 2);
    assert!(text.contains(&t.fill("ui.redirect", &[("title", &t.get("situation.mi-account-locked.title"))])));
    assert!(text.contains("Option 1 of 4: Reset the Mi Account password"));
    assert!(!text.contains(&t.get("remedy.recovery-reset.title")), "no reset is offered for a Mi Account lock");
}

#[test]
fn input_ending_early_stops_politely() {
    let (outcome, text) = interactive(Lang::En, &Detection { phones: vec![], error: Some("no USB here".into()), ..Default::default() }, "3\n");
    assert_eq!(outcome, Outcome::NoAnswer);
    assert!(text.contains("USB could not be checked on this computer (no USB here)"));
    assert!(text.contains("--non-interactive"));
}

#[test]
fn binary_guide_reads_answers_from_stdin() {
    let mut child = mi_flash()
        .args(["rescue", "--lang", "id", "--no-detect"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 6 = reinstall, 7 = Android works; next, then it worked (the fastboot ROM).
    child.stdin.take().unwrap().write_all(b"6\n7\n2\n1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Pilihan 1 dari 3: Pasang ulang lewat pembaruan sistem di HP"), "{text}");
    assert!(text.contains("Pilihan 2 dari 3: Pasang ROM fastboot resmi dengan `mi-flash flash`"), "{text}");
    assert!(!text.contains("Pilihan 3 dari 3"));
    assert!(text.contains("Agar tidak terulang lagi"));
    // --no-detect says it did not look, instead of claiming a search.
    assert!(text.contains("Tidak mencari HP lewat USB (--no-detect)."), "{text}");
    assert!(!text.contains("Mencari HP lewat USB"), "{text}");
}
