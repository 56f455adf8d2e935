//! `berth cache-rule …`: pull-through cache rules through the ECR API (`aws-sdk-ecr`), on
//! Amazon ECR or `berth serve`.

use std::io::Read;

use anyhow::Context;
use berth_ops::cache_rules::{self, CacheRule, NewCacheRule};
use clap::{Args, Subcommand};

use crate::UsageError;
use crate::repo::ApiOpts;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples (berth serve at 127.0.0.1:5000):\n  berth cache-rule create docker-hub registry-1.docker.io --username me --password-stdin < token.txt\n  podman pull 127.0.0.1:5000/docker-hub/library/alpine:3.20   # pulled through, cached\n  berth cache-rule create mirror http://10.0.0.5:5000 --upstream-prefix team\n  berth cache-rule ls\n  berth cache-rule validate docker-hub\n  berth cache-rule rm docker-hub"
)]
pub struct CacheRuleArgs {
    #[command(subcommand)]
    command: CacheRuleCommand,
    #[command(flatten)]
    api: ApiOpts,
}

#[derive(Debug, Subcommand)]
enum CacheRuleCommand {
    /// Make repositories PREFIX/… caches of an upstream registry
    Create {
        /// The local repository prefix (`ROOT`: every repository)
        prefix: String,
        /// The upstream registry: host[:port] (https), or https://… / http://…
        upstream: String,
        /// The upstream repository prefix PREFIX/NAME maps to (default: none)
        #[arg(long, value_name = "PREFIX")]
        upstream_prefix: Option<String>,
        /// The upstream user name; the registry keeps the credential sealed (berth serve only)
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        /// Read the upstream password or access token from standard input
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// A stored credential's ARN instead (Amazon ECR: a Secrets Manager secret named
        /// ecr-pullthroughcache/…)
        #[arg(long, conflicts_with = "username", value_name = "ARN")]
        credential_arn: Option<String>,
    },
    /// List the rules
    Ls,
    /// Delete a rule (its cached repositories stay)
    Rm {
        /// The rule's prefix
        prefix: String,
    },
    /// Check that the upstream accepts the rule's credentials
    Validate {
        /// The rule's prefix
        prefix: String,
    },
}

fn print_rules(rules: &[CacheRule], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(rules)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<36} {:<16} CREDENTIAL",
        "PREFIX", "UPSTREAM", "UPSTREAM PREFIX"
    );
    for r in rules {
        println!(
            "{:<24} {:<36} {:<16} {}",
            r.ecr_repository_prefix,
            r.upstream_registry_url,
            r.upstream_repository_prefix.as_deref().unwrap_or("ROOT"),
            r.credential_arn.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `berth cache-rule`.
pub fn run(args: CacheRuleArgs) -> anyhow::Result<()> {
    crate::repo::runtime()?.block_on(async move {
        let aws = args.api.aws()?;
        let c = crate::repo::client(&args.api).await?;
        let json = args.api.json();
        match args.command {
            CacheRuleCommand::Create {
                prefix,
                upstream,
                upstream_prefix,
                username,
                password_stdin,
                credential_arn,
            } => {
                let mut rule = NewCacheRule::new(&prefix, &upstream);
                rule.upstream_prefix = upstream_prefix;
                rule.credential_arn = credential_arn;
                let created = if let (Some(user), true) = (username, password_stdin) {
                    let mut token = String::new();
                    std::io::stdin()
                        .read_to_string(&mut token)
                        .context("reading the password from standard input")?;
                    let token = token.trim_end_matches(['\n', '\r']);
                    if token.is_empty() {
                        return Err(
                            UsageError("--password-stdin: standard input is empty".into()).into(),
                        );
                    }
                    cache_rules::create_with_credential(&c, &aws, &rule, &user, token).await?
                } else {
                    cache_rules::create(&c, &rule).await?
                };
                if json {
                    println!("{}", serde_json::to_string(&created)?);
                } else {
                    println!(
                        "{}/… now pulls through {}",
                        created.ecr_repository_prefix, created.upstream_registry_url
                    );
                }
            }
            CacheRuleCommand::Ls => print_rules(&cache_rules::list(&c).await?, json)?,
            CacheRuleCommand::Rm { prefix } => {
                let gone = cache_rules::delete_with_credential(&c, &aws, &prefix).await?;
                if json {
                    println!("{}", serde_json::to_string(&gone)?);
                } else {
                    println!("deleted the pull-through cache rule {prefix}");
                }
            }
            CacheRuleCommand::Validate { prefix } => {
                let v = cache_rules::validate(&c, &prefix).await?;
                if json {
                    println!("{}", serde_json::to_string(&v)?);
                } else if v.is_valid {
                    println!("{prefix}: the upstream accepts the rule's credentials");
                } else {
                    println!(
                        "{prefix}: not valid: {}",
                        v.failure.as_deref().unwrap_or("no reason given")
                    );
                }
                if !v.is_valid {
                    return Err(crate::ExitWith(1).into());
                }
            }
        }
        Ok(())
    })
}
