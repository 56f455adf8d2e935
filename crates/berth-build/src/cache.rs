//! The step cache. A filesystem step (RUN, COPY, ADD, WORKDIR) is keyed on its parent state's
//! key, the platform, and a canonical description of the step: the expanded instruction and
//! what it runs with (argv, environment, user, working directory, network), plus the content
//! digest of its inputs (context files after `.dockerignore`, or the key of the `--from`
//! stage). Config-only instructions (ENV, LABEL, CMD, …) never touch the chain, so changing a
//! LABEL does not re-run anything — a RUN's own environment is part of its description.
//!
//! A hit reuses the recorded layer and runs nothing. On a miss the engine compares the step's
//! description with what the same step (same Dockerfile, stage, instruction, platform) saw last
//! time, and says why: a changed file, a changed command, a changed parent.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_client::image::ImageSource;
use berth_oci::{Algorithm, Digest};
use serde::{Deserialize, Serialize};

use crate::layer::LayerBlob;
use crate::store::Store;

/// What a step is, for its key and for explaining misses. Facts are named values
/// (`command`, `env`, `user`, …); `files` maps each input file to its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFacts {
    pub facts: BTreeMap<String, String>,
    pub files: BTreeMap<String, String>,
}

impl StepFacts {
    /// Adds a fact.
    pub fn fact(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.facts.insert(name.to_owned(), value.into());
        self
    }

    /// The step's cache key given its parent's.
    pub fn key(&self, parent: &Digest, platform: &str, inputs: Option<&Digest>) -> Digest {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"berth-build-step-v1\0");
        h.update(parent.to_string().as_bytes());
        h.update(b"\0");
        h.update(platform.as_bytes());
        h.update(b"\0");
        for (k, v) in &self.facts {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        if let Some(d) = inputs {
            h.update(b"inputs=");
            h.update(d.to_string().as_bytes());
        }
        h.finish()
    }
}

/// A cached step result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The layer (None: the step changed nothing).
    pub layer: Option<LayerBlob>,
    /// When the step ran (RFC 3339), used as its history entry's `created`.
    pub created: String,
}

/// The media type of an exported cache's config blob: a [`CacheConfig`].
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.berth.build-cache.config.v1+json";

/// What an exported cache holds besides its layers: the step records, by key (hex). It travels
/// as the config of an OCI image manifest whose layers are the records' layer blobs, which every
/// OCI registry, ECR included, accepts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    pub records: BTreeMap<String, CacheRecord>,
    /// `RUN --mount=type=cache` contents exported by id (`cache-mounts=ID…`): each a gzipped
    /// tar among the manifest's layers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, MountBlob>,
}

/// A cache mount's tarball in an exported cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountBlob {
    pub digest: Digest,
    pub size: u64,
}

/// A cache imported with `--cache-from`: its records, and where their layer blobs are read
/// from when a step hits one of them (only then: a build pulls only the layers it uses).
#[derive(Clone)]
pub struct RemoteCache {
    /// The cache source as the user named it (for messages).
    pub name: String,
    pub records: BTreeMap<String, CacheRecord>,
    /// Cache mounts it carries (restored before the build when the store has none of that id).
    pub mounts: BTreeMap<String, MountBlob>,
    pub source: Arc<dyn ImageSource>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("name", &self.name)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

/// The local records of `keys` whose layers the store holds, for an export.
pub fn records_of(store: &Store, keys: &[Digest]) -> BTreeMap<String, CacheRecord> {
    keys.iter()
        .filter_map(|k| Some((k.hex().to_owned(), lookup(store, k)?)))
        .collect()
}

/// What a step saw last time it ran (for explanations).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepMemory {
    pub parent: String,
    pub key: String,
    pub facts: StepFacts,
}

/// Looks up a key. A record whose layer blob is gone counts as a miss.
pub fn lookup(store: &Store, key: &Digest) -> Option<CacheRecord> {
    let rec: CacheRecord = store.read_record("cache", key.hex())?;
    match &rec.layer {
        Some(l) if !store.has_blob(&l.digest) => None,
        _ => {
            crate::store::touch(
                &store
                    .root()
                    .join("cache")
                    .join(format!("{}.json", key.hex())),
            );
            Some(rec)
        }
    }
}

