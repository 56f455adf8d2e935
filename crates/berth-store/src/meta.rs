//! The metadata-store trait: repositories, blob links, manifests, tags, upload sessions.

use std::fmt;

use async_trait::async_trait;
use berth_oci::{Digest, ManifestRef, RepoName, Tag};

use crate::StoreError;
use crate::blob::UploadId;

/// A manifest about to be recorded (its bytes are already durable in the blob store).
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Digest of the raw bytes.
    pub digest: Digest,
    /// Media type it is served with.
    pub media_type: String,
    /// Size of the raw bytes.
    pub size: u64,
    /// What referrers report for it.
    pub artifact_type: Option<String>,
    /// Its `subject`, if any.
    pub subject: Option<Digest>,
    /// Top-level annotations as a JSON object (for referrers), if any.
    pub annotations_json: Option<String>,
    /// Blobs and child manifests that must be present in the repository.
    pub references: Vec<ManifestRef>,
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Digest of the raw bytes.
    pub digest: Digest,
    /// Media type it is served with.
    pub media_type: String,
    /// Size of the raw bytes.
    pub size: u64,
    /// What referrers report for it.
    pub artifact_type: Option<String>,
    /// Top-level annotations as a JSON object, if any.
    pub annotations_json: Option<String>,
    /// Push time, milliseconds since the epoch.
    pub pushed_at: i64,
    /// When a pull of it was last recorded, milliseconds since the epoch (recorded at most
    /// about hourly, as ECR's `lastRecordedPullTime` is).
    pub last_pulled_at: Option<i64>,
}

/// A repository's ECR settings as stored (validated by the registry before they get here).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepositoryRecord {
    /// Its name.
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// `MUTABLE`, `IMMUTABLE`, `MUTABLE_WITH_EXCLUSION` or `IMMUTABLE_WITH_EXCLUSION`.
    pub tag_mutability: String,
    /// Wildcard filters of tags exempt from the mutability setting.
    pub mutability_filters: Vec<String>,
    /// Whether images are scanned on push.
    pub scan_on_push: bool,
    /// `AES256`, `KMS` or `KMS_DSSE`.
    pub encryption_type: String,
    /// The KMS key, for the KMS encryption types.
    pub kms_key: Option<String>,
    /// The repository policy document, exactly as set.
    pub policy: Option<String>,
    /// The lifecycle policy document, exactly as set.
    pub lifecycle_policy: Option<String>,
    /// When the lifecycle policy was last applied, milliseconds since the epoch.
    pub lifecycle_evaluated_at: Option<i64>,
    /// This repository's byte quota, overriding the registry's default for repositories.
    pub quota_bytes: Option<u64>,
}

/// A repository to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepository {
    /// See [`RepositoryRecord`].
    pub tag_mutability: String,
    /// See [`RepositoryRecord`].
    pub mutability_filters: Vec<String>,
    /// See [`RepositoryRecord`].
    pub scan_on_push: bool,
    /// See [`RepositoryRecord`].
    pub encryption_type: String,
    /// See [`RepositoryRecord`].
    pub kms_key: Option<String>,
    /// See [`RepositoryRecord`].
    pub policy: Option<String>,
    /// Resource tags (key, value).
    pub resource_tags: Vec<(String, String)>,
    /// See [`RepositoryRecord`].
    pub lifecycle_policy: Option<String>,
}

impl Default for NewRepository {
    fn default() -> Self {
        NewRepository {
            tag_mutability: "MUTABLE".into(),
            mutability_filters: Vec::new(),
            scan_on_push: false,
            encryption_type: "AES256".into(),
            kms_key: None,
            policy: None,
            resource_tags: Vec::new(),
            lifecycle_policy: None,
        }
    }
}

/// One change to a repository's settings (each is its own column: concurrent changes of
/// different settings never undo each other).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepositoryUpdate {
    /// Tag mutability and its exclusion filters.
    TagMutability {
        /// The setting.
        mutability: String,
        /// Its exclusion filters.
        filters: Vec<String>,
    },
    /// Scan on push.
    ScanOnPush(bool),
    /// The repository policy (None removes it).
    Policy(Option<String>),
    /// The lifecycle policy (None removes it).
    LifecyclePolicy(Option<String>),
    /// The repository's byte quota (None: the registry's default).
    Quota(Option<u64>),
}

