//! The one error type of the HTTP layer: every failure maps to a status and an OCI error code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, ManifestError, NameError};
use berth_store::StoreError;

/// The error codes of the OCI Distribution spec (plus `UNKNOWN` for internal failures, as the
/// reference implementation does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not one of the spec's fourteen: the code docker-distribution and ECR answer when a tag
    /// may not be moved (an immutable repository).
    TagInvalid,
    Unknown,
}

impl ErrorCode {
    /// The code as it appears in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

/// Everything a registry request can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The blob is not in the repository.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    /// The upload session does not exist (or belongs to another repository).
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    /// The upload request is malformed.
    #[error("blob upload invalid: {0}")]
    UploadInvalid(String),
    /// A chunk does not start where the upload ends (416).
    #[error("chunk starts at {start} but the upload is at {offset}")]
    RangeNotSatisfiable {
        /// Where the chunk claimed to start.
        start: u64,
        /// Bytes staged so far.
        offset: u64,
    },
    /// A `Range` on a blob GET that cannot be served (416).
    #[error("requested range not satisfiable (blob is {size} bytes)")]
    BlobRangeInvalid {
        /// The blob's size.
        size: u64,
    },
    /// A digest that is malformed, unsupported or does not match the content.
    #[error("{0}")]
    DigestInvalid(String),
    /// A manifest references a blob the repository does not have.
    #[error("manifest references a blob unknown to the repository: {0}")]
    ManifestBlobUnknown(Digest),
    /// An index references a manifest the repository does not have.
    #[error("index references a manifest unknown to the repository: {0}")]
    ManifestChildUnknown(Digest),
    /// The manifest is malformed.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// No manifest or tag by that reference.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// The repository name is invalid.
    #[error("{0}")]
    NameInvalid(String),
    /// The repository does not exist.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// A size or count parameter is invalid.
    #[error("{0}")]
    SizeInvalid(String),
    /// The request body is larger than allowed (413).
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// The operation is refused (e.g. deleting content a manifest still references, or a
    /// policy denies it).
    #[error("{0}")]
    Denied(String),
    /// No (valid) credentials where they are needed (401 with a Basic challenge).
    #[error("{message}")]
    Unauthorized {
        /// Why.
        message: String,
        /// The challenge's realm.
        realm: String,
        /// The region ECR API calls and tokens are signed for (advertised in
        /// [`berth_oci::ECR_AUTH_HEADER`]).
        region: String,
    },
    /// The tag exists, points at another manifest and the repository's tags are immutable.
    #[error(
        "The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
    )]
    TagImmutable {
        /// The tag.
        tag: String,
        /// The repository.
        repo: String,
    },
    /// A write would take a repository or the registry past its byte quota (403 `DENIED`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Too many requests of a kind at once (429, with `Retry-After`).
    #[error("{0}")]
    TooManyRequests(String),
    /// The method or operation is not supported on this route.
    #[error("{0}")]
    Unsupported(String),
    /// The request's route does not exist.
    #[error("no such route: {0}")]
    NotFound(String),
    /// The client went away or sent a broken body.
    #[error("request body: {0}")]
    Body(String),
    /// A pull-through cache's upstream failed and nothing cached can answer (502 `UNKNOWN`).
    #[error("{0}")]
    Upstream(String),
    /// A storage failure.
    #[error(transparent)]
    Store(StoreError),
}

impl RegistryError {
    /// The OCI error code.
    pub fn code(&self) -> ErrorCode {
        use RegistryError as E;
        match self {
            E::BlobUnknown(_) => ErrorCode::BlobUnknown,
            E::UploadUnknown => ErrorCode::BlobUploadUnknown,
            E::UploadInvalid(_) | E::RangeNotSatisfiable { .. } | E::Body(_) => {
                ErrorCode::BlobUploadInvalid
            }
            E::BlobRangeInvalid { .. } => ErrorCode::SizeInvalid,
            E::DigestInvalid(_) => ErrorCode::DigestInvalid,
            E::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            E::ManifestChildUnknown(_) | E::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            E::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            E::NameInvalid(_) => ErrorCode::NameInvalid,
            E::NameUnknown(_) | E::NotFound(_) => ErrorCode::NameUnknown,
            E::SizeInvalid(_) | E::TooLarge { .. } => ErrorCode::SizeInvalid,
            E::Denied(_) | E::QuotaExceeded(_) => ErrorCode::Denied,
            E::Unauthorized { .. } => ErrorCode::Unauthorized,
            E::TagImmutable { .. } => ErrorCode::TagInvalid,
            E::Unsupported(_) => ErrorCode::Unsupported,
            E::TooManyRequests(_) => ErrorCode::TooManyRequests,
            E::Store(_) | E::Upstream(_) => ErrorCode::Unknown,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use RegistryError as E;
        match self {
            E::BlobUnknown(_)
            | E::UploadUnknown
            | E::ManifestUnknown(_)
            | E::NameUnknown(_)
            | E::NotFound(_) => StatusCode::NOT_FOUND,
            E::RangeNotSatisfiable { .. } | E::BlobRangeInvalid { .. } => {
                StatusCode::RANGE_NOT_SATISFIABLE
            }
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::Denied(_) | E::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            E::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            E::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            E::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            E::Upstream(_) => StatusCode::BAD_GATEWAY,
            E::UploadInvalid(_)
            | E::DigestInvalid(_)
            | E::ManifestBlobUnknown(_)
            | E::ManifestChildUnknown(_)
            | E::ManifestInvalid(_)
            | E::NameInvalid(_)
            | E::SizeInvalid(_)
            | E::TagImmutable { .. }
            | E::Body(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn detail(&self) -> serde_json::Value {
        use RegistryError as E;
        match self {
            E::BlobUnknown(d) | E::ManifestBlobUnknown(d) | E::ManifestChildUnknown(d) => {
                serde_json::json!({ "digest": d.to_string() })
            }
            E::RangeNotSatisfiable { offset, .. } => serde_json::json!({ "offset": offset }),
            _ => serde_json::Value::Null,
        }
    }
}

/// An internal error's text, attached to the response for the logging middleware (never sent).
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            RegistryError::Store(_) => "internal server error".to_owned(),
            other => other.to_string(),
        };
        let mut entry = serde_json::json!({ "code": self.code().as_str(), "message": message });
        let detail = self.detail();
        if !detail.is_null() {
            entry["detail"] = detail;
        }
        let body = serde_json::json!({ "errors": [entry] });
        let mut resp = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
            .into_response();
        if let RegistryError::RangeNotSatisfiable { offset, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&range_header(*offset))
        {
            resp.headers_mut().insert(header::RANGE, v);
        }
        if let RegistryError::BlobRangeInvalid { size } = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if let RegistryError::Unauthorized { realm, region, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "Basic realm=\"{realm}\",service=\"ecr.amazonaws.com\""
            )) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            if let Some(v) = ecr_auth_value(region) {
                resp.headers_mut().insert(berth_oci::ECR_AUTH_HEADER, v);
            }
        }
        if let RegistryError::TooManyRequests(_) = &self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let RegistryError::Store(e) = &self {
            resp.extensions_mut().insert(InternalError(e.to_string()));
        }
        resp
    }
}

