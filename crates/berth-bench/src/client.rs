//! `berth-bench client`: `berth push` / `berth copy` vs `skopeo copy --all` on the same image,
//! machine and run — a ~500 MiB, 10-layer, two-platform OCI layout pushed to a fresh reference
//! registry, then copied registry → registry (two hosts, so nothing can be mounted). Prints the
//! median wall time of each tool, the ratio, and each client's peak RSS.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::Digest as _;

use crate::{Proc, start_reference};

/// Writes a blob under `blobs/sha256/` in 1 MiB steps; returns its digest hex.
fn write_blob(dir: &Path, size: u64, salt: u64) -> anyhow::Result<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let tmp = blobs.join(format!("tmp-{salt}"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut h = sha2::Sha256::new();
    // Incompressible-looking bytes (xorshift), different per blob and per MiB.
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = usize::try_from(left.min(1 << 20))?;
        h.update(&block[..n]);
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    drop(f);
    let hex = hex::encode(h.finalize());
    std::fs::rename(&tmp, blobs.join(&hex))?;
    Ok(hex)
}

fn put_json(dir: &Path, json: &str) -> anyhow::Result<(String, usize)> {
    let hex = hex::encode(sha2::Sha256::digest(json.as_bytes()));
    std::fs::write(dir.join("blobs/sha256").join(&hex), json)?;
    Ok((hex, json.len()))
}

/// The image: per platform, 5 layers (≈ 25 MiB each, salted per platform) and a config; one
/// index over both. `total_mib` is split across the 10 layers.
fn make_image(dir: &Path, total_mib: u64) -> anyhow::Result<()> {
    let per_layer = (total_mib << 20) / 10;
    let mut entries = Vec::new();
    for (p, arch) in ["amd64", "arm64"].iter().enumerate() {
        let mut layers = Vec::new();
        for l in 0..5u64 {
            // Uneven sizes, so "largest first" matters.
            let size = per_layer / 2 + per_layer * l / 4;
            let hex = write_blob(dir, size, (p as u64) * 100 + l + 1)?;
            layers.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{hex}","size":{size}}}"#
            ));
        }
        let (cfg, cfg_len) = put_json(
            dir,
            &format!(
                r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
            ),
        )?;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cfg}","size":{cfg_len}}},"layers":[{}]}}"#,
            layers.join(",")
        );
        let (m, m_len) = put_json(dir, &manifest)?;
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{m}","size":{m_len},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let (i, i_len) = put_json(dir, &index)?;
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:{i}","size":{i_len},"annotations":{{"org.opencontainers.image.ref.name":"bench"}}}}]}}"#
        ),
    )?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// Runs a command to completion: wall seconds and the peak RSS (VmHWM, polled) in MiB.
pub(crate) fn timed(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0f64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err)?;
        }
        bail!("{cmd:?} failed: {err}");
    }
    Ok((secs, peak_kb / 1024.0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn host(p: &Proc) -> &str {
    p.base.trim_start_matches("http://")
}

/// One row: berth's and skopeo's median seconds and peak RSS over `runs`, each run against a
/// fresh reference registry whose host `commands` turns into the two commands.
async fn measure(
    reference: &Path,
    runs: usize,
    name: &str,
    commands: impl Fn(&str) -> (Command, Command),
) -> anyhow::Result<(String, f64, f64, f64, f64)> {
    let (mut bt, mut st, mut br, mut sr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let dst = start_reference(reference).await?;
        let (t, r) = timed(&mut commands(host(&dst)).0)?;
        bt.push(t);
        br.push(r);
        drop(dst);
        let dst = start_reference(reference).await?;
        let (t, r) = timed(&mut commands(host(&dst)).1)?;
        st.push(t);
        sr.push(r);
    }
    let peak = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    Ok((
        name.to_owned(),
        median(bt),
        median(st),
        peak(&br),
        peak(&sr),
    ))
}

/// The `client` bench.
pub async fn run(berth: &Path, reference: &Path, mib: u64, runs: usize) -> anyhow::Result<()> {
    let skopeo = Path::new("/usr/bin/skopeo");
    if !skopeo.exists() {
        bail!("skopeo not found: apt-get install skopeo");
    }
    let work = tempfile::tempdir()?;
    let layout = work.path().join("layout");
    println!("making a {mib} MiB, 10-layer, two-platform OCI layout…");
    make_image(&layout, mib)?;
    // skopeo keeps a blob-location cache; a private HOME keeps runs independent.
    let home = work.path().join("home");
    std::fs::create_dir_all(&home)?;
    let skopeo_cmd = || {
        let mut c = Command::new(skopeo);
        c.env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .args(["--insecure-policy", "copy", "--all", "--quiet"]);
        c
    };
    let berth_cmd = |verb: &str| {
        let mut c = Command::new(berth);
        c.env("DOCKER_CONFIG", home.join("docker"))
            .args([verb, "--progress", "quiet"]);
        c
    };
    let src = format!("oci:{}:bench", layout.display());

    // Each run gets a fresh destination registry, so nothing is already there.
    let layout_row = measure(reference, runs, "layout → registry", |dst| {
        let mut b = berth_cmd("push");
        b.arg(&src).arg(format!("{dst}/b/img:v1"));
        let mut s = skopeo_cmd();
        s.arg("--dest-tls-verify=false")
            .arg(&src)
            .arg(format!("docker://{dst}/s/img:v1"));
        (b, s)
    })
    .await?;
    // Registry → registry: the image on one reference registry, copied to another.
    let origin = start_reference(reference).await?;
    let from = format!("{}/src/img:v1", host(&origin));
    timed(berth_cmd("push").arg(&src).arg(&from))?;
    let copy_row = measure(reference, runs, "registry → registry", |dst| {
        let mut b = berth_cmd("copy");
        b.arg(&from).arg(format!("{dst}/b/img:v1"));
        let mut s = skopeo_cmd();
        s.args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://{from}"))
            .arg(format!("docker://{dst}/s/img:v1"));
        (b, s)
    })
    .await?;
    let rows = [layout_row, copy_row];

    println!(
        "\n{:<22} {:>10} {:>10} {:>8} {:>14} {:>14}",
        "copy", "berth s", "skopeo s", "speedup", "berth RSS MiB", "skopeo RSS MiB"
    );
    for (name, b, s, brss, srss) in rows {
        println!(
            "{name:<22} {b:>10.2} {s:>10.2} {:>7.2}× {brss:>14.1} {srss:>14.1}",
            s / b
        );
    }
    println!(
        "({mib} MiB image, median of {runs} runs each; destination: docker-registry 2.8 on loopback)"
    );
    Ok(())
}
