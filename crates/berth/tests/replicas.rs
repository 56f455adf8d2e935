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
use common::{Server, client, fixture_index_digest, fixtures, sha256_hex};

const ROOT_ID: &str = "AKIAREPLICAROOT00001";
const ROOT_SECRET: &str = "replica-root-secret-0123456789";
const MIB: usize = 1024 * 1024;

fn master_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

/// A replica over `weed`'s bucket and the database at `db`, with its own data directory.
fn replica(weed: &Seaweed, db: &str, data: &Path) -> Server {
    let config = data.join("berth.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        &config,
        format!(
            "metadata = \"{db}\"\n{}",
            weed.config("shared", "part_size_mib = 5\n")
        ),
    )
    .unwrap();
    let mut env = weed.env();
    env.push(("BERTH_MASTER_KEY", master_key()));
    env.push(("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID.to_owned()));
    env.push(("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_auth(data, &["--config", config.to_str().unwrap()], &env)
}

#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
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
    run(skopeo()
        .args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
        ])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("docker://{}/fixtures/busybox:latest", addrs[0])));
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
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("layout");
    run(skopeo()
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--src-creds",
            &basic,
        ])
        .arg(format!("docker://{}/fixtures/busybox:latest", addrs[1]))
        .arg(format!("oci:{}:latest", dest.display())));
    let back = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", dest.display())));
    assert_eq!(
        format!("sha256:{}", sha256_hex(back.as_bytes())),
        fixture_index_digest(&fx)
    );

    // A chunked upload: POST on 0, chunks on 0, 1 and 2, the PUT on 1 — after replica 0, which
    // took the first chunk (a full 5 MiB part in the bucket), is killed.
    let c = client();
    let blob: Vec<u8> = (0..12 * MIB + 321).map(|i| (i % 241) as u8).collect();
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let auth = |r: reqwest::RequestBuilder| r.basic_auth(ROOT_ID, Some(ROOT_SECRET));
    let url = |i: usize, path: &str| {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("http://{}{path}", addrs[i])
        }
    };
    let r = auth(c.post(url(0, "/v2/spread/app/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_owned();
    let cuts = [(0usize, 6 * MIB), (6 * MIB, 9 * MIB), (9 * MIB, 11 * MIB)];
    for (n, (from, to)) in cuts.iter().enumerate() {
        let r = auth(c.patch(url(n, &location)))
            .header("content-range", format!("{from}-{}", to - 1))
            .body(blob[*from..*to].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {n}: {}", r.text().await.unwrap());
        location = r.headers()["location"].to_str().unwrap().to_owned();
    }
    let mut replicas = replicas;
    replicas.remove(0).kill9();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = auth(c.put(url(1, &format!("{location}{sep}digest={digest}"))))
        .header("content-range", format!("{}-{}", 11 * MIB, blob.len() - 1))
        .body(blob[11 * MIB..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let back = auth(c.get(url(2, &format!("/v2/spread/app/blobs/{digest}"))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&back)), digest);
}
