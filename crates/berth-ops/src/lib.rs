//! berth's operations: build, push, copy, inspect, ensure a repository, list images, lint and
//! release — each a function taking a typed request and returning a typed report (`Serialize` +
//! `JsonSchema`). The CLI renders the reports as text or `--json`; the MCP server (`berth-mcp`)
//! returns them as structured tool output. Neither front end holds workflow logic.
//!
//! Layer 3: depends on `berth-build`, `berth-client`, `berth-lint`, `berth-scan`,
//! `berth-dockerfile` and `berth-oci`; never on the registry server, the MCP server or the CLI.

pub mod attest;
pub mod build;
pub mod build_cache;
pub mod cache_rules;
pub mod endpoint;
pub mod error;
pub mod findings;
pub mod inspect;
pub mod lifecycle;
pub mod lint;
pub mod release;
pub mod replication;
pub mod repo;
pub mod scan;
pub mod scan_format;
pub mod ssh_agent;
pub mod transfer;

pub use error::{OpsError, Result, ResultExt};
