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
    /// Tags finch_push_image adds to the one it is given: digest (default), semver, git, none
    #[arg(
        long,
        value_name = "STRATEGY",
        default_value = "digest",
        value_delimiter = ','
    )]
    extra_tags: Vec<String>,
    /// A configuration file (TOML: allow_writes, allow_registries, allow_repositories, roots,
    /// extra_tags); flags and environment win
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

/// `berth mcp`'s configuration file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
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
    let pick = |flag: &Vec<String>, file: &Vec<String>| {
        if flag.is_empty() {
            file.clone()
        } else {
            flag.clone()
        }
    };
    let mut policy = Policy::default();
    policy.allow_writes = args.allow_writes || file.allow_writes;
    policy.registries = pick(&args.registries, &file.allow_registries);
    policy.repositories = pick(&args.repositories, &file.allow_repositories);
    policy.roots = if args.roots.is_empty() {
        file.roots.clone()
    } else {
        args.roots.clone()
    };
    let extra_names = if args.extra_tags != ["digest"] {
        args.extra_tags.clone()
    } else {
        file.extra_tags
            .clone()
            .unwrap_or_else(|| args.extra_tags.clone())
    };
    let mut extra = Vec::new();
    for n in extra_names.iter().filter(|n| n.as_str() != "none") {
        extra.push(n.parse::<TagStrategy>().map_err(UsageError)?);
    }
    let mut aws = AwsOptions::default();
    aws.region = args.region.clone();
    aws.endpoint = args.endpoint_url.clone();
    let server = BerthMcp::new(
        policy,
        args.registry.insecure.clone(),
        aws,
        args.store.clone(),
        extra,
    )
    .map_err(|e| UsageError(e.to_string()))?;
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
                let router = berth_mcp::http_router(server, cancel.clone());
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
