//! Rootless builds: a non-root user runs the builder as root of a user namespace of its own,
//! as podman and buildah do.
//!
//! The namespace maps container root to the user and container ids `1..=N` to the user's
//! subordinate range from `/etc/subuid` and `/etc/subgid`, written by the setuid helpers
//! `newuidmap` / `newgidmap` (package `uidmap`). The process also gets a mount namespace of its
//! own, so its overlay mounts (Linux ≥ 5.11 allows them in a user namespace; they use the
//! `user.overlay.*` xattrs there) vanish with it. Inside, the OCI runtime runs containers in the
//! same user namespace (runc and crun detect it and skip cgroups they cannot manage).
//!
//! [`plan`] checks every prerequisite and names all that are missing at once;
//! [`run`] starts a command inside the namespace; [`active`] tells the command it is inside.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::error::BuildError;
use crate::sandbox::find_on_path;

/// The environment variable that marks a process berth started inside its user namespace.
pub const MARKER: &str = "BERTH_ROOTLESS";

/// Whether this process runs inside the user namespace [`run`] set up.
pub fn active() -> bool {
    std::env::var_os(MARKER).is_some_and(|v| v == "1")
}

/// Whether a build here has to go rootless: not root, and not yet inside berth's namespace.
pub fn needed() -> bool {
    !rustix::process::geteuid().is_root() && !active()
}

/// Whether this process is root of a user namespace other than the initial one (whatever made
/// it), where overlay mounts need `userxattr` and opaque directories use `user.overlay.opaque`.
pub fn in_user_namespace() -> bool {
    static IN_NS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_NS.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        })
    })
}

/// A range of subordinate ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first id on the host.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// What [`run`] needs: who the user is and the ranges to map.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The user's name (or uid when `/etc/passwd` does not name it).
    pub user: String,
    /// The user's uid and gid (container root).
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Subordinate uids (container uids `1..=count`).
    pub uids: IdRange,
    /// Subordinate gids.
    pub gids: IdRange,
    /// The helpers that write the maps.
    pub newuidmap: PathBuf,
    /// See `newuidmap`.
    pub newgidmap: PathBuf,
}

/// Checks everything a rootless build needs for the current user and returns the mapping, or
/// an error naming every missing prerequisite and how to provide it.
pub fn plan() -> Result<Mapping, BuildError> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    let mut missing = Vec::new();

    missing.extend(userns_blockers(Path::new("/proc/sys")));
    if let Some(k) = kernel_release()
        && let Some(why) = kernel_too_old(&k)
    {
        missing.push(why);
    }
    let mut helper = |name: &str| -> Option<PathBuf> {
        match find_on_path(name) {
            None => {
                missing.push(format!(
                    "{name} is not installed (Debian/Ubuntu: apt-get install uidmap; Fedora: shadow-utils)"
                ));
                None
            }
            Some(p) => {
                if !setuid_or_capable(&p) {
                    missing.push(format!(
                        "{} is neither setuid root nor has file capabilities (reinstall the uidmap package)",
                        p.display()
                    ));
                }
                Some(p)
            }
        }
    };
    let newuidmap = helper("newuidmap");
    let newgidmap = helper("newgidmap");
    let uids = subordinate(Path::new("/etc/subuid"), &user, uid);
    let gids = subordinate(Path::new("/etc/subgid"), &user, uid);
    if uids.is_none() || gids.is_none() {
        let files = match (uids.is_none(), gids.is_none()) {
            (true, true) => "/etc/subuid and /etc/subgid have",
            (true, false) => "/etc/subuid has",
            _ => "/etc/subgid has",
        };
        missing.push(format!(
            "{files} no subordinate id range for user {user} (uid {uid}): as root, run \
             `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (any \
             unused range of 65536 ids)"
        ));
    }
    match (uids, gids, newuidmap, newgidmap) {
        (Some(uids), Some(gids), Some(newuidmap), Some(newgidmap)) if missing.is_empty() => {
            Ok(Mapping {
                user,
                uid,
                gid,
                uids,
                gids,
                newuidmap,
                newgidmap,
            })
        }
        _ => Err(BuildError::Rootless { user, missing }),
    }
}

