//! Rendering a secret value for shells, dotenv files and connection URLs.

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// An environment variable name: upper case, `[A-Z0-9_]`, not starting with a digit.
pub fn env_name(prefix: &str, key: &str) -> String {
    let mut n: String = format!("{prefix}{key}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        n.insert(0, '_');
    }
    n
}

/// `export NAME='value'` lines, safe to `eval` in any POSIX shell.
pub fn env_lines(map: &Map<String, Value>, prefix: &str) -> String {
    map.iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_default().replace('\'', "'\\''");
            format!("export {}='{}'\n", env_name(prefix, k), v)
        })
        .collect()
}

/// `NAME="value"` lines with `\\`, `"`, `$` and newlines escaped.
pub fn dotenv_lines(map: &Map<String, Value>, prefix: &str) -> String {
    map.iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_default()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('\n', "\\n");
            format!("{}=\"{}\"\n", env_name(prefix, k), v)
        })
        .collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so that
/// no URL parser, however naive, can misread a user or password.
fn strict_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn pick<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| map.get(*k).and_then(Value::as_str))
}

/// A connection URL from a credential secret (`host`, `port`, `username`,
/// `password`, `database`, or NCP's `cdb*` keys); every part percent-encoded.
pub fn connection_url(map: &Map<String, Value>) -> anyhow::Result<String> {
    let host = pick(map, &["host", "cdbHost"]).context("the secret has no host key")?;
    let port = pick(map, &["port", "cdbPort"]);
    let scheme = match (pick(map, &["engine", "scheme", "type"]), port) {
        (Some(s), _) => s.to_ascii_lowercase(),
        (None, Some("3306")) => "mysql".into(),
        _ => "postgresql".into(),
    };
    let mut url = url::Url::parse(&format!("{scheme}://placeholder")).context("invalid scheme")?;
    url.set_host(Some(host)).with_context(|| format!("invalid host {host:?}"))?;
    if let Some(p) = port {
        let p: u16 = p.parse().with_context(|| format!("invalid port {p:?}"))?;
        url.set_port(Some(p)).map_err(|_| anyhow::anyhow!("this URL cannot have a port"))?;
    }
    if let Some(u) = pick(map, &["username", "user", "cdbUser"]) {
        url.set_username(&strict_encode(u)).map_err(|_| anyhow::anyhow!("this URL cannot have a user"))?;
    }
    if let Some(p) = pick(map, &["password", "cdbPassword"]) {
        url.set_password(Some(&strict_encode(p))).map_err(|_| anyhow::anyhow!("this URL cannot have a password"))?;
    }
    if let Some(d) = pick(map, &["database", "dbname", "cdbDatabase"]) {
        url.path_segments_mut().map_err(|_| anyhow::anyhow!("this URL cannot have a path"))?.push(d);
    }
    if url.host_str().is_none() {
        bail!("invalid host");
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_round_trips_every_special_character() {
        let pw = "p@ss:w/rd?#[]%^&=+ '\"\\;ab%3Ecd";
        let map: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "host": "db.example", "port": "5432", "username": "app@corp", "password": pw, "database": "my db"
        }))
        .unwrap();
        let u = url::Url::parse(&connection_url(&map).unwrap()).unwrap();
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        };
        assert_eq!(dec(u.password().unwrap()), pw);
        assert_eq!(dec(u.username()), "app@corp");
        assert_eq!(u.host_str(), Some("db.example"));
        assert_eq!(u.port(), Some(5432));
    }

    #[test]
    fn env_lines_are_shell_safe() {
        let map: Map<String, Value> = serde_json::from_value(serde_json::json!({"db-pass": "it's $HOME `x`"})).unwrap();
        assert_eq!(env_lines(&map, "APP_"), "export APP_DB_PASS='it'\\''s $HOME `x`'\n");
        assert_eq!(dotenv_lines(&map, ""), "DB_PASS=\"it's \\$HOME `x`\"\n");
    }
}
