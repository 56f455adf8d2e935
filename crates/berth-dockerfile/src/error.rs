//! Positions and the parse error, which shows the offending line with a caret.

use std::fmt;

use serde::Serialize;

/// A position in the Dockerfile: 1-based line and 1-based column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A range of the Dockerfile; `end` is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    pub const fn new(start: Pos, end: Pos) -> Self {
        Self { start, end }
    }
}

/// A Dockerfile that BuildKit would refuse. `Display` prints the message, the offending line
/// and a caret under the offending part:
///
/// ```text
/// line 3, column 1: unknown instruction: FORM (did you mean FROM?)
///    3 | FORM busybox
///      | ^^^^
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ParseError {
    /// What is wrong, worded as BuildKit words it where BuildKit has a message.
    pub message: String,
    /// Where it is (a zero-width span when only the line is known).
    pub span: Span,
    /// The text of the line `span.start` is on, without its line ending.
    pub source_line: String,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>, span: Span, source_line: &str) -> Self {
        Self {
            message: message.into(),
            span,
            source_line: source_line.trim_end_matches(['\r', '\n']).to_string(),
        }
    }

    /// The 1-based line the error is on.
    pub fn line(&self) -> u32 {
        self.span.start.line
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Pos { line, column } = self.span.start;
        write!(f, "line {line}, column {column}: {}", self.message)?;
        if line == 0 {
            return Ok(());
        }
        let gutter = line.to_string();
        let pad = " ".repeat(gutter.len());
        write!(f, "\n {gutter} | {}", self.source_line.replace('\t', " "))?;
        let start = column.max(1) as usize - 1;
        let width = if self.span.end.line == line && self.span.end.column > column {
            (self.span.end.column - column) as usize
        } else {
            1
        };
        write!(f, "\n {pad} | {}{}", " ".repeat(start), "^".repeat(width))
    }
}
