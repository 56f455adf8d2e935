//! `--cache-to` / `--cache-from`: the build's step cache exported to, and imported from, a
//! registry (`type=registry,ref=REF`) or an OCI layout directory (`type=local,dest=DIR` /
//! `src=DIR`), so ephemeral CI runners reuse each other's steps.
//!
//! An export is an OCI image manifest — `image-manifest=true`, which ECR and every OCI registry
//! accept — whose config is the step records ([`berth_build::cache::CacheConfig`]) and whose
//! layers are the records' layer blobs. An import reads only the manifest and that config; a
//! layer is pulled when a step is answered from it, so a build downloads only what it uses.

use std::sync::Arc;

use berth_build::cache::{CACHE_CONFIG_MEDIA_TYPE, CacheConfig, MountBlob, RemoteCache};
use berth_build::{BuildResult, Store, StoreImage};
use berth_client::image::{ImageSource, Placement, RawManifest, read_blob};
use berth_oci::Digest;
use futures::StreamExt as _;

use crate::endpoint::{Bare, Endpoint};
use crate::error::{OpsError, Result};

/// The tag a local cache is kept under in its layout.
const LOCAL_TAG: &str = "buildcache";
/// The largest cache config read.
const MAX_CONFIG: u64 = 64 << 20;

/// What to export: every stage's steps, or only those of the stages the image is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Min,
    Max,
}

/// One `--cache-to` / `--cache-from` spec, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// The endpoint: `REF`, or `oci:DIR:buildcache`.
    pub endpoint: String,
    /// How the user named it (for messages).
    pub name: String,
    pub mode: Mode,
    /// `cache-mounts=ID[,ID…]`: the `RUN --mount=type=cache` ids whose contents travel too.
    pub cache_mounts: Vec<String>,
}

/// Reads `type=registry,ref=REF[,mode=min|max][,image-manifest=true][,compression=…]` or
/// `type=local,dest=DIR|src=DIR[,mode=…]` (`dest` for `--cache-to`, `src` for `--cache-from`).
pub fn parse(spec: &str, export: bool) -> Result<CacheSpec> {
    let flag = if export { "--cache-to" } else { "--cache-from" };
    let mut kind = None;
    let mut reference = None;
    let mut dir = None;
    let mut mode = Mode::Min;
    let mut cache_mounts: Vec<String> = Vec::new();
    let mut last_key = "";
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        // `cache-mounts=a,b`: the ids after the first are bare words.
        let Some((k, v)) = part.split_once('=') else {
            if last_key == "cache-mounts" {
                cache_mounts.push(part.trim().to_owned());
                continue;
            }
            return Err(OpsError::usage(format!(
                "{flag} {spec:?}: expected KEY=VALUE pairs"
            )));
        };
        last_key = k.trim();
        match (k.trim(), v.trim()) {
            ("cache-mounts", ids) if export => {
                cache_mounts.extend(ids.split(';').filter(|i| !i.is_empty()).map(str::to_owned));
            }
            ("type", t) => kind = Some(t.to_owned()),
            ("ref", r) => reference = Some(r.to_owned()),
            ("dest", d) if export => dir = Some(d.to_owned()),
            ("src", d) if !export => dir = Some(d.to_owned()),
            ("mode", "min") => mode = Mode::Min,
            ("mode", "max") => mode = Mode::Max,
            ("mode", m) => {
                return Err(OpsError::usage(format!(
                    "{flag} {spec:?}: mode={m}: expected min or max"
                )));
            }
            // The export is always an image manifest (what ECR needs); its layers keep the
            // compression they were built with.
            ("image-manifest", "true") | ("compression" | "ignore-error" | "oci-mediatypes", _) => {
            }
            ("image-manifest", v) => {
                return Err(OpsError::usage(format!(
                    "{flag} {spec:?}: image-manifest={v}: berth always writes an OCI image manifest (true), which every registry accepts"
                )));
            }
            (k, _) => {
                return Err(OpsError::usage(format!(
                    "{flag} {spec:?}: unknown key {k:?}"
                )));
            }
        }
    }
    match (kind.as_deref(), reference, dir) {
        (Some("registry"), Some(r), None) => {
            crate::endpoint::parse_ref(&r)?;
            Ok(CacheSpec {
                endpoint: r.clone(),
                name: r,
                mode,
                cache_mounts,
            })
        }
        (Some("local"), None, Some(d)) => Ok(CacheSpec {
            endpoint: format!("oci:{d}:{LOCAL_TAG}"),
            name: d,
            mode,
            cache_mounts,
        }),
        (Some("registry"), ..) => Err(OpsError::usage(format!(
            "{flag} {spec:?}: type=registry needs ref=REF (and nothing else names it)"
        ))),
        (Some("local"), ..) => Err(OpsError::usage(format!(
            "{flag} {spec:?}: type=local needs {}=DIR",
            if export { "dest" } else { "src" }
        ))),
        (other, ..) => Err(OpsError::usage(format!(
            "{flag} {spec:?}: type={}: expected registry or local",
            other.unwrap_or("")
        ))),
    }
}

