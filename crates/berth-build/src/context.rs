//! Where COPY and ADD read from: the build context (minus what `.dockerignore` excludes), a
//! named context directory, or the root filesystem of a stage or image. Paths are resolved as
//! BuildKit does: inside the tree's root, symlinks followed but never out of it (`..` stops at
//! the root, absolute link targets start at it), wildcards per path component with Go's
//! `filepath.Match`.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use berth_dockerfile::ignore::DockerIgnore;
use berth_oci::{Algorithm, Digest};

use crate::error::{BuildError, io};

/// How many symlinks one resolution may follow.
const MAX_LINKS: usize = 40;

/// A directory tree COPY reads from.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    /// `.dockerignore` for the build context; `None` for rootfs trees.
    ignore: Option<DockerIgnore>,
}

/// Why a source cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceProblem {
    /// Nothing there (or excluded by `.dockerignore`).
    NotFound,
    /// The path climbs out of the context (`../x`).
    Outside,
    /// Too many levels of symbolic links.
    Loop,
}

impl SourceProblem {
    /// The user-facing reason.
    pub fn reason(&self, context: bool) -> String {
        match self {
            SourceProblem::NotFound if context => {
                "not found in the build context (or excluded by .dockerignore)".into()
            }
            SourceProblem::NotFound => "no such file or directory".into(),
            SourceProblem::Outside => "is outside the build context".into(),
            SourceProblem::Loop => "too many levels of symbolic links".into(),
        }
    }
}

/// A matched source: its path relative to the tree and where it is on the host.
#[derive(Debug, Clone)]
pub struct Match {
    /// Relative to the tree's root, as matched (before following a final symlink).
    pub rel: PathBuf,
    /// The resolved host path (symlinks followed inside the root).
    pub host: PathBuf,
    /// Its metadata (of the resolved path).
    pub meta: Metadata,
}

/// One file or directory a COPY will write.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the copied source (empty for the source itself).
    pub rel: PathBuf,
    /// Where it is on the host.
    pub host: PathBuf,
    /// Its metadata (not following symlinks, except for the source root).
    pub meta: Metadata,
}

impl Tree {
    /// The build context at `root` with its ignore rules.
    pub fn context(root: &Path, ignore: DockerIgnore) -> Result<Tree, BuildError> {
        let root = fs::canonicalize(root).map_err(io(root))?;
        Ok(Tree {
            root,
            ignore: Some(ignore),
        })
    }

