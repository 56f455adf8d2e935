//! Durable renames: a file renamed into place survives a power loss only once its directory is
//! synced too (the rename is a change to the directory).

use std::path::Path;

/// Syncs the directory holding `path`, after `path` was renamed into it.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// [`sync_parent`] off the async threads.
pub async fn sync_parent_async(path: &Path) -> std::io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || sync_parent(&path))
        .await
        .map_err(std::io::Error::other)?
}
