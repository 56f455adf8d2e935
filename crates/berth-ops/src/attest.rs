//! Documents about an image pushed beside it as OCI 1.1 referrers (`subject` = the platform
//! manifest they describe): scan reports and SBOMs, and a build's SLSA provenance. Nothing is
//! added to the image index, so tools that walk indexes see only platforms, and `berth copy`
//! carries the documents with the image.

use berth_oci::Digest;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::endpoint::{Bare, Endpoint};
use crate::error::{OpsError, Result};

/// The artifact type of a CycloneDX SBOM.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
/// The artifact type of an in-toto statement (the SLSA provenance).
pub const IN_TOTO_ARTIFACT_TYPE: &str = "application/vnd.in-toto+json";
/// SLSA provenance v1's predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// The manifest a document describes.
#[derive(Debug, Clone)]
pub struct Subject {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// One document to push.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub subject: Subject,
    pub artifact_type: &'static str,
    pub document: Value,
    /// Annotations of the document's layer (`in-toto.io/predicate-type`).
    pub layer_annotations: Option<Value>,
}

/// Pushes each document into the repository `target` names (`REGISTRY/REPO[:TAG]`) as a
/// referrer of its subject. Returns the referrers' digests.
pub async fn attach(target: &str, insecure: &[String], docs: &[Attachment]) -> Result<Vec<String>> {
    let ep = Endpoint::parse(target, Bare::Registry, true, insecure)?;
    let sink = ep.sink()?;
    let put = |bytes: bytes::Bytes, digest: Digest| async move {
        let size = bytes.len() as u64;
        if !sink.has_blob(&digest, size).await? {
            let data = futures::stream::once(async move { Ok(bytes) }).boxed();
            sink.put_blob(&digest, size, data).await?;
        }
        Ok::<_, OpsError>(())
    };
    let empty = bytes::Bytes::from_static(b"{}");
    let empty_digest = Digest::sha256(&empty);
    put(empty.clone(), empty_digest.clone()).await?;
    let mut pushed = Vec::new();
    for a in docs {
        let doc = bytes::Bytes::from(
            serde_json::to_vec(&a.document).map_err(|e| OpsError::usage(e.to_string()))?,
        );
        let doc_digest = Digest::sha256(&doc);
        put(doc.clone(), doc_digest.clone()).await?;
        let mut layer = json!({
            "mediaType": a.artifact_type,
            "digest": doc_digest.to_string(),
            "size": doc.len(),
        });
        if let Some(ann) = &a.layer_annotations {
            layer["annotations"] = ann.clone();
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": berth_oci::media::OCI_MANIFEST,
            "artifactType": a.artifact_type,
            "config": {
                "mediaType": berth_oci::media::OCI_EMPTY,
                "digest": empty_digest.to_string(),
                "size": empty.len(),
                "data": "e30=",
            },
            "layers": [layer],
            "subject": {
                "mediaType": a.subject.media_type,
                "digest": a.subject.digest,
                "size": a.subject.size,
            },
            "annotations": {"org.opencontainers.image.created": crate::scan_format::created()},
        });
        let bytes = bytes::Bytes::from(
            serde_json::to_vec(&manifest).map_err(|e| OpsError::usage(e.to_string()))?,
        );
        let raw = berth_client::image::RawManifest {
            digest: Digest::sha256(&bytes),
            media_type: berth_oci::media::OCI_MANIFEST.to_owned(),
            bytes,
        };
        sink.put_manifest(&raw, berth_client::image::Placement::Referrer)
            .await
            .map_err(|e| OpsError::from(e).context(format!("attaching to {}", a.subject.digest)))?;
        pushed.push(raw.digest.to_string());
    }
    sink.finish().await?;
    Ok(pushed)
}

/// How much the provenance says (`--provenance=mode=min|max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProvenanceMode {
    /// The builder, the Dockerfile's digest, the target and platform, the resolved images
    /// and the source commit.
    Min,
    /// Also the build arguments (never secrets: those are not build arguments) and labels.
    Max,
}

impl std::str::FromStr for ProvenanceMode {
    type Err = String;
    /// `true`, `mode=min`, `min`, `mode=max`, `max`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().trim_start_matches("mode=") {
            "min" | "true" | "1" => Ok(ProvenanceMode::Min),
            "max" => Ok(ProvenanceMode::Max),
            other => Err(format!(
                "provenance mode {other:?}: use mode=min or mode=max"
            )),
        }
    }
}

