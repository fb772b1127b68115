//! JSON decoded straight into protobuf `Struct`s with serde visitors, no
//! `serde_json::Value` tree in between: this runs on every import answer
//! and every replay, and the intermediate tree was half of its cost (see
//! the README, Performance). The mapping is `google.protobuf.Struct`'s JSON
//! form: numbers as f64, null as `NullValue`.

use std::collections::BTreeMap;
use std::fmt;

use prost_types::value::Kind;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON array as a list of `Struct`s: each object becomes a `Struct`,
/// any other element is kept under `value`; a value that is not an array
/// gives an empty list.
pub(super) struct StructList(pub Vec<prost_types::Struct>);

impl<'de> de::Deserialize<'de> for StructList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StructListVisitor)
    }
}

struct StructListVisitor;

impl<'de> Visitor<'de> for StructListVisitor {
    type Value = StructList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StructList, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            list.push(match item.kind {
                Some(Kind::StructValue(object)) => object,
                kind => prost_types::Struct {
                    fields: BTreeMap::from([("value".to_owned(), prost_types::Value { kind })]),
                },
            });
        }
        Ok(StructList(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StructList, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StructList(Vec::new()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }

    fn visit_i64<E>(self, _: i64) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }

    fn visit_u64<E>(self, _: u64) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }

    fn visit_str<E>(self, _: &str) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }

    fn visit_unit<E>(self) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }

    fn visit_none<E>(self) -> Result<StructList, E> {
        Ok(StructList(Vec::new()))
    }
}

/// Any JSON value as a `google.protobuf.Value`.
#[derive(Clone, Copy)]
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = prost_types::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn value(kind: Kind) -> prost_types::Value {
    prost_types::Value { kind: Some(kind) }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = prost_types::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(value(Kind::BoolValue(b)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(value(Kind::NumberValue(n as f64)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(value(Kind::NumberValue(n as f64)))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(value(Kind::NumberValue(n)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(value(Kind::StringValue(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(value(Kind::StringValue(s)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(value(Kind::NullValue(0)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(value(Kind::NullValue(0)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            values.push(item);
        }
        Ok(value(Kind::ListValue(prost_types::ListValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let item = map.next_value_seed(ValueSeed)?;
            fields.insert(key, item);
        }
        Ok(value(Kind::StructValue(prost_types::Struct { fields })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The straightforward mapping (via a `serde_json::Value` tree) that
    /// the direct decoder must match exactly.
    fn to_struct(value: Value) -> prost_types::Struct {
        match value {
            Value::Object(map) => prost_types::Struct {
                fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
            },
            other => prost_types::Struct {
                fields: [("value".to_owned(), to_value(other))].into(),
            },
        }
    }

    fn to_value(value: Value) -> prost_types::Value {
        let kind = match value {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Kind::StringValue(s),
            Value::Array(items) => Kind::ListValue(prost_types::ListValue {
                values: items.into_iter().map(to_value).collect(),
            }),
            Value::Object(_) => Kind::StructValue(to_struct(value)),
        };
        prost_types::Value { kind: Some(kind) }
    }

    fn reference(raw: &str) -> Vec<prost_types::Struct> {
        match serde_json::from_str(raw).unwrap() {
            Value::Array(items) => items.into_iter().map(to_struct).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn the_direct_decoder_matches_the_value_tree_mapping() {
        let lists = [
            r#"[{"a":1,"b":[1,2.5,-3,"x",null,true,{"c":{}}],"\u00e9\n":"Jos\u00e9"}]"#,
            r#"[1,"two",null,[3],true]"#,
            r#"[{"n":18446744073709551615,"m":-9223372036854775808,"f":1e300,"big":123456789012345678901234567890}]"#,
            r#"[{"dup":1,"dup":2}]"#,
            r#"[{"deep":[{"x":[1,{"y":2}]}]}]"#,
            r#"[{},[],{}]"#,
            "[]",
            r#"{"not":"an array"}"#,
            "null",
            r#""nope""#,
            "3.5",
            "-1",
            "true",
        ];
        for raw in lists {
            let decoded: StructList = serde_json::from_str(raw).unwrap();
            assert_eq!(decoded.0, reference(raw), "{raw}");
        }
    }

    #[test]
    fn json_values_map_onto_struct_losslessly() {
        let StructList(list) =
            serde_json::from_str(r#"[{"a": [1, "x", null, true, {"b": 2.5}]}]"#).unwrap();
        let Some(Kind::ListValue(list)) = &list[0].fields["a"].kind else {
            panic!()
        };
        assert_eq!(list.values.len(), 5);
        assert!(matches!(list.values[2].kind, Some(Kind::NullValue(_))));
    }
}
