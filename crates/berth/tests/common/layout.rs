//! OCI image layouts written by hand: layers (plain or gzipped tar), image manifests with
//! their configs, indexes, and `index.json`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::sha256_hex;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A tar of regular files (`path`, contents) and, for paths ending in `/`, directories; names
/// with `..` are written as given (hostile layers).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    tar_with_executables(files, &[])
}

/// [`tar_of`], with the files `executables` names at mode 0755.
pub fn tar_with_executables(files: &[(&str, &[u8])], executables: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_mode(if executables.contains(path) {
                0o755
            } else {
                0o644
            });
        }
        h.set_mtime(1_700_000_000);
        if path.contains("..") {
            // Hostile names the tar crate refuses to write: set the header's bytes directly.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        } else {
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A layer: its bytes as stored, and the digest of its uncompressed form.
pub struct Layer {
    pub bytes: Vec<u8>,
    pub gzipped: bool,
    pub diff_id: String,
}

impl Layer {
    pub fn plain(bytes: Vec<u8>) -> Layer {
        let diff_id = format!("sha256:{}", sha256_hex(&bytes));
        Layer {
            bytes,
            gzipped: false,
            diff_id,
        }
    }

    pub fn gzipped(bytes: &[u8]) -> Layer {
        Layer {
            diff_id: format!("sha256:{}", sha256_hex(bytes)),
            bytes: gzip(bytes),
            gzipped: true,
        }
    }

    /// A layer already gzipped; its diff id hashed while decompressing, never held whole.
    pub fn from_gzip(gz: Vec<u8>) -> Layer {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        let mut tar = flate2::read::GzDecoder::new(&gz[..]);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut tar, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Layer {
            diff_id: format!("sha256:{}", hex::encode(hasher.finalize())),
            bytes: gz,
            gzipped: true,
        }
    }
}

/// A content descriptor in a layout.
#[derive(Clone, Debug)]
pub struct Desc {
    pub media_type: &'static str,
    pub digest: String,
    pub size: usize,
    pub arch: &'static str,
}

/// An OCI image layout written by hand.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob(&self, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    }

    /// An image manifest (with its config) over `layers`.
    pub fn image(&self, layers: &[&Layer], arch: &'static str) -> Desc {
        let descs: Vec<Value> = layers
            .iter()
            .map(|l| {
                let media_type = if l.gzipped {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                } else {
                    "application/vnd.oci.image.layer.v1.tar"
                };
                let digest = self.blob(&l.bytes);
                json!({"mediaType": media_type, "digest": digest, "size": l.bytes.len()})
            })
            .collect();
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.blob(&config),
                "size": config.len(),
            },
            "layers": descs,
        }))
        .unwrap();
        Desc {
            media_type: MANIFEST,
            digest: self.blob(&manifest),
            size: manifest.len(),
            arch,
        }
    }

    /// An image index of `children`, each with its platform.
    pub fn index(&self, children: &[&Desc]) -> Desc {
        let manifests: Vec<Value> = children
            .iter()
            .map(|c| {
                json!({"mediaType": c.media_type, "digest": c.digest, "size": c.size,
                       "platform": {"architecture": c.arch, "os": "linux"}})
            })
            .collect();
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}),
        )
        .unwrap();
        Desc {
            media_type: INDEX,
            digest: self.blob(&index),
            size: index.len(),
            arch: "",
        }
    }

    /// Writes `index.json` naming each descriptor by its reference.
    pub fn refs(&self, refs: &[(&Desc, &str)]) {
        let manifests: Vec<Value> = refs
            .iter()
            .map(|(d, name)| {
                json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size,
                       "annotations": {"org.opencontainers.image.ref.name": name}})
            })
            .collect();
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
        )
        .unwrap();
    }

    /// `oci:DIR:REF` for `berth push`.
    pub fn source(&self, reference: &str) -> String {
        format!("oci:{}:{reference}", self.dir.display())
    }
}
