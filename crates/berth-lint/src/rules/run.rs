//! Rules on RUN, judged on the parsed shell script: the commands, their argv and flags, the
//! pipelines, `set -o pipefail`.

use berth_dockerfile::{CmdLine, Instruction, MountType, Run};

use super::{Cx, shell_script};
use crate::shell::{self, Script, SimpleCommand};

/// Shells whose syntax is not POSIX: shell rules are not applied under them.
const NON_POSIX: &[&str] = &[
    "pwsh",
    "powershell",
    "cmd",
    "cmd.exe",
    "powershell.exe",
    "pwsh.exe",
];

fn basename(s: &str) -> &str {
    s.rsplit(['/', '\\']).next().unwrap_or(s)
}

// One arm per tool, each with its own conditions, reads better than guards folded into the match.
#[allow(clippy::collapsible_match)]
/// Checks one RUN (or ONBUILD RUN) whose stage has `shell` set by SHELL (None: `/bin/sh -c`).
pub(crate) fn check_run(
    cx: &mut Cx<'_>,
    ins: &Instruction,
    run: &Run,
    shell_cmd: Option<&[String]>,
) {
    let line = ins.span.start.line;
    let shell_name = shell_cmd
        .and_then(|s| s.first())
        .map(|s| basename(s).to_ascii_lowercase());
    let non_posix = shell_name
        .as_deref()
        .is_some_and(|s| NON_POSIX.contains(&s))
        || cx
            .pragma_shell()
            .is_some_and(|s| NON_POSIX.contains(&basename(s).to_ascii_lowercase().as_str()));
    if non_posix {
        return;
    }
    let script = match &run.cmd {
        CmdLine::Shell(_) => match shell_script(ins, &run.cmd) {
            Some(s) => shell::parse(&s),
            None => return,
        },
        CmdLine::Exec(argv) => exec_script(argv),
    };
    let cache_mounts: Vec<String> = run
        .mounts
        .iter()
        .filter(|m| m.kind == MountType::Cache)
        .filter_map(|m| m.target.clone())
        .collect();
    let cached = |dir: &str| cache_mounts.iter().any(|t| t.trim_end_matches('/') == dir);

    let mut emitted: Vec<&'static str> = Vec::new();
    let mut emit = |cx: &mut Cx<'_>, code: &'static str| {
        if !emitted.contains(&code) {
            emitted.push(code);
            cx.emit(code, line);
        }
    };

    for cmd in &script.commands {
        let Some(name) = cmd.name().map(basename) else {
            continue;
        };
        match name {
            "ssh" | "vim" | "shutdown" | "service" | "ps" | "free" | "top" | "kill" | "mount"
            | "ifconfig" => emit(cx, "DL3001"),
            "cd" => emit(cx, "DL3003"),
            "sudo" => emit(cx, "DL3004"),
            "apt" => emit(cx, "DL3027"),
            "ln" => {
                if cmd.args().iter().any(|a| a.value == "/bin/sh") {
                    emit(cx, "DL4005");
                }
            }
            "apt-get" => {
                if is_subcommand(cmd, "install", APT_FLAGS_WITH_VALUES) {
                    let pkgs = packages(cmd, "install", APT_FLAGS_WITH_VALUES);
                    if pkgs
                        .iter()
                        .any(|p| !p.contains('=') && !p.ends_with(".deb") && !p.starts_with('/'))
                    {
                        emit(cx, "DL3008");
                    }
                    if !cmd.has_any_flag(&["y", "yes", "assume-yes"]) && !quiet_twice(cmd) {
                        emit(cx, "DL3014");
                    }
                    if !cmd.has_flag("no-install-recommends")
                        && !cmd.flag_values("o").iter().any(|v| {
                            v.contains("Install-Recommends=false")
                                || v.contains("Install-Recommends=0")
                        })
                    {
                        emit(cx, "DL3015");
                    }
                }
            }
            "apk" => {
                if is_subcommand(cmd, "add", APK_FLAGS_WITH_VALUES) {
                    let pkgs = packages(cmd, "add", APK_FLAGS_WITH_VALUES);
                    if pkgs
                        .iter()
                        .any(|p| !p.contains('=') && !p.contains('~') && !p.ends_with(".apk"))
                        && !cmd.has_flag("virtual")
                        && !cmd.has_flag("t")
                    {
                        emit(cx, "DL3018");
                    }
                    if !cmd.has_flag("no-cache") && !cached("/var/cache/apk") {
                        emit(cx, "DL3019");
                    }
                }
            }
            n if is_pip(n, cmd) => check_pip(cx, cmd, &cached, &mut emit),
            "npm" => {
                if is_subcommand_any(cmd, &["install", "i", "add"], &[]) {
                    let pkgs = packages_any(cmd, &["install", "i", "add"], NPM_FLAGS_WITH_VALUES);
                    if pkgs.iter().any(|p| !npm_pinned(p)) {
                        emit(cx, "DL3016");
                    }
                }
            }
            "gem" => {
                if is_subcommand(cmd, "install", &[]) && !cmd.has_any_flag(&["v", "version"]) {
                    let pkgs = packages(cmd, "install", GEM_FLAGS_WITH_VALUES);
                    if pkgs.iter().any(|p| !p.contains(':')) {
                        emit(cx, "DL3028");
                    }
                }
            }
            "go" => {
                if is_subcommand(cmd, "install", &[]) {
                    let pkgs = packages(cmd, "install", GO_FLAGS_WITH_VALUES);
                    if pkgs
                        .iter()
                        .any(|p| !p.contains('@') || p.ends_with("@latest"))
                        && pkgs.iter().all(|p| !p.starts_with('.'))
                    {
                        emit(cx, "DL3062");
                    }
                }
            }
            "yum" => {
                if is_subcommand_any(cmd, &["install", "groupinstall", "localinstall"], &[]) {
                    if !cmd.has_any_flag(&["y", "assumeyes"]) {
                        emit(cx, "DL3030");
                    }
                    let pkgs = packages(cmd, "install", YUM_FLAGS_WITH_VALUES);
                    if pkgs.iter().any(|p| !rpm_pinned(p)) {
                        emit(cx, "DL3033");
                    }
                    if !cleans(&script, "yum") && !cached("/var/cache/yum") {
                        emit(cx, "DL3032");
                    }
                }
            }
            "dnf" | "microdnf" => {
                if is_subcommand_any(cmd, &["install", "groupinstall", "localinstall"], &[]) {
                    if !cmd.has_any_flag(&["y", "assumeyes"]) {
                        emit(cx, "DL3038");
                    }
                    let pkgs = packages(cmd, "install", YUM_FLAGS_WITH_VALUES);
                    if pkgs.iter().any(|p| !rpm_pinned(p)) {
                        emit(cx, "DL3041");
                    }
                    if !cleans(&script, "dnf")
                        && !cleans(&script, "microdnf")
                        && !cached("/var/cache/dnf")
                    {
                        emit(cx, "DL3040");
                    }
                }
            }
            "zypper" => {
                let installs = is_subcommand_any(cmd, &["install", "in"], ZYPPER_FLAGS_WITH_VALUES);
                let upgrades = is_subcommand_any(
                    cmd,
                    &[
                        "update",
                        "up",
                        "patch",
                        "dist-upgrade",
                        "dup",
                        "remove",
                        "rm",
                        "source-install",
                        "si",
                    ],
                    ZYPPER_FLAGS_WITH_VALUES,
                );
                if is_subcommand_any(cmd, &["dist-upgrade", "dup"], ZYPPER_FLAGS_WITH_VALUES) {
                    emit(cx, "DL3035");
                }
                if (installs || upgrades)
                    && !cmd.has_any_flag(&["n", "non-interactive", "y", "no-confirm"])
                {
                    emit(cx, "DL3034");
                }
                if installs {
                    let pkgs = packages_any(cmd, &["install", "in"], ZYPPER_FLAGS_WITH_VALUES);
                    if pkgs.iter().any(|p| {
                        !p.contains('=')
                            && !p.contains('>')
                            && !p.contains('<')
                            && !p.ends_with(".rpm")
                    }) {
                        emit(cx, "DL3037");
                    }
                }
                if (installs || upgrades)
                    && !cleans_any(&script, "zypper", &["clean", "cc"])
                    && !cached("/var/cache/zypp")
                {
                    emit(cx, "DL3036");
                }
            }
            "yarn" => {
                if is_subcommand_any(cmd, &["install", "add"], &[]) || cmd.args().is_empty() {
                    let cleaned = script.commands.iter().any(|c| {
                        c.name().map(basename) == Some("yarn")
                            && c.args_no_flags()
                                .iter()
                                .map(|w| w.value.as_str())
                                .collect::<Vec<_>>()
                                == ["cache", "clean"]
                    });
                    if !cleaned && !cache_mounts.iter().any(|t| t.contains("yarn")) {
                        emit(cx, "DL3060");
                    }
                }
            }
            "useradd" => {
                let uid = cmd
                    .flag_values("u")
                    .into_iter()
                    .chain(cmd.flag_values("uid"))
                    .next()
                    .map(str::to_string);
                if let Some(uid) = uid
                    && uid.len() > 5
                    && uid.chars().all(|c| c.is_ascii_digit())
                    && !cmd.has_any_flag(&["l", "no-log-init"])
                {
                    emit(cx, "DL3046");
                }
            }
            "wget" => {
                if !cmd.has_any_flag(&[
                    "progress",
                    "q",
                    "quiet",
                    "nv",
                    "no-verbose",
                    "o",
                    "output-file",
                    "a",
                    "append-output",
                ]) {
                    emit(cx, "DL3047");
                }
            }
            _ => {}
        }
    }

    // DL3010: extracting an archive an earlier COPY of the stage brought in (reported there).
    if let Some(cur) = cx.stages.len().checked_sub(1) {
        let mut lines = Vec::new();
        for c in &script.commands {
            if !extracts(c) {
                continue;
            }
            for w in c.args() {
                let name = w.value.rsplit('/').next().unwrap_or(&w.value);
                for (archive, copy_line) in &cx.stages[cur].copied_archives {
                    if archive == name && !lines.contains(copy_line) {
                        lines.push(*copy_line);
                    }
                }
            }
        }
        for l in lines {
            cx.emit("DL3010", l);
        }
    }

    // DL3009: `apt-get update` with no list clean-up in the same RUN.
    let apt_updates = script.commands.iter().any(|c| {
        c.name().map(basename) == Some("apt-get")
            && is_subcommand(c, "update", APT_FLAGS_WITH_VALUES)
    });
    if apt_updates && !removes_apt_lists(&script) && !cached("/var/lib/apt/lists") {
        emit(cx, "DL3009");
    }

    // DL4001: both wget and curl.
    let uses = |n: &str| {
        script
            .commands
            .iter()
            .any(|c| c.name().map(basename) == Some(n))
    };
    if uses("wget") && uses("curl") {
        emit(cx, "DL4001");
    }

    // DL4006: a pipe without pipefail.
    // SHELL ["/bin/bash", "-o", "pipefail", "-c"] (or `-eo pipefail`, `-euxo pipefail`).
    let shell_pipefail = shell_cmd.is_some_and(|s| {
        s.windows(2).any(|w| {
            w[0].starts_with('-')
                && !w[0].starts_with("--")
                && w[0].ends_with('o')
                && w[1] == "pipefail"
        })
    });
    if !shell_pipefail {
        for p in &script.pipelines {
            let first = p.commands.first().copied().unwrap_or(0);
            if !script.sets_pipefail_before(first) {
                emit(cx, "DL4006");
                break;
            }
        }
    }
}

