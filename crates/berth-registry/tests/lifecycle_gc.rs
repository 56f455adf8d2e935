//! Lifecycle runs, garbage collection and quotas on an in-process registry with an injected
//! clock: the preview names exactly what the run deletes, indexes keep their platform
//! manifests, the collector removes only what nothing references (and finishes what an
//! interrupted collection left), and quotas refuse the write that would pass them.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_iam::keys::MasterKey;
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_registry::lifecycle::LifecyclePolicy;
use berth_registry::{Clock, GcOptions, Registry, RegistryConfig, RegistryError};
use berth_store::{
    Durability, ExpiryGroup, FsBlobStore, MetadataStore, NewRepository, Quota, RepositoryUpdate,
    SqliteMeta, StoreError,
};
use bytes::Bytes;
use futures::StreamExt;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug)]
struct ManualClock(Mutex<SystemTime>);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

struct Setup {
    reg: Registry,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

async fn setup(quota: Quota) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path()).unwrap();
    let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), Durability::Normal).unwrap());
    let mut config = RegistryConfig::default();
    config.quota = quota;
    config.gc_lease = Duration::from_secs(60);
    let clock = Arc::new(ManualClock(Mutex::new(SystemTime::now())));
    let reg = Registry::new(
        Arc::new(blobs),
        Arc::clone(&meta) as Arc<dyn MetadataStore>,
        meta,
        &MasterKey::generate(),
        config,
    )
    .with_clock(Arc::clone(&clock) as Arc<dyn Clock>);
    Setup { reg, clock, dir }
}

fn name(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn stream(data: &[u8]) -> berth_store::ByteStream {
    let b = Bytes::copy_from_slice(data);
    futures::stream::once(async move { Ok(b) }).boxed()
}

async fn blob(reg: &Registry, repo: &RepoName, data: &[u8]) -> Result<Digest, RegistryError> {
    let d = Digest::sha256(data);
    reg.put_blob(repo, &d, Some(data.len() as u64), stream(data))
        .await?;
    Ok(d)
}

fn descriptor(media: &str, d: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({ "mediaType": media, "digest": d.to_string(), "size": size })
}

/// Pushes an image with one layer (plus a shared config) under `tag`, or untagged.
async fn image(
    reg: &Registry,
    repo: &RepoName,
    layer: &[u8],
    tag: Option<&str>,
    subject: Option<(&Digest, usize)>,
) -> Result<(Digest, usize), RegistryError> {
    let config = b"{}";
    let c = blob(reg, repo, config).await?;
    let l = blob(reg, repo, layer).await?;
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &c, config.len()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &l, layer.len())],
    });
    if let Some((s, size)) = subject {
        m["subject"] = descriptor(MANIFEST, s, size);
        m["artifactType"] = "application/vnd.example.signature".into();
    }
    put(reg, repo, &m, MANIFEST, tag).await
}

async fn index(
    reg: &Registry,
    repo: &RepoName,
    children: &[(Digest, usize)],
    tag: &str,
) -> Result<(Digest, usize), RegistryError> {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": children.iter().map(|(d, s)| descriptor(MANIFEST, d, *s)).collect::<Vec<_>>(),
    });
    put(reg, repo, &m, INDEX, Some(tag)).await
}

async fn put(
    reg: &Registry,
    repo: &RepoName,
    m: &serde_json::Value,
    media: &str,
    tag: Option<&str>,
) -> Result<(Digest, usize), RegistryError> {
    let bytes = Bytes::from(serde_json::to_vec(m).unwrap());
    let d = Digest::sha256(&bytes);
    let reference = match tag {
        Some(t) => Reference::Tag(Tag::parse(t).unwrap()),
        None => Reference::Digest(d.clone()),
    };
    let len = bytes.len();
    reg.put_manifest(repo, &reference, Some(media), bytes)
        .await?;
    Ok((d, len))
}

async fn exists(reg: &Registry, repo: &RepoName, d: &Digest) -> bool {
    reg.meta().manifest(repo, d).await.unwrap().is_some()
}

async fn create(reg: &Registry, repo: &RepoName) {
    reg.meta()
        .create_repository(repo, &NewRepository::default())
        .await
        .unwrap();
}

async fn set_policy(reg: &Registry, repo: &RepoName, policy: &str) {
    LifecyclePolicy::parse(policy).unwrap();
    reg.meta()
        .update_repository(repo, RepositoryUpdate::LifecyclePolicy(Some(policy.into())))
        .await
        .unwrap();
}

