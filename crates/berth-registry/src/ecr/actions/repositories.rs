//! Repositories: create, describe, delete, mutability, scanning, resource tags, policies.

use super::*;

impl Ctx<'_> {
    pub(super) async fn create_repository(
        &self,
        req: CreateRepositoryRequest,
    ) -> Result<Value, EcrError> {
        self.check_registry(req.registry_id.as_ref())?;
        let repo = self.name(&req.repository_name)?;
        let tags = req.tags.unwrap_or_default();
        check_tags(&tags)?;
        let mutability = req.image_tag_mutability.unwrap_or_else(|| "MUTABLE".into());
        let filters = check_mutability(
            &mutability,
            req.image_tag_mutability_exclusion_filters.as_ref(),
        )?;
        let (encryption_type, kms_key) = check_encryption(req.encryption_configuration.as_ref())?;
        let target = Target::Repository {
            name: repo.as_str(),
            policy: None,
        };
        let ctx = tag_context(&tags);
        self.allow("ecr:CreateRepository", target, &ctx).await?;
        if !tags.is_empty() {
            self.allow("ecr:TagResource", target, &ctx).await?;
        }
        let settings = NewRepository {
            tag_mutability: mutability,
            mutability_filters: filters,
            scan_on_push: req
                .image_scanning_configuration
                .and_then(|s| s.scan_on_push)
                .unwrap_or(false),
            encryption_type,
            kms_key,
            policy: None,
            lifecycle_policy: None,
            resource_tags: tags.into_iter().map(|t| (t.key, t.value)).collect(),
        };
        match self.reg.meta().create_repository(&repo, &settings).await {
            Ok(rec) => Ok(json!({ "repository": self.repository_json(&rec) })),
            Err(StoreError::RepositoryExists(_)) => Err(EcrError::new(
                "RepositoryAlreadyExistsException",
                format!(
                    "The repository with name '{repo}' already exists in the registry with id '{}'",
                    self.registry_id()
                ),
            )),
            Err(e) => Err(store(e)),
        }
    }

    pub(super) async fn describe_repositories(
        &self,
        req: DescribeRepositoriesRequest,
    ) -> Result<Value, EcrError> {
        self.check_registry(req.registry_id.as_ref())?;
        if let Some(names) = req.repository_names {
            if req.next_token.is_some() || req.max_results.is_some() {
                return Err(EcrError::invalid(
                    "Invalid parameter: maxResults and nextToken cannot be used with repositoryNames",
                ));
            }
            if names.is_empty() || names.len() > 100 {
                return Err(EcrError::constraint(
                    "repositoryNames",
                    &names.len().to_string(),
                    "Member must have length between 1 and 100",
                ));
            }
            let mut out = Vec::new();
            for n in &names {
                let (_, rec) = self.repo(None, n, "ecr:DescribeRepositories").await?;
                out.push(self.repository_json(&rec));
            }
            return Ok(json!({ "repositories": out }));
        }
        let n = page_size(req.max_results, 100)?;
        let mut last = match &req.next_token {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let mut out = Vec::new();
        // Repositories the caller may not describe are left out of the listing.
        loop {
            let page = self
                .reg
                .meta()
                .repositories(last.as_deref(), n + 1 - out.len().min(n))
                .await
                .map_err(store)?;
            let exhausted = page.len() <= n - out.len();
            for rec in page {
                if out.len() == n {
                    let token = last.as_deref().map(encode_token);
                    return Ok(json!({ "repositories": out, "nextToken": token }));
                }
                last = Some(rec.name.clone());
                let target = Target::Repository {
                    name: &rec.name,
                    policy: rec.policy.as_deref(),
                };
                if self
                    .reg
                    .authorize(self.caller, "ecr:DescribeRepositories", target, &[])
                    .await
                    .is_ok()
                {
                    out.push(self.repository_json(&rec));
                }
            }
            if exhausted {
                return Ok(json!({ "repositories": out }));
            }
        }
    }

    pub(super) async fn delete_repository(&self, req: RepoRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:DeleteRepository",
            )
            .await?;
        match self
            .reg
            .meta()
            .delete_repository(&repo, req.force.unwrap_or(false))
            .await
        {
            Ok((rec, _)) => Ok(json!({ "repository": self.repository_json(&rec) })),
            Err(StoreError::RepositoryNotEmpty(_)) => Err(EcrError::new(
                "RepositoryNotEmptyException",
                format!(
                    "The repository with name '{repo}' in registry with id '{}' cannot be deleted because it still contains images",
                    self.registry_id()
                ),
            )),
            Err(StoreError::RepositoryUnknown(_)) => Err(self.not_found(repo.as_str())),
            Err(e) => Err(store(e)),
        }
    }

    pub(super) async fn put_mutability(&self, req: MutabilityRequest) -> Result<Value, EcrError> {
        let filters = check_mutability(
            &req.image_tag_mutability,
            req.image_tag_mutability_exclusion_filters.as_ref(),
        )?;
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:PutImageTagMutability",
            )
            .await?;
        let rec = self
            .reg
            .meta()
            .update_repository(
                &repo,
                RepositoryUpdate::TagMutability {
                    mutability: req.image_tag_mutability,
                    filters,
                },
            )
            .await
            .map_err(store)?;
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "imageTagMutability": rec.tag_mutability,
        });
        add_exclusion_filters(&mut v, &rec.mutability_filters);
        Ok(v)
    }

    pub(super) async fn put_scanning(&self, req: ScanningRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:PutImageScanningConfiguration",
            )
            .await?;
        let on = req
            .image_scanning_configuration
            .scan_on_push
            .unwrap_or(false);
        let rec = self
            .reg
            .meta()
            .update_repository(&repo, RepositoryUpdate::ScanOnPush(on))
            .await
            .map_err(store)?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "imageScanningConfiguration": { "scanOnPush": rec.scan_on_push },
        }))
    }

    // ---- resource tags -------------------------------------------------------------------

    pub(super) fn repo_from_arn(&self, arn: &str) -> Result<RepoName, EcrError> {
        let prefix = self.reg.repository_arn("");
        arn.strip_prefix(&prefix)
            .and_then(|n| RepoName::parse(n).ok())
            .ok_or_else(|| {
                EcrError::invalid(format!(
                    "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN' (expected {prefix}<repository>)"
                ))
            })
    }

    pub(super) async fn tag_resource(&self, req: TagResourceRequest) -> Result<Value, EcrError> {
        let repo = self.repo_from_arn(&req.resource_arn)?;
        check_tags(&req.tags)?;
        let rec = self
            .allow_repo("ecr:TagResource", &repo, &tag_context(&req.tags))
            .await?;
        if rec.is_none() {
            return Err(self.not_found(repo.as_str()));
        }
        let existing = self.reg.meta().resource_tags(&repo).await.map_err(store)?;
        let new_keys = req
            .tags
            .iter()
            .filter(|t| !existing.iter().any(|(k, _)| *k == t.key))
            .count();
        if existing.len() + new_keys > MAX_TAGS {
            return Err(EcrError::new(
                "TooManyTagsException",
                format!("A repository can have at most {MAX_TAGS} tags"),
            ));
        }
        let set: Vec<(String, String)> = req.tags.into_iter().map(|t| (t.key, t.value)).collect();
        self.reg
            .meta()
            .update_resource_tags(&repo, &set, &[])
            .await
            .map_err(store)?;
        Ok(json!({}))
    }

    pub(super) async fn untag_resource(
        &self,
        req: UntagResourceRequest,
    ) -> Result<Value, EcrError> {
        let repo = self.repo_from_arn(&req.resource_arn)?;
        let tag_keys = [("aws:TagKeys".to_owned(), req.tag_keys.clone())];
        let rec = self
            .allow_repo("ecr:UntagResource", &repo, &tag_keys)
            .await?;
        if rec.is_none() {
            return Err(self.not_found(repo.as_str()));
        }
        self.reg
            .meta()
            .update_resource_tags(&repo, &[], &req.tag_keys)
            .await
            .map_err(store)?;
        Ok(json!({}))
    }

    pub(super) async fn list_tags(&self, req: ArnRequest) -> Result<Value, EcrError> {
        let repo = self.repo_from_arn(&req.resource_arn)?;
        let (repo, _) = self
            .repo(None, repo.as_str(), "ecr:ListTagsForResource")
            .await?;
        let tags = self.reg.meta().resource_tags(&repo).await.map_err(store)?;
        let tags: Vec<Value> = tags
            .into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        Ok(json!({ "tags": tags }))
    }

    pub(super) fn check_policy(text: &str, what: &str) -> Result<(), EcrError> {
        berth_iam::policy::Policy::parse(text, PolicyKind::Resource).map_err(|e| {
            EcrError::invalid(format!(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} policy provided': {e}"
            ))
        })?;
        Ok(())
    }

    pub(super) async fn set_repo_policy(&self, req: SetPolicyRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:SetRepositoryPolicy",
            )
            .await?;
        Self::check_policy(&req.policy_text, "repository")?;
        self.reg
            .meta()
            .update_repository(
                &repo,
                RepositoryUpdate::Policy(Some(req.policy_text.clone())),
            )
            .await
            .map_err(store)?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "policyText": req.policy_text,
        }))
    }

    pub(super) async fn get_repo_policy(
        &self,
        req: RepoRequest,
        delete: bool,
    ) -> Result<Value, EcrError> {
        let action = if delete {
            "ecr:DeleteRepositoryPolicy"
        } else {
            "ecr:GetRepositoryPolicy"
        };
        let (repo, rec) = self
            .repo(req.registry_id.as_ref(), &req.repository_name, action)
            .await?;
        let Some(text) = rec.policy else {
            return Err(EcrError::new(
                "RepositoryPolicyNotFoundException",
                format!(
                    "Repository policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
                    self.registry_id()
                ),
            ));
        };
        if delete {
            self.reg
                .meta()
                .update_repository(&repo, RepositoryUpdate::Policy(None))
                .await
                .map_err(store)?;
        }
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "policyText": text,
        }))
    }
}
