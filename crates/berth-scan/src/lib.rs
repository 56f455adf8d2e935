//! `berth-scan` — the image scanner (layer 2, beside `berth-lint`).
//!
//! - [`layer::read_layer`] reads one layer as a stream (gzip, zstd or plain tar) into a
//!   [`LayerInventory`]: the packages of each evidence file (dpkg's status and `status.d`,
//!   apk's installed database, the rpm database, Python distributions, npm packages, Java
//!   archives, Go binaries' build info, cargo-auditable binaries), the layer's whiteouts and
//!   opaque directories, `os-release`, and notes on what was skipped. Nothing is extracted.
//! - [`ImageInventory::merge`] folds the layers bottom first: a whiteout or opaque directory
//!   removes what lower layers had, and every package keeps the layer that introduced it.
//! - [`db::Database`] is the offline OSV database (SQLite, indexed by ecosystem and package).
//! - [`matcher::findings`] matches an inventory against it: one finding per advisory and
//!   package, with the fixed version, ECR's severity and the introducing layer.
//! - [`version`] compares versions in each ecosystem's own order; [`osv`] reads OSV records and
//!   decides whether a version is affected, what fixes it and how severe it is.

mod binary;
pub mod cache;
pub mod db;
pub mod error;
pub mod inventory;
mod java;
pub mod layer;
pub mod matcher;
pub mod osv;
pub mod parse;
pub mod suppress;
pub mod version;

pub use error::ScanError;
pub use inventory::{
    Ecosystem, ImageInventory, LayerInventory, Located, OsRelease, Package, PackageKind,
};