    /// A root filesystem (a mounted stage or image) or a named context directory.
    pub fn rootfs(root: &Path) -> Tree {
        Tree {
            root: root.to_path_buf(),
            ignore: None,
        }
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the build context (with ignore rules).
    pub fn is_context(&self) -> bool {
        self.ignore.is_some()
    }

    fn excluded(&self, rel: &Path) -> bool {
        match &self.ignore {
            Some(ig) => rel
                .to_str()
                .is_some_and(|s| !s.is_empty() && ig.is_excluded(s)),
            None => false,
        }
    }

    /// The sources a COPY argument names: a path or a pattern, relative to the root (a leading
    /// `/` is the root). Fails when nothing matches.
    pub fn matches(&self, src: &str) -> Result<Vec<Match>, SourceProblem> {
        let comps = clean(src, self.is_context())?;
        let mut found = Vec::new();
        self.glob(&comps, PathBuf::new(), &mut found)?;
        if found.is_empty() {
            return Err(SourceProblem::NotFound);
        }
        found.sort_by(|a, b| {
            a.rel
                .as_os_str()
                .as_bytes()
                .cmp(b.rel.as_os_str().as_bytes())
        });
        Ok(found)
    }

    fn glob(
        &self,
        comps: &[String],
        prefix: PathBuf,
        out: &mut Vec<Match>,
    ) -> Result<(), SourceProblem> {
        let Some((first, rest)) = comps.split_first() else {
            return self.found(prefix, out);
        };
        if !has_meta(first) {
            return self.glob(rest, prefix.join(unescape(first)), out);
        }
        let dir = match self.resolve(&prefix, true) {
            Ok(d) => d,
            Err(SourceProblem::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let Some(n) = name.to_str() else { continue };
            if go_match(first, n) {
                self.glob(rest, prefix.join(n), out)?;
            }
        }
        Ok(())
    }

    /// The whole path matched: resolve it (following symlinks inside the root).
    fn found(&self, prefix: PathBuf, out: &mut Vec<Match>) -> Result<(), SourceProblem> {
        if self.excluded(&prefix) {
            return Ok(());
        }
        match self.resolve(&prefix, true) {
            Ok(host) => {
                if let Ok(meta) = fs::metadata(&host) {
                    out.push(Match {
                        rel: prefix,
                        host,
                        meta,
                    });
                }
                Ok(())
            }
            Err(SourceProblem::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The host path of `rel`, symlinks resolved inside the root (`follow_last`: the final
    /// component too).
    pub fn resolve(&self, rel: &Path, follow_last: bool) -> Result<PathBuf, SourceProblem> {
        resolve_in(&self.root, rel, follow_last)
    }

    /// Everything under a matched source, itself first (files: just itself), each directory's
    /// entries sorted, `.dockerignore` and `exclude` patterns (relative to the source) applied.
    pub fn walk(
        &self,
        m: &Match,
        exclude: Option<&DockerIgnore>,
    ) -> Result<Vec<Entry>, BuildError> {
        let mut out = vec![Entry {
            rel: PathBuf::new(),
            host: m.host.clone(),
            meta: m.meta.clone(),
        }];
        if m.meta.is_dir() {
            self.walk_dir(&m.rel, &m.host, Path::new(""), exclude, &mut out)?;
        }
        Ok(out)
    }

    fn walk_dir(
        &self,
        tree_rel: &Path,
        host: &Path,
        rel: &Path,
        exclude: Option<&DockerIgnore>,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let mut names: Vec<_> = fs::read_dir(host)
            .map_err(io(host))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(host))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let r = rel.join(&name);
            let t = tree_rel.join(&r);
            let h = host.join(&name);
            let meta = fs::symlink_metadata(&h).map_err(io(&h))?;
            let ignored = self.excluded(&t)
                || exclude.is_some_and(|x| r.to_str().is_some_and(|s| x.is_excluded(s)));
            if ignored {
                // An excluded directory is still walked when an exception may re-include
                // something below it; it is then created only for what it holds.
                let reinclude =
                    meta.is_dir()
                        && (self.ignore.as_ref().is_some_and(|ig| {
                            t.to_str().is_some_and(|s| ig.may_reinclude_below(s))
                        }) || exclude
                            .is_some_and(|x| r.to_str().is_some_and(|s| x.may_reinclude_below(s))));
                if reinclude {
                    let before = out.len();
                    out.push(Entry {
                        rel: r.clone(),
                        host: h.clone(),
                        meta: meta.clone(),
                    });
                    self.walk_dir(tree_rel, &h, &r, exclude, out)?;
                    if out.len() == before + 1 {
                        out.pop();
                    }
                }
                continue;
            }
            out.push(Entry {
                rel: r.clone(),
                host: h.clone(),
                meta: meta.clone(),
            });
            if meta.is_dir() {
                self.walk_dir(tree_rel, &h, &r, exclude, out)?;
            }
        }
        Ok(())
    }
}

/// Splits a source path into components, dropping `.` and a leading `/`. In the build context
/// `..` that would climb above the root is refused; in a rootfs it stops at `/` as in a chroot.
fn clean(src: &str, context: bool) -> Result<Vec<String>, SourceProblem> {
    let mut out: Vec<String> = Vec::new();
    for c in src.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() && context {
                    return Err(SourceProblem::Outside);
                }
            }
            other => out.push(other.to_owned()),
        }
    }
    Ok(out)
}

/// Resolves `rel` under `root` as if `root` were `/`: symlinks followed, absolute targets
/// taken from the root, `..` never above it.
pub fn resolve_in(root: &Path, rel: &Path, follow_last: bool) -> Result<PathBuf, SourceProblem> {
    let mut pending: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&name);
        let is_last = pending.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(SourceProblem::Loop);
                }
                let target = fs::read_link(&candidate).map_err(|_| SourceProblem::NotFound)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => resolved.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The rest does not exist yet; the caller decides whether that is fine.
                resolved.push(name);
                resolved.extend(pending.drain(..).rev().filter(|n| n != ".."));
                let mut p = root.to_path_buf();
                p.extend(&resolved);
                if fs::symlink_metadata(&p).is_err() {
                    return Err(SourceProblem::NotFound);
                }
                return Ok(p);
            }
            Err(_) => return Err(SourceProblem::NotFound),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&resolved);
    Ok(p)
}

