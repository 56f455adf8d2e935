//! Image archives: `oci-archive` (a tar of an OCI layout) and `docker-archive` (what
//! `docker save` writes and `docker load` / `podman load` read).
//!
//! Reading never extracts: the tar is indexed once (name → offset and size, links resolved) and
//! blobs stream straight out of it. Writing stages blobs in a directory next to the destination
//! (the engine writes them in parallel; a tar is sequential), then writes the tar through a
//! temporary file, fsync and rename, so a failed or interrupted copy leaves no half archive.
//!
//! A docker-archive berth writes is also a complete OCI layout (as Docker 25+ writes them): the
//! `index.json` keeps the original manifests byte-exact — so reading it back gives the same
//! digests — and `manifest.json` lists each image for `docker load` / `podman load`. Classic
//! archives (`<id>/layer.tar`, `<hex>.json`) are read through `manifest.json`, with a Docker
//! schema 2 manifest synthesised from the config and layers.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Digest, ImageRef, ManifestKind, Platform, RefKind, media};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::OnceCell;

use crate::ClientError;
use crate::image::{ByteStream, ImageSink, ImageSource, Placement, RawManifest, verify};
use crate::layout::{OciLayout, REF_NAME, file_stream};

/// containerd's annotation for an image's full name in `index.json` (Docker 25+ writes it).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Metadata files read whole out of an archive are refused beyond this size.
const MAX_METADATA: u64 = 64 * 1024 * 1024;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::File {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ClientError {
    ClientError::Archive {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Where each regular file of a tar archive is (hard and symbolic links resolved).
#[derive(Debug)]
pub(crate) struct TarIndex {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

/// A member name as a relative path without `.` components; `None` for names that climb out
/// (`..`), which no image archive needs.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl TarIndex {
    /// Indexes the archive at `path` (seeking over member data, never reading it).
    pub(crate) async fn open(path: &Path) -> Result<Arc<Self>, ClientError> {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&owned).map(Arc::new))
            .await
            .map_err(|e| ClientError::Http(format!("indexing task failed: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<Self, ClientError> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let members = archive
            .entries_with_seek()
            .map_err(|e| bad(path, format!("not a tar archive: {e}")))?;
        for member in members {
            let member = member.map_err(|e| bad(path, format!("corrupt tar archive: {e}")))?;
            let name = member
                .path()
                .map_err(|e| bad(path, format!("corrupt member name: {e}")))?;
            let Some(name) = normalize(&name) else {
                continue;
            };
            let link = member.link_name().ok().flatten();
            match member.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    entries.insert(name, (member.raw_file_position(), member.size()));
                }
                tar::EntryType::Symlink => {
                    if let Some(target) = link {
                        let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                        if let Some(t) = normalize(&base.join(target)) {
                            links.push((name, t));
                        }
                    }
                }
                tar::EntryType::Link => {
                    if let Some(t) = link.and_then(|l| normalize(&l)) {
                        links.push((name, t));
                    }
                }
                _ => {}
            }
        }
        // Links to links: a few rounds settle any sane chain; cycles stay unresolved.
        for _ in 0..8 {
            let mut progressed = false;
            for (name, target) in &links {
                if !entries.contains_key(name)
                    && let Some(&e) = entries.get(target)
                {
                    entries.insert(name.clone(), e);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The archive's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn size(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|e| e.1)
    }

    /// A small member's bytes.
    pub(crate) async fn read(&self, name: &str) -> Result<Option<Bytes>, ClientError> {
        let Some(&(offset, size)) = self.entries.get(name) else {
            return Ok(None);
        };
        if size > MAX_METADATA {
            return Err(bad(
                &self.path,
                format!("{name} is {size} bytes, more than metadata may be"),
            ));
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path).map_err(io_err(&path))?;
            let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
            f.read_exact_at(&mut buf, offset).map_err(io_err(&path))?;
            Ok(Some(Bytes::from(buf)))
        })
        .await
        .map_err(|e| ClientError::Http(format!("read task failed: {e}")))?
    }

    /// A reader of a member's bytes (`None`: no such member).
    async fn open_member(
        &self,
        name: &str,
    ) -> Result<Option<tokio::io::Take<tokio::fs::File>>, ClientError> {
        let Some(&(offset, size)) = self.entries.get(name) else {
            return Ok(None);
        };
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(io_err(&self.path))?;
        f.seek(SeekFrom::Start(offset))
            .await
            .map_err(io_err(&self.path))?;
        Ok(Some(f.take(size)))
    }

    /// A member's bytes as a stream.
    pub(crate) async fn stream(&self, name: &str) -> Result<Option<ByteStream>, ClientError> {
        Ok(self
            .open_member(name)
            .await?
            .map(|r| file_stream(r, self.path.clone())))
    }

    /// The first bytes of a member (to sniff its compression).
    async fn head(&self, name: &str, n: usize) -> Result<Vec<u8>, ClientError> {
        let Some(r) = self.open_member(name).await? else {
            return Ok(Vec::new());
        };
        let mut buf = Vec::with_capacity(n);
        r.take(n as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(io_err(&self.path))?;
        Ok(buf)
    }

    /// The sha256 of a member, read through once.
    async fn sha256(&self, name: &str) -> Result<Digest, ClientError> {
        let Some(&(offset, size)) = self.entries.get(name) else {
            return Err(bad(&self.path, format!("{name} is missing")));
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(io_err(&path))?;
            f.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
            let mut r = f.take(size);
            let mut h = berth_oci::Algorithm::Sha256.hasher();
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = r.read(&mut buf).map_err(io_err(&path))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finish())
        })
        .await
        .map_err(|e| ClientError::Http(format!("hash task failed: {e}")))?
    }
}

/// Which archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout.
    Oci,
    /// `docker save`'s format.
    Docker,
}

impl ArchiveFormat {
    /// Tells the formats apart by their members: `manifest.json` makes a docker-archive (even
    /// one that is also an OCI layout, as Docker 25+ writes), `index.json` alone an OCI one.
    pub fn detect(path: &Path) -> Result<Self, ClientError> {
        let index = TarIndex::open_blocking(path)?;
        if index.contains("manifest.json") {
            Ok(ArchiveFormat::Docker)
        } else if index.contains("index.json") {
            Ok(ArchiveFormat::Oci)
        } else {
            Err(bad(
                path,
                "neither manifest.json nor index.json: not an image archive",
            ))
        }
    }
}

/// Which image of an archive to read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selector {
    /// The only image in it.
    Only,
    /// By tag (`oci-archive`: the ref name) or name (`docker-archive`: a `RepoTags` entry).
    Name(String),
    /// The N-th image of `manifest.json` (`docker-archive:FILE:@N`, as skopeo spells it).
    Index(usize),
}

