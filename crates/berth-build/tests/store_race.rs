//! The build store under concurrent commits of one layer (issue 21, item 8).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use berth_build::Store;
use berth_oci::Digest;

/// Regression: a build looking a snapshot up while another platform's build renames the same
/// snapshot into place once read the directory as missing and then as present in one lookup, and
/// failed with "snapshot … belongs to sha256:X, not sha256:X" (the same digest twice).
#[test]
fn a_lookup_racing_the_commit_of_the_same_snapshot_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for i in 0..300u32 {
        let diff_id = Digest::sha256(format!("layer {i}").as_bytes());
        let tmp = store.temp_dir("snap").unwrap();
        std::fs::write(tmp.path().join("f"), i.to_string()).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let done = Arc::new(AtomicBool::new(false));
        let looker = {
            let (store, barrier, done, diff_id) = (
                store.clone(),
                barrier.clone(),
                done.clone(),
                diff_id.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let mut found = false;
                while !found {
                    let finished = done.load(Ordering::Acquire);
                    found = store
                        .snapshot(&diff_id)
                        .unwrap_or_else(|e| panic!("lookup {i} raced the commit: {e}"))
                        .is_some();
                    assert!(found || !finished, "snapshot {i} missing after its commit");
                }
            })
        };
        barrier.wait();
        let path = store.commit_snapshot(tmp, &diff_id).unwrap();
        done.store(true, Ordering::Release);
        looker.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join("f")).unwrap(),
            i.to_string()
        );
    }
}
