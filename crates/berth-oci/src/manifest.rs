//! Manifest validation: what a manifest is and what it references.
//!
//! The caller keeps the raw bytes (they are what the digest covers and what is served back);
//! [`Manifest`] is the validated, parsed view of them.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::digest::{Digest, DigestError};
use crate::media;
use crate::platform::Platform;

/// Why bytes are not an acceptable manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    /// The `Content-Type` and the manifest's own `mediaType` disagree.
    #[error("Content-Type {header:?} does not match the manifest's mediaType {field:?}")]
    MediaTypeMismatch {
        /// From the request.
        header: String,
        /// From the manifest body.
        field: String,
    },
    /// A media type berth does not store as a manifest.
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    /// A descriptor carries a digest berth cannot verify.
    #[error("descriptor digest: {0}")]
    Digest(#[from] DigestError),
}

/// Image manifest or index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestKind {
    /// An image manifest (config + layers), OCI or Docker schema 2; artifacts included.
    Image,
    /// An index / manifest list of child manifests.
    Index,
}

/// What a reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefKind {
    /// A blob (config or layer) that must be present in the repository.
    Blob,
    /// A child manifest (of an index) that must be present in the repository.
    Manifest,
}

impl RefKind {
    /// Stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Blob => "blob",
            RefKind::Manifest => "manifest",
        }
    }
}

/// One required reference of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The content it points at.
    pub digest: Digest,
    /// Blob or child manifest.
    pub kind: RefKind,
    /// The descriptor's declared size.
    pub size: u64,
    /// The platform an index entry declares.
    pub platform: Option<Platform>,
}

/// The validated view of a manifest's bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Image manifest or index.
    pub kind: ManifestKind,
    /// The media type it is stored and served with.
    pub media_type: String,
    /// `artifactType`, else the config's media type (what referrers report).
    pub artifact_type: Option<String>,
    /// Content that must be present in the repository for the manifest to be accepted.
    pub references: Vec<Reference>,
    /// The `subject` (OCI 1.1 referrers); it need not exist.
    pub subject: Option<Digest>,
    /// Top-level annotations.
    pub annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<IgnoredAny>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

fn convert(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
    Digest::parse(d.as_ref())
}