/// A command that unpacks an archive: `tar -x…`/`tar x…`, `unzip`, `gunzip`, `bunzip2`, `unxz`.
fn extracts(c: &SimpleCommand) -> bool {
    match c.name().map(basename) {
        Some("tar") => {
            c.has_flag("x")
                || c.has_flag("extract")
                || c.has_flag("get")
                || c.args()
                    .first()
                    .is_some_and(|a| !a.value.starts_with('-') && a.value.contains('x'))
        }
        Some("unzip" | "gunzip" | "bunzip2" | "unxz" | "unzstd" | "7z") => true,
        _ => false,
    }
}

/// The exec form as a script: `["sh", "-c", "…"]` is that script; anything else one command.
fn exec_script(argv: &[String]) -> Script {
    if argv.len() >= 3
        && matches!(basename(&argv[0]), "sh" | "bash" | "ash" | "dash")
        && argv[1] == "-c"
    {
        return shell::parse(&argv[2]);
    }
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    shell::parse(&quoted.join(" "))
}

const APT_FLAGS_WITH_VALUES: &[&str] = &["o", "option", "t", "target-release", "c", "config-file"];
const APK_FLAGS_WITH_VALUES: &[&str] = &[
    "t",
    "virtual",
    "repository",
    "X",
    "root",
    "p",
    "keys-dir",
    "repositories-file",
    "arch",
    "cache-dir",
];
const NPM_FLAGS_WITH_VALUES: &[&str] = &["prefix", "registry", "cache", "w", "workspace"];
const GEM_FLAGS_WITH_VALUES: &[&str] = &[
    "v",
    "version",
    "i",
    "install-dir",
    "n",
    "bindir",
    "source",
    "platform",
];
const GO_FLAGS_WITH_VALUES: &[&str] = &[
    "tags",
    "ldflags",
    "gcflags",
    "mod",
    "o",
    "p",
    "modfile",
    "overlay",
    "pkgdir",
    "toolexec",
    "asmflags",
    "buildmode",
    "compiler",
    "gccgoflags",
    "installsuffix",
    "pgo",
];
const YUM_FLAGS_WITH_VALUES: &[&str] = &[
    "c",
    "config",
    "installroot",
    "enablerepo",
    "disablerepo",
    "releasever",
    "setopt",
    "x",
    "exclude",
    "d",
    "debuglevel",
    "e",
    "errorlevel",
    "nodocs",
];
const ZYPPER_FLAGS_WITH_VALUES: &[&str] =
    &["r", "repo", "t", "type", "from", "root", "D", "reposd-dir"];
