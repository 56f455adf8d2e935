//! `berth-dockerfile` — the Dockerfile language as BuildKit accepts it, with no I/O runtime.
//!
//! - [`parse`] turns text into a [`Dockerfile`]: parser directives, escape character, line
//!   continuations (comments and empty lines inside them dropped), heredocs, exec and shell
//!   forms, every instruction's flags, each node with line:column positions. Errors
//!   ([`ParseError`]) show the offending line with a caret.
//! - [`expand`]: BuildKit's word lexer (`$VAR`, `${VAR:-default}` and every other modifier,
//!   quotes and escapes) against any [`expand::Env`].
//! - [`GlobalScope`] / [`StageScope`]: which ARG and ENV values an instruction sees, including
//!   the automatic platform ARGs ([`platform_args`]).
//! - [`StageGraph`]: stages, their bases and `--from` sources, and what a `--target` needs.
//! - [`ignore`]: `.dockerignore` matching exactly as moby's `patternmatcher` does.
//! - Words stay as written; expansion happens against a scope, because the same Dockerfile means
//!   different things for different build arguments and platforms.

mod ast;
mod error;
pub mod expand;
pub mod ignore;
mod lines;
mod parser;
mod scope;
mod stages;

pub use ast::{
    ArgDecl, CmdLine, Command, Comment, Copy, Directive, Directives, Dockerfile, Flag, From,
    Healthcheck, Heredoc, InlineFile, Instruction, KeyValue, Keyword, Mount, MountType, Network,
    Run, Security, Sharing, Warning, Word,
};
pub use error::{ParseError, Pos, Span};
pub use parser::{MountExpander, parse, parse_mount, ram_in_bytes};
pub use scope::{
    GlobalScope, PROXY_ARGS, PlatformParts, ScopeError, StageScope, Vars, platform_args,
};
pub use stages::{Base, Source, Stage, StageError, StageGraph};