impl Manifest {
    /// Validates `bytes` as a manifest sent with `content_type` (the request's `Content-Type`,
    /// if any).
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, ManifestError> {
        if crate::json::too_deep(bytes, crate::json::MAX_JSON_DEPTH) {
            return Err(ManifestError::Invalid(format!(
                "JSON nested deeper than {} levels",
                crate::json::MAX_JSON_DEPTH
            )));
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        let header = content_type.map(media::essence).filter(|h| {
            !h.is_empty() && h != "application/json" && h != "application/octet-stream"
        });
        if let (Some(h), Some(f)) = (&header, &probe.media_type)
            && h != f
        {
            return Err(ManifestError::MediaTypeMismatch {
                header: h.clone(),
                field: f.clone(),
            });
        }
        let media_type = match header.or(probe.media_type) {
            Some(t) => t,
            None if probe.manifests.is_some() => media::OCI_INDEX.to_owned(),
            None if probe.config.is_some() => media::OCI_MANIFEST.to_owned(),
            None if probe.fs_layers.is_some() => media::DOCKER_SCHEMA1.to_owned(),
            None => {
                return Err(ManifestError::Invalid(
                    "no mediaType, and neither `manifests` nor `config` present".into(),
                ));
            }
        };
        if probe.schema_version.is_none() {
            return Err(ManifestError::Invalid("schemaVersion is missing".into()));
        }
        match media_type.as_str() {
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => Self::image(media_type, bytes),
            media::OCI_INDEX | media::DOCKER_MANIFEST_LIST => Self::index(media_type, bytes),
            _ => Err(ManifestError::UnsupportedMediaType(media_type)),
        }
    }

    fn image(media_type: String, bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        schema_v2(m.schema_version())?;
        let mut references = Vec::with_capacity(m.layers().len() + 1);
        references.push(blob_ref(m.config())?);
        for layer in m.layers() {
            let external = layer.urls().as_ref().is_some_and(|u| !u.is_empty())
                && media::is_non_distributable(layer.media_type().as_ref());
            if !external {
                references.push(blob_ref(layer)?);
            }
        }
        // An empty artifactType counts as absent: fall back to the config's media type.
        let artifact_type = m
            .artifact_type()
            .as_ref()
            .map(|t| t.to_string())
            .filter(|t| !t.is_empty())
            .or_else(|| Some(m.config().media_type().to_string()));
        Ok(Manifest {
            kind: ManifestKind::Image,
            media_type,
            artifact_type,
            references,
            subject: m
                .subject()
                .as_ref()
                .map(|s| convert(s.digest()))
                .transpose()?,
            annotations: m.annotations().clone().unwrap_or_default(),
        })
    }

    fn index(media_type: String, bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: ImageIndex =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        schema_v2(m.schema_version())?;
        let references = m
            .manifests()
            .iter()
            .map(|d| {
                Ok(Reference {
                    digest: convert(d.digest())?,
                    kind: RefKind::Manifest,
                    size: d.size(),
                    platform: d.platform().as_ref().map(|p| {
                        Platform::new(
                            &p.os().to_string(),
                            &p.architecture().to_string(),
                            p.variant().as_deref(),
                        )
                    }),
                })
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        Ok(Manifest {
            kind: ManifestKind::Index,
            media_type,
            artifact_type: m.artifact_type().as_ref().map(|t| t.to_string()),
            references,
            subject: m
                .subject()
                .as_ref()
                .map(|s| convert(s.digest()))
                .transpose()?,
            annotations: m.annotations().clone().unwrap_or_default(),
        })
    }
}

fn schema_v2(version: u32) -> Result<(), ManifestError> {
    if version == 2 {
        Ok(())
    } else {
        Err(ManifestError::Invalid(format!(
            "schemaVersion is {version}, expected 2"
        )))
    }
}

fn blob_ref(d: &Descriptor) -> Result<Reference, ManifestError> {
    Ok(Reference {
        digest: convert(d.digest())?,
        kind: RefKind::Blob,
        size: d.size(),
        platform: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    const L1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{L1}","size":0}}]{extra}}}"#,
            media::OCI_MANIFEST
        )
    }

    #[test]
    fn image_manifest_refs() {
        let m = Manifest::parse(Some(media::OCI_MANIFEST), image("").as_bytes()).expect("valid");
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.references.len(), 2);
        assert_eq!(m.artifact_type.as_deref(), Some(media::OCI_CONFIG));
        assert!(m.subject.is_none());
        let with_subject = image(&format!(
            r#","subject":{{"mediaType":"{}","digest":"{L1}","size":1}},"artifactType":"application/x.sig""#,
            media::OCI_MANIFEST
        ));
        let m = Manifest::parse(None, with_subject.as_bytes()).expect("valid");
        assert_eq!(m.subject.map(|d| d.to_string()).as_deref(), Some(L1));
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sig"));
    }

    #[test]
    fn rejects() {
        assert!(Manifest::parse(None, b"{").is_err());
        assert!(Manifest::parse(None, b"[]").is_err());
        assert!(matches!(
            Manifest::parse(Some(media::OCI_INDEX), image("").as_bytes()),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let bad_digest = image("").replace(CFG, "sha256:../../etc");
        assert!(Manifest::parse(None, bad_digest.as_bytes()).is_err());
        assert!(matches!(
            Manifest::parse(Some("application/x-unknown"), br#"{"schemaVersion":2}"#),
            Err(ManifestError::MediaTypeMismatch { .. } | ManifestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn index_refs() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{L1}","size":7,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST
        );
        let m = Manifest::parse(Some(media::OCI_INDEX), idx.as_bytes()).expect("valid");
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.references[0].kind, RefKind::Manifest);
        assert_eq!(m.references[0].size, 7);
    }
}
