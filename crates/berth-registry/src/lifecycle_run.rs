//! Lifecycle policies applied to a repository: the plan from a snapshot of its manifests
//! ([`crate::lifecycle::plan`]), the preview, and the run that expires what the plan names in
//! one metadata transaction (which re-checks every image, so a tag pushed since the evaluation
//! saves its image).

use berth_oci::{Digest, RepoName};
use berth_store::{ExpiryGroup, SnapshotManifest};

use crate::error::RegistryError;
use crate::lifecycle::{LifecyclePolicy, Plan, PlannedExpiry, SnapshotImage, plan};
use crate::service::Registry;

/// Images (with their dependents) expired per metadata transaction.
const EXPIRY_BATCH: usize = 500;

/// What a lifecycle run did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LifecycleOutcome {
    /// The images expired, with the rule that expired each (dependents carry their root's).
    pub expired: Vec<PlannedExpiry>,
    /// When the policy was evaluated, milliseconds since the epoch.
    pub evaluated_at: i64,
}

fn snapshot_image(m: SnapshotManifest) -> SnapshotImage {
    SnapshotImage {
        digest: m.digest.to_string(),
        tags: m.tags,
        pushed_at: m.pushed_at,
        last_pulled_at: m.last_pulled_at,
        subject: m.subject.map(|s| s.to_string()),
        children: m.children.iter().map(ToString::to_string).collect(),
    }
}

/// Groups a plan into what the store expires: each root with its dependents.
fn groups(plan: &Plan) -> Result<Vec<ExpiryGroup>, RegistryError> {
    let digest = |s: &str| {
        Digest::parse(s)
            .map_err(|e| RegistryError::Store(berth_store::StoreError::Corrupt(e.to_string())))
    };
    let mut out: Vec<ExpiryGroup> = Vec::new();
    let mut by_root = std::collections::HashMap::new();
    for e in &plan.expiries {
        match &e.root {
            None => {
                by_root.insert(e.digest.clone(), out.len());
                out.push(ExpiryGroup {
                    root: digest(&e.digest)?,
                    root_tags: e.tags.clone(),
                    dependents: Vec::new(),
                });
            }
            // A dependent shared by several expiring roots is listed after the last of them,
            // under its name: its group is deleted after every parent's.
            Some(root) => {
                if let Some(&i) = by_root.get(root) {
                    out[i].dependents.push(digest(&e.digest)?);
                }
            }
        }
    }
    Ok(out)
}

impl Registry {
    /// Milliseconds since the epoch by the registry's clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// What `policy` would expire in the repository now.
    pub async fn lifecycle_plan(
        &self,
        repo: &RepoName,
        policy: &LifecyclePolicy,
    ) -> Result<Plan, RegistryError> {
        let snapshot = self.meta().lifecycle_snapshot(repo).await?;
        let images: Vec<SnapshotImage> = snapshot.into_iter().map(snapshot_image).collect();
        let now = self.now_ms();
        // 100,000 images plan in well under a second, off the async threads all the same.
        let policy = policy.clone();
        tokio::task::spawn_blocking(move || plan(&policy, &images, now))
            .await
            .map_err(|e| RegistryError::Store(berth_store::StoreError::Worker(e.to_string())))
    }

    /// Applies the repository's lifecycle policy now; every expiry is logged with its rule.
    /// A repository without a policy expires nothing.
    pub async fn run_lifecycle(&self, repo: &RepoName) -> Result<LifecycleOutcome, RegistryError> {
        let Some(rec) = self.meta().repository(repo).await? else {
            return Err(RegistryError::NameUnknown(repo.to_string()));
        };
        let Some(text) = rec.lifecycle_policy else {
            return Ok(LifecycleOutcome::default());
        };
        let policy = LifecyclePolicy::parse(&text).map_err(|e| {
            RegistryError::Store(berth_store::StoreError::Corrupt(format!(
                "stored lifecycle policy of {repo}: {e}"
            )))
        })?;
        let planned = self.lifecycle_plan(repo, &policy).await?;
        let evaluated_at = self.now_ms();
        // In batches, so pushes to the repository wait for one short transaction at most;
        // every group is re-checked in its batch's transaction anyway.
        let mut deleted = std::collections::HashSet::new();
        let all = groups(&planned)?;
        for batch in all.chunks(EXPIRY_BATCH) {
            for d in self.meta().expire_images(repo, batch, evaluated_at).await? {
                deleted.insert(d.to_string());
            }
        }
        if all.is_empty() {
            self.meta().expire_images(repo, &[], evaluated_at).await?;
        }
        let expired: Vec<PlannedExpiry> = planned
            .expiries
            .into_iter()
            .filter(|e| deleted.contains(&e.digest))
            .collect();
        if let Some(m) = self.metrics() {
            m.lifecycle_runs.inc();
            m.lifecycle_expired.inc_by(expired.len() as u64);
        }
        for e in &expired {
            tracing::info!(repository = %repo, digest = %e.digest, tags = ?e.tags,
                rule = e.rule_priority, with = e.root.as_deref().unwrap_or(""),
                "lifecycle policy expired an image");
        }
        Ok(LifecycleOutcome {
            expired,
            evaluated_at,
        })
    }

    /// The scheduled run, every `every`: [`Registry::run_all_lifecycles`], by one replica per
    /// period when the stores are shared (the first to take the `lifecycle` lease for most of
    /// the period). `None`: another replica has this period.
    pub async fn run_scheduled_lifecycles(
        &self,
        every: std::time::Duration,
    ) -> Result<Option<usize>, RegistryError> {
        if self.config().shared_stores {
            let ttl = i64::try_from(every.as_millis().saturating_mul(9) / 10).unwrap_or(i64::MAX);
            if !self
                .meta()
                .acquire_lease("lifecycle", self.instance_id(), ttl.max(1))
                .await?
            {
                return Ok(None);
            }
        }
        self.run_all_lifecycles().await.map(Some)
    }

    /// Applies every repository's lifecycle policy (the scheduled run); failures are logged
    /// per repository. Returns how many images were expired.
    pub async fn run_all_lifecycles(&self) -> Result<usize, RegistryError> {
        let mut total = 0;
        for name in self.meta().lifecycle_repositories().await? {
            let Ok(repo) = RepoName::parse(&name) else {
                continue;
            };
            match self.run_lifecycle(&repo).await {
                Ok(o) => total += o.expired.len(),
                Err(RegistryError::NameUnknown(_)) => {}
                Err(e) => {
                    tracing::warn!(repository = %repo, error = %e, "lifecycle run failed");
                }
            }
        }
        Ok(total)
    }
}
