//! The one image model every source and sink speaks: manifests as raw bytes (never
//! re-serialised, so digests never change) and blobs as verified byte streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use berth_oci::{Digest, Hasher, Manifest, ManifestKind, Tag};
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use crate::ClientError;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, ClientError>>;

/// A manifest exactly as stored: its bytes, media type and the digest of those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The raw bytes (what the digest covers).
    pub bytes: Bytes,
    /// The media type it is served with.
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl RawManifest {
    /// Wraps bytes fetched for `expected`, refusing them if they do not hash to it.
    pub fn verified(
        bytes: Bytes,
        media_type: &str,
        expected: &Digest,
    ) -> Result<Self, ClientError> {
        let actual = Digest::of(expected.algorithm(), &bytes);
        if actual != *expected {
            return Err(ClientError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(RawManifest {
            bytes,
            media_type: media_type.to_owned(),
            digest: actual,
        })
    }

    /// Parses the bytes (validating them) into what they reference.
    pub fn parse(&self) -> Result<Manifest, ClientError> {
        Manifest::parse(Some(&self.media_type), &self.bytes)
            .map_err(|e| ClientError::Manifest(e.to_string()))
    }

    /// Whether this is an index / manifest list.
    pub fn is_index(&self) -> Result<bool, ClientError> {
        Ok(self.parse()?.kind == ManifestKind::Index)
    }
}

/// Where a manifest goes in the copied image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement<'a> {
    /// A child of an index: stored by digest only.
    Child,
    /// The image's root: tagged `tag` if given, else as the sink's own reference says.
    Root {
        /// An explicit tag overriding the sink's.
        tag: Option<&'a Tag>,
    },
    /// A referrer (signature, SBOM, attestation) of something in the image: stored by digest,
    /// and listed where the sink lists what it holds (an OCI layout's `index.json`).
    Referrer,
}

/// Where images are read from (a registry, an OCI layout, an archive).
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// The manifest the source's reference names.
    async fn root(&self) -> Result<RawManifest, ClientError>;
    /// A manifest by digest (children of an index).
    async fn manifest(&self, digest: &Digest) -> Result<RawManifest, ClientError>;
    /// A blob's bytes, verified against `digest` and `size` while they stream.
    async fn blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, ClientError>;
    /// The manifests whose `subject` is `digest` (OCI 1.1 referrers). Sources that cannot hold
    /// referrers have none.
    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, ClientError> {
        let _ = digest;
        Ok(Vec::new())
    }
    /// Where the source's blobs live, when a registry could mount them from there.
    fn mount_origin(&self) -> Option<MountOrigin> {
        None
    }
}

/// A registry repository blobs can be mounted from (`?mount=…&from=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOrigin {
    /// The registry's API host (`registry.example:5000`).
    pub host: String,
    /// The repository on it.
    pub repository: String,
}

/// Where images are written to.
#[async_trait]
pub trait ImageSink: Send + Sync {
    /// Whether the sink already has the blob (it is then not transferred).
    async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, ClientError>;
    /// Stores a blob from a stream (which fails if the bytes do not match `digest`).
    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        data: ByteStream,
    ) -> Result<(), ClientError>;
    /// Stores a manifest. The engine puts children before their parents and the root last.
    async fn put_manifest(
        &self,
        manifest: &RawManifest,
        placement: Placement<'_>,
    ) -> Result<(), ClientError>;
    /// Asks the sink to take the blob from `origin` without transferring it (a cross-repository
    /// mount on the same registry). `Ok(false)`: it could not; the blob is then copied.
    async fn mount_blob(&self, digest: &Digest, origin: &MountOrigin) -> Result<bool, ClientError> {
        let _ = (digest, origin);
        Ok(false)
    }
    /// Completes the write (a layout writes its `index.json`).
    async fn finish(&self) -> Result<(), ClientError>;
}

/// Reads a small blob (a config) whole, refusing more than `limit` bytes.
pub async fn read_blob(
    src: &dyn ImageSource,
    digest: &Digest,
    size: u64,
    limit: u64,
) -> Result<Bytes, ClientError> {
    use futures::StreamExt;
    if size > limit {
        return Err(ClientError::SizeMismatch {
            digest: digest.clone(),
            expected: limit,
            actual: size,
        });
    }
    let mut s = src.blob(digest, size).await?;
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = s.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(buf.freeze())
}

/// Wraps a stream so it fails — at the end, before the last bytes count as delivered — unless
/// exactly `size` bytes hashing to `digest` went through.
pub fn verify(inner: ByteStream, digest: &Digest, size: u64) -> ByteStream {
    Box::pin(Verify {
        inner,
        hasher: Some(digest.algorithm().hasher()),
        expected: digest.clone(),
        size,
        seen: 0,
    })
}

struct Verify {
    inner: ByteStream,
    hasher: Option<Hasher>,
    expected: Digest,
    size: u64,
    seen: u64,
}

impl Stream for Verify {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.size {
                    this.hasher = None;
                    return Poll::Ready(Some(Err(ClientError::SizeMismatch {
                        digest: this.expected.clone(),
                        expected: this.size,
                        actual: this.seen,
                    })));
                }
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let Some(h) = this.hasher.take() else {
                    return Poll::Ready(None);
                };
                if this.seen != this.size {
                    return Poll::Ready(Some(Err(ClientError::SizeMismatch {
                        digest: this.expected.clone(),
                        expected: this.size,
                        actual: this.seen,
                    })));
                }
                let actual = h.finish();
                if actual != this.expected {
                    return Poll::Ready(Some(Err(ClientError::DigestMismatch {
                        expected: this.expected.clone(),
                        actual,
                    })));
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}
