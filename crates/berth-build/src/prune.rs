//! Garbage collection of the build store (`berth builder prune`) and its usage
//! (`berth builder du`).
//!
//! What is live: the layers of the cache records kept, and everything a kept base-image
//! resolution (`refs/`) or download (`urls/`) reaches — manifests, indexes, configs, layers and
//! the snapshots of those layers. Everything else in `blobs/` and `s/` is garbage: build results
//! already written to their outputs, layers of removed records, debris of killed builds.
//!
//! Which records are kept: all of them by default (only garbage goes); those used within
//! `keep_duration`; then, least recently used first, records are dropped until the store fits in
//! `keep_storage`; `all` drops every record, resolution, download, git checkout and cache
//! mount. Git checkouts also go when unused for `keep_duration`. A record's
//! "last used" is its file's mtime, refreshed on every cache hit.
//!
//! Order, for a `kill -9` at any point: records are removed before the blobs they name (a
//! record never points at a missing blob — and a lookup treats one as a miss anyway), and a
//! snapshot directory is renamed into `tmp/` before its id file goes. Pruning needs the store to
//! itself: it takes the store's lock exclusively and refuses while a build holds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use serde::Deserialize;

use crate::cache::CacheRecord;
use crate::error::{BuildError, io};
use crate::store::{Store, clear_dir, random_name};

/// What to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Remove every cache record, base-image resolution, download and cache mount.
    pub all: bool,
    /// Remove cache records (and resolutions, downloads, step memories) not used for this long.
    pub keep_duration: Option<Duration>,
    /// Then remove the least recently used cache records until the store is at most this big.
    pub keep_storage: Option<u64>,
}

/// What a prune removed, or what `du` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Cache records (steps).
    pub records: usize,
    /// Blobs (layers, configs, manifests, downloads) and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Layer snapshots and their bytes.
    pub snapshots: usize,
    pub snapshot_bytes: u64,
    /// `RUN --mount=type=cache` directories and their bytes.
    pub cache_mounts: usize,
    pub cache_mount_bytes: u64,
    /// `ADD <git repository>` checkouts and their bytes.
    pub checkouts: usize,
    pub checkout_bytes: u64,
}

impl Usage {
    /// Bytes in all.
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.snapshot_bytes + self.cache_mount_bytes + self.checkout_bytes
    }
}

/// One record file with its last use.
struct Rec {
    path: PathBuf,
    used: SystemTime,
}

fn records(dir: &Path) -> Result<Vec<Rec>, BuildError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json") {
            let used = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Rec { path, used });
        }
    }
    Ok(out)
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

/// Bytes under a path (files' lengths; directories and devices count nothing), never
/// following symlinks.
fn du(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return if m.is_file() { m.len() } else { 0 };
    }
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(ft) if ft.is_dir() => stack.push(e.path()),
                Ok(ft) if ft.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[derive(Deserialize)]
struct RefRec {
    digest: String,
}

#[derive(Deserialize)]
struct UrlRec {
    digest: String,
}

/// The store's usage now.
pub fn usage(store: &Store) -> Result<Usage, BuildError> {
    let root = store.root();
    let mut u = Usage {
        records: records(&root.join("cache"))?.len(),
        ..Usage::default()
    };
    for (_, size) in blobs(root)? {
        u.blobs += 1;
        u.blob_bytes += size;
    }
    for (_, dir) in snapshots(root)? {
        u.snapshots += 1;
        u.snapshot_bytes += du(&dir);
    }
    for dir in cache_mounts(root)? {
        u.cache_mounts += 1;
        u.cache_mount_bytes += du(&dir);
    }
    for (dir, _) in checkouts(root) {
        u.checkouts += 1;
        u.checkout_bytes += du(&dir);
    }
    Ok(u)
}

/// Every blob with its size.
fn blobs(root: &Path) -> Result<Vec<(Digest, u64)>, BuildError> {
    let dir = root.join("blobs/sha256");
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
            out.push((d, e.metadata().map_or(0, |m| m.len())));
        }
    }
    Ok(out)
}

