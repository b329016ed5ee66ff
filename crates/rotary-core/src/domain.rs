//! Domain newtypes with fallible constructors: parse, don't validate.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::error::CoreError;

pub const MAX_VALUE_BYTES: usize = 10_000;
pub const MAX_VALUE_KEYS: usize = 100;
pub const MAX_NAME_LEN: usize = 128;
pub const MIN_NAME_LEN: usize = 1;
pub const MAX_MEMO_LEN: usize = 1_000;

/// A secret's name: 1–128 characters of ASCII letters, digits and `-_./`,
/// starting with a letter or digit. NCP accepts 3–15 such characters; every
/// NCP name is accepted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let len = s.chars().count();
        if !(MIN_NAME_LEN..=MAX_NAME_LEN).contains(&len) {
            return Err(CoreError::invalid(format!(
                "secretName must be {MIN_NAME_LEN}-{MAX_NAME_LEN} characters long (got {len})"
            )));
        }
        if !s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Err(CoreError::invalid("secretName must start with a letter or a digit"));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_./".contains(*c))) {
            return Err(CoreError::invalid(format!(
                "secretName may contain only letters, digits and - _ . / (found {:?})",
                bad
            )));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret value: a JSON object of 1–100 string values, at most 10,000 bytes
/// as JSON. Held as its canonical (compact, key-sorted) JSON text in a
/// `SecretString`, so `Debug` prints `[REDACTED]` and the text is zeroized on
/// drop. The key names are not secret and are kept in the clear.
pub struct SecretValue {
    json: SecretString,
    keys: Vec<String>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue").field("keys", &self.keys).field("json", &"[REDACTED]").finish()
    }
}

impl SecretValue {
    /// Parses the JSON text a client sent. Error messages name keys and types,
    /// never the text or a value.
    pub fn parse(text: &SecretString) -> Result<Self, CoreError> {
        let raw = text.expose_secret();
        // A coarse bound before parsing (escapes can make the text up to six
        // times longer than the value); the real limit is checked below on
        // the compact form that is stored.
        if raw.len() > MAX_VALUE_BYTES * 6 {
            return Err(CoreError::invalid(format!(
                "secret value is {} bytes; the limit is {MAX_VALUE_BYTES} (as compact JSON)",
                raw.len()
            )));
        }
        let parsed: Value = serde_json::from_str(raw).map_err(|e| {
            CoreError::invalid(format!("secret value is not valid JSON (line {}, column {})", e.line(), e.column()))
        })?;
        let Value::Object(map) = parsed else {
            return Err(CoreError::invalid(format!(
                "secret value must be a JSON object of strings, not {}",
                type_name(&parsed)
            )));
        };
        if map.is_empty() || map.len() > MAX_VALUE_KEYS {
            return Err(CoreError::invalid(format!(
                "secret value must have 1-{MAX_VALUE_KEYS} keys (got {})",
                map.len()
            )));
        }
        for (k, v) in &map {
            if k.is_empty() {
                return Err(CoreError::invalid("secret value has an empty key"));
            }
            if !v.is_string() {
                return Err(CoreError::invalid(format!("value of key {:?} must be a string, not {}", k, type_name(v))));
            }
        }
        let keys = map.keys().cloned().collect();
        // invariant: a Map of Strings always serializes
        let canonical = serde_json::to_string(&map).expect("a JSON map serializes");
        if canonical.len() > MAX_VALUE_BYTES {
            return Err(CoreError::invalid(format!(
                "secret value is {} bytes as compact JSON; the limit is {MAX_VALUE_BYTES}",
                canonical.len()
            )));
        }
        Ok(Self { json: canonical.into(), keys })
    }

