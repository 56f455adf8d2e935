//! The registry client from the command line: `berth copy / push / pull` between registries,
//! OCI layouts and archives; `inspect`, `tags`, `digest`, `tag`, `rm` on registries;
//! `login` / `logout`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use berth_client::archive::{ArchiveFormat, ArchiveSink, ArchiveSource, Selector};
use berth_client::auth::DockerConfig;
use berth_client::ecr::EcrTarget;
use berth_client::image::{ImageSink, ImageSource, Placement, read_blob};
use berth_client::layout::OciLayout;
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_client::{CopyOptions, CopyReport, copy};
use berth_oci::{ImageRef, ManifestKind, Platform, RefKind, Tag};
use clap::Args;

use crate::UsageError;
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

/// How extra tags are derived on push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TagStrategy {
    /// From a vMAJOR.MINOR.PATCH destination tag: also vMAJOR.MINOR, vMAJOR and latest
    Semver,
    /// The current git commit (short) and branch
    Git,
    /// A content tag: the first 12 hex digits of the manifest digest
    Digest,
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
    /// Also tag the pushed image by these strategies (comma-separated; registry destinations)
    #[arg(long, value_delimiter = ',', value_enum)]
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

const TRANSPORTS: &str = "Transports: REF or docker://REF (a registry), oci:DIR[:TAG] (an OCI layout), \
oci-archive:FILE[:TAG] (a tar of one), docker-archive:FILE[:NAME:TAG|:@N] (docker save / docker load).";

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

/// Where an image is read from or written to.
enum Endpoint {
    Layout(OciLayout),
    ArchiveIn(ArchiveSource),
    ArchiveOut(ArchiveSink),
    Registry(RegistryImage, ImageRef),
}

/// What a transport-less spec means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bare {
    /// A registry reference (`copy`, `inspect`, …).
    Registry,
    /// A local path, read (`push SRC`): a layout directory or an archive, by content.
    LocalSource,
    /// A local path, written (`pull DEST`): `*.tar` a docker-archive, else a layout.
    LocalSink,
}

/// Splits `PATH[:REST]` at the first colon (skopeo's archive syntax).
fn path_and_name(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((p, n)) if !n.is_empty() => (p, Some(n)),
        Some((p, _)) => (p, None),
        None => (rest, None),
    }
}

/// Tells a layout directory from an archive, and an OCI archive from a docker one.
fn sniff_local(path: &str) -> anyhow::Result<Endpoint> {
    let p = Path::new(path);
    if p.is_dir() {
        return Ok(Endpoint::Layout(OciLayout::new(p, None)));
    }
    if !p.is_file() {
        return Err(UsageError(format!("{path}: no such layout directory or archive")).into());
    }
    let format = ArchiveFormat::detect(p)?;
    archive(p, format, None, false)
}

impl Endpoint {
    fn parse(spec: &str, bare: Bare, sink: bool, insecure: &[String]) -> anyhow::Result<Self> {
        if let Some(rest) = spec.strip_prefix("oci:") {
            // `oci:DIR[:TAG]`: a final `:TAG` without a slash in it names the image.
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t)),
                _ => (rest, None),
            };
            return Ok(Endpoint::Layout(OciLayout::new(dir, tag)));
        }
        for (prefix, format) in [
            ("oci-archive:", ArchiveFormat::Oci),
            ("docker-archive:", ArchiveFormat::Docker),
        ] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                let (path, name) = path_and_name(rest);
                if path.is_empty() {
                    return Err(UsageError(format!("{spec}: no file named")).into());
                }
                return archive(Path::new(path), format, name, sink);
            }
        }
        for unsupported in ["dir:", "containers-storage:", "docker-daemon:"] {
            if spec.starts_with(unsupported) {
                return Err(UsageError(format!(
                    "the {unsupported} transport is not supported (berth has no daemon to talk to: \
                     use oci:, oci-archive: or docker-archive:)"
                ))
                .into());
            }
        }
        let looks_local =
            spec.starts_with('/') || spec.starts_with("./") || spec.starts_with("../");
        match bare {
            Bare::LocalSource if !spec.starts_with("docker://") => return sniff_local(spec),
            Bare::LocalSink if !spec.starts_with("docker://") => {
                return if spec.ends_with(".tar") {
                    archive(Path::new(spec), ArchiveFormat::Docker, None, true)
                } else {
                    Ok(Endpoint::Layout(OciLayout::new(spec, None)))
                };
            }
            Bare::Registry if looks_local => {
                return Err(UsageError(format!(
                    "{spec:?} looks like a path: say oci:{spec}, oci-archive:{spec} or docker-archive:{spec}"
                ))
                .into());
            }
            _ => {}
        }
        let reference = spec.strip_prefix("docker://").unwrap_or(spec);
        let r =
            ImageRef::parse(reference).map_err(|e| UsageError(format!("{reference:?}: {e}")))?;
        let image = registry_image(&r, insecure)?;
        Ok(Endpoint::Registry(image, r))
    }

    fn source(&self) -> anyhow::Result<&dyn ImageSource> {
        Ok(match self {
            Endpoint::Layout(l) => l,
            Endpoint::Registry(r, _) => r,
            Endpoint::ArchiveIn(a) => a,
            Endpoint::ArchiveOut(_) => anyhow::bail!("an archive being written is not a source"),
        })
    }

    fn sink(&self) -> anyhow::Result<&dyn ImageSink> {
        Ok(match self {
            Endpoint::Layout(l) => l,
            Endpoint::Registry(r, _) => r,
            Endpoint::ArchiveOut(a) => a,
            Endpoint::ArchiveIn(_) => anyhow::bail!("an archive being read is not a sink"),
        })
    }
}

