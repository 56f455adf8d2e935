//! [`IdentityStore`] on the PostgreSQL metadata database (the same database and pool as the
//! content metadata, so one backup holds both). Writes are `SERIALIZABLE` transactions, retried
//! on serialization failures, like every write of [`PgMeta`]; see `postgres.rs`.

use async_trait::async_trait;
use postgres::Row;

use crate::identity::{
    AccessKeyRecord, DocumentRecord, IdentityStore, KeyOwner, PutMode, TemplateRecord, UserPolicy,
    UserRecord,
};
use crate::postgres::{Conn, PgMeta};
use crate::{StoreError, now_millis};

fn user_row(r: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        name: r.try_get(0)?,
        admin: r.try_get(1)?,
        created_at: r.try_get(2)?,
    })
}

fn read_user(c: &mut Conn, name: &str) -> Result<Option<UserRecord>, StoreError> {
    c.query_opt(
        "SELECT name, admin, created_at FROM users WHERE name = $1",
        &[&name],
    )?
    .as_ref()
    .map(user_row)
    .transpose()
}

fn read_policies(c: &mut Conn, user: &str) -> Result<Vec<UserPolicy>, StoreError> {
    c.query(
        "SELECT name, document FROM user_policies WHERE user_name = $1 ORDER BY name",
        &[&user],
    )?
    .iter()
    .map(|r| {
        Ok(UserPolicy {
            name: r.try_get(0)?,
            document: r.try_get(1)?,
        })
    })
    .collect()
}

fn key_row(r: &Row) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        id: r.try_get(0)?,
        user: r.try_get(1)?,
        sealed_secret: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

fn read_template(c: &mut Conn, prefix: &str) -> Result<Option<TemplateRecord>, StoreError> {
    c.query_opt(
        "SELECT prefix, document, created_at, updated_at FROM creation_templates WHERE prefix = $1",
        &[&prefix],
    )?
    .as_ref()
    .map(template_row)
    .transpose()
}

fn read_document(
    c: &mut Conn,
    kind: &str,
    key: &str,
) -> Result<Option<DocumentRecord>, StoreError> {
    c.query_opt(
        "SELECT kind, key, document, created_at, updated_at FROM documents WHERE kind = $1 AND key = $2",
        &[&kind, &key],
    )?
    .as_ref()
    .map(document_row)
    .transpose()
}

fn document_row(r: &Row) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        kind: r.try_get(0)?,
        key: r.try_get(1)?,
        document: r.try_get(2)?,
        created_at: r.try_get(3)?,
        updated_at: r.try_get(4)?,
    })
}

fn template_row(r: &Row) -> Result<TemplateRecord, StoreError> {
    Ok(TemplateRecord {
        prefix: r.try_get(0)?,
        document: r.try_get(1)?,
        created_at: r.try_get(2)?,
        updated_at: r.try_get(3)?,
    })
}

fn require_user(c: &mut Conn, name: &str) -> Result<(), StoreError> {
    match read_user(c, name)? {
        Some(_) => Ok(()),
        None => Err(StoreError::UserUnknown(name.to_owned())),
    }
}

fn read_setting(c: &mut Conn, key: &str) -> Result<Option<String>, StoreError> {
    c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(Into::into)
}

