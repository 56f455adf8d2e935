//! `berth serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_registry::audit::{AuditConfig, AuditDestination, AuditLog};
use berth_registry::server::{IpNet, ServerLimits};
use berth_registry::{GcOptions, Registry, RegistryConfig, TemplateInstall};
use berth_store::{
    BlobStore, Durability, FsBlobStore, MetadataDb, PgMeta, Quota, S3BlobStore, S3Options,
    SqliteMeta,
};
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
    /// Where blobs go: `fs` (the data directory) or `s3://BUCKET/PREFIX` on S3 or an
    /// S3-compatible store (endpoint, region, path style, redirects: the `[s3]` table of the
    /// config file; credentials from the AWS chain) [default: fs]
    #[arg(long, env = "BERTH_STORAGE", value_name = "URL")]
    storage: Option<String>,
    /// Where metadata goes: `sqlite` (`meta.db` in the data directory) or a PostgreSQL URL
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`), which several replicas may share (they
    /// need the same master key, `BERTH_MASTER_KEY` or master_key_file) [default: sqlite]
    #[arg(long, env = "BERTH_METADATA", value_name = "URL")]
    metadata: Option<String>,
    /// TOML config file with any of: listen, data, storage, [s3], metadata, trusted_proxies,
    /// log_level, log_format, max_blob_size,
    /// upload_ttl_secs, body_idle_timeout_secs, header_read_timeout_secs, max_connections,
    /// max_requests_per_connection, max_concurrent_uploads, max_uploads_per_repository,
    /// max_uploads, ecr_body_budget, durability, auth, registry_id, region, public_host,
    /// public_tls, token_ttl_secs, auto_create_repositories, master_key_file, metrics_listen,
    /// audit_log, audit_log_max_bytes, audit_log_keep, scan_db, scan_workers,
    /// scan_db_poll_secs, pull_through_check_secs, pull_through_timeout_secs, [mcp],
    /// [[replication_destinations]]
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,berth_registry=debug` [default: info]
    #[arg(long, env = "BERTH_LOG", value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format: `text` (human) or `json` (one object per line) [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
    /// Serve without authentication: every request acts as the administrator (local use only;
    /// logged loudly at start)
    #[arg(long, env = "BERTH_NO_AUTH")]
    no_auth: bool,
    /// The 12-digit registry id of ARNs and ECR responses [default: generated once per data
    /// directory]
    #[arg(long, env = "BERTH_REGISTRY_ID", value_name = "ID")]
    registry_id: Option<String>,
    /// The region of ARNs, as clients sign requests [default: us-east-1]
    #[arg(long, env = "BERTH_REGION", value_name = "REGION")]
    region: Option<String>,
    /// `host[:port]` clients reach the registry at (repositoryUri, proxyEndpoint) [default: the
    /// listening address]
    #[arg(long, env = "BERTH_PUBLIC_HOST", value_name = "HOST")]
    public_host: Option<String>,
    /// Address of the metrics listener (`/metrics`, `/healthz`, `/readyz`; no credentials
    /// asked: keep it internal), or `off` [default: 127.0.0.1:5001; port 0 when --listen's
    /// port is 0]
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Audit log of state-changing and refused requests: a file (appended, 0600, rotated by
    /// size) or `-` for stdout [default: off]
    #[arg(long, env = "BERTH_AUDIT_LOG", value_name = "FILE")]
    audit_log: Option<String>,
    /// A push to a missing repository creates it: installs a repository creation template for
    /// all repositories (unless one exists) with immutable tags except `latest`, untagged
    /// images expired after 7 days, and scan on push
    #[arg(long, env = "BERTH_CREATE_ON_PUSH")]
    create_on_push: bool,
    /// Serve the MCP tools of `berth mcp` at `/mcp` on the same listener, behind the registry's
    /// authentication (callers need `berth:InvokeMcp`); settings in the `[mcp]` table of the
    /// config file
    #[arg(long, env = "BERTH_MCP")]
    mcp: bool,
    /// Let the `/mcp` tools with side effects run (build, push, copy, repository changes,
    /// release); without it only reading tools run
    #[arg(long, env = "BERTH_MCP_ALLOW_WRITES")]
    mcp_allow_writes: bool,
}

