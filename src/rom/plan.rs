//! The flash plan: what mi-flash will do to a device, step by step, in script order.
//!
//! A [`Plan`] is built from a Xiaomi `flash_all*.sh` / `.bat` by [`crate::rom::script`], printed
//! as a dry run (`Display`) or as JSON (`serde`, a public contract documented in
//! `docs/plan.md`), annotated with image sizes by the package layer and executed by the flasher.
//! This module also holds the checks' evaluation rules (product, anti-rollback, security patch
//! level, device variables), the choice of script for a [`Mode`], and [`PackageFiles`], the
//! narrow view of a package that plan building needs. It never talks to a device and never
//! opens an archive itself.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Where a step comes from: the script file, the 1-based line number and the line's text.
/// Line 0 marks a step mi-flash added itself (the text then says why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLine {
    pub file: String,
    pub line: usize,
    pub text: String,
}

impl fmt::Display for SourceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}, added by mi-flash", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// One `fastboot flash PARTITION IMAGE`. `image` is relative to the package root, always with
/// `/` (e.g. `images/boot.img`). `size` and `sparse` are unknown (`None`) until the package
/// layer fills them in with [`Plan::annotate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub partition: String,
    pub image: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub sparse: Option<bool>,
}

/// Where `fastboot reboot` sends the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootTarget {
    /// Plain `reboot`: boot the system.
    System,
    /// `reboot bootloader` / `reboot-bootloader`.
    Bootloader,
    /// `reboot recovery`.
    Recovery,
    /// `reboot fastboot` (userspace fastbootd).
    Fastboot,
}

/// How a numeric device value is compared with a limit in a [`NumberCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl CmpOp {
    pub fn holds(self, a: i64, b: i64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    /// The operator that holds exactly when `self` does not.
    pub fn negated(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
        }
    }
}

/// A regular expression over the line `VAR: VALUE` that `fastboot getvar VAR` prints — the line
/// the scripts feed to `grep` / `findstr`. `pattern` is in Rust `regex` syntax (translated from
/// the script's grep/findstr dialect) and is searched, not anchored, unless it anchors itself.
#[derive(Debug, Clone)]
struct VarPattern {
    var: String,
    pattern: String,
    regex: Regex,
}

impl VarPattern {
    fn new(var: &str, pattern: &str) -> Result<Self, regex::Error> {
        Ok(VarPattern { var: var.to_string(), pattern: pattern.to_string(), regex: Regex::new(pattern)? })
    }

    /// Does the device's value produce a matching line? A missing value prints no such line.
    fn matches(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => self.regex.is_match(&format!("{}: {}", self.var, v)),
            None => false,
        }
    }
}

impl PartialEq for VarPattern {
    fn eq(&self, other: &Self) -> bool {
        self.var == other.var && self.pattern == other.pattern
    }
}
impl Eq for VarPattern {}

/// A condition on a device variable, attached to steps the script runs only sometimes
/// (`when`): e.g. the CRC lists are flashed only when `getvar crc` prints `crc: 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConditionData", into = "ConditionData")]
pub struct Condition {
    inner: VarPattern,
    negate: bool,
}

#[derive(Serialize, Deserialize)]
struct ConditionData {
    var: String,
    matches: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    negate: bool,
}

impl TryFrom<ConditionData> for Condition {
    type Error = regex::Error;
    fn try_from(d: ConditionData) -> Result<Self, Self::Error> {
        Condition::new(&d.var, &d.matches, d.negate)
    }
}
impl From<Condition> for ConditionData {
    fn from(c: Condition) -> Self {
        ConditionData { var: c.inner.var, matches: c.inner.pattern, negate: c.negate }
    }
}

impl Condition {
    /// `matches` is a Rust regex searched in the line `VAR: VALUE`; `negate` flips the result.
    pub fn new(var: &str, matches: &str, negate: bool) -> Result<Self, regex::Error> {
        Ok(Condition { inner: VarPattern::new(var, matches)?, negate })
    }
    /// The device variable to read with `getvar`.
    pub fn var(&self) -> &str {
        &self.inner.var
    }
    pub fn pattern(&self) -> &str {
        &self.inner.pattern
    }
    pub fn negated(&self) -> bool {
        self.negate
    }
    /// Whether the gated steps run, given the device's value (`None`: the device does not
    /// know the variable).
    pub fn holds(&self, value: Option<&str>) -> bool {
        self.inner.matches(value) != self.negate
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.negate { "does not match" } else { "matches" };
        write!(f, "getvar {} {} /{}/", self.inner.var, verb, self.inner.pattern)
    }
}

