//! `berth build` end to end: base images from a real `berth serve` (the offline busybox
//! fixtures pushed into it), RUN through runc (arm64 through qemu-user binfmt), outputs read back
//! as OCI layouts, pushed indexes run with podman, and the same Dockerfiles built by buildah
//! compared tree for tree and config for config.
//!
//! Needs root, runc, podman, buildah and qemu-user-static: `scripts/test.sh` installs them.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Podman, Server, fixtures};

/// A registry with the busybox fixture (amd64 + arm64) as `library/busybox:latest`, and a
/// private build store.
struct Env {
    server: Server,
    store: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let fx = fixtures();
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(data.path());
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["copy", "--progress", "quiet"])
            .arg(format!("oci:{}:latest", fx.join("busybox").display()))
            .arg(format!("{}/library/busybox:latest", server.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Env {
            server,
            store: tempfile::tempdir().unwrap(),
            _data: data,
        }
    }

    fn base(&self) -> String {
        format!("{}/library/busybox:latest", self.server.addr)
    }

    /// `berth build --store STORE --progress plain ARGS…`.
    fn build(&self, dir: &Path, args: &[&str]) -> Output {
        build_in(self.store.path(), dir, args)
    }

    #[track_caller]
    fn build_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.build(dir, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "berth build failed:\n{stderr}");
        stderr
    }
}

/// How many filesystem steps (RUN, COPY, ADD, WORKDIR) a plain-progress log says were answered
/// from the cache: `#N [platform stage i/n] INSTRUCTION` lines give each id its instruction, and
/// `#N CACHED` lines say which were cached (FROM and config-only steps say so too; they are not
/// counted here).
fn fs_cached(log: &str) -> usize {
    let mut kinds = std::collections::HashMap::new();
    for line in log.lines() {
        if let Some((id, rest)) = line.split_once(" [")
            && let Some((_, text)) = rest.split_once("] ")
        {
            let word = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            kinds.insert(id.to_owned(), word);
        }
    }
    log.lines()
        .filter_map(|l| l.strip_suffix(" CACHED"))
        .filter(|id| {
            kinds
                .get(*id)
                .is_some_and(|k| ["RUN", "COPY", "ADD", "WORKDIR"].contains(&k.as_str()))
        })
        .count()
}

/// `berth build --store STORE --progress plain ARGS… DIR` with a store of the caller's (another
/// CI runner).
fn build_in(store: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["build", "--progress", "plain", "--store"])
        .arg(store)
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

/// [`build_in`], which must succeed: its log.
#[track_caller]
fn build_in_ok(store: &Path, dir: &Path, args: &[&str]) -> String {
    let out = build_in(store, dir, args);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "berth build failed:\n{log}");
    log
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The image manifests of a layout's root, by platform (`linux/amd64`), or `""` for a lone one.
fn images(layout: &Path) -> BTreeMap<String, serde_json::Value> {
    let index = json(&layout.join("index.json"));
    let root = json(&blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let mut out = BTreeMap::new();
    match root["manifests"].as_array() {
        Some(ms) => {
            for m in ms {
                let p = format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                );
                out.insert(p, json(&blob(layout, m["digest"].as_str().unwrap())));
            }
        }
        None => {
            out.insert(String::new(), root);
        }
    }
    out
}

/// A file in a flattened image: type and metadata, content for files, target for links.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    data: Vec<u8>,
}

/// Applies a manifest's layers in order (OCI whiteouts honoured) into path → node.
fn flatten(layout: &Path, manifest: &serde_json::Value) -> BTreeMap<String, Node> {
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for l in manifest["layers"].as_array().unwrap() {
        let f = std::fs::File::open(blob(layout, l["digest"].as_str().unwrap())).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            if path.is_empty() {
                continue;
            }
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if name == ".wh..wh..opq" {
                let prefix = format!("{dir}/");
                tree.retain(|k, _| !k.starts_with(&prefix));
                continue;
            }
            if let Some(gone) = name.strip_prefix(".wh.") {
                let victim = if dir.is_empty() {
                    gone.to_owned()
                } else {
                    format!("{dir}/{gone}")
                };
                let prefix = format!("{victim}/");
                tree.retain(|k, _| *k != victim && !k.starts_with(&prefix));
                continue;
            }
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => 'f',
            };
            let mut data = Vec::new();
            if kind == 'f' {
                e.read_to_end(&mut data).unwrap();
            } else if kind == 'l' || kind == 'h' {
                data = e.link_name_bytes().unwrap().into_owned();
            }
            if kind == 'h' {
                // A hard link has its target's content.
                let target = String::from_utf8_lossy(&data)
                    .trim_start_matches("./")
                    .to_owned();
                if let Some(t) = tree.get(&target).cloned() {
                    tree.insert(path, t);
                }
                continue;
            }
            tree.insert(
                path,
                Node {
                    kind,
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    data,
                },
            );
        }
    }
    tree
}

fn file<'a>(tree: &'a BTreeMap<String, Node>, path: &str) -> &'a Node {
    tree.get(path).unwrap_or_else(|| {
        panic!(
            "{path} missing; tree has {:?}",
            tree.keys().collect::<Vec<_>>()
        )
    })
}

fn text(tree: &BTreeMap<String, Node>, path: &str) -> String {
    String::from_utf8_lossy(&file(tree, path).data).into_owned()
}

/// Everything the language tests exercise in one Dockerfile.
const FULL: &str = r#"# syntax=docker/dockerfile:1
ARG BASE
FROM ${BASE} AS builder
ARG VERSION=1.0
ENV APP_HOME=/opt/app \
    GREETING="hello world"
WORKDIR $APP_HOME
COPY src/ ./src/
COPY --chown=app:app --chmod=640 config.ini /etc/app/
RUN <<EOF
set -e
echo "$GREETING v$VERSION" > built.txt
uname -m > arch.txt
EOF
RUN mkdir -p /out && cp -r src built.txt arch.txt /out/ && rm -f /etc/app/config.ini

FROM ${BASE}
LABEL org.opencontainers.image.title="demo" version=$VERSION
COPY --from=builder /out /app
COPY --chown=1000:1000 <<EOT /app/notes.txt
notes for $HOSTNAME
EOT
USER app
WORKDIR /app
RUN id -u > /tmp/whoami && touch /home/app/made-by-app
EXPOSE 8080 53/udp
ENV MODE=prod
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD ["true"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/built.txt"]
"#;

/// The same without heredocs, which buildah 1.28 (Debian 12's) does not know.
fn compatible(full: &str) -> String {
    full.replace(
        "RUN <<EOF\nset -e\necho \"$GREETING v$VERSION\" > built.txt\nuname -m > arch.txt\nEOF\n",
        "RUN set -e; echo \"$GREETING v$VERSION\" > built.txt; uname -m > arch.txt\n",
    )
    .replace(
        "COPY --chown=1000:1000 <<EOT /app/notes.txt\nnotes for $HOSTNAME\nEOT\n",
        "COPY --chown=1000:1000 notes.txt /app/notes.txt\n",
    )
}

fn full_context(dir: &Path) {
    write(
        dir,
        &[
            ("Dockerfile", FULL),
            ("src/main.c", "int main(void) { return 0; }\n"),
            ("src/util.c", "/* util */\n"),
            ("src/debug.log", "excluded\n"),
            ("config.ini", "[app]\nkey=value\n"),
            (".dockerignore", "**/*.log\n"),
        ],
    );
}

#[test]
fn language_features_produce_the_expected_tree_and_config() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    full_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("img");
    let base = format!("BASE={}", env.base());
    env.build_ok(
        ctx.path(),
        &[
            "--build-arg",
            &base,
            "--build-arg",
            "VERSION=2.5",
            "--label",
            "extra=yes",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    let imgs = images(&layout);
    let m = &imgs[""];
    let tree = flatten(&layout, m);
    // Multi-stage COPY --from, heredoc RUN, ARG/ENV expansion.
    assert_eq!(text(&tree, "app/built.txt"), "hello world v2.5\n");
    assert_eq!(text(&tree, "app/arch.txt"), "x86_64\n");
    assert_eq!(
        text(&tree, "app/src/main.c"),
        "int main(void) { return 0; }\n"
    );
    // .dockerignore: `**/*.log` never reaches the build.
    assert!(!tree.contains_key("app/src/debug.log"));
    // COPY heredoc with --chown, expanded (HOSTNAME is not set: empty).
    let notes = file(&tree, "app/notes.txt");
    assert_eq!(notes.data, b"notes for \n");
    assert_eq!((notes.uid, notes.gid), (1000, 1000));
    // USER switch: RUN as app.
    assert_eq!(text(&tree, "tmp/whoami"), "1000\n");
    let made = file(&tree, "home/app/made-by-app");
    assert_eq!((made.uid, made.gid), (1000, 1000));
    // The builder stage's files are not in the final image.
    assert!(!tree.contains_key("opt/app/built.txt"));
    assert!(!tree.contains_key("etc/app"));

    let cfg = json(&blob(&layout, m["config"]["digest"].as_str().unwrap()));
    let c = &cfg["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat /app/built.txt"]));
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "demo");
    // VERSION is not declared in the final stage: it expands to nothing.
    assert_eq!(c["Labels"]["version"], "");
    assert_eq!(c["Labels"]["extra"], "yes");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    let envs: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(envs.contains(&"MODE=prod"), "{envs:?}");
    assert!(envs.contains(&"PATH=/bin"), "{envs:?}");
    assert_eq!(cfg["architecture"], "amd64");
    // One history entry per instruction after FROM, layers matching diff ids.
    let history = cfg["history"].as_array().unwrap();
    let with_layers = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(with_layers, m["layers"].as_array().unwrap().len());
    assert_eq!(
        cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
        m["layers"].as_array().unwrap().len()
    );
}

