//! Image references as users type them: `busybox`, `ghcr.io/org/app:1.2`,
//! `127.0.0.1:5000/team/api@sha256:…`, `123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1`.
//!
//! The grammar and the normalisation are Docker's (distribution/reference): a first path
//! component is a registry host when it contains `.` or `:`, is `localhost`, or has uppercase
//! letters; otherwise the registry is `docker.io`, and a single-component Docker Hub name gets the
//! `library/` prefix. `index.docker.io` is spelled `docker.io`.

use std::fmt;

use crate::digest::Digest;
use crate::name::{NameError, RepoName, Tag};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("image reference is empty")]
    Empty,
    /// The registry part is not `host[:port]`.
    #[error("invalid registry host {0:?} in image reference")]
    InvalidRegistry(String),
    /// Docker refuses uppercase repository names with this message; so do we.
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    /// The repository, tag or digest part is invalid.
    #[error("{0}")]
    Name(#[from] NameError),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: RepoName,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference (see the module documentation).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(NameError::from)?)),
            None => (s, None),
        };
        // The tag is after the last ':' that comes after the last '/' (a ':' before it belongs
        // to a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(Tag::parse(&rest[at + 1..])?))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        check_host(&registry)?;
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path));
        }
        Ok(ImageRef {
            registry,
            repository: RepoName::parse(&path)?,
            tag,
            digest,
        })
    }

    /// A reference from its parts.
    pub fn new(
        registry: &str,
        repository: RepoName,
        tag: Option<Tag>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        check_host(registry)?;
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (with port, if any), e.g. `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    /// The tag, if given.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, if given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest if given (it wins over a tag), else the tag,
    /// else `latest`.
    pub fn reference(&self) -> crate::Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => crate::Reference::Digest(d.clone()),
            (None, Some(t)) => crate::Reference::Tag(t.clone()),
            (None, None) => crate::Reference::Tag(Tag::latest()),
        }
    }

    /// The same image under another tag (any digest dropped).
    pub fn with_tag(&self, tag: Tag) -> Self {
        ImageRef {
            tag: Some(tag),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to a digest (any tag dropped).
    pub fn with_digest(&self, digest: Digest) -> Self {
        ImageRef {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The repository's name as Docker shows it: without `docker.io/` and `library/`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            let repo = self.repository.as_str();
            repo.strip_prefix("library/").unwrap_or(repo).to_owned()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The registry's API host: Docker Hub is served by `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What kind of ECR registry this is, if any.
    pub fn ecr(&self) -> Option<EcrRegistry> {
        EcrRegistry::from_host(&self.registry)
    }
}

/// `host[:port]`: DNS labels, an IPv4 address, or a bracketed IPv6 address; the port numeric.
fn check_host(h: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::InvalidRegistry(h.chars().take(160).collect());
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':').ok_or_else(bad)?),
        };
        (None, port)
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(h), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    if let Some(host) = host {
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The response header with which `berth serve` says, on `GET /v2/` and on every 401, that it
/// takes ECR-style credentials (`GetAuthorizationToken` tokens, AWS access keys) and for which
/// region: `Berth-Ecr-Auth: region="us-east-1"`. berth's client then authenticates with the AWS
/// credential chain, as it does for Amazon ECR hosts.
pub const ECR_AUTH_HEADER: &str = "Berth-Ecr-Auth";

/// The value of [`ECR_AUTH_HEADER`] for `region`.
pub fn ecr_auth_value(region: &str) -> String {
    format!("region=\"{region}\"")
}

/// The region an [`ECR_AUTH_HEADER`] value names (`None` when it names none or a malformed one).
pub fn parse_ecr_auth(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("region") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        let ok = (2..=25).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| v.to_owned())
    })
}

/// An Amazon ECR registry recognised from its host name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcrRegistry {
    /// `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`
    Private {
        /// The 12-digit registry (account) id.
        account: String,
        /// The AWS region, e.g. `eu-west-1`.
        region: String,
        /// Whether the host is the FIPS endpoint.
        fips: bool,
    },
    /// `public.ecr.aws`
    Public,
}

