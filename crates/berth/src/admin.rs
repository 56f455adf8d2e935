//! `berth admin`: users, access keys and identity policies of a registry's data directory, and
//! what `serve` sets up at start (master key, registry id, the initial administrator).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_iam::keys::{MasterKey, generate_access_key, is_access_key_id};
use berth_iam::policy::{Policy, PolicyKind};
use berth_oci::RepoName;
use berth_store::{MetadataDb, RepositoryUpdate, StoreError};
use clap::{Args, Subcommand};

use crate::UsageError;
use crate::serve::{DataArgs, Settings, data_settings, open_meta};

/// The name of the administrator created at first start.
const ADMIN_USER: &str = "admin";
/// Where the generated administrator credentials are written (in the data directory).
const ROOT_CREDENTIALS_FILE: &str = "root-credentials";
/// The setting holding the generated registry id.
const REGISTRY_ID_SETTING: &str = "registry_id";

/// `berth admin …`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Users and their identity policies
    #[command(subcommand)]
    User(UserCommand),
    /// Access keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Byte quotas of repositories, and what they hold
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Copies an embedded registry (--from DATA_DIR) into S3-compatible storage and
    /// PostgreSQL: every blob verified on the way (a rerun skips what was copied), then all
    /// metadata in one transaction
    Migrate(crate::migrate::MigrateArgs),
}

