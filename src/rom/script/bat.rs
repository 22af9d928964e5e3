//! The cmd.exe dialect: units of lines (a line plus the lines its open parentheses span),
//! `%VAR%` expansion at read time as cmd does it, a character-level parser for the subset
//! flash scripts use (`&`, `||`, `&&`, `|` with cmd's precedence, `( )` blocks, `if`,
//! `for /f`, `set`, labels), vetting at parse time — so branches never taken are vetted too —
//! and the symbolic run that feeds [`Planner`].

use std::collections::HashSet;

use regex::Regex;

use super::core::{has_sym, printable, Cond, Flow, Planner, Sym, Truth};
use super::pattern::parse_findstr;
use super::{ScriptError, ScriptErrorKind};
use crate::rom::plan::{CmpOp, PackageFiles, Plan};

type PResult<T> = Result<T, (usize, String, ScriptErrorKind)>;
type RResult<T> = Result<T, ScriptError>;

// ----- units and expansion -----------------------------------------------------------------

struct Unit {
    line: usize,
    text: String,
}

fn comment_body(trimmed: &str) -> Option<&str> {
    let t = trimmed.trim_start_matches('@');
    if let Some(rest) = t.strip_prefix("::") {
        return Some(rest);
    }
    let lower = t.to_ascii_lowercase();
    if lower == "rem" {
        return Some("");
    }
    if lower.starts_with("rem ") || lower.starts_with("rem\t") {
        return Some(&t[4..]);
    }
    None
}

/// Paren balance of one raw line (quotes and `^` escapes respected).
fn paren_delta(line: &str) -> i64 {
    let mut d = 0;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '^' if !quoted => {
                chars.next();
            }
            '(' if !quoted => d += 1,
            ')' if !quoted => d -= 1,
            _ => {}
        }
    }
    d
}

fn split_units(text: &str) -> Result<Vec<Unit>, (usize, String)> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut units = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = i;
        let trimmed = lines[i].trim();
        if trimmed.is_empty() || trimmed.starts_with(':') || comment_body(trimmed).is_some() {
            units.push(Unit { line: i + 1, text: lines[i].to_string() });
            i += 1;
            continue;
        }
        let mut depth = paren_delta(lines[i]);
        let mut text = lines[i].to_string();
        i += 1;
        while depth > 0 {
            let Some(next) = lines.get(i) else {
                return Err((first + 1, "a `(` is never closed".into()));
            };
            depth += paren_delta(next);
            text.push('\n');
            text.push_str(next);
            i += 1;
        }
        units.push(Unit { line: first + 1, text });
    }
    Ok(units)
}

// ----- syntax tree -------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct BWord {
    /// Carets processed, quotes kept (what `if` compares).
    text: String,
    /// Quotes removed too (what a program receives as its argument).
    cooked: String,
}

#[derive(Debug, Clone)]
struct BRedir {
    fd: Option<u32>,
    op: String,
    target: String,
}

#[derive(Debug, Clone)]
struct BSimple {
    name: String,
    args: Vec<BWord>,
    redirs: Vec<BRedir>,
    line: usize,
}

#[derive(Debug, Clone)]
enum BTest {
    Exist(BWord),
    ErrorLevel(BWord),
    Defined(BWord),
    Cmp(BWord, String, BWord),
}

#[derive(Debug, Clone)]
enum ForSet {
    File(String),
    Str(String),
    Getvar { fastboot: Vec<BWord>, findstr: Vec<BWord> },
    Date(String),
}

#[derive(Debug, Clone)]
enum BNode {
    Simple(BSimple),
    Pipe(Vec<BSimple>, usize),
    And(Box<BNode>, Box<BNode>, usize),
    Or(Box<BNode>, Box<BNode>, usize),
    Seq(Vec<BNode>),
    If { not: bool, test: BTest, then: Box<BNode>, els: Option<Box<BNode>>, line: usize },
    For { tokens: usize, delims: Option<String>, var: char, set: ForSet, body: Box<BNode>, line: usize },
    Label(String),
    Nop,
}

const VOCABULARY: &str = "fastboot, echo, set, if, for /f, findstr, exit, goto and pause";

fn refused_command(name: &str) -> String {
    let what = match name {
        "del" | "erase" | "rd" | "rmdir" | "move" | "copy" | "xcopy" | "ren" | "format" | "attrib" | "mkdir" | "md" => "changes files",
        "curl" | "wget" | "bitsadmin" | "ftp" | "certutil" => "talks to the network",
        "call" | "start" | "cmd" | "powershell" | "wscript" | "cscript" | "mshta" | "rundll32" | "reg" => "runs other code",
        _ => "is not part of a flash script",
    };
    format!("`{name}` {what}; flash scripts only use {VOCABULARY}")
}

struct BatParser {
    c: Vec<char>,
    pos: usize,
    line: usize,
    /// `( )` blocks open around the current position.
    depth: usize,
    /// Commands being parsed inside one another (`if`, `for` and `( )` bodies).
    nesting: usize,
}

