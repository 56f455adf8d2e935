//! Users and groups inside an image: `USER` and `--chown` names resolved through the rootfs's
//! `/etc/passwd` and `/etc/group`, as BuildKit does.

use std::path::Path;

use crate::context::resolve_in;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (for RUN; empty for --chown).
    pub additional: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

fn read_rootfs_file(rootfs: &Path, rel: &str) -> String {
    resolve_in(rootfs, Path::new(rel), true)
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_rootfs_file(rootfs, "etc/passwd")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

/// (name, gid, members)
fn groups(rootfs: &Path) -> Vec<(String, u32, Vec<String>)> {
    read_rootfs_file(rootfs, "etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_owned(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Why a user spec cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserProblem {
    UnknownUser(String),
    UnknownGroup(String),
}

impl std::fmt::Display for UserProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserProblem::UnknownUser(u) => {
                write!(
                    f,
                    "unable to find user {u}: no matching entries in passwd file"
                )
            }
            UserProblem::UnknownGroup(g) => {
                write!(
                    f,
                    "unable to find group {g}: no matching entries in group file"
                )
            }
        }
    }
}

/// Resolves `user[:group]` (names or numbers) in `rootfs`. `with_groups`: also the
/// supplementary groups the user is a member of (RUN does this; `--chown` does not).
pub fn resolve(rootfs: &Path, spec: &str, with_groups: bool) -> Result<Ids, UserProblem> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() && group.is_none() {
        // No USER: root, without looking at a passwd file the image may not have.
        return Ok(Ids {
            uid: 0,
            gid: 0,
            additional: Vec::new(),
        });
    }
    let user = if user.is_empty() { "root" } else { user };
    let users = passwd(rootfs);
    let (uid, primary, name) = match user.parse::<u32>() {
        Ok(n) => {
            let e = users.iter().find(|e| e.uid == n);
            (n, e.map_or(n, |e| e.gid), e.map(|e| e.name.clone()))
        }
        Err(_) => {
            let e = users
                .iter()
                .find(|e| e.name == user)
                .ok_or_else(|| UserProblem::UnknownUser(user.to_owned()))?;
            (e.uid, e.gid, Some(e.name.clone()))
        }
    };
    let all_groups = if group.is_some() || with_groups {
        groups(rootfs)
    } else {
        Vec::new()
    };
    let gid = match group {
        None | Some("") => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => all_groups
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| UserProblem::UnknownGroup(g.to_owned()))?,
        },
    };
    let mut additional = Vec::new();
    if with_groups
        && group.is_none()
        && let Some(name) = &name
    {
        for (_, id, members) in &all_groups {
            if members.iter().any(|m| m == name) && *id != gid && !additional.contains(id) {
                additional.push(*id);
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        additional,
    })
}

/// Resolves a `--chown` value: as [`resolve`], except that a numeric user without a group uses
/// the same number as group only when the passwd file does not know it.
pub fn chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), UserProblem> {
    let ids = resolve(rootfs, spec, false)?;
    Ok((ids.uid, ids.gid))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_numbers_resolve_through_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\n",
        )
        .unwrap();
        let r = dir.path();
        assert_eq!(
            resolve(r, "app", true).unwrap(),
            Ids {
                uid: 1000,
                gid: 1000,
                additional: vec![50]
            }
        );
        assert_eq!(chown(r, "app:staff").unwrap(), (1000, 50));
        assert_eq!(chown(r, "4242").unwrap(), (4242, 4242));
        assert_eq!(chown(r, "1000").unwrap(), (1000, 1000));
        assert_eq!(chown(r, "0:50").unwrap(), (0, 50));
        assert_eq!(
            chown(r, "nobody").unwrap_err(),
            UserProblem::UnknownUser("nobody".into())
        );
        assert_eq!(
            chown(r, "app:nogroup").unwrap_err(),
            UserProblem::UnknownGroup("nogroup".into())
        );
        assert_eq!(resolve(r, "", true).unwrap().uid, 0);
    }
}
