//! The axum router: thin handlers translating HTTP to [`Registry`] calls.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use berth_oci::{Digest, Reference, RepoName, media};
use berth_store::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;

use crate::access::{Caller, Denial, Target, download_scope};
use crate::audit::{Api, AuditInfo, Envelope, Identity};
use crate::error::{InternalError, RegistryError, range_header};
use crate::metrics::{Counted, InFlight, RequestLabels};
use crate::pullthrough::ManifestAnswer;
use crate::route::{self, Route};
use crate::service::Registry;

type Result<T> = std::result::Result<T, RegistryError>;

const API_VERSION: &str = "Docker-Distribution-API-Version";
const CONTENT_DIGEST: &str = "Docker-Content-Digest";
const UPLOAD_UUID: &str = "Docker-Upload-UUID";
/// The request id header (ECR's name), on every response; audit events carry the same id.
pub(crate) const REQUEST_ID: &str = "x-amzn-RequestId";

/// Builds the HTTP application: `/v2/…`, the ECR API, `/healthz`, `/readyz`, and the
/// middleware that logs, measures and audits every request.
pub fn router(registry: Registry) -> Router {
    router_with(registry, None)
}

/// Another front end mounted on the registry's listener (the MCP endpoint at `/mcp`), behind
/// the registry's authentication: with auth on, its callers authenticate as `/v2/` callers do
/// (Basic: an access key and secret, or `AWS` and an authorization token) and must be allowed
/// `action` on the registry (`*` resource) by their identity policies.
#[derive(Debug)]
pub struct Mounted {
    /// The front end's routes.
    pub routes: Router,
    /// The IAM action a caller must be allowed (`berth:InvokeMcp`).
    pub action: &'static str,
    /// The audit event name of a refused call (`InvokeMcp`).
    pub event_name: &'static str,
}

/// [`router`] with another front end mounted behind the registry's authentication; it shares
/// the middleware that logs, measures and audits every request.
pub fn router_with(registry: Registry, mounted: Option<Mounted>) -> Router {
    let mut app = Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/v2/{*rest}", any(dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/", post(crate::ecr::api))
        .with_state(registry.clone());
    if let Some(m) = mounted {
        let guard = Guard {
            registry: registry.clone(),
            action: m.action,
            event_name: m.event_name,
        };
        app = app.merge(
            m.routes
                .layer(middleware::from_fn_with_state(guard, guarded)),
        );
    }
    app.layer(middleware::from_fn_with_state(registry, observe))
}

/// What [`guarded`] checks.
#[derive(Clone)]
struct Guard {
    registry: Registry,
    action: &'static str,
    event_name: &'static str,
}

/// Authenticates and authorizes a request to a mounted front end; refusals are audited with
/// the registry's own error codes (401 with a Basic challenge, 403 `DENIED`).
async fn guarded(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let reg = &g.registry;
    if !reg.config().auth {
        return next.run(req).await;
    }
    let creds = credentials_of(&req);
    let claimed = basic_user(creds.0.as_deref());
    let mut audit = reg.audit().is_some().then(|| AuditInfo {
        event_name: Some(g.event_name),
        read_only: true,
        identity: Some(Identity::unknown(claimed.as_deref())),
        ..AuditInfo::default()
    });
    let who = match caller(reg, creds).await {
        Ok(c) => c,
        Err(e) => return respond(Err(e), audit),
    };
    if let Some(a) = &mut audit {
        a.identity = Some(Identity::of(&who));
    }
    match reg.authorize(&who, g.action, Target::Registry, &[]).await {
        Ok(()) => next.run(req).await,
        Err(Denial::Unauthenticated) => {
            respond(Err(reg.unauthorized("authentication required")), audit)
        }
        Err(Denial::Denied(m)) => respond(Err(RegistryError::Denied(m)), audit),
        Err(Denial::Unavailable(m)) => respond(Err(RegistryError::unavailable(m)), audit),
    }
}

