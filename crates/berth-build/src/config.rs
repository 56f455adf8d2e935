//! The image config a build produces, kept as JSON rather than `oci-spec`'s `ImageConfiguration`:
//! Docker-format configs carry fields OCI's struct does not have (`Healthcheck`, `OnBuild`,
//! `Shell`, `ArgsEscaped`), which BuildKit writes and a base image may hold; typed
//! re-serialisation would drop them. Every field the Dockerfile sets is written with the
//! spelling Docker and BuildKit use.

use std::time::Duration;

use berth_oci::{Digest, Platform};
use serde_json::{Map, Value, json};

use crate::error::BuildError;

/// The history comment BuildKit writes (tools group entries by it).
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An image config being built.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    root: Map<String, Value>,
    /// Whether CMD came from the base image (ENTRYPOINT then resets it, as Docker does).
    cmd_inherited: bool,
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

impl ImageConfig {
    /// An empty config for `FROM scratch`.
    pub fn scratch(platform: &Platform) -> Self {
        let mut c = ImageConfig {
            root: Map::new(),
            cmd_inherited: false,
        };
        c.root
            .insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
        c.root.insert("config".into(), json!({}));
        c.set_platform(platform);
        c.set_env_defaults();
        c
    }

    /// A base image's config.
    pub fn from_bytes(bytes: &[u8], platform: &Platform) -> Result<Self, BuildError> {
        if berth_oci::json::too_deep(bytes, berth_oci::json::MAX_JSON_DEPTH) {
            return Err(BuildError::Corrupt {
                path: "config".into(),
                reason: "base image config nests too deeply".into(),
            });
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|e| BuildError::Corrupt {
            path: "config".into(),
            reason: format!("base image config: {e}"),
        })?;
        let Value::Object(root) = v else {
            return Err(BuildError::Corrupt {
                path: "config".into(),
                reason: "base image config is not a JSON object".into(),
            });
        };
        let mut c = ImageConfig {
            root,
            cmd_inherited: true,
        };
        // The base's own platform fields stay unless missing.
        if !c.root.contains_key("architecture") {
            c.set_platform(platform);
        }
        // BuildKit drops these container-run leftovers of classic builders.
        for k in ["container", "container_config", "docker_version"] {
            c.root.remove(k);
        }
        c.set_env_defaults();
        Ok(c)
    }

    fn set_platform(&mut self, p: &Platform) {
        self.root
            .insert("architecture".into(), json!(p.architecture));
        self.root.insert("os".into(), json!(p.os));
        match &p.variant {
            Some(v) => {
                self.root.insert("variant".into(), json!(v));
            }
            None => {
                self.root.remove("variant");
            }
        }
    }

    /// BuildKit gives every image a PATH when the base has none.
    fn set_env_defaults(&mut self) {
        if self.env().iter().all(|(k, _)| k != "PATH") {
            self.set_env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
    }

    fn config(&mut self) -> &mut Map<String, Value> {
        obj(self.root.entry("config").or_insert(Value::Null))
    }

    fn config_ref(&self) -> Option<&Map<String, Value>> {
        self.root.get("config").and_then(Value::as_object)
    }

    fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.config_ref()?.get(key)?.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    }

