//! `release`: the whole ship-to-ECR workflow users script by hand (seeds 001 and 003) as one
//! plan and one report — lint, build every platform, make sure the repository exists with its
//! settings, push one index under every tag, verify through DescribeImages, wait for the scan
//! and gate on its findings, and name the image by digest for the deploy step.

use std::path::PathBuf;
use std::sync::Arc;

use berth_build::{Progress as BuildProgress, StoreImage};
use berth_client::Progress;
use berth_client::aws_sdk_ecr as ecr;
use berth_client::ecr::AwsOptions;
use berth_client::image::{ImageSink, ImageSource, Placement};
use schemars::JsonSchema;
use serde::Serialize;

use crate::build::{BuildOutcome, BuildRequest, build_image, prepare};
use crate::endpoint::{open_registry, parse_ref, parse_tag};
use crate::error::{OpsError, Result, ResultExt};
use crate::lint::{LintOutcome, lint_dockerfile};
use crate::repo::{self, EnsureOutcome, ImageDetailInfo, RepoSettings, Target, api_error};
use crate::transfer::{TagStrategy, git_tags, semver_tags};

/// The platforms a release builds unless told otherwise.
pub const DEFAULT_PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// What to release.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReleaseRequest {
    /// The build context.
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    pub dockerfile: Option<PathBuf>,
    /// `NAME` (the ECR API says where its registry is) or `HOST/NAME`.
    pub repository: String,
    /// Platforms (default: linux/amd64 and linux/arm64).
    pub platforms: Vec<String>,
    /// How tags are made (default: semver when a version is given, else `latest`).
    pub tag_strategy: Vec<TagStrategy>,
    /// The version (`v1.2.3`): the first tag.
    pub version: Option<String>,
    /// More tags, as given.
    pub extra_tags: Vec<String>,
    /// The repository's settings.
    pub settings: RepoSettings,
    /// Change an existing repository's settings that differ (otherwise only reported).
    pub apply_settings: bool,
    /// Lint failure threshold (`none` skips the gate; default `warning`).
    pub lint_threshold: Option<String>,
    /// Fail when the scan finds something at or above this severity (CRITICAL, HIGH, MEDIUM,
    /// LOW, INFORMATIONAL).
    pub scan_gate: Option<String>,
    /// How long to wait for a scan.
    pub scan_timeout: std::time::Duration,
    /// Plan only: read the registry, change nothing, build nothing.
    pub dry_run: bool,
    /// Build options passed through.
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub build_contexts: Vec<String>,
    pub labels: Vec<String>,
    pub secrets: Vec<String>,
    pub epoch: Option<i64>,
    pub runtime: Option<String>,
    pub store: Option<PathBuf>,
    /// Where the ECR API is, when the repository is given without its registry.
    pub aws: AwsOptions,
    /// Registries reached over plain HTTP.
    pub insecure: Vec<String>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Done.
    Ok,
    /// Done, and nothing needed doing (the registry already had it).
    Unchanged,
    /// Would be done (dry run).
    Planned,
    /// Not run (not asked for, or not possible here; `detail` says why).
    Skipped,
    /// Failed: the release stopped here.
    Failed,
}

/// One step of the report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StepReport {
    /// lint, build, repository, tags, push, verify, scan.
    pub step: String,
    /// How it ended.
    pub status: StepStatus,
    /// One line for people.
    pub detail: String,
}

/// One tag of the release.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagReport {
    /// The tag.
    pub tag: String,
    /// pushed, unchanged (already the image), moved (pointed at another image), planned.
    pub status: String,
    /// The digest it pointed at before, if any.
    pub previous: Option<String>,
}

/// A scan's result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// The scan's status (COMPLETE, FAILED, …).
    pub status: String,
    /// Findings per severity.
    pub severity_counts: std::collections::BTreeMap<String, i32>,
    /// The gate applied, if any.
    pub gate: Option<String>,
    /// Findings at or above the gate.
    pub failing: i64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The repository's name.
    pub repository: String,
    /// Its URI (`HOST/NAME`).
    pub repository_uri: String,
    /// The image by digest, for the deploy step (`HOST/NAME@sha256:…`).
    pub image: Option<String>,
    /// The index (or manifest) digest.
    pub digest: Option<String>,
    /// Each step, in order.
    pub steps: Vec<StepReport>,
    /// The tags.
    pub tags: Vec<TagReport>,
    /// Blobs uploaded / already there, bytes uploaded.
    pub blobs_pushed: usize,
    pub blobs_present: usize,
    pub bytes_pushed: u64,
    /// The lint result.
    pub lint: Option<LintOutcome>,
    /// The build result.
    pub build: Option<BuildOutcome>,
    /// What the repository step found and did.
    pub repository_settings: Option<EnsureOutcome>,
    /// The image and each platform as DescribeImages reports them.
    pub verified: Vec<ImageDetailInfo>,
    /// The scan.
    pub scan: Option<ScanSummary>,
}

