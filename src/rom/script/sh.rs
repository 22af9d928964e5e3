//! The POSIX shell dialect: tokenizer, parser for the subset flash scripts use (simple
//! commands, pipelines, `&&`/`||`, `if/elif/else/fi`, `{ }`, function definitions), a vetting
//! pass that refuses anything outside the vocabulary — in every branch, taken or not — and the
//! symbolic run that feeds [`Planner`].

use std::collections::HashSet;

use super::core::{printable, Cond, Flow, Planner, Sym, Truth};
use super::pattern::parse_grep;
use super::{ScriptError, ScriptErrorKind};
use crate::rom::plan::{CmpOp, PackageFiles, Plan};

// ----- tokens ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Unquoted literal text.
    Lit(String),
    /// Literal text from quotes or escapes.
    Quoted(String),
    /// `$name`, `${name}`, `$*`, `$?`, ...
    Var(String),
    /// `$(...)` or `` `...` ``: the inner source text and its first line.
    Subst(String, usize),
}

#[derive(Debug, Clone, PartialEq)]
struct Word {
    parts: Vec<Part>,
    line: usize,
}

impl Word {
    /// The word's text when it contains no expansions.
    fn literal(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(t) | Part::Quoted(t) => s.push_str(t),
                _ => return None,
            }
        }
        Some(s)
    }

    /// An unquoted plain word (reserved words and `{`/`}` only count when unquoted).
    fn is_bare(&self, w: &str) -> bool {
        matches!(self.parts.as_slice(), [Part::Lit(t)] if t == w)
    }

    fn has_quotes(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Quoted(_)))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Redir {
    fd: Option<u32>,
    op: String,
    target: Word,
    line: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Word),
    Op(&'static str, usize),
    Redir(Redir),
    Newline(usize),
}

/// A `#` comment: its line and text.
type Comment = (usize, String);

type LexResult<T> = Result<T, (usize, String, ScriptErrorKind)>;

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    comments: Vec<Comment>,
}

fn is_meta(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>')
}

