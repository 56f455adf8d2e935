//! Replication on real servers: a source `berth serve` replicating to two other `berth serve`
//! instances (through their ECR API: repositories created there, ECR tokens) and to Debian's
//! `docker-registry`; configured with the AWS CLI, read back with boto3 and berth's CLI.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Reference, Server, aws_env, fixture_index_digest, fixtures, ok};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `berth serve --no-auth` on a fixed port (so it can be stopped and started again there).
struct Node {
    port: u16,
    data: PathBuf,
    config: Option<PathBuf>,
    home: PathBuf,
    server: Option<Server>,
}

impl Node {
    fn new(dir: &Path, name: &str, config: Option<&str>) -> Node {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let config = config.map(|c| {
            let p = dir.join(format!("{name}.toml"));
            std::fs::write(&p, c).unwrap();
            p
        });
        let mut n = Node {
            port: free_port(),
            data,
            config,
            home: dir.join(format!("{name}-home")),
            server: None,
        };
        n.start();
        n
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        // The source calls its destinations' ECR API with these (a --no-auth server takes any).
        aws_env(&mut cmd, &self.home, KEY.0, KEY.1);
        cmd.args([
            "serve",
            "--no-auth",
            "--create-on-push",
            "--metrics-listen",
            "off",
        ])
        .args(["--listen", &self.addr(), "--data"])
        .arg(&self.data)
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        self.server = Some(Server::spawn(cmd, &self.data));
    }

    fn stop(&mut self) {
        drop(self.server.take());
    }

    fn kill9(&mut self) {
        self.server.take().unwrap().kill9();
    }
}

fn client_env(cmd: &mut Command, home: &Path, node: &Node) {
    aws_env(cmd, home, KEY.0, KEY.1);
    cmd.env("AWS_ENDPOINT_URL_ECR", format!("http://{}", node.addr()));
}

const KEY: (&str, &str) = ("AKIAREPLICATIONTEST0", "secret");

fn aws(home: &Path, node: &Node, args: &[&str]) -> Value {
    let out = common::aws_ecr(home, &node.addr(), KEY.0, KEY.1, args);
    serde_json::from_str(&ok(&out, &format!("aws ecr {args:?}"))).unwrap()
}

fn boto3(home: &Path, node: &Node, script: &str) -> Value {
    common::boto3(home, &node.addr(), KEY.0, KEY.1, script)
}

/// berth's ECR API commands against `node`, with the client's AWS credentials.
fn berth_cli(home: &Path, node: &Node, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    client_env(&mut cmd, home, node);
    cmd.args(args).output().unwrap()
}

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .unwrap()
}

fn push_fixture(fx: &Path, dst: &str) {
    ok(
        &berth(&[
            "copy",
            "--progress",
            "quiet",
            &format!("oci:{}:latest", fx.join("busybox").display()),
            dst,
        ]),
        &format!("push {dst}"),
    );
}

fn digest_of(reference: &str) -> Option<String> {
    let out = berth(&["digest", reference]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `curl` a request, returning the status and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

/// Pushes an SBOM-like artifact whose subject is `subject` (an index of `size` bytes) into
/// `repo` on `addr`; its digest.
fn push_referrer(addr: &str, repo: &str, subject: &str, size: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let put_blob = |bytes: &[u8]| -> String {
        let d = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        );
        let f = dir.path().join("blob");
        std::fs::write(&f, bytes).unwrap();
        let (code, body) = curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/octet-stream",
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("http://{addr}/v2/{repo}/blobs/uploads/?digest={d}"),
        ]);
        assert_eq!(code, 201, "{body}");
        d
    };
    let empty = put_blob(b"{}");
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"busybox"}"#;
    let layer = put_blob(sbom);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": layer, "size": sbom.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": subject, "size": size},
    })
    .to_string();
    let d = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest.as_bytes()))
    );
    let f = dir.path().join("manifest");
    std::fs::write(&f, &manifest).unwrap();
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "content-type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", f.display()),
        &format!("http://{addr}/v2/{repo}/manifests/{d}"),
    ]);
    assert_eq!(code, 201, "{body}");
    d
}