/// `GET /readyz`: `ok` when both stores answer, else 503 with a short JSON reason.
pub(crate) async fn readyz(State(reg): State<Registry>) -> Response {
    match reg.ready().await {
        Ok(()) => "ok".into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "status": "unavailable", "reason": reason }).to_string(),
        )
            .into_response(),
    }
}

/// The outer middleware: adds `Docker-Distribution-API-Version` and a request id to every
/// response; counts the request, its latency and its body bytes (as they stream) under bounded
/// labels; turns the handler's [`AuditInfo`] into an audit event when the request changed state
/// or was refused; logs each request with its latency (internal errors with their cause, which
/// the client never sees).
async fn observe(State(reg): State<Registry>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let labels = RequestLabels::of(&method, &path, req.headers());
    let metrics = reg.metrics();
    let (source_ip, user_agent) = if reg.audit().is_some() {
        let ip = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let ua = header_str(req.headers(), header::USER_AGENT).map(str::to_owned);
        (ip, ua)
    } else {
        (None, None)
    };
    let req = match metrics {
        Some(m) => req.map(|b| Counted::wrap(b, m.received(labels.route))),
        None => req,
    };
    let in_flight = InFlight::start(
        metrics
            .filter(|_| labels.upload)
            .map(|m| &m.uploads_in_flight),
    );
    let mut resp = next.run(req).await;
    drop(in_flight);
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    let request_id = match resp.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id) => id.to_owned(),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            resp.headers_mut().insert(REQUEST_ID, hv(&id));
            id
        }
    };
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    if let Some(m) = metrics {
        m.observe_request(&labels, status, elapsed);
        resp = resp.map(|b| Counted::wrap(b, m.sent(labels.route)));
    }
    let info = resp.extensions_mut().remove::<AuditInfo>();
    if let (Some(log), Some(info)) = (reg.audit(), info)
        && info.audited(status)
    {
        let config = reg.config();
        let envelope = Envelope {
            time: reg.clock.now(),
            region: &config.region,
            account: &config.registry_id,
            source_ip,
            user_agent: user_agent.as_deref(),
            request_id: &request_id,
            http_method: method.as_str(),
            status,
        };
        log.send(&crate::audit::event(&info, &envelope), metrics);
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    if let Some(InternalError(cause)) = resp.extensions().get::<InternalError>() {
        tracing::error!(%method, %path, status, latency_ms = ms, error = %cause, "request failed");
    } else {
        tracing::info!(%method, %path, status, latency_ms = ms, "request");
    }
    resp
}

async fn base(State(reg): State<Registry>, req: Request) -> Response {
    if reg.config().auth {
        // Clients check their credentials here (`docker login`): anonymous callers are asked
        // for them, bad ones refused.
        let creds = credentials_of(&req);
        let claimed = basic_user(creds.0.as_deref());
        match caller(&reg, creds).await {
            Ok(c) if c.principal == berth_iam::policy::Principal::Anonymous => {
                // The challenge every client gets first: not audited.
                return reg.unauthorized("authentication required").into_response();
            }
            Ok(_) => {}
            // Credentials that do not authenticate (a failed `docker login`): audited.
            Err(e) => {
                let audit = reg.audit().is_some().then(|| AuditInfo {
                    event_name: Some("BerthLogin"),
                    read_only: true,
                    identity: Some(Identity::unknown(claimed.as_deref())),
                    ..AuditInfo::default()
                });
                return respond(Err(e), audit);
            }
        }
    }
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    if let Some(v) = crate::error::ecr_auth_value(&reg.config().region) {
        resp.headers_mut().insert(berth_oci::ECR_AUTH_HEADER, v);
    }
    resp
}

/// The caller of a `/v2/` request: Basic credentials, or a download URL's token. Takes the
/// request's parts, not the request: a `&Request` (its body is not `Sync`) must not be held
/// across an await.
async fn caller(
    reg: &Registry,
    (authorization, ip): (Option<String>, Option<std::net::IpAddr>),
) -> Result<Caller> {
    reg.authenticate_basic(authorization.as_deref(), ip).await
}

