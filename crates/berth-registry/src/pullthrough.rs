//! Pull-through cache: a repository under a rule's prefix is a cache of an upstream registry.
//!
//! A rule (ECR's `CreatePullThroughCacheRule`) maps `PREFIX/NAME` to `UPSTREAM/[UPREFIX/]NAME`
//! (Docker Hub names without a namespace get `library/`). Upstream credentials are stored sealed
//! as documents of their own (`ecr-pullthroughcache/NAME`, what ECR's `credentialArn` names in
//! Secrets Manager).
//!
//! How a pull goes:
//! - **Manifest by tag**: the cached copy is served while the tag was checked against the
//!   upstream less than `check_interval` ago; otherwise the upstream is asked (`HEAD`). The same
//!   digest: served from the cache. Another one, or nothing cached: the upstream's manifest is
//!   served as it comes and the image is imported in the background (every blob and child
//!   manifest, then the manifest under its tag). When the upstream fails, times out or answers
//!   429, a cached copy is served anyway (`X-Berth-Pull-Through: stale (…)`, and a warning in
//!   the log); with nothing cached the client gets the upstream's answer as an error.
//! - **Manifest by digest**: served from the cache, else fetched, served and imported.
//! - **Blob** missing from the cache: fetched once per blob however many clients and the import
//!   ask at the same time. The request that starts the fetch is answered as the bytes arrive
//!   while they are written (digest verified as they stream); the others wait for the blob to
//!   be stored and read it from there.
//!
//! Concurrent checks of one tag (or fetches of one manifest) are serialised on a lock stripe,
//! so twenty clients pulling an uncached image make one upstream request per manifest and blob.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_client::ClientError;
use berth_client::auth::Credentials;
use berth_client::image::{ImageSource, RawManifest};
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_oci::{Digest, ImageRef, Reference, RepoName, Tag};
use berth_store::{ByteStream, DigestCache, PutMode, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::access::Caller;
use crate::error::RegistryError;
use crate::service::Registry;

/// The document kind of pull-through cache rules (keyed by repository prefix).
pub const RULE_KIND: &str = "pull-through-cache-rule";
/// The document kind of upstream credentials (keyed by name).
pub const CREDENTIAL_KIND: &str = "upstream-credential";
/// The secret-name prefix ECR requires of pull-through credentials.
pub const SECRET_PREFIX: &str = "ecr-pullthroughcache/";
/// The response header saying where a pull-through answer came from: `hit`, `miss` (the
/// upstream's bytes) or `stale (why)`.
pub const HEADER: &str = "x-berth-pull-through";

/// Bytes of upstream manifests kept in memory for the clients and imports that need them
/// again shortly.
const MANIFEST_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Blobs one import fetches at once.
const IMPORT_JOBS: usize = 4;
/// Lock stripes for tag checks and manifest fetches.
const STRIPES: usize = 64;

/// A rule as stored (its prefix is the document's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The upstream registry: `host[:port]`, optionally `https://` or `http://` (berth: plain
    /// HTTP only when said, or for loopback hosts).
    pub upstream_registry_url: String,
    /// The upstream repository prefix (`ROOT`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_repository_prefix: Option<String>,
    /// The credential's ARN (`arn:aws:secretsmanager:…:secret:ecr-pullthroughcache/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
    /// Recorded and returned (berth reaches the upstream itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
}

impl Rule {
    /// The upstream's API host and whether it is spoken to over plain HTTP when said so.
    pub fn host(&self) -> (String, bool) {
        let u = self.upstream_registry_url.trim_end_matches('/');
        if let Some(h) = u.strip_prefix("http://") {
            return (h.to_owned(), true);
        }
        let h = u.strip_prefix("https://").unwrap_or(u);
        // Docker Hub's API lives at registry-1.docker.io.
        let h = match h {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        (h.to_owned(), false)
    }

    /// ECR's `upstreamRegistry` for this URL (`oci` for any other registry: berth's own value).
    pub fn upstream_kind(&self) -> &'static str {
        let (h, _) = self.host();
        let name = h.split(':').next().unwrap_or_default();
        match name {
            "registry-1.docker.io" => "docker-hub",
            "ghcr.io" => "github-container-registry",
            "quay.io" => "quay",
            "registry.k8s.io" => "k8s",
            "public.ecr.aws" => "ecr-public",
            "registry.gitlab.com" => "gitlab-container-registry",
            n if n.ends_with(".azurecr.io") => "azure-container-registry",
            n if n.contains(".dkr.ecr.") && n.ends_with(".amazonaws.com") => "ecr",
            _ => "oci",
        }
    }

