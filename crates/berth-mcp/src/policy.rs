//! What the server may do: writes, registries, repositories, paths.

use std::path::{Path, PathBuf};

use berth_ops::OpsError;

use crate::McpError;

/// The server's limits. The default allows only tools without side effects, on any registry,
/// with paths under the current directory.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Policy {
    /// Allow tools with side effects (build, push, copy, repository changes, release).
    pub allow_writes: bool,
    /// Registries (`HOST[:PORT]`) tools may reach; empty: any.
    pub registries: Vec<String>,
    /// Repository name patterns (`*` wildcards) tools may write to; empty: any.
    pub repositories: Vec<String>,
    /// Directories paths given to tools must be inside (canonical); empty: the current one.
    pub roots: Vec<PathBuf>,
}

/// A refused call: why, and what to change.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) message: String,
    pub(crate) hint: String,
}

impl Policy {
    /// Makes every root canonical (they must exist); no root means the current directory.
    pub fn with_canonical_roots(mut self) -> Result<Self, McpError> {
        if self.roots.is_empty() {
            self.roots.push(PathBuf::from("."));
        }
        self.roots = self
            .roots
            .iter()
            .map(|r| {
                std::fs::canonicalize(r).map_err(|source| McpError::Root {
                    path: r.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Refuses a tool with side effects in read-only mode.
    pub(crate) fn check_write(&self, tool: &str) -> Result<(), Refusal> {
        if self.allow_writes {
            return Ok(());
        }
        Err(Refusal {
            message: format!("{tool} has side effects and this server is read-only"),
            hint: "start the server with --allow-writes (or BERTH_MCP_ALLOW_WRITES=true, or \
                   `allow_writes = true` in its configuration file)"
                .to_owned(),
        })
    }

    /// Refuses a registry or repository outside the allow-lists. `host` is `HOST[:PORT]`;
    /// `repository` is checked when given (writes).
    pub(crate) fn check_target(
        &self,
        host: Option<&str>,
        repository: Option<&str>,
    ) -> Result<(), Refusal> {
        if let Some(h) = host
            && !self.registries.is_empty()
            && !self.registries.iter().any(|r| r.eq_ignore_ascii_case(h))
        {
            return Err(Refusal {
                message: format!("registry {h} is not in this server's allow-list"),
                hint: format!(
                    "add it with --allow-registry {h} (allowed: {})",
                    self.registries.join(", ")
                ),
            });
        }
        if let Some(repository) = repository
            && !self.repositories.is_empty()
            && !self.repositories.iter().any(|p| wildcard(p, repository))
        {
            return Err(Refusal {
                message: format!("repository {repository} is not in this server's allow-list"),
                hint: format!(
                    "add a pattern with --allow-repository (allowed: {})",
                    self.repositories.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Refuses a path outside the roots; returns it canonical (a path to be created: its
    /// parent must exist and be inside).
    pub(crate) fn confine(&self, path: &str) -> Result<PathBuf, Refusal> {
        let p = Path::new(path);
        let canonical = match std::fs::canonicalize(p) {
            Ok(c) => c,
            Err(_) => {
                let parent = p
                    .parent()
                    .filter(|x| !x.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let name = p.file_name().ok_or_else(|| Refusal {
                    message: format!("{path}: not a usable path"),
                    hint: "give a path inside the server's roots".to_owned(),
                })?;
                match std::fs::canonicalize(parent) {
                    Ok(c) => c.join(name),
                    Err(e) => {
                        return Err(Refusal {
                            message: format!("{path}: {e}"),
                            hint: "give an existing path inside the server's roots".to_owned(),
                        });
                    }
                }
            }
        };
        if self.roots.iter().any(|r| canonical.starts_with(r)) {
            return Ok(canonical);
        }
        Err(Refusal {
            message: format!("{path} is outside this server's roots"),
            hint: format!(
                "give a path under {} or start the server with --root DIR",
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// The registry host and repository name of a reference, for the allow-lists.
pub(crate) fn target_of(reference: &str) -> Result<(String, String), OpsError> {
    let r = berth_ops::endpoint::parse_ref(reference)?;
    Ok((r.registry().to_owned(), r.repository().to_string()))
}

/// `*`-wildcard match.
pub(crate) fn wildcard(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn read_only_allow_lists_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy {
            allow_writes: false,
            registries: vec!["127.0.0.1:5000".into()],
            repositories: vec!["team/*".into()],
            roots: vec![dir.path().to_path_buf()],
        }
        .with_canonical_roots()
        .unwrap();
        assert!(policy.check_write("push").is_err());
        assert!(
            policy
                .check_target(Some("127.0.0.1:5000"), Some("team/app"))
                .is_ok()
        );
        assert!(policy.check_target(Some("example.com"), None).is_err());
        assert!(
            policy
                .check_target(Some("127.0.0.1:5000"), Some("other/app"))
                .is_err()
        );
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let inside = dir.path().join("Dockerfile");
        assert!(policy.confine(inside.to_str().unwrap()).is_ok());
        assert!(
            policy
                .confine(dir.path().join("new.tar").to_str().unwrap())
                .is_ok()
        );
        let climb = format!("{}/../etc/passwd", dir.path().display());
        assert!(policy.confine(&climb).is_err());
        assert!(policy.confine("/etc/passwd").is_err());
        assert!(wildcard("team/*", "team/a/b"));
        assert!(!wildcard("team/*", "teams/a"));
    }
}
