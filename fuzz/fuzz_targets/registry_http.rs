//! The registry's HTTP surface in process (`berth_registry::router` over a real SQLite and
//! filesystem store, authentication off): arbitrary `/v2/` paths, methods, query strings and
//! bodies (the route parser, name/reference validation, upload and manifest handlers), and
//! arbitrary ECR API calls (`X-Amz-Target` and JSON body: request decoding and every action's
//! validation). Nothing panics; every answer is a well-formed error or success.

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use berth_registry::{Registry, RegistryConfig, router};
use berth_store::{Durability, FsBlobStore, SqliteMeta};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

const ACTIONS: &[&str] = &[
    "GetAuthorizationToken", "CreateRepository", "DescribeRepositories", "DeleteRepository",
    "DescribeImages", "ListImages", "BatchGetImage", "BatchDeleteImage", "PutImage",
    "BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart",
    "CompleteLayerUpload", "GetDownloadUrlForLayer", "PutImageTagMutability",
    "PutImageScanningConfiguration", "TagResource", "UntagResource", "ListTagsForResource",
    "DescribeRegistry", "SetRepositoryPolicy", "GetRepositoryPolicy", "DeleteRepositoryPolicy",
    "PutRegistryPolicy", "GetRegistryPolicy", "DeleteRegistryPolicy",
    "CreateRepositoryCreationTemplate", "UpdateRepositoryCreationTemplate",
    "DescribeRepositoryCreationTemplates", "DeleteRepositoryCreationTemplate", "Unknown",
];

const METHODS: &[Method] = &[Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::PATCH, Method::DELETE];

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let blobs = FsBlobStore::open(dir.path()).expect("blob store");
        let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), Durability::Normal).expect("db"));
        let key = berth_iam::keys::MasterKey::generate();
        let registry = Registry::new(
            Arc::new(blobs),
            Arc::clone(&meta) as Arc<dyn berth_store::MetadataStore>,
            meta,
            &key,
            RegistryConfig::default(),
        );
        World { rt, app: router(registry), _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let req = if selector & 0x80 == 0 {
        // ECR: the selector names the action, the rest is the body.
        let action = ACTIONS[usize::from(selector) % ACTIONS.len()];
        Request::post("/")
            .header("x-amz-target", format!("AmazonEC2ContainerRegistry_V20150921.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .body(Body::from(rest.to_vec()))
    } else {
        // /v2/: the first line is the path and query, the rest the body.
        let method = METHODS[usize::from(selector) % METHODS.len()].clone();
        let (line, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let Ok(path) = std::str::from_utf8(line) else {
            return;
        };
        let builder = Request::builder().method(method).uri(format!("/v2/{path}"));
        let builder = if selector & 0x40 == 0 {
            builder.header("content-type", "application/vnd.oci.image.manifest.v1+json")
        } else {
            builder
        };
        builder.body(Body::from(body.to_vec()))
    };
    let Ok(req) = req else {
        return;
    };
    let resp = w.rt.block_on(w.app.clone().oneshot(req)).expect("infallible");
    assert!(resp.status().as_u16() < 500 || resp.status().as_u16() == 501, "{}", resp.status());
});
