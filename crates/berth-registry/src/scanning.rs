//! Image scanning in the registry (ECR's basic scanning): scan on push and `StartImageScan`
//! queue a job for a bounded pool of background workers, so a push's response never waits for
//! a scan. A worker reads the image's layers from the blob store as streams through
//! `berth-scan` (inventories cached by layer digest, so layers shared between images are read
//! once), matches the merged inventory against the offline OSV database, and records the result
//! in the metadata store. The status is recorded `IN_PROGRESS` before the job is queued; at
//! start the registry queues again every scan a crash left `IN_PROGRESS`, so none stays stuck.
//! An index is scanned as the union of its platform images' findings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_oci::{Digest, Manifest, ManifestKind, RefKind, RepoName, media};
use berth_scan::cache::InventoryCache;
use berth_scan::db::Database;
use berth_scan::layer::Limits;
use berth_scan::matcher::Finding;
use berth_scan::{ImageInventory, LayerInventory};
use berth_store::ScanRecord;
use futures::TryStreamExt as _;
use tokio::sync::{Mutex, mpsc};

use crate::error::RegistryError;
use crate::service::Registry;

/// Where the scanner keeps its data, and how much runs at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanConfig {
    /// The OSV database directory (`berth scan db import` fills one).
    pub db_dir: PathBuf,
    /// Layer inventories, by layer digest.
    pub cache_dir: PathBuf,
    /// Scans running at once.
    pub workers: usize,
    /// Scans waiting at most; beyond, a scan fails at once (start it again later).
    pub queue: usize,
}

impl ScanConfig {
    /// The defaults under a data directory: `scan/osv` and `scan/inventories`.
    pub fn under(data: &std::path::Path) -> ScanConfig {
        ScanConfig {
            db_dir: data.join("scan/osv"),
            cache_dir: data.join("scan/inventories"),
            workers: 2,
            queue: 1000,
        }
    }
}

/// The registry setting that holds the registry scanning configuration.
pub(crate) const SCANNING_CONFIGURATION: &str = "registry_scanning_configuration";

/// The registry scanning configuration (`PutRegistryScanningConfiguration`): `BASIC` scanning
/// with rules that scan on push or continuously the repositories their filters match.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScanningConfiguration {
    pub(crate) scan_type: String,
    #[serde(default)]
    pub(crate) rules: Vec<ScanningRule>,
}

/// One rule: a frequency and the repositories it applies to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScanningRule {
    pub(crate) scan_frequency: String,
    pub(crate) repository_filters: Vec<RepositoryFilter>,
}

/// A repository name pattern (`*` wildcards).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepositoryFilter {
    pub(crate) filter: String,
    pub(crate) filter_type: String,
}

impl ScanningConfiguration {
    /// Whether a rule of one of `frequencies` matches the repository.
    pub(crate) fn covers(&self, repo: &str, frequencies: &[&str]) -> bool {
        self.rules
            .iter()
            .filter(|r| frequencies.contains(&r.scan_frequency.as_str()))
            .flat_map(|r| &r.repository_filters)
            .any(|f| berth_iam::policy::wildcard_match(&f.filter, repo, false))
    }
}

impl Registry {
    /// The registry scanning configuration (default: `BASIC`, no rules).
    pub(crate) async fn scanning_configuration(
        &self,
    ) -> Result<ScanningConfiguration, RegistryError> {
        let text = self.identity().setting(SCANNING_CONFIGURATION).await?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| ScanningConfiguration {
                scan_type: "BASIC".into(),
                rules: Vec::new(),
            }))
    }

    /// Whether a push into `repo` is scanned: the repository's own `scanOnPush`, or a
    /// registry rule (`SCAN_ON_PUSH` or `CONTINUOUS_SCAN`) that matches it. Never, without a
    /// scanner. The configuration is read from the store on each push, not cached: another
    /// replica may have changed it.
    pub(crate) async fn scans_on_push(
        &self,
        repo: &RepoName,
        own: bool,
    ) -> Result<bool, RegistryError> {
        if self.scanner().is_none() {
            return Ok(false);
        }
        if own {
            return Ok(true);
        }
        Ok(self
            .scanning_configuration()
            .await?
            .covers(repo.as_str(), &["SCAN_ON_PUSH", "CONTINUOUS_SCAN"]))
    }

    /// When the scan database was last updated (seconds), if scanning is configured and the
    /// database was ever filled.
    pub async fn scan_db_updated(&self) -> Option<i64> {
        let db_dir = self.scanner()?.db_dir.clone();
        tokio::task::spawn_blocking(move || {
            Database::open(&db_dir)
                .and_then(|d| d.updated_at())
                .ok()
                .flatten()
        })
        .await
        .ok()
        .flatten()
    }

    /// Continuous scanning: when the vulnerability database's update time differs from the one
    /// last seen (at start, by [`Registry::resume_scans`]), queues again every scanned image of
    /// the repositories a `CONTINUOUS_SCAN` rule matches (their layer inventories are cached:
    /// no layer is read again). Returns how many were queued.
    pub async fn rescan_if_updated(&self) -> Result<usize, RegistryError> {
        let Some(scanner) = self.scanner() else {
            return Ok(0);
        };
        let updated = self.scan_db_updated().await;
        let seen = *scanner.seen.lock().unwrap_or_else(|p| p.into_inner());
        if updated.is_none() || updated == seen {
            return Ok(0);
        }
        // Replicas sharing a database each see an update of their own scan database: one of
        // them (the lease holder for the poll period) queues the rescans.
        if self.config().shared_stores
            && !self
                .meta()
                .acquire_lease("continuous-scan", self.instance_id(), 10 * 60 * 1000)
                .await?
        {
            *scanner.seen.lock().unwrap_or_else(|p| p.into_inner()) = updated;
            return Ok(0);
        }
        let config = self.scanning_configuration().await?;
        let mut n = 0;
        for (repo, digest) in self.meta().scanned_images().await? {
            if config.covers(&repo, &["CONTINUOUS_SCAN"])
                && let Ok(r) = RepoName::parse(&repo)
            {
                self.queue_scan(&r, &digest).await?;
                n += 1;
            }
        }
        tracing::info!(
            images = n,
            "the vulnerability database changed: continuous scans queued"
        );
        *scanner.seen.lock().unwrap_or_else(|p| p.into_inner()) = updated;
        Ok(n)
    }
}