/// The product check: the device's `getvar product` must match the script's pattern.
/// Patterns keep the script's meaning: a prefix match unless the script anchors the end
/// (`^product: *lmi` accepts `lmipro`), unanchored patterns search anywhere, and several
/// alternatives (`karna` or `surya`) are joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProductCheckData", into = "ProductCheckData")]
pub struct ProductCheck {
    inner: VarPattern,
    expected: String,
}

#[derive(Serialize, Deserialize)]
struct ProductCheckData {
    pattern: String,
    expected: String,
}

impl TryFrom<ProductCheckData> for ProductCheck {
    type Error = regex::Error;
    fn try_from(d: ProductCheckData) -> Result<Self, Self::Error> {
        ProductCheck::new(&d.pattern, &d.expected)
    }
}
impl From<ProductCheck> for ProductCheckData {
    fn from(c: ProductCheck) -> Self {
        ProductCheckData { pattern: c.inner.pattern, expected: c.expected }
    }
}

impl ProductCheck {
    /// `pattern`: Rust regex searched in `product: VALUE`; `expected`: what to show the user.
    pub fn new(pattern: &str, expected: &str) -> Result<Self, regex::Error> {
        Ok(ProductCheck { inner: VarPattern::new("product", pattern)?, expected: expected.to_string() })
    }
    /// Does the device's `getvar product` value satisfy the script?
    pub fn matches(&self, product: &str) -> bool {
        self.inner.matches(Some(product))
    }
    /// Readable expectation, e.g. `piano` or `karna or surya`.
    pub fn expected(&self) -> &str {
        &self.expected
    }
    /// The regex (Rust syntax) matched against the line `product: VALUE`.
    pub fn pattern(&self) -> &str {
        &self.inner.pattern
    }
}

/// A check that a device variable's line matches a pattern (e.g. `secure: yes` before a
/// factory relock). Refuse when it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VarCheckData", into = "VarCheckData")]
pub struct VarCheck {
    inner: VarPattern,
    expected: String,
}

#[derive(Serialize, Deserialize)]
struct VarCheckData {
    var: String,
    matches: String,
    expected: String,
}

impl TryFrom<VarCheckData> for VarCheck {
    type Error = regex::Error;
    fn try_from(d: VarCheckData) -> Result<Self, Self::Error> {
        VarCheck::new(&d.var, &d.matches, &d.expected)
    }
}
impl From<VarCheck> for VarCheckData {
    fn from(c: VarCheck) -> Self {
        VarCheckData { var: c.inner.var, matches: c.inner.pattern, expected: c.expected }
    }
}

impl VarCheck {
    pub fn new(var: &str, matches: &str, expected: &str) -> Result<Self, regex::Error> {
        Ok(VarCheck { inner: VarPattern::new(var, matches)?, expected: expected.to_string() })
    }
    pub fn var(&self) -> &str {
        &self.inner.var
    }
    pub fn pattern(&self) -> &str {
        &self.inner.pattern
    }
    pub fn expected(&self) -> &str {
        &self.expected
    }
    /// True when flashing may go on.
    pub fn allows(&self, value: Option<&str>) -> bool {
        self.inner.matches(value)
    }
}

/// Where the package's anti-rollback index comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum AntiSource {
    /// A constant in the script (`CURRENT_ANTI_VER=1`).
    Script,
    /// A package file read at plan time (`images/anti_version.txt`).
    File(String),
    /// The package has no index (its file is missing): the scripts then use 0.
    Missing(String),
    /// A value from a commented-out check line, enforced by mi-flash anyway.
    Disabled,
}

/// Anti-rollback check: refuse when the device's index (`getvar anti`, or `rollback_ver` on
/// some models) is greater than the package's. A device without the variable counts as 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiCheck {
    pub var: String,
    pub max: u32,
    pub from: AntiSource,
}

impl AntiCheck {
    pub fn allows(&self, device_anti: Option<u32>) -> bool {
        device_anti.unwrap_or(0) <= self.max
    }
}

/// A numeric check on a device variable: refuse when `value REFUSE_IF limit` holds (zeus:
/// `hw-revision <= 10000` is refused). A missing value counts as 0, like the scripts do; a
/// value that is not a number is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberCheck {
    pub var: String,
    pub refuse_if: CmpOp,
    pub limit: i64,
}

