//! `berth build`: buildx's flags over `berth-build`, outputs through the registry client.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use berth_build::{Compression, Event, Progress, Store};
use berth_ops::build::BuildRequest;
use clap::Args;
use serde_json::json;

use crate::UsageError;
use crate::progress::{Mode, Reporter};
use crate::transfer::{RegistryOpts, runtime};

/// `--progress` for builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildProgress {
    /// tty on a terminal, plain otherwise.
    Auto,
    /// A live display: a spinner per running step with its latest output line, one line per
    /// finished step (plain lines when standard error is not a terminal).
    Tty,
    /// One line per step event, RUN output prefixed with its step.
    Plain,
    /// Nothing but errors (the image digest is printed on standard output).
    Quiet,
    /// One JSON object per event on standard error.
    Json,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context (a directory)
    context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from standard input)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: Option<PathBuf>,
    /// Name and tag the image (REGISTRY/REPO:TAG); repeatable
    #[arg(short = 't', long = "tag", value_name = "REF")]
    tags: Vec<String>,
    /// Target platforms, comma-separated (linux/amd64,linux/arm64); default: this machine's
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH[/VARIANT]")]
    platform: Vec<String>,
    /// The stage to build
    #[arg(long)]
    target: Option<String>,
    /// A build argument (KEY=VALUE, or KEY to take it from the environment); repeatable
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// A named context: NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// A secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR][,type=file|env]
    /// (with neither src nor env: the variable ID if set, else the file ID); repeatable
    #[arg(long = "secret", value_name = "SPEC")]
    secrets: Vec<String>,
    /// SSH keys for RUN --mount=type=ssh: default|ID[=SOCKET|=KEYFILE[,KEYFILE…]] — an agent's
    /// socket (default: $SSH_AUTH_SOCK), or key files an agent berth starts serves; repeatable
    #[arg(long = "ssh", value_name = "ID[=SOCKET|KEYFILE]")]
    ssh: Vec<String>,
    /// Do not use the step cache
    #[arg(long)]
    no_cache: bool,
    /// Fetch base images again even when the store has them
    #[arg(long)]
    pull: bool,
    /// Push a CycloneDX SBOM of each platform image beside it as an OCI referrer (`--sbom` or
    /// `--sbom=true`); needs a registry output
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sbom: Option<bool>,
    /// Push SLSA v1 provenance of each platform image beside it as an OCI referrer:
    /// mode=min (the default of a bare `--provenance`) or mode=max (also the build arguments
    /// and labels); needs a registry output
    #[arg(long, value_name = "mode=min|max", num_args = 0..=1, require_equals = true, default_missing_value = "mode=min")]
    provenance: Option<String>,
    /// Export the step cache: type=registry,ref=REF[,mode=min|max][,image-manifest=true] (an
    /// OCI image manifest any registry, ECR included, accepts) or type=local,dest=DIR; add
    /// cache-mounts=ID[,ID…] to carry RUN --mount=type=cache contents too; repeatable
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Reuse steps from an exported cache: type=registry,ref=REF or type=local,src=DIR (layers
    /// are pulled only for the steps answered from it); repeatable
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// A label for the image (KEY=VALUE); repeatable
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Progress display on standard error
    #[arg(long, value_enum, default_value_t = BuildProgress::Auto)]
    progress: BuildProgress,
    /// Push the image to every -t reference (shorthand for --output type=registry)
    #[arg(long)]
    push: bool,
    /// Where the result goes: type=registry[,name=REF], type=oci,dest=FILE[,tar=false],
    /// type=docker,dest=FILE; repeatable. Each also takes rewrite-timestamp=true|false: with
    /// SOURCE_DATE_EPOCH, clamp the times of files the build wrote to it (default true)
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Write the image (or index) digest to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Write build metadata (digest, names, descriptor) as JSON to this file
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// The OCI runtime for RUN (a name on PATH or a path); default: runc, then crun
    #[arg(long, env = "BERTH_RUNTIME")]
    runtime: Option<String>,
    /// Layer compression
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// The build store (base images, layers, cache); default: $BERTH_BUILD_ROOT,
    /// /var/lib/berth/build as root, else ~/.local/share/berth/build
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryOpts,
}

/// Prints build events on standard error.
struct Printer {
    mode: BuildProgress,
    out: Mutex<std::io::Stderr>,
    /// The live display (`tty`, or `auto` on a terminal).
    live: Option<Live>,
}

