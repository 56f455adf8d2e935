//! ECR repositories and their images through `aws-sdk-ecr`: the same calls manage Amazon ECR and
//! `berth serve`.

use std::collections::BTreeMap;

use berth_client::aws_sdk_ecr as ecr;
use berth_client::ecr::AwsOptions;
use ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageDetail, ImageIdentifier,
    ImageScanningConfiguration, ImageTagMutability, ImageTagMutabilityExclusionFilter,
    ImageTagMutabilityExclusionFilterType, Repository, Tag,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{OpsError, Result};

/// A repository's settings as a release or an assistant asks for them: every field optional
/// (absent: ECR's default on creation, not compared on an existing repository). Read from TOML
/// or JSON; the ECR API's names (`imageTagMutability`, `scanOnPush`, …) are accepted too.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RepoSettings {
    /// MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION.
    #[serde(
        default,
        alias = "imageTagMutability",
        skip_serializing_if = "Option::is_none"
    )]
    pub tag_mutability: Option<String>,
    /// Tag patterns (`*` wildcards) exempt from the mutability setting.
    #[serde(
        default,
        alias = "imageTagMutabilityExclusionFilters",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mutability_exclusions: Vec<String>,
    /// Scan images when they are pushed.
    #[serde(default, alias = "scanOnPush", skip_serializing_if = "Option::is_none")]
    pub scan_on_push: Option<bool>,
    /// AES256 or KMS (fixed when the repository is created).
    #[serde(
        default,
        alias = "encryptionType",
        skip_serializing_if = "Option::is_none"
    )]
    pub encryption: Option<String>,
    /// The KMS key of KMS encryption.
    #[serde(default, alias = "kmsKey", skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// The lifecycle policy (a JSON object, or its text).
    #[serde(
        default,
        alias = "lifecyclePolicy",
        skip_serializing_if = "Option::is_none"
    )]
    pub lifecycle_policy: Option<serde_json::Value>,
    /// The repository policy (a JSON object, or its text).
    #[serde(
        default,
        alias = "repositoryPolicy",
        skip_serializing_if = "Option::is_none"
    )]
    pub repository_policy: Option<serde_json::Value>,
    /// Resource tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl RepoSettings {
    /// Reads settings from a `.toml` or `.json` file (by extension; JSON otherwise).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OpsError::usage(format!("{}: {e}", path.display())))?;
        let toml = path.extension().is_some_and(|e| e == "toml");
        let settings: RepoSettings = if toml {
            toml::from_str(&text)
                .map_err(|e| OpsError::usage(format!("{}: {e}", path.display())))?
        } else {
            serde_json::from_str(&text)
                .map_err(|e| OpsError::usage(format!("{}: {e}", path.display())))?
        };
        settings.check()?;
        Ok(settings)
    }

    /// Checks the values that have a fixed vocabulary.
    pub fn check(&self) -> Result<()> {
        if let Some(m) = &self.tag_mutability {
            mutability(m)?;
        }
        if let Some(e) = &self.encryption
            && !matches!(
                e.to_ascii_uppercase().as_str(),
                "AES256" | "KMS" | "KMS_DSSE"
            )
        {
            return Err(OpsError::usage(format!(
                "encryption {e:?}: expected AES256, KMS or KMS_DSSE"
            )));
        }
        if self.kms_key.is_some()
            && !self
                .encryption
                .as_deref()
                .is_some_and(|e| e.to_ascii_uppercase().starts_with("KMS"))
        {
            return Err(OpsError::usage("kms_key needs encryption = \"KMS\""));
        }
        for (what, doc) in [
            ("lifecycle_policy", &self.lifecycle_policy),
            ("repository_policy", &self.repository_policy),
        ] {
            if let Some(d) = doc {
                policy_text(what, d)?;
            }
        }
        Ok(())
    }
}

/// A policy given as an object or as its text, as text (checked to be a JSON object).
fn policy_text(what: &str, doc: &serde_json::Value) -> Result<String> {
    let value = match doc {
        serde_json::Value::String(s) => serde_json::from_str::<serde_json::Value>(s)
            .map_err(|e| OpsError::usage(format!("{what}: not JSON: {e}")))?,
        v => v.clone(),
    };
    if !value.is_object() {
        return Err(OpsError::usage(format!("{what}: expected a JSON object")));
    }
    Ok(value.to_string())
}