/// Where `serve` and `admin` find their data (shared by both).
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Directory holding all registry data [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Where blobs are: `fs` or `s3://BUCKET/PREFIX` (see `berth serve --help`)
    #[arg(long, env = "BERTH_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// Where metadata is: `sqlite` or `postgres://…` (see `berth serve --help`)
    #[arg(long, env = "BERTH_METADATA", value_name = "URL")]
    pub metadata: Option<String>,
    /// TOML config file (see `berth serve --help`)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub(crate) struct Settings {
    listen: String,
    server: ServerLimits,
    pub(crate) data: PathBuf,
    /// The blob store: `None` for the data directory.
    pub(crate) s3: Option<S3Options>,
    /// The PostgreSQL URL of the metadata database: `None` for SQLite in the data directory.
    pub(crate) metadata: Option<String>,
    registry: RegistryConfig,
    pub(crate) durability: Durability,
    /// Bind address given as the public host (filled in once bound).
    public_host_set: bool,
    pub(crate) master_key_file: Option<PathBuf>,
    registry_id_set: bool,
    /// Between scheduled collections (`None`: off).
    gc_interval: Option<Duration>,
    /// Between scheduled lifecycle runs (`None`: off).
    lifecycle_interval: Option<Duration>,
    /// Install the `--create-on-push` creation template at start.
    create_on_push: bool,
    /// Where `/metrics` is served.
    metrics_listen: MetricsListen,
    /// The audit log (`None`: off).
    audit: Option<AuditConfig>,
    /// The MCP endpoint at `/mcp` (`None`: off), and whether its writing tools may run.
    mcp: Option<(crate::mcp::FileConfig, bool)>,
    /// The scanner's database directory (default under the data directory) and workers.
    scan_db: Option<PathBuf>,
    scan_workers: Option<usize>,
    scan_db_poll: Duration,
}

/// Where the metrics listener binds.
enum MetricsListen {
    Off,
    /// The default address: if it is taken, serve without metrics (with a warning).
    Default(String),
    /// Configured: failing to bind it is a usage error, as for `--listen`.
    Configured(String),
}

/// The metrics and audit settings (flag > env > file > default), given the main address.
fn observability(
    args_metrics: Option<String>,
    args_audit: Option<String>,
    file: &FileConfig,
    listen: &str,
) -> anyhow::Result<(MetricsListen, Option<AuditConfig>)> {
    let metrics = match args_metrics.or_else(|| file.metrics_listen.clone()) {
        Some(a) if a.eq_ignore_ascii_case("off") => MetricsListen::Off,
        Some(a) => MetricsListen::Configured(a),
        // Tests start many servers on port 0: their metrics take a free port too.
        None if listen.rsplit_once(':').is_some_and(|(_, port)| port == "0") => {
            MetricsListen::Default("127.0.0.1:0".into())
        }
        None => MetricsListen::Default("127.0.0.1:5001".into()),
    };
    let audit = match args_audit.or_else(|| file.audit_log.clone()) {
        None => None,
        Some(d) if d.is_empty() || d.eq_ignore_ascii_case("off") => None,
        Some(d) => {
            let mut c = AuditConfig::new(if d == "-" {
                AuditDestination::Stdout
            } else {
                AuditDestination::File(PathBuf::from(d))
            });
            if let Some(n) = file.audit_log_max_bytes {
                if n == 0 {
                    return Err(UsageError("audit_log_max_bytes must be positive".into()).into());
                }
                c.max_bytes = n;
            }
            if let Some(k) = file.audit_log_keep {
                c.keep = k;
            }
            Some(c)
        }
    };
    Ok((metrics, audit))
}

/// Binds the metrics listener (`None`: off, or the default address is taken).
async fn bind_metrics(m: &MetricsListen) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match m {
        MetricsListen::Off => Ok(None),
        MetricsListen::Configured(a) => tokio::net::TcpListener::bind(a)
            .await
            .map(Some)
            .map_err(|e| UsageError(format!("cannot listen on {a} for metrics: {e}")).into()),
        MetricsListen::Default(a) => match tokio::net::TcpListener::bind(a).await {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                tracing::warn!(address = %a, error = %e,
                    "serving without metrics: cannot listen on the default metrics address \
                     (set --metrics-listen ADDR, or off)");
                Ok(None)
            }
        },
    }
}

impl Settings {
    /// The registry's configuration.
    pub(crate) fn registry_config(&self) -> &RegistryConfig {
        &self.registry
    }
}

