//! Scan reports as documents other tools read: SARIF 2.1.0 (code scanning), CycloneDX 1.6 JSON
//! and SPDX 2.3 JSON (SBOMs, every package with its package URL; CycloneDX carries the
//! findings too). Timestamps honour `SOURCE_DATE_EPOCH`, so the same image gives the same
//! document.

use serde_json::{Value, json};

use crate::scan::{ScanReport, Severity};

/// The documents' creation time (RFC 3339): `SOURCE_DATE_EPOCH`, else now.
pub fn created() -> String {
    let secs = crate::build::epoch_from_env()
        .ok()
        .flatten()
        .and_then(|e| u64::try_from(e).ok())
        .unwrap_or_else(berth_scan::db::now_secs);
    berth_scan::db::rfc3339(secs)
}

/// Now, in RFC 3339.
pub fn rfc3339_now() -> String {
    berth_scan::db::rfc3339(berth_scan::db::now_secs())
}

/// A UUID-shaped name derived from the image digest (the same image, the same name).
fn uuid_of(digest: &str) -> String {
    let hex: String = digest
        .split(':')
        .nth(1)
        .unwrap_or(digest)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn tool_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        _ => "note",
    }
}

/// SARIF 2.1.0: one run per report (platform), a rule per advisory, a result per finding at
/// the file the package was found in.
pub fn sarif(reports: &[ScanReport]) -> Value {
    let runs: Vec<Value> = reports
        .iter()
        .map(|r| {
            let mut rules: Vec<Value> = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for f in &r.findings {
                if seen.insert(f.id.clone()) {
                    let mut props = json!({"tags": ["security", "vulnerability"]});
                    if let Some(s) = f.cvss3_score {
                        props["security-severity"] = json!(format!("{s:.1}"));
                    }
                    rules.push(json!({
                        "id": f.id,
                        "name": f.id.replace(['-', '.'], ""),
                        "shortDescription": {"text": if f.summary.is_empty() { f.id.clone() } else { f.summary.clone() }},
                        "helpUri": format!("https://osv.dev/vulnerability/{}", f.id),
                        "properties": props,
                    }));
                }
            }
            let results: Vec<Value> = r
                .findings
                .iter()
                .map(|f| {
                    let fix = f
                        .fixed_version
                        .as_deref()
                        .map_or("no fixed version yet".to_owned(), |v| format!("fixed in {v}"));
                    json!({
                        "ruleId": f.id,
                        "level": sarif_level(f.severity),
                        "message": {"text": format!(
                            "{} {} ({}) is affected by {} ({}); {fix}",
                            f.package_name, f.package_version, f.purl, f.id, f.severity.as_str()
                        )},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.path}}}],
                        "properties": {"layer": f.layer, "image": r.image, "digest": r.digest},
                    })
                })
                .collect();
            json!({
                "tool": {"driver": {
                    "name": "berth",
                    "version": tool_version(),
                    "rules": rules,
                }},
                "results": results,
            })
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": runs,
    })
}

fn cdx_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Informational => "info",
        _ => "unknown",
    }
}

/// CycloneDX 1.6 JSON of one platform: the image as the subject, every package as a
/// component (purl, layer, path), every finding as a vulnerability affecting its component.
pub fn cyclonedx(r: &ScanReport) -> Value {
    let mut components = Vec::new();
    let mut refs = std::collections::HashMap::new();
    for (i, p) in r.packages.iter().enumerate() {
        let purl = p.package.purl(r.os.as_ref());
        let bom_ref = format!("pkg-{i}");
        refs.insert(
            (
                p.package.path.clone(),
                p.package.name.clone(),
                p.package.version.clone(),
            ),
            bom_ref.clone(),
        );
        components.push(json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": p.package.name,
            "version": p.package.version,
            "purl": purl,
            "properties": [
                {"name": "berth:layer", "value": p.layer.to_string()},
                {"name": "berth:path", "value": p.package.path},
            ],
        }));
    }
    if let Some(os) = &r.os {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": "os",
            "name": os.id,
            "version": os.version_id,
            "description": os.pretty_name,
        }));
    }
    let vulnerabilities: Vec<Value> = r
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let affected = refs
                .get(&(f.path.clone(), f.package_name.clone(), f.package_version.clone()))
                .cloned()
                .unwrap_or_else(|| "image".to_owned());
            let mut rating = json!({"severity": cdx_severity(f.severity)});
            if let Some(s) = f.cvss3_score {
                rating["score"] = json!(s);
                rating["method"] = json!("CVSSv31");
            }
            let mut v = json!({
                "bom-ref": format!("vuln-{i}"),
                "id": f.id,
                "source": {"name": "OSV", "url": format!("https://osv.dev/vulnerability/{}", f.id)},
                "ratings": [rating],
                "description": f.summary,
                "affects": [{"ref": affected}],
            });
            if let Some(fix) = &f.fixed_version {
                v["recommendation"] = json!(format!("Upgrade {} to {fix}", f.package_name));
            }
            if !f.aliases.is_empty() {
                v["references"] = Value::Array(
                    f.aliases
                        .iter()
                        .map(|a| json!({"id": a, "source": {"name": "OSV", "url": format!("https://osv.dev/vulnerability/{a}")}}))
                        .collect(),
                );
            }
            v
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_of(&r.digest)),
        "version": 1,
        "metadata": {
            "timestamp": created(),
            "tools": {"components": [{"type": "application", "name": "berth", "version": tool_version()}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": r.image,
                "version": r.digest,
            },
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
    })
}

/// SPDX 2.3 JSON of one platform: the image as the described package, containing every
/// package found (with its purl as an external reference).
pub fn spdx(r: &ScanReport) -> Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": r.image,
        "versionInfo": r.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in r.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        packages.push(json!({
            "SPDXID": id,
            "name": p.package.name,
            "versionInfo": p.package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("found in {} (layer {})", p.package.path, p.layer),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.package.purl(r.os.as_ref()),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", r.image, r.digest),
        "documentNamespace": format!("https://spdx.berth.invalid/image/{}", uuid_of(&r.digest)),
        "creationInfo": {
            "created": created(),
            "creators": [format!("Tool: berth-{}", tool_version())],
        },
        "packages": packages,
        "relationships": relationships,
    })
}
