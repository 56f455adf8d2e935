//! Architecture invariants checked against `cargo metadata`: lower layers never depend on
//! higher ones, `berth-oci` stays free of any I/O runtime, and ARCHITECTURE.md lists every crate.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The layer of every workspace crate (see ARCHITECTURE.md). A crate may depend only on
/// crates of a strictly lower layer. A new crate must be placed here.
const LAYERS: &[(&str, u8)] = &[
    ("berth-oci", 0),
    ("berth-store", 1),
    ("berth-client", 1),
    ("berth-iam", 1),
    ("berth-dockerfile", 1),
    ("berth-scan", 1),
    ("berth-registry", 2),
    ("berth-build", 2),
    ("berth-lint", 2),
    ("berth-ops", 3),
    ("berth-mcp", 4),
    ("berth", 5),
    ("berth-bench", 5),
];

/// Crates `berth-oci` must never pull in, directly or transitively.
const NO_RUNTIME: &[&str] = &["tokio", "axum", "hyper", "reqwest", "mio"];

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn lower_layers_never_depend_on_higher_ones() {
    let meta = metadata();
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut violations = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        if !members.contains(pkg["id"].as_str().unwrap()) {
            continue;
        }
        let name = pkg["name"].as_str().unwrap();
        let Some(&own) = layer.get(name) else {
            violations.push(format!(
                "{name} has no layer in LAYERS (and ARCHITECTURE.md)"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            if let Some(&theirs) = layer.get(dep_name)
                && theirs >= own
            {
                violations.push(format!(
                    "{name} (layer {own}) depends on {dep_name} (layer {theirs})"
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn oci_model_has_no_io_runtime() {
    let meta = metadata();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let by_id: BTreeMap<&str, &serde_json::Value> = nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let name_of = |id: &str| -> String {
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let root = nodes
        .iter()
        .find(|n| name_of(n["id"].as_str().unwrap()) == "berth-oci")
        .unwrap()["id"]
        .as_str()
        .unwrap();
    // Walk normal (non-dev, non-build) dependencies.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in by_id[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let names: BTreeSet<String> = seen.iter().map(|id| name_of(id)).collect();
    for forbidden in NO_RUNTIME {
        assert!(
            !names.contains(*forbidden),
            "berth-oci depends (transitively) on {forbidden}: {names:?}"
        );
    }
}

#[test]
fn architecture_md_maps_every_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            text.contains(&format!("`{name}`")),
            "ARCHITECTURE.md has no codemap entry for `{name}`"
        );
    }
}