impl Lexer {
    fn new(src: &str, line: usize) -> Self {
        Lexer { chars: src.chars().collect(), pos: 0, line, comments: Vec::new() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn syntax<T>(&self, msg: impl Into<String>) -> LexResult<T> {
        Err((self.line, msg.into(), ScriptErrorKind::Syntax))
    }
    fn unsupported<T>(&self, msg: impl Into<String>) -> LexResult<T> {
        Err((self.line, msg.into(), ScriptErrorKind::Unsupported))
    }

    fn tokens(mut self) -> LexResult<(Vec<Tok>, Vec<Comment>)> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => {
                    self.bump();
                }
                '\\' if self.peek_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                '\n' => {
                    out.push(Tok::Newline(self.line));
                    self.bump();
                }
                '#' => {
                    let line = self.line;
                    let mut text = String::new();
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        text.push(c);
                        self.bump();
                    }
                    self.comments.push((line, text));
                }
                ';' => {
                    self.bump();
                    if self.peek() == Some(';') {
                        return self.unsupported("`;;` (case) is not supported");
                    }
                    out.push(Tok::Op(";", self.line));
                }
                '&' => {
                    self.bump();
                    if self.peek() == Some('&') {
                        self.bump();
                        out.push(Tok::Op("&&", self.line));
                    } else {
                        out.push(Tok::Op("&", self.line));
                    }
                }
                '|' => {
                    self.bump();
                    if self.peek() == Some('|') {
                        self.bump();
                        out.push(Tok::Op("||", self.line));
                    } else {
                        out.push(Tok::Op("|", self.line));
                    }
                }
                '(' => {
                    self.bump();
                    out.push(Tok::Op("(", self.line));
                }
                ')' => {
                    self.bump();
                    out.push(Tok::Op(")", self.line));
                }
                '<' | '>' => {
                    let r = self.redirection(None)?;
                    out.push(Tok::Redir(r));
                }
                _ => {
                    let w = self.word()?;
                    let fd = match w.parts.as_slice() {
                        [Part::Lit(t)] if t.chars().all(|c| c.is_ascii_digit()) && matches!(self.peek(), Some('<') | Some('>')) => t.parse::<u32>().ok(),
                        _ => None,
                    };
                    if let Some(fd) = fd {
                        let r = self.redirection(Some(fd))?;
                        out.push(Tok::Redir(r));
                    } else {
                        out.push(Tok::Word(w));
                    }
                }
            }
        }
        Ok((out, self.comments))
    }

    fn redirection(&mut self, fd: Option<u32>) -> LexResult<Redir> {
        let line = self.line;
        let mut op = String::new();
        if let Some(c) = self.bump() {
            op.push(c);
        }
        match (op.as_str(), self.peek()) {
            (">", Some('>')) | (">", Some('&')) | (">", Some('|')) | ("<", Some('&')) => {
                if let Some(c) = self.bump() {
                    op.push(c);
                }
            }
            ("<", Some('<')) => return self.unsupported("here-documents (`<<`) are not supported"),
            _ => {}
        }
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.bump();
        }
        if self.peek().map_or(true, is_meta) {
            return self.syntax("a redirection without a target");
        }
        let target = self.word()?;
        Ok(Redir { fd, op, target, line })
    }

    fn word(&mut self) -> LexResult<Word> {
        let line = self.line;
        let mut parts: Vec<Part> = Vec::new();
        let mut lit = String::new();
        fn flush(parts: &mut Vec<Part>, lit: &mut String) {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(lit)));
            }
        }
        while let Some(c) = self.peek() {
            if is_meta(c) {
                break;
            }
            match c {
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(n) => {
                            flush(&mut parts, &mut lit);
                            parts.push(Part::Quoted(n.to_string()));
                        }
                        None => return self.syntax("the script ends with a backslash"),
                    }
                }
                '\'' => {
                    self.bump();
                    let mut q = String::new();
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(c) => q.push(c),
                            None => return self.syntax("unterminated '...' quote"),
                        }
                    }
                    flush(&mut parts, &mut lit);
                    parts.push(Part::Quoted(q));
                }
                '"' => {
                    self.bump();
                    flush(&mut parts, &mut lit);
                    let mut q = String::new();
                    // An empty "" still makes a (quoted) word.
                    parts.push(Part::Quoted(String::new()));
                    loop {
                        match self.peek() {
                            None => return self.syntax("unterminated \"...\" quote"),
                            Some('"') => {
                                self.bump();
                                break;
                            }
                            Some('\\') => {
                                self.bump();
                                match self.bump() {
                                    Some('\n') => {}
                                    Some(n) if matches!(n, '$' | '`' | '"' | '\\') => q.push(n),
                                    Some(n) => {
                                        q.push('\\');
                                        q.push(n);
                                    }
                                    None => return self.syntax("unterminated \"...\" quote"),
                                }
                            }
                            Some('$') => {
                                if !q.is_empty() {
                                    parts.push(Part::Quoted(std::mem::take(&mut q)));
                                }
                                let p = self.dollar()?;
                                parts.push(match p {
                                    Part::Lit(t) => Part::Quoted(t),
                                    other => other,
                                });
                            }
                            Some('`') => {
                                if !q.is_empty() {
                                    parts.push(Part::Quoted(std::mem::take(&mut q)));
                                }
                                let p = self.backtick()?;
                                parts.push(p);
                            }
                            Some(c) => {
                                self.bump();
                                q.push(c);
                            }
                        }
                    }
                    if !q.is_empty() {
                        parts.push(Part::Quoted(q));
                    }
                }
                '$' => {
                    flush(&mut parts, &mut lit);
                    let p = self.dollar()?;
                    parts.push(p);
                }
                '`' => {
                    flush(&mut parts, &mut lit);
                    let p = self.backtick()?;
                    parts.push(p);
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut parts, &mut lit);
        // Merge adjacent literal parts of the same kind for simpler matching.
        let mut merged: Vec<Part> = Vec::new();
        for p in parts {
            match (merged.last_mut(), p) {
                (Some(Part::Quoted(a)), Part::Quoted(b)) => a.push_str(&b),
                (_, p) => merged.push(p),
            }
        }
        Ok(Word { parts: merged, line })
    }

    fn dollar(&mut self) -> LexResult<Part> {
        self.bump(); // '$'
        match self.peek() {
            Some('{') => {
                self.bump();
                let mut name = String::new();
                loop {
                    match self.bump() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return self.syntax("unterminated ${...}"),
                    }
                }
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err((self.line, format!("the expansion ${{{name}}} is not supported"), ScriptErrorKind::Refused));
                }
                Ok(Part::Var(name))
            }
            Some('(') => {
                if self.peek_at(1) == Some('(') {
                    return Err((self.line, "arithmetic $((...)) is not part of a flash script".into(), ScriptErrorKind::Refused));
                }
                self.bump();
                let line = self.line;
                let mut depth = 1;
                let mut inner = String::new();
                let mut quote: Option<char> = None;
                loop {
                    let Some(c) = self.bump() else {
                        return self.syntax("unterminated $(...)");
                    };
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'') | (None, '"') => quote = Some(c),
                        (None, '(') => depth += 1,
                        (None, ')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    inner.push(c);
                }
                Ok(Part::Subst(inner, line))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                Ok(Part::Var(name))
            }
            Some(c) if matches!(c, '*' | '@' | '?' | '#' | '$' | '!' | '-') || c.is_ascii_digit() => {
                self.bump();
                Ok(Part::Var(c.to_string()))
            }
            _ => Ok(Part::Lit("$".into())),
        }
    }

    fn backtick(&mut self) -> LexResult<Part> {
        self.bump(); // '`'
        let line = self.line;
        let mut inner = String::new();
        loop {
            match self.bump() {
                None => return self.syntax("unterminated `...`"),
                Some('`') => break,
                Some('\\') => match self.bump() {
                    Some(n) if matches!(n, '$' | '`' | '\\') => inner.push(n),
                    Some(n) => {
                        inner.push('\\');
                        inner.push(n);
                    }
                    None => return self.syntax("unterminated `...`"),
                },
                Some(c) => inner.push(c),
            }
        }
        Ok(Part::Subst(inner, line))
    }
}

// ----- syntax tree -------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Simple {
    assigns: Vec<(String, Word)>,
    words: Vec<Word>,
    redirs: Vec<Redir>,
    line: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Simple(Simple),
    Pipeline { cmds: Vec<Simple>, bang: bool, line: usize },
    AndOr { first: Box<Node>, rest: Vec<(bool, Node)>, line: usize },
    If { arms: Vec<(Vec<Node>, Vec<Node>)>, els: Option<Vec<Node>>, line: usize },
    Brace(Vec<Node>),
    FuncDef { name: String, body: Vec<Node>, line: usize },
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Simple(s) => s.line,
            Node::Pipeline { line, .. } | Node::AndOr { line, .. } | Node::If { line, .. } | Node::FuncDef { line, .. } => *line,
            Node::Brace(b) => b.first().map_or(0, Node::line),
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    last_line: usize,
    /// `if` and `{ }` blocks open around the current position.
    depth: usize,
}

