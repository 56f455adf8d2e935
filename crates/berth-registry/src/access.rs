//! Who is calling and whether they may: authentication of `/v2/` requests (HTTP Basic with a
//! registry token or an access key) and of ECR API calls (the key of a SigV4 signature), and
//! the one authorization check both APIs go through (IAM policies of the user, the repository
//! and the registry, evaluated by `berth-iam`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use berth_iam::keys::{SealKey, Secret, is_access_key_id};
use berth_iam::policy::{Context, Decision, Policy, PolicyKind, Principal, Request, authorize};
use berth_iam::token::{TokenError, TokenKey};
use berth_oci::RepoName;
use berth_store::{KeyOwner, RepositoryRecord};
use subtle::ConstantTimeEq;

use crate::error::RegistryError;
use crate::service::Registry;

/// The registry-wide setting holding the registry policy.
pub(crate) const REGISTRY_POLICY: &str = "registry_policy";

/// Parsed policies kept at most (the cache is cleared when full).
const POLICY_CACHE_MAX: usize = 1024;

/// The administrator's implicit identity policy.
const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// Actions an administrator may always perform, whatever a resource policy denies, so a policy
/// can never lock the registry's owner out of fixing it.
const ADMIN_ESCAPE: &[&str] = &[
    "ecr:GetRepositoryPolicy",
    "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy",
    "ecr:GetRegistryPolicy",
    "ecr:PutRegistryPolicy",
    "ecr:DeleteRegistryPolicy",
];

/// The actions of a push. Pushing into a repository that does not exist creates it (from a
/// creation template, or with auto-create), so they also need `ecr:CreateRepository` then.
const PUSH_ACTIONS: &[&str] = &[
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
];

/// Where the time comes from (replaceable in tests: token expiry, signature skew).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Keys derived from the master key.
pub(crate) struct ServerKeys {
    pub(crate) seal: SealKey,
    pub(crate) token: TokenKey,
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKeys(<redacted>)")
    }
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Their identity policies (the administrator's is allow-all).
    pub(crate) policies: Vec<Arc<Policy>>,
    /// The administrator.
    pub admin: bool,
    /// The access key that authenticated the call.
    pub access_key: Option<String>,
    /// The peer's address, for `aws:SourceIp`.
    pub source_ip: Option<IpAddr>,
    /// The version of that key (tokens issued for it carry it).
    pub(crate) key_version: u64,
    /// Set when the caller holds a download URL's token: the one blob it may read
    /// ([`download_scope`]), and nothing else.
    pub(crate) scope: Option<String>,
    /// Set when one of the caller's identity policies no longer parses: its Deny statements are
    /// unknown, so the caller is refused everything (but the administrator's escape hatch).
    pub(crate) broken_policy: Option<String>,
}

/// The scope of a `GetDownloadUrlForLayer` token: GET and HEAD of this one blob.
pub(crate) fn download_scope(repo: &str, digest: &str) -> String {
    format!("download:{repo}@{digest}")
}

impl Caller {
    /// Nobody in particular.
    pub fn anonymous(source_ip: Option<IpAddr>) -> Caller {
        Caller {
            principal: Principal::Anonymous,
            policies: Vec::new(),
            admin: false,
            access_key: None,
            source_ip,
            key_version: 0,
            scope: None,
            broken_policy: None,
        }
    }

    /// How denial messages name the caller.
    pub fn describe(&self) -> String {
        self.principal
            .arn()
            .unwrap_or_else(|| "anonymous".to_owned())
    }
}

/// What an authorization check is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The registry itself (resource `*`): GetAuthorizationToken, DescribeRegistry, templates.
    Registry,
    /// A repository, by name, with its policy if it exists and has one.
    Repository {
        /// Its name.
        name: &'a str,
        /// Its policy document.
        policy: Option<&'a str>,
    },
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Anonymous and not allowed: ask for credentials.
    Unauthenticated,
    /// Authenticated and not allowed.
    Denied(String),
    /// Not judged: a policy could not be read (the metadata database is down). Refused, as a
    /// server error (500) the client retries, not as a denial.
    Unavailable(String),
}

/// Failure to authenticate an ECR API key.
#[derive(Debug)]
pub(crate) enum KeyLookup {
    /// The key is not known.
    Unknown,
    /// The stored secret cannot be opened (wrong master key?).
    Sealed(String),
}