/// Sysctls that keep an unprivileged user from creating a user namespace.
fn userns_blockers(sys: &Path) -> Vec<String> {
    let read = |rel: &str| {
        std::fs::read_to_string(sys.join(rel))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let mut v = Vec::new();
    if read("user/max_user_namespaces").as_deref() == Some("0") {
        v.push(
            "user namespaces are disabled: sysctl user.max_user_namespaces is 0 (set it to e.g. 28633)"
                .to_owned(),
        );
    }
    if read("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        v.push(
            "unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone is 0 (set it to 1)"
                .to_owned(),
        );
    }
    if read("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        v.push(
            "AppArmor restricts unprivileged user namespaces (sysctl \
             kernel.apparmor_restrict_unprivileged_userns is 1): give berth an AppArmor profile \
             with `userns,` or set the sysctl to 0"
                .to_owned(),
        );
    }
    v
}

fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Overlay mounts inside a user namespace came with Linux 5.11.
fn kernel_too_old(release: &str) -> Option<String> {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let major = it.next()?;
    let minor = it.next().unwrap_or(0);
    ((major, minor) < (5, 11)).then(|| {
        format!(
            "Linux 5.11 or later, which allows overlay mounts in a user namespace (this kernel is {release})"
        )
    })
}

fn setuid_or_capable(p: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if meta.permissions().mode() & 0o4000 != 0 && meta.uid() == 0 {
        return true;
    }
    let mut buf = [0u8; 64];
    rustix::fs::getxattr(p, "security.capability", &mut buf).is_ok_and(|n| n > 0)
}

/// The user's name from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_owned())
    })
}

/// The first range of `file` (`/etc/subuid` format: `NAME_OR_UID:START:COUNT`) for the user.
fn subordinate(file: &Path, user: &str, uid: u32) -> Option<IdRange> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subordinate(&text, user, uid)
}

fn parse_subordinate(text: &str, user: &str, uid: u32) -> Option<IdRange> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        if who != user && who.parse::<u32>().ok() != Some(uid) {
            return None;
        }
        let start = f.next()?.trim().parse().ok()?;
        let count: u32 = f.next()?.trim().parse().ok()?;
        (count > 0).then_some(IdRange { start, count })
    })
}

/// Runs `cmd` as root of a new user and mount namespace mapped by `m`, with [`MARKER`] set,
/// and waits for it. The child dies with this process.
///
/// `unsafe` is allowed here alone: a user namespace must be entered between fork and exec
/// (`unshare(CLONE_NEWUSER)` refuses a multi-threaded caller), which only `pre_exec` offers.
#[allow(unsafe_code)]
pub fn run(m: &Mapping, mut cmd: Command) -> Result<ExitStatus, BuildError> {
    use std::os::unix::process::CommandExt;
    let fail = |what: &str, e: std::io::Error| BuildError::Rootless {
        user: m.user.clone(),
        missing: vec![format!("{what}: {e}")],
    };
    // The child tells its pid on `ready`, then waits on `go` until its maps are written.
    let (mut ready_r, ready_w) = std::io::pipe().map_err(|e| fail("pipe", e))?;
    let (go_r, mut go_w) = std::io::pipe().map_err(|e| fail("pipe", e))?;
    let (ready_fd, go_fd) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
    cmd.env(MARKER, "1");
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (unshare, write, read, prctl) on descriptors it was given.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::thread::UnshareFlags;
            rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)?;
            let pid = rustix::process::getpid().as_raw_pid();
            let fd = std::os::fd::BorrowedFd::borrow_raw(ready_fd);
            rustix::io::write(fd, &pid.to_ne_bytes())?;
            let mut ok = [0u8; 1];
            let fd = std::os::fd::BorrowedFd::borrow_raw(go_fd);
            if rustix::io::read(fd, &mut ok)? != 1 || ok[0] != 1 {
                return Err(std::io::Error::other("uid/gid maps were not written"));
            }
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
    let mapping = m.clone();
    let mapper = std::thread::spawn(move || -> Result<(), String> {
        let mut pid = [0u8; 4];
        ready_r
            .read_exact(&mut pid)
            .map_err(|_| "the child did not start".to_owned())?;
        let pid = i32::from_ne_bytes(pid).to_string();
        let result = write_maps(&mapping, &pid);
        let _ = go_w.write_all(&[u8::from(result.is_ok())]);
        result
    });
    let spawned = cmd.spawn();
    // The child holds its own copies; closing ours lets the mapper see EOF if it died early.
    drop(ready_w);
    drop(go_r);
    let mapped = mapper
        .join()
        .unwrap_or_else(|_| Err("the id-mapping thread panicked".to_owned()));
    let mut child = match (spawned, mapped) {
        (Ok(c), _) => c,
        (Err(_), Err(why)) => {
            return Err(BuildError::Rootless {
                user: m.user.clone(),
                missing: vec![why],
            });
        }
        (Err(e), Ok(())) => {
            let what = if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) {
                "creating a user namespace was refused (a sysctl, seccomp profile or container \
                 runtime forbids it)"
            } else {
                "starting berth in a user namespace"
            };
            return Err(fail(what, e));
        }
    };
    child
        .wait()
        .map_err(|e| fail("waiting for the namespaced berth", e))
}

