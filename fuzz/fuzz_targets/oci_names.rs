//! Digests, repository names, tags, references and Docker image references (`berth-oci`):
//! parsing never panics, and what parses prints back to something that parses to the same.

#![no_main]

use berth_oci::{Digest, ImageRef, Reference, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(Digest::parse(&d.to_string()).ok(), Some(d));
    }
    if let Ok(n) = RepoName::parse(s) {
        assert_eq!(RepoName::parse(n.as_str()).ok(), Some(n));
    }
    if let Ok(t) = Tag::parse(s) {
        assert_eq!(Tag::parse(&t.to_string()).ok(), Some(t));
    }
    if let Ok(r) = Reference::parse(s) {
        assert!(Reference::parse(&r.to_string()).is_ok());
    }
    if let Ok(r) = ImageRef::parse(s) {
        let again = ImageRef::parse(&r.to_string());
        assert!(again.is_ok(), "{s:?} -> {r} does not parse again");
    }
});
