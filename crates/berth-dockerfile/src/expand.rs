//! BuildKit's Dockerfile word lexer: quote removal and `$` expansion, as
//! `moby/buildkit`'s `frontend/dockerfile/shell/lex.go` does it.
//!
//! One word goes in; quotes and escapes are removed and variables expanded against an [`Env`]:
//!
//! - The escape character is configurable (`\` by default, `` ` `` after `# escape=`).
//!   Outside quotes it makes the next character literal; at the very end it is dropped.
//! - `'…'` is literal up to the next `'`. Inside `"…"`, `$` expands and the escape character
//!   escapes only `"`, `$` and itself (before anything else it stays as written).
//! - `$name` (letters, digits, `_`), a run of digits (`$1`, `$001`), the special parameters
//!   `$@ $* $# $? $- $$ $!` (never set in a Dockerfile, so they expand to nothing), `${name}`,
//!   and the modifiers `${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?m} ${v?m} ${v#p} ${v##p} ${v%p}
//!   ${v%%p} ${v/p/r} ${v//p/r}`. The word after a modifier is expanded in turn. A `$` that
//!   starts nothing valid stays a `$`; unset variables expand to nothing (or stay as written
//!   with [`Lexer::skip_unset`]).
//! - Patterns (see [`glob_match`]) know `*` and `?` (neither matches a newline) and `\` before
//!   `*`, `?` or `\`; everything else, `[` included, is literal — BuildKit has no bracket
//!   expressions. `#`/`%` take the shortest match, `##`/`%%` and `/` the longest (leftmost
//!   first, as Go's `regexp` picks it), and `${v//p/r}` expands `$0` in `r` to the matched text,
//!   `$$` to `$` and any other `$name`/`${name}` to nothing, as Go's `Regexp.ReplaceAllString`
//!   does (`${v/p/r}` inserts `r` as it is).
//! - [`Lexer::process_words`] splits the result on unquoted whitespace; whitespace that an
//!   unquoted `$` expansion produces splits too, quoted text never does.
//!
//! BuildKit's quirks are kept on purpose, so that a Dockerfile means the same here as under
//! `docker build`; each is pinned by a test:
//!
//! - In [`Lexer::process_words`], a `${…}` with a modifier discards the part of the current
//!   word that came before it (lex.go's nested calls share one word buffer):
//!   `a${X:-b}` gives the words `["b"]`, while [`Lexer::process_word`] gives `ab`.
//! - With [`Lexer::skip_unset`], an unset `${v//p/r}` is written back as `${v/p/r}`.
//! - Errors carry BuildKit's words, prefixed with `failed to process "<word>"`.
//!
//! The only known difference: which non-ASCII characters count as letters in a variable name.
//! Go uses Unicode category L; this module uses Rust's `Alphabetic` property less numerals,
//! which also admits combining vowel signs (e.g. Devanagari `ा`). ASCII is exact.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, or `None` when it is unset (an empty value is set).
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// Ordered `(name, value)` pairs; the last entry of a name wins.
impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Same as the slice: the last entry of a name wins.
impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

/// The result of [`Lexer::process_word_with_matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The word, quotes removed and variables expanded.
    pub value: String,
    /// Names that were looked up and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// Why a word could not be expanded. `Display` prints BuildKit's message, e.g.
/// `failed to process "${FOO:?}": FOO: is not allowed to be unset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandError {
    /// `${name?message}` on an unset variable, or `${name:?message}` on an unset or empty one.
    /// `message` is the expanded word after `?`, or BuildKit's default (`is not allowed to be
    /// unset` / `is not allowed to be empty`) when that is empty.
    #[error("failed to process {}: {name}: {message}", GoQuoted(.word))]
    UnsetRequired {
        word: String,
        name: String,
        message: String,
    },
    /// A `'` or `"` (given in `quote`) with no closing one.
    #[error(
        "failed to process {}: unexpected end of statement while looking for matching {}",
        GoQuoted(.word),
        if *.quote == '\'' { "single-quote" } else { "double-quote" }
    )]
    UnterminatedQuote { word: String, quote: char },
    /// `${` with no closing `}`.
    #[error("failed to process {}: syntax error: missing '}}'", GoQuoted(.word))]
    MissingBrace { word: String },
    /// `${v/pattern` with no `/` after the pattern.
    #[error("failed to process {}: syntax error: missing '/' in ${{}}", GoQuoted(.word))]
    MissingSlash { word: String },
    /// `${}`, `${:…}`, `${{…`, `${}…`.
    #[error("failed to process {}: syntax error: bad substitution", GoQuoted(.word))]
    BadSubstitution { word: String },
    /// A `${name…}` followed by something other than a known modifier (`${v:=x}`, `${v.}`,
    /// `${v:#x}`). When the word ends right after the name, `modifier` is U+FFFD, as in
    /// BuildKit's message.
    #[error("failed to process {}: unsupported modifier ({modifier}) in substitution", GoQuoted(.word))]
    UnsupportedModifier { word: String, modifier: String },
    /// A pattern with `\` before something other than `*`, `?`, `\` (or a trailing `\`, then
    /// `escaped` is U+FFFD). `pattern` is as BuildKit reports it: for `%`/`%%`, reversed.
    #[error(
        "failed to process {}: invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'",
        GoQuoted(.word)
    )]
    InvalidPattern {
        word: String,
        pattern: String,
        escaped: char,
    },
}

impl ExpandError {
    /// The word whose expansion failed, as given.
    pub fn word(&self) -> &str {
        match self {
            Self::UnsetRequired { word, .. }
            | Self::UnterminatedQuote { word, .. }
            | Self::MissingBrace { word }
            | Self::MissingSlash { word }
            | Self::BadSubstitution { word }
            | Self::UnsupportedModifier { word, .. }
            | Self::InvalidPattern { word, .. } => word,
        }
    }
}

/// An error before it knows which word it belongs to.
#[derive(Debug)]
enum Fail {
    Required {
        name: String,
        message: String,
    },
    Quote(char),
    /// End of input while looking for this stop character; the `${…}` parser always turns it
    /// into [`Fail::MissingBrace`] or [`Fail::MissingSlash`].
    End(char),
    MissingBrace,
    MissingSlash,
    BadSubstitution,
    Modifier(String),
    Pattern {
        pattern: String,
        escaped: char,
    },
}

impl Fail {
    fn into_error(self, word: &str) -> ExpandError {
        let word = word.to_string();
        match self {
            Fail::Required { name, message } => ExpandError::UnsetRequired {
                word,
                name,
                message,
            },
            Fail::Quote(quote) => ExpandError::UnterminatedQuote { word, quote },
            Fail::End('/') | Fail::MissingSlash => ExpandError::MissingSlash { word },
            Fail::End(_) | Fail::MissingBrace => ExpandError::MissingBrace { word },
            Fail::BadSubstitution => ExpandError::BadSubstitution { word },
            Fail::Modifier(modifier) => ExpandError::UnsupportedModifier { word, modifier },
            Fail::Pattern { pattern, escaped } => ExpandError::InvalidPattern {
                word,
                pattern,
                escaped,
            },
        }
    }
}

