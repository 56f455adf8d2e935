//! `berth-lint` — a Dockerfile linter with hadolint's rule IDs, default severities, messages,
//! configuration file and pragmas, judged on a real parse: the Dockerfile through
//! `berth-dockerfile` (heredocs, `FROM ${BASE}`, stages as bases, `--platform=$BUILDPLATFORM`
//! all understood), RUN's shell text through [`shell`], a POSIX shell parser.
//!
//! - [`lint`] returns the findings for one Dockerfile under a [`Config`].
//! - [`catalog`] lists every rule with its default severity and an explanation (`--explain`).
//! - [`format`] prints findings as tty, json (hadolint's shape), sarif, checkstyle or gnu.
//! - [`Config`] reads `.hadolint.yaml` (and berth's own `.berth-lint.yaml`, same keys).

pub mod catalog;
mod config;
pub mod format;
mod rules;
pub mod shell;

use serde::{Deserialize, Serialize};

pub use config::{Config, ConfigError, LabelType, find_config_file};

/// How serious a finding is, from most to least: error, warning, info, style; `ignore` hides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
    Style,
    Ignore,
}

impl Severity {
    /// Higher is more serious; `Ignore` is 0.
    pub const fn rank(self) -> u8 {
        match self {
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Info => 2,
            Severity::Style => 1,
            Severity::Ignore => 0,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Style => "style",
            Severity::Ignore => "ignore",
        }
    }

    /// `error`, `warning`, `info`, `style`, `ignore` (case-insensitive).
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            "style" => Some(Severity::Style),
            "ignore" => Some(Severity::Ignore),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level at or above which findings fail the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Threshold {
    /// Findings of this severity or worse fail the run (`ignore`: any finding).
    At(Severity),
    /// Nothing fails the run.
    None,
}

impl Threshold {
    /// `error`, `warning`, `info`, `style`, `ignore` or `none`.
    pub fn parse(s: &str) -> Option<Threshold> {
        if s.eq_ignore_ascii_case("none") {
            return Some(Threshold::None);
        }
        Severity::parse(s).map(Threshold::At)
    }

    /// Whether a finding of `severity` fails the run.
    pub fn fails(self, severity: Severity) -> bool {
        match self {
            Threshold::None => false,
            Threshold::At(t) => severity != Severity::Ignore && severity.rank() >= t.rank(),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The rule id (`DL3008`, or `DL1000` for a Dockerfile that does not parse).
    pub code: String,
    pub severity: Severity,
    pub message: String,
    /// 1-based line of the instruction (or of the parse error).
    pub line: u32,
    /// 1-based column; hadolint always reports 1, and so do we except for parse errors.
    pub column: u32,
}

/// Lints one Dockerfile. Findings come sorted by line, then rule id, with the configuration's
/// overrides applied and ignored rules (by configuration or pragma) removed.
pub fn lint(text: &str, config: &Config) -> Vec<Finding> {
    let mut findings = rules::run(text, config);
    findings.retain(|f| f.severity != Severity::Ignore);
    findings.sort_by(|a, b| (a.line, &a.code, a.column).cmp(&(b.line, &b.code, b.column)));
    findings.dedup();
    findings
}

/// Whether any finding fails the run under `config` (its threshold and `no-fail`).
pub fn fails(findings: &[Finding], config: &Config) -> bool {
    !config.no_fail
        && findings
            .iter()
            .any(|f| config.failure_threshold.fails(f.severity))
}
