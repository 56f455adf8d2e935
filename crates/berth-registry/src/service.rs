//! The registry's operations, independent of HTTP: the OCI handlers call these, and so will the
//! ECR API (one code path for `PutImage` and the manifest PUT).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_iam::keys::MasterKey;
use berth_iam::policy::Policy;
use berth_oci::{Algorithm, Digest, Hasher, Manifest, Reference, RepoName, Tag};
use berth_store::{
    BlobStore, ByteStream, IdentityStore, ManifestRecord, MetadataStore, NewManifest, Quota,
    StoreError, TagRecord, UploadId, UploadLimits, UploadRecord, now_millis,
};
use bytes::Bytes;
use futures::StreamExt;

use crate::access::{Clock, ServerKeys, SystemClock};
use crate::audit::AuditLog;
use crate::error::RegistryError;
use crate::metrics::Metrics;
use crate::repos::immutable_under;

/// Tunables of the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The largest blob accepted, in bytes.
    pub max_blob_size: u64,
    /// The largest manifest accepted, in bytes.
    pub max_manifest_size: usize,
    /// Upload sessions idle longer than this are discarded.
    pub upload_ttl: Duration,
    /// Requests streaming blob data at once; more are answered 429 `TOOMANYREQUESTS`.
    pub max_concurrent_uploads: usize,
    /// A request body that sends nothing for this long is failed.
    pub body_idle_timeout: Duration,
    /// The registry id (12 digits) of ARNs and ECR responses.
    pub registry_id: String,
    /// The region of ARNs, as clients sign it.
    pub region: String,
    /// `host[:port]` clients reach the registry at (`repositoryUri`, `proxyEndpoint`).
    pub public_host: String,
    /// Whether clients reach it over TLS (the scheme of `proxyEndpoint` and download URLs).
    pub public_tls: bool,
    /// Authentication and policies enforced (off: every request is the administrator's).
    pub auth: bool,
    /// Lifetime of `GetAuthorizationToken` tokens.
    pub token_ttl: Duration,
    /// A push to a missing repository creates it (registry:2 behaviour). Off, as ECR does, only a
    /// `CREATE_ON_PUSH` repository creation template that matches creates it.
    pub auto_create: bool,
    /// Upload sessions open at once in one repository; more are answered 429.
    pub max_uploads_per_repository: u64,
    /// Upload sessions open at once in the registry; more are answered 429.
    pub max_uploads: u64,
    /// Bytes of ECR request bodies buffered at once (each request counts its `Content-Length`,
    /// or its action's limit when it has none); beyond it requests are answered
    /// `ThrottlingException`, which AWS SDKs retry.
    pub ecr_body_budget: u64,
    /// Test hook for crash-safety tests: the process aborts, as `kill -9` would, when it reaches
    /// the named point (`blob-committed`: an upload's blob is durable, its link not yet;
    /// `gc-sweep`: the collector deleted the bytes of a claimed blob, its tombstone remains).
    pub crash_point: Option<String>,
    /// Unreferenced blobs, and links no manifest uses, are collected only once untouched for
    /// this long (a push that uploaded layers has this long to send its manifest).
    pub gc_grace: Duration,
    /// A collector holds its lease this long past its last renewal (renewed every window);
    /// a collector that died is presumed so once it ran out.
    pub gc_lease: Duration,
    /// Byte quotas of repositories (the default; a repository's own replaces it) and of the
    /// registry.
    pub quota: Quota,
    /// A pull-through cache tag is checked against its upstream at most this often.
    pub pull_through_check: Duration,
    /// How long a pull-through request waits for its upstream before serving what is cached.
    pub pull_through_timeout: Duration,
    /// The registries replication configurations may name (by region and registry id).
    pub replication_destinations: Vec<crate::replication::Destination>,
    /// Answer a blob GET with a 307 to a URL of the blob store valid this long (a presigned
    /// S3 URL), when the store has one; `GetDownloadUrlForLayer` returns the same URL.
    pub blob_redirect: Option<Duration>,
    /// The stores may be shared with other replicas (an object store, a PostgreSQL database):
    /// what a start cleans up or resumes is limited to what no live replica can be working on.
    pub shared_stores: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_blob_size: 64 * 1024 * 1024 * 1024,
            max_manifest_size: berth_oci::MAX_MANIFEST_BYTES,
            upload_ttl: Duration::from_secs(24 * 3600),
            max_concurrent_uploads: 256,
            body_idle_timeout: Duration::from_secs(60),
            registry_id: "000000000000".into(),
            region: "us-east-1".into(),
            public_host: "127.0.0.1:5000".into(),
            public_tls: false,
            auth: false,
            token_ttl: Duration::from_secs(12 * 3600),
            auto_create: true,
            max_uploads_per_repository: 1000,
            max_uploads: 10_000,
            ecr_body_budget: 256 * 1024 * 1024,
            crash_point: None,
            gc_grace: Duration::from_secs(3600),
            gc_lease: Duration::from_secs(60),
            quota: Quota::NONE,
            pull_through_check: Duration::from_secs(6 * 3600),
            pull_through_timeout: Duration::from_secs(20),
            blob_redirect: None,
            shared_stores: false,
            replication_destinations: Vec::new(),
        }
    }
}

