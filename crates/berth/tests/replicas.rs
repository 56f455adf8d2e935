//! Three `berth serve` replicas sharing one bucket (SeaweedFS) and one PostgreSQL database,
//! with authentication on: started together they agree on the registry id and the
//! administrator; an image pushed through one is pulled through another; a token issued by one
//! (aws-sdk-ecr's GetAuthorizationToken) works on another; a chunked upload whose chunks land on
//! different replicas completes with the right digest, also after the replica that took the
//! first chunk is killed with SIGKILL.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::seaweed::Seaweed;
use common::{
    Server, client, fixture_index_digest, fixtures, pull_layout, push_layout, run, sha256_hex,
    skopeo,
};

const ROOT_ID: &str = "AKIAREPLICAROOT00001";
const ROOT_SECRET: &str = "replica-root-secret-0123456789";
const MIB: usize = 1024 * 1024;

fn master_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

/// A replica over `weed`'s bucket and the database at `db`, with its own data directory.
fn replica(weed: &Seaweed, db: &str, data: &Path) -> Server {
    replica_with_metrics(weed, db, data, "").0
}

/// [`replica`] with extra config lines; also returns its metrics address.
fn replica_with_metrics(weed: &Seaweed, db: &str, data: &Path, extra: &str) -> (Server, String) {
    let config = data.join("berth.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        &config,
        format!(
            "metadata = \"{db}\"\n{extra}{}",
            weed.config("shared", "part_size_mib = 5\n")
        ),
    )
    .unwrap();
    let mut env = weed.env();
    env.push(("BERTH_MASTER_KEY", master_key()));
    env.push(("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID.to_owned()));
    env.push(("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET.to_owned()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--config", config.to_str().unwrap()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    Server::spawn_with_metrics(cmd, data)
}

fn ecr(addr: &str) -> aws_sdk_ecr::Client {
    let creds = aws_sdk_ecr::config::Credentials::new(ROOT_ID, ROOT_SECRET, None, None, "test");
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(format!("http://{addr}"))
        .build();
    aws_sdk_ecr::Client::from_conf(conf)
}

/// The upload `Location`s of the root key's requests, absolute against `base`.
fn absolute(base: &str, path: &str) -> String {
    if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{base}{path}")
    }
}

/// Starts an upload at `base`; its location.
async fn start_upload(base: &str, repo: &str) -> String {
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .basic_auth(ROOT_ID, Some(ROOT_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Sends `bytes` at offset `from` to the upload at `location`, through `base`; the new location.
async fn patch_chunk(base: &str, location: &str, from: usize, bytes: &[u8]) -> String {
    let r = ranged(
        reqwest::Method::PATCH,
        absolute(base, location),
        from,
        bytes,
    )
    .await;
    assert_eq!(
        r.status(),
        202,
        "chunk at {from}: {}",
        r.text().await.unwrap()
    );
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Completes the upload with its last bytes (at `from`) and `digest`, through `base`.
async fn finish_upload(base: &str, location: &str, digest: &str, from: usize, bytes: &[u8]) {
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = absolute(base, &format!("{location}{sep}digest={digest}"));
    let r = ranged(reqwest::Method::PUT, url, from, bytes).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// `method` with `bytes` as the range starting at `from`, as the administrator.
async fn ranged(
    method: reqwest::Method,
    url: String,
    from: usize,
    bytes: &[u8],
) -> reqwest::Response {
    client()
        .request(method, url)
        .basic_auth(ROOT_ID, Some(ROOT_SECRET))
        .header(
            "content-range",
            format!("{from}-{}", from + bytes.len() - 1),
        )
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

/// The digest of the blob `digest` of `repo` as served through `base`.
async fn blob_digest(base: &str, repo: &str, digest: &str) -> String {
    let back = client()
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .basic_auth(ROOT_ID, Some(ROOT_SECRET))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    format!("sha256:{}", sha256_hex(&back))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_images_tokens_and_uploads() {
    let fx = fixtures();
    let weed = common::seaweed::start("replicas");
    let db = common::pg::database();
    let dirs = tempfile::tempdir().unwrap();
    // Started together: one migrates the empty database, all agree on what they bootstrap.
    let replicas: Vec<Server> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let (weed, db, dir) = (&weed, &db.url, dirs.path().join(format!("r{i}")));
                s.spawn(move || replica(weed, db, &dir))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();

    // The same registry id everywhere, and the ECR API answers on each.
    let mut ids = Vec::new();
    for a in &addrs {
        let c = ecr(a);
        let r = c
            .create_repository()
            .repository_name(format!("probe/{}", ids.len()))
            .send()
            .await
            .unwrap();
        ids.push(r.repository().unwrap().registry_id().unwrap().to_owned());
    }
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "registry ids differ: {ids:?}"
    );
    for (i, name) in ["fixtures/busybox", "spread/app"].into_iter().enumerate() {
        ecr(&addrs[i])
            .create_repository()
            .repository_name(name)
            .send()
            .await
            .unwrap();
    }
    let listed = ecr(&addrs[2]).describe_repositories().send().await.unwrap();
    assert_eq!(listed.repositories().len(), 5);

    // Pushed through replica 0, pulled through replica 1 with a token replica 2 issued.
    let creds = format!("{ROOT_ID}:{ROOT_SECRET}");
    push_layout(
        &fx.join("busybox"),
        &format!("{}/fixtures/busybox:latest", addrs[0]),
        Some(&creds),
    );
    let token = ecr(&addrs[2])
        .get_authorization_token()
        .send()
        .await
        .unwrap();
    let token = token.authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_owned();
    let basic = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap(),
    )
    .unwrap();
    assert!(basic.starts_with("AWS:"), "{basic}");
    let (back, _keep) = pull_layout(
        &format!("{}/fixtures/busybox:latest", addrs[1]),
        Some(&basic),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(back.as_bytes())),
        fixture_index_digest(&fx)
    );

    // A chunked upload: POST on 0, chunks on 0, 1 and 2, the PUT on 1 — after replica 0, which
    // took the first chunk (a full 5 MiB part in the bucket), is killed.
    let blob: Vec<u8> = (0..12 * MIB + 321).map(|i| (i % 241) as u8).collect();
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let base = |i: usize| format!("http://{}", addrs[i]);
    let mut location = start_upload(&base(0), "spread/app").await;
    let cuts = [(0usize, 6 * MIB), (6 * MIB, 9 * MIB), (9 * MIB, 11 * MIB)];
    for (n, (from, to)) in cuts.iter().enumerate() {
        location = patch_chunk(&base(n), &location, *from, &blob[*from..*to]).await;
    }
    let mut replicas = replicas;
    replicas.remove(0).kill9();
    finish_upload(&base(1), &location, &digest, 11 * MIB, &blob[11 * MIB..]).await;
    assert_eq!(blob_digest(&base(2), "spread/app", &digest).await, digest);
}

#[path = "../../berth-bench/src/haproxy.rs"]
mod haproxy;

use haproxy::Haproxy;

/// Upload chunks (PATCH) a replica answered, from its metrics.
async fn patches(metrics: &str) -> u64 {
    let text = client()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("berth_http_requests_total{") && l.contains("method=\"PATCH\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy_serve_skopeo_podman_and_a_spread_chunked_push() {
    let fx = fixtures();
    let weed = common::seaweed::start("balanced");
    let db = common::pg::database();
    let dirs = tempfile::tempdir().unwrap();
    let mut replicas: Vec<(Server, String)> = (0..3)
        .map(|i| {
            replica_with_metrics(
                &weed,
                &db.url,
                &dirs.path().join(format!("r{i}")),
                "trusted_proxies = [\"127.0.0.1\"]\n",
            )
        })
        .collect();
    let lb = Haproxy::start(
        &replicas
            .iter()
            .map(|(r, _)| r.addr.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let reg = lb.addr.clone();
    // The ECR API through the balancer (each call may land anywhere).
    for name in ["fixtures/busybox", "podman/busybox", "spread/app"] {
        ecr(&reg)
            .create_repository()
            .repository_name(name)
            .send()
            .await
            .unwrap();
    }
    let listed = ecr(&reg).describe_repositories().send().await.unwrap();
    assert_eq!(listed.repositories().len(), 3);
    let creds = format!("{ROOT_ID}:{ROOT_SECRET}");
    push_layout(
        &fx.join("busybox"),
        &format!("{reg}/fixtures/busybox:latest"),
        Some(&creds),
    );
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
        .arg(format!("docker://{reg}/fixtures/busybox:latest")));
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        fixture_index_digest(&fx)
    );
    // podman logs in through the balancer and pushes and pulls the amd64 image.
    let podman = common::Podman::new(&reg);
    run(podman.cmd().args([
        "login",
        "--tls-verify=false",
        "-u",
        ROOT_ID,
        "-p",
        ROOT_SECRET,
        &reg,
    ]));
    run(podman.cmd().args([
        "pull",
        "--tls-verify=false",
        &format!("{reg}/fixtures/busybox:latest"),
    ]));
    run(podman.cmd().args([
        "tag",
        &format!("{reg}/fixtures/busybox:latest"),
        &format!("{reg}/podman/busybox:v1"),
    ]));
    run(podman.cmd().args([
        "push",
        "--tls-verify=false",
        &format!("{reg}/podman/busybox:v1"),
    ]));
    let tags = run(skopeo()
        .args(["list-tags", "--tls-verify=false", "--creds", &creds])
        .arg(format!("docker://{reg}/podman/busybox")));
    assert!(tags.contains("\"v1\""), "{tags}");

    // A chunked upload through the balancer: its chunks land on several replicas, and one
    // replica dies in the middle; HAProxy sends the rest to the others.
    let before: Vec<u64> =
        futures::future::join_all(replicas.iter().map(|(_, m)| patches(m))).await;
    let blob: Vec<u8> = (0..16 * MIB + 99).map(|i| (i % 239) as u8).collect();
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let base = format!("http://{reg}");
    let mut location = start_upload(&base, "spread/app").await;
    let step = 2 * MIB;
    let mut at = 0;
    let mut n = 0;
    while at + step < blob.len() {
        if n == 3 {
            let (dead, _) = replicas.remove(1);
            dead.kill9();
        }
        location = patch_chunk(&base, &location, at, &blob[at..at + step]).await;
        at += step;
        n += 1;
    }
    finish_upload(&base, &location, &digest, at, &blob[at..]).await;
    assert_eq!(blob_digest(&base, "spread/app", &digest).await, digest);
    let after: Vec<u64> = futures::future::join_all(replicas.iter().map(|(_, m)| patches(m))).await;
    let took: Vec<u64> = [0usize, 2]
        .iter()
        .zip(&after)
        .map(|(&i, a)| a - before[i])
        .collect();
    assert!(
        took.iter().all(|&t| t > 0),
        "the surviving replicas each took chunks: {took:?}"
    );
}

/// Pushes a one-layer image as `repo:tag` over HTTP; returns (manifest digest, layer digest,
/// layer bytes).
async fn push_small_image(addr: &str, repo: &str, tag: &str) -> (String, String, Vec<u8>) {
    let c = client();
    let auth = |r: reqwest::RequestBuilder| r.basic_auth(ROOT_ID, Some(ROOT_SECRET));
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for blob in [&config, &layer] {
        let d = format!("sha256:{}", sha256_hex(blob));
        let r = auth(c.post(format!("http://{addr}/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len()}]
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let r = auth(c.put(format!("http://{addr}/v2/{repo}/manifests/{tag}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    (
        format!("sha256:{}", sha256_hex(&bytes)),
        format!("sha256:{}", sha256_hex(&layer)),
        layer,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_through_a_postgresql_restart_get_right_answers_or_5xx() {
    let weed = common::seaweed::start("dbrestart");
    let db = common::pg::database();
    let dirs = tempfile::tempdir().unwrap();
    let r = replica(&weed, &db.url, &dirs.path().join("r"));
    let addr = r.addr.clone();
    ecr(&addr)
        .create_repository()
        .repository_name("steady/app")
        .send()
        .await
        .unwrap();
    let (manifest, layer, layer_bytes) = push_small_image(&addr, "steady/app", "v1").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (addr, manifest, layer, stop) =
            (addr.clone(), manifest.clone(), layer.clone(), stop.clone());
        let layer_len = layer_bytes.len();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut unavailable, mut wrong) = (0u32, 0u32, Vec::new());
            let mut last_ok = false;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (url, want) = if worker % 2 == 0 {
                    (
                        format!("http://{addr}/v2/steady/app/manifests/v1"),
                        &manifest,
                    )
                } else {
                    (format!("http://{addr}/v2/steady/app/blobs/{layer}"), &layer)
                };
                let r = c
                    .get(&url)
                    .basic_auth(ROOT_ID, Some(ROOT_SECRET))
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let body = r.bytes().await.unwrap_or_default();
                        let got = format!("sha256:{}", sha256_hex(&body));
                        if &got == want && (worker % 2 == 0 || body.len() == layer_len) {
                            ok += 1;
                            last_ok = true;
                        } else {
                            wrong.push(format!("200 with {got}, not {want}"));
                        }
                    }
                    Ok(r) if r.status().is_server_error() => {
                        unavailable += 1;
                        last_ok = false;
                    }
                    Ok(r) => wrong.push(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    // A connection cut while the database restarts is a retryable failure.
                    Err(_) => {
                        unavailable += 1;
                        last_ok = false;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            (ok, unavailable, wrong, last_ok)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(|| common::pg::restart(std::time::Duration::from_secs(2)))
        .await
        .unwrap();
    // Pulls recover by themselves once the database is back.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut unavailable_total = 0;
    for t in tasks {
        let (ok, unavailable, wrong, last_ok) = t.await.unwrap();
        assert!(
            wrong.is_empty(),
            "wrong answers during the restart: {wrong:?}"
        );
        assert!(
            ok > 0 && last_ok,
            "pulls did not recover (ok {ok}, 5xx {unavailable})"
        );
        unavailable_total += unavailable;
    }
    // The restart was seen (a 2 s outage), as clear 5xx.
    assert!(
        unavailable_total > 0,
        "no pull noticed the database going away"
    );
}
