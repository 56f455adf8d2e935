//! Parsers of the package databases and metadata files an image holds.

use crate::inventory::{OsRelease, Package, PackageKind};

/// RFC 822-style stanzas (dpkg's status, Python's METADATA headers): `Key: value` lines,
/// continuation lines starting with a space, stanzas separated by blank lines.
fn stanzas(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim().to_owned()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(stanza: &'a [(&str, String)], key: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// dpkg's status database: installed packages (`Status: install ok installed`; half-removed
/// ones are not), with `Source: NAME (VERSION)` kept.
pub(crate) fn dpkg_status(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for s in stanzas(text) {
        let (Some(name), Some(version)) = (field(&s, "Package"), field(&s, "Version")) else {
            continue;
        };
        // distroless `status.d/*` files carry no Status line: present means installed.
        if let Some(status) = field(&s, "Status") {
            let words: Vec<&str> = status.split_whitespace().collect();
            if words.last().is_some_and(|w| *w != "installed") {
                continue;
            }
        }
        let mut p = Package::new(PackageKind::Deb, name, version, path);
        p.arch = field(&s, "Architecture").map(str::to_owned);
        if let Some(src) = field(&s, "Source") {
            let mut it = src.splitn(2, ' ');
            let sname = it.next().unwrap_or_default().trim();
            let sver = it.next().map(|v| {
                v.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .trim()
            });
            if !sname.is_empty() {
                p.source = Some(sname.to_owned());
            }
            if let Some(v) = sver.filter(|v| !v.is_empty()) {
                p.source_version = Some(v.to_owned());
            }
        }
        out.push(p);
    }
    out
}

/// apk's installed database: `P:` name, `V:` version, `A:` arch, `o:` origin (the source
/// package Alpine's advisories are keyed by).
pub(crate) fn apk_installed(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut arch, mut origin) = (None, None, None, None);
    let mut flush = |name: &mut Option<&str>,
                     version: &mut Option<&str>,
                     arch: &mut Option<&str>,
                     origin: &mut Option<&str>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            let mut p = Package::new(PackageKind::Apk, n, v, path);
            p.arch = arch.take().map(str::to_owned);
            p.source = origin.take().filter(|o| *o != n).map(str::to_owned);
            out.push(p);
        }
        *arch = None;
        *origin = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut arch, &mut origin);
            continue;
        }
        match line.split_once(':') {
            Some(("P", v)) => name = Some(v.trim()),
            Some(("V", v)) => version = Some(v.trim()),
            Some(("A", v)) => arch = Some(v.trim()),
            Some(("o", v)) => origin = Some(v.trim()),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut arch, &mut origin);
    out
}

/// The rpm database (`rpmdb.sqlite`): each row of `Packages` is an rpm header blob, whose
/// NAME, EPOCH, VERSION, RELEASE, ARCH and SOURCERPM tags make the package. The file is opened
/// from memory (never written anywhere), its WAL flag cleared so SQLite reads it as a plain
/// file; a `-wal` file beside it is not applied (rpm checkpoints before it exits).
pub(crate) fn rpm_sqlite(data: &[u8], path: &str) -> Result<Vec<Package>, String> {
    let mut bytes = data.to_vec();
    if bytes.len() >= 100 && bytes.starts_with(b"SQLite format 3\0") {
        // File format write/read versions 2 (WAL) → 1 (rollback journal).
        bytes[18] = 1;
        bytes[19] = 1;
    } else {
        return Err("not an SQLite database".into());
    }
    let mut conn = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    let len = bytes.len();
    conn.deserialize_read_exact(rusqlite::MAIN_DB, &bytes[..], len, true)
        .map_err(|e| e.to_string())?;
    let mut st = conn
        .prepare("SELECT blob FROM Packages")
        .map_err(|e| format!("no Packages table: {e}"))?;
    let rows = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for blob in rows {
        let blob = blob.map_err(|e| e.to_string())?;
        if let Some(p) = rpm_header(&blob, path) {
            out.push(p);
        }
    }
    Ok(out)
}

