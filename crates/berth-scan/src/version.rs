//! Version order of each ecosystem: dpkg (epoch, upstream, revision, `~`), apk, rpm
//! (rpmvercmp), PEP 440 (PyPI), semver (npm, Go, crates.io). `None` when a version does not
//! parse in its ecosystem's grammar: a record is then matched only by its explicit versions.

use std::cmp::Ordering;

use crate::inventory::Ecosystem;

/// Compares two versions in an ecosystem's order.
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Option<Ordering> {
    match eco {
        Ecosystem::Debian | Ecosystem::Ubuntu => Some(dpkg(a, b)),
        Ecosystem::Alpine => apk(a, b),
        Ecosystem::Rpm => Some(rpm(a, b)),
        Ecosystem::PyPI => pep440(a, b),
        Ecosystem::Npm | Ecosystem::Go | Ecosystem::Cargo => semver(a, b),
        Ecosystem::Maven => maven(a, b),
    }
}

// ---- dpkg ----------------------------------------------------------------------------------

/// `[epoch:]upstream[-revision]`, as dpkg splits it.
fn dpkg_parts(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(0), r)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((up, rev)) => (epoch, up, rev),
        None => (epoch, rest, ""),
    }
}

/// dpkg's character order: `~` before everything (even the end), letters before other
/// characters.
fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = dpkg_order(a.get(i).copied());
            let bc = dpkg_order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Debian's version order (`dpkg --compare-versions`).