    /// The upstream repository of the local repository `name` under `prefix`.
    pub fn upstream_repository(&self, prefix: &str, name: &str) -> Option<String> {
        let rest = if prefix == crate::repos::ROOT_PREFIX {
            name
        } else {
            name.strip_prefix(prefix.trim_end_matches('/'))?
                .strip_prefix('/')?
        };
        if rest.is_empty() {
            return None;
        }
        let up = match self.upstream_repository_prefix.as_deref() {
            None | Some("ROOT") | Some("") => rest.to_owned(),
            Some(p) => format!("{}/{rest}", p.trim_end_matches('/')),
        };
        if self.upstream_kind() == "docker-hub" && !up.contains('/') {
            return Some(format!("library/{up}"));
        }
        Some(up)
    }

    /// The credential name the ARN names.
    pub fn credential_name(&self) -> Option<&str> {
        credential_name(self.credential_arn.as_deref()?)
    }
}

/// The name in a credential ARN (`…:secret:ecr-pullthroughcache/NAME`), or the bare name.
pub fn credential_name(arn: &str) -> Option<&str> {
    let name = arn.rsplit_once(":secret:").map_or(arn, |(_, n)| n);
    (name.starts_with(SECRET_PREFIX) && name.len() > SECRET_PREFIX.len()).then_some(name)
}

/// An upstream credential, as sealed (ECR's Secrets Manager secret shape).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSecret {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub access_token: String,
}

impl std::fmt::Debug for UpstreamSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSecret")
            .field("username", &self.username)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

/// Where a manifest answer comes from.
#[derive(Debug)]
pub enum ManifestAnswer {
    /// From the store; the header value to add.
    Local(&'static str, Option<String>),
    /// The upstream's bytes (being imported).
    Upstream(RawManifest),
}

/// A blob answer for the request that fetches it.
pub struct BlobStream {
    /// Its size.
    pub size: u64,
    /// The bytes as they arrive.
    pub body: ByteStream,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .finish()
    }
}

/// A rule as read: its prefix, the rule, and its version (last update time).
pub(crate) type RuleEntry = (String, Rule, i64);

type Done = watch::Receiver<Option<Result<(), String>>>;

/// The pull-through cache's shared state (one per server process).
#[derive(Debug)]
pub struct PullThrough {
    check_interval: Duration,
    timeout: Duration,
    rules: Mutex<Option<(Instant, Arc<Vec<RuleEntry>>)>>,
    clients: Mutex<HashMap<(String, i64), Arc<RegistryClient>>>,
    /// Tag checks: (repository, tag) → when, and the digest the upstream answered.
    checked: Mutex<HashMap<(String, String), (Instant, Digest)>>,
    manifests: Mutex<DigestCache<RawManifest>>,
    /// Blob sizes from the manifests seen (a blob GET carries no size).
    sizes: Mutex<HashMap<Digest, u64>>,
    blobs: Mutex<HashMap<(String, Digest), Done>>,
    imports: Mutex<HashSet<(String, Digest)>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl PullThrough {
    /// State for tag checks at most every `check_interval`, upstream requests bounded by
    /// `timeout`.
    pub fn new(check_interval: Duration, timeout: Duration) -> Self {
        PullThrough {
            check_interval,
            timeout,
            rules: Mutex::new(None),
            clients: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashMap::new()),
            manifests: Mutex::new(DigestCache::new(MANIFEST_CACHE_BYTES)),
            sizes: Mutex::new(HashMap::new()),
            blobs: Mutex::new(HashMap::new()),
            imports: Mutex::new(HashSet::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, repo: &str, key: &str) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (repo, key).hash(&mut h);
        let i = usize::try_from(h.finish() % STRIPES as u64).unwrap_or(0);
        &self.stripes[i]
    }

    /// Forgets the rules read (after a rule changed here; other replicas re-read within 5 s).
    pub fn rules_changed(&self) {
        *lock(&self.rules) = None;
        lock(&self.clients).clear();
    }

    fn remember(&self, m: &RawManifest) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.bytes) {
            let mut sizes = lock(&self.sizes);
            if sizes.len() > 200_000 {
                sizes.clear();
            }
            for d in descriptors(&v) {
                sizes.insert(d.0, d.1);
            }
        }
        lock(&self.manifests).insert(&m.digest, m.clone(), m.bytes.len());
    }

    fn cached_manifest(&self, d: &Digest) -> Option<RawManifest> {
        lock(&self.manifests).get(d)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The descriptors a manifest references: config, layers, child manifests (not its subject).
fn descriptors(v: &serde_json::Value) -> Vec<(Digest, u64, bool)> {
    let mut out = Vec::new();
    let mut add = |d: &serde_json::Value, manifest: bool| {
        if let (Some(digest), Some(size)) = (
            d["digest"].as_str().and_then(|s| Digest::parse(s).ok()),
            d["size"].as_u64(),
        ) {
            out.push((digest, size, manifest));
        }
    };
    if v["config"].is_object() {
        add(&v["config"], false);
    }
    for l in v["layers"].as_array().into_iter().flatten() {
        add(l, false);
    }
    for m in v["manifests"].as_array().into_iter().flatten() {
        add(m, true);
    }
    out
}

/// The upstream a local repository maps to.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    prefix: String,
    host: String,
    repository: RepoName,
    client: Arc<RegistryClient>,
}

