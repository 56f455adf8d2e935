//! An image inventory against the OSV database: one finding per (advisory, package), with the
//! fixed version, the severity on ECR's scale and the layer that introduced the package.

use serde::Serialize;

use crate::db::Database;
use crate::error::ScanError;
use crate::inventory::{Ecosystem, ImageInventory, PackageKind};
use crate::osv::{self, Severity};

/// One vulnerability in one package.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Finding {
    /// The advisory (`GHSA-…`, `DEBIAN-CVE-…`).
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    pub cvss3_score: Option<f64>,
    /// The OSV ecosystem matched (`Debian:12`, `PyPI`).
    pub ecosystem: String,
    pub package_name: String,
    pub package_version: String,
    /// The package's URL (`pkg:deb/debian/libssl3@…`).
    pub purl: String,
    /// The source package the advisory names, when it is not the package itself.
    pub source_name: Option<String>,
    /// The version that fixes it; `None`: no fix yet.
    pub fixed_version: Option<String>,
    /// Where the package was found.
    pub path: String,
    /// The layer that introduced the package (0: the bottom one).
    pub layer: usize,
    /// Whether that layer is the base image's (`None`: no base image known).
    pub from_base: Option<bool>,
}

/// The OSV ecosystem and version order of a package in an image.
fn ecosystem_of(kind: PackageKind, inv: &ImageInventory) -> Option<(Ecosystem, String)> {
    match kind {
        // An OS package is matched only in its own kind of distribution (a dpkg database in
        // an image whose os-release says AlmaLinux is left unmatched, never compared in the
        // wrong version order).
        PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm => {
            let (eco, name) = inv.os_release.as_ref()?.osv_ecosystem()?;
            let fits = matches!(
                (kind, eco),
                (PackageKind::Deb, Ecosystem::Debian | Ecosystem::Ubuntu)
                    | (PackageKind::Apk, Ecosystem::Alpine)
                    | (PackageKind::Rpm, Ecosystem::Rpm)
            );
            fits.then_some((eco, name))
        }
        PackageKind::Python => Some((Ecosystem::PyPI, "PyPI".to_owned())),
        PackageKind::Npm => Some((Ecosystem::Npm, "npm".to_owned())),
        PackageKind::Go => Some((Ecosystem::Go, "Go".to_owned())),
        PackageKind::Cargo => Some((Ecosystem::Cargo, "crates.io".to_owned())),
        PackageKind::Maven => Some((Ecosystem::Maven, "Maven".to_owned())),
    }
}