/// An archive as an image source (opened on first use).
#[derive(Debug)]
pub struct ArchiveSource {
    path: PathBuf,
    format: ArchiveFormat,
    selector: Selector,
    inner: OnceCell<Inner>,
}

#[derive(Debug)]
enum Inner {
    Layout(OciLayout),
    Classic(Classic),
}

/// A classic docker-archive image: the manifest berth synthesised, and where each blob is.
#[derive(Debug)]
struct Classic {
    tar: Arc<TarIndex>,
    manifest: RawManifest,
    blobs: HashMap<Digest, String>,
}

impl ArchiveSource {
    /// The image `selector` picks in the archive at `path`.
    pub fn new(path: impl Into<PathBuf>, format: ArchiveFormat, selector: Selector) -> Self {
        ArchiveSource {
            path: path.into(),
            format,
            selector,
            inner: OnceCell::new(),
        }
    }

    async fn inner(&self) -> Result<&Inner, ClientError> {
        self.inner.get_or_try_init(|| self.open()).await
    }

    async fn open(&self) -> Result<Inner, ClientError> {
        let tar = TarIndex::open(&self.path).await?;
        let is_layout = tar.contains("index.json") && tar.contains("oci-layout");
        if self.format == ArchiveFormat::Oci || (is_layout && self.selector != Selector::Index(0)) {
            if !is_layout {
                return Err(bad(
                    &self.path,
                    "no index.json and oci-layout: not an oci-archive",
                ));
            }
            let layout = OciLayout::in_tar(tar.clone(), None);
            if let Some(tag) = self.layout_tag(&layout).await? {
                return Ok(Inner::Layout(OciLayout::in_tar(tar, Some(&tag))));
            }
            if self.selector == Selector::Only || self.format == ArchiveFormat::Oci {
                return Ok(Inner::Layout(layout));
            }
        }
        if !tar.contains("manifest.json") {
            return Err(bad(&self.path, "no manifest.json: not a docker-archive"));
        }
        Ok(Inner::Classic(self.classic(tar).await?))
    }

