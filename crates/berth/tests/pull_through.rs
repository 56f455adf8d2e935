//! Pull-through cache on a real `berth serve`: rules made with the AWS CLI, boto3 and `berth
//! cache-rule`; Debian's `docker-registry` (distribution 2.8, htpasswd auth) as the upstream,
//! pulled through by skopeo and podman; an in-process upstream that counts requests and can
//! answer 429, for the one-fetch-per-blob and rate-limit cases.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Podman, Server, aws_env, fixture_index_digest, fixtures, ok};
use serde_json::Value;

const USER: &str = "puller";
const PASSWORD: &str = "s3cret-upstream-token";

/// Debian's docker-registry with htpasswd auth and its access log in a file.
struct Upstream {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Upstream {
    fn start() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // bcrypt, as distribution's htpasswd wants it (libxcrypt through Python's crypt).
        let out = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                &format!("import crypt; print(crypt.crypt('{PASSWORD}', crypt.mksalt(crypt.METHOD_BLOWFISH)))"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = String::from_utf8(out.stdout).unwrap();
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("{USER}:{}", hash.trim()),
        )
        .unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nauth:\n  htpasswd:\n    realm: upstream\n    path: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display(),
                dir.path().join("htpasswd").display(),
            ),
        )
        .unwrap();
        let mut up = Upstream {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            log: dir.path().join("access.log"),
            config,
            _dir: dir,
        };
        up.run();
        up
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("docker-registry ({e}): scripts/test.sh installs it")),
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start on {}", self.addr);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Requests in the access log (distribution logs one line per request).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("HTTP/1.1\""))
            .filter_map(|l| {
                let start = l.find('"')?;
                let rest = &l[start + 1..];
                Some(rest[..rest.find(" HTTP/")?].to_owned())
            })
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// The environment of an AWS client of a `--no-auth` server (any key signs).
fn client(cmd: &mut Command, home: &Path, server: &Server) {
    aws_env(cmd, home, KEY.0, KEY.1);
    cmd.env("AWS_ENDPOINT_URL_ECR", format!("http://{}", server.addr));
}

const KEY: (&str, &str) = ("AKIAPULLTHROUGHTEST0", "secret");

fn aws_output(home: &Path, server: &Server, args: &[&str]) -> Output {
    common::aws_ecr(home, &server.addr, KEY.0, KEY.1, args)
}

fn aws(home: &Path, server: &Server, args: &[&str]) -> Value {
    let out = aws_output(home, server, args);
    serde_json::from_str(&ok(&out, &format!("aws ecr {args:?}"))).unwrap()
}

fn berth(home: &Path, server: &Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    client(&mut cmd, home, server);
    run(cmd.args(args))
}

/// A boto3 script's JSON output (`ecr` is a client of the server).
fn boto3(home: &Path, server: &Server, script: &str) -> Value {
    common::boto3(home, &server.addr, KEY.0, KEY.1, script)
}

fn skopeo_copy(src: &str, dst: &Path) -> Output {
    run(Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--retry-times",
            "0",
        ])
        .arg(format!("docker://{src}"))
        .arg(format!("oci:{}:latest", dst.display())))
}

fn server_with(dir: &Path, config: &str) -> Server {
    let cfg = dir.join("berth.toml");
    std::fs::write(&cfg, config).unwrap();
    Server::start_with(&dir.join("data"), &["--config", cfg.to_str().unwrap()])
}

/// The response header saying where a manifest came from.
fn cache_header(server: &Server, repo: &str, reference: &str) -> (u16, String, String) {
    http::get_manifest(&format!(
        "http://{}/v2/{repo}/manifests/{reference}",
        server.addr
    ))
}

mod http {
    /// A GET with the manifest media types accepted: status, `x-berth-pull-through`, digest.
    pub fn get_manifest(url: &str) -> (u16, String, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .get(url)
                .header(
                    "accept",
                    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
                )
                .send()
                .await
                .unwrap();
            let h = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                r.status().as_u16(),
                h("x-berth-pull-through"),
                h("docker-content-digest"),
            )
        })
    }
}