/// The lexer's settings. `Copy`: configure once, use anywhere.
///
/// ```text
/// Lexer::new('\\')                 // a Dockerfile without `# escape=`
/// Lexer::new('`').skip_unset(true) // `# escape=``, leaving unset variables as written
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    skip_unset: bool,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_quotes: bool,
}

impl Default for Lexer {
    /// `Lexer::new('\\')`.
    fn default() -> Self {
        Self::new('\\')
    }
}

impl Lexer {
    /// A lexer with `escape` as the escape character (`\` or `` ` ``).
    pub const fn new(escape: char) -> Self {
        Self {
            escape,
            skip_unset: false,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
        }
    }

    /// The escape character.
    pub const fn escape(&self) -> char {
        self.escape
    }

    /// Leave references to unset variables as written (`$X`, `${X}`, `${X:-…}` with the word
    /// after the modifier expanded) instead of expanding them to nothing; `${X:?}` then is no
    /// error. lex.go's `SkipUnsetEnv`, which the linter and build-step names use.
    pub const fn skip_unset(mut self, yes: bool) -> Self {
        self.skip_unset = yes;
        self
    }

    /// Keep quote characters in the output (they still group and protect). lex.go's
    /// `RawQuotes`.
    pub const fn raw_quotes(mut self, yes: bool) -> Self {
        self.raw_quotes = yes;
        self
    }

    /// Keep escape characters in the output (they still protect). lex.go's `RawEscapes`.
    pub const fn raw_escapes(mut self, yes: bool) -> Self {
        self.raw_escapes = yes;
        self
    }

    /// Treat `'` and `"` as ordinary characters (only `$` and the escape character are
    /// special). lex.go's `SkipProcessQuotes`, which BuildKit uses to expand the body of a
    /// `COPY`/`ADD` heredoc (`<<EOF` with an unquoted delimiter).
    pub const fn skip_quotes(mut self, yes: bool) -> Self {
        self.skip_quotes = yes;
        self
    }

    /// Expands `word` into one string (whitespace kept).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        self.run(word, env).map(|r| r.value)
    }

    /// Expands `word` and splits it into words on unquoted whitespace, including whitespace
    /// that an unquoted `$` expansion produced. Empty words (`""`) are dropped.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        self.run(word, env).map(|r| r.words)
    }

    /// Like [`process_word`](Self::process_word), also returning the names referenced that
    /// were set and those that were unset.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expanded, ExpandError> {
        self.run(word, env).map(|r| Expanded {
            value: r.value,
            matched: r.matched,
            unmatched: r.unmatched,
        })
    }

    fn run(&self, word: &str, env: &dyn Env) -> Result<Run, ExpandError> {
        let mut chars: Vec<char> = word.chars().collect();
        // Go's text/scanner skips a byte order mark at the very start.
        if chars.first() == Some(&'\u{FEFF}') {
            chars.remove(0);
        }
        let mut scan = Scan {
            lexer: self,
            env,
            chars,
            pos: 0,
            raw_escapes: self.raw_escapes,
            word_buf: String::new(),
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match scan.until(None, self.raw_escapes) {
            Ok((value, words)) => Ok(Run {
                value,
                words,
                matched: scan.matched,
                unmatched: scan.unmatched,
            }),
            Err(fail) => Err(fail.into_error(word)),
        }
    }
}

struct Run {
    value: String,
    words: Vec<String>,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// One expansion in progress.
struct Scan<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    chars: Vec<char>,
    pos: usize,
    /// Whether escape characters are kept, as set by the innermost [`Scan::until`].
    raw_escapes: bool,
    /// The word being built for `process_words`. Shared by all nesting levels, and cleared
    /// when one starts, exactly as lex.go's `shellWord.wordsBuffer` is.
    word_buf: String,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// The words finished so far at one nesting level.
#[derive(Default)]
struct Words(Vec<String>);

impl Words {
    /// A character from an expansion or unquoted text: whitespace ends the current word.
    fn add_char(&mut self, buf: &mut String, ch: char) {
        if ch.is_whitespace() {
            // lex.go also tracks an `inWord` flag; it is set whenever the buffer is non-empty,
            // so the buffer alone decides.
            if !buf.is_empty() {
                self.0.push(std::mem::take(buf));
            }
        } else {
            buf.push(ch);
        }
    }