/// `newuidmap PID 0 UID 1 1 START COUNT` and the same for gids.
fn write_maps(m: &Mapping, pid: &str) -> Result<(), String> {
    for (tool, own, range) in [(&m.newuidmap, m.uid, m.uids), (&m.newgidmap, m.gid, m.gids)] {
        let out = Command::new(tool)
            .arg(pid)
            .args(["0", &own.to_string(), "1"])
            .args(["1", &range.start.to_string(), &range.count.to_string()])
            .output()
            .map_err(|e| format!("{}: {e}", tool.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {pid} 0 {own} 1 1 {} {} failed: {}",
                tool.display(),
                range.start,
                range.count,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subordinate_ranges_match_by_name_or_uid() {
        let text = "alice:100000:65536\n# comment\n1002:200000:1000\nbob:300000:0\n";
        assert_eq!(
            parse_subordinate(text, "alice", 1001),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subordinate(text, "carol", 1002),
            Some(IdRange {
                start: 200000,
                count: 1000
            })
        );
        // A zero-length range is no range.
        assert_eq!(parse_subordinate(text, "bob", 1003), None);
        assert_eq!(parse_subordinate(text, "dave", 1004), None);
    }

    #[test]
    fn old_kernels_and_disabled_sysctls_are_named() {
        assert!(kernel_too_old("5.10.0-28-amd64").is_some());
        assert!(kernel_too_old("5.11.0").is_none());
        assert!(kernel_too_old("6.18.44-fc").is_none());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("user")).unwrap();
        std::fs::create_dir_all(dir.path().join("kernel")).unwrap();
        std::fs::write(dir.path().join("user/max_user_namespaces"), "0\n").unwrap();
        std::fs::write(dir.path().join("kernel/unprivileged_userns_clone"), "0\n").unwrap();
        std::fs::write(
            dir.path()
                .join("kernel/apparmor_restrict_unprivileged_userns"),
            "1\n",
        )
        .unwrap();
        let v = userns_blockers(dir.path());
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("user.max_user_namespaces"));
        assert!(v[1].contains("kernel.unprivileged_userns_clone"));
        assert!(v[2].contains("AppArmor"));
        std::fs::write(dir.path().join("user/max_user_namespaces"), "1000\n").unwrap();
        std::fs::write(dir.path().join("kernel/unprivileged_userns_clone"), "1\n").unwrap();
        std::fs::write(
            dir.path()
                .join("kernel/apparmor_restrict_unprivileged_userns"),
            "0\n",
        )
        .unwrap();
        assert!(userns_blockers(dir.path()).is_empty());
    }
}
