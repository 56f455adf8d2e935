//! The tools' parameters (their input schemas, Finch's unchanged for Finch's tools) and the
//! results they return beside the `berth-ops` reports (their output schemas).

use berth_ops::build::BuildOutcome;
use berth_ops::release::ReleaseReport;
use berth_ops::repo::{EnsureOutcome, ImageDetailInfo, RepoSettings};
use berth_ops::scan::ScanReport;
use berth_ops::transfer::{CopyOutcome, TagStrategy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `finch_build_container_image`'s parameters (Finch's, unchanged).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FinchBuildParams {
    /// Absolute path to the Dockerfile.
    pub dockerfile_path: String,
    /// Absolute path to the build context directory.
    pub context_path: String,
    /// Names for the image (`REGISTRY/REPO:TAG`); `finch_push_image` pushes them.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Target platforms (`linux/amd64`, `linux/arm64`).
    #[serde(default)]
    pub platforms: Option<Vec<String>>,
    /// The stage to build.
    #[serde(default)]
    pub target: Option<String>,
    /// Do not use the step cache.
    #[serde(default)]
    pub no_cache: Option<bool>,
    /// Fetch base images again.
    #[serde(default)]
    pub pull: Option<bool>,
    /// Named contexts, `NAME=PATH` (or `NAME=docker-image://REF`).
    #[serde(default)]
    pub build_contexts: Option<Vec<String>>,
    /// An output (`type=registry`, `type=oci,dest=FILE`, `type=docker,dest=FILE`).
    #[serde(default)]
    pub outputs: Option<String>,
    /// Remote cache sources. berth's step cache is its local build store, so these are
    /// reported as unused.
    #[serde(default)]
    pub cache_from: Option<Vec<String>>,
    /// Fewer progress messages.
    #[serde(default)]
    pub quiet: Option<bool>,
    /// Progress style (`auto`, `plain`, `tty`): progress goes to MCP progress notifications.
    #[serde(default)]
    pub progress: Option<String>,
}

/// A Finch-compatible result: `status` and `message` as Finch's, and the structure.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FinchBuildResult {
    /// `success`.
    pub status: String,
    /// What happened, in a sentence.
    pub message: String,
    /// The image built: its digest (an index for several platforms) and each platform's.
    pub build: BuildOutcome,
    /// The names `finch_push_image` can push.
    pub tags: Vec<String>,
    /// Parameters accepted but without effect here, and why.
    pub notes: Vec<String>,
}

/// `finch_push_image`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FinchPushParams {
    /// The image to push, as named when built (`REGISTRY[:PORT]/REPO:TAG`).
    pub image: String,
}

/// What a push did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PushResult {
    /// `success`.
    pub status: String,
    /// What happened, in a sentence.
    pub message: String,
    /// The image by digest (`REGISTRY/REPO@sha256:…`).
    pub image_uri: String,
    /// Every reference written: the tag given, then the extra tags.
    pub references: Vec<String>,
    /// The copy's report (digest per platform, bytes).
    pub copy: CopyOutcome,
}

/// `finch_create_ecr_repo`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FinchCreateRepoParams {
    /// The repository's name (`team/app`), or `REGISTRY/NAME` for a `berth serve`.
    pub repository_name: String,
    /// The AWS region (default: the server's configuration).
    #[serde(default)]
    pub region: Option<String>,
}

/// A repository made sure of.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RepoResult {
    /// `success`.
    pub status: String,
    /// What happened, in a sentence.
    pub message: String,
    /// The repository's URI, for tags.
    pub repository_uri: String,
    /// The repository and what changed.
    pub outcome: EnsureOutcome,
}

/// `build`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BuildParams {
    /// The build context directory.
    pub context_path: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[serde(default)]
    pub dockerfile_path: Option<String>,
    /// Names for the image (`REGISTRY/REPO:TAG`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Target platforms (default: this machine's).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The stage to build.
    #[serde(default)]
    pub target: Option<String>,
    /// Build arguments.
    #[serde(default)]
    pub build_args: std::collections::BTreeMap<String, String>,
    /// Named contexts, `NAME=PATH`, `NAME=docker-image://REF`, `NAME=oci-layout://DIR`.
    #[serde(default)]
    pub build_contexts: Vec<String>,
    /// Image labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Do not use the step cache.
    #[serde(default)]
    pub no_cache: bool,
    /// Fetch base images again.
    #[serde(default)]
    pub pull: bool,
    /// Push to every tag after the build.
    #[serde(default)]
    pub push: bool,
    /// Outputs (`type=oci,dest=FILE`, `type=docker,dest=FILE`, `type=registry,name=REF`).
    #[serde(default)]
    pub outputs: Vec<String>,
}