/// A spinner per running step; finished steps stay as one line each (CACHED or their time),
/// a running RUN shows its latest output line.
struct Live {
    bars: indicatif::MultiProgress,
    steps: Mutex<std::collections::HashMap<usize, (indicatif::ProgressBar, String)>>,
    running: indicatif::ProgressStyle,
    done: indicatif::ProgressStyle,
}

impl Live {
    fn new() -> Live {
        let running = indicatif::ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:.dim} {msg} {elapsed:.dim}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let done = indicatif::ProgressStyle::with_template("{prefix:.dim} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        Live {
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            steps: Mutex::new(std::collections::HashMap::new()),
            running,
            done,
        }
    }

    fn event(&self, e: Event) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let clip = |s: &str, n: usize| -> String {
            let first = s.lines().next().unwrap_or("");
            if first.chars().count() > n {
                format!("{}…", first.chars().take(n - 1).collect::<String>())
            } else {
                first.to_owned()
            }
        };
        match e {
            Event::Step {
                id,
                platform,
                position,
                text,
            } => {
                let bar = self.bars.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(self.running.clone());
                bar.set_prefix(format!("[{platform} {position}]"));
                let text = clip(&text, 72);
                bar.set_message(text.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                steps.insert(id, (bar, text));
            }
            Event::Cached { id } => self.finish(steps.remove(&id), "CACHED"),
            Event::Output { id, line } => {
                if let Some((bar, text)) = steps.get(&id) {
                    bar.set_message(format!("{text}  │ {}", clip(&line, 60)));
                }
            }
            Event::Done { id, seconds } => {
                self.finish(steps.remove(&id), &format!("{seconds:.1}s"));
            }
            Event::Pull {
                reference,
                platform,
            } => {
                let _ = self
                    .bars
                    .println(format!("fetching {reference} for {platform}"));
            }
            _ => {}
        }
    }

    /// Turns a step's spinner into its final line.
    fn finish(&self, step: Option<(indicatif::ProgressBar, String)>, how: &str) {
        if let Some((bar, text)) = step {
            bar.set_style(self.done.clone());
            bar.finish_with_message(format!("{text} {how}"));
        }
    }

    /// Leaves unfinished spinners (a failed build) as they are, without their animation.
    fn abandon(&self) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        for (_, (bar, text)) in steps.drain() {
            bar.set_style(self.done.clone());
            bar.abandon_with_message(format!("{text} (stopped)"));
        }
    }
}

