//! OCI Distribution v1.1 protocol tests: every endpoint row of the spec's table and every error
//! code, each scenario run in-process (router `oneshot`) and over a real loopback socket.

#![allow(clippy::unwrap_used)]

mod harness;

use axum::http::Method;
use berth_oci::Digest;
use harness::*;

#[tokio::test]
async fn end_1_base_and_api_version_header() {
    for h in Harness::both().await {
        let r = h.get("/v2/");
        let r = r.await;
        r.expect(200);
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{}",
            h.name()
        );
        h.get("/healthz").await.expect(200);
    }
}

#[tokio::test]
async fn end_2_blob_get_head_and_ranges() {
    for h in Harness::both().await {
        let data = b"0123456789abcdef".repeat(1000);
        let d = h.push_blob("lib/x", &data).await;
        let r = h.get(&format!("/v2/lib/x/blobs/{d}")).await;
        r.expect(200);
        assert_eq!(r.body, data);
        assert_eq!(
            r.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(r.header("content-length"), Some("16000"));
        let r = h.head(&format!("/v2/lib/x/blobs/{d}")).await;
        r.expect(200);
        assert_eq!(r.header("content-length"), Some("16000"), "{}", h.name());
        assert!(r.body.is_empty());
        let r = h
            .req(
                Method::GET,
                &format!("/v2/lib/x/blobs/{d}"),
                &[("Range", "bytes=10-19")],
                Vec::new(),
            )
            .await;
        r.expect(206);
        assert_eq!(r.body, &data[10..20]);
        assert_eq!(r.header("content-range"), Some("bytes 10-19/16000"));
        let r = h
            .req(
                Method::GET,
                &format!("/v2/lib/x/blobs/{d}"),
                &[("Range", "bytes=-5")],
                Vec::new(),
            )
            .await;
        r.expect(206);
        assert_eq!(r.body, &data[15995..]);
        let r = h
            .req(
                Method::GET,
                &format!("/v2/lib/x/blobs/{d}"),
                &[("Range", "bytes=15990-")],
                Vec::new(),
            )
            .await;
        assert_eq!(r.body, &data[15990..]);
        h.req(
            Method::GET,
            &format!("/v2/lib/x/blobs/{d}"),
            &[("Range", "bytes=16000-")],
            Vec::new(),
        )
        .await
        .expect(416);
        // Unknown blob, and a blob that exists only in another repository.
        let other = Digest::sha256(b"nope");
        h.get(&format!("/v2/lib/x/blobs/{other}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.get(&format!("/v2/lib/y/blobs/{d}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.head(&format!("/v2/lib/y/blobs/{d}")).await.expect(404);
    }
}

#[tokio::test]
async fn end_4a_end_6_post_then_put() {
    for h in Harness::both().await {
        let r = h
            .req(Method::POST, "/v2/a/b/c/blobs/uploads/", &[], Vec::new())
            .await;
        r.expect(202);
        let loc = r.header("location").unwrap().to_owned();
        assert!(loc.starts_with("/v2/a/b/c/blobs/uploads/"));
        assert_eq!(r.header("range"), Some("0-0"));
        assert!(r.header("docker-upload-uuid").is_some());
        let data = b"monolithic put".to_vec();
        let d = Digest::sha256(&data);
        let r = h
            .req(Method::PUT, &format!("{loc}?digest={d}"), &[], data.clone())
            .await;
        r.expect(201);
        assert_eq!(
            r.header("location"),
            Some(format!("/v2/a/b/c/blobs/{d}").as_str())
        );
        assert_eq!(
            r.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(h.get(&format!("/v2/a/b/c/blobs/{d}")).await.body, data);
        // The session is over.
        h.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn end_4b_monolithic_post() {
    for h in Harness::both().await {
        let data = b"single post".to_vec();
        let d = Digest::sha256(&data);
        let r = h
            .req(
                Method::POST,
                &format!("/v2/m/blobs/uploads/?digest={d}"),
                &[],
                data.clone(),
            )
            .await;
        r.expect(201);
        assert_eq!(
            r.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        // Wrong digest: refused, nothing stored.
        let before = h.files().await;
        let wrong = Digest::sha256(b"other");
        h.req(
            Method::POST,
            &format!("/v2/m/blobs/uploads/?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        h.req(
            Method::POST,
            "/v2/m/blobs/uploads/?digest=sha256:nothex",
            &[],
            data,
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        assert_eq!(before, h.files().await);
        h.get(&format!("/v2/m/blobs/{wrong}")).await.expect(404);
    }
}

/// Bodies over the in-memory limit (4 MiB) sent whole: on an object store they stream to
/// their content address as a multipart upload completed only once verified, so a wrong digest
/// or a repeated push must leave exactly what a staged upload would.
#[tokio::test]
async fn large_blobs_sent_whole() {
    for h in Harness::both().await {
        let data: Vec<u8> = (0..6 * 1024 * 1024 + 5u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let d = Digest::sha256(&data);
        let wrong = Digest::sha256(b"not these bytes");
        let before = h.files().await;
        let loc = h.start_upload("/v2/big/blobs/uploads/").await;
        h.req(
            Method::PUT,
            &format!("{loc}?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        h.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.req(
            Method::POST,
            &format!("/v2/big/blobs/uploads/?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        assert_eq!(
            before,
            h.files().await,
            "{}: a refused body left bytes",
            h.name()
        );
        h.get(&format!("/v2/big/blobs/{d}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        // Right: stored once, served byte for byte; pushed again (session, then monolithic):
        // accepted, nothing more stored.
        let loc = h.start_upload("/v2/big/blobs/uploads/").await;
        h.req(Method::PUT, &format!("{loc}?digest={d}"), &[], data.clone())
            .await
            .expect(201);
        let stored = h.files().await;
        let loc = h.start_upload("/v2/big/blobs/uploads/").await;
        h.req(Method::PUT, &format!("{loc}?digest={d}"), &[], data.clone())
            .await
            .expect(201);
        h.req(
            Method::POST,
            &format!("/v2/big2/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await
        .expect(201);
        assert_eq!(stored, h.files().await, "{}", h.name());
        for repo in ["big", "big2"] {
            let got = h.get(&format!("/v2/{repo}/blobs/{d}")).await;
            got.expect(200);
            assert!(got.body == data, "{}: {repo} serves other bytes", h.name());
        }
    }
}

#[tokio::test]
async fn end_5_end_13_chunked_patch_status_and_416() {
    for h in Harness::both().await {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::sha256(&data);
        let loc = h.start_upload("/v2/chunks/blobs/uploads/").await;
        let r = h
            .req(
                Method::PATCH,
                &loc,
                &[
                    ("Content-Range", "0-99999"),
                    ("Content-Type", "application/octet-stream"),
                ],
                data[..100_000].to_vec(),
            )
            .await;
        r.expect(202);
        assert_eq!(r.header("range"), Some("0-99999"));
        let loc = r.header("location").unwrap().to_owned();
        // Upload status.
        let s = h.get(&loc).await;
        s.expect(204);
        assert_eq!(s.header("range"), Some("0-99999"));
        assert_eq!(s.header("location"), Some(loc.as_str()));
        if h.name() == "socket" {
            assert!(
                s.header("content-length").is_none(),
                "204 must not carry Content-Length"
            );
        }
        // Out of order: 416 with the current range, nothing appended.
        let r = h
            .req(
                Method::PATCH,
                &loc,
                &[("Content-Range", "200000-299999")],
                data[200_000..].to_vec(),
            )
            .await;
        r.expect_error(416, "BLOB_UPLOAD_INVALID");
        assert_eq!(r.header("range"), Some("0-99999"));
        // A chunk re-sent from the start is out of order too.
        h.req(
            Method::PATCH,
            &loc,
            &[("Content-Range", "0-99999")],
            data[..100_000].to_vec(),
        )
        .await
        .expect(416);
        assert_eq!(h.get(&loc).await.header("range"), Some("0-99999"));
        // Streamed PATCH (no Content-Range).
        let r = h
            .req(Method::PATCH, &loc, &[], data[100_000..200_000].to_vec())
            .await;
        r.expect(202);
        assert_eq!(r.header("range"), Some("0-199999"));
        // Final chunk with the PUT.
        let r = h
            .req(
                Method::PUT,
                &format!("{loc}?digest={d}"),
                &[("Content-Range", "200000-299999")],
                data[200_000..].to_vec(),
            )
            .await;
        r.expect(201);
        assert_eq!(h.get(&format!("/v2/chunks/blobs/{d}")).await.body, data);
        // Malformed Content-Range.
        let loc2 = h.start_upload("/v2/chunks/blobs/uploads/").await;
        h.req(
            Method::PATCH,
            &loc2,
            &[("Content-Range", "zero-ten")],
            b"x".to_vec(),
        )
        .await
        .expect_error(400, "BLOB_UPLOAD_INVALID");
        // Content-Range and body length disagree.
        h.req(
            Method::PATCH,
            &loc2,
            &[("Content-Range", "0-9")],
            b"abc".to_vec(),
        )
        .await
        .expect_error(400, "BLOB_UPLOAD_INVALID");
    }
}

#[tokio::test]
async fn cancel_upload_and_unknown_ids() {
    for h in Harness::both().await {
        let loc = h.start_upload("/v2/c/blobs/uploads/").await;
        h.req(Method::PATCH, &loc, &[], b"partial".to_vec())
            .await
            .expect(202);
        h.delete(&loc).await.expect(204);
        h.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.delete(&loc)
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.req(Method::PATCH, &loc, &[], b"more".to_vec())
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        assert!(
            !h.files()
                .await
                .iter()
                .any(|(p, _)| p.starts_with("uploads/")),
            "cancelled upload left data: {:?}",
            h.files().await
        );
        // Ids that are not ours, path traversal, an upload of another repository.
        for bad in [
            "nope",
            "..%2F..%2Fmeta.db",
            "00000000-0000-0000-0000-000000000000",
        ] {
            h.get(&format!("/v2/c/blobs/uploads/{bad}"))
                .await
                .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        }
        let loc = h.start_upload("/v2/c/blobs/uploads/").await;
        let other = loc.replace("/v2/c/", "/v2/d/");
        h.get(&other).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        let d = Digest::sha256(b"");
        h.req(Method::PUT, &format!("{loc}?digest={d}"), &[], Vec::new())
            .await
            .expect(201);
        let loc = h.start_upload("/v2/c/blobs/uploads/").await;
        h.req(Method::PUT, &loc, &[], Vec::new())
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn end_11_cross_repo_mount() {
    for h in Harness::both().await {
        let d = h.push_blob("src/repo", b"shared layer").await;
        let r = h
            .req(
                Method::POST,
                &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
                &[],
                Vec::new(),
            )
            .await;
        r.expect(201);
        assert_eq!(
            r.header("location"),
            Some(format!("/v2/dst/blobs/{d}").as_str())
        );
        assert_eq!(
            h.get(&format!("/v2/dst/blobs/{d}")).await.body,
            b"shared layer"
        );
        // Not in `from` (or no `from`): a normal upload session instead.
        let missing = Digest::sha256(b"absent");
        let r = h
            .req(
                Method::POST,
                &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src/repo"),
                &[],
                Vec::new(),
            )
            .await;
        r.expect(202);
        assert!(r.header("location").unwrap().contains("/blobs/uploads/"));
        h.req(
            Method::POST,
            &format!("/v2/dst2/blobs/uploads/?mount={d}"),
            &[],
            Vec::new(),
        )
        .await
        .expect(202);
    }
}

struct Image {
    manifest: Vec<u8>,
    digest: Digest,
}

async fn push_image(h: &Harness, repo: &str, media_type: &str, seed: &str) -> Image {
    let cfg = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer of {seed}").into_bytes();
    let c = h.push_blob(repo, cfg.as_bytes()).await;
    let l = h.push_blob(repo, &layer).await;
    let manifest = image_manifest(media_type, (&c, cfg.len()), &[(&l, layer.len())], "");
    let digest = Digest::sha256(&manifest);
    Image { manifest, digest }
}

#[tokio::test]
async fn end_3_end_7_manifests_byte_exact() {
    for h in Harness::both().await {
        for (i, mt) in [OCI_MANIFEST, DOCKER_MANIFEST].into_iter().enumerate() {
            let img = push_image(&h, "app", mt, &i.to_string()).await;
            // Pretty-printed with odd spacing: must be stored and served exactly.
            let mut pretty = b"  \n".to_vec();
            pretty.extend_from_slice(&img.manifest);
            pretty.extend_from_slice(b"\n\n");
            let digest = Digest::sha256(&pretty);
            let r = h.put_manifest("app", &format!("v{i}"), mt, &pretty).await;
            r.expect(201);
            assert_eq!(
                r.header("docker-content-digest"),
                Some(digest.to_string().as_str())
            );
            assert_eq!(
                r.header("location"),
                Some(format!("/v2/app/manifests/{digest}").as_str())
            );
            for reference in [format!("v{i}"), digest.to_string()] {
                let g = h.get(&format!("/v2/app/manifests/{reference}")).await;
                g.expect(200);
                assert_eq!(g.body, pretty);
                assert_eq!(g.header("content-type"), Some(mt));
                assert_eq!(
                    g.header("docker-content-digest"),
                    Some(digest.to_string().as_str())
                );
                let hd = h.head(&format!("/v2/app/manifests/{reference}")).await;
                hd.expect(200);
                assert_eq!(
                    hd.header("content-length"),
                    Some(pretty.len().to_string().as_str())
                );
                assert_eq!(hd.header("content-type"), Some(mt));
            }
            // PUT by digest.
            let r = h
                .put_manifest("app", &img.digest.to_string(), mt, &img.manifest)
                .await;
            r.expect(201);
        }
        h.get("/v2/app/manifests/nosuchtag")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.head("/v2/app/manifests/nosuchtag").await.expect(404);
        h.get("/v2/nosuchrepo/manifests/latest")
            .await
            .expect_error(404, "NAME_UNKNOWN");
        let absent = Digest::sha256(b"x");
        h.get(&format!("/v2/app/manifests/{absent}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn manifest_put_errors_change_nothing() {
    for h in Harness::both().await {
        let img = push_image(&h, "e", OCI_MANIFEST, "e").await;
        let before = h.files().await;
        // Malformed JSON, wrong shapes.
        for bad in [
            &b"{"[..],
            b"[]",
            b"null",
            br#"{"schemaVersion":2}"#,
            br#"{"schemaVersion":1,"config":{}}"#,
        ] {
            h.put_manifest("e", "bad", OCI_MANIFEST, bad)
                .await
                .expect_error(400, "MANIFEST_INVALID");
        }
        // Content-Type disagreeing with mediaType.
        h.put_manifest("e", "bad", OCI_INDEX, &img.manifest)
            .await
            .expect_error(400, "MANIFEST_INVALID");
        // Digest reference that does not match the bytes.
        let wrong = Digest::sha256(b"wrong");
        h.put_manifest("e", &wrong.to_string(), OCI_MANIFEST, &img.manifest)
            .await
            .expect_error(400, "DIGEST_INVALID");
        // Malformed digest inside a descriptor.
        let traversal = String::from_utf8(img.manifest.clone()).unwrap().replacen(
            "sha256:",
            "sha256:../../",
            1,
        );
        h.put_manifest("e", "bad", OCI_MANIFEST, traversal.as_bytes())
            .await
            .expect_error(400, "MANIFEST_INVALID");
        // Missing blob.
        let ghost = Digest::sha256(b"ghost layer");
        let cfg = h.push_blob("e", b"{}").await;
        let m = image_manifest(OCI_MANIFEST, (&cfg, 2), &[(&ghost, 11)], "");
        let before_missing = h.files().await;
        let r = h.put_manifest("e", "bad", OCI_MANIFEST, &m).await;
        r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(r.json()["errors"][0]["detail"]["digest"], ghost.to_string());
        // Wrong declared size for a present blob.
        let m = image_manifest(OCI_MANIFEST, (&cfg, 3), &[], "");
        h.put_manifest("e", "bad", OCI_MANIFEST, &m)
            .await
            .expect_error(400, "MANIFEST_INVALID");
        // Index whose child manifest is missing.
        let idx = index_manifest(OCI_INDEX, &[(OCI_MANIFEST, &ghost, 10, "amd64")]);
        h.put_manifest("e", "bad", OCI_INDEX, &idx)
            .await
            .expect_error(400, "MANIFEST_UNKNOWN");
        // Invalid tag.
        h.put_manifest("e", "-bad-", OCI_MANIFEST, &img.manifest)
            .await
            .expect_error(400, "MANIFEST_INVALID");
        // Unsupported schema 1.
        h.put_manifest(
            "e",
            "old",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion":1,"fsLayers":[]}"#,
        )
        .await
        .expect_error(400, "MANIFEST_INVALID");
        // Nothing was stored by any of these (only manifests could have been added; the extra
        // config blob pushed above is the only new file).
        let after = h.files().await;
        assert_eq!(before_missing, after);
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(
            h.get("/v2/e/tags/list").await.json()["tags"],
            serde_json::json!([])
        );
    }
}

#[tokio::test]
async fn manifest_size_limit_413() {
    for h in Harness::both().await {
        let cfg = h.push_blob("big", b"{}").await;
        // Exactly 4 MiB: accepted.
        let base = image_manifest(OCI_MANIFEST, (&cfg, 2), &[], r#","annotations":{"pad":""}"#);
        let pad = 4 * 1024 * 1024 - base.len();
        let exact = image_manifest(
            OCI_MANIFEST,
            (&cfg, 2),
            &[],
            &format!(r#","annotations":{{"pad":"{}"}}"#, "p".repeat(pad)),
        );
        assert_eq!(exact.len(), 4 * 1024 * 1024);
        h.put_manifest("big", "exact", OCI_MANIFEST, &exact)
            .await
            .expect(201);
        assert_eq!(h.get("/v2/big/manifests/exact").await.body, exact);
        // One byte more: 413.
        let over = image_manifest(
            OCI_MANIFEST,
            (&cfg, 2),
            &[],
            &format!(r#","annotations":{{"pad":"{}"}}"#, "p".repeat(pad + 1)),
        );
        let before = h.files().await;
        h.put_manifest("big", "over", OCI_MANIFEST, &over)
            .await
            .expect_error(413, "SIZE_INVALID");
        assert_eq!(before, h.files().await);
    }
}

#[tokio::test]
async fn indexes_and_docker_manifest_lists() {
    for h in Harness::both().await {
        let a = push_image(&h, "multi", OCI_MANIFEST, "amd64").await;
        let b = push_image(&h, "multi", OCI_MANIFEST, "arm64").await;
        h.put_manifest("multi", &a.digest.to_string(), OCI_MANIFEST, &a.manifest)
            .await
            .expect(201);
        h.put_manifest("multi", &b.digest.to_string(), OCI_MANIFEST, &b.manifest)
            .await
            .expect(201);
        for mt in [OCI_INDEX, DOCKER_LIST] {
            let child_type = if mt == OCI_INDEX {
                OCI_MANIFEST
            } else {
                DOCKER_MANIFEST
            };
            let idx = index_manifest(
                mt,
                &[
                    (child_type, &a.digest, a.manifest.len(), "amd64"),
                    (child_type, &b.digest, b.manifest.len(), "arm64"),
                ],
            );
            h.put_manifest("multi", "latest", mt, &idx)
                .await
                .expect(201);
            let g = h.get("/v2/multi/manifests/latest").await;
            assert_eq!(g.body, idx);
            assert_eq!(g.header("content-type"), Some(mt));
        }
        // A child of a stored index cannot be deleted (the index would dangle).
        h.delete(&format!("/v2/multi/manifests/{}", a.digest))
            .await
            .expect_error(403, "DENIED");
        h.get(&format!("/v2/multi/manifests/{}", a.digest))
            .await
            .expect(200);
    }
}

#[tokio::test]
async fn end_8_tag_list_pagination() {
    for h in Harness::both().await {
        let img = push_image(&h, "t", OCI_MANIFEST, "t").await;
        for tag in ["b", "a", "d", "c", "e"] {
            h.put_manifest("t", tag, OCI_MANIFEST, &img.manifest)
                .await
                .expect(201);
        }
        let r = h.get("/v2/t/tags/list").await;
        r.expect(200);
        assert_eq!(
            r.json(),
            serde_json::json!({"name":"t","tags":["a","b","c","d","e"]})
        );
        assert!(r.header("link").is_none());
        let r = h.get("/v2/t/tags/list?n=2").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(
            r.header("link"),
            Some(r#"</v2/t/tags/list?n=2&last=b>; rel="next""#)
        );
        let r = h.get("/v2/t/tags/list?n=2&last=b").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["c", "d"]));
        let r = h.get("/v2/t/tags/list?n=2&last=d").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["e"]));
        assert!(r.header("link").is_none());
        let r = h.get("/v2/t/tags/list?n=0").await;
        r.expect(200);
        assert_eq!(r.json()["tags"], serde_json::json!([]));
        assert!(r.header("link").is_none());
        let r = h.get("/v2/t/tags/list?last=c").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["d", "e"]));
        h.get("/v2/t/tags/list?n=abc")
            .await
            .expect_error(400, "SIZE_INVALID");
        h.get("/v2/none/tags/list")
            .await
            .expect_error(404, "NAME_UNKNOWN");
        let c = h.get("/v2/_catalog").await;
        assert_eq!(c.json()["repositories"], serde_json::json!(["t"]));
    }
}

#[tokio::test]
async fn end_9_end_10_deletes_never_dangle() {
    for h in Harness::both().await {
        let img = push_image(&h, "del", OCI_MANIFEST, "del").await;
        h.put_manifest("del", "v1", OCI_MANIFEST, &img.manifest)
            .await
            .expect(201);
        h.put_manifest("del", "v2", OCI_MANIFEST, &img.manifest)
            .await
            .expect(201);
        let m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
        // A referenced blob cannot be deleted.
        h.delete(&format!("/v2/del/blobs/{layer}"))
            .await
            .expect_error(403, "DENIED");
        // Delete by tag removes only the tag.
        h.delete("/v2/del/manifests/v1").await.expect(202);
        h.get("/v2/del/manifests/v1")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.get("/v2/del/manifests/v2").await.expect(200);
        h.delete("/v2/del/manifests/v1")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        // Delete by digest removes the manifest and every tag pointing at it.
        h.delete(&format!("/v2/del/manifests/{}", img.digest))
            .await
            .expect(202);
        h.get("/v2/del/manifests/v2")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.get(&format!("/v2/del/manifests/{}", img.digest))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        assert_eq!(
            h.get("/v2/del/tags/list").await.json()["tags"],
            serde_json::json!([])
        );
        h.delete(&format!("/v2/del/manifests/{}", img.digest))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        // Now the blob is free.
        h.delete(&format!("/v2/del/blobs/{layer}"))
            .await
            .expect(202);
        h.get(&format!("/v2/del/blobs/{layer}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.delete(&format!("/v2/del/blobs/{layer}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.delete("/v2/del/blobs/sha256:zz")
            .await
            .expect_error(400, "DIGEST_INVALID");
        h.delete("/v2/nope/manifests/v1")
            .await
            .expect_error(404, "NAME_UNKNOWN");
    }
}

#[tokio::test]
async fn end_12_referrers_and_subject() {
    for h in Harness::both().await {
        let img = push_image(&h, "r", OCI_MANIFEST, "subject").await;
        h.put_manifest("r", "v1", OCI_MANIFEST, &img.manifest)
            .await
            .expect(201);
        let empty = h.push_blob("r", b"{}").await;
        let sig_layer = h.push_blob("r", b"signature").await;
        let mut artifacts = Vec::new();
        for (atype, ann) in [
            ("application/vnd.dev.cosign.simplesigning.v1+json", "sig"),
            ("application/spdx+json", "sbom"),
        ] {
            let extra = format!(
                r#","artifactType":"{atype}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"kind":"{ann}"}}"#,
                img.digest,
                img.manifest.len()
            );
            let m = image_manifest(OCI_MANIFEST, (&empty, 2), &[(&sig_layer, 9)], &extra);
            // An artifact's empty config carries the empty media type.
            let m = String::from_utf8(m)
                .unwrap()
                .replacen(
                    "application/vnd.oci.image.config.v1+json",
                    "application/vnd.oci.empty.v1+json",
                    1,
                )
                .into_bytes();
            let d = Digest::sha256(&m);
            let r = h.put_manifest("r", &d.to_string(), OCI_MANIFEST, &m).await;
            r.expect(201);
            assert_eq!(
                r.header("oci-subject"),
                Some(img.digest.to_string().as_str())
            );
            artifacts.push((d, m.len(), atype));
        }
        let r = h.get(&format!("/v2/r/referrers/{}", img.digest)).await;
        r.expect(200);
        assert_eq!(r.header("content-type"), Some(OCI_INDEX));
        let idx = r.json();
        assert_eq!(idx["schemaVersion"], 2);
        assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
        let first = &idx["manifests"][0];
        assert_eq!(first["digest"], artifacts[0].0.to_string());
        assert_eq!(first["size"], artifacts[0].1);
        assert_eq!(first["artifactType"], artifacts[0].2);
        assert_eq!(first["annotations"]["kind"], "sig");
        assert_eq!(first["mediaType"], OCI_MANIFEST);
        assert!(r.header("oci-filters-applied").is_none());
        let r = h
            .get(&format!(
                "/v2/r/referrers/{}?artifactType=application/spdx%2Bjson",
                img.digest
            ))
            .await;
        assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
        assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(
            r.json()["manifests"][0]["artifactType"],
            "application/spdx+json"
        );
        // No referrers: 200 with an empty list; malformed digest: 400.
        let none = h
            .get(&format!("/v2/r/referrers/{}", Digest::sha256(b"no")))
            .await;
        none.expect(200);
        assert_eq!(none.json()["manifests"], serde_json::json!([]));
        h.get("/v2/r/referrers/sha256:short")
            .await
            .expect_error(400, "DIGEST_INVALID");
        // A manifest whose subject does not exist is accepted.
        let orphan_extra = format!(
            r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}"#,
            Digest::sha256(b"missing subject")
        );
        let m = image_manifest(OCI_MANIFEST, (&empty, 2), &[], &orphan_extra);
        h.put_manifest("r", "orphan", OCI_MANIFEST, &m)
            .await
            .expect(201);
    }
}

#[tokio::test]
async fn names_and_digests_are_validated() {
    for h in Harness::both().await {
        let d = Digest::sha256(b"");
        let long = "a".repeat(256);
        for name in ["a/../b", ".."] {
            // Dot segments: refused in-process; an HTTP client normalises them away first.
            let r = h.get(&format!("/v2/{name}/blobs/{d}")).await;
            assert!(r.status.is_client_error(), "{name}: {}", r.status);
            assert!(
                r.code() == "NAME_INVALID" || h.name() != "in-process",
                "{name}: {}",
                r.code()
            );
        }
        for name in ["UPPER", "a//b", "a%2Fb", "-x", "a/.x", long.as_str()] {
            h.get(&format!("/v2/{name}/blobs/{d}"))
                .await
                .expect_error(400, "NAME_INVALID");
            h.req(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Vec::new(),
            )
            .await
            .expect_error(400, "NAME_INVALID");
        }
        // A literal traversal never reaches a digest route (clients normalise it, or it does not
        // parse); an encoded one is an invalid digest.
        let r = h.get("/v2/ok/blobs/sha256:../../../etc/passwd").await;
        assert!(r.status.is_client_error(), "{}", r.status);
        for digest in [
            "sha256:..%2F..%2Fetc%2Fpasswd",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            h.get(&format!("/v2/ok/blobs/{digest}"))
                .await
                .expect_error(400, "DIGEST_INVALID");
        }
        // sha512 content works end to end.
        let data = b"sha512 blob".to_vec();
        let d512 = Digest::of(berth_oci::Algorithm::Sha512, &data);
        h.req(
            Method::POST,
            &format!("/v2/ok/blobs/uploads/?digest={d512}"),
            &[],
            data.clone(),
        )
        .await
        .expect(201);
        assert_eq!(h.get(&format!("/v2/ok/blobs/{d512}")).await.body, data);
        // Unsupported methods and unknown routes.
        h.req(Method::POST, "/v2/ok/manifests/latest", &[], Vec::new())
            .await
            .expect_error(405, "UNSUPPORTED");
        h.get("/v2/ok/whatever/x").await.expect(404);
        // Nothing was created by the invalid requests.
        assert_eq!(
            h.get("/v2/_catalog").await.json()["repositories"],
            serde_json::json!(["ok"])
        );
    }
}

#[tokio::test]
async fn upload_sessions_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
    let d = Digest::sha256(&data);
    let loc;
    {
        let reg = open_registry(dir.path(), berth_registry::RegistryConfig::default());
        let app = berth_registry::router(reg);
        let h = Harness::from_router(app, tempfile::tempdir().unwrap());
        loc = h.start_upload("/v2/resume/blobs/uploads/").await;
        h.req(
            Method::PATCH,
            &loc,
            &[("Content-Range", "0-99999")],
            data[..100_000].to_vec(),
        )
        .await
        .expect(202);
    }
    // A new process on the same data: the session and its bytes are there; the hash state is
    // rebuilt from the staged bytes.
    let reg = open_registry(dir.path(), berth_registry::RegistryConfig::default());
    assert_eq!(reg.clean_uploads(true).await.unwrap(), 0);
    let h = Harness::from_router(berth_registry::router(reg), dir);
    let s = h.get(&loc).await;
    s.expect(204);
    assert_eq!(s.header("range"), Some("0-99999"));
    h.req(
        Method::PATCH,
        &loc,
        &[("Content-Range", "100000-199999")],
        data[100_000..].to_vec(),
    )
    .await
    .expect(202);
    h.req(Method::PUT, &format!("{loc}?digest={d}"), &[], Vec::new())
        .await
        .expect(201);
    assert_eq!(h.get(&format!("/v2/resume/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn blob_size_limit() {
    let mut config = berth_registry::RegistryConfig::default();
    config.max_blob_size = 1000;
    let h = Harness::in_process_with(config).await;
    let data = vec![7u8; 1001];
    let d = Digest::sha256(&data);
    h.req(
        Method::POST,
        &format!("/v2/lim/blobs/uploads/?digest={d}"),
        &[],
        data.clone(),
    )
    .await
    .expect_error(413, "SIZE_INVALID");
    // With its length declared (what real clients send), a small whole body is received in
    // memory: the limit holds there too, monolithic or as the PUT of a session.
    h.req(
        Method::POST,
        &format!("/v2/lim/blobs/uploads/?digest={d}"),
        &[("Content-Length", "1001")],
        data.clone(),
    )
    .await
    .expect_error(413, "SIZE_INVALID");
    let loc = h.start_upload("/v2/lim/blobs/uploads/").await;
    let sep = if loc.contains('?') { '&' } else { '?' };
    h.req(
        Method::PUT,
        &format!("{loc}{sep}digest={d}"),
        &[("Content-Length", "1001")],
        data.clone(),
    )
    .await
    .expect_error(413, "SIZE_INVALID");
    let loc = h.start_upload("/v2/lim/blobs/uploads/").await;
    h.req(Method::PATCH, &loc, &[], data)
        .await
        .expect_error(413, "SIZE_INVALID");
    h.get(&format!("/v2/lim/blobs/{d}")).await.expect(404);
}

#[tokio::test]
async fn too_many_concurrent_uploads_answer_429() {
    use axum::body::Body;
    use tower::ServiceExt;

    let mut config = berth_registry::RegistryConfig::default();
    config.max_concurrent_uploads = 1;
    let h = Harness::in_process_with(config).await;
    let app = h.router();
    let loc = h.start_upload("/v2/busy/blobs/uploads/").await;
    // One upload streaming a body that has not ended yet holds the only slot...
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let body = Body::from_stream(tokio_stream(rx));
    let req = axum::http::Request::patch(&loc).body(body).unwrap();
    let slow = tokio::spawn(app.clone().oneshot(req));
    tx.send(Ok(bytes::Bytes::from_static(b"first part")))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // ...so a second one is told to come back later.
    let d = Digest::sha256(b"x");
    let r = h
        .req(
            Method::POST,
            &format!("/v2/busy/blobs/uploads/?digest={d}"),
            &[],
            b"x".to_vec(),
        )
        .await;
    r.expect_error(429, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(tx);
    assert_eq!(slow.await.unwrap().unwrap().status(), 202);
    // The slot is free again.
    h.req(
        Method::POST,
        &format!("/v2/busy/blobs/uploads/?digest={d}"),
        &[],
        b"x".to_vec(),
    )
    .await
    .expect(201);
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn deeply_nested_json_is_refused_not_crashed() {
    for h in Harness::both().await {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        h.put_manifest("deep", "x", OCI_MANIFEST, deep.as_bytes())
            .await
            .expect_error(400, "MANIFEST_INVALID");
        let arrays = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let nested = format!(r#"{{"schemaVersion":2,"config":{{"annotations":{arrays}}}}}"#);
        h.put_manifest("deep", "x", OCI_MANIFEST, nested.as_bytes())
            .await
            .expect_error(400, "MANIFEST_INVALID");
    }
}

#[tokio::test]
async fn a_chunk_that_breaks_off_is_not_kept() {
    // In-process only: an HTTP client will not send fewer bytes than it declares.
    let h = Harness::in_process().await;
    let loc = h.start_upload("/v2/atomic/blobs/uploads/").await;
    h.req(
        Method::PATCH,
        &loc,
        &[("Content-Range", "0-3")],
        b"abcd".to_vec(),
    )
    .await
    .expect(202);
    // Declares 6 bytes, delivers 3: refused, and the upload is still at 4 bytes.
    h.req(
        Method::PATCH,
        &loc,
        &[("Content-Range", "4-9"), ("Content-Length", "6")],
        b"efg".to_vec(),
    )
    .await
    .expect_error(400, "BLOB_UPLOAD_INVALID");
    let s = h.get(&loc).await;
    assert_eq!(s.header("range"), Some("0-3"));
    // The same chunk, sent whole, now lands; the digest covers exactly the accepted bytes.
    h.req(
        Method::PATCH,
        &loc,
        &[("Content-Range", "4-9")],
        b"efghij".to_vec(),
    )
    .await
    .expect(202);
    let d = Digest::sha256(b"abcdefghij");
    h.req(Method::PUT, &format!("{loc}?digest={d}"), &[], Vec::new())
        .await
        .expect(201);
    // Absurd ranges are refused, not overflowed.
    let loc = h.start_upload("/v2/atomic/blobs/uploads/").await;
    h.req(
        Method::PATCH,
        &loc,
        &[("Content-Range", "0-18446744073709551615")],
        b"x".to_vec(),
    )
    .await
    .expect_error(400, "BLOB_UPLOAD_INVALID");
}

#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    use axum::body::Body;
    use tower::ServiceExt;

    let mut config = berth_registry::RegistryConfig::default();
    config.body_idle_timeout = std::time::Duration::from_millis(200);
    let h = Harness::in_process_with(config).await;
    let app = h.router();
    let loc = h.start_upload("/v2/stall/blobs/uploads/").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tx.send(Ok(bytes::Bytes::from_static(b"some")))
        .await
        .unwrap();
    let req = axum::http::Request::patch(&loc)
        .body(Body::from_stream(tokio_stream(rx)))
        .unwrap();
    let started = std::time::Instant::now();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(tx);
    // A streamed body (no declared length) keeps what arrived; the client can resume.
    assert_eq!(h.get(&loc).await.header("range"), Some("0-3"));
}

#[tokio::test]
async fn lenient_where_clients_expect_it() {
    for h in Harness::both().await {
        let data = b"0123456789".to_vec();
        let d = h.push_blob("len", &data).await;
        // A reversed Range is ignored: the whole blob.
        let r = h
            .req(
                Method::GET,
                &format!("/v2/len/blobs/{d}"),
                &[("Range", "bytes=5-2")],
                Vec::new(),
            )
            .await;
        r.expect(200);
        assert_eq!(r.body, data);
        // POST ?digest= without a body opens a session instead of failing.
        let other = Digest::sha256(b"later");
        let r = h
            .req(
                Method::POST,
                &format!("/v2/len/blobs/uploads/?digest={other}"),
                &[],
                Vec::new(),
            )
            .await;
        r.expect(202);
        assert!(r.header("location").unwrap().contains("/blobs/uploads/"));
        // One trailing slash is tolerated.
        h.get("/v2/len/tags/list/").await.expect(200);
        // Referrers of an unknown repository: an empty index, never a 404.
        let r = h.get(&format!("/v2/nowhere/referrers/{d}")).await;
        r.expect(200);
        assert_eq!(r.json()["manifests"], serde_json::json!([]));
    }
}