impl BatParser {
    fn new(text: &str, line: usize) -> Self {
        BatParser { c: text.chars().collect(), pos: 0, line, depth: 0, nesting: 0 }
    }
    fn peek(&self) -> Option<char> {
        self.c.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.c.get(self.pos + n).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.bump();
        }
    }
    fn syntax<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err((self.line, msg.into(), ScriptErrorKind::Syntax))
    }
    fn at_end_of_command(&self) -> bool {
        match self.peek() {
            None | Some('\n') | Some('&') | Some('|') => true,
            Some(')') => self.depth > 0,
            _ => false,
        }
    }

    fn parse(mut self) -> PResult<Vec<BNode>> {
        let nodes = self.seq(false)?;
        Ok(nodes)
    }

    fn seq(&mut self, in_block: bool) -> PResult<Vec<BNode>> {
        let mut nodes = Vec::new();
        loop {
            while matches!(self.peek(), Some(' ') | Some('\t') | Some('\n')) {
                self.bump();
            }
            match self.peek() {
                None => {
                    if in_block {
                        return self.syntax("a `(` block is never closed");
                    }
                    break;
                }
                Some(')') if in_block => break,
                Some(')') => return self.syntax("a `)` without a matching `(`"),
                _ => {}
            }
            nodes.push(self.amp()?);
            self.skip_ws();
            match self.peek() {
                None | Some('\n') => {}
                Some(')') if in_block => {}
                _ => return self.syntax("unexpected text after a command"),
            }
        }
        Ok(nodes)
    }

    fn amp(&mut self) -> PResult<BNode> {
        let mut items = vec![self.or()?];
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.peek_at(1) != Some('&') {
                self.bump();
                self.skip_ws();
                if self.at_end_of_command() {
                    return self.syntax("nothing after `&`");
                }
                items.push(self.or()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 { items.remove(0) } else { BNode::Seq(items) })
    }

    fn or(&mut self) -> PResult<BNode> {
        let mut left = self.and()?;
        let mut chained = 0;
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
                let line = self.line;
                self.bump();
                self.bump();
                self.skip_ws();
                chained += 1;
                self.check_chain(chained)?;
                let right = self.and()?;
                left = BNode::Or(Box::new(left), Box::new(right), line);
            } else {
                break;
            }
        }
        Ok(left)
    }

    fn and(&mut self) -> PResult<BNode> {
        let mut left = self.pipe()?;
        let mut chained = 0;
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
                let line = self.line;
                self.bump();
                self.bump();
                self.skip_ws();
                chained += 1;
                self.check_chain(chained)?;
                let right = self.pipe()?;
                left = BNode::And(Box::new(left), Box::new(right), line);
            } else {
                break;
            }
        }
        Ok(left)
    }

    fn check_chain(&self, chained: usize) -> PResult<()> {
        if chained > super::MAX_CHAIN {
            let msg = format!("more than {} `&&` / `||` in one command are not part of a flash script", super::MAX_CHAIN);
            return Err((self.line, msg, ScriptErrorKind::Refused));
        }
        Ok(())
    }

    fn pipe(&mut self) -> PResult<BNode> {
        let line = self.line;
        let first = self.command()?;
        self.skip_ws();
        if !(self.peek() == Some('|') && self.peek_at(1) != Some('|')) {
            if let BNode::Simple(s) = &first {
                if s.name == "findstr" {
                    return Err((s.line, "`findstr` here does not read a pipe; flash scripts only search fastboot's output".into(), ScriptErrorKind::Refused));
                }
            }
            return Ok(first);
        }
        let BNode::Simple(first) = first else {
            return self.syntax("only simple commands can be piped");
        };
        let mut cmds = vec![first];
        while self.peek() == Some('|') && self.peek_at(1) != Some('|') {
            self.bump();
            self.skip_ws();
            match self.command()? {
                BNode::Simple(s) => cmds.push(s),
                _ => return self.syntax("only simple commands can be piped"),
            }
            self.skip_ws();
        }
        if cmds.len() > 2 {
            return Err((line, "pipelines of more than two commands are not part of a flash script".into(), ScriptErrorKind::Refused));
        }
        if cmds[1].name != "findstr" {
            return Err((line, format!("a pipe into `{}`: only `findstr` may read another command's output", cmds[1].name), ScriptErrorKind::Refused));
        }
        if cmds[0].name != "fastboot" && cmds[0].name != "echo" {
            return Err((line, format!("piping the output of `{}` is not part of a flash script", cmds[0].name), ScriptErrorKind::Refused));
        }
        Ok(BNode::Pipe(cmds, line))
    }

    fn command(&mut self) -> PResult<BNode> {
        // An `if … (` block is two nested commands (the `if` and its `( )` body), and the
        // innermost command one more: this gives the same 32 block levels as the sh dialect.
        if self.nesting > 2 * super::MAX_NESTING {
            let msg = format!("blocks nested more than {} deep are not part of a flash script", super::MAX_NESTING);
            return Err((self.line, msg, ScriptErrorKind::Refused));
        }
        self.nesting += 1;
        let node = self.command_at_this_level();
        self.nesting -= 1;
        node
    }

    fn command_at_this_level(&mut self) -> PResult<BNode> {
        self.skip_ws();
        while self.peek() == Some('@') {
            self.bump();
            self.skip_ws();
        }
        let line = self.line;
        match self.peek() {
            Some('(') => {
                self.bump();
                self.depth += 1;
                let body = self.seq(true)?;
                if self.peek() != Some(')') {
                    return self.syntax("a `(` block is never closed");
                }
                self.bump();
                self.depth -= 1;
                return Ok(BNode::Seq(body));
            }
            Some(':') => {
                let mut text = String::new();
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    text.push(c);
                    self.bump();
                }
                if text.starts_with("::") {
                    return Ok(BNode::Nop);
                }
                let name = text[1..].split_whitespace().next().unwrap_or("").to_ascii_lowercase();
                return Ok(BNode::Label(name));
            }
            None => return self.syntax("a command was expected"),
            _ => {}
        }
        if self.at_end_of_command() {
            return self.syntax("a command was expected");
        }
        let name_word = self.word()?;
        let name = name_word.cooked.to_ascii_lowercase();
        match name.as_str() {
            "if" => return self.if_cmd(line),
            "for" => return self.for_cmd(line),
            "rem" => {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
                return Ok(BNode::Nop);
            }
            _ => {}
        }
        let mut s = BSimple { name, args: Vec::new(), redirs: Vec::new(), line };
        loop {
            self.skip_ws();
            if self.at_end_of_command() {
                break;
            }
            let digit_redir = self.peek().is_some_and(|c| c.is_ascii_digit()) && matches!(self.peek_at(1), Some('>') | Some('<'));
            if digit_redir || matches!(self.peek(), Some('>') | Some('<')) {
                s.redirs.push(self.redirection()?);
                continue;
            }
            let w = self.word()?;
            s.args.push(w);
        }
        let known = matches!(s.name.as_str(), "fastboot" | "echo" | "set" | "exit" | "goto" | "pause" | "findstr") || s.name.starts_with("echo.");
        if !known {
            return Err((line, refused_command(&s.name), ScriptErrorKind::Refused));
        }
        for r in &s.redirs {
            let ok = if r.op.ends_with('&') { matches!(r.target.as_str(), "1" | "2") } else { r.target.eq_ignore_ascii_case("nul") };
            if !ok {
                return Err((line, format!("the redirection `{}{}{}` writes or reads a file; flash scripts only use `2>&1`", r.fd.map(|f| f.to_string()).unwrap_or_default(), r.op, r.target), ScriptErrorKind::Refused));
            }
        }
        Ok(BNode::Simple(s))
    }

    fn redirection(&mut self) -> PResult<BRedir> {
        let mut fd = None;
        if let Some(c) = self.peek().filter(char::is_ascii_digit) {
            fd = c.to_digit(10);
            self.bump();
        }
        let mut op = String::new();
        if let Some(c) = self.bump() {
            op.push(c);
        }
        if op == ">" && self.peek() == Some('>') {
            self.bump();
            op.push('>');
        }
        if self.peek() == Some('&') {
            self.bump();
            op.push('&');
            let mut target = String::new();
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                target.push(c);
                self.bump();
            }
            return Ok(BRedir { fd, op, target });
        }
        self.skip_ws();
        let target = self.word()?.cooked;
        Ok(BRedir { fd, op, target })
    }

    /// One argument: up to whitespace or an operator outside quotes.
    fn word(&mut self) -> PResult<BWord> {
        let mut text = String::new();
        let mut cooked = String::new();
        let mut quoted = false;
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            if quoted {
                self.bump();
                text.push(c);
                if c == '"' {
                    quoted = false;
                } else {
                    cooked.push(c);
                }
                continue;
            }
            match c {
                ' ' | '\t' | '&' | '|' | '<' | '>' => break,
                ')' if self.depth > 0 => break,
                '"' => {
                    self.bump();
                    text.push(c);
                    quoted = true;
                }
                '^' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') | None => {}
                        Some(n) => {
                            text.push(n);
                            cooked.push(n);
                        }
                    }
                }
                _ => {
                    self.bump();
                    text.push(c);
                    cooked.push(c);
                }
            }
        }
        if text.is_empty() {
            return self.syntax("an argument was expected");
        }
        Ok(BWord { text, cooked })
    }

    fn body(&mut self) -> PResult<BNode> {
        self.skip_ws();
        if self.peek() == Some('(') {
            self.command()
        } else {
            if self.at_end_of_command() {
                return self.syntax("a command was expected");
            }
            self.amp()
        }
    }

    fn if_cmd(&mut self, line: usize) -> PResult<BNode> {
        let mut not = false;
        let mut word;
        loop {
            self.skip_ws();
            word = self.word()?;
            match word.cooked.to_ascii_lowercase().as_str() {
                "/i" => {
                    return Err((line, "case-insensitive `if /i` is not supported".into(), ScriptErrorKind::Unsupported));
                }
                "not" => not = !not,
                _ => break,
            }
        }
        self.skip_ws();
        let test = match word.cooked.to_ascii_lowercase().as_str() {
            "exist" => BTest::Exist(self.word()?),
            "errorlevel" => BTest::ErrorLevel(self.word()?),
            "defined" => BTest::Defined(self.word()?),
            _ => {
                if let Some((l, r)) = word.text.split_once("==") {
                    let rhs = if r.is_empty() {
                        self.skip_ws();
                        self.word()?
                    } else {
                        BWord { text: r.to_string(), cooked: r.replace('"', "") }
                    };
                    BTest::Cmp(BWord { text: l.to_string(), cooked: l.replace('"', "") }, "==".into(), rhs)
                } else if self.peek() == Some('=') && self.peek_at(1) == Some('=') {
                    self.bump();
                    self.bump();
                    self.skip_ws();
                    BTest::Cmp(word, "==".into(), self.word()?)
                } else {
                    let op = self.word()?.cooked.to_ascii_uppercase();
                    if !matches!(op.as_str(), "EQU" | "NEQ" | "LSS" | "LEQ" | "GTR" | "GEQ") {
                        return self.syntax(format!("`if` with an unknown comparison `{op}`"));
                    }
                    self.skip_ws();
                    let rhs = self.word()?;
                    // `if %A% GTR %B% set ...` with B empty reads `set` as the operand; cmd then
                    // runs the assignment as a program and the check silently does nothing.
                    if rhs.cooked.eq_ignore_ascii_case("set") {
                        return Err((line, format!("this `if ... {op}` has nothing to compare with: a value the script expects is empty (is a package file it reads missing, such as images/platform_security_patch.txt?)"), ScriptErrorKind::Package));
                    }
                    BTest::Cmp(word, op, rhs)
                }
            }
        };
        self.skip_ws();
        let block = self.peek() == Some('(');
        let then = self.body()?;
        let mut els = None;
        if block {
            self.skip_ws();
            let save = (self.pos, self.line);
            if self.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'e')) {
                let w = self.word()?;
                if w.cooked.eq_ignore_ascii_case("else") {
                    els = Some(Box::new(self.body()?));
                } else {
                    (self.pos, self.line) = save;
                }
            }
        }
        Ok(BNode::If { not, test, then: Box::new(then), els, line })
    }

    fn for_cmd(&mut self, line: usize) -> PResult<BNode> {
        self.skip_ws();
        let sw = self.word()?.cooked.to_ascii_lowercase();
        if sw != "/f" {
            return Err((line, format!("`for {sw}` is not part of a flash script (only `for /f`)"), ScriptErrorKind::Unsupported));
        }
        self.skip_ws();
        let mut opts = String::new();
        if self.peek() == Some('"') {
            opts = self.word()?.cooked;
            self.skip_ws();
        }
        let var = self.word()?.cooked;
        let var_char = match var.strip_prefix('%').map(|v| v.chars().collect::<Vec<_>>()) {
            Some(v) if v.len() == 1 && v[0].is_ascii_alphabetic() => v[0],
            _ => return self.syntax(format!("`for /f` needs a loop variable like %%i, not `{var}`")),
        };
        self.skip_ws();
        if !self.word()?.cooked.eq_ignore_ascii_case("in") {
            return self.syntax("`for /f` without `in`");
        }
        self.skip_ws();
        if self.bump() != Some('(') {
            return self.syntax("`for /f ... in` without `(`");
        }
        let mut set = String::new();
        let mut quoted = false;
        let mut depth = 1;
        loop {
            let Some(c) = self.bump() else {
                return self.syntax("the set of `for /f` is never closed");
            };
            match c {
                '\n' => return self.syntax("the set of `for /f` is never closed"),
                '"' => {
                    quoted = !quoted;
                    set.push(c);
                }
                '^' if !quoted => {
                    if let Some(n) = self.bump() {
                        set.push(n);
                    }
                }
                '(' if !quoted => {
                    depth += 1;
                    set.push(c);
                }
                ')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    set.push(c);
                }
                _ => set.push(c),
            }
        }
        self.skip_ws();
        if !self.word()?.cooked.eq_ignore_ascii_case("do") {
            return self.syntax("`for /f` without `do`");
        }
        // Options.
        let mut tokens = 1usize;
        let mut delims = None;
        let mut usebackq = false;
        let mut rest = opts.as_str();
        while !rest.trim_start().is_empty() {
            rest = rest.trim_start();
            if let Some(d) = rest.strip_prefix("delims=") {
                delims = Some(d.to_string());
                break;
            } else if let Some(t) = rest.strip_prefix("tokens=") {
                let (num, after) = t.split_at(t.find(' ').unwrap_or(t.len()));
                tokens = num.parse().map_err(|_| (line, format!("`tokens={num}` is not supported (one token number only)"), ScriptErrorKind::Unsupported))?;
                if tokens == 0 {
                    return self.syntax("`tokens=0`");
                }
                rest = after;
            } else if let Some(after) = rest.strip_prefix("usebackq") {
                usebackq = true;
                rest = after;
            } else {
                return Err((line, format!("the `for /f` option `{rest}` is not supported"), ScriptErrorKind::Unsupported));
            }
        }
        let s = set.trim();
        let inner = |q: char| s.strip_prefix(q).and_then(|x| x.strip_suffix(q)).map(str::to_string);
        let set = match (usebackq, inner('"'), inner('\''), inner('`')) {
            (true, Some(f), _, _) => ForSet::File(f),
            (true, _, Some(st), _) => ForSet::Str(st),
            (true, _, _, Some(cmd)) | (false, _, Some(cmd), _) => recognise_for_command(&cmd, line)?,
            (false, Some(st), _, _) => ForSet::Str(st),
            _ => ForSet::File(s.to_string()),
        };
        let body = self.body()?;
        Ok(BNode::For { tokens, delims, var: var_char, set, body: Box::new(body), line })
    }
}

