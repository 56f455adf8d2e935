//! Logical lines to typed instructions, with BuildKit's per-instruction argument rules
//! (`line_parsers.go`), flag rules (`bflag.go`) and checks (`instructions/parse.go`).

use std::time::Duration;

use crate::ast::{
    ArgDecl, CmdLine, Command, Copy, Dockerfile, Flag, From, Healthcheck, Heredoc, InlineFile,
    Instruction, KeyValue, Keyword, Mount, MountType, Network, Run, Security, Sharing, Word,
};
use crate::error::{ParseError, Pos, Span};
use crate::lines::{Logical, RawInstruction, Reader, Source};

/// Parses a Dockerfile. Errors carry the position and the offending line.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let src = Source::new(text);
    let mut reader = Reader::new(&src);
    let mut instructions = Vec::new();
    while let Some(raw) = reader.next_instruction()? {
        let escape = reader.directives.escape;
        let ins = parse_raw(&src, &mut reader, raw, escape)?;
        instructions.push(ins);
    }
    if instructions.is_empty() {
        return Err(src.error_at_line("file with no instructions", reader.line_no().max(1)));
    }
    Ok(Dockerfile {
        directives: reader.directives,
        instructions,
        comments: reader.comments,
        warnings: reader.warnings,
    })
}

/// A split instruction line: keyword, flags and where the arguments are.
struct Node {
    keyword: Keyword,
    kw_start: usize,
    kw_end: usize,
    flags: Vec<Flag>,
    args_start: usize,
    args_end: usize,
}

fn parse_raw(
    src: &Source<'_>,
    reader: &mut Reader<'_, '_>,
    raw: RawInstruction,
    escape: char,
) -> Result<Instruction, ParseError> {
    let logical = &raw.logical;
    let node = split(src, logical, 0, escape)?;
    // ONBUILD's trigger is parsed from the rest of the same line.
    let trigger = if node.keyword == Keyword::Onbuild {
        let args = &logical.text[node.args_start..node.args_end];
        if args.trim().is_empty() {
            return Err(src.error(
                "ONBUILD requires at least one argument",
                kw_span(logical, &node),
            ));
        }
        check_no_flags(src, logical, &node)?;
        let first = args
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match first.as_str() {
            "ONBUILD" => {
                return Err(src.error(
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    logical.span(node.args_start, node.args_end),
                ));
            }
            "MAINTAINER" | "FROM" => {
                return Err(src.error(
                    format!("{first} isn't allowed as an ONBUILD trigger"),
                    logical.span(node.args_start, node.args_end),
                ));
            }
            _ => {}
        }
        Some(split(src, logical, node.args_start, escape)?)
    } else {
        None
    };

    // Heredocs belong to RUN, COPY and ADD (also as ONBUILD triggers), in shell form.
    let body = trigger.as_ref().unwrap_or(&node);
    let mut heredocs = Vec::new();
    if matches!(body.keyword, Keyword::Run | Keyword::Copy | Keyword::Add)
        && logical.text.contains("<<")
        && parse_json(&logical.text[body.args_start..body.args_end]).is_none()
    {
        for (start, end) in raw_words(&logical.text, 0, logical.text.len(), escape) {
            if let Some(marker) = heredoc_marker(&logical.text[start..end]) {
                let opened = logical.span(start, end);
                let (content, span) = reader.heredoc_body(&marker.name, marker.chomp, opened)?;
                heredocs.push(Heredoc {
                    name: marker.name,
                    expand: marker.expand,
                    chomp: marker.chomp,
                    fd: marker.fd,
                    content,
                    span,
                });
            }
        }
    }
    let end_line = heredocs
        .last()
        .map(|h| h.span.end)
        .unwrap_or_else(|| logical_end(src, logical));
    let start = logical.pos(node.kw_start);

    let command = match trigger {
        Some(t) => {
            let sub = Instruction {
                keyword: t.keyword,
                span: Span::new(logical.pos(t.kw_start), end_line),
                original: logical.text[t.kw_start..].trim().to_string(),
                flags: t.flags.clone(),
                comments: Vec::new(),
                heredocs: heredocs.clone(),
                command: command(src, logical, &t, &heredocs, escape)?,
            };
            Command::Onbuild {
                trigger: Box::new(sub),
            }
        }
        None => command(src, logical, &node, &heredocs, escape)?,
    };
    Ok(Instruction {
        keyword: node.keyword,
        span: Span::new(start, end_line),
        original: logical.text.trim().to_string(),
        flags: node.flags,
        comments: raw.comments,
        heredocs,
        command,
    })
}

/// Where a logical line ends: after its last character, or at the end of the last comment or
/// empty line read inside its continuation (BuildKit's `EndLine` counts those).
fn logical_end(src: &Source<'_>, logical: &Logical) -> Pos {
    let end = logical.span(0, logical.text.len()).end;
    if logical.end_line > end.line {
        let line = logical.end_line;
        return Pos::new(line, src.line(line).chars().count() as u32 + 1);
    }
    end
}