/// The `Authorization` value of a request (a download URL's `X-Berth-Token` counts as Basic
/// credentials for user `AWS`) and the peer's address.
fn credentials_of(req: &Request) -> (Option<String>, Option<std::net::IpAddr>) {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let auth = header_str(req.headers(), header::AUTHORIZATION).map(str::to_owned);
    if auth.is_none()
        && let Some(token) = Query::parse(req.uri().query()).get("X-Berth-Token")
    {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
        return (Some(format!("Basic {basic}")), ip);
    }
    (auth, ip)
}

/// The user name of Basic credentials (an access key id, or `AWS` for a token), for the audit
/// log of a failed authentication. The password is never looked at.
fn basic_user(authorization: Option<&str>) -> Option<String> {
    let (scheme, rest) = authorization?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let end = decoded.iter().position(|b| *b == b':')?;
    String::from_utf8(decoded.get(..end)?.to_vec()).ok()
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let mut audit = reg.audit().is_some().then(|| oci_audit(&req));
    let who = if reg.config().auth {
        let creds = credentials_of(&req);
        let claimed = audit.as_ref().and_then(|_| basic_user(creds.0.as_deref()));
        match caller(&reg, creds).await {
            Ok(c) => c,
            Err(e) => {
                if let Some(a) = &mut audit {
                    a.identity = Some(Identity::unknown(claimed.as_deref()));
                }
                return respond(Err(e), audit);
            }
        }
    } else {
        Caller::anonymous(None)
    };
    if let Some(a) = &mut audit {
        a.identity = Some(Identity::of(&who));
    }
    let write = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    let result = route_request(reg, &who, req).await.map_err(|e| match e {
        // A push into a repository that does not exist: say how to make it exist.
        RegistryError::NameUnknown(m) if write => RegistryError::NameUnknown(format!(
            "{m}. Create it first (`aws ecr create-repository --repository-name NAME`, \
             `berth repo create HOST/NAME`), or let pushes create repositories: \
             `berth serve --create-on-push` (or a CREATE_ON_PUSH repository creation template)"
        )),
        other => other,
    });
    respond(result, audit)
}

/// A handler's result as a response, with its audit record attached (error code and message
/// as the response carries them).
fn respond(result: Result<Response>, mut audit: Option<AuditInfo>) -> Response {
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(a) = &mut audit {
                let message = match &e {
                    RegistryError::Store(_) => "internal server error".to_owned(),
                    other => other.to_string(),
                };
                a.error = Some((e.code().as_str().to_owned(), message));
            }
            e.into_response()
        }
    };
    if let Some(a) = audit {
        resp.extensions_mut().insert(a);
    }
    resp
}

/// What the audit log records of a `/v2/` request before it is handled: its action (as ECR
/// maps it), whether it changes state, and its repository and reference from the path.
fn oci_audit(req: &Request) -> AuditInfo {
    let method = req.method();
    let mut a = AuditInfo {
        api: Api::Oci,
        read_only: !matches!(
            *method,
            Method::PUT | Method::POST | Method::PATCH | Method::DELETE
        ),
        ..AuditInfo::default()
    };
    let Some(route) = req
        .uri()
        .path()
        .strip_prefix("/v2/")
        .and_then(route::parse_v2)
    else {
        return a;
    };
    a.event_name = action_of(&route, method).strip_prefix("ecr:");
    if let Some(n) = route_repo(&route) {
        a.param("repositoryName", n);
    }
    let query = Query::parse(req.uri().query());
    match route {
        Route::Manifest(_, r) if r.contains(':') => a.param("imageDigest", r),
        Route::Manifest(_, r) => a.param("imageTag", r),
        Route::Referrers(_, d) => a.param("imageDigest", d),
        Route::Blob(_, d) => a.param("layerDigest", d),
        Route::Upload(_, id) => {
            a.param("uploadId", id);
            if let Some(d) = query.get("digest") {
                a.param("layerDigest", d);
            }
        }
        Route::UploadStart(_) => {
            if let Some(d) = query.get("digest").or_else(|| query.get("mount")) {
                a.param("layerDigest", d);
            }
            if let Some(from) = query.get("from") {
                a.param("mountFrom", from);
            }
        }
        Route::Catalog | Route::Tags(_) => {}
    }
    a
}

