//! Pull-through cache rules (`CreatePullThroughCacheRule` …) and the sealed upstream
//! credentials their `credentialArn` names (`BerthPutUpstreamCredential`: berth keeps them
//! itself where ECR reads AWS Secrets Manager).

use berth_store::{DocumentRecord, PutMode};

use super::*;
use crate::pullthrough::{RULE_KIND, Rule, SECRET_PREFIX, UpstreamSecret, credential_name};

/// Rules per registry (ECR's quota).
const MAX_RULES: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateRuleRequest {
    registry_id: Option<String>,
    ecr_repository_prefix: String,
    upstream_registry_url: String,
    upstream_registry: Option<String>,
    credential_arn: Option<String>,
    custom_role_arn: Option<String>,
    upstream_repository_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateRuleRequest {
    registry_id: Option<String>,
    ecr_repository_prefix: String,
    credential_arn: Option<String>,
    custom_role_arn: Option<String>,
    upstream_repository_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RulePrefixRequest {
    registry_id: Option<String>,
    ecr_repository_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeRulesRequest {
    registry_id: Option<String>,
    ecr_repository_prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutCredentialRequest {
    name: String,
    username: String,
    access_token: String,
}

impl std::fmt::Debug for PutCredentialRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutCredentialRequest")
            .field("name", &self.name)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CredentialNameRequest {
    name: String,
}

fn check_rule_prefix(p: &str) -> Result<(), EcrError> {
    if p == ROOT_PREFIX {
        return Ok(());
    }
    if !(2..=30).contains(&p.len()) {
        return Err(EcrError::constraint(
            "ecrRepositoryPrefix",
            p,
            "Member must have length between 2 and 30",
        ));
    }
    if RepoName::parse(p).is_err() {
        return Err(EcrError::constraint(
            "ecrRepositoryPrefix",
            p,
            "Member must satisfy regular expression pattern: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
        ));
    }
    Ok(())
}

fn check_upstream_prefix(p: &str) -> Result<(), EcrError> {
    if p == ROOT_PREFIX || (p.len() <= 30 && RepoName::parse(p).is_ok()) {
        return Ok(());
    }
    Err(EcrError::constraint(
        "upstreamRepositoryPrefix",
        p,
        "Member must be ROOT or satisfy regular expression pattern: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
    ))
}

fn rule_not_found(prefix: &str, registry: &str) -> EcrError {
    EcrError::new(
        "PullThroughCacheRuleNotFoundException",
        format!(
            "The pull through cache rule with prefix '{prefix}' does not exist in the registry with id '{registry}'"
        ),
    )
}

/// A rule's `credentialArn` and `customRoleArn`, when it has them.
fn add_arns(v: &mut Value, r: &Rule) {
    if let Some(a) = &r.credential_arn {
        v["credentialArn"] = json!(a);
    }
    if let Some(a) = &r.custom_role_arn {
        v["customRoleArn"] = json!(a);
    }
}

fn parse_rule(d: &DocumentRecord) -> Result<Rule, EcrError> {
    serde_json::from_str(&d.document)
        .map_err(|e| EcrError::server(format!("stored rule {}: {e}", d.key)))
}

impl Ctx<'_> {
    fn credential_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:secretsmanager:{}:{}:secret:{name}",
            self.reg.config().region,
            self.registry_id()
        )
    }

    fn rule_json(&self, d: &DocumentRecord, r: &Rule) -> Value {
        let mut v = json!({
            "ecrRepositoryPrefix": d.key,
            "upstreamRegistryUrl": r.upstream_registry_url,
            "createdAt": seconds(d.created_at),
            "updatedAt": seconds(d.updated_at),
            "registryId": self.registry_id(),
            "upstreamRegistry": r.upstream_kind(),
            "upstreamRepositoryPrefix": r.upstream_repository_prefix.as_deref().unwrap_or(ROOT_PREFIX),
        });
        add_arns(&mut v, r);
        v
    }

    /// The credential an ARN names, which must exist.
    async fn check_credential(&self, arn: &str) -> Result<(), EcrError> {
        let name = credential_name(arn).ok_or_else(|| {
            EcrError::invalid(format!(
                "Invalid parameter at 'credentialArn' failed to satisfy constraint: 'the secret name must start with {SECRET_PREFIX}'"
            ))
        })?;
        if !self
            .reg
            .upstream_credential_exists(name)
            .await
            .map_err(EcrError::from)?
        {
            return Err(EcrError::new(
                "SecretNotFoundException",
                format!(
                    "The specified secret '{name}' does not exist (store it with `berth cache-rule credential` or the BerthPutUpstreamCredential action)"
                ),
            ));
        }
        Ok(())
    }

    pub(super) async fn create_rule(&self, req: CreateRuleRequest) -> Result<Value, EcrError> {
        self.allow("ecr:CreatePullThroughCacheRule", Target::Registry, &[])
            .await?;
        self.check_registry(req.registry_id.as_ref())?;
        check_rule_prefix(&req.ecr_repository_prefix)?;
        if let Some(p) = &req.upstream_repository_prefix {
            check_upstream_prefix(p)?;
        }
        let rule = Rule {
            upstream_registry_url: req.upstream_registry_url.trim().to_owned(),
            upstream_repository_prefix: req.upstream_repository_prefix.clone(),
            credential_arn: req.credential_arn.clone(),
            custom_role_arn: req.custom_role_arn.clone(),
        };
        let (host, _) = rule.host();
        if !crate::pullthrough::valid_host(&host) {
            return Err(EcrError::constraint(
                "upstreamRegistryUrl",
                &req.upstream_registry_url,
                "Member must be a registry host[:port], optionally with https:// or http://",
            ));
        }
        if let Some(kind) = &req.upstream_registry
            && kind != rule.upstream_kind()
            && rule.upstream_kind() != "oci"
        {
            return Err(EcrError::new(
                "UnsupportedUpstreamRegistryException",
                format!(
                    "upstreamRegistry '{kind}' does not match the upstream registry URL '{}' ({})",
                    req.upstream_registry_url,
                    rule.upstream_kind()
                ),
            ));
        }
        if let Some(arn) = &req.credential_arn {
            self.check_credential(arn).await?;
        }
        let existing = self
            .reg
            .identity()
            .documents(RULE_KIND)
            .await
            .map_err(store)?;
        if existing.len() >= MAX_RULES {
            return Err(EcrError::new(
                "LimitExceededException",
                format!(
                    "The operation did not succeed because it would have exceeded a service limit for your account ({MAX_RULES} pull through cache rules)"
                ),
            ));
        }
        let doc = serde_json::to_string(&rule).map_err(|e| EcrError::server(e.to_string()))?;
        let rec = match self
            .reg
            .identity()
            .put_document(RULE_KIND, &req.ecr_repository_prefix, &doc, PutMode::Create)
            .await
        {
            Ok(r) => r,
            Err(StoreError::DocumentExists { .. }) => {
                return Err(EcrError::new(
                    "PullThroughCacheRuleAlreadyExistsException",
                    format!(
                        "A pull through cache rule with prefix '{}' already exists in the registry with id '{}'",
                        req.ecr_repository_prefix,
                        self.registry_id()
                    ),
                ));
            }
            Err(e) => return Err(store(e)),
        };
        self.reg.pull_through.rules_changed();
        let mut v = self.rule_json(&rec, &rule);
        if let Some(o) = v.as_object_mut() {
            o.remove("updatedAt");
        }
        Ok(v)
    }

    pub(super) async fn describe_rules(
        &self,
        req: DescribeRulesRequest,
    ) -> Result<Value, EcrError> {
        self.allow("ecr:DescribePullThroughCacheRules", Target::Registry, &[])
            .await?;
        self.check_registry(req.registry_id.as_ref())?;
        let n = page_size(req.max_results, 100)?;
        let after = match &req.next_token {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let all = self
            .reg
            .identity()
            .documents(RULE_KIND)
            .await
            .map_err(store)?;
        let wanted = req.ecr_repository_prefixes.unwrap_or_default();
        for p in &wanted {
            check_rule_prefix(p)?;
            if !all.iter().any(|d| &d.key == p) {
                return Err(rule_not_found(p, self.registry_id()));
            }
        }
        let chosen: Vec<&DocumentRecord> = all
            .iter()
            .filter(|d| wanted.is_empty() || wanted.contains(&d.key))
            .filter(|d| after.as_ref().is_none_or(|a| d.key > *a))
            .collect();
        let more = chosen.len() > n;
        let page: Vec<&DocumentRecord> = chosen.into_iter().take(n).collect();
        let mut rules = Vec::new();
        for d in &page {
            rules.push(self.rule_json(d, &parse_rule(d)?));
        }
        let mut v = json!({ "pullThroughCacheRules": rules });
        if more && let Some(last) = page.last() {
            v["nextToken"] = json!(encode_token(&last.key));
        }
        Ok(v)
    }

    /// Authorizes `action` on the registry and loads the rule `prefix` names.
    async fn existing_rule(
        &self,
        action: &str,
        registry_id: Option<&String>,
        prefix: &str,
    ) -> Result<(DocumentRecord, Rule), EcrError> {
        self.allow(action, Target::Registry, &[]).await?;
        self.check_registry(registry_id)?;
        check_rule_prefix(prefix)?;
        let rec = self
            .reg
            .identity()
            .document(RULE_KIND, prefix)
            .await
            .map_err(store)?
            .ok_or_else(|| rule_not_found(prefix, self.registry_id()))?;
        let rule = parse_rule(&rec)?;
        Ok((rec, rule))
    }

    pub(super) async fn update_rule(&self, req: UpdateRuleRequest) -> Result<Value, EcrError> {
        let (_, mut rule) = self
            .existing_rule(
                "ecr:UpdatePullThroughCacheRule",
                req.registry_id.as_ref(),
                &req.ecr_repository_prefix,
            )
            .await?;
        if let Some(arn) = &req.credential_arn {
            self.check_credential(arn).await?;
            rule.credential_arn = Some(arn.clone());
        }
        if let Some(r) = &req.custom_role_arn {
            rule.custom_role_arn = Some(r.clone()).filter(|r| !r.is_empty());
        }
        if let Some(p) = &req.upstream_repository_prefix {
            check_upstream_prefix(p)?;
            rule.upstream_repository_prefix = Some(p.clone());
        }
        let doc = serde_json::to_string(&rule).map_err(|e| EcrError::server(e.to_string()))?;
        let rec = self
            .reg
            .identity()
            .put_document(
                RULE_KIND,
                &req.ecr_repository_prefix,
                &doc,
                PutMode::Replace,
            )
            .await
            .map_err(|e| match e {
                StoreError::DocumentUnknown { .. } => {
                    rule_not_found(&req.ecr_repository_prefix, self.registry_id())
                }
                e => store(e),
            })?;
        self.reg.pull_through.rules_changed();
        let mut v = json!({
            "ecrRepositoryPrefix": rec.key,
            "registryId": self.registry_id(),
            "updatedAt": seconds(rec.updated_at),
            "upstreamRepositoryPrefix": rule.upstream_repository_prefix.as_deref().unwrap_or(ROOT_PREFIX),
        });
        add_arns(&mut v, &rule);
        Ok(v)
    }

    pub(super) async fn delete_rule(&self, req: RulePrefixRequest) -> Result<Value, EcrError> {
        self.allow("ecr:DeletePullThroughCacheRule", Target::Registry, &[])
            .await?;
        self.check_registry(req.registry_id.as_ref())?;
        check_rule_prefix(&req.ecr_repository_prefix)?;
        let rec = self
            .reg
            .identity()
            .delete_document(RULE_KIND, &req.ecr_repository_prefix)
            .await
            .map_err(|e| match e {
                StoreError::DocumentUnknown { .. } => {
                    rule_not_found(&req.ecr_repository_prefix, self.registry_id())
                }
                e => store(e),
            })?;
        self.reg.pull_through.rules_changed();
        let rule = parse_rule(&rec)?;
        let mut v = self.rule_json(&rec, &rule);
        if let Some(o) = v.as_object_mut() {
            o.remove("updatedAt");
            o.remove("upstreamRegistry");
        }
        Ok(v)
    }

    pub(super) async fn validate_rule(&self, req: RulePrefixRequest) -> Result<Value, EcrError> {
        let (rec, rule) = self
            .existing_rule(
                "ecr:ValidatePullThroughCacheRule",
                req.registry_id.as_ref(),
                &req.ecr_repository_prefix,
            )
            .await?;
        let failure = self
            .reg
            .validate_upstream(&rec.key, &rule, rec.updated_at)
            .await;
        let mut v = json!({
            "ecrRepositoryPrefix": rec.key,
            "registryId": self.registry_id(),
            "upstreamRegistryUrl": rule.upstream_registry_url,
            "upstreamRepositoryPrefix": rule.upstream_repository_prefix.as_deref().unwrap_or(ROOT_PREFIX),
            "isValid": failure.is_none(),
        });
        if let Some(f) = failure {
            v["failure"] = json!(f);
        }
        add_arns(&mut v, &rule);
        Ok(v)
    }

    pub(super) async fn put_credential(
        &self,
        req: PutCredentialRequest,
    ) -> Result<Value, EcrError> {
        self.allow("ecr:BerthPutUpstreamCredential", Target::Registry, &[])
            .await?;
        let name = if req.name.starts_with(SECRET_PREFIX) {
            req.name.clone()
        } else {
            format!("{SECRET_PREFIX}{}", req.name)
        };
        let ok_name = name.len() <= 512
            && name.len() > SECRET_PREFIX.len()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
        if !ok_name {
            return Err(EcrError::constraint(
                "name",
                &req.name,
                "Member must be 1-512 characters of letters, digits and /_+=.@-",
            ));
        }
        if req.username.is_empty() || req.access_token.is_empty() {
            return Err(EcrError::invalid(
                "Both username and accessToken must be given",
            ));
        }
        let secret = UpstreamSecret {
            username: req.username,
            access_token: req.access_token,
        };
        self.reg
            .put_upstream_credential(&name, &secret)
            .await
            .map_err(EcrError::from)?;
        Ok(json!({ "name": name, "credentialArn": self.credential_arn(&name) }))
    }

    pub(super) async fn delete_credential(
        &self,
        req: CredentialNameRequest,
    ) -> Result<Value, EcrError> {
        self.allow("ecr:BerthDeleteUpstreamCredential", Target::Registry, &[])
            .await?;
        let name = credential_name(&req.name)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{SECRET_PREFIX}{}", req.name));
        if !self
            .reg
            .delete_upstream_credential(&name)
            .await
            .map_err(EcrError::from)?
        {
            return Err(EcrError::new(
                "SecretNotFoundException",
                format!("The specified secret '{name}' does not exist"),
            ));
        }
        Ok(json!({ "name": name, "credentialArn": self.credential_arn(&name) }))
    }
}