    /// The ref name in `index.json` that the selector names, if any entry matches.
    async fn layout_tag(&self, layout: &OciLayout) -> Result<Option<String>, ClientError> {
        let Selector::Name(want) = &self.selector else {
            return Ok(None);
        };
        let normalized = ImageRef::parse(want).ok().map(|r| r.to_string());
        for e in layout.index_entries().await? {
            let a = &e["annotations"];
            let full = a[CONTAINERD_NAME].as_str();
            let tag = a[REF_NAME].as_str();
            if tag == Some(want.as_str())
                || full.is_some() && (full == Some(want.as_str()) || full == normalized.as_deref())
            {
                return Ok(tag.map(str::to_owned));
            }
        }
        if self.format == ArchiveFormat::Oci {
            return Err(ClientError::NotFound(format!(
                "no image named {want:?} in {}",
                self.path.display()
            )));
        }
        Ok(None)
    }

    async fn classic(&self, tar: Arc<TarIndex>) -> Result<Classic, ClientError> {
        let path = &self.path;
        let listing = tar.read("manifest.json").await?.unwrap_or_default();
        let images: Vec<Value> = serde_json::from_slice(&listing)
            .map_err(|e| bad(path, format!("manifest.json: {e}")))?;
        let chosen = match &self.selector {
            Selector::Only | Selector::Index(0) if images.len() == 1 => images.first(),
            Selector::Only => {
                return Err(bad(
                    path,
                    format!(
                        "holds {} images: name one with :NAME:TAG or :@N",
                        images.len()
                    ),
                ));
            }
            Selector::Index(n) => images.get(*n),
            Selector::Name(want) => {
                let want_full = ImageRef::parse(want).map(|r| r.to_string()).ok();
                images.iter().find(|i| {
                    i["RepoTags"].as_array().is_some_and(|tags| {
                        tags.iter().filter_map(Value::as_str).any(|t| {
                            t == want || ImageRef::parse(t).ok().map(|r| r.to_string()) == want_full
                        })
                    })
                })
            }
        };
        let Some(image) = chosen else {
            return Err(ClientError::NotFound(format!(
                "no image {:?} in {}",
                self.selector,
                path.display()
            )));
        };
        let config_name = image["Config"]
            .as_str()
            .and_then(|c| normalize(Path::new(c)))
            .ok_or_else(|| bad(path, "manifest.json entry without Config"))?;
        let config = tar
            .read(&config_name)
            .await?
            .ok_or_else(|| bad(path, format!("{config_name} is missing")))?;
        let config_digest = Digest::sha256(&config);
        let config_json: Value = serde_json::from_slice(&config)
            .map_err(|e| bad(path, format!("{config_name}: {e}")))?;
        let diff_ids: Vec<&str> = config_json["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut blobs = HashMap::from([(config_digest.clone(), config_name)]);
        let mut layers = Vec::new();
        let names = image["Layers"].as_array().cloned().unwrap_or_default();
        for (i, layer) in names.iter().enumerate() {
            let name = layer
                .as_str()
                .and_then(|l| normalize(Path::new(l)))
                .ok_or_else(|| bad(path, "manifest.json lists a layer without a path"))?;
            let size = tar
                .size(&name)
                .ok_or_else(|| bad(path, format!("layer {name} is missing")))?;
            let magic = tar.head(&name, 4).await?;
            let (media_type, compressed) = match magic.as_slice() {
                [0x1f, 0x8b, ..] => (media::DOCKER_LAYER_GZIP, true),
                [0x28, 0xb5, 0x2f, 0xfd] => (media::DOCKER_LAYER_ZSTD, true),
                _ => (media::DOCKER_LAYER_TAR, false),
            };
            // An uncompressed layer's digest is its diff ID — checked as it streams; a
            // compressed one must be hashed.
            let digest = match diff_ids.get(i).and_then(|d| Digest::parse(d).ok()) {
                Some(d) if !compressed => d,
                _ => tar.sha256(&name).await?,
            };
            layers.push(
                json!({ "mediaType": media_type, "size": size, "digest": digest.to_string() }),
            );
            blobs.insert(digest, name);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {
                "mediaType": media::DOCKER_CONFIG,
                "size": config.len(),
                "digest": config_digest.to_string(),
            },
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
        let digest = Digest::sha256(&bytes);
        Ok(Classic {
            tar,
            manifest: RawManifest::verified(bytes, media::DOCKER_MANIFEST, &digest)?,
            blobs,
        })
    }
}

#[async_trait]
impl ImageSource for ArchiveSource {
    async fn root(&self) -> Result<RawManifest, ClientError> {
        match self.inner().await? {
            Inner::Layout(l) => l.root().await,
            Inner::Classic(c) => Ok(c.manifest.clone()),
        }
    }

    async fn manifest(&self, digest: &Digest) -> Result<RawManifest, ClientError> {
        match self.inner().await? {
            Inner::Layout(l) => l.manifest(digest).await,
            Inner::Classic(c) if &c.manifest.digest == digest => Ok(c.manifest.clone()),
            Inner::Classic(_) => Err(ClientError::NotFound(format!(
                "manifest {digest} in {}",
                self.path.display()
            ))),
        }
    }

    async fn blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, ClientError> {
        match self.inner().await? {
            Inner::Layout(l) => l.blob(digest, size).await,
            Inner::Classic(c) => {
                let name = c.blobs.get(digest).ok_or_else(|| {
                    ClientError::NotFound(format!("blob {digest} in {}", self.path.display()))
                })?;
                let stream = c.tar.stream(name).await?.ok_or_else(|| {
                    ClientError::NotFound(format!("{name} in {}", self.path.display()))
                })?;
                Ok(verify(stream, digest, size))
            }
        }
    }

    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, ClientError> {
        match self.inner().await? {
            Inner::Layout(l) => l.referrers(digest).await,
            Inner::Classic(_) => Ok(Vec::new()),
        }
    }
}

/// An archive as an image sink: blobs staged in a directory beside `dest`, the tar written at
/// [`ImageSink::finish`].
#[derive(Debug)]
pub struct ArchiveSink {
    dest: PathBuf,
    format: ArchiveFormat,
    name: Option<ImageRef>,
    staging: OciLayout,
    _dir: tempfile::TempDir,
}

impl ArchiveSink {
    /// An archive to be written at `dest`. `name` is the image's name: for an oci-archive its
    /// tag becomes the ref name; for a docker-archive it becomes `RepoTags`.
    pub fn new(
        dest: impl Into<PathBuf>,
        format: ArchiveFormat,
        name: Option<ImageRef>,
    ) -> Result<Self, ClientError> {
        let dest = dest.into();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = tempfile::Builder::new()
            .prefix(".berth-archive-")
            .tempdir_in(&parent)
            .map_err(io_err(&parent))?;
        let tag = name.as_ref().and_then(|n| n.tag().map(ToString::to_string));
        let tag = match format {
            ArchiveFormat::Docker => tag.or_else(|| name.as_ref().map(|_| "latest".to_owned())),
            ArchiveFormat::Oci => tag,
        };
        Ok(ArchiveSink {
            staging: OciLayout::new(dir.path(), tag.as_deref()),
            dest,
            format,
            name,
            _dir: dir,
        })
    }

    /// `manifest.json` for `docker load`: one entry per image of the root (one per platform of
    /// an index), the name given to the host's platform (or the only one).
    async fn docker_manifest(&self, root: &RawManifest) -> Result<Value, ClientError> {
        let mut images: Vec<(Option<Platform>, RawManifest)> = Vec::new();
        let parsed = root.parse()?;
        if parsed.kind == ManifestKind::Index {
            for child in parsed
                .references
                .iter()
                .filter(|r| r.kind == RefKind::Manifest)
            {
                if child.platform.as_ref().is_some_and(|p| p.os == "unknown") {
                    continue; // attestation manifests
                }
                let m = self.staging.manifest(&child.digest).await?;
                if m.parse()?.kind == ManifestKind::Image {
                    images.push((child.platform.clone(), m));
                }
            }
        } else {
            images.push((None, root.clone()));
        }
        let host = Platform::host();
        let tagged = images
            .iter()
            .position(|(p, _)| p.as_ref().is_some_and(|p| host.matches(p)))
            .unwrap_or(0);
        let repo_tags: Vec<String> = self.name.iter().map(familiar).collect();
        let mut entries = Vec::new();
        for (i, (_, m)) in images.iter().enumerate() {
            let refs = m.parse()?.references;
            let mut blobs = refs
                .iter()
                .map(|r| format!("blobs/{}/{}", r.digest.algorithm().as_str(), r.digest.hex()));
            let config = blobs
                .next()
                .ok_or_else(|| ClientError::Manifest("no config".into()))?;
            entries.push(json!({
                "Config": config,
                "RepoTags": if i == tagged { repo_tags.clone() } else { Vec::new() },
                "Layers": blobs.collect::<Vec<_>>(),
            }));
        }
        Ok(Value::Array(entries))
    }
}

/// `name:tag` as `docker save` writes it in `RepoTags` (`busybox:latest`,
/// `registry:5000/team/app:v1`).
fn familiar(r: &ImageRef) -> String {
    let tag = r
        .tag()
        .map_or_else(|| "latest".to_owned(), ToString::to_string);
    format!("{}:{tag}", r.familiar_name())
}

#[async_trait]
impl ImageSink for ArchiveSink {
    async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, ClientError> {
        self.staging.has_blob(digest, size).await
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        data: ByteStream,
    ) -> Result<(), ClientError> {
        self.staging.put_blob(digest, size, data).await
    }

    async fn put_manifest(
        &self,
        manifest: &RawManifest,
        placement: Placement<'_>,
    ) -> Result<(), ClientError> {
        self.staging.put_manifest(manifest, placement).await
    }

    async fn finish(&self) -> Result<(), ClientError> {
        let root = self.staging.pending_root();
        self.staging.finish().await?;
        let dir = self.staging.dir().to_path_buf();
        if self.format == ArchiveFormat::Docker
            && let Some(root) = root
        {
            let listing = self.docker_manifest(&root).await?;
            std::fs::write(dir.join("manifest.json"), listing.to_string()).map_err(io_err(&dir))?;
            if let Some(name) = &self.name {
                // Docker 25+ names the image in index.json too; `docker load` reads it.
                let path = dir.join("index.json");
                let mut index: Value =
                    serde_json::from_slice(&std::fs::read(&path).map_err(io_err(&path))?)
                        .map_err(|e| bad(&path, e.to_string()))?;
                if let Some(list) = index["manifests"].as_array_mut() {
                    for e in list
                        .iter_mut()
                        .filter(|e| e["digest"] == root.digest.to_string())
                    {
                        e["annotations"][CONTAINERD_NAME] = json!(name.to_string());
                    }
                }
                std::fs::write(&path, index.to_string()).map_err(io_err(&path))?;
            }
        }
        let dest = self.dest.clone();
        tokio::task::spawn_blocking(move || write_tar(&dir, &dest))
            .await
            .map_err(|e| ClientError::Http(format!("archive task failed: {e}")))?
    }
}

/// Every file under `dir`, as sorted relative names.
fn files_under(dir: &Path) -> Result<Vec<String>, ClientError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for e in std::fs::read_dir(&abs).map_err(io_err(&abs))? {
            let e = e.map_err(io_err(&abs))?;
            let name = rel.join(e.file_name());
            let kind = e.file_type().map_err(io_err(&abs))?;
            let partial = e.file_name().to_string_lossy().ends_with(".partial");
            if kind.is_dir() {
                stack.push(name);
            } else if kind.is_file() && !partial {
                out.push(name.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the staged layout as a tar at `dest` — deterministically (sorted names, zero times
/// and owners) and atomically (temporary file, fsync, rename, directory fsync).
fn write_tar(dir: &Path, dest: &Path) -> Result<(), ClientError> {
    let files = files_under(dir)?;
    let tmp = dest.with_file_name(format!(
        ".{}.{}.partial",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let guard = crate::layout::RemoveOnDrop::new(tmp.clone());
    let out = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, out));
    let mut dirs_done: Vec<String> = Vec::new();
    for name in &files {
        // Parent directories first, once each (docker and podman do not need them; tar does).
        let mut prefix = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            prefix.push_str(part);
            prefix.push('/');
            if !dirs_done.contains(&prefix) {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(0);
                builder
                    .append_data(&mut h, &prefix, std::io::empty())
                    .map_err(io_err(&tmp))?;
                dirs_done.push(prefix.clone());
            }
        }
        let src = dir.join(name);
        let mut f = std::fs::File::open(&src).map_err(io_err(&src))?;
        let len = f.metadata().map_err(io_err(&src))?.len();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(len);
        h.set_mtime(0);
        builder
            .append_data(&mut h, name, &mut f)
            .map_err(io_err(&tmp))?;
    }
    let mut out = builder
        .into_inner()
        .map_err(io_err(&tmp))?
        .into_inner()
        .map_err(|e| io_err(&tmp)(e.into_error()))?;
    out.flush().map_err(io_err(&tmp))?;
    out.sync_all().map_err(io_err(&tmp))?;
    drop(out);
    std::fs::rename(&tmp, dest).map_err(io_err(dest))?;
    guard.disarm();
    crate::durable::sync_parent(dest).map_err(io_err(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_never_climb_out() {
        assert_eq!(
            normalize(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            normalize(Path::new("/index.json")).as_deref(),
            Some("index.json")
        );
        assert_eq!(normalize(Path::new("../etc/passwd")), None);
        assert_eq!(normalize(Path::new("a/../../b")), None);
        assert_eq!(normalize(Path::new(".")), None);
    }
}
