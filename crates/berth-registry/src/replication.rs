//! Replication: pushes copied to other registries, with ECR's configuration shape.
//!
//! The configuration (`PutReplicationConfiguration`) names destinations as ECR does, by
//! `region` + `registryId`; the server's configuration maps each such pair to a registry it can
//! reach ([`Destination`]: another `berth serve`, Amazon ECR, any OCI registry). As on ECR, only
//! pushes made after the configuration are replicated.
//!
//! Durability: a push that matches a rule records one job per destination *before* its
//! manifest is committed, so every acknowledged push has its jobs (a job whose push never
//! committed finds no manifest and is dropped). Jobs live in the metadata store and outlive
//! restarts. One replica at a time runs them (lease `replication`); each destination replays its
//! jobs in push order, one at a time, retrying with exponential backoff (1 s doubling to 5 min)
//! while it fails, for up to [`GIVE_UP`]; then the job is `FAILED`. A copy is `berth-client`'s
//! `copy` from the local image ([`LocalImage`]): every platform and every referrer, digests
//! unchanged, verified by the destination as it receives them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_client::ClientError;
use berth_client::auth::Credentials;
use berth_client::ecr::{AwsOptions, EcrTarget};
use berth_client::image::{ByteStream, ImageSource, RawManifest};
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_client::{CopyOptions, copy};
use berth_oci::{Digest, ImageRef, Reference, RepoName, Tag};
use berth_store::{JobOutcome, NewReplicationJob, ReplicationJob};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::service::Registry;

/// The identity-store setting holding the replication configuration (ECR's JSON).
pub const SETTING: &str = "replication_configuration";
/// A job older than this is given up (`FAILED`).
pub const GIVE_UP: Duration = Duration::from_secs(24 * 3600);
/// A job whose manifest is missing is dropped once this old (its push never committed).
const UNCOMMITTED: Duration = Duration::from_secs(60);
/// The lease one replica holds to run jobs.
const LEASE: &str = "replication";
/// How long the lease outlives its last renewal.
const LEASE_MS: i64 = 10_000;

/// A registry images are replicated to, as the server's configuration describes it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Destination {
    /// ECR's region of the destination.
    pub region: String,
    /// ECR's registry id of the destination.
    pub registry_id: String,
    /// The registry host images are pushed to (`host[:port]`).
    pub host: String,
    /// Reach it over plain HTTP (loopback hosts always are).
    pub insecure: bool,
    /// Its ECR API (`berth serve` or Amazon ECR): repositories are created there, and pushes
    /// authenticate with ECR tokens. `None`: any OCI registry.
    pub ecr_endpoint: Option<String>,
    /// The AWS profile for the ECR API (default: the default credential chain).
    pub aws_profile: Option<String>,
    /// An AWS credentials file read besides the default ones (a destination `berth serve`'s
    /// `root-credentials`).
    pub aws_credentials_file: Option<std::path::PathBuf>,
    /// Basic credentials for an OCI registry.
    pub username: Option<String>,
    /// See `username`.
    pub password: Option<String>,
    /// Create missing repositories through the ECR API (default true).
    pub create_repositories: bool,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("region", &self.region)
            .field("registry_id", &self.registry_id)
            .field("host", &self.host)
            .field("ecr_endpoint", &self.ecr_endpoint)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// A destination pushed to at `host`.
    pub fn new(region: &str, registry_id: &str, host: &str) -> Self {
        Destination {
            region: region.to_owned(),
            registry_id: registry_id.to_owned(),
            host: host.to_owned(),
            create_repositories: true,
            ..Destination::default()
        }
    }

    /// The key jobs name it by.
    pub fn key(&self) -> String {
        key(&self.region, &self.registry_id)
    }
}

fn key(region: &str, registry_id: &str) -> String {
    format!("{region}/{registry_id}")
}

/// ECR's replication configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationConfiguration {
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<ReplicationRule>,
}

