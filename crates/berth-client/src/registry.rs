//! A registry as a source and a sink, over the OCI Distribution API, with the auth flow
//! registries use: try, read the `WWW-Authenticate` challenge, answer with Basic credentials or a
//! Bearer token from the challenge's realm (cached per scope), try again once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::{Digest, ImageRef, Reference, RepoName, Tag, media};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use crate::ClientError;
use crate::auth::{Challenge, Credentials, Scheme};
use crate::ecr::EcrTarget;
use crate::image::{
    ByteStream, ImageSink, ImageSource, MountOrigin, Placement, RawManifest, verify,
};

/// What `Accept` asks for when fetching manifests.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A connection to one registry host.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    host: String,
    base: String,
    credentials: Mutex<Option<Credentials>>,
    /// Set for ECR registries (and `berth serve`, once it advertises ECR auth): Basic
    /// credentials come from GetAuthorizationToken.
    ecr: Mutex<Option<EcrTarget>>,
    /// Bearer tokens by scope string.
    tokens: Mutex<HashMap<String, String>>,
    /// The scheme learned from the last challenge (so later requests authenticate up front).
    basic: Mutex<bool>,
    /// Tries per request (transient failures, 429 and 5xx are tried again).
    attempts: u32,
}

/// Whether a registry host is spoken to over plain HTTP: loopback addresses, as docker does by
/// default, plus whatever the caller lists.
pub fn plain_http(host: &str, insecure: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        _ if host.starts_with('[') => host.split_inclusive(']').next().unwrap_or(host),
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let loopback_ip = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    name == "localhost" || loopback_ip || insecure.iter().any(|i| i == host)
}

