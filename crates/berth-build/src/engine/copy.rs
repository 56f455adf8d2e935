//! COPY and ADD: sources from the context, a stage, an image or a named context, and ADD's
//! remote ones (URLs, git), copied or unpacked into an overlay of the state.

use super::*;

impl Builder {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_step(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        step: &Step<'_>,
        c: &berth_dockerfile::Copy,
        state: &mut State,
        scope: &StageScope<'_>,
        states: &HashMap<usize, State>,
    ) -> Result<(), BuildError> {
        let (si, ins) = (step.si, step.ins);
        let line = ins.span.start.line;
        let bad = |reason: String| BuildError::Instruction {
            line,
            instruction: short(&ins.original),
            reason,
        };
        let ex = |w: &str| scope.expand(w).map_err(|e| bad(e.to_string()));
        let is_add = ins.keyword == Keyword::Add;
        let dest_raw = ex(&c.dest.text)?;
        let dest = {
            let joined = join_workdir(&state.config.workdir(), &dest_raw);
            let mut d = clean_abs(&joined);
            if (dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".")
                && !d.ends_with('/')
            {
                d.push('/');
            }
            d
        };
        let chown = c.chown.as_deref().map(ex).transpose()?;
        // A linked step sees an empty filesystem: names in --chown are resolved against the
        // stage's /etc/passwd and /etc/group now, and the key holds the numbers.
        let chown = match chown {
            Some(spec) if step.linked && !spec.split(':').all(|p| p.parse::<u32>().is_ok()) => {
                let ro = self.mount_readonly(state)?;
                let (u, g) = users::chown(&ro.root, &spec).map_err(|e| bad(e.to_string()))?;
                Some(format!("{u}:{g}"))
            }
            other => other,
        };
        let chmod = match c.chmod.as_deref().map(ex).transpose()? {
            Some(s) => Some(Chmod::parse(&s).map_err(bad)?),
            None => None,
        };
        let exclude = if c.exclude.is_empty() {
            None
        } else {
            let pats: Vec<String> = c.exclude.iter().map(|e| ex(e)).collect::<Result<_, _>>()?;
            Some(DockerIgnore::parse(&pats.join("\n")).map_err(|e| bad(e.to_string()))?)
        };
        let mut sources_raw: Vec<String> = Vec::new();
        for w in &c.sources {
            sources_raw.push(ex(&w.text)?);
        }
        let all_sources = sources_raw
            .iter()
            .map(|s| fetch::redact(s))
            .collect::<Vec<_>>()
            .join(" ");
        let remote = self.remote_sources(
            is_add,
            &mut sources_raw,
            c.checksum.as_deref().map(ex).transpose()?,
            c.keep_git_dir.unwrap_or(false),
            c.inline.len(),
            &bad,
        )?;
        let many = sources_raw.len() + remote.len() + c.inline.len() > 1
            || sources_raw.iter().any(|s| s.contains(['*', '?', '[']));
        if many && !dest.ends_with('/') {
            return Err(bad(
                "When using COPY with more than one source file, the destination must be a directory and end with a /".into(),
            ));
        }
        // Where the sources come from.
        let from = c.from.as_deref().map(ex).transpose()?;
        let platform = state.platform.clone();
        let src = self.source_tree(ctx, graph, states, si, from.as_deref(), &platform, ins)?;
        let (tree, from_key) = (&src.tree, src.key.clone());
        // Match and walk every source now: the cache key needs their content.
        let mut matched: Vec<(Match, Vec<Entry>)> = Vec::new();
        let mut named: Vec<(String, Vec<Entry>)> = Vec::new();
        for s in &sources_raw {
            let ms = tree.matches(s).map_err(|p| BuildError::Source {
                line,
                instruction: short(&ins.original),
                path: s.clone(),
                reason: p.reason(tree.is_context()),
            })?;
            for m in ms {
                let entries = tree.walk(&m, exclude.as_ref())?;
                named.push((m.rel.display().to_string(), entries.clone()));
                matched.push((m, entries));
            }
        }
        let mut facts = StepFacts::default();
        facts.fact(
            "instruction",
            format!("{} {} {}", ins.keyword, all_sources, dest),
        );
        if let Some(o) = &chown {
            facts.fact("chown", o.clone());
        }
        if let Some(m) = &c.chmod {
            facts.fact("chmod", m.clone());
        }
        if c.parents {
            facts.fact("parents", "true");
        }
        if !c.exclude.is_empty() {
            facts.fact("exclude", c.exclude.join(","));
        }
        if let Some(u) = c.unpack {
            facts.fact("unpack", u.to_string());
        }
        for (u, d) in remote.urls.iter().zip(&remote.downloads) {
            facts.fact(
                &format!("download {}", fetch::redact(u)),
                d.digest.to_string(),
            );
        }
        for (g, co) in remote.gits.iter().zip(&remote.checkouts) {
            facts.fact(&format!("git {}", g.shown()), co.commit.clone());
        }
        if !remote.gits.is_empty() {
            facts.fact("keep-git-dir", remote.keep_git_dir.to_string());
        }
        for inline in &c.inline {
            let content = if inline.expand {
                scope
                    .expand(&inline.content)
                    .unwrap_or_else(|_| inline.content.clone())
            } else {
                inline.content.clone()
            };
            facts.fact(&format!("heredoc {}", inline.name), content);
        }
        let inputs = match &from_key {
            Some(k) => {
                facts.fact("source stage", k.to_string());
                let (d, _) = digest_entries(&named)?;
                d
            }
            None => {
                let (d, files) = digest_entries(&named)?;
                facts.files = files.into_iter().collect();
                d
            }
        };
        let inline_files: Vec<(String, String)> = c
            .inline
            .iter()
            .map(|i| {
                let content = if i.expand {
                    scope
                        .expand(&i.content)
                        .unwrap_or_else(|_| i.content.clone())
                } else {
                    i.content.clone()
                };
                (i.name.clone(), content)
            })
            .collect();
        let parents = c.parents;
        let result = self.fs_step(ctx, step, state, facts, Some(&inputs), |root, _work| {
            let owner = match &chown {
                Some(spec) => Some(users::chown(root, spec).map_err(|e| bad(e.to_string()))?),
                None => None,
            };
            // Staged sources (heredocs, checkouts) go in as COPY puts them.
            let copy_plain = |ms: &[(Match, Vec<Entry>)]| {
                copy_into(
                    root,
                    &CopySpec {
                        dest: &dest,
                        sources: ms,
                        owner,
                        chmod: chmod.as_ref(),
                        parents: false,
                        many,
                    },
                )
            };
            if !inline_files.is_empty() {
                let staging = self.store.temp_dir("heredoc")?;
                for (name, content) in &inline_files {
                    let p = staging.path().join(name);
                    fs::write(&p, content).map_err(io(&p))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(io(&p))?;
                }
                let t = Tree::rootfs(staging.path());
                let mut ms = Vec::new();
                for (name, _) in &inline_files {
                    ms.extend(walked(&t, name, &bad)?);
                }
                copy_plain(&ms)?;
            }
            if !remote.downloads.is_empty() {
                let staging = self.store.temp_dir("download")?;
                let mut ms = Vec::new();
                for (i, d) in remote.downloads.iter().enumerate() {
                    let dir = staging.path().join(i.to_string());
                    fs::create_dir(&dir).map_err(io(&dir))?;
                    let p = dir.join(&d.name);
                    fs::copy(&d.blob, &p).map_err(io(&p))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).map_err(io(&p))?;
                    if let Some(t) = d.modified {
                        let f = fs::File::options().write(true).open(&p).map_err(io(&p))?;
                        f.set_modified(t).map_err(io(&p))?;
                    }
                    ms.extend(walked(&Tree::rootfs(&dir), &d.name, &bad)?);
                }
                let unpack = c.unpack.unwrap_or(false);
                add_into(root, &dest, &ms, owner, chmod.as_ref(), many, unpack, &bad)?;
            }
            if !remote.checkouts.is_empty() {
                let mut ms = Vec::new();
                for co in &remote.checkouts {
                    ms.extend(walked(&Tree::rootfs(&co.dir), ".", &bad)?);
                }
                copy_plain(&ms)?;
            }
            if is_add {
                let unpack = c.unpack.unwrap_or(true);
                if matched.is_empty() {
                    return Ok(());
                }
                return add_into(
                    root,
                    &dest,
                    &matched,
                    owner,
                    chmod.as_ref(),
                    many,
                    unpack,
                    &bad,
                );
            }
            copy_into(
                root,
                &CopySpec {
                    dest: &dest,
                    sources: &matched,
                    owner,
                    chmod: chmod.as_ref(),
                    parents,
                    many,
                },
            )
            .map_err(|e| with_line(e, line, &ins.original))
        });
        drop(src);
        result
    }

    /// ADD's remote sources, taken out of `sources`: URLs downloaded and git references
    /// checked out now (their content is part of the step's key), with BuildKit's rules for
    /// `--checksum` (one remote source, nothing else) and for URLs in COPY.
    #[allow(clippy::too_many_arguments)]
    fn remote_sources(
        &self,
        is_add: bool,
        sources: &mut Vec<String>,
        checksum: Option<String>,
        keep_git_dir: bool,
        inline: usize,
        bad: &dyn Fn(String) -> BuildError,
    ) -> Result<Remote, BuildError> {
        let mut remote = Remote {
            keep_git_dir,
            ..Remote::default()
        };
        if !is_add {
            if let Some(u) = sources.iter().find(|s| s.contains("://")) {
                return Err(bad(format!(
                    "{}: source can't be a URL for COPY (ADD downloads URLs)",
                    fetch::redact(u)
                )));
            }
            return Ok(remote);
        }
        remote.gits = sources
            .iter()
            .filter(|s| fetch::is_git(s))
            .map(|s| git::GitSource::parse(s).map_err(&bad))
            .collect::<Result<_, _>>()?;
        sources.retain(|s| !fetch::is_git(s));
        remote.urls = sources
            .iter()
            .filter(|s| fetch::is_http(s))
            .cloned()
            .collect();
        sources.retain(|s| !fetch::is_http(s));
        if let Some(u) = sources.iter().find(|s| s.contains("://")) {
            return Err(bad(format!(
                "{}: unsupported URL scheme (http, https and git repositories are)",
                fetch::redact(u)
            )));
        }
        if checksum.is_some() {
            if remote.len() == 0 {
                return Err(bad(
                    "checksum can't be specified for non-HTTP(S) sources".into()
                ));
            }
            if remote.len() > 1 || !sources.is_empty() || inline > 0 {
                return Err(bad(
                    "checksum can't be specified for multiple sources".into()
                ));
            }
        }
        let url_checksum = match &checksum {
            Some(v) if !remote.urls.is_empty() => {
                Some(Digest::parse(v).map_err(|e| bad(format!("invalid checksum {v:?}: {e}")))?)
            }
            _ => None,
        };
        for g in &remote.gits {
            remote.checkouts.push(git::checkout(
                &self.store,
                g,
                keep_git_dir,
                checksum.as_deref(),
            )?);
        }
        for u in &remote.urls {
            remote.downloads.push(fetch::fetch(
                &self.store,
                &self.rt,
                u,
                url_checksum.as_ref(),
            )?);
        }
        Ok(remote)
    }
}

