//! Moving an embedded registry (filesystem blobs, SQLite metadata) into the scaled backends
//! (any blob store, PostgreSQL): `berth admin migrate`.
//!
//! Blobs first, each streamed and hashed on the way and committed at the target only if its
//! digest verifies; a blob the target already has (same size) is skipped, so an interrupted
//! run continues where it stopped. Then the metadata, table by table in the SQLite schema's
//! order (parents before children), in **one** PostgreSQL transaction from one SQLite snapshot:
//! the target sees all of it or none, and a rerun after a failure starts the metadata over. The
//! target database must be empty (or hold a completed migration of this very source, which a
//! rerun then reports instead of copying again).

use std::sync::Arc;

use berth_oci::Digest;
use futures::StreamExt;
use postgres::types::ToSql;
use rusqlite::types::Value;

use crate::blob::{BlobStore, UploadId};
use crate::postgres::PgMeta;
use crate::sqlite::SqliteMeta;
use crate::{IdentityStore, StoreError};

/// The setting a completed migration leaves in the target: the source's registry id.
pub const MIGRATED_FROM: &str = "berth.migrated_from";

/// What copying the blobs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobCopy {
    /// Blobs copied and verified.
    pub copied: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Blobs the target had already.
    pub skipped: u64,
}

/// Copies every blob of `from` into `to`, verifying each digest while streaming; `progress`
/// is called after each blob with (blobs done, blobs in all).
pub async fn copy_blobs(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<BlobCopy, StoreError> {
    let all = from.list().await?;
    let total = all.len() as u64;
    let mut out = BlobCopy::default();
    for (i, (digest, _)) in all.iter().enumerate() {
        let Some(size) = from.stat(digest).await? else {
            // Deleted since the listing (the source is in use): nothing to copy.
            continue;
        };
        if to.stat(digest).await? == Some(size) {
            out.skipped += 1;
        } else {
            copy_one(from, to, digest, size).await?;
            out.copied += 1;
            out.bytes += size;
        }
        progress(i as u64 + 1, total);
    }
    Ok(out)
}

/// A source blob that does not read back as itself.
fn damaged(digest: &Digest, size: u64, n: u64, d: &Digest) -> StoreError {
    StoreError::Corrupt(format!(
        "blob {digest} in the source reads as {n} bytes with digest {d} (expected {size} bytes): \
         the source is damaged; nothing of it was copied"
    ))
}

async fn copy_one(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    digest: &Digest,
    size: u64,
) -> Result<(), StoreError> {
    let hasher = Arc::new(std::sync::Mutex::new(digest.algorithm().hasher()));
    let h = Arc::clone(&hasher);
    let stream = from
        .read(digest, 0, size)
        .await?
        .map(move |chunk| {
            if let Ok(c) = &chunk
                && let Ok(mut h) = h.lock()
            {
                h.update(c);
            }
            chunk
        })
        .boxed();
    let computed = || {
        hasher
            .lock()
            .map(|h| h.clone().finish())
            .map_err(|_| StoreError::Worker("the hashing lock was poisoned".into()))
    };
    if to.puts_streams() {
        // Straight to its content address, shown only once verified: no staging.
        let seen = std::sync::Mutex::new(0u64);
        let verify = |n: u64| {
            if let Ok(mut s) = seen.lock() {
                *s = n;
            }
            n == size && computed().is_ok_and(|d| d == *digest)
        };
        if to.put_stream(digest, size, stream, &verify).await? {
            return Ok(());
        }
        let n = seen.lock().map(|s| *s).unwrap_or_default();
        return Err(damaged(digest, size, n, &computed()?));
    }
    let id = UploadId::random();
    to.upload_start(&id).await?;
    let appended = to.upload_append(&id, 0, stream, None).await;
    match (appended, computed()) {
        (Ok(n), Ok(d)) if n == size && d == *digest => {
            to.upload_commit(&id, digest).await?;
            Ok(())
        }
        (Ok(n), Ok(d)) => {
            to.upload_abort(&id).await?;
            Err(damaged(digest, size, n, &d))
        }
        (Err(e), _) | (_, Err(e)) => {
            let _ = to.upload_abort(&id).await;
            Err(e)
        }
    }
}

/// Rows copied per table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataCopy {
    /// Copied now: (table, rows) in copy order.
    Copied(Vec<(String, u64)>),
    /// The target holds a completed migration of this source already.
    AlreadyDone,
}

