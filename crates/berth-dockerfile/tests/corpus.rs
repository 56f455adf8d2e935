//! The parser corpus: every `tests/corpus/*.Dockerfile` is parsed and its structure compared with
//! the `.expected` file beside it (one line per instruction: its lines, keyword, flags and the typed
//! command as compact JSON with positions left out), or, for files that must be refused, the
//! error (message, line and caret) with the `.error` file.
//!
//! `BERTH_BLESS=1 cargo test -p berth-dockerfile --test corpus` rewrites the expectations; review
//! the diff against BuildKit's behaviour before committing it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Drops positions and folds `{text, span}` words to their text, recursively.
fn strip(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            if map.len() == 2 && map.contains_key("text") && map.contains_key("span") {
                return map.get("text").cloned().unwrap_or(Value::Null);
            }
            Value::Object(
                map.into_iter()
                    .filter(|(k, v)| k != "span" && !v.is_null())
                    .filter(|(_, v)| *v != Value::Bool(false) && *v != Value::Array(vec![]))
                    .map(|(k, v)| (k, strip(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip).collect()),
        other => other,
    }
}

fn dump(df: &berth_dockerfile::Dockerfile) -> String {
    let mut out = String::new();
    for d in &df.directives.all {
        out.push_str(&format!(
            "directive {}={} (line {})\n",
            d.name, d.value, d.line
        ));
    }
    for c in &df.comments {
        out.push_str(&format!("comment {}: {}\n", c.line, c.text));
    }
    for w in &df.warnings {
        out.push_str(&format!("warning {}: {}\n", w.line, w.message));
    }
    for ins in &df.instructions {
        let (a, b) = (ins.span.start.line, ins.span.end.line);
        let lines = if a == b {
            format!("{a}")
        } else {
            format!("{a}-{b}")
        };
        let cmd = strip(serde_json::to_value(&ins.command).unwrap());
        out.push_str(&format!("{lines} {} {}\n", ins.keyword, cmd));
        for f in &ins.flags {
            out.push_str(&format!(
                "    flag {}{}\n",
                f.name,
                f.value
                    .as_ref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default()
            ));
        }
        for h in &ins.heredocs {
            out.push_str(&format!(
                "    heredoc {} expand={} chomp={} lines {}-{}: {:?}\n",
                h.name, h.expand, h.chomp, h.span.start.line, h.span.end.line, h.content
            ));
        }
        if !ins.comments.is_empty() {
            out.push_str(&format!("    comments {:?}\n", ins.comments));
        }
    }
    out
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_parses_to_the_expected_structure() {
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    let files = corpus();
    assert!(
        files.len() >= 60,
        "the corpus has {} files; it must have at least 60",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let (actual, expected_path, other) = match berth_dockerfile::parse(&text) {
            Ok(df) => (
                dump(&df),
                path.with_extension("expected"),
                path.with_extension("error"),
            ),
            Err(e) => (
                format!("{e}\n"),
                path.with_extension("error"),
                path.with_extension("expected"),
            ),
        };
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            let _ = std::fs::remove_file(&other);
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                path.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (the parser gave:)\n{actual}",
                path.display(),
                expected_path.file_name().unwrap().to_string_lossy()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
