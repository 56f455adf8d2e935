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

mod copy;
mod run;

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
    /// `--cache-from`: step records a step may be answered from when the store has none.
    pub cache_from: Vec<cache::RemoteCache>,
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
            cache_from: Vec::new(),
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
    /// The images the build read (`FROM`, `COPY --from`, mounts): each reference as written
    /// (or the named context's) and the platform manifest it resolved to, in first-use order.
    pub bases: Vec<(String, Digest)>,
    /// The cache key of every filesystem step of the build (hit or run), with whether its
    /// stage is on the target's `FROM` chain (what `--cache-to mode=min` exports).
    pub cache_keys: Vec<(Digest, bool)>,
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
    /// The first step of this state's chain that ran in this build (`None`: all of it came
    /// from the cache or a base image): what a config-only step reports.
    ran: Option<usize>,
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
    /// The images read so far (see [`PlatformImage::bases`]).
    bases: Mutex<Vec<(String, Digest)>>,
    /// The filesystem steps' keys so far, with their stage.
    keys: Mutex<Vec<(Digest, usize)>>,
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
                            bases: Mutex::new(Vec::new()),
                            keys: Mutex::new(Vec::new()),
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
        let mut image = self.commit_image(&fin)?;
        image.bases = std::mem::take(&mut *ctx.bases.lock().unwrap_or_else(|p| p.into_inner()));
        // The target's FROM chain: the stages whose layers the image holds.
        let mut chain = vec![target];
        while let Some(Base::Stage(i)) = chain.last().map(|&s| &graph.stages[s].base) {
            if chain.contains(i) {
                break;
            }
            chain.push(*i);
        }
        image.cache_keys = ctx
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, si)| (k.clone(), chain.contains(si)))
            .collect();
        Ok(image)
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
            bases: Vec::new(),
            cache_keys: Vec::new(),
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
                ran: None,
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
        self.announce_from(ctx, &label, total, from_ins, state.ran);
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

    /// A stage's FROM line: cached, unless the stage it starts from ran a step in this build.
    fn announce_from(
        &self,
        ctx: &Ctx<'_>,
        label: &str,
        total: usize,
        from: &Instruction,
        ran: Option<usize>,
    ) {
        let id = self.next_id(ctx);
        ctx.progress.event(Event::Step {
            id,
            platform: ctx.target.to_string(),
            position: format!("{label} 1/{total}"),
            text: from.original.clone(),
        });
        config_step_done(ctx, id, ran, 0.0);
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
        {
            let mut bases = ctx.bases.lock().unwrap_or_else(|p| p.into_inner());
            if !bases.iter().any(|(r, d)| *r == key_src && *d == manifest) {
                bases.push((key_src, manifest.clone()));
            }
        }
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
            ran: None,
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
        config_step_done(ctx, id, state.ran, started.elapsed().as_secs_f64());
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
            if ctx.opts.layers.keep_mtimes {
                facts.fact("rewrite-timestamp", "false");
            }
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
        ctx.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.clone(), si));
        let hit = if ctx.opts.no_cache {
            None
        } else {
            cache::lookup(&self.store, &key).or_else(|| self.remote_hit(ctx, id, &key))
        };
        if let Some(rec) = hit {
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
            match (&prev, ctx.opts.cache_from.is_empty()) {
                // A fresh store with a cache source: the source is what did not have it.
                (None, false) => format!(
                    "not in cache source {}",
                    ctx.opts
                        .cache_from
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => cache::explain(prev.as_ref(), &parent, &facts, &key),
            }
        };
        ctx.progress.event(Event::Miss { id, reason });
        state.ran.get_or_insert(id);
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

    /// A step answered from a `--cache-from` source: its layer blob fetched into the store
    /// (the only blob of the source this step reads), its record written locally. A source
    /// that fails to give the blob is reported and the step runs.
    fn remote_hit(&self, ctx: &Ctx<'_>, id: usize, key: &Digest) -> Option<CacheRecord> {
        let (remote, rec) = ctx
            .opts
            .cache_from
            .iter()
            .find_map(|c| Some((c, c.records.get(key.hex())?.clone())))?;
        if let Some(l) = &rec.layer
            && !self.store.has_blob(&l.digest)
        {
            let sink = StoreImage::new(self.store.clone(), None);
            let fetched = self.rt.block_on(async {
                let stream = remote.source.blob(&l.digest, l.size).await?;
                berth_client::image::ImageSink::put_blob(&sink, &l.digest, l.size, stream).await
            });
            if let Err(e) = fetched {
                ctx.progress.event(Event::Output {
                    id,
                    line: format!("cache source {}: {}: {e}", remote.name, l.digest),
                });
                return None;
            }
        }
        self.store.write_record("cache", key.hex(), &rec).ok()?;
        Some(rec)
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

/// A config-only step (and a FROM line) says whether the filesystem it edits came from the cache
/// (`CACHED`) or from a step that ran in this build (a miss naming that step), as every
/// cached step does; it has no cache record of its own.
fn config_step_done(ctx: &Ctx<'_>, id: usize, ran: Option<usize>, seconds: f64) {
    ctx.progress.event(match ran {
        None => Event::Cached { id },
        Some(step) => Event::Miss {
            id,
            reason: format!("step #{step} before it ran"),
        },
    });
    ctx.progress.event(Event::Done { id, seconds });
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
    use super::run::berth_dockerfile_marker_only;
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
