//! `berth copy`, `berth login`, `berth logout`: the registry client from the command line.

use std::io::Read;
use std::sync::Arc;

use anyhow::Context;
use berth_client::auth::{Credentials, DockerConfig};
use berth_client::image::{ImageSink, ImageSource};
use berth_client::layout::OciLayout;
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_client::{CopyOptions, copy};
use berth_oci::ImageRef;
use clap::Args;

use crate::UsageError;

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
    insecure: Vec<String>,
}

/// `berth copy SRC DST`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: `oci:DIR[:TAG]`, `docker://REF`, or a bare image reference
    src: String,
    /// Destination, in the same forms
    dst: String,
    /// Blobs transferred at once
    #[arg(long, default_value_t = 6)]
    jobs: usize,
    /// Print a JSON summary instead of a line of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryOpts,
}

/// `berth login REGISTRY`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host, e.g. `ghcr.io` or `127.0.0.1:5000` (`docker.io` for Docker Hub)
    registry: String,
    /// User name
    #[arg(short, long)]
    username: String,
    /// Read the password (or token) from standard input
    #[arg(long)]
    password_stdin: bool,
    /// The password (prefer --password-stdin: arguments are visible to other users)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
}

/// `berth logout REGISTRY`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry host
    registry: String,
}

/// Where an image is read from or written to.
enum Endpoint {
    Layout(OciLayout),
    Registry(RegistryImage),
}

impl Endpoint {
    fn parse(spec: &str, insecure: &[String]) -> anyhow::Result<Self> {
        if let Some(rest) = spec.strip_prefix("oci:") {
            // `oci:DIR[:TAG]`: a final `:TAG` without a slash in it names the image.
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t)),
                _ => (rest, None),
            };
            return Ok(Endpoint::Layout(OciLayout::new(dir, tag)));
        }
        for unsupported in [
            "oci-archive:",
            "docker-archive:",
            "dir:",
            "containers-storage:",
        ] {
            if spec.starts_with(unsupported) {
                return Err(UsageError(format!(
                    "the {unsupported} transport is not supported yet"
                ))
                .into());
            }
        }
        let reference = spec.strip_prefix("docker://").unwrap_or(spec);
        let r =
            ImageRef::parse(reference).map_err(|e| UsageError(format!("{reference:?}: {e}")))?;
        let credentials = DockerConfig::load_default()?.credentials(r.registry())?;
        let client = RegistryClient::new(r.api_host(), credentials, insecure)?;
        Ok(Endpoint::Registry(RegistryImage::new(Arc::new(client), &r)))
    }

    fn source(&self) -> &dyn ImageSource {
        match self {
            Endpoint::Layout(l) => l,
            Endpoint::Registry(r) => r,
        }
    }

    fn sink(&self) -> &dyn ImageSink {
        match self {
            Endpoint::Layout(l) => l,
            Endpoint::Registry(r) => r,
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Copies an image, all platforms, byte-exact.
pub fn run_copy(args: CopyArgs) -> anyhow::Result<()> {
    let src = Endpoint::parse(&args.src, &args.registry.insecure)?;
    let dst = Endpoint::parse(&args.dst, &args.registry.insecure)?;
    let mut opts = CopyOptions::default();
    opts.jobs = args.jobs.max(1);
    let started = std::time::Instant::now();
    let report = runtime()?
        .block_on(copy(src.source(), dst.sink(), &opts))
        .with_context(|| format!("copying {} to {}", args.src, args.dst))?;
    let digest = report
        .digest
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if args.json {
        let summary = serde_json::json!({
            "source": args.src,
            "destination": args.dst,
            "digest": digest,
            "manifests": report.manifests,
            "blobsCopied": report.blobs_copied,
            "blobsSkipped": report.blobs_skipped,
            "bytesCopied": report.bytes_copied,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{summary}");
    } else {
        println!(
            "{digest}: {} manifests, {} blobs copied ({:.1} MB), {} already there, {:.1} s",
            report.manifests,
            report.blobs_copied,
            report.bytes_copied as f64 / 1e6,
            report.blobs_skipped,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Stores credentials in docker's config.json (or its credential helper).
pub fn run_login(args: LoginArgs) -> anyhow::Result<()> {
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            return Err(
                UsageError("give the password with --password-stdin (or -p)".into()).into(),
            );
        }
    };
    if password.is_empty() {
        return Err(UsageError("the password is empty".into()).into());
    }
    let mut config = DockerConfig::load_default()?;
    config.store(
        &args.registry,
        &Credentials::Basic {
            username: args.username,
            password,
        },
    )?;
    println!("Login Succeeded ({})", config.path().display());
    Ok(())
}

/// Removes credentials for a registry.
pub fn run_logout(args: LogoutArgs) -> anyhow::Result<()> {
    let mut config = DockerConfig::load_default()?;
    if config.erase(&args.registry)? {
        println!("Removing login credentials for {}", args.registry);
    } else {
        println!("Not logged in to {}", args.registry);
    }
    Ok(())
}
