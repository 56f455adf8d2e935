//! Online garbage collection: reclaims blobs nothing references while pushes and pulls go on.
//!
//! The ordering that makes it safe lives in the metadata store's transactions (see the protocol
//! on [`MetadataStore::pin_blob`](berth_store::MetadataStore::pin_blob)):
//! - a **link** (a repository may serve a blob) goes only when no manifest of its repository
//!   references the blob, no upload is committing it, and it was untouched for the grace period —
//!   checked in the transaction that deletes it. A manifest PUT checks its references in its own
//!   transaction, so the two are serialised by the database: either the manifest is recorded first
//!   (and the link is then referenced and stays) or the link is gone first (and the PUT fails
//!   cleanly with `MANIFEST_BLOB_UNKNOWN`, never records a dangling reference). A client told a
//!   blob exists (HEAD, `BatchCheckLayerAvailability`, mount) touches the link, so that window
//!   only opens for a link untouched for the whole grace period.
//! - a **blob** goes only when no link, manifest or committing upload references it and it was
//!   untouched (pinned) for the grace period; the row is replaced by a tombstone in the same
//!   transaction, the bytes are deleted, then the tombstone is released. A writer pins a blob
//!   before writing its bytes and waits while a tombstone exists, so bytes written after a pin
//!   are never deleted by a collection that claimed the blob before it.
//! - bytes in the blob store with no row at all (a crash between writing and recording, or a
//!   deletion the disk lost) are claimed the same way when older than the grace period.
//!
//! One collector runs at a time across replicas (a lease in the metadata store); tombstones found
//! at the start belong to a collector whose lease ran out, and are finished first.

use std::time::{Duration, Instant};

use berth_oci::Digest;
use berth_store::{GcPage, StoreError, now_millis};
use serde::Serialize;

use crate::error::RegistryError;
use crate::service::Registry;

/// The lease name collectors take.
const LEASE: &str = "gc";
/// Pause between two batches of deletions, so a sweep never holds the cores for long
/// (measured on 2 cores with 8 pullers: pull p99 during a collection 2.8x idle without it).
const SWEEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);
/// Blobs deleted per blob-store call.
const DELETE_BATCH: usize = 256;
/// Bytes listed in the blob store are claimed this many at a time.
const ORPHAN_BATCH: usize = 1000;