/// Authorizes `actions` on a repository for the caller (nothing to check with auth off).
async fn allow(reg: &Registry, who: &Caller, actions: &[&str], repo: &RepoName) -> Result<()> {
    if !reg.config().auth {
        return Ok(());
    }
    match reg.authorize_repository(who, actions, repo, &[]).await? {
        Ok(_) => Ok(()),
        Err(Denial::Unauthenticated) => Err(reg.unauthorized("authentication required")),
        Err(Denial::Denied(m)) => Err(RegistryError::Denied(m)),
        Err(Denial::Unavailable(m)) => Err(RegistryError::unavailable(m)),
    }
}

/// The IAM actions ECR maps an OCI request to: one, plus those of the steps a single OCI
/// request folds together (a POST with `?digest=` uploads and completes in one go; a PUT with
/// a body uploads its last chunk; a mount completes a layer).
fn actions_of(
    route: &Route<'_>,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
) -> Vec<&'static str> {
    let mut actions = vec![action_of(route, method)];
    match (route, method) {
        (Route::UploadStart(_), &Method::POST) if query.get("digest").is_some() => {
            actions.extend(["ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]);
        }
        (Route::UploadStart(_), &Method::POST) if query.get("mount").is_some() => {
            actions.push("ecr:CompleteLayerUpload");
        }
        (Route::Upload(..), &Method::PUT) if content_length(headers).ok().flatten() != Some(0) => {
            actions.push("ecr:UploadLayerPart");
        }
        _ => {}
    }
    actions
}

/// The IAM action ECR maps an OCI request to.
pub(crate) fn action_of(route: &Route<'_>, method: &Method) -> &'static str {
    match (route, method) {
        (Route::Catalog, _) => "ecr:DescribeRepositories",
        (Route::Tags(_), _) => "ecr:ListImages",
        (Route::Manifest(..), &Method::PUT) => "ecr:PutImage",
        (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => "ecr:BatchDeleteImage",
        (Route::Manifest(..) | Route::Referrers(..), _) => "ecr:BatchGetImage",
        (Route::Blob(..), &Method::HEAD) => "ecr:BatchCheckLayerAvailability",
        (Route::Blob(..), _) => "ecr:GetDownloadUrlForLayer",
        (Route::UploadStart(_), _) => "ecr:InitiateLayerUpload",
        (Route::Upload(..), &Method::PUT) => "ecr:CompleteLayerUpload",
        (Route::Upload(..), _) => "ecr:UploadLayerPart",
    }
}

fn route_repo<'a>(route: &Route<'a>) -> Option<&'a str> {
    match route {
        Route::Catalog => None,
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::UploadStart(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => Some(n),
    }
}

fn repo(name: &str) -> Result<RepoName> {
    Ok(RepoName::parse(name)?)
}

fn digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| RegistryError::DigestInvalid(e.to_string()))
}

