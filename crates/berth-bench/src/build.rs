//! `berth-bench build`: `berth build` vs `buildah bud` (Debian's buildah 1.28, overlay storage,
//! `--layers`, runc isolation — its fastest setup here) on the same Dockerfile, context, base
//! image registry and machine, in the same run. Four figures, each the median of `runs`:
//! a cold build (empty store/storage: the base image is fetched too), a no-op rebuild, a rebuild
//! after one copied file changed, and a cold two-platform build (linux/amd64 + linux/arm64, the
//! arm64 RUN steps under qemu-user). Prints berth's time, buildah's, and berth/buildah.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::start_berth;

/// The Dockerfile: a COPY of many files, RUN steps that read them, a late one-file COPY.
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         WORKDIR /src\n\
         COPY big/ /src/big/\n\
         RUN /bin/busybox mkdir -p /out && /bin/busybox cp -r /src/big /out/big && /bin/busybox du -s /out > /out/size\n\
         COPY app.txt /src/app.txt\n\
         RUN /bin/busybox cp /src/app.txt /out/app.txt && /bin/busybox wc -c /out/app.txt\n\
         CMD [\"cat\", \"/out/app.txt\"]\n"
    )
}

/// `files` files of `kib` KiB each under `big/` (text-like: compresses about 2:1).
fn make_context(dir: &Path, base: &str, files: usize, kib: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("big"))?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..files {
        let sub = dir.join("big").join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&sub)?;
        let mut content = String::with_capacity(kib * 1024);
        while content.len() < kib * 1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            content.push_str(&format!("{:08x} line {i}\n", x & 0xffff_ffff));
        }
        content.truncate(kib * 1024);
        std::fs::write(sub.join(format!("f{i:05}.txt")), content)?;
    }
    std::fs::write(dir.join("app.txt"), "version 0\n")?;
    std::fs::write(dir.join("Dockerfile"), dockerfile(base))?;
    Ok(())
}

/// Runs a command, failing with its output if it fails; returns wall seconds.
fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// buildah with a private overlay storage and the bench's registry marked insecure.
struct Buildah {
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new(registry: &str) -> anyhow::Result<Buildah> {
        let dir = tempfile::tempdir()?;
        let out = Command::new("scripts/podman-env.sh")
            .arg(dir.path().join("env"))
            .env("INSECURE_REGISTRY", registry)
            .output()
            .context("scripts/podman-env.sh (run from the workspace root)")?;
        if !out.status.success() {
            bail!("podman-env.sh: {}", String::from_utf8_lossy(&out.stderr));
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("CONTAINERS_") && *k != "CONTAINERS_STORAGE_CONF")
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        Ok(Buildah { env, dir })
    }

    /// `buildah bud` into the storage `name` (a fresh name: an empty storage).
    fn bud(&self, name: &str, ctx: &Path, extra: &[&str]) -> Command {
        let root = self.dir.path().join(name);
        let mut c = Command::new("buildah");
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--storage-driver", "overlay", "--root"])
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("runroot"))
            .args(["bud", "--isolation", "oci", "--layers", "--quiet"])
            .args(extra)
            .arg(ctx);
        c
    }

    fn cleanup(&self, name: &str) {
        let root = self.dir.path().join(name);
        let _ = Command::new("buildah")
            .args(["--storage-driver", "overlay", "--root"])
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("runroot"))
            .args(["rmi", "--all", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(root.join("root/overlay"))
            .stderr(Stdio::null())
            .status();
    }
}