pub fn dpkg(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_parts(a);
    let (eb, ub, rb) = dpkg_parts(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

// ---- rpm -----------------------------------------------------------------------------------

/// rpm's `rpmvercmp` on one of epoch, version or release.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        // `~` sorts before everything, the end included.
        match (a.get(i) == Some(&b'~'), b.get(j) == Some(&b'~')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // `^` sorts after the end, before anything else.
        match (a.get(i) == Some(&b'^'), b.get(j) == Some(&b'^')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => {
                return if j >= b.len() {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            (false, true) => {
                return if i >= a.len() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            _ => {}
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let run = |s: &[u8], mut k: usize| {
            let start = k;
            while k < s.len()
                && (if numeric {
                    s[k].is_ascii_digit()
                } else {
                    s[k].is_ascii_alphabetic()
                })
            {
                k += 1;
            }
            (start, k)
        };
        let (sa, ea) = run(a, i);
        let (sb, eb) = run(b, j);
        if sb == eb {
            // Different kinds of segment: numeric is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut x, mut y) = (&a[sa..ea], &b[sb..eb]);
        if numeric {
            while x.first() == Some(&b'0') {
                x = &x[1..];
            }
            while y.first() == Some(&b'0') {
                y = &y[1..];
            }
            let by_len = x.len().cmp(&y.len());
            if by_len != Ordering::Equal {
                return by_len;
            }
        }
        let c = x.cmp(y);
        if c != Ordering::Equal {
            return c;
        }
        i = ea;
        j = eb;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// rpm's order of `[epoch:]version[-release]`.
pub fn rpm(a: &str, b: &str) -> Ordering {
    let split = |v: &str| {
        let (e, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0u64, v),
        };
        let (ver, rel) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (e, ver.to_owned(), rel.to_owned())
    };
    let (ea, va, ra) = split(a);
    let (eb, vb, rb) = split(b);
    ea.cmp(&eb).then_with(|| rpmvercmp(&va, &vb)).then_with(|| {
        if ra.is_empty() || rb.is_empty() {
            Ordering::Equal
        } else {
            rpmvercmp(&ra, &rb)
        }
    })
}

// ---- apk -----------------------------------------------------------------------------------

/// An Alpine version: `1.2.3[letter][_suffix[N]]…[-rN]`.
#[derive(Debug, PartialEq, Eq)]
struct Apk {
    numbers: Vec<u64>,
    letter: Option<u8>,
    suffixes: Vec<(i8, u64)>,
    revision: u64,
}

fn apk_suffix_rank(s: &str) -> Option<i8> {
    Some(match s {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => return None,
    })
}

fn parse_apk(v: &str) -> Option<Apk> {
    let (main, revision) = match v.rsplit_once("-r") {
        Some((m, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
            (m, r.parse().ok()?)
        }
        _ => (v, 0),
    };
    let mut parts = main.split('_');
    let head = parts.next()?;
    let (digits, letter) = match head.as_bytes().last() {
        Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(*c)),
        _ => (head, None),
    };
    let numbers = digits
        .split('.')
        .map(|n| n.parse::<u64>().ok())
        .collect::<Option<Vec<_>>>()?;
    let mut suffixes = Vec::new();
    for s in parts {
        let cut = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
        let rank = apk_suffix_rank(&s[..cut])?;
        let n = if cut == s.len() {
            0
        } else {
            s[cut..].parse().ok()?
        };
        suffixes.push((rank, n));
    }
    Some(Apk {
        numbers,
        letter,
        suffixes,
        revision,
    })
}

/// Alpine's version order (`apk version -t`).
pub fn apk(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse_apk(a)?, parse_apk(b)?);
    let len = a.numbers.len().max(b.numbers.len());
    for k in 0..len {
        match (a.numbers.get(k), b.numbers.get(k)) {
            (Some(x), Some(y)) if x != y => return Some(x.cmp(y)),
            (Some(_), None) => return Some(Ordering::Greater),
            (None, Some(_)) => return Some(Ordering::Less),
            _ => {}
        }
    }
    let by_letter = a.letter.cmp(&b.letter);
    if by_letter != Ordering::Equal {
        return Some(by_letter);
    }
    let len = a.suffixes.len().max(b.suffixes.len());
    for k in 0..len {
        // No suffix ranks between the pre-release suffixes and the post-release ones.
        let x = a.suffixes.get(k).copied().unwrap_or((0, 0));
        let y = b.suffixes.get(k).copied().unwrap_or((0, 0));
        if x != y {
            return Some(x.cmp(&y));
        }
    }
    Some(a.revision.cmp(&b.revision))
}

// ---- PEP 440, semver, Maven ----------------------------------------------------------------

/// PEP 440 order (PyPI).
pub fn pep440(a: &str, b: &str) -> Option<Ordering> {
    let a: pep440_rs::Version = a.trim().parse().ok()?;
    let b: pep440_rs::Version = b.trim().parse().ok()?;
    Some(a.cmp(&b))
}

/// A semver version, leniently: a leading `v` (Go) is dropped, and missing minor or patch
/// numbers are zero (`1.2` is `1.2.0`).
fn parse_semver(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    if let Ok(p) = semver::Version::parse(v) {
        return Some(p);
    }
    let cut = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(cut);
    let dots = core.matches('.').count();
    let padded = match dots {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

/// Semantic Versioning 2.0 order (npm, Go modules, crates.io).
pub fn semver(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_semver(a)?.cmp_precedence(&parse_semver(b)?))
}

/// Maven's order for the common shape: dot-separated numbers, then a qualifier (`alpha` <
/// `beta` < `milestone` < `rc` < `snapshot` < release < `sp`, others after, by name).
pub fn maven(a: &str, b: &str) -> Option<Ordering> {
    fn split(v: &str) -> (Vec<u64>, String) {
        let v = v.trim().to_ascii_lowercase();
        let cut = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(v.len());
        let nums = v[..cut]
            .trim_end_matches('.')
            .split('.')
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        let q = v[cut..].trim_start_matches(['-', '.']).to_owned();
        (nums, q)
    }
    fn rank(q: &str) -> (u8, String) {
        let word: String = q.chars().take_while(char::is_ascii_alphabetic).collect();
        let r = match word.as_str() {
            "alpha" | "a" => 0,
            "beta" | "b" => 1,
            "milestone" | "m" => 2,
            "rc" | "cr" => 3,
            "snapshot" => 4,
            "" | "ga" | "final" | "release" => 5,
            "sp" => 6,
            _ => 7,
        };
        (r, q.to_owned())
    }
    let (na, qa) = split(a);
    let (nb, qb) = split(b);
    let len = na.len().max(nb.len());
    for k in 0..len {
        let x = na.get(k).copied().unwrap_or(0);
        let y = nb.get(k).copied().unwrap_or(0);
        if x != y {
            return Some(x.cmp(&y));
        }
    }
    Some(rank(&qa).cmp(&rank(&qb)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn dpkg_order_matches_dpkg_compare_versions() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0", Greater),
            ("1.0", "1.0-0", Equal),
            ("1:0.9", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1-1", "1.0~rc2-1", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0", Greater),
            ("1.0.1", "1.0a", Greater),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("1.2.13.dfsg-1", "1:1.2.11.dfsg-2", Less),
            ("010", "10", Equal),
        ] {
            assert_eq!(dpkg(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rpm_order_matches_rpmvercmp() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.010", "1.9", Greater),
            ("1:1.0", "2.0", Greater),
            ("1.0-1.el9", "1.0-2.el9", Less),
            ("5.5p1", "5.5p10", Less),
            ("a", "1", Less),
        ] {
            assert_eq!(rpm(a, b), want, "{a} vs {b}");
            assert_eq!(rpm(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn apk_order_matches_apk_version() {
        for (a, b, want) in [
            ("1.2.3-r0", "1.2.3-r1", Less),
            ("1.2.3", "1.2.3-r0", Equal),
            ("1.2.3_rc1-r0", "1.2.3-r0", Less),
            ("1.2.3_p1-r0", "1.2.3-r0", Greater),
            ("1.2.3a-r0", "1.2.3-r0", Greater),
            ("1.2.10-r0", "1.2.9-r0", Greater),
            ("3.1.4-r5", "3.1.4-r10", Less),
            ("1.36.1-r2", "1.36.1-r15", Less),
        ] {
            assert_eq!(apk(a, b), Some(want), "{a} vs {b}");
            assert_eq!(apk(b, a), Some(want.reverse()), "{b} vs {a}");
        }
        assert_eq!(apk("not a version", "1.0"), None);
    }

    #[test]
    fn pep440_semver_and_maven() {
        assert_eq!(pep440("2.19.0", "2.20"), Some(Less));
        assert_eq!(pep440("1.0rc1", "1.0"), Some(Less));
        assert_eq!(pep440("1.0.post1", "1.0"), Some(Greater));
        assert_eq!(pep440("1!0.1", "2.0"), Some(Greater));
        assert_eq!(semver("4.17.15", "4.17.19"), Some(Less));
        assert_eq!(semver("v1.2.3", "1.2.3"), Some(Equal));
        assert_eq!(semver("1.2", "1.2.0"), Some(Equal));
        assert_eq!(semver("1.0.0-alpha", "1.0.0"), Some(Less));
        assert_eq!(
            semver("v0.0.0-20230101000000-abcdef123456", "v0.1.0"),
            Some(Less)
        );
        assert_eq!(maven("2.14.1", "2.15.0"), Some(Less));
        assert_eq!(maven("2.15.0-rc1", "2.15.0"), Some(Less));
        assert_eq!(maven("1.0", "1.0.0"), Some(Equal));
    }
}
