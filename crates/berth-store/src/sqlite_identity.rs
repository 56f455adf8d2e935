//! [`IdentityStore`] on the SQLite metadata database (the same file and connections as the
//! content metadata, so one backup holds both).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::identity::{
    AccessKeyRecord, DocumentRecord, IdentityStore, KeyOwner, PutMode, TemplateRecord, UserPolicy,
    UserRecord,
};
use crate::sqlite::SqliteMeta;
use crate::{StoreError, now_millis};

fn read_user(c: &Connection, name: &str) -> Result<Option<UserRecord>, StoreError> {
    Ok(
        c.prepare_cached("SELECT name, admin, created_at FROM users WHERE name = ?1")?
            .query_row([name], |r| {
                Ok(UserRecord {
                    name: r.get(0)?,
                    admin: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
            .optional()?,
    )
}

fn read_policies(c: &Connection, user: &str) -> Result<Vec<UserPolicy>, StoreError> {
    let mut st =
        c.prepare_cached("SELECT name, document FROM user_policies WHERE user = ?1 ORDER BY name")?;
    let rows = st.query_map([user], |r| {
        Ok(UserPolicy {
            name: r.get(0)?,
            document: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        sealed_secret: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn read_template(c: &Connection, prefix: &str) -> Result<Option<TemplateRecord>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT prefix, document, created_at, updated_at FROM creation_templates WHERE prefix = ?1",
    )?
    .query_row([prefix], template_row)
    .optional()?)
}

fn read_document(
    c: &Connection,
    kind: &str,
    key: &str,
) -> Result<Option<DocumentRecord>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT kind, key, document, created_at, updated_at FROM documents WHERE kind = ?1 AND key = ?2",
    )?
    .query_row([kind, key], document_row)
    .optional()?)
}

fn document_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRecord> {
    Ok(DocumentRecord {
        kind: r.get(0)?,
        key: r.get(1)?,
        document: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn template_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRecord> {
    Ok(TemplateRecord {
        prefix: r.get(0)?,
        document: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

fn require_user(c: &Connection, name: &str) -> Result<(), StoreError> {
    match read_user(c, name)? {
        Some(_) => Ok(()),
        None => Err(StoreError::UserUnknown(name.to_owned())),
    }
}

#[async_trait]
impl IdentityStore for SqliteMeta {
    async fn create_user(&self, name: &str, admin: bool) -> Result<UserRecord, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            if read_user(tx, &name)?.is_some() {
                return Err(StoreError::UserExists(name));
            }
            let created_at = now_millis();
            tx.prepare_cached("INSERT INTO users (name, admin, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![name, admin, created_at])?;
            Ok(UserRecord {
                name,
                created_at,
                admin,
            })
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| read_user(c, &name)).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT name, admin, created_at FROM users ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(UserRecord {
                    name: r.get(0)?,
                    admin: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            // Explicit deletes (not only ON DELETE CASCADE) so the outcome does not depend on the
            // connection's foreign-key setting.
            tx.prepare_cached("DELETE FROM access_keys WHERE user = ?1")?
                .execute([&name])?;
            tx.prepare_cached("DELETE FROM user_policies WHERE user = ?1")?
                .execute([&name])?;
            let n = tx
                .prepare_cached("DELETE FROM users WHERE name = ?1")?
                .execute([&name])?;
            if n == 0 {
                return Err(StoreError::UserUnknown(name));
            }
            Ok(())
        })
        .await
    }

    async fn put_user_policy(
        &self,
        user: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError> {
        let (user, name, document) = (user.to_owned(), name.to_owned(), document.to_owned());
        self.write(move |tx| {
            require_user(tx, &user)?;
            tx.prepare_cached(
                "INSERT INTO user_policies (user, name, document) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user, name) DO UPDATE SET document = excluded.document",
            )?
            .execute(params![user, name, document])?;
            Ok(())
        })
        .await
    }

    async fn delete_user_policy(&self, user: &str, name: &str) -> Result<bool, StoreError> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.write(move |tx| {
            require_user(tx, &user)?;
            let n = tx
                .prepare_cached("DELETE FROM user_policies WHERE user = ?1 AND name = ?2")?
                .execute(params![user, name])?;
            Ok(n > 0)
        })
        .await
    }

    async fn user_policies(&self, user: &str) -> Result<Vec<UserPolicy>, StoreError> {
        let user = user.to_owned();
        self.read(move |c| {
            require_user(c, &user)?;
            read_policies(c, &user)
        })
        .await
    }

    async fn create_access_key(
        &self,
        user: &str,
        id: &str,
        sealed_secret: &[u8],
    ) -> Result<AccessKeyRecord, StoreError> {
        let rec = AccessKeyRecord {
            id: id.to_owned(),
            user: user.to_owned(),
            sealed_secret: sealed_secret.to_vec(),
            created_at: now_millis(),
        };
        self.write(move |tx| {
            require_user(tx, &rec.user)?;
            tx.prepare_cached(
                "INSERT INTO access_keys (id, user, sealed_secret, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![rec.id, rec.user, rec.sealed_secret, rec.created_at])?;
            Ok(rec)
        })
        .await
    }

    async fn delete_access_key(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM access_keys WHERE id = ?1")?
                .execute([&id])?;
            if n == 0 {
                return Err(StoreError::KeyUnknown(id));
            }
            Ok(())
        })
        .await
    }

    async fn access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let user = user.map(str::to_owned);
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, user, sealed_secret, created_at FROM access_keys
                 WHERE ?1 IS NULL OR user = ?1 ORDER BY user, id",
            )?;
            let rows = st.query_map([user], key_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn key_owner(&self, id: &str) -> Result<Option<KeyOwner>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            let key = c
                .prepare_cached(
                    "SELECT id, user, sealed_secret, created_at FROM access_keys WHERE id = ?1",
                )?
                .query_row([&id], key_row)
                .optional()?;
            let Some(key) = key else {
                return Ok(None);
            };
            let Some(user) = read_user(c, &key.user)? else {
                return Ok(None);
            };
            let policies = read_policies(c, &user.name)?;
            Ok(Some(KeyOwner {
                key,
                user,
                policies,
            }))
        })
        .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn set_setting(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let (key, value) = (key.to_owned(), value.map(str::to_owned));
        self.write(move |tx| {
            let old: Option<String> = tx
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([&key], |r| r.get(0))
                .optional()?;
            match value {
                Some(v) => tx
                    .prepare_cached(
                        "INSERT INTO settings (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![key, v])?,
                None => tx
                    .prepare_cached("DELETE FROM settings WHERE key = ?1")?
                    .execute([&key])?,
            };
            Ok(old)
        })
        .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![key, value])?;
            let now: String = tx
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([&key], |r| r.get(0))?;
            Ok(now)
        })
        .await
    }

    async fn put_template(
        &self,
        prefix: &str,
        document: &str,
        replace: bool,
    ) -> Result<TemplateRecord, StoreError> {
        let (prefix, document) = (prefix.to_owned(), document.to_owned());
        self.write(move |tx| {
            let now = now_millis();
            match (read_template(tx, &prefix)?, replace) {
                (Some(_), false) => return Err(StoreError::TemplateExists(prefix)),
                (None, true) => return Err(StoreError::TemplateUnknown(prefix)),
                (Some(_), true) => tx
                    .prepare_cached(
                        "UPDATE creation_templates SET document = ?2, updated_at = ?3 WHERE prefix = ?1",
                    )?
                    .execute(params![prefix, document, now])?,
                (None, false) => tx
                    .prepare_cached(
                        "INSERT INTO creation_templates (prefix, document, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?3)",
                    )?
                    .execute(params![prefix, document, now])?,
            };
            read_template(tx, &prefix)?.ok_or(StoreError::TemplateUnknown(prefix))
        })
        .await
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT prefix, document, created_at, updated_at FROM creation_templates ORDER BY prefix",
            )?;
            let rows = st.query_map([], template_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_template(&self, prefix: &str) -> Result<TemplateRecord, StoreError> {
        let prefix = prefix.to_owned();
        self.write(move |tx| {
            let rec = read_template(tx, &prefix)?
                .ok_or_else(|| StoreError::TemplateUnknown(prefix.clone()))?;
            tx.prepare_cached("DELETE FROM creation_templates WHERE prefix = ?1")?
                .execute([&prefix])?;
            Ok(rec)
        })
        .await
    }

    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        document: &str,
        mode: PutMode,
    ) -> Result<DocumentRecord, StoreError> {
        let (kind, key, document) = (kind.to_owned(), key.to_owned(), document.to_owned());
        self.write(move |tx| {
            let now = now_millis();
            let unknown = || StoreError::DocumentUnknown {
                kind: kind.clone(),
                key: key.clone(),
            };
            match (read_document(tx, &kind, &key)?, mode) {
                (Some(_), PutMode::Create) => {
                    return Err(StoreError::DocumentExists {
                        kind: kind.clone(),
                        key: key.clone(),
                    });
                }
                (None, PutMode::Replace) => return Err(unknown()),
                (Some(_), _) => tx
                    .prepare_cached(
                        "UPDATE documents SET document = ?3, updated_at = ?4 WHERE kind = ?1 AND key = ?2",
                    )?
                    .execute(params![kind, key, document, now])?,
                (None, _) => tx
                    .prepare_cached(
                        "INSERT INTO documents (kind, key, document, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?
                    .execute(params![kind, key, document, now])?,
            };
            read_document(tx, &kind, &key)?.ok_or_else(unknown)
        })
        .await
    }

    async fn document(&self, kind: &str, key: &str) -> Result<Option<DocumentRecord>, StoreError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.read(move |c| read_document(c, &kind, &key)).await
    }

    async fn documents(&self, kind: &str) -> Result<Vec<DocumentRecord>, StoreError> {
        let kind = kind.to_owned();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT kind, key, document, created_at, updated_at FROM documents WHERE kind = ?1 ORDER BY key",
            )?;
            let rows = st.query_map([&kind], document_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<DocumentRecord, StoreError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.write(move |tx| {
            let rec =
                read_document(tx, &kind, &key)?.ok_or_else(|| StoreError::DocumentUnknown {
                    kind: kind.clone(),
                    key: key.clone(),
                })?;
            tx.prepare_cached("DELETE FROM documents WHERE kind = ?1 AND key = ?2")?
                .execute([&kind, &key])?;
            Ok(rec)
        })
        .await
    }
}
