//! Building an image from a Dockerfile and writing it out: buildx's options over `berth-build`,
//! outputs through the registry client.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use berth_build::{
    BuildOptions, Builder, Compression, HostSandbox, NamedContext, Progress as BuildProgress,
    Registries, SecretSource, Store, StoreImage,
};
use berth_client::registry::RegistryImage;
use berth_client::{ClientError, Progress};
use berth_oci::ImageRef;
use schemars::JsonSchema;
use serde::Serialize;

use crate::endpoint::{open_registry, parse_ref};
use crate::error::{OpsError, Result};
use crate::transfer::copy_to;

/// What to build, as `berth build`'s flags say it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The build context (a directory).
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text, when it does not come from a file (`-f -`).
    pub dockerfile_text: Option<String>,
    /// Names for the image (`REGISTRY/REPO:TAG`).
    pub tags: Vec<String>,
    /// Target platforms (`linux/amd64`); empty: this machine's.
    pub platforms: Vec<String>,
    /// The stage to build.
    pub target: Option<String>,
    /// `KEY=VALUE`, or `KEY` to take the value from the environment.
    pub build_args: Vec<String>,
    /// `NAME=DIR`, `NAME=docker-image://REF` or `NAME=oci-layout://DIR[:TAG]`.
    pub build_contexts: Vec<String>,
    /// `id=ID[,src=FILE|,env=VAR][,type=file|env]`.
    pub secrets: Vec<String>,
    /// `default|ID[=SOCKET]`.
    pub ssh: Vec<String>,
    /// Do not use the step cache.
    pub no_cache: bool,
    /// Fetch base images again.
    pub pull: bool,
    /// `KEY=VALUE` image labels.
    pub labels: Vec<String>,
    /// Push to every tag (`--push`).
    pub push: bool,
    /// `type=registry[,name=REF]`, `type=oci,dest=FILE[,tar=false]`, `type=docker,dest=FILE`.
    pub outputs: Vec<String>,
    /// The OCI runtime for RUN (default: runc, then crun).
    pub runtime: Option<String>,
    /// Layer compression.
    pub compression: Compression,
    /// Timestamps of the image (`SOURCE_DATE_EPOCH`).
    pub epoch: Option<i64>,
    /// The build store (default: `berth_build::default_root()`).
    pub store: Option<PathBuf>,
    /// Registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Push a CycloneDX SBOM of each platform image beside it, as a referrer (`--sbom`).
    pub sbom: bool,
    /// Push SLSA provenance of each platform image beside it, as a referrer (`--provenance`).
    pub provenance: Option<crate::attest::ProvenanceMode>,
    /// `--cache-to type=registry,ref=REF[,mode=min|max]` or `type=local,dest=DIR`.
    pub cache_to: Vec<String>,
    /// `--cache-from type=registry,ref=REF` or `type=local,src=DIR`.
    pub cache_from: Vec<String>,
}

impl BuildRequest {
    /// A build of `context` with every default.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildRequest {
            context: context.into(),
            ..BuildRequest::default()
        }
    }
}

/// One platform's image.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BuiltImage {
    /// `linux/amd64`.
    pub platform: String,
    /// The image manifest's digest.
    pub digest: String,
    /// The config blob's digest.
    pub config: String,
    /// Manifest + config + layers, in bytes.
    pub size: u64,
}

/// What a build made and where it went.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutcome {
    /// The image manifest (one platform) or index (several).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Each platform's image.
    pub images: Vec<BuiltImage>,
    /// Steps run.
    pub steps_run: usize,
    /// Steps answered from the cache.
    pub steps_cached: usize,
    /// Build time (outputs not included).
    pub seconds: f64,
    /// Registry references pushed, each as `REF@DIGEST`.
    pub pushed: Vec<String>,
    /// Files and layouts written (`oci-archive:…`, `oci:…`, `docker-archive:…`).
    pub written: Vec<String>,
    /// The build store the image stays in.
    pub store: String,
    /// Build caches exported (`--cache-to`), each as `NAME@DIGEST (N steps)`.
    pub cache_exported: Vec<String>,
    /// What the user should know: a cache source that could not be read, and so on.
    pub warnings: Vec<String>,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Registry(Vec<String>),
    Oci { dest: PathBuf, tar: bool },
    Docker { dest: PathBuf },
}

