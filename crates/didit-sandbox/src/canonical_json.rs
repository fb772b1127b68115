//! The two JSON texts a webhook delivery is signed over.
//!
//! - [`canonical`]: what `X-Signature-V2` is an HMAC of, as the seeds define
//!   it: keys of every object sorted recursively, whole-number floats written
//!   as integers (`1.0` → `1`), no whitespace (`,` and `:`), non-ASCII text
//!   written as is, `"`, `\` and control characters escaped as
//!   `JSON.stringify` does.
//! - [`python_dumps`]: the raw body Didit's servers send (Python's
//!   `json.dumps` defaults): keys in the order given, `", "` and `": "`
//!   separators, every character outside printable ASCII escaped as `\uXXXX`.
//!   A receiver that re-serializes it cannot verify `X-Signature`; that is
//!   what `X-Signature-V2` is for.

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// The canonical form of `value` (see the module doc).
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

/// `value` as Python's `json.dumps(value)` writes it (see the module doc).
pub(crate) fn python_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_python(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Number(n) => write_number(out, n, true),
        Value::String(s) => write_string(out, s, false),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            // Rust orders strings by UTF-8 bytes, which is code point order.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key, false);
                out.push(':');
                write_canonical(out, item);
            }
            out.push('}');
        }
        Value::Null | Value::Bool(_) => out.push_str(&value.to_string()),
    }
}

fn write_python(out: &mut String, value: &Value) {
    match value {
        Value::Number(n) => write_number(out, n, false),
        Value::String(s) => write_string(out, s, true),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key, true);
                out.push_str(": ");
                write_python(out, item);
            }
            out.push('}');
        }
        Value::Null | Value::Bool(_) => out.push_str(&value.to_string()),
    }
}

/// Integers as they are; floats as serde_json writes them, except that
/// with `shorten` a whole-number float below 1e21 is written as an integer
/// (`JSON.stringify` switches to exponent notation from 1e21 on).
fn write_number(out: &mut String, n: &Number, shorten: bool) {
    match n.as_f64() {
        Some(f) if shorten && n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => {
            // `-0.0` is written `0`, as JavaScript does.
            let _ = write!(out, "{:.0}", f + 0.0);
        }
        _ => {
            let _ = write!(out, "{n}");
        }
    }
}

/// A JSON string literal; `ascii_only` escapes everything outside
/// printable ASCII as `\uXXXX` (lowercase hex, surrogate pairs).
fn write_string(out: &mut String, s: &str, ascii_only: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if ascii_only && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn whole_floats_become_integers_and_others_stay() {
        let value =
            parse(r#"{"a": 1.0, "b": 1.5, "c": -0.0, "d": 100, "e": 2.50, "f": 1e3, "g": 0.1}"#);
        assert_eq!(
            canonical(&value),
            r#"{"a":1,"b":1.5,"c":0,"d":100,"e":2.5,"f":1000,"g":0.1}"#
        );
    }

    #[test]
    fn keys_are_sorted_recursively_and_arrays_keep_their_order() {
        let value = parse(r#"{"b": {"z": 1, "a": [ {"y": 2, "x": 1}, 3 ]}, "a": null, "B": true}"#);
        assert_eq!(
            canonical(&value),
            r#"{"B":true,"a":null,"b":{"a":[{"x":1,"y":2},3],"z":1}}"#
        );
    }

    #[test]
    fn non_ascii_is_written_as_is() {
        let value = json!({"name": "María José Ejemplo", "city": "Zürich", "emoji": "✓😀"});
        assert_eq!(
            canonical(&value),
            r#"{"city":"Zürich","emoji":"✓😀","name":"María José Ejemplo"}"#
        );
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        let value =
            json!({"q": "say \"hi\"\\", "c": "a\nb\tc\u{1}\u{1f}\u{8}\u{c}\r", "del": "\u{7f}"});
        let text = canonical(&value);
        assert_eq!(
            text,
            "{\"c\":\"a\\nb\\tc\\u0001\\u001f\\b\\f\\r\",\"del\":\"\u{7f}\",\"q\":\"say \\\"hi\\\"\\\\\"}"
        );
        // Still JSON, and the same value.
        assert_eq!(parse(&text), value);
    }

    #[test]
    fn canonical_is_the_same_whatever_the_input_order_and_spacing() {
        let a = parse(r#"{"x": [1.0, {"b": 2, "a": 1}], "y": "é"}"#);
        let b = parse("{\"y\":\"\\u00e9\",\"x\":[1,{\"a\":1,\"b\":2.0}]}");
        assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn python_dumps_spaces_and_escapes_non_ascii() {
        let value = json!({"name": "José 😀", "n": [1, 2.0], "ok": false});
        let text = python_dumps(&value);
        assert!(
            text.contains(r#""name": "Jos\u00e9 \ud83d\ude00""#),
            "{text}"
        );
        assert!(text.contains(r#""n": [1, 2.0]"#), "{text}");
        assert!(text.is_ascii());
        assert_eq!(parse(&text), value);
    }
}
