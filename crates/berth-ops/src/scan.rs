//! Scanning an image from any source `berth copy` reads: each platform's layers streamed once
//! through `berth-scan` (inventories cached by layer digest, so shared layers are read once),
//! merged with whiteouts honoured, matched against the offline OSV database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_client::image::{ImageSource, read_blob};
use berth_oci::{Digest, Manifest, ManifestKind, Platform, RefKind};
use berth_scan::cache::InventoryCache;
use berth_scan::db::{Database, ImportReport, Status};
use berth_scan::layer::Limits;
pub use berth_scan::matcher::Finding;
pub use berth_scan::osv::Severity;
pub use berth_scan::suppress::Suppressed;
use berth_scan::suppress::Suppressions;
use berth_scan::{ImageInventory, LayerInventory, Located, OsRelease};
use futures::TryStreamExt as _;
use schemars::JsonSchema;
use serde::Serialize;

use crate::endpoint::{Bare, Endpoint};
use crate::error::{OpsError, Result, ResultExt};

/// The largest image config read.
const MAX_CONFIG: u64 = 16 * 1024 * 1024;

/// The vulnerability database's default directory: `$BERTH_SCAN_DB`, else `osv/` in berth's
/// cache directory.
pub fn default_db_dir() -> PathBuf {
    std::env::var_os("BERTH_SCAN_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| berth_client::ecr::cache_root().join("osv"))
}

/// The layer inventory cache's default directory.
pub fn default_inventory_dir() -> PathBuf {
    berth_client::ecr::cache_root().join("inventories")
}

/// What to scan and how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ScanRequest {
    /// The image: `REF`, `oci:DIR[:TAG]`, `oci-archive:FILE`, `docker-archive:FILE`.
    pub image: String,
    /// Only these platforms of an index (empty: every one).
    pub platforms: Vec<Platform>,
    /// The OSV database directory (default [`default_db_dir`]).
    pub db: Option<PathBuf>,
    /// The inventory cache (default [`default_inventory_dir`]).
    pub cache: Option<PathBuf>,
    /// Registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// `.trivyignore` files: their advisory ids are suppressed.
    pub ignore_files: Vec<PathBuf>,
    /// OpenVEX documents: their `not_affected` and `fixed` statements are suppressed.
    pub vex: Vec<PathBuf>,
    /// The base image (any source), whose layers the image's first layers are; default: the
    /// image's `org.opencontainers.image.base.name` annotation, when it has one.
    pub base: Option<String>,
    /// Where to report each layer read (a layer found in the inventory cache is reported as
    /// skipped).
    pub progress: Option<std::sync::Arc<dyn berth_client::Progress>>,
    /// Packages only: no vulnerability database is opened (an SBOM).
    pub inventory_only: bool,
}

impl ScanRequest {
    /// A scan of `image` with the defaults.
    pub fn new(image: &str) -> ScanRequest {
        ScanRequest {
            image: image.to_owned(),
            ..ScanRequest::default()
        }
    }
}

/// One layer of a scanned image.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScannedLayer {
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// It is a layer of the base image.
    pub base: bool,
    /// Its inventory came from the cache (the layer was not read).
    pub cached: bool,
    /// Packages its evidence files list.
    pub packages: usize,
}

/// One platform's scan.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScanReport {
    /// The image as named.
    pub image: String,
    /// The platform manifest's digest.
    pub digest: String,
    /// Its media type and size (the subject of attached documents).
    pub media_type: String,
    pub size: u64,
    /// `linux/amd64`, as the config says.
    pub platform: Option<String>,
    /// The distribution (`etc/os-release`).
    pub os: Option<OsRelease>,
    pub layers: Vec<ScannedLayer>,
    /// Every package, with the layer that introduced it.
    pub packages: Vec<Located>,
    /// The base image the layers were compared with, when known.
    pub base_image: Option<String>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Findings an ignore file or a VEX document suppressed, with the reason.
    pub suppressed: Vec<Suppressed>,
    /// Findings per severity.
    pub severity_counts: BTreeMap<String, usize>,
    /// What could not be read or matched.
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// The platform manifests of an image (the root itself when it is not an index).
async fn platform_manifests(
    src: &dyn ImageSource,
    image: &str,
    wanted: &[Platform],
) -> Result<Vec<(Digest, Manifest, String, u64)>> {
    let root = src.root().await.context(|| format!("reading {image}"))?;
    let parsed = root.parse()?;
    if parsed.kind != ManifestKind::Index {
        let (mt, size) = (root.media_type.clone(), root.bytes.len() as u64);
        return Ok(vec![(root.digest.clone(), parsed, mt, size)]);
    }
    let mut out = Vec::new();
    for c in parsed
        .references
        .iter()
        .filter(|r| r.kind == RefKind::Manifest)
    {
        // Attestation manifests (`unknown/unknown`) are not images.
        let p = c.platform.as_ref();
        if p.is_some_and(|p| p.os == "unknown") {
            continue;
        }
        if !wanted.is_empty() && !p.is_some_and(|p| wanted.iter().any(|w| w.matches(p))) {
            continue;
        }
        let m = src.manifest(&c.digest).await?;
        let (mt, size) = (m.media_type.clone(), m.bytes.len() as u64);
        out.push((c.digest.clone(), m.parse()?, mt, size));
    }
    if out.is_empty() {
        let list: Vec<String> = wanted.iter().map(ToString::to_string).collect();
        return Err(OpsError::usage(format!(
            "{image} has no image for {}",
            list.join(", ")
        )));
    }
    Ok(out)
}

