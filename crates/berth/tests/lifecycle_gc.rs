//! Lifecycle policies, online garbage collection and byte quotas against a real `berth serve`,
//! driven from outside: the AWS CLI and boto3 manage lifecycle policies and previews, `berth repo
//! lifecycle --run` expires exactly what the preview named (an index with its platform children,
//! never a child something else still uses); collections run while fifty pushers and a deleter
//! race them and lose nothing acknowledged; a collector killed mid-sweep is finished by the next
//! one; quotas refuse the push that would exceed them and free up after a collection.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::layout::{Desc, INDEX, Layer, Layout, MANIFEST};
use common::{Server, aws_cli, fixture_index_digest, fixtures, python};
use serde_json::{Value, json};

const ROOT_ID: &str = "AKIALIFECYCLEROOTKEY";
const ROOT_SECRET: &str = "lifecycle-test-root-secret-0123456789ab";
/// No `berth` invocation of these tests may take longer than this: a hang is a failure.
const LIMIT: Duration = Duration::from_secs(60);

// ---- content ---------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes: SHA-256 of `seed` in counter mode.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    use sha2::Digest as _;
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = sha2::Sha256::new();
        h.update(seed.as_bytes());
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Every blob (manifests, configs, layers) reachable from `digest` in a layout.
fn reachable(layout: &Path, digest: &str, out: &mut BTreeSet<String>) {
    out.insert(digest.to_owned());
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    if let Some(children) = v["manifests"].as_array() {
        for c in children {
            reachable(layout, c["digest"].as_str().unwrap(), out);
        }
    } else {
        out.insert(v["config"]["digest"].as_str().unwrap().to_owned());
        for l in v["layers"].as_array().unwrap() {
            out.insert(l["digest"].as_str().unwrap().to_owned());
        }
    }
}

/// Total bytes of the blobs reachable from `digest` (what a repository holding only it uses).
fn reachable_bytes(layout: &Path, digest: &str) -> u64 {
    let mut set = BTreeSet::new();
    reachable(layout, digest, &mut set);
    set.iter()
        .map(|d| {
            std::fs::metadata(layout.join("blobs/sha256").join(&d["sha256:".len()..]))
                .unwrap()
                .len()
        })
        .sum()
}

/// The blob files of a data directory (`blobs/sha256/<2 hex>/<hex>`), as digests.
fn stored_blobs(data: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in std::fs::read_dir(data.join("blobs/sha256")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&shard).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            out.insert(format!("sha256:{name}"));
        }
    }
    out
}

// ---- processes -------------------------------------------------------------------------------

