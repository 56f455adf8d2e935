//! Copying images between registries, layouts and archives, and the registry operations that
//! move no blobs (tags, digest, tag, delete).

use std::path::Path;
use std::sync::Arc;

use berth_client::image::{ImageSink, ImageSource, Placement};
use berth_client::{CopyOptions, CopyReport, Progress, copy};
use berth_oci::Platform;
use schemars::JsonSchema;
use serde::Serialize;

use crate::endpoint::{Bare, Endpoint, parse_tag};
use crate::error::{OpsError, Result, ResultExt};

/// How extra tags are derived when an image is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TagStrategy {
    /// From a vMAJOR.MINOR.PATCH tag: also vMAJOR.MINOR, vMAJOR and latest.
    Semver,
    /// The current git commit (7 hex digits) and branch.
    Git,
    /// A content tag: the first 12 hex digits of the manifest digest.
    Digest,
}

impl std::str::FromStr for TagStrategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "semver" => Ok(TagStrategy::Semver),
            "git" => Ok(TagStrategy::Git),
            "digest" => Ok(TagStrategy::Digest),
            other => Err(format!(
                "unknown tag strategy {other:?} (semver, git or digest)"
            )),
        }
    }
}

/// What to copy, from where to where.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyRequest {
    /// The source, in any transport.
    pub src: String,
    /// What a bare source means.
    pub src_bare: Bare,
    /// The destination, in any transport.
    pub dst: String,
    /// What a bare destination means.
    pub dst_bare: Bare,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Only these platforms of an index (empty: all).
    pub platforms: Vec<Platform>,
    /// Copy referrers (signatures, SBOMs) too.
    pub referrers: bool,
    /// Extra tags for a registry destination.
    pub tag_strategy: Vec<TagStrategy>,
    /// Where `git` tags come from (default: the current directory).
    pub git_dir: Option<std::path::PathBuf>,
    /// Registries reached over plain HTTP.
    pub insecure: Vec<String>,
}

impl CopyRequest {
    /// A registry-to-registry copy with the defaults of `berth copy`.
    pub fn new(src: impl Into<String>, dst: impl Into<String>) -> Self {
        CopyRequest {
            src: src.into(),
            src_bare: Bare::Registry,
            dst: dst.into(),
            dst_bare: Bare::Registry,
            jobs: 6,
            platforms: Vec::new(),
            referrers: true,
            tag_strategy: Vec::new(),
            git_dir: None,
            insecure: Vec::new(),
        }
    }
}

/// One platform's image in a report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformDigest {
    /// `linux/amd64`, when the index says.
    pub platform: Option<String>,
    /// The image manifest's digest.
    pub digest: String,
    /// Manifest + config + layers, in bytes.
    pub size: u64,
}

/// What a copy did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyOutcome {
    /// The source as given.
    pub source: String,
    /// Every reference written (the destination, then the strategy's tags).
    pub references: Vec<String>,
    /// The root manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Each platform's image.
    pub images: Vec<PlatformDigest>,
    /// Manifests written.
    pub manifests: usize,
    /// Referrers copied.
    pub referrers: usize,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Wall time.
    pub seconds: f64,
}

impl CopyOutcome {
    fn new(report: &CopyReport, source: &str, references: Vec<String>, seconds: f64) -> Self {
        CopyOutcome {
            source: source.to_owned(),
            references,
            digest: report
                .digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            media_type: report.media_type.clone(),
            images: report
                .images
                .iter()
                .map(|i| PlatformDigest {
                    platform: i.platform.as_ref().map(ToString::to_string),
                    digest: i.digest.to_string(),
                    size: i.size,
                })
                .collect(),
            manifests: report.manifests,
            referrers: report.referrers,
            blobs_copied: report.blobs_copied,
            blobs_skipped: report.blobs_skipped,
            bytes_copied: report.bytes_copied,
            seconds,
        }
    }
}

