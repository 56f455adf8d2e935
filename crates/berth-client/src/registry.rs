//! A registry as a source and a sink, over the OCI Distribution API, with the auth flow
//! registries use: try, read the `WWW-Authenticate` challenge, answer with Basic credentials or a
//! Bearer token from the challenge's realm (cached per scope), try again once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::{Digest, ImageRef, Reference, RepoName, media};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use crate::ClientError;
use crate::auth::{Challenge, Credentials, Scheme};
use crate::image::{ByteStream, ImageSink, ImageSource, Placement, RawManifest, verify};

/// What `Accept` asks for when fetching manifests.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A connection to one registry host.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
    /// Bearer tokens by scope string.
    tokens: Mutex<HashMap<String, String>>,
    /// The scheme learned from the last challenge (so later requests authenticate up front).
    basic: Mutex<bool>,
}

/// Whether a registry host is spoken to over plain HTTP: loopback addresses, as docker does by
/// default, plus whatever the caller lists.
pub fn plain_http(host: &str, insecure: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        _ if host.starts_with('[') => host.split_inclusive(']').next().unwrap_or(host),
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    name == "localhost"
        || name.starts_with("127.")
        || name == "[::1]"
        || insecure.iter().any(|i| i == host)
}

impl RegistryClient {
    /// A client for `host` (`registry.example:5000`), with optional credentials.
    pub fn new(
        host: &str,
        credentials: Option<Credentials>,
        insecure: &[String],
    ) -> Result<Self, ClientError> {
        let scheme = if plain_http(host, insecure) {
            "http"
        } else {
            "https"
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(RegistryClient {
            http,
            base: format!("{scheme}://{host}"),
            credentials,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
        })
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
            && let Some(Credentials::Basic { username, password }) = &self.credentials
        {
            return req.basic_auth(username, Some(password));
        }
        req
    }

    /// Sends a request built by `build`, authenticating on a 401 and trying once more.
    /// `build` must be cheap and repeatable (no streaming bodies: prime auth first).
    async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let resp = self
            .authorize(build(&self.http), scope)
            .send()
            .await
            .map_err(http_err)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        self.answer_challenge(&resp, scope).await?;
        let resp = self
            .authorize(build(&self.http), scope)
            .send()
            .await
            .map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized(format!(
                "{} refused the credentials for {scope}",
                self.base
            )));
        }
        Ok(resp)
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
        match challenge.scheme {
            Scheme::Basic => {
                if !matches!(self.credentials, Some(Credentials::Basic { .. })) {
                    return Err(ClientError::Unauthorized(format!(
                        "{} wants a user name and password: run `berth login`",
                        self.base
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
        query.push(("scope", scope));
        let req = match &self.credentials {
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

/// One repository (and reference) on a registry, as a source and a sink.
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
        // Opening the session is bodyless, so it also settles authentication for the upload.
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
        let url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.client.url(location)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put_url = format!("{url}{sep}digest={digest}");
        let body = reqwest::Body::wrap_stream(verify(data, digest, size));
        let req = self
            .client
            .authorize(self.client.http.put(&put_url), &self.push_scope)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(body);
        let resp = req.send().await.map_err(http_err)?;
        if resp.status() != StatusCode::CREATED {
            return Err(unexpected("uploading a blob", resp).await);
        }
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
            return Err(unexpected("putting a manifest", resp).await);
        }
        Ok(())
    }

    async fn finish(&self) -> Result<(), ClientError> {
        Ok(())
    }
}
