//! The scanner's fixture: an image written by hand (a Debian 12 layer, a layer of Python and
//! npm packages, a layer that purges a package and deletes a Python distribution) and the OSV
//! records it is scanned against — real advisory ids for the language packages, clearly-named
//! test records for the Debian ones.

use std::path::Path;

use serde_json::{Value, json};

use super::layout::{Layer, Layout, tar_of, tar_with_executables};

/// The findings the fixture image has against the fixture records.
pub const EXPECTED: &[&str] = &[
    "DEBIAN-TEST-GLIBC-UNFIXED",
    "DEBIAN-TEST-OPENSSL",
    "DEBIAN-TEST-ZLIB-EPOCH",
    "GHSA-p6mc-m468-83gw",
    "GHSA-x84v-xcm2-53pg",
];

pub const OS_RELEASE: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

pub fn status(with_curl: bool) -> Vec<u8> {
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

pub const SITE: &str = "usr/lib/python3/dist-packages";

/// The image: base (Debian), app (Python + npm), cleanup (curl purged, six deleted); the same
/// layout holds the base image alone under the reference `base`.
pub fn image(dir: &Path) -> String {
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
    // The base image alone (`:base`): the first layer of `:v1`.
    let base_img = layout.image(&[&base], "amd64");
    layout.refs(&[(&img, "v1"), (&base_img, "base")]);
    layout.source("v1")
}

pub fn record(id: &str, ecosystem: &str, name: &str, events: Value, extra: Value) -> Value {
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

pub fn records(dir: &Path) -> std::path::PathBuf {
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

/// An AlmaLinux 9 image whose rpm database (`var/lib/rpm/rpmdb.sqlite`, SQLite, as rpm 4.16+
/// writes it) is made by the real rpm: `rpmbuild` builds two empty packages and `rpm --justdb`
/// installs them into a root. A second image holds a BerkeleyDB-era `Packages` file.
pub fn rpm_images(dir: &Path) -> (String, String) {
    let top = dir.join("rpmbuild");
    let root = dir.join("rpmroot");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let mut rpms = Vec::new();
    for (name, epoch, version, release) in [
        ("openssl-libs", Some(1), "3.0.7", "24.el9"),
        ("bash", None, "5.1.8", "6.el9_1"),
    ] {
        let spec = top.join(format!("SPECS/{name}.spec"));
        let epoch_line = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
        std::fs::write(
            &spec,
            format!(
                "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch_line}Summary: test\nLicense: MIT\nBuildArch: x86_64\n%description\ntest\n%files\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["-bb", "--quiet"])
            .arg(&spec)
            .output()
            .unwrap_or_else(|e| panic!("rpmbuild: {e} (scripts/test.sh installs rpm)"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rpms.push(top.join(format!("RPMS/x86_64/{name}-{version}-{release}.x86_64.rpm")));
    }
    let rpm = |args: &[&str]| {
        let out = std::process::Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["--dbpath", "/var/lib/rpm"])
            .args(args)
            .args(&rpms)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    rpm(&["-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"]);
    let db = std::fs::read(root.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    let layout = Layout::new(&dir.join("rpm-layout"));
    let os = b"NAME=\"AlmaLinux\"\nID=\"almalinux\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"AlmaLinux 9.3\"\n";
    let layer = Layer::gzipped(&tar_of(&[
        ("etc/os-release", os),
        ("var/lib/rpm/rpmdb.sqlite", &db),
    ]));
    let img = layout.image(&[&layer], "amd64");
    let old = Layer::plain(tar_of(&[
        ("etc/os-release", os),
        ("var/lib/rpm/Packages", &[0u8; 4096]),
    ]));
    let old_img = layout.image(&[&old], "amd64");
    layout.refs(&[(&img, "sqlite"), (&old_img, "bdb")]);
    (layout.source("sqlite"), layout.source("bdb"))
}

/// The fixtures made by real tools (`scripts/make-scan-fixtures.sh`: a Go binary built by
/// Debian's Go, Debian's log4j-core jar, a debootstrapped Debian 12, pip's and npm's packages),
/// made or found cached.
pub fn binaries() -> std::path::PathBuf {
    super::made_by(
        "scripts/make-scan-fixtures.sh",
        super::fixtures_dir().join("scan"),
    )
}

/// The findings of the binaries image against [`binary_records`].
pub const BINARY_EXPECTED: &[&str] = &["GO-2022-1059", "GO-2023-1987", "MAVEN-TEST-LOG4J-CORE"];

/// A Debian image whose packages are compiled in: the Go binary at `usr/local/bin/go-app`
/// (mode 0755), the same bytes at mode 0644 as `usr/share/doc/go-app.txt` (not an executable:
/// not read), and the jar under `opt/app/lib/`.
pub fn binaries_image(dir: &Path) -> String {
    let fixtures = binaries();
    let go = std::fs::read(fixtures.join("go-app")).unwrap();
    let jar = std::fs::read(fixtures.join("log4j-core.jar")).unwrap();
    let layout = Layout::new(&dir.join("bin-layout"));
    let layer = Layer::gzipped(&tar_with_executables(
        &[
            ("etc/os-release", OS_RELEASE),
            ("usr/local/bin/go-app", &go),
            ("usr/share/doc/go-app.txt", &go),
            ("opt/app/lib/log4j-core.jar", &jar),
        ],
        &["usr/local/bin/go-app"],
    ));
    let img = layout.image(&[&layer], "amd64");
    layout.refs(&[(&img, "bin")]);
    layout.source("bin")
}

/// Records for the binaries image: real Go advisories (x/text's language tag parsing, fixed in
/// 0.3.8; crypto/tls's large RSA keys, fixed in Go 1.19.12 and 1.20.7), and clearly-named test
/// records for log4j-core (affected, and fixed below 2.19.0).
pub fn binary_records(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("osv-bin");
    std::fs::create_dir_all(&d).unwrap();
    let all = [
        record(
            "GO-2022-1059",
            "Go",
            "golang.org/x/text",
            json!([{"introduced": "0"}, {"fixed": "0.3.8"}]),
            json!({"aliases": ["CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"]}),
        ),
        record(
            "GO-2023-1987",
            "Go",
            "stdlib",
            json!([{"introduced": "0"}, {"fixed": "1.19.12"}, {"introduced": "1.20.0-0"}, {"fixed": "1.20.7"}]),
            json!({"aliases": ["CVE-2023-29409"]}),
        ),
        record(
            "MAVEN-TEST-LOG4J-CORE",
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            json!([{"introduced": "2.0"}, {"fixed": "2.25.3"}]),
            json!({}),
        ),
        record(
            "MAVEN-TEST-LOG4J-FIXED-BELOW",
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            json!([{"introduced": "2.0"}, {"fixed": "2.17.1"}]),
            json!({}),
        ),
    ];
    for r in all {
        let id = r["id"].as_str().unwrap().to_owned();
        std::fs::write(
            d.join(format!("{id}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
    }
    d
}

/// Every regular file under `dir`, as (path under `prefix`, contents), sorted.
fn files_under(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((format!("{prefix}/{rel}"), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A Debian 12 image made by real tools: the `debootstrap --variant=minbase` root filesystem
/// (layer 0), requests 2.19.0 and urllib3 1.23 as pip installed them, lodash 4.17.15 and
/// ms 2.0.0 as the npm registry serves them, and the Go binary (layer 1), then e2fsprogs purged — the status dpkg left, its file list whited out — and
/// urllib3's distribution deleted (layer 2).
pub fn debian_image(dir: &Path) -> String {
    let fx = binaries();
    let base = Layer::from_gzip(std::fs::read(fx.join("bookworm/base.tar.gz")).unwrap());
    let site = "usr/local/lib/python3.11/dist-packages";
    let mut app_files = files_under(&fx.join("python"), site);
    app_files.extend(files_under(
        &fx.join("node_modules"),
        "srv/app/node_modules",
    ));
    app_files.push((
        "usr/local/bin/go-app".into(),
        std::fs::read(fx.join("go-app")).unwrap(),
    ));
    let refs: Vec<(&str, &[u8])> = app_files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let app = Layer::gzipped(&tar_with_executables(&refs, &["usr/local/bin/go-app"]));
    let status = std::fs::read(fx.join("bookworm/status-after-purge")).unwrap();
    let mut cleanup: Vec<(String, Vec<u8>)> = vec![("var/lib/dpkg/status".into(), status)];
    for wh in [
        "var/lib/dpkg/info/.wh.e2fsprogs.list".to_owned(),
        "var/lib/dpkg/info/.wh.e2fsprogs.md5sums".to_owned(),
        "usr/share/doc/.wh.e2fsprogs".to_owned(),
        format!("{site}/.wh.urllib3-1.23.dist-info"),
        format!("{site}/.wh.urllib3"),
    ] {
        cleanup.push((wh, Vec::new()));
    }
    let refs: Vec<(&str, &[u8])> = cleanup
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let cleanup = Layer::gzipped(&tar_of(&refs));
    let layout = Layout::new(&dir.join("deb-layout"));
    let img = layout.image(&[&base, &app, &cleanup], "amd64");
    layout.refs(&[(&img, "bookworm")]);
    layout.source("bookworm")
}
