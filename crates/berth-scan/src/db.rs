//! The offline vulnerability database: OSV records in one SQLite file (`osv.db` in its
//! directory), the raw JSON of each record kept as imported, indexed by (ecosystem, package) so
//! a lookup never reads the whole database. Imports take OSV JSON files, directories of them,
//! and osv.dev's per-ecosystem `all.zip`; a record replaces a stored one only when its
//! `modified` is newer. Every import is one transaction: a crash leaves the old database.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::error::ScanError;
use crate::osv::Record;
use crate::parse::normalize_python_name;

/// The largest OSV record imported (osv.dev's largest are a few hundred KiB).
const MAX_RECORD: u64 = 8 << 20;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImportReport {
    /// Records stored (new, or newer than the stored one).
    pub imported: u64,
    /// Records already stored at the same or a newer `modified`.
    pub unchanged: u64,
    /// Files that were not records, with why.
    pub rejected: Vec<String>,
}

/// What the database holds.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Status {
    pub path: String,
    pub records: u64,
    /// Records per OSV ecosystem (`Debian:12`, `PyPI`, …).
    pub ecosystems: BTreeMap<String, u64>,
    /// When the last import finished (RFC 3339, UTC).
    pub updated_at: Option<String>,
    /// The same, in seconds since the epoch.
    pub updated_at_epoch: Option<i64>,
    /// The newest `modified` among the records.
    pub newest_record: Option<String>,
}

/// The OSV database of a directory.
#[derive(Debug)]
pub struct Database {
    conn: rusqlite::Connection,
    path: PathBuf,
}

