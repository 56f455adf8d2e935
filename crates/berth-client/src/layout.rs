//! OCI image layouts (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) as a source and a sink —
//! a directory, or (as a source) a layout inside a tar archive read in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::{Digest, Manifest};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::ClientError;
use crate::archive::TarIndex;
use crate::image::{ByteStream, ImageSink, ImageSource, Placement, RawManifest, verify};

/// The annotation naming an image in a layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Read size when streaming blobs out of a layout.
const READ_CHUNK: usize = 1024 * 1024;

/// An OCI image layout, optionally with the tag (ref name) of one image in it.
#[derive(Debug)]
pub struct OciLayout {
    /// The directory (or, for a layout in a tar, the archive).
    dir: PathBuf,
    files: Files,
    tag: Option<String>,
    /// The root manifest to record in `index.json` on [`ImageSink::finish`].
    pending_root: Mutex<Option<(RawManifest, Option<String>)>>,
    /// Referrers to record in `index.json` on [`ImageSink::finish`].
    pending_referrers: Mutex<Vec<RawManifest>>,
}

/// Where a layout's files are.
#[derive(Debug)]
enum Files {
    Dir,
    Tar(Arc<TarIndex>),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::File {
        path: path.to_path_buf(),
        source,
    }
}

impl OciLayout {
    /// A layout at `dir` (`tag` picks the image whose ref name it is).
    pub fn new(dir: impl Into<PathBuf>, tag: Option<&str>) -> Self {
        OciLayout {
            dir: dir.into(),
            files: Files::Dir,
            tag: tag.map(str::to_owned),
            pending_root: Mutex::new(None),
            pending_referrers: Mutex::new(Vec::new()),
        }
    }

    /// A layout inside an already indexed tar archive (read in place, never extracted).
    pub(crate) fn in_tar(index: Arc<TarIndex>, tag: Option<&str>) -> Self {
        OciLayout {
            dir: index.path().to_path_buf(),
            files: Files::Tar(index),
            tag: tag.map(str::to_owned),
            pending_root: Mutex::new(None),
            pending_referrers: Mutex::new(Vec::new()),
        }
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root manifest put so far (recorded in `index.json` at [`ImageSink::finish`]).
    pub(crate) fn pending_root(&self) -> Option<RawManifest> {
        self.pending_root
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(m, _)| m.clone())
    }

    fn blob_name(d: &Digest) -> String {
        format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join(Self::blob_name(d))
    }

    /// A small file's bytes (index.json, manifests), or `None` if it is not there.
    async fn read_small(&self, name: &str) -> Result<Option<Bytes>, ClientError> {
        match &self.files {
            Files::Tar(t) => t.read(name).await,
            Files::Dir => {
                let path = self.dir.join(name);
                match tokio::fs::read(&path).await {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(&path)(e)),
                }
            }
        }
    }

    /// Fails unless the layout is a directory (archives are written through a staging
    /// directory, see [`crate::archive`]).
    fn writable(&self) -> Result<(), ClientError> {
        match self.files {
            Files::Dir => Ok(()),
            Files::Tar(_) => Err(ClientError::NotFound(format!(
                "{}: a layout inside an archive is read-only",
                self.dir.display()
            ))),
        }
    }

    async fn read_index(&self) -> Result<Option<Value>, ClientError> {
        match self.read_small("index.json").await? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                ClientError::Manifest(format!("{}: index.json: {e}", self.dir.display()))
            }),
            None => Ok(None),
        }
    }

    /// The descriptors `index.json` lists.
    pub(crate) async fn index_entries(&self) -> Result<Vec<Value>, ClientError> {
        Ok(self
            .read_index()
            .await?
            .and_then(|i| i["manifests"].as_array().cloned())
            .unwrap_or_default())
    }

    async fn read_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<RawManifest, ClientError> {
        let bytes = self
            .read_small(&Self::blob_name(digest))
            .await?
            .ok_or_else(|| {
                ClientError::NotFound(format!("manifest {digest} in {}", self.dir.display()))
            })?;
        if bytes.len() > berth_oci::MAX_MANIFEST_BYTES {
            return Err(ClientError::Manifest(format!(
                "{digest}: {} bytes is over the 4 MiB manifest limit",
                bytes.len()
            )));
        }
        let media_type = match media_type {
            Some(t) => t.to_owned(),
            None => {
                Manifest::parse(None, &bytes)
                    .map_err(|e| ClientError::Manifest(e.to_string()))?
                    .media_type
            }
        };
        RawManifest::verified(bytes, &media_type, digest)
    }

    /// Writes `bytes` at the blob path through a temporary file, fsync and rename.
    async fn write_blob_bytes(
        &self,
        digest: &Digest,
        mut data: ByteStream,
    ) -> Result<(), ClientError> {
        let dest = self.blob_path(digest);
        let dir = dest.parent().unwrap_or(&self.dir).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err(&dir))?;
        let tmp = dir.join(format!(".{}.{}.partial", digest.hex(), std::process::id()));
        // Removes the partial file however this ends — an error, or the future being dropped
        // because a sibling transfer failed.
        let guard = RemoveOnDrop::new(tmp.clone());
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io_err(&tmp))?;
        while let Some(chunk) = data.next().await {
            f.write_all(&chunk?).await.map_err(io_err(&tmp))?;
        }
        f.sync_all().await.map_err(io_err(&tmp))?;
        drop(f);
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(io_err(&dest))?;
        guard.disarm();
        crate::durable::sync_parent_async(&dest)
            .await
            .map_err(io_err(&dest))
    }
}