fn kw_span(logical: &Logical, node: &Node) -> Span {
    logical.span(node.kw_start, node.kw_end)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Splits keyword, flags and arguments from `text[from..]`.
fn split(
    src: &Source<'_>,
    logical: &Logical,
    from: usize,
    escape: char,
) -> Result<Node, ParseError> {
    let text = &logical.text;
    let kw_start = skip_spaces(text, from);
    let kw_end = text[kw_start..]
        .find(char::is_whitespace)
        .map(|i| kw_start + i)
        .unwrap_or(text.len());
    let word = &text[kw_start..kw_end];
    let Some(keyword) = Keyword::parse(word) else {
        let mut message = format!("unknown instruction: {word}");
        if let Some(s) = suggest(word, Keyword::ALL.iter().map(|k| k.as_str()), false) {
            message.push_str(&format!(" (did you mean {s}?)"));
        }
        return Err(src.error(message, logical.span(kw_start, kw_end)));
    };
    let rest = skip_spaces(text, kw_end);
    let (flags, args_start) = extract_flags(logical, rest, escape);
    let args_end = args_start + text[args_start..].trim_end().len();
    Ok(Node {
        keyword,
        kw_start,
        kw_end,
        flags,
        args_start,
        args_end,
    })
}

fn skip_spaces(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c: char| !c.is_whitespace())
        .map(|i| from + i)
        .unwrap_or(text.len())
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes and escapes removed); `--` alone
/// ends them. Returns the flags and where the arguments start.
fn extract_flags(logical: &Logical, from: usize, escape: char) -> (Vec<Flag>, usize) {
    let text = &logical.text;
    let mut flags = Vec::new();
    let mut pos = from;
    loop {
        pos = skip_spaces(text, pos);
        if !text[pos..].starts_with("--") {
            return (flags, pos);
        }
        let start = pos;
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut chars = text[pos..].char_indices().peekable();
        let mut end = text.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = pos + i;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == escape => {
                    if let Some((_, n)) = chars.next() {
                        word.push(n);
                    }
                }
                _ => word.push(c),
            }
        }
        pos = end;
        if word == "--" {
            return (flags, skip_spaces(text, pos));
        }
        let body = &word[2..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        flags.push(Flag {
            name,
            value,
            span: logical.span(start, end),
        });
        if pos >= text.len() {
            return (flags, text.len());
        }
    }
}

/// The flag kinds of `bflag.go`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// Parsed flag values, by name.
#[derive(Default)]
struct Flags {
    values: Vec<(String, Vec<String>)>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.last().cloned())
    }
    fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// Validates the instruction's flags against what it accepts, as BuildKit's `BFlags.Parse` does.
fn check_flags(
    src: &Source<'_>,
    node: &Node,
    allowed: &[(&str, FlagKind)],
) -> Result<Flags, ParseError> {
    let mut out = Flags::default();
    for flag in &node.flags {
        let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == flag.name) else {
            let mut message = format!("unknown flag: --{}", flag.name);
            if let Some(s) = suggest(&flag.name, allowed.iter().map(|(n, _)| *n), true) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(src.error(message, flag.span));
        };
        let seen = out.values.iter().position(|(n, _)| n == &flag.name);
        if seen.is_some() && kind != FlagKind::Strings {
            return Err(src.error(
                format!("duplicate flag specified: --{}", flag.name),
                flag.span,
            ));
        }
        let value = match (kind, flag.value.as_deref()) {
            (FlagKind::Bool, Some("")) => {
                return Err(src.error(
                    format!("missing a value on flag: --{}", flag.name),
                    flag.span,
                ));
            }
            (FlagKind::Bool, None) => "true".to_string(),
            (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => {
                    return Err(src.error(
                        format!("expecting boolean value for flag --{}, not: {v}", flag.name),
                        flag.span,
                    ));
                }
            },
            (_, None) => {
                return Err(src.error(
                    format!("missing a value on flag: --{}", flag.name),
                    flag.span,
                ));
            }
            (_, Some(v)) => v.to_string(),
        };
        match seen {
            Some(i) => out.values[i].1.push(value),
            None => out.values.push((flag.name.clone(), vec![value])),
        }
    }
    Ok(out)
}

fn check_no_flags(src: &Source<'_>, _logical: &Logical, node: &Node) -> Result<(), ParseError> {
    check_flags(src, node, &[]).map(|_| ())
}

