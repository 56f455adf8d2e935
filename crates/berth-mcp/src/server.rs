//! The tools.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_build::StoreImage;
use berth_client::ecr::AwsOptions;
use berth_ops::OpsError;
use berth_ops::build::{BuildOutcome, BuildRequest};
use berth_ops::inspect::ImageInfo;
use berth_ops::lifecycle::LifecyclePreview;
use berth_ops::lint::LintOutcome;
use berth_ops::release::ReleaseRequest;
use berth_ops::repo::{EnsureOutcome, RepoSettings, RepositoryInfo};
use berth_ops::scan::{ScanRequest, Severity};
use berth_ops::transfer::{CopyOutcome, CopyRequest, TagStrategy};
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Serialize;
use serde_json::json;

use crate::McpError;
use crate::params::*;
use crate::policy::{Policy, Refusal, target_of};
use crate::progress::{BuildNotifier, Notifier, TransferNotifier};

/// An image built by this server, by the names it was built under (for `finch_push_image`).
#[derive(Debug, Clone)]
struct LocalImage {
    digest: berth_oci::Digest,
    store: PathBuf,
}

/// The MCP server.
#[derive(Debug, Clone)]
pub struct BerthMcp {
    policy: Arc<Policy>,
    /// Registries reached over plain HTTP.
    insecure: Arc<Vec<String>>,
    /// Where the ECR API is when a repository is named without its registry.
    aws: Arc<AwsOptions>,
    /// The build store (default: berth's).
    store: Option<PathBuf>,
    /// Tags `finch_push_image` adds to the one it is given.
    extra_tags: Arc<Vec<TagStrategy>>,
    local: Arc<Mutex<HashMap<String, LocalImage>>>,
    tool_router: ToolRouter<BerthMcp>,
}

/// A failed call: `isError: true` with `{error: {kind, message, step, hint}}`.
struct Failure {
    kind: String,
    message: String,
    step: Option<String>,
    hint: Option<String>,
}

impl From<OpsError> for Failure {
    fn from(e: OpsError) -> Self {
        let hint = match e.kind() {
            "unauthorized" => Some(
                "log in first (berth login HOST, or AWS credentials for ECR and berth serve)"
                    .to_owned(),
            ),
            "not_found" => Some("check the name, tag or path".to_owned()),
            "dockerfile" => Some("fix the Dockerfile at the line given".to_owned()),
            _ => None,
        };
        Failure {
            kind: e.kind().to_owned(),
            message: e.to_string(),
            step: None,
            hint,
        }
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure {
            kind: "refused".to_owned(),
            message: r.message,
            step: None,
            hint: Some(r.hint),
        }
    }
}

impl Failure {
    fn at(mut self, step: &str) -> Self {
        self.step = Some(step.to_owned());
        self
    }

    fn result(self) -> CallToolResult {
        CallToolResult::structured_error(json!({
            "error": {
                "kind": self.kind,
                "message": self.message,
                "step": self.step,
                "hint": self.hint,
            }
        }))
    }
}

type ToolResult<T> = Result<T, Failure>;

fn done<T: Serialize>(r: ToolResult<T>) -> CallToolResult {
    match r {
        Ok(v) => match serde_json::to_value(&v) {
            Ok(value) => CallToolResult::structured(value),
            Err(e) => Failure {
                kind: "internal".into(),
                message: e.to_string(),
                step: None,
                hint: None,
            }
            .result(),
        },
        Err(f) => f.result(),
    }
}

/// Runs blocking work (a build, a release) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce(tokio::runtime::Handle) -> ToolResult<T> + Send + 'static,
) -> ToolResult<T> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || f(handle))
        .await
        .unwrap_or_else(|e| {
            Err(Failure {
                kind: "internal".into(),
                message: format!("the task failed: {e}"),
                step: None,
                hint: None,
            })
        })
}

