//! Repositories as ECR has them: settings (tag mutability with exclusion filters, scan on push,
//! encryption), creation on push from repository creation templates, and the immutability check
//! both APIs share.

use berth_iam::policy::wildcard_match;
use berth_oci::RepoName;
use berth_store::{NewRepository, RepositoryRecord, StoreError, TemplateRecord};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::service::Registry;

/// The prefix of the template that applies to every repository.
pub const ROOT_PREFIX: &str = "ROOT";

/// A resource tag as ECR spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTag {
    /// Key.
    #[serde(rename = "Key")]
    pub key: String,
    /// Value.
    #[serde(rename = "Value")]
    pub value: String,
}

/// One tag-mutability exclusion filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExclusionFilter {
    /// Always `WILDCARD`.
    pub filter_type: String,
    /// The pattern (`*` wildcards).
    pub filter: String,
}

/// Encryption settings as ECR spells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    /// `AES256`, `KMS` or `KMS_DSSE`.
    pub encryption_type: String,
    /// The KMS key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

/// A repository creation template's settings: the stored document and the API shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSettings {
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Encryption of created repositories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    /// Resource tags of created repositories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_tags: Option<Vec<ResourceTag>>,
    /// Tag mutability of created repositories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability: Option<String>,
    /// Its exclusion filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
    /// Repository policy of created repositories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_policy: Option<String>,
    /// Lifecycle policy of created repositories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_policy: Option<String>,
    /// `REPLICATION`, `PULL_THROUGH_CACHE`, `CREATE_ON_PUSH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_for: Option<Vec<String>>,
    /// Recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_role_arn: Option<String>,
}

impl TemplateSettings {
    /// The repository settings this template gives.
    pub fn new_repository(&self) -> NewRepository {
        let enc = self.encryption_configuration.clone();
        NewRepository {
            tag_mutability: self
                .image_tag_mutability
                .clone()
                .unwrap_or_else(|| "MUTABLE".into()),
            mutability_filters: self
                .image_tag_mutability_exclusion_filters
                .iter()
                .flatten()
                .map(|f| f.filter.clone())
                .collect(),
            scan_on_push: false,
            encryption_type: enc
                .as_ref()
                .map_or_else(|| "AES256".into(), |e| e.encryption_type.clone()),
            kms_key: enc.and_then(|e| e.kms_key).filter(|k| !k.is_empty()),
            policy: self.repository_policy.clone().filter(|p| !p.is_empty()),
            lifecycle_policy: self.lifecycle_policy.clone().filter(|p| !p.is_empty()),
            resource_tags: self
                .resource_tags
                .iter()
                .flatten()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
        }
    }

    /// Whether this is the template `berth serve --create-on-push` installs.
    pub fn is_berths_own(&self) -> bool {
        self.description.as_deref() == Some(CREATE_ON_PUSH_DESCRIPTION)
    }

    /// Whether it applies to `what` (e.g. `CREATE_ON_PUSH`).
    pub fn applies_for(&self, what: &str) -> bool {
        self.applied_for.iter().flatten().any(|a| a == what)
    }
}

/// Whether `tag` is immutable under a mutability setting and its exclusion filters (the
/// store's [`berth_store::TagRule`] for pushes).
pub(crate) fn immutable_under(mutability: &str, filters: &[String], tag: &str) -> bool {
    let excluded = || filters.iter().any(|f| wildcard_match(f, tag, false));
    match mutability {
        "IMMUTABLE" => true,
        "IMMUTABLE_WITH_EXCLUSION" => !excluded(),
        "MUTABLE_WITH_EXCLUSION" => excluded(),
        _ => false,
    }
}

/// Whether a template prefix covers a repository name: `ROOT` covers all; otherwise the name
/// starts with the prefix at a path boundary (`team` and `team/` cover `team/app`).
pub fn prefix_covers(prefix: &str, name: &str) -> bool {
    if prefix == ROOT_PREFIX {
        return true;
    }
    let p = prefix.trim_end_matches('/');
    name == p || name.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
}