const PIP_FLAGS_WITH_VALUES: &[&str] = &[
    "c",
    "constraint",
    "e",
    "editable",
    "t",
    "target",
    "platform",
    "python-version",
    "implementation",
    "abi",
    "root",
    "prefix",
    "src",
    "upgrade-strategy",
    "i",
    "index-url",
    "extra-index-url",
    "f",
    "find-links",
    "trusted-host",
    "progress-bar",
    "log",
    "proxy",
    "retries",
    "timeout",
    "exists-action",
    "cert",
    "client-cert",
    "cache-dir",
    "only-binary",
    "no-binary",
    "config-settings",
    "global-option",
    "python",
];

/// Whether `cmd`'s first non-flag argument is `sub`.
fn is_subcommand(cmd: &SimpleCommand, sub: &str, flags_with_values: &[&str]) -> bool {
    cmd.args_no_flags_with(flags_with_values)
        .first()
        .is_some_and(|w| w.value == sub)
}

fn is_subcommand_any(cmd: &SimpleCommand, subs: &[&str], flags_with_values: &[&str]) -> bool {
    subs.iter()
        .any(|s| is_subcommand(cmd, s, flags_with_values))
}

/// The package arguments after subcommand `sub` (flags and their values removed).
fn packages(cmd: &SimpleCommand, sub: &str, flags_with_values: &[&str]) -> Vec<String> {
    packages_any(cmd, &[sub], flags_with_values)
}

