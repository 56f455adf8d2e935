//! The filesystem blob store: `blobs/<alg>/<2 hex>/<hex>`, `uploads/<id>`, `tmp/`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};

use crate::StoreError;
use crate::blob::{BlobStore, ByteStream, HashCheckpoint, UploadId};

/// Size of each read when streaming a blob out.
const READ_CHUNK: u64 = 1024 * 1024;
/// Writeback of staged upload data is started every this many bytes, so the final fsync
/// only waits for the tail.
const WRITEBACK_STEP: u64 = 256 * 1024;
/// Incoming frames smaller than this are coalesced before they go to the writing thread.
const WRITE_BATCH: usize = 256 * 1024;
/// Frames queued between the receiving task and the writing thread (bounds memory per upload).
const WRITE_QUEUE: usize = 8;

/// Content-addressed blobs on a local filesystem.
///
/// **Invariant:** a file exists under `blobs/` only after its bytes were fsynced under another
/// name and renamed into place, and the directory entry was fsynced; partial data only ever lives
/// under `uploads/` and `tmp/`.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: Arc<PathBuf>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for sub in ["blobs", "uploads", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        // Leftovers of writes interrupted by a crash are never visible; remove them.
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        // Every fan-out directory exists (durably) before any commit, so a commit only ever
        // needs to fsync the one directory it renames into.
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let base = root.join("blobs").join(alg.as_str());
            if base.join("ff").is_dir() {
                continue;
            }
            for i in 0..=255u8 {
                fs::create_dir_all(base.join(format!("{i:02x}")))?;
            }
            fsync_dir(&base)?;
            fsync_dir(&root.join("blobs"))?;
            fsync_dir(&root)?;
        }
        Ok(FsBlobStore {
            root: Arc::new(root),
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{:016x}", rand::random::<u64>()))
    }
}

fn not_found_as<T>(r: std::io::Result<T>, e: impl FnOnce() -> StoreError) -> Result<T, StoreError> {
    r.map_err(|io| {
        if io.kind() == ErrorKind::NotFound {
            e()
        } else {
            StoreError::Io(io)
        }
    })
}

/// Reads the next `n` bytes of `file` on a blocking thread (no zero-filling of the buffer).
fn read_chunk(file: File, n: u64) -> tokio::task::JoinHandle<std::io::Result<(File, Bytes)>> {
    tokio::task::spawn_blocking(move || {
        let want = usize::try_from(n).map_err(std::io::Error::other)?;
        let mut buf = Vec::with_capacity(want);
        (&file).take(n).read_to_end(&mut buf)?;
        if buf.len() != want {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "blob is shorter than its recorded size",
            ));
        }
        Ok((file, Bytes::from(buf)))
    })
}

