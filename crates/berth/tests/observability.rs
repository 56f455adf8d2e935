//! Issue 24, observability: Prometheus metrics on their own listener (read with the reference
//! Python parser), the audit log (one CloudTrail-shaped JSON line per state-changing or refused
//! request, no secret in it) and readiness, all on a real `berth serve` with authentication.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecr::Client;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use base64::Engine as _;
use common::{Server, client, python, sha256_hex};
use serde_json::Value;

const REGISTRY_ID: &str = "123456789012";
const ROOT_ID: &str = "AKIAROOTKEYFORTESTS1";
const ROOT_SECRET: &str = "root-secret-for-the-observability-test-0123";
const WRONG_SECRET: &str = "not-the-secret-of-this-key-but-a-guess-987";
/// Sent as a whole `Authorization` header with no scheme (a pasted token): a header without a
/// space is all "scheme", which error messages must not echo.
const BARE_TOKEN: &str = "bare-token-that-must-never-be-logged-5555";
const REPO: &str = "team/app";

/// Prometheus' own text-format parser, in Python: every sample as `[name, labels, value]`.
const PARSE_METRICS: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps(samples))
"#;

/// A parsed scrape: sample name → (sorted labels, value).
type Scrape = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

fn parse_metrics(text: &str) -> Scrape {
    let mut child = Command::new(python())
        .args(["-c", PARSE_METRICS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} ({e}): scripts/test.sh makes it", python().display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics:\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let mut scrape = Scrape::new();
    for (name, labels, value) in samples {
        scrape.entry(name).or_default().push((labels, value));
    }
    scrape
}

/// The value of the sample `name` whose labels include `want` (0 when absent).
fn value(s: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    s.get(name)
        .into_iter()
        .flatten()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(metrics: &str) -> Scrape {
    let resp = client()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse_metrics(&resp.text().await.unwrap())
}

fn ecr(server: &Server, id: &str, secret: &str) -> Client {
    let creds = aws_sdk_ecr::config::Credentials::new(id, secret, None, None, "test");
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(format!("http://{}", server.addr))
        .build();
    Client::from_conf(conf)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Pushes one blob in a single POST (`?digest=`); returns its digest.
async fn push_blob(server: &Server, auth: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(data));
    let resp = client()
        .post(server.url(&format!("/v2/{REPO}/blobs/uploads/?digest={digest}")))
        .header("authorization", auth)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    digest
}

/// Reads the audit log until it has at least `n` lines (the writer is asynchronous).
fn audit_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["eventName"] == name).collect()
}

