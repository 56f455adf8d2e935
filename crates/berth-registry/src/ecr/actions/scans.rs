//! Image scanning: `StartImageScan`, `DescribeImageScanFindings`, and the scan status and
//! summary `DescribeImages` adds to each image.

use std::collections::BTreeMap;

use berth_store::ScanRecord;

use super::*;

/// A finding as the scanner stored it (the fields the API renders).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredFinding {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    summary: String,
    severity: String,
    cvss3_score: Option<f64>,
    package_name: String,
    package_version: String,
    source_name: Option<String>,
    fixed_version: Option<String>,
    #[serde(default)]
    layer: usize,
}

fn stored(rec: &ScanRecord) -> Vec<StoredFinding> {
    rec.findings
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default()
}

fn severity_counts(findings: &[StoredFinding]) -> BTreeMap<&str, u64> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.severity.as_str()).or_insert(0) += 1;
    }
    counts
}

/// ECR's finding shape; the advisory's own id is the name (its CVE among the aliases).
fn finding_json(f: &StoredFinding) -> Value {
    let mut attributes = vec![
        json!({"key": "package_name", "value": f.package_name}),
        json!({"key": "package_version", "value": f.package_version}),
    ];
    if let Some(s) = f.cvss3_score {
        attributes.push(json!({"key": "CVSS3_SCORE", "value": s.to_string()}));
    }
    if let Some(v) = &f.fixed_version {
        attributes.push(json!({"key": "fixed_version", "value": v}));
    }
    if let Some(s) = &f.source_name {
        attributes.push(json!({"key": "source_package", "value": s}));
    }
    if !f.aliases.is_empty() {
        attributes.push(json!({"key": "aliases", "value": f.aliases.join(",")}));
    }
    attributes.push(json!({"key": "layer", "value": f.layer.to_string()}));
    json!({
        "name": f.id,
        "description": f.summary,
        "uri": format!("https://osv.dev/vulnerability/{}", f.id),
        "severity": f.severity,
        "attributes": attributes,
    })
}