/// The most specific template among `templates` for `name` that applies for `what`.
pub fn matching_template(
    templates: &[TemplateRecord],
    name: &str,
    what: &str,
) -> Option<(TemplateRecord, TemplateSettings)> {
    templates
        .iter()
        .filter(|t| prefix_covers(&t.prefix, name))
        .filter_map(|t| {
            let s: TemplateSettings = serde_json::from_str(&t.document).ok()?;
            s.applies_for(what).then(|| (t.clone(), s))
        })
        .max_by_key(|(t, _)| {
            if t.prefix == ROOT_PREFIX {
                0
            } else {
                t.prefix.trim_end_matches('/').len() + 1
            }
        })
}

/// The description of the template `berth serve --create-on-push` installs.
pub const CREATE_ON_PUSH_DESCRIPTION: &str = "berth serve --create-on-push: repositories created on push, with immutable tags (but latest) and untagged images expired after 7 days";

/// What `install_create_on_push_template` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateInstall {
    /// The template was installed now.
    Installed,
    /// berth's template was already there.
    Present,
    /// A `ROOT` template of the operator's own is kept (it decides creation on push).
    Kept,
}

/// The settings of the `ROOT` creation template `--create-on-push` installs: what the seeds
/// recommend — tags immutable except `latest`, untagged images expired after 7 days, AES256.
pub fn create_on_push_template() -> TemplateSettings {
    let lifecycle = serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": "expire untagged images 7 days after push",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7
            },
            "action": { "type": "expire" }
        }]
    });
    TemplateSettings {
        description: Some(CREATE_ON_PUSH_DESCRIPTION.into()),
        encryption_configuration: Some(EncryptionConfiguration {
            encryption_type: "AES256".into(),
            kms_key: None,
        }),
        image_tag_mutability: Some("IMMUTABLE_WITH_EXCLUSION".into()),
        image_tag_mutability_exclusion_filters: Some(vec![ExclusionFilter {
            filter_type: "WILDCARD".into(),
            filter: "latest".into(),
        }]),
        lifecycle_policy: Some(lifecycle.to_string()),
        applied_for: Some(vec!["CREATE_ON_PUSH".into()]),
        ..TemplateSettings::default()
    }
}

