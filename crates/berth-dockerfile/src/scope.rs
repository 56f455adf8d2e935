//! Which variables an instruction sees, as BuildKit decides it (`dockerfile2llb/convert.go`):
//!
//! - The **global scope** holds the automatic platform ARGs (`TARGETPLATFORM`, `BUILDARCH`, …)
//!   and the ARGs declared before the first FROM (their values: the `--build-arg` if given, else
//!   the default expanded against the global scope so far). FROM lines and `--platform` expand
//!   against it.
//! - A **stage scope** starts from the base image's ENV. `ARG NAME` brings a value into the stage:
//!   the `--build-arg`, else its default expanded in the stage, else — when it has no default —
//!   the global value of that name (a re-declared global ARG, or an automatic platform ARG).
//!   `ENV` sets a variable for the rest of the stage; a later ARG or ENV of the same name
//!   replaces it. All words of one instruction expand against the scope as it was *before* that
//!   instruction (`ENV a=1 b=$a` gives `b` the previous `a`).

use std::collections::BTreeMap;

use crate::ast::{ArgDecl, Command, Instruction, KeyValue};
use crate::expand::{Env, ExpandError, Lexer};

/// Ordered variables; setting a name again replaces its value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `KEY=value` strings, in order (the form an image config's `Env` uses).
    pub fn to_env_strings(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl Env for Vars {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self, name)
    }
}

impl FromIterator<(String, String)> for Vars {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        let mut v = Vars::new();
        for (k, val) in iter {
            v.set(k, val);
        }
        v
    }
}

/// A platform as the platform ARGs spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformParts {
    pub os: String,
    pub arch: String,
    pub variant: String,
}

impl PlatformParts {
    /// `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_string();
        let arch = parts.next().filter(|p| !p.is_empty())?.to_string();
        let variant = parts.next().unwrap_or("").to_string();
        if parts.next().is_some() {
            return None;
        }
        Some(Self { os, arch, variant })
    }
}

impl std::fmt::Display for PlatformParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// The automatic platform ARGs (`TARGETPLATFORM` … `BUILDVARIANT`).
pub fn platform_args(target: &PlatformParts, build: &PlatformParts) -> Vars {
    let mut v = Vars::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        v.set(format!("{prefix}PLATFORM"), p.to_string());
        v.set(format!("{prefix}OS"), p.os.clone());
        v.set(format!("{prefix}ARCH"), p.arch.clone());
        v.set(format!("{prefix}VARIANT"), p.variant.clone());
    }
    v
}

/// The proxy ARGs every build knows without a declaration (kept out of history and cache keys).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An expansion failed in an instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("line {line}: {source}")]
pub struct ScopeError {
    pub line: u32,
    #[source]
    pub source: ExpandError,
}

/// The global scope: automatic ARGs plus the ARGs before the first FROM.
#[derive(Debug, Clone)]
pub struct GlobalScope {
    vars: Vars,
    build_args: BTreeMap<String, String>,
    lexer: Lexer,
    /// Names declared before the first FROM (with or without a value).
    declared: Vec<String>,
}

impl GlobalScope {
    /// Evaluates the meta ARGs (the ARG instructions before the first FROM) in order.
    pub fn new(
        instructions: &[Instruction],
        escape: char,
        build_args: &BTreeMap<String, String>,
        automatic: &Vars,
    ) -> Result<Self, ScopeError> {
        let mut scope = Self {
            vars: automatic.clone(),
            build_args: build_args.clone(),
            lexer: Lexer::new(escape),
            declared: Vec::new(),
        };
        for ins in instructions {
            match &ins.command {
                Command::Arg { args } => {
                    for decl in args {
                        let value = match build_args.get(&decl.name) {
                            Some(v) => Some(v.clone()),
                            None => match &decl.default {
                                Some(d) => Some(scope.expand_at(d, ins.span.start.line)?),
                                None => None,
                            },
                        };
                        if let Some(v) = value {
                            scope.vars.set(decl.name.clone(), v);
                        }
                        scope.declared.push(decl.name.clone());
                    }
                }
                Command::From(_) => break,
                _ => {}
            }
        }
        Ok(scope)
    }

