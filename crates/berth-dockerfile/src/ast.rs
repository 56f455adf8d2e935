//! The parsed Dockerfile: every instruction typed, with its flags, its raw (unexpanded) words and
//! their positions. Expansion happens later, against a scope ([`crate::scope`]), because the same
//! Dockerfile means different things for different build arguments and platforms.

use std::time::Duration;

use serde::Serialize;

use crate::error::Span;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Dockerfile {
    /// The parser directives at the top of the file.
    pub directives: Directives,
    /// The instructions in file order (global ARGs first, then each stage's FROM and body).
    pub instructions: Vec<Instruction>,
    /// Every comment line that is not a parser directive, including those inside continued
    /// instructions, in file order (linters read their pragmas here).
    pub comments: Vec<Comment>,
    /// Things BuildKit accepts but warns about (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// The parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Directives {
    /// The escape character: `\` unless `# escape=` chose `` ` ``.
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
    /// All directives in order, with their lines.
    pub all: Vec<Directive>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            escape: '\\',
            syntax: None,
            check: None,
            all: Vec::new(),
        }
    }
}

/// One parser directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
    pub line: u32,
}

/// A comment line (`# …`), without the `#` and surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub line: u32,
    pub text: String,
}

/// A parser warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub line: u32,
    pub message: String,
}

/// The 18 instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Keyword {
    /// Every keyword, for suggestions.
    pub const ALL: [Keyword; 18] = [
        Keyword::Add,
        Keyword::Arg,
        Keyword::Cmd,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Env,
        Keyword::Expose,
        Keyword::From,
        Keyword::Healthcheck,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Onbuild,
        Keyword::Run,
        Keyword::Shell,
        Keyword::Stopsignal,
        Keyword::User,
        Keyword::Volume,
        Keyword::Workdir,
    ];

    /// The keyword as the reference spells it (upper case).
    pub const fn as_str(self) -> &'static str {
        match self {
            Keyword::Add => "ADD",
            Keyword::Arg => "ARG",
            Keyword::Cmd => "CMD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Expose => "EXPOSE",
            Keyword::From => "FROM",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Run => "RUN",
            Keyword::Shell => "SHELL",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::User => "USER",
            Keyword::Volume => "VOLUME",
            Keyword::Workdir => "WORKDIR",
        }
    }

    /// Case-insensitive lookup.
    pub fn parse(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

impl std::fmt::Display for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Instruction {
    pub keyword: Keyword,
    /// From the keyword to the end of the instruction's last line (heredoc bodies included).
    pub span: Span,
    /// The logical line: continuation characters removed, continued lines joined, comments
    /// inside the continuation dropped (BuildKit's `Original`).
    pub original: String,
    /// The `--name[=value]` flags, in order.
    pub flags: Vec<Flag>,
    /// The comment lines directly above (a `#` line with no text resets them), as BuildKit keeps them.
    pub comments: Vec<String>,
    /// Heredoc bodies, in the order their `<<WORD` markers appear.
    pub heredocs: Vec<Heredoc>,
    pub command: Command,
}

impl Instruction {
    /// The first flag called `name`, if any.
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.name == name)
    }
}

/// A `--name[=value]` flag (quotes and escapes already removed, as BuildKit does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
    pub span: Span,
}

/// A word as written (quotes kept, variables not expanded) and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    pub text: String,
    pub span: Span,
}

/// A heredoc body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were removed from every body line.
    pub chomp: bool,
    /// The file descriptor in `3<<EOF`, when written.
    pub fd: Option<u32>,
    /// The body, each line with its line ending, leading tabs removed when `chomp`.
    pub content: String,
    /// The body's lines (the terminator line included).
    pub span: Span,
}

/// RUN, CMD and ENTRYPOINT (and HEALTHCHECK CMD) take a JSON array or shell text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CmdLine {
    /// `["exe", "arg"]`: run as is.
    Exec(Vec<String>),
    /// Shell text, run through the stage's SHELL.
    Shell(String),
}

impl CmdLine {
    pub fn is_exec(&self) -> bool {
        matches!(self, CmdLine::Exec(_))
    }
}

/// The typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    From(From),
    Run(Run),
    Cmd { cmd: CmdLine },
    Entrypoint { cmd: CmdLine },
    Shell { shell: Vec<String> },
    Copy(Copy),
    Add(Copy),
    Arg { args: Vec<ArgDecl> },
    Env { pairs: Vec<KeyValue> },
    Label { pairs: Vec<KeyValue> },
    Expose { ports: Vec<Word> },
    User { user: Word },
    Workdir { path: Word },
    Volume { paths: Vec<Word> },
    Stopsignal { signal: Word },
    Healthcheck(Healthcheck),
    Onbuild { trigger: Box<Instruction> },
    Maintainer { name: String },
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct From {
    /// The image or stage, unexpanded (`${BASE}`, `busybox:1.36`, `builder`, `scratch`).
    pub image: Word,
    /// The stage name, lower-cased as BuildKit keeps it.
    pub name: Option<Word>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// `RUN [--mount=…]… [--network=…] [--security=…] CMD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Run {
    pub cmd: CmdLine,
    pub mounts: Vec<Mount>,
    pub network: Option<Network>,
    pub security: Option<Security>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

/// `RUN --mount=` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// `RUN --mount=type=cache` sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `RUN --mount=…` (values unexpanded; the builder expands them in the stage's scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Mount {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub required: bool,
    /// tmpfs `size=` in bytes.
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// secret `env=`.
    pub env: Option<String>,
    /// The flag value as written.
    pub raw: String,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Copy {
    /// Sources from the context, a stage or an image (unexpanded); heredoc sources are in `inline`.
    pub sources: Vec<Word>,
    /// Heredoc sources (`COPY <<EOF /dest`): file name = the delimiter.
    pub inline: Vec<InlineFile>,
    pub dest: Word,
    /// True when written as a JSON array.
    pub json: bool,
    /// COPY `--from`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// COPY `--parents`.
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir` (None when not given).
    pub keep_git_dir: Option<bool>,
    /// ADD `--unpack` (None when not given).
    pub unpack: Option<bool>,
}

/// A heredoc used as a COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    pub name: String,
    pub content: String,
    pub expand: bool,
}

/// `ARG NAME[=default]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    /// The default as written (quotes kept, unexpanded).
    pub default: Option<String>,
    pub span: Span,
}

/// `KEY=VALUE` in ENV and LABEL (both unexpanded, quotes kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The legacy `ENV key value` form (no `=`).
    pub legacy: bool,
    pub span: Span,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Cmd {
        cmd: CmdLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}
