//! `berth mcp`: the MCP server (`berth-mcp`) over stdio, or streamable HTTP with `--listen`.

use std::path::PathBuf;

use anyhow::Context;
use berth_client::ecr::AwsOptions;
use berth_mcp::{BerthMcp, Policy};
use berth_ops::transfer::TagStrategy;
use clap::Args;

use crate::UsageError;

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Serve streamable HTTP on this address (`/mcp`) instead of standard input and output
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Allow tools with side effects (build, push, copy, repository changes, release); without
    /// it only reading tools run
    #[arg(long, env = "BERTH_MCP_ALLOW_WRITES")]
    allow_writes: bool,
    /// A registry tools may reach (HOST[:PORT]); repeatable; default: any
    #[arg(
        long = "allow-registry",
        value_name = "HOST",
        env = "BERTH_MCP_ALLOW_REGISTRIES",
        value_delimiter = ','
    )]
    registries: Vec<String>,
    /// A repository pattern tools may write to (`team/*`); repeatable; default: any
    #[arg(
        long = "allow-repository",
        value_name = "PATTERN",
        env = "BERTH_MCP_ALLOW_REPOSITORIES",
        value_delimiter = ','
    )]
    repositories: Vec<String>,
    /// A directory paths given to tools must be inside; repeatable; default: the current one
    #[arg(
        long = "root",
        value_name = "DIR",
        env = "BERTH_MCP_ROOTS",
        value_delimiter = ','
    )]
    roots: Vec<PathBuf>,
    /// Tags finch_push_image adds to the one it is given: digest, semver, git, none [default:
    /// digest]
    #[arg(long, value_name = "STRATEGY", value_delimiter = ',')]
    extra_tags: Option<Vec<String>>,
    /// A configuration file (TOML: allow_writes, allow_registries, allow_repositories, roots,
    /// extra_tags, region, endpoint_url, store, insecure_registries); flags and environment win
    #[arg(long, value_name = "FILE", env = "BERTH_MCP_CONFIG")]
    config: Option<PathBuf>,
    /// The AWS region of the ECR API
    #[arg(long)]
    region: Option<String>,
    /// The ECR API endpoint (default: AWS_ENDPOINT_URL_ECR, else Amazon ECR)
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The build store (default as for `berth build`)
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(flatten)]
    registry: crate::transfer::RegistryOpts,
}

/// `berth mcp --config`'s file, and the `[mcp]` table of `berth serve`'s berth.toml.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// `berth serve`: mount the MCP endpoint at `/mcp` (ignored by `berth mcp`).
    #[serde(default)]
    pub(crate) enabled: bool,
    #[serde(default)]
    allow_writes: bool,
    #[serde(default)]
    allow_registries: Vec<String>,
    #[serde(default)]
    allow_repositories: Vec<String>,
    #[serde(default)]
    roots: Vec<PathBuf>,
    #[serde(default)]
    extra_tags: Option<Vec<String>>,
    /// The AWS region of the ECR API.
    region: Option<String>,
    /// The ECR API endpoint.
    endpoint_url: Option<String>,
    /// The build store.
    store: Option<PathBuf>,
    /// Registries reached over plain HTTP.
    #[serde(default)]
    insecure_registries: Vec<String>,
}

impl FileConfig {
    pub(crate) fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub(crate) fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }
}

/// What flags and the environment set; each wins over the file where given.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) allow_writes: bool,
    pub(crate) registries: Vec<String>,
    pub(crate) repositories: Vec<String>,
    pub(crate) roots: Vec<PathBuf>,
    /// `None`: the file's, else `digest`.
    pub(crate) extra_tags: Option<Vec<String>>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) store: Option<PathBuf>,
    pub(crate) insecure: Vec<String>,
}

/// The MCP server a file and its overrides describe.
pub(crate) fn make_server(file: FileConfig, over: Overrides) -> anyhow::Result<BerthMcp> {
    let pick = |flag: Vec<String>, file: Vec<String>| if flag.is_empty() { file } else { flag };
    let mut policy = Policy::default();
    policy.allow_writes = over.allow_writes || file.allow_writes;
    policy.registries = pick(over.registries, file.allow_registries);
    policy.repositories = pick(over.repositories, file.allow_repositories);
    policy.roots = if over.roots.is_empty() {
        file.roots
    } else {
        over.roots
    };
    let extra_names = over
        .extra_tags
        .or(file.extra_tags)
        .unwrap_or_else(|| vec!["digest".to_owned()]);
    let mut extra = Vec::new();
    for n in extra_names.iter().filter(|n| n.as_str() != "none") {
        extra.push(n.parse::<TagStrategy>().map_err(UsageError)?);
    }
    let aws = AwsOptions {
        region: over.region.or(file.region),
        endpoint: over.endpoint_url.or(file.endpoint_url),
        ..AwsOptions::default()
    };
    let mut insecure = file.insecure_registries;
    insecure.extend(over.insecure);
    BerthMcp::new(policy, insecure, aws, over.store.or(file.store), extra)
        .map_err(|e| UsageError(e.to_string()).into())
}

pub fn run(args: McpArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| UsageError(format!("{}: {e}", p.display())))?
        }
        None => FileConfig::default(),
    };
    let over = Overrides {
        allow_writes: args.allow_writes,
        registries: args.registries.clone(),
        repositories: args.repositories.clone(),
        roots: args.roots.clone(),
        extra_tags: args.extra_tags.clone(),
        region: args.region.clone(),
        endpoint_url: args.endpoint_url.clone(),
        store: args.store.clone(),
        insecure: args.registry.insecure.clone(),
    };
    let server = make_server(file, over)?;
    let rt = crate::transfer::runtime()?;
    rt.block_on(async move {
        match &args.listen {
            None => berth_mcp::serve_stdio(server)
                .await
                .map_err(anyhow::Error::from),
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| UsageError(format!("--listen {addr}: {e}")))?;
                let local = listener.local_addr()?;
                let cancel = tokio_util::sync::CancellationToken::new();
                // A non-loopback address is a Host clients may name.
                let hosts = [local.to_string(), local.ip().to_string()];
                let router = berth_mcp::http_router(server, cancel.clone(), &hosts);
                println!("mcp listening on http://{local}/mcp");
                let shutdown = async move {
                    let _ = tokio::signal::ctrl_c().await;
                    cancel.cancel();
                };
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .context("serving MCP over HTTP")
            }
        }
    })
}
