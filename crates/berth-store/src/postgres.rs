//! The PostgreSQL metadata store: the same tables, checks and answers as the SQLite one
//! (`sqlite.rs`), for several registry replicas sharing one database.
//!
//! Every operation runs, like SQLite's, as a synchronous closure on a pooled connection
//! (`postgres`, the synchronous rust-postgres client) in `tokio::task::spawn_blocking`; an async
//! semaphore bounds the connections (and the blocking threads they occupy), so a burst of
//! requests waits asynchronously.
//!
//! # Isolation
//!
//! SQLite has one writer, so its write transactions run in a serial order. Here every **write**
//! (every method that changes anything, including the identity store's) is one transaction at
//! `SERIALIZABLE`: PostgreSQL guarantees the outcome of any interleaving of them, from any number
//! of replicas, is that of *some* serial order — the same guarantee, so checks made inside a
//! write (references exist, a tag is not immutable, a quota holds, the collector's claims, a
//! lease is free) stay true at commit. When PostgreSQL cannot guarantee it, it aborts one
//! transaction with SQLSTATE `40001` (serialization failure) or `40P01` (deadlock); the closure
//! is then run again in a fresh transaction after a short randomized backoff, up to
//! [`MAX_ATTEMPTS`] times, so callers never see those errors (only after that many
//! failures in a row, as `StoreError::Database`). A write's closure therefore must be
//! repeatable: it may run more than once, and only the run that commits counts.
//!
//! Writes SQLite commits with `synchronous=NORMAL` (upload sessions, pins, leases, previews,
//! scans, job outcomes: nothing acknowledged as content) run with
//! `SET LOCAL synchronous_commit = off`: atomic and ordered like the others, but a crash of the
//! *database server* may forget the last of them; WAL order makes them durable with the next
//! synchronous commit, as in SQLite.
//!
//! **Reads** of several statements (a repository's id and then its rows, an image and its tags
//! and sizes, usage sums, the lifecycle snapshot, a key with its user and policies) run in one
//! `REPEATABLE READ READ ONLY` transaction, so they see one snapshot; read-only transactions at
//! that level never fail with serialization errors. **Single-statement reads** run in
//! autocommit (one statement is one snapshot anyway). The collector's dry runs are
//! snapshot reads of the passes a real run makes as writes.
//!
//! An operation that meets a connection the server has closed (a restart, an idle timeout) runs
//! again on a fresh one — reads always, writes when their `COMMIT` was not sent (a write cut
//! off during `COMMIT` may have committed, so its error is returned) — and the idle
//! connections are dropped with it. [`PgMeta::retries`] counts every operation run again.
//!
//! Migrations run once per database in a `READ COMMITTED` transaction holding a transaction-level
//! advisory lock: replicas starting together wait for the first, then see its version.
//!
//! Connections use TLS as libpq would for the URL's `sslmode` and `sslrootcert` (see
//! `postgres_tls`): by default, encrypted when the server offers it; `verify-full` checks the
//! chain and the host name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::blob::UploadId;
use crate::meta::{
    ExpiryGroup, GcBlob, GcPage, ImageRecord, JobOutcome, LifecyclePreview, ManifestRecord,
    MetadataStore, NewManifest, NewReplicationJob, NewRepository, Quota, ReplicationJob,
    RepoSummary, RepositoryRecord, RepositoryUpdate, ScanRecord, SnapshotManifest, StorageUsage,
    TagFilter, TagRecord, TagRule, UploadLimits, UploadRecord, Usage,
};
use crate::postgres_schema::MIGRATIONS;
use crate::{StoreError, now_millis};

/// Connections a [`PgMeta`] opens at most, unless [`PgOptions`] says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// Attempts of one write before a serialization failure is given to the caller.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// The advisory lock migrations hold (`b"berthsch"`), so replicas migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6265_7274_6873_6368;

/// Settings of a [`PgMeta`] beyond its URL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// Connections (and operations in flight) at most; at least 1.
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl PgOptions {
    /// These options with another connection limit.
    #[must_use]
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
}

/// Metadata (and identities) in a PostgreSQL database; cheap to clone (one shared pool).
#[derive(Clone)]
pub struct PgMeta {
    inner: Arc<Inner>,
}

impl fmt::Debug for PgMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PgMeta")
            .field("hosts", &self.inner.config.get_hosts())
            .field("dbname", &self.inner.config.get_dbname())
            .field("max_connections", &self.inner.max_connections)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: postgres::Config,
    /// The TLS connector (`None`: `sslmode=disable`).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    max_connections: usize,
    idle: Mutex<Vec<Conn>>,
    /// One per connection: an operation holds one while it runs.
    permits: tokio::sync::Semaphore,
    /// Operations run again (see [`PgMeta::retries`]).
    retries: std::sync::atomic::AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let conns = std::mem::take(
            self.idle
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if conns.is_empty() {
            return;
        }
        // A synchronous client closes its connection on its own runtime, which must not happen
        // on an async worker thread (it panics there): close them on a thread of their own.
        let closing = std::thread::Builder::new()
            .name("berth-pg-close".into())
            .spawn(move || drop(conns));
        if let Err(e) = closing {
            tracing::warn!(error = %e, "could not close pooled PostgreSQL connections");
        }
    }
}

/// A pooled connection and its prepared statements (by SQL text).
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// A transaction could not be ended: never reuse it.
    broken: bool,
}

/// Query parameters.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    fn connect(
        config: &postgres::Config,
        tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Conn, StoreError> {
        let client = match tls {
            Some(tls) => config.connect(tls.clone())?,
            None => config.connect(NoTls)?,
        };
        Ok(Conn {
            client,
            statements: HashMap::new(),
            broken: false,
        })
    }

    fn reusable(&self) -> bool {
        !self.broken && !self.client.is_closed()
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    /// Every row of a (cached, prepared) query.
    pub(crate) fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        Ok(self.client.query(&st, params)?)
    }

    /// The first row, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query that always returns one (an aggregate).
    pub(crate) fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {sql}")))
    }

    /// Rows changed.
    pub(crate) fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let st = self.statement(sql)?;
        Ok(self.client.execute(&st, params)?)
    }

    /// Whether the query returns a row.
    pub(crate) fn exists(&mut self, sql: &str, params: Params<'_>) -> Result<bool, StoreError> {
        Ok(!self.query(sql, params)?.is_empty())
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// How an operation runs (see the module documentation).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One statement, autocommit.
    Single,
    /// `REPEATABLE READ READ ONLY`.
    Snapshot,
    /// `SERIALIZABLE`, retried; `relaxed`: `synchronous_commit = off`.
    Write { relaxed: bool },
}

impl Kind {
    fn begin(self) -> Option<&'static str> {
        match self {
            Kind::Single => None,
            Kind::Snapshot => Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            Kind::Write { relaxed: false } => Some("BEGIN ISOLATION LEVEL SERIALIZABLE"),
            Kind::Write { relaxed: true } => {
                Some("BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL synchronous_commit = off")
            }
        }
    }
}

