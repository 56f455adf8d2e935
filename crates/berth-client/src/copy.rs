//! The transfer engine: copies an image (an index with all its platforms, or one manifest) from
//! any source to any sink — blobs in parallel, largest first, skipping what the sink has,
//! verified while they stream; manifests byte-exact, children before parents.

use berth_oci::{Digest, ManifestKind, RefKind, Tag};
use futures::{StreamExt, TryStreamExt};

use crate::ClientError;
use crate::image::{ImageSink, ImageSource, Placement, RawManifest};

/// How to copy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Blobs transferred at once.
    pub jobs: usize,
    /// The tag to give the root in the sink (sinks may also carry their own).
    pub tag: Option<Tag>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { jobs: 6, tag: None }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The root manifest's digest (unchanged from the source).
    pub digest: Option<Digest>,
    /// Manifests written.
    pub manifests: usize,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Blobs the sink already had.
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
    let root = src.root().await?;
    let mut report = CopyReport {
        digest: Some(root.digest.clone()),
        ..CopyReport::default()
    };
    copy_tree(src, dst, opts, &root, &mut report).await?;
    dst.put_manifest(
        &root,
        Placement::Root {
            tag: opts.tag.as_ref(),
        },
    )
    .await?;
    report.manifests += 1;
    dst.finish().await?;
    Ok(report)
}

/// Everything below `m` (not `m` itself).
async fn copy_tree(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &CopyOptions,
    m: &RawManifest,
    report: &mut CopyReport,
) -> Result<(), ClientError> {
    let parsed = m.parse()?;
    if parsed.kind == ManifestKind::Index {
        for child in parsed
            .references
            .iter()
            .filter(|r| r.kind == RefKind::Manifest)
        {
            let cm = src.manifest(&child.digest).await?;
            Box::pin(copy_tree(src, dst, opts, &cm, report)).await?;
            dst.put_manifest(&cm, Placement::Child).await?;
            report.manifests += 1;
        }
        return Ok(());
    }
    let mut blobs: Vec<_> = parsed
        .references
        .iter()
        .filter(|r| r.kind == RefKind::Blob)
        .collect();
    // Largest first (the long pole starts first); equal digests adjacent so dedup sees them.
    blobs.sort_by_key(|r| (std::cmp::Reverse(r.size), r.digest.clone()));
    blobs.dedup_by(|a, b| a.digest == b.digest);
    let results: Vec<Option<u64>> = futures::stream::iter(blobs)
        .map(|r| async move {
            if dst.has_blob(&r.digest, r.size).await? {
                return Ok::<_, ClientError>(None);
            }
            let data = src.blob(&r.digest, r.size).await?;
            dst.put_blob(&r.digest, r.size, data).await?;
            Ok(Some(r.size))
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