/// Rules through the AWS CLI, boto3 and `berth cache-rule`; skopeo and podman pull the
/// multi-arch fixture through `hub/…` from an authenticating docker-registry; the second pull
/// asks the upstream nothing; with the upstream stopped, cached tags still pull (and say they
/// are stale), and an uncached one fails with the upstream named.
#[test]
fn pulls_through_an_authenticating_upstream_and_survive_it_stopping() {
    let fx = fixtures();
    let index = fixture_index_digest(&fx);
    let mut up = Upstream::start();
    // The fixture into the upstream, with its credentials.
    let home = tempfile::tempdir().unwrap();
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    std::fs::create_dir_all(home.path().join("docker")).unwrap();
    std::fs::write(
        home.path().join("docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, up.addr),
    )
    .unwrap();
    let mut copy = Command::new(env!("CARGO_BIN_EXE_berth"));
    copy.env("DOCKER_CONFIG", home.path().join("docker"))
        .args(["copy", "--progress", "quiet"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("{}/library/busybox:1.36", up.addr));
    ok(&run(&mut copy), "seeding the upstream");

    let dir = tempfile::tempdir().unwrap();
    // Tags are checked against the upstream at most every 10 s.
    let server = server_with(dir.path(), "pull_through_check_secs = 10\n");
    let h = home.path();

    // A rule with a stored credential, through berth's CLI (the credential is sealed there).
    let mut create = Command::new(env!("CARGO_BIN_EXE_berth"));
    client(&mut create, h, &server);
    let mut child = create
        .args([
            "cache-rule",
            "create",
            "hub",
            &up.addr,
            "--username",
            USER,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
    }
    ok(
        &child.wait_with_output().unwrap(),
        "berth cache-rule create",
    );
    // The password is nowhere in the registry's files in clear.
    for entry in walk(&server.data) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{} holds the upstream password",
            entry.display()
        );
    }
    // The AWS CLI sees it, and makes one of its own (no credential: Debian's CLI predates them).
    let rules = aws(h, &server, &["describe-pull-through-cache-rules"]);
    let hub = &rules["pullThroughCacheRules"][0];
    assert_eq!(hub["ecrRepositoryPrefix"], "hub");
    assert_eq!(hub["upstreamRegistryUrl"], up.addr);
    // (Debian's AWS CLI predates credentialArn; berth's own listing shows it.)
    let listed: Value = serde_json::from_str(&ok(
        &berth(h, &server, &["cache-rule", "ls", "--json"]),
        "ls",
    ))
    .unwrap();
    assert!(
        listed[0]["credentialArn"]
            .as_str()
            .unwrap()
            .ends_with(":secret:ecr-pullthroughcache/hub"),
        "{listed}"
    );
    aws(
        h,
        &server,
        &[
            "create-pull-through-cache-rule",
            "--ecr-repository-prefix",
            "anon",
            "--upstream-registry-url",
            &up.addr,
        ],
    );
    let again = aws_output(
        h,
        &server,
        &[
            "create-pull-through-cache-rule",
            "--ecr-repository-prefix",
            "anon",
            "--upstream-registry-url",
            &up.addr,
        ],
    );
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("PullThroughCacheRuleAlreadyExistsException"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // boto3: validate both (the anonymous one is refused by the upstream), a missing secret,
    // an update giving the anonymous rule the credential (valid then), a missing rule.
    let v = boto3(
        h,
        &server,
        r#"
out = {}
for p in ["hub", "anon"]:
    r = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=p)
    out[p] = {"isValid": r["isValid"], "failure": r.get("failure", "")}
try:
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="other", upstreamRegistryUrl="ghcr.io",
        credentialArn="arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/nope")
except ecr.exceptions.SecretNotFoundException as e:
    out["secret"] = e.response["Error"]["Code"]
arn = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["hub"])["pullThroughCacheRules"][0]["credentialArn"]
u = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="anon", credentialArn=arn)
out["updated"] = u["credentialArn"] == arn
out["anonNow"] = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="anon")["isValid"]
try:
    ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["missing"])
