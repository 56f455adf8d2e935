//! Rules on FROM, COPY/ADD, ENV/ARG, USER and EXPOSE.

use berth_dockerfile::{ArgDecl, Copy, From, Instruction, KeyValue, Word};

use super::{Cx, is_absolute, unquote};

/// Stage names that shadow a meaning BuildKit gives the word (DL3063).
pub(crate) const RESERVED_STAGE_NAMES: &[&str] = &["scratch", "context"];

/// Archive suffixes ADD extracts (DL3010, DL3020).
const ARCHIVE_SUFFIXES: &[&str] = &[
    ".tar", ".z", ".bz2", ".gz", ".lz", ".lzma", ".tz", ".tb2", ".tbz", ".tbz2", ".tgz", ".tlz",
    ".tpz", ".txz", ".xz", ".zst", ".tzst",
];

pub(crate) fn is_archive(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    ARCHIVE_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

pub(crate) fn is_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["http://", "https://", "git@", "git://", "ssh://"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// DL3006, DL3007, DL3026 on a FROM that is not a stage. `expanded` is the image with the
/// global ARG defaults applied, `None` when it cannot be known.
pub(crate) fn check_base_image(
    cx: &mut Cx<'_>,
    ins: &Instruction,
    _from: &From,
    expanded: Option<&str>,
) {
    let line = ins.span.start.line;
    let Some(image) = expanded else {
        return;
    };
    if image.eq_ignore_ascii_case("scratch") {
        return;
    }
    let (name, tag, digest) = split_reference(image);
    if digest.is_none() {
        match tag {
            None => cx.emit("DL3006", line),
            Some("latest") => cx.emit("DL3007", line),
            Some(_) => {}
        }
    }
    let trusted = &cx.config().trusted_registries;
    if !trusted.is_empty() {
        let registry = registry_of(name);
        if !trusted.iter().any(|t| registry_matches(t, &registry)) {
            cx.emit("DL3026", line);
        }
    }
}

/// `name[:tag][@digest]` → (name, tag, digest).
pub(crate) fn split_reference(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => (
            &rest[..last_slash + i],
            Some(&rest[last_slash + i + 1..]),
            digest,
        ),
        None => (rest, None, digest),
    }
}

/// The registry an image name is pulled from (`docker.io` for Docker Hub names).
pub(crate) fn registry_of(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".to_string(),
    }
}

fn registry_matches(pattern: &str, registry: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    if let Some(suffix) = p.strip_prefix('*') {
        return registry.ends_with(suffix);
    }
    p == registry || (p == "hub.docker.com" && registry == "docker.io")
}

/// DL3029 (a fixed `--platform`) and DL3065 (`--platform=$TARGETPLATFORM`).
pub(crate) fn check_platform(cx: &mut Cx<'_>, ins: &Instruction, from: &From) {
    let Some(p) = &from.platform else {
        return;
    };
    let line = ins.span.start.line;
    let v = unquote(p);
    if v == "$TARGETPLATFORM" || v == "${TARGETPLATFORM}" {
        cx.emit("DL3065", line);
    } else if !v.contains('$') {
        cx.emit("DL3029", line);
    }
}

/// COPY and ADD: DL3010, DL3020, DL3021, DL3022, DL3023, DL3045, DL3067.
pub(crate) fn check_copy(cx: &mut Cx<'_>, ins: &Instruction, c: &Copy, cur: usize, is_add: bool) {
    let line = ins.span.start.line;
    let sources: Vec<String> = c.sources.iter().map(|w| unquote(&w.text)).collect();
    let dest = unquote(&c.dest.text);
    if is_add
        && sources
            .iter()
            .any(|s| !is_url(s) && !is_archive(s) && !s.contains('$'))
    {
        cx.emit("DL3020", line);
    }
    if sources.len() + c.inline.len() > 1 && !dest.ends_with('/') && !dest.contains('$') {
        cx.emit("DL3021", line);
    }
    if !is_add {
        if let Some(from) = &c.from {
            let from = unquote(from).to_ascii_lowercase();
            let own = cx.stage(cur).name.as_deref() == Some(from.as_str());
            if own {
                cx.emit("DL3023", line);
            } else if from.parse::<usize>().is_err()
                && !from.contains('$')
                && !looks_like_image(&from)
                && !cx.stage_names_before(cur).any(|n| n == from)
            {
                cx.emit("DL3022", line);
            }
            if sources.iter().any(|s| s == "/" || s == "/*") && (dest == "/" || dest == "/.") {
                cx.emit("DL3067", line);
            }
        } else {
            for s in sources.iter().filter(|s| is_archive(s) && !s.contains('$')) {
                let name = s.rsplit('/').next().unwrap_or(s).to_string();
                cx.stages[cur].copied_archives.push((name, line));
            }
        }
    }
    if !is_absolute(&dest) && !cx.stage(cur).has_workdir {
        cx.emit("DL3045", line);
    }
}

