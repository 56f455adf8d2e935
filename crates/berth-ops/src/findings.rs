//! An image's scan through the ECR API (`StartImageScan`, `DescribeImageScanFindings`), so the
//! same calls work against Amazon ECR's basic scanning and `berth serve`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_client::aws_sdk_ecr as ecr;
use ecr::error::ProvideErrorMetadata;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{OpsError, Result};
use crate::repo::api_error;

/// One finding as ECR reports it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FindingInfo {
    /// The advisory (`CVE-…`, `GHSA-…`).
    pub name: String,
    pub severity: String,
    pub description: Option<String>,
    pub uri: Option<String>,
    /// `package_name`, `package_version`, `CVSS3_SCORE`, …
    pub attributes: BTreeMap<String, String>,
}

/// An image's scan status and findings.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScanFindings {
    pub repository: String,
    pub image_digest: Option<String>,
    /// `IN_PROGRESS`, `COMPLETE`, `FAILED`, …
    pub status: String,
    pub description: Option<String>,
    pub severity_counts: BTreeMap<String, i32>,
    pub findings: Vec<FindingInfo>,
    /// Seconds since the epoch.
    pub completed_at: Option<i64>,
    /// When the vulnerability data was last updated, seconds since the epoch.
    pub vulnerability_source_updated_at: Option<i64>,
}

/// `TAG` or `sha256:…` as an ECR image id.
fn image_id(reference: &str) -> ecr::types::ImageIdentifier {
    let b = ecr::types::ImageIdentifier::builder();
    if reference.contains(':') {
        b.image_digest(reference).build()
    } else {
        b.image_tag(reference).build()
    }
}

/// Starts a scan; returns the status ECR answers (`IN_PROGRESS`).
pub async fn start_scan(c: &ecr::Client, repository: &str, reference: &str) -> Result<String> {
    let out = c
        .start_image_scan()
        .repository_name(repository)
        .image_id(image_id(reference))
        .send()
        .await
        .map_err(|e| api_error("StartImageScan", e))?;
    Ok(out
        .image_scan_status()
        .and_then(|s| s.status())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default())
}

/// The scan's findings (every page); with `wait`, polls while the scan is in progress.
pub async fn scan_findings(
    c: &ecr::Client,
    repository: &str,
    reference: &str,
    wait: Option<Duration>,
) -> Result<ScanFindings> {
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let mut out = ScanFindings {
            repository: repository.to_owned(),
            image_digest: None,
            status: String::new(),
            description: None,
            severity_counts: BTreeMap::new(),
            findings: Vec::new(),
            completed_at: None,
            vulnerability_source_updated_at: None,
        };
        let mut pages = c
            .describe_image_scan_findings()
            .repository_name(repository)
            .image_id(image_id(reference))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if e.code() == Some("ScanNotFoundException") => {
                    return Err(OpsError::Ecr {
                        action: "DescribeImageScanFindings".into(),
                        code: "ScanNotFoundException".into(),
                        message: format!(
                            "{repository}:{reference} has not been scanned: start a scan with \
                             `berth images scan`, or push into a repository that scans on push"
                        ),
                    });
                }
                Err(e) => return Err(api_error("DescribeImageScanFindings", e)),
            };
            out.image_digest = page
                .image_id()
                .and_then(|i| i.image_digest())
                .map(str::to_owned);
            if let Some(s) = page.image_scan_status() {
                out.status = s
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default();
                out.description = s.description().map(str::to_owned);
            }
            if let Some(f) = page.image_scan_findings() {
                if let Some(counts) = f.finding_severity_counts() {
                    out.severity_counts = counts
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), *v))
                        .collect();
                }
                out.completed_at = f.image_scan_completed_at().map(|t| t.secs());
                out.vulnerability_source_updated_at =
                    f.vulnerability_source_updated_at().map(|t| t.secs());
                out.findings.extend(f.findings().iter().map(|x| {
                    FindingInfo {
                        name: x.name().unwrap_or_default().to_owned(),
                        severity: x
                            .severity()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        description: x.description().map(str::to_owned),
                        uri: x.uri().map(str::to_owned),
                        attributes: x
                            .attributes()
                            .iter()
                            .map(|a| (a.key().to_owned(), a.value().unwrap_or_default().to_owned()))
                            .collect(),
                    }
                }));
            }
        }
        let waiting = matches!(out.status.as_str(), "IN_PROGRESS" | "PENDING");
        match deadline {
            Some(d) if waiting && Instant::now() < d => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return Ok(out),
        }
    }
}
