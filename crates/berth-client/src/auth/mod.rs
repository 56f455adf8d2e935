//! Credentials and challenges.

mod challenge;
mod docker_config;

pub use challenge::{Challenge, Scheme};
pub use docker_config::{Credentials, DockerConfig, registry_key};