/// ADD's remote sources (see [`Builder::remote_sources`]).
#[derive(Debug, Default)]
struct Remote {
    urls: Vec<String>,
    downloads: Vec<fetch::Download>,
    gits: Vec<git::GitSource>,
    checkouts: Vec<git::Checkout>,
    keep_git_dir: bool,
}

impl Remote {
    fn len(&self) -> usize {
        self.urls.len() + self.gits.len()
    }
}

/// ADD: with `unpack`, tar archives (plain, gzip, zstd) are extracted into the destination;
/// anything else is copied as COPY would.
#[allow(clippy::too_many_arguments)]
fn add_into(
    root: &Path,
    dest: &str,
    matched: &[(Match, Vec<Entry>)],
    owner: Option<(u32, u32)>,
    chmod: Option<&Chmod>,
    many: bool,
    unpack: bool,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<(), BuildError> {
    let mut plain = Vec::new();
    for (m, entries) in matched {
        if unpack && m.meta.is_file() && is_archive(&m.host) {
            let target =
                crate::context::resolve_dest(root, Path::new(dest.trim_start_matches('/')))
                    .map_err(|p| bad(p.reason(false)))?;
            fs::create_dir_all(&target).map_err(io(&target))?;
            let f = fs::File::open(&m.host).map_err(io(&m.host))?;
            let r = crate::layer::decompressor(std::io::BufReader::new(f)).map_err(io(&m.host))?;
            crate::layer::unpack_tar(r, &target, crate::layer::UnpackMode::Plain).map_err(|e| {
                match e {
                    BuildError::Io { path, source } if path.as_os_str().is_empty() => {
                        BuildError::Io {
                            path: m.host.clone(),
                            source,
                        }
                    }
                    other => other,
                }
            })?;
        } else {
            plain.push((m.clone(), entries.clone()));
        }
    }
    if plain.is_empty() {
        return Ok(());
    }
    copy_into(
        root,
        &CopySpec {
            dest,
            sources: &plain,
            owner,
            chmod,
            parents: false,
            many,
        },
    )
}

/// Whether a file is a tar archive (possibly gzip- or zstd-compressed), by content.
fn is_archive(path: &Path) -> bool {
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = crate::layer::decompressor(std::io::BufReader::new(f)) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match std::io::Read::read(&mut r, &mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n == 512 && (&head[257..262] == b"ustar")
}

/// What `name` matches in a tree, each match walked.
fn walked(
    t: &Tree,
    name: &str,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<Vec<(Match, Vec<Entry>)>, BuildError> {
    let mut out = Vec::new();
    for m in t.matches(name).map_err(|p| bad(p.reason(false)))? {
        let e = t.walk(&m, None)?;
        out.push((m, e));
    }
    Ok(out)
}
