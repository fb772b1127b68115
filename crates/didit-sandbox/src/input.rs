//! Request bodies of the v3 endpoints, read the way Django REST Framework
//! reads them: the Content-Type gate, JSON parsing, then per-field
//! validation that collects every field's messages. Client input never
//! causes a 500.

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::api_error::{ApiError, FieldErrors};

const REQUIRED: &str = "This field is required.";
const NOT_NULL: &str = "This field may not be null.";

/// Checks the Content-Type and parses the body as a JSON object.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(content_type));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        // DRF reads an empty JSON body as no data at all.
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::field(
            "non_field_errors",
            &format!(
                "Invalid data. Expected a dictionary, but got {}.",
                python_type(&other)
            ),
        )),
        Err(e) => Err(ApiError::JsonParse(e.to_string())),
    }
}

/// The Python type name DRF puts in its messages.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Reads typed fields out of a body, collecting DRF-style messages.
pub(crate) struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            body,
            errors: FieldErrors::new(),
        }
    }

    /// Records a message for `name`; always `None`, so callers can return it.
    fn fail<T>(&mut self, name: &str, message: impl Into<String>) -> Option<T> {
        self.errors
            .entry(name.to_owned())
            .or_default()
            .push(message.into());
        None
    }

    /// The value of a present, non-null field; records `required` /
    /// `null` messages. `Ok(None)` means absent-and-optional.
    fn present(&mut self, name: &str, required: bool) -> Result<Option<&'a Value>, ()> {
        match self.body.get(name) {
            None if required => {
                self.fail::<()>(name, REQUIRED);
                Err(())
            }
            None => Ok(None),
            Some(Value::Null) => {
                self.fail::<()>(name, NOT_NULL);
                Err(())
            }
            Some(v) => Ok(Some(v)),
        }
    }

    /// A required, non-blank string.
    pub(crate) fn string(&mut self, name: &str) -> Option<&'a str> {
        match self.present(name, true).ok()?? {
            Value::String(s) if s.trim().is_empty() => {
                self.fail(name, "This field may not be blank.")
            }
            Value::String(s) => Some(s.as_str()),
            _ => self.fail(name, "Not a valid string."),
        }
    }

    /// An optional string; null and absent both mean "not given".
    pub(crate) fn optional_string(&mut self, name: &str) -> Option<&'a str> {
        match self.body.get(name)? {
            Value::Null => None,
            Value::String(s) => Some(s.as_str()),
            _ => self.fail(name, "Not a valid string."),
        }
    }

    /// A required uuid.
    pub(crate) fn uuid(&mut self, name: &str) -> Option<Uuid> {
        match self.present(name, true).ok()?? {
            Value::String(s) => match Uuid::parse_str(s) {
                Ok(id) => Some(id),
                Err(_) => self.fail(name, "Must be a valid UUID."),
            },
            _ => self.fail(name, "Must be a valid UUID."),
        }
    }

    /// An optional integer (integral floats accepted, as DRF does); wide
    /// enough that huge values still reach the bounds check.
    pub(crate) fn optional_int(&mut self, name: &str) -> Option<i128> {
        let value = self.present(name, false).ok()??;
        let int = value.as_number().and_then(|n| {
            n.as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                // `as` saturates; integral and finite was checked first.
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.fract() == 0.0)
                        .map(|f| f as i128)
                })
        });
        match int {
            Some(i) => Some(i),
            None => self.fail(name, "A valid integer is required."),
        }
    }

    /// An optional boolean.
    pub(crate) fn optional_bool(&mut self, name: &str) -> Option<bool> {
        match self.present(name, false).ok()?? {
            Value::Bool(b) => Some(*b),
            _ => self.fail(name, "Must be a valid boolean."),
        }
    }

    /// A required, non-empty list of non-blank strings.
    pub(crate) fn string_list(&mut self, name: &str) -> Option<Vec<String>> {
        let value = self.present(name, true).ok()??;
        let Value::Array(items) = value else {
            let msg = format!(
                "Expected a list of items but got type \"{}\".",
                python_type(value)
            );
            return self.fail(name, msg);
        };
        if items.is_empty() {
            return self.fail(name, "This list may not be empty.");
        }
        let strings: Option<Vec<String>> = items
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned)
            })
            .collect();
        match strings {
            Some(list) => Some(list),
            None => self.fail(name, "Each item must be a non-blank string."),
        }
    }

    /// Records an error found after reading (a bound, a lookup).
    pub(crate) fn reject(&mut self, name: &str, message: &str) {
        self.fail::<()>(name, message);
    }

    /// `value` (the required fields read), or every collected message.
    /// A `None` with no message cannot happen (a missing required field
    /// always records one); it would answer 400 `{}`.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(ApiError::Fields(self.errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(ct) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h
    }

    fn body(text: &str) -> Map<String, Value> {
        match json_object(&headers("application/json"), text.as_bytes()) {
            Ok(map) => map,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn content_type_gate_accepts_charset_and_refuses_others() {
        assert!(json_object(&headers("application/json; charset=utf-8"), b"{}").is_ok());
        assert!(json_object(&headers("Application/JSON"), b"{}").is_ok());
        assert!(matches!(
            json_object(&headers("text/plain"), b"{}"),
            Err(ApiError::UnsupportedMediaType(ct)) if ct == "text/plain"
        ));
        assert!(matches!(
            json_object(&HeaderMap::new(), b"{}"),
            Err(ApiError::UnsupportedMediaType(ct)) if ct.is_empty()
        ));
    }

    #[test]
    fn non_objects_and_bad_json_are_client_errors() {
        let h = headers("application/json");
        assert!(matches!(
            json_object(&h, b"{\"a\":"),
            Err(ApiError::JsonParse(_))
        ));
        assert!(matches!(
            json_object(&h, &[0xff, 0xfe]),
            Err(ApiError::JsonParse(_))
        ));
        match json_object(&h, b"[1]") {
            Err(ApiError::Fields(f)) => {
                assert_eq!(
                    f["non_field_errors"],
                    ["Invalid data. Expected a dictionary, but got list."]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(json_object(&h, b"  ").is_ok_and(|m| m.is_empty()));
    }

    #[test]
    fn fields_collect_every_message() {
        let map = body(
            r#"{"b": 1, "c": "not-a-uuid", "d": 1.5, "e": "yes", "f": [], "g": null, "h": "  "}"#,
        );
        let mut f = Fields::new(&map);
        assert_eq!(f.string("a"), None);
        assert_eq!(f.string("b"), None);
        assert_eq!(f.uuid("c"), None);
        assert_eq!(f.optional_int("d"), None);
        assert_eq!(f.optional_bool("e"), None);
        assert_eq!(f.string_list("f"), None);
        assert_eq!(f.optional_bool("g"), None);
        assert_eq!(f.string("h"), None);
        assert_eq!(f.optional_int("absent"), None);
        let Err(ApiError::Fields(errors)) = f.finish(Some(())) else {
            panic!("expected field errors")
        };
        assert_eq!(errors["a"], ["This field is required."]);
        assert_eq!(errors["b"], ["Not a valid string."]);
        assert_eq!(errors["c"], ["Must be a valid UUID."]);
        assert_eq!(errors["d"], ["A valid integer is required."]);
        assert_eq!(errors["e"], ["Must be a valid boolean."]);
        assert_eq!(errors["f"], ["This list may not be empty."]);
        assert_eq!(errors["g"], ["This field may not be null."]);
        assert_eq!(errors["h"], ["This field may not be blank."]);
        assert_eq!(errors.len(), 8);
    }

    #[test]
    fn good_values_read_back() {
        let map =
            body(r#"{"s":"x","i":3600.0,"big":18446744073709551615,"b":true,"l":["a"],"o":null}"#);
        let mut f = Fields::new(&map);
        assert_eq!(f.string("s"), Some("x"));
        assert_eq!(f.optional_int("i"), Some(3600));
        assert_eq!(f.optional_int("big"), Some(i128::from(u64::MAX)));
        assert_eq!(f.optional_bool("b"), Some(true));
        assert_eq!(f.string_list("l"), Some(vec!["a".to_owned()]));
        assert_eq!(f.optional_string("o"), None);
        assert!(f.finish(Some(())).is_ok());
    }
}
