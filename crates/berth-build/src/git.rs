//! `ADD <git repository>`: `https://host/repo.git#ref:subdir`, `git@host:repo.git#ref`,
//! `git://…`, `ssh://…`, and BuildKit's query form `https://host/repo.git?ref=v1&subdir=docs`
//! (`ref`, `tag` or `branch`; `subdir`), as BuildKit reads them.
//!
//! The reference is resolved to a commit with `git ls-remote` on every build (that commit is
//! the step's cache key, so a moved branch re-runs the step and a fixed tag does not). A commit
//! is checked out once into the store's `git/` (fetched shallow when the server can, in full
//! otherwise — dumb HTTP), with submodules, every mtime set to the commit time so layers are
//! reproducible, and `.git` removed unless `--keep-git-dir=true`; the checkout is renamed into
//! place only when complete. `--checksum` names the commit the reference must resolve to. The
//! `git` binary does the work (credentials, SSH agents and proxies stay git's); prompts are
//! off, so a private repository without credentials fails instead of hanging.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::error::{BuildError, io};
use crate::fetch::redact;
use crate::store::{Store, TempDir, clear_dir};

/// A git source as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitSource {
    /// The repository URL (without the fragment).
    pub url: String,
    /// A branch, tag or commit (`#ref`); `None`: the remote's HEAD.
    pub reference: Option<String>,
    /// A directory inside the repository (`#ref:subdir`).
    pub subdir: Option<String>,
}

impl GitSource {
    pub(crate) fn parse(src: &str) -> Result<GitSource, String> {
        let (url, fragment) = match src.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (src, None),
        };
        let (mut reference, mut subdir) = match fragment {
            Some(f) => match f.split_once(':') {
                Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
                None => (f.to_owned(), None),
            },
            None => (String::new(), None),
        };
        // The query form: `?ref=…&subdir=…` (never with a fragment).
        let url = match url.split_once('?') {
            Some((base, query)) => {
                if fragment.is_some() {
                    return Err(format!(
                        "{}: a git URL takes a #fragment or ?query parameters, not both",
                        redact(base)
                    ));
                }
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    match k {
                        "ref" | "tag" | "branch" if reference.is_empty() => {
                            v.clone_into(&mut reference)
                        }
                        "ref" | "tag" | "branch" => {
                            return Err(format!(
                                "{}: more than one of ref, tag and branch",
                                redact(base)
                            ));
                        }
                        "subdir" => subdir = Some(v.to_owned()),
                        other => {
                            return Err(format!(
                                "{}: unknown git URL parameter {other:?} (ref, tag, branch and subdir are known)",
                                redact(base)
                            ));
                        }
                    }
                }
                base
            }
            None => url,
        };
        Ok(GitSource {
            url: url.to_owned(),
            reference: Some(reference).filter(|r| !r.is_empty()),
            subdir: subdir
                .map(|s| s.trim_matches('/').to_owned())
                .filter(|s| !s.is_empty()),
        })
    }

    /// The source for messages and cache facts (no credentials).
    pub(crate) fn shown(&self) -> String {
        let mut s = redact(&self.url);
        if let Some(r) = &self.reference {
            s.push('#');
            s.push_str(r);
        }
        if let Some(d) = &self.subdir {
            s.push_str(if self.reference.is_some() { ":" } else { "#:" });
            s.push_str(d);
        }
        s
    }
}

/// A checkout in the store.
#[derive(Debug, Clone)]
pub(crate) struct Checkout {
    /// The commit.
    pub commit: String,
    /// The directory to copy (the subdirectory when one was named).
    pub dir: PathBuf,
}

fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(args: &[&str], cwd: Option<&Path>) -> Command {
    let mut c = Command::new("git");
    c.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c
}