    /// The environment, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv, String::new()),
            })
            .collect()
    }

    /// Sets one variable (replacing it in place, or appending).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.strings("Env").unwrap_or_default();
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.config().insert("Env".into(), json!(env));
    }

    /// USER.
    pub fn user(&self) -> String {
        self.config_ref()
            .and_then(|c| c.get("User"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    }

    /// Sets USER.
    pub fn set_user(&mut self, user: &str) {
        self.config().insert("User".into(), json!(user));
    }

    /// WORKDIR (`/` when unset).
    pub fn workdir(&self) -> String {
        match self
            .config_ref()
            .and_then(|c| c.get("WorkingDir"))
            .and_then(Value::as_str)
        {
            Some(w) if !w.is_empty() => w.to_owned(),
            _ => "/".to_owned(),
        }
    }

    /// Sets WORKDIR.
    pub fn set_workdir(&mut self, dir: &str) {
        self.config().insert("WorkingDir".into(), json!(dir));
    }

    /// SHELL (`/bin/sh -c` when unset).
    pub fn shell(&self) -> Vec<String> {
        self.strings("Shell")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// Sets SHELL.
    pub fn set_shell(&mut self, shell: &[String]) {
        self.config().insert("Shell".into(), json!(shell));
    }

    /// Sets CMD.
    pub fn set_cmd(&mut self, cmd: &[String]) {
        self.config().insert("Cmd".into(), json!(cmd));
        self.cmd_inherited = false;
    }

    /// Sets ENTRYPOINT (resetting a CMD inherited from the base image).
    pub fn set_entrypoint(&mut self, ep: &[String]) {
        self.config().insert("Entrypoint".into(), json!(ep));
        if self.cmd_inherited {
            self.config().remove("Cmd");
            self.cmd_inherited = false;
        }
    }

    /// Adds labels.
    pub fn add_label(&mut self, key: &str, value: &str) {
        let labels = obj(self.config().entry("Labels").or_insert(Value::Null));
        labels.insert(key.to_owned(), json!(value));
    }

    /// Adds an exposed port (`80/tcp`).
    pub fn expose(&mut self, port: &str) {
        let ports = obj(self.config().entry("ExposedPorts").or_insert(Value::Null));
        ports.insert(port.to_owned(), json!({}));
    }

    /// Adds a volume.
    pub fn add_volume(&mut self, path: &str) {
        let vols = obj(self.config().entry("Volumes").or_insert(Value::Null));
        vols.insert(path.to_owned(), json!({}));
    }

    /// Sets STOPSIGNAL.
    pub fn set_stop_signal(&mut self, sig: &str) {
        self.config().insert("StopSignal".into(), json!(sig));
    }

    /// Adds an ONBUILD trigger.
    pub fn add_onbuild(&mut self, trigger: &str) {
        let cfg = self.config();
        let list = cfg.entry("OnBuild").or_insert(json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Value::Array(a) = list {
            a.push(json!(trigger));
        }
    }

    /// The base image's ONBUILD triggers (consumed: a child image does not inherit them).
    pub fn take_onbuild(&mut self) -> Vec<String> {
        let triggers = self.strings("OnBuild").unwrap_or_default();
        self.config().remove("OnBuild");
        triggers
    }

    /// Sets HEALTHCHECK (`None`: `HEALTHCHECK NONE`).
    pub fn set_healthcheck(
        &mut self,
        test: Option<Vec<String>>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    ) {
        let mut hc = Map::new();
        match test {
            None => {
                hc.insert("Test".into(), json!(["NONE"]));
            }
            Some(t) => {
                hc.insert("Test".into(), json!(t));
                for (k, d) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(d) = d {
                        hc.insert(
                            k.into(),
                            json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                        );
                    }
                }
                if let Some(r) = retries {
                    hc.insert("Retries".into(), json!(r));
                }
            }
        }
        self.config()
            .insert("Healthcheck".into(), Value::Object(hc));
    }

    /// MAINTAINER.
    pub fn set_author(&mut self, author: &str) {
        self.root.insert("author".into(), json!(author));
    }

    /// The layers' diff ids.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.root
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().and_then(|s| Digest::parse(s).ok()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends a layer and its history entry; `layer: None` records an empty-layer step.
    pub fn push_history(&mut self, created_by: &str, created: &str, layer: Option<&Digest>) {
        if let Some(d) = layer {
            let rootfs = obj(self.root.entry("rootfs").or_insert(Value::Null));
            rootfs.insert("type".into(), json!("layers"));
            let ids = rootfs.entry("diff_ids").or_insert(json!([]));
            if let Value::Array(a) = ids {
                a.push(json!(d.to_string()));
            }
        }
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        h.insert("created_by".into(), json!(created_by));
        h.insert("comment".into(), json!(HISTORY_COMMENT));
        if layer.is_none() {
            h.insert("empty_layer".into(), json!(true));
        }
        let hist = self.root.entry("history").or_insert(json!([]));
        if !hist.is_array() {
            *hist = json!([]);
        }
        if let Value::Array(a) = hist {
            a.push(Value::Object(h));
        }
    }

    /// The newest `created` of the history (what the image's own `created` becomes, so a
    /// rebuild from cache gives the same digest).
    pub fn newest_history(&self) -> Option<String> {
        self.root
            .get("history")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(|h| h.get("created").and_then(Value::as_str))
            .max()
            .map(str::to_owned)
    }

    /// The config's bytes, with `created` set.
    pub fn to_bytes(&self, created: Option<&str>) -> Vec<u8> {
        let mut root = self.root.clone();
        if let Some(c) = created {
            root.insert("created".into(), json!(c));
        }
        serde_json::to_vec(&Value::Object(root)).unwrap_or_default()
    }

    /// A field of `config` (for tests and inspection).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.config_ref()?.get(key)
    }
}

/// An RFC 3339 UTC timestamp (`2024-01-02T03:04:05Z`), nanoseconds when not whole.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = if dt.nanosecond() == 0 {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
    } else {
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        )
    };
    dt.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entrypoint_resets_an_inherited_cmd_only() {
        let p = Platform::parse("linux/amd64").unwrap();
        let mut c = ImageConfig::from_bytes(
            br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
            &p,
        )
        .unwrap();
        c.set_entrypoint(&["/app".into()]);
        assert!(c.get("Cmd").is_none());
        c.set_cmd(&["--help".into()]);
        c.set_entrypoint(&["/app2".into()]);
        assert_eq!(c.get("Cmd").unwrap(), &json!(["--help"]));
    }

    #[test]
    fn env_replaces_in_place_and_path_defaults() {
        let mut c = ImageConfig::scratch(&Platform::parse("linux/arm64").unwrap());
        c.set_env("A", "1");
        c.set_env("PATH", "/bin");
        assert_eq!(
            c.env(),
            vec![("PATH".into(), "/bin".into()), ("A".into(), "1".into())]
        );
        assert_eq!(c.workdir(), "/");
        assert_eq!(c.shell(), vec!["/bin/sh", "-c"]);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
