//! Platforms: parsing `--platform`, the platform ARGs, and which architectures run natively.

use berth_dockerfile::PlatformParts;
use berth_oci::Platform;

use crate::error::BuildError;

/// Parses a `--platform` entry (`linux/arm64`, `linux/arm/v7`, `local` = the host).
pub fn parse(s: &str) -> Result<Platform, BuildError> {
    let s = s.trim();
    if s == "local" {
        return Ok(Platform::host());
    }
    let p = Platform::parse(s).map_err(|_| BuildError::Platform(s.to_owned()))?;
    if p.os != "linux" {
        return Err(BuildError::Platform(format!(
            "{s} (only linux platforms can be built)"
        )));
    }
    Ok(p)
}

/// The platform as the automatic ARGs spell it.
pub fn parts(p: &Platform) -> PlatformParts {
    PlatformParts {
        os: p.os.clone(),
        arch: p.architecture.clone(),
        variant: p.variant.clone().unwrap_or_default(),
    }
}

/// Whether binaries of `arch` (GOARCH spelling) run on this host without emulation.
pub fn native(arch: &str) -> bool {
    let host = Platform::host().architecture;
    arch == host || (host == "amd64" && arch == "386") || (host == "arm64" && arch == "arm")
}

/// qemu's name for a GOARCH (`qemu-aarch64` runs arm64).
pub fn qemu_name(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn platforms_parse_and_normalise() {
        assert_eq!(parse("linux/aarch64").unwrap().to_string(), "linux/arm64");
        assert_eq!(parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64");
        assert!(parse("windows/amd64").is_err());
        assert!(parse("linux").is_err());
        assert_eq!(parse("local").unwrap(), Platform::host());
        assert_eq!(qemu_name("arm64"), "aarch64");
    }
}
