//! Drives the registry either in-process (router `oneshot`) or over a real loopback socket, so
//! every protocol scenario runs both ways.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use berth_oci::Digest;
use berth_registry::{Registry, RegistryConfig, router};
use berth_store::{Durability, FsBlobStore, PgMeta, S3BlobStore, S3Options, SqliteMeta};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The OCI error code of an error response.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("<no error code>")
            .to_owned()
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(
            self.code(),
            code,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

pub enum Mode {
    InProcess(Router),
    Socket {
        base: String,
        client: reqwest::Client,
        task: tokio::task::JoinHandle<()>,
    },
}

pub struct Harness {
    pub mode: Mode,
    pub dir: tempfile::TempDir,
    /// The scaled backends of a `scaled` or `balanced` harness, kept alive with it, and its
    /// blob store.
    scaled: Option<(Arc<seaweed::Seaweed>, pg::Database, Arc<S3BlobStore>)>,
    /// The load balancer of a `balanced` harness and the replicas behind it.
    balanced: Option<(haproxy::Haproxy, Vec<tokio::task::JoinHandle<()>>)>,
}

#[path = "../../../berth-bench/src/haproxy.rs"]
mod haproxy;

#[path = "../../../berth-bench/src/seaweed.rs"]
mod seaweed;

#[path = "../../../berth-store/tests/common/pg.rs"]
mod pg;

/// SeaweedFS's `weed`: `BERTH_WEED`, else the venv `scripts/test.sh` makes.
fn weed() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_WEED") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/weed-venv/bin/weed")
}

pub fn open_registry(dir: &Path, config: RegistryConfig) -> Registry {
    let blobs = FsBlobStore::open(dir).unwrap();
    let meta = Arc::new(SqliteMeta::open(dir.join("meta.db"), Durability::Normal).unwrap());
    let key = berth_iam::keys::MasterKey::generate();
    Registry::new(
        Arc::new(blobs),
        Arc::clone(&meta) as Arc<dyn berth_store::MetadataStore>,
        meta,
        &key,
        config,
    )
}

impl Harness {
    /// An in-process harness over a router built elsewhere, keeping `dir`.
    pub fn from_router(app: Router, dir: tempfile::TempDir) -> Self {
        Harness {
            mode: Mode::InProcess(app),
            dir,
            scaled: None,
            balanced: None,
        }
    }

    pub async fn in_process() -> Self {
        Self::in_process_with(RegistryConfig::default()).await
    }

    pub async fn in_process_with(config: RegistryConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let reg = open_registry(dir.path(), config);
        Harness {
            mode: Mode::InProcess(router(reg)),
            dir,
            scaled: None,
            balanced: None,
        }
    }