/// A queued scan.
type Job = (RepoName, Digest);

/// The scan queue the registry hands jobs to.
#[derive(Debug)]
pub(crate) struct Scanner {
    tx: mpsc::Sender<Job>,
    /// The database update time continuous scanning last acted on.
    seen: std::sync::Mutex<Option<i64>>,
    db_dir: PathBuf,
}

pub(crate) const IN_PROGRESS: &str = "IN_PROGRESS";

/// With shared stores, a scan in progress this long (milliseconds) is presumed abandoned by its
/// replica and taken over by one that starts.
const SHARED_SCAN_TAKEOVER_MS: i64 = 30 * 60 * 1000;
pub(crate) const COMPLETE: &str = "COMPLETE";
pub(crate) const FAILED: &str = "FAILED";
pub(crate) const UNSUPPORTED: &str = "UNSUPPORTED_IMAGE";

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Scanner {
    /// Starts the workers over `registry` (which must not hold this scanner: workers only read
    /// the stores).
    pub(crate) fn start(registry: Registry, config: ScanConfig) -> Scanner {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.workers.max(1) {
            let (rx, reg, cfg) = (Arc::clone(&rx), registry.clone(), config.clone());
            tokio::spawn(async move {
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some((repo, digest)) = job else { break };
                    run(&reg, &cfg, &repo, &digest).await;
                }
            });
        }
        Scanner {
            tx,
            seen: std::sync::Mutex::new(None),
            db_dir: config.db_dir,
        }
    }
}

impl Registry {
    /// Queues a scan of an image (recorded `IN_PROGRESS` first). `Ok(false)`: scanning is not
    /// configured.
    pub(crate) async fn queue_scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let Some(scanner) = self.scanner() else {
            return Ok(false);
        };
        let now = millis(self.clock.now());
        let mut rec = ScanRecord {
            status: IN_PROGRESS.into(),
            description: "The scan is in progress.".into(),
            updated_at: now,
            completed_at: None,
            source_updated_at: None,
            findings: None,
        };
        self.meta().put_scan(repo, digest, &rec).await?;
        if scanner.tx.try_send((repo.clone(), digest.clone())).is_err() {
            rec.status = FAILED.into();
            rec.description =
                "The scan queue is full; start the scan again with StartImageScan.".into();
            self.meta().put_scan(repo, digest, &rec).await?;
        }
        Ok(true)
    }

    /// Queues again the scans a stop left `IN_PROGRESS`; returns how many. Also notes the
    /// database's update time, the one continuous scanning compares with.
    pub async fn resume_scans(&self) -> Result<usize, RegistryError> {
        let Some(scanner) = self.scanner() else {
            return Ok(0);
        };
        // The database as it is now: what continuous scanning compares with.
        let now = self.scan_db_updated().await;
        *scanner.seen.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let pending = self.meta().scans_in_progress().await?;
        // With a shared database, a scan another replica is running looks the same: only
        // scans left in progress for long are taken over.
        let stale_before = millis(self.clock.now()).saturating_sub(SHARED_SCAN_TAKEOVER_MS);
        let mut n = 0;
        for (repo, digest) in pending {
            let Ok(r) = RepoName::parse(&repo) else {
                continue;
            };
            if self.config().shared_stores
                && self
                    .meta()
                    .scan(&r, &digest)
                    .await?
                    .is_some_and(|rec| rec.updated_at > stale_before)
            {
                continue;
            }
            self.queue_scan(&r, &digest).await?;
            n += 1;
        }
        Ok(n)
    }
}

