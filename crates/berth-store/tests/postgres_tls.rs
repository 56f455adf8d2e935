//! PostgreSQL over TLS as libpq's `sslmode` and `sslrootcert` ask, against the throwaway test
//! cluster (which speaks TLS with a certificate for `localhost` only, signed by a CA of its
//! own): the server itself says which of berth's connections are encrypted.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_store::PgMeta;
use common::pg;

fn with(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// berth's connections to database `name`, as the server sees them: (encrypted, plain).
async fn connections(name: &str) -> (i64, i64) {
    let admin = pg::admin_url();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = $1 AND a.application_name = 'berth'",
                &[&name],
            )
            .unwrap();
        (row.get(0), row.get(1))
    })
    .await
    .unwrap()
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// A CA of its own that signed nothing the server has.
fn other_ca(dir: &Path) -> PathBuf {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=not-the-servers-ca",
            "-keyout",
        ])
        .arg(dir.join("other.key"))
        .arg("-out")
        .arg(dir.join("other.crt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.join("other.crt")
}

/// The test cluster's CA, or `None` (and a note) on an external server, whose TLS is unknown.
fn ca() -> Option<PathBuf> {
    let ca = pg::tls_ca();
    if ca.is_none() {
        eprintln!("BERTH_TEST_POSTGRES names an external server: its TLS is not tested");
    }
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_decides_whether_connections_are_encrypted() {
    let Some(_) = ca() else { return };
    // A database each, so no connection of one case is counted in another.
    for (params, want) in [
        // Encrypted, the certificate (for `localhost`, reached as 127.0.0.1) unchecked.
        ("sslmode=require", (1, 0)),
        // The default is libpq's `prefer`: encrypted, since this server offers TLS.
        ("", (1, 0)),
        ("sslmode=disable", (0, 1)),
    ] {
        let db = pg::database();
        let url = if params.is_empty() {
            db.url.clone()
        } else {
            with(&db.url, params)
        };
        let meta = PgMeta::open(&url).await.unwrap();
        assert_eq!(connections(&db_name(&db.url)).await, want, "{params:?}");
        drop(meta);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_modes_check_the_chain_and_the_host_name() {
    let Some(ca) = ca() else { return };
    let dir = tempfile::tempdir().unwrap();
    let other = other_ca(dir.path());
    let db = pg::database();
    let by_ip = db.url.clone();
    let by_name = db.url.replace("@127.0.0.1:", "@localhost:");
    let root = |url: &str, mode: &str, ca: &Path| {
        with(url, &format!("sslmode={mode}&sslrootcert={}", ca.display()))
    };
    // The right CA and the certificate's name: accepted.
    PgMeta::open(&root(&by_name, "verify-full", &ca))
        .await
        .unwrap();
    // The address is not a name the certificate is for: refused by verify-full only.
    let err = PgMeta::open(&root(&by_ip, "verify-full", &ca))
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("NotValidForName"),
        "verify-full to an address the certificate does not name: {err:?}"
    );
    PgMeta::open(&root(&by_ip, "verify-ca", &ca)).await.unwrap();
    // Another CA: refused by every mode that checks the chain (`require` with a root too).
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = PgMeta::open(&root(&by_name, mode, &other))
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("UnknownIssuer"),
            "{mode} with another CA: {err:?}"
        );
    }
    // A root file that is not there: a clear error before any connection.
    let err = PgMeta::open(&root(&by_name, "verify-full", &dir.path().join("none.pem")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("none.pem"), "{err}");
}
