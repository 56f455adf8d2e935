//! ECR API errors: the exception name (`__type`), message and HTTP status ECR answers with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{InternalError, RegistryError};

/// An ECR API failure, as AWS JSON 1.1 encodes it.
#[derive(Debug)]
pub(crate) struct EcrError {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) status: StatusCode,
    /// Extra members of the exception shape (e.g. `lastValidByteReceived`).
    pub(crate) extra: Vec<(&'static str, serde_json::Value)>,
    /// An internal cause, logged and never sent.
    pub(crate) internal: Option<String>,
}

impl EcrError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        EcrError {
            kind,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
            extra: Vec::new(),
            internal: None,
        }
    }

    pub(crate) fn with(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extra.push((key, value));
        self
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }

    /// `1 validation error detected: Value '…' at '…' failed to satisfy constraint: …`.
    pub(crate) fn constraint(field: &str, value: &str, constraint: &str) -> Self {
        let shown: String = value.chars().take(256).collect();
        Self::invalid(format!(
            "1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    pub(crate) fn server(cause: impl Into<String>) -> Self {
        EcrError {
            kind: "ServerException",
            message: "An internal error occurred; retry the request.".into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            extra: Vec::new(),
            internal: Some(cause.into()),
        }
    }
}

impl From<RegistryError> for EcrError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NameUnknown(m) => EcrError::new("RepositoryNotFoundException", m),
            RegistryError::NameInvalid(m) => EcrError::invalid(m),
            RegistryError::TooManyRequests(m) => {
                EcrError::new("ThrottlingException", m).status(StatusCode::BAD_REQUEST)
            }
            RegistryError::UploadUnknown => {
                EcrError::new("UploadNotFoundException", "The upload is not found.")
            }
            RegistryError::Store(s) => EcrError::server(s.to_string()),
            RegistryError::Denied(m) => EcrError::new("AccessDeniedException", m),
            RegistryError::QuotaExceeded(m) => EcrError::new("LimitExceededException", m),
            other => EcrError::invalid(other.to_string()),
        }
    }
}

impl EcrError {
    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl IntoResponse for EcrError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "__type": self.kind, "message": self.message });
        for (k, v) in self.extra {
            body[k] = v;
        }
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            )],
            body.to_string(),
        )
            .into_response();
        resp.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind));
        if let Some(cause) = self.internal {
            resp.extensions_mut().insert(InternalError(cause));
        }
        resp
    }
}
