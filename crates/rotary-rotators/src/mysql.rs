//! The built-in MySQL/MariaDB rotator's driver: `'user'@'host'` accounts,
//! string quoting that is right whatever the session's `sql_mode`.
//!
//! On MariaDB the new password is sent as its `mysql_native_password` hash
//! (`SET PASSWORD … = '*…'`), computed here, so the plaintext is not in the
//! statement. MySQL 8 has no such form for its default plugin: there the
//! password is sent in `IDENTIFIED BY '…'` (MySQL masks it in its logs).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};

use crate::builtin::{ConnectError, Driver, SetError, Target};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ER_ACCESS_DENIED_ERROR: wrong user or password.
const ACCESS_DENIED: &[u16] = &[1045];

pub struct MySql;

/// `*` + upper-case hex of SHA1(SHA1(password)): the `mysql_native_password` hash.
pub fn native_password_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    format!("*{}", outer.iter().map(|b| format!("{b:02X}")).collect::<String>())
}

/// A string literal. With `NO_BACKSLASH_ESCAPES` only `'` is special; without
/// it, backslashes (and NUL) must be escaped too.
pub fn quote_string(s: &str, backslash_escapes: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if backslash_escapes => out.push_str("\\\\"),
            '\0' if backslash_escapes => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl Driver for MySql {
    type Conn = mysql_async::Conn;
    const DEFAULT_PORT: u16 = 3306;
    const DEFAULT_DATABASE: &'static str = "";

    async fn login(&self, t: &Target, user: &str, password: &SecretString) -> Result<Self::Conn, ConnectError> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(t.host.clone())
            .tcp_port(t.port)
            .user(Some(user))
            .pass(Some(password.expose_secret()))
            .db_name((!t.database.is_empty()).then(|| t.database.clone()))
            .prefer_socket(false);
        match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(mysql_async::Error::Server(e))) if ACCESS_DENIED.contains(&e.code) => Err(ConnectError::Rejected),
            Ok(Err(mysql_async::Error::Server(e))) if e.code == 1044 => Err(ConnectError::Unreachable(format!(
                "the user may log in but not use database {:?} (error 1044)",
                t.database
            ))),
            Ok(Err(mysql_async::Error::Server(e))) => {
                Err(ConnectError::Unreachable(format!("the server refused the connection (error {})", e.code)))
            }
            Ok(Err(_)) => Err(ConnectError::Unreachable("the server could not be reached".into())),
            Err(_) => Err(ConnectError::Unreachable("the connection timed out".into())),
        }
    }

    async fn set_password(
        &self,
        mut conn: Self::Conn,
        t: &Target,
        new: &SecretString,
        own: bool,
    ) -> Result<(), SetError> {
        let lost = || {
            SetError::Failed(
                "the connection was lost while changing the password (outcome unknown; pending kept)".into(),
            )
        };
        let server = |e: mysql_async::Error| match e {
            // Policy refusals (ER_NOT_VALID_PASSWORD 1819 and friends, and 1290:
            // strict password validation refuses hashed passwords): not applied.
            mysql_async::Error::Server(s) if [1819, 1872, 1396, 1290].contains(&s.code) => {
                SetError::Rejected(format!("error {}", s.code))
            }
            mysql_async::Error::Server(s) => {
                SetError::Failed(format!("changing the password failed (error {})", s.code))
            }
            _ => lost(),
        };
        let (mode, version): (String, String) =
            conn.query_first("SELECT @@SESSION.sql_mode, VERSION()").await.map_err(server)?.ok_or_else(lost)?;
        let bs = !mode.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES");
        let account = format!("{}@{}", quote_string(&t.user, bs), quote_string(&t.user_host, bs));
        // A user may set its own password without privileges only through
        // `SET PASSWORD` (MariaDB) or `ALTER USER CURRENT_USER()` (MySQL).
        let sql = match (version.contains("MariaDB"), own) {
            (true, true) => format!("SET PASSWORD = '{}'", native_password_hash(new.expose_secret())),
            // An admin needs the CREATE USER privilege (or UPDATE on mysql.*).
            (true, false) => {
                format!("ALTER USER {account} IDENTIFIED BY PASSWORD '{}'", native_password_hash(new.expose_secret()))
            }
            (false, true) => {
                format!("ALTER USER CURRENT_USER() IDENTIFIED BY {}", quote_string(new.expose_secret(), bs))
            }
            (false, false) => format!("ALTER USER {account} IDENTIFIED BY {}", quote_string(new.expose_secret(), bs)),
        };
        conn.query_drop(sql).await.map_err(server)?;
        let _ = conn.disconnect().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_mysqls_password_function() {
        // SELECT PASSWORD('secret') on MariaDB 10.11
        assert_eq!(native_password_hash("secret"), "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7");
    }

    #[test]
    fn quoting_under_both_sql_modes() {
        assert_eq!(quote_string("a'b\\c", true), "'a''b\\\\c'");
        assert_eq!(quote_string("a'b\\c", false), "'a''b\\c'");
    }
}
