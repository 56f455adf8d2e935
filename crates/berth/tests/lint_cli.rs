//! `berth lint` as users run it: files and stdin, formats, exit codes, configuration discovery,
//! `--explain` — and its JSON object for object the same as `hadolint -f json`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn berth(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.current_dir(dir)
        .arg("lint")
        .args(args)
        .env("HOME", dir)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("BERTH_LINT_FORMAT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

const DOCKERFILE: &str = "FROM debian\nRUN cd /tmp && apt-get install curl\nRUN echo done\n";

#[test]
fn tty_output_shows_findings_and_the_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    let o = berth(dir.path(), &[], None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("Dockerfile:1 DL3006 warning: Always tag the version of an image explicitly"),
        "{out}"
    );
    assert!(
        out.contains("   2 | RUN cd /tmp && apt-get install curl"),
        "{out}"
    );
    for code in ["DL3003", "DL3008", "DL3014", "DL3015"] {
        assert!(out.contains(code), "{code} missing: {out}");
    }
}

#[test]
fn stdin_json_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let o = berth(
        dir.path(),
        &["-f", "json", "-"],
        Some("FROM debian:12\nRUN a\nRUN b\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "[{\"code\":\"DL3059\",\"column\":1,\"file\":\"-\",\"level\":\"info\",\"line\":3,\"message\":\"Multiple consecutive `RUN` instructions. Consider consolidation.\"}]\n"
    );
    let o = berth(
        dir.path(),
        &["-f", "json", "--failure-threshold", "warning", "-"],
        Some("FROM debian:12\nRUN a\nRUN b\n"),
    );
    assert_eq!(o.status.code(), Some(0));
    let o = berth(dir.path(), &["--no-fail", "-"], Some("FROM debian\n"));
    assert_eq!(o.status.code(), Some(0));
    let o = berth(dir.path(), &["-f", "json", "-"], Some("FROM debian:12\n"));
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), "[]\n".to_string()));
}

#[test]
fn config_file_is_found_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(
        dir.path().join(".hadolint.yaml"),
        "ignored: [DL3003, DL3008]\noverride:\n  error: [DL3006]\n",
    )
    .unwrap();
    let o = berth(dir.path(), &["-f", "gnu"], None);
    let out = stdout(&o);
    assert!(!out.contains("DL3003") && !out.contains("DL3008"), "{out}");
    assert!(
        out.contains("berth:Dockerfile:1: DL3006 error: Always tag"),
        "{out}"
    );
    let o = berth(dir.path(), &["-f", "gnu", "--warning", "DL3006"], None);
    assert!(stdout(&o).contains("DL3006 warning"), "{}", stdout(&o));
    std::fs::write(dir.path().join(".hadolint.yaml"), "ignored: DL3003\n").unwrap();
    let o = berth(dir.path(), &[], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(".hadolint.yaml"));
}

#[test]
fn formats_explain_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    let o = berth(dir.path(), &["-f", "sarif", "Dockerfile"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(!v["runs"][0]["results"].as_array().unwrap().is_empty());
    let o = berth(dir.path(), &["-f", "checkstyle"], None);
    assert!(
        stdout(&o).starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><checkstyle version=\"4.3\"><file name=\"Dockerfile\"><error column=\"1\" line=\"1\" message=\"Always tag the version of an image explicitly\" severity=\"warning\" source=\"DL3006\"/>"
        ),
        "{}",
        stdout(&o)
    );
    let o = berth(dir.path(), &["--explain", "dl3008"], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("DL3008 (warning)"), "{}", stdout(&o));
    let o = berth(dir.path(), &["--list-rules"], None);
    assert!(stdout(&o).lines().count() >= 60);
    assert_eq!(
        berth(dir.path(), &["--explain", "DL9999"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        berth(dir.path(), &["-f", "xml"], None).status.code(),
        Some(2)
    );
    assert_eq!(
        berth(dir.path(), &["missing.Dockerfile"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn json_is_byte_identical_to_hadolint() {
    let hadolint = std::env::var_os("BERTH_HADOLINT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/hadolint-venv/bin/hadolint")
        });
    assert!(
        hadolint.is_file(),
        "hadolint not found at {}: run scripts/test.sh or set BERTH_HADOLINT",
        hadolint.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let text = "FROM debian\nMAINTAINER me\nRUN sudo apt-get install curl && cd /x\nCOPY a b c\nEXPOSE 99999\nCMD run it\n";
    std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
    let ours = berth(dir.path(), &["-f", "json", "Dockerfile"], None);
    let theirs = Command::new(&hadolint)
        .current_dir(dir.path())
        .args(["-c", "/dev/null", "-f", "json", "Dockerfile"])
        .output()
        .unwrap();
    // hadolint adds ShellCheck findings (SC…), which berth does not have; drop them.
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&theirs.stdout).unwrap();
    let theirs: Vec<serde_json::Value> = theirs
        .into_iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with("DL"))
        .collect();
    // The same objects, key for key and byte for byte; the order inside a line is hadolint's
    // rule-evaluation order, so both sides are compared sorted by (line, code).
    let key = |f: &serde_json::Value| (f["line"].as_u64().unwrap(), f["code"].to_string());
    let mut theirs = theirs;
    theirs.sort_by_key(key);
    let mut ours_v: Vec<serde_json::Value> = serde_json::from_slice(&ours.stdout).unwrap();
    ours_v.sort_by_key(key);
    let as_text = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|f| serde_json::to_string(f).unwrap())
            .collect()
    };
    assert_eq!(as_text(&ours_v), as_text(&theirs));
    assert!(stdout(&ours).starts_with("[{\"code\":\"DL3006\",\"column\":1,\"file\":\"Dockerfile\",\"level\":\"warning\",\"line\":1,\"message\":"));
    assert_eq!(ours.status.code(), Some(1));
}

/// `berth … | head`: the reader going away ends berth quietly, as SIGPIPE ends other tools
/// (status 141), never with a panic message.
#[test]
fn a_closed_pipe_ends_quietly() {
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                // `lint` writes with `writeln!` (an io error), `inspect` with `println!` (a panic
                // Rust raises on a closed stdout).
                "set -o pipefail; for i in 1 2 3 4 5 6 7 8; do '{bin}' lint --list-rules; '{bin}' inspect 'oci:{fixture}'; done | head -c 10 >/dev/null",
                bin = env!("CARGO_BIN_EXE_berth"),
                fixture = common::fixtures().join("busybox").display(),
            ),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}