/// Runs git; its stdout, or an error with the end of its stderr.
fn run(mut c: Command, what: &str, src: &GitSource) -> Result<String, BuildError> {
    let out = c.output().map_err(|e| BuildError::Fetch {
        url: src.shown(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "ADD of a git repository needs git (apt-get install git)".into()
        } else {
            format!("{what}: {e}")
        },
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // git may echo the URL with its credentials: show the redacted one instead.
        let text = tail.join(" / ").replace(&src.url, &redact(&src.url));
        return Err(BuildError::Fetch {
            url: src.shown(),
            reason: format!("{what} failed: {text}"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit a source's reference names now.
fn resolve(src: &GitSource) -> Result<String, BuildError> {
    if let Some(r) = &src.reference
        && is_commit(r)
    {
        return Ok(r.to_ascii_lowercase());
    }
    let wanted = src.reference.clone().unwrap_or_else(|| "HEAD".into());
    let out = run(
        git(&["ls-remote", "--", &src.url, &wanted], None),
        "git ls-remote",
        src,
    )?;
    let refs: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    // Exact names first; an annotated tag by the commit it points at.
    let candidates = [
        wanted.clone(),
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}^{{}}"),
        format!("refs/tags/{wanted}"),
    ];
    for c in &candidates {
        if let Some((sha, _)) = refs.iter().find(|(_, name)| name == c) {
            return Ok((*sha).to_owned());
        }
    }
    Err(BuildError::Fetch {
        url: src.shown(),
        reason: format!("no branch or tag {wanted:?} in the repository"),
    })
}

/// Resolves the source and makes sure its commit is checked out in the store.
pub(crate) fn checkout(
    store: &Store,
    src: &GitSource,
    keep_git_dir: bool,
    checksum: Option<&str>,
) -> Result<Checkout, BuildError> {
    let commit = resolve(src)?;
    if let Some(want) = checksum {
        let w = want.trim().to_ascii_lowercase();
        if w.len() < 7 || !commit.starts_with(&w) {
            return Err(BuildError::Fetch {
                url: src.shown(),
                reason: format!("--checksum={want} but the reference is at commit {commit}"),
            });
        }
    }
    let base = store.root().join("git");
    fs::create_dir_all(&base).map_err(io(&base))?;
    let name = format!("{commit}{}", if keep_git_dir { "-git" } else { "" });
    let dir = base.join(&name);
    if !dir.is_dir() {
        let tmp = store.temp_dir("git")?;
        fetch_into(&tmp, src, &commit, keep_git_dir)?;
        match fs::rename(tmp.path(), &dir) {
            Ok(()) => {
                tmp.keep();
                crate::store::sync_dir(&base)?;
            }
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    // Its last use, for `berth builder prune --keep-duration` (best effort).
    let _ = fs::write(base.join(format!("{name}.used")), b"");
    let chosen = match &src.subdir {
        Some(s) => {
            let p = crate::context::resolve_in(&dir, Path::new(s), true).map_err(|p| {
                BuildError::Fetch {
                    url: src.shown(),
                    reason: format!("{s}: {}", p.reason(false)),
                }
            })?;
            if !p.is_dir() {
                return Err(BuildError::Fetch {
                    url: src.shown(),
                    reason: format!("{s}: not a directory in commit {commit}"),
                });
            }
            p
        }
        None => dir,
    };
    Ok(Checkout {
        commit,
        dir: chosen,
    })
}

fn fetch_into(
    tmp: &TempDir,
    src: &GitSource,
    commit: &str,
    keep_git_dir: bool,
) -> Result<(), BuildError> {
    let d = tmp.path();
    run(git(&["init", "-q"], Some(d)), "git init", src)?;
    let what = src.reference.clone().unwrap_or_else(|| "HEAD".into());
    // Shallow when the server can (smart HTTP, SSH); a dumb HTTP server cannot, so fetch all.
    let shallow = run(
        git(
            &["fetch", "-q", "--depth", "1", "--", &src.url, &what],
            Some(d),
        ),
        "git fetch",
        src,
    );
    if shallow.is_err() {
        run(
            git(
                &[
                    "fetch",
                    "-q",
                    "--tags",
                    "--",
                    &src.url,
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
                Some(d),
            ),
            "git fetch",
            src,
        )?;
    }
    run(
        git(&["checkout", "-q", "--detach", commit], Some(d)),
        "git checkout",
        src,
    )?;
    run(
        git(
            &[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth",
                "1",
            ],
            Some(d),
        ),
        "git submodule update",
        src,
    )?;
    let time = run(
        git(&["log", "-1", "--format=%ct", commit], Some(d)),
        "git log",
        src,
    )?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(time.trim().parse().unwrap_or(0));
    if !keep_git_dir {
        let g = d.join(".git");
        clear_dir(&g);
        fs::remove_dir(&g).map_err(io(&g))?;
    }
    set_times(d, when);
    Ok(())
}

/// Every file and directory's mtime to `when` (symlinks themselves are not followed).
fn set_times(dir: &Path, when: SystemTime) {
    let ts = rustix::fs::Timestamps {
        last_access: to_timespec(when),
        last_modification: to_timespec(when),
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
                let _ = rustix::fs::utimensat(
                    rustix::fs::CWD,
                    e.path(),
                    &ts,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                );
            }
        }
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            &d,
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

fn to_timespec(t: SystemTime) -> rustix::fs::Timespec {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_buildkit_reads_them() {
        assert_eq!(
            GitSource::parse("https://github.com/moby/buildkit.git#v0.10.1:frontend").unwrap(),
            GitSource {
                url: "https://github.com/moby/buildkit.git".into(),
                reference: Some("v0.10.1".into()),
                subdir: Some("frontend".into()),
            }
        );
        let s = GitSource::parse("git@github.com:moby/buildkit.git").unwrap();
        assert_eq!(s.reference, None);
        assert_eq!(s.subdir, None);
        let s = GitSource::parse("https://u:pw@host/r.git#:docs/").unwrap();
        assert_eq!(s.reference, None);
        assert_eq!(s.subdir.as_deref(), Some("docs"));
        assert_eq!(s.shown(), "https://host/r.git#:docs");
        // BuildKit's query form reads the same as the fragment.
        assert_eq!(
            GitSource::parse("https://github.com/moby/buildkit.git?ref=v0.10.1&subdir=frontend/")
                .unwrap(),
            GitSource::parse("https://github.com/moby/buildkit.git#v0.10.1:frontend").unwrap()
        );
        assert_eq!(
            GitSource::parse("https://h/r.git?tag=v1")
                .unwrap()
                .reference
                .as_deref(),
            Some("v1")
        );
        for bad in [
            "https://h/r.git?ref=a&branch=b",
            "https://h/r.git?depth=1",
            "https://h/r.git?ref=a#b",
        ] {
            assert!(GitSource::parse(bad).is_err(), "{bad}");
        }
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main"));
    }
}
