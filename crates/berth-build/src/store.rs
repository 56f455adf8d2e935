//! The local content store every build shares: content-addressed blobs (an OCI layout, so any
//! OCI tool can read it), the unpacked snapshot of every layer (overlayfs lower directories),
//! the base images resolved so far, and the step cache.
//!
//! Layout under the root:
//!
//! ```text
//! oci-layout, index.json    an OCI image layout over blobs/
//! blobs/sha256/<hex>        layers, configs, manifests (written to tmp/, fsynced, renamed)
//! s/<12 hex>                a layer's snapshot, in overlayfs' format (whiteouts are 0/0
//!                           character devices, opaque directories carry trusted.overlay.opaque, user.overlay.opaque in a rootless build)
//! s/<12 hex>.id             the snapshot's full diff id (named short to keep mount options short)
//! refs/<hash>.json          a base reference + platform resolved to a manifest digest
//! cache/<key>.json          a build step's result (see `cache.rs`)
//! steps/<hash>.json         what a step saw last time, to explain cache misses
//! urls/<hash>.json          an `ADD <url>` download's digest, ETag and Last-Modified
//! cache-mounts/<hash>/      a `RUN --mount=type=cache` directory (.lock: its flock, .id: its id)
//! git/<commit>[-git]/       an `ADD <git repository>` checkout (with `.git` for --keep-git-dir)
//! tmp/                      files and directories being written
//! work/<id>/                a step's upper, work and merged directories and its bundle
//! ```
//!
//! Architecture invariant: anything under `blobs/` and `s/` is complete — it was written
//! elsewhere, made durable, then renamed into place. A `kill -9` leaves only debris in `tmp/`
//! and `work/`, which the next [`Store::open`] clears when no other build holds the store.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use berth_client::ClientError;
use berth_client::image::{ByteStream, ImageSink, ImageSource, Placement, RawManifest};
use berth_oci::{Digest, Manifest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{BuildError, io};

/// The store's root and its lock.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Shared lock held for the store's lifetime (cleaning takes it exclusively).
    _lock: File,
}

/// Where the store lives when not configured: `$BERTH_BUILD_ROOT`, else
/// `/var/lib/berth/build` for root (not in a rootless build's namespace), else `$XDG_DATA_HOME/berth/build` (or
/// `~/.local/share/berth/build`).
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BUILD_ROOT") {
        return PathBuf::from(p);
    }
    // Root of a rootless build's user namespace is still the user: keep the user's store.
    if rustix::process::geteuid().is_root() && !crate::rootless::active() {
        return PathBuf::from("/var/lib/berth/build");
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(p).join("berth/build");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/berth/build")
}

/// The store held exclusively (see [`Store::lock_exclusive`]).
#[derive(Debug)]
pub(crate) struct Exclusive<'a>(&'a File);

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        let _ = self.0.lock_shared();
    }
}

/// Marks a record as just used (its mtime is its last use, for pruning); best effort.
pub(crate) fn touch(path: &Path) {
    if let Ok(f) = fs::File::options().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// A base image resolved for a platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefRecord {
    pub reference: String,
    pub platform: String,
    pub digest: String,
}

const DIRS: [&str; 11] = [
    "blobs/sha256",
    "s",
    "refs",
    "cache",
    "steps",
    "tmp",
    "work",
    "runc",
    "urls",
    "cache-mounts",
    "git",
];

