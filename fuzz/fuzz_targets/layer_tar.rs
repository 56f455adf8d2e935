//! Layer tars as the builder unpacks a base image (`berth_build::layer`): gzip, zstd or plain,
//! with whiteouts, links, long names and PAX headers. Nothing panics, and nothing is ever
//! written outside the snapshot directory (`..`, absolute names and symlinks that climb out are
//! refused or kept inside).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fn walk(dir: &Path, root: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        assert!(p.starts_with(root), "{} escaped {}", p.display(), root.display());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, root);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("berth-fuzz-layer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("snapshot");
    std::fs::create_dir_all(&root).expect("snapshot dir");
    let _ = berth_build::layer::unpack_layer_bytes(data, &root);
    walk(&root, &root);
    // Nothing beside the snapshot: an escape would land in `base`.
    let beside: Vec<_> = std::fs::read_dir(&base)
        .expect("base")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("snapshot")], "an entry escaped the snapshot");
    let _ = std::fs::remove_dir_all(&base);
});