/// Two policy texts mean the same document.
fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// A repository as ECR describes it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfo {
    pub repository_name: String,
    pub repository_uri: String,
    pub repository_arn: String,
    pub registry_id: String,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    pub image_tag_mutability: Option<String>,
    pub image_tag_mutability_exclusion_filters: Vec<String>,
    pub scan_on_push: Option<bool>,
    pub encryption_type: Option<String>,
    pub kms_key: Option<String>,
}

impl From<&Repository> for RepositoryInfo {
    fn from(r: &Repository) -> Self {
        RepositoryInfo {
            repository_name: r.repository_name().unwrap_or_default().to_owned(),
            repository_uri: r.repository_uri().unwrap_or_default().to_owned(),
            repository_arn: r.repository_arn().unwrap_or_default().to_owned(),
            registry_id: r.registry_id().unwrap_or_default().to_owned(),
            created_at: r.created_at().map(|t| t.secs()),
            image_tag_mutability: r.image_tag_mutability().map(|m| m.as_str().to_owned()),
            image_tag_mutability_exclusion_filters: r
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| f.filter().to_owned())
                .collect(),
            scan_on_push: r.image_scanning_configuration().map(|s| s.scan_on_push()),
            encryption_type: r
                .encryption_configuration()
                .map(|e| e.encryption_type().as_str().to_owned()),
            kms_key: r
                .encryption_configuration()
                .and_then(|e| e.kms_key())
                .map(str::to_owned),
        }
    }
}

/// An image as DescribeImages reports it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageDetailInfo {
    pub image_digest: String,
    pub image_tags: Vec<String>,
    pub image_size_in_bytes: Option<i64>,
    /// Seconds since the epoch.
    pub image_pushed_at: Option<i64>,
    pub image_manifest_media_type: Option<String>,
    pub artifact_media_type: Option<String>,
    pub subject_manifest_digest: Option<String>,
    /// Seconds since the epoch.
    pub last_recorded_pull_time: Option<i64>,
}

impl From<&ImageDetail> for ImageDetailInfo {
    fn from(d: &ImageDetail) -> Self {
        ImageDetailInfo {
            image_digest: d.image_digest().unwrap_or_default().to_owned(),
            image_tags: d.image_tags().to_vec(),
            image_size_in_bytes: d.image_size_in_bytes(),
            image_pushed_at: d.image_pushed_at().map(|t| t.secs()),
            image_manifest_media_type: d.image_manifest_media_type().map(str::to_owned),
            artifact_media_type: d.artifact_media_type().map(str::to_owned),
            subject_manifest_digest: d.subject_manifest_digest().map(str::to_owned),
            last_recorded_pull_time: d.last_recorded_pull_time().map(|t| t.secs()),
        }
    }
}

/// Where a repository lives: its registry host (when the name carried one), its name, and the
/// ECR API to manage it through.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Target {
    /// `HOST[:PORT]`, when given.
    pub host: Option<String>,
    /// The repository's name in its registry.
    pub name: String,
    /// Where its ECR API is.
    pub aws: AwsOptions,
}

/// Reads `NAME` or `HOST/NAME`: a first component that names a registry (a port,
/// `localhost`, an Amazon ECR host or a host `berth login` knows) selects that registry's ECR API
/// (its login's endpoint, region and profile; a registry that is not Amazon's is taken for a
/// `berth serve` answering on its own address). `aws` fills what the registry does not say, and
/// its endpoint, region and profile win when set.
pub fn locate(repository: &str, aws: &AwsOptions, insecure: &[String]) -> Result<Target> {
    let repo = repository.trim();
    if repo.is_empty() {
        return Err(OpsError::usage("repository: give NAME or HOST/NAME"));
    }
    if let Some((first, rest)) = repo.split_once('/')
        && berth_client::logins::names_registry(first)?
    {
        let mut api = berth_client::logins::registry_api(first, insecure)?;
        api.region = aws.region.clone().or(api.region);
        if aws.endpoint.is_some() {
            api.endpoint = aws.endpoint.clone();
        }
        if aws.profile.is_some() {
            api.profile = aws.profile.clone();
        }
        return Ok(Target {
            host: Some(first.to_owned()),
            name: rest.to_owned(),
            aws: api,
        });
    }
    Ok(Target {
        host: None,
        name: repo.to_owned(),
        aws: aws.clone(),
    })
}

