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
    /// The repository exists already.
    #[error("repository {0} already exists")]
    RepositoryExists(String),
    /// The repository still holds images.
    #[error("repository {0} still contains images")]
    RepositoryNotEmpty(String),
    /// The tag is immutable and points at another manifest.
    #[error("tag {tag} is immutable and already points at {digest}")]
    TagImmutable {
        /// The tag.
        tag: String,
        /// What it points at.
        digest: String,
    },
    /// The user does not exist.
    #[error("user {0} is unknown")]
    UserUnknown(String),
    /// The user exists already.
    #[error("user {0} already exists")]
    UserExists(String),
    /// The access key does not exist.
    #[error("access key {0} is unknown")]
    KeyUnknown(String),
    /// A repository creation template for that prefix exists already.
    #[error("a repository creation template for prefix {0} already exists")]
    TemplateExists(String),
    /// No repository creation template for that prefix.
    #[error("no repository creation template for prefix {0}")]
    TemplateUnknown(String),
    /// A registry document of that kind and key exists already.
    #[error("{kind} {key} already exists")]
    DocumentExists {
        /// Its kind.
        kind: String,
        /// Its key.
        key: String,
    },
    /// No registry document of that kind and key.
    #[error("no {kind} {key}")]
    DocumentUnknown {
        /// Its kind.
        kind: String,
        /// Its key.
        key: String,
    },
    /// The manifest or tag does not exist.
    #[error("manifest {0} is unknown")]
    ManifestUnknown(String),
    /// Stored data is not what was written (e.g. a corrupt database row).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Too many upload sessions are open.
    #[error(
        "{open} upload sessions are open {scope}, the limit; finish or cancel some, or retry later"
    )]
    TooManyUploads {
        /// Where (`in repository …`, `in the registry`).
        scope: String,
        /// How many are open.
        open: u64,
    },
    /// The garbage collector is deleting this blob right now (it was unreferenced for the grace
    /// period); writing it again must wait until the deletion is over.
    #[error("blob {0} is being garbage-collected; retry shortly")]
    BlobBeingDeleted(Digest),
    /// Storing the blob would take a repository or the registry past its byte quota.
    #[error("{scope} quota of {limit} bytes exceeded: {usage} bytes stored, {size} more requested")]
    QuotaExceeded {
        /// Which quota (`repository team/app`, `registry`).
        scope: String,
        /// The quota.
        limit: u64,
        /// Bytes counted against it now.
        usage: u64,
        /// Bytes the refused write would add.
        size: u64,
    },
    /// The object store failed (an S3 request was refused or could not be made).
    #[error("object store: {0}")]
    ObjectStore(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store cannot do this (e.g. read back the parts of an unfinished multipart upload).
    #[error("{0}")]
    Unsupported(String),
    /// The blocking worker running a store operation died.
    #[error("store worker failed: {0}")]
    Worker(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Worker(e.to_string())
    }
}