#[test]
fn two_platforms_in_one_build_pushed_and_run_with_podman() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nARG TARGETARCH\nRUN uname -m > /arch && echo $TARGETARCH > /targetarch\nCMD [\"cat\", \"/arch\"]\n",
                env.base()
            ),
        )],
    );
    let reference = format!("{}/demo/arch:1", env.server.addr);
    env.build_ok(
        ctx.path(),
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &reference,
            "--push",
        ],
    );
    // The pushed index has both platforms; each image says what it ran on.
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("pulled");
    let pulled = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["pull", "--progress", "quiet", &reference])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let imgs = images(&layout);
    assert_eq!(
        imgs.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    for (platform, arch, target) in [
        ("linux/amd64", "x86_64\n", "amd64\n"),
        ("linux/arm64", "aarch64\n", "arm64\n"),
    ] {
        let tree = flatten(&layout, &imgs[platform]);
        assert_eq!(text(&tree, "arch"), arch, "{platform}");
        assert_eq!(text(&tree, "targetarch"), target, "{platform}");
    }
    // podman runs each platform of the pushed index.
    let podman = Podman::new(&env.server.addr);
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = podman
            .cmd()
            .args(["run", "--rm", "--platform", platform, &reference])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman run {platform}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            arch,
            "{platform}"
        );
    }
}

#[test]
fn rebuilds_run_nothing_and_a_changed_file_reruns_from_its_copy() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copied\nCOPY b.txt /b.txt\nRUN echo last > /last\n",
                    env.base()
                ),
            ),
            ("a.txt", "one\n"),
            ("b.txt", "two\n"),
        ],
    );
    let meta = ctx.path().join("meta.json");
    let args = ["--metadata-file", meta.to_str().unwrap()];
    env.build_ok(ctx.path(), &args);
    assert_eq!(json(&meta)["berth.steps"]["run"], 5);
    let first = json(&meta)["containerimage.digest"].clone();

    // No change: nothing runs, and the image is byte-identical.
    let log = env.build_ok(ctx.path(), &args);
    assert_eq!(
        json(&meta)["berth.steps"],
        serde_json::json!({"run": 0, "cached": 5}),
        "{log}"
    );
    assert_eq!(json(&meta)["containerimage.digest"], first);

    // Change a.txt: the first RUN stays cached; its COPY and everything after re-run.
    std::fs::write(ctx.path().join("a.txt"), "changed\n").unwrap();
    let log = env.build_ok(ctx.path(), &args);
    assert_eq!(
        json(&meta)["berth.steps"],
        serde_json::json!({"run": 4, "cached": 1}),
        "{log}"
    );
    let step_of = |needle: &str| -> String {
        let line = log
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {log}"));
        line.split_whitespace().next().unwrap().to_owned()
    };
    let run_first = step_of("RUN echo first");
    assert!(log.contains(&format!("{run_first} CACHED")), "{log}");
    let copy_a = step_of("COPY a.txt");
    assert!(
        log.contains(&format!("{copy_a} not cached: a.txt changed")),
        "{log}"
    );
    let run_cat = step_of("RUN cat /a.txt");
    assert!(
        log.contains(&format!("{run_cat} not cached: an earlier step changed")),
        "{log}"
    );

    // A touched but unchanged file does not invalidate anything.
    let f = std::fs::File::options()
        .append(true)
        .open(ctx.path().join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    env.build_ok(ctx.path(), &args);
    assert_eq!(json(&meta)["berth.steps"]["run"], 0);

    // --no-cache runs everything again and says why.
    let log = env.build_ok(
        ctx.path(),
        &["--no-cache", "--metadata-file", meta.to_str().unwrap()],
    );
    assert_eq!(json(&meta)["berth.steps"]["run"], 5);
    assert!(log.contains("not cached: --no-cache"), "{log}");
}

/// The store holds no half-written state after a failed build: nothing under tmp/ or work/,
/// nothing of it mounted.
#[track_caller]
fn assert_store_clean(store: &Path) {
    for d in ["tmp", "work"] {
        let left: Vec<_> = std::fs::read_dir(store.join(d))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "{d}/ not empty after a failed build: {left:?}"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(store.to_str().unwrap()),
        "a mount under the store was left behind"
    );
}