impl NumberCheck {
    pub fn allows(&self, value: Option<&str>) -> bool {
        let v = match value.map(str::trim) {
            None | Some("") => 0,
            Some(s) => match s.parse::<i64>() {
                Ok(n) => n,
                Err(_) => return false,
            },
        };
        !self.refuse_if.holds(v, self.limit)
    }
}

/// Security patch level check: refuse when the device's `security-patch-level` (YYYY-MM-DD)
/// is newer than the package's (`images/platform_security_patch.txt`). A missing or
/// unreadable device value passes, as in the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplCheck {
    pub var: String,
    pub max: String,
    pub from: String,
}

/// Parse `YYYY[-MM[-DD]]` into a comparable tuple.
pub fn parse_patch_date(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.trim().split('-');
    let y = it.next()?.parse().ok()?;
    let m = match it.next() {
        Some(m) => m.parse().ok()?,
        None => 0,
    };
    let d = match it.next() {
        Some(d) => d.parse().ok()?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    Some((y, m, d))
}

impl SplCheck {
    pub fn allows(&self, device: Option<&str>) -> bool {
        match (device.and_then(parse_patch_date), parse_patch_date(&self.max)) {
            (Some(dev), Some(max)) => dev <= max,
            _ => true,
        }
    }
}


/// Whether `name` can be a partition: a GPT name (at most 36 characters) of letters, digits,
/// `_`, `-`, `.`, optionally with a numeric `:N` suffix (`partition:0`, the GPT of a LUN).
pub fn is_partition_name(name: &str) -> bool {
    let (base, lun) = name.split_once(':').unwrap_or((name, "0"));
    (1..=36).contains(&base.len())
        && base.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && (1..=3).contains(&lun.len())
        && lun.chars().all(|c| c.is_ascii_digit())
}

/// What a step does. The JSON form is `{"op": "...", ...fields}` (see docs/plan.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    Flash(Flash),
    Erase { partition: String },
    SetActive { slot: String },
    Reboot { target: RebootTarget },
    /// Relock the bootloader (`oem lock` or `flashing lock`, as `command`).
    Lock { command: String },
    /// Any other `fastboot oem ...`; `command` is what follows `oem`.
    Oem { command: String },
    CheckProduct(ProductCheck),
    CheckAnti(AntiCheck),
    CheckVar(VarCheck),
    CheckNumber(NumberCheck),
    CheckSecurityPatch(SplCheck),
}

impl Action {
    /// Does this step write to (or otherwise change) the device?
    pub fn changes_device(&self) -> bool {
        matches!(
            self,
            Action::Flash(_)
                | Action::Erase { .. }
                | Action::SetActive { .. }
                | Action::Reboot { .. }
                | Action::Lock { .. }
                | Action::Oem { .. }
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Flash(fl) => {
                write!(f, "flash {} {}", fl.partition, fl.image)?;
                match (fl.size, fl.sparse) {
                    (Some(s), Some(true)) => write!(f, " ({s} bytes, sparse)"),
                    (Some(s), _) => write!(f, " ({s} bytes)"),
                    _ => Ok(()),
                }
            }
            Action::Erase { partition } => write!(f, "erase {partition}"),
            Action::SetActive { slot } => write!(f, "set active slot {slot}"),
            Action::Reboot { target: RebootTarget::System } => write!(f, "reboot"),
            Action::Reboot { target } => {
                let t = match target {
                    RebootTarget::Bootloader => "bootloader",
                    RebootTarget::Recovery => "recovery",
                    RebootTarget::Fastboot => "fastboot",
                    RebootTarget::System => "system",
                };
                write!(f, "reboot to {t}")
            }
            Action::Lock { command } => write!(f, "relock the bootloader ({command})"),
            Action::Oem { command } => write!(f, "oem {command}"),
            Action::CheckProduct(c) => write!(f, "check product is {}", c.expected()),
            Action::CheckAnti(c) => {
                let from = match &c.from {
                    AntiSource::Script => "from the script".to_string(),
                    AntiSource::File(p) => format!("from {p}"),
                    AntiSource::Missing(p) => format!("{p} missing, so 0"),
                    AntiSource::Disabled => "from a commented-out check".to_string(),
                };
                write!(f, "check anti-rollback: device {} <= {} ({from})", c.var, c.max)
            }
            Action::CheckVar(c) => write!(f, "check {} is {}", c.var(), c.expected()),
            Action::CheckNumber(c) => {
                write!(f, "check {}: refuse if {} {}", c.var, c.refuse_if.symbol(), c.limit)
            }
            Action::CheckSecurityPatch(c) => {
                write!(f, "check security patch level: device <= {} (from {})", c.max, c.from)
            }
        }
    }
}