/// How long a write waits for the collector to finish deleting the blob it writes.
const PIN_WAIT: Duration = Duration::from_secs(5);

/// Manifest PUTs buffered at once (each up to the manifest size limit): bounds that memory.
const MAX_CONCURRENT_MANIFEST_PUTS: usize = 64;

/// Hash state of an upload in progress: what the bytes staged so far hash to.
#[derive(Debug, Clone)]
struct HashState {
    hasher: Hasher,
    bytes: u64,
}

/// Per-upload lock and hash cache. The lock serialises requests on one upload; the hash state
/// is only a cache (it is rebuilt from the staged bytes when missing or stale, e.g. after a
/// restart), so losing it never loses data.
type UploadSlot = Arc<tokio::sync::Mutex<Option<HashState>>>;

/// The outcome of putting a manifest.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The manifest's subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

/// Where an upload stands.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    /// Its id.
    pub id: UploadId,
    /// Bytes staged.
    pub size: u64,
}

/// How often a manifest's pull time is written at most (ECR refreshes `lastRecordedPullTime`
/// at least daily).
pub const PULL_RECORD_INTERVAL: Duration = Duration::from_secs(3600);

/// The registry service.
#[derive(Debug, Clone)]
pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    pub(crate) identity: Arc<dyn IdentityStore>,
    pub(crate) keys: Arc<ServerKeys>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy_cache: Arc<Mutex<HashMap<String, Arc<Policy>>>>,
    config: Arc<RegistryConfig>,
    uploads: Arc<Mutex<HashMap<UploadId, UploadSlot>>>,
    upload_permits: Arc<tokio::sync::Semaphore>,
    manifest_permits: Arc<tokio::sync::Semaphore>,
    /// ECR body bytes, in KiB units.
    ecr_body_permits: Arc<tokio::sync::Semaphore>,
    /// This process's id among replicas (lease holder name).
    instance: Arc<str>,
    /// Prometheus metrics (`None` only if their definitions failed, which is logged).
    metrics: Option<Arc<Metrics>>,
    /// Where audit events go (`None`: not audited).
    audit: Option<AuditLog>,
    /// The image scanner's queue (`None`: scanning is not configured).
    scanner: Option<Arc<crate::scanning::Scanner>>,
    /// Pull-through cache state (rules read, fetches in flight).
    pub(crate) pull_through: Arc<crate::pullthrough::PullThrough>,
    /// Replication state (configuration read, destination clients).
    pub(crate) replication: Arc<crate::replication::Replication>,
}

/// Blobs up to this size sent whole in one request body are received in memory and written
/// once at their digest, without staging.
const SMALL_BLOB: u64 = 4 * 1024 * 1024;

