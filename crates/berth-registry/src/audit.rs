//! The audit log: one JSON line per state-changing request and per refused one (401/403, ECR
//! `AccessDeniedException` and authentication failures), shaped like a CloudTrail record where
//! the fields map.
//!
//! Handlers attach an [`AuditInfo`] to their response (action, caller, repository, reference,
//! error code); the outer middleware adds what it knows (time, address, user agent, status,
//! request id), decides whether the request is audited, and hands the line to the writer.
//! Nothing secret is ever put in an event: no secret key, token, password, `Authorization`
//! header, query string or body — only the access key id, which is not a secret.
//!
//! Lines go through a bounded queue to one writing thread, so a request never waits for disk
//! I/O; when the queue is full the event is dropped, counted
//! (`berth_audit_events_dropped_total`) and a warning logged (at most every 10 s).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_iam::policy::Principal;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::access::Caller;
use crate::metrics::Metrics;

/// Events queued for the writer at most; beyond, events are dropped (and counted).
const QUEUE: usize = 4096;
/// Longest string kept in `requestParameters` and `userAgent` (characters).
const MAX_STRING: usize = 256;
/// Most list entries kept in `requestParameters`.
const MAX_LIST: usize = 100;

/// The default size at which the audit log file is rotated (100 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// The default number of rotated files kept.
pub const DEFAULT_KEEP: usize = 5;

/// Error codes that mean the caller was refused (as 401/403 do), though ECR answers them 400.
const DENIALS: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "UNAUTHORIZED",
    "DENIED",
];

/// Whether an ECR action changes state (or, as `GetAuthorizationToken`, issues a credential).
pub(crate) fn ecr_changes_state(action: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "Put",
        "Create",
        "Delete",
        "BatchDelete",
        "Set",
        "Start",
        "Tag",
        "Untag",
        "Upload",
        "Initiate",
        "Complete",
        "Update",
        "Berth",
    ];
    action == "GetAuthorizationToken" || PREFIXES.iter().any(|p| action.starts_with(p))
}

/// Which API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Api {
    /// `/v2/…`.
    #[default]
    Oci,
    /// `POST /` with `X-Amz-Target`.
    Ecr,
}

/// Who made an audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// An authenticated user (`admin`: an administrator, reported as `Root`).
    User {
        account: String,
        name: String,
        admin: bool,
        access_key: Option<String>,
    },
    /// No credentials.
    Anonymous,
    /// Credentials were given but did not authenticate: the key id they named, if it looks
    /// like one (anything else could be a mistyped secret, and is left out).
    Unknown { access_key: Option<String> },
}

impl Identity {
    pub(crate) fn of(c: &Caller) -> Identity {
        match &c.principal {
            Principal::Anonymous => Identity::Anonymous,
            Principal::User { account, name } => Identity::User {
                account: account.clone(),
                name: name.clone(),
                admin: c.admin,
                access_key: c.access_key.clone(),
            },
        }
    }

    /// A failed authentication that named `key` (kept only if it is an access key id).
    pub(crate) fn unknown(key: Option<&str>) -> Identity {
        Identity::Unknown {
            access_key: key
                .filter(|k| berth_iam::keys::is_access_key_id(k))
                .map(str::to_owned),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Identity::User {
                account,
                name,
                admin,
                access_key,
            } => {
                let mut v = json!({
                    "type": if *admin { "Root" } else { "IAMUser" },
                    "principalId": if *admin { account.clone() } else { format!("{account}:{name}") },
                    "arn": format!("arn:aws:iam::{account}:user/{name}"),
                    "accountId": account,
                    "userName": name,
                });
                if let Some(k) = access_key {
                    v["accessKeyId"] = Value::String(k.clone());
                }
                v
            }
            Identity::Anonymous => json!({ "type": "Anonymous", "principalId": "ANONYMOUS" }),
            Identity::Unknown { access_key } => {
                let mut v = json!({ "type": "Unknown" });
                if let Some(k) = access_key {
                    v["accessKeyId"] = Value::String(k.clone());
                }
                v
            }
        }
    }
}

