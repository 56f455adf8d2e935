//! The metadata store's conformance suite: every test runs against the SQLite store and the
//! PostgreSQL one (`<test>::sqlite`, `<test>::postgres`; PostgreSQL from `common/pg.rs`).
//! The ECR-facing parts: repository settings, immutable tags checked inside the transaction,
//! image listings, forced deletes, identities and templates, uploads, replication jobs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use berth_oci::{Digest, RepoName, Tag};
use berth_store::{
    Durability, IdentityStore, MetadataStore, NewManifest, NewRepository, PgMeta, Quota,
    RepositoryUpdate, SqliteMeta, StoreError, TagFilter, UploadId, UploadLimits,
};

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Both store traits, as the registry uses them (one object).
trait Store: MetadataStore + IdentityStore {}
impl<T: MetadataStore + IdentityStore> Store for T {}

type Meta = Arc<dyn Store>;

/// Where a test's database lives (a temporary SQLite file, or a PostgreSQL database of its
/// own); [`TestDb::open`] connects to it, again for a restart.
struct TestDb {
    backend: Backend,
    dir: tempfile::TempDir,
    pg: Option<common::pg::Database>,
}

impl TestDb {
    fn new(backend: Backend) -> Self {
        TestDb {
            backend,
            dir: tempfile::tempdir().unwrap(),
            pg: matches!(backend, Backend::Postgres).then(common::pg::database),
        }
    }

    async fn open(&self) -> Meta {
        match (self.backend, &self.pg) {
            (Backend::Postgres, Some(pg)) => Arc::new(PgMeta::open(&pg.url).await.unwrap()),
            _ => Arc::new(
                SqliteMeta::open(self.dir.path().join("meta.db"), Durability::Normal).unwrap(),
            ),
        }
    }
}

async fn open(backend: Backend) -> (TestDb, Meta) {
    let db = TestDb::new(backend);
    let meta = db.open().await;
    (db, meta)
}

/// Each named `async fn(Backend)` becomes a module with a `sqlite` and a `postgres` test.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        }
    )*};
}

conformance!(
    repository_settings_round_trip_and_conflicts,
    immutable_tags_are_refused_inside_the_transaction,
    images_filter_paginate_and_force_delete,
    users_keys_policies_settings_templates,
    documents_are_created_replaced_listed_by_kind_and_deleted,
    pulls_are_recorded_and_never_move_back,
    a_short_part_before_the_last_marks_the_upload,
    writes_never_recreate_a_deleted_repository,
    open_upload_sessions_are_bounded,
    untagging_the_last_tag_takes_the_image_in_the_same_transaction,
    storage_usage_ranks_repositories_by_bytes,
    replication_jobs_run_in_order_per_destination_and_survive_reopening,
);

fn manifest(n: u8) -> NewManifest {
    NewManifest {
        digest: Digest::sha256(&[n]),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 100 + u64::from(n),
        artifact_type: None,
        subject: None,
        annotations_json: None,
        references: Vec::new(),
    }
}

async fn repository_settings_round_trip_and_conflicts(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("team/app").unwrap();
    let settings = NewRepository {
        tag_mutability: "IMMUTABLE_WITH_EXCLUSION".into(),
        mutability_filters: vec!["latest".into(), "dev-*".into()],
        scan_on_push: true,
        resource_tags: vec![("team".into(), "core".into())],
        ..NewRepository::default()
    };
    let created = meta.create_repository(&repo, &settings).await.unwrap();
    assert_eq!(created.tag_mutability, "IMMUTABLE_WITH_EXCLUSION");
    assert_eq!(created.mutability_filters, vec!["latest", "dev-*"]);
    assert!(created.scan_on_push);
    assert!(matches!(
        meta.create_repository(&repo, &settings).await,
        Err(StoreError::RepositoryExists(_))
    ));
    assert_eq!(
        meta.resource_tags(&repo).await.unwrap(),
        vec![("team".to_owned(), "core".to_owned())]
    );
    meta.update_resource_tags(&repo, &[("env".into(), "prod".into())], &["team".into()])
        .await
        .unwrap();
    assert_eq!(
        meta.resource_tags(&repo).await.unwrap(),
        vec![("env".to_owned(), "prod".to_owned())]
    );
    let updated = meta
        .update_repository(&repo, RepositoryUpdate::Policy(Some("{}".into())))
        .await
        .unwrap();
    assert_eq!(updated.policy.as_deref(), Some("{}"));
    assert!(
        updated.scan_on_push,
        "one setting's update leaves the others"
    );
    let missing = RepoName::parse("nope").unwrap();
    assert!(
        meta.update_repository(&missing, RepositoryUpdate::ScanOnPush(true))
            .await
            .is_err()
    );
    assert_eq!(meta.repositories(None, 10).await.unwrap().len(), 1);
}

