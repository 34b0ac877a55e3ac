//! The wire format shared with the ORION Python bus.
//!
//! Owns stream naming (`{prefix}:{contract}s`, dead letters at
//! `{stream}:dlq`), encoding a message as the single `data` field, decoding
//! an entry back (tolerating whatever another client wrote), and parsing the
//! raw `XREADGROUP`/`XREAD` reply without trusting its contents.
//!
//! Encoding has two styles. [`JsonStyle::Python`] reproduces Python's
//! `json.dumps` byte for byte (`", "` and `": "` separators, non-ASCII
//! escaped as `\uXXXX`, DEL too, Python's float repr), so a stream written
//! by orion-bus is indistinguishable from one written by the Python bus.
//! The one exception: integers beyond 64 bits, which `serde_json` holds as
//! floats, come out as floats (`1.8446744073709552e+19`).
//! [`JsonStyle::Compact`] is smaller and faster. Readers accept any valid
//! JSON either way.

use std::io;

use redis::Value as RedisValue;
use serde::Serialize;
use serde_json::Value;

/// The one field every entry carries.
pub const DATA_FIELD: &[u8] = b"data";

/// The stream that carries a contract: `{prefix}:{contract}s`.
#[must_use]
pub fn stream_name(prefix: &str, contract: &str) -> String {
    format!("{prefix}:{contract}s")
}

/// The dead-letter stream of a stream: `{stream}:dlq`.
#[must_use]
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}:dlq")
}

/// How messages are encoded as JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JsonStyle {
    /// Byte-identical to Python's `json.dumps(msg)` with default arguments.
    #[default]
    Python,
    /// `serde_json` compact output: no spaces, UTF-8 kept as is.
    Compact,
}

impl std::str::FromStr for JsonStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "python" => Ok(Self::Python),
            "compact" => Ok(Self::Compact),
            other => Err(format!(
                "unknown JSON style {other:?} (expected python or compact)"
            )),
        }
    }
}

/// Encodes a message into `buf` (cleared first), so callers can reuse buffers.
///
/// # Errors
/// Only if serialisation fails, which a `serde_json::Value` never does.
pub fn encode_into(value: &Value, style: JsonStyle, buf: &mut Vec<u8>) -> serde_json::Result<()> {
    buf.clear();
    match style {
        JsonStyle::Compact => serde_json::to_writer(&mut *buf, value),
        JsonStyle::Python => {
            let mut ser = serde_json::Serializer::with_formatter(&mut *buf, PythonFormatter);
            value.serialize(&mut ser)
        }
    }
}

/// Encodes a message into a new buffer.
///
/// # Errors
/// See [`encode_into`].
pub fn encode(value: &Value, style: JsonStyle) -> serde_json::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    encode_into(value, style, &mut buf)?;
    Ok(buf)
}

/// A `serde_json` formatter that writes what CPython's `json.dumps` writes.
#[derive(Debug, Clone, Copy)]
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // ensure_ascii=True: every char outside ' '..='~' becomes \uXXXX
        // (UTF-16). serde_json escapes the controls below ' ' already;
        // DEL (0x7f) is ASCII but Python escapes it too.
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() && ch != '\x7f' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, in
/// positional notation when the decimal exponent is in `-4..16`, else in
/// scientific notation with a signed, at-least-two-digit exponent.
fn python_float_repr(value: f64) -> String {
    if !value.is_finite() {
        // json.dumps writes NaN/Infinity (not JSON); serde_json values can
        // never hold them, so this is unreachable in practice.
        return "null".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-5".
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        if exp >= 0 {
            let int_len = exp + 1;
            if n <= int_len {
                let zeros = "0".repeat((int_len - n) as usize);
                format!("{sign}{digits}{zeros}.0")
            } else {
                let (a, b) = digits.split_at(int_len as usize);
                format!("{sign}{a}.{b}")
            }
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let exp_sign = if exp < 0 { '-' } else { '+' };
        let mant = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        format!("{sign}{mant}e{exp_sign}{:02}", exp.abs())
    }
}

/// Why an entry's payload could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The entry has no `data` field.
    #[error("entry has no `data` field")]
    MissingData,
    /// The entry was deleted (trimmed or `XDEL`ed) while pending, before
    /// it was handled: Redis has no fields for it any more.
    #[error(
        "entry was deleted from the stream (trimmed or XDEL) while pending, before it was handled; its payload is gone"
    )]
    Deleted,
    /// The `data` field is not UTF-8.
    #[error("`data` is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The `data` field is larger than the configured limit.
    #[error("`data` is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The `data` field is not valid JSON.
    #[error("`data` is not valid JSON: {0}")]
    InvalidJson(String),
}

impl DecodeError {
    /// A short, stable, low-cardinality label for metrics and dead letters.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingData => "missing_data",
            Self::Deleted => "deleted",
            Self::NotUtf8 { .. } => "not_utf8",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidJson(_) => "invalid_json",
        }
    }
}

