//! The one error type of every operation.

use std::path::PathBuf;

use berth_build::BuildError;
use berth_client::ClientError;

/// Why an operation failed. [`OpsError::kind`] names the failure for machines (the MCP server's
/// structured errors); [`OpsError::is_usage`] tells bad input (the CLI's exit code 2) from a
/// failure at run time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The request itself is wrong: a bad reference, flag value, path or setting.
    #[error("{0}")]
    Usage(String),
    /// A registry, layout or archive operation failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The ECR API refused or failed a call.
    #[error("{action}: {code}: {message}")]
    Ecr {
        /// The API action (`CreateRepository`).
        action: String,
        /// The error code ECR answered (`RepositoryNotFoundException`), or `Unknown`.
        code: String,
        /// Its message.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Lint findings at or above the failure threshold.
    #[error("lint: {count} finding(s) at or above the failure threshold ({threshold})")]
    LintFailed {
        /// How many findings fail the run.
        count: usize,
        /// The threshold.
        threshold: String,
    },
    /// Scan findings at or above the release's gate (the image is pushed: do not deploy it).
    #[error("{count} finding(s) at or above {gate}")]
    ScanGate {
        /// How many findings fail the gate.
        count: u64,
        /// The gate.
        gate: String,
    },
    /// The scanner failed (a layer it cannot read, the vulnerability database).
    #[error(transparent)]
    Scan(Box<berth_scan::ScanError>),
    /// A step could not go ahead because of what the registry holds (an immutable tag that
    /// points elsewhere, settings that differ and may not be changed).
    #[error("{0}")]
    Conflict(String),
    /// What went wrong, and what was being done.
    #[error("{context}: {source}")]
    Context {
        /// What was being done (`pushing 127.0.0.1:5000/app:v1`).
        context: String,
        /// The failure.
        #[source]
        source: Box<OpsError>,
    },
}

impl OpsError {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        OpsError::Usage(msg.into())
    }

    /// Wraps the error with what was being done.
    #[must_use]
    pub fn context(self, context: impl Into<String>) -> Self {
        OpsError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The failure without its context.
    pub fn root(&self) -> &OpsError {
        match self {
            OpsError::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether the request was wrong (as opposed to a failure while carrying it out).
    pub fn is_usage(&self) -> bool {
        matches!(self.root(), OpsError::Usage(_))
    }

    /// A stable name for the kind of failure: `invalid_input`, `not_found`, `unauthorized`,
    /// `denied`, `registry`, `build`, `dockerfile`, `ecr`, `io`, `lint`, `conflict`.
    pub fn kind(&self) -> &'static str {
        match self.root() {
            OpsError::Usage(_) => "invalid_input",
            OpsError::Client(c) => match c {
                ClientError::NotFound(_) => "not_found",
                ClientError::Unauthorized(_) | ClientError::NoAwsAuth { .. } => "unauthorized",
                ClientError::TagImmutable { .. } => "conflict",
                ClientError::Registry { status: 403, .. } => "denied",
                ClientError::Registry { status: 401, .. } => "unauthorized",
                _ => "registry",
            },
            OpsError::Build(b) => match b {
                BuildError::Parse { .. }
                | BuildError::Stage(_)
                | BuildError::Ignore(_)
                | BuildError::Instruction { .. }
                | BuildError::Source { .. } => "dockerfile",
                _ => "build",
            },
            OpsError::Ecr { code, .. } if code.ends_with("NotFoundException") => "not_found",
            OpsError::Ecr { .. } => "ecr",
            OpsError::Io { .. } => "io",
            OpsError::LintFailed { .. } => "lint",
            OpsError::Scan(_) => "scan",
            OpsError::ScanGate { .. } => "scan_gate",
            OpsError::Conflict(_) => "conflict",
            OpsError::Context { .. } => "internal",
        }
    }
}

/// `Result` with [`OpsError`].
pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// Adds context to a result's error.
pub trait ResultExt<T> {
    /// Wraps the error with what was being done.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<OpsError>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}
