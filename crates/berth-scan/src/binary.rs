//! Packages compiled into executables: Go's module build info (the `\xff Go buildinf:` blob
//! every Go 1.18+ binary carries) and Rust's cargo-auditable dependency list (the zlib-compressed
//! JSON of an ELF `.dep-v0` section).

use std::io::Read as _;

use object::{Object as _, ObjectSection as _};

use crate::inventory::{Package, PackageKind};

/// Go's build info magic: 14 bytes at a 16-byte-aligned offset of the binary.
const GO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Go 1.18+: the version and module strings follow the 32-byte header inline.
const GO_FLAG_INLINE: u8 = 0x2;
/// The largest decompressed cargo-auditable JSON read.
const AUDITABLE_LIMIT: u64 = 8 << 20;

/// What an executable's bytes say about the packages compiled into it; `notes` for a binary
/// whose build info is there but unreadable.
pub(crate) fn packages(data: &[u8], path: &str, notes: &mut Vec<String>) -> Vec<Package> {
    let mut out = go_buildinfo(data, path, notes);
    if out.is_empty() {
        out = cargo_auditable(data, path, notes);
    }
    out
}

/// The first 16-byte-aligned occurrence of Go's magic.
fn find_go_magic(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(data.get(from..)?, GO_MAGIC) {
        let at = from + i;
        if at % 16 == 0 {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A uvarint-prefixed string at `at`: the string and the offset after it.
fn varint_string(data: &[u8], mut at: usize) -> Option<(&[u8], usize)> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *data.get(at)?;
        at += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    let s = data.get(at..at.checked_add(len)?)?;
    Some((s, at + len))
}

/// Go's module build info: the toolchain as `stdlib`, then the main module and every `dep`
/// line, with `=>` replacements applied (a module replaced by a local directory keeps the
/// version it was required at, as `go version -m` shows it).
fn go_buildinfo(data: &[u8], path: &str, notes: &mut Vec<String>) -> Vec<Package> {
    let Some(at) = find_go_magic(data) else {
        return Vec::new();
    };
    let Some(&flags) = data.get(at + 15) else {
        return Vec::new();
    };
    if flags & GO_FLAG_INLINE == 0 {
        notes.push(format!(
            "{path}: a Go binary built before Go 1.18: its modules are not listed"
        ));
        return Vec::new();
    }
    let Some((version, next)) = varint_string(data, at + 32) else {
        notes.push(format!("{path}: unreadable Go build info"));
        return Vec::new();
    };
    let Some((mut modinfo, _)) = varint_string(data, next) else {
        notes.push(format!("{path}: unreadable Go build info"));
        return Vec::new();
    };
    // The module text sits between two 16-byte sentinels.
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    let version = String::from_utf8_lossy(version);
    let mut out = Vec::new();
    if let Some(v) = version.strip_prefix("go") {
        // `go1.21.5 X:boringcrypto` → `go1.21.5`.
        let v = v.split_whitespace().next().unwrap_or_default();
        if !v.is_empty() {
            out.push(Package::new(
                PackageKind::Go,
                "stdlib",
                &format!("go{v}"),
                path,
            ));
        }
    }
    for line in String::from_utf8_lossy(modinfo).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", module, version, ..]
                if !version.is_empty() && *version != "(devel)" =>
            {
                out.push(Package::new(PackageKind::Go, module, version, path));
            }
            ["=>", module, version, ..] => {
                // A replacement by another module at a version: that is what is compiled in.
                if !version.is_empty()
                    && !module.starts_with(['.', '/'])
                    && let Some(last) = out.last_mut()
                    && last.name != "stdlib"
                {
                    last.name = (*module).to_owned();
                    last.version = (*version).to_owned();
                }
            }
            _ => {}
        }
    }
    out
}

