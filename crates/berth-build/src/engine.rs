//! The solver: a Dockerfile, build arguments and platforms in; one image per platform (and an
//! index over them) out, in the store.
//!
//! Each platform is built on its own thread. A stage starts from its base (scratch, an
//! earlier stage's final state, or an image pulled into the store) and applies its
//! instructions in order. Config-only instructions edit the image config; filesystem
//! instructions (RUN, COPY, ADD, WORKDIR) are cached steps: key → layer. A miss mounts an
//! overlay of the state's layer snapshots with a fresh upper directory, carries the step out
//! (a container for RUN, file operations for the others), unmounts, and turns the upper
//! directory into a layer — and, renamed, into that layer's snapshot.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use berth_client::image::{ImageSource, RawManifest};
use berth_client::registry::RegistryImage;
use berth_client::{ClientError, CopyOptions};
use berth_dockerfile::ignore::DockerIgnore;
use berth_dockerfile::{
    Base, CmdLine, Command, Dockerfile, GlobalScope, Healthcheck, Instruction, Keyword, MountType,
    Network, Sharing, Source, StageGraph, StageScope, Vars,
};
use berth_oci::{Digest, ImageRef, Manifest, ManifestKind, Platform};
use serde_json::json;

use crate::bundle::{ExtraMount, RunConfig, mount_points, write_bundle};
use crate::cache::{self, CacheRecord, StepFacts, StepMemory};
use crate::config::{ImageConfig, rfc3339};
use crate::context::{Entry, Match, Tree, digest_entries};
use crate::error::{BuildError, io};
use crate::fetch;
use crate::fileop::{Chmod, CopySpec, copy_into};
use crate::git;
use crate::layer::{LayerBlob, LayerOptions, unpack_layer, write_layer};
use crate::mounts::{self, RunMount, SecretSource};
use crate::platform;
use crate::sandbox::{Exit, OverlayMount, Sandbox};
use crate::store::{Store, StoreImage, TempDir};
use crate::users;

/// Opens registry repositories (with the caller's credentials and insecure-registry list).
pub trait Registries: Send + Sync + std::fmt::Debug {
    /// A registry repository as an image source/sink.
    fn open(&self, r: &ImageRef) -> Result<RegistryImage, ClientError>;
}

/// A named build context (`--build-context NAME=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamedContext {
    /// A local directory.
    Dir(PathBuf),
    /// An image in a registry (`docker-image://REF`).
    Image(String),
    /// An image in an OCI layout (`oci-layout://DIR[:TAG]`).
    OciLayout { dir: PathBuf, tag: Option<String> },
}

/// What to build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile's path (its name also picks `<name>.dockerignore`).
    pub dockerfile: PathBuf,
    /// The Dockerfile's text when it does not come from `dockerfile` (`-f -`).
    pub dockerfile_text: Option<String>,
    /// Platforms (empty: the host's).
    pub platforms: Vec<Platform>,
    /// `--target`.
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--build-context`.
    pub contexts: BTreeMap<String, NamedContext>,
    /// `--label` (added to the final stage's config).
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: resolve base images again even when the store has them.
    pub pull: bool,
    /// Layer compression and reproducibility.
    pub layers: LayerOptions,
    /// `--secret`: what `RUN --mount=type=secret,id=ID` gets.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh`: the agent socket `RUN --mount=type=ssh,id=ID` gets.
    pub ssh: BTreeMap<String, PathBuf>,
}

impl BuildOptions {
    /// Options for the context `context` with `Dockerfile` inside it.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        let context = context.into();
        BuildOptions {
            dockerfile: context.join("Dockerfile"),
            context,
            dockerfile_text: None,
            platforms: Vec::new(),
            target: None,
            build_args: BTreeMap::new(),
            contexts: BTreeMap::new(),
            labels: BTreeMap::new(),
            no_cache: false,
            pull: false,
            layers: LayerOptions::default(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
        }
    }
}

/// What a build step reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A step starts: `id` numbers it in this build.
    Step {
        id: usize,
        platform: String,
        /// `stage-name 2/5` style position.
        position: String,
        /// The instruction as written.
        text: String,
    },
    /// The step was answered from the cache.
    Cached { id: usize },
    /// The step must run; why the cache could not answer.
    Miss { id: usize, reason: String },
    /// A line of a RUN's output.
    Output { id: usize, line: String },
    /// The step finished.
    Done { id: usize, seconds: f64 },
    /// A base image is being resolved / fetched.
    Pull { reference: String, platform: String },
}

/// Where build events go.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, e: Event);
}

/// One platform's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    pub platform: Platform,
    /// The image manifest.
    pub manifest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config blob.
    pub config: Digest,
    /// Config + layers + manifest, in bytes.
    pub size: u64,
}

/// What a build produced (all of it in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// The image manifest (one platform) or the index (several).
    pub root: Digest,
    /// Its media type.
    pub media_type: String,
    /// Each platform's image.
    pub images: Vec<PlatformImage>,
    /// Steps run / answered from the cache.
    pub steps_run: usize,
    pub steps_cached: usize,
}

/// The builder.
#[derive(Debug)]
pub struct Builder {
    store: Arc<Store>,
    sandbox: Arc<dyn Sandbox>,
    registries: Arc<dyn Registries>,
    rt: tokio::runtime::Handle,
    /// An empty directory (the lower of a scratch rootfs).
    empty: PathBuf,
}

/// A stage's state between instructions.
#[derive(Debug, Clone)]
struct State {
    layers: Vec<LayerBlob>,
    config: ImageConfig,
    /// The cache chain key of the filesystem.
    key: Digest,
    /// The platform the stage's binaries are for.
    platform: Platform,
    /// When the filesystem last changed (a step's first run, or the base image's creation):
    /// config-only history entries get this time, so a rebuild from cache is byte-identical.
    created: String,
}

/// Counters and numbering shared by a build's threads.
#[derive(Debug, Default)]
struct Counters {
    next_id: usize,
    run: usize,
    cached: usize,
}

struct Ctx<'a> {
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    context: &'a Tree,
    progress: &'a dyn Progress,
    counters: &'a Mutex<Counters>,
    /// The target platform (TARGET* ARGs).
    target: Platform,
    dockerfile_id: String,
}

/// The instruction being carried out, and where it is.
struct Step<'a> {
    /// Stage index.
    si: usize,
    /// Instruction index in the Dockerfile (`usize::MAX` for an ONBUILD trigger).
    idx: usize,
    /// Progress id.
    id: usize,
    ins: &'a Instruction,
    /// `stage 2/5`.
    position: &'a str,
    started: Instant,
    /// `COPY --link` / `ADD --link`: the step works on an empty filesystem and its layer is
    /// keyed without its parent, so it is reused when earlier layers change.
    linked: bool,
}

const MAX_CONFIG: u64 = 8 * 1024 * 1024;

