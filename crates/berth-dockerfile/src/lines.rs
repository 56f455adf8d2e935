//! From bytes to logical lines, as BuildKit's `parser.Parse` reads them: parser directives at the
//! top, comments, continuation lines joined (comments and empty lines inside them dropped), and
//! heredoc bodies read after the instruction that opens them. Every byte of a logical line keeps
//! the physical position it came from.

use crate::ast::{Comment, Directive, Directives, Warning};
use crate::error::{ParseError, Pos, Span};

/// A source split into physical lines (each with its line ending).
pub(crate) struct Source<'a> {
    pub lines: Vec<&'a str>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self {
            lines: text.split_inclusive('\n').collect(),
        }
    }

    /// Line `n` (1-based) without its ending, or "".
    pub fn line(&self, n: u32) -> &'a str {
        self.lines
            .get((n as usize).wrapping_sub(1))
            .map(|l| l.trim_end_matches(['\r', '\n']))
            .unwrap_or("")
    }

    pub fn error(&self, message: impl Into<String>, span: Span) -> ParseError {
        ParseError::new(message, span, self.line(span.start.line))
    }

    pub fn error_at_line(&self, message: impl Into<String>, line: u32) -> ParseError {
        let pos = Pos::new(line, 1);
        let width = self.line(line).chars().count().max(1) as u32;
        self.error(message, Span::new(pos, Pos::new(line, 1 + width)))
    }
}

/// One piece of a logical line: the bytes from `offset` on came from `line`, starting at `column`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: usize,
    line: u32,
    column: u32,
}

/// A logical line and where each of its bytes came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logical {
    pub text: String,
    segments: Vec<Segment>,
    /// The last physical line of the instruction (before any heredoc body), counting comment and
    /// empty lines read inside the continuation, as BuildKit's `EndLine` does.
    pub end_line: u32,
}

impl Logical {
    fn push(&mut self, piece: &str, line: u32, column: u32) {
        self.segments.push(Segment {
            offset: self.text.len(),
            line,
            column,
        });
        self.text.push_str(piece);
        self.end_line = line;
    }

    /// The physical position of byte `offset` of the logical line.
    pub fn pos(&self, offset: usize) -> Pos {
        let idx = self
            .segments
            .partition_point(|s| s.offset <= offset)
            .saturating_sub(1);
        let Some(seg) = self.segments.get(idx) else {
            return Pos::new(self.end_line, 1);
        };
        let end = offset.min(self.text.len());
        let chars = self
            .text
            .get(seg.offset..end)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        Pos::new(seg.line, seg.column + chars as u32)
    }

    /// The span of bytes `start..end` of the logical line.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let end_pos = if end > start {
            // The end of the last character, on the line that character is on.
            let last = self.text[..end]
                .char_indices()
                .next_back()
                .map(|(i, _)| i)
                .unwrap_or(start);
            let p = self.pos(last);
            Pos::new(p.line, p.column + 1)
        } else {
            self.pos(start)
        };
        Span::new(self.pos(start), end_pos)
    }
}

/// What the line reader hands to the instruction parser.
#[derive(Debug)]
pub(crate) struct RawInstruction {
    pub logical: Logical,
    /// The comments directly above.
    pub comments: Vec<String>,
}

/// The line reader: directives, comments and logical lines; the caller reads heredoc bodies
/// through [`Reader::heredoc_body`] before asking for the next instruction.
pub(crate) struct Reader<'s, 'a> {
    src: &'s Source<'a>,
    /// Index of the next physical line to read.
    next: usize,
    directives_done: bool,
    seen_directives: Vec<String>,
    pub directives: Directives,
    pub comments: Vec<Comment>,
    pub warnings: Vec<Warning>,
    prev_comments: Vec<String>,
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// BuildKit's line-continuation test: the escape character is the last non-blank character and
/// is either alone on the line or not itself escaped. Returns the line without it.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before, false);
    }
    (line, true)
}

impl<'s, 'a> Reader<'s, 'a> {
    pub fn new(src: &'s Source<'a>) -> Self {
        Self {
            src,
            next: 0,
            directives_done: false,
            seen_directives: Vec::new(),
            directives: Directives::default(),
            comments: Vec::new(),
            warnings: Vec::new(),
            prev_comments: Vec::new(),
        }
    }

    /// The number of the last line read (1-based).
    pub fn line_no(&self) -> u32 {
        self.next as u32
    }

    /// A parser directive on `line` (already stripped of leading whitespace), if the directive
    /// block is still open. Any other line closes it.
    fn directive(&mut self, line: &str, line_no: u32) -> Result<bool, ParseError> {
        if self.directives_done {
            return Ok(false);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.directives_done = true;
            return Ok(false);
        };
        let rest = rest.trim_start();
        let name_len = rest
            .char_indices()
            .take_while(|&(i, c)| {
                if i == 0 {
                    c.is_ascii_alphabetic()
                } else {
                    c.is_ascii_alphanumeric()
                }
            })
            .count();
        let (name, after) = rest.split_at(name_len);
        let Some(value) = after.trim_start().strip_prefix('=') else {
            self.directives_done = true;
            return Ok(false);
        };
        let value = value.trim();
        let key = name.to_ascii_lowercase();
        if name.is_empty()
            || value.is_empty()
            || !matches!(key.as_str(), "syntax" | "escape" | "check")
        {
            self.directives_done = true;
            return Ok(false);
        }
        if self.seen_directives.contains(&key) {
            return Err(self.src.error_at_line(
                format!("only one {key} parser directive can be used"),
                line_no,
            ));
        }
        self.seen_directives.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                _ => {
                    return Err(self.src.error_at_line(
                        format!("invalid escape token '{value}' does not match ` or \\"),
                        line_no,
                    ));
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some(value.to_string()),
        }
        self.directives.all.push(Directive {
            name: key,
            value: value.to_string(),
            line: line_no,
        });
        Ok(true)
    }

