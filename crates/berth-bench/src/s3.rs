//! `berth-bench registry --backend s3`: `berth serve --storage s3://…` on a SeaweedFS on this
//! machine, against (a) SeaweedFS read and written directly by boto3 (AWS's own Python SDK, its
//! default transfer settings) for blob push and pull, and (b) the embedded backend (`berth serve`
//! on the filesystem) for manifest HEAD/GET rates. Same payloads, same run; prints each figure
//! and the ratio.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::haproxy::Haproxy;
use crate::seaweed::Seaweed;
use crate::{
    Figure, berth_binary, client, digest_of, human, payload, pull_curl, push_file,
    push_file_streamed, rate, seed_manifest, spawn_berth_with,
};

/// Times boto3 uploads and downloads of the given files (in one Python process, so start-up is
/// not counted): prints `{"push": seconds, "pull": seconds}` totals.
const BOTO3: &str = r#"
import json, sys, time, boto3
from botocore.config import Config
endpoint, bucket, files = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
class Sink:
    def __init__(self): self.n = 0
    def write(self, b): self.n += len(b); return len(b)
# Warm-up, untimed (as berth's): the connection and credentials are ready.
s3.upload_file(files[0]["file"], bucket, "direct/warm-up")
push = pull = 0.0
for f in files:
    key = "direct/" + f["key"]
    t = time.perf_counter(); s3.upload_file(f["file"], bucket, key); push += time.perf_counter() - t
    sink = Sink()
    t = time.perf_counter(); s3.download_fileobj(bucket, key, sink); pull += time.perf_counter() - t
    if sink.n != f["size"]:
        sys.exit(f"downloaded {sink.n} of {f['size']} bytes")
print(json.dumps({"push": push, "pull": pull}))
"#;

pub async fn run(
    secs: u64,
    no_gib: bool,
    quick: bool,
    postgres: bool,
    weed: &Path,
    python: &Path,
) -> anyhow::Result<()> {
    let bin = berth_binary()?;
    let store = Seaweed::start(weed, "bench").context("starting SeaweedFS")?;
    let db = postgres.then(crate::pg::database);
    let data = tempfile::tempdir()?;
    let config = data.path().join("berth.toml");
    let metadata = db
        .as_ref()
        .map(|d| format!("metadata = \"{}\"\n", d.url))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!("{metadata}{}", store.config("registry", "")),
    )?;
    let mut env = store.env();
    // Replicas sharing a database need one master key.
    env.push((
        "BERTH_MASTER_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
    ));
    let berth = spawn_berth_with(&bin, data.path(), "warn", Some(&config), &env)?;
    let fs_dir = tempfile::tempdir()?;
    let embedded = spawn_berth_with(&bin, fs_dir.path(), "warn", None, &[])?;
    let c = client()?;
    println!(
        "berth serve on S3 (SeaweedFS {}){}: {}   embedded berth serve: {}",
        store.endpoint,
        if postgres { " + PostgreSQL" } else { "" },
        berth.base,
        embedded.base
    );
    let mut figures = Vec::new();
    let mut sizes = vec![(1usize << 20, 20usize), (10 << 20, 10), (100 << 20, 5)];
    if !no_gib {
        sizes.push((1 << 30, 2));
    }
    if quick {
        sizes = vec![(1 << 20, 3), (10 << 20, 2)];
    }
    let files_dir = tempfile::tempdir()?;
    // Warm-up, untimed (as boto3's): the store connection and credentials are ready.
    {
        let data = payload(1 << 20, 7);
        let digest = digest_of(&data);
        let file = files_dir.path().join("warm-up");
        std::fs::write(&file, &data)?;
        push_file(&c, &berth.base, "bench/blob", &file, &digest).await?;
        std::fs::remove_file(&file)?;
    }
    for (size, reps) in sizes {
        let label = human(size);
        let (mut push_s, mut streamed_s, mut pull_s) = (0.0f64, 0.0f64, 0.0f64);
        let mut direct = Vec::new();
        for rep in 0..reps {
            let data = payload(size, (size as u64) ^ (rep as u64 + 101));
            let digest = digest_of(&data);
            let file = files_dir.path().join(format!("{size}-{rep}"));
            std::fs::write(&file, &data)?;
            drop(data);
            push_s += push_file(&c, &berth.base, "bench/blob", &file, &digest).await?;
            // As many other bytes, the way docker and skopeo send them (other bytes: a blob
            // stored already is not written again).
            let other = payload(size, (size as u64) ^ (rep as u64 + 9_001));
            let other_digest = digest_of(&other);
            let other_file = files_dir.path().join(format!("{size}-{rep}-streamed"));
            std::fs::write(&other_file, &other)?;
            drop(other);
            streamed_s +=
                push_file_streamed(&c, &berth.base, "bench/blob", &other_file, &other_digest)
                    .await?;
            std::fs::remove_file(&other_file)?;
            let (t, n) = pull_curl(&berth.base, "bench/blob", &digest)?;
            if n != size as u64 {
                bail!("pulled {n} bytes of {size}");
            }
            pull_s += t;
            direct.push(serde_json::json!({
                "file": file.to_string_lossy(), "key": format!("{size}-{rep}"), "size": size
            }));
        }
        let out = Command::new(python)
            .arg("-c")
            .arg(BOTO3)
            .arg(&store.endpoint)
            .arg(&store.bucket)
            .arg(serde_json::Value::Array(direct).to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {} (boto3)", python.display()))?;
        if !out.status.success() {
            bail!("boto3: {}", String::from_utf8_lossy(&out.stderr));
        }
        let direct: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let (dpush, dpull) = (
            direct["push"].as_f64().context("push")?,
            direct["pull"].as_f64().context("pull")?,
        );
        for e in std::fs::read_dir(files_dir.path())? {
            std::fs::remove_file(e?.path())?;
        }
        let total = (size * reps) as f64 / 1e6;
        figures.push(Figure {
            name: format!("blob push {label} (vs boto3 → SeaweedFS)"),
            unit: "MB/s",
            berth: total / push_s,
            reference: total / dpush,
            higher_is_better: true,
        });
        figures.push(Figure {
            name: format!("blob push {label}, one PATCH + PUT (vs boto3 → SeaweedFS)"),
            unit: "MB/s",
            berth: total / streamed_s,
            reference: total / dpush,
            higher_is_better: true,
        });
        figures.push(Figure {
            name: format!("blob pull {label} (vs boto3 ← SeaweedFS)"),
            unit: "MB/s",
            berth: total / pull_s,
            reference: total / dpull,
            higher_is_better: true,
        });
    }
    let urls = [
        seed_manifest(&c, &berth.base).await?,
        seed_manifest(&c, &embedded.base).await?,
    ];
    for head in [true, false] {
        for conc in [1usize, 16, 64] {
            let b = rate(&c, &urls[0], head, conc, secs).await?;
            let r = rate(&c, &urls[1], head, conc, secs).await?;
            figures.push(Figure {
                name: format!(
                    "manifest {} c={conc} (vs embedded)",
                    if head { "HEAD" } else { "GET" }
                ),
                unit: "req/s",
                berth: b,
                reference: r,
                higher_is_better: true,
            });
        }
    }
    if postgres {
        replicas(&c, &bin, &config, &env, &berth, secs, &mut figures).await?;
    }
    figures.push(Figure {
        name: "peak RSS (vs embedded)".into(),
        unit: "MiB",
        berth: berth.peak_rss_mib(),
        reference: embedded.peak_rss_mib(),
        higher_is_better: false,
    });
    let ours = if postgres {
        "berth on S3 + PostgreSQL"
    } else {
        "berth on S3"
    };
    crate::print_figures(ours, "peer", &figures);
    Ok(())
}

