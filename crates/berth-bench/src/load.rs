//! `berth-bench load`: sustained mixed traffic against one `berth serve` at a fixed concurrency.
//!
//! After seeding 20 small images into `load/r0..r4`, `concurrency` tasks loop for `seconds`
//! seconds over a weighted mix of manifest GETs, blob GETs (64 KiB and 1 MiB), tag lists, ECR
//! DescribeImages calls and pushes of new images. Per kind it reports count, throughput, errors
//! and p50/p99/p999 latency; a sampler follows the server's RSS and open file descriptors once a
//! second, so that leaks show up as growth between the warm-up sample and the last one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Rng, digest_of, seeded_bytes};
use anyhow::{Context, bail};
use bytes::Bytes;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.DescribeImages";
const REPOS: usize = 5;
const SEED_IMAGES: usize = 20;
const SMALL: usize = 64 << 10;
const BIG: usize = 1 << 20;
/// How many error messages are printed (all of them are counted).
const SHOWN_ERRORS: usize = 10;

/// One kind of request in the mix, with its share (percent) of the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ManifestGet,
    BlobSmall,
    BlobBig,
    TagList,
    Describe,
    Push,
}

const KINDS: [(Kind, u64); 6] = [
    (Kind::ManifestGet, 40),
    (Kind::BlobSmall, 25),
    (Kind::BlobBig, 5),
    (Kind::TagList, 10),
    (Kind::Describe, 10),
    (Kind::Push, 10),
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ManifestGet => "manifest GET",
            Kind::BlobSmall => "blob GET 64K",
            Kind::BlobBig => "blob GET 1M",
            Kind::TagList => "tag list",
            Kind::Describe => "ECR DescribeImages",
            Kind::Push => "push image",
        }
    }

    fn index(self) -> usize {
        KINDS.iter().position(|(k, _)| *k == self).unwrap_or(0)
    }
}

/// A seeded image the readers pick from.
#[derive(Debug)]
struct Image {
    repo: String,
    tag: String,
    small: String,
    big: String,
}

/// Pushes one blob monolithically (POST, then PUT of the whole body).
async fn push_blob(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: Bytes,
) -> anyhow::Result<String> {
    let digest = digest_of(&data);
    crate::push(c, base, repo, data).await?;
    Ok(digest)
}

/// Pushes a config, the given layers and a manifest tagged `tag`.
async fn push_image(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    layers: Vec<Bytes>,
) -> anyhow::Result<Vec<String>> {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/bin:/bin"],"Labels":{{"bench":"load","image":"{repo}:{tag}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    ));
    let config_len = config.len();
    let config_digest = push_blob(c, base, repo, config).await?;
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for layer in layers {
        let len = layer.len();
        let digest = push_blob(c, base, repo, layer).await?;
        descriptors.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":{len}}}"#
        ));
        digests.push(digest);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_len}}},"layers":[{}]}}"#,
        descriptors.join(",")
    );
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", MANIFEST_TYPE)
        .body(manifest)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "PUT manifest {repo}:{tag}: {} {}",
            r.status(),
            r.text().await?
        );
    }
    Ok(digests)
}

async fn seed(c: &reqwest::Client, base: &str) -> anyhow::Result<Vec<Image>> {
    let mut images = Vec::new();
    for i in 0..SEED_IMAGES {
        let repo = format!("load/r{}", i % REPOS);
        let tag = format!("seed-{i}");
        let small = seeded_bytes(format!("seed-small-{i}").as_bytes(), SMALL);
        let big = seeded_bytes(format!("seed-big-{i}").as_bytes(), BIG);
        let digests = push_image(c, base, &repo, &tag, vec![small, big])
            .await
            .with_context(|| format!("seeding {repo}:{tag}"))?;
        let [small, big] = <[String; 2]>::try_from(digests)
            .map_err(|_| anyhow::anyhow!("seeding {repo}:{tag}: wrong layer count"))?;
        images.push(Image {
            repo,
            tag,
            small,
            big,
        });
    }
    Ok(images)
}