impl BerthMcp {
    /// A server with `policy` (roots made canonical), reaching `insecure` registries over plain
    /// HTTP and the ECR API as `aws` says.
    pub fn new(
        policy: Policy,
        insecure: Vec<String>,
        aws: AwsOptions,
        store: Option<PathBuf>,
        extra_tags: Vec<TagStrategy>,
    ) -> Result<Self, McpError> {
        Ok(BerthMcp {
            policy: Arc::new(policy.with_canonical_roots()?),
            insecure: Arc::new(insecure),
            aws: Arc::new(aws),
            store,
            extra_tags: Arc::new(extra_tags),
            local: Arc::new(Mutex::new(HashMap::new())),
            tool_router: Self::tool_router(),
        })
    }

    fn aws_for(&self, region: Option<&String>) -> AwsOptions {
        let mut aws = (*self.aws).clone();
        if let Some(r) = region {
            aws.region = Some(r.clone());
        }
        aws
    }

    /// A path parameter, confined.
    fn path(&self, p: &str) -> ToolResult<PathBuf> {
        Ok(self.policy.confine(p)?)
    }

    /// A transport spec: local paths confined, registry references allow-listed (`write`:
    /// the repository allow-list applies too).
    fn spec(&self, spec: &str, write: bool) -> ToolResult<String> {
        for prefix in ["oci:", "oci-archive:", "docker-archive:"] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                let (path, name) = match rest.split_once(':') {
                    Some((p, n)) => (p, Some(n)),
                    None => (rest, None),
                };
                let confined = self.path(path)?;
                return Ok(match name {
                    Some(n) => format!("{prefix}{}:{n}", confined.display()),
                    None => format!("{prefix}{}", confined.display()),
                });
            }
        }
        if spec.starts_with('/') || spec.starts_with("./") || spec.starts_with("../") {
            return Ok(self.path(spec)?.display().to_string());
        }
        let reference = spec.strip_prefix("docker://").unwrap_or(spec);
        self.registry_ref(reference, write)?;
        Ok(spec.to_owned())
    }

    /// Registry allow-list for every access; repository allow-list for writes.
    fn registry_ref(&self, reference: &str, write: bool) -> ToolResult<()> {
        let (host, repo) = target_of(reference)?;
        self.policy
            .check_target(Some(&host), write.then_some(repo.as_str()))?;
        Ok(())
    }

    fn repository_target(
        &self,
        repository: &str,
        region: Option<&String>,
        write: bool,
    ) -> ToolResult<berth_ops::repo::Target> {
        let t = berth_ops::repo::locate(repository, &self.aws_for(region), &self.insecure)?;
        self.policy
            .check_target(t.host.as_deref(), write.then_some(t.name.as_str()))?;
        Ok(t)
    }

    fn remember(&self, tags: &[String], digest: &str, store: &str) {
        let Ok(d) = berth_oci::Digest::parse(digest) else {
            return;
        };
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        for t in tags {
            if let Ok(r) = berth_oci::ImageRef::parse(t) {
                local.insert(
                    r.to_string(),
                    LocalImage {
                        digest: d.clone(),
                        store: PathBuf::from(store),
                    },
                );
            }
        }
    }

    fn local_image(&self, name: &str) -> Option<LocalImage> {
        let key = berth_oci::ImageRef::parse(name).ok()?.to_string();
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }

    async fn run_build(
        &self,
        mut req: BuildRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult<BuildOutcome> {
        req.store = self.store.clone();
        req.insecure = (*self.insecure).clone();
        req.epoch = berth_ops::build::epoch_from_env()?;
        for n in &req.tags {
            if req.push || req.outputs.iter().any(|o| o.contains("registry")) {
                self.registry_ref(n, true)?;
            }
        }
        let prepared = berth_ops::build::prepare(&req)?;
        for n in prepared.registry_names() {
            self.registry_ref(&n, true)?;
        }
        let notifier = Notifier::new(ctx.peer.clone(), ctx.meta.get_progress_token());
        let tags = req.tags.clone();
        let outcome = blocking(move |rt| {
            let build = BuildNotifier(notifier.clone());
            let transfer: Arc<dyn berth_client::Progress> =
                Arc::new(TransferNotifier::new(notifier));
            Ok(berth_ops::build::build_image(
                &prepared,
                &rt,
                &build,
                Some(transfer),
            )?)
        })
        .await?;
        self.remember(&tags, &outcome.digest, &outcome.store);
        Ok(outcome)
    }

    async fn push_local(
        &self,
        local: LocalImage,
        destination: &str,
        strategies: &[TagStrategy],
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult<PushResult> {
        self.registry_ref(destination, true)?;
        let store = berth_build::Store::open(&local.store).map_err(OpsError::from)?;
        let src = StoreImage::new(store, Some(local.digest.clone()));
        let notifier = Notifier::new(ctx.peer.clone(), ctx.meta.get_progress_token());
        let transfer: Arc<dyn berth_client::Progress> = Arc::new(TransferNotifier::new(notifier));
        let (name, dst, insecure) = (
            format!("build {}", local.digest),
            format!("docker://{destination}"),
            (*self.insecure).clone(),
        );
        // The copy future is not `Send` (a higher-ranked closure inside the copy engine): it
        // runs on a blocking thread of its own.
        let mut copy = blocking(move |rt| {
            Ok(rt.block_on(berth_ops::transfer::copy_to(
                &src,
                &name,
                &dst,
                &insecure,
                Some(transfer),
            ))?)
        })
        .await?;
        copy.references = vec![destination.to_owned()];
        let mut extra = Vec::new();
        for s in strategies {
            match s {
                TagStrategy::Digest => extra.push(local.digest.hex()[..12].to_owned()),
                TagStrategy::Semver => {
                    let r = berth_ops::endpoint::parse_ref(destination)?;
                    let tag = r.tag().map(ToString::to_string).unwrap_or_default();
                    extra.extend(berth_ops::transfer::semver_tags(&tag)?);
                }
                TagStrategy::Git => extra.extend(berth_ops::transfer::git_tags(None)?),
                _ => {}
            }
        }
        if !extra.is_empty() {
            let written =
                berth_ops::transfer::add_tags(destination, &extra, &self.insecure).await?;
            copy.references.extend(written);
        }
        let r = berth_ops::endpoint::parse_ref(destination)?;
        let image_uri = format!("{}/{}@{}", r.registry(), r.repository(), local.digest);
        Ok(PushResult {
            status: "success".into(),
            message: format!("pushed {}", copy.references.join(", ")),
            image_uri,
            references: copy.references.clone(),
            copy,
        })
    }
}

#[tool_router]
impl BerthMcp {
    /// Build a container image from a Dockerfile (Finch-compatible). Names given in `tags` can
    /// then be pushed with finch_push_image; several platforms make one multi-platform image.
    #[tool(
        output_schema = schema_for_output::<FinchBuildResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn finch_build_container_image(
        &self,
        Parameters(p): Parameters<FinchBuildParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        done(async {
            self.policy.check_write("finch_build_container_image")?;
            let context = self.path(&p.context_path)?;
            let dockerfile = self.path(&p.dockerfile_path)?;
            let mut req = BuildRequest::new(context);
            req.dockerfile = Some(dockerfile);
            req.tags = p.tags.clone().unwrap_or_default();
            req.platforms = p.platforms.clone().unwrap_or_default();
            req.target = p.target.clone();
            req.no_cache = p.no_cache.unwrap_or(false);
            req.pull = p.pull.unwrap_or(false);
            for c in p.build_contexts.iter().flatten() {
                let confined = match c.split_once('=') {
                    Some((n, v)) if !v.contains("://") => format!("{n}={}", self.path(v)?.display()),
                    _ => c.clone(),
                };
                req.build_contexts.push(confined);
            }
            if let Some(o) = &p.outputs {
                let mut spec = Vec::new();
                for part in o.split(',') {
                    match part.split_once('=') {
                        Some(("dest", d)) => spec.push(format!("dest={}", self.path(d)?.display())),
                        _ => spec.push(part.to_owned()),
                    }
                }
                req.outputs.push(spec.join(","));
            }
            let mut notes = Vec::new();
            if p.cache_from.as_ref().is_some_and(|c| !c.is_empty()) {
                notes.push("cache_from: not used — berth's step cache is its local build store, reused across builds".to_owned());
            }
            if p.progress.is_some() || p.quiet.is_some() {
                notes.push("progress/quiet: progress is sent as MCP progress notifications".to_owned());
            }
            let build = self.run_build(req.clone(), &ctx).await?;
            Ok(FinchBuildResult {
                status: "success".into(),
                message: format!(
                    "built {} for {}",
                    build.digest,
                    build.images.iter().map(|i| i.platform.as_str()).collect::<Vec<_>>().join(", ")
                ),
                tags: req.tags,
                build,
                notes,
            })
        }
        .await)
    }

    /// Push an image built by finch_build_container_image to its registry (Finch-compatible):
    /// the tag given, every platform, plus the server's extra tags (by default the manifest
    /// digest's first 12 hex digits).
    #[tool(
        output_schema = schema_for_output::<PushResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn finch_push_image(
        &self,
        Parameters(p): Parameters<FinchPushParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        done(
            async {
                self.policy.check_write("finch_push_image")?;
                let local = self.local_image(&p.image).ok_or_else(|| Failure {
                    kind: "not_found".into(),
                    message: format!("no image named {} was built by this server", p.image),
                    step: None,
                    hint: Some(
                        "build it first with finch_build_container_image and tags=[…]".into(),
                    ),
                })?;
                let strategies = (*self.extra_tags).clone();
                self.push_local(local, &p.image, &strategies, &ctx).await
            }
            .await,
        )
    }

    /// Create an ECR repository if it does not exist (Finch-compatible: tag-immutable, scan on
    /// push off), and return its URI.
    #[tool(
        output_schema = schema_for_output::<RepoResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn finch_create_ecr_repo(
        &self,
        Parameters(p): Parameters<FinchCreateRepoParams>,
    ) -> CallToolResult {
        done(
            async {
                self.policy.check_write("finch_create_ecr_repo")?;
                let t = self.repository_target(&p.repository_name, p.region.as_ref(), true)?;
                let mut settings = RepoSettings::default();
                settings.tag_mutability = Some("IMMUTABLE".into());
                settings.scan_on_push = Some(false);
                let c = berth_ops::repo::client(&t.aws).await?;
                let existing = berth_ops::repo::describe_repository(&c, &t.name).await?;
                let outcome = match existing {
                    Some(r) => EnsureOutcome {
                        repository: r,
                        created: false,
                        differences: Vec::new(),
                        updated: Vec::new(),
                    },
                    None => {
                        berth_ops::repo::ensure_repository(&c, &t.name, &settings, false, false)
                            .await?
                    }
                };
                Ok(repo_result(outcome))
            }
            .await,
        )
    }

    /// Build an image from a Dockerfile for one or several platforms; optionally push it or
    /// write it to an OCI/docker archive.
    #[tool(
        output_schema = schema_for_output::<BuildOutcome>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn build(
        &self,
        Parameters(p): Parameters<BuildParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        done(
            async {
                self.policy.check_write("build")?;
                let mut req = BuildRequest::new(self.path(&p.context_path)?);
                if let Some(d) = &p.dockerfile_path {
                    req.dockerfile = Some(self.path(d)?);
                }
                req.tags = p.tags.clone();
                req.platforms = p.platforms.clone();
                req.target = p.target.clone();
                req.build_args = p
                    .build_args
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                for c in &p.build_contexts {
                    let confined = match c.split_once('=') {
                        Some((n, v)) if !v.contains("://") => {
                            format!("{n}={}", self.path(v)?.display())
                        }
                        _ => c.clone(),
                    };
                    req.build_contexts.push(confined);
                }
                req.labels = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                req.no_cache = p.no_cache;
                req.pull = p.pull;
                req.push = p.push;
                for o in &p.outputs {
                    let mut spec = Vec::new();
                    for part in o.split(',') {
                        match part.split_once('=') {
                            Some(("dest", d)) => {
                                spec.push(format!("dest={}", self.path(d)?.display()))
                            }
                            _ => spec.push(part.to_owned()),
                        }
                    }
                    req.outputs.push(spec.join(","));
                }
                self.run_build(req, &ctx).await
            }
            .await,
        )
    }

    /// Push a local image (built by this server, an OCI layout or an archive) to a registry,
    /// every platform, with extra tags by strategy.
    #[tool(
        output_schema = schema_for_output::<PushResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn push(
        &self,
        Parameters(p): Parameters<PushParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        done(
            async {
                self.policy.check_write("push")?;
                if let Some(local) = self.local_image(&p.source)
                    && p.platforms.is_empty()
                {
                    return self
                        .push_local(local, &p.destination, &p.tag_strategy, &ctx)
                        .await;
                }
                let src = self.spec(&p.source, false)?;
                self.registry_ref(&p.destination, true)?;
                let mut req = CopyRequest::new(src, p.destination.clone());
                req.src_bare = berth_ops::endpoint::Bare::LocalSource;
                req.tag_strategy = p.tag_strategy.clone();
                req.platforms = parse_platforms(&p.platforms)?;
                req.insecure = (*self.insecure).clone();
                let notifier = Notifier::new(ctx.peer.clone(), ctx.meta.get_progress_token());
                let copy = copy_blocking(req, notifier).await?;
                let r = berth_ops::endpoint::parse_ref(&p.destination)?;
                Ok(PushResult {
                    status: "success".into(),
                    message: format!("pushed {}", copy.references.join(", ")),
                    image_uri: format!("{}/{}@{}", r.registry(), r.repository(), copy.digest),
                    references: copy.references.clone(),
                    copy,
                })
            }
            .await,
        )
    }

    /// Copy an image (every platform, byte-exact) between registries, OCI layouts and archives.
    #[tool(
        output_schema = schema_for_output::<CopyOutcome>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn copy(
        &self,
        Parameters(p): Parameters<CopyParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        done(
            async {
                self.policy.check_write("copy")?;
                let src = self.spec(&p.source, false)?;
                let dst = self.spec(&p.destination, true)?;
                let mut req = CopyRequest::new(src, dst);
                req.tag_strategy = p.tag_strategy.clone();
                req.platforms = parse_platforms(&p.platforms)?;
                req.referrers = !p.no_referrers;
                req.insecure = (*self.insecure).clone();
                let notifier = Notifier::new(ctx.peer.clone(), ctx.meta.get_progress_token());
                copy_blocking(req, notifier).await
            }
            .await,
        )
    }

    /// Show an image: digest, media type, platforms with their digests and sizes, or one
    /// image's platform, config and layers.
    #[tool(
        output_schema = schema_for_output::<ImageInfo>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn inspect(&self, Parameters(p): Parameters<InspectParams>) -> CallToolResult {
        done(
            async {
                let spec = self.spec(&p.image, false)?;
                Ok(berth_ops::inspect::inspect(&spec, &self.insecure).await?)
            }
            .await,
        )
    }

    /// Scan an image for vulnerable packages: every layer read once (whiteouts honoured), OS
    /// packages (dpkg, apk) and language packages (Python, npm) matched against the offline
    /// OSV database; each finding with its fixed version, severity and the layer that
    /// introduced the package.
    #[tool(
        output_schema = schema_for_output::<ScanResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn scan(&self, Parameters(p): Parameters<ScanParams>) -> CallToolResult {
        done(
            async {
                let spec = self.spec(&p.image, false)?;
                let mut req = ScanRequest::new(&spec);
                req.insecure = (*self.insecure).clone();
                req.platforms = parse_platforms(&p.platforms)?;
                let mut wanted = Vec::new();
                for s in &p.severities {
                    wanted.push(s.parse::<Severity>().map_err(OpsError::usage)?);
                }
                let mut reports = berth_ops::scan::scan_image(&req).await?;
                berth_ops::scan::filter_findings(&mut reports, &wanted, p.ignore_unfixed);
                Ok(ScanResult { reports })
            }
            .await,
        )
    }

    /// Make sure an ECR repository exists with the settings given (tag mutability and
    /// exclusions, scan on push, encryption, lifecycle and repository policies, resource tags):
    /// creates it if missing; reports an existing one's differences and changes them only with
    /// apply_settings.
    #[tool(
        output_schema = schema_for_output::<RepoResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn ensure_repository(&self, Parameters(p): Parameters<EnsureParams>) -> CallToolResult {
        done(
            async {
                self.policy.check_write("ensure_repository")?;
                let t = self.repository_target(&p.repository, p.region.as_ref(), true)?;
                let c = berth_ops::repo::client(&t.aws).await?;
                let outcome = berth_ops::repo::ensure_repository(
                    &c,
                    &t.name,
                    &p.settings,
                    p.apply_settings,
                    false,
                )
                .await?;
                Ok(repo_result(outcome))
            }
            .await,
        )
    }

    /// List a repository's images (ECR DescribeImages), newest push first.
    #[tool(
        output_schema = schema_for_output::<ImagesResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn list_images(&self, Parameters(p): Parameters<ListImagesParams>) -> CallToolResult {
        done(
            async {
                let t = self.repository_target(&p.repository, p.region.as_ref(), false)?;
                let c = berth_ops::repo::client(&t.aws).await?;
                let images = berth_ops::repo::list_images(&c, &t.name).await?;
                Ok(ImagesResult {
                    repository: t.name,
                    images,
                })
            }
            .await,
        )
    }

    /// Describe images of a repository by tag or digest (ECR DescribeImages).
    #[tool(
        output_schema = schema_for_output::<ImagesResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn describe_image(
        &self,
        Parameters(p): Parameters<DescribeImageParams>,
    ) -> CallToolResult {
        done(
            async {
                let t = self.repository_target(&p.repository, p.region.as_ref(), false)?;
                let c = berth_ops::repo::client(&t.aws).await?;
                let images = berth_ops::repo::describe_images(&c, &t.name, &p.image_ids).await?;
                Ok(ImagesResult {
                    repository: t.name,
                    images,
                })
            }
            .await,
        )
    }

    /// Preview a lifecycle policy (the repository's own, or one given): which images it would
    /// expire and by which rule (ECR StartLifecyclePolicyPreview, then GetLifecyclePolicyPreview
    /// until it completes). Expires nothing; an image index's platform manifests and the
    /// referrers of a kept image are never listed on their own.
    #[tool(
        output_schema = schema_for_output::<LifecyclePreview>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn lifecycle_preview(
        &self,
        Parameters(p): Parameters<LifecyclePreviewParams>,
    ) -> CallToolResult {
        done(
            async {
                let t = self.repository_target(&p.repository, p.region.as_ref(), false)?;
                let policy = match p.policy {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(text)) => Some(text),
                    Some(doc) => Some(doc.to_string()),
                };
                let c = berth_ops::repo::client(&t.aws).await?;
                Ok(berth_ops::lifecycle::preview(
                    &c,
                    &t.name,
                    policy.as_deref(),
                    std::time::Duration::from_secs(300),
                )
                .await?)
            }
            .await,
        )
    }

    /// Lint a Dockerfile with hadolint's rules (same ids and messages; the project's
    /// .hadolint.yaml applies).
    #[tool(
        output_schema = schema_for_output::<LintOutcome>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn lint(&self, Parameters(p): Parameters<LintParams>) -> CallToolResult {
        done(
            async {
                let path = self.path(&p.dockerfile_path)?;
                Ok(berth_ops::lint::lint_dockerfile(
                    &path,
                    None,
                    p.threshold.as_deref(),
                )?)
            }
            .await,
        )
    }

    /// Release: lint, build every platform, make sure the repository exists with its
    /// settings, push one index under every tag, verify through DescribeImages, gate on the
    /// scan, and return the image URI by digest. dry_run plans without changing anything.
    #[tool(
        output_schema = schema_for_output::<ReleaseResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true)
    )]
    async fn release(
        &self,
        Parameters(p): Parameters<ReleaseParams>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        done(
            async {
                if !p.dry_run {
                    self.policy.check_write("release")?;
                }
                let t = self.repository_target(&p.repository, None, true)?;
                let mut req = ReleaseRequest::default();
                req.context = self.path(&p.context_path)?;
                if let Some(d) = &p.dockerfile_path {
                    req.dockerfile = Some(self.path(d)?);
                }
                req.repository = p.repository.clone();
                req.platforms = p.platforms.clone();
                req.version = p.version.clone();
                req.tag_strategy = p.tag_strategy.clone();
                req.settings = p.settings.clone();
                req.apply_settings = p.apply_settings;
                req.lint_threshold = p.lint_threshold.clone();
                req.scan_gate = p.scan_gate.clone();
                req.scan_timeout = std::time::Duration::from_secs(600);
                req.dry_run = p.dry_run;
                req.build_args = p
                    .build_args
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                req.epoch = berth_ops::build::epoch_from_env()?;
                req.store = self.store.clone();
                req.aws = t.aws.clone();
                req.insecure = (*self.insecure).clone();
                let notifier = Notifier::new(ctx.peer.clone(), ctx.meta.get_progress_token());
                blocking(move |rt| {
                    let build = BuildNotifier(notifier.clone());
                    let transfer: Arc<dyn berth_client::Progress> =
                        Arc::new(TransferNotifier::new(notifier.clone()));
                    let step = |s: &str| notifier.say(format!("step {s}"));
                    match berth_ops::release::release(&req, &rt, &build, Some(transfer), &step) {
                        Ok(report) => Ok(ReleaseResult {
                            status: "success".into(),
                            image_uri: report.image.clone(),
                            report,
                        }),
                        Err(f) => Err(Failure::from(*f.error).at(&f.step)),
                    }
                })
                .await
            }
            .await,
        )
    }
}

