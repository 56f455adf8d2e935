//! The Amazon ECR API (AWS JSON 1.1: `POST /` with `X-Amz-Target`), SigV4-authenticated, on the
//! same listener as `/v2/`. Every action goes through the same [`Registry`] operations and the
//! same authorization check as the OCI API.

mod actions;
mod error;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use berth_iam::policy::Principal;
use berth_iam::sigv4;
use serde::de::DeserializeOwned;

pub(crate) use error::EcrError;

use crate::access::{Caller, KeyLookup};
use crate::audit::{Api, AuditInfo, Identity};
use crate::service::Registry;

/// The `X-Amz-Target` prefix of ECR actions.
const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// Request bodies larger than this are refused (per action below).
const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

fn body_limit(action: &str) -> usize {
    match action {
        // 20 MiB of layer data, base64-encoded, plus the JSON around it.
        "UploadLayerPart" => 28 * 1024 * 1024 + 64 * 1024,
        // A 4 MiB manifest, JSON-escaped.
        "PutImage" => 12 * 1024 * 1024,
        _ => DEFAULT_BODY_LIMIT,
    }
}

/// The action a request names in `X-Amz-Target`, if it is one of ours (`unknown` otherwise):
/// a bounded metrics label.
pub(crate) fn known_action(headers: &axum::http::HeaderMap) -> &'static str {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .and_then(|a| actions::KNOWN.iter().find(|k| **k == a).copied())
        .unwrap_or("unknown")
}

/// `POST /`: one ECR API call.
pub(crate) async fn api(State(reg): State<Registry>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut audit = reg.audit().is_some().then(|| AuditInfo {
        api: Api::Ecr,
        read_only: true,
        ..AuditInfo::default()
    });
    let result = call(&reg, req, audit.as_mut()).await;
    if let (Some(a), Err(e)) = (&mut audit, &result) {
        a.error = Some((e.kind.to_owned(), e.message.clone()));
    }
    let mut resp = match result {
        Ok(value) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            )],
            value.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(crate::http::REQUEST_ID, v);
    }
    if let Some(a) = audit {
        resp.extensions_mut().insert(a);
    }
    resp
}

/// One ECR call; `audit` (when the audit log is on) learns the action, the caller and the
/// request's names and ids as they become known.
async fn call(
    reg: &Registry,
    req: Request,
    mut audit: Option<&mut AuditInfo>,
) -> Result<serde_json::Value, EcrError> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(action) = target.strip_prefix(TARGET_PREFIX).map(str::to_owned) else {
        return Err(EcrError::new(
            "UnknownOperationException",
            if target.is_empty() {
                "Missing X-Amz-Target: this endpoint speaks the Amazon ECR API (AWS JSON 1.1)"
                    .to_owned()
            } else {
                format!("Unknown operation {target}")
            },
        ));
    };
    if !actions::KNOWN.contains(&action.as_str()) {
        return Err(EcrError::new(
            "UnknownOperationException",
            format!("Unknown operation {target}"),
        ));
    }
    if let Some(a) = audit.as_deref_mut() {
        a.event_name = Some(known_action(req.headers()));
        a.read_only = !crate::audit::ecr_changes_state(&action);
    }
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let limit = body_limit(&action);
    if !reg.config().auth {
        let _permit = reg.ecr_body_permit(body_bytes(&parts.headers, limit))?;
        let body = read_limited(body, limit).await?;
        let admin = Caller {
            principal: Principal::User {
                account: reg.config().registry_id.clone(),
                name: "admin".into(),
            },
            policies: Vec::new(),
            admin: true,
            access_key: None,
            source_ip,
            key_version: 0,
            scope: None,
            broken_policy: None,
        };
        if let Some(a) = audit.as_deref_mut() {
            a.identity = Some(Identity::of(&admin));
            a.params = crate::audit::ecr_params(&body);
        }
        return actions::dispatch(reg, &admin, &action, &body).await;
    }
    // The key is looked up, and the action authorized as far as the headers tell, before the
    // body is read: nobody without a key, or without any permission for the action, can make the
    // server hold a large body; and the bodies held at once are bounded.
    let (signed, caller, secret) = match identify(reg, &parts, source_ip).await {
        Ok(found) => found,
        Err(e) => {
            if let Some(a) = audit.as_deref_mut() {
                let key = sigv4::parse(&parts.headers).ok().map(|s| s.access_key_id);
                a.identity = Some(Identity::unknown(key.as_deref()));
            }
            return Err(e);
        }
    };
    if let Some(a) = audit.as_deref_mut() {
        // Not the key's user until the signature is verified: a key id alone proves nothing.
        a.identity = Some(Identity::unknown(Some(&signed.access_key_id)));
    }
    if !FILTERING_ACTIONS.contains(&action.as_str()) {
        let iam_action = format!("ecr:{action}");
        reg.may_authorize(&caller, &iam_action)
            .await
            .map_err(|d| actions::denied(d, &iam_action))?;
    }
    let _permit = reg.ecr_body_permit(body_bytes(&parts.headers, limit))?;
    let body = read_limited(body, limit).await?;
    // Read-only calls are logged only when refused, which happens before this point: their
    // bodies are not parsed a second time.
    if let Some(a) = audit.as_deref_mut()
        && !a.read_only
    {
        a.params = crate::audit::ecr_params(&body);
    }
    sigv4::verify(
        &signed,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        secret.expose(),
        reg.clock.now(),
        sigv4::Scope {
            service: "ecr",
            region: &reg.config().region,
        },
    )
    .map_err(sig_err)?;
    if let Some(a) = audit {
        a.identity = Some(Identity::of(&caller));
    }
    actions::dispatch(reg, &caller, &action, &body).await
}