async fn route_request(reg: Registry, who: &Caller, req: Request) -> Result<Response> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/v2/").unwrap_or_default();
    let route = route::parse_v2(rest).ok_or_else(|| RegistryError::NotFound(path.clone()))?;
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    if let Some(scope) = &who.scope {
        // A download URL's token reads its one blob and does nothing else.
        let allowed = match (&route, &method) {
            (Route::Blob(n, d), m) if *m == Method::GET || *m == Method::HEAD => {
                *scope == download_scope(repo(n)?.as_str(), &digest(d)?.to_string())
            }
            _ => false,
        };
        if !allowed {
            return Err(RegistryError::Denied(
                "this token is a layer download URL's: it reads that one layer and nothing else"
                    .into(),
            ));
        }
    }
    if let Some(n) = route_repo(&route) {
        let actions = actions_of(&route, &method, &query, req.headers());
        allow(&reg, who, &actions, &repo(n)?).await?;
    } else if reg.config().auth && who.principal == berth_iam::policy::Principal::Anonymous {
        return Err(reg.unauthorized("authentication required"));
    }
    match (route, &method) {
        (Route::Catalog, &Method::GET) => catalog(&reg, who, &query).await,
        (Route::Tags(n), &Method::GET) => tags(&reg, &repo(n)?, &query).await,
        (Route::Manifest(n, r), m) if m == Method::GET || m == Method::HEAD => {
            get_manifest(&reg, who, &repo(n)?, r, m == Method::HEAD).await
        }
        (Route::Manifest(n, r), &Method::PUT) => put_manifest(&reg, &repo(n)?, r, req).await,
        (Route::Manifest(n, r), &Method::DELETE) => {
            let name = repo(n)?;
            reg.delete_manifest(&name, &Reference::parse(r)?).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Blob(n, d), m) if m == Method::GET || m == Method::HEAD => {
            get_blob(
                &reg,
                who,
                &repo(n)?,
                &digest(d)?,
                m == Method::HEAD,
                req.headers(),
            )
            .await
        }
        (Route::Blob(n, d), &Method::DELETE) => {
            reg.delete_blob(&repo(n)?, &digest(d)?).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::UploadStart(n), &Method::POST) => {
            start_upload(&reg, who, &repo(n)?, &query, req).await
        }
        (Route::Upload(n, id), &Method::GET) => {
            let name = repo(n)?;
            let st = reg.upload_status(&name, id).await?;
            Ok(upload_response(
                StatusCode::NO_CONTENT,
                &name,
                &st.id.to_string(),
                st.size,
            ))
        }
        (Route::Upload(n, id), &Method::PATCH) => {
            let name = repo(n)?;
            let range = content_range(req.headers())?;
            let declared = content_length(req.headers())?;
            let st = reg
                .append_upload(&name, id, range, declared, body_stream(req))
                .await?;
            Ok(upload_response(
                StatusCode::ACCEPTED,
                &name,
                &st.id.to_string(),
                st.size,
            ))
        }
        (Route::Upload(n, id), &Method::PUT) => {
            let name = repo(n)?;
            let d = digest(query.get("digest").ok_or_else(|| {
                RegistryError::DigestInvalid("the digest query parameter is required".into())
            })?)?;
            let range = content_range(req.headers())?;
            let declared = content_length(req.headers())?;
            reg.complete_upload(&name, id, &d, range, declared, body_stream(req))
                .await?;
            Ok(blob_created(&name, &d))
        }
        (Route::Upload(n, id), &Method::DELETE) => {
            reg.cancel_upload(&repo(n)?, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Route::Referrers(n, d), &Method::GET) => {
            referrers(&reg, &repo(n)?, &digest(d)?, &query).await
        }
        (route, m) => Err(RegistryError::Unsupported(format!(
            "method {m} is not supported on {}",
            route_kind(&route)
        ))),
    }
}

fn route_kind(r: &Route<'_>) -> &'static str {
    match r {
        Route::Catalog => "the catalog",
        Route::Tags(_) => "tag lists",
        Route::Manifest(..) => "manifests",
        Route::Blob(..) => "blobs",
        Route::UploadStart(_) => "the upload start endpoint",
        Route::Upload(..) => "uploads",
        Route::Referrers(..) => "referrers",
    }
}

/// Query parameters (first value wins).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    RegistryError::SizeInvalid(format!("{key}={v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    header_str(h, header::CONTENT_LENGTH)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| RegistryError::UploadInvalid(format!("bad Content-Length {v:?}")))
        })
        .transpose()
}