type PResult<T> = Result<T, (usize, String, ScriptErrorKind)>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn line(&self) -> usize {
        match self.peek() {
            Some(Tok::Word(w)) => w.line,
            Some(Tok::Op(_, l)) | Some(Tok::Newline(l)) => *l,
            Some(Tok::Redir(r)) => r.line,
            None => self.last_line,
        }
    }
    fn err<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err((self.line(), msg.into(), ScriptErrorKind::Syntax))
    }
    fn peek_bare(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(word)) if word.is_bare(w))
    }
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o, _)) if *o == op)
    }
    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline(_))) {
            self.pos += 1;
        }
    }
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline(_))) || self.peek_op(";") {
            self.pos += 1;
        }
    }

    fn list(&mut self, terminators: &[&str]) -> PResult<Vec<Node>> {
        let mut nodes = Vec::new();
        loop {
            self.skip_separators();
            if self.peek().is_none() || terminators.iter().any(|t| self.peek_bare(t)) {
                break;
            }
            if self.peek_op(")") {
                return self.err("unexpected `)`");
            }
            nodes.push(self.and_or()?);
            match self.peek() {
                None | Some(Tok::Newline(_)) => {}
                Some(Tok::Op(";", _)) => {}
                Some(Tok::Op("&", _)) => return Err((self.line(), "background jobs (`&`) are not part of a flash script".into(), ScriptErrorKind::Refused)),
                Some(Tok::Word(w)) if terminators.iter().any(|t| w.is_bare(t)) => {}
                _ => return self.err("unexpected text after a command"),
            }
        }
        Ok(nodes)
    }

    fn and_or(&mut self) -> PResult<Node> {
        let line = self.line();
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let is_and = if self.peek_op("&&") {
                true
            } else if self.peek_op("||") {
                false
            } else {
                break;
            };
            if rest.len() >= super::MAX_CHAIN {
                let msg = format!("more than {} `&&` / `||` in one command are not part of a flash script", super::MAX_CHAIN);
                return Err((line, msg, ScriptErrorKind::Refused));
            }
            self.pos += 1;
            self.skip_newlines();
            rest.push((is_and, self.pipeline()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Node::AndOr { first: Box::new(first), rest, line })
        }
    }

    fn pipeline(&mut self) -> PResult<Node> {
        let line = self.line();
        let mut bang = false;
        if self.peek_bare("!") {
            bang = true;
            self.pos += 1;
        }
        let first = self.command()?;
        if !self.peek_op("|") {
            if bang {
                return match first {
                    Node::Simple(s) => Ok(Node::Pipeline { cmds: vec![s], bang, line }),
                    _ => self.err("`!` before a compound command is not supported"),
                };
            }
            return Ok(first);
        }
        let Node::Simple(first) = first else {
            return self.err("only simple commands can be piped");
        };
        let mut cmds = vec![first];
        while self.peek_op("|") {
            self.pos += 1;
            self.skip_newlines();
            match self.command()? {
                Node::Simple(s) => cmds.push(s),
                _ => return self.err("only simple commands can be piped"),
            }
        }
        Ok(Node::Pipeline { cmds, bang, line })
    }

    fn command(&mut self) -> PResult<Node> {
        let line = self.line();
        if let Some(Tok::Word(w)) = self.peek() {
            let is_if = w.is_bare("if");
            if is_if || w.is_bare("{") {
                if self.depth >= super::MAX_NESTING {
                    let msg = format!("blocks nested more than {} deep are not part of a flash script", super::MAX_NESTING);
                    return Err((line, msg, ScriptErrorKind::Refused));
                }
                self.depth += 1;
                let node = if is_if { self.if_clause() } else { self.brace() };
                self.depth -= 1;
                return node;
            }
            for r in ["then", "else", "elif", "fi", "}", "do", "done"] {
                if w.is_bare(r) {
                    return self.err(format!("unexpected `{r}`"));
                }
            }
            for r in ["while", "until", "for", "case", "select", "function"] {
                if w.is_bare(r) {
                    return Err((line, format!("`{r}` is not part of a flash script"), ScriptErrorKind::Unsupported));
                }
            }
        }
        if self.peek_op("(") {
            return Err((line, "subshells `( ... )` are not part of a flash script".into(), ScriptErrorKind::Unsupported));
        }
        self.simple()
    }

    fn brace(&mut self) -> PResult<Node> {
        self.pos += 1; // {
        let body = self.list(&["}"])?;
        if !self.peek_bare("}") {
            return self.err("missing `}`");
        }
        self.pos += 1;
        Ok(Node::Brace(body))
    }

    fn if_clause(&mut self) -> PResult<Node> {
        let line = self.line();
        self.pos += 1; // if
        let mut arms = Vec::new();
        loop {
            let cond = self.list(&["then"])?;
            if !self.peek_bare("then") {
                return self.err("`if` without `then`");
            }
            self.pos += 1;
            let body = self.list(&["elif", "else", "fi"])?;
            arms.push((cond, body));
            if self.peek_bare("elif") {
                self.pos += 1;
                continue;
            }
            break;
        }
        let mut els = None;
        if self.peek_bare("else") {
            self.pos += 1;
            els = Some(self.list(&["fi"])?);
        }
        if !self.peek_bare("fi") {
            return self.err("`if` without `fi`");
        }
        self.pos += 1;
        Ok(Node::If { arms, els, line })
    }

    fn simple(&mut self) -> PResult<Node> {
        let line = self.line();
        let mut s = Simple { assigns: Vec::new(), words: Vec::new(), redirs: Vec::new(), line };
        loop {
            match self.peek().cloned() {
                Some(Tok::Word(w)) => {
                    self.pos += 1;
                    if s.words.is_empty() {
                        if let Some((name, value)) = split_assignment(&w) {
                            s.assigns.push((name, value));
                            continue;
                        }
                    }
                    s.words.push(w);
                    // `name()` starts a function definition.
                    if s.words.len() == 1 && s.assigns.is_empty() && self.peek_op("(") {
                        if !matches!(self.toks.get(self.pos + 1), Some(Tok::Op(")", _))) {
                            return self.err("`(` after a command name");
                        }
                        self.pos += 2;
                        let name = s.words[0].literal().unwrap_or_default();
                        self.skip_newlines();
                        let body = match self.command()? {
                            Node::Brace(b) => b,
                            _ => return self.err("a function body must be `{ ... }`"),
                        };
                        return Ok(Node::FuncDef { name, body, line });
                    }
                }
                Some(Tok::Redir(r)) => {
                    self.pos += 1;
                    s.redirs.push(r);
                }
                _ => break,
            }
        }
        if s.words.is_empty() && s.assigns.is_empty() && s.redirs.is_empty() {
            return self.err("a command was expected");
        }
        Ok(Node::Simple(s))
    }
}