pub fn bench(berth: &Path, runs: usize, files: usize, kib: usize) -> anyhow::Result<()> {
    let fixtures = PathBuf::from("target/fixtures");
    let st = Command::new("scripts/make-fixtures.sh")
        .arg(&fixtures)
        .status()
        .context("scripts/make-fixtures.sh (run from the workspace root)")?;
    if !st.success() {
        bail!("scripts/make-fixtures.sh failed");
    }
    let registry = start_berth(berth)?;
    let host = registry.base.trim_start_matches("http://").to_owned();
    let base = format!("{host}/library/busybox:latest");
    timed(
        Command::new(berth)
            .args(["copy", "--progress", "quiet"])
            .arg(format!("oci:{}:latest", fixtures.join("busybox").display()))
            .arg(&base),
    )?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    make_context(&ctx, &base, files, kib)?;
    let buildah = Buildah::new(&host)?;
    let berth_build = |store: &Path, extra: &[&str]| {
        let mut c = Command::new(berth);
        c.args(["build", "--progress", "quiet", "--store"])
            .arg(store)
            .args(extra)
            .arg(&ctx);
        c
    };
    let (mut b_cold, mut b_noop, mut b_change, mut b_multi) = (vec![], vec![], vec![], vec![]);
    let (mut h_cold, mut h_noop, mut h_change, mut h_multi) = (vec![], vec![], vec![], vec![]);
    let (mut b_remote, mut h_remote) = (vec![], vec![]);
    for i in 0..runs {
        // berth: cold, no-op, one file changed.
        std::fs::write(ctx.join("app.txt"), "version 0\n")?;
        let store = work.path().join(format!("berth-store-{i}"));
        b_cold.push(timed(&mut berth_build(&store, &[]))?);
        b_noop.push(timed(&mut berth_build(&store, &[]))?);
        std::fs::write(ctx.join("app.txt"), format!("version {}\n", i + 1))?;
        b_change.push(timed(&mut berth_build(&store, &[]))?);
        let _ = std::fs::remove_dir_all(&store);
        // buildah: the same sequence.
        std::fs::write(ctx.join("app.txt"), "version 0\n")?;
        let name = format!("single-{i}");
        h_cold.push(timed(&mut buildah.bud(&name, &ctx, &["-t", "bench:1"]))?);
        h_noop.push(timed(&mut buildah.bud(&name, &ctx, &["-t", "bench:1"]))?);
        std::fs::write(ctx.join("app.txt"), format!("version {}\n", i + 1))?;
        h_change.push(timed(&mut buildah.bud(&name, &ctx, &["-t", "bench:1"]))?);
        buildah.cleanup(&name);
        // Two platforms, cold.
        let store = work.path().join(format!("berth-multi-{i}"));
        b_multi.push(timed(&mut berth_build(
            &store,
            &["--platform", "linux/amd64,linux/arm64"],
        ))?);
        let _ = std::fs::remove_dir_all(&store);
        let name = format!("multi-{i}");
        h_multi.push(timed(&mut buildah.bud(
            &name,
            &ctx,
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "--manifest",
                "bench-multi",
            ],
        ))?);
        buildah.cleanup(&name);
        // A CI runner: an empty store warmed from a registry cache another runner exported.
        std::fs::write(ctx.join("app.txt"), format!("remote {i}\n"))?;
        let cache = format!("{host}/cache/bench:run{i}");
        let exporter = work.path().join(format!("berth-export-{i}"));
        timed(&mut berth_build(
            &exporter,
            &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
        ))?;
        let _ = std::fs::remove_dir_all(&exporter);
        let store = work.path().join(format!("berth-runner-{i}"));
        b_remote.push(timed(&mut berth_build(
            &store,
            &["--cache-from", &format!("type=registry,ref={cache}")],
        ))?);
        let _ = std::fs::remove_dir_all(&store);
        let h_cache = format!("{host}/cache/bench-buildah-{i}");
        let name = format!("export-{i}");
        timed(&mut buildah.bud(&name, &ctx, &["--cache-to", &h_cache, "-t", "bench:1"]))?;
        buildah.cleanup(&name);
        let name = format!("runner-{i}");
        h_remote.push(timed(&mut buildah.bud(
            &name,
            &ctx,
            &["--cache-from", &h_cache, "-t", "bench:1"],
        ))?);
        buildah.cleanup(&name);
    }
    println!(
        "build: {files} files x {kib} KiB in the context, {} steps; median of {runs} runs; \
         buildah {} (overlay storage, --layers, runc)",
        6,
        String::from_utf8_lossy(&Command::new("buildah").arg("--version").output()?.stdout).trim()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>14} {:>8}",
        "scenario", "berth", "buildah", "berth/buildah", "target"
    );
    for (name, b, h, target) in [
        ("cold build", b_cold, h_cold, "<= 0.8"),
        ("no-op rebuild", b_noop, h_noop, "<= 0.2"),
        ("one-file-change rebuild", b_change, h_change, "<= 0.5"),
        ("two-platform cold build", b_multi, h_multi, "-"),
        ("empty store, registry cache", b_remote, h_remote, "<= 0.3"),
    ] {
        let (b, h) = (median(b), median(h));
        println!(
            "{name:<28} {:>9.3}s {:>9.3}s {:>14.2} {target:>8}",
            b,
            h,
            b / h
        );
    }
    drop(registry);
    Ok(())
}