/// The base URL of a registry host: `http://host` when [`plain_http`], else `https://host`.
pub fn base_url(host: &str, insecure: &[String]) -> String {
    let scheme = if plain_http(host, insecure) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

impl RegistryClient {
    /// A client for `host` (`registry.example:5000`), with optional credentials.
    pub fn new(
        host: &str,
        credentials: Option<Credentials>,
        insecure: &[String],
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(RegistryClient {
            http,
            base: base_url(host, insecure),
            host: host.to_owned(),
            credentials: Mutex::new(credentials),
            ecr: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
            attempts: ATTEMPTS,
        })
    }

    /// Tries each request at most `attempts` times (default 5): a registry in front of an
    /// upstream that rate-limits it answers from its cache instead of waiting out backoffs.
    #[must_use]
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Authenticates to an ECR registry natively (see [`crate::ecr`]) instead of with stored
    /// credentials.
    #[must_use]
    pub fn with_ecr(self, target: EcrTarget) -> Self {
        *self.ecr.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
        self
    }

    fn ecr_target(&self) -> Option<EcrTarget> {
        self.ecr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn current_credentials(&self) -> Option<Credentials> {
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize(&self, req: RequestBuilder, scope: &str) -> RequestBuilder {
        if let Some(token) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
        {
            return req.bearer_auth(token);
        }
        if *self.basic.lock().unwrap_or_else(|p| p.into_inner())
            && let Some(Credentials::Basic { username, password }) = self.current_credentials()
        {
            return req.basic_auth(username, Some(password));
        }
        req
    }

    /// After a 401 on a request that was already authenticated (a token expired or was
    /// revoked mid-transfer): answers the new challenge so the request can be sent again.
    pub(crate) async fn reauthenticate(
        &self,
        resp: &Response,
        scope: &str,
    ) -> Result<(), ClientError> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope);
        self.answer_challenge(resp, scope).await
    }

    /// Sends a request built by `build`, retrying transient failures, authenticating on a 401
    /// and trying once more. `build` must be cheap and repeatable (no streaming bodies).
    async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        // A 401 is answered once; for ECR twice, since the first answer may be a cached token
        // the registry no longer accepts (the second renews it).
        let mut resp = self.dispatch(scope, &build).await?;
        let mut answered = 0;
        loop {
            // Read each time: a `berth serve` challenge turns ECR auth on.
            let answers = if self.ecr_target().is_some() { 2 } else { 1 };
            if answered >= answers {
                break;
            }
            answered += 1;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            self.answer_challenge(&resp, scope).await?;
            resp = self.dispatch(scope, &build).await?;
        }
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized(format!(
                "{} refused the credentials for {scope}",
                self.base
            )));
        }
        Ok(resp)
    }

    /// Sends once with the current credentials, again after connection errors, 429 and 5xx
    /// (waiting as `Retry-After` says), up to `attempts` times ([`ATTEMPTS`] by default).
    async fn dispatch(
        &self,
        scope: &str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let mut n = 0;
        loop {
            n += 1;
            match self.authorize(build(&self.http), scope).send().await {
                Ok(r) if retryable(r.status()) && n < self.attempts => {
                    let wait = backoff(n - 1, Some(&r));
                    tracing::debug!(status = %r.status(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => return Ok(r),
                Err(e) if n < self.attempts && (e.is_connect() || e.is_timeout()) => {
                    tracing::debug!(error = %e, "retrying");
                    tokio::time::sleep(backoff(n - 1, None)).await;
                }
                Err(e) => return Err(http_err(e)),
            }
        }
    }

    async fn answer_challenge(&self, resp: &Response, scope: &str) -> Result<(), ClientError> {
        let header = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Unauthorized(format!("{} answered 401 without a challenge", self.base))
            })?;
        let challenge = Challenge::parse(header)?;
        // `berth serve` says it takes AWS credentials: with no password stored for it, use the
        // AWS credential chain as for Amazon ECR, in the region it names.
        let advertised = resp
            .headers()
            .get(berth_oci::ECR_AUTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(berth_oci::parse_ecr_auth);
        if let Some(region) = advertised
            && challenge.scheme == Scheme::Basic
            && self.ecr_target().is_none()
            && !matches!(self.current_credentials(), Some(Credentials::Basic { .. }))
        {
            // Only for registries reached over plain HTTP (loopback, or listed as insecure):
            // any remote host could send the header to have berth sign a request with the
            // user's AWS credentials and post it there. A remote one needs `berth login HOST`.
            if !self.base.starts_with("http://") {
                return Err(ClientError::Unauthorized(format!(
                    "{} takes AWS credentials: run `berth login {}` (with --profile P or --credentials-file FILE) to use yours for it",
                    self.base, self.host
                )));
            }
            let mut target = EcrTarget::with_region(&self.host, Some(region));
            target.aws.endpoint = Some(self.base.clone());
            tracing::debug!(host = %self.host, "registry takes AWS credentials");
            *self.ecr.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
        }
        match challenge.scheme {
            Scheme::Basic => {
                if let Some(target) = self.ecr_target() {
                    let target = &target;
                    // A password we already sent and that was refused is renewed, not reused.
                    let refused = match self.current_credentials() {
                        Some(Credentials::Basic { password, .. })
                            if *self.basic.lock().unwrap_or_else(|p| p.into_inner()) =>
                        {
                            Some(password)
                        }
                        _ => None,
                    };
                    let fresh = crate::ecr::credentials(target, refused.as_deref()).await?;
                    *self.credentials.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
                }
                if !matches!(self.current_credentials(), Some(Credentials::Basic { .. })) {
                    return Err(ClientError::Unauthorized(format!(
                        "{} wants a user name and password: run `berth login {} -u USER --password-stdin`",
                        self.base, self.host
                    )));
                }
                *self.basic.lock().unwrap_or_else(|p| p.into_inner()) = true;
                Ok(())
            }
            _ => {
                let token = self.fetch_token(&challenge, scope).await?;
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(scope.to_owned(), token);
                Ok(())
            }
        }
    }

    async fn fetch_token(&self, c: &Challenge, scope: &str) -> Result<String, ClientError> {
        let realm = c.realm.as_deref().unwrap_or_default();
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &c.service {
            query.push(("service", s));
        }
        // Several scopes (a cross-repository mount needs pull on the origin) go as several
        // `scope` parameters.
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s));
        }
        let req = match &self.current_credentials() {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "berth"),
                ]);
                self.http.post(realm).form(&form)
            }
            Some(Credentials::Basic { username, password }) => self
                .http
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password)),
            None => self.http.get(realm).query(&query),
        };
        let resp = req.send().await.map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(ClientError::Unauthorized(format!(
                "token endpoint {realm} answered {} for {scope}",
                resp.status()
            )));
        }
        let body: serde_json::Value = resp.json().await.map_err(http_err)?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ClientError::Unauthorized(format!("token endpoint {realm} returned no token"))
            })
    }
}