fn split_assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit(first)) = w.parts.first() else {
        return None;
    };
    let (name, rest) = first.split_once('=')?;
    if name.is_empty() || !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let mut parts = Vec::new();
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    parts.extend(w.parts[1..].iter().cloned());
    Some((name.to_string(), Word { parts, line: w.line }))
}

fn parse_source(src: &str, first_line: usize) -> PResult<(Vec<Node>, Vec<Comment>)> {
    let (toks, comments) = Lexer::new(src, first_line).tokens()?;
    let mut p = Parser { toks, pos: 0, last_line: first_line, depth: 0 };
    let nodes = p.list(&[])?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text");
    }
    Ok((nodes, comments))
}

// ----- vetting -----------------------------------------------------------------------------

/// What a recognised command substitution does.
#[derive(Debug, Clone)]
enum Subst {
    /// `dirname $0`: the package root.
    Dirname,
    /// `cat FILE`: a package file's contents.
    Cat(Word),
    /// `date -d STRING +%s`: a date.
    Date(Word),
    /// `fastboot ... getvar VAR 2>&1 | grep -oP "VAR: \K..."`: a device value.
    Getvar { fastboot: Vec<Word>, grep: Vec<Word> },
}

const VOCABULARY: &str = "fastboot, echo, exit, grep, test/[ ], and `$(dirname $0)`";

fn refused_command(name: &str) -> String {
    let what = match name {
        "rm" | "dd" | "mv" | "cp" | "chmod" | "chown" | "mkfs" | "shred" => "changes files",
        "curl" | "wget" | "nc" | "ssh" | "scp" => "talks to the network",
        "eval" | "source" | "." | "sh" | "bash" | "exec" | "python" | "python3" | "perl" | "sudo" | "su" => "runs other code",
        _ => "is not part of a flash script",
    };
    format!("`{name}` {what}; flash scripts only use {VOCABULARY}")
}

struct Vetter {
    handlers: HashSet<String>,
}

impl Vetter {
    fn nodes(&mut self, nodes: &[Node]) -> PResult<()> {
        for n in nodes {
            self.node(n)?;
        }
        Ok(())
    }

    fn node(&mut self, n: &Node) -> PResult<()> {
        match n {
            Node::Simple(s) => self.simple(s, false),
            Node::Pipeline { cmds, line, .. } => {
                if cmds.len() > 2 {
                    return Err((*line, "pipelines of more than two commands are not part of a flash script".into(), ScriptErrorKind::Refused));
                }
                for (i, c) in cmds.iter().enumerate() {
                    self.simple(c, i > 0)?;
                    let name = c.words.first().and_then(Word::literal).unwrap_or_default();
                    if i > 0 && name != "grep" {
                        return Err((c.line, format!("a pipe into `{name}`: only `grep` may read another command's output"), ScriptErrorKind::Refused));
                    }
                    if i == 0 && cmds.len() > 1 && name != "fastboot" && name != "echo" {
                        return Err((c.line, format!("piping the output of `{name}` is not part of a flash script"), ScriptErrorKind::Refused));
                    }
                }
                Ok(())
            }
            Node::AndOr { first, rest, .. } => {
                self.node(first)?;
                for (_, n) in rest {
                    self.node(n)?;
                }
                Ok(())
            }
            Node::If { arms, els, .. } => {
                for (c, b) in arms {
                    self.nodes(c)?;
                    self.nodes(b)?;
                }
                if let Some(e) = els {
                    self.nodes(e)?;
                }
                Ok(())
            }
            Node::Brace(b) => self.nodes(b),
            Node::FuncDef { name, body, line } => {
                self.nodes(body)?;
                if !body.iter().all(|n| is_handler(n, &self.handlers)) || !body.iter().any(|n| exits(n, &self.handlers)) {
                    return Err((*line, format!("the function `{name}` does more than print a message and exit"), ScriptErrorKind::Unsupported));
                }
                self.handlers.insert(name.clone());
                Ok(())
            }
        }
    }

