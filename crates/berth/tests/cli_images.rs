//! The client's command line against a real `berth serve`: archives both ways with identical
//! digests, `--platform`, referrers, cross-repository mounts, tag strategies, and the
//! `inspect / tags / digest / tag / rm` verbs.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Server, client, fixture_index_digest, fixtures, run, sha256_hex};
use serde_json::Value;

fn berth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env(
        "DOCKER_CONFIG",
        std::env::temp_dir().join("berth-cli-images-no-config"),
    );
    c
}

#[track_caller]
fn json(cmd: &mut Command) -> Value {
    let out = run(cmd.args(["--json", "--progress", "quiet"]));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn head_digest(server: &Server, path: &str) -> Option<String> {
    let r = client()
        .head(server.url(path))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap();
    r.status().is_success().then(|| {
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_round_trip_with_identical_digests() {
    let fx = fixtures();
    let want = fixture_index_digest(&fx);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = &server.addr;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();

    let s = json(
        berth()
            .arg("push")
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{reg}/src/busybox:v1")),
    );
    assert_eq!(s["digest"], want.as_str());
    let platforms: Vec<&str> = s["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    for (i, dest) in [
        format!("oci-archive:{d}/a.tar:v1"),
        format!("docker-archive:{d}/b.tar:example/busybox:v1"),
        format!("oci:{d}/layout:v1"),
        format!("{d}/c.tar"), // a bare *.tar: a docker-archive
    ]
    .iter()
    .enumerate()
    {
        let s = json(
            berth()
                .arg("pull")
                .arg(format!("{reg}/src/busybox:v1"))
                .arg(dest),
        );
        assert_eq!(s["digest"], want.as_str(), "pull into {dest}");
        // Back into the registry from the archive (named explicitly, then sniffed by `push`).
        // `copy` wants a transport; `push` takes a bare path and sniffs it.
        let src = dest.clone();
        let verb = if src.starts_with('/') { "push" } else { "copy" };
        let s = json(
            berth()
                .arg(verb)
                .arg(&src)
                .arg(format!("{reg}/back/n{i}:v1")),
        );
        assert_eq!(s["digest"], want.as_str(), "copy from {src}");
        assert_eq!(s["manifests"], 3);
        assert_eq!(
            head_digest(&server, &format!("/v2/back/n{i}/manifests/v1"))
                .await
                .as_deref(),
            Some(want.as_str())
        );
    }
    let s = json(
        berth()
            .arg("push")
            .arg(format!("{d}/a.tar"))
            .arg(format!("{reg}/back/sniffed:v1")),
    );
    assert_eq!(s["digest"], want.as_str());
    // The archives are deterministic: pulling again gives the same bytes.
    json(
        berth()
            .arg("pull")
            .arg(format!("{reg}/src/busybox:v1"))
            .arg(format!("oci-archive:{d}/a2.tar:v1")),
    );
    assert_eq!(
        sha256_hex(&std::fs::read(dir.path().join("a.tar")).unwrap()),
        sha256_hex(&std::fs::read(dir.path().join("a2.tar")).unwrap())
    );
    // No staging directory or partial file is left next to the archives.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A failed pull (missing tag) leaves no archive behind.
    let out = berth()
        .arg("pull")
        .arg(format!("{reg}/src/busybox:nope"))
        .arg(format!("docker-archive:{d}/never.tar"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("never.tar").exists());
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_filter_mount_and_errors() {
    let fx = fixtures();
    let want = fixture_index_digest(&fx);
    let index: Value = serde_json::from_slice(
        &std::fs::read(
            fx.join("busybox/blobs/sha256")
                .join(want.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let arm_digest = index["manifests"][1]["digest"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = &server.addr;
    json(
        berth()
            .arg("push")
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{reg}/src/busybox:v1")),
    );

    // Same registry, another repository: every blob is mounted, none transferred.
    let s = json(
        berth()
            .arg("copy")
            .arg(format!("{reg}/src/busybox:v1"))
            .arg(format!("{reg}/mounted/busybox:v1")),
    );
    assert_eq!(s["blobsCopied"], 0, "{s}");
    assert_eq!(s["blobsSkipped"], 4, "{s}");
    assert_eq!(
        head_digest(&server, "/v2/mounted/busybox/manifests/v1")
            .await
            .as_deref(),
        Some(want.as_str())
    );

    // One platform: that platform's manifest, digest unchanged.
    let s = json(
        berth()
            .arg("copy")
            .args(["--platform", "linux/aarch64"])
            .arg(format!("{reg}/src/busybox:v1"))
            .arg(format!("{reg}/arm/busybox:v1")),
    );
    assert_eq!(s["digest"], arm_digest.as_str());
    assert_eq!(s["images"][0]["platform"], "linux/arm64");
    assert_eq!(
        head_digest(&server, "/v2/arm/busybox/manifests/v1")
            .await
            .as_deref(),
        Some(arm_digest.as_str())
    );
    // Both platforms named: an index of both.
    let s = json(
        berth()
            .arg("copy")
            .args(["--platform", "linux/arm64,linux/amd64"])
            .arg(format!("{reg}/src/busybox:v1"))
            .arg(format!("{reg}/both/busybox:v1")),
    );
    assert_eq!(s["images"].as_array().unwrap().len(), 2);

    // A platform the image lacks: exit 1, naming what it has.
    let out = berth()
        .arg("copy")
        .args(["--platform", "linux/s390x"])
        .arg(format!("{reg}/src/busybox:v1"))
        .arg(format!("{reg}/none/busybox:v1"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    // Usage errors: exit 2.
    for bad in [
        vec!["copy", "--platform", "linux", "a", "b"],
        vec!["copy", "dir:/tmp/x", "oci:/tmp/y"],
        vec!["copy", "/tmp/x", "oci:/tmp/y"],
        vec!["push", "oci:/tmp/x", "oci:/tmp/y"],
    ] {
        let out = berth().args(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_strategies_and_registry_verbs() {
    let fx = fixtures();
    let want = fixture_index_digest(&fx);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = &server.addr;
    let s = json(
        berth()
            .arg("push")
            .args(["--tag-strategy", "semver,digest"])
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{reg}/app/web:v1.4.2")),
    );
    let short = &want["sha256:".len()..][..12];
    let refs: Vec<&str> = s["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 5, "{refs:?}");
    for t in ["v1.4.2", "v1.4", "v1", "latest", short] {
        assert_eq!(
            head_digest(&server, &format!("/v2/app/web/manifests/{t}"))
                .await
                .as_deref(),
            Some(want.as_str()),
            "tag {t}"
        );
    }
    // Re-pushing the identical image succeeds and sends nothing.
    let again = json(
        berth()
            .arg("push")
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{reg}/app/web:v1.4.2")),
    );
    assert_eq!(again["blobsCopied"], 0);

    let tags = run(berth().arg("tags").arg(format!("{reg}/app/web")));
    let mut expect = vec!["latest", "v1", "v1.4", "v1.4.2", short];
    expect.sort_unstable();
    assert_eq!(tags.lines().collect::<Vec<_>>(), expect);
    let digest = run(berth().arg("digest").arg(format!("{reg}/app/web:v1")));
    assert_eq!(digest.trim(), want);

    run(berth()
        .arg("tag")
        .arg(format!("{reg}/app/web:v1"))
        .args(["stable", "prod"]));
    assert_eq!(
        head_digest(&server, "/v2/app/web/manifests/prod")
            .await
            .as_deref(),
        Some(want.as_str())
    );
    run(berth().arg("rm").arg(format!("{reg}/app/web:prod")));
    assert_eq!(
        head_digest(&server, "/v2/app/web/manifests/prod").await,
        None
    );
    assert!(
        head_digest(&server, "/v2/app/web/manifests/stable")
            .await
            .is_some()
    );

    let info: Value = serde_json::from_str(&run(berth()
        .args(["inspect", "--json"])
        .arg(format!("{reg}/app/web:v1"))))
    .unwrap();
    assert_eq!(info["digest"], want.as_str());
    assert_eq!(info["manifests"].as_array().unwrap().len(), 2);
    let raw = run(berth()
        .args(["inspect", "--raw"])
        .arg(format!("{reg}/app/web:v1")));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), want);
    let config: Value = serde_json::from_str(&run(berth()
        .args(["inspect", "--config", "--platform", "linux/arm64"])
        .arg(format!("{reg}/app/web:v1"))))
    .unwrap();
    assert_eq!(config["architecture"], "arm64");

    // The git strategy: the short commit and the branch of the checkout berth runs in.
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(repo.path()))
    };
    git(&["init", "-q", "-b", "feature/login"]);
    git(&["commit", "-q", "--allow-empty", "-m", "x"]);
    let commit = git(&["rev-parse", "--short=7", "HEAD"]).trim().to_owned();
    let s = json(
        berth()
            .current_dir(repo.path())
            .args(["push", "--tag-strategy", "git"])
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{reg}/app/git:main")),
    );
    assert_eq!(s["references"].as_array().unwrap().len(), 3, "{s}");
    for t in [commit.as_str(), "feature-login"] {
        assert_eq!(
            head_digest(&server, &format!("/v2/app/git/manifests/{t}"))
                .await
                .as_deref(),
            Some(want.as_str()),
            "tag {t}"
        );
    }

    // A semver strategy on a tag that is not a version is a usage error.
    let out = berth()
        .args(["push", "--tag-strategy", "semver"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("{reg}/app/web:main"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Deleting by digest removes the manifest and every tag on it.
    run(berth().arg("rm").arg(format!("{reg}/app/web@{want}")));
    assert_eq!(head_digest(&server, "/v2/app/web/manifests/v1").await, None);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_travel_with_the_image() {
    let fx = fixtures();
    let want = fixture_index_digest(&fx);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = &server.addr;
    json(
        berth()
            .arg("push")
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{reg}/signed/busybox:v1")),
    );
    // A signature-like artifact whose subject is the index.
    let http = client();
    let empty = b"{}";
    let empty_digest = format!("sha256:{}", sha256_hex(empty));
    let r = http
        .post(server.url("/v2/signed/busybox/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let url = if loc.starts_with("http") {
        loc.clone()
    } else {
        server.url(&loc)
    };
    let put = http
        .put(format!("{url}{sep}digest={empty_digest}"))
        .body(empty.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": want, "size": std::fs::metadata(fx.join("busybox/blobs/sha256").join(want.trim_start_matches("sha256:"))).unwrap().len()},
    });
    let bytes = serde_json::to_vec(&artifact).unwrap();
    let sig = format!("sha256:{}", sha256_hex(&bytes));
    let r = http
        .put(server.url(&format!("/v2/signed/busybox/manifests/{sig}")))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let referrers = |repo: &str| {
        let url = server.url(&format!("/v2/{repo}/referrers/{want}"));
        let http = http.clone();
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            v["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // Registry to registry: the signature comes along.
    let s = json(
        berth()
            .arg("copy")
            .arg(format!("{reg}/signed/busybox:v1"))
            .arg(format!("{reg}/copied/busybox:v1")),
    );
    assert_eq!(s["referrers"], 1, "{s}");
    assert_eq!(referrers("copied/busybox").await, vec![sig.clone()]);
    // Into a layout and out again: still there.
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", dir.path().join("l").display());
    let s = json(
        berth()
            .arg("copy")
            .arg(format!("{reg}/signed/busybox:v1"))
            .arg(&layout),
    );
    assert_eq!(s["referrers"], 1);
    let s = json(
        berth()
            .arg("copy")
            .arg(&layout)
            .arg(format!("{reg}/relayed/busybox:v1")),
    );
    assert_eq!(s["referrers"], 1);
    assert_eq!(referrers("relayed/busybox").await, vec![sig.clone()]);
    // --no-referrers leaves them behind.
    let s = json(
        berth()
            .args(["copy", "--no-referrers"])
            .arg(format!("{reg}/signed/busybox:v1"))
            .arg(format!("{reg}/bare/busybox:v1")),
    );
    assert_eq!(s["referrers"], 0);
    assert!(referrers("bare/busybox").await.is_empty());
    assert!(server.terminate().success());
}