impl Builder {
    /// A builder over a store, a sandbox and a way to reach registries. `rt` runs the
    /// registry transfers.
    pub fn new(
        store: Arc<Store>,
        sandbox: Arc<dyn Sandbox>,
        registries: Arc<dyn Registries>,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, BuildError> {
        let empty = store.root().join("empty");
        fs::create_dir_all(&empty).map_err(io(&empty))?;
        Ok(Builder {
            store,
            sandbox,
            registries,
            rt,
            empty,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Builds every platform (concurrently, up to the number of cores) and assembles the result.
    pub fn build(
        &self,
        opts: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuildResult, BuildError> {
        let text = match &opts.dockerfile_text {
            Some(t) => t.clone(),
            None => fs::read_to_string(&opts.dockerfile).map_err(io(&opts.dockerfile))?,
        };
        let df = berth_dockerfile::parse(&text).map_err(|source| BuildError::Parse {
            file: opts.dockerfile.display().to_string(),
            source,
        })?;
        let ignore = berth_dockerfile::ignore::load(&opts.context, &opts.dockerfile)?;
        let context = Tree::context(&opts.context, ignore)?;
        let mut platforms = opts.platforms.clone();
        if platforms.is_empty() {
            platforms.push(Platform::host());
        }
        platforms.dedup();
        let counters = Mutex::new(Counters::default());
        let dockerfile_id = fs::canonicalize(&opts.dockerfile)
            .unwrap_or_else(|_| opts.dockerfile.clone())
            .display()
            .to_string();
        let parallel = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        let mut results: Vec<Option<Result<PlatformImage, BuildError>>> =
            (0..platforms.len()).map(|_| None).collect();
        for chunk in platforms.chunks(parallel).enumerate() {
            let (ci, chunk) = chunk;
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|p| {
                        let ctx = Ctx {
                            opts,
                            df: &df,
                            context: &context,
                            progress,
                            counters: &counters,
                            target: p.clone(),
                            dockerfile_id: dockerfile_id.clone(),
                        };
                        s.spawn(move || self.build_platform(&ctx))
                    })
                    .collect();
                for (i, h) in handles.into_iter().enumerate() {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(BuildError::Options("a build thread panicked".into()))
                    });
                    results[ci * parallel + i] = Some(r);
                }
            });
        }
        let mut images = Vec::new();
        for r in results.into_iter().flatten() {
            images.push(r?);
        }
        let c = counters.lock().unwrap_or_else(|p| p.into_inner());
        let (steps_run, steps_cached) = (c.run, c.cached);
        drop(c);
        if images.len() == 1 && opts.platforms.len() <= 1 {
            let img = &images[0];
            return Ok(BuildResult {
                root: img.manifest.clone(),
                media_type: berth_oci::media::OCI_MANIFEST.to_owned(),
                images,
                steps_run,
                steps_cached,
            });
        }
        let manifests: Vec<_> = images
            .iter()
            .map(|i| {
                let mut p = json!({"architecture": i.platform.architecture, "os": i.platform.os});
                if let Some(v) = &i.platform.variant {
                    p["variant"] = json!(v);
                }
                json!({
                    "mediaType": berth_oci::media::OCI_MANIFEST,
                    "digest": i.manifest.to_string(),
                    "size": i.manifest_size,
                    "platform": p,
                })
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": berth_oci::media::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).map_err(|e| BuildError::Corrupt {
            path: "index".into(),
            reason: e.to_string(),
        })?;
        let root = self.store.put_bytes(&bytes)?;
        Ok(BuildResult {
            root,
            media_type: berth_oci::media::OCI_INDEX.to_owned(),
            images,
            steps_run,
            steps_cached,
        })
    }

    fn build_platform(&self, ctx: &Ctx<'_>) -> Result<PlatformImage, BuildError> {
        let host = Platform::host();
        let automatic =
            berth_dockerfile::platform_args(&platform::parts(&ctx.target), &platform::parts(&host));
        let global = GlobalScope::new(
            &ctx.df.instructions,
            ctx.df.directives.escape,
            &ctx.opts.build_args,
            &automatic,
        )
        .map_err(|e| BuildError::Instruction {
            line: e.line,
            instruction: "ARG".into(),
            reason: e.source.to_string(),
        })?;
        let graph = StageGraph::new(ctx.df, &global)?;
        let target = graph.target(ctx.opts.target.as_deref())?;
        let order = graph.required(target);
        let mut states: HashMap<usize, State> = HashMap::new();
        for &si in &order {
            let st = self.build_stage(ctx, &graph, &global, si, &states)?;
            states.insert(si, st);
        }
        let mut fin = states
            .remove(&target)
            .ok_or_else(|| BuildError::Options("the target stage produced no state".into()))?;
        for (k, v) in &ctx.opts.labels {
            fin.config.add_label(k, v);
        }
        self.commit_image(&fin)
    }

    /// Writes the config and manifest of a final state.
    fn commit_image(&self, st: &State) -> Result<PlatformImage, BuildError> {
        let created = st.config.newest_history();
        let config_bytes = st.config.to_bytes(created.as_deref());
        let config = self.store.put_bytes(&config_bytes)?;
        let layers: Vec<_> = st
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": berth_oci::media::OCI_MANIFEST,
            "config": {
                "mediaType": berth_oci::media::OCI_CONFIG,
                "digest": config.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| BuildError::Corrupt {
            path: "manifest".into(),
            reason: e.to_string(),
        })?;
        let digest = self.store.put_bytes(&bytes)?;
        let size = bytes.len() as u64
            + config_bytes.len() as u64
            + st.layers.iter().map(|l| l.size).sum::<u64>();
        Ok(PlatformImage {
            platform: st.platform.clone(),
            manifest: digest,
            manifest_size: bytes.len() as u64,
            config,
            size,
        })
    }

    fn build_stage(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        global: &GlobalScope,
        si: usize,
        states: &HashMap<usize, State>,
    ) -> Result<State, BuildError> {
        let stage = &graph.stages[si];
        let from_ins = &ctx.df.instructions[stage.from];
        let stage_platform = match &stage.platform {
            Some(p) => platform::parse(p)?,
            None => ctx.target.clone(),
        };
        let mut state = match &stage.base {
            Base::Scratch => State {
                layers: Vec::new(),
                config: ImageConfig::scratch(&stage_platform),
                key: Digest::sha256(format!("scratch\n{stage_platform}").as_bytes()),
                platform: stage_platform.clone(),
                created: epoch_or(ctx.opts.layers.epoch, EPOCH_ZERO),
            },
            Base::Stage(i) => states
                .get(i)
                .cloned()
                .ok_or_else(|| BuildError::Instruction {
                    line: from_ins.span.start.line,
                    instruction: from_ins.original.clone(),
                    reason: format!("stage {i} was not built"),
                })?,
            Base::Image(r) => self.image_state(ctx, r, &stage_platform, from_ins)?,
            _ => {
                return Err(BuildError::Instruction {
                    line: from_ins.span.start.line,
                    instruction: from_ins.original.clone(),
                    reason: "unknown kind of base".into(),
                });
            }
        };
        let total = stage.body.len() + 1;
        let label = stage.name.clone().unwrap_or_else(|| format!("stage-{si}"));
        self.announce_cached_from(ctx, &label, total, from_ins);
        let mut scope = StageScope::new(global, env_vars(&state.config));
        // ONBUILD triggers of the base image run first, as in BuildKit.
        let triggers = state.config.take_onbuild();
        let mut trigger_ins = Vec::new();
        for t in &triggers {
            let parsed = berth_dockerfile::parse(t).map_err(|source| BuildError::Parse {
                file: format!("ONBUILD trigger of the base image of stage {label}"),
                source,
            })?;
            trigger_ins.extend(parsed.instructions);
        }
        let body: Vec<(usize, &Instruction)> = trigger_ins
            .iter()
            .map(|i| (usize::MAX, i))
            .chain(stage.body.clone().map(|i| (i, &ctx.df.instructions[i])))
            .collect();
        for (n, (idx, ins)) in body.iter().enumerate() {
            let position = format!("{label} {}/{total}", n + 2);
            self.instruction(
                ctx, graph, si, *idx, ins, &position, &mut state, &mut scope, states,
            )?;
        }
        Ok(state)
    }

    fn announce_cached_from(&self, ctx: &Ctx<'_>, label: &str, total: usize, from: &Instruction) {
        let id = self.next_id(ctx);
        ctx.progress.event(Event::Step {
            id,
            platform: ctx.target.to_string(),
            position: format!("{label} 1/{total}"),
            text: from.original.clone(),
        });
        ctx.progress.event(Event::Done { id, seconds: 0.0 });
    }

    fn next_id(&self, ctx: &Ctx<'_>) -> usize {
        let mut c = ctx.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.next_id += 1;
        c.next_id
    }

    /// Resolves (pulling when needed) a base image for a platform into a state.
    fn image_state(
        &self,
        ctx: &Ctx<'_>,
        reference: &str,
        p: &Platform,
        ins: &Instruction,
    ) -> Result<State, BuildError> {
        let (manifest, key_src) = match ctx.opts.contexts.get(reference) {
            Some(NamedContext::Image(r)) => (self.pull(ctx, r, p)?, r.clone()),
            Some(NamedContext::OciLayout { dir, tag }) => (
                self.import_layout(ctx, dir, tag.as_deref(), p)?,
                dir.display().to_string(),
            ),
            Some(NamedContext::Dir(_)) => {
                return Err(BuildError::Instruction {
                    line: ins.span.start.line,
                    instruction: ins.original.clone(),
                    reason: format!("build context {reference:?} is a directory, not an image"),
                });
            }
            None => (self.pull(ctx, reference, p)?, reference.to_owned()),
        };
        let _ = key_src;
        self.state_of_manifest(&manifest, p)
    }

