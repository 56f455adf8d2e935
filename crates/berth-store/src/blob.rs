//! The blob-store trait: content-addressed bytes and staged uploads.

use std::fmt;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::StoreError;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Asked by a store that keeps hash state with its staged bytes, once an append has consumed
/// its stream: the saved hash (`berth_oci::Hasher::save`) of the upload's first `n` bytes, with
/// `n` (the store keeps it only if `n` is the staged size). Stored with the staged bytes in one
/// write, it lets a chunk that lands on another replica continue the upload without re-reading
/// what came before.
pub type HashCheckpoint<'a> = &'a (dyn Fn() -> Option<(u64, Vec<u8>)> + Send + Sync);

/// Asked by [`BlobStore::put_stream`] once its stream has ended, with the number of bytes it
/// carried: whether they are the blob (the caller hashed them as they went by). The blob becomes
/// visible only after a `true`.
pub type Verify<'a> = &'a (dyn Fn(u64) -> bool + Send + Sync);

/// An upload session id: a random UUID in its hyphenated form.
///
/// **Invariant:** only `[0-9a-f-]`, 36 characters, so it is safe in paths and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn random() -> Self {
        UploadId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Accepts only the hyphenated lowercase UUID form berth hands out.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 36
            && s.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && uuid::Uuid::try_parse(s).is_ok();
        ok.then(|| UploadId(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Content-addressed blob storage with staged uploads.
///
/// Contract: a blob is readable at its digest only after [`BlobStore::upload_commit`] or
/// [`BlobStore::put`] returned, and then it is durable. The store does not hash: callers verify
/// the digest while streaming (so hashing overlaps writing) and pass only verified digests.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// The size of a stored blob, `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// Streams `len` bytes from `offset` (the whole blob for `0..size`).
    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError>;

    /// Reads a small blob (a manifest) whole.
    async fn get(&self, digest: &Digest) -> Result<Bytes, StoreError>;

    /// Stores small, already verified bytes (a manifest) durably at `digest`.
    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StoreError>;

    /// Removes a blob; absent blobs are not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Removes several blobs (the collector's sweep); absent blobs are not an error. Stores
    /// that can, do it in one round trip.
    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StoreError> {
        for d in digests {
            self.delete(d).await?;
        }
        Ok(())
    }

    /// Whether [`BlobStore::put_stream`] writes a blob straight to its content address (an
    /// object store, where staging costs requests and a server-side copy). Stores that answer
    /// `false` (the filesystem) do not implement it: their staging is as cheap as a direct write.
    fn puts_streams(&self) -> bool {
        false
    }

    /// Streams a whole blob of `len` bytes to `digest` without staging it, in bounded memory. Once
    /// the stream has ended, `verify` decides: on `true` the blob is durable and visible (`Ok(true)`),
    /// on `false` nothing is (`Ok(false)`). A failure or a dropped call leaves no blob. Only for
    /// stores whose [`BlobStore::puts_streams`] is `true`; the others answer
    /// [`StoreError::Unsupported`].
    async fn put_stream(
        &self,
        digest: &Digest,
        len: u64,
        data: ByteStream,
        verify: Verify<'_>,
    ) -> Result<bool, StoreError> {
        let _ = (digest, len, data, verify);
        Err(StoreError::Unsupported(
            "this store stages uploads instead of streaming whole blobs".into(),
        ))
    }

    /// Creates empty staging space for an upload. An object store creates nothing until the
    /// first byte arrives: there an upload it has no trace of is empty.
    async fn upload_start(&self, id: &UploadId) -> Result<(), StoreError>;

    /// How many bytes are staged. [`StoreError::UploadUnknown`] for an upload never started
    /// or already ended, except in stores that create nothing before the first byte (see
    /// [`BlobStore::upload_start`]), which answer 0.
    async fn upload_size(&self, id: &UploadId) -> Result<u64, StoreError>;

    /// Appends a stream at `offset`, which must be the staged size; returns the new size. If the
    /// stream fails ([`StoreError::Stream`]) the bytes received before it stay staged (a client may
    /// resume after them, or the caller may [`BlobStore::upload_truncate`] them away).
    ///
    /// A store that keeps hash state (see [`BlobStore::upload_hash_state`]) asks `checkpoint`
    /// for it once the stream is consumed, and saves it with the staged bytes.
    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        data: ByteStream,
        checkpoint: Option<HashCheckpoint<'_>>,
    ) -> Result<u64, StoreError>;

    /// The hash state saved with an upload's staged bytes by the last append, with the number
    /// of bytes it covers. `None` from stores that keep none (the filesystem store: re-reading
    /// local staged bytes is cheap, and they are on one machine).
    async fn upload_hash_state(&self, id: &UploadId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let _ = id;
        Ok(None)
    }

    /// Cuts the staged bytes back to `len` (to undo a chunk that did not arrive whole). Stores
    /// whose staged parts are immutable (S3) can cut back only to where the last append started.
    async fn upload_truncate(&self, id: &UploadId, len: u64) -> Result<(), StoreError>;

    /// Milliseconds since the epoch of the last change to the staged bytes.
    async fn upload_modified(&self, id: &UploadId) -> Result<i64, StoreError>;

    /// Streams the staged bytes back (to re-hash an upload whose hash state was lost). An
    /// object store cannot read the parts of an unfinished multipart upload: it answers
    /// [`StoreError::Unsupported`] once parts are staged (its appends save the hash state).
    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream, StoreError>;

    /// Makes the staged bytes the durable blob `digest` (verified by the caller) and ends the
    /// upload. Returns the blob size.
    async fn upload_commit(&self, id: &UploadId, digest: &Digest) -> Result<u64, StoreError>;

    /// Discards an upload's staged bytes; absent uploads are not an error.
    async fn upload_abort(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Every upload id with staged data (to clean up sessions the metadata store forgot).
    async fn upload_list(&self) -> Result<Vec<UploadId>, StoreError>;

    /// Every stored blob with the time it was last written, milliseconds since the epoch (the
    /// garbage collector's listing, to find bytes the metadata store does not know).
    async fn list(&self) -> Result<Vec<(Digest, i64)>, StoreError>;

    /// A URL a client may fetch the blob from directly for `expires` (a presigned object-store
    /// URL), `None` when the store has no such thing (the filesystem store).
    async fn download_url(
        &self,
        digest: &Digest,
        expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        let _ = (digest, expires);
        Ok(None)
    }

    /// A cheap check that the store is reachable: its root can be listed and its staging space
    /// exists (readiness probes). Reads no blob.
    async fn ready(&self) -> Result<(), StoreError>;
}
