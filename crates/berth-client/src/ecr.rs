//! Native Amazon ECR authentication: `GetAuthorizationToken` through `aws-sdk-ecr`, with
//! `aws-config`'s whole credential chain (environment, shared profiles, SSO, web identity, ECS and
//! EC2 roles) — no aws CLI, no `docker login`.
//!
//! Tokens are cached on disk and shared between processes: the cache file is read and renewed
//! under an exclusive file lock, so two concurrent pushes make one token request (the
//! amazon-ecr-credential-helper has no such lock). A token is used until half its lifetime has
//! passed, as that helper does, and renewed early when a registry refuses it (long builds outlive
//! tokens). `AWS_ENDPOINT_URL_ECR` / `AWS_ENDPOINT_URL` are honoured by `aws-config`, so the same
//! flow works against `berth serve`.
//!
//! Which hosts are ECR: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`; hosts listed in
//! `BERTH_ECR_REGISTRIES` (`HOST[=REGION],…`); and hosts whose docker `credHelpers` entry is
//! `ecr-login` (the amazon-ecr-credential-helper's name — berth does its job itself).

use std::io::Read;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use berth_oci::EcrRegistry;
use serde::{Deserialize, Serialize};

use crate::ClientError;
use crate::auth::{Credentials, DockerConfig};
use crate::logins::{Login, Logins};

/// The environment variable listing extra ECR-compatible registry hosts.
pub const REGISTRIES_ENV: &str = "BERTH_ECR_REGISTRIES";

/// An ECR registry berth authenticates to natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrTarget {
    /// The registry host (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`, `127.0.0.1:5000`).
    pub host: String,
    /// Where and as whom the ECR API is called.
    pub aws: AwsOptions,
}

/// Where the ECR API is and which AWS credentials call it; anything unset comes from
/// `aws-config`'s defaults (environment, `~/.aws/config`, the credential chain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// The region (from the host name, a login, a flag, or what `berth serve` advertises).
    pub region: Option<String>,
    /// The ECR API endpoint (`http://127.0.0.1:5000` for `berth serve`).
    pub endpoint: Option<String>,
    /// The AWS profile.
    pub profile: Option<String>,
    /// A credentials file read besides the default ones (`berth serve`'s `root-credentials`).
    pub credentials_file: Option<PathBuf>,
    /// The endpoint is a `berth serve`: with no `region` set here, the region it advertises
    /// wins over the AWS configuration's.
    pub ask_region: bool,
}

impl From<&Login> for AwsOptions {
    fn from(l: &Login) -> Self {
        AwsOptions {
            region: l.region.clone(),
            endpoint: l.endpoint.clone(),
            profile: l.profile.clone(),
            credentials_file: l.credentials_file.clone(),
            ask_region: false,
        }
    }
}

impl EcrTarget {
    /// Whether `host` is an ECR registry: by its name, a `berth login` record,
    /// `BERTH_ECR_REGISTRIES` or `config`.
    pub fn for_host(host: &str, config: Option<&DockerConfig>) -> Option<Self> {
        let login = Logins::load_default()
            .map_err(|e| tracing::warn!(error = %e, "ignoring berth's login file"))
            .ok()
            .and_then(|l| l.get(host).cloned());
        Self::resolve(host, config, login.as_ref())
    }

