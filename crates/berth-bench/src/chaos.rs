//! `berth-bench chaos`: the kill -9 campaign. Workers write concurrently — monolithic and
//! chunked blob pushes, ECR layer uploads (Initiate / UploadLayerPart / Complete), manifest PUTs
//! under tags, tag moves and tag deletes — each into its own repository, recording every write
//! the server acknowledged and the one it had in flight. At a random moment the server gets
//! SIGKILL; it is restarted on the same data directory and checked:
//!
//! - every acknowledged blob and manifest reads back byte-exact;
//! - every tag resolves to what its last acknowledged write (or the write in flight at the
//!   kill) left it pointing at, and an acknowledged delete stays deleted;
//! - an upload session cut off by the kill either is gone (404) or continues from the offset
//!   the server reports and completes with the right digest (no session is stuck);
//! - every file under `blobs/` hashes to its name.
//!
//! Any violation stops the run with an error naming it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use sha2::Digest as _;

use crate::{Rng, absolute, digest_of, seeded_bytes, spawn_berth};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// What the server acknowledged, per worker.
#[derive(Debug, Default)]
struct Ledger {
    /// (repository, digest) → bytes, for blobs and manifests.
    blobs: HashMap<(String, String), Bytes>,
    manifests: HashMap<(String, String), Bytes>,
    /// (repository, tag) → the digest it points at (`None`: deleted).
    tags: HashMap<(String, String), Option<String>>,
    /// The tag write in flight at the kill: the tag may hold this instead.
    tag_in_flight: Option<((String, String), Option<String>)>,
    /// A chunked upload in flight at the kill: its URL's path (the port changes with each
    /// start), the whole blob and its digest.
    upload_in_flight: Option<(String, Bytes, String)>,
}

/// A URL of the server at `base` without it.
fn path_of(base: &str, url: &str) -> String {
    url.strip_prefix(base).unwrap_or(url).to_owned()
}

fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// One worker's loop: random writes until the server dies under it.
async fn worker(
    c: reqwest::Client,
    base: String,
    id: usize,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
) {
    let repo = format!("chaos/w{id}");
    let mut rng = Rng::new(seed);
    loop {
        let result = step(&c, &base, &repo, &mut rng, &ledger).await;
        if result.is_err() {
            // Connection refused or reset: the server is gone; the in-flight record stays.
            return;
        }
    }
}

