//! The part of script reading both dialects share: symbolic values, conditions, the fastboot
//! vocabulary, and how conditions become plan steps.
//!
//! A script is read like a tiny program, but only symbolically. Values known when the plan is
//! built (constants, package files, the package folder name) are plain text; values that come
//! from the device at flash time (`getvar anti`, `$?` after a grep) become *symbols*: a
//! private-use character in the text that refers to an entry of [`Planner::syms`]. When a
//! branch depends on such a symbol, both sides are run in a sandbox and the outcome becomes a
//! check step (the branch refuses), a `when` condition (the branch flashes), or a conditional
//! value (the branch assigns).

use std::collections::HashMap;

use crate::rom::plan::{
    Action, AntiCheck, AntiSource, CmpOp, Condition, Flash, NumberCheck, PackageFiles, Plan, PlanWarning, ProductCheck,
    RebootTarget, SourceLine, SplCheck, Step, VarCheck,
};

use super::pattern::{shown_value, Matcher};
use super::{ScriptError, ScriptErrorKind};

const SYM_BASE: u32 = 0xE000;
const SYM_END: u32 = 0xF8FF;

pub(crate) fn is_sym(c: char) -> bool {
    (SYM_BASE..=SYM_END).contains(&(c as u32))
}

pub(crate) fn has_sym(s: &str) -> bool {
    s.chars().any(is_sym)
}

/// The outcome of the last command, as far as the plan can know it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Truth {
    Known(bool),
    /// Depends on the device.
    Device(Cond),
    /// A fastboot action: succeeds, or the plan has already stopped.
    Fallible,
    /// The negation of `Fallible`: true only after a failed action, which the plan never
    /// continues from. Only error handlers may run under it.
    OnFailure,
}

impl Truth {
    pub fn not(self) -> Truth {
        match self {
            Truth::Known(b) => Truth::Known(!b),
            Truth::Device(c) => Truth::Device(c.not()),
            Truth::Fallible => Truth::OnFailure,
            Truth::OnFailure => Truth::Fallible,
        }
    }
}

/// A device-dependent condition. Operands are strings that may contain symbols.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    /// `getvar VAR` output line matches.
    Match { var: String, rust: String, sources: Vec<String> },
    /// The string is empty.
    Empty(String),
    Compare { lhs: String, op: CmpOp, rhs: String },
    Not(Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    And(Box<Cond>, Box<Cond>),
}

impl Cond {
    pub fn not(self) -> Cond {
        match self {
            Cond::Not(inner) => *inner,
            other => Cond::Not(Box::new(other)),
        }
    }
}

/// What a symbol stands for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sym {
    /// The package root folder (`$(dirname $0)`, `%~dp0`, `%cd%`).
    Root,
    /// The arguments the script was started with (`$*`, `%*`): mi-flash's device selection.
    Args,
    /// Something plan building cannot know (the reason says what).
    Unknown(String),
    /// The status of the last command at the time of reading (`$?`, `%errorlevel%`).
    Status(Truth),
    /// A device variable's value, or `default` (else empty) when the device has none.
    Device { var: String, default: Option<String> },
    /// The date in the string, as the scripts compare dates (seconds since 1970).
    Date(String),
    /// `then` when the condition holds, `els` otherwise.
    Choice { cond: Cond, then: String, els: String },
}

/// How a run of commands ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Normal,
    Exit,
}

/// A script runner (sh or bat) as the branch logic sees it.
pub(crate) trait BranchRunner<'a> {
    /// What a branch is: a list of nodes (sh) or one node (bat).
    type Body: ?Sized;
    fn planner(&mut self) -> &mut Planner<'a>;
    fn status(&mut self) -> &mut Truth;
    fn run_body(&mut self, body: &Self::Body) -> Result<Flow, ScriptError>;
}