/// What a handler knows about its request, attached to the response for the middleware.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditInfo {
    pub(crate) api: Api,
    /// The ECR action (`PutImage`), without the `ecr:` prefix.
    pub(crate) event_name: Option<&'static str>,
    /// Whether the request only reads (audited only when refused).
    pub(crate) read_only: bool,
    pub(crate) identity: Option<Identity>,
    /// Repository, reference, digest, upload id… — never a body, a secret or a query string.
    pub(crate) params: Map<String, Value>,
    /// The protocol error code and message the response carries.
    pub(crate) error: Option<(String, String)>,
    /// Not audited even if refused: the unauthenticated `GET /v2/` every client sends first to
    /// learn how to authenticate.
    pub(crate) challenge_only: bool,
}

impl AuditInfo {
    pub(crate) fn param(&mut self, key: &str, value: &str) {
        self.params
            .insert(key.to_owned(), Value::String(clip_str(value)));
    }

    /// Whether the request is audited, given its response status.
    pub(crate) fn audited(&self, status: u16) -> bool {
        if self.challenge_only {
            return false;
        }
        let refused = status == 401
            || status == 403
            || self
                .error
                .as_ref()
                .is_some_and(|(code, _)| DENIALS.contains(&code.as_str()));
        refused || !self.read_only
    }
}

/// What the middleware adds to an [`AuditInfo`].
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub(crate) time: SystemTime,
    pub(crate) region: &'a str,
    pub(crate) account: &'a str,
    pub(crate) source_ip: Option<std::net::IpAddr>,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) request_id: &'a str,
    pub(crate) http_method: &'a str,
    pub(crate) status: u16,
}

/// The audit event (one JSON object) of a request.
pub(crate) fn event(info: &AuditInfo, env: &Envelope<'_>) -> Value {
    let identity = info
        .identity
        .as_ref()
        .map_or_else(|| Identity::Anonymous.to_json(), Identity::to_json);
    let mut v = json!({
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": berth_iam::dates::iso8601(env.time),
        "eventSource": "ecr.amazonaws.com",
        "eventName": info.event_name.unwrap_or("Unknown"),
        "awsRegion": env.region,
        "sourceIPAddress": env.source_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        "userAgent": clip_str(env.user_agent.unwrap_or("")),
        "requestParameters": Value::Object(info.params.clone()),
        "responseElements": Value::Null,
        "additionalEventData": {
            "api": match info.api { Api::Oci => "oci", Api::Ecr => "ecr" },
            "httpMethod": env.http_method,
        },
        "requestID": env.request_id,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": info.read_only,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": env.account,
        "httpStatus": env.status,
    });
    if let Some((code, message)) = &info.error {
        v["errorCode"] = Value::String(code.clone());
        v["errorMessage"] = Value::String(message.chars().take(1024).collect());
    }
    v
}

fn clip_str(s: &str) -> String {
    s.chars().take(MAX_STRING).collect()
}

/// Keeps a JSON value small: strings clipped, lists cut, nesting bounded.
fn clip(v: Value, depth: usize) -> Value {
    match v {
        Value::String(s) => Value::String(clip_str(&s)),
        Value::Array(a) if depth > 0 => Value::Array(
            a.into_iter()
                .take(MAX_LIST)
                .map(|x| clip(x, depth - 1))
                .collect(),
        ),
        Value::Object(o) if depth > 0 => Value::Object(
            o.into_iter()
                .take(8)
                .map(|(k, x)| (clip_str(&k), clip(x, depth - 1)))
                .collect(),
        ),
        Value::Array(_) | Value::Object(_) => Value::Null,
        other => other,
    }
}

/// The members of an ECR request kept in `requestParameters`: names, references and ids — no
/// policy texts, manifests, layer data or tags. Everything else in the body is skipped without
/// being kept in memory.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcrParams {
    registry_id: Option<Value>,
    repository_name: Option<Value>,
    repository_names: Option<Value>,
    image_tag: Option<Value>,
    image_digest: Option<Value>,
    image_ids: Option<Value>,
    image_manifest_media_type: Option<Value>,
    upload_id: Option<Value>,
    layer_digests: Option<Value>,
    part_first_byte: Option<Value>,
    part_last_byte: Option<Value>,
    resource_arn: Option<Value>,
    tag_keys: Option<Value>,
    image_tag_mutability: Option<Value>,
    prefix: Option<Value>,
    force: Option<Value>,
}