impl Upstream {
    fn image(
        &self,
        tag: Option<Tag>,
        digest: Option<Digest>,
    ) -> Result<RegistryImage, RegistryError> {
        let r = ImageRef::new(&self.host, self.repository.clone(), tag, digest)
            .map_err(|e| RegistryError::Upstream(format!("upstream {}: {e}", self.host)))?;
        Ok(RegistryImage::new(Arc::clone(&self.client), &r))
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }
}

/// An upstream failure as the client sees it when nothing is cached.
fn upstream_error(up: &Upstream, e: ClientError, what: &str) -> RegistryError {
    match e {
        ClientError::NotFound(_) => RegistryError::ManifestUnknown(format!(
            "{what} (not in the pull-through cache, and the upstream {} does not have it)",
            up.describe()
        )),
        ClientError::Registry { status: 429, .. } => RegistryError::TooManyRequests(format!(
            "the upstream {} is rate-limiting this registry (429) and {what} is not cached yet; retry later",
            up.describe()
        )),
        other => RegistryError::Upstream(format!(
            "{what} is not cached and the upstream {} failed: {other}",
            up.describe()
        )),
    }
}

/// Why a stale copy is served, for the header and the log.
fn stale_reason(e: &ClientError) -> String {
    match e {
        ClientError::Registry { status, .. } => format!("upstream answered {status}"),
        ClientError::Http(m) if m.contains("timed out") => "upstream timed out".into(),
        ClientError::Http(_) => "upstream unreachable".into(),
        ClientError::Unauthorized(_) => "upstream refused the credentials".into(),
        other => format!(
            "upstream failed: {}",
            other.to_string().chars().take(120).collect::<String>()
        ),
    }
}

impl Registry {
    /// The rules, read at most every 5 s (so replicas see each other's changes soon).
    async fn pull_through_rules(&self) -> Result<Arc<Vec<RuleEntry>>, RegistryError> {
        if let Some((at, rules)) = lock(&self.pull_through.rules).as_ref()
            && at.elapsed() < Duration::from_secs(5)
        {
            return Ok(Arc::clone(rules));
        }
        let docs = self.identity().documents(RULE_KIND).await?;
        let rules: Vec<RuleEntry> = docs
            .into_iter()
            .filter_map(|d| {
                let r: Rule = serde_json::from_str(&d.document).ok()?;
                Some((d.key, r, d.updated_at))
            })
            .collect();
        let rules = Arc::new(rules);
        *lock(&self.pull_through.rules) = Some((Instant::now(), Arc::clone(&rules)));
        Ok(rules)
    }

    /// The rule covering `repo` (the longest prefix; `ROOT` last), if any.
    pub(crate) async fn pull_through_rule(
        &self,
        repo: &RepoName,
    ) -> Result<Option<RuleEntry>, RegistryError> {
        let rules = self.pull_through_rules().await?;
        if rules.is_empty() {
            return Ok(None);
        }
        Ok(rules
            .iter()
            .filter(|(p, r, _)| r.upstream_repository(p, repo.as_str()).is_some())
            .max_by_key(|(p, _, _)| {
                if p == crate::repos::ROOT_PREFIX {
                    0
                } else {
                    p.len() + 1
                }
            })
            .cloned())
    }

    /// Seals an upstream credential under `name` (`ecr-pullthroughcache/…`).
    pub(crate) async fn put_upstream_credential(
        &self,
        name: &str,
        secret: &UpstreamSecret,
    ) -> Result<(), RegistryError> {
        let plain =
            serde_json::to_vec(secret).map_err(|e| RegistryError::Upstream(e.to_string()))?;
        let sealed = self
            .keys
            .seal
            .seal(&plain, credential_aad(name).as_bytes())
            .map_err(|e| RegistryError::Upstream(format!("sealing the credential: {e}")))?;
        let doc = base64::engine::general_purpose::STANDARD.encode(sealed);
        self.identity()
            .put_document(CREDENTIAL_KIND, name, &doc, PutMode::Upsert)
            .await?;
        self.pull_through.rules_changed();
        Ok(())
    }

    /// Whether a credential of that name is stored.
    pub(crate) async fn upstream_credential_exists(
        &self,
        name: &str,
    ) -> Result<bool, RegistryError> {
        Ok(self
            .identity()
            .document(CREDENTIAL_KIND, name)
            .await?
            .is_some())
    }