/// One job: scan, then record the outcome.
async fn run(reg: &Registry, cfg: &ScanConfig, repo: &RepoName, digest: &Digest) {
    // The crash test's point: the scan recorded IN_PROGRESS, nothing scanned yet.
    reg.crash_point("scan-started");
    let started = std::time::Instant::now();
    if let Some(m) = reg.metrics() {
        m.scans_running.inc();
    }
    let outcome = scan(reg, cfg, repo, digest).await;
    if let Some(m) = reg.metrics() {
        m.scans_running.dec();
    }
    let now = millis(reg.clock.now());
    let rec = match outcome {
        Ok(Outcome::Findings(findings, source)) => ScanRecord {
            status: COMPLETE.into(),
            description: "The scan was completed successfully.".into(),
            updated_at: now,
            completed_at: Some(now),
            source_updated_at: source.map(|s| s.saturating_mul(1000)),
            findings: serde_json::to_string(&findings).ok(),
        },
        Ok(Outcome::Unsupported(why)) => ScanRecord {
            status: UNSUPPORTED.into(),
            description: why,
            updated_at: now,
            completed_at: None,
            source_updated_at: None,
            findings: None,
        },
        Err(e) => {
            tracing::warn!(repository = %repo, %digest, error = %e, "image scan failed");
            ScanRecord {
                status: FAILED.into(),
                description: e,
                updated_at: now,
                completed_at: None,
                source_updated_at: None,
                findings: None,
            }
        }
    };
    if let Some(m) = reg.metrics() {
        m.scans.with_label_values(&[rec.status.as_str()]).inc();
    }
    tracing::info!(repository = %repo, %digest, status = %rec.status,
        seconds = started.elapsed().as_secs_f64(), "image scanned");
    if let Err(e) = reg.meta().put_scan(repo, digest, &rec).await {
        tracing::warn!(repository = %repo, %digest, error = %e, "recording a scan failed");
    }
}

enum Outcome {
    /// Findings, and when the database was last updated (seconds).
    Findings(Vec<Finding>, Option<i64>),
    Unsupported(String),
}

async fn manifest(reg: &Registry, repo: &RepoName, digest: &Digest) -> Result<Manifest, String> {
    let rec = reg
        .meta()
        .manifest(repo, digest)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the image {digest} is no longer in {repo}"))?;
    let bytes = reg.blobs().get(digest).await.map_err(|e| e.to_string())?;
    Manifest::parse(Some(&rec.media_type), &bytes).map_err(|e| e.to_string())
}

fn is_image(m: &Manifest) -> bool {
    m.kind == ManifestKind::Image
        && m.artifact_type
            .as_deref()
            .is_none_or(|t| t == media::OCI_CONFIG || t == media::DOCKER_CONFIG)
}

async fn scan(
    reg: &Registry,
    cfg: &ScanConfig,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Outcome, String> {
    let root = manifest(reg, repo, digest).await?;
    let mut images = Vec::new();
    if root.kind == ManifestKind::Index {
        for c in root
            .references
            .iter()
            .filter(|r| r.kind == RefKind::Manifest)
        {
            if c.platform.as_ref().is_some_and(|p| p.os == "unknown") {
                continue;
            }
            let m = manifest(reg, repo, &c.digest).await?;
            if is_image(&m) {
                images.push(m);
            }
        }
    } else if is_image(&root) {
        images.push(root);
    }
    if images.is_empty() {
        return Ok(Outcome::Unsupported(
            "The image is not a container image (an artifact, or an index of none); it has \
             nothing to scan."
                .into(),
        ));
    }
    let cache = InventoryCache::new(&cfg.cache_dir);
    let mut all: Vec<Finding> = Vec::new();
    let mut source = None;
    for m in &images {
        let mut inventories = Vec::new();
        for layer in m.references.iter().skip(1) {
            inventories.push(layer_inventory(reg, &cache, &layer.digest, layer.size).await?);
        }
        let merged = ImageInventory::merge(&inventories);
        let db_dir = cfg.db_dir.clone();
        let (found, updated) = tokio::task::spawn_blocking(move || {
            let db = Database::open(&db_dir)?;
            let updated = db.updated_at()?;
            Ok::<_, berth_scan::ScanError>((berth_scan::matcher::findings(&merged, &db)?, updated))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        source = updated;
        // An index: one finding per advisory and package version, whichever platforms have it.
        for f in found {
            let known = all.iter().any(|g| {
                g.id == f.id
                    && g.package_name == f.package_name
                    && g.package_version == f.package_version
            });
            if !known {
                all.push(f);
            }
        }
    }
    all.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
    Ok(Outcome::Findings(all, source))
}

/// A layer's inventory: from the cache, else read from the blob store as a stream.
async fn layer_inventory(
    reg: &Registry,
    cache: &InventoryCache,
    digest: &Digest,
    size: u64,
) -> Result<LayerInventory, String> {
    let key = digest.to_string();
    let read = async {
        let stream = reg
            .blobs()
            .read(digest, 0, size)
            .await
            .map_err(|e| format!("layer {key}: {e}"))?
            .map_err(std::io::Error::other);
        let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        tokio::task::spawn_blocking(move || {
            berth_scan::layer::read_layer(bridge, &Limits::default())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("layer {key}: {e}"))
    };
    Ok(cache.get_or_read(&key, read).await?.0)
}
