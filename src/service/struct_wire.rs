//! Didit's JSON check arrays transcoded straight into protobuf wire bytes
//! (`repeated google.protobuf.Struct`), with no `Struct` tree in between.
//!
//! Building `prost_types::Struct`s (a `String` per key and string, a
//! `BTreeMap` per object) and encoding them (prost measures every nested
//! message again at each level) was a fifth of the gateway's CPU on an
//! import that misses the replay store (benches/README.md, section 5).
//! Here serde_json still does all the parsing and validation, and a
//! visitor appends one small [`Node`] per JSON value to a [`Tape`], each
//! with its encoded length, known by the time the value closes; the bytes
//! are then written in one forward pass. A string without escapes is a
//! range of Didit's body, not a copy.
//!
//! The mapping is `google.protobuf.Struct`'s JSON form, as before: numbers
//! as f64, null as `NullValue`, and an array element that is not an object
//! kept under `value`. Map entries are written in the JSON's order, where
//! prost writes a `BTreeMap`'s sorted order, and a repeated key is written
//! twice: protobuf decoders keep a map's last entry for a key, which is
//! what the `Struct` tree kept, so the message decodes to the same value
//! (the tests compare exactly that with the tree mapping).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::ops::Range;

use bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `Struct.fields` (a map entry), `ListValue.values` and a map entry's
/// key: field 1, length-delimited.
const FIELD_1: u8 = 0x0a;
/// A map entry's value: field 2, length-delimited.
const ENTRY_VALUE: u8 = 0x12;
/// `Value`'s oneof tags: `null_value` (1, varint), `number_value` (2,
/// fixed64), `string_value` (3), `bool_value` (4, varint), `struct_value`
/// (5) and `list_value` (6).
const NULL_VALUE: u8 = 0x08;
const NUMBER_VALUE: u8 = 0x11;
const STRING_VALUE: u8 = 0x1a;
const BOOL_VALUE: u8 = 0x20;
const STRUCT_VALUE: u8 = 0x2a;
const LIST_VALUE: u8 = 0x32;
/// The key an array element that is not an object is kept under.
const WRAPPED_KEY: &str = "value";
/// A tape left with more room than this many nodes (a huge answer) gives
/// it back instead of keeping it for the next import.
const KEPT_NODES: usize = 16 * 1024;
/// The same for unescaped strings, in bytes.
const KEPT_TEXT: usize = 64 * 1024;

thread_local! {
    /// Each worker thread's tape, reused by every import it maps: an
    /// import allocates nothing here (a fresh tape per import was a 16 KiB
    /// allocation between the replay records, and left 3-4 MiB more
    /// resident after 10,000 imports).
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// A tape's storage.
#[derive(Default)]
struct Scratch {
    nodes: Vec<Node>,
    /// Strings that had escapes, unescaped.
    text: Vec<u8>,
}

/// The encoded values of some JSON, in document order, each with the
/// lengths its bytes need; strings are ranges of the JSON (or, when they
/// had escapes, of the tape's own text).
pub(super) struct Tape<'a> {
    json: &'a [u8],
    scratch: Scratch,
}

/// One value's framing and payload; a `Struct` or `ListValue` is followed
/// by its children.
#[derive(Clone, Copy)]
enum Node {
    /// A `Struct` message in field `field` of the top-level message (an
    /// element of a check array), `body` bytes long.
    Message { field: u32, body: u32 },
    /// One entry of a `Struct`'s map, `len` bytes long: the key, then the
    /// value, which is the next node.
    Entry { len: u32, key: Text },
    /// A `Value` in field 1 (of a `ListValue`) or 2 (of a map entry).
    Value { tag: u8, kind: Kind },
}

/// A `Value`'s kind; `Struct` and `List` give their body's length.
#[derive(Clone, Copy)]
enum Kind {
    Null,
    Number(f64),
    Bool(bool),
    Str(Text),
    Struct(u32),
    List(u32),
}

/// A string: `len` bytes at `at` in the JSON, or in the tape's text.
#[derive(Clone, Copy)]
struct Text {
    at: u32,
    len: u32,
    unescaped: bool,
}

impl Text {
    /// [`WRAPPED_KEY`], which every tape's text starts with ([`Tape::with`]).
    const WRAPPED: Self = Self {
        at: 0,
        len: WRAPPED_KEY.len() as u32,
        unescaped: true,
    };
}

impl Kind {
    /// The length of the `Value` message holding this kind.
    fn value_len(self) -> usize {
        match self {
            Kind::Null | Kind::Bool(_) => 2,
            Kind::Number(_) => 9,
            Kind::Str(s) => delimited(s.len as usize),
            Kind::Struct(body) | Kind::List(body) => delimited(body as usize),
        }
    }
}

