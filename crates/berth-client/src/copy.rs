//! The transfer engine: copies an image (an index with all its platforms, or one manifest) from
//! any source to any sink — blobs in parallel, largest first, skipping what the sink has,
//! verified while they stream; manifests byte-exact, children before parents; referrers
//! (signatures, SBOMs) along with what they refer to.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use berth_oci::{Digest, ManifestKind, ManifestRef, Platform, RefKind, Tag, media};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::ClientError;
use crate::image::{ByteStream, ImageSink, ImageSource, Placement, RawManifest};

/// Told about blob transfers as they happen (progress bars).
pub trait Progress: Send + Sync + fmt::Debug {
    /// A blob is about to be transferred (`skipped`: the sink already has it).
    fn blob_started(&self, digest: &Digest, size: u64, skipped: bool);
    /// `bytes` more of a blob went through.
    fn blob_advanced(&self, digest: &Digest, bytes: u64);
    /// A blob is stored.
    fn blob_done(&self, digest: &Digest);
}

/// How to copy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Blobs transferred at once.
    pub jobs: usize,
    /// The tag to give the root in the sink (sinks may also carry their own).
    pub tag: Option<Tag>,
    /// Only these platforms of an index (empty: all). One platform copies that platform's
    /// manifest as the image (its digest unchanged); several make a new index of just those.
    pub platforms: Vec<Platform>,
    /// Copy the referrers (OCI 1.1 `subject`) of every manifest copied.
    pub referrers: bool,
    /// Where to report progress.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            jobs: 6,
            tag: None,
            platforms: Vec::new(),
            referrers: true,
            progress: None,
        }
    }
}

/// One image (platform) of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The image manifest's digest.
    pub digest: Digest,
    /// Its platform, as the index declares it (`None` for a lone manifest).
    pub platform: Option<Platform>,
    /// Manifest, config and layers, in bytes.
    pub size: u64,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The root manifest's digest (the source's, unless a platform filter made a new index).
    pub digest: Option<Digest>,
    /// The root's media type.
    pub media_type: String,
    /// The images copied (one per platform of an index).
    pub images: Vec<ImageSummary>,
    /// Manifests written (referrers included).
    pub manifests: usize,
    /// Referrers copied.
    pub referrers: usize,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Blobs the sink already had (or mounted from another repository of its registry).
    pub blobs_skipped: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
}

/// Copies the source's image into the sink.
pub async fn copy(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &CopyOptions,
) -> Result<CopyReport, ClientError> {
    let (root, platform) = select_platforms(src, src.root().await?, &opts.platforms).await?;
    let mut report = CopyReport {
        digest: Some(root.digest.clone()),
        media_type: root.media_type.clone(),
        ..CopyReport::default()
    };
    let mut plan = Plan::default();
    plan.walk(src, &root, platform).await?;
    let mut seen: HashSet<Digest> = plan.manifests.iter().map(|m| m.0.digest.clone()).collect();
    // Every blob of every platform in one pool, so one platform's long tail never holds up
    // the next platform's transfers.
    transfer_blobs(src, dst, opts, &plan.blobs, &mut report).await?;
    let root_digest = root.digest.clone();
    for (m, platform, size) in &plan.manifests {
        let placement = if m.digest == root_digest {
            Placement::Root {
                tag: opts.tag.as_ref(),
            }
        } else {
            Placement::Child
        };
        dst.put_manifest(m, placement).await?;
        report.manifests += 1;
        if m.parse()?.kind == ManifestKind::Image {
            report.images.push(ImageSummary {
                digest: m.digest.clone(),
                platform: platform.clone(),
                size: *size,
            });
        }
    }
    if opts.referrers {
        let subjects: Vec<Digest> = plan.manifests.iter().map(|m| m.0.digest.clone()).collect();
        for subject in subjects.iter().rev() {
            copy_referrers(src, dst, opts, subject, &mut report, &mut seen).await?;
        }
    }
    dst.finish().await?;
    Ok(report)
}

/// What a copy moves: blobs (deduplicated) and manifests in the order they must be put —
/// children before parents, the root last — each with its platform and size.
#[derive(Default)]
struct Plan {
    blobs: Vec<ManifestRef>,
    manifests: Vec<(RawManifest, Option<Platform>, u64)>,
}

impl Plan {
    async fn walk(
        &mut self,
        src: &dyn ImageSource,
        m: &RawManifest,
        platform: Option<Platform>,
    ) -> Result<(), ClientError> {
        let parsed = m.parse()?;
        let mut size = m.bytes.len() as u64;
        for r in &parsed.references {
            match r.kind {
                RefKind::Manifest => {
                    let child = src.manifest(&r.digest).await?;
                    Box::pin(self.walk(src, &child, r.platform.clone())).await?;
                }
                _ => {
                    size += r.size;
                    if !self.blobs.iter().any(|b| b.digest == r.digest) {
                        self.blobs.push(r.clone());
                    }
                }
            }
        }
        self.manifests.push((m.clone(), platform, size));
        Ok(())
    }
}