impl Store {
    /// Opens (creating) the store at `root`, clearing debris of builds that were killed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Arc<Store>, BuildError> {
        let root = root.into();
        for d in DIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(io(&root))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&root, &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(
                &root,
                &index,
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
            )?;
        }
        let lock_path = root.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        // Debris is only cleared when no other build is running.
        if lock.try_lock().is_ok() {
            for d in ["tmp", "work"] {
                clear_dir(&root.join(d));
            }
            lock.unlock().map_err(io(&lock_path))?;
        }
        lock.lock_shared().map_err(io(&lock_path))?;
        Ok(Arc::new(Store { root, _lock: lock }))
    }

    /// Takes the store for itself (no build may hold it) until the guard is dropped; the
    /// store's shared lock is taken back then.
    pub(crate) fn lock_exclusive(&self) -> Result<Exclusive<'_>, BuildError> {
        let lock_path = self.root.join("lock");
        match self._lock.try_lock() {
            Ok(()) => Ok(Exclusive(&self._lock)),
            Err(e) => {
                // A failed conversion may have dropped the shared lock: take it back.
                self._lock.lock_shared().map_err(io(&lock_path))?;
                match e {
                    fs::TryLockError::WouldBlock => Err(BuildError::StoreBusy {
                        path: self.root.clone(),
                    }),
                    fs::TryLockError::Error(e) => Err(io(&lock_path)(e)),
                }
            }
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob is.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Whether the store has a blob.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a small blob whole (configs, manifests), verifying its digest.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, BuildError> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        if bytes.len() as u64 > limit {
            return Err(BuildError::Corrupt {
                path,
                reason: format!("larger than {limit} bytes"),
            });
        }
        if !d.verifies(&bytes) {
            return Err(BuildError::Corrupt {
                path,
                reason: "content does not match its digest".into(),
            });
        }
        Ok(bytes)
    }

    /// Stores bytes as a blob (atomically) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, BuildError> {
        let d = Digest::sha256(bytes);
        if !self.has_blob(&d) {
            let path = self.blob_path(&d);
            write_atomic(&self.root, &path, bytes)?;
        }
        Ok(d)
    }

    /// A new file under `tmp/`, removed when dropped unless committed.
    pub fn temp_file(&self) -> Result<TempFile, BuildError> {
        let path = self.root.join("tmp").join(random_name("blob"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io(&path))?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// Makes a temp file durable and renames it to the blob `d`.
    pub fn commit_blob(&self, mut tmp: TempFile, d: &Digest) -> Result<(), BuildError> {
        if let Some(f) = tmp.file.take() {
            f.sync_all().map_err(io(&tmp.path))?;
        }
        let dest = self.blob_path(d);
        fs::rename(&tmp.path, &dest).map_err(io(&dest))?;
        tmp.path = PathBuf::new();
        sync_dir(dest.parent().unwrap_or(&self.root))
    }

    /// A fresh directory under `tmp/`, removed when dropped unless committed.
    pub fn temp_dir(&self, what: &str) -> Result<TempDir, BuildError> {
        let path = self.root.join("tmp").join(random_name(what));
        fs::create_dir(&path).map_err(io(&path))?;
        Ok(TempDir { path })
    }

    /// A fresh directory under `work/` for one step (upper, work, merged, bundle).
    pub fn work_dir(&self) -> Result<TempDir, BuildError> {
        let path = self.root.join("work").join(random_name("step"));
        fs::create_dir(&path).map_err(io(&path))?;
        Ok(TempDir { path })
    }

    /// The directory runc keeps its container state in.
    pub fn runtime_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    fn snapshot_name(diff_id: &Digest) -> String {
        diff_id.hex()[..12].to_owned()
    }

    /// Where the snapshot of the layer with uncompressed digest `diff_id` is (if it exists).
    pub fn snapshot(&self, diff_id: &Digest) -> Result<Option<PathBuf>, BuildError> {
        let name = Self::snapshot_name(diff_id);
        let dir = self.root.join("s").join(&name);
        let id_file = self.root.join("s").join(format!("{name}.id"));
        // The id is read first and the directory looked at once: a build committing the same
        // layer renames its directory in at any moment, so two looks could disagree.
        match fs::read_to_string(&id_file) {
            Ok(s) => {
                let id = s.trim();
                let present = dir.is_dir();
                if id == diff_id.to_string() {
                    Ok(present.then_some(dir))
                } else if present && !id.is_empty() {
                    Err(BuildError::Corrupt {
                        path: id_file,
                        reason: format!("snapshot {name} belongs to {id}, not {diff_id}"),
                    })
                } else {
                    Ok(None)
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(id_file)(e)),
        }
    }

    /// Moves a complete snapshot directory (from [`Store::temp_dir`]) into place. If another
    /// build got there first, keeps theirs.
    pub fn commit_snapshot(&self, tmp: TempDir, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let name = Self::snapshot_name(diff_id);
        let dir = self.root.join("s").join(&name);
        let id_file = self.root.join("s").join(format!("{name}.id"));
        // Everything extracted must be on disk before the snapshot becomes visible.
        let f = File::open(&tmp.path).map_err(io(&tmp.path))?;
        rustix::fs::syncfs(&f).map_err(|e| io(&tmp.path)(e.into()))?;
        // The id first: a directory is a snapshot only with its id beside it, and a build that
        // loses a race to commit the same layer must find both in place.
        match fs::read_to_string(&id_file) {
            Ok(other) if other.trim() != diff_id.to_string() => {
                return Err(BuildError::Corrupt {
                    path: id_file,
                    reason: format!("snapshot name {name} is taken by {}", other.trim()),
                });
            }
            Ok(_) => {}
            Err(_) => write_atomic(&self.root, &id_file, diff_id.to_string().as_bytes())?,
        }
        match fs::rename(&tmp.path, &dir) {
            Ok(()) => {}
            Err(e)
                if e.kind() == io::ErrorKind::DirectoryNotEmpty
                    || e.kind() == io::ErrorKind::AlreadyExists =>
            {
                // Another build committed it; ours is dropped.
                drop(tmp);
                if self.snapshot(diff_id)?.is_some() {
                    return Ok(dir);
                }
                return Err(BuildError::Corrupt {
                    path: dir,
                    reason: "a snapshot directory without its id file".into(),
                });
            }
            Err(e) => return Err(io(&dir)(e)),
        }
        let mut tmp = tmp;
        tmp.path = PathBuf::new();
        sync_dir(&self.root.join("s"))?;
        Ok(dir)
    }

    fn ref_path(&self, reference: &str, platform: &str) -> PathBuf {
        let key = Digest::sha256(format!("{reference}\n{platform}").as_bytes());
        self.root
            .join("refs")
            .join(format!("{}.json", &key.hex()[..32]))
    }

    /// The manifest digest a base reference was resolved to for a platform, if known and its
    /// manifest is still in the store.
    pub(crate) fn resolved(&self, reference: &str, platform: &str) -> Option<Digest> {
        let bytes = fs::read(self.ref_path(reference, platform)).ok()?;
        let rec: RefRecord = serde_json::from_slice(&bytes).ok()?;
        if rec.reference != reference || rec.platform != platform {
            return None;
        }
        let d = Digest::parse(&rec.digest).ok()?;
        if !self.has_blob(&d) {
            return None;
        }
        touch(&self.ref_path(reference, platform));
        Some(d)
    }

    /// Records what a base reference resolved to.
    pub(crate) fn record_resolved(
        &self,
        reference: &str,
        platform: &str,
        digest: &Digest,
    ) -> Result<(), BuildError> {
        let rec = RefRecord {
            reference: reference.to_owned(),
            platform: platform.to_owned(),
            digest: digest.to_string(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| BuildError::Corrupt {
            path: self.ref_path(reference, platform),
            reason: e.to_string(),
        })?;
        write_atomic(&self.root, &self.ref_path(reference, platform), &bytes)
    }

    /// Reads a JSON record (`cache/…`, `steps/…`); `None` when missing or unreadable.
    pub(crate) fn read_record<T: for<'de> Deserialize<'de>>(
        &self,
        dir: &str,
        name: &str,
    ) -> Option<T> {
        let bytes = fs::read(self.root.join(dir).join(format!("{name}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes a JSON record atomically.
    pub(crate) fn write_record<T: Serialize>(
        &self,
        dir: &str,
        name: &str,
        value: &T,
    ) -> Result<(), BuildError> {
        let path = self.root.join(dir).join(format!("{name}.json"));
        let bytes = serde_json::to_vec(value).map_err(|e| BuildError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.root, &path, &bytes)
    }

    /// A manifest from the store with its media type (read from its `mediaType`, or sniffed).
    pub fn manifest(&self, d: &Digest) -> Result<RawManifest, BuildError> {
        let bytes = self.read_blob(d, berth_oci::MAX_MANIFEST_BYTES as u64)?;
        let media_type = sniff_media_type(&bytes);
        Ok(RawManifest {
            bytes: bytes.into(),
            media_type,
            digest: d.clone(),
        })
    }
}

/// A manifest's media type: its `mediaType` field, else OCI index or manifest by shape.
pub(crate) fn sniff_media_type(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Probe {
            manifests: Some(_), ..
        }) => berth_oci::media::OCI_INDEX.to_owned(),
        _ => berth_oci::media::OCI_MANIFEST.to_owned(),
    }
}

/// A file being written under `tmp/`.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Takes the file out (to hand to a writer thread); commit still works.
    pub fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Puts the file back after a writer is done with it.
    pub fn put_file(&mut self, f: File) {
        self.file = Some(f);
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A directory removed (recursively) when dropped, unless committed.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (it was moved or is now owned elsewhere).
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            clear_dir(&self.path);
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Removes everything inside `dir` without following symlinks or crossing into mounts that
/// were left behind (those are lazily unmounted first).
pub(crate) fn clear_dir(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            // A merged directory a killed build left mounted.
            let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
            clear_dir(&p);
            let _ = fs::remove_dir(&p);
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

pub(crate) fn random_name(what: &str) -> String {
    format!("{what}-{:016x}", rand::random::<u64>())
}

/// Writes a small file atomically: temp file in the store's `tmp/`, fsync, rename, fsync dir.
pub(crate) fn write_atomic(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let tmp_dir = root.join("tmp");
    fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
    let tmp = tmp_dir.join(random_name("w"));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(path.parent().unwrap_or(root))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BuildError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The store as an image source rooted at one manifest.
#[derive(Debug, Clone)]
pub struct StoreImage {
    store: Arc<Store>,
    root: Option<Digest>,
    written_root: Arc<Mutex<Option<Digest>>>,
}

impl StoreImage {
    /// The image whose root manifest is `root` (a source), or a sink when `root` is `None`.
    pub fn new(store: Arc<Store>, root: Option<Digest>) -> Self {
        StoreImage {
            store,
            root,
            written_root: Arc::new(Mutex::new(None)),
        }
    }

    /// The root manifest a copy into this sink wrote.
    pub fn written_root(&self) -> Option<Digest> {
        self.written_root
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn client_err(e: BuildError) -> ClientError {
    match e {
        BuildError::Io { path, source } => ClientError::File { path, source },
        other => ClientError::NotFound(other.to_string()),
    }
}

#[async_trait]
impl ImageSource for StoreImage {
    async fn root(&self) -> Result<RawManifest, ClientError> {
        let d = self
            .root
            .clone()
            .ok_or_else(|| ClientError::NotFound("no image named in the build store".into()))?;
        self.manifest(&d).await
    }

    async fn manifest(&self, digest: &Digest) -> Result<RawManifest, ClientError> {
        let store = self.store.clone();
        let d = digest.clone();
        tokio::task::spawn_blocking(move || store.manifest(&d))
            .await
            .map_err(|e| ClientError::NotFound(format!("manifest read task: {e}")))?
            .map_err(client_err)
    }

    async fn blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, ClientError> {
        let path = self.store.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|source| ClientError::File {
                path: path.clone(),
                source,
            })?;
        let stream = tokio_util_stream(file, path);
        Ok(berth_client::image::verify(stream, digest, size))
    }
}

fn tokio_util_stream(file: tokio::fs::File, path: PathBuf) -> ByteStream {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some((file, path)), |state| async move {
        let (mut file, path) = state?;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some((file, path))))
            }
            Err(source) => Some((Err(ClientError::File { path, source }), None)),
        }
    })
    .boxed()
}

#[async_trait]
impl ImageSink for StoreImage {
    async fn has_blob(&self, digest: &Digest, _size: u64) -> Result<bool, ClientError> {
        Ok(self.store.has_blob(digest))
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        _size: u64,
        mut data: ByteStream,
    ) -> Result<(), ClientError> {
        let mut tmp = self.store.temp_file().map_err(client_err)?;
        let mut hasher = digest.algorithm().hasher();
        let mut file = tokio::fs::File::from_std(
            tmp.take_file()
                .ok_or_else(|| ClientError::NotFound("temp file already taken".into()))?,
        );
        use tokio::io::AsyncWriteExt;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|source| ClientError::File {
                    path: tmp.path().to_path_buf(),
                    source,
                })?;
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ClientError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        tmp.put_file(file.into_std().await);
        let store = self.store.clone();
        let d = digest.clone();
        tokio::task::spawn_blocking(move || store.commit_blob(tmp, &d))
            .await
            .map_err(|e| ClientError::NotFound(format!("blob commit task: {e}")))?
            .map_err(client_err)
    }

    async fn put_manifest(
        &self,
        manifest: &RawManifest,
        placement: Placement<'_>,
    ) -> Result<(), ClientError> {
        // Validate before storing: the store only holds manifests it can read back.
        Manifest::parse(Some(&manifest.media_type), &manifest.bytes)
            .map_err(|e| ClientError::Manifest(e.to_string()))?;
        let store = self.store.clone();
        let bytes = manifest.bytes.clone();
        let d = tokio::task::spawn_blocking(move || store.put_bytes(&bytes))
            .await
            .map_err(|e| ClientError::NotFound(format!("manifest write task: {e}")))?
            .map_err(client_err)?;
        if matches!(placement, Placement::Root { .. }) {
            *self.written_root.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        }
        Ok(())
    }

    async fn finish(&self) -> Result<(), ClientError> {
        Ok(())
    }
}
