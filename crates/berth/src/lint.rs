//! `berth lint`: hadolint-compatible Dockerfile linting.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use berth_lint::format::{Format, Report, render};
use berth_lint::{Config, LabelType, Severity, Threshold, catalog};
use clap::Args;

use crate::{ExitWith, UsageError};

/// Biggest Dockerfile read (BuildKit's own limit is far below this).
const MAX_DOCKERFILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Args)]
#[command(
    after_help = "Configuration: --config FILE, else .berth-lint.yaml or .hadolint.yaml in the current directory, else $XDG_CONFIG_HOME/hadolint.yaml, ~/.config/hadolint.yaml, ~/.hadolint/hadolint.yaml, ~/.hadolint.yaml. Flags override the file.\nPragmas: `# hadolint ignore=DL3008,DL3009` (or `# berth ignore=…`) before an instruction; `# hadolint global ignore=…` anywhere; `# hadolint shell=pwsh`.\nExit codes: 0 no finding at or above the failure threshold; 1 findings at or above it; 2 usage, configuration or unreadable file."
)]
pub struct LintArgs {
    /// Dockerfiles to lint (`-` for standard input).
    #[arg(default_value = "Dockerfile")]
    files: Vec<String>,
    /// Output format: tty, json (as hadolint), sarif, checkstyle, gnu.
    #[arg(short = 'f', long, env = "BERTH_LINT_FORMAT")]
    format: Option<String>,
    /// Configuration file (hadolint's .hadolint.yaml keys).
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Fail on findings of this level or worse: error, warning, info, style, ignore, none.
    #[arg(short = 't', long)]
    failure_threshold: Option<String>,
    /// Never fail on findings (exit 0).
    #[arg(long)]
    no_fail: bool,
    /// Do not report this rule (repeatable).
    #[arg(long = "ignore", value_name = "CODE")]
    ignore: Vec<String>,
    /// Report this rule as an error (repeatable).
    #[arg(long = "error", value_name = "CODE")]
    error: Vec<String>,
    /// Report this rule as a warning (repeatable).
    #[arg(long = "warning", value_name = "CODE")]
    warning: Vec<String>,
    /// Report this rule as info (repeatable).
    #[arg(long = "info", value_name = "CODE")]
    info: Vec<String>,
    /// Report this rule as style (repeatable).
    #[arg(long = "style", value_name = "CODE")]
    style: Vec<String>,
    /// A registry FROM may use (repeatable; `*.example.com` allowed). DL3026.
    #[arg(long = "trusted-registry", value_name = "REGISTRY")]
    trusted_registry: Vec<String>,
    /// A label every image must carry, with its type: text, url, spdx, rfc3339, semver, hash, email.
    #[arg(long = "require-label", value_name = "LABEL:TYPE")]
    require_label: Vec<String>,
    /// Labels outside the schema are findings (DL3050).
    #[arg(long)]
    strict_labels: bool,
    /// Ignore `# hadolint ignore=` pragmas.
    #[arg(long)]
    disable_ignore_pragma: bool,
    /// No colours in tty output (also NO_COLOR).
    #[arg(long)]
    no_color: bool,
    /// Explain a rule and exit.
    #[arg(long, value_name = "CODE", conflicts_with = "list_rules")]
    explain: Option<String>,
    /// List every rule with its default severity and exit.
    #[arg(long)]
    list_rules: bool,
}