/// One stream entry exactly as Redis returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry id, e.g. `1700000000000-0`.
    pub id: String,
    /// The field/value pairs, or `None` when the entry was deleted.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl RawEntry {
    /// The raw bytes of the `data` field.
    ///
    /// # Errors
    /// [`DecodeError::Deleted`] or [`DecodeError::MissingData`].
    pub fn data(&self) -> Result<&[u8], DecodeError> {
        let fields = self.fields.as_ref().ok_or(DecodeError::Deleted)?;
        fields
            .iter()
            .find(|(k, _)| k.as_slice() == DATA_FIELD)
            .map(|(_, v)| v.as_slice())
            .ok_or(DecodeError::MissingData)
    }

    /// Decodes the `data` field into JSON, enforcing a size limit.
    ///
    /// # Errors
    /// See [`DecodeError`].
    pub fn decode(&self, max_bytes: usize) -> Result<Value, DecodeError> {
        decode_data(self.data()?, max_bytes)
    }
}

/// Decodes one `data` payload: size limit, UTF-8, then JSON.
///
/// # Errors
/// See [`DecodeError`].
pub fn decode_data(bytes: &[u8], max_bytes: usize) -> Result<Value, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    serde_json::from_str(text).map_err(|e| DecodeError::InvalidJson(e.to_string()))
}

/// The entries read from one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntries {
    /// The stream key.
    pub stream: String,
    /// Its entries, in id order.
    pub entries: Vec<RawEntry>,
}

/// The reply could not be understood at all (not the shape Redis documents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply shape from Redis: {0}")]
pub struct ReplyShapeError(pub String);

/// Parses an `XREAD`/`XREADGROUP` reply (RESP2 array or RESP3 map).
/// A nil reply (timeout) is an empty list.
///
/// # Errors
/// When the reply does not have the documented shape.
pub fn parse_read_reply(reply: RedisValue) -> Result<Vec<StreamEntries>, ReplyShapeError> {
    let pairs: Vec<(RedisValue, RedisValue)> = match reply {
        RedisValue::Nil => return Ok(Vec::new()),
        RedisValue::Map(pairs) => pairs,
        RedisValue::Array(items) => items
            .into_iter()
            .map(|item| match item {
                RedisValue::Array(mut kv) if kv.len() == 2 => {
                    let v = kv.pop().unwrap_or(RedisValue::Nil);
                    let k = kv.pop().unwrap_or(RedisValue::Nil);
                    Ok((k, v))
                }
                other => Err(ReplyShapeError(format!("stream item {other:?}"))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(ReplyShapeError(format!("top level {other:?}"))),
    };
    pairs
        .into_iter()
        .map(|(key, entries)| {
            Ok(StreamEntries {
                stream: bytes_to_string(key)?,
                entries: parse_entries(entries)?,
            })
        })
        .collect()
}

/// Parses a list of entries, as returned by `XRANGE` or inside `XREAD`.
///
/// # Errors
/// When the reply does not have the documented shape.
pub fn parse_entries(value: RedisValue) -> Result<Vec<RawEntry>, ReplyShapeError> {
    let items = match value {
        RedisValue::Nil => return Ok(Vec::new()),
        RedisValue::Array(items) => items,
        other => return Err(ReplyShapeError(format!("entry list {other:?}"))),
    };
    items.into_iter().map(parse_entry).collect()
}

fn parse_entry(value: RedisValue) -> Result<RawEntry, ReplyShapeError> {
    let RedisValue::Array(mut parts) = value else {
        return Err(ReplyShapeError(format!("entry {value:?}")));
    };
    if parts.len() != 2 {
        return Err(ReplyShapeError(format!("entry with {} parts", parts.len())));
    }
    let fields = parts.pop().unwrap_or(RedisValue::Nil);
    let id = bytes_to_string(parts.pop().unwrap_or(RedisValue::Nil))?;
    let fields = match fields {
        RedisValue::Nil => None,
        RedisValue::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let Some(k) = it.next() {
                let v = it.next().unwrap_or(RedisValue::Nil);
                out.push((value_bytes(k), value_bytes(v)));
            }
            Some(out)
        }
        RedisValue::Map(pairs) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| (value_bytes(k), value_bytes(v)))
                .collect(),
        ),
        other => return Err(ReplyShapeError(format!("entry fields {other:?}"))),
    };
    Ok(RawEntry { id, fields })
}

/// Field names and values are binary-safe; keep whatever bytes came.
fn value_bytes(v: RedisValue) -> Vec<u8> {
    match v {
        RedisValue::BulkString(b) => b,
        RedisValue::SimpleString(s) => s.into_bytes(),
        RedisValue::Int(i) => i.to_string().into_bytes(),
        RedisValue::Nil => Vec::new(),
        other => format!("{other:?}").into_bytes(),
    }
}

