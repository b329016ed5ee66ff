//! Redaction of secret values from free text (function output).

use secrecy::{ExposeSecret, SecretString};

pub const MASK: &str = "[REDACTED]";

/// JSON string escaping as `json.dumps` does it, with `ensure_ascii` (the
/// default: non-ASCII as `\uXXXX`) or without.
fn json_escaped(v: &str, ascii: bool) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The inside of Python's `repr()` of a string quoted with `quote`.
fn python_repr(v: &str, quote: char) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            // Python's non-printable characters: controls, DEL, C1, NBSP and
            // the other Unicode spaces and format characters it escapes.
            c if c.is_control() || c == '\u{a0}' || c == '\u{ad}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The forms a value takes when a program prints it: as is, JSON-escaped
/// (`json.dumps`, with and without `ensure_ascii`), and Python `repr` in
/// either quote style.
fn forms(v: &str) -> Vec<String> {
    let mut out =
        vec![v.to_owned(), json_escaped(v, false), json_escaped(v, true), python_repr(v, '\''), python_repr(v, '"')];
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

    /// Expected forms printed by Python 3 itself for this value (json.dumps
    /// with and without ensure_ascii, repr).
    #[test]
    fn masks_what_python_prints_for_control_and_non_ascii_characters() {
        let v = s("X\u{e9}\u{9}z_pw\u{1}\u{7f}\u{a0}\"\\");
        for printed in [
            "X\\u00e9\\tz_pw\\u0001\\u007f\\u00a0\\\"\\\\",
            "X\u{e9}\\tz_pw\\u0001\u{7f}\u{a0}\\\"\\\\",
            "X\u{e9}\\tz_pw\\x01\\x7f\\xa0\"\\\\",
        ] {
            let out = redact(&format!("before {printed} after"), std::slice::from_ref(&v));
            assert_eq!(out, "before [REDACTED] after", "{printed:?}");
        }
    }
}