fn http_err(e: reqwest::Error) -> ClientError {
    ClientError::Http(e.to_string())
}

/// Turns an unexpected response into an error carrying the registry's own code and message.
async fn unexpected(what: &str, resp: Response) -> ClientError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = &v["errors"][0];
            Some(format!(
                "{}: {}",
                e["code"].as_str()?,
                e["message"].as_str().unwrap_or("")
            ))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    ClientError::Registry {
        what: what.to_owned(),
        status: status.as_u16(),
        detail,
    }
}

/// Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size (or the
/// registry's `OCI-Chunk-Min-Length`, if larger). One chunk is buffered at a time — the memory
/// bound of an upload — so a failed chunk can be re-sent from where the registry says it is.
const CHUNK: usize = 16 * 1024 * 1024;
/// Tries per request before giving up.
const ATTEMPTS: u32 = 5;

fn with_digest(url: &str, digest: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

async fn expect_status(resp: Response, want: StatusCode, what: &str) -> Result<(), ClientError> {
    if resp.status() == want {
        Ok(())
    } else {
        Err(unexpected(what, resp).await)
    }
}

/// Cuts a byte stream into chunks of a given size.
struct Chunker {
    stream: ByteStream,
    /// Bytes of a frame that did not fit in the previous chunk.
    leftover: Option<Bytes>,
}

impl Chunker {
    /// The next `n` bytes (fewer only at the end of the stream), in one allocation of `n`.
    async fn next_chunk(&mut self, n: usize) -> Result<Bytes, ClientError> {
        let mut buf = BytesMut::with_capacity(n);
        while buf.len() < n {
            let frame = match self.leftover.take() {
                Some(f) => f,
                None => match self.stream.next().await {
                    Some(f) => f?,
                    None => break,
                },
            };
            let room = n - buf.len();
            if frame.len() > room {
                buf.extend_from_slice(&frame[..room]);
                self.leftover = Some(frame.slice(room..));
            } else {
                buf.extend_from_slice(&frame);
            }
        }
        Ok(buf.freeze())
    }

    /// Whether the stream is exhausted; polling its end runs the stream's own checks (size and
    /// digest), whose failure is returned.
    async fn at_end(&mut self) -> Result<bool, ClientError> {
        if self.leftover.as_ref().is_some_and(|l| !l.is_empty()) {
            return Ok(false);
        }
        match self.stream.next().await {
            None => Ok(true),
            Some(Ok(f)) => {
                self.leftover = Some(f);
                Ok(false)
            }
            Some(Err(e)) => Err(e),
        }
    }
}

/// How long to wait before try `n + 1`: the server's `Retry-After` (seconds) if it sent one,
/// else 250 ms doubling.
fn backoff(n: u32, resp: Option<&Response>) -> std::time::Duration {
    let hinted = resp
        .and_then(|r| r.headers().get(header::RETRY_AFTER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| std::time::Duration::from_secs(s.min(60)));
    hinted.unwrap_or(std::time::Duration::from_millis(250 << n.min(6)))
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// One repository (and reference) on a registry, as a source and a sink.
/// An upload session to cancel (`DELETE`) when dropped while still armed.
struct SessionGuard {
    image: Option<RegistryImage>,
    url: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let (Some(image), Ok(rt)) = (self.image.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let url = std::mem::take(&mut self.url);
        rt.spawn(async move {
            let req = image
                .client
                .authorize(image.client.http.delete(&url), &image.push_scope);
            if let Err(e) = req.send().await {
                tracing::debug!(error = %e, "cancelling an abandoned upload session failed");
            }
        });
    }
}

#[derive(Debug, Clone)]
pub struct RegistryImage {
    client: Arc<RegistryClient>,
    repo: RepoName,
    reference: Reference,
    pull_scope: String,
    push_scope: String,
}

impl RegistryImage {
    /// The image `r` names, reached through `client` (which must be for `r`'s registry).
    pub fn new(client: Arc<RegistryClient>, r: &ImageRef) -> Self {
        let repo = r.repository().clone();
        RegistryImage {
            pull_scope: format!("repository:{repo}:pull"),
            push_scope: format!("repository:{repo}:pull,push"),
            client,
            reference: r.reference(),
            repo,
        }
    }

    fn path(&self, tail: &str) -> String {
        format!("/v2/{}/{tail}", self.repo)
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.client.url(location)
        }
    }

    /// Sends a request built by `build` (bodies must be cheap clones), again after connection
    /// errors, 429 and 5xx — waiting as `Retry-After` says — up to [`ATTEMPTS`] times.
    async fn retrying(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let mut n = 0;
        loop {
            n += 1;
            match build().send().await {
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && n < ATTEMPTS => {
                    // Credentials expired mid-transfer: renew them and send again.
                    self.client.reauthenticate(&r, &self.push_scope).await?;
                }
                Ok(r) if retryable(r.status()) && n < ATTEMPTS => {
                    let wait = backoff(n - 1, Some(&r));
                    tracing::debug!(what, status = %r.status(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(r) if retryable(r.status()) => return Err(unexpected(what, r).await),
                Ok(r) => return Ok(r),
                Err(e) if n < ATTEMPTS && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tracing::debug!(what, error = %e, "retrying");
                    tokio::time::sleep(backoff(n - 1, None)).await;
                }
                Err(e) => return Err(http_err(e)),
            }
        }
    }

    /// Opens an upload session: its absolute URL and the registry's minimum chunk length.
    async fn start_upload(&self) -> Result<(String, usize), ClientError> {
        // Bodyless, so it also settles authentication for the upload's requests.
        let start = self.client.url(&self.path("blobs/uploads/"));
        let resp = self
            .client
            .send(&self.push_scope, |h| h.post(&start))
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(unexpected("starting an upload", resp).await);
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Http("upload session without a Location".into()))?;
        let min_chunk = resp
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        Ok((self.absolute(location), min_chunk))
    }

    /// How many bytes the registry holds for an upload (`Range: 0-<last>`).
    async fn upload_offset(&self, url: &str) -> Result<u64, ClientError> {
        let resp = self
            .client
            .authorize(self.client.http.get(url), &self.push_scope)
            .send()
            .await
            .map_err(http_err)?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(unexpected("asking for an upload's status", resp).await);
        }
        Ok(resp
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.rsplit_once('-'))
            .and_then(|(_, end)| end.trim().parse::<u64>().ok())
            .map_or(0, |end| end + 1))
    }

    /// PATCHes `chunk` at `offset`; on a retryable failure asks the registry where the upload
    /// stands and sends only what it lacks. Returns the next upload URL.
    async fn patch_chunk(
        &self,
        url: &str,
        offset: u64,
        chunk: Bytes,
    ) -> Result<String, ClientError> {
        let end = offset + chunk.len() as u64;
        let mut url = url.to_owned();
        let mut sent_from = offset;
        let mut n = 0;
        loop {
            n += 1;
            let part = chunk.slice(usize::try_from(sent_from - offset).unwrap_or(0)..);
            let req = self
                .client
                .authorize(self.client.http.patch(&url), &self.push_scope)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("{sent_from}-{}", end - 1))
                .body(part);
            let failure = match req.send().await {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    if let Some(loc) = r
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                    {
                        url = self.absolute(loc);
                    }
                    return Ok(url);
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && n < ATTEMPTS => {
                    // Credentials expired mid-upload: renew them, then resume.
                    self.client.reauthenticate(&r, &self.push_scope).await?;
                    (r.status().to_string(), std::time::Duration::ZERO)
                }
                Ok(r)
                    if (retryable(r.status())
                        || r.status() == StatusCode::RANGE_NOT_SATISFIABLE)
                        && n < ATTEMPTS =>
                {
                    (r.status().to_string(), backoff(n - 1, Some(&r)))
                }
                Ok(r) => return Err(unexpected("uploading a chunk", r).await),
                Err(e) if n < ATTEMPTS => (e.to_string(), backoff(n - 1, None)),
                Err(e) => return Err(http_err(e)),
            };
            let (failure, wait) = failure;
            tokio::time::sleep(wait).await;
            // Resume where the registry is, not from the start of the blob.
            let have = self.upload_offset(&url).await?;
            if have < offset || have > end {
                return Err(ClientError::Http(format!(
                    "upload is at byte {have}, outside the chunk {offset}-{end} being re-sent"
                )));
            }
            tracing::debug!(%failure, resume_at = have, "resuming a chunk");
            if have == end {
                return Ok(url);
            }
            sent_from = have;
        }
    }

    async fn fetch_manifest(&self, reference: &Reference) -> Result<RawManifest, ClientError> {
        let url = self
            .client
            .url(&self.path(&format!("manifests/{reference}")));
        let resp = self
            .client
            .send(&self.pull_scope, |h| {
                h.get(&url).header(header::ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "{}/{}:{reference}",
                self.client.base, self.repo
            )));
        }
        if !resp.status().is_success() {
            return Err(unexpected("fetching a manifest", resp).await);
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::essence)
            .unwrap_or_default();
        let claimed = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| Digest::parse(d).ok());
        if let Some(len) = resp.content_length()
            && len > berth_oci::MAX_MANIFEST_BYTES as u64
        {
            return Err(ClientError::Manifest(format!(
                "manifest of {len} bytes is over the 4 MiB limit"
            )));
        }
        let bytes = resp.bytes().await.map_err(http_err)?;
        let expected = match reference {
            Reference::Digest(d) => d.clone(),
            _ => claimed.clone().unwrap_or_else(|| Digest::sha256(&bytes)),
        };
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            berth_oci::Manifest::parse(None, &bytes)
                .map_err(|e| ClientError::Manifest(e.to_string()))?
                .media_type
        } else {
            media_type
        };
        RawManifest::verified(bytes, &media_type, &expected)
    }
}

