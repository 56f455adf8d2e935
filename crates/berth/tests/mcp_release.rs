//! `berth mcp` driven by the reference MCP client (python `mcp` 2.x) over stdio and streamable
//! HTTP, and `berth release` end to end — both against a real `berth serve` with
//! authentication, two platforms built from a fixture context (FROM scratch, no emulation).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::Server;

const ROOT_ID: &str = "AKIAMCPRELEASEROOT01";
const ROOT_SECRET: &str = "mcp-release-test-root-secret-0123456789";

/// The environment of a client: the root's AWS credentials, the server's ECR API, private
/// docker and berth configuration.
fn env(cmd: &mut Command, home: &Path, server: &Server) {
    common::aws_client_env(cmd, home, server, ROOT_ID, ROOT_SECRET);
    cmd.env("BERTH_BUILD_ROOT", home.join("build"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("BERTH_ECR_REGISTRIES")
        .env_remove("BERTH_MCP_ALLOW_WRITES");
}

fn server(dir: &Path) -> Server {
    Server::start_auth(
        &dir.join("data"),
        &[],
        &[
            ("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET),
        ],
    )
}

/// A two-stage context with a named context (`extra`), and one whose Dockerfile does not parse.
fn contexts(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("extra")).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(ctx.join("extra/extra.txt"), "extra\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS base\nCOPY hello.txt /hello.txt\n\nFROM base AS final\nCOPY --from=extra extra.txt /extra.txt\n",
    )
    .unwrap();
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("Dockerfile"), "FROM scratch\nCOPY --nope x /\n").unwrap();
    (ctx, bad)
}

/// `mcp_client.py MODE TARGET REGISTRY CONTEXT BAD_CONTEXT` in a client's environment.
fn client(
    dir: &Path,
    server: &Server,
    mode: &str,
    target: &str,
    ctx: &Path,
    bad: &Path,
) -> Command {
    let mut cmd = Command::new(common::python());
    env(&mut cmd, dir, server);
    cmd.arg(common::workspace().join("crates/berth/tests/mcp_client.py"))
        .arg(mode)
        .arg(target)
        .arg(&server.addr)
        .arg(ctx)
        .arg(bad);
    cmd
}

fn run_client(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "MCP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_mcp_client_builds_pushes_and_verifies_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (ctx, bad) = contexts(dir.path());
    let berth = env!("CARGO_BIN_EXE_berth");
    run_client(&mut client(dir.path(), &server, "stdio", berth, &ctx, &bad));
}

#[test]
fn a_read_only_server_refuses_every_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (ctx, bad) = contexts(dir.path());
    let berth = env!("CARGO_BIN_EXE_berth");
    run_client(&mut client(
        dir.path(),
        &server,
        "readonly",
        berth,
        &ctx,
        &bad,
    ));
    // Nothing was created.
    let mut ls = Command::new(env!("CARGO_BIN_EXE_berth"));
    env(&mut ls, dir.path(), &server);
    let out = ls.args(["repo", "ls", "--json"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("ro/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_mcp_client_works_over_streamable_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (ctx, bad) = contexts(dir.path());
    let mut mcp = Command::new(env!("CARGO_BIN_EXE_berth"));
    env(&mut mcp, dir.path(), &server);
    let mut child = mcp
        .args(["mcp", "--listen", "127.0.0.1:0", "--allow-writes", "--root"])
        .arg(&ctx)
        .arg("--root")
        .arg(&bad)
        .args(["--insecure-registry", &server.addr])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("mcp listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let mut cmd = client(dir.path(), &server, "http", &url, &ctx, &bad);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_client(&mut cmd)));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `berth serve --mcp` (config `[mcp]`): the tools on the registry's own listener at `/mcp`,
/// behind its authentication, working on the registry itself by default (its ECR API, its
/// address over plain HTTP); read-only unless `allow_writes`.
fn served_mcp(dir: &Path, ctx: &Path, bad: &Path, writes: bool) -> Server {
    let config = dir.join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[mcp]\nenabled = true\nallow_writes = {writes}\nroots = [{:?}, {:?}]\n",
            ctx.display().to_string(),
            bad.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config);
    common::aws_env(&mut cmd, dir, ROOT_ID, ROOT_SECRET);
    cmd.env("BERTH_BUILD_ROOT", dir.join("build"))
        .env("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID)
        .env("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("BERTH_MCP_ALLOW_WRITES")
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped());
    Server::spawn(cmd, &dir.join("data"))
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[test]
fn berth_serve_mounts_the_mcp_tools_behind_its_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, bad) = contexts(dir.path());
    let server = served_mcp(dir.path(), &ctx, &bad, true);
    let allowed = common::user(
        &server,
        "assistant",
        Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"berth:InvokeMcp","Resource":"*"}]}"#,
        ),
    );
    let denied = common::user(
        &server,
        "puller",
        Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:BatchGetImage","Resource":"*"}]}"#,
        ),
    );
    let url = server.url("/mcp");
    let mut cmd = client(dir.path(), &server, "served", &url, &ctx, &bad);
    cmd.env("MCP_AUTH", basic(&allowed.0, &allowed.1))
        .env("MCP_DENIED_AUTH", basic(&denied.0, &denied.1));
    run_client(&mut cmd);
}