#[test]
fn failures_are_clear_and_leave_the_store_consistent() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    let base = env.base();
    let cases: Vec<(String, Vec<&str>, Vec<String>)> = vec![
        (
            format!("FROM {base}\nRUN echo preparing && echo 'something broke' >&2 && exit 3\n"),
            vec![],
            vec![
                "RUN echo preparing".into(),
                "exit code 3".into(),
                "something broke".into(),
                "preparing".into(),
            ],
        ),
        (
            format!("FROM {}/library/nosuchimage:1\nRUN true\n", env.server.addr),
            vec![],
            vec!["nosuchimage".into()],
        ),
        (
            format!("FROM {base}\nCOPY --from=nosuchstage /x /x\n"),
            vec![],
            vec!["nosuchstage".into()],
        ),
        (
            format!("FROM {base} AS one\nRUN true\n"),
            vec!["--target", "two"],
            vec!["target stage \"two\" could not be found".into()],
        ),
        (
            format!("FROM {base}\nCOPY ../outside /x\n"),
            vec![],
            vec!["../outside".into(), "outside the build context".into()],
        ),
        (
            format!("FROM {base}\nCOPY missing.txt /x\n"),
            vec![],
            vec![
                "missing.txt".into(),
                "not found in the build context".into(),
            ],
        ),
        (
            format!("FROM {base}\nRUN true\n"),
            vec!["--runtime", "/nonexistent/runc"],
            vec!["no working OCI runtime".into()],
        ),
        (
            format!("FROM {base}\nUSER nobody\nRUN true\n"),
            vec![],
            vec!["unable to find user nobody".into()],
        ),
    ];
    for (dockerfile, args, expected) in cases {
        write(ctx.path(), &[("Dockerfile", &dockerfile)]);
        let out = env.build(ctx.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{dockerfile}\n{stderr}");
        for e in &expected {
            assert!(
                stderr.contains(e.as_str()),
                "{dockerfile}: expected {e:?} in:\n{stderr}"
            );
        }
        assert_store_clean(env.store.path());
    }
    // A Dockerfile that does not parse names the offending line.
    write(ctx.path(), &[("Dockerfile", "FROM busybox\nRUNN true\n")]);
    let out = env.build(ctx.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUNN"));
}

/// The config fields both builders must agree on.
fn comparable_config(cfg: &serde_json::Value) -> serde_json::Value {
    let c = &cfg["config"];
    let mut env: Vec<String> = c["Env"]
        .as_array()
        .map(|a| a.iter().map(|e| e.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    env.sort();
    let mut labels = c["Labels"].clone();
    // buildah signs its images with its version.
    if let Some(m) = labels.as_object_mut() {
        m.remove("io.buildah.version");
    }
    serde_json::json!({
        "User": c["User"].as_str().unwrap_or(""),
        "Env": env,
        "Cmd": c["Cmd"],
        "Entrypoint": c["Entrypoint"],
        "WorkingDir": c["WorkingDir"].as_str().unwrap_or(""),
        "ExposedPorts": c["ExposedPorts"],
        "Labels": labels,
        "Volumes": c["Volumes"],
        "StopSignal": c["StopSignal"],
    })
}

#[test]
fn buildah_builds_the_same_trees_and_configs() {
    let env = Env::new();
    let podman = Podman::new(&env.server.addr);
    let ctx = tempfile::tempdir().unwrap();
    full_context(ctx.path());
    let dockerfile = compatible(FULL);
    assert!(!dockerfile.contains("<<"), "{dockerfile}");
    write(
        ctx.path(),
        &[("Dockerfile", &dockerfile), ("notes.txt", "notes for \n")],
    );
    let out = tempfile::tempdir().unwrap();
    let ours = out.path().join("berth");
    let base = format!("BASE={}", env.base());
    env.build_ok(
        ctx.path(),
        &[
            "--build-arg",
            &base,
            "-o",
            &format!("type=oci,dest={},tar=false", ours.display()),
        ],
    );
    // buildah bud from the same registry, then pushed to an OCI layout to read it.
    let theirs = out.path().join("buildah");
    let bud = podman
        .tool("buildah")
        .args([
            "bud",
            "--isolation",
            "oci",
            "--layers=false",
            "--format",
            "oci",
            "--build-arg",
            &base,
            "-t",
            "localhost/cmp:1",
        ])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        bud.status.success(),
        "buildah bud: {}",
        String::from_utf8_lossy(&bud.stderr)
    );
    let push = podman
        .tool("buildah")
        .args(["push", "localhost/cmp:1"])
        .arg(format!("oci:{}:latest", theirs.display()))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "buildah push: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    let (a, b) = (&images(&ours)[""], &images(&theirs)[""]);
    let (ta, tb) = (flatten(&ours, a), flatten(&theirs, b));
    // buildah 1.28 leaves the empty mount points of its RUN sandbox in the image; BuildKit
    // and berth remove the ones the image did not have.
    const BUILDAH_STUBS: [&str; 7] = [
        "dev",
        "proc",
        "sys",
        "run",
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
    ];
    let mut diffs = Vec::new();
    for k in ta
        .keys()
        .chain(tb.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (ta.get(k), tb.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (None, Some(y)) if BUILDAH_STUBS.contains(&k.as_str()) && y.data.is_empty() => {}
            (x, y) => diffs.push(format!("{k}: berth {x:?} / buildah {y:?}")),
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    let ca = json(&blob(&ours, a["config"]["digest"].as_str().unwrap()));
    let cb = json(&blob(&theirs, b["config"]["digest"].as_str().unwrap()));
    assert_eq!(comparable_config(&ca), comparable_config(&cb));
}

/// Every `RUN --mount` type, as BuildKit gives it.
const MOUNTS: &str = r#"ARG BASE
FROM ${BASE} AS tools
RUN mkdir -p /opt/tool && echo tool-v1 > /opt/tool/version

FROM ${BASE}
WORKDIR /work
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /secret-len && stat -c %a /run/secrets/token > /secret-mode
RUN --mount=type=secret,id=token,env=TOKEN echo ${#TOKEN} > /secret-env-len
RUN --mount=type=secret,id=absent ls /run/secrets > /secrets-listing 2>&1 || echo none > /secrets-listing
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /ssh-sock
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/y && ls /scratch > /tmpfs-listing
RUN --mount=type=bind,source=src,target=/src cat /src/a.txt > /from-bind && ls /src > /bind-listing
RUN --mount=type=bind,from=tools,source=/opt/tool,target=tool cat /work/tool/version > /from-stage
RUN --mount=type=bind,target=/ctx,rw touch /ctx/scribble && ls -a /ctx > /ctx-listing
RUN --mount=type=cache,target=/root/.cache,id=counter echo run >> /root/.cache/log && wc -l < /root/.cache/log > /cache-count
"#;

#[test]
fn run_mounts_bind_cache_tmpfs_secret_and_ssh() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            ("Dockerfile", MOUNTS),
            ("src/a.txt", "from the context\n"),
            ("src/b.txt", "b\n"),
            ("ignored.txt", "never sent\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret_value = "s3cr3t-value-7f1d";
    let secret_file = secrets.path().join("token");
    std::fs::write(&secret_file, secret_value).unwrap();
    let agent = secrets.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("img");
    let base = format!("BASE={}", env.base());
    let secret = format!("id=token,src={}", secret_file.display());
    let ssh = format!("default={}", agent.display());
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    let args = [
        "--build-arg",
        base.as_str(),
        "--secret",
        secret.as_str(),
        "--ssh",
        ssh.as_str(),
        "-o",
        dest.as_str(),
    ];
    env.build_ok(ctx.path(), &args);
    let imgs = images(&layout);
    let m = &imgs[""];
    let tree = flatten(&layout, m);
    // bind from the context (read-only, .dockerignore applied), from a stage, and rw.
    assert_eq!(text(&tree, "from-bind"), "from the context\n");
    assert_eq!(text(&tree, "bind-listing"), "a.txt\nb.txt\n");
    assert_eq!(text(&tree, "from-stage"), "tool-v1\n");
    let listing = text(&tree, "ctx-listing");
    assert!(
        listing.contains("Dockerfile") && listing.contains("scribble"),
        "{listing}"
    );
    assert!(!listing.contains("ignored.txt"), "{listing}");
    assert!(
        !ctx.path().join("scribble").exists(),
        "rw writes reached the context"
    );
    // cache: kept outside the image.
    assert_eq!(text(&tree, "cache-count").trim(), "1");
    // secret: a 0400 file at /run/secrets/<id>, and an environment variable with env=; a
    // secret that was not given and is not required is skipped.
    assert_eq!(text(&tree, "secret-len").trim(), "17");
    assert_eq!(text(&tree, "secret-mode"), "400\n");
    assert_eq!(text(&tree, "secret-env-len"), "17\n");
    assert_eq!(text(&tree, "secrets-listing"), "none\n");
    assert_eq!(text(&tree, "ssh-sock"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(text(&tree, "tmpfs-listing"), "y\n");
    // No mount point, no mounted content is left in the image.
    for gone in [
        "src",
        "ctx",
        "work/tool",
        "root/.cache",
        "run/secrets",
        "run/buildkit",
        "scratch",
    ] {
        assert!(!tree.contains_key(gone), "{gone} is in the image");
    }
    // The secret is nowhere in the image or the store (layers, configs, cache records).
    for node in tree.values() {
        assert!(
            !String::from_utf8_lossy(&node.data).contains(secret_value),
            "a layer holds the secret"
        );
    }
    let mut stack = vec![env.store.path().to_path_buf(), layout.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let bytes = std::fs::read(e.path()).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(secret_value),
                    "{} holds the secret",
                    e.path().display()
                );
            }
        }
    }

    // A changed bind-mounted file re-runs the RUN that mounts it, and says which file; a
    // changed secret value does not (BuildKit keys secrets by id, not content).
    std::fs::write(ctx.path().join("src/a.txt"), "changed\n").unwrap();
    std::fs::write(&secret_file, "another-value").unwrap();
    let layout2 = out.path().join("img2");
    let dest2 = format!("type=oci,dest={},tar=false", layout2.display());
    let mut args2 = args;
    args2[7] = dest2.as_str();
    let log = env.build_ok(ctx.path(), &args2);
    assert!(log.contains("src/a.txt changed"), "{log}");
    // The cache mount survived: the cache RUN ran again (its parent changed) and counted 2.
    let tree = flatten(&layout2, &images(&layout2)[""]);
    assert_eq!(text(&tree, "from-bind"), "changed\n");
    assert_eq!(text(&tree, "cache-count").trim(), "2");
    assert_eq!(
        text(&tree, "secret-len").trim(),
        "17",
        "the secret steps re-ran"
    );

    // A required secret that was not given stops the build, naming it.
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n",
                env.base()
            ),
        )],
    );
    let failed = env.build(ctx.path(), &[]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("secret \"npmrc\"") && err.contains("--secret"),
        "{err}"
    );
}