/// `Content-Range: <start>-<end>` (also accepting a `bytes ` prefix and a `/<total>` suffix).
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = header_str(h, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || RegistryError::UploadInvalid(format!("bad Content-Range {v:?}"));
    let s = v.trim();
    let s = s.strip_prefix("bytes").map(str::trim_start).unwrap_or(s);
    let s = s.strip_prefix('=').unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a = a.trim().parse::<u64>().map_err(|_| bad())?;
    let b = b.trim().parse::<u64>().map_err(|_| bad())?;
    Ok(Some((a, b)))
}

fn body_stream(req: Request) -> ByteStream {
    req.into_body()
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .boxed()
}

fn location(name: &RepoName, tail: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v2/{name}/{tail}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/v2/"))
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn upload_response(status: StatusCode, name: &RepoName, id: &str, size: u64) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        location(name, &format!("blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, hv(&range_header(size)));
    h.insert(UPLOAD_UUID, hv(id));
    if status != StatusCode::NO_CONTENT {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

fn blob_created(name: &RepoName, d: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, location(name, &format!("blobs/{d}")));
    h.insert(CONTENT_DIGEST, hv(&d.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

async fn start_upload(
    reg: &Registry,
    who: &Caller,
    name: &RepoName,
    q: &Query,
    req: Request,
) -> Result<Response> {
    if let Some(m) = q.get("mount") {
        let d = digest(m)?;
        // Mounting reads the source: the caller must be allowed to pull from it.
        if let Some(from) = q.get("from")
            && let Ok(from) = RepoName::parse(from)
            && allow(reg, who, &["ecr:GetDownloadUrlForLayer"], &from)
                .await
                .is_ok()
            && reg.mount_blob(name, &from, &d).await?
        {
            return Ok(blob_created(name, &d));
        }
        // Not mountable: fall back to a regular upload session (202), as the spec allows.
    } else if let Some(dg) = q.get("digest") {
        let d = digest(dg)?;
        let declared = content_length(req.headers())?;
        let empty_body = req.body().size_hint().exact() == Some(0);
        if empty_body && d != Digest::sha256(b"") {
            // No body to go with the digest: a regular session (as the spec allows).
            let id = reg.start_upload(name).await?;
            return Ok(upload_response(StatusCode::ACCEPTED, name, id.as_str(), 0));
        }
        reg.put_blob(name, &d, declared, body_stream(req)).await?;
        return Ok(blob_created(name, &d));
    }
    let id = reg.start_upload(name).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id.as_str(), 0))
}

/// A parsed `Range: bytes=…` request for a blob of `size` bytes: `(offset, len)`.
fn byte_range(h: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(v) = header_str(h, header::RANGE) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None); // unknown unit: ignore, serve the whole blob
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole blob (allowed by RFC 9110)
    }
    let invalid = || RegistryError::BlobRangeInvalid { size };
    let (a, b) = spec.trim().split_once('-').ok_or_else(invalid)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| invalid())?;
            if n == 0 {
                return Err(invalid());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| invalid())?, size.saturating_sub(1)),
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| invalid())?;
            let b: u64 = b.parse().map_err(|_| invalid())?;
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if end < start && start < size {
        return Ok(None); // an invalid range is ignored (RFC 9110 §14.2): serve the whole blob
    }
    if size == 0 || start >= size || end < start {
        return Err(invalid());
    }
    Ok(Some((start, end - start + 1)))
}