/// A rule reading only the setting: `IMMUTABLE` or not (the registry's also reads filters).
fn by_setting(mutability: &str, _filters: &[String], _tag: &str) -> bool {
    mutability == "IMMUTABLE"
}

fn mutable(_: &str, _: &[String], _: &str) -> bool {
    false
}

async fn immutable_tags_are_refused_inside_the_transaction(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("app").unwrap();
    meta.create_repository(&repo, &NewRepository::default())
        .await
        .unwrap();
    let set = |mutability: &str| RepositoryUpdate::TagMutability {
        mutability: mutability.into(),
        filters: Vec::new(),
    };
    let tag = Tag::parse("v1").unwrap();
    meta.put_manifest(&repo, &manifest(1), Some(&tag), by_setting, Quota::NONE)
        .await
        .unwrap();
    // The setting is read by the push's own transaction.
    meta.update_repository(&repo, set("IMMUTABLE"))
        .await
        .unwrap();
    // The same digest again is fine; another digest is refused and the tag does not move.
    meta.put_manifest(&repo, &manifest(1), Some(&tag), by_setting, Quota::NONE)
        .await
        .unwrap();
    let err = meta
        .put_manifest(&repo, &manifest(2), Some(&tag), by_setting, Quota::NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TagImmutable { .. }), "{err}");
    let current = meta.manifest_by_tag(&repo, &tag).await.unwrap().unwrap();
    assert_eq!(current.digest, Digest::sha256(&[1]));
    // Mutable again: the tag moves.
    meta.update_repository(&repo, set("MUTABLE")).await.unwrap();
    meta.put_manifest(&repo, &manifest(2), Some(&tag), by_setting, Quota::NONE)
        .await
        .unwrap();
    let current = meta.manifest_by_tag(&repo, &tag).await.unwrap().unwrap();
    assert_eq!(current.digest, Digest::sha256(&[2]));
}