    /// The value of a global variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name)
    }

    /// Whether `name` was declared by an ARG before the first FROM.
    pub fn is_declared(&self, name: &str) -> bool {
        self.declared.iter().any(|d| d == name)
    }

    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    pub fn lexer(&self) -> Lexer {
        self.lexer
    }

    pub fn build_args(&self) -> &BTreeMap<String, String> {
        &self.build_args
    }

    /// Expands a word of a FROM line (image, `--platform`).
    pub fn expand(&self, word: &str) -> Result<String, ExpandError> {
        self.lexer.process_word(word, &self.vars)
    }

    fn expand_at(&self, word: &str, line: u32) -> Result<String, ScopeError> {
        self.expand(word)
            .map_err(|source| ScopeError { line, source })
    }
}

/// The variables inside one stage.
#[derive(Debug, Clone)]
pub struct StageScope<'g> {
    global: &'g GlobalScope,
    /// What expansions and RUN see: the base image's ENV, then ARGs and ENVs in order.
    vars: Vars,
    /// What goes into the image config: the base image's ENV and the stage's ENVs.
    env: Vars,
    /// ARGs declared in this stage, with their values (None when declared without one).
    args: Vec<(String, Option<String>)>,
}

impl<'g> StageScope<'g> {
    /// A stage on top of a base image whose config has `base_env`.
    pub fn new(global: &'g GlobalScope, base_env: Vars) -> Self {
        Self {
            global,
            vars: base_env.clone(),
            env: base_env,
            args: Vec::new(),
        }
    }

    /// Applies an instruction's effect on the scope (ARG and ENV; others change nothing).
    pub fn apply(&mut self, ins: &Instruction) -> Result<(), ScopeError> {
        let line = ins.span.start.line;
        match &ins.command {
            Command::Arg { args } => {
                for decl in args {
                    self.declare(decl)
                        .map_err(|source| ScopeError { line, source })?;
                }
            }
            Command::Env { pairs } => {
                let expanded = self
                    .expand_pairs(pairs)
                    .map_err(|source| ScopeError { line, source })?;
                for (k, v) in expanded {
                    self.vars.set(k.clone(), v.clone());
                    self.env.set(k, v);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `ARG NAME[=default]` inside the stage.
    pub fn declare(&mut self, decl: &ArgDecl) -> Result<(), ExpandError> {
        let value = match self.global.build_args.get(&decl.name) {
            Some(v) => Some(v.clone()),
            None => match &decl.default {
                Some(d) => Some(self.expand(d)?),
                None => self.global.get(&decl.name).map(str::to_string),
            },
        };
        if let Some(v) = &value {
            self.vars.set(decl.name.clone(), v.clone());
        }
        self.args.push((decl.name.clone(), value));
        Ok(())
    }

    /// Expands `KEY=value` pairs (keys and values) against the scope before the instruction.
    pub fn expand_pairs(&self, pairs: &[KeyValue]) -> Result<Vec<(String, String)>, ExpandError> {
        pairs
            .iter()
            .map(|p| Ok((self.expand(&p.key)?, self.expand(&p.value)?)))
            .collect()
    }

    /// Expands one word (quotes removed).
    pub fn expand(&self, word: &str) -> Result<String, ExpandError> {
        self.global.lexer.process_word(word, &self.vars)
    }

    /// Expands and splits into words (EXPOSE, VOLUME, …).
    pub fn expand_words(&self, word: &str) -> Result<Vec<String>, ExpandError> {
        self.global.lexer.process_words(word, &self.vars)
    }

    /// Everything expansions and RUN see.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The image config's environment (base ENV + this stage's ENVs).
    pub fn image_env(&self) -> &Vars {
        &self.env
    }

    /// The ARGs declared in this stage so far, with their values.
    pub fn declared_args(&self) -> &[(String, Option<String>)] {
        &self.args
    }

    pub fn global(&self) -> &'g GlobalScope {
        self.global
    }
}
