//! `berth-bench gc`: lifecycle evaluation and garbage collection at scale, with pulls going on.
//!
//! Seeds a data directory with `images` synthetic images in one repository (one shared config,
//! one small unique layer each, 10% untagged) through `berth-store`'s API — the blob files are
//! written without fsync, a bench-only shortcut that changes nothing `berth serve` measures —
//! then starts the release `berth serve` on it and, while 8 tasks pull a kept image (manifest by
//! tag + its layer) in a loop, times: a lifecycle preview (the evaluation), the lifecycle run
//! (evaluation plus deleting what expires in one transaction), and a garbage collection (grace
//! 0) of everything the run left unreferenced. Pull p99 is reported idle and during each phase.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};
use berth_store::{
    BlobStore, Durability, FsBlobStore, MetadataStore, NewManifest, NewRepository, Quota,
    RepositoryUpdate, SqliteMeta,
};

const REPO: &str = "bench/lifecycle";
/// Concurrent pullers (`BERTH_BENCH_PULLERS` overrides, 0 for none).
fn pullers() -> usize {
    std::env::var("BERTH_BENCH_PULLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// Keeps the newest half of the tagged images and 100 untagged ones: about 55% of the images
/// expire, so the collection that follows sweeps about 1.1 blobs per image seeded.
fn policy(images: usize) -> String {
    let keep = (images / 2).max(1);
    format!(
        r#"{{"rules":[
 {{"rulePriority":1,"description":"keep the newest releases","selection":{{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":{keep}}},"action":{{"type":"expire"}}}},
 {{"rulePriority":2,"description":"few untagged","selection":{{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":100}},"action":{{"type":"expire"}}}}
]}}"#
    )
}

fn blob_path(data: &Path, d: &Digest) -> std::path::PathBuf {
    let hex = d.hex();
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn no_tag(_: &str, _: &[String], _: &str) -> bool {
    false
}

/// Seeds the data directory; returns the tag of the newest image (kept by the policy).
async fn seed(data: &Path, images: usize) -> anyhow::Result<String> {
    let blobs = FsBlobStore::open(data)?;
    let meta = SqliteMeta::open(data.join("meta.db"), Durability::Normal)?;
    let repo = RepoName::parse(REPO)?;
    meta.create_repository(&repo, &NewRepository::default())
        .await?;
    let config = bytes::Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let config_digest = Digest::sha256(&config);
    meta.pin_blob(&config_digest, config.len() as u64, None)
        .await?;
    blobs.put(&config_digest, config.clone()).await?;
    meta.link_blob(
        &repo,
        &config_digest,
        config.len() as u64,
        None,
        Quota::NONE,
    )
    .await?;
    let started = Instant::now();
    let mut newest = String::new();
    for i in 0..images {
        let layer = format!("synthetic layer {i}").into_bytes();
        let ld = Digest::sha256(&layer);
        std::fs::write(blob_path(data, &ld), &layer)?;
        meta.link_blob(&repo, &ld, layer.len() as u64, None, Quota::NONE)
            .await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": ld.to_string(), "size": layer.len()}],
        });
        let bytes = serde_json::to_vec(&manifest)?;
        let md = Digest::sha256(&bytes);
        std::fs::write(blob_path(data, &md), &bytes)?;
        let tag = (i % 10 != 0).then(|| format!("v{i}"));
        let record = NewManifest {
            digest: md,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: bytes.len() as u64,
            artifact_type: None,
            subject: None,
            annotations_json: None,
            references: vec![
                ManifestRef {
                    digest: config_digest.clone(),
                    size: config.len() as u64,
                    kind: RefKind::Blob,
                    platform: None,
                },
                ManifestRef {
                    digest: ld,
                    size: layer.len() as u64,
                    kind: RefKind::Blob,
                    platform: None,
                },
            ],
        };
        let t = tag.as_deref().map(Tag::parse).transpose()?;
        meta.put_manifest(&repo, &record, t.as_ref(), no_tag, Quota::NONE)
            .await?;
        if let Some(t) = tag {
            newest = t;
        }
        if (i + 1) % 20_000 == 0 {
            println!(
                "  seeded {} images ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    meta.update_repository(
        &repo,
        RepositoryUpdate::LifecyclePolicy(Some(policy(images))),
    )
    .await?;
    Ok(newest)
}

/// Pulls `tag` (manifest, then its layer) in a loop until `stop`; returns latencies (µs).
async fn puller(base: String, tag: String, stop: Arc<AtomicBool>) -> (Vec<u64>, usize) {
    let c = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default();
    let (mut lat, mut errors) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let ok = async {
            let m = c
                .get(format!("{base}/v2/{REPO}/manifests/{tag}"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?
                .bytes()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&m).ok()?;
            let layer = v["layers"][0]["digest"].as_str()?.to_owned();
            c.get(format!("{base}/v2/{REPO}/blobs/{layer}"))
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?
                .bytes()
                .await
                .ok()
        }
        .await;
        if ok.is_some() {
            lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        } else {
            errors += 1;
        }
    }
    (lat, errors)
}

/// Pull p99 (ms) and errors while `work` runs (or for `idle` when there is no work); returns
/// the work's result and its wall time.
async fn with_pulls<T>(
    base: &str,
    tag: &str,
    idle: Duration,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Duration, f64, usize, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..pullers())
        .map(|_| tokio::spawn(puller(base.to_owned(), tag.to_owned(), Arc::clone(&stop))))
        .collect();
    // Let the pullers warm up before the work starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let out = work.await;
    let took = t.elapsed();
    if took < idle {
        tokio::time::sleep(idle - took).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let p99 = crate::load::percentile_ms(&all, 0.99);
    Ok((out?, took, p99, all.len(), errors))
}

async fn ecr(
    base: &str,
    action: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let c = reqwest::Client::builder().no_proxy().build()?;
    let resp = c
        .post(format!("{base}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AmazonEC2ContainerRegistry_V20150921.{action}"),
        )
        .body(body.to_string())
        .timeout(Duration::from_secs(600))
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await?).unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{action}: {status}: {v}");
    Ok(v)
}

/// Runs the bench.
pub async fn run(berth: &Path, images: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!("seeding {images} images into {}", dir.path().display());
    let tag = seed(dir.path(), images).await.context("seeding")?;
    let server = crate::spawn_berth(berth, dir.path(), "warn")?;
    let base = server.base.clone();
    let (_, _, idle_p99, idle_n, idle_err) =
        with_pulls(&base, &tag, Duration::from_secs(5), async { Ok(()) }).await?;
    let repo = serde_json::json!({ "repositoryName": REPO });
    let (preview, preview_t, preview_p99, _, preview_err) =
        with_pulls(&base, &tag, Duration::ZERO, async {
            ecr(&base, "StartLifecyclePolicyPreview", repo.clone()).await?;
            ecr(
                &base,
                "GetLifecyclePolicyPreview",
                serde_json::json!({ "repositoryName": REPO, "maxResults": 1 }),
            )
            .await
        })
        .await?;
    let (run, run_t, run_p99, _, run_err) = with_pulls(&base, &tag, Duration::ZERO, async {
        ecr(&base, "BerthRunLifecyclePolicy", repo.clone()).await
    })
    .await?;
    let (gc, gc_t, gc_p99, _, gc_err) = with_pulls(&base, &tag, Duration::ZERO, async {
        ecr(
            &base,
            "BerthRunGarbageCollection",
            serde_json::json!({ "gracePeriodSeconds": 0 }),
        )
        .await
    })
    .await?;
    let expiring = preview["summary"]["expiringImageTotalCount"]
        .as_u64()
        .unwrap_or(0);
    let expired = run["expiredImages"].as_array().map_or(0, Vec::len);
    println!();
    println!(
        "berth-bench gc: {images} images, {} pullers (manifest by tag + layer)",
        pullers()
    );
    println!(
        "{:<34} {:>10} {:>14} {:>8}",
        "phase", "time s", "pull p99 ms", "errors"
    );
    println!(
        "{:<34} {:>10} {:>14.2} {:>8}",
        format!("idle ({idle_n} pulls)"),
        "-",
        idle_p99,
        idle_err
    );
    let row = |name: String, t: Duration, p99: f64, e: usize| {
        println!(
            "{:<34} {:>10.2} {:>14.2} {:>8}",
            name,
            t.as_secs_f64(),
            p99,
            e
        );
    };
    row(
        format!("lifecycle preview ({expiring} expire)"),
        preview_t,
        preview_p99,
        preview_err,
    );
    row(
        format!("lifecycle run ({expired} expired)"),
        run_t,
        run_p99,
        run_err,
    );
    row(
        format!(
            "gc ({} blobs, {} links)",
            gc["blobsRemoved"], gc["linksRemoved"]
        ),
        gc_t,
        gc_p99,
        gc_err,
    );
    let ratio = |p: f64| if idle_p99 > 0.0 { p / idle_p99 } else { 0.0 };
    println!();
    println!(
        "targets: lifecycle evaluation < 2 s: {:.2} s; GC < 30 s: {:.2} s; pull p99 during GC <= 2x idle: {:.2}x (run: {:.2}x)",
        preview_t.as_secs_f64(),
        gc_t.as_secs_f64(),
        ratio(gc_p99),
        ratio(run_p99),
    );
    drop(server);
    Ok(())
}
