//! grep / findstr search patterns, translated into Rust `regex` syntax.
//!
//! Scripts check device variables with `grep` (POSIX basic or extended expressions) and
//! `findstr` (its own small regex language). We translate each dialect character by character
//! so the plan keeps the script's exact meaning (prefix matches stay prefix matches) and refuse
//! constructs we cannot translate faithfully (back-references, for one).

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// POSIX basic regular expressions (plain `grep`), with the GNU `\|`, `\+`, `\?`.
    Bre,
    /// POSIX extended regular expressions (`grep -E`).
    Ere,
    /// `findstr /r`.
    Findstr,
}

/// A compiled search: what `grep` / `findstr` would report as a match for one line.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    /// Rust regex equivalent to the whole search (all alternatives, all flags).
    pub rust: String,
    /// The script's own patterns, one per alternative, for display.
    pub sources: Vec<String>,
    pub regex: Regex,
}

impl Matcher {
    pub fn is_match(&self, line: &str) -> bool {
        self.regex.is_match(line)
    }
}

fn push_literal(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

/// Translate one pattern. Errors are short reasons for a `ScriptError`.
pub(crate) fn translate(pat: &str, flavor: Flavor) -> Result<String, String> {
    let chars: Vec<char> = pat.chars().collect();
    let n = chars.len();
    let mut out = String::new();
    // Where a `*` has nothing to repeat (start, after `^`, after a group open or `|`), POSIX
    // and findstr read it literally.
    let mut at_start = true;
    let mut i = 0;
    while i < n {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err("the pattern ends with a lone backslash".into());
                };
                i += 2;
                match (flavor, next) {
                    (_, '<') | (_, '>') => {
                        out.push_str("\\b");
                        continue;
                    }
                    (Flavor::Bre, '(') => {
                        out.push('(');
                        at_start = true;
                        continue;
                    }
                    (Flavor::Bre, ')') => out.push(')'),
                    (Flavor::Bre, '|') => {
                        out.push('|');
                        at_start = true;
                        continue;
                    }
                    (Flavor::Bre, '+') | (Flavor::Bre, '?') | (Flavor::Bre, '{') | (Flavor::Bre, '}') => out.push(next),
                    (Flavor::Bre | Flavor::Ere, 'w' | 'W' | 's' | 'S' | 'b' | 'B') => {
                        out.push('\\');
                        out.push(next);
                    }
                    (_, d) if d.is_ascii_digit() => {
                        return Err(format!("back-reference \\{d} is not supported"));
                    }
                    (_, other) => push_literal(&mut out, other),
                }
                at_start = false;
            }
            '.' => {
                out.push('.');
                at_start = false;
                i += 1;
            }
            '*' => {
                if at_start {
                    out.push_str("\\*");
                } else {
                    out.push('*');
                }
                at_start = false;
                i += 1;
            }
            '^' => {
                let anchor = match flavor {
                    Flavor::Ere => true,
                    _ => at_start && out_is_group_start(&out),
                };
                if anchor {
                    out.push('^');
                } else {
                    out.push_str("\\^");
                    at_start = false;
                }
                i += 1;
            }
            '$' => {
                let at_end = i + 1 == n
                    || (flavor == Flavor::Bre && chars.get(i + 1) == Some(&'\\') && matches!(chars.get(i + 2), Some(')') | Some('|')));
                if flavor == Flavor::Ere || at_end {
                    out.push('$');
                } else {
                    out.push_str("\\$");
                }
                at_start = false;
                i += 1;
            }
            '[' => {
                i = translate_bracket(&chars, i, flavor, &mut out)?;
                at_start = false;
            }
            '(' | ')' | '|' | '+' | '?' | '{' | '}' if flavor == Flavor::Ere => {
                out.push(c);
                at_start = matches!(c, '(' | '|');
                i += 1;
            }
            _ => {
                push_literal(&mut out, c);
                at_start = false;
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `^` anchors only at the very start of a (sub)expression.
fn out_is_group_start(out: &str) -> bool {
    out.is_empty() || out.ends_with('(') || out.ends_with('|')
}

fn translate_bracket(chars: &[char], start: usize, flavor: Flavor, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    let mut body = String::new();
    if chars.get(i) == Some(&'^') {
        body.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated [ ] class".into());
        };
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        if c == '[' && chars.get(i + 1) == Some(&':') {
            // POSIX class such as [:digit:]: Rust understands the same spelling.
            let rest: String = chars[i..].iter().collect();
            let Some(end) = rest.find(":]") else {
                return Err("unterminated [: :] class".into());
            };
            let class = &rest[..end + 2];
            body.push_str(class);
            i += class.chars().count();
            continue;
        }
        if c == '\\' && flavor == Flavor::Findstr {
            let Some(&next) = chars.get(i + 1) else {
                return Err("unterminated [ ] class".into());
            };
            body.push('\\');
            body.push(next);
            i += 2;
            continue;
        }
        if c == '-' && !body.is_empty() && body != "^" && chars.get(i + 1) != Some(&']') {
            body.push('-');
            i += 1;
            continue;
        }
        if matches!(c, '[' | ']' | '\\' | '&' | '~' | '-' | '^') {
            body.push('\\');
        }
        body.push(c);
        i += 1;
    }
    out.push('[');
    out.push_str(&body);
    out.push(']');
    Ok(i)
}

/// How the alternatives of one search combine with its flags.
pub(crate) struct SearchSpec {
    pub patterns: Vec<String>,
    pub flavor: Flavor,
    pub literal: bool,
    pub ignore_case: bool,
    pub whole_line: bool,
    pub begin: bool,
    pub end: bool,
}

impl SearchSpec {
    pub fn build(self) -> Result<Matcher, String> {
        if self.patterns.is_empty() {
            return Err("the search has no pattern".into());
        }
        let mut alts = Vec::new();
        for p in &self.patterns {
            let mut t = if self.literal { regex::escape(p) } else { translate(p, self.flavor)? };
            if self.whole_line {
                t = format!("^(?:{t})$");
            } else {
                if self.begin {
                    t = format!("^(?:{t})");
                }
                if self.end {
                    t = format!("(?:{t})$");
                }
            }
            alts.push(t);
        }
        let mut rust = if alts.len() == 1 { alts.remove(0) } else { alts.iter().map(|a| format!("(?:{a})")).collect::<Vec<_>>().join("|") };
        if self.ignore_case {
            rust = format!("(?i){rust}");
        }
        let regex = Regex::new(&rust).map_err(|e| format!("the pattern does not translate to a valid expression: {e}"))?;
        Ok(Matcher { rust, sources: self.patterns, regex })
    }
}

/// Parse `grep` arguments (after the program name). `-o` / `-P` are only meaningful in value
/// extraction and are reported through `only_matching` / `perl`.
pub(crate) struct GrepArgs {
    pub spec: SearchSpec,
    pub only_matching: bool,
    pub perl: bool,
    pub quiet: bool,
}

pub(crate) fn parse_grep(args: &[String]) -> Result<GrepArgs, String> {
    let mut spec = SearchSpec { patterns: vec![], flavor: Flavor::Bre, literal: false, ignore_case: false, whole_line: false, begin: false, end: false };
    let mut only_matching = false;
    let mut perl = false;
    let mut quiet = false;
    let mut it = args.iter();
    let mut positional = Vec::new();
    let mut options_done = false;
    while let Some(a) = it.next() {
        if !options_done && a == "--" {
            options_done = true;
            continue;
        }
        if !options_done && a == "-e" {
            match it.next() {
                Some(p) => spec.patterns.push(p.clone()),
                None => return Err("grep -e needs a pattern".into()),
            }
            continue;
        }
        if !options_done && a.starts_with('-') && a.len() > 1 {
            for f in a[1..].chars() {
                match f {
                    'E' => spec.flavor = Flavor::Ere,
                    'G' => spec.flavor = Flavor::Bre,
                    'F' => spec.literal = true,
                    'P' => perl = true,
                    'o' => only_matching = true,
                    'q' | 's' => quiet = true,
                    'i' => spec.ignore_case = true,
                    'x' => spec.whole_line = true,
                    other => return Err(format!("grep option -{other} is not supported")),
                }
            }
            continue;
        }
        positional.push(a.clone());
    }
    if spec.patterns.is_empty() {
        if positional.is_empty() {
            return Err("grep has no pattern".into());
        }
        spec.patterns.push(positional.remove(0));
    }
    if !positional.is_empty() {
        return Err("grep reads files here; only a pipe into grep is understood".into());
    }
    if perl {
        // Perl syntax is close enough to Rust's for the value extractions scripts use.
        spec.flavor = Flavor::Ere;
    }
    Ok(GrepArgs { spec, only_matching, perl, quiet })
}

/// Parse `findstr` arguments. Without `/c:` every space-separated word of a search string is
/// an alternative (findstr's own rule); `/c:` makes the string one pattern.
pub(crate) fn parse_findstr(args: &[String]) -> Result<SearchSpec, String> {
    let mut spec = SearchSpec { patterns: vec![], flavor: Flavor::Findstr, literal: false, ignore_case: false, whole_line: false, begin: false, end: false };
    let mut regex_mode: Option<bool> = None;
    let mut c_strings = Vec::new();
    let mut plain = Vec::new();
    for a in args {
        if let Some(rest) = a.strip_prefix('/') {
            let lower = rest.to_ascii_lowercase();
            if let Some(s) = lower.strip_prefix("c:") {
                let _ = s;
                c_strings.push(rest[2..].to_string());
                continue;
            }
            match lower.as_str() {
                "r" => regex_mode = Some(true),
                "l" => regex_mode = Some(false),
                "i" => spec.ignore_case = true,
                "x" => spec.whole_line = true,
                "b" => spec.begin = true,
                "e" => spec.end = true,
                _ => return Err(format!("findstr option /{rest} is not supported")),
            }
            continue;
        }
        plain.push(a.clone());
    }
    if !c_strings.is_empty() {
        if !plain.is_empty() {
            return Err("findstr reads files here; only a pipe into findstr is understood".into());
        }
        spec.patterns = c_strings;
        spec.literal = regex_mode != Some(true);
    } else {
        let Some(first) = plain.first() else {
            return Err("findstr has no search string".into());
        };
        if plain.len() > 1 {
            return Err("findstr reads files here; only a pipe into findstr is understood".into());
        }
        spec.patterns = first.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
        spec.literal = regex_mode == Some(false);
    }
    Ok(spec)
}

/// The product (or other value) a pattern names, for display: `^product: *piano$` → `piano`.
pub(crate) fn shown_value(var: &str, source: &str) -> Option<String> {
    let s = source.strip_prefix('^').unwrap_or(source);
    let s = s.strip_prefix(&format!("{var}:"))?;
    let s = s.strip_prefix(" *").or_else(|| s.strip_prefix(' ')).unwrap_or(s);
    let s = s.strip_suffix('$').unwrap_or(s);
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        Some(s.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, f: Flavor) -> Regex {
        Regex::new(&translate(p, f).unwrap()).unwrap()
    }

    #[test]
    fn bre_prefix_and_anchor() {
        let r = m("^product: *lmi", Flavor::Bre);
        assert!(r.is_match("product: lmi"));
        assert!(r.is_match("product:lmipro"));
        assert!(!r.is_match("xproduct: lmi"));
        let r = m("^product: *ysl$", Flavor::Bre);
        assert!(r.is_match("product: ysl") && !r.is_match("product: ysl2"));
        // In BRE `|` is literal unless escaped.
        let r = m("^product: *a|b", Flavor::Bre);
        assert!(!r.is_match("product: b"));
        let r = m("^product: *a\\|^product: *b", Flavor::Bre);
        assert!(r.is_match("product: b"));
    }

    #[test]
    fn ere_alternatives() {
        let r = m("^product: *MSM8953$|^product: *mido$", Flavor::Ere);
        assert!(r.is_match("product: mido") && r.is_match("product: MSM8953") && !r.is_match("product: midox"));
    }

    #[test]
    fn findstr_rules() {
        let r = m("^crc: 1", Flavor::Findstr);
        assert!(r.is_match("crc: 1") && !r.is_match("crc: 0"));
        let r = m("a^b$c", Flavor::Findstr);
        assert!(r.is_match("a^b$c"));
        let spec = parse_findstr(&["/r".into(), "/c:^product: *cereus".into()]).unwrap();
        let mm = spec.build().unwrap();
        assert!(mm.is_match("product: cereus"));
        let spec = parse_findstr(&["corot chopin".into()]).unwrap();
        let mm = spec.build().unwrap();
        assert!(mm.is_match("product: chopin") && mm.is_match("corot"));
        // /c: without /r is literal.
        let mm = parse_findstr(&["/c:a.b".into()]).unwrap().build().unwrap();
        assert!(mm.is_match("a.b") && !mm.is_match("axb"));
    }

    #[test]
    fn brackets_and_refusals() {
        let r = m("[0-9][[:digit:]]x[]a]", Flavor::Bre);
        assert!(r.is_match("12x]") && r.is_match("34xa"));
        assert!(translate("\\(a\\)\\1", Flavor::Bre).is_err());
        assert!(translate("abc\\", Flavor::Ere).is_err());
        assert!(translate("[abc", Flavor::Ere).is_err());
    }

    #[test]
    fn shown() {
        assert_eq!(shown_value("product", "^product: *piano").as_deref(), Some("piano"));
        assert_eq!(shown_value("product", "^product: land").as_deref(), Some("land"));
        assert_eq!(shown_value("product", "product: *landx$").as_deref(), Some("landx"));
        assert_eq!(shown_value("product", "chopin"), None);
    }
}
