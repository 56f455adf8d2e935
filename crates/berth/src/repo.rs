//! `berth repo …` and `berth images ls`: the ECR API through `aws-sdk-ecr`, so the same commands
//! manage Amazon ECR and `berth serve` (point `AWS_ENDPOINT_URL_ECR` or `--endpoint-url` at it).

use std::path::PathBuf;

use anyhow::Context;
use berth_client::aws_sdk_ecr as ecr;
use berth_ops::lifecycle as ops_lifecycle;
use berth_ops::repo::{self as ops_repo, RepoSettings, RepositoryInfo};
use clap::{Args, Subcommand};

use berth_client::ecr::AwsOptions;

use crate::UsageError;

/// Where the ECR API is.
#[derive(Debug, Args)]
pub struct ApiOpts {
    /// The AWS region [default: from AWS_REGION or the AWS config]
    #[arg(long, global = true)]
    region: Option<String>,
    /// The ECR API endpoint, e.g. http://127.0.0.1:5000 for `berth serve` [default: from
    /// AWS_ENDPOINT_URL_ECR or AWS_ENDPOINT_URL, else Amazon ECR]
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The registry whose ECR API to call, as `berth login` knows it (its endpoint, region and
    /// AWS profile); also given as a prefix of the repository name (`127.0.0.1:5000/team/app`)
    #[arg(long, global = true, env = "BERTH_REGISTRY", value_name = "HOST")]
    registry: Option<String>,
    /// A registry to reach over plain HTTP (loopback addresses always are); repeatable
    #[arg(
        long = "insecure-registry",
        global = true,
        value_name = "HOST[:PORT]",
        env = "BERTH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure: Vec<String>,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
}

impl ApiOpts {
    /// Whether `--json` was given.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Where the ECR API is: the flags, then the registry's `berth login` record (an unknown
    /// registry that is not Amazon's is taken for a `berth serve` answering on its own address),
    /// then the AWS configuration.
    pub(crate) fn aws(&self) -> anyhow::Result<AwsOptions> {
        let mut aws = match &self.registry {
            Some(host) => berth_client::logins::registry_api(host, &self.insecure)?,
            None => AwsOptions::default(),
        };
        aws.region = self.region.clone().or(aws.region);
        if let Some(e) = &self.endpoint_url {
            aws.endpoint = Some(e.clone());
        }
        Ok(aws)
    }

