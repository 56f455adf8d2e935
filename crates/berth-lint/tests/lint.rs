//! The linter as a whole: pragmas, configuration, parse errors, thresholds, and the constructs
//! hadolint gets wrong.

#![allow(clippy::unwrap_used)]

use berth_lint::{Config, Severity, Threshold, fails, lint};

fn codes(text: &str, config: &Config) -> Vec<(String, u32)> {
    lint(text, config)
        .into_iter()
        .map(|f| (f.code, f.line))
        .collect()
}

fn has(text: &str, code: &str) -> bool {
    lint(text, &Config::default())
        .iter()
        .any(|f| f.code == code)
}

#[test]
fn ignore_pragma_applies_to_the_next_instruction_only() {
    let text = "FROM debian\n# hadolint ignore=DL3006\nFROM ubuntu\nFROM alpine\n";
    let found = codes(text, &Config::default());
    assert!(found.contains(&("DL3006".into(), 1)), "{found:?}");
    assert!(!found.contains(&("DL3006".into(), 3)), "{found:?}");
    assert!(found.contains(&("DL3006".into(), 4)), "{found:?}");
}

#[test]
fn global_pragma_and_berth_spelling() {
    let text = "# hadolint global ignore=DL3006,DL3007\nFROM debian\nFROM ubuntu:latest\n# berth ignore=DL3059\nRUN a\n";
    let found = codes(text, &Config::default());
    assert!(
        found.iter().all(|(c, _)| c != "DL3006" && c != "DL3007"),
        "{found:?}"
    );
    let text = "FROM debian:12\nRUN a\n# berth ignore=DL3059\nRUN b\n";
    assert!(!has(text, "DL3059"));
}

#[test]
fn pragmas_can_be_disabled() {
    let mut c = Config::default();
    c.disable_ignore_pragma = true;
    let found = codes("# hadolint ignore=DL3006\nFROM debian\n", &c);
    assert_eq!(found, vec![("DL3006".to_string(), 2)]);
}

#[test]
fn config_ignores_and_overrides() {
    let c = Config::from_yaml("ignored: [DL3006]\noverride:\n  error: [DL3059]\n").unwrap();
    let f = lint("FROM debian\nRUN a\nRUN b\n", &c);
    assert!(f.iter().all(|f| f.code != "DL3006"));
    let dl3059 = f.iter().find(|f| f.code == "DL3059").unwrap();
    assert_eq!(dl3059.severity, Severity::Error);
}

#[test]
fn off_by_default_rules_turn_on_by_override() {
    assert!(!has("FROM debian:12\n", "DL3057"));
    let c = Config::from_yaml("override:\n  info: [DL3057]\n").unwrap();
    assert!(
        lint("FROM debian:12\n", &c)
            .iter()
            .any(|f| f.code == "DL3057")
    );
    assert!(
        !lint("FROM debian:12\nHEALTHCHECK NONE\n", &c)
            .iter()
            .any(|f| f.code == "DL3057")
    );
}

#[test]
fn thresholds_decide_failure() {
    let f = lint("FROM debian:12\nRUN a\nRUN b\n", &Config::default());
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        fails(&f, &Config::default()),
        "info fails at the default threshold"
    );
    let mut c = Config::default();
    c.failure_threshold = Threshold::At(Severity::Warning);
    assert!(!fails(&f, &c));
    c.failure_threshold = Threshold::At(Severity::Info);
    c.no_fail = true;
    assert!(!fails(&f, &c));
}

#[test]
fn parse_errors_are_dl1000_with_position() {
    let f = lint("FROM debian:12\nFORM x\n", &Config::default());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, "DL1000");
    assert_eq!(f[0].line, 2);
    assert!(
        f[0].message.contains("unknown instruction"),
        "{}",
        f[0].message
    );
    let f = lint("FROM a\nONBUILD FROM b\n", &Config::default());
    assert_eq!(f[0].code, "DL3043");
}

// ---- what hadolint gets wrong ------------------------------------------------------------------

#[test]
fn heredoc_bodies_are_not_instructions() {
    // A heredoc COPY body that looks like instructions and shell.
    let text = "FROM debian:12\nCOPY <<EOF /etc/motd\nFROM ubuntu\nRUN sudo apt-get install curl\nMAINTAINER me\nEOF\n";
    let f = codes(text, &Config::default());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn heredoc_run_scripts_are_judged_as_shell() {
    let text = "FROM debian:12\nRUN <<EOF\nset -e\napt-get update\napt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8\nrm -rf /var/lib/apt/lists/*\nEOF\n";
    let f = codes(text, &Config::default());
    assert!(f.is_empty(), "{f:?}");
    let text = "FROM debian:12\nRUN <<EOF\napt-get install -y curl\nEOF\n";
    let f = codes(text, &Config::default());
    assert!(f.contains(&("DL3008".into(), 2)), "{f:?}");
    assert!(f.contains(&("DL3015".into(), 2)), "{f:?}");
}

#[test]
fn shell_heredoc_bodies_inside_run_are_not_commands() {
    let text =
        "FROM debian:12\nRUN cat <<EOF > /etc/apt/sources.list\nsudo apt-get install curl\nEOF\n";
    let f = codes(text, &Config::default());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn arg_based_and_stage_bases_are_not_dl3006() {
    let text = "ARG BASE=debian:12\nFROM ${BASE} AS build\nFROM build AS test\nFROM --platform=$BUILDPLATFORM golang:1.23 AS cross\nFROM scratch\nCOPY --from=cross /out /out\n";
    let f = codes(text, &Config::default());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn words_in_strings_and_arguments_are_not_commands() {
    let text =
        "FROM debian:12\nRUN echo \"sudo cd apt-get install x\" && printf '%s' 'wget | curl'\n";
    let f = codes(text, &Config::default());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn powershell_runs_are_not_judged_as_posix_shell() {
    let text = "FROM mcr.microsoft.com/windows/servercore:ltsc2022\nSHELL [\"powershell\", \"-Command\"]\nRUN Get-Item x | Remove-Item; cd C:\\\n";
    let f = codes(text, &Config::default());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn findings_are_sorted_and_unique() {
    let text = "FROM debian\nRUN cd /a && cd /b\nRUN sudo x\n";
    let f = lint(text, &Config::default());
    let keys: Vec<(u32, &str)> = f.iter().map(|f| (f.line, f.code.as_str())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted);
}