impl Progress for Printer {
    fn event(&self, e: Event) {
        if self.mode == BuildProgress::Quiet {
            return;
        }
        if let Some(live) = &self.live {
            live.event(e);
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if self.mode == BuildProgress::Json {
            let v = match &e {
                Event::Step {
                    id,
                    platform,
                    position,
                    text,
                } => {
                    json!({"event":"step","id":id,"platform":platform,"position":position,"instruction":text})
                }
                Event::Cached { id } => json!({"event":"cached","id":id}),
                Event::Miss { id, reason } => json!({"event":"miss","id":id,"reason":reason}),
                Event::Output { id, line } => json!({"event":"output","id":id,"line":line}),
                Event::Done { id, seconds } => json!({"event":"done","id":id,"seconds":seconds}),
                Event::Pull {
                    reference,
                    platform,
                } => json!({"event":"pull","reference":reference,"platform":platform}),
                _ => return,
            };
            let _ = writeln!(out, "{v}");
            return;
        }
        let _ = match e {
            Event::Step {
                id,
                platform,
                position,
                text,
            } => {
                let first = text.lines().next().unwrap_or("").to_owned();
                writeln!(out, "#{id} [{platform} {position}] {first}")
            }
            Event::Cached { id } => writeln!(out, "#{id} CACHED"),
            Event::Miss { id, reason } => writeln!(out, "#{id} not cached: {reason}"),
            Event::Output { id, line } => writeln!(out, "#{id} {line}"),
            Event::Done { id, seconds } => writeln!(out, "#{id} DONE {seconds:.1}s"),
            Event::Pull {
                reference,
                platform,
            } => writeln!(out, "#0 fetching {reference} for {platform}"),
            _ => Ok(()),
        };
    }
}

#[derive(Debug, Args)]
pub struct BuilderArgs {
    #[command(subcommand)]
    command: BuilderCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BuilderCommand {
    /// Show what the build store holds: cache records, blobs, layer snapshots, cache mounts.
    Du(StoreArgs),
    /// Remove garbage (build results already written out, layers no record uses, debris of
    /// killed builds) and, with the flags, cache records not used lately.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The build store (default as for `berth build`)
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PruneArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Remove everything: every cache record, resolved base image, download and cache mount
    #[arg(short, long)]
    all: bool,
    /// Remove cache records not used within this long (e.g. 30m, 24h, 7d)
    #[arg(long = "keep-duration", value_name = "DURATION", value_parser = parse_duration)]
    keep_duration: Option<std::time::Duration>,
    /// Then remove the least recently used cache records until the store fits (e.g. 10GB, 512MB)
    #[arg(long = "keep-storage", value_name = "SIZE", value_parser = parse_size)]
    keep_storage: Option<u64>,
}

/// `30s`, `90m`, `24h`, `7d`, or a combination (`1h30m`).
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected a duration such as 30m, 24h or 7d"))?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {c:?} (s, m, h, d)")),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() || total == 0 && !s.trim().starts_with('0') {
        return Err(format!("{s:?}: expected a duration such as 30m, 24h or 7d"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// `10GB`, `512MB`, `1.5g`, `100k`, plain bytes: docker's `--keep-storage` units (binary).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    berth_dockerfile::ram_in_bytes(s.trim())
        .ok_or_else(|| format!("{s:?}: expected a size such as 10GB or 512MB"))
}

fn usage_json(u: &berth_build::prune::Usage) -> serde_json::Value {
    json!({
        "records": u.records,
        "blobs": u.blobs,
        "blobBytes": u.blob_bytes,
        "snapshots": u.snapshots,
        "snapshotBytes": u.snapshot_bytes,
        "cacheMounts": u.cache_mounts,
        "cacheMountBytes": u.cache_mount_bytes,
        "gitCheckouts": u.checkouts,
        "gitCheckoutBytes": u.checkout_bytes,
        "bytes": u.bytes(),
    })
}

/// `berth builder du|prune`.
pub fn builder(args: BuilderArgs) -> anyhow::Result<()> {
    match args.command {
        BuilderCommand::Du(a) => {
            let store = Store::open(a.store.unwrap_or_else(berth_build::default_root))?;
            let u = berth_build::prune::usage(&store)?;
            if a.json {
                println!("{}", usage_json(&u));
            } else {
                println!("store            {}", store.root().display());
                println!("cache records    {}", u.records);
                println!(
                    "blobs            {:<8} {}",
                    u.blobs,
                    crate::repo::human(u.blob_bytes)
                );
                println!(
                    "layer snapshots  {:<8} {}",
                    u.snapshots,
                    crate::repo::human(u.snapshot_bytes)
                );
                println!(
                    "cache mounts     {:<8} {}",
                    u.cache_mounts,
                    crate::repo::human(u.cache_mount_bytes)
                );
                println!(
                    "git checkouts    {:<8} {}",
                    u.checkouts,
                    crate::repo::human(u.checkout_bytes)
                );
                println!(
                    "total                     {}",
                    crate::repo::human(u.bytes())
                );
            }
        }
        BuilderCommand::Prune(a) => {
            let store = Store::open(a.store.store.unwrap_or_else(berth_build::default_root))?;
            let mut opts = berth_build::prune::PruneOptions::default();
            opts.all = a.all;
            opts.keep_duration = a.keep_duration;
            opts.keep_storage = a.keep_storage;
            let removed = berth_build::prune::prune(&store, &opts)?;
            let left = berth_build::prune::usage(&store)?;
            if a.store.json {
                println!(
                    "{}",
                    json!({"removed": usage_json(&removed), "remaining": usage_json(&left)})
                );
            } else {
                println!(
                    "removed {} cache records, {} blobs, {} snapshots, {} cache mounts, {} git checkouts: {} freed; {} left",
                    removed.records,
                    removed.blobs,
                    removed.snapshots,
                    removed.cache_mounts,
                    removed.checkouts,
                    crate::repo::human(removed.bytes()),
                    crate::repo::human(left.bytes())
                );
            }
        }
    }
    Ok(())
}

/// The builder's own warnings (a device node a rootless build skipped, a RUN container of a
/// killed build reaped) on stderr, filtered by `BERTH_LOG` (default `warn`).
fn warnings_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// As a non-root user, runs this same berth command again as root of a user namespace of its
/// own (a rootless build, see `berth_build::rootless`) and ends with its exit status. With
/// `required` false, a missing prerequisite only leaves the command as it is (root-only steps
/// then fail on their own).
pub fn go_rootless(required: bool) -> anyhow::Result<()> {
    warnings_to_stderr();
    if !berth_build::rootless::needed() {
        return Ok(());
    }
    let plan = match berth_build::rootless::plan() {
        Ok(p) => p,
        Err(e) if required => return Err(e.into()),
        Err(e) => {
            tracing::debug!("not entering a user namespace: {e}");
            return Ok(());
        }
    };
    let exe = std::env::current_exe().context("finding berth's own executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    let status = berth_build::rootless::run(&plan, cmd)?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Err(crate::ExitWith(u8::try_from(code).unwrap_or(1)).into())
}

/// `berth build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let mut req = BuildRequest::new(&args.context);
    match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Dockerfile from standard input")?;
            req.dockerfile_text = Some(text);
        }
        Some(f) => req.dockerfile = Some(f.clone()),
        None => {}
    }
    req.tags = args.tags.clone();
    req.platforms = args.platform.clone();
    req.target = args.target.clone();
    req.build_args = args.build_args.clone();
    req.build_contexts = args.build_contexts.clone();
    req.secrets = args.secrets.clone();
    req.ssh = args.ssh.clone();
    req.no_cache = args.no_cache;
    req.pull = args.pull;
    req.labels = args.labels.clone();
    req.push = args.push;
    req.outputs = args.outputs.clone();
    req.runtime = args.runtime.clone();
    req.compression = match args.compression {
        CompressionArg::Gzip => Compression::default(),
        CompressionArg::Zstd => Compression::Zstd { level: 3 },
        CompressionArg::Uncompressed => Compression::None,
    };
    req.epoch = berth_ops::build::epoch_from_env()?;
    req.store = args.store.clone();
    req.insecure = args.registry.insecure.clone();
    req.sbom = args.sbom.unwrap_or(false);
    req.cache_to.clone_from(&args.cache_to);
    req.cache_from.clone_from(&args.cache_from);
    req.provenance = match args.provenance.as_deref() {
        None | Some("false" | "0") => None,
        Some(p) => Some(
            p.parse()
                .map_err(|e: String| UsageError(format!("--provenance: {e}")))?,
        ),
    };
    let prepared = berth_ops::build::prepare(&req)?;

    let rt = runtime()?;
    // A live display needs a terminal; forced elsewhere, it falls back to plain lines.
    let live = matches!(args.progress, BuildProgress::Tty | BuildProgress::Auto)
        && std::io::stderr().is_terminal();
    let printer = Printer {
        mode: args.progress,
        out: Mutex::new(std::io::stderr()),
        live: live.then(Live::new),
    };
    let quiet = args.progress == BuildProgress::Quiet;
    let mode = match args.progress {
        BuildProgress::Quiet | BuildProgress::Json => Mode::Quiet,
        _ if std::io::stderr().is_terminal() => Mode::Auto,
        _ => Mode::Plain,
    };
    let transfer = Reporter::new(mode).map(|r| Arc::new(r) as Arc<dyn berth_client::Progress>);
    let result = berth_ops::build::build_image(&prepared, rt.handle(), &printer, transfer);
    if let Some(l) = &printer.live {
        l.abandon();
    }
    let result = result?;
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    if !quiet {
        eprintln!(
            "built {} in {:.1}s ({} steps run, {} cached)",
            result.digest, result.seconds, result.steps_run, result.steps_cached
        );
        for p in &result.pushed {
            eprintln!("pushed {p}");
        }
        for c in &result.cache_exported {
            eprintln!("cache exported to {c}");
        }
        if result.pushed.is_empty() && result.written.is_empty() {
            eprintln!(
                "no output given: the image stays in the build store {} (use --push or --output)",
                result.store
            );
        }
    }
    if let Some(f) = &args.iidfile {
        std::fs::write(f, &result.digest).with_context(|| format!("writing {}", f.display()))?;
    }
    if let Some(f) = &args.metadata_file {
        let meta = json!({
            "containerimage.digest": result.digest,
            "containerimage.descriptor": {
                "mediaType": result.media_type,
                "digest": result.digest,
            },
            "image.name": args.tags.join(","),
            "berth.images": result.images,
            "berth.steps": {"run": result.steps_run, "cached": result.steps_cached},
        });
        std::fs::write(f, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", f.display()))?;
    }
    println!("{}", result.digest);
    Ok(())
}