/// An image reference rather than a stage name: a registry, a path or a tag/digest.
fn looks_like_image(s: &str) -> bool {
    s.contains('/') || s.contains(':') || s.contains('@') || s.contains('.')
}

/// DL3044: `ENV A=1 B=$A` refers to a variable defined in the same instruction.
pub(crate) fn check_env(cx: &mut Cx<'_>, ins: &Instruction, pairs: &[KeyValue]) {
    let line = ins.span.start.line;
    for (i, p) in pairs.iter().enumerate() {
        let refs = variable_refs(&p.value);
        if pairs[..i].iter().any(|q| refs.contains(&q.key)) {
            cx.emit("DL3044", line);
            break;
        }
    }
    check_secret_names(cx, line, pairs.iter().map(|p| (p.key.as_str(), true)));
}

/// DL3064 on ARG declarations.
pub(crate) fn check_arg_secrets(cx: &mut Cx<'_>, ins: &Instruction, args: &[ArgDecl]) {
    let line = ins.span.start.line;
    check_secret_names(
        cx,
        line,
        args.iter().map(|a| (a.name.as_str(), a.default.is_some())),
    );
}

/// DL3064: a variable whose name says it holds a secret.
fn check_secret_names<'n>(
    cx: &mut Cx<'_>,
    line: u32,
    names: impl Iterator<Item = (&'n str, bool)>,
) {
    const MARKERS: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "CREDENTIAL",
    ];
    // Names that say where a secret is, not what it is.
    const BENIGN_SUFFIXES: &[&str] = &["_FILE", "_PATH", "_DIR", "_URL", "_ENDPOINT", "_ID"];
    for (name, _has_value) in names {
        let upper = name.to_ascii_uppercase();
        if MARKERS.iter().any(|m| upper.contains(m))
            && !BENIGN_SUFFIXES.iter().any(|s| upper.ends_with(s))
        {
            cx.emit("DL3064", line);
            return;
        }
    }
}

/// The variable names a word refers to (`$A`, `${A}`, `${A:-x}`).
fn variable_refs(word: &str) -> Vec<String> {
    let b = word.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'$' {
            let start = if b.get(i + 1) == Some(&b'{') {
                i + 2
            } else {
                i + 1
            };
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start {
                out.push(word[start..j].to_string());
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// DL3066: a user name rather than a numeric id.
pub(crate) fn check_user(cx: &mut Cx<'_>, ins: &Instruction, user: &str) {
    let name = user.split(':').next().unwrap_or("");
    if !name.is_empty() && !name.contains('$') && name.parse::<u64>().is_err() {
        cx.emit("DL3066", ins.span.start.line);
    }
}

/// DL3011: ports outside 0–65535.
pub(crate) fn check_expose(cx: &mut Cx<'_>, ins: &Instruction, ports: &[Word]) {
    for w in ports {
        let p = unquote(&w.text);
        if p.contains('$') {
            continue;
        }
        let number = p.split('/').next().unwrap_or("");
        let bad = number
            .split('-')
            .any(|n| n.parse::<u32>().is_ok_and(|v| v > 65535));
        if bad {
            cx.emit("DL3011", ins.span.start.line);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_reference("debian"), ("debian", None, None));
        assert_eq!(split_reference("debian:12"), ("debian", Some("12"), None));
        assert_eq!(
            split_reference("localhost:5000/a/b"),
            ("localhost:5000/a/b", None, None)
        );
        assert_eq!(
            split_reference("localhost:5000/a/b:1@sha256:x"),
            ("localhost:5000/a/b", Some("1"), Some("sha256:x"))
        );
        assert_eq!(registry_of("debian"), "docker.io");
        assert_eq!(registry_of("library/debian"), "docker.io");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
        assert_eq!(registry_of("localhost/a"), "localhost");
        assert!(registry_matches("*.ecr.aws", "public.ecr.aws"));
        assert!(!registry_matches("docker.io", "ghcr.io"));
    }

    #[test]
    fn variable_references() {
        assert_eq!(variable_refs("$A ${B:-x} \\$C $_d1"), vec!["A", "B", "_d1"]);
    }
}