/// Runs `then` under `cond` and `els` under its negation, each in a sandbox, and merges them
/// into one conditional step group. Device-dependent branches do not nest.
pub(crate) fn run_conditional<'a, R: BranchRunner<'a>>(
    r: &mut R,
    cond: Cond,
    then: &R::Body,
    els: Option<&R::Body>,
    else_status: Truth,
    line: usize,
) -> Result<(Flow, Truth), ScriptError> {
    if r.planner().gate.is_some() {
        return Err(r.planner().err(line, ScriptErrorKind::Unsupported, "nested device-dependent branches are not supported"));
    }
    let snap = r.planner().snapshot();
    let before = r.status().clone();
    // Runs one side under `gate`; the gate is lifted again whatever happens.
    let side = |r: &mut R, gate: Cond, body: Option<&R::Body>, default: Truth| -> Result<Branch, ScriptError> {
        r.planner().gate = Some(gate);
        let flow = match body {
            Some(b) => r.run_body(b),
            None => Ok(Flow::Normal),
        };
        let status = if body.is_some() { r.status().clone() } else { default };
        match flow {
            Ok(flow) => Ok(r.planner().take_branch(&snap, flow, status)),
            Err(e) => {
                r.planner().gate = None;
                Err(e)
            }
        }
    };
    let t = side(r, cond.clone(), Some(then), Truth::Known(true))?;
    *r.status() = before;
    let e = side(r, cond.clone().not(), els, else_status)?;
    r.planner().gate = None;
    r.planner().merge(cond, t, e, &snap, line)
}

/// What a sandboxed branch did.
pub(crate) struct Branch {
    pub flow: Flow,
    pub status: Truth,
    pub steps: Vec<Step>,
    pub env: HashMap<String, String>,
    pub warnings: Vec<PlanWarning>,
}

pub(crate) struct Snapshot {
    env: HashMap<String, String>,
    steps: usize,
    warnings: usize,
}

/// Shared state of one script reading.
pub(crate) struct Planner<'a> {
    pub file: String,
    lines: Vec<String>,
    pub files: &'a dyn PackageFiles,
    pub syms: Vec<Sym>,
    pub env: HashMap<String, String>,
    pub steps: Vec<Step>,
    pub warnings: Vec<PlanWarning>,
    pub disabled: Vec<SourceLine>,
    /// The condition the steps being emitted run under.
    pub gate: Option<Cond>,
    /// The package anti-rollback file the script looked at, and whether it exists.
    anti_file: Option<(String, bool)>,
    /// `CURRENT_ANTI_VER=N` seen on a commented-out line.
    disabled_anti: Option<(u32, SourceLine)>,
}