/// `requestParameters` of an ECR call, from its body.
pub(crate) fn ecr_params(body: &[u8]) -> Map<String, Value> {
    let Ok(p) = serde_json::from_slice::<EcrParams>(body) else {
        return Map::new();
    };
    let fields = [
        ("registryId", p.registry_id),
        ("repositoryName", p.repository_name),
        ("repositoryNames", p.repository_names),
        ("imageTag", p.image_tag),
        ("imageDigest", p.image_digest),
        ("imageIds", p.image_ids),
        ("imageManifestMediaType", p.image_manifest_media_type),
        ("uploadId", p.upload_id),
        ("layerDigests", p.layer_digests),
        ("partFirstByte", p.part_first_byte),
        ("partLastByte", p.part_last_byte),
        ("resourceArn", p.resource_arn),
        ("tagKeys", p.tag_keys),
        ("imageTagMutability", p.image_tag_mutability),
        ("prefix", p.prefix),
        ("force", p.force),
    ];
    fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), clip(v, 3))))
        .collect()
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditDestination {
    /// Standard output (`-`), one line per event, after the `listening on` line.
    Stdout,
    /// A file, appended to (created 0600) and rotated by size.
    File(PathBuf),
}

/// How the audit log is written.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditConfig {
    /// Where.
    pub destination: AuditDestination,
    /// A file is renamed to `<file>.1` once the next line would take it past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`<file>.1` … `<file>.<keep>`; 0: the file is truncated instead).
    pub keep: usize,
}