/// Sends a request and reads its whole body; Err on a transport error or a non-2xx status.
async fn fetch(req: reqwest::RequestBuilder, want_len: Option<usize>) -> anyhow::Result<()> {
    let r = req.send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    if !status.is_success() {
        bail!(
            "{status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    if let Some(n) = want_len
        && body.len() != n
    {
        bail!("got {} bytes, want {n}", body.len());
    }
    Ok(())
}

/// One operation of the mix.
async fn op(
    c: &reqwest::Client,
    base: &str,
    images: &[Image],
    kind: Kind,
    rng: &mut Rng,
    push_name: &str,
) -> anyhow::Result<()> {
    let img = images.get(rng.below(images.len())).context("no images")?;
    let (repo, tag) = (&img.repo, &img.tag);
    match kind {
        Kind::ManifestGet => {
            let req = c
                .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("accept", MANIFEST_TYPE);
            fetch(req, None).await
        }
        Kind::BlobSmall => {
            let req = c.get(format!("{base}/v2/{repo}/blobs/{}", img.small));
            fetch(req, Some(SMALL)).await
        }
        Kind::BlobBig => {
            let req = c.get(format!("{base}/v2/{repo}/blobs/{}", img.big));
            fetch(req, Some(BIG)).await
        }
        Kind::TagList => fetch(c.get(format!("{base}/v2/{repo}/tags/list")), None).await,
        Kind::Describe => {
            let req = c
                .post(format!("{base}/"))
                .header("x-amz-target", ECR_TARGET)
                .header("content-type", "application/x-amz-json-1.1")
                .body(r#"{"repositoryName":"load/r0"}"#);
            fetch(req, None).await
        }
        Kind::Push => {
            let layer = seeded_bytes(push_name.as_bytes(), SMALL);
            push_image(c, base, repo, push_name, vec![layer]).await?;
            Ok(())
        }
    }
}

/// What one task (or, merged, all of them) saw of one kind.
#[derive(Debug, Default)]
struct Stats {
    count: u64,
    errors: u64,
    /// Latencies of the successful operations, microseconds.
    micros: Vec<u64>,
}

#[derive(Debug)]
struct Worker {
    id: usize,
    client: reqwest::Client,
    base: String,
    images: Arc<Vec<Image>>,
    deadline: Instant,
    shown: Arc<AtomicUsize>,
}

impl Worker {
    async fn run(self) -> Vec<Stats> {
        let mut stats: Vec<Stats> = KINDS.iter().map(|_| Stats::default()).collect();
        let mut rng = Rng::new(self.id as u64 ^ 0x6C6F_6164);
        let total: u64 = KINDS.iter().map(|(_, w)| w).sum();
        let mut pushes = 0u64;
        while Instant::now() < self.deadline {
            let mut roll = rng.next() % total;
            let mut kind = Kind::ManifestGet;
            for (k, w) in KINDS {
                if roll < w {
                    kind = k;
                    break;
                }
                roll -= w;
            }
            let push_name = if kind == Kind::Push {
                pushes += 1;
                format!("w{}-p{pushes}", self.id)
            } else {
                String::new()
            };
            let start = Instant::now();
            let result = op(
                &self.client,
                &self.base,
                &self.images,
                kind,
                &mut rng,
                &push_name,
            )
            .await;
            let elapsed = start.elapsed();
            let s = &mut stats[kind.index()];
            s.count += 1;
            match result {
                Ok(()) => s
                    .micros
                    .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)),
                Err(e) => {
                    s.errors += 1;
                    if self.shown.fetch_add(1, Ordering::Relaxed) < SHOWN_ERRORS {
                        eprintln!("error: {} (task {}): {e:#}", kind.name(), self.id);
                    }
                }
            }
        }
        stats
    }
}

/// The server's resident set (kB) and open file descriptors at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kb: u64,
    fds: usize,
}

