//! `berth-client` — how berth talks to registries.
//!
//! This first part is authentication: [`auth::Challenge`] parses `WWW-Authenticate`;
//! [`auth::DockerConfig`] reads and writes `config.json` as the docker CLI does (`auths`,
//! `credHelpers`, `credsStore`, `DOCKER_CONFIG`), running `docker-credential-<name>` helpers per
//! their protocol. The transfer engine, sources and sinks follow (issue 3).

pub mod auth;
mod error;

pub use error::ClientError;
