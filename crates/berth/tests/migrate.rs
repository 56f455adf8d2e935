//! `berth admin migrate`: a populated embedded registry (filesystem + SQLite, authentication
//! on) copied into SeaweedFS + PostgreSQL; then every image pulled from a scaled `berth serve`
//! with identical digests, with a user key made before the migration. A second run copies
//! nothing again.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    Server, fixture_index_digest, fixtures, pull_layout, push_layout, run, sha256_hex, skopeo,
};

const POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;

fn migrate(
    from: &Path,
    target_data: &Path,
    config: &Path,
    weed: &common::seaweed::Seaweed,
    db: &str,
) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["admin", "--data"])
        .arg(target_data)
        .arg("--config")
        .arg(config)
        .args(["migrate", "--from"])
        .arg(from)
        .args(["--to-storage", &format!("s3://{}/scaled", weed.bucket)])
        .args(["--to-metadata", db])
        .envs(weed.env());
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_registry_migrates_to_s3_and_postgresql() {
    let fx = fixtures();
    let embedded = tempfile::tempdir().unwrap();
    let server = Server::start_auth(embedded.path(), &["--create-on-push"], &[]);
    let (id, secret) = common::user(&server, "ci", Some(POLICY));
    let creds = format!("{id}:{secret}");
    let reg = server.addr.clone();
    push_layout(
        &fx.join("busybox"),
        &format!("{reg}/team/busybox:latest"),
        Some(&creds),
    );
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds])
        .arg(format!("oci:{}:latest", fx.join("busybox-amd64").display()))
        .arg(format!("docker://{reg}/team/amd64:v1")));
    drop(server);

    let weed = common::seaweed::start("migrated");
    let db = common::pg::database();
    let target = tempfile::tempdir().unwrap();
    let config = target.path().join("berth.toml");
    std::fs::write(&config, weed.config("scaled", "")).unwrap();
    let first = migrate(embedded.path(), target.path(), &config, &weed, &db.url);
    assert!(first.contains("copied and verified"), "{first}");
    assert!(
        first.contains("metadata:") && first.contains("manifests:"),
        "{first}"
    );
    // A rerun has nothing left to do.
    let again = migrate(embedded.path(), target.path(), &config, &weed, &db.url);
    assert!(again.contains("blobs: 0 copied"), "{again}");
    assert!(again.contains("already migrated"), "{again}");

    // The scaled registry, with the source's master key: the user's key still works.
    let key = std::fs::read_to_string(embedded.path().join("master.key")).unwrap();
    std::fs::write(
        &config,
        format!("metadata = \"{}\"\n{}", db.url, weed.config("scaled", "")),
    )
    .unwrap();
    let mut env = weed.env();
    env.push(("BERTH_MASTER_KEY", key.trim().to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let scaled = Server::start_auth(target.path(), &["--config", config.to_str().unwrap()], &env);
    let reg = scaled.addr.clone();
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
        .arg(format!("docker://{reg}/team/busybox:latest")));
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        fixture_index_digest(&fx)
    );
    for (image, layout) in [
        ("team/busybox:latest", "busybox"),
        ("team/amd64:v1", "busybox-amd64"),
    ] {
        // Every blob pulled is checked against its digest by pull_layout.
        let (ours, _keep) = pull_layout(&format!("{reg}/{image}"), Some(&creds));
        let theirs = run(skopeo()
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", fx.join(layout).display())));
        assert_eq!(ours, theirs, "{image}");
    }
    // New rows continue after the copied ids (the identity sequences were moved on).
    let home = tempfile::tempdir().unwrap();
    for name in ["after/one", "after/two"] {
        common::ok(
            &common::aws_ecr(
                home.path(),
                &reg,
                &id,
                &secret,
                &["create-repository", "--repository-name", name],
            ),
            "create-repository after the migration",
        );
    }
    // The tags and repositories came along.
    let tags = run(skopeo()
        .args(["list-tags", "--tls-verify=false", "--creds", &creds])
        .arg(format!("docker://{reg}/team/amd64")));
    assert!(tags.contains("\"v1\""), "{tags}");
}
