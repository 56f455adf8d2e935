//! The README's quick start, run as written on a fresh data directory: the `berth serve` block,
//! then every `<!-- quickstart -->` block in one shell session from the same directory (with
//! `berth` on `PATH`, the address moved to a free port, and podman/skopeo confined to a private
//! environment) — no step that is not in the README. Also checks that what `berth serve` prints
//! at first start is what the README says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fenced `sh` block after each line equal to `marker`.
fn blocks(readme: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if l.trim() != marker {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(fence.trim(), "```sh", "{marker} must precede a ```sh block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push(body.join("\n"));
    }
    out
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(common::workspace().join("README.md")).unwrap();
    let serve = blocks(&readme, "<!-- quickstart:serve -->");
    let steps = blocks(&readme, "<!-- quickstart -->");
    assert_eq!(serve.len(), 1, "one serve block");
    assert!(steps.len() >= 3, "the client blocks");
    assert_eq!(serve[0].trim(), "cargo run --release -- serve");
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let moved = |s: &str| s.replace("127.0.0.1:5000", &host);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One cargo build per run: the README's `cargo run --release --` is the binary under test.
    let bin = Path::new(env!("CARGO_BIN_EXE_berth"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A private podman environment, and a fresh HOME: nothing of the machine's logins or AWS
    // profiles is used.
    let podman_env = Command::new(common::workspace().join("scripts/podman-env.sh"))
        .arg(dir.join("podman"))
        .env("INSECURE_REGISTRY", &host)
        .output()
        .unwrap();
    assert!(podman_env.status.success(), "{podman_env:?}");
    let podman_env = String::from_utf8(podman_env.stdout).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let isolate = |cmd: &mut Command| {
        cmd.current_dir(&work)
            .env("PATH", &path)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("DOCKER_CONFIG")
            .env_remove("BERTH_CONFIG_DIR")
            .env_remove("BERTH_CACHE_DIR")
            .env_remove("BERTH_ECR_REGISTRIES")
            .env_remove("BERTH_DATA")
            .env_remove("BERTH_CONFIG")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_ECR")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("AWS_CONFIG_FILE");
    };

    let serve_line = moved(&serve[0]).replace("cargo run --release --", "berth");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("exec {serve_line}")]);
    isolate(&mut cmd);
    let mut child = cmd
        .env("BERTH_LISTEN", &host)
        .env("BERTH_METRICS_LISTEN", "127.0.0.1:0")
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    let mut printed = String::new();
    {
        let mut out = BufReader::new(guard.0.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            printed.push_str(&line);
            if line.contains("--create-on-push") {
                break;
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
    }
    assert!(
        printed.starts_with(&format!("listening on {host}\n")),
        "{printed}"
    );
    // What first start prints is what the README says, line for line (the absolute data
    // directory is the README's `$PWD`).
    let cwd = std::fs::canonicalize(&work).unwrap();
    let all_steps = steps.join("\n");
    let mut checked = 0;
    for line in printed.lines().map(str::trim) {
        let wanted = ["berth login ", "berth get-login-password ", "export AWS_"];
        if !wanted.iter().any(|w| line.starts_with(w)) {
            continue;
        }
        let as_in_readme = line
            .replace(&cwd.display().to_string(), "$PWD")
            .replace(&host, "127.0.0.1:5000");
        assert!(
            all_steps.lines().any(|l| l.trim() == as_in_readme),
            "berth serve printed a step the README's quick start does not have:\n{as_in_readme}\n\nprinted:\n{printed}"
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "the three login steps are printed:\n{printed}");
    let creds = std::fs::read_to_string(work.join("berth-data/root-credentials")).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap();
    assert!(!printed.contains(secret), "no secret on stdout");

    // Every client block, in one shell session, as a user would paste them.
    let script = format!(
        "set -euo pipefail\n{podman_env}\nset -x\n{}\n",
        steps
            .iter()
            .map(|b| moved(b))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut sh = Command::new("bash");
    sh.args(["-c", &script]);
    isolate(&mut sh);
    let out = sh.output().unwrap();
    assert!(
        out.status.success(),
        "the quick start failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);

    // What the blocks did is really there.
    assert!(work.join("app.tar").metadata().unwrap().len() > 0);
    let mut tags = Command::new(bin);
    tags.args(["tags", &format!("{host}/my/app")]);
    isolate(&mut tags);
    let tags = tags.output().unwrap();
    let tags = String::from_utf8_lossy(&tags.stdout);
    assert!(
        ["v1", "copy", "podman"]
            .iter()
            .all(|want| tags.lines().any(|t| t == *want)),
        "tags pushed by berth, skopeo and podman: {tags}"
    );
    assert!(
        stdout.contains("\"repositoryName\": \"my/api\""),
        "the AWS CLI created my/api:\n{stdout}"
    );
    drop(guard);
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
