//! Layer inventories cached by layer digest, so a rescan of an image that shares layers reads
//! only the new ones. One JSON file per layer under a version directory (a change to what an
//! inventory holds bumps it); written to a temporary file, synced and renamed into place, so a
//! crash never leaves a partial entry, and an entry that does not parse is treated as absent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::ScanError;
use crate::inventory::LayerInventory;

/// Bumped whenever the parsers find more (or other) things in the same layer.
const VERSION: &str = "v2";

/// The inventory cache of a directory.
#[derive(Debug, Clone)]
pub struct InventoryCache {
    dir: PathBuf,
}

impl InventoryCache {
    /// The cache under `dir` (created on first write).
    pub fn new(dir: &Path) -> InventoryCache {
        InventoryCache {
            dir: dir.join(VERSION),
        }
    }

    /// The entry file of a digest (`sha256:…`); `None` for anything that is not
    /// `ALGORITHM:HEX`, so a digest can never name a path outside the cache.
    fn file(&self, digest: &str) -> Option<PathBuf> {
        let (alg, hex) = digest.split_once(':')?;
        let ok = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
        };
        (ok(alg, b"_+.-") && ok(hex, b"") && hex.len() >= 32)
            .then(|| self.dir.join(alg).join(format!("{hex}.json")))
    }

    /// A cached inventory.
    pub fn get(&self, digest: &str) -> Option<LayerInventory> {
        let data = std::fs::read(self.file(digest)?).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Caches an inventory (atomically).
    pub fn put(&self, digest: &str, inv: &LayerInventory) -> Result<(), ScanError> {
        let Some(file) = self.file(digest) else {
            return Ok(());
        };
        let parent = file.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .map_err(|e| ScanError::io(format!("creating {}", parent.display()), e))?;
        let data = serde_json::to_vec(inv).map_err(|e| ScanError::Record {
            what: digest.to_owned(),
            message: e.to_string(),
        })?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)
            .map_err(|e| ScanError::io(format!("writing in {}", parent.display()), e))?;
        tmp.write_all(&data)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| ScanError::io(format!("writing {}", file.display()), e))?;
        tmp.persist(&file)
            .map_err(|e| ScanError::io(format!("writing {}", file.display()), e.error))?;
        Ok(())
    }

    /// A layer's inventory from the cache (`true`), else what `read` makes of the layer
    /// (`false`), then cached — a failure to cache is logged, never the scan's failure.
    pub async fn get_or_read<E>(
        &self,
        digest: &str,
        read: impl std::future::Future<Output = Result<LayerInventory, E>>,
    ) -> Result<(LayerInventory, bool), E> {
        if let Some(inv) = self.get(digest) {
            return Ok((inv, true));
        }
        let inv = read.await?;
        if let Err(e) = self.put(digest, &inv) {
            tracing::warn!(layer = %digest, error = %e, "caching a layer inventory failed");
        }
        Ok((inv, false))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_digests_that_are_not_names() {
        let dir = tempfile::tempdir().unwrap();
        let c = InventoryCache::new(dir.path());
        let d = format!("sha256:{}", "ab".repeat(32));
        assert!(c.get(&d).is_none());
        let mut inv = LayerInventory::default();
        inv.whiteouts.push("etc/x".into());
        c.put(&d, &inv).unwrap();
        assert_eq!(c.get(&d), Some(inv.clone()));
        assert!(c.file("sha256:../../etc/passwd").is_none());
        assert!(c.file("sha256/x:abc").is_none());
        c.put("../x", &inv).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
