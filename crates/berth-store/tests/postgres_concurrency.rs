//! What SQLite's single writer gives for free, checked on the PostgreSQL store across
//! connections and replicas: racing writers end in a state some serial order of them would
//! give (one lease holder, one tag target, quotas and session limits never overrun), and no
//! serialization failure reaches the caller (they are retried). Also: replicas migrating an
//! empty database at once, and connections the server dropped.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use berth_oci::{Digest, RepoName, Tag};
use berth_store::{
    MetadataStore, NewManifest, NewRepository, PgMeta, Quota, RepositoryUpdate, StoreError,
    TagFilter, UploadId, UploadLimits,
};
use futures::future::join_all;

const REPLICAS: usize = 4;
const WRITERS: usize = 8;

fn manifest(round: u8, n: u8) -> NewManifest {
    NewManifest {
        digest: Digest::sha256(&[round, n]),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 100 + u64::from(n),
        artifact_type: None,
        subject: None,
        annotations_json: None,
        references: Vec::new(),
    }
}

fn mutable(_: &str, _: &[String], _: &str) -> bool {
    false
}

/// Runs `op(replica, i)` for `i` in `0..WRITERS` at once, each on its own task, writer `i`
/// on replica `i % REPLICAS`; the results in writer order.
async fn race<T, F, Fut>(replicas: &[PgMeta], op: F) -> Vec<Result<T, StoreError>>
where
    T: Send + 'static,
    F: Fn(PgMeta, usize) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks = (0..WRITERS).map(|i| {
        let fut = op(replicas[i % replicas.len()].clone(), i);
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

fn count_ok<T>(results: &[Result<T, StoreError>]) -> usize {
    results.iter().filter(|r| r.is_ok()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_replicas_end_in_a_serial_state() {
    let db = common::pg::database();
    // Replicas starting together on an empty database: one migrates, the others wait for it.
    let replicas: Vec<PgMeta> = join_all((0..REPLICAS).map(|_| PgMeta::open(&db.url)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let repo = RepoName::parse("team/app").unwrap();

    // Creating the same repository: one wins, the others are told it exists.
    let created = race(&replicas, |m, _| {
        let repo = repo.clone();
        async move { m.create_repository(&repo, &NewRepository::default()).await }
    })
    .await;
    assert_eq!(count_ok(&created), 1, "{created:?}");
    assert!(
        created
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::RepositoryExists(_))))
    );

    // Moving one tag to eight manifests at once, several rounds: every push succeeds, the tag
    // points at one of the round's manifests, and there is one tag.
    let latest = Tag::parse("latest").unwrap();
    for round in 0..5u8 {
        let pushed = race(&replicas, |m, i| {
            let (repo, tag) = (repo.clone(), latest.clone());
            let n = u8::try_from(i).unwrap();
            async move {
                m.put_manifest(&repo, &manifest(round, n), Some(&tag), mutable, Quota::NONE)
                    .await
            }
        })
        .await;
        assert_eq!(count_ok(&pushed), WRITERS, "{pushed:?}");
        let target = replicas[0]
            .manifest_by_tag(&repo, &latest)
            .await
            .unwrap()
            .unwrap();
        let round_digests: Vec<Digest> = (0..WRITERS)
            .map(|n| manifest(round, u8::try_from(n).unwrap()).digest)
            .collect();
        assert!(round_digests.contains(&target.digest));
        let tags = replicas[1].list_tags(&repo, None, 100).await.unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].digest, target.digest);
    }
    let images = replicas[2]
        .images(&repo, TagFilter::Any, None, 1000)
        .await
        .unwrap();
    assert_eq!(images.len(), 5 * WRITERS);

    // Linking the same blob eight times: one blob, one link, counted once.
    let blob = Digest::sha256(b"shared layer");
    let linked = race(&replicas, |m, _| {
        let (repo, blob) = (repo.clone(), blob.clone());
        async move {
            m.pin_blob(&blob, 1000, None).await?;
            m.link_blob(&repo, &blob, 1000, None, Quota::NONE).await
        }
    })
    .await;
    assert_eq!(count_ok(&linked), WRITERS, "{linked:?}");
    assert_eq!(
        replicas[3].blob_in_repo(&repo, &blob).await.unwrap(),
        Some(1000)
    );

    // A quota with room for two of eight racing blobs admits exactly two: the check and the
    // write are one serializable transaction, so no two writers both see the same free room.
    let small = RepoName::parse("team/small").unwrap();
    replicas[0]
        .create_repository(&small, &NewRepository::default())
        .await
        .unwrap();
    replicas[0]
        .update_repository(&small, RepositoryUpdate::Quota(Some(250)))
        .await
        .unwrap();
    let filled = race(&replicas, |m, i| {
        let small = small.clone();
        let blob = Digest::sha256(format!("blob {i}").as_bytes());
        async move { m.link_blob(&small, &blob, 100, None, Quota::NONE).await }
    })
    .await;
    assert_eq!(count_ok(&filled), 2, "{filled:?}");
    assert!(
        filled
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::QuotaExceeded { .. })))
    );
    assert_eq!(replicas[1].usage(&small).await.unwrap().repository, 200);

    // Upload sessions: a per-repository limit of three admits three of eight.
    let limits = UploadLimits {
        per_repository: 3,
        total: 1000,
    };
    let opened = race(&replicas, |m, _| {
        let small = small.clone();
        async move { m.create_upload(&UploadId::random(), &small, limits).await }
    })
    .await;
    assert_eq!(count_ok(&opened), 3, "{opened:?}");

    // The collector's lease: exactly one holder, also once it is given up and raced for again.
    for _ in 0..3 {
        let taken = race(&replicas, |m, i| async move {
            m.acquire_lease("gc", &format!("replica-{i}"), 60_000).await
        })
        .await;
        let winners: Vec<usize> = taken
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(true)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "{taken:?}");
        assert_eq!(count_ok(&taken), WRITERS, "{taken:?}");
        let holder = format!("replica-{}", winners[0]);
        // Only the holder renews it; then it gives it up.
        assert!(
            !replicas[0]
                .acquire_lease("gc", "someone else", 60_000)
                .await
                .unwrap()
        );
        assert!(
            replicas[0]
                .acquire_lease("gc", &holder, 60_000)
                .await
                .unwrap()
        );
        replicas[1].release_lease("gc", &holder).await.unwrap();
    }

    let retries: u64 = replicas.iter().map(PgMeta::retries).sum();
    println!("serialization failures retried: {retries}");
    assert!(
        retries > 0,
        "eight writers on the same rows never conflicted: the retry path went untested"
    );
}

