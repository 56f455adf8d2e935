//! Linting a Dockerfile for a release or an assistant: the project's `.hadolint.yaml` (found
//! as hadolint finds it, from the Dockerfile's directory), hadolint's rules and messages.

use std::path::{Path, PathBuf};

use berth_lint::{Config, Threshold};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{OpsError, Result};

/// The largest Dockerfile read.
pub const MAX_DOCKERFILE_BYTES: u64 = 16 * 1024 * 1024;

/// One finding.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LintFinding {
    /// The rule (`DL3008`).
    pub code: String,
    /// error, warning, info or style.
    pub level: String,
    /// hadolint's message.
    pub message: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// What linting found.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LintOutcome {
    /// The Dockerfile.
    pub file: String,
    /// The configuration file used, if any.
    pub config_file: Option<String>,
    /// The failure threshold applied.
    pub threshold: String,
    /// Every finding, by line.
    pub findings: Vec<LintFinding>,
    /// How many findings are at or above the threshold.
    pub failing: usize,
    /// Whether the run passes.
    pub passed: bool,
}

/// Reads a Dockerfile, bounded, as UTF-8 text.
pub fn read_dockerfile(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DOCKERFILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| OpsError::usage(format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_DOCKERFILE_BYTES {
        return Err(OpsError::usage(format!(
            "{}: larger than {MAX_DOCKERFILE_BYTES} bytes",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| OpsError::usage(format!("{}: not UTF-8 text", path.display())))
}

/// Lints `dockerfile` with `config` (default: the `.hadolint.yaml` hadolint would find from the
/// Dockerfile's directory), failing at `threshold` (default: the configuration's, `info`).
pub fn lint_dockerfile(
    dockerfile: &Path,
    config: Option<&Path>,
    threshold: Option<&str>,
) -> Result<LintOutcome> {
    let text = read_dockerfile(dockerfile)?;
    let config_file: Option<PathBuf> = match config {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let dir = dockerfile
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
            let home = std::env::var_os("HOME").map(PathBuf::from);
            berth_lint::find_config_file(dir, xdg.as_deref(), home.as_deref())
        }
    };
    let mut cfg = match &config_file {
        Some(p) => Config::load(p).map_err(|e| OpsError::usage(e.to_string()))?,
        None => Config::default(),
    };
    if let Some(t) = threshold {
        cfg.failure_threshold = Threshold::parse(t).ok_or_else(|| {
            OpsError::usage(format!(
                "unknown failure threshold {t:?} (error, warning, info, style, ignore, none)"
            ))
        })?;
    }
    let findings = berth_lint::lint(&text, &cfg);
    let failing = if cfg.no_fail {
        0
    } else {
        findings
            .iter()
            .filter(|f| cfg.failure_threshold.fails(f.severity))
            .count()
    };
    Ok(LintOutcome {
        file: dockerfile.display().to_string(),
        config_file: config_file.map(|p| p.display().to_string()),
        threshold: threshold_name(cfg.failure_threshold),
        findings: findings
            .iter()
            .map(|f| LintFinding {
                code: f.code.clone(),
                level: f.severity.to_string(),
                message: f.message.clone(),
                line: f.line,
                column: f.column,
            })
            .collect(),
        failing,
        passed: failing == 0,
    })
}

fn threshold_name(t: Threshold) -> String {
    match t {
        Threshold::At(s) => s.to_string(),
        _ => "none".to_owned(),
    }
}
