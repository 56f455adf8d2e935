//! docker's `config.json`: where `docker login` keeps credentials, and which credential helpers
//! to ask instead. Read and written the way the docker CLI does, so `berth login` and
//! `docker login` share one file.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::ClientError;

/// The key Docker Hub credentials are stored under (what the docker CLI uses).
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry. `Debug` never shows secrets.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Username and password (or a registry token used as the password).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user), exchanged at the
    /// registry's token endpoint.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// The key a registry's entry has in `config.json` (Docker Hub's is its legacy v1 URL).
pub fn registry_key(registry: &str) -> String {
    match host_of(registry).as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_owned(),
        host => host.to_owned(),
    }
}

/// `https://host/v1/` → `host`; `host` → `host`.
fn host_of(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_ascii_lowercase()
}

/// A loaded `config.json` (unknown fields are kept when it is written back).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        dir.join("config.json")
    }

    /// Loads the default config (an absent file is an empty config).
    pub fn load_default() -> Result<Self, ClientError> {
        Self::load(&Self::default_path())
    }

    /// Loads `path` (an absent file is an empty config).
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let doc = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(bad(path, "the top level is not an object")),
                Err(e) => return Err(bad(path, &e.to_string())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(ClientError::File {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// Where this config lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper responsible for `registry`, if any (`credHelpers`, then
    /// `credsStore`).
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let host = host_of(&registry_key(registry));
        let per_host = self
            .doc
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|m| {
                m.iter()
                    .find(|(k, _)| host_of(k) == host)
                    .and_then(|(_, v)| v.as_str())
            });
        per_host
            .or_else(|| self.doc.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    }

    /// Credentials for `registry` (a host such as `docker.io` or `127.0.0.1:5000`), asking the
    /// configured helper when there is one.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, ClientError> {
        if let Some(helper) = self.helper_for(registry) {
            return helper_get(None, &helper, &registry_key(registry));
        }
        Ok(self.stored(registry))
    }

    /// Credentials written in `auths` (no helper consulted).
    pub fn stored(&self, registry: &str) -> Option<Credentials> {
        let host = host_of(&registry_key(registry));
        let auths = self.doc.get("auths")?.as_object()?;
        let entry = auths
            .iter()
            .find(|(k, _)| host_of(k) == host)
            .and_then(|(_, v)| v.as_object())?;
        if let Some(token) = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            return Some(Credentials::IdentityToken(token.to_owned()));
        }
        let from_auth = entry
            .get("auth")
            .and_then(Value::as_str)
            .and_then(|a| BASE64.decode(a.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
        let (username, password) = from_auth.or_else(|| {
            Some((
                entry.get("username")?.as_str()?.to_owned(),
                entry.get("password")?.as_str()?.to_owned(),
            ))
        })?;
        Some(Credentials::Basic { username, password })
    }

    /// Saves credentials for `registry` as `docker login` does: through the helper if one is
    /// configured, else base64 in `auths`; the file is replaced atomically with mode 0600.
    pub fn store(&mut self, registry: &str, creds: &Credentials) -> Result<(), ClientError> {
        let key = registry_key(registry);
        if let Some(helper) = self.helper_for(registry) {
            helper_store(None, &helper, &key, creds)?;
            // docker leaves an empty entry so `docker logout` knows the registry.
            self.auths_mut().insert(key, Value::Object(Map::new()));
        } else {
            let entry = match creds {
                Credentials::Basic { username, password } => {
                    serde_json::json!({ "auth": BASE64.encode(format!("{username}:{password}")) })
                }
                Credentials::IdentityToken(t) => serde_json::json!({ "identitytoken": t }),
            };
            self.auths_mut().retain(|k, _| host_of(k) != host_of(&key));
            self.auths_mut().insert(key, entry);
        }
        self.save()
    }

    /// Removes credentials for `registry`; false if there were none.
    pub fn erase(&mut self, registry: &str) -> Result<bool, ClientError> {
        let key = registry_key(registry);
        let mut removed = false;
        if let Some(helper) = self.helper_for(registry) {
            removed |= helper_erase(None, &helper, &key)?;
        }
        let host = host_of(&key);
        let auths = self.auths_mut();
        let before = auths.len();
        auths.retain(|k, _| host_of(k) != host);
        removed |= auths.len() != before;
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        match auths {
            Value::Object(m) => m,
            _ => unreachable!("just made an object"),
        }
    }

    fn save(&self) -> Result<(), ClientError> {
        let mut text =
            serde_json::to_string_pretty(&self.doc).map_err(|e| ClientError::BadConfig {
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

fn bad(path: &Path, reason: &str) -> ClientError {
    ClientError::BadConfig {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

/// Helper names become part of a program name: keep them to what helpers are called.
fn helper_program(helper: &str) -> Result<String, ClientError> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(ClientError::Helper {
            helper: helper.chars().take(64).collect(),
            reason: "not a valid helper name".into(),
        });
    }
    Ok(format!("docker-credential-{helper}"))
}

/// Runs `docker-credential-<helper> <verb>` with `input` on stdin; (success, stdout, stderr).
fn run_helper(
    search_path: Option<&OsStr>,
    helper: &str,
    verb: &str,
    input: &str,
) -> Result<(bool, String, String), ClientError> {
    let program = helper_program(helper)?;
    let fail = |reason: String| ClientError::Helper {
        helper: helper.to_owned(),
        reason,
    };
    let mut cmd = Command::new(&program);
    if let Some(p) = search_path {
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for {program}: {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn not_found(text: &str) -> bool {
    text.to_ascii_lowercase().contains("credentials not found")
}

fn helper_get(
    search_path: Option<&OsStr>,
    helper: &str,
    server: &str,
) -> Result<Option<Credentials>, ClientError> {
    let (ok, stdout, stderr) = run_helper(search_path, helper, "get", server)?;
    if !ok {
        if not_found(&stdout) || not_found(&stderr) {
            return Ok(None);
        }
        return Err(ClientError::Helper {
            helper: helper.to_owned(),
            reason: format!("get failed: {}", first_line(&stdout, &stderr)),
        });
    }
    let v: Value = serde_json::from_str(&stdout).map_err(|e| ClientError::Helper {
        helper: helper.to_owned(),
        reason: format!("get printed something that is not JSON ({e})"),
    })?;
    let username = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    Ok(match (username, secret) {
        (_, "") => None,
        ("<token>", token) => Some(Credentials::IdentityToken(token.to_owned())),
        (u, p) => Some(Credentials::Basic {
            username: u.to_owned(),
            password: p.to_owned(),
        }),
    })
}

fn helper_store(
    search_path: Option<&OsStr>,
    helper: &str,
    server: &str,
    creds: &Credentials,
) -> Result<(), ClientError> {
    let (username, secret) = match creds {
        Credentials::Basic { username, password } => (username.as_str(), password.as_str()),
        Credentials::IdentityToken(t) => ("<token>", t.as_str()),
    };
    let input = serde_json::json!({ "ServerURL": server, "Username": username, "Secret": secret })
        .to_string();
    let (ok, stdout, stderr) = run_helper(search_path, helper, "store", &input)?;
    if ok {
        Ok(())
    } else {
        Err(ClientError::Helper {
            helper: helper.to_owned(),
            reason: format!("store failed: {}", first_line(&stdout, &stderr)),
        })
    }
}

fn helper_erase(
    search_path: Option<&OsStr>,
    helper: &str,
    server: &str,
) -> Result<bool, ClientError> {
    let (ok, stdout, stderr) = run_helper(search_path, helper, "erase", server)?;
    match (ok, not_found(&stdout) || not_found(&stderr)) {
        (true, _) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => Err(ClientError::Helper {
            helper: helper.to_owned(),
            reason: format!("erase failed: {}", first_line(&stdout, &stderr)),
        }),
    }
}

fn first_line(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.lines()
        .next()
        .unwrap_or("(no output)")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).expect("write");
        let cfg = DockerConfig::load(&path).expect("load");
        (dir, cfg)
    }

    #[test]
    fn reads_auths_as_docker_writes_them() {
        let (_d, cfg) = config(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}},"https://ghcr.io":{{"auth":"","identitytoken":"refresh"}}}},"psFormat":"x"}}"#,
            BASE64.encode("hub:secret:with:colons")
        ));
        assert_eq!(
            cfg.credentials("docker.io").expect("ok"),
            Some(Credentials::Basic {
                username: "hub".into(),
                password: "secret:with:colons".into()
            })
        );
        assert_eq!(
            cfg.credentials("127.0.0.1:5000").expect("ok"),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            cfg.credentials("ghcr.io").expect("ok"),
            Some(Credentials::IdentityToken("refresh".into()))
        );
        assert_eq!(cfg.credentials("quay.io").expect("ok"), None);
        let shown = format!("{:?}", cfg.credentials("docker.io").expect("ok"));
        assert!(
            !shown.contains("secret"),
            "Debug leaks the password: {shown}"
        );
    }

    #[test]
    fn login_and_logout_round_trip_keeping_other_fields() {
        let (dir, mut cfg) = config(r#"{"auths":{},"currentContext":"default"}"#);
        let creds = Credentials::Basic {
            username: "me".into(),
            password: "pw".into(),
        };
        cfg.store("127.0.0.1:5000", &creds).expect("store");
        cfg.store("docker.io", &creds).expect("store");
        let path = dir.path().join("config.json");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("https://index.docker.io/v1/"));
        assert!(text.contains("currentContext"));
        let again = DockerConfig::load(&path).expect("reload");
        assert_eq!(
            again.credentials("127.0.0.1:5000").expect("ok"),
            Some(creds.clone())
        );
        let mut again = again;
        assert!(again.erase("127.0.0.1:5000").expect("erase"));
        assert!(!again.erase("127.0.0.1:5000").expect("erase twice"));
        let reloaded = DockerConfig::load(&path).expect("reload");
        assert_eq!(reloaded.credentials("127.0.0.1:5000").expect("ok"), None);
        assert!(reloaded.credentials("docker.io").expect("ok").is_some());
    }

    #[test]
    fn helpers_are_chosen_per_host_then_store() {
        let (_d, cfg) = config(
            r#"{"credHelpers":{"123456789012.dkr.ecr.eu-west-1.amazonaws.com":"ecr-login"},"credsStore":"pass"}"#,
        );
        assert_eq!(
            cfg.helper_for("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
                .as_deref(),
            Some("ecr-login")
        );
        assert_eq!(cfg.helper_for("ghcr.io").as_deref(), Some("pass"));
        let (_d, cfg) = config(r#"{"credsStore":"../../bin/sh"}"#);
        assert!(matches!(
            cfg.credentials("x.io"),
            Err(ClientError::Helper { .. })
        ));
    }

    #[test]
    fn helper_protocol_get_store_erase() {
        // A real helper program on PATH speaking the protocol, backed by a file.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store.json");
        let script = dir.path().join("docker-credential-berthtest");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nset -e\ncase \"$1\" in\n  get) read -r url || true; if [ -f {s} ] && grep -q \"$url\" {s}; then cat {s}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  store) cat > {s} ;;\n  erase) read -r url || true; if [ -f {s} ]; then rm {s}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\nesac\n",
                s = store.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let path_var = std::ffi::OsString::from(format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        ));
        let p = Some(path_var.as_os_str());
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "s3cret".into(),
        };
        assert_eq!(
            helper_get(p, "berthtest", "reg.example").expect("get"),
            None
        );
        helper_store(p, "berthtest", "reg.example", &creds).expect("store");
        assert_eq!(
            helper_get(p, "berthtest", "reg.example").expect("get"),
            Some(creds)
        );
        assert!(helper_erase(p, "berthtest", "reg.example").expect("erase"));
        assert!(!helper_erase(p, "berthtest", "reg.example").expect("erase again"));
        let token = Credentials::IdentityToken("refresh-me".into());
        helper_store(p, "berthtest", "reg.example", &token).expect("store token");
        assert_eq!(
            helper_get(p, "berthtest", "reg.example").expect("get"),
            Some(token)
        );
        let missing = helper_get(p, "nosuchhelper", "reg.example");
        assert!(matches!(missing, Err(ClientError::Helper { .. })));
    }
}
