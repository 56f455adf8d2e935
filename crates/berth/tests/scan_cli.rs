//! `berth scan` end to end on an image written by hand: a Debian 12 layer (dpkg status with
//! source packages, epochs and `~` versions), a layer of Python and npm packages, and a layer
//! that purges a package and deletes a Python distribution (a whiteout) — against OSV records
//! imported with `berth scan db import`: real advisory ids for the language packages, and
//! clearly-named test records for the Debian ones.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use common::layout::{Layer, Layout, tar_of};
use common::scan_fixture::{OS_RELEASE, image, records, status};
use serde_json::Value;

fn berth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_CACHE_DIR", dir.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("BERTH_SCAN_DB")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A report's packages as (name, version, introducing layer), sorted.
fn packages_of(report: &Value) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
                p["layer"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A report's findings by advisory id.
fn findings_by_id(report: &Value) -> BTreeMap<String, Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

fn scan_json(dir: &Path, image: &str, extra: &[&str]) -> Value {
    let mut args = vec!["scan", image, "--format", "json"];
    args.extend_from_slice(extra);
    let reports: Value = serde_json::from_str(&ok(&berth(dir, &args))).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1, "{reports}");
    reports[0].clone()
}

#[test]
fn scan_finds_what_is_installed_and_nothing_that_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path());
    let osv = records(dir.path());

    // An empty database: packages, no findings, and a note that says what to do.
    let empty = scan_json(dir.path(), &image, &[]);
    assert!(empty["findings"].as_array().unwrap().is_empty());
    assert!(
        empty["notes"].to_string().contains("berth scan db import"),
        "{}",
        empty["notes"]
    );

    let imported = ok(&berth(
        dir.path(),
        &["scan", "db", "import", osv.to_str().unwrap()],
    ));
    assert!(
        imported.contains("imported 9 record(s), 0 unchanged, 1 skipped"),
        "{imported}"
    );
    let status: Value =
        serde_json::from_str(&ok(&berth(dir.path(), &["scan", "db", "status", "--json"]))).unwrap();
    assert_eq!(status["records"], 9);
    assert_eq!(status["ecosystems"]["Debian:12"], 5);
    assert_eq!(status["ecosystems"]["PyPI"], 2);

    let r = scan_json(dir.path(), &image, &[]);
    assert_eq!(r["os"]["id"], "debian");
    assert_eq!(r["platform"], "linux/amd64");
    // Every layer was inventoried by the first scan: all three come from the cache now.
    let cached: Vec<bool> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cached"].as_bool().unwrap())
        .collect();
    assert_eq!(cached, [true, true, true]);
    // The inventory: curl purged, six deleted, the fixture package.json not a package.
    let packages = packages_of(&r);
    let want: Vec<(String, String, u64)> = [
        ("libc6", "2.36-9+deb12u4", 0),
        ("libssl3", "3.0.11-1~deb12u2", 0),
        ("lodash", "4.17.15", 1),
        ("requests", "2.19.0", 1),
        ("zlib1g", "1:1.2.13.dfsg-1", 0),
    ]
    .iter()
    .map(|(n, v, l)| ((*n).to_owned(), (*v).to_owned(), *l))
    .collect();
    assert_eq!(packages, want);

    // The findings: every expected advisory, none for removed packages, fixed versions below
    // the installed one, or another release.
    let findings = findings_by_id(&r);
    let ids: Vec<&str> = findings.keys().map(String::as_str).collect();
    assert_eq!(ids, common::scan_fixture::EXPECTED);
    let ssl = &findings["DEBIAN-TEST-OPENSSL"];
    assert_eq!(ssl["packageName"], "libssl3");
    assert_eq!(ssl["sourceName"], "openssl");
    assert_eq!(ssl["fixedVersion"], "3.0.13-1~deb12u1");
    assert_eq!(ssl["severity"], "HIGH");
    assert_eq!(ssl["layer"], 0);
    let req = &findings["GHSA-x84v-xcm2-53pg"];
    assert_eq!(req["severity"], "HIGH", "the CVSS v3 band: 7.5");
    assert_eq!(req["cvss3Score"], 7.5);
    assert_eq!(req["layer"], 1);
    assert_eq!(findings["GHSA-p6mc-m468-83gw"]["fixedVersion"], "4.17.19");
    assert!(findings["DEBIAN-TEST-GLIBC-UNFIXED"]["fixedVersion"].is_null());
    assert_eq!(r["severityCounts"]["HIGH"], 3);

    // Filters and the exit code, as trivy spells them.
    let fixed = scan_json(dir.path(), &image, &["--ignore-unfixed"]);
    assert_eq!(fixed["findings"].as_array().unwrap().len(), 4);
    let out = berth(
        dir.path(),
        &["scan", &image, "--severity", "CRITICAL", "--exit-code", "3"],
    );
    assert_eq!(out.status.code(), Some(0), "no CRITICAL finding");
    let out = berth(
        dir.path(),
        &[
            "scan",
            &image,
            "--severity",
            "HIGH,CRITICAL",
            "--exit-code",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("HIGH (3)"), "{table}");
    assert!(table.contains("Debian GNU/Linux 12 (bookworm)"), "{table}");
    let out = berth(dir.path(), &["scan", &image, "--severity", "SEVERE"]);
    assert_eq!(out.status.code(), Some(2));

    // Judged findings: an ignore file (one line expired) and an OpenVEX statement.
    let ignore = dir.path().join("ignore");
    std::fs::write(
        &ignore,
        "# accepted until the upgrade
CVE-2018-18074 exp:2099-12-31
DEBIAN-TEST-OPENSSL exp:2001-01-01
",
    )
    .unwrap();
    let vex = dir.path().join("app.vex.json");
    std::fs::write(
        &vex,
        serde_json::to_vec(&serde_json::json!({
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://example.invalid/vex/1",
            "author": "test", "timestamp": "2026-01-01T00:00:00Z", "version": 1,
            "statements": [{
                "vulnerability": {"name": "CVE-2020-8203"},
                "products": [{"@id": "pkg:npm/lodash"}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path"
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    let judged = scan_json(
        dir.path(),
        &image,
        &[
            "--ignorefile",
            ignore.to_str().unwrap(),
            "--vex",
            vex.to_str().unwrap(),
        ],
    );
    let kept: Vec<&str> = judged["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(!kept.contains(&"GHSA-x84v-xcm2-53pg"), "{kept:?}");
    assert!(!kept.contains(&"GHSA-p6mc-m468-83gw"), "{kept:?}");
    assert!(
        kept.contains(&"DEBIAN-TEST-OPENSSL"),
        "an expired line: {kept:?}"
    );
    let reasons: Vec<&str> = judged["suppressed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("VEX not_affected")),
        "{reasons:?}"
    );
    assert_eq!(
        findings["GHSA-p6mc-m468-83gw"]["purl"],
        "pkg:npm/lodash@4.17.15"
    );

    // Attribution: the Debian findings come with the base image, the language ones with the
    // application's layers.
    let base = image.replace(":v1", ":base");
    let attributed = scan_json(dir.path(), &image, &["--base", &base]);
    assert_eq!(attributed["baseImage"], base.as_str());
    assert_eq!(attributed["layers"][0]["base"], true);
    assert_eq!(attributed["layers"][1]["base"], false);
    for f in attributed["findings"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap();
        assert_eq!(f["fromBase"], id.starts_with("DEBIAN-"), "{f}");
    }
    assert!(
        findings["GHSA-x84v-xcm2-53pg"]["fromBase"].is_null(),
        "unknown without a base"
    );

    // Documents for other tools: SBOMs validated by the reference libraries, SARIF's shape.
    let mut docs = Vec::new();
    for format in ["cyclonedx", "spdx", "sarif"] {
        let text = ok(&berth(dir.path(), &["scan", &image, "--format", format]));
        let path = dir.path().join(format!("scan.{format}.json"));
        std::fs::write(&path, &text).unwrap();
        docs.push((path, serde_json::from_str::<Value>(&text).unwrap()));
    }
    let out = Command::new(common::python())
        .arg(common::workspace().join("crates/berth/tests/sbom_validate.py"))
        .arg(&docs[0].0)
        .arg(&docs[1].0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bom = &docs[0].1;
    assert_eq!(
        bom["components"].as_array().unwrap().len(),
        6,
        "5 packages and the OS"
    );
    assert_eq!(bom["vulnerabilities"].as_array().unwrap().len(), 5);
    let spdx = &docs[1].1;
    assert_eq!(
        spdx["packages"].as_array().unwrap().len(),
        6,
        "the image and 5 packages"
    );
    let sarif = &docs[2].1;
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["ruleId"].is_string()
        && ["error", "warning", "note"].contains(&r["level"].as_str().unwrap())
        && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string()));
    assert_eq!(
        findings["DEBIAN-TEST-OPENSSL"]["purl"],
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"
    );
}

#[test]
fn hostile_layers_are_refused_or_skipped_and_nothing_is_written_outside() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&dir.path().join("layout"));
    // A layer climbing out of the root, and one cut short.
    let climbing = Layer::plain(tar_of(&[
        ("../../etc/os-release", b"ID=evil\n"),
        ("etc/os-release", OS_RELEASE),
    ]));
    let img = layout.image(&[&climbing], "amd64");
    let mut truncated = Layer::gzipped(&tar_of(&[("var/lib/dpkg/status", &status(true))]));
    let cut = truncated.bytes.len() / 2;
    truncated.bytes.truncate(cut);
    let bad = layout.image(&[&truncated], "amd64");
    // Symlink loops and a symlink out of the root (never followed: nothing is extracted), and
    // dpkg's database as a GNU sparse file claiming 10 GiB (skipped by its size, unread).
    let mut b = tar::Builder::new(Vec::new());
    for (path, target) in [
        ("loop/a", "b"),
        ("loop/b", "a"),
        ("etc/os-release", "../../../../etc/os-release"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, path, target).unwrap();
    }
    let claimed: u64 = 10 << 30;
    let mut h = tar::Header::new_gnu();
    h.set_path("var/lib/dpkg/status").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    h.set_mode(0o644);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.sparse[0]
        .offset
        .copy_from_slice(format!("{:012o}", claimed - 512).as_bytes());
    gnu.sparse[0]
        .numbytes
        .copy_from_slice(format!("{:011o}\0", 512).as_bytes());
    gnu.realsize
        .copy_from_slice(format!("{claimed:012o}").as_bytes());
    h.set_cksum();
    b.append(&h, &[b'x'; 512][..]).unwrap();
    let tricks = layout.image(&[&Layer::plain(b.into_inner().unwrap())], "amd64");
    // A decompression bomb: 1.5 GiB of zeros in 1.5 MB of gzip members (a file's header, the
    // same 64 MiB of zeros 24 times, the archive's end), refused at the default limits.
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    };
    let chunk = 64usize << 20;
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(24 * chunk as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let zeros = gz(&vec![0u8; chunk]);
    let mut bomb_bytes = gz(h.as_bytes());
    for _ in 0..24 {
        bomb_bytes.extend_from_slice(&zeros);
    }
    bomb_bytes.extend_from_slice(&gz(&[0u8; 1024]));
    let mut bomb = Layer::gzipped(b"");
    bomb.bytes = bomb_bytes;
    let bomb = layout.image(&[&bomb], "amd64");
    layout.refs(&[
        (&img, "climbing"),
        (&bad, "truncated"),
        (&tricks, "tricks"),
        (&bomb, "bomb"),
    ]);

    let r = scan_json(dir.path(), &layout.source("climbing"), &[]);
    assert_eq!(r["os"]["id"], "debian");
    assert!(
        r["notes"].to_string().contains("leaves the root"),
        "{}",
        r["notes"]
    );
    let out = berth(dir.path(), &["scan", &layout.source("truncated")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("layer sha256:"), "{err}");

    let t = scan_json(dir.path(), &layout.source("tricks"), &[]);
    assert!(t["packages"].as_array().unwrap().is_empty());
    assert!(
        t["notes"].to_string().contains(&format!("{claimed} bytes")),
        "{}",
        t["notes"]
    );

    let started = std::time::Instant::now();
    let out = berth(dir.path(), &["scan", &layout.source("bomb")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("decompression bomb"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(!dir.path().join("etc").exists());
    assert!(!dir.path().join("loop").exists());
}

/// `berth scan db update` against a loopback mirror of osv.dev's bucket (`ECOSYSTEM/all.zip`,
/// served by Python's http.server): each archive imported, a second update changes nothing,
/// and a missing archive is a clear failure.
#[test]
fn db_update_downloads_each_ecosystem_from_a_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let osv = records(dir.path());
    let mirror = dir.path().join("mirror");
    let zip = |eco: &str, files: &[&str]| {
        let target = mirror.join(eco);
        std::fs::create_dir_all(&target).unwrap();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "zipfile", "-c"])
            .arg(target.join("all.zip"));
        for f in files {
            cmd.arg(osv.join(f));
        }
        assert!(cmd.status().unwrap().success());
    };
    zip(
        "Debian",
        &[
            "debian/DEBIAN-TEST-OPENSSL.json",
            "debian/DEBIAN-TEST-ZLIB-EPOCH.json",
            "debian/DEBIAN-TEST-GLIBC-UNFIXED.json",
        ],
    );
    zip(
        "PyPI",
        &["GHSA-x84v-xcm2-53pg.json", "PYSEC-TEST-SIX-DELETED.json"],
    );
    zip("npm", &["GHSA-p6mc-m468-83gw.json"]);
    let mut server = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&mirror)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .unwrap_or_else(|| panic!("http.server said {line:?}"))
        .to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let result = std::panic::catch_unwind(|| {
        let update = |ecosystems: &str| {
            berth(
                dir.path(),
                &[
                    "scan",
                    "db",
                    "update",
                    "--ecosystem",
                    ecosystems,
                    "--base-url",
                    &base,
                ],
            )
        };
        let first = ok(&update("Debian,PyPI,npm"));
        assert!(first.contains("Debian"), "{first}");
        let status: Value =
            serde_json::from_str(&ok(&berth(dir.path(), &["scan", "db", "status", "--json"])))
                .unwrap();
        assert_eq!(status["records"], 6, "{status}");
        assert_eq!(status["ecosystems"]["npm"], 1, "{status}");
        let again = ok(&update("Debian,PyPI,npm"));
        assert!(again.contains("0 imported, 3 unchanged"), "{again}");
        let out = update("Go");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Go/all.zip: HTTP 404"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The scan finds what the downloaded records say.
        let r = scan_json(dir.path(), &image(dir.path()), &[]);
        assert_eq!(r["findings"].as_array().unwrap().len(), 5, "{r}");
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `--attach`: the SBOM goes beside the image as an OCI referrer of it, the registry lists it,
/// and `berth copy` carries it to another repository.
#[test]
fn attached_sboms_are_referrers_that_copies_carry() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"));
    let image = image(dir.path());
    let src = format!("{}/attach/app:v1", server.addr);
    ok(&berth(
        dir.path(),
        &["push", &image, &src, "--progress", "quiet"],
    ));
    let out = berth(dir.path(), &["scan", &src, "--attach", "--format", "json"]);
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    let digest = report[0]["digest"].as_str().unwrap().to_owned();
    assert!(String::from_utf8_lossy(&out.stderr).contains("attached sha256:"));
    let referrers = |repo: &str| -> Value {
        let url = server.url(&format!("/v2/{repo}/referrers/{digest}"));
        let out = Command::new("curl").args(["-sf", &url]).output().unwrap();
        assert!(out.status.success(), "GET {url}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let listed = referrers("attach/app");
    let m = &listed["manifests"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(m[0]["artifactType"], "application/vnd.cyclonedx+json");
    // Again: the same document (SOURCE_DATE_EPOCH), nothing new.
    ok(&berth(dir.path(), &["scan", &src, "--attach"]));
    assert_eq!(
        referrers("attach/app")["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let dst = format!("{}/attach/copy:v1", server.addr);
    ok(&berth(
        dir.path(),
        &["copy", &src, &dst, "--progress", "quiet"],
    ));
    assert_eq!(referrers("attach/copy")["manifests"], listed["manifests"]);
}

/// An image's packages as syft names them: (type, name, version), lower-cased names; berth's
/// kinds mapped to syft's types and a Maven package to its artifact id.
type Triple = (String, String, String);

/// Compares the inventory with syft's on the same image (syft needs no database): every
/// package either both report, or the difference is listed with its reason.
fn compare_with_syft(
    dir: &Path,
    image: &str,
    ours: &Value,
    reference: &str,
    only_syft: &[(&str, &str, &str, &str)],
    only_berth: &[(&str, &str, &str, &str)],
) {
    // syft reads a layout holding one image: the image alone, copied by berth.
    let single = dir.join(format!("single-{reference}"));
    ok(&berth(
        dir,
        &[
            "copy",
            image,
            &format!("oci:{}:{reference}", single.display()),
            "--progress",
            "quiet",
        ],
    ));
    let layout = single.display().to_string();
    let syft = common::syft();
    let out = Command::new(&syft)
        .arg(format!("oci-dir:{layout}"))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh installs syft)", syft.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let syft_set: BTreeSet<Triple> = theirs["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_owned(),
                a["name"].as_str().unwrap().to_ascii_lowercase(),
                a["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let berth_set: BTreeSet<Triple> = ours["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let kind = p["kind"].as_str().unwrap();
            let name = p["name"].as_str().unwrap().to_ascii_lowercase();
            let (kind, name) = match kind {
                "go" => ("go-module", name),
                "cargo" => ("rust-crate", name),
                "maven" => (
                    "java-archive",
                    name.rsplit(':').next().unwrap_or_default().to_owned(),
                ),
                k => (k, name),
            };
            (
                kind.to_owned(),
                name,
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let listed = |l: &[(&str, &str, &str, &str)]| -> BTreeSet<Triple> {
        l.iter()
            .map(|(t, n, v, _)| ((*t).to_owned(), (*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    let syft_only: BTreeSet<_> = syft_set.difference(&berth_set).cloned().collect();
    let berth_only: BTreeSet<_> = berth_set.difference(&syft_set).cloned().collect();
    assert_eq!(syft_only, listed(only_syft), "reported by syft only");
    assert_eq!(berth_only, listed(only_berth), "reported by berth only");
    assert!(!syft_set.is_empty());
}

/// The inventory compared with syft's on both fixture images: OS, Python and npm packages;
/// Go modules and the toolchain of a real Go binary; a real jar's Maven coordinates.
#[test]
fn the_inventory_agrees_with_syft() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path());
    compare_with_syft(
        dir.path(),
        &image,
        &scan_json(dir.path(), &image, &[]),
        "v1",
        &[(
            "npm",
            "not-a-dependency",
            "0.0.1",
            "a package.json inside a package (node_modules/lodash/test/fixtures/) is not an \
             installed package: npm installs only node_modules/NAME and node_modules/@SCOPE/NAME",
        )],
        &[],
    );
    let bin = common::scan_fixture::binaries_image(dir.path());
    compare_with_syft(
        dir.path(),
        &bin,
        &scan_json(dir.path(), &bin, &[]),
        "bin",
        &[(
            "go-module",
            "example.com/berth-scan-fixture",
            "(devel)",
            "the binary's own main module, built from a work tree: it has no version, so no \
             advisory can name it",
        )],
        &[],
    );
}

/// A real Debian 12 root filesystem (debootstrap) with real Python packages (pip) and a real Go
/// binary on top, a package purged by the real dpkg and a Python distribution deleted: the
/// inventory agrees with syft's, nothing removed is reported, and findings are attributed to
/// the layer that brought the package.
#[test]
fn a_debootstrapped_debian_image_agrees_with_syft() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::scan_fixture::debian_image(dir.path());
    let (recs, bin_recs) = (
        records(dir.path()),
        common::scan_fixture::binary_records(dir.path()),
    );
    ok(&berth(
        dir.path(),
        &[
            "scan",
            "db",
            "import",
            recs.to_str().unwrap(),
            bin_recs.to_str().unwrap(),
        ],
    ));
    let r = scan_json(dir.path(), &image, &[]);
    assert_eq!(r["os"]["id"], "debian");
    let packages = packages_of(&r);
    let has = |name: &str| packages.iter().find(|(n, _, _)| n == name).map(|p| p.2);
    assert_eq!(has("libc6"), Some(0));
    assert_eq!(has("libext2fs2"), Some(0));
    assert_eq!(has("requests"), Some(1));
    assert_eq!(has("lodash"), Some(1));
    assert_eq!(has("ms"), Some(1));
    assert_eq!(has("golang.org/x/text"), Some(1));
    assert_eq!(has("e2fsprogs"), None, "purged");
    assert_eq!(has("urllib3"), None, "deleted");
    let debs = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "deb")
        .count();
    assert!(debs > 80, "{debs} dpkg packages");
    let findings = findings_by_id(&r);
    for id in [
        "DEBIAN-TEST-GLIBC-UNFIXED",
        "GHSA-p6mc-m468-83gw",
        "GHSA-x84v-xcm2-53pg",
        "GO-2022-1059",
    ] {
        assert!(findings.contains_key(id), "{id}: {:?}", findings.keys());
    }
    assert_eq!(findings["GHSA-x84v-xcm2-53pg"]["layer"], 1);
    assert_eq!(findings["DEBIAN-TEST-GLIBC-UNFIXED"]["layer"], 0);
    assert_eq!(findings["DEBIAN-TEST-GLIBC-UNFIXED"]["sourceName"], "glibc");
    compare_with_syft(dir.path(), &image, &r, "bookworm", ONLY_SYFT_DEBIAN, &[]);
}

/// What syft reports on the Debian image and berth does not, with why.
const ONLY_SYFT_DEBIAN: &[(&str, &str, &str, &str)] = &[(
    "go-module",
    "example.com/berth-scan-fixture",
    "(devel)",
    "the binary's own main module, built from a work tree: it has no version, so no advisory \
     can name it",
)];

/// Packages compiled in: a Go binary's modules and toolchain (build info written by the real Go
/// linker) and a jar's Maven coordinates, matched in semver and Maven order; the same bytes in
/// a file that is not executable are not read.
#[test]
fn go_binaries_and_java_archives_are_inventoried_and_matched() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::scan_fixture::binaries_image(dir.path());
    let recs = common::scan_fixture::binary_records(dir.path());
    ok(&berth(
        dir.path(),
        &["scan", "db", "import", recs.to_str().unwrap()],
    ));
    // Progress, asked for in a log: the layer read, then found in the inventory cache.
    let progress = |want: &str| {
        let out = berth(
            dir.path(),
            &["scan", &image, "--format", "json", "--progress", "plain"],
        );
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    };
    progress(": read ");
    progress(": inventory cached (");
    let r = scan_json(dir.path(), &image, &[]);
    let want: Vec<(String, String, u64)> = [
        ("golang.org/x/text", "v0.3.7", 0),
        ("org.apache.logging.log4j:log4j-core", "2.19.0", 0),
        ("stdlib", "go1.19.8", 0),
    ]
    .iter()
    .map(|(n, v, l)| ((*n).to_owned(), (*v).to_owned(), *l))
    .collect();
    assert_eq!(packages_of(&r), want);
    let findings = findings_by_id(&r);
    let ids: Vec<&str> = findings.keys().map(String::as_str).collect();
    assert_eq!(ids, common::scan_fixture::BINARY_EXPECTED);
    let text = &findings["GO-2022-1059"];
    assert_eq!(text["purl"], "pkg:golang/golang.org/x/text@v0.3.7");
    assert_eq!(text["fixedVersion"], "0.3.8");
    assert_eq!(text["path"], "usr/local/bin/go-app");
    assert_eq!(findings["GO-2023-1987"]["fixedVersion"], "1.19.12");
    let log4j = &findings["MAVEN-TEST-LOG4J-CORE"];
    assert_eq!(
        log4j["purl"],
        "pkg:maven/org.apache.logging.log4j/log4j-core@2.19.0"
    );
    assert_eq!(log4j["path"], "opt/app/lib/log4j-core.jar");
}

/// The rpm database of an AlmaLinux image (made by the real rpm), matched in rpm's version
/// order (epochs, `el9_1`); an old BerkeleyDB database is reported as unsupported, not skipped
/// silently.
#[test]
fn rpm_databases_are_read_and_matched() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, bdb) = common::scan_fixture::rpm_images(dir.path());
    let recs = dir.path().join("alma");
    std::fs::create_dir_all(&recs).unwrap();
    for (id, name, fixed) in [
        ("ALSA-TEST-OPENSSL", "openssl-libs", "1:3.0.7-25.el9"),
        ("ALSA-TEST-BASH-FIXED-BELOW", "bash", "5.1.8-6.el9"),
    ] {
        let r = common::scan_fixture::record(
            id,
            "AlmaLinux:9",
            name,
            serde_json::json!([{"introduced": "0"}, {"fixed": fixed}]),
            serde_json::json!({}),
        );
        std::fs::write(
            recs.join(format!("{id}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
    }
    ok(&berth(
        dir.path(),
        &["scan", "db", "import", recs.to_str().unwrap()],
    ));
    let r = scan_json(dir.path(), &sqlite, &[]);
    assert_eq!(
        packages_of(&r),
        [
            ("bash".to_owned(), "5.1.8-6.el9_1".to_owned(), 0),
            ("openssl-libs".to_owned(), "1:3.0.7-24.el9".to_owned(), 0),
        ]
    );
    let ids: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ALSA-TEST-OPENSSL"]);
    assert_eq!(
        r["findings"][0]["purl"],
        "pkg:rpm/almalinux/openssl-libs@1%3A3.0.7-24.el9?arch=x86_64&distro=almalinux-9.3"
    );
    let old = scan_json(dir.path(), &bdb, &[]);
    assert!(old["packages"].as_array().unwrap().is_empty());
    assert!(
        old["notes"]
            .to_string()
            .contains("unsupported rpm database"),
        "{}",
        old["notes"]
    );
}
