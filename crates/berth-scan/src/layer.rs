//! One layer, read once as a stream: compression detected from its first bytes (gzip, zstd,
//! none), tar entries walked without extracting anything, whiteouts recorded, the evidence
//! files read within their size limits. Memory is bounded by the largest evidence file kept
//! (64 MiB for a package database) plus the decompressor's window, whatever the layer's size.

use std::io::{BufRead, BufReader, Read};

use crate::error::ScanError;
use crate::inventory::{Evidence, LayerInventory};

/// Limits of one layer read.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Limits {
    /// Uncompressed tar bytes read before the layer is refused (a decompression bomb).
    pub max_layer_bytes: u64,
    /// Past [`Limits::ratio_floor`] uncompressed bytes, the most a layer may expand per
    /// compressed byte. Real layers expand 2–10:1, a file of zeros ~1000:1 under gzip and far
    /// more under zstd: a decompression bomb is refused after about a gigabyte, not at
    /// `max_layer_bytes`.
    pub max_ratio: u64,
    /// Uncompressed bytes read before the ratio is checked.
    pub ratio_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 64 << 30,
            max_ratio: 200,
            ratio_floor: 1 << 30,
        }
    }
}

/// Counts the compressed bytes read through it.
struct Counted<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Counts the uncompressed bytes read through it and fails past the limits.
struct Capped<R> {
    inner: R,
    read: u64,
    compressed: std::rc::Rc<std::cell::Cell<u64>>,
    limits: Limits,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limits.max_layer_bytes {
            return Err(std::io::Error::other(Refused::TooLarge));
        }
        let compressed = self.compressed.get().max(1);
        if self.read > self.limits.ratio_floor && self.read / compressed > self.limits.max_ratio {
            return Err(std::io::Error::other(Refused::Bomb {
                read: self.read,
                compressed,
            }));
        }
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy)]
enum Refused {
    TooLarge,
    Bomb { read: u64, compressed: u64 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("layer size limit")
    }
}

impl std::error::Error for Refused {}