#[derive(Debug, Subcommand)]
enum QuotaCommand {
    /// Sets a repository's quota (`none` removes it: the registry's default applies)
    Set {
        /// Repository name
        repository: String,
        /// Bytes, with an optional unit (`500MB`, `2GiB`), or `none`
        quota: String,
    },
    /// Shows a repository's quota and usage, and the registry's usage
    Show {
        /// Repository name
        repository: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Creates a user with one access key; prints the secret once
    Create {
        /// The user's name
        name: String,
        /// Make the user an administrator (every action allowed)
        #[arg(long)]
        admin: bool,
        /// An identity policy document (JSON file, `-` for stdin) attached as `default`
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Lists users
    Ls,
    /// Deletes a user with its keys and policies (its tokens stop working)
    Rm {
        /// The user's name
        name: String,
    },
    /// Attaches (or replaces) an inline identity policy
    PutPolicy {
        /// The user's name
        user: String,
        /// The policy's name
        policy_name: String,
        /// The policy document (JSON file, `-` for stdin)
        file: PathBuf,
    },
    /// Removes an inline identity policy
    RmPolicy {
        /// The user's name
        user: String,
        /// The policy's name
        policy_name: String,
    },
    /// Prints a user's inline policies
    Policies {
        /// The user's name
        user: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Creates another access key for a user; prints the secret once
    Create {
        /// The user's name
        user: String,
    },
    /// Lists access keys (ids only)
    Ls {
        /// Only this user's
        user: Option<String>,
    },
    /// Deletes an access key (tokens issued for it stop working)
    Rm {
        /// The access key id
        id: String,
    },
}

/// Reads the master key: `BERTH_MASTER_KEY` (base64), else the configured file, else
/// `<data>/master.key`, generated (0600) when absent — only while no access key is sealed yet:
/// a new key would silently make every stored secret unreadable.
pub(crate) async fn master_key(s: &Settings, meta: &dyn MetadataDb) -> anyhow::Result<MasterKey> {
    if let Ok(v) = std::env::var("BERTH_MASTER_KEY") {
        return MasterKey::from_base64(&v)
            .map_err(|e| UsageError(format!("BERTH_MASTER_KEY: {e}")).into());
    }
    let path = s
        .master_key_file
        .clone()
        .unwrap_or_else(|| s.data.join("master.key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::from_base64(&text)
            .map_err(|e| UsageError(format!("master key file {}: {e}", path.display())).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && s.metadata.is_some() => {
            Err(UsageError(format!(
                "the master key file {} is missing: with a shared metadata database (--metadata) \
                 every replica must have the same master key, so none is generated — set \
                 BERTH_MASTER_KEY (base64 of 32 random bytes: `head -c32 /dev/urandom | base64`) \
                 or master_key_file on every replica",
                path.display()
            ))
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let sealed = meta.access_keys(None).await?.len();
            if sealed > 0 {
                return Err(UsageError(format!(
                    "the master key file {} is missing, but {sealed} access keys are sealed under \
                     a master key: restore the file, or set BERTH_MASTER_KEY as the server has it",
                    path.display()
                ))
                .into());
            }
            let key = MasterKey::generate();
            write_secret_file(&path, &format!("{}\n", key.to_base64()))?;
            tracing::info!(path = %path.display(), "generated the master key (keep it: it seals every access key's secret)");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading master key {}", path.display())),
    }
}

/// Writes a new file readable by its owner only, atomically (temp + fsync + rename); refuses
/// to overwrite.
fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    drop(f);
    // A hard link fails if the destination exists: never overwrite a key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The registry id stored in the database, generated at first start.
pub(crate) async fn registry_id(meta: &dyn MetadataDb) -> anyhow::Result<String> {
    if let Some(id) = meta.setting(REGISTRY_ID_SETTING).await? {
        return Ok(id);
    }
    let n: u64 = rand::random_range(100_000_000_000..1_000_000_000_000);
    // Replicas starting together on one database agree on the first id stored.
    Ok(meta
        .init_setting(REGISTRY_ID_SETTING, &n.to_string())
        .await?)
}

/// Makes sure an administrator exists: from `BERTH_ROOT_ACCESS_KEY_ID` /
/// `BERTH_ROOT_SECRET_ACCESS_KEY` when set, otherwise (first start only) a generated key written
/// once to a 0600 file in the data directory.
pub(crate) async fn bootstrap_root(
    meta: &dyn MetadataDb,
    master: &MasterKey,
    data: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let id = std::env::var("BERTH_ROOT_ACCESS_KEY_ID").ok();
    let secret = std::env::var("BERTH_ROOT_SECRET_ACCESS_KEY").ok();
    match (id, secret) {
        (Some(id), Some(secret)) => {
            check_key_id(&id)?;
            if secret.len() < 8 {
                return Err(UsageError(
                    "BERTH_ROOT_SECRET_ACCESS_KEY must be at least 8 characters".into(),
                )
                .into());
            }
            if root_key_installed(meta, master, &id, &secret).await? {
                return Ok(None);
            }
            ensure_admin(meta).await?;
            let sealed = master.seal_key().seal(secret.as_bytes(), id.as_bytes())?;
            if let Err(e) = meta.create_access_key(ADMIN_USER, &id, &sealed).await {
                // Another replica starting at the same time may have installed it first.
                if root_key_installed(meta, master, &id, &secret).await? {
                    return Ok(None);
                }
                return Err(e.into());
            }
            tracing::info!(access_key_id = %id, "root access key from BERTH_ROOT_ACCESS_KEY_ID installed");
            Ok(None)
        }
        (None, None) => {
            // Decided on the administrator's keys, not on whether users exist: a start killed
            // between creating the user and storing its key is completed by the next one.
            if !meta.access_keys(Some(ADMIN_USER)).await?.is_empty() {
                return Ok(None);
            }
            ensure_admin(meta).await?;
            let (id, secret) = generate_access_key();
            let path = data.join(ROOT_CREDENTIALS_FILE);
            // The file is written before the key is stored, so a crash leaves at worst a file
            // naming a key that does not exist — replaced here, since no key of the
            // administrator's exists.
            if path.exists() {
                tracing::warn!(path = %path.display(),
                    "replacing a credentials file whose key is not in the database");
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            let text = format!(
                "# berth administrator credentials (AWS shared-credentials format)\n[berth]\naws_access_key_id = {id}\naws_secret_access_key = {}\n",
                secret.expose()
            );
            write_secret_file(&path, &text)?;
            let sealed = master
                .seal_key()
                .seal(secret.expose().as_bytes(), id.as_bytes())?;
            meta.create_access_key(ADMIN_USER, &id, &sealed).await?;
            tracing::warn!(path = %path.display(), access_key_id = %id,
                "generated the administrator's access key; its secret is in this file (0600), \
                 written once");
            Ok(Some(path))
        }
        _ => Err(UsageError(
            "set both BERTH_ROOT_ACCESS_KEY_ID and BERTH_ROOT_SECRET_ACCESS_KEY, or neither".into(),
        )
        .into()),
    }
}

/// Whether the root key `id` is installed with `secret` for an administrator (`false`: absent);
/// an error if it exists with another secret or owner.
async fn root_key_installed(
    meta: &dyn MetadataDb,
    master: &MasterKey,
    id: &str,
    secret: &str,
) -> anyhow::Result<bool> {
    let Some(owner) = meta.key_owner(id).await? else {
        return Ok(false);
    };
    let stored = master
        .seal_key()
        .open(&owner.key.sealed_secret, id.as_bytes())
        .map_err(|e| anyhow::anyhow!("opening the root key's secret: {e}"))?;
    let same: bool =
        subtle::ConstantTimeEq::ct_eq(stored.expose().as_bytes(), secret.as_bytes()).into();
    if !same || !owner.user.admin {
        return Err(UsageError(format!(
            "BERTH_ROOT_ACCESS_KEY_ID {id} exists with another secret or owner; \
             delete it with `berth admin key rm {id}` to set it again"
        ))
        .into());
    }
    Ok(true)
}

async fn ensure_admin(meta: &dyn MetadataDb) -> anyhow::Result<()> {
    match meta.create_user(ADMIN_USER, true).await {
        Ok(_) | Err(StoreError::UserExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn check_key_id(id: &str) -> anyhow::Result<()> {
    if is_access_key_id(id) {
        Ok(())
    } else {
        Err(UsageError(format!(
            "access key id {id:?} must be 16 to 128 letters and digits"
        ))
        .into())
    }
}

fn check_user_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "user name {name:?} must be 1 to 64 of letters, digits and + = , . @ _ -"
        ))
        .into())
    }
}

fn read_policy(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the policy from stdin")?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?
    };
    Policy::parse(&text, PolicyKind::Identity)
        .map_err(|e| UsageError(format!("policy {}: {e}", path.display())))?;
    Ok(text)
}

async fn new_key(meta: &dyn MetadataDb, master: &MasterKey, user: &str) -> anyhow::Result<()> {
    let (id, secret) = generate_access_key();
    let sealed = master
        .seal_key()
        .seal(secret.expose().as_bytes(), id.as_bytes())?;
    meta.create_access_key(user, &id, &sealed)
        .await
        .map_err(user_error)?;
    let mut out = std::io::stdout();
    writeln!(out, "AccessKeyId: {id}")?;
    writeln!(out, "SecretAccessKey: {}", secret.expose())?;
    writeln!(out, "# the secret is shown only now")?;
    Ok(())
}

fn user_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::UserUnknown(_) | StoreError::UserExists(_) | StoreError::KeyUnknown(_) => {
            UsageError(e.to_string()).into()
        }
        e => e.into(),
    }
}

/// Runs `berth admin`.
pub fn run(mut args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Migrate(m) = &args.command {
        let (storage, metadata) = m.targets();
        args.data.storage = storage.or(args.data.storage);
        args.data.metadata = metadata.or(args.data.metadata);
    }
    let s = data_settings(args.data)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let AdminCommand::Migrate(m) = &args.command {
        return runtime.block_on(crate::migrate::run(m, &s));
    }
    runtime.block_on(async move {
        let meta = open_meta(&s).await?;
        let meta = &*meta;
        let mut out = std::io::stdout();
        match args.command {
            // Handled above, before a metadata database is opened.
            AdminCommand::Migrate(_) => {}
            AdminCommand::User(UserCommand::Create {
                name,
                admin,
                policy,
            }) => {
                check_user_name(&name)?;
                let doc = policy.as_deref().map(read_policy).transpose()?;
                let master = master_key(&s, meta).await?;
                meta.create_user(&name, admin).await.map_err(user_error)?;
                if let Some(doc) = doc {
                    meta.put_user_policy(&name, "default", &doc).await?;
                }
                writeln!(out, "User: {name}")?;
                new_key(meta, &master, &name).await?;
            }
            AdminCommand::User(UserCommand::Ls) => {
                for u in meta.users().await? {
                    let keys = meta.access_keys(Some(&u.name)).await?.len();
                    writeln!(
                        out,
                        "{}\t{}\t{keys} key(s)",
                        u.name,
                        if u.admin { "admin" } else { "user" }
                    )?;
                }
            }
            AdminCommand::User(UserCommand::Rm { name }) => {
                meta.delete_user(&name).await.map_err(user_error)?;
            }
            AdminCommand::User(UserCommand::PutPolicy {
                user,
                policy_name,
                file,
            }) => {
                let doc = read_policy(&file)?;
                meta.put_user_policy(&user, &policy_name, &doc)
                    .await
                    .map_err(user_error)?;
            }
            AdminCommand::User(UserCommand::RmPolicy { user, policy_name }) => {
                if !meta
                    .delete_user_policy(&user, &policy_name)
                    .await
                    .map_err(user_error)?
                {
                    return Err(UsageError(format!(
                        "user {user} has no policy named {policy_name}"
                    ))
                    .into());
                }
            }
            AdminCommand::User(UserCommand::Policies { user }) => {
                for p in meta.user_policies(&user).await.map_err(user_error)? {
                    writeln!(out, "# {}\n{}", p.name, p.document.trim_end())?;
                }
            }
            AdminCommand::Quota(QuotaCommand::Set { repository, quota }) => {
                let repo = RepoName::parse(&repository)
                    .map_err(|e| UsageError(format!("{repository}: {e}")))?;
                let bytes = match quota.as_str() {
                    "none" => None,
                    q => Some(crate::build::parse_size(q).map_err(UsageError)?),
                };
                meta.update_repository(&repo, RepositoryUpdate::Quota(bytes))
                    .await
                    .map_err(|e| match e {
                        StoreError::RepositoryUnknown(_) => {
                            UsageError(format!("repository {repository} does not exist")).into()
                        }
                        e => anyhow::Error::from(e),
                    })?;
                match bytes {
                    Some(b) => writeln!(out, "{repository}: quota {b} bytes")?,
                    None => writeln!(out, "{repository}: no quota of its own")?,
                }
            }
            AdminCommand::Quota(QuotaCommand::Show { repository }) => {
                let repo = RepoName::parse(&repository)
                    .map_err(|e| UsageError(format!("{repository}: {e}")))?;
                let Some(rec) = meta.repository(&repo).await? else {
                    return Err(
                        UsageError(format!("repository {repository} does not exist")).into(),
                    );
                };
                let usage = meta.usage(&repo).await?;
                let quota = rec
                    .quota_bytes
                    .or(s.registry_config().quota.repository)
                    .map_or_else(|| "unlimited".to_owned(), |q| q.to_string());
                writeln!(out, "repository\t{repository}")?;
                writeln!(out, "usage_bytes\t{}", usage.repository)?;
                writeln!(out, "quota_bytes\t{quota}")?;
                writeln!(out, "registry_usage_bytes\t{}", usage.registry)?;
                let reg = s
                    .registry_config()
                    .quota
                    .registry
                    .map_or_else(|| "unlimited".to_owned(), |q| q.to_string());
                writeln!(out, "registry_quota_bytes\t{reg}")?;
            }
            AdminCommand::Key(KeyCommand::Create { user }) => {
                let master = master_key(&s, meta).await?;
                new_key(meta, &master, &user).await?;
            }
            AdminCommand::Key(KeyCommand::Ls { user }) => {
                for k in meta.access_keys(user.as_deref()).await? {
                    writeln!(out, "{}\t{}", k.id, k.user)?;
                }
            }
            AdminCommand::Key(KeyCommand::Rm { id }) => {
                meta.delete_access_key(&id).await.map_err(user_error)?;
            }
        }
        Ok(())
    })
}
