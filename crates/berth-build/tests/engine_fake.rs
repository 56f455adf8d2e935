//! The engine's logic without root: a recording sandbox stands in for overlayfs and the OCI
//! runtime (a "mount" points the merged directory at the upper one; a "run" records the
//! container's spec and writes what the command would), so planning, the cache, COPY into the
//! rootfs, layer writing and image config assembly are checked on any machine.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_build::sandbox::{Exit, OverlayMount};
use berth_build::{BuildError, BuildOptions, Builder, Event, Progress, Registries, Sandbox, Store};
use berth_client::ClientError;
use berth_client::registry::RegistryImage;
use berth_oci::ImageRef;

/// What a container was started with: argv, env, cwd, uid.
type Run = (Vec<String>, Vec<String>, String, u32);

#[derive(Debug, Default)]
struct Fake {
    runs: Mutex<Vec<Run>>,
    mounts: Mutex<usize>,
}

impl Sandbox for Fake {
    fn mount_overlay(&self, m: &OverlayMount<'_>) -> Result<(), BuildError> {
        *self.mounts.lock().unwrap() += 1;
        if let Some((upper, _)) = m.upper {
            std::fs::remove_dir(m.target).unwrap();
            std::os::unix::fs::symlink(upper, m.target).unwrap();
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), BuildError> {
        if std::fs::symlink_metadata(target)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            std::fs::remove_file(target).unwrap();
            std::fs::create_dir(target).unwrap();
        }
        Ok(())
    }

    fn run(&self, bundle: &Path, _id: &str, output: &mut dyn Write) -> Result<Exit, BuildError> {
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let p = &spec["process"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        let argv = strings(&p["args"]);
        let root = PathBuf::from(spec["root"]["path"].as_str().unwrap());
        // The "command": write its last argument into /ran.
        std::fs::write(root.join("ran"), argv.last().unwrap()).unwrap();
        writeln!(output, "ran {}", argv.last().unwrap()).unwrap();
        self.runs.lock().unwrap().push((
            argv.clone(),
            strings(&p["env"]),
            p["cwd"].as_str().unwrap().to_owned(),
            u32::try_from(p["user"]["uid"].as_u64().unwrap()).unwrap(),
        ));
        let code = if argv.last().unwrap().contains("fail") {
            7
        } else {
            0
        };
        Ok(Exit::Code(code))
    }

    fn can_execute(&self, _arch: &str) -> Result<(), BuildError> {
        Ok(())
    }
}

#[derive(Debug)]
struct NoRegistries;

impl Registries for NoRegistries {
    fn open(&self, r: &ImageRef) -> Result<RegistryImage, ClientError> {
        Err(ClientError::NotFound(format!(
            "no registry in this test: {r}"
        )))
    }
}

#[derive(Default)]
struct Log(Mutex<Vec<Event>>);

impl Progress for Log {
    fn event(&self, e: Event) {
        self.0.lock().unwrap().push(e);
    }
}

fn setup() -> (
    tempfile::TempDir,
    Arc<Fake>,
    Builder,
    tokio::runtime::Runtime,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let fake = Arc::new(Fake::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let builder = Builder::new(
        store,
        fake.clone(),
        Arc::new(NoRegistries),
        rt.handle().clone(),
    )
    .unwrap();
    (dir, fake, builder, rt)
}

#[test]
fn scratch_build_runs_steps_once_then_answers_from_cache() {
    let (dir, fake, builder, _rt) = setup();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("conf")).unwrap();
    std::fs::write(ctx.join("conf/app.conf"), "x=1\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nENV A=1\nWORKDIR /w\nCOPY conf/ /etc/app/\nRUN build it\nLABEL l=v\nCMD [\"/app\"]\n",
    )
    .unwrap();
    let opts = BuildOptions::new(&ctx);
    let log = Log::default();
    let first = builder.build(&opts, &log).unwrap();
    assert_eq!((first.steps_run, first.steps_cached), (3, 0));
    let runs = fake.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1);
    let (argv, env, cwd, uid) = &runs[0];
    assert_eq!(argv, &["/bin/sh", "-c", "build it"]);
    assert!(env.contains(&"A=1".to_owned()), "{env:?}");
    assert_eq!((cwd.as_str(), *uid), ("/w", 0));

    // The image: three layers (WORKDIR, COPY, RUN), config from every instruction.
    let store = builder.store();
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&first.root, 1 << 20).unwrap()).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    let cfg_digest =
        berth_oci::Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&cfg_digest, 1 << 20).unwrap()).unwrap();
    assert_eq!(cfg["config"]["WorkingDir"], "/w");
    assert_eq!(cfg["config"]["Labels"]["l"], "v");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/app"]));
    assert_eq!(cfg["history"].as_array().unwrap().len(), 6);

    // Again: nothing runs, nothing is mounted, same digest.
    let mounts = *fake.mounts.lock().unwrap();
    let again = builder.build(&opts, &Log::default()).unwrap();
    assert_eq!((again.steps_run, again.steps_cached), (0, 3));
    assert_eq!(again.root, first.root);
    assert_eq!(*fake.mounts.lock().unwrap(), mounts);
    assert_eq!(fake.runs.lock().unwrap().len(), 1);

    // A changed input file re-runs its COPY and what follows, and says why.
    std::fs::write(ctx.join("conf/app.conf"), "x=2\n").unwrap();
    let log = Log::default();
    let third = builder.build(&opts, &log).unwrap();
    assert_eq!((third.steps_run, third.steps_cached), (2, 1));
    let reasons: Vec<String> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Miss { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    // The config-only steps after them (LABEL, CMD) name the first step that ran (#4, COPY).
    assert_eq!(
        reasons,
        [
            "conf/app.conf changed",
            "an earlier step changed",
            "step #4 before it ran",
            "step #4 before it ran"
        ]
    );
}

#[test]
fn a_failing_run_reports_step_code_and_output() {
    let (dir, _fake, builder, _rt) = setup();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nRUN please fail\n").unwrap();
    let err = builder
        .build(&BuildOptions::new(&ctx), &Log::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, BuildError::RunFailed { code: 7, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("RUN please fail") && msg.contains("ran please fail"),
        "{msg}"
    );
    // Nothing half-written is left in the store.
    for d in ["tmp", "work"] {
        let left = std::fs::read_dir(builder.store().root().join(d))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{d}/");
    }
}

/// Regression: two platforms producing the same layer at the same moment both commit its
/// snapshot; the one that loses the race must find the winner's complete snapshot (it once
/// failed with "a snapshot directory without its id file").
#[test]
fn platforms_committing_the_same_layer_at_once_agree() {
    for _ in 0..20 {
        let (dir, _fake, builder, _rt) = setup();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("same.txt"), "identical on every platform\n").unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY same.txt /\n").unwrap();
        let mut opts = BuildOptions::new(&ctx);
        opts.platforms = vec![
            berth_oci::Platform::parse("linux/amd64").unwrap(),
            berth_oci::Platform::parse("linux/arm64").unwrap(),
        ];
        let r = builder.build(&opts, &Log::default()).unwrap();
        assert_eq!(r.images.len(), 2);
        assert_eq!(r.steps_run, 2);
    }
}