/// An ECR API failure as an [`OpsError`], with ECR's error code.
pub fn api_error<E, R>(action: &str, e: ecr::error::SdkError<E, R>) -> OpsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), message) => OpsError::Ecr {
            action: action.to_owned(),
            code: code.to_owned(),
            message: message.unwrap_or_default().to_owned(),
        },
        _ => OpsError::Ecr {
            action: action.to_owned(),
            code: "Unknown".to_owned(),
            message: DisplayErrorContext(&e).to_string(),
        },
    }
}

/// The ECR API client for `aws`.
pub async fn client(aws: &AwsOptions) -> Result<ecr::Client> {
    Ok(berth_client::ecr::api_client(aws).await?)
}

/// A mutability setting by name.
pub fn mutability(s: &str) -> Result<ImageTagMutability> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "MUTABLE" => ImageTagMutability::Mutable,
        "IMMUTABLE" => ImageTagMutability::Immutable,
        "IMMUTABLE_WITH_EXCLUSION" => ImageTagMutability::ImmutableWithExclusion,
        "MUTABLE_WITH_EXCLUSION" => ImageTagMutability::MutableWithExclusion,
        other => {
            return Err(OpsError::usage(format!(
                "mutability must be MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {other}"
            )));
        }
    })
}

/// Exclusion patterns as ECR's filters.
pub fn exclusion_filters(patterns: &[String]) -> Result<Vec<ImageTagMutabilityExclusionFilter>> {
    patterns
        .iter()
        .map(|f| {
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter(f)
                .build()
                .map_err(|e| OpsError::usage(format!("exclusion filter {f}: {e}")))
        })
        .collect()
}

fn is_code<E: ProvideErrorMetadata, R>(e: &ecr::error::SdkError<E, R>, code: &str) -> bool {
    e.code() == Some(code)
}

/// Creates a repository with `settings` (policies included); fails if it exists.
pub async fn create_repository(
    c: &ecr::Client,
    name: &str,
    settings: &RepoSettings,
) -> Result<RepositoryInfo> {
    settings.check()?;
    let m = mutability(settings.tag_mutability.as_deref().unwrap_or("MUTABLE"))?;
    let filters = exclusion_filters(&settings.mutability_exclusions)?;
    let mut req = c
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(m)
        .set_image_tag_mutability_exclusion_filters((!filters.is_empty()).then_some(filters))
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(settings.scan_on_push.unwrap_or(false))
                .build(),
        );
    if let Some(e) = &settings.encryption {
        req = req.encryption_configuration(
            EncryptionConfiguration::builder()
                .encryption_type(EncryptionType::from(e.to_ascii_uppercase().as_str()))
                .set_kms_key(settings.kms_key.clone())
                .build()
                .map_err(|e| OpsError::usage(e.to_string()))?,
        );
    }
    for (k, v) in &settings.tags {
        req = req.tags(
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| OpsError::usage(e.to_string()))?,
        );
    }
    let out = req
        .send()
        .await
        .map_err(|e| api_error("CreateRepository", e))?;
    let repo = out.repository().ok_or_else(|| OpsError::Ecr {
        action: "CreateRepository".into(),
        code: "Unknown".into(),
        message: "no repository in the answer".into(),
    })?;
    if let Some(p) = &settings.lifecycle_policy {
        c.put_lifecycle_policy()
            .repository_name(name)
            .lifecycle_policy_text(policy_text("lifecycle_policy", p)?)
            .send()
            .await
            .map_err(|e| api_error("PutLifecyclePolicy", e))?;
    }
    if let Some(p) = &settings.repository_policy {
        c.set_repository_policy()
            .repository_name(name)
            .policy_text(policy_text("repository_policy", p)?)
            .send()
            .await
            .map_err(|e| api_error("SetRepositoryPolicy", e))?;
    }
    Ok(RepositoryInfo::from(repo))
}