fn sample(pid: u32, at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample { at, rss_kb, fds })
}

async fn sampler(pid: u32, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        samples.extend(sample(pid, start.elapsed()));
    }
    samples
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// `berth-bench load`: runs the mixed workload for `seconds` seconds with `concurrency` tasks
/// against a fresh `berth serve` and prints the report. Errors during the run are counted and
/// reported, not returned; only a failed setup (server start, seeding) is an `Err`.
pub async fn run(berth: &Path, seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    let server = crate::start_berth(berth)?;
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .timeout(Duration::from_secs(60))
        .build()?;
    println!("berth serve: {} (pid {pid})", server.base);
    let seed_start = Instant::now();
    let images = Arc::new(seed(&client, &server.base).await?);
    println!(
        "seeded {SEED_IMAGES} images into {REPOS} repositories in {:.1} s; running {seconds} s at concurrency {concurrency}",
        seed_start.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sampling = tokio::spawn(sampler(pid, stop.clone()));
    let shown = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|id| {
            tokio::spawn(
                Worker {
                    id,
                    client: client.clone(),
                    base: server.base.clone(),
                    images: images.clone(),
                    deadline,
                    shown: shown.clone(),
                }
                .run(),
            )
        })
        .collect();
    let mut merged: Vec<Stats> = KINDS.iter().map(|_| Stats::default()).collect();
    for task in tasks {
        for (into, from) in merged
            .iter_mut()
            .zip(task.await.context("load task panicked")?)
        {
            into.count += from.count;
            into.errors += from.errors;
            into.micros.extend(from.micros);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut samples = sampling.await.context("sampler panicked")?;
    samples.extend(sample(pid, start.elapsed()));

    println!();
    println!(
        "{:<20} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9}",
        "kind", "count", "req/s", "errors", "p50 ms", "p99 ms", "p999 ms"
    );
    let mut all = Vec::new();
    let (mut count, mut errors) = (0u64, 0u64);
    let mut manifest_p99 = 0.0;
    for ((kind, _), s) in KINDS.iter().zip(merged.iter_mut()) {
        s.micros.sort_unstable();
        let p99 = percentile_ms(&s.micros, 0.99);
        if *kind == Kind::ManifestGet {
            manifest_p99 = p99;
        }
        println!(
            "{:<20} {:>9} {:>10.1} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            kind.name(),
            s.count,
            s.count as f64 / elapsed,
            s.errors,
            percentile_ms(&s.micros, 0.5),
            p99,
            percentile_ms(&s.micros, 0.999)
        );
        count += s.count;
        errors += s.errors;
        all.extend_from_slice(&s.micros);
    }
    all.sort_unstable();
    println!(
        "{:<20} {:>9} {:>10.1} {:>7} {:>9.2} {:>9.2} {:>9.2}",
        "total",
        count,
        count as f64 / elapsed,
        errors,
        percentile_ms(&all, 0.5),
        percentile_ms(&all, 0.99),
        percentile_ms(&all, 0.999)
    );

    let warm = samples
        .iter()
        .find(|s| s.at >= Duration::from_secs(5))
        .or(samples.first())
        .map_or(0, |s| s.rss_kb);
    let peak = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let last = samples.last().map_or(0, |s| s.rss_kb);
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    println!();
    println!(
        "server RSS: warm-up end {:.1} MiB, peak {:.1} MiB, last {:.1} MiB; peak open fds {peak_fds} ({} samples over {elapsed:.1} s)",
        mib(warm),
        mib(peak),
        mib(last),
        samples.len()
    );
    println!(
        "errors: {errors} (goal 0); manifest GET p99: {manifest_p99:.2} ms (goal < 20 ms); RSS first→last: {:.1}→{:.1} MiB",
        mib(warm),
        mib(last)
    );
    drop(server);
    Ok(())
}
