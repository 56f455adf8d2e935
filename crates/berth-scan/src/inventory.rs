//! Packages, what one layer holds, and the image's inventory merged over its layers with
//! whiteouts honoured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::parse;

/// Where a package's advisories live: the OSV ecosystem family.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[non_exhaustive]
pub enum Ecosystem {
    Debian,
    Ubuntu,
    Alpine,
    /// Red Hat family (rpm).
    Rpm,
    PyPI,
    Npm,
    Go,
    Cargo,
    Maven,
}

/// What kind of evidence a package was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PackageKind {
    /// dpkg's status database (`var/lib/dpkg/status`, `status.d/*`).
    Deb,
    /// apk's installed database.
    Apk,
    /// The rpm database.
    Rpm,
    /// A Python distribution (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`).
    Python,
    /// An npm package (`node_modules/**/package.json`).
    Npm,
    /// A Go module compiled into a binary (its build info), or the Go toolchain (`stdlib`).
    Go,
    /// A Rust crate compiled into a binary built with cargo-auditable. `source` says
    /// where a crate that is not from crates.io came from (`local`, `git`, …).
    Cargo,
    /// A Java archive's Maven coordinates (`GROUP:ARTIFACT`); `source` is `manifest` when
    /// only the manifest named it.
    Maven,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[non_exhaustive]
pub struct Package {
    pub kind: PackageKind,
    pub name: String,
    pub version: String,
    /// The source package (Debian advisories are keyed by it) and its version when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// `amd64`, `all`, … where the database says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The file it was read from (no leading `/`).
    pub path: String,
}

impl Package {
    pub(crate) fn new(kind: PackageKind, name: &str, version: &str, path: &str) -> Package {
        Package {
            kind,
            name: name.to_owned(),
            version: version.to_owned(),
            source: None,
            source_version: None,
            arch: None,
            path: path.to_owned(),
        }
    }