/// One rule: destinations, and the repositories it applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRule {
    /// Where to.
    #[serde(default)]
    pub destinations: Vec<ReplicationDestination>,
    /// Which repositories (none: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_filters: Vec<RepositoryFilter>,
}

/// A destination as ECR names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestination {
    /// The region.
    pub region: String,
    /// The registry id.
    pub registry_id: String,
}

/// A repository filter (`PREFIX_MATCH`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFilter {
    /// The prefix.
    pub filter: String,
    /// `PREFIX_MATCH`.
    pub filter_type: String,
}

impl ReplicationRule {
    fn covers(&self, repo: &str) -> bool {
        self.repository_filters.is_empty()
            || self
                .repository_filters
                .iter()
                .any(|f| repo.starts_with(&f.filter))
    }
}

impl ReplicationConfiguration {
    /// Checks it as ECR does: at most 10 rules, 25 destinations, 100 filters per rule,
    /// `PREFIX_MATCH` filters, 12-digit registry ids, not this registry's own region, and —
    /// berth's rule — every destination configured on this server.
    pub fn check(&self, own: (&str, &str), configured: &[Destination]) -> Result<(), String> {
        if self.rules.len() > 10 {
            return Err(format!(
                "1 validation error detected: Value at 'replicationConfiguration.rules' failed to satisfy constraint: Member must have length less than or equal to 10 ({} given)",
                self.rules.len()
            ));
        }
        let total: usize = self.rules.iter().map(|r| r.destinations.len()).sum();
        if total > 25 {
            return Err(format!(
                "The replication configuration has {total} destinations; at most 25 are allowed"
            ));
        }
        for r in &self.rules {
            if r.destinations.is_empty() || r.destinations.len() > 25 {
                return Err("Each replication rule needs 1 to 25 destinations".into());
            }
            if r.repository_filters.len() > 100 {
                return Err("A replication rule has at most 100 repository filters".into());
            }
            for f in &r.repository_filters {
                if f.filter_type != "PREFIX_MATCH" {
                    return Err(format!(
                        "Invalid parameter at 'filterType' failed to satisfy constraint: 'Member must satisfy enum value set: [PREFIX_MATCH]' ({:?})",
                        f.filter_type
                    ));
                }
                let ok = (2..=256).contains(&f.filter.len())
                    && f.filter.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)
                    });
                if !ok {
                    return Err(format!(
                        "Invalid parameter at 'filter' failed to satisfy constraint: 'Member must satisfy regular expression pattern: ^[a-z0-9_./-]{{2,256}}$' ({:?})",
                        f.filter
                    ));
                }
            }
            for d in &r.destinations {
                if d.registry_id.len() != 12 || !d.registry_id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "Invalid parameter at 'registryId' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [0-9]{{12}}' ({:?})",
                        d.registry_id
                    ));
                }
                if (d.region.as_str(), d.registry_id.as_str()) == own {
                    return Err(format!(
                        "Replication to the source registry's own region ({}) is not supported",
                        d.region
                    ));
                }
                if !configured
                    .iter()
                    .any(|c| c.region == d.region && c.registry_id == d.registry_id)
                {
                    return Err(format!(
                        "No replication destination {}/{} is configured on this registry: add a [[replication_destinations]] table with region = \"{}\", registry_id = \"{}\" and the registry to push to",
                        d.region, d.registry_id, d.region, d.registry_id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The destinations (keys) a push into `repo` goes to, each once.
    pub fn destinations_for(&self, repo: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.rules.iter().filter(|r| r.covers(repo)) {
            for d in &r.destinations {
                let k = key(&d.region, &d.registry_id);
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}

/// Replication state of one server process.
#[derive(Debug, Default)]
pub struct Replication {
    config: Mutex<Option<(Instant, Arc<ReplicationConfiguration>)>>,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
    /// (destination, repository) pairs known to exist at the destination: its ECR API (and
    /// the AWS credential chain behind it) is asked once per repository, not once per push.
    created: Mutex<HashSet<(String, String)>>,
    wake: tokio::sync::Notify,
}

impl Replication {
    /// Forgets the configuration read (after it changed here).
    pub fn changed(&self) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A local image as a copy source: manifests and blobs straight from the stores.
struct LocalImage {
    reg: Registry,
    repo: RepoName,
    root: Digest,
}

fn not_found(e: RegistryError) -> ClientError {
    match e {
        RegistryError::ManifestUnknown(m) | RegistryError::NameUnknown(m) => {
            ClientError::NotFound(m)
        }
        RegistryError::BlobUnknown(d) => ClientError::NotFound(d.to_string()),
        other => ClientError::Http(format!("reading the local image: {other}")),
    }
}

#[async_trait]
impl ImageSource for LocalImage {
    async fn root(&self) -> Result<RawManifest, ClientError> {
        self.manifest(&self.root).await
    }

    async fn manifest(&self, digest: &Digest) -> Result<RawManifest, ClientError> {
        let rec = self
            .reg
            .resolve(&self.repo, &Reference::Digest(digest.clone()))
            .await
            .map_err(not_found)?;
        let bytes = self.reg.manifest_bytes(&rec).await.map_err(not_found)?;
        RawManifest::verified(bytes, &rec.media_type, digest)
    }

    async fn blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, ClientError> {
        let s = self
            .reg
            .read_blob(digest, 0, size)
            .await
            .map_err(not_found)?;
        Ok(
            s.map_err(|e| ClientError::Http(format!("reading a local blob: {e}")))
                .boxed(),
        )
    }

    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, ClientError> {
        Ok(self
            .reg
            .referrers(&self.repo, digest, None)
            .await
            .map_err(not_found)?
            .into_iter()
            .map(|m| m.digest)
            .collect())
    }
}

fn now_ms() -> i64 {
    berth_store::now_millis()
}

impl Registry {
    /// The replication configuration (read at most every 5 s: replicas agree soon).
    pub async fn replication_configuration(
        &self,
    ) -> Result<Arc<ReplicationConfiguration>, RegistryError> {
        if let Some((at, c)) = self
            .replication
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < Duration::from_secs(5)
        {
            return Ok(Arc::clone(c));
        }
        let text = self.identity().setting(SETTING).await?;
        let c: ReplicationConfiguration = match text {
            Some(t) => serde_json::from_str(&t).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the stored replication configuration does not parse; replicating nothing");
                ReplicationConfiguration::default()
            }),
            None => ReplicationConfiguration::default(),
        };
        let c = Arc::new(c);
        *self
            .replication
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), Arc::clone(&c)));
        Ok(c)
    }

    /// Records the replication jobs of a push (before its manifest is committed).
    pub(crate) async fn record_replication(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tag: Option<&Tag>,
    ) -> Result<(), RegistryError> {
        let config = self.replication_configuration().await?;
        if config.rules.is_empty() {
            return Ok(());
        }
        let jobs: Vec<NewReplicationJob> = config
            .destinations_for(repo.as_str())
            .into_iter()
            .map(|destination| NewReplicationJob {
                repository: repo.to_string(),
                digest: digest.clone(),
                tag: tag.map(ToString::to_string),
                destination,
            })
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        self.meta().add_replication_jobs(&jobs).await?;
        self.replication.wake.notify_one();
        Ok(())
    }

    fn destination(&self, key: &str) -> Option<&Destination> {
        self.config()
            .replication_destinations
            .iter()
            .find(|d| d.key() == key)
    }

    async fn destination_client(
        &self,
        d: &Destination,
    ) -> Result<Arc<RegistryClient>, ClientError> {
        let k = d.key();
        if let Some(c) = self
            .replication
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
        {
            return Ok(Arc::clone(c));
        }
        let creds = match (&d.username, &d.password) {
            (Some(u), Some(p)) => Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        };
        let insecure = if d.insecure {
            vec![d.host.clone()]
        } else {
            Vec::new()
        };
        let mut client = RegistryClient::new(&d.host, creds, &insecure)?;
        if d.ecr_endpoint.is_some() && d.username.is_none() {
            client = client.with_ecr(EcrTarget {
                host: d.host.clone(),
                aws: self.destination_aws(d),
            });
        }
        let client = Arc::new(client);
        self.replication
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, Arc::clone(&client));
        Ok(client)
    }

    fn destination_aws(&self, d: &Destination) -> AwsOptions {
        AwsOptions {
            region: Some(d.region.clone()),
            endpoint: d.ecr_endpoint.clone(),
            profile: d.aws_profile.clone(),
            credentials_file: d.aws_credentials_file.clone(),
            ask_region: false,
        }
    }

    /// Creates the repository at an ECR-API destination (an existing one is fine).
    async fn create_destination_repository(
        &self,
        d: &Destination,
        repo: &RepoName,
    ) -> Result<(), String> {
        use berth_client::aws_sdk_ecr::error::ProvideErrorMetadata;
        let aws = self.destination_aws(d);
        let client = berth_client::ecr::api_client(&aws)
            .await
            .map_err(|e| format!("the destination's ECR API: {e}"))?;
        let source = self.meta().repository(repo).await.ok().flatten();
        let mut req = client.create_repository().repository_name(repo.as_str());
        if let Some(s) = &source {
            req = req
                .image_tag_mutability(s.tag_mutability.as_str().into())
                .image_scanning_configuration(
                    berth_client::aws_sdk_ecr::types::ImageScanningConfiguration::builder()
                        .scan_on_push(s.scan_on_push)
                        .build(),
                );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RepositoryAlreadyExistsException") => Ok(()),
            Err(e) => Err(format!(
                "creating repository {repo} at the destination: {}",
                e.message().map_or_else(
                    || berth_client::aws_sdk_ecr::error::DisplayErrorContext(&e).to_string(),
                    str::to_owned
                )
            )),
        }
    }

    /// Copies one job's image; `Ok` when it is at the destination.
    async fn replicate(&self, job: &ReplicationJob) -> Result<(), JobOutcome> {
        let retry = |error: String| {
            let age = now_ms() - job.created_at;
            if age > i64::try_from(GIVE_UP.as_millis()).unwrap_or(i64::MAX) {
                return JobOutcome::Failed(format!("gave up after 24 hours: {error}"));
            }
            let backoff = 1000_i64 << job.attempts.clamp(0, 9);
            JobOutcome::Retry {
                error,
                at: now_ms() + backoff.min(300_000),
            }
        };
        let Some(d) = self.destination(&job.destination).cloned() else {
            return Err(JobOutcome::Failed(format!(
                "destination {} is no longer configured on this registry",
                job.destination
            )));
        };
        let repo = RepoName::parse(&job.repository)
            .map_err(|e| JobOutcome::Failed(format!("repository name: {e}")))?;
        match self
            .resolve(&repo, &Reference::Digest(job.digest.clone()))
            .await
        {
            Ok(_) => {}
            Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => {
                let age = now_ms() - job.created_at;
                if age < i64::try_from(UNCOMMITTED.as_millis()).unwrap_or(i64::MAX) {
                    return Err(JobOutcome::Retry {
                        error: "the push is not committed yet".into(),
                        at: now_ms() + 2000,
                    });
                }
                return Err(JobOutcome::Failed(
                    "the image is not in the repository (deleted, or its push never completed)"
                        .into(),
                ));
            }
            Err(e) => return Err(retry(e.to_string())),
        }
        if d.ecr_endpoint.is_some() && d.create_repositories {
            let key = (d.key(), repo.to_string());
            let known = self
                .replication
                .created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key);
            if !known {
                self.create_destination_repository(&d, &repo)
                    .await
                    .map_err(retry)?;
                self.replication
                    .created
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key);
            }
        }
        let client = self
            .destination_client(&d)
            .await
            .map_err(|e| retry(e.to_string()))?;
        let tag = match &job.tag {
            Some(t) => Some(Tag::parse(t).map_err(|e| JobOutcome::Failed(e.to_string()))?),
            None => None,
        };
        let target = ImageRef::new(
            &d.host,
            repo.clone(),
            tag.clone(),
            tag.is_none().then(|| job.digest.clone()),
        )
        .map_err(|e| JobOutcome::Failed(format!("destination reference: {e}")))?;
        let sink = RegistryImage::new(client, &target);
        let src = LocalImage {
            reg: self.clone(),
            repo: repo.clone(),
            root: job.digest.clone(),
        };
        let mut opts = CopyOptions::default();
        opts.tag = tag;
        opts.jobs = 4;
        let report = copy(&src, &sink, &opts).await.map_err(|e| match e {
            ClientError::NotFound(m) => JobOutcome::Failed(format!("the local image lost {m}")),
            other => retry(other.to_string()),
        })?;
        if report.digest.as_ref() != Some(&job.digest) {
            return Err(JobOutcome::Failed(format!(
                "copied {:?}, not {}",
                report.digest, job.digest
            )));
        }
        tracing::info!(repository = %repo, digest = %job.digest, tag = job.tag.as_deref(),
            destination = %job.destination, blobs = report.blobs_copied, manifests = report.manifests,
            "replicated");
        Ok(())
    }

    /// One round: the next job of every destination, run together. Whether any was due.
    async fn replication_round(&self) -> Result<bool, RegistryError> {
        let jobs = self.meta().next_replication_jobs().await?;
        let now = now_ms();
        let due: Vec<ReplicationJob> = jobs
            .into_iter()
            .filter(|j| j.next_attempt_at <= now)
            .collect();
        if due.is_empty() {
            return Ok(false);
        }
        let results = futures::future::join_all(due.iter().map(|j| async move {
            let outcome = match self.replicate(j).await {
                Ok(()) => JobOutcome::Complete,
                Err(o) => o,
            };
            if let JobOutcome::Retry { error, .. } | JobOutcome::Failed(error) = &outcome {
                tracing::warn!(repository = %j.repository, digest = %j.digest,
                    destination = %j.destination, attempt = j.attempts + 1, %error,
                    "replication attempt failed");
            }
            self.meta().finish_replication_job(j.id, &outcome).await
        }))
        .await;
        for r in results {
            r?;
        }
        Ok(true)
    }

    /// Runs replication jobs until the process ends, on one replica at a time.
    pub fn start_replication(&self) {
        if self.config().replication_destinations.is_empty() {
            return;
        }
        let reg = self.clone();
        tokio::spawn(async move {
            let holder = reg.instance_id().to_owned();
            let mut last_prune = Instant::now();
            loop {
                let leader = match reg.meta().acquire_lease(LEASE, &holder, LEASE_MS).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "replication lease");
                        false
                    }
                };
                let busy = if leader {
                    // The lease is renewed while a long round runs (a replica that dies loses
                    // it within LEASE_MS, and another takes its jobs over).
                    let renew = async {
                        let mut tick = tokio::time::interval(Duration::from_millis(
                            u64::try_from(LEASE_MS / 3).unwrap_or(3000),
                        ));
                        tick.tick().await;
                        loop {
                            tick.tick().await;
                            if let Err(e) = reg.meta().acquire_lease(LEASE, &holder, LEASE_MS).await
                            {
                                tracing::warn!(error = %e, "renewing the replication lease");
                            }
                        }
                    };
                    let round = tokio::select! {
                        r = reg.replication_round() => r,
                        () = renew => Ok(false),
                    };
                    match round {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(error = %e, "replication round failed");
                            false
                        }
                    }
                } else {
                    false
                };
                if leader && last_prune.elapsed() > Duration::from_secs(3600) {
                    last_prune = Instant::now();
                    let before = now_ms() - 30 * 86_400_000;
                    if let Err(e) = reg.meta().prune_replication_jobs(before).await {
                        tracing::warn!(error = %e, "pruning finished replication jobs");
                    }
                }
                if !busy {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        reg.replication.wake.notified(),
                    )
                    .await;
                }
            }
        });
    }

    /// ECR's `replicationStatuses` of one image: per destination, its latest job.
    pub(crate) async fn replication_statuses(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<(String, String, String, Option<String>)>, RegistryError> {
        let jobs = self
            .meta()
            .replication_jobs_of(repo.as_str(), digest)
            .await?;
        let mut latest: BTreeMap<String, ReplicationJob> = BTreeMap::new();
        for j in jobs {
            latest.insert(j.destination.clone(), j);
        }
        Ok(latest
            .into_values()
            .map(|j| {
                let (region, registry) = j
                    .destination
                    .split_once('/')
                    .map(|(r, i)| (r.to_owned(), i.to_owned()))
                    .unwrap_or_default();
                let status = match j.status.as_str() {
                    "COMPLETE" => "COMPLETE",
                    "FAILED" => "FAILED",
                    _ => "IN_PROGRESS",
                };
                let failure = match status {
                    "COMPLETE" => None,
                    _ => j.last_error.clone(),
                };
                (region, registry, status.to_owned(), failure)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(json: &str) -> ReplicationConfiguration {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_pick_destinations_by_prefix_once_each() {
        let c = config(
            r#"{"rules":[
                {"destinations":[{"region":"us-west-2","registryId":"111111111111"}],
                 "repositoryFilters":[{"filter":"team","filterType":"PREFIX_MATCH"}]},
                {"destinations":[{"region":"us-west-2","registryId":"111111111111"},
                                 {"region":"eu-west-1","registryId":"222222222222"}]}]}"#,
        );
        assert_eq!(
            c.destinations_for("team/app"),
            ["us-west-2/111111111111", "eu-west-1/222222222222"]
        );
        assert_eq!(c.destinations_for("other"), c.destinations_for("team/app"));
        let only = config(
            r#"{"rules":[{"destinations":[{"region":"us-west-2","registryId":"111111111111"}],
                 "repositoryFilters":[{"filter":"team","filterType":"PREFIX_MATCH"}]}]}"#,
        );
        assert!(only.destinations_for("other/app").is_empty());
        // PREFIX_MATCH is a string prefix, as on ECR.
        assert_eq!(only.destinations_for("teamx").len(), 1);
    }

    #[test]
    fn configurations_are_checked_as_ecr_does_plus_configured_destinations() {
        let west = Destination::new("us-west-2", "111111111111", "127.0.0.1:5002");
        let own = ("us-east-1", "000000000000");
        let ok = config(
            r#"{"rules":[{"destinations":[{"region":"us-west-2","registryId":"111111111111"}]}]}"#,
        );
        assert_eq!(ok.check(own, std::slice::from_ref(&west)), Ok(()));
        let unknown = config(
            r#"{"rules":[{"destinations":[{"region":"ap-south-1","registryId":"111111111111"}]}]}"#,
        );
        assert!(
            unknown
                .check(own, std::slice::from_ref(&west))
                .unwrap_err()
                .contains("[[replication_destinations]]")
        );
        let itself = config(
            r#"{"rules":[{"destinations":[{"region":"us-east-1","registryId":"000000000000"}]}]}"#,
        );
        assert!(
            itself
                .check(own, std::slice::from_ref(&west))
                .unwrap_err()
                .contains("own region")
        );
        let bad_filter = config(
            r#"{"rules":[{"destinations":[{"region":"us-west-2","registryId":"111111111111"}],
                "repositoryFilters":[{"filter":"team","filterType":"WILDCARD"}]}]}"#,
        );
        assert!(
            bad_filter
                .check(own, std::slice::from_ref(&west))
                .unwrap_err()
                .contains("PREFIX_MATCH")
        );
        let bad_id =
            config(r#"{"rules":[{"destinations":[{"region":"us-west-2","registryId":"12"}]}]}"#);
        assert!(
            bad_id
                .check(own, &[west])
                .unwrap_err()
                .contains("[0-9]{12}")
        );
    }
}