fn parse_output(spec: &str, tags: &[String]) -> Result<Output> {
    parse_output_with(spec, tags).map(|(o, _)| o)
}

/// An output and its `rewrite-timestamp` attribute, when given.
fn parse_output_with(spec: &str, tags: &[String]) -> Result<(Output, Option<bool>)> {
    let mut kv = BTreeMap::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            OpsError::usage(format!("--output {spec:?}: expected KEY=VALUE pairs"))
        })?;
        kv.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let rewrite = match kv.get("rewrite-timestamp").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(OpsError::usage(format!(
                "--output {spec:?}: rewrite-timestamp must be true or false, not {other:?}"
            )));
        }
    };
    parse_output_kind(&kv, tags).map(|o| (o, rewrite))
}

fn parse_output_kind(kv: &BTreeMap<String, String>, tags: &[String]) -> Result<Output> {
    let kind = kv.get("type").map(String::as_str).unwrap_or("");
    let dest = kv.get("dest").map(PathBuf::from);
    match kind {
        "registry" | "image" => {
            let names: Vec<String> = match kv.get("name") {
                Some(n) => n.split(',').map(str::to_owned).collect(),
                None => tags.to_vec(),
            };
            if names.is_empty() {
                return Err(OpsError::usage(
                    "--output type=registry needs a name: give -t REF or name=REF",
                ));
            }
            Ok(Output::Registry(names))
        }
        "oci" => Ok(Output::Oci {
            dest: dest.ok_or_else(|| OpsError::usage("--output type=oci needs dest=PATH"))?,
            tar: kv.get("tar").map(String::as_str) != Some("false"),
        }),
        "docker" => Ok(Output::Docker {
            dest: dest.ok_or_else(|| OpsError::usage("--output type=docker needs dest=FILE"))?,
        }),
        other => Err(OpsError::usage(format!(
            "--output type={other:?}: expected registry, oci or docker"
        ))),
    }
}

fn parse_kv(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| OpsError::usage(format!("{what} {s:?}: expected KEY=VALUE")))
}

