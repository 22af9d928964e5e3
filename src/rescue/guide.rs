//! The decision tree of `mi-flash rescue`: what happened, what the phone shows, which mode it
//! is in on USB, and from that the options, least destructive first, with the warnings that
//! apply. [`plan`] is the tree; [`run_interactive`] walks it with a user; [`print_tree`]
//! prints all of it (`--non-interactive`).
//!
//! Boundaries: no USB here (the caller passes in what it detected, as a [`Detection`]), no
//! sentences here (they come from the [`Catalogue`]), no terminal handling beyond reading
//! lines and writing text, so tests can drive every path with scripted answers.

use super::mode::PhoneMode;
use super::text::Catalogue;
use std::io::{BufRead, Write};

/// What happened to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Situation {
    ForgotLockScreen,
    ForgotMiPassword,
    MiAccountLocked,
    BootLoop,
    Stuck,
    Reinstall,
}

impl Situation {
    pub const ALL: [Situation; 6] = [
        Situation::ForgotLockScreen,
        Situation::ForgotMiPassword,
        Situation::MiAccountLocked,
        Situation::BootLoop,
        Situation::Stuck,
        Situation::Reinstall,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Situation::ForgotLockScreen => "forgot-lock",
            Situation::ForgotMiPassword => "forgot-mi-password",
            Situation::MiAccountLocked => "mi-account-locked",
            Situation::BootLoop => "boot-loop",
            Situation::Stuck => "stuck",
            Situation::Reinstall => "reinstall",
        }
    }

    fn title(self, t: &Catalogue) -> String {
        t.get(&format!("situation.{}.title", self.id()))
    }
}

/// What the phone's screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    LockScreen,
    DeviceLocked,
    LogoLoop,
    Fastboot,
    Recovery,
    Black,
    Works,
}

impl Screen {
    pub const ALL: [Screen; 7] =
        [Screen::LockScreen, Screen::DeviceLocked, Screen::LogoLoop, Screen::Fastboot, Screen::Recovery, Screen::Black, Screen::Works];

    pub fn id(self) -> &'static str {
        match self {
            Screen::LockScreen => "lock-screen",
            Screen::DeviceLocked => "device-locked",
            Screen::LogoLoop => "logo-loop",
            Screen::Fastboot => "fastboot",
            Screen::Recovery => "recovery",
            Screen::Black => "black",
            Screen::Works => "works",
        }
    }
}

/// One thing the user can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    ForgotPassword,
    LinkedAccount,
    UnlockRequest,
    CustomerService,
    FindDeviceErase,
    RecoveryReset,
    FlashRom,
    ForceRestart,
    LeaveFastboot,
    OfficialUpdate,
}

impl Remedy {
    pub const ALL: [Remedy; 10] = [
        Remedy::ForgotPassword,
        Remedy::LinkedAccount,
        Remedy::UnlockRequest,
        Remedy::CustomerService,
        Remedy::FindDeviceErase,
        Remedy::RecoveryReset,
        Remedy::FlashRom,
        Remedy::ForceRestart,
        Remedy::LeaveFastboot,
        Remedy::OfficialUpdate,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Remedy::ForgotPassword => "forgot-password",
            Remedy::LinkedAccount => "linked-account",
            Remedy::UnlockRequest => "unlock-request",
            Remedy::CustomerService => "customer-service",
            Remedy::FindDeviceErase => "find-device-erase",
            Remedy::RecoveryReset => "recovery-reset",
            Remedy::FlashRom => "flash-rom",
            Remedy::ForceRestart => "force-restart",
            Remedy::LeaveFastboot => "leave-fastboot",
            Remedy::OfficialUpdate => "official-update",
        }
    }

    /// What this option does to the phone's data; options are ordered by it.
    pub fn data_effect(self) -> DataEffect {
        match self {
            Remedy::FindDeviceErase | Remedy::RecoveryReset => DataEffect::Erased,
            // keep-data or clean; a repair may or may not need a reset.
            Remedy::FlashRom | Remedy::CustomerService => DataEffect::Depends,
            _ => DataEffect::Kept,
        }
    }

    pub fn erases_data(self) -> bool {
        self.data_effect() == DataEffect::Erased
    }
}

/// What an option does to the data on the phone, from least to most destructive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataEffect {
    Kept,
    Depends,
    Erased,
}