/// A repository, or `None` when it does not exist.
pub async fn describe_repository(c: &ecr::Client, name: &str) -> Result<Option<RepositoryInfo>> {
    match c
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.repositories().first().map(RepositoryInfo::from)),
        Err(e) if is_code(&e, "RepositoryNotFoundException") => Ok(None),
        Err(e) => Err(api_error("DescribeRepositories", e)),
    }
}

/// Deletes a repository (`force`: with its images).
pub async fn delete_repository(c: &ecr::Client, name: &str, force: bool) -> Result<()> {
    c.delete_repository()
        .repository_name(name)
        .force(force)
        .send()
        .await
        .map_err(|e| api_error("DeleteRepository", e))?;
    Ok(())
}

/// The repository's policy text; `None` when it has none.
pub async fn repository_policy(c: &ecr::Client, name: &str) -> Result<Option<String>> {
    match c.get_repository_policy().repository_name(name).send().await {
        Ok(out) => Ok(out.policy_text().map(str::to_owned)),
        Err(e) if is_code(&e, "RepositoryPolicyNotFoundException") => Ok(None),
        Err(e) => Err(api_error("GetRepositoryPolicy", e)),
    }
}

/// Sets the repository's policy; returns the policy as stored.
pub async fn set_repository_policy(c: &ecr::Client, name: &str, text: &str) -> Result<String> {
    let out = c
        .set_repository_policy()
        .repository_name(name)
        .policy_text(text)
        .send()
        .await
        .map_err(|e| api_error("SetRepositoryPolicy", e))?;
    Ok(out.policy_text().unwrap_or(text).to_owned())
}

/// Deletes the repository's policy.
pub async fn delete_repository_policy(c: &ecr::Client, name: &str) -> Result<()> {
    c.delete_repository_policy()
        .repository_name(name)
        .send()
        .await
        .map_err(|e| api_error("DeleteRepositoryPolicy", e))?;
    Ok(())
}

/// Sets tag mutability (`MUTABLE`, `IMMUTABLE`, or one `…_WITH_EXCLUSION` with `exclusions`).
pub async fn set_mutability(
    c: &ecr::Client,
    name: &str,
    setting: &str,
    exclusions: &[String],
) -> Result<()> {
    let m = mutability(setting)?;
    let filters = exclusion_filters(exclusions)?;
    c.put_image_tag_mutability()
        .repository_name(name)
        .image_tag_mutability(m)
        .set_image_tag_mutability_exclusion_filters((!filters.is_empty()).then_some(filters))
        .send()
        .await
        .map_err(|e| api_error("PutImageTagMutability", e))?;
    Ok(())
}

/// Every repository.
pub async fn list_repositories(c: &ecr::Client) -> Result<Vec<RepositoryInfo>> {
    let mut all = Vec::new();
    let mut pages = c.describe_repositories().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| api_error("DescribeRepositories", e))?;
        all.extend(page.repositories().iter().map(RepositoryInfo::from));
    }
    Ok(all)
}

/// A setting of an existing repository that differs from the one asked for.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingDifference {
    /// The setting (`tag_mutability`, `scan_on_push`, `encryption`, `lifecycle_policy`, …).
    pub setting: String,
    /// What the request asks for.
    pub wanted: serde_json::Value,
    /// What the repository has.
    pub actual: serde_json::Value,
    /// Whether it can be changed on an existing repository (encryption cannot).
    pub changeable: bool,
}

/// What `ensure_repository` found and did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnsureOutcome {
    /// The repository (as it is now).
    pub repository: RepositoryInfo,
    /// It did not exist and was created.
    pub created: bool,
    /// Settings of the existing repository that differ from the request.
    pub differences: Vec<SettingDifference>,
    /// The settings changed (with `apply`).
    pub updated: Vec<String>,
}

