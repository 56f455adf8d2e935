//! The ECR actions. Each authorizes through [`Registry::authorize`] (the same check as `/v2/`)
//! and calls the same [`Registry`] operations as the OCI API.

use std::time::Duration;

use base64::Engine as _;
use berth_iam::policy::PolicyKind;
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_store::{
    ImageRecord, NewRepository, RepositoryRecord, RepositoryUpdate, StoreError, TagFilter,
    TemplateRecord,
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EcrError, parse_request};
use crate::access::{Caller, Denial, REGISTRY_POLICY, Target, download_scope};
use crate::error::RegistryError;
use crate::repos::{
    EncryptionConfiguration, ExclusionFilter, ROOT_PREFIX, ResourceTag, TemplateSettings,
};
use crate::service::Registry;

mod images;
mod layers;
mod lifecycle;
mod pullthrough;
mod registry;
mod replication;
mod repositories;
mod scans;

/// The actions this endpoint implements (anything else is `UnknownOperationException`).
pub(crate) const KNOWN: &[&str] = &[
    "GetAuthorizationToken",
    "CreateRepository",
    "DescribeRepositories",
    "DeleteRepository",
    "DescribeImages",
    "ListImages",
    "BatchGetImage",
    "BatchDeleteImage",
    "PutImage",
    "BatchCheckLayerAvailability",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "GetDownloadUrlForLayer",
    "PutImageTagMutability",
    "PutImageScanningConfiguration",
    "StartImageScan",
    "DescribeImageScanFindings",
    "PutRegistryScanningConfiguration",
    "GetRegistryScanningConfiguration",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "DescribeRegistry",
    "SetRepositoryPolicy",
    "GetRepositoryPolicy",
    "DeleteRepositoryPolicy",
    "PutRegistryPolicy",
    "GetRegistryPolicy",
    "DeleteRegistryPolicy",
    "CreateRepositoryCreationTemplate",
    "DescribeRepositoryCreationTemplates",
    "UpdateRepositoryCreationTemplate",
    "DeleteRepositoryCreationTemplate",
    "PutLifecyclePolicy",
    "GetLifecyclePolicy",
    "DeleteLifecyclePolicy",
    "StartLifecyclePolicyPreview",
    "GetLifecyclePolicyPreview",
    "CreatePullThroughCacheRule",
    "DescribePullThroughCacheRules",
    "UpdatePullThroughCacheRule",
    "DeletePullThroughCacheRule",
    "ValidatePullThroughCacheRule",
    "PutReplicationConfiguration",
    "DescribeImageReplicationStatus",
    // berth's own actions (not in Amazon ECR): run a lifecycle policy or a collection now.
    "BerthRunLifecyclePolicy",
    "BerthRunGarbageCollection",
    // …and store or delete an upstream credential a pull-through cache rule names.
    "BerthPutUpstreamCredential",
    "BerthDeleteUpstreamCredential",
];

/// Layer parts other than the last must be at least this large.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// No layer part may be larger.
const MAX_PART: usize = 20 * 1024 * 1024;
/// The part size `InitiateLayerUpload` suggests.
const SUGGESTED_PART: u64 = 10 * 1024 * 1024;
/// Resource tags per repository.
const MAX_TAGS: usize = 50;
/// Lifetime of the token in a `GetDownloadUrlForLayer` URL.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(3600);