/// The [`berth_oci::ECR_AUTH_HEADER`] value advertising ECR-style auth for `region` (sent on
/// `GET /v2/` and on every 401).
pub(crate) fn ecr_auth_value(region: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&berth_oci::ecr_auth_value(region)).ok()
}

/// The `Range` header of an upload with `size` bytes staged (`0-<last byte>`; `0-0` when empty,
/// as the reference implementation answers).
pub fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

impl RegistryError {
    /// A server-side failure described by `cause` (logged, never sent): 500.
    pub(crate) fn unavailable(cause: String) -> Self {
        RegistryError::Store(StoreError::Database(cause.into()))
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BlobNotFound(d) => RegistryError::BlobUnknown(d),
            StoreError::UploadUnknown(_) => RegistryError::UploadUnknown,
            StoreError::OffsetMismatch { expected, actual } => RegistryError::RangeNotSatisfiable {
                start: expected,
                offset: actual,
            },
            StoreError::ManifestBlobUnknown(d) => RegistryError::ManifestBlobUnknown(d),
            StoreError::ManifestChildUnknown(d) => RegistryError::ManifestChildUnknown(d),
            StoreError::SizeMismatch { .. } => RegistryError::ManifestInvalid(e.to_string()),
            StoreError::Stream(e) => RegistryError::Body(e.to_string()),
            StoreError::InUse { .. } => {
                RegistryError::Denied(format!("{e}; delete the referencing manifest first"))
            }
            StoreError::RepositoryUnknown(r) => RegistryError::NameUnknown(r),
            StoreError::TooManyUploads { .. } | StoreError::BlobBeingDeleted(_) => {
                RegistryError::TooManyRequests(e.to_string())
            }
            StoreError::QuotaExceeded { .. } => RegistryError::QuotaExceeded(e.to_string()),
            StoreError::ManifestUnknown(r) => RegistryError::ManifestUnknown(r),
            StoreError::RepositoryExists(r) => {
                RegistryError::Denied(format!("repository {r} already exists"))
            }
            StoreError::RepositoryNotEmpty(r) => {
                RegistryError::Denied(format!("repository {r} still contains images"))
            }
            other => RegistryError::Store(other),
        }
    }
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        RegistryError::ManifestInvalid(e.to_string())
    }
}

impl From<NameError> for RegistryError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Digest(d) => RegistryError::DigestInvalid(d.to_string()),
            NameError::InvalidTag(_) => RegistryError::ManifestInvalid(e.to_string()),
            other => RegistryError::NameInvalid(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fourteen_codes_are_spelled_as_the_spec_does() {
        let all = [
            (ErrorCode::BlobUnknown, "BLOB_UNKNOWN"),
            (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID"),
            (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
            (ErrorCode::DigestInvalid, "DIGEST_INVALID"),
            (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
            (ErrorCode::ManifestInvalid, "MANIFEST_INVALID"),
            (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN"),
            (ErrorCode::NameInvalid, "NAME_INVALID"),
            (ErrorCode::NameUnknown, "NAME_UNKNOWN"),
            (ErrorCode::SizeInvalid, "SIZE_INVALID"),
            (ErrorCode::Unauthorized, "UNAUTHORIZED"),
            (ErrorCode::Denied, "DENIED"),
            (ErrorCode::Unsupported, "UNSUPPORTED"),
            (ErrorCode::TooManyRequests, "TOOMANYREQUESTS"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
        }
    }
}
