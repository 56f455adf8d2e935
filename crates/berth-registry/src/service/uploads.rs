//! Blob uploads, one part of [`Registry`]: sessions (start, status, chunks, completion,
//! cancel), whole blobs written once at their digest, and the hash that follows the staged
//! bytes (kept per upload, resumed from the store's saved state or by re-reading).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_oci::{Algorithm, Digest, Hasher, RepoName};
use berth_store::{BlobStore, ByteStream, StoreError, UploadId, UploadLimits, UploadRecord};
use futures::StreamExt;

use super::{HashState, Registry, UploadStatus};
use crate::error::RegistryError;

/// Blobs up to this size sent whole in one request body are received in memory and written
/// once at their digest, without staging.
const SMALL_BLOB: u64 = 4 * 1024 * 1024;

/// A body stream with a byte limit that hashes what passes through.
struct Metered {
    hash: Arc<Mutex<HashState>>,
    over_limit: Arc<std::sync::atomic::AtomicBool>,
}

impl Registry {
    /// Opens an upload session (within the limits on open sessions).
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadId, RegistryError> {
        self.repository_for_push(repo).await?;
        self.meta
            .check_quota(repo, None, 0, self.config.quota)
            .await?;
        let id = UploadId::random();
        self.blobs.upload_start(&id).await?;
        let limits = UploadLimits {
            per_repository: self.config.max_uploads_per_repository,
            total: self.config.max_uploads,
        };
        if let Err(e) = self.meta.create_upload(&id, repo, limits).await {
            self.blobs.upload_abort(&id).await?;
            return Err(e.into());
        }
        Ok(id)
    }

    async fn session(&self, repo: &RepoName, id: &str) -> Result<UploadId, RegistryError> {
        Ok(self.session_record(repo, id).await?.id)
    }

