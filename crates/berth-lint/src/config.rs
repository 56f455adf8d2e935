//! The configuration: hadolint's `.hadolint.yaml` keys, read the same way from berth's own
//! `.berth-lint.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Severity, Threshold};

/// Biggest configuration file read (a config is a few hundred bytes; this bounds a hostile one).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What a label's value must look like (`label-schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LabelType {
    /// Any non-empty text.
    Text,
    /// An absolute URL.
    Url,
    /// An SPDX license identifier.
    Spdx,
    /// An RFC 3339 timestamp.
    Rfc3339,
    /// A semantic version.
    Semver,
    /// A git commit hash (short or full).
    Hash,
    /// An e-mail address.
    Email,
}

/// How findings are judged and filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Rules never reported.
    pub ignored: Vec<String>,
    /// Severity per rule, replacing the default.
    pub overrides: BTreeMap<String, Severity>,
    /// Findings at or above this fail the run (default: `info`, as hadolint).
    pub failure_threshold: Threshold,
    /// Never fail the run.
    pub no_fail: bool,
    /// Registries `FROM` may use (DL3026); empty: any.
    pub trusted_registries: Vec<String>,
    /// Labels every image must carry, with their value types (DL3049, DL3052–DL3058).
    pub label_schema: BTreeMap<String, LabelType>,
    /// Labels outside the schema are findings (DL3050).
    pub strict_labels: bool,
    /// `# hadolint ignore=` pragmas have no effect.
    pub disable_ignore_pragma: bool,
    /// The output format named in the file, if any.
    pub format: Option<String>,
    pub no_color: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ignored: Vec::new(),
            overrides: BTreeMap::new(),
            failure_threshold: Threshold::At(Severity::Info),
            no_fail: false,
            trusted_registries: Vec::new(),
            label_schema: BTreeMap::new(),
            strict_labels: false,
            disable_ignore_pragma: false,
            format: None,
            no_color: false,
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    ignored: Option<Vec<String>>,
    #[serde(default, rename = "override")]
    overrides: Option<RawOverride>,
    #[serde(default)]
    failure_threshold: Option<String>,
    #[serde(default)]
    no_fail: Option<bool>,
    #[serde(default, alias = "trusted-registries", rename = "trustedRegistries")]
    trusted_registries: Option<Vec<String>>,
    #[serde(default)]
    label_schema: Option<BTreeMap<String, LabelType>>,
    #[serde(default)]
    strict_labels: Option<bool>,
    #[serde(default)]
    disable_ignore_pragma: Option<bool>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    no_color: Option<bool>,
    #[serde(default)]
    verbose: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default)]
    error: Option<Vec<String>>,
    #[serde(default)]
    warning: Option<Vec<String>>,
    #[serde(default)]
    info: Option<Vec<String>>,
    #[serde(default)]
    style: Option<Vec<String>>,
}

impl Config {
    /// Reads a configuration file (YAML; an empty file is the default configuration).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the YAML text of a configuration file.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        let mut config = Config::default();
        if text.trim().is_empty() {
            return Ok(config);
        }
        let raw: Option<RawConfig> = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let Some(raw) = raw else {
            return Ok(config);
        };
        config.apply(raw)?;
        Ok(config)
    }

    fn apply(&mut self, raw: RawConfig) -> Result<(), String> {
        if let Some(ignored) = raw.ignored {
            self.ignored = ignored;
        }
        if let Some(o) = raw.overrides {
            for (severity, codes) in [
                (Severity::Error, o.error),
                (Severity::Warning, o.warning),
                (Severity::Info, o.info),
                (Severity::Style, o.style),
            ] {
                for code in codes.unwrap_or_default() {
                    self.overrides.insert(code, severity);
                }
            }
        }
        if let Some(t) = raw.failure_threshold {
            self.failure_threshold = Threshold::parse(&t).ok_or_else(|| {
                format!(
                    "failure-threshold: unknown level {t:?} (error, warning, info, style, ignore, none)"
                )
            })?;
        }
        if let Some(v) = raw.no_fail {
            self.no_fail = v;
        }
        if let Some(v) = raw.trusted_registries {
            self.trusted_registries = v;
        }
        if let Some(v) = raw.label_schema {
            self.label_schema = v;
        }
        if let Some(v) = raw.strict_labels {
            self.strict_labels = v;
        }
        if let Some(v) = raw.disable_ignore_pragma {
            self.disable_ignore_pragma = v;
        }
        if let Some(v) = raw.format {
            self.format = Some(v);
        }
        if let Some(v) = raw.no_color {
            self.no_color = v;
        }
        let _ = raw.verbose;
        Ok(())
    }

    /// The severity a rule reports at under this configuration (`Ignore` when ignored).
    pub fn severity_of(&self, code: &str, default: Severity) -> Severity {
        if self.ignored.iter().any(|c| c == code) {
            return Severity::Ignore;
        }
        self.overrides.get(code).copied().unwrap_or(default)
    }
}