/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as buildx reads it.
fn parse_secret(spec: &str) -> Result<(String, SecretSource)> {
    let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            OpsError::usage(format!(
                "--secret {spec:?}: invalid field {field:?}: must be a key=value pair"
            ))
        })?;
        match k.to_ascii_lowercase().as_str() {
            "type" if v == "file" || v == "env" => typ = Some(v.to_owned()),
            "type" => {
                return Err(OpsError::usage(format!(
                    "--secret {spec:?}: unsupported secret type {v:?} (file or env)"
                )));
            }
            "id" => id = Some(v.to_owned()),
            "source" | "src" => src = Some(v.to_owned()),
            "env" => env = Some(v.to_owned()),
            other => {
                return Err(OpsError::usage(format!(
                    "--secret {spec:?}: unexpected key {other:?} (id, src, env, type)"
                )));
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| OpsError::usage(format!("--secret {spec:?}: id=… is required")))?;
    if typ.as_deref() == Some("env") && env.is_none() {
        env = src.take();
    }
    let source = match (src, env) {
        (Some(_), Some(_)) => {
            return Err(OpsError::usage(format!(
                "--secret {spec:?}: give src or env, not both"
            )));
        }
        (Some(f), None) => SecretSource::File(PathBuf::from(f)),
        (None, Some(e)) => SecretSource::Env(e),
        (None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    if let SecretSource::File(f) = &source
        && !f.is_file()
    {
        return Err(OpsError::usage(format!(
            "--secret {spec:?}: {}: no such file",
            f.display()
        )));
    }
    Ok((id, source))
}

/// Where an `--ssh` id's keys come from.
enum SshSource {
    /// An agent's socket.
    Socket(PathBuf),
    /// Key files, served by an agent berth starts.
    Keys(Vec<PathBuf>),
}

/// `--ssh default|ID[=SOCKET|=KEYFILE[,KEYFILE…]]`.
fn parse_ssh(spec: &str) -> Result<(String, SshSource)> {
    let (id, paths) = match spec.split_once('=') {
        Some((id, p)) => (
            id.to_owned(),
            p.split(',').map(PathBuf::from).collect::<Vec<_>>(),
        ),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                OpsError::usage(format!(
                    "--ssh {spec}: SSH_AUTH_SOCK is not set (start an agent, or give {spec}=SOCKET or {spec}=KEYFILE)"
                ))
            })?;
            (spec.to_owned(), vec![PathBuf::from(sock)])
        }
    };
    use std::os::unix::fs::FileTypeExt;
    let mut keys = Vec::new();
    for path in &paths {
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_socket() && paths.len() == 1 => {
                return Ok((id, SshSource::Socket(path.clone())));
            }
            Ok(m) if m.is_file() => keys.push(path.clone()),
            Ok(_) => {
                return Err(OpsError::usage(format!(
                    "--ssh {spec}: {} is neither an agent socket nor a key file",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(OpsError::usage(format!(
                    "--ssh {spec}: {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Ok((id, SshSource::Keys(keys)))
}

fn named_context(spec: &str) -> Result<(String, NamedContext)> {
    let (name, value) = parse_kv(spec, "--build-context")?;
    let ctx = if let Some(r) = value.strip_prefix("docker-image://") {
        NamedContext::Image(r.to_owned())
    } else if let Some(rest) = value.strip_prefix("oci-layout://") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((d, t)) if !t.contains('/') => (d, Some(t.to_owned())),
            _ => (rest, None),
        };
        NamedContext::OciLayout {
            dir: PathBuf::from(dir),
            tag,
        }
    } else if value.contains("://") {
        return Err(OpsError::usage(format!(
            "--build-context {spec:?}: expected a directory, docker-image://REF or oci-layout://DIR"
        )));
    } else {
        NamedContext::Dir(PathBuf::from(value))
    };
    Ok((name, ctx))
}

/// The registries of a build: berth's credentials for each.
#[derive(Debug)]
struct OpsRegistries {
    insecure: Vec<String>,
}

impl Registries for OpsRegistries {
    fn open(&self, r: &ImageRef) -> std::result::Result<RegistryImage, ClientError> {
        open_registry(r, &self.insecure).map_err(|e| match e {
            OpsError::Client(c) => c,
            other => ClientError::NotFound(other.to_string()),
        })
    }
}

/// The SBOM and provenance documents of a build's platform images (what `--sbom` and
/// `--provenance` ask for), each with the platform manifest it describes.
async fn attestations(
    prepared: &PreparedBuild,
    src: &StoreImage,
    result: &berth_build::BuildResult,
    name: &str,
    (started, finished): (&str, &str),
) -> Result<Vec<crate::attest::Attachment>> {
    use crate::attest::{Attachment, BuildFacts, Subject};
    let req = &prepared.req;
    let mut docs = Vec::new();
    let subject = |i: &berth_build::PlatformImage| Subject {
        media_type: berth_oci::media::OCI_MANIFEST.to_owned(),
        digest: i.manifest.to_string(),
        size: i.manifest_size,
    };
    if req.sbom {
        // The scanner's inventory of the image just built, read from the build store.
        let mut scan = crate::scan::ScanRequest::new(&format!("build {}", result.root));
        scan.inventory_only = true;
        for r in crate::scan::scan_source(src, &scan).await? {
            docs.push(Attachment {
                subject: Subject {
                    media_type: r.media_type.clone(),
                    digest: r.digest.clone(),
                    size: r.size,
                },
                artifact_type: crate::attest::SBOM_ARTIFACT_TYPE,
                document: crate::scan_format::cyclonedx(&r),
                layer_annotations: None,
            });
        }
    }
    if let Some(mode) = req.provenance {
        let opts = &prepared.opts;
        let text = match &opts.dockerfile_text {
            Some(t) => t.clone().into_bytes(),
            None => std::fs::read(&opts.dockerfile).map_err(|source| OpsError::Io {
                path: opts.dockerfile.clone(),
                source,
            })?,
        };
        let dockerfile = opts
            .dockerfile
            .strip_prefix(&opts.context)
            .unwrap_or(&opts.dockerfile)
            .display()
            .to_string();
        let source = git_source(&opts.context);
        for i in &result.images {
            let facts = BuildFacts {
                name: name.to_owned(),
                digest: i.manifest.to_string(),
                platform: i.platform.to_string(),
                dockerfile_sha256: berth_oci::Digest::sha256(&text).hex().to_owned(),
                dockerfile: dockerfile.clone(),
                target: opts.target.clone(),
                build_args: opts
                    .build_args
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                labels: opts
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                bases: i
                    .bases
                    .iter()
                    .map(|(r, d)| (r.clone(), d.to_string()))
                    .collect(),
                source: source.clone(),
                started: started.to_owned(),
                finished: finished.to_owned(),
            };
            docs.push(Attachment {
                subject: subject(i),
                artifact_type: crate::attest::IN_TOTO_ARTIFACT_TYPE,
                document: crate::attest::provenance(&facts, mode),
                layer_annotations: Some(
                    serde_json::json!({"in-toto.io/predicate-type": crate::attest::SLSA_PROVENANCE_V1}),
                ),
            });
        }
    }
    Ok(docs)
}

/// The context's git origin (or its path) and HEAD commit, when it is a work tree.
fn git_source(dir: &std::path::Path) -> Option<(String, String)> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let origin = git(&["config", "--get", "remote.origin.url"])
        .unwrap_or_else(|| format!("git+file://{}", dir.display()));
    Some((origin, commit))
}

/// A request checked and turned into the builder's options, before anything runs.
#[derive(Debug)]
pub struct PreparedBuild {
    opts: BuildOptions,
    outputs: Vec<Output>,
    req: BuildRequest,
    /// The agents serving `--ssh` key files, for as long as the build may use them.
    _agents: Vec<crate::ssh_agent::SshAgent>,
    cache_to: Vec<crate::build_cache::CacheSpec>,
    cache_from: Vec<crate::build_cache::CacheSpec>,
}

impl PreparedBuild {
    /// The registry references the build will push to.
    pub fn registry_names(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Registry(n) => Some(n.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// Checks a request: the context, every flag, every output. Nothing runs.
pub fn prepare(req: &BuildRequest) -> Result<PreparedBuild> {
    if !req.context.is_dir() {
        return Err(OpsError::usage(format!(
            "build context {}: not a directory",
            req.context.display()
        )));
    }
    let mut opts = BuildOptions::new(&req.context);
    if let Some(f) = &req.dockerfile {
        opts.dockerfile = f.clone();
    }
    if let Some(text) = &req.dockerfile_text {
        if req.dockerfile.is_none() {
            opts.dockerfile = req.context.join("Dockerfile");
        }
        opts.dockerfile_text = Some(text.clone());
    } else if !opts.dockerfile.is_file() {
        return Err(OpsError::usage(format!(
            "Dockerfile {}: no such file",
            opts.dockerfile.display()
        )));
    }
    for p in &req.platforms {
        let platform =
            berth_build::platform::parse(p).map_err(|e| OpsError::usage(e.to_string()))?;
        opts.platforms.push(platform);
    }
    opts.target = req.target.clone();
    for a in &req.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                opts.build_args.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    opts.build_args.insert(a.clone(), v);
                }
            }
        }
    }
    for c in &req.build_contexts {
        let (name, ctx) = named_context(c)?;
        opts.contexts.insert(name, ctx);
    }
    for spec in &req.secrets {
        let (id, source) = parse_secret(spec)?;
        opts.secrets.insert(id, source);
    }
    let mut agents = Vec::new();
    for spec in &req.ssh {
        let socket = match parse_ssh(spec)? {
            (id, SshSource::Socket(s)) => (id, s),
            (id, SshSource::Keys(keys)) => {
                let agent = crate::ssh_agent::SshAgent::start(spec, &keys)?;
                let s = agent.socket().to_path_buf();
                agents.push(agent);
                (id, s)
            }
        };
        opts.ssh.insert(socket.0, socket.1);
    }
    for l in &req.labels {
        let (k, v) = parse_kv(l, "--label")?;
        opts.labels.insert(k, v);
    }
    opts.no_cache = req.no_cache;
    opts.pull = req.pull;
    opts.layers.compression = req.compression;
    opts.layers.epoch = req.epoch;
    let mut outputs = Vec::new();
    if req.push {
        outputs.push(parse_output("type=registry", &req.tags)?);
    }
    let mut rewrites = BTreeSet::new();
    for o in &req.outputs {
        let (output, rewrite) = parse_output_with(o, &req.tags)?;
        outputs.push(output);
        rewrites.extend(rewrite);
    }
    // The layers are made once for every output, so the outputs must agree.
    match rewrites.len() {
        0 => {}
        1 => opts.layers.keep_mtimes = rewrites.contains(&false),
        _ => {
            return Err(OpsError::usage(
                "--output: rewrite-timestamp=true and rewrite-timestamp=false on different outputs (the layers are shared; give one value)",
            ));
        }
    }
    for t in &req.tags {
        parse_ref(t).map_err(|e| OpsError::usage(format!("-t {e}")))?;
    }
    for o in &outputs {
        if let Output::Registry(names) = o {
            for n in names {
                parse_ref(n)?;
            }
        }
    }
    if (req.sbom || req.provenance.is_some())
        && !outputs.iter().any(|o| matches!(o, Output::Registry(_)))
    {
        return Err(OpsError::usage(
            "--sbom and --provenance are pushed beside the image as referrers: they need a \
             registry output (--push, or --output type=registry)",
        ));
    }
    if opts.platforms.len() > 1 && outputs.iter().any(|o| matches!(o, Output::Docker { .. })) {
        return Err(OpsError::usage(
            "--output type=docker holds one platform; use type=oci or type=registry for several",
        ));
    }
    let cache_to = req
        .cache_to
        .iter()
        .map(|c| crate::build_cache::parse(c, true))
        .collect::<Result<Vec<_>>>()?;
    let cache_from = req
        .cache_from
        .iter()
        .map(|c| crate::build_cache::parse(c, false))
        .collect::<Result<Vec<_>>>()?;
    Ok(PreparedBuild {
        opts,
        outputs,
        req: req.clone(),
        _agents: agents,
        cache_to,
        cache_from,
    })
}

/// `SOURCE_DATE_EPOCH` from the environment, if set.
pub fn epoch_from_env() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(e) => e
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| OpsError::usage(format!("SOURCE_DATE_EPOCH={e:?}: not a number"))),
        Err(_) => Ok(None),
    }
}

