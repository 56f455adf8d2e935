//! Layers: from a step's overlayfs upper directory to a compressed tar (OCI whiteouts, sorted
//! entries, digest and diff id computed while writing), and from a layer blob back to a
//! snapshot directory in overlayfs' format.
//!
//! The two whiteout spellings:
//!
//! | meaning            | OCI layer tar               | overlayfs directory                     |
//! |--------------------|-----------------------------|-----------------------------------------|
//! | `x` deleted        | empty file `.wh.x`          | character device 0/0 named `x`          |
//! | `d` replaced whole | `d/` then `d/.wh..wh..opq`  | directory `d` with `trusted.overlay.opaque=y` |

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_oci::{Digest, Hasher};
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};

use crate::error::{BuildError, errno, io};
use crate::store::Store;

/// OCI media type of a gzip layer.
pub const MEDIA_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of a zstd layer.
pub const MEDIA_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI media type of an uncompressed layer.
pub const MEDIA_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The opaque-directory xattr an overlay mount of this process reads: `trusted.overlay.opaque`,
/// or `user.overlay.opaque` inside a user namespace (where overlay is mounted `userxattr`).
pub(crate) fn opaque_xattr() -> &'static str {
    if crate::rootless::in_user_namespace() {
        "user.overlay.opaque"
    } else {
        OPAQUE_XATTR
    }
}

/// Whether `k` is one of overlayfs' own xattrs (either namespace).
pub(crate) fn is_overlay_xattr(k: &str) -> bool {
    k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.")
}
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// gzip (the default), on `threads` threads (pigz-style blocks, one gzip member).
    Gzip {
        /// 1–9.
        level: u32,
        /// Compression threads (1 = single-threaded).
        threads: usize,
    },
    /// zstd.
    Zstd {
        /// 1–19.
        level: i32,
    },
    /// No compression.
    None,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip {
            level: 6,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl Compression {
    /// The layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => MEDIA_GZIP,
            Compression::Zstd { .. } => MEDIA_ZSTD,
            Compression::None => MEDIA_TAR,
        }
    }
}

/// A layer blob written to the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// The compressed blob's digest.
    pub digest: Digest,
    /// The uncompressed tar's digest (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The blob's size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// A writer that hashes and counts what goes through it. The state is shared so it can be
/// read after a compressor that owns the writer has finished.
#[derive(Debug, Clone)]
struct Tally {
    state: Arc<Mutex<(Hasher, u64)>>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            state: Arc::new(Mutex::new((berth_oci::Algorithm::Sha256.hasher(), 0))),
        }
    }

    fn add(&self, buf: &[u8]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.update(buf);
        s.1 += buf.len() as u64;
    }

    fn finish(self) -> (Digest, u64) {
        let state = Arc::try_unwrap(self.state)
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_else(|arc| {
                let g = arc.lock().unwrap_or_else(|p| p.into_inner());
                (g.0.clone(), g.1)
            });
        (state.0.finish(), state.1)
    }
}

struct TallyWriter<W> {
    inner: W,
    tally: Tally,
}