/// The name of a step's memory: one per Dockerfile, stage, instruction and platform.
pub fn memory_name(dockerfile: &str, stage: usize, instruction: usize, platform: &str) -> String {
    let d = Digest::sha256(format!("{dockerfile}\n{stage}\n{instruction}\n{platform}").as_bytes());
    d.hex()[..32].to_owned()
}

/// Why a step missed, comparing what it sees now with what it saw last time.
pub fn explain(
    previous: Option<&StepMemory>,
    parent: &Digest,
    facts: &StepFacts,
    key: &Digest,
) -> String {
    let Some(prev) = previous else {
        return "not built before".into();
    };
    if prev.key == key.to_string() {
        return "its cached result was removed from the store".into();
    }
    if prev.parent != parent.to_string() {
        return "an earlier step changed".into();
    }
    let mut reasons = Vec::new();
    for (k, v) in &facts.facts {
        match prev.facts.facts.get(k) {
            Some(old) if old == v => {}
            Some(_) => reasons.push(format!("{k} changed")),
            None => reasons.push(format!("{k} added")),
        }
    }
    for k in prev.facts.facts.keys() {
        if !facts.facts.contains_key(k) {
            reasons.push(format!("{k} removed"));
        }
    }
    let mut changed = Vec::new();
    for (f, d) in &facts.files {
        match prev.facts.files.get(f) {
            Some(old) if old == d => {}
            Some(_) => changed.push(format!("{f} changed")),
            None => changed.push(format!("{f} added")),
        }
    }
    for f in prev.facts.files.keys() {
        if !facts.files.contains_key(f) {
            changed.push(format!("{f} removed"));
        }
    }
    const SHOWN: usize = 3;
    if changed.len() > SHOWN {
        let more = changed.len() - SHOWN;
        changed.truncate(SHOWN);
        changed.push(format!("{more} more"));
    }
    reasons.extend(changed);
    if reasons.is_empty() {
        "its inputs changed".into()
    } else {
        reasons.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn explanations_name_what_changed() {
        let parent = Digest::sha256(b"p");
        let mut old = StepFacts::default();
        old.fact("instruction", "COPY . /src");
        old.files.insert("src/main.rs".into(), "sha256:1".into());
        old.files.insert("README".into(), "sha256:2".into());
        let old_key = old.key(&parent, "linux/amd64", Some(&Digest::sha256(b"inputs 1")));
        let mem = StepMemory {
            parent: parent.to_string(),
            key: old_key.to_string(),
            facts: old.clone(),
        };
        let mut new = old.clone();
        new.files.insert("src/main.rs".into(), "sha256:3".into());
        let key = new.key(&parent, "linux/amd64", Some(&Digest::sha256(b"inputs 2")));
        assert_ne!(key, old_key);
        assert_eq!(
            explain(Some(&mem), &parent, &new, &key),
            "src/main.rs changed"
        );
        assert_eq!(explain(None, &parent, &new, &key), "not built before");
        assert_eq!(
            explain(Some(&mem), &Digest::sha256(b"q"), &new, &key),
            "an earlier step changed"
        );
        let mut cmd = old.clone();
        cmd.fact("instruction", "COPY . /app");
        let k = cmd.key(&parent, "linux/amd64", None);
        assert_eq!(
            explain(Some(&mem), &parent, &cmd, &k),
            "instruction changed"
        );
    }

    #[test]
    fn keys_depend_on_platform_and_inputs() {
        let p = Digest::sha256(b"p");
        let f = StepFacts::default();
        assert_ne!(
            f.key(&p, "linux/amd64", None),
            f.key(&p, "linux/arm64", None)
        );
        assert_ne!(
            f.key(&p, "linux/amd64", None),
            f.key(&p, "linux/amd64", Some(&Digest::sha256(b"x")))
        );
    }
}
