//! Findings a user has judged: `.trivyignore` files (one advisory id a line, `#` comments, an
//! optional `exp:YYYY-MM-DD` after which the line no longer applies) and OpenVEX documents
//! (`not_affected` and `fixed` statements suppress; `affected` and `under_investigation` do
//! not). A suppressed finding is moved aside with the reason, never silently dropped.

use serde::Serialize;

use crate::error::ScanError;
use crate::matcher::Finding;

/// A finding set aside, and why.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Suppressed {
    #[serde(flatten)]
    pub finding: Finding,
    /// `ignore file FILE`, or `VEX not_affected (vulnerable_code_not_present)`.
    pub reason: String,
}

/// One rule: an advisory id (matched against a finding's id and aliases), optionally for some
/// products (package URLs, or the image) only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    id: String,
    products: Vec<String>,
    reason: String,
}

/// The rules of ignore files and VEX documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppressions {
    rules: Vec<Rule>,
}

impl Suppressions {
    /// Adds a `.trivyignore` file's lines; `today` is `YYYY-MM-DD` (lines past their `exp:`
    /// date are left out).
    pub fn add_ignore_file(&mut self, name: &str, text: &str, today: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            let Some(id) = words.next() else { continue };
            let expired = words
                .filter_map(|w| w.strip_prefix("exp:"))
                .any(|d| d < today);
            if !expired {
                self.rules.push(Rule {
                    id: id.to_owned(),
                    products: Vec::new(),
                    reason: format!("ignore file {name}"),
                });
            }
        }
    }

    /// Adds an OpenVEX document's `not_affected` and `fixed` statements.
    pub fn add_openvex(&mut self, name: &str, data: &[u8]) -> Result<(), ScanError> {
        let bad = |message: String| ScanError::Record {
            what: name.to_owned(),
            message,
        };
        let doc: serde_json::Value =
            serde_json::from_slice(data).map_err(|e| bad(format!("not JSON: {e}")))?;
        let context = doc["@context"].as_str().unwrap_or_default();
        if !context.starts_with("https://openvex.dev/ns") {
            return Err(bad(format!(
                "not an OpenVEX document (@context {context:?})"
            )));
        }
        let statements = doc["statements"]
            .as_array()
            .ok_or_else(|| bad("no statements".into()))?;
        for s in statements {
            let status = s["status"].as_str().unwrap_or_default();
            if !matches!(status, "not_affected" | "fixed") {
                continue;
            }
            // v0.2: {"name": …, "aliases": […]}; v0.0.1: a string.
            let v = &s["vulnerability"];
            let mut ids: Vec<String> = match v {
                serde_json::Value::String(id) => vec![id.clone()],
                _ => v["name"].as_str().map(str::to_owned).into_iter().collect(),
            };
            ids.extend(
                v["aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_owned)),
            );
            let mut products = Vec::new();
            for p in s["products"].as_array().into_iter().flatten() {
                match p {
                    serde_json::Value::String(id) => products.push(id.clone()),
                    _ => {
                        products.extend(p["@id"].as_str().map(str::to_owned));
                        products.extend(
                            p["subcomponents"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|c| c["@id"].as_str().map(str::to_owned)),
                        );
                    }
                }
            }
            let why = s["justification"]
                .as_str()
                .map(|j| format!(" ({j})"))
                .unwrap_or_default();
            for id in ids {
                self.rules.push(Rule {
                    id,
                    products: products.clone(),
                    reason: format!("VEX {status}{why} in {name}"),
                });
            }
        }
        Ok(())
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Splits findings into those that stand and those suppressed. `image` names the image
    /// (its reference and digest), which VEX products may name instead of a package.
    pub fn apply(&self, findings: Vec<Finding>, image: &[&str]) -> (Vec<Finding>, Vec<Suppressed>) {
        let mut kept = Vec::new();
        let mut suppressed = Vec::new();
        for f in findings {
            let rule = self.rules.iter().find(|r| {
                (r.id == f.id || f.aliases.contains(&r.id))
                    && (r.products.is_empty()
                        || r.products
                            .iter()
                            .any(|p| product_matches(p, &f.purl, image)))
            });
            match rule {
                Some(r) => suppressed.push(Suppressed {
                    finding: f,
                    reason: r.reason.clone(),
                }),
                None => kept.push(f),
            }
        }
        (kept, suppressed)
    }
}

/// A VEX product against a package URL (qualifiers ignored; no version: any version) or the
/// image (its reference or digest, or an OCI purl naming the digest).
fn product_matches(product: &str, purl: &str, image: &[&str]) -> bool {
    let strip = |p: &str| p.split(['?', '#']).next().unwrap_or_default().to_owned();
    let (prod, pkg) = (strip(product), strip(purl));
    if prod == pkg {
        return true;
    }
    if !prod.contains('@') && pkg.split('@').next() == Some(prod.as_str()) {
        return true;
    }
    // The image: its reference exactly, or its digest anywhere in the product (an OCI purl
    // writes it percent-encoded).
    image.iter().any(|i| {
        product == *i
            || (i.starts_with("sha256:")
                && (product.contains(i) || product.contains(&i.replace(':', "%3A"))))
    })
}

/// Today in UTC, `YYYY-MM-DD` (what `exp:` dates are compared with).
pub fn today() -> String {
    let now = crate::db::now_secs();
    crate::db::rfc3339(now)[..10].to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::osv::Severity;

    fn finding(id: &str, aliases: &[&str], purl: &str) -> Finding {
        Finding {
            id: id.into(),
            aliases: aliases.iter().map(|s| (*s).to_owned()).collect(),
            summary: String::new(),
            severity: Severity::High,
            cvss3_score: None,
            ecosystem: "PyPI".into(),
            package_name: "requests".into(),
            package_version: "2.19.0".into(),
            purl: purl.into(),
            source_name: None,
            fixed_version: None,
            path: String::new(),
            layer: 0,
            from_base: None,
        }
    }

    #[test]
    fn ignore_files_expire_and_vex_names_products() {
        let mut s = Suppressions::default();
        s.add_ignore_file(
            ".trivyignore",
            "# accepted\nCVE-2018-18074 exp:2099-01-01\nCVE-2000-0001 exp:2001-01-01\n\n",
            "2026-12-04",
        );
        let vex = br#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
            {"vulnerability":{"name":"GHSA-p6mc-m468-83gw"},"products":[{"@id":"pkg:oci/app@sha256%3Aabc","subcomponents":[{"@id":"pkg:npm/lodash@4.17.15"}]}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"},
            {"vulnerability":{"name":"CVE-2099-0002"},"products":[{"@id":"pkg:npm/other"}],"status":"not_affected"},
            {"vulnerability":{"name":"CVE-2099-0003"},"status":"affected"}]}"#;
        s.add_openvex("app.vex.json", vex).unwrap();
        let (kept, gone) = s.apply(
            vec![
                finding(
                    "GHSA-x84v-xcm2-53pg",
                    &["CVE-2018-18074"],
                    "pkg:pypi/requests@2.19.0",
                ),
                finding("GHSA-p6mc-m468-83gw", &[], "pkg:npm/lodash@4.17.15"),
                finding("CVE-2099-0002", &[], "pkg:npm/lodash@4.17.15"),
                finding("CVE-2099-0003", &[], "pkg:npm/lodash@4.17.15"),
                finding("CVE-2000-0001", &[], "pkg:npm/lodash@4.17.15"),
            ],
            &["sha256:abc"],
        );
        let ids: Vec<&str> = kept.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["CVE-2099-0002", "CVE-2099-0003", "CVE-2000-0001"]);
        assert_eq!(gone.len(), 2);
        assert!(
            gone[1]
                .reason
                .contains("not_affected (vulnerable_code_not_in_execute_path)")
        );
        assert!(s.add_openvex("x", br#"{"statements":[]}"#).is_err());
    }
}