impl<W: Write> Write for TallyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tally.add(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor between the tar and the file.
enum Encoder {
    Gzip(flate2::write::GzEncoder<TallyWriter<BufWriter<File>>>),
    ParGzip(
        gzp::par::compress::ParCompress<'static, gzp::deflate::Gzip, TallyWriter<BufWriter<File>>>,
    ),
    Zstd(zstd::stream::write::Encoder<'static, TallyWriter<BufWriter<File>>>),
    Plain(TallyWriter<BufWriter<File>>),
}

impl Encoder {
    fn new(c: Compression, out: TallyWriter<BufWriter<File>>) -> io::Result<Encoder> {
        Ok(match c {
            Compression::Gzip { level, threads } if threads > 1 => {
                let w = gzp::par::compress::ParCompressBuilder::<gzp::deflate::Gzip>::new()
                    .compression_level(flate2::Compression::new(level.min(9)))
                    .num_threads(threads)
                    .map_err(|e| io::Error::other(e.to_string()))?
                    .from_writer(out);
                Encoder::ParGzip(w)
            }
            Compression::Gzip { level, .. } => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.min(9)),
            )),
            Compression::Zstd { level } => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level)?)
            }
            Compression::None => Encoder::Plain(out),
        })
    }

    fn finish(self) -> io::Result<()> {
        let mut out = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::ParGzip(mut e) => {
                use gzp::ZWriter;
                e.finish().map_err(|e| io::Error::other(e.to_string()))?;
                return Ok(());
            }
            Encoder::Zstd(e) => e.finish()?,
            Encoder::Plain(w) => w,
        };
        out.flush()
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParGzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParGzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// Options for turning a directory into a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    /// Compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: the image's timestamps, and unless `keep_mtimes`, the most recent
    /// file time a layer may hold (later ones are clamped to it), for reproducible layers —
    /// BuildKit's `rewrite-timestamp=true`.
    pub epoch: Option<i64>,
    /// Keep the files' own times in layers even with an epoch (BuildKit's default,
    /// `rewrite-timestamp=false`).
    pub keep_mtimes: bool,
}

/// Writes the changes in `upper` (an overlayfs upper directory, or any directory of new files)
/// as a layer blob into the store. Returns `None` when `upper` is empty (no layer).
pub fn write_layer(
    store: &Store,
    upper: &Path,
    opts: LayerOptions,
) -> Result<Option<LayerBlob>, BuildError> {
    let mut entries = Vec::new();
    collect(upper, Path::new(""), &mut entries)?;
    if entries.is_empty() {
        return Ok(None);
    }
    let mut tmp = store.temp_file()?;
    let file = tmp.take_file().ok_or_else(|| BuildError::Corrupt {
        path: tmp.path().to_path_buf(),
        reason: "temp file taken twice".into(),
    })?;
    let blob_tally = Tally::new();
    let diff_tally = Tally::new();
    let out = TallyWriter {
        inner: BufWriter::with_capacity(1 << 20, file.try_clone().map_err(io(tmp.path()))?),
        tally: blob_tally.clone(),
    };
    let encoder = Encoder::new(opts.compression, out).map_err(io(tmp.path()))?;
    let tar_out = TallyWriter {
        inner: encoder,
        tally: diff_tally.clone(),
    };
    let mut builder = tar::Builder::new(BufWriter::with_capacity(256 * 1024, tar_out));
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for rel in &entries {
        let clamp_to = if opts.keep_mtimes { None } else { opts.epoch };
        append_entry(&mut builder, upper, rel, &mut links, clamp_to)?;
    }
    let tar_out = builder
        .into_inner()
        .and_then(|b| b.into_inner().map_err(|e| e.into_error()))
        .map_err(io(tmp.path()))?;
    tar_out.inner.finish().map_err(io(tmp.path()))?;
    tmp.put_file(file);
    let (digest, size) = blob_tally.finish();
    let (diff_id, _) = diff_tally.finish();
    if !store.has_blob(&digest) {
        store.commit_blob(tmp, &digest)?;
    }
    Ok(Some(LayerBlob {
        digest,
        diff_id,
        size,
        media_type: opts.compression.media_type().to_owned(),
    }))
}

/// Every path under `dir` (relative), depth first, names sorted bytewise, parents first.
fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), BuildError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let r = rel.join(&name);
        let meta = fs::symlink_metadata(root.join(&r)).map_err(io(root.join(&r)))?;
        out.push(r.clone());
        if meta.is_dir() {
            collect(root, &r, out)?;
        }
    }
    Ok(())
}

fn xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 65536];
            rustix::fs::llistxattr(path, &mut names).map_err(errno(path))?
        }
        Err(e) => return Err(errno(path)(e)),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 65536];
        let len = match rustix::fs::lgetxattr(path, name.as_str(), &mut value) {
            Ok(len) => len,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(errno(path)(e)),
        };
        value.truncate(len);
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