pub(crate) async fn dispatch(
    reg: &Registry,
    caller: &Caller,
    action: &str,
    body: &[u8],
) -> Result<Value, EcrError> {
    let ctx = Ctx { reg, caller };
    match action {
        "GetAuthorizationToken" => ctx.get_authorization_token(parse_request(body)?).await,
        "CreateRepository" => ctx.create_repository(parse_request(body)?).await,
        "DescribeRepositories" => ctx.describe_repositories(parse_request(body)?).await,
        "DeleteRepository" => ctx.delete_repository(parse_request(body)?).await,
        "DescribeImages" => ctx.describe_images(parse_request(body)?).await,
        "ListImages" => ctx.list_images(parse_request(body)?).await,
        "BatchGetImage" => ctx.batch_get_image(parse_request(body)?).await,
        "BatchDeleteImage" => ctx.batch_delete_image(parse_request(body)?).await,
        "PutImage" => ctx.put_image(parse_request(body)?).await,
        "BatchCheckLayerAvailability" => ctx.check_layers(parse_request(body)?).await,
        "InitiateLayerUpload" => ctx.initiate_upload(parse_request(body)?).await,
        "UploadLayerPart" => ctx.upload_part(parse_request(body)?).await,
        "CompleteLayerUpload" => ctx.complete_upload(parse_request(body)?).await,
        "GetDownloadUrlForLayer" => ctx.download_url(parse_request(body)?).await,
        "PutImageTagMutability" => ctx.put_mutability(parse_request(body)?).await,
        "PutImageScanningConfiguration" => ctx.put_scanning(parse_request(body)?).await,
        "StartImageScan" => ctx.start_image_scan(parse_request(body)?).await,
        "DescribeImageScanFindings" => ctx.describe_scan_findings(parse_request(body)?).await,
        "PutRegistryScanningConfiguration" => {
            ctx.put_scanning_configuration(parse_request(body)?).await
        }
        "GetRegistryScanningConfiguration" => ctx.get_scanning_configuration().await,
        "TagResource" => ctx.tag_resource(parse_request(body)?).await,
        "UntagResource" => ctx.untag_resource(parse_request(body)?).await,
        "ListTagsForResource" => ctx.list_tags(parse_request(body)?).await,
        "DescribeRegistry" => ctx.describe_registry().await,
        "SetRepositoryPolicy" => ctx.set_repo_policy(parse_request(body)?).await,
        "GetRepositoryPolicy" => ctx.get_repo_policy(parse_request(body)?, false).await,
        "DeleteRepositoryPolicy" => ctx.get_repo_policy(parse_request(body)?, true).await,
        "PutRegistryPolicy" => ctx.put_registry_policy(parse_request(body)?).await,
        "GetRegistryPolicy" => ctx.get_registry_policy(false).await,
        "DeleteRegistryPolicy" => ctx.get_registry_policy(true).await,
        "CreateRepositoryCreationTemplate" => ctx.put_template(parse_request(body)?, false).await,
        "UpdateRepositoryCreationTemplate" => ctx.put_template(parse_request(body)?, true).await,
        "DescribeRepositoryCreationTemplates" => ctx.describe_templates(parse_request(body)?).await,
        "DeleteRepositoryCreationTemplate" => ctx.delete_template(parse_request(body)?).await,
        "PutLifecyclePolicy" => ctx.put_lifecycle(parse_request(body)?).await,
        "GetLifecyclePolicy" => ctx.get_lifecycle(parse_request(body)?, false).await,
        "DeleteLifecyclePolicy" => ctx.get_lifecycle(parse_request(body)?, true).await,
        "StartLifecyclePolicyPreview" => ctx.start_preview(parse_request(body)?).await,
        "GetLifecyclePolicyPreview" => ctx.get_preview(parse_request(body)?).await,
        "BerthRunLifecyclePolicy" => ctx.run_lifecycle(parse_request(body)?).await,
        "BerthRunGarbageCollection" => ctx.run_gc(parse_request(body)?).await,
        "CreatePullThroughCacheRule" => ctx.create_rule(parse_request(body)?).await,
        "DescribePullThroughCacheRules" => ctx.describe_rules(parse_request(body)?).await,
        "UpdatePullThroughCacheRule" => ctx.update_rule(parse_request(body)?).await,
        "DeletePullThroughCacheRule" => ctx.delete_rule(parse_request(body)?).await,
        "ValidatePullThroughCacheRule" => ctx.validate_rule(parse_request(body)?).await,
        "PutReplicationConfiguration" => ctx.put_replication(parse_request(body)?).await,
        "DescribeImageReplicationStatus" => ctx.replication_status(parse_request(body)?).await,
        "BerthPutUpstreamCredential" => ctx.put_credential(parse_request(body)?).await,
        "BerthDeleteUpstreamCredential" => ctx.delete_credential(parse_request(body)?).await,
        other => Err(EcrError::new(
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

// ---- request shapes (botocore `ecr/2015-09-21`) ----------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetAuthorizationTokenRequest {
    registry_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageScanningConfiguration {
    scan_on_push: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRepositoryRequest {
    registry_id: Option<String>,
    repository_name: String,
    tags: Option<Vec<ResourceTag>>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
    image_scanning_configuration: Option<ImageScanningConfiguration>,
    encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRepositoriesRequest {
    registry_id: Option<String>,
    repository_names: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoRequest {
    registry_id: Option<String>,
    repository_name: String,
    force: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageId {
    image_digest: Option<String>,
    image_tag: Option<String>,
}

impl ImageId {
    fn json(&self) -> Value {
        let mut v = json!({});
        if let Some(d) = &self.image_digest {
            v["imageDigest"] = json!(d);
        }
        if let Some(t) = &self.image_tag {
            v["imageTag"] = json!(t);
        }
        v
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageFilter {
    tag_status: Option<String>,
    image_status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImagesRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<ImageFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanningConfigurationRequest {
    scan_type: Option<String>,
    rules: Option<Vec<crate::scanning::ScanningRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_id: ImageId,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchImagesRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutImageRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_manifest: String,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayersRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digests: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadPartRequest {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    part_first_byte: u64,
    part_last_byte: u64,
    layer_part_blob: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteUploadRequest {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    layer_digests: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DownloadUrlRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MutabilityRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_tag_mutability: String,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanningRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_scanning_configuration: ImageScanningConfiguration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceRequest {
    resource_arn: String,
    tags: Vec<ResourceTag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceRequest {
    resource_arn: String,
    tag_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArnRequest {
    resource_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetPolicyRequest {
    registry_id: Option<String>,
    repository_name: String,
    policy_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistryPolicyRequest {
    policy_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateRequest {
    prefix: String,
    #[serde(flatten)]
    settings: TemplateSettings,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTemplatesRequest {
    prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrefixRequest {
    prefix: String,
}

// ---- helpers ---------------------------------------------------------------------------------

fn seconds(ms: i64) -> f64 {
    // Millisecond timestamps as the epoch seconds AWS JSON uses.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

fn system_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn page_size(max: Option<i64>, default: usize) -> Result<usize, EcrError> {
    match max {
        None => Ok(default),
        Some(n) if (1..=1000).contains(&n) => Ok(usize::try_from(n).unwrap_or(default)),
        Some(n) => Err(EcrError::constraint(
            "maxResults",
            &n.to_string(),
            "Member must have value between 1 and 1000",
        )),
    }
}

fn encode_token(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_token(t: &str) -> Result<String, EcrError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            EcrError::invalid(
                "Invalid parameter at 'nextToken': the token is not one this registry issued",
            )
        })
}

fn check_mutability(
    mutability: &str,
    filters: Option<&Vec<ExclusionFilter>>,
) -> Result<Vec<String>, EcrError> {
    const ALL: [&str; 4] = [
        "MUTABLE",
        "IMMUTABLE",
        "IMMUTABLE_WITH_EXCLUSION",
        "MUTABLE_WITH_EXCLUSION",
    ];
    if !ALL.contains(&mutability) {
        return Err(EcrError::constraint(
            "imageTagMutability",
            mutability,
            "Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]",
        ));
    }
    let with_exclusion = mutability.ends_with("_WITH_EXCLUSION");
    let filters = filters.map(Vec::as_slice).unwrap_or_default();
    if with_exclusion && filters.is_empty() {
        return Err(EcrError::invalid(format!(
            "imageTagMutabilityExclusionFilters are required with {mutability}"
        )));
    }
    if !with_exclusion && !filters.is_empty() {
        return Err(EcrError::invalid(format!(
            "imageTagMutabilityExclusionFilters are only allowed with MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION, not {mutability}"
        )));
    }
    if filters.len() > 5 {
        return Err(EcrError::constraint(
            "imageTagMutabilityExclusionFilters",
            &filters.len().to_string(),
            "Member must have length less than or equal to 5",
        ));
    }
    let mut out = Vec::new();
    for f in filters {
        if f.filter_type != "WILDCARD" {
            return Err(EcrError::constraint(
                "imageTagMutabilityExclusionFilters.member.filterType",
                &f.filter_type,
                "Member must satisfy enum value set: [WILDCARD]",
            ));
        }
        let ok = (1..=128).contains(&f.filter.len())
            && f.filter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
        if !ok {
            return Err(EcrError::constraint(
                "imageTagMutabilityExclusionFilters.member.filter",
                &f.filter,
                "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$",
            ));
        }
        out.push(f.filter.clone());
    }
    Ok(out)
}

fn check_encryption(
    e: Option<&EncryptionConfiguration>,
) -> Result<(String, Option<String>), EcrError> {
    let Some(e) = e else {
        return Ok(("AES256".into(), None));
    };
    match e.encryption_type.as_str() {
        "AES256" if e.kms_key.as_deref().is_some_and(|k| !k.is_empty()) => Err(EcrError::invalid(
            "Invalid parameter at 'encryptionConfiguration': a kmsKey is only allowed with the KMS encryption types",
        )),
        "AES256" => Ok(("AES256".into(), None)),
        "KMS" | "KMS_DSSE" => Ok((
            e.encryption_type.clone(),
            e.kms_key.clone().filter(|k| !k.is_empty()),
        )),
        other => Err(EcrError::constraint(
            "encryptionConfiguration.encryptionType",
            other,
            "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]",
        )),
    }
}

fn check_tags(tags: &[ResourceTag]) -> Result<(), EcrError> {
    for t in tags {
        let bad = |what: &str| {
            Err(EcrError::new(
                "InvalidTagParameterException",
                format!("Invalid tag {:?}: {what}", t.key),
            ))
        };
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return bad("keys must be 1 to 128 characters");
        }
        if t.value.chars().count() > 256 {
            return bad("values must be at most 256 characters");
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return bad("keys beginning with aws: are reserved");
        }
        let allowed = |c: char| c.is_alphanumeric() || " _.:/=+-@".contains(c);
        if !t.key.chars().all(allowed) || !t.value.chars().all(allowed) {
            return bad("only letters, digits, spaces and _ . : / = + - @ are allowed");
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(EcrError::new(
            "TooManyTagsException",
            format!("A repository can have at most {MAX_TAGS} tags"),
        ));
    }
    Ok(())
}

fn tag_context(tags: &[ResourceTag]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = tags
        .iter()
        .map(|t| (format!("aws:RequestTag/{}", t.key), vec![t.value.clone()]))
        .collect();
    out.push((
        "aws:TagKeys".into(),
        tags.iter().map(|t| t.key.clone()).collect(),
    ));
    out
}

fn parse_digest(s: &str) -> Option<Digest> {
    Digest::parse(s).ok()
}

struct Ctx<'a> {
    reg: &'a Registry,
    caller: &'a Caller,
}

impl Ctx<'_> {
    fn registry_id(&self) -> &str {
        &self.reg.config().registry_id
    }

    fn check_registry(&self, id: Option<&String>) -> Result<(), EcrError> {
        match id {
            Some(id) if id != self.registry_id() => {
                if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(EcrError::constraint(
                        "registryId",
                        id,
                        "Member must satisfy regular expression pattern: [0-9]{12}",
                    ));
                }
                Err(EcrError::invalid(format!(
                    "This registry's id is '{}'; registry '{id}' is not served here",
                    self.registry_id()
                )))
            }
            _ => Ok(()),
        }
    }

    fn name(&self, s: &str) -> Result<RepoName, EcrError> {
        let pattern = "Member must satisfy regular expression pattern: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*";
        if !(2..=256).contains(&s.len()) {
            return Err(EcrError::constraint(
                "repositoryName",
                s,
                "Member must have length between 2 and 256",
            ));
        }
        RepoName::parse(s).map_err(|_| EcrError::constraint("repositoryName", s, pattern))
    }

    async fn allow(
        &self,
        action: &str,
        target: Target<'_>,
        extra: &[(String, Vec<String>)],
    ) -> Result<(), EcrError> {
        let extra = borrow_context(extra);
        self.reg
            .authorize(self.caller, action, target, &extra)
            .await
            .map_err(|d| denied(d, action))
    }

    /// Loads a repository and authorizes `action` on it with its policy (and
    /// `ecr:CreateRepository` too for a push that would create it). `None`: it does not exist.
    async fn allow_repo(
        &self,
        action: &str,
        repo: &RepoName,
        extra: &[(String, Vec<String>)],
    ) -> Result<Option<RepositoryRecord>, EcrError> {
        let extra = borrow_context(extra);
        self.reg
            .authorize_repository(self.caller, &[action], repo, &extra)
            .await?
            .map_err(|d| denied(d, action))
    }

    /// Parses the name, loads the repository, authorizes `action` on it (with its policy) and
    /// fails with `RepositoryNotFoundException` if it does not exist.
    async fn repo(
        &self,
        registry_id: Option<&String>,
        name: &str,
        action: &str,
    ) -> Result<(RepoName, RepositoryRecord), EcrError> {
        self.check_registry(registry_id)?;
        let repo = self.name(name)?;
        match self.allow_repo(action, &repo, &[]).await? {
            Some(rec) => Ok((repo, rec)),
            None => Err(self.not_found(repo.as_str())),
        }
    }

    fn not_found(&self, name: &str) -> EcrError {
        EcrError::new(
            "RepositoryNotFoundException",
            self.reg.repository_not_found(name),
        )
    }

    fn repository_json(&self, r: &RepositoryRecord) -> Value {
        let mut v = json!({
            "repositoryArn": self.reg.repository_arn(&r.name),
            "registryId": self.registry_id(),
            "repositoryName": r.name,
            "repositoryUri": format!("{}/{}", self.reg.config().public_host, r.name),
            "createdAt": seconds(r.created_at),
            "imageTagMutability": r.tag_mutability,
            "imageScanningConfiguration": { "scanOnPush": r.scan_on_push },
            "encryptionConfiguration": { "encryptionType": r.encryption_type },
        });
        if let Some(k) = &r.kms_key {
            v["encryptionConfiguration"]["kmsKey"] = json!(k);
        }
        add_exclusion_filters(&mut v, &r.mutability_filters);
        v
    }

    fn image_detail(&self, repo: &RepoName, img: &ImageRecord) -> Value {
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo.as_str(),
            "imageDigest": img.manifest.digest.to_string(),
            "imageSizeInBytes": img.size,
            "imagePushedAt": seconds(img.manifest.pushed_at),
            "imageManifestMediaType": img.manifest.media_type,
            "imageStatus": "ACTIVE",
        });
        if !img.tags.is_empty() {
            v["imageTags"] = json!(img.tags);
        }
        if let Some(a) = &img.manifest.artifact_type {
            v["artifactMediaType"] = json!(a);
        }
        if let Some(s) = &img.subject {
            v["subjectManifestDigest"] = json!(s.to_string());
        }
        if let Some(t) = img.manifest.last_pulled_at {
            v["lastRecordedPullTime"] = json!(seconds(t));
        }
        v
    }

    fn image_not_found(&self, repo: &RepoName, id: &ImageId) -> EcrError {
        EcrError::new(
            "ImageNotFoundException",
            format!(
                "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{}' in the registry with id '{}'",
                id.image_digest.as_deref().unwrap_or("null"),
                id.image_tag.as_deref().unwrap_or("null"),
                repo,
                self.registry_id()
            ),
        )
    }

    /// Resolves an image id to its record, or the failure code and reason ECR reports.
    async fn resolve(
        &self,
        repo: &RepoName,
        id: &ImageId,
    ) -> Result<Result<ImageRecord, (&'static str, String)>, EcrError> {
        let by_digest = match &id.image_digest {
            Some(d) => match parse_digest(d) {
                Some(d) => Some(d),
                None => {
                    return Ok(Err(("InvalidImageDigest", "Invalid image digest".into())));
                }
            },
            None => None,
        };
        let by_tag = match &id.image_tag {
            Some(t) => match Tag::parse(t) {
                Ok(t) => Some(t),
                Err(_) => return Ok(Err(("InvalidImageTag", "Invalid image tag".into()))),
            },
            None => None,
        };
        let digest = match (by_digest, by_tag) {
            (None, None) => {
                return Ok(Err((
                    "MissingDigestAndTag",
                    "Missing image digest and tag".into(),
                )));
            }
            (d, Some(t)) => {
                let Some(m) = self
                    .reg
                    .meta()
                    .manifest_by_tag(repo, &t)
                    .await
                    .map_err(store)?
                else {
                    return Ok(Err(("ImageNotFound", "Requested image not found".into())));
                };
                if let Some(d) = d
                    && d != m.digest
                {
                    return Ok(Err((
                        "ImageTagDoesNotMatchDigest",
                        "Invalid image digest and tag: the tag points at another digest".into(),
                    )));
                }
                m.digest
            }
            (Some(d), None) => d,
        };
        match self.reg.meta().image(repo, &digest).await.map_err(store)? {
            Some(img) => Ok(Ok(img)),
            None => Ok(Err(("ImageNotFound", "Requested image not found".into()))),
        }
    }
}

/// Adds `imageTagMutabilityExclusionFilters` to a response when there are any.
fn add_exclusion_filters(v: &mut Value, filters: &[String]) {
    if !filters.is_empty() {
        v["imageTagMutabilityExclusionFilters"] = filters
            .iter()
            .map(|f| json!({"filterType": "WILDCARD", "filter": f}))
            .collect();
    }
}

fn borrow_context(extra: &[(String, Vec<String>)]) -> Vec<(&str, Vec<String>)> {
    extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

pub(crate) fn denied(d: Denial, action: &str) -> EcrError {
    match d {
        Denial::Denied(m) => EcrError::new("AccessDeniedException", m),
        Denial::Unavailable(m) => EcrError::server(m),
        Denial::Unauthenticated => EcrError::new(
            "AccessDeniedException",
            format!("Anonymous callers are not authorized to perform: {action}"),
        ),
    }
}

fn check_ids(ids: &[ImageId]) -> Result<(), EcrError> {
    if ids.is_empty() || ids.len() > 100 {
        return Err(EcrError::constraint(
            "imageIds",
            &ids.len().to_string(),
            "Member must have length between 1 and 100",
        ));
    }
    Ok(())
}

fn store(e: StoreError) -> EcrError {
    EcrError::from(RegistryError::from(e))
}