/// Copies an image, then gives a registry destination the tag strategy's extra tags (the same
/// manifest bytes under each).
pub async fn copy_image(
    req: &CopyRequest,
    progress: Option<Arc<dyn Progress>>,
) -> Result<CopyOutcome> {
    let src = Endpoint::parse(&req.src, req.src_bare, false, &req.insecure)?;
    let dst = Endpoint::parse(&req.dst, req.dst_bare, true, &req.insecure)?;
    if req.dst_bare == Bare::Registry
        && dst.reference().is_none()
        && req.src_bare == Bare::LocalSource
    {
        return Err(OpsError::usage(format!(
            "push: {:?} is not a registry reference",
            req.dst
        )));
    }
    let dst_ref = dst.reference().cloned();
    if !req.tag_strategy.is_empty() && dst_ref.is_none() {
        return Err(OpsError::usage(
            "--tag-strategy needs a registry destination",
        ));
    }
    let mut extra: Vec<String> = Vec::new();
    for s in &req.tag_strategy {
        match s {
            TagStrategy::Semver => {
                let tag = dst_ref
                    .as_ref()
                    .and_then(|r| r.tag())
                    .map(ToString::to_string)
                    .ok_or_else(|| {
                        OpsError::usage("--tag-strategy semver: the destination has no tag")
                    })?;
                extra.extend(semver_tags(&tag)?);
            }
            TagStrategy::Git => extra.extend(git_tags(req.git_dir.as_deref())?),
            TagStrategy::Digest => {} // known after the copy
        }
    }
    let mut opts = CopyOptions::default();
    opts.jobs = req.jobs.max(1);
    opts.platforms = req.platforms.clone();
    opts.referrers = req.referrers;
    opts.progress = progress;
    let started = std::time::Instant::now();
    let source = src.source()?;
    let sink = dst.sink()?;
    let report = copy(source, sink, &opts)
        .await
        .context(|| format!("copying {} to {}", req.src, req.dst))?;
    let mut written = vec![req.dst.clone()];
    if let (Some(r), Some(digest)) = (&dst_ref, &report.digest) {
        if req.tag_strategy.contains(&TagStrategy::Digest) {
            extra.push(digest.hex()[..12].to_owned());
        }
        let mut seen = std::collections::BTreeSet::new();
        extra.retain(|t| seen.insert(t.clone()) && Some(t.as_str()) != r.tag().map(|t| t.as_str()));
        let root = source
            .root()
            .await
            .context(|| "re-reading the root manifest".to_owned())?;
        let root = if &root.digest == digest {
            root
        } else {
            // A platform filter chose a child or made a new index: tag what was copied.
            dst.source()?
                .manifest(digest)
                .await
                .context(|| "reading back the pushed manifest".to_owned())?
        };
        for t in &extra {
            let tag = parse_tag(t)?;
            sink.put_manifest(&root, Placement::Root { tag: Some(&tag) })
                .await
                .context(|| format!("tagging {}:{t}", r.familiar_name()))?;
            written.push(r.with_tag(tag).to_string());
        }
    }
    Ok(CopyOutcome::new(
        &report,
        &req.src,
        written,
        started.elapsed().as_secs_f64(),
    ))
}

/// Copies `src` to a destination spelled as `berth copy` takes it, with default options.
pub async fn copy_to(
    src: &dyn ImageSource,
    source_name: &str,
    dst_spec: &str,
    insecure: &[String],
    progress: Option<Arc<dyn Progress>>,
) -> Result<CopyOutcome> {
    let dst = Endpoint::parse(dst_spec, Bare::Registry, true, insecure)?;
    let mut opts = CopyOptions::default();
    opts.progress = progress;
    let started = std::time::Instant::now();
    let report = copy(src, dst.sink()?, &opts)
        .await
        .context(|| format!("writing {dst_spec}"))?;
    Ok(CopyOutcome::new(
        &report,
        source_name,
        vec![dst_spec.to_owned()],
        started.elapsed().as_secs_f64(),
    ))
}