    /// The package URL (purl) of the package, in the image's distribution for OS packages
    /// (`pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12`).
    pub fn purl(&self, os: Option<&OsRelease>) -> String {
        fn enc(s: &str) -> String {
            let mut out = String::with_capacity(s.len());
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
        let (kind, namespace) = match self.kind {
            PackageKind::Deb => ("deb", os.map(|o| o.id.clone())),
            PackageKind::Apk => ("apk", os.map(|o| o.id.clone())),
            PackageKind::Rpm => ("rpm", os.map(|o| o.id.clone())),
            PackageKind::Python => ("pypi", None),
            PackageKind::Npm => ("npm", None),
            PackageKind::Go => ("golang", None),
            PackageKind::Cargo => ("cargo", None),
            PackageKind::Maven => ("maven", None),
        };
        let name = match (self.kind, self.name.split_once('/')) {
            // npm scopes are the namespace: `@babel/core` → `%40babel/core`.
            (PackageKind::Npm, Some((scope, n))) if scope.starts_with('@') => {
                format!("{}/{}", enc(scope), enc(n))
            }
            // A Go module path's segments are the namespace: `golang.org/x/text`.
            (PackageKind::Go, Some(_)) => {
                self.name.split('/').map(enc).collect::<Vec<_>>().join("/")
            }
            // `GROUP:ARTIFACT` → `GROUP/ARTIFACT`.
            (PackageKind::Maven, _) if self.name.contains(':') => {
                self.name.split(':').map(enc).collect::<Vec<_>>().join("/")
            }
            _ => enc(&self.name),
        };
        let mut purl = match namespace.filter(|n| !n.is_empty()) {
            Some(ns) => format!("pkg:{kind}/{}/{name}@{}", enc(&ns), enc(&self.version)),
            None => format!("pkg:{kind}/{name}@{}", enc(&self.version)),
        };
        let mut qualifiers = Vec::new();
        if let Some(a) = &self.arch {
            qualifiers.push(format!("arch={}", enc(a)));
        }
        if matches!(
            self.kind,
            PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm
        ) && let Some(o) = os
            && !o.version_id.is_empty()
        {
            qualifiers.push(format!("distro={}-{}", enc(&o.id), enc(&o.version_id)));
        }
        if !qualifiers.is_empty() {
            purl.push('?');
            purl.push_str(&qualifiers.join("&"));
        }
        purl
    }

    /// Name, version and kind: the same package whatever file lists it.
    fn identity(&self) -> (PackageKind, &str, &str) {
        (self.kind, &self.name, &self.version)
    }
}

/// The distribution, from `etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[non_exhaustive]
pub struct OsRelease {
    /// `debian`, `ubuntu`, `alpine`, `rhel`, …
    pub id: String,
    /// `12`, `22.04`, `3.19.1`, …
    pub version_id: String,
    #[serde(default)]
    pub pretty_name: String,
    #[serde(default)]
    pub id_like: Vec<String>,
}

impl OsRelease {
    /// The OSV ecosystem of its OS packages (`Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04`).
    pub fn osv_ecosystem(&self) -> Option<(Ecosystem, String)> {
        let major = self.version_id.split('.').next().unwrap_or_default();
        match self.id.as_str() {
            "debian" if !major.is_empty() => Some((Ecosystem::Debian, format!("Debian:{major}"))),
            "ubuntu" if !self.version_id.is_empty() => {
                Some((Ecosystem::Ubuntu, format!("Ubuntu:{}", self.version_id)))
            }
            "almalinux" if !major.is_empty() => {
                Some((Ecosystem::Rpm, format!("AlmaLinux:{major}")))
            }
            "rocky" if !major.is_empty() => Some((Ecosystem::Rpm, format!("Rocky Linux:{major}"))),
            "alpine" => {
                let mm: Vec<&str> = self.version_id.split('.').take(2).collect();
                (mm.len() == 2).then(|| (Ecosystem::Alpine, format!("Alpine:v{}", mm.join("."))))
            }
            _ => None,
        }
    }
}

/// What one layer holds of interest: the packages of each evidence file, the whiteouts it
/// applies to lower layers, and notes on what it could not read. Cached by the layer's digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LayerInventory {
    /// Evidence file → the packages it lists.
    pub files: BTreeMap<String, Vec<Package>>,
    /// Paths removed from lower layers (`.wh.NAME`).
    pub whiteouts: Vec<String>,
    /// Directories whose lower-layer contents are hidden (`.wh..wh..opq`).
    pub opaque: Vec<String>,
    /// `etc/os-release` (or `usr/lib/os-release`) when this layer writes it.
    pub os_release: Option<OsRelease>,
    /// Files skipped and why (unsafe paths, sizes over the limits, unreadable databases).
    pub notes: Vec<String>,
    /// Bytes of tar read (uncompressed).
    pub bytes: u64,
}

/// A package of the merged image, with the layer that introduced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[non_exhaustive]
pub struct Located {
    #[serde(flatten)]
    pub package: Package,
    /// Index of the layer that introduced it (0: the bottom one).
    pub layer: usize,
}

/// An image's packages after every layer, whiteouts applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageInventory {
    pub packages: Vec<Located>,
    pub os_release: Option<OsRelease>,
    pub notes: Vec<String>,
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

impl ImageInventory {
    /// Merges layer inventories, bottom first. A file a layer rewrites replaces the lower one
    /// (a package it still lists keeps the layer that introduced it); a whiteout or an opaque
    /// directory removes what lower layers had there.
    pub fn merge(layers: &[LayerInventory]) -> ImageInventory {
        // Evidence file → (its packages, each with the layer that introduced it).
        let mut files: BTreeMap<String, Vec<Located>> = BTreeMap::new();
        let mut os: Option<(String, OsRelease)> = None;
        let mut notes = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            for dir in &layer.opaque {
                files.retain(|p, _| !(under(p, dir) && p != dir));
                if os.as_ref().is_some_and(|(p, _)| under(p, dir) && p != dir) {
                    os = None;
                }
            }
            for gone in &layer.whiteouts {
                files.retain(|p, _| !under(p, gone));
                if os.as_ref().is_some_and(|(p, _)| under(p, gone)) {
                    os = None;
                }
            }
            for (path, packages) in &layer.files {
                let before = files.remove(path).unwrap_or_default();
                // Each package's introducing layer, by identity (the first listing wins).
                let first: std::collections::HashMap<_, usize> = before
                    .iter()
                    .rev()
                    .map(|b| (b.package.identity(), b.layer))
                    .collect();
                let located = packages
                    .iter()
                    .map(|p| Located {
                        package: p.clone(),
                        layer: first.get(&p.identity()).copied().unwrap_or(index),
                    })
                    .collect();
                files.insert(path.clone(), located);
            }
            if let Some(r) = &layer.os_release {
                os = Some(("etc/os-release".to_owned(), r.clone()));
            }
            notes.extend(layer.notes.iter().map(|n| format!("layer {index}: {n}")));
        }
        let mut packages: Vec<Located> = files.into_values().flatten().collect();
        packages.sort_by(|a, b| {
            (
                a.package.kind as u8,
                &a.package.name,
                &a.package.version,
                &a.package.path,
            )
                .cmp(&(
                    b.package.kind as u8,
                    &b.package.name,
                    &b.package.version,
                    &b.package.path,
                ))
        });
        ImageInventory {
            packages,
            os_release: os.map(|(_, r)| r),
            notes,
        }
    }
}

