//! The registry's operations, independent of HTTP: the OCI handlers call these, and so will the
//! ECR API (one code path for `PutImage` and the manifest PUT).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_iam::keys::MasterKey;
use berth_iam::policy::Policy;
use berth_oci::{Digest, Hasher, Manifest, Reference, RepoName, Tag};
use berth_store::{
    BlobStore, ByteStream, IdentityStore, ManifestRecord, MetadataStore, NewManifest, Quota,
    StoreError, TagRecord, UploadId, now_millis,
};
use bytes::Bytes;

use crate::access::{Clock, ServerKeys, SystemClock};
use crate::audit::AuditLog;
use crate::error::RegistryError;
use crate::metrics::Metrics;
use crate::repos::immutable_under;

mod uploads;

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