    /// Deletes a credential; false if there was none.
    pub(crate) async fn delete_upstream_credential(
        &self,
        name: &str,
    ) -> Result<bool, RegistryError> {
        match self.identity().delete_document(CREDENTIAL_KIND, name).await {
            Ok(_) => {
                self.pull_through.rules_changed();
                Ok(true)
            }
            Err(StoreError::DocumentUnknown { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn upstream_credentials(&self, name: &str) -> Result<Credentials, RegistryError> {
        let doc = self
            .identity()
            .document(CREDENTIAL_KIND, name)
            .await?
            .ok_or_else(|| {
                RegistryError::Upstream(format!("the upstream credential {name} does not exist"))
            })?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(doc.document.trim())
            .map_err(|_| RegistryError::Upstream(format!("credential {name} is corrupt")))?;
        let plain = self
            .keys
            .seal
            .open(&sealed, credential_aad(name).as_bytes())
            .map_err(|e| RegistryError::Upstream(format!("opening credential {name}: {e}")))?;
        let s: UpstreamSecret = serde_json::from_str(plain.expose()).map_err(|_| {
            RegistryError::Upstream(format!(
                "credential {name} is not {{username, accessToken}}"
            ))
        })?;
        Ok(Credentials::Basic {
            username: s.username,
            password: s.access_token,
        })
    }

    /// A client for a rule's upstream (kept while the rule is unchanged: its tokens are reused).
    pub(crate) async fn upstream_client(
        &self,
        prefix: &str,
        rule: &Rule,
        version: i64,
    ) -> Result<Arc<RegistryClient>, RegistryError> {
        let key = (prefix.to_owned(), version);
        if let Some(c) = lock(&self.pull_through.clients).get(&key) {
            return Ok(Arc::clone(c));
        }
        let creds = match rule.credential_name() {
            Some(n) => Some(self.upstream_credentials(n).await?),
            None => None,
        };
        let (host, plain) = rule.host();
        let insecure = if plain {
            vec![host.clone()]
        } else {
            Vec::new()
        };
        let client = Arc::new(
            RegistryClient::new(&host, creds, &insecure)
                .map_err(|e| RegistryError::Upstream(e.to_string()))?
                .with_attempts(2),
        );
        lock(&self.pull_through.clients).insert(key, Arc::clone(&client));
        Ok(client)
    }

    async fn upstream_of(&self, repo: &RepoName) -> Result<Option<Upstream>, RegistryError> {
        let Some((prefix, rule, version)) = self.pull_through_rule(repo).await? else {
            return Ok(None);
        };
        let name = rule
            .upstream_repository(&prefix, repo.as_str())
            .unwrap_or_default();
        let repository = RepoName::parse(&name)
            .map_err(|e| RegistryError::Upstream(format!("upstream repository {name:?}: {e}")))?;
        let client = self.upstream_client(&prefix, &rule, version).await?;
        Ok(Some(Upstream {
            prefix,
            host: rule.host().0,
            repository,
            client,
        }))
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.pull_through.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Http(format!(
                "timed out after {:?}",
                self.pull_through.timeout
            ))),
        }
    }

    /// Whether the caller may import from the upstream into `repo`: ECR's
    /// `ecr:BatchImportUpstreamImage`, and `ecr:CreateRepository` for a repository to create.
    /// Asked before the upstream is: a caller who may only pull never makes upstream traffic.
    async fn authorize_import(&self, who: &Caller, repo: &RepoName) -> Result<bool, RegistryError> {
        let exists = self.meta().repository(repo).await?.is_some();
        if self.config().auth {
            let mut actions = vec!["ecr:BatchImportUpstreamImage"];
            if !exists {
                actions.push("ecr:CreateRepository");
            }
            match self.authorize_repository(who, &actions, repo, &[]).await? {
                Ok(_) => {}
                Err(crate::access::Denial::Unauthenticated) => {
                    return Err(self.unauthorized("authentication required"));
                }
                Err(crate::access::Denial::Denied(m)) => return Err(RegistryError::Denied(m)),
                Err(crate::access::Denial::Unavailable(e)) => {
                    return Err(RegistryError::unavailable(e));
                }
            }
        }
        Ok(exists)
    }

    /// The repository, created from the most specific `PULL_THROUGH_CACHE` creation template
    /// unless it `exists` (as [`Registry::authorize_import`], which the caller passed, found).
    async fn ensure_cache_repository(
        &self,
        repo: &RepoName,
        up: &Upstream,
        exists: bool,
    ) -> Result<(), RegistryError> {
        if exists {
            return Ok(());
        }
        let templates = self.identity().templates().await?;
        let settings = match crate::repos::matching_template(
            &templates,
            repo.as_str(),
            "PULL_THROUGH_CACHE",
        ) {
            Some((t, s)) => {
                tracing::info!(repository = %repo, template = %t.prefix, upstream = %up.describe(),
                    "creating a pull-through cache repository from its creation template");
                s.new_repository()
            }
            None => {
                tracing::info!(repository = %repo, upstream = %up.describe(), rule = %up.prefix,
                    "creating a pull-through cache repository");
                berth_store::NewRepository::default()
            }
        };
        match self.meta().create_repository(repo, &settings).await {
            Ok(_) | Err(StoreError::RepositoryExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the rule's upstream answers with its credentials: `None` if so, else why not.
    pub(crate) async fn validate_upstream(
        &self,
        prefix: &str,
        rule: &Rule,
        version: i64,
    ) -> Option<String> {
        let client = match self.upstream_client(prefix, rule, version).await {
            Ok(c) => c,
            Err(e) => return Some(e.to_string()),
        };
        let (host, _) = rule.host();
        let probe = RepoName::parse("berth-validate/probe")
            .ok()
            .and_then(|r| ImageRef::new(&host, r, None, None).ok())?;
        let img = RegistryImage::new(client, &probe);
        match self.bounded(img.tags()).await {
            Ok(_) | Err(ClientError::NotFound(_) | ClientError::Registry { status: 404, .. }) => {
                None
            }
            Err(ClientError::Unauthorized(m)) => {
                Some(format!("the upstream refused the credentials: {m}"))
            }
            Err(e) => Some(format!("the upstream could not be reached: {e}")),
        }
    }

    /// The pull-through side of a manifest GET/HEAD: `None` when `repo` is no rule's.
    pub(crate) async fn pull_through_manifest(
        &self,
        who: &Caller,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestAnswer>, RegistryError> {
        let Some(up) = self.upstream_of(repo).await? else {
            return Ok(None);
        };
        let key = reference.to_string();
        let _serial = self.pull_through.stripe(repo.as_str(), &key).lock().await;
        let local = match self.resolve(repo, reference).await {
            Ok(r) => Some(r),
            Err(
                RegistryError::ManifestUnknown(_)
                | RegistryError::NameUnknown(_)
                | RegistryError::ManifestChildUnknown(_),
            ) => None,
            Err(e) => return Err(e),
        };
        match reference {
            Reference::Digest(d) => {
                if local.is_some() {
                    return Ok(Some(ManifestAnswer::Local("hit", None)));
                }
                let exists = self.authorize_import(who, repo).await?;
                let raw = match self.pull_through.cached_manifest(d) {
                    Some(m) => m,
                    None => {
                        let img = up.image(None, Some(d.clone()))?;
                        self.bounded(img.root())
                            .await
                            .map_err(|e| upstream_error(&up, e, &format!("manifest {d}")))?
                    }
                };
                self.start_import(repo, &up, raw.clone(), None, exists)
                    .await?;
                Ok(Some(ManifestAnswer::Upstream(raw)))
            }
            Reference::Tag(t) => {
                let ck = (repo.to_string(), t.to_string());
                let fresh = lock(&self.pull_through.checked)
                    .get(&ck)
                    .filter(|(at, _)| at.elapsed() < self.pull_through.check_interval)
                    .map(|(_, d)| d.clone());
                if let Some(d) = fresh {
                    if local.as_ref().is_some_and(|l| l.digest == d) {
                        return Ok(Some(ManifestAnswer::Local("hit", None)));
                    }
                    if let Some(raw) = self.pull_through.cached_manifest(&d) {
                        // Being imported: the bytes the check fetched (not cached yet, so only
                        // for a caller who may import).
                        let exists = self.authorize_import(who, repo).await?;
                        self.start_import(repo, &up, raw.clone(), Some(t.clone()), exists)
                            .await?;
                        return Ok(Some(ManifestAnswer::Upstream(raw)));
                    }
                }
                // The upstream is asked only for a caller who may import; anyone who may pull
                // gets what is cached.
                let exists = match self.authorize_import(who, repo).await {
                    Ok(exists) => exists,
                    Err(e) => {
                        return match local {
                            Some(_) => Ok(Some(ManifestAnswer::Local("hit", None))),
                            None => Err(e),
                        };
                    }
                };
                let img = up.image(Some(t.clone()), None)?;
                let digest = match self.bounded(img.resolve()).await {
                    Ok(d) => d,
                    Err(e) => {
                        if local.is_some() {
                            let why = stale_reason(&e);
                            tracing::warn!(repository = %repo, tag = %t, upstream = %up.describe(),
                                error = %e, "pull-through: serving the cached tag, the upstream failed");
                            return Ok(Some(ManifestAnswer::Local("stale", Some(why))));
                        }
                        return Err(upstream_error(&up, e, &format!("{repo}:{t}")));
                    }
                };
                lock(&self.pull_through.checked).insert(ck, (Instant::now(), digest.clone()));
                if local.as_ref().is_some_and(|l| l.digest == digest) {
                    return Ok(Some(ManifestAnswer::Local("hit", None)));
                }
                let raw = match self.pull_through.cached_manifest(&digest) {
                    Some(m) => m,
                    None => {
                        let by_digest = up.image(None, Some(digest.clone()))?;
                        match self.bounded(by_digest.root()).await {
                            Ok(m) => m,
                            Err(e) if local.is_some() => {
                                tracing::warn!(repository = %repo, tag = %t, error = %e,
                                    "pull-through: serving the cached tag, the upstream's new manifest could not be fetched");
                                return Ok(Some(ManifestAnswer::Local(
                                    "stale",
                                    Some(stale_reason(&e)),
                                )));
                            }
                            Err(e) => return Err(upstream_error(&up, e, &format!("{repo}:{t}"))),
                        }
                    }
                };
                self.start_import(repo, &up, raw.clone(), Some(t.clone()), exists)
                    .await?;
                Ok(Some(ManifestAnswer::Upstream(raw)))
            }
            _ => Ok(Some(ManifestAnswer::Local("hit", None))),
        }
    }

    /// Starts importing `root` (and everything it references) into `repo`, once at a time.
    /// The caller has been authorized ([`Registry::authorize_import`]); `exists` is what that
    /// found of the repository.
    async fn start_import(
        &self,
        repo: &RepoName,
        up: &Upstream,
        root: RawManifest,
        tag: Option<Tag>,
        exists: bool,
    ) -> Result<(), RegistryError> {
        self.ensure_cache_repository(repo, up, exists).await?;
        self.pull_through.remember(&root);
        let key = (repo.to_string(), root.digest.clone());
        if !lock(&self.pull_through.imports).insert(key.clone()) {
            return Ok(());
        }
        let reg = self.clone();
        let (repo, up) = (repo.clone(), up.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = reg.import(&up, &repo, &root, tag.as_ref()).await;
            lock(&reg.pull_through.imports).remove(&key);
            match result {
                Ok(()) => tracing::info!(repository = %repo, digest = %root.digest,
                    tag = tag.as_ref().map(ToString::to_string), upstream = %up.describe(),
                    seconds = started.elapsed().as_secs_f64(), "pull-through: image cached"),
                Err(e) => tracing::warn!(repository = %repo, digest = %root.digest,
                    upstream = %up.describe(), error = %e, "pull-through: caching the image failed"),
            }
        });
        Ok(())
    }

    /// Stores a manifest's blobs and children, then the manifest (under `tag` if given).
    fn import<'a>(
        &'a self,
        up: &'a Upstream,
        repo: &'a RepoName,
        raw: &'a RawManifest,
        tag: Option<&'a Tag>,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let v: serde_json::Value =
                serde_json::from_slice(&raw.bytes).map_err(|e| format!("manifest: {e}"))?;
            let refs = descriptors(&v);
            for (d, _, manifest) in &refs {
                if !*manifest {
                    continue;
                }
                if self
                    .resolve(repo, &Reference::Digest(d.clone()))
                    .await
                    .is_ok()
                {
                    continue;
                }
                let child = {
                    // The lock a client's GET of this manifest takes: one upstream fetch
                    // between them (held for the fetch only).
                    let _serial = self
                        .pull_through
                        .stripe(repo.as_str(), &d.to_string())
                        .lock()
                        .await;
                    match self.pull_through.cached_manifest(d) {
                        Some(m) => m,
                        None => {
                            let img = up.image(None, Some(d.clone())).map_err(|e| e.to_string())?;
                            let m = self.bounded(img.root()).await.map_err(|e| e.to_string())?;
                            self.pull_through.remember(&m);
                            m
                        }
                    }
                };
                self.import(up, repo, &child, None).await?;
            }
            let blobs: Vec<(Digest, u64)> = refs
                .iter()
                .filter(|r| !r.2)
                .map(|(d, s, _)| (d.clone(), *s))
                .collect();
            let results: Vec<Result<(), String>> = futures::stream::iter(blobs)
                .map(|(d, size)| async move { self.ensure_blob(up, repo, &d, size).await })
                .buffer_unordered(IMPORT_JOBS)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>, String>>()?;
            let reference = match tag {
                Some(t) => Reference::Tag(t.clone()),
                None => Reference::Digest(raw.digest.clone()),
            };
            self.store_manifest(
                repo,
                &reference,
                Some(&raw.media_type),
                raw.bytes.clone(),
                false,
            )
            .await
            .map_err(|e| format!("storing manifest {}: {e}", raw.digest))?;
            Ok(())
        })
    }

    /// Makes the blob present in `repo`, fetching it (once, however many ask) if it is not.
    async fn ensure_blob(
        &self,
        up: &Upstream,
        repo: &RepoName,
        d: &Digest,
        size: u64,
    ) -> Result<(), String> {
        if self
            .blob_present(repo, d)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        match self.fetch_blob(up, repo, d, size, None).await? {
            Fetch::Waited(r) | Fetch::Led(r) => r,
            Fetch::Streaming(_) => Ok(()),
        }
    }

    /// Fetches a blob into `repo` unless another request is: with `tee`, the fetching request's
    /// bytes also go there as they arrive.
    async fn fetch_blob(
        &self,
        up: &Upstream,
        repo: &RepoName,
        d: &Digest,
        size: u64,
        tee: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    ) -> Result<Fetch, String> {
        let key = (repo.to_string(), d.clone());
        let claimed = {
            let mut map = lock(&self.pull_through.blobs);
            match map.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        let done_tx = match claimed {
            Ok(tx) => {
                // Claimed; but a fetch that ended between our presence check and the claim
                // has stored the blob already (it leaves the map only once the blob is linked).
                if matches!(self.blob_present(repo, d).await, Ok(Some(_))) {
                    lock(&self.pull_through.blobs).remove(&key);
                    let _ = tx.send(Some(Ok(())));
                    return Ok(Fetch::Waited(Ok(())));
                }
                tx
            }
            Err(mut rx) => {
                let r = rx
                    .wait_for(Option::is_some)
                    .await
                    .map(|v| v.clone().unwrap_or(Ok(())))
                    .unwrap_or_else(|_| Err("the fetch was abandoned".into()));
                return Ok(Fetch::Waited(r));
            }
        };
        let (started_tx, started) = oneshot::channel::<Result<(), String>>();
        let reg = self.clone();
        let (up, repo, d) = (up.clone(), repo.clone(), d.clone());
        let streaming = tee.is_some();
        let task = tokio::spawn(async move {
            let mut started_tx = Some(started_tx);
            let result = async {
                let img = up.image(None, None).map_err(|e| e.to_string())?;
                let stream = reg
                    .bounded(img.blob(&d, size))
                    .await
                    .map_err(|e| stale_reason(&e) + &format!(": {e}"))?;
                if let Some(s) = started_tx.take() {
                    let _ = s.send(Ok(()));
                }
                let body = tee_stream(stream, tee);
                reg.put_blob(&repo, &d, Some(size), body)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("storing blob {d}: {e}"))
            }
            .await;
            if let Some(s) = started_tx.take() {
                let _ = s.send(result.clone());
            }
            lock(&reg.pull_through.blobs).remove(&(repo.to_string(), d.clone()));
            let _ = done_tx.send(Some(result.clone()));
            if let Err(e) = &result {
                tracing::warn!(repository = %repo, digest = %d, upstream = %up.describe(), error = %e,
                    "pull-through: fetching a blob failed");
            }
            result
        });
        if streaming {
            return match started.await {
                Ok(Ok(())) => Ok(Fetch::Streaming(())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("the fetch ended early".into()),
            };
        }
        Ok(Fetch::Led(
            task.await.unwrap_or_else(|e| Err(e.to_string())),
        ))
    }

    /// The pull-through side of a blob GET/HEAD for a blob `repo` lacks: `None` when `repo` is
    /// no rule's, or when the blob is present now (serve it from the store); a stream for the
    /// request that fetches it.
    pub(crate) async fn pull_through_blob(
        &self,
        who: &Caller,
        repo: &RepoName,
        d: &Digest,
        head: bool,
    ) -> Result<Option<BlobStream>, RegistryError> {
        let Some(up) = self.upstream_of(repo).await? else {
            return Ok(None);
        };
        let exists = self.authorize_import(who, repo).await?;
        let known = lock(&self.pull_through.sizes).get(d).copied();
        let size = match known {
            Some(s) => s,
            None => {
                // No manifest fetched through this process named it (a client resuming a pull
                // across a restart): the upstream says.
                let img = up.image(None, None)?;
                match self.bounded(img.blob_size(d)).await {
                    Ok(s) => s,
                    Err(ClientError::NotFound(_)) => {
                        return Err(RegistryError::BlobUnknown(d.clone()));
                    }
                    Err(e) => return Err(upstream_error(&up, e, &format!("blob {d}"))),
                }
            }
        };
        self.ensure_cache_repository(repo, &up, exists).await?;
        if head {
            self.ensure_blob(&up, repo, d, size)
                .await
                .map_err(|e| RegistryError::Upstream(format!("blob {d}: {e}")))?;
            return Ok(None);
        }
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        match self.fetch_blob(&up, repo, d, size, Some(tx)).await {
            Ok(Fetch::Streaming(())) => {
                let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
                Ok(Some(BlobStream { size, body }))
            }
            Ok(Fetch::Waited(Ok(())) | Fetch::Led(Ok(()))) => Ok(None),
            Ok(Fetch::Waited(Err(e)) | Fetch::Led(Err(e))) | Err(e) => Err(
                RegistryError::Upstream(format!("blob {d} from {}: {e}", up.describe())),
            ),
        }
    }
}

/// How a blob fetch went for the request that asked.
#[derive(Debug)]
enum Fetch {
    /// Another request fetched it; its outcome.
    Waited(Result<(), String>),
    /// This request fetched it (no tee).
    Led(Result<(), String>),
    /// This request fetches it; its bytes go to the tee.
    Streaming(()),
}

/// Whether `host` is a registry host (`name[:port]`).
pub(crate) fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && RepoName::parse("berth/probe")
            .ok()
            .and_then(|r| ImageRef::new(host, r, None, None).ok())
            .is_some()
}

fn credential_aad(name: &str) -> String {
    format!("{CREDENTIAL_KIND}:{name}")
}

/// The upstream's bytes on their way to the store, copied to `tee` while it listens.
fn tee_stream(
    stream: berth_client::image::ByteStream,
    tee: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
) -> ByteStream {
    futures::stream::unfold((stream, tee), |(mut s, mut tee)| async move {
        let item = s.next().await?;
        let item = item.map_err(std::io::Error::other);
        if let Some(tx) = &tee {
            let copy = match &item {
                Ok(b) => Ok(b.clone()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            if tx.send(copy).await.is_err() {
                // The client went away; the blob is still stored.
                tee = None;
            }
        }
        Some((item, (s, tee)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(url: &str, prefix: Option<&str>) -> Rule {
        Rule {
            upstream_registry_url: url.into(),
            upstream_repository_prefix: prefix.map(Into::into),
            credential_arn: None,
            custom_role_arn: None,
        }
    }

    #[test]
    fn names_map_to_the_upstream() {
        let hub = rule("registry-1.docker.io", None);
        assert_eq!(hub.upstream_kind(), "docker-hub");
        assert_eq!(
            hub.upstream_repository("docker-hub", "docker-hub/nginx")
                .as_deref(),
            Some("library/nginx")
        );
        assert_eq!(
            hub.upstream_repository("docker-hub", "docker-hub/bitnami/redis")
                .as_deref(),
            Some("bitnami/redis")
        );
        assert_eq!(
            hub.upstream_repository("docker-hub", "docker-hubx/nginx"),
            None
        );
        assert_eq!(hub.upstream_repository("docker-hub", "docker-hub"), None);
        let local = rule("http://127.0.0.1:5001", Some("mirror"));
        assert_eq!(local.host(), ("127.0.0.1:5001".to_owned(), true));
        assert_eq!(local.upstream_kind(), "oci");
        assert_eq!(
            local.upstream_repository("up", "up/team/app").as_deref(),
            Some("mirror/team/app")
        );
        assert_eq!(
            rule("ghcr.io", Some("ROOT"))
                .upstream_repository("ROOT", "org/tool")
                .as_deref(),
            Some("org/tool")
        );
        assert_eq!(rule("docker.io", None).host().0, "registry-1.docker.io");
    }

    #[test]
    fn credential_arns_name_their_secret() {
        assert_eq!(
            credential_name(
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/hub"
            ),
            Some("ecr-pullthroughcache/hub")
        );
        assert_eq!(
            credential_name("ecr-pullthroughcache/hub"),
            Some("ecr-pullthroughcache/hub")
        );
        assert_eq!(
            credential_name("arn:aws:secretsmanager:us-east-1:0:secret:other"),
            None
        );
        assert_eq!(credential_name("ecr-pullthroughcache/"), None);
    }

    #[test]
    fn the_manifest_cache_is_bounded_by_bytes() {
        let mut c = DigestCache::new(MANIFEST_CACHE_BYTES);
        let big = Bytes::from(vec![b'x'; 30 * 1024 * 1024]);
        for i in 0..4u8 {
            let mut b = big.to_vec();
            b[0] = i;
            let bytes = Bytes::from(b);
            let m = RawManifest {
                digest: Digest::sha256(&bytes),
                bytes,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            };
            c.insert(&m.digest.clone(), m.clone(), m.bytes.len());
        }
        assert!(c.bytes() <= MANIFEST_CACHE_BYTES);
        assert_eq!(c.len(), 2);
    }
}