/// How a collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Only what was untouched for this long is collected.
    pub grace: Duration,
}

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GcReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// Repository links to blobs no manifest uses.
    pub links_removed: u64,
    /// Blobs removed from storage (unreferenced rows plus unrecorded bytes).
    pub blobs_removed: u64,
    /// Of those, bytes found in storage with no record.
    pub orphans_removed: u64,
    /// Bytes freed in blob storage.
    pub bytes_reclaimed: u64,
    /// Abandoned upload sessions discarded (with their staged bytes).
    pub uploads_removed: u64,
    /// Deletions an interrupted collection left unfinished, finished now.
    pub tombstones_finished: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl Registry {
    /// Runs one garbage collection. `TooManyRequests` if another collection holds the lease.
    pub async fn collect_garbage(&self, opts: GcOptions) -> Result<GcReport, RegistryError> {
        let started = Instant::now();
        let holder = self.instance_id();
        let ttl = i64::try_from(self.config().gc_lease.as_millis()).unwrap_or(i64::MAX);
        if !self.meta().acquire_lease(LEASE, holder, ttl).await? {
            return Err(RegistryError::TooManyRequests(
                "another garbage collection is running; retry later".into(),
            ));
        }
        let result = self.collect(opts, holder, ttl).await;
        if let Err(e) = self.meta().release_lease(LEASE, holder).await {
            tracing::warn!(error = %e, "could not release the collector's lease");
        }
        if !opts.dry_run
            && let Some(m) = self.metrics()
        {
            match &result {
                Ok(r) => {
                    m.gc_runs.with_label_values(&["ok"]).inc();
                    m.gc_links.inc_by(r.links_removed);
                    m.gc_blobs.inc_by(r.blobs_removed);
                    m.gc_bytes.inc_by(r.bytes_reclaimed);
                    m.gc_uploads.inc_by(r.uploads_removed);
                }
                Err(_) => m.gc_runs.with_label_values(&["error"]).inc(),
            }
        }
        let mut report = result?;
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            dry_run = report.dry_run,
            links = report.links_removed,
            blobs = report.blobs_removed,
            orphans = report.orphans_removed,
            bytes = report.bytes_reclaimed,
            uploads = report.uploads_removed,
            tombstones = report.tombstones_finished,
            ms = report.duration_ms,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Finishes the deletions of a collector that died (its lease ran out and no collector
    /// holds it now): a writer that meets a tombstone calls this, and so does `berth serve` at
    /// start, so a crashed collection never blocks pushes until the next scheduled one. Returns
    /// how many deletions it finished (0 when a collector is running: it will finish them).
    pub async fn finish_abandoned_collection(&self) -> Result<usize, RegistryError> {
        // Not the collector's own holder name: while this process collects, this must wait.
        let holder = format!("{}-writer", self.instance_id());
        let ttl = i64::try_from(self.config().gc_lease.as_millis()).unwrap_or(i64::MAX);
        if !self.meta().acquire_lease(LEASE, &holder, ttl).await? {
            return Ok(0);
        }
        let result = self.finish_tombstones().await;
        if let Err(e) = self.meta().release_lease(LEASE, &holder).await {
            tracing::warn!(error = %e, "could not release the collector's lease");
        }
        result
    }

    async fn collect(
        &self,
        opts: GcOptions,
        holder: &str,
        ttl: i64,
    ) -> Result<GcReport, RegistryError> {
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let grace = i64::try_from(opts.grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(grace);
        let renew = || async {
            if self.meta().acquire_lease(LEASE, holder, ttl).await? {
                Ok(())
            } else {
                Err(RegistryError::TooManyRequests(
                    "the collector's lease was taken over; stopping".into(),
                ))
            }
        };
        if !opts.dry_run {
            // Deletions a collector started and did not finish (its lease ran out).
            report.tombstones_finished = self.finish_tombstones().await? as u64;
            report.uploads_removed = self.clean_uploads(false).await? as u64;
        }
        // Links no manifest uses.
        let mut cursor: Option<String> = None;
        loop {
            let GcPage { items, next } = self
                .meta()
                .gc_unlink_stale(cutoff, cursor.as_deref(), opts.dry_run)
                .await?;
            for l in &items {
                tracing::debug!(repository = l.repo.as_deref().unwrap_or(""), digest = %l.digest,
                    dry_run = opts.dry_run, "unlinking an unreferenced blob");
            }
            report.links_removed += items.len() as u64;
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
            renew().await?;
        }
        // Blobs nothing references.
        let mut cursor: Option<String> = None;
        loop {
            let GcPage { items, next } = self
                .meta()
                .gc_claim_blobs(cutoff, cursor.as_deref(), opts.dry_run)
                .await?;
            report.blobs_removed += items.len() as u64;
            report.bytes_reclaimed += items.iter().map(|b| b.size).sum::<u64>();
            if !opts.dry_run && !items.is_empty() {
                let digests: Vec<Digest> = items.into_iter().map(|b| b.digest).collect();
                self.delete_claimed(&digests).await?;
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
            renew().await?;
        }
        // Bytes with no record at all.
        let listed = self.blobs().list().await?;
        let old: Vec<Digest> = listed
            .into_iter()
            .filter(|(_, modified)| *modified < cutoff)
            .map(|(d, _)| d)
            .collect();
        for chunk in old.chunks(ORPHAN_BATCH) {
            let claimed = self.meta().gc_claim_orphans(chunk, opts.dry_run).await?;
            for d in &claimed {
                tracing::info!(digest = %d, dry_run = opts.dry_run, "unrecorded blob bytes");
                if let Some(size) = self.blobs().stat(d).await? {
                    report.bytes_reclaimed += size;
                }
            }
            report.blobs_removed += claimed.len() as u64;
            report.orphans_removed += claimed.len() as u64;
            if !opts.dry_run && !claimed.is_empty() {
                self.delete_claimed(&claimed).await?;
            }
            renew().await?;
        }
        Ok(report)
    }

    /// Finishes every standing tombstone (call with the lease held): how many.
    async fn finish_tombstones(&self) -> Result<usize, RegistryError> {
        let left = self.meta().gc_tombstones().await?;
        if !left.is_empty() {
            tracing::info!(count = left.len(), "finishing an interrupted collection");
            self.delete_claimed(&left).await?;
        }
        Ok(left.len())
    }

    /// Deletes the bytes of tombstoned blobs, then releases the tombstones.
    async fn delete_claimed(&self, digests: &[Digest]) -> Result<(), RegistryError> {
        for batch in digests.chunks(DELETE_BATCH) {
            match self.blobs().delete_many(batch).await {
                Ok(()) | Err(StoreError::BlobNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            // A background job: leave the cores to requests between batches.
            tokio::time::sleep(SWEEP_PAUSE).await;
        }
        tracing::debug!(count = digests.len(), "blobs deleted");
        self.crash_point("gc-sweep");
        self.meta().gc_release(digests).await?;
        Ok(())
    }
}