/// Byte quotas a write is checked against (`None`: unlimited). A repository's own
/// [`RepositoryRecord::quota_bytes`] replaces `repository`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Bytes one repository may hold, each blob counted once.
    pub repository: Option<u64>,
    /// Bytes the whole registry may hold, each blob counted once.
    pub registry: Option<u64>,
}

impl Quota {
    /// No limits.
    pub const NONE: Quota = Quota {
        repository: None,
        registry: None,
    };
}

/// Bytes stored, each blob counted once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// In the repository: its linked blobs and its manifests.
    pub repository: u64,
    /// In the registry: every blob recorded (including unreferenced ones awaiting collection).
    pub registry: u64,
}

/// Bytes stored in the whole registry and in its largest repositories
/// ([`MetadataStore::storage_usage`], for metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageUsage {
    /// Every blob recorded, each counted once.
    pub registry: u64,
    /// Repositories in the registry.
    pub repositories: u64,
    /// The repositories holding the most bytes (linked blobs and manifests, each counted once
    /// per repository), largest first, ties by name; repositories holding nothing are left out.
    pub largest: Vec<(String, u64)>,
}

/// A manifest as lifecycle evaluation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotManifest {
    /// Its digest.
    pub digest: Digest,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Push time, milliseconds since the epoch.
    pub pushed_at: i64,
    /// Last recorded pull, milliseconds since the epoch.
    pub last_pulled_at: Option<i64>,
    /// Its subject, if it is a referrer.
    pub subject: Option<Digest>,
    /// Child manifests (of an index).
    pub children: Vec<Digest>,
}

/// One image a lifecycle run expires: the root (checked to still carry `root_tags`) and what
/// goes with it, parents before children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryGroup {
    /// The image the rule expired.
    pub root: Digest,
    /// Its tags when the policy was evaluated; if they changed since, the group is skipped.
    pub root_tags: Vec<String>,
    /// Child manifests and referrers that go with it (each only if untagged and no remaining
    /// manifest references it).
    pub dependents: Vec<Digest>,
}

/// A stored lifecycle policy preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePreview {
    /// The policy evaluated.
    pub policy: String,
    /// `IN_PROGRESS`, `COMPLETE`, `EXPIRED` or `FAILED`.
    pub status: String,
    /// The results as a JSON array (the API's `previewResults`).
    pub results: String,
    /// When it was started, milliseconds since the epoch.
    pub created_at: i64,
}

/// An image's vulnerability scan, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED` (ECR's statuses).
    pub status: String,
    /// What the status means (ECR's `description`).
    pub description: String,
    /// When the status was set, milliseconds since the epoch.
    pub updated_at: i64,
    /// When the scan completed.
    pub completed_at: Option<i64>,
    /// When the vulnerability database was last updated, as of the scan.
    pub source_updated_at: Option<i64>,
    /// The findings as a JSON array, when complete.
    pub findings: Option<String>,
}

/// A blob the garbage collector found or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcBlob {
    /// The repository, for a link; `None` for the blob itself.
    pub repo: Option<String>,
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// One window of a garbage-collection pass, and where the next starts (`None`: done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPage {
    /// What was removed (or, in a dry run, would be).
    pub items: Vec<GcBlob>,
    /// Opaque cursor of the next window.
    pub next: Option<String>,
}

/// A stored manifest with what `DescribeImages` reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The manifest.
    pub manifest: ManifestRecord,
    /// Its subject, if it is a referrer.
    pub subject: Option<Digest>,
    /// Tags pointing at it, sorted.
    pub tags: Vec<String>,
    /// The sum of the sizes of the blobs it references (config and layers); for an index, of
    /// the blobs its child manifests reference.
    pub size: u64,
}

/// Which images a listing includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagFilter {
    /// Only images with at least one tag.
    Tagged,
    /// Only images without tags.
    Untagged,
    /// All.
    Any,
}