/// Runs `cmd` to completion with its output captured; `Err` if it is still running after
/// `limit` (it is killed).
fn run_limited(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} still running after {limit:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    run_limited(cmd, LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn ok_json(cmd: &mut Command) -> Value {
    let out = ok(cmd);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The environment every client of these tests runs in: its own (empty) configuration and
/// cache under `home`, AWS credentials `id`/`secret`, us-east-1, never the instance metadata
/// service. With `ecr`, `berth push/pull` authenticate to the server natively (ECR tokens).
struct Client {
    home: PathBuf,
    id: &'static str,
    secret: &'static str,
    ecr: Option<String>,
}

impl Client {
    fn anonymous(home: &Path) -> Client {
        Client {
            home: home.to_path_buf(),
            id: "AKIANOAUTHDUMMYKEY01",
            secret: "no-auth-dummy-secret",
            ecr: None,
        }
    }

    fn root(home: &Path, server: &Server) -> Client {
        Client {
            home: home.to_path_buf(),
            id: ROOT_ID,
            secret: ROOT_SECRET,
            ecr: Some(server.addr.clone()),
        }
    }

    fn env(&self, cmd: &mut Command) {
        common::aws_env(cmd, &self.home, self.id, self.secret);
        cmd.env_remove("BERTH_ECR_REGISTRIES")
            .env_remove("BERTH_CRASH_POINT")
            .env_remove("BERTH_DATA")
            .env_remove("BERTH_CONFIG");
        if let Some(addr) = &self.ecr {
            cmd.env("AWS_ENDPOINT_URL_ECR", format!("http://{addr}"))
                .env("BERTH_ECR_REGISTRIES", addr);
        }
    }

    fn berth(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        self.env(&mut c);
        c
    }

    /// `berth push SRC DST --json`: the pushed digest.
    fn push(&self, src: &str, dst: &str) -> String {
        let v =
            ok_json(
                self.berth()
                    .args(["push", src, dst])
                    .args(["--json", "--progress", "quiet"]),
            );
        v["digest"].as_str().unwrap().to_owned()
    }

    /// `berth pull SRC oci:DIR:pulled --json` (every digest verified while streaming): the
    /// pulled digest, or the failure's stderr.
    fn pull(&self, src: &str, dir: &Path) -> Result<String, String> {
        let out = run(self
            .berth()
            .args(["pull", src])
            .arg(format!("oci:{}:pulled", dir.display()))
            .args(["--json", "--progress", "quiet"]));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["digest"].as_str().unwrap().to_owned())
    }

    /// `berth gc` through the running server's ECR endpoint.
    fn gc_api(&self, server: &Server, extra: &[&str]) -> Command {
        let mut c = self.berth();
        c.args(["gc", "--endpoint-url", &format!("http://{}", server.addr)])
            .args(["--region", "us-east-1", "--json"])
            .args(extra);
        c
    }
}

/// A flat `berth.toml` in `dir`.
fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("berth.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// One blocking HTTP request to the server (no auth); returns the status.
fn http(method: reqwest::Method, url: &str, accept: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = common::client()
            .request(method, url)
            .timeout(Duration::from_secs(30));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        req.send().await.unwrap().status().as_u16()
    })
}

fn manifest_exists(server: &Server, repo: &str, reference: &str) -> bool {
    let status = http(
        reqwest::Method::HEAD,
        &server.url(&format!("/v2/{repo}/manifests/{reference}")),
        Some(&format!("{MANIFEST}, {INDEX}")),
    );
    assert!(
        status == 200 || status == 404,
        "HEAD {repo}:{reference}: {status}"
    );
    status == 200
}

fn delete_manifest(server: &Server, repo: &str, digest: &str) -> u16 {
    http(
        reqwest::Method::DELETE,
        &server.url(&format!("/v2/{repo}/manifests/{digest}")),
        None,
    )
}

fn digests_of(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect()
}

fn policy(rules: &[Value]) -> String {
    serde_json::to_string_pretty(&json!({ "rules": rules })).unwrap()
}

fn count_rule(priority: i64, selection: Value) -> Value {
    json!({
        "rulePriority": priority,
        "description": format!("rule {priority} of the lifecycle integration test"),
        "selection": selection,
        "action": {"type": "expire"},
    })
}

// ---- 1 ---------------------------------------------------------------------------------------

const BOTO3_SCRIPT: &str = r#"
import json, os, sys
import boto3
from botocore.exceptions import ClientError

ecr = boto3.client("ecr", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
repo = os.environ["REPO"]
policy = open(os.environ["POLICY"]).read()

out = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy)
assert out["repositoryName"] == repo, out
assert json.loads(out["lifecyclePolicyText"]) == json.loads(policy), out
got = ecr.get_lifecycle_policy(repositoryName=repo)
assert json.loads(got["lifecyclePolicyText"]) == json.loads(policy), got
assert got["registryId"] == out["registryId"], (got, out)

start = ecr.start_lifecycle_policy_preview(repositoryName=repo)
assert start["status"] in ("IN_PROGRESS", "COMPLETE"), start
pages = []
kw = {"repositoryName": repo, "maxResults": 1}
while True:
    page = ecr.get_lifecycle_policy_preview(**kw)
    assert page["status"] == "COMPLETE", page
    assert len(page["previewResults"]) <= 1, page
    pages.append(page)
    token = page.get("nextToken")
    if not token:
        break
    assert len(pages) < 50, "pagination does not end"
    kw["nextToken"] = token
results = [r for p in pages for r in p["previewResults"]]
total = pages[0]["summary"]["expiringImageTotalCount"]
assert total == len(results), (total, len(results))
for r in results:
    assert r["action"]["type"] == "EXPIRE", r
    assert r["appliedRulePriority"] == 1, r
    assert "imagePushedAt" in r, r

def refused(text, why):
    try:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        assert code == "InvalidParameterException", (why, e.response)
        return e.response["Error"]["Message"]
    raise AssertionError(why + ": accepted")

messages = [
    refused(os.environ["DUPLICATE"], "two rules with the same rulePriority"),
    refused(os.environ["ANY_FIRST"], "tagStatus any before another rule"),
]
# The refused policies changed nothing.
got = ecr.get_lifecycle_policy(repositoryName=repo)
assert json.loads(got["lifecyclePolicyText"]) == json.loads(policy), got
print(json.dumps({
    "boto3": boto3.__version__,
    "pages": len(pages),
    "digests": [r["imageDigest"] for r in results],
    "messages": messages,
}))
"#;

#[test]
fn boto3_and_the_aws_cli_drive_lifecycle_policies() {
    let fx = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "lifecycle_interval_secs = 0\ngc_interval_secs = 0\n",
    );
    let server = Server::start_auth(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
        &[
            ("BERTH_ROOT_ACCESS_KEY_ID", ROOT_ID),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", ROOT_SECRET),
        ],
    );
    let me = Client::root(dir.path(), &server);
    let endpoint = format!("http://{}", server.addr);
    let aws = |args: &[&str]| -> Command {
        let mut c = Command::new(aws_cli());
        me.env(&mut c);
        c.args(["--endpoint-url", &endpoint, "--output", "json", "ecr"])
            .args(args);
        c
    };
    let repo = "life/app";
    ok(&mut aws(&["create-repository", "--repository-name", repo]));

    // The images, pushed oldest first:
    //   v1       X, an index of xa (amd64) and xb (arm64)
    //   keep-xa  xa on its own (a platform manifest of X with a tag of its own)
    //   v2       A
    //   v3       the busybox fixture index (amd64 + arm64)
    //   amd      the busybox amd64 manifest (also a child of v3's index)
    //   v4, v5   B, C
    let lay = Layout::new(&dir.path().join("layout"));
    let base = Layer::plain(noise("life base", 4096));
    let img = |name: &str, arch: &'static str| {
        let unique = Layer::gzipped(&noise(name, 2048));
        lay.image(&[&base, &unique], arch)
    };
    let xa = img("xa", "amd64");
    let xb = img("xb", "arm64");
    let x = lay.index(&[&xa, &xb]);
    let (a, b, c) = (img("a", "amd64"), img("b", "amd64"), img("c", "amd64"));
    lay.refs(&[(&x, "x"), (&xa, "xa"), (&a, "a"), (&b, "b"), (&c, "c")]);
    let fx_index = fixture_index_digest(&fx);
    let fx_children: Vec<String> = {
        let v: Value = serde_json::from_slice(
            &std::fs::read(
                fx.join("busybox/blobs/sha256")
                    .join(fx_index.trim_start_matches("sha256:")),
            )
            .unwrap(),
        )
        .unwrap();
        digests_of(&v["manifests"], "digest").into_iter().collect()
    };
    let fx_amd = {
        let v: Value =
            serde_json::from_slice(&std::fs::read(fx.join("busybox-amd64/index.json")).unwrap())
                .unwrap();
        v["manifests"][0]["digest"].as_str().unwrap().to_owned()
    };
    assert!(fx_children.contains(&fx_amd), "fixture layouts changed");
    let fx_arm = fx_children.iter().find(|d| **d != fx_amd).unwrap().clone();
    let dst = |tag: &str| format!("{}/{repo}:{tag}", server.addr);
    let pushes: [(String, &str, &str); 7] = [
        (lay.source("x"), "v1", x.digest.as_str()),
        (lay.source("xa"), "keep-xa", xa.digest.as_str()),
        (lay.source("a"), "v2", a.digest.as_str()),
        (
            format!("oci:{}:latest", fx.join("busybox").display()),
            "v3",
            fx_index.as_str(),
        ),
        (
            format!("oci:{}:latest", fx.join("busybox-amd64").display()),
            "amd",
            fx_amd.as_str(),
        ),
        (lay.source("b"), "v4", b.digest.as_str()),
        (lay.source("c"), "v5", c.digest.as_str()),
    ];
    for (src, tag, want) in &pushes {
        assert_eq!(me.push(src, &dst(tag)), *want, "push {tag}");
        // Push times have millisecond resolution: keep the order unambiguous.
        std::thread::sleep(Duration::from_millis(20));
    }

    // Keep the three newest `v*` images; the `any` rule (last, as it must be) keeps 100.
    let good = policy(&[
        count_rule(
            1,
            json!({"tagStatus": "tagged", "tagPrefixList": ["v"],
                   "countType": "imageCountMoreThan", "countNumber": 3}),
        ),
        count_rule(
            2,
            json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100}),
        ),
    ]);
    // X and A expire; X takes xb along, but not xa, which has a tag of its own.
    let expected: BTreeSet<String> = [&x.digest, &xb.digest, &a.digest]
        .into_iter()
        .cloned()
        .collect();
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, &good).unwrap();
    let policy_arg = format!("file://{}", policy_file.display());
    let good_json: Value = serde_json::from_str(&good).unwrap();

    // The AWS CLI.
    let put = ok_json(&mut aws(&[
        "put-lifecycle-policy",
        "--repository-name",
        repo,
        "--lifecycle-policy-text",
        &policy_arg,
    ]));
    assert_eq!(put["repositoryName"], repo, "{put}");
    assert_eq!(
        serde_json::from_str::<Value>(put["lifecyclePolicyText"].as_str().unwrap()).unwrap(),
        good_json
    );
    let got = ok_json(&mut aws(&[
        "get-lifecycle-policy",
        "--repository-name",
        repo,
    ]));
    assert_eq!(
        serde_json::from_str::<Value>(got["lifecyclePolicyText"].as_str().unwrap()).unwrap(),
        good_json,
        "{got}"
    );
    assert_eq!(got["registryId"], put["registryId"]);
    assert!(got.get("lastEvaluatedAt").is_none(), "{got}");
    let started = ok_json(&mut aws(&[
        "start-lifecycle-policy-preview",
        "--repository-name",
        repo,
    ]));
    assert_eq!(started["status"], "COMPLETE", "{started}");
    let preview = ok_json(&mut aws(&[
        "get-lifecycle-policy-preview",
        "--repository-name",
        repo,
    ]));
    assert_eq!(preview["status"], "COMPLETE", "{preview}");
    let cli_digests = digests_of(&preview["previewResults"], "imageDigest");
    assert_eq!(cli_digests, expected, "{preview}");
    assert_eq!(
        preview["summary"]["expiringImageTotalCount"], 3,
        "{preview}"
    );
    for r in preview["previewResults"].as_array().unwrap() {
        assert_eq!(r["appliedRulePriority"], 1, "{r}");
        assert_eq!(r["action"]["type"], "EXPIRE", "{r}");
        let tags = &r["imageTags"];
        if r["imageDigest"] == x.digest.as_str() {
            assert_eq!(*tags, json!(["v1"]), "{r}");
        } else if r["imageDigest"] == xb.digest.as_str() {
            assert!(
                tags.as_array().is_none_or(Vec::is_empty),
                "xb is untagged: {r}"
            );
        }
    }
    // The CLI's preview with a stricter policy of its own (keep 1): one more `v` image (B).
    let stricter = good.replace("\"countNumber\": 3", "\"countNumber\": 1");
    assert_ne!(stricter, good);
    let stricter_file = dir.path().join("stricter.json");
    std::fs::write(&stricter_file, &stricter).unwrap();
    ok_json(&mut aws(&[
        "start-lifecycle-policy-preview",
        "--repository-name",
        repo,
        "--lifecycle-policy-text",
        &format!("file://{}", stricter_file.display()),
    ]));
    let strict_preview = ok_json(&mut aws(&[
        "get-lifecycle-policy-preview",
        "--repository-name",
        repo,
    ]));
    let strict = digests_of(&strict_preview["previewResults"], "imageDigest");
    assert!(strict.is_superset(&expected), "{strict_preview}");
    assert!(strict.contains(&b.digest), "{strict_preview}");
    // The busybox index: expiring it takes its arm64 manifest, not the tagged amd64 one.
    assert!(strict.contains(&fx_index) && strict.contains(&fx_arm));
    assert!(!strict.contains(&fx_amd) && !strict.contains(&xa.digest));
    assert!(!strict.contains(&c.digest), "{strict_preview}");

    // boto3: put, get, a preview read one result per page, and invalid policies refused.
    let duplicate = policy(&[
        count_rule(
            1,
            json!({"tagStatus": "tagged", "tagPrefixList": ["v"],
                   "countType": "imageCountMoreThan", "countNumber": 3}),
        ),
        count_rule(
            1,
            json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 3}),
        ),
    ]);
    let any_first = policy(&[
        count_rule(
            1,
            json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}),
        ),
        count_rule(
            2,
            json!({"tagStatus": "tagged", "tagPrefixList": ["v"],
                   "countType": "imageCountMoreThan", "countNumber": 3}),
        ),
    ]);
    let script = dir.path().join("lifecycle_boto3.py");
    std::fs::write(&script, BOTO3_SCRIPT).unwrap();
    let mut py = Command::new(python());
    me.env(&mut py);
    let out = run(py
        .arg(&script)
        .env("ENDPOINT", &endpoint)
        .env("REPO", repo)
        .env("POLICY", &policy_file)
        .env("DUPLICATE", &duplicate)
        .env("ANY_FIRST", &any_first));
    assert!(
        out.status.success(),
        "the boto3 script failed ({} with {}; scripts/test.sh installs boto3 into \
         target/py-venv):\n{}\n{}",
        out.status,
        python().display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let boto: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("boto3 {}: {}", boto["boto3"], boto["messages"]);
    assert_eq!(boto["pages"], 3, "{boto}");
    let boto_digests: BTreeSet<String> = boto["digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(boto_digests, expected, "{boto}");
    for m in boto["messages"].as_array().unwrap() {
        assert!(!m.as_str().unwrap().is_empty(), "{boto}");
    }

    // berth's own preview of the stored policy agrees.
    let berth_repo = |args: &[&str]| -> Command {
        let mut c = me.berth();
        c.args(["repo", "--endpoint-url", &endpoint]).args(args);
        c
    };
    let berth_preview = ok_json(&mut berth_repo(&["lifecycle", repo, "--preview", "--json"]));
    assert_eq!(
        digests_of(&berth_preview["previewResults"], "imageDigest"),
        expected,
        "{berth_preview}"
    );

    // The run expires exactly what the preview named.
    let ran = ok_json(&mut berth_repo(&["lifecycle", repo, "--run", "--json"]));
    let expired = digests_of(&ran["expiredImages"], "imageDigest");
    assert_eq!(expired, cli_digests, "{ran}");
    for e in ran["expiredImages"].as_array().unwrap() {
        assert_eq!(e["appliedRulePriority"], 1, "{e}");
    }
    assert!(ran["lastEvaluatedAt"].is_number(), "{ran}");
    let got = ok_json(&mut aws(&[
        "get-lifecycle-policy",
        "--repository-name",
        repo,
    ]));
    assert!(got.get("lastEvaluatedAt").is_some(), "{got}");
    // A second run finds nothing more to expire.
    let again = ok_json(&mut berth_repo(&["lifecycle", repo, "--run", "--json"]));
    assert_eq!(again["expiredImages"], json!([]), "{again}");

    let described = ok_json(&mut aws(&["describe-images", "--repository-name", repo]));
    let listed = digests_of(&described["imageDetails"], "imageDigest");
    assert!(listed.is_disjoint(&expected), "{described}");
    for kept in [&xa.digest, &fx_index, &fx_amd, &b.digest, &c.digest] {
        assert!(listed.contains(kept), "{kept} not described: {described}");
    }

    // Everything else still pulls, verified; the kept index's platform manifests still resolve
    // by digest; the expired ones are gone, tags and digests alike.
    let pulls = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut pull = |reference: String| {
        n += 1;
        me.pull(
            &format!("{}/{repo}{reference}", server.addr),
            &pulls.path().join(format!("p{n}")),
        )
    };
    for (tag, want) in [
        ("keep-xa", &xa.digest),
        ("v3", &fx_index),
        ("amd", &fx_amd),
        ("v4", &b.digest),
        ("v5", &c.digest),
    ] {
        assert_eq!(pull(format!(":{tag}")).unwrap(), *want, "pull {tag}");
    }
    for d in [&fx_amd, &fx_arm, &xa.digest] {
        assert_eq!(pull(format!("@{d}")).unwrap(), *d);
    }
    for gone in ["v1".to_owned(), "v2".to_owned()]
        .into_iter()
        .map(|t| format!(":{t}"))
        .chain(expected.iter().map(|d| format!("@{d}")))
    {
        let err = pull(gone.clone()).expect_err(&gone);
        assert!(
            err.contains("not found") || err.contains("MANIFEST_UNKNOWN") || err.contains("404"),
            "{gone}: {err}"
        );
    }
}

// ---- 2 ---------------------------------------------------------------------------------------

/// One push of the race: layout `i % 10` to `race/r{i / 10}:t{i}` (so a repository and digest
/// belong to one push only, and deleting by digest deletes exactly that push's tag).
struct RacePush {
    layout: usize,
    repo: String,
    tag: String,
}

impl RacePush {
    /// Deleted as soon as acknowledged: in the end nothing references layouts 0-3.
    fn doomed(&self) -> bool {
        self.layout < 4
    }
}

fn race_push(i: usize) -> RacePush {
    RacePush {
        layout: i % 10,
        repo: format!("race/r{}", i / 10),
        tag: format!("t{i}"),
    }
}

#[test]
fn gc_under_fifty_concurrent_pushers_loses_nothing() {
    const PUSHES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "gc_grace_secs = 2\ngc_interval_secs = 0\nlifecycle_interval_secs = 0\n",
    );
    let server = Arc::new(Server::start_with(
        &data,
        &["--config", cfg.to_str().unwrap()],
    ));
    let me = Arc::new(Client::anonymous(dir.path()));

    // Ten layouts sharing two base layers, each with a layer of its own (half of them gzipped).
    let base = [
        Layer::plain(noise("race base 0", 48 * 1024)),
        Layer::gzipped(&noise("race base 1", 16 * 1024)),
    ];
    let layouts: Vec<(PathBuf, Desc)> = (0..10)
        .map(|k| {
            let lay = Layout::new(&dir.path().join(format!("layout{k}")));
            let own = noise(&format!("race layer {k}"), 8 * 1024 + k * 1000);
            let own = if k % 2 == 0 {
                Layer::gzipped(&own)
            } else {
                Layer::plain(own)
            };
            let top = lay.image(&[&base[0], &base[1], &own], "amd64");
            lay.refs(&[(&top, "latest")]);
            (lay.dir.clone(), top)
        })
        .collect();
    let layouts = Arc::new(layouts);

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let deleted: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let t0 = Instant::now();

    // The collector: back to back, with a one-second grace, through the server.
    let collector = {
        let (server, me, stop) = (server.clone(), me.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reports = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let out = run(&mut me.gc_api(&server, &["--grace", "1s"]));
                assert!(
                    out.status.success(),
                    "berth gc during the race: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                reports.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
                std::thread::sleep(Duration::from_millis(50));
            }
            reports
        })
    };
    // The deleter: every acknowledged push of layouts 0-3 is deleted by digest.
    let deleter = {
        let (server, layouts, stop) = (server.clone(), layouts.clone(), stop.clone());
        let (acked, deleted) = (acked.clone(), deleted.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let done = deleted.lock().unwrap().clone();
                let next = acked
                    .lock()
                    .unwrap()
                    .iter()
                    .copied()
                    .find(|i| race_push(*i).doomed() && !done.contains(i));
                let Some(i) = next else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let p = race_push(i);
                let digest = &layouts[p.layout].1.digest;
                let status = delete_manifest(&server, &p.repo, digest);
                assert_eq!(status, 202, "DELETE {}:{}", p.repo, p.tag);
                deleted.lock().unwrap().insert(i);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Fifty pushers: twenty at once, then one every 150 ms, so that each layout comes back
    // every 1.5 s, just past the grace period, while its previous image was deleted: the
    // collector claims blobs as pushes of the same content arrive.
    let pushers: Vec<_> = (0..PUSHES)
        .map(|i| {
            let (server, me, layouts, acked) =
                (server.clone(), me.clone(), layouts.clone(), acked.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150 * i.saturating_sub(20) as u64));
                let p = race_push(i);
                let src = format!("oci:{}:latest", layouts[p.layout].0.display());
                let dst = format!("{}/{}:{}", server.addr, p.repo, p.tag);
                let out = run_limited(
                    me.berth()
                        .args(["push", &src, &dst])
                        .args(["--json", "--progress", "quiet"]),
                    LIMIT,
                )?;
                if out.status.success() {
                    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(v["digest"], layouts[p.layout].1.digest.as_str());
                    acked.lock().unwrap().push(i);
                }
                Ok::<Output, String>(out)
            })
        })
        .collect();
    let results: Vec<Result<Output, String>> =
        pushers.into_iter().map(|h| h.join().unwrap()).collect();
    // Let the deleter catch up with the last acknowledgements, then stop everyone.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let reports = collector.join().unwrap();
    deleter.join().unwrap();
    let phase = t0.elapsed();
    eprintln!("race phase: {phase:?}, {} collections", reports.len());
    assert!(phase < Duration::from_secs(90), "race phase took {phase:?}");

    let mut failed = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let out = r.as_ref().unwrap_or_else(|e| panic!("push {i} hung: {e}"));
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            assert!(
                out.status.code().is_some() && !err.is_empty(),
                "push {i} failed without a clean error: {} {err:?}",
                out.status
            );
            failed.push(format!("push {i}: {err}"));
        }
    }
    let acked: BTreeSet<usize> = acked.lock().unwrap().iter().copied().collect();
    let deleted = deleted.lock().unwrap().clone();
    eprintln!(
        "{} of {PUSHES} pushes acknowledged, {} deleted; failures: {failed:#?}",
        acked.len(),
        deleted.len()
    );
    assert!(
        acked.len() * 100 >= PUSHES * 80,
        "only {} of {PUSHES} pushes acknowledged: {failed:#?}",
        acked.len()
    );
    let removed: u64 = reports
        .iter()
        .map(|r| r["blobsRemoved"].as_u64().unwrap())
        .sum();
    let unlinked: u64 = reports
        .iter()
        .map(|r| r["linksRemoved"].as_u64().unwrap())
        .sum();
    eprintln!("during the race: {unlinked} links and {removed} blobs collected");

    // Every acknowledged push that was not deleted pulls, every blob verified; deleted ones are
    // gone.
    let pulls = tempfile::tempdir().unwrap();
    let mut present = BTreeSet::new();
    for i in 0..PUSHES {
        let p = race_push(i);
        let exists = manifest_exists(&server, &p.repo, &p.tag);
        if acked.contains(&i) && !deleted.contains(&i) {
            assert!(exists, "acknowledged push {i} ({}:{}) lost", p.repo, p.tag);
            let got = me
                .pull(
                    &format!("{}/{}:{}", server.addr, p.repo, p.tag),
                    &pulls.path().join(format!("p{i}")),
                )
                .unwrap_or_else(|e| panic!("pull of push {i} ({}:{}): {e}", p.repo, p.tag));
            assert_eq!(got, layouts[p.layout].1.digest);
        }
        if deleted.contains(&i) {
            assert!(!exists, "deleted push {i} still there");
        }
        if exists {
            if !acked.contains(&i) {
                eprintln!("note: push {i} failed for its client but its tag exists");
            }
            present.insert(i);
        }
    }

    // Past the grace period, a full collection; then there is nothing left to collect, and the
    // blob store holds exactly what the remaining tags reach.
    std::thread::sleep(Duration::from_millis(2100));
    let full = ok_json(&mut me.gc_api(&server, &["--grace", "0s"]));
    eprintln!("final collection: {full}");
    let dry = ok_json(&mut me.gc_api(&server, &["--grace", "0s", "--dry-run"]));
    assert_eq!(dry["dryRun"], true, "{dry}");
    assert_eq!(dry["blobsRemoved"], 0, "{dry}");
    assert_eq!(dry["linksRemoved"], 0, "{dry}");
    let mut want = BTreeSet::new();
    for &i in &present {
        let p = race_push(i);
        let (dir, top) = &layouts[p.layout];
        reachable(dir, &top.digest, &mut want);
    }
    let stored = stored_blobs(&data);
    assert_eq!(
        stored,
        want,
        "blob store vs what {} remaining tags reach: extra {:?}, missing {:?}",
        present.len(),
        stored.difference(&want).collect::<Vec<_>>(),
        want.difference(&stored).collect::<Vec<_>>()
    );
    // And the survivors still pull after the full collection.
    for &i in present.iter().take(5) {
        let p = race_push(i);
        me.pull(
            &format!("{}/{}:{}", server.addr, p.repo, p.tag),
            &pulls.path().join(format!("after{i}")),
        )
        .unwrap();
    }
}