/// The name a package is indexed under in its ecosystem (PyPI names in PEP 503 form).
pub fn index_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        normalize_python_name(name)
    } else {
        name.to_owned()
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An epoch time as RFC 3339 in UTC (`2026-12-04T10:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl Database {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Database, ScanError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ScanError::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join("osv.db");
        let db_err = |e: rusqlite::Error| ScanError::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let conn = rusqlite::Connection::open(&path).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS records (
                 id TEXT PRIMARY KEY, modified TEXT NOT NULL, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS affects (
                 ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL,
                 PRIMARY KEY (ecosystem, name, id)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS affects_by_id ON affects (id);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(db_err)?;
        Ok(Database { conn, path })
    }

    fn err(&self, e: impl std::fmt::Display) -> ScanError {
        ScanError::Database {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Imports a JSON record, a `.zip` of them, or a directory holding either (recursively).
    pub fn import_path(&mut self, path: &Path) -> Result<ImportReport, ScanError> {
        let mut files = Vec::new();
        collect(path, &mut files)?;
        // The transaction holds the connection: errors name the database without `self`.
        let db_path = self.path.display().to_string();
        let db_err = |e: rusqlite::Error| ScanError::Database {
            path: db_path.clone(),
            message: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(db_err)?;
        let mut report = ImportReport::default();
        for f in files {
            let what = f.display().to_string();
            let is_zip = f.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
            let file = std::fs::File::open(&f).map_err(|e| ScanError::io(what.clone(), e))?;
            if is_zip {
                import_zip(&tx, file, &what, &mut report)?;
            } else {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                if len > MAX_RECORD {
                    report
                        .rejected
                        .push(format!("{what}: {len} bytes, more than a record may be"));
                    continue;
                }
                let mut data = Vec::new();
                file.take(MAX_RECORD)
                    .read_to_end(&mut data)
                    .map_err(|e| ScanError::io(what.clone(), e))?;
                store(&tx, &data, &what, &mut report)?;
            }
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('updated_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![now_secs().to_string()],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(report)
    }

    /// The records that name a package of an ecosystem, withdrawn ones left out.
    pub fn lookup(&self, ecosystem: &str, name: &str) -> Result<Vec<Record>, ScanError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.body FROM affects a JOIN records r ON r.id = a.id
                 WHERE a.ecosystem = ?1 AND a.name = ?2 ORDER BY r.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ecosystem, index_name(ecosystem, name)], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for body in rows {
            let body = body.map_err(|e| self.err(e))?;
            let rec: Record = serde_json::from_slice(&body).map_err(|e| self.err(e))?;
            if rec.withdrawn.is_none() {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// When the database last changed (seconds since the epoch); `None`: never filled.
    pub fn updated_at(&self) -> Result<Option<i64>, ScanError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'updated_at'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(|e| self.err(e))?
            .and_then(|v| v.parse().ok()))
    }

    /// Whether the database holds no record (without counting them).
    pub fn is_empty(&self) -> Result<bool, ScanError> {
        self.conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM records)", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// Counts per ecosystem and the database's age.
    pub fn status(&self) -> Result<Status, ScanError> {
        let records: i64 = self
            .conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare("SELECT ecosystem, count(DISTINCT id) FROM affects GROUP BY ecosystem")
            .map_err(|e| self.err(e))?;
        let ecosystems = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?
            .map(|r| r.map(|(k, v)| (k, u64::try_from(v).unwrap_or(0))))
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(|e| self.err(e))?;
        let updated_at_epoch = self.updated_at()?;
        let updated_at = updated_at_epoch.map(|s| rfc3339(u64::try_from(s).unwrap_or(0)));
        let newest_record = self
            .conn
            .query_row("SELECT max(modified) FROM records", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(Status {
            path: self.path.display().to_string(),
            records: u64::try_from(records).unwrap_or(0),
            ecosystems,
            updated_at,
            updated_at_epoch,
            newest_record,
        })
    }
}

/// The JSON and zip files under a path (a file is itself).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ScanError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| ScanError::io(path.display().to_string(), e))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ScanError::io(path.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let is_dir = std::fs::symlink_metadata(&e).is_ok_and(|m| m.is_dir());
            let wanted = e
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("json") || x.eq_ignore_ascii_case("zip"));
            if is_dir || wanted {
                collect(&e, out)?;
            }
        }
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn import_zip<R: Read + Seek>(
    tx: &rusqlite::Transaction<'_>,
    reader: R,
    what: &str,
    report: &mut ImportReport,
) -> Result<(), ScanError> {
    let bad = |e: zip::result::ZipError| ScanError::Record {
        what: what.to_owned(),
        message: format!("not a readable zip: {e}"),
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(bad)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        let Ok(inner) = entry.name().map(|n| n.into_owned()) else {
            report
                .rejected
                .push(format!("{what}: entry {i} has no readable name"));
            continue;
        };
        if !entry.is_file() || !inner.to_ascii_lowercase().ends_with(".json") {
            continue;
        }
        let name = format!("{what}!{inner}");
        if entry.size() > MAX_RECORD {
            report.rejected.push(format!(
                "{name}: {} bytes, more than a record may be",
                entry.size()
            ));
            continue;
        }
        let mut data = Vec::new();
        (&mut entry)
            .take(MAX_RECORD)
            .read_to_end(&mut data)
            .map_err(|e| ScanError::io(name.clone(), e))?;
        store(tx, &data, &name, report)?;
    }
    Ok(())
}

/// Stores one record unless an equally new or newer one is stored.
fn store(
    tx: &rusqlite::Transaction<'_>,
    data: &[u8],
    what: &str,
    report: &mut ImportReport,
) -> Result<(), ScanError> {
    let rec: Record = match serde_json::from_slice(data) {
        Ok(r) => r,
        Err(e) => {
            report
                .rejected
                .push(format!("{what}: not an OSV record: {e}"));
            return Ok(());
        }
    };
    if rec.id.is_empty() {
        report
            .rejected
            .push(format!("{what}: a record without an id"));
        return Ok(());
    }
    let db = |e: rusqlite::Error| ScanError::Database {
        path: what.to_owned(),
        message: e.to_string(),
    };
    let stored: Option<String> = tx
        .query_row(
            "SELECT modified FROM records WHERE id = ?1",
            params![rec.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if stored.is_some_and(|m| m >= rec.modified) {
        report.unchanged += 1;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO records (id, modified, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, body = excluded.body",
        params![rec.id, rec.modified, data],
    )
    .map_err(db)?;
    tx.execute("DELETE FROM affects WHERE id = ?1", params![rec.id])
        .map_err(db)?;
    for a in &rec.affected {
        let Some(p) = &a.package else { continue };
        if p.ecosystem.is_empty() || p.name.is_empty() {
            continue;
        }
        tx.execute(
            "INSERT OR IGNORE INTO affects (ecosystem, name, id) VALUES (?1, ?2, ?3)",
            params![p.ecosystem, index_name(&p.ecosystem, &p.name), rec.id],
        )
        .map_err(db)?;
    }
    report.imported += 1;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const REQUESTS: &str = r#"{"id":"GHSA-x84v-xcm2-53pg","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2018-18074"],
        "affected":[{"package":{"ecosystem":"PyPI","name":"requests"},
        "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.20.0"}]}]}]}"#;

    #[test]
    fn imports_files_zips_and_directories_and_looks_up_by_package() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("nested")).unwrap();
        std::fs::write(src.join("GHSA-x84v-xcm2-53pg.json"), REQUESTS).unwrap();
        std::fs::write(src.join("nested/broken.json"), "{").unwrap();
        std::fs::write(src.join("README.txt"), "not a record").unwrap();
        // An all.zip as osv.dev serves it.
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        z.start_file(
            "DEBIAN-CVE-2099-0001.json",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(
            br#"{"id":"DEBIAN-CVE-2099-0001","modified":"2024-02-02T00:00:00Z",
                "affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
        )
        .unwrap();
        let zipped = z.finish().unwrap().into_inner();
        std::fs::write(src.join("all.zip"), zipped).unwrap();

        let mut db = Database::open(&dir.path().join("db")).unwrap();
        let r = db.import_path(&src).unwrap();
        assert_eq!(r.imported, 2, "{r:?}");
        assert_eq!(r.rejected.len(), 1, "{r:?}");
        // Again: nothing newer.
        let again = db.import_path(&src).unwrap();
        assert_eq!((again.imported, again.unchanged), (0, 2));
        assert_eq!(db.lookup("PyPI", "Requests").unwrap().len(), 1);
        assert_eq!(
            db.lookup("Debian:12", "openssl").unwrap()[0].id,
            "DEBIAN-CVE-2099-0001"
        );
        assert!(db.lookup("Debian:11", "openssl").unwrap().is_empty());
        let s = db.status().unwrap();
        assert_eq!(s.records, 2);
        assert_eq!(s.ecosystems["PyPI"], 1);
        assert!(s.updated_at.unwrap().ends_with('Z'));
        // A newer version of a record replaces it; a withdrawn one stops matching.
        let newer = REQUESTS.replace("2024-01-01", "2025-01-01").replace(
            "\"aliases\"",
            "\"withdrawn\":\"2025-01-01T00:00:00Z\",\"aliases\"",
        );
        std::fs::write(src.join("GHSA-x84v-xcm2-53pg.json"), newer).unwrap();
        let r = db
            .import_path(&src.join("GHSA-x84v-xcm2-53pg.json"))
            .unwrap();
        assert_eq!(r.imported, 1);
        assert!(db.lookup("PyPI", "requests").unwrap().is_empty());
    }
}