/// A loopback HTTP server for `ADD <url>`: files by path with an ETag each, answering
/// `If-None-Match` with 304, and a log of (path, conditional?) requests.
struct Files {
    addr: String,
    files: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
}

impl Files {
    fn start() -> Files {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let files = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, Vec<u8>>::new()));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (f2, l2) = (files.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let target = request.split(' ').nth(1).unwrap_or("/");
                // git's dumb HTTP protocol asks `info/refs?service=…` first: a file answers.
                let path = target.split('?').next().unwrap_or("/").to_owned();
                let mut inm = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("if-none-match")
                    {
                        inm = Some(v.trim().to_owned());
                    }
                }
                l2.lock().unwrap().push((path.clone(), inm.is_some()));
                let body = f2.lock().unwrap().get(&path).cloned();
                let head = match &body {
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".to_owned(),
                    Some(b) => {
                        let etag = format!(
                            "\"{:x}\"",
                            b.iter()
                                .fold(7u64, |h, c| h.wrapping_mul(31).wrapping_add(u64::from(*c)))
                        );
                        if inm.as_deref() == Some(etag.as_str()) {
                            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n")
                        } else {
                            format!(
                                "HTTP/1.1 200 OK\r\nETag: {etag}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: {}\r\n",
                                b.len()
                            )
                        }
                    }
                };
                let _ = conn.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
                if head.starts_with("HTTP/1.1 200")
                    && let Some(b) = body
                {
                    let _ = conn.write_all(&b);
                }
            }
        });
        Files { addr, files, log }
    }

    fn put(&self, path: &str, body: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), body.to_vec());
    }

    /// Serves every file under `dir` at `prefix/<relative path>`.
    fn put_dir(&self, prefix: &str, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                    self.put(&format!("{prefix}/{rel}"), &std::fs::read(&p).unwrap());
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn take_log(&self) -> Vec<(String, bool)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn add_downloads_urls_checks_checksums_and_revalidates() {
    let env = Env::new();
    let http = Files::start();
    http.put("/dl/tool.txt", b"tool v1\n");
    let mut tgz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::default());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "inner.txt", &b"inner\n"[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    http.put("/dl/files.tar.gz", &tgz);
    let tool = http.url("/dl/tool.txt");
    let archive = http.url("/dl/files.tar.gz");
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\n\
                 ADD {tool} /opt/\n\
                 ADD --chmod=755 {tool} /opt/tool-exec\n\
                 ADD --checksum=sha256:{} {tool} /opt/checked.txt\n\
                 ADD {archive} /archives/\n\
                 ADD --unpack=true {archive} /unpacked/\n",
                env.base(),
                sha256_hex(b"tool v1\n"),
            ),
        )],
    );
    let out = tempfile::tempdir().unwrap();
    let build = |name: &str| {
        let layout = out.path().join(name);
        let log = env.build_ok(
            ctx.path(),
            &[
                "-o",
                &format!("type=oci,dest={},tar=false", layout.display()),
            ],
        );
        let tree = flatten(&layout, &images(&layout)[""]);
        (tree, log)
    };
    let (tree, _) = build("one");
    // As BuildKit: named after the URL, mode 0600 unless --chmod, archives kept whole unless
    // --unpack.
    let f = file(&tree, "opt/tool.txt");
    assert_eq!((f.data.as_slice(), f.mode), (&b"tool v1\n"[..], 0o600));
    assert_eq!(file(&tree, "opt/tool-exec").mode, 0o755);
    assert_eq!(text(&tree, "opt/checked.txt"), "tool v1\n");
    assert_eq!(file(&tree, "archives/files.tar.gz").data, tgz);
    assert_eq!(text(&tree, "unpacked/inner.txt"), "inner\n");
    // The checksum step found the content in the store: no request of its own.
    let first = http.take_log();
    let tool_requests = first.iter().filter(|(p, _)| p == "/dl/tool.txt").count();
    assert_eq!(tool_requests, 2, "{first:?}");

    // A rebuild revalidates with If-None-Match, gets 304s and runs nothing.
    let (_, log) = build("two");
    let second = http.take_log();
    assert!(
        !second.is_empty() && second.iter().all(|(_, conditional)| *conditional),
        "{second:?}"
    );
    assert_eq!(fs_cached(&log), 5, "{log}");

    // New content on the server: the ADDs of that URL run again and say why; the one pinned
    // by --checksum keeps the content it names (already in the store, as BuildKit does).
    http.put("/dl/tool.txt", b"tool v2\n");
    let (tree, log) = build("three");
    assert!(log.contains(&format!("download {tool} changed")), "{log}");
    assert_eq!(text(&tree, "opt/tool.txt"), "tool v2\n");
    assert_eq!(text(&tree, "opt/checked.txt"), "tool v1\n");

    // A checksum the download does not match, a missing file, a git repository, a checksum
    // on a local file and a URL in COPY are clear errors.
    for (dockerfile, expected) in [
        (
            format!(
                "ADD --checksum=sha256:{} {tool} /x",
                sha256_hex(b"tool v3\n")
            ),
            format!(
                "digest mismatch: --checksum=sha256:{}, downloaded sha256:{}",
                sha256_hex(b"tool v3\n"),
                sha256_hex(b"tool v2\n")
            ),
        ),
        (
            format!("ADD {} /x", http.url("/dl/missing")),
            "HTTP 404 Not Found".to_owned(),
        ),
        (
            format!("ADD {} /src", http.url("/missing.git#main")),
            "git ls-remote failed".to_owned(),
        ),
        (
            format!("ADD --checksum=sha256:{} Dockerfile /x", sha256_hex(b"")),
            "checksum can't be specified for non-HTTP(S) sources".to_owned(),
        ),
        (
            format!("COPY {tool} /x"),
            "source can't be a URL for COPY".to_owned(),
        ),
    ] {
        write(
            ctx.path(),
            &[(
                "Dockerfile",
                &format!("FROM {}\n{dockerfile}\n", env.base()),
            )],
        );
        let failed = env.build(ctx.path(), &[]);
        let err = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "{dockerfile}");
        assert!(err.contains(&expected), "{dockerfile}: {err}");
    }
}

#[test]
fn docker_and_oci_archives_load_and_run_in_podman() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nCOPY msg.txt /msg.txt\nRUN echo built >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
                    env.base()
                ),
            ),
            ("msg.txt", "hello from berth\n"),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let docker = out.path().join("docker.tar");
    let oci = out.path().join("oci.tar");
    env.build_ok(
        ctx.path(),
        &[
            "-t",
            "localhost/berth-demo:1",
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            "-o",
            &format!("type=oci,dest={}", oci.display()),
        ],
    );
    let podman = Podman::new(&env.server.addr);
    for (archive, reference) in [
        (&docker, "localhost/berth-demo:1"),
        (&oci, "localhost/berth-demo-oci:1"),
    ] {
        let loaded = podman
            .cmd()
            .args(["load", "-q", "-i"])
            .arg(archive)
            .output()
            .unwrap();
        assert!(
            loaded.status.success(),
            "podman load {}: {}",
            archive.display(),
            String::from_utf8_lossy(&loaded.stderr)
        );
        let stdout = String::from_utf8_lossy(&loaded.stdout).into_owned();
        // An OCI archive carries no name podman uses: tag what it loaded.
        let image = if archive == &oci {
            let id = stdout.trim().rsplit(' ').next().unwrap().to_owned();
            let tagged = podman.cmd().args(["tag", &id, reference]).output().unwrap();
            assert!(
                tagged.status.success(),
                "{}",
                String::from_utf8_lossy(&tagged.stderr)
            );
            reference.to_owned()
        } else {
            assert!(stdout.contains(reference), "{stdout}");
            reference.to_owned()
        };
        let ran = podman.cmd().args(["run", "--rm", &image]).output().unwrap();
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "hello from berth\nbuilt\n",
            "{}",
            archive.display()
        );
    }
}