/// The short commit and the branch of the git checkout at `dir` (default: the current
/// directory), as tags.
pub fn git_tags(dir: Option<&Path>) -> Result<Vec<String>> {
    let run = |args: &[&str]| -> Result<String> {
        let mut cmd = std::process::Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| OpsError::usage(format!("--tag-strategy git: running git: {e}")))?;
        if !out.status.success() {
            return Err(OpsError::usage(format!(
                "--tag-strategy git: git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let mut tags = vec![run(&["rev-parse", "--short=7", "HEAD"])?];
    let branch = run(&["rev-parse", "--abbrev-ref", "HEAD"])?;
    if branch != "HEAD" {
        tags.push(sanitize_tag(&branch));
    }
    Ok(tags)
}

/// A branch name as a valid tag (`feature/x` → `feature-x`).
pub fn sanitize_tag(s: &str) -> String {
    let mut t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    while t.starts_with(['.', '-']) {
        t.remove(0);
    }
    t.truncate(128);
    if t.is_empty() { "branch".to_owned() } else { t }
}

/// `[v]MAJOR.MINOR.PATCH` → `[v]MAJOR.MINOR`, `[v]MAJOR`, `latest`; a pre-release gets none.
pub fn semver_tags(tag: &str) -> Result<Vec<String>> {
    let (prefix, version) = match tag.strip_prefix('v') {
        Some(v) => ("v", v),
        None => ("", tag),
    };
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [maj, min, patch]
            if numeric(maj)
                && numeric(min)
                && numeric(patch.split(['-', '+']).next().unwrap_or("")) =>
        {
            if patch.contains('-') {
                return Ok(Vec::new());
            }
            Ok(vec![
                format!("{prefix}{maj}.{min}"),
                format!("{prefix}{maj}"),
                "latest".to_owned(),
            ])
        }
        _ => Err(OpsError::usage(format!(
            "--tag-strategy semver: the tag {tag:?} is not [v]MAJOR.MINOR.PATCH"
        ))),
    }
}

/// A registry repository, or a usage error for a spec that names something else.
pub fn registry_only(
    spec: &str,
    insecure: &[String],
) -> Result<(berth_client::registry::RegistryImage, berth_oci::ImageRef)> {
    match Endpoint::parse(spec, Bare::Registry, false, insecure)? {
        Endpoint::Registry(i, r) => Ok((i, r)),
        _ => Err(OpsError::usage(format!(
            "{spec:?}: this works on registries only"
        ))),
    }
}

/// A repository's tags, sorted.
pub async fn list_tags(repository: &str, insecure: &[String]) -> Result<Vec<String>> {
    let (image, _) = registry_only(repository, insecure)?;
    let mut tags = image.tags().await?;
    tags.sort();
    Ok(tags)
}

/// The digest an image resolves to (any transport).
pub async fn resolve_digest(image: &str, insecure: &[String]) -> Result<String> {
    let ep = Endpoint::parse(image, Bare::Registry, false, insecure)?;
    let digest = match &ep {
        Endpoint::Registry(i, _) => i.resolve().await?,
        _ => ep.source()?.root().await?.digest,
    };
    Ok(digest.to_string())
}

/// Gives a registry image more tags in its repository; returns the references written.
pub async fn add_tags(image: &str, tags: &[String], insecure: &[String]) -> Result<Vec<String>> {
    let (img, r) = registry_only(image, insecure)?;
    let tags = tags
        .iter()
        .map(|t| parse_tag(t))
        .collect::<Result<Vec<_>>>()?;
    let root = img.root().await.context(|| format!("reading {image}"))?;
    let mut written = Vec::new();
    for tag in tags {
        let name = r.with_tag(tag.clone()).to_string();
        img.put_manifest(&root, Placement::Root { tag: Some(&tag) })
            .await
            .context(|| format!("tagging {name}"))?;
        written.push(name);
    }
    Ok(written)
}

/// Deletes a tag (`repo:tag`) or a manifest and its tags (`repo@digest`); returns what it named.
pub async fn remove(image: &str, insecure: &[String]) -> Result<String> {
    let (img, r) = registry_only(image, insecure)?;
    img.delete().await.context(|| format!("removing {r}"))?;
    Ok(r.to_string())
}
