//! berth's own container image, built by `berth build` from the repository's Dockerfile
//! (`scripts/image.sh`, with this test's binary for linux/amd64), run by podman and answering
//! `/v2/` as berth does. The two-platform build (linux/arm64 through a cross-compiled binary and
//! qemu) is the same script without `--binary`; set `BERTH_IMAGE_ARM64=PATH` to an arm64 binary
//! to include that platform here too.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

#[test]
fn podman_runs_the_image_berth_builds_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("berth-image.oci.tar");
    let bin = env!("CARGO_BIN_EXE_berth");
    let mut cmd = Command::new(common::workspace().join("scripts/image.sh"));
    cmd.args(["--binary", &format!("amd64={bin}")]);
    let arm64 = std::env::var("BERTH_IMAGE_ARM64").ok();
    if let Some(a) = &arm64 {
        cmd.args(["--binary", &format!("arm64={a}")]);
    }
    // A fresh context, as on a clean clone: nothing left by an earlier run can hide a missing file.
    cmd.args(["--berth", bin, "--out"])
        .arg(&out)
        .arg("--context")
        .arg(dir.path().join("context"));
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scripts/image.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("linux/amd64 answers /v2/ (HTTP/1.1 401"),
        "{stdout}"
    );
    if arm64.is_some() {
        assert!(stdout.contains("linux/arm64 answers /v2/"), "{stdout}");
    }
    // The archive holds the platforms built.
    let inspect = Command::new(bin)
        .args(["inspect"])
        .arg(format!("oci-archive:{}", out.display()))
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&inspect.stdout);
    assert!(raw.contains("linux/amd64"), "{raw}");
    if arm64.is_some() {
        assert!(raw.contains("linux/arm64"), "{raw}");
    }
}