fn bytes_to_string(v: RedisValue) -> Result<String, ReplyShapeError> {
    match v {
        RedisValue::BulkString(b) => {
            String::from_utf8(b).map_err(|e| ReplyShapeError(format!("non-UTF-8 key or id: {e}")))
        }
        RedisValue::SimpleString(s) => Ok(s),
        other => Err(ReplyShapeError(format!("key or id {other:?}"))),
    }
}

/// Milliseconds part of a stream id (`"1700000000000-3"` gives 1700000000000).
#[must_use]
pub fn id_millis(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_python_bus() {
        assert_eq!(stream_name("orion", "event"), "orion:events");
        assert_eq!(
            stream_name("orion", "edge.telemetry"),
            "orion:edge.telemetrys"
        );
        assert_eq!(dead_letter_stream("orion:events"), "orion:events:dlq");
    }

    #[test]
    fn python_style_matches_json_dumps() {
        // Expected strings produced by CPython 3.11 json.dumps.
        let v: Value =
            serde_json::from_str(r#"{"a": 1, "b": [1.5, "é", null, true], "c": {"d": "x\ny"}}"#)
                .expect("json");
        let out = String::from_utf8(encode(&v, JsonStyle::Python).expect("enc")).expect("utf8");
        assert_eq!(
            out,
            r#"{"a": 1, "b": [1.5, "\u00e9", null, true], "c": {"d": "x\ny"}}"#
        );
        let emoji = encode(&json!("😀"), JsonStyle::Python).expect("enc");
        assert_eq!(emoji, br#""\ud83d\ude00""#);
        // Controls and DEL: json.dumps({"a": "\x7f\x1f\t~"}).
        let controls = encode(&json!({"a": "\u{7f}\u{1f}\t~"}), JsonStyle::Python).expect("enc");
        assert_eq!(controls, br#"{"a": "\u007f\u001f\t~"}"#);
        assert_eq!(encode(&json!({}), JsonStyle::Python).expect("e"), b"{}");
        assert_eq!(encode(&json!([]), JsonStyle::Python).expect("e"), b"[]");
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (42.125, "42.125"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float_repr(v), want, "{v}");
        }
    }

    #[test]
    fn decode_reports_each_kind_of_garbage() {
        assert_eq!(
            decode_data(b"\xff\xfe", 100),
            Err(DecodeError::NotUtf8 { valid_up_to: 0 })
        );
        assert!(matches!(
            decode_data(b"{nope", 100),
            Err(DecodeError::InvalidJson(_))
        ));
        assert_eq!(
            decode_data(b"[1,2,3]", 3),
            Err(DecodeError::TooLarge { size: 7, limit: 3 })
        );
        assert_eq!(decode_data(br#"{"a": 1}"#, 100), Ok(json!({"a": 1})));
        let no_data = RawEntry {
            id: "1-0".into(),
            fields: Some(vec![(b"other".to_vec(), b"x".to_vec())]),
        };
        assert_eq!(no_data.decode(100), Err(DecodeError::MissingData));
        let deleted = RawEntry {
            id: "1-0".into(),
            fields: None,
        };
        assert_eq!(deleted.decode(100), Err(DecodeError::Deleted));
    }

    #[test]
    fn parses_resp2_and_resp3_replies() {
        let entry = RedisValue::Array(vec![
            RedisValue::BulkString(b"1-0".to_vec()),
            RedisValue::Array(vec![
                RedisValue::BulkString(b"data".to_vec()),
                RedisValue::BulkString(b"{}".to_vec()),
            ]),
        ]);
        let deleted = RedisValue::Array(vec![
            RedisValue::BulkString(b"2-0".to_vec()),
            RedisValue::Nil,
        ]);
        let resp2 = RedisValue::Array(vec![RedisValue::Array(vec![
            RedisValue::BulkString(b"s".to_vec()),
            RedisValue::Array(vec![entry.clone(), deleted.clone()]),
        ])]);
        let resp3 = RedisValue::Map(vec![(
            RedisValue::BulkString(b"s".to_vec()),
            RedisValue::Array(vec![entry, deleted]),
        )]);
        for reply in [resp2, resp3] {
            let parsed = parse_read_reply(reply).expect("parses");
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].stream, "s");
            assert_eq!(parsed[0].entries[0].data(), Ok(&b"{}"[..]));
            assert_eq!(parsed[0].entries[1].fields, None);
        }
        assert_eq!(parse_read_reply(RedisValue::Nil), Ok(vec![]));
        assert!(parse_read_reply(RedisValue::Int(3)).is_err());
    }

    #[test]
    fn id_millis_parses() {
        assert_eq!(id_millis("1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(id_millis("garbage"), None);
    }
}