fn recognise_for_command(cmd: &str, line: usize) -> PResult<ForSet> {
    let shown = printable(cmd.trim());
    let generic = || (line, format!("`for /f` runs `{shown}`; flash scripts only read `fastboot getvar` this way (and convert a date with powershell)"), ScriptErrorKind::Refused);
    // The one powershell use in Xiaomi scripts: a date to seconds since 1970. Matched on the
    // raw text as a whole, never run.
    let re = Regex::new(r#"^\s*powershell\s+-Command\s+"\$dateString = '([^'"]*)'; \$date = Get-Date \$dateString; \(\$date - \(Get-Date '1970-01-01'\)\)\.TotalSeconds"\s*$"#).map_err(|_| generic())?;
    if let Some(c) = re.captures(cmd) {
        return Ok(ForSet::Date(c.get(1).map_or(String::new(), |m| m.as_str().to_string())));
    }
    let nodes = BatParser::new(cmd, line).parse().map_err(|_| generic())?;
    match nodes.as_slice() {
        [BNode::Pipe(cmds, _)] if cmds[0].name == "fastboot" => Ok(ForSet::Getvar { fastboot: cmds[0].args.clone(), findstr: cmds[1].args.clone() }),
        _ => Err(generic()),
    }
}

fn is_handler(n: &BNode) -> bool {
    match n {
        BNode::Simple(s) => matches!(s.name.as_str(), "echo" | "exit" | "goto" | "pause") || s.name.starts_with("echo."),
        BNode::And(a, b, _) | BNode::Or(a, b, _) => is_handler(a) && is_handler(b),
        BNode::Seq(v) => v.iter().all(is_handler),
        BNode::Nop => true,
        _ => false,
    }
}

fn contains_fastboot(n: &BNode) -> Option<usize> {
    match n {
        BNode::Simple(s) => (s.name == "fastboot").then_some(s.line),
        BNode::Pipe(c, l) => c.iter().any(|s| s.name == "fastboot").then_some(*l),
        BNode::And(a, b, _) | BNode::Or(a, b, _) => contains_fastboot(a).or_else(|| contains_fastboot(b)),
        BNode::Seq(v) => v.iter().find_map(contains_fastboot),
        BNode::If { then, els, .. } => contains_fastboot(then).or_else(|| els.as_deref().and_then(contains_fastboot)),
        BNode::For { body, set, line, .. } => matches!(set, ForSet::Getvar { .. }).then_some(*line).or_else(|| contains_fastboot(body)),
        BNode::Label(_) | BNode::Nop => None,
    }
}

// ----- symbolic run ------------------------------------------------------------------------

struct Bat<'a> {
    p: Planner<'a>,
    status: Truth,
    for_vars: Vec<(char, String)>,
    labels: HashSet<String>,
    gotos: Vec<(String, usize)>,
}