/// A warning shown before the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    Backup,
    ResetKeepsMiLock,
    BypassTools,
    AntiRollback,
    Relock,
    LockScreenData,
}

impl Warning {
    pub const ALL: [Warning; 6] =
        [Warning::Backup, Warning::ResetKeepsMiLock, Warning::BypassTools, Warning::AntiRollback, Warning::Relock, Warning::LockScreenData];

    pub fn id(self) -> &'static str {
        match self {
            Warning::Backup => "backup",
            Warning::ResetKeepsMiLock => "reset-keeps-mi-lock",
            Warning::BypassTools => "bypass-tools",
            Warning::AntiRollback => "anti-rollback",
            Warning::Relock => "relock",
            Warning::LockScreenData => "lock-screen-data",
        }
    }
}

/// What the guide will show for one set of answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The situation the options are for (may differ from the answer: see `redirected_from`).
    pub situation: Situation,
    /// Set when what the phone shows overrides what the user said (a Mi Account lock on the
    /// screen comes first whatever happened before).
    pub redirected_from: Option<Situation>,
    pub warnings: Vec<Warning>,
    pub remedies: Vec<Remedy>,
}

/// The options of a situation before screen and mode are known, least destructive first.
pub fn base_plan(situation: Situation) -> (Vec<Warning>, Vec<Remedy>) {
    use Remedy as R;
    use Warning as W;
    match situation {
        Situation::ForgotLockScreen => (
            vec![W::LockScreenData, W::ResetKeepsMiLock, W::BypassTools],
            vec![R::ForgotPassword, R::FindDeviceErase, R::RecoveryReset, R::CustomerService],
        ),
        Situation::ForgotMiPassword => {
            (vec![W::ResetKeepsMiLock, W::BypassTools], vec![R::ForgotPassword, R::LinkedAccount, R::CustomerService])
        }
        Situation::MiAccountLocked => (
            vec![W::ResetKeepsMiLock, W::BypassTools],
            vec![R::ForgotPassword, R::LinkedAccount, R::UnlockRequest, R::CustomerService],
        ),
        Situation::BootLoop => (
            vec![W::Backup, W::ResetKeepsMiLock, W::AntiRollback, W::Relock],
            vec![R::ForceRestart, R::FlashRom, R::RecoveryReset, R::CustomerService],
        ),
        Situation::Stuck => {
            (vec![W::AntiRollback, W::Relock], vec![R::LeaveFastboot, R::ForceRestart, R::FlashRom, R::CustomerService])
        }
        Situation::Reinstall => (
            vec![W::Backup, W::ResetKeepsMiLock, W::AntiRollback, W::Relock],
            vec![R::OfficialUpdate, R::FlashRom, R::CustomerService],
        ),
    }
}

/// The options for what the user said, what the phone shows and the mode it was detected in.
pub fn plan(situation: Situation, screen: Option<Screen>, mode: Option<PhoneMode>) -> Plan {
    let mut effective = situation;
    let mut redirected_from = None;
    let mi_lock_situations = [Situation::ForgotMiPassword, Situation::MiAccountLocked];
    if screen == Some(Screen::DeviceLocked) && !mi_lock_situations.contains(&situation) {
        effective = Situation::MiAccountLocked;
        redirected_from = Some(situation);
    }
    let (warnings, mut remedies) = base_plan(effective);
    let download_mode = matches!(mode, Some(PhoneMode::Edl | PhoneMode::MtkPreloader | PhoneMode::MtkBrom));
    let in_fastboot = matches!(mode, Some(PhoneMode::Bootloader | PhoneMode::Fastbootd)) || screen == Some(Screen::Fastboot);
    if effective == Situation::Stuck && download_mode {
        // Nothing but a restart or Xiaomi's authorised tools helps in EDL / MediaTek modes.
        remedies = vec![Remedy::ForceRestart, Remedy::CustomerService];
    } else if in_fastboot && matches!(effective, Situation::BootLoop | Situation::Reinstall) {
        remedies.retain(|r| *r != Remedy::LeaveFastboot);
        remedies.insert(0, Remedy::LeaveFastboot);
    }
    Plan { situation: effective, redirected_from, warnings, remedies }
}

/// What the caller found on USB before the guide starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detection {
    /// Each phone's mode and a short description (`usb:3c1a7f2e, 2717:ff48`).
    pub phones: Vec<(PhoneMode, String)>,
    /// Why USB could not be checked, if it could not.
    pub error: Option<String>,
    /// USB was not looked at (`--no-detect`).
    pub skipped: bool,
}

