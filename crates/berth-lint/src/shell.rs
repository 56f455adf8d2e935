//! A lenient POSIX shell parser for RUN's shell text: enough structure for lint rules to judge
//! commands by their argv (`apt-get install -y foo=1.2`), pipelines (`curl … | sh`) and options
//! (`set -o pipefail`), never by regexes over the raw line.
//!
//! It never fails: unterminated quotes, substitutions or heredocs run to the end of the text, and
//! unknown syntax is read as words. Every simple command is found, wherever it sits: in `&&` /
//! `||` lists, pipelines, subshells, brace groups, `if`/`while`/`until`/`for`/`case` bodies,
//! function bodies, `$(…)` and backtick substitutions.

use std::ops::Range;

/// One parsed script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// Every simple command, in source order (a command inside `$(…)` comes before the command
    /// that contains it, as the shell runs it).
    pub commands: Vec<SimpleCommand>,
    /// Every pipeline of two or more commands; entries are indices into `commands`.
    pub pipelines: Vec<Pipeline>,
}

/// A simple command: assignments, words, redirections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// Leading `NAME=value` assignments.
    pub assignments: Vec<Word>,
    /// argv: the command name and its arguments (redirections removed).
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
    /// Byte range in the script text, from the first assignment or word to the last.
    pub span: Range<usize>,
    /// Inside a `$(…)` or backtick substitution.
    pub in_substitution: bool,
    /// The index in [`Script::pipelines`] of the pipeline this command is part of, if any.
    pub pipeline: Option<usize>,
}

/// A word as written and as the shell would see it when it holds no expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word as written, quotes included.
    pub raw: String,
    /// The word with quotes and backslash escapes removed; expansions (`$x`, `${x}`, `$(…)`,
    /// backticks) are kept as written.
    pub value: String,
    /// Whether the word holds an unquoted or double-quoted expansion (its value is unknown
    /// until run time).
    pub has_expansion: bool,
    /// Byte range in the script text.
    pub span: Range<usize>,
}

/// A redirection (`> f`, `2>&1`, `<<EOF`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The file descriptor written before the operator, if any.
    pub fd: Option<u32>,
    /// The operator: `>`, `>>`, `<`, `<<`, `<<-`, `<<<`, `>&`, `<&`, `<>`, `>|`, `&>`, `&>>`.
    pub op: String,
    /// The target word (for heredocs: the delimiter word).
    pub target: Word,
}

/// Commands joined by `|` (or `|&`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Indices into [`Script::commands`] of the pipeline's simple commands, left to right.
    /// A compound element (subshell, group, loop) contributes its commands.
    pub commands: Vec<usize>,
    /// Written with a leading `!`.
    pub negated: bool,
}

/// Deepest nesting of `$(…)`, backticks, subshells and groups parsed as commands; deeper text is
/// read as plain words.
const MAX_DEPTH: usize = 64;

/// Parses shell text. Never fails: see the module documentation.
pub fn parse(text: &str) -> Script {
    let mut p = Parser {
        src: text.as_bytes(),
        text,
        pos: 0,
        script: Script::default(),
        pending_heredocs: Vec::new(),
        depth: 0,
        in_subst: 0,
        in_case: 0,
    };
    p.parse_list(None);
    p.script
}

impl SimpleCommand {
    /// The command name (argv\[0\]) when it holds no expansion, as written (`/usr/bin/apt-get`).
    pub fn name(&self) -> Option<&str> {
        self.words
            .first()
            .filter(|w| !w.has_expansion)
            .map(|w| w.value.as_str())
    }

    /// The command name without its directory (`apt-get` for `/usr/bin/apt-get`).
    pub fn basename(&self) -> Option<&str> {
        self.name().map(|n| n.rsplit('/').next().unwrap_or(n))
    }