fn lock(l: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn step(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    rng: &mut Rng,
    ledger: &Mutex<Ledger>,
) -> anyhow::Result<()> {
    let blob_seed = rng.next();
    let len = 1024 + rng.below(256 * 1024);
    match rng.below(10) {
        // Monolithic push.
        0 | 1 => {
            let data = seeded_bytes(&blob_seed.to_le_bytes(), len);
            let d = digest_of(&data);
            let r = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .body(data.clone())
                .send()
                .await?;
            if r.status() == 201 {
                lock(ledger).blobs.insert((repo.to_owned(), d), data);
            }
        }
        // Chunked push: POST, two PATCHes, PUT.
        2 | 3 => {
            let data = seeded_bytes(&blob_seed.to_le_bytes(), len);
            let d = digest_of(&data);
            let r = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .send()
                .await?;
            if r.status() != 202 {
                return Ok(());
            }
            let mut url = absolute(base, r.headers()["location"].to_str()?);
            lock(ledger).upload_in_flight = Some((path_of(base, &url), data.clone(), d.clone()));
            let half = data.len() / 2;
            for (start, chunk) in [(0, data.slice(..half)), (half, data.slice(half..))] {
                let r = c
                    .patch(&url)
                    .header(
                        "content-range",
                        format!("{start}-{}", start + chunk.len() - 1),
                    )
                    .header("content-type", "application/octet-stream")
                    .body(chunk)
                    .send()
                    .await?;
                if r.status() != 202 {
                    lock(ledger).upload_in_flight = None;
                    return Ok(());
                }
                url = absolute(base, r.headers()["location"].to_str()?);
                lock(ledger).upload_in_flight =
                    Some((path_of(base, &url), data.clone(), d.clone()));
            }
            let r = c.put(with_digest(&url, &d)).send().await?;
            let mut l = lock(ledger);
            l.upload_in_flight = None;
            if r.status() == 201 {
                l.blobs.insert((repo.to_owned(), d), data);
            }
        }
        // ECR layer upload in parts (5 MiB minimum does not apply to a single part).
        4 => {
            let data = seeded_bytes(&blob_seed.to_le_bytes(), len);
            let d = digest_of(&data);
            let call = |target: &str, body: serde_json::Value| {
                c.post(format!("{base}/"))
                    .header("x-amz-target", format!("{TARGET}{target}"))
                    .header("content-type", "application/x-amz-json-1.1")
                    .body(body.to_string())
                    .send()
            };
            let r = call(
                "InitiateLayerUpload",
                serde_json::json!({"repositoryName": repo}),
            )
            .await?;
            if r.status() != 200 {
                return Ok(());
            }
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
            let upload = v["uploadId"].as_str().unwrap_or_default().to_owned();
            let part = serde_json::json!({
                "repositoryName": repo, "uploadId": upload, "partFirstByte": 0,
                "partLastByte": data.len() - 1,
                "layerPartBlob": base64::engine::general_purpose::STANDARD.encode(&data),
            });
            if call("UploadLayerPart", part).await?.status() != 200 {
                return Ok(());
            }
            let done = serde_json::json!({"repositoryName": repo, "uploadId": upload, "layerDigests": [d]});
            let r = call("CompleteLayerUpload", done).await?;
            if r.status() == 200 {
                lock(ledger).blobs.insert((repo.to_owned(), d), data);
            }
        }
        // A manifest over acknowledged blobs, under a tag (a new tag or a moved one).
        5..=7 => {
            let (config, layer) = {
                let l = lock(ledger);
                let mine: Vec<(&String, &Bytes)> = l
                    .blobs
                    .iter()
                    .filter(|((r, _), _)| r == repo)
                    .map(|((_, d), b)| (d, b))
                    .collect();
                if mine.len() < 2 {
                    return Ok(());
                }
                let a = rng.below(mine.len());
                let b = rng.below(mine.len());
                (
                    (mine[a].0.clone(), mine[a].1.len()),
                    (mine[b].0.clone(), mine[b].1.len()),
                )
            };
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}],
                "annotations": {"seed": blob_seed.to_string()},
            });
            let bytes = Bytes::from(m.to_string());
            let d = digest_of(&bytes);
            let tag = format!("t{}", rng.below(6));
            let key = (repo.to_owned(), tag.clone());
            lock(ledger).tag_in_flight = Some((key.clone(), Some(d.clone())));
            let r = c
                .put(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("content-type", MANIFEST)
                .body(bytes.clone())
                .send()
                .await?;
            let mut l = lock(ledger);
            l.tag_in_flight = None;
            if r.status() == 201 {
                l.manifests.insert((repo.to_owned(), d.clone()), bytes);
                l.tags.insert(key, Some(d));
            }
        }
        // Delete a tag.
        _ => {
            let tag = format!("t{}", rng.below(6));
            let key = (repo.to_owned(), tag.clone());
            lock(ledger).tag_in_flight = Some((key.clone(), None));
            let r = c
                .delete(format!("{base}/v2/{repo}/manifests/{tag}"))
                .send()
                .await?;
            let mut l = lock(ledger);
            l.tag_in_flight = None;
            if r.status() == 202 {
                l.tags.insert(key, None);
            }
        }
    }
    Ok(())
}