/// One step of a plan: an action, an optional device condition, and its source line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    pub source: SourceLine,
}

/// Something the user should know about the plan (a disabled check, a skipped gate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanWarning {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceLine>,
}

impl fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{} ({s})", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// The steps mi-flash runs, in order; execution stops at the first failure.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// File name of the script the plan was built from.
    pub script: String,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub warnings: Vec<PlanWarning>,
    /// Commented-out `fastboot` lines of the script, for display.
    #[serde(default)]
    pub disabled: Vec<SourceLine>,
}

impl Plan {
    /// Every image path the plan may flash (including steps under a `when`), in first-use
    /// order, without duplicates.
    pub fn images(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.steps {
            if let Action::Flash(f) = &s.action {
                if !out.contains(&f.image.as_str()) {
                    out.push(&f.image);
                }
            }
        }
        out
    }

    /// Fill in `size` and `sparse` of every flash step from `info(image) -> (size, sparse)`.
    pub fn annotate(&mut self, mut info: impl FnMut(&str) -> Option<(u64, bool)>) {
        for s in &mut self.steps {
            if let Action::Flash(f) = &mut s.action {
                if let Some((size, sparse)) = info(&f.image) {
                    f.size = Some(size);
                    f.sparse = Some(sparse);
                }
            }
        }
    }

    /// The product check, if the script has one.
    pub fn product_check(&self) -> Option<&ProductCheck> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::CheckProduct(c) => Some(c),
            _ => None,
        })
    }

    /// Does the plan relock the bootloader?
    pub fn locks(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.action, Action::Lock { .. }))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan from {} ({} steps)", self.script, self.steps.len())?;
        let width = self.steps.len().to_string().len();
        for (i, s) in self.steps.iter().enumerate() {
            let mut line = format!("{:>width$}. {}", i + 1, s.action);
            if let Some(w) = &s.when {
                line.push_str(&format!("  [only if {w}]"));
            }
            writeln!(f, "{line:<60}  ({})", s.source)?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for d in &self.disabled {
            match d.text.trim() {
                "" => writeln!(f, "commented out: line {}", d.line)?,
                text => writeln!(f, "commented out ({d}): {text}")?,
            }
        }
        Ok(())
    }
}

/// What the user asked for, in MiFlash's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// "Clean all": `flash_all`.
    Clean,
    /// "Save user data": `flash_all_except_storage` (or the older `_except_data`,
    /// `_except_data_storage`).
    KeepData,
    /// "Clean all and lock": `flash_all_lock`. Only ever chosen when asked for by name.
    Lock,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Clean => "clean",
            Mode::KeepData => "keep-data",
            Mode::Lock => "lock",
        })
    }
}

/// Script dialect, from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sh,
    Bat,
}

impl Dialect {
    pub fn from_file_name(name: &str) -> Option<Dialect> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".sh") {
            Some(Dialect::Sh)
        } else if lower.ends_with(".bat") || lower.ends_with(".cmd") {
            Some(Dialect::Bat)
        } else {
            None
        }
    }
    fn ext(self) -> &'static str {
        match self {
            Dialect::Sh => "sh",
            Dialect::Bat => "bat",
        }
    }
    fn other(self) -> Dialect {
        match self {
            Dialect::Sh => Dialect::Bat,
            Dialect::Bat => Dialect::Sh,
        }
    }
}