    /// The session `id` of `repo`, with its record.
    async fn session_record(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<UploadRecord, RegistryError> {
        let id = UploadId::parse(id).ok_or(RegistryError::UploadUnknown)?;
        match self.meta.upload(&id).await? {
            Some(rec) if rec.repo == *repo => Ok(rec),
            _ => Err(RegistryError::UploadUnknown),
        }
    }

    /// Bytes staged in an upload.
    pub async fn upload_status(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<UploadStatus, RegistryError> {
        let id = self.session(repo, id).await?;
        let size = self.blobs.upload_size(&id).await?;
        Ok(UploadStatus { id, size })
    }

    /// Appends a chunk. `range` is the `Content-Range` (`start`, `end` inclusive) if sent,
    /// `declared` the `Content-Length` if sent.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        declared: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, RegistryError> {
        self.append(repo, id, range, declared, None, body).await
    }

    /// Appends one part of an ECR layer upload (bytes `first..=last`), recorded first, under
    /// the upload's lock, for the minimum-part-size rule (see
    /// [`MetadataStore::record_upload_part`]).
    pub async fn append_part(
        &self,
        repo: &RepoName,
        id: &str,
        range: (u64, u64),
        min_part: u64,
        body: ByteStream,
    ) -> Result<UploadStatus, RegistryError> {
        self.append(repo, id, Some(range), None, Some(min_part), body)
            .await
    }

    async fn append(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        declared: Option<u64>,
        min_part: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, RegistryError> {
        let _permit = self.upload_permit()?;
        let id = self.session(repo, id).await?;
        let slot = self.slot(&id);
        let mut state = slot.lock().await;
        let size = self
            .append_locked(&id, &mut state, None, range, declared, min_part, body)
            .await?;
        Ok(UploadStatus { id, size })
    }

    /// Appends one request body to an upload. A body of known length (`Content-Range` or
    /// `Content-Length`) lands whole or not at all: if it breaks off, the staged data is cut back
    /// to where it was. A streamed body of unknown length keeps what arrived. With `min_part`
    /// (an ECR part), the part is recorded before it is appended. `staged`: the staged size if
    /// the caller just read it.
    #[allow(clippy::too_many_arguments)]
    async fn append_locked(
        &self,
        id: &UploadId,
        state: &mut Option<HashState>,
        staged: Option<u64>,
        range: Option<(u64, u64)>,
        declared: Option<u64>,
        min_part: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let offset = match staged {
            Some(n) => n,
            None => self.blobs.upload_size(id).await?,
        };
        let mut expect = declared;
        if let Some((start, end)) = range {
            let len = end
                .checked_sub(start)
                .and_then(|d| d.checked_add(1))
                .ok_or_else(|| {
                    RegistryError::UploadInvalid(format!("Content-Range {start}-{end} is inverted"))
                })?;
            if start != offset {
                return Err(RegistryError::RangeNotSatisfiable { start, offset });
            }
            if let Some(d) = declared.filter(|&d| d != len) {
                return Err(RegistryError::UploadInvalid(format!(
                    "Content-Range covers {len} bytes but Content-Length is {d}"
                )));
            }
            expect = Some(len);
        }
        let limit = self.config.max_blob_size;
        let too_large = || RegistryError::TooLarge {
            what: "blob",
            limit,
        };
        let max_total = match expect {
            Some(n) => offset
                .checked_add(n)
                .filter(|&t| t <= limit)
                .ok_or_else(too_large)?,
            None => limit,
        };
        if let (Some(min), Some(len)) = (min_part, expect) {
            self.meta.record_upload_part(id, offset, len, min).await?;
        }
        let before = match state.take() {
            Some(h) if h.bytes == offset && h.hasher.algorithm() == Algorithm::Sha256 => h,
            _ => self.resume_hash(id, offset, Algorithm::Sha256).await?,
        };
        if expect == Some(0) {
            // An empty body (the final PUT of most clients): nothing to append.
            *state = Some(before);
            return Ok(offset);
        }
        let meter = Metered {
            hash: Arc::new(Mutex::new(before.clone())),
            over_limit: Arc::default(),
        };
        let stream = with_idle_timeout(
            metered(body, &meter, max_total),
            self.config.body_idle_timeout,
        );
        let checkpoint_hash = Arc::clone(&meter.hash);
        let checkpoint = move || {
            let h = checkpoint_hash.lock().ok()?;
            Some((h.bytes, h.hasher.save()))
        };
        let appended = self
            .blobs
            .upload_append(id, offset, stream, Some(&checkpoint))
            .await;
        let over = meter.over_limit.load(std::sync::atomic::Ordering::SeqCst);
        let hash = Arc::try_unwrap(meter.hash)
            .ok()
            .and_then(|m| m.into_inner().ok());
        let failure = match appended {
            Ok(new_size) if expect.is_none_or(|n| new_size == offset + n) => {
                *state = hash.filter(|h| h.bytes == new_size);
                return Ok(new_size);
            }
            Ok(new_size) => RegistryError::UploadInvalid(format!(
                "body ended after {} of {} declared bytes",
                new_size - offset,
                expect.unwrap_or_default()
            )),
            Err(StoreError::Stream(_)) if over && expect.is_some() => {
                RegistryError::UploadInvalid("body is longer than declared".into())
            }
            Err(StoreError::Stream(_)) if over => too_large(),
            Err(StoreError::Stream(e)) => RegistryError::Body(e.to_string()),
            Err(e) => {
                // A storage failure: nothing is known about the staged bytes' hash any more.
                return Err(e.into());
            }
        };
        if expect.is_some() {
            self.blobs.upload_truncate(id, offset).await?;
            *state = Some(before);
        } else {
            let size = self.blobs.upload_size(id).await?;
            *state = hash.filter(|h| h.bytes == size);
        }
        Err(failure)
    }

    /// The hash of an upload's first `size` staged bytes: the state its store saved with them
    /// (an object store: the last chunk may have landed on another replica), else re-read.
    async fn resume_hash(
        &self,
        id: &UploadId,
        size: u64,
        alg: Algorithm,
    ) -> Result<HashState, RegistryError> {
        if let Some((bytes, saved)) = self.blobs.upload_hash_state(id).await?
            && bytes == size
            && let Some(hasher) = Hasher::restore(&saved).filter(|h| h.algorithm() == alg)
        {
            return Ok(HashState { hasher, bytes });
        }
        self.rehash(id, alg).await
    }

    async fn rehash(&self, id: &UploadId, alg: Algorithm) -> Result<HashState, RegistryError> {
        let mut hasher = alg.hasher();
        let mut bytes = 0u64;
        let mut s = self.blobs.upload_read(id).await?;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(StoreError::Io)?;
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
        }
        Ok(HashState { hasher, bytes })
    }

    /// Finishes an upload: appends the final body (if any), verifies the digest and makes the
    /// blob durable and visible in the repository. On a digest mismatch the upload is discarded.
    pub async fn complete_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        declared: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let _permit = self.upload_permit()?;
        let rec = self.session_record(repo, id).await?;
        let id = rec.id.clone();
        let slot = self.slot(&id);
        let mut state = slot.lock().await;
        if let Some(size) = self.committed_upload(repo, &rec, digest).await? {
            drop(state);
            self.forget_slot(&id);
            return Ok(size);
        }
        let result = self
            .finish(repo, &id, true, &mut state, digest, range, declared, body)
            .await;
        if !matches!(
            result,
            Err(RegistryError::RangeNotSatisfiable { .. }
                | RegistryError::Body(_)
                | RegistryError::TooManyRequests(_)
                | RegistryError::Store(_))
        ) {
            // Finished (the session row went with the link) or failed for good: the session
            // ends, and a failure (e.g. a digest mismatch) discards the data. A busy answer
            // (429: the collector is deleting this blob) keeps the session for the retry, and
            // so does a storage failure: the commit may be under way on another replica (the
            // client gave up waiting and retried), and discarding the staging under it would
            // lose the blob; an abandoned session is the collector's.
            if result.is_err() {
                self.blobs.upload_abort(&id).await?;
                self.meta.delete_upload(&id).await?;
            }
            drop(state);
            self.forget_slot(&id);
        }
        result
    }