    fn simple(&mut self, s: &Simple, piped: bool) -> PResult<()> {
        for (_, w) in &s.assigns {
            self.word(w)?;
        }
        for w in &s.words {
            self.word(w)?;
        }
        for r in &s.redirs {
            let target = r.target.literal().unwrap_or_default();
            let ok = match r.op.as_str() {
                ">&" | "<&" => matches!(target.as_str(), "1" | "2" | "-"),
                ">" | ">>" => target == "/dev/null",
                _ => false,
            };
            if !ok {
                return Err((r.line, format!("the redirection `{}{} {}` writes or reads a file; flash scripts only use `2>&1`", r.fd.map(|f| f.to_string()).unwrap_or_default(), r.op, printable(&target)), ScriptErrorKind::Refused));
            }
        }
        if s.words.is_empty() {
            return Ok(());
        }
        if !s.assigns.is_empty() {
            return Err((s.line, "a variable assignment in front of a command is not part of a flash script".into(), ScriptErrorKind::Refused));
        }
        let Some(name) = s.words[0].literal() else {
            return Err((s.line, "the command name comes from an expansion; flash scripts name their commands".into(), ScriptErrorKind::Refused));
        };
        let known = matches!(name.as_str(), "fastboot" | "echo" | "exit" | "[" | "test" | "true" | ":") || (name == "grep" && piped) || self.handlers.contains(&name);
        if !known {
            if name == "grep" {
                return Err((s.line, "`grep` here does not read a pipe; flash scripts only grep fastboot's output".into(), ScriptErrorKind::Refused));
            }
            return Err((s.line, refused_command(&name), ScriptErrorKind::Refused));
        }
        Ok(())
    }