/// A one-byte tag, a length and `len` bytes.
fn delimited(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A map entry's length: the key (left out when empty, as prost does),
/// then the value.
fn entry_len(key: Text, value: usize) -> usize {
    let key = match key.len {
        0 => 0,
        len => delimited(len as usize),
    };
    key + value
}

/// A length as the tape keeps it (an answer is far below 4 GiB; a larger
/// one is refused, not cut).
fn small<E: de::Error>(len: usize) -> Result<u32, E> {
    u32::try_from(len).map_err(|_| E::custom("the answer is over 4 GiB"))
}

/// A check array read onto a tape: where its nodes are and the bytes its
/// elements take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Span {
    nodes: Range<usize>,
    /// Its encoded length.
    pub len: usize,
}

impl<'a> Tape<'a> {
    /// Runs `f` with an empty tape for `json`, this thread's when it is
    /// free.
    pub fn with<R>(json: &'a [u8], f: impl FnOnce(&mut Tape<'a>) -> R) -> R {
        let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
        scratch.nodes.clear();
        scratch.text.clear();
        scratch.text.extend_from_slice(WRAPPED_KEY.as_bytes());
        let mut tape = Tape { json, scratch };
        let result = f(&mut tape);
        let mut scratch = tape.scratch;
        if scratch.nodes.capacity() > KEPT_NODES || scratch.text.capacity() > KEPT_TEXT {
            scratch = Scratch::default();
        }
        let _ = SCRATCH.try_with(|cell| cell.set(scratch));
        result
    }

    /// Reads one JSON value as the elements of the repeated `Struct` field
    /// `field`: each object is a `Struct`, any other element is kept under
    /// `value`, and a value that is not an array has no elements.
    pub fn read_list<'de, A: MapAccess<'de>>(
        &mut self,
        field: u32,
        map: &mut A,
    ) -> Result<Span, A::Error> {
        let start = self.scratch.nodes.len();
        let len = map.next_value_seed(ListSeed { tape: self, field })?;
        Ok(Span {
            nodes: start..self.scratch.nodes.len(),
            len,
        })
    }

    /// Writes the nodes of `span`.
    pub fn write(&self, span: &Span, buf: &mut impl BufMut) {
        for node in &self.scratch.nodes[span.nodes.clone()] {
            match *node {
                Node::Message { field, body } => {
                    encode_key(field, WireType::LengthDelimited, buf);
                    encode_varint(u64::from(body), buf);
                }
                Node::Entry { len, key } => {
                    buf.put_u8(FIELD_1);
                    encode_varint(u64::from(len), buf);
                    if key.len > 0 {
                        buf.put_u8(FIELD_1);
                        encode_varint(u64::from(key.len), buf);
                        buf.put_slice(self.text(key));
                    }
                }
                Node::Value { tag, kind } => {
                    buf.put_u8(tag);
                    encode_varint(kind.value_len() as u64, buf);
                    match kind {
                        Kind::Null => buf.put_slice(&[NULL_VALUE, 0]),
                        Kind::Number(n) => {
                            buf.put_u8(NUMBER_VALUE);
                            buf.put_f64_le(n);
                        }
                        Kind::Bool(b) => buf.put_slice(&[BOOL_VALUE, u8::from(b)]),
                        Kind::Str(s) => {
                            buf.put_u8(STRING_VALUE);
                            encode_varint(u64::from(s.len), buf);
                            buf.put_slice(self.text(s));
                        }
                        Kind::Struct(body) => {
                            buf.put_u8(STRUCT_VALUE);
                            encode_varint(u64::from(body), buf);
                        }
                        Kind::List(body) => {
                            buf.put_u8(LIST_VALUE);
                            encode_varint(u64::from(body), buf);
                        }
                    }
                }
            }
        }
    }

    /// The bytes of a string the tape holds.
    fn text(&self, text: Text) -> &[u8] {
        let (at, len) = (text.at as usize, text.len as usize);
        let from = if text.unescaped {
            &self.scratch.text
        } else {
            self.json
        };
        &from[at..at + len]
    }

    /// `s` as a string of the tape: where it is in the JSON when it is a
    /// slice of it (no escapes), else a copy in the tape's text.
    fn string<E: de::Error>(&mut self, s: &str) -> Result<Text, E> {
        let json = self.json.as_ptr() as usize;
        let start = s.as_ptr() as usize;
        let len = small(s.len())?;
        if start >= json && start + s.len() <= json + self.json.len() {
            return Ok(Text {
                at: small(start - json)?,
                len,
                unescaped: false,
            });
        }
        let at = small(self.scratch.text.len())?;
        self.scratch.text.extend_from_slice(s.as_bytes());
        Ok(Text {
            at,
            len,
            unescaped: true,
        })
    }

    fn push(&mut self, node: Node) -> usize {
        self.scratch.nodes.push(node);
        self.scratch.nodes.len() - 1
    }

    /// Appends a `Value` node; returns the bytes it takes in its parent.
    fn push_value(&mut self, tag: u8, kind: Kind) -> usize {
        self.push(Node::Value { tag, kind });
        delimited(kind.value_len())
    }

    /// Reads an object's entries (after the object's own node); returns
    /// the length of its body.
    fn read_entries<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<usize, A::Error> {
        let mut body = 0;
        while let Some(key) = map.next_key_seed(TextSeed { tape: self })? {
            let at = self.push(Node::Entry { len: 0, key });
            let value = map.next_value_seed(ValueSeed {
                tape: self,
                tag: ENTRY_VALUE,
            })?;
            let len = entry_len(key, value);
            self.scratch.nodes[at] = Node::Entry {
                len: small(len)?,
                key,
            };
            body += delimited(len);
        }
        Ok(body)
    }

    /// Reads an array's elements as `Value`s in a `ListValue`; returns the
    /// length of its body.
    fn read_items<'de, A: SeqAccess<'de>>(&mut self, mut seq: A) -> Result<usize, A::Error> {
        let mut body = 0;
        while let Some(len) = seq.next_element_seed(ValueSeed {
            tape: self,
            tag: FIELD_1,
        })? {
            body += len;
        }
        Ok(body)
    }
}