/// A tar path made relative and checked: `None` for one that climbs out (`..`) or is empty.
fn normalize(raw: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(raw);
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Reads a layer (gzip, zstd or plain tar) into its inventory.
pub fn read_layer<R: Read>(reader: R, limits: &Limits) -> Result<LayerInventory, ScanError> {
    let compressed = std::rc::Rc::new(std::cell::Cell::new(0));
    let reader = Counted {
        inner: reader,
        count: compressed.clone(),
    };
    let mut buffered = BufReader::with_capacity(256 << 10, reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| ScanError::io("reading the layer", e))?;
    let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| ScanError::io("starting zstd", e))?,
        )
    } else {
        Box::new(buffered)
    };
    let capped = Capped {
        inner: decoded,
        read: 0,
        compressed,
        limits: *limits,
    };
    let mut archive = tar::Archive::new(capped);
    let mut inv = LayerInventory::default();
    let fail = |e: std::io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<Refused>()) {
        Some(Refused::TooLarge) => ScanError::LayerTooLarge {
            limit: limits.max_layer_bytes,
        },
        Some(Refused::Bomb { read, compressed }) => ScanError::DecompressionBomb {
            read: *read,
            compressed: *compressed,
            ratio: read / compressed,
            max: limits.max_ratio,
        },
        None => ScanError::io("reading the layer's tar stream", e),
    };
    for entry in archive.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let raw = entry.path_bytes().into_owned();
        let Some(path) = normalize(&raw) else {
            if !raw.iter().all(|b| *b == b'/' || *b == b'.') {
                inv.notes.push(format!(
                    "skipped {:?}: the path leaves the root",
                    String::from_utf8_lossy(&raw)
                ));
            }
            continue;
        };
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d, b),
            None => ("", path.as_str()),
        };
        if base == ".wh..wh..opq" {
            inv.opaque.push(dir.to_owned());
            continue;
        }
        if let Some(name) = base.strip_prefix(".wh.") {
            inv.whiteouts.push(if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            });
            continue;
        }
        let kind = entry.header().entry_type();
        // GNU sparse files are regular files too: their claimed size is checked like any.
        if !kind.is_file() && !kind.is_gnu_sparse() {
            continue;
        }
        let size = entry.size();
        let evidence = match Evidence::of(&path) {
            Some(e) => e,
            // An executable may be a Go or cargo-auditable binary: its first bytes tell.
            None if size >= 64 && entry.header().mode().is_ok_and(|m| m & 0o111 != 0) => {
                let mut magic = [0u8; 4];
                entry.read_exact(&mut magic).map_err(fail)?;
                if &magic != b"\x7fELF" {
                    continue;
                }
                if size > Evidence::Binary.limit() {
                    inv.notes.push(format!(
                        "skipped {path}: an executable of {size} bytes, more than the {} read of one",
                        Evidence::Binary.limit()
                    ));
                    continue;
                }
                let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                data.extend_from_slice(&magic);
                (&mut entry)
                    .take(size - 4)
                    .read_to_end(&mut data)
                    .map_err(fail)?;
                Evidence::Binary.parse(&path, &data, &mut inv);
                continue;
            }
            None => continue,
        };
        if evidence.limit() == 0 {
            // Known but unreadable (an rpm BerkeleyDB): noted, not read.
            evidence.parse(&path, &[], &mut inv);
            continue;
        }
        if size > evidence.limit() {
            inv.notes.push(format!(
                "skipped {path}: {size} bytes, more than the {} read of such a file",
                evidence.limit()
            ));
            continue;
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
        (&mut entry)
            .take(evidence.limit())
            .read_to_end(&mut data)
            .map_err(fail)?;
        evidence.parse(&path, &data, &mut inv);
    }
    inv.bytes = archive.into_inner().read;
    Ok(inv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, *data)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn paths_are_confined() {
        assert_eq!(normalize(b"./usr/lib/x"), Some("usr/lib/x".into()));
        assert_eq!(normalize(b"/etc/os-release"), Some("etc/os-release".into()));
        assert_eq!(normalize(b"a/../../etc/passwd"), None);
        assert_eq!(normalize(b"./"), None);
    }

    #[test]
    fn gzip_zstd_and_plain_layers_read_alike() {
        let tar = tar_of(&[
            ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
            ("lib/apk/db/installed", b"P:musl\nV:1.2.4-r2\n\n"),
            ("usr/lib/.wh.python3", b""),
            ("opt/app/.wh..wh..opq", b""),
            ("big.bin", &[0u8; 4096]),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap_or_else(|e| panic!("{e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        let zst = zstd::encode_all(&tar[..], 3).unwrap_or_else(|e| panic!("{e}"));
        let limits = Limits::default();
        let plain = read_layer(&tar[..], &limits).unwrap_or_else(|e| panic!("{e}"));
        for data in [&gz[..], &zst[..]] {
            let other = read_layer(data, &limits).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(other, plain);
        }
        assert_eq!(plain.whiteouts, ["usr/lib/python3"]);
        assert_eq!(plain.opaque, ["opt/app"]);
        assert_eq!(plain.files["lib/apk/db/installed"][0].name, "musl");
        assert_eq!(
            plain.os_release.as_ref().map(|o| o.id.as_str()),
            Some("alpine")
        );
    }

    #[test]
    fn truncated_layers_and_bombs_are_errors() {
        let tar = tar_of(&[("var/lib/dpkg/status", &[b'x'; 8192])]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap_or_else(|e| panic!("{e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        let cut = &gz[..gz.len() / 2];
        assert!(matches!(
            read_layer(cut, &Limits::default()),
            Err(ScanError::Io { .. })
        ));
        let small = Limits {
            max_layer_bytes: 4096,
            ..Limits::default()
        };
        assert!(matches!(
            read_layer(&gz[..], &small),
            Err(ScanError::LayerTooLarge { limit: 4096 })
        ));
    }

    #[test]
    fn layers_that_expand_like_bombs_are_refused_past_the_floor() {
        let zeros = vec![0u8; 8 << 20];
        let tar = tar_of(&[("zeros", &zeros)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar).unwrap_or_else(|e| panic!("{e}"));
        let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        let tight = Limits {
            ratio_floor: 1 << 20,
            ..Limits::default()
        };
        match read_layer(&gz[..], &tight) {
            Err(ScanError::DecompressionBomb {
                ratio, max: 200, ..
            }) => assert!(ratio > 200),
            other => panic!("{other:?}"),
        }
        // Under the floor the same layer is read: small files of zeros are not bombs.
        assert!(read_layer(&gz[..], &Limits::default()).is_ok());
        // A plain tar never expands.
        assert!(read_layer(&tar[..], &tight).is_ok());
    }
}