impl EcrRegistry {
    /// Recognises an ECR host (a port, if any, is ignored).
    pub fn from_host(host: &str) -> Option<Self> {
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        if host == "public.ecr.aws" {
            return Some(EcrRegistry::Public);
        }
        let rest = host
            .strip_suffix(".amazonaws.com.cn")
            .or_else(|| host.strip_suffix(".amazonaws.com"))?;
        let mut parts = rest.split('.');
        let (account, dkr, ecr, region) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || dkr != "dkr" {
            return None;
        }
        let fips = match ecr {
            "ecr" => false,
            "ecr-fips" => true,
            _ => return None,
        };
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || !region_ok {
            return None;
        }
        Some(EcrRegistry::Private {
            account: account.to_owned(),
            region: region.to_owned(),
            fips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_auth_header_round_trips() {
        assert_eq!(
            parse_ecr_auth(&ecr_auth_value("eu-west-1")).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            parse_ecr_auth("region=\"us-east-1\", x=1").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(parse_ecr_auth("region=\"../etc\""), None);
        assert_eq!(parse_ecr_auth("nothing"), None);
    }

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("busybox");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository().as_str(), "library/busybox");
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(r.reference().to_string(), "latest");
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(
            p("library/busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            p("index.docker.io/user/app").to_string(),
            "docker.io/user/app"
        );
        assert_eq!(
            p("docker.io/busybox").repository().as_str(),
            "library/busybox"
        );
        assert_eq!(p("user/app:v1").familiar_name(), "user/app");
    }

    #[test]
    fn registries_ports_tags_digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p("127.0.0.1:5000/team/api:v1.2");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository().as_str(), "team/api");
        assert_eq!(r.tag().map(Tag::as_str), Some("v1.2"));
        let r = p(&format!("localhost:5000/app@{d}"));
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.digest().map(ToString::to_string).as_deref(), Some(d));
        assert_eq!(r.reference().to_string(), d);
        let r = p(&format!("ghcr.io/org/app:1.0@{d}"));
        assert_eq!(r.tag().map(Tag::as_str), Some("1.0"));
        assert_eq!(r.reference().to_string(), d, "the digest wins over the tag");
        assert_eq!(r.to_string(), format!("ghcr.io/org/app:1.0@{d}"));
        assert_eq!(p("localhost/app").registry(), "localhost");
        assert_eq!(p("[::1]:5000/app").registry(), "[::1]:5000");
        assert_eq!(p("Registry.Example/app").registry(), "Registry.Example");
        let r = p("registry.example.com:443/a/b/c/d:tag");
        assert_eq!(r.repository().as_str(), "a/b/c/d");
        // The port is not a tag; a path component named like a port is not a registry.
        assert_eq!(p("myhost:5000/app").tag(), None);
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            ":tag",
            "app:",
            "app:bad/tag",
            "docker.io/Upper",
            "host:port/app",
            "host:123456/app",
            "-host.com/app",
            "app@sha256:abc",
            "app@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a//b",
            "app:-tag",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(matches!(
            ImageRef::parse("docker.io/Upper"),
            Err(ReferenceError::Uppercase(_))
        ));
    }

    #[test]
    fn ecr_hosts() {
        let r = p("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1");
        assert_eq!(
            r.ecr(),
            Some(EcrRegistry::Private {
                account: "123456789012".into(),
                region: "eu-west-1".into(),
                fips: false
            })
        );
        assert_eq!(
            EcrRegistry::from_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
            Some(EcrRegistry::Private {
                account: "123456789012".into(),
                region: "us-gov-west-1".into(),
                fips: true
            })
        );
        assert!(matches!(
            EcrRegistry::from_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(EcrRegistry::Private { .. })
        ));
        assert_eq!(
            p("public.ecr.aws/nginx/nginx").ecr(),
            Some(EcrRegistry::Public)
        );
        for not_ecr in [
            "12345.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.com",
            "123456789012.ecr.eu-west-1.amazonaws.com",
            "s3.amazonaws.com",
            "docker.io",
        ] {
            assert_eq!(EcrRegistry::from_host(not_ecr), None, "{not_ecr}");
        }
    }
}
