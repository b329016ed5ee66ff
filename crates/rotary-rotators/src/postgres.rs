//! The built-in PostgreSQL rotator's driver. The new password is sent as a
//! SCRAM-SHA-256 verifier computed here, so the plaintext never reaches the
//! server, its statement log or its replicas.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

use tokio_postgres::config::SslMode;

use crate::builtin::{ConnectError, Driver, SetError, Target};

/// A rustls connector for `prefer`/`require` (encrypted, server not
/// verified, as libpq does without a root certificate) or `verify-full`
/// (chain checked against `ca_file`, host name checked).
fn tls_connector(mode: &str, ca_file: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::ClientConfig;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = match mode {
        "verify-full" => {
            let path = ca_file.ok_or("sslmode verify-full needs caFile")?;
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(path).map_err(|e| format!("caFile {path:?} cannot be read: {}", e.kind()))?;
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|_| format!("caFile {path:?} is not PEM certificates"))?;
                roots.add(cert).map_err(|e| format!("caFile {path:?}: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<rustls::Error>() || s.to_string().contains("TLS") {
            return true;
        }
        src = s.source();
    }
    false
}

/// The TLS problem in words (rustls's text: certificates and protocol, never credentials).
fn tls_reason(e: &tokio_postgres::Error) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return r.to_string();
        }
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return r.to_string();
        }
        src = s.source();
    }
    "the server does not support TLS or the handshake failed".to_owned()
}

/// `prefer`/`require`: encryption without server authentication (libpq's meaning).
#[derive(Debug)]
struct NoVerify(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// PostgreSQL's default SCRAM iteration count.
const SCRAM_ITERATIONS: u32 = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802, 7677), as
/// PostgreSQL stores it; `ALTER ROLE … PASSWORD '<verifier>'` takes it as is.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        // invariant: HMAC accepts keys of any length
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    salted.iter_mut().for_each(|b| *b = 0);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// A quoted identifier: any name, including `"`, spaces, keywords, non-ASCII.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL driver of the built-in rotator.
pub struct Postgres;

impl Driver for Postgres {
    type Conn = tokio_postgres::Client;
    const DEFAULT_PORT: u16 = 5432;
    const DEFAULT_DATABASE: &'static str = "postgres";

    async fn login(&self, t: &Target, user: &str, password: &SecretString) -> Result<Self::Conn, ConnectError> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&t.host)
            .port(t.port)
            .dbname(&t.database)
            .user(user)
            .password(password.expose_secret())
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("rotary");
        let connected = match t.sslmode.as_str() {
            "" | "disable" => cfg.connect(tokio_postgres::NoTls).await.map(|(c, conn)| {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                c
            }),
            mode => {
                let tls = tls_connector(mode, t.ca_file.as_deref()).map_err(ConnectError::Unreachable)?;
                cfg.ssl_mode(if mode == "prefer" { SslMode::Prefer } else { SslMode::Require });
                cfg.connect(tls).await.map(|(c, conn)| {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    c
                })
            }
        };
        match connected {
            Ok(client) => Ok(client),
            Err(e) if e.code().is_none() && is_tls_error(&e) => {
                Err(ConnectError::Unreachable(format!("TLS failure: {}", tls_reason(&e))))
            }
            Err(e) => match e.code() {
                Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    Err(ConnectError::Rejected)
                }
                // Never the driver's error text: only the kind of failure.
                Some(c) => {
                    Err(ConnectError::Unreachable(format!("the server refused the connection (SQLSTATE {})", c.code())))
                }
                None => Err(ConnectError::Unreachable("the server could not be reached".into())),
            },
        }
    }

    async fn set_password(&self, conn: Self::Conn, t: &Target, new: &SecretString, _own: bool) -> Result<(), SetError> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let verifier = scram_verifier(new.expose_secret(), &salt, SCRAM_ITERATIONS);
        // The verifier is base64 and `$:` only: safe inside '…'.
        let sql = format!("ALTER ROLE {} PASSWORD '{verifier}'", quote_ident(&t.user));
        conn.batch_execute(&sql).await.map_err(|e| match e.code() {
            // The server answered: a definite refusal, nothing was changed.
            Some(c) if c.code().starts_with("22") || c.code().starts_with("28") => {
                SetError::Rejected(format!("SQLSTATE {}", c.code()))
            }
            Some(c) => SetError::Failed(format!("ALTER ROLE failed (SQLSTATE {})", c.code())),
            // No answer: the change may or may not have happened; pending is kept.
            None => {
                SetError::Failed("the connection was lost during ALTER ROLE (outcome unknown; pending kept)".into())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example password and salt ("pencil", W22ZaJ0SNY7soEsUEjb6gQ==,
    /// 4096 iterations); the expected verifier was computed independently with
    /// Python's hashlib/hmac. The integration tests log in with verifiers made
    /// here, which PostgreSQL only accepts if they are right.
    #[test]
    fn verifier_format() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_verifier("pencil", &salt, 4096);
        assert!(v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"), "{v}");
        assert_eq!(v, include_str!("scram_kat.txt").trim());
    }

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("app\"q"), "\"app\"\"q\"");
        assert_eq!(quote_ident("select"), "\"select\"");
    }
}