/// The archive endpoint for `path` in `format`, `name` as its transport spelled it.
fn archive(
    path: &Path,
    format: ArchiveFormat,
    name: Option<&str>,
    sink: bool,
) -> anyhow::Result<Endpoint> {
    if !sink {
        let selector = match name {
            None => Selector::Only,
            Some(n) => match n.strip_prefix('@').map(str::parse::<usize>) {
                Some(Ok(i)) => Selector::Index(i),
                Some(Err(_)) => {
                    return Err(UsageError(format!("{n:?}: expected @N, an image index")).into());
                }
                None => Selector::Name(n.to_owned()),
            },
        };
        return Ok(Endpoint::ArchiveIn(ArchiveSource::new(
            path, format, selector,
        )));
    }
    let name = match (name, format) {
        (None, _) => None,
        (Some(n), ArchiveFormat::Docker) => {
            Some(ImageRef::parse(n).map_err(|e| UsageError(format!("{n:?}: {e}")))?)
        }
        (Some(n), _) => {
            let tag = Tag::parse(n).map_err(|e| UsageError(format!("{n:?}: {e}")))?;
            Some(
                ImageRef::parse(&format!("localhost/image:{tag}"))
                    .map_err(|e| UsageError(format!("{n:?}: {e}")))?,
            )
        }
    };
    let sink = ArchiveSink::new(path, format, name)
        .with_context(|| format!("preparing {}", path.display()))?;
    Ok(Endpoint::ArchiveOut(sink))
}

fn registry_image(r: &ImageRef, insecure: &[String]) -> anyhow::Result<RegistryImage> {
    let config = DockerConfig::load_default()?;
    // ECR registries: GetAuthorizationToken natively (no helper, no `docker login`).
    if let Some(target) = EcrTarget::for_host(r.api_host(), Some(&config)) {
        let client = RegistryClient::new(r.api_host(), None, insecure)?.with_ecr(target);
        return Ok(RegistryImage::new(Arc::new(client), r));
    }
    let credentials = config.credentials(r.registry())?;
    let client = RegistryClient::new(r.api_host(), credentials, insecure)?;
    Ok(RegistryImage::new(Arc::new(client), r))
}

/// Copies an image from `src` to a destination spelled as `berth copy` takes it (a registry
/// reference, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`), with the
/// transfer progress shown as `mode` says.
pub(crate) fn copy_out(
    rt: &tokio::runtime::Runtime,
    src: &dyn ImageSource,
    dst_spec: &str,
    insecure: &[String],
    mode: Mode,
) -> anyhow::Result<CopyReport> {
    let dst = Endpoint::parse(dst_spec, Bare::Registry, true, insecure)?;
    let mut copy_opts = CopyOptions::default();
    copy_opts.progress =
        Reporter::new(mode).map(|r| Arc::new(r) as Arc<dyn berth_client::Progress>);
    rt.block_on(copy(src, dst.sink()?, &copy_opts))
        .with_context(|| format!("writing {dst_spec}"))
}

