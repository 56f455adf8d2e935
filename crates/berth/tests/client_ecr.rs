//! Native ECR authentication against a local stand-in for ECR: it answers
//! `GetAuthorizationToken` only to correctly SigV4-signed calls (verified here with `aws-sigv4`
//! and the known secret), counts the calls, and serves `/v2/` only to its current tokens as Basic
//! auth. Proves: credentials from the environment and from a profile file, one token request for
//! two concurrent processes (the on-disk cache and its lock), renewal at half-life, renewal after
//! a 401, and clear errors for bad keys.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

#[derive(Default)]
struct Ecr {
    /// Access key id → secret.
    keys: HashMap<String, String>,
    token_calls: AtomicUsize,
    /// Tokens numbered below this are revoked.
    valid_from: AtomicUsize,
    expires_in: AtomicU64,
    delay_ms: AtomicU64,
    /// Authorization headers `/v2/` accepted.
    accepted: Mutex<Vec<String>>,
}

fn ecr_error(kind: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.1")],
        serde_json::json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response()
}

/// Recomputes the request's SigV4 signature with the secret of its access key.
fn verify_sigv4(
    ecr: &Ecr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Box<Response>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Box::new(ecr_error(
                "MissingAuthenticationTokenException",
                "not signed",
            ))
        })?;
    let fields: HashMap<&str, &str> = auth
        .trim_start_matches("AWS4-HMAC-SHA256")
        .split(',')
        .filter_map(|f| f.trim().split_once('='))
        .collect();
    let scope: Vec<&str> = fields["Credential"].split('/').collect();
    let (key, region, service) = (scope[0], scope[2], scope[3]);
    assert_eq!(service, "ecr");
    let secret = ecr.keys.get(key).ok_or_else(|| {
        Box::new(ecr_error(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ))
    })?;
    let amz_date = headers["x-amz-date"].to_str().unwrap();
    let time = chrono_like(amz_date);
    let signed: Vec<&str> = fields["SignedHeaders"].split(';').collect();
    let pairs: Vec<(String, String)> = signed
        .iter()
        .map(|h| (h.to_string(), headers[*h].to_str().unwrap().to_owned()))
        .collect();
    let identity =
        aws_credential_types::Credentials::new(key, secret, None, None, "stand-in").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ecr")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let uri = format!("http://{}{}", headers["host"].to_str().unwrap(), uri);
    let req = SignableRequest::new(
        method.as_str(),
        &uri,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (_, expected) = sign(req, &params).unwrap().into_parts();
    if expected != fields["Signature"] {
        return Err(Box::new(ecr_error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )));
    }
    Ok(())
}

/// `20261122T101010Z` → SystemTime.
fn chrono_like(s: &str) -> SystemTime {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d, hh, mm, ss) = (n(0, 4), n(4, 6), n(6, 8), n(9, 11), n(11, 13), n(13, 15));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

async fn api(
    State(ecr): State<Arc<Ecr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    assert_eq!(headers["x-amz-target"], TARGET);
    if let Err(r) = verify_sigv4(&ecr, &method, &uri, &headers, &body) {
        return *r;
    }
    tokio::time::sleep(Duration::from_millis(ecr.delay_ms.load(Ordering::SeqCst))).await;
    let n = ecr.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:pw-{n}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = serde_json::json!({"authorizationData": [{
        "authorizationToken": token,
        "expiresAt": now + ecr.expires_in.load(Ordering::SeqCst),
        "proxyEndpoint": format!("http://{}", headers["host"].to_str().unwrap()),
    }]});
    (
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

async fn v2(State(ecr): State<Arc<Ecr>>, uri: Uri, headers: HeaderMap) -> Response {
    let valid = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix("AWS:pw-")
                .and_then(|n| n.parse::<usize>().ok())
        })
        .is_some_and(|n| {
            n >= ecr.valid_from.load(Ordering::SeqCst)
                && n <= ecr.token_calls.load(Ordering::SeqCst)
        });
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"https://ecr.stand-in/\",service=\"ecr.amazonaws.com\"")],
            r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#,
        )
            .into_response();
    }
    ecr.accepted
        .lock()
        .unwrap()
        .push(headers["authorization"].to_str().unwrap().to_owned());
    let repo = uri
        .path()
        .trim_start_matches("/v2/")
        .trim_end_matches("/tags/list");
    (
        [("content-type", "application/json")],
        serde_json::json!({"name": repo, "tags": ["v1"]}).to_string(),
    )
        .into_response()
}

