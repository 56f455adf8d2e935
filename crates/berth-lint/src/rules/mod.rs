//! The rules, run in one pass over the parsed Dockerfile with per-stage state.

mod image;
mod labels;
mod run;

use std::collections::{BTreeMap, BTreeSet};

use berth_dockerfile::{
    CmdLine, Command, Dockerfile, GlobalScope, Instruction, Keyword, PlatformParts, Vars, parse,
    platform_args,
};

use crate::catalog;
use crate::{Config, Finding, Severity};

/// Lints `text`; findings carry their configured severity (`Ignore` when ignored).
pub(crate) fn run(text: &str, config: &Config) -> Vec<Finding> {
    let df = match parse(text) {
        Ok(df) => df,
        Err(e) => return parse_error(&e, config),
    };
    let pragmas = Pragmas::read(&df, config);
    let mut cx = Cx::new(&df, config, &pragmas);
    cx.check();
    for &line in &pragmas.inline {
        cx.emit("DL1001", line);
    }
    let mut out = cx.out;
    for f in &mut out {
        if pragmas.ignores(&f.code, f.line) {
            f.severity = Severity::Ignore;
        }
    }
    out
}

/// A Dockerfile that does not parse: DL1000, or the rule hadolint has for the construct.
fn parse_error(e: &berth_dockerfile::ParseError, config: &Config) -> Vec<Finding> {
    // BuildKit refuses ONBUILD triggers hadolint reports as DL3043.
    let code =
        if e.message.contains("as an ONBUILD trigger") || e.message.contains("ONBUILD ONBUILD") {
            "DL3043"
        } else {
            "DL1000"
        };
    let default = catalog::rule(code).map_or(Severity::Error, |r| r.severity);
    let message = if code == "DL1000" {
        e.message.clone()
    } else {
        catalog::rule(code).map_or_else(|| e.message.clone(), |r| r.message.to_string())
    };
    vec![Finding {
        code: code.to_string(),
        severity: config.severity_of(code, default),
        message,
        line: e.line().max(1),
        column: if code == "DL1000" {
            e.span.start.column.max(1)
        } else {
            1
        },
    }]
}

/// `# hadolint ignore=…` (or `# berth ignore=…`) for the next instruction, `global ignore=…`
/// for the whole file, `shell=…` for the shell RUN is judged in.
#[derive(Debug, Default)]
struct Pragmas {
    /// Instruction start line → ignored rule ids.
    by_line: BTreeMap<u32, BTreeSet<String>>,
    global: BTreeSet<String>,
    /// The shell named by a `shell=` pragma, if any.
    shell: Option<String>,
    /// Lines of inline `ignore=` pragmas (DL1001).
    inline: Vec<u32>,
}

impl Pragmas {
    fn read(df: &Dockerfile, config: &Config) -> Self {
        let mut p = Pragmas::default();
        let starts: Vec<u32> = df.instructions.iter().map(|i| i.span.start.line).collect();
        for c in &df.comments {
            let Some(body) = pragma_body(&c.text) else {
                continue;
            };
            if let Some(shell) = body.strip_prefix("shell=") {
                p.shell = Some(shell.trim().to_string());
                continue;
            }
            if config.disable_ignore_pragma {
                continue;
            }
            if let Some(list) = strip_global(body) {
                p.global.extend(codes(list));
            } else if let Some(list) = body.strip_prefix("ignore=") {
                p.inline.push(c.line);
                // The next instruction after the comment.
                if let Some(&line) = starts.iter().find(|&&l| l > c.line) {
                    p.by_line.entry(line).or_default().extend(codes(list));
                }
            }
        }
        p
    }

    fn ignores(&self, code: &str, line: u32) -> bool {
        self.global.contains(code) || self.by_line.get(&line).is_some_and(|s| s.contains(code))
    }
}

/// The text after `hadolint` / `berth` in a pragma comment.
fn pragma_body(comment: &str) -> Option<&str> {
    let t = comment.trim_start();
    let rest = t
        .strip_prefix("hadolint")
        .or_else(|| t.strip_prefix("berth"))?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim())
}

