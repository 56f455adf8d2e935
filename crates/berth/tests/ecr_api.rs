//! The ECR API of a real `berth serve`, driven by the AWS SDK for Rust (`aws-sdk-ecr`): every
//! action, the exceptions ECR answers with, SigV4 failures, and the policy matrix over `/v2/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::primitives::Blob;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageIdentifier, ImageScanningConfiguration,
    ImageTagMutability, ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType,
    RctAppliedFor, Tag, TagStatus,
};
use base64::Engine as _;
use common::{Server, admin, client, sha256_hex, user};

const REGISTRY_ID: &str = "123456789012";
const ROOT_ID: &str = "AKIAROOTKEYFORTESTS1";
const ROOT_SECRET: &str = "root-secret-for-the-ecr-api-tests-0123456789";

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_auth(
        dir.path(),
        &["--registry-id", REGISTRY_ID],
        &[
            ("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET),
        ],
    );
    (dir, server)
}

async fn ecr(server: &Server, id: &str, secret: &str) -> Client {
    ecr_in(server, id, secret, "us-east-1")
}

/// A client signing for `region`.
fn ecr_in(server: &Server, id: &str, secret: &str, region: &str) -> Client {
    let creds = aws_sdk_ecr::config::Credentials::new(id, secret, None, None, "test");
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new(region.to_owned()))
        .credentials_provider(creds)
        .endpoint_url(format!("http://{}", server.addr))
        .build();
    Client::from_conf(conf)
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("<none>").to_owned()
}

/// Uploads a layer through InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload.
async fn upload_layer(c: &Client, repo: &str, data: &[u8], part: usize) -> String {
    let up = c
        .initiate_layer_upload()
        .repository_name(repo)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_owned();
    let mut first = 0usize;
    for chunk in data.chunks(part) {
        c.upload_layer_part()
            .repository_name(repo)
            .upload_id(&id)
            .part_first_byte(first as i64)
            .part_last_byte((first + chunk.len() - 1) as i64)
            .layer_part_blob(Blob::new(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        first += chunk.len();
    }
    let digest = format!("sha256:{}", sha256_hex(data));
    let done = c
        .complete_layer_upload()
        .repository_name(repo)
        .upload_id(&id)
        .layer_digests(&digest)
        .send()
        .await
        .unwrap();
    assert_eq!(done.layer_digest(), Some(digest.as_str()));
    digest
}

/// An OCI image manifest over one config and one layer.
fn manifest(config: &[u8], layer: &[u8]) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", sha256_hex(layer)),
            "size": layer.len(),
        }],
    })
    .to_string()
}

