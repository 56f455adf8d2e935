//! OSV records (the schema osv.dev serves) and the questions a scan asks of them: does this
//! version fall in an affected range, what fixes it, how severe is it.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::inventory::Ecosystem;
use crate::version;

/// One OSV record, with the fields a scan uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

/// A severity score: `CVSS_V3` with a vector, `Ubuntu` with a word, …
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// A package a record affects, and where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Affected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<AffectedPackage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

/// `ecosystem` (`Debian:12`, `PyPI`, `npm`) and `name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AffectedPackage {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// A range: `SEMVER`, `ECOSYSTEM` or `GIT` (commits: never matched against a version).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Range {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One event of a range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Whether a version is affected by an `affected` entry: `Some(fixed)` when it is (the
/// smallest fixed version above it, if the record names one), `None` when not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hit {
    pub fixed: Option<String>,
}

fn cmp(eco: Ecosystem, a: &str, b: &str) -> Option<Ordering> {
    // `0` is "since the beginning" whatever the ecosystem's grammar.
    match (a == "0", b == "0") {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        _ => version::compare(eco, a, b),
    }
}

/// Evaluates one range as the OSV schema describes: walk the events in version order; an
/// `introduced` at or below the version turns "affected" on, a `fixed` at or below (or a
/// `last_affected` below) turns it off; a `limit` at or below rules the range out. `None`
/// when the versions do not compare in the ecosystem.
fn in_range(eco: Ecosystem, v: &str, range: &Range) -> Option<Option<Hit>> {
    let mut events: Vec<(&str, &Event)> = Vec::new();
    for e in &range.events {
        let at = e
            .introduced
            .as_deref()
            .or(e.fixed.as_deref())
            .or(e.last_affected.as_deref())
            .or(e.limit.as_deref())?;
        events.push((at, e));
    }
    for (at, _) in &events {
        cmp(eco, v, at)?;
    }
    events.sort_by(|a, b| cmp(eco, a.0, b.0).unwrap_or(Ordering::Equal));
    let mut affected = false;
    for (at, e) in &events {
        let c = cmp(eco, v, at)?;
        if e.introduced.is_some() && c != Ordering::Less {
            affected = true;
        } else if (e.fixed.is_some() && c != Ordering::Less)
            || (e.last_affected.is_some() && c == Ordering::Greater)
        {
            affected = false;
        } else if e.limit.is_some() && c != Ordering::Less {
            return Some(None);
        }
    }
    if !affected {
        return Some(None);
    }
    let fixed = events
        .iter()
        .filter_map(|(at, e)| e.fixed.as_deref().map(|_| *at))
        .find(|at| cmp(eco, v, at) == Some(Ordering::Less))
        .map(str::to_owned);
    Some(Some(Hit { fixed }))
}

/// Whether `version` is affected by `a` (explicit versions, or a `SEMVER` / `ECOSYSTEM` range).
pub fn affects(eco: Ecosystem, version: &str, a: &Affected) -> Option<Hit> {
    let listed = a.versions.iter().any(|x| x == version);
    let mut fixed = None;
    for r in &a.ranges {
        if !matches!(r.kind.as_str(), "SEMVER" | "ECOSYSTEM") {
            continue;
        }
        match in_range(eco, version, r) {
            Some(Some(hit)) => return Some(hit),
            // Not in this range; an explicit version list still counts, with the fix the
            // range names.
            Some(None) if listed => {
                fixed = r
                    .events
                    .iter()
                    .filter_map(|e| e.fixed.clone())
                    .find(|f| cmp(eco, version, f) == Some(Ordering::Less));
            }
            Some(None) | None => {}
        }
    }
    listed.then_some(Hit { fixed })
}

/// ECR's severity scale.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Severity {
    Undefined,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// ECR's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Undefined => "UNDEFINED",
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// A severity word as databases write it (`moderate` is GitHub's `MEDIUM`, `important`
    /// Red Hat's `HIGH`, `negligible` Debian's and Ubuntu's `INFORMATIONAL`).
    pub fn from_word(w: &str) -> Option<Severity> {
        Some(match w.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "negligible" | "informational" | "none" | "unimportant" => Severity::Informational,
            "undefined" | "unknown" => Severity::Undefined,
            _ => return None,
        })
    }

    /// The band of a CVSS base score.
    pub fn from_score(s: f64) -> Severity {
        if s >= 9.0 {
            Severity::Critical
        } else if s >= 7.0 {
            Severity::High
        } else if s >= 4.0 {
            Severity::Medium
        } else if s > 0.0 {
            Severity::Low
        } else {
            Severity::Informational
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::from_word(s).ok_or_else(|| {
            format!(
                "{s:?} is not a severity (UNDEFINED, INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL)"
            )
        })
    }
}

