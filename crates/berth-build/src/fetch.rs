//! `ADD <url>`: HTTP(S) downloads into the store, hashed while they stream, checked against
//! `--checksum`, and revalidated next time with the previous response's `ETag` /
//! `Last-Modified` (a `304` costs no transfer). With `--checksum` and the content already in
//! the store, nothing goes over the network at all.
//!
//! As BuildKit: the file is named after the URL path's last segment (`__unnamed__` when it
//! has none), its mode is 0600 unless `--chmod`, its mtime is the `Last-Modified` time, and a
//! downloaded archive is not unpacked unless `--unpack`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use berth_oci::{Algorithm, Digest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{BuildError, io};
use crate::store::Store;

/// A download in the store.
#[derive(Debug, Clone)]
pub(crate) struct Download {
    /// The content's sha256 digest (the blob's name in the store).
    pub digest: Digest,
    /// The blob's path.
    pub blob: PathBuf,
    /// The file name it gets (`--checksum` aside, BuildKit's rule).
    pub name: String,
    /// `Last-Modified`, as the file's mtime.
    pub modified: Option<SystemTime>,
}

/// What the previous download of a URL gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlRecord {
    digest: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Whether an ADD source is a URL (http or https, not a git repository).
pub(crate) fn is_http(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && !is_git(src)
}

/// Whether an ADD source names a git repository (BuildKit's detection).
pub(crate) fn is_git(src: &str) -> bool {
    if src.starts_with("git@") || src.starts_with("git://") || src.starts_with("ssh://") {
        return true;
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        // Without the `#fragment` or the `?query` BuildKit's git URLs may carry.
        let bare = src.split(['#', '?']).next().unwrap_or(src);
        return bare.ends_with(".git") || bare.ends_with(".git/");
    }
    false
}

/// A URL without its user-info, for messages.
pub(crate) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// The file name `ADD <url>` gives the download: the URL path's last segment.
pub(crate) fn file_name(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
        })
        .map(|s| {
            percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('/'))
        .unwrap_or_else(|| "__unnamed__".to_owned())
}

fn record_name(url: &str) -> String {
    Digest::sha256(url.as_bytes()).hex()[..32].to_owned()
}

/// Downloads `url` into the store (or finds it there) and checks it against `checksum`.
pub(crate) fn fetch(
    store: &Store,
    rt: &tokio::runtime::Handle,
    url: &str,
    checksum: Option<&Digest>,
) -> Result<Download, BuildError> {
    let shown = redact(url);
    let fail = |reason: String| BuildError::Fetch {
        url: shown.clone(),
        reason,
    };
    let name = file_name(url);
    let rec_name = record_name(url);
    let previous: Option<UrlRecord> = store.read_record("urls", &rec_name);
    let previous = previous.and_then(|r| {
        let d = Digest::parse(&r.digest).ok()?;
        store.has_blob(&d).then_some((r, d))
    });
    let modified = |r: &UrlRecord| {
        r.last_modified
            .as_deref()
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    // --checksum names content already here: no request at all.
    if let Some(want) = checksum {
        let known = match &previous {
            Some((r, d)) if d == want => Some((modified(r), d.clone())),
            Some((r, d))
                if want.algorithm() != Algorithm::Sha256
                    && checksum_of(store, d, want.algorithm())? == *want =>
            {
                Some((modified(r), d.clone()))
            }
            _ if want.algorithm() == Algorithm::Sha256 && store.has_blob(want) => {
                Some((None, want.clone()))
            }
            _ => None,
        };
        if let Some((modified, digest)) = known {
            return Ok(Download {
                blob: store.blob_path(&digest),
                digest,
                name,
                modified,
            });
        }
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    rt.block_on(async {
        let mut req = client.get(url);
        if let Some((r, _)) = &previous {
            if let Some(e) = &r.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, e);
            }
            if let Some(m) = &r.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
            }
        }
        let resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED
            && let Some((r, d)) = &previous
        {
            if let Some(want) = checksum {
                verify(store, d, want).map_err(&fail)?;
            }
            return Ok(Download {
                blob: store.blob_path(d),
                digest: d.clone(),
                name: name.clone(),
                modified: modified(r),
            });
        }
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}")));
        }
        let header = |h: reqwest::header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let mut tmp = store.temp_file()?;
        let mut file = tmp
            .take_file()
            .ok_or_else(|| fail("temporary file unavailable".into()))?;
        let mut sha256 = Algorithm::Sha256.hasher();
        let mut other = checksum
            .filter(|c| c.algorithm() != Algorithm::Sha256)
            .map(|c| c.algorithm().hasher());
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail(error_chain(&e)))?;
            sha256.update(&chunk);
            if let Some(h) = other.as_mut() {
                h.update(&chunk);
            }
            std::io::Write::write_all(&mut file, &chunk).map_err(io(tmp.path()))?;
        }
        tmp.put_file(file);
        let digest = sha256.finish();
        if let Some(want) = checksum {
            let got = match other {
                Some(h) => h.finish(),
                None => digest.clone(),
            };
            if got != *want {
                return Err(fail(format!(
                    "digest mismatch: --checksum={want}, downloaded {got}"
                )));
            }
        }
        if !store.has_blob(&digest) {
            store.commit_blob(tmp, &digest)?;
        }
        let rec = UrlRecord {
            digest: digest.to_string(),
            etag,
            last_modified,
        };
        // Revalidation is an optimisation: failing to remember never fails a build.
        let _ = store.write_record("urls", &rec_name, &rec);
        Ok(Download {
            blob: store.blob_path(&digest),
            modified: modified(&rec),
            digest,
            name: name.clone(),
        })
    })
}

/// A blob's digest in another algorithm (for a `--checksum=sha512:…`).
fn checksum_of(store: &Store, d: &Digest, alg: Algorithm) -> Result<Digest, BuildError> {
    let path = store.blob_path(d);
    let mut f = std::fs::File::open(&path).map_err(io(&path))?;
    let mut h = alg.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(io(&path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

fn verify(store: &Store, d: &Digest, want: &Digest) -> Result<(), String> {
    let got = if want.algorithm() == Algorithm::Sha256 {
        d.clone()
    } else {
        checksum_of(store, d, want.algorithm()).map_err(|e| e.to_string())?
    };
    if got == *want {
        Ok(())
    } else {
        Err(format!(
            "digest mismatch: --checksum={want}, downloaded {got}"
        ))
    }
}

/// An error with its causes (reqwest's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_kinds() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("https://example.com/a/b%20c.txt?x=1"), "b c.txt");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("https://example.com/a/%2e%2e"), "__unnamed__");
        assert!(is_http("https://example.com/file"));
        assert!(!is_http("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(is_git("https://github.com/moby/buildkit.git"));
        assert!(is_git(
            "https://github.com/moby/buildkit.git?ref=v0.10.1&subdir=frontend"
        ));
        assert!(!is_http("file.txt"));
        assert_eq!(
            redact("https://user:pw@example.com/x"),
            "https://example.com/x"
        );
    }
}
