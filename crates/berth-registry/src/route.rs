//! Parsing `/v2/<rest>` from the end, so repository names of any depth need no route patterns.

/// What a `/v2/…` path addresses (names and references still unvalidated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(&'a str),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(&'a str, &'a str),
    /// `/v2/<name>/blobs/<digest>`
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(&'a str),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(&'a str, &'a str),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(&'a str, &'a str),
}

/// Parses the part of the path after `/v2/` as the router does: one trailing slash is
/// tolerated (`…/tags/list/`), except where it is part of the route.
pub fn parse_v2(rest: &str) -> Option<Route<'_>> {
    let rest = match rest.strip_suffix('/') {
        Some(r) if !r.ends_with("/blobs/uploads") => r,
        _ => rest,
    };
    parse(rest)
}

/// Parses the part of the path after `/v2/`. `None` when no route matches.
pub fn parse(rest: &str) -> Option<Route<'_>> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    // Every route is `<name>/<suffix>`; the name is everything before the suffix.
    let name_before = |suffix_start: usize| -> Option<&str> {
        let name = rest.get(..suffix_start)?.strip_suffix('/')?;
        (!name.is_empty()).then_some(name)
    };
    if let Some(prefix) = rest.strip_suffix("/tags/list") {
        return (!prefix.is_empty()).then_some(Route::Tags(prefix));
    }
    if let Some(prefix) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return (!prefix.is_empty()).then_some(Route::UploadStart(prefix));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (_, kind) = head.rsplit_once('/')?;
    let name = name_before(head.len() - kind.len())?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            (!name.is_empty()).then_some(Route::Upload(name, last))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_the_end() {
        assert_eq!(parse("_catalog"), Some(Route::Catalog));
        assert_eq!(parse("a/b/c/tags/list"), Some(Route::Tags("a/b/c")));
        assert_eq!(
            parse("a/manifests/latest"),
            Some(Route::Manifest("a", "latest"))
        );
        assert_eq!(
            parse("x/manifests/y/manifests/v1"),
            Some(Route::Manifest("x/manifests/y", "v1"))
        );
        assert_eq!(
            parse("a/b/blobs/sha256:x"),
            Some(Route::Blob("a/b", "sha256:x"))
        );
        assert_eq!(parse("a/b/blobs/uploads/"), Some(Route::UploadStart("a/b")));
        assert_eq!(parse("a/b/blobs/uploads"), Some(Route::UploadStart("a/b")));
        assert_eq!(
            parse("a/blobs/uploads/u-1"),
            Some(Route::Upload("a", "u-1"))
        );
        assert_eq!(
            parse("a/referrers/sha256:x"),
            Some(Route::Referrers("a", "sha256:x"))
        );
        assert_eq!(parse("blobs/uploads/"), None);
        assert_eq!(parse("manifests/x"), None);
        assert_eq!(parse("a/unknown/x"), None);
        assert_eq!(parse("a"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("/manifests/x"), None);
    }
}
