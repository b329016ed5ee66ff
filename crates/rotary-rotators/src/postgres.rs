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

use crate::builtin::{ConnectError, Driver, SetError, Target};

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
        match cfg.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
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