    /// [`Self::for_host`] with the login record given.
    pub fn resolve(
        host: &str,
        config: Option<&DockerConfig>,
        login: Option<&Login>,
    ) -> Option<Self> {
        let from_name = match EcrRegistry::from_host(host) {
            Some(EcrRegistry::Private { region, .. }) => Some(region),
            _ => None,
        };
        if let Some(login) = login {
            let mut aws = AwsOptions::from(login);
            if from_name.is_some() {
                aws.region = from_name;
            }
            return Some(EcrTarget {
                host: host.to_owned(),
                aws,
            });
        }
        if let Some(region) = from_name {
            return Some(EcrTarget::with_region(host, Some(region)));
        }
        if let Ok(list) = std::env::var(REGISTRIES_ENV) {
            for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (h, region) = match item.split_once('=') {
                    Some((h, r)) => (h, Some(r.to_owned())),
                    None => (item, None),
                };
                if h.eq_ignore_ascii_case(host) {
                    return Some(EcrTarget::with_region(host, region));
                }
            }
        }
        if config.and_then(|c| c.helper_for(host)).as_deref() == Some("ecr-login") {
            return Some(EcrTarget::with_region(host, None));
        }
        None
    }

    /// A target with only a region set (the rest from the environment).
    pub fn with_region(host: &str, region: Option<String>) -> Self {
        EcrTarget {
            host: host.to_owned(),
            aws: AwsOptions {
                region,
                ..AwsOptions::default()
            },
        }
    }

    /// Whether the host is Amazon's (not a self-hosted ECR-compatible registry).
    pub fn is_amazon(&self) -> bool {
        EcrRegistry::from_host(&self.host).is_some()
    }
}

/// A token as cached on disk (the file is 0600 in a 0700 directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cached {
    /// `base64("AWS:<password>")`.
    token: String,
    issued_at: u64,
    expires_at: u64,
}

impl Cached {
    fn fresh(&self, now: u64) -> bool {
        // A token expiring before it was issued (clock trouble) is never trusted.
        let half = self.expires_at.saturating_sub(self.issued_at) / 2;
        self.expires_at > self.issued_at
            && now < self.issued_at.saturating_add(half)
            && now < self.expires_at
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// berth's cache directory: `$BERTH_CACHE_DIR`, else `$XDG_CACHE_HOME/berth`, else
/// `~/.cache/berth`.
pub fn cache_root() -> PathBuf {
    std::env::var_os("BERTH_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("berth")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/berth")))
        .unwrap_or_else(|| std::env::temp_dir().join("berth-cache"))
}

/// Where tokens are cached: `ecr/` in [`cache_root`].
fn cache_dir() -> PathBuf {
    cache_root().join("ecr")
}

/// The cache file for a target: one per host, region, endpoint and identity (profile, access
/// key id or role) — never a secret in the name.
fn cache_file(target: &EcrTarget) -> PathBuf {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let file = target
        .aws
        .credentials_file
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = [
        target.host.as_str(),
        target.aws.region.as_deref().unwrap_or(""),
        target.aws.endpoint.as_deref().unwrap_or(""),
        target.aws.profile.as_deref().unwrap_or(""),
        &file,
        &var("AWS_PROFILE"),
        &var("AWS_ACCESS_KEY_ID"),
        &var("AWS_ROLE_ARN"),
        &var("AWS_ENDPOINT_URL_ECR"),
        &var("AWS_ENDPOINT_URL"),
    ]
    .join("\n");
    let digest = berth_oci::Digest::sha256(key.as_bytes());
    let safe_host: String = target
        .host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_dir().join(format!("{safe_host}-{}.json", &digest.hex()[..16]))
}

fn file_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens and exclusively locks the cache's lock file (blocking).
fn lock(path: &std::path::Path) -> Result<std::fs::File, ClientError> {
    crate::durable::lock_beside(path).map_err(file_err(path))
}

fn read_cache(path: &std::path::Path) -> Option<Cached> {
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    serde_json::from_str(&s).ok()
}

fn write_cache(path: &std::path::Path, c: &Cached) -> Result<(), ClientError> {
    let body = serde_json::to_vec(c).map_err(|e| ClientError::Http(e.to_string()))?;
    crate::durable::write_private(path, &body).map_err(file_err(path))
}