fn clamp(mtime: i64, epoch: Option<i64>) -> u64 {
    let t = match epoch {
        Some(e) if mtime > e => e,
        _ => mtime,
    };
    u64::try_from(t).unwrap_or(0)
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    epoch: Option<i64>,
) -> Result<(), BuildError> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
    let ft = meta.file_type();
    let wrap = |e: io::Error| io(&path)(e);
    // An overlayfs whiteout: a character device 0/0.
    if ft.is_char_device() && meta.rdev() == 0 {
        let name = rel.file_name().unwrap_or_default();
        let mut wh = OsStr::new(WHITEOUT_PREFIX).to_os_string();
        wh.push(name);
        let wh_path = rel.parent().unwrap_or(Path::new("")).join(wh);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(clamp(meta.mtime(), epoch));
        emit(builder, h, &wh_path, None, &[], &mut io::empty()).map_err(wrap)?;
        return Ok(());
    }
    let mut attrs = xattrs(&path)?;
    let opaque = ft.is_dir()
        && attrs.iter().any(|(k, v)| {
            k.ends_with(".overlay.opaque") && is_overlay_xattr(k) && v.as_slice() == b"y"
        });
    if let Some((k, _)) = attrs.iter().find(|(k, _)| {
        is_overlay_xattr(k) && (k.contains(".overlay.redirect") || k.contains(".overlay.metacopy"))
    }) {
        return Err(BuildError::Corrupt {
            path,
            reason: format!(
                "overlayfs feature {k} in a step's changes (mount with redirect_dir=off,metacopy=off)"
            ),
        });
    }
    attrs.retain(|(k, _)| !is_overlay_xattr(k));
    let mut h = tar::Header::new_ustar();
    h.set_mode(meta.permissions().mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(clamp(meta.mtime(), epoch));
    h.set_size(0);
    let mut link_target: Option<PathBuf> = None;
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
    } else if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        link_target = Some(fs::read_link(&path).map_err(wrap)?);
    } else if ft.is_file() {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&key) {
                h.set_entry_type(tar::EntryType::Link);
                let first = first.clone();
                emit(builder, h, rel, Some(&first), &attrs, &mut io::empty()).map_err(wrap)?;
                return Ok(());
            }
            links.insert(key, rel.to_path_buf());
        }
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        let mut f = File::open(&path).map_err(wrap)?;
        emit(builder, h, rel, None, &attrs, &mut f).map_err(wrap)?;
        return Ok(());
    } else if ft.is_char_device() || ft.is_block_device() {
        h.set_entry_type(if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        });
        let rdev = meta.rdev();
        h.set_device_major(rustix::fs::major(rdev)).map_err(wrap)?;
        h.set_device_minor(rustix::fs::minor(rdev)).map_err(wrap)?;
    } else if ft.is_fifo() {
        h.set_entry_type(tar::EntryType::Fifo);
    } else {
        // Sockets are not part of images.
        return Ok(());
    }
    emit(
        builder,
        h,
        rel,
        link_target.as_deref(),
        &attrs,
        &mut io::empty(),
    )
    .map_err(wrap)?;
    if opaque {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(clamp(meta.mtime(), epoch));
        emit(
            builder,
            h,
            &rel.join(OPAQUE_MARKER),
            None,
            &[],
            &mut io::empty(),
        )
        .map_err(wrap)?;
    }
    Ok(())
}