/// A body stream with a byte limit that hashes what passes through.
struct Metered {
    hash: Arc<Mutex<HashState>>,
    over_limit: Arc<std::sync::atomic::AtomicBool>,
}

impl Registry {
    /// A registry over the given stores.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetadataStore>,
        identity: Arc<dyn IdentityStore>,
        master_key: &MasterKey,
        config: RegistryConfig,
    ) -> Self {
        Registry {
            blobs,
            meta,
            identity,
            keys: Arc::new(ServerKeys {
                seal: master_key.seal_key(),
                token: master_key.token_key(),
            }),
            clock: Arc::new(SystemClock),
            policy_cache: Arc::default(),
            upload_permits: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_uploads)),
            manifest_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_MANIFEST_PUTS)),
            ecr_body_permits: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from((config.ecr_body_budget / 1024).max(1))
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            replication: Arc::default(),
            pull_through: Arc::new(crate::pullthrough::PullThrough::new(
                config.pull_through_check,
                config.pull_through_timeout,
            )),
            config: Arc::new(config),
            uploads: Arc::new(Mutex::new(HashMap::new())),
            instance: Arc::from(UploadId::random().as_str()),
            metrics: Metrics::new()
                .map_err(|e| tracing::error!(error = %e, "defining metrics failed"))
                .ok()
                .map(Arc::new),
            audit: None,
            scanner: None,
        }
    }

    /// Scans images in the background: on push into a repository with `scanOnPush`, and on
    /// `StartImageScan`. Starts the workers (call inside the runtime).
    #[must_use]
    pub fn with_scanning(mut self, config: crate::scanning::ScanConfig) -> Self {
        let scanner = crate::scanning::Scanner::start(self.clone(), config);
        self.scanner = Some(Arc::new(scanner));
        self
    }

    /// The scanner, when scanning is configured.
    pub(crate) fn scanner(&self) -> Option<&crate::scanning::Scanner> {
        self.scanner.as_deref()
    }

    /// Sends an audit event for every state-changing or refused request to `log`.
    #[must_use]
    pub fn with_audit(mut self, log: AuditLog) -> Self {
        self.audit = Some(log);
        self
    }

    /// The registry's metrics.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    /// The audit log, when one is configured.
    pub(crate) fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// Whether both stores answer (readiness): the metadata store a trivial query, the blob
    /// store a listing of its root, each within 2 s. `Err` names which one does not (the cause
    /// is logged, not returned: the answer may reach clients).
    pub async fn ready(&self) -> Result<(), &'static str> {
        const WITHIN: Duration = Duration::from_secs(2);
        match tokio::time::timeout(WITHIN, self.meta.ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the metadata store does not answer");
                return Err("metadata store unavailable");
            }
            Err(_) => {
                tracing::warn!("readiness: the metadata store did not answer within 2 s");
                return Err("metadata store unavailable");
            }
        }
        match tokio::time::timeout(WITHIN, self.blobs.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the blob store is not reachable");
                Err("blob store unavailable")
            }
            Err(_) => {
                tracing::warn!("readiness: the blob store did not answer within 2 s");
                Err("blob store unavailable")
            }
        }
    }

    /// Replaces the clock (tests: token expiry, signature skew).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The identity store (users, keys, policies, templates).
    pub fn identity(&self) -> &Arc<dyn IdentityStore> {
        &self.identity
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The metadata store (for listings).
    pub fn meta(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// This process's id among replicas (random per start).
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// A slot among the requests allowed to stream blob data at once.
    fn upload_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RegistryError> {
        Arc::clone(&self.upload_permits)
            .try_acquire_owned()
            .map_err(|_| {
                RegistryError::TooManyRequests(format!(
                    "{} blob uploads are already in progress; retry shortly",
                    self.config.max_concurrent_uploads
                ))
            })
    }

    /// A slot among the manifest PUTs allowed at once (each may buffer a whole manifest).
    pub fn manifest_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RegistryError> {
        Arc::clone(&self.manifest_permits)
            .try_acquire_owned()
            .map_err(|_| {
                RegistryError::TooManyRequests(format!(
                    "{MAX_CONCURRENT_MANIFEST_PUTS} manifest uploads are already in progress; retry shortly"
                ))
            })
    }

    /// Room to buffer an ECR request body of up to `bytes`.
    pub(crate) fn ecr_body_permit(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, RegistryError> {
        // A body larger than the whole budget may still be read when nothing else is.
        let budget = (self.config.ecr_body_budget / 1024).max(1);
        let units = u32::try_from(bytes.div_ceil(1024).clamp(1, budget)).unwrap_or(u32::MAX);
        Arc::clone(&self.ecr_body_permits)
            .try_acquire_many_owned(units)
            .map_err(|_| {
                RegistryError::TooManyRequests(format!(
                    "Rate exceeded: {} bytes of request bodies are already being received; retry shortly",
                    self.config.ecr_body_budget
                ))
            })
    }

    fn slot(&self, id: &UploadId) -> UploadSlot {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id.clone()).or_default())
    }

    fn forget_slot(&self, id: &UploadId) {
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Removes staged uploads nobody can resume: expired sessions, and staged data without a
    /// session (left by a crash during a monolithic upload).
    pub async fn clean_uploads(&self, at_start: bool) -> Result<usize, RegistryError> {
        let now = now_millis();
        let ttl = i64::try_from(self.config.upload_ttl.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(ttl);
        let mut removed = 0;
        // Sessions started before the cutoff and idle since: never one a request is working on.
        for id in self.meta.stale_uploads(cutoff).await? {
            let slot = self.slot(&id);
            let Ok(_busy) = slot.try_lock() else {
                continue;
            };
            match self.blobs.upload_modified(&id).await {
                Ok(modified) if modified >= cutoff => continue,
                Ok(_) | Err(StoreError::UploadUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if let Err(e) = self.blobs.upload_abort(&id).await {
                // One upload that cannot go now (its commit may be running on another
                // replica) does not stop the others; the next pass tries it again.
                tracing::warn!(upload = %id, error = %e, "an expired upload was not removed");
                continue;
            }
            self.meta.delete_upload(&id).await?;
            self.forget_slot(&id);
            removed += 1;
        }
        // Staged data without a session: monolithic uploads cut off by a crash (any, at start)
        // or whose request vanished without cleaning up (idle for an hour, later on). With
        // shared stores another replica may be streaming one right now: an hour, always.
        let orphan_cutoff = if at_start && !self.config.shared_stores {
            i64::MAX
        } else {
            now.saturating_sub(3_600_000)
        };
        for id in self.blobs.upload_list().await? {
            if self.meta.upload(&id).await?.is_some() {
                continue;
            }
            match self.blobs.upload_modified(&id).await {
                Ok(modified) if modified < orphan_cutoff => {
                    match self.blobs.upload_abort(&id).await {
                        Ok(()) => removed += 1,
                        Err(e) => {
                            tracing::warn!(upload = %id, error = %e, "staged data was not removed");
                        }
                    }
                }
                Ok(_) | Err(StoreError::UploadUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    // ---- blobs -------------------------------------------------------------------------

    /// The size of a blob the repository can serve.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, RegistryError> {
        self.blob_present(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// The size of a blob the repository can serve, `None` if it cannot. A client that finds a
    /// blob present may skip uploading it and reference it soon, so a link older than half the
    /// collector's grace period is touched (at most one write per link per half period): the
    /// collector never removes a link a client was just told exists.
    pub async fn blob_present(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let Some((size, touched)) = self.meta.blob_link(repo, digest).await? else {
            return Ok(None);
        };
        let half = i64::try_from(self.config.gc_grace.as_millis() / 2).unwrap_or(i64::MAX);
        if now_millis().saturating_sub(touched) > half
            && let Err(e) = self.meta.touch_link(repo, digest).await
        {
            tracing::warn!(repository = %repo, %digest, error = %e, "could not touch a blob link");
        }
        Ok(Some(size))
    }

    /// The quotas writes are checked against.
    pub fn quota(&self) -> Quota {
        self.config.quota
    }

    /// Pins a blob about to be written (see [`MetadataStore::pin_blob`]), waiting out a
    /// collection that is deleting it ([`PIN_WAIT`] at most), then 429 (the session stays for
    /// the client's retry).
    async fn pin(&self, digest: &Digest, size: u64) -> Result<(), RegistryError> {
        let mut wait = Duration::from_millis(20);
        let started = std::time::Instant::now();
        for attempt in 0.. {
            if started.elapsed() > PIN_WAIT {
                break;
            }
            match self
                .meta
                .pin_blob(digest, size, self.config.quota.registry)
                .await
            {
                Err(StoreError::BlobBeingDeleted(_)) => {
                    if attempt == 0 {
                        // Left by a collector that died? Then nobody else will finish it.
                        if let Err(e) = self.finish_abandoned_collection().await {
                            tracing::warn!(error = %e, "finishing an abandoned collection failed");
                        }
                        continue;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(250));
                }
                other => return Ok(other?),
            }
        }
        Err(RegistryError::TooManyRequests(format!(
            "blob {digest} is being garbage-collected; retry shortly"
        )))
    }

    /// Streams part of a blob.
    /// Where a client may fetch a blob from directly, when the registry is configured to
    /// redirect blob downloads and its store has such URLs.
    pub async fn blob_redirect(&self, digest: &Digest) -> Result<Option<String>, RegistryError> {
        match self.config.blob_redirect {
            Some(ttl) => Ok(self.blobs.download_url(digest, ttl).await?),
            None => Ok(None),
        }
    }

    pub async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, RegistryError> {
        Ok(self.blobs.read(digest, offset, len).await?)
    }

    /// Unlinks a blob from a repository.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), RegistryError> {
        Ok(self.meta.unlink_blob(repo, digest).await?)
    }

    /// Links a blob another repository has into `repo`; false if `from` does not have it.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.repository_for_push(repo).await?;
        let Some(size) = self.meta.blob_in_repo(from, digest).await? else {
            return Ok(false);
        };
        // Pinned first, then checked: bytes present after the pin stay (see `pin`).
        match self.pin(digest, size).await {
            Ok(()) => {}
            Err(RegistryError::TooManyRequests(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        if self.blobs.stat(digest).await?.is_none() {
            return Ok(false);
        }
        self.meta
            .link_blob(repo, digest, size, None, self.config.quota)
            .await?;
        Ok(true)
    }

    // ---- uploads -----------------------------------------------------------------------

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

    // ---- manifests ---------------------------------------------------------------------

    /// Validates and stores a manifest under `reference` (a tag, or the digest of `bytes`).
    /// The one path for every manifest write (OCI PUT today, ECR PutImage later).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifest, RegistryError> {
        self.store_manifest(repo, reference, content_type, bytes, true)
            .await
    }

    /// [`Registry::put_manifest`]; `replicate` false for what a pull-through cache imports
    /// (a cached upstream image is not a push, and is not replicated).
    pub(crate) async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        replicate: bool,
    ) -> Result<PutManifest, RegistryError> {
        if bytes.len() > self.config.max_manifest_size {
            return Err(RegistryError::TooLarge {
                what: "manifest",
                limit: self.config.max_manifest_size as u64,
            });
        }
        let (digest, tag) = match reference {
            Reference::Digest(d) => {
                let computed = Digest::of(d.algorithm(), &bytes);
                if computed != *d {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest digest {computed} does not match the reference {d}"
                    )));
                }
                (computed, None)
            }
            Reference::Tag(t) => (Digest::sha256(&bytes), Some(t)),
            _ => return Err(RegistryError::Unsupported("unknown reference kind".into())),
        };
        let m = Manifest::parse(content_type, &bytes)?;
        let annotations_json = (!m.annotations.is_empty())
            .then(|| serde_json::to_string(&m.annotations).ok())
            .flatten();
        let record = NewManifest {
            digest: digest.clone(),
            media_type: m.media_type,
            size: bytes.len() as u64,
            artifact_type: m.artifact_type,
            subject: m.subject.clone(),
            annotations_json,
            references: m.references,
        };
        let repository = self.repository_for_push(repo).await?;
        self.meta.check_references(repo, &record.references).await?;
        // Pinned, then the bytes (durable, content-addressed), then the metadata transaction
        // that makes them reachable: a crash in between leaves only an unreferenced blob.
        self.pin(&digest, record.size).await?;
        self.blobs.put(&digest, bytes).await?;
        if replicate {
            // Before the commit: an acknowledged push always has its jobs (a job whose push
            // then fails finds no manifest and is dropped).
            self.record_replication(repo, &digest, tag).await?;
        }
        self.meta
            .put_manifest(repo, &record, tag, immutable_under, self.config.quota)
            .await
            .map_err(|e| match e {
                StoreError::TagImmutable { tag, .. } => RegistryError::TagImmutable {
                    tag,
                    repo: repo.to_string(),
                },
                e => e.into(),
            })?;
        // Scan on push: queued, never waited for; a failure to queue never fails the push.
        let scan = match self.scans_on_push(repo, repository.scan_on_push).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(repository = %repo, error = %e, "reading the scanning configuration failed");
                false
            }
        };
        if scan && let Err(e) = self.queue_scan(repo, &digest).await {
            tracing::warn!(repository = %repo, %digest, error = %e, "queueing a scan failed");
        }
        Ok(PutManifest {
            digest,
            subject: m.subject,
        })
    }

    /// Resolves a reference to a stored manifest.
    pub async fn resolve(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestRecord, RegistryError> {
        let found = match reference {
            Reference::Digest(d) => self.meta.manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.manifest_by_tag(repo, t).await?,
            _ => None,
        };
        match found {
            Some(r) => Ok(r),
            None if !self.meta.repository_exists(repo).await? => {
                Err(RegistryError::NameUnknown(repo.to_string()))
            }
            None => Err(RegistryError::ManifestUnknown(reference.to_string())),
        }
    }

    /// The raw bytes of a stored manifest.
    pub async fn manifest_bytes(&self, record: &ManifestRecord) -> Result<Bytes, RegistryError> {
        Ok(self.blobs.get(&record.digest).await?)
    }

    /// Records a pull of `record` for ECR's `lastRecordedPullTime`: at most one write per image
    /// per [`PULL_RECORD_INTERVAL`], so a busy image costs one write an hour. A failure is
    /// logged and never fails the pull.
    pub async fn record_pull(&self, repo: &RepoName, record: &ManifestRecord) {
        let now = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let interval = i64::try_from(PULL_RECORD_INTERVAL.as_millis()).unwrap_or(i64::MAX);
        if record
            .last_pulled_at
            .is_some_and(|t| now.saturating_sub(t) < interval)
        {
            return;
        }
        if let Err(e) = self.meta.record_pull(repo, &record.digest, now).await {
            tracing::warn!(repository = %repo, digest = %record.digest, error = %e,
                "could not record a pull");
        }
    }

    /// Deletes a manifest (by digest, with its tags) or a tag (by tag).
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        if !self.meta.repository_exists(repo).await? {
            return Err(RegistryError::NameUnknown(repo.to_string()));
        }
        match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await?,
            _ => return Err(RegistryError::Unsupported("unknown reference kind".into())),
        }
        Ok(())
    }

    /// Tags after `last`, at most `n`.
    pub async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<TagRecord>, RegistryError> {
        Ok(self.meta.list_tags(repo, last, n).await?)
    }

    /// Manifests whose subject is `subject`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, RegistryError> {
        // An unknown repository has no referrers: 200 with an empty index (the spec forbids a
        // 404 here, which clients would read as "no referrers API").
        Ok(self.meta.referrers(repo, subject, artifact_type).await?)
    }

    /// Checks a tag name (used by the HTTP layer before reading bodies).
    pub fn check_tag(tag: &str) -> Result<Tag, RegistryError> {
        Ok(Tag::parse(tag)?)
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