/// Every snapshot directory with the diff id its id file names (`None`: debris).
fn snapshots(root: &Path) -> Result<Vec<(Option<Digest>, PathBuf)>, BuildError> {
    let dir = root.join("s");
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let p = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let id = fs::read_to_string(p.with_extension("id"))
            .ok()
            .and_then(|s| Digest::parse(s.trim()).ok());
        out.push((id, p));
    }
    Ok(out)
}

/// Git checkouts with their last use (the mtime of `<name>.used`).
fn checkouts(root: &Path) -> Vec<(PathBuf, SystemTime)> {
    let Ok(rd) = fs::read_dir(root.join("git")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let p = e.path();
            let used = fs::metadata(p.with_extension("used"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (p, used)
        })
        .collect()
}

/// Moves a directory into `tmp/` (out of sight at once) and deletes it there.
fn discard(root: &Path, dir: &Path) -> Result<(), BuildError> {
    let doomed = root.join("tmp").join(random_name("pruned"));
    fs::rename(dir, &doomed).map_err(io(dir))?;
    // Durably out of place before what follows (a snapshot's id file) is removed.
    if let Some(parent) = dir.parent() {
        crate::store::sync_dir(parent)?;
    }
    clear_dir(&doomed);
    let _ = fs::remove_dir(&doomed);
    Ok(())
}

fn cache_mounts(root: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let dir = root.join("cache-mounts");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// What a manifest (or index) in the store reaches: blobs, and the diff ids of its images.
fn reach(store: &Store, d: &Digest, live: &mut HashSet<Digest>, diff_ids: &mut HashSet<Digest>) {
    if !live.insert(d.clone()) {
        return;
    }
    let Ok(bytes) = store.read_blob(d, 4 << 20) else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return;
    };
    let digest_of =
        |x: &serde_json::Value| x["digest"].as_str().and_then(|s| Digest::parse(s).ok());
    for m in v["manifests"].as_array().into_iter().flatten() {
        if let Some(c) = digest_of(m) {
            reach(store, &c, live, diff_ids);
        }
    }
    if let Some(c) = digest_of(&v["config"]) {
        live.insert(c.clone());
        if let Ok(cb) = store.read_blob(&c, 8 << 20)
            && let Ok(cv) = serde_json::from_slice::<serde_json::Value>(&cb)
        {
            for id in cv["rootfs"]["diff_ids"].as_array().into_iter().flatten() {
                if let Some(x) = id.as_str().and_then(|s| Digest::parse(s).ok()) {
                    diff_ids.insert(x);
                }
            }
        }
    }
    for l in v["layers"].as_array().into_iter().flatten() {
        if let Some(x) = digest_of(l) {
            live.insert(x);
        }
    }
}

/// Removes what `opts` says may go and all garbage; returns what was removed.
pub fn prune(store: &Store, opts: &PruneOptions) -> Result<Usage, BuildError> {
    let _exclusive = store.lock_exclusive()?;
    let root = store.root();
    let now = SystemTime::now();
    let stale = |used: SystemTime| {
        opts.all
            || opts
                .keep_duration
                .is_some_and(|k| now.duration_since(used).unwrap_or_default() > k)
    };
    let mut removed = Usage::default();
    // 1. Records past their keep: cache steps, resolutions, downloads, step memories.
    let mut kept: Vec<(Rec, CacheRecord)> = Vec::new();
    for r in records(&root.join("cache"))? {
        match read_json::<CacheRecord>(&r.path) {
            Some(rec) if !stale(r.used) => kept.push((r, rec)),
            _ => {
                fs::remove_file(&r.path).map_err(io(&r.path))?;
                removed.records += 1;
            }
        }
    }
    for dir in ["refs", "urls", "steps"] {
        for r in records(&root.join(dir))? {
            if stale(r.used) {
                fs::remove_file(&r.path).map_err(io(&r.path))?;
            }
        }
    }
    // 2. What the rest reaches.
    let mut live: HashSet<Digest> = HashSet::new();
    let mut diff_ids: HashSet<Digest> = HashSet::new();
    for r in records(&root.join("refs"))? {
        if let Some(d) = read_json::<RefRec>(&r.path).and_then(|x| Digest::parse(&x.digest).ok()) {
            reach(store, &d, &mut live, &mut diff_ids);
        }
    }
    for r in records(&root.join("urls"))? {
        if let Some(d) = read_json::<UrlRec>(&r.path).and_then(|x| Digest::parse(&x.digest).ok()) {
            live.insert(d);
        }
    }
    // 3. Least recently used records go until the store fits.
    if let Some(limit) = opts.keep_storage {
        let blob_sizes: HashMap<Digest, u64> = blobs(root)?.into_iter().collect();
        let snaps: HashMap<Digest, PathBuf> = snapshots(root)?
            .into_iter()
            .filter_map(|(id, p)| id.map(|i| (i, p)))
            .collect();
        let mut snap_cost: HashMap<Digest, u64> = HashMap::new();
        let mut cost = |blob: &Digest, diff: &Digest| {
            let s = *snap_cost
                .entry(diff.clone())
                .or_insert_with(|| snaps.get(diff).map_or(0, |p| du(p)));
            blob_sizes.get(blob).copied().unwrap_or(0) + s
        };
        // Layers held by base images and downloads stay whatever happens.
        let mut total: u64 = live
            .iter()
            .map(|d| blob_sizes.get(d).copied().unwrap_or(0))
            .sum::<u64>()
            + diff_ids
                .iter()
                .map(|d| snaps.get(d).map_or(0, |p| du(p)))
                .sum::<u64>();
        let mut refcount: BTreeMap<Digest, usize> = BTreeMap::new();
        for (_, rec) in &kept {
            if let Some(l) = &rec.layer
                && !live.contains(&l.digest)
            {
                let n = refcount.entry(l.digest.clone()).or_insert(0);
                if *n == 0 {
                    total += cost(&l.digest, &l.diff_id);
                }
                *n += 1;
            }
        }
        kept.sort_by_key(|(r, _)| r.used);
        let mut survivors = Vec::new();
        for (r, rec) in kept {
            if total <= limit {
                survivors.push((r, rec));
                continue;
            }
            fs::remove_file(&r.path).map_err(io(&r.path))?;
            removed.records += 1;
            if let Some(l) = &rec.layer
                && let Some(n) = refcount.get_mut(&l.digest)
            {
                *n -= 1;
                if *n == 0 {
                    total = total.saturating_sub(cost(&l.digest, &l.diff_id));
                }
            }
        }
        kept = survivors;
    }
    for (_, rec) in &kept {
        if let Some(l) = &rec.layer {
            live.insert(l.digest.clone());
            diff_ids.insert(l.diff_id.clone());
        }
    }
    // 4. Sweep: blobs, snapshots, cache mounts.
    for (d, size) in blobs(root)? {
        if !live.contains(&d) {
            let p = store.blob_path(&d);
            fs::remove_file(&p).map_err(io(&p))?;
            removed.blobs += 1;
            removed.blob_bytes += size;
        }
    }
    for (id, dir) in snapshots(root)? {
        if id.as_ref().is_some_and(|i| diff_ids.contains(i)) {
            continue;
        }
        removed.snapshots += 1;
        removed.snapshot_bytes += du(&dir);
        // Out of `s/` before its id goes: a directory without its id is never a snapshot.
        discard(root, &dir)?;
        let id_file = dir.with_extension("id");
        match fs::remove_file(&id_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&id_file)(e)),
        }
    }
    // Orphan id files (their directory went in an interrupted prune).
    let sdir = root.join("s");
    for e in fs::read_dir(&sdir).map_err(io(&sdir))?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "id") && !p.with_extension("").is_dir() {
            let _ = fs::remove_file(&p);
        }
    }
    if opts.all {
        for dir in cache_mounts(root)? {
            removed.cache_mounts += 1;
            removed.cache_mount_bytes += du(&dir);
            discard(root, &dir)?;
            for ext in ["lock", "id"] {
                let _ = fs::remove_file(dir.with_extension(ext));
            }
        }
    }
    for (dir, used) in checkouts(root) {
        if stale(used) {
            removed.checkouts += 1;
            removed.checkout_bytes += du(&dir);
            discard(root, &dir)?;
            let _ = fs::remove_file(dir.with_extension("used"));
        }
    }
    Ok(removed)
}
