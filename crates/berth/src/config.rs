//! `berth.toml`: every `serve` setting can live there; flags and environment variables win.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::UsageError;

/// The `[serve]`-less, flat configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Where blobs go: `fs` (under the data directory, the default) or `s3://BUCKET/PREFIX`
    /// (settings in `[s3]`).
    pub storage: Option<String>,
    /// `[s3]`: how to reach the bucket of `storage = "s3://…"`.
    pub s3: Option<S3Table>,
    /// Where metadata goes: `sqlite` (the default) or a `postgres://` URL.
    pub metadata: Option<String>,
    /// Load balancers (addresses or CIDR networks) whose `X-Forwarded-For` names the client
    /// (for `aws:SourceIp` and the audit log); default none.
    pub trusted_proxies: Option<Vec<String>>,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `berth_registry=debug`).
    pub log_level: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Largest blob accepted, bytes.
    pub max_blob_size: Option<u64>,
    /// Upload sessions idle longer than this many seconds are discarded.
    pub upload_ttl_secs: Option<u64>,
    /// A request body that sends nothing for this many seconds is failed.
    pub body_idle_timeout_secs: Option<u64>,
    /// Requests streaming blob data at once before 429 TOOMANYREQUESTS.
    pub max_concurrent_uploads: Option<usize>,
    /// `full` (survives power loss) or `normal` (survives a process crash).
    pub durability: Option<String>,
    /// Authentication and policies (default true); false serves everyone as the administrator.
    pub auth: Option<bool>,
    /// The 12-digit registry id of ARNs (default: generated once per data directory).
    pub registry_id: Option<String>,
    /// The region of ARNs and signatures (default us-east-1).
    pub region: Option<String>,
    /// `host[:port]` clients reach the registry at (default: the listening address).
    pub public_host: Option<String>,
    /// Whether clients reach it over TLS (a terminating proxy in front).
    pub public_tls: Option<bool>,
    /// Lifetime of GetAuthorizationToken tokens, seconds (default 43200, 12 hours).
    pub token_ttl_secs: Option<u64>,
    /// A push to a missing repository creates it (default: the opposite of `auth`; with auth,
    /// only a CREATE_ON_PUSH repository creation template creates one, as ECR does).
    pub auto_create_repositories: Option<bool>,
    /// Install a repository creation template for all repositories at start, so a push
    /// creates its repository (immutable tags but `latest`, 7-day untagged expiry, scan on
    /// push); an existing `ROOT` template is kept.
    pub create_on_push: Option<bool>,
    /// File holding the base64 master key (default `<data>/master.key`, generated 0600).
    pub master_key_file: Option<PathBuf>,
    /// A request head must arrive within this many seconds; also the longest a keep-alive
    /// connection may sit idle (default 30).
    pub header_read_timeout_secs: Option<u64>,
    /// Connections open at once (default 1024); more wait to be accepted.
    pub max_connections: Option<usize>,
    /// Requests served on one HTTP/1 connection before it is closed (default 10000).
    pub max_requests_per_connection: Option<u64>,
    /// Upload sessions open at once in one repository (default 1000); more are answered 429.
    pub max_uploads_per_repository: Option<u64>,
    /// Upload sessions open at once in the registry (default 10000); more are answered 429.
    pub max_uploads: Option<u64>,
    /// Bytes of ECR API request bodies buffered at once (default 268435456, 256 MiB).
    pub ecr_body_budget: Option<u64>,
    /// Seconds between scheduled garbage collections (default 86400, daily; 0 turns the
    /// schedule off — `berth gc` and the API still run one on demand).
    pub gc_interval_secs: Option<u64>,
    /// Unreferenced content is collected once untouched for this many seconds (default 3600).
    pub gc_grace_secs: Option<u64>,
    /// Seconds a collector's lease outlives its last renewal (default 60).
    pub gc_lease_secs: Option<u64>,
    /// A pull-through cache tag is checked against its upstream at most every this many
    /// seconds (default 21600, 6 hours).
    pub pull_through_check_secs: Option<u64>,
    /// Seconds a pull-through request waits for its upstream before serving what is cached
    /// (default 20).
    pub pull_through_timeout_secs: Option<u64>,
    /// Seconds between scheduled lifecycle policy runs (default 86400, daily; 0: off).
    pub lifecycle_interval_secs: Option<u64>,
    /// Default byte quota of every repository (a repository's own, set with
    /// `berth admin quota`, replaces it). Unset: unlimited.
    pub repository_quota_bytes: Option<u64>,
    /// Byte quota of the whole registry. Unset: unlimited.
    pub registry_quota_bytes: Option<u64>,
    /// Address of the metrics listener (`/metrics`, `/healthz`, `/readyz`), or `off`
    /// (default `127.0.0.1:5001`; port 0 when `listen`'s port is 0).
    pub metrics_listen: Option<String>,
    /// Audit log: a file path, or `-` for stdout (default: off).
    pub audit_log: Option<String>,
    /// The audit log file is rotated once it would pass this many bytes (default 104857600).
    pub audit_log_max_bytes: Option<u64>,
    /// Rotated audit log files kept, `<file>.1` … (default 5).
    pub audit_log_keep: Option<usize>,
    /// The vulnerability database scans use (default `<data>/scan/osv`; fill it with
    /// `berth scan db import --db DIR`).
    pub scan_db: Option<PathBuf>,
    /// Image scans running at once (default 2).
    pub scan_workers: Option<usize>,
    /// Seconds between checks of the scan database for an update, after which the images of
    /// `CONTINUOUS_SCAN` repositories are scanned again (default 60).
    pub scan_db_poll_secs: Option<u64>,
    /// `[mcp]`: the MCP endpoint at `/mcp` (`enabled`, `allow_writes`, `allow_registries`,
    /// `allow_repositories`, `roots`, `extra_tags`, `region`, `endpoint_url`, `store`,
    /// `insecure_registries`).
    pub mcp: Option<crate::mcp::FileConfig>,
    /// Registries replication configurations may name: `[[replication_destinations]]` tables.
    pub replication_destinations: Option<Vec<DestinationConfig>>,
}

