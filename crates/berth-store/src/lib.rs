//! `berth-store` — where registry content lives.
//!
//! Two traits split the job: a [`BlobStore`] holds content-addressed bytes (layers, configs,
//! manifests) and staged uploads; a [`MetadataStore`] holds everything else (repositories, which
//! blobs a repository may serve, manifests and what they reference, tags, upload sessions) and is
//! the only place where consistency is decided, in transactions.
//!
//! The embedded defaults are [`FsBlobStore`] (temp file → fsync → rename) and [`SqliteMeta`]
//! (WAL, versioned migrations). The HTTP layer only sees the traits; beside them are
//! [`S3BlobStore`] and [`PgMeta`] (metadata and identities in PostgreSQL, for replicas sharing
//! one database).

mod blob;
mod cache;
mod error;
mod fs;
mod identity;
mod meta;
pub mod migrate;
mod postgres;
mod postgres_identity;
mod postgres_schema;
mod postgres_tls;
mod s3;
mod sqlite;
mod sqlite_identity;
mod sqlite_schema;

pub use crate::postgres::{DEFAULT_MAX_CONNECTIONS, PgMeta, PgOptions};
pub use blob::{BlobStore, ByteStream, HashCheckpoint, UploadId, Verify};
pub use cache::DigestCache;
pub use error::StoreError;
pub use fs::FsBlobStore;
pub use identity::{
    AccessKeyRecord, DocumentRecord, IdentityStore, KeyOwner, PutMode, TemplateRecord, UserPolicy,
    UserRecord,
};
pub use meta::{
    ExpiryGroup, GcBlob, GcPage, ImageRecord, JobOutcome, LifecyclePreview, ManifestRecord,
    MetadataStore, NewManifest, NewReplicationJob, NewRepository, Quota, ReplicationJob,
    RepoSummary, RepositoryRecord, RepositoryUpdate, ScanRecord, SnapshotManifest, StorageUsage,
    TagFilter, TagRecord, TagRule, UploadLimits, UploadRecord, Usage,
};
pub use s3::{MIN_PART_SIZE, S3BlobStore, S3Options};
pub use sqlite::{Durability, SqliteMeta};

/// A metadata database: the metadata and identity stores in one (both implementations are).
/// `Arc<dyn MetadataDb>` coerces to either trait object.
pub trait MetadataDb: MetadataStore + IdentityStore {}

impl<T: MetadataStore + IdentityStore> MetadataDb for T {}

/// Milliseconds since the Unix epoch (the timestamp unit of the metadata store).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
