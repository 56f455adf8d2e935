//! Where an image is read from or written to: a registry reference, an OCI layout, an OCI or
//! docker archive — spelled as skopeo's transports (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:NAME:TAG|:@N]`, `docker://REF` or a bare reference).

use std::path::Path;
use std::sync::Arc;

use berth_client::archive::{ArchiveFormat, ArchiveSink, ArchiveSource, Selector};
use berth_client::auth::DockerConfig;
use berth_client::ecr::EcrTarget;
use berth_client::image::{ImageSink, ImageSource};
use berth_client::layout::OciLayout;
use berth_client::registry::{RegistryClient, RegistryImage};
use berth_oci::{ImageRef, Tag};

use crate::error::{OpsError, Result, ResultExt};

/// The transports, for help texts.
pub const TRANSPORTS: &str = "Transports: REF or docker://REF (a registry), oci:DIR[:TAG] (an OCI layout), \
oci-archive:FILE[:TAG] (a tar of one), docker-archive:FILE[:NAME:TAG|:@N] (docker save / docker load).";

/// An image's place.
#[derive(Debug)]
#[non_exhaustive]
pub enum Endpoint {
    /// An OCI layout directory.
    Layout(OciLayout),
    /// An archive being read.
    ArchiveIn(ArchiveSource),
    /// An archive being written.
    ArchiveOut(ArchiveSink),
    /// A registry repository, and the reference that named it.
    Registry(RegistryImage, ImageRef),
}

/// What a spec with no transport prefix means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bare {
    /// A registry reference (`copy`, `inspect`, …).
    Registry,
    /// A local path, read (`push SRC`): a layout directory or an archive, by content.
    LocalSource,
    /// A local path, written (`pull DEST`): `*.tar` a docker-archive, else a layout.
    LocalSink,
}

/// Splits `PATH[:REST]` at the first colon (skopeo's archive syntax).
fn path_and_name(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((p, n)) if !n.is_empty() => (p, Some(n)),
        Some((p, _)) => (p, None),
        None => (rest, None),
    }
}

/// Tells a layout directory from an archive, and an OCI archive from a docker one.
fn sniff_local(path: &str) -> Result<Endpoint> {
    let p = Path::new(path);
    if p.is_dir() {
        return Ok(Endpoint::Layout(OciLayout::new(p, None)));
    }
    if !p.is_file() {
        return Err(OpsError::usage(format!(
            "{path}: no such layout directory or archive"
        )));
    }
    let format = ArchiveFormat::detect(p)?;
    archive(p, format, None, false)
}