impl<'a> Planner<'a> {
    pub fn new(file: &str, text: &str, files: &'a dyn PackageFiles) -> Self {
        let lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_string()).collect();
        Planner {
            file: file.to_string(),
            lines,
            files,
            syms: Vec::new(),
            env: HashMap::new(),
            steps: Vec::new(),
            warnings: Vec::new(),
            disabled: Vec::new(),
            gate: None,
            anti_file: None,
            disabled_anti: None,
        }
    }

    pub fn line_text(&self, line: usize) -> String {
        line.checked_sub(1).and_then(|i| self.lines.get(i)).cloned().unwrap_or_default()
    }

    pub fn source(&self, line: usize) -> SourceLine {
        SourceLine { file: self.file.clone(), line, text: self.line_text(line) }
    }

    pub fn err(&self, line: usize, kind: ScriptErrorKind, reason: impl Into<String>) -> ScriptError {
        ScriptError { file: self.file.clone(), line, text: self.line_text(line).trim().to_string(), reason: reason.into(), kind }
    }

    pub fn warn(&mut self, line: Option<usize>, message: impl Into<String>) {
        let source = line.map(|l| self.source(l));
        self.warnings.push(PlanWarning { message: message.into(), source });
    }

    /// Record comment lines: commented-out fastboot commands are listed, a commented-out
    /// anti-rollback check becomes a warning (and its value is enforced if the script has no
    /// active check).
    pub fn note_comment(&mut self, line: usize, body: &str) {
        let lower = body.to_ascii_lowercase();
        if lower.contains("fastboot") {
            self.disabled.push(self.source(line));
        }
        let assigns_anti = lower.contains("current_anti_ver") && lower.contains('=');
        if assigns_anti || lower.contains("getvar anti") || lower.contains("rollback_ver") {
            self.warn(Some(line), "the script has a commented-out anti-rollback line; mi-flash checks anti-rollback anyway");
            if assigns_anti {
                if let Some(v) = body
                    .split('=')
                    .nth(1)
                    .map(|v| v.trim().trim_matches('"'))
                    .and_then(|v| v.parse::<u32>().ok())
                {
                    if self.disabled_anti.is_none() {
                        self.disabled_anti = Some((v, self.source(line)));
                    }
                }
            }
        }
    }

    // ----- symbols -------------------------------------------------------------------------

    pub fn sym(&mut self, s: Sym) -> Result<String, String> {
        if let Some(i) = self.syms.iter().position(|x| *x == s) {
            return Ok(sym_char(i).to_string());
        }
        let i = self.syms.len();
        if SYM_BASE + i as u32 > SYM_END {
            return Err("the script is too complex (too many device-dependent values)".into());
        }
        self.syms.push(s);
        Ok(sym_char(i).to_string())
    }

    /// The symbol a string consists of, if it is exactly one.
    pub fn only_sym(&self, s: &str) -> Option<&Sym> {
        let mut it = s.chars();
        let c = it.next()?;
        if it.next().is_some() || !is_sym(c) {
            return None;
        }
        self.syms.get((c as u32 - SYM_BASE) as usize)
    }

    fn sym_of(&self, c: char) -> Option<&Sym> {
        if !is_sym(c) {
            return None;
        }
        self.syms.get((c as u32 - SYM_BASE) as usize)
    }

    /// Refuse strings that mix in a value plan building cannot know.
    fn check_unknown(&self, s: &str) -> Result<(), String> {
        for c in s.chars() {
            if let Some(Sym::Unknown(why)) = self.sym_of(c) {
                return Err(why.clone());
            }
        }
        Ok(())
    }

    // ----- paths -------------------------------------------------------------------------

    /// Normalise a script path to one relative to the package root with `/` separators.
    pub fn package_path(&self, raw: &str) -> Result<String, String> {
        let mut s = raw;
        let mut rooted = false;
        if let Some(c) = s.chars().next() {
            if self.sym_of(c) == Some(&Sym::Root) {
                rooted = true;
                s = &s[c.len_utf8()..];
            }
        }
        if has_sym(s) {
            self.check_unknown(s)?;
            return Err(format!("the path `{}` depends on something only known when flashing", printable(raw)));
        }
        let s = s.replace('\\', "/");
        if !rooted && (s.starts_with('/') || s.chars().nth(1) == Some(':') || s.starts_with('~')) {
            return Err(format!("the path `{s}` is outside the package"));
        }
        let mut parts = Vec::new();
        for p in s.split('/') {
            match p {
                "" | "." => {}
                ".." => return Err(format!("the path `{s}` leaves the package folder")),
                other => parts.push(other),
            }
        }
        if parts.is_empty() {
            return Err("the path names no file".into());
        }
        Ok(parts.join("/"))
    }

    fn note_anti_file(&mut self, path: &str, exists: bool) {
        if path.rsplit('/').next().is_some_and(|n| n.eq_ignore_ascii_case("anti_version.txt")) {
            self.anti_file = Some((path.to_string(), exists));
        }
    }

    pub fn exists(&mut self, raw: &str) -> Result<bool, String> {
        let p = self.package_path(raw)?;
        let e = self.files.exists(&p);
        self.note_anti_file(&p, e);
        Ok(e)
    }

    /// A small package file as text, for `cat` and `for /f`. `None` when missing.
    pub fn read_text(&mut self, raw: &str) -> Result<Option<String>, String> {
        let p = self.package_path(raw)?;
        let data = self.files.read_small(&p);
        self.note_anti_file(&p, data.is_some());
        match data {
            None => Ok(None),
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(s) if !has_sym(&s) => Ok(Some(s)),
                _ => Err(format!("the package file {p} is not plain text")),
            },
        }
    }

    // ----- steps -------------------------------------------------------------------------

    pub fn emit(&mut self, action: Action, line: usize) -> Result<(), ScriptError> {
        let when = match &self.gate {
            None => None,
            Some(c) => Some(self.to_condition(c).map_err(|r| self.err(line, ScriptErrorKind::Unsupported, r))?),
        };
        self.steps.push(Step { action, when, source: self.source(line) });
        Ok(())
    }

    fn to_condition(&self, c: &Cond) -> Result<Condition, String> {
        let (inner, negate) = match c {
            Cond::Not(inner) => (inner.as_ref(), true),
            other => (other, false),
        };
        match inner {
            Cond::Match { var, rust, .. } => Condition::new(var, rust, negate).map_err(|e| e.to_string()),
            _ => Err("flash steps that depend on this kind of device condition are not supported; only `getvar VAR | grep PATTERN` gates are".into()),
        }
    }

    /// Understand a `fastboot ...` command: emit its step, or report the variable a `getvar`
    /// reads. `args` excludes the program name.
    pub fn fastboot(&mut self, args: &[String], line: usize) -> Result<Option<String>, ScriptError> {
        let refuse = |me: &Self, why: String| me.err(line, ScriptErrorKind::Unsupported, why);
        let mut words: Vec<&str> = Vec::new();
        for a in args {
            if self.only_sym(a) == Some(&Sym::Args) {
                continue;
            }
            if a.is_empty() {
                continue;
            }
            // Symbols other than a leading package root are refused below: by the name
            // checks, or by `package_path` for the image.
            words.push(a);
        }
        let mut i = 0;
        let mut set_active_opt: Option<String> = None;
        while i < words.len() && words[i].starts_with('-') {
            if let Some(slot) = words[i].strip_prefix("--set-active=") {
                set_active_opt = Some(slot.to_string());
            } else {
                return Err(refuse(self, format!("the fastboot option `{}` is not supported in a plan (mi-flash chooses the device itself)", words[i])));
            }
            i += 1;
        }
        let rest = &words[i..];
        let name_ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        let part_ok = crate::rom::plan::is_partition_name;
        let Some(&cmd) = rest.first() else {
            if let Some(slot) = set_active_opt {
                self.emit(Action::SetActive { slot }, line)?;
                return Ok(None);
            }
            return Err(refuse(self, "fastboot without a command".into()));
        };
        if set_active_opt.is_some() {
            return Err(refuse(self, "--set-active combined with another command is not supported".into()));
        }
        let action = match (cmd, &rest[1..]) {
            ("flash", [part, image]) if part_ok(part) => {
                let image = self.package_path(image).map_err(|r| refuse(self, r))?;
                Action::Flash(Flash { partition: part.to_string(), image, size: None, sparse: None })
            }
            ("flash" | "erase", [part, ..]) if !part_ok(part) => {
                return Err(refuse(self, format!("`{part}` is not a partition name (letters, digits, `_`, `-`, `.`, at most 36)")))
            }
            ("flash", _) => return Err(refuse(self, "`fastboot flash` needs a partition and an image file".into())),
            ("erase", [part]) => Action::Erase { partition: part.to_string() },
            ("set_active", [slot]) if matches!(*slot, "a" | "b") => Action::SetActive { slot: slot.to_string() },
            ("reboot", []) => Action::Reboot { target: RebootTarget::System },
            ("reboot", [t]) => match *t {
                "bootloader" => Action::Reboot { target: RebootTarget::Bootloader },
                "recovery" => Action::Reboot { target: RebootTarget::Recovery },
                "fastboot" => Action::Reboot { target: RebootTarget::Fastboot },
                other => return Err(refuse(self, format!("unknown reboot target `{other}`"))),
            },
            ("reboot-bootloader", []) => Action::Reboot { target: RebootTarget::Bootloader },
            ("oem", ["lock"]) => Action::Lock { command: "oem lock".into() },
            ("flashing", ["lock"]) => Action::Lock { command: "flashing lock".into() },
            ("oem", sub) if !sub.is_empty() && sub.iter().all(|w| name_ok(w)) => Action::Oem { command: sub.join(" ") },
            ("getvar", [var]) if name_ok(var) => return Ok(Some(var.to_string())),
            (other, _) => return Err(refuse(self, format!("`fastboot {}` is not a command mi-flash plans support", std::iter::once(other).chain(rest[1..].iter().copied()).collect::<Vec<_>>().join(" ")))),
        };
        self.emit(action, line)?;
        Ok(None)
    }

    // ----- matching and comparing ------------------------------------------------------------

    /// What `getvar VAR | grep/findstr` reports.
    pub fn getvar_match(&self, var: &str, m: &Matcher) -> Truth {
        Truth::Device(Cond::Match { var: var.to_string(), rust: m.rust.clone(), sources: m.sources.clone() })
    }

    /// Whether `text` (which may hold symbols) matches, as far as it can be known.
    pub fn text_match(&self, text: &str, m: &Matcher) -> Result<Truth, String> {
        self.text_match_within(text, m, 0)
    }

    fn text_match_within(&self, text: &str, m: &Matcher, depth: usize) -> Result<Truth, String> {
        // Each symbol doubles the work; real scripts nest one or two.
        if depth > 8 {
            return Err("this test depends on too many device values".into());
        }
        self.check_unknown(text)?;
        let Some((pos, c)) = text.char_indices().find(|(_, c)| is_sym(*c)) else {
            return Ok(Truth::Known(m.is_match(text)));
        };
        let before = &text[..pos];
        let after = &text[pos + c.len_utf8()..];
        match self.sym_of(c).cloned() {
            Some(Sym::Choice { cond, then, els }) => {
                let a = self.text_match_within(&format!("{before}{then}{after}"), m, depth + 1)?;
                let b = self.text_match_within(&format!("{before}{els}{after}"), m, depth + 1)?;
                select(cond, a, b).ok_or_else(|| "this test depends on device values in a way mi-flash cannot follow".to_string())
            }
            _ => {
                // Some other value: accept the answer only if it does not depend on it.
                let a = self.text_match_within(&format!("{before}{after}"), m, depth + 1)?;
                let b = self.text_match_within(&format!("{before}\u{1}{after}"), m, depth + 1)?;
                if a == b {
                    Ok(a)
                } else {
                    Err("this test depends on a value only known when flashing".into())
                }
            }
        }
    }

    /// `lhs OP rhs` as the shells compare (numbers, or `$?`/`%errorlevel%` against 0).
    pub fn compare(&mut self, lhs: &str, op: CmpOp, rhs: &str, line: usize) -> Result<Truth, String> {
        self.check_unknown(lhs)?;
        self.check_unknown(rhs)?;
        // Status tests: `$? -ne 0`, `%errorlevel% equ 0`.
        for (a, b, op) in [(lhs, rhs, op), (rhs, lhs, op)] {
            if let (Some(Sym::Status(t)), "0") = (self.only_sym(a), b) {
                let t = t.clone();
                return match op {
                    CmpOp::Eq => Ok(t),
                    CmpOp::Ne => Ok(t.not()),
                    _ => Err("only `= 0` / `!= 0` tests of a command status are understood".into()),
                };
            }
        }
        if !has_sym(lhs) && !has_sym(rhs) {
            let (l, r) = (lhs.trim(), rhs.trim());
            if l.is_empty() || r.is_empty() {
                self.warn(Some(line), format!("the script compares an empty value (`{l}` vs `{r}`); the shell treats that test as an error, so it never refuses"));
                return Ok(Truth::Known(false));
            }
            return match (l.parse::<i64>(), r.parse::<i64>()) {
                (Ok(a), Ok(b)) => Ok(Truth::Known(op.holds(a, b))),
                _ => match op {
                    CmpOp::Eq => Ok(Truth::Known(l == r)),
                    CmpOp::Ne => Ok(Truth::Known(l != r)),
                    _ => Ok(Truth::Known(op.holds(l.cmp(r) as i64, 0))),
                },
            };
        }
        if lhs.trim().is_empty() || rhs.trim().is_empty() {
            self.warn(Some(line), "the script compares a device value with an empty value; the shell treats that test as an error, so it never refuses");
            return Ok(Truth::Known(false));
        }
        Ok(Truth::Device(Cond::Compare { lhs: lhs.to_string(), op, rhs: rhs.to_string() }))
    }

    /// String equality, e.g. `[%version%] EQU []` (cmd) or `"$x" = "y"` (sh).
    pub fn equals(&mut self, lhs: &str, rhs: &str, line: usize) -> Result<Truth, String> {
        self.check_unknown(lhs)?;
        self.check_unknown(rhs)?;
        if !has_sym(lhs) && !has_sym(rhs) {
            return Ok(Truth::Known(lhs == rhs));
        }
        // Strip the text both sides share ([ ], quotes) and look at what is left.
        let (mut a, mut b) = (lhs, rhs);
        while let (Some(x), Some(y)) = (a.chars().next(), b.chars().next()) {
            if x == y && !is_sym(x) {
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            } else {
                break;
            }
        }
        while let (Some(x), Some(y)) = (a.chars().last(), b.chars().last()) {
            if x == y && !is_sym(x) {
                a = &a[..a.len() - x.len_utf8()];
                b = &b[..b.len() - y.len_utf8()];
            } else {
                break;
            }
        }
        if b.is_empty() && self.only_sym(a).is_some() {
            return self.empty(a);
        }
        if a.is_empty() && self.only_sym(b).is_some() {
            return self.empty(b);
        }
        self.compare(a, CmpOp::Eq, b, line)
    }

    /// `-z STRING`.
    pub fn empty(&mut self, s: &str) -> Result<Truth, String> {
        self.check_unknown(s)?;
        if !has_sym(s) {
            return Ok(Truth::Known(s.is_empty()));
        }
        match self.only_sym(s) {
            Some(Sym::Root) | Some(Sym::Args) => Ok(Truth::Known(false)),
            Some(Sym::Status(_)) => Ok(Truth::Known(false)),
            _ => Ok(Truth::Device(Cond::Empty(s.to_string()))),
        }
    }

    // ----- branches ------------------------------------------------------------------------

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { env: self.env.clone(), steps: self.steps.len(), warnings: self.warnings.len() }
    }

    /// Take what a branch did since `snap` and put the state back.
    pub fn take_branch(&mut self, snap: &Snapshot, flow: Flow, status: Truth) -> Branch {
        let steps = self.steps.split_off(snap.steps);
        let warnings = self.warnings.split_off(snap.warnings);
        let env = std::mem::replace(&mut self.env, snap.env.clone());
        Branch { flow, status, steps, env, warnings }
    }

    /// Combine the two sandboxed sides of a device-dependent branch (`then` ran under `cond`,
    /// `els` under its negation) into steps, checks and values. Returns the status after.
    pub fn merge(&mut self, cond: Cond, then: Branch, els: Branch, base: &Snapshot, line: usize) -> Result<(Flow, Truth), ScriptError> {
        let unsupported = |me: &Self, why: &str| me.err(line, ScriptErrorKind::Unsupported, why);
        match (then.flow, els.flow) {
            (Flow::Exit, Flow::Exit) => return Err(unsupported(self, "both sides of this device-dependent branch stop the script")),
            (Flow::Exit, Flow::Normal) | (Flow::Normal, Flow::Exit) => {
                let (refuse_when, stopper, goes_on) = if then.flow == Flow::Exit { (cond, then, els) } else { (cond.not(), els, then) };
                if !stopper.steps.is_empty() {
                    return Err(unsupported(self, "a branch that flashes and then stops the script is not supported"));
                }
                self.refuse_if(refuse_when, line)?;
                self.warnings.extend(goes_on.warnings);
                for s in goes_on.steps {
                    self.steps.push(s);
                }
                self.env = goes_on.env;
                return Ok((Flow::Normal, Truth::Known(true)));
            }
            (Flow::Normal, Flow::Normal) => {}
        }
        let pure = then.steps.is_empty() && els.steps.is_empty() && then.env == base.env && els.env == base.env;
        self.warnings.extend(then.warnings);
        self.warnings.extend(els.warnings);
        let any_steps = !then.steps.is_empty() || !els.steps.is_empty();
        self.steps.extend(then.steps);
        self.steps.extend(els.steps);
        // Variables set on either side become choices.
        let mut names: Vec<&String> = then.env.keys().chain(els.env.keys()).collect();
        names.sort();
        names.dedup();
        let mut merged = base.env.clone();
        for name in names {
            let old = base.env.get(name).cloned().unwrap_or_default();
            let t = then.env.get(name).cloned().unwrap_or_default();
            let e = els.env.get(name).cloned().unwrap_or_default();
            if t == old && e == old {
                continue;
            }
            let v = if t == e { t } else { self.choice(cond.clone(), t, e).map_err(|r| unsupported(self, &r))? };
            merged.insert(name.clone(), v);
        }
        self.env = merged;
        if pure {
            let status = select(cond, then.status, els.status).unwrap_or(Truth::Known(true));
            return Ok((Flow::Normal, status));
        }
        Ok((Flow::Normal, if any_steps { Truth::Fallible } else { Truth::Known(true) }))
    }

    /// A value that is `then` when `cond` holds, else `els`; `-z`-style defaults fold into
    /// the device value they guard.
    fn choice(&mut self, cond: Cond, then: String, els: String) -> Result<String, String> {
        let (empty_of, default, other) = match &cond {
            Cond::Empty(x) => (Some(x.clone()), then.clone(), els.clone()),
            Cond::Not(inner) => match inner.as_ref() {
                Cond::Empty(x) => (Some(x.clone()), els.clone(), then.clone()),
                _ => (None, String::new(), String::new()),
            },
            _ => (None, String::new(), String::new()),
        };
        if let Some(x) = empty_of {
            if !has_sym(&default) {
                if let Some(Sym::Device { var, .. }) = self.only_sym(&x).cloned() {
                    let with_default = self.sym(Sym::Device { var, default: Some(default) })?;
                    if other == x {
                        return Ok(with_default);
                    }
                    if let Some(Sym::Date(inner)) = self.only_sym(&other).cloned() {
                        if inner == x {
                            return self.sym(Sym::Date(with_default));
                        }
                    }
                }
            }
        }
        self.sym(Sym::Choice { cond, then, els })
    }

    /// A device variable's value stored by a loop that runs once per output line: the
    /// variable holds the device value, or its old value when the device prints nothing.
    pub fn loop_assign(&self, old: &str, new: &str) -> Result<String, String> {
        if old.is_empty() {
            Ok(new.to_string())
        } else {
            Err("a device value would overwrite an earlier value of the same variable; not supported".into())
        }
    }

    // ----- checks --------------------------------------------------------------------------

    /// The script stops when `cond` holds: turn that into a check step.
    pub fn refuse_if(&mut self, cond: Cond, line: usize) -> Result<(), ScriptError> {
        if self.gate.is_some() {
            return Err(self.err(line, ScriptErrorKind::Unsupported, "a check inside a device-dependent branch is not supported"));
        }
        let action = self.check_for(&cond).map_err(|r| self.err(line, ScriptErrorKind::Unsupported, r))?;
        self.emit(action, line)
    }

    fn check_for(&mut self, cond: &Cond) -> Result<Action, String> {
        // Refusing when a match fails: product and variable checks.
        if let Cond::Not(inner) = cond {
            let mut alts = Vec::new();
            if collect_matches(inner, &mut alts) {
                let var = alts[0].0.clone();
                if alts.iter().all(|a| a.0 == var) {
                    let rust = if alts.len() == 1 { alts[0].1.clone() } else { alts.iter().map(|a| format!("(?:{})", a.1)).collect::<Vec<_>>().join("|") };
                    let shown: Vec<String> = alts
                        .iter()
                        .flat_map(|a| a.2.iter())
                        // For display only: `a|b` (ERE) and `a\|b` (GNU BRE) list alternatives.
                        .flat_map(|s| s.split("\\|").flat_map(|p| p.split('|')).map(str::to_string).collect::<Vec<_>>())
                        .map(|s| {
                            let s = s.as_str();
                            shown_value(&var, s).unwrap_or_else(|| {
                                if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                                    format!("containing {s}")
                                } else {
                                    format!("matching /{s}/")
                                }
                            })
                        })
                        .collect();
                    let expected = shown.join(" or ");
                    return if var == "product" {
                        Ok(Action::CheckProduct(ProductCheck::new(&rust, &expected).map_err(|e| e.to_string())?))
                    } else {
                        Ok(Action::CheckVar(VarCheck::new(&var, &rust, &expected).map_err(|e| e.to_string())?))
                    };
                }
            }
        }
        if let Cond::Compare { lhs, op, rhs } = cond {
            let (dev, op, limit) = if self.only_sym(rhs).is_some() && self.only_sym(lhs).is_none() {
                (rhs.as_str(), mirror(*op), lhs.as_str())
            } else {
                (lhs.as_str(), *op, rhs.as_str())
            };
            match self.only_sym(dev).cloned() {
                Some(Sym::Device { var, .. }) if !has_sym(limit) => {
                    let n: i64 = limit.trim().parse().map_err(|_| format!("the script compares {var} with `{}`, which is not a number", limit.trim()))?;
                    if var == "anti" || var == "rollback_ver" {
                        let max = match op {
                            CmpOp::Gt => n,
                            CmpOp::Ge => n.saturating_sub(1),
                            _ => return Err(format!("an anti-rollback test with {} is not understood", op.symbol())),
                        };
                        let max = u32::try_from(max).map_err(|_| format!("the package anti-rollback index `{n}` is not valid"))?;
                        let from = match &self.anti_file {
                            Some((p, true)) => AntiSource::File(p.clone()),
                            Some((p, false)) => {
                                let msg = format!("the package has no {p}; like the script, mi-flash then takes the package's anti-rollback index as 0");
                                self.warnings.push(PlanWarning { message: msg, source: None });
                                AntiSource::Missing(p.clone())
                            }
                            None => AntiSource::Script,
                        };
                        return Ok(Action::CheckAnti(AntiCheck { var, max, from }));
                    }
                    return Ok(Action::CheckNumber(NumberCheck { var, refuse_if: op, limit: n }));
                }
                Some(Sym::Date(inner)) if op == CmpOp::Gt => {
                    let dev_var = match self.only_sym(&inner) {
                        Some(Sym::Device { var, .. }) => var.clone(),
                        _ => return Err("this date comparison is not understood".into()),
                    };
                    let Some(Sym::Date(pkg)) = self.only_sym(limit).cloned() else {
                        return Err("this date comparison is not understood".into());
                    };
                    if has_sym(&pkg) || crate::rom::plan::parse_patch_date(&pkg).is_none() {
                        return Err(format!("the package's security patch level `{}` is not a date", printable(&pkg)));
                    }
                    let from = "images/platform_security_patch.txt".to_string();
                    return Ok(Action::CheckSecurityPatch(SplCheck { var: dev_var, max: pkg.trim().to_string(), from }));
                }
                _ => {}
            }
        }
        Err("the script stops on a device condition mi-flash does not know how to check".into())
    }

    /// Finish: enforce anti-rollback when the script does not, and return the plan.
    pub fn finish(mut self) -> Plan {
        let has_anti = self.steps.iter().any(|s| matches!(s.action, Action::CheckAnti(_)));
        if !has_anti {
            let pkg = "images/anti_version.txt";
            let raw = self.files.read_small(pkg);
            let from_pkg = raw.as_ref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.trim().parse::<u32>().ok());
            if raw.is_some() && from_pkg.is_none() {
                self.warnings.push(PlanWarning { message: format!("{pkg} does not hold a number; the package's anti-rollback index is unknown"), source: None });
            }
            let added = if let Some(max) = from_pkg {
                let source = SourceLine { file: self.file.clone(), line: 0, text: format!("(added by mi-flash: the package has {pkg})") };
                self.warnings.push(PlanWarning { message: format!("the script does not check anti-rollback; mi-flash checks it against {pkg}"), source: None });
                Some((AntiCheck { var: "anti".into(), max, from: AntiSource::File(pkg.into()) }, source))
            } else {
                self.disabled_anti.take().map(|(max, source)| (AntiCheck { var: "anti".into(), max, from: AntiSource::Disabled }, source))
            };
            if let Some((check, source)) = added {
                let at = self.steps.iter().position(|s| s.action.changes_device()).unwrap_or(self.steps.len());
                self.steps.insert(at, Step { action: Action::CheckAnti(check), when: None, source });
            }
        }
        Plan { script: self.file, steps: self.steps, warnings: self.warnings, disabled: self.disabled }
    }
}

