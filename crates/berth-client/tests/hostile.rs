//! An in-process registry that misbehaves on purpose: the client must wait out a 429 as told,
//! resume a chunked upload after a 500 from where the registry says it is (not restart it), and
//! refuse content whose digest does not match.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use berth_client::ClientError;
use berth_client::image::{ImageSink, ImageSource};
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_oci::{Digest, ImageRef};
use futures::StreamExt;

#[derive(Default)]
struct Hostile {
    posts: usize,
    patches: Vec<(u64, usize)>,
    staged: Vec<u8>,
    fail_patch: Option<usize>,
    blob: Vec<u8>,
}

type Shared = Arc<Mutex<Hostile>>;

async fn handle(State(st): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let headers: HeaderMap = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut s = st.lock().unwrap();
    match (method.as_str(), path.as_str()) {
        ("POST", "/v2/h/blobs/uploads/") => {
            s.posts += 1;
            if s.posts == 1 {
                return (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "1")]).into_response();
            }
            (
                StatusCode::ACCEPTED,
                [("Location", "/v2/h/blobs/uploads/u1")],
            )
                .into_response()
        }
        ("PATCH", "/v2/h/blobs/uploads/u1") => {
            let range = headers["content-range"].to_str().unwrap();
            let start: u64 = range.split('-').next().unwrap().parse().unwrap();
            if start != s.staged.len() as u64 {
                return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            }
            s.patches.push((start, body.len()));
            if s.fail_patch == Some(s.patches.len()) {
                // Half of the chunk arrived, then the server fell over.
                let half = body.len() / 2;
                s.staged.extend_from_slice(&body[..half]);
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            s.staged.extend_from_slice(&body);
            let end = s.staged.len().saturating_sub(1);
            (
                StatusCode::ACCEPTED,
                [
                    ("Location", "/v2/h/blobs/uploads/u1".to_owned()),
                    ("Range", format!("0-{end}")),
                ],
            )
                .into_response()
        }
        ("GET", "/v2/h/blobs/uploads/u1") => {
            let end = s.staged.len().saturating_sub(1);
            (StatusCode::NO_CONTENT, [("Range", format!("0-{end}"))]).into_response()
        }
        ("PUT", "/v2/h/blobs/uploads/u1") => {
            s.staged.extend_from_slice(&body);
            let want = query.strip_prefix("digest=").unwrap();
            if Digest::sha256(&s.staged).to_string() == want {
                StatusCode::CREATED.into_response()
            } else {
                StatusCode::BAD_REQUEST.into_response()
            }
        }
        ("GET", p) if p.starts_with("/v2/h/blobs/") => Response::new(Body::from(s.blob.clone())),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(state: Shared) -> String {
    let app = Router::new()
        .route("/{*rest}", any(handle))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

fn image(addr: &str) -> RegistryImage {
    let r = ImageRef::parse(&format!("{addr}/h:latest")).unwrap();
    let client = RegistryClient::new(r.registry(), None, &[]).unwrap();
    RegistryImage::new(Arc::new(client), &r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_out_429_and_resumes_a_chunk_after_a_500() {
    let state: Shared = Arc::new(Mutex::new(Hostile {
        fail_patch: Some(2),
        ..Hostile::default()
    }));
    let addr = serve(Arc::clone(&state)).await;
    let data: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256(&data);
    let frames: Vec<Result<Bytes, ClientError>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let started = std::time::Instant::now();
    image(&addr)
        .put_blob(
            &digest,
            data.len() as u64,
            futures::stream::iter(frames).boxed(),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    let s = state.lock().unwrap();
    assert_eq!(
        s.posts, 2,
        "one 429, one session: the upload never restarted"
    );
    assert_eq!(s.staged, data);
    let chunk = 16usize << 20;
    assert_eq!(
        s.patches,
        vec![
            (0, chunk),
            (chunk as u64, chunk),                   // failed halfway
            ((chunk + chunk / 2) as u64, chunk / 2), // resumed from the registry's Range
            ((2 * chunk) as u64, data.len() - 2 * chunk),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_blob_whose_digest_does_not_match() {
    let state: Shared = Arc::new(Mutex::new(Hostile {
        blob: b"not what you asked for".to_vec(),
        ..Hostile::default()
    }));
    let addr = serve(state).await;
    let asked = Digest::sha256(b"what you asked for!!!!");
    let mut s = image(&addr).blob(&asked, 22).await.unwrap();
    let mut err = None;
    while let Some(item) = s.next().await {
        if let Err(e) = item {
            err = Some(e);
        }
    }
    assert!(
        matches!(err, Some(ClientError::DigestMismatch { .. })),
        "{err:?}"
    );
}
