//! `berth-client` — how berth talks to registries.
//!
//! This first part is authentication: [`auth::Challenge`] parses `WWW-Authenticate`;
//! [`auth::DockerConfig`] reads and writes `config.json` as the docker CLI does (`auths`,
//! `credHelpers`, `credsStore`, `DOCKER_CONFIG`), running `docker-credential-<name>` helpers per
//! their protocol.
//!
//! Images move through one model ([`image`]): sources and sinks exchange manifests as raw bytes
//! and blobs as streams verified while they flow. [`copy`] is the transfer engine;
//! [`layout::OciLayout`] is the first source and sink. The registry source/sink, archives and
//! native ECR auth follow (issue 3).

pub mod archive;
pub mod auth;
mod copy;
pub mod durable;
pub mod ecr;
mod error;
pub mod image;
pub mod layout;
pub mod logins;
pub mod registry;

pub use aws_sdk_ecr;
pub use copy::{CopyOptions, CopyReport, ImageSummary, Progress, copy};
pub use error::ClientError;
