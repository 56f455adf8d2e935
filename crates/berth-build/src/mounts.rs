//! `RUN --mount`: bind, cache, tmpfs, secret and ssh mounts with BuildKit's semantics.
//!
//! What a mount adds to the step's cache key: a bind mount its source's content (as a COPY
//! would); a cache, tmpfs, secret or ssh mount only its description. A secret's value never
//! enters the key, the layer, the history or the logs; its file lives on a tmpfs
//! (`/dev/shm`) while the step runs.
//!
//! - **bind**: a stage's or image's path is bound straight from its read-only mount; the context
//!   (after `.dockerignore`) and `rw` binds are copied into the step's work directory first —
//!   writes are thrown away with the copy.
//! - **cache**: a directory under the store's `cache-mounts/`, keyed by `id` (default: the
//!   target), kept across builds and shared by platforms. `sharing=shared` takes a shared lock,
//!   `locked` an exclusive one (waiting), `private` an exclusive one or, when the cache is busy,
//!   a fresh directory of its own.
//! - **secret**: from `--secret id=…,src=FILE|env=VAR`, at `/run/secrets/<id>` (or `target`)
//!   and/or in an environment variable (`env=`); a missing secret is skipped unless `required`.
//! - **ssh**: the agent socket of `--ssh id=SOCKET` bound at `/run/buildkit/ssh_agent.<n>`; the
//!   first one is `SSH_AUTH_SOCK`.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_dockerfile::Sharing;
use berth_oci::Digest;
use zeroize::Zeroizing;

use crate::bundle::ExtraMount;
use crate::context::{Entry, Match};
use crate::error::{BuildError, io};
use crate::fileop::{CopySpec, copy_into};
use crate::store::{Store, TempDir, clear_dir};

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// A file's content (`src=PATH`).
    File(PathBuf),
    /// An environment variable of the builder (`env=NAME`).
    Env(String),
}

/// BuildKit's limit on a secret's size.
pub const MAX_SECRET: u64 = 500 * 1024;

impl SecretSource {
    /// Reads the secret's value (at most [`MAX_SECRET`] bytes).
    pub fn read(&self, id: &str) -> Result<Zeroizing<Vec<u8>>, BuildError> {
        match self {
            SecretSource::File(p) => {
                let meta = fs::metadata(p).map_err(io(p))?;
                if meta.len() > MAX_SECRET {
                    return Err(BuildError::Secret {
                        id: id.to_owned(),
                        reason: format!("{} is larger than 500 KiB", p.display()),
                    });
                }
                Ok(Zeroizing::new(fs::read(p).map_err(io(p))?))
            }
            SecretSource::Env(name) => std::env::var_os(name)
                .map(|v: OsString| Zeroizing::new(v.into_vec()))
                .ok_or_else(|| BuildError::Secret {
                    id: id.to_owned(),
                    reason: format!("environment variable {name} is not set"),
                }),
        }
    }
}

/// A source tree to put in place of a mount: the matched path and its walked entries.
pub(crate) type MountSource = (Match, Vec<Entry>);