/// One rpm header blob: `il` and `dl` (big-endian counts), `il` 16-byte index entries (tag,
/// type, offset, count), then `dl` bytes of data.
fn rpm_header(blob: &[u8], path: &str) -> Option<Package> {
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?))
    };
    let il = usize::try_from(be(0)?).ok()?;
    let dl = usize::try_from(be(4)?).ok()?;
    let data_start = 8usize.checked_add(il.checked_mul(16)?)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let mut string = std::collections::HashMap::new();
    let mut epoch = None;
    for i in 0..il {
        let at = 8 + i * 16;
        let (tag, kind, offset) = (be(at)?, be(at + 4)?, usize::try_from(be(at + 8)?).ok()?);
        match (tag, kind) {
            // STRING / I18NSTRING: NUL-terminated.
            (1000 | 1001 | 1002 | 1022 | 1044, 6 | 9) => {
                let rest = data.get(offset..)?;
                let end = rest.iter().position(|b| *b == 0)?;
                string.insert(tag, String::from_utf8_lossy(&rest[..end]).into_owned());
            }
            // EPOCH: INT32.
            (1003, 4) => {
                let b = data.get(offset..offset + 4)?;
                epoch = Some(u32::from_be_bytes(b.try_into().ok()?));
            }
            _ => {}
        }
    }
    let name = string.get(&1000)?;
    // gpg-pubkey entries are keys, not packages.
    if name == "gpg-pubkey" {
        return None;
    }
    let version = match (epoch, string.get(&1002)) {
        (Some(e), Some(r)) => format!("{e}:{}-{r}", string.get(&1001)?),
        (None, Some(r)) => format!("{}-{r}", string.get(&1001)?),
        (Some(e), None) => format!("{e}:{}", string.get(&1001)?),
        (None, None) => string.get(&1001)?.clone(),
    };
    let mut p = Package::new(PackageKind::Rpm, name, &version, path);
    p.arch = string.get(&1022).cloned();
    // SOURCERPM `openssl-3.0.7-24.el9.src.rpm` → `openssl`.
    if let Some(src) = string.get(&1044) {
        let base = src.strip_suffix(".src.rpm").unwrap_or(src);
        let mut parts = base.rsplitn(3, '-');
        let (_rel, _ver, sname) = (parts.next(), parts.next(), parts.next());
        if let Some(s) = sname.filter(|s| *s != name) {
            p.source = Some(s.to_owned());
        }
    }
    Some(p)
}

/// `os-release`: `KEY=value` lines, values optionally quoted.
pub(crate) fn os_release(text: &str) -> OsRelease {
    let mut r = OsRelease::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
        match k.trim() {
            "ID" => r.id = v.to_ascii_lowercase(),
            "VERSION_ID" => r.version_id = v,
            "PRETTY_NAME" => r.pretty_name = v,
            "ID_LIKE" => r.id_like = v.split_whitespace().map(str::to_owned).collect(),
            _ => {}
        }
    }
    r
}

/// PEP 503's normal form of a Python project name (what PyPI and OSV key it by).
pub fn normalize_python_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
            continue;
        }
        if dash && !out.is_empty() {
            out.push('-');
        }
        dash = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A Python distribution's core metadata (`METADATA` / `PKG-INFO`): `Name` and `Version`
/// from the header (the body after the first blank line is the description).
pub(crate) fn python_metadata(text: &str, path: &str) -> Option<Package> {
    let header = text.split("\n\n").next().unwrap_or_default();
    let s = stanzas(header).into_iter().next()?;
    let name = field(&s, "Name")?;
    let version = field(&s, "Version")?;
    Some(Package::new(
        PackageKind::Python,
        &normalize_python_name(name),
        version,
        path,
    ))
}

/// An npm package's `package.json`: `name` and `version` (a file without both — a
/// workspace root, a test fixture — is not a package).
pub(crate) fn npm_package(data: &[u8], path: &str) -> Result<Option<Package>, String> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        name: Option<String>,
        version: Option<String>,
    }
    let m: Manifest = serde_json::from_slice(data).map_err(|e| format!("not JSON: {e}"))?;
    Ok(match (m.name, m.version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => {
            Some(Package::new(PackageKind::Npm, &n, &v, path))
        }
        _ => None,
    })
}