/// How an interactive session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The user said this option solved it.
    Solved(Remedy),
    /// The user stopped before the last option.
    Stopped,
    /// Every option was shown.
    Exhausted,
    /// The input ended before the guide did.
    NoAnswer,
}

/// Text output with the catalogue at hand.
struct Page<'a> {
    t: &'a Catalogue,
    out: &'a mut dyn Write,
}

impl Page<'_> {
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        writeln!(self.out, "{text}")
    }

    fn blank(&mut self) -> std::io::Result<()> {
        writeln!(self.out)
    }

    fn indented(&mut self, prefix: &str, text: &str) -> std::io::Result<()> {
        for l in text.lines() {
            if l.is_empty() {
                writeln!(self.out)?;
            } else {
                writeln!(self.out, "{prefix}{l}")?;
            }
        }
        Ok(())
    }

    fn heading(&mut self, text: &str) -> std::io::Result<()> {
        self.blank()?;
        self.line(text)?;
        self.line(&"=".repeat(text.chars().count().min(78)))
    }

    fn remedy(&mut self, r: Remedy, heading: &str) -> std::io::Result<()> {
        let t = self.t;
        self.line(heading)?;
        self.line(&format!("   {}: {}", t.get("ui.data_label"), t.get(&format!("remedy.{}.data", r.id()))))?;
        self.indented("   ", &t.get(&format!("remedy.{}.steps", r.id())))
    }

    fn warnings(&mut self, warnings: &[Warning]) -> std::io::Result<()> {
        for w in warnings {
            let text = self.t.get(&format!("warning.{}.text", w.id()));
            self.indented("  ! ", &text)?;
        }
        Ok(())
    }

    fn prevention(&mut self) -> std::io::Result<()> {
        let t = self.t;
        self.heading(&t.get("ui.prevention_heading"))?;
        self.indented("", &t.get("prevention.text"))
    }

    /// Asks a numbered question; `None` when the input ends.
    fn ask(&mut self, input: &mut dyn BufRead, question: &str, choices: &[String]) -> std::io::Result<Option<usize>> {
        self.blank()?;
        self.line(question)?;
        for (i, c) in choices.iter().enumerate() {
            self.line(&format!("  {}. {c}", i + 1))?;
        }
        loop {
            write!(self.out, "{} ", self.t.get("ui.choose"))?;
            self.out.flush()?;
            let mut answer = String::new();
            if input.read_line(&mut answer)? == 0 {
                self.blank()?;
                self.line(&self.t.get("ui.eof"))?;
                return Ok(None);
            }
            match answer.trim().parse::<usize>() {
                Ok(n) if (1..=choices.len()).contains(&n) => return Ok(Some(n - 1)),
                _ => {
                    let range = format!("1-{}", choices.len());
                    self.line(&self.t.fill("ui.invalid", &[("range", &range)]))?;
                }
            }
        }
    }
}