    fn state_of_manifest(&self, digest: &Digest, p: &Platform) -> Result<State, BuildError> {
        let raw = self.store.manifest(digest)?;
        let m = Manifest::parse(Some(&raw.media_type), &raw.bytes).map_err(|e| {
            BuildError::Corrupt {
                path: self.store.blob_path(digest),
                reason: e.to_string(),
            }
        })?;
        if m.kind != ManifestKind::Image {
            return Err(BuildError::Corrupt {
                path: self.store.blob_path(digest),
                reason: "expected an image manifest".into(),
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&raw.bytes).map_err(|e| BuildError::Corrupt {
                path: self.store.blob_path(digest),
                reason: e.to_string(),
            })?;
        let config_digest = v["config"]["digest"]
            .as_str()
            .and_then(|s| Digest::parse(s).ok())
            .ok_or_else(|| BuildError::Corrupt {
                path: self.store.blob_path(digest),
                reason: "manifest without a config digest".into(),
            })?;
        let config_bytes = self.store.read_blob(&config_digest, MAX_CONFIG)?;
        let config = ImageConfig::from_bytes(&config_bytes, p)?;
        let diff_ids = config.diff_ids();
        let descs = v["layers"].as_array().cloned().unwrap_or_default();
        if descs.len() != diff_ids.len() {
            return Err(BuildError::Corrupt {
                path: self.store.blob_path(&config_digest),
                reason: format!(
                    "{} layers but {} diff ids in the config",
                    descs.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (d, diff_id) in descs.iter().zip(diff_ids) {
            let digest = d["digest"]
                .as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| BuildError::Corrupt {
                    path: self.store.blob_path(digest),
                    reason: "layer without a digest".into(),
                })?;
            layers.push(LayerBlob {
                digest,
                diff_id,
                size: d["size"].as_u64().unwrap_or(0),
                media_type: d["mediaType"].as_str().unwrap_or("").to_owned(),
            });
        }
        let platform = Platform::new(
            config_str(&config_bytes, "os").as_deref().unwrap_or(&p.os),
            config_str(&config_bytes, "architecture")
                .as_deref()
                .unwrap_or(&p.architecture),
            config_str(&config_bytes, "variant")
                .as_deref()
                .or(p.variant.as_deref()),
        );
        Ok(State {
            layers,
            config,
            key: Digest::sha256(format!("image\n{digest}").as_bytes()),
            platform,
            created: config_str(&config_bytes, "created").unwrap_or_else(|| EPOCH_ZERO.to_owned()),
        })
    }

    /// The manifest digest of `reference` for `p`, fetched into the store when it is not
    /// there (or with `--pull`).
    fn pull(&self, ctx: &Ctx<'_>, reference: &str, p: &Platform) -> Result<Digest, BuildError> {
        let pstr = p.to_string();
        if !ctx.opts.pull
            && let Some(d) = self.store.resolved(reference, &pstr)
        {
            return Ok(d);
        }
        ctx.progress.event(Event::Pull {
            reference: reference.to_owned(),
            platform: pstr.clone(),
        });
        let r = ImageRef::parse(reference).map_err(|e| BuildError::Image {
            reference: reference.to_owned(),
            source: ClientError::NotFound(e.to_string()),
        })?;
        let src = self
            .registries
            .open(&r)
            .map_err(|source| BuildError::Image {
                reference: reference.to_owned(),
                source,
            })?;
        let digest = self.copy_in(&src, p).map_err(|source| BuildError::Image {
            reference: reference.to_owned(),
            source,
        })?;
        self.store.record_resolved(reference, &pstr, &digest)?;
        Ok(digest)
    }

    fn import_layout(
        &self,
        ctx: &Ctx<'_>,
        dir: &Path,
        tag: Option<&str>,
        p: &Platform,
    ) -> Result<Digest, BuildError> {
        let _ = ctx;
        let src = berth_client::layout::OciLayout::new(dir, tag);
        self.copy_in(&src, p).map_err(|source| BuildError::Image {
            reference: format!("oci-layout://{}", dir.display()),
            source,
        })
    }

    fn copy_in(&self, src: &dyn ImageSource, p: &Platform) -> Result<Digest, ClientError> {
        let sink = StoreImage::new(self.store.clone(), None);
        let mut copts = CopyOptions::default();
        copts.platforms = vec![p.clone()];
        copts.referrers = false;
        let report = self.rt.block_on(berth_client::copy(src, &sink, &copts))?;
        let digest = sink
            .written_root()
            .or(report.digest)
            .ok_or_else(|| ClientError::NotFound("the source named no image".into()))?;
        // A lone manifest for another platform is not what was asked for.
        let raw: RawManifest = self
            .store
            .manifest(&digest)
            .map_err(|e| ClientError::NotFound(e.to_string()))?;
        if raw.is_index()? {
            return Err(ClientError::NotFound(format!(
                "no image for {p} in the index"
            )));
        }
        Ok(digest)
    }

    #[allow(clippy::too_many_arguments)]
    fn instruction(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        si: usize,
        idx: usize,
        ins: &Instruction,
        position: &str,
        state: &mut State,
        scope: &mut StageScope<'_>,
        states: &HashMap<usize, State>,
    ) -> Result<(), BuildError> {
        let line = ins.span.start.line;
        let bad = |reason: String| BuildError::Instruction {
            line,
            instruction: short(&ins.original),
            reason,
        };
        let ex = |scope: &StageScope<'_>, w: &str| scope.expand(w).map_err(|e| bad(e.to_string()));
        let id = self.next_id(ctx);
        ctx.progress.event(Event::Step {
            id,
            platform: ctx.target.to_string(),
            position: position.to_owned(),
            text: ins.original.clone(),
        });
        let started = Instant::now();
        let linked = matches!(&ins.command, Command::Copy(c) | Command::Add(c) if c.link);
        let step = Step {
            si,
            idx,
            id,
            ins,
            position,
            started,
            linked,
        };
        let epoch = ctx.opts.layers.epoch;
        let history = |state: &mut State, text: &str| {
            let created = epoch_or(epoch, &state.created);
            state.config.push_history(text, &created, None);
        };
        match &ins.command {
            Command::Arg { .. } => {
                scope.apply(ins).map_err(|e| bad(e.source.to_string()))?;
            }
            Command::Env { pairs } => {
                let expanded = scope.expand_pairs(pairs).map_err(|e| bad(e.to_string()))?;
                scope.apply(ins).map_err(|e| bad(e.source.to_string()))?;
                for (k, v) in &expanded {
                    state.config.set_env(k, v);
                }
                history(state, &ins.original);
            }
            Command::Label { pairs } => {
                for (k, v) in scope.expand_pairs(pairs).map_err(|e| bad(e.to_string()))? {
                    state.config.add_label(&k, &v);
                }
                history(state, &ins.original);
            }
            Command::Maintainer { name } => {
                state.config.set_author(name);
                history(state, &ins.original);
            }
            Command::Expose { ports } => {
                for w in ports {
                    for p in scope
                        .expand_words(&w.text)
                        .map_err(|e| bad(e.to_string()))?
                    {
                        state.config.expose(&normalize_port(&p).map_err(bad)?);
                    }
                }
                history(state, &ins.original);
            }
            Command::User { user } => {
                state.config.set_user(&ex(scope, &user.text)?);
                history(state, &ins.original);
            }
            Command::Volume { paths } => {
                for w in paths {
                    for p in scope
                        .expand_words(&w.text)
                        .map_err(|e| bad(e.to_string()))?
                    {
                        if p.is_empty() {
                            return Err(bad("VOLUME specified can not be an empty string".into()));
                        }
                        state.config.add_volume(&p);
                    }
                }
                history(state, &ins.original);
            }
            Command::Stopsignal { signal } => {
                state.config.set_stop_signal(&ex(scope, &signal.text)?);
                history(state, &ins.original);
            }
            Command::Shell { shell } => {
                state.config.set_shell(shell);
                history(state, &ins.original);
            }
            Command::Cmd { cmd } => {
                let argv = argv(cmd, &state.config);
                state.config.set_cmd(&argv);
                history(state, &ins.original);
            }
            Command::Entrypoint { cmd } => {
                let argv = argv(cmd, &state.config);
                state.config.set_entrypoint(&argv);
                history(state, &ins.original);
            }
            Command::Healthcheck(h) => {
                match h {
                    Healthcheck::None => state
                        .config
                        .set_healthcheck(None, None, None, None, None, None),
                    Healthcheck::Cmd {
                        cmd,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match cmd {
                            CmdLine::Exec(a) => {
                                let mut t = vec!["CMD".to_owned()];
                                t.extend(a.iter().cloned());
                                t
                            }
                            CmdLine::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                        };
                        state.config.set_healthcheck(
                            Some(test),
                            *interval,
                            *timeout,
                            *start_period,
                            *start_interval,
                            *retries,
                        );
                    }
                    _ => {}
                }
                history(state, &ins.original);
            }
            Command::Onbuild { trigger } => {
                state.config.add_onbuild(&trigger.original);
                history(state, &ins.original);
            }
            Command::Workdir { path } => {
                let p = ex(scope, &path.text)?;
                let dir = clean_abs(&join_workdir(&state.config.workdir(), &p));
                state.config.set_workdir(&dir);
                let mut facts = StepFacts::default();
                facts.fact("instruction", format!("WORKDIR {dir}"));
                let dir2 = dir.clone();
                self.fs_step(ctx, &step, state, facts, None, move |root, _work| {
                    let target =
                        crate::context::resolve_dest(root, Path::new(dir2.trim_start_matches('/')))
                            .map_err(|p| BuildError::Source {
                                line: 0,
                                instruction: String::new(),
                                path: dir2.clone(),
                                reason: p.reason(false),
                            })?;
                    fs::create_dir_all(&target).map_err(io(&target))
                })?;
                return Ok(());
            }
            Command::Copy(c) | Command::Add(c) => {
                return self.copy_step(ctx, graph, &step, c, state, scope, states);
            }
            Command::Run(r) => {
                return self.run_step(ctx, graph, states, &step, r, state, scope);
            }
            Command::From(_) => {
                return Err(bad("FROM inside a stage body".into()));
            }
            _ => return Err(bad("instruction not supported".into())),
        }
        ctx.progress.event(Event::Done {
            id,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// A cached filesystem step: look up the key; on a miss mount an overlay, run
    /// `work(merged_root, step_dir)`, unmount, and record the layer.
    fn fs_step(
        &self,
        ctx: &Ctx<'_>,
        step: &Step<'_>,
        state: &mut State,
        facts: StepFacts,
        inputs: Option<&Digest>,
        work: impl FnOnce(&Path, &Path) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let Step {
            si,
            idx,
            id,
            ins,
            started,
            linked,
            ..
        } = *step;
        let pstr = state.platform.to_string();
        // The layer's bytes depend on these too.
        let mut facts = facts;
        facts.fact("compression", ctx.opts.layers.compression.media_type());
        if let Some(e) = ctx.opts.layers.epoch {
            facts.fact("SOURCE_DATE_EPOCH", e.to_string());
        }
        // A linked step's own key ignores the layers below it; the state's chain still
        // follows both.
        let parent = if linked {
            Digest::sha256(format!("link\n{pstr}").as_bytes())
        } else {
            state.key.clone()
        };
        let key = facts.key(&parent, &pstr, inputs);
        let chain = if linked {
            Digest::sha256(format!("linked\n{}\n{key}", state.key).as_bytes())
        } else {
            key.clone()
        };
        let mem_name = cache::memory_name(
            &ctx.dockerfile_id,
            si,
            idx,
            &format!("{}|{}", ctx.target, pstr),
        );
        let created_by = created_by(ins, &state.config);
        if !ctx.opts.no_cache
            && let Some(rec) = cache::lookup(&self.store, &key)
        {
            ctx.progress.event(Event::Cached { id });
            {
                let mut c = ctx.counters.lock().unwrap_or_else(|p| p.into_inner());
                c.cached += 1;
            }
            self.remember(&mem_name, &parent, &key, &facts);
            self.apply_record(state, &rec, &created_by, chain, ctx.opts.layers.epoch);
            ctx.progress.event(Event::Done {
                id,
                seconds: started.elapsed().as_secs_f64(),
            });
            return Ok(());
        }
        let reason = if ctx.opts.no_cache {
            "--no-cache".to_owned()
        } else {
            let prev: Option<StepMemory> = self.store.read_record("steps", &mem_name);
            cache::explain(prev.as_ref(), &parent, &facts, &key)
        };
        ctx.progress.event(Event::Miss { id, reason });
        let lowers = if linked {
            vec![self.empty.clone()]
        } else {
            self.lowers(state)?
        };
        let work_dir = self.store.work_dir()?;
        let upper = work_dir.path().join("upper");
        let wdir = work_dir.path().join("work");
        let merged = work_dir.path().join("merged");
        for d in [&upper, &wdir, &merged] {
            fs::create_dir(d).map_err(io(d))?;
        }
        self.sandbox.mount_overlay(&OverlayMount {
            lowers: &lowers,
            upper: Some((&upper, &wdir)),
            target: &merged,
        })?;
        let result = work(&merged, work_dir.path());
        let unmounted = self.sandbox.unmount(&merged);
        result?;
        unmounted?;
        let layer = write_layer(&self.store, &upper, ctx.opts.layers)?;
        if let Some(l) = &layer {
            // The upper directory is the new layer's snapshot, in overlayfs' format already.
            let snap = self.store.temp_dir("snap")?;
            fs::remove_dir(snap.path()).map_err(io(snap.path()))?;
            fs::rename(&upper, snap.path()).map_err(io(snap.path()))?;
            if self.store.snapshot(&l.diff_id)?.is_none() {
                self.store.commit_snapshot(snap, &l.diff_id)?;
            }
        }
        drop(work_dir);
        let rec = CacheRecord {
            layer,
            created: rfc3339(SystemTime::now()),
        };
        self.store.write_record("cache", key.hex(), &rec)?;
        self.remember(&mem_name, &parent, &key, &facts);
        {
            let mut c = ctx.counters.lock().unwrap_or_else(|p| p.into_inner());
            c.run += 1;
        }
        self.apply_record(state, &rec, &created_by, chain, ctx.opts.layers.epoch);
        ctx.progress.event(Event::Done {
            id,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn remember(&self, name: &str, parent: &Digest, key: &Digest, facts: &StepFacts) {
        let mem = StepMemory {
            parent: parent.to_string(),
            key: key.to_string(),
            facts: facts.clone(),
        };
        // Explanations are best effort: failing to remember never fails a build.
        let _ = self.store.write_record("steps", name, &mem);
    }

    fn apply_record(
        &self,
        state: &mut State,
        rec: &CacheRecord,
        created_by: &str,
        key: Digest,
        epoch: Option<i64>,
    ) {
        let created = epoch_or(epoch, &rec.created);
        state
            .config
            .push_history(created_by, &created, rec.layer.as_ref().map(|l| &l.diff_id));
        state.created = created;
        if let Some(l) = &rec.layer {
            state.layers.push(l.clone());
        }
        state.key = key;
    }

    /// The snapshot directories of a state's layers, top-most first (unpacked on demand).
    fn lowers(&self, state: &State) -> Result<Vec<PathBuf>, BuildError> {
        let mut out = Vec::with_capacity(state.layers.len() + 1);
        for l in state.layers.iter().rev() {
            out.push(unpack_layer(&self.store, l)?);
        }
        // overlayfs wants two lowers for a read-only view and one at least otherwise.
        out.push(self.empty.clone());
        Ok(out)
    }

    /// Mounts a state's rootfs read-only (for `COPY --from`); the guard unmounts it.
    fn mount_readonly(&self, state: &State) -> Result<ReadOnlyRoot<'_>, BuildError> {
        if state.layers.is_empty() {
            return Ok(ReadOnlyRoot {
                sandbox: self.sandbox.as_ref(),
                dir: None,
                root: self.empty.clone(),
            });
        }
        let lowers = self.lowers(state)?;
        let dir = self.store.work_dir()?;
        let merged = dir.path().join("ro");
        fs::create_dir(&merged).map_err(io(&merged))?;
        self.sandbox.mount_overlay(&OverlayMount {
            lowers: &lowers,
            upper: None,
            target: &merged,
        })?;
        Ok(ReadOnlyRoot {
            sandbox: self.sandbox.as_ref(),
            dir: Some(dir),
            root: merged,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        step: &Step<'_>,
        c: &berth_dockerfile::Copy,
        state: &mut State,
        scope: &StageScope<'_>,
        states: &HashMap<usize, State>,
    ) -> Result<(), BuildError> {
        let (si, ins) = (step.si, step.ins);
        let line = ins.span.start.line;
        let bad = |reason: String| BuildError::Instruction {
            line,
            instruction: short(&ins.original),
            reason,
        };
        let ex = |w: &str| scope.expand(w).map_err(|e| bad(e.to_string()));
        let is_add = ins.keyword == Keyword::Add;
        let dest_raw = ex(&c.dest.text)?;
        let dest = {
            let joined = join_workdir(&state.config.workdir(), &dest_raw);
            let mut d = clean_abs(&joined);
            if (dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".")
                && !d.ends_with('/')
            {
                d.push('/');
            }
            d
        };
        let chown = c.chown.as_deref().map(ex).transpose()?;
        // A linked step sees an empty filesystem: names in --chown are resolved against the
        // stage's /etc/passwd and /etc/group now, and the key holds the numbers.
        let chown = match chown {
            Some(spec) if step.linked && !spec.split(':').all(|p| p.parse::<u32>().is_ok()) => {
                let ro = self.mount_readonly(state)?;
                let (u, g) = users::chown(&ro.root, &spec).map_err(|e| bad(e.to_string()))?;
                Some(format!("{u}:{g}"))
            }
            other => other,
        };
        let chmod = match c.chmod.as_deref().map(ex).transpose()? {
            Some(s) => Some(Chmod::parse(&s).map_err(bad)?),
            None => None,
        };
        let exclude = if c.exclude.is_empty() {
            None
        } else {
            let pats: Vec<String> = c.exclude.iter().map(|e| ex(e)).collect::<Result<_, _>>()?;
            Some(DockerIgnore::parse(&pats.join("\n")).map_err(|e| bad(e.to_string()))?)
        };
        let mut sources_raw: Vec<String> = Vec::new();
        for w in &c.sources {
            sources_raw.push(ex(&w.text)?);
        }
        let all_sources = sources_raw
            .iter()
            .map(|s| fetch::redact(s))
            .collect::<Vec<_>>()
            .join(" ");
        let remote = self.remote_sources(
            is_add,
            &mut sources_raw,
            c.checksum.as_deref().map(ex).transpose()?,
            c.keep_git_dir.unwrap_or(false),
            c.inline.len(),
            &bad,
        )?;
        let many = sources_raw.len() + remote.len() + c.inline.len() > 1
            || sources_raw.iter().any(|s| s.contains(['*', '?', '[']));
        if many && !dest.ends_with('/') {
            return Err(bad(
                "When using COPY with more than one source file, the destination must be a directory and end with a /".into(),
            ));
        }
        // Where the sources come from.
        let from = c.from.as_deref().map(ex).transpose()?;
        let platform = state.platform.clone();
        let src = self.source_tree(ctx, graph, states, si, from.as_deref(), &platform, ins)?;
        let (tree, from_key) = (&src.tree, src.key.clone());
        // Match and walk every source now: the cache key needs their content.
        let mut matched: Vec<(Match, Vec<Entry>)> = Vec::new();
        let mut named: Vec<(String, Vec<Entry>)> = Vec::new();
        for s in &sources_raw {
            let ms = tree.matches(s).map_err(|p| BuildError::Source {
                line,
                instruction: short(&ins.original),
                path: s.clone(),
                reason: p.reason(tree.is_context()),
            })?;
            for m in ms {
                let entries = tree.walk(&m, exclude.as_ref())?;
                named.push((m.rel.display().to_string(), entries.clone()));
                matched.push((m, entries));
            }
        }
        let mut facts = StepFacts::default();
        facts.fact(
            "instruction",
            format!("{} {} {}", ins.keyword, all_sources, dest),
        );
        if let Some(o) = &chown {
            facts.fact("chown", o.clone());
        }
        if let Some(m) = &c.chmod {
            facts.fact("chmod", m.clone());
        }
        if c.parents {
            facts.fact("parents", "true");
        }
        if !c.exclude.is_empty() {
            facts.fact("exclude", c.exclude.join(","));
        }
        if let Some(u) = c.unpack {
            facts.fact("unpack", u.to_string());
        }
        for (u, d) in remote.urls.iter().zip(&remote.downloads) {
            facts.fact(
                &format!("download {}", fetch::redact(u)),
                d.digest.to_string(),
            );
        }
        for (g, co) in remote.gits.iter().zip(&remote.checkouts) {
            facts.fact(&format!("git {}", g.shown()), co.commit.clone());
        }
        if !remote.gits.is_empty() {
            facts.fact("keep-git-dir", remote.keep_git_dir.to_string());
        }
        for inline in &c.inline {
            let content = if inline.expand {
                scope
                    .expand(&inline.content)
                    .unwrap_or_else(|_| inline.content.clone())
            } else {
                inline.content.clone()
            };
            facts.fact(&format!("heredoc {}", inline.name), content);
        }
        let inputs = match &from_key {
            Some(k) => {
                facts.fact("source stage", k.to_string());
                let (d, _) = digest_entries(&named)?;
                d
            }
            None => {
                let (d, files) = digest_entries(&named)?;
                facts.files = files.into_iter().collect();
                d
            }
        };
        let inline_files: Vec<(String, String)> = c
            .inline
            .iter()
            .map(|i| {
                let content = if i.expand {
                    scope
                        .expand(&i.content)
                        .unwrap_or_else(|_| i.content.clone())
                } else {
                    i.content.clone()
                };
                (i.name.clone(), content)
            })
            .collect();
        let parents = c.parents;
        let result = self.fs_step(ctx, step, state, facts, Some(&inputs), |root, _work| {
            let owner = match &chown {
                Some(spec) => Some(users::chown(root, spec).map_err(|e| bad(e.to_string()))?),
                None => None,
            };
            // Staged sources (heredocs, checkouts) go in as COPY puts them.
            let copy_plain = |ms: &[(Match, Vec<Entry>)]| {
                copy_into(
                    root,
                    &CopySpec {
                        dest: &dest,
                        sources: ms,
                        owner,
                        chmod: chmod.as_ref(),
                        parents: false,
                        many,
                    },
                )
            };
            if !inline_files.is_empty() {
                let staging = self.store.temp_dir("heredoc")?;
                for (name, content) in &inline_files {
                    let p = staging.path().join(name);
                    fs::write(&p, content).map_err(io(&p))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(io(&p))?;
                }
                let t = Tree::rootfs(staging.path());
                let mut ms = Vec::new();
                for (name, _) in &inline_files {
                    ms.extend(walked(&t, name, &bad)?);
                }
                copy_plain(&ms)?;
            }
            if !remote.downloads.is_empty() {
                let staging = self.store.temp_dir("download")?;
                let mut ms = Vec::new();
                for (i, d) in remote.downloads.iter().enumerate() {
                    let dir = staging.path().join(i.to_string());
                    fs::create_dir(&dir).map_err(io(&dir))?;
                    let p = dir.join(&d.name);
                    fs::copy(&d.blob, &p).map_err(io(&p))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).map_err(io(&p))?;
                    if let Some(t) = d.modified {
                        let f = fs::File::options().write(true).open(&p).map_err(io(&p))?;
                        f.set_modified(t).map_err(io(&p))?;
                    }
                    ms.extend(walked(&Tree::rootfs(&dir), &d.name, &bad)?);
                }
                let unpack = c.unpack.unwrap_or(false);
                add_into(root, &dest, &ms, owner, chmod.as_ref(), many, unpack, &bad)?;
            }
            if !remote.checkouts.is_empty() {
                let mut ms = Vec::new();
                for co in &remote.checkouts {
                    ms.extend(walked(&Tree::rootfs(&co.dir), ".", &bad)?);
                }
                copy_plain(&ms)?;
            }
            if is_add {
                let unpack = c.unpack.unwrap_or(true);
                if matched.is_empty() {
                    return Ok(());
                }
                return add_into(
                    root,
                    &dest,
                    &matched,
                    owner,
                    chmod.as_ref(),
                    many,
                    unpack,
                    &bad,
                );
            }
            copy_into(
                root,
                &CopySpec {
                    dest: &dest,
                    sources: &matched,
                    owner,
                    chmod: chmod.as_ref(),
                    parents,
                    many,
                },
            )
            .map_err(|e| with_line(e, line, &ins.original))
        });
        drop(src);
        result
    }

    /// ADD's remote sources, taken out of `sources`: URLs downloaded and git references
    /// checked out now (their content is part of the step's key), with BuildKit's rules for
    /// `--checksum` (one remote source, nothing else) and for URLs in COPY.
    #[allow(clippy::too_many_arguments)]
    fn remote_sources(
        &self,
        is_add: bool,
        sources: &mut Vec<String>,
        checksum: Option<String>,
        keep_git_dir: bool,
        inline: usize,
        bad: &dyn Fn(String) -> BuildError,
    ) -> Result<Remote, BuildError> {
        let mut remote = Remote {
            keep_git_dir,
            ..Remote::default()
        };
        if !is_add {
            if let Some(u) = sources.iter().find(|s| s.contains("://")) {
                return Err(bad(format!(
                    "{}: source can't be a URL for COPY (ADD downloads URLs)",
                    fetch::redact(u)
                )));
            }
            return Ok(remote);
        }
        remote.gits = sources
            .iter()
            .filter(|s| fetch::is_git(s))
            .map(|s| git::GitSource::parse(s))
            .collect();
        sources.retain(|s| !fetch::is_git(s));
        remote.urls = sources
            .iter()
            .filter(|s| fetch::is_http(s))
            .cloned()
            .collect();
        sources.retain(|s| !fetch::is_http(s));
        if let Some(u) = sources.iter().find(|s| s.contains("://")) {
            return Err(bad(format!(
                "{}: unsupported URL scheme (http, https and git repositories are)",
                fetch::redact(u)
            )));
        }
        if checksum.is_some() {
            if remote.len() == 0 {
                return Err(bad(
                    "checksum can't be specified for non-HTTP(S) sources".into()
                ));
            }
            if remote.len() > 1 || !sources.is_empty() || inline > 0 {
                return Err(bad(
                    "checksum can't be specified for multiple sources".into()
                ));
            }
        }
        let url_checksum = match &checksum {
            Some(v) if !remote.urls.is_empty() => {
                Some(Digest::parse(v).map_err(|e| bad(format!("invalid checksum {v:?}: {e}")))?)
            }
            _ => None,
        };
        for g in &remote.gits {
            remote.checkouts.push(git::checkout(
                &self.store,
                g,
                keep_git_dir,
                checksum.as_deref(),
            )?);
        }
        for u in &remote.urls {
            remote.downloads.push(fetch::fetch(
                &self.store,
                &self.rt,
                u,
                url_checksum.as_ref(),
            )?);
        }
        Ok(remote)
    }

    /// Where `--from` sources come from: the build context (`None`), a named context
    /// directory, an earlier stage or an image (mounted read-only while the result lives).
    #[allow(clippy::too_many_arguments)]
    fn source_tree(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        states: &HashMap<usize, State>,
        si: usize,
        from: Option<&str>,
        platform: &Platform,
        ins: &Instruction,
    ) -> Result<SourceTree<'_>, BuildError> {
        let Some(f) = from else {
            return Ok(SourceTree {
                tree: ctx.context.clone(),
                key: None,
                _guard: None,
            });
        };
        if let Some(NamedContext::Dir(d)) = ctx.opts.contexts.get(f) {
            return Ok(SourceTree {
                tree: Tree::rootfs(&fs::canonicalize(d).map_err(io(d))?),
                key: None,
                _guard: None,
            });
        }
        let src_state = match resolve_source(graph, f, si) {
            Some(i) => states
                .get(&i)
                .cloned()
                .ok_or_else(|| BuildError::Instruction {
                    line: ins.span.start.line,
                    instruction: short(&ins.original),
                    reason: format!("stage {f} was not built"),
                })?,
            None => self.image_state(ctx, f, platform, ins)?,
        };
        let guard = self.mount_readonly(&src_state)?;
        Ok(SourceTree {
            tree: Tree::rootfs(&guard.root),
            key: Some(src_state.key.clone()),
            _guard: Some(guard),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        states: &HashMap<usize, State>,
        step: &Step<'_>,
        r: &berth_dockerfile::Run,
        state: &mut State,
        scope: &StageScope<'_>,
    ) -> Result<(), BuildError> {
        let (ins, id, position) = (step.ins, step.id, step.position);
        let line = ins.span.start.line;
        let bad = |reason: String| BuildError::Instruction {
            line,
            instruction: short(&ins.original),
            reason,
        };
        // The step's mounts, expanded in the stage's scope and resolved.
        let expander = |v: &str| scope.expand(v).map_err(|e| e.to_string());
        let workdir = state.config.workdir();
        let mut run_mounts: Vec<RunMount> = Vec::new();
        let mut mount_trees: Vec<SourceTree<'_>> = Vec::new();
        let mut mount_digests: Vec<Digest> = Vec::new();
        let mut mount_facts: Vec<String> = Vec::new();
        let mut mount_files: Vec<(String, String)> = Vec::new();
        let mut ssh_count = 0usize;
        for raw in &r.mounts {
            let m = berth_dockerfile::parse_mount(&raw.raw, Some(&expander))
                .map_err(|e| bad(format!("--mount={}: {e}", raw.raw)))?;
            let target = m
                .target
                .as_deref()
                .map(|t| clean_abs(&join_workdir(&workdir, t)));
            let need_target = || {
                target
                    .clone()
                    .ok_or_else(|| bad(format!("--mount={}: a target is required", raw.raw)))
            };
            // A bind's source, or a cache's seed: a path in the context, a stage or an image.
            let mut tree_source = |from: Option<&str>, source: Option<&str>| {
                let src =
                    self.source_tree(ctx, graph, states, step.si, from, &state.platform, ins)?;
                let path = source.unwrap_or(".");
                let mut ms = src.tree.matches(path).map_err(|p| BuildError::Source {
                    line,
                    instruction: short(&ins.original),
                    path: path.to_owned(),
                    reason: p.reason(src.tree.is_context()),
                })?;
                if ms.len() != 1 {
                    return Err(bad(format!(
                        "--mount={}: source {path:?} names {} paths; a mount needs one",
                        raw.raw,
                        ms.len()
                    )));
                }
                let found = ms.remove(0);
                let entries = src.tree.walk(&found, None)?;
                let (d, files) =
                    digest_entries(&[(found.rel.display().to_string(), entries.clone())])?;
                let mut fact = format!("source {path}");
                match &src.key {
                    Some(k) => fact.push_str(&format!(" from {k}")),
                    None => mount_files.extend(files),
                }
                mount_digests.push(d);
                let direct = src.key.is_some();
                mount_trees.push(src);
                Ok::<_, BuildError>(((found, entries), fact, direct))
            };
            let mount = match m.kind {
                MountType::Bind => {
                    let (source, fact, direct) =
                        tree_source(m.from.as_deref(), m.source.as_deref())?;
                    mount_facts.push(fact);
                    RunMount::Bind {
                        target: need_target()?,
                        source,
                        writable: !m.readonly,
                        direct,
                    }
                }
                MountType::Cache => {
                    let target = need_target()?;
                    let seed = match &m.from {
                        Some(f) => {
                            let (source, fact, _) = tree_source(Some(f), m.source.as_deref())?;
                            mount_facts.push(fact);
                            Some(source)
                        }
                        None => None,
                    };
                    RunMount::Cache {
                        id: m
                            .id
                            .clone()
                            .filter(|i| !i.is_empty())
                            .unwrap_or_else(|| target.clone()),
                        target,
                        sharing: m.sharing.unwrap_or(Sharing::Shared),
                        readonly: m.readonly,
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        seed,
                    }
                }
                MountType::Tmpfs => RunMount::Tmpfs {
                    target: need_target()?,
                    size: m.size,
                },
                MountType::Secret => {
                    let id = m
                        .id
                        .clone()
                        .or_else(|| m.source.clone())
                        .or_else(|| {
                            target
                                .as_deref()
                                .and_then(|t| t.rsplit('/').next())
                                .map(str::to_owned)
                        })
                        .filter(|i| !i.is_empty())
                        .ok_or_else(|| bad(format!("--mount={}: a secret needs an id", raw.raw)))?;
                    let Some(source) = ctx.opts.secrets.get(&id).cloned() else {
                        if m.required {
                            return Err(BuildError::Secret {
                                id,
                                reason: "required by the Dockerfile but not given (--secret id=…,src=FILE or env=VAR)".into(),
                            });
                        }
                        continue;
                    };
                    // With only env=, the secret is not a file (BuildKit 0.13 and later).
                    let target = match (&target, &m.env) {
                        (Some(t), _) => Some(t.clone()),
                        (None, Some(_)) => None,
                        (None, None) => Some(format!("/run/secrets/{id}")),
                    };
                    RunMount::Secret {
                        id,
                        source,
                        target,
                        env: m.env.clone(),
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    }
                }
                MountType::Ssh => {
                    let id =
                        m.id.clone()
                            .filter(|i| !i.is_empty())
                            .unwrap_or_else(|| "default".into());
                    let target = target
                        .clone()
                        .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_count}"));
                    ssh_count += 1;
                    let Some(socket) = ctx.opts.ssh.get(&id).cloned() else {
                        if m.required {
                            return Err(bad(format!(
                                "no SSH agent socket {id:?} was given (--ssh {id}=SOCKET, or --ssh {id} for $SSH_AUTH_SOCK)"
                            )));
                        }
                        continue;
                    };
                    RunMount::Ssh { target, socket }
                }
            };
            run_mounts.push(mount);
        }
        // The command: heredocs as BuildKit runs them.
        let mut script: Option<(String, String)> = None;
        let args: Vec<String> = match &r.cmd {
            CmdLine::Exec(a) => a.clone(),
            CmdLine::Shell(s) if ins.heredocs.is_empty() => {
                let mut a = state.config.shell();
                a.push(s.clone());
                a
            }
            CmdLine::Shell(s) => {
                let single = ins.heredocs.len() == 1
                    && berth_dockerfile_marker_only(s, &ins.heredocs[0].name);
                if single {
                    let h = &ins.heredocs[0];
                    if h.content.starts_with("#!") {
                        script = Some((h.name.clone(), h.content.clone()));
                        vec![format!("/dev/pipes/{}", h.name)]
                    } else {
                        let mut a = state.config.shell();
                        a.push(h.content.clone());
                        a
                    }
                } else {
                    let mut full = s.clone();
                    full.push('\n');
                    for h in &ins.heredocs {
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                        full.push('\n');
                    }
                    let mut a = state.config.shell();
                    a.push(full);
                    a
                }
            }
        };
        if args.is_empty() {
            return Err(bad("empty command".into()));
        }
        // RUN sees the image's ENV and the stage's ARGs.
        let mut env: Vec<String> = scope
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let user = state.config.user();
        let cwd = state.config.workdir();
        let isolated = matches!(r.network, Some(Network::None));
        let mut facts = StepFacts::default();
        facts.fact("command", serde_json::to_string(&args).unwrap_or_default());
        facts.fact("env", env.join("\n"));
        facts.fact("user", user.clone());
        facts.fact("workdir", cwd.clone());
        if isolated {
            facts.fact("network", "none");
        }
        for (i, m) in run_mounts.iter().enumerate() {
            facts.fact(&format!("mount {i}"), m.describe());
        }
        if !mount_facts.is_empty() {
            facts.fact("mount sources", mount_facts.join("; "));
        }
        facts.files = mount_files.into_iter().collect();
        let inputs = if mount_digests.is_empty() {
            None
        } else {
            let mut h = berth_oci::Algorithm::Sha256.hasher();
            for d in &mount_digests {
                h.update(d.to_string().as_bytes());
                h.update(b"\n");
            }
            Some(h.finish())
        };
        if let Some((n, c)) = &script {
            facts.fact("script", format!("{n}\n{c}"));
        }
        let arch = state.platform.architecture.clone();
        let platform_s = state.platform.to_string();
        let sandbox = self.sandbox.clone();
        let step_label = position.to_owned();
        let text = short(&ins.original);
        let store = self.store.clone();
        let result = self.fs_step(
            ctx,
            step,
            state,
            facts,
            inputs.as_ref(),
            move |root, work| {
                sandbox.can_execute(&arch)?;
                let ids = users::resolve(root, &user, true).map_err(|e| bad(e.to_string()))?;
                let cwd_host =
                    crate::context::resolve_dest(root, Path::new(cwd.trim_start_matches('/')))
                        .map_err(|p| bad(format!("WORKDIR {cwd}: {}", p.reason(false))))?;
                fs::create_dir_all(&cwd_host).map_err(io(&cwd_host))?;
                let bundle = work.join("bundle");
                fs::create_dir(&bundle).map_err(io(&bundle))?;
                // Held until the container is gone: cache locks, copies, secret files.
                let placed = mounts::materialize(&store, work, &run_mounts)?;
                let mut extra = placed.mounts.clone();
                if let Some((name, content)) = &script {
                    let p = bundle.join("script");
                    fs::write(&p, content).map_err(io(&p))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
                    extra.push(ExtraMount::Bind {
                        source: p,
                        target: format!("/dev/pipes/{name}"),
                        readonly: true,
                    });
                }
                let mut env = env.clone();
                env.extend(placed.env.iter().map(|e| e.as_str().to_owned()));
                let cfg = RunConfig {
                    args: args.clone(),
                    env,
                    cwd: cwd.clone(),
                    user: ids,
                    isolated_network: isolated,
                    mounts: extra,
                };
                let points = mount_points(&cfg);
                let existed: Vec<bool> = points
                    .iter()
                    .map(|p| fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_ok())
                    .collect();
                write_bundle(&bundle, root, &cfg)?;
                let container = format!("berth-{:016x}", rand::random::<u64>());
                let mut sink = LineSink::new(ctx.progress, id);
                let exit = sandbox.run(&bundle, &container, &mut sink)?;
                sink.flush_partial();
                // The runtime created mount points the image did not have; they are not changes.
                let upper = work.join("upper");
                for (p, existed) in points.iter().zip(existed) {
                    if !existed {
                        remove_stub(&upper, Path::new(p.trim_start_matches('/')));
                    }
                }
                let Exit::Code(code) = exit;
                if code != 0 {
                    return Err(BuildError::RunFailed {
                        step: step_label.clone(),
                        platform: platform_s.clone(),
                        instruction: text.clone(),
                        code,
                        tail: sink.tail(),
                    });
                }
                drop(placed);
                Ok(())
            },
        );
        drop(mount_trees);
        result
    }
}

/// Whether a RUN's shell text is only the marker of its single heredoc (`<<EOF`, `<<-EOF`,
/// `<<"EOF"`).
fn berth_dockerfile_marker_only(s: &str, name: &str) -> bool {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim();
    let unq = rest.trim_matches(|c| c == '"' || c == '\'');
    unq == name
}

/// Removes a mount stub the runtime created (an empty file or directory), and parents it
/// created that hold nothing else.
fn remove_stub(upper: &Path, rel: &Path) {
    // The container may have put a symlink on the way: never follow one out of the upper dir.
    let mut cur = upper.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                _ => return,
            }
        }
    }
    let p = upper.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => {
            if fs::remove_dir(&p).is_err() {
                return;
            }
        }
        Ok(m) if m.is_file() && m.len() == 0 => {
            if fs::remove_file(&p).is_err() {
                return;
            }
        }
        _ => return,
    }
    // Parents copied up or created only to hold the stub.
    let mut parent = rel.parent();
    while let Some(par) = parent {
        if par.as_os_str().is_empty() {
            break;
        }
        let dir = upper.join(par);
        let opaque = rustix::fs::lgetxattr(&dir, "trusted.overlay.opaque", &mut [0u8; 4]).is_ok();
        if opaque || fs::remove_dir(&dir).is_err() {
            break;
        }
        parent = par.parent();
    }
}

/// Turns RUN output into lines for the progress sink, keeping the last ones for errors.
struct LineSink<'a> {
    progress: &'a dyn Progress,
    id: usize,
    partial: Vec<u8>,
    tail: std::collections::VecDeque<String>,
}

const TAIL_LINES: usize = 20;

impl<'a> LineSink<'a> {
    fn new(progress: &'a dyn Progress, id: usize) -> Self {
        LineSink {
            progress,
            id,
            partial: Vec::new(),
            tail: std::collections::VecDeque::new(),
        }
    }

    fn line(&mut self, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_owned();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.progress.event(Event::Output { id: self.id, line });
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            self.line(&p);
        }
    }

    fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let rest = self.partial.split_off(pos + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            self.line(&line);
        }
        // A very long line without newline is emitted in pieces.
        if self.partial.len() > 64 * 1024 {
            let p = std::mem::take(&mut self.partial);
            self.line(&p);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ADD's remote sources (see [`Builder::remote_sources`]).
#[derive(Debug, Default)]
struct Remote {
    urls: Vec<String>,
    downloads: Vec<fetch::Download>,
    gits: Vec<git::GitSource>,
    checkouts: Vec<git::Checkout>,
    keep_git_dir: bool,
}

impl Remote {
    fn len(&self) -> usize {
        self.urls.len() + self.gits.len()
    }
}

/// The tree `--from` names, and what keeps it readable.
struct SourceTree<'a> {
    tree: Tree,
    /// The cache key of the stage or image it is (None: the context or a named directory).
    key: Option<Digest>,
    _guard: Option<ReadOnlyRoot<'a>>,
}

/// A read-only rootfs mount, unmounted on drop.
struct ReadOnlyRoot<'a> {
    sandbox: &'a dyn Sandbox,
    dir: Option<TempDir>,
    root: PathBuf,
}

impl Drop for ReadOnlyRoot<'_> {
    fn drop(&mut self) {
        if self.dir.is_some() {
            let _ = self.sandbox.unmount(&self.root);
        }
    }
}

/// ADD: with `unpack`, tar archives (plain, gzip, zstd) are extracted into the destination;
/// anything else is copied as COPY would.
#[allow(clippy::too_many_arguments)]
fn add_into(
    root: &Path,
    dest: &str,
    matched: &[(Match, Vec<Entry>)],
    owner: Option<(u32, u32)>,
    chmod: Option<&Chmod>,
    many: bool,
    unpack: bool,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<(), BuildError> {
    let mut plain = Vec::new();
    for (m, entries) in matched {
        if unpack && m.meta.is_file() && is_archive(&m.host) {
            let target =
                crate::context::resolve_dest(root, Path::new(dest.trim_start_matches('/')))
                    .map_err(|p| bad(p.reason(false)))?;
            fs::create_dir_all(&target).map_err(io(&target))?;
            let f = fs::File::open(&m.host).map_err(io(&m.host))?;
            let r = crate::layer::decompressor(std::io::BufReader::new(f)).map_err(io(&m.host))?;
            crate::layer::unpack_tar(r, &target, crate::layer::UnpackMode::Plain).map_err(|e| {
                match e {
                    BuildError::Io { path, source } if path.as_os_str().is_empty() => {
                        BuildError::Io {
                            path: m.host.clone(),
                            source,
                        }
                    }
                    other => other,
                }
            })?;
        } else {
            plain.push((m.clone(), entries.clone()));
        }
    }
    if plain.is_empty() {
        return Ok(());
    }
    copy_into(
        root,
        &CopySpec {
            dest,
            sources: &plain,
            owner,
            chmod,
            parents: false,
            many,
        },
    )
}

/// Whether a file is a tar archive (possibly gzip- or zstd-compressed), by content.
fn is_archive(path: &Path) -> bool {
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = crate::layer::decompressor(std::io::BufReader::new(f)) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match std::io::Read::read(&mut r, &mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n == 512 && (&head[257..262] == b"ustar")
}

/// What `name` matches in a tree, each match walked.
fn walked(
    t: &Tree,
    name: &str,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<Vec<(Match, Vec<Entry>)>, BuildError> {
    let mut out = Vec::new();
    for m in t.matches(name).map_err(|p| bad(p.reason(false)))? {
        let e = t.walk(&m, None)?;
        out.push((m, e));
    }
    Ok(out)
}

fn with_line(e: BuildError, line: u32, original: &str) -> BuildError {
    match e {
        BuildError::Source { path, reason, .. } => BuildError::Source {
            line,
            instruction: short(original),
            path,
            reason,
        },
        other => other,
    }
}

/// The stage a `--from` names (by name or index), if any.
fn resolve_source(graph: &StageGraph, from: &str, current: usize) -> Option<usize> {
    let stage = graph.stages.get(current)?;
    for s in &stage.sources {
        match s {
            Source::Stage(i) => {
                let st = &graph.stages[*i];
                if st.name.as_deref() == Some(from.to_ascii_lowercase().as_str())
                    || from.parse::<usize>().ok() == Some(*i)
                {
                    return Some(*i);
                }
            }
            Source::Image(_) => {}
            _ => {}
        }
    }
    graph
        .by_name(from)
        .filter(|i| *i < current)
        .or_else(|| from.parse::<usize>().ok().filter(|i| *i < current))
}

const EPOCH_ZERO: &str = "1970-01-01T00:00:00Z";

/// `SOURCE_DATE_EPOCH` as a timestamp when set, else `default`.
fn epoch_or(epoch: Option<i64>, default: &str) -> String {
    match epoch.and_then(|e| u64::try_from(e).ok()) {
        Some(secs) => rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
        None => default.to_owned(),
    }
}

fn config_str(bytes: &[u8], key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get(key)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn env_vars(c: &ImageConfig) -> Vars {
    c.env().into_iter().collect()
}

/// CMD/ENTRYPOINT argv: exec form as is, shell form through the stage's SHELL.
fn argv(cmd: &CmdLine, config: &ImageConfig) -> Vec<String> {
    match cmd {
        CmdLine::Exec(a) => a.clone(),
        CmdLine::Shell(s) => {
            let mut a = config.shell();
            a.push(s.clone());
            a
        }
    }
}

/// The history `created_by` of a filesystem step, as BuildKit writes it.
fn created_by(ins: &Instruction, config: &ImageConfig) -> String {
    match &ins.command {
        Command::Run(r) => match &r.cmd {
            CmdLine::Exec(a) => format!("RUN {} # buildkit", a.join(" ")),
            CmdLine::Shell(s) => {
                let mut text = s.clone();
                for h in &ins.heredocs {
                    text.push('\n');
                    text.push_str(&h.content);
                    text.push_str(&h.name);
                }
                format!("RUN {} {} # buildkit", config.shell().join(" "), text)
            }
        },
        _ => format!("{} # buildkit", ins.original),
    }
}

fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > 80 {
        let cut: String = first.chars().take(77).collect();
        format!("{cut}...")
    } else {
        first.to_owned()
    }
}

/// `WORKDIR`/dest joining: absolute paths stand, relative ones go under the current WORKDIR.
fn join_workdir(workdir: &str, p: &str) -> String {
    if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), p)
    }
}

/// Cleans an absolute path (`/a/./b/../c` → `/a/c`), never above `/`.
fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `EXPOSE 80` → `80/tcp`; `8000-8002/udp` stays a range; bad protocols refused.
fn normalize_port(p: &str) -> Result<String, String> {
    let (port, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let ok = |s: &str| s.parse::<u16>().is_ok();
    let valid = match port.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(port),
    };
    if !valid {
        return Err(format!("invalid containerPort: {port}"));
    }
    Ok(format!("{port}/{proto}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_and_ports() {
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/../x"), "/x");
        assert_eq!(join_workdir("/app", "src"), "/app/src");
        assert_eq!(join_workdir("/app/", "/etc"), "/etc");
        assert_eq!(normalize_port("80").unwrap(), "80/tcp");
        assert_eq!(normalize_port("53/UDP").unwrap(), "53/udp");
        assert!(normalize_port("80/foo").is_err());
        assert!(normalize_port("http").is_err());
        assert!(berth_dockerfile_marker_only("<<EOF", "EOF"));
        assert!(berth_dockerfile_marker_only("<<-\"EOF\"", "EOF"));
        assert!(!berth_dockerfile_marker_only("python3 <<EOF", "EOF"));
    }
}
