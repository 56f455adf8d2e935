//! Verification of AWS Signature Version 4 (the `Authorization` header the AWS CLI, boto3 and
//! the AWS SDKs send to the ECR API).
//!
//! The signature is recomputed with `aws-sigv4` (the signer the SDKs themselves use) from the
//! request's method, URI, body and the headers the client listed as signed, then compared in
//! constant time. Nothing here looks the key up: [`parse`] reads who signed, the caller finds
//! that key's secret, [`verify`] checks the signature and the 15-minute window.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use http::{HeaderMap, Method, Uri};
use subtle::ConstantTimeEq;

pub use crate::dates::amz_format;
use crate::dates::parse_amz_date;

/// The only algorithm accepted.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's time may be from the server's, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Bounds on the `Authorization` header, against abuse.
const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;

/// Why a request's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header is present but incomplete or malformed.
    #[error("{0}")]
    Incomplete(String),
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// Signed more than 15 minutes ago.
    #[error("Signature expired: {signed} is now earlier than {limit} ({now} - 15 min.)")]
    Expired {
        /// The request's `X-Amz-Date`.
        signed: String,
        /// The earliest time accepted.
        limit: String,
        /// The server's time.
        now: String,
    },
    /// Signed more than 15 minutes in the future.
    #[error("Signature not yet current: {signed} is still later than {limit} ({now} + 15 min.)")]
    NotYetCurrent {
        /// The request's `X-Amz-Date`.
        signed: String,
        /// The latest time accepted.
        limit: String,
        /// The server's time.
        now: String,
    },
    /// The credential scope names another service.
    #[error("Credential should be scoped to correct service: '{0}'.")]
    WrongService(String),
    /// The credential scope names another region than the server's.
    #[error("Credential should be scoped to a valid region, not '{0}'.")]
    WrongRegion(String),
    /// The credential scope's date is not the request's date.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{date}', from 'X-Amz-Date'."
    )]
    ScopeDate {
        /// The date in the credential scope.
        scope: String,
        /// The date of `X-Amz-Date`.
        date: String,
    },
}

impl SigV4Error {
    /// The AWS exception name (`__type`) for this refusal.
    pub fn exception(&self) -> &'static str {
        match self {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            _ => "InvalidSignatureException",
        }
    }

    /// The message AWS gives with it.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// What the `Authorization` header says about who signed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// The access key id.
    pub access_key_id: String,
    /// The credential scope's date (`YYYYMMDD`).
    pub date: String,
    /// The credential scope's region.
    pub region: String,
    /// The credential scope's service.
    pub service: String,
    /// The signed header names, lowercase, in the order given.
    pub signed_headers: Vec<String>,
    /// The hex signature.
    pub signature: String,
    /// The request's `X-Amz-Date`.
    pub amz_date: SystemTime,
    /// `X-Amz-Security-Token`, when the client used temporary credentials.
    pub security_token: Option<String>,
}

/// Reads the `Authorization` and `X-Amz-Date` headers.
pub fn parse(headers: &HeaderMap) -> Result<SignedBy, SigV4Error> {
    let incomplete = |m: &str| SigV4Error::Incomplete(m.to_owned());
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(SigV4Error::Missing);
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(incomplete("The Authorization header is too long."));
    }
    let value = value
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not ASCII text."))?;
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        // Echoed only when it looks like an algorithm name: a header without a space is all
        // "algorithm" and may be a secret that must never reach a message or a log.
        let named = algorithm.len() <= 32
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        return Err(SigV4Error::Incomplete(if named {
            format!("Unsupported AWS 'algorithm': '{algorithm}'. Use AWS4-HMAC-SHA256.")
        } else {
            "Unsupported AWS 'algorithm'. Sign requests with AWS Signature Version 4.".to_owned()
        }));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in rest.split(',') {
        let Some((k, v)) = field.trim().split_once('=') else {
            continue;
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok());
    if amz_date.is_none() {
        missing.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .to_owned(),
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        return Err(SigV4Error::Incomplete(missing.join(" ")));
    };
    if !missing.is_empty() {
        return Err(SigV4Error::Incomplete(missing.join(" ")));
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = scope.as_slice() else {
        // The parts are not echoed: a malformed Credential may hold a secret pasted by mistake.
        return Err(SigV4Error::Incomplete(format!(
            "Credential should have 5 parts, separated by '/', not {}",
            scope.len()
        )));
    };
    if *terminator != "aws4_request" || key.is_empty() || region.is_empty() {
        return Err(incomplete(
            "Credential should be scoped with a valid terminator: 'aws4_request'.",
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete(
            "The Signature must be 64 hexadecimal characters.",
        ));
    }
    let signed_headers: Vec<String> = signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let amz = parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Incomplete(format!(
            "X-Amz-Date must be in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z', not '{amz_date}'."
        ))
    })?;
    if !amz_date.starts_with(date) || date.len() != 8 {
        return Err(SigV4Error::ScopeDate {
            scope: (*date).to_owned(),
            date: amz_date.chars().take(8).collect(),
        });
    }
    let security_token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(SignedBy {
        access_key_id: (*key).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
        amz_date: amz,
        security_token,
    })
}