fn strip_global(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("global")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    rest.trim_start().strip_prefix("ignore=")
}

fn codes(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_uppercase())
}

/// What the pass knows about one stage.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stage {
    /// Lower-cased `AS` name.
    pub(crate) name: Option<String>,
    /// The stage it builds on, if a stage.
    pub(crate) parent: Option<usize>,
    /// WORKDIR set in this stage or inherited from its parent stage.
    pub(crate) has_workdir: bool,
    /// The last USER: (line, user) — inherited from the parent stage.
    pub(crate) last_user: Option<(u32, String)>,
    pub(crate) healthchecks: u32,
    pub(crate) cmds: u32,
    pub(crate) entrypoints: u32,
    /// SHELL as set in this stage (or inherited).
    pub(crate) shell: Option<Vec<String>>,
    pub(crate) labels: Vec<(String, String, u32)>,
    /// Archives COPY put in the stage: (file name, COPY line), for DL3010.
    pub(crate) copied_archives: Vec<(String, u32)>,
    /// FROM line.
    pub(crate) line: u32,
}

pub(crate) struct Cx<'a> {
    df: &'a Dockerfile,
    config: &'a Config,
    pragmas: &'a Pragmas,
    global: Option<GlobalScope>,
    stages: Vec<Stage>,
    pub(crate) out: Vec<Finding>,
}