/// Whether an error is PostgreSQL refusing a transaction it could not serialize.
fn serialization_failure(e: &StoreError) -> bool {
    let StoreError::Database(source) = e else {
        return false;
    };
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// Whether the connection is gone (the server restarted or ended it, the network broke): an
/// error saying so, or a client that found its connection closed while failing.
fn connection_lost(conn: &Conn, e: &StoreError) -> bool {
    let closed = match e {
        StoreError::Database(source) => source
            .downcast_ref::<postgres::Error>()
            .is_some_and(postgres::Error::is_closed),
        _ => false,
    };
    closed || conn.client.is_closed()
}

/// Why an attempt failed.
struct Failure {
    error: StoreError,
    /// Running the operation again is safe (nothing was committed) and may succeed.
    again: bool,
    /// The connection was lost: the other idle ones probably were too.
    lost: bool,
}

/// One run of `f` as `kind` on `conn`.
fn attempt<T>(
    conn: &mut Conn,
    kind: Kind,
    f: &mut impl FnMut(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, Failure> {
    let read = !matches!(kind, Kind::Write { .. });
    let Some(begin) = kind.begin() else {
        return f(conn).map_err(|error| {
            let lost = connection_lost(conn, &error);
            conn.broken |= lost;
            Failure {
                error,
                again: lost,
                lost,
            }
        });
    };
    if let Err(error) = conn.batch(begin) {
        // Nothing was done: a dead pooled connection is worth another try on a fresh one. (A
        // `BEGIN` that went through before a later statement of the batch failed is undone.)
        let lost = connection_lost(conn, &error);
        conn.broken = lost || conn.batch("ROLLBACK").is_err();
        return Err(Failure {
            error,
            again: lost,
            lost,
        });
    }
    match f(conn) {
        Ok(v) => match conn.batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(error) => {
                // A serialization failure at COMMIT rolled the transaction back; a connection
                // lost during COMMIT leaves a write's outcome unknown, so it is not run again.
                let lost = connection_lost(conn, &error);
                conn.broken = lost || conn.batch("ROLLBACK").is_err();
                let again = serialization_failure(&error) || (read && lost);
                Err(Failure { error, again, lost })
            }
        },
        Err(error) => {
            // COMMIT was not sent: whatever happened, nothing was committed.
            let lost = connection_lost(conn, &error);
            if !lost && let Err(rollback) = conn.batch("ROLLBACK") {
                tracing::debug!(error = %rollback, "rolling back a failed transaction failed");
                conn.broken = true;
            }
            conn.broken |= lost;
            let again = serialization_failure(&error) || lost;
            Err(Failure { error, again, lost })
        }
    }
}

/// The pause before attempt `n + 1`: randomized, from 1–4 ms after the first to 32–128 ms.
fn backoff(n: u32) -> Duration {
    let ceiling = 2u64 << n.min(6);
    Duration::from_micros(rand::random_range(ceiling * 250..=ceiling * 1000))
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError::Worker("a metadata worker panicked while holding the connection pool".into())
}

impl Inner {
    /// An idle connection that is still open, or a new one.
    fn checkout(&self) -> Result<Conn, StoreError> {
        loop {
            let conn = self.idle.lock().map_err(poisoned)?.pop();
            match conn {
                Some(c) if c.reusable() => return Ok(c),
                // Dropped here, off the lock.
                Some(_) => {}
                None => return Conn::connect(&self.config, self.tls.as_ref()),
            }
        }
    }

    /// Closes the idle connections (from a blocking thread).
    fn clear(&self) {
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => return,
        };
        drop(idle);
    }

    fn checkin(&self, conn: Conn) -> Result<(), StoreError> {
        if conn.reusable() {
            self.idle.lock().map_err(poisoned)?.push(conn);
        }
        Ok(())
    }
}

impl PgMeta {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`, or the
    /// `key=value` form libpq accepts), migrating its schema if needed, with the default
    /// options. Async: it waits on the network, and on another replica's migration.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PgOptions::default()).await
    }

    /// [`PgMeta::open`] with options.
    pub async fn open_with(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let tls = crate::postgres_tls::settings(url)?;
        let mut config: postgres::Config = tls.rest.parse()?;
        config.ssl_mode(tls.ssl_mode());
        let connector = tls.connector()?;
        if config.get_application_name().is_none() {
            config.application_name("berth");
        }
        let max = options.max_connections.max(1);
        let meta = PgMeta {
            inner: Arc::new(Inner {
                config,
                tls: connector,
                max_connections: max,
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(max),
                retries: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        let inner = Arc::clone(&meta.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.checkout()?;
            let result = migrate(&mut conn);
            inner.checkin(conn)?;
            result
        })
        .await??;
        Ok(meta)
    }

    /// Runs `f` as `kind` on a pooled connection off the async threads, again (after a pause)
    /// while it fails in a way a new attempt may not (see [`attempt`]).
    async fn run<T, F>(&self, kind: Kind, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let mut f = f;
        let mut n = 0;
        loop {
            n += 1;
            let permit = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(|e| StoreError::Worker(e.to_string()))?;
            let inner = Arc::clone(&self.inner);
            let (back, result) = tokio::task::spawn_blocking(move || {
                let result = inner.checkout().map_err(|error| Failure {
                    error,
                    again: false,
                    lost: false,
                });
                let result = result.and_then(|mut conn| {
                    let r = attempt(&mut conn, kind, &mut f);
                    if let Err(Failure { lost: true, .. }) = &r {
                        // Probably a restarted server: its other idle connections are dead too.
                        inner.clear();
                    }
                    match inner.checkin(conn) {
                        Ok(()) => r,
                        Err(error) => r.and(Err(Failure {
                            error,
                            again: false,
                            lost: false,
                        })),
                    }
                });
                (f, result)
            })
            .await?;
            drop(permit);
            f = back;
            match result {
                Ok(v) => return Ok(v),
                Err(Failure {
                    error, again: true, ..
                }) if n < MAX_ATTEMPTS => {
                    self.inner
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(attempt = n, %error, "running a metadata transaction again");
                    tokio::time::sleep(backoff(n)).await;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// How many times an operation was run again since this store was opened: after a
    /// serialization failure (concurrent writers, here or on other replicas) or a lost
    /// connection. For metrics: a steadily growing count means hot rows.
    pub fn retries(&self) -> u64 {
        self.inner
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs one statement (autocommit).
    pub(crate) async fn read_one<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(Kind::Single, f).await
    }

    /// Runs several reads in one `REPEATABLE READ READ ONLY` transaction (one snapshot).
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(Kind::Snapshot, f).await
    }

    /// Runs a closure in one `SERIALIZABLE` transaction, committed if it returns Ok, run again
    /// in a fresh transaction when PostgreSQL refuses to serialize it.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(Kind::Write { relaxed: false }, f).await
    }

    /// Like [`Self::write`], but with `relaxed` the commit does not wait for the server's disk
    /// (`synchronous_commit = off`): for state that is not acknowledged content.
    async fn write_with<T: Send + 'static>(
        &self,
        relaxed: bool,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(Kind::Write { relaxed }, f).await
    }

    /// Runs `work(conn, apply)`: as a snapshot read with `apply` false for a dry run, else in a
    /// write transaction with `apply` true (the collector's passes, which a dry run only reports).
    async fn read_or_write<T: Send + 'static>(
        &self,
        dry_run: bool,
        mut work: impl FnMut(&mut Conn, bool) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if dry_run {
            self.read(move |c| work(c, false)).await
        } else {
            self.write(move |c| work(c, true)).await
        }
    }

    /// (repository, digest) of the image scans a `WHERE` clause selects, oldest update first.
    async fn scans_where(&self, clause: &'static str) -> Result<Vec<(String, Digest)>, StoreError> {
        self.read_one(move |c| {
            let sql = format!(
                "SELECT r.name, s.digest FROM image_scans s JOIN repositories r ON r.id = s.repo_id
                 {clause} ORDER BY s.updated_at"
            );
            let mut out = Vec::new();
            for row in c.query(&sql, &[])? {
                let (repo, digest): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                if let Ok(d) = Digest::parse(&digest) {
                    out.push((repo, d));
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Applies the migrations that have not run, in one transaction holding [`MIGRATION_LOCK`].
/// `READ COMMITTED` on purpose: a replica that waited for the lock must see the version the
/// holder committed (a snapshot taken before the wait would not).
fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    conn.batch("BEGIN ISOLATION LEVEL READ COMMITTED")?;
    let result = (|| {
        conn.batch(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS berth_schema (version INT NOT NULL)"
        ))?;
        let row = conn
            .client
            .query_opt("SELECT version FROM berth_schema", &[])?;
        let version = match &row {
            Some(r) => usize::try_from(r.try_get::<_, i32>(0)?).unwrap_or(0),
            None => 0,
        };
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "database schema version {version} is newer than this berth ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.batch(sql)?;
            tracing::info!(version = i + 1, "metadata schema migrated");
        }
        let latest = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        match row {
            None => conn
                .client
                .execute("INSERT INTO berth_schema (version) VALUES ($1)", &[&latest])?,
            Some(_) => conn
                .client
                .execute("UPDATE berth_schema SET version = $1", &[&latest])?,
        };
        Ok(())
    })();
    match result {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            conn.broken = conn.batch("ROLLBACK").is_err();
            Err(e)
        }
    }
}

fn repo_id(c: &mut Conn, repo: &str) -> Result<Option<i64>, StoreError> {
    c.query_opt("SELECT id FROM repositories WHERE name = $1", &[&repo])?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(Into::into)
}

/// The id of a repository a write goes into. Writes never create repositories (that is
/// `create_repository`'s, with the settings a template or the caller chose): a push that raced a
/// `DeleteRepository` must fail, not bring the repository back with default settings.
fn existing_repo(c: &mut Conn, repo: &str) -> Result<i64, StoreError> {
    repo_id(c, repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.to_owned()))
}

/// A manifest of the repository that references `digest` as a child (an index), if any.
fn referencing_manifest(
    c: &mut Conn,
    repo_id: i64,
    digest: &str,
) -> Result<Option<String>, StoreError> {
    c.query_opt(
        "SELECT manifest FROM manifest_refs WHERE repo_id = $1 AND child = $2 AND kind = 'manifest' LIMIT 1",
        &[&repo_id, &digest],
    )?
    .map(|r| r.try_get(0))
    .transpose()
    .map_err(Into::into)
}

/// Deletes a manifest and the tags pointing at it.
fn delete_manifest_rows(c: &mut Conn, repo_id: i64, digest: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM tags WHERE repo_id = $1 AND digest = $2",
        &[&repo_id, &digest],
    )?;
    c.execute(
        "DELETE FROM manifests WHERE repo_id = $1 AND digest = $2",
        &[&repo_id, &digest],
    )?;
    Ok(())
}

/// `BlobBeingDeleted` when the collector holds a tombstone for the blob.
fn not_being_deleted(c: &mut Conn, digest: &Digest) -> Result<(), StoreError> {
    let dying = c.exists(
        "SELECT 1 FROM gc_tombstones WHERE digest = $1",
        &[&digest.to_string()],
    )?;
    if dying {
        return Err(StoreError::BlobBeingDeleted(digest.clone()));
    }
    Ok(())
}

/// Bytes a repository holds: its linked blobs and its manifests, each digest once.
fn repo_usage(c: &mut Conn, id: i64) -> Result<u64, StoreError> {
    let n: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(size), 0)::BIGINT FROM blobs WHERE digest IN
             (SELECT digest FROM repo_blobs WHERE repo_id = $1
              UNION SELECT digest FROM manifests WHERE repo_id = $1)",
            &[&id],
        )?
        .try_get(0)?;
    Ok(to_u64(n))
}

fn registry_usage(c: &mut Conn) -> Result<u64, StoreError> {
    let n: i64 = c
        .query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM blobs", &[])?
        .try_get(0)?;
    Ok(to_u64(n))
}

/// `QuotaExceeded` if `size` more bytes would pass the registry's quota `limit` (with
/// `any_room`, also when it is already full).
fn check_registry_quota(
    c: &mut Conn,
    limit: u64,
    size: u64,
    any_room: bool,
) -> Result<(), StoreError> {
    let usage = registry_usage(c)?;
    if usage.saturating_add(size) > limit || (any_room && usage >= limit) {
        return Err(StoreError::QuotaExceeded {
            scope: "registry".into(),
            limit,
            usage,
            size,
        });
    }
    Ok(())
}

/// Fails with `QuotaExceeded` if adding `size` bytes of `digest` to the repository would pass
/// its quota (its own, else `quota.repository`). A digest the repository already holds adds
/// nothing; with no digest, it asks whether there is any room left.
fn check_repo_quota(
    c: &mut Conn,
    id: i64,
    repo: &str,
    digest: Option<&str>,
    size: u64,
    quota: Quota,
) -> Result<(), StoreError> {
    let own: Option<i64> = c
        .query_one("SELECT quota_bytes FROM repositories WHERE id = $1", &[&id])?
        .try_get(0)?;
    let Some(limit) = own.map(to_u64).or(quota.repository) else {
        return Ok(());
    };
    if let Some(d) = digest {
        let held = c.exists(
            "SELECT 1 FROM repo_blobs WHERE repo_id = $1 AND digest = $2
             UNION ALL SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2",
            &[&id, &d],
        )?;
        if held {
            return Ok(());
        }
    }
    let usage = repo_usage(c, id)?;
    let over = match digest {
        Some(_) => usage.saturating_add(size) > limit,
        None => usage.saturating_add(size) > limit || usage >= limit,
    };
    if over {
        return Err(StoreError::QuotaExceeded {
            scope: format!("repository {repo}"),
            limit,
            usage,
            size,
        });
    }
    Ok(())
}

/// Whether anything references a blob: a link, a manifest, or an upload committing it.
fn blob_referenced(c: &mut Conn, digest: &str) -> Result<bool, StoreError> {
    c.exists(
        "SELECT 1 FROM repo_blobs WHERE digest = $1
         UNION ALL SELECT 1 FROM manifests WHERE digest = $1
         UNION ALL SELECT 1 FROM uploads WHERE committing = $1
         LIMIT 1",
        &[&digest],
    )
}

/// Whether anything will still reference a blob once the link pass with `cutoff` ran: what a
/// dry run asks, since it removes no link.
fn blob_referenced_after_unlink(
    c: &mut Conn,
    digest: &str,
    cutoff: i64,
) -> Result<bool, StoreError> {
    c.exists(
        "SELECT 1 FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id
         WHERE rb.digest = $1
           AND (rb.touched_at >= $2
                OR EXISTS (SELECT 1 FROM manifest_refs m WHERE m.repo_id = rb.repo_id AND m.child = $1)
                OR EXISTS (SELECT 1 FROM uploads u WHERE u.repo = r.name AND u.committing = $1))
         UNION ALL SELECT 1 FROM manifests WHERE digest = $1
         UNION ALL SELECT 1 FROM uploads WHERE committing = $1
         LIMIT 1",
        &[&digest, &cutoff],
    )
}

/// Rows a garbage-collection window looks at.
const GC_WINDOW: i64 = 2000;

/// The cursor after a full window (`None` when the window was the last).
fn window_next<T>(rows: &[T], cursor: impl Fn(&T) -> String) -> Option<String> {
    (rows.len() == usize::try_from(GC_WINDOW).unwrap_or(usize::MAX))
        .then(|| rows.last().map(cursor))
        .flatten()
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn parse_digest(s: String) -> Result<Digest, StoreError> {
    Digest::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const MANIFEST_COLUMNS: &str =
    "digest, media_type, size, artifact_type, annotations, pushed_at, last_pulled_at";

/// A `manifests` row as read, before its values are validated.
struct RawManifest {
    digest: String,
    media_type: String,
    size: i64,
    artifact_type: Option<String>,
    annotations_json: Option<String>,
    pushed_at: i64,
    last_pulled_at: Option<i64>,
}

fn manifest_row(r: &Row) -> Result<RawManifest, StoreError> {
    Ok(RawManifest {
        digest: r.try_get(0)?,
        media_type: r.try_get(1)?,
        size: r.try_get(2)?,
        artifact_type: r.try_get(3)?,
        annotations_json: r.try_get(4)?,
        pushed_at: r.try_get(5)?,
        last_pulled_at: r.try_get(6)?,
    })
}

fn to_record(raw: RawManifest) -> Result<ManifestRecord, StoreError> {
    Ok(ManifestRecord {
        digest: parse_digest(raw.digest)?,
        media_type: raw.media_type,
        size: u64::try_from(raw.size).map_err(|_| StoreError::Corrupt("negative size".into()))?,
        artifact_type: raw.artifact_type,
        annotations_json: raw.annotations_json,
        pushed_at: raw.pushed_at,
        last_pulled_at: raw.last_pulled_at,
    })
}

fn size_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Fails with the first reference the repository does not have (or has with another size).
fn check_refs(c: &mut Conn, id: i64, refs: &[ManifestRef]) -> Result<(), StoreError> {
    for r in refs {
        let child = r.digest.to_string();
        match r.kind {
            RefKind::Manifest => {
                let found = c.exists(
                    "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2",
                    &[&id, &child],
                )?;
                if !found {
                    return Err(StoreError::ManifestChildUnknown(r.digest.clone()));
                }
            }
            _ => {
                let size: Option<i64> = c
                    .query_opt(
                        "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest
                         WHERE rb.repo_id = $1 AND rb.digest = $2",
                        &[&id, &child],
                    )?
                    .map(|row| row.try_get(0))
                    .transpose()?;
                match size {
                    None => return Err(StoreError::ManifestBlobUnknown(r.digest.clone())),
                    Some(s) if s != size_i64(r.size) => {
                        return Err(StoreError::SizeMismatch {
                            digest: r.digest.clone(),
                            declared: r.size,
                            actual: to_u64(s),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

const REPO_COLUMNS: &str = "name, created_at, tag_mutability, mutability_filters, scan_on_push,
    encryption_type, kms_key, policy, lifecycle_policy, lifecycle_evaluated_at, quota_bytes";

fn repo_row(r: &Row) -> Result<RepositoryRecord, StoreError> {
    let name: String = r.try_get(0)?;
    let filters: String = r.try_get(3)?;
    let mutability_filters = serde_json::from_str(&filters)
        .map_err(|e| StoreError::Corrupt(format!("mutability filters of {name}: {e}")))?;
    Ok(RepositoryRecord {
        name,
        created_at: r.try_get(1)?,
        tag_mutability: r.try_get(2)?,
        mutability_filters,
        scan_on_push: r.try_get(4)?,
        encryption_type: r.try_get(5)?,
        kms_key: r.try_get(6)?,
        policy: r.try_get(7)?,
        lifecycle_policy: r.try_get(8)?,
        lifecycle_evaluated_at: r.try_get(9)?,
        quota_bytes: r.try_get::<_, Option<i64>>(10)?.map(to_u64),
    })
}

fn read_repo(c: &mut Conn, repo: &str) -> Result<Option<RepositoryRecord>, StoreError> {
    c.query_opt(
        &format!("SELECT {REPO_COLUMNS} FROM repositories WHERE name = $1"),
        &[&repo],
    )?
    .as_ref()
    .map(repo_row)
    .transpose()
}

fn filters_json(filters: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(filters).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The sum of the blob sizes a manifest references; for an index, of its children's blobs.
fn image_size(c: &mut Conn, id: i64, digest: &str) -> Result<u64, StoreError> {
    let own: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(b.size), 0)::BIGINT FROM manifest_refs r
             JOIN blobs b ON b.digest = r.child
             WHERE r.repo_id = $1 AND r.manifest = $2 AND r.kind = 'blob'",
            &[&id, &digest],
        )?
        .try_get(0)?;
    let children: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(b.size), 0)::BIGINT FROM manifest_refs p
             JOIN manifest_refs r ON r.repo_id = p.repo_id AND r.manifest = p.child AND r.kind = 'blob'
             JOIN blobs b ON b.digest = r.child
             WHERE p.repo_id = $1 AND p.manifest = $2 AND p.kind = 'manifest'",
            &[&id, &digest],
        )?
        .try_get(0)?;
    Ok(to_u64(own.saturating_add(children)))
}

fn image_record(
    c: &mut Conn,
    id: i64,
    raw: RawManifest,
    subject: Option<String>,
) -> Result<ImageRecord, StoreError> {
    let digest = raw.digest.clone();
    let tags = c
        .query(
            "SELECT name FROM tags WHERE repo_id = $1 AND digest = $2 ORDER BY name",
            &[&id, &digest],
        )?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ImageRecord {
        size: image_size(c, id, &digest)?,
        manifest: to_record(raw)?,
        subject: subject.map(parse_digest).transpose()?,
        tags,
    })
}

fn image_row(r: &Row) -> Result<(RawManifest, Option<String>), StoreError> {
    // `subject` follows the seven `MANIFEST_COLUMNS`.
    Ok((manifest_row(r)?, r.try_get(7)?))
}

/// Strings of the rows' first column.
fn strings(rows: &[Row]) -> Result<Vec<String>, StoreError> {
    rows.iter()
        .map(|r| r.try_get(0).map_err(Into::into))
        .collect()
}

#[async_trait]
impl MetadataStore for PgMeta {
    async fn check_references(
        &self,
        repo: &RepoName,
        references: &[ManifestRef],
    ) -> Result<(), StoreError> {
        let (repo, refs) = (repo.to_string(), references.to_vec());
        self.read(move |c| match repo_id(c, &repo)? {
            Some(id) => check_refs(c, id, &refs),
            None => match refs.first() {
                Some(r) if r.kind == RefKind::Manifest => {
                    Err(StoreError::ManifestChildUnknown(r.digest.clone()))
                }
                Some(r) => Err(StoreError::ManifestBlobUnknown(r.digest.clone())),
                None => Ok(()),
            },
        })
        .await
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool, StoreError> {
        let repo = repo.to_string();
        self.read_one(move |c| Ok(repo_id(c, &repo)?.is_some()))
            .await
    }

    async fn list_repositories(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<RepoSummary>, StoreError> {
        let last = last.unwrap_or("").to_owned();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.read_one(move |c| {
            c.query(
                "SELECT name, created_at FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
                &[&last, &n],
            )?
            .iter()
            .map(|r| {
                Ok(RepoSummary {
                    name: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn blob_in_repo(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read_one(move |c| {
            let size: Option<i64> = c
                .query_opt(
                    "SELECT b.size FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id
                     JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest = $2",
                    &[&repo, &digest],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            Ok(size.and_then(|s| u64::try_from(s).ok()))
        })
        .await
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        finished_upload: Option<&UploadId>,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let (repo, d) = (repo.to_string(), digest.clone());
        let upload = finished_upload.map(|u| u.to_string());
        self.write(move |c| {
            let digest = d.to_string();
            if let Some(id) = &upload {
                c.execute("DELETE FROM uploads WHERE id = $1", &[id])?;
            }
            let id = existing_repo(c, &repo)?;
            not_being_deleted(c, &d)?;
            check_repo_quota(c, id, &repo, Some(&digest), size, quota)?;
            let now = now_millis();
            c.execute(
                "INSERT INTO blobs (digest, size, created_at, touched_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
                &[&digest, &size_i64(size), &now],
            )?;
            c.execute(
                "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
                &[&id, &digest, &now],
            )?;
            Ok(())
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        let (repo, d) = (repo.to_string(), digest.clone());
        self.write(move |c| {
            let digest = d.to_string();
            let Some(id) = repo_id(c, &repo)? else {
                return Err(StoreError::BlobNotFound(d.clone()));
            };
            let user: Option<String> = c
                .query_opt(
                    "SELECT manifest FROM manifest_refs WHERE repo_id = $1 AND child = $2 AND kind = 'blob' LIMIT 1",
                    &[&id, &digest],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            if let Some(by) = user {
                return Err(StoreError::InUse {
                    digest: d.clone(),
                    by,
                });
            }
            let n = c.execute(
                "DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2",
                &[&id, &digest],
            )?;
            if n == 0 {
                return Err(StoreError::BlobNotFound(d.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        rule: TagRule,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let (repo, m, tag) = (
            repo.to_string(),
            manifest.clone(),
            tag.map(|t| t.to_string()),
        );
        self.write(move |c| {
            let id = existing_repo(c, &repo)?;
            let digest = m.digest.to_string();
            check_refs(c, id, &m.references)?;
            not_being_deleted(c, &m.digest)?;
            check_repo_quota(c, id, &repo, Some(&digest), m.size, quota)?;
            let immutable = match &tag {
                Some(tag) => {
                    let row = c.query_one(
                        "SELECT tag_mutability, mutability_filters FROM repositories WHERE id = $1",
                        &[&id],
                    )?;
                    let (mutability, filters): (String, String) =
                        (row.try_get(0)?, row.try_get(1)?);
                    let filters: Vec<String> = serde_json::from_str(&filters).map_err(|e| {
                        StoreError::Corrupt(format!("mutability filters of {repo}: {e}"))
                    })?;
                    rule(&mutability, &filters, tag)
                }
                None => false,
            };
            if let (Some(tag), true) = (&tag, immutable) {
                let current: Option<String> = c
                    .query_opt(
                        "SELECT digest FROM tags WHERE repo_id = $1 AND name = $2",
                        &[&id, tag],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if let Some(current) = current.filter(|c| *c != digest) {
                    return Err(StoreError::TagImmutable {
                        tag: tag.clone(),
                        digest: current,
                    });
                }
            }
            let now = now_millis();
            c.execute(
                "INSERT INTO blobs (digest, size, created_at, touched_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
                &[&digest, &size_i64(m.size), &now],
            )?;
            let subject = m.subject.as_ref().map(ToString::to_string);
            let inserted = c.execute(
                "INSERT INTO manifests
                 (repo_id, digest, media_type, size, artifact_type, subject, annotations, pushed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (repo_id, digest) DO NOTHING",
                &[
                    &id,
                    &digest,
                    &m.media_type,
                    &size_i64(m.size),
                    &m.artifact_type,
                    &subject,
                    &m.annotations_json,
                    &now,
                ],
            )?;
            if inserted > 0 {
                for r in &m.references {
                    c.execute(
                        "INSERT INTO manifest_refs (repo_id, manifest, child, kind) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING",
                        &[&id, &digest, &r.digest.to_string(), &r.kind.as_str()],
                    )?;
                }
            }
            if let Some(tag) = &tag {
                c.execute(
                    "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                    &[&id, tag, &digest, &now],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read_one(move |c| {
            c.query_opt(
                &format!(
                    "SELECT {MANIFEST_COLUMNS} FROM manifests
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2"
                ),
                &[&repo, &digest],
            )?
            .as_ref()
            .map(|r| to_record(manifest_row(r)?))
            .transpose()
        })
        .await
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.read_one(move |c| {
            c.query_opt(
                "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations, m.pushed_at,
                        m.last_pulled_at
                 FROM tags t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                 WHERE t.repo_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2",
                &[&repo, &tag],
            )?
            .as_ref()
            .map(|r| to_record(manifest_row(r)?))
            .transpose()
        })
        .await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        let (repo, d) = (repo.to_string(), digest.clone());
        self.write(move |c| {
            let digest = d.to_string();
            let unknown = || StoreError::ManifestUnknown(d.to_string());
            let id = repo_id(c, &repo)?.ok_or_else(unknown)?;
            let exists = c.exists(
                "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2",
                &[&id, &digest],
            )?;
            if !exists {
                return Err(unknown());
            }
            if let Some(by) = referencing_manifest(c, id, &digest)? {
                return Err(StoreError::InUse {
                    digest: d.clone(),
                    by,
                });
            }
            delete_manifest_rows(c, id, &digest)
        })
        .await
    }

    async fn untag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.write(move |c| {
            let unknown = || StoreError::ManifestUnknown(tag.clone());
            let id = repo_id(c, &repo)?.ok_or_else(unknown)?;
            let digest: String = c
                .query_opt(
                    "SELECT digest FROM tags WHERE repo_id = $1 AND name = $2",
                    &[&id, &tag],
                )?
                .map(|r| r.try_get(0))
                .transpose()?
                .ok_or_else(unknown)?;
            c.execute(
                "DELETE FROM tags WHERE repo_id = $1 AND name = $2",
                &[&id, &tag],
            )?;
            let tagged = c.exists(
                "SELECT 1 FROM tags WHERE repo_id = $1 AND digest = $2",
                &[&id, &digest],
            )?;
            if tagged || referencing_manifest(c, id, &digest)?.is_some() {
                return Ok(false);
            }
            delete_manifest_rows(c, id, &digest)?;
            Ok(true)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<(), StoreError> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM tags WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2",
                &[&repo, &tag],
            )?;
            if n == 0 {
                return Err(StoreError::ManifestUnknown(tag.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn record_pull(
        &self,
        repo: &RepoName,
        digest: &Digest,
        at: i64,
    ) -> Result<(), StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE manifests SET last_pulled_at = $3
                 WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2
                   AND (last_pulled_at IS NULL OR last_pulled_at < $3)",
                &[&repo, &digest, &at],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<TagRecord>, StoreError> {
        let (repo, last) = (repo.to_string(), last.unwrap_or("").to_owned());
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.read(move |c| {
            let id = repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            c.query(
                "SELECT name, digest FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                &[&id, &last, &n],
            )?
            .iter()
            .map(|r| {
                Ok(TagRecord {
                    name: r.try_get(0)?,
                    digest: parse_digest(r.try_get(1)?)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        let (repo, subject) = (repo.to_string(), subject.to_string());
        let artifact_type = artifact_type.map(str::to_owned);
        self.read_one(move |c| {
            c.query(
                &format!(
                    "SELECT {MANIFEST_COLUMNS} FROM manifests
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND subject = $2
                       AND ($3::TEXT IS NULL OR artifact_type = $3::TEXT)
                     ORDER BY pushed_at, digest"
                ),
                &[&repo, &subject, &artifact_type],
            )?
            .iter()
            .map(|r| to_record(manifest_row(r)?))
            .collect()
        })
        .await
    }

    async fn create_repository(
        &self,
        repo: &RepoName,
        settings: &NewRepository,
    ) -> Result<RepositoryRecord, StoreError> {
        let (repo, st) = (repo.to_string(), settings.clone());
        self.write(move |c| {
            if repo_id(c, &repo)?.is_some() {
                return Err(StoreError::RepositoryExists(repo.clone()));
            }
            let id: i64 = c
                .query_one(
                    "INSERT INTO repositories (name, created_at, tag_mutability, mutability_filters,
                     scan_on_push, encryption_type, kms_key, policy, lifecycle_policy)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    &[
                        &repo,
                        &now_millis(),
                        &st.tag_mutability,
                        &filters_json(&st.mutability_filters)?,
                        &st.scan_on_push,
                        &st.encryption_type,
                        &st.kms_key,
                        &st.policy,
                        &st.lifecycle_policy,
                    ],
                )?
                .try_get(0)?;
            for (k, v) in &st.resource_tags {
                c.execute(
                    "INSERT INTO resource_tags (repo_id, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (repo_id, key) DO UPDATE SET value = excluded.value",
                    &[&id, k, v],
                )?;
            }
            read_repo(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))
        })
        .await
    }

    async fn repository(&self, repo: &RepoName) -> Result<Option<RepositoryRecord>, StoreError> {
        let repo = repo.to_string();
        self.read_one(move |c| read_repo(c, &repo)).await
    }

    async fn repository_policies(&self) -> Result<Vec<String>, StoreError> {
        self.read_one(move |c| {
            strings(&c.query(
                "SELECT DISTINCT policy FROM repositories WHERE policy IS NOT NULL",
                &[],
            )?)
        })
        .await
    }

    async fn repositories(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<RepositoryRecord>, StoreError> {
        let last = last.unwrap_or("").to_owned();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.read_one(move |c| {
            c.query(
                &format!(
                    "SELECT {REPO_COLUMNS} FROM repositories WHERE name > $1 ORDER BY name LIMIT $2"
                ),
                &[&last, &n],
            )?
            .iter()
            .map(repo_row)
            .collect()
        })
        .await
    }

    async fn update_repository(
        &self,
        repo: &RepoName,
        update: RepositoryUpdate,
    ) -> Result<RepositoryRecord, StoreError> {
        let repo = repo.to_string();
        self.write(move |c| {
            let n = match &update {
                RepositoryUpdate::TagMutability { mutability, filters } => c.execute(
                    "UPDATE repositories SET tag_mutability = $2, mutability_filters = $3 WHERE name = $1",
                    &[&repo, mutability, &filters_json(filters)?],
                )?,
                RepositoryUpdate::ScanOnPush(on) => c.execute(
                    "UPDATE repositories SET scan_on_push = $2 WHERE name = $1",
                    &[&repo, on],
                )?,
                RepositoryUpdate::Policy(p) => c.execute(
                    "UPDATE repositories SET policy = $2 WHERE name = $1",
                    &[&repo, p],
                )?,
                RepositoryUpdate::LifecyclePolicy(p) => c.execute(
                    "UPDATE repositories SET lifecycle_policy = $2, lifecycle_evaluated_at = NULL
                     WHERE name = $1",
                    &[&repo, p],
                )?,
                RepositoryUpdate::Quota(q) => c.execute(
                    "UPDATE repositories SET quota_bytes = $2 WHERE name = $1",
                    &[&repo, &q.map(size_i64)],
                )?,
            };
            if n == 0 {
                return Err(StoreError::RepositoryUnknown(repo.clone()));
            }
            read_repo(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))
        })
        .await
    }

    async fn delete_repository(
        &self,
        repo: &RepoName,
        force: bool,
    ) -> Result<(RepositoryRecord, u64), StoreError> {
        let repo = repo.to_string();
        self.write(move |c| {
            let unknown = || StoreError::RepositoryUnknown(repo.clone());
            let rec = read_repo(c, &repo)?.ok_or_else(unknown)?;
            let id = repo_id(c, &repo)?.ok_or_else(unknown)?;
            let count: i64 = c
                .query_one("SELECT COUNT(*) FROM manifests WHERE repo_id = $1", &[&id])?
                .try_get(0)?;
            if count > 0 && !force {
                return Err(StoreError::RepositoryNotEmpty(repo.clone()));
            }
            c.execute("DELETE FROM tags WHERE repo_id = $1", &[&id])?;
            c.execute("DELETE FROM manifest_refs WHERE repo_id = $1", &[&id])?;
            c.execute("DELETE FROM manifests WHERE repo_id = $1", &[&id])?;
            c.execute("DELETE FROM uploads WHERE repo = $1", &[&repo])?;
            c.execute("DELETE FROM repositories WHERE id = $1", &[&id])?;
            Ok((rec, to_u64(count)))
        })
        .await
    }

    async fn resource_tags(&self, repo: &RepoName) -> Result<Vec<(String, String)>, StoreError> {
        let repo = repo.to_string();
        self.read(move |c| {
            let id =
                repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            c.query(
                "SELECT key, value FROM resource_tags WHERE repo_id = $1 ORDER BY key",
                &[&id],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
        .await
    }

    async fn update_resource_tags(
        &self,
        repo: &RepoName,
        set: &[(String, String)],
        remove: &[String],
    ) -> Result<usize, StoreError> {
        let (repo, set, remove) = (repo.to_string(), set.to_vec(), remove.to_vec());
        self.write(move |c| {
            let id =
                repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            for (k, v) in &set {
                c.execute(
                    "INSERT INTO resource_tags (repo_id, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (repo_id, key) DO UPDATE SET value = excluded.value",
                    &[&id, k, v],
                )?;
            }
            for k in &remove {
                c.execute(
                    "DELETE FROM resource_tags WHERE repo_id = $1 AND key = $2",
                    &[&id, k],
                )?;
            }
            let n: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM resource_tags WHERE repo_id = $1",
                    &[&id],
                )?
                .try_get(0)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn images(
        &self,
        repo: &RepoName,
        filter: TagFilter,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let (repo, after) = (
            repo.to_string(),
            after.map(|d| d.to_string()).unwrap_or_default(),
        );
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let filter: i32 = match filter {
            TagFilter::Tagged => 1,
            TagFilter::Untagged => 2,
            _ => 0,
        };
        self.read(move |c| {
            let id = repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {MANIFEST_COLUMNS}, subject FROM manifests m
                         WHERE repo_id = $1 AND digest > $2
                           AND ($3::INT4 = 0
                                OR ($3::INT4 = 1 AND EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest))
                                OR ($3::INT4 = 2 AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)))
                         ORDER BY digest LIMIT $4"
                    ),
                    &[&id, &after, &filter, &n],
                )?
                .iter()
                .map(image_row)
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(raw, subject)| image_record(c, id, raw, subject))
                .collect()
        })
        .await
    }

    async fn image(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageRecord>, StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(None);
            };
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {MANIFEST_COLUMNS}, subject FROM manifests WHERE repo_id = $1 AND digest = $2"
                    ),
                    &[&id, &digest],
                )?
                .as_ref()
                .map(image_row)
                .transpose()?;
            row.map(|(raw, subject)| image_record(c, id, raw, subject))
                .transpose()
        })
        .await
    }

    async fn create_upload(
        &self,
        id: &UploadId,
        repo: &RepoName,
        limits: UploadLimits,
    ) -> Result<(), StoreError> {
        let (id, repo) = (id.to_string(), repo.to_string());
        self.write_with(true, move |c| {
            existing_repo(c, &repo)?;
            let limit = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            // Counting stops at the limit: the check costs the same however many are open.
            let in_repo: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE repo = $1 LIMIT $2) AS open",
                    &[&repo, &limit(limits.per_repository)],
                )?
                .try_get(0)?;
            let in_repo = to_u64(in_repo);
            if in_repo >= limits.per_repository {
                return Err(StoreError::TooManyUploads {
                    scope: format!("in repository {repo}"),
                    open: in_repo,
                });
            }
            let total: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM uploads LIMIT $1) AS open",
                    &[&limit(limits.total)],
                )?
                .try_get(0)?;
            let total = to_u64(total);
            if total >= limits.total {
                return Err(StoreError::TooManyUploads {
                    scope: "in the registry".into(),
                    open: total,
                });
            }
            c.execute(
                "INSERT INTO uploads (id, repo, created_at) VALUES ($1, $2, $3)",
                &[&id, &repo, &now_millis()],
            )?;
            Ok(())
        })
        .await
    }

    async fn record_upload_part(
        &self,
        id: &UploadId,
        offset: u64,
        len: u64,
        min_len: u64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let [offset, len, min_len] = [offset, len, min_len].map(size_i64);
        self.write(move |c| {
            // The previous part landed as far as `offset`: what landed of it (nothing when it
            // starts there) is a short part ending at `offset` if below the minimum.
            c.execute(
                "UPDATE uploads
                 SET short_part_end = CASE
                         WHEN last_part_offset IS NOT NULL AND $2 > last_part_offset
                              AND $2 - last_part_offset < $4 THEN $2
                         ELSE short_part_end END,
                     last_part_offset = $2,
                     last_part = $3
                 WHERE id = $1",
                &[&id, &offset, &len, &min_len],
            )?;
            Ok(())
        })
        .await
    }

    async fn mark_upload_committing(
        &self,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let (id, digest) = (id.to_string(), digest.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE uploads SET committing = $2 WHERE id = $1",
                &[&id, &digest],
            )?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        let id = id.clone();
        self.read_one(move |c| {
            let Some(r) = c.query_opt(
                "SELECT repo, created_at, short_part_end, committing FROM uploads WHERE id = $1",
                &[&id.as_str()],
            )?
            else {
                return Ok(None);
            };
            let repo: String = r.try_get(0)?;
            let short_end: Option<i64> = r.try_get(2)?;
            let committing: Option<String> = r.try_get(3)?;
            Ok(Some(UploadRecord {
                repo: RepoName::parse(&repo).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                id: id.clone(),
                created_at: r.try_get(1)?,
                short_part_end: short_end.map(to_u64),
                committing: committing.map(parse_digest).transpose()?,
            }))
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write_with(true, move |c| {
            c.execute("DELETE FROM uploads WHERE id = $1", &[&id])?;
            Ok(())
        })
        .await
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<UploadId>, StoreError> {
        self.read_one(move |c| {
            let ids =
                strings(&c.query("SELECT id FROM uploads WHERE created_at < $1", &[&before])?)?;
            Ok(ids.iter().filter_map(|id| UploadId::parse(id)).collect())
        })
        .await
    }

    async fn usage(&self, repo: &RepoName) -> Result<Usage, StoreError> {
        let repo = repo.to_string();
        self.read(move |c| {
            let id =
                repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            Ok(Usage {
                repository: repo_usage(c, id)?,
                registry: registry_usage(c)?,
            })
        })
        .await
    }

    async fn storage_usage(&self, top: usize) -> Result<StorageUsage, StoreError> {
        let top = i64::try_from(top).unwrap_or(i64::MAX);
        self.read(move |c| {
            let repositories: i64 = c
                .query_one("SELECT COUNT(*) FROM repositories", &[])?
                .try_get(0)?;
            let largest = c
                .query(
                    "SELECT r.name, SUM(b.size)::BIGINT AS used FROM
                       (SELECT repo_id, digest FROM repo_blobs
                        UNION SELECT repo_id, digest FROM manifests) AS x
                     JOIN blobs AS b ON b.digest = x.digest
                     JOIN repositories AS r ON r.id = x.repo_id
                     GROUP BY r.id, r.name ORDER BY used DESC, r.name LIMIT $1",
                    &[&top],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, to_u64(r.try_get(1)?))))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(StorageUsage {
                registry: registry_usage(c)?,
                repositories: to_u64(repositories),
                largest,
            })
        })
        .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.read_one(|c| {
            c.exists("SELECT 1 FROM repositories LIMIT 1", &[])?;
            Ok(())
        })
        .await
    }

    async fn check_quota(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
        size: u64,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let (repo, digest) = (repo.to_string(), digest.map(ToString::to_string));
        self.read(move |c| {
            let id =
                repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            check_repo_quota(c, id, &repo, digest.as_deref(), size, quota)?;
            if let Some(limit) = quota.registry {
                let known = match &digest {
                    Some(d) => c.exists("SELECT 1 FROM blobs WHERE digest = $1", &[d])?,
                    None => false,
                };
                if !known {
                    check_registry_quota(c, limit, size, true)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn lifecycle_snapshot(
        &self,
        repo: &RepoName,
    ) -> Result<Vec<SnapshotManifest>, StoreError> {
        let repo = repo.to_string();
        self.read(move |c| {
            let id = repo_id(c, &repo)?.ok_or_else(|| StoreError::RepositoryUnknown(repo.clone()))?;
            let mut out = Vec::new();
            let mut index = HashMap::new();
            for r in c.query(
                "SELECT digest, pushed_at, last_pulled_at, subject FROM manifests WHERE repo_id = $1",
                &[&id],
            )? {
                let digest: String = r.try_get(0)?;
                let subject: Option<String> = r.try_get(3)?;
                index.insert(digest.clone(), out.len());
                out.push(SnapshotManifest {
                    digest: parse_digest(digest)?,
                    tags: Vec::new(),
                    pushed_at: r.try_get(1)?,
                    last_pulled_at: r.try_get(2)?,
                    subject: subject.map(parse_digest).transpose()?,
                    children: Vec::new(),
                });
            }
            for r in c.query(
                "SELECT name, digest FROM tags WHERE repo_id = $1 ORDER BY name",
                &[&id],
            )? {
                let (name, digest): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                if let Some(m) = index.get(&digest).and_then(|&i| out.get_mut(i)) {
                    m.tags.push(name);
                }
            }
            for r in c.query(
                "SELECT manifest, child FROM manifest_refs WHERE repo_id = $1 AND kind = 'manifest'",
                &[&id],
            )? {
                let (parent, child): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                if let Some(m) = index.get(&parent).and_then(|&i| out.get_mut(i)) {
                    m.children.push(parse_digest(child)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn expire_images(
        &self,
        repo: &RepoName,
        groups: &[ExpiryGroup],
        evaluated_at: i64,
    ) -> Result<Vec<Digest>, StoreError> {
        let (repo, groups) = (repo.to_string(), groups.to_vec());
        self.write(move |c| {
            let id = existing_repo(c, &repo)?;
            let exists = |c: &mut Conn, d: &str| -> Result<bool, StoreError> {
                c.exists(
                    "SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2",
                    &[&id, &d],
                )
            };
            let tags_of = |c: &mut Conn, d: &str| -> Result<Vec<String>, StoreError> {
                strings(&c.query(
                    "SELECT name FROM tags WHERE repo_id = $1 AND digest = $2 ORDER BY name",
                    &[&id, &d],
                )?)
            };
            let mut deleted = Vec::new();
            for g in &groups {
                let root = g.root.to_string();
                let mut expected = g.root_tags.clone();
                expected.sort();
                if !exists(c, &root)?
                    || tags_of(c, &root)? != expected
                    || referencing_manifest(c, id, &root)?.is_some()
                {
                    continue;
                }
                delete_manifest_rows(c, id, &root)?;
                deleted.push(g.root.clone());
                for dep in &g.dependents {
                    let d = dep.to_string();
                    if exists(c, &d)?
                        && tags_of(c, &d)?.is_empty()
                        && referencing_manifest(c, id, &d)?.is_none()
                    {
                        delete_manifest_rows(c, id, &d)?;
                        deleted.push(dep.clone());
                    }
                }
            }
            c.execute(
                "UPDATE repositories SET lifecycle_evaluated_at = $2 WHERE id = $1",
                &[&id, &evaluated_at],
            )?;
            Ok(deleted)
        })
        .await
    }

    async fn put_lifecycle_preview(
        &self,
        repo: &RepoName,
        preview: &LifecyclePreview,
    ) -> Result<(), StoreError> {
        let (repo, p) = (repo.to_string(), preview.clone());
        self.write_with(true, move |c| {
            let id = existing_repo(c, &repo)?;
            c.execute(
                "INSERT INTO lifecycle_previews (repo_id, policy, status, results, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (repo_id) DO UPDATE SET policy = excluded.policy,
                   status = excluded.status, results = excluded.results,
                   created_at = excluded.created_at",
                &[&id, &p.policy, &p.status, &p.results, &p.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn lifecycle_preview(
        &self,
        repo: &RepoName,
    ) -> Result<Option<LifecyclePreview>, StoreError> {
        let repo = repo.to_string();
        self.read_one(move |c| {
            let Some(r) = c.query_opt(
                "SELECT policy, status, results, created_at FROM lifecycle_previews
                 WHERE repo_id = (SELECT id FROM repositories WHERE name = $1)",
                &[&repo],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(LifecyclePreview {
                policy: r.try_get(0)?,
                status: r.try_get(1)?,
                results: r.try_get(2)?,
                created_at: r.try_get(3)?,
            }))
        })
        .await
    }

    async fn put_scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
        scan: &ScanRecord,
    ) -> Result<(), StoreError> {
        let (repo, digest, s) = (repo.to_string(), digest.to_string(), scan.clone());
        self.write_with(true, move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(());
            };
            // Only an image the repository holds has a scan (a foreign key drops it with the
            // image).
            c.execute(
                "INSERT INTO image_scans
                     (repo_id, digest, status, description, updated_at, completed_at,
                      source_updated_at, findings)
                 SELECT $1::BIGINT, $2::TEXT, $3::TEXT, $4::TEXT, $5::BIGINT, $6::BIGINT,
                        $7::BIGINT, $8::TEXT
                 WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2)
                 ON CONFLICT (repo_id, digest) DO UPDATE SET status = excluded.status,
                   description = excluded.description, updated_at = excluded.updated_at,
                   completed_at = excluded.completed_at,
                   source_updated_at = excluded.source_updated_at, findings = excluded.findings",
                &[
                    &id,
                    &digest,
                    &s.status,
                    &s.description,
                    &s.updated_at,
                    &s.completed_at,
                    &s.source_updated_at,
                    &s.findings,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ScanRecord>, StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read_one(move |c| {
            let Some(r) = c.query_opt(
                "SELECT status, description, updated_at, completed_at, source_updated_at, findings
                 FROM image_scans
                 WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
                &[&repo, &digest],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(ScanRecord {
                status: r.try_get(0)?,
                description: r.try_get(1)?,
                updated_at: r.try_get(2)?,
                completed_at: r.try_get(3)?,
                source_updated_at: r.try_get(4)?,
                findings: r.try_get(5)?,
            }))
        })
        .await
    }

    async fn scans_in_progress(&self) -> Result<Vec<(String, Digest)>, StoreError> {
        self.scans_where("WHERE s.status = 'IN_PROGRESS'").await
    }

    async fn scanned_images(&self) -> Result<Vec<(String, Digest)>, StoreError> {
        self.scans_where("").await
    }

    async fn lifecycle_repositories(&self) -> Result<Vec<String>, StoreError> {
        self.read_one(move |c| {
            strings(&c.query(
                "SELECT name FROM repositories WHERE lifecycle_policy IS NOT NULL ORDER BY name",
                &[],
            )?)
        })
        .await
    }

    async fn pin_blob(
        &self,
        digest: &Digest,
        size: u64,
        registry_quota: Option<u64>,
    ) -> Result<(), StoreError> {
        let d = digest.clone();
        // Not acknowledged content: the link or manifest that follows is committed durably,
        // and WAL order makes this row durable with it.
        self.write_with(true, move |c| {
            let digest = d.to_string();
            not_being_deleted(c, &d)?;
            let now = now_millis();
            let n = c.execute(
                "UPDATE blobs SET touched_at = $2 WHERE digest = $1",
                &[&digest, &now],
            )?;
            if n > 0 {
                return Ok(());
            }
            if let Some(limit) = registry_quota {
                check_registry_quota(c, limit, size, false)?;
            }
            c.execute(
                "INSERT INTO blobs (digest, size, created_at, touched_at) VALUES ($1, $2, $3, $3)",
                &[&digest, &size_i64(size), &now],
            )?;
            Ok(())
        })
        .await
    }

    async fn blob_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(u64, i64)>, StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read_one(move |c| {
            let Some(r) = c.query_opt(
                "SELECT b.size, rb.touched_at FROM repo_blobs rb
                 JOIN repositories r ON r.id = rb.repo_id
                 JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest = $2",
                &[&repo, &digest],
            )?
            else {
                return Ok(None);
            };
            Ok(Some((to_u64(r.try_get(0)?), r.try_get(1)?)))
        })
        .await
    }

    async fn touch_link(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write_with(true, move |c| {
            let now = now_millis();
            c.execute(
                "UPDATE repo_blobs SET touched_at = $3
                 WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
                &[&repo, &digest, &now],
            )?;
            c.execute(
                "UPDATE blobs SET touched_at = $2 WHERE digest = $1",
                &[&digest, &now],
            )?;
            Ok(())
        })
        .await
    }

    async fn gc_unlink_stale(
        &self,
        cutoff: i64,
        cursor: Option<&str>,
        dry_run: bool,
    ) -> Result<GcPage, StoreError> {
        let (after_id, after_digest) = match cursor.and_then(|c| c.split_once(':')) {
            Some((id, d)) => (id.parse::<i64>().unwrap_or(i64::MAX), d.to_owned()),
            None => (i64::MIN, String::new()),
        };
        let work = move |c: &mut Conn, delete: bool| -> Result<GcPage, StoreError> {
            let rows = c
                .query(
                    "SELECT rb.repo_id, rb.digest, rb.touched_at, r.name, b.size
                     FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id
                     JOIN blobs b ON b.digest = rb.digest
                     WHERE (rb.repo_id, rb.digest) > ($1, $2)
                     ORDER BY rb.repo_id, rb.digest LIMIT $3",
                    &[&after_id, &after_digest, &GC_WINDOW],
                )?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, i64>(0)?,
                        r.try_get::<_, String>(1)?,
                        r.try_get::<_, i64>(2)?,
                        r.try_get::<_, String>(3)?,
                        r.try_get::<_, i64>(4)?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = window_next(&rows, |(id, d, ..)| format!("{id}:{d}"));
            let mut items = Vec::new();
            for (id, digest, touched, name, size) in rows {
                if touched >= cutoff {
                    continue;
                }
                let used = c.exists(
                    "SELECT 1 FROM manifest_refs WHERE repo_id = $1 AND child = $2
                     UNION ALL SELECT 1 FROM uploads WHERE repo = $3 AND committing = $2
                     LIMIT 1",
                    &[&id, &digest, &name],
                )?;
                if used {
                    continue;
                }
                if delete {
                    c.execute(
                        "DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2",
                        &[&id, &digest],
                    )?;
                }
                items.push(GcBlob {
                    repo: Some(name),
                    digest: parse_digest(digest)?,
                    size: to_u64(size),
                });
            }
            Ok(GcPage { items, next })
        };
        self.read_or_write(dry_run, work).await
    }

    async fn gc_claim_blobs(
        &self,
        cutoff: i64,
        cursor: Option<&str>,
        dry_run: bool,
    ) -> Result<GcPage, StoreError> {
        let after = cursor.unwrap_or("").to_owned();
        let work = move |c: &mut Conn, claim: bool| -> Result<GcPage, StoreError> {
            let rows = c
                .query(
                    "SELECT digest, size, touched_at FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
                    &[&after, &GC_WINDOW],
                )?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, String>(0)?,
                        r.try_get::<_, i64>(1)?,
                        r.try_get::<_, i64>(2)?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = window_next(&rows, |(d, ..)| d.clone());
            let mut items = Vec::new();
            let now = now_millis();
            for (digest, size, touched) in rows {
                if touched >= cutoff {
                    continue;
                }
                let referenced = if claim {
                    blob_referenced(c, &digest)?
                } else {
                    blob_referenced_after_unlink(c, &digest, cutoff)?
                };
                if referenced {
                    continue;
                }
                if claim {
                    c.execute("DELETE FROM blobs WHERE digest = $1", &[&digest])?;
                    c.execute(
                        "INSERT INTO gc_tombstones (digest, created_at) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING",
                        &[&digest, &now],
                    )?;
                }
                items.push(GcBlob {
                    repo: None,
                    digest: parse_digest(digest)?,
                    size: to_u64(size),
                });
            }
            Ok(GcPage { items, next })
        };
        self.read_or_write(dry_run, work).await
    }

    async fn gc_claim_orphans(
        &self,
        digests: &[Digest],
        dry_run: bool,
    ) -> Result<Vec<Digest>, StoreError> {
        let digests = digests.to_vec();
        let work = move |c: &mut Conn, claim: bool| -> Result<Vec<Digest>, StoreError> {
            let now = now_millis();
            let mut out = Vec::new();
            for d in &digests {
                let s = d.to_string();
                let known = c.exists(
                    "SELECT 1 FROM blobs WHERE digest = $1
                     UNION ALL SELECT 1 FROM gc_tombstones WHERE digest = $1",
                    &[&s],
                )?;
                // A manifest row without its blob row cannot be made by berth, but its bytes
                // must never be judged an orphan.
                if known || blob_referenced(c, &s)? {
                    continue;
                }
                if claim {
                    c.execute(
                        "INSERT INTO gc_tombstones (digest, created_at) VALUES ($1, $2)",
                        &[&s, &now],
                    )?;
                }
                out.push(d.clone());
            }
            Ok(out)
        };
        self.read_or_write(dry_run, work).await
    }

    async fn gc_tombstones(&self) -> Result<Vec<Digest>, StoreError> {
        self.read_one(move |c| {
            strings(&c.query("SELECT digest FROM gc_tombstones ORDER BY digest", &[])?)?
                .into_iter()
                .map(parse_digest)
                .collect()
        })
        .await
    }

    async fn gc_release(&self, digests: &[Digest]) -> Result<(), StoreError> {
        let digests = digests.to_vec();
        self.write(move |c| {
            for d in &digests {
                c.execute(
                    "DELETE FROM gc_tombstones WHERE digest = $1",
                    &[&d.to_string()],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let (key, holder) = (format!("lease:{name}"), holder.to_owned());
        // SERIALIZABLE makes read-then-write safe across replicas: of two racing takers, one
        // commits and the other is retried, and then sees the first one's lease.
        self.write_with(true, move |c| {
            let now = now_millis();
            let current: Option<String> = c
                .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
                .map(|r| r.try_get(0))
                .transpose()?;
            if let Some((who, until)) = current.as_deref().and_then(|v| v.split_once(' '))
                && who != holder
                && until.parse::<i64>().is_ok_and(|t| t > now)
            {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &format!("{holder} {}", now.saturating_add(ttl_ms))],
            )?;
            Ok(true)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (key, prefix) = (format!("lease:{name}"), format!("{holder} "));
        self.write_with(true, move |c| {
            c.execute(
                "DELETE FROM settings WHERE key = $1 AND starts_with(value, $2)",
                &[&key, &prefix],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_replication_jobs(&self, jobs: &[NewReplicationJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.to_vec();
        self.write(move |c| {
            let now = now_millis();
            for j in &jobs {
                c.execute(
                    "INSERT INTO replication_jobs
                       (repository, digest, tag, destination, status, next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, 'PENDING', $5, $5, $5)",
                    &[
                        &j.repository,
                        &j.digest.to_string(),
                        &j.tag,
                        &j.destination,
                        &now,
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn next_replication_jobs(&self) -> Result<Vec<ReplicationJob>, StoreError> {
        self.read_one(|c| {
            c.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM replication_jobs WHERE id IN
                       (SELECT MIN(id) FROM replication_jobs WHERE status = 'PENDING' GROUP BY destination)
                     ORDER BY id"
                ),
                &[],
            )?
            .iter()
            .map(job_row)
            .collect()
        })
        .await
    }

    async fn finish_replication_job(
        &self,
        id: i64,
        outcome: &JobOutcome,
    ) -> Result<(), StoreError> {
        let outcome = outcome.clone();
        self.write_with(true, move |c| {
            let now = now_millis();
            let (status, error, next) = match &outcome {
                JobOutcome::Complete => ("COMPLETE", None, now),
                JobOutcome::Failed(e) => ("FAILED", Some(e.as_str()), now),
                JobOutcome::Retry { error, at } => ("PENDING", Some(error.as_str()), *at),
            };
            c.execute(
                "UPDATE replication_jobs SET status = $2, last_error = $3, next_attempt_at = $4,
                   attempts = attempts + 1, updated_at = $5 WHERE id = $1",
                &[&id, &status, &error, &next, &now],
            )?;
            Ok(())
        })
        .await
    }

    async fn replication_jobs_of(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<ReplicationJob>, StoreError> {
        let (repository, digest) = (repository.to_owned(), digest.to_string());
        self.read_one(move |c| {
            c.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM replication_jobs WHERE repository = $1 AND digest = $2
                     ORDER BY id"
                ),
                &[&repository, &digest],
            )?
            .iter()
            .map(job_row)
            .collect()
        })
        .await
    }

    async fn prune_replication_jobs(&self, before: i64) -> Result<u64, StoreError> {
        self.write_with(true, move |c| {
            c.execute(
                "DELETE FROM replication_jobs WHERE status <> 'PENDING' AND updated_at < $1",
                &[&before],
            )
        })
        .await
    }
}

const JOB_COLUMNS: &str = "id, repository, digest, tag, destination, status, attempts, \
    next_attempt_at, last_error, created_at, updated_at";

/// A `replication_jobs` row; a digest that does not parse is a corrupt row.
fn job_row(r: &Row) -> Result<ReplicationJob, StoreError> {
    let digest: String = r.try_get(2)?;
    let Ok(digest) = Digest::parse(&digest) else {
        return Err(StoreError::Corrupt(format!(
            "replication job digest {digest:?}"
        )));
    };
    Ok(ReplicationJob {
        id: r.try_get(0)?,
        repository: r.try_get(1)?,
        digest,
        tag: r.try_get(3)?,
        destination: r.try_get(4)?,
        status: r.try_get(5)?,
        attempts: r.try_get(6)?,
        next_attempt_at: r.try_get(7)?,
        last_error: r.try_get(8)?,
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
    })
}