/// `push`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PushParams {
    /// A local image: a name built by this server, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE` or a path.
    pub source: String,
    /// The registry reference to push to (`REGISTRY/REPO:TAG`).
    pub destination: String,
    /// More tags: `semver`, `git`, `digest`.
    #[serde(default)]
    pub tag_strategy: Vec<TagStrategy>,
    /// Only these platforms (default: all).
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// `copy`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CopyParams {
    /// What to copy (any transport).
    pub source: String,
    /// Where to (any transport).
    pub destination: String,
    /// Only these platforms (default: all).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// More tags for a registry destination: `semver`, `git`, `digest`.
    #[serde(default)]
    pub tag_strategy: Vec<TagStrategy>,
    /// Leave referrers (signatures, SBOMs) behind.
    #[serde(default)]
    pub no_referrers: bool,
}

/// `inspect`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InspectParams {
    /// The image (a registry reference, `oci:DIR`, `oci-archive:FILE`, …).
    pub image: String,
}

/// `scan`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ScanParams {
    /// The image (a registry reference, `oci:DIR`, `oci-archive:FILE`, …).
    pub image: String,
    /// Only these platforms of an index (`linux/arm64`); default every one.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Report only these severities (UNDEFINED, INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL).
    #[serde(default)]
    pub severities: Vec<String>,
    /// Leave out findings with no fixed version.
    #[serde(default)]
    pub ignore_unfixed: bool,
}

/// A scan: one report per platform.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ScanResult {
    /// Each platform's packages and findings.
    pub reports: Vec<ScanReport>,
}

/// `ensure_repository`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EnsureParams {
    /// `NAME` or `REGISTRY/NAME`.
    pub repository: String,
    /// The settings it must have.
    #[serde(default)]
    pub settings: RepoSettings,
    /// Change an existing repository's settings that differ (otherwise only reported).
    #[serde(default)]
    pub apply_settings: bool,
    /// The AWS region.
    #[serde(default)]
    pub region: Option<String>,
}

/// `list_images`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListImagesParams {
    /// `NAME` or `REGISTRY/NAME`.
    pub repository: String,
    /// The AWS region.
    #[serde(default)]
    pub region: Option<String>,
}

/// A repository's images.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ImagesResult {
    /// The repository.
    pub repository: String,
    /// Its images, newest push first.
    pub images: Vec<ImageDetailInfo>,
}

/// `describe_image`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DescribeImageParams {
    /// `NAME` or `REGISTRY/NAME`.
    pub repository: String,
    /// Tags or digests.
    pub image_ids: Vec<String>,
    /// The AWS region.
    #[serde(default)]
    pub region: Option<String>,
}

/// `lifecycle_preview`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LifecyclePreviewParams {
    /// `NAME` or `REGISTRY/NAME`.
    pub repository: String,
    /// A lifecycle policy to evaluate (the document, or its JSON text) instead of the
    /// repository's own.
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    /// The AWS region.
    #[serde(default)]
    pub region: Option<String>,
}

/// `lint`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LintParams {
    /// The Dockerfile.
    pub dockerfile_path: String,
    /// Failure threshold: error, warning, info, style, ignore or none (default: the project's
    /// .hadolint.yaml, else info).
    #[serde(default)]
    pub threshold: Option<String>,
}

/// `release`'s parameters.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReleaseParams {
    /// The build context directory.
    pub context_path: String,
    /// `NAME` or `REGISTRY/NAME`.
    pub repository: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[serde(default)]
    pub dockerfile_path: Option<String>,
    /// Platforms (default: linux/amd64 and linux/arm64).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The version (`v1.2.3`), the first tag.
    #[serde(default)]
    pub version: Option<String>,
    /// How tags are made: `semver`, `git`, `digest` (default: semver with a version, else latest).
    #[serde(default)]
    pub tag_strategy: Vec<TagStrategy>,
    /// The repository's settings.
    #[serde(default)]
    pub settings: RepoSettings,
    /// Change an existing repository's settings that differ.
    #[serde(default)]
    pub apply_settings: bool,
    /// Lint failure threshold (default warning; `none` skips the gate).
    #[serde(default)]
    pub lint_threshold: Option<String>,
    /// Fail on scan findings at or above this severity.
    #[serde(default)]
    pub scan_gate: Option<String>,
    /// Plan only: change nothing (allowed on a read-only server).
    #[serde(default)]
    pub dry_run: bool,
    /// Build arguments.
    #[serde(default)]
    pub build_args: std::collections::BTreeMap<String, String>,
}

/// A release's report, or the report so far and the failure.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReleaseResult {
    /// `success`.
    pub status: String,
    /// The image by digest, for the deploy step.
    pub image_uri: Option<String>,
    /// Every step's outcome.
    pub report: ReleaseReport,
}