/// Writes one entry, with PAX records for long names and link targets and for xattrs.
fn emit<W: Write>(
    builder: &mut tar::Builder<W>,
    mut h: tar::Header,
    rel: &Path,
    link: Option<&Path>,
    attrs: &[(String, Vec<u8>)],
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut name = rel.as_os_str().as_bytes().to_vec();
    if h.entry_type() == tar::EntryType::Directory {
        name.push(b'/');
    }
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if name.len() > 100 {
        pax.push(("path".into(), name.clone()));
    }
    if let Some(l) = link {
        let lb = l.as_os_str().as_bytes();
        if lb.len() > 100 {
            pax.push(("linkpath".into(), lb.to_vec()));
        }
    }
    for (k, v) in attrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    // The ustar name field: what fits (the PAX record carries the full name).
    let short = &name[..name.len().min(100)];
    h.as_old_mut().name[..short.len()].copy_from_slice(short);
    if let Some(l) = link {
        let lb = l.as_os_str().as_bytes();
        let short = &lb[..lb.len().min(100)];
        h.as_old_mut().linkname[..short.len()].copy_from_slice(short);
    }
    h.set_cksum();
    builder.append(&h, data)
}

/// Unpacks a layer blob into a new snapshot directory (overlayfs format) in the store, unless
/// the store has it already. Returns the snapshot's path.
pub fn unpack_layer(store: &Store, layer: &LayerBlob) -> Result<PathBuf, BuildError> {
    if let Some(dir) = store.snapshot(&layer.diff_id)? {
        return Ok(dir);
    }
    let blob = store.blob_path(&layer.digest);
    let file = File::open(&blob).map_err(io(&blob))?;
    let tmp = store.temp_dir("unpack")?;
    let tally = Tally::new();
    let reader = TallyReader {
        inner: decompressor(BufReader::with_capacity(1 << 20, file)).map_err(io(&blob))?,
        tally: tally.clone(),
    };
    unpack_tar(reader, tmp.path(), UnpackMode::Layer).map_err(|e| match e {
        BuildError::Io { path, source } if path == Path::new("") => BuildError::Io {
            path: blob.clone(),
            source,
        },
        other => other,
    })?;
    let (diff_id, _) = tally.finish();
    if diff_id != layer.diff_id {
        return Err(BuildError::Corrupt {
            path: blob,
            reason: format!(
                "layer uncompresses to {diff_id}, but the image config says {}",
                layer.diff_id
            ),
        });
    }
    store.commit_snapshot(tmp, &layer.diff_id)
}

struct TallyReader<R> {
    inner: R,
    tally: Tally,
}

impl<R: Read> Read for TallyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.add(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks a layer (gzip, zstd or plain tar) held in memory under `root`, as a base image's
/// layer is unpacked into a snapshot: the entry point of the layer fuzz target.
#[doc(hidden)]
pub fn unpack_layer_bytes(data: &[u8], root: &Path) -> Result<(), BuildError> {
    let reader = decompressor(BufReader::new(io::Cursor::new(data.to_vec()))).map_err(|e| {
        BuildError::Io {
            path: root.to_path_buf(),
            source: e,
        }
    })?;
    unpack_tar(reader, root, UnpackMode::Layer)
}

/// A reader that decompresses gzip or zstd by magic number, or passes a plain tar through.
pub fn decompressor<R: Read + Send + 'static>(
    mut r: BufReader<R>,
) -> io::Result<Box<dyn Read + Send>> {
    use std::io::BufRead;
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// What an unpack writes whiteouts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnpackMode {
    /// Into an empty snapshot directory: OCI whiteouts become overlayfs whiteouts.
    Layer,
    /// Into a live filesystem (ADD of a local archive): entries are written as they are;
    /// whiteout files are ordinary files there.
    Plain,
}

/// The relative, cleaned path of a tar entry; `None` for the root itself. Refuses names that
/// climb out (`..`) — a layer may not write outside its root.
pub(crate) fn clean_entry_path(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    let p = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "entry {} climbs out of the layer",
                    String::from_utf8_lossy(raw)
                ));
            }
            Component::Prefix(_) => return Err("unexpected path prefix".into()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Makes sure every parent of `rel` under `root` is a real directory (never a symlink), creating
/// missing ones with mode 0755.
pub(crate) fn ensure_parents(root: &Path, rel: &Path) -> Result<(), BuildError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    // A file or symlink where a directory must be: replaced, as tar does.
                    fs::remove_file(&cur).map_err(io(&cur))?;
                    fs::create_dir(&cur).map_err(io(&cur))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(io(&cur))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(io(&cur))?;
                }
                Err(e) => return Err(io(&cur)(e)),
            }
        }
    }
    Ok(())
}

