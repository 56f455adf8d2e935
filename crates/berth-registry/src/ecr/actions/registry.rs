//! The registry: authorization tokens, the registry policy, `DescribeRegistry`, and
//! repository creation templates.

use super::*;

impl Ctx<'_> {
    pub(super) async fn get_authorization_token(
        &self,
        req: GetAuthorizationTokenRequest,
    ) -> Result<Value, EcrError> {
        self.allow("ecr:GetAuthorizationToken", Target::Registry, &[])
            .await?;
        let ids = req.registry_ids.unwrap_or_default();
        if ids.len() > 10 {
            return Err(EcrError::constraint(
                "registryIds",
                &ids.len().to_string(),
                "Member must have length less than or equal to 10",
            ));
        }
        for id in &ids {
            self.check_registry(Some(id))?;
        }
        let key = self.caller.access_key.as_deref().unwrap_or("-");
        let issued = self
            .reg
            .keys
            .token
            .issue_scoped(
                key,
                self.caller.key_version,
                None,
                self.reg.clock.now(),
                self.reg.config().token_ttl,
            )
            .map_err(|e| EcrError::server(format!("issuing a token: {e}")))?;
        let entry = json!({
            "authorizationToken": issued.authorization_token(),
            "expiresAt": system_seconds(issued.expires_at),
            "proxyEndpoint": self.reg.proxy_endpoint(),
        });
        let n = ids.len().max(1);
        Ok(json!({ "authorizationData": vec![entry; n] }))
    }

    pub(super) async fn put_registry_policy(
        &self,
        req: RegistryPolicyRequest,
    ) -> Result<Value, EcrError> {
        self.allow("ecr:PutRegistryPolicy", Target::Registry, &[])
            .await?;
        Self::check_policy(&req.policy_text, "registry")?;
        self.reg
            .identity()
            .set_setting(REGISTRY_POLICY, Some(&req.policy_text))
            .await
            .map_err(store)?;
        Ok(json!({ "registryId": self.registry_id(), "policyText": req.policy_text }))
    }

    pub(super) async fn get_registry_policy(&self, delete: bool) -> Result<Value, EcrError> {
        let action = if delete {
            "ecr:DeleteRegistryPolicy"
        } else {
            "ecr:GetRegistryPolicy"
        };
        self.allow(action, Target::Registry, &[]).await?;
        let text = if delete {
            self.reg.identity().set_setting(REGISTRY_POLICY, None).await
        } else {
            self.reg.identity().setting(REGISTRY_POLICY).await
        }
        .map_err(store)?;
        match text {
            Some(t) => Ok(json!({ "registryId": self.registry_id(), "policyText": t })),
            None => Err(EcrError::new(
                "RegistryPolicyNotFoundException",
                format!(
                    "Registry policy does not exist in the registry with id '{}'",
                    self.registry_id()
                ),
            )),
        }
    }

    pub(super) fn check_prefix(prefix: &str) -> Result<(), EcrError> {
        let name = prefix.trim_end_matches('/');
        let ok = prefix == ROOT_PREFIX
            || (!prefix.is_empty() && prefix.len() <= 256 && RepoName::parse(name).is_ok());
        if ok {
            Ok(())
        } else {
            Err(EcrError::constraint(
                "prefix",
                prefix,
                "Member must be ROOT or a repository name prefix",
            ))
        }
    }

    pub(super) fn template_json(&self, rec: &TemplateRecord) -> Value {
        let mut v = serde_json::from_str::<Value>(&rec.document).unwrap_or_else(|_| json!({}));
        v["prefix"] = json!(rec.prefix);
        v["createdAt"] = json!(seconds(rec.created_at));
        v["updatedAt"] = json!(seconds(rec.updated_at));
        v
    }

    pub(super) async fn put_template(
        &self,
        req: TemplateRequest,
        update: bool,
    ) -> Result<Value, EcrError> {
        let action = if update {
            "ecr:UpdateRepositoryCreationTemplate"
        } else {
            "ecr:CreateRepositoryCreationTemplate"
        };
        self.allow(action, Target::Registry, &[]).await?;
        Self::check_prefix(&req.prefix)?;
        let mut s = req.settings;
        if update {
            // An update changes only the members it names.
            let current = self
                .reg
                .identity()
                .templates()
                .await
                .map_err(store)?
                .into_iter()
                .find(|t| t.prefix == req.prefix)
                .ok_or_else(|| self.template_not_found(&req.prefix))?;
            let old: TemplateSettings = serde_json::from_str(&current.document).unwrap_or_default();
            s = merge_template(old, s);
        }
        let applied = s.applied_for.clone().unwrap_or_default();
        if applied.is_empty() {
            return Err(EcrError::invalid(
                "1 validation error detected: Value null at 'appliedFor' failed to satisfy constraint: Member must not be null",
            ));
        }
        for a in &applied {
            if !["REPLICATION", "PULL_THROUGH_CACHE", "CREATE_ON_PUSH"].contains(&a.as_str()) {
                return Err(EcrError::constraint(
                    "appliedFor",
                    a,
                    "Member must satisfy enum value set: [REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH]",
                ));
            }
        }
        if let Some(m) = &s.image_tag_mutability {
            check_mutability(m, s.image_tag_mutability_exclusion_filters.as_ref())?;
        }
        check_encryption(s.encryption_configuration.as_ref())?;
        if let Some(t) = &s.resource_tags {
            check_tags(t)?;
        }
        if let Some(p) = s.repository_policy.as_deref().filter(|p| !p.is_empty()) {
            Self::check_policy(p, "repository")?;
        }
        if let Some(p) = s.lifecycle_policy.as_deref().filter(|p| !p.is_empty()) {
            super::lifecycle::parse_policy(p)?;
        }
        if s.description
            .as_deref()
            .is_some_and(|d| d.chars().count() > 256)
        {
            return Err(EcrError::constraint(
                "description",
                "…",
                "Member must have length less than or equal to 256",
            ));
        }
        let doc = serde_json::to_string(&s).map_err(|e| EcrError::server(e.to_string()))?;
        let rec = match self
            .reg
            .identity()
            .put_template(&req.prefix, &doc, update)
            .await
        {
            Ok(r) => r,
            Err(StoreError::TemplateExists(p)) => {
                return Err(EcrError::new(
                    "TemplateAlreadyExistsException",
                    format!("A repository creation template with prefix '{p}' already exists"),
                ));
            }
            Err(StoreError::TemplateUnknown(p)) => return Err(self.template_not_found(&p)),
            Err(e) => return Err(store(e)),
        };
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryCreationTemplate": self.template_json(&rec),
        }))
    }

    pub(super) fn template_not_found(&self, prefix: &str) -> EcrError {
        EcrError::new(
            "TemplateNotFoundException",
            format!(
                "The repository creation template with prefix '{prefix}' does not exist in the registry with id '{}'",
                self.registry_id()
            ),
        )
    }

    pub(super) async fn describe_templates(
        &self,
        req: DescribeTemplatesRequest,
    ) -> Result<Value, EcrError> {
        self.allow(
            "ecr:DescribeRepositoryCreationTemplates",
            Target::Registry,
            &[],
        )
        .await?;
        let n = page_size(req.max_results, 100)?;
        let after = match &req.next_token {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let wanted = req.prefixes.unwrap_or_default();
        for p in &wanted {
            Self::check_prefix(p)?;
        }
        let all: Vec<TemplateRecord> = self
            .reg
            .identity()
            .templates()
            .await
            .map_err(store)?
            .into_iter()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.prefix))
            .filter(|t| after.as_ref().is_none_or(|a| t.prefix > *a))
            .collect();
        let more = all.len() > n;
        let page: Vec<&TemplateRecord> = all.iter().take(n).collect();
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryCreationTemplates": page.iter().map(|t| self.template_json(t)).collect::<Vec<_>>(),
        });
        if more && let Some(last) = page.last() {
            v["nextToken"] = json!(encode_token(&last.prefix));
        }
        Ok(v)
    }

    pub(super) async fn delete_template(&self, req: PrefixRequest) -> Result<Value, EcrError> {
        self.allow(
            "ecr:DeleteRepositoryCreationTemplate",
            Target::Registry,
            &[],
        )
        .await?;
        Self::check_prefix(&req.prefix)?;
        let rec = match self.reg.identity().delete_template(&req.prefix).await {
            Ok(r) => r,
            Err(StoreError::TemplateUnknown(p)) => return Err(self.template_not_found(&p)),
            Err(e) => return Err(store(e)),
        };
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryCreationTemplate": self.template_json(&rec),
        }))
    }
}

fn merge_template(old: TemplateSettings, new: TemplateSettings) -> TemplateSettings {
    TemplateSettings {
        description: new.description.or(old.description),
        encryption_configuration: new
            .encryption_configuration
            .or(old.encryption_configuration),
        resource_tags: new.resource_tags.or(old.resource_tags),
        image_tag_mutability: new.image_tag_mutability.or(old.image_tag_mutability),
        image_tag_mutability_exclusion_filters: new
            .image_tag_mutability_exclusion_filters
            .or(old.image_tag_mutability_exclusion_filters),
        repository_policy: new.repository_policy.or(old.repository_policy),
        lifecycle_policy: new.lifecycle_policy.or(old.lifecycle_policy),
        applied_for: new.applied_for.or(old.applied_for),
        custom_role_arn: new.custom_role_arn.or(old.custom_role_arn),
    }
}
