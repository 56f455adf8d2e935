//! Replication: `PutReplicationConfiguration`, `DescribeRegistry` (which returns it) and
//! `DescribeImageReplicationStatus`.

use super::*;
use crate::replication::{ReplicationConfiguration, SETTING};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutReplicationRequest {
    replication_configuration: ReplicationConfiguration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReplicationStatusRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_id: ImageId,
}

impl Ctx<'_> {
    pub(super) async fn put_replication(
        &self,
        req: PutReplicationRequest,
    ) -> Result<Value, EcrError> {
        self.allow("ecr:PutReplicationConfiguration", Target::Registry, &[])
            .await?;
        let c = req.replication_configuration;
        let config = self.reg.config();
        c.check(
            (config.region.as_str(), config.registry_id.as_str()),
            &config.replication_destinations,
        )
        .map_err(EcrError::invalid)?;
        let text = serde_json::to_string(&c).map_err(|e| EcrError::server(e.to_string()))?;
        let stored = if c.rules.is_empty() {
            None
        } else {
            Some(text.as_str())
        };
        self.reg
            .identity()
            .set_setting(SETTING, stored)
            .await
            .map_err(store)?;
        self.reg.replication.changed();
        Ok(json!({ "replicationConfiguration": c }))
    }

    pub(super) async fn describe_registry(&self) -> Result<Value, EcrError> {
        self.allow("ecr:DescribeRegistry", Target::Registry, &[])
            .await?;
        self.reg.replication.changed();
        let c = self
            .reg
            .replication_configuration()
            .await
            .map_err(EcrError::from)?;
        Ok(json!({
            "registryId": self.registry_id(),
            "replicationConfiguration": *c,
        }))
    }

    pub(super) async fn replication_status(
        &self,
        req: ReplicationStatusRequest,
    ) -> Result<Value, EcrError> {
        let (repo, _) = self
            .repo(
                req.registry_id.as_ref(),
                &req.repository_name,
                "ecr:DescribeImageReplicationStatus",
            )
            .await?;
        let img = match self.resolve(&repo, &req.image_id).await? {
            Ok(img) => img,
            Err(_) => return Err(self.image_not_found(&repo, &req.image_id)),
        };
        let statuses = self
            .reg
            .replication_statuses(&repo, &img.manifest.digest)
            .await
            .map_err(EcrError::from)?;
        let mut id = json!({ "imageDigest": img.manifest.digest.to_string() });
        if let Some(t) = &req.image_id.image_tag {
            id["imageTag"] = json!(t);
        }
        Ok(json!({
            "repositoryName": repo.as_str(),
            "imageId": id,
            "replicationStatuses": statuses.into_iter().map(|(region, registry, status, failure)| {
                let mut v = json!({ "region": region, "registryId": registry, "status": status });
                if let Some(f) = failure {
                    v["failureCode"] = json!(f);
                }
                v
            }).collect::<Vec<_>>(),
        }))
    }
}
