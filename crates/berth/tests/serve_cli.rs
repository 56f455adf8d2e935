//! `berth serve` as a user runs it: help text, config precedence, exit codes, JSON logs,
//! /healthz, and graceful shutdown with a request in flight.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, client, sha256_hex};

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn help_documents_every_setting() {
    let out = berth().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "--data",
        "--config",
        "--log-level",
        "--log-format",
        "BERTH_LISTEN",
        "BERTH_DATA",
        "127.0.0.1:5000",
        "./berth-data",
        "json",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle:?}:\n{help}"
        );
    }
}

#[test]
fn bad_configuration_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("berth.toml");
    std::fs::write(&cfg, "listen = 5000\n").unwrap();
    let out = berth()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth.toml") && err.contains("listen"),
        "{err}"
    );
    let out = berth()
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = berth()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "xml",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log format"));
}

async fn push_small(server: &Server) -> String {
    let data = b"config precedence";
    let digest = format!("sha256:{}", sha256_hex(data));
    let r = client()
        .post(server.url(&format!("/v2/cfg/blobs/uploads/?digest={digest}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    digest
}

fn blob_file(data: &std::path::Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

#[tokio::test]
async fn config_file_then_env_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) = (
        dir.path().join("file"),
        dir.path().join("env"),
        dir.path().join("flag"),
    );
    let cfg = dir.path().join("berth.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata = \"{}\"\nlog_level = \"warn\"\n",
            from_file.display()
        ),
    )
    .unwrap();
    let spawn = |env: Option<&std::path::Path>, flag: Option<&std::path::Path>| {
        let mut c = berth();
        c.args(["serve", "--no-auth", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped());
        if let Some(e) = env {
            c.env("BERTH_DATA", e);
        }
        if let Some(f) = flag {
            c.arg("--data").arg(f);
        }
        c
    };
    for (env, flag, want) in [
        (None, None, &from_file),
        (Some(from_env.as_path()), None, &from_env),
        (
            Some(from_env.as_path()),
            Some(from_flag.as_path()),
            &from_flag,
        ),
    ] {
        let server = Server::spawn(spawn(env, flag), want);
        let digest = push_small(&server).await;
        assert!(
            blob_file(want, &digest).exists(),
            "blob not under {}",
            want.display()
        );
        assert!(server.terminate().success());
    }
}

#[tokio::test]
async fn json_logs_carry_latency_and_healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = berth();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--log-level",
        "info",
        "--data",
    ])
    .arg(dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let server = Server::spawn(c, dir.path());
    let r = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let child = server.into_child();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8(out.stderr).unwrap();
    let request = logs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v["fields"]["path"] == "/healthz")
        .unwrap_or_else(|| panic!("no request log for /healthz in:\n{logs}"));
    assert_eq!(request["fields"]["status"], 200);
    assert!(request["fields"]["latency_ms"].as_f64().is_some());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_upload_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = client();
    let r = c
        .post(server.url("/v2/graceful/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = server.url(r.headers()["location"].to_str().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let mut rx = rx;
    let body = reqwest::Body::wrap_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let inflight = tokio::spawn(c.patch(&loc).body(body).send());
    tx.send(Ok(bytes::Bytes::from_static(b"half of it, ")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = server.pid();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(bytes::Bytes::from_static(b"and the rest")))
        .await
        .unwrap();
    drop(tx);
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status(), 202, "the in-flight request was cut off");
    assert_eq!(r.headers()["range"], "0-23");
    let mut child = server.into_child();
    assert!(child.wait().unwrap().success());
    // The staged bytes survived the shutdown: the session resumes after a restart.
    let server = Server::start(dir.path());
    let r = client()
        .get(server.url(&format!(
            "/v2/graceful/blobs/uploads/{}",
            loc.rsplit('/').next().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-23");
}

/// Reads `aws_access_key_id` / `aws_secret_access_key` from a credentials file.
fn credentials(path: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim_start_matches([' ', '='])
            .to_owned()
    };
    (field("aws_access_key_id"), field("aws_secret_access_key"))
}

async fn status_with(server: &Server, (id, secret): &(String, String)) -> u16 {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    client()
        .get(server.url("/v2/"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn generated_root_credentials_are_kept_and_a_half_done_first_start_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = data.join("root-credentials");
    let first = {
        let server = Server::start_auth(&data, &[], &[]);
        let creds = credentials(&file);
        assert_eq!(status_with(&server, &creds).await, 200);
        creds
    };
    // A restart keeps the same administrator key and file.
    {
        let server = Server::start_auth(&data, &[], &[]);
        assert_eq!(credentials(&file), first);
        assert_eq!(status_with(&server, &first).await, 200);
    }
    // A first start killed after the file was written but before the key was stored looks
    // like this: the administrator exists without a key, the file names a key nobody has.
    let out = berth()
        .args(["admin", "--data"])
        .arg(&data)
        .args(["key", "rm", &first.0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_auth(&data, &[], &[]);
    let second = credentials(&file);
    assert_ne!(second, first);
    assert_eq!(status_with(&server, &second).await, 200);
    assert_eq!(status_with(&server, &first).await, 401);
}