except ecr.exceptions.PullThroughCacheRuleNotFoundException as e:
    out["missing"] = e.response["Error"]["Code"]
ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="tmp", upstreamRegistryUrl="quay.io")
out["deleted"] = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="tmp")["upstreamRegistryUrl"]
out["prefixes"] = [r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]]
# Repositories the cache creates under hub/ get this template's settings.
ecr.create_repository_creation_template(prefix="hub", appliedFor=["PULL_THROUGH_CACHE"],
    resourceTags=[{"Key": "source", "Value": "pull-through"}], imageTagMutability="MUTABLE")
json.dump(out, sys.stdout)
"#,
    );
    assert_eq!(v["hub"]["isValid"], true, "{v}");
    assert_eq!(v["anon"]["isValid"], false, "{v}");
    assert!(
        v["anon"]["failure"].as_str().unwrap().contains("refused"),
        "{v}"
    );
    assert_eq!(v["secret"], "SecretNotFoundException");
    assert_eq!(v["updated"], true, "{v}");
    assert_eq!(v["anonNow"], true, "{v}");
    assert_eq!(v["missing"], "PullThroughCacheRuleNotFoundException");
    assert_eq!(v["deleted"], "quay.io");
    assert_eq!(v["prefixes"], serde_json::json!(["anon", "hub"]));

    // skopeo pulls through: the upstream's index, byte for byte, every platform.
    let podman = Podman::new(&server.addr);
    let cached = format!("{}/hub/library/busybox:1.36", server.addr);
    let pulled = tempfile::tempdir().unwrap();
    ok(
        &skopeo_copy(&cached, &pulled.path().join("a")),
        "skopeo copy through",
    );
    // The tag was checked during that pull, so before now.
    let checked_by = Instant::now();
    let layout: Value =
        serde_json::from_slice(&std::fs::read(pulled.path().join("a/index.json")).unwrap())
            .unwrap();
    assert_eq!(layout["manifests"][0]["digest"], index.as_str());
    // The import runs behind the pull; the tag is stored last, after everything it references.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cache_header(&server, "hub/library/busybox", "1.36").1 != "hit" {
        assert!(Instant::now() < deadline, "the pulled image was not cached");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = up.requests().len();
    // Pulls within the check interval ask the upstream nothing.
    ok(
        &skopeo_copy(&cached, &pulled.path().join("b")),
        "second pull",
    );
    ok(
        &run(podman
            .cmd()
            .args(["pull", "--platform", "linux/arm64", &cached])),
        "podman pull through",
    );
    assert!(
        checked_by.elapsed() < Duration::from_secs(10),
        "too slow to test the interval"
    );
    assert_eq!(
        up.requests()[before..],
        [] as [String; 0],
        "the cached pulls asked the upstream"
    );
    let (status, note, digest) = cache_header(&server, "hub/library/busybox", "1.36");
    assert_eq!(
        (status, note.as_str(), digest.as_str()),
        (200, "hit", index.as_str())
    );
    // All of it is stored: the index and both platforms.
    let images = aws(
        h,
        &server,
        &[
            "describe-images",
            "--repository-name",
            "hub/library/busybox",
        ],
    );
    let details = images["imageDetails"].as_array().unwrap();
    assert_eq!(details.len(), 3, "{images}");
    assert!(details.iter().any(|d| {
        d["imageTags"] == serde_json::json!(["1.36"]) && d["imageDigest"] == index.as_str()
    }));
    // Created from the PULL_THROUGH_CACHE template.
    let repo = aws(
        h,
        &server,
        &[
            "describe-repositories",
            "--repository-names",
            "hub/library/busybox",
        ],
    );
    let arn = repo["repositories"][0]["repositoryArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tags = aws(
        h,
        &server,
        &["list-tags-for-resource", "--resource-arn", &arn],
    );
    assert_eq!(
        tags["tags"],
        serde_json::json!([{"Key": "source", "Value": "pull-through"}])
    );

    // Upstream stopped, check interval over: the cached tag still pulls, marked stale.
    up.stop();
    if let Some(rest) = Duration::from_millis(10_300).checked_sub(checked_by.elapsed()) {
        std::thread::sleep(rest);
    }
    ok(
        &skopeo_copy(&cached, &pulled.path().join("c")),
        "pull with the upstream down",
    );
    let (status, note, digest) = cache_header(&server, "hub/library/busybox", "1.36");
    assert_eq!(status, 200);
    assert_eq!(digest, index);
    assert!(note.starts_with("stale (upstream unreachable"), "{note}");
    // Something never cached: the upstream's failure, named.
    let out = skopeo_copy(
        &format!("{}/hub/library/never:1", server.addr),
        &pulled.path().join("d"),
    );
    assert!(!out.status.success());
    let (status, _, _) = cache_header(&server, "hub/library/never", "1");
    assert_eq!(status, 502);

    // The upstream back: a new tag pulls through again; the AWS CLI deletes the rules.
    up.run();
    ok(
        &run(&mut copy_tag(&fx, &up.addr, home.path(), "1.37")),
        "a new upstream tag",
    );
    ok(
        &skopeo_copy(
            &format!("{}/hub/library/busybox:1.37", server.addr),
            &pulled.path().join("e"),
        ),
        "a new tag through",
    );
    let gone = aws(
        h,
        &server,
        &[
            "delete-pull-through-cache-rule",
            "--ecr-repository-prefix",
            "anon",
        ],
    );
    assert_eq!(gone["ecrRepositoryPrefix"], "anon");
    let out = berth(h, &server, &["cache-rule", "rm", "hub"]);
    ok(&out, "berth cache-rule rm");
    let out = berth(h, &server, &["cache-rule", "ls", "--json"]);
    assert_eq!(ok(&out, "ls").trim(), "[]");
    // Without a rule the cached repository is an ordinary one: still there, still pullable.
    ok(
        &skopeo_copy(&cached, &pulled.path().join("f")),
        "pull after the rule is gone",
    );
}

