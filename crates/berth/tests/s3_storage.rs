//! `berth serve --storage s3://…` on a real S3-compatible store (SeaweedFS's `weed mini`, which
//! `scripts/test.sh` installs), driven by real clients: skopeo pushes and pulls the multi-arch
//! fixture, a chunked upload survives a `kill -9` of the registry between chunks (its hash
//! state is in the object store), blob GETs redirect to presigned URLs when configured, and a
//! store that stops taking writes gives 5xx with nothing recorded.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::seaweed::Seaweed;
use common::{
    Server, client, fixture_index_digest, fixtures, pull_layout, push_layout, run, sha256_hex,
    skopeo,
};

const MIB: usize = 1024 * 1024;

/// `berth serve --no-auth` on `weed`'s bucket under `prefix`, its SQLite database in `data`.
fn serve(weed: &Seaweed, data: &Path, prefix: &str, extra_s3: &str) -> Server {
    let config = data.join("berth.toml");
    std::fs::write(&config, weed.config(prefix, extra_s3)).unwrap();
    let env = weed.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_auth(
        data,
        &["--no-auth", "--config", config.to_str().unwrap()],
        &env,
    )
}

/// Files under the data directory's blob store (there must be none: blobs go to S3).
fn local_blobs(data: &Path) -> usize {
    let dir = data.join("blobs");
    if !dir.exists() {
        return 0;
    }
    walk(&dir)
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_the_multi_arch_fixture_through_s3_and_redirects() {
    let fx = fixtures();
    let weed = common::seaweed::start("images");
    let data = tempfile::tempdir().unwrap();
    let server = serve(&weed, data.path(), "team/registry", "");
    let reg = server.addr.clone();
    let want = fixture_index_digest(&fx);
    push_layout(
        &fx.join("busybox"),
        &format!("{reg}/fixtures/busybox:latest"),
        None,
    );
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/fixtures/busybox:latest")));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), want);
    assert_eq!(local_blobs(data.path()), 0, "blobs must go to the bucket");

    let (back, _keep) = pull_layout(&format!("{reg}/fixtures/busybox:latest"), None);
    assert_eq!(back, raw);
    drop(server);

    // The same bucket and database, now answering blob GETs with presigned redirects.
    let server = serve(
        &weed,
        data.path(),
        "team/registry",
        "redirect = true\nredirect_ttl_secs = 300\n",
    );
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = client()
        .get(server.url(&format!("/v2/fixtures/busybox/manifests/{manifest_digest}")))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .get(server.url(&format!("/v2/fixtures/busybox/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&weed.endpoint) && location.contains("X-Amz-Signature="),
        "{location}"
    );
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        layer
    );
    // The presigned URL serves the blob without credentials; HEAD stays on the registry.
    let bytes = client()
        .get(&location)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), layer);
    let head = no_follow
        .head(server.url(&format!("/v2/fixtures/busybox/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );
    // skopeo follows the redirects to the same bytes.
    let (back, _keep) = pull_layout(&format!("{}/fixtures/busybox:latest", server.addr), None);
    assert_eq!(back, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_continues_after_a_kill_9_from_the_hash_state_in_the_bucket() {
    let weed = common::seaweed::start("chunks");
    let data = tempfile::tempdir().unwrap();
    // 5 MiB parts, so the first chunk already leaves a full part in the multipart upload
    // (which the store cannot read back: the upload can only go on from the saved hash).
    let server = serve(&weed, data.path(), "", "part_size_mib = 5\n");
    let blob: Vec<u8> = (0..13 * MIB + 777).map(|i| (i % 253) as u8).collect();
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let c = client();
    let r = c
        .post(server.url("/v2/big/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let cut = 6 * MIB + 1;
    let r = c
        .patch(server.url(&location))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", cut - 1))
        .body(blob[..cut].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    server.kill9();

    let server = serve(&weed, data.path(), "", "part_size_mib = 5\n");
    let status = c.get(server.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"].to_str().unwrap(),
        format!("0-{}", cut - 1)
    );
    // A chunk that does not start where the upload ends is refused with 416.
    let wrong = c
        .patch(server.url(&location))
        .header("content-range", format!("{}-{}", cut + 1, cut + 10))
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 416);
    let second = 11 * MIB;
    let r = c
        .patch(server.url(&location))
        .header("content-range", format!("{cut}-{}", second - 1))
        .body(blob[cut..second].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = c
        .put(server.url(&format!("{location}{sep}digest={digest}")))
        .header("content-range", format!("{second}-{}", blob.len() - 1))
        .body(blob[second..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let back = c
        .get(server.url(&format!("/v2/big/app/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(back.len(), blob.len());
    assert_eq!(format!("sha256:{}", sha256_hex(&back)), digest);
    assert_eq!(local_blobs(data.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_writes_gives_5xx_and_nothing_is_recorded() {
    let mut weed = common::seaweed::start("refusing");
    let data = tempfile::tempdir().unwrap();
    let server = serve(&weed, data.path(), "r", "");
    let c = client();
    let stored = b"stored before the outage".to_vec();
    let stored_digest = format!("sha256:{}", sha256_hex(&stored));
    let r = c
        .post(server.url(&format!(
            "/v2/outage/app/blobs/uploads/?digest={stored_digest}"
        )))
        .body(stored.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    weed.kill();

    let blob = b"pushed during the outage".to_vec();
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let r = c
        .post(server.url(&format!("/v2/outage/app/blobs/uploads/?digest={digest}")))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    // Nothing was recorded: the blob is unknown to the repository, and a manifest naming it
    // is refused.
    let head = c
        .head(server.url(&format!("/v2/outage/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert!(
        head.status() == 404 || head.status().is_server_error(),
        "{}",
        head.status()
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": stored_digest, "size": stored.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": blob.len()
        }]
    });
    let r = c
        .put(server.url("/v2/outage/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == 400 || r.status().is_server_error(),
        "{}",
        r.status()
    );
    let tags = c
        .get(server.url("/v2/outage/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags: serde_json::Value = tags.json().await.unwrap();
    assert!(tags["tags"].as_array().is_none_or(Vec::is_empty), "{tags}");
    // A blob stored before the outage is not answered wrongly: 5xx, never 404 or other bytes.
    let r = c
        .get(server.url(&format!("/v2/outage/app/blobs/{stored_digest}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
}