/// What the provenance of one platform image records.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildFacts {
    /// Where the image was pushed (`REGISTRY/REPO:TAG`) and its manifest digest.
    pub name: String,
    pub digest: String,
    pub platform: String,
    /// The Dockerfile's sha256 (hex) and its path relative to the context.
    pub dockerfile_sha256: String,
    pub dockerfile: String,
    pub target: Option<String>,
    /// `KEY=VALUE` as given (max mode only).
    pub build_args: Vec<String>,
    pub labels: Vec<String>,
    /// Every image read, as written, and the platform manifest it resolved to.
    pub bases: Vec<(String, String)>,
    /// The context's git remote (or path) and commit, when it is a work tree.
    pub source: Option<(String, String)>,
    /// Build start and end (RFC 3339).
    pub started: String,
    pub finished: String,
}

/// The SLSA provenance v1 of one platform image, as an in-toto v1 statement.
pub fn provenance(f: &BuildFacts, mode: ProvenanceMode) -> Value {
    let hex = f
        .digest
        .split_once(':')
        .map_or(f.digest.as_str(), |(_, h)| h);
    let mut external = json!({
        "dockerfile": f.dockerfile,
        "platform": f.platform,
    });
    if let Some(t) = &f.target {
        external["target"] = json!(t);
    }
    if mode == ProvenanceMode::Max {
        let pairs = |list: &[String]| -> serde_json::Map<String, Value> {
            list.iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), json!(v)),
                    None => (kv.clone(), Value::Null),
                })
                .collect()
        };
        external["buildArgs"] = Value::Object(pairs(&f.build_args));
        external["labels"] = Value::Object(pairs(&f.labels));
    }
    let mut deps = vec![json!({
        "uri": format!("file:{}", f.dockerfile),
        "digest": {"sha256": f.dockerfile_sha256},
    })];
    for (reference, digest) in &f.bases {
        let (alg, h) = digest.split_once(':').unwrap_or(("sha256", digest));
        deps.push(json!({
            "uri": format!("pkg:docker/{}", reference),
            "digest": {alg: h},
        }));
    }
    if let Some((repo, commit)) = &f.source {
        deps.push(json!({"uri": repo, "digest": {"gitCommit": commit}}));
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f.name, "digest": {"sha256": hex}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": format!("{}/build/v1", env!("CARGO_PKG_REPOSITORY")),
                "externalParameters": external,
                "internalParameters": {},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": format!(
                        "{}@v{}",
                        env!("CARGO_PKG_REPOSITORY"),
                        env!("CARGO_PKG_VERSION")
                    ),
                },
                "metadata": {
                    "invocationId": format!("{}-{}", f.digest, f.platform),
                    "startedOn": f.started,
                    "finishedOn": f.finished,
                },
            },
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn provenance_min_leaves_arguments_out_and_max_keeps_them() {
        let f = BuildFacts {
            name: "r.example/app:v1".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            platform: "linux/amd64".into(),
            dockerfile_sha256: "b".repeat(64),
            dockerfile: "Dockerfile".into(),
            build_args: vec!["VERSION=1.2".into()],
            bases: vec![("debian:12".into(), format!("sha256:{}", "c".repeat(64)))],
            source: Some(("https://git.example/app".into(), "d".repeat(40))),
            ..BuildFacts::default()
        };
        let min = provenance(&f, ProvenanceMode::Min);
        assert_eq!(min["predicateType"], SLSA_PROVENANCE_V1);
        assert_eq!(min["subject"][0]["digest"]["sha256"], "a".repeat(64));
        let ext = &min["predicate"]["buildDefinition"]["externalParameters"];
        assert!(ext.get("buildArgs").is_none());
        let deps = &min["predicate"]["buildDefinition"]["resolvedDependencies"];
        assert_eq!(deps[1]["uri"], "pkg:docker/debian:12");
        assert_eq!(deps[2]["digest"]["gitCommit"], "d".repeat(40));
        let max = provenance(&f, ProvenanceMode::Max);
        assert_eq!(
            max["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"]["VERSION"],
            "1.2"
        );
        assert_eq!(
            "mode=max".parse::<ProvenanceMode>(),
            Ok(ProvenanceMode::Max)
        );
        assert_eq!("true".parse::<ProvenanceMode>(), Ok(ProvenanceMode::Min));
        assert!("mode=all".parse::<ProvenanceMode>().is_err());
    }
}
