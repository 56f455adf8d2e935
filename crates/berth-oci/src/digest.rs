//! Content digests (`algorithm:hex`), restricted to the algorithms berth can verify.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A digest algorithm berth can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256 (64 lowercase hex characters).
    Sha256,
    /// SHA-512 (128 lowercase hex characters).
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings and storage paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh streaming hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// Why a string is not a digest berth accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    /// A well-formed digest whose algorithm berth does not implement.
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    /// Wrong length or characters other than lowercase hex.
    #[error(
        "digest {0:?} does not have the length and lowercase hex encoding its algorithm requires"
    )]
    BadEncoding(String),
}

/// A validated content digest: a supported algorithm and its lowercase hex encoding.
///
/// **Invariant:** the encoded part is exactly the algorithm's length of `[0-9a-f]`, so a digest can
/// be used as a path component without further checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(truncate(s)))?;
        // The OCI grammar for algorithm names: [a-z0-9]+([+._-][a-z0-9]+)*
        let grammar_ok = !alg.is_empty()
            && alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            && !hex.is_empty()
            && hex
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c));
        if !grammar_ok {
            return Err(DigestError::Malformed(truncate(s)));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(truncate(other))),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadEncoding(truncate(s)));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        Self::of(Algorithm::Sha256, bytes)
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// True when `bytes` hash to this digest.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        Self::of(self.algorithm, bytes) == *self
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(160).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher that yields a [`Digest`].
#[derive(Clone)]
#[non_exhaustive]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hasher::Sha256(_) => "Hasher(sha256)",
            Hasher::Sha512(_) => "Hasher(sha512)",
        })
    }
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }

    /// The hasher's internal state as bytes, to continue hashing in another process
    /// ([`Hasher::restore`]): an upload whose chunks land on different registry replicas does
    /// not re-read what came before. The bytes are the algorithm's name, a colon, then the
    /// state (a few hundred bytes).
    pub fn save(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        let (name, state): (&str, &[u8]) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256.as_str(), &h.serialize()),
            Hasher::Sha512(h) => (Algorithm::Sha512.as_str(), &h.serialize()),
        };
        let mut out = Vec::with_capacity(name.len() + 1 + state.len());
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(state);
        out
    }

    /// A hasher from [`Hasher::save`]'s bytes; `None` if they are not a saved state.
    pub fn restore(saved: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        let colon = saved.iter().position(|&b| b == b':')?;
        let (name, state) = (&saved[..colon], &saved[colon + 1..]);
        if name == Algorithm::Sha256.as_str().as_bytes() {
            let state = state.try_into().ok()?;
            sha2::Sha256::deserialize(state).ok().map(Hasher::Sha256)
        } else if name == Algorithm::Sha512.as_str().as_bytes() {
            let state = state.try_into().ok()?;
            sha2::Sha512::deserialize(state).ok().map(Hasher::Sha512)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = Digest::parse(empty).expect("valid");
        assert_eq!(d.to_string(), empty);
        assert_eq!(Digest::sha256(b""), d);
        assert!(d.verifies(b""));
        let s512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(Digest::parse(&s512.to_string()).expect("sha512"), s512);
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(matches!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn a_saved_hasher_continues_where_it_stopped() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
            let mut h = alg.hasher();
            h.update(&data[..4_321]);
            let saved = h.save();
            let mut resumed = Hasher::restore(&saved).expect("restores");
            resumed.update(&data[4_321..]);
            assert_eq!(resumed.finish(), Digest::of(alg, &data));
        }
        assert!(Hasher::restore(b"sha256:short").is_none());
        assert!(Hasher::restore(b"md5:").is_none());
        assert!(Hasher::restore(b"").is_none());
    }
}