/// Copies the referrers of `subject` (and theirs, recursively), each after its own content.
async fn copy_referrers(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &CopyOptions,
    subject: &Digest,
    report: &mut CopyReport,
    seen: &mut HashSet<Digest>,
) -> Result<(), ClientError> {
    for d in src.referrers(subject).await? {
        if !seen.insert(d.clone()) {
            continue;
        }
        let m = src.manifest(&d).await?;
        let mut plan = Plan::default();
        plan.walk(src, &m, None).await?;
        transfer_blobs(src, dst, opts, &plan.blobs, report).await?;
        for (pm, _, _) in &plan.manifests {
            let placement = if pm.digest == d {
                Placement::Referrer
            } else {
                Placement::Child
            };
            dst.put_manifest(pm, placement).await?;
            report.manifests += 1;
            seen.insert(pm.digest.clone());
        }
        report.referrers += 1;
        Box::pin(copy_referrers(src, dst, opts, &d, report, seen)).await?;
    }
    Ok(())
}

/// Transfers blobs in parallel, largest first, skipping (or mounting) what the sink has.
async fn transfer_blobs(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &CopyOptions,
    blobs: &[ManifestRef],
    report: &mut CopyReport,
) -> Result<(), ClientError> {
    // Owned (not borrowed) refs: the per-blob futures then hold no higher-ranked lifetimes,
    // so a copy can run inside a spawned task (the registry's replication does).
    let mut blobs: Vec<ManifestRef> = blobs.to_vec();
    // Largest first: the long pole starts first.
    blobs.sort_by_key(|r| (std::cmp::Reverse(r.size), r.digest.clone()));
    let progress = opts.progress.clone();
    let origin = src.mount_origin();
    let results: Vec<Option<u64>> = futures::stream::iter(blobs)
        .map(|r: ManifestRef| {
            let progress = progress.clone();
            let origin = origin.clone();
            async move {
                let mounted = match &origin {
                    Some(o) => dst.mount_blob(&r.digest, o).await?,
                    None => false,
                };
                if mounted || dst.has_blob(&r.digest, r.size).await? {
                    if let Some(p) = &progress {
                        p.blob_started(&r.digest, r.size, true);
                    }
                    return Ok::<_, ClientError>(None);
                }
                if let Some(p) = &progress {
                    p.blob_started(&r.digest, r.size, false);
                }
                let mut data = src.blob(&r.digest, r.size).await?;
                if let Some(p) = progress.clone() {
                    data = counted(data, r.digest.clone(), p);
                }
                dst.put_blob(&r.digest, r.size, data).await?;
                if let Some(p) = &progress {
                    p.blob_done(&r.digest);
                }
                Ok(Some(r.size))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_collect()
        .await?;
    for r in results {
        match r {
            Some(n) => {
                report.blobs_copied += 1;
                report.bytes_copied += n;
            }
            None => report.blobs_skipped += 1,
        }
    }
    Ok(())
}

/// Applies a `--platform` filter to the root; the platform, when one child was chosen.
async fn select_platforms(
    src: &dyn ImageSource,
    root: RawManifest,
    wanted: &[Platform],
) -> Result<(RawManifest, Option<Platform>), ClientError> {
    if wanted.is_empty() {
        return Ok((root, None));
    }
    let parsed = root.parse()?;
    if parsed.kind != ManifestKind::Index {
        // A lone manifest is taken as it is: its platform lives in its config.
        return Ok((root, None));
    }
    let children: Vec<_> = parsed
        .references
        .iter()
        .filter(|r| r.kind == RefKind::Manifest)
        .collect();
    let chosen: Vec<_> = children
        .iter()
        .filter(|c| {
            c.platform
                .as_ref()
                .is_some_and(|p| wanted.iter().any(|w| w.matches(p)))
        })
        .collect();
    for w in wanted {
        if !chosen
            .iter()
            .any(|c| c.platform.as_ref().is_some_and(|p| w.matches(p)))
        {
            let have: Vec<String> = children
                .iter()
                .filter_map(|c| c.platform.as_ref().map(ToString::to_string))
                .collect();
            return Err(ClientError::NotFound(format!(
                "platform {w} is not in the image (it has {})",
                have.join(", ")
            )));
        }
    }
    if let [one] = chosen.as_slice() {
        return Ok((src.manifest(&one.digest).await?, one.platform.clone()));
    }
    // Several: a new index listing just those (the source's entries kept as they were).
    let mut index: Value =
        serde_json::from_slice(&root.bytes).map_err(|e| ClientError::Manifest(e.to_string()))?;
    let keep: HashSet<String> = chosen.iter().map(|c| c.digest.to_string()).collect();
    if let Some(list) = index["manifests"].as_array_mut() {
        list.retain(|m| m["digest"].as_str().is_some_and(|d| keep.contains(d)));
    }
    let bytes =
        Bytes::from(serde_json::to_vec(&index).map_err(|e| ClientError::Manifest(e.to_string()))?);
    let digest = Digest::sha256(&bytes);
    let media_type = if root.media_type.is_empty() {
        media::OCI_INDEX.to_owned()
    } else {
        root.media_type.clone()
    };
    Ok((RawManifest::verified(bytes, &media_type, &digest)?, None))
}

/// Reports each chunk of a stream to `progress`.
fn counted(data: ByteStream, digest: Digest, progress: Arc<dyn Progress>) -> ByteStream {
    data.inspect_ok(move |chunk| progress.blob_advanced(&digest, chunk.len() as u64))
        .boxed()
}