    /// argv\[1..\].
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The flags, as hadolint reads them: `-abc` is `a`, `b`, `c`; `--name[=value]` is `name`;
    /// a lone `--` ends the flags.
    pub fn flags(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for w in self.args() {
            let v = w.value.as_str();
            if v == "--" {
                break;
            }
            if let Some(long) = v.strip_prefix("--") {
                out.push(long.split('=').next().unwrap_or(long));
            } else if let Some(short) = v.strip_prefix('-')
                && !short.is_empty()
            {
                for (i, _) in short.char_indices() {
                    let end = short[i..].chars().next().map_or(i, |c| i + c.len_utf8());
                    out.push(&short[i..end]);
                }
            }
        }
        out
    }

    /// Whether flag `name` is given (one letter: a short flag, possibly grouped; longer: a long flag).
    pub fn has_flag(&self, name: &str) -> bool {
        let long = name.chars().count() > 1;
        let mut ended = false;
        self.args().iter().any(|w| {
            let v = w.value.as_str();
            if ended {
                return false;
            }
            if v == "--" {
                ended = true;
                return false;
            }
            if let Some(l) = v.strip_prefix("--") {
                long && l.split('=').next() == Some(name)
            } else if let Some(s) = v.strip_prefix('-') {
                if long {
                    // Single-dash long options (`-nv`, `-qq` are read as groups by hadolint, but
                    // tools such as wget also accept `-nv` as one option).
                    s == name
                } else {
                    s.contains(name)
                }
            } else {
                false
            }
        })
    }

    pub fn has_any_flag(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.has_flag(n))
    }

    /// The arguments that are not flags.
    pub fn args_no_flags(&self) -> Vec<&Word> {
        self.args_no_flags_with(&[])
    }

    /// The arguments that are not flags, also skipping the values of `flags_with_values`
    /// (`-o X`, `--opt X`; `--opt=X` and `-oX` carry their value in the flag word).
    pub fn args_no_flags_with(&self, flags_with_values: &[&str]) -> Vec<&Word> {
        let mut out = Vec::new();
        let mut skip_next = false;
        let mut ended = false;
        for w in self.args() {
            let v = w.value.as_str();
            if ended {
                out.push(w);
                continue;
            }
            if skip_next {
                skip_next = false;
                continue;
            }
            if v == "--" {
                ended = true;
                continue;
            }
            if let Some(l) = v.strip_prefix("--") {
                if !l.contains('=') && flags_with_values.contains(&l) {
                    skip_next = true;
                }
                continue;
            }
            if let Some(s) = v.strip_prefix('-')
                && !s.is_empty()
            {
                // `-o X`: the value follows when the group ends with a flag taking one.
                if let Some(last) = s.chars().last()
                    && flags_with_values
                        .iter()
                        .any(|f| f.chars().count() == 1 && f.starts_with(last))
                {
                    skip_next = true;
                }
                continue;
            }
            out.push(w);
        }
        out
    }

    /// The values given to flag `name`: `-o X`, `-oX`, `--name X`, `--name=X`.
    pub fn flag_values(&self, name: &str) -> Vec<&str> {
        let args = self.args();
        let long = name.chars().count() > 1;
        let mut out = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let v = args[i].value.as_str();
            if v == "--" {
                break;
            }
            if long {
                if let Some(l) = v.strip_prefix("--") {
                    if let Some(val) = l.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                        out.push(val);
                    } else if l == name
                        && let Some(next) = args.get(i + 1)
                    {
                        out.push(next.value.as_str());
                        i += 1;
                    }
                }
            } else if let Some(s) = v.strip_prefix('-')
                && !s.starts_with('-')
                && let Some(rest) = s.strip_prefix(name)
            {
                if rest.is_empty() {
                    if let Some(next) = args.get(i + 1) {
                        out.push(next.value.as_str());
                        i += 1;
                    }
                } else {
                    out.push(rest);
                }
            }
            i += 1;
        }
        out
    }
}

impl Script {
    /// Commands whose basename is `name`.
    pub fn commands_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s SimpleCommand> {
        self.commands
            .iter()
            .filter(move |c| c.basename() == Some(name))
    }