/// CVSS v3.x base score of a vector (`CVSS:3.1/AV:N/AC:L/…`), per the specification's formulas.
pub fn cvss3_score(vector: &str) -> Option<f64> {
    let mut m = std::collections::HashMap::new();
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let scope_changed = *m.get("S")? == "C";
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, scope_changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        Some(match *m.get(k)? {
            "H" => 0.56,
            "L" => 0.22,
            "N" => 0.0,
            _ => return None,
        })
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if scope_changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    // CVSS 3.1's Roundup: the smallest one-decimal number at or above, robust to float error.
    #[allow(clippy::cast_possible_truncation)]
    let int = (raw * 100_000.0).round() as i64;
    #[allow(clippy::cast_precision_loss)]
    let rounded = if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    };
    Some(rounded)
}

/// A record's severity for one affected entry, and the CVSS score behind it: the database's
/// own word (per package, then per record), else the band of the CVSS v3 score, else
/// `UNDEFINED`.
pub fn severity(record: &Record, affected: &Affected) -> (Severity, Option<f64>) {
    let score = affected
        .severity
        .iter()
        .chain(&record.severity)
        .filter(|s| s.kind.starts_with("CVSS_V3"))
        .find_map(|s| cvss3_score(&s.score));
    let word = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.get("severity"))
            .and_then(serde_json::Value::as_str)
            .and_then(Severity::from_word)
    };
    let own = word(affected.ecosystem_specific.as_ref())
        .or_else(|| word(affected.database_specific.as_ref()))
        .or_else(|| word(record.database_specific.as_ref()))
        .or_else(|| {
            affected
                .severity
                .iter()
                .chain(&record.severity)
                .filter(|s| !s.kind.starts_with("CVSS"))
                .find_map(|s| Severity::from_word(&s.score))
        });
    match (own, score) {
        (Some(s), score) => (s, score),
        (None, Some(score)) => (Severity::from_score(score), Some(score)),
        (None, None) => (Severity::Undefined, None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn affected(ranges: &str, versions: &[&str]) -> Affected {
        Affected {
            ranges: serde_json::from_str(ranges).unwrap(),
            versions: versions.iter().map(|s| (*s).to_owned()).collect(),
            ..Affected::default()
        }
    }

    #[test]
    fn ranges_follow_the_osv_schema() {
        let a = affected(
            r#"[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.20.0"}]}]"#,
            &[],
        );
        assert_eq!(
            affects(Ecosystem::PyPI, "2.19.0", &a),
            Some(Hit {
                fixed: Some("2.20.0".into())
            })
        );
        assert_eq!(affects(Ecosystem::PyPI, "2.20.0", &a), None);
        assert_eq!(affects(Ecosystem::PyPI, "2.31.0", &a), None);
        // Two windows; last_affected; limit.
        let a = affected(
            r#"[{"type":"SEMVER","events":[{"introduced":"1.0.0"},{"fixed":"1.2.0"},{"introduced":"2.0.0"},{"last_affected":"2.1.0"}]}]"#,
            &[],
        );
        assert!(affects(Ecosystem::Npm, "0.9.0", &a).is_none());
        assert!(affects(Ecosystem::Npm, "1.1.9", &a).is_some());
        assert!(affects(Ecosystem::Npm, "1.5.0", &a).is_none());
        assert_eq!(
            affects(Ecosystem::Npm, "2.1.0", &a),
            Some(Hit { fixed: None })
        );
        assert!(affects(Ecosystem::Npm, "2.1.1", &a).is_none());
        // Debian: epochs and `~`.
        let a = affected(
            r#"[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]"#,
            &[],
        );
        assert!(affects(Ecosystem::Debian, "3.0.11-1~deb12u1", &a).is_some());
        assert!(affects(Ecosystem::Debian, "3.0.11-1", &a).is_none());
        // An unfixed record.
        let a = affected(
            r#"[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]"#,
            &[],
        );
        assert_eq!(
            affects(Ecosystem::Debian, "1:2.0-1", &a),
            Some(Hit { fixed: None })
        );
        // Explicit versions; GIT ranges are never matched against versions.
        let a = affected(
            r#"[{"type":"GIT","repo":"x","events":[{"introduced":"0"}]}]"#,
            &["4.17.15"],
        );
        assert!(affects(Ecosystem::Npm, "4.17.15", &a).is_some());
        assert!(affects(Ecosystem::Npm, "4.17.16", &a).is_none());
    }

    #[test]
    fn severities_from_words_and_cvss() {
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"),
            Some(5.9)
        );
        assert_eq!(
            cvss3_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(6.1)
        );
        assert_eq!(cvss3_score("CVSS:3.1/AV:N"), None);
        let rec: Record = serde_json::from_str(
            r#"{"id":"GHSA-x","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"npm","name":"lodash"}}],
                "database_specific":{"severity":"MODERATE"}}"#,
        )
        .unwrap();
        assert_eq!(
            severity(&rec, &rec.affected[0]),
            (Severity::Medium, Some(9.8))
        );
        let mut bare = rec.clone();
        bare.database_specific = None;
        assert_eq!(severity(&bare, &bare.affected[0]).0, Severity::Critical);
        bare.severity.clear();
        assert_eq!(severity(&bare, &bare.affected[0]).0, Severity::Undefined);
        assert!(Severity::High > Severity::Medium && Severity::Low > Severity::Informational);
    }
}