/// A registry over a data directory, for commands that work on it without serving
/// (`berth gc`).
pub(crate) async fn open_registry(mut s: Settings) -> anyhow::Result<Registry> {
    let meta = open_meta(&s).await?;
    let blobs = open_blobs(&s).await?;
    let master = crate::admin::master_key(&s, &*meta).await?;
    if !s.registry_id_set {
        s.registry.registry_id = crate::admin::registry_id(&*meta).await?;
    }
    Ok(Registry::new(
        blobs,
        Arc::clone(&meta) as Arc<dyn berth_store::MetadataStore>,
        meta,
        &master,
        s.registry,
    ))
}

/// Opens the configured blob store.
pub(crate) async fn open_blobs(s: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    match &s.s3 {
        None => {
            let fs = FsBlobStore::open(&s.data)
                .with_context(|| format!("opening blob store in {}", s.data.display()))?;
            Ok(Arc::new(fs))
        }
        Some(o) => {
            let store = S3BlobStore::open(o.clone())
                .await
                .with_context(|| format!("opening blob store s3://{}/{}", o.bucket, o.prefix))?;
            Ok(Arc::new(store))
        }
    }
}

/// The blob store settings (flag > env > file).
fn storage(
    arg: Option<String>,
    file: &FileConfig,
) -> anyhow::Result<(Option<S3Options>, Option<Duration>)> {
    let url = arg.or_else(|| file.storage.clone());
    let table = file.s3.as_ref();
    let Some(url) = url.filter(|u| u != "fs") else {
        if table.is_some() {
            return Err(UsageError(
                "an [s3] table is set but storage is not s3://BUCKET/PREFIX".into(),
            )
            .into());
        }
        return Ok((None, None));
    };
    let mut o = S3Options::from_url(&url).ok_or_else(|| {
        UsageError(format!(
            "storage must be \"fs\" or s3://BUCKET/PREFIX (a bucket name of 3-63 lowercase \
             letters, digits, dots and hyphens), not {url:?}"
        ))
    })?;
    let mut redirect = None;
    if let Some(t) = table {
        o.endpoint.clone_from(&t.endpoint);
        o.region.clone_from(&t.region);
        o.path_style = t.path_style.unwrap_or(t.endpoint.is_some());
        if let Some(mib) = t.part_size_mib {
            if !(5..=5 * 1024).contains(&mib) {
                return Err(UsageError(format!(
                    "[s3] part_size_mib must be between 5 and 5120, not {mib}"
                ))
                .into());
            }
            o.part_size = mib * 1024 * 1024;
        }
        if t.redirect.unwrap_or(false) {
            let ttl = t.redirect_ttl_secs.unwrap_or(900);
            if !(1..=604_800).contains(&ttl) {
                return Err(UsageError(format!(
                    "[s3] redirect_ttl_secs must be between 1 and 604800 (7 days), not {ttl}"
                ))
                .into());
            }
            redirect = Some(Duration::from_secs(ttl));
        }
    }
    Ok((Some(o), redirect))
}