impl Endpoint {
    /// Reads a spec: `sink` when the image will be written there. `insecure` lists the registries
    /// reached over plain HTTP (loopback always is).
    pub fn parse(spec: &str, bare: Bare, sink: bool, insecure: &[String]) -> Result<Self> {
        if let Some(rest) = spec.strip_prefix("oci:") {
            // `oci:DIR[:TAG]`: a final `:TAG` without a slash in it names the image.
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t)),
                _ => (rest, None),
            };
            return Ok(Endpoint::Layout(OciLayout::new(dir, tag)));
        }
        for (prefix, format) in [
            ("oci-archive:", ArchiveFormat::Oci),
            ("docker-archive:", ArchiveFormat::Docker),
        ] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                let (path, name) = path_and_name(rest);
                if path.is_empty() {
                    return Err(OpsError::usage(format!("{spec}: no file named")));
                }
                return archive(Path::new(path), format, name, sink);
            }
        }
        for unsupported in ["dir:", "containers-storage:", "docker-daemon:"] {
            if spec.starts_with(unsupported) {
                return Err(OpsError::usage(format!(
                    "the {unsupported} transport is not supported (berth has no daemon to talk to: \
                     use oci:, oci-archive: or docker-archive:)"
                )));
            }
        }
        let looks_local =
            spec.starts_with('/') || spec.starts_with("./") || spec.starts_with("../");
        match bare {
            Bare::LocalSource if !spec.starts_with("docker://") => return sniff_local(spec),
            Bare::LocalSink if !spec.starts_with("docker://") => {
                return if spec.ends_with(".tar") {
                    archive(Path::new(spec), ArchiveFormat::Docker, None, true)
                } else {
                    Ok(Endpoint::Layout(OciLayout::new(spec, None)))
                };
            }
            Bare::Registry if looks_local => {
                return Err(OpsError::usage(format!(
                    "{spec:?} looks like a path: say oci:{spec}, oci-archive:{spec} or docker-archive:{spec}"
                )));
            }
            _ => {}
        }
        let reference = spec.strip_prefix("docker://").unwrap_or(spec);
        let r = parse_ref(reference)?;
        let image = open_registry(&r, insecure)?;
        Ok(Endpoint::Registry(image, r))
    }

    /// The image as a source.
    pub fn source(&self) -> Result<&dyn ImageSource> {
        Ok(match self {
            Endpoint::Layout(l) => l,
            Endpoint::Registry(r, _) => r,
            Endpoint::ArchiveIn(a) => a,
            Endpoint::ArchiveOut(_) => {
                return Err(OpsError::usage("an archive being written is not a source"));
            }
        })
    }

    /// The image as a sink.
    pub fn sink(&self) -> Result<&dyn ImageSink> {
        Ok(match self {
            Endpoint::Layout(l) => l,
            Endpoint::Registry(r, _) => r,
            Endpoint::ArchiveOut(a) => a,
            Endpoint::ArchiveIn(_) => {
                return Err(OpsError::usage("an archive being read is not a sink"));
            }
        })
    }

    /// The registry reference, for a registry endpoint.
    pub fn reference(&self) -> Option<&ImageRef> {
        match self {
            Endpoint::Registry(_, r) => Some(r),
            _ => None,
        }
    }
}

/// A registry reference as users type it, or a usage error naming it.
pub fn parse_ref(reference: &str) -> Result<ImageRef> {
    ImageRef::parse(reference).map_err(|e| OpsError::usage(format!("{reference:?}: {e}")))
}

/// A tag, or a usage error naming it.
pub fn parse_tag(tag: &str) -> Result<Tag> {
    Tag::parse(tag).map_err(|e| OpsError::usage(format!("tag {tag:?}: {e}")))
}

/// The archive endpoint for `path` in `format`, `name` as its transport spelled it.
fn archive(path: &Path, format: ArchiveFormat, name: Option<&str>, sink: bool) -> Result<Endpoint> {
    if !sink {
        let selector = match name {
            None => Selector::Only,
            Some(n) => match n.strip_prefix('@').map(str::parse::<usize>) {
                Some(Ok(i)) => Selector::Index(i),
                Some(Err(_)) => {
                    return Err(OpsError::usage(format!(
                        "{n:?}: expected @N, an image index"
                    )));
                }
                None => Selector::Name(n.to_owned()),
            },
        };
        return Ok(Endpoint::ArchiveIn(ArchiveSource::new(
            path, format, selector,
        )));
    }
    let name = match (name, format) {
        (None, _) => None,
        (Some(n), ArchiveFormat::Docker) => Some(parse_ref(n)?),
        (Some(n), _) => {
            let tag = parse_tag(n)?;
            Some(parse_ref(&format!("localhost/image:{tag}"))?)
        }
    };
    let sink =
        ArchiveSink::new(path, format, name).context(|| format!("preparing {}", path.display()))?;
    Ok(Endpoint::ArchiveOut(sink))
}

/// The registry repository a reference names, with the credentials berth uses for it: native
/// ECR tokens for Amazon ECR hosts (and hosts `berth login` saved with AWS credentials), else
/// docker's config.json (credential helpers included).
pub fn open_registry(r: &ImageRef, insecure: &[String]) -> Result<RegistryImage> {
    let config = DockerConfig::load_default()?;
    if let Some(target) = EcrTarget::for_host(r.api_host(), Some(&config)) {
        let client = RegistryClient::new(r.api_host(), None, insecure)?.with_ecr(target);
        return Ok(RegistryImage::new(Arc::new(client), r));
    }
    let credentials = config.credentials(r.registry())?;
    let client = RegistryClient::new(r.api_host(), credentials, insecure)?;
    Ok(RegistryImage::new(Arc::new(client), r))
}