    /// Finishes an upload whose blob was committed as `digest` by an earlier completion that
    /// crashed before linking it (the session is marked committing — which happens only once
    /// its bytes were verified as `digest` —, nothing or nothing more is staged, and the blob is
    /// stored): links it now and ends the session. `None` if that is not the case. Call with
    /// the upload's lock held; `rec` is the session's record, read under it or just before.
    async fn committed_upload(
        &self,
        repo: &RepoName,
        rec: &UploadRecord,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        if rec.committing.as_ref() != Some(digest) {
            return Ok(None);
        }
        let id = &rec.id;
        match self.blobs.upload_size(id).await {
            // Gone with the commit (an object store that creates nothing before the first
            // byte answers 0 for an upload it has no trace of).
            Err(StoreError::UploadUnknown(_)) | Ok(0) => {}
            Ok(_) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let Some(size) = self.blobs.stat(digest).await? else {
            return Ok(None);
        };
        tracing::info!(upload = %id, %digest, "linking a blob committed before a crash");
        // The staging, if any is left, goes before the session does.
        self.blobs.upload_abort(id).await?;
        self.meta
            .link_blob(repo, digest, size, Some(id), self.config.quota)
            .await?;
        Ok(Some(size))
    }

    /// Whether an ECR upload was committed before a crash (see `committed_upload`); links it.
    pub async fn recover_committed_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let rec = self.session_record(repo, id).await?;
        let id = rec.id.clone();
        let slot = self.slot(&id);
        let state = slot.lock().await;
        let out = self.committed_upload(repo, &rec, digest).await?;
        drop(state);
        if out.is_some() {
            self.forget_slot(&id);
        }
        Ok(out)
    }

    /// Aborts the process when the configured crash point is reached (crash-safety tests).
    pub(crate) fn crash_point(&self, point: &str) {
        if self.config.crash_point.as_deref() == Some(point) {
            tracing::error!(point, "crash point reached: aborting");
            std::process::abort();
        }
    }

