//! The client against the reference registry (Debian's `docker-registry`, distribution 2.8):
//! the multi-arch fixture pushed, copied registry → registry both ways with `berth serve`,
//! mounted between repositories, and through every archive format — digests never change.
//! Then a 2 GiB layer pushed with the client's memory bounded.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Reference, Server, client, fixture_index_digest, fixtures, vm_hwm};
use serde_json::Value;

/// `berth VERB --progress quiet`, with no docker credentials around.
fn verb(v: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env(
        "DOCKER_CONFIG",
        std::env::temp_dir().join("berth-client-ref-no-config"),
    )
    .args([v, "--progress", "quiet"]);
    c
}

#[track_caller]
fn summary(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn digest_of(host: &str, repo: &str, tag: &str) -> String {
    let r = client()
        .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{host}/{repo}:{tag}: {}",
        r.status()
    );
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_through_the_reference_registry_and_every_format() {
    let fx = fixtures();
    let want = fixture_index_digest(&fx);
    let reference = Reference::start();
    let data = tempfile::tempdir().unwrap();
    let berth_serve = Server::start(data.path());
    let (r, b) = (reference.addr.as_str(), berth_serve.addr.as_str());

    let s = summary(
        verb("push")
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{r}/fx/busybox:v1")),
    );
    assert_eq!(s["digest"], want.as_str());
    assert_eq!(digest_of(r, "fx/busybox", "v1").await, want);

    // reference → berth serve → reference (another repository).
    summary(
        verb("copy")
            .arg(format!("{r}/fx/busybox:v1"))
            .arg(format!("{b}/from/ref:v1")),
    );
    assert_eq!(digest_of(b, "from/ref", "v1").await, want);
    summary(
        verb("copy")
            .arg(format!("{b}/from/ref:v1"))
            .arg(format!("{r}/back/again:v1")),
    );
    assert_eq!(digest_of(r, "back/again", "v1").await, want);

    // Same registry, another repository: mounted, nothing transferred.
    let s = summary(
        verb("copy")
            .arg(format!("{r}/fx/busybox:v1"))
            .arg(format!("{r}/mounted/x:v1")),
    );
    assert_eq!(s["blobsCopied"], 0, "{s}");
    assert_eq!(digest_of(r, "mounted/x", "v1").await, want);

    // Through each archive format and back.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for (i, spec) in [
        format!("oci-archive:{d}/o.tar:v1"),
        format!("docker-archive:{d}/d.tar:fx/busybox:v1"),
        format!("oci:{d}/layout:v1"),
    ]
    .iter()
    .enumerate()
    {
        summary(verb("pull").arg(format!("{r}/fx/busybox:v1")).arg(spec));
        summary(verb("copy").arg(spec).arg(format!("{r}/arc/n{i}:v1")));
        assert_eq!(
            digest_of(r, &format!("arc/n{i}"), "v1").await,
            want,
            "{spec}"
        );
    }
    // The reference registry has no referrers API: copying asks, gets 404, copies none.
    let s = summary(
        verb("copy")
            .arg(format!("{r}/fx/busybox:v1"))
            .arg(format!("{b}/norefs/x:v1")),
    );
    assert_eq!(s["referrers"], 0);
    assert!(berth_serve.terminate().success());
}

/// A one-image layout with a single `size`-byte layer, written and hashed in 1 MiB steps.
fn big_layout(dir: &std::path::Path, size: u64) {
    use sha2::Digest as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let tmp = blobs.join("layer.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut h = sha2::Sha256::new();
    let mut block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for i in 0..size >> 20 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        h.update(&block);
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let layer = hex::encode(h.finalize());
    std::fs::rename(&tmp, blobs.join(&layer)).unwrap();
    let put = |bytes: &[u8]| {
        let d = common::sha256_hex(bytes);
        std::fs::write(blobs.join(&d), bytes).unwrap();
        d
    };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = put(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer}","size":{size}}}]}}"#,
        config.len()
    );
    let md = put(manifest.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"big"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gib_layer_is_pushed_in_bounded_client_memory() {
    let size = 2u64 << 30;
    let dir = tempfile::tempdir().unwrap();
    big_layout(dir.path(), size);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let mut child = verb("push")
        .arg(format!("oci:{}:big", dir.path().display()))
        .arg(format!("{}/big/layer:v1", server.addr))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm(pid) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    eprintln!(
        "berth push of a 2 GiB layer: client peak RSS {} MiB",
        peak >> 20
    );
    assert!(
        peak > 0 && peak < 64 << 20,
        "client peak RSS {} MiB",
        peak >> 20
    );
    let head = client()
        .head(server.url("/v2/big/layer/manifests/v1"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert!(head.status().is_success());
    assert!(server.terminate().success());
}
