//! `berth scan`: an image's packages and vulnerabilities (offline OSV database), and
//! `berth scan db` to fill and inspect that database.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use berth_oci::Platform;
use berth_ops::scan::{self as ops_scan, ScanReport, ScanRequest, Severity};
use clap::{Args, Subcommand};

use crate::progress::{Mode, Reporter};
use crate::{ExitWith, UsageError};

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 scanned (and no finding when --exit-code is set); the --exit-code value when findings remain after --severity and --ignore-unfixed; 1 a failure (an unreadable image or layer); 2 usage."
)]
pub struct ScanArgs {
    #[command(subcommand)]
    command: Option<ScanCommand>,
    /// The image: REF, oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE
    #[arg(required = true)]
    image: Option<String>,
    /// Only these platforms of an index (default: every one)
    #[arg(long, value_delimiter = ',')]
    platform: Vec<String>,
    /// Progress display on standard error: a bar per layer read (auto: on a terminal only)
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    progress: Mode,
    /// Output: table (default), json, sarif (2.1.0), cyclonedx (1.6 JSON SBOM with the
    /// findings) or spdx (2.3 JSON SBOM)
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Report only these severities (UNDEFINED, INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL)
    #[arg(long, value_delimiter = ',')]
    severity: Vec<Severity>,
    /// Exit with this code when findings remain after the filters
    #[arg(long, default_value_t = 0)]
    exit_code: u8,
    /// Leave out findings with no fixed version
    #[arg(long)]
    ignore_unfixed: bool,
    /// Advisory ids to suppress, one a line (`.trivyignore` format, optional `exp:YYYY-MM-DD`)
    /// [default: .trivyignore in the current directory, when present]
    #[arg(long, value_name = "FILE")]
    ignorefile: Option<PathBuf>,
    /// OpenVEX documents: `not_affected` and `fixed` statements suppress findings (repeatable)
    #[arg(long, value_name = "FILE")]
    vex: Vec<PathBuf>,
    /// Push each platform's CycloneDX document (packages and findings) beside the image as an
    /// OCI referrer of it (`berth copy` carries it along)
    #[arg(long)]
    attach: bool,
    /// The base image (any source): findings in its layers are marked `base`, the others
    /// `app` [default: the image's org.opencontainers.image.base.name annotation]
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// The vulnerability database directory [default: osv/ in berth's cache directory]
    #[arg(long, env = "BERTH_SCAN_DB", global = true, value_name = "DIR")]
    db: Option<PathBuf>,
    /// List every package, not only the findings (table output)
    #[arg(long)]
    packages: bool,
    #[command(flatten)]
    registry: crate::transfer::RegistryOpts,
}

#[derive(Debug, Subcommand)]
enum ScanCommand {
    /// The offline vulnerability database (OSV records)
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Import OSV records: JSON files, directories of them, osv.dev's per-ecosystem all.zip
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Download osv.dev's per-ecosystem all.zip and import it (only new or newer records)
    Update {
        /// Ecosystems (OSV's names) [default: Debian, Ubuntu, Alpine, PyPI, npm]
        #[arg(long = "ecosystem", value_delimiter = ',')]
        ecosystems: Vec<String>,
        /// Where BASE/ECOSYSTEM/all.zip are [default: osv.dev's public bucket]
        #[arg(long, env = "BERTH_OSV_BASE_URL", value_name = "URL")]
        base_url: Option<String>,
    },
    /// Records per ecosystem, and when the database was last updated
    Status {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: ScanArgs) -> anyhow::Result<()> {
    let db = args.db.clone().unwrap_or_else(ops_scan::default_db_dir);
    match args.command {
        Some(ScanCommand::Db {
            command: DbCommand::Import { paths },
        }) => {
            let r = ops_scan::import_db(&db, &paths)?;
            for why in &r.rejected {
                eprintln!("skipped {why}");
            }
            println!(
                "imported {} record(s), {} unchanged, {} skipped, into {}",
                r.imported,
                r.unchanged,
                r.rejected.len(),
                db.display()
            );
            Ok(())
        }
        Some(ScanCommand::Db {
            command:
                DbCommand::Update {
                    ecosystems,
                    base_url,
                },
        }) => {
            let ecosystems = if ecosystems.is_empty() {
                ops_scan::DEFAULT_ECOSYSTEMS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            } else {
                ecosystems
            };
            let base = base_url.unwrap_or_else(|| ops_scan::DEFAULT_OSV_BASE.to_owned());
            let rt = crate::transfer::runtime()?;
            let done = rt.block_on(ops_scan::update_db(&db, &base, &ecosystems))?;
            for u in &done {
                println!(
                    "{:<10} {} bytes: {} imported, {} unchanged, {} skipped",
                    u.ecosystem, u.bytes, u.imported, u.unchanged, u.rejected
                );
            }
            Ok(())
        }
        Some(ScanCommand::Db {
            command: DbCommand::Status { json },
        }) => {
            let s = ops_scan::db_status(&db)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
                return Ok(());
            }
            println!("database  {}", s.path);
            println!("records   {}", s.records);
            println!(
                "updated   {}",
                s.updated_at.as_deref().unwrap_or("never (empty)")
            );
            if let Some(n) = &s.newest_record {
                println!("newest    {n}");
            }
            for (eco, n) in &s.ecosystems {
                println!("  {eco:<24} {n}");
            }
            Ok(())
        }
        None => scan(args, db),
    }
}