async fn images_filter_paginate_and_force_delete(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("app").unwrap();
    meta.create_repository(&repo, &NewRepository::default())
        .await
        .unwrap();
    for n in 0..5u8 {
        let tag = Tag::parse(&format!("t{n}")).unwrap();
        let tag = (n % 2 == 0).then_some(&tag);
        meta.put_manifest(&repo, &manifest(n), tag, mutable, Quota::NONE)
            .await
            .unwrap();
    }
    assert_eq!(
        meta.images(&repo, TagFilter::Any, None, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    let tagged = meta
        .images(&repo, TagFilter::Tagged, None, 100)
        .await
        .unwrap();
    assert_eq!(tagged.len(), 3);
    assert!(tagged.iter().all(|i| !i.tags.is_empty()));
    let untagged = meta
        .images(&repo, TagFilter::Untagged, None, 100)
        .await
        .unwrap();
    assert_eq!(untagged.len(), 2);
    // Pages of two cover everything exactly once.
    let mut seen = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = meta
            .images(&repo, TagFilter::Any, after.as_ref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.manifest.digest.clone());
        seen.extend(page.into_iter().map(|i| i.manifest.digest));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let one = meta
        .image(&repo, &Digest::sha256(&[0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.tags, vec!["t0"]);
    assert_eq!(one.size, 0, "the sum of referenced blobs (none here)");

    assert!(matches!(
        meta.delete_repository(&repo, false).await,
        Err(StoreError::RepositoryNotEmpty(_))
    ));
    let (_, deleted) = meta.delete_repository(&repo, true).await.unwrap();
    assert_eq!(deleted, 5);
    assert!(meta.repository(&repo).await.unwrap().is_none());
    assert!(matches!(
        meta.images(&repo, TagFilter::Any, None, 10).await,
        Err(StoreError::RepositoryUnknown(_))
    ));
}

async fn users_keys_policies_settings_templates(backend: Backend) {
    let (_db, meta) = open(backend).await;
    meta.create_user("ci", false).await.unwrap();
    assert!(matches!(
        meta.create_user("ci", false).await,
        Err(StoreError::UserExists(_))
    ));
    meta.put_user_policy("ci", "push", r#"{"Version":"2012-10-17"}"#)
        .await
        .unwrap();
    meta.create_access_key("ci", "AKIAAAAAAAAAAAAAAAAA", b"sealed")
        .await
        .unwrap();
    assert!(matches!(
        meta.create_access_key("ghost", "AKIABBBBBBBBBBBBBBBB", b"x")
            .await,
        Err(StoreError::UserUnknown(_))
    ));
    let owner = meta
        .key_owner("AKIAAAAAAAAAAAAAAAAA")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.user.name, "ci");
    assert_eq!(owner.key.sealed_secret, b"sealed");
    assert_eq!(owner.policies.len(), 1);
    assert!(
        meta.key_owner("AKIAZZZZZZZZZZZZZZZZ")
            .await
            .unwrap()
            .is_none()
    );
    meta.delete_access_key("AKIAAAAAAAAAAAAAAAAA")
        .await
        .unwrap();
    assert!(
        meta.key_owner("AKIAAAAAAAAAAAAAAAAA")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        meta.delete_access_key("AKIAAAAAAAAAAAAAAAAA").await,
        Err(StoreError::KeyUnknown(_))
    ));
    // Deleting a user deletes its keys.
    meta.create_access_key("ci", "AKIACCCCCCCCCCCCCCCC", b"s2")
        .await
        .unwrap();
    meta.delete_user("ci").await.unwrap();
    assert!(
        meta.key_owner("AKIACCCCCCCCCCCCCCCC")
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(meta.setting("registry_policy").await.unwrap(), None);
    meta.set_setting("registry_policy", Some("{}"))
        .await
        .unwrap();
    assert_eq!(
        meta.setting("registry_policy").await.unwrap().as_deref(),
        Some("{}")
    );
    meta.set_setting("registry_policy", None).await.unwrap();
    assert_eq!(meta.setting("registry_policy").await.unwrap(), None);
    // The first value stored wins; later ones get it back.
    assert_eq!(
        meta.init_setting("registry_id", "111").await.unwrap(),
        "111"
    );
    assert_eq!(
        meta.init_setting("registry_id", "222").await.unwrap(),
        "111"
    );
    assert_eq!(
        meta.setting("registry_id").await.unwrap().as_deref(),
        Some("111")
    );

    meta.put_template("team", "{}", false).await.unwrap();
    assert!(matches!(
        meta.put_template("team", "{}", false).await,
        Err(StoreError::TemplateExists(_))
    ));
    meta.put_template("team", r#"{"a":1}"#, true).await.unwrap();
    assert_eq!(meta.templates().await.unwrap().len(), 1);
    meta.delete_template("team").await.unwrap();
    assert!(matches!(
        meta.delete_template("team").await,
        Err(StoreError::TemplateUnknown(_))
    ));
}

async fn documents_are_created_replaced_listed_by_kind_and_deleted(backend: Backend) {
    use berth_store::PutMode;
    let (_db, meta) = open(backend).await;
    let rule = meta
        .put_document("rule", "hub", r#"{"u":1}"#, PutMode::Create)
        .await
        .unwrap();
    assert_eq!(
        (rule.created_at, rule.document.as_str()),
        (rule.updated_at, r#"{"u":1}"#)
    );
    assert!(matches!(
        meta.put_document("rule", "hub", "{}", PutMode::Create)
            .await,
        Err(StoreError::DocumentExists { .. })
    ));
    assert!(matches!(
        meta.put_document("rule", "ghcr", "{}", PutMode::Replace)
            .await,
        Err(StoreError::DocumentUnknown { .. })
    ));
    meta.put_document("rule", "hub", r#"{"u":2}"#, PutMode::Replace)
        .await
        .unwrap();
    meta.put_document("rule", "ghcr", "{}", PutMode::Upsert)
        .await
        .unwrap();
    // Another kind with the same key is another document.
    meta.put_document("secret", "hub", "s", PutMode::Create)
        .await
        .unwrap();
    let rules = meta.documents("rule").await.unwrap();
    let keys: Vec<&str> = rules.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["ghcr", "hub"]);
    assert_eq!(rules[1].document, r#"{"u":2}"#);
    assert_eq!(
        meta.document("secret", "hub")
            .await
            .unwrap()
            .unwrap()
            .document,
        "s"
    );
    assert_eq!(
        meta.delete_document("rule", "hub").await.unwrap().key,
        "hub"
    );
    assert!(matches!(
        meta.delete_document("rule", "hub").await,
        Err(StoreError::DocumentUnknown { .. })
    ));
    assert!(meta.document("rule", "hub").await.unwrap().is_none());
    assert!(meta.document("secret", "hub").await.unwrap().is_some());
}

async fn pulls_are_recorded_and_never_move_back(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("app").unwrap();
    meta.create_repository(&repo, &NewRepository::default())
        .await
        .unwrap();
    let m = manifest(1);
    meta.put_manifest(&repo, &m, None, mutable, Quota::NONE)
        .await
        .unwrap();
    let pulled = |meta: Meta| {
        let (repo, digest) = (repo.clone(), m.digest.clone());
        async move {
            let rec = meta.manifest(&repo, &digest).await.unwrap().unwrap();
            rec.last_pulled_at
        }
    };
    assert_eq!(pulled(meta.clone()).await, None);
    meta.record_pull(&repo, &m.digest, 2_000).await.unwrap();
    assert_eq!(pulled(meta.clone()).await, Some(2_000));
    meta.record_pull(&repo, &m.digest, 1_000).await.unwrap();
    assert_eq!(pulled(meta.clone()).await, Some(2_000));
    meta.record_pull(&repo, &m.digest, 3_000).await.unwrap();
    assert_eq!(pulled(meta.clone()).await, Some(3_000));
    // A manifest that is not there: nothing happens, nothing fails.
    meta.record_pull(&repo, &Digest::sha256(b"gone"), 4_000)
        .await
        .unwrap();
}

const LIMITS: UploadLimits = UploadLimits {
    per_repository: 1000,
    total: 1000,
};

/// Records parts as the registry does, before each append: `parts` are (bytes that landed,
/// bytes the part had), so a crash or a failed append lands fewer. Returns the staged size.
async fn append_parts(meta: &Meta, id: &UploadId, parts: &[(u64, u64)]) -> u64 {
    let mut size = 0;
    for &(landed, len) in parts {
        meta.record_upload_part(id, size, len, 5).await.unwrap();
        size += landed;
    }
    size
}

async fn a_short_part_before_the_last_marks_the_upload(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("app").unwrap();
    meta.create_repository(&repo, &NewRepository::default())
        .await
        .unwrap();
    let short = |parts: &'static [(u64, u64)]| {
        let meta = meta.clone();
        let repo = repo.clone();
        async move {
            let id = UploadId::random();
            meta.create_upload(&id, &repo, LIMITS).await.unwrap();
            let size = append_parts(&meta, &id, parts).await;
            meta.upload(&id)
                .await
                .unwrap()
                .unwrap()
                .has_short_part(size)
        }
    };
    // Long parts, then a short last one: fine.
    assert!(!short(&[(10, 10), (10, 10), (3, 3)]).await);
    // A short part followed by another: marked, and it stays marked.
    assert!(short(&[(10, 10), (3, 3), (10, 10), (10, 10)]).await);
    // A short part whose successor failed (cut back to nothing) is still the last part.
    assert!(!short(&[(10, 10), (3, 3), (0, 10)]).await);
    // A long part cut short by a crash, then another part: what landed was short.
    assert!(short(&[(10, 10), (2, 10), (10, 10)]).await);
    // A failed part retried whole: fine.
    assert!(!short(&[(10, 10), (0, 10), (10, 10), (1, 1)]).await);
    // An upload that is gone: nothing happens, nothing fails.
    let gone = UploadId::random();
    meta.create_upload(&gone, &repo, LIMITS).await.unwrap();
    meta.delete_upload(&gone).await.unwrap();
    meta.record_upload_part(&gone, 0, 1, 5).await.unwrap();
    assert!(meta.upload(&gone).await.unwrap().is_none());
}

/// Issue 21, item 1: a push whose repository was deleted after its checks must fail, not bring
/// the repository back with default settings.
async fn writes_never_recreate_a_deleted_repository(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("team/app").unwrap();
    let settings = NewRepository {
        tag_mutability: "IMMUTABLE".into(),
        ..NewRepository::default()
    };
    meta.create_repository(&repo, &settings).await.unwrap();
    // The push checked the repository (it existed); then DeleteRepository commits.
    assert!(meta.repository(&repo).await.unwrap().is_some());
    meta.delete_repository(&repo, true).await.unwrap();
    let blob = Digest::sha256(b"layer");
    assert!(matches!(
        meta.link_blob(&repo, &blob, 5, None, Quota::NONE).await,
        Err(StoreError::RepositoryUnknown(r)) if r == "team/app"
    ));
    assert!(matches!(
        meta.put_manifest(
            &repo,
            &manifest(1),
            Some(&Tag::parse("v1").unwrap()),
            mutable,
            Quota::NONE
        )
        .await,
        Err(StoreError::RepositoryUnknown(_))
    ));
    assert!(matches!(
        meta.create_upload(&UploadId::random(), &repo, LIMITS).await,
        Err(StoreError::RepositoryUnknown(_))
    ));
    assert!(meta.repository(&repo).await.unwrap().is_none());
}

/// Issue 21, item 5: open upload sessions are bounded per repository and in total.
async fn open_upload_sessions_are_bounded(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let (a, b) = (RepoName::parse("a").unwrap(), RepoName::parse("b").unwrap());
    for r in [&a, &b] {
        meta.create_repository(r, &NewRepository::default())
            .await
            .unwrap();
    }
    let limits = UploadLimits {
        per_repository: 2,
        total: 3,
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = UploadId::random();
        meta.create_upload(&id, &a, limits).await.unwrap();
        ids.push(id);
    }
    let refused = meta.create_upload(&UploadId::random(), &a, limits).await;
    assert!(
        matches!(&refused, Err(StoreError::TooManyUploads { scope, open: 2 }) if scope == "in repository a"),
        "{refused:?}"
    );
    meta.create_upload(&UploadId::random(), &b, limits)
        .await
        .unwrap();
    let refused = meta.create_upload(&UploadId::random(), &b, limits).await;
    assert!(
        matches!(&refused, Err(StoreError::TooManyUploads { scope, open: 3 }) if scope == "in the registry"),
        "{refused:?}"
    );
    // Finishing one frees its place.
    meta.delete_upload(&ids[0]).await.unwrap();
    meta.create_upload(&UploadId::random(), &a, limits)
        .await
        .unwrap();
}

async fn untagging_the_last_tag_takes_the_image_in_the_same_transaction(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let repo = RepoName::parse("app").unwrap();
    meta.create_repository(&repo, &NewRepository::default())
        .await
        .unwrap();
    let (a, b) = (Tag::parse("a").unwrap(), Tag::parse("b").unwrap());
    let m = manifest(7);
    meta.put_manifest(&repo, &m, Some(&a), mutable, Quota::NONE)
        .await
        .unwrap();
    meta.put_manifest(&repo, &m, Some(&b), mutable, Quota::NONE)
        .await
        .unwrap();
    assert!(!meta.untag(&repo, &a).await.unwrap());
    assert!(meta.manifest(&repo, &m.digest).await.unwrap().is_some());
    assert!(meta.untag(&repo, &b).await.unwrap());
    assert!(meta.manifest(&repo, &m.digest).await.unwrap().is_none());
    assert!(matches!(
        meta.untag(&repo, &b).await,
        Err(StoreError::ManifestUnknown(_))
    ));
}

/// Issue 24: the storage metrics' query — the registry's bytes, the repository count and the
/// largest repositories, each blob counted once per repository; and the readiness query.
async fn storage_usage_ranks_repositories_by_bytes(backend: Backend) {
    let (_db, meta) = open(backend).await;
    let names = ["team/a", "team/b", "team/empty"];
    for n in names {
        let repo = RepoName::parse(n).unwrap();
        meta.create_repository(&repo, &NewRepository::default())
            .await
            .unwrap();
    }
    let (a, b) = (
        RepoName::parse("team/a").unwrap(),
        RepoName::parse("team/b").unwrap(),
    );
    let small = Digest::sha256(b"small");
    let large = Digest::sha256(b"large");
    meta.link_blob(&a, &small, 5, None, Quota::NONE)
        .await
        .unwrap();
    meta.link_blob(&b, &small, 5, None, Quota::NONE)
        .await
        .unwrap();
    meta.link_blob(&b, &large, 100, None, Quota::NONE)
        .await
        .unwrap();
    let all = meta.storage_usage(10).await.unwrap();
    assert_eq!(all.registry, 105);
    assert_eq!(all.repositories, 3);
    assert_eq!(
        all.largest,
        vec![("team/b".to_owned(), 105), ("team/a".to_owned(), 5)]
    );
    let top = meta.storage_usage(1).await.unwrap();
    assert_eq!(top.largest, vec![("team/b".to_owned(), 105)]);
    meta.ready().await.unwrap();
}

async fn replication_jobs_run_in_order_per_destination_and_survive_reopening(backend: Backend) {
    use berth_store::{JobOutcome, NewReplicationJob};
    let db = TestDb::new(backend);
    let d = |n: u8| Digest::sha256(&[n]);
    let job = |n: u8, dest: &str| NewReplicationJob {
        repository: "team/app".into(),
        digest: d(n),
        tag: Some(format!("v{n}")),
        destination: dest.into(),
    };
    {
        let meta = db.open().await;
        meta.add_replication_jobs(&[job(1, "west"), job(1, "east"), job(2, "west")])
            .await
            .unwrap();
    }
    // Reopened (a restart): every job is still there, the oldest of each destination first.
    let meta = db.open().await;
    let next = meta.next_replication_jobs().await.unwrap();
    let heads: Vec<(&str, &Digest)> = next
        .iter()
        .map(|j| (j.destination.as_str(), &j.digest))
        .collect();
    assert_eq!(heads, [("west", &d(1)), ("east", &d(1))]);
    let west = next[0].id;
    // A retry keeps it at the head, with its error and time.
    meta.finish_replication_job(
        west,
        &JobOutcome::Retry {
            error: "connection refused".into(),
            at: 42,
        },
    )
    .await
    .unwrap();
    let again = meta.next_replication_jobs().await.unwrap();
    assert_eq!(again[0].id, west);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].next_attempt_at, 42);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
    // Done: the next one of that destination comes up.
    meta.finish_replication_job(west, &JobOutcome::Complete)
        .await
        .unwrap();
    let next = meta.next_replication_jobs().await.unwrap();
    assert_eq!(
        next.iter()
            .map(|j| (j.destination.as_str(), j.digest.clone()))
            .collect::<Vec<_>>(),
        [("east", d(1)), ("west", d(2))]
    );
    let jobs = meta.replication_jobs_of("team/app", &d(1)).await.unwrap();
    let states: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.destination.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(states, [("west", "COMPLETE"), ("east", "PENDING")]);
    meta.finish_replication_job(next[0].id, &JobOutcome::Failed("denied".into()))
        .await
        .unwrap();
    // Finished jobs are pruned; pending ones never.
    assert_eq!(meta.prune_replication_jobs(i64::MAX).await.unwrap(), 2);
    assert_eq!(meta.next_replication_jobs().await.unwrap().len(), 1);
}