/// Every advisory of the database that affects a package of the inventory. OS packages are
/// looked up by their source package (Debian and Alpine key advisories so) and compared at the
/// source version where the database gives one.
pub fn findings(inv: &ImageInventory, db: &Database) -> Result<Vec<Finding>, ScanError> {
    let mut out = Vec::new();
    // Several packages share a lookup (the binaries of one source package): each is read once.
    let mut records: std::collections::HashMap<(String, String), Vec<osv::Record>> =
        std::collections::HashMap::new();
    for located in &inv.packages {
        let p = &located.package;
        let Some((eco, eco_name)) = ecosystem_of(p.kind, inv) else {
            continue;
        };
        let (lookup_name, version) = match (&p.source, p.kind) {
            (Some(src), PackageKind::Deb | PackageKind::Apk) => (
                src.as_str(),
                p.source_version.as_deref().unwrap_or(&p.version),
            ),
            // A crate from git or a local path, a jar named only by its manifest: another
            // package than the registry's one of that name.
            (Some(_), PackageKind::Cargo | PackageKind::Maven) => continue,
            // OSV's Go versions carry no `v`; the toolchain is `stdlib` at `go1.x.y`.
            (_, PackageKind::Go) => (
                p.name.as_str(),
                p.version
                    .strip_prefix("go")
                    .filter(|_| p.name == "stdlib")
                    .or_else(|| p.version.strip_prefix('v'))
                    .unwrap_or(&p.version),
            ),
            _ => (p.name.as_str(), p.version.as_str()),
        };
        let key = (eco_name.clone(), lookup_name.to_owned());
        let recs = match records.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(db.lookup(&eco_name, lookup_name)?)
            }
        };
        let wanted = crate::db::index_name(&eco_name, lookup_name);
        for rec in recs.iter() {
            for a in &rec.affected {
                let names_it = a.package.as_ref().is_some_and(|ap| {
                    ap.ecosystem == eco_name && crate::db::index_name(&eco_name, &ap.name) == wanted
                });
                if !names_it {
                    continue;
                }
                let Some(hit) = osv::affects(eco, version, a) else {
                    continue;
                };
                let (severity, cvss3_score) = osv::severity(rec, a);
                out.push(Finding {
                    id: rec.id.clone(),
                    aliases: rec.aliases.clone(),
                    summary: rec.summary.clone(),
                    severity,
                    cvss3_score,
                    ecosystem: eco_name.clone(),
                    package_name: p.name.clone(),
                    package_version: p.version.clone(),
                    purl: p.purl(inv.os_release.as_ref()),
                    source_name: (lookup_name != p.name).then(|| lookup_name.to_owned()),
                    fixed_version: hit.fixed,
                    path: p.path.clone(),
                    layer: located.layer,
                    from_base: None,
                });
                break;
            }
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package_name.cmp(&b.package_name))
    });
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::inventory::{LayerInventory, OsRelease, Package};

    #[test]
    fn debian_by_source_python_by_normal_name_removed_packages_never() {
        let dir = tempfile::tempdir().unwrap();
        let recs = dir.path().join("recs");
        std::fs::create_dir_all(&recs).unwrap();
        for (name, body) in [
            (
                "a.json",
                r#"{"id":"DEBIAN-TEST-OPENSSL","modified":"1","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.13-1~deb12u1"}]}],"ecosystem_specific":{"severity":"high"}}]}"#,
            ),
            (
                "b.json",
                r#"{"id":"DEBIAN-TEST-FIXED-BELOW","modified":"1","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.9-1"}]}]}]}"#,
            ),
            (
                "c.json",
                r#"{"id":"DEBIAN-TEST-CURL","modified":"1","affected":[{"package":{"ecosystem":"Debian:12","name":"curl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
            ),
            (
                "d.json",
                r#"{"id":"GHSA-x84v-xcm2-53pg","modified":"1","affected":[{"package":{"ecosystem":"PyPI","name":"requests"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.20.0"}]}]}],"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"}]}"#,
            ),
        ] {
            std::fs::write(recs.join(name), body).unwrap();
        }
        let mut db = Database::open(&dir.path().join("db")).unwrap();
        db.import_path(&recs).unwrap();

        let mut ssl = Package::new(
            PackageKind::Deb,
            "libssl3",
            "3.0.11-1~deb12u2",
            "var/lib/dpkg/status",
        );
        ssl.source = Some("openssl".into());
        let base = LayerInventory {
            files: [("var/lib/dpkg/status".to_owned(), vec![ssl.clone()])].into(),
            os_release: Some(OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                ..OsRelease::default()
            }),
            ..LayerInventory::default()
        };
        let req = "app/Requests-2.19.0.dist-info/METADATA";
        let app = LayerInventory {
            files: [(
                req.to_owned(),
                vec![Package::new(PackageKind::Python, "requests", "2.19.0", req)],
            )]
            .into(),
            ..LayerInventory::default()
        };
        let found = findings(&ImageInventory::merge(&[base, app]), &db).unwrap();
        let got: Vec<(&str, &str, usize, Option<&str>)> = found
            .iter()
            .map(|f| {
                (
                    f.id.as_str(),
                    f.package_name.as_str(),
                    f.layer,
                    f.fixed_version.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "DEBIAN-TEST-OPENSSL",
                    "libssl3",
                    0,
                    Some("3.0.13-1~deb12u1")
                ),
                ("GHSA-x84v-xcm2-53pg", "requests", 1, Some("2.20.0")),
            ]
        );
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(found[1].severity, Severity::Medium);
        assert_eq!(found[1].cvss3_score, Some(5.9));
    }
}
