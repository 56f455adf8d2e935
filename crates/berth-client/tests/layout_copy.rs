//! The transfer engine over OCI layouts: a two-platform image copied whole and byte-exact,
//! skipping what the destination has, and refusing corrupt content.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use berth_client::layout::OciLayout;
use berth_client::{ClientError, CopyOptions, copy};
use berth_oci::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn put(dir: &Path, bytes: &[u8]) -> (Digest, usize) {
    let d = Digest::sha256(bytes);
    let p = dir.join("blobs/sha256");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join(d.hex()), bytes).unwrap();
    (d, bytes.len())
}

/// A layout with an index of two platform images sharing one layer; returns the index digest.
fn make_layout(dir: &Path) -> Digest {
    let shared = put(dir, &vec![7u8; 300_000]);
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let cfg = put(
            dir,
            format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).as_bytes(),
        );
        let own = put(dir, format!("layer for {arch}").repeat(1000).as_bytes());
        // Unusual whitespace on purpose: the bytes must travel unchanged.
        let m = format!(
            "{{ \"schemaVersion\": 2, \"mediaType\": \"{OCI_MANIFEST}\",\n \"config\": {{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":{}}},\n \"layers\": [{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{}\",\"size\":{}}},{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{}\",\"size\":{}}}] }}",
            cfg.0, cfg.1, shared.0, shared.1, own.0, own.1
        );
        let (d, n) = put(dir, m.as_bytes());
        children.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{n},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children.join(",")
    );
    let (d, n) = put(dir, index.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_INDEX}","digest":"{d}","size":{n},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    d
}

fn blob_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn copies_a_multi_platform_layout_byte_exact() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let digest = make_layout(src_dir.path());
    let src = OciLayout::new(src_dir.path(), Some("v1"));
    let dst = OciLayout::new(dst_dir.path(), Some("copied"));
    let report = copy(&src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.digest, Some(digest.clone()));
    assert_eq!(report.manifests, 3);
    assert_eq!(
        report.blobs_copied, 5,
        "2 configs, 2 own layers, 1 shared layer: {report:?}"
    );
    assert_eq!(blob_files(src_dir.path()), blob_files(dst_dir.path()));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst_dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.to_string());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "copied"
    );

    // Again: everything is there already; a second tag joins the first in index.json.
    let again = OciLayout::new(dst_dir.path(), Some("second"));
    let report = copy(&src, &again, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.blobs_copied, 0);
    assert_eq!(
        report.blobs_skipped, 5,
        "deduplicated across platforms: the shared layer once"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst_dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    // And the copy reads back as a source.
    let back = OciLayout::new(dst_dir.path(), Some("second"));
    let third = tempfile::tempdir().unwrap();
    copy(
        &back,
        &OciLayout::new(third.path(), None),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(blob_files(src_dir.path()), blob_files(third.path()));
}

#[tokio::test]
async fn refuses_corrupt_content_and_leaves_nothing_behind() {
    let src_dir = tempfile::tempdir().unwrap();
    make_layout(src_dir.path());
    // Corrupt the big shared layer (same size, different bytes).
    let shared = Digest::sha256(&vec![7u8; 300_000]);
    let path = src_dir.path().join("blobs/sha256").join(shared.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[150_000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let err = copy(
        &OciLayout::new(src_dir.path(), Some("v1")),
        &OciLayout::new(dst_dir.path(), None),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::DigestMismatch { ref expected, .. } if *expected == shared),
        "{err}"
    );
    assert!(
        !dst_dir
            .path()
            .join("blobs/sha256")
            .join(shared.hex())
            .exists()
    );
    assert!(
        !dst_dir.path().join("index.json").exists(),
        "no index for a failed copy"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dst_dir.path().join("blobs/sha256"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    // An unknown tag is a clear error.
    let err = copy(
        &OciLayout::new(src_dir.path(), Some("nope")),
        &OciLayout::new(dst_dir.path(), None),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