fn scan(args: ScanArgs, db: PathBuf) -> anyhow::Result<()> {
    let image = args
        .image
        .clone()
        .ok_or_else(|| UsageError("an image to scan is required".into()))?;
    let format = args.format.clone().unwrap_or_else(|| "table".into());
    if !["table", "json", "sarif", "cyclonedx", "spdx"].contains(&format.as_str()) {
        return Err(UsageError(format!(
            "--format must be table, json, sarif, cyclonedx or spdx, not {format}"
        ))
        .into());
    }
    let mut req = ScanRequest::new(&image);
    req.db = Some(db);
    req.insecure.clone_from(&args.registry.insecure);
    match &args.ignorefile {
        Some(f) => req.ignore_files.push(f.clone()),
        None if std::path::Path::new(".trivyignore").is_file() => {
            req.ignore_files.push(PathBuf::from(".trivyignore"));
        }
        None => {}
    }
    req.vex.clone_from(&args.vex);
    req.base.clone_from(&args.base);
    for p in &args.platform {
        req.platforms
            .push(Platform::parse(p).map_err(|e| UsageError(format!("--platform {p}: {e}")))?);
    }
    // A bar per layer read on a terminal; nothing in logs unless asked (`--progress plain`).
    let mode = match args.progress {
        Mode::Auto if !std::io::stderr().is_terminal() => Mode::Quiet,
        m => m,
    };
    req.progress = Reporter::with_words(mode, "read", "inventory cached")
        .map(|r| Arc::new(r) as Arc<dyn berth_client::Progress>);
    let rt = crate::transfer::runtime()?;
    let mut reports = rt.block_on(ops_scan::scan_image(&req))?;
    drop(req.progress.take());
    if args.attach {
        for d in rt.block_on(ops_scan::attach(&req, &reports))? {
            eprintln!("attached {d} ({})", ops_scan::SBOM_ARTIFACT_TYPE);
        }
    }
    let remaining = ops_scan::filter_findings(&mut reports, &args.severity, args.ignore_unfixed);
    match format.as_str() {
        "json" => println!("{}", serde_json::to_string(&reports)?),
        "sarif" => println!(
            "{}",
            serde_json::to_string(&berth_ops::scan_format::sarif(&reports))?
        ),
        "cyclonedx" | "spdx" => {
            let [r] = reports.as_slice() else {
                return Err(UsageError(format!(
                    "{image} has {} platforms and an SBOM describes one image: choose it with \
                     --platform",
                    reports.len()
                ))
                .into());
            };
            let doc = if format == "spdx" {
                berth_ops::scan_format::spdx(r)
            } else {
                berth_ops::scan_format::cyclonedx(r)
            };
            println!("{}", serde_json::to_string(&doc)?);
        }
        _ => {
            for r in &reports {
                print_table(r, args.packages);
            }
        }
    }
    if args.exit_code != 0 && remaining > 0 {
        return Err(ExitWith(args.exit_code).into());
    }
    Ok(())
}

fn print_table(r: &ScanReport, packages: bool) {
    let os =
        r.os.as_ref()
            .map(|o| {
                if o.pretty_name.is_empty() {
                    format!("{} {}", o.id, o.version_id)
                } else {
                    o.pretty_name.clone()
                }
            })
            .unwrap_or_else(|| "no known distribution".into());
    let cached = r.layers.iter().filter(|l| l.cached).count();
    println!(
        "{}@{} ({}) — {os}: {} package(s), {} layer(s) ({cached} cached), {:.2}s",
        r.image,
        r.digest,
        r.platform.as_deref().unwrap_or("?"),
        r.packages.len(),
        r.layers.len(),
        r.seconds
    );
    if packages {
        for p in &r.packages {
            println!(
                "  {:<8} {:<32} {:<28} layer {}",
                format!("{:?}", p.package.kind).to_lowercase(),
                p.package.name,
                p.package.version,
                p.layer
            );
        }
    }
    let mut severities: Vec<Severity> = r.findings.iter().map(|f| f.severity).collect();
    severities.dedup();
    for s in severities {
        let group: Vec<_> = r.findings.iter().filter(|f| f.severity == s).collect();
        println!("{} ({})", s.as_str(), group.len());
        for f in group {
            let origin = match f.from_base {
                Some(true) => " (base)",
                Some(false) => " (app)",
                None => "",
            };
            println!(
                "  {:<24} {:<28} {:<24} → {:<24} layer {}{origin}  {}",
                f.id,
                f.package_name,
                f.package_version,
                f.fixed_version.as_deref().unwrap_or("(no fix)"),
                f.layer,
                f.summary
            );
        }
    }
    let counts: Vec<String> = r
        .severity_counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    for s in &r.suppressed {
        println!(
            "suppressed {} in {}: {}",
            s.finding.id, s.finding.package_name, s.reason
        );
    }
    println!(
        "Total: {} finding(s){}",
        r.findings.len(),
        if counts.is_empty() {
            String::new()
        } else {
            format!(" (before filters: {})", counts.join(", "))
        }
    );
    for n in &r.notes {
        println!("note: {n}");
    }
}
