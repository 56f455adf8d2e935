//! The registry client from the command line: `berth copy / push / pull` between registries,
//! OCI layouts and archives; `inspect`, `tags`, `digest`, `tag`, `rm` on registries;
//! `login` / `logout`.

use std::sync::Arc;

use anyhow::Context;
use berth_oci::Platform;
use berth_ops::endpoint::{Bare, TRANSPORTS};
use berth_ops::inspect;
use berth_ops::transfer::{
    CopyRequest, TagStrategy, add_tags, copy_image, list_tags, remove, resolve_digest,
};
use clap::Args;

use crate::progress::{Mode, Reporter};

/// Options shared by commands that talk to registries.
#[derive(Debug, Args)]
pub struct RegistryOpts {
    /// A registry to reach over plain HTTP (loopback addresses always are); repeatable
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        env = "BERTH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub(crate) insecure: Vec<String>,
}

/// Options of every command that copies images.
#[derive(Debug, Args)]
pub struct TransferOpts {
    /// Blobs transferred at once
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Copy only these platforms of a multi-platform image (OS/ARCH[/VARIANT], comma-separated).
    /// One platform copies that platform's manifest unchanged; several make a new index.
    #[arg(long, value_delimiter = ',', value_parser = parse_platform)]
    platform: Vec<Platform>,
    /// Do not copy referrers (signatures, SBOMs, attestations) along with the image
    #[arg(long)]
    no_referrers: bool,
    /// Also tag the pushed image by these strategies, comma-separated (registry destinations):
    /// semver (from a vMAJOR.MINOR.PATCH tag: vMAJOR.MINOR, vMAJOR, latest), git (the commit's
    /// 7 hex digits and the branch), digest (the manifest digest's first 12 hex digits)
    #[arg(long, value_delimiter = ',', value_name = "STRATEGY")]
    tag_strategy: Vec<TagStrategy>,
    /// Progress display on standard error
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    progress: Mode,
    /// Print a JSON summary (references written, digest per platform, sizes) on standard output
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryOpts,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

/// `berth copy SRC DST`.
#[derive(Debug, Args)]
#[command(after_help = TRANSPORTS)]
pub struct CopyArgs {
    /// What to copy (any transport)
    src: String,
    /// Where to (any transport)
    dst: String,
    #[command(flatten)]
    opts: TransferOpts,
}

/// `berth push SRC DST`.
#[derive(Debug, Args)]
#[command(after_help = TRANSPORTS)]
pub struct PushArgs {
    /// A local image: oci:DIR, oci-archive:FILE, docker-archive:FILE, or a path (a layout
    /// directory or an archive, told apart by their contents)
    src: String,
    /// The registry reference to push to (`registry/repo:tag`)
    dst: String,
    #[command(flatten)]
    opts: TransferOpts,
}

/// `berth pull REF DEST`.
#[derive(Debug, Args)]
#[command(after_help = TRANSPORTS)]
pub struct PullArgs {
    /// The registry reference to pull
    src: String,
    /// Where to: oci:DIR, oci-archive:FILE, docker-archive:FILE, or a path (`*.tar`: a
    /// docker-archive `docker load` reads; otherwise an OCI layout directory)
    dst: String,
    #[command(flatten)]
    opts: TransferOpts,
}

/// `berth inspect REF`.
#[derive(Debug, Args)]
#[command(after_help = TRANSPORTS)]
pub struct InspectArgs {
    /// The image (any transport)
    image: String,
    /// Print the manifest exactly as stored
    #[arg(long, conflicts_with = "config")]
    raw: bool,
    /// Print the image config (of the host's platform, or --platform's)
    #[arg(long)]
    config: bool,
    /// The platform whose config --config prints
    #[arg(long, value_parser = parse_platform)]
    platform: Option<Platform>,
    /// JSON instead of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryOpts,
}

/// `berth tags REF`.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository (`registry/repo`; a tag or digest given is ignored)
    repository: String,
    /// JSON instead of one tag per line
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryOpts,
}

/// `berth digest REF`.
#[derive(Debug, Args)]
#[command(after_help = TRANSPORTS)]
pub struct DigestArgs {
    /// The image (any transport)
    image: String,
    #[command(flatten)]
    registry: RegistryOpts,
}

/// `berth tag REF NEWTAG…`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to tag (`registry/repo:tag` or `@digest`)
    image: String,
    /// New tags in the same repository
    #[arg(required = true)]
    tags: Vec<String>,
    #[command(flatten)]
    registry: RegistryOpts,
}

/// `berth rm REF`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// `registry/repo:tag` removes the tag; `registry/repo@digest` the manifest and its tags
    image: String,
    #[command(flatten)]
    registry: RegistryOpts,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `berth copy`.