/// The configuration file that applies when none is named, as hadolint searches: `.hadolint.yaml`
/// / `.hadolint.yml` (or berth's `.berth-lint.yaml`) in `cwd`, then `$XDG_CONFIG_HOME/hadolint.yaml`,
/// then `~/.config/hadolint.yaml`, `~/.hadolint/hadolint.yaml`, `~/.hadolint.yaml`.
pub fn find_config_file(
    cwd: &Path,
    xdg_config_home: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    let mut candidates = vec![
        cwd.join(".berth-lint.yaml"),
        cwd.join(".hadolint.yaml"),
        cwd.join(".hadolint.yml"),
    ];
    if let Some(x) = xdg_config_home {
        candidates.push(x.join("hadolint.yaml"));
        candidates.push(x.join("hadolint.yml"));
    }
    if let Some(h) = home {
        candidates.push(h.join(".config/hadolint.yaml"));
        candidates.push(h.join(".config/hadolint.yml"));
        candidates.push(h.join(".hadolint/hadolint.yaml"));
        candidates.push(h.join(".hadolint/hadolint.yml"));
        candidates.push(h.join(".hadolint.yaml"));
        candidates.push(h.join(".hadolint.yml"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key() {
        let c = Config::from_yaml(
            "failure-threshold: warning\nignored: [DL3008, DL3009]\noverride:\n  error: [DL3015]\n  style:\n    - DL3059\ntrustedRegistries:\n  - docker.io\n  - '*.ecr.aws'\nlabel-schema:\n  maintainer: email\n  version: semver\nstrict-labels: true\nno-fail: false\ndisable-ignore-pragma: true\nformat: json\nno-color: true\n",
        )
        .unwrap();
        assert_eq!(c.failure_threshold, Threshold::At(Severity::Warning));
        assert_eq!(c.ignored, vec!["DL3008", "DL3009"]);
        assert_eq!(c.overrides.get("DL3015"), Some(&Severity::Error));
        assert_eq!(c.overrides.get("DL3059"), Some(&Severity::Style));
        assert_eq!(c.trusted_registries, vec!["docker.io", "*.ecr.aws"]);
        assert_eq!(c.label_schema.get("maintainer"), Some(&LabelType::Email));
        assert!(c.strict_labels && c.disable_ignore_pragma && c.no_color && !c.no_fail);
        assert_eq!(c.format.as_deref(), Some("json"));
        assert_eq!(c.severity_of("DL3008", Severity::Warning), Severity::Ignore);
        assert_eq!(c.severity_of("DL3015", Severity::Info), Severity::Error);
        assert_eq!(c.severity_of("DL3000", Severity::Error), Severity::Error);
    }

    #[test]
    fn refuses_unknown_keys_and_levels() {
        assert!(Config::from_yaml("ignore: [DL3008]\n").is_err());
        assert!(Config::from_yaml("failure-threshold: fatal\n").is_err());
        assert!(Config::from_yaml("label-schema:\n  a: colour\n").is_err());
        assert!(Config::from_yaml("ignored: [\n").is_err());
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
        assert_eq!(Config::from_yaml("# nothing\n").unwrap(), Config::default());
    }
}