    /// The next instruction's logical line, or `None` at the end of the file.
    pub fn next_instruction(&mut self) -> Result<Option<RawInstruction>, ParseError> {
        let escape = self.directives.escape;
        while let Some(&raw) = self.src.lines.get(self.next) {
            self.next += 1;
            let line_no = self.next as u32;
            let line = trim_newline(raw);
            let stripped = line.trim_start();
            let leading = line.len() - stripped.len();
            if self.directive(stripped, line_no)? {
                continue;
            }
            if is_comment(stripped) {
                let text = stripped[1..].trim().to_string();
                self.comments.push(Comment {
                    line: line_no,
                    text: text.clone(),
                });
                if text.is_empty() {
                    self.prev_comments.clear();
                } else {
                    self.prev_comments.push(text);
                }
                continue;
            }
            let (content, mut ended) = trim_continuation(stripped, escape);
            if ended && content.trim().is_empty() {
                continue;
            }
            let mut logical = Logical::default();
            let column = line[..leading].chars().count() as u32 + 1;
            logical.push(content, line_no, column);
            let mut empty_continuation = false;
            while !ended {
                let Some(&raw) = self.src.lines.get(self.next) else {
                    break;
                };
                self.next += 1;
                let line_no = self.next as u32;
                let line = trim_newline(raw);
                if is_comment(line) {
                    let text = line.trim_start()[1..].trim().to_string();
                    self.comments.push(Comment {
                        line: line_no,
                        text,
                    });
                    logical.end_line = line_no;
                    continue;
                }
                if line.trim().is_empty() {
                    empty_continuation = true;
                    logical.end_line = line_no;
                    continue;
                }
                let (content, e) = trim_continuation(line, escape);
                ended = e;
                logical.push(content, line_no, 1);
            }
            if empty_continuation {
                self.warnings.push(Warning {
                    line: logical.end_line,
                    message: format!("Empty continuation line found in: {}", logical.text),
                });
            }
            let comments = std::mem::take(&mut self.prev_comments);
            return Ok(Some(RawInstruction { logical, comments }));
        }
        Ok(None)
    }

    /// Reads a heredoc body up to its terminator line. Returns the body (lines with their
    /// endings) and the span of the body including the terminator.
    pub fn heredoc_body(
        &mut self,
        name: &str,
        chomp: bool,
        opened_at: Span,
    ) -> Result<(String, Span), ParseError> {
        let first = self.next as u32 + 1;
        let mut content = String::new();
        while let Some(&raw) = self.src.lines.get(self.next) {
            self.next += 1;
            let mut candidate = trim_newline(raw);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                let last = self.next as u32;
                let end = Pos::new(
                    last,
                    raw.trim_end_matches(['\r', '\n']).chars().count() as u32 + 1,
                );
                let content = if chomp { chomp_tabs(&content) } else { content };
                return Ok((content, Span::new(Pos::new(first, 1), end)));
            }
            content.push_str(raw);
        }
        Err(self.src.error("unterminated heredoc", opened_at))
    }
}

/// Removes leading tabs from every line (`<<-`).
fn chomp_tabs(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", true));
    }

    #[test]
    fn logical_positions_map_back_to_physical_lines() {
        let src = Source::new("RUN a \\\n    b\n");
        let mut r = Reader::new(&src);
        let ins = r.next_instruction().unwrap().unwrap();
        assert_eq!(ins.logical.text, "RUN a     b");
        assert_eq!(ins.logical.pos(0), Pos::new(1, 1));
        assert_eq!(ins.logical.pos(4), Pos::new(1, 5));
        let b = ins.logical.text.find('b').unwrap();
        assert_eq!(ins.logical.pos(b), Pos::new(2, 5));
    }

    #[test]
    fn trailing_comment_and_empty_lines_belong_to_the_continuation() {
        let src = Source::new("RUN a \\\n# note\n\nRUN b\n");
        let mut r = Reader::new(&src);
        let ins = r.next_instruction().unwrap().unwrap();
        // BuildKit joins `RUN b` to the first instruction and ends it on line 4.
        assert_eq!(ins.logical.text, "RUN a RUN b");
        assert_eq!(ins.logical.end_line, 4);
        let src = Source::new("RUN a \\\n# note\n\n");
        let mut r = Reader::new(&src);
        let ins = r.next_instruction().unwrap().unwrap();
        assert_eq!(ins.logical.end_line, 3);
        assert_eq!(r.warnings[0].line, 3);
    }
}
