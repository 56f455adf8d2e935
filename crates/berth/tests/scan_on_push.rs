//! Scan on push in `berth serve`, driven by real clients: a repository created by the AWS CLI
//! with scanOnPush, an image pushed by `berth push`, the scan awaited with the AWS CLI's own
//! `wait image-scan-complete` waiter and read back with `describe-image-scan-findings` and
//! `describe-images`; `start-image-scan` on demand; and a `kill -9` while a scan is in
//! progress leaves the image scannable (the restarted server finishes the scan).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::scan_fixture::{EXPECTED, image, records};
use common::{Server, aws_cli};
use serde_json::Value;

const ROOT_ID: &str = "AKIASCANONPUSHROOT01";
const ROOT_SECRET: &str = "scan-on-push-test-root-secret-0123456789";

fn serve(data: &Path, crash: Option<&str>) -> Server {
    serve_with(data, crash, &[])
}

fn serve_with(data: &Path, crash: Option<&str>, extra: &[&str]) -> Server {
    Server::spawn(serve_cmd(data, crash, extra), data)
}

fn serve_cmd(data: &Path, crash: Option<&str>, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID)
        .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped());
    match crash {
        Some(p) => cmd.env("BERTH_CRASH_POINT", p),
        None => cmd.env_remove("BERTH_CRASH_POINT"),
    };
    cmd
}