/// Where `rel` is inside a live rootfs: its parent resolved inside the root (created when
/// missing), its last component as named.
fn confined(root: &Path, rel: &Path) -> Result<PathBuf, BuildError> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = crate::context::resolve_dest(root, parent).map_err(|p| BuildError::Corrupt {
        path: root.join(rel),
        reason: p.reason(false),
    })?;
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir.join(rel.file_name().unwrap_or_default()))
}

/// Removes whatever is at `path` (a file, a symlink or a whole directory tree).
pub(crate) fn remove_any(path: &Path) -> Result<(), BuildError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io(path)),
        Ok(_) => fs::remove_file(path).map_err(io(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Unpacks a tar stream under `root`, then reads the stream to its end (the end-of-archive
/// blocks and any padding count in a layer's diff id).
pub(crate) fn unpack_tar<R: Read>(
    reader: R,
    root: &Path,
    mode: UnpackMode,
) -> Result<(), BuildError> {
    let mut archive = tar::Archive::new(reader);
    unpack_entries(&mut archive, root, mode)?;
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| BuildError::Io {
        path: PathBuf::new(),
        source: e,
    })?;
    Ok(())
}

fn unpack_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    root: &Path,
    mode: UnpackMode,
) -> Result<(), BuildError> {
    let root_io = |e: io::Error| BuildError::Io {
        path: PathBuf::new(),
        source: e,
    };
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries().map_err(root_io)? {
        let mut entry = entry.map_err(root_io)?;
        let raw = entry.path_bytes().into_owned();
        let rel = match clean_entry_path(&raw) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(reason) => {
                return Err(BuildError::Corrupt {
                    path: root.to_path_buf(),
                    reason,
                });
            }
        };
        let name = rel.file_name().unwrap_or_default().as_bytes().to_vec();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if mode == UnpackMode::Layer && name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            ensure_parents(root, &rel)?;
            let dir = root.join(&parent);
            if name == OPAQUE_MARKER.as_bytes() {
                rustix::fs::lsetxattr(&dir, opaque_xattr(), b"y", rustix::fs::XattrFlags::empty())
                    .map_err(errno(&dir))?;
            } else {
                let target = dir.join(OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]));
                remove_any(&target)?;
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &target,
                    rustix::fs::FileType::CharacterDevice,
                    Mode::empty(),
                    0,
                )
                .map_err(errno(&target))?;
            }
            continue;
        }
        let target = match mode {
            // A fresh snapshot directory: parents are made real directories.
            UnpackMode::Layer => {
                ensure_parents(root, &rel)?;
                root.join(&rel)
            }
            // A live rootfs: parents resolve inside it (a symlinked /lib stays a symlink, and
            // no symlink leads out of the root).
            UnpackMode::Plain => confined(root, &rel)?,
        };
        let header = entry.header().clone();
        let ty = header.entry_type();
        // Empty numeric fields read as 0, as Go's archive/tar (which wrote most layers) does.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let perm = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header
            .mtime()
            .ok()
            .and_then(|m| i64::try_from(m).ok())
            .unwrap_or(0);
        let mut xattrs_to_set = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(io(&target))? {
            for ext in exts {
                let ext = ext.map_err(io(&target))?;
                if let Some(k) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    xattrs_to_set.push((k.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        let existing = fs::symlink_metadata(&target).ok();
        if !(ty.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir())) {
            remove_any(&target)?;
        }
        match ty {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&target).map_err(io(&target))?;
                }
                dir_times.push((target.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut f = File::create(&target).map_err(io(&target))?;
                io::copy(&mut entry, &mut f).map_err(io(&target))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(io(&target))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let Ok(Some(src_rel)) = clean_entry_path(&link) else {
                    return Err(BuildError::Corrupt {
                        path: target,
                        reason: "hard link to an invalid path".into(),
                    });
                };
                let src = match mode {
                    UnpackMode::Layer => root.join(&src_rel),
                    UnpackMode::Plain => confined(root, &src_rel)?,
                };
                match fs::symlink_metadata(&src) {
                    Ok(m) if !m.is_dir() && !m.file_type().is_char_device() => {
                        fs::hard_link(&src, &target).map_err(io(&target))?;
                    }
                    _ => {
                        return Err(BuildError::Corrupt {
                            path: target,
                            reason: format!(
                                "hard link to {}, which is not earlier in the same layer",
                                src_rel.display()
                            ),
                        });
                    }
                }
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let kind = match ty {
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    tar::EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                match rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &target,
                    kind,
                    Mode::from_raw_mode(perm),
                    rustix::fs::makedev(major, minor),
                ) {
                    Ok(()) => {}
                    // A user namespace may not create devices (podman and buildah skip them
                    // the same way); a container's /dev is mounted over anyway.
                    Err(rustix::io::Errno::PERM)
                        if kind != rustix::fs::FileType::Fifo
                            && crate::rootless::in_user_namespace() =>
                    {
                        tracing::warn!(
                            path = %rel.display(),
                            "device node skipped: a user namespace cannot create devices"
                        );
                        continue;
                    }
                    Err(e) => return Err(errno(&target)(e)),
                }
            }
            // PAX/GNU metadata entries are consumed by the tar reader; anything else is
            // skipped, as BuildKit's differ does.
            _ => continue,
        }
        apply_meta(
            &target,
            ty == tar::EntryType::Symlink,
            uid,
            gid,
            perm,
            mtime,
            &xattrs_to_set,
        )?;
    }
    // Directory mtimes last: creating entries inside them changed them.
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime, false)?;
    }
    Ok(())
}

