//! The builder's side effects on the host: overlayfs mounts and running a container through an
//! OCI runtime. They sit behind one trait, [`Sandbox`], so the engine's logic (planning, cache,
//! image config, COPY semantics) is tested without root with a recording fake, and the real
//! implementation ([`HostSandbox`]) is tested where root is available.

use std::ffi::OsString;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::error::BuildError;

/// An overlayfs mount.
#[derive(Debug, Clone)]
pub struct OverlayMount<'a> {
    /// Lower directories, the top-most first (at least one).
    pub lowers: &'a [PathBuf],
    /// The writable upper directory and overlayfs' work directory; `None` for a read-only view.
    pub upper: Option<(&'a Path, &'a Path)>,
    /// Where to mount.
    pub target: &'a Path,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The process exited with this code (128 + n when killed by signal n).
    Code(i32),
}

/// The host operations a build needs.
pub trait Sandbox: Send + Sync + Debug {
    /// Mounts an overlay.
    fn mount_overlay(&self, m: &OverlayMount<'_>) -> Result<(), BuildError>;
    /// Unmounts what [`Sandbox::mount_overlay`] mounted.
    fn unmount(&self, target: &Path) -> Result<(), BuildError>;
    /// Runs the OCI bundle at `bundle` as container `id`, streaming its merged stdout/stderr to
    /// `output`, and returns how it ended.
    fn run(&self, bundle: &Path, id: &str, output: &mut dyn Write) -> Result<Exit, BuildError>;
    /// Whether binaries of `arch` (GOARCH spelling) can run here.
    fn can_execute(&self, arch: &str) -> Result<(), BuildError>;
}

/// The real host: overlayfs through the kernel, containers through runc or crun.
#[derive(Debug)]
pub struct HostSandbox {
    /// The runtime to use; `None`: the first of runc, crun that starts a container.
    runtime: Option<PathBuf>,
    /// Where the runtime keeps container state (`--root`).
    state_root: PathBuf,
    /// The runtime that worked (chosen on first use).
    chosen: Mutex<Option<PathBuf>>,
}

impl HostSandbox {
    /// `runtime`: a runtime name or path (`--runtime`), or `None` to pick one by trying.
    pub fn new(runtime: Option<&str>, state_root: PathBuf) -> Result<Self, BuildError> {
        let runtime = match runtime {
            Some(r) => Some(find_on_path(r).ok_or_else(|| BuildError::NoRuntime {
                reason: format!("runtime {r:?} not found"),
            })?),
            None => None,
        };
        let sandbox = HostSandbox {
            runtime,
            state_root,
            chosen: Mutex::new(None),
        };
        sandbox.reap_orphans();
        Ok(sandbox)
    }