/// The service and region a server accepts signatures for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The signing name of the service (`ecr`).
    pub service: &'a str,
    /// The server's region (`us-east-1`).
    pub region: &'a str,
}

/// Verifies the signature of a request signed by `signed` with `secret`, at server time `now`,
/// for the service and region of `expected`.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    signed: &SignedBy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
    now: SystemTime,
    expected: Scope<'_>,
) -> Result<(), SigV4Error> {
    if signed.service != expected.service {
        return Err(SigV4Error::WrongService(expected.service.to_owned()));
    }
    if signed.region != expected.region {
        return Err(SigV4Error::WrongRegion(signed.region.clone()));
    }
    if signed.amz_date + MAX_SKEW < now {
        return Err(SigV4Error::Expired {
            signed: amz_format(signed.amz_date),
            limit: amz_format(now - MAX_SKEW),
            now: amz_format(now),
        });
    }
    if signed.amz_date > now + MAX_SKEW {
        return Err(SigV4Error::NotYetCurrent {
            signed: amz_format(signed.amz_date),
            limit: amz_format(now + MAX_SKEW),
            now: amz_format(now),
        });
    }
    // Only the headers the client signed take part, each with all its values joined.
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(signed.signed_headers.len());
    for name in &signed.signed_headers {
        let values: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| v.to_str())
            .collect::<Result<_, _>>()
            .map_err(|_| SigV4Error::Mismatch)?;
        if values.is_empty() {
            return Err(SigV4Error::Mismatch);
        }
        pairs.push((name.clone(), values.join(",")));
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .ok_or(SigV4Error::Mismatch)?;
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let full_uri = format!("http://{host}{path_and_query}");
    let identity = aws_credential_types::Credentials::new(
        signed.access_key_id.clone(),
        secret.to_owned(),
        signed.security_token.clone(),
        None,
        "berth",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&signed.region)
        .name(&signed.service)
        .time(signed.amz_date)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| SigV4Error::Mismatch)?
        .into();
    let request = SignableRequest::new(
        method.as_str(),
        full_uri,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|_| SigV4Error::Mismatch)?;
    let (_, expected) = sign(request, &params)
        .map_err(|_| SigV4Error::Mismatch)?
        .into_parts();
    if bool::from(expected.as_bytes().ct_eq(signed.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const ECR: Scope<'static> = Scope {
        service: "ecr",
        region: "us-east-1",
    };

    /// Signs a request the way the SDKs do, with `aws-sigv4`'s signer.
    fn signed_request(at: SystemTime, body: &[u8], service: &str) -> HeaderMap {
        let amz = amz_format(at);
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:5000"));
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerRegistry_V20150921.DescribeRegistry"),
        );
        headers.insert("x-amz-date", HeaderValue::from_str(&amz).unwrap());
        let identity =
            aws_credential_types::Credentials::new(KEY, SECRET, None, None, "test").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let req = SignableRequest::new(
            "POST",
            "http://127.0.0.1:5000/",
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(req, &params).unwrap().into_parts();
        let mut req = http::Request::builder()
            .method("POST")
            .uri("/")
            .body(())
            .unwrap();
        *req.headers_mut() = headers;
        instructions.apply_to_request_http1x(&mut req);
        req.headers().clone()
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_342_272)
    }

    #[test]
    fn a_genuine_signature_verifies() {
        let body = br#"{"repositoryName":"app"}"#;
        let headers = signed_request(t0(), body, "ecr");
        let by = parse(&headers).unwrap();
        assert_eq!(by.access_key_id, KEY);
        assert_eq!(by.region, "us-east-1");
        assert_eq!(by.service, "ecr");
        assert_eq!(by.amz_date, t0());
        let uri: Uri = "/".parse().unwrap();
        verify(&by, &Method::POST, &uri, &headers, body, SECRET, t0(), ECR).unwrap();
        // 14 minutes either way is still inside the window.
        let late = t0() + Duration::from_secs(14 * 60);
        verify(&by, &Method::POST, &uri, &headers, body, SECRET, late, ECR).unwrap();
    }

    #[test]
    fn anything_altered_is_a_mismatch() {
        let body = br#"{"repositoryName":"app"}"#;
        let headers = signed_request(t0(), body, "ecr");
        let by = parse(&headers).unwrap();
        let uri: Uri = "/".parse().unwrap();
        let check = |h: &HeaderMap, b: &[u8], secret: &str, m: &Method, u: &Uri| {
            verify(&by, m, u, h, b, secret, t0(), ECR)
        };
        assert_eq!(
            check(&headers, b"{}", SECRET, &Method::POST, &uri),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            check(&headers, body, "wrong-secret", &Method::POST, &uri),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            check(&headers, body, SECRET, &Method::PUT, &uri),
            Err(SigV4Error::Mismatch)
        );
        let other: Uri = "/other".parse().unwrap();
        assert_eq!(
            check(&headers, body, SECRET, &Method::POST, &other),
            Err(SigV4Error::Mismatch)
        );
        let mut target = headers.clone();
        target.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerRegistry_V20150921.DeleteRepository"),
        );
        assert_eq!(
            check(&target, body, SECRET, &Method::POST, &uri),
            Err(SigV4Error::Mismatch)
        );
        // An unsigned header may change freely.
        let mut extra = headers.clone();
        extra.insert("user-agent", HeaderValue::from_static("something"));
        assert_eq!(check(&extra, body, SECRET, &Method::POST, &uri), Ok(()));
    }

    #[test]
    fn the_window_is_fifteen_minutes_each_way() {
        let headers = signed_request(t0(), b"{}", "ecr");
        let by = parse(&headers).unwrap();
        let uri: Uri = "/".parse().unwrap();
        let at = |now| verify(&by, &Method::POST, &uri, &headers, b"{}", SECRET, now, ECR);
        let stale = at(t0() + Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(stale.exception(), "InvalidSignatureException");
        assert!(stale.message().contains("Signature expired"), "{stale}");
        let early = at(t0() - Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(early.exception(), "InvalidSignatureException");
        assert!(early.message().contains("not yet current"), "{early}");
    }

    #[test]
    fn scope_and_header_errors() {
        let headers = signed_request(t0(), b"{}", "s3");
        let by = parse(&headers).unwrap();
        let uri: Uri = "/".parse().unwrap();
        let e = verify(&by, &Method::POST, &uri, &headers, b"{}", SECRET, t0(), ECR).unwrap_err();
        assert_eq!(e, SigV4Error::WrongService("ecr".into()));
        let ecr_headers = signed_request(t0(), b"{}", "ecr");
        let ecr_by = parse(&ecr_headers).unwrap();
        let other_region = Scope {
            region: "eu-west-1",
            ..ECR
        };
        let e = verify(
            &ecr_by,
            &Method::POST,
            &uri,
            &ecr_headers,
            b"{}",
            SECRET,
            t0(),
            other_region,
        )
        .unwrap_err();
        assert_eq!(e, SigV4Error::WrongRegion("us-east-1".into()));
        assert_eq!(
            e.message(),
            "Credential should be scoped to a valid region, not 'us-east-1'."
        );

        assert_eq!(parse(&HeaderMap::new()), Err(SigV4Error::Missing));
        assert_eq!(
            SigV4Error::Missing.exception(),
            "MissingAuthenticationTokenException"
        );
        let with_auth = |v: &str| {
            let mut h = headers.clone();
            h.insert("authorization", HeaderValue::from_str(v).unwrap());
            parse(&h)
        };
        let e = with_auth("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00").unwrap_err();
        assert_eq!(e.exception(), "IncompleteSignatureException");
        assert!(e.message().contains("'Credential'"), "{e}");
        assert!(with_auth("Basic QVdTOnh4").is_err());
        let sig = "a".repeat(64);
        let e = with_auth(&format!(
            "AWS4-HMAC-SHA256 Credential={KEY}/20000101/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
        ))
        .unwrap_err();
        assert!(matches!(e, SigV4Error::ScopeDate { .. }), "{e}");
        let e = with_auth(&format!(
            "AWS4-HMAC-SHA256 Credential={KEY}/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature={sig}"
        ))
        .unwrap_err();
        assert_eq!(e.exception(), "IncompleteSignatureException");
        let e = with_auth(&format!(
            "AWS4-HMAC-SHA256 Credential={KEY}/{}/us-east-1/ecr/aws4_request, SignedHeaders=x-amz-date, Signature={sig}",
            &amz_format(t0())[..8]
        ))
        .unwrap_err();
        assert!(e.message().contains("Host"), "{e}");
        let mut no_date = headers.clone();
        no_date.remove("x-amz-date");
        assert_eq!(
            parse(&no_date).unwrap_err().exception(),
            "IncompleteSignatureException"
        );
    }
}