/// Basic credentials (`AWS` and the token's password) for an ECR registry.
///
/// `refused` is the password a registry has just refused, if any: a cached token equal to it is
/// renewed even if it is not half-way through its life.
pub async fn credentials(
    target: &EcrTarget,
    refused: Option<&str>,
) -> Result<Credentials, ClientError> {
    let path = cache_file(target);
    let lock_path = path.clone();
    // The lock is held (by this file handle) until the token is in the cache.
    let guard = tokio::task::spawn_blocking(move || lock(&lock_path))
        .await
        .map_err(|e| ClientError::Http(format!("lock task failed: {e}")))??;
    let now = now_secs();
    let cached = read_cache(&path).filter(|c| c.fresh(now));
    let cached = match (cached, refused) {
        (Some(c), Some(bad)) if decode(&c.token).is_ok_and(|(_, p)| p == bad) => None,
        (c, _) => c,
    };
    let entry = match cached {
        Some(c) => c,
        None => {
            let c = fetch(target).await?;
            write_cache(&path, &c)?;
            c
        }
    };
    drop(guard);
    let (username, password) = decode(&entry.token)?;
    Ok(Credentials::Basic { username, password })
}

fn decode(token: &str) -> Result<(String, String), ClientError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| ClientError::Unauthorized("ECR returned a token that is not base64".into()))?;
    let text = String::from_utf8(raw)
        .map_err(|_| ClientError::Unauthorized("ECR returned a token that is not text".into()))?;
    let (user, pass) = text
        .split_once(':')
        .ok_or_else(|| ClientError::Unauthorized("ECR returned a token without a user".into()))?;
    Ok((user.to_owned(), pass.to_owned()))
}

/// An ECR API client with `aws-config`'s whole credential chain. What `aws` sets overrides the
/// configuration (which already honours `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_ECR` and
/// `AWS_ENDPOINT_URL`), so the same calls reach Amazon ECR or `berth serve`; with no region
/// anywhere, a `berth serve` endpoint is asked for its own.
pub async fn api_client(aws: &AwsOptions) -> Result<aws_sdk_ecr::Client, ClientError> {
    let (config, _) = api_config(aws).await?;
    Ok(aws_sdk_ecr::Client::new(&config))
}

/// The endpoint the ECR API calls go to when one is configured: `aws`'s, else
/// `AWS_ENDPOINT_URL_ECR`, else `AWS_ENDPOINT_URL`.
pub fn configured_endpoint(aws: &AwsOptions) -> Option<String> {
    aws.endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_ECR").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.is_empty())
}

