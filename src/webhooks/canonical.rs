//! The canonical JSON that Didit's `X-Signature-V2` is an HMAC of.
//!
//! The seeds define it as: sort the keys of every object recursively,
//! shorten whole-number floats to integers (`1.0` → `1`), then
//! `JSON.stringify` (no whitespace, `,` and `:` separators, non-ASCII
//! written as is, `"` `\` and control characters escaped). Didit's own
//! servers and docs produce the same text with Python's `json.dumps`, which
//! differs in two corners: with `ensure_ascii` every non-ASCII character is
//! written `\uXXXX`, and tiny floats (below 1e-4) are written `1e-05` where
//! JavaScript writes `0.00001` (and `1.5e-7` below 1e-6). The sandbox (Rust, serde_json) writes them
//! `1e-5`. [`candidate_forms`] yields every distinct form a genuine sender
//! could have signed; each is a pure function of the parsed body, so
//! accepting any of them lets no unsigned content in.

use serde_json::Value;
use std::fmt::Write as _;

/// How characters outside printable ASCII are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// As UTF-8, like `JSON.stringify` and `json.dumps(ensure_ascii=False)`.
    Raw,
    /// As `\uXXXX` (lowercase hex, surrogate pairs above U+FFFF), like
    /// `json.dumps` with its default `ensure_ascii=True`.
    Ascii,
}

/// How a float that is not a whole number is written: fixed notation from
/// `10^min_fixed_exp` up, below that `d.ddde-N` (with `N` at least two
/// digits when `pad_exp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatStyle {
    /// The smallest decimal exponent still written in fixed notation.
    pub min_fixed_exp: i32,
    /// Whether the exponent has at least two digits (`1e-05`).
    pub pad_exp: bool,
}

impl FloatStyle {
    /// JavaScript's `Number.prototype.toString` (the seeds' `JSON.stringify`).
    pub const JAVASCRIPT: Self = Self {
        min_fixed_exp: -6,
        pad_exp: false,
    };
    /// Python's `repr(float)` (Didit's servers).
    pub const PYTHON: Self = Self {
        min_fixed_exp: -4,
        pad_exp: true,
    };
    /// serde_json's `ryu` (a Rust sender such as the sandbox).
    pub const RYU: Self = Self {
        min_fixed_exp: -5,
        pad_exp: false,
    };
}

/// One way of writing the canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Non-ASCII characters.
    pub escape: Escape,
    /// Floats that are not whole numbers.
    pub floats: FloatStyle,
}

impl Style {
    /// The seeds' definition, literally: `JSON.stringify` of the sorted,
    /// float-shortened payload. Also the form the event log's de-duplication
    /// key is computed over.
    pub const SEEDS: Self = Self {
        escape: Escape::Raw,
        floats: FloatStyle::JAVASCRIPT,
    };
}

/// What a pass over the value saw that makes the styles differ.
#[derive(Default)]
struct Seen {
    /// A string (or key) with a character outside `0x20..=0x7e`.
    non_ascii: bool,
    /// The smallest decimal exponent of a float that is not whole.
    min_float_exp: Option<i32>,
}

/// The canonical JSON of `value` in one style.
pub fn canonical_json(value: &Value, style: Style) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, value, style, &mut Seen::default());
    out.into_bytes()
}

/// Every distinct canonical form of `value` a genuine sender could have
/// signed, the seeds' form first. One form for the common payload (ASCII
/// text, no tiny floats); at most six.
pub fn candidate_forms(value: &Value) -> Vec<Vec<u8>> {
    let mut seen = Seen::default();
    let mut first = String::new();
    write_value(&mut first, value, Style::SEEDS, &mut seen);
    let mut forms = vec![first.into_bytes()];
    let escapes: &[Escape] = if seen.non_ascii {
        &[Escape::Raw, Escape::Ascii]
    } else {
        &[Escape::Raw]
    };
    let floats: &[FloatStyle] = match seen.min_float_exp {
        Some(exp) if exp < FloatStyle::PYTHON.min_fixed_exp => {
            &[FloatStyle::JAVASCRIPT, FloatStyle::PYTHON, FloatStyle::RYU]
        }
        _ => &[FloatStyle::JAVASCRIPT],
    };
    for &escape in escapes {
        for &floats in floats {
            let form = canonical_json(value, Style { escape, floats });
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

fn write_value(out: &mut String, value: &Value, style: Style, seen: &mut Seen) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                write_float(out, f, style.floats, seen);
            }
        }
        Value::String(s) => write_str(out, s, style.escape, seen),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, style, seen);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json's
            // `preserve_order` feature (enabled by any crate in the build)
            // would keep the sender's order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key, style.escape, seen);
                out.push(':');
                write_value(out, item, style, seen);
            }
            out.push('}');
        }
    }
}