impl FileConfig {
    /// Reads a config file; a missing or malformed file is a usage error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read config file {}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| UsageError(format!("config file {}: {e}", path.display())).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_parses() {
        let c: FileConfig = toml::from_str(include_str!("../../../examples/berth.toml"))
            .unwrap_or_else(|e| panic!("examples/berth.toml: {e}"));
        assert_eq!(c.create_on_push, Some(true));
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:5001"));
    }
}

/// The `[s3]` table. Credentials come from the AWS chain (environment, profiles, instance
/// roles), never from this file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Table {
    /// Endpoint URL of an S3-compatible store (`http://127.0.0.1:8333`); default AWS S3.
    pub endpoint: Option<String>,
    /// Region requests are signed for (default from the AWS configuration, else us-east-1).
    pub region: Option<String>,
    /// Address the bucket in the path, not the host name (default: true with `endpoint`).
    pub path_style: Option<bool>,
    /// Size of a multipart part in MiB (at least 5; default 8).
    pub part_size_mib: Option<usize>,
    /// Answer blob GETs with a 307 to a presigned URL, as ECR does (default false).
    pub redirect: Option<bool>,
    /// Lifetime of a presigned URL in seconds (default 900).
    pub redirect_ttl_secs: Option<u64>,
}

/// A `[[replication_destinations]]` table: the registry ECR's (region, registryId) pair stands
/// for, and how to reach it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The region replication configurations name.
    pub region: String,
    /// The registry id replication configurations name (12 digits).
    pub registry_id: String,
    /// `host[:port]` images are pushed to.
    pub registry: String,
    /// Plain HTTP (loopback hosts always are).
    #[serde(default)]
    pub insecure: bool,
    /// Its ECR API (`http://host:port` for a `berth serve`, Amazon ECR's endpoint): pushes
    /// authenticate with ECR tokens from the AWS credentials, and repositories are created there.
    pub ecr_endpoint: Option<String>,
    /// The AWS profile for it.
    pub aws_profile: Option<String>,
    /// An AWS credentials file (a destination `berth serve`'s `root-credentials`).
    pub aws_credentials_file: Option<PathBuf>,
    /// Basic credentials for an OCI registry: the user…
    pub username: Option<String>,
    /// …and a file holding the password (never the password itself in this file).
    pub password_file: Option<PathBuf>,
    /// Create missing repositories through `ecr_endpoint` (default true).
    pub create_repositories: Option<bool>,
}

impl DestinationConfig {
    /// The registry's view of it (the password read from its file).
    pub fn destination(&self) -> Result<berth_registry::replication::Destination, UsageError> {
        let mut d = berth_registry::replication::Destination::new(
            &self.region,
            &self.registry_id,
            &self.registry,
        );
        d.insecure = self.insecure;
        d.ecr_endpoint.clone_from(&self.ecr_endpoint);
        d.aws_profile.clone_from(&self.aws_profile);
        d.aws_credentials_file
            .clone_from(&self.aws_credentials_file);
        d.create_repositories = self.create_repositories.unwrap_or(true);
        if let Some(u) = &self.username {
            let file = self.password_file.as_ref().ok_or_else(|| {
                UsageError(format!(
                    "replication destination {}/{}: username needs password_file",
                    self.region, self.registry_id
                ))
            })?;
            let password = std::fs::read_to_string(file).map_err(|e| {
                UsageError(format!(
                    "replication destination {}/{}: password_file {}: {e}",
                    self.region,
                    self.registry_id,
                    file.display()
                ))
            })?;
            d.username = Some(u.clone());
            d.password = Some(password.trim_end_matches(['\n', '\r']).to_owned());
        }
        Ok(d)
    }
}