/// Checks the restarted server against every ledger; finishes cut-off uploads.
async fn verify(
    c: &reqwest::Client,
    base: &str,
    ledgers: &[Arc<Mutex<Ledger>>],
) -> anyhow::Result<(usize, usize)> {
    let (mut checked, mut resumed) = (0, 0);
    for ledger in ledgers {
        let (blobs, manifests, tags, tag_in_flight, upload) = {
            let mut l = lock(ledger);
            (
                l.blobs.clone(),
                l.manifests.clone(),
                l.tags.clone(),
                l.tag_in_flight.take(),
                l.upload_in_flight.take(),
            )
        };
        for ((repo, d), data) in &blobs {
            let r = c.get(format!("{base}/v2/{repo}/blobs/{d}")).send().await?;
            if r.status() != 200 {
                bail!("acknowledged blob {repo}@{d} answers {}", r.status());
            }
            if r.bytes().await? != *data {
                bail!("acknowledged blob {repo}@{d} reads back different bytes");
            }
            checked += 1;
        }
        for ((repo, d), data) in &manifests {
            let r = c
                .get(format!("{base}/v2/{repo}/manifests/{d}"))
                .header("accept", MANIFEST)
                .send()
                .await?;
            if r.status() != 200 || r.bytes().await? != *data {
                bail!("acknowledged manifest {repo}@{d} is missing or changed");
            }
            checked += 1;
        }
        for ((repo, tag), want) in &tags {
            let r = c
                .head(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("accept", MANIFEST)
                .send()
                .await?;
            let got = (r.status() == 200).then(|| {
                r.headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            });
            let alt = tag_in_flight
                .as_ref()
                .filter(|(k, _)| k.0 == *repo && k.1 == *tag)
                .map(|(_, v)| v.clone());
            if got != *want && Some(&got) != alt.as_ref() {
                bail!("tag {repo}:{tag} is {got:?}, acknowledged {want:?} (in flight: {alt:?})");
            }
            if let (Some(d), true) = (&got, got != *want) {
                // The in-flight write landed: it is now the acknowledged state.
                lock(ledger)
                    .tags
                    .insert((repo.clone(), tag.clone()), Some(d.clone()));
            } else if got.is_none() && got != *want {
                lock(ledger).tags.insert((repo.clone(), tag.clone()), None);
            }
            checked += 1;
        }
        if let Some((path, data, d)) = upload {
            // A session cut off by the kill: gone, or resumable from where the server says.
            let url = format!("{base}{path}");
            let r = c.get(&url).send().await?;
            match r.status().as_u16() {
                404 => {}
                204 => {
                    let range = r
                        .headers()
                        .get("range")
                        .and_then(|v| v.to_str().ok())
                        .context("upload status without Range")?;
                    let end: usize = range.rsplit('-').next().unwrap_or("0").parse()?;
                    let staged = if end == 0 && range == "0-0" {
                        0
                    } else {
                        end + 1
                    };
                    let staged = staged.min(data.len());
                    let mut put = c.put(with_digest(&url, &d));
                    if staged < data.len() {
                        put = put
                            .header("content-range", format!("{staged}-{}", data.len() - 1))
                            .header("content-type", "application/octet-stream")
                            .body(data.slice(staged..));
                    }
                    let r = put.send().await?;
                    // A session whose data already holds the whole blob, or resumed: 201.
                    if r.status() != 201 {
                        bail!(
                            "a cut-off upload session could not be completed from offset {staged}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                    resumed += 1;
                }
                s => bail!("a cut-off upload session answers {s}"),
            }
        }
    }
    Ok((checked, resumed))
}

/// Every file under `blobs/` hashes to its name.
fn check_blob_files(data: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    let root = data.join("blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    for p in prefixes {
        for f in std::fs::read_dir(p?.path())? {
            let path = f?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let mut h = sha2::Sha256::new();
            let mut f = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = std::io::Read::read(&mut f, &mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            if hex::encode(h.finalize()) != name {
                bail!("blob file {} does not hash to its name", path.display());
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Runs the campaign: `kills` cycles of writing, SIGKILL, restart and verification.
pub async fn run(berth: &Path, kills: usize, workers: usize, seed: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..workers).map(|_| Arc::default()).collect();
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let (mut checked, mut resumed, mut files) = (0, 0, 0);
    for kill in 1..=kills {
        let server = spawn_berth(berth, &data, "error")?;
        let tasks: Vec<_> = ledgers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                tokio::spawn(worker(
                    c.clone(),
                    server.base.clone(),
                    i,
                    rng.next(),
                    Arc::clone(l),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50 + rng.below(600) as u64)).await;
        drop(server); // SIGKILL, then wait
        for t in tasks {
            let _ = t.await;
        }
        let server = spawn_berth(berth, &data, "error")?;
        let (n, r) = verify(&c, &server.base, &ledgers)
            .await
            .with_context(|| format!("after kill {kill}"))?;
        checked += n;
        resumed += r;
        drop(server);
        files = check_blob_files(&data).with_context(|| format!("after kill {kill}"))?;
        if kill % 10 == 0 || kill == kills {
            println!(
                "kill {kill}/{kills}: {checked} acknowledged writes checked so far, {resumed} cut-off uploads resumed, {files} blob files verified"
            );
        }
    }
    let acked: usize = ledgers
        .iter()
        .map(|l| {
            let l = lock(l);
            l.blobs.len() + l.manifests.len() + l.tags.len()
        })
        .sum();
    println!(
        "chaos: {kills} of {kills} kills survived, nothing lost: {acked} acknowledged blobs, manifests and tags \
         ({checked} checks), {resumed} cut-off upload sessions resumed, {files} blob files hash to their names; {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
