use berth_oci::Digest;

/// Everything a store can fail with. Backend-specific failures keep their source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Filesystem or stream I/O.
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The data being appended failed to arrive (the client's body broke, stalled or was refused
    /// by the caller's limits) — not a storage failure.
    #[error("data source: {0}")]
    Stream(#[source] std::io::Error),
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The blob is not stored.
    #[error("blob {0} is not stored")]
    BlobNotFound(Digest),
    /// No upload session with that id.
    #[error("upload session {0} is unknown")]
    UploadUnknown(String),
    /// An append did not start where the staged data ends.
    #[error("upload is at offset {actual}, chunk starts at {expected}")]
    OffsetMismatch {
        /// Where the chunk claims to start.
        expected: u64,
        /// Where the staged data ends.
        actual: u64,
    },
    /// A manifest references a blob the repository does not have.
    #[error("blob {0} referenced by the manifest is unknown to the repository")]
    ManifestBlobUnknown(Digest),
    /// An index references a manifest the repository does not have.
    #[error("manifest {0} referenced by the index is unknown to the repository")]
    ManifestChildUnknown(Digest),
    /// A manifest declares a size for a blob that differs from the stored blob's size.
    #[error("descriptor of {digest} declares {declared} bytes but the blob has {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size in the manifest.
        declared: u64,
        /// Size stored.
        actual: u64,
    },
    /// Deleting would leave a stored manifest with a dangling reference.
    #[error("{digest} is still referenced by manifest {by}")]
    InUse {
        /// What was to be deleted.
        digest: Digest,
        /// A manifest that references it.
        by: String,
    },
    /// The repository does not exist.
    #[error("repository {0} is unknown")]
    RepositoryUnknown(String),
    /// The manifest or tag does not exist.
    #[error("manifest {0} is unknown")]
    ManifestUnknown(String),
    /// Stored data is not what was written (e.g. a corrupt database row).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The blocking worker running a store operation died.
    #[error("store worker failed: {0}")]
    Worker(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Worker(e.to_string())
    }
}