/// Builds and writes the outputs. Blocking: run it off the async threads; `rt` runs the
/// registry transfers. `transfer` sees the bytes of every output written.
pub fn build_image(
    prepared: &PreparedBuild,
    rt: &tokio::runtime::Handle,
    progress: &dyn BuildProgress,
    transfer: Option<Arc<dyn Progress>>,
) -> Result<BuildOutcome> {
    let req = &prepared.req;
    let store_root = req.store.clone().unwrap_or_else(berth_build::default_root);
    let store = Store::open(&store_root)?;
    let sandbox = Arc::new(HostSandbox::new(
        req.runtime.as_deref(),
        store.runtime_root(),
    )?);
    let builder = Builder::new(
        store.clone(),
        sandbox,
        Arc::new(OpsRegistries {
            insecure: req.insecure.clone(),
        }),
        rt.clone(),
    )?;
    // Cache sources: their step lists now, their layers when a step uses them. One that cannot
    // be read is a warning: the build goes on without it.
    let mut warnings = Vec::new();
    let mut opts = prepared.opts.clone();
    for spec in &prepared.cache_from {
        match rt.block_on(crate::build_cache::load(spec, &req.insecure)) {
            Ok(c) => {
                warnings.extend(crate::build_cache::restore_mounts(&store, &c, rt));
                opts.cache_from.push(c);
            }
            Err(e) => warnings.push(format!("cache source {} not used: {e}", spec.name)),
        }
    }
    let started = std::time::Instant::now();
    let started_at = crate::scan_format::rfc3339_now();
    let result = builder.build(&opts, progress)?;
    let finished_at = crate::scan_format::rfc3339_now();
    let seconds = started.elapsed().as_secs_f64();
    let src = StoreImage::new(store.clone(), Some(result.root.clone()));
    let source_name = format!("build {}", result.root);
    let mut pushed = Vec::new();
    let mut written = Vec::new();
    for o in &prepared.outputs {
        match o {
            Output::Registry(names) => {
                for n in names {
                    rt.block_on(copy_to(
                        &src,
                        &source_name,
                        &format!("docker://{n}"),
                        &req.insecure,
                        transfer.clone(),
                    ))
                    .map_err(|e| e.context(format!("pushing {n}")))?;
                    pushed.push(format!("{n}@{}", result.root));
                }
                if req.sbom || req.provenance.is_some() {
                    let docs = rt.block_on(attestations(
                        prepared,
                        &src,
                        &result,
                        names.first().map_or("", String::as_str),
                        (&started_at, &finished_at),
                    ))?;
                    for n in names {
                        rt.block_on(crate::attest::attach(n, &req.insecure, &docs))
                            .map_err(|e| e.context(format!("attaching to {n}")))?;
                    }
                }
            }
            Output::Oci { dest, tar } => {
                let tag = req
                    .tags
                    .first()
                    .and_then(|t| ImageRef::parse(t).ok())
                    .and_then(|r| r.tag().map(ToString::to_string));
                let d = dest.display();
                let spec = match (tar, &tag) {
                    (true, Some(t)) => format!("oci-archive:{d}:{t}"),
                    (true, None) => format!("oci-archive:{d}"),
                    (false, Some(t)) => format!("oci:{d}:{t}"),
                    (false, None) => format!("oci:{d}"),
                };
                rt.block_on(copy_to(
                    &src,
                    &source_name,
                    &spec,
                    &req.insecure,
                    transfer.clone(),
                ))?;
                written.push(spec);
            }
            Output::Docker { dest } => {
                let spec = match req.tags.first() {
                    Some(t) => format!("docker-archive:{}:{t}", dest.display()),
                    None => format!("docker-archive:{}", dest.display()),
                };
                rt.block_on(copy_to(
                    &src,
                    &source_name,
                    &spec,
                    &req.insecure,
                    transfer.clone(),
                ))?;
                written.push(spec);
            }
        }
    }
    let mut cache_exported = Vec::new();
    for spec in &prepared.cache_to {
        let (digest, steps) = rt
            .block_on(crate::build_cache::export(
                spec,
                &store,
                &result,
                &req.insecure,
            ))
            .map_err(|e| e.context(format!("exporting the build cache to {}", spec.name)))?;
        cache_exported.push(format!("{}@{digest} ({steps} steps)", spec.name));
    }
    Ok(BuildOutcome {
        digest: result.root.to_string(),
        media_type: result.media_type.clone(),
        images: result
            .images
            .iter()
            .map(|i| BuiltImage {
                platform: i.platform.to_string(),
                digest: i.manifest.to_string(),
                config: i.config.to_string(),
                size: i.size,
            })
            .collect(),
        steps_run: result.steps_run,
        steps_cached: result.steps_cached,
        seconds,
        pushed,
        written,
        store: store.root().display().to_string(),
        cache_exported,
        warnings,
    })
}