impl AuditConfig {
    /// Writing to `destination` with the default rotation (100 MiB, 5 files kept).
    pub fn new(destination: AuditDestination) -> AuditConfig {
        AuditConfig {
            destination,
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

/// Failure to open the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file cannot be opened for appending.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The writing thread cannot be started.
    #[error("cannot start the audit log writer: {0}")]
    Thread(#[source] std::io::Error),
}

enum Msg {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// The audit log's sending side (cheap to clone); the writer thread ends when every clone is
/// gone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Sender>,
}

struct Sender {
    tx: SyncSender<Msg>,
    /// Seconds since the epoch of the last "events dropped" warning.
    last_warning: AtomicU64,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Opens the destination (a file is created 0600 if missing) and starts the writer.
    pub fn open(config: AuditConfig) -> Result<AuditLog, AuditError> {
        let sink = match &config.destination {
            AuditDestination::Stdout => Sink::Stdout,
            AuditDestination::File(path) => {
                let (file, size) = open_append(path).map_err(|source| AuditError::Open {
                    path: path.clone(),
                    source,
                })?;
                Sink::File(FileSink {
                    path: path.clone(),
                    file: Some(file),
                    size,
                    max_bytes: config.max_bytes.max(1),
                    keep: config.keep,
                })
            }
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("berth-audit".into())
            .spawn(move || write_loop(&rx, sink))
            .map_err(AuditError::Thread)?;
        Ok(AuditLog {
            inner: Arc::new(Sender {
                tx,
                last_warning: AtomicU64::new(0),
            }),
        })
    }

    /// Queues one event without waiting; a full queue drops it (counted and warned about).
    pub(crate) fn send(&self, event: &Value, metrics: Option<&Metrics>) {
        let mut line = event.to_string();
        line.push('\n');
        match self.inner.tx.try_send(Msg::Line(line)) {
            Ok(()) => {
                if let Some(m) = metrics {
                    m.audit_events.inc();
                }
            }
            Err(e) => {
                if let Some(m) = metrics {
                    m.audit_dropped.inc();
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let last = self.inner.last_warning.load(Ordering::Relaxed);
                if now >= last + 10
                    && self
                        .inner
                        .last_warning
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    let why = match e {
                        TrySendError::Full(_) => "its queue is full (the disk is too slow)",
                        TrySendError::Disconnected(_) => "its writer stopped",
                    };
                    tracing::warn!("audit events are being dropped: {why}");
                }
            }
        }
    }

    /// Waits (up to `timeout`) until every event queued so far is written. `false` on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (ack, done) = mpsc::channel();
        // Never a blocking send: with the queue full and the writer stuck on a disk, shutdown
        // must still end at the deadline.
        let mut msg = Msg::Flush(ack);
        loop {
            match self.inner.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

/// Opens `path` for appending, 0600, and returns its size.
fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok((file, meta.len()))
}

enum Sink {
    Stdout,
    File(FileSink),
}

struct FileSink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl FileSink {
    /// Appends one whole line (one `write` call on an `O_APPEND` file), rotating first when it
    /// would pass the size limit.
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            let (f, size) = open_append(&self.path)?;
            self.file = Some(f);
            self.size = size;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(line.as_bytes())?;
        self.size += len;
        Ok(())
    }

    /// `<file>.<keep-1>` → `<file>.<keep>` … `<file>` → `<file>.1`, then a new `<file>`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let ignore_missing = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if self.keep == 0 {
            ignore_missing(fs::remove_file(&self.path))?;
        } else {
            for n in (1..self.keep).rev() {
                ignore_missing(fs::rename(numbered(n), numbered(n + 1)))?;
            }
            ignore_missing(fs::rename(&self.path, numbered(1)))?;
        }
        let (f, size) = open_append(&self.path)?;
        self.file = Some(f);
        self.size = size;
        Ok(())
    }
}

fn write_loop(rx: &Receiver<Msg>, mut sink: Sink) {
    let mut last_error = None::<std::time::Instant>;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Flush(ack) => {
                let _ = ack.send(());
            }
            Msg::Line(line) => {
                let r = match &mut sink {
                    // Standard output may be a pipe its reader closed: errors are ignored.
                    Sink::Stdout => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                        Ok(())
                    }
                    Sink::File(f) => f.write_line(&line),
                };
                if let Err(e) = r {
                    if let Sink::File(f) = &mut sink {
                        f.file = None; // reopened for the next line
                    }
                    if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::error!(error = %e, "writing the audit log failed; events are lost");
                        last_error = Some(std::time::Instant::now());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_whole_lines_and_the_configured_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(AuditConfig {
            destination: AuditDestination::File(path.clone()),
            max_bytes: 100,
            keep: 2,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..20 {
            log.send(&json!({ "n": i, "pad": "x".repeat(20) }), None);
        }
        assert!(log.flush(Duration::from_secs(5)));
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let mut seen = Vec::new();
        for name in ["audit.log.2", "audit.log.1", "audit.log"] {
            let text = fs::read_to_string(dir.path().join(name)).unwrap_or_default();
            assert!(text.len() <= 100, "{name} is {} bytes", text.len());
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                seen.push(v["n"].as_i64().unwrap_or(-1));
            }
        }
        assert!(!dir.path().join("audit.log.3").exists());
        // The newest events, in order, each whole.
        assert!(!seen.is_empty());
        assert_eq!(seen.last(), Some(&19));
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    }

    #[test]
    fn ecr_parameters_keep_names_and_never_bodies() {
        let body = br#"{"repositoryName":"team/app","policyText":"{\"secret\":1}","layerPartBlob":"QUJD","uploadId":"u-1","imageIds":[{"imageTag":"v1"}]}"#;
        let p = ecr_params(body);
        assert_eq!(p["repositoryName"], "team/app");
        assert_eq!(p["uploadId"], "u-1");
        assert_eq!(p["imageIds"][0]["imageTag"], "v1");
        assert!(!p.contains_key("policyText") && !p.contains_key("layerPartBlob"));
        assert!(ecr_params(b"not json").is_empty());
    }

    #[test]
    fn what_is_audited() {
        let read = AuditInfo {
            read_only: true,
            ..AuditInfo::default()
        };
        assert!(!read.audited(200));
        assert!(read.audited(403));
        let denied = AuditInfo {
            read_only: true,
            error: Some(("AccessDeniedException".into(), "no".into())),
            ..AuditInfo::default()
        };
        assert!(denied.audited(400));
        assert!(AuditInfo::default().audited(201));
        assert!(ecr_changes_state("GetAuthorizationToken"));
        assert!(ecr_changes_state("BatchDeleteImage"));
        assert!(!ecr_changes_state("BatchGetImage"));
        assert!(!ecr_changes_state("DescribeRepositories"));
    }
}