fn settings(args: ServeArgs) -> anyhow::Result<(Settings, String, String)> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or_else(|| file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let (metrics_listen, audit) =
        observability(args.metrics_listen, args.audit_log, &file, &listen)?;
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
    let (s3, blob_redirect) = storage(args.storage, &file)?;
    let metadata = match args.metadata.or_else(|| file.metadata.clone()) {
        None => None,
        Some(m) if m == "sqlite" => None,
        Some(m) if m.starts_with("postgres://") || m.starts_with("postgresql://") => Some(m),
        Some(m) => {
            return Err(UsageError(format!(
                "metadata must be \"sqlite\" or a postgres:// URL, not {:?}",
                m.split('@').next_back().unwrap_or_default()
            ))
            .into());
        }
    };
    registry.shared_stores = s3.is_some() || metadata.is_some();
    registry.blob_redirect = blob_redirect;
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
    if let Some(n) = file.max_uploads_per_repository {
        registry.max_uploads_per_repository = n;
    }
    if let Some(n) = file.max_uploads {
        registry.max_uploads = n;
    }
    if let Some(n) = file.ecr_body_budget {
        registry.ecr_body_budget = n;
    }
    if let Some(s) = file.gc_grace_secs {
        registry.gc_grace = Duration::from_secs(s);
    }
    if let Some(s) = file.gc_lease_secs {
        registry.gc_lease = Duration::from_secs(s.max(1));
    }
    if let Some(s) = file.pull_through_check_secs {
        registry.pull_through_check = Duration::from_secs(s);
    }
    if let Some(s) = file.pull_through_timeout_secs {
        registry.pull_through_timeout = Duration::from_secs(s.max(1));
    }
    for d in file.replication_destinations.iter().flatten() {
        registry.replication_destinations.push(d.destination()?);
    }
    registry.quota = Quota {
        repository: file.repository_quota_bytes,
        registry: file.registry_quota_bytes,
    };
    let every = |secs: Option<u64>| match secs.unwrap_or(86_400) {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    // Test hook of the crash-safety tests (see RegistryConfig::crash_point); never documented
    // for users.
    registry.crash_point = std::env::var("BERTH_CRASH_POINT").ok();
    let mut server = ServerLimits::default();
    server.body_idle_timeout = registry.body_idle_timeout;
    if let Some(s) = file.header_read_timeout_secs {
        server.header_read_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(n) = file.max_connections {
        server.max_connections = n.max(1);
    }
    if let Some(n) = file.max_requests_per_connection {
        server.max_requests_per_connection = n.max(1);
    }
    for p in file.trusted_proxies.iter().flatten() {
        server.trusted_proxies.push(IpNet::parse(p).ok_or_else(|| {
            UsageError(format!(
                "trusted_proxies: {p:?} is not an address or a network (10.0.0.0/8, fd00::/8)"
            ))
        })?);
    }
    registry.auth = !args.no_auth && file.auth.unwrap_or(true);
    registry.auto_create = file.auto_create_repositories.unwrap_or(!registry.auth);
    let create_on_push = args.create_on_push || file.create_on_push.unwrap_or(false);
    let mcp_table = file.mcp.unwrap_or_default();
    let mcp = (args.mcp || mcp_table.enabled).then_some((mcp_table, args.mcp_allow_writes));
    if let Some(s) = file.token_ttl_secs {
        if s == 0 {
            return Err(UsageError("token_ttl_secs must be positive".into()).into());
        }
        registry.token_ttl = Duration::from_secs(s);
    }
    let registry_id = args.registry_id.or(file.registry_id);
    if let Some(id) = &registry_id {
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UsageError(format!("registry id must be 12 digits, not {id:?}")).into());
        }
        registry.registry_id.clone_from(id);
    }
    if let Some(r) = args.region.or(file.region) {
        let ok = (2..=25).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(UsageError(format!("region {r:?} is not a region name")).into());
        }
        registry.region = r;
    }
    let public_host = args.public_host.or(file.public_host);
    if let Some(h) = &public_host {
        registry.public_host.clone_from(h);
    }
    registry.public_tls = file.public_tls.unwrap_or(false);
    let s = Settings {
        metrics_listen,
        audit,
        server,
        public_host_set: public_host.is_some(),
        master_key_file: file.master_key_file,
        registry_id_set: registry_id.is_some(),
        listen,
        s3,
        metadata,
        data: args
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("berth-data")),
        registry,
        durability,
        gc_interval: every(file.gc_interval_secs),
        lifecycle_interval: every(file.lifecycle_interval_secs),
        create_on_push,
        mcp,
        scan_db: file.scan_db,
        scan_workers: file.scan_workers,
        scan_db_poll: Duration::from_secs(file.scan_db_poll_secs.unwrap_or(60).max(1)),
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

/// Opens the metadata database: PostgreSQL when configured, else SQLite in the data directory
/// (creating the directory either way: it holds the master key and root credentials files).
pub(crate) async fn open_meta(s: &Settings) -> anyhow::Result<Arc<dyn MetadataDb>> {
    std::fs::create_dir_all(&s.data)
        .with_context(|| format!("creating data directory {}", s.data.display()))?;
    if let Some(url) = &s.metadata {
        let db = PgMeta::open(url).await.with_context(|| {
            // Not the URL: it may carry a password.
            "opening the PostgreSQL metadata database (--metadata)"
        })?;
        return Ok(Arc::new(db));
    }
    let db = SqliteMeta::open(s.data.join("meta.db"), s.durability)
        .with_context(|| format!("opening metadata database in {}", s.data.display()))?;
    Ok(Arc::new(db))
}

