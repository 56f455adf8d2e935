//! Label rules: DL3048 (key syntax) on every LABEL, and the schema rules (DL3049–DL3058) when the
//! configuration has a `label-schema`.

use berth_dockerfile::{Instruction, KeyValue};

use super::{Cx, unquote};
use crate::LabelType;

/// DL3048: keys that are not lower-case reverse-DNS or plain words, or in reserved namespaces.
pub(crate) fn check_label_instruction(cx: &mut Cx<'_>, ins: &Instruction, pairs: &[KeyValue]) {
    let line = ins.span.start.line;
    if pairs.iter().any(|p| !valid_label_key(&unquote(&p.key))) {
        cx.emit("DL3048", line);
    }
    let schema = &cx.config().label_schema;
    if schema.is_empty() {
        return;
    }
    let mut superfluous = false;
    for p in pairs {
        let key = unquote(&p.key);
        let value = unquote(&p.value);
        match schema.get(&key) {
            None => superfluous = true,
            Some(kind) => {
                if value.is_empty() {
                    cx.emit_msg("DL3051", line, format!("label `{key}` is empty."));
                    continue;
                }
                if value.contains('$') {
                    continue;
                }
                let code = match kind {
                    LabelType::Url if !is_url(&value) => Some(("DL3052", "is not a valid URL.")),
                    LabelType::Rfc3339 if !is_rfc3339(&value) => Some((
                        "DL3053",
                        "is not a valid time format - must conform to RFC3339.",
                    )),
                    LabelType::Spdx if !is_spdx(&value) => {
                        Some(("DL3054", "is not a valid SPDX identifier."))
                    }
                    LabelType::Hash if !is_git_hash(&value) => {
                        Some(("DL3055", "is not a valid git hash."))
                    }
                    LabelType::Semver if !is_semver(&value) => {
                        Some(("DL3056", "does not conform to semantic versioning."))
                    }
                    LabelType::Email if !is_email(&value) => Some((
                        "DL3058",
                        "is not a valid email format - must conform to RFC5322.",
                    )),
                    _ => None,
                };
                if let Some((code, what)) = code {
                    cx.emit_msg(code, line, format!("Label `{key}` {what}"));
                }
            }
        }
    }
    if superfluous && cx.config().strict_labels {
        cx.emit("DL3050", line);
    }
}

/// DL3049: every schema label must be set in the final image (the last stage or its bases).
pub(crate) fn check_schema(cx: &mut Cx<'_>) {
    let schema = &cx.config().label_schema;
    if schema.is_empty() {
        return;
    }
    let Some(last) = cx.stages.len().checked_sub(1) else {
        return;
    };
    let mut present: Vec<String> = Vec::new();
    let mut i = Some(last);
    while let Some(idx) = i {
        present.extend(cx.stages[idx].labels.iter().map(|(k, _, _)| k.clone()));
        i = cx.stages[idx].parent;
    }
    let line = cx.stages[last].line;
    for key in schema.keys() {
        if !present.contains(key) {
            cx.emit_msg("DL3049", line, format!("Label `{key}` is missing."));
        }
    }
}

fn valid_label_key(key: &str) -> bool {
    if key.is_empty() || key.contains('$') {
        return !key.is_empty();
    }
    for reserved in ["com.docker.", "io.docker.", "org.dockerproject."] {
        if key.starts_with(reserved) {
            return false;
        }
    }
    let ok_chars = key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let first = key.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let last = key
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok_chars && first && last && !key.contains("..") && !key.contains("--")
}

fn is_url(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !v.contains(char::is_whitespace)
}

fn is_rfc3339(v: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

fn is_spdx(v: &str) -> bool {
    // An SPDX expression: identifiers (letters, digits, `.`, `-`, `+`) joined by AND/OR/WITH,
    // with parentheses. The identifier list itself changes too often to embed.
    let mut any = false;
    for tok in v.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        if tok.is_empty() || matches!(tok, "AND" | "OR" | "WITH") {
            continue;
        }
        let id = tok.strip_prefix("LicenseRef-").unwrap_or(tok);
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
            || !id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return false;
        }
        any = true;
    }
    any
}

fn is_git_hash(v: &str) -> bool {
    // A full commit id, as hadolint requires (SHA-1 or SHA-256 repositories).
    (v.len() == 40 || v.len() == 64) && v.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_semver(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let (core, _build) = v.split_once('+').unwrap_or((v, ""));
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let num_ok = |n: &&str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
            && (n.len() == 1 || !n.starts_with('0'))
    };
    nums.len() == 3
        && nums.iter().all(num_ok)
        && pre.is_none_or(|p| {
            p.split('.').all(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        })
}

fn is_email(v: &str) -> bool {
    // `Name <user@host>` or `user@host`.
    let addr = match (v.rfind('<'), v.ends_with('>')) {
        (Some(i), true) => &v[i + 1..v.len() - 1],
        _ => v,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_checks() {
        assert!(valid_label_key("org.opencontainers.image.source"));
        assert!(valid_label_key("version"));
        assert!(!valid_label_key("Version"));
        assert!(!valid_label_key("com.docker.thing"));
        assert!(!valid_label_key("a..b"));
        assert!(!valid_label_key("-a"));
        assert!(is_url("https://example.com/x"));
        assert!(!is_url("example.com"));
        assert!(is_rfc3339("2024-01-31T12:00:00Z"));
        assert!(is_rfc3339("2024-01-31T12:00:00.123+02:00"));
        assert!(!is_rfc3339("2024-01-31"));
        assert!(is_spdx("MIT OR Apache-2.0"));
        assert!(is_spdx("GPL-2.0-only WITH Classpath-exception-2.0"));
        assert!(!is_spdx("MIT/Apache"));
        assert!(is_git_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_git_hash("1a2b3c4"));
        assert!(!is_git_hash("xyz1234"));
        assert!(is_semver("1.2.3-rc.1+build.5"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("01.2.3"));
        assert!(is_email("Team <team@example.com>"));
        assert!(!is_email("team"));
    }
}
