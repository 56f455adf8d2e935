//! Platforms (`linux/amd64`, `linux/arm64/v8`) as image indexes and `--platform` name them.

use std::fmt;

/// An image platform: OS, architecture and optional variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, `arm`, …
    pub architecture: String,
    /// `v8`, `v7`, … (normalised away where it is the architecture's default).
    pub variant: Option<String>,
}

/// A `--platform` value that is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a platform: expected OS/ARCH[/VARIANT], e.g. linux/arm64")]
pub struct PlatformError(pub String);

impl Platform {
    /// A platform from its parts, normalised as containerd does (`aarch64` → `arm64`,
    /// `x86_64` → `amd64`, `arm64/v8` → `arm64`, `arm` → `arm/v7`).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = match (architecture.to_ascii_lowercase().as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_owned(), v.filter(|v| *v != "v1")),
            ("aarch64" | "arm64", Some("v8") | None) => ("arm64".to_owned(), None),
            ("aarch64" | "arm64", v) => ("arm64".to_owned(), v),
            ("armhf" | "armel" | "arm", None) => ("arm".to_owned(), Some("v7")),
            (a, v) => (a.to_owned(), v),
        };
        Platform {
            os,
            architecture,
            variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformError(s.to_owned())),
        }
    }

    /// The platform this program runs on (`linux/amd64` on x86-64 Linux).
    pub fn host() -> Self {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// Whether an index entry for `other` satisfies a request for `self`: OS and architecture
    /// equal, and the variant equal when the request names one.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p = Platform::parse("linux/aarch64").expect("platform");
        assert_eq!(p.to_string(), "linux/arm64");
        assert_eq!(
            Platform::parse("linux/arm64/v8").expect("p").to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm").expect("p").to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").expect("p").to_string(),
            "linux/amd64"
        );
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux/am d64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_ignores_an_unrequested_variant() {
        let want = Platform::parse("linux/arm").expect("p");
        assert!(want.matches(&Platform::new("linux", "arm", Some("v7"))));
        assert!(!want.matches(&Platform::new("linux", "arm", Some("v6"))));
        let amd = Platform::parse("linux/amd64").expect("p");
        assert!(amd.matches(&Platform::new("linux", "amd64", Some("v3"))));
        assert!(!amd.matches(&Platform::new("windows", "amd64", None)));
    }
}