async fn get_blob(
    reg: &Registry,
    who: &Caller,
    name: &RepoName,
    d: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    let size = match reg.blob_present(name, d).await? {
        Some(size) => size,
        None => {
            // A pull-through cache fetches what it lacks; the request that starts the fetch
            // gets the bytes as they arrive (whole: a range is answered once cached).
            if let Some(s) = reg.pull_through_blob(who, name, d, head).await? {
                let mut r = Response::new(Body::from_stream(s.body));
                let h = r.headers_mut();
                h.insert(header::CONTENT_LENGTH, hv(&s.size.to_string()));
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert(CONTENT_DIGEST, hv(&d.to_string()));
                h.insert(header::ETAG, hv(&format!("\"{d}\"")));
                h.insert(crate::pullthrough::HEADER, HeaderValue::from_static("miss"));
                return Ok(r);
            }
            reg.blob_size(name, d).await?
        }
    };
    if !head && let Some(url) = reg.blob_redirect(d).await? {
        // What ECR does: the bytes come from the object store, not through the registry.
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let h = r.headers_mut();
        h.insert(header::LOCATION, hv(&url));
        h.insert(CONTENT_DIGEST, hv(&d.to_string()));
        return Ok(r);
    }
    let range = if head {
        None
    } else {
        byte_range(headers, size)?
    };
    let (status, offset, len) = match range {
        Some((o, l)) => (StatusCode::PARTIAL_CONTENT, o, l),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        Body::from_stream(reg.read_blob(d, offset, len).await?)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_DIGEST, hv(&d.to_string()));
    h.insert(header::ETAG, hv(&format!("\"{d}\"")));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {offset}-{}/{size}", offset + len - 1)),
        );
    }
    Ok(r)
}

async fn get_manifest(
    reg: &Registry,
    who: &Caller,
    name: &RepoName,
    r: &str,
    head: bool,
) -> Result<Response> {
    let reference = Reference::parse(r).map_err(|e| match e {
        berth_oci::NameError::InvalidTag(_) => {
            RegistryError::ManifestUnknown(r.chars().take(160).collect())
        }
        other => other.into(),
    })?;
    let mut cache_note = None;
    match reg.pull_through_manifest(who, name, &reference).await? {
        None => {}
        Some(ManifestAnswer::Local(kind, why)) => {
            cache_note = Some(match why {
                Some(w) => format!("{kind} ({w})"),
                None => kind.to_owned(),
            });
        }
        Some(ManifestAnswer::Upstream(raw)) => {
            let len = raw.bytes.len();
            let mut resp = Response::new(if head {
                Body::empty()
            } else {
                Body::from(raw.bytes)
            });
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, hv(&raw.media_type));
            h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
            h.insert(CONTENT_DIGEST, hv(&raw.digest.to_string()));
            h.insert(header::ETAG, hv(&format!("\"{}\"", raw.digest)));
            h.insert(crate::pullthrough::HEADER, HeaderValue::from_static("miss"));
            return Ok(resp);
        }
    }
    let rec = reg.resolve(name, &reference).await?;
    let body = if head {
        Body::empty()
    } else {
        let bytes = reg.manifest_bytes(&rec).await?;
        reg.record_pull(name, &rec).await;
        Body::from(bytes)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&rec.media_type));
    h.insert(header::CONTENT_LENGTH, hv(&rec.size.to_string()));
    h.insert(CONTENT_DIGEST, hv(&rec.digest.to_string()));
    h.insert(header::ETAG, hv(&format!("\"{}\"", rec.digest)));
    if let Some(note) = cache_note {
        h.insert(crate::pullthrough::HEADER, hv(&note));
    }
    Ok(resp)
}

