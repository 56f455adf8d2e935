//! `berth repo …` and `berth images ls`: the ECR API through `aws-sdk-ecr`, so the same commands
//! manage Amazon ECR and `berth serve` (point `AWS_ENDPOINT_URL_ECR` or `--endpoint-url` at it).

use std::path::PathBuf;

use anyhow::Context;
use berth_client::aws_sdk_ecr as ecr;
use berth_ops::repo::{self as ops_repo, RepoSettings, RepositoryInfo};
use clap::{Args, Subcommand};
use ecr::types::{ImageTagMutability, ImageTagMutabilityExclusionFilter};

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
    /// Where the ECR API is: the flags, then the registry's `berth login` record (an unknown
    /// registry that is not Amazon's is taken for a `berth serve` answering on its own address),
    /// then the AWS configuration.
    fn aws(&self) -> anyhow::Result<AwsOptions> {
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
}

fn api_error<E, R>(action: &str, e: ecr::error::SdkError<E, R>) -> anyhow::Error
where
    E: ecr::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ops_repo::api_error(action, e).into()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn client(api: &ApiOpts) -> anyhow::Result<ecr::Client> {
    Ok(berth_client::ecr::api_client(&api.aws()?).await?)
}

fn mutability(
    s: &str,
    exclusions: &[String],
) -> anyhow::Result<(ImageTagMutability, Vec<ImageTagMutabilityExclusionFilter>)> {
    Ok((
        ops_repo::mutability(s)?,
        ops_repo::exclusion_filters(exclusions)?,
    ))
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
                let out = c
                    .describe_repositories()
                    .repository_names(&name)
                    .send()
                    .await
                    .map_err(|e| api_error("DescribeRepositories", e))?;
                let repos: Vec<RepositoryInfo> = out
                    .repositories()
                    .iter()
                    .map(RepositoryInfo::from)
                    .collect();
                if json {
                    println!("{}", serde_json::to_value(repos.first())?);
                } else {
                    print_repos(&repos, false)?;
                }
            }
            RepoCommand::Rm { name, force } => {
                c.delete_repository()
                    .repository_name(&name)
                    .force(force)
                    .send()
                    .await
                    .map_err(|e| api_error("DeleteRepository", e))?;
            }
            RepoCommand::Policy { name, set, delete } => {
                let text = if let Some(file) = set {
                    let doc = read_file(&file)?;
                    c.set_repository_policy()
                        .repository_name(&name)
                        .policy_text(doc)
                        .send()
                        .await
                        .map_err(|e| api_error("SetRepositoryPolicy", e))?
                        .policy_text()
                        .map(str::to_owned)
                } else if delete {
                    c.delete_repository_policy()
                        .repository_name(&name)
                        .send()
                        .await
                        .map_err(|e| api_error("DeleteRepositoryPolicy", e))?;
                    None
                } else {
                    c.get_repository_policy()
                        .repository_name(&name)
                        .send()
                        .await
                        .map_err(|e| api_error("GetRepositoryPolicy", e))?
                        .policy_text()
                        .map(str::to_owned)
                };
                if let Some(t) = text {
                    println!("{t}");
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
                let (m, filters) = mutability(&m, &exclusions)?;
                c.put_image_tag_mutability()
                    .repository_name(&name)
                    .image_tag_mutability(m)
                    .set_image_tag_mutability_exclusion_filters(
                        (!filters.is_empty()).then_some(filters),
                    )
                    .send()
                    .await
                    .map_err(|e| api_error("PutImageTagMutability", e))?;
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
        let doc = read_file(&file)?;
        c.put_lifecycle_policy()
            .repository_name(name)
            .lifecycle_policy_text(doc)
            .send()
            .await
            .map_err(|e| api_error("PutLifecyclePolicy", e))?;
        return Ok(());
    }
    if op.delete {
        c.delete_lifecycle_policy()
            .repository_name(name)
            .send()
            .await
            .map_err(|e| api_error("DeleteLifecyclePolicy", e))?;
        return Ok(());
    }
    if op.run {
        let out = berth_client::ecr::call_berth_action(
            &api.aws()?,
            "BerthRunLifecyclePolicy",
            &serde_json::json!({ "repositoryName": name }),
        )
        .await?;
        if api.json {
            println!("{out}");
            return Ok(());
        }
        let expired = out["expiredImages"].as_array().cloned().unwrap_or_default();
        for e in &expired {
            println!(
                "expired {}  rule {}  {}",
                e["imageDigest"].as_str().unwrap_or(""),
                e["appliedRulePriority"],
                tags_text(e["imageTags"].as_array()),
            );
        }
        println!("{} image(s) expired", expired.len());
        return Ok(());
    }
    if op.preview {
        let mut start = c.start_lifecycle_policy_preview().repository_name(name);
        if let Some(file) = &op.policy {
            start = start.lifecycle_policy_text(read_file(file)?);
        }
        start
            .send()
            .await
            .map_err(|e| api_error("StartLifecyclePolicyPreview", e))?;
        let mut results = Vec::new();
        let mut status = String::new();
        let mut pages = c
            .get_lifecycle_policy_preview()
            .repository_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("GetLifecyclePolicyPreview", e))?;
            status = page
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            results.extend(page.preview_results().iter().cloned());
        }
        if api.json {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "imageDigest": r.image_digest(),
                        "imageTags": r.image_tags(),
                        "imagePushedAt": time(r.image_pushed_at()),
                        "appliedRulePriority": r.applied_rule_priority(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "status": status, "previewResults": v })
            );
            return Ok(());
        }
        for r in &results {
            let tags: Vec<serde_json::Value> =
                r.image_tags().iter().map(|t| t.as_str().into()).collect();
            println!(
                "would expire {}  rule {}  pushed {}  {}",
                r.image_digest().unwrap_or(""),
                r.applied_rule_priority().unwrap_or_default(),
                time(r.image_pushed_at()),
                tags_text(Some(&tags)),
            );
        }
        println!("{} image(s) would expire ({status})", results.len());
        return Ok(());
    }
    let out = c
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
        .map_err(|e| api_error("GetLifecyclePolicy", e))?;
    println!("{}", out.lifecycle_policy_text().unwrap_or_default());
    Ok(())
}

fn tags_text(tags: Option<&Vec<serde_json::Value>>) -> String {
    let tags: Vec<&str> = tags
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
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
    let ImagesCommand::Ls { mut repository } = args.command;
    args.api.take_registry(&mut repository)?;
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