/// A tag and what it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The tag.
    pub name: String,
    /// The manifest it points at.
    pub digest: Digest,
}

/// A repository in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    /// Its name.
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Its id.
    pub id: UploadId,
    /// The repository it uploads into.
    pub repo: RepoName,
    /// Start time, milliseconds since the epoch.
    pub created_at: i64,
    /// Where the latest part known to be shorter than the minimum its uploader gave ends
    /// ([`MetadataStore::record_upload_part`]; ECR's 5 MiB rule): the upload breaks the rule
    /// when data was staged beyond it, i.e. that short part was not the last.
    pub short_part_end: Option<u64>,
    /// The digest the upload was being committed as ([`MetadataStore::mark_upload_committing`]):
    /// set, with no staged data left, the blob was committed and only its link is missing.
    pub committing: Option<Digest>,
}

impl UploadRecord {
    /// Whether a part other than the last was short, for an upload of `size` staged bytes.
    pub fn has_short_part(&self, size: u64) -> bool {
        self.short_part_end.is_some_and(|end| end < size)
    }
}

/// Bounds on open upload sessions ([`MetadataStore::create_upload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Sessions open at once in one repository.
    pub per_repository: u64,
    /// Sessions open at once in the whole registry.
    pub total: u64,
}

/// Whether `tag` is immutable under a repository's mutability setting (`MUTABLE`,
/// `IMMUTABLE`, `…_WITH_EXCLUSION`) and exclusion filters. The registry owns the rule; the
/// store applies it to the settings it reads inside a push's transaction.
pub type TagRule = fn(mutability: &str, filters: &[String], tag: &str) -> bool;

/// Repository metadata. Every method is one transaction: callers never see a half-applied change.
///
/// **Invariants enforced here:** a tag points only at a manifest stored in its repository; a
/// manifest is recorded only if every blob and child manifest it references is present in the
/// repository; neither a blob link nor a manifest that a stored manifest references can be removed.
/// A push to copy to one replication destination (durable: it outlives restarts).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationJob {
    /// Its id (jobs of a destination run in id order).
    pub id: i64,
    /// The repository pushed to.
    pub repository: String,
    /// The manifest pushed.
    pub digest: Digest,
    /// The tag it was pushed under, if any.
    pub tag: Option<String>,
    /// The destination's key (`region/registryId`).
    pub destination: String,
    /// `PENDING`, `COMPLETE` or `FAILED`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Not tried again before this time (milliseconds since the epoch).
    pub next_attempt_at: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Last change, milliseconds since the epoch.
    pub updated_at: i64,
}

/// A replication job to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplicationJob {
    /// The repository pushed to.
    pub repository: String,
    /// The manifest pushed.
    pub digest: Digest,
    /// Its tag, if any.
    pub tag: Option<String>,
    /// The destination's key.
    pub destination: String,
}

/// How a replication attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Copied.
    Complete,
    /// Failed for good.
    Failed(String),
    /// Failed; try again at this time (milliseconds since the epoch).
    Retry {
        /// Why it failed.
        error: String,
        /// When to try again.
        at: i64,
    },
}