/// The annotation naming an image's base image.
const BASE_NAME: &str = "org.opencontainers.image.base.name";

/// The layer digests of the base image's `platform` image (a note, and none, when it cannot be
/// read: attribution is then unknown, never wrong).
async fn base_layer_digests(
    base: &str,
    platform: Option<&str>,
    insecure: &[String],
    notes: &mut Vec<String>,
) -> Option<Vec<String>> {
    let wanted: Vec<Platform> = platform
        .and_then(|p| Platform::parse(p).ok())
        .into_iter()
        .collect();
    let read = async {
        let ep = Endpoint::parse(base, Bare::Registry, false, insecure)?;
        let src: &dyn ImageSource = ep.source()?;
        let found = platform_manifests(src, base, &wanted).await?;
        Ok::<_, OpsError>(
            found
                .into_iter()
                .next()
                .map(|(_, m, _, _)| {
                    m.references
                        .iter()
                        .skip(1)
                        .map(|r| r.digest.to_string())
                        .collect()
                })
                .unwrap_or_default(),
        )
    };
    match read.await {
        Ok(layers) => Some(layers),
        Err(e) => {
            notes.push(format!(
                "the base image {base} could not be read ({e}): findings are not attributed"
            ));
            None
        }
    }
}

/// Reads one layer into its inventory: the blob's verified stream bridged into the scanner's
/// blocking reader on a blocking thread.
async fn read_layer(
    src: &dyn ImageSource,
    digest: &Digest,
    size: u64,
    progress: Option<&std::sync::Arc<dyn berth_client::Progress>>,
) -> Result<LayerInventory> {
    if let Some(p) = progress {
        p.blob_started(digest, size, false);
    }
    let seen = progress.cloned();
    let d = digest.clone();
    let stream = src
        .blob(digest, size)
        .await?
        .inspect_ok(move |chunk| {
            if let Some(p) = &seen {
                p.blob_advanced(&d, chunk.len() as u64);
            }
        })
        .map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let what = digest.to_string();
    tokio::task::spawn_blocking(move || berth_scan::layer::read_layer(bridge, &Limits::default()))
        .await
        .map_err(|e| OpsError::usage(format!("layer {what}: the reader stopped: {e}")))?
        .map_err(|e| OpsError::Scan(Box::new(e)).context(format!("layer {what}")))
}

/// The ignore files and VEX documents of a request, read.
fn suppressions(req: &ScanRequest) -> Result<Suppressions> {
    let mut s = Suppressions::default();
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| OpsError::Io {
            path: p.clone(),
            source,
        })
    };
    let today = berth_scan::suppress::today();
    for p in &req.ignore_files {
        let text = String::from_utf8_lossy(&read(p)?).into_owned();
        s.add_ignore_file(&p.display().to_string(), &text, &today);
    }
    for p in &req.vex {
        s.add_openvex(&p.display().to_string(), &read(p)?)
            .map_err(|e| OpsError::usage(e.to_string()))?;
    }
    Ok(s)
}

/// Scans every platform asked for.
pub async fn scan_image(req: &ScanRequest) -> Result<Vec<ScanReport>> {
    let ep = Endpoint::parse(&req.image, Bare::Registry, false, &req.insecure)?;
    scan_source(ep.source()?, req).await
}