    /// Whether `set -o pipefail` (in any combined form) ran before command `command`, and was
    /// not undone by `set +o pipefail`.
    pub fn sets_pipefail_before(&self, command: usize) -> bool {
        let Some(target) = self.commands.get(command) else {
            return false;
        };
        let mut on = false;
        for c in &self.commands {
            if c.span.start >= target.span.start {
                break;
            }
            if c.basename() != Some("set") {
                continue;
            }
            let args = c.args();
            for (i, a) in args.iter().enumerate() {
                let v = a.value.as_str();
                let next_is_pipefail = args.get(i + 1).is_some_and(|n| n.value == "pipefail");
                if v.starts_with('-')
                    && !v.starts_with("--")
                    && v.ends_with('o')
                    && next_is_pipefail
                {
                    on = true;
                } else if v.starts_with('+') && v.ends_with('o') && next_is_pipefail {
                    on = false;
                }
            }
        }
        on
    }
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    script: Script,
    /// Heredoc delimiters waiting for the next newline: (delimiter, strip tabs).
    pending_heredocs: Vec<(String, bool)>,
    /// Nesting of substitutions, subshells and groups.
    depth: usize,
    /// Nesting of `$(…)` and backticks.
    in_subst: usize,
    /// Nesting of `case … esac`.
    in_case: usize,
}

const RESERVED: &[&str] = &[
    "if", "then", "elif", "else", "fi", "while", "until", "do", "done", "for", "case", "esac",
    "function", "in", "select", "!", "{", "}",
];

fn is_meta(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
    )
}