#[test]
fn copy_link_layers_are_reused_when_earlier_steps_change() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nARG V\nRUN echo $V > /v\nCOPY --link --chown=app:app app.txt /srv/\nRUN ls -n /srv/app.txt | awk '{{print $3\":\"$4}}' > /owner\n",
                    env.base()
                ),
            ),
            ("app.txt", "linked\n"),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let build = |v: &str, name: &str| {
        let layout = out.path().join(name);
        let log = env.build_ok(
            ctx.path(),
            &[
                "--build-arg",
                &format!("V={v}"),
                "-o",
                &format!("type=oci,dest={},tar=false", layout.display()),
            ],
        );
        let m = images(&layout)[""].clone();
        (flatten(&layout, &m), m, log)
    };
    let (tree1, m1, _) = build("1", "one");
    assert_eq!(text(&tree1, "srv/app.txt"), "linked\n");
    assert_eq!(text(&tree1, "owner"), "1000:1000\n");
    // The RUN before it changed: the linked COPY is answered from the cache (same layer),
    // the RUN after it runs again.
    let (tree2, m2, log) = build("2", "two");
    assert_eq!(text(&tree2, "v"), "2\n");
    assert_eq!(text(&tree2, "srv/app.txt"), "linked\n");
    assert_eq!(text(&tree2, "owner"), "1000:1000\n");
    assert_eq!(fs_cached(&log), 1, "{log}");
    assert_eq!(m1["layers"][2]["digest"], m2["layers"][2]["digest"]);
    assert_ne!(m1["layers"][1]["digest"], m2["layers"][1]["digest"]);
}

/// `berth builder du --json` on the test's store.
fn du(env: &Env) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["builder", "du", "--json", "--store"])
        .arg(env.store.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn prune(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["builder", "prune", "--json", "--store"])
        .arg(env.store.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn prune_removes_garbage_then_least_recently_used_records() {
    let env = Env::new();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, d) in dirs.iter().enumerate() {
        write(
            d.path(),
            &[(
                "Dockerfile",
                &format!(
                    "FROM {}\nRUN --mount=type=cache,target=/c echo {i} > /c/n && head -c 2097152 /dev/urandom > /big{i}\n",
                    env.base()
                ),
            )],
        );
    }
    let (a, b) = (dirs[0].path(), dirs[1].path());
    let build = |dir: &Path| env.build_ok(dir, &[]);
    build(a);
    let after_a = du(&env);
    assert!(after_a["records"].as_u64().unwrap() >= 1, "{after_a}");
    assert_eq!(after_a["cacheMounts"], 1);

    // Garbage only: the image manifests and configs of finished builds go, no record does,
    // and a rebuild is still answered from the cache.
    let out = prune(&env, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"]["records"], 0, "{report}");
    assert!(
        report["removed"]["blobs"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert!(build(a).contains(" CACHED"));
    let size_a = du(&env)["bytes"].as_u64().unwrap();

    // B is built, then A is used again: B's record is the least recently used, and a limit
    // that holds A (and the base image) removes B's alone.
    build(b);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(build(a).contains(" CACHED"));
    let limit = (size_a + 512 * 1024).to_string();
    let out = prune(&env, &["--keep-storage", &limit]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"]["records"], 1, "{report}");
    assert!(report["remaining"]["bytes"].as_u64().unwrap() <= size_a + 512 * 1024);
    let log_a = build(a);
    assert!(!log_a.contains("not cached"), "{log_a}");
    let log_b = build(b);
    assert!(log_b.contains("not cached"), "{log_b}");

    // A prune while a build runs is refused; the build is unharmed.
    let slow = tempfile::tempdir().unwrap();
    write(
        slow.path(),
        &[("Dockerfile", &format!("FROM {}\nRUN sleep 3\n", env.base()))],
    );
    let mut running = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["build", "--progress", "quiet", "--store"])
        .arg(env.store.path())
        .arg(slow.path())
        .spawn()
        .unwrap();
    let work = env.store.path().join("work");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&work).unwrap().next().is_none() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the slow build never started its step"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let busy = prune(&env, &["--all"]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use by a running build"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert!(running.wait().unwrap().success());

    // --all empties the store; the next build starts from nothing and works.
    let out = prune(&env, &["--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = du(&env);
    for k in ["records", "blobs", "snapshots", "cacheMounts"] {
        assert_eq!(left[k], 0, "{k}: {left}");
    }
    let log = build(a);
    assert_eq!(fs_cached(&log), 0, "{log}");
}

#[test]
fn a_terminal_gets_the_live_display() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN echo from-the-step\n", env.base()),
        )],
    );
    // `script` (util-linux) gives the build a pseudo-terminal.
    let build = || {
        let cmd = format!(
            "{} build --store {} {}",
            env!("CARGO_BIN_EXE_berth"),
            env.store.path().display(),
            ctx.path().display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = build();
    // Spinner lines are redrawn in place (carriage return + erase line), each step ends as one
    // line with its time; the RUN's output shows beside it.
    assert!(first.contains("\r\x1b[2K"), "{first:?}");
    assert!(first.contains("[linux/amd64 stage-0 2/2]"), "{first:?}");
    assert!(first.contains("│ from-the-step"), "{first:?}");
    assert!(
        !first.contains("#2 "),
        "plain lines on a terminal: {first:?}"
    );
    let second = build();
    assert!(
        second.contains("RUN echo from-the-step CACHED"),
        "{second:?}"
    );
}

/// `git` in `dir`, failing the test when it fails.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn add_checks_out_git_repositories() {
    let env = Env::new();
    let http = Files::start();
    // A repository with a tag, served over git's dumb HTTP protocol (plain files).
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    write(r, &[("app/main.txt", "v1\n"), ("README", "readme 1\n")]);
    git(r, &["add", "."]);
    git(r, &["commit", "-q", "-m", "one"]);
    git(r, &["tag", "-a", "v1", "-m", "v1"]);
    let publish = || {
        git(r, &["update-server-info"]);
        http.put_dir("/repo.git", &r.join(".git"));
    };
    publish();
    let url = http.url("/repo.git");
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nADD {url}#v1:app /app/\nADD --keep-git-dir=true {url} /full/\nADD {url}?tag=v1&subdir=app /app-q/\n",
                env.base()
            ),
        )],
    );
    let out = tempfile::tempdir().unwrap();
    let build = |name: &str| {
        let layout = out.path().join(name);
        let log = env.build_ok(
            ctx.path(),
            &[
                "-o",
                &format!("type=oci,dest={},tar=false", layout.display()),
            ],
        );
        (flatten(&layout, &images(&layout)[""]), log)
    };
    let (tree, _) = build("one");
    // A tag's subdirectory, and the default branch with its .git kept.
    assert_eq!(text(&tree, "app/main.txt"), "v1\n");
    assert!(!tree.contains_key("app/README"));
    assert_eq!(text(&tree, "full/README"), "readme 1\n");
    assert!(tree.contains_key("full/.git/HEAD"), "--keep-git-dir");
    // BuildKit's query form names the same tag and subdirectory.
    assert_eq!(text(&tree, "app-q/main.txt"), "v1\n");
    assert!(!tree.contains_key("app-q/README"));
    assert!(!tree.keys().any(|k| k.starts_with("app/.git")));

    // Nothing moved: the three steps come from the cache.
    let (_, log) = build("two");
    assert_eq!(fs_cached(&log), 3, "{log}");

    // A new commit on main: the branch step runs again and says why; the tag step before it
    // does not (the one after it runs again: an earlier step changed).
    write(r, &[("README", "readme 2\n"), ("app/main.txt", "v2\n")]);
    git(r, &["commit", "-q", "-am", "two"]);
    publish();
    let (tree, log) = build("three");
    assert_eq!(text(&tree, "app/main.txt"), "v1\n");
    assert_eq!(text(&tree, "full/README"), "readme 2\n");
    assert_eq!(fs_cached(&log), 1, "{log}");
    assert!(log.contains(&format!("git {url} changed")), "{log}");

    // --checksum pins the commit a reference must be at.
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nADD --checksum=0000000 {url}#main /x/\n",
                env.base()
            ),
        )],
    );
    let failed = env.build(ctx.path(), &[]);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        err.contains("--checksum=0000000 but the reference is at commit"),
        "{err}"
    );

    // The checkouts (v1; main at each commit with .git) stay in the store until pruned.
    assert_eq!(du(&env)["gitCheckouts"], 3);
    let out = prune(&env, &["--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(du(&env)["gitCheckouts"], 0);
}

/// GET a registry path with curl: the JSON it returns.
fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let url = server.url(path);
    let out = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `--sbom` and `--provenance=mode=max` on a two-platform push: each platform manifest gets an
/// SBOM and a provenance referrer and the index gains nothing; the SBOM validates against
/// CycloneDX 1.6 (cyclonedx-python-lib) and lists the package the image holds; the provenance
/// validates as an in-toto v1 statement with an SLSA v1 predicate (in-toto-attestation) and
/// names the Dockerfile, the base image's digest, the build argument and the git commit;
/// `berth copy` carries both.
#[test]
fn sbom_and_provenance_are_referrers_of_each_platform() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nARG VERSION\nCOPY METADATA /usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA\n",
                    env.base()
                ),
            ),
            (
                "METADATA",
                "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n",
            ),
        ],
    );
    git(ctx.path(), &["init", "-q"]);
    git(ctx.path(), &["add", "."]);
    git(ctx.path(), &["commit", "-qm", "init"]);
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(ctx.path())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    // Without a registry output there is nowhere to attach them: a usage error.
    let out = env.build(ctx.path(), &["--sbom"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("registry output"));

    let reference = format!("{}/demo/attest:1", env.server.addr);
    env.build_ok(
        ctx.path(),
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &reference,
            "--push",
            "--sbom",
            "--provenance=mode=max",
            "--build-arg",
            "VERSION=1.2",
        ],
    );
    let index = get_json(&env.server, "/v2/demo/attest/manifests/1");
    let platforms = index["manifests"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "nothing but the platforms: {index}");
    let base_digests: Vec<String> = {
        let base = get_json(&env.server, "/v2/library/busybox/manifests/latest");
        base["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    for p in platforms {
        let digest = p["digest"].as_str().unwrap();
        let listed = get_json(&env.server, &format!("/v2/demo/attest/referrers/{digest}"));
        let mut kinds: BTreeMap<String, String> = BTreeMap::new();
        for m in listed["manifests"].as_array().unwrap() {
            kinds.insert(
                m["artifactType"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            );
        }
        assert_eq!(
            kinds.keys().collect::<Vec<_>>(),
            [
                "application/vnd.cyclonedx+json",
                "application/vnd.in-toto+json"
            ],
            "{listed}"
        );
        let doc = |artifact: &str| -> (serde_json::Value, PathBuf) {
            let m = get_json(
                &env.server,
                &format!("/v2/demo/attest/manifests/{}", kinds[artifact]),
            );
            assert_eq!(m["subject"]["digest"], digest);
            let layer = m["layers"][0]["digest"].as_str().unwrap();
            let body = get_json(&env.server, &format!("/v2/demo/attest/blobs/{layer}"));
            let path = dir.path().join(format!("{}.json", &layer[7..19]));
            std::fs::write(&path, serde_json::to_vec(&body).unwrap()).unwrap();
            (body, path)
        };
        let (bom, bom_path) = doc("application/vnd.cyclonedx+json");
        let names: Vec<&str> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(names.contains(&"requests"), "{bom}");
        let (prov, prov_path) = doc("application/vnd.in-toto+json");
        for (script, path) in [
            ("sbom_validate.py", &bom_path),
            ("attest_validate.py", &prov_path),
        ] {
            let out = Command::new(common::python())
                .arg(common::workspace().join("crates/berth/tests").join(script))
                .arg(path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(prov["subject"][0]["digest"]["sha256"], digest[7..]);
        let def = &prov["predicate"]["buildDefinition"];
        assert_eq!(def["externalParameters"]["buildArgs"]["VERSION"], "1.2");
        assert_eq!(def["externalParameters"]["dockerfile"], "Dockerfile");
        let deps = def["resolvedDependencies"].as_array().unwrap();
        let base = deps
            .iter()
            .find(|d| d["uri"] == format!("pkg:docker/{}", env.base()))
            .unwrap_or_else(|| panic!("no base image: {deps:?}"));
        let base_digest = format!("sha256:{}", base["digest"]["sha256"].as_str().unwrap());
        assert!(base_digests.contains(&base_digest), "{base_digest}");
        assert!(
            deps.iter()
                .any(|d| d["digest"]["gitCommit"] == head.as_str()),
            "{deps:?}"
        );
    }
    // Copied with the image.
    let copy = format!("{}/demo/attest-copy:1", env.server.addr);
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["copy", "--progress", "quiet", &reference, &copy])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = platforms[0]["digest"].as_str().unwrap();
    assert_eq!(
        get_json(
            &env.server,
            &format!("/v2/demo/attest-copy/referrers/{digest}")
        )["manifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Reproducible builds: the same context built for two platforms into two empty stores (two CI
/// runners) with `SOURCE_DATE_EPOCH` gives the same index digest and the same platform
/// manifests, RUN steps included (file times clamped to the epoch, timestamps in the config
/// and history from it).
#[test]
fn two_empty_stores_build_identical_multi_platform_images() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nCOPY a.txt /a.txt\nRUN mkdir -p /out && cat /a.txt > /out/copied && touch /out/when\nLABEL v=1\n",
                    env.base()
                ),
            ),
            ("a.txt", "one\n"),
        ],
    );
    let build = |store: &Path| -> serde_json::Value {
        let meta = store.join("meta.json");
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["build", "--progress", "plain", "--store"])
            .arg(store.join("store"))
            .args(["--platform", "linux/amd64,linux/arm64", "--metadata-file"])
            .arg(&meta)
            .arg(ctx.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&meta)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (build(a.path()), build(b.path()));
    assert_eq!(first["berth.steps"]["run"], second["berth.steps"]["run"]);
    assert!(first["berth.steps"]["run"].as_u64().unwrap() >= 2);
    assert_eq!(
        first["containerimage.digest"], second["containerimage.digest"],
        "{first}\n{second}"
    );
}

