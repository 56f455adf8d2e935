//! More misbehaving registries: bodies cut short, lying `Content-Length`s, a blob redirected to
//! another host (our `Authorization` must not follow), and a bearer token service that checks
//! the scopes and credentials it is asked for.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_client::ClientError;
use berth_client::auth::Credentials;
use berth_client::image::{ImageSink, ImageSource};
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_oci::{Digest, ImageRef};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLOB: &[u8] = b"the twenty-two bytes!!";

fn image(host: &str, creds: Option<Credentials>) -> RegistryImage {
    let r = ImageRef::parse(&format!("{host}/h:latest")).unwrap();
    let client = RegistryClient::new(r.registry(), creds, &[]).unwrap();
    RegistryImage::new(Arc::new(client), &r)
}

/// A server that answers every connection with `response` verbatim, then closes it.
async fn raw_server(response: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

async fn drain(image: &RegistryImage, digest: &Digest, size: u64) -> Result<Vec<u8>, ClientError> {
    let mut s = image.blob(digest, size).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn a_truncated_body_is_an_error_not_a_short_blob() {
    let mut resp =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BLOB.len()).into_bytes();
    resp.extend_from_slice(&BLOB[..10]); // then the connection closes
    let host = raw_server(resp).await;
    let digest = Digest::sha256(BLOB);
    let err = drain(&image(&host, None), &digest, BLOB.len() as u64)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Http(_) | ClientError::SizeMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_content_length_that_disagrees_with_the_descriptor_is_refused() {
    // The registry declares (and sends) fewer bytes than the descriptor says the blob has.
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec();
    resp.extend_from_slice(BLOB);
    let host = raw_server(resp).await;
    let digest = Digest::sha256(BLOB);
    let err = drain(&image(&host, None), &digest, BLOB.len() as u64)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::SizeMismatch {
                expected: 22,
                actual: 10,
                ..
            }
        ),
        "{err:?}"
    );
    // More bytes than the descriptor: refused as soon as they exceed it.
    let long = [BLOB, b"and more"].concat();
    let mut resp =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", long.len()).into_bytes();
    resp.extend_from_slice(&long);
    let host = raw_server(resp).await;
    let err = drain(&image(&host, None), &digest, BLOB.len() as u64)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::SizeMismatch { .. }), "{err:?}");
}

#[derive(Default)]
struct Seen {
    /// Authorization headers the second host received.
    cdn_auth: Vec<Option<String>>,
    token_queries: Vec<HashMap<String, Vec<String>>>,
    token_auth: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Seen>>;

fn auth_of(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_redirected_blob_does_not_carry_our_credentials() {
    let seen: Shared = Arc::default();
    // The "CDN": another host (localhost, not 127.0.0.1) serving the blob.
    let cdn = Router::new()
        .route(
            "/blob",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                s.lock().unwrap().cdn_auth.push(auth_of(&h));
                BLOB.to_vec()
            }),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cdn_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, cdn).await.unwrap() });
    // The registry: Basic auth required, blobs redirected to the CDN.
    let registry = Router::new().route(
        "/v2/h/blobs/{digest}",
        get(move |h: HeaderMap| async move {
            if auth_of(&h).is_none() {
                return (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", "Basic realm=\"r\"")],
                )
                    .into_response();
            }
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("http://localhost:{cdn_port}/blob"))],
            )
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, registry).await.unwrap() });

    let creds = Credentials::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let got = drain(&image(&host, Some(creds)), &Digest::sha256(BLOB), 22)
        .await
        .unwrap();
    assert_eq!(got, BLOB);
    assert_eq!(
        seen.lock().unwrap().cdn_auth,
        vec![None],
        "Authorization followed the redirect"
    );
}