/// The credentials and transport berth uses for a registry reference (docker config, helpers,
/// native ECR), as every registry command does.
pub(crate) fn open_registry(r: &ImageRef, insecure: &[String]) -> anyhow::Result<RegistryImage> {
    registry_image(r, insecure)
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

/// Short commit and branch of the git checkout in the current directory.
fn git_tags() -> anyhow::Result<Vec<String>> {
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .context("running git (needed by --tag-strategy git)")?;
        if !out.status.success() {
            return Err(UsageError(format!(
                "--tag-strategy git: git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let mut tags = vec![run(&["rev-parse", "--short=7", "HEAD"])?];
    let branch = run(&["rev-parse", "--abbrev-ref", "HEAD"])?;
    if branch != "HEAD" {
        tags.push(sanitize_tag(&branch));
    }
    Ok(tags)
}

/// A branch name as a valid tag (`feature/x` → `feature-x`).
fn sanitize_tag(s: &str) -> String {
    let mut t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    while t.starts_with(['.', '-']) {
        t.remove(0);
    }
    t.truncate(128);
    if t.is_empty() { "branch".to_owned() } else { t }
}

/// vMAJOR.MINOR.PATCH → [vMAJOR.MINOR, vMAJOR, latest]; pre-releases get none.
fn semver_tags(tag: &str) -> anyhow::Result<Vec<String>> {
    let (prefix, version) = match tag.strip_prefix('v') {
        Some(v) => ("v", v),
        None => ("", tag),
    };
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [maj, min, patch]
            if numeric(maj)
                && numeric(min)
                && numeric(patch.split(['-', '+']).next().unwrap_or("")) =>
        {
            if patch.contains('-') {
                return Ok(Vec::new());
            }
            Ok(vec![
                format!("{prefix}{maj}.{min}"),
                format!("{prefix}{maj}"),
                "latest".to_owned(),
            ])
        }
        _ => Err(UsageError(format!(
            "--tag-strategy semver: the destination tag {tag:?} is not [v]MAJOR.MINOR.PATCH"
        ))
        .into()),
    }
}

fn transfer(
    src_spec: &str,
    src_bare: Bare,
    dst_spec: &str,
    dst_bare: Bare,
    opts: &TransferOpts,
) -> anyhow::Result<()> {
    let insecure = &opts.registry.insecure;
    let src = Endpoint::parse(src_spec, src_bare, false, insecure)?;
    let dst = Endpoint::parse(dst_spec, dst_bare, true, insecure)?;
    if dst_bare == Bare::Registry
        && !matches!(dst, Endpoint::Registry(..))
        && src_bare == Bare::LocalSource
    {
        return Err(UsageError(format!("push: {dst_spec:?} is not a registry reference")).into());
    }
    let dst_ref = match &dst {
        Endpoint::Registry(_, r) => Some(r.clone()),
        _ => None,
    };
    if !opts.tag_strategy.is_empty() && dst_ref.is_none() {
        return Err(UsageError("--tag-strategy needs a registry destination".into()).into());
    }
    let mut extra: Vec<String> = Vec::new();
    for s in &opts.tag_strategy {
        match s {
            TagStrategy::Semver => {
                let tag = dst_ref
                    .as_ref()
                    .and_then(|r| r.tag())
                    .map(ToString::to_string)
                    .ok_or_else(|| {
                        UsageError("--tag-strategy semver: the destination has no tag".into())
                    })?;
                extra.extend(semver_tags(&tag)?);
            }
            TagStrategy::Git => extra.extend(git_tags()?),
            TagStrategy::Digest => {} // known after the copy
        }
    }
    let mut copy_opts = CopyOptions::default();
    copy_opts.jobs = usize::from(opts.jobs);
    copy_opts.platforms = opts.platform.clone();
    copy_opts.referrers = !opts.no_referrers;
    copy_opts.progress =
        Reporter::new(opts.progress).map(|r| Arc::new(r) as Arc<dyn berth_client::Progress>);
    let started = std::time::Instant::now();
    let rt = runtime()?;
    let source = src.source()?;
    let sink = dst.sink()?;
    let report = rt
        .block_on(copy(source, sink, &copy_opts))
        .with_context(|| format!("copying {src_spec} to {dst_spec}"))?;
    let mut written = vec![dst_spec.to_owned()];
    if let (Some(r), Some(digest)) = (&dst_ref, &report.digest) {
        if opts.tag_strategy.contains(&TagStrategy::Digest) {
            extra.push(digest.hex()[..12].to_owned());
        }
        extra.dedup();
        let root = rt
            .block_on(source.root())
            .context("re-reading the root manifest")?;
        let root = if &root.digest == digest {
            root
        } else {
            // A --platform filter chose a child or made a new index: push what was copied.
            rt.block_on(dst.source()?.manifest(digest))
                .context("reading back the pushed manifest")?
        };
        for t in &extra {
            let tag = Tag::parse(t).map_err(|e| UsageError(format!("tag {t:?}: {e}")))?;
            rt.block_on(sink.put_manifest(&root, Placement::Root { tag: Some(&tag) }))
                .with_context(|| format!("tagging {}:{t}", r.familiar_name()))?;
            written.push(r.with_tag(tag).to_string());
        }
    }
    summarize(
        &report,
        &written,
        src_spec,
        started.elapsed().as_secs_f64(),
        opts.json,
    );
    Ok(())
}

fn summarize(report: &CopyReport, written: &[String], src: &str, secs: f64, json: bool) {
    let digest = report
        .digest
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if json {
        let images: Vec<_> = report
            .images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "platform": i.platform.as_ref().map(ToString::to_string),
                    "digest": i.digest.to_string(),
                    "size": i.size,
                })
            })
            .collect();
        let summary = serde_json::json!({
            "source": src,
            "references": written,
            "digest": digest,
            "mediaType": report.media_type,
            "images": images,
            "manifests": report.manifests,
            "referrers": report.referrers,
            "blobsCopied": report.blobs_copied,
            "blobsSkipped": report.blobs_skipped,
            "bytesCopied": report.bytes_copied,
            "seconds": secs,
        });
        println!("{summary}");
        return;
    }
    for w in written {
        println!("{w}");
    }
    println!(
        "{digest}: {} manifests, {} blobs copied ({:.1} MB), {} already there, {:.1} s",
        report.manifests,
        report.blobs_copied,
        report.bytes_copied as f64 / 1e6,
        report.blobs_skipped,
        secs
    );
}