/// Every step line says CACHED or why not, config-only steps and FROM included: on a first
/// build the config steps after a step that ran name it; a rebuild is uniformly CACHED.
#[test]
fn every_step_says_cached_or_why_not() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nENV A=1\nCOPY f /f\nLABEL x=y\nEXPOSE 80\nCMD [\"/f\"]\n",
            ),
            ("f", "hi\n"),
        ],
    );
    let verdicts = |log: &str| -> Vec<(String, String)> {
        log.lines()
            .filter_map(|l| l.split_once(" [").map(|(id, _)| id.to_owned()))
            .map(|id| {
                let verdict = log
                    .lines()
                    .find_map(|l| {
                        let rest = l.strip_prefix(&format!("{id} "))?;
                        (rest == "CACHED" || rest.starts_with("not cached: "))
                            .then(|| rest.to_owned())
                    })
                    .unwrap_or_else(|| panic!("{id} says neither: {log}"));
                (id, verdict)
            })
            .collect()
    };
    let first = verdicts(&env.build_ok(ctx.path(), &[]));
    let said: Vec<&str> = first.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        said,
        [
            "CACHED",
            "CACHED",
            "not cached: not built before",
            "not cached: step #3 before it ran",
            "not cached: step #3 before it ran",
            "not cached: step #3 before it ran",
        ]
    );
    let again = verdicts(&env.build_ok(ctx.path(), &[]));
    assert_eq!(again.len(), 6);
    assert!(again.iter().all(|(_, v)| v == "CACHED"), "{again:?}");
}