#[async_trait]
impl IdentityStore for PgMeta {
    async fn create_user(&self, name: &str, admin: bool) -> Result<UserRecord, StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            if read_user(c, &name)?.is_some() {
                return Err(StoreError::UserExists(name.clone()));
            }
            let created_at = now_millis();
            c.execute(
                "INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3)",
                &[&name, &admin, &created_at],
            )?;
            Ok(UserRecord {
                name: name.clone(),
                created_at,
                admin,
            })
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let name = name.to_owned();
        self.read_one(move |c| read_user(c, &name)).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read_one(|c| {
            c.query(
                "SELECT name, admin, created_at FROM users ORDER BY name",
                &[],
            )?
            .iter()
            .map(user_row)
            .collect()
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            // Explicit deletes (not only ON DELETE CASCADE), as in the SQLite store.
            c.execute("DELETE FROM access_keys WHERE user_name = $1", &[&name])?;
            c.execute("DELETE FROM user_policies WHERE user_name = $1", &[&name])?;
            let n = c.execute("DELETE FROM users WHERE name = $1", &[&name])?;
            if n == 0 {
                return Err(StoreError::UserUnknown(name.clone()));
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
        self.write(move |c| {
            require_user(c, &user)?;
            c.execute(
                "INSERT INTO user_policies (user_name, name, document) VALUES ($1, $2, $3)
                 ON CONFLICT (user_name, name) DO UPDATE SET document = excluded.document",
                &[&user, &name, &document],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_user_policy(&self, user: &str, name: &str) -> Result<bool, StoreError> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.write(move |c| {
            require_user(c, &user)?;
            let n = c.execute(
                "DELETE FROM user_policies WHERE user_name = $1 AND name = $2",
                &[&user, &name],
            )?;
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
        self.write(move |c| {
            require_user(c, &rec.user)?;
            c.execute(
                "INSERT INTO access_keys (id, user_name, sealed_secret, created_at) VALUES ($1, $2, $3, $4)",
                &[&rec.id, &rec.user, &rec.sealed_secret, &rec.created_at],
            )?;
            Ok(rec.clone())
        })
        .await
    }

    async fn delete_access_key(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c.execute("DELETE FROM access_keys WHERE id = $1", &[&id])?;
            if n == 0 {
                return Err(StoreError::KeyUnknown(id.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let user = user.map(str::to_owned);
        self.read_one(move |c| {
            c.query(
                "SELECT id, user_name, sealed_secret, created_at FROM access_keys
                 WHERE $1::TEXT IS NULL OR user_name = $1::TEXT ORDER BY user_name, id",
                &[&user],
            )?
            .iter()
            .map(key_row)
            .collect()
        })
        .await
    }

    async fn key_owner(&self, id: &str) -> Result<Option<KeyOwner>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            let key = c
                .query_opt(
                    "SELECT id, user_name, sealed_secret, created_at FROM access_keys WHERE id = $1",
                    &[&id],
                )?
                .as_ref()
                .map(key_row)
                .transpose()?;
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
        self.read_one(move |c| read_setting(c, &key)).await
    }

    async fn set_setting(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let (key, value) = (key.to_owned(), value.map(str::to_owned));
        self.write(move |c| {
            let old = read_setting(c, &key)?;
            match &value {
                Some(v) => c.execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, v],
                )?,
                None => c.execute("DELETE FROM settings WHERE key = $1", &[&key])?,
            };
            Ok(old)
        })
        .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )?;
            read_setting(c, &key)?.ok_or_else(|| {
                StoreError::Corrupt(format!("setting {key} vanished inside its transaction"))
            })
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
        self.write(move |c| {
            let now = now_millis();
            match (read_template(c, &prefix)?, replace) {
                (Some(_), false) => return Err(StoreError::TemplateExists(prefix.clone())),
                (None, true) => return Err(StoreError::TemplateUnknown(prefix.clone())),
                (Some(_), true) => c.execute(
                    "UPDATE creation_templates SET document = $2, updated_at = $3 WHERE prefix = $1",
                    &[&prefix, &document, &now],
                )?,
                (None, false) => c.execute(
                    "INSERT INTO creation_templates (prefix, document, created_at, updated_at)
                     VALUES ($1, $2, $3, $3)",
                    &[&prefix, &document, &now],
                )?,
            };
            read_template(c, &prefix)?.ok_or_else(|| StoreError::TemplateUnknown(prefix.clone()))
        })
        .await
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.read_one(|c| {
            c.query(
                "SELECT prefix, document, created_at, updated_at FROM creation_templates ORDER BY prefix",
                &[],
            )?
            .iter()
            .map(template_row)
            .collect()
        })
        .await
    }

    async fn delete_template(&self, prefix: &str) -> Result<TemplateRecord, StoreError> {
        let prefix = prefix.to_owned();
        self.write(move |c| {
            let rec = read_template(c, &prefix)?
                .ok_or_else(|| StoreError::TemplateUnknown(prefix.clone()))?;
            c.execute(
                "DELETE FROM creation_templates WHERE prefix = $1",
                &[&prefix],
            )?;
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
        self.write(move |c| {
            let now = now_millis();
            let unknown = || StoreError::DocumentUnknown {
                kind: kind.clone(),
                key: key.clone(),
            };
            match (read_document(c, &kind, &key)?, mode) {
                (Some(_), PutMode::Create) => {
                    return Err(StoreError::DocumentExists {
                        kind: kind.clone(),
                        key: key.clone(),
                    });
                }
                (None, PutMode::Replace) => return Err(unknown()),
                (Some(_), _) => c.execute(
                    "UPDATE documents SET document = $3, updated_at = $4 WHERE kind = $1 AND key = $2",
                    &[&kind, &key, &document, &now],
                )?,
                (None, _) => c.execute(
                    "INSERT INTO documents (kind, key, document, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4)",
                    &[&kind, &key, &document, &now],
                )?,
            };
            read_document(c, &kind, &key)?.ok_or_else(unknown)
        })
        .await
    }

    async fn document(&self, kind: &str, key: &str) -> Result<Option<DocumentRecord>, StoreError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.read_one(move |c| read_document(c, &kind, &key)).await
    }

    async fn documents(&self, kind: &str) -> Result<Vec<DocumentRecord>, StoreError> {
        let kind = kind.to_owned();
        self.read_one(move |c| {
            c.query(
                "SELECT kind, key, document, created_at, updated_at FROM documents WHERE kind = $1 ORDER BY key",
                &[&kind],
            )?
            .iter()
            .map(document_row)
            .collect()
        })
        .await
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<DocumentRecord, StoreError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.write(move |c| {
            let rec =
                read_document(c, &kind, &key)?.ok_or_else(|| StoreError::DocumentUnknown {
                    kind: kind.clone(),
                    key: key.clone(),
                })?;
            c.execute(
                "DELETE FROM documents WHERE kind = $1 AND key = $2",
                &[&kind, &key],
            )?;
            Ok(rec)
        })
        .await
    }
}