impl<'a> Cx<'a> {
    fn new(df: &'a Dockerfile, config: &'a Config, pragmas: &'a Pragmas) -> Self {
        // FROM lines are judged with the ARG defaults and the automatic platform ARGs of a
        // linux/amd64 build: `ARG BASE=debian:12` + `FROM ${BASE}` is a tagged image.
        let amd64 = PlatformParts {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: String::new(),
        };
        let auto: Vars = platform_args(&amd64, &amd64);
        let global = GlobalScope::new(
            &df.instructions,
            df.directives.escape,
            &BTreeMap::new(),
            &auto,
        )
        .ok();
        Self {
            df,
            config,
            pragmas,
            global,
            stages: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Reports rule `code` at `line` with the catalog's message.
    pub(crate) fn emit(&mut self, code: &'static str, line: u32) {
        let message = catalog::rule(code).map_or("", |r| r.message).to_string();
        self.emit_msg(code, line, message);
    }

    pub(crate) fn emit_msg(&mut self, code: &'static str, line: u32, message: String) {
        let default = catalog::rule(code).map_or(Severity::Warning, |r| r.severity);
        self.out.push(Finding {
            code: code.to_string(),
            severity: self.config.severity_of(code, default),
            message,
            line,
            column: 1,
        });
    }

    fn check(&mut self) {
        let df = self.df;
        let mut seen_from = false;
        // The previous instruction when it is a RUN, and whether it runs a single command.
        let mut prev_run: Option<(&Instruction, bool)> = None;
        for ins in &df.instructions {
            let line = ins.span.start.line;
            if !seen_from && !matches!(ins.keyword, Keyword::From | Keyword::Arg) {
                self.emit("DL3061", line);
            }
            // DL3059: a RUN right after a RUN with the same flags.
            if ins.keyword == Keyword::Run {
                let single = single_command(ins);
                if let Some((prev, prev_single)) = prev_run
                    && prev_single
                    && single
                    && same_run_flags(prev, ins)
                {
                    self.emit("DL3059", line);
                }
                prev_run = Some((ins, single));
            } else {
                prev_run = None;
            }
            match &ins.command {
                Command::From(from) => {
                    seen_from = true;
                    self.check_from(ins, from);
                }
                _ if self.stages.is_empty() => self.check_global(ins),
                _ => self.check_in_stage(ins),
            }
        }
        self.finish();
    }

    /// Instructions before the first FROM (only ARG is valid there).
    fn check_global(&mut self, ins: &Instruction) {
        if let Command::Arg { args } = &ins.command {
            image::check_arg_secrets(self, ins, args);
        }
    }

    fn check_in_stage(&mut self, ins: &Instruction) {
        let line = ins.span.start.line;
        let cur = self.stages.len() - 1;
        match &ins.command {
            Command::Run(r) => {
                let shell = self.stages[cur].shell.clone();
                run::check_run(self, ins, r, shell.as_deref());
            }
            Command::Cmd { cmd } => {
                self.stages[cur].cmds += 1;
                if self.stages[cur].cmds > 1 {
                    self.emit("DL4003", line);
                }
                if !cmd.is_exec() {
                    self.emit("DL3025", line);
                }
            }
            Command::Entrypoint { cmd } => {
                self.stages[cur].entrypoints += 1;
                if self.stages[cur].entrypoints > 1 {
                    self.emit("DL4004", line);
                }
                if !cmd.is_exec() {
                    self.emit("DL3025", line);
                }
            }
            Command::Healthcheck(hc) => {
                if let berth_dockerfile::Healthcheck::Cmd { cmd, .. } = hc
                    && !cmd.is_exec()
                {
                    self.emit("DL3025", line);
                }
                self.stages[cur].healthchecks += 1;
                if self.stages[cur].healthchecks > 1 {
                    self.emit("DL3012", line);
                }
            }
            Command::Shell { shell } => {
                self.stages[cur].shell = Some(shell.clone());
            }
            Command::Workdir { path } => {
                self.stages[cur].has_workdir = true;
                let p = unquote(&path.text);
                if !is_absolute(&p) {
                    self.emit("DL3000", line);
                }
            }
            Command::User { user } => {
                let u = unquote(&user.text);
                self.stages[cur].last_user = Some((line, u.clone()));
                image::check_user(self, ins, &u);
            }
            Command::Expose { ports } => image::check_expose(self, ins, ports),
            Command::Copy(c) => image::check_copy(self, ins, c, cur, false),
            Command::Add(c) => image::check_copy(self, ins, c, cur, true),
            Command::Env { pairs } => image::check_env(self, ins, pairs),
            Command::Arg { args } => image::check_arg_secrets(self, ins, args),
            Command::Label { pairs } => {
                for p in pairs {
                    let key = unquote(&p.key);
                    let value = unquote(&p.value);
                    self.stages[cur].labels.push((key, value, line));
                }
                labels::check_label_instruction(self, ins, pairs);
            }
            Command::Maintainer { .. } => self.emit("DL4000", line),
            Command::Onbuild { trigger } => {
                // The trigger runs in a child image: judge it as that instruction would be,
                // without changing this stage's state.
                if let Command::Run(r) = &trigger.command {
                    let shell = self.stages[cur].shell.clone();
                    run::check_run(self, ins, r, shell.as_deref());
                }
            }
            _ => {}
        }
    }

    fn check_from(&mut self, ins: &Instruction, from: &berth_dockerfile::From) {
        let line = ins.span.start.line;
        let name = from.name.as_ref().map(|w| w.text.to_ascii_lowercase());
        if let Some(n) = &name {
            if self.stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                self.emit("DL3024", line);
            }
            if image::RESERVED_STAGE_NAMES.contains(&n.as_str()) {
                self.emit("DL3063", line);
            }
        }
        let expanded = self.expand_global(&from.image.text);
        let parent = expanded.as_ref().and_then(|img| {
            let lower = img.to_ascii_lowercase();
            self.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
        });
        let mut stage = match parent {
            Some(p) => {
                let ps = &self.stages[p];
                Stage {
                    has_workdir: ps.has_workdir,
                    last_user: ps.last_user.clone(),
                    shell: ps.shell.clone(),
                    ..Stage::default()
                }
            }
            None => Stage::default(),
        };
        stage.name = name;
        stage.parent = parent;
        stage.line = line;
        if parent.is_none() {
            image::check_base_image(self, ins, from, expanded.as_deref());
        }
        image::check_platform(self, ins, from);
        self.stages.push(stage);
    }

    fn finish(&mut self) {
        // DL3002: the final stage's last USER.
        if let Some(last) = self.stages.last()
            && let Some((line, user)) = &last.last_user
        {
            let name = user.split(':').next().unwrap_or("");
            if name == "root" || name == "0" {
                let line = *line;
                self.emit("DL3002", line);
            }
        }
        // DL3057: no HEALTHCHECK in the image built (last stage or those it builds on).
        if let Some(last_idx) = self.stages.len().checked_sub(1) {
            let mut i = Some(last_idx);
            let mut any = false;
            while let Some(idx) = i {
                any |= self.stages[idx].healthchecks > 0;
                i = self.stages[idx].parent;
            }
            if !any {
                let line = self.stages[last_idx].line;
                self.emit("DL3057", line);
            }
        }
        labels::check_schema(self);
    }

    /// A FROM word expanded with the global ARG defaults; `None` when it cannot be known
    /// (an ARG without a default, an expansion error).
    fn expand_global(&self, word: &str) -> Option<String> {
        if !word.contains('$') {
            return Some(unquote(word));
        }
        let global = self.global.as_ref()?;
        // Every variable must be known: `${BASE}` with no default says nothing.
        let e = global
            .lexer()
            .process_word_with_matches(word, global.vars())
            .ok()?;
        if e.value.is_empty() || !e.unmatched.is_empty() {
            return None;
        }
        Some(e.value)
    }

    pub(crate) fn stage_names_before(&self, current: usize) -> impl Iterator<Item = &str> {
        self.stages[..current]
            .iter()
            .filter_map(|s| s.name.as_deref())
    }

    pub(crate) fn stage(&self, i: usize) -> &Stage {
        &self.stages[i]
    }

    /// The configuration (not tied to a borrow of `self`, so rules can emit while reading it).
    pub(crate) fn config(&self) -> &'a Config {
        self.config
    }

