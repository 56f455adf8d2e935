//! `.dockerignore`: which files of a build context are left out, decided exactly as docker and
//! BuildKit decide it (moby/patternmatcher's `ignorefile.ReadAll`, `New` and
//! `MatchesOrParentMatches`, which BuildKit's context transfer uses).
//!
//! # Reading the file
//!
//! - A UTF-8 byte order mark at the start is dropped. Lines end at `\n`; a `\r` before it is
//!   dropped. A line of 64 KiB or more is an error (BuildKit's line scanner gives up on it).
//! - A line whose **first character** is `#` is a comment. The test happens before trimming:
//!   `  # x` is the pattern `# x`, not a comment.
//! - Whitespace around the line is trimmed; blank lines are skipped.
//! - A leading `!` makes the pattern an *exception* (it re-includes what it matches).
//! - The pattern is cleaned like Go's `filepath.Clean` (`//` collapsed, `.` segments removed,
//!   `..` resolved lexically, a trailing `/` removed) and one leading `/` is removed, so
//!   `/foo/bar/`, `./foo/bar` and `foo//bar` all mean `foo/bar`. `..` that climbs out of the
//!   context stays (`../x` matches nothing); at the root it is dropped (`/../x` is `x`).
//! - The pattern `.` is ignored (docker's documentation: "for historical reasons"); `/` alone
//!   matches nothing. `!` alone, and `!/` (which cleans to `!`), are errors.
//! - moby trims and cleans a second time, with the `!` in place: `/ x` means `x`, `/!x` is the
//!   exception `x`, and `!/ x` is the exception ` x` (with its space).
//!
//! # Matching
//!
//! Paths are relative to the context root and `/`-separated. The documented syntax is Go's
//! `filepath.Match` — `*` (any run of non-`/` characters), `?` (one non-`/` character), `[...]`
//! classes with ranges and `^` negation, `\` escapes — plus `**`, which matches any number of
//! directories. A pattern must be valid `filepath.Match` syntax (unterminated `[`, empty class,
//! unescaped `-` or `]` in a class, trailing `\` are errors).
//!
//! A pattern matches a path when it matches the path or one of its parent directories
//! (`node_modules` excludes `node_modules/a/b.js`). The **last** matching pattern decides: the
//! path is excluded when it is an ordinary pattern, included when it is an exception. The
//! context root itself is never excluded.
//!
//! moby does not match with `filepath.Match`, though: it sorts each pattern into a kind and
//! translates the "regexp" kind into a Go regular expression. This module does the same
//! translation and runs the result on a small Go-compatible regular-expression engine
//! (linear-time automaton simulation, no backtracking), so that the surprising results are
//! docker's too:
//!
//! - A pattern without wildcards or escapes is compared as text; `text**` (or `text/**`) is a
//!   prefix test, so `a/**` matches everything below `a` but not `a`; `**` followed by
//!   wildcard-free text is a *suffix* test, so `**foo` matches `barfoo` (while `**foo*` does not).
//! - Elsewhere `**` becomes `(.*/)?` (eating one following `/`) or, at the end, `.*`: `**/x`
//!   matches `x` at any depth, but `a**b` matches `ab` and `a/x/b`, not `axb`; these `.` do not
//!   match a newline.
//! - moby escapes only `.+()$` (its escape table loses `{`, `|`, `}`), so in a pattern with
//!   wildcards `|` is alternation (`a*|b` matches names starting with `a` or ending with `b`, at
//!   any depth), `{n,m}` repeats (`x*.{1,2}` matches `x.` and `x..`), and `^` is the start
//!   anchor (`^a*` matches `abc`).
//! - `\` followed by a letter or digit is a Go regexp escape (`\d` is a digit, `\t` a tab, `\b` a
//!   word boundary; `\q` is an error), and the inside of `[...]` is copied into the regexp after
//!   the same translation, so `[a*]` matches `]` and not `a`, and `[[:alpha:]]` is a letter.
//! - Regexp compile errors (a reversed range such as `[z-a]`, moby/moby#52203; `a*{2}`) fail
//!   the build in docker when the pattern is first used; here they are errors at parse time.
//!
//! Two things are refused although docker might accept them: Unicode class escapes (`\pL`,
//! `\p{Greek}`), which need Unicode tables, and patterns whose automaton would exceed
//! 100 000 instructions.
//!
//! One difference lives in BuildKit's context walker (fsutil), which reuses per-directory results
//! and so can miss a parent-directory match for a pattern that follows an exception (`a`, `!a/b`,
//! `a` keeps `a/b` in BuildKit); this module evaluates every path on its own, as
//! `MatchesOrParentMatches` does, and excludes `a/b`.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// The name of the context-wide ignore file.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// BuildKit reads the file with Go's `bufio.Scanner`, whose default buffer is 64 KiB: a line
/// that does not fit (with its `\n`) fails the build.
const MAX_LINE: usize = 64 * 1024;

/// The largest automaton a pattern may compile to (Go's own limit is far larger, but a
/// pattern of that size is not a `.dockerignore` line anyone writes).
const MAX_PROGRAM: usize = 100_000;

/// A compiled .dockerignore.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// One pattern of a [`DockerIgnore`], as [`DockerIgnore::patterns`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnorePattern<'a> {
    /// The 1-based line it was read from.
    pub line: u32,
    /// True for an exception (`!pattern`), which re-includes what it matches.
    pub exception: bool,
    /// The cleaned pattern, without its `!`.
    pub pattern: &'a str,
}

/// Why a `.dockerignore` could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreError {
    /// A pattern docker refuses (or, rarely, one berth cannot reproduce; see the module
    /// documentation).
    #[error("{}line {line}: invalid pattern {pattern:?}: {reason}", InFile(.file.as_deref()))]
    Pattern {
        /// The ignore file, when it was read by [`load`].
        file: Option<PathBuf>,
        /// The 1-based line.
        line: u32,
        /// The pattern as written on the line (trimmed).
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line longer than BuildKit's reader accepts (64 KiB including the line ending).
    #[error("{}line {line}: line too long", InFile(.file.as_deref()))]
    LineTooLong {
        /// The ignore file, when it was read by [`load`].
        file: Option<PathBuf>,
        /// The 1-based line.
        line: u32,
    },
    /// The ignore file exists but could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl IgnoreError {
    fn in_file(mut self, path: &Path) -> Self {
        match &mut self {
            Self::Pattern { file, .. } | Self::LineTooLong { file, .. } => {
                *file = Some(path.to_path_buf());
            }
            Self::Io { .. } => {}
        }
        self
    }
}

/// `"<file>: "` before an error message, or nothing.
struct InFile<'a>(Option<&'a Path>);

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` (see the module documentation for the rules).
    /// Fails on the first malformed pattern, naming its line.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
            // The scanner counts the BOM and a `\r` against its buffer too.
            if raw.len() >= MAX_LINE {
                return Err(IgnoreError::LineTooLong { file: None, line });
            }
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let raw = if index == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            // The comment test comes before trimming (ignorefile.ReadAll).
            if raw.starts_with('#') {
                continue;
            }
            let written = raw.trim();
            if written.is_empty() {
                continue;
            }
            let error = |reason: String| IgnoreError::Pattern {
                file: None,
                line,
                pattern: written.to_string(),
                reason,
            };
            let Some((exception, cleaned)) = normalize_pattern(written) else {
                continue;
            };
            if exception && cleaned.is_empty() {
                return Err(error("an exception (`!`) needs a pattern".to_string()));
            }
            // Docker's documentation: "For historical reasons, the pattern . is ignored."
            // (moby keeps it, but no path is ".".)
            if cleaned == "." {
                continue;
            }
            let matcher = Matcher::compile(&cleaned).map_err(error)?;
            patterns.push(Pattern {
                text: cleaned,
                exception,
                line,
                matcher,
            });
        }
        Ok(Self { patterns })
    }

    /// Parses a `.dockerignore` read as bytes. Invalid UTF-8 is replaced by U+FFFD (Go would
    /// keep the bytes, which no `&str` path can contain anyway).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, IgnoreError> {
        Self::parse(&String::from_utf8_lossy(bytes))
    }

    /// Whether `path` is left out of the build context.
    ///
    /// `path` is relative to the context root, `/`-separated, no leading `./` needed (tolerate it).
    /// It is cleaned first (`a//b/./c` is `a/b/c`); the root itself (`""`, `.`) is never
    /// excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let Some(path) = normalize_path(path) else {
            return false;
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            // An exception cannot change an included path, nor an exclusion an excluded one.
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches_or_parent_matches(&path) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// True when some exception pattern could re-include something below the excluded directory
    /// `dir` — a directory walker uses it to decide whether it may skip the whole subtree.
    ///
    /// When `dir` is excluded and this returns false, every path below `dir` is excluded too.
    /// The answer is conservative: true means "possibly" (for instance `!**/*.keep` may
    /// re-include something below any directory).
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let Some(dir) = normalize_path(dir) else {
            return self.has_exceptions();
        };
        let mut below = String::with_capacity(dir.len() + 1);
        below.push_str(&dir);
        below.push('/');
        self.patterns
            .iter()
            .any(|p| p.exception && p.matcher.may_match_below(&below))
    }

    /// True when there are no patterns (no file, or only comments and blank lines).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is an exception (`!pattern`).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// The patterns, in file order, cleaned as they are matched.
    pub fn patterns(&self) -> impl ExactSizeIterator<Item = IgnorePattern<'_>> {
        self.patterns.iter().map(|p| IgnorePattern {
            line: p.line,
            exception: p.exception,
            pattern: &p.text,
        })
    }
}

