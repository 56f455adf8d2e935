//! RUN: the container over an overlay of the state, with its mounts (cache, secret, ssh, bind,
//! tmpfs), heredocs and network mode; its output streamed to the progress sink.

use super::*;

impl Builder {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_step(
        &self,
        ctx: &Ctx<'_>,
        graph: &StageGraph,
        states: &HashMap<usize, State>,
        step: &Step<'_>,
        r: &berth_dockerfile::Run,
        state: &mut State,
        scope: &StageScope<'_>,
    ) -> Result<(), BuildError> {
        let (ins, id, position) = (step.ins, step.id, step.position);
        let line = ins.span.start.line;
        let bad = |reason: String| BuildError::Instruction {
            line,
            instruction: short(&ins.original),
            reason,
        };
        // The step's mounts, expanded in the stage's scope and resolved.
        let expander = |v: &str| scope.expand(v).map_err(|e| e.to_string());
        let workdir = state.config.workdir();
        let mut run_mounts: Vec<RunMount> = Vec::new();
        let mut mount_trees: Vec<SourceTree<'_>> = Vec::new();
        let mut mount_digests: Vec<Digest> = Vec::new();
        let mut mount_facts: Vec<String> = Vec::new();
        let mut mount_files: Vec<(String, String)> = Vec::new();
        let mut ssh_count = 0usize;
        for raw in &r.mounts {
            let m = berth_dockerfile::parse_mount(&raw.raw, Some(&expander))
                .map_err(|e| bad(format!("--mount={}: {e}", raw.raw)))?;
            let target = m
                .target
                .as_deref()
                .map(|t| clean_abs(&join_workdir(&workdir, t)));
            let need_target = || {
                target
                    .clone()
                    .ok_or_else(|| bad(format!("--mount={}: a target is required", raw.raw)))
            };
            // A bind's source, or a cache's seed: a path in the context, a stage or an image.
            let mut tree_source = |from: Option<&str>, source: Option<&str>| {
                let src =
                    self.source_tree(ctx, graph, states, step.si, from, &state.platform, ins)?;
                let path = source.unwrap_or(".");
                let mut ms = src.tree.matches(path).map_err(|p| BuildError::Source {
                    line,
                    instruction: short(&ins.original),
                    path: path.to_owned(),
                    reason: p.reason(src.tree.is_context()),
                })?;
                if ms.len() != 1 {
                    return Err(bad(format!(
                        "--mount={}: source {path:?} names {} paths; a mount needs one",
                        raw.raw,
                        ms.len()
                    )));
                }
                let found = ms.remove(0);
                let entries = src.tree.walk(&found, None)?;
                let (d, files) =
                    digest_entries(&[(found.rel.display().to_string(), entries.clone())])?;
                let mut fact = format!("source {path}");
                match &src.key {
                    Some(k) => fact.push_str(&format!(" from {k}")),
                    None => mount_files.extend(files),
                }
                mount_digests.push(d);
                let direct = src.key.is_some();
                mount_trees.push(src);
                Ok::<_, BuildError>(((found, entries), fact, direct))
            };
            let mount = match m.kind {
                MountType::Bind => {
                    let (source, fact, direct) =
                        tree_source(m.from.as_deref(), m.source.as_deref())?;
                    mount_facts.push(fact);
                    RunMount::Bind {
                        target: need_target()?,
                        source,
                        writable: !m.readonly,
                        direct,
                    }
                }
                MountType::Cache => {
                    let target = need_target()?;
                    let seed = match &m.from {
                        Some(f) => {
                            let (source, fact, _) = tree_source(Some(f), m.source.as_deref())?;
                            mount_facts.push(fact);
                            Some(source)
                        }
                        None => None,
                    };
                    RunMount::Cache {
                        id: m
                            .id
                            .clone()
                            .filter(|i| !i.is_empty())
                            .unwrap_or_else(|| target.clone()),
                        target,
                        sharing: m.sharing.unwrap_or(Sharing::Shared),
                        readonly: m.readonly,
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        seed,
                    }
                }
                MountType::Tmpfs => RunMount::Tmpfs {
                    target: need_target()?,
                    size: m.size,
                },
                MountType::Secret => {
                    let id = m
                        .id
                        .clone()
                        .or_else(|| m.source.clone())
                        .or_else(|| {
                            target
                                .as_deref()
                                .and_then(|t| t.rsplit('/').next())
                                .map(str::to_owned)
                        })
                        .filter(|i| !i.is_empty())
                        .ok_or_else(|| bad(format!("--mount={}: a secret needs an id", raw.raw)))?;
                    let Some(source) = ctx.opts.secrets.get(&id).cloned() else {
                        if m.required {
                            return Err(BuildError::Secret {
                                id,
                                reason: "required by the Dockerfile but not given (--secret id=…,src=FILE or env=VAR)".into(),
                            });
                        }
                        continue;
                    };
                    // With only env=, the secret is not a file (BuildKit 0.13 and later).
                    let target = match (&target, &m.env) {
                        (Some(t), _) => Some(t.clone()),
                        (None, Some(_)) => None,
                        (None, None) => Some(format!("/run/secrets/{id}")),
                    };
                    RunMount::Secret {
                        id,
                        source,
                        target,
                        env: m.env.clone(),
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    }
                }
                MountType::Ssh => {
                    let id =
                        m.id.clone()
                            .filter(|i| !i.is_empty())
                            .unwrap_or_else(|| "default".into());
                    let target = target
                        .clone()
                        .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_count}"));
                    ssh_count += 1;
                    let Some(socket) = ctx.opts.ssh.get(&id).cloned() else {
                        if m.required {
                            return Err(bad(format!(
                                "no SSH agent socket {id:?} was given (--ssh {id}=SOCKET, or --ssh {id} for $SSH_AUTH_SOCK)"
                            )));
                        }
                        continue;
                    };
                    RunMount::Ssh { target, socket }
                }
            };
            run_mounts.push(mount);
        }
        // The command: heredocs as BuildKit runs them.
        let mut script: Option<(String, String)> = None;
        let args: Vec<String> = match &r.cmd {
            CmdLine::Exec(a) => a.clone(),
            CmdLine::Shell(s) if ins.heredocs.is_empty() => {
                let mut a = state.config.shell();
                a.push(s.clone());
                a
            }
            CmdLine::Shell(s) => {
                let single = ins.heredocs.len() == 1
                    && berth_dockerfile_marker_only(s, &ins.heredocs[0].name);
                if single {
                    let h = &ins.heredocs[0];
                    if h.content.starts_with("#!") {
                        script = Some((h.name.clone(), h.content.clone()));
                        vec![format!("/dev/pipes/{}", h.name)]
                    } else {
                        let mut a = state.config.shell();
                        a.push(h.content.clone());
                        a
                    }
                } else {
                    let mut full = s.clone();
                    full.push('\n');
                    for h in &ins.heredocs {
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                        full.push('\n');
                    }
                    let mut a = state.config.shell();
                    a.push(full);
                    a
                }
            }
        };
        if args.is_empty() {
            return Err(bad("empty command".into()));
        }
        // RUN sees the image's ENV and the stage's ARGs.
        let mut env: Vec<String> = scope
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let user = state.config.user();
        let cwd = state.config.workdir();
        let isolated = matches!(r.network, Some(Network::None));
        let mut facts = StepFacts::default();
        facts.fact("command", serde_json::to_string(&args).unwrap_or_default());
        facts.fact("env", env.join("\n"));
        facts.fact("user", user.clone());
        facts.fact("workdir", cwd.clone());
        if isolated {
            facts.fact("network", "none");
        }
        for (i, m) in run_mounts.iter().enumerate() {
            facts.fact(&format!("mount {i}"), m.describe());
        }
        if !mount_facts.is_empty() {
            facts.fact("mount sources", mount_facts.join("; "));
        }
        facts.files = mount_files.into_iter().collect();
        let inputs = if mount_digests.is_empty() {
            None
        } else {
            let mut h = berth_oci::Algorithm::Sha256.hasher();
            for d in &mount_digests {
                h.update(d.to_string().as_bytes());
                h.update(b"\n");
            }
            Some(h.finish())
        };
        if let Some((n, c)) = &script {
            facts.fact("script", format!("{n}\n{c}"));
        }
        let arch = state.platform.architecture.clone();
        let platform_s = state.platform.to_string();
        let sandbox = self.sandbox.clone();
        let step_label = position.to_owned();
        let text = short(&ins.original);
        let store = self.store.clone();
        let result = self.fs_step(
            ctx,
            step,
            state,
            facts,
            inputs.as_ref(),
            move |root, work| {
                sandbox.can_execute(&arch)?;
                let ids = users::resolve(root, &user, true).map_err(|e| bad(e.to_string()))?;
                let cwd_host =
                    crate::context::resolve_dest(root, Path::new(cwd.trim_start_matches('/')))
                        .map_err(|p| bad(format!("WORKDIR {cwd}: {}", p.reason(false))))?;
                fs::create_dir_all(&cwd_host).map_err(io(&cwd_host))?;
                let bundle = work.join("bundle");
                fs::create_dir(&bundle).map_err(io(&bundle))?;
                // Held until the container is gone: cache locks, copies, secret files.
                let placed = mounts::materialize(&store, work, &run_mounts)?;
                let mut extra = placed.mounts.clone();
                if let Some((name, content)) = &script {
                    let p = bundle.join("script");
                    fs::write(&p, content).map_err(io(&p))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
                    extra.push(ExtraMount::Bind {
                        source: p,
                        target: format!("/dev/pipes/{name}"),
                        readonly: true,
                    });
                }
                let mut env = env.clone();
                env.extend(placed.env.iter().map(|e| e.as_str().to_owned()));
                let cfg = RunConfig {
                    args: args.clone(),
                    env,
                    cwd: cwd.clone(),
                    user: ids,
                    isolated_network: isolated,
                    mounts: extra,
                };
                let points = mount_points(&cfg);
                let existed: Vec<bool> = points
                    .iter()
                    .map(|p| fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_ok())
                    .collect();
                write_bundle(&bundle, root, &cfg)?;
                let container = crate::sandbox::container_id();
                let mut sink = LineSink::new(ctx.progress, id);
                let exit = sandbox.run(&bundle, &container, &mut sink)?;
                sink.flush_partial();
                // The runtime created mount points the image did not have; they are not changes.
                let upper = work.join("upper");
                for (p, existed) in points.iter().zip(existed) {
                    if !existed {
                        remove_stub(&upper, Path::new(p.trim_start_matches('/')));
                    }
                }
                let Exit::Code(code) = exit;
                if code != 0 {
                    return Err(BuildError::RunFailed {
                        step: step_label.clone(),
                        platform: platform_s.clone(),
                        instruction: text.clone(),
                        code,
                        tail: sink.tail(),
                    });
                }
                drop(placed);
                Ok(())
            },
        );
        drop(mount_trees);
        result
    }
}