#[async_trait]
impl ImageSource for OciLayout {
    async fn root(&self) -> Result<RawManifest, ClientError> {
        let index = self.read_index().await?.ok_or_else(|| {
            ClientError::NotFound(format!(
                "{} has no index.json: not an OCI layout",
                self.dir.display()
            ))
        })?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = match &self.tag {
            Some(tag) => manifests
                .iter()
                .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag)),
            None if manifests.len() == 1 => manifests.first(),
            None => None,
        };
        let Some(desc) = chosen else {
            return Err(ClientError::NotFound(match &self.tag {
                Some(t) => format!("no image tagged {t:?} in {}", self.dir.display()),
                None => format!(
                    "{} holds {} images: name one with :TAG",
                    self.dir.display(),
                    manifests.len()
                ),
            }));
        };
        let digest = desc["digest"]
            .as_str()
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| {
                ClientError::Manifest("index.json entry without a valid digest".into())
            })?;
        self.read_manifest(&digest, desc["mediaType"].as_str())
            .await
    }

    async fn manifest(&self, digest: &Digest) -> Result<RawManifest, ClientError> {
        self.read_manifest(digest, None).await
    }

    async fn blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, ClientError> {
        if let Files::Tar(t) = &self.files {
            let stream = t.stream(&Self::blob_name(digest)).await?.ok_or_else(|| {
                ClientError::NotFound(format!("blob {digest} in {}", self.dir.display()))
            })?;
            return Ok(verify(stream, digest, size));
        }
        let path = self.blob_path(digest);
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ClientError::NotFound(format!("blob {digest} in {}", self.dir.display()))
            } else {
                io_err(&path)(e)
            }
        })?;
        let stream = file_stream(file, path);
        Ok(verify(stream, digest, size))
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Digest>, ClientError> {
        // Layouts keep referrers as untagged `index.json` entries whose manifest names a subject.
        let mut found = Vec::new();
        for entry in self.index_entries().await? {
            let Some(d) = entry["digest"].as_str().and_then(|d| Digest::parse(d).ok()) else {
                continue;
            };
            if &d == subject {
                continue;
            }
            let m = self.read_manifest(&d, entry["mediaType"].as_str()).await?;
            if m.parse()?.subject.as_ref() == Some(subject) {
                found.push(d);
            }
        }
        Ok(found)
    }
}

/// Deletes a file when dropped, unless disarmed.
pub(crate) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub(crate) fn new(path: PathBuf) -> Self {
        RemoveOnDrop(Some(path))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Streams a file (or what is left of a reader) in `READ_CHUNK` pieces.
pub(crate) fn file_stream<R>(file: R, path: PathBuf) -> ByteStream
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    futures::stream::try_unfold((file, path), |(mut file, path)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; READ_CHUNK];
        let n = file.read(&mut buf).await.map_err(io_err(&path))?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, path))))
    })
    .boxed()
}

#[async_trait]
impl ImageSink for OciLayout {
    async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, ClientError> {
        self.writable()?;
        Ok(tokio::fs::metadata(self.blob_path(digest))
            .await
            .is_ok_and(|m| m.len() == size))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        data: ByteStream,
    ) -> Result<(), ClientError> {
        self.writable()?;
        self.write_blob_bytes(digest, verify(data, digest, size))
            .await
    }

    async fn put_manifest(
        &self,
        manifest: &RawManifest,
        placement: Placement<'_>,
    ) -> Result<(), ClientError> {
        self.writable()?;
        let bytes = manifest.bytes.clone();
        let one = futures::stream::once(async move { Ok(bytes) }).boxed();
        self.write_blob_bytes(&manifest.digest, one).await?;
        if let Placement::Root { tag } = placement {
            let name = tag.map(|t| t.to_string()).or_else(|| self.tag.clone());
            *self.pending_root.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((manifest.clone(), name));
        }
        if placement == Placement::Referrer {
            self.pending_referrers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(manifest.clone());
        }
        Ok(())
    }

    async fn finish(&self) -> Result<(), ClientError> {
        let root = self
            .pending_root
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some((m, name)) = root else {
            return Ok(());
        };
        let referrers = std::mem::take(
            &mut *self
                .pending_referrers
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut index = self.read_index().await?.unwrap_or_else(|| {
            json!({ "schemaVersion": 2, "mediaType": berth_oci::media::OCI_INDEX, "manifests": [] })
        });
        let describe = |m: &RawManifest| {
            json!({
                "mediaType": m.media_type,
                "digest": m.digest.to_string(),
                "size": m.bytes.len(),
            })
        };
        let mut desc = describe(&m);
        if let Some(n) = &name {
            desc["annotations"] = json!({ REF_NAME: n });
        }
        let list = index["manifests"].as_array().cloned().unwrap_or_default();
        let untagged = |d: &Value, digest: &Digest| {
            d["annotations"][REF_NAME].is_null()
                && d["digest"].as_str() == Some(digest.to_string().as_str())
        };
        let mut kept: Vec<Value> = list
            .into_iter()
            .filter(|d| match &name {
                Some(n) => d["annotations"][REF_NAME].as_str() != Some(n.as_str()),
                None => d["digest"].as_str() != Some(m.digest.to_string().as_str()),
            })
            .filter(|d| !referrers.iter().any(|r| untagged(d, &r.digest)))
            .collect();
        kept.push(desc);
        kept.extend(referrers.iter().map(describe));
        index["manifests"] = Value::Array(kept);
        write_atomic(
            &self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .await?;
        write_atomic(&self.dir.join("index.json"), index.to_string().as_bytes()).await
    }
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = tokio::fs::File::create(&tmp).await.map_err(io_err(&tmp))?;
    f.write_all(bytes).await.map_err(io_err(&tmp))?;
    f.sync_all().await.map_err(io_err(&tmp))?;
    tokio::fs::rename(&tmp, path).await.map_err(io_err(path))?;
    crate::durable::sync_parent_async(path)
        .await
        .map_err(io_err(path))
}
