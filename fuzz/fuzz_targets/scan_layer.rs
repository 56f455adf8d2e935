//! Layers as the scanner reads them (`berth_scan::layer::read_layer`): gzip, zstd or plain
//! tar, with whiteouts and every kind of evidence file (dpkg status, apk database, rpm SQLite
//! database, Python metadata, npm package.json, os-release). Nothing panics; an error or an
//! inventory comes back, and merging it with itself never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = berth_scan::layer::Limits::default();
    if let Ok(inv) = berth_scan::layer::read_layer(data, &limits) {
        let merged = berth_scan::ImageInventory::merge(&[inv.clone(), inv]);
        for p in &merged.packages {
            let _ = p.package.purl(merged.os_release.as_ref());
        }
    }
});