    /// Takes a registry host off the front of a repository name (`127.0.0.1:5000/team/app`):
    /// a first component with a port, `localhost`, an Amazon ECR host, or a host `berth login`
    /// knows.
    fn take_registry(&mut self, name: &mut String) -> anyhow::Result<()> {
        let Some((first, rest)) = name.split_once('/') else {
            return Ok(());
        };
        if !berth_client::logins::names_registry(first)? {
            return Ok(());
        }
        if let Some(r) = &self.registry
            && !r.eq_ignore_ascii_case(first)
        {
            return Err(UsageError(format!(
                "{name} names registry {first}, but --registry says {r}"
            ))
            .into());
        }
        self.registry = Some(first.to_owned());
        *name = rest.to_owned();
        Ok(())
    }
}

/// `berth repo …`.
#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(flatten)]
    api: ApiOpts,
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Debug, Subcommand)]
enum RepoCommand {
    /// Creates a repository
    Create {
        /// Repository name (`team/app`)
        name: String,
        /// Tag mutability: MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION
        #[arg(long, default_value = "MUTABLE")]
        mutability: String,
        /// A tag pattern exempt from the mutability setting (`*` wildcards); repeatable
        #[arg(long = "exclude", value_name = "PATTERN")]
        exclusions: Vec<String>,
        /// Scan images when they are pushed
        #[arg(long)]
        scan_on_push: bool,
        /// Encrypt with this KMS key (otherwise AES256)
        #[arg(long, value_name = "ARN")]
        kms_key: Option<String>,
        /// A resource tag KEY=VALUE; repeatable
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Lists repositories
    Ls,
    /// Shows one repository
    Describe {
        /// Repository name
        name: String,
    },
    /// Deletes a repository (`--force` also deletes its images)
    Rm {
        /// Repository name
        name: String,
        /// Delete even if it holds images
        #[arg(long)]
        force: bool,
    },
    /// Prints the repository policy, or sets (`--set FILE`) or deletes (`--delete`) it
    Policy {
        /// Repository name
        name: String,
        /// Policy document to set (JSON file, `-` for stdin)
        #[arg(long, value_name = "FILE", conflicts_with = "delete")]
        set: Option<PathBuf>,
        /// Delete the policy
        #[arg(long)]
        delete: bool,
    },
    /// Prints the lifecycle policy, or sets, deletes, previews or runs it
    Lifecycle {
        /// Repository name
        name: String,
        /// Lifecycle policy to set (JSON file, `-` for stdin)
        #[arg(long, value_name = "FILE", group = "op")]
        set: Option<PathBuf>,
        /// Delete the policy
        #[arg(long, group = "op")]
        delete: bool,
        /// Show what the policy (or `--policy FILE`) would expire now, without expiring it
        #[arg(long, group = "op")]
        preview: bool,
        /// Apply the policy now (berth serve only: `BerthRunLifecyclePolicy`)
        #[arg(long, group = "op")]
        run: bool,
        /// With --preview: evaluate this policy instead of the repository's
        #[arg(long, value_name = "FILE", requires = "preview")]
        policy: Option<PathBuf>,
    },
    /// Sets tag mutability
    Mutability {
        /// Repository name
        name: String,
        /// MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION
        mutability: String,
        /// A tag pattern exempt from the setting; repeatable
        #[arg(long = "exclude", value_name = "PATTERN")]
        exclusions: Vec<String>,
    },
}

impl RepoCommand {
    /// The repository the command names, if it names one.
    fn name_mut(&mut self) -> Option<&mut String> {
        match self {
            RepoCommand::Create { name, .. }
            | RepoCommand::Describe { name }
            | RepoCommand::Rm { name, .. }
            | RepoCommand::Policy { name, .. }
            | RepoCommand::Lifecycle { name, .. }
            | RepoCommand::Mutability { name, .. } => Some(name),
            RepoCommand::Ls => None,
        }
    }
}

/// `berth images …`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    api: ApiOpts,
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Lists a repository's images (DescribeImages), newest push first
    Ls {
        /// Repository name
        repository: String,
    },
    /// Starts a scan of an image (StartImageScan); --wait prints its findings when done
    Scan {
        /// REPOSITORY:TAG or REPOSITORY@sha256:…
        image: String,
        /// Wait for the scan (at most this many seconds) and print the findings
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "600")]
        wait: Option<u64>,
    },
    /// Prints where an image's replication stands per destination
    /// (DescribeImageReplicationStatus)
    Replication {
        /// REPOSITORY:TAG or REPOSITORY@sha256:…
        image: String,
    },
    /// Prints an image's scan findings (DescribeImageScanFindings), most severe first
    Findings {
        /// REPOSITORY:TAG or REPOSITORY@sha256:…
        image: String,
        /// Wait while the scan is in progress (at most this many seconds)
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "600")]
        wait: Option<u64>,
    },
}

/// `REPOSITORY:TAG` or `REPOSITORY@DIGEST` → (repository, tag or digest).
fn split_image(image: &str) -> anyhow::Result<(String, String)> {
    if let Some((repo, digest)) = image.split_once('@') {
        return Ok((repo.to_owned(), digest.to_owned()));
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => Ok((
            image[..slash + i].to_owned(),
            image[slash + i + 1..].to_owned(),
        )),
        None => Err(UsageError(format!(
            "{image}: name the image as REPOSITORY:TAG or REPOSITORY@sha256:…"
        ))
        .into()),
    }
}

fn print_findings(f: &berth_ops::findings::ScanFindings, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(f)?);
        return Ok(());
    }
    println!(
        "{}@{}: {}{}",
        f.repository,
        f.image_digest.as_deref().unwrap_or("?"),
        f.status,
        f.description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    const ORDER: [&str; 6] = [
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
        "INFORMATIONAL",
        "UNDEFINED",
    ];
    for sev in ORDER {
        let group: Vec<_> = f.findings.iter().filter(|x| x.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        println!("{sev} ({})", group.len());
        for x in group {
            let a = |k: &str| x.attributes.get(k).map_or("", String::as_str);
            let fixed = match a("fixed_version") {
                "" => "(no fix)",
                v => v,
            };
            println!(
                "  {:<24} {:<28} {:<24} → {fixed}",
                x.name,
                a("package_name"),
                a("package_version")
            );
        }
    }
    let counts: Vec<String> = f
        .severity_counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "Total: {} finding(s) {}",
        f.findings.len(),
        counts.join(", ")
    );
    Ok(())
}

/// The single-threaded runtime the ECR API commands run on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The ECR API client the options point at.
pub(crate) async fn client(api: &ApiOpts) -> anyhow::Result<ecr::Client> {
    Ok(berth_client::ecr::api_client(&api.aws()?).await?)
}