/// An object key as a string of the tape.
struct TextSeed<'t, 'a> {
    tape: &'t mut Tape<'a>,
}

impl<'de> DeserializeSeed<'de> for TextSeed<'_, '_> {
    type Value = Text;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Text, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_, '_> {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
        self.tape.string(s)
    }
}

/// A JSON object key, borrowed when it has no escapes.
pub(super) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

/// Any JSON value as a `Value` node in field `tag` of its parent; gives the
/// bytes it takes there.
struct ValueSeed<'t, 'a> {
    tape: &'t mut Tape<'a>,
    tag: u8,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<usize, E> {
        Ok(self.tape.push_value(self.tag, Kind::Bool(b)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
        Ok(self.tape.push_value(self.tag, Kind::Number(n as f64)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
        Ok(self.tape.push_value(self.tag, Kind::Number(n as f64)))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<usize, E> {
        Ok(self.tape.push_value(self.tag, Kind::Number(n)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        let text = self.tape.string(s)?;
        Ok(self.tape.push_value(self.tag, Kind::Str(text)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(self.tape.push_value(self.tag, Kind::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<usize, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<usize, A::Error> {
        let at = self.tape.push(Node::Value {
            tag: self.tag,
            kind: Kind::List(0),
        });
        let kind = Kind::List(small(self.tape.read_items(seq)?)?);
        self.tape.scratch.nodes[at] = Node::Value {
            tag: self.tag,
            kind,
        };
        Ok(delimited(kind.value_len()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<usize, A::Error> {
        let at = self.tape.push(Node::Value {
            tag: self.tag,
            kind: Kind::Struct(0),
        });
        let kind = Kind::Struct(small(self.tape.read_entries(map)?)?);
        self.tape.scratch.nodes[at] = Node::Value {
            tag: self.tag,
            kind,
        };
        Ok(delimited(kind.value_len()))
    }
}

/// A check array: the elements of the repeated `Struct` field `field`;
/// gives their bytes. Anything but an array has no elements.
struct ListSeed<'t, 'a> {
    tape: &'t mut Tape<'a>,
    field: u32,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut len = 0;
        while let Some(element) = seq.next_element_seed(ElementSeed {
            tape: &mut *self.tape,
            field: self.field,
        })? {
            len += element;
        }
        Ok(len)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(0)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }
}

/// One element of a check array as a `Struct` message in field `field`;
/// gives its bytes.
struct ElementSeed<'t, 'a> {
    tape: &'t mut Tape<'a>,
    field: u32,
}

impl ElementSeed<'_, '_> {
    /// The element is not an object: a `Struct` holding it under `value`,
    /// whose `Value` node `visit` appends.
    fn wrapped<E: de::Error>(
        self,
        visit: impl FnOnce(ValueSeed<'_, '_>) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let at = self.tape.push(Node::Message {
            field: self.field,
            body: 0,
        });
        let key = Text::WRAPPED;
        self.tape.push(Node::Entry { len: 0, key });
        let len = entry_len(
            key,
            visit(ValueSeed {
                tape: &mut *self.tape,
                tag: ENTRY_VALUE,
            })?,
        );
        self.tape.scratch.nodes[at + 1] = Node::Entry {
            len: small(len)?,
            key,
        };
        self.message(at, delimited(len))
    }

    /// Sets the body of the message node at `at`; gives its bytes.
    fn message<E: de::Error>(self, at: usize, body: usize) -> Result<usize, E> {
        self.tape.scratch.nodes[at] = Node::Message {
            field: self.field,
            body: small(body)?,
        };
        Ok(key_len(self.field) + encoded_len_varint(body as u64) + body)
    }
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<usize, A::Error> {
        let at = self.tape.push(Node::Message {
            field: self.field,
            body: 0,
        });
        let body = self.tape.read_entries(map)?;
        self.message(at, body)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<usize, A::Error> {
        self.wrapped(|value| value.visit_seq(seq))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<usize, E> {
        self.wrapped(|value| value.visit_bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
        self.wrapped(|value| value.visit_i64(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
        self.wrapped(|value| value.visit_u64(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<usize, E> {
        self.wrapped(|value| value.visit_f64(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        self.wrapped(|value| value.visit_str(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        self.wrapped(|value| value.visit_unit())
    }

    fn visit_none<E: de::Error>(self) -> Result<usize, E> {
        self.visit_unit()
    }
}