fn copy_tag(fx: &Path, upstream: &str, home: &Path, tag: &str) -> Command {
    let mut copy = Command::new(env!("CARGO_BIN_EXE_berth"));
    copy.env("DOCKER_CONFIG", home.join("docker"))
        .args(["copy", "--progress", "quiet"])
        .arg(format!("oci:{}:latest", fx.join("busybox").display()))
        .arg(format!("{upstream}/library/busybox:{tag}"));
    copy
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A read-only registry serving the fixture layout, counting requests; it answers 429 while
/// `limited` is set.
struct Counting {
    addr: String,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    limited: Arc<AtomicBool>,
    _thread: std::thread::JoinHandle<()>,
}

impl Counting {
    fn start(layout: PathBuf, tag: &str) -> Counting {
        use axum::body::Body;
        use axum::http::{Request, Response, StatusCode};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let limited = Arc::new(AtomicBool::new(false));
        let (reqs, lim, tag) = (Arc::clone(&requests), Arc::clone(&limited), tag.to_owned());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let index: Value = serde_json::from_slice(
                    &std::fs::read(layout.join("index.json")).unwrap(),
                )
                .unwrap();
                let root = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
                let app = axum::Router::new().fallback(move |req: Request<Body>| {
                    let (reqs, lim, layout, root, tag) = (
                        Arc::clone(&reqs),
                        Arc::clone(&lim),
                        layout.clone(),
                        root.clone(),
                        tag.clone(),
                    );
                    async move {
                        let path = req.uri().path().to_owned();
                        reqs.lock()
                            .unwrap()
                            .push((req.method().to_string(), path.clone()));
                        let reply = |s: StatusCode, ct: &str, body: Vec<u8>, digest: &str| {
                            let mut b = Response::builder()
                                .status(s)
                                .header("content-type", ct)
                                .header("content-length", body.len());
                            if !digest.is_empty() {
                                b = b.header("docker-content-digest", digest);
                            }
                            let body = if req.method() == "HEAD" {
                                Body::empty()
                            } else {
                                Body::from(body)
                            };
                            b.body(body).unwrap()
                        };
                        if lim.load(Ordering::SeqCst) {
                            return reply(
                                StatusCode::TOO_MANY_REQUESTS,
                                "application/json",
                                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#.to_vec(),
                                "",
                            );
                        }
                        if path == "/v2/" {
                            return reply(StatusCode::OK, "application/json", b"{}".to_vec(), "");
                        }
                        let rest = path.strip_prefix("/v2/busybox/").unwrap_or("");
                        let (kind, reference) = rest.split_once('/').unwrap_or(("", ""));
                        let digest = if kind == "manifests" && reference == tag {
                            root.clone()
                        } else {
                            reference.to_owned()
                        };
                        let file = layout
                            .join("blobs/sha256")
                            .join(digest.trim_start_matches("sha256:"));
                        match (kind, std::fs::read(&file)) {
                            ("manifests", Ok(bytes)) => {
                                let v: Value = serde_json::from_slice(&bytes).unwrap();
                                let ct = v["mediaType"].as_str().unwrap_or("").to_owned();
                                reply(StatusCode::OK, &ct, bytes, &digest)
                            }
                            ("blobs", Ok(bytes)) => {
                                reply(StatusCode::OK, "application/octet-stream", bytes, &digest)
                            }
                            _ => reply(
                                StatusCode::NOT_FOUND,
                                "application/json",
                                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.to_vec(),
                                "",
                            ),
                        }
                    }
                });
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Counting {
            addr,
            requests,
            limited,
            _thread: thread,
        }
    }

    fn gets(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (method, path) in self.requests.lock().unwrap().iter() {
            if method == "GET" {
                *m.entry(path.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

/// Twenty concurrent pulls of an uncached image make one upstream GET per blob (and per
/// manifest); an upstream answering 429 is answered from the cache, marked stale, and a 429
/// with nothing cached reaches the client as `TOOMANYREQUESTS`.
#[test]
fn twenty_concurrent_pulls_fetch_each_blob_once_and_429_serves_the_cache() {
    let fx = fixtures();
    let index = fixture_index_digest(&fx);
    let upstream = Counting::start(fx.join("busybox"), "latest");
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(dir.path(), "pull_through_check_secs = 1\n");
    let home = tempfile::tempdir().unwrap();
    ok(
        &berth(
            home.path(),
            &server,
            &[
                "cache-rule",
                "create",
                "rl",
                &format!("http://{}", upstream.addr),
            ],
        ),
        "rule",
    );
    let image = format!("{}/rl/busybox:latest", server.addr);
    // A blob asked for before any manifest named it (a client resuming a pull across a
    // restart): its size comes from the upstream, and it streams through.
    let layout = fx.join("busybox");
    let first = {
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let blob = |d: &str| {
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let root: Value = serde_json::from_slice(
            &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let m: Value = serde_json::from_slice(
            &std::fs::read(blob(root["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    let got = Command::new("curl")
        .args([
            "-sf",
            &format!("http://{}/v2/rl/busybox/blobs/{first}", server.addr),
        ])
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&got.stdout))
        ),
        first
    );
    let out = tempfile::tempdir().unwrap();
    let pulls: Vec<Child> = (0..20)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_berth"))
                .args(["pull", "--progress", "quiet", &image])
                .arg(out.path().join(format!("p{i}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pulls {
        ok(&p.wait_with_output().unwrap(), "a concurrent pull");
    }
    for i in 0..20 {
        let layout: Value = serde_json::from_slice(
            &std::fs::read(out.path().join(format!("p{i}/index.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(layout["manifests"][0]["digest"], index.as_str());
    }
    let gets = upstream.gets();
    let blobs: Vec<(&String, &usize)> =
        gets.iter().filter(|(p, _)| p.contains("/blobs/")).collect();
    assert_eq!(blobs.len(), 4, "{gets:?}");
    for (path, n) in &gets {
        assert_eq!(*n, 1, "{path} was fetched {n} times: {gets:?}");
    }

    // Rate-limited upstream: the cached tag is served (once the check interval is over).
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache_header(&server, "rl/busybox", "latest").1 != "hit" {
        assert!(Instant::now() < deadline, "the image was not cached");
        std::thread::sleep(Duration::from_millis(100));
    }
    upstream.limited.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let (status, note, digest) = cache_header(&server, "rl/busybox", "latest");
    assert_eq!((status, digest.as_str()), (200, index.as_str()));
    assert_eq!(note, "stale (upstream answered 429)");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let p = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["pull", "--progress", "quiet", &image])
        .arg(out.path().join("limited"))
        .output()
        .unwrap();
    ok(&p, "a pull while the upstream answers 429");
    // Nothing cached and 429: the client is told to come back.
    let (status, _, _) = cache_header(&server, "rl/other", "latest");
    assert_eq!(status, 429);
}

/// With authentication on, pulling *through* needs `ecr:BatchImportUpstreamImage` (and
/// `ecr:CreateRepository` for a new repository) besides the pull actions, as on ECR: a user who
/// may only pull is refused before the upstream is asked, and pulls the image from the cache
/// once a user who may import brought it in.
#[test]
fn only_callers_who_may_import_reach_the_upstream() {
    const ROOT: (&str, &str) = (
        "AKIAPULLTHROUGHROOT1",
        "root-secret-for-the-pull-through-tests",
    );
    let fx = fixtures();
    let upstream = Counting::start(fx.join("busybox"), "latest");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_auth(
        dir.path(),
        &[],
        &[
            ("BERTH_ROOT_ACCESS_KEY_ID", ROOT.0),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT.1),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let as_user = |key: (&str, &str), args: &[&str]| -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        aws_env(&mut cmd, home.path(), key.0, key.1);
        cmd.env("AWS_ENDPOINT_URL_ECR", format!("http://{}", server.addr))
            .env("BERTH_ECR_REGISTRIES", &server.addr);
        run(cmd.args(args))
    };
    ok(
        &as_user(
            ROOT,
            &[
                "cache-rule",
                "create",
                "rl",
                &format!("http://{}", upstream.addr),
            ],
        ),
        "rule",
    );
    let (id, secret) = common::user(
        &server,
        "puller",
        Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"],"Resource":"*"}]}"#,
        ),
    );
    let image = format!("{}/rl/busybox:latest", server.addr);
    let out_dir = tempfile::tempdir().unwrap();
    let pull = |key: (&str, &str), to: &str| {
        as_user(
            key,
            &[
                "pull",
                "--progress",
                "quiet",
                &image,
                out_dir.path().join(to).to_str().unwrap(),
            ],
        )
    };
    let refused = pull((&id, &secret), "a");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("ecr:BatchImportUpstreamImage"), "{err}");
    assert!(
        upstream.requests.lock().unwrap().is_empty(),
        "a caller who may not import made upstream traffic"
    );
    ok(&pull(ROOT, "b"), "the administrator pulls through");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ok(
            &as_user(ROOT, &["images", "ls", "rl/busybox", "--json"]),
            "images",
        )
        .contains("\"latest\"")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the image was not cached");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(
        &pull((&id, &secret), "c"),
        "the puller pulls what is cached",
    );
}