/// A release that stopped: the report so far, the step and the error.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {error}")]
pub struct ReleaseFailure {
    /// The step that failed.
    pub step: String,
    /// Why.
    pub error: Box<OpsError>,
    /// Everything done before.
    pub report: Box<ReleaseReport>,
}

impl ReleaseFailure {
    /// The process exit code `berth release` uses: 2 bad request, 3 lint gate, 4 conflict
    /// (an immutable tag holds another image), 5 scan gate, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self.error.root() {
            OpsError::Usage(_) => 2,
            OpsError::LintFailed { .. } => 3,
            // The gate, or a scan that did not complete: either way the image is not cleared.
            OpsError::ScanGate { .. } => 5,
            _ if self.step == "scan" => 5,
            OpsError::Conflict(_) => 4,
            OpsError::Client(berth_client::ClientError::TagImmutable { .. }) => 4,
            _ => 1,
        }
    }
}

fn target(req: &ReleaseRequest) -> Result<Target> {
    repo::locate(&req.repository, &req.aws, &req.insecure)
}

/// The tags a request makes before the build (the digest tag comes after).
fn plan_tags(req: &ReleaseRequest) -> Result<Vec<String>> {
    let mut tags = Vec::new();
    if let Some(v) = &req.version {
        tags.push(v.clone());
    }
    let strategies: Vec<TagStrategy> = if req.tag_strategy.is_empty() {
        if req.version.is_some() {
            vec![TagStrategy::Semver]
        } else {
            Vec::new()
        }
    } else {
        req.tag_strategy.clone()
    };
    for s in &strategies {
        match s {
            TagStrategy::Semver => {
                let v = req.version.as_deref().ok_or_else(|| {
                    OpsError::usage("--tag-strategy semver needs --version vMAJOR.MINOR.PATCH")
                })?;
                tags.extend(semver_tags(v)?);
            }
            TagStrategy::Git => tags.extend(git_tags(Some(&req.context))?),
            TagStrategy::Digest => {}
        }
    }
    tags.extend(req.extra_tags.iter().cloned());
    if tags.is_empty() && !strategies.contains(&TagStrategy::Digest) {
        tags.push("latest".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    for t in &tags {
        parse_tag(t)?;
    }
    Ok(tags)
}

/// `*`-wildcard match, as ECR's mutability exclusion filters.
fn wildcard(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether the repository refuses to move `tag`.
fn immutable(repo: &repo::RepositoryInfo, tag: &str) -> bool {
    let excluded = repo
        .image_tag_mutability_exclusion_filters
        .iter()
        .any(|f| wildcard(f, tag));
    match repo.image_tag_mutability.as_deref() {
        Some("IMMUTABLE") => true,
        Some("IMMUTABLE_WITH_EXCLUSION") => !excluded,
        Some("MUTABLE_WITH_EXCLUSION") => excluded,
        _ => false,
    }
}

const SEVERITIES: [&str; 6] = [
    "CRITICAL",
    "HIGH",
    "MEDIUM",
    "LOW",
    "INFORMATIONAL",
    "UNDEFINED",
];

/// Runs a release. `build_progress` sees the build's steps, `transfer` the bytes pushed,
/// `step` each step as it starts. Blocking: run it off the async threads; `rt` runs the
/// registry and ECR calls.
pub fn release(
    req: &ReleaseRequest,
    rt: &tokio::runtime::Handle,
    build_progress: &dyn BuildProgress,
    transfer: Option<Arc<dyn Progress>>,
    step: &dyn Fn(&str),
) -> std::result::Result<ReleaseReport, ReleaseFailure> {
    let mut report = ReleaseReport {
        dry_run: req.dry_run,
        repository: String::new(),
        repository_uri: String::new(),
        image: None,
        digest: None,
        steps: Vec::new(),
        tags: Vec::new(),
        blobs_pushed: 0,
        blobs_present: 0,
        bytes_pushed: 0,
        lint: None,
        build: None,
        repository_settings: None,
        verified: Vec::new(),
        scan: None,
    };
    match run(req, rt, build_progress, transfer, step, &mut report) {
        Ok(()) => Ok(report),
        Err((name, error)) => {
            report.steps.push(StepReport {
                step: name.to_owned(),
                status: StepStatus::Failed,
                detail: error.to_string(),
            });
            Err(ReleaseFailure {
                step: name.to_owned(),
                error: Box::new(error),
                report: Box::new(report),
            })
        }
    }
}

type StepResult<T> = std::result::Result<T, (&'static str, OpsError)>;

fn at<T>(step: &'static str, r: Result<T>) -> StepResult<T> {
    r.map_err(|e| (step, e))
}

fn done(report: &mut ReleaseReport, step: &str, status: StepStatus, detail: impl Into<String>) {
    report.steps.push(StepReport {
        step: step.to_owned(),
        status,
        detail: detail.into(),
    });
}

#[allow(clippy::too_many_lines)]
fn run(
    req: &ReleaseRequest,
    rt: &tokio::runtime::Handle,
    build_progress: &dyn BuildProgress,
    transfer: Option<Arc<dyn Progress>>,
    step: &dyn Fn(&str),
    report: &mut ReleaseReport,
) -> StepResult<()> {
    // ---- plan: what, where, under which tags ----------------------------------------------
    step("plan");
    let target = at("plan", target(req))?;
    report.repository = target.name.clone();
    at("plan", req.settings.check())?;
    let tags = at("plan", plan_tags(req))?;
    let mut build_req = BuildRequest::new(&req.context);
    build_req.dockerfile = req.dockerfile.clone();
    build_req.platforms = if req.platforms.is_empty() {
        DEFAULT_PLATFORMS.iter().map(|p| (*p).to_owned()).collect()
    } else {
        req.platforms.clone()
    };
    build_req.build_args = req.build_args.clone();
    build_req.target = req.target.clone();
    build_req.no_cache = req.no_cache;
    build_req.pull = req.pull;
    build_req.build_contexts = req.build_contexts.clone();
    build_req.labels = req.labels.clone();
    build_req.secrets = req.secrets.clone();
    build_req.epoch = req.epoch;
    build_req.runtime = req.runtime.clone();
    build_req.store = req.store.clone();
    build_req.insecure = req.insecure.clone();
    let prepared = at("plan", prepare(&build_req))?;
    let dockerfile = req
        .dockerfile
        .clone()
        .unwrap_or_else(|| req.context.join("Dockerfile"));
    done(
        report,
        "plan",
        StepStatus::Ok,
        format!(
            "{} for {} under {}",
            target.name,
            build_req.platforms.join(", "),
            if tags.is_empty() {
                "the digest tag".to_owned()
            } else {
                tags.join(", ")
            }
        ),
    );

    // ---- lint ---------------------------------------------------------------------------------
    step("lint");
    let threshold = req.lint_threshold.as_deref().unwrap_or("warning");
    let lint = at("lint", lint_dockerfile(&dockerfile, None, Some(threshold)))?;
    let failing = lint.failing;
    let total = lint.findings.len();
    report.lint = Some(lint);
    if failing > 0 {
        return Err((
            "lint",
            OpsError::LintFailed {
                count: failing,
                threshold: threshold.to_owned(),
            },
        ));
    }
    done(
        report,
        "lint",
        StepStatus::Ok,
        format!("{total} finding(s), none at or above {threshold}"),
    );

    // ---- repository: exists, with its settings --------------------------------------------------
    step("repository");
    let client = at("repository", rt.block_on(repo::client(&target.aws)))?;
    let ensured = at(
        "repository",
        rt.block_on(repo::ensure_repository(
            &client,
            &target.name,
            &req.settings,
            req.apply_settings,
            req.dry_run,
        )),
    )?;
    let uri = if ensured.repository.repository_uri.is_empty() {
        target
            .host
            .as_ref()
            .map(|h| format!("{h}/{}", target.name))
            .unwrap_or_default()
    } else {
        ensured.repository.repository_uri.clone()
    };
    // The registry the images go to: the one named, else the URI ECR gives.
    let push_base = match &target.host {
        Some(h) => format!("{h}/{}", target.name),
        None => uri.clone(),
    };
    report.repository_uri = push_base.clone();
    let (status, detail) = if ensured.created {
        (
            if req.dry_run {
                StepStatus::Planned
            } else {
                StepStatus::Ok
            },
            format!("{} created", target.name),
        )
    } else if ensured.differences.is_empty() {
        (StepStatus::Unchanged, format!("{uri}: settings as asked"))
    } else if !ensured.updated.is_empty() {
        (
            StepStatus::Ok,
            format!("{uri}: updated {}", ensured.updated.join(", ")),
        )
    } else {
        let names: Vec<&str> = ensured
            .differences
            .iter()
            .map(|d| d.setting.as_str())
            .collect();
        (
            StepStatus::Ok,
            format!(
                "{uri}: differs in {} (left as is: --apply-settings changes it)",
                names.join(", ")
            ),
        )
    };
    let repository = ensured.repository.clone();
    report.repository_settings = Some(ensured);
    done(report, "repository", status, detail);
    if push_base.is_empty() {
        return Err((
            "repository",
            OpsError::usage(
                "the repository's registry is unknown: give --repository HOST/NAME or create it first",
            ),
        ));
    }

    // ---- tags: what each holds now; an immutable tag on another image stops everything ----------
    step("tags");
    let image_ref = at("tags", parse_ref(&push_base))?;
    let mut previous: Vec<(String, Option<String>)> = Vec::new();
    for t in &tags {
        let r = image_ref.with_tag(at("tags", parse_tag(t))?);
        let current = at("tags", open_registry(&r, &req.insecure))?;
        let digest = match rt.block_on(current.resolve()) {
            Ok(d) => Some(d.to_string()),
            Err(berth_client::ClientError::NotFound(_)) => None,
            Err(e) => return Err(("tags", OpsError::from(e).context(format!("reading {r}")))),
        };
        previous.push((t.clone(), digest));
    }
    if req.dry_run {
        for (t, prev) in &previous {
            report.tags.push(TagReport {
                tag: t.clone(),
                status: "planned".into(),
                previous: prev.clone(),
            });
        }
        done(
            report,
            "build",
            StepStatus::Planned,
            format!("{} platform(s)", build_req.platforms.len()),
        );
        done(report, "push", StepStatus::Planned, push_base.clone());
        done(report, "verify", StepStatus::Planned, "DescribeImages");
        done(
            report,
            "scan",
            if req.scan_gate.is_some() {
                StepStatus::Planned
            } else {
                StepStatus::Skipped
            },
            req.scan_gate
                .as_deref()
                .map_or("no --scan-gate".to_owned(), |g| format!("gate {g}")),
        );
        return Ok(());
    }
    // ---- build -----------------------------------------------------------------------------------
    step("build");
    let built = at(
        "build",
        build_image(&prepared, rt, build_progress, None).map_err(|e| e.context("building")),
    )?;
    let digest = built.digest.clone();
    done(
        report,
        "build",
        StepStatus::Ok,
        format!(
            "{digest}: {} platform(s), {} step(s) run, {} cached",
            built.images.len(),
            built.steps_run,
            built.steps_cached
        ),
    );
    let store_root = PathBuf::from(&built.store);
    report.build = Some(built);
    report.digest = Some(digest.clone());

    // Tags after the build: the digest tag, and the immutability check before any push.
    if req.tag_strategy.contains(&TagStrategy::Digest) {
        let short = digest
            .split(':')
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(12)
            .collect::<String>();
        if !previous.iter().any(|(t, _)| *t == short) {
            let r = image_ref.with_tag(at("tags", parse_tag(&short))?);
            let current = at("tags", open_registry(&r, &req.insecure))?;
            let d = match rt.block_on(current.resolve()) {
                Ok(d) => Some(d.to_string()),
                Err(berth_client::ClientError::NotFound(_)) => None,
                Err(e) => return Err(("tags", OpsError::from(e))),
            };
            previous.push((short, d));
        }
    }
    for (t, prev) in &previous {
        if let Some(p) = prev
            && *p != digest
            && immutable(&repository, t)
        {
            return Err((
                "tags",
                OpsError::Conflict(format!(
                    "tag {t} of the immutable repository {push_base} holds {p}, not the image built ({digest}): \
                     release under a new version (nothing was pushed)"
                )),
            ));
        }
    }
    done(
        report,
        "tags",
        StepStatus::Ok,
        previous
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );

    // ---- push: the blobs once, then every tag ------------------------------------------------
    step("push");
    let store = at(
        "push",
        berth_build::Store::open(&store_root).map_err(OpsError::from),
    )?;
    let digest_parsed = at(
        "push",
        berth_oci::Digest::parse(&digest).map_err(|e| OpsError::usage(e.to_string())),
    )?;
    let src = StoreImage::new(store, Some(digest_parsed.clone()));
    let all_there = previous
        .iter()
        .all(|(_, p)| p.as_deref() == Some(digest.as_str()));
    if all_there {
        for (t, p) in &previous {
            report.tags.push(TagReport {
                tag: t.clone(),
                status: "unchanged".into(),
                previous: p.clone(),
            });
        }
        done(
            report,
            "push",
            StepStatus::Unchanged,
            format!("{push_base}: every tag already holds {digest}; nothing pushed"),
        );
    } else {
        let by_digest = image_ref.with_digest(digest_parsed.clone());
        let sink = at("push", open_registry(&by_digest, &req.insecure))?;
        let mut opts = berth_client::CopyOptions::default();
        opts.progress = transfer;
        let copied = at(
            "push",
            rt.block_on(berth_client::copy(&src, &sink, &opts))
                .context(|| format!("pushing {by_digest}")),
        )?;
        report.blobs_pushed = copied.blobs_copied;
        report.blobs_present = copied.blobs_skipped;
        report.bytes_pushed = copied.bytes_copied;
        let root = at(
            "push",
            rt.block_on(src.root())
                .context(|| "reading the built image".to_owned()),
        )?;
        for (t, p) in &previous {
            let status = match p {
                Some(p) if *p == digest => "unchanged",
                Some(_) => "moved",
                None => "pushed",
            };
            if status != "unchanged" {
                let tag = at("push", parse_tag(t))?;
                at(
                    "push",
                    rt.block_on(sink.put_manifest(&root, Placement::Root { tag: Some(&tag) }))
                        .context(|| format!("tagging {push_base}:{t}")),
                )?;
            }
            report.tags.push(TagReport {
                tag: t.clone(),
                status: status.into(),
                previous: p.clone(),
            });
        }
        done(
            report,
            "push",
            StepStatus::Ok,
            format!(
                "{} blob(s) uploaded ({} bytes), {} already there",
                copied.blobs_copied, copied.bytes_copied, copied.blobs_skipped
            ),
        );
    }
    report.image = Some(format!("{push_base}@{digest}"));

    // ---- verify: the registry describes the image and each platform ------------------------------
    step("verify");
    let mut ids = vec![digest.clone()];
    if let Some(b) = &report.build
        && b.images.len() > 1
    {
        ids.extend(b.images.iter().map(|i| i.digest.clone()));
    }
    let verified = at(
        "verify",
        rt.block_on(repo::describe_images(&client, &target.name, &ids)),
    )?;
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !verified.iter().any(|v| &v.image_digest == *id))
        .collect();
    if !missing.is_empty() {
        return Err((
            "verify",
            OpsError::Conflict(format!(
                "DescribeImages does not know {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ));
    }
    if let Some(root) = verified.iter().find(|v| v.image_digest == digest) {
        let absent: Vec<&str> = previous
            .iter()
            .map(|(t, _)| t.as_str())
            .filter(|t| !root.image_tags.iter().any(|x| x == t))
            .collect();
        if !absent.is_empty() {
            return Err((
                "verify",
                OpsError::Conflict(format!(
                    "{digest} lacks the tag(s) {} after the push",
                    absent.join(", ")
                )),
            ));
        }
    }
    report.verified = verified;
    done(
        report,
        "verify",
        StepStatus::Ok,
        format!("{} manifest(s) described", ids.len()),
    );

    // ---- scan ---------------------------------------------------------------------------------------
    step("scan");
    let scans = repository.scan_on_push == Some(true);
    match (&req.scan_gate, scans) {
        (None, _) => done(report, "scan", StepStatus::Skipped, "no --scan-gate"),
        (Some(_), false) => done(
            report,
            "scan",
            StepStatus::Skipped,
            "the repository does not scan on push",
        ),
        (Some(gate), true) => {
            let gate = gate.to_ascii_uppercase();
            let Some(rank) = SEVERITIES.iter().position(|s| *s == gate) else {
                return Err((
                    "scan",
                    OpsError::usage(format!(
                        "--scan-gate {gate}: expected CRITICAL, HIGH, MEDIUM, LOW or INFORMATIONAL"
                    )),
                ));
            };
            match wait_for_scan(rt, &client, &target.name, &digest, req.scan_timeout) {
                Ok(None) => done(
                    report,
                    "scan",
                    StepStatus::Skipped,
                    "the registry has no scanner (DescribeImageScanFindings is not supported)",
                ),
                Ok(Some(mut summary)) => {
                    summary.gate = Some(gate.clone());
                    summary.failing = summary
                        .severity_counts
                        .iter()
                        .filter(|(s, _)| {
                            SEVERITIES
                                .iter()
                                .position(|x| x == s)
                                .is_some_and(|r| r <= rank)
                        })
                        .map(|(_, n)| i64::from(*n))
                        .sum();
                    let failing = summary.failing;
                    let status = summary.status.clone();
                    report.scan = Some(summary);
                    if status != "COMPLETE" {
                        return Err((
                            "scan",
                            OpsError::Conflict(format!("the scan ended {status}")),
                        ));
                    }
                    if failing > 0 {
                        return Err((
                            "scan",
                            OpsError::ScanGate {
                                count: u64::try_from(failing).unwrap_or(0),
                                gate: gate.clone(),
                            },
                        ));
                    }
                    done(
                        report,
                        "scan",
                        StepStatus::Ok,
                        format!("no finding at or above {gate}"),
                    );
                }
                Err(e) => return Err(("scan", e)),
            }
        }
    }
    Ok(())
}

/// Polls DescribeImageScanFindings until the scan ends or `timeout`; `None` when the registry
/// does not support it.
fn wait_for_scan(
    rt: &tokio::runtime::Handle,
    c: &ecr::Client,
    repository: &str,
    digest: &str,
    timeout: std::time::Duration,
) -> Result<Option<ScanSummary>> {
    use ecr::error::ProvideErrorMetadata;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = rt.block_on(
            c.describe_image_scan_findings()
                .repository_name(repository)
                .image_id(
                    ecr::types::ImageIdentifier::builder()
                        .image_digest(digest)
                        .build(),
                )
                .send(),
        );
        match out {
            Ok(o) => {
                let status = o
                    .image_scan_status()
                    .and_then(|s| s.status())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default();
                if status != "IN_PROGRESS" && status != "PENDING" {
                    let counts = o
                        .image_scan_findings()
                        .and_then(|f| f.finding_severity_counts())
                        .map(|m| m.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect())
                        .unwrap_or_default();
                    return Ok(Some(ScanSummary {
                        status,
                        severity_counts: counts,
                        gate: None,
                        failing: 0,
                    }));
                }
            }
            Err(e)
                if matches!(
                    e.code(),
                    Some("UnknownOperationException" | "InvalidAction" | "UnsupportedOperation")
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.code() == Some("ScanNotFoundException") => {}
            Err(e) => return Err(api_error("DescribeImageScanFindings", e)),
        }
        if std::time::Instant::now() >= deadline {
            return Err(OpsError::Conflict(format!(
                "the scan of {digest} did not finish within {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_immutability() {
        assert!(wildcard("latest", "latest"));
        assert!(wildcard("dev-*", "dev-42"));
        assert!(wildcard("*", "anything"));
        assert!(!wildcard("dev-*", "v1.0.0"));
        assert!(wildcard("*-rc*", "v1-rc2"));
        let mut repo = repo::RepositoryInfo {
            repository_name: "a".into(),
            repository_uri: String::new(),
            repository_arn: String::new(),
            registry_id: String::new(),
            created_at: None,
            image_tag_mutability: Some("IMMUTABLE_WITH_EXCLUSION".into()),
            image_tag_mutability_exclusion_filters: vec!["latest".into()],
            scan_on_push: None,
            encryption_type: None,
            kms_key: None,
        };
        assert!(!immutable(&repo, "latest"));
        assert!(immutable(&repo, "v1.0.0"));
        repo.image_tag_mutability = Some("MUTABLE".into());
        assert!(!immutable(&repo, "v1.0.0"));
    }

    #[test]
    fn tags_follow_the_strategy() {
        let mut req = ReleaseRequest {
            version: Some("v1.2.3".into()),
            ..ReleaseRequest::default()
        };
        assert_eq!(
            plan_tags(&req).ok(),
            Some(vec![
                "v1.2.3".into(),
                "v1.2".into(),
                "v1".into(),
                "latest".into()
            ])
        );
        req.version = None;
        assert_eq!(plan_tags(&req).ok(), Some(vec!["latest".to_owned()]));
        req.tag_strategy = vec![TagStrategy::Semver];
        assert!(plan_tags(&req).is_err_and(|e| e.is_usage()));
    }
}