/// A cargo-auditable binary's `.dep-v0` section: `{"packages":[{"name","version","source",
/// "kind","root"}…]}`. Build-time dependencies are not in the binary and are left out.
fn cargo_auditable(data: &[u8], path: &str, notes: &mut Vec<String>) -> Vec<Package> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let Some(section) = file.section_by_name(".dep-v0") else {
        return Vec::new();
    };
    let Ok(compressed) = section.data() else {
        notes.push(format!("{path}: unreadable .dep-v0 section"));
        return Vec::new();
    };
    let mut json = Vec::new();
    let read = flate2::read::ZlibDecoder::new(compressed)
        .take(AUDITABLE_LIMIT)
        .read_to_end(&mut json);
    #[derive(serde::Deserialize)]
    struct Deps {
        packages: Vec<Dep>,
    }
    #[derive(serde::Deserialize)]
    struct Dep {
        name: String,
        version: String,
        #[serde(default)]
        source: String,
        #[serde(default)]
        kind: String,
    }
    let deps: Deps = match read
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&json).map_err(|e| e.to_string()))
    {
        Ok(d) => d,
        Err(e) => {
            notes.push(format!("{path}: unreadable cargo-auditable data: {e}"));
            return Vec::new();
        }
    };
    deps.packages
        .into_iter()
        .filter(|d| d.kind != "build")
        .map(|d| {
            let mut p = Package::new(PackageKind::Cargo, &d.name, &d.version, path);
            // Only crates.io crates have advisories by name; a local or git crate is listed
            // but never matched.
            if d.source != "crates.io" {
                p.source = Some(if d.source.is_empty() {
                    "local".to_owned()
                } else {
                    d.source
                });
            }
            p
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = u8::try_from(n & 0x7f).unwrap();
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// Build info laid out as the Go linker writes it (Go 1.18+), after 37 bytes of other
    /// data and padding to 16.
    fn go_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut d = vec![0u8; 48];
        d[..GO_MAGIC.len()].copy_from_slice(GO_MAGIC);
        d[14] = 8;
        d[15] = GO_FLAG_INLINE;
        d.truncate(32);
        varint(version.len(), &mut d);
        d.extend_from_slice(version.as_bytes());
        let wrapped = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        varint(wrapped.len(), &mut d);
        d.extend_from_slice(wrapped.as_bytes());
        let mut file = vec![0x7fu8, b'E', b'L', b'F'];
        file.resize(41, 0);
        file.extend_from_slice(GO_MAGIC); // unaligned: not the build info
        file.resize(64, 0);
        file.extend_from_slice(&d);
        file
    }

    #[test]
    fn go_modules_with_replacements() {
        let info = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
                    dep\tgolang.org/x/text\tv0.3.7\th1:abc=\n\
                    dep\tgithub.com/old/mod\tv1.0.0\th1:x=\n=>\tgithub.com/new/mod\tv1.2.0\th1:y=\n\
                    dep\texample.com/local\tv0.1.0\n=>\t./local\t\t\n\
                    build\t-compiler=gc\n";
        let mut notes = Vec::new();
        let p = packages(&go_blob("go1.19.8", info), "usr/bin/app", &mut notes);
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdlib", "go1.19.8"),
                ("golang.org/x/text", "v0.3.7"),
                ("github.com/new/mod", "v1.2.0"),
                ("example.com/local", "v0.1.0"),
            ]
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn old_and_broken_go_build_info_is_noted() {
        let mut old = go_blob("go1.17", "");
        old[64 + 15] = 0;
        let mut notes = Vec::new();
        assert!(packages(&old, "a", &mut notes).is_empty());
        assert!(notes[0].contains("before Go 1.18"), "{notes:?}");
        let mut cut = go_blob("go1.21.0", "dep\tx\tv1\n");
        cut.truncate(64 + 40);
        let mut notes = Vec::new();
        assert!(packages(&cut, "b", &mut notes).is_empty());
        assert!(notes[0].contains("unreadable"), "{notes:?}");
        // Not a binary at all.
        assert!(packages(b"\x7fELF garbage", "c", &mut Vec::new()).is_empty());
    }

    /// An ELF object with a `.dep-v0` section, as cargo-auditable's linker input makes it.
    fn auditable_elf(json: &str) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, json.as_bytes()).unwrap();
        let compressed = z.finish().unwrap();
        let mut obj = object::write::Object::new(
            object::BinaryFormat::Elf,
            object::Architecture::X86_64,
            object::Endianness::Little,
        );
        let s = obj.add_section(
            Vec::new(),
            b".dep-v0".to_vec(),
            object::SectionKind::ReadOnlyData,
        );
        obj.append_section_data(s, &compressed, 1);
        obj.write().unwrap()
    }

    #[test]
    fn cargo_auditable_crates_without_build_dependencies() {
        let json = r#"{"packages":[
            {"name":"app","version":"0.1.0","source":"local","root":true,"dependencies":[1,2]},
            {"name":"smallvec","version":"1.6.0","source":"crates.io"},
            {"name":"cc","version":"1.0.0","source":"crates.io","kind":"build"},
            {"name":"fork","version":"0.2.0","source":"git"}]}"#;
        let mut notes = Vec::new();
        let p = packages(&auditable_elf(json), "usr/bin/app", &mut notes);
        let got: Vec<(&str, &str, Option<&str>)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.source.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("app", "0.1.0", Some("local")),
                ("smallvec", "1.6.0", None),
                ("fork", "0.2.0", Some("git")),
            ]
        );
        assert!(p.iter().all(|p| p.kind == PackageKind::Cargo));
        let mut notes = Vec::new();
        assert!(packages(&auditable_elf("{not json"), "x", &mut notes).is_empty());
        assert!(notes[0].contains("cargo-auditable"), "{notes:?}");
    }
}