    pub(crate) fn pragma_shell(&self) -> Option<&str> {
        self.pragmas.shell.as_deref()
    }
}

/// Two RUNs are "consecutive" for DL3059 only when they carry the same flags.
fn same_run_flags(a: &Instruction, b: &Instruction) -> bool {
    let flags = |i: &Instruction| -> Vec<(String, Option<String>)> {
        i.flags
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect()
    };
    flags(a) == flags(b)
}

/// A RUN that runs one command (hadolint only suggests joining those: a RUN that already chains
/// commands is a deliberate layer boundary).
fn single_command(ins: &Instruction) -> bool {
    let Command::Run(r) = &ins.command else {
        return false;
    };
    match shell_script(ins, &r.cmd) {
        None => true,
        Some(text) => {
            crate::shell::parse(&text)
                .commands
                .iter()
                .filter(|c| !c.in_substitution)
                .count()
                <= 1
        }
    }
}

/// Removes one level of surrounding quotes.
pub(crate) fn unquote(s: &str) -> String {
    let t = s.trim();
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_string();
        }
    }
    t.to_string()
}

/// An absolute path, a Windows drive path, or one that starts with a variable.
pub(crate) fn is_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || p.starts_with('$')
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

/// The script a RUN (or ONBUILD RUN) hands to the shell, heredoc bodies included as the shell
/// sees them; `None` for the exec form.
pub(crate) fn shell_script(ins: &Instruction, cmd: &CmdLine) -> Option<String> {
    let CmdLine::Shell(text) = cmd else {
        return None;
    };
    if ins.heredocs.is_empty() {
        return Some(text.clone());
    }
    // `RUN <<EOF` alone: the body is the script.
    let t = text.trim();
    let marker = t.trim_start_matches(|c: char| c.is_ascii_digit());
    if ins.heredocs.len() == 1 && marker.starts_with("<<") && !t.contains(char::is_whitespace) {
        return Some(ins.heredocs[0].content.clone());
    }
    let mut s = text.clone();
    s.push('\n');
    for h in &ins.heredocs {
        s.push_str(&h.content);
        if !h.content.is_empty() && !h.content.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&h.name);
        s.push('\n');
    }
    Some(s)
}
