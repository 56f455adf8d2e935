//! berth-client's copy engine against a real `berth serve`: the multi-arch busybox fixture
//! layout → registry → layout, digests and bytes unchanged, nothing re-sent on a second copy.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use berth_client::layout::OciLayout;
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_client::{CopyOptions, copy};
use berth_oci::ImageRef;
use common::{Server, fixture_index_digest, fixtures};

fn blobs(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_to_registry_and_back_byte_exact() {
    let fx = fixtures();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reference = ImageRef::parse(&format!("{}/copy/busybox:v1", server.addr)).unwrap();
    let client = Arc::new(RegistryClient::new(reference.registry(), None, &[]).unwrap());
    let remote = RegistryImage::new(Arc::clone(&client), &reference);

    let src = OciLayout::new(fx.join("busybox"), Some("latest"));
    let report = copy(&src, &remote, &CopyOptions::default()).await.unwrap();
    let want = fixture_index_digest(&fx);
    assert_eq!(
        report.digest.as_ref().map(ToString::to_string).as_deref(),
        Some(want.as_str())
    );
    assert_eq!(report.manifests, 3);
    let head = common::client()
        .head(server.url("/v2/copy/busybox/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["docker-content-digest"].to_str().unwrap(),
        want
    );

    // Nothing is sent twice.
    let again = copy(&src, &remote, &CopyOptions::default()).await.unwrap();
    assert_eq!(again.blobs_copied, 0);
    assert!(again.blobs_skipped >= 4, "{again:?}");

    // Back out into a fresh layout: the same bytes as the fixture.
    let out = tempfile::tempdir().unwrap();
    let back = copy(
        &remote,
        &OciLayout::new(out.path(), Some("latest")),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(back.digest, report.digest);
    assert_eq!(blobs(out.path()), blobs(&fx.join("busybox")));
    assert!(server.terminate().success());
}