impl<'a> super::core::BranchRunner<'a> for Bat<'a> {
    type Body = BNode;
    fn planner(&mut self) -> &mut Planner<'a> {
        &mut self.p
    }
    fn status(&mut self) -> &mut Truth {
        &mut self.status
    }
    fn run_body(&mut self, body: &BNode) -> RResult<Flow> {
        self.run(body)
    }
}

impl<'a> Bat<'a> {
    fn fail(&self, line: usize, why: impl Into<String>) -> ScriptError {
        self.p.err(line, ScriptErrorKind::Unsupported, why)
    }

    /// cmd's read-time expansion of `%VAR%`, `%*`, `%~dp0`, `%%`.
    fn expand(&mut self, text: &str, first_line: usize) -> RResult<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut line = first_line;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\n' {
                line += 1;
            }
            if c != '%' {
                out.push(c);
                i += 1;
                continue;
            }
            match chars.get(i + 1).copied() {
                Some('%') => {
                    out.push('%');
                    i += 2;
                }
                Some('*') => {
                    out.push_str(&self.p.sym(Sym::Args).map_err(|r| self.fail(line, r))?);
                    i += 2;
                }
                Some('~') => {
                    let mut j = i + 2;
                    let mut mods = String::new();
                    while let Some(&m) = chars.get(j) {
                        if m.is_ascii_alphabetic() {
                            mods.push(m);
                            j += 1;
                        } else {
                            break;
                        }
                    }
                    match chars.get(j) {
                        Some('0') if mods.eq_ignore_ascii_case("dp") => {
                            out.push_str(&self.p.sym(Sym::Root).map_err(|r| self.fail(line, r))?);
                            i = j + 1;
                        }
                        Some(d) if d.is_ascii_digit() => {
                            return Err(self.p.err(line, ScriptErrorKind::Refused, format!("`%~{mods}{d}` refers to the script's own path or arguments; flash scripts only use `%~dp0`")));
                        }
                        _ => {
                            // `%~nxi` inside a for loop: kept for the loop to substitute.
                            out.push('%');
                            i += 1;
                        }
                    }
                }
                Some(d) if d.is_ascii_digit() => {
                    return Err(self.p.err(line, ScriptErrorKind::Refused, format!("`%{d}` refers to the script's arguments; flash scripts only pass `%*` to fastboot")));
                }
                _ => {
                    let end = chars[i + 1..].iter().position(|&x| x == '%' || x == '\n').map(|p| p + i + 1);
                    match end {
                        Some(e) if chars[e] == '%' && e > i + 1 => {
                            let name: String = chars[i + 1..e].iter().collect();
                            let v = self.variable(&name, line)?;
                            out.push_str(&v);
                            i = e + 1;
                        }
                        _ => {
                            // A lone `%` (e.g. `%i` of a for loop) stays.
                            out.push('%');
                            i += 1;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn variable(&mut self, spec: &str, line: usize) -> RResult<String> {
        let (name, edit) = match spec.split_once(':') {
            Some((n, e)) => (n, Some(e)),
            None => (spec, None),
        };
        let key = name.to_ascii_uppercase();
        let value = match self.p.env.get(&key) {
            Some(v) => v.clone(),
            None => match key.as_str() {
                "ERRORLEVEL" => self.p.sym(Sym::Status(self.status.clone())).map_err(|r| self.fail(line, r))?,
                "CD" => self.p.sym(Sym::Root).map_err(|r| self.fail(line, r))?,
                "DATE" | "TIME" | "RANDOM" | "CMDCMDLINE" | "CMDEXTVERSION" => {
                    return Err(self.fail(line, format!("`%{name}%` changes from run to run; a plan cannot depend on it")));
                }
                _ => String::new(),
            },
        };
        let Some(edit) = edit else { return Ok(value) };
        if let Some(Sym::Unknown(_)) = self.p.only_sym(&value) {
            return Ok(value);
        }
        if has_sym(&value) {
            return Err(self.fail(line, format!("editing `%{spec}%` needs a value only known when flashing")));
        }
        if let Some(range) = edit.strip_prefix('~') {
            let (a, b) = match range.split_once(',') {
                Some((a, b)) => (a, Some(b)),
                None => (range, None),
            };
            let chars: Vec<char> = value.chars().collect();
            let n = chars.len() as i64;
            let parse = |s: &str| s.trim().parse::<i64>().map_err(|_| self.fail(line, format!("`%{spec}%`: not a number")));
            let mut start = parse(a)?;
            if start < 0 {
                start = n.saturating_add(start).max(0);
            }
            let start = start.min(n);
            let end = match b {
                None => n,
                Some(b) => {
                    let len = parse(b)?;
                    if len < 0 { n.saturating_add(len).max(start) } else { start.saturating_add(len).min(n) }
                }
            };
            return Ok(chars[start as usize..end.max(start) as usize].iter().collect());
        }
        if let Some((from, to)) = edit.split_once('=') {
            if from.is_empty() || from.starts_with('*') {
                return Err(self.fail(line, format!("`%{spec}%` is not supported")));
            }
            let re = Regex::new(&format!("(?i){}", regex::escape(from))).map_err(|e| self.fail(line, e.to_string()))?;
            return Ok(re.replace_all(&value, regex::NoExpand(to)).into_owned());
        }
        Err(self.fail(line, format!("`%{spec}%` is not supported")))
    }

    /// Substitute `%i` / `%~nxi` of the running for loops.
    fn loop_vars(&mut self, s: &str, line: usize) -> RResult<String> {
        if self.for_vars.is_empty() || !s.contains('%') {
            return Ok(s.to_string());
        }
        let chars: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '%' {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let mut j = i + 1;
            let mut mods = String::new();
            if chars.get(j) == Some(&'~') {
                j += 1;
                while let Some(&m) = chars.get(j) {
                    if "fdpnxsatz".contains(m.to_ascii_lowercase()) && chars.get(j + 1).is_some_and(|n| n.is_ascii_alphabetic()) {
                        mods.push(m.to_ascii_lowercase());
                        j += 1;
                    } else {
                        break;
                    }
                }
            }
            let var = chars.get(j).copied();
            let found = var.and_then(|v| self.for_vars.iter().rev().find(|(c, _)| *c == v).map(|(_, val)| val.clone()));
            match found {
                Some(val) => {
                    let v = if mods.is_empty() && chars.get(i + 1) != Some(&'~') { val } else { self.path_part(&val, &mods, line)? };
                    out.push_str(&v);
                    i = j + 1;
                }
                None => {
                    out.push('%');
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// `%~n`, `%~x`, `%~nx` of a loop value (the package folder for `%cd%`).
    fn path_part(&mut self, val: &str, mods: &str, line: usize) -> RResult<String> {
        let full = if self.p.only_sym(val) == Some(&Sym::Root) {
            match self.p.files.folder_name() {
                Some(f) => f,
                None => {
                    return self.p.sym(Sym::Unknown("the script reads the package folder name, which is not known here".into())).map_err(|r| self.fail(line, r));
                }
            }
        } else if has_sym(val) {
            return Err(self.fail(line, "a path modifier on a value only known when flashing"));
        } else {
            val.trim_matches('"').rsplit(['\\', '/']).next().unwrap_or("").to_string()
        };
        let (stem, ext) = match full.rfind('.') {
            Some(p) if p > 0 => (full[..p].to_string(), full[p..].to_string()),
            _ => (full.clone(), String::new()),
        };
        match mods {
            "n" => Ok(stem),
            "x" => Ok(ext),
            "nx" | "xn" => Ok(full),
            "" => Ok(val.trim_matches('"').to_string()),
            other => Err(self.fail(line, format!("the loop modifier `~{other}` is not supported"))),
        }
    }

    fn words(&mut self, ws: &[BWord], line: usize) -> RResult<Vec<BWord>> {
        let mut out = Vec::new();
        for w in ws {
            out.push(BWord { text: self.loop_vars(&w.text, line)?, cooked: self.loop_vars(&w.cooked, line)? });
        }
        Ok(out)
    }

    fn run_all(&mut self, nodes: &[BNode]) -> RResult<Flow> {
        for n in nodes {
            if self.run(n)? == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Normal)
    }

    fn run(&mut self, n: &BNode) -> RResult<Flow> {
        match n {
            BNode::Simple(s) => self.simple(s),
            BNode::Pipe(cmds, line) => {
                self.status = self.pipe(cmds, *line)?;
                Ok(Flow::Normal)
            }
            BNode::And(a, b, line) => {
                if self.run(a)? == Flow::Exit {
                    return Ok(Flow::Exit);
                }
                match self.status.clone() {
                    Truth::Known(true) | Truth::Fallible => self.run(b),
                    Truth::Known(false) => Ok(Flow::Normal),
                    Truth::OnFailure => {
                        if !is_handler(b) {
                            return Err(self.fail(*line, "after a failed fastboot command this script goes on doing something else; mi-flash always stops at the first failure, so it cannot follow"));
                        }
                        Ok(Flow::Normal)
                    }
                    Truth::Device(c) => {
                        let (flow, st) = self.conditional(c, b, None, Truth::Known(false), *line)?;
                        self.status = st;
                        Ok(flow)
                    }
                }
            }
            BNode::Or(a, b, line) => {
                if self.run(a)? == Flow::Exit {
                    return Ok(Flow::Exit);
                }
                match self.status.clone() {
                    Truth::Known(false) | Truth::OnFailure => self.run(b),
                    Truth::Known(true) => Ok(Flow::Normal),
                    Truth::Fallible => {
                        if !is_handler(b) {
                            return Err(self.fail(*line, "after a failed fastboot command this script goes on doing something else; mi-flash always stops at the first failure, so it cannot follow"));
                        }
                        self.status = Truth::Known(true);
                        Ok(Flow::Normal)
                    }
                    Truth::Device(c) => {
                        let (flow, st) = self.conditional(c.not(), b, None, Truth::Known(true), *line)?;
                        self.status = st;
                        Ok(flow)
                    }
                }
            }
            BNode::Seq(v) => self.run_all(v),
            BNode::If { not, test, then, els, line } => {
                let t = self.test(test, *line)?;
                let t = if *not { t.not() } else { t };
                match t {
                    Truth::Known(true) | Truth::Fallible => self.run(then),
                    Truth::Known(false) => match els {
                        Some(e) => self.run(e),
                        None => Ok(Flow::Normal),
                    },
                    Truth::OnFailure => {
                        if !is_handler(then) {
                            return Err(self.fail(*line, "after a failed fastboot command this script goes on doing something else; mi-flash always stops at the first failure, so it cannot follow"));
                        }
                        match els {
                            Some(e) => self.run(e),
                            None => Ok(Flow::Normal),
                        }
                    }
                    Truth::Device(c) => {
                        let (flow, _) = self.conditional(c, then, els.as_deref(), Truth::Known(true), *line)?;
                        Ok(flow)
                    }
                }
            }
            BNode::For { tokens, delims, var, set, body, line } => self.run_for(*tokens, delims.as_deref(), *var, set, body, *line),
            BNode::Label(name) => {
                self.labels.insert(name.clone());
                Ok(Flow::Normal)
            }
            BNode::Nop => Ok(Flow::Normal),
        }
    }

    fn conditional(&mut self, cond: Cond, then: &BNode, els: Option<&BNode>, else_status: Truth, line: usize) -> RResult<(Flow, Truth)> {
        super::core::run_conditional(self, cond, then, els, else_status, line)
    }

    fn simple(&mut self, s: &BSimple) -> RResult<Flow> {
        let args = self.words(&s.args, s.line)?;
        match s.name.as_str() {
            "fastboot" => {
                let cooked: Vec<String> = args.iter().map(|w| w.cooked.clone()).collect();
                let var = self.p.fastboot(&cooked, s.line)?;
                self.status = if var.is_some() { Truth::Known(true) } else { Truth::Fallible };
                Ok(Flow::Normal)
            }
            "echo" | "pause" => {
                self.status = Truth::Known(true);
                Ok(Flow::Normal)
            }
            n if n.starts_with("echo.") => {
                self.status = Truth::Known(true);
                Ok(Flow::Normal)
            }
            "set" => {
                let raw = args.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
                if raw.starts_with('/') {
                    return Err(self.fail(s.line, format!("`set {raw}` is not supported")));
                }
                let assignment = match raw.strip_prefix('"') {
                    Some(inner) => inner.rsplit_once('"').map(|(a, _)| a.to_string()).unwrap_or_else(|| inner.to_string()),
                    None => raw.clone(),
                };
                let Some((name, value)) = assignment.split_once('=') else {
                    return Err(self.fail(s.line, format!("`set {raw}` does not assign a variable")));
                };
                let name = name.trim();
                if name.is_empty() || name.contains(['%', '!']) || has_sym(name) {
                    return Err(self.fail(s.line, format!("`set {raw}`: not a variable name")));
                }
                self.p.env.insert(name.to_ascii_uppercase(), value.to_string());
                self.status = Truth::Known(true);
                Ok(Flow::Normal)
            }
            "exit" => Ok(Flow::Exit),
            "goto" => {
                let label = args.first().map(|w| w.cooked.trim_start_matches(':').to_ascii_lowercase()).unwrap_or_default();
                if label != "eof" {
                    self.gotos.push((label, s.line));
                }
                Ok(Flow::Exit)
            }
            other => Err(self.p.err(s.line, ScriptErrorKind::Refused, refused_command(other))),
        }
    }

    fn matcher(&self, args: &[BWord], line: usize) -> RResult<super::pattern::Matcher> {
        let cooked: Vec<String> = args.iter().map(|w| w.cooked.clone()).collect();
        parse_findstr(&cooked).and_then(|s| s.build()).map_err(|r| self.fail(line, r))
    }

    fn pipe(&mut self, cmds: &[BSimple], line: usize) -> RResult<Truth> {
        let (src, find) = (&cmds[0], &cmds[1]);
        let args = self.words(&src.args, src.line)?;
        let fargs = self.words(&find.args, find.line)?;
        let m = self.matcher(&fargs, find.line)?;
        if src.name == "fastboot" {
            let cooked: Vec<String> = args.iter().map(|w| w.cooked.clone()).collect();
            let Some(var) = self.p.fastboot(&cooked, src.line)? else {
                return Err(self.fail(line, "only `fastboot getvar` output may be piped into findstr"));
            };
            Ok(self.p.getvar_match(&var, &m))
        } else {
            let text = args.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
            self.p.text_match(&text, &m).map_err(|r| self.fail(line, r))
        }
    }

    fn test(&mut self, test: &BTest, line: usize) -> RResult<Truth> {
        let fail = |me: &Self, r: String| me.fail(line, r);
        match test {
            BTest::Exist(w) => {
                let path = self.loop_vars(&w.cooked, line)?;
                Ok(Truth::Known(self.p.exists(&path).map_err(|r| fail(self, r))?))
            }
            BTest::ErrorLevel(w) => {
                let n: i64 = w.cooked.parse().map_err(|_| fail(self, format!("`if errorlevel {}`: not a number", w.cooked)))?;
                if n <= 0 {
                    Ok(Truth::Known(true))
                } else {
                    Ok(self.status.clone().not())
                }
            }
            BTest::Defined(w) => Ok(Truth::Known(self.p.env.get(&w.cooked.to_ascii_uppercase()).is_some_and(|v| !v.is_empty()))),
            BTest::Cmp(l, op, r) => {
                let l = self.loop_vars(&l.text, line)?;
                let r = self.loop_vars(&r.text, line)?;
                let cmp = match op.as_str() {
                    "==" => return self.p.equals(&l, &r, line).map_err(|e| fail(self, e)),
                    "EQU" => {
                        if l.trim().parse::<i64>().is_ok() || r.trim().parse::<i64>().is_ok() || (has_sym(&l) && has_sym(&r)) {
                            CmpOp::Eq
                        } else {
                            return self.p.equals(&l, &r, line).map_err(|e| fail(self, e));
                        }
                    }
                    "NEQ" => CmpOp::Ne,
                    "LSS" => CmpOp::Lt,
                    "LEQ" => CmpOp::Le,
                    "GTR" => CmpOp::Gt,
                    "GEQ" => CmpOp::Ge,
                    other => return Err(fail(self, format!("unknown comparison {other}"))),
                };
                self.p.compare(&l, cmp, &r, line).map_err(|e| fail(self, e))
            }
        }
    }

    fn tokens_of(line: &str, tokens: usize, delims: Option<&str>) -> Option<String> {
        if line.is_empty() || line.starts_with(';') {
            return None;
        }
        let d = delims.unwrap_or(" \t");
        if d.is_empty() {
            return (tokens == 1).then(|| line.to_string());
        }
        line.split(|c: char| d.contains(c)).filter(|t| !t.is_empty()).nth(tokens - 1).map(str::to_string)
    }

    fn run_for(&mut self, tokens: usize, delims: Option<&str>, var: char, set: &ForSet, body: &BNode, line: usize) -> RResult<Flow> {
        let values: Vec<String> = match set {
            ForSet::File(raw) => {
                let path = self.loop_vars(raw, line)?;
                match self.p.read_text(&path).map_err(|r| self.p.err(line, ScriptErrorKind::Package, r))? {
                    None => Vec::new(),
                    Some(t) => t.lines().map(|l| l.trim_end_matches('\r')).filter_map(|l| Self::tokens_of(l, tokens, delims)).collect(),
                }
            }
            ForSet::Str(raw) => {
                let s = self.loop_vars(raw, line)?;
                if has_sym(&s) {
                    if tokens == 1 && delims == Some("") {
                        vec![s]
                    } else {
                        return Err(self.fail(line, "splitting a value only known when flashing is not supported"));
                    }
                } else {
                    Self::tokens_of(&s, tokens, delims).into_iter().collect()
                }
            }
            ForSet::Date(raw) => {
                let s = self.loop_vars(raw, line)?;
                if s.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![self.p.sym(Sym::Date(s)).map_err(|r| self.fail(line, r))?]
                }
            }
            ForSet::Getvar { fastboot, findstr } => {
                let args = self.words(fastboot, line)?;
                let cooked: Vec<String> = args.iter().map(|w| w.cooked.clone()).collect();
                let Some(var_name) = self.p.fastboot(&cooked, line)? else {
                    return Err(self.fail(line, "only `fastboot getvar` output may be read by `for /f`"));
                };
                let fargs = self.words(findstr, line)?;
                let m = self.matcher(&fargs, line)?;
                // The loop must pick exactly the value out of `VAR: VALUE`.
                let sample = format!("{var_name}: Q7Z");
                if !m.is_match(&sample) || Self::tokens_of(&sample, tokens, delims).as_deref() != Some("Q7Z") {
                    return Err(self.fail(line, format!("this `for /f` does not read the value of `getvar {var_name}` in a way mi-flash understands")));
                }
                let value = self.p.sym(Sym::Device { var: var_name, default: None }).map_err(|r| self.fail(line, r))?;
                // The body runs once if the device prints the variable, else never.
                let snap = self.p.snapshot();
                self.for_vars.push((var, value));
                let flow = self.run(body);
                self.for_vars.pop();
                let flow = flow?;
                let b = self.p.take_branch(&snap, flow, self.status.clone());
                if flow == Flow::Exit || !b.steps.is_empty() {
                    return Err(self.fail(line, "a loop over a device value may only set variables"));
                }
                self.p.warnings.extend(b.warnings);
                for (k, v) in b.env {
                    let old = snap_value(&self.p.env, &k);
                    if v != old {
                        let nv = self.p.loop_assign(&old, &v).map_err(|r| self.fail(line, r))?;
                        self.p.env.insert(k, nv);
                    }
                }
                return Ok(Flow::Normal);
            }
        };
        for v in values {
            self.for_vars.push((var, v));
            let flow = self.run(body);
            self.for_vars.pop();
            if flow? == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Normal)
    }
}

fn snap_value(env: &std::collections::HashMap<String, String>, k: &str) -> String {
    env.get(k).cloned().unwrap_or_default()
}

pub(super) fn plan(file: &str, text: &str, files: &dyn PackageFiles) -> Result<Plan, ScriptError> {
    let mut p = Planner::new(file, text, files);
    for (i, l) in text.split('\n').enumerate() {
        if let Some(body) = comment_body(l.trim()) {
            p.note_comment(i + 1, body);
        }
    }
    let units = split_units(text).map_err(|(l, why)| p.err(l, ScriptErrorKind::Syntax, why))?;
    let mut b = Bat { p, status: Truth::Known(true), for_vars: Vec::new(), labels: HashSet::new(), gotos: Vec::new() };
    let mut exited_at: Option<usize> = None;
    for unit in units {
        let trimmed = unit.text.trim();
        if trimmed.is_empty() || comment_body(trimmed).is_some() || trimmed.starts_with("::") {
            continue;
        }
        let expanded = b.expand(&unit.text, unit.line)?;
        let nodes = BatParser::new(&expanded, unit.line).parse().map_err(|(l, why, kind)| b.p.err(l, kind, why))?;
        if let Some(exit_line) = exited_at {
            for n in &nodes {
                if let BNode::Label(name) = n {
                    b.labels.insert(name.clone());
                }
                if let Some(l) = contains_fastboot(n) {
                    return Err(b.fail(l, format!("this fastboot command comes after the script's `exit` on line {exit_line} and only a `goto` could reach it; not supported")));
                }
            }
            continue;
        }
        for n in &nodes {
            if b.run(n)? == Flow::Exit {
                exited_at = Some(unit.line);
                break;
            }
        }
    }
    for (label, line) in &b.gotos {
        if !b.labels.contains(label) {
            return Err(b.p.err(*line, ScriptErrorKind::Syntax, format!("`goto {label}`: the script has no such label")));
        }
    }
    Ok(b.p.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_span_blocks() {
        let u = split_units("a\nif x (\n b\n) else (\n c\n)\n:: x (\nd").unwrap();
        let starts: Vec<usize> = u.iter().map(|u| u.line).collect();
        assert_eq!(starts, vec![1, 2, 7, 8]);
        assert!(split_units("if x (\n b\n").is_err());
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let nodes = BatParser::new("fastboot flash a b || @echo \"x\" && exit /B 1", 1).parse().unwrap();
        match &nodes[0] {
            BNode::Or(_, right, _) => assert!(matches!(right.as_ref(), BNode::And(..))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn for_set_command_is_unescaped_and_recognised() {
        let nodes = BatParser::new("for /f \"tokens=2 delims=: \" %i in ('fastboot getvar anti 2^>^&1 ^| findstr /r /c:\"anti:\"') do (set version=%i)", 1).parse().unwrap();
        match &nodes[0] {
            BNode::For { tokens: 2, delims: Some(d), set: ForSet::Getvar { .. }, .. } => assert_eq!(d, ": "),
            other => panic!("{other:?}"),
        }
        assert!(BatParser::new("for /f %i in ('del x') do (set a=%i)", 1).parse().is_err());
    }
}