/// Which files a layer reader keeps, and how to parse them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    DpkgStatus,
    ApkInstalled,
    OsRelease,
    PythonMetadata,
    NpmPackage,
    RpmSqlite,
    /// BerkeleyDB or NDB rpm databases: noted as unsupported.
    RpmOther,
    /// An executable (Go build info, cargo-auditable): chosen by its mode and first bytes,
    /// not its path.
    Binary,
    /// A Java archive.
    JavaArchive,
    /// An npm lockfile outside `node_modules`.
    NpmLock,
}

impl Evidence {
    /// The evidence a path is, if any (`path` normalised, no leading `/`).
    pub(crate) fn of(path: &str) -> Option<Evidence> {
        if path == "var/lib/dpkg/status"
            || path
                .strip_prefix("var/lib/dpkg/status.d/")
                .is_some_and(|n| !n.is_empty() && !n.contains('/') && !n.ends_with(".md5sums"))
        {
            return Some(Evidence::DpkgStatus);
        }
        if path == "lib/apk/db/installed" {
            return Some(Evidence::ApkInstalled);
        }
        if path == "var/lib/rpm/rpmdb.sqlite" || path == "usr/lib/sysimage/rpm/rpmdb.sqlite" {
            return Some(Evidence::RpmSqlite);
        }
        if ["var/lib/rpm/", "usr/lib/sysimage/rpm/"].iter().any(|d| {
            path.strip_prefix(d)
                .is_some_and(|n| n == "Packages" || n == "Packages.db")
        }) {
            return Some(Evidence::RpmOther);
        }
        if path == "etc/os-release" || path == "usr/lib/os-release" {
            return Some(Evidence::OsRelease);
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        if (base == "package-lock.json" || base == "npm-shrinkwrap.json")
            && !path.contains("node_modules/")
        {
            return Some(Evidence::NpmLock);
        }
        if crate::java::is_archive(path) {
            return Some(Evidence::JavaArchive);
        }
        if path.ends_with(".dist-info/METADATA")
            || path.ends_with(".egg-info/PKG-INFO")
            || (path.ends_with(".egg-info") && !path.contains(".egg-info/"))
        {
            return Some(Evidence::PythonMetadata);
        }
        if let Some(dir) = path.strip_suffix("/package.json")
            && let Some(i) = dir.rfind("node_modules/")
        {
            // `node_modules/NAME/package.json` or `node_modules/@scope/NAME/package.json`.
            let rest = &dir[i + "node_modules/".len()..];
            let depth = rest.split('/').count();
            let scoped = rest.starts_with('@');
            if (scoped && depth == 2) || (!scoped && depth == 1) {
                return Some(Evidence::NpmPackage);
            }
        }
        None
    }

    /// The largest such file read.
    pub(crate) fn limit(self) -> u64 {
        match self {
            Evidence::DpkgStatus | Evidence::ApkInstalled => 64 << 20,
            Evidence::RpmSqlite => 128 << 20,
            Evidence::RpmOther => 0,
            Evidence::OsRelease => 64 << 10,
            Evidence::PythonMetadata | Evidence::NpmPackage => 4 << 20,
            Evidence::Binary | Evidence::JavaArchive => 128 << 20,
            Evidence::NpmLock => 32 << 20,
        }
    }

    /// Parses a file into the layer inventory.
    pub(crate) fn parse(self, path: &str, data: &[u8], into: &mut LayerInventory) {
        // Only the text formats are decoded (an executable or archive is never copied as text).
        let text = || String::from_utf8_lossy(data);
        match self {
            Evidence::OsRelease => {
                // `usr/lib/os-release` counts only where `etc/os-release` is absent.
                if path == "etc/os-release" || into.os_release.is_none() {
                    into.os_release = Some(parse::os_release(&text()));
                }
            }
            Evidence::DpkgStatus => {
                into.files
                    .insert(path.to_owned(), parse::dpkg_status(&text(), path));
            }
            Evidence::ApkInstalled => {
                into.files
                    .insert(path.to_owned(), parse::apk_installed(&text(), path));
            }
            Evidence::PythonMetadata => {
                if let Some(p) = parse::python_metadata(&text(), path) {
                    into.files.insert(path.to_owned(), vec![p]);
                }
            }
            Evidence::RpmSqlite => match parse::rpm_sqlite(data, path) {
                Ok(p) => {
                    into.files.insert(path.to_owned(), p);
                }
                Err(e) => into
                    .notes
                    .push(format!("{path}: unreadable rpm database: {e}")),
            },
            Evidence::RpmOther => into.notes.push(format!(
                "{path}: unsupported rpm database (BerkeleyDB or NDB): its packages are not listed"
            )),
            Evidence::NpmPackage => match parse::npm_package(data, path) {
                Ok(Some(p)) => {
                    into.files.insert(path.to_owned(), vec![p]);
                }
                Ok(None) => {}
                Err(e) => into.notes.push(format!("{path}: {e}")),
            },
            Evidence::NpmLock => match parse::npm_lock(data, path) {
                Ok(p) if !p.is_empty() => {
                    into.files.insert(path.to_owned(), p);
                }
                Ok(_) => {}
                Err(e) => into.notes.push(format!("{path}: {e}")),
            },
            Evidence::Binary => {
                let found = crate::binary::packages(data, path, &mut into.notes);
                if !found.is_empty() {
                    into.files.insert(path.to_owned(), found);
                }
            }
            Evidence::JavaArchive => {
                let found = crate::java::packages(data, path, &mut into.notes);
                if !found.is_empty() {
                    into.files.insert(path.to_owned(), found);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[Package])], whiteouts: &[&str], opaque: &[&str]) -> LayerInventory {
        LayerInventory {
            files: files
                .iter()
                .map(|(p, pk)| ((*p).to_owned(), pk.to_vec()))
                .collect(),
            whiteouts: whiteouts.iter().map(|s| (*s).to_owned()).collect(),
            opaque: opaque.iter().map(|s| (*s).to_owned()).collect(),
            ..LayerInventory::default()
        }
    }

    fn deb(name: &str, version: &str) -> Package {
        Package::new(PackageKind::Deb, name, version, "var/lib/dpkg/status")
    }

    fn py(name: &str, path: &str) -> Package {
        Package::new(PackageKind::Python, name, "1.0", path)
    }

    #[test]
    fn whiteouts_remove_and_layers_attribute() {
        let status = "var/lib/dpkg/status";
        let req = "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA";
        let six = "app/six-1.0.dist-info/METADATA";
        let base = layer(
            &[(status, &[deb("libc6", "2.36"), deb("curl", "7.88")])],
            &[],
            &[],
        );
        let app = layer(
            &[
                (
                    status,
                    &[
                        deb("libc6", "2.36"),
                        deb("curl", "7.88"),
                        deb("git", "2.39"),
                    ],
                ),
                (req, &[py("requests", req)]),
                (six, &[py("six", six)]),
            ],
            &[],
            &[],
        );
        // curl purged (status rewritten), requests deleted, app/ replaced wholesale.
        let cleanup = layer(
            &[(status, &[deb("libc6", "2.36"), deb("git", "2.39")])],
            &["usr/lib/python3/dist-packages/requests-2.19.0.dist-info"],
            &["app"],
        );
        let inv = ImageInventory::merge(&[base, app, cleanup]);
        let got: Vec<(&str, usize)> = inv
            .packages
            .iter()
            .map(|l| (l.package.name.as_str(), l.layer))
            .collect();
        assert_eq!(got, [("git", 1), ("libc6", 0)]);
    }
}
