//! Lifecycle policies: put/get/delete, previews, and berth's on-demand run; plus berth's
//! on-demand garbage collection.

use berth_store::LifecyclePreview;

use super::*;
use crate::gc::GcOptions;
use crate::lifecycle::{LifecyclePolicy, MAX_POLICY_CHARS, PlannedExpiry};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutLifecycleRequest {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartPreviewRequest {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PreviewFilter {
    tag_status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetPreviewRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<PreviewFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GcRequest {
    dry_run: Option<bool>,
    grace_period_seconds: Option<u64>,
}

/// Parses a policy text, answering ECR's validation error.
pub(super) fn parse_policy(text: &str) -> Result<LifecyclePolicy, EcrError> {
    if text.chars().count() < 100 {
        return Err(EcrError::constraint(
            "lifecyclePolicyText",
            text,
            "Member must have length greater than or equal to 100",
        ));
    }
    if text.chars().count() > MAX_POLICY_CHARS {
        return Err(EcrError::constraint(
            "lifecyclePolicyText",
            &text.chars().take(64).collect::<String>(),
            &format!("Member must have length less than or equal to {MAX_POLICY_CHARS}"),
        ));
    }
    LifecyclePolicy::parse(text).map_err(|e| EcrError::invalid(e.to_string()))
}

/// An expired (or expiring) image as the preview and the run report it.
fn expiry_json(e: &PlannedExpiry) -> Value {
    json!({
        "imageDigest": e.digest,
        "imageTags": e.tags,
        "imagePushedAt": seconds(e.pushed_at),
        "appliedRulePriority": e.rule_priority,
    })
}

impl Ctx<'_> {
    fn no_policy(&self, repo: &RepoName) -> EcrError {
        EcrError::new(
            "LifecyclePolicyNotFoundException",
            format!(
                "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
                self.registry_id()
            ),
        )
    }

    pub(super) async fn put_lifecycle(&self, req: PutLifecycleRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:PutLifecyclePolicy",
            )
            .await?;
        parse_policy(&req.lifecycle_policy_text)?;
        self.reg
            .meta()
            .update_repository(
                &repo,
                RepositoryUpdate::LifecyclePolicy(Some(req.lifecycle_policy_text.clone())),
            )
            .await
            .map_err(store)?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "lifecyclePolicyText": req.lifecycle_policy_text,
        }))
    }

    pub(super) async fn get_lifecycle(
        &self,
        req: RepoRequest,
        delete: bool,
    ) -> Result<Value, EcrError> {
        let action = if delete {
            "ecr:DeleteLifecyclePolicy"
        } else {
            "ecr:GetLifecyclePolicy"
        };
        let (repo, rec) = self
            .repo(req.registry_id.as_ref(), &req.repository_name, action)
            .await?;
        let Some(text) = rec.lifecycle_policy else {
            return Err(self.no_policy(&repo));
        };
        if delete {
            self.reg
                .meta()
                .update_repository(&repo, RepositoryUpdate::LifecyclePolicy(None))
                .await
                .map_err(store)?;
        }
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "lifecyclePolicyText": text,
        });
        if let Some(t) = rec.lifecycle_evaluated_at {
            v["lastEvaluatedAt"] = json!(seconds(t));
        }
        Ok(v)
    }

    pub(super) async fn start_preview(&self, req: StartPreviewRequest) -> Result<Value, EcrError> {
        let (repo, rec) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:StartLifecyclePolicyPreview",
            )
            .await?;
        let Some(text) = req.lifecycle_policy_text.or(rec.lifecycle_policy) else {
            return Err(self.no_policy(&repo));
        };
        let policy = parse_policy(&text)?;
        let created_at = self.reg.now_ms();
        // The evaluation is fast (100,000 images in well under a second), so the preview is
        // complete when this returns; clients that poll see COMPLETE at once.
        let (status, results) = match self.reg.lifecycle_plan(&repo, &policy).await {
            Ok(plan) => {
                let results: Vec<Value> = plan
                    .expiries
                    .iter()
                    .map(|e| {
                        let mut v = expiry_json(e);
                        v["action"] = json!({ "type": "EXPIRE" });
                        v
                    })
                    .collect();
                ("COMPLETE", Value::Array(results))
            }
            Err(e) => {
                tracing::warn!(repository = %repo, error = %e, "lifecycle preview failed");
                ("FAILED", Value::Array(Vec::new()))
            }
        };
        self.reg
            .meta()
            .put_lifecycle_preview(
                &repo,
                &LifecyclePreview {
                    policy: text.clone(),
                    status: status.into(),
                    results: results.to_string(),
                    created_at,
                },
            )
            .await
            .map_err(store)?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "lifecyclePolicyText": text,
            "status": status,
        }))
    }

    pub(super) async fn get_preview(&self, req: GetPreviewRequest) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:GetLifecyclePolicyPreview",
            )
            .await?;
        if req.image_ids.is_some() && (req.next_token.is_some() || req.max_results.is_some()) {
            return Err(EcrError::invalid(
                "imageIds cannot be combined with nextToken or maxResults",
            ));
        }
        let max = match req.max_results {
            None => 100,
            Some(n) if (1..=100).contains(&n) => usize::try_from(n).unwrap_or(100),
            Some(n) => {
                return Err(EcrError::constraint(
                    "maxResults",
                    &n.to_string(),
                    "Member must have value between 1 and 100",
                ));
            }
        };
        let Some(preview) = self
            .reg
            .meta()
            .lifecycle_preview(&repo)
            .await
            .map_err(store)?
        else {
            return Err(EcrError::new(
                "LifecyclePolicyPreviewNotFoundException",
                format!(
                    "There is no dry run for the repository with name '{repo}' in the registry with id '{}'",
                    self.registry_id()
                ),
            ));
        };
        let all: Vec<Value> = serde_json::from_str(&preview.results)
            .map_err(|e| EcrError::server(format!("stored preview of {repo}: {e}")))?;
        let total = all.len();
        let tag_status = req
            .filter
            .and_then(|f| f.tag_status)
            .unwrap_or_else(|| "ANY".into());
        if !["TAGGED", "UNTAGGED", "ANY"].contains(&tag_status.as_str()) {
            return Err(EcrError::constraint(
                "filter.tagStatus",
                &tag_status,
                "Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]",
            ));
        }
        let tagged = |v: &Value| v["imageTags"].as_array().is_some_and(|t| !t.is_empty());
        let wanted = |v: &Value| match tag_status.as_str() {
            "TAGGED" => tagged(v),
            "UNTAGGED" => !tagged(v),
            _ => true,
        };
        let matches_id = |v: &Value, id: &ImageId| {
            id.image_digest
                .as_deref()
                .is_none_or(|d| v["imageDigest"] == d)
                && id.image_tag.as_deref().is_none_or(|t| {
                    v["imageTags"]
                        .as_array()
                        .is_some_and(|tags| tags.iter().any(|x| x == t))
                })
        };
        let filtered: Vec<Value> = all
            .into_iter()
            .filter(|v| wanted(v))
            .filter(|v| {
                req.image_ids
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|id| matches_id(v, id)))
            })
            .collect();
        let start = match &req.next_token {
            Some(t) => decode_token(t)?
                .parse::<usize>()
                .map_err(|_| EcrError::invalid("Invalid parameter at 'nextToken'"))?,
            None => 0,
        };
        let end = (start + max).min(filtered.len());
        let page: Vec<Value> = filtered
            .get(start.min(filtered.len())..end)
            .unwrap_or_default()
            .to_vec();
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "lifecyclePolicyText": preview.policy,
            "status": preview.status,
            "previewResults": page,
            "summary": { "expiringImageTotalCount": total },
        });
        if end < filtered.len() {
            v["nextToken"] = json!(encode_token(&end.to_string()));
        }
        Ok(v)
    }

    /// berth's extension: applies the repository's lifecycle policy now.
    pub(super) async fn run_lifecycle(&self, req: RepoRequest) -> Result<Value, EcrError> {
        let (repo, rec) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:BerthRunLifecyclePolicy",
            )
            .await?;
        if rec.lifecycle_policy.is_none() {
            return Err(self.no_policy(&repo));
        }
        let outcome = self.reg.run_lifecycle(&repo).await?;
        let expired: Vec<Value> = outcome.expired.iter().map(expiry_json).collect();
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "expiredImages": expired,
            "lastEvaluatedAt": seconds(outcome.evaluated_at),
        }))
    }

    /// berth's extension: one garbage collection now.
    pub(super) async fn run_gc(&self, req: GcRequest) -> Result<Value, EcrError> {
        self.allow("ecr:BerthRunGarbageCollection", Target::Registry, &[])
            .await?;
        let grace = req
            .grace_period_seconds
            .map_or(self.reg.config().gc_grace, std::time::Duration::from_secs);
        let report = self
            .reg
            .collect_garbage(GcOptions {
                dry_run: req.dry_run.unwrap_or(false),
                grace,
            })
            .await?;
        serde_json::to_value(report).map_err(|e| EcrError::server(e.to_string()))
    }
}
