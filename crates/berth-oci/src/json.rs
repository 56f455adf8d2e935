//! A guard against deeply nested JSON, checked on the raw bytes before any parser recurses.
//!
//! `serde_json` stops at 128 levels, but ignored members (`IgnoredAny`, unknown fields) are
//! skipped without that limit in some paths, and nothing legitimate berth reads nests deeply:
//! manifests and ECR requests stay under ten levels. Every JSON document that crosses a trust
//! boundary is checked here first.

/// The deepest nesting berth accepts in any JSON document it reads.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether `bytes` nests objects and arrays deeper than `limit`. Brackets inside strings
/// (escapes included) do not count. Malformed JSON is left to the parser.
pub fn too_deep(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings_only() {
        assert!(!too_deep(br#"{"a":[1,{"b":[]}]}"#, 4));
        assert!(too_deep(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!too_deep(br#"{"a":"[[[[[[[[[[\"[[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(too_deep(deep.as_bytes(), MAX_JSON_DEPTH));
        assert!(!too_deep(deep.as_bytes(), 40));
        assert!(!too_deep(b"", 0));
    }
}