impl RegistryImage {
    /// The repository's tags, every page of them (following `Link: <…>; rel="next"`).
    pub async fn tags(&self) -> Result<Vec<String>, ClientError> {
        let mut url = self.client.url(&self.path("tags/list?n=1000"));
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let resp = self.client.send(&self.pull_scope, |h| h.get(&url)).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(ClientError::NotFound(format!(
                    "repository {} on {}",
                    self.repo, self.client.host
                )));
            }
            if !resp.status().is_success() {
                return Err(unexpected("listing tags", resp).await);
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(u, _)| self.absolute(u));
            let body: serde_json::Value = resp.json().await.map_err(http_err)?;
            tags.extend(
                body["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            );
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// The digest the reference resolves to (HEAD; a GET when the registry sends no digest).
    pub async fn resolve(&self) -> Result<Digest, ClientError> {
        if let Reference::Digest(d) = &self.reference {
            return Ok(d.clone());
        }
        let url = self
            .client
            .url(&self.path(&format!("manifests/{}", self.reference)));
        let resp = self
            .client
            .send(&self.pull_scope, |h| {
                h.head(&url).header(header::ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "{}/{}:{}",
                self.client.host, self.repo, self.reference
            )));
        }
        let claimed = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| Digest::parse(d).ok());
        match claimed {
            Some(d) if resp.status().is_success() => Ok(d),
            _ => Ok(self.fetch_manifest(&self.reference).await?.digest),
        }
    }