/// Asks the kernel to start writing `[offset, offset+len)` back to disk now, without waiting
/// and without evicting it from the page cache (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the
/// commit's fsync only waits for the tail. A hint: failure changes nothing but speed.
///
/// This is the workspace's one `unsafe` block: no safe wrapper of `sync_file_range` exists in
/// libc, rustix or nix, and the call only reads its integer arguments.
#[allow(unsafe_code)]
fn start_writeback(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: `f` is an open file for the duration of the call; sync_file_range takes plain
    // integers and touches no memory of ours.
    let _ =
        unsafe { libc::sync_file_range(f.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames a fully written and fsynced file to `dest`, creating and fsyncing directories so the
/// new entry survives a crash. If `dest` exists (same digest, same bytes) the source is removed.
fn publish(src: &Path, dest: &Path) -> std::io::Result<()> {
    let dir = dest
        .parent()
        .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    if dest.exists() {
        // Same digest, same bytes. Another commit may have renamed it without having fsynced the
        // directory yet: fsync it ourselves before this commit is acknowledged.
        fs::remove_file(src)?;
    } else {
        fs::rename(src, dest)?;
    }
    fsync_dir(dir)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await?
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        let path = self.blob_path(digest);
        let d = digest.clone();
        let file = blocking(move || {
            let mut f = not_found_as(File::open(path), || StoreError::BlobNotFound(d))?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        })
        .await?;
        // Sequential reads, one chunk always in flight ahead of the one being sent.
        let state = (len > 0).then(|| (read_chunk(file, len.min(READ_CHUNK)), len));
        let s = stream::try_unfold(state, |state| async move {
            let Some((pending, remaining)) = state else {
                return Ok(None);
            };
            let (file, bytes) = pending.await.map_err(std::io::Error::other)??;
            let remaining = remaining - bytes.len() as u64;
            let next =
                (remaining > 0).then(|| (read_chunk(file, remaining.min(READ_CHUNK)), remaining));
            Ok(Some((bytes, next)))
        });
        Ok(s.boxed())
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        let path = self.blob_path(digest);
        let d = digest.clone();
        blocking(move || {
            Ok(Bytes::from(not_found_as(fs::read(path), || {
                StoreError::BlobNotFound(d)
            })?))
        })
        .await
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        let tmp = self.tmp_path();
        blocking(move || {
            if dest.exists() {
                // Possibly renamed by a concurrent commit that has not fsynced the directory yet.
                if let Some(dir) = dest.parent() {
                    fsync_dir(dir)?;
                }
                return Ok(());
            }
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            publish(&tmp, &dest).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StoreError> {
        let paths: Vec<PathBuf> = digests.iter().map(|d| self.blob_path(d)).collect();
        // One blocking task for the batch instead of one per file.
        blocking(move || {
            for p in paths {
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
        .await
    }

    async fn upload_start(&self, id: &UploadId) -> Result<(), StoreError> {
        let path = self.upload_path(id);
        blocking(move || {
            OpenOptions::new().write(true).create_new(true).open(path)?;
            Ok(())
        })
        .await
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64, StoreError> {
        let r = tokio::fs::metadata(self.upload_path(id)).await;
        Ok(not_found_as(r, || StoreError::UploadUnknown(id.to_string()))?.len())
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        mut data: ByteStream,
        _checkpoint: Option<HashCheckpoint<'_>>,
    ) -> Result<u64, StoreError> {
        let path = self.upload_path(id);
        let id_s = id.to_string();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        // The writing thread; the receiving task (this one) pulls frames (and the caller's
        // wrapper hashes them) while the previous frames are written, so the two overlap.
        let writer = tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let f = not_found_as(OpenOptions::new().append(true).open(&path), || {
                StoreError::UploadUnknown(id_s)
            })?;
            let actual = f.metadata()?.len();
            if actual != offset {
                return Err(StoreError::OffsetMismatch {
                    expected: offset,
                    actual,
                });
            }
            let mut size = actual;
            let mut f = f;
            let mut started = actual; // writeback has been started for bytes before this
            while let Some(chunk) = rx.blocking_recv() {
                f.write_all(&chunk)?;
                size += chunk.len() as u64;
                if size - started >= WRITEBACK_STEP {
                    start_writeback(&f, started, size - started);
                    started = size;
                }
            }
            if size > started {
                start_writeback(&f, started, size - started);
            }
            Ok(size)
        });
        // Small frames are coalesced so the writer wakes (and writes) once per batch.
        let mut stream_error = None;
        let mut batch = BytesMut::new();
        while let Some(item) = data.next().await {
            match item {
                Ok(chunk) if batch.is_empty() && chunk.len() >= WRITE_BATCH => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Ok(chunk) => {
                    batch.extend_from_slice(&chunk);
                    if batch.len() >= WRITE_BATCH && tx.send(batch.split().freeze()).await.is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch.freeze()).await;
        }
        drop(tx);
        let size = writer.await??;
        match stream_error {
            Some(e) => Err(StoreError::Stream(e)),
            None => Ok(size),
        }
    }

    async fn upload_truncate(&self, id: &UploadId, len: u64) -> Result<(), StoreError> {
        let path = self.upload_path(id);
        let id_s = id.to_string();
        blocking(move || {
            let f = not_found_as(OpenOptions::new().write(true).open(path), || {
                StoreError::UploadUnknown(id_s)
            })?;
            f.set_len(len)?;
            Ok(())
        })
        .await
    }

    async fn upload_modified(&self, id: &UploadId) -> Result<i64, StoreError> {
        let r = tokio::fs::metadata(self.upload_path(id)).await;
        let modified = not_found_as(r, || StoreError::UploadUnknown(id.to_string()))?.modified()?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0))
    }

    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream, StoreError> {
        let path = self.upload_path(id);
        let id_s = id.to_string();
        let file =
            blocking(move || not_found_as(File::open(path), || StoreError::UploadUnknown(id_s)))
                .await?;
        let s = stream::try_unfold(file, |mut file| async move {
            tokio::task::spawn_blocking(move || -> std::io::Result<Option<(Bytes, File)>> {
                let mut buf = vec![0u8; 1024 * 1024];
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some((Bytes::from(buf), file)))
            })
            .await
            .map_err(std::io::Error::other)?
        });
        Ok(s.into_stream().boxed())
    }

    async fn upload_commit(&self, id: &UploadId, digest: &Digest) -> Result<u64, StoreError> {
        let src = self.upload_path(id);
        let dest = self.blob_path(digest);
        let id_s = id.to_string();
        blocking(move || {
            let f = not_found_as(File::open(&src), || StoreError::UploadUnknown(id_s))?;
            let size = f.metadata()?.len();
            f.sync_all()?;
            drop(f);
            publish(&src, &dest)?;
            Ok(size)
        })
        .await
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let root = Arc::clone(&self.root);
        blocking(move || {
            // One directory listing of the blob tree (its first entry only) and a stat of the
            // staging directories: enough to see a missing, unmounted or unreadable volume.
            let blobs = root.join("blobs").join(Algorithm::Sha256.as_str());
            fs::read_dir(&blobs)?.next().transpose()?;
            for sub in ["uploads", "tmp"] {
                if !fs::metadata(root.join(sub))?.is_dir() {
                    return Err(StoreError::Io(std::io::Error::other(format!(
                        "{sub} is not a directory"
                    ))));
                }
            }
            Ok(())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<(Digest, i64)>, StoreError> {
        let root = self.root.join("blobs");
        blocking(move || {
            let mut out = Vec::new();
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                let base = root.join(alg.as_str());
                let Ok(fans) = fs::read_dir(&base) else {
                    continue;
                };
                for fan in fans {
                    let fan = fan?;
                    if !fan.file_type()?.is_dir() {
                        continue;
                    }
                    for entry in fs::read_dir(fan.path())? {
                        let entry = entry?;
                        let name = entry.file_name();
                        let Some(hex) = name.to_str() else { continue };
                        // Only names that are digests: anything else is not ours to judge.
                        let Ok(digest) = Digest::parse(&format!("{}:{hex}", alg.as_str())) else {
                            continue;
                        };
                        let modified = match entry.metadata() {
                            Ok(m) => m.modified()?,
                            Err(e) if e.kind() == ErrorKind::NotFound => continue,
                            Err(e) => return Err(e.into()),
                        };
                        let ms = modified
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                        out.push((digest, ms));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn upload_list(&self) -> Result<Vec<UploadId>, StoreError> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut ids = Vec::new();
            for entry in fs::read_dir(dir)? {
                if let Some(id) = entry?.file_name().to_str().and_then(UploadId::parse) {
                    ids.push(id);
                }
            }
            Ok(ids)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_until_the_blob_tree_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("open");
        store.ready().await.expect("ready");
        fs::rename(dir.path().join("blobs"), dir.path().join("moved")).expect("rename");
        assert!(store.ready().await.is_err());
        fs::rename(dir.path().join("moved"), dir.path().join("blobs")).expect("rename");
        store.ready().await.expect("ready again");
    }

    #[tokio::test]
    async fn upload_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("open");
        let id = UploadId::random();
        store.upload_start(&id).await.expect("start");
        let parts: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let size = store
            .upload_append(&id, 0, stream::iter(parts).boxed(), None)
            .await
            .expect("append");
        assert_eq!(size, 11);
        let wrong = store
            .upload_append(&id, 3, stream::iter(Vec::new()).boxed(), None)
            .await;
        assert!(matches!(
            wrong,
            Err(StoreError::OffsetMismatch {
                expected: 3,
                actual: 11
            })
        ));
        let d = Digest::sha256(b"hello world");
        assert_eq!(store.upload_commit(&id, &d).await.expect("commit"), 11);
        assert_eq!(store.stat(&d).await.expect("stat"), Some(11));
        let got: Vec<Bytes> = store
            .read(&d, 6, 5)
            .await
            .expect("read")
            .try_collect()
            .await
            .expect("collect");
        assert_eq!(got.concat(), b"world");
        assert!(matches!(
            store.upload_size(&id).await,
            Err(StoreError::UploadUnknown(_))
        ));
    }
}
