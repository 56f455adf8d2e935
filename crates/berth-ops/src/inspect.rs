//! Reading an image without copying it: its platforms, digests, sizes, layers and config.

use berth_client::image::{ImageSource, read_blob};
use berth_oci::{ManifestKind, Platform, RefKind};
use schemars::JsonSchema;
use serde::Serialize;

use crate::endpoint::{Bare, Endpoint};
use crate::error::{OpsError, Result, ResultExt};

/// The largest image config read.
const MAX_CONFIG: u64 = 16 * 1024 * 1024;

/// One platform of an index.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformManifest {
    /// `linux/arm64`, when the index says.
    pub platform: Option<String>,
    /// The platform manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Manifest + config + layers, in bytes.
    pub size: u64,
}

/// A layer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Layer {
    /// Its digest.
    pub digest: String,
    /// Its size, compressed.
    pub size: u64,
}

/// What `inspect` shows of an image.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// The image as named.
    pub name: String,
    /// The root manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// An index: the manifest's size. An image: manifest + config + layers.
    pub size: u64,
    /// An index's platforms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<PlatformManifest>>,
    /// An image's platform (`linux/amd64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// An image's creation time, as its config says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// An image's run configuration (the config's `config` object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// An image's layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Layer>>,
}

/// Reads an image (any transport) and describes it.
pub async fn inspect(image: &str, insecure: &[String]) -> Result<ImageInfo> {
    let ep = Endpoint::parse(image, Bare::Registry, false, insecure)?;
    let src = ep.source()?;
    let root = src.root().await.context(|| format!("reading {image}"))?;
    let parsed = root.parse()?;
    let mut info = ImageInfo {
        name: image.to_owned(),
        digest: root.digest.to_string(),
        media_type: root.media_type.clone(),
        size: root.bytes.len() as u64,
        manifests: None,
        platform: None,
        created: None,
        config: None,
        layers: None,
    };
    if parsed.kind == ManifestKind::Index {
        let mut platforms = Vec::new();
        for c in parsed
            .references
            .iter()
            .filter(|r| r.kind == RefKind::Manifest)
        {
            let m = src.manifest(&c.digest).await?;
            let total: u64 = m.parse()?.references.iter().map(|r| r.size).sum::<u64>() + c.size;
            platforms.push(PlatformManifest {
                platform: c.platform.as_ref().map(ToString::to_string),
                digest: c.digest.to_string(),
                media_type: m.media_type,
                size: total,
            });
        }
        info.manifests = Some(platforms);
        return Ok(info);
    }
    let cfg = parsed
        .references
        .first()
        .ok_or_else(|| OpsError::usage(format!("{image}: the manifest has no config")))?;
    let bytes = read_blob(src, &cfg.digest, cfg.size, MAX_CONFIG).await?;
    let config: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    info.platform = Some(format!(
        "{}/{}{}",
        config["os"].as_str().unwrap_or("?"),
        config["architecture"].as_str().unwrap_or("?"),
        config["variant"]
            .as_str()
            .map(|v| format!("/{v}"))
            .unwrap_or_default()
    ));
    info.created = config["created"].as_str().map(str::to_owned);
    info.config = Some(config["config"].clone());
    info.size += parsed.references.iter().map(|r| r.size).sum::<u64>();
    info.layers = Some(
        parsed.references[1..]
            .iter()
            .map(|l| Layer {
                digest: l.digest.to_string(),
                size: l.size,
            })
            .collect(),
    );
    Ok(info)
}

/// The root manifest exactly as stored.
pub async fn raw_manifest(image: &str, insecure: &[String]) -> Result<Vec<u8>> {
    let ep = Endpoint::parse(image, Bare::Registry, false, insecure)?;
    let root = ep
        .source()?
        .root()
        .await
        .context(|| format!("reading {image}"))?;
    Ok(root.bytes.to_vec())
}

/// The image config blob of one platform (`platform`, default the host's, for an index).
pub async fn image_config(
    image: &str,
    platform: Option<&Platform>,
    insecure: &[String],
) -> Result<Vec<u8>> {
    let ep = Endpoint::parse(image, Bare::Registry, false, insecure)?;
    let src: &dyn ImageSource = ep.source()?;
    let root = src.root().await.context(|| format!("reading {image}"))?;
    let parsed = root.parse()?;
    let manifest = if parsed.kind == ManifestKind::Index {
        let want = platform.cloned().unwrap_or_else(Platform::host);
        let child = parsed
            .references
            .iter()
            .find(|c| c.platform.as_ref().is_some_and(|p| want.matches(p)))
            .ok_or_else(|| OpsError::usage(format!("{image} has no {want} image")))?;
        src.manifest(&child.digest).await?
    } else {
        root
    };
    let cfg = manifest
        .parse()?
        .references
        .into_iter()
        .next()
        .ok_or_else(|| OpsError::usage(format!("{image}: the manifest has no config")))?;
    Ok(read_blob(src, &cfg.digest, cfg.size, MAX_CONFIG)
        .await?
        .to_vec())
}