/// Which ignore file applies: `<dockerfile file name>.dockerignore` next to the Dockerfile takes
/// precedence over `<context>/.dockerignore` (docker's rule). Returns the parsed file (empty when
/// none exists).
///
/// `dockerfile` is the Dockerfile's path as it can be opened (absolute, or relative to the
/// current directory); `build.Dockerfile` looks for `build.Dockerfile.dockerignore` beside it.
/// The Dockerfile-specific file wins whenever it exists, even if it is empty. A path that is
/// missing or is a directory counts as no file; any other read error is reported.
pub fn load(context: &Path, dockerfile: &Path) -> Result<DockerIgnore, IgnoreError> {
    if let Some(name) = dockerfile.file_name() {
        let mut specific_name = name.to_os_string();
        specific_name.push(DOCKERIGNORE);
        let specific = dockerfile.with_file_name(specific_name);
        if let Some(bytes) = read_if_present(&specific)? {
            return DockerIgnore::parse_bytes(&bytes).map_err(|e| e.in_file(&specific));
        }
    }
    let shared = context.join(DOCKERIGNORE);
    match read_if_present(&shared)? {
        Some(bytes) => DockerIgnore::parse_bytes(&bytes).map_err(|e| e.in_file(&shared)),
        None => Ok(DockerIgnore::default()),
    }
}

/// The file's bytes, or `None` when there is no such file.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, IgnoreError> {
    use std::io::ErrorKind;
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(IgnoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A trimmed, non-empty line turned into `(exception, pattern)` in two steps, as docker does it;
/// `None` when nothing is left. The pattern is empty for a bare `!`.
///
/// 1. `ignorefile.ReadAll`: strip `!` and trim again, clean, remove one leading `/` (unless the
///    pattern is just `/`), put the `!` back.
/// 2. `patternmatcher.New`: trim, clean the whole string (`!` included), then take a leading `!`
///    as the exception marker.
///
/// Step 2 undoes some of step 1: `/ x` becomes ` x`, then `x`; `/!x` becomes the exception `x`;
/// `!/` becomes `!` (an error). After the `!` of step 2 nothing is trimmed or cleaned any more,
/// so `!/ x` is the exception ` x`, with its space.
fn normalize_pattern(written: &str) -> Option<(bool, String)> {
    let (invert, body) = match written.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, written),
    };
    let mut read = if body.is_empty() {
        String::new()
    } else {
        clean(body)
    };
    if read.len() > 1 && read.starts_with('/') {
        read.remove(0);
    }
    if invert {
        read.insert(0, '!');
    }
    let trimmed = read.trim();
    if trimmed.is_empty() {
        return None;
    }
    let cleaned = clean(trimmed);
    Some(match cleaned.strip_prefix('!') {
        Some(rest) => (true, rest.to_string()),
        None => (false, cleaned),
    })
}

/// Go's `path.Clean` for `/`-separated paths: the shortest equivalent path, by purely lexical
/// processing. `""` becomes `.`.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
                // `..` at the root of a rooted path is dropped.
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// A path to match: cleaned, without a leading `/`; `None` for the context root.
fn normalize_path(path: &str) -> Option<Cow<'_, str>> {
    let already_clean = !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    let path = if already_clean {
        Cow::Borrowed(path)
    } else {
        let cleaned = clean(path);
        match cleaned.strip_prefix('/') {
            Some(rest) => Cow::Owned(rest.to_string()),
            None => Cow::Owned(cleaned),
        }
    };
    if path.is_empty() || path == "." {
        None
    } else {
        Some(path)
    }
}

/// One line of the file, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without `!`.
    text: String,
    exception: bool,
    line: u32,
    matcher: Matcher,
}

impl Pattern {
    /// moby's `MatchesOrParentMatches` for one pattern: the path itself, then each parent
    /// directory (`a`, `a/b` for `a/b/c`).
    fn matches_or_parent_matches(&self, path: &str) -> bool {
        self.matcher.matches(path)
            || path
                .match_indices('/')
                .any(|(end, _)| self.matcher.matches(&path[..end]))
    }
}

/// The kinds moby sorts patterns into; each matches as moby's kind does.
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard and no escape: the path equals the pattern.
    Exact(String),
    /// Wildcard-free text followed by a final `**` (or `**/`): the path starts with the text.
    Prefix(String),
    /// `**` followed by wildcard-free text: the path ends with the text, or (when the text is
    /// `/rest`) equals `rest`.
    Suffix(String),
    /// A suffix test whose text moby cuts inside a character (see [`Matcher::compile`]).
    Never,
    /// Anything else: moby's regular expression.
    Regex(Regex),
}