impl Registry {
    /// Installs the [`create_on_push_template`] for every repository (`ROOT`), unless a `ROOT`
    /// template exists: one the operator made is never replaced.
    pub async fn install_create_on_push_template(&self) -> Result<TemplateInstall, RegistryError> {
        if let Some(ours) = self.root_template_is_berths().await? {
            return Ok(if ours {
                TemplateInstall::Present
            } else {
                TemplateInstall::Kept
            });
        }
        let doc = serde_json::to_string(&create_on_push_template())
            .map_err(|e| RegistryError::Store(StoreError::Corrupt(e.to_string())))?;
        match self.identity().put_template(ROOT_PREFIX, &doc, false).await {
            Ok(_) => Ok(TemplateInstall::Installed),
            // Another replica installed one meanwhile.
            Err(StoreError::TemplateExists(_)) => Ok(TemplateInstall::Present),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the `ROOT` template is the one `--create-on-push` installs (`None`: there is
    /// no `ROOT` template).
    async fn root_template_is_berths(&self) -> Result<Option<bool>, RegistryError> {
        let existing = self.identity().templates().await?;
        Ok(existing.iter().find(|t| t.prefix == ROOT_PREFIX).map(|t| {
            serde_json::from_str::<TemplateSettings>(&t.document).is_ok_and(|s| s.is_berths_own())
        }))
    }

    /// Removes the `ROOT` template `--create-on-push` installed (a server started without the
    /// flag no longer creates repositories on push); an operator's own is kept. True if removed.
    pub async fn remove_create_on_push_template(&self) -> Result<bool, RegistryError> {
        if self.root_template_is_berths().await? != Some(true) {
            return Ok(false);
        }
        match self.identity().delete_template(ROOT_PREFIX).await {
            Ok(_) => Ok(true),
            // Removed by another replica meanwhile.
            Err(StoreError::TemplateUnknown(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The ECR error text for a missing repository.
    pub fn repository_not_found(&self, name: &str) -> String {
        format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            self.config().registry_id
        )
    }

    /// The repository a push writes into: the existing one, or one created now — always when
    /// `auto_create` is on, otherwise from the most specific `CREATE_ON_PUSH` template, as ECR
    /// does. Without either, `NAME_UNKNOWN`.
    pub async fn repository_for_push(
        &self,
        repo: &RepoName,
    ) -> Result<RepositoryRecord, RegistryError> {
        if let Some(r) = self.meta().repository(repo).await? {
            return Ok(r);
        }
        let settings = if self.config().auto_create {
            NewRepository::default()
        } else {
            let templates = self.identity().templates().await?;
            match matching_template(&templates, repo.as_str(), "CREATE_ON_PUSH") {
                Some((t, s)) => {
                    tracing::info!(repository = %repo, template = %t.prefix,
                        "creating repository on push from its creation template");
                    let mut settings = s.new_repository();
                    // berth's own template also turns scanning on (ECR keeps that in the
                    // registry scanning configuration, which templates do not carry).
                    settings.scan_on_push = s.is_berths_own();
                    settings
                }
                None => {
                    return Err(RegistryError::NameUnknown(
                        self.repository_not_found(repo.as_str()),
                    ));
                }
            }
        };
        match self.meta().create_repository(repo, &settings).await {
            Ok(r) => Ok(r),
            // Created by a concurrent push meanwhile.
            Err(StoreError::RepositoryExists(_)) => self
                .meta()
                .repository(repo)
                .await?
                .ok_or_else(|| RegistryError::NameUnknown(repo.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setting(&'static str, Vec<String>);

    fn repo(mutability: &'static str, filters: &[&str]) -> Setting {
        Setting(
            mutability,
            filters.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    fn tag_is_immutable(s: &Setting, tag: &str) -> bool {
        immutable_under(s.0, &s.1, tag)
    }

    #[test]
    fn mutability_with_exclusions() {
        assert!(!tag_is_immutable(&repo("MUTABLE", &[]), "v1"));
        assert!(tag_is_immutable(&repo("IMMUTABLE", &[]), "v1"));
        let r = repo("IMMUTABLE_WITH_EXCLUSION", &["latest", "dev-*"]);
        assert!(tag_is_immutable(&r, "v1"));
        assert!(!tag_is_immutable(&r, "latest"));
        assert!(!tag_is_immutable(&r, "dev-42"));
        let r = repo("MUTABLE_WITH_EXCLUSION", &["v*"]);
        assert!(tag_is_immutable(&r, "v1.2"));
        assert!(!tag_is_immutable(&r, "latest"));
    }

    #[test]
    fn the_create_on_push_template_is_valid() {
        let t = create_on_push_template();
        let policy = t.lifecycle_policy.clone().unwrap_or_default();
        assert!(crate::lifecycle::LifecyclePolicy::parse(&policy).is_ok());
        let r = t.new_repository();
        assert_eq!(r.tag_mutability, "IMMUTABLE_WITH_EXCLUSION");
        assert_eq!(r.mutability_filters, vec!["latest".to_owned()]);
        assert!(t.applies_for("CREATE_ON_PUSH"));
        assert!(t.is_berths_own());
        assert!(!TemplateSettings::default().is_berths_own());
    }

    #[test]
    fn prefixes_cover_at_path_boundaries() {
        assert!(prefix_covers("ROOT", "anything/at/all"));
        assert!(prefix_covers("team", "team/app"));
        assert!(prefix_covers("team/", "team/app"));
        assert!(prefix_covers("team", "team"));
        assert!(!prefix_covers("team", "teamx/app"));
        assert!(!prefix_covers("team/app", "team"));
    }

    #[test]
    fn the_most_specific_template_wins() {
        let t = |prefix: &str, applied: &str, mutability: &str| TemplateRecord {
            prefix: prefix.into(),
            document:
                serde_json::json!({"appliedFor": [applied], "imageTagMutability": mutability})
                    .to_string(),
            created_at: 0,
            updated_at: 0,
        };
        let all = vec![
            t("ROOT", "CREATE_ON_PUSH", "MUTABLE"),
            t("team", "CREATE_ON_PUSH", "IMMUTABLE"),
            t("team/app", "REPLICATION", "MUTABLE"),
        ];
        let (rec, s) = matching_template(&all, "team/app", "CREATE_ON_PUSH").unwrap_or_else(|| {
            panic!("a template should match");
        });
        assert_eq!(rec.prefix, "team");
        assert_eq!(s.new_repository().tag_mutability, "IMMUTABLE");
        let (rec, _) = matching_template(&all, "other", "CREATE_ON_PUSH").unwrap_or_else(|| {
            panic!("ROOT should match");
        });
        assert_eq!(rec.prefix, "ROOT");
        assert!(matching_template(&all[1..], "other", "CREATE_ON_PUSH").is_none());
    }
}