/// Connections the server ended (a restart, an idle timeout) are replaced: the next
/// operations succeed, reads and writes alike, each after one retry on a fresh connection.
#[tokio::test]
async fn connections_the_server_dropped_are_replaced() {
    let db = common::pg::database();
    let meta = PgMeta::open(&db.url).await.unwrap();
    let repo = RepoName::parse("app").unwrap();
    meta.create_repository(&repo, &NewRepository::default())
        .await
        .unwrap();
    // A few idle connections in the pool.
    for r in join_all((0..4).map(|_| meta.repository(&repo))).await {
        assert!(r.unwrap().is_some());
    }
    terminate_connections(&db.url).await;
    assert!(meta.repository_exists(&repo).await.unwrap());
    let after_read = meta.retries();
    assert!(after_read > 0, "the read did not meet a dropped connection");
    terminate_connections(&db.url).await;
    meta.put_manifest(&repo, &manifest(0, 1), None, mutable, Quota::NONE)
        .await
        .unwrap();
    assert!(
        meta.retries() > after_read,
        "the write did not meet a dropped connection"
    );
    assert_eq!(
        meta.images(&repo, TagFilter::Any, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Ends every other connection to the database at `url`, and waits until they are gone.
async fn terminate_connections(url: &str) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .unwrap();
        for _ in 0..100 {
            let left: i64 = admin
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .unwrap()
                .get(0);
            if left == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("connections still open after pg_terminate_backend");
    })
    .await
    .unwrap();
}