    fn add_str(&mut self, buf: &mut String, s: &str) {
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.0.push(std::mem::take(buf));
        }
        self.0
    }
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// lex.go's `processStopOn`: reads up to `stop` (consumed) or the end of input (`None`),
    /// returning the text and its words.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Fail> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Fail> {
        let escape = self.lexer.escape;
        let quotes = !self.lexer.skip_quotes;
        let mut result = String::new();
        let mut words = Words::default();
        self.word_buf.clear();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish(&mut self.word_buf)));
            }
            let special = match ch {
                '$' => Some(self.dollar()?),
                '<' => Some(self.possible_heredoc()),
                '\'' if quotes => Some(self.single_quote()?),
                '"' if quotes => Some(self.double_quote()?),
                _ => None,
            };
            if let Some(text) = special {
                result.push_str(&text);
                if ch == '$' {
                    words.add_str(&mut self.word_buf, &text);
                } else {
                    self.word_buf.push_str(&text);
                }
                continue;
            }
            self.pos += 1;
            if ch == escape {
                if self.raw_escapes {
                    self.word_buf.push(ch);
                    result.push(ch);
                }
                // An escape at the end of input is dropped.
                let Some(escaped) = self.next() else { break };
                self.word_buf.push(escaped);
                result.push(escaped);
            } else {
                words.add_char(&mut self.word_buf, ch);
                result.push(ch);
            }
        }
        match stop {
            Some(stop) => Err(Fail::End(stop)),
            None => Ok((result, words.finish(&mut self.word_buf))),
        }
    }

    fn single_quote(&mut self) -> Result<String, Fail> {
        let raw = self.lexer.raw_quotes;
        let mut out = String::new();
        self.pos += 1;
        if raw {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(Fail::Quote('\'')),
                Some('\'') => {
                    if raw {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, Fail> {
        let raw = self.lexer.raw_quotes;
        let escape = self.lexer.escape;
        let mut out = String::new();
        self.pos += 1;
        if raw {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(Fail::Quote('"')),
                Some('"') => {
                    self.pos += 1;
                    if raw {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // The loop then reports the missing quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            // Anything else: the escape character stays (written twice when
                            // raw escapes are on, as lex.go does).
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<<` followed by blanks is kept together (a heredoc marker, one word).
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.pos += 1;
        let mut out = "<<".to_string();
        while let Some(ch @ ('\t' | '\r' | ' ')) = self.peek() {
            out.push(ch);
            self.pos += 1;
        }
        out
    }

    /// lex.go's `processName`: a run of digits, one special parameter, or letters, digits
    /// and `_`. Empty when none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !is_name_char(ch) {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// lex.go's `processDollar`, at a `$`.
    fn dollar(&mut self) -> Result<String, Fail> {
        let skip_unset = self.lexer.skip_unset;
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(Fail::MissingBrace),
            Some('{' | '}' | ':') => return Err(Fail::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let ch = self.next();
        // Go's string(rune(-1)) at the end of input.
        let mut modifier = ch.unwrap_or('\u{FFFD}').to_string();
        match ch {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                let op = if null_is_unset {
                    let op = self.next();
                    modifier.push(op.unwrap_or('\u{FFFD}'));
                    op
                } else {
                    ch
                };
                let pattern = matches!(op, Some('#' | '%'));
                if null_is_unset && pattern {
                    return Err(Fail::Modifier(modifier));
                }
                let word = self.until_closing(Some('}'), pattern)?;
                let value = self.lookup(&name);
                if skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = value.as_deref().is_none_or(str::is_empty);
                match op {
                    Some('-') => Ok(match value {
                        Some(v) if !(null_is_unset && v.is_empty()) => v,
                        _ => word,
                    }),
                    Some('+') => Ok(if value.is_none() || (null_is_unset && empty) {
                        String::new()
                    } else {
                        word
                    }),
                    Some('?') => {
                        let default = match &value {
                            None => "is not allowed to be unset",
                            Some(v) if null_is_unset && v.is_empty() => {
                                "is not allowed to be empty"
                            }
                            Some(v) => return Ok(v.clone()),
                        };
                        let message = if word.is_empty() {
                            default.to_string()
                        } else {
                            word
                        };
                        Err(Fail::Required { name, message })
                    }
                    Some(op @ ('#' | '%')) => {
                        let value = value.unwrap_or_default();
                        // The doubled operator is recognised after expansion, as lex.go does.
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        if op == '%' {
                            trim_suffix(pat, &value, greedy)
                        } else {
                            trim_prefix(pat, &value, greedy)
                        }
                    }
                    _ => Err(Fail::Modifier(modifier)),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let pattern = self.until_closing(Some('/'), true)?;
                let replacement = self.until_closing(Some('}'), true)?;
                let value = self.lookup(&name);
                if skip_unset && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let atoms = compile_strict(&pattern)?;
                let value: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(replace(&atoms, &value, &replacement, replace_all))
            }
            _ => Err(Fail::Modifier(modifier)),
        }
    }

    /// The word inside `${…}` up to `stop`; failing at the end of input means the `}` (or
    /// the `/`) is missing, whatever the inner failure was.
    fn until_closing(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<String, Fail> {
        match self.until(stop, raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(if stop == Some('/') {
                Fail::MissingSlash
            } else {
                Fail::MissingBrace
            }),
            Err(fail) => Err(fail),
        }
    }
}

/// Go's `unicode.IsDigit` (category Nd, Unicode 15).
fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    /// The first code point of each run of ten decimal digits outside ASCII.
    const ZEROS: [u32; 62] = [
        0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
        0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
        0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
        0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
        0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60,
        0x16AC0, 0x16B50, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950, 0x1FBF0,
    ];
    let c = u32::from(c);
    (0x1D7CE..=0x1D7FF).contains(&c) || ZEROS.iter().any(|&z| (z..z + 10).contains(&c))
}

/// Go's `unicode.IsLetter` (exact for ASCII; see the module doc for the rest).
fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        c.is_alphabetic() && !c.is_numeric()
    }
}

fn is_name_char(c: char) -> bool {
    is_letter(c) || is_digit(c) || c == '_'
}

// ---------------------------------------------------------------------------------------------
// Patterns

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Lit(char),
    /// `?`: one character other than a newline (Go's `.`).
    Any,
    /// `*`: any run of characters other than newlines (Go's `.*` / `.*?`).
    Star,
}

/// Compiles a substitution pattern the way lex.go's `convertShellPatternToRegex` reads it:
/// `\` before `}` or `/` is dropped (it protected the character inside `${…}`), `\` before
/// `*`, `?` or `\` makes it literal, and `\` before anything else is an error.
fn compile_strict(pattern: &str) -> Result<Vec<Atom>, Fail> {
    let mut chars = pattern.chars().peekable();
    if chars.peek() == Some(&'\u{FEFF}') {
        chars.next();
    }
    let mut atoms = Vec::new();
    while let Some(ch) = chars.next() {
        atoms.push(match ch {
            '*' => Atom::Star,
            '?' => Atom::Any,
            '\\' => {
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => Atom::Lit(c),
                    other => {
                        return Err(Fail::Pattern {
                            pattern: pattern.to_string(),
                            escaped: other.unwrap_or('\u{FFFD}'),
                        });
                    }
                }
            }
            c => Atom::Lit(c),
        });
    }
    Ok(atoms)
}

/// For every start position, where the match a backtracking matcher would find first ends
/// (`None`: no match starts there). Stars are greedy or lazy as asked. Linear in
/// `atoms.len() * text.len()`: row by row from the last atom, one column at a time.
fn first_match_ends(atoms: &[Atom], text: &[char], greedy: bool) -> Vec<Option<usize>> {
    let n = text.len();
    let mut next: Vec<Option<usize>> = (0..=n).map(Some).collect();
    for atom in atoms.iter().rev() {
        let mut cur = vec![None; n + 1];
        for j in (0..=n).rev() {
            let ch = text.get(j).copied();
            cur[j] = match *atom {
                Atom::Lit(c) if ch == Some(c) => next[j + 1],
                Atom::Any if ch.is_some_and(|c| c != '\n') => next[j + 1],
                Atom::Lit(_) | Atom::Any => None,
                Atom::Star => {
                    // Taking one more character first (greedy) or last (lazy).
                    let more = if ch.is_some_and(|c| c != '\n') {
                        cur[j + 1]
                    } else {
                        None
                    };
                    if greedy {
                        more.or(next[j])
                    } else {
                        next[j].or(more)
                    }
                }
            };
        }
        next = cur;
    }
    next
}

fn chars_to_string(chars: &[char]) -> String {
    chars.iter().collect()
}

/// `${v#p}` / `${v##p}`: drops the prefix the anchored pattern matches.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fail> {
    let atoms = compile_strict(pattern)?;
    let text: Vec<char> = value.chars().collect();
    let ends = first_match_ends(&atoms, &text, greedy);
    Ok(match ends.first().copied().flatten() {
        Some(end) => chars_to_string(&text[end..]),
        None => value.to_string(),
    })
}

/// `${v%p}` / `${v%%p}`: like lex.go, reverses pattern and value and trims a prefix.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, Fail> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern, keeping each `\` in front of the character it escapes (lex.go's
/// `reversePattern`; a trailing `\` has nothing to escape and moves to the front).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            out.push((chars[i + 1], '\\'));
            i += 2;
        } else {
            out.push((chars[i], '\0'));
            i += 1;
        }
    }
    let mut s = String::with_capacity(pattern.len());
    for (c, esc) in out.into_iter().rev() {
        if esc == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// `${v/p/r}` (first match) and `${v//p/r}` (every match, as Go's `ReplaceAllString`).
fn replace(atoms: &[Atom], text: &[char], replacement: &str, all: bool) -> String {
    let n = text.len();
    let ends = first_match_ends(atoms, text, true);
    // The leftmost match starting at or after each position.
    let mut leftmost: Vec<Option<(usize, usize)>> = vec![None; n + 2];
    for s in (0..=n).rev() {
        leftmost[s] = ends[s].map(|e| (s, e)).or(leftmost[s + 1]);
    }
    if !all {
        return match leftmost[0] {
            Some((s, e)) => {
                let mut out = chars_to_string(&text[..s]);
                out.push_str(replacement);
                out.extend(&text[e..]);
                out
            }
            None => chars_to_string(text),
        };
    }
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= n {
        let Some((start, end)) = leftmost[search] else {
            break;
        };
        out.extend(&text[last_end..start]);
        // No replacement for an empty match right after the previous match.
        if end > last_end || start == 0 {
            expand_template(replacement, &chars_to_string(&text[start..end]), &mut out);
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(&text[last_end..]);
    out
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0`/`${0}` the matched
/// text, any other well-formed `$name`/`${name}` nothing, and a malformed one stays as written.
fn expand_template(template: &str, matched: &str, out: &mut String) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_ref(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Go's `regexp.extract`: the reference after a `$` and the text after it.
fn template_ref(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len: usize = body
        .chars()
        .take_while(|&c| is_name_char(c))
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if brace {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}

/// Whether `pattern` matches all of `text`, in the language of the substitution patterns:
/// `*` matches any run of characters other than newlines, `?` any one character other than a
/// newline, `escape` makes the next character literal, and everything else (`[` included)
/// matches itself. Unlike the substitutions, which refuse `\x`, any escaped character is
/// literal here, and a trailing escape matches itself. Runs in
/// `O(pattern.len() * text.len())` whatever the pattern (`*a*a*a*a*b` included).
pub fn glob_match(pattern: &str, text: &str, escape: char) -> bool {
    let mut atoms = Vec::new();
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        atoms.push(match ch {
            '*' => Atom::Star,
            '?' => Atom::Any,
            c if c == escape => Atom::Lit(chars.next().unwrap_or(escape)),
            c => Atom::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let n = text.len();
    // reach[j]: the atoms from the current one on match text[j..] exactly.
    let mut reach: Vec<bool> = (0..=n).map(|j| j == n).collect();
    for atom in atoms.iter().rev() {
        let mut cur = vec![false; n + 1];
        for j in (0..=n).rev() {
            let ch = text.get(j).copied();
            cur[j] = match *atom {
                Atom::Lit(c) => ch == Some(c) && reach[j + 1],
                Atom::Any => ch.is_some_and(|c| c != '\n') && reach[j + 1],
                Atom::Star => reach[j] || (ch.is_some_and(|c| c != '\n') && cur[j + 1]),
            };
        }
        reach = cur;
    }
    reach[0]
}

/// A string quoted as Go's `%q` does, for BuildKit's `failed to process "…"`.
struct GoQuoted<'a>(&'a str);

impl fmt::Display for GoQuoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\u{7}' => f.write_str("\\a")?,
                '\u{8}' => f.write_str("\\b")?,
                '\u{c}' => f.write_str("\\f")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\u{b}' => f.write_str("\\v")?,
                c if c == ' ' || go_printable(c) => f.write_char(c)?,
                c if u32::from(c) < 0x80 => write!(f, "\\x{:02x}", u32::from(c))?,
                c if u32::from(c) < 0x10000 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => write!(f, "\\U{:08x}", u32::from(c))?,
            }
        }
        f.write_char('"')
    }
}

/// Close to Go's `strconv.IsPrint`: no controls, no spaces other than ' ', no format or
/// private-use characters.
fn go_printable(c: char) -> bool {
    let u = u32::from(c);
    !(c.is_control()
        || c.is_whitespace()
        || matches!(
            u,
            0xAD | 0x600..=0x605
                | 0x61C
                | 0x6DD
                | 0x70F
                | 0x180E
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0xE000..=0xF8FF
                | 0xE0000..=0xE007F
                | 0xF0000..
        ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(lexer: Lexer, input: &str, env: &[(String, String)]) -> Result<String, ExpandError> {
        lexer.process_word(input, &env.to_vec())
    }

    fn split(input: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        Lexer::default().process_words(input, &env(pairs)).unwrap()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// buildkit's `shell/envVarTest` (the lines for Unix): `input | expected`, where
    /// `error` means the word must not expand.
    const ENV_VAR_TEST: &str = r#"
hello | hello
he'll'o | hello
he'llo | error
he\'llo | he'llo
he\\'llo | error
abc\tdef | abctdef
"abc\tdef" | abc\tdef
"abc\\tdef" | abc\tdef
'abc\tdef' | abc\tdef
hello\ | hello
hello\\ | hello\
"hello | error
"hello\" | error
"hel'lo" | hel'lo
'hello | error
'hello\' | hello\
'hello\there' | hello\there
'hello\\there' | hello\\there
"''" | ''
$. | $.
he$1x | hex
he$.x | he$.x
he$pwd. | he.
he$PWD | he/home
he\$PWD | he$PWD
he\\$PWD | he\/home
"he\$PWD" | he$PWD
"he\\$PWD" | he\/home
\${} | ${}
\${}aaa | ${}aaa
he\${} | he${}
he\${}xx | he${}xx
${} | error
${}aaa | error
he${} | error
he${}xx | error
he${hi} | he
he${hi}xx | hexx
he${PWD} | he/home
he${.} | error
he${XXX:-000}xx | he000xx
he${PWD:-000}xx | he/homexx
he${XXX:-$PWD}xx | he/homexx
he${XXX:-${PWD:-yyy}}xx | he/homexx
he${XXX:-${YYY:-yyy}}xx | heyyyxx
he${XXX:YYY} | error
he${XXX?} | error
he${XXX:?} | error
he${PWD?} | he/home
he${PWD:?} | he/home
he${NULL?} | he
he${NULL:?} | error
he${XXX:+${PWD}}xx | hexx
he${PWD:+${XXX}}xx | hexx
he${PWD:+${SHELL}}xx | hebashxx
he${XXX:+000}xx | hexx
he${PWD:+000}xx | he000xx
'he${XX}' | he${XX}
"he${PWD}" | he/home
"he'$PWD'" | he'/home'
"$PWD" | /home
'$PWD' | $PWD
'\$PWD' | \$PWD
'"hello"' | "hello"
he\$PWD | he$PWD
"he\$PWD" | he$PWD
'he\$PWD' | he\$PWD
he${PWD | error
he${PWD:=000}xx | error
he${PWD:+${PWD}:}xx | he/home:xx
he${XXX:-\$PWD:}xx | he$PWD:xx
he${XXX:-\${PWD}z}xx | he${PWDz}xx
안녕하세요 | 안녕하세요
안'녕'하세요 | 안녕하세요
안'녕하세요 | error
안녕\'하세요 | 안녕'하세요
안\\'녕하세요 | error
안녕\t하세요 | 안녕t하세요
"안녕\t하세요" | 안녕\t하세요
'안녕\t하세요 | error
안녕하세요\ | 안녕하세요
안녕하세요\\ | 안녕하세요\
"안녕하세요 | error
"안녕하세요\" | error
"안녕'하세요" | 안녕'하세요
'안녕하세요 | error
'안녕하세요\' | 안녕하세요\
안녕$1x | 안녕x
안녕$.x | 안녕$.x
안녕$pwd. | 안녕.
안녕$PWD | 안녕/home
안녕\$PWD | 안녕$PWD
안녕\\$PWD | 안녕\/home
안녕\${} | 안녕${}
안녕\${}xx | 안녕${}xx
안녕${} | error
안녕${}xx | error
안녕${hi} | 안녕
안녕${hi}xx | 안녕xx
안녕${PWD} | 안녕/home
안녕${.} | error
안녕${XXX:-000}xx | 안녕000xx
안녕${PWD:-000}xx | 안녕/homexx
안녕${XXX:-$PWD}xx | 안녕/homexx
안녕${XXX:-${PWD:-yyy}}xx | 안녕/homexx
안녕${XXX:-${YYY:-yyy}}xx | 안녕yyyxx
안녕${XXX:YYY} | error
안녕${XXX:+${PWD}}xx | 안녕xx
안녕${PWD:+${XXX}}xx | 안녕xx
안녕${PWD:+${SHELL}}xx | 안녕bashxx
안녕${XXX:+000}xx | 안녕xx
안녕${PWD:+000}xx | 안녕000xx
'안녕${XX}' | 안녕${XX}
"안녕${PWD}" | 안녕/home
"안녕'$PWD'" | 안녕'/home'
'"안녕"' | "안녕"
안녕\$PWD | 안녕$PWD
"안녕\$PWD" | 안녕$PWD
'안녕\$PWD' | 안녕\$PWD
안녕${PWD | error
안녕${PWD:=000}xx | error
안녕${PWD:+${PWD}:}xx | 안녕/home:xx
안녕${XXX:-\$PWD:}xx | 안녕$PWD:xx
안녕${XXX:-\${PWD}z}xx | 안녕${PWDz}xx
$KOREAN | 한국어
안녕$KOREAN | 안녕한국어
${{aaa} | error
${aaa}} | }
${aaa | error
${{aaa:-bbb} | error
${aaa:-bbb}} | bbb}
${aaa:-bbb | error
${aaa:-bbb} | bbb
${aaa:-${bbb:-ccc}} | ccc
${aaa:-bbb ${foo} | error
${aaa:-bbb {foo} | bbb {foo
${:} | error
${:-bbb} | error
${:+bbb} | error
$1 |
${1} |
${1:+bbb} |
${1:-bbb} | bbb
$2 |
${2} |
${2:+bbb} |
${2:-bbb} | bbb
$3 |
${3} |
${3:+bbb} |
${3:-bbb} | bbb
$4 |
${4} |
${4:+bbb} |
${4:-bbb} | bbb
$5 |
${5} |
${5:+bbb} |
${5:-bbb} | bbb
$6 |
${6} |
${6:+bbb} |
${6:-bbb} | bbb
$7 |
${7} |
${7:+bbb} |
${7:-bbb} | bbb
$8 |
${8} |
${8:+bbb} |
${8:-bbb} | bbb
$9 |
${9} |
${9:+bbb} |
${9:-bbb} | bbb
$999 |
${999} |
${999:+bbb} |
${999:-bbb} | bbb
$999aaa | aaa
${999}aaa | aaa
${999:+bbb}aaa | aaa
${999:-bbb}aaa | bbbaaa
$001 |
${001} |
${001:+bbb} |
${001:-bbb} | bbb
$001aaa | aaa
${001}aaa | aaa
${001:+bbb}aaa | aaa
${001:-bbb}aaa | bbbaaa
$@ |
${@} |
${@:+bbb} |
${@:-bbb} | bbb
$@@@ | @@
$@aaa | aaa
${@}aaa | aaa
${@:+bbb}aaa | aaa
${@:-bbb}aaa | bbbaaa
$* |
${*} |
${*:+bbb} |
${*:-bbb} | bbb
$# |
${#} |
${#:+bbb} |
${#:-bbb} | bbb
$? |
${?} |
${?:+bbb} |
${?:-bbb} | bbb
$- |
${-} |
${-:+bbb} |
${-:-bbb} | bbb
$$ |
${$} |
${$:+bbb} |
${$:-bbb} | bbb
$! |
${!} |
${!:+bbb} |
${!:-bbb} | bbb
$0 |
${0} |
${0:+bbb} |
${0:-bbb} | bbb
"#;

    fn env_var_test(escape: char) -> usize {
        let vars = env(&[
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
        ]);
        let lexer = Lexer::new(escape);
        let mut n = 0;
        for line in ENV_VAR_TEST.lines().filter(|l| !l.is_empty()) {
            let (input, expected) = line.split_once('|').unwrap();
            let swap = |s: &str| {
                if escape == '\\' {
                    s.to_string()
                } else {
                    s.replace('\\', "`")
                }
            };
            let (input, expected) = (swap(input.trim()), swap(expected.trim()));
            let got = word(lexer, &input, &vars);
            if expected == "error" {
                assert!(got.is_err(), "{input:?} with {escape:?}: {got:?}");
            } else {
                assert_eq!(
                    got.as_deref(),
                    Ok(expected.as_str()),
                    "{input:?} with {escape:?}"
                );
            }
            n += 1;
        }
        n
    }

    #[test]
    fn buildkit_env_var_test_backslash() {
        assert_eq!(env_var_test('\\'), 228);
    }

    #[test]
    fn buildkit_env_var_test_backtick() {
        assert_eq!(env_var_test('`'), 228);
    }

    /// buildkit's `shell/wordsTest`: `ENV k=v` lines add a variable, others are
    /// `input | word,word,…`.
    const WORDS_TEST: &str = "hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello\"${space}\"bye | helloabc  defbye
hello \"${space}\"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello\"${leading}\" def | hello  ab c,def
hello\"${leading}\" | hello  ab c
hello${leading} | hello,ab,c
ENV trailing=ab c\x20\x20\x20
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello\"${trailing}\"d | helloab c   d
hel\"lo${trailing}\" | helloab c\x20\x20\x20
hello\" there  \" | hello there\x20\x20
hello there     | hello,there
hello\\ there | hello there
hello\" there | error
hello\\\" there | hello\",there
hello\"\\\\there\" | hello\\there
hello\"\\there\" | hello\\there
hello'\\\\there' | hello\\\\there
hello'\\there' | hello\\there
hello'$there' | hello$there";

    fn words_test(escape: char) -> usize {
        let lexer = Lexer::new(escape);
        let swap = |s: &str| {
            if escape == '\\' {
                s.to_string()
            } else {
                s.replace('\\', "`")
            }
        };
        let mut vars = Vec::new();
        let mut n = 0;
        for line in WORDS_TEST.lines() {
            if let Some(kv) = line.strip_prefix("ENV ") {
                let (k, v) = kv.split_once('=').unwrap();
                vars.push((k.to_string(), v.to_string()));
                continue;
            }
            let (input, expected) = line.split_once('|').unwrap();
            let input = swap(input.trim());
            let got = lexer
                .process_words(&input, &vars)
                .unwrap_or_else(|_| vec!["error".to_string()]);
            let expected: Vec<String> = expected
                .trim_start_matches(' ')
                .split(',')
                .map(swap)
                .collect();
            assert_eq!(got, expected, "{input:?} with {escape:?}");
            n += 1;
        }
        n
    }

    #[test]
    fn buildkit_words_test_backslash() {
        assert_eq!(words_test('\\'), 24);
    }

    #[test]
    fn buildkit_words_test_backtick() {
        assert_eq!(words_test('`'), 24);
    }

    /// buildkit's `TestProcessWithMatches`: input, variables, result (`None`: an error),
    /// names matched, names unmatched (not checked for errors).
    #[allow(clippy::type_complexity)]
    const WITH_MATCHES: &[(&str, &[(&str, &str)], Option<&str>, &[&str], &[&str])] = &[
        ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
        (
            "x ${UNUSED}",
            &[("DUMMY", "dummy")],
            Some("x "),
            &[],
            &["UNUSED"],
        ),
        ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("xxx  ccc"),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("xxx bbb ccc"),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:-}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("xxx"),
            &["FOO"],
            &[],
        ),
        ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("aaa bbb "),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("aaa  "),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO?aaa}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("xxx"),
            &["FOO"],
            &[],
        ),
        (
            "${BAR?bbb}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some(""),
            &["BAR"],
            &[],
        ),
        ("${BAZ?ccc}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
        (
            "${FOO:?aaa}",
            &[("FOO", "xxx"), ("BAR", "")],
            Some("xxx"),
            &["FOO"],
            &[],
        ),
        (
            "${BAR:?bbb}",
            &[("FOO", "xxx"), ("BAR", "")],
            None,
            &[],
            &[],
        ),
        (
            "${BAZ:?ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            None,
            &[],
            &[],
        ),
        ("${BAZ:?}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
        ("${FOO=aaa}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
        (
            "${FOO=:aaa}",
            &[("FOO", "xxx"), ("BAR", "")],
            None,
            &[],
            &[],
        ),
        ("${FOO=}", &[], None, &[], &[]),
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            Some("x"),
            &["FOO"],
            &[],
        ),
        (
            "${FOO%%\\**}",
            &[("FOO", "xx**")],
            Some("xx"),
            &["FOO"],
            &[],
        ),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "x")],
            Some("xyy"),
            &["FOO", "BAR"],
            &[],
        ),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
        (
            "${ABC:-.}${FOO%x}${ABC:-.}",
            &[("FOO", "xxyy")],
            Some(".xxyy."),
            &["FOO"],
            &["ABC"],
        ),
        (
            "${FOO%%\\**\\*}",
            &[("FOO", "a***yy*")],
            Some("a"),
            &["FOO"],
            &[],
        ),
        ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO%%$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO:#}", &[], None, &[], &[]),
        ("${FOO:##}", &[], None, &[], &[]),
        ("${FOO:%}", &[], None, &[], &[]),
        ("${FOO:%%}", &[], None, &[], &[]),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            Some("/foo.*/*.txt - /foo..*.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            Some("/tmp/bar.txt - /bar.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "/a/foo/b/c.txt"),
                ("NEEDLE", "/?/"),
                ("REPLACEMENT", "/"),
            ],
            Some("/foo/b/c.txt - /foo/c.txt"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            Some("https://google.de"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO//\\//\\/}",
            &[("FOO", "/tmp/foo.txt")],
            Some("\\/tmp\\/foo.txt"),
            &["FOO"],
            &[],
        ),
        (
            "${FOO/$BAR/ww}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("wwxxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO///}", &[], Some(""), &[], &["FOO"]),
    ];

    #[test]
    fn buildkit_process_with_matches() {
        let lexer = Lexer::default();
        for &(input, vars, expected, matched, unmatched) in WITH_MATCHES {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let got = lexer.process_word_with_matches(input, &vars);
            match expected {
                None => assert!(got.is_err(), "{input:?}: {got:?}"),
                Some(value) => assert_eq!(
                    got,
                    Ok(Expanded {
                        value: value.to_string(),
                        matched: set(matched),
                        unmatched: set(unmatched),
                    }),
                    "{input:?}"
                ),
            }
        }
    }

    #[test]
    fn buildkit_mandatory_vars() {
        let lexer = Lexer::default();
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let set_ = env(&[("VAR", "plain"), ("ARG", "x")]);
        let empty = env(&[("VAR", ""), ("ARG", "x")]);
        let unset = env(&[("ARG", "x")]);
        assert_eq!(word(lexer, no_empty, &set_).unwrap(), "plain");
        let err = word(lexer, no_empty, &empty).unwrap_err();
        assert_eq!(
            err,
            ExpandError::UnsetRequired {
                word: no_empty.into(),
                name: "VAR".into(),
                message: "message herex".into()
            }
        );
        assert_eq!(
            err.to_string(),
            r#"failed to process "${VAR:?message here$ARG}": VAR: message herex"#
        );
        assert!(
            word(lexer, no_empty, &unset)
                .unwrap_err()
                .to_string()
                .contains("message herex")
        );
        assert_eq!(word(lexer, no_unset, &set_).unwrap(), "plain");
        assert_eq!(word(lexer, no_unset, &empty).unwrap(), "");
        assert!(
            word(lexer, no_unset, &unset)
                .unwrap_err()
                .to_string()
                .contains("message herex")
        );
    }

    #[test]
    fn buildkit_release_file_name() {
        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
        let with = |extra: &[(&str, &str)]| {
            let vars = env(&[&base[..], extra].concat());
            Lexer::default().process_word(release, &vars).unwrap()
        };
        assert_eq!(
            with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
    }

    #[test]
    fn modifiers() {
        let vars = env(&[
            ("S", "set"),
            ("E", ""),
            ("B", "banana"),
            ("P", "a/b/c.tar.gz"),
        ]);
        let cases: &[(&str, &str)] = &[
            ("${S:-w}|${E:-w}|${U:-w}", "set|w|w"),
            ("${S-w}|${E-w}|${U-w}", "set||w"),
            ("${S:+w}|${E:+w}|${U:+w}", "w||"),
            ("${S+w}|${E+w}|${U+w}", "w|w|"),
            ("${S:?m}|${S?m}|${E?m}", "set|set|"),
            ("${B#*a}|${B##*a}|${B%a*}|${B%%a*}", "nana||banan|b"),
            ("${B#?}|${B%?}|${B#x}|${B%%n*}", "anana|banan|banana|ba"),
            (
                "${P##*/}|${P%/*}|${P%%.*}|${P#*.}",
                "c.tar.gz|a/b|a/b/c|tar.gz",
            ),
            (
                "${B/an/AN}|${B//an/AN}|${B/#/x}|${B//a*/-}",
                "bANana|bANANa|banana|b-",
            ),
            ("${B/x/y}|${U/a/b}|${B//?/.}", "banana||......"),
            ("${B//[an]/x}|${B//a/[&]}", "banana|b[&]n[&]n[&]"),
            // The word after a modifier is expanded, quotes and all.
            ("${U:-'$S' \"$S\" $S}", "$S set set"),
            (
                "${U:-${E:-${B}}}|${a:-${b:-c}}|${S:+[${S:+${B}}]}",
                "banana|c|[banana]",
            ),
            ("${U:-a}${U:-}b", "ab"),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                word(Lexer::default(), input, &vars).unwrap(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn patterns_stop_at_newlines() {
        // Go's `.` does not match a newline.
        let vars = env(&[("N", "ab\ncd\nef")]);
        let lexer = Lexer::default();
        assert_eq!(word(lexer, "${N#*}", &vars).unwrap(), "ab\ncd\nef");
        assert_eq!(word(lexer, "${N##*}", &vars).unwrap(), "\ncd\nef");
        assert_eq!(word(lexer, "${N%%*}", &vars).unwrap(), "ab\ncd\n");
        assert_eq!(word(lexer, "${N//?/.}", &vars).unwrap(), "..\n..\n..");
        assert_eq!(word(lexer, "${N//*/x}", &vars).unwrap(), "x\nx\nx");
    }

    #[test]
    fn replace_all_expands_the_replacement_like_go_regexp() {
        let vars = env(&[("B", "banana"), ("R", "<$0|${0}|$1|$$|$x|$|${>")]);
        let lexer = Lexer::default();
        assert_eq!(
            word(lexer, "${B//a/$R}", &vars).unwrap(),
            "b<a|a||$||$|${>n<a|a||$||$|${>n<a|a||$||$|${>"
        );
        // The single replacement takes the text as it is.
        assert_eq!(
            word(lexer, "${B/a/$R}", &vars).unwrap(),
            "b<$0|${0}|$1|$$|$x|$|${>nana"
        );
        // Empty matches: one replacement at each position, none right after a match.
        assert_eq!(word(lexer, "${B//$E/-}", &vars).unwrap(), "-b-a-n-a-n-a-");
        assert_eq!(word(lexer, "${B//*/-}", &vars).unwrap(), "-");
    }

    #[test]
    fn dollar_and_names() {
        let vars = env(&[
            ("a", "A"),
            ("a_1", "B"),
            ("1", "one"),
            ("@", "at"),
            ("é", "E"),
        ]);
        let cases: &[(&str, &str)] = &[
            ("$", "$"),
            ("a$", "a$"),
            ("$.x", "$.x"),
            ("$ a", "$ a"),
            ("$a_1-$a-1", "B-A-1"),
            ("$1x|$11|${1}", "onex||one"),
            ("$@@|${@}", "at@|at"),
            ("$é|${é}", "E|E"),
            ("$a'$a'\"$a\"", "A$aA"),
            ("\u{FEFF}$a", "A"),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                word(Lexer::default(), input, &vars).unwrap(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn quotes_and_escapes() {
        let none = env(&[("X", "x")]);
        let cases: &[(char, &str, &str)] = &[
            ('\\', r#"a\ b\"c\'d\\e\"#, r#"a b"c'd\e"#),
            ('\\', r#""a\"b\$X\\c\d\`""#, r#"a"b$X\c\d\`"#),
            ('\\', r#"'a\'"#, r"a\"),
            ('`', r#"a` b`"c`\d``e`"#, r#"a b"c\d`e"#),
            ('`', r#""a`"b`$X``c`d\""#, r#"a"b$X`c`d\"#),
            ('`', r"C:\path\$X", r"C:\path\x"),
            ('\\', "a<b<<  EOF", "a<b<<  EOF"),
        ];
        for &(escape, input, expected) in cases {
            assert_eq!(
                word(Lexer::new(escape), input, &none).unwrap(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn error_messages() {
        let lexer = Lexer::default();
        let vars = env(&[("E", "")]);
        let cases: &[(&str, &str)] = &[
            (
                "'a",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"a",
                "unexpected end of statement while looking for matching double-quote",
            ),
            ("${", "syntax error: missing '}'"),
            ("${a:-b", "syntax error: missing '}'"),
            ("${a:-\"b}", "syntax error: missing '}'"),
            ("${a/b", "syntax error: missing '/' in ${}"),
            ("${a/b/c", "syntax error: missing '}'"),
            ("${}", "syntax error: bad substitution"),
            ("${:-a}", "syntax error: bad substitution"),
            ("${{a}", "syntax error: bad substitution"),
            ("${a:=b}", "unsupported modifier (:=) in substitution"),
            ("${a=b}", "unsupported modifier (=) in substitution"),
            ("${a.b}", "unsupported modifier (.) in substitution"),
            ("${a:#b}", "unsupported modifier (:#) in substitution"),
            ("${a", "unsupported modifier (\u{FFFD}) in substitution"),
            ("${a?}", "a: is not allowed to be unset"),
            ("${E:?}", "E: is not allowed to be empty"),
            (
                "${a#\\x}",
                "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            ),
            (
                "${a%ab\\c}",
                "invalid pattern (\\cba) in substitution: invalid escape '\\c'",
            ),
            (
                "${a/\\x/y}",
                "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            ),
        ];
        for &(input, message) in cases {
            let err = word(lexer, input, &vars).unwrap_err();
            assert_eq!(err.word(), input);
            let quoted = format!("{:?}", input);
            assert_eq!(
                err.to_string(),
                format!("failed to process {quoted}: {message}")
            );
        }
        // A lone trailing `\` in a pattern (possible with the backtick escape).
        let err = word(Lexer::new('`'), "${a#b\\}", &vars).unwrap_err();
        assert_eq!(
            err,
            ExpandError::InvalidPattern {
                word: "${a#b\\}".into(),
                pattern: "b\\".into(),
                escaped: '\u{FFFD}'
            }
        );
        // An error inside a nested expansion comes out as it is, unless the input ended.
        assert_eq!(
            word(lexer, "${a:-${b?no}x}", &vars)
                .unwrap_err()
                .to_string(),
            r#"failed to process "${a:-${b?no}x}": b: no"#
        );
        // Go's %q quoting of the word.
        assert_eq!(
            word(lexer, "\t\u{a0}é\"${", &vars).unwrap_err().to_string(),
            r#"failed to process "\t\u00a0é\"${": syntax error: missing '}'"#
        );
    }

    #[test]
    fn skip_unset_leaves_unset_references() {
        let lexer = Lexer::default().skip_unset(true);
        let vars = env(&[("S", "set"), ("E", "")]);
        let cases: &[(&str, &str)] = &[
            ("$S $U ${U} $1", "set $U ${U} $1"),
            (
                "${U:-$S}|${U-'a b'}|${U:+x}|${U?}|${U:?m}",
                "${U:-set}|${U-a b}|${U:+x}|${U?}|${U:?m}",
            ),
            ("${U#a*}|${U%%\\*}", "${U#a*}|${U%%\\*}"),
            // lex.go writes `//` back as `/`.
            ("${U/a/b}|${U//a/b}", "${U/a/b}|${U/a/b}"),
            ("${E:-d}|${E:+x}", "d|"),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                lexer.process_word(input, &vars).unwrap(),
                expected,
                "{input:?}"
            );
        }
        // Set but empty is still an error.
        assert!(matches!(
            lexer.process_word("${E:?x}", &vars),
            Err(ExpandError::UnsetRequired { .. })
        ));
        let got = lexer
            .process_word_with_matches("${U:-${S}}", &vars)
            .unwrap();
        assert_eq!(got.value, "${U:-set}");
        assert_eq!((got.matched, got.unmatched), (set(&["S"]), set(&["U"])));
    }

    #[test]
    fn matched_and_unmatched() {
        let vars = env(&[("A", "a"), ("E", "")]);
        let got = Lexer::default()
            .process_word_with_matches("$A ${E} ${U:-$V} '$Q' \"$W\" ${A#$X} ${A/$Y/$Z} $1", &vars)
            .unwrap();
        assert_eq!(got.value, "a   $Q  a a ");
        assert_eq!(got.matched, set(&["A", "E"]));
        assert_eq!(got.unmatched, set(&["1", "U", "V", "W", "X", "Y", "Z"]));
    }

    #[test]
    fn words() {
        let vars = [("X", "a  b"), ("E", "")];
        assert_eq!(split(" a\tb\n c ", &vars), ["a", "b", "c"]);
        assert_eq!(split("x$X y", &vars), ["xa", "b", "y"]);
        assert_eq!(split("\"$X\" '$X'", &vars), ["a  b", "$X"]);
        assert_eq!(split("\"\" $E '' a", &vars), ["a"]);
        assert!(split("", &vars).is_empty());
        assert_eq!(split("<<  EOF a", &vars), ["<<  EOF", "a"]);
        // lex.go's shared word buffer: a `${…}` with a modifier drops what came before it in
        // the same word (process_word is not affected).
        assert_eq!(split("x a${U:-b}c", &vars), ["x", "bc"]);
        assert_eq!(split("a\"${U:-b}\"", &vars), ["b"]);
        assert_eq!(split("a${X}c", &vars), ["aa", "bc"]);
        assert_eq!(
            word(Lexer::default(), "a${U:-b}c", &env(&vars)).unwrap(),
            "abc"
        );
    }

    #[test]
    fn raw_options() {
        let vars = env(&[("X", "x")]);
        let raw_quotes = Lexer::default().raw_quotes(true);
        assert_eq!(word(raw_quotes, "a'b'\"$X\"", &vars).unwrap(), "a'b'\"x\"");
        let raw_escapes = Lexer::default().raw_escapes(true);
        assert_eq!(
            word(raw_escapes, "a\\ b\\$X\"\\\"\\q\"", &vars).unwrap(),
            "a\\ b\\$X\\\"\\\\q"
        );
        let skip_quotes = Lexer::default().skip_quotes(true);
        assert_eq!(
            word(skip_quotes, "'$X' \"$X\" \\$X", &vars).unwrap(),
            "'x' \"x\" $X"
        );
        assert_eq!(
            skip_quotes.process_words("'a b'", &vars).unwrap(),
            ["'a", "b'"]
        );
    }

    #[test]
    fn env_impls() {
        let pairs = env(&[("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(Env::get(pairs.as_slice(), "A"), Some("3"));
        assert_eq!(Env::get(&pairs, "B"), Some("2"));
        assert_eq!(Env::get(&pairs, "C"), None);
        let map: BTreeMap<String, String> = pairs.iter().cloned().collect();
        assert_eq!(Lexer::default().process_word("$A$B", &map).unwrap(), "32");
        let hash: HashMap<String, String> = pairs.into_iter().collect();
        assert_eq!(Lexer::default().process_word("$A$B", &hash).unwrap(), "32");
    }

    #[test]
    fn glob() {
        assert!(glob_match("*.txt", "a.txt", '\\'));
        assert!(!glob_match("*.txt", "a.txt.gz", '\\'));
        assert!(glob_match("a?c", "abc", '\\'));
        assert!(!glob_match("a?c", "a\nc", '\\'));
        assert!(!glob_match("*", "a\nb", '\\'));
        assert!(glob_match("", "", '\\'));
        assert!(glob_match("*", "", '\\'));
        assert!(glob_match("[ab]", "[ab]", '\\'));
        assert!(!glob_match("[ab]", "a", '\\'));
        assert!(glob_match("a\\*", "a*", '\\'));
        assert!(!glob_match("a\\*", "ab", '\\'));
        assert!(glob_match("a`?b", "a?b", '`'));
        assert!(glob_match("a\\", "a\\", '\\'));
        assert!(glob_match("é*ü", "éaaü", '\\'));
    }

    #[test]
    fn patterns_are_not_exponential() {
        let long = "a".repeat(20_000);
        assert!(!glob_match("*a*a*a*a*a*a*a*a*b", &long, '\\'));
        assert!(glob_match("*a*a*a*a*a*a*a*a*", &long, '\\'));
        let vars = env(&[("L", &long)]);
        let lexer = Lexer::default();
        assert_eq!(word(lexer, "${L#*a*a*a*a*a*a*b}", &vars).unwrap(), long);
        assert_eq!(word(lexer, "${L//*a*a*a*a*a*a*b/x}", &vars).unwrap(), long);
        assert_eq!(word(lexer, "${L%%*a*a*a*}", &vars).unwrap(), "");
    }
}