    /// A monolithic upload (`POST …/blobs/uploads/?digest=`): no session is recorded.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        declared: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let _permit = self.upload_permit()?;
        self.repository_for_push(repo).await?;
        self.meta
            .check_quota(repo, Some(digest), declared.unwrap_or(0), self.config.quota)
            .await?;
        if let Some(n) = declared.filter(|&n| self.goes_whole(n)) {
            return self.put_whole(repo, None, digest, n, body).await;
        }
        let id = UploadId::random();
        self.blobs.upload_start(&id).await?;
        // Discards the staged bytes on failure, and also if the request is dropped midway
        // (client gone): nobody could ever resume a session-less upload.
        let mut guard = DiscardOnDrop {
            blobs: Arc::clone(&self.blobs),
            id: Some(id.clone()),
        };
        let mut state = None;
        let result = self
            .finish(repo, &id, false, &mut state, digest, None, declared, body)
            .await;
        guard.id = None;
        if result.is_err() {
            self.blobs.upload_abort(&id).await?;
        }
        result
    }

    /// Whether a whole blob of `len` bytes sent in one body is written once at its digest
    /// ([`Registry::put_whole`]) rather than staged: small ones always, any size on a store that
    /// streams whole blobs to their content address (an object store).
    fn goes_whole(&self, len: u64) -> bool {
        len <= SMALL_BLOB || self.blobs.puts_streams()
    }

    /// A whole blob of `len` bytes in one body, to an upload with nothing staged (`id`; `None`
    /// for a monolithic push): verified as it arrives and written once at its digest — no
    /// staging, which on an object store is several requests and a server-side copy. Up to
    /// [`SMALL_BLOB`] it is received in memory, verified, then `put`; beyond, streamed with
    /// `put_stream`, which shows the blob only once it is verified. A crash before the link
    /// leaves the blob unlinked (the collector's); a retried completion of the session links it.
    async fn put_whole(
        &self,
        repo: &RepoName,
        id: Option<&UploadId>,
        digest: &Digest,
        len: u64,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        if len > self.config.max_blob_size {
            return Err(RegistryError::TooLarge {
                what: "blob",
                limit: self.config.max_blob_size,
            });
        }
        let meter = Metered {
            hash: Arc::new(Mutex::new(HashState {
                hasher: digest.algorithm().hasher(),
                bytes: 0,
            })),
            over_limit: Arc::default(),
        };
        let mut stream =
            with_idle_timeout(metered(body, &meter, len), self.config.body_idle_timeout);
        // What the body turned out to be, once it ended: its length and digest.
        let seen: Mutex<Option<(u64, Digest)>> = Mutex::new(None);
        let verify = |n: u64| {
            let computed = meter
                .hash
                .lock()
                .map(|h| h.hasher.clone().finish())
                .unwrap_or_else(|p| p.into_inner().hasher.clone().finish());
            let ok = n == len && computed == *digest;
            if let Ok(mut s) = seen.lock() {
                *s = Some((n, computed));
            }
            ok
        };
        let body_error = |e: std::io::Error| {
            if meter.over_limit.load(std::sync::atomic::Ordering::SeqCst) {
                RegistryError::UploadInvalid("body is longer than declared".into())
            } else {
                RegistryError::Body(e.to_string())
            }
        };
        let stored = if len <= SMALL_BLOB {
            let mut buf = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk.map_err(body_error)?);
            }
            drop(stream);
            if verify(buf.len() as u64) {
                self.meta
                    .check_quota(repo, Some(digest), len, self.config.quota)
                    .await?;
                self.pin(digest, len).await?;
                self.blobs.put(digest, buf.freeze()).await?;
                true
            } else {
                false
            }
        } else {
            // Pinned before the first byte can be visible.
            self.meta
                .check_quota(repo, Some(digest), len, self.config.quota)
                .await?;
            self.pin(digest, len).await?;
            match self.blobs.put_stream(digest, len, stream, &verify).await {
                Ok(stored) => stored,
                Err(StoreError::Stream(e)) => return Err(body_error(e)),
                Err(e) => return Err(e.into()),
            }
        };
        if !stored {
            let seen = seen.lock().map(|s| s.clone()).unwrap_or(None);
            return Err(match seen {
                Some((n, _)) if n != len => RegistryError::UploadInvalid(format!(
                    "body ended after {n} of {len} declared bytes"
                )),
                Some((_, computed)) => RegistryError::DigestInvalid(format!(
                    "content digest {computed} does not match the digest {digest} given"
                )),
                None => RegistryError::UploadInvalid("the body could not be verified".into()),
            });
        }
        if let Some(id) = id {
            // As `finish` does: marked, then the (empty) staging gone, then linked — so the
            // staging never outlives its session, and a completion retried after a crash in
            // between finds the blob and links it (`committed_upload`).
            self.meta.mark_upload_committing(id, digest).await?;
            self.blobs.upload_abort(id).await?;
        }
        self.crash_point("blob-committed");
        self.meta
            .link_blob(repo, digest, len, id, self.config.quota)
            .await?;
        Ok(len)
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        repo: &RepoName,
        id: &UploadId,
        session: bool,
        state: &mut Option<HashState>,
        digest: &Digest,
        range: Option<(u64, u64)>,
        declared: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        // The whole blob in this one body, nothing staged before it: written once.
        let whole = match range {
            Some((0, end)) => end
                .checked_add(1)
                .filter(|n| declared.is_none_or(|d| d == *n)),
            Some(_) => None,
            None => declared,
        };
        let mut staged = None;
        if session
            && let Some(n) = whole.filter(|&n| self.goes_whole(n))
            && state.as_ref().is_none_or(|h| h.bytes == 0)
        {
            let size = self.blobs.upload_size(id).await?;
            if size == 0 {
                let size = self.put_whole(repo, Some(id), digest, n, body).await?;
                *state = None;
                return Ok(size);
            }
            staged = Some(size);
        }
        let t0 = std::time::Instant::now();
        let size = self
            .append_locked(id, state, staged, range, declared, None, body)
            .await?;
        let t1 = t0.elapsed();
        let computed = match state.take() {
            Some(h) if h.bytes == size && h.hasher.algorithm() == digest.algorithm() => {
                h.hasher.finish()
            }
            _ => self
                .resume_hash(id, size, digest.algorithm())
                .await?
                .hasher
                .finish(),
        };
        if computed != *digest {
            return Err(RegistryError::DigestInvalid(format!(
                "content digest {computed} does not match the digest {digest} given"
            )));
        }
        // Within the quota (checked again, atomically, when the blob is linked), and pinned so
        // the collector leaves the bytes alone until they are linked.
        self.meta
            .check_quota(repo, Some(digest), size, self.config.quota)
            .await?;
        self.pin(digest, size).await?;
        let t2 = t0.elapsed();
        if session {
            // Durably first: a completion retried after a crash between the commit and the link
            // then finds the blob and links it (`committed_upload`).
            self.meta.mark_upload_committing(id, digest).await?;
        }
        let size = self.blobs.upload_commit(id, digest).await?;
        self.crash_point("blob-committed");
        let t3 = t0.elapsed();
        self.meta
            .link_blob(repo, digest, size, session.then_some(id), self.config.quota)
            .await?;
        tracing::debug!(
            %digest,
            size,
            receive_ms = t1.as_secs_f64() * 1e3,
            commit_ms = (t3 - t2).as_secs_f64() * 1e3,
            link_ms = (t0.elapsed() - t3).as_secs_f64() * 1e3,
            "blob stored"
        );
        Ok(size)
    }

    /// Cancels an upload.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), RegistryError> {
        let id = self.session(repo, id).await?;
        let slot = self.slot(&id);
        let _guard = slot.lock().await;
        self.blobs.upload_abort(&id).await?;
        self.meta.delete_upload(&id).await?;
        self.forget_slot(&id);
        Ok(())
    }
}

