//! Pull-through cache rules through the ECR API (`aws-sdk-ecr`), and the upstream credentials
//! `berth serve` keeps for them (its `BerthPutUpstreamCredential` action: Amazon ECR reads them
//! from Secrets Manager instead).

use berth_client::aws_sdk_ecr as ecr;
use berth_client::ecr::AwsOptions;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{OpsError, Result};
use crate::repo::api_error;

/// A pull-through cache rule.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CacheRule {
    /// Local repositories `PREFIX/…` are caches.
    pub ecr_repository_prefix: String,
    /// Of this registry.
    pub upstream_registry_url: String,
    /// ECR's name for the upstream (`docker-hub`, …; `oci` for any other on `berth serve`).
    pub upstream_registry: Option<String>,
    /// The upstream repository prefix (`ROOT`: none).
    pub upstream_repository_prefix: Option<String>,
    /// The credential the registry reaches the upstream with.
    pub credential_arn: Option<String>,
    /// Seconds since the epoch.
    pub created_at: Option<f64>,
    /// Seconds since the epoch.
    pub updated_at: Option<f64>,
}

/// What a new rule says.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewCacheRule {
    /// The local repository prefix.
    pub prefix: String,
    /// The upstream registry (`host[:port]`, `https://…`, `http://…`).
    pub upstream: String,
    /// The upstream repository prefix.
    pub upstream_prefix: Option<String>,
    /// A credential's ARN.
    pub credential_arn: Option<String>,
}

impl NewCacheRule {
    /// A rule mapping `prefix/…` to `upstream/…`.
    pub fn new(prefix: &str, upstream: &str) -> Self {
        NewCacheRule {
            prefix: prefix.to_owned(),
            upstream: upstream.to_owned(),
            ..NewCacheRule::default()
        }
    }
}

/// Whether an upstream accepts a rule's credentials.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Validation {
    pub ecr_repository_prefix: String,
    pub is_valid: bool,
    /// Why not.
    pub failure: Option<String>,
}

fn secs(t: Option<&ecr::primitives::DateTime>) -> Option<f64> {
    t.map(|t| t.as_secs_f64())
}

/// The name of the credential [`create_with_credential`] stores for a rule's prefix.
pub fn own_credential_name(prefix: &str) -> String {
    format!("ecr-pullthroughcache/{}", prefix.replace('/', "-"))
}

/// Stores `username`/`access_token` on `berth serve` as the rule's own credential
/// ([`own_credential_name`]) and creates the rule with it.
pub async fn create_with_credential(
    c: &ecr::Client,
    aws: &AwsOptions,
    rule: &NewCacheRule,
    username: &str,
    access_token: &str,
) -> Result<CacheRule> {
    let mut rule = rule.clone();
    let name = own_credential_name(&rule.prefix);
    rule.credential_arn = Some(put_credential(aws, &name, username, access_token).await?);
    create(c, &rule).await
}

/// Deletes a rule, and the credential [`create_with_credential`] stored for it alone (a
/// credential of another name stays: other rules may use it).
pub async fn delete_with_credential(
    c: &ecr::Client,
    aws: &AwsOptions,
    prefix: &str,
) -> Result<CacheRule> {
    let gone = delete(c, prefix).await?;
    let own = own_credential_name(prefix);
    if let Some(arn) = &gone.credential_arn
        && arn.rsplit_once(":secret:").map(|(_, n)| n) == Some(own.as_str())
        && let Err(e) = delete_credential(aws, &own).await
    {
        tracing::debug!(error = %e, "the rule's credential stays");
    }
    Ok(gone)
}

