//! The identity-store trait: users, their access keys and policies, registry-wide settings and
//! repository creation templates — everything the registry's authorization reads.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserRecord {
    /// Its name (unique).
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// The registry's administrator: every action is allowed (explicit denies in resource
    /// policies still apply).
    pub admin: bool,
}

/// An inline identity policy of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    /// The policy's name (unique per user).
    pub name: String,
    /// The document, exactly as given.
    pub document: String,
}

/// An access key. The secret is stored sealed (encrypted with a key only the server holds):
/// SigV4 verification needs the secret itself, so it cannot be hashed.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessKeyRecord {
    /// The access key id (`AKIA…`).
    pub id: String,
    /// The user it belongs to.
    pub user: String,
    /// The sealed secret.
    pub sealed_secret: Vec<u8>,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
}

impl fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("sealed_secret", &"<sealed>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What authenticating one request needs, read in one go: the key, its user and the user's
/// policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key.
    pub key: AccessKeyRecord,
    /// Its user.
    pub user: UserRecord,
    /// The user's inline policies.
    pub policies: Vec<UserPolicy>,
}

/// A repository creation template as stored: its prefix and its settings document (JSON owned
/// by the registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// The repository-name prefix it applies to (`ROOT` for every repository).
    pub prefix: String,
    /// The template's settings, a JSON document.
    pub document: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Last update, milliseconds since the epoch.
    pub updated_at: i64,
}

/// A registry-wide document of some kind, by key: a pull-through cache rule by repository
/// prefix, an upstream credential by name. The registry owns the document's format.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DocumentRecord {
    /// Its kind (`pull-through-cache-rule`, …).
    pub kind: String,
    /// Its key, unique within the kind.
    pub key: String,
    /// The document.
    pub document: String,
    /// Creation time, milliseconds since the epoch.
    pub created_at: i64,
    /// Last update, milliseconds since the epoch.
    pub updated_at: i64,
}

/// How [`IdentityStore::put_document`] treats an existing document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Only a new one (`DocumentExists` otherwise).
    Create,
    /// Only an existing one (`DocumentUnknown` otherwise).
    Replace,
    /// Either.
    Upsert,
}

/// Users, access keys, policies, registry settings, templates and documents. Every method is
/// one transaction.
#[async_trait]
pub trait IdentityStore: Send + Sync + fmt::Debug + 'static {
    /// Creates a user; `UserExists` if the name is taken.
    async fn create_user(&self, name: &str, admin: bool) -> Result<UserRecord, StoreError>;

    /// One user.
    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;

    /// All users, by name.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Deletes a user with its keys and policies; `UserUnknown` if absent.
    async fn delete_user(&self, name: &str) -> Result<(), StoreError>;

    /// Creates or replaces an inline policy of a user; `UserUnknown` if absent.
    async fn put_user_policy(
        &self,
        user: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError>;

    /// Removes an inline policy; false if it was not there. `UserUnknown` if the user is absent.
    async fn delete_user_policy(&self, user: &str, name: &str) -> Result<bool, StoreError>;

    /// A user's inline policies, by name.
    async fn user_policies(&self, user: &str) -> Result<Vec<UserPolicy>, StoreError>;

    /// Records a new access key for a user; `UserUnknown` if absent.
    async fn create_access_key(
        &self,
        user: &str,
        id: &str,
        sealed_secret: &[u8],
    ) -> Result<AccessKeyRecord, StoreError>;

    /// Deletes an access key (tokens issued for it stop working); `KeyUnknown` if absent.
    async fn delete_access_key(&self, id: &str) -> Result<(), StoreError>;

    /// Access keys, of one user or of all, by user then id.
    async fn access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKeyRecord>, StoreError>;

    /// The key, its user and the user's policies.
    async fn key_owner(&self, id: &str) -> Result<Option<KeyOwner>, StoreError>;

    /// A registry-wide setting (e.g. the registry policy).
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets (or with `None` removes) a registry-wide setting; returns the previous value.
    async fn set_setting(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<String>, StoreError>;

    /// Stores `value` under `key` unless the key has a value, in one transaction; returns the
    /// value the key has afterwards (`value`, or what was there). Replicas starting together
    /// agree on one generated value (the registry id) this way.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Creates a template (`TemplateExists` if the prefix has one) or, with `replace`, updates
    /// an existing one (`TemplateUnknown` if it has none).
    async fn put_template(
        &self,
        prefix: &str,
        document: &str,
        replace: bool,
    ) -> Result<TemplateRecord, StoreError>;

    /// All templates, by prefix.
    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError>;

    /// Deletes a template, returning it; `TemplateUnknown` if absent.
    async fn delete_template(&self, prefix: &str) -> Result<TemplateRecord, StoreError>;

    /// Writes a document (see [`PutMode`]) and returns it as stored.
    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        document: &str,
        mode: PutMode,
    ) -> Result<DocumentRecord, StoreError>;

    /// One document.
    async fn document(&self, kind: &str, key: &str) -> Result<Option<DocumentRecord>, StoreError>;

    /// The documents of a kind, by key.
    async fn documents(&self, kind: &str) -> Result<Vec<DocumentRecord>, StoreError>;

    /// Deletes a document, returning it; `DocumentUnknown` if absent.
    async fn delete_document(&self, kind: &str, key: &str) -> Result<DocumentRecord, StoreError>;
}
