//! TLS for [`crate::PgMeta`]: libpq's `sslmode` and `sslrootcert`, read from the connection
//! string, over rustls (`tokio-postgres-rustls`; the aws-lc-rs provider the rest of berth uses).
//!
//! rust-postgres itself knows only `disable`, `prefer` and `require` and no root certificates,
//! so both settings are taken out of the string here and the rest is handed to it. Their
//! meaning is libpq's:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (the default) | if the server offers TLS | no |
//! | `require` | yes | no; with `sslrootcert`, its chain (as `verify-ca`) |
//! | `verify-ca` | yes | chain, to `sslrootcert` (else the system's roots) |
//! | `verify-full` | yes | chain and host name |
//!
//! `sslrootcert` is a PEM file of CA certificates (a managed database's CA bundle), or
//! `system` for the system's roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// What a connection string asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    System,
    File(PathBuf),
}

/// The TLS settings of a connection string, and the string without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub mode: Mode,
    pub roots: Option<Roots>,
    /// The connection string for rust-postgres.
    pub rest: String,
}

fn bad(msg: String) -> StoreError {
    StoreError::Unsupported(msg)
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?sslmode=…`) or a
/// `key=value` string.
pub(crate) fn settings(conn: &str) -> Result<Settings, StoreError> {
    let mut mode = None;
    let mut roots = None;
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(bad(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        )));
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                roots = Some(if value == "system" {
                    Roots::System
                } else {
                    Roots::File(PathBuf::from(value))
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let v = percent_decode(v)?;
                    if !take(k, &v)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for token in conn.split_whitespace() {
            let (k, v) = token.split_once('=').unwrap_or((token, ""));
            if !take(k, v.trim_matches('\''))? {
                kept.push(token);
            }
        }
        kept.join(" ")
    };
    Ok(Settings {
        mode: mode.unwrap_or(Mode::Prefer),
        roots,
        rest,
    })
}

fn percent_decode(s: &str) -> Result<String, StoreError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("bad percent-encoding in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{s:?} is not UTF-8 once decoded")))
}

impl Settings {
    /// rust-postgres's own mode for these settings.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The TLS connector, `None` when TLS is off.
    pub(crate) fn connector(&self) -> Result<Option<MakeRustlsConnect>, StoreError> {
        if self.mode == Mode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?;
        let check_chain = match self.mode {
            Mode::VerifyCa | Mode::VerifyFull => true,
            // As libpq: a root certificate given makes `require` check the chain.
            Mode::Require => self.roots.is_some(),
            Mode::Prefer | Mode::Disable => false,
        };
        let chain = if check_chain {
            let roots = Arc::new(load_roots(self.roots.as_ref().unwrap_or(&Roots::System))?);
            Some(
                WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|e| bad(format!("TLS roots: {e}")))?,
            )
        } else {
            None
        };
        let verifier: Arc<dyn ServerCertVerifier> = match chain {
            Some(chain) if self.mode == Mode::VerifyFull => chain,
            chain => Arc::new(Lenient {
                algorithms: provider.signature_verification_algorithms,
                chain,
            }),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system certificate webpki cannot use is skipped, as every client does.
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(bad(
                    "sslrootcert=system: no usable root certificate on this system \
                     (install ca-certificates, or give sslrootcert=FILE)"
                        .into(),
                ));
            }
        }
        Roots::File(path) => {
            for cert in read_pem(path)? {
                store
                    .add(cert)
                    .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
            }
            if store.is_empty() {
                return Err(bad(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                )));
            }
        }
    }
    Ok(store)
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))
}

/// `prefer`/`require` without roots (`chain: None`): encrypted, the certificate not checked
/// (libpq's meaning); `verify-ca` (`chain: Some`): the chain checked, the host name not. The
/// handshake's signatures are checked either way. (`verify-full` uses rustls's verifier as is.)
#[derive(Debug)]
struct Lenient {
    algorithms: WebPkiSupportedAlgorithms,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The name is checked after the chain: this error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_tls_settings_out_of_both_forms() {
        let s = settings(
            "postgres://u:p%40ss@db:5432/berth?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.roots, Some(Roots::File(PathBuf::from("/etc/ca.pem"))));
        assert_eq!(
            s.rest,
            "postgres://u:p%40ss@db:5432/berth?application_name=x"
        );
        let s = settings("host=db user=u sslmode=require dbname=berth").unwrap();
        assert_eq!((s.mode, s.roots), (Mode::Require, None));
        assert_eq!(s.rest, "host=db user=u dbname=berth");
        let s = settings("postgres://db/berth").unwrap();
        assert_eq!(s.mode, Mode::Prefer);
        assert_eq!(s.rest, "postgres://db/berth");
        assert_eq!(
            settings("postgres://db/x?sslrootcert=system&sslmode=verify-ca")
                .unwrap()
                .roots,
            Some(Roots::System)
        );
        assert!(settings("postgres://db/x?sslmode=sometimes").is_err());
        assert!(settings("postgres://db/x?sslrootcert=%zz").is_err());
    }
}