    /// The size of a blob (`HEAD`, read pull-only); `NotFound` if the registry lacks it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<u64, ClientError> {
        let url = self.client.url(&self.path(&format!("blobs/{digest}")));
        let resp = self.client.send(&self.pull_scope, |h| h.head(&url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!("blob {digest}")));
        }
        if !resp.status().is_success() {
            return Err(unexpected("asking a blob's size", resp).await);
        }
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ClientError::Http(format!("no Content-Length for blob {digest}")))
    }

    /// Deletes what the reference names: a tag (the manifest stays) or a manifest by digest
    /// (and every tag on it).
    pub async fn delete(&self) -> Result<(), ClientError> {
        let url = self
            .client
            .url(&self.path(&format!("manifests/{}", self.reference)));
        let resp = self
            .client
            .send(&self.push_scope_delete(), |h| h.delete(&url))
            .await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::NOT_FOUND => Err(ClientError::NotFound(format!(
                "{}/{}:{}",
                self.client.host, self.repo, self.reference
            ))),
            _ => Err(unexpected("deleting", resp).await),
        }
    }

    fn push_scope_delete(&self) -> String {
        format!("repository:{}:delete,pull,push", self.repo)
    }

    /// The manifest a tag points at now, if any (HEAD), to skip identical re-pushes.
    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>, ClientError> {
        let url = self.client.url(&self.path(&format!("manifests/{tag}")));
        let resp = self
            .client
            .send(&self.push_scope, |h| {
                h.head(&url).header(header::ACCEPT, ACCEPT_MANIFESTS)
            })
            .await?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        Ok(resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| Digest::parse(d).ok()))
    }
}

