//! `berth admin migrate`: an embedded registry (a data directory: filesystem blobs, SQLite)
//! copied into the scaled backends (S3-compatible storage, PostgreSQL).

use std::path::PathBuf;

use anyhow::Context;
use berth_store::migrate::{MetadataCopy, copy_blobs, copy_metadata};
use berth_store::{Durability, FsBlobStore, PgMeta, SqliteMeta};
use clap::Args;

use crate::UsageError;
use crate::serve::{Settings, open_blobs};

/// Options of `berth admin migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The embedded registry's data directory (stop its `berth serve` first)
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The blob store to copy into, `s3://BUCKET/PREFIX` (its `[s3]` settings from --config)
    /// [default: the config's storage]
    #[arg(long, value_name = "URL")]
    to_storage: Option<String>,
    /// The PostgreSQL database to copy into (new and empty) [default: the config's metadata]
    #[arg(long, value_name = "URL")]
    to_metadata: Option<String>,
}

impl MigrateArgs {
    /// The target's storage and metadata flags, which take the place of `--storage` and
    /// `--metadata` when the settings are read.
    pub(crate) fn targets(&self) -> (Option<String>, Option<String>) {
        (self.to_storage.clone(), self.to_metadata.clone())
    }
}

/// Copies the blobs (verified, resumable), then the metadata (one transaction).
pub(crate) async fn run(args: &MigrateArgs, target: &Settings) -> anyhow::Result<()> {
    let (Some(_), Some(url)) = (&target.s3, &target.metadata) else {
        return Err(UsageError(
            "migrate needs the target's storage (--to-storage s3://BUCKET/PREFIX) and metadata \
             (--to-metadata postgres://…), as flags or in --config"
                .into(),
        )
        .into());
    };
    let db = args.from.join("meta.db");
    if !db.exists() {
        return Err(UsageError(format!(
            "{} is not a berth data directory (no meta.db)",
            args.from.display()
        ))
        .into());
    }
    let source_meta = SqliteMeta::open(&db, Durability::Full)
        .with_context(|| format!("opening {}", db.display()))?;
    let source_blobs = FsBlobStore::open(&args.from)
        .with_context(|| format!("opening the blobs of {}", args.from.display()))?;
    let target_blobs = open_blobs(target).await?;
    let target_meta = PgMeta::open(url)
        .await
        .context("opening the target PostgreSQL database")?;
    eprintln!("copying blobs from {} …", args.from.display());
    let every = |done: u64, total: u64| {
        if done.is_multiple_of(500) || done == total {
            eprintln!("  {done}/{total} blobs");
        }
    };
    let blobs = copy_blobs(&source_blobs, &*target_blobs, &every).await?;
    println!(
        "blobs: {} copied and verified ({} bytes), {} already there",
        blobs.copied, blobs.bytes, blobs.skipped
    );
    match copy_metadata(&source_meta, &target_meta).await? {
        MetadataCopy::Copied(tables) => {
            let rows: u64 = tables.iter().map(|(_, n)| n).sum();
            println!("metadata: {rows} rows in {} tables copied", tables.len());
            for (t, n) in tables.iter().filter(|(_, n)| *n > 0) {
                println!("  {t}: {n}");
            }
        }
        MetadataCopy::AlreadyDone => {
            println!("metadata: already migrated (the target holds this registry)");
        }
        _ => {}
    }
    let key = args.from.join("master.key");
    println!(
        "done. Start the replicas with the source's master key (BERTH_MASTER_KEY=$(cat {})) \
         and the same region and registry settings.",
        key.display()
    );
    Ok(())
}
