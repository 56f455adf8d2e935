//! `berth-build` — a daemonless Dockerfile builder.
//!
//! [`Builder::build`] takes a context, a Dockerfile ([`berth_dockerfile`] parses it) and
//! platforms, and leaves one image per platform (plus an index over them) in the [`Store`]:
//! base images come in through [`berth_client`]; RUN steps run in an OCI runtime (runc or crun)
//! over an overlayfs of the layer snapshots; COPY/ADD/WORKDIR are file operations on the same
//! mount; each step's changes become a layer with OCI whiteouts. Steps are cached on their
//! inputs and a miss says why ([`cache`]). Side effects on the host (mounts, containers) go
//! through the [`Sandbox`] trait.

pub mod bundle;
pub mod cache;
pub mod config;
pub mod context;
mod engine;
mod error;
mod fetch;
pub mod fileop;
mod git;
pub mod layer;
mod mounts;
pub mod platform;
pub mod prune;
pub mod rootless;
pub mod sandbox;
pub mod store;
pub mod users;

pub use engine::{
    BuildOptions, BuildResult, Builder, Event, NamedContext, PlatformImage, Progress, Registries,
};
pub use error::BuildError;
pub use layer::{Compression, LayerOptions};
pub use mounts::{MAX_SECRET, SecretSource, restore_cache_mount, write_cache_mount};
pub use sandbox::{HostSandbox, Sandbox};
pub use store::{Store, StoreImage, default_root};
