//! The random value generator: NCP's `generate-random-secret` parameters and
//! defaults, one policy used by every path that makes a value (the action API,
//! `POST pending`, the built-in rotators). OS CSPRNG only.

use rand::Rng;
use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use secrecy::SecretString;
use serde::Deserialize;

use crate::error::CoreError;

pub const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
pub const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub const DIGITS: &str = "0123456789";
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// NCP's parameters; absent fields take NCP's defaults.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct PasswordPolicy {
    /// 5–32, default 12.
    pub length: u32,
    pub exclude_characters: String,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub exclude_uppercase: bool,
    pub exclude_lowercase: bool,
    /// Default true (as NCP).
    pub include_space: bool,
    /// Default true: at least one character of every included class.
    pub require_each_included_type: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: 12,
            exclude_characters: String::new(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            include_space: true,
            require_each_included_type: true,
        }
    }
}

impl PasswordPolicy {
    /// The character classes left after exclusions (empty classes dropped).
    pub fn classes(&self) -> Vec<Vec<char>> {
        let mut classes = vec![];
        let mut add = |on: bool, set: &str| {
            if on {
                let c: Vec<char> = set.chars().filter(|c| !self.exclude_characters.contains(*c)).collect();
                if !c.is_empty() {
                    classes.push(c);
                }
            }
        };
        add(!self.exclude_lowercase, LOWER);
        add(!self.exclude_uppercase, UPPER);
        add(!self.exclude_numbers, DIGITS);
        add(!self.exclude_punctuation, PUNCTUATION);
        add(self.include_space, " ");
        classes
    }

    pub fn validate(&self) -> Result<(), CoreError> {
        if !(5..=32).contains(&self.length) {
            return Err(CoreError::invalid("length must be 5-32"));
        }
        let classes = self.classes();
        if classes.is_empty() {
            return Err(CoreError::invalid("the policy excludes every character"));
        }
        if self.require_each_included_type && classes.len() > self.length as usize {
            return Err(CoreError::invalid(format!(
                "length {} is too short to include one character of each of the {} included types",
                self.length,
                classes.len()
            )));
        }
        Ok(())
    }

    pub fn generate(&self) -> Result<SecretString, CoreError> {
        self.validate()?;
        let classes = self.classes();
        let all: Vec<char> = classes.iter().flatten().copied().collect();
        let len = self.length as usize;
        let mut out: Vec<char> = Vec::with_capacity(len);
        if self.require_each_included_type {
            for c in &classes {
                out.push(c[OsRng.gen_range(0..c.len())]);
            }
        }
        while out.len() < len {
            out.push(all[OsRng.gen_range(0..all.len())]);
        }
        out.shuffle(&mut OsRng);
        let s: String = out.iter().collect();
        out.iter_mut().for_each(|c| *c = '\0');
        Ok(SecretString::from(s))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn defaults_are_ncps() {
        let p: PasswordPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, PasswordPolicy::default());
        assert_eq!(p.generate().unwrap().expose_secret().chars().count(), 12);
        assert!(serde_json::from_str::<PasswordPolicy>(r#"{"length":4}"#).unwrap().generate().is_err());
        assert!(serde_json::from_str::<PasswordPolicy>(r#"{"length":33}"#).unwrap().generate().is_err());
        let none = PasswordPolicy {
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            include_space: false,
            ..Default::default()
        };
        assert!(none.generate().is_err());
    }

    /// The issue's property: 100,000 generations at length 32 excluding
    /// `/\@"'[]{}%#*` and space never contain one, and always contain every
    /// required class.
    #[test]
    fn exclusions_and_required_classes_hold_over_100k_generations() {
        let p = PasswordPolicy {
            length: 32,
            exclude_characters: "/\\@\"'[]{}%#* ".into(),
            include_space: false,
            ..Default::default()
        };
        let excluded: Vec<char> = "/\\@\"'[]{}%#* ".chars().collect();
        for _ in 0..100_000 {
            let s = p.generate().unwrap();
            let s = s.expose_secret();
            assert_eq!(s.chars().count(), 32);
            assert!(!s.chars().any(|c| excluded.contains(&c)), "excluded character generated");
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.chars().any(|c| PUNCTUATION.contains(c)));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_valid_policy_is_obeyed(len in 5u32..=32, lower: bool, upper: bool, num: bool, punct: bool, space: bool,
                                      excl in "[a-z0-9!@#]{0,8}") {
            let p = PasswordPolicy {
                length: len, exclude_characters: excl.clone(), exclude_lowercase: lower, exclude_uppercase: upper,
                exclude_numbers: num, exclude_punctuation: punct, include_space: space, require_each_included_type: true,
            };
            if p.validate().is_ok() {
                let s = p.generate().unwrap();
                let s = s.expose_secret();
                proptest::prop_assert_eq!(s.chars().count(), len as usize);
                proptest::prop_assert!(!s.chars().any(|c| excl.contains(c)));
                for class in p.classes() {
                    proptest::prop_assert!(s.chars().any(|c| class.contains(&c)));
                }
            }
        }
    }
}
