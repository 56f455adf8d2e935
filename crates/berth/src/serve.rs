//! `berth serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use berth_registry::{Registry, RegistryConfig};
use berth_store::{Durability, FsBlobStore, SqliteMeta};
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::UsageError;
use crate::config::FileConfig;

/// Options of `berth serve`. Precedence: flag, then environment variable, then config file,
/// then the default shown.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Directory holding all registry data (blobs, uploads, metadata database) [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// TOML config file with any of: listen, data, log_level, log_format, max_blob_size,
    /// upload_ttl_secs, body_idle_timeout_secs, max_concurrent_uploads, durability
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,berth_registry=debug` [default: info]
    #[arg(long, env = "BERTH_LOG", value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format: `text` (human) or `json` (one object per line) [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

struct Settings {
    listen: String,
    data: PathBuf,
    registry: RegistryConfig,
    durability: Durability,
}

fn settings(args: ServeArgs) -> anyhow::Result<(Settings, String, String)> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let durability = match file.durability.as_deref() {
        None | Some("full") => Durability::Full,
        Some("normal") => Durability::Normal,
        Some(other) => {
            return Err(UsageError(format!(
                "durability must be \"full\" or \"normal\", not {other:?}"
            ))
            .into());
        }
    };
    let mut registry = RegistryConfig::default();
    if let Some(n) = file.max_blob_size {
        registry.max_blob_size = n;
    }
    if let Some(s) = file.body_idle_timeout_secs {
        registry.body_idle_timeout = Duration::from_secs(s);
    }
    if let Some(n) = file.max_concurrent_uploads {
        registry.max_concurrent_uploads = n;
    }
    if let Some(s) = file.upload_ttl_secs {
        registry.upload_ttl = Duration::from_secs(s);
    }
    let s = Settings {
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:5000".into()),
        data: args
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("berth-data")),
        registry,
        durability,
    };
    let level = args
        .log_level
        .or(file.log_level)
        .unwrap_or_else(|| "info".into());
    let format = args
        .log_format
        .or(file.log_format)
        .unwrap_or_else(|| "text".into());
    Ok((s, level, format))
}

fn init_logging(level: &str, format: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| UsageError(format!("invalid log filter {level:?}: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => {
            return Err(
                UsageError(format!("log format must be text or json, not {other:?}")).into(),
            );
        }
    }
    Ok(())
}

/// Runs the registry until SIGTERM or SIGINT; in-flight requests finish first.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (s, level, format) = settings(args)?;
    init_logging(&level, &format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(s))
}

async fn serve(s: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&s.data)
        .with_context(|| format!("creating data directory {}", s.data.display()))?;
    let blobs = FsBlobStore::open(&s.data)
        .with_context(|| format!("opening blob store in {}", s.data.display()))?;
    let meta = SqliteMeta::open(s.data.join("meta.db"), s.durability)
        .with_context(|| format!("opening metadata database in {}", s.data.display()))?;
    let registry = Registry::new(Arc::new(blobs), Arc::new(meta), s.registry);
    let removed = registry.clean_uploads(true).await?;
    if removed > 0 {
        tracing::info!(removed, "discarded stale upload sessions");
    }
    let janitor = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = janitor.clean_uploads(false).await {
                tracing::warn!(error = %e, "cleaning stale uploads failed");
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| UsageError(format!("cannot listen on {}: {e}", s.listen)))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %s.data.display(), "berth registry listening");
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening beyond loopback with no authentication: anyone who can reach this address \
             can push, pull and delete"
        );
    }
    {
        use std::io::Write as _;
        // Scripts and tests read the bound address (useful with port 0) from stdout.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
    }
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, berth_registry::router(registry))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
