//! Registry tokens (`berth_iam::token`): verifying arbitrary text never panics and never
//! accepts a forgery; a token issued for fuzzed claims verifies to exactly those claims.

#![no_main]

use std::time::{Duration, SystemTime};

use berth_iam::token::TokenKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::from_bytes([7; 32]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_300_000);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Nothing but a token the key issued verifies; the fuzzer cannot compute its MAC.
    assert!(key.verify(text, now).is_err(), "accepted a forged token {text:?}");
    // Claims from the input: access key id | scope.
    let (id, scope) = text.split_once('|').unwrap_or((text, ""));
    let scope = (!scope.is_empty()).then_some(scope);
    if let Ok(issued) = key.issue_scoped(id, 3, scope, now, Duration::from_secs(3600)) {
        let claims = key
            .verify(issued.password.expose(), now)
            .expect("a token just issued verifies");
        assert_eq!(claims.access_key_id, id);
        assert_eq!(claims.key_version, 3);
        assert_eq!(claims.scope.as_deref(), scope);
        let other = TokenKey::from_bytes([8; 32]);
        assert!(other.verify(issued.password.expose(), now).is_err());
    }
});
