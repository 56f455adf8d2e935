//! berth against berth: `berth repo` / `berth images` speak the ECR API to an authenticated
//! `berth serve`, and `berth push` authenticates natively (GetAuthorizationToken through the AWS
//! credential chain, `AWS_ENDPOINT_URL_ECR`) — with an immutable repository refusing a moved tag
//! by name while an identical re-push succeeds.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Server, fixtures};

const ROOT_ID: &str = "AKIASELFTESTROOTKEY1";
const ROOT_SECRET: &str = "self-test-root-secret-0123456789abcdef";

fn berth(server: &Server, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ROOT_ID)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_ECR", format!("http://{}", server.addr))
        .env("BERTH_ECR_REGISTRIES", &server.addr)
        .env("BERTH_CACHE_DIR", cache)
        .env("DOCKER_CONFIG", cache.join("docker"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn berth_manages_and_pushes_to_berth_serve_over_the_ecr_api() {
    let fx = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start_auth(
        dir.path(),
        &["--registry-id", "210987654321"],
        &[
            ("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET),
        ],
    );
    let run = |args: &[&str]| berth(&server, cache.path(), args);

    ok(
        &run(&[
            "repo",
            "create",
            "team/app",
            "--mutability",
            "IMMUTABLE",
            "--tag",
            "team=core",
        ]),
        "repo create",
    );
    let out = run(&["repo", "create", "team/app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RepositoryAlreadyExistsException"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&run(&["repo", "ls", "--json"]), "repo ls")).unwrap();
    let repos = listed["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{listed}");
    assert_eq!(repos[0]["repositoryName"], "team/app");
    assert_eq!(repos[0]["imageTagMutability"], "IMMUTABLE");
    assert_eq!(
        repos[0]["repositoryUri"],
        format!("{}/team/app", server.addr)
    );

    // Native ECR auth: no login, no config.json entry.
    let dst = format!("{}/team/app:v1", server.addr);
    let layout = format!("oci:{}:latest", fx.join("busybox").display());
    let pushed: serde_json::Value = serde_json::from_str(&ok(
        &run(&["push", &layout, &dst, "--json", "--progress", "quiet"]),
        "push",
    ))
    .unwrap();
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    assert!(!cache.path().join("docker/config.json").exists());
    // The identical image again: fine. Another image to the same tag: refused by name.
    ok(
        &run(&["push", &layout, &dst, "--progress", "quiet"]),
        "identical re-push",
    );
    let other = format!("oci:{}:latest", fx.join("busybox-arm64").display());
    let out = run(&["push", &other, &dst, "--progress", "quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("v1") && err.contains("team/app"), "{err}");
    assert!(err.to_lowercase().contains("immutable"), "{err}");

    // describe-images as berth shows it.
    let images: serde_json::Value = serde_json::from_str(&ok(
        &run(&["images", "ls", "team/app", "--json"]),
        "images ls",
    ))
    .unwrap();
    let images = images["images"].as_array().unwrap();
    let top = images
        .iter()
        .find(|i| i["imageDigest"] == digest.as_str())
        .unwrap_or_else(|| panic!("{digest} not in {images:?}"));
    assert_eq!(top["imageTags"], serde_json::json!(["v1"]));
    let table = ok(&run(&["images", "ls", "team/app"]), "images ls table");
    assert!(
        table.contains(&digest[..19]) && table.contains("v1"),
        "{table}"
    );

    // Mutability changes, then the tag may move.
    ok(
        &run(&["repo", "mutability", "team/app", "MUTABLE"]),
        "repo mutability",
    );
    ok(
        &run(&["push", &other, &dst, "--progress", "quiet"]),
        "push after MUTABLE",
    );

    // Deleting: refused while images remain, then forced.
    let out = run(&["repo", "rm", "team/app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RepositoryNotEmptyException"));
    ok(
        &run(&["repo", "rm", "team/app", "--force"]),
        "repo rm --force",
    );
    let out = run(&["repo", "describe", "team/app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RepositoryNotFoundException"));

    // Wrong credentials: a clear error, exit 1, and the secret is never printed.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["repo", "ls"])
        .env("AWS_ACCESS_KEY_ID", ROOT_ID)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_ECR", format!("http://{}", server.addr))
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidSignatureException"), "{err}");
    assert!(!err.contains("not-the-secret-at-all"));
}
