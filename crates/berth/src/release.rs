//! `berth release`: lint → build every platform → repository with its settings → push under
//! every tag → verify → scan gate → the image by digest (`berth_ops::release`), rendered.

use std::path::PathBuf;
use std::sync::Arc;

use berth_ops::release::{ReleaseReport, ReleaseRequest, StepStatus};
use berth_ops::repo::RepoSettings;
use berth_ops::transfer::TagStrategy;
use clap::Args;

use crate::ExitWith;
use crate::progress::{Mode, Reporter};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 released (or planned, with --dry-run); 1 a failure at run \
time (registry, build, verify); 2 a bad request; 3 lint findings at or above --lint-threshold \
(nothing built or pushed); 4 a conflict: an immutable tag already holds another image (nothing \
pushed) or the registry does not show what was pushed; 5 the scan found something at or above \
--scan-gate (the image is pushed; do not deploy it)."
)]
pub struct ReleaseArgs {
    /// The build context (a directory)
    #[arg(default_value = ".")]
    context: PathBuf,
    /// The repository: NAME (the ECR API says where) or HOST/NAME (`127.0.0.1:5000/team/app`,
    /// an Amazon ECR URI)
    #[arg(long)]
    repository: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: Option<PathBuf>,
    /// Platforms, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "linux/amd64,linux/arm64")]
    platform: Vec<String>,
    /// How tags are made, comma-separated: semver (VERSION, vMAJOR.MINOR, vMAJOR, latest), git
    /// (commit, branch), digest (12 hex digits of the digest) [default: semver with --version,
    /// else latest]
    #[arg(long, value_delimiter = ',', value_name = "STRATEGY")]
    tag_strategy: Vec<TagStrategy>,
    /// The version, the first tag (`v1.2.3`)
    #[arg(long)]
    version: Option<String>,
    /// Another tag; repeatable
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// The repository's settings (TOML or JSON: tag_mutability, mutability_exclusions,
    /// scan_on_push, encryption, kms_key, lifecycle_policy, repository_policy, tags)
    #[arg(long, value_name = "FILE")]
    repo_settings: Option<PathBuf>,
    /// Change an existing repository's settings that differ (otherwise they are only reported)
    #[arg(long)]
    apply_settings: bool,
    /// Lint findings at or above this level stop the release (error, warning, info, style,
    /// none)
    #[arg(long, default_value = "warning")]
    lint_threshold: String,
    /// Fail when the scan finds something at or above this severity (CRITICAL, HIGH, MEDIUM, LOW)
    #[arg(long, value_name = "SEVERITY")]
    scan_gate: Option<String>,
    /// How long to wait for the scan, in seconds
    #[arg(long, default_value_t = 600)]
    scan_timeout: u64,
    /// Print the plan and change nothing (no build, no push, no repository change)
    #[arg(long)]
    dry_run: bool,
    /// A build argument (KEY=VALUE); repeatable
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use the step cache
    #[arg(long)]
    no_cache: bool,
    /// The AWS region of the ECR API
    #[arg(long)]
    region: Option<String>,
    /// The ECR API endpoint (default: the registry's login, AWS_ENDPOINT_URL_ECR, Amazon ECR)
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The build store (default as for `berth build`)
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The JSON report on standard output instead of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: crate::transfer::RegistryOpts,
}

pub fn run(args: ReleaseArgs) -> anyhow::Result<()> {
    let mut req = ReleaseRequest::default();
    req.context = args.context.clone();
    req.dockerfile = args.file.clone();
    req.repository = args.repository.clone();
    req.platforms = args.platform.clone();
    req.tag_strategy = args.tag_strategy.clone();
    req.version = args.version.clone();
    req.extra_tags = args.tags.clone();
    if let Some(f) = &args.repo_settings {
        req.settings = RepoSettings::load(f)?;
    }
    req.apply_settings = args.apply_settings;
    req.lint_threshold = Some(args.lint_threshold.clone());
    req.scan_gate = args.scan_gate.clone();
    req.scan_timeout = std::time::Duration::from_secs(args.scan_timeout);
    req.dry_run = args.dry_run;
    req.build_args = args.build_args.clone();
    req.target = args.target.clone();
    req.no_cache = args.no_cache;
    req.epoch = berth_ops::build::epoch_from_env()?;
    req.store = args.store.clone();
    req.aws.region = args.region.clone();
    req.aws.endpoint = args.endpoint_url.clone();
    req.insecure = args.registry.insecure.clone();

    let rt = crate::transfer::runtime()?;
    let json = args.json;
    let quiet_build = QuietBuild;
    let transfer = if json {
        None
    } else {
        Reporter::new(Mode::Plain).map(|r| Arc::new(r) as Arc<dyn berth_client::Progress>)
    };
    let step = |s: &str| {
        if !json {
            eprintln!("==> {s}");
        }
    };
    match berth_ops::release::release(&req, rt.handle(), &quiet_build, transfer, &step) {
        Ok(report) => {
            render(&report, json)?;
            Ok(())
        }
        Err(failure) => {
            render(&failure.report, json)?;
            eprintln!(
                "berth: error: release stopped at {}: {:#}",
                failure.step, failure.error
            );
            Err(ExitWith(failure.exit_code()).into())
        }
    }
}

/// The build's own steps are not shown: the release prints one line per release step.
struct QuietBuild;

impl berth_build::Progress for QuietBuild {
    fn event(&self, _e: berth_build::Event) {}
}

fn render(report: &ReleaseReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for s in &report.steps {
        let status = match s.status {
            StepStatus::Ok => "ok",
            StepStatus::Unchanged => "unchanged",
            StepStatus::Planned => "planned",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "FAILED",
        };
        eprintln!("{:<11} {:<9} {}", s.step, status, s.detail);
    }
    for t in &report.tags {
        eprintln!("  tag {:<24} {}", t.tag, t.status);
    }
    if let Some(image) = &report.image {
        println!("{image}");
    }
    Ok(())
}
