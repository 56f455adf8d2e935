//! A repository's lifecycle policy through the ECR API: get, set, delete, preview (waiting out
//! ECR's asynchronous evaluation), and `berth serve`'s run-now action.

use std::time::{Duration, Instant};

use berth_client::aws_sdk_ecr as ecr;
use berth_client::ecr::AwsOptions;
use ecr::error::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{OpsError, Result};
use crate::repo::api_error;

/// One image a policy expires (or would).
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExpiringImage {
    pub image_digest: String,
    pub image_tags: Vec<String>,
    /// Seconds since the epoch.
    pub image_pushed_at: Option<i64>,
    /// `EXPIRE`.
    pub action: Option<String>,
    /// The priority of the rule that expires it.
    pub applied_rule_priority: Option<i32>,
}

/// A finished lifecycle policy preview.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LifecyclePreview {
    pub repository: String,
    /// `COMPLETE`, `FAILED` or `EXPIRED` (ECR's statuses).
    pub status: String,
    /// The policy evaluated.
    pub lifecycle_policy_text: Option<String>,
    /// The images the policy would expire, oldest push first as ECR lists them.
    pub preview_results: Vec<ExpiringImage>,
    /// `summary.expiringImageTotalCount`.
    pub expiring_image_total_count: Option<i32>,
}

/// What a run of the policy expired (`berth serve` only: ECR runs policies on its own schedule).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LifecycleRun {
    pub repository: String,
    pub expired_images: Vec<ExpiringImage>,
    /// When the policy was evaluated, seconds since the epoch.
    pub last_evaluated_at: Option<f64>,
}

/// The repository's lifecycle policy text; `None` when it has none.
pub async fn get_policy(c: &ecr::Client, repository: &str) -> Result<Option<String>> {
    match c
        .get_lifecycle_policy()
        .repository_name(repository)
        .send()
        .await
    {
        Ok(out) => Ok(out.lifecycle_policy_text().map(str::to_owned)),
        Err(e) if e.code() == Some("LifecyclePolicyNotFoundException") => Ok(None),
        Err(e) => Err(api_error("GetLifecyclePolicy", e)),
    }
}

/// Sets the repository's lifecycle policy (the registry validates it).
pub async fn put_policy(c: &ecr::Client, repository: &str, text: &str) -> Result<()> {
    c.put_lifecycle_policy()
        .repository_name(repository)
        .lifecycle_policy_text(text)
        .send()
        .await
        .map_err(|e| api_error("PutLifecyclePolicy", e))?;
    Ok(())
}

/// Deletes the repository's lifecycle policy.
pub async fn delete_policy(c: &ecr::Client, repository: &str) -> Result<()> {
    c.delete_lifecycle_policy()
        .repository_name(repository)
        .send()
        .await
        .map_err(|e| api_error("DeleteLifecyclePolicy", e))?;
    Ok(())
}

fn secs(t: Option<&ecr::primitives::DateTime>) -> Option<i64> {
    t.map(ecr::primitives::DateTime::secs)
}

/// Previews a lifecycle policy (`policy`, else the repository's own): starts the preview and
/// polls `GetLifecyclePolicyPreview` until it leaves `IN_PROGRESS` (ECR evaluates previews
/// asynchronously; `berth serve` at once), at most `wait`. Changes no image.
pub async fn preview(
    c: &ecr::Client,
    repository: &str,
    policy: Option<&str>,
    wait: Duration,
) -> Result<LifecyclePreview> {
    let mut start = c
        .start_lifecycle_policy_preview()
        .repository_name(repository);
    if let Some(p) = policy {
        start = start.lifecycle_policy_text(p);
    }
    start
        .send()
        .await
        .map_err(|e| api_error("StartLifecyclePolicyPreview", e))?;
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(200);
    loop {
        let mut out = LifecyclePreview {
            repository: repository.to_owned(),
            status: String::new(),
            lifecycle_policy_text: None,
            preview_results: Vec::new(),
            expiring_image_total_count: None,
        };
        let mut pages = c
            .get_lifecycle_policy_preview()
            .repository_name(repository)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("GetLifecyclePolicyPreview", e))?;
            out.status = page
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            out.lifecycle_policy_text = page.lifecycle_policy_text().map(str::to_owned);
            if let Some(n) = page.summary().and_then(|s| s.expiring_image_total_count()) {
                out.expiring_image_total_count = Some(n);
            }
            out.preview_results
                .extend(page.preview_results().iter().map(|r| {
                    ExpiringImage {
                        image_digest: r.image_digest().unwrap_or_default().to_owned(),
                        image_tags: r.image_tags().to_vec(),
                        image_pushed_at: secs(r.image_pushed_at()),
                        action: r
                            .action()
                            .and_then(|a| a.r#type())
                            .map(|t| t.as_str().to_owned()),
                        applied_rule_priority: r.applied_rule_priority(),
                    }
                }));
        }
        if out.status != "IN_PROGRESS" {
            return Ok(out);
        }
        if Instant::now() + delay > deadline {
            return Err(OpsError::Ecr {
                action: "GetLifecyclePolicyPreview".into(),
                code: "Timeout".into(),
                message: format!(
                    "the preview of {repository} is still IN_PROGRESS after {}s",
                    wait.as_secs()
                ),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs the repository's lifecycle policy now (`berth serve`'s `BerthRunLifecyclePolicy`).
pub async fn run_now(aws: &AwsOptions, repository: &str) -> Result<LifecycleRun> {
    let out = berth_client::ecr::call_berth_action(
        aws,
        "BerthRunLifecyclePolicy",
        &serde_json::json!({ "repositoryName": repository }),
    )
    .await?;
    let expired_images = out["expiredImages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ExpiringImage {
            image_digest: e["imageDigest"].as_str().unwrap_or_default().to_owned(),
            image_tags: e["imageTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            // Epoch seconds, fractional as AWS JSON writes them.
            #[allow(clippy::cast_possible_truncation)]
            image_pushed_at: e["imagePushedAt"].as_f64().map(|s| s.floor() as i64),
            action: Some("EXPIRE".to_owned()),
            applied_rule_priority: e["appliedRulePriority"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok()),
        })
        .collect();
    Ok(LifecycleRun {
        repository: repository.to_owned(),
        expired_images,
        last_evaluated_at: out["lastEvaluatedAt"].as_f64(),
    })
}
