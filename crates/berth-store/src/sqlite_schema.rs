//! The metadata database's schema: versioned migrations, applied in order by
//! `sqlite::migrate` (`PRAGMA user_version` counts those that ran). A migration is never edited
//! once released; a change is a new entry.

/// Versioned schema migrations; `PRAGMA user_version` records how many ran.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE repo_blobs (
    repo_id     INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest      TEXT NOT NULL REFERENCES blobs(digest),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE manifests (
    repo_id       INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    pushed_at     INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
CREATE TABLE manifest_refs (
    repo_id   INTEGER NOT NULL,
    manifest  TEXT NOT NULL,
    child     TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo_id, manifest, child),
    FOREIGN KEY (repo_id, manifest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX manifest_refs_child ON manifest_refs(repo_id, child, kind);
CREATE TABLE tags (
    repo_id     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX tags_digest ON tags(repo_id, digest);
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repo        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE repositories ADD COLUMN tag_mutability TEXT NOT NULL DEFAULT 'MUTABLE';
ALTER TABLE repositories ADD COLUMN mutability_filters TEXT NOT NULL DEFAULT '[]';
ALTER TABLE repositories ADD COLUMN scan_on_push INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN encryption_type TEXT NOT NULL DEFAULT 'AES256';
ALTER TABLE repositories ADD COLUMN kms_key TEXT;
ALTER TABLE repositories ADD COLUMN policy TEXT;
CREATE TABLE resource_tags (
    repo_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (repo_id, key)
) WITHOUT ROWID;
CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    admin       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE user_policies (
    user      TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    document  TEXT NOT NULL,
    PRIMARY KEY (user, name)
) WITHOUT ROWID;
CREATE TABLE access_keys (
    id             TEXT PRIMARY KEY,
    user           TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    sealed_secret  BLOB NOT NULL,
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX access_keys_user ON access_keys(user);
ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER;
ALTER TABLE uploads ADD COLUMN last_part INTEGER;
ALTER TABLE uploads ADD COLUMN short_part INTEGER NOT NULL DEFAULT 0;
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE creation_templates (
    prefix      TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE INDEX uploads_repo ON uploads(repo);
ALTER TABLE uploads ADD COLUMN last_part_offset INTEGER;
ALTER TABLE uploads ADD COLUMN short_part_end INTEGER;
ALTER TABLE uploads ADD COLUMN committing TEXT;
UPDATE uploads SET short_part_end = 0 WHERE short_part;
"#,
    r#"
ALTER TABLE repositories ADD COLUMN lifecycle_policy TEXT;
ALTER TABLE repositories ADD COLUMN lifecycle_evaluated_at INTEGER;
ALTER TABLE repositories ADD COLUMN quota_bytes INTEGER;
ALTER TABLE blobs ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE blobs SET touched_at = created_at;
ALTER TABLE repo_blobs ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE repo_blobs SET touched_at = created_at;
CREATE INDEX manifests_digest ON manifests(digest);
CREATE INDEX uploads_committing ON uploads(committing) WHERE committing IS NOT NULL;
CREATE TABLE gc_tombstones (
    digest      TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE lifecycle_previews (
    repo_id     INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    status      TEXT NOT NULL,
    results     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE image_scans (
    repo_id           INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest            TEXT NOT NULL,
    status            TEXT NOT NULL,
    description       TEXT NOT NULL,
    updated_at        INTEGER NOT NULL,
    completed_at      INTEGER,
    source_updated_at INTEGER,
    findings          TEXT,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX image_scans_status ON image_scans(status);
CREATE TRIGGER image_scans_follow_manifests AFTER DELETE ON manifests BEGIN
    DELETE FROM image_scans WHERE repo_id = OLD.repo_id AND digest = OLD.digest;
END;
"#,
    r#"
CREATE TABLE documents (
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    document    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE replication_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    repository       TEXT NOT NULL,
    digest           TEXT NOT NULL,
    tag              TEXT,
    destination      TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX replication_jobs_pending ON replication_jobs(destination, id) WHERE status = 'PENDING';
CREATE INDEX replication_jobs_image ON replication_jobs(repository, digest);
"#,
];
