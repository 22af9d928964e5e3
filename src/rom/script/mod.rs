//! Reading Xiaomi flash scripts (`flash_all*.sh`, `flash_all*.bat`) into a [`Plan`] — never
//! running them.
//!
//! Each dialect has its own small tokenizer and parser (`sh`, `bat`); both feed the shared
//! symbolic reader in `core`, which knows the vocabulary of real Xiaomi scripts: fastboot
//! actions, `getvar | grep/findstr` checks and gates, the two generations of anti-rollback
//! checks, the security patch level check, `if exist` / `[ -e ]` resolved against the
//! package, error handlers (understood and dropped: a plan always stops at its first
//! failure). Anything else — another program, a command substitution that is not `dirname
//! $0`, a redirection into a file — refuses the whole script with a [`ScriptError`] naming
//! the file, line and text. Lines are never skipped silently.

mod bat;
mod core;
mod pattern;
mod sh;

use std::fmt;

use crate::rom::plan::{Dialect, PackageFiles, Plan};

/// Why a script was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptErrorKind {
    /// The text does not parse in the script's dialect.
    Syntax,
    /// A command or construct outside the vocabulary of flash scripts (another program, a
    /// command substitution, a redirection into a file): possibly hostile.
    Refused,
    /// A flash-script construct mi-flash does not model.
    Unsupported,
    /// A package file the script reads is unusable.
    Package,
}

/// How deep `if` blocks, `{ }` / `( )` blocks nest, and how many `&&` / `||` one command line
/// chains, at most. Xiaomi's scripts use two or three of each; the limits keep the parser's
/// recursion (and the memory of a hostile script) bounded.
pub(crate) const MAX_NESTING: usize = 32;
pub(crate) const MAX_CHAIN: usize = 64;

/// A script mi-flash will not turn into a plan. Nothing was run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    /// The script's file name.
    pub file: String,
    /// 1-based line number (0 when the problem concerns the whole file).
    pub line: usize,
    /// The offending line's text, trimmed.
    pub text: String,
    pub reason: String,
    pub kind: ScriptErrorKind,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hostile line (and a reason quoting it) can be a megabyte long: show the start.
        let short = |text: &str| -> String {
            const SHOWN: usize = 200;
            match text.char_indices().nth(SHOWN) {
                Some((cut, _)) => format!("{} … ({} more characters)", &text[..cut], text[cut..].chars().count()),
                None => text.to_string(),
            }
        };
        write!(f, "refusing {} line {}: {}", self.file, self.line, short(&self.reason))?;
        if !self.text.is_empty() {
            write!(f, "\n    {}", short(&self.text))?;
        }
        let next = match self.kind {
            ScriptErrorKind::Refused => "mi-flash never runs flash scripts and only accepts the commands official Xiaomi scripts use; this line is not one of them, so the package may have been modified. Use an official package.",
            ScriptErrorKind::Unsupported | ScriptErrorKind::Syntax => "If this is an unmodified official Xiaomi package, please report this line to mi-flash.",
            ScriptErrorKind::Package => "The package looks damaged; download it again.",
        };
        write!(f, "\n{next}")
    }
}

/// Read a flash script into a plan. `file_name` picks the dialect (`.sh`, `.bat`/`.cmd`) and
/// names the source of every step; `files` answers `if exist` / `[ -e ]`, and provides
/// `images/anti_version.txt` and similar small files read at plan time.
pub fn parse_script(file_name: &str, text: &[u8], files: &dyn PackageFiles) -> Result<Plan, ScriptError> {
    let whole = |reason: String| ScriptError { file: file_name.to_string(), line: 0, text: String::new(), reason, kind: ScriptErrorKind::Syntax };
    let Some(dialect) = Dialect::from_file_name(file_name) else {
        return Err(whole("not a flash script: the name does not end in .sh or .bat".into()));
    };
    parse_script_as(dialect, file_name, text, files)
}

/// Like [`parse_script`] with the dialect given explicitly.
pub fn parse_script_as(dialect: Dialect, file_name: &str, text: &[u8], files: &dyn PackageFiles) -> Result<Plan, ScriptError> {
    let text = match std::str::from_utf8(text) {
        Ok(t) => t,
        Err(e) => {
            let line = text[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(ScriptError {
                file: file_name.to_string(),
                line,
                text: String::new(),
                reason: "the script is not text (invalid UTF-8)".into(),
                kind: ScriptErrorKind::Syntax,
            });
        }
    };
    // Private-use characters are the reader's own symbols; no real script contains them.
    if let Some((i, _)) = text.char_indices().find(|(_, c)| core::is_sym(*c) || *c == '\0') {
        let line = text[..i].matches('\n').count() + 1;
        return Err(core::Planner::new(file_name, text, files).err(line, ScriptErrorKind::Syntax, "the script contains NUL or private-use characters"));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let plan = match dialect {
        Dialect::Sh => sh::plan(file_name, text, files),
        Dialect::Bat => bat::plan(file_name, text, files),
    }?;
    check_leaves_fastboot_last(&plan)?;
    Ok(plan)
}

/// `oem` commands that unlock, wipe or leave fastboot: no official script has them, and
/// a plan must not do any of it behind the user's back.
const REFUSED_OEM: [&str; 6] = ["unlock", "edl", "reboot", "erase", "format", "wipe"];

/// A step that takes the phone out of fastboot (a reboot into Android or recovery) may only
/// come after every step that needs fastboot; an `oem` command may not unlock, wipe or leave
/// fastboot. Xiaomi's scripts end with `reboot`, and use only `oem lock` (and rarely `oem
/// cdms`).
fn check_leaves_fastboot_last(plan: &Plan) -> Result<(), ScriptError> {
    use crate::rom::plan::{Action, RebootTarget};
    let refuse = |step: &crate::rom::plan::Step, reason: String| ScriptError {
        file: step.source.file.clone(),
        line: step.source.line,
        text: step.source.text.clone(),
        reason,
        kind: ScriptErrorKind::Refused,
    };
    let mut left: Option<&crate::rom::plan::Step> = None;
    for step in &plan.steps {
        if let Action::Oem { command } = &step.action {
            let sub = command.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            if let Some(bad) = REFUSED_OEM.iter().find(|b| sub.starts_with(*b)) {
                return Err(refuse(step, format!("`fastboot oem {command}` ({bad}) is not part of a flash script")));
            }
        }
        if let Some(reboot) = left {
            return Err(refuse(
                reboot,
                format!("this reboot takes the phone out of fastboot, but line {} still needs it: a reboot out of fastboot must come last", step.source.line),
            ));
        }
        if matches!(step.action, Action::Reboot { target: RebootTarget::System | RebootTarget::Recovery }) {
            left = Some(step);
        }
    }
    Ok(())
}