pub fn run_copy(args: CopyArgs) -> anyhow::Result<()> {
    transfer(
        &args.src,
        Bare::Registry,
        &args.dst,
        Bare::Registry,
        &args.opts,
    )
}

/// `berth push`.
pub fn run_push(args: PushArgs) -> anyhow::Result<()> {
    transfer(
        &args.src,
        Bare::LocalSource,
        &args.dst,
        Bare::Registry,
        &args.opts,
    )
}

/// `berth pull`.
pub fn run_pull(args: PullArgs) -> anyhow::Result<()> {
    transfer(
        &args.src,
        Bare::Registry,
        &args.dst,
        Bare::LocalSink,
        &args.opts,
    )
}

fn transfer(
    src_spec: &str,
    src_bare: Bare,
    dst_spec: &str,
    dst_bare: Bare,
    opts: &TransferOpts,
) -> anyhow::Result<()> {
    let mut req = CopyRequest::new(src_spec, dst_spec);
    req.src_bare = src_bare;
    req.dst_bare = dst_bare;
    req.jobs = usize::from(opts.jobs);
    req.platforms = opts.platform.clone();
    req.referrers = !opts.no_referrers;
    req.tag_strategy = opts.tag_strategy.clone();
    req.insecure = opts.registry.insecure.clone();
    let progress =
        Reporter::new(opts.progress).map(|r| Arc::new(r) as Arc<dyn berth_client::Progress>);
    let outcome = runtime()?.block_on(copy_image(&req, progress))?;
    if opts.json {
        println!("{}", serde_json::to_string(&outcome)?);
        return Ok(());
    }
    for w in &outcome.references {
        println!("{w}");
    }
    println!(
        "{}: {} manifests, {} blobs copied ({:.1} MB), {} already there, {:.1} s",
        outcome.digest,
        outcome.manifests,
        outcome.blobs_copied,
        outcome.bytes_copied as f64 / 1e6,
        outcome.blobs_skipped,
        outcome.seconds
    );
    Ok(())
}

/// `berth inspect`.
pub fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let insecure = &args.registry.insecure;
    let rt = runtime()?;
    if args.raw {
        let bytes = rt.block_on(inspect::raw_manifest(&args.image, insecure))?;
        std::io::stdout().write_all(&bytes)?;
        return Ok(());
    }
    if args.config {
        let bytes = rt.block_on(inspect::image_config(
            &args.image,
            args.platform.as_ref(),
            insecure,
        ))?;
        std::io::stdout().write_all(&bytes)?;
        println!();
        return Ok(());
    }
    let info = rt.block_on(inspect::inspect(&args.image, insecure))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("Name:       {}", info.name);
    println!("Digest:     {}", info.digest);
    println!("Media type: {}", info.media_type);
    if let Some(list) = &info.manifests {
        println!("Platforms:");
        for m in list {
            println!(
                "  {:<16} {}  {:.1} MB",
                m.platform.as_deref().unwrap_or("(none)"),
                m.digest,
                m.size as f64 / 1e6
            );
        }
        return Ok(());
    }
    println!(
        "Platform:   {}",
        info.platform.as_deref().unwrap_or_default()
    );
    println!("Size:       {:.1} MB", info.size as f64 / 1e6);
    if let Some(c) = &info.created {
        println!("Created:    {c}");
    }
    println!("Layers:");
    for l in info.layers.iter().flatten() {
        println!("  {}  {:.1} MB", l.digest, l.size as f64 / 1e6);
    }
    Ok(())
}

/// `berth tags`.
pub fn run_tags(args: TagsArgs) -> anyhow::Result<()> {
    let tags = runtime()?.block_on(list_tags(&args.repository, &args.registry.insecure))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "repository": args.repository, "tags": tags })
        );
    } else {
        for t in tags {
            println!("{t}");
        }
    }
    Ok(())
}

/// `berth digest`.
pub fn run_digest(args: DigestArgs) -> anyhow::Result<()> {
    let digest = runtime()?.block_on(resolve_digest(&args.image, &args.registry.insecure))?;
    println!("{digest}");
    Ok(())
}

/// `berth tag`.
pub fn run_tag(args: TagArgs) -> anyhow::Result<()> {
    let written =
        runtime()?.block_on(add_tags(&args.image, &args.tags, &args.registry.insecure))?;
    for w in written {
        println!("{w}");
    }
    Ok(())
}

/// `berth rm`.
pub fn run_rm(args: RmArgs) -> anyhow::Result<()> {
    let removed = runtime()?.block_on(remove(&args.image, &args.registry.insecure))?;
    println!("Deleted {removed}");
    Ok(())
}
