//! Time-dependent authentication with an injected clock: a registry token stops working when it
//! expires, and a SigV4 signature more than 15 minutes away from the server's time is refused.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use berth_iam::keys::{MasterKey, generate_access_key};
use berth_registry::{Clock, Registry, RegistryConfig, router};
use berth_store::{Durability, FsBlobStore, IdentityStore, SqliteMeta};

#[derive(Debug)]
struct ManualClock(Mutex<SystemTime>);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

struct Setup {
    base: String,
    key: String,
    secret: String,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path()).unwrap();
    let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), Durability::Normal).unwrap());
    let master = MasterKey::generate();
    meta.create_user("ops", true).await.unwrap();
    let (key, secret) = generate_access_key();
    let sealed = master
        .seal_key()
        .seal(secret.expose().as_bytes(), key.as_bytes())
        .unwrap();
    meta.create_access_key("ops", &key, &sealed).await.unwrap();
    let mut config = RegistryConfig::default();
    config.auth = true;
    config.auto_create = false;
    // A fixed point in the past: nothing here may depend on the machine's clock.
    let clock = Arc::new(ManualClock(Mutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )));
    let reg = Registry::new(
        Arc::new(blobs),
        Arc::clone(&meta) as Arc<dyn berth_store::MetadataStore>,
        meta,
        &master,
        config,
    )
    .with_clock(Arc::clone(&clock) as Arc<dyn Clock>);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(reg)).await.unwrap();
    });
    Setup {
        base: format!("{addr}"),
        key,
        secret: secret.expose().to_owned(),
        clock,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A SigV4-signed ECR call made at `at`.
async fn call(s: &Setup, target: &str, at: SystemTime) -> serde_json::Value {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity =
        aws_credential_types::Credentials::new(&s.key, &s.secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ecr")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{}/", s.base);
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{target}");
    let headers = [
        ("host", s.base.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let body = b"{}";
    let req = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let mut b = http().post(&url).body(body.to_vec());
    for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
        b = b.header(*k, *v);
    }
    for (k, v) in instructions.headers() {
        b = b.header(k, v);
    }
    b.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn tokens_expire_and_signatures_must_be_fresh() {
    let s = setup().await;
    let now = s.clock.now();
    let out = call(&s, "GetAuthorizationToken", now).await;
    let data = &out["authorizationData"][0];
    let token = data["authorizationToken"].as_str().unwrap().to_owned();
    let expires = data["expiresAt"].as_f64().unwrap();
    let issued = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expires - issued - 12.0 * 3600.0).abs() < 1.0,
        "expires {expires}, issued {issued}"
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&token)
        .unwrap();
    assert!(decoded.starts_with(b"AWS:"));
    let v2 = |token: String| {
        let base = s.base.clone();
        async move {
            http()
                .get(format!("http://{base}/v2/"))
                .header("authorization", format!("Basic {token}"))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(v2(token.clone()).await.status(), 200);
    s.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(v2(token.clone()).await.status(), 200, "still valid at 11 h");
    s.clock.advance(Duration::from_secs(3600 + 1));
    let r = v2(token.clone()).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    assert!(r.text().await.unwrap().contains("expired"));

    // The request signed 12 hours ago is now stale; one signed 14 minutes off still passes.
    let stale = call(&s, "DescribeRegistry", now).await;
    assert_eq!(stale["__type"], "InvalidSignatureException", "{stale}");
    let fresh = call(
        &s,
        "DescribeRegistry",
        s.clock.now() - Duration::from_secs(14 * 60),
    )
    .await;
    assert!(fresh["registryId"].is_string(), "{fresh}");
    let future = call(
        &s,
        "DescribeRegistry",
        s.clock.now() + Duration::from_secs(16 * 60),
    )
    .await;
    assert_eq!(future["__type"], "InvalidSignatureException", "{future}");
}