/// The fields every audit event carries, CloudTrail-shaped.
fn check_envelope(e: &Value) {
    assert_eq!(e["eventVersion"], "1.08", "{e}");
    assert_eq!(e["eventSource"], "ecr.amazonaws.com", "{e}");
    assert_eq!(e["awsRegion"], "us-east-1", "{e}");
    assert_eq!(e["recipientAccountId"], REGISTRY_ID, "{e}");
    assert_eq!(e["sourceIPAddress"], "127.0.0.1", "{e}");
    let time = e["eventTime"].as_str().unwrap();
    // RFC 3339, UTC, whole seconds: 2026-11-22T10:11:12Z.
    assert!(
        time.len() == 20
            && time.ends_with('Z')
            && time.as_bytes()[10] == b'T'
            && time[..4].parse::<u32>().is_ok(),
        "{time}"
    );
    assert_eq!(e["eventID"].as_str().unwrap().len(), 36, "{e}");
    assert!(!e["requestID"].as_str().unwrap().is_empty(), "{e}");
    assert!(e["httpStatus"].is_u64(), "{e}");
    assert!(e["readOnly"].is_boolean(), "{e}");
    assert!(e["userIdentity"]["type"].is_string(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_audit_log_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let audit = dir.path().join("audit.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--registry-id",
        REGISTRY_ID,
    ])
    .arg("--data")
    .arg(&data)
    .arg("--audit-log")
    .arg(&audit)
    .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID)
    .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
    .env("BERTH_LOG", "warn")
    .stderr(Stdio::inherit());
    let (server, metrics) = Server::spawn_with_metrics(cmd, &data);
    let root = ecr(&server, ROOT_ID, ROOT_SECRET);
    let http = client();
    let auth = basic(ROOT_ID, ROOT_SECRET);

    // ---- push: repository, two blobs, the manifest ------------------------------------------
    root.create_repository()
        .repository_name(REPO)
        .send()
        .await
        .unwrap();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"observability layer ".repeat(512);
    let config_digest = push_blob(&server, &auth, config).await;
    let layer_digest = push_blob(&server, &auth, &layer).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let put = http
        .put(server.url(&format!("/v2/{REPO}/manifests/v1")))
        .header("authorization", &auth)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let put_request_id = put.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_owned();
    let manifest_digest = put.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    // A read (not audited).
    let got = http
        .get(server.url(&format!("/v2/{REPO}/manifests/v1")))
        .header("authorization", &auth)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().len(), manifest.len());

    // ---- first scrape -----------------------------------------------------------------------
    let first = scrape(&metrics).await;
    let puts = [("route", "manifest"), ("method", "PUT"), ("status", "201")];
    assert_eq!(value(&first, "berth_http_requests_total", &puts), 1.0);
    assert_eq!(
        value(
            &first,
            "berth_http_requests_total",
            &[("route", "manifest"), ("action", "PutImage")]
        ),
        1.0
    );
    assert!(
        value(
            &first,
            "berth_http_request_body_bytes_total",
            &[("route", "upload_start")]
        ) >= (config.len() + layer.len()) as f64
    );
    assert!(
        value(
            &first,
            "berth_http_response_body_bytes_total",
            &[("route", "manifest")]
        ) >= manifest.len() as f64
    );
    assert_eq!(
        value(
            &first,
            "berth_http_request_duration_seconds_count",
            &[("route", "manifest"), ("method", "PUT")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &first,
            "berth_http_requests_total",
            &[("route", "ecr"), ("action", "CreateRepository")]
        ),
        1.0
    );
    assert_eq!(value(&first, "berth_uploads_in_flight", &[]), 0.0);
    let stored = value(
        &first,
        "berth_repository_storage_bytes",
        &[("repository", REPO)],
    );
    assert!(
        stored >= (config.len() + layer.len() + manifest.len()) as f64,
        "{stored}"
    );
    assert_eq!(value(&first, "berth_repositories", &[]), 1.0);
    assert!(value(&first, "berth_storage_bytes", &[]) >= stored);
    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            first.contains_key(process),
            "{process} missing from {:?}",
            first.keys()
        );
    }
    // Labels are bounded: no raw path or repository name in the request metrics.
    for (labels, _) in first.get("berth_http_requests_total").unwrap() {
        assert!(
            !labels.values().any(|v| v.contains('/')),
            "unbounded label in {labels:?}"
        );
    }

    // ---- delete, policy, a token, refusals --------------------------------------------------
    let del = http
        .delete(server.url(&format!("/v2/{REPO}/manifests/{manifest_digest}")))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202);
    // A collection now (grace 0) takes the deleted image's blobs.
    let gc_body = br#"{"gracePeriodSeconds":0}"#;
    let mut gc = http.post(server.url("/"));
    for (k, v) in common::ecr_signed_headers(
        &server.addr,
        ROOT_ID,
        ROOT_SECRET,
        "BerthRunGarbageCollection",
        gc_body,
        std::time::SystemTime::now(),
    ) {
        gc = gc.header(k, v);
    }
    let gc = gc.body(gc_body.to_vec()).send().await.unwrap();
    assert_eq!(gc.status(), 200);
    let report: Value = gc.json().await.unwrap();
    assert!(report["blobsRemoved"].as_u64().unwrap() >= 2, "{report}");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage"]}]}"#;
    root.set_repository_policy()
        .repository_name(REPO)
        .policy_text(policy)
        .send()
        .await
        .unwrap();
    let token = root.get_authorization_token().send().await.unwrap();
    let token = token.authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_owned();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap(),
    )
    .unwrap();
    let password = decoded.strip_prefix("AWS:").unwrap().to_owned();
    let token_auth = format!("Basic {token}");
    let listed = http
        .get(server.url(&format!("/v2/{REPO}/tags/list")))
        .header("authorization", &token_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    // Refused: a wrong secret on /v2/ (401) and on the ECR API (a bad signature).
    let bad_auth = basic(ROOT_ID, WRONG_SECRET);
    let refused = http
        .get(server.url(&format!("/v2/{REPO}/tags/list")))
        .header("authorization", &bad_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let refused_id = refused.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_owned();
    let bad = ecr(&server, ROOT_ID, WRONG_SECRET);
    let err = bad
        .describe_repositories()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    // Refused: a bare token as the whole Authorization header, on both APIs.
    let bare = http
        .get(server.url(&format!("/v2/{REPO}/tags/list")))
        .header("authorization", BARE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    assert!(!bare.text().await.unwrap().contains(BARE_TOKEN));
    let bare = http
        .post(server.url("/"))
        .header("authorization", BARE_TOKEN)
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
        )
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(bare.status().is_client_error());
    assert!(!bare.text().await.unwrap().contains(BARE_TOKEN));

    // ---- second scrape: the counters moved --------------------------------------------------
    let second = scrape(&metrics).await;
    let total = |s: &Scrape| value(s, "berth_http_requests_total", &[]);
    assert!(
        total(&second) >= total(&first) + 6.0,
        "{} → {}",
        total(&first),
        total(&second)
    );
    assert_eq!(
        value(
            &second,
            "berth_http_requests_total",
            &[
                ("route", "manifest"),
                ("method", "DELETE"),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &second,
            "berth_http_requests_total",
            &[("route", "tags"), ("status", "401")]
        ),
        2.0,
        "the wrong secret and the bare token"
    );
    assert_eq!(
        value(
            &second,
            "berth_http_requests_total",
            &[("route", "ecr"), ("action", "SetRepositoryPolicy")]
        ),
        1.0
    );
    assert!(value(&second, "berth_audit_events_total", &[]) >= 6.0);
    assert_eq!(
        value(&second, "berth_gc_runs_total", &[("result", "ok")]),
        1.0
    );
    assert!(
        value(&second, "berth_gc_blobs_removed_total", &[])
            == report["blobsRemoved"].as_u64().unwrap() as f64
    );
    assert!(
        value(&second, "berth_gc_bytes_reclaimed_total", &[])
            >= (config.len() + layer.len()) as f64
    );
    assert_eq!(value(&second, "berth_audit_events_dropped_total", &[]), 0.0);

    // ---- the audit log ----------------------------------------------------------------------
    // CreateRepository, 2 blob POSTs, PutImage, BatchDeleteImage, BerthRunGarbageCollection,
    // SetRepositoryPolicy, GetAuthorizationToken, the refused /v2/ request and the refused ECR
    // call.
    let all = audit_lines(&audit, 10);
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for e in &all {
        check_envelope(e);
    }
    let names: Vec<&str> = all
        .iter()
        .map(|e| e["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert_eq!(
        events(&all, "BerthRunGarbageCollection").len(),
        1,
        "{names:?}"
    );
    // Reads that succeeded are not audited.
    assert!(
        !names
            .iter()
            .any(|n| ["BatchGetImage", "ListImages"].contains(n)
                && all
                    .iter()
                    .any(|e| e["eventName"] == *n && e["httpStatus"] == 200)),
        "{names:?}"
    );

    let push = events(&all, "PutImage");
    assert_eq!(push.len(), 1, "{names:?}");
    let push = push[0];
    assert_eq!(push["httpStatus"], 201);
    assert_eq!(push["readOnly"], false);
    assert_eq!(push["requestID"], put_request_id.as_str());
    assert_eq!(push["requestParameters"]["repositoryName"], REPO);
    assert_eq!(push["requestParameters"]["imageTag"], "v1");
    assert_eq!(push["additionalEventData"]["api"], "oci");
    assert_eq!(push["userIdentity"]["type"], "Root");
    assert_eq!(push["userIdentity"]["accessKeyId"], ROOT_ID);
    assert_eq!(
        push["userIdentity"]["arn"],
        format!("arn:aws:iam::{REGISTRY_ID}:user/admin")
    );
    assert!(push.get("errorCode").is_none(), "{push}");

    let uploads = events(&all, "InitiateLayerUpload");
    assert_eq!(uploads.len(), 2, "{names:?}");
    assert!(
        uploads
            .iter()
            .any(|e| e["requestParameters"]["layerDigest"] == layer_digest.as_str())
    );

    let deleted = events(&all, "BatchDeleteImage");
    assert_eq!(deleted.len(), 1, "{names:?}");
    assert_eq!(deleted[0]["httpStatus"], 202);
    assert_eq!(
        deleted[0]["requestParameters"]["imageDigest"],
        manifest_digest.as_str()
    );

    let policy_set = events(&all, "SetRepositoryPolicy");
    assert_eq!(policy_set.len(), 1, "{names:?}");
    assert_eq!(policy_set[0]["requestParameters"]["repositoryName"], REPO);
    assert_eq!(policy_set[0]["additionalEventData"]["api"], "ecr");
    assert!(
        policy_set[0]["requestParameters"]
            .get("policyText")
            .is_none()
    );

    assert_eq!(events(&all, "CreateRepository").len(), 1, "{names:?}");
    let issued = events(&all, "GetAuthorizationToken");
    assert_eq!(issued.len(), 1, "{names:?}");
    assert_eq!(issued[0]["responseElements"], Value::Null);

    let denied: Vec<&Value> = all
        .iter()
        .filter(|e| e.get("errorCode").is_some())
        .collect();
    assert_eq!(denied.len(), 4, "{names:?}");
    let v2 = denied
        .iter()
        .find(|e| e["additionalEventData"]["api"] == "oci")
        .unwrap();
    assert_eq!(v2["eventName"], "ListImages");
    assert_eq!(v2["httpStatus"], 401);
    assert_eq!(v2["errorCode"], "UNAUTHORIZED");
    assert_eq!(v2["readOnly"], true);
    assert_eq!(v2["requestID"], refused_id.as_str());
    assert_eq!(v2["userIdentity"]["type"], "Unknown");
    assert_eq!(v2["userIdentity"]["accessKeyId"], ROOT_ID);
    let api = denied
        .iter()
        .find(|e| e["additionalEventData"]["api"] == "ecr")
        .unwrap();
    assert_eq!(api["eventName"], "DescribeRepositories");
    assert_eq!(api["errorCode"], "InvalidSignatureException");
    assert_eq!(api["userIdentity"]["type"], "Unknown");
    assert_eq!(api["userIdentity"]["accessKeyId"], ROOT_ID);

    // No secret anywhere in the file: not the secret keys, not the token or the password
    // inside it, not an Authorization header value.
    let text = std::fs::read_to_string(&audit).unwrap();
    if std::env::var_os("BERTH_SHOW_AUDIT").is_some() {
        eprintln!("{text}");
    }
    for secret in [
        ROOT_SECRET,
        WRONG_SECRET,
        BARE_TOKEN,
        token.as_str(),
        password.as_str(),
        auth.as_str(),
        &auth["Basic ".len()..],
        bad_auth.as_str(),
        &bad_auth["Basic ".len()..],
        token_auth.as_str(),
        "Basic ",
        "AWS4-HMAC-SHA256",
        "Signature=",
        "policyText",
    ] {
        assert!(!text.contains(secret), "the audit log contains {secret:?}");
    }

    // ---- readiness --------------------------------------------------------------------------
    for base in [server.addr.as_str(), metrics.as_str()] {
        let r = http
            .get(format!("http://{base}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    let h = http
        .get(format!("http://{metrics}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    // The blob store's root gone (a volume unmounted): not ready, with a short JSON reason.
    std::fs::rename(data.join("blobs"), data.join("blobs.away")).unwrap();
    for base in [server.addr.as_str(), metrics.as_str()] {
        let r = http
            .get(format!("http://{base}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["reason"], "blob store unavailable", "{v}");
    }
    std::fs::rename(data.join("blobs.away"), data.join("blobs")).unwrap();
    let r = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// An explicitly configured metrics address that cannot be bound is a usage error (exit 2),
/// as `--listen` is; `off` starts no metrics listener.
#[test]
fn metrics_listen_errors_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", &addr])
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("BERTH_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("for metrics"),
        "{out:?}"
    );
    // `off` (here from the environment): the server runs, and nothing follows the
    // `listening on` line on its stdout until it stops.
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.path().join("off"))
        .env("BERTH_METRICS_LISTEN", "off")
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "");
    assert!(child.wait().unwrap().success());
}

/// `--audit-log -`: events follow the `listening on` and `metrics on` lines on stdout, and a
/// harness that read only the first line and closed the pipe never breaks the server.
#[tokio::test(flavor = "multi_thread")]
async fn audit_log_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--audit-log",
            "-",
        ])
        .arg("--data")
        .arg(dir.path().join("a"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = || {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut l).unwrap();
        l
    };
    let addr = line()
        .strip_prefix("listening on ")
        .unwrap()
        .trim()
        .to_owned();
    assert!(line().starts_with("metrics on "));
    let started = client()
        .post(format!("http://{addr}/v2/solo/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let event: Value = serde_json::from_str(&line()).unwrap();
    assert_eq!(event["eventName"], "InitiateLayerUpload");
    assert_eq!(event["requestParameters"]["repositoryName"], "solo");
    assert_eq!(event["userIdentity"]["type"], "Anonymous");
    let _ = child.kill();
    let _ = child.wait();

    // The usual harness: first line read, pipe closed, then state-changing requests.
    let server = Server::start_with(&dir.path().join("b"), &["--audit-log", "-"]);
    for _ in 0..3 {
        let r = client()
            .post(server.url("/v2/solo/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let r = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut child = server.into_child();
    assert!(child.try_wait().unwrap().is_none(), "berth serve exited");
    let _ = child.kill();
    let _ = child.wait();
}
