//! Crash safety: `kill -9` the server while blob uploads and manifest PUTs are in flight, restart
//! it on the same data directory, and prove that every acknowledged blob and manifest is intact,
//! that no corrupt blob is visible, and that no tag points at a missing manifest.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, client, sha256_hex};

#[derive(Debug, Clone)]
struct Acked {
    repo: String,
    digest: String,
    bytes: Vec<u8>,
    tag: Option<String>,
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&sha2_block(seed, i));
        i += 1;
    }
    out.truncate(len);
    out
}

fn sha2_block(seed: u64, i: u64) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(i.to_le_bytes());
    h.finalize().into()
}

async fn push_blob(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    chunked: bool,
) -> Option<String> {
    let digest = format!("sha256:{}", sha256_hex(data));
    if !chunked {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .body(data.to_vec())
            .send()
            .await
            .ok()?;
        return (r.status() == 201).then_some(digest);
    }
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .ok()?;
    let mut loc = format!("{base}{}", r.headers().get("location")?.to_str().ok()?);
    let half = data.len() / 2;
    for (start, part) in [(0, &data[..half]), (half, &data[half..])] {
        let r = c
            .patch(&loc)
            .header(
                "Content-Range",
                format!("{start}-{}", start + part.len() - 1),
            )
            .body(part.to_vec())
            .send()
            .await
            .ok()?;
        if r.status() != 202 {
            return None;
        }
        loc = format!("{base}{}", r.headers().get("location")?.to_str().ok()?);
    }
    let r = c.put(format!("{loc}?digest={digest}")).send().await.ok()?;
    (r.status() == 201).then_some(digest)
}

async fn worker(base: String, round: u64, w: u64, stop: Arc<AtomicBool>) -> Vec<Acked> {
    let c = client();
    let repo = format!("crash/w{w}");
    let mut acked = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let seed = round * 1_000_000 + w * 10_000 + i;
        let layer = content(seed, (1 + (seed % 5) as usize) << 20);
        let Some(ld) = push_blob(&c, &base, &repo, &layer, i.is_multiple_of(2)).await else {
            break;
        };
        acked.push(Acked {
            repo: repo.clone(),
            digest: ld.clone(),
            bytes: layer.clone(),
            tag: None,
        });
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let Some(cd) = push_blob(&c, &base, &repo, &config, false).await else {
            break;
        };
        acked.push(Acked {
            repo: repo.clone(),
            digest: cd.clone(),
            bytes: config.clone(),
            tag: None,
        });
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        )
        .into_bytes();
        let tag = format!("r{round}-{i}");
        let Ok(r) = c
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
        else {
            break;
        };
        if r.status() != 201 {
            break;
        }
        acked.push(Acked {
            repo: repo.clone(),
            digest: format!("sha256:{}", sha256_hex(&manifest)),
            bytes: manifest,
            tag: Some(tag),
        });
        i += 1;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for (round, ms) in [(0u64, 700u64), (1, 1300), (2, 450), (3, 1900)] {
        let server = Server::start(dir.path());
        let base = format!("http://{}", server.addr);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(worker(base.clone(), round, w, Arc::clone(&stop))))
            .collect();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        server.kill9(); // SIGKILL while requests are in flight
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            acked.extend(w.await.unwrap());
        }
    }
    assert!(
        acked.iter().filter(|a| a.tag.is_some()).count() >= 4,
        "too little work was acknowledged to prove anything"
    );

    let server = Server::start(dir.path());
    let c = client();
    let base = format!("http://{}", server.addr);
    // Every acknowledged blob and manifest is intact and readable.
    for a in &acked {
        let path = match &a.tag {
            Some(_) => format!("{base}/v2/{}/manifests/{}", a.repo, a.digest),
            None => format!("{base}/v2/{}/blobs/{}", a.repo, a.digest),
        };
        let r = c.get(&path).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged {path} lost");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            a.bytes.as_slice(),
            "{path} corrupt"
        );
        if let Some(tag) = &a.tag {
            let r = c
                .get(format!("{base}/v2/{}/manifests/{tag}", a.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "acknowledged tag {tag} lost");
            assert_eq!(
                r.headers()["docker-content-digest"].to_str().unwrap(),
                a.digest
            );
        }
    }
    // No blob file is visible whose content does not match its name.
    let mut checked = 0;
    for entry in walk(&dir.path().join("blobs")) {
        let bytes = std::fs::read(&entry).unwrap();
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(sha256_hex(&bytes), name, "corrupt blob {}", entry.display());
        checked += 1;
    }
    assert!(checked > 0);
    // Every tag resolves to a manifest whose blobs are all readable.
    let catalog: serde_json::Value = c
        .get(format!("{base}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags: serde_json::Value = c
            .get(format!("{base}/v2/{repo}/tags/list"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let r = c
                .get(format!(
                    "{base}/v2/{repo}/manifests/{}",
                    tag.as_str().unwrap()
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "tag {repo}:{tag} dangles");
            let m: serde_json::Value = r.json().await.unwrap();
            let mut refs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
            refs.extend(
                m["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["digest"].as_str().unwrap().to_owned()),
            );
            for d in refs {
                let r = c
                    .head(format!("{base}/v2/{repo}/blobs/{d}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{repo}:{tag} references missing blob {d}");
            }
        }
    }
    eprintln!(
        "verified {} acknowledged writes and {checked} blob files after 4 SIGKILLs",
        acked.len()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