/// Walks the user through the tree: asks what happened and what the phone shows, then shows
/// the options one at a time until one works, the user stops, or none are left.
pub fn run_interactive(
    t: &Catalogue,
    detection: &Detection,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<Outcome> {
    let mut p = Page { t, out };
    p.line(&t.get("ui.title"))?;
    p.blank()?;
    p.line(&t.get("ui.intro"))?;
    p.line(&t.get("ui.lang_note"))?;
    p.blank()?;
    show_detection(&mut p, detection)?;

    let situations: Vec<String> = Situation::ALL.iter().map(|s| s.title(t)).collect();
    let Some(s) = p.ask(input, &t.get("question.situation"), &situations)? else { return Ok(Outcome::NoAnswer) };
    let situation = Situation::ALL[s];
    let screens: Vec<String> = Screen::ALL.iter().map(|s| t.get(&format!("screen.{}.title", s.id()))).collect();
    let Some(sc) = p.ask(input, &t.get("question.screen"), &screens)? else { return Ok(Outcome::NoAnswer) };
    let screen = Screen::ALL[sc];
    p.blank()?;
    p.line(&t.get(&format!("screen.{}.means", screen.id())))?;

    // The first phone found decides; with several, the user sees them all listed above.
    let mode = detection.phones.first().map(|(m, _)| *m);
    let plan = plan(situation, Some(screen), mode);
    if plan.redirected_from.is_some() {
        p.blank()?;
        p.line(&t.fill("ui.redirect", &[("title", &plan.situation.title(t))]))?;
    }
    p.heading(&plan.situation.title(t))?;
    p.line(&t.get(&format!("situation.{}.intro", plan.situation.id())))?;
    if !plan.warnings.is_empty() {
        p.heading(&t.get("ui.warnings_heading"))?;
        p.warnings(&plan.warnings)?;
    }
    let total = plan.remedies.len().to_string();
    let after = [t.get("ui.after_worked"), t.get("ui.after_next"), t.get("ui.after_stop")];
    for (i, r) in plan.remedies.iter().enumerate() {
        p.blank()?;
        let n = (i + 1).to_string();
        let title = t.get(&format!("remedy.{}.title", r.id()));
        let heading = t.fill("ui.option_heading", &[("n", &n), ("total", &total), ("title", &title)]);
        p.remedy(*r, &heading)?;
        if i + 1 == plan.remedies.len() {
            break;
        }
        match p.ask(input, &t.get("ui.after_question"), &after)? {
            None => return Ok(Outcome::NoAnswer),
            Some(0) => return finish(&mut p, Outcome::Solved(*r)),
            Some(1) => continue,
            Some(_) => return finish(&mut p, Outcome::Stopped),
        }
    }
    // After the last option: did it work?
    let last = [after[0].clone(), after[2].clone()];
    match p.ask(input, &t.get("ui.after_question"), &last)? {
        None => Ok(Outcome::NoAnswer),
        Some(0) => finish(&mut p, Outcome::Solved(plan.remedies.last().copied().unwrap_or(Remedy::CustomerService))),
        Some(_) => {
            p.blank()?;
            p.line(&t.get("ui.no_more"))?;
            finish(&mut p, Outcome::Exhausted)
        }
    }
}

fn show_detection(p: &mut Page, detection: &Detection) -> std::io::Result<()> {
    let t = p.t;
    if detection.skipped {
        return p.line(&t.get("ui.detect_skipped"));
    }
    p.line(&t.get("ui.detecting"))?;
    if let Some(reason) = &detection.error {
        p.line(&t.fill("ui.detect_failed", &[("reason", reason)]))?;
    } else if detection.phones.is_empty() {
        p.line(&t.get("ui.detected_none"))?;
    }
    for (mode, usb) in &detection.phones {
        p.line(&t.fill("ui.detected", &[("mode", &mode.name(t)), ("usb", usb)]))?;
        p.line(&format!("  {}: {}", t.get("ui.tree_mode_can"), mode.can(t)))?;
        p.line(&format!("  {}: {}", t.get("ui.tree_mode_next"), mode.next(t)))?;
    }
    Ok(())
}

fn finish(p: &mut Page, outcome: Outcome) -> std::io::Result<Outcome> {
    p.prevention()?;
    p.blank()?;
    p.line(&p.t.get("ui.bye"))?;
    Ok(outcome)
}

/// Prints the whole tree: every situation with its warnings and options, what each screen
/// means, every USB mode, and the prevention tips.
pub fn print_tree(t: &Catalogue, out: &mut dyn Write) -> std::io::Result<()> {
    let mut p = Page { t, out };
    p.line(&t.get("ui.title"))?;
    p.blank()?;
    p.line(&t.get("ui.intro"))?;
    p.line(&t.get("ui.lang_note"))?;
    p.heading(&t.get("ui.tree_heading"))?;
    for s in Situation::ALL {
        let (warnings, remedies) = base_plan(s);
        p.heading(&t.fill("ui.tree_situation", &[("title", &s.title(t))]))?;
        p.line(&t.get(&format!("situation.{}.intro", s.id())))?;
        if !matches!(s, Situation::ForgotMiPassword | Situation::MiAccountLocked) {
            p.blank()?;
            p.line(&t.fill("ui.tree_redirect", &[("title", &Situation::MiAccountLocked.title(t))]))?;
        }
        p.blank()?;
        p.line(&format!("{}:", t.get("ui.tree_warnings")))?;
        p.warnings(&warnings)?;
        p.blank()?;
        p.line(&format!("{}:", t.get("ui.tree_options")))?;
        for (i, r) in remedies.iter().enumerate() {
            p.blank()?;
            p.remedy(*r, &format!("{}. {}", i + 1, t.get(&format!("remedy.{}.title", r.id()))))?;
        }
    }
    p.heading(&t.get("ui.tree_screens"))?;
    for s in Screen::ALL {
        p.line(&format!("- {}", t.get(&format!("screen.{}.title", s.id()))))?;
        p.indented("    ", &t.get(&format!("screen.{}.means", s.id())))?;
    }
    p.heading(&t.get("ui.tree_modes"))?;
    for m in PhoneMode::ALL {
        p.line(&format!("- {} ({})", m.name(t), m.id()))?;
        p.line(&format!("    {}: {}", t.get("ui.tree_mode_can"), m.can(t)))?;
        p.line(&format!("    {}: {}", t.get("ui.tree_mode_next"), m.next(t)))?;
    }
    p.prevention()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rescue::text::Lang;

    #[test]
    fn options_go_from_least_to_most_destructive() {
        for s in Situation::ALL {
            let (_, remedies) = base_plan(s);
            // Customer service (the repair decides) is always offered, last.
            assert_eq!(remedies.last(), Some(&Remedy::CustomerService), "{s:?}");
            let effects: Vec<DataEffect> = remedies[..remedies.len() - 1].iter().map(|r| r.data_effect()).collect();
            assert!(effects.windows(2).all(|w| w[0] <= w[1]), "{s:?}: {effects:?}");
        }
        // The Mi Account situations never suggest erasing: it would not help.
        for s in [Situation::ForgotMiPassword, Situation::MiAccountLocked] {
            assert!(base_plan(s).1.iter().all(|r| !r.erases_data()), "{s:?}");
            assert!(base_plan(s).0.contains(&Warning::BypassTools));
        }
        // Wherever data is erased, the warning that the Mi Account lock stays is shown.
        for s in Situation::ALL {
            let (w, r) = base_plan(s);
            if r.iter().any(|r| matches!(r, Remedy::RecoveryReset | Remedy::FindDeviceErase)) {
                assert!(w.contains(&Warning::ResetKeepsMiLock), "{s:?}");
            }
            if r.contains(&Remedy::FlashRom) {
                assert!(w.contains(&Warning::AntiRollback) && w.contains(&Warning::Relock), "{s:?}");
            }
        }
    }

    #[test]
    fn screen_and_mode_adjust_the_plan() {
        let p = plan(Situation::BootLoop, Some(Screen::DeviceLocked), None);
        assert_eq!(p.situation, Situation::MiAccountLocked);
        assert_eq!(p.redirected_from, Some(Situation::BootLoop));
        assert!(p.remedies.contains(&Remedy::UnlockRequest));
        let p = plan(Situation::ForgotMiPassword, Some(Screen::DeviceLocked), None);
        assert_eq!((p.situation, p.redirected_from), (Situation::ForgotMiPassword, None));
        let p = plan(Situation::Stuck, Some(Screen::Black), Some(PhoneMode::Edl));
        assert_eq!(p.remedies, vec![Remedy::ForceRestart, Remedy::CustomerService]);
        let p = plan(Situation::Stuck, Some(Screen::Black), Some(PhoneMode::MtkBrom));
        assert!(!p.remedies.contains(&Remedy::FlashRom));
        let p = plan(Situation::BootLoop, Some(Screen::Fastboot), None);
        assert_eq!(p.remedies.first(), Some(&Remedy::LeaveFastboot));
        let p = plan(Situation::Reinstall, Some(Screen::Works), Some(PhoneMode::Bootloader));
        assert_eq!(p.remedies.first(), Some(&Remedy::LeaveFastboot));
    }

    #[test]
    fn every_id_has_text_in_both_languages() {
        for lang in Lang::ALL {
            let t = Catalogue::load(lang).unwrap();
            let mut keys = Vec::new();
            for s in Situation::ALL {
                keys.push(format!("situation.{}.title", s.id()));
                keys.push(format!("situation.{}.intro", s.id()));
            }
            for s in Screen::ALL {
                keys.push(format!("screen.{}.title", s.id()));
                keys.push(format!("screen.{}.means", s.id()));
            }
            for r in Remedy::ALL {
                for part in ["title", "data", "steps"] {
                    keys.push(format!("remedy.{}.{part}", r.id()));
                }
            }
            for w in Warning::ALL {
                keys.push(format!("warning.{}.text", w.id()));
            }
            for k in keys {
                assert!(t.has(&k), "{lang:?} lacks {k}");
            }
        }
    }
}