/// Words split on unquoted blanks, quotes and escapes kept (BuildKit's `parseWords`).
/// Returns byte ranges into `text`.
fn raw_words(text: &str, start: usize, end: usize, escape: char) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut word_start: Option<usize> = None;
    // An escape character that is the very last character is dropped, as BuildKit does.
    let mut dropped_escape: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut iter = text[start..end].char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let at = start + i;
        match quote {
            None if c.is_whitespace() => {
                if let Some(s) = word_start.take() {
                    words.push((s, at));
                }
            }
            _ => {
                if word_start.is_none() {
                    word_start = Some(at);
                }
                match quote {
                    None if c == '\'' || c == '"' => quote = Some(c),
                    Some(q) if c == q => quote = None,
                    Some('\'') => {}
                    _ if c == escape => {
                        // The escaped character is part of the word, whatever it is.
                        let escaped = iter.next();
                        if escaped.is_none() {
                            dropped_escape = Some(at);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(s) = word_start {
        let e = dropped_escape.unwrap_or(end);
        if e > s {
            words.push((s, e));
        }
    }
    words
}

/// Whitespace-separated words (`parseStringsWhitespaceDelimited`).
fn blank_words(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut word_start: Option<usize> = None;
    for (i, c) in text[start..end].char_indices() {
        if is_space(c) || c == '\n' {
            if let Some(s) = word_start.take() {
                words.push((s, start + i));
            }
        } else if word_start.is_none() {
            word_start = Some(start + i);
        }
    }
    if let Some(s) = word_start {
        words.push((s, end));
    }
    words
}

enum Json {
    Strings(Vec<String>),
    NotStrings,
}

/// `parseJSON`: `None` when the text is not a JSON array at all.
fn parse_json(args: &str) -> Option<Json> {
    let t = args.trim_start();
    if !t.starts_with('[') {
        return None;
    }
    let values: Vec<serde_json::Value> = serde_json::from_str(t).ok()?;
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => out.push(s),
            _ => return Some(Json::NotStrings),
        }
    }
    Some(Json::Strings(out))
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

fn word(logical: &Logical, (s, e): (usize, usize)) -> Word {
    Word {
        text: logical.text[s..e].to_string(),
        span: logical.span(s, e),
    }
}

/// `parseMaybeJSON`: exec form or shell text.
fn cmdline(
    src: &Source<'_>,
    logical: &Logical,
    node: &Node,
) -> Result<Option<CmdLine>, ParseError> {
    let args = &logical.text[node.args_start..node.args_end];
    if args.is_empty() {
        return Ok(None);
    }
    match parse_json(args) {
        Some(Json::Strings(v)) => Ok(Some(CmdLine::Exec(v))),
        Some(Json::NotStrings) => Err(src.error(NOT_STRINGS, args_span(logical, node))),
        None => Ok(Some(CmdLine::Shell(args.to_string()))),
    }
}

/// `parseMaybeJSONToList`: the JSON strings (all with the argument span) or blank-split words.
fn word_list(
    src: &Source<'_>,
    logical: &Logical,
    node: &Node,
) -> Result<(Vec<Word>, bool), ParseError> {
    let args = &logical.text[node.args_start..node.args_end];
    match parse_json(args) {
        Some(Json::Strings(v)) => {
            let span = args_span(logical, node);
            Ok((
                v.into_iter().map(|text| Word { text, span }).collect(),
                true,
            ))
        }
        Some(Json::NotStrings) => Err(src.error(NOT_STRINGS, args_span(logical, node))),
        None => Ok((
            blank_words(&logical.text, node.args_start, node.args_end)
                .into_iter()
                .map(|r| word(logical, r))
                .collect(),
            false,
        )),
    }
}

fn args_span(logical: &Logical, node: &Node) -> Span {
    if node.args_end > node.args_start {
        logical.span(node.args_start, node.args_end)
    } else {
        logical.span(node.kw_start, node.kw_end)
    }
}

/// The whole argument text as one word (`parseString`), or the error BuildKit gives.
fn one_arg(src: &Source<'_>, logical: &Logical, node: &Node) -> Result<Word, ParseError> {
    if node.args_end == node.args_start {
        return Err(src.error(
            format!("{} requires exactly one argument", node.keyword),
            kw_span(logical, node),
        ));
    }
    Ok(word(logical, (node.args_start, node.args_end)))
}

fn at_least_one(src: &Source<'_>, logical: &Logical, node: &Node) -> ParseError {
    src.error(
        format!("{} requires at least one argument", node.keyword),
        kw_span(logical, node),
    )
}

/// The typed command for a split line.
fn command(
    src: &Source<'_>,
    logical: &Logical,
    node: &Node,
    heredocs: &[Heredoc],
    escape: char,
) -> Result<Command, ParseError> {
    use FlagKind::{Bool, String as Str, Strings};
    let text = &logical.text;
    Ok(match node.keyword {
        Keyword::From => {
            let words = blank_words(text, node.args_start, node.args_end);
            let name = match words.as_slice() {
                [_] => None,
                [_, kw, name] if text[kw.0..kw.1].eq_ignore_ascii_case("as") => {
                    let raw = &text[name.0..name.1];
                    let lower = raw.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(src.error(
                            format!(
                                "invalid name for build stage: \"{raw}\", name can't start with a number or contain symbols"
                            ),
                            logical.span(name.0, name.1),
                        ));
                    }
                    Some(Word {
                        text: lower,
                        span: logical.span(name.0, name.1),
                    })
                }
                _ => {
                    return Err(src.error(
                        "FROM requires either one or three arguments",
                        args_span(logical, node),
                    ));
                }
            };
            let flags = check_flags(src, node, &[("platform", Str)])?;
            Command::From(From {
                image: word(logical, words[0]),
                name,
                platform: flags.string("platform"),
            })
        }
        Keyword::Run => {
            // A JSON array of non-strings is the parser's error, found before any flag's. A RUN
            // with nothing to run is accepted: BuildKit runs `sh -c ""`.
            let cmd = cmdline(src, logical, node)?.unwrap_or(CmdLine::Shell(String::new()));
            let flags = check_flags(
                src,
                node,
                &[
                    ("device", Strings),
                    ("mount", Strings),
                    ("network", Str),
                    ("security", Str),
                ],
            )?;
            let mut mounts = Vec::new();
            for raw in flags.strings("mount") {
                let m = parse_mount(&raw, None).map_err(|e| {
                    let span = node
                        .flags
                        .iter()
                        .find(|f| f.name == "mount" && f.value.as_deref() == Some(raw.as_str()))
                        .map(|f| f.span)
                        .unwrap_or_else(|| kw_span(logical, node));
                    src.error(e, span)
                })?;
                mounts.push(m);
            }
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(Network::Default),
                Some("none") => Some(Network::None),
                Some("host") => Some(Network::Host),
                Some(other) => {
                    return Err(src.error(
                        format!("invalid network mode \"{other}\""),
                        flag_span(logical, node, "network"),
                    ));
                }
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(Security::Sandbox),
                Some("insecure") => Some(Security::Insecure),
                Some(other) => {
                    return Err(src.error(
                        format!("security \"{other}\" is not valid"),
                        flag_span(logical, node, "security"),
                    ));
                }
            };
            if !flags.strings("device").is_empty() {
                // The stable frontend parses `--device` and refuses it when building.
                return Err(src.error(
                    "device feature is only supported in Dockerfile frontend 1.14.0-labs or later",
                    flag_span(logical, node, "device"),
                ));
            }
            Command::Run(Run {
                cmd,
                mounts,
                network,
                security,
            })
        }
        Keyword::Cmd | Keyword::Entrypoint => {
            // Without arguments this is the shell form of nothing (`sh -c ""`), not `[]`.
            let cmd = cmdline(src, logical, node)?.unwrap_or(CmdLine::Shell(String::new()));
            check_flags(src, node, &[])?;
            if node.keyword == Keyword::Cmd {
                Command::Cmd { cmd }
            } else {
                Command::Entrypoint { cmd }
            }
        }
        Keyword::Shell => {
            let cmd = cmdline(src, logical, node)?;
            check_flags(src, node, &[])?;
            match cmd {
                None => return Err(at_least_one(src, logical, node)),
                Some(CmdLine::Exec(v)) if v.is_empty() => {
                    return Err(at_least_one(src, logical, node));
                }
                Some(CmdLine::Exec(shell)) => Command::Shell { shell },
                Some(CmdLine::Shell(_)) => {
                    return Err(src.error(
                        "SHELL requires the arguments to be in JSON form",
                        args_span(logical, node),
                    ));
                }
            }
        }
        Keyword::Copy | Keyword::Add => {
            let copy = node.keyword == Keyword::Copy;
            // BuildKit's order: the parser's JSON check, the argument count, then the flags.
            let (mut words, json) = word_list(src, logical, node)?;
            if words.len() < 2 {
                return Err(src.error(
                    format!(
                        "{} requires at least two arguments, but only one was provided. Destination could not be determined",
                        node.keyword
                    ),
                    args_span(logical, node),
                ));
            }
            let flags = if copy {
                check_flags(
                    src,
                    node,
                    &[
                        ("chown", Str),
                        ("from", Str),
                        ("chmod", Str),
                        ("link", Bool),
                        ("exclude", Strings),
                        ("parents", Bool),
                    ],
                )?
            } else {
                check_flags(
                    src,
                    node,
                    &[
                        ("chown", Str),
                        ("chmod", Str),
                        ("link", Bool),
                        ("keep-git-dir", Bool),
                        ("checksum", Str),
                        ("unpack", Bool),
                        ("exclude", Strings),
                    ],
                )?
            };
            let dest = words.pop().unwrap_or_else(|| Word {
                text: String::new(),
                span: args_span(logical, node),
            });
            // BuildKit looks for heredoc markers in the JSON form's strings too: a `"<<EOF"`
            // source is an (empty) inline file there, since no body was read for it.
            if heredoc_marker(&dest.text).is_some() {
                return Err(src.error(
                    format!("{} cannot accept a heredoc as a destination", node.keyword),
                    dest.span,
                ));
            }
            let mut sources = Vec::new();
            let mut inline = Vec::new();
            for w in words {
                match heredoc_marker(&w.text) {
                    Some(m) => {
                        // By name, the last body of that name winning, as BuildKit's map does.
                        let content = heredocs
                            .iter()
                            .rev()
                            .find(|h| h.name == m.name)
                            .map(|h| h.content.clone())
                            .unwrap_or_default();
                        inline.push(InlineFile {
                            name: m.name,
                            content,
                            expand: m.expand,
                        });
                    }
                    None => sources.push(w),
                }
            }
            let from = flags.string("from");
            // BuildKit expands the value with no variables set and refuses it if that changes it;
            // a `$` at the very end stays literal.
            if let Some(f) = &from
                && f.find('$').is_some_and(|i| i + 1 != f.len())
            {
                return Err(src.error(
                    "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                    flag_span(logical, node, "from"),
                ));
            }
            let c = Copy {
                sources,
                inline,
                dest,
                json,
                from,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                exclude: flags.strings("exclude"),
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.bool("unpack"),
            };
            if copy {
                Command::Copy(c)
            } else {
                Command::Add(c)
            }
        }
        Keyword::Arg => {
            // BuildKit's `parseArg` never looks at flags: `ARG --x NAME` declares NAME.
            let words = raw_words(text, node.args_start, node.args_end, escape);
            if words.is_empty() {
                return Err(at_least_one(src, logical, node));
            }
            let mut decls = Vec::new();
            for (s, e) in words {
                let w = &text[s..e];
                let (name, default) = match w.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (w, None),
                };
                if name.is_empty() {
                    return Err(src.error("ARG names can not be blank", logical.span(s, e)));
                }
                decls.push(ArgDecl {
                    name: name.to_string(),
                    default,
                    span: logical.span(s, e),
                });
            }
            Command::Arg { args: decls }
        }
        Keyword::Env | Keyword::Label => {
            // The parser's errors (no `=`, one word) come before the flags', blank names after.
            let pairs = name_values(src, logical, node, escape)?;
            check_flags(src, node, &[])?;
            if let Some(blank) = pairs.iter().find(|p| p.key.is_empty()) {
                return Err(src.error(
                    format!("{} names can not be blank", node.keyword),
                    blank.span,
                ));
            }
            if node.keyword == Keyword::Env {
                Command::Env { pairs }
            } else {
                Command::Label { pairs }
            }
        }
        Keyword::Expose => {
            let ports: Vec<Word> = blank_words(text, node.args_start, node.args_end)
                .into_iter()
                .map(|r| word(logical, r))
                .collect();
            if ports.is_empty() {
                return Err(at_least_one(src, logical, node));
            }
            check_flags(src, node, &[])?;
            Command::Expose { ports }
        }
        Keyword::User => {
            let user = one_arg(src, logical, node)?;
            check_flags(src, node, &[])?;
            Command::User { user }
        }
        Keyword::Workdir => {
            let path = one_arg(src, logical, node)?;
            check_flags(src, node, &[])?;
            Command::Workdir { path }
        }
        Keyword::Stopsignal => Command::Stopsignal {
            signal: one_arg(src, logical, node)?,
        },
        Keyword::Maintainer => {
            let name = one_arg(src, logical, node)?.text;
            check_flags(src, node, &[])?;
            Command::Maintainer { name }
        }
        Keyword::Volume => {
            let (paths, _) = word_list(src, logical, node)?;
            if paths.is_empty() {
                return Err(at_least_one(src, logical, node));
            }
            check_flags(src, node, &[])?;
            if let Some(empty) = paths.iter().find(|p| p.text.trim().is_empty()) {
                return Err(src.error("VOLUME specified can not be an empty string", empty.span));
            }
            Command::Volume { paths }
        }
        Keyword::Healthcheck => healthcheck(src, logical, node)?,
        Keyword::Onbuild => {
            // Handled by the caller; reaching here means a nested trigger.
            return Err(src.error(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                kw_span(logical, node),
            ));
        }
    })
}