/// A copy on a blocking thread (its future is not `Send`), its bytes reported to `notifier`.
async fn copy_blocking(req: CopyRequest, notifier: Notifier) -> ToolResult<CopyOutcome> {
    blocking(move |rt| {
        let transfer: Arc<dyn berth_client::Progress> = Arc::new(TransferNotifier::new(notifier));
        Ok(rt.block_on(berth_ops::transfer::copy_image(&req, Some(transfer)))?)
    })
    .await
}

fn repo_result(outcome: EnsureOutcome) -> RepoResult {
    let r: &RepositoryInfo = &outcome.repository;
    let message = if outcome.created {
        format!("created {}", r.repository_uri)
    } else if outcome.differences.is_empty() {
        format!("{} exists with these settings", r.repository_uri)
    } else if !outcome.updated.is_empty() {
        format!(
            "{} exists; updated {}",
            r.repository_uri,
            outcome.updated.join(", ")
        )
    } else {
        format!(
            "{} exists and differs in {} (apply_settings changes it)",
            r.repository_uri,
            outcome
                .differences
                .iter()
                .map(|d| d.setting.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    RepoResult {
        status: "success".into(),
        message,
        repository_uri: r.repository_uri.clone(),
        outcome,
    }
}

fn parse_platforms(list: &[String]) -> ToolResult<Vec<berth_oci::Platform>> {
    list.iter()
        .map(|p| {
            berth_oci::Platform::parse(p)
                .map_err(|e| Failure::from(OpsError::usage(format!("platform {p:?}: {e}"))))
        })
        .collect()
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BerthMcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.instructions = Some(format!(
            "berth: build, push, copy and inspect container images, manage ECR repositories, lint \
             Dockerfiles and release. This server {}.",
            if self.policy.allow_writes {
                "allows tools with side effects"
            } else {
                "is read-only: tools with side effects are refused (start it with --allow-writes)"
            }
        ));
        info
    }
}

/// Serves MCP on standard input and output until the client closes it.
pub async fn serve_stdio(server: BerthMcp) -> Result<(), McpError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Transport(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Transport(e.to_string()))?;
    Ok(())
}

/// The streamable HTTP transport as an axum router serving `/mcp`, one server per session.
/// Requests must name a loopback host or one of `hosts` (`HOST` or `HOST:PORT`) in `Host`,
/// against DNS rebinding.
pub fn http_router(
    server: BerthMcp,
    cancel: tokio_util::sync::CancellationToken,
    hosts: &[String],
) -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let mut config = StreamableHttpServerConfig::default();
    config.cancellation_token = cancel;
    config.allowed_hosts.extend(hosts.iter().cloned());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new().nest_service("/mcp", service)
}
