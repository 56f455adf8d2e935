//! The AWS CLI v2 and skopeo run the seeds' ECR workflow against `berth serve`
//! (`scripts/ecr-cli-test.sh`).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Server, fixtures, workspace};

#[test]
fn the_aws_cli_and_skopeo_run_the_ecr_workflow() {
    let fx = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let (id, secret) = (
        "AKIACLITESTROOTKEY01",
        "cli-test-root-secret-0123456789abcdef",
    );
    let server = Server::start_auth(
        dir.path(),
        &[],
        &[
            ("BERTH_ROOT_ACCESS_KEY_ID", id),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", secret),
        ],
    );
    let out = Command::new(workspace().join("scripts/ecr-cli-test.sh"))
        .arg(&server.addr)
        .arg(&fx)
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/ecr-cli-test.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Root credentials came from the environment: no generated credentials file.
    assert!(!dir.path().join("root-credentials").exists());
}
