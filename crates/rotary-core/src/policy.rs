//! Access policies: a role and an optional glob over secret names.

use crate::error::CoreError;

/// Roles are ordered: each includes everything the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// List secrets and read their details, never values.
    Metadata,
    /// Metadata plus reading values.
    Reader,
    /// Reader plus creating, changing, rotating and deleting secrets.
    Manager,
    /// Everything, including access keys and the audit log.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        match s {
            "metadata" => Ok(Self::Metadata),
            "reader" => Ok(Self::Reader),
            "manager" => Ok(Self::Manager),
            "admin" => Ok(Self::Admin),
            _ => Err(CoreError::invalid(format!("unknown role {s:?}: expected metadata, reader, manager or admin"))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::Reader => "reader",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }
}

/// What an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadMetadata,
    ReadValue,
    Manage,
    /// Access keys and audit: needs an admin key without a name pattern.
    Administer,
}

impl Permission {
    fn min_role(self) -> Role {
        match self {
            Self::ReadMetadata => Role::Metadata,
            Self::ReadValue => Role::Reader,
            Self::Manage => Role::Manager,
            Self::Administer => Role::Admin,
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Self::ReadMetadata => "read secret metadata",
            Self::ReadValue => "read secret values",
            Self::Manage => "change secrets",
            Self::Administer => "administer access keys, triggers, generated values and audit",
        }
    }
}

/// A glob over secret names: `*` matches any run of characters (including
/// `/`), `?` one character. Only those two are special, so the same pattern
/// translates exactly to SQLite `GLOB` and to SQL `LIKE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if s.is_empty() || s.len() > 256 {
            return Err(CoreError::invalid("secretPattern must be 1-256 characters"));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_./*?".contains(*c))) {
            return Err(CoreError::invalid(format!(
                "secretPattern may contain only letters, digits, - _ . / and the wildcards * ? (found {bad:?})"
            )));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear in practice.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub role: Role,
    pub pattern: Option<NamePattern>,
}

impl Policy {
    /// Whether the key's pattern covers the secret `name` at all. Secrets
    /// outside it are answered as if they did not exist.
    pub fn sees(&self, name: &str) -> bool {
        self.pattern.as_ref().is_none_or(|p| p.matches(name))
    }

    /// `name` is the secret concerned, when there is one.
    pub fn check(&self, perm: Permission, name: Option<&str>) -> Result<(), CoreError> {
        if self.role < perm.min_role() {
            return Err(CoreError::forbidden(format!(
                "access key role {:?} may not {}",
                self.role.as_str(),
                perm.describe()
            )));
        }
        if perm == Permission::Administer && self.pattern.is_some() {
            return Err(CoreError::forbidden(format!(
                "an admin key limited to a secret pattern may not {}",
                perm.describe()
            )));
        }
        if let (Some(p), Some(n)) = (&self.pattern, name)
            && !p.matches(n)
        {
            {
                return Err(CoreError::forbidden(format!(
                    "access key may not {} of this secret (outside its pattern {:?})",
                    perm.describe(),
                    p.as_str()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        let p = |s: &str| NamePattern::parse(s).unwrap();
        assert!(p("app/*").matches("app/db"));
        assert!(p("app/*").matches("app/x/y"));
        assert!(!p("app/*").matches("apps/db"));
        assert!(p("*-prod").matches("db-prod"));
        assert!(p("d?").matches("db"));
        assert!(!p("d?").matches("dbb"));
        assert!(p("*a*b*").matches("xxaxxbxx"));
        assert!(NamePattern::parse("app/[a]").is_err());
    }

    #[test]
    fn roles_are_ordered() {
        let reader = Policy { role: Role::Reader, pattern: None };
        assert!(reader.check(Permission::ReadValue, Some("x")).is_ok());
        assert!(reader.check(Permission::Manage, Some("x")).is_err());
        let scoped = Policy { role: Role::Admin, pattern: Some(NamePattern::parse("app/*").unwrap()) };
        assert!(scoped.check(Permission::Manage, Some("app/a")).is_ok());
        assert!(scoped.check(Permission::Manage, Some("other")).is_err());
        assert!(scoped.check(Permission::Administer, None).is_err());
    }
}
