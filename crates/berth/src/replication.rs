//! `berth replication set|show`: the registry's replication configuration through the ECR API
//! (`aws-sdk-ecr`), on Amazon ECR or `berth serve`.

use anyhow::Context;
use berth_ops::replication::{self as ops, Configuration};
use clap::{Args, Subcommand};

use crate::repo::ApiOpts;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples (berth serve at 127.0.0.1:5000, destinations in its [[replication_destinations]]):\n  berth replication set --endpoint-url http://127.0.0.1:5000 replication.json\n  berth replication set --to us-west-2/111111111111 --prefix team\n  berth replication show\n  berth images replication team/app:1.2.3"
)]
pub struct ReplicationArgs {
    #[command(subcommand)]
    command: ReplicationCommand,
    #[command(flatten)]
    api: ApiOpts,
}

#[derive(Debug, Subcommand)]
enum ReplicationCommand {
    /// Set the replication configuration: a JSON file as `aws ecr put-replication-configuration`
    /// takes it (`-` for standard input), or one rule from --to and --prefix; `--to` alone with
    /// no destination clears it
    Set {
        /// The configuration file ({"rules": [...]})
        #[arg(conflicts_with_all = ["to", "prefix"])]
        file: Option<String>,
        /// A destination REGION/REGISTRY_ID (repeatable): one rule with all of them
        #[arg(long, value_name = "REGION/REGISTRY_ID")]
        to: Vec<String>,
        /// Only repositories whose name starts with this (repeatable; none: every repository)
        #[arg(long, value_name = "PREFIX", requires = "to")]
        prefix: Vec<String>,
        /// Remove the configuration (replicate nothing)
        #[arg(long, conflicts_with_all = ["file", "to", "prefix"])]
        clear: bool,
    },
    /// Print the replication configuration
    Show,
}

fn print(c: &Configuration, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(c)?);
        return Ok(());
    }
    if c.rules.is_empty() {
        println!("no replication configured");
    }
    for (i, r) in c.rules.iter().enumerate() {
        let to: Vec<String> = r
            .destinations
            .iter()
            .map(|d| format!("{}/{}", d.region, d.registry_id))
            .collect();
        let which = if r.repository_filters.is_empty() {
            "every repository".to_owned()
        } else {
            r.repository_filters
                .iter()
                .map(|f| format!("{}*", f.filter))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("rule {}: {which} → {}", i + 1, to.join(", "));
    }
    Ok(())
}

/// `berth replication`.
pub fn run(args: ReplicationArgs) -> anyhow::Result<()> {
    crate::repo::runtime()?.block_on(async move {
        let c = crate::repo::client(&args.api).await?;
        let json = args.api.json();
        match args.command {
            ReplicationCommand::Set {
                file,
                to,
                prefix,
                clear,
            } => {
                let config = if clear {
                    Configuration::default()
                } else if let Some(f) = file {
                    let text = if f == "-" {
                        std::io::read_to_string(std::io::stdin())
                            .context("reading the configuration from standard input")?
                    } else {
                        std::fs::read_to_string(&f).with_context(|| format!("reading {f}"))?
                    };
                    Configuration::parse(&text)?
                } else if !to.is_empty() {
                    Configuration::single_rule(&to, &prefix)?
                } else {
                    return Err(crate::UsageError(
                        "give a configuration file, --to REGION/REGISTRY_ID, or --clear".into(),
                    )
                    .into());
                };
                print(&ops::set(&c, &config).await?, json)
            }
            ReplicationCommand::Show => print(&ops::show(&c).await?, json),
        }
    })
}