/// A table's columns and rows, read from SQLite.
struct Table {
    name: String,
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// Copies every table of `from` into `to` in one transaction (see the module docs).
pub async fn copy_metadata(from: &SqliteMeta, to: &PgMeta) -> Result<MetadataCopy, StoreError> {
    let source_id = from.setting("registry_id").await?;
    if let Some(done) = to.setting(MIGRATED_FROM).await? {
        if Some(&done) == source_id.as_ref() {
            return Ok(MetadataCopy::AlreadyDone);
        }
        return Err(StoreError::Unsupported(format!(
            "the target database holds a migration of registry {done}, not of this one"
        )));
    }
    let tables = Arc::new(
        from.read(|c| {
            // One snapshot of every table.
            let tx = c.unchecked_transaction()?;
            let names: Vec<String> = tx
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut tables = Vec::new();
            for name in names {
                let columns: Vec<String> = tx
                    .prepare(&format!("PRAGMA table_info(\"{name}\")"))?
                    .query_map([], |r| r.get(1))?
                    .collect::<Result<_, _>>()?;
                let list = columns
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut st = tx.prepare(&format!("SELECT {list} FROM \"{name}\""))?;
                let n = columns.len();
                let rows: Vec<Vec<Value>> = st
                    .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())?
                    .collect::<Result<_, _>>()?;
                tables.push(Table {
                    name,
                    columns,
                    rows,
                });
            }
            tx.commit()?;
            Ok(tables)
        })
        .await?,
    );
    let marker = source_id.unwrap_or_default();
    let copied = to
        .write(move |c| {
            let mut report = Vec::new();
            for t in tables.iter() {
                let target: Vec<(String, String)> = c
                    .query(
                        "SELECT column_name::text, data_type::text FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1",
                        &[&t.name],
                    )?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                if target.is_empty() {
                    return Err(StoreError::Unsupported(format!(
                        "table {} of the source has no counterpart in PostgreSQL",
                        t.name
                    )));
                }
                let existing: i64 = c
                    .query_one(&format!("SELECT count(*) FROM \"{}\"", t.name), &[])?
                    .get(0);
                if existing > 0 {
                    return Err(StoreError::Unsupported(format!(
                        "the target database is not empty (table {} has {existing} rows): migrate \
                         into a new database",
                        t.name
                    )));
                }
                // Source column → (position, target column, its type); SQLite's `user` is
                // `user_name` in PostgreSQL, where `user` is reserved; columns PostgreSQL no
                // longer has are left behind.
                let mapped: Vec<(usize, String, String)> = t
                    .columns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, col)| {
                        let name = if col == "user" { "user_name" } else { col.as_str() };
                        target
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(n, ty)| (i, n.clone(), ty.clone()))
                    })
                    .collect();
                let cols = mapped
                    .iter()
                    .map(|(_, n, _)| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                let marks = (1..=mapped.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "INSERT INTO \"{}\" ({cols}) OVERRIDING SYSTEM VALUE VALUES ({marks})",
                    t.name
                );
                for row in &t.rows {
                    let values: Vec<Box<dyn ToSql + Sync>> = mapped
                        .iter()
                        .map(|(i, col, ty)| convert(&t.name, col, ty, &row[*i]))
                        .collect::<Result<_, _>>()?;
                    let params: Vec<&(dyn ToSql + Sync)> =
                        values.iter().map(|v| v.as_ref()).collect();
                    c.execute(&sql, &params)?;
                }
                // Identity columns continue after the copied ids.
                if target.iter().any(|(n, _)| n == "id") {
                    let seq: Option<String> = c
                        .query_one(
                            "SELECT pg_get_serial_sequence($1, 'id')",
                            &[&format!("\"{}\"", t.name)],
                        )?
                        .get(0);
                    if let Some(seq) = seq {
                        c.execute(
                            &format!(
                                "SELECT setval($1::text::regclass, GREATEST((SELECT max(id) FROM \"{}\"), 1), \
                                 (SELECT max(id) IS NOT NULL FROM \"{}\"))",
                                t.name, t.name
                            ),
                            &[&seq],
                        )?;
                    }
                }
                report.push((t.name.clone(), t.rows.len() as u64));
            }
            c.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)",
                &[&MIGRATED_FROM, &marker],
            )?;
            Ok(report)
        })
        .await?;
    Ok(MetadataCopy::Copied(copied))
}

/// A SQLite value as the PostgreSQL column type `ty` wants it.
fn convert(
    table: &str,
    col: &str,
    ty: &str,
    v: &Value,
) -> Result<Box<dyn ToSql + Sync>, StoreError> {
    let bad = || {
        StoreError::Corrupt(format!(
            "{table}.{col}: the value {v:?} does not fit PostgreSQL's {ty}"
        ))
    };
    Ok(match (ty, v) {
        ("bigint", Value::Null) => Box::new(None::<i64>),
        ("bigint", Value::Integer(i)) => Box::new(*i),
        ("integer", Value::Null) => Box::new(None::<i32>),
        ("integer", Value::Integer(i)) => Box::new(i32::try_from(*i).map_err(|_| bad())?),
        ("boolean", Value::Null) => Box::new(None::<bool>),
        ("boolean", Value::Integer(i)) => Box::new(*i != 0),
        ("double precision", Value::Null) => Box::new(None::<f64>),
        ("double precision", Value::Real(f)) => Box::new(*f),
        ("double precision", Value::Integer(i)) => Box::new(*i as f64),
        ("bytea", Value::Null) => Box::new(None::<Vec<u8>>),
        ("bytea", Value::Blob(b)) => Box::new(b.clone()),
        ("bytea", Value::Text(s)) => Box::new(s.as_bytes().to_vec()),
        ("text" | "character varying", Value::Null) => Box::new(None::<String>),
        ("text" | "character varying", Value::Text(s)) => Box::new(s.clone()),
        ("text" | "character varying", Value::Integer(i)) => Box::new(i.to_string()),
        _ => return Err(bad()),
    })
}