const KEEP_NEWEST_V_AND_ONE_UNTAGGED: &str = r#"{"rules":[
  {"rulePriority":1,"description":"newest v* only","selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
  {"rulePriority":2,"description":"one untagged","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}
]}"#;

#[tokio::test]
async fn the_run_deletes_what_the_preview_named_and_indexes_keep_their_children() {
    let s = setup(Quota::NONE).await;
    let (reg, repo) = (&s.reg, name("team/app"));
    create(reg, &repo).await;
    // Old release: index of A and B, signed by S. New release: index of C and the shared B.
    let a = image(reg, &repo, b"layer-a", None, None).await.unwrap();
    let b = image(reg, &repo, b"layer-b", None, None).await.unwrap();
    let old = index(reg, &repo, &[a.clone(), b.clone()], "v1")
        .await
        .unwrap();
    let sig = image(reg, &repo, b"signature", None, Some((&old.0, old.1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let c = image(reg, &repo, b"layer-c", None, None).await.unwrap();
    let new = index(reg, &repo, &[c.clone(), b.clone()], "v2")
        .await
        .unwrap();
    let stray = image(reg, &repo, b"stray", None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer_stray = image(reg, &repo, b"newer stray", None, None).await.unwrap();
    set_policy(reg, &repo, KEEP_NEWEST_V_AND_ONE_UNTAGGED).await;

    let policy = LifecyclePolicy::parse(KEEP_NEWEST_V_AND_ONE_UNTAGGED).unwrap();
    let plan = reg.lifecycle_plan(&repo, &policy).await.unwrap();
    let mut planned: Vec<String> = plan.expiries.iter().map(|e| e.digest.clone()).collect();
    planned.sort();
    let mut expected: Vec<String> = [&old.0, &a.0, &sig.0, &stray.0]
        .iter()
        .map(ToString::to_string)
        .collect();
    expected.sort();
    assert_eq!(planned, expected, "{plan:#?}");

    let outcome = reg.run_lifecycle(&repo).await.unwrap();
    let mut ran: Vec<String> = outcome.expired.iter().map(|e| e.digest.clone()).collect();
    ran.sort();
    assert_eq!(
        ran, planned,
        "the run deletes exactly what the preview named"
    );
    for kept in [&new.0, &b.0, &c.0, &newer_stray.0] {
        assert!(exists(reg, &repo, kept).await, "{kept} must stay");
    }
    for gone in [&old.0, &a.0, &sig.0, &stray.0] {
        assert!(!exists(reg, &repo, gone).await, "{gone} must go");
    }
    let rec = reg.meta().repository(&repo).await.unwrap().unwrap();
    assert_eq!(rec.lifecycle_evaluated_at, Some(outcome.evaluated_at));
    // A second run finds nothing more.
    assert!(reg.run_lifecycle(&repo).await.unwrap().expired.is_empty());
}

#[tokio::test]
async fn age_rules_follow_the_registry_clock() {
    let s = setup(Quota::NONE).await;
    let (reg, repo) = (&s.reg, name("team/aged"));
    create(reg, &repo).await;
    let one = image(reg, &repo, b"one", Some("one"), None).await.unwrap();
    set_policy(
        reg,
        &repo,
        r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#,
    )
    .await;
    assert!(reg.run_lifecycle(&repo).await.unwrap().expired.is_empty());
    *s.clock.0.lock().unwrap() += 8 * DAY;
    let out = reg.run_lifecycle(&repo).await.unwrap();
    assert_eq!(out.expired.len(), 1);
    assert_eq!(out.expired[0].digest, one.0.to_string());
    assert_eq!(out.expired[0].rule_priority, 1);
}

#[tokio::test]
async fn an_image_tagged_after_the_evaluation_is_not_expired() {
    let s = setup(Quota::NONE).await;
    let (reg, repo) = (&s.reg, name("team/race"));
    create(reg, &repo).await;
    let img = image(reg, &repo, b"untagged", None, None).await.unwrap();
    // The plan saw it untagged; a tag arrives before the expiry transaction.
    let group = ExpiryGroup {
        root: img.0.clone(),
        root_tags: Vec::new(),
        dependents: Vec::new(),
    };
    let bytes = reg
        .manifest_bytes(&reg.meta().manifest(&repo, &img.0).await.unwrap().unwrap())
        .await
        .unwrap();
    reg.put_manifest(
        &repo,
        &Reference::Tag(Tag::parse("late").unwrap()),
        Some(MANIFEST),
        bytes,
    )
    .await
    .unwrap();
    let deleted = reg.meta().expire_images(&repo, &[group], 0).await.unwrap();
    assert!(deleted.is_empty());
    assert!(exists(reg, &repo, &img.0).await);
}

fn files_under(dir: &std::path::Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn the_collector_removes_only_what_nothing_references() {
    let s = setup(Quota::NONE).await;
    let (reg, repo) = (&s.reg, name("team/gc"));
    create(reg, &repo).await;
    let kept = image(reg, &repo, b"kept", Some("kept"), None)
        .await
        .unwrap();
    let dropped = image(reg, &repo, b"dropped", Some("dropped"), None)
        .await
        .unwrap();
    let stray = blob(reg, &repo, b"uploaded, never referenced")
        .await
        .unwrap();
    reg.delete_manifest(&repo, &Reference::Digest(dropped.0.clone()))
        .await
        .unwrap();
    let blobs = s.dir.path().join("blobs");
    let before = files_under(&blobs);

    // Everything is fresh: nothing is old enough.
    let hour = GcOptions {
        dry_run: false,
        grace: Duration::from_secs(3600),
    };
    let r = reg.collect_garbage(hour).await.unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (0, 0), "{r:?}");

    tokio::time::sleep(Duration::from_millis(10)).await;
    let dry = reg
        .collect_garbage(GcOptions {
            dry_run: true,
            grace: Duration::ZERO,
        })
        .await
        .unwrap();
    // The stray blob's and the dropped layer's links; their blobs and the dropped manifest.
    assert_eq!(dry.links_removed, 2, "{dry:?}");
    assert_eq!(dry.blobs_removed, 3, "{dry:?}");
    assert_eq!(files_under(&blobs), before, "a dry run removes nothing");

    let r = reg
        .collect_garbage(GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        })
        .await
        .unwrap();
    assert_eq!((r.links_removed, r.blobs_removed), (2, 3), "{r:?}");
    assert_eq!(files_under(&blobs), before - 3);
    assert!(reg.blobs().stat(&stray).await.unwrap().is_none());
    assert!(reg.blobs().stat(&dropped.0).await.unwrap().is_none());
    // What the kept image references is all there.
    let m = reg.meta().manifest(&repo, &kept.0).await.unwrap().unwrap();
    assert!(reg.manifest_bytes(&m).await.is_ok());
    assert!(
        reg.blobs()
            .stat(&Digest::sha256(b"kept"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        reg.blobs()
            .stat(&Digest::sha256(b"{}"))
            .await
            .unwrap()
            .is_some()
    );
    // Nothing left to do.
    let again = reg
        .collect_garbage(GcOptions {
            dry_run: true,
            grace: Duration::ZERO,
        })
        .await
        .unwrap();
    assert_eq!((again.links_removed, again.blobs_removed), (0, 0));
}

#[tokio::test]
async fn unrecorded_bytes_and_unfinished_deletions_are_collected() {
    let s = setup(Quota::NONE).await;
    let (reg, repo) = (&s.reg, name("team/orphans"));
    create(reg, &repo).await;
    // Bytes with no row (a crash between writing and recording).
    let orphan = Bytes::from_static(b"orphan bytes");
    let od = Digest::sha256(&orphan);
    reg.blobs().put(&od, orphan).await.unwrap();
    // A blob claimed by a collector that died before deleting it.
    let claimed = blob(reg, &repo, b"claimed").await.unwrap();
    reg.meta().unlink_blob(&repo, &claimed).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let page = reg
        .meta()
        .gc_claim_blobs(berth_store::now_millis(), None, false)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    // While the tombstone stands, writing the blob again must wait.
    assert!(matches!(
        reg.meta().pin_blob(&claimed, 7, None).await,
        Err(StoreError::BlobBeingDeleted(_))
    ));
    let r = reg
        .collect_garbage(GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        })
        .await
        .unwrap();
    assert_eq!(r.tombstones_finished, 1, "{r:?}");
    assert_eq!(r.orphans_removed, 1, "{r:?}");
    assert!(reg.blobs().stat(&od).await.unwrap().is_none());
    assert!(reg.blobs().stat(&claimed).await.unwrap().is_none());
    // The blob can be pushed again and is whole.
    blob(reg, &repo, b"claimed").await.unwrap();
    assert_eq!(reg.blob_size(&repo, &claimed).await.unwrap(), 7);
    assert!(reg.meta().gc_tombstones().await.unwrap().is_empty());
}

#[tokio::test]
async fn one_collector_at_a_time() {
    let s = setup(Quota::NONE).await;
    let reg = &s.reg;
    assert!(
        reg.meta()
            .acquire_lease("gc", "another-replica", 60_000)
            .await
            .unwrap()
    );
    let busy = reg
        .collect_garbage(GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        })
        .await;
    assert!(matches!(busy, Err(RegistryError::TooManyRequests(_))));
    reg.meta()
        .release_lease("gc", "another-replica")
        .await
        .unwrap();
    reg.collect_garbage(GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn quotas_refuse_the_write_that_would_pass_them() {
    let layer = vec![7u8; 1000];
    let s = setup(Quota {
        repository: Some(3000),
        registry: None,
    })
    .await;
    let (reg, repo) = (&s.reg, name("team/quota"));
    create(reg, &repo).await;
    let mut layer1 = layer.clone();
    layer1[0] = 1;
    let first = image(reg, &repo, &layer1, Some("one"), None).await.unwrap();
    let mut layer2 = layer.clone();
    layer2[0] = 2;
    image(reg, &repo, &layer2, Some("two"), None).await.unwrap();
    let mut layer3 = layer.clone();
    layer3[0] = 3;
    let refused = image(reg, &repo, &layer3, Some("three"), None).await;
    match refused {
        Err(RegistryError::QuotaExceeded(m)) => {
            assert!(m.contains("team/quota quota of 3000 bytes"), "{m}");
        }
        other => panic!("expected a quota refusal, got {other:?}"),
    }
    // Nothing half-written: no staged upload, no link.
    assert!(reg.blobs().upload_list().await.unwrap().is_empty());
    assert!(
        reg.meta()
            .blob_in_repo(&repo, &Digest::sha256(&layer3))
            .await
            .unwrap()
            .is_none()
    );
    // A blob the repository already has costs nothing.
    blob(reg, &repo, &layer1).await.unwrap();
    let used = reg.meta().usage(&repo).await.unwrap().repository;
    assert!(used <= 3000, "{used}");
    // Delete + collect frees the room.
    reg.delete_manifest(&repo, &Reference::Digest(first.0.clone()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    reg.collect_garbage(GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    })
    .await
    .unwrap();
    let after = reg.meta().usage(&repo).await.unwrap().repository;
    assert!(after < used, "{after} < {used}");
    image(reg, &repo, &layer3, Some("three"), None)
        .await
        .unwrap();
    // A repository's own quota replaces the default.
    reg.meta()
        .update_repository(&repo, RepositoryUpdate::Quota(Some(100)))
        .await
        .unwrap();
    let mut layer4 = layer.clone();
    layer4[0] = 4;
    assert!(matches!(
        blob(reg, &repo, &layer4).await,
        Err(RegistryError::QuotaExceeded(_))
    ));
}

#[tokio::test]
async fn a_push_finishes_what_a_dead_collector_claimed() {
    let s = setup(Quota::NONE).await;
    let (reg, repo) = (&s.reg, name("team/revive"));
    create(reg, &repo).await;
    let d = blob(reg, &repo, b"claimed, then the collector died")
        .await
        .unwrap();
    reg.meta().unlink_blob(&repo, &d).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    reg.meta()
        .gc_claim_blobs(berth_store::now_millis(), None, false)
        .await
        .unwrap();
    // A live collector holds the lease: the push waits for it, then is told to retry.
    assert!(
        reg.meta()
            .acquire_lease("gc", "live-collector", 60_000)
            .await
            .unwrap()
    );
    let started = std::time::Instant::now();
    assert!(matches!(
        blob(reg, &repo, b"claimed, then the collector died").await,
        Err(RegistryError::TooManyRequests(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(30));
    // The collector is gone (its lease released or run out): the next push finishes its
    // deletion itself and goes through at once.
    reg.meta()
        .release_lease("gc", "live-collector")
        .await
        .unwrap();
    blob(reg, &repo, b"claimed, then the collector died")
        .await
        .unwrap();
    assert!(reg.meta().gc_tombstones().await.unwrap().is_empty());
    assert!(reg.blob_size(&repo, &d).await.is_ok());
}