/// Discards a staged upload when dropped, unless disarmed (`id` taken).
struct DiscardOnDrop {
    blobs: Arc<dyn BlobStore>,
    id: Option<UploadId>,
}

impl Drop for DiscardOnDrop {
    fn drop(&mut self) {
        if let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let blobs = Arc::clone(&self.blobs);
            rt.spawn(async move {
                if let Err(e) = blobs.upload_abort(&id).await {
                    tracing::warn!(%id, error = %e, "discarding an abandoned upload failed");
                }
            });
        }
    }
}

/// Fails a body that sends nothing for `idle` (so a stalled client cannot hold an upload slot).
fn with_idle_timeout(body: ByteStream, idle: Duration) -> ByteStream {
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data received for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    })
    .boxed()
}

/// Wraps a body: hashes each frame into the meter and fails once more than `max_total` bytes
/// (counting those already staged) would be staged.
fn metered(body: ByteStream, meter: &Metered, max_total: u64) -> ByteStream {
    let hash = Arc::clone(&meter.hash);
    let over = Arc::clone(&meter.over_limit);
    body.map(move |frame| {
        let frame = frame?;
        let mut h = hash.lock().unwrap_or_else(|p| p.into_inner());
        if h.bytes + frame.len() as u64 > max_total {
            over.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(std::io::Error::other("upload exceeds its size limit"));
        }
        h.hasher.update(&frame);
        h.bytes += frame.len() as u64;
        Ok(frame)
    })
    .boxed()
}
