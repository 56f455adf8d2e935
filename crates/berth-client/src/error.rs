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
    /// config.json exists but is not what docker writes.
    #[error("{path}: not a docker config file: {reason}")]
    BadConfig {
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
    /// A `WWW-Authenticate` header berth cannot use.
    #[error("unusable WWW-Authenticate header: {0}")]
    Challenge(String),
}