fn packages_any(cmd: &SimpleCommand, subs: &[&str], flags_with_values: &[&str]) -> Vec<String> {
    let args = cmd.args_no_flags_with(flags_with_values);
    match args.first() {
        Some(first) if subs.contains(&first.value.as_str()) => args[1..]
            .iter()
            .filter(|w| !w.has_expansion)
            .map(|w| w.value.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// `-qq` implies `-y` for apt-get.
fn quiet_twice(cmd: &SimpleCommand) -> bool {
    cmd.args().iter().any(|a| {
        let v = a.value.as_str();
        v.starts_with('-') && !v.starts_with("--") && v.matches('q').count() >= 2
    }) || cmd.flag_values("q").contains(&"2")
}

fn npm_pinned(p: &str) -> bool {
    // `pkg@1.2.3`, `@scope/pkg@1.2.3`, paths, tarballs, git and URL specs.
    if p.starts_with('.')
        || p.starts_with('/')
        || p.starts_with('~')
        || p.contains("://")
        || p.starts_with("git")
        || p.ends_with(".tgz")
        || p.ends_with(".tar.gz")
    {
        return true;
    }
    let body = p.strip_prefix('@').unwrap_or(p);
    match body.split_once('@') {
        Some((_, v)) => !v.is_empty() && v != "latest",
        None => false,
    }
}

fn rpm_pinned(p: &str) -> bool {
    // `name-1.2.3`: a `-` followed by a digit; local rpm files; version globs.
    p.ends_with(".rpm")
        || p.contains('*')
        || p.match_indices('-')
            .any(|(i, _)| p[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
}

fn is_pip(name: &str, cmd: &SimpleCommand) -> bool {
    if name.starts_with("pip") {
        return true;
    }
    // `python -m pip install …`
    name.starts_with("python")
        && cmd
            .args()
            .windows(2)
            .any(|w| w[0].value == "-m" && w[1].value == "pip")
}

fn check_pip(
    cx: &mut Cx<'_>,
    cmd: &SimpleCommand,
    cached: &dyn Fn(&str) -> bool,
    emit: &mut dyn FnMut(&mut Cx<'_>, &'static str),
) {
    let args = cmd.args_no_flags_with(PIP_FLAGS_WITH_VALUES);
    let values: Vec<&str> = args.iter().map(|w| w.value.as_str()).collect();
    let Some(pos) = values.iter().position(|v| *v == "install") else {
        return;
    };
    if !cmd.has_any_flag(&["no-cache-dir"])
        && !cached("/root/.cache/pip")
        && !cached("/root/.cache")
    {
        emit(cx, "DL3042");
    }
    if cmd.has_any_flag(&["r", "requirement", "c", "constraint", "e", "editable"]) {
        return;
    }
    let unpinned = args[pos + 1..].iter().any(|w| {
        let p = w.value.as_str();
        !w.has_expansion
            && !(p.contains("==")
                || p.contains(">=")
                || p.contains("<=")
                || p.contains("~=")
                || p.contains("===")
                || p.contains('@')
                || p.starts_with('.')
                || p.starts_with('/')
                || p.contains("://")
                || p.ends_with(".whl")
                || p.ends_with(".tar.gz")
                || p.ends_with(".zip"))
    });
    if unpinned {
        emit(cx, "DL3013");
    }
}

/// `<tool> clean all` somewhere in the script.
fn cleans(script: &Script, tool: &str) -> bool {
    script.commands.iter().any(|c| {
        c.name().map(basename) == Some(tool) && {
            let a: Vec<&str> = c.args_no_flags().iter().map(|w| w.value.as_str()).collect();
            a == ["clean", "all"]
        }
    }) || removes_dir(script, &format!("/var/cache/{tool}"))
}

fn cleans_any(script: &Script, tool: &str, subs: &[&str]) -> bool {
    script.commands.iter().any(|c| {
        c.name().map(basename) == Some(tool)
            && c.args_no_flags()
                .first()
                .is_some_and(|w| subs.contains(&w.value.as_str()))
    })
}

fn removes_apt_lists(script: &Script) -> bool {
    removes_dir(script, "/var/lib/apt/lists")
}

/// `rm -rf DIR`, `rm -rf DIR/*` (or deeper) somewhere in the script.
fn removes_dir(script: &Script, dir: &str) -> bool {
    script.commands.iter().any(|c| {
        c.name().map(basename) == Some("rm")
            && c.args_no_flags().iter().any(|w| {
                w.value.trim_end_matches(['*', '/']) == dir
                    || w.value.starts_with(&format!("{dir}/"))
            })
    })
}