pub fn run(args: LintArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if let Some(code) = &args.explain {
        let rule = catalog::rule(code)
            .ok_or_else(|| UsageError(format!("unknown rule {code:?} (see --list-rules)")))?;
        writeln!(
            stdout,
            "{} ({}{})\n\n{}\n\n{}",
            rule.code,
            rule.severity,
            if rule.severity == Severity::Ignore {
                ": off unless enabled with --error/--warning/--info/--style or `override:`"
            } else {
                ""
            },
            rule.message,
            rule.explain
        )?;
        return Ok(());
    }
    if args.list_rules {
        for r in catalog::RULES {
            writeln!(stdout, "{}\t{}\t{}", r.code, r.severity, r.message)?;
        }
        return Ok(());
    }

    let config = load_config(&args)?;
    let format_name = args
        .format
        .clone()
        .or_else(|| config.format.clone())
        .unwrap_or_else(|| "tty".into());
    let format = Format::parse(&format_name).ok_or_else(|| {
        UsageError(format!(
            "unknown format {format_name:?} (one of: {})",
            Format::NAMES.join(", ")
        ))
    })?;

    let mut texts: Vec<(String, String)> = Vec::with_capacity(args.files.len());
    for file in &args.files {
        texts.push((file.clone(), read_dockerfile(file)?));
    }
    let findings: Vec<Vec<berth_lint::Finding>> = texts
        .iter()
        .map(|(_, text)| berth_lint::lint(text, &config))
        .collect();
    let reports: Vec<Report<'_>> = texts
        .iter()
        .zip(&findings)
        .map(|((file, text), f)| Report::new(file, text, f))
        .collect();
    let color = format == Format::Tty
        && !args.no_color
        && !config.no_color
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::stdout().is_terminal();
    stdout.write_all(render(format, &reports, color).as_bytes())?;
    stdout.flush()?;
    let all: Vec<berth_lint::Finding> = findings.into_iter().flatten().collect();
    if berth_lint::fails(&all, &config) {
        return Err(ExitWith(1).into());
    }
    Ok(())
}

fn load_config(args: &LintArgs) -> anyhow::Result<Config> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => {
            let cwd = std::env::current_dir().context("current directory")?;
            let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
            let home = std::env::var_os("HOME").map(PathBuf::from);
            berth_lint::find_config_file(&cwd, xdg.as_deref(), home.as_deref())
        }
    };
    let mut config = match path {
        Some(p) => Config::load(&p).map_err(|e| UsageError(e.to_string()))?,
        None => Config::default(),
    };
    if let Some(t) = &args.failure_threshold {
        config.failure_threshold = Threshold::parse(t).ok_or_else(|| {
            UsageError(format!(
                "unknown failure threshold {t:?} (error, warning, info, style, ignore, none)"
            ))
        })?;
    }
    config.no_fail |= args.no_fail;
    config.strict_labels |= args.strict_labels;
    config.disable_ignore_pragma |= args.disable_ignore_pragma;
    config.no_color |= args.no_color;
    config
        .ignored
        .extend(args.ignore.iter().map(|c| c.to_ascii_uppercase()));
    for (severity, codes) in [
        (Severity::Error, &args.error),
        (Severity::Warning, &args.warning),
        (Severity::Info, &args.info),
        (Severity::Style, &args.style),
    ] {
        for c in codes {
            config.overrides.insert(c.to_ascii_uppercase(), severity);
        }
    }
    config
        .trusted_registries
        .extend(args.trusted_registry.iter().cloned());
    for spec in &args.require_label {
        let (label, kind) = spec
            .split_once(':')
            .ok_or_else(|| UsageError(format!("--require-label {spec:?}: expected LABEL:TYPE")))?;
        let kind = match kind {
            "text" => LabelType::Text,
            "url" => LabelType::Url,
            "spdx" => LabelType::Spdx,
            "rfc3339" => LabelType::Rfc3339,
            "semver" => LabelType::Semver,
            "hash" => LabelType::Hash,
            "email" => LabelType::Email,
            other => {
                return Err(UsageError(format!(
                    "--require-label {spec:?}: unknown type {other:?} (text, url, spdx, rfc3339, semver, hash, email)"
                ))
                .into());
            }
        };
        config.label_schema.insert(label.to_string(), kind);
    }
    Ok(config)
}

fn read_dockerfile(file: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_DOCKERFILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_DOCKERFILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| UsageError(format!("{file}: {e}")))?;
    }
    if bytes.len() as u64 > MAX_DOCKERFILE_BYTES {
        return Err(UsageError(format!("{file}: larger than {MAX_DOCKERFILE_BYTES} bytes")).into());
    }
    String::from_utf8(bytes).map_err(|_| UsageError(format!("{file}: not UTF-8 text")).into())
}
