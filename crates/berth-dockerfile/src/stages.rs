//! The stage graph: which stage builds on which (FROM a stage), which reads from which
//! (`COPY --from`, `RUN --mount=…,from=`), and the stages a `--target` needs.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::ast::{Command, Dockerfile, Instruction};
use crate::error::Span;
use crate::scope::GlobalScope;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference (expanded against the global scope).
    Image(String),
}

/// Where a stage reads files from besides its base.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Source {
    Stage(usize),
    /// An image named in `--from` (or a named build context the builder resolves).
    Image(String),
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The FROM instruction's index in [`Dockerfile::instructions`].
    pub from: usize,
    /// The indices of the stage's instructions after FROM.
    pub body: Range<usize>,
    pub base: Base,
    /// `--platform`, expanded against the global scope.
    pub platform: Option<String>,
    /// Stages and images this stage copies or mounts from, in first-use order.
    pub sources: Vec<Source>,
}

impl Stage {
    /// Every stage this one needs directly: its base and its `--from` stages.
    pub fn stage_deps(&self) -> BTreeSet<usize> {
        let mut deps: BTreeSet<usize> = self
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Stage(i) => Some(*i),
                Source::Image(_) => None,
            })
            .collect();
        if let Base::Stage(i) = self.base {
            deps.insert(i);
        }
        deps
    }
}

/// A Dockerfile the builder cannot plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    #[error("line {}: no build stage in current context ({} before the first FROM)", .span.start.line, .keyword)]
    NoStage { keyword: String, span: Span },
    #[error("line {}: duplicate stage name \"{name}\"", .span.start.line)]
    DuplicateName { name: String, span: Span },
    #[error("line {}: base name ({raw}) should not be blank", .span.start.line)]
    BlankBase { raw: String, span: Span },
    #[error("line {}: {message}", .span.start.line)]
    Expand { message: String, span: Span },
    #[error("line {}: invalid stage index {index} in --from (only earlier stages can be used)", .span.start.line)]
    BadIndex { index: usize, span: Span },
    #[error("line {}: cannot copy from stage \"{name}\", it needs to be defined before current stage", .span.start.line)]
    LaterStage { name: String, span: Span },
    #[error("line {}: stage \"{name}\" cannot use itself as a source", .span.start.line)]
    SelfReference { name: String, span: Span },
    #[error("target stage \"{0}\" could not be found")]
    UnknownTarget(String),
}

/// All stages of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageGraph {
    /// The instructions before the first FROM (global ARGs).
    pub meta: Range<usize>,
    pub stages: Vec<Stage>,
}

impl StageGraph {
    /// Builds the graph; FROM lines and `--platform` are expanded against `global`.
    pub fn new(df: &Dockerfile, global: &GlobalScope) -> Result<Self, StageError> {
        let ins = &df.instructions;
        let first_from = ins
            .iter()
            .position(|i| matches!(i.command, Command::From(_)))
            .unwrap_or(ins.len());
        if let Some(bad) = ins[..first_from]
            .iter()
            .find(|i| !matches!(i.command, Command::Arg { .. }))
        {
            return Err(StageError::NoStage {
                keyword: bad.keyword.to_string(),
                span: bad.span,
            });
        }
        let mut stages: Vec<Stage> = Vec::new();
        let mut idx = first_from;
        while idx < ins.len() {
            let Command::From(from) = &ins[idx].command else {
                idx += 1;
                continue;
            };
            let end = ins[idx + 1..]
                .iter()
                .position(|i| matches!(i.command, Command::From(_)))
                .map(|p| idx + 1 + p)
                .unwrap_or(ins.len());
            let span = ins[idx].span;
            let name = from.name.as_ref().map(|w| w.text.clone());
            if let Some(n) = &name
                && stages.iter().any(|s| s.name.as_deref() == Some(n))
            {
                return Err(StageError::DuplicateName {
                    name: n.clone(),
                    span: from.name.as_ref().map(|w| w.span).unwrap_or(span),
                });
            }
            let image = global
                .expand(&from.image.text)
                .map_err(|e| StageError::Expand {
                    message: e.to_string(),
                    span: from.image.span,
                })?;
            if image.is_empty() {
                return Err(StageError::BlankBase {
                    raw: from.image.text.clone(),
                    span: from.image.span,
                });
            }
            let lower = image.to_ascii_lowercase();
            let base = if let Some(i) = stages
                .iter()
                .position(|s| s.name.as_deref() == Some(&lower))
            {
                Base::Stage(i)
            } else if lower == "scratch" {
                Base::Scratch
            } else {
                Base::Image(image)
            };
            let platform = match &from.platform {
                Some(p) => Some(global.expand(p).map_err(|e| StageError::Expand {
                    message: e.to_string(),
                    span,
                })?),
                None => None,
            };
            stages.push(Stage {
                index: stages.len(),
                name,
                from: idx,
                body: idx + 1..end,
                base,
                platform,
                sources: Vec::new(),
            });
            idx = end;
        }
        // Sources need every stage's name (a later stage named in --from is an error, not an image).
        let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        for stage in &mut stages {
            let mut sources = Vec::new();
            for i in stage.body.clone() {
                for (from, span) in from_refs(&ins[i]) {
                    let src = resolve_from(&from, span, stage.index, &names)?;
                    if !sources.contains(&src) {
                        sources.push(src);
                    }
                }
            }
            stage.sources = sources;
        }
        Ok(Self {
            meta: 0..first_from,
            stages,
        })
    }