#[async_trait]
impl ImageSource for RegistryImage {
    async fn root(&self) -> Result<RawManifest, ClientError> {
        self.fetch_manifest(&self.reference).await
    }

    async fn manifest(&self, digest: &Digest) -> Result<RawManifest, ClientError> {
        self.fetch_manifest(&Reference::Digest(digest.clone()))
            .await
    }

    async fn blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, ClientError> {
        let url = self.client.url(&self.path(&format!("blobs/{digest}")));
        // Redirects are followed by reqwest, which drops Authorization when the host changes.
        let resp = self.client.send(&self.pull_scope, |h| h.get(&url)).await?;
        if !resp.status().is_success() {
            return Err(unexpected("fetching a blob", resp).await);
        }
        let stream = resp.bytes_stream().map_err(http_err).boxed();
        Ok(verify(stream, digest, size))
    }

    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, ClientError> {
        let url = self.client.url(&self.path(&format!("referrers/{digest}")));
        let resp = self
            .client
            .send(&self.pull_scope, |h| {
                h.get(&url).header(header::ACCEPT, media::OCI_INDEX)
            })
            .await?;
        let index = match resp.status() {
            StatusCode::OK => resp.bytes().await.map_err(http_err)?,
            // No referrers API: the OCI 1.1 fallback tag `<alg>-<hex>`.
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                let Ok(tag) =
                    Tag::parse(&format!("{}-{}", digest.algorithm().as_str(), digest.hex()))
                else {
                    return Ok(Vec::new());
                };
                match self.fetch_manifest(&Reference::Tag(tag)).await {
                    Ok(m) => m.bytes,
                    Err(ClientError::NotFound(_)) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
            _ => return Err(unexpected("listing referrers", resp).await),
        };
        if index.len() > berth_oci::MAX_MANIFEST_BYTES {
            return Err(ClientError::Manifest("referrers index over 4 MiB".into()));
        }
        let parsed = berth_oci::Manifest::parse(Some(media::OCI_INDEX), &index)
            .map_err(|e| ClientError::Manifest(format!("referrers of {digest}: {e}")))?;
        Ok(parsed.references.into_iter().map(|r| r.digest).collect())
    }

    fn mount_origin(&self) -> Option<MountOrigin> {
        Some(MountOrigin {
            host: self.client.host.clone(),
            repository: self.repo.to_string(),
        })
    }
}

#[async_trait]
impl ImageSink for RegistryImage {
    async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, ClientError> {
        let url = self.client.url(&self.path(&format!("blobs/{digest}")));
        let resp = self.client.send(&self.push_scope, |h| h.head(&url)).await?;
        // The header, not `content_length()`: a HEAD response's body is empty.
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Ok(resp.status().is_success() && declared.is_none_or(|n| n == size))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        data: ByteStream,
    ) -> Result<(), ClientError> {
        let (mut url, min_chunk) = self.start_upload().await?;
        // Cancels the session if this upload fails or is dropped (another blob of the copy
        // failed): a registry should not hold staged data nobody will finish.
        let mut session = SessionGuard {
            image: Some(self.clone()),
            url: url.clone(),
        };
        let chunk_size = CHUNK.max(min_chunk);
        let mut data = Chunker {
            stream: verify(data, digest, size),
            leftover: None,
        };
        let mut offset = 0u64;
        loop {
            // Exactly what is left of the blob, at most a chunk: no buffer grows by doubling.
            let left = usize::try_from(size.saturating_sub(offset)).unwrap_or(chunk_size);
            let chunk = data.next_chunk(chunk_size.min(left.max(1))).await?;
            let last = offset + chunk.len() as u64 >= size;
            // At the last chunk, reach the end of the stream so its size and digest check runs
            // before the commit: corrupt source data is never committed.
            if last && !data.at_end().await? {
                return Err(ClientError::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: size + 1,
                });
            }
            if offset == 0 && last {
                // Small blob: one PUT with the body (re-sent whole on a retryable failure).
                let put = with_digest(&url, digest);
                let resp = self
                    .retrying("uploading a blob", || {
                        self.client
                            .authorize(self.client.http.put(&put), &self.push_scope)
                            .header(header::CONTENT_TYPE, "application/octet-stream")
                            .body(chunk.clone())
                    })
                    .await?;
                expect_status(resp, StatusCode::CREATED, "uploading a blob").await?;
                session.image = None;
                return Ok(());
            }
            url = self.patch_chunk(&url, offset, chunk.clone()).await?;
            session.url.clone_from(&url);
            offset += chunk.len() as u64;
            if last {
                break;
            }
        }
        let put = with_digest(&url, digest);
        let resp = self
            .retrying("completing an upload", || {
                self.client
                    .authorize(self.client.http.put(&put), &self.push_scope)
                    .header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        expect_status(resp, StatusCode::CREATED, "completing an upload").await?;
        session.image = None;
        Ok(())
    }

    async fn put_manifest(
        &self,
        manifest: &RawManifest,
        placement: Placement<'_>,
    ) -> Result<(), ClientError> {
        let reference = match (placement, &self.reference) {
            (Placement::Root { tag: Some(t) }, _) => t.to_string(),
            (Placement::Root { tag: None }, Reference::Tag(t)) => t.to_string(),
            _ => manifest.digest.to_string(),
        };
        let tagged = reference != manifest.digest.to_string();
        if tagged && self.tag_digest(&reference).await?.as_ref() == Some(&manifest.digest) {
            // Already there: an identical re-push succeeds even on an immutable repository.
            return Ok(());
        }
        let url = self
            .client
            .url(&self.path(&format!("manifests/{reference}")));
        let resp = self
            .client
            .send(&self.push_scope, |h| {
                h.request(Method::PUT, &url)
                    .header(header::CONTENT_TYPE, &manifest.media_type)
                    .body(manifest.bytes.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let err = unexpected("putting a manifest", resp).await;
            if let ClientError::Registry { detail, .. } = &err
                && tagged
                && (detail.contains("immutable") || detail.starts_with("TAG_INVALID"))
            {
                return Err(ClientError::TagImmutable {
                    tag: reference,
                    repository: format!("{}/{}", self.client.host, self.repo),
                    detail: detail.clone(),
                });
            }
            return Err(err);
        }
        Ok(())
    }

    async fn mount_blob(&self, digest: &Digest, origin: &MountOrigin) -> Result<bool, ClientError> {
        if origin.host != self.client.host || origin.repository == self.repo.as_str() {
            return Ok(false);
        }
        let url = self.client.url(&self.path(&format!(
            "blobs/uploads/?mount={digest}&from={}",
            origin.repository
        )));
        let scope = format!("{} repository:{}:pull", self.push_scope, origin.repository);
        let resp = self.client.send(&scope, |h| h.post(&url)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an upload instead: close it; the blob is copied.
                if let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    let loc = self.absolute(loc);
                    let _ = self
                        .client
                        .authorize(self.client.http.delete(&loc), &scope)
                        .send()
                        .await;
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    async fn finish(&self) -> Result<(), ClientError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunker_splits_frames_across_chunks() {
        let frames: Vec<Result<Bytes, ClientError>> = ["abc", "defgh", "i", "jklmnopq"]
            .into_iter()
            .map(|f| Ok(Bytes::from(f)))
            .collect();
        let mut c = Chunker {
            stream: futures::stream::iter(frames).boxed(),
            leftover: None,
        };
        let mut chunks = Vec::new();
        loop {
            let chunk = c.next_chunk(4).await.expect("chunk");
            if chunk.is_empty() {
                break;
            }
            chunks.push(String::from_utf8(chunk.to_vec()).expect("utf8"));
        }
        assert_eq!(chunks, ["abcd", "efgh", "ijkl", "mnop", "q"]);
        assert!(c.at_end().await.expect("end"));
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        assert!(plain_http("localhost:5000", &[]));
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("[::1]:5000", &[]));
        assert!(!plain_http("registry.example", &[]));
        assert!(!plain_http("10.0.0.1:5000", &[]));
        assert!(plain_http("10.0.0.1:5000", &["10.0.0.1:5000".to_owned()]));
        assert!(
            !plain_http("127.0.0.1.evil.com", &[]),
            "a host name is not an address"
        );
        assert!(!plain_http("127.0.0.1.evil.com:5000", &[]));
    }
}