// ---- 3 ---------------------------------------------------------------------------------------

#[test]
fn gc_killed_mid_sweep_finishes_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(
        dir.path(),
        "gc_lease_secs = 1\ngc_interval_secs = 0\nlifecycle_interval_secs = 0\n",
    );
    let server = Server::start_with(&data, &["--config", cfg.to_str().unwrap()]);
    let me = Client::anonymous(dir.path());

    let lay = Layout::new(&dir.path().join("layout"));
    let base = Layer::plain(noise("crash base", 32 * 1024));
    let images: Vec<Desc> = (0..4)
        .map(|k| {
            let own = Layer::gzipped(&noise(&format!("crash {k}"), 12 * 1024));
            lay.image(&[&base, &own], "amd64")
        })
        .collect();
    let names: Vec<String> = (0..4).map(|k| format!("t{k}")).collect();
    lay.refs(
        &images
            .iter()
            .zip(&names)
            .map(|(d, n)| (d, n.as_str()))
            .collect::<Vec<_>>(),
    );
    for (d, n) in images.iter().zip(&names) {
        let got = me.push(&lay.source(n), &format!("{}/crash/app:{n}", server.addr));
        assert_eq!(got, d.digest);
    }
    // Two images deleted: their manifests, configs and own layers (6 blobs) are garbage.
    for d in &images[..2] {
        assert_eq!(delete_manifest(&server, "crash/app", &d.digest), 202);
    }
    let before = stored_blobs(&data);
    let mut want = BTreeSet::new();
    for d in &images[2..] {
        reachable(&lay.dir, &d.digest, &mut want);
    }
    assert_eq!(before.len(), want.len() + 6, "{before:?}");

    let gc = |extra: &[&str]| -> Command {
        let mut c = me.berth();
        c.arg("gc")
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .args(["--grace", "0s"])
            .args(extra);
        c
    };
    let crashed = run(gc(&[]).env("BERTH_CRASH_POINT", "gc-sweep"));
    assert!(
        !crashed.status.success() && crashed.status.signal().is_some(),
        "the collector did not die at its crash point: {} {}",
        crashed.status,
        String::from_utf8_lossy(&crashed.stderr)
    );
    eprintln!("crashed collector: {}", crashed.status);
    // It deleted bytes and died holding their tombstones (and its lease).
    let between = stored_blobs(&data);
    assert!(
        between.len() < before.len(),
        "nothing deleted before the crash"
    );
    assert!(want.is_subset(&between), "the crash deleted live blobs");

    std::thread::sleep(Duration::from_millis(1500));
    let next = ok_json(&mut gc(&["--json"]));
    eprintln!("next collection: {next}");
    assert!(
        next["tombstonesFinished"].as_u64().unwrap() > 0,
        "the next collection did not finish the interrupted one: {next}"
    );
    let pulls = tempfile::tempdir().unwrap();
    for (d, n) in images.iter().zip(&names).skip(2) {
        let got = me
            .pull(
                &format!("{}/crash/app:{n}", server.addr),
                &pulls.path().join(n),
            )
            .unwrap();
        assert_eq!(got, d.digest);
    }
    for d in &images[..2] {
        assert!(!manifest_exists(&server, "crash/app", &d.digest));
    }
    let dry = ok_json(&mut gc(&["--dry-run", "--json"]));
    assert_eq!(dry["blobsRemoved"], 0, "{dry}");
    assert_eq!(dry["linksRemoved"], 0, "{dry}");
    assert_eq!(dry["orphansRemoved"], 0, "{dry}");
    assert_eq!(stored_blobs(&data), want);
    // The server still accepts the deleted content again (no tombstone left blocking a pin).
    let got = me.push(
        &lay.source("t0"),
        &format!("{}/crash/app:again", server.addr),
    );
    assert_eq!(got, images[0].digest);
    drop(server);
}