    /// The stage called `name` (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// The stage a build of `target` ends with: the named stage, or the last one.
    pub fn target(&self, target: Option<&str>) -> Result<usize, StageError> {
        match target {
            Some(t) => self
                .by_name(t)
                .ok_or_else(|| StageError::UnknownTarget(t.to_string())),
            None => self
                .stages
                .len()
                .checked_sub(1)
                .ok_or_else(|| StageError::UnknownTarget(String::new())),
        }
    }

    /// The stages `target` needs, dependencies first (each once), ending with `target`.
    pub fn required(&self, target: usize) -> Vec<usize> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.visit(target, &mut seen, &mut order);
        order
    }

    fn visit(&self, i: usize, seen: &mut BTreeSet<usize>, order: &mut Vec<usize>) {
        if !seen.insert(i) {
            return;
        }
        if let Some(stage) = self.stages.get(i) {
            for d in stage.stage_deps() {
                // Only earlier stages can be dependencies, so this terminates.
                if d < i {
                    self.visit(d, seen, order);
                }
            }
        }
        order.push(i);
    }
}

/// The `--from` references of an instruction (COPY `--from`, RUN `--mount=…,from=`).
fn from_refs(ins: &Instruction) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    match &ins.command {
        Command::Copy(c) => {
            if let Some(f) = &c.from {
                let span = ins.flag("from").map(|f| f.span).unwrap_or(ins.span);
                out.push((f.clone(), span));
            }
        }
        Command::Run(r) => {
            for m in &r.mounts {
                if let Some(f) = &m.from {
                    let span = ins
                        .flags
                        .iter()
                        .find(|fl| {
                            fl.name == "mount" && fl.value.as_deref() == Some(m.raw.as_str())
                        })
                        .map(|fl| fl.span)
                        .unwrap_or(ins.span);
                    out.push((f.clone(), span));
                }
            }
        }
        _ => {}
    }
    out
}

fn resolve_from(
    from: &str,
    span: Span,
    current: usize,
    names: &[Option<String>],
) -> Result<Source, StageError> {
    if let Ok(index) = from.parse::<usize>() {
        if index >= current {
            return Err(StageError::BadIndex { index, span });
        }
        return Ok(Source::Stage(index));
    }
    let lower = from.to_ascii_lowercase();
    match names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
    {
        Some(i) if i < current => Ok(Source::Stage(i)),
        Some(i) if i == current => Err(StageError::SelfReference { name: lower, span }),
        Some(_) => Err(StageError::LaterStage { name: lower, span }),
        None => Ok(Source::Image(from.to_string())),
    }
}