async fn load(aws: &AwsOptions, region: Option<&str>) -> aws_config::SdkConfig {
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region.or(aws.region.as_deref()) {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(e) = &aws.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(p) = &aws.profile {
        loader = loader.profile_name(p);
    }
    if let Some(f) = &aws.credentials_file {
        let files = EnvConfigFiles::builder()
            .include_default_config_file(true)
            .include_default_credentials_file(true)
            .with_file(EnvConfigFileKind::Credentials, f)
            .build();
        loader = loader.profile_files(files);
    }
    loader.load().await
}

/// The AWS configuration of the ECR API calls, with its region.
async fn api_config(aws: &AwsOptions) -> Result<(aws_config::SdkConfig, String), ClientError> {
    if let Some(f) = &aws.credentials_file
        && !f.exists()
    {
        return Err(ClientError::Unauthorized(format!(
            "credentials file {} does not exist (berth serve writes root-credentials in its data directory on first start)",
            f.display()
        )));
    }
    if aws.ask_region
        && aws.region.is_none()
        && let Some(endpoint) = &aws.endpoint
        && let Some(region) = advertised_region(endpoint).await?
    {
        return Ok((load(aws, Some(&region)).await, region));
    }
    let config = load(aws, None).await;
    if let Some(region) = config.region() {
        return Ok((config.clone(), region.to_string()));
    }
    let Some(endpoint) = configured_endpoint(aws) else {
        return Err(ClientError::Unauthorized(
            "no AWS region: set AWS_REGION or pass --region (for berth serve: name the registry, `--registry HOST` or `HOST/REPOSITORY`, or set AWS_ENDPOINT_URL_ECR)".into(),
        ));
    };
    let region = advertised_region(&endpoint).await?.ok_or_else(|| {
        ClientError::Unauthorized(format!(
            "no AWS region: set AWS_REGION or pass --region ({endpoint} does not say its region: it is not berth serve)"
        ))
    })?;
    let config = load(aws, Some(&region)).await;
    Ok((config, region))
}

/// `GET <base>/v2/`, with Basic credentials when given: how berth probes a registry.
async fn get_v2(base: &str, basic: Option<(&str, &str)>) -> Result<reqwest::Response, ClientError> {
    let url = format!("{}/v2/", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let mut req = client.get(&url);
    if let Some((user, password)) = basic {
        req = req.basic_auth(user, Some(password));
    }
    req.send()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {e}")))
}

/// Checks that `base` (`https://host`) accepts `creds` on `GET /v2/`.
pub async fn check_login(base: &str, creds: &Credentials) -> Result<(), ClientError> {
    let Credentials::Basic { username, password } = creds else {
        return Err(ClientError::Unauthorized(
            "GetAuthorizationToken gave no password".into(),
        ));
    };
    let status = get_v2(base, Some((username, password))).await?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(ClientError::Unauthorized(format!(
            "{base} refused the token GetAuthorizationToken issued ({status})"
        )))
    }
}

/// The region a `berth serve` at `base` (`http://127.0.0.1:5000`) advertises on `GET /v2/`
/// ([`berth_oci::ECR_AUTH_HEADER`]); `None` when it advertises none (not berth).
pub async fn advertised_region(base: &str) -> Result<Option<String>, ClientError> {
    Ok(get_v2(base, None)
        .await?
        .headers()
        .get(berth_oci::ECR_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(berth_oci::parse_ecr_auth))
}

/// Calls one of `berth serve`'s own actions (`BerthRunLifecyclePolicy`,
/// `BerthRunGarbageCollection`: not in Amazon ECR, so aws-sdk-ecr has no operation for them)
/// with the ECR JSON protocol, signed with SigV4 as the SDK signs its calls, with the same
/// region, endpoint and credential chain as [`api_client`].
pub async fn call_berth_action(
    aws: &AwsOptions,
    action: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let (config, region) = api_config(aws).await?;
    let url = configured_endpoint(aws).ok_or_else(|| {
            ClientError::Http(format!(
                "{action} is an action of berth serve, not of Amazon ECR: pass --endpoint-url or set AWS_ENDPOINT_URL_ECR to a berth registry"
            ))
        })?;
    let provider = config.credentials_provider().ok_or_else(|| {
        ClientError::Unauthorized(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile".into(),
        )
    })?;
    let creds = provider
        .provide_credentials()
        .await
        .map_err(|e| ClientError::Unauthorized(format!("loading AWS credentials: {e}")))?;
    let payload = serde_json::to_vec(body).map_err(|e| ClientError::Http(e.to_string()))?;
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{action}");
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| ClientError::Http(format!("endpoint {url}: {e}")))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return Err(ClientError::Http(format!("endpoint {url} has no host"))),
    };
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let identity = creds.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("ecr")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ClientError::Http(format!("signing {action}: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        parsed.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(&payload),
    )
    .map_err(|e| ClientError::Http(format!("signing {action}: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ClientError::Http(format!("signing {action}: {e}")))?
        .into_parts();
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let mut req = client.post(parsed.clone()).body(payload);
    for (k, v) in headers.iter().skip(1) {
        req = req.header(*k, *v);
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ClientError::Http(format!("{action}: {e}")))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Http(format!("{action}: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !(200..300).contains(&status) {
        let kind = value["__type"].as_str().unwrap_or("error");
        let message = value["message"].as_str().unwrap_or("");
        return Err(ClientError::Registry {
            what: action.to_owned(),
            status,
            detail: format!("{kind}: {message}"),
        });
    }
    Ok(value)
}

/// Calls GetAuthorizationToken.
async fn fetch(target: &EcrTarget) -> Result<Cached, ClientError> {
    use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
    let (config, _) = api_config(&target.aws).await.map_err(|e| match e {
        ClientError::Unauthorized(m) => ClientError::Unauthorized(format!(
            "{}: {m}, or map the host with {REGISTRIES_ENV}=HOST=REGION",
            target.host
        )),
        other => other,
    })?;
    let client = aws_sdk_ecr::Client::new(&config);
    let issued_at = now_secs();
    let out = client.get_authorization_token().send().await.map_err(|e| {
        let code = e.code().unwrap_or("error").to_owned();
        let message = e.message().map(str::to_owned).unwrap_or_else(|| {
            // No service error: the cause (no credentials, connection refused, …).
            DisplayErrorContext(&e).to_string()
        });
        let hint = if target.is_amazon() {
            String::new()
        } else {
            format!(
                "; {} takes AWS credentials: run `berth login {} --credentials-file DATA/root-credentials --profile berth` with the file berth serve wrote on first start (or `--profile P` for keys in ~/.aws/credentials)",
                target.host, target.host
            )
        };
        let profile = match &target.aws.profile {
            Some(p) => format!(" with AWS profile {p}"),
            None => String::new(),
        };
        ClientError::Unauthorized(format!(
            "ECR GetAuthorizationToken for {}{profile}: {code}: {message}{hint}",
            target.host
        ))
    })?;
    let data = out.authorization_data().first().ok_or_else(|| {
        ClientError::Unauthorized("ECR GetAuthorizationToken returned no token".into())
    })?;
    let token = data
        .authorization_token()
        .ok_or_else(|| ClientError::Unauthorized("ECR returned an empty token".into()))?
        .to_owned();
    decode(&token)?;
    let expires_at = data
        .expires_at()
        .and_then(|t| u64::try_from(t.secs()).ok())
        .unwrap_or(issued_at + 12 * 3600);
    tracing::debug!(host = %target.host, expires_at, "new ECR token");
    Ok(Cached {
        token,
        issued_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_half_life() {
        let c = Cached {
            token: String::new(),
            issued_at: 1000,
            expires_at: 1000 + 12 * 3600,
        };
        assert!(c.fresh(1000 + 6 * 3600 - 1));
        assert!(!c.fresh(1000 + 6 * 3600));
        let short = Cached {
            token: String::new(),
            issued_at: 1000,
            expires_at: 999,
        };
        assert!(!short.fresh(998), "an already expired token is never fresh");
    }

    #[test]
    fn ecr_hosts_are_recognised() {
        let t = EcrTarget::resolve("123456789012.dkr.ecr.eu-west-1.amazonaws.com", None, None)
            .expect("ecr");
        assert_eq!(t.aws.region.as_deref(), Some("eu-west-1"));
        assert!(t.is_amazon());
        assert!(EcrTarget::resolve("ghcr.io", None, None).is_none());
        assert!(EcrTarget::resolve("public.ecr.aws", None, None).is_none());
        // A login names the profile, file and endpoint; the host's own region wins for ECR.
        let login = Login {
            region: Some("us-east-1".into()),
            endpoint: None,
            profile: Some("ci".into()),
            credentials_file: None,
        };
        let t = EcrTarget::resolve(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            None,
            Some(&login),
        )
        .expect("ecr");
        assert_eq!(t.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(t.aws.profile.as_deref(), Some("ci"));
    }

    #[test]
    fn token_decoding() {
        let t = base64::engine::general_purpose::STANDARD.encode("AWS:secret:with:colons");
        assert_eq!(
            decode(&t).expect("token"),
            ("AWS".to_owned(), "secret:with:colons".to_owned())
        );
        assert!(decode("!!").is_err());
    }
}