/// An npm lockfile (`package-lock.json`, `npm-shrinkwrap.json`): what `npm ci` installs from
/// it. Lockfile v2/v3 `packages` (`node_modules/…/NAME` keys) or v1 `dependencies` (nested);
/// development dependencies (`"dev": true`) and links are not installed in production images
/// and are left out, as trivy does by default.
pub(crate) fn npm_lock(data: &[u8], path: &str) -> Result<Vec<Package>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = Vec::new();
    let skip = |e: &serde_json::Value| {
        e["dev"].as_bool() == Some(true) || e["link"].as_bool() == Some(true)
    };
    if let Some(packages) = v["packages"].as_object() {
        for (key, e) in packages {
            let Some(i) = key.rfind("node_modules/") else {
                continue; // "": the project itself
            };
            let name = e["name"]
                .as_str()
                .unwrap_or(&key[i + "node_modules/".len()..]);
            if let Some(version) = e["version"].as_str()
                && !skip(e)
                && !name.is_empty()
            {
                out.push(Package::new(PackageKind::Npm, name, version, path));
            }
        }
        return Ok(out);
    }
    fn walk(
        deps: &serde_json::Map<String, serde_json::Value>,
        path: &str,
        depth: usize,
        out: &mut Vec<Package>,
    ) {
        if depth > 64 {
            return;
        }
        for (name, e) in deps {
            if let Some(version) = e["version"].as_str()
                && e["dev"].as_bool() != Some(true)
                && !version.starts_with("file:")
            {
                out.push(Package::new(PackageKind::Npm, name, version, path));
            }
            if let Some(nested) = e["dependencies"].as_object() {
                walk(nested, path, depth + 1, out);
            }
        }
    }
    if let Some(deps) = v["dependencies"].as_object() {
        walk(deps, path, 0, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_and_their_sources() {
        let text = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nDescription: SSL\n shared libraries\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: libc6\nStatus: install ok installed\nSource: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n";
        let p = dpkg_status(text, "var/lib/dpkg/status");
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libssl3", "libc6", "zlib1g"]);
        assert_eq!(p[0].source.as_deref(), Some("openssl"));
        assert_eq!(p[0].source_version, None);
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
        assert_eq!(p[1].source_version.as_deref(), Some("2.36-9"));
        assert_eq!(p[2].version, "1:1.2.13.dfsg-1");
        // distroless: no Status line.
        let d = dpkg_status("Package: base-files\nVersion: 12.4\n", "x");
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn apk_python_npm_and_os_release() {
        let apk = apk_installed(
            "C:Q1abc=\nP:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\nP:libcrypto3\nV:3.1.4-r5\no:openssl\n",
            "lib/apk/db/installed",
        );
        assert_eq!(apk.len(), 2);
        assert_eq!(apk[0].source, None);
        assert_eq!(apk[1].source.as_deref(), Some("openssl"));
        let py = python_metadata(
            "Metadata-Version: 2.1\nName: Requests_OAuth.lib\nVersion: 2.19.0\n\nName: not-this\n",
            "p",
        )
        .unwrap();
        assert_eq!(
            (py.name.as_str(), py.version.as_str()),
            ("requests-oauth-lib", "2.19.0")
        );
        let npm = npm_package(br#"{"name":"lodash","version":"4.17.15"}"#, "p")
            .unwrap()
            .unwrap();
        assert_eq!(npm.name, "lodash");
        assert!(npm_package(br#"{"private":true}"#, "p").unwrap().is_none());
        assert!(npm_package(b"{", "p").is_err());
        let os = os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(
            os.osv_ecosystem(),
            Some((crate::Ecosystem::Debian, "Debian:12".to_owned()))
        );
        let alpine = os_release("ID=alpine\nVERSION_ID=3.19.1\n");
        assert_eq!(alpine.osv_ecosystem().unwrap().1, "Alpine:v3.19");
    }

    #[test]
    fn npm_lockfiles_v1_and_v3_without_dev_dependencies() {
        let v3 = br#"{"lockfileVersion":3,"packages":{
            "":{"name":"app","version":"1.0.0"},
            "node_modules/lodash":{"version":"4.17.15"},
            "node_modules/@babel/core":{"version":"7.0.0"},
            "node_modules/a/node_modules/ms":{"version":"2.0.0"},
            "node_modules/jest":{"version":"29.0.0","dev":true},
            "node_modules/local":{"resolved":"../local","link":true}}}"#;
        let mut p: Vec<(String, String)> = npm_lock(v3, "app/package-lock.json")
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        p.sort();
        assert_eq!(
            p,
            [
                ("@babel/core".to_owned(), "7.0.0".to_owned()),
                ("lodash".into(), "4.17.15".into()),
                ("ms".into(), "2.0.0".into()),
            ]
        );
        let v1 = br#"{"lockfileVersion":1,"dependencies":{
            "lodash":{"version":"4.17.15"},
            "a":{"version":"1.0.0","dependencies":{"ms":{"version":"2.0.0"}}},
            "jest":{"version":"29.0.0","dev":true}}}"#;
        let n: Vec<String> = npm_lock(v1, "p")
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(n, ["a", "ms", "lodash"]);
        assert!(npm_lock(b"[", "p").is_err());
    }
}