/// Pushes a small image through the ECR API; returns its manifest digest.
async fn push_image(c: &Client, repo: &str, tag: &str, seed: &str) -> String {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
    let layer = format!("layer data {seed}").repeat(100);
    upload_layer(c, repo, config.as_bytes(), 1 << 20).await;
    upload_layer(c, repo, layer.as_bytes(), 1 << 20).await;
    let m = manifest(config.as_bytes(), layer.as_bytes());
    let out = c
        .put_image()
        .repository_name(repo)
        .image_manifest(&m)
        .image_tag(tag)
        .send()
        .await
        .unwrap();
    let digest = out
        .image()
        .unwrap()
        .image_id()
        .unwrap()
        .image_digest()
        .unwrap();
    assert_eq!(digest, format!("sha256:{}", sha256_hex(m.as_bytes())));
    digest.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn repositories_are_created_described_tagged_and_deleted() {
    let (_dir, server) = start();
    let c = ecr(&server, ROOT_ID, ROOT_SECRET).await;
    let created = c
        .create_repository()
        .repository_name("team/app")
        .tags(Tag::builder().key("env").value("prod").build().unwrap())
        .image_tag_mutability(ImageTagMutability::ImmutableWithExclusion)
        .image_tag_mutability_exclusion_filters(
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter("latest")
                .build()
                .unwrap(),
        )
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(true)
                .build(),
        )
        .encryption_configuration(
            EncryptionConfiguration::builder()
                .encryption_type(EncryptionType::Kms)
                .kms_key("arn:aws:kms:us-east-1:123456789012:key/abc")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let repo = created.repository().unwrap();
    assert_eq!(
        repo.repository_arn(),
        Some("arn:aws:ecr:us-east-1:123456789012:repository/team/app")
    );
    assert_eq!(repo.registry_id(), Some(REGISTRY_ID));
    assert_eq!(
        repo.repository_uri(),
        Some(format!("{}/team/app", server.addr).as_str())
    );
    assert_eq!(
        repo.image_tag_mutability(),
        Some(&ImageTagMutability::ImmutableWithExclusion)
    );
    assert_eq!(repo.image_tag_mutability_exclusion_filters().len(), 1);
    assert!(repo.image_scanning_configuration().unwrap().scan_on_push());
    assert_eq!(
        repo.encryption_configuration().unwrap().encryption_type(),
        &EncryptionType::Kms
    );
    assert!(repo.created_at().is_some());

    let e = c
        .create_repository()
        .repository_name("team/app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "RepositoryAlreadyExistsException");
    let e = c
        .create_repository()
        .repository_name("Bad_Name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterException");
    let e = c
        .create_repository()
        .repository_name("x1")
        .image_tag_mutability(ImageTagMutability::MutableWithExclusion)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e),
        "InvalidParameterException",
        "exclusion filters required"
    );

    for i in 0..5 {
        c.create_repository()
            .repository_name(format!("many/r{i}"))
            .send()
            .await
            .unwrap();
    }
    // Pagination: 6 repositories, pages of 4.
    let first = c
        .describe_repositories()
        .max_results(4)
        .send()
        .await
        .unwrap();
    assert_eq!(first.repositories().len(), 4);
    let token = first.next_token().unwrap();
    let second = c
        .describe_repositories()
        .max_results(4)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.repositories().len(), 2);
    assert!(second.next_token().is_none());
    let e = c
        .describe_repositories()
        .repository_names("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "RepositoryNotFoundException");
    assert!(e.message().unwrap().contains("'nope'"), "{:?}", e.message());
    let e = c
        .describe_repositories()
        .max_results(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterException");

    // Resource tags.
    let arn = "arn:aws:ecr:us-east-1:123456789012:repository/team/app";
    c.tag_resource()
        .resource_arn(arn)
        .tags(Tag::builder().key("team").value("blue").build().unwrap())
        .send()
        .await
        .unwrap();
    c.untag_resource()
        .resource_arn(arn)
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    let tags = c
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(pairs, [("team", "blue")]);
    let e = c
        .tag_resource()
        .resource_arn(arn)
        .tags(
            Tag::builder()
                .key("aws:reserved")
                .value("x")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidTagParameterException");
    let e = c
        .list_tags_for_resource()
        .resource_arn("arn:aws:ecr:eu-west-1:999999999999:repository/team/app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterException");

    // Settings.
    let m = c
        .put_image_tag_mutability()
        .repository_name("team/app")
        .image_tag_mutability(ImageTagMutability::Mutable)
        .send()
        .await
        .unwrap();
    assert_eq!(m.image_tag_mutability(), Some(&ImageTagMutability::Mutable));
    let s = c
        .put_image_scanning_configuration()
        .repository_name("team/app")
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(!s.image_scanning_configuration().unwrap().scan_on_push());
    let reg = c.describe_registry().send().await.unwrap();
    assert_eq!(reg.registry_id(), Some(REGISTRY_ID));

    // Delete: refused while images remain, unless forced.
    push_image(&c, "team/app", "v1", "a").await;
    let e = c
        .delete_repository()
        .repository_name("team/app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "RepositoryNotEmptyException");
    let gone = c
        .delete_repository()
        .repository_name("team/app")
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.repository().unwrap().repository_name(),
        Some("team/app")
    );
    let e = c
        .delete_repository()
        .repository_name("team/app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "RepositoryNotFoundException");
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_and_images_through_the_api() {
    let (_dir, server) = start();
    let c = ecr(&server, ROOT_ID, ROOT_SECRET).await;
    c.create_repository()
        .repository_name("img")
        .send()
        .await
        .unwrap();

    // Parts: 5 MiB + remainder is fine; a small part before the last is refused at completion.
    let big: Vec<u8> = (0..(6 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let big_digest = upload_layer(&c, "img", &big, 5 << 20).await;
    let up = c
        .initiate_layer_upload()
        .repository_name("img")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    assert!(up.part_size().unwrap() >= 5 << 20);
    let small: Vec<u8> = b"0123456789".repeat(100);
    for (first, chunk) in [(0, &small[..500]), (500, &small[500..])] {
        c.upload_layer_part()
            .repository_name("img")
            .upload_id(id)
            .part_first_byte(first)
            .part_last_byte(first + chunk.len() as i64 - 1)
            .layer_part_blob(Blob::new(chunk.to_vec()))
            .send()
            .await
            .unwrap();
    }
    let e = c
        .complete_layer_upload()
        .repository_name("img")
        .upload_id(id)
        .layer_digests(format!("sha256:{}", sha256_hex(&small)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "LayerPartTooSmallException");

    // A gap between parts, an empty upload, a wrong digest, an unknown upload.
    let up = c
        .initiate_layer_upload()
        .repository_name("img")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let e = c
        .complete_layer_upload()
        .repository_name("img")
        .upload_id(id)
        .layer_digests(format!("sha256:{}", sha256_hex(b"")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "EmptyUploadException");
    let e = c
        .upload_layer_part()
        .repository_name("img")
        .upload_id(id)
        .part_first_byte(10)
        .part_last_byte(19)
        .layer_part_blob(Blob::new(vec![1u8; 10]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidLayerPartException");
    c.upload_layer_part()
        .repository_name("img")
        .upload_id(id)
        .part_first_byte(0)
        .part_last_byte(9)
        .layer_part_blob(Blob::new(vec![1u8; 10]))
        .send()
        .await
        .unwrap();
    let e = c
        .complete_layer_upload()
        .repository_name("img")
        .upload_id(id)
        .layer_digests(format!("sha256:{}", sha256_hex(b"something else")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidLayerException");
    let e = c
        .upload_layer_part()
        .repository_name("img")
        .upload_id("00000000-0000-4000-8000-000000000000")
        .part_first_byte(0)
        .part_last_byte(0)
        .layer_part_blob(Blob::new(vec![1u8]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UploadNotFoundException");
    // The same layer again: LayerAlreadyExistsException.
    let up = c
        .initiate_layer_upload()
        .repository_name("img")
        .send()
        .await
        .unwrap();
    c.upload_layer_part()
        .repository_name("img")
        .upload_id(up.upload_id().unwrap())
        .part_first_byte(0)
        .part_last_byte(big.len() as i64 - 1)
        .layer_part_blob(Blob::new(big.clone()))
        .send()
        .await
        .unwrap();
    let e = c
        .complete_layer_upload()
        .repository_name("img")
        .upload_id(up.upload_id().unwrap())
        .layer_digests(&big_digest)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "LayerAlreadyExistsException");

    // Availability and the download URL (usable without credentials, like ECR's pre-signed S3
    // URLs).
    let avail = c
        .batch_check_layer_availability()
        .repository_name("img")
        .layer_digests(&big_digest)
        .layer_digests(format!("sha256:{}", "0".repeat(64)))
        .layer_digests("not-a-digest")
        .send()
        .await
        .unwrap();
    assert_eq!(avail.layers().len(), 2);
    assert_eq!(avail.layers()[0].layer_size(), Some(big.len() as i64));
    assert_eq!(
        avail.layers()[1].layer_availability().unwrap().as_str(),
        "UNAVAILABLE"
    );
    assert_eq!(avail.failures().len(), 1);
    let url = c
        .get_download_url_for_layer()
        .repository_name("img")
        .layer_digest(&big_digest)
        .send()
        .await
        .unwrap();
    let got = client()
        .get(url.download_url().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().len(), big.len());
    // Its token reads that one layer and nothing else: not another blob, not as Basic
    // credentials on other routes, not for writes.
    let download = url.download_url().unwrap();
    let token = download.split_once("X-Berth-Token=").unwrap().1.to_owned();
    let base = format!("http://{}", server.addr);
    let other_blob = format!(
        "{base}/v2/img/blobs/sha256:{}?X-Berth-Token={token}",
        "0".repeat(64)
    );
    let r = client().get(&other_blob).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
    let r = client()
        .get(format!("{base}/v2/_catalog"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .post(format!("{base}/v2/img/blobs/uploads/"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .head(format!("{base}/v2/img/blobs/{big_digest}"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Images.
    let d1 = push_image(&c, "img", "v1", "one").await;
    let d2 = push_image(&c, "img", "v2", "two").await;
    let e = c
        .put_image()
        .repository_name("img")
        .image_manifest(manifest(b"{}", b"missing layer"))
        .image_tag("broken")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "LayersNotFoundException");
    let again = c
        .batch_get_image()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_tag("v1").build())
        .send()
        .await
        .unwrap();
    let raw = again.images()[0].image_manifest().unwrap().to_owned();
    let e = c
        .put_image()
        .repository_name("img")
        .image_manifest(&raw)
        .image_tag("v1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ImageAlreadyExistsException");
    let e = c
        .put_image()
        .repository_name("img")
        .image_manifest(&raw)
        .image_digest(&d2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ImageDigestDoesNotMatchException");
    // A second tag on the same manifest.
    c.put_image()
        .repository_name("img")
        .image_manifest(&raw)
        .image_tag("stable")
        .send()
        .await
        .unwrap();

    let described = c
        .describe_images()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_digest(&d1).build())
        .send()
        .await
        .unwrap();
    let detail = &described.image_details()[0];
    assert_eq!(detail.image_digest(), Some(d1.as_str()));
    assert_eq!(detail.image_tags(), ["stable", "v1"]);
    assert_eq!(detail.registry_id(), Some(REGISTRY_ID));
    assert!(detail.image_size_in_bytes().unwrap() > 0);
    assert!(detail.image_pushed_at().is_some());
    // BatchGetImage above was a pull.
    let pulled = detail
        .last_recorded_pull_time()
        .expect("lastRecordedPullTime");
    assert!(pulled.secs() >= detail.image_pushed_at().unwrap().secs());
    assert_eq!(
        detail.image_manifest_media_type(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let never_pulled = c
        .describe_images()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_digest(&d2).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        never_pulled.image_details()[0].last_recorded_pull_time(),
        None
    );
    let e = c
        .describe_images()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_tag("nope").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ImageNotFoundException");
    let page = c
        .describe_images()
        .repository_name("img")
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.image_details().len(), 1);
    assert!(page.next_token().is_some());

    let listed = c
        .list_images()
        .repository_name("img")
        .filter(
            aws_sdk_ecr::types::ListImagesFilter::builder()
                .tag_status(TagStatus::Tagged)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(listed.image_ids().len(), 3, "v1, stable, v2");

    // BatchGetImage reports failures per image instead of failing the call.
    let got = c
        .batch_get_image()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_tag("v2").build())
        .image_ids(ImageIdentifier::builder().image_tag("missing").build())
        .image_ids(
            ImageIdentifier::builder()
                .image_tag("v1")
                .image_digest(&d2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(got.images().len(), 1);
    assert_eq!(
        got.images()[0].image_id().unwrap().image_digest(),
        Some(d2.as_str())
    );
    let codes: Vec<&str> = got
        .failures()
        .iter()
        .map(|f| f.failure_code().unwrap().as_str())
        .collect();
    assert_eq!(codes, ["ImageNotFound", "ImageTagDoesNotMatchDigest"]);
    let none = c
        .batch_get_image()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_tag("v2").build())
        .accepted_media_types("application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .unwrap();
    assert!(none.images().is_empty());
    assert_eq!(none.failures().len(), 1);

    // BatchDeleteImage: a tag removes the tag; the image stays while another tag remains.
    let del = c
        .batch_delete_image()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_tag("stable").build())
        .send()
        .await
        .unwrap();
    assert_eq!(del.image_ids().len(), 1);
    let still = c
        .describe_images()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_digest(&d1).build())
        .send()
        .await
        .unwrap();
    assert_eq!(still.image_details()[0].image_tags(), ["v1"]);
    // The last tag takes the image with it.
    c.batch_delete_image()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_tag("v1").build())
        .send()
        .await
        .unwrap();
    let e = c
        .describe_images()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_digest(&d1).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ImageNotFoundException");
    // A digest removes the image and all its tags.
    let del = c
        .batch_delete_image()
        .repository_name("img")
        .image_ids(ImageIdentifier::builder().image_digest(&d2).build())
        .image_ids(ImageIdentifier::builder().image_digest(&d2).build())
        .send()
        .await
        .unwrap();
    assert_eq!(del.image_ids().len(), 1);
    assert_eq!(del.failures().len(), 1);
    assert_eq!(
        del.failures()[0].failure_code().unwrap().as_str(),
        "ImageNotFound"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_tags_are_refused_on_both_apis() {
    let (_dir, server) = start();
    let c = ecr(&server, ROOT_ID, ROOT_SECRET).await;
    c.create_repository()
        .repository_name("frozen")
        .image_tag_mutability(ImageTagMutability::Immutable)
        .send()
        .await
        .unwrap();
    push_image(&c, "frozen", "v1", "first").await;
    let config = br#"{"architecture":"amd64","os":"linux","seed":"second"}"#;
    let layer = b"another layer".repeat(10);
    upload_layer(&c, "frozen", config, 1 << 20).await;
    upload_layer(&c, "frozen", &layer, 1 << 20).await;
    let m = manifest(config, &layer);
    let e = c
        .put_image()
        .repository_name("frozen")
        .image_manifest(&m)
        .image_tag("v1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "ImageTagAlreadyExistsException");
    assert!(
        e.message().unwrap().contains("'v1'") && e.message().unwrap().contains("'frozen'"),
        "{:?}",
        e.message()
    );
    // The OCI path: a manifest PUT with a registry token as Basic auth.
    let token = c.get_authorization_token().send().await.unwrap();
    let data = &token.authorization_data()[0];
    assert_eq!(
        data.proxy_endpoint(),
        Some(format!("http://{}", server.addr).as_str())
    );
    let basic = format!("Basic {}", data.authorization_token().unwrap());
    let r = client()
        .put(server.url("/v2/frozen/manifests/v1"))
        .header("authorization", &basic)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("TAG_INVALID") && body.contains("'v1'") && body.contains("'frozen'"),
        "{body}"
    );
    // A new tag is fine; so is pushing the same content to the same tag again.
    let r = client()
        .put(server.url("/v2/frozen/manifests/v2"))
        .header("authorization", &basic)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_and_creation_templates() {
    let (_dir, server) = start();
    let c = ecr(&server, ROOT_ID, ROOT_SECRET).await;
    c.create_repository()
        .repository_name("pol")
        .send()
        .await
        .unwrap();
    let e = c
        .get_repository_policy()
        .repository_name("pol")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "RepositoryPolicyNotFoundException");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
    c.set_repository_policy()
        .repository_name("pol")
        .policy_text(policy)
        .send()
        .await
        .unwrap();
    let got = c
        .get_repository_policy()
        .repository_name("pol")
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy_text(), Some(policy));
    let e = c
        .set_repository_policy()
        .repository_name("pol")
        .policy_text(r#"{"Statement":[{"Effect":"Perhaps","Principal":"*","Action":"ecr:*"}]}"#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterException");
    let deleted = c
        .delete_repository_policy()
        .repository_name("pol")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.policy_text(), Some(policy));
    let e = c.get_registry_policy().send().await.unwrap_err();
    assert_eq!(code(&e), "RegistryPolicyNotFoundException");
    let reg_policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/nobody"},"Action":"ecr:*","Resource":"*"}]}"#;
    c.put_registry_policy()
        .policy_text(reg_policy)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get_registry_policy().send().await.unwrap().policy_text(),
        Some(reg_policy)
    );
    c.delete_registry_policy().send().await.unwrap();

    // Creation templates: a push (OCI API) to a missing repository fails, unless a
    // CREATE_ON_PUSH template covers its name.
    let token = c.get_authorization_token().send().await.unwrap();
    let basic = format!(
        "Basic {}",
        token.authorization_data()[0].authorization_token().unwrap()
    );
    let start = |repo: &str| {
        client()
            .post(server.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header("authorization", &basic)
            .send()
    };
    let r = start("auto/app").await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("NAME_UNKNOWN"));
    let t = c
        .create_repository_creation_template()
        .prefix("auto")
        .description("pushed repositories")
        .image_tag_mutability(ImageTagMutability::Immutable)
        .applied_for(RctAppliedFor::CreateOnPush)
        .resource_tags(Tag::builder().key("made").value("on-push").build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.repository_creation_template().unwrap().prefix(),
        Some("auto")
    );
    let e = c
        .create_repository_creation_template()
        .prefix("auto")
        .applied_for(RctAppliedFor::CreateOnPush)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "TemplateAlreadyExistsException");
    // Creating on push needs ecr:CreateRepository as well as the push actions, on both APIs.
    let (id, secret) = user(
        &server,
        "pusher",
        Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage","ecr:GetAuthorizationToken"],"Resource":"*"}]}"#,
        ),
    );
    let pusher = ecr(&server, &id, &secret).await;
    let e = pusher
        .initiate_layer_upload()
        .repository_name("auto/pusher")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException");
    assert!(
        e.message().unwrap().contains("ecr:CreateRepository"),
        "{e:?}"
    );
    let pusher_token = pusher.get_authorization_token().send().await.unwrap();
    let r = client()
        .post(server.url("/v2/auto/pusher/blobs/uploads/"))
        .header(
            "authorization",
            format!(
                "Basic {}",
                pusher_token.authorization_data()[0]
                    .authorization_token()
                    .unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        c.describe_repositories()
            .repository_names("auto/pusher")
            .send()
            .await
            .is_err()
    );
    let r = start("auto/app").await.unwrap();
    assert_eq!(r.status(), 202);
    let described = c
        .describe_repositories()
        .repository_names("auto/app")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.repositories()[0].image_tag_mutability(),
        Some(&ImageTagMutability::Immutable)
    );
    let tags = c
        .list_tags_for_resource()
        .resource_arn("arn:aws:ecr:us-east-1:123456789012:repository/auto/app")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), "made");
    let updated = c
        .update_repository_creation_template()
        .prefix("auto")
        .description("changed")
        .send()
        .await
        .unwrap();
    let tpl = updated.repository_creation_template().unwrap();
    assert_eq!(tpl.description(), Some("changed"));
    assert_eq!(
        tpl.image_tag_mutability(),
        Some(&ImageTagMutability::Immutable),
        "an update keeps what it does not name"
    );
    let listed = c
        .describe_repository_creation_templates()
        .send()
        .await
        .unwrap();
    assert_eq!(listed.repository_creation_templates().len(), 1);
    c.delete_repository_creation_template()
        .prefix("auto")
        .send()
        .await
        .unwrap();
    let e = c
        .delete_repository_creation_template()
        .prefix("auto")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "TemplateNotFoundException");
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_and_identities_are_checked() {
    let (_dir, server) = start();
    let e = ecr(&server, ROOT_ID, "not-the-secret")
        .await
        .describe_registry()
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidSignatureException");
    let e = ecr(&server, "AKIAUNKNOWNUNKNOWN00", "whatever")
        .await
        .describe_registry()
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnrecognizedClientException");
    // Signed for another region than the server's.
    let e = ecr_in(&server, ROOT_ID, ROOT_SECRET, "eu-west-1")
        .describe_registry()
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidSignatureException");
    assert_eq!(
        e.message(),
        Some("Credential should be scoped to a valid region, not 'eu-west-1'.")
    );
    let (id, secret) = user(&server, "nobody", None);
    let nobody = ecr(&server, &id, &secret).await;
    let e = nobody
        .create_repository()
        .repository_name("x1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException");
    assert!(
        e.message()
            .unwrap()
            .contains("arn:aws:iam::123456789012:user/nobody"),
        "{:?}",
        e.message()
    );
    // Deleting the key: the SDK is refused at once.
    admin(&server, &["key", "rm", &id]);
    let e = nobody.describe_registry().send().await.unwrap_err();
    assert_eq!(code(&e), "UnrecognizedClientException");
    // A lost master key is never silently replaced while secrets are sealed under it.
    let key_file = server.data.join("master.key");
    let kept = server.data.join("master.key.kept");
    std::fs::rename(&key_file, &kept).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("admin")
        .arg("--data")
        .arg(&server.data)
        .args(["key", "create", "nobody"])
        .env_remove("BERTH_MASTER_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key file"), "{stderr}");
    assert!(!key_file.exists());
    std::fs::rename(&kept, &key_file).unwrap();
}

/// A raw, SigV4-signed ECR call (for bodies the SDK would never send).
async fn raw_call(
    server: &Server,
    target: &str,
    body: Vec<u8>,
    at: std::time::SystemTime,
) -> (u16, serde_json::Value) {
    let url = format!("http://{}/", server.addr);
    let mut builder = client().post(&url);
    for (k, v) in common::ecr_signed_headers(&server.addr, ROOT_ID, ROOT_SECRET, target, &body, at)
        .into_iter()
        .filter(|(k, _)| k != "host")
    {
        builder = builder.header(k, v);
    }
    let r = builder.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let value = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, value)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_exception_and_changes_nothing() {
    let (_dir, server) = start();
    let now = std::time::SystemTime::now();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "CreateRepository",
            b"{not json".to_vec(),
            "SerializationException",
        ),
        (
            "CreateRepository",
            br#"{"repositoryName": 42}"#.to_vec(),
            "SerializationException",
        ),
        (
            "CreateRepository",
            b"{}".to_vec(),
            "InvalidParameterException",
        ),
        (
            "CreateRepository",
            br#"{"repositoryName":"ok-name","imageTagMutability":"SOMETIMES"}"#.to_vec(),
            "InvalidParameterException",
        ),
        (
            "DescribeRepositories",
            br#"{"maxResults":"many"}"#.to_vec(),
            "SerializationException",
        ),
        ("LaunchRockets", b"{}".to_vec(), "UnknownOperationException"),
        (
            "CreateRepository",
            format!(
                r#"{{"repositoryName":"big","tags":[{{"Key":"k","Value":"{}"}}]}}"#,
                "v".repeat(2 << 20)
            )
            .into_bytes(),
            "InvalidParameterException",
        ),
        (
            "CreateRepository",
            format!(
                r#"{{"repositoryName":"deep","x":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )
            .into_bytes(),
            "SerializationException",
        ),
    ];
    for (target, body, want) in cases {
        let (status, v) = raw_call(&server, target, body, now).await;
        assert_eq!(status, 400, "{target}: {v}");
        assert_eq!(v["__type"], want, "{target}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // Stale and future signatures.
    for skew in [-20i64 * 60, 20 * 60] {
        let at = if skew < 0 {
            now - std::time::Duration::from_secs(skew.unsigned_abs())
        } else {
            now + std::time::Duration::from_secs(skew.unsigned_abs())
        };
        let (status, v) = raw_call(
            &server,
            "CreateRepository",
            br#"{"repositoryName":"late"}"#.to_vec(),
            at,
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(v["__type"], "InvalidSignatureException", "{v}");
        let want = if skew < 0 {
            "Signature expired"
        } else {
            "Signature not yet current"
        };
        assert!(v["message"].as_str().unwrap().contains(want), "{v}");
    }
    // An unsigned call.
    let r = client()
        .post(server.url("/"))
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.DescribeRegistry",
        )
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["__type"], "MissingAuthenticationTokenException");
    // Nothing was created by any of it.
    let c = ecr(&server, ROOT_ID, ROOT_SECRET).await;
    let all = c.describe_repositories().send().await.unwrap();
    assert!(all.repositories().is_empty(), "{:?}", all.repositories());
}

/// Basic auth for `/v2/` from a user's GetAuthorizationToken.
async fn basic_for(server: &Server, id: &str, secret: &str) -> String {
    let c = ecr(server, id, secret).await;
    let t = c.get_authorization_token().send().await.unwrap();
    let token = t.authorization_data()[0].authorization_token().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .unwrap();
    assert!(decoded.starts_with(b"AWS:"));
    format!("Basic {token}")
}

async fn v2_status(server: &Server, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let mut r = client().request(method.parse().unwrap(), server.url(path));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_matrix_guards_the_oci_api() {
    let (_dir, server) = start();
    let root = ecr(&server, ROOT_ID, ROOT_SECRET).await;
    for r in ["shared", "public", "locked"] {
        root.create_repository()
            .repository_name(r)
            .send()
            .await
            .unwrap();
        push_image(&root, r, "v1", r).await;
    }
    let reader_policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["ecr:GetAuthorizationToken"],"Resource":"*"},
        {"Effect":"Allow","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability","ecr:DescribeImages"],"Resource":"arn:aws:ecr:us-east-1:123456789012:repository/*"},
        {"Effect":"Deny","Action":"ecr:*","Resource":"arn:aws:ecr:us-east-1:123456789012:repository/locked"}]}"#;
    let (rid, rsecret) = user(&server, "reader", Some(reader_policy));
    let login_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#;
    let (wid, wsecret) = user(&server, "writer", Some(login_only));
    let reader = basic_for(&server, &rid, &rsecret).await;
    let writer = basic_for(&server, &wid, &wsecret).await;

    // A read-only user pulls and cannot push.
    assert_eq!(
        v2_status(&server, "GET", "/v2/shared/manifests/v1", Some(&reader)).await,
        200
    );
    assert_eq!(
        v2_status(&server, "POST", "/v2/shared/blobs/uploads/", Some(&reader)).await,
        403
    );
    // An explicit deny beats the allow.
    assert_eq!(
        v2_status(&server, "GET", "/v2/locked/manifests/v1", Some(&reader)).await,
        403
    );
    // A repository policy granting another user push works.
    assert_eq!(
        v2_status(&server, "POST", "/v2/shared/blobs/uploads/", Some(&writer)).await,
        403
    );
    // One OCI request doing several ECR steps needs each step's action: starting an upload
    // is allowed, a POST that uploads and completes a layer at once is not.
    root.set_repository_policy()
        .repository_name("shared")
        .policy_text(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/writer"},"Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart"]}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2_status(&server, "POST", "/v2/shared/blobs/uploads/", Some(&writer)).await,
        202
    );
    let empty = format!("sha256:{}", sha256_hex(b""));
    assert_eq!(
        v2_status(
            &server,
            "POST",
            &format!("/v2/shared/blobs/uploads/?digest={empty}"),
            Some(&writer)
        )
        .await,
        403
    );
    root.set_repository_policy()
        .repository_name("shared")
        .policy_text(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/writer"},"Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage","ecr:BatchCheckLayerAvailability"]}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2_status(&server, "POST", "/v2/shared/blobs/uploads/", Some(&writer)).await,
        202
    );
    // A repository policy's explicit deny beats the reader's identity allow.
    root.set_repository_policy()
        .repository_name("locked")
        .policy_text(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:BatchGetImage"}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2_status(&server, "GET", "/v2/locked/manifests/v1", Some(&writer)).await,
        403
    );
    // Anonymous pull only where a policy allows "*".
    assert_eq!(
        v2_status(&server, "GET", "/v2/public/manifests/v1", None).await,
        401
    );
    root.set_repository_policy()
        .repository_name("public")
        .policy_text(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2_status(&server, "GET", "/v2/public/manifests/v1", None).await,
        200
    );
    assert_eq!(
        v2_status(&server, "GET", "/v2/shared/manifests/v1", None).await,
        401
    );
    assert_eq!(
        v2_status(&server, "POST", "/v2/public/blobs/uploads/", None).await,
        401
    );
    let r = client()
        .get(server.url("/v2/shared/manifests/v1"))
        .send()
        .await
        .unwrap();
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    // Deleting a key revokes the tokens issued for it.
    admin(&server, &["key", "rm", &rid]);
    assert_eq!(
        v2_status(&server, "GET", "/v2/shared/manifests/v1", Some(&reader)).await,
        401
    );
    // An access key id and secret work as Basic credentials too (podman login without the
    // AWS CLI).
    let direct = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ROOT_ID}:{ROOT_SECRET}"))
    );
    assert_eq!(v2_status(&server, "GET", "/v2/", Some(&direct)).await, 200);
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ROOT_ID}:nope"))
    );
    assert_eq!(v2_status(&server, "GET", "/v2/", Some(&wrong)).await, 401);
}