/// A client of the SSH agent protocol (list identities: request 11, answer 12), compiled by
/// Debian's Go as a static amd64 binary: what RUN --mount=type=ssh sees, from inside the
/// container.
fn agent_lister(dir: &Path) -> PathBuf {
    let src = dir.join("lister");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("go.mod"), "module lister\n\ngo 1.19\n").unwrap();
    std::fs::write(
        src.join("main.go"),
        r#"package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	c.Write([]byte{0, 0, 0, 1, 11})
	var n uint32
	binary.Read(c, binary.BigEndian, &n)
	buf := make([]byte, n)
	io.ReadFull(c, buf)
	if len(buf) < 5 || buf[0] != 12 {
		fmt.Println("not an identities answer")
		os.Exit(1)
	}
	p := 5
	str := func() []byte {
		l := int(binary.BigEndian.Uint32(buf[p : p+4]))
		s := buf[p+4 : p+4+l]
		p += 4 + l
		return s
	}
	for i := 0; i < int(binary.BigEndian.Uint32(buf[1:5])); i++ {
		str()
		fmt.Println(string(str()))
	}
}
"#,
    )
    .unwrap();
    let out_path = dir.join("agent-list");
    let out = Command::new("/usr/bin/go")
        .args(["build", "-o"])
        .arg(&out_path)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .env("GOARCH", "amd64")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOCACHE", common::fixtures_dir().join("go-cache"))
        .env("GOPATH", dir.join("gopath"))
        .output()
        .unwrap_or_else(|e| panic!("go: {e} (scripts/test.sh installs golang-go)"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_path
}

/// `--ssh default=KEYFILE`: berth starts an ssh-agent holding the key, RUN's ssh mount reaches
/// it (the key's comment listed from inside the container), and the agent is gone after the
/// build; a key with a passphrase is a clear usage error.
#[test]
fn ssh_key_files_are_served_by_an_agent_berth_starts() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    std::fs::copy(agent_lister(tools.path()), ctx.path().join("agent-list")).unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nCOPY agent-list /agent-list\nRUN --mount=type=ssh /agent-list > /keys\n",
                env.base()
            ),
        )],
    );
    let keys = tempfile::tempdir().unwrap();
    let keygen = |name: &str, pass: &str| {
        let path = keys.path().join(name);
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                pass,
                "-C",
                &format!("{name}-comment"),
                "-f",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    };
    let plain = keygen("plain", "");
    let locked = keygen("locked", "a passphrase");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("img");
    let ssh = format!("default={}", plain.display());
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    let log = env.build_ok(
        ctx.path(),
        &["--platform", "linux/amd64", "--ssh", &ssh, "-o", &dest],
    );
    let tree = flatten(&layout, &images(&layout)[""]);
    assert_eq!(text(&tree, "keys"), "plain-comment\n", "{log}");
    // The agent went with the build: no ssh-agent of berth's is left.
    let left = Command::new("pgrep")
        .args(["-f", "berth-ssh-"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );

    let ssh = format!("default={}", locked.display());
    let failed = env.build(ctx.path(), &["--ssh", &ssh, "--no-cache"]);
    assert_eq!(failed.status.code(), Some(2));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("locked") && err.contains("passphrase"),
        "{err}"
    );
}

/// Two empty stores stand in for two CI runners. Runner A builds with `--cache-to` into `berth
/// serve` (mode=max, image-manifest=true), into the Debian `docker-registry` and into a local
/// directory; runner B builds the same context from an empty store with `--cache-from` and runs
/// no step, giving the same image; a one-file change on B re-runs only from its COPY; the cache
/// artifact is read by skopeo (`inspect`, `copy`); a cache source that is missing warns and the
/// build goes on.
#[test]
fn a_registry_cache_carries_steps_between_empty_stores() {
    let env = Env::new();
    let reference = common::Reference::start();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copied\nCOPY b.txt /b.txt\nRUN echo last > /last\n",
                    env.base()
                ),
            ),
            ("a.txt", "one\n"),
            ("b.txt", "two\n"),
        ],
    );
    let run = |store: &Path, extra: &[&str]| -> (serde_json::Value, String) {
        let meta = store.join("meta.json");
        let mut args = vec!["--metadata-file", meta.to_str().unwrap()];
        args.extend_from_slice(extra);
        let log = build_in_ok(&store.join("store"), ctx.path(), &args);
        (json(&meta), log)
    };
    let cache = format!("{}/cache/app:buildcache", env.server.addr);
    let peer_cache = format!("{}/cache/app:buildcache", reference.addr);
    let local = tempfile::tempdir().unwrap();
    let to = |r: &str| format!("type=registry,ref={r},mode=max,image-manifest=true");
    let (a_store, b_store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, log) = run(
        a_store.path(),
        &[
            "--cache-to",
            &to(&cache),
            "--cache-to",
            &to(&peer_cache),
            "--cache-to",
            &format!("type=local,dest={}", local.path().display()),
        ],
    );
    assert_eq!(a["berth.steps"]["run"], 5, "{log}");
    assert_eq!(log.matches("cache exported to ").count(), 3, "{log}");

    // Runner B, empty store: every step from the cache, the same image.
    let from = format!("type=registry,ref={cache}");
    let (b, log) = run(b_store.path(), &["--cache-from", &from]);
    assert_eq!(
        b["berth.steps"],
        serde_json::json!({"run": 0, "cached": 5}),
        "{log}"
    );
    assert_eq!(b["containerimage.digest"], a["containerimage.digest"]);
    // A one-file change on B: its COPY and what follows run, the rest is cached.
    std::fs::write(ctx.path().join("b.txt"), "changed\n").unwrap();
    let (b2, log) = run(b_store.path(), &["--cache-from", &from]);
    assert_eq!(
        b2["berth.steps"],
        serde_json::json!({"run": 2, "cached": 3}),
        "{log}"
    );
    assert!(log.contains("not cached: b.txt changed"), "{log}");
    std::fs::write(ctx.path().join("b.txt"), "two\n").unwrap();

    // The other registry and the local directory serve the same.
    for source in [
        format!("type=registry,ref={peer_cache}"),
        format!("type=local,src={}", local.path().display()),
    ] {
        let store = tempfile::tempdir().unwrap();
        let (c, log) = run(store.path(), &["--cache-from", &source]);
        assert_eq!(c["berth.steps"]["run"], 0, "{source}: {log}");
        assert_eq!(c["containerimage.digest"], a["containerimage.digest"]);
    }

    // A fresh store with a cache source that lacks a step says so.
    let store = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    write(
        other.path(),
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN echo elsewhere > /x\n", env.base()),
        )],
    );
    let log = build_in_ok(store.path(), other.path(), &["--cache-from", &from]);
    assert!(
        log.contains(&format!("not cached: not in cache source {cache}")),
        "{log}"
    );

    // A missing cache source warns; the build runs every step.
    let store = tempfile::tempdir().unwrap();
    let missing = format!("type=registry,ref={}/cache/none:x", env.server.addr);
    let (m, log) = run(store.path(), &["--cache-from", &missing]);
    assert_eq!(m["berth.steps"]["run"], 5);
    assert!(log.contains("warning: cache source"), "{log}");

    // skopeo reads the cache artifact as any image manifest.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{cache}"))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let raw: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.berth.build-cache.config.v1+json"
    );
    let copied = tempfile::tempdir().unwrap();
    let copy = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{cache}"))
        .arg(format!("oci:{}:c", copied.path().display()))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
}

/// `cache-mounts=ID`: runner A's `RUN --mount=type=cache,id=pkgs` contents travel in the
/// exported cache, and runner B's RUN (a miss: another build argument) sees them; ids not named
/// stay home.
#[test]
fn cache_mounts_travel_with_the_exported_cache() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nARG V\nRUN --mount=type=cache,id=pkgs,target=/c --mount=type=cache,id=local,target=/l echo $V >> /c/log && echo $V >> /l/log && cat /c/log > /seen && cat /l/log > /seen-local\n",
                env.base()
            ),
        )],
    );
    let cache = format!("{}/cache/mounts:buildcache", env.server.addr);
    let build = |store: &Path, v: &str, cache: [&str; 2], out: &Path| -> String {
        let dest = format!("type=oci,dest={},tar=false", out.display());
        let arg = format!("V={v}");
        build_in_ok(
            store,
            ctx.path(),
            &["--build-arg", &arg, cache[0], cache[1], "-o", &dest],
        )
    };
    let (a, b, outs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let to = format!("type=registry,ref={cache},mode=max,cache-mounts=pkgs");
    build(a.path(), "1", ["--cache-to", &to], &outs.path().join("a"));
    let from = format!("type=registry,ref={cache}");
    let log = build(
        b.path(),
        "2",
        ["--cache-from", &from],
        &outs.path().join("b"),
    );
    let layout = outs.path().join("b");
    let tree = flatten(&layout, &images(&layout)[""]);
    assert_eq!(text(&tree, "seen"), "1\n2\n", "{log}");
    assert_eq!(text(&tree, "seen-local"), "2\n", "{log}");
}