#[async_trait]
pub trait MetadataStore: Send + Sync + fmt::Debug + 'static {
    /// Whether the repository exists.
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool, StoreError>;

    /// Repositories in lexical order, after `last`, at most `n`.
    async fn list_repositories(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<RepoSummary>, StoreError>;

    /// The size of a blob linked into the repository, `None` if not linked.
    async fn blob_in_repo(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError>;

    /// Links a durable blob into a repository and, in the same transaction, ends the upload
    /// session that produced it, if any. A repository that does not exist (deleted while the
    /// push ran) is `RepositoryUnknown`: writes never create repositories.
    /// `quota` is checked in the same transaction (`QuotaExceeded`; a blob the repository
    /// already has adds nothing). `BlobBeingDeleted` if the collector is removing the blob:
    /// callers [`MetadataStore::pin_blob`] first.
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&UploadId>,
        quota: Quota,
    ) -> Result<(), StoreError>;

    /// Unlinks a blob from a repository; `InUse` if a manifest there references it,
    /// `BlobNotFound` if it was not linked.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError>;

    /// Checks that every reference is present in the repository (the same checks
    /// [`MetadataStore::put_manifest`] makes in its transaction), so a manifest that would be
    /// refused is refused before its bytes are written.
    async fn check_references(
        &self,
        repo: &RepoName,
        references: &[ManifestRef],
    ) -> Result<(), StoreError>;

    /// Records a manifest (and optionally points `tag` at it) after checking its references.
    /// A missing repository is `RepositoryUnknown` (never created here). When `rule` says the tag is immutable under the
    /// repository's mutability settings — read inside the transaction, so a concurrent
    /// `PutImageTagMutability` cannot slip between check and write — a tag that already points
    /// at another manifest is not moved (`TagImmutable`).
    /// The repository `quota` is checked in the transaction as for [`MetadataStore::link_blob`].
    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        rule: TagRule,
        quota: Quota,
    ) -> Result<(), StoreError>;

    /// Creates a repository; `RepositoryExists` if it does.
    async fn create_repository(
        &self,
        repo: &RepoName,
        settings: &NewRepository,
    ) -> Result<RepositoryRecord, StoreError>;

    /// A repository and its settings.
    async fn repository(&self, repo: &RepoName) -> Result<Option<RepositoryRecord>, StoreError>;

    /// The distinct repository policy documents stored (for checks that must know whether any
    /// repository policy could grant an action).
    async fn repository_policies(&self) -> Result<Vec<String>, StoreError>;

    /// Repositories with their settings in lexical order, after `last`, at most `n`.
    async fn repositories(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<RepositoryRecord>, StoreError>;

    /// Changes one setting; `RepositoryUnknown` if absent.
    async fn update_repository(
        &self,
        repo: &RepoName,
        update: RepositoryUpdate,
    ) -> Result<RepositoryRecord, StoreError>;

    /// Deletes a repository with its tags, manifests and blob links (the blobs themselves stay
    /// for garbage collection). Without `force`, `RepositoryNotEmpty` if it holds any manifest.
    /// Returns the record as it was and how many manifests went with it.
    async fn delete_repository(
        &self,
        repo: &RepoName,
        force: bool,
    ) -> Result<(RepositoryRecord, u64), StoreError>;

    /// The repository's resource tags, sorted by key.
    async fn resource_tags(&self, repo: &RepoName) -> Result<Vec<(String, String)>, StoreError>;

    /// Adds or replaces resource tags and removes the keys in `remove`, in one transaction;
    /// returns the resulting count. `RepositoryUnknown` if absent.
    async fn update_resource_tags(
        &self,
        repo: &RepoName,
        set: &[(String, String)],
        remove: &[String],
    ) -> Result<usize, StoreError>;

    /// Images (manifests) in digest order after `after`, at most `n`.
    async fn images(
        &self,
        repo: &RepoName,
        filter: TagFilter,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<ImageRecord>, StoreError>;

    /// One image by digest.
    async fn image(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageRecord>, StoreError>;

    /// A manifest by digest.
    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError>;

    /// The manifest a tag points at.
    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, StoreError>;

    /// Deletes a manifest and every tag pointing at it; `InUse` if an index in the repository
    /// references it, `ManifestUnknown` if absent.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError>;

    /// Records a pull of a manifest at `at` (milliseconds since the epoch); never moves the
    /// time backwards, and does nothing if the manifest is gone.
    async fn record_pull(
        &self,
        repo: &RepoName,
        digest: &Digest,
        at: i64,
    ) -> Result<(), StoreError>;

    /// Removes a tag and, in the same transaction, the manifest it pointed at when no tag
    /// points at it any more and no manifest of the repository references it (ECR's
    /// `BatchDeleteImage` by tag). Whether the manifest went too; `ManifestUnknown` if the tag
    /// is absent.
    async fn untag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError>;

    /// Removes a tag (the manifest stays); `ManifestUnknown` if absent.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<(), StoreError>;

    /// Tags in lexical order after `last`, at most `n`; `RepositoryUnknown` if absent.
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<TagRecord>, StoreError>;

    /// Manifests whose subject is `subject`, optionally only of `artifact_type`.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, StoreError>;

    /// Records a new upload session in an existing repository (`RepositoryUnknown` otherwise),
    /// unless `limits` are reached (`TooManyUploads`), both checked in the same transaction.
    /// Session rows are not acknowledged content: they may be committed without waiting for the
    /// disk (a power loss can forget a session, never a blob).
    async fn create_upload(
        &self,
        id: &UploadId,
        repo: &RepoName,
        limits: UploadLimits,
    ) -> Result<(), StoreError>;

    /// An upload session.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError>;

    /// Records, before appending it, that a part of `len` bytes is about to be appended at
    /// `offset` (the staged size now). The part recorded before it landed as far as `offset`
    /// (all, some — a crash mid-append — or nothing: a failed append was cut back): what
    /// landed of it, if shorter than `min_len`, sets `short_part_end` to `offset`. Recording
    /// first, under the caller's upload lock, keeps the rule right whatever crashes or fails
    /// in between. Absent is not an error.
    async fn record_upload_part(
        &self,
        id: &UploadId,
        offset: u64,
        len: u64,
        min_len: u64,
    ) -> Result<(), StoreError>;

    /// Records, durably, that an upload's staged data is about to be committed as `digest`,
    /// so that a completion retried after a crash between commit and link finishes the link.
    async fn mark_upload_committing(
        &self,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<(), StoreError>;

    /// Forgets an upload session (absent is not an error).
    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Upload sessions started before `before` (milliseconds since the epoch).
    async fn stale_uploads(&self, before: i64) -> Result<Vec<UploadId>, StoreError>;

    // ---- quotas ---------------------------------------------------------------------------

    /// Bytes the repository and the registry hold.
    async fn usage(&self, repo: &RepoName) -> Result<Usage, StoreError>;

    /// Bytes the registry holds, how many repositories it has, and the `top` repositories
    /// holding the most bytes (one read of the whole store: callers cache it).
    async fn storage_usage(&self, top: usize) -> Result<StorageUsage, StoreError>;

    /// Answers a trivial query: the store is reachable and readable (readiness probes).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Whether adding `size` bytes of `digest` (`None`: nothing yet, only "is there room") to
    /// the repository stays within `quota` (`QuotaExceeded` otherwise). A pre-check; the
    /// writes check again in their transactions.
    async fn check_quota(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
        size: u64,
        quota: Quota,
    ) -> Result<(), StoreError>;

    // ---- lifecycle ------------------------------------------------------------------------

    /// Every manifest of the repository with its tags, subject and child manifests.
    async fn lifecycle_snapshot(
        &self,
        repo: &RepoName,
    ) -> Result<Vec<SnapshotManifest>, StoreError>;

    /// Deletes what a lifecycle run expires, in one transaction, re-checking each group (a
    /// group whose root is gone or whose tags changed is skipped; a dependent still tagged or
    /// referenced stays), and records `evaluated_at` as the policy's last evaluation. Returns
    /// the manifests deleted.
    async fn expire_images(
        &self,
        repo: &RepoName,
        groups: &[ExpiryGroup],
        evaluated_at: i64,
    ) -> Result<Vec<Digest>, StoreError>;

    /// Stores a repository's lifecycle preview (replacing the previous one).
    async fn put_lifecycle_preview(
        &self,
        repo: &RepoName,
        preview: &LifecyclePreview,
    ) -> Result<(), StoreError>;

    /// The repository's lifecycle preview, if one was started.
    async fn lifecycle_preview(
        &self,
        repo: &RepoName,
    ) -> Result<Option<LifecyclePreview>, StoreError>;

    /// Names of the repositories with a lifecycle policy.
    async fn lifecycle_repositories(&self) -> Result<Vec<String>, StoreError>;

    /// Records an image's scan (replacing the one before); nothing when the image is gone.
    async fn put_scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
        scan: &ScanRecord,
    ) -> Result<(), StoreError>;

    /// An image's scan.
    async fn scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ScanRecord>, StoreError>;

    /// The images whose scan is `IN_PROGRESS` (after a restart: to be scanned again).
    async fn scans_in_progress(&self) -> Result<Vec<(String, Digest)>, StoreError>;

    /// Every image with a scan (any status).
    async fn scanned_images(&self) -> Result<Vec<(String, Digest)>, StoreError>;

    // ---- garbage collection ---------------------------------------------------------------
    //
    // The protocol: a blob row is created (or refreshed) by `pin_blob` *before* the blob's
    // bytes are written, and a link or manifest makes it referenced. The collector removes a
    // row only when it is unreferenced and untouched for the grace period, and in the same
    // transaction leaves a tombstone; it deletes the bytes, then releases the tombstone. A pin
    // meeting a tombstone fails (`BlobBeingDeleted`) until the release, so bytes written after
    // a pin can never be deleted by a collection that started before it.

    /// Records that `digest` (`size` bytes) is about to be written, refreshing its touch time;
    /// `BlobBeingDeleted` while the collector removes it; `QuotaExceeded` when a blob the
    /// registry does not have yet would take it past `registry_quota`.
    async fn pin_blob(
        &self,
        digest: &Digest,
        size: u64,
        registry_quota: Option<u64>,
    ) -> Result<(), StoreError>;

    /// A repository's link to a blob: its size and when the link was last touched.
    async fn blob_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(u64, i64)>, StoreError>;

    /// Refreshes a link's touch time (a client found the blob present and will reference it).
    async fn touch_link(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError>;

    /// One window of the link pass: removes links untouched since `cutoff` that no manifest of
    /// their repository references and no committing upload is finishing.
    async fn gc_unlink_stale(
        &self,
        cutoff: i64,
        cursor: Option<&str>,
        dry_run: bool,
    ) -> Result<GcPage, StoreError>;

    /// One window of the blob pass: removes blob rows untouched since `cutoff` that nothing
    /// references (no link, no manifest, no committing upload) and tombstones them. The caller
    /// deletes their bytes and then calls [`MetadataStore::gc_release`].
    async fn gc_claim_blobs(
        &self,
        cutoff: i64,
        cursor: Option<&str>,
        dry_run: bool,
    ) -> Result<GcPage, StoreError>;

    /// Tombstones those of `digests` (stored bytes found by listing the blob store) that have
    /// no blob row: bytes left by a crash before their pin, or a deletion that did not reach
    /// the disk. Returns the ones claimed.
    async fn gc_claim_orphans(
        &self,
        digests: &[Digest],
        dry_run: bool,
    ) -> Result<Vec<Digest>, StoreError>;

    /// Tombstones left behind (a collection interrupted between claim and release).
    async fn gc_tombstones(&self) -> Result<Vec<Digest>, StoreError>;

    /// Releases tombstones once their bytes are deleted.
    async fn gc_release(&self, digests: &[Digest]) -> Result<(), StoreError>;

    /// Takes or renews the lease `name` for `holder` until `ttl_ms` from now; false if another
    /// holder's lease has not expired. (One collector at a time across replicas: tombstones
    /// left behind belong to a holder whose lease ran out.)
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Records replication jobs (`PENDING`, due now), durably, in one transaction.
    async fn add_replication_jobs(&self, jobs: &[NewReplicationJob]) -> Result<(), StoreError>;

    /// The oldest `PENDING` job of every destination (each destination replays pushes in
    /// order).
    async fn next_replication_jobs(&self) -> Result<Vec<ReplicationJob>, StoreError>;

    /// Records an attempt's outcome (attempts + 1).
    async fn finish_replication_job(&self, id: i64, outcome: &JobOutcome)
    -> Result<(), StoreError>;

    /// The jobs of one pushed manifest, oldest first.
    async fn replication_jobs_of(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<ReplicationJob>, StoreError>;

    /// Deletes finished jobs last changed before `before` (milliseconds); how many.
    async fn prune_replication_jobs(&self, before: i64) -> Result<u64, StoreError>;
}