/// Whether a RUN's shell text is only the marker of its single heredoc (`<<EOF`, `<<-EOF`,
/// `<<"EOF"`).
pub(super) fn berth_dockerfile_marker_only(s: &str, name: &str) -> bool {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim();
    let unq = rest.trim_matches(|c| c == '"' || c == '\'');
    unq == name
}

/// Removes a mount stub the runtime created (an empty file or directory), and parents it
/// created that hold nothing else.
fn remove_stub(upper: &Path, rel: &Path) {
    // The container may have put a symlink on the way: never follow one out of the upper dir.
    let mut cur = upper.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                _ => return,
            }
        }
    }
    let p = upper.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => {
            if fs::remove_dir(&p).is_err() {
                return;
            }
        }
        Ok(m) if m.is_file() && m.len() == 0 => {
            if fs::remove_file(&p).is_err() {
                return;
            }
        }
        _ => return,
    }
    // Parents copied up or created only to hold the stub.
    let mut parent = rel.parent();
    while let Some(par) = parent {
        if par.as_os_str().is_empty() {
            break;
        }
        let dir = upper.join(par);
        let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|x| rustix::fs::lgetxattr(&dir, *x, &mut [0u8; 4]).is_ok());
        if opaque || fs::remove_dir(&dir).is_err() {
            break;
        }
        parent = par.parent();
    }
}

/// Turns RUN output into lines for the progress sink, keeping the last ones for errors.
struct LineSink<'a> {
    progress: &'a dyn Progress,
    id: usize,
    partial: Vec<u8>,
    tail: std::collections::VecDeque<String>,
}

const TAIL_LINES: usize = 20;

impl<'a> LineSink<'a> {
    fn new(progress: &'a dyn Progress, id: usize) -> Self {
        LineSink {
            progress,
            id,
            partial: Vec::new(),
            tail: std::collections::VecDeque::new(),
        }
    }

    fn line(&mut self, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_owned();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.progress.event(Event::Output { id: self.id, line });
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            self.line(&p);
        }
    }

    fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let rest = self.partial.split_off(pos + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            self.line(&line);
        }
        // A very long line without newline is emitted in pieces.
        if self.partial.len() > 64 * 1024 {
            let p = std::mem::take(&mut self.partial);
            self.line(&p);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