fn flag_span(logical: &Logical, node: &Node, name: &str) -> Span {
    node.flags
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.span)
        .unwrap_or_else(|| kw_span(logical, node))
}

/// BuildKit's `validStageName`: `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// ENV and LABEL: `k=v …`, or the legacy `KEY value` form (`parseNameVal`).
fn name_values(
    src: &Source<'_>,
    logical: &Logical,
    node: &Node,
    escape: char,
) -> Result<Vec<KeyValue>, ParseError> {
    let text = &logical.text;
    let kw = node.keyword.as_str();
    let words = raw_words(text, node.args_start, node.args_end, escape);
    let Some(&first) = words.first() else {
        return Err(at_least_one(src, logical, node));
    };
    if !text[first.0..first.1].contains('=') {
        let key_end = text[node.args_start..node.args_end]
            .find(is_space)
            .map(|i| node.args_start + i);
        let Some(key_end) = key_end else {
            return Err(src.error(
                format!("{kw} must have two arguments"),
                args_span(logical, node),
            ));
        };
        let value_start = skip_spaces(text, key_end);
        return Ok(vec![KeyValue {
            key: text[node.args_start..key_end].to_string(),
            value: text[value_start..node.args_end].to_string(),
            legacy: true,
            span: args_span(logical, node),
        }]);
    }
    let mut pairs = Vec::new();
    for (s, e) in words {
        let w = &text[s..e];
        let Some((k, v)) = w.split_once('=') else {
            return Err(src.error(
                format!("Syntax error - can't find = in \"{w}\". Must be of the form: name=value"),
                logical.span(s, e),
            ));
        };
        pairs.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
            legacy: false,
            span: logical.span(s, e),
        });
    }
    Ok(pairs)
}