/// Like [`resolve_in`], but for a destination that may not exist yet: returns the host path
/// where it would be, with every existing parent's symlinks resolved inside the root.
pub fn resolve_dest(root: &Path, rel: &Path) -> Result<PathBuf, SourceProblem> {
    let mut existing = root.to_path_buf();
    let comps: Vec<_> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut done = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let next = done.join(c);
        match resolve_in(root, &next, true) {
            Ok(p) => {
                existing = p.clone();
                done = p
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
            }
            Err(SourceProblem::NotFound) => {
                let mut p = existing;
                for rest in &comps[i..] {
                    if rest == ".." {
                        if p != root {
                            p.pop();
                        }
                    } else {
                        p.push(rest);
                    }
                }
                return Ok(p);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(existing)
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[a-z]`, `[^…]`, `\` escapes.
pub fn go_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with single-star backtracking (components contain no '/').
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni]) {
                        if ok {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else {
                        return false;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {}
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A `[…]` class at the start of `p`: whether `c` matches and the class's length; `None` when
/// malformed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('^' | '!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            let h = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            h
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

/// The content digest of what a COPY reads: every entry's relative path, type, permission
/// bits, symlink target and file content (not mtimes or owners — COPY resets owners, and a
/// `touch` must not invalidate the cache, as in BuildKit). Also returns each file's own digest
/// (for explaining misses).
pub fn digest_entries(
    sources: &[(String, Vec<Entry>)],
) -> Result<(Digest, Vec<(String, String)>), BuildError> {
    let mut h = Algorithm::Sha256.hasher();
    let mut files = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    for (name, entries) in sources {
        h.update(b"source\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        for e in entries {
            let rel = e.rel.as_os_str().as_bytes();
            let ft = e.meta.file_type();
            let kind: &[u8] = if ft.is_dir() {
                b"d"
            } else if ft.is_symlink() {
                b"l"
            } else if ft.is_file() {
                b"f"
            } else {
                b"o"
            };
            h.update(rel);
            h.update(b"\0");
            h.update(kind);
            h.update(format!("{:o}\0", e.meta.permissions().mode() & 0o7777).as_bytes());
            let shown = if e.rel.as_os_str().is_empty() {
                name.clone()
            } else {
                Path::new(name).join(&e.rel).to_string_lossy().into_owned()
            };
            if ft.is_symlink() {
                let t = fs::read_link(&e.host).map_err(io(&e.host))?;
                h.update(t.as_os_str().as_bytes());
                h.update(b"\0");
            } else if ft.is_file() {
                let mut fh = Algorithm::Sha256.hasher();
                let mut f = fs::File::open(&e.host).map_err(io(&e.host))?;
                loop {
                    let n = f.read(&mut buf).map_err(io(&e.host))?;
                    if n == 0 {
                        break;
                    }
                    fh.update(&buf[..n]);
                }
                let d = fh.finish();
                h.update(d.hex().as_bytes());
                h.update(b"\0");
                files.push((shown, d.to_string()));
            } else if !ft.is_dir() {
                h.update(format!("{}\0", e.meta.rdev()).as_bytes());
            }
        }
    }
    Ok((h.finish(), files))
}

/// The name of a path's last component, for messages.
pub fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| OsStr::to_string_lossy(n).into_owned())
        .unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_match_follows_filepath_match() {
        assert!(go_match("*.rs", "main.rs"));
        assert!(!go_match("*.rs", "main.rc"));
        assert!(go_match("a?c", "abc"));
        assert!(go_match("[a-c]x", "bx"));
        assert!(!go_match("[^a-c]x", "bx"));
        assert!(go_match("[!a-c]x", "dx"));
        assert!(go_match("\\*", "*"));
        assert!(!go_match("\\*", "a"));
        assert!(go_match("*", ""));
        assert!(go_match("a*b*c", "aXbYbZc"));
        assert!(!go_match("[", "["));
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../etc", root.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in(root, Path::new("abs"), true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in(root, Path::new("up/passwd"), true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in(root, Path::new("loop"), true),
            Err(SourceProblem::Loop)
        );
        assert_eq!(
            resolve_dest(root, Path::new("up/new/file")).unwrap(),
            root.join("etc/new/file")
        );
        assert_eq!(clean("../x", true), Err(SourceProblem::Outside));
        assert_eq!(clean("a/../../x", false).unwrap(), vec!["x".to_string()]);
    }

    #[test]
    fn context_matches_respect_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/a.rs"), "a").unwrap();
        fs::write(root.join("src/b.rs"), "b").unwrap();
        fs::write(root.join("src/notes.txt"), "n").unwrap();
        let ig = DockerIgnore::parse("src/b.rs\n").unwrap();
        let t = Tree::context(root, ig).unwrap();
        let m = t.matches("src/*.rs").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rel, Path::new("src/a.rs"));
        assert_eq!(t.matches("src/b.rs").unwrap_err(), SourceProblem::NotFound);
        let all = t.matches("src").unwrap();
        let entries = t.walk(&all[0], None).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.rel.clone()).collect();
        assert_eq!(
            names,
            vec![
                PathBuf::new(),
                PathBuf::from("a.rs"),
                PathBuf::from("notes.txt")
            ]
        );
        assert_eq!(t.matches("../etc").unwrap_err(), SourceProblem::Outside);
    }
}
