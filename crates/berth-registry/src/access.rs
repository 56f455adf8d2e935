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
use berth_store::KeyOwner;
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
}

/// Failure to authenticate an ECR API key.
#[derive(Debug)]
pub(crate) enum KeyLookup {
    /// The key is not known.
    Unknown,
    /// The stored secret cannot be opened (wrong master key?).
    Sealed(String),
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
        let mut policies = Vec::new();
        if owner.user.admin
            && let Ok(p) = self.policy(ADMIN_POLICY, PolicyKind::Identity)
        {
            policies.push(p);
        }
        for p in &owner.policies {
            match self.policy(&p.document, PolicyKind::Identity) {
                Ok(p) => policies.push(p),
                // Policies are validated when set; one that no longer parses grants nothing.
                Err(e) => tracing::warn!(user = %owner.user.name, policy = %p.name, error = %e,
                    "ignoring an identity policy that does not parse"),
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
            return Err(self.unauthorized(format!(
                "the {scheme} authorization scheme is not supported here; use Basic"
            )));
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
            Some(owner) => Ok(self.caller_from_owner(owner, source_ip)),
            // The key was deleted: every token issued for it stops working.
            None => Err(self.unauthorized(
                "Your authorization token is no longer valid: its access key was deleted.",
            )),
        }
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
        let mut resource_policies = Vec::new();
        if let Some(text) = repo_policy {
            match self.policy(text, PolicyKind::Resource) {
                Ok(p) => resource_policies.push(p),
                Err(e) => tracing::warn!(repository = ?repo_name, error = %e,
                    "ignoring a repository policy that does not parse"),
            }
        }
        match self.identity.setting(REGISTRY_POLICY).await {
            Ok(Some(text)) => match self.policy(&text, PolicyKind::Resource) {
                Ok(p) => resource_policies.push(p),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a registry policy that does not parse")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the registry policy failed");
                return Err(Denial::Denied(
                    "authorization is unavailable: the registry policy cannot be read".into(),
                ));
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
            && let Ok(tags) = self.meta().resource_tags(&repo).await
        {
            for (k, v) in tags {
                ctx.set(&format!("aws:ResourceTag/{k}"), v.clone());
                ctx.set(&format!("ecr:ResourceTag/{k}"), v);
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