/// Scans every platform asked for of an image source already open (`req.image` names it in
/// the reports).
pub async fn scan_source(src: &dyn ImageSource, req: &ScanRequest) -> Result<Vec<ScanReport>> {
    let suppressions = suppressions(req)?;
    let cache = InventoryCache::new(&req.cache.clone().unwrap_or_else(default_inventory_dir));
    let db_dir = req.db.clone().unwrap_or_else(default_db_dir);
    let mut reports = Vec::new();
    for (digest, manifest, media_type, size) in
        platform_manifests(src, &req.image, &req.platforms).await?
    {
        let start = Instant::now();
        let mut notes = Vec::new();
        let cfg = manifest
            .references
            .first()
            .ok_or_else(|| OpsError::usage(format!("{}: a manifest without config", req.image)))?;
        let config: serde_json::Value =
            serde_json::from_slice(&read_blob(src, &cfg.digest, cfg.size, MAX_CONFIG).await?)
                .unwrap_or_default();
        let platform = config["os"].as_str().map(|os| {
            let arch = config["architecture"].as_str().unwrap_or("?");
            match config["variant"].as_str() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            }
        });
        // The base image: `--base`, else the annotation; its layers for this platform.
        let base_name = req
            .base
            .clone()
            .or_else(|| manifest.annotations.get(BASE_NAME).cloned());
        let base_layers = match &base_name {
            Some(b) => base_layer_digests(b, platform.as_deref(), &req.insecure, &mut notes)
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        // The image's first layers that are the base's, in order.
        let image_layers: Vec<&berth_oci::ManifestRef> =
            manifest.references.iter().skip(1).collect();
        let shared = image_layers
            .iter()
            .zip(&base_layers)
            .take_while(|(l, b)| l.digest.to_string() == **b)
            .count();
        let mut layers = Vec::new();
        let mut inventories = Vec::new();
        for (index, l) in image_layers.iter().enumerate() {
            let key = l.digest.to_string();
            let (inv, cached) = cache
                .get_or_read(&key, async {
                    let inv = read_layer(src, &l.digest, l.size, req.progress.as_ref()).await?;
                    if let Some(p) = &req.progress {
                        p.blob_done(&l.digest);
                    }
                    Ok::<_, OpsError>(inv)
                })
                .await?;
            if cached && let Some(p) = &req.progress {
                p.blob_started(&l.digest, l.size, true);
            }
            layers.push(ScannedLayer {
                digest: key,
                size: l.size,
                base: index < shared,
                cached,
                packages: inv.files.values().map(Vec::len).sum(),
            });
            inventories.push(inv);
        }
        let merged = ImageInventory::merge(&inventories);
        notes.extend(merged.notes.iter().cloned());
        let found = if req.inventory_only {
            Vec::new()
        } else {
            match_findings(&db_dir, merged.clone(), &mut notes).await?
        };
        let digest_s = digest.to_string();
        let (mut findings, suppressed) =
            suppressions.apply(found, &[req.image.as_str(), digest_s.as_str()]);
        if !base_layers.is_empty() {
            for f in &mut findings {
                f.from_base = Some(f.layer < shared);
            }
        }
        let mut severity_counts = BTreeMap::new();
        for f in &findings {
            *severity_counts
                .entry(f.severity.as_str().to_owned())
                .or_insert(0) += 1;
        }
        reports.push(ScanReport {
            image: req.image.clone(),
            digest: digest.to_string(),
            media_type,
            size,
            platform,
            os: merged.os_release,
            layers,
            packages: merged.packages,
            base_image: base_name.filter(|_| !base_layers.is_empty()),
            findings,
            suppressed,
            severity_counts,
            notes,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(reports)
}

/// Findings of an inventory, from the database in `dir` (a note, and none, when it is empty).
async fn match_findings(
    dir: &Path,
    inv: ImageInventory,
    notes: &mut Vec<String>,
) -> Result<Vec<Finding>> {
    let dir = dir.to_path_buf();
    let (found, empty) = tokio::task::spawn_blocking(move || {
        let db = Database::open(&dir)?;
        let empty = db.is_empty()?;
        Ok::<_, berth_scan::ScanError>((berth_scan::matcher::findings(&inv, &db)?, empty))
    })
    .await
    .map_err(|e| OpsError::usage(format!("matching stopped: {e}")))?
    .map_err(|e| OpsError::Scan(Box::new(e)))?;
    if empty {
        notes.push(
            "the vulnerability database is empty: fill it with `berth scan db update` (osv.dev) \
             or `berth scan db import DIR|ZIP` (OSV records, or osv.dev's per-ecosystem all.zip)"
                .to_owned(),
        );
    }
    Ok(found)
}

/// Keeps, in every report, the findings of these severities (all when empty) and, with
/// `fixed_only`, only those with a fixed version (trivy's `--severity` and `--ignore-unfixed`).
/// Returns how many remain.
pub fn filter_findings(
    reports: &mut [ScanReport],
    severities: &[Severity],
    fixed_only: bool,
) -> usize {
    let mut remaining = 0;
    for r in reports {
        r.findings.retain(|f| {
            (severities.is_empty() || severities.contains(&f.severity))
                && (!fixed_only || f.fixed_version.is_some())
        });
        remaining += r.findings.len();
    }
    remaining
}

/// Imports OSV records (files, directories, zips) into the database in `dir`.
pub fn import_db(dir: &Path, paths: &[PathBuf]) -> Result<ImportReport> {
    let mut db = Database::open(dir).map_err(|e| OpsError::Scan(Box::new(e)))?;
    let mut total = ImportReport::default();
    for p in paths {
        let r = db.import_path(p).map_err(|e| OpsError::Scan(Box::new(e)))?;
        total.imported += r.imported;
        total.unchanged += r.unchanged;
        total.rejected.extend(r.rejected);
    }
    Ok(total)
}

/// What the database in `dir` holds.
pub fn db_status(dir: &Path) -> Result<Status> {
    Database::open(dir)
        .and_then(|db| db.status())
        .map_err(|e| OpsError::Scan(Box::new(e)))
}

/// Where `berth scan db update` downloads from by default: osv.dev's public bucket.
pub const DEFAULT_OSV_BASE: &str = "https://osv-vulnerabilities.storage.googleapis.com";

/// The ecosystems `berth scan db update` downloads by default: those the scanner matches.
pub const DEFAULT_ECOSYSTEMS: &[&str] = &["Debian", "Ubuntu", "Alpine", "PyPI", "npm"];

/// The largest `all.zip` downloaded (osv.dev's largest are a few hundred MiB).
const MAX_ARCHIVE: u64 = 4 << 30;

/// What one ecosystem's download did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EcosystemUpdate {
    pub ecosystem: String,
    pub url: String,
    pub bytes: u64,
    pub imported: u64,
    pub unchanged: u64,
    pub rejected: usize,
}

/// Downloads each ecosystem's `all.zip` from `base` (`BASE/ECOSYSTEM/all.zip`) into a
/// temporary file beside the database, streaming with a size bound, and imports it (one
/// transaction per archive: an interrupted update leaves the database as it was).
pub async fn update_db(
    dir: &Path,
    base: &str,
    ecosystems: &[String],
) -> Result<Vec<EcosystemUpdate>> {
    use futures::StreamExt as _;
    use std::io::Write as _;
    std::fs::create_dir_all(dir).map_err(|source| OpsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OpsError::usage(format!("an HTTP client: {e}")))?;
    let mut out = Vec::new();
    for eco in ecosystems {
        let url = format!(
            "{}/{}/all.zip",
            base.trim_end_matches('/'),
            eco.replace(':', "%3A").replace(' ', "%20")
        );
        let failed = |what: String| {
            OpsError::Client(berth_client::ClientError::Http(format!("{url}: {what}")))
        };
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(failed(format!("HTTP {}", resp.status())));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".download-")
            .suffix(".zip")
            .tempfile_in(dir)
            .map_err(|source| OpsError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        let mut bytes = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| failed(e.to_string()))?;
            bytes += chunk.len() as u64;
            if bytes > MAX_ARCHIVE {
                return Err(failed(format!("more than {MAX_ARCHIVE} bytes")));
            }
            tmp.write_all(&chunk).map_err(|source| OpsError::Io {
                path: tmp.path().to_path_buf(),
                source,
            })?;
        }
        let path = tmp.path().to_path_buf();
        let dir2 = dir.to_path_buf();
        let r = tokio::task::spawn_blocking(move || import_db(&dir2, &[path]))
            .await
            .map_err(|e| failed(e.to_string()))??;
        drop(tmp);
        out.push(EcosystemUpdate {
            ecosystem: eco.clone(),
            url,
            bytes,
            imported: r.imported,
            unchanged: r.unchanged,
            rejected: r.rejected.len(),
        });
    }
    Ok(out)
}

/// The artifact type of the documents `attach` pushes.
pub use crate::attest::SBOM_ARTIFACT_TYPE;

/// Pushes each report's CycloneDX document (packages and findings) beside the image as an OCI
/// 1.1 referrer of its platform manifest (`subject`), so `berth copy` carries it and
/// `GET /v2/…/referrers/…` lists it. Returns the referrers' digests.
pub async fn attach(req: &ScanRequest, reports: &[ScanReport]) -> Result<Vec<String>> {
    let docs: Vec<crate::attest::Attachment> = reports
        .iter()
        .map(|r| crate::attest::Attachment {
            subject: crate::attest::Subject {
                media_type: r.media_type.clone(),
                digest: r.digest.clone(),
                size: r.size,
            },
            artifact_type: SBOM_ARTIFACT_TYPE,
            document: crate::scan_format::cyclonedx(r),
            layer_annotations: None,
        })
        .collect();
    crate::attest::attach(&req.image, &req.insecure, &docs).await
}