impl Matcher {
    /// Checks the pattern with `filepath.Match`'s syntax rules, then translates it as moby's
    /// `Pattern.compile` does.
    fn compile(pattern: &str) -> Result<Self, String> {
        check_match_syntax(pattern)?;
        let (kind, regex) = translate(pattern);
        Ok(match kind {
            Kind::Exact => Self::Exact(pattern.to_string()),
            Kind::Prefix => match pattern.strip_suffix("**") {
                Some(prefix) => Self::Prefix(prefix.to_string()),
                None => Self::Regex(Regex::new(&regex)?),
            },
            // moby takes the suffix as the pattern's bytes from index 2. The scanner skips a
            // leading U+FEFF, so `\u{feff}**x` is a suffix pattern whose suffix starts inside
            // the BOM's bytes — invalid UTF-8, which no path ends with.
            Kind::Suffix if pattern.starts_with('\u{feff}') => Self::Never,
            Kind::Suffix => match pattern.strip_prefix("**") {
                Some(suffix) => Self::Suffix(suffix.to_string()),
                None => Self::Regex(Regex::new(&regex)?),
            },
            Kind::Regex => Self::Regex(Regex::new(&regex)?),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(text) => path == text,
            Self::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Self::Never => false,
            Self::Regex(regex) => regex.is_match(path),
        }
    }

    /// Whether some path starting with `below` (`dir/`) and longer than it could match.
    fn may_match_below(&self, below: &str) -> bool {
        match self {
            Self::Exact(text) => text.len() > below.len() && text.starts_with(below),
            Self::Prefix(prefix) => {
                if prefix.len() <= below.len() {
                    below.starts_with(prefix.as_str())
                } else {
                    prefix.starts_with(below)
                }
            }
            // `below` + the suffix (or + `rest` for `/rest`) matches.
            Self::Suffix(_) => true,
            Self::Never => false,
            Self::Regex(regex) => regex.may_match_after(below),
        }
    }
}

/// The syntax check moby runs first (`filepath.Match(pattern, ".")`; current Go checks the whole
/// pattern, not only up to the first mismatch): `\` must escape something, and every `[` must
/// open a well-formed class —
/// optional `^`, then one or more characters or `lo-hi` ranges (`-` and `]` escaped), then `]`.
fn check_match_syntax(pattern: &str) -> Result<(), String> {
    let unterminated = || "unterminated character class (missing `]`)".to_string();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // The guard consumes the escaped character.
            '\\' if chars.next().is_none() => return Err("trailing backslash".to_string()),
            '[' => {
                chars.next_if_eq(&'^');
                let mut items = 0;
                loop {
                    if items > 0 && chars.next_if_eq(&']').is_some() {
                        break;
                    }
                    // One item: a character (Go's getEsc), maybe `-` and another one.
                    for endpoint in 0..2 {
                        match chars.next().ok_or_else(unterminated)? {
                            ']' if items == 0 && endpoint == 0 => {
                                return Err("empty character class".to_string());
                            }
                            '-' | ']' => {
                                return Err(
                                    "`-` and `]` must be escaped in a character class".to_string()
                                );
                            }
                            '\\' => {
                                chars.next().ok_or_else(unterminated)?;
                            }
                            _ => {}
                        }
                        if chars.peek().is_none() {
                            return Err(unterminated());
                        }
                        if endpoint == 1 || chars.next_if_eq(&'-').is_none() {
                            break;
                        }
                    }
                    items += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// moby's pattern kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// moby's `Pattern.compile`: the pattern's kind, and the regular expression that is used when
/// the kind is [`Kind::Regex`].
fn translate(pattern: &str) -> (Kind, String) {
    let mut chars = pattern.chars().peekable();
    // Go's text/scanner skips a byte order mark at the very start.
    chars.next_if_eq(&'\u{feff}');
    let mut regex = String::from("^");
    let mut kind = Kind::Exact;
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.next_if_eq(&'*').is_some() => {
                // `**/` is `**`: the `/` is eaten.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    // A final `**` accepts everything, like .gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        regex.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    // Any number of directories, even none.
                    regex.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    // A leading `**` makes a suffix test, until a later wildcard or escape
                    // makes the pattern a regexp after all.
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = Kind::Regex;
            }
            // moby means to escape `.+()|{}$`, but its escape bitmap only holds characters
            // below 64: `|`, `{` and `}` go into the regexp unescaped.
            '.' | '+' | '(' | ')' | '$' => {
                regex.push('\\');
                regex.push(c);
            }
            '\\' => {
                regex.push('\\');
                if let Some(next) = chars.next() {
                    regex.push(next);
                    kind = Kind::Regex;
                }
            }
            '[' | ']' => {
                regex.push(c);
                kind = Kind::Regex;
            }
            _ => regex.push(c),
        }
        first = false;
    }
    if kind == Kind::Regex {
        regex.push('$');
    }
    (kind, regex)
}

/// A regular expression in Go's syntax (RE2 with Perl extensions, one-line mode), as far as
/// moby's translation can produce it, compiled to an automaton program and run by simulating all
/// its threads at once: time O(text × program), never exponential.
#[derive(Debug, Clone)]
struct Regex {
    program: Vec<Inst>,
}

#[derive(Debug, Clone)]
enum Inst {
    /// Consume one character of the set.
    Char(CharSet),
    /// Continue at both targets.
    Split(usize, usize),
    Jump(usize),
    /// An empty-width assertion.
    Look(Look),
    Match,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// `^`, `\A`.
    BeginText,
    /// `$`, `\z`.
    EndText,
    /// `\b`: a `\w` character on exactly one side.
    WordBoundary,
    /// `\B`.
    NotWordBoundary,
}

/// A set of characters as inclusive code point ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CharSet {
    ranges: Vec<(u32, u32)>,
}

impl CharSet {
    /// One code point (possibly a surrogate from `\x{D800}`, which matches nothing).
    fn single(code: u32) -> Self {
        Self {
            ranges: vec![(code, code)],
        }
    }

    /// `.`: anything but a newline.
    fn any_but_newline() -> Self {
        Self {
            ranges: vec![(0, 9), (11, char::MAX as u32)],
        }
    }

    fn contains(&self, c: char) -> bool {
        let c = c as u32;
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
    }

    /// Sorted, merged ranges.
    fn normalized(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
    }

    /// Every code point not in `ranges`.
    fn complement(ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut next = 0u32;
        for (lo, hi) in Self::normalized(ranges) {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= char::MAX as u32 {
            out.push((next, char::MAX as u32));
        }
        out
    }
}

/// Go's Perl classes (`\d`, `\s`, `\w`, ASCII only) and their negations.
fn perl_class(c: char) -> Option<(bool, &'static [(u32, u32)])> {
    const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
    const SPACE: &[(u32, u32)] = &[(0x09, 0x0a), (0x0c, 0x0d), (0x20, 0x20)];
    const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];
    Some(match c {
        'd' => (false, DIGIT),
        'D' => (true, DIGIT),
        's' => (false, SPACE),
        'S' => (true, SPACE),
        'w' => (false, WORD),
        'W' => (true, WORD),
        _ => return None,
    })
}

/// Go's POSIX classes (`[:alpha:]` inside brackets), by name.
fn posix_class(name: &str) -> Option<&'static [(u32, u32)]> {
    Some(match name {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
        "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
        "ascii" => &[(0x00, 0x7f)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1f), (0x7f, 0x7f)],
        "digit" => &[(0x30, 0x39)],
        "graph" => &[(0x21, 0x7e)],
        "lower" => &[(0x61, 0x7a)],
        "print" => &[(0x20, 0x7e)],
        "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
        "space" => &[(0x09, 0x0d), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5a)],
        "word" => &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)],
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    })
}

/// A parsed regular expression.
#[derive(Debug)]
enum Node {
    Set(CharSet),
    Look(Look),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    /// `min` to `max` (unbounded when `None`) times.
    Repeat(Box<Node>, u32, Option<u32>),
}

/// A recursive-descent parser following Go's `regexp/syntax` rules and error cases.
struct RegexParser {
    chars: Vec<char>,
    pos: usize,
}

impl RegexParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn alternation(&mut self, depth: usize) -> Result<Node, String> {
        let mut branches = vec![self.concatenation(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concatenation(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.swap_remove(0)
        } else {
            Node::Alternate(branches)
        })
    }