/// Creates a rule.
pub async fn create(c: &ecr::Client, rule: &NewCacheRule) -> Result<CacheRule> {
    let out = c
        .create_pull_through_cache_rule()
        .ecr_repository_prefix(&rule.prefix)
        .upstream_registry_url(&rule.upstream)
        .set_upstream_repository_prefix(rule.upstream_prefix.clone())
        .set_credential_arn(rule.credential_arn.clone())
        .send()
        .await
        .map_err(|e| api_error("CreatePullThroughCacheRule", e))?;
    Ok(CacheRule {
        ecr_repository_prefix: out.ecr_repository_prefix().unwrap_or_default().to_owned(),
        upstream_registry_url: out.upstream_registry_url().unwrap_or_default().to_owned(),
        upstream_registry: out.upstream_registry().map(|u| u.as_str().to_owned()),
        upstream_repository_prefix: out.upstream_repository_prefix().map(str::to_owned),
        credential_arn: out.credential_arn().map(str::to_owned),
        created_at: secs(out.created_at()),
        updated_at: None,
    })
}

/// Every rule, by prefix.
pub async fn list(c: &ecr::Client) -> Result<Vec<CacheRule>> {
    let mut rules = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .describe_pull_through_cache_rules()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| api_error("DescribePullThroughCacheRules", e))?;
        for r in out.pull_through_cache_rules() {
            rules.push(CacheRule {
                ecr_repository_prefix: r.ecr_repository_prefix().unwrap_or_default().to_owned(),
                upstream_registry_url: r.upstream_registry_url().unwrap_or_default().to_owned(),
                upstream_registry: r.upstream_registry().map(|u| u.as_str().to_owned()),
                upstream_repository_prefix: r.upstream_repository_prefix().map(str::to_owned),
                credential_arn: r.credential_arn().map(str::to_owned),
                created_at: secs(r.created_at()),
                updated_at: secs(r.updated_at()),
            });
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(rules);
        }
    }
}

/// Deletes a rule (the cached repositories stay).
pub async fn delete(c: &ecr::Client, prefix: &str) -> Result<CacheRule> {
    let out = c
        .delete_pull_through_cache_rule()
        .ecr_repository_prefix(prefix)
        .send()
        .await
        .map_err(|e| api_error("DeletePullThroughCacheRule", e))?;
    Ok(CacheRule {
        ecr_repository_prefix: out.ecr_repository_prefix().unwrap_or_default().to_owned(),
        upstream_registry_url: out.upstream_registry_url().unwrap_or_default().to_owned(),
        upstream_registry: None,
        upstream_repository_prefix: out.upstream_repository_prefix().map(str::to_owned),
        credential_arn: out.credential_arn().map(str::to_owned),
        created_at: secs(out.created_at()),
        updated_at: None,
    })
}

/// Asks the registry whether the upstream accepts the rule's credentials.
pub async fn validate(c: &ecr::Client, prefix: &str) -> Result<Validation> {
    let out = c
        .validate_pull_through_cache_rule()
        .ecr_repository_prefix(prefix)
        .send()
        .await
        .map_err(|e| api_error("ValidatePullThroughCacheRule", e))?;
    Ok(Validation {
        ecr_repository_prefix: prefix.to_owned(),
        is_valid: out.is_valid(),
        failure: out.failure().map(str::to_owned).filter(|f| !f.is_empty()),
    })
}

/// Stores an upstream credential on `berth serve` (sealed there) and returns its ARN, for a
/// rule's `credentialArn`.
pub async fn put_credential(
    aws: &AwsOptions,
    name: &str,
    username: &str,
    access_token: &str,
) -> Result<String> {
    let out = berth_client::ecr::call_berth_action(
        aws,
        "BerthPutUpstreamCredential",
        &serde_json::json!({ "name": name, "username": username, "accessToken": access_token }),
    )
    .await?;
    out["credentialArn"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| OpsError::usage("the registry returned no credentialArn"))
}

/// Deletes an upstream credential from `berth serve`.
pub async fn delete_credential(aws: &AwsOptions, name: &str) -> Result<()> {
    berth_client::ecr::call_berth_action(
        aws,
        "BerthDeleteUpstreamCredential",
        &serde_json::json!({ "name": name }),
    )
    .await?;
    Ok(())
}