fn sym_char(i: usize) -> char {
    char::from_u32(SYM_BASE + i as u32).unwrap_or('\u{E000}')
}

/// For messages: symbols shown as `<value>`.
pub(crate) fn printable(s: &str) -> String {
    s.chars().map(|c| if is_sym(c) { "<value>".to_string() } else { c.to_string() }).collect()
}

fn mirror(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn collect_matches(c: &Cond, out: &mut Vec<(String, String, Vec<String>)>) -> bool {
    match c {
        Cond::Match { var, rust, sources } => {
            out.push((var.clone(), rust.clone(), sources.clone()));
            true
        }
        Cond::Or(a, b) => collect_matches(a, out) && collect_matches(b, out),
        _ => false,
    }
}

/// `a` when `cond` holds, else `b`, as one truth where that is expressible.
pub(crate) fn select(cond: Cond, a: Truth, b: Truth) -> Option<Truth> {
    use Truth::*;
    let a = if a == Fallible { Known(true) } else { a };
    let b = if b == Fallible { Known(true) } else { b };
    Some(match (a, b) {
        (x, y) if x == y => x,
        (Known(true), Known(false)) => Device(cond),
        (Known(false), Known(true)) => Device(cond.not()),
        (Known(true), Device(y)) => Device(Cond::Or(Box::new(cond), Box::new(y))),
        (Device(x), Known(true)) => Device(Cond::Or(Box::new(cond.not()), Box::new(x))),
        (Known(false), Device(y)) => Device(Cond::And(Box::new(cond.not()), Box::new(y))),
        (Device(x), Known(false)) => Device(Cond::And(Box::new(cond), Box::new(x))),
        _ => return None,
    })
}
