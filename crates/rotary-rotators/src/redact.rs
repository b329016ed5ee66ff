//! Redaction of secret values from free text (function output).

use secrecy::{ExposeSecret, SecretString};

pub const MASK: &str = "[REDACTED]";

/// The forms a value takes when a program prints it: as is, JSON-escaped
/// (`json.dumps`, also with `ensure_ascii`), and Python-`repr`-escaped.
fn forms(v: &str) -> Vec<String> {
    let mut out = vec![v.to_owned()];
    if let Ok(j) = serde_json::to_string(v) {
        out.push(j[1..j.len() - 1].to_owned());
    }
    let ascii: String = v
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                c.encode_utf16(&mut buf).iter().map(|u| format!("\\u{u:04x}")).collect()
            }
            c => c.to_string(),
        })
        .collect();
    out.push(ascii);
    out.push(v.replace('\\', "\\\\").replace('\'', "\\'"));
    out.sort();
    out.dedup();
    out
}

/// Replaces every occurrence of every value (in each printed form) by a mask.
/// Longer values go first so a value containing another is masked whole.
pub fn redact(text: &str, values: &[SecretString]) -> String {
    let mut needles: Vec<String> =
        values.iter().map(|v| v.expose_secret()).filter(|v| !v.is_empty()).flat_map(forms).collect();
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    let mut out = text.to_owned();
    for n in &needles {
        if out.contains(n.as_str()) {
            out = out.replace(n.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[test]
    fn masks_plain_json_and_repr_forms() {
        let v = s("pa\"ss'w\\ord-é");
        let text = format!(
            "plain {} json {} ascii {} repr {}",
            "pa\"ss'w\\ord-é", "pa\\\"ss'w\\\\ord-é", "pa\\\"ss'w\\\\ord-\\u00e9", "pa\"ss\\'w\\\\ord-é"
        );
        let out = redact(&text, &[v]);
        assert!(!out.contains("ss'w") && !out.contains("ss\\'w"), "{out}");
        assert_eq!(out.matches(MASK).count(), 4, "{out}");
    }

    #[test]
    fn longer_values_first() {
        let out = redact("secret-long and secret", &[s("secret"), s("secret-long")]);
        assert_eq!(out, "[REDACTED] and [REDACTED]");
    }
}