async fn token(
    State(s): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
    h: HeaderMap,
) -> Response {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in q {
        map.entry(k).or_default().push(v);
    }
    let mut s = s.lock().unwrap();
    s.token_queries.push(map.clone());
    s.token_auth.push(auth_of(&h));
    let basic = format!("Basic {}", base64_encode(b"alice:wonderland"));
    if auth_of(&h).as_deref() != Some(basic.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let scopes = map.get("scope").cloned().unwrap_or_default().join(" ");
    (
        [("content-type", "application/json")],
        serde_json::json!({"token": format!("T[{scopes}]")}).to_string(),
    )
        .into_response()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn bearer_tokens_are_asked_for_the_right_scopes() {
    let seen: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let realm = format!("http://{host}/token");
    let realm2 = realm.clone();
    let app = Router::new()
        .route("/token", get(token))
        .route(
            "/v2/h/blobs/{digest}",
            get(move |h: HeaderMap| async move {
                match auth_of(&h).as_deref() {
                    Some("Bearer T[repository:h:pull]") => BLOB.to_vec().into_response(),
                    _ => (
                        StatusCode::UNAUTHORIZED,
                        [(
                            "www-authenticate",
                            format!(
                                "Bearer realm=\"{realm}\",service=\"registry.test\",scope=\"repository:h:pull\""
                            ),
                        )],
                    )
                        .into_response(),
                }
            })
            .head(move |h: HeaderMap| async move {
                // A push-side existence check needs pull and push.
                match auth_of(&h).as_deref() {
                    Some("Bearer T[repository:h:pull,push]") => {
                        ([("content-length", "22")], "").into_response()
                    }
                    _ => (
                        StatusCode::UNAUTHORIZED,
                        [(
                            "www-authenticate",
                            format!("Bearer realm=\"{realm2}\",service=\"registry.test\""),
                        )],
                    )
                        .into_response(),
                }
            }),
        )
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let creds = Credentials::Basic {
        username: "alice".into(),
        password: "wonderland".into(),
    };
    let img = image(&host, Some(creds));
    let got = drain(&img, &Digest::sha256(BLOB), 22).await.unwrap();
    assert_eq!(got, BLOB);
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.token_queries.len(), 1);
        assert_eq!(s.token_queries[0]["scope"], ["repository:h:pull"]);
        assert_eq!(s.token_queries[0]["service"], ["registry.test"]);
        assert!(s.token_auth[0].as_deref().unwrap().starts_with("Basic "));
    }
    // The token is reused for the same scope: no second token request.
    drain(&img, &Digest::sha256(BLOB), 22).await.unwrap();
    assert_eq!(seen.lock().unwrap().token_queries.len(), 1);

    // Wrong credentials: a clear Unauthorized error naming the token endpoint.
    let bad = image(
        &host,
        Some(Credentials::Basic {
            username: "alice".into(),
            password: "nope".into(),
        }),
    );
    let err = drain(&bad, &Digest::sha256(BLOB), 22).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Unauthorized(m) if m.contains("/token")),
        "{err:?}"
    );
    // A push-side check asks for pull and push on the repository.
    assert!(img.has_blob(&Digest::sha256(BLOB), 22).await.unwrap());
    let s = seen.lock().unwrap();
    assert_eq!(
        s.token_queries.last().unwrap()["scope"],
        ["repository:h:pull,push"]
    );
}

#[tokio::test]
async fn manifest_requests_are_retried_after_503_and_429() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let hits = Arc::new(Mutex::new(0usize));
    let h = Arc::clone(&hits);
    let app = Router::new().route(
        "/v2/h/manifests/latest",
        get(move || {
            let h = Arc::clone(&h);
            async move {
                let mut n = h.lock().unwrap();
                *n += 1;
                match *n {
                    1 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    2 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response(),
                    _ => (
                        [("content-type", "application/vnd.oci.image.manifest.v1+json")],
                        manifest.to_vec(),
                    )
                        .into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let m = image(&host, None).root().await.unwrap();
    assert_eq!(m.digest, Digest::sha256(manifest));
    assert_eq!(*hits.lock().unwrap(), 3);
}

#[tokio::test]
async fn an_immutable_tag_is_refused_by_name_and_an_identical_repush_succeeds() {
    use berth_client::image::{Placement, RawManifest};
    let ours = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let ours_digest = Digest::sha256(ours);
    let other = Digest::sha256(b"another image");
    let puts = Arc::new(Mutex::new(0usize));
    let p = Arc::clone(&puts);
    let (od, td) = (ours_digest.to_string(), other.to_string());
    // ECR's data plane: `same` already holds our manifest, `taken` another one; tags are immutable.
    let app = Router::new().route(
        "/v2/h/manifests/{tag}",
        axum::routing::head(move |axum::extract::Path(tag): axum::extract::Path<String>| {
            let (od, td) = (od.clone(), td.clone());
            async move {
                let d = if tag == "same" { od } else { td };
                ([("docker-content-digest", d)], "").into_response()
            }
        })
        .put(move || {
            let p = Arc::clone(&p);
            async move {
                *p.lock().unwrap() += 1;
                (
                    StatusCode::BAD_REQUEST,
                    r#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'taken' already exists in the 'h' repository and cannot be overwritten because the repository is immutable."}]}"#,
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let img = image(&host, None);
    let m = RawManifest::verified(
        axum::body::Bytes::from_static(ours),
        "application/vnd.oci.image.manifest.v1+json",
        &ours_digest,
    )
    .unwrap();
    let same = berth_oci::Tag::parse("same").unwrap();
    img.put_manifest(&m, Placement::Root { tag: Some(&same) })
        .await
        .unwrap();
    assert_eq!(
        *puts.lock().unwrap(),
        0,
        "an identical re-push sends nothing"
    );
    let taken = berth_oci::Tag::parse("taken").unwrap();
    let err = img
        .put_manifest(&m, Placement::Root { tag: Some(&taken) })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ClientError::TagImmutable { tag, .. } if tag == "taken"),
        "{err:?}"
    );
    assert!(
        text.contains("\"taken\"") && text.contains(&format!("{host}/h")),
        "{text}"
    );
}