/// Owner, permissions, xattrs and mtime of an unpacked entry.
pub(crate) fn apply_meta(
    target: &Path,
    symlink: bool,
    uid: u64,
    gid: u64,
    perm: u32,
    mtime: i64,
    xattrs: &[(String, Vec<u8>)],
) -> Result<(), BuildError> {
    let uid = u32::try_from(uid).unwrap_or(0);
    let gid = u32::try_from(gid).unwrap_or(0);
    if rustix::process::geteuid().is_root() {
        lchown(target, uid, gid)?;
    }
    if !symlink {
        // After chown: chown clears setuid/setgid bits.
        fs::set_permissions(target, fs::Permissions::from_mode(perm)).map_err(io(target))?;
    }
    for (k, v) in xattrs {
        match rustix::fs::lsetxattr(target, k.as_str(), v, rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(errno(target)(e)),
        }
    }
    set_mtime(target, mtime, symlink)
}

/// `lchown`, explaining the failure a rootless build gives for an id outside its mapping.
pub(crate) fn lchown(target: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
            && crate::rootless::in_user_namespace()
        {
            BuildError::Io {
                path: target.to_path_buf(),
                source: io::Error::other(format!(
                    "owner {uid}:{gid} is outside this user namespace's id mapping: the \
                     subordinate ranges in /etc/subuid and /etc/subgid must cover ids up to \
                     {} (a range of 65536 covers 0–65536)",
                    uid.max(gid)
                )),
            }
        } else {
            io(target)(e)
        }
    })
}

