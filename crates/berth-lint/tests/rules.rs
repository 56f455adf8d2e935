//! For each rule: Dockerfiles that must trigger it and Dockerfiles that must not.
//!
//! `tests/rules/<CODE>/bad*.Dockerfile` must report `<CODE>` — at the lines listed in a first
//! comment `# lines: 3,7` when there is one; `good*.Dockerfile` must not report it. A
//! `.hadolint.yaml` in the rule's directory is the configuration for its files (label schema,
//! trusted registries, rules that are off by default).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use berth_lint::{Config, catalog, lint};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

fn expected_lines(text: &str) -> Option<Vec<u32>> {
    let first = text.lines().next()?;
    let list = first.strip_prefix("# lines:")?;
    Some(list.split(',').map(|n| n.trim().parse().unwrap()).collect())
}

#[test]
fn every_rule_triggers_and_has_a_negative_case() {
    let mut failures = Vec::new();
    let mut covered = 0;
    for rule in catalog::RULES {
        let dir = rules_dir().join(rule.code);
        if !dir.is_dir() {
            continue;
        }
        covered += 1;
        let config = if dir.join(".hadolint.yaml").is_file() {
            Config::load(&dir.join(".hadolint.yaml")).unwrap()
        } else {
            Config::default()
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
            .collect();
        files.sort();
        let (mut bad, mut good) = (0, 0);
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let found: Vec<u32> = lint(&text, &config)
                .into_iter()
                .filter(|f| f.code == rule.code)
                .map(|f| f.line)
                .collect();
            let mut found = found;
            found.dedup();
            if name.starts_with("bad") {
                bad += 1;
                if found.is_empty() {
                    failures.push(format!("{}/{name}: not reported", rule.code));
                } else if let Some(lines) = expected_lines(&text)
                    && lines != found
                {
                    failures.push(format!(
                        "{}/{name}: reported at {found:?}, expected {lines:?}",
                        rule.code
                    ));
                }
            } else if name.starts_with("good") {
                good += 1;
                if !found.is_empty() {
                    failures.push(format!("{}/{name}: reported at {found:?}", rule.code));
                }
            }
        }
        if bad == 0 || good == 0 {
            failures.push(format!(
                "{}: needs bad and good cases ({bad} bad, {good} good)",
                rule.code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(covered >= 45, "only {covered} rules have cases");
}

#[test]
fn every_rule_directory_names_a_rule() {
    for e in std::fs::read_dir(rules_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            catalog::rule(&name).is_some(),
            "tests/rules/{name}: no such rule"
        );
    }
}
