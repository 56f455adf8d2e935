//! `berth mcp`: berth's operations as MCP tools, over stdio and streamable HTTP (`rmcp`).
//!
//! Layer 4: a thin adapter over `berth-ops`. Every tool takes typed parameters (their JSON
//! schema is the tool's `inputSchema`), returns the operation's typed report as structured
//! content (its schema is the `outputSchema`), fails with `isError: true` and a structured
//! error (`kind`, `message`, the failing `step`, a `hint`), and carries annotations. Tools with a
//! side effect are refused unless writes are allowed ([`Policy::allow_writes`]); registries and
//! repositories can be allow-listed and paths are confined to the configured roots.
//!
//! The three `finch_*` tools take the same names and parameters as awslabs' Finch MCP server,
//! so guides written for it work unchanged; they push the tag asked for (plus the configured
//! extra tags), keep every platform and handle registry ports.

mod params;
mod policy;
mod progress;
mod server;

pub use policy::Policy;
pub use server::{BerthMcp, http_router, serve_stdio};

/// What can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The transport failed (stdio closed unexpectedly, a socket error).
    #[error("MCP transport: {0}")]
    Transport(String),
    /// A configured root does not exist.
    #[error("MCP root {path}: {source}")]
    Root {
        /// The root as given.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
}