fn time(t: Option<&ecr::primitives::DateTime>) -> String {
    t.and_then(|t| {
        t.fmt(ecr::primitives::DateTimeFormat::DateTime)
            .ok()
            .map(|s| {
                s.split('.')
                    .next()
                    .unwrap_or(&s)
                    .trim_end_matches('Z')
                    .replace('T', " ")
            })
    })
    .unwrap_or_default()
}

fn print_repos(repos: &[RepositoryInfo], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::json!({ "repositories": repos }));
        return Ok(());
    }
    println!("{:<40} {:<26} {:<20} URI", "NAME", "MUTABILITY", "CREATED");
    for r in repos {
        let created = r.created_at.map(ecr::primitives::DateTime::from_secs);
        println!(
            "{:<40} {:<26} {:<20} {}",
            r.repository_name,
            r.image_tag_mutability.as_deref().unwrap_or_default(),
            time(created.as_ref()),
            r.repository_uri
        );
    }
    Ok(())
}

fn read_file(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).context("reading stdin");
    }
    std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())).into())
}

/// Runs `berth repo`.
pub fn run_repo(mut args: RepoArgs) -> anyhow::Result<()> {
    if let Some(name) = args.command.name_mut() {
        args.api.take_registry(name)?;
    }
    runtime()?.block_on(async move {
        let c = client(&args.api).await?;
        let json = args.api.json;
        match args.command {
            RepoCommand::Create {
                name,
                mutability: m,
                exclusions,
                scan_on_push,
                kms_key,
                tags,
            } => {
                let mut settings = RepoSettings::default();
                settings.tag_mutability = Some(m);
                settings.mutability_exclusions = exclusions;
                settings.scan_on_push = Some(scan_on_push);
                if let Some(k) = kms_key {
                    settings.encryption = Some("KMS".into());
                    settings.kms_key = Some(k);
                }
                for t in &tags {
                    let (k, v) = t
                        .split_once('=')
                        .ok_or_else(|| UsageError(format!("--tag {t}: expected KEY=VALUE")))?;
                    settings.tags.insert(k.to_owned(), v.to_owned());
                }
                let repo = ops_repo::create_repository(&c, &name, &settings).await?;
                if json {
                    println!("{}", serde_json::to_string(&repo)?);
                } else {
                    println!("{}", repo.repository_uri);
                }
            }
            RepoCommand::Ls => {
                print_repos(&ops_repo::list_repositories(&c).await?, json)?;
            }
            RepoCommand::Describe { name } => {
                let repo = ops_repo::describe_repository(&c, &name)
                    .await?
                    .ok_or_else(|| berth_ops::OpsError::Ecr {
                        action: "DescribeRepositories".into(),
                        code: "RepositoryNotFoundException".into(),
                        message: format!("The repository with name '{name}' does not exist"),
                    })?;
                if json {
                    println!("{}", serde_json::to_value(&repo)?);
                } else {
                    print_repos(std::slice::from_ref(&repo), false)?;
                }
            }
            RepoCommand::Rm { name, force } => {
                ops_repo::delete_repository(&c, &name, force).await?;
            }
            RepoCommand::Policy { name, set, delete } => {
                if let Some(file) = set {
                    let text =
                        ops_repo::set_repository_policy(&c, &name, &read_file(&file)?).await?;
                    println!("{text}");
                } else if delete {
                    ops_repo::delete_repository_policy(&c, &name).await?;
                } else {
                    let text = ops_repo::repository_policy(&c, &name)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("repository {name} has no policy"))?;
                    println!("{text}");
                }
            }
            RepoCommand::Lifecycle {
                name,
                set,
                delete,
                preview,
                run,
                policy,
            } => {
                lifecycle(
                    &c,
                    &args.api,
                    &name,
                    LifecycleOp {
                        set,
                        delete,
                        preview,
                        run,
                        policy,
                    },
                )
                .await?;
            }
            RepoCommand::Mutability {
                name,
                mutability: m,
                exclusions,
            } => {
                ops_repo::set_mutability(&c, &name, &m, &exclusions).await?;
            }
        }
        Ok(())
    })
}

struct LifecycleOp {
    set: Option<PathBuf>,
    delete: bool,
    preview: bool,
    run: bool,
    policy: Option<PathBuf>,
}

