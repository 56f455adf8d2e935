//! The OCI runtime bundle of one RUN step, generated with `oci-spec`'s runtime types: the
//! step's rootfs, process (argv, env, user, cwd), Docker's default capabilities, /proc /dev
//! /sys, a hostname, and generated `resolv.conf` / `hosts`; the host network unless
//! `--network=none`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use crate::error::{BuildError, io};
use crate::users::Ids;

/// The hostname RUN steps see.
pub const HOSTNAME: &str = "berth";

/// What a RUN step's container is.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Ids,
    /// A network namespace of its own (loopback only): `RUN --network=none`.
    pub isolated_network: bool,
    /// The step's own mounts (`RUN --mount`, a heredoc script), mounted shallowest first.
    pub mounts: Vec<ExtraMount>,
}

/// A mount a RUN step asks for, on top of the standard ones.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtraMount {
    /// A host file, directory or socket bound at `target`.
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// A fresh tmpfs (`size` in bytes).
    Tmpfs { target: String, size: Option<u64> },
}

impl ExtraMount {
    /// The container path.
    pub fn target(&self) -> &str {
        match self {
            ExtraMount::Bind { target, .. } | ExtraMount::Tmpfs { target, .. } => target,
        }
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, BuildError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err)
}

fn spec_err(e: oci_spec::OciSpecError) -> BuildError {
    BuildError::Corrupt {
        path: "config.json".into(),
        reason: format!("runtime spec: {e}"),
    }
}

/// Docker's default capability set (what `docker run` and BuildKit grant a RUN).
const CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The container paths the runtime mounts over (their stubs are removed from the step's
/// changes afterwards when the image did not have them).
pub fn mount_points(cfg: &RunConfig) -> Vec<String> {
    let mut v: Vec<String> = [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/hostname",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.extend(cfg.mounts.iter().map(|m| m.target().to_owned()));
    v
}

/// Writes `config.json`, `resolv.conf`, `hosts` and `hostname` into `bundle` for a container
/// whose root is `rootfs`.
pub fn write_bundle(bundle: &Path, rootfs: &Path, cfg: &RunConfig) -> Result<Spec, BuildError> {
    let resolv = resolv_conf(cfg.isolated_network);
    let files = [
        ("resolv.conf", resolv),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ),
        ("hostname", format!("{HOSTNAME}\n")),
    ];
    for (name, content) in &files {
        let p = bundle.join(name);
        std::fs::write(&p, content).map_err(io(&p))?;
    }
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    if cfg.isolated_network {
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?);
    } else {
        // sysfs cannot be mounted without a network namespace of one's own: bind the host's.
        mounts.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?);
    }
    for (name, dest) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
    ] {
        mounts.push(mount(
            dest,
            "bind",
            &s(&bundle.join(name)),
            &["rbind", "ro"],
        )?);
    }
    // A mount inside another one's target must come after it (BuildKit sorts the same way).
    let mut extra: Vec<&ExtraMount> = cfg.mounts.iter().collect();
    extra.sort_by_key(|m| m.target().split('/').filter(|c| !c.is_empty()).count());
    for m in extra {
        match m {
            ExtraMount::Bind {
                source,
                target,
                readonly,
            } => {
                let opts: &[&str] = if *readonly {
                    &["rbind", "ro"]
                } else {
                    &["rbind"]
                };
                mounts.push(mount(target, "bind", &s(source), opts)?);
            }
            ExtraMount::Tmpfs { target, size } => {
                let size_opt = size.map(|b| format!("size={b}"));
                let mut opts = vec!["nosuid", "nodev", "mode=1777"];
                if let Some(so) = &size_opt {
                    opts.push(so);
                }
                mounts.push(mount(target, "tmpfs", "tmpfs", &opts)?);
            }
        }
    }
    let caps: HashSet<Capability> = CAPS.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(spec_err)?;
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1 << 20)
        .min(1 << 20);
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(cfg.user.uid)
                .gid(cfg.user.gid)
                .additional_gids(cfg.user.additional.clone())
                .build()
                .map_err(spec_err)?,
        )
        .args(cfg.args.clone())
        .env(cfg.env.clone())
        .cwd(cfg.cwd.clone())
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(nofile)
                .soft(nofile)
                .build()
                .map_err(spec_err)?,
        ])
        .no_new_privileges(false)
        .build()
        .map_err(spec_err)?;
    let mut namespaces = Vec::new();
    let mut kinds = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if cfg.isolated_network {
        kinds.push(LinuxNamespaceType::Network);
    }
    for k in kinds {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(k)
                .build()
                .map_err(spec_err)?,
        );
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(
            [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
        )
        .readonly_paths(
            [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_err)?;
    let spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()
                .map_err(spec_err)?,
        )
        .hostname(HOSTNAME)
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
        .map_err(spec_err)?;
    let path = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| BuildError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&path, json).map_err(io(&path))?;
    Ok(spec)
}

/// The host's resolv.conf; inside a network namespace of its own, loopback name servers
/// cannot be reached and are replaced by public ones, as Docker does.
fn resolv_conf(isolated: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if !isolated {
        return host;
    }
    let kept: Vec<&str> = host
        .lines()
        .filter(|l| {
            !l.trim_start()
                .strip_prefix("nameserver")
                .is_some_and(|ns| ns.trim().starts_with("127.") || ns.trim() == "::1")
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
