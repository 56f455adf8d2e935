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
}

/// Repository metadata. Every method is one transaction: callers never see a half-applied change.
///
/// **Invariants enforced here:** a tag points only at a manifest stored in its repository; a
/// manifest is recorded only if every blob and child manifest it references is present in the
/// repository; neither a blob link nor a manifest that a stored manifest references can be removed.
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

    /// Links a durable blob into a repository (creating the repository if needed) and, in the
    /// same transaction, ends the upload session that produced it, if any.
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&UploadId>,
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
    /// Creates the repository if needed.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
    ) -> Result<(), StoreError>;

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

    /// Records a new upload session. Session rows are not acknowledged content: they may be
    /// committed without waiting for the disk (a power loss can forget a session, never a blob).
    async fn create_upload(&self, id: &UploadId, repo: &RepoName) -> Result<(), StoreError>;

    /// An upload session.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError>;

    /// Forgets an upload session (absent is not an error).
    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Upload sessions started before `before` (milliseconds since the epoch).
    async fn stale_uploads(&self, before: i64) -> Result<Vec<UploadId>, StoreError>;
}