/// No script fits the requested mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this package has no {wanted} script for mode {mode}; it has: {}. {hint}", if available.is_empty() { "no flash_all scripts at all".to_string() } else { available.join(", ") })]
pub struct SelectError {
    pub mode: Mode,
    /// The names that would have fitted, e.g. `flash_all_except_storage.sh/.bat`.
    pub wanted: String,
    /// The flash scripts the package has.
    pub available: Vec<String>,
    pub hint: String,
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Pick the script for `mode` among the package's file names (paths are fine; only the last
/// component counts). For each candidate name the `prefer`red dialect wins, the other is the
/// fallback. Clean → `flash_all`; keep-data → the first of `flash_all_except_storage`,
/// `flash_all_except_data`, `flash_all_except_data_storage`, then any other
/// `flash_all_except*`; lock → `flash_all_lock` only, and never as a fallback for anything.
pub fn select_script<S: AsRef<str>>(names: &[S], mode: Mode, prefer: Dialect) -> Result<String, SelectError> {
    let scripts: Vec<&str> = names
        .iter()
        .map(|n| n.as_ref())
        .filter(|n| {
            let b = base_name(n).to_ascii_lowercase();
            b.starts_with("flash_all") && Dialect::from_file_name(&b).is_some()
        })
        .collect();
    let find = |stem: &str, d: Dialect| -> Option<String> {
        let want = format!("{stem}.{}", d.ext());
        scripts.iter().find(|n| base_name(n).eq_ignore_ascii_case(&want)).map(|n| n.to_string())
    };
    let stems: Vec<String> = match mode {
        Mode::Clean => vec!["flash_all".into()],
        Mode::Lock => vec!["flash_all_lock".into()],
        Mode::KeepData => {
            let mut v: Vec<String> = ["flash_all_except_storage", "flash_all_except_data", "flash_all_except_data_storage"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let mut others: Vec<String> = scripts
                .iter()
                .map(|n| base_name(n).to_ascii_lowercase())
                .filter(|b| b.starts_with("flash_all_except"))
                .filter_map(|b| b.rsplit_once('.').map(|(s, _)| s.to_string()))
                .filter(|s| !v.contains(s))
                .collect();
            others.sort();
            others.dedup();
            v.extend(others);
            v
        }
    };
    for stem in &stems {
        for d in [prefer, prefer.other()] {
            if let Some(found) = find(stem, d) {
                return Ok(found);
            }
        }
    }
    let wanted = match mode {
        Mode::KeepData => "flash_all_except_storage / _except_data / _except_data_storage (.sh or .bat)".to_string(),
        _ => format!("{}.sh or .bat", stems[0]),
    };
    let hint = match mode {
        Mode::Clean => "Check that this is a fastboot ROM package (a .tgz with images/ and flash_all scripts).",
        Mode::KeepData => "This package cannot keep user data; choose the clean mode if wiping the phone is acceptable.",
        Mode::Lock => "Relocking needs the package's own flash_all_lock script; mi-flash never relocks with another script.",
    };
    Err(SelectError {
        mode,
        wanted,
        available: scripts.iter().map(|n| base_name(n).to_string()).collect(),
        hint: hint.to_string(),
    })
}

/// The package files plan building may look at. Paths are relative to the package root (the
/// folder holding `images/` and the scripts), with `/` separators, e.g.
/// `images/anti_version.txt`.
pub trait PackageFiles {
    /// Does the file exist in the package?
    fn exists(&self, path: &str) -> bool;
    /// The contents of a small text file (anti_version.txt, platform_security_patch.txt);
    /// `None` when missing or too large to be such a file.
    fn read_small(&self, path: &str) -> Option<Vec<u8>>;
    /// The name of the package's top folder, which one old script (land, 2016) reads to pick
    /// its product. `None` when unknown.
    fn folder_name(&self) -> Option<String>;
}

/// An in-memory package view: for tests, previews, and callers that already hold the list.
#[derive(Debug, Clone, Default)]
pub struct MemoryFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    pub folder: Option<String>,
}

impl MemoryFiles {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a file (builder style).
    pub fn with(mut self, path: &str, contents: &[u8]) -> Self {
        self.files.insert(path.to_string(), contents.to_vec());
        self
    }
    pub fn with_folder(mut self, name: &str) -> Self {
        self.folder = Some(name.to_string());
        self
    }
}

impl PackageFiles for MemoryFiles {
    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }
    fn read_small(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).filter(|c| c.len() <= 64 * 1024).cloned()
    }
    fn folder_name(&self) -> Option<String> {
        self.folder.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anti_rule() {
        let c = AntiCheck { var: "anti".into(), max: 1, from: AntiSource::Script };
        assert!(c.allows(None));
        assert!(c.allows(Some(0)));
        assert!(c.allows(Some(1)));
        assert!(!c.allows(Some(2)));
    }

    #[test]
    fn product_prefix_and_alternatives() {
        let c = ProductCheck::new("^product: *lmi", "lmi").unwrap();
        assert!(c.matches("lmi"));
        assert!(c.matches("lmipro"));
        assert!(!c.matches("umi"));
        let c = ProductCheck::new("(?:^product: *karna)|(?:^product: *surya)", "karna or surya").unwrap();
        assert!(c.matches("surya") && c.matches("karna") && !c.matches("vayu"));
    }

    #[test]
    fn spl_and_number() {
        let s = SplCheck { var: "security-patch-level".into(), max: "2025-11-01".into(), from: "x".into() };
        assert!(s.allows(Some("2025-11-01")));
        assert!(s.allows(Some("2024-01-05")));
        assert!(!s.allows(Some("2025-12-01")));
        assert!(s.allows(None));
        let n = NumberCheck { var: "hw-revision".into(), refuse_if: CmpOp::Le, limit: 10000 };
        assert!(!n.allows(None));
        assert!(!n.allows(Some("10000")));
        assert!(n.allows(Some("10001")));
        assert!(!n.allows(Some("abc")));
    }

    #[test]
    fn selection() {
        let names = ["x/flash_all.bat", "x/flash_all.sh", "x/flash_all_lock.sh", "x/flash_all_except_data_storage.bat"];
        assert_eq!(select_script(&names, Mode::Clean, Dialect::Sh).unwrap(), "x/flash_all.sh");
        assert_eq!(select_script(&names, Mode::Clean, Dialect::Bat).unwrap(), "x/flash_all.bat");
        assert_eq!(select_script(&names, Mode::KeepData, Dialect::Sh).unwrap(), "x/flash_all_except_data_storage.bat");
        assert_eq!(select_script(&names, Mode::Lock, Dialect::Bat).unwrap(), "x/flash_all_lock.sh");
        let no_lock = ["flash_all.sh", "flash_all_lock_crc.bat"];
        let e = select_script(&no_lock, Mode::Lock, Dialect::Sh).unwrap_err();
        assert!(e.to_string().contains("flash_all.sh, flash_all_lock_crc.bat"), "{e}");
        let e = select_script(&["flash_all_lock.sh"], Mode::Clean, Dialect::Sh).unwrap_err();
        assert_eq!(e.available, vec!["flash_all_lock.sh"]);
        let keep = ["flash_all_except_data.sh", "flash_all_except_storage.bat"];
        assert_eq!(select_script(&keep, Mode::KeepData, Dialect::Sh).unwrap(), "flash_all_except_storage.bat");
    }

    #[test]
    fn json_round_trip() {
        let plan = Plan {
            script: "flash_all.sh".into(),
            steps: vec![
                Step {
                    action: Action::CheckProduct(ProductCheck::new("^product: *piano", "piano").unwrap()),
                    when: None,
                    source: SourceLine { file: "flash_all.sh".into(), line: 1, text: "x".into() },
                },
                Step {
                    action: Action::Flash(Flash { partition: "crclist".into(), image: "images/crclist.txt".into(), size: Some(3), sparse: Some(false) }),
                    when: Some(Condition::new("crc", "^crc: 1", false).unwrap()),
                    source: SourceLine { file: "flash_all.sh".into(), line: 2, text: "y".into() },
                },
            ],
            warnings: vec![],
            disabled: vec![],
        };
        let j = serde_json::to_value(&plan).unwrap();
        assert_eq!(j["steps"][0]["op"], "check-product");
        assert_eq!(j["steps"][0]["expected"], "piano");
        assert_eq!(j["steps"][1]["op"], "flash");
        assert_eq!(j["steps"][1]["size"], 3);
        assert_eq!(j["steps"][1]["when"]["var"], "crc");
        let back: Plan = serde_json::from_value(j).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn images_and_annotate() {
        let src = SourceLine { file: "f.sh".into(), line: 1, text: String::new() };
        let flash = |p: &str, i: &str| Step {
            action: Action::Flash(Flash { partition: p.into(), image: i.into(), size: None, sparse: None }),
            when: None,
            source: src.clone(),
        };
        let mut plan = Plan {
            script: "f.sh".into(),
            steps: vec![flash("tz", "images/tz.mbn"), flash("tzbak", "images/tz.mbn"), flash("super", "images/super.img")],
            ..Plan::default()
        };
        assert_eq!(plan.images(), vec!["images/tz.mbn", "images/super.img"]);
        plan.annotate(|i| (i == "images/super.img").then_some((100, true)));
        let Action::Flash(f) = &plan.steps[2].action else { panic!() };
        assert_eq!((f.size, f.sparse), (Some(100), Some(true)));
        let Action::Flash(f) = &plan.steps[0].action else { panic!() };
        assert_eq!((f.size, f.sparse), (None, None));
        assert!(plan.to_string().contains("3. flash super images/super.img (100 bytes, sparse)"));
    }
}