/// Makes sure the repository exists with `settings`: creates it if missing; on an existing one
/// compares every setting given, and changes the ones that differ only when `apply` (the
/// encryption of an existing repository cannot change: it is reported, never applied).
/// `dry_run` reads only.
pub async fn ensure_repository(
    c: &ecr::Client,
    name: &str,
    settings: &RepoSettings,
    apply: bool,
    dry_run: bool,
) -> Result<EnsureOutcome> {
    settings.check()?;
    let Some(current) = describe_repository(c, name).await? else {
        if dry_run {
            return Ok(EnsureOutcome {
                repository: RepositoryInfo {
                    repository_name: name.to_owned(),
                    repository_uri: String::new(),
                    repository_arn: String::new(),
                    registry_id: String::new(),
                    created_at: None,
                    image_tag_mutability: settings.tag_mutability.clone(),
                    image_tag_mutability_exclusion_filters: settings.mutability_exclusions.clone(),
                    scan_on_push: settings.scan_on_push,
                    encryption_type: settings.encryption.clone(),
                    kms_key: settings.kms_key.clone(),
                },
                created: true,
                differences: Vec::new(),
                updated: Vec::new(),
            });
        }
        let repository = match create_repository(c, name, settings).await {
            Ok(r) => r,
            // Created meanwhile by someone else: compare with that one.
            Err(OpsError::Ecr { code, .. }) if code == "RepositoryAlreadyExistsException" => {
                return Box::pin(ensure_repository(c, name, settings, apply, dry_run)).await;
            }
            Err(e) => return Err(e),
        };
        return Ok(EnsureOutcome {
            repository,
            created: true,
            differences: Vec::new(),
            updated: Vec::new(),
        });
    };
    let differences = compare(c, name, &current, settings).await?;
    let mut updated = Vec::new();
    if apply && !dry_run {
        for d in differences.iter().filter(|d| d.changeable) {
            apply_setting(c, name, settings, &d.setting).await?;
            updated.push(d.setting.clone());
        }
    }
    let repository = if updated.is_empty() {
        current
    } else {
        describe_repository(c, name).await?.unwrap_or(current)
    };
    Ok(EnsureOutcome {
        repository,
        created: false,
        differences,
        updated,
    })
}

async fn compare(
    c: &ecr::Client,
    name: &str,
    current: &RepositoryInfo,
    want: &RepoSettings,
) -> Result<Vec<SettingDifference>> {
    use serde_json::json;
    let mut out = Vec::new();
    let mut differ =
        |setting: &str, wanted: serde_json::Value, actual: serde_json::Value, changeable| {
            out.push(SettingDifference {
                setting: setting.to_owned(),
                wanted,
                actual,
                changeable,
            });
        };
    if let Some(m) = &want.tag_mutability {
        let m = m.to_ascii_uppercase();
        let mut w: Vec<&String> = want.mutability_exclusions.iter().collect();
        let mut a: Vec<&String> = current
            .image_tag_mutability_exclusion_filters
            .iter()
            .collect();
        w.sort();
        a.sort();
        if current.image_tag_mutability.as_deref() != Some(m.as_str()) || w != a {
            differ(
                "tag_mutability",
                json!({"mutability": m, "exclusions": w}),
                json!({"mutability": current.image_tag_mutability, "exclusions": a}),
                true,
            );
        }
    }
    if let Some(s) = want.scan_on_push
        && current.scan_on_push != Some(s)
    {
        differ("scan_on_push", json!(s), json!(current.scan_on_push), true);
    }
    if let Some(e) = &want.encryption {
        let e = e.to_ascii_uppercase();
        let actual = current
            .encryption_type
            .clone()
            .unwrap_or_else(|| "AES256".into());
        if actual != e || (want.kms_key.is_some() && want.kms_key != current.kms_key) {
            differ(
                "encryption",
                json!({"type": e, "kmsKey": want.kms_key}),
                json!({"type": actual, "kmsKey": current.kms_key}),
                false,
            );
        }
    }
    if !want.tags.is_empty() {
        let arn = &current.repository_arn;
        let listed = c
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| api_error("ListTagsForResource", e))?;
        let actual: BTreeMap<String, String> = listed
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        let missing = want.tags.iter().any(|(k, v)| actual.get(k) != Some(v));
        if missing {
            differ("tags", json!(want.tags), json!(actual), true);
        }
    }
    if let Some(p) = &want.lifecycle_policy {
        let wanted = policy_text("lifecycle_policy", p)?;
        let actual = match c.get_lifecycle_policy().repository_name(name).send().await {
            Ok(o) => o.lifecycle_policy_text().map(str::to_owned),
            Err(e) if is_code(&e, "LifecyclePolicyNotFoundException") => None,
            Err(e) => return Err(api_error("GetLifecyclePolicy", e)),
        };
        if !actual.as_deref().is_some_and(|a| same_json(a, &wanted)) {
            differ(
                "lifecycle_policy",
                serde_json::from_str(&wanted).unwrap_or_default(),
                actual
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or_default(),
                true,
            );
        }
    }
    if let Some(p) = &want.repository_policy {
        let wanted = policy_text("repository_policy", p)?;
        let actual = match c.get_repository_policy().repository_name(name).send().await {
            Ok(o) => o.policy_text().map(str::to_owned),
            Err(e) if is_code(&e, "RepositoryPolicyNotFoundException") => None,
            Err(e) => return Err(api_error("GetRepositoryPolicy", e)),
        };
        if !actual.as_deref().is_some_and(|a| same_json(a, &wanted)) {
            differ(
                "repository_policy",
                serde_json::from_str(&wanted).unwrap_or_default(),
                actual
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or_default(),
                true,
            );
        }
    }
    Ok(out)
}