/// Statuses of an image at the source, by destination region.
fn statuses(home: &Path, source: &Node, repo: &str, id: &str) -> Vec<(String, String)> {
    let image_id = if id.starts_with("sha256:") {
        format!("imageDigest={id}")
    } else {
        format!("imageTag={id}")
    };
    let v = aws(
        home,
        source,
        &[
            "describe-image-replication-status",
            "--repository-name",
            repo,
            "--image-id",
            &image_id,
        ],
    );
    let mut out: Vec<(String, String)> = v["replicationStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["region"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[track_caller]
fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_complete(s: &[(String, String)]) -> bool {
    s.len() == 3 && s.iter().all(|(_, st)| st == "COMPLETE")
}

/// Pushes after the configuration reach every destination with identical digests (an index,
/// its platform manifests and a referrer); pushes before it do not; a destination that is down
/// gets everything once it is back; a source killed with jobs pending loses none of them.
#[test]
fn pushes_replicate_to_two_berths_and_a_docker_registry_and_no_job_is_lost() {
    let fx = fixtures();
    let index = fixture_index_digest(&fx);
    let index_size = std::fs::metadata(
        fx.join("busybox/blobs/sha256")
            .join(index.trim_start_matches("sha256:")),
    )
    .unwrap()
    .len();
    let dir = tempfile::tempdir().unwrap();
    let mut west = Node::new(dir.path(), "west", None);
    let mut eu = Node::new(dir.path(), "eu", None);
    let plain = Reference::start();
    let config = format!(
        r#"
[[replication_destinations]]
region = "us-west-2"
registry_id = "111111111111"
registry = "{}"
ecr_endpoint = "http://{}"

[[replication_destinations]]
region = "eu-west-1"
registry_id = "222222222222"
registry = "{}"
ecr_endpoint = "http://{}"

[[replication_destinations]]
region = "ap-south-1"
registry_id = "333333333333"
registry = "{}"
"#,
        west.addr(),
        west.addr(),
        eu.addr(),
        eu.addr(),
        plain.addr
    );
    let mut source = Node::new(dir.path(), "source", Some(&config));
    let home = dir.path().join("client");
    let h = home.as_path();

    // Before any configuration: not replicated, then or later.
    push_fixture(&fx, &format!("{}/team/before:1", source.addr()));
    let rule = json!({"rules": [{
        "destinations": [
            {"region": "us-west-2", "registryId": "111111111111"},
            {"region": "eu-west-1", "registryId": "222222222222"},
            {"region": "ap-south-1", "registryId": "333333333333"}],
        "repositoryFilters": [{"filter": "team", "filterType": "PREFIX_MATCH"}]}]});
    let put = aws(
        h,
        &source,
        &[
            "put-replication-configuration",
            "--replication-configuration",
            &rule.to_string(),
        ],
    );
    assert_eq!(put["replicationConfiguration"], rule);
    let described = boto3(
        h,
        &source,
        "json.dump(ecr.describe_registry()['replicationConfiguration'], sys.stdout)",
    );
    assert_eq!(described, rule);
    let shown = berth_cli(h, &source, &["replication", "show", "--json"]);
    let shown: Value = serde_json::from_str(&ok(&shown, "berth replication show")).unwrap();
    assert_eq!(shown, rule);
    // A destination the server does not know is refused, naming the fix.
    let out = common::aws_ecr(
        h,
        &source.addr(),
        KEY.0,
        KEY.1,
        &[
            "put-replication-configuration",
            "--replication-configuration",
            r#"{"rules":[{"destinations":[{"region":"sa-east-1","registryId":"444444444444"}]}]}"#,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidParameterException") && err.contains("[[replication_destinations]]"),
        "{err}"
    );

    // The multi-arch fixture and a referrer of its index.
    push_fixture(&fx, &format!("{}/team/app:1", source.addr()));
    let sbom = push_referrer(&source.addr(), "team/app", &index, index_size);
    push_fixture(&fx, &format!("{}/other/app:1", source.addr()));
    wait_for("team/app:1 and its referrer everywhere", 60, || {
        all_complete(&statuses(h, &source, "team/app", "1"))
            && all_complete(&statuses(h, &source, "team/app", &sbom))
    });
    for node in [&west, &eu] {
        assert_eq!(
            digest_of(&format!("{}/team/app:1", node.addr())).as_deref(),
            Some(index.as_str())
        );
        // The referrer, listed by the referrers API there.
        let (code, body) = curl(&[&format!(
            "http://{}/v2/team/app/referrers/{index}",
            node.addr()
        )]);
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["manifests"][0]["digest"], sbom.as_str(), "{v}");
        // Made through the destination's ECR API.
        let repos = aws(h, node, &["describe-repositories"]);
        let names: Vec<&str> = repos["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["repositoryName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["team/app"], "only what the rule covers");
    }
    assert_eq!(
        digest_of(&format!("{}/team/app:1", plain.addr)).as_deref(),
        Some(index.as_str())
    );
    let (code, _) = curl(&[
        "-H",
        "accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{}/v2/team/app/manifests/{sbom}", plain.addr),
    ]);
    assert_eq!(code, 200, "the referrer at docker-registry");
    assert!(statuses(h, &source, "team/before", "1").is_empty());
    assert!(statuses(h, &source, "other/app", "1").is_empty());
    assert!(digest_of(&format!("{}/team/before:1", west.addr())).is_none());

    // A destination down during pushes gets them when it is back.
    eu.stop();
    push_fixture(&fx, &format!("{}/team/app:2", source.addr()));
    push_fixture(&fx, &format!("{}/team/tool:1", source.addr()));
    wait_for("the others to have team/tool:1", 60, || {
        let s = statuses(h, &source, "team/tool", "1");
        s.len() == 3
            && s.iter()
                .filter(|(r, st)| r != "eu-west-1" && st == "COMPLETE")
                .count()
                == 2
    });
    let s = statuses(h, &source, "team/tool", "1");
    assert!(
        s.contains(&("eu-west-1".to_owned(), "IN_PROGRESS".to_owned())),
        "{s:?}"
    );
    eu.start();
    wait_for("eu to catch up", 90, || {
        all_complete(&statuses(h, &source, "team/tool", "1"))
            && all_complete(&statuses(h, &source, "team/app", "2"))
    });
    for r in ["team/app:2", "team/tool:1"] {
        assert_eq!(
            digest_of(&format!("{}/{r}", eu.addr())).as_deref(),
            Some(index.as_str()),
            "{r}"
        );
    }

    // kill -9 of the source with a job pending (its destination down): after a restart the job
    // runs (once the dead process's lease runs out) and the image arrives.
    west.stop();
    push_fixture(&fx, &format!("{}/team/app:3", source.addr()));
    wait_for("the job to be pending", 30, || {
        statuses(h, &source, "team/app", "3")
            .contains(&("us-west-2".to_owned(), "IN_PROGRESS".to_owned()))
    });
    source.kill9();
    source.start();
    west.start();
    wait_for("the pending job to finish after the restart", 90, || {
        all_complete(&statuses(h, &source, "team/app", "3"))
    });
    assert_eq!(
        digest_of(&format!("{}/team/app:3", west.addr())).as_deref(),
        Some(index.as_str())
    );
    let out = berth_cli(h, &source, &["images", "replication", "team/app:3"]);
    let text = ok(&out, "berth images replication");
    assert!(text.contains("us-west-2/111111111111  COMPLETE"), "{text}");
    // boto3 clears the configuration: later pushes stay here.
    let cleared = boto3(
        h,
        &source,
        "ecr.put_replication_configuration(replicationConfiguration={'rules': []})\njson.dump(ecr.describe_registry()['replicationConfiguration'], sys.stdout)",
    );
    assert_eq!(cleared, json!({"rules": []}));
    push_fixture(&fx, &format!("{}/team/cleared:1", source.addr()));
    assert!(statuses(h, &source, "team/cleared", "1").is_empty());
}