/// `NAME=…`, `NAME+=…`, `NAME[i]=…`.
fn is_assignment(raw: &str) -> bool {
    let b = raw.as_bytes();
    if !b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        return false;
    }
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    if b.get(i) == Some(&b'[') {
        while i < b.len() && b[i] != b']' {
            i += 1;
        }
        i += 1;
    }
    if b.get(i) == Some(&b'+') {
        i += 1;
    }
    b.get(i) == Some(&b'=')
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos + off).copied()
    }

    /// Parses commands until the end of the text or the `close` byte at command position
    /// (consumed).
    fn parse_list(&mut self, close: Option<u8>) {
        let mut pipe: Vec<usize> = Vec::new();
        let mut piped = false;
        let mut negated = false;
        loop {
            self.skip_blanks();
            let Some(b) = self.peek() else {
                self.finish_pipeline(&mut pipe, &mut piped, negated);
                return;
            };
            if Some(b) == close {
                self.pos += 1;
                self.finish_pipeline(&mut pipe, &mut piped, negated);
                return;
            }
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.read_heredoc_bodies();
                    self.finish_pipeline(&mut pipe, &mut piped, negated);
                    negated = false;
                }
                b'#' => self.skip_comment(),
                b'&' if self.peek_at(1) == Some(b'>') => self.simple_into(&mut pipe, &mut negated),
                b';' | b'&' => {
                    self.pos += 1;
                    while matches!(self.peek(), Some(b';' | b'&')) {
                        self.pos += 1;
                    }
                    self.finish_pipeline(&mut pipe, &mut piped, negated);
                    negated = false;
                }
                b'|' => {
                    self.pos += 1;
                    if self.peek() == Some(b'|') {
                        self.pos += 1;
                        self.finish_pipeline(&mut pipe, &mut piped, negated);
                        negated = false;
                    } else {
                        if self.peek() == Some(b'&') {
                            self.pos += 1;
                        }
                        piped = true;
                    }
                }
                b'(' => {
                    self.pos += 1;
                    if self.peek() == Some(b'(') {
                        // `(( arithmetic ))`: no commands.
                        self.pos -= 1;
                        self.skip_balanced(b'(', b')');
                        continue;
                    }
                    let before = self.script.commands.len();
                    self.nested(|p| p.parse_list(Some(b')')));
                    pipe.extend(before..self.script.commands.len());
                    self.skip_redirects_after_compound();
                }
                b')' | b'}' | b'`' => {
                    // A stray closer (or one of a level cut off by the depth bound).
                    self.pos += 1;
                }
                _ => {
                    if self.in_case > 0 && self.skip_case_pattern() {
                        continue;
                    }
                    self.simple_into(&mut pipe, &mut negated);
                }
            }
        }
    }

    fn simple_into(&mut self, pipe: &mut Vec<usize>, negated: &mut bool) {
        let before = self.script.commands.len();
        let start = self.pos;
        if self.parse_simple() {
            *negated = true;
        }
        for i in before..self.script.commands.len() {
            if !self.script.commands[i].in_substitution || self.in_subst > 0 {
                pipe.push(i);
            }
        }
        if self.pos == start {
            // Always advance.
            self.pos += 1;
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self)) {
        if self.depth >= MAX_DEPTH {
            // Too deep: the rest of the text is not read as commands.
            self.pos = self.src.len();
            return;
        }
        self.depth += 1;
        f(self);
        self.depth -= 1;
    }

    fn finish_pipeline(&mut self, pipe: &mut Vec<usize>, piped: &mut bool, negated: bool) {
        let mut cmds = std::mem::take(pipe);
        cmds.sort_unstable();
        cmds.dedup();
        if *piped && cmds.len() >= 2 {
            let idx = self.script.pipelines.len();
            for &c in &cmds {
                if self.script.commands[c].pipeline.is_none() {
                    self.script.commands[c].pipeline = Some(idx);
                }
            }
            self.script.pipelines.push(Pipeline {
                commands: cmds,
                negated,
            });
        }
        *piped = false;
    }

    fn skip_blanks(&mut self) {
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\t' || b == b'\r' {
                self.pos += 1;
            } else if b == b'\\' && self.peek_at(1) == Some(b'\n') {
                self.pos += 2;
            } else {
                break;
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    /// From an opening byte to its matching close (nesting counted, quotes ignored).
    fn skip_balanced(&mut self, open: u8, close: u8) {
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == open {
                depth += 1;
            } else if b == close {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            }
        }
    }

    fn skip_redirects_after_compound(&mut self) {
        loop {
            self.skip_blanks();
            let start = self.pos;
            if self.read_redirect_op().is_some() {
                self.skip_blanks();
                let _ = self.read_word();
            } else {
                self.pos = start;
                return;
            }
        }
    }

    /// After a newline: skips the bodies of heredocs opened on the line just ended.
    fn read_heredoc_bodies(&mut self) {
        let pending = std::mem::take(&mut self.pending_heredocs);
        for (delim, strip_tabs) in pending {
            while self.pos < self.src.len() {
                let line_end = self.src[self.pos..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.src.len(), |i| self.pos + i);
                let mut line = &self.text[self.pos..line_end];
                line = line.strip_suffix('\r').unwrap_or(line);
                if strip_tabs {
                    line = line.trim_start_matches('\t');
                }
                self.pos = (line_end + 1).min(self.src.len());
                if line == delim {
                    break;
                }
            }
        }
    }

    /// At command position inside `case`: skips a pattern (`a|b)`, `(x)`, `*)`) if there is one.
    fn skip_case_pattern(&mut self) -> bool {
        let rest = &self.src[self.pos..];
        let mut i = 0;
        if rest.first() == Some(&b'(') {
            i = 1;
        }
        let mut quote: Option<u8> = None;
        while let Some(&b) = rest.get(i) {
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None => match b {
                    b'\'' | b'"' => quote = Some(b),
                    b')' => {
                        if i == 0 {
                            return false;
                        }
                        let word = &self.text[self.pos..self.pos + i];
                        if word.trim() == "esac" {
                            return false;
                        }
                        self.pos += i + 1;
                        return true;
                    }
                    b'\n' | b';' | b'(' | b'&' | b'<' | b'>' => return false,
                    b' ' | b'\t' => {
                        // Spaces only around `|` in a pattern list.
                        let before = self.text[self.pos..self.pos + i].trim_end();
                        let after = self.text[self.pos + i..].trim_start();
                        if !before.ends_with('|') && !after.starts_with('|') {
                            return false;
                        }
                    }
                    _ => {}
                },
            }
            i += 1;
        }
        false
    }

    /// Reads a simple command into the script; returns whether it began with `!`.
    fn parse_simple(&mut self) -> bool {
        let mut cmd = SimpleCommand {
            assignments: Vec::new(),
            words: Vec::new(),
            redirects: Vec::new(),
            span: self.pos..self.pos,
            in_substitution: self.in_subst > 0,
            pipeline: None,
        };
        let mut bang = false;
        loop {
            self.skip_blanks();
            let Some(b) = self.peek() else { break };
            if matches!(b, b'\n' | b';' | b'|' | b')' | b'`' | b'(')
                || (b == b'&' && self.peek_at(1) != Some(b'>'))
            {
                break;
            }
            if b == b'#' {
                // A comment ends the command (`#` starts a word only after a blank).
                break;
            }
            let start = self.pos;
            if let Some((fd, op)) = self.read_redirect_op() {
                self.skip_blanks();
                let target = self.read_word();
                if op == "<<" || op == "<<-" {
                    self.pending_heredocs
                        .push((target.value.clone(), op == "<<-"));
                }
                cmd.span.end = target.span.end.max(cmd.span.end);
                cmd.redirects.push(Redirect { fd, op, target });
                continue;
            }
            self.pos = start;
            let word = self.read_word();
            if word.raw.is_empty() {
                break;
            }
            if cmd.words.is_empty() && cmd.assignments.is_empty() {
                cmd.span.start = word.span.start;
            }
            cmd.span.end = word.span.end;
            if cmd.words.is_empty() {
                if is_assignment(&word.raw) {
                    cmd.assignments.push(word);
                    continue;
                }
                if !word.has_expansion && word.raw == word.value {
                    let v = word.value.as_str();
                    if RESERVED.contains(&v) {
                        match v {
                            "!" => bang = true,
                            "case" => {
                                self.skip_blanks();
                                let _ = self.read_word();
                                self.skip_blanks();
                                let _ = self.read_word(); // `in`
                                self.in_case += 1;
                                // Patterns come next: parse_list reads them.
                                break;
                            }
                            "esac" => self.in_case = self.in_case.saturating_sub(1),
                            "for" | "select" => self.skip_for_header(),
                            "function" => {
                                self.skip_blanks();
                                let _ = self.read_word();
                                self.skip_blanks();
                                if self.src[self.pos..].starts_with(b"()") {
                                    self.pos += 2;
                                }
                            }
                            _ => {}
                        }
                        cmd.span.start = self.pos;
                        continue;
                    }
                    // `name() { … }`: a function definition, not a command.
                    self.skip_blanks();
                    if self.src[self.pos..].starts_with(b"()") {
                        self.pos += 2;
                        cmd.span.start = self.pos;
                        continue;
                    }
                }
            }
            cmd.words.push(word);
        }
        // Redirections alone (`done < f`, `> file`) run no program: not a command for the rules.
        if !(cmd.words.is_empty() && cmd.assignments.is_empty()) {
            self.script.commands.push(cmd);
        }
        bang
    }

    /// `for NAME [in WORDS…]` up to the `;` or newline before `do`.
    fn skip_for_header(&mut self) {
        self.skip_blanks();
        if self.src[self.pos..].starts_with(b"((") {
            self.skip_balanced(b'(', b')');
            return;
        }
        let _ = self.read_word();
        self.skip_blanks();
        let save = self.pos;
        let w = self.read_word();
        if w.raw != "in" {
            self.pos = save;
            return;
        }
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some(b'\n' | b';') => return,
                _ => {
                    let w = self.read_word();
                    if w.raw.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    /// A redirection operator with its optional fd; restores nothing on failure (callers do).
    fn read_redirect_op(&mut self) -> Option<(Option<u32>, String)> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let fd = if self.pos > start {
            self.text[start..self.pos].parse().ok()
        } else {
            None
        };
        let rest = &self.text[self.pos..];
        let ops = [
            "<<<", "<<-", "<<", "<&", "<>", "<", ">>", ">&", ">|", ">", "&>>", "&>",
        ];
        for op in ops {
            if rest.starts_with(op) {
                if op.starts_with('&') && fd.is_some() {
                    break;
                }
                // `<(…)` / `>(…)` process substitution is a word, not a redirection.
                if (op == "<" || op == ">") && rest.as_bytes().get(1) == Some(&b'(') {
                    break;
                }
                self.pos += op.len();
                return Some((fd, op.to_string()));
            }
        }
        self.pos = start;
        None
    }

    /// Reads one word (possibly empty when at a metacharacter).
    fn read_word(&mut self) -> Word {
        let start = self.pos;
        let mut value = String::new();
        let mut has_expansion = false;
        while let Some(b) = self.peek() {
            if b == b'<' || b == b'>' {
                if self.peek_at(1) == Some(b'(') {
                    // Process substitution.
                    self.pos += 1;
                    let s = self.pos;
                    self.substitution(b')');
                    value.push(b as char);
                    value.push_str(&self.text[s..self.pos]);
                    has_expansion = true;
                    continue;
                }
                break;
            }
            if is_meta(b) {
                break;
            }
            match b {
                b'\\' => {
                    if self.peek_at(1) == Some(b'\n') {
                        self.pos += 2;
                        continue;
                    }
                    self.pos += 1;
                    self.push_char(&mut value);
                }
                b'\'' => {
                    self.pos += 1;
                    let s = self.pos;
                    while self.peek().is_some_and(|c| c != b'\'') {
                        self.pos += 1;
                    }
                    value.push_str(&self.text[s..self.pos]);
                    if self.peek().is_some() {
                        self.pos += 1;
                    }
                }
                b'"' => {
                    self.pos += 1;
                    while let Some(c) = self.peek() {
                        match c {
                            b'"' => {
                                self.pos += 1;
                                break;
                            }
                            b'\\' => {
                                self.pos += 1;
                                match self.peek() {
                                    Some(b'\n') => self.pos += 1,
                                    Some(b'$' | b'`' | b'"' | b'\\') => self.push_char(&mut value),
                                    _ => value.push('\\'),
                                }
                            }
                            b'$' | b'`' => {
                                has_expansion |= self.expansion(&mut value);
                            }
                            _ => self.push_char(&mut value),
                        }
                    }
                }
                b'$' | b'`' => {
                    has_expansion |= self.expansion(&mut value);
                }
                _ => self.push_char(&mut value),
            }
        }
        Word {
            raw: self.text[start..self.pos].to_string(),
            value,
            has_expansion,
            span: start..self.pos,
        }
    }

    /// Pushes the character at `pos` (if any) and advances past it.
    fn push_char(&mut self, value: &mut String) {
        if let Some(c) = self.text[self.pos..].chars().next() {
            value.push(c);
            self.pos += c.len_utf8();
        }
    }

    /// An expansion at `$` or a backtick: appended to `value` as written. Returns whether it
    /// is a run-time expansion (`$'…'` is a quoted literal).
    fn expansion(&mut self, value: &mut String) -> bool {
        let start = self.pos;
        if self.peek() == Some(b'`') {
            self.pos += 1;
            self.substitution(b'`');
            value.push_str(&self.text[start..self.pos]);
            return true;
        }
        self.pos += 1; // `$`
        match self.peek() {
            Some(b'(') if self.peek_at(1) == Some(b'(') => {
                self.skip_balanced(b'(', b')');
            }
            Some(b'(') => {
                self.pos += 1;
                self.substitution(b')');
            }
            Some(b'{') => self.skip_braces(),
            Some(b'\'') => {
                // ANSI-C quoting: a literal; escapes kept as written.
                self.pos += 1;
                let s = self.pos;
                while let Some(c) = self.peek() {
                    if c == b'\\' {
                        self.pos += 2;
                        continue;
                    }
                    if c == b'\'' {
                        break;
                    }
                    self.pos += 1;
                }
                let end = self.pos.min(self.src.len());
                value.push_str(&self.text[s..end]);
                if self.peek().is_some() {
                    self.pos += 1;
                }
                self.pos = self.pos.min(self.src.len());
                return false;
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.pos += 1;
                }
            }
            Some(c) if c.is_ascii_digit() || b"@*#?$!-".contains(&c) => self.pos += 1,
            _ => {
                // A lone `$` is literal.
                value.push('$');
                return false;
            }
        }
        value.push_str(&self.text[start..self.pos]);
        true
    }

    /// `${…}` with nested braces and quotes.
    fn skip_braces(&mut self) {
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'\\' => {
                    self.pos += 2;
                    continue;
                }
                b'\'' => {
                    self.pos += 1;
                    while self.peek().is_some_and(|c| c != b'\'') {
                        self.pos += 1;
                    }
                }
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.pos += 1;
                        return;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        self.pos = self.pos.min(self.src.len());
    }

    /// The commands of a `$(…)` or backtick substitution, up to `close`.
    fn substitution(&mut self, close: u8) {
        let heredocs = std::mem::take(&mut self.pending_heredocs);
        self.in_subst += 1;
        self.nested(|p| p.parse_list(Some(close)));
        self.in_subst -= 1;
        self.pending_heredocs.splice(0..0, heredocs);
        self.pos = self.pos.min(self.src.len());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn argv(s: &Script) -> Vec<Vec<String>> {
        s.commands
            .iter()
            .map(|c| c.words.iter().map(|w| w.value.clone()).collect())
            .collect()
    }

    fn v(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn lists_and_assignments() {
        let s = parse(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl=7.88.1-10 ca-certificates && rm -rf /var/lib/apt/lists/*",
        );
        assert_eq!(
            argv(&s),
            v(&[
                &["apt-get", "update"],
                &[
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "curl=7.88.1-10",
                    "ca-certificates"
                ],
                &["rm", "-rf", "/var/lib/apt/lists/*"],
            ])
        );
        assert_eq!(
            s.commands[1].assignments[0].value,
            "DEBIAN_FRONTEND=noninteractive"
        );
        assert!(s.pipelines.is_empty());
    }

    #[test]
    fn quotes_escapes_and_expansions() {
        let s = parse("echo 'a b' \"c $HOME d\" e\\ f $'g\\n' ${X:-\"y z\"} $(id -u)");
        let c = &s.commands[1];
        assert_eq!(s.commands[0].words[0].value, "id");
        assert!(s.commands[0].in_substitution);
        let vals: Vec<&str> = c.words.iter().map(|w| w.value.as_str()).collect();
        assert_eq!(
            vals,
            [
                "echo",
                "a b",
                "c $HOME d",
                "e f",
                "g\\n",
                "${X:-\"y z\"}",
                "$(id -u)"
            ]
        );
        assert!(!c.words[1].has_expansion);
        assert!(c.words[2].has_expansion);
        assert!(!c.words[4].has_expansion);
    }

    #[test]
    fn pipelines_and_pipefail() {
        let s = parse(
            "set -eux; set -o pipefail; curl -fsSL https://x | tar -xz -C /opt\nwget -qO- y | sh",
        );
        assert_eq!(s.pipelines.len(), 2);
        assert_eq!(s.pipelines[0].commands, vec![2, 3]);
        assert!(s.sets_pipefail_before(2));
        let s = parse("curl x | sh; set -euxo pipefail; a | b");
        assert!(!s.sets_pipefail_before(s.pipelines[0].commands[0]));
        assert!(s.sets_pipefail_before(s.pipelines[1].commands[0]));
        let s = parse("set -o pipefail; set +o pipefail; a | b");
        assert!(!s.sets_pipefail_before(s.pipelines[0].commands[0]));
        assert!(parse("a || b && c").pipelines.is_empty());
    }

    #[test]
    fn compound_commands() {
        let s = parse("if [ -f x ]; then cd /src && make; elif true; then :; else exit 1; fi");
        assert_eq!(
            argv(&s),
            v(&[
                &["[", "-f", "x", "]"],
                &["cd", "/src"],
                &["make"],
                &["true"],
                &[":"],
                &["exit", "1"]
            ])
        );
        let s = parse("for p in a b; do pip install \"$p\"; done");
        assert_eq!(argv(&s), v(&[&["pip", "install", "$p"]]));
        let s = parse(
            "case \"$ARCH\" in amd64) A=x ;; arm64|aarch64) A=y; echo hi ;; *) exit 1 ;; esac",
        );
        assert_eq!(argv(&s), v(&[&[], &[], &["echo", "hi"], &["exit", "1"]]));
        let s = parse("f() { cd /x; }; function g { sudo y; }; (cd /z && ls) | wc -l");
        assert_eq!(
            argv(&s),
            v(&[
                &["cd", "/x"],
                &["sudo", "y"],
                &["cd", "/z"],
                &["ls"],
                &["wc", "-l"]
            ])
        );
        assert_eq!(s.pipelines.len(), 1);
        assert_eq!(s.pipelines[0].commands, vec![2, 3, 4]);
        let s = parse("while read l; do echo \"$l\"; done < f; ! grep -q x y");
        assert_eq!(
            argv(&s),
            v(&[&["read", "l"], &["echo", "$l"], &["grep", "-q", "x", "y"]])
        );
    }

    #[test]
    fn heredocs_are_skipped() {
        let s = parse("cat <<EOF > /etc/x\napt-get install nothing-here\nEOF\necho done");
        assert_eq!(argv(&s), v(&[&["cat"], &["echo", "done"]]));
        assert_eq!(s.commands[0].redirects[0].op, "<<");
        assert_eq!(s.commands[0].redirects[1].target.value, "/etc/x");
        let s = parse("cat <<-'A' <<B\n\tsudo x\n\tA\nsudo y\nB\nls");
        assert_eq!(argv(&s), v(&[&["cat"], &["ls"]]));
    }

    #[test]
    fn comments_continuations_redirects() {
        let s = parse("echo a # sudo rm\napt-get \\\n  install -y x 2>&1 >/dev/null &>log");
        assert_eq!(
            argv(&s),
            v(&[&["echo", "a"], &["apt-get", "install", "-y", "x"]])
        );
        assert_eq!(s.commands[1].redirects.len(), 3);
        assert_eq!(s.commands[1].redirects[0].fd, Some(2));
        assert_eq!(s.commands[1].redirects[0].op, ">&");
        assert_eq!(parse("echo a#b").commands[0].words[1].value, "a#b");
    }

    #[test]
    fn flags() {
        let s = parse(
            "apt-get -qq -o Dpkg::Options::=--force-confnew install --no-install-recommends -t bookworm-backports curl -- -weird",
        );
        let c = &s.commands[0];
        assert!(c.has_flag("q") && c.has_flag("o") && c.has_flag("no-install-recommends"));
        assert!(!c.has_flag("y") && !c.has_flag("weird"));
        assert_eq!(c.flag_values("o"), ["Dpkg::Options::=--force-confnew"]);
        let pos: Vec<&str> = c
            .args_no_flags_with(&["o", "t"])
            .iter()
            .map(|w| w.value.as_str())
            .collect();
        assert_eq!(pos, ["install", "curl", "-weird"]);
        let c = &parse("useradd --uid=123456 -lm x").commands[0];
        assert_eq!(c.flag_values("uid"), ["123456"]);
        assert!(c.has_flag("l") && c.has_flag("m"));
        assert_eq!(c.basename(), Some("useradd"));
        assert_eq!(
            parse("/usr/bin/apt-get x").commands[0].basename(),
            Some("apt-get")
        );
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for text in [
            "echo 'unterminated",
            "echo \"unterminated $(",
            "$(",
            "`",
            ")))}}} fi done esac",
            "case x in",
            "for",
            "cat <<",
            "a\\",
            "$'\\",
            "${",
            "é$'\\é' \"\\é\" ${é} $é `é`",
            "\0\0 | \0",
        ] {
            let _ = parse(text);
        }
        let deep = "$(".repeat(10_000);
        let _ = parse(&deep);
        let deep = "(".repeat(10_000);
        let _ = parse(&deep);
        let long = "a ".repeat(100_000);
        assert_eq!(parse(&long).commands[0].words.len(), 100_000);
    }
}