// ---- 4 ---------------------------------------------------------------------------------------

/// `berth admin quota` on the server's data directory, with its configuration (where the
/// default repository quota lives).
struct Quotas<'a> {
    data: &'a Path,
    config: &'a Path,
}

impl Quotas<'_> {
    fn admin(&self, args: &[&str]) -> String {
        ok(Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["admin", "--data"])
            .arg(self.data)
            .arg("--config")
            .arg(self.config)
            .arg("quota")
            .args(args))
    }

    /// The `key\tvalue` lines of `berth admin quota show`.
    fn show(&self, repo: &str) -> BTreeMap<String, String> {
        self.admin(&["show", repo])
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn usage(&self, repo: &str) -> u64 {
        self.show(repo)["usage_bytes"].parse().unwrap()
    }

    fn set(&self, repo: &str, quota: &str) {
        self.admin(&["set", repo, quota]);
    }
}

#[test]
fn quotas_refuse_the_push_that_would_exceed_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Three images of one ~100 kB layer each, nothing shared.
    let lay = Layout::new(&dir.path().join("layout"));
    let images: Vec<Desc> = (1..=3)
        .map(|k| {
            lay.image(
                &[&Layer::plain(noise(&format!("quota {k}"), 100_000))],
                "amd64",
            )
        })
        .collect();
    lay.refs(&[(&images[0], "q1"), (&images[1], "q2"), (&images[2], "q3")]);
    let sizes: Vec<u64> = images
        .iter()
        .map(|d| reachable_bytes(&lay.dir, &d.digest))
        .collect();
    let quota = sizes[0] + sizes[1] + sizes[2] / 2;
    let cfg = config(
        dir.path(),
        &format!(
            "repository_quota_bytes = {quota}\nupload_ttl_secs = 2\ngc_interval_secs = 0\n\
             lifecycle_interval_secs = 0\n"
        ),
    );
    let server = Server::start_with(&data, &["--config", cfg.to_str().unwrap()]);
    let me = Client::anonymous(dir.path());
    let q = Quotas {
        data: &data,
        config: &cfg,
    };
    let dst = |repo: &str, tag: &str| format!("{}/{repo}:{tag}", server.addr);
    let push = |repo: &str, k: usize| {
        run(me.berth().args([
            "push",
            &lay.source(&format!("q{k}")),
            &dst(repo, &format!("v{k}")),
            "--progress",
            "quiet",
        ]))
    };
    let pushed = |repo: &str, k: usize| {
        let out = push(repo, k);
        assert!(
            out.status.success(),
            "push of image {k} to {repo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let refused = |repo: &str, k: usize| {
        let out = push(repo, k);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "push of image {k} to {repo}: {err}"
        );
        assert!(
            err.contains("quota"),
            "the refusal does not name the quota: {err}"
        );
        err
    };

    pushed("quota/app", 1);
    pushed("quota/app", 2);
    assert_eq!(q.usage("quota/app"), sizes[0] + sizes[1]);
    let err = refused("quota/app", 3);
    eprintln!("refusal: {err}");
    let shown = q.show("quota/app");
    assert_eq!(shown["quota_bytes"], quota.to_string(), "{shown:?}");
    let used: u64 = shown["usage_bytes"].parse().unwrap();
    assert!(used <= quota, "usage {used} over the quota {quota}");
    assert!(!manifest_exists(&server, "quota/app", "v3"));
    // The refused blob's session and staged bytes are gone. (`berth push` uploads blobs
    // concurrently and, on the refusal, exits without ending its other open sessions: the
    // config's may be left, staged, until it expires — see below.)
    let staged = |data: &Path| -> Vec<(String, u64)> {
        std::fs::read_dir(data.join("uploads"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let len = e.metadata().unwrap().len();
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect()
    };
    let left = staged(&data);
    assert!(
        left.iter().all(|(_, len)| *len < 100_000),
        "the refused layer's upload was left behind: {left:?}"
    );
    if !left.is_empty() {
        eprintln!("note: the refused push left the sessions {left:?} (client-side)");
    }
    let big_layer = {
        let v: Value = serde_json::from_slice(
            &std::fs::read(lay.dir.join("blobs/sha256").join(&images[2].digest[7..])).unwrap(),
        )
        .unwrap();
        v["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    assert!(
        !stored_blobs(&data).contains(&big_layer),
        "the refused layer was stored"
    );

    // Image 1 deleted and collected: room for image 3.
    assert_eq!(
        delete_manifest(&server, "quota/app", &images[0].digest),
        202
    );
    // Past upload_ttl_secs, so that the collection also ends sessions left open.
    std::thread::sleep(Duration::from_millis(2100));
    let report = ok_json(&mut me.gc_api(&server, &["--grace", "0s"]));
    eprintln!("collection after the delete: {report}");
    assert!(report["blobsRemoved"].as_u64().unwrap() >= 3, "{report}");
    // (At least those seen: a session the exiting client asked for may be opened after it.)
    assert!(
        report["uploadsRemoved"].as_u64().unwrap() >= left.len() as u64,
        "{report}"
    );
    assert_eq!(
        staged(&data),
        vec![],
        "upload sessions left after the collection"
    );
    let after = q.usage("quota/app");
    assert!(after < used, "usage did not drop: {after} (was {used})");
    assert!(after <= sizes[1] + sizes[2], "{after}");
    pushed("quota/app", 3);
    assert_eq!(q.usage("quota/app"), sizes[1] + sizes[2]);

    // A repository's own quota replaces the default, both ways; `none` restores the default.
    pushed("quota/big", 1);
    q.set("quota/big", &(sizes.iter().sum::<u64>() + 1000).to_string());
    pushed("quota/big", 2);
    pushed("quota/big", 3);
    let shown = q.show("quota/big");
    assert_eq!(shown["usage_bytes"], sizes.iter().sum::<u64>().to_string());
    assert!(shown["usage_bytes"].parse::<u64>().unwrap() > quota);

    ok(me
        .berth()
        .args(["repo", "--endpoint-url", &server.url("")])
        .args(["create", "quota/small"]));
    q.set("quota/small", &(sizes[0] / 2).to_string());
    assert_eq!(
        q.show("quota/small")["quota_bytes"],
        (sizes[0] / 2).to_string()
    );
    refused("quota/small", 1);
    assert!(q.usage("quota/small") <= sizes[0] / 2);
    q.set("quota/small", "none");
    assert_eq!(q.show("quota/small")["quota_bytes"], quota.to_string());
    pushed("quota/small", 1);
}