    /// Parses text that came out of the store (already canonical).
    pub fn from_stored(bytes: &[u8]) -> Result<Self, CoreError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| CoreError::new(crate::ErrorKind::Internal, "stored value is not UTF-8"))?;
        Self::parse(&SecretString::from(text.to_owned()))
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn json(&self) -> &SecretString {
        &self.json
    }

    /// The value of one key, for rotators. Exposes a secret: use at the point of need.
    pub fn get(&self, key: &str) -> Option<SecretString> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(self.json.expose_secret()).ok()?;
        map.get(key).and_then(|v| v.as_str()).map(|s| SecretString::from(s.to_owned()))
    }

    /// Every value, for redaction of function output.
    pub fn values(&self) -> Vec<SecretString> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(self.json.expose_secret()).unwrap_or_default();
        map.values().filter_map(|v| v.as_str()).map(|s| SecretString::from(s.to_owned())).collect()
    }

    /// Checks that every rotation target is a key of this value.
    pub fn check_targets(&self, targets: &[String]) -> Result<(), CoreError> {
        for t in targets {
            if !self.keys.iter().any(|k| k == t) {
                return Err(CoreError::invalid(format!(
                    "rotation target {:?} is not a key of the secret value (keys: {})",
                    t,
                    self.keys.join(", ")
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = targets.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(CoreError::invalid(format!("rotation target {dup:?} is listed twice")));
        }
        Ok(())
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Active,
    Pending,
    Previous,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Active, Stage::Pending, Stage::Previous];

    pub fn parse(s: &str) -> Result<Self, CoreError> {
        match s.to_ascii_lowercase().as_str() {
            "active" => Ok(Self::Active),
            "pending" => Ok(Self::Pending),
            "previous" => Ok(Self::Previous),
            _ => Err(CoreError::invalid(format!("unknown stage {s:?}: expected active, pending or previous"))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Previous => "previous",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStatus {
    Enable,
    Disable,
    Revoke,
    Rotating,
    Destroyed,
}

impl SecretStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "ENABLE",
            Self::Disable => "DISABLE",
            Self::Revoke => "REVOKE",
            Self::Rotating => "ROTATING",
            Self::Destroyed => "DESTROYED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ENABLE" => Self::Enable,
            "DISABLE" => Self::Disable,
            "REVOKE" => Self::Revoke,
            "ROTATING" => Self::Rotating,
            "DESTROYED" => Self::Destroyed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Result<SecretValue, CoreError> {
        SecretValue::parse(&SecretString::from(s.to_owned()))
    }

    #[test]
    fn values_are_objects_of_strings() {
        assert!(v(r#"{"a":"1"}"#).is_ok());
        assert!(v(r#"[]"#).unwrap_err().message.contains("not an array"));
        assert!(v(r#"{}"#).is_err());
        let e = v(r#"{"port":5432,"password":"hunter2"}"#).unwrap_err();
        assert!(e.message.contains("\"port\"") && !e.message.contains("5432"));
        let e = v(r#"{"password":"hunter2""#).unwrap_err();
        assert!(!e.message.contains("hunter2"));
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_VALUE_BYTES));
        assert!(v(&big).unwrap_err().message.contains("limit"));
        let many: Vec<String> = (0..101).map(|i| format!(r#""k{i}":"v""#)).collect();
        assert!(v(&format!("{{{}}}", many.join(","))).is_err());
    }

    #[test]
    fn debug_redacts() {
        let val = v(r#"{"password":"hunter2"}"#).unwrap();
        assert!(!format!("{val:?}").contains("hunter2"));
        assert_eq!(val.get("password").unwrap().expose_secret(), "hunter2");
    }

    #[test]
    fn names() {
        for ok in ["db", "app/prod-db_1.main", "a"] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "é", &"a".repeat(129)] {
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_must_be_keys() {
        let val = v(r#"{"user":"u","password":"p"}"#).unwrap();
        assert!(val.check_targets(&["password".into()]).is_ok());
        assert!(val.check_targets(&["pass".into()]).is_err());
        assert!(val.check_targets(&["password".into(), "password".into()]).is_err());
    }
}
