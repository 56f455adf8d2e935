//! Replication through the ECR API (`aws-sdk-ecr`): the registry's replication configuration
//! and an image's replication status, on Amazon ECR or `berth serve`.

use berth_client::aws_sdk_ecr as ecr;
use ecr::types::{
    ImageIdentifier, ReplicationConfiguration, ReplicationDestination, ReplicationRule,
    RepositoryFilter, RepositoryFilterType,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{OpsError, Result};
use crate::repo::api_error;

/// A replication rule, as ECR's JSON has it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Rule {
    pub destinations: Vec<Destination>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_filters: Vec<Filter>,
}

/// A destination registry: region and registry id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Destination {
    pub region: String,
    pub registry_id: String,
}

/// A repository filter (`PREFIX_MATCH`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Filter {
    pub filter: String,
    pub filter_type: String,
}

/// The registry's replication configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Configuration {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Configuration {
    /// Parses ECR's JSON (`{"rules": […]}`, as `aws ecr put-replication-configuration` takes).
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            OpsError::usage(format!(
                "replication configuration: {e} (expected {{\"rules\":[{{\"destinations\":[{{\"region\":…,\"registryId\":…}}],\"repositoryFilters\":[…]}}]}})"
            ))
        })
    }

    /// One rule: to each `REGION/REGISTRY_ID` of `to`, for the repositories starting with one
    /// of `prefixes` (none: every repository).
    pub fn single_rule(to: &[String], prefixes: &[String]) -> Result<Self> {
        let destinations = to
            .iter()
            .map(|t| {
                let (region, id) = t.split_once('/').ok_or_else(|| {
                    OpsError::usage(format!("--to {t}: expected REGION/REGISTRY_ID"))
                })?;
                Ok(Destination {
                    region: region.to_owned(),
                    registry_id: id.to_owned(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let repository_filters = prefixes
            .iter()
            .map(|p| Filter {
                filter: p.clone(),
                filter_type: "PREFIX_MATCH".to_owned(),
            })
            .collect();
        Ok(Configuration {
            rules: vec![Rule {
                destinations,
                repository_filters,
            }],
        })
    }

    fn to_sdk(&self) -> Result<ReplicationConfiguration> {
        let mut rules = Vec::new();
        for r in &self.rules {
            let mut b = ReplicationRule::builder();
            for d in &r.destinations {
                b = b.destinations(
                    ReplicationDestination::builder()
                        .region(&d.region)
                        .registry_id(&d.registry_id)
                        .build()
                        .map_err(|e| OpsError::usage(e.to_string()))?,
                );
            }
            for f in &r.repository_filters {
                b = b.repository_filters(
                    RepositoryFilter::builder()
                        .filter(&f.filter)
                        .filter_type(RepositoryFilterType::from(f.filter_type.as_str()))
                        .build()
                        .map_err(|e| OpsError::usage(e.to_string()))?,
                );
            }
            rules.push(b.build().map_err(|e| OpsError::usage(e.to_string()))?);
        }
        ReplicationConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| OpsError::usage(e.to_string()))
    }

    fn from_sdk(c: Option<&ReplicationConfiguration>) -> Self {
        let rules = c
            .map(|c| {
                c.rules()
                    .iter()
                    .map(|r| Rule {
                        destinations: r
                            .destinations()
                            .iter()
                            .map(|d| Destination {
                                region: d.region().to_owned(),
                                registry_id: d.registry_id().to_owned(),
                            })
                            .collect(),
                        repository_filters: r
                            .repository_filters()
                            .iter()
                            .map(|f| Filter {
                                filter: f.filter().to_owned(),
                                filter_type: f.filter_type().as_str().to_owned(),
                            })
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Configuration { rules }
    }
}

/// Sets the registry's replication configuration (the registry checks it).
pub async fn set(c: &ecr::Client, config: &Configuration) -> Result<Configuration> {
    let out = c
        .put_replication_configuration()
        .replication_configuration(config.to_sdk()?)
        .send()
        .await
        .map_err(|e| api_error("PutReplicationConfiguration", e))?;
    Ok(Configuration::from_sdk(out.replication_configuration()))
}

/// The registry's replication configuration.
pub async fn show(c: &ecr::Client) -> Result<Configuration> {
    let out = c
        .describe_registry()
        .send()
        .await
        .map_err(|e| api_error("DescribeRegistry", e))?;
    Ok(Configuration::from_sdk(out.replication_configuration()))
}

/// Where one destination's copy of an image stands.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DestinationStatus {
    pub region: String,
    pub registry_id: String,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED`.
    pub status: String,
    /// Why the last attempt failed.
    pub failure_code: Option<String>,
}

/// An image's replication status, per destination.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageReplication {
    pub repository: String,
    pub image_digest: Option<String>,
    pub statuses: Vec<DestinationStatus>,
}

/// An image's replication status; `reference` is a tag or a digest.
pub async fn image_status(
    c: &ecr::Client,
    repository: &str,
    reference: &str,
) -> Result<ImageReplication> {
    let id = if reference.starts_with("sha256:") {
        ImageIdentifier::builder().image_digest(reference).build()
    } else {
        ImageIdentifier::builder().image_tag(reference).build()
    };
    let out = c
        .describe_image_replication_status()
        .repository_name(repository)
        .image_id(id)
        .send()
        .await
        .map_err(|e| api_error("DescribeImageReplicationStatus", e))?;
    Ok(ImageReplication {
        repository: repository.to_owned(),
        image_digest: out
            .image_id()
            .and_then(|i| i.image_digest())
            .map(str::to_owned),
        statuses: out
            .replication_statuses()
            .iter()
            .map(|s| DestinationStatus {
                region: s.region().unwrap_or_default().to_owned(),
                registry_id: s.registry_id().unwrap_or_default().to_owned(),
                status: s
                    .status()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                failure_code: s.failure_code().map(str::to_owned),
            })
            .collect(),
    })
}
