//! COPY and ADD carried out on a mounted root filesystem, with BuildKit's rules: a directory
//! source copies its contents; a file goes into the destination directory when the destination
//! ends with `/` or already is a directory; missing destination directories are created (owned
//! by `--chown`); modes are kept unless `--chmod`; mtimes are kept; owners become `--chown` or
//! root. Destination paths are resolved inside the rootfs (symlinks never lead out of it).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::context::{Entry, Match, resolve_dest};
use crate::error::{BuildError, io};
use crate::layer::{apply_meta, remove_any};

/// `--chmod`: octal, or symbolic (`u+x,go-w`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<(u32, char, u32, bool)>),
}

impl Chmod {
    /// Parses a `--chmod` value.
    pub fn parse(s: &str) -> Result<Chmod, String> {
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| format!("invalid chmod {s:?}"));
        }
        let mut clauses = Vec::new();
        for clause in s.split(',') {
            let op_at = clause
                .find(['+', '-', '='])
                .ok_or_else(|| format!("invalid chmod {s:?}"))?;
            let (who, rest) = clause.split_at(op_at);
            let mut who_mask = 0;
            for c in who.chars() {
                who_mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(format!("invalid chmod {s:?}")),
                };
            }
            if who_mask == 0 {
                who_mask = 0o7777;
            }
            let op = rest.chars().next().unwrap_or('+');
            let mut bits = 0;
            let mut cond_x = false;
            for c in rest[1..].chars() {
                bits |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' => {
                        cond_x = true;
                        0
                    }
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return Err(format!("invalid chmod {s:?}")),
                };
            }
            clauses.push((who_mask, op, bits, cond_x));
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file with `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for (who, op, bits, cond_x) in clauses {
                    let mut b = *bits;
                    if *cond_x && (is_dir || m & 0o111 != 0) {
                        b |= 0o111;
                    }
                    let b = b & who;
                    match op {
                        '+' => m |= b,
                        '-' => m &= !b,
                        _ => m = (m & !who) | b,
                    }
                }
                m
            }
        }
    }
}

/// One COPY/ADD, with its sources already matched and walked.
#[derive(Debug)]
pub struct CopySpec<'a> {
    /// The destination, absolute inside the rootfs (WORKDIR applied), as written after
    /// expansion (a trailing `/` kept).
    pub dest: &'a str,
    /// The sources: each match with its walked entries.
    pub sources: &'a [(Match, Vec<Entry>)],
    /// `--chown`, resolved.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<&'a Chmod>,
    /// `--parents`: keep each source's path below the destination.
    pub parents: bool,
    /// More than one source was named (the destination must be a directory).
    pub many: bool,
}

/// Carries out a COPY into `rootfs`. Returns the paths written (relative to the rootfs).
pub fn copy_into(rootfs: &Path, spec: &CopySpec<'_>) -> Result<(), BuildError> {
    let dest_rel = spec.dest.trim_start_matches('/');
    let dest_is_dir_syntax = spec.dest.ends_with('/') || spec.dest.ends_with("/.") || spec.many;
    let dest = resolve_dest(rootfs, Path::new(dest_rel)).map_err(|p| BuildError::Source {
        line: 0,
        instruction: String::new(),
        path: spec.dest.to_owned(),
        reason: p.reason(false),
    })?;
    let (uid, gid) = spec.owner.unwrap_or((0, 0));
    for (m, entries) in spec.sources {
        let is_dir = m.meta.is_dir();
        let base = if spec.parents {
            let parent = m.rel.parent().unwrap_or(Path::new(""));
            let d = dest.join(parent);
            mkdir_all(rootfs, &d, uid, gid, spec.owner.is_some())?;
            if is_dir {
                d.join(m.rel.file_name().unwrap_or_default())
            } else {
                d
            }
        } else {
            dest.clone()
        };
        if is_dir {
            mkdir_all(rootfs, &base, uid, gid, spec.owner.is_some())?;
            for e in entries.iter().filter(|e| !e.rel.as_os_str().is_empty()) {
                write_entry(rootfs, &base.join(&e.rel), e, spec, uid, gid)?;
            }
        } else {
            let into_dir = spec.parents
                || dest_is_dir_syntax
                || fs::metadata(&base).is_ok_and(|md| md.is_dir());
            let target = if into_dir {
                mkdir_all(rootfs, &base, uid, gid, spec.owner.is_some())?;
                base.join(m.rel.file_name().unwrap_or_default())
            } else {
                if let Some(parent) = base.parent() {
                    mkdir_all(rootfs, parent, uid, gid, spec.owner.is_some())?;
                }
                base.clone()
            };
            // The source itself (a followed symlink is copied as what it points to).
            let e = Entry {
                rel: PathBuf::new(),
                host: m.host.clone(),
                meta: m.meta.clone(),
            };
            write_entry(rootfs, &target, &e, spec, uid, gid)?;
        }
    }
    Ok(())
}

/// Creates `dir` and missing parents (mode 0755, owned by the chown user when given).
fn mkdir_all(rootfs: &Path, dir: &Path, uid: u32, gid: u32, chown: bool) -> Result<(), BuildError> {
    let rel = dir.strip_prefix(rootfs).unwrap_or(dir);
    let mut cur = rootfs.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                // Resolve inside the rootfs and continue from there.
                let r = resolve_dest(rootfs, cur.strip_prefix(rootfs).unwrap_or(&cur)).map_err(
                    |p| BuildError::Source {
                        line: 0,
                        instruction: String::new(),
                        path: cur.display().to_string(),
                        reason: p.reason(false),
                    },
                )?;
                if !r.is_dir() {
                    fs::create_dir_all(&r).map_err(io(&r))?;
                }
                cur = r;
            }
            Ok(_) => {
                return Err(BuildError::Io {
                    path: cur.clone(),
                    source: io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "cannot copy into it: not a directory",
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io(&cur))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755)).map_err(io(&cur))?;
                if chown && rustix::process::geteuid().is_root() {
                    crate::layer::lchown(&cur, uid, gid)?;
                }
            }
            Err(e) => return Err(io(&cur)(e)),
        }
    }
    Ok(())
}

fn write_entry(
    rootfs: &Path,
    target: &Path,
    e: &Entry,
    spec: &CopySpec<'_>,
    uid: u32,
    gid: u32,
) -> Result<(), BuildError> {
    let _ = rootfs;
    let ft = e.meta.file_type();
    let existing = fs::symlink_metadata(target).ok();
    let perm = e.meta.permissions().mode() & 0o7777;
    let mode = match spec.chmod {
        Some(c) if !ft.is_symlink() => c.apply(perm, ft.is_dir()),
        _ => perm,
    };
    if ft.is_dir() {
        match &existing {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                remove_any(target)?;
                fs::create_dir(target).map_err(io(target))?;
            }
            None => fs::create_dir(target).map_err(io(target))?,
        }
    } else {
        if let Some(m) = &existing {
            if m.is_dir() {
                return Err(BuildError::Io {
                    path: target.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "cannot overwrite a directory with a non-directory",
                    ),
                });
            }
            fs::remove_file(target).map_err(io(target))?;
        }
        if ft.is_symlink() {
            let link = fs::read_link(&e.host).map_err(io(&e.host))?;
            std::os::unix::fs::symlink(&link, target).map_err(io(target))?;
        } else if ft.is_file() {
            let mut src = File::open(&e.host).map_err(io(&e.host))?;
            let mut dst = File::create(target).map_err(io(target))?;
            io::copy(&mut src, &mut dst).map_err(io(target))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                target,
                kind,
                rustix::fs::Mode::from_raw_mode(mode),
                e.meta.rdev(),
            )
            .map_err(crate::error::errno(target))?;
        } else {
            // Sockets are not copied.
            return Ok(());
        }
    }
    apply_meta(
        target,
        ft.is_symlink(),
        u64::from(uid),
        u64::from(gid),
        mode,
        e.meta.mtime(),
        &[],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-r").unwrap().apply(0o644, false), 0o600);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o700, true), 0o555);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o600, false), 0o444);
        assert!(Chmod::parse("8").is_err());
        assert!(Chmod::parse("z+x").is_err());
    }
}