/// Reads a cache source: its records, and the source its layers will be pulled from. `None`
/// (with the reason) when it is missing or unreadable: the build goes on without it.
pub async fn load(
    spec: &CacheSpec,
    insecure: &[String],
) -> std::result::Result<RemoteCache, String> {
    let ep = Endpoint::parse(&spec.endpoint, Bare::Registry, false, insecure)
        .map_err(|e| e.to_string())?;
    let source: Arc<dyn ImageSource> = match ep {
        Endpoint::Layout(l) => Arc::new(l),
        Endpoint::Registry(r, _) => Arc::new(r),
        _ => return Err("not a registry or a layout".into()),
    };
    let root = source.root().await.map_err(|e| e.to_string())?;
    let manifest = root.parse().map_err(|e| e.to_string())?;
    let config_type = serde_json::from_slice::<serde_json::Value>(&root.bytes)
        .ok()
        .and_then(|v| v["config"]["mediaType"].as_str().map(str::to_owned));
    let config = manifest
        .references
        .first()
        .filter(|_| config_type.as_deref() == Some(CACHE_CONFIG_MEDIA_TYPE))
        .ok_or_else(|| "not a berth build cache (its config is not a step list)".to_owned())?;
    let bytes = read_blob(source.as_ref(), &config.digest, config.size, MAX_CONFIG)
        .await
        .map_err(|e| e.to_string())?;
    let config: CacheConfig = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(RemoteCache {
        name: spec.name.clone(),
        records: config.records,
        mounts: config.mounts,
        source,
    })
}

