//! `berth gc`: one garbage collection, on a data directory or through a running `berth serve`.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context;
use berth_registry::{GcOptions, GcReport};
use clap::Args;

use crate::serve::{DataArgs, data_settings, open_registry};

/// `berth gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Report what would be removed; remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Collect only what was untouched this long (`0s`, `30m`, `1h`) [default: the
    /// configuration's gc_grace_secs, 1h]
    #[arg(long, value_name = "DURATION", value_parser = crate::build::parse_duration)]
    grace: Option<Duration>,
    /// Ask the running registry at this ECR endpoint to collect (`BerthRunGarbageCollection`,
    /// signed with your AWS credentials) instead of working on a data directory
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The AWS region to sign for, with --endpoint-url [default: from AWS_REGION]
    #[arg(long)]
    region: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn print(report: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    if json {
        writeln!(out, "{report}")?;
        return Ok(());
    }
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    let verb = if report["dryRun"].as_bool().unwrap_or(false) {
        "would remove"
    } else {
        "removed"
    };
    writeln!(
        out,
        "{verb} {} blob(s) ({}; {} unrecorded), {} unused link(s), {} abandoned upload(s) in {} ms",
        n("blobsRemoved"),
        crate::repo::human(n("bytesReclaimed")),
        n("orphansRemoved"),
        n("linksRemoved"),
        n("uploadsRemoved"),
        n("durationMs"),
    )?;
    if n("tombstonesFinished") > 0 {
        writeln!(
            out,
            "finished {} deletion(s) an interrupted collection left",
            n("tombstonesFinished")
        )?;
    }
    Ok(())
}

/// Runs `berth gc`.
pub fn run(args: GcArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let report = if let Some(url) = &args.endpoint_url {
            let mut body = serde_json::json!({ "dryRun": args.dry_run });
            if let Some(g) = args.grace {
                body["gracePeriodSeconds"] = g.as_secs().into();
            }
            let aws = berth_client::ecr::AwsOptions {
                region: args.region.clone(),
                endpoint: Some(url.clone()),
                ..Default::default()
            };
            berth_client::ecr::call_berth_action(&aws, "BerthRunGarbageCollection", &body).await?
        } else {
            let s = data_settings(args.data)?;
            let grace = args.grace.unwrap_or(s.registry_config().gc_grace);
            let registry = open_registry(s).await?;
            let report: GcReport = registry
                .collect_garbage(GcOptions {
                    dry_run: args.dry_run,
                    grace,
                })
                .await?;
            serde_json::to_value(report)?
        };
        print(&report, args.json)
    })
}