    fn concatenation(&mut self, depth: usize) -> Result<Node, String> {
        let mut items = Vec::new();
        let mut after_repeat = false;
        while let Some(c) = self.peek() {
            let mut repeated = false;
            match c {
                '|' => break,
                ')' if depth > 0 => break,
                ')' => return Err("unexpected `)`".to_string()),
                '(' => {
                    if self.peek_at(1) == Some('?') {
                        return Err("regexp flags are not supported".to_string());
                    }
                    self.pos += 1;
                    let group = self.alternation(depth + 1)?;
                    if self.next() != Some(')') {
                        return Err("missing `)`".to_string());
                    }
                    items.push(group);
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(&mut items, min, max, after_repeat)?;
                    repeated = true;
                }
                '{' => match self.repeat_counts()? {
                    Some((min, max, end)) => {
                        self.pos = end;
                        self.repeat(&mut items, min, max, after_repeat)?;
                        repeated = true;
                    }
                    // Not a repetition: a literal `{`.
                    None => {
                        self.pos += 1;
                        items.push(Node::Set(CharSet::single('{' as u32)));
                    }
                },
                '^' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::BeginText));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::EndText));
                }
                '.' => {
                    self.pos += 1;
                    items.push(Node::Set(CharSet::any_but_newline()));
                }
                '[' => {
                    let set = self.class()?;
                    items.push(Node::Set(set));
                }
                '\\' => self.escape(&mut items)?,
                _ => {
                    self.pos += 1;
                    items.push(Node::Set(CharSet::single(c as u32)));
                }
            }
            after_repeat = repeated;
        }
        Ok(Node::Concat(items))
    }

    /// Applies a repetition operator to the last item, with Go's errors.
    fn repeat(
        &mut self,
        items: &mut Vec<Node>,
        min: u32,
        max: Option<u32>,
        after_repeat: bool,
    ) -> Result<(), String> {
        // A non-greedy marker changes nothing about whether there is a match.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        if after_repeat {
            return Err("invalid nested repetition operator".to_string());
        }
        let sub = items
            .pop()
            .ok_or_else(|| "missing argument to repetition operator".to_string())?;
        items.push(Node::Repeat(Box::new(sub), min, max));
        Ok(())
    }

    /// At a `{`: `{n}`, `{n,}` or `{n,m}` as `(min, max, index after }`)`; `None` when the text
    /// is not of that form (then `{` is a literal); an error for counts above 1000 or `n > m`.
    fn repeat_counts(&self) -> Result<Option<(u32, Option<u32>, usize)>, String> {
        let mut i = self.pos + 1;
        let Some(min) = self.int_at(&mut i) else {
            return Ok(None);
        };
        let max = match self.chars.get(i) {
            Some('}') => Some(min),
            Some(',') => {
                i += 1;
                if self.chars.get(i) == Some(&'}') {
                    None
                } else {
                    let Some(max) = self.int_at(&mut i) else {
                        return Ok(None);
                    };
                    Some(max)
                }
            }
            _ => return Ok(None),
        };
        if self.chars.get(i) != Some(&'}') {
            return Ok(None);
        }
        if min > 1000 || max.is_some_and(|max| max > 1000 || min > max) {
            return Err("invalid repeat count".to_string());
        }
        Ok(Some((min, max, i + 1)))
    }

    /// Decimal digits at `i` (Go's `parseInt`: no leading zero), saturating.
    fn int_at(&self, i: &mut usize) -> Option<u32> {
        let start = *i;
        while self.chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        let digits = self.chars.get(start..*i)?;
        if digits.is_empty() || (digits.len() > 1 && digits[0] == '0') {
            return None;
        }
        Some(digits.iter().fold(0u32, |n, d| {
            n.saturating_mul(10)
                .saturating_add(d.to_digit(10).unwrap_or(0))
        }))
    }

    /// A `\` sequence outside brackets.
    fn escape(&mut self, items: &mut Vec<Node>) -> Result<(), String> {
        match self.peek_at(1) {
            Some('A') => items.push(Node::Look(Look::BeginText)),
            Some('z') => items.push(Node::Look(Look::EndText)),
            Some('b') => items.push(Node::Look(Look::WordBoundary)),
            Some('B') => items.push(Node::Look(Look::NotWordBoundary)),
            Some('C') => return Err("invalid escape sequence `\\C`".to_string()),
            Some('Q') => {
                // `\Q...\E`: literal text, up to `\E` or the end of the regexp.
                self.pos += 2;
                while let Some(c) = self.next() {
                    if c == '\\' && self.peek() == Some('E') {
                        self.pos += 1;
                        break;
                    }
                    items.push(Node::Set(CharSet::single(c as u32)));
                }
                return Ok(());
            }
            Some(c @ ('p' | 'P')) => {
                return Err(format!(
                    "Unicode class escapes (`\\{c}`) are not supported by berth"
                ));
            }
            Some(c) => {
                if let Some((negated, ranges)) = perl_class(c) {
                    let ranges = ranges.to_vec();
                    let ranges = if negated {
                        CharSet::complement(ranges)
                    } else {
                        ranges
                    };
                    self.pos += 2;
                    items.push(Node::Set(CharSet { ranges }));
                    return Ok(());
                }
                let code = self.escaped_char()?;
                items.push(Node::Set(CharSet::single(code)));
                return Ok(());
            }
            None => return Err("trailing backslash".to_string()),
        }
        self.pos += 2;
        Ok(())
    }

    /// Go's `parseEscape` at a `\`: the code point it stands for.
    fn escaped_char(&mut self) -> Result<u32, String> {
        let start = self.pos;
        self.pos += 1;
        let c = self
            .next()
            .ok_or_else(|| "trailing backslash".to_string())?;
        let invalid = |p: &Self| {
            let text: String = p.chars[start..p.pos.min(p.chars.len())].iter().collect();
            format!("invalid escape sequence `{text}`")
        };
        let value = match c {
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => return Ok(c as u32),
            // Octal: `\0`, or `\1`-`\7` followed by another octal digit (a lone `\1` would be
            // a backreference, which Go does not support); three digits at most.
            '0'..='7' => {
                let is_octal = |c: Option<char>| c.is_some_and(|c| ('0'..='7').contains(&c));
                if c != '0' && !is_octal(self.peek()) {
                    return Err(invalid(self));
                }
                let mut value = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                value
            }
            'x' => {
                let Some(first) = self.next() else {
                    return Err(invalid(self));
                };
                if first == '{' {
                    let mut value = 0u32;
                    let mut digits = 0;
                    loop {
                        let Some(d) = self.next() else {
                            return Err(invalid(self));
                        };
                        if d == '}' {
                            break;
                        }
                        let Some(v) = d.to_digit(16) else {
                            return Err(invalid(self));
                        };
                        value = value * 16 + v;
                        if value > char::MAX as u32 {
                            return Err(invalid(self));
                        }
                        digits += 1;
                    }
                    if digits == 0 {
                        return Err(invalid(self));
                    }
                    value
                } else {
                    let second = self.next();
                    match (first.to_digit(16), second.and_then(|s| s.to_digit(16))) {
                        (Some(hi), Some(lo)) => hi * 16 + lo,
                        _ => return Err(invalid(self)),
                    }
                }
            }
            'a' => 0x07,
            'f' => 0x0c,
            'n' => 0x0a,
            'r' => 0x0d,
            't' => 0x09,
            'v' => 0x0b,
            _ => return Err(invalid(self)),
        };
        Ok(value)
    }

    /// A bracket expression at `[` (Go's `parseClass`).
    fn class(&mut self) -> Result<CharSet, String> {
        let missing = || "missing closing `]` in a character class".to_string();
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut first = true;
        // `]` right after `[` or `[^` is a literal.
        while self.peek() != Some(']') || first {
            first = false;
            // `[:name:]`, looked for up to the first `:]` anywhere after it.
            if self.peek() == Some('[') && self.peek_at(1) == Some(':') && self.peek_at(2).is_some()
            {
                let rest = &self.chars[self.pos + 2..];
                if let Some(end) = rest.windows(2).position(|w| w == [':', ']']) {
                    let name: String = rest[..end].iter().collect();
                    let (negate, bare) = match name.strip_prefix('^') {
                        Some(bare) => (true, bare),
                        None => (false, name.as_str()),
                    };
                    let group = posix_class(bare)
                        .ok_or_else(|| format!("invalid character class range `[:{name}:]`"))?
                        .to_vec();
                    ranges.extend(if negate {
                        CharSet::complement(group)
                    } else {
                        group
                    });
                    self.pos += 2 + end + 2;
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                match self.peek_at(1) {
                    Some(c @ ('p' | 'P')) => {
                        return Err(format!(
                            "Unicode class escapes (`\\{c}`) are not supported by berth"
                        ));
                    }
                    Some(c) => {
                        if let Some((negate, group)) = perl_class(c) {
                            let group = group.to_vec();
                            ranges.extend(if negate {
                                CharSet::complement(group)
                            } else {
                                group
                            });
                            self.pos += 2;
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let lo = self.class_char().ok_or_else(missing)??;
            let mut hi = lo;
            // `a-` before `]` is `a` and `-`.
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char().ok_or_else(missing)??;
                if hi < lo {
                    let show =
                        |c: u32| char::from_u32(c).map_or(format!("\\x{{{c:x}}}"), String::from);
                    return Err(format!(
                        "invalid character class range `{}-{}`",
                        show(lo),
                        show(hi)
                    ));
                }
            }
            ranges.push((lo, hi));
        }
        self.pos += 1;
        let ranges = if negated {
            CharSet::complement(ranges)
        } else {
            CharSet::normalized(ranges)
        };
        Ok(CharSet { ranges })
    }

    /// One possibly escaped character inside brackets; `None` at the end of the text.
    fn class_char(&mut self) -> Option<Result<u32, String>> {
        match self.peek()? {
            '\\' => Some(self.escaped_char()),
            c => {
                self.pos += 1;
                Some(Ok(c as u32))
            }
        }
    }
}

/// What is known about the character after the current position.
#[derive(Debug, Clone, Copy)]
enum After {
    /// The text ends here.
    End,
    Char(char),
    /// At least one more character, unknown.
    More,
    /// Unknown, maybe the end.
    Unknown,
}

/// What is known about the character before the current position.
#[derive(Debug, Clone, Copy)]
enum Before {
    /// The text starts here.
    Start,
    Char(char),
    /// At least one character, unknown.
    Unknown,
}

/// Go's `\w` (ASCII).
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Look {
    /// Whether the assertion holds; unknown neighbours make the word tests pass (conservative).
    fn holds(self, before: Before, after: After) -> bool {
        let word_before = match before {
            Before::Start => Some(false),
            Before::Char(c) => Some(is_word(c)),
            Before::Unknown => None,
        };
        let word_after = match after {
            After::End => Some(false),
            After::Char(c) => Some(is_word(c)),
            After::More | After::Unknown => None,
        };
        match self {
            Self::BeginText => matches!(before, Before::Start),
            Self::EndText => matches!(after, After::End | After::Unknown),
            Self::WordBoundary => match (word_before, word_after) {
                (Some(b), Some(a)) => b != a,
                _ => true,
            },
            Self::NotWordBoundary => match (word_before, word_after) {
                (Some(b), Some(a)) => b == a,
                _ => true,
            },
        }
    }
}

/// A set of program counters with a "seen" mark per instruction.
struct Threads {
    pcs: Vec<usize>,
    seen: Vec<bool>,
}

impl Threads {
    fn new(len: usize) -> Self {
        Self {
            pcs: Vec::new(),
            seen: vec![false; len],
        }
    }

    fn clear(&mut self) {
        for &pc in &self.pcs {
            if let Some(seen) = self.seen.get_mut(pc) {
                *seen = false;
            }
        }
        self.pcs.clear();
    }
}

impl Regex {
    fn new(regex: &str) -> Result<Self, String> {
        let mut parser = RegexParser {
            chars: regex.chars().collect(),
            pos: 0,
        };
        let node = parser.alternation(0)?;
        if parser.pos < parser.chars.len() {
            return Err("unexpected `)`".to_string());
        }
        let mut program = Vec::new();
        Self::emit(&node, &mut program)?;
        program.push(Inst::Match);
        Ok(Self { program })
    }

    /// Thompson construction.
    fn emit(node: &Node, program: &mut Vec<Inst>) -> Result<(), String> {
        if program.len() > MAX_PROGRAM {
            return Err("pattern too large".to_string());
        }
        match node {
            Node::Set(set) => program.push(Inst::Char(set.clone())),
            Node::Look(look) => program.push(Inst::Look(*look)),
            Node::Concat(items) => {
                for item in items {
                    Self::emit(item, program)?;
                }
            }
            Node::Alternate(branches) => {
                let mut jumps = Vec::new();
                for (i, branch) in branches.iter().enumerate() {
                    if i + 1 < branches.len() {
                        let split = program.len();
                        program.push(Inst::Split(split + 1, 0));
                        Self::emit(branch, program)?;
                        jumps.push(program.len());
                        program.push(Inst::Jump(0));
                        let next = program.len();
                        if let Some(Inst::Split(_, alt)) = program.get_mut(split) {
                            *alt = next;
                        }
                    } else {
                        Self::emit(branch, program)?;
                    }
                }
                let end = program.len();
                for jump in jumps {
                    if let Some(Inst::Jump(target)) = program.get_mut(jump) {
                        *target = end;
                    }
                }
            }
            Node::Repeat(sub, min, max) => {
                for _ in 0..*min {
                    Self::emit(sub, program)?;
                }
                match max {
                    None => {
                        // L: split(body, out); body; jump L
                        let split = program.len();
                        program.push(Inst::Split(split + 1, 0));
                        Self::emit(sub, program)?;
                        program.push(Inst::Jump(split));
                        let out = program.len();
                        if let Some(Inst::Split(_, alt)) = program.get_mut(split) {
                            *alt = out;
                        }
                    }
                    Some(max) => {
                        for _ in *min..*max {
                            let split = program.len();
                            program.push(Inst::Split(split + 1, 0));
                            Self::emit(sub, program)?;
                            let out = program.len();
                            if let Some(Inst::Split(_, alt)) = program.get_mut(split) {
                                *alt = out;
                            }
                        }
                    }
                }
            }
        }
        if program.len() > MAX_PROGRAM {
            return Err("pattern too large".to_string());
        }
        Ok(())
    }

    /// Adds `pc` and everything reachable from it without consuming to `threads`; true when
    /// that reaches [`Inst::Match`].
    fn add(&self, threads: &mut Threads, pc: usize, before: Before, after: After) -> bool {
        let mut stack = vec![pc];
        let mut matched = false;
        while let Some(pc) = stack.pop() {
            match threads.seen.get_mut(pc) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            threads.pcs.push(pc);
            match self.program.get(pc) {
                Some(Inst::Split(a, b)) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::Jump(target)) => stack.push(*target),
                Some(Inst::Look(look)) => {
                    if look.holds(before, after) {
                        stack.push(pc + 1);
                    }
                }
                Some(Inst::Match) => matched = true,
                Some(Inst::Char(_)) | None => {}
            }
        }
        matched
    }

    /// Advances every thread of `current` over `c` into `next`, then makes `next` current.
    /// Returns true as soon as a thread matches.
    fn step(&self, current: &mut Threads, next: &mut Threads, c: char, after: After) -> bool {
        for &pc in &current.pcs {
            if let Some(Inst::Char(set)) = self.program.get(pc)
                && set.contains(c)
                && self.add(next, pc + 1, Before::Char(c), after)
            {
                return true;
            }
        }
        std::mem::swap(current, next);
        next.clear();
        false
    }

    /// Go's `MatchString`: whether the expression matches somewhere in `text`.
    fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let len = self.program.len();
        let mut current = Threads::new(len);
        let mut next = Threads::new(len);
        for pos in 0..=chars.len() {
            let before = match pos.checked_sub(1).and_then(|p| chars.get(p)) {
                Some(&c) => Before::Char(c),
                None => Before::Start,
            };
            let after = chars.get(pos).map_or(After::End, |&c| After::Char(c));
            // Unanchored search: a new thread starts at every position.
            if self.add(&mut current, 0, before, after) {
                return true;
            }
            let Some(&c) = chars.get(pos) else {
                break;
            };
            let next_after = chars.get(pos + 1).map_or(After::End, |&c| After::Char(c));
            if self.step(&mut current, &mut next, c, next_after) {
                return true;
            }
        }
        false
    }

    /// Whether some text that starts with `prefix` and goes on by at least one character could
    /// match (conservatively).
    fn may_match_after(&self, prefix: &str) -> bool {
        let len = self.program.len();
        // A match starting after the prefix, somewhere in the unknown rest?
        let mut probe = Threads::new(len);
        if self.add(&mut probe, 0, Before::Unknown, After::Unknown) {
            return true;
        }
        if probe
            .pcs
            .iter()
            .any(|&pc| matches!(self.program.get(pc), Some(Inst::Char(_))))
        {
            return true;
        }
        // Otherwise every match starts at the beginning: run the prefix, then see whether a
        // thread is still alive (or a match was found without needing the end).
        let chars: Vec<char> = prefix.chars().collect();
        let mut current = Threads::new(len);
        let first_after = chars.first().map_or(After::More, |&c| After::Char(c));
        if self.add(&mut current, 0, Before::Start, first_after) {
            return true;
        }
        let mut next = Threads::new(len);
        for (pos, &c) in chars.iter().enumerate() {
            let next_after = chars.get(pos + 1).map_or(After::More, |&c| After::Char(c));
            if self.step(&mut current, &mut next, c, next_after) {
                return true;
            }
        }
        current
            .pcs
            .iter()
            .any(|&pc| matches!(self.program.get(pc), Some(Inst::Char(_))))
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    /// Asserts, for each `(path, excluded)`, what `text` decides.
    fn check(text: &str, cases: &[(&str, bool)]) {
        let ig = ignore(text);
        for &(path, want) in cases {
            assert_eq!(
                ig.is_excluded(path),
                want,
                "pattern(s) {text:?}, path {path:?}"
            );
        }
    }

    fn pattern_error(text: &str) -> (u32, String, String) {
        match DockerIgnore::parse(text) {
            Err(IgnoreError::Pattern {
                line,
                pattern,
                reason,
                ..
            }) => (line, pattern, reason),
            other => panic!("{text:?}: expected a pattern error, got {other:?}"),
        }
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let ig = ignore("# a comment\n\n   \n\t\nfoo\n#bar\n");
        assert_eq!(ig.patterns().count(), 1);
        assert!(ig.is_excluded("foo"));
        assert!(!ig.is_excluded("#bar"));
        assert!(ignore("# only\n\n").is_empty());
        assert!(DockerIgnore::default().is_empty());
        assert!(!DockerIgnore::default().is_excluded("anything"));
    }

    #[test]
    fn comment_test_happens_before_trimming() {
        // ignorefile.ReadAll checks for `#` before TrimSpace: an indented `#` is a pattern.
        check("  #notes", &[("#notes", true), ("notes", false)]);
    }

    #[test]
    fn whitespace_is_trimmed_and_crlf_and_bom_are_handled() {
        check(
            "\u{feff}first\r\n  second  \r\n",
            &[("first", true), ("second", true), ("\u{feff}first", false)],
        );
        // The BOM is only special at the very start.
        let ig = ignore("a\n\u{feff}b");
        assert!(ig.is_excluded("\u{feff}b"));
    }

    #[test]
    fn star_stays_within_one_segment() {
        check(
            "*.md",
            &[
                ("README.md", true),
                (".md", true),
                ("docs/README.md", false),
                ("README.mdx", false),
            ],
        );
        check("a*/b", &[("abc/b", true), ("a/b", true), ("a/c/b", false)]);
    }

    #[test]
    fn star_alone_excludes_everything_through_parents() {
        check("*", &[("a", true), ("a/b/c", true), (".hidden/x", true)]);
    }

    #[test]
    fn question_mark_is_one_non_slash_character() {
        check(
            "temp?",
            &[
                ("tempa", true),
                ("temp", false),
                ("tempab", false),
                ("temp☺", true),
            ],
        );
        check("a?b", &[("a/b", false), ("axb", true)]);
    }

    #[test]
    fn docs_matching_table() {
        // The example of docker's "build context" documentation.
        let text = "# comment\n*/temp*\n*/*/temp*\ntemp?";
        check(
            text,
            &[
                ("somedir/temporary.txt", true),
                ("somedir/temp", true),
                ("somedir/subdir/temporary.txt", true),
                ("tempa", true),
                ("temporary.txt", false),
                ("a/b/c/temp", false),
            ],
        );
    }

    #[test]
    fn classes_with_ranges() {
        check(
            "file[0-9].txt",
            &[
                ("file5.txt", true),
                ("fileA.txt", false),
                ("file10.txt", false),
            ],
        );
        check("ab[cx-z]", &[("abc", true), ("aby", true), ("abd", false)]);
        check("[a-ζ]*", &[("α", true), ("A", false)]);
    }

    #[test]
    fn negated_classes() {
        check("ab[^c]", &[("abc", false), ("abd", true)]);
        check("a[^b-d]e", &[("aze", true), ("ace", false)]);
        // As in filepath.Match, a class (negated or not) may match the separator.
        check("a[^x]b", &[("a/b", true)]);
        // `!` does not negate in Go's syntax.
        check("[!a]", &[("!", true), ("a", true), ("b", false)]);
    }

    #[test]
    fn escapes() {
        check("a\\*b", &[("a*b", true), ("axb", false), ("ab", false)]);
        check("\\[x]", &[("[x]", true), ("x", false)]);
        check("[\\]a]", &[("]", true), ("a", true), ("b", false)]);
        check("[x\\-]", &[("-", true), ("x", true), ("z", false)]);
        check("a\\\\", &[("a\\", true)]);
        // `\!` at the start is an escaped `!`, not an exception.
        check("\\!important", &[("!important", true)]);
        assert!(!ignore("\\!important").has_exceptions());
        // `\#` escapes a leading `#`.
        check("\\#tmp", &[("#tmp", true)]);
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        check(
            "a.|)$(}+{bc",
            &[("a.|)$(}+{bc", true), ("a.|)$(}+{bcd", false)],
        );
        check(".*", &[(".foo", true), ("foo", false)]);
        check("abc.def", &[("abc.def", true), ("abcXdef", false)]);
    }

    #[test]
    fn double_star_at_the_start() {
        check(
            "**/*.go",
            &[
                ("main.go", true),
                ("a/main.go", true),
                ("a/b/c/main.go", true),
                ("main.got", false),
            ],
        );
        check("**", &[("a", true), ("a/b/c", true)]);
    }

    #[test]
    fn double_star_slash_x_matches_at_depth_zero() {
        check(
            "**/node_modules",
            &[
                ("node_modules", true),
                ("node_modules/a/b.js", true),
                ("pkg/node_modules/x", true),
                ("my_node_modules", false),
            ],
        );
    }

    #[test]
    fn double_star_in_the_middle() {
        check(
            "a/**/b",
            &[
                ("a/b", true),
                ("a/x/b", true),
                ("a/x/y/b", true),
                ("a/x/y/b/c", true),
                ("ax/b", false),
                ("a/xb", false),
            ],
        );
        check("a**/*.txt", &[("a/f.txt", true), ("a/d/d/f.txt", true)]);
    }

    #[test]
    fn double_star_at_the_end() {
        // moby: `abc/**` does not match `abc` itself (prefix test on "abc/").
        check(
            "abc/**",
            &[("abc", false), ("abc/def", true), ("abc/def/ghi", true)],
        );
        check("a/*.txt**", &[("a/f.txt", true), ("a/f.txt.bak", true)]);
        // Wildcard-free text then `**` is a plain prefix test, crossing `/`.
        check(
            "foo**",
            &[("foo", true), ("foobar/baz", true), ("fo", false)],
        );
    }

    #[test]
    fn double_star_translation_quirks() {
        // moby turns an inner `**` into the regex `(.*/)?`: it matches nothing or whole
        // directories, so `a**b` does not match `axb`.
        check("a**b", &[("ab", true), ("ax/b", true), ("axb", false)]);
        // A pattern that is `**` + wildcard-free text is a suffix test in moby.
        check(
            "**foo",
            &[("foo", true), ("barfoo", true), ("x/barfoo", true)],
        );
        check("**foo*", &[("barfoo", false), ("x/foobar", true)]);
    }

    #[test]
    fn caret_outside_brackets_is_a_regex_anchor_in_globs() {
        // moby leaves `^` unescaped in the regex: with a wildcard it anchors, and vanishes.
        check("^foo*", &[("foobar", true), ("^foobar", false)]);
        // Without a wildcard the pattern is compared as text.
        check("^foo", &[("^foo", true), ("foo", false)]);
    }

    #[test]
    fn pipe_is_alternation_in_regexp_patterns() {
        // moby's escape bitmap loses `|`: with a wildcard the pattern is `^a[^/]*|b$`, which
        // matches names starting with `a` or ending with `b`, at any depth.
        check(
            "a*|b",
            &[
                ("abc", true),
                ("x/yb", true),
                ("ax/y", true),
                ("zzz", false),
            ],
        );
        // Without a wildcard the pattern is compared as text.
        check("a|b", &[("a|b", true), ("a", false)]);
        // Escaped, it is a literal everywhere.
        check("a*\\|b", &[("ax|b", true), ("xb", false)]);
    }

    #[test]
    fn braces_repeat_in_regexp_patterns() {
        // `{1,2}` repeats the escaped `.` before it (moby does not escape `{`, `}`).
        check(
            "x*.log.{1,2}",
            &[("x.log.", true), ("xy.log..", true), ("x.log.{1,2}", false)],
        );
        // Not a valid repetition: literal braces, as in `filepath.Match`.
        check("*.{js,ts}", &[("a.{js,ts}", true), ("a.js", false)]);
        // A repetition of a repetition is a regexp compile error.
        let (_, _, reason) = pattern_error("a*{2}");
        assert!(reason.contains("repetition"), "{reason}");
        let (_, _, reason) = pattern_error("a{1001}*");
        assert!(reason.contains("repeat count"), "{reason}");
    }

    #[test]
    fn backslash_letters_are_regexp_escapes() {
        // moby copies `\` and the next character into the regexp.
        check("*\\d", &[("a1", true), ("ad", false)]);
        check("x\\t*", &[("x\tz", true), ("xtz", false)]);
        check("*\\x41", &[("zA", true), ("zx41", false)]);
        // `\b` is a word boundary, never between two letters: this matches nothing.
        check("foo\\bar*", &[("foobar", false), ("foo\\bar", false)]);
        let (_, _, reason) = pattern_error("*\\q");
        assert!(reason.contains("escape"), "{reason}");
        // A Windows-style path: `\P` + `rogram` is a Unicode class docker refuses as well.
        assert!(DockerIgnore::parse("C:\\Program Files\\*").is_err());
    }

    #[test]
    fn brackets_are_copied_into_the_regexp() {
        // `[a*]` becomes `[a[^/]*]`: the class closes early and a literal `]` follows.
        check("[a*]", &[("]", true), ("a]", true), ("a", false)]);
        check("[[:alpha:]]*", &[("x1", true), ("1x", false)]);
        let (_, _, reason) = pattern_error("[[:foo:]]");
        assert!(reason.contains("[:foo:]"), "{reason}");
    }

    #[test]
    fn unicode_class_escapes_are_refused() {
        let (line, pattern, reason) = pattern_error("ok\n*\\pL");
        assert_eq!((line, pattern.as_str()), (2, "*\\pL"));
        assert!(reason.contains("not supported"), "{reason}");
    }

    #[test]
    fn double_star_glob_does_not_cross_newlines() {
        // The regex `.` of a translated `**` stops at `\n`; moby's prefix test does not.
        check("a*/**", &[("ab/x\ny", false), ("ab/xy", true)]);
        check("a/**", &[("a/x\ny", true)]);
    }

    #[test]
    fn parent_directory_matches_exclude_children() {
        check(
            "node_modules\ndocs/*",
            &[
                ("node_modules", true),
                ("node_modules/a/b.js", true),
                ("docs/a/b", true),
                ("docs", false),
                ("src/node_modules", false),
            ],
        );
    }

    #[test]
    fn exception_after_exclusion_reincludes() {
        check(
            "*.md\n!README.md",
            &[("README.md", false), ("CHANGES.md", true)],
        );
    }

    #[test]
    fn exclusion_after_exception_wins() {
        check(
            "!README.md\n*.md",
            &[("README.md", true), ("CHANGES.md", true)],
        );
    }

    #[test]
    fn docs_exception_examples() {
        check(
            "*.md\n!README*.md\nREADME-secret.md",
            &[
                ("README.md", false),
                ("README-secret.md", true),
                ("other.md", true),
            ],
        );
        check(
            "*.md\nREADME-secret.md\n!README*.md",
            &[("README.md", false), ("README-secret.md", false)],
        );
    }

    #[test]
    fn exception_inside_excluded_directory() {
        check(
            "docs\n!docs/README.md",
            &[
                ("docs", true),
                ("docs/README.md", false),
                ("docs/other.md", true),
            ],
        );
        check(
            "**\n!util/docker/web\nutil/docker/web/foo",
            &[
                ("util/docker/web/bar", false),
                ("util/docker/web/foo", true),
                ("util/docker/web/foo/x", true),
                ("util/other", true),
            ],
        );
        // Re-excluded by a later pattern that matches through the parent (MatchesOrParentMatches;
        // BuildKit's walker would keep `a/b` here, see the module documentation).
        check("a\n!a/b\na", &[("a/b", true), ("a/b/c", true)]);
    }

    #[test]
    fn exception_marker_and_whitespace() {
        let ig = ignore("*\n!  keep ");
        assert!(ig.has_exceptions());
        assert!(!ig.is_excluded("keep"));
        assert!(ig.is_excluded("other"));
        let listed: Vec<_> = ig.patterns().collect();
        assert_eq!(
            listed,
            vec![
                IgnorePattern {
                    line: 1,
                    exception: false,
                    pattern: "*"
                },
                IgnorePattern {
                    line: 2,
                    exception: true,
                    pattern: "keep"
                },
            ]
        );
    }

    #[test]
    fn leading_slash_dot_slash_and_trailing_slash_are_dropped() {
        for text in [
            "/foo/bar/",
            "/foo/bar",
            "foo/bar/",
            "./foo/bar",
            "foo//bar",
            "foo/./bar",
        ] {
            let ig = ignore(text);
            assert_eq!(ig.patterns().next().unwrap().pattern, "foo/bar", "{text:?}");
            assert!(ig.is_excluded("foo/bar/baz"), "{text:?}");
            assert!(!ig.is_excluded("foo"), "{text:?}");
        }
        check("!/keep\n*", &[("keep", true)]);
        check("*\n!/keep/", &[("keep", false), ("keep/x", false)]);
    }

    #[test]
    fn second_trim_and_clean_with_the_bang_in_place() {
        // ReadAll strips the leading `/` of "/ x" to " x"; patternmatcher.New trims again.
        check("/ x", &[("x", true), (" x", false)]);
        // "/!x" becomes "!x" after ReadAll, which New reads as an exception.
        let ig = ignore("*\n/!x");
        assert!(ig.has_exceptions());
        assert!(!ig.is_excluded("x"));
        // After New's `!` nothing is trimmed: "!/ x" is the exception " x".
        check("*\n!/ x", &[(" x", false), ("x", true)]);
    }

    #[test]
    fn dot_dot_is_resolved_lexically() {
        check("foo/../bar", &[("bar", true), ("foo", false)]);
        // At the root, `..` is dropped (Clean of a rooted path).
        check("/../secret", &[("secret", true)]);
        // Relative `..` stays and can never match a context path.
        let ig = ignore("../outside\n..");
        assert_eq!(ig.patterns().next().unwrap().pattern, "../outside");
        assert!(!ig.is_excluded("outside"));
        assert!(!ig.is_excluded("a"));
    }

    #[test]
    fn dot_and_slash_patterns_match_nothing() {
        // Docker's docs: "For historical reasons, the pattern . is ignored."
        let ig = ignore(".\n./\n!.");
        assert!(ig.is_empty());
        // `/` stays `/` (ReadAll strips a leading slash only from longer patterns): no path is
        // `/`, so it excludes nothing.
        let ig = ignore("/");
        assert!(!ig.is_empty());
        assert!(!ig.is_excluded("a"));
        assert!(!ig.is_excluded("a/b"));
    }

    #[test]
    fn bare_exception_is_an_error() {
        let (line, pattern, _) = pattern_error("a\n!");
        assert_eq!((line, pattern.as_str()), (2, "!"));
        let (line, _, _) = pattern_error("!   ");
        assert_eq!(line, 1);
        // `!/`: ReadAll keeps "/", New cleans "!/" to "!" and refuses it.
        let (line, pattern, _) = pattern_error("ok\n!/");
        assert_eq!((line, pattern.as_str()), (2, "!/"));
    }

    #[test]
    fn malformed_patterns_name_line_and_pattern() {
        let (line, pattern, reason) = pattern_error("# header\nok\n\nfoo[ab");
        assert_eq!((line, pattern.as_str()), (4, "foo[ab"));
        assert!(reason.contains("unterminated"), "{reason}");
        let err = DockerIgnore::parse("x\n  !bad[  ").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: invalid pattern \"!bad[\": unterminated character class (missing `]`)"
        );
        // filepath.Match's syntax errors.
        for bad in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "a\\",
        ] {
            let (line, pattern, _) = pattern_error(bad);
            assert_eq!((line, pattern.as_str()), (1, bad));
        }
        // Accepted by filepath.Match but refused by moby's regexp compile (moby/moby#52203).
        let (_, _, reason) = pattern_error("[Local-Only]/");
        assert!(reason.contains("range"), "{reason}");
        assert!(DockerIgnore::parse("[z-z]").is_ok());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let long = "a".repeat(MAX_LINE);
        let text = format!("ok\n{long}\n");
        assert!(matches!(
            DockerIgnore::parse(&text),
            Err(IgnoreError::LineTooLong { line: 2, .. })
        ));
        assert!(DockerIgnore::parse(&"a".repeat(MAX_LINE - 1)).is_ok());
        // The `\r` of a CRLF ending counts.
        let text = format!("{}\r\n", "a".repeat(MAX_LINE - 1));
        assert!(DockerIgnore::parse(&text).is_err());
    }

    #[test]
    fn paths_are_normalised_before_matching() {
        check(
            "foo/bar",
            &[
                ("./foo/bar", true),
                ("/foo/bar", true),
                ("foo//bar/", true),
                ("foo/x/../bar", true),
                (".", false),
                ("", false),
                ("./", false),
            ],
        );
        // The context root is never excluded, even by `**`.
        check("**", &[(".", false), ("", false)]);
    }

    #[test]
    fn may_reinclude_below_literal_exceptions() {
        let ig = ignore("node_modules\n!node_modules/keep/this.js");
        assert!(ig.may_reinclude_below("node_modules"));
        assert!(ig.may_reinclude_below("node_modules/keep"));
        assert!(ig.may_reinclude_below("./node_modules/"));
        assert!(!ig.may_reinclude_below("node_modules/other"));
        assert!(!ig.may_reinclude_below("node_modules/keep/this.js"));
        assert!(!ig.may_reinclude_below("other"));
        // `node_modules_x` is not below `node_modules`.
        let ig = ignore("*\n!node_modules_x/y");
        assert!(!ig.may_reinclude_below("node_modules"));
        // No exceptions: nothing is ever re-included.
        let ig = ignore("a\nb/**");
        assert!(!ig.may_reinclude_below("a"));
        assert!(!ig.may_reinclude_below("b"));
    }

    #[test]
    fn may_reinclude_below_wildcard_exceptions() {
        let ig = ignore("*\n!a/*/c");
        assert!(ig.may_reinclude_below("a"));
        assert!(ig.may_reinclude_below("a/b"));
        assert!(!ig.may_reinclude_below("a/b/c"));
        assert!(!ig.may_reinclude_below("b"));
        // `*` stays in one segment: `foo*` re-includes nothing below `foobar`.
        let ig = ignore("*\n!foo*");
        assert!(!ig.may_reinclude_below("foobar"));
        // `**` exceptions can reach anywhere.
        let ig = ignore("*\n!**/*.keep");
        assert!(ig.may_reinclude_below("x/y"));
        let ig = ignore("*\n!src/**");
        assert!(ig.may_reinclude_below("src"));
        assert!(ig.may_reinclude_below("src/deep"));
        assert!(!ig.may_reinclude_below("lib"));
        let ig = ignore("*\n!sr**");
        assert!(ig.may_reinclude_below("src"));
        assert!(!ig.may_reinclude_below("lib"));
    }

    #[test]
    fn may_reinclude_below_agrees_with_is_excluded() {
        // Whenever it says "no", every path below an excluded directory is excluded.
        let texts = [
            "*\n!a/*/c",
            "*\n!foo*",
            "a\n!a/b\na",
            "**\n!x/**/y",
            "docs\n!docs/README.md",
            "*\n!^a*",
            "*\n![ab]/c",
            "*\n!b*|c",
            "*\n!x{2}/*",
            "*\n!\\d*/y",
        ];
        let dirs = [
            "a", "a/b", "b", "docs", "foobar", "x", "x/q", "c", "xx", "1", "bc",
        ];
        let leaves = ["c", "y", "README.md", "z/y", "b/c"];
        for text in texts {
            let ig = ignore(text);
            for dir in dirs {
                if !ig.is_excluded(dir) || ig.may_reinclude_below(dir) {
                    continue;
                }
                for leaf in leaves {
                    let path = format!("{dir}/{leaf}");
                    assert!(
                        ig.is_excluded(&path),
                        "{text:?}: {path} escaped skipped {dir}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_exponential_blowup() {
        let start = std::time::Instant::now();
        let ig = ignore("*a*a*a*a*a*a*a*a*a*a*a*a*b\n**/**/**/**/**/**/**/**/c");
        let long_a = "a".repeat(5_000);
        assert!(!ig.is_excluded(&long_a));
        let deep = vec!["d"; 200].join("/");
        assert!(!ig.is_excluded(&deep));
        assert!(ig.is_excluded(&format!("{deep}/c")));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn moby_match_table() {
        // Cases from moby/patternmatcher's tests (single pattern, MatchesOrParentMatches).
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**/", "file", true),
            ("**", "dir/file", true),
            ("**/**", "dir/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("abc?def", "abcdef", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a*", "ab/c", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("a???b", "a☺b", false),
            ("*x", "xxx", true),
        ];
        for &(pattern, path, want) in cases {
            assert_eq!(
                ignore(pattern).is_excluded(path),
                want,
                "{pattern:?} vs {path:?}"
            );
        }
    }

    #[test]
    fn clean_matches_go() {
        let cases = [
            ("", "."),
            ("abc", "abc"),
            ("abc/", "abc"),
            ("a//c", "a/c"),
            ("a/./c", "a/c"),
            ("a/c/..", "a"),
            ("a/../..", ".."),
            ("../../abc", "../../abc"),
            ("/../abc", "/abc"),
            ("/", "/"),
            ("//", "/"),
            ("./", "."),
            ("abc/./../def", "def"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let unique = format!(
                "berth-ignore-{tag}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(unique);
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_prefers_the_dockerfile_specific_file() {
        let tmp = TempDir::new("load");
        let ctx = &tmp.0;
        std::fs::create_dir_all(ctx.join("docker")).unwrap();
        std::fs::write(ctx.join(".dockerignore"), "shared\n").unwrap();
        std::fs::write(
            ctx.join("docker/build.Dockerfile.dockerignore"),
            "specific\n",
        )
        .unwrap();

        let ig = load(ctx, &ctx.join("docker/build.Dockerfile")).unwrap();
        assert!(ig.is_excluded("specific"));
        assert!(!ig.is_excluded("shared"));

        // Another Dockerfile without its own file falls back to the context's.
        let ig = load(ctx, &ctx.join("docker/lint.Dockerfile")).unwrap();
        assert!(ig.is_excluded("shared"));
        assert!(!ig.is_excluded("specific"));

        // The default name works the same way; an empty specific file still wins.
        std::fs::write(ctx.join("Dockerfile.dockerignore"), "").unwrap();
        let ig = load(ctx, &ctx.join("Dockerfile")).unwrap();
        assert!(ig.is_empty());

        // A directory where the file would be counts as no file.
        std::fs::create_dir_all(ctx.join("docker/odd.Dockerfile.dockerignore")).unwrap();
        let ig = load(ctx, &ctx.join("docker/odd.Dockerfile")).unwrap();
        assert!(ig.is_excluded("shared"));
    }

    #[test]
    fn load_without_any_file_is_empty_and_errors_name_the_file() {
        let tmp = TempDir::new("none");
        let ctx = &tmp.0;
        let ig = load(ctx, &ctx.join("Dockerfile")).unwrap();
        assert!(ig.is_empty());

        std::fs::write(ctx.join(".dockerignore"), "fine\n[oops\n").unwrap();
        let err = load(ctx, &ctx.join("Dockerfile")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(".dockerignore: line 2"), "{message}");
        match err {
            IgnoreError::Pattern { file, line, .. } => {
                assert_eq!(file.as_deref(), Some(ctx.join(".dockerignore").as_path()));
                assert_eq!(line, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