/// The settings `admin` needs (data directory, durability, master key file).
pub(crate) fn data_settings(args: DataArgs) -> anyhow::Result<Settings> {
    let serve = ServeArgs {
        listen: None,
        data: args.data,
        storage: args.storage,
        metadata: args.metadata,
        config: args.config,
        log_level: None,
        log_format: None,
        no_auth: false,
        registry_id: None,
        region: None,
        public_host: None,
        metrics_listen: None,
        audit_log: None,
        create_on_push: false,
        mcp: false,
        mcp_allow_writes: false,
    };
    Ok(settings(serve)?.0)
}

async fn serve(mut s: Settings) -> anyhow::Result<()> {
    let meta = open_meta(&s).await?;
    let blobs = open_blobs(&s).await?;
    let master = crate::admin::master_key(&s, &*meta).await?;
    if !s.registry_id_set {
        s.registry.registry_id = crate::admin::registry_id(&*meta).await?;
    }
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| UsageError(format!("cannot listen on {}: {e}", s.listen)))?;
    let addr = listener.local_addr()?;
    let metrics_listener = bind_metrics(&s.metrics_listen).await?;
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let audit_log = match s.audit.take() {
        Some(c) => Some(AuditLog::open(c).map_err(|e| UsageError(e.to_string()))?),
        None => None,
    };
    if !s.public_host_set {
        s.registry.public_host = addr.to_string();
    }
    let mut new_credentials = None;
    if s.registry.auth {
        new_credentials = crate::admin::bootstrap_root(&*meta, &master, &s.data).await?;
    } else {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--no-auth / auth = false): every request, from anyone who can \
             reach this address, acts as the administrator"
        );
    }
    let mut registry = Registry::new(
        blobs,
        Arc::clone(&meta) as Arc<dyn berth_store::MetadataStore>,
        meta,
        &master,
        s.registry,
    );
    if let Some(a) = &audit_log {
        registry = registry.with_audit(a.clone());
    }
    let mut scan = berth_registry::ScanConfig::under(&s.data);
    if let Some(d) = s.scan_db.take() {
        scan.db_dir = d;
    }
    if let Some(n) = s.scan_workers {
        scan.workers = n.max(1);
    }
    let scan_db = scan.db_dir.clone();
    registry = registry.with_scanning(scan);
    if s.create_on_push {
        match registry.install_create_on_push_template().await? {
            TemplateInstall::Installed => tracing::info!(
                "installed the --create-on-push repository creation template (prefix ROOT)"
            ),
            TemplateInstall::Kept => tracing::warn!(
                "--create-on-push: a ROOT repository creation template of your own exists and is \
                 kept; it decides what a push creates"
            ),
            _ => {}
        }
    } else if registry.remove_create_on_push_template().await? {
        tracing::info!(
            "removed the --create-on-push repository creation template: started without \
             --create-on-push, pushes no longer create repositories"
        );
    }
    let finished = registry.finish_abandoned_collection().await?;
    if finished > 0 {
        tracing::info!(
            finished,
            "finished the deletions of an interrupted garbage collection"
        );
    }
    let resumed = registry.resume_scans().await?;
    if resumed > 0 {
        tracing::info!(
            resumed,
            "queued again the image scans a stop left in progress"
        );
    }
    tracing::info!(database = %scan_db.display(), "image scanning (fill the database with `berth scan db import --db DIR`)");
    // Replication jobs (left pending by a stop too) run in the background.
    registry.start_replication();
    let removed = registry.clean_uploads(true).await?;
    if removed > 0 {
        tracing::info!(removed, "discarded stale upload sessions");
    }
    periodically(
        Some(Duration::from_secs(600)),
        registry.clone(),
        |r| async move {
            if let Err(e) = r.clean_uploads(false).await {
                tracing::warn!(error = %e, "cleaning stale uploads failed");
            }
        },
    );
    let lifecycle_every = s.lifecycle_interval;
    periodically(lifecycle_every, registry.clone(), move |r| async move {
        let every = lifecycle_every.unwrap_or(Duration::from_secs(86_400));
        match r.run_scheduled_lifecycles(every).await {
            Ok(Some(n)) => tracing::info!(expired = n, "scheduled lifecycle run finished"),
            Ok(None) => tracing::debug!("scheduled lifecycle run left to another replica"),
            Err(e) => tracing::warn!(error = %e, "scheduled lifecycle run failed"),
        }
    });
    // Continuous scanning: an updated database rescans the CONTINUOUS_SCAN repositories.
    periodically(Some(s.scan_db_poll), registry.clone(), |r| async move {
        if let Err(e) = r.rescan_if_updated().await {
            tracing::warn!(error = %e, "checking the scan database failed");
        }
    });
    periodically(s.gc_interval, registry.clone(), |r| async move {
        let opts = GcOptions {
            dry_run: false,
            grace: r.config().gc_grace,
        };
        if let Err(e) = r.collect_garbage(opts).await {
            tracing::warn!(error = %e, "scheduled garbage collection failed");
        }
    });
    tracing::info!(%addr, data = %s.data.display(), registry_id = %registry.config().registry_id,
        region = %registry.config().region, auth = registry.config().auth, "berth registry listening");
    if !addr.ip().is_loopback() && !registry.config().auth {
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
        // Never before the `listening on` line: harnesses read only the first line.
        if let Some(m) = metrics_addr {
            let _ = writeln!(out, "metrics on {m}").and_then(|()| out.flush());
        }
        if let Some(path) = &new_credentials {
            let c = registry.config();
            let text = crate::first_run::next_steps(&crate::first_run::NextSteps {
                host: &c.public_host,
                tls: c.public_tls,
                region: &c.region,
                credentials: path,
                create_on_push: s.create_on_push || c.auto_create,
            });
            let _ = write!(out, "{text}").and_then(|()| out.flush());
        }
    }
    if let Some(l) = metrics_listener {
        tracing::info!(addr = %metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
            "metrics listening");
        let app = berth_registry::metrics_router(registry.clone());
        let mut limits = ServerLimits::default();
        limits.max_connections = 64;
        tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) = berth_registry::server::serve(l, app, limits, never).await {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let mounted = match s.mcp.take() {
        Some((file, allow_writes)) => Some(mcp_endpoint(&registry, file, allow_writes, &cancel)?),
        None => None,
    };
    let app = berth_registry::router_with(registry, mounted);
    let shutdown = async move {
        shutdown_signal().await;
        // Open MCP event streams end, so graceful shutdown does not wait for them.
        cancel.cancel();
    };
    berth_registry::server::serve(listener, app, s.server, shutdown)
        .await
        .context("serving HTTP")?;
    if let Some(a) = audit_log {
        // The events of the last requests are written before the process exits.
        let flushed = tokio::task::spawn_blocking(move || a.flush(Duration::from_secs(5))).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("the audit log could not be flushed at shutdown");
        }
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The MCP tools at `/mcp`, behind the registry's authentication. Unless the `[mcp]` table says
/// otherwise they work on this registry: its region, its ECR API, its address over plain HTTP
/// when it has no TLS. They act with the server process's own client credentials (AWS
/// credential chain, docker config), never the caller's.
fn mcp_endpoint(
    registry: &Registry,
    file: crate::mcp::FileConfig,
    allow_writes: bool,
    cancel: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<berth_registry::Mounted> {
    let c = registry.config();
    let mut over = crate::mcp::Overrides {
        allow_writes,
        region: Some(file.region().unwrap_or(&c.region).to_owned()),
        endpoint_url: Some(
            file.endpoint_url()
                .map_or_else(|| registry.proxy_endpoint(), str::to_owned),
        ),
        ..Default::default()
    };
    if !c.public_tls {
        over.insecure.push(c.public_host.clone());
    }
    let server = crate::mcp::make_server(file, over)?;
    let host = c.public_host.clone();
    let bare = host
        .rsplit_once(':')
        .map_or_else(|| host.clone(), |(h, _)| h.to_owned());
    let routes = berth_mcp::http_router(server, cancel.clone(), &[host, bare]);
    tracing::info!(
        writes = allow_writes,
        "MCP endpoint at /mcp (callers need berth:InvokeMcp)"
    );
    Ok(berth_registry::Mounted {
        routes,
        action: "berth:InvokeMcp",
        event_name: "InvokeMcp",
    })
}

/// Runs `job` every `every` (first after one interval), in the background; `None`: never.
fn periodically<F, Fut>(every: Option<Duration>, registry: Registry, job: F)
where
    F: Fn(Registry) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let Some(every) = every else { return };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            job(registry.clone()).await;
        }
    });
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