impl Ctx<'_> {
    pub(super) async fn put_scanning_configuration(
        &self,
        req: ScanningConfigurationRequest,
    ) -> Result<Value, EcrError> {
        self.allow(
            "ecr:PutRegistryScanningConfiguration",
            Target::Registry,
            &[],
        )
        .await?;
        let scan_type = req.scan_type.unwrap_or_else(|| "BASIC".into());
        match scan_type.as_str() {
            "BASIC" => {}
            "ENHANCED" => {
                return Err(EcrError::new(
                    "ValidationException",
                    "berth serve offers BASIC scanning only (its own scanner); ENHANCED is Amazon Inspector's",
                ));
            }
            other => {
                return Err(EcrError::constraint(
                    "scanType",
                    other,
                    "Member must satisfy enum value set: [BASIC, ENHANCED]",
                ));
            }
        }
        let rules = req.rules.unwrap_or_default();
        if rules.len() > 2 {
            return Err(EcrError::constraint(
                "rules",
                &format!("{} rules", rules.len()),
                "Member must have length less than or equal to 2",
            ));
        }
        for r in &rules {
            if !["SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"].contains(&r.scan_frequency.as_str()) {
                return Err(EcrError::constraint(
                    "rules.member.scanFrequency",
                    &r.scan_frequency,
                    "Member must satisfy enum value set: [SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL]",
                ));
            }
            if r.repository_filters.is_empty() || r.repository_filters.len() > 100 {
                return Err(EcrError::constraint(
                    "rules.member.repositoryFilters",
                    &format!("{} filters", r.repository_filters.len()),
                    "Member must have length between 1 and 100",
                ));
            }
            for f in &r.repository_filters {
                let ok_chars = f
                    .filter
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"*._-/".contains(&b));
                if f.filter.is_empty() || f.filter.len() > 256 || !ok_chars {
                    return Err(EcrError::constraint(
                        "rules.member.repositoryFilters.member.filter",
                        &f.filter,
                        "Member must satisfy regular expression pattern: ^[a-z0-9*](?:[._\\-/a-z0-9*]?[a-z0-9*]+)*$",
                    ));
                }
                if f.filter_type != "WILDCARD" {
                    return Err(EcrError::constraint(
                        "rules.member.repositoryFilters.member.filterType",
                        &f.filter_type,
                        "Member must satisfy enum value set: [WILDCARD]",
                    ));
                }
            }
        }
        let config = crate::scanning::ScanningConfiguration { scan_type, rules };
        let text = serde_json::to_string(&config).map_err(|e| EcrError::invalid(e.to_string()))?;
        self.reg
            .identity()
            .set_setting(crate::scanning::SCANNING_CONFIGURATION, Some(&text))
            .await
            .map_err(store)?;
        Ok(json!({ "registryScanningConfiguration": config }))
    }

    pub(super) async fn get_scanning_configuration(&self) -> Result<Value, EcrError> {
        self.allow(
            "ecr:GetRegistryScanningConfiguration",
            Target::Registry,
            &[],
        )
        .await?;
        let config = self
            .reg
            .scanning_configuration()
            .await
            .map_err(EcrError::from)?;
        Ok(json!({ "registryId": self.registry_id(), "scanningConfiguration": config }))
    }

    fn scan_not_found(&self, repo: &RepoName, id: &ImageId) -> EcrError {
        EcrError::new(
            "ScanNotFoundException",
            format!(
                "Image scan does not exist for the image with '{{imageDigest:'{}', imageTag:'{}'}}' in the repository with name '{}' in the registry with id '{}'",
                id.image_digest.as_deref().unwrap_or("null"),
                id.image_tag.as_deref().unwrap_or("null"),
                repo,
                self.registry_id()
            ),
        )
    }

    async fn scanned_image(
        &self,
        req: &ScanRequest,
        action: &str,
    ) -> Result<(RepoName, ImageRecord), EcrError> {
        let (repo, _) = self
            .repo(req.registry_id.as_ref(), &req.repository_name, action)
            .await?;
        check_ids(std::slice::from_ref(&req.image_id))?;
        match self.resolve(&repo, &req.image_id).await? {
            Ok(img) => Ok((repo, img)),
            Err(("ImageNotFound", _)) => Err(self.image_not_found(&repo, &req.image_id)),
            Err((_, reason)) => Err(EcrError::invalid(reason)),
        }
    }

    fn image_id_of(req: &ScanRequest, img: &ImageRecord) -> Value {
        let mut id = json!({ "imageDigest": img.manifest.digest.to_string() });
        if let Some(t) = &req.image_id.image_tag {
            id["imageTag"] = json!(t);
        }
        id
    }

    pub(super) async fn start_image_scan(&self, req: ScanRequest) -> Result<Value, EcrError> {
        if req.next_token.is_some() || req.max_results.is_some() {
            return Err(EcrError::invalid(
                "Invalid parameter: StartImageScan takes no nextToken or maxResults",
            ));
        }
        let (repo, img) = self.scanned_image(&req, "ecr:StartImageScan").await?;
        let queued = self
            .reg
            .queue_scan(&repo, &img.manifest.digest)
            .await
            .map_err(EcrError::from)?;
        if !queued {
            return Err(EcrError::new(
                "ValidationException",
                "Image scanning is not configured on this registry",
            ));
        }
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "imageId": Self::image_id_of(&req, &img),
            "imageScanStatus": {"status": "IN_PROGRESS", "description": "The scan is in progress."},
        }))
    }

    pub(super) async fn describe_scan_findings(&self, req: ScanRequest) -> Result<Value, EcrError> {
        let (repo, img) = self
            .scanned_image(&req, "ecr:DescribeImageScanFindings")
            .await?;
        let rec = self
            .reg
            .meta()
            .scan(&repo, &img.manifest.digest)
            .await
            .map_err(store)?
            .ok_or_else(|| self.scan_not_found(&repo, &req.image_id))?;
        let n = page_size(req.max_results, 100)?;
        let start = match &req.next_token {
            Some(t) => decode_token(t)?
                .parse::<usize>()
                .map_err(|_| EcrError::invalid("Invalid parameter at 'nextToken'"))?,
            None => 0,
        };
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "imageId": Self::image_id_of(&req, &img),
            "imageScanStatus": {"status": rec.status, "description": rec.description},
        });
        if rec.status == crate::scanning::COMPLETE {
            let all = stored(&rec);
            let page: Vec<Value> = all.iter().skip(start).take(n).map(finding_json).collect();
            let mut findings = json!({
                "findings": page,
                "findingSeverityCounts": severity_counts(&all),
            });
            if let Some(t) = rec.completed_at {
                findings["imageScanCompletedAt"] = json!(seconds(t));
            }
            if let Some(t) = rec.source_updated_at {
                findings["vulnerabilitySourceUpdatedAt"] = json!(seconds(t));
            }
            v["imageScanFindings"] = findings;
            if start + n < all.len() {
                v["nextToken"] = json!(encode_token(&(start + n).to_string()));
            }
        }
        Ok(v)
    }

    /// Adds `imageScanStatus` and, for a completed scan, `imageScanFindingsSummary` to an
    /// image's details.
    pub(super) async fn add_scan(
        &self,
        repo: &RepoName,
        detail: &mut Value,
    ) -> Result<(), EcrError> {
        let Some(digest) = detail["imageDigest"]
            .as_str()
            .and_then(|d| Digest::parse(d).ok())
        else {
            return Ok(());
        };
        let Some(rec) = self.reg.meta().scan(repo, &digest).await.map_err(store)? else {
            return Ok(());
        };
        detail["imageScanStatus"] = json!({"status": rec.status, "description": rec.description});
        if rec.status == crate::scanning::COMPLETE {
            let all = stored(&rec);
            let mut summary = json!({ "findingSeverityCounts": severity_counts(&all) });
            if let Some(t) = rec.completed_at {
                summary["imageScanCompletedAt"] = json!(seconds(t));
            }
            if let Some(t) = rec.source_updated_at {
                summary["vulnerabilitySourceUpdatedAt"] = json!(seconds(t));
            }
            detail["imageScanFindingsSummary"] = summary;
        }
        Ok(())
    }
}
