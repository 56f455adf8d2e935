//! Output formats: `tty` (the offending line shown, colour when asked), `json` (the shape of
//! `hadolint -f json`), `sarif` (2.1.0), `checkstyle`, `gnu`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{Finding, Severity};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    Tty,
    Json,
    Sarif,
    Checkstyle,
    Gnu,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["tty", "json", "sarif", "checkstyle", "gnu"];

    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "tty" => Some(Format::Tty),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            "checkstyle" => Some(Format::Checkstyle),
            "gnu" => Some(Format::Gnu),
            _ => None,
        }
    }
}

/// The findings of one file, and its text (the tty format shows offending lines).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Report<'a> {
    /// The file name as given (`-` for standard input).
    pub file: &'a str,
    pub text: &'a str,
    pub findings: &'a [Finding],
}

impl<'a> Report<'a> {
    pub fn new(file: &'a str, text: &'a str, findings: &'a [Finding]) -> Self {
        Self {
            file,
            text,
            findings,
        }
    }
}

/// Renders `reports` in `format`. `color` applies to tty only.
pub fn render(format: Format, reports: &[Report<'_>], color: bool) -> String {
    match format {
        Format::Tty => tty(reports, color),
        Format::Json => json(reports),
        Format::Sarif => sarif(reports),
        Format::Checkstyle => checkstyle(reports),
        Format::Gnu => gnu(reports),
    }
}

/// The name hadolint prints for standard input.
fn display_name(file: &str) -> &str {
    if file == "-" { "-" } else { file }
}

fn tty(reports: &[Report<'_>], color: bool) -> String {
    let mut out = String::new();
    for r in reports {
        let lines: Vec<&str> = r.text.lines().collect();
        for f in r.findings {
            let (on, off) = if color {
                (severity_color(f.severity), "\x1b[0m")
            } else {
                ("", "")
            };
            let _ = writeln!(
                out,
                "{}:{} {} {on}{}{off}: {}",
                display_name(r.file),
                f.line,
                f.code,
                f.severity,
                f.message
            );
            if let Some(src) = lines.get(f.line.saturating_sub(1) as usize) {
                let src = src.trim_end();
                if !src.is_empty() {
                    let (dim, undim) = if color {
                        ("\x1b[2m", "\x1b[0m")
                    } else {
                        ("", "")
                    };
                    let _ = writeln!(out, "  {dim}{:>4} |{undim} {src}", f.line);
                }
            }
        }
    }
    out
}

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Error => "\x1b[1;31m",
        Severity::Warning => "\x1b[1;33m",
        Severity::Info => "\x1b[1;32m",
        Severity::Style => "\x1b[1;36m",
        Severity::Ignore => "",
    }
}

/// One finding as `hadolint -f json` prints it (keys in its order).
#[derive(Serialize)]
struct JsonFinding<'a> {
    code: &'a str,
    column: u32,
    file: &'a str,
    level: &'a str,
    line: u32,
    message: &'a str,
}

fn json(reports: &[Report<'_>]) -> String {
    let all: Vec<JsonFinding<'_>> = reports
        .iter()
        .flat_map(|r| {
            r.findings.iter().map(|f| JsonFinding {
                code: &f.code,
                column: f.column,
                file: display_name(r.file),
                level: f.severity.as_str(),
                line: f.line,
                message: &f.message,
            })
        })
        .collect();
    let mut s = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

fn gnu(reports: &[Report<'_>]) -> String {
    let mut out = String::new();
    for r in reports {
        for f in r.findings {
            // hadolint's layout, with berth's name as the program.
            let _ = writeln!(
                out,
                "berth:{}:{}: {} {}: {}",
                display_name(r.file),
                f.line,
                f.code,
                f.severity,
                f.message
            );
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

fn checkstyle(reports: &[Report<'_>]) -> String {
    // hadolint's layout: double quotes, attributes in alphabetical order.
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><checkstyle version=\"4.3\">");
    for r in reports {
        if r.findings.is_empty() {
            continue;
        }
        let _ = write!(out, "<file name=\"{}\">", xml_escape(display_name(r.file)));
        for f in r.findings {
            let _ = write!(
                out,
                "<error column=\"{}\" line=\"{}\" message=\"{}\" severity=\"{}\" source=\"{}\"/>",
                f.column,
                f.line,
                xml_escape(&f.message),
                f.severity,
                xml_escape(&f.code)
            );
        }
        out.push_str("</file>");
    }
    out.push_str("</checkstyle>\n");
    out
}

fn sarif(reports: &[Report<'_>]) -> String {
    let mut rules: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.findings.iter().map(|f| f.code.as_str()))
        .collect();
    rules.sort_unstable();
    rules.dedup();
    let rule_objs: Vec<serde_json::Value> = rules
        .iter()
        .map(|code| {
            let rule = crate::catalog::rule(code);
            serde_json::json!({
                "id": code,
                "shortDescription": { "text": rule.map_or("", |r| r.message) },
                "fullDescription": { "text": rule.map_or("", |r| r.explain) },
                "helpUri": format!("https://github.com/hadolint/hadolint/wiki/{code}"),
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = reports
        .iter()
        .flat_map(|r| {
            r.findings.iter().map(move |f| {
                serde_json::json!({
                    "ruleId": f.code,
                    "level": match f.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                        Severity::Info | Severity::Style | Severity::Ignore => "note",
                    },
                    "message": { "text": f.message },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": display_name(r.file) },
                            "region": {
                                "startLine": f.line,
                                "startColumn": f.column,
                                "endLine": f.line,
                                "endColumn": f.column,
                            }
                        }
                    }],
                    "properties": { "severity": f.severity.as_str() },
                })
            })
        })
        .collect();
    let doc = serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "berth lint",
                    "informationUri": "https://example.invalid/berth",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rule_objs,
                }
            },
            "results": results,
        }]
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            code: "DL3006".into(),
            severity: Severity::Warning,
            message: "Always tag the version of an image explicitly".into(),
            line: 1,
            column: 1,
        }
    }

    #[test]
    fn json_matches_hadolint_shape() {
        let f = [finding()];
        let out = render(
            Format::Json,
            &[Report::new("Dockerfile", "FROM debian\n", &f)],
            false,
        );
        assert_eq!(
            out,
            "[{\"code\":\"DL3006\",\"column\":1,\"file\":\"Dockerfile\",\"level\":\"warning\",\"line\":1,\"message\":\"Always tag the version of an image explicitly\"}]\n"
        );
    }

    #[test]
    fn checkstyle_escapes() {
        let mut f = finding();
        f.message = "a <b> & 'c'".into();
        let out = render(Format::Checkstyle, &[Report::new("x", "", &[f])], false);
        assert!(out.contains("message=\"a &lt;b&gt; &amp; 'c'\""), "{out}");
    }

    #[test]
    fn sarif_is_valid_json_with_results() {
        let f = [finding()];
        let out = render(Format::Sarif, &[Report::new("Dockerfile", "", &f)], false);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["version"], "2.1.0");
        assert_eq!(v["runs"][0]["results"][0]["ruleId"], "DL3006");
        assert_eq!(v["runs"][0]["results"][0]["level"], "warning");
    }
}
