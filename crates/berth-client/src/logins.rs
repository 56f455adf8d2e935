//! berth's own login records: registries berth authenticates to with AWS credentials (Amazon
//! ECR and `berth serve`), saved by `berth login HOST` with no user name.
//!
//! docker's `config.json` has no way to say "use this AWS profile for that host" without a
//! credential helper that docker itself would then run (and the amazon-ecr-credential-helper
//! refuses hosts that are not `*.amazonaws.com`), so the choice lives in berth's own file:
//! `$BERTH_CONFIG_DIR/logins.json`, else `$XDG_CONFIG_HOME/berth/logins.json`, else
//! `~/.config/berth/logins.json`. It holds no secret — a profile name and the path of a
//! credentials file — and is replaced atomically (temp, fsync, rename), mode 0600.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;
use crate::auth::{Credentials, DockerConfig};
use crate::ecr::{AwsOptions, EcrTarget, advertised_region, check_login, credentials};
use crate::registry::base_url;

/// How berth authenticates to one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// The region tokens are requested in (from the host name, or what the server advertised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The ECR API endpoint (`http://127.0.0.1:5000` for `berth serve`; none for Amazon ECR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The AWS profile to use (default: the credential chain's own choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A credentials file to read besides `~/.aws/credentials` (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    registries: BTreeMap<String, Login>,
}

/// The login file, loaded.
#[derive(Debug)]
pub struct Logins {
    path: PathBuf,
    doc: Doc,
}