pub(crate) fn set_mtime(target: &Path, mtime: i64, symlink: bool) -> Result<(), BuildError> {
    let ts = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    let flags = if symlink {
        AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::empty()
    };
    rustix::fs::utimensat(rustix::fs::CWD, target, &times, flags).map_err(errno(target))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*ty);
            h.set_mode(0o644);
            match ty {
                tar::EntryType::Link | tar::EntryType::Symlink => {
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    h.set_path(name).unwrap();
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn archives_added_to_a_rootfs_stay_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/shadow"), "image shadow").unwrap();
        // Absolute symlinks mean the rootfs's paths, not the host's.
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        let t = tar_of(&[
            ("lib/x.so", tar::EntryType::Regular, "x"),
            ("hard", tar::EntryType::Link, "evil/shadow"),
        ]);
        unpack_tar(&t[..], &root, UnpackMode::Plain).unwrap();
        assert!(
            fs::symlink_metadata(root.join("lib"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(root.join("usr/lib/x.so")).unwrap(), "x");
        assert_eq!(
            fs::read_to_string(root.join("hard")).unwrap(),
            "image shadow"
        );
        // `..` never climbs out.
        let bad = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(1);
            h.as_gnu_mut().unwrap().name[..11].copy_from_slice(b"../escaped\0");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.into_inner().unwrap()
        };
        assert!(unpack_tar(&bad[..], &root, UnpackMode::Plain).is_err());
        assert!(!dir.path().join("escaped").exists());
    }

    #[test]
    fn layers_round_trip_with_whiteouts_and_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("keep/sub")).unwrap();
        fs::write(upper.join("keep/sub/file"), "content").unwrap();
        fs::write(upper.join("a-long-name-".repeat(12)), "long").unwrap();
        std::os::unix::fs::symlink("keep/sub/file", upper.join("link")).unwrap();
        // An overlay whiteout and an opaque directory.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("deleted"),
            rustix::fs::FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir(upper.join("opaque")).unwrap();
        rustix::fs::lsetxattr(
            upper.join("opaque"),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let opts = LayerOptions {
            compression: Compression::Gzip {
                level: 6,
                threads: 2,
            },
            epoch: Some(1_000),
            keep_mtimes: false,
        };
        let a = write_layer(&store, &upper, opts).unwrap().unwrap();
        let b = write_layer(&store, &upper, opts).unwrap().unwrap();
        assert_eq!(a, b, "the same directory gives the same layer");
        // The tar speaks OCI: .wh.deleted and opaque/.wh..wh..opq.
        let f = File::open(store.blob_path(&a.digest)).unwrap();
        let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(f))
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert!(names.contains(&".wh.deleted".to_owned()), "{names:?}");
        assert!(
            names.contains(&"opaque/.wh..wh..opq".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"a-long-name-".repeat(12)), "{names:?}");
        // Unpacked back into a snapshot: overlay's spelling again.
        let snap = unpack_layer(&store, &a).unwrap();
        let m = fs::symlink_metadata(snap.join("deleted")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        let mut v = [0u8; 4];
        let n = rustix::fs::lgetxattr(snap.join("opaque"), OPAQUE_XATTR, &mut v).unwrap();
        assert_eq!(&v[..n], b"y");
        assert_eq!(
            fs::read_to_string(snap.join("keep/sub/file")).unwrap(),
            "content"
        );
        assert_eq!(
            fs::read_link(snap.join("link")).unwrap(),
            Path::new("keep/sub/file")
        );
        assert_eq!(
            fs::symlink_metadata(snap.join("keep/sub/file"))
                .unwrap()
                .mtime(),
            1_000
        );
        // zstd and uncompressed layers carry the same tar (same diff id).
        for c in [Compression::Zstd { level: 3 }, Compression::None] {
            let l = write_layer(
                &store,
                &upper,
                LayerOptions {
                    compression: c,
                    epoch: Some(1_000),
                    keep_mtimes: false,
                },
            )
            .unwrap()
            .unwrap();
            assert_eq!(l.diff_id, a.diff_id);
            assert_ne!(l.digest, a.digest);
        }
    }
}