    fn word(&mut self, w: &Word) -> PResult<()> {
        for p in &w.parts {
            match p {
                Part::Var(v) => {
                    let ok = matches!(v.as_str(), "*" | "@" | "?") || v.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
                    if !ok {
                        return Err((w.line, format!("`${v}` is not something flash scripts use (only `$*` for the device selection)"), ScriptErrorKind::Refused));
                    }
                }
                Part::Subst(src, line) => {
                    recognise_subst(src, *line)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Only messages and exits (plus the script's own error-handler functions).
fn is_handler(n: &Node, handlers: &HashSet<String>) -> bool {
    match n {
        Node::Simple(s) => {
            s.assigns.is_empty() && s.words.first().and_then(Word::literal).is_some_and(|c| matches!(c.as_str(), "echo" | "exit" | "true" | ":") || handlers.contains(&c))
        }
        Node::AndOr { first, rest, .. } => is_handler(first, handlers) && rest.iter().all(|(_, n)| is_handler(n, handlers)),
        Node::Brace(b) => b.iter().all(|n| is_handler(n, handlers)),
        _ => false,
    }
}

fn exits(n: &Node, handlers: &HashSet<String>) -> bool {
    match n {
        Node::Simple(s) => s.words.first().and_then(Word::literal).is_some_and(|c| c == "exit" || handlers.contains(&c)),
        Node::AndOr { first, rest, .. } => exits(first, handlers) || rest.iter().any(|(_, n)| exits(n, handlers)),
        Node::Brace(b) => b.iter().any(|n| exits(n, handlers)),
        _ => false,
    }
}

fn contains_fastboot(nodes: &[Node]) -> Option<usize> {
    for n in nodes {
        let hit = match n {
            Node::Simple(s) => s.words.first().and_then(Word::literal).is_some_and(|c| c == "fastboot").then_some(s.line),
            Node::Pipeline { cmds, .. } => cmds.iter().find(|c| c.words.first().and_then(Word::literal).is_some_and(|c| c == "fastboot")).map(|c| c.line),
            Node::AndOr { first, rest, .. } => contains_fastboot(std::slice::from_ref(first)).or_else(|| rest.iter().find_map(|(_, n)| contains_fastboot(std::slice::from_ref(n)))),
            Node::If { arms, els, .. } => arms
                .iter()
                .find_map(|(c, b)| contains_fastboot(c).or_else(|| contains_fastboot(b)))
                .or_else(|| els.as_deref().and_then(contains_fastboot)),
            Node::Brace(b) => contains_fastboot(b),
            Node::FuncDef { .. } => None,
        };
        if hit.is_some() {
            return hit;
        }
    }
    None
}

fn recognise_subst(src: &str, line: usize) -> PResult<Subst> {
    let refuse = |why: String| Err((line, why, ScriptErrorKind::Refused));
    let shown = src.trim();
    let (nodes, comments) = match parse_source(src, line) {
        Ok(x) => x,
        Err((_, why, _)) => return refuse(format!("the command substitution `{shown}` does not parse ({why})")),
    };
    let generic = format!("the command substitution `{shown}` is not part of a flash script (only `dirname $0`, `cat` of a package file, `date -d`, and `fastboot getvar | grep` are)");
    if nodes.len() != 1 || !comments.is_empty() {
        return refuse(generic);
    }
    let mut v = Vetter { handlers: HashSet::new() };
    let lits = |s: &Simple| -> Vec<Option<String>> { s.words.iter().map(Word::literal).collect() };
    match &nodes[0] {
        Node::Simple(s) if s.assigns.is_empty() && s.redirs.is_empty() => {
            let l = lits(s);
            match l.first().cloned().flatten().as_deref() {
                Some("dirname") if s.words.len() == 2 && s.words[1].parts == [Part::Var("0".into())] => Ok(Subst::Dirname),
                Some("cat") if s.words.len() == 2 => {
                    v.word(&s.words[1])?;
                    Ok(Subst::Cat(s.words[1].clone()))
                }
                Some("date") if s.words.len() == 4 && l[1].as_deref() == Some("-d") && l[3].as_deref() == Some("+%s") => {
                    v.word(&s.words[2])?;
                    Ok(Subst::Date(s.words[2].clone()))
                }
                _ => refuse(generic),
            }
        }
        Node::Pipeline { cmds, bang: false, .. } if cmds.len() == 2 => {
            let (fb, gr) = (&cmds[0], &cmds[1]);
            if lits(fb).first().cloned().flatten().as_deref() != Some("fastboot") || lits(gr).first().cloned().flatten().as_deref() != Some("grep") || !gr.redirs.is_empty() {
                return refuse(generic);
            }
            v.simple(fb, false)?;
            v.simple(gr, true)?;
            Ok(Subst::Getvar { fastboot: fb.words[1..].to_vec(), grep: gr.words[1..].to_vec() })
        }
        _ => refuse(generic),
    }
}

// ----- symbolic run ------------------------------------------------------------------------

struct Sh<'a> {
    p: Planner<'a>,
    handlers: HashSet<String>,
    status: Truth,
}

type RResult<T> = Result<T, ScriptError>;

impl<'a> super::core::BranchRunner<'a> for Sh<'a> {
    type Body = [Node];
    fn planner(&mut self) -> &mut Planner<'a> {
        &mut self.p
    }
    fn status(&mut self) -> &mut Truth {
        &mut self.status
    }
    fn run_body(&mut self, body: &[Node]) -> RResult<Flow> {
        self.run_nodes(body)
    }
}

impl<'a> Sh<'a> {
    fn fail(&self, line: usize, why: impl Into<String>) -> ScriptError {
        self.p.err(line, ScriptErrorKind::Unsupported, why)
    }

    fn expand(&mut self, w: &Word) -> RResult<(String, bool)> {
        let mut out = String::new();
        for part in &w.parts {
            match part {
                Part::Lit(t) | Part::Quoted(t) => out.push_str(t),
                Part::Var(v) => match v.as_str() {
                    "*" | "@" => out.push_str(&self.p.sym(Sym::Args).map_err(|r| self.fail(w.line, r))?),
                    "?" => {
                        let s = self.p.sym(Sym::Status(self.status.clone())).map_err(|r| self.fail(w.line, r))?;
                        out.push_str(&s);
                    }
                    name => out.push_str(&self.p.env.get(name).cloned().unwrap_or_default()),
                },
                Part::Subst(src, line) => {
                    let v = self.subst(src, *line)?;
                    out.push_str(&v);
                }
            }
        }
        Ok((out, w.has_quotes()))
    }

    /// Expand words as arguments: an unquoted expansion that comes out empty disappears.
    fn expand_args(&mut self, words: &[Word]) -> RResult<Vec<String>> {
        let mut out = Vec::new();
        for w in words {
            let (s, quoted) = self.expand(w)?;
            if s.is_empty() && !quoted {
                continue;
            }
            out.push(s);
        }
        Ok(out)
    }

    fn subst(&mut self, src: &str, line: usize) -> RResult<String> {
        let kind = recognise_subst(src, line).map_err(|(l, why, kind)| self.p.err(l, kind, why))?;
        match kind {
            Subst::Dirname => self.p.sym(Sym::Root).map_err(|r| self.fail(line, r)),
            Subst::Cat(w) => {
                let (path, _) = self.expand(&w)?;
                match self.p.read_text(&path).map_err(|r| self.p.err(line, ScriptErrorKind::Package, r))? {
                    Some(t) => Ok(t.trim_end_matches(['\n', '\r']).to_string()),
                    None => {
                        self.p.warn(Some(line), format!("the script reads {}, which the package does not have", printable(&path)));
                        Ok(String::new())
                    }
                }
            }
            Subst::Date(w) => {
                let (v, _) = self.expand(&w)?;
                if v.trim().is_empty() {
                    return Ok(String::new());
                }
                self.p.sym(Sym::Date(v)).map_err(|r| self.fail(line, r))
            }
            Subst::Getvar { fastboot, grep } => {
                let args = self.expand_args(&fastboot)?;
                let Some(var) = self.p.fastboot(&args, line)? else {
                    return Err(self.fail(line, "only `fastboot getvar` output may be captured"));
                };
                let gargs = self.expand_args(&grep)?;
                let g = parse_grep(&gargs).map_err(|r| self.fail(line, r))?;
                let pat = g.spec.patterns.first().cloned().unwrap_or_default();
                let takes_value = g.only_matching && g.perl && pat.starts_with(&format!("{var}:")) && pat.contains("\\K");
                if !takes_value {
                    return Err(self.fail(line, format!("capturing `getvar {var}` through `grep {}` is not understood; expected `grep -oP \"{var}: \\K...\"`", gargs.join(" "))));
                }
                self.p.sym(Sym::Device { var, default: None }).map_err(|r| self.fail(line, r))
            }
        }
    }

    fn run_nodes(&mut self, nodes: &[Node]) -> RResult<Flow> {
        for n in nodes {
            if self.run(n)? == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Normal)
    }

    fn run(&mut self, n: &Node) -> RResult<Flow> {
        match n {
            Node::Simple(s) => self.simple(s),
            Node::Pipeline { cmds, bang, line } => {
                let t = self.pipeline(cmds, *line)?;
                self.status = if *bang { t.not() } else { t };
                Ok(Flow::Normal)
            }
            Node::AndOr { first, rest, line } => {
                if self.run(first)? == Flow::Exit {
                    return Ok(Flow::Exit);
                }
                for (is_and, node) in rest {
                    match (is_and, self.status.clone()) {
                        (true, Truth::Known(true) | Truth::Fallible) | (false, Truth::Known(false) | Truth::OnFailure) => {
                            if self.run(node)? == Flow::Exit {
                                return Ok(Flow::Exit);
                            }
                        }
                        (true, Truth::Known(false)) | (false, Truth::Known(true)) => {}
                        (false, Truth::Fallible) | (true, Truth::OnFailure) => {
                            if !is_handler(node, &self.handlers) {
                                return Err(self.fail(node.line(), "after a failed fastboot command this script goes on doing something else; mi-flash always stops at the first failure, so it cannot follow"));
                            }
                            self.status = Truth::Known(true);
                        }
                        (is_and, Truth::Device(c)) => {
                            let (cond, else_status) = if *is_and { (c, Truth::Known(false)) } else { (c.not(), Truth::Known(true)) };
                            let (flow, st) = self.conditional(cond, std::slice::from_ref(node), None, else_status, *line)?;
                            self.status = st;
                            if flow == Flow::Exit {
                                return Ok(Flow::Exit);
                            }
                        }
                    }
                }
                Ok(Flow::Normal)
            }
            Node::If { arms, els, line } => {
                for (i, (cond, body)) in arms.iter().enumerate() {
                    if self.run_nodes(cond)? == Flow::Exit {
                        return Ok(Flow::Exit);
                    }
                    match self.status.clone() {
                        Truth::Known(true) | Truth::Fallible => return self.run_nodes(body),
                        Truth::Known(false) => continue,
                        Truth::OnFailure => {
                            if !body.iter().all(|n| is_handler(n, &self.handlers)) {
                                return Err(self.fail(*line, "after a failed fastboot command this script goes on doing something else; mi-flash always stops at the first failure, so it cannot follow"));
                            }
                            self.status = Truth::Known(true);
                            continue;
                        }
                        Truth::Device(c) => {
                            if i + 1 != arms.len() {
                                return Err(self.fail(*line, "`elif` after a device-dependent test is not supported"));
                            }
                            let (flow, _) = self.conditional(c, body, els.as_deref(), Truth::Known(true), *line)?;
                            self.status = Truth::Known(true);
                            return Ok(flow);
                        }
                    }
                }
                if let Some(e) = els {
                    return self.run_nodes(e);
                }
                self.status = Truth::Known(true);
                Ok(Flow::Normal)
            }
            Node::Brace(b) => self.run_nodes(b),
            Node::FuncDef { .. } => Ok(Flow::Normal),
        }
    }

    /// Run `then` under `cond` and `els` under its negation, each in a sandbox, and merge.
    fn conditional(&mut self, cond: Cond, then: &[Node], els: Option<&[Node]>, else_status: Truth, line: usize) -> RResult<(Flow, Truth)> {
        super::core::run_conditional(self, cond, then, els, else_status, line)
    }

    fn simple(&mut self, s: &Simple) -> RResult<Flow> {
        if s.words.is_empty() {
            for (name, w) in &s.assigns {
                let (v, _) = self.expand(w)?;
                self.p.env.insert(name.clone(), v);
            }
            self.status = Truth::Known(true);
            return Ok(Flow::Normal);
        }
        let name = s.words[0].literal().unwrap_or_default();
        let args = self.expand_args(&s.words[1..])?;
        match name.as_str() {
            "fastboot" => {
                let var = self.p.fastboot(&args, s.line)?;
                self.status = if var.is_some() { Truth::Known(true) } else { Truth::Fallible };
                Ok(Flow::Normal)
            }
            "echo" | "true" | ":" => {
                self.status = Truth::Known(true);
                Ok(Flow::Normal)
            }
            "exit" => Ok(Flow::Exit),
            "[" | "test" => {
                let mut a = args;
                if name == "[" {
                    if a.last().map(String::as_str) != Some("]") {
                        return Err(self.p.err(s.line, ScriptErrorKind::Syntax, "`[` without a closing `]`"));
                    }
                    a.pop();
                }
                self.status = self.test(&a, s.line)?;
                Ok(Flow::Normal)
            }
            other if self.handlers.contains(other) => Ok(Flow::Exit),
            other => Err(self.p.err(s.line, ScriptErrorKind::Refused, refused_command(other))),
        }
    }

    fn test(&mut self, a: &[String], line: usize) -> RResult<Truth> {
        if a.first().map(String::as_str) == Some("!") {
            return Ok(self.test(&a[1..], line)?.not());
        }
        let fail = |me: &Self, r: String| me.fail(line, r);
        let binary = ["=", "==", "!=", "-eq", "-ne", "-gt", "-ge", "-lt", "-le"];
        match a {
            [] => Ok(Truth::Known(false)),
            [s] => Ok(self.p.empty(s).map_err(|r| fail(self, r))?.not()),
            [op, s] if op == "-z" => self.p.empty(s).map_err(|r| fail(self, r)),
            [op, s] if op == "-n" => Ok(self.p.empty(s).map_err(|r| fail(self, r))?.not()),
            [op, path] if matches!(op.as_str(), "-e" | "-f" | "-s" | "-r") => Ok(Truth::Known(self.p.exists(path).map_err(|r| fail(self, r))?)),
            [_, op] | [op, _] if binary.contains(&op.as_str()) => {
                self.p.warn(Some(line), "a test compares an empty value; the shell treats that as an error, so this check never refuses");
                Ok(Truth::Known(false))
            }
            [l, op, r] => {
                let cmp = match op.as_str() {
                    "=" | "==" => return self.p.equals(l, r, line).map_err(|e| fail(self, e)),
                    "!=" => return Ok(self.p.equals(l, r, line).map_err(|e| fail(self, e))?.not()),
                    "-eq" => CmpOp::Eq,
                    "-ne" => CmpOp::Ne,
                    "-gt" => CmpOp::Gt,
                    "-ge" => CmpOp::Ge,
                    "-lt" => CmpOp::Lt,
                    "-le" => CmpOp::Le,
                    other => return Err(fail(self, format!("the test operator `{other}` is not supported"))),
                };
                self.p.compare(l, cmp, r, line).map_err(|e| fail(self, e))
            }
            _ => Err(fail(self, format!("the test `[ {} ]` is not supported", printable(&a.join(" "))))),
        }
    }

    fn pipeline(&mut self, cmds: &[Simple], line: usize) -> RResult<Truth> {
        if cmds.len() == 1 {
            self.simple(&cmds[0])?;
            return Ok(self.status.clone());
        }
        let (src, grep) = (&cmds[0], &cmds[1]);
        let name = src.words[0].literal().unwrap_or_default();
        let args = self.expand_args(&src.words[1..])?;
        let gargs = self.expand_args(&grep.words[1..])?;
        let g = parse_grep(&gargs).map_err(|r| self.fail(grep.line, r))?;
        if g.perl || g.only_matching {
            return Err(self.fail(grep.line, "`grep -o`/`-P` is only understood when capturing a value with `...`"));
        }
        let _ = g.quiet;
        let m = g.spec.build().map_err(|r| self.fail(grep.line, r))?;
        if name == "fastboot" {
            let Some(var) = self.p.fastboot(&args, src.line)? else {
                return Err(self.fail(line, "only `fastboot getvar` output may be piped into grep"));
            };
            Ok(self.p.getvar_match(&var, &m))
        } else {
            let text = args.join(" ");
            self.p.text_match(&text, &m).map_err(|r| self.fail(line, r))
        }
    }
}

pub(super) fn plan(file: &str, text: &str, files: &dyn PackageFiles) -> Result<Plan, ScriptError> {
    let mut p = Planner::new(file, text, files);
    let (nodes, comments) = parse_source(text, 1).map_err(|(l, why, kind)| p.err(l, kind, why))?;
    for (line, body) in comments {
        if !(line == 1 && body.starts_with("#!")) {
            p.note_comment(line, body.trim_start_matches('#'));
        }
    }
    let mut vet = Vetter { handlers: HashSet::new() };
    vet.nodes(&nodes).map_err(|(l, why, kind)| p.err(l, kind, why))?;
    let mut sh = Sh { p, handlers: vet.handlers, status: Truth::Known(true) };
    for (i, n) in nodes.iter().enumerate() {
        if sh.run(n)? == Flow::Exit {
            if let Some(l) = contains_fastboot(&nodes[i + 1..]) {
                return Err(sh.fail(l, format!("this fastboot command comes after the script's `exit` on line {} and would never run", n.line())));
            }
            break;
        }
    }
    Ok(sh.p.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_words_quotes_and_substitutions() {
        let (toks, comments) = Lexer::new("fastboot $* flash a `dirname $0`/images/a.img 2>&1 # c\nx=\"$(dirname $0)\"", 1).tokens().unwrap();
        assert_eq!(comments, vec![(1, "# c".to_string())]);
        let words: Vec<&Word> = toks.iter().filter_map(|t| if let Tok::Word(w) = t { Some(w) } else { None }).collect();
        assert_eq!(words[1].parts, vec![Part::Var("*".into())]);
        assert_eq!(words[4].parts, vec![Part::Subst("dirname $0".into(), 1), Part::Lit("/images/a.img".into())]);
        assert!(toks.iter().any(|t| matches!(t, Tok::Redir(r) if r.fd == Some(2) && r.op == ">&")));
    }

    #[test]
    fn parses_if_and_functions() {
        let (nodes, _) = parse_source("f()\n{\n echo $@\n exit 2;\n}\nif [ -e x ]; then\na=1\nelif true; then b=2; else c=3\nfi\n", 1).unwrap();
        assert!(matches!(nodes[0], Node::FuncDef { .. }));
        match &nodes[1] {
            Node::If { arms, els, line } => {
                assert_eq!(arms.len(), 2);
                assert!(els.is_some());
                assert_eq!(*line, 6);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn substitution_vocabulary() {
        assert!(matches!(recognise_subst("dirname $0", 1), Ok(Subst::Dirname)));
        assert!(matches!(recognise_subst("cat $(dirname $0)/images/anti_version.txt", 1), Ok(Subst::Cat(_))));
        assert!(recognise_subst("curl x", 1).is_err());
        assert!(recognise_subst("cat $(curl x)", 1).is_err());
        assert!(recognise_subst("dirname $1", 1).is_err());
    }
}