fn client(cmd: &mut Command, dir: &Path, server: &Server) {
    common::aws_client_env(cmd, dir, server, ROOT_ID, ROOT_SECRET);
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `aws ecr ARGS` against the server, whatever its outcome.
fn aws_output(dir: &Path, server: &Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(aws_cli());
    client(&mut cmd, dir, server);
    // Debian's AWS CLI (2.9) predates AWS_ENDPOINT_URL_ECR: the endpoint goes on the command.
    let endpoint = format!("http://{}", server.addr);
    run(cmd
        .args(["--output", "json", "--endpoint-url", &endpoint, "ecr"])
        .args(args))
}

/// `aws ecr ARGS`, which must succeed: its JSON output.
fn aws(dir: &Path, server: &Server, args: &[&str]) -> Value {
    let out = aws_output(dir, server, args);
    let text = ok(&out, &format!("aws ecr {args:?}"));
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

fn berth(dir: &Path, server: &Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    client(&mut cmd, dir, server);
    run(cmd.args(args))
}

fn push(dir: &Path, server: &Server, image: &str, dst: &str) {
    ok(
        &berth(dir, server, &["push", image, dst, "--progress", "quiet"]),
        "push",
    );
}

/// The fixture's records, in the server's scan database.
fn fill_db(dir: &Path, server: &Server) {
    let osv = records(dir);
    let db = server.data.join("scan/osv");
    ok(
        &berth(
            dir,
            server,
            &[
                "scan",
                "db",
                "import",
                "--db",
                db.to_str().unwrap(),
                osv.to_str().unwrap(),
            ],
        ),
        "scan db import",
    );
}

/// Waits with the AWS CLI's `image-scan-complete` waiter, then describes the findings.
fn wait_for_findings(dir: &Path, server: &Server, repo: &str, tag: &str) -> Value {
    let image_id = format!("imageTag={tag}");
    let id = ["--repository-name", repo, "--image-id", image_id.as_str()];
    let mut wait = vec!["wait", "image-scan-complete"];
    wait.extend_from_slice(&id);
    aws(dir, server, &wait);
    let mut get = vec!["describe-image-scan-findings"];
    get.extend_from_slice(&id);
    aws(dir, server, &get)
}

fn findings_of(v: &Value) -> BTreeSet<String> {
    v["imageScanFindings"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {v}"))
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

fn expected() -> BTreeSet<String> {
    EXPECTED.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_push_is_scanned_and_the_aws_cli_reads_the_findings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, metrics_addr) = Server::spawn_with_metrics(serve_cmd(&data, None, &[]), &data);
    fill_db(dir.path(), &server);
    let image = image(dir.path());
    aws(
        dir.path(),
        &server,
        &[
            "create-repository",
            "--repository-name",
            "scanned/app",
            "--image-scanning-configuration",
            "scanOnPush=true",
        ],
    );
    let dst = format!("{}/scanned/app:v1", server.addr);
    push(dir.path(), &server, &image, &dst);
    // The AWS CLI's own waiter polls DescribeImageScanFindings until COMPLETE.
    let found = wait_for_findings(dir.path(), &server, "scanned/app", "v1");
    let id = [
        "--repository-name",
        "scanned/app",
        "--image-id",
        "imageTag=v1",
    ];
    let mut get = vec!["describe-image-scan-findings"];
    get.extend_from_slice(&id);
    assert_eq!(found["imageScanStatus"]["status"], "COMPLETE", "{found}");
    assert_eq!(findings_of(&found), expected(), "{found}");
    let counts = &found["imageScanFindings"]["findingSeverityCounts"];
    assert_eq!(counts["HIGH"], 3, "{found}");
    let requests = found["imageScanFindings"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "GHSA-x84v-xcm2-53pg")
        .unwrap();
    let attrs: BTreeSet<(String, String)> = requests["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_owned(),
                a["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (k, v) in [
        ("package_name", "requests"),
        ("package_version", "2.19.0"),
        ("CVSS3_SCORE", "7.5"),
        ("fixed_version", "2.20.0"),
    ] {
        assert!(
            attrs.contains(&(k.into(), v.into())),
            "{k}={v} in {attrs:?}"
        );
    }
    // Pagination: two at a time, every finding once.
    let mut paged = BTreeSet::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut args = get.clone();
        args.extend_from_slice(&["--max-results", "2", "--no-paginate"]);
        let t;
        if let Some(tok) = &token {
            t = tok.clone();
            args.extend_from_slice(&["--next-token", &t]);
        }
        let page = aws(dir.path(), &server, &args);
        let names = findings_of(&page);
        assert!(names.len() <= 2, "{page}");
        paged.extend(names);
        token = page["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, expected());
    // DescribeImages carries the status and the summary.
    let described = aws(
        dir.path(),
        &server,
        &[
            "describe-images",
            "--repository-name",
            "scanned/app",
            "--image-ids",
            "imageTag=v1",
        ],
    );
    // The scan is counted on the metrics listener.
    let metrics = Command::new("curl")
        .args(["-sf", &format!("http://{metrics_addr}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("berth_image_scans_total{status=\"COMPLETE\"}")),
        "{text}"
    );
    let d = &described["imageDetails"][0];
    assert_eq!(d["imageScanStatus"]["status"], "COMPLETE", "{described}");
    assert_eq!(
        d["imageScanFindingsSummary"]["findingSeverityCounts"]["HIGH"], 3,
        "{described}"
    );

    // A repository without scanOnPush: no scan until one is started.
    aws(
        dir.path(),
        &server,
        &["create-repository", "--repository-name", "plain/app"],
    );
    let plain = format!("{}/plain/app:v1", server.addr);
    push(dir.path(), &server, &image, &plain);
    let out = aws_output(
        dir.path(),
        &server,
        &[
            "describe-image-scan-findings",
            "--repository-name",
            "plain/app",
            "--image-id",
            "imageTag=v1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ScanNotFoundException"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = aws(
        dir.path(),
        &server,
        &[
            "start-image-scan",
            "--repository-name",
            "plain/app",
            "--image-id",
            "imageTag=v1",
        ],
    );
    assert_eq!(started["imageScanStatus"]["status"], "IN_PROGRESS");
    let found = wait_for_findings(dir.path(), &server, "plain/app", "v1");
    assert_eq!(findings_of(&found), expected(), "{found}");

    // The same through berth's own ECR client: a rescan awaited, then the findings.
    let image = format!("{}/plain/app:v1", server.addr);
    let out = berth(
        dir.path(),
        &server,
        &["images", "scan", &image, "--wait", "60", "--json"],
    );
    let rescanned: Value = serde_json::from_str(&ok(&out, "images scan --wait")).unwrap();
    assert_eq!(rescanned["status"], "COMPLETE", "{rescanned}");
    let names: BTreeSet<String> = rescanned["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, expected());
    let table = ok(
        &berth(dir.path(), &server, &["images", "findings", "plain/app:v1"]),
        "images findings",
    );
    assert!(table.contains("HIGH (3)"), "{table}");
    assert!(table.contains("requests"), "{table}");
    let out = berth(dir.path(), &server, &["images", "findings", "plain/app"]);
    assert_eq!(out.status.code(), Some(2), "a tag or digest is required");
}

#[test]
fn a_scan_killed_in_progress_is_finished_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // This server dies as its first scan starts (after recording it IN_PROGRESS).
    let server = serve(&data, Some("scan-started"));
    fill_db(dir.path(), &server);
    aws(
        dir.path(),
        &server,
        &[
            "create-repository",
            "--repository-name",
            "crash/app",
            "--image-scanning-configuration",
            "scanOnPush=true",
        ],
    );
    let image = image(dir.path());
    let dst = format!("{}/crash/app:v1", server.addr);
    // The push is acknowledged before the scan starts (the worker kills the process then).
    push(dir.path(), &server, &image, &dst);
    let mut child = server.into_child();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the crash point fired");

    let server = serve(&data, None);
    let found = wait_for_findings(dir.path(), &server, "crash/app", "v1");
    assert_eq!(findings_of(&found), expected(), "{found}");
}

/// The registry scanning configuration: a `CONTINUOUS_SCAN` rule scans pushes into the
/// repositories it matches (without their own scanOnPush) and scans them again when the
/// vulnerability database changes; ECR's validation of the configuration.
#[test]
fn registry_rules_scan_on_push_and_rescan_when_the_database_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "scan_db_poll_secs = 1\n").unwrap();
    let server = serve_with(
        &dir.path().join("data"),
        None,
        &["--config", config.to_str().unwrap()],
    );
    let rules = r#"[{"scanFrequency":"CONTINUOUS_SCAN","repositoryFilters":[{"filter":"cont/*","filterType":"WILDCARD"}]}]"#;
    let put = aws(
        dir.path(),
        &server,
        &[
            "put-registry-scanning-configuration",
            "--scan-type",
            "BASIC",
            "--rules",
            rules,
        ],
    );
    assert_eq!(
        put["registryScanningConfiguration"]["rules"][0]["scanFrequency"], "CONTINUOUS_SCAN",
        "{put}"
    );
    let got = aws(
        dir.path(),
        &server,
        &["get-registry-scanning-configuration"],
    );
    assert_eq!(got["scanningConfiguration"]["scanType"], "BASIC", "{got}");
    assert_eq!(
        got["scanningConfiguration"]["rules"][0]["repositoryFilters"][0]["filter"],
        "cont/*"
    );
    for (scan_type, rules, what) in [
        ("ENHANCED", "[]", "BASIC scanning only"),
        (
            "BASIC",
            r#"[{"scanFrequency":"SCAN_ON_PUSH","repositoryFilters":[{"filter":"Bad Name","filterType":"WILDCARD"}]}]"#,
            "failed to satisfy constraint",
        ),
    ] {
        let out = aws_output(
            dir.path(),
            &server,
            &[
                "put-registry-scanning-configuration",
                "--scan-type",
                scan_type,
                "--rules",
                rules,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && (err.contains("ValidationException")
                    || err.contains("InvalidParameterException")),
            "{err}"
        );
        assert!(err.contains(what), "{err}");
    }

    // The repository does not scan on push itself: the registry rule does.
    aws(
        dir.path(),
        &server,
        &["create-repository", "--repository-name", "cont/app"],
    );
    let image = image(dir.path());
    let dst = format!("{}/cont/app:v1", server.addr);
    push(dir.path(), &server, &image, &dst);
    let found = wait_for_findings(dir.path(), &server, "cont/app", "v1");
    assert_eq!(found["imageScanStatus"]["status"], "COMPLETE", "{found}");
    assert!(findings_of(&found).is_empty(), "an empty database: {found}");

    // The database changes: the image is scanned again, with no push.
    fill_db(dir.path(), &server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let found = wait_for_findings(dir.path(), &server, "cont/app", "v1");
        if findings_of(&found) == expected() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not rescanned after the database changed: {found}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