/// The version tokens are bound to: the key's creation time.
fn key_version(owner: &KeyOwner) -> u64 {
    u64::try_from(owner.key.created_at).unwrap_or(0)
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Registry {
    /// `arn:aws:ecr:<region>:<registry id>:repository/<name>`.
    pub fn repository_arn(&self, name: &str) -> String {
        let c = self.config();
        format!(
            "arn:aws:ecr:{}:{}:repository/{name}",
            c.region, c.registry_id
        )
    }

    /// The realm of `/v2/` Basic challenges (and the `proxyEndpoint` of tokens).
    pub fn proxy_endpoint(&self) -> String {
        let c = self.config();
        let scheme = if c.public_tls { "https" } else { "http" };
        format!("{scheme}://{}", c.public_host)
    }

    pub(crate) fn unauthorized(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Unauthorized {
            message: message.into(),
            realm: format!("{}/", self.proxy_endpoint()),
            region: self.config().region.clone(),
        }
    }

    /// Parses a policy, from a cache keyed by its text.
    pub(crate) fn policy(&self, text: &str, kind: PolicyKind) -> Result<Arc<Policy>, String> {
        let key = format!("{kind:?}:{text}");
        {
            let cache = self.policy_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = cache.get(&key) {
                return Ok(Arc::clone(p));
            }
        }
        let parsed = Arc::new(Policy::parse(text, kind).map_err(|e| e.to_string())?);
        let mut cache = self.policy_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= POLICY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&parsed));
        Ok(parsed)
    }

    /// The caller behind a key, with the key's secret (for SigV4 verification).
    pub(crate) async fn caller_for_key(
        &self,
        access_key_id: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<Result<(Caller, Secret), KeyLookup>, RegistryError> {
        if !is_access_key_id(access_key_id) {
            return Ok(Err(KeyLookup::Unknown));
        }
        let Some(owner) = self.identity.key_owner(access_key_id).await? else {
            return Ok(Err(KeyLookup::Unknown));
        };
        let secret = match self
            .keys
            .seal
            .open(&owner.key.sealed_secret, owner.key.id.as_bytes())
        {
            Ok(s) => s,
            Err(e) => return Ok(Err(KeyLookup::Sealed(e.to_string()))),
        };
        Ok(Ok((self.caller_from_owner(owner, source_ip), secret)))
    }

    fn caller_from_owner(&self, owner: KeyOwner, source_ip: Option<IpAddr>) -> Caller {
        let version = key_version(&owner);
        let mut policies = Vec::new();
        let mut broken_policy = None;
        if owner.user.admin
            && let Ok(p) = self.policy(ADMIN_POLICY, PolicyKind::Identity)
        {
            policies.push(p);
        }
        for p in &owner.policies {
            match self.policy(&p.document, PolicyKind::Identity) {
                Ok(p) => policies.push(p),
                // Policies are validated when set; one that no longer parses (written by an
                // older berth, or edited in the database) fails closed, like resource policies:
                // dropping it would drop its Deny statements.
                Err(e) => {
                    tracing::error!(user = %owner.user.name, policy = %p.name, error = %e,
                        "an identity policy does not parse: refusing the user's requests");
                    broken_policy.get_or_insert_with(|| p.name.clone());
                }
            }
        }
        Caller {
            principal: Principal::User {
                account: self.config().registry_id.clone(),
                name: owner.user.name,
            },
            policies,
            admin: owner.user.admin,
            access_key: Some(owner.key.id),
            source_ip,
            key_version: version,
            scope: None,
            broken_policy,
        }
    }

    /// Authenticates a `/v2/` request from its `Authorization` header: Basic with user `AWS`
    /// and a registry token (what `GetAuthorizationToken` issues), or with an access key id and
    /// its secret. No header: anonymous.
    pub async fn authenticate_basic(
        &self,
        authorization: Option<&str>,
        source_ip: Option<IpAddr>,
    ) -> Result<Caller, RegistryError> {
        let Some(value) = authorization else {
            return Ok(Caller::anonymous(source_ip));
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            // The scheme is named only when it looks like one: a header without a space is all
            // "scheme", and may be a bare token that must never reach a message or the audit log.
            let named = scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphabetic());
            return Err(self.unauthorized(if named {
                format!("the {scheme} authorization scheme is not supported here; use Basic")
            } else {
                "unsupported authorization scheme; use Basic".to_owned()
            }));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| self.unauthorized("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| self.unauthorized("malformed Basic credentials"))?;
        if user == "AWS" {
            return self.caller_for_token(password, source_ip).await;
        }
        let not_authorized = || self.unauthorized("invalid username or password");
        let (caller, secret) = match self.caller_for_key(user, source_ip).await? {
            Ok(found) => found,
            Err(_) => return Err(not_authorized()),
        };
        if bool::from(secret.expose().as_bytes().ct_eq(password.as_bytes())) {
            Ok(caller)
        } else {
            Err(not_authorized())
        }
    }

    async fn caller_for_token(
        &self,
        password: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<Caller, RegistryError> {
        let claims = match self.keys.token.verify(password, self.clock.now()) {
            Ok(c) => c,
            Err(TokenError::Expired { .. }) => {
                return Err(self.unauthorized(
                    "Your authorization token has expired. Reauthenticate and try again.",
                ));
            }
            Err(_) => return Err(self.unauthorized("Your authorization token is invalid.")),
        };
        match self.identity.key_owner(&claims.access_key_id).await? {
            // A key deleted and created again under the same id (root credentials from the
            // environment) does not bring back the tokens issued before.
            Some(owner) if claims.key_version != key_version(&owner) => Err(self.unauthorized(
                "Your authorization token is no longer valid: its access key was replaced.",
            )),
            Some(owner) => {
                let mut caller = self.caller_from_owner(owner, source_ip);
                caller.scope = claims.scope;
                Ok(caller)
            }
            // The key was deleted: every token issued for it stops working.
            None => Err(self.unauthorized(
                "Your authorization token is no longer valid: its access key was deleted.",
            )),
        }
    }

    /// Loads a repository and authorizes `actions` on it, with its policy. A push into a
    /// repository that does not exist yet also needs `ecr:CreateRepository`, as ECR's
    /// create-on-push does. The repository is `None` when it does not exist.
    pub(crate) async fn authorize_repository(
        &self,
        caller: &Caller,
        actions: &[&str],
        repo: &RepoName,
        extra: &[(&str, Vec<String>)],
    ) -> Result<Result<Option<RepositoryRecord>, Denial>, RegistryError> {
        let rec = self.meta().repository(repo).await?;
        let target = Target::Repository {
            name: repo.as_str(),
            policy: rec.as_ref().and_then(|r| r.policy.as_deref()),
        };
        let creates = rec.is_none() && actions.iter().any(|a| PUSH_ACTIONS.contains(a));
        let create: &[&str] = if creates {
            &["ecr:CreateRepository"]
        } else {
            &[]
        };
        for action in actions.iter().chain(create) {
            if let Err(d) = self.authorize(caller, action, target, extra).await {
                return Ok(Err(d));
            }
        }
        Ok(Ok(rec))
    }

    /// Whether any request for `action` could be allowed to the caller, judged before its
    /// body is read (the ECR API names the action in a signed header, the repository only in
    /// the body): an identity policy, the registry policy or some repository policy must have
    /// an `Allow` naming the action and the caller. `Err` refuses the request outright.
    pub(crate) async fn may_authorize(&self, caller: &Caller, action: &str) -> Result<(), Denial> {
        if !self.config().auth || (caller.admin && ADMIN_ESCAPE.contains(&action)) {
            return Ok(());
        }
        let denied = || {
            if caller.principal == Principal::Anonymous {
                Denial::Unauthenticated
            } else {
                Denial::Denied(format!(
                    "User: {} is not authorized to perform: {action} because no identity-based policy allows the {action} action",
                    caller.describe()
                ))
            }
        };
        if let Some(name) = &caller.broken_policy {
            return Err(Denial::Denied(format!(
                "authorization is unavailable: the caller's identity policy {name:?} does not parse; replace it"
            )));
        }
        let identity: Vec<&Policy> = caller.policies.iter().map(AsRef::as_ref).collect();
        if berth_iam::policy::may_allow(&identity, &[], &caller.principal, action) {
            return Ok(());
        }
        // Resource policies: a text that does not parse is left to the full check, which
        // refuses with the reason.
        let mut texts = Vec::new();
        match self.identity.setting(REGISTRY_POLICY).await {
            Ok(Some(t)) => texts.push(t),
            Ok(None) => {}
            Err(_) => return Ok(()),
        }
        match self.meta().repository_policies().await {
            Ok(t) => texts.extend(t),
            Err(_) => return Ok(()),
        }
        for text in &texts {
            match self.policy(text, PolicyKind::Resource) {
                Ok(p) => {
                    if berth_iam::policy::may_allow(&[], &[&p], &caller.principal, action) {
                        return Ok(());
                    }
                }
                Err(_) => return Ok(()),
            }
        }
        Err(denied())
    }

    /// The one authorization check of both APIs. `extra` adds request context (tags being set).
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        target: Target<'_>,
        extra: &[(&str, Vec<String>)],
    ) -> Result<(), Denial> {
        if !self.config().auth {
            return Ok(());
        }
        let (resource, repo_name, repo_policy) = match target {
            Target::Registry => ("*".to_owned(), None, None),
            Target::Repository { name, policy } => (self.repository_arn(name), Some(name), policy),
        };
        // Fails closed: a resource policy that cannot be read or parsed (its Deny statements
        // unknown) refuses everything but the administrator's escape hatch.
        let unavailable = |what: &str| {
            if caller.admin && ADMIN_ESCAPE.contains(&action) {
                Ok(())
            } else {
                Err(Denial::Denied(format!(
                    "authorization is unavailable: {what}"
                )))
            }
        };
        if let Some(name) = &caller.broken_policy {
            return unavailable(&format!(
                "the caller's identity policy {name:?} does not parse; replace it"
            ));
        }
        let mut resource_policies = Vec::new();
        if let Some(text) = repo_policy {
            match self.policy(text, PolicyKind::Resource) {
                Ok(p) => resource_policies.push(p),
                Err(e) => {
                    tracing::error!(repository = ?repo_name, error = %e,
                        "a stored repository policy does not parse: refusing access");
                    return unavailable("the repository policy does not parse; replace it");
                }
            }
        }
        match self.identity.setting(REGISTRY_POLICY).await {
            Ok(Some(text)) => match self.policy(&text, PolicyKind::Resource) {
                Ok(p) => resource_policies.push(p),
                Err(e) => {
                    tracing::error!(error = %e,
                        "the stored registry policy does not parse: refusing access");
                    return unavailable("the registry policy does not parse; replace it");
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the registry policy failed");
                return if caller.admin && ADMIN_ESCAPE.contains(&action) {
                    Ok(())
                } else {
                    Err(Denial::Unavailable(format!(
                        "reading the registry policy: {e}"
                    )))
                };
            }
        }
        let mut ctx = Context::new();
        let now = self.clock.now();
        ctx.set("aws:CurrentTime", berth_iam::dates::iso8601(now));
        ctx.set("aws:EpochTime", epoch_secs(now).to_string());
        ctx.set(
            "aws:SecureTransport",
            if self.config().public_tls {
                "true"
            } else {
                "false"
            },
        );
        if let Some(ip) = caller.source_ip {
            ctx.set("aws:SourceIp", ip.to_string());
        }
        if let Some(k) = &caller.access_key {
            ctx.set("aws:AccessKeyId", k.clone());
        }
        for (k, v) in extra {
            ctx.set_all(k, v.clone());
        }
        let mentions_tags = caller
            .policies
            .iter()
            .chain(&resource_policies)
            .any(|p| p.text().to_ascii_lowercase().contains("resourcetag"));
        if let (true, Some(name)) = (mentions_tags, repo_name)
            && let Ok(repo) = berth_oci::RepoName::parse(name)
        {
            match self.meta().resource_tags(&repo).await {
                Ok(tags) => {
                    for (k, v) in tags {
                        ctx.set(&format!("aws:ResourceTag/{k}"), v.clone());
                        ctx.set(&format!("ecr:ResourceTag/{k}"), v);
                    }
                }
                Err(e) => {
                    tracing::error!(repository = name, error = %e,
                        "reading resource tags failed");
                    return unavailable("the repository's tags cannot be read");
                }
            }
        }
        let identity: Vec<&Policy> = caller.policies.iter().map(AsRef::as_ref).collect();
        let resources: Vec<&Policy> = resource_policies.iter().map(AsRef::as_ref).collect();
        let req = Request {
            principal: &caller.principal,
            action,
            resource: &resource,
            context: &ctx,
        };
        let decision = authorize(&identity, &resources, &req);
        match decision {
            Decision::Allow => Ok(()),
            _ if caller.admin && ADMIN_ESCAPE.contains(&action) => Ok(()),
            _ if caller.principal == Principal::Anonymous => Err(Denial::Unauthenticated),
            Decision::ExplicitDeny => Err(Denial::Denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} with an explicit deny",
                caller.describe()
            ))),
            _ => Err(Denial::Denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
                caller.describe()
            ))),
        }
    }
}
