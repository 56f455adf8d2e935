//! `berth scan` end to end on an image written by hand: a Debian 12 layer (dpkg status with
//! source packages, epochs and `~` versions), a layer of Python and npm packages, and a layer
//! that purges a package and deletes a Python distribution (a whiteout) — against OSV records
//! imported with `berth scan db import`: real advisory ids for the language packages, and
//! clearly-named test records for the Debian ones.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::layout::{Layer, Layout, tar_of};
use serde_json::{Value, json};

const OS_RELEASE: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

fn status(with_curl: bool) -> Vec<u8> {
    let mut s = String::from(
        "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n\n\
         Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n\n\
         Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n\n",
    );
    if with_curl {
        s.push_str(
            "Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10+deb12u5\n\n",
        );
    }
    s.into_bytes()
}

const SITE: &str = "usr/lib/python3/dist-packages";

/// The image: base (Debian), app (Python + npm), cleanup (curl purged, six deleted).
fn image(dir: &Path) -> String {
    let layout = Layout::new(&dir.join("layout"));
    let base = Layer::gzipped(&tar_of(&[
        ("etc/", b""),
        ("etc/os-release", OS_RELEASE),
        ("var/lib/dpkg/status", &status(true)),
    ]));
    let requests = format!("{SITE}/requests-2.19.0.dist-info/METADATA");
    let six = format!("{SITE}/six-1.16.0.dist-info/METADATA");
    let app = Layer::plain(tar_of(&[
        (
            requests.as_str(),
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n\nHTTP for Humans.\n",
        ),
        (
            six.as_str(),
            b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n",
        ),
        (
            "app/node_modules/lodash/package.json",
            br#"{"name":"lodash","version":"4.17.15","main":"lodash.js"}"#,
        ),
        (
            "app/node_modules/lodash/test/fixtures/package.json",
            br#"{"name":"not-a-dependency","version":"0.0.1"}"#,
        ),
    ]));
    let wh = format!("{SITE}/.wh.six-1.16.0.dist-info");
    let cleanup = Layer::gzipped(&tar_of(&[
        ("var/lib/dpkg/status", &status(false)),
        (wh.as_str(), b""),
    ]));
    let img = layout.image(&[&base, &app, &cleanup], "amd64");
    layout.refs(&[(&img, "v1")]);
    layout.source("v1")
}

fn record(id: &str, ecosystem: &str, name: &str, events: Value, extra: Value) -> Value {
    let mut r = json!({
        "id": id, "modified": "2024-01-01T00:00:00Z", "summary": format!("{id} summary"),
        "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}]}],
    });
    if let (Some(r), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    r
}

fn records(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("osv");
    std::fs::create_dir_all(d.join("debian")).unwrap();
    let deb = |id: &str, name: &str, events: Value, sev: &str| {
        let mut r = record(id, "Debian:12", name, events, json!({}));
        r["affected"][0]["ecosystem_specific"] = json!({ "severity": sev });
        (format!("debian/{id}.json"), r)
    };
    let all = [
        // Binary libssl3 from source openssl; a `~` version below the fix.
        deb(
            "DEBIAN-TEST-OPENSSL",
            "openssl",
            json!([{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]),
            "high",
        ),
        // An epoch: 1:1.2.13.dfsg-1 is below 1:1.2.13.dfsg-1+deb12u1.
        deb(
            "DEBIAN-TEST-ZLIB-EPOCH",
            "zlib",
            json!([{"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-1+deb12u1"}]),
            "medium",
        ),
        // Fixed below the installed version: no finding.
        deb(
            "DEBIAN-TEST-GLIBC-FIXED-BELOW",
            "glibc",
            json!([{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]),
            "critical",
        ),
        // Not fixed yet: a finding with no fixed version.
        deb(
            "DEBIAN-TEST-GLIBC-UNFIXED",
            "glibc",
            json!([{"introduced": "0"}]),
            "low",
        ),
        // The purged package: no finding.
        deb(
            "DEBIAN-TEST-CURL-PURGED",
            "curl",
            json!([{"introduced": "0"}]),
            "critical",
        ),
        (
            "debian/DEBIAN-TEST-OTHER-RELEASE.json".into(),
            record(
                "DEBIAN-TEST-OTHER-RELEASE",
                "Debian:11",
                "openssl",
                json!([{"introduced": "0"}]),
                json!({}),
            ),
        ),
        // Real advisories of the pinned language packages.
        (
            "GHSA-x84v-xcm2-53pg.json".into(),
            record(
                "GHSA-x84v-xcm2-53pg",
                "PyPI",
                "requests",
                json!([{"introduced": "0"}, {"fixed": "2.20.0"}]),
                json!({"aliases": ["CVE-2018-18074"],
                       "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}]}),
            ),
        ),
        (
            "GHSA-p6mc-m468-83gw.json".into(),
            record(
                "GHSA-p6mc-m468-83gw",
                "npm",
                "lodash",
                json!([{"introduced": "3.7.0"}, {"fixed": "4.17.19"}]),
                json!({"aliases": ["CVE-2020-8203"], "database_specific": {"severity": "HIGH"}}),
            ),
        ),
        // The deleted Python distribution: no finding.
        (
            "PYSEC-TEST-SIX-DELETED.json".into(),
            record(
                "PYSEC-TEST-SIX-DELETED",
                "PyPI",
                "six",
                json!([{"introduced": "0"}]),
                json!({}),
            ),
        ),
    ];
    for (name, r) in all {
        std::fs::write(d.join(name), serde_json::to_vec(&r).unwrap()).unwrap();
    }
    std::fs::write(d.join("not-a-record.json"), b"[1, 2").unwrap();
    d
}

fn berth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_CACHE_DIR", dir.join("cache"))
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
    let mut packages: Vec<(String, String, u64)> = r["packages"]
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
    packages.sort();
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
    let findings: BTreeMap<String, Value> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), f.clone()))
        .collect();
    let ids: Vec<&str> = findings.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "DEBIAN-TEST-GLIBC-UNFIXED",
            "DEBIAN-TEST-OPENSSL",
            "DEBIAN-TEST-ZLIB-EPOCH",
            "GHSA-p6mc-m468-83gw",
            "GHSA-x84v-xcm2-53pg",
        ]
    );
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
    layout.refs(&[(&img, "climbing"), (&bad, "truncated")]);

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
    assert!(!dir.path().join("etc").exists());
}