fn healthcheck(src: &Source<'_>, logical: &Logical, node: &Node) -> Result<Command, ParseError> {
    use FlagKind::String as Str;
    let text = &logical.text;
    let args = &text[node.args_start..node.args_end];
    let typ_end = args.find(char::is_whitespace).unwrap_or(args.len());
    if typ_end == 0 {
        return Err(at_least_one(src, logical, node));
    }
    let typ = args[..typ_end].to_uppercase();
    let rest_start = skip_spaces(text, node.args_start + typ_end);
    let sub = Node {
        keyword: Keyword::Healthcheck,
        kw_start: node.kw_start,
        kw_end: node.kw_end,
        flags: Vec::new(),
        args_start: rest_start,
        args_end: node.args_end.max(rest_start),
    };
    // The parser reads what follows the type as RUN's arguments (a JSON error comes first).
    let cmd = cmdline(src, logical, &sub)?;
    if typ == "NONE" {
        // BuildKit does not look at flags for NONE.
        if rest_start < node.args_end {
            return Err(src.error(
                "HEALTHCHECK NONE takes no arguments",
                logical.span(rest_start, node.args_end),
            ));
        }
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    let flags = check_flags(
        src,
        node,
        &[
            ("interval", Str),
            ("timeout", Str),
            ("start-period", Str),
            ("start-interval", Str),
            ("retries", Str),
        ],
    )?;
    if typ != "CMD" {
        return Err(src.error(
            format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"),
            logical.span(node.args_start, node.args_start + typ_end),
        ));
    }
    let cmd = match cmd {
        Some(CmdLine::Exec(v)) if v.is_empty() => None,
        other => other,
    };
    let Some(cmd) = cmd else {
        return Err(src.error(
            "Missing command after HEALTHCHECK CMD",
            args_span(logical, node),
        ));
    };
    let interval = |name: &str| -> Result<Option<Duration>, ParseError> {
        let Some(v) = flags.string(name) else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(None);
        }
        let (negative, d) =
            go_duration(&v).map_err(|e| src.error(e, flag_span(logical, node, name)))?;
        if d.is_zero() {
            return Ok(None);
        }
        if negative || d < Duration::from_millis(1) {
            return Err(src.error(
                format!("Interval \"{name}\" cannot be less than 1ms"),
                flag_span(logical, node, name),
            ));
        }
        Ok(Some(d))
    };
    // In BuildKit's order: the four durations, then the retries.
    let interval_d = interval("interval")?;
    let timeout = interval("timeout")?;
    let start_period = interval("start-period")?;
    let start_interval = interval("start-interval")?;
    let retries = match flags.string("retries") {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => {
            let err = |why: &str| {
                src.error(
                    format!("strconv.ParseInt: parsing \"{v}\": {why}"),
                    flag_span(logical, node, "retries"),
                )
            };
            // `strconv.ParseInt(v, 10, 32)`: an optional sign and decimal digits, in i32's range.
            let unsigned = v.strip_prefix(['+', '-']).unwrap_or(&v);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("invalid syntax"));
            }
            let n = v.parse::<i32>().map_err(|_| err("value out of range"))?;
            if n < 0 {
                return Err(src.error(
                    format!("--retries cannot be negative ({n})"),
                    flag_span(logical, node, "retries"),
                ));
            }
            Some(n.unsigned_abs())
        }
    };
    Ok(Command::Healthcheck(Healthcheck::Cmd {
        cmd,
        interval: interval_d,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}

/// Go's `time.ParseDuration`: whether the duration is negative, and its magnitude.
pub(crate) fn go_duration(s: &str) -> Result<(bool, Duration), String> {
    const MAX: u128 = 1 << 63;
    let bad = || format!("time: invalid duration \"{s}\"");
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let digits = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let mut total: u128 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(bad());
        }
        // [0-9]*(\.[0-9]*)?
        let int_len = digits(rest);
        let int: u128 = if int_len == 0 {
            0
        } else {
            rest[..int_len].parse().map_err(|_| bad())?
        };
        rest = &rest[int_len..];
        let (mut frac, mut scale, mut frac_len) = (0u64, 1f64, 0);
        if let Some(after) = rest.strip_prefix('.') {
            frac_len = digits(after);
            // Go's `leadingFraction`: digits past what fits are read and ignored.
            for c in after[..frac_len].bytes() {
                if frac > (i64::MAX as u64 - 9) / 10 {
                    break;
                }
                frac = frac * 10 + u64::from(c - b'0');
                scale *= 10.0;
            }
            rest = &after[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(bad());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_name = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit: u64 = match unit_name {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit_name}\" in duration \"{s}\""
                ));
            }
        };
        let mut v = int.checked_mul(u128::from(unit)).ok_or_else(bad)?;
        if v > MAX {
            return Err(bad());
        }
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u128;
        }
        total += v;
        if total > MAX {
            return Err(bad());
        }
    }
    if !negative && total > MAX - 1 {
        return Err(bad());
    }
    let nanos = u64::try_from(total).map_err(|_| bad())?;
    Ok((negative, Duration::from_nanos(nanos)))
}