#[test]
fn the_mcp_tools_of_berth_serve_are_read_only_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, bad) = contexts(dir.path());
    let server = served_mcp(dir.path(), &ctx, &bad, false);
    let url = server.url("/mcp");
    let mut cmd = client(dir.path(), &server, "served-ro", &url, &ctx, &bad);
    cmd.env("MCP_AUTH", basic(ROOT_ID, ROOT_SECRET));
    run_client(&mut cmd);
}

/// `berth release` with `--json`: exit status and report.
fn release(dir: &Path, server: &Server, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    env(&mut cmd, dir, server);
    let out = cmd
        .arg("release")
        .args(args)
        .args(["--json", "--insecure-registry", &server.addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("release --json: {e}\n{stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report}"))
}

#[test]
fn release_lints_builds_creates_pushes_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (ctx, _) = contexts(dir.path());
    // (A named context's stage is one hadolint does not know: DL3022.)
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    // A git checkout, for the git tags.
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "user.name=t",
            "add",
            ".",
        ],
        &[
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "one",
        ],
    ] {
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(&ctx)
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }
    let settings = dir.path().join("repo.toml");
    std::fs::write(
        &settings,
        r#"tag_mutability = "IMMUTABLE_WITH_EXCLUSION"
mutability_exclusions = ["latest", "main"]
scan_on_push = true
encryption = "AES256"
lifecycle_policy = '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}'
[tags]
team = "platform"
"#,
    )
    .unwrap();
    let repo = format!("{}/rel/app", server.addr);
    let ctx_s = ctx.to_str().unwrap();
    let base = [
        ctx_s,
        "--repository",
        repo.as_str(),
        "--version",
        "v1.2.3",
        "--tag-strategy",
        "semver,git",
        "--repo-settings",
        settings.to_str().unwrap(),
        "--lint-threshold",
        "warning",
    ];

    // --dry-run: a plan, and nothing changes.
    let mut dry = base.to_vec();
    dry.push("--dry-run");
    let (code, report, stderr) = release(dir.path(), &server, &dry);
    assert_eq!(code, 0, "{stderr}\n{report}");
    assert_eq!(step(&report, "repository")["status"], "planned");
    assert_eq!(step(&report, "push")["status"], "planned");
    let mut ls = Command::new(env!("CARGO_BIN_EXE_berth"));
    env(&mut ls, dir.path(), &server);
    let listed = ls.args(["repo", "ls", "--json"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("rel/app"),
        "--dry-run created the repository"
    );

    // The release.
    let (code, report, stderr) = release(dir.path(), &server, &base);
    assert_eq!(code, 0, "{stderr}\n{report}");
    for s in ["lint", "build", "tags", "push", "verify"] {
        assert_eq!(step(&report, s)["status"], "ok", "{s}: {report}");
    }
    assert_eq!(step(&report, "repository")["status"], "ok");
    assert!(report["repositorySettings"]["created"].as_bool().unwrap());
    let digest = report["digest"].as_str().unwrap().to_owned();
    assert_eq!(report["image"], format!("{repo}@{digest}"));
    let tags: Vec<&str> = report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    for t in ["v1.2.3", "v1.2", "v1", "latest", "main"] {
        assert!(tags.contains(&t), "{t} in {tags:?}");
    }
    assert!(
        tags.iter()
            .any(|t| t.len() == 7 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "the commit tag: {tags:?}"
    );
    // Verified: the index and both platforms, as DescribeImages says.
    assert_eq!(report["verified"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(step(&report, "scan")["status"], "skipped");
    let created = &report["repositorySettings"]["repository"];
    assert_eq!(created["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION");
    assert_eq!(created["scanOnPush"], true);

    // Unchanged context: the same digest, nothing new pushed, and the report says so.
    let (code, again, stderr) = release(dir.path(), &server, &base);
    assert_eq!(code, 0, "{stderr}\n{again}");
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(step(&again, "push")["status"], "unchanged", "{again}");
    assert_eq!(step(&again, "repository")["status"], "unchanged", "{again}");
    assert!(
        again["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "unchanged")
    );

    // A changed context under the same version: the immutable tag stops it before any push.
    std::fs::write(ctx.join("hello.txt"), "changed\n").unwrap();
    let (code, failed, stderr) = release(dir.path(), &server, &base);
    assert_eq!(code, 4, "{stderr}\n{failed}");
    assert_eq!(step(&failed, "tags")["status"], "failed");
    assert!(
        failed["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["step"] != "push")
    );
    let mut images = Command::new(env!("CARGO_BIN_EXE_berth"));
    env(&mut images, dir.path(), &server);
    let out = images
        .args(["images", "ls", "rel/app", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed["images"].as_array().unwrap().len(),
        3,
        "nothing new was pushed: {listed}"
    );

    // A lint failure stops before the build: exit 3.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nMAINTAINER someone\nCOPY hello.txt /\n",
    )
    .unwrap();
    let mut v2 = base.to_vec();
    v2[4] = "v2.0.0";
    let (code, failed, stderr) = release(dir.path(), &server, &v2);
    assert_eq!(code, 3, "{stderr}\n{failed}");
    assert_eq!(step(&failed, "lint")["status"], "failed");
    assert!(failed["build"].is_null());
    assert!(stderr.contains("release stopped at lint"), "{stderr}");
}

/// The `berth release` command of a CI example, as its shell would run it: GitHub's `run:`
/// lines joined at their backslashes, GitLab's folded script item joined with spaces.
fn example_command(file: &str) -> String {
    let text = std::fs::read_to_string(common::workspace().join("examples").join(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            let l = l.trim_start();
            !l.starts_with('#') && l.contains("berth release ")
        })
        .unwrap_or_else(|| panic!("no berth release in examples/{file}"));
    let first = lines[start];
    let indent = first.len() - first.trim_start().len();
    let mut cmd = first.trim().trim_start_matches("- ").to_owned();
    for l in &lines[start + 1..] {
        let more = l.len() - l.trim_start().len();
        let continues = cmd.ends_with('\\') || (more > indent && !l.trim().starts_with("- "));
        if !continues || l.trim().is_empty() {
            break;
        }
        if let Some(c) = cmd.strip_suffix('\\') {
            cmd = c.to_owned();
        }
        cmd.push(' ');
        cmd.push_str(l.trim());
    }
    cmd
}

/// The release commands of `examples/github-actions.yml` and `examples/gitlab-ci.yml`, run by a
/// shell against a local `berth serve` as the CI job would run them: only the ECR registry's
/// host is replaced (and `sudo -E`, which the test does not need, dropped).
#[test]
fn the_ci_examples_release_against_a_local_registry() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (ctx, _) = contexts(dir.path());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    std::fs::create_dir_all(ctx.join("deploy")).unwrap();
    std::fs::write(
        ctx.join("deploy/repo.toml"),
        "tag_mutability = \"IMMUTABLE_WITH_EXCLUSION\"\nmutability_exclusions = [\"latest\"]\nscan_on_push = true\n",
    )
    .unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-qm", "one"],
    ] {
        assert!(
            Command::new("git")
                .args(["-c", "user.email=t@example.invalid", "-c", "user.name=t"])
                .arg("-C")
                .arg(&ctx)
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_berth")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (file, version) in [
        ("github-actions.yml", "v1.0.0"),
        ("gitlab-ci.yml", "v1.1.0"),
    ] {
        let command = example_command(file)
            .replace("sudo -E ", "")
            .replace("123456789012.dkr.ecr.us-east-1.amazonaws.com", &server.addr);
        assert!(
            command.contains("--json > release.json"),
            "{file}: {command}"
        );
        let mut sh = Command::new("sh");
        env(&mut sh, dir.path(), &server);
        let out = sh
            .arg("-c")
            .arg(&command)
            .current_dir(&ctx)
            .env("PATH", &path)
            .env("GITHUB_REF_NAME", version)
            .env("CI_COMMIT_TAG", version)
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ctx.join("release.json")).unwrap())
                .unwrap_or_else(|e| panic!("{file}: release.json: {e}"));
        assert!(
            out.status.success(),
            "{file}: `{command}` failed: {}\n{report}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = report["digest"].as_str().unwrap();
        assert_eq!(
            report["image"],
            format!("{}/team/app@{digest}", server.addr),
            "{file}"
        );
        let tags: Vec<&str> = report["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tag"].as_str().unwrap())
            .collect();
        assert!(tags.contains(&version), "{file}: {tags:?}");
        assert_eq!(step(&report, "verify")["status"], "ok", "{file}: {report}");
    }
}

/// The scan gate: an image whose Debian packages have a HIGH advisory in the registry's scan
/// database is pushed and verified, then the release fails at the gate (exit 5); a gate above
/// the worst finding passes.
#[test]
fn release_fails_at_the_scan_gate_after_verify() {
    use common::scan_fixture::{OS_RELEASE, records, status};
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let osv = records(dir.path());
    let mut import = Command::new(env!("CARGO_BIN_EXE_berth"));
    env(&mut import, dir.path(), &server);
    let out = import
        .args(["scan", "db", "import", "--db"])
        .arg(server.data.join("scan/osv"))
        .arg(&osv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx = dir.path().join("gated");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("os-release"), OS_RELEASE).unwrap();
    std::fs::write(ctx.join("status"), status(false)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY os-release /etc/os-release\nCOPY status /var/lib/dpkg/status\n",
    )
    .unwrap();
    let settings = dir.path().join("repo.toml");
    std::fs::write(&settings, "scan_on_push = true\n").unwrap();
    let repo = format!("{}/gate/app", server.addr);
    let args = |version: &'static str, gate: &'static str| {
        vec![
            ctx.to_str().unwrap().to_owned(),
            "--repository".into(),
            repo.clone(),
            "--version".into(),
            version.into(),
            "--platform".into(),
            "linux/amd64".into(),
            "--repo-settings".into(),
            settings.to_str().unwrap().to_owned(),
            "--scan-gate".into(),
            gate.into(),
        ]
    };
    let a = args("v1.0.0", "HIGH");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, report, stderr) = release(dir.path(), &server, &a);
    assert_eq!(code, 5, "{stderr}\n{report}");
    assert_eq!(step(&report, "verify")["status"], "ok", "{report}");
    assert_eq!(step(&report, "scan")["status"], "failed", "{report}");
    assert!(
        report["image"]
            .as_str()
            .is_some_and(|i| i.contains("@sha256:"))
    );

    let a = args("v1.0.1", "CRITICAL");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, report, stderr) = release(dir.path(), &server, &a);
    assert_eq!(code, 0, "{stderr}\n{report}");
    assert_eq!(step(&report, "scan")["status"], "ok", "{report}");
}