/// A float parsed from JSON (always finite): whole numbers as integers
/// (`shortenFloats`), the rest in their shortest round-trip digits.
fn write_float(out: &mut String, f: f64, style: FloatStyle, seen: &mut Seen) {
    if f.fract() == 0.0 {
        if f == 0.0 {
            out.push('0'); // also -0.0, which Python's int() makes 0
        } else {
            let _ = write!(out, "{f:.0}");
        }
        return;
    }
    // `{:e}` is the shortest round-trip mantissa and its exponent: "1.5e-7".
    let scientific = format!("{f:e}");
    let (mantissa, exp) = match scientific.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (scientific.as_str(), 0),
    };
    seen.min_float_exp = Some(seen.min_float_exp.map_or(exp, |m| m.min(exp)));
    if exp >= style.min_fixed_exp {
        let _ = write!(out, "{f}");
    } else if style.pad_exp {
        let _ = write!(out, "{mantissa}e-{:02}", -exp);
    } else {
        let _ = write!(out, "{mantissa}e{exp}");
    }
}

fn write_str(out: &mut String, s: &str, escape: Escape, seen: &mut Seen) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            ' '..='~' => out.push(c),
            c => {
                seen.non_ascii = true;
                match escape {
                    Escape::Raw => out.push(c),
                    Escape::Ascii => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            let _ = write!(out, "\\u{unit:04x}");
                        }
                    }
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &Value, style: Style) -> String {
        String::from_utf8(canonical_json(value, style)).unwrap()
    }

    #[test]
    fn keys_are_sorted_recursively_and_whole_floats_shortened() {
        let body: Value = serde_json::from_str(
            r#"{"b": 1.0, "a": {"z": [ {"y": 2.50, "x": -0.0} ], "c": 1e2}, "n": null}"#,
        )
        .unwrap();
        assert_eq!(
            text(&body, Style::SEEDS),
            r#"{"a":{"c":100,"z":[{"x":0,"y":2.5}]},"b":1,"n":null}"#
        );
    }

    #[test]
    fn strings_are_escaped_as_json_requires_and_non_ascii_per_style() {
        let body = json!({"name": "José \"Zé\" 日本\n\u{1}\u{7f}😀", "k\\": true});
        assert_eq!(
            text(&body, Style::SEEDS),
            "{\"k\\\\\":true,\"name\":\"José \\\"Zé\\\" 日本\\n\\u0001\u{7f}😀\"}"
        );
        let ascii = Style {
            escape: Escape::Ascii,
            floats: FloatStyle::PYTHON,
        };
        assert_eq!(
            text(&body, ascii),
            r#"{"k\\":true,"name":"Jos\u00e9 \"Z\u00e9\" \u65e5\u672c\n\u0001\u007f\ud83d\ude00"}"#
        );
    }

    #[test]
    fn tiny_floats_follow_each_senders_notation() {
        let body = json!({"a": 0.00001, "b": 1.5e-7, "c": 0.25});
        let with = |floats| {
            text(
                &body,
                Style {
                    escape: Escape::Raw,
                    floats,
                },
            )
        };
        assert_eq!(
            with(FloatStyle::JAVASCRIPT),
            r#"{"a":0.00001,"b":1.5e-7,"c":0.25}"#
        );
        assert_eq!(
            with(FloatStyle::PYTHON),
            r#"{"a":1e-05,"b":1.5e-07,"c":0.25}"#
        );
        assert_eq!(
            with(FloatStyle::RYU),
            r#"{"a":0.00001,"b":1.5e-7,"c":0.25}"#
        );
        assert_eq!(candidate_forms(&body).len(), 2, "JS and ryu agree here");
    }

    #[test]
    fn plain_ascii_payloads_have_one_form() {
        let body = json!({"session_id": "s", "status": "Approved", "score": 0.5});
        assert_eq!(candidate_forms(&body).len(), 1);
        assert_eq!(candidate_forms(&json!({"n": "Müller"})).len(), 2);
    }
}