/// A `<<WORD` heredoc marker (BuildKit's `^(\d*)<<(-?)\s*([^<]*)$`).
pub(crate) struct Marker {
    pub name: String,
    pub chomp: bool,
    pub expand: bool,
    pub fd: Option<u32>,
}

pub(crate) fn heredoc_marker(word: &str) -> Option<Marker> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let fd = if digits > 0 {
        word[..digits].parse().ok()
    } else {
        None
    };
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote(rest)?;
    if name.is_empty() {
        return None;
    }
    Some(Marker {
        name,
        chomp,
        expand: !quoted,
        fd,
    })
}

/// Removes shell quoting from one word; `None` when it is not exactly one word.
fn unquote(s: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => return None,
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                quoted = true;
            }
            None if c == '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => match chars.next() {
                Some(n @ ('"' | '\\' | '$')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => {}
            },
            _ => out.push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    Some((out, quoted))
}

/// Expands one `--mount` value in the stage's scope.
pub type MountExpander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Parses a `RUN --mount=` value (CSV fields, `key=value` or bare `ro`/`rw`/`required`).
///
/// `expand` expands each value in the stage's scope (the builder's pass). Without it — the
/// parse-time pass — values containing `$` are kept as written and not validated yet, except
/// `from`, which cannot use variables at all.
pub fn parse_mount(spec: &str, expand: Option<MountExpander<'_>>) -> Result<Mount, String> {
    let fields = csv_fields(spec)?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        size: None,
        mode: None,
        uid: None,
        gid: None,
        env: None,
        raw: spec.to_string(),
    };
    let mut ro_auto = true;
    // Go's `strconv.ParseBool`.
    let parse_bool = |key: &str, v: &str| -> Result<bool, String> {
        match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(format!("invalid value for {key}: {v}")),
        }
    };
    // Go's `strconv.ParseUint(v, radix, 32)`: digits only (Rust would also take a `+`).
    let parse_u32 = |key: &str, v: &str, radix: u32| -> Result<u32, String> {
        if v.starts_with('+') {
            return Err(format!("invalid value {v} for {key}"));
        }
        u32::from_str_radix(v, radix).map_err(|_| format!("invalid value {v} for {key}"))
    };
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => {
                let key = field.to_ascii_lowercase();
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true;
                    }
                    "required" => {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            mount_type_name(m.kind)
                        ));
                    }
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
                continue;
            }
        };
        let value = match expand {
            Some(f) => f(&value)?,
            None => {
                if key == "from" {
                    if let Some(i) = value.find('$')
                        && i != value.len() - 1
                    {
                        return Err(
                            "'from' doesn't support variable expansion, define alias stage instead"
                                .to_string(),
                        );
                    }
                } else if value.contains('$')
                    && !matches!(
                        key.as_str(),
                        "source" | "src" | "target" | "dst" | "destination" | "id" | "env"
                    )
                {
                    continue;
                }
                value
            }
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(with_suggestion(
                            format!("unsupported mount type \"{value}\""),
                            &value,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                        ));
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        mount_type_name(m.kind)
                    ));
                }
                m.required = parse_bool(&key, &value)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key 'size' for mount type '{}'",
                        mount_type_name(m.kind)
                    ));
                }
                m.size =
                    Some(ram_in_bytes(&value).ok_or(format!("invalid value for size: {value}"))?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(with_suggestion(
                            format!("unsupported sharing value \"{value}\""),
                            &value,
                            &["shared", "private", "locked"],
                        ));
                    }
                })
            }
            "mode" => m.mode = Some(parse_u32("mode", &value, 8)?),
            "uid" => m.uid = Some(parse_u32("uid", &value, 10)?),
            "gid" => m.gid = Some(parse_u32("gid", &value, 10)?),
            "env" => m.env = Some(value),
            _ => {
                return Err(with_suggestion(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    &[
                        "type",
                        "from",
                        "source",
                        "target",
                        "readonly",
                        "id",
                        "sharing",
                        "required",
                        "size",
                        "mode",
                        "uid",
                        "gid",
                        "src",
                        "dst",
                        "destination",
                        "ro",
                        "rw",
                        "readwrite",
                        "env",
                    ],
                ));
            }
        }
    }
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{name} not allowed for \"{}\" type mounts",
                    mount_type_name(m.kind)
                ));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".to_string());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".to_string());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err("invalid secret mount. one of source, target required".to_string());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".to_string());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            mount_type_name(m.kind)
        ));
    }
    Ok(m)
}

fn mount_type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// CSV fields as `encoding/csv` reads one record: `,`-separated, `"…"` quoting with `""`.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                in_quotes = true;
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            }
            '"' => {
                return Err(format!(
                    "failed to parse csv mounts: bare \" in non-quoted field: {s}"
                ));
            }
            _ => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if in_quotes {
        return Err(format!(
            "failed to parse csv mounts: extraneous or missing \" in quoted field: {s}"
        ));
    }
    fields.push(cur);
    Ok(fields)
}

/// docker/go-units `RAMInBytes`: `512`, `64k`, `1.5g`, `10MiB`, binary multiples (what tmpfs
/// `size=` and docker's size flags such as `--keep-storage` take).
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    // go-units v0.5 `parseSize`: the number runs to the last digit, dot or space; one space
    // before the suffix is dropped; the suffix is `b`, or k/m/g/t/p optionally followed by `b`
    // or `ib`, in any case.
    let sep = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (num, sfx) = if s.as_bytes().get(sep) == Some(&b' ') {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let value: f64 = num.parse().ok()?;
    if value < 0.0 || value.is_nan() {
        return None;
    }
    let sfx = sfx.to_ascii_lowercase();
    let mult: f64 = match sfx.as_bytes() {
        [] | [b'b'] => 1.0,
        [unit] | [unit, b'b'] | [unit, b'i', b'b'] => match unit {
            b'k' => 1024.0,
            b'm' => 1024f64.powi(2),
            b'g' => 1024f64.powi(3),
            b't' => 1024f64.powi(4),
            b'p' => 1024f64.powi(5),
            _ => return None,
        },
        _ => return None,
    };
    let bytes = value * mult;
    (bytes.is_finite() && bytes < 9.2e18).then_some(bytes as u64)
}

