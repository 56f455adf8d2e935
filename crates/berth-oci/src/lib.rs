//! `berth-oci` — the pure model every other berth crate shares.
//!
//! No I/O runtime lives here (a test enforces that this crate never depends on tokio, axum, hyper or
//! reqwest). It knows how to *validate* and *describe* things: digests ([`Digest`]), repository names
//! and tags ([`RepoName`], [`Tag`], [`Reference`]), image references as users type them
//! ([`ImageRef`], with Docker's normalisation and ECR host recognition), media types ([`media`])
//! and manifests ([`Manifest`]), always keeping the raw bytes a digest was computed over.

mod digest;
pub mod json;
mod manifest;
pub mod media;
mod name;
mod platform;
mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Manifest, ManifestError, ManifestKind, RefKind, Reference as ManifestRef};
pub use name::{NameError, Reference, RepoName, Tag};
pub use platform::{Platform, PlatformError};
pub use reference::{
    DOCKER_HUB, ECR_AUTH_HEADER, EcrRegistry, ImageRef, ReferenceError, ecr_auth_value,
    parse_ecr_auth,
};

/// The largest manifest berth accepts (the OCI spec asks registries to accept at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