/// Actions that filter what they answer by the caller's permissions instead of refusing
/// (`DescribeRepositories` without names lists what the caller may describe): not refused
/// before their body is read.
const FILTERING_ACTIONS: &[&str] = &["DescribeRepositories"];

/// What a request's body may take while it is read: its `Content-Length`, or the action's
/// limit when it has none (or claims more: the read stops at the limit).
fn body_bytes(headers: &axum::http::HeaderMap, limit: usize) -> u64 {
    let limit = limit as u64;
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(limit, |n| n.min(limit))
}

async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, EcrError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            EcrError::invalid(format!(
                "The request body is larger than the {limit}-byte limit of this action"
            ))
        } else {
            EcrError::serialization(format!("The request body could not be read: {e}"))
        }
    })
}

fn sig_err(e: sigv4::SigV4Error) -> EcrError {
    EcrError::new(e.exception(), e.message())
}

/// Who signed a request, from its headers alone: the parsed signature, the caller behind the
/// access key and the key's secret (to verify the signature once the body is read).
async fn identify(
    reg: &Registry,
    parts: &axum::http::request::Parts,
    source_ip: Option<std::net::IpAddr>,
) -> Result<(sigv4::SignedBy, Caller, berth_iam::keys::Secret), EcrError> {
    let signed = sigv4::parse(&parts.headers).map_err(sig_err)?;
    if !signed.signed_headers.iter().any(|h| h == "x-amz-target") {
        return Err(EcrError::new(
            "IncompleteSignatureException",
            "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let unrecognized = || {
        EcrError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    if signed.security_token.is_some() {
        // berth issues no temporary credentials, so no session token can be one of ours.
        return Err(unrecognized());
    }
    match reg
        .caller_for_key(&signed.access_key_id, source_ip)
        .await
        .map_err(EcrError::from)?
    {
        Ok((caller, secret)) => Ok((signed, caller, secret)),
        Err(KeyLookup::Unknown) => Err(unrecognized()),
        Err(KeyLookup::Sealed(e)) => Err(EcrError::server(format!(
            "the secret of access key {} cannot be opened (was the master key changed?): {e}",
            signed.access_key_id
        ))),
    }
}

/// Deserializes a request: wrong types are `SerializationException`, a missing required member
/// `InvalidParameterException`, as AWS answers.
pub(crate) fn parse_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcrError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    if berth_oci::json::too_deep(body, berth_oci::json::MAX_JSON_DEPTH) {
        return Err(EcrError::serialization(format!(
            "The request could not be parsed: JSON nested deeper than {} levels",
            berth_oci::json::MAX_JSON_DEPTH
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            EcrError::invalid(format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            ))
        } else {
            EcrError::serialization(format!("The request could not be parsed: {text}"))
        }
    })
}