async fn put_manifest(reg: &Registry, name: &RepoName, r: &str, req: Request) -> Result<Response> {
    let reference = Reference::parse(r)?;
    let limit = reg.config().max_manifest_size;
    let too_large = || RegistryError::TooLarge {
        what: "manifest",
        limit: limit as u64,
    };
    if let Some(n) = content_length(req.headers())?.filter(|&n| n > limit as u64) {
        if n <= LINGER_MAX {
            // Read (and drop) what is on its way before answering: closing a socket with
            // unread bytes resets it, and a client — or a load balancer in between — would
            // then see "connection reset" instead of this 413.
            linger(req.into_body()).await;
        }
        return Err(too_large());
    }
    let _permit = reg.manifest_permit()?;
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    let bytes = read_limited(req.into_body(), limit)
        .await?
        .ok_or_else(too_large)?;
    let out = reg
        .put_manifest(name, &reference, content_type.as_deref(), bytes)
        .await?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        location(name, &format!("manifests/{}", out.digest)),
    );
    h.insert(CONTENT_DIGEST, hv(&out.digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(s) = out.subject {
        h.insert("OCI-Subject", hv(&s.to_string()));
    }
    Ok(resp)
}

/// The largest refused body read to its end before the refusal is sent (see [`linger`]).
const LINGER_MAX: u64 = 16 * 1024 * 1024;

/// Reads a refused body to its end, dropping it, for at most 2 seconds.
async fn linger(body: Body) {
    let mut body = body.into_data_stream();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
}

/// Reads a whole body if it is at most `limit` bytes (`None` if larger).
async fn read_limited(body: Body, limit: usize) -> Result<Option<Bytes>> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(Some(c.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(None),
        Err(e) => Err(RegistryError::Body(e.to_string())),
    }
}

/// Appends `Link: <…?n=N&last=L>; rel="next"` when a page is full.
fn paginate(resp: &mut Response, path: &str, n: usize, last: Option<&str>) {
    if let Some(last) = last {
        let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        resp.headers_mut().insert(header::LINK, hv(&link));
    }
}

fn json_response(value: &serde_json::Value, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], value.to_string()).into_response()
}

async fn tags(reg: &Registry, name: &RepoName, q: &Query) -> Result<Response> {
    let n = q.count("n")?;
    let last = q.get("last");
    let want = n.unwrap_or(usize::MAX);
    let mut list = if want == 0 {
        // n=0: an empty page, but the repository must still exist.
        reg.tags(name, last, 0).await?
    } else {
        reg.tags(name, last, want.saturating_add(1)).await?
    };
    let more = list.len() > want;
    list.truncate(want);
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    let mut resp = json_response(
        &serde_json::json!({ "name": name.as_str(), "tags": names }),
        "application/json",
    );
    if more {
        paginate(
            &mut resp,
            &format!("/v2/{name}/tags/list"),
            want,
            names.last().copied(),
        );
    }
    Ok(resp)
}

async fn catalog(reg: &Registry, who: &Caller, q: &Query) -> Result<Response> {
    let want = q.count("n")?.unwrap_or(usize::MAX);
    let mut list = if want == 0 {
        Vec::new()
    } else {
        reg.meta()
            .repositories(q.get("last"), want.saturating_add(1))
            .await?
    };
    let more = list.len() > want;
    list.truncate(want);
    // Only the repositories the caller may describe (a page may come out shorter than `n`).
    let mut names: Vec<&str> = Vec::new();
    for r in &list {
        let target = Target::Repository {
            name: &r.name,
            policy: r.policy.as_deref(),
        };
        if reg
            .authorize(who, "ecr:DescribeRepositories", target, &[])
            .await
            .is_ok()
        {
            names.push(r.name.as_str());
        }
    }
    let last_seen = list.last().map(|r| r.name.as_str());
    let mut resp = json_response(
        &serde_json::json!({ "repositories": names }),
        "application/json",
    );
    if more {
        paginate(&mut resp, "/v2/_catalog", want, last_seen);
    }
    Ok(resp)
}

async fn referrers(
    reg: &Registry,
    name: &RepoName,
    subject: &Digest,
    q: &Query,
) -> Result<Response> {
    let filter = q.get("artifactType").filter(|t| !t.is_empty());
    let list = reg.referrers(name, subject, filter).await?;
    let manifests: Vec<serde_json::Value> = list
        .iter()
        .map(|m| {
            let mut d = serde_json::json!({
                "mediaType": m.media_type,
                "digest": m.digest.to_string(),
                "size": m.size,
            });
            if let Some(t) = &m.artifact_type {
                d["artifactType"] = serde_json::Value::String(t.clone());
            }
            if let Some(a) = m
                .annotations_json
                .as_deref()
                .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    let mut resp = json_response(&index, media::OCI_INDEX);
    if filter.is_some() {
        resp.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