    /// Force-deletes the containers a berth process that no longer runs left behind (killed
    /// with `kill -9`, its RUN step's container kept running): their ids name that process.
    fn reap_orphans(&self) {
        let Ok(entries) = std::fs::read_dir(&self.state_root) else {
            return;
        };
        let runtimes = self.candidates();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = orphan_owner(&name) else {
                continue;
            };
            if process_is_alive(pid) {
                continue;
            }
            let deleted = runtimes.iter().any(|rt| {
                Command::new(rt)
                    .arg("--root")
                    .arg(&self.state_root)
                    .args(["delete", "--force", &name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if deleted {
                tracing::info!(container = %name, pid, "deleted the container of a berth process that is gone");
            } else {
                tracing::warn!(container = %name, pid, "could not delete the container of a berth process that is gone");
            }
        }
    }

    fn candidates(&self) -> Vec<PathBuf> {
        if let Some(r) = &self.runtime {
            return vec![r.clone()];
        }
        if let Some(c) = self
            .chosen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return vec![c];
        }
        ["runc", "crun"]
            .into_iter()
            .filter_map(find_on_path)
            .collect()
    }
}

/// A RUN step's container id: the berth process's pid (so a later build can tell a container
/// whose builder is gone) and a random part.
pub(crate) fn container_id() -> String {
    format!(
        "berth-{}-{:012x}",
        std::process::id(),
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

/// The pid in a [`container_id`].
fn orphan_owner(name: &str) -> Option<u32> {
    let (pid, rand) = name.strip_prefix("berth-")?.split_once('-')?;
    if rand.len() != 12 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` still runs. Any process with that pid counts (a reused pid only
/// delays the reaping; a test binary driving the builder is not named `berth`).
fn process_is_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Finds an executable by name on `PATH` (or takes a path as is).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| {
        OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    });
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn privileged(operation: String) -> impl FnOnce(rustix::io::Errno) -> BuildError {
    move |e| BuildError::Privileged {
        operation,
        source: e.into(),
    }
}

impl Sandbox for HostSandbox {
    fn mount_overlay(&self, m: &OverlayMount<'_>) -> Result<(), BuildError> {
        match mount_new_api(m) {
            Ok(()) => Ok(()),
            // Kernels before 6.8 have no `lowerdir+`; before 5.2 no fsopen at all.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL) => mount_classic(m),
            Err(e) => Err(privileged(format!(
                "mount overlay on {}",
                m.target.display()
            ))(e)),
        }
    }

    fn unmount(&self, target: &Path) -> Result<(), BuildError> {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
                .map_err(privileged(format!("unmount {}", target.display()))),
            Err(e) => Err(privileged(format!("unmount {}", target.display()))(e)),
        }
    }

    fn run(&self, bundle: &Path, id: &str, output: &mut dyn Write) -> Result<Exit, BuildError> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Err(BuildError::NoRuntime {
                reason: "neither runc nor crun is on PATH".into(),
            });
        }
        let mut failures = Vec::new();
        for runtime in candidates {
            let pid_file = bundle.join("pid");
            let _ = std::fs::remove_file(&pid_file);
            let (mut reader, writer) = std::io::pipe().map_err(crate::error::io(bundle))?;
            let writer2 = writer.try_clone().map_err(crate::error::io(bundle))?;
            let mut child = Command::new(&runtime)
                .arg("--root")
                .arg(&self.state_root)
                .arg("run")
                .arg("--bundle")
                .arg(bundle)
                .arg("--pid-file")
                .arg(&pid_file)
                .arg(id)
                .stdin(Stdio::null())
                .stdout(writer)
                .stderr(writer2)
                .spawn()
                .map_err(|e| BuildError::NoRuntime {
                    reason: format!("{}: {e}", runtime.display()),
                })?;
            // Keep the output whole when the runtime itself fails, to explain why.
            let mut captured = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut started = false;
            loop {
                let n = reader.read(&mut buf).map_err(crate::error::io(bundle))?;
                if n == 0 {
                    break;
                }
                if !started && pid_file.exists() {
                    started = true;
                    output
                        .write_all(&captured)
                        .map_err(crate::error::io(bundle))?;
                    captured.clear();
                }
                if started {
                    output
                        .write_all(&buf[..n])
                        .map_err(crate::error::io(bundle))?;
                } else {
                    captured.extend_from_slice(&buf[..n]);
                }
            }
            let status = child.wait().map_err(crate::error::io(bundle))?;
            started = started || pid_file.exists();
            let _ = Command::new(&runtime)
                .arg("--root")
                .arg(&self.state_root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if started {
                output
                    .write_all(&captured)
                    .map_err(crate::error::io(bundle))?;
                *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(runtime);
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                return Ok(Exit::Code(code));
            }
            failures.push(format!(
                "{}: {}",
                runtime.display(),
                String::from_utf8_lossy(&captured).trim()
            ));
        }
        Err(BuildError::NoRuntime {
            reason: failures.join("; "),
        })
    }

    fn can_execute(&self, arch: &str) -> Result<(), BuildError> {
        if crate::platform::native(arch) {
            return Ok(());
        }
        let qemu = crate::platform::qemu_name(arch);
        let entry = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu}"));
        let ok = std::fs::read_to_string(&entry).is_ok_and(|s| {
            s.lines().next() == Some("enabled")
                && s.lines()
                    .any(|l| l.strip_prefix("flags:").is_some_and(|f| f.contains('F')))
        });
        if ok {
            Ok(())
        } else {
            Err(BuildError::NoEmulation {
                platform: format!("linux/{arch}"),
                arch: arch.to_owned(),
                qemu: qemu.to_owned(),
            })
        }
    }
}

fn mount_new_api(m: &OverlayMount<'_>) -> Result<(), rustix::io::Errno> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in m.lowers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    if let Some((upper, work)) = m.upper {
        rustix::mount::fsconfig_set_string(&fs, "upperdir", upper)?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", work)?;
    }
    let userns = crate::rootless::in_user_namespace();
    let options: &[(&str, &str)] = if userns {
        // `userxattr` forbids redirects and metacopy itself (and refuses `redirect_dir=off`).
        &[("index", "off")]
    } else {
        &[
            ("redirect_dir", "off"),
            ("metacopy", "off"),
            ("index", "off"),
        ]
    };
    for &(k, v) in options {
        // Older kernels lack some of these options; their defaults are then off.
        let _ = rustix::mount::fsconfig_set_string(&fs, k, v);
    }
    if userns {
        // trusted.* xattrs are out of reach in a user namespace.
        rustix::mount::fsconfig_set_flag(&fs, "userxattr")?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    let attrs = if m.upper.is_none() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        m.target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

fn mount_classic(m: &OverlayMount<'_>) -> Result<(), BuildError> {
    let mut data = String::from("lowerdir=");
    let check = |p: &Path| -> Result<String, BuildError> {
        let s = p.to_str().unwrap_or("");
        if s.is_empty() || s.contains([':', ',', '=']) {
            return Err(BuildError::Privileged {
                operation: format!("mount overlay on {}", m.target.display()),
                source: std::io::Error::other(format!(
                    "path {} cannot be passed in overlayfs options (':', ',' or '=' in it)",
                    p.display()
                )),
            });
        }
        Ok(s.to_owned())
    };
    let lowers: Vec<String> = m
        .lowers
        .iter()
        .map(|l| check(l))
        .collect::<Result<_, _>>()?;
    data.push_str(&lowers.join(":"));
    if let Some((upper, work)) = m.upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            check(upper)?,
            check(work)?
        ));
    }
    if crate::rootless::in_user_namespace() {
        data.push_str(",index=off,userxattr");
    } else {
        data.push_str(",index=off,redirect_dir=off,metacopy=off");
    }
    let page = 4096;
    if data.len() >= page {
        return Err(BuildError::Privileged {
            operation: format!("mount overlay on {}", m.target.display()),
            source: std::io::Error::other(format!(
                "{} layers do not fit in overlayfs mount options on this kernel (< 6.8)",
                m.lowers.len()
            )),
        });
    }
    let flags = if m.upper.is_none() {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    let data = std::ffi::CString::new(data).map_err(|e| BuildError::Privileged {
        operation: format!("mount overlay on {}", m.target.display()),
        source: std::io::Error::other(e),
    })?;
    rustix::mount::mount("overlay", m.target, "overlay", flags, Some(data.as_c_str())).map_err(
        privileged(format!("mount overlay on {}", m.target.display())),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn container_ids_name_their_process() {
        let id = container_id();
        assert_eq!(orphan_owner(&id), Some(std::process::id()));
        assert_eq!(orphan_owner("berth-0123456789abcdef"), None);
        assert_eq!(orphan_owner("berth-12-xyz"), None);
        assert_eq!(orphan_owner("other-12-0123456789ab"), None);
        assert!(process_is_alive(std::process::id()));
    }
}