async fn start(ecr: Arc<Ecr>) -> String {
    let app = axum::Router::new()
        .route("/", axum::routing::post(api))
        .route("/v2/{*rest}", axum::routing::get(v2))
        .with_state(ecr);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `berth tags HOST/app` with a clean AWS environment pointing at the stand-in.
fn berth_tags(host: &str, cache: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.args(["tags", &format!("{host}/app")]);
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ] {
        c.env_remove(k);
    }
    c.env("HOME", cache)
        .env("DOCKER_CONFIG", cache.join("docker"))
        .env("BERTH_CACHE_DIR", cache.join("cache"))
        .env("AWS_CONFIG_FILE", cache.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", cache.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_ECR", format!("http://{host}"))
        .env("BERTH_ECR_REGISTRIES", host);
    c.envs(env.iter().copied());
    c
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ENV_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIDBERTHTEST"),
    ("AWS_SECRET_ACCESS_KEY", "s3cr3t/berth+test"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_tokens_from_the_credential_chain_cached_shared_and_renewed() {
    let ecr = Arc::new(Ecr {
        keys: HashMap::from([
            ("AKIDBERTHTEST".to_owned(), "s3cr3t/berth+test".to_owned()),
            ("AKIDPROFILE".to_owned(), "profile-secret".to_owned()),
        ]),
        expires_in: AtomicU64::new(12 * 3600),
        ..Ecr::default()
    });
    let host = start(Arc::clone(&ecr)).await;
    let calls = || ecr.token_calls.load(Ordering::SeqCst);
    let run = |cmd: &mut Command| cmd.output().unwrap();

    // Environment credentials: one signed token request; the token arrives as Basic auth.
    let home = tempfile::tempdir().unwrap();
    let out = ok(run(&mut berth_tags(&host, home.path(), &ENV_KEYS)));
    assert_eq!(out.trim(), "v1");
    assert_eq!(calls(), 1);
    let basic = base64::engine::general_purpose::STANDARD.encode("AWS:pw-1");
    assert_eq!(
        ecr.accepted.lock().unwrap().last().unwrap(),
        &format!("Basic {basic}")
    );
    // Cached on disk (0600), reused by the next process.
    ok(run(&mut berth_tags(&host, home.path(), &ENV_KEYS)));
    assert_eq!(calls(), 1, "the cached token is reused");
    let cache_files: Vec<_> = std::fs::read_dir(home.path().join("cache/ecr"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(cache_files.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cache_files[0])
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A profile in the shared credentials file.
    let home2 = tempfile::tempdir().unwrap();
    std::fs::write(
        home2.path().join("aws-credentials"),
        "[ci]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();
    ok(run(&mut berth_tags(
        &host,
        home2.path(),
        &[("AWS_PROFILE", "ci")],
    )));
    assert_eq!(calls(), 2);

    // Bad keys: exit 1 with ECR's exception named; nothing cached.
    let home3 = tempfile::tempdir().unwrap();
    let out = run(&mut berth_tags(
        &host,
        home3.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDBERTHTEST"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidSignatureException"), "{err}");
    assert!(!err.contains("wrong"), "the secret is never printed: {err}");
    let out = run(&mut berth_tags(
        &host,
        home3.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UnrecognizedClientException"));
    assert_eq!(calls(), 2);

    // Two processes at once, empty cache, a slow endpoint: one token request between them.
    let home4 = tempfile::tempdir().unwrap();
    ecr.delay_ms.store(700, Ordering::SeqCst);
    let a = berth_tags(&host, home4.path(), &ENV_KEYS).spawn().unwrap();
    let b = berth_tags(&host, home4.path(), &ENV_KEYS).spawn().unwrap();
    let (a, b) = (
        tokio::task::spawn_blocking(move || a.wait_with_output().unwrap()),
        tokio::task::spawn_blocking(move || b.wait_with_output().unwrap()),
    );
    ok(a.await.unwrap());
    ok(b.await.unwrap());
    assert_eq!(
        calls(),
        3,
        "two concurrent processes made one token request"
    );
    ecr.delay_ms.store(0, Ordering::SeqCst);

    // Short-lived tokens are renewed once half their life has passed.
    let home5 = tempfile::tempdir().unwrap();
    ecr.expires_in.store(2, Ordering::SeqCst);
    ok(run(&mut berth_tags(&host, home5.path(), &ENV_KEYS)));
    assert_eq!(calls(), 4);
    std::thread::sleep(Duration::from_millis(1100));
    ok(run(&mut berth_tags(&host, home5.path(), &ENV_KEYS)));
    assert_eq!(calls(), 5, "past half-life: renewed");

    // A token the registry refuses (revoked, or expired early) is renewed and the call retried.
    let home6 = tempfile::tempdir().unwrap();
    ecr.expires_in.store(12 * 3600, Ordering::SeqCst);
    ok(run(&mut berth_tags(&host, home6.path(), &ENV_KEYS)));
    assert_eq!(calls(), 6);
    ecr.valid_from.store(7, Ordering::SeqCst);
    ok(run(&mut berth_tags(&host, home6.path(), &ENV_KEYS)));
    assert_eq!(calls(), 7, "refused token renewed");
    let basic = base64::engine::general_purpose::STANDARD.encode("AWS:pw-7");
    assert_eq!(
        ecr.accepted.lock().unwrap().last().unwrap(),
        &format!("Basic {basic}")
    );
}