/// A user's view of berth for the rootless tests: berth copied where any user can run it, and
/// `setpriv` to run it as that user (created by scripts/test.sh).
struct AsUser {
    user: &'static str,
    uid: u32,
    gid: u32,
    dir: tempfile::TempDir,
}

impl AsUser {
    fn new(user: &'static str) -> AsUser {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, user]).output().unwrap();
            assert!(
                out.status.success(),
                "user {user} is missing: scripts/test.sh creates it"
            );
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_berth"), dir.path().join("berth")).unwrap();
        for sub in ["home", "ctx"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::os::unix::fs::chown(dir.path().join("home"), Some(uid), Some(gid)).unwrap();
        AsUser {
            user,
            uid,
            gid,
            dir,
        }
    }

    /// The context directory, readable by the user.
    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    /// `berth ARGS…` as the user, in a home of its own, from the context directory.
    fn berth(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--"])
            .arg(self.dir.path().join("berth"))
            .args(args)
            .current_dir(self.ctx())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("BERTH_BUILD_ROOT")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

/// Rootless: a non-root user with subordinate id ranges builds the two-platform fixture — a RUN
/// that chowns to another user, replaces a directory (an opaque directory in the user
/// namespace's `user.overlay.*` xattrs), makes a setuid file and a fifo — into its own store
/// under its home, and gets the very image digest a root build of the same context gets; the
/// store's files belong to the user (container root), and `berth builder prune` empties it.
#[test]
fn a_user_with_subordinate_ids_builds_rootless_the_same_image_as_root() {
    let env = Env::new();
    let u = AsUser::new("berth-rootless");
    write(
        &u.ctx(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nARG TARGETARCH\n\
                     RUN mkdir -p /etc/d/sub && echo a > /etc/d/a && echo $TARGETARCH > /etc/d/sub/b && chown -R 65534:65534 /etc/d && mkfifo /fifo\n\
                     RUN rm -rf /etc/d && mkdir /etc/d && echo c > /etc/d/c && chmod 4755 /etc/d/c\n\
                     RUN test ! -e /etc/d/a && stat -c %u:%g /etc/d/c > /owner && uname -m > /arch\n\
                     COPY --chown=1234:4321 f /f\n",
                    env.base()
                ),
            ),
            ("f", "hi\n"),
        ],
    );
    for f in ["Dockerfile", "f"] {
        std::fs::set_permissions(u.ctx().join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let reference = format!("{}/rootless/app:1", env.server.addr);
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let out = u.berth(
        &[
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &reference,
            "--push",
            ".",
        ],
        &epoch,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rootless build failed:\n{log}");
    let rootless = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(rootless.starts_with("sha256:"), "{rootless}\n{log}");
    // The store is the user's, under its home, owned by it.
    let store = u.dir.path().join("home/.local/share/berth/build");
    let meta = std::fs::metadata(store.join("blobs")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (u.uid, u.gid));
    // Root builds the same context into an empty store: the same index digest.
    let root_store = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["build", "--progress", "quiet", "--store"])
        .arg(root_store.path())
        .args(["--platform", "linux/amd64,linux/arm64"])
        .arg(u.ctx())
        .envs(epoch)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), rootless);
    // What was pushed says the RUNs ran as root of the namespace, for each platform.
    let pulled = tempfile::tempdir().unwrap();
    let layout = pulled.path().join("img");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["pull", "--progress", "quiet", &reference])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(out.status.success());
    let imgs = images(&layout);
    for (platform, arch) in [("linux/amd64", "x86_64\n"), ("linux/arm64", "aarch64\n")] {
        let tree = flatten(&layout, &imgs[platform]);
        assert_eq!(text(&tree, "arch"), arch, "{platform}");
        assert_eq!(text(&tree, "owner"), "0:0\n", "{platform}");
        assert_eq!(text(&tree, "etc/d/c"), "c\n", "{platform}");
        assert!(!tree.contains_key("etc/d/a"), "{platform}");
    }
    // The user can empty its store (files of other container ids included).
    let out = u.berth(&["builder", "prune", "--all"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = u.berth(&["builder", "du", "--json"], &[]);
    let du: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(du["bytes"], 0, "{du}");
}

/// Rootless without subordinate ids: the build fails before doing anything, and the error
/// names the user, the missing ranges and the command that adds them.
#[test]
fn a_rootless_build_names_what_is_missing() {
    let u = AsUser::new("berth-nosubid");
    write(
        &u.ctx(),
        &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")],
    );
    for f in ["Dockerfile", "f"] {
        std::fs::set_permissions(u.ctx().join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = u.berth(&["build", "--progress", "plain", "."], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "berth build runs as user {} without root, in a user namespace, and that needs:",
            u.user
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "/etc/subuid and /etc/subgid have no subordinate id range for user berth-nosubid"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 berth-nosubid"
        ),
        "{err}"
    );
    // Nothing was started or written.
    assert!(!u.dir.path().join("home/.local").exists());
}

/// `rewrite-timestamp`, as BuildKit documents it: with `SOURCE_DATE_EPOCH`, no file a step wrote
/// carries a time after the epoch — berth's default, BuildKit's `rewrite-timestamp=true` — and
/// an output with `rewrite-timestamp=false` keeps the files' own times while the config still
/// takes the epoch; base layers are never rewritten; outputs that disagree are a usage error.
#[test]
fn rewrite_timestamp_clamps_build_layers_only_and_can_be_turned_off() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN touch /new\n", env.base()),
        )],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let build = |name: &str, attrs: &str| -> (Output, PathBuf) {
        let dest = out_dir.path().join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["build", "--progress", "plain", "--store"])
            .arg(env.store.path())
            .arg("-o")
            .arg(format!("type=oci,dest={},tar=false{attrs}", dest.display()))
            .arg(ctx.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        (out, dest)
    };
    // The mtime of /new in the image's last layer, the manifest and the config.
    let inspect = |layout: &Path| -> (u64, serde_json::Value, serde_json::Value) {
        let imgs = images(layout);
        let manifest = imgs[""].clone();
        let layers = manifest["layers"].as_array().unwrap();
        let last = layers.last().unwrap()["digest"].as_str().unwrap();
        let f = std::fs::File::open(blob(layout, last)).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let mtime = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_string_lossy().trim_end_matches('/') == "new")
            .map(|e| e.header().mtime().unwrap())
            .expect("/new in the last layer");
        let config = json(&blob(
            layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        (mtime, manifest, config)
    };
    let (out, clamped) = build("clamped", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, explicit) = build("explicit", ",rewrite-timestamp=true");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, kept) = build("kept", ",rewrite-timestamp=false");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (t_clamped, m_clamped, c_clamped) = inspect(&clamped);
    let (t_explicit, m_explicit, _) = inspect(&explicit);
    let (t_kept, m_kept, c_kept) = inspect(&kept);
    assert_eq!(t_clamped, 1_700_000_000);
    assert_eq!(t_explicit, 1_700_000_000);
    assert_eq!(m_clamped, m_explicit, "true is the default");
    assert!(
        t_kept > 1_700_000_000,
        "{t_kept}: the file's own time is kept"
    );
    for c in [&c_clamped, &c_kept] {
        assert_eq!(c["created"], "2023-11-14T22:13:20Z", "{c}");
    }
    // The base image's layers are the base image's, untouched, either way.
    let base_layers = m_clamped["layers"].as_array().unwrap().len() - 1;
    assert!(base_layers >= 1);
    assert_eq!(
        m_clamped["layers"].as_array().unwrap()[..base_layers],
        m_kept["layers"].as_array().unwrap()[..base_layers]
    );
    // Two outputs that disagree: a usage error, nothing built.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["build", "--progress", "plain", "--store"])
        .arg(env.store.path())
        .arg("-o")
        .arg(format!(
            "type=oci,dest={},rewrite-timestamp=true",
            out_dir.path().join("x.tar").display()
        ))
        .arg("-o")
        .arg(format!(
            "type=oci,dest={},rewrite-timestamp=false",
            out_dir.path().join("y.tar").display()
        ))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("rewrite-timestamp=true and rewrite-timestamp=false"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out_dir.path().join("x.tar").exists());
}