/// BuildKit's `suggest.Search`, for "did you mean": the first candidate closest to `word` within
/// an edit distance of 2, none when `word` is itself a candidate. Without `case_sensitive` the
/// comparison ignores case and the suggestion takes the case of `word` (all lower or all upper).
fn suggest<'c>(
    word: &str,
    candidates: impl Iterator<Item = &'c str>,
    case_sensitive: bool,
) -> Option<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let w = fold(word);
    let mut best: Option<(usize, String)> = None;
    for c in candidates {
        let c = fold(c);
        if c == w {
            return None;
        }
        let d = levenshtein(&w, &c);
        if d < best.as_ref().map_or(3, |(b, _)| *b) {
            best = Some((d, c));
        }
    }
    let (_, c) = best?;
    // BuildKit's `matchCase`: an all-upper-case word gets an upper-case suggestion.
    let upper = !case_sensitive && word != word.to_lowercase() && word == word.to_uppercase();
    Some(if upper { c.to_uppercase() } else { c })
}

/// Appends BuildKit's " (did you mean X?)" when a candidate is close enough (case-sensitive).
fn with_suggestion(message: String, word: &str, candidates: &[&str]) -> String {
    match suggest(word, candidates.iter().copied(), true) {
        Some(s) => format!("{message} (did you mean {s}?)"),
        None => message,
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn only(text: &str) -> Instruction {
        parse(text).unwrap().instructions.pop().unwrap()
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().message
    }

    #[test]
    fn run_cmd_entrypoint_without_arguments_are_an_empty_shell_form() {
        for (text, keyword) in [
            ("FROM a\nRUN\n", Keyword::Run),
            ("FROM a\nRUN --network=none\n", Keyword::Run),
            ("FROM a\nCMD\n", Keyword::Cmd),
            ("FROM a\nENTRYPOINT\n", Keyword::Entrypoint),
        ] {
            let ins = only(text);
            assert_eq!(ins.keyword, keyword);
            let cmd = match ins.command {
                Command::Run(r) => r.cmd,
                Command::Cmd { cmd } | Command::Entrypoint { cmd } => cmd,
                other => panic!("{other:?}"),
            };
            assert_eq!(cmd, CmdLine::Shell(String::new()), "{text}");
        }
        let Command::Cmd { cmd } = only("FROM a\nCMD []\n").command else {
            panic!()
        };
        assert_eq!(cmd, CmdLine::Exec(Vec::new()));
    }

    #[test]
    fn network_and_security_errors_are_worded_as_buildkit_words_them() {
        assert_eq!(
            error("FROM a\nRUN --network=bridge x\n"),
            "invalid network mode \"bridge\""
        );
        assert_eq!(
            error("FROM a\nRUN --security=root x\n"),
            "security \"root\" is not valid"
        );
        assert_eq!(
            error("FROM a\nRUN --device=gpu x\n"),
            "device feature is only supported in Dockerfile frontend 1.14.0-labs or later"
        );
        assert_eq!(
            error("FROM a\nRUN --devic=gpu x\n"),
            "unknown flag: --devic (did you mean device?)"
        );
    }

    #[test]
    fn healthcheck_unknown_type_is_upper_cased() {
        assert_eq!(
            error("FROM a\nHEALTHCHECK connect tcp 7000\n"),
            "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"
        );
    }

    #[test]
    fn healthcheck_durations_follow_go() {
        assert_eq!(
            error("FROM a\nHEALTHCHECK --interval=-5s CMD true\n"),
            "Interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --timeout=+-5s CMD true\n"),
            "time: invalid duration \"+-5s\""
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --timeout=1.2.3s CMD true\n"),
            "time: missing unit in duration \"1.2.3s\""
        );
        // Durations are reported before retries.
        assert_eq!(
            error("FROM a\nHEALTHCHECK --retries=x --interval=1 CMD true\n"),
            "time: missing unit in duration \"1\""
        );
        assert_eq!(go_duration("-0"), Ok((true, Duration::ZERO)));
        assert_eq!(
            go_duration("1.1s"),
            Ok((false, Duration::from_millis(1100)))
        );
        assert_eq!(go_duration(".5m"), Ok((false, Duration::from_secs(30))));
        assert_eq!(go_duration("5.s"), Ok((false, Duration::from_secs(5))));
        assert_eq!(
            go_duration("1h2m3s4ms5us6ns"),
            Ok((false, Duration::new(3723, 4_005_006)))
        );
        assert!(go_duration(".").is_err());
        assert!(go_duration("3000000h").is_err());
        let Command::Healthcheck(Healthcheck::Cmd { interval, .. }) =
            only("FROM a\nHEALTHCHECK --interval=-0s CMD true\n").command
        else {
            panic!()
        };
        assert_eq!(interval, None);
    }

    #[test]
    fn healthcheck_retries_are_an_i32() {
        assert_eq!(
            error("FROM a\nHEALTHCHECK --retries=2147483648 CMD true\n"),
            "strconv.ParseInt: parsing \"2147483648\": value out of range"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --retries=-99999999999 CMD true\n"),
            "strconv.ParseInt: parsing \"-99999999999\": value out of range"
        );
        assert_eq!(
            error("FROM a\nHEALTHCHECK --retries=1x CMD true\n"),
            "strconv.ParseInt: parsing \"1x\": invalid syntax"
        );
        let Command::Healthcheck(Healthcheck::Cmd { retries, .. }) =
            only("FROM a\nHEALTHCHECK --retries=+2147483647 CMD true\n").command
        else {
            panic!()
        };
        assert_eq!(retries, Some(i32::MAX as u32));
    }

    #[test]
    fn suggestions_follow_buildkit() {
        assert_eq!(
            error("form a\n"),
            "unknown instruction: form (did you mean from?)"
        );
        assert_eq!(
            error("FORM a\n"),
            "unknown instruction: FORM (did you mean FROM?)"
        );
        assert_eq!(
            error("Form a\n"),
            "unknown instruction: Form (did you mean from?)"
        );
        // Short words get suggestions too.
        assert_eq!(
            error("RU a\n"),
            "unknown instruction: RU (did you mean RUN?)"
        );
        // Flags compare case-sensitively.
        assert_eq!(error("FROM a\nCOPY --LINK a b\n"), "unknown flag: --LINK");
        assert_eq!(
            error("FROM a\nRUN --mount=type=bnd,target=/x x\n"),
            "unsupported mount type \"bnd\" (did you mean bind?)"
        );
        assert_eq!(
            error("FROM a\nRUN --mount=type=cache,target=/x,sharing=lock x\n"),
            "unsupported sharing value \"lock\" (did you mean locked?)"
        );
        assert_eq!(
            error("FROM a\nRUN --mount=type=cache,tagret=/x x\n"),
            "unexpected key 'tagret' in 'tagret=/x' (did you mean target?)"
        );
    }

    #[test]
    fn heredoc_markers_count_in_json_copy_too() {
        assert_eq!(
            error("FROM a\nCOPY [\"a\", \"<<EOF\"]\n"),
            "COPY cannot accept a heredoc as a destination"
        );
        let Command::Copy(c) = only("FROM a\nCOPY [\"<<EOF\", \"/d\"]\n").command else {
            panic!()
        };
        assert!(c.sources.is_empty());
        assert_eq!(c.inline.len(), 1);
        assert_eq!(c.inline[0].name, "EOF");
        assert_eq!(c.inline[0].content, "");
    }

    #[test]
    fn heredoc_sources_take_the_last_body_of_their_name() {
        let Command::Copy(c) = only("FROM a\nCOPY <<A <<A /d/\none\nA\ntwo\nA\n").command else {
            panic!()
        };
        assert_eq!(c.inline.len(), 2);
        assert!(c.inline.iter().all(|f| f.content == "two\n"));
    }

    #[test]
    fn instruction_span_covers_trailing_comment_lines() {
        let ins = only("FROM a\nRUN x \\\n# note\n");
        assert_eq!(ins.span.start, Pos::new(2, 1));
        assert_eq!(ins.span.end, Pos::new(3, 7));
    }

    #[test]
    fn copy_from_with_a_final_dollar_is_literal() {
        let Command::Copy(c) = only("FROM a\nCOPY --from=a$ x y\n").command else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("a$"));
        assert!(error("FROM a\nCOPY --from=$a x y\n").starts_with("variable expansion"));
    }

    #[test]
    fn only_a_lone_trailing_escape_is_dropped_from_words() {
        let text = "a\\\\\\";
        assert_eq!(raw_words(text, 0, text.len(), '\\'), vec![(0, 3)]);
        let text = "a\\\\";
        assert_eq!(raw_words(text, 0, text.len(), '\\'), vec![(0, 3)]);
        let text = "a \\";
        assert_eq!(raw_words(text, 0, text.len(), '\\'), vec![(0, 1)]);
        let text = "'a\\";
        assert_eq!(raw_words(text, 0, text.len(), '\\'), vec![(0, 3)]);
        let text = "\"a\\";
        assert_eq!(raw_words(text, 0, text.len(), '\\'), vec![(0, 2)]);
    }

    #[test]
    fn mount_booleans_and_numbers_follow_go() {
        assert!(
            parse_mount("type=bind,target=/x,ro=True", None)
                .unwrap()
                .readonly
        );
        assert_eq!(
            parse_mount("type=bind,target=/x,ro=tRUE", None).unwrap_err(),
            "invalid value for ro: tRUE"
        );
        assert_eq!(
            parse_mount("type=cache,target=/x,uid=+1", None).unwrap_err(),
            "invalid value +1 for uid"
        );
        assert_eq!(
            parse_mount("type=cache,target=/x,mode=+7", None).unwrap_err(),
            "invalid value +7 for mode"
        );
    }

    #[test]
    fn tmpfs_sizes_follow_go_units() {
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("64 MiB"), Some(64 << 20));
        assert_eq!(ram_in_bytes("10mb"), Some(10 << 20));
        assert_eq!(ram_in_bytes("3b"), Some(3));
        assert_eq!(ram_in_bytes("1e3"), Some(1000));
        assert_eq!(ram_in_bytes("10mi"), None);
        assert_eq!(ram_in_bytes("10bb"), None);
        assert_eq!(ram_in_bytes("10kibb"), None);
        assert_eq!(ram_in_bytes(" 10"), None);
        assert_eq!(ram_in_bytes("-1"), None);
        assert_eq!(ram_in_bytes("m"), None);
    }

    #[test]
    fn arg_and_stopsignal_ignore_flags() {
        let ins = only("FROM a\nARG --x=1 N=v\n");
        let Command::Arg { args } = ins.command else {
            panic!()
        };
        assert_eq!(args[0].name, "N");
        assert!(parse("FROM a\nSTOPSIGNAL --x 9\n").is_ok());
        assert!(parse("FROM a\nENV --x a=b\n").is_err());
    }

    #[test]
    fn errors_come_in_buildkit_order() {
        // The argument count before the flags.
        assert_eq!(
            error("FROM a\nCOPY --nope x\n"),
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(
            error("FROM --nope a AS 1x\n"),
            "invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        assert_eq!(
            error("FROM a\nUSER --nope\n"),
            "USER requires exactly one argument"
        );
        // The parser's errors before the flags'.
        assert_eq!(
            error("FROM a\nRUN --nope [1]\n"),
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
        assert_eq!(
            error("FROM a\nENV --nope a\n"),
            "ENV must have two arguments"
        );
        // Blank names after the flags.
        assert_eq!(error("FROM a\nENV --nope =a\n"), "unknown flag: --nope");
        // ONBUILD's own flags before its trigger.
        assert_eq!(
            error("FROM a\nONBUILD --nope FROM b\n"),
            "unknown flag: --nope"
        );
    }
}
