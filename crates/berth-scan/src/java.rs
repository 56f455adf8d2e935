//! Java archives (`.jar`, `.war`, `.ear`): the Maven coordinates of every
//! `META-INF/maven/GROUP/ARTIFACT/pom.properties` they hold (a shaded jar holds several), else
//! the manifest's name and version; archives nested one level deep (`BOOT-INF/lib/*.jar`,
//! `WEB-INF/lib/*.jar`) are read the same way.

use std::io::{Cursor, Read};

use crate::inventory::{Package, PackageKind};

/// The largest nested archive read into memory.
const NESTED_LIMIT: u64 = 64 << 20;
/// The largest `pom.properties` or manifest read.
const TEXT_LIMIT: u64 = 1 << 20;
/// Entries looked at in one archive (a zip bomb of millions of tiny entries is cut short).
const ENTRY_LIMIT: usize = 200_000;

/// Whether a path names a Java archive.
pub(crate) fn is_archive(path: &str) -> bool {
    let lower = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    [".jar", ".war", ".ear"].iter().any(|s| lower.ends_with(s))
}

/// The packages of an archive; `path` names it in the image (and, for a nested one, inside
/// its parent: `app.jar!/BOOT-INF/lib/x.jar`).
pub(crate) fn packages(data: &[u8], path: &str, notes: &mut Vec<String>) -> Vec<Package> {
    let mut out = Vec::new();
    read(data, path, 0, &mut out, notes);
    out
}

fn text_of<R: Read>(entry: R) -> Option<String> {
    let mut s = String::new();
    entry.take(TEXT_LIMIT).read_to_string(&mut s).ok()?;
    Some(s)
}

fn read(data: &[u8], path: &str, depth: u8, out: &mut Vec<Package>, notes: &mut Vec<String>) {
    let mut zip = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(z) => z,
        Err(e) => {
            notes.push(format!("{path}: not a readable Java archive: {e}"));
            return;
        }
    };
    let start = out.len();
    let mut manifest = None;
    // Nested archives are read as they come (one in memory at a time); what they hold is
    // listed after the archive's own packages.
    let (mut nested_out, mut nested_notes) = (Vec::new(), Vec::new());
    for i in 0..zip.len().min(ENTRY_LIMIT) {
        let Ok(mut entry) = zip.by_index(i) else {
            continue;
        };
        let Ok(name) = entry.name().map(|n| n.into_owned()) else {
            continue;
        };
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            let Some(text) = text_of(&mut entry) else {
                continue;
            };
            if let Some(p) = pom_properties(&text, path) {
                out.push(p);
            }
        } else if name.eq_ignore_ascii_case("META-INF/MANIFEST.MF") {
            manifest = text_of(&mut entry);
        } else if depth == 0 && is_archive(&name) {
            if entry.size() > NESTED_LIMIT {
                notes.push(format!(
                    "{path}!/{name}: {} bytes, more than the {NESTED_LIMIT} read of a nested archive",
                    entry.size()
                ));
                continue;
            }
            let mut inner = Vec::new();
            if (&mut entry)
                .take(NESTED_LIMIT)
                .read_to_end(&mut inner)
                .is_ok()
            {
                let inner_path = format!("{path}!/{name}");
                read(
                    &inner,
                    &inner_path,
                    depth + 1,
                    &mut nested_out,
                    &mut nested_notes,
                );
            }
        }
    }
    if zip.len() > ENTRY_LIMIT {
        notes.push(format!(
            "{path}: {} entries, only the first {ENTRY_LIMIT} read",
            zip.len()
        ));
    }
    if out.len() == start
        && let Some(p) = manifest.and_then(|m| from_manifest(&m, path))
    {
        out.push(p);
    }
    out.append(&mut nested_out);
    notes.append(&mut nested_notes);
}

/// `groupId`, `artifactId`, `version` of a `pom.properties` (Java properties: `key=value` or
/// `key: value`, `#` comments); named `GROUP:ARTIFACT` as OSV's Maven ecosystem names it.
fn pom_properties(text: &str, path: &str) -> Option<Package> {
    let (mut group, mut artifact, mut version) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with(['#', '!']) {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "groupId" => group = Some(v),
            "artifactId" => artifact = Some(v),
            "version" => version = Some(v),
            _ => {}
        }
    }
    let (g, a, v) = (group?, artifact?, version?);
    (!g.is_empty() && !a.is_empty() && !v.is_empty())
        .then(|| Package::new(PackageKind::Maven, &format!("{g}:{a}"), v, path))
}

/// A manifest's own name and version, for an archive without Maven metadata: the bundle's
/// symbolic name or implementation title. Such a package has no group, so it is listed but
/// never matched by name against Maven advisories.
fn from_manifest(text: &str, path: &str) -> Option<Package> {
    // `Key: value` lines; a line starting with a space continues the one before (the manifest
    // format wraps at 72 bytes).
    let mut fields = std::collections::HashMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                let v: &mut String = v;
                v.push_str(rest.trim_end());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim().to_owned(), v.trim().to_owned());
            last = Some(k.trim().to_owned());
        }
    }
    let name = fields
        .get("Bundle-SymbolicName")
        .map(|n| n.split(';').next().unwrap_or(n).trim().to_owned())
        .or_else(|| fields.get("Implementation-Title").cloned())?;
    let version = fields
        .get("Bundle-Version")
        .or_else(|| fields.get("Implementation-Version"))?;
    if name.is_empty() || version.is_empty() {
        return None;
    }
    let mut p = Package::new(PackageKind::Maven, &name, version, path);
    p.source = Some("manifest".to_owned());
    Some(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn pom_properties_manifests_and_nested_jars() {
        let lib = zip_of(&[(
            "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
            b"#Created by Apache Maven\nversion=2.14.1\ngroupId=org.apache.logging.log4j\nartifactId=log4j-core\n",
        )]);
        let bundle = zip_of(&[(
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\nBundle-SymbolicName: com.example.bun\n dle;singleton:=true\nBundle-Version: 3.1.0\n",
        )]);
        let app = zip_of(&[
            (
                "META-INF/MANIFEST.MF",
                b"Implementation-Title: app\nImplementation-Version: 1\n",
            ),
            ("BOOT-INF/lib/log4j-core-2.14.1.jar", &lib),
            ("BOOT-INF/lib/b.jar", &bundle),
            ("BOOT-INF/lib/broken.jar", b"not a zip"),
        ]);
        let mut notes = Vec::new();
        let p = packages(&app, "app/app.jar", &mut notes);
        let got: Vec<(&str, &str, &str)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("app", "1", "app/app.jar"),
                (
                    "org.apache.logging.log4j:log4j-core",
                    "2.14.1",
                    "app/app.jar!/BOOT-INF/lib/log4j-core-2.14.1.jar"
                ),
                (
                    "com.example.bundle",
                    "3.1.0",
                    "app/app.jar!/BOOT-INF/lib/b.jar"
                ),
            ]
        );
        assert_eq!(p[1].source, None);
        assert_eq!(p[2].source.as_deref(), Some("manifest"));
        assert!(notes.iter().any(|n| n.contains("broken.jar")), "{notes:?}");
        assert!(is_archive("opt/x/App.JAR") && !is_archive("opt/jar/readme"));
    }
}
