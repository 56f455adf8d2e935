//! Manifest and index parsing (`berth_oci::Manifest::parse`), under every content type a
//! registry accepts and none: never panics, and whatever it accepts names only valid digests.

#![no_main]

use berth_oci::Manifest;
use libfuzzer_sys::fuzz_target;

const TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(selector) % TYPES.len()];
    if let Ok(m) = Manifest::parse(content_type, bytes) {
        for r in &m.references {
            assert!(berth_oci::Digest::parse(&r.digest.to_string()).is_ok());
        }
    }
});
