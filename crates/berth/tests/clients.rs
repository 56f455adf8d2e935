//! Real clients nobody here wrote — skopeo and podman — against `berth serve` on an ephemeral
//! loopback port, with the offline busybox fixtures (linux/amd64 + linux/arm64).
//!
//! Needs root, skopeo, podman, runc and qemu-user-static: `scripts/test.sh` installs them.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Podman, Server, client, fixture_index_digest, fixtures, run, sha256_hex, skopeo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_all_roundtrip_list_tags_and_delete() {
    let fx = fixtures();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = &server.addr;
    let want = fixture_index_digest(&fx);

    run(skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("docker://{reg}/fixtures/busybox:latest")));
    // The index is served byte-exact under the same digest, with both platforms.
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/fixtures/busybox:latest")));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), want);
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let r = client()
        .head(server.url("/v2/fixtures/busybox/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), want);

    // And back out: identical digests for the index and every manifest.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("layout");
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{reg}/fixtures/busybox:latest"))
        .arg(format!("oci:{}:latest", dest.display())));
    let back = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", dest.display())));
    assert_eq!(back, raw);
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let hex = d.strip_prefix("sha256:").unwrap();
        let ours = std::fs::read(dest.join("blobs/sha256").join(hex)).unwrap();
        let theirs = std::fs::read(fx.join("busybox/blobs/sha256").join(hex)).unwrap();
        assert_eq!(ours, theirs, "manifest {d} changed on the round trip");
        let manifest: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let lhex = layer["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap();
            let bytes = std::fs::read(dest.join("blobs/sha256").join(lhex)).unwrap();
            assert_eq!(sha256_hex(&bytes), lhex);
        }
    }

    // list-tags, then delete.
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", fx.join("busybox-amd64").display()))
        .arg(format!("docker://{reg}/fixtures/busybox:amd64")));
    let tags: serde_json::Value = serde_json::from_str(&run(skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{reg}/fixtures/busybox"))))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["amd64", "latest"]));
    run(skopeo()
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{reg}/fixtures/busybox:latest")));
    let r = client()
        .get(server.url("/v2/fixtures/busybox/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let tags: serde_json::Value = serde_json::from_str(&run(skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{reg}/fixtures/busybox"))))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["amd64"]));
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_push_pull_and_run_both_architectures() {
    let fx = fixtures();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = server.addr.clone();
    let podman = Podman::new(&reg);

    for (arch, expect) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let local = format!("localhost/fixture/busybox:{arch}");
        let remote = format!("{reg}/podman/busybox:{arch}");
        let platform = format!("linux/{arch}");
        // `podman pull` prints the image id last.
        let pulled = run(podman
            .cmd()
            .args(["pull", "--platform", &platform])
            .arg(format!(
                "oci:{}:latest",
                fx.join(format!("busybox-{arch}")).display()
            )));
        let id = pulled.lines().last().unwrap().trim().to_owned();
        run(podman.cmd().args(["tag", &id, &local]));
        run(podman.cmd().args(["push", &local, &remote]));
        // Forget every local copy, then pull and run from berth.
        run(podman.cmd().args(["rmi", "--all", "--force"]));
        run(podman
            .cmd()
            .args(["pull", "--platform", &platform, &remote]));
        let out = run(podman
            .cmd()
            .args(["run", "--rm", "--platform", &platform, &remote]));
        assert_eq!(out.trim(), expect, "podman run {remote}");
        let tags = client()
            .get(server.url("/v2/podman/busybox/tags/list"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(tags.contains(arch), "{tags}");
        run(podman.cmd().args(["rmi", "--all", "--force"]));
    }
    // The multi-arch index pushed by skopeo runs on either platform through podman.
    run(skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("docker://{reg}/multi/busybox:latest")));
    run(podman.cmd().args(["rmi", "--all", "--force"]));
    for (platform, expect) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let out = run(podman
            .cmd()
            .args(["run", "--rm", "--pull", "always", "--platform", platform])
            .arg(format!("{reg}/multi/busybox:latest")));
        assert_eq!(out.trim(), expect, "podman run --platform {platform}");
    }
    run(podman.cmd().args(["rmi", "--all", "--force"]));
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_copy_interoperates_with_skopeo() {
    let fx = fixtures();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = &server.addr;
    let want = fixture_index_digest(&fx);
    let berth = || Command::new(env!("CARGO_BIN_EXE_berth"));

    // berth pushes the multi-arch layout; skopeo reads back the same index.
    let out = run(berth()
        .args(["copy", "--json"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("docker://{reg}/cli/busybox:v1")));
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["digest"], want);
    assert_eq!(summary["manifests"], 3);
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/cli/busybox:v1")));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), want);

    // skopeo pushes; berth pulls into a layout that skopeo reads identically.
    run(skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("docker://{reg}/by/skopeo:latest")));
    let out_dir = tempfile::tempdir().unwrap();
    let layout = out_dir.path().join("layout");
    run(berth()
        .arg("copy")
        .arg(format!("{reg}/by/skopeo:latest"))
        .arg(format!("oci:{}:pulled", layout.display())));
    let back = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:pulled", layout.display())));
    assert_eq!(back, raw);
    // skopeo can copy berth's layout on to a registry unchanged.
    run(skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:pulled", layout.display()))
        .arg(format!("docker://{reg}/via/layout:x")));
    let r = client()
        .head(server.url("/v2/via/layout/manifests/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), want);

    // A missing image is a clear error with a non-zero exit.
    let out = berth()
        .arg("copy")
        .arg(format!("{reg}/cli/busybox:nope"))
        .arg(format!("oci:{}:x", layout.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    assert!(server.terminate().success());
}

#[test]
fn login_and_logout_write_docker_config() {
    let home = tempfile::tempdir().unwrap();
    let berth = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("DOCKER_CONFIG", home.path());
        c
    };
    let mut child = berth()
        .args(["login", "127.0.0.1:5000", "-u", "ci", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("config.json")).unwrap()).unwrap();
    // base64("ci:s3cret")
    assert_eq!(config["auths"]["127.0.0.1:5000"]["auth"], "Y2k6czNjcmV0");
    let out = run(berth().args(["logout", "127.0.0.1:5000"]));
    assert!(out.contains("Removing"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("config.json")).unwrap()).unwrap();
    assert!(config["auths"].get("127.0.0.1:5000").is_none());
    let out = berth()
        .args(["login", "x.io", "-u", "me"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "no password given is a usage error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_and_skopeo_read_berth_archives_and_berth_reads_theirs() {
    let fx = fixtures();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reg = server.addr.clone();
    let podman = Podman::new(&reg);
    let berth = || Command::new(env!("CARGO_BIN_EXE_berth"));
    let dir = tempfile::tempdir().unwrap();
    let want = fixture_index_digest(&fx);
    run(berth()
        .args(["push", "--progress", "quiet"])
        .arg(fx.join("busybox"))
        .arg(format!("{reg}/arc/busybox:latest")));

    // A multi-platform docker-archive: `podman load` takes it and runs the host's platform.
    let multi = dir.path().join("multi.tar");
    run(berth()
        .args(["pull", "--progress", "quiet"])
        .arg(format!("{reg}/arc/busybox:latest"))
        .arg(format!(
            "docker-archive:{}:arc/busybox:multi",
            multi.display()
        )));
    let loaded = run(podman.cmd().args(["load", "-i"]).arg(&multi));
    assert!(loaded.contains("arc/busybox:multi"), "{loaded}");
    let out = run(podman.cmd().args(["run", "--rm", "arc/busybox:multi"]));
    assert_eq!(out.trim(), std::env::consts::ARCH);
    // skopeo reads it as a docker-archive too (several images: it wants one named).
    let raw = run(skopeo().args(["inspect", "--raw"]).arg(format!(
        "docker-archive:{}:arc/busybox:multi",
        multi.display()
    )));
    assert!(raw.contains("rootfs.diff.tar"), "{raw}");

    // One platform (arm64) alone, loaded and run under emulation.
    let arm = dir.path().join("arm.tar");
    run(berth()
        .args(["pull", "--progress", "quiet", "--platform", "linux/arm64"])
        .arg(format!("{reg}/arc/busybox:latest"))
        .arg(format!("docker-archive:{}:arc/busybox:arm", arm.display())));
    run(podman.cmd().args(["load", "-i"]).arg(&arm));
    let out = run(podman.cmd().args([
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "arc/busybox:arm",
    ]));
    assert_eq!(out.trim(), "aarch64");

    // skopeo reads berth's oci-archive byte-exact.
    let oci = dir.path().join("image.oci.tar");
    run(berth()
        .args(["pull", "--progress", "quiet"])
        .arg(format!("{reg}/arc/busybox:latest"))
        .arg(format!("oci-archive:{}:v1", oci.display())));
    let raw = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}:v1", oci.display())));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), want);

    // podman's classic docker-archive (`<id>/layer.tar`, symlinks) goes up through berth and
    // runs when pulled back.
    let saved = dir.path().join("saved.tar");
    run(podman
        .cmd()
        .args(["save", "--format", "docker-archive", "-o"])
        .arg(&saved)
        .arg("arc/busybox:multi"));
    run(berth()
        .args(["push", "--progress", "quiet"])
        .arg(format!("docker-archive:{}", saved.display()))
        .arg(format!("{reg}/from/podman:saved")));
    run(podman.cmd().args(["rmi", "--all", "--force"]));
    let out = run(podman
        .cmd()
        .args(["run", "--rm"])
        .arg(format!("{reg}/from/podman:saved")));
    assert_eq!(out.trim(), std::env::consts::ARCH);
    run(podman.cmd().args(["rmi", "--all", "--force"]));
    assert!(server.terminate().success());
}