/// `berth inspect`.
pub fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let ep = Endpoint::parse(&args.image, Bare::Registry, false, &args.registry.insecure)?;
    let rt = runtime()?;
    let src = ep.source()?;
    let root = rt
        .block_on(src.root())
        .with_context(|| format!("reading {}", args.image))?;
    if args.raw {
        use std::io::Write;
        std::io::stdout().write_all(&root.bytes)?;
        return Ok(());
    }
    let parsed = root.parse()?;
    let limit = 16 * 1024 * 1024;
    if args.config {
        let image = if parsed.kind == ManifestKind::Index {
            let want = args.platform.clone().unwrap_or_else(Platform::host);
            let child = parsed
                .references
                .iter()
                .find(|c| c.platform.as_ref().is_some_and(|p| want.matches(p)))
                .ok_or_else(|| anyhow::anyhow!("{} has no {want} image", args.image))?;
            rt.block_on(src.manifest(&child.digest))?
        } else {
            root.clone()
        };
        let cfg = image
            .parse()?
            .references
            .into_iter()
            .next()
            .context("no config")?;
        let bytes = rt.block_on(read_blob(src, &cfg.digest, cfg.size, limit))?;
        use std::io::Write;
        std::io::stdout().write_all(&bytes)?;
        println!();
        return Ok(());
    }
    let mut out = serde_json::json!({
        "name": args.image,
        "digest": root.digest.to_string(),
        "mediaType": root.media_type,
        "size": root.bytes.len(),
    });
    if parsed.kind == ManifestKind::Index {
        let mut platforms = Vec::new();
        for c in parsed
            .references
            .iter()
            .filter(|r| r.kind == RefKind::Manifest)
        {
            let m = rt.block_on(src.manifest(&c.digest))?;
            let total: u64 = m.parse()?.references.iter().map(|r| r.size).sum::<u64>() + c.size;
            platforms.push(serde_json::json!({
                "platform": c.platform.as_ref().map(ToString::to_string),
                "digest": c.digest.to_string(),
                "mediaType": m.media_type,
                "size": total,
            }));
        }
        out["manifests"] = serde_json::Value::Array(platforms);
    } else {
        let cfg = parsed.references.first().context("no config")?;
        let bytes = rt.block_on(read_blob(src, &cfg.digest, cfg.size, limit))?;
        let config: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let layers: Vec<_> = parsed.references[1..]
            .iter()
            .map(|l| serde_json::json!({"digest": l.digest.to_string(), "size": l.size}))
            .collect();
        out["platform"] = serde_json::json!(format!(
            "{}/{}{}",
            config["os"].as_str().unwrap_or("?"),
            config["architecture"].as_str().unwrap_or("?"),
            config["variant"]
                .as_str()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ));
        out["created"] = config["created"].clone();
        out["config"] = config["config"].clone();
        out["size"] = serde_json::json!(
            root.bytes.len() as u64 + parsed.references.iter().map(|r| r.size).sum::<u64>()
        );
        out["layers"] = serde_json::Value::Array(layers);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("Name:       {}", args.image);
    println!("Digest:     {}", root.digest);
    println!("Media type: {}", root.media_type);
    if let Some(list) = out["manifests"].as_array() {
        println!("Platforms:");
        for m in list {
            println!(
                "  {:<16} {}  {:.1} MB",
                m["platform"].as_str().unwrap_or("(none)"),
                m["digest"].as_str().unwrap_or_default(),
                m["size"].as_u64().unwrap_or_default() as f64 / 1e6
            );
        }
    } else {
        println!(
            "Platform:   {}",
            out["platform"].as_str().unwrap_or_default()
        );
        println!(
            "Size:       {:.1} MB",
            out["size"].as_u64().unwrap_or_default() as f64 / 1e6
        );
        if let Some(c) = out["created"].as_str() {
            println!("Created:    {c}");
        }
        println!("Layers:");
        for l in out["layers"].as_array().into_iter().flatten() {
            println!(
                "  {}  {:.1} MB",
                l["digest"].as_str().unwrap_or_default(),
                l["size"].as_u64().unwrap_or_default() as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn registry_only(spec: &str, insecure: &[String]) -> anyhow::Result<(RegistryImage, ImageRef)> {
    match Endpoint::parse(spec, Bare::Registry, false, insecure)? {
        Endpoint::Registry(i, r) => Ok((i, r)),
        _ => Err(UsageError(format!("{spec:?}: this command works on registries only")).into()),
    }
}

/// `berth tags`.
pub fn run_tags(args: TagsArgs) -> anyhow::Result<()> {
    let (image, _) = registry_only(&args.repository, &args.registry.insecure)?;
    let mut tags = runtime()?.block_on(image.tags())?;
    tags.sort();
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
    let ep = Endpoint::parse(&args.image, Bare::Registry, false, &args.registry.insecure)?;
    let rt = runtime()?;
    let digest = match &ep {
        Endpoint::Registry(i, _) => rt.block_on(i.resolve())?,
        _ => rt.block_on(ep.source()?.root())?.digest,
    };
    println!("{digest}");
    Ok(())
}

/// `berth tag`.
pub fn run_tag(args: TagArgs) -> anyhow::Result<()> {
    let (image, r) = registry_only(&args.image, &args.registry.insecure)?;
    let tags = args
        .tags
        .iter()
        .map(|t| Tag::parse(t).map_err(|e| UsageError(format!("tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let rt = runtime()?;
    let root = rt
        .block_on(image.root())
        .with_context(|| format!("reading {}", args.image))?;
    for tag in &tags {
        rt.block_on(image.put_manifest(&root, Placement::Root { tag: Some(tag) }))
            .with_context(|| format!("tagging {}", r.with_tag(tag.clone())))?;
        println!("{}", r.with_tag(tag.clone()));
    }
    Ok(())
}

/// `berth rm`.
pub fn run_rm(args: RmArgs) -> anyhow::Result<()> {
    let (image, r) = registry_only(&args.image, &args.registry.insecure)?;
    runtime()?
        .block_on(image.delete())
        .with_context(|| format!("removing {r}"))?;
    println!("Deleted {r}");
    Ok(())
}