/// Exports the steps of a build (per `spec.mode`) with their layers. Returns the manifest's
/// digest and how many steps it holds.
pub async fn export(
    spec: &CacheSpec,
    store: &Arc<Store>,
    result: &BuildResult,
    insecure: &[String],
) -> Result<(Digest, usize)> {
    let keys: Vec<Digest> = result
        .images
        .iter()
        .flat_map(|i| &i.cache_keys)
        .filter(|(_, on_chain)| spec.mode == Mode::Max || *on_chain)
        .map(|(k, _)| k.clone())
        .collect();
    let records = berth_build::cache::records_of(store, &keys);
    let mut layers: Vec<berth_build::layer::LayerBlob> = Vec::new();
    for rec in records.values() {
        if let Some(l) = &rec.layer
            && !layers.iter().any(|x| x.digest == l.digest)
        {
            layers.push(l.clone());
        }
    }
    let ep = Endpoint::parse(&spec.endpoint, Bare::Registry, true, insecure)?;
    let sink = ep.sink()?;
    // Cache mounts: each a gzipped tar, hashed as it is written to a temporary file.
    let mut mounts = std::collections::BTreeMap::new();
    let mut mount_layers = Vec::new();
    for id in &spec.cache_mounts {
        let tmp = tempfile::NamedTempFile::new().map_err(|source| OpsError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut w = HashingWriter {
            inner: std::io::BufWriter::new(tmp.as_file()),
            hasher: berth_oci::Algorithm::Sha256.hasher(),
            size: 0,
        };
        if !berth_build::write_cache_mount(store, id, &mut w)? {
            continue;
        }
        std::io::Write::flush(&mut w.inner).map_err(|source| OpsError::Io {
            path: tmp.path().to_path_buf(),
            source,
        })?;
        let (digest, size) = (w.hasher.finish(), w.size);
        if !sink.has_blob(&digest, size).await? {
            let file = tokio::fs::File::open(tmp.path())
                .await
                .map_err(|source| OpsError::Io {
                    path: tmp.path().to_path_buf(),
                    source,
                })?;
            let path = tmp.path().to_path_buf();
            let stream = tokio_util::io::ReaderStream::new(file)
                .map(move |r| {
                    r.map_err(|source| berth_client::ClientError::File {
                        path: path.clone(),
                        source,
                    })
                })
                .boxed();
            sink.put_blob(&digest, size, stream).await?;
        }
        mount_layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest.to_string(),
            "size": size,
            "annotations": {"dev.berth.cache-mount": id},
        }));
        mounts.insert(id.clone(), MountBlob { digest, size });
    }
    let steps = records.len();
    let config = bytes::Bytes::from(
        serde_json::to_vec(&CacheConfig { records, mounts })
            .map_err(|e| OpsError::usage(e.to_string()))?,
    );
    let config_digest = Digest::sha256(&config);
    let config_size = config.len() as u64;
    let src = StoreImage::new(store.clone(), None);
    for l in &layers {
        if !sink.has_blob(&l.digest, l.size).await? {
            let stream = src.blob(&l.digest, l.size).await?;
            sink.put_blob(&l.digest, l.size, stream).await?;
        }
    }
    if !sink.has_blob(&config_digest, config_size).await? {
        let data = futures::stream::once(async move { Ok(config) }).boxed();
        sink.put_blob(&config_digest, config_size, data).await?;
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": berth_oci::media::OCI_MANIFEST,
        "config": {
            "mediaType": CACHE_CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config_size,
        },
        "layers": layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
            .chain(mount_layers)
            .collect::<Vec<_>>(),
    });
    let bytes = bytes::Bytes::from(
        serde_json::to_vec(&manifest).map_err(|e| OpsError::usage(e.to_string()))?,
    );
    let raw = RawManifest {
        digest: Digest::sha256(&bytes),
        media_type: berth_oci::media::OCI_MANIFEST.to_owned(),
        bytes,
    };
    sink.put_manifest(&raw, Placement::Root { tag: None })
        .await
        .map_err(|e| {
            OpsError::from(e).context(format!("exporting the build cache to {}", spec.name))
        })?;
    sink.finish().await?;
    Ok((raw.digest, steps))
}

/// Restores the cache mounts a source carries that the store has none of; what could not be
/// restored is returned as warnings. Blocking: `rt` streams the blobs.
pub fn restore_mounts(
    store: &Store,
    cache: &RemoteCache,
    rt: &tokio::runtime::Handle,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (id, m) in &cache.mounts {
        let restored = rt
            .block_on(cache.source.blob(&m.digest, m.size))
            .map_err(|e| e.to_string())
            .and_then(|stream| {
                let reader = tokio_util::io::SyncIoBridge::new_with_handle(
                    tokio_util::io::StreamReader::new(
                        stream.map(|r| r.map_err(std::io::Error::other)),
                    ),
                    rt.clone(),
                );
                berth_build::restore_cache_mount(store, id, reader).map_err(|e| e.to_string())
            });
        if let Err(e) = restored {
            warnings.push(format!(
                "cache mount {id} from {} not restored: {e}",
                cache.name
            ));
        }
    }
    warnings
}

/// A writer that hashes and counts what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: berth_oci::Hasher,
    size: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_buildx_writes_them() {
        let s = parse(
            "type=registry,ref=r.example/cache/app:buildcache,mode=max,image-manifest=true",
            true,
        )
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.mode),
            ("r.example/cache/app:buildcache", Mode::Max)
        );
        let m = parse("type=registry,ref=r/x,cache-mounts=apt,pip,mode=max", true).unwrap();
        assert_eq!(
            (m.cache_mounts.clone(), m.mode),
            (vec!["apt".to_owned(), "pip".to_owned()], Mode::Max)
        );
        let l = parse("type=local,src=/tmp/c", false).unwrap();
        assert_eq!(
            (l.endpoint.as_str(), l.mode),
            ("oci:/tmp/c:buildcache", Mode::Min)
        );
        for bad in [
            "type=registry",
            "type=local,src=/x",
            "type=gha",
            "type=registry,ref=r/x,mode=all",
            "type=registry,ref=r/x,image-manifest=false",
            "type=registry,ref=r/x,colour=blue",
        ] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
    }
}
