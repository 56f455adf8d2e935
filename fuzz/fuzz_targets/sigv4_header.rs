//! SigV4 `Authorization` headers (`berth_iam::sigv4`): parsing never panics, and a parsed one
//! is verified (canonical request, scope, date window) without panicking.

#![no_main]

use std::time::{Duration, SystemTime};

use berth_iam::sigv4;
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // authorization \n x-amz-date \n x-amz-target \n body
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let (Some(auth), date, target, body) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let mut headers = HeaderMap::new();
    let Ok(v) = HeaderValue::from_bytes(auth) else {
        return;
    };
    headers.insert(http::header::AUTHORIZATION, v);
    headers.insert(http::header::HOST, HeaderValue::from_static("127.0.0.1:5000"));
    for (name, value) in [("x-amz-date", date), ("x-amz-target", target)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(name, v);
        }
    }
    let Ok(signed) = sigv4::parse(&headers) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_300_000);
    let _ = sigv4::verify(
        &signed,
        &Method::POST,
        &Uri::from_static("/"),
        &headers,
        body.unwrap_or_default(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        now,
        sigv4::Scope {
            service: "ecr",
            region: "us-east-1",
        },
    );
});