impl Logins {
    /// Where the file is.
    pub fn default_path() -> PathBuf {
        let dir = std::env::var_os("BERTH_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|x| PathBuf::from(x).join("berth")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/berth")))
            .unwrap_or_else(|| PathBuf::from(".berth"));
        dir.join("logins.json")
    }

    /// Loads the default file (absent: no logins).
    pub fn load_default() -> Result<Self, ClientError> {
        Self::load(&Self::default_path())
    }

    /// Loads `path` (absent: no logins).
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let read = || -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::fs::File::open(path)?
                .take((1 << 20) + 1)
                .read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        let doc = match read() {
            Ok(bytes) if bytes.len() > 1 << 20 => {
                return Err(ClientError::BadLogins {
                    path: path.to_path_buf(),
                    reason: "larger than 1 MiB".into(),
                });
            }
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ClientError::BadLogins {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc::default(),
            Err(source) => {
                return Err(ClientError::File {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Logins {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// Where this file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The login of `host` (compared without case).
    pub fn get(&self, host: &str) -> Option<&Login> {
        self.doc
            .registries
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, l)| l)
    }

    /// Re-reads the file under its lock, for a change that must not lose another process's.
    fn locked(&mut self) -> Result<std::fs::File, ClientError> {
        let file_err = |source| ClientError::File {
            path: self.path.clone(),
            source,
        };
        let guard = crate::durable::lock_beside(&self.path).map_err(file_err)?;
        self.doc = Self::load(&self.path)?.doc;
        Ok(guard)
    }

    /// Records (or replaces) the login of `host` and saves the file (re-read under a lock, so
    /// concurrent logins to other hosts are kept).
    pub fn set(&mut self, host: &str, login: Login) -> Result<(), ClientError> {
        let _guard = self.locked()?;
        self.doc
            .registries
            .retain(|h, _| !h.eq_ignore_ascii_case(host));
        self.doc.registries.insert(host.to_ascii_lowercase(), login);
        self.save()
    }

    /// Forgets `host`; false if it was not there.
    pub fn remove(&mut self, host: &str) -> Result<bool, ClientError> {
        let _guard = self.locked()?;
        let before = self.doc.registries.len();
        self.doc
            .registries
            .retain(|h, _| !h.eq_ignore_ascii_case(host));
        if self.doc.registries.len() == before {
            return Ok(false);
        }
        self.save()?;
        Ok(true)
    }

    fn save(&self) -> Result<(), ClientError> {
        let mut text =
            serde_json::to_string_pretty(&self.doc).map_err(|e| ClientError::BadLogins {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        text.push('\n');
        crate::durable::write_private(&self.path, text.as_bytes()).map_err(|source| {
            ClientError::File {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// How `berth login HOST` without a user name authenticates.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AwsLogin {
    /// The AWS profile (default: the credential chain's choice).
    pub profile: Option<String>,
    /// An extra credentials file (absolute).
    pub credentials_file: Option<PathBuf>,
    /// The region (default: from the host name, or what `berth serve` advertises).
    pub region: Option<String>,
    /// Hosts reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

/// What a successful AWS-credentials login recorded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoggedIn {
    /// The record saved for the host.
    pub login: Login,
    /// The region tokens are requested in (`None`: the AWS configuration's).
    pub region: Option<String>,
    /// The login file it was saved in.
    pub file: PathBuf,
}

/// The region the registry at `base` advertises for AWS credentials
/// ([`ClientError::NoAwsAuth`] when it advertises none: it is not berth serve).
async fn advertised(host: &str, base: &str) -> Result<String, ClientError> {
    advertised_region(base)
        .await?
        .ok_or_else(|| ClientError::NoAwsAuth {
            host: host.to_owned(),
        })
}

/// `berth login HOST` without a user name: gets a token with the AWS credentials `how` names,
/// checks that the registry accepts it, then remembers the choice in the login file.
pub async fn aws_login(host: &str, how: AwsLogin) -> Result<LoggedIn, ClientError> {
    let base = base_url(host, &how.insecure);
    let amazon = berth_oci::EcrRegistry::from_host(host).is_some();
    let region = match how.region {
        Some(r) => Some(r),
        None if amazon => None,
        None => Some(advertised(host, &base).await?),
    };
    let login = Login {
        region,
        endpoint: (!amazon).then(|| base.clone()),
        profile: how.profile,
        credentials_file: how.credentials_file,
    };
    let target = EcrTarget::resolve(host, None, Some(&login)).ok_or_else(|| {
        ClientError::Unauthorized(format!("{host}: a login record that names no registry"))
    })?;
    let creds = credentials(&target, None).await?;
    check_login(&base, &creds).await?;
    let mut logins = Logins::load_default()?;
    logins.set(host, login.clone())?;
    Ok(LoggedIn {
        login,
        region: target.aws.region,
        file: logins.path().to_path_buf(),
    })
}

/// A token password (user `AWS`) for an ECR-style registry, as `aws ecr get-login-password`
/// prints it: with the host's login, else as the environment or the server says.
pub async fn login_password(host: &str, insecure: &[String]) -> Result<String, ClientError> {
    let config = DockerConfig::load_default()?;
    let target = match EcrTarget::for_host(host, Some(&config)) {
        Some(t) => t,
        None => {
            let base = base_url(host, insecure);
            let mut t = EcrTarget::with_region(host, Some(advertised(host, &base).await?));
            t.aws.endpoint = Some(base);
            t
        }
    };
    match credentials(&target, None).await? {
        Credentials::Basic { password, .. } => Ok(password),
        Credentials::IdentityToken(_) => Err(ClientError::Unauthorized(format!(
            "{host}: GetAuthorizationToken gave no password"
        ))),
    }
}

/// Where and as whom the ECR API of registry `host` is called: its login record (endpoint,
/// region, profile, credentials file); a registry that is not Amazon's is a `berth serve`
/// answering on its own address, whose advertised region wins over the environment's.
pub fn registry_api(host: &str, insecure: &[String]) -> Result<AwsOptions, ClientError> {
    let logins = Logins::load_default()?;
    let mut aws = EcrTarget::resolve(host, None, logins.get(host))
        .map(|t| t.aws)
        .unwrap_or_default();
    let amazon = berth_oci::EcrRegistry::from_host(host).is_some();
    aws.ask_region = !amazon;
    if aws.endpoint.is_none() && !amazon {
        aws.endpoint = Some(base_url(host, insecure));
    }
    Ok(aws)
}

/// Whether the first component of a repository name (`127.0.0.1:5000` in
/// `127.0.0.1:5000/team/app`) names a registry: a port, `localhost`, an Amazon ECR host, or a
/// host `berth login` knows (ECR allows dots in repository names, so a dot alone does not).
pub fn names_registry(first: &str) -> Result<bool, ClientError> {
    Ok(first.contains(':')
        || first == "localhost"
        || berth_oci::EcrRegistry::from_host(first).is_some()
        || Logins::load_default()?.get(first).is_some())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn logins_round_trip_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/logins.json");
        let mut l = Logins::load(&path).unwrap();
        assert!(l.get("127.0.0.1:5000").is_none());
        let login = Login {
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:5000".into()),
            profile: Some("berth".into()),
            credentials_file: Some("/data/root-credentials".into()),
        };
        l.set("127.0.0.1:5000", login.clone()).unwrap();
        // Another process's login, saved meanwhile, is kept by the next change.
        Logins::load(&path)
            .unwrap()
            .set("other:5000", Login::default())
            .unwrap();
        l.set("127.0.0.1:5000", login.clone()).unwrap();
        assert!(Logins::load(&path).unwrap().get("other:5000").is_some());
        let back = Logins::load(&path).unwrap();
        assert_eq!(back.get("127.0.0.1:5000"), Some(&login));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut back = back;
        assert!(back.remove("127.0.0.1:5000").unwrap());
        assert!(!back.remove("127.0.0.1:5000").unwrap());
        std::fs::write(&path, "[").unwrap();
        assert!(matches!(
            Logins::load(&path),
            Err(ClientError::BadLogins { .. })
        ));
    }
}
