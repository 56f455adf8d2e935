//! The scanner's one error type.

/// Why a scan, an import or a lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// Reading failed (a truncated or corrupt layer, a file that cannot be read).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A layer decompresses to more than the limit (a decompression bomb, or a limit to raise).
    #[error("the layer decompresses to more than {limit} bytes; not scanned")]
    LayerTooLarge { limit: u64 },
    /// A layer expands far beyond what real layers do: a decompression bomb.
    #[error(
        "the layer expands {ratio}:1 ({read} bytes from {compressed} compressed), more than the {max}:1 a layer may; refused as a decompression bomb"
    )]
    DecompressionBomb {
        read: u64,
        compressed: u64,
        ratio: u64,
        max: u64,
    },
    /// The vulnerability database failed.
    #[error("vulnerability database {path}: {message}")]
    Database { path: String, message: String },
    /// An OSV record or archive that does not parse.
    #[error("{what}: {message}")]
    Record { what: String, message: String },
}

impl ScanError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ScanError {
        ScanError::Io {
            what: what.into(),
            source,
        }
    }
}