/// One `RUN --mount`, resolved (paths absolute, defaults applied) before the cache lookup.
#[derive(Debug)]
pub(crate) enum RunMount {
    Bind {
        target: String,
        source: MountSource,
        writable: bool,
        /// A read-only bind of a stage or image is its mounted path itself (ownership and all,
        /// as BuildKit's bind of a snapshot); context sources and `rw` binds are copies.
        direct: bool,
    },
    Cache {
        target: String,
        id: String,
        sharing: Sharing,
        readonly: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        /// `from`/`source`: what a new cache directory starts with.
        seed: Option<MountSource>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Secret {
        id: String,
        source: SecretSource,
        target: Option<String>,
        env: Option<String>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        target: String,
        socket: PathBuf,
    },
}

impl RunMount {
    /// The mount's description for the cache key and miss explanations (never a secret's
    /// value; a bind's content is keyed separately).
    pub(crate) fn describe(&self) -> String {
        match self {
            RunMount::Bind {
                target, writable, ..
            } => format!("bind {target}{}", if *writable { " rw" } else { "" }),
            RunMount::Cache {
                target,
                id,
                sharing,
                readonly,
                mode,
                uid,
                gid,
                seed,
            } => format!(
                "cache {target} id={id} sharing={sharing:?} ro={readonly} mode={mode:o} uid={uid} gid={gid} seeded={}",
                seed.is_some()
            ),
            RunMount::Tmpfs { target, size } => format!("tmpfs {target} size={size:?}"),
            RunMount::Secret {
                id,
                target,
                env,
                mode,
                uid,
                gid,
                ..
            } => format!(
                "secret id={id} target={target:?} env={env:?} mode={mode:o} uid={uid} gid={gid}"
            ),
            RunMount::Ssh { target, .. } => format!("ssh {target}"),
        }
    }
}

/// The mounts of one step, put in place: what to give the runtime, the environment they add,
/// and what must live until the step ends (locks, copies, secret files).
#[derive(Debug, Default)]
pub(crate) struct Materialized {
    pub mounts: Vec<ExtraMount>,
    /// Secret `env=` variables and `SSH_AUTH_SOCK`.
    pub env: Vec<Zeroizing<String>>,
    /// Cache directories' locks (released on close).
    _locks: Vec<fs::File>,
    /// Private cache directories, removed at the end.
    _dirs: Vec<TempDir>,
    /// Secret files, removed at the end.
    _secrets: Option<SecretDir>,
}

/// Puts each mount in place for a step whose work directory is `work`.
pub(crate) fn materialize(
    store: &Store,
    work: &Path,
    mounts: &[RunMount],
) -> Result<Materialized, BuildError> {
    let mut out = Materialized::default();
    let mut secrets: Option<SecretDir> = None;
    let mut ssh_seen = false;
    for (i, m) in mounts.iter().enumerate() {
        match m {
            RunMount::Bind {
                target,
                source,
                writable,
                direct,
            } => {
                let path = if *direct && !*writable {
                    source.0.host.clone()
                } else {
                    let dir = work.join(format!("mount{i}"));
                    fs::create_dir(&dir).map_err(io(&dir))?;
                    place(&dir, source)?
                };
                out.mounts.push(ExtraMount::Bind {
                    source: path,
                    target: target.clone(),
                    readonly: !writable,
                });
            }
            RunMount::Cache {
                target,
                id,
                sharing,
                readonly,
                mode,
                uid,
                gid,
                seed,
            } => {
                let dir = cache_dir(store, id, *sharing, (*mode, *uid, *gid), seed.as_ref())?;
                out.mounts.push(ExtraMount::Bind {
                    source: dir.path.clone(),
                    target: target.clone(),
                    readonly: *readonly,
                });
                out._locks.extend(dir.lock);
                out._dirs.extend(dir.private);
            }
            RunMount::Tmpfs { target, size } => out.mounts.push(ExtraMount::Tmpfs {
                target: target.clone(),
                size: *size,
            }),
            RunMount::Secret {
                id,
                source,
                target,
                env,
                mode,
                uid,
                gid,
            } => {
                let value = source.read(id)?;
                if let Some(t) = target {
                    let sd = match &mut secrets {
                        Some(sd) => sd,
                        None => secrets.insert(SecretDir::new(work)?),
                    };
                    let file = sd.write(i, &value, *mode, *uid, *gid)?;
                    out.mounts.push(ExtraMount::Bind {
                        source: file,
                        target: t.clone(),
                        readonly: true,
                    });
                }
                if let Some(name) = env {
                    let text = std::str::from_utf8(&value).map_err(|_| BuildError::Secret {
                        id: id.clone(),
                        reason: "not valid UTF-8, so it cannot be an environment variable".into(),
                    })?;
                    out.env.push(Zeroizing::new(format!("{name}={text}")));
                }
            }
            RunMount::Ssh { target, socket } => {
                out.mounts.push(ExtraMount::Bind {
                    source: socket.clone(),
                    target: target.clone(),
                    readonly: false,
                });
                if !ssh_seen {
                    out.env
                        .push(Zeroizing::new(format!("SSH_AUTH_SOCK={target}")));
                    ssh_seen = true;
                }
            }
        }
    }
    out._secrets = secrets;
    Ok(out)
}

/// Copies a mount's source into `dir` and returns the path to bind: the directory itself for
/// a directory source, the copied file for a file.
fn place(dir: &Path, source: &MountSource) -> Result<PathBuf, BuildError> {
    copy_into(
        dir,
        &CopySpec {
            dest: "/",
            sources: std::slice::from_ref(source),
            owner: None,
            chmod: None,
            parents: false,
            many: false,
        },
    )?;
    let m = &source.0;
    if m.meta.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let name = m.rel.file_name().ok_or_else(|| BuildError::Corrupt {
        path: m.host.clone(),
        reason: "a file source without a name".into(),
    })?;
    Ok(dir.join(name))
}

struct CacheDir {
    path: PathBuf,
    lock: Option<fs::File>,
    private: Option<TempDir>,
}

/// Locks (per `sharing`) and returns the cache directory of `id`, creating it with
/// `mode`/`uid`/`gid` (and the seed's content) when it does not exist.
fn cache_dir(
    store: &Store,
    id: &str,
    sharing: Sharing,
    (mode, uid, gid): (u32, u32, u32),
    seed: Option<&MountSource>,
) -> Result<CacheDir, BuildError> {
    let base = store.root().join("cache-mounts");
    fs::create_dir_all(&base).map_err(io(&base))?;
    let name = cache_mount_name(id);
    let lock_path = base.join(format!("{name}.lock"));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    let fresh = |what: &str| -> Result<TempDir, BuildError> {
        let t = store.temp_dir(what)?;
        init_dir(t.path(), mode, uid, gid, seed)?;
        Ok(t)
    };
    match sharing {
        Sharing::Shared => lock.lock_shared().map_err(io(&lock_path))?,
        Sharing::Locked => lock.lock().map_err(io(&lock_path))?,
        Sharing::Private => {
            if lock.try_lock().is_err() {
                // Busy: this step gets a directory of its own, thrown away afterwards.
                let t = fresh("cache-private")?;
                return Ok(CacheDir {
                    path: t.path().to_path_buf(),
                    lock: None,
                    private: Some(t),
                });
            }
        }
    }
    let dir = base.join(&name);
    if !dir.is_dir() {
        let t = fresh("cache-new")?;
        match fs::rename(t.path(), &dir) {
            Ok(()) => {
                t.keep();
                crate::store::sync_dir(&base)?;
            }
            // Another build created it first (a shared lock does not exclude that).
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        let _ = fs::write(base.join(format!("{name}.id")), id);
    }
    Ok(CacheDir {
        path: dir,
        lock: Some(lock),
        private: None,
    })
}

/// The name of cache mount `id`'s directory under `cache-mounts/`.
fn cache_mount_name(id: &str) -> String {
    Digest::sha256(id.as_bytes()).hex()[..32].to_owned()
}

/// Writes cache mount `id` as a gzipped tar (ownership, modes and times kept) into `out`, for
/// `--cache-to …,cache-mounts=ID`. `false`: the store has no such cache mount.
pub fn write_cache_mount(
    store: &Store,
    id: &str,
    out: impl std::io::Write,
) -> Result<bool, BuildError> {
    let dir = store.root().join("cache-mounts").join(cache_mount_name(id));
    if !dir.is_dir() {
        return Ok(false);
    }
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", &dir).map_err(io(&dir))?;
    b.into_inner()
        .and_then(flate2::write::GzEncoder::finish)
        .map_err(io(&dir))?;
    Ok(true)
}

/// Fills cache mount `id` from a gzipped tar written by [`write_cache_mount`], unless the store
/// already has it (`false`: a runner's own cache wins). Extracted into a temporary directory
/// and renamed into place whole; paths that would leave it are refused by the tar reader.
pub fn restore_cache_mount(
    store: &Store,
    id: &str,
    tar_gz: impl std::io::Read,
) -> Result<bool, BuildError> {
    let base = store.root().join("cache-mounts");
    fs::create_dir_all(&base).map_err(io(&base))?;
    let name = cache_mount_name(id);
    let dir = base.join(&name);
    if dir.is_dir() {
        return Ok(false);
    }
    let t = store.temp_dir("cache-import")?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(false);
    archive.unpack(t.path()).map_err(io(t.path()))?;
    match fs::rename(t.path(), &dir) {
        Ok(()) => {
            t.keep();
            crate::store::sync_dir(&base)?;
        }
        // Another build made it meanwhile: theirs stays.
        Err(_) if dir.is_dir() => return Ok(false),
        Err(e) => return Err(io(&dir)(e)),
    }
    let _ = fs::write(base.join(format!("{name}.id")), id);
    Ok(true)
}

fn init_dir(
    dir: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    seed: Option<&MountSource>,
) -> Result<(), BuildError> {
    if let Some(s) = seed {
        place(dir, s)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777)).map_err(io(dir))?;
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io(dir))?;
    }
    Ok(())
}

/// A private directory for a step's secret files: on `/dev/shm` (memory) when it can be, in
/// the step's work directory otherwise; emptied and removed on drop.
#[derive(Debug)]
struct SecretDir {
    path: PathBuf,
}

impl SecretDir {
    fn new(work: &Path) -> Result<SecretDir, BuildError> {
        let name = format!("berth-secrets-{:016x}", rand::random::<u64>());
        let shm = Path::new("/dev/shm");
        let candidates = [shm.join(&name), work.join("secrets")];
        let mut last = None;
        for p in candidates {
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(SecretDir { path: p }),
                Err(e) => last = Some(io(&p)(e)),
            }
        }
        Err(last.unwrap_or_else(|| BuildError::Secret {
            id: String::new(),
            reason: "no place for secret files".into(),
        }))
    }

    fn write(
        &self,
        n: usize,
        value: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<PathBuf, BuildError> {
        let p = self.path.join(format!("secret{n}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(io(&p))?;
        f.write_all(value).map_err(io(&p))?;
        drop(f);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o7777)).map_err(io(&p))?;
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io(&p))?;
        }
        Ok(p)
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        clear_dir(&self.path);
        let _ = fs::remove_dir(&self.path);
    }
}
