//! `berth-registry` — the HTTP registry behind `berth serve`.
//!
//! [`Registry`] holds the operations (upload, verify, commit, manifest validation, tags,
//! referrers) over `berth-store`'s traits; [`router`] exposes them as the OCI Distribution v1.1
//! API with thin axum handlers; every failure is a [`RegistryError`], which knows its HTTP status
//! and OCI error code.

mod access;
pub mod audit;
mod ecr;
mod error;
mod gc;
mod http;
pub mod lifecycle;
mod lifecycle_run;
pub mod metrics;
pub mod pullthrough;
pub mod replication;
mod repos;
mod route;
pub mod scanning;
pub mod server;
mod service;

pub use access::{Caller, Clock, Denial, SystemClock, Target};
pub use error::{ErrorCode, InternalError, RegistryError};
pub use gc::{GcOptions, GcReport};
pub use http::{Mounted, router, router_with};
pub use lifecycle_run::LifecycleOutcome;
pub use metrics::metrics_router;
pub use repos::{
    CREATE_ON_PUSH_DESCRIPTION, ROOT_PREFIX, TemplateInstall, TemplateSettings,
    create_on_push_template,
};
pub use scanning::ScanConfig;
pub use service::{PutManifest, Registry, RegistryConfig, UploadStatus};
