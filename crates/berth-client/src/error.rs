/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Reading or writing a local file (config.json, caches).
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An image archive that is not what its format says.
    #[error("{path}: {reason}")]
    Archive {
        /// The archive.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// config.json exists but is not what docker writes.
    #[error("{path}: not a docker config file: {reason}")]
    BadConfig {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `berth login HOST` without a user name, for a registry that takes no AWS credentials.
    #[error(
        "{host} does not take AWS credentials (it is neither Amazon ECR nor berth serve): log in with `berth login {host} -u USER --password-stdin`"
    )]
    NoAwsAuth {
        /// The registry host.
        host: String,
    },
    /// berth's login file exists but cannot be read as one.
    #[error("{path}: not a berth login file: {reason}")]
    BadLogins {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper could not be run or failed.
    #[error("credential helper docker-credential-{helper}: {reason}")]
    Helper {
        /// The helper's name (`ecr-login`, `desktop`, …).
        helper: String,
        /// What went wrong (never the secret).
        reason: String,
    },
    /// Content does not hash to the digest it was asked for.
    #[error("content of {expected} hashes to {actual}: refusing corrupt or substituted data")]
    DigestMismatch {
        /// What was asked for.
        expected: berth_oci::Digest,
        /// What arrived.
        actual: berth_oci::Digest,
    },
    /// Content is not the size its descriptor declares.
    #[error("{digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: berth_oci::Digest,
        /// Declared size.
        expected: u64,
        /// Bytes seen (so far).
        actual: u64,
    },
    /// A manifest that does not validate.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// Something a source or sink does not have.
    #[error("not found: {0}")]
    NotFound(String),
    /// The network or HTTP layer failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The registry refused our credentials (or we have none it accepts).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The registry answered with an error.
    #[error("{what}: registry answered {status}: {detail}")]
    Registry {
        /// What we were doing.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's error code and message, if it sent them.
        detail: String,
    },
    /// The tag exists on an immutable repository and points at other content.
    #[error(
        "tag {tag:?} already exists in the immutable repository {repository} and points at other content ({detail}): push under a new tag"
    )]
    TagImmutable {
        /// The tag.
        tag: String,
        /// `host/repository`.
        repository: String,
        /// What the registry said.
        detail: String,
    },
    /// A `WWW-Authenticate` header berth cannot use.
    #[error("unusable WWW-Authenticate header: {0}")]
    Challenge(String),
}