    pub async fn socket() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let reg = open_registry(dir.path(), RegistryConfig::default());
        Self::serve(reg, dir, None).await
    }

    /// Serves `reg` on a loopback port.
    async fn serve(
        reg: Registry,
        dir: tempfile::TempDir,
        scaled: Option<(Arc<seaweed::Seaweed>, pg::Database, Arc<S3BlobStore>)>,
    ) -> Self {
        let (addr, task) = listen(reg).await;
        Harness {
            mode: Mode::Socket {
                base: format!("http://{addr}"),
                client: reqwest::Client::builder().no_proxy().build().unwrap(),
                task,
            },
            dir,
            scaled,
            balanced: None,
        }
    }

    /// Over a real socket on the scaled backends: blobs in SeaweedFS (S3, 5 MiB parts),
    /// metadata in PostgreSQL.
    pub async fn scaled() -> Self {
        Self::scaled_on(Arc::new(start_weed())).await
    }

    async fn scaled_on(weed: Arc<seaweed::Seaweed>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = pg::database();
        let key = berth_iam::keys::MasterKey::generate();
        let (reg, blobs) = scaled_registry(&weed, "registry", &db.url, &key).await;
        Self::serve(reg, dir, Some((weed, db, blobs))).await
    }

    /// Three replicas on the scaled backends (one bucket prefix, one database, one master key)
    /// behind HAProxy in round robin: consecutive requests of one upload land on different
    /// replicas.
    pub async fn balanced_on(weed: Arc<seaweed::Seaweed>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = pg::database();
        let key = berth_iam::keys::MasterKey::generate();
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        let mut first = None;
        for _ in 0..3 {
            let (reg, blobs) = scaled_registry(&weed, "balanced", &db.url, &key).await;
            first.get_or_insert(blobs);
            let (addr, task) = listen(reg).await;
            addrs.push(addr.to_string());
            tasks.push(task);
        }
        let lb = haproxy::Haproxy::start(&addrs).unwrap_or_else(|e| panic!("{e}"));
        Harness {
            mode: Mode::Socket {
                base: format!("http://{}", lb.addr),
                // One request per connection: HAProxy then spreads requests one by one.
                client: reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap(),
                task: tokio::spawn(async {}),
            },
            dir,
            scaled: Some((weed, db, first.unwrap())),
            balanced: Some((lb, tasks)),
        }
    }

    /// Every mode, for scenarios that must behave the same either way: in-process and over a
    /// socket on the embedded backends, over a socket on S3 + PostgreSQL, and through HAProxy
    /// to three replicas on S3 + PostgreSQL.
    pub async fn both() -> Vec<Self> {
        let weed = Arc::new(start_weed());
        vec![
            Self::in_process().await,
            Self::socket().await,
            Self::scaled_on(Arc::clone(&weed)).await,
            Self::balanced_on(weed).await,
        ]
    }

    /// The in-process router, for requests the helpers cannot express (streamed bodies).
    pub fn router(&self) -> Router {
        match &self.mode {
            Mode::InProcess(r) => r.clone(),
            Mode::Socket { .. } => panic!("router() needs an in-process harness"),
        }
    }

    pub fn name(&self) -> &'static str {
        match (&self.mode, &self.scaled) {
            (Mode::InProcess(_), _) => "in-process",
            (Mode::Socket { .. }, None) => "socket",
            (Mode::Socket { .. }, Some(_)) if self.balanced.is_some() => {
                "3 replicas behind haproxy"
            }
            (Mode::Socket { .. }, Some(_)) => "s3+postgres",
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub async fn req(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Resp {
        let body = body.into();
        match &self.mode {
            Mode::InProcess(r) => {
                let mut b = Request::builder().method(method).uri(path);
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                let resp = r
                    .clone()
                    .oneshot(b.body(Body::from(body)).unwrap())
                    .await
                    .unwrap();
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec();
                Resp {
                    status,
                    headers,
                    body,
                }
            }
            Mode::Socket { base, client, .. } => {
                let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
                let mut b = client.request(m, format!("{base}{path}"));
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                let resp = b.body(body).send().await.unwrap();
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                let mut headers = HeaderMap::new();
                for (k, v) in resp.headers() {
                    headers.insert(
                        axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                        axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                    );
                }
                let body = resp.bytes().await.unwrap().to_vec();
                Resp {
                    status,
                    headers,
                    body,
                }
            }
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, &[], Vec::new()).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.req(Method::HEAD, path, &[], Vec::new()).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, &[], Vec::new()).await
    }

    /// Opens an upload session at `path` (`/v2/<name>/blobs/uploads/`); returns its Location.
    pub async fn start_upload(&self, path: &str) -> String {
        let r = self.req(Method::POST, path, &[], Vec::new()).await;
        r.expect(202);
        r.header("location").unwrap().to_owned()
    }

    /// Pushes a blob monolithically and returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256(data);
        self.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        )
        .await
        .expect(201);
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Resp {
        self.req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes,
        )
        .await
    }

    /// Every file under the data directory except the SQLite files, with sizes.
    /// What the blob store holds, as the filesystem store lays it out: `blobs/<alg>/<2 hex>/<hex>`
    /// with sizes, and `uploads/<id>` (size 0 in an object store) for staged uploads.
    pub async fn files(&self) -> Vec<(String, u64)> {
        use berth_store::BlobStore as _;
        let mut out = Vec::new();
        if let Some((_, _, blobs)) = &self.scaled {
            for (d, _) in blobs.list().await.unwrap() {
                let size = blobs.stat(&d).await.unwrap().unwrap_or(0);
                let hex = d.hex();
                out.push((
                    format!("blobs/{}/{}/{hex}", d.algorithm().as_str(), &hex[..2]),
                    size,
                ));
            }
            for id in blobs.upload_list().await.unwrap() {
                out.push((format!("uploads/{id}"), 0));
            }
        } else {
            walk(self.dir.path(), self.dir.path(), &mut out);
            out.retain(|(p, _)| !p.starts_with("meta.db"));
        }
        out.sort();
        out
    }
}

fn start_weed() -> seaweed::Seaweed {
    seaweed::Seaweed::start(&weed(), "protocol").unwrap_or_else(|e| panic!("{e}"))
}

/// A registry on SeaweedFS under `prefix` (5 MiB parts) and the PostgreSQL database `db`, as
/// a replica: stores shared with others.
async fn scaled_registry(
    weed: &seaweed::Seaweed,
    prefix: &str,
    db: &str,
    key: &berth_iam::keys::MasterKey,
) -> (Registry, Arc<S3BlobStore>) {
    let mut o = S3Options::from_url(&format!("s3://{}/{prefix}", weed.bucket)).unwrap();
    o.endpoint = Some(weed.endpoint.clone());
    o.path_style = true;
    o.part_size = berth_store::MIN_PART_SIZE;
    o.credentials = Some((seaweed::KEY_ID.to_owned(), seaweed::SECRET.to_owned()));
    let blobs = Arc::new(S3BlobStore::open(o).await.unwrap());
    let meta = Arc::new(PgMeta::open(db).await.unwrap());
    let mut config = RegistryConfig::default();
    config.shared_stores = true;
    let reg = Registry::new(
        Arc::clone(&blobs) as Arc<dyn berth_store::BlobStore>,
        Arc::clone(&meta) as Arc<dyn berth_store::MetadataStore>,
        meta,
        key,
        config,
    );
    (reg, blobs)
}

/// Serves `reg` on a free loopback port.
async fn listen(reg: Registry) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router(reg)).await.unwrap();
    });
    (addr, task)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, e.metadata().unwrap().len()));
        }
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// An image manifest over a config and layers (digest, size).
pub fn image_manifest(
    media_type: &str,
    config: (&Digest, usize),
    layers: &[(&Digest, usize)],
    extra: &str,
) -> Vec<u8> {
    let (cfg_type, layer_type) = if media_type == DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"{layer_type}","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{cfg_type}","digest":"{}","size":{}}},"layers":[{}]{extra}}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
    .into_bytes()
}

/// An index over (media type, digest, size, architecture).
pub fn index_manifest(media_type: &str, children: &[(&str, &Digest, usize, &str)]) -> Vec<u8> {
    let m: Vec<String> = children
        .iter()
        .map(|(t, d, s, arch)| {
            format!(
                r#"{{"mediaType":"{t}","digest":"{d}","size":{s},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{}]}}"#,
        m.join(",")
    )
    .into_bytes()
}