async fn apply_setting(
    c: &ecr::Client,
    name: &str,
    want: &RepoSettings,
    setting: &str,
) -> Result<()> {
    match setting {
        "tag_mutability" => {
            let m = mutability(want.tag_mutability.as_deref().unwrap_or("MUTABLE"))?;
            let filters = exclusion_filters(&want.mutability_exclusions)?;
            c.put_image_tag_mutability()
                .repository_name(name)
                .image_tag_mutability(m)
                .set_image_tag_mutability_exclusion_filters(
                    (!filters.is_empty()).then_some(filters),
                )
                .send()
                .await
                .map_err(|e| api_error("PutImageTagMutability", e))?;
        }
        "scan_on_push" => {
            c.put_image_scanning_configuration()
                .repository_name(name)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(want.scan_on_push.unwrap_or(false))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| api_error("PutImageScanningConfiguration", e))?;
        }
        "tags" => {
            let Some(current) = describe_repository(c, name).await? else {
                return Ok(());
            };
            let mut req = c.tag_resource().resource_arn(current.repository_arn);
            for (k, v) in &want.tags {
                req = req.tags(
                    Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .map_err(|e| OpsError::usage(e.to_string()))?,
                );
            }
            req.send().await.map_err(|e| api_error("TagResource", e))?;
        }
        "lifecycle_policy" => {
            if let Some(p) = &want.lifecycle_policy {
                c.put_lifecycle_policy()
                    .repository_name(name)
                    .lifecycle_policy_text(policy_text("lifecycle_policy", p)?)
                    .send()
                    .await
                    .map_err(|e| api_error("PutLifecyclePolicy", e))?;
            }
        }
        "repository_policy" => {
            if let Some(p) = &want.repository_policy {
                c.set_repository_policy()
                    .repository_name(name)
                    .policy_text(policy_text("repository_policy", p)?)
                    .send()
                    .await
                    .map_err(|e| api_error("SetRepositoryPolicy", e))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A repository's images (DescribeImages), newest push first.
pub async fn list_images(c: &ecr::Client, repository: &str) -> Result<Vec<ImageDetailInfo>> {
    let mut all: Vec<ImageDetail> = Vec::new();
    let mut pages = c
        .describe_images()
        .repository_name(repository)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| api_error("DescribeImages", e))?;
        all.extend(page.image_details().iter().cloned());
    }
    all.sort_by(|a, b| {
        let key = |d: &ImageDetail| d.image_pushed_at().map(|t| (t.secs(), t.subsec_nanos()));
        key(b).cmp(&key(a))
    });
    Ok(all.iter().map(ImageDetailInfo::from).collect())
}

/// The images a tag or digest names (DescribeImages with image ids).
pub async fn describe_images(
    c: &ecr::Client,
    repository: &str,
    ids: &[String],
) -> Result<Vec<ImageDetailInfo>> {
    let mut req = c.describe_images().repository_name(repository);
    for id in ids {
        let ident = if id.starts_with("sha256:") || id.starts_with("sha512:") {
            ImageIdentifier::builder().image_digest(id).build()
        } else {
            ImageIdentifier::builder().image_tag(id).build()
        };
        req = req.image_ids(ident);
    }
    let out = req
        .send()
        .await
        .map_err(|e| api_error("DescribeImages", e))?;
    Ok(out
        .image_details()
        .iter()
        .map(ImageDetailInfo::from)
        .collect())
}