/// One replica vs three behind HAProxy (round-robin): manifest GET rates and a 100 MiB pull
/// through the balancer. The first replica is `first`; two more join it on the same stores.
async fn replicas(
    c: &reqwest::Client,
    bin: &Path,
    config: &Path,
    env: &[(&str, String)],
    first: &crate::Proc,
    secs: u64,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let mut dirs = Vec::new();
    let mut more = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir()?;
        more.push(spawn_berth_with(bin, d.path(), "warn", Some(config), env)?);
        dirs.push(d);
    }
    let strip = |b: &str| b.trim_start_matches("http://").to_owned();
    let one = Haproxy::start(&[strip(&first.base)])?;
    let three = Haproxy::start(&[
        strip(&first.base),
        strip(&more[0].base),
        strip(&more[1].base),
    ])?;
    let big = payload(100 << 20, 4242);
    let digest = digest_of(&big);
    let file = dirs[0].path().join("big");
    std::fs::write(&file, &big)?;
    drop(big);
    push_file(c, &first.base, "bench/lb", &file, &digest).await?;
    let url = |lb: &Haproxy| format!("http://{}/v2/bench/app/manifests/latest", lb.addr);
    for conc in [16usize, 64] {
        let b3 = rate(c, &url(&three), false, conc, secs).await?;
        let b1 = rate(c, &url(&one), false, conc, secs).await?;
        figures.push(Figure {
            name: format!("manifest GET c={conc}, 3 replicas (vs 1) behind HAProxy"),
            unit: "req/s",
            berth: b3,
            reference: b1,
            higher_is_better: true,
        });
    }
    // Four pulls at once of the 100 MiB blob.
    let mut mbps = [0.0f64; 2];
    for (i, lb) in [&three, &one].into_iter().enumerate() {
        let base = format!("http://{}", lb.addr);
        let start = std::time::Instant::now();
        let pulls: Vec<_> = (0..4)
            .map(|_| {
                let (base, digest) = (base.clone(), digest.clone());
                tokio::task::spawn_blocking(move || pull_curl(&base, "bench/lb", &digest))
            })
            .collect();
        for p in pulls {
            p.await??;
        }
        mbps[i] = 4.0 * 104.857_6 / start.elapsed().as_secs_f64();
    }
    figures.push(Figure {
        name: "4 concurrent 100 MiB pulls, 3 replicas (vs 1) behind HAProxy".into(),
        unit: "MB/s",
        berth: mbps[0],
        reference: mbps[1],
        higher_is_better: true,
    });
    Ok(())
}
