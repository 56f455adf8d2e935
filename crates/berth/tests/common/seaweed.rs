//! SeaweedFS for the S3 tests: the launcher `berth-bench` uses too (one file, included here).

use std::path::PathBuf;

#[path = "../../../berth-bench/src/seaweed.rs"]
mod launcher;

#[allow(unused_imports)]
pub use launcher::{KEY_ID, SECRET, Seaweed};

/// The `weed` binary: `BERTH_WEED`, else the venv `scripts/test.sh` makes.
pub fn weed() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_WEED") {
        return PathBuf::from(p);
    }
    super::workspace().join("target/weed-venv/bin/weed")
}

/// Starts a store with bucket `bucket` (panics with the store's log if it does not start).
pub fn start(bucket: &str) -> Seaweed {
    Seaweed::start(&weed(), bucket).unwrap_or_else(|e| panic!("{e}"))
}
