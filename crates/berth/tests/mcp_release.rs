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
    cmd.env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("BERTH_CONFIG_DIR", home.join("berth"))
        .env("BERTH_CACHE_DIR", home.join("cache"))
        .env("BERTH_BUILD_ROOT", home.join("build"))
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", ROOT_ID)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_ECR", format!("http://{}", server.addr))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
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

fn client_script() -> std::path::PathBuf {
    common::workspace().join("crates/berth/tests/mcp_client.py")
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
    let mut cmd = Command::new(common::python());
    env(&mut cmd, dir.path(), &server);
    cmd.arg(client_script())
        .arg("stdio")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg(&server.addr)
        .arg(&ctx)
        .arg(&bad);
    run_client(&mut cmd);
}

#[test]
fn a_read_only_server_refuses_every_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (ctx, bad) = contexts(dir.path());
    let mut cmd = Command::new(common::python());
    env(&mut cmd, dir.path(), &server);
    cmd.arg(client_script())
        .arg("readonly")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg(&server.addr)
        .arg(&ctx)
        .arg(&bad);
    run_client(&mut cmd);
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
    let mut cmd = Command::new(common::python());
    env(&mut cmd, dir.path(), &server);
    cmd.arg(client_script())
        .arg("http")
        .arg(&url)
        .arg(&server.addr)
        .arg(&ctx)
        .arg(&bad);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_client(&mut cmd)));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
