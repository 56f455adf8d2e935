//! `berth-registry` — the HTTP registry behind `berth serve`.
//!
//! [`Registry`] holds the operations (upload, verify, commit, manifest validation, tags,
//! referrers) over `berth-store`'s traits; [`router`] exposes them as the OCI Distribution v1.1
//! API with thin axum handlers; every failure is a [`RegistryError`], which knows its HTTP status
//! and OCI error code.

mod access;
mod ecr;
mod error;
mod gc;
mod http;
pub mod lifecycle;
mod lifecycle_run;
mod repos;
mod route;
pub mod server;
mod service;

pub use access::{Caller, Clock, Denial, SystemClock, Target};
pub use error::{ErrorCode, InternalError, RegistryError};
pub use gc::{GcOptions, GcReport};
pub use http::router;
pub use lifecycle_run::LifecycleOutcome;
pub use repos::{ROOT_PREFIX, TemplateSettings};
pub use service::{PutManifest, Registry, RegistryConfig, UploadStatus};