/// `berth repo lifecycle`.
async fn lifecycle(
    c: &ecr::Client,
    api: &ApiOpts,
    name: &str,
    op: LifecycleOp,
) -> anyhow::Result<()> {
    if let Some(file) = op.set {
        return Ok(ops_lifecycle::put_policy(c, name, &read_file(&file)?).await?);
    }
    if op.delete {
        return Ok(ops_lifecycle::delete_policy(c, name).await?);
    }
    if op.run {
        let run = ops_lifecycle::run_now(&api.aws()?, name).await?;
        if api.json {
            println!("{}", serde_json::to_string(&run)?);
            return Ok(());
        }
        for e in &run.expired_images {
            println!(
                "expired {}  rule {}  {}",
                e.image_digest,
                e.applied_rule_priority.unwrap_or_default(),
                tags_text(&e.image_tags),
            );
        }
        println!("{} image(s) expired", run.expired_images.len());
        return Ok(());
    }
    if op.preview {
        let policy = op.policy.as_ref().map(read_file).transpose()?;
        let p = ops_lifecycle::preview(c, name, policy.as_deref(), PREVIEW_WAIT).await?;
        if api.json {
            println!("{}", serde_json::to_string(&p)?);
            return Ok(());
        }
        for r in &p.preview_results {
            let pushed = r.image_pushed_at.map(ecr::primitives::DateTime::from_secs);
            println!(
                "would expire {}  rule {}  pushed {}  {}",
                r.image_digest,
                r.applied_rule_priority.unwrap_or_default(),
                time(pushed.as_ref()),
                tags_text(&r.image_tags),
            );
        }
        println!(
            "{} image(s) would expire ({})",
            p.preview_results.len(),
            p.status
        );
        return Ok(());
    }
    let text = ops_lifecycle::get_policy(c, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("repository {name} has no lifecycle policy"))?;
    println!("{text}");
    Ok(())
}

/// The longest `--preview` waits for ECR's asynchronous evaluation.
const PREVIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

fn tags_text(tags: &[String]) -> String {
    if tags.is_empty() {
        "<untagged>".into()
    } else {
        tags.join(",")
    }
}

/// Bytes in binary units (`512 B`, `1.5 MiB`).
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Runs `berth images`.
pub fn run_images(mut args: ImagesArgs) -> anyhow::Result<()> {
    let (mut repository, reference, wait, start) = match args.command {
        ImagesCommand::Ls { repository } => (repository, None, None, false),
        ImagesCommand::Replication { image } => {
            let (mut r, t) = split_image(&image)?;
            args.api.take_registry(&mut r)?;
            return runtime()?.block_on(async move {
                let c = client(&args.api).await?;
                let s = berth_ops::replication::image_status(&c, &r, &t).await?;
                if args.api.json {
                    println!("{}", serde_json::to_string(&s)?);
                } else if s.statuses.is_empty() {
                    println!("{r}:{t}: not replicated (pushed before the replication configuration, or no rule covers {r})");
                } else {
                    for d in &s.statuses {
                        println!(
                            "{}/{}  {}{}",
                            d.region,
                            d.registry_id,
                            d.status,
                            d.failure_code.as_deref().map(|f| format!("  ({f})")).unwrap_or_default()
                        );
                    }
                }
                Ok(())
            });
        }
        ImagesCommand::Scan { image, wait } => {
            let (r, t) = split_image(&image)?;
            (r, Some(t), wait, true)
        }
        ImagesCommand::Findings { image, wait } => {
            let (r, t) = split_image(&image)?;
            (r, Some(t), wait.or(Some(0)), false)
        }
    };
    args.api.take_registry(&mut repository)?;
    if let Some(reference) = reference {
        return runtime()?.block_on(async move {
            let c = client(&args.api).await?;
            if start {
                let status = berth_ops::findings::start_scan(&c, &repository, &reference).await?;
                if wait.is_none() {
                    println!("{repository}:{reference}: {status}");
                    return Ok(());
                }
            }
            let f = berth_ops::findings::scan_findings(
                &c,
                &repository,
                &reference,
                wait.map(std::time::Duration::from_secs),
            )
            .await?;
            print_findings(&f, args.api.json)
        });
    }
    runtime()?.block_on(async move {
        let c = client(&args.api).await?;
        let all = ops_repo::list_images(&c, &repository).await?;
        if args.api.json {
            let images = &all;
            println!(
                "{}",
                serde_json::json!({ "repository": repository, "images": images })
            );
            return Ok(());
        }
        println!("{:<19} {:<30} {:>10}  PUSHED", "DIGEST", "TAGS", "SIZE");
        for d in &all {
            let short: String = d.image_digest.chars().take(19).collect();
            let tags = if d.image_tags.is_empty() {
                "<untagged>".to_owned()
            } else {
                d.image_tags.join(",")
            };
            let pushed = d.image_pushed_at.map(ecr::primitives::DateTime::from_secs);
            println!(
                "{short:<19} {tags:<30} {:>10}  {}",
                human(u64::try_from(d.image_size_in_bytes.unwrap_or(0)).unwrap_or(0)),
                time(pushed.as_ref())
            );
        }
        Ok(())
    })
}
