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
//! [`JsonStyle::Compact`] is smaller and faster. Readers accept any valid
//! JSON either way.
//!
//! **Numbers are never altered.** A `serde_json::Value` holds integers
//! beyond 64 bits (2^64, 10^30) as floats, so wherever the original JSON
//! text is at hand (a raw publish, `tail`, a redrive) its number tokens
//! are kept: [`encode_exact`] writes the message with the numbers of the
//! text it was parsed from (integers of any size verbatim; floats as
//! Python writes them, or verbatim in the compact style), and [`exact_json`]
//! does the same for output lines. `serde_json`'s global
//! `arbitrary_precision` feature was not used: see docs/ARCHITECTURE.md,
//! "Numbers".
//!
//! Decoding tells apart what Python's `json` writes but JSON does not allow
//! ([`DecodeError::NonFiniteNumber`]: `NaN`, `Infinity`, `1e400`;
//! [`DecodeError::LoneSurrogate`]: `"\ud800"`) from other invalid JSON, so
//! that dead letters and the observer name them (docs/MIGRATION.md).

use std::cell::Cell;
use std::io;

use redis::Value as RedisValue;
use serde::Serialize;
use serde_json::Value;
use serde_json::ser::Formatter as _;
use serde_json::value::RawValue;

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

/// Encodes `value`, parsed from the JSON text `original`, keeping the
/// numbers of `original`: integers of any size exactly as written (in the
/// Python style `-0` becomes `0`, as `json.dumps` writes it); floats as
/// Python's `repr` of their exact value in the Python style (what
/// `json.dumps(json.loads(original))` writes), verbatim in the compact
/// style. Everything else is encoded as [`encode`] does. When `original` does
/// not line up with `value` (it is not the text `value` came from, or it
/// repeats an object key, which parsing resolved), this is [`encode`].
///
/// # Errors
/// See [`encode_into`].
pub fn encode_exact(
    value: &Value,
    original: &[u8],
    style: JsonStyle,
) -> serde_json::Result<Vec<u8>> {
    let numbers = number_tokens(original);
    if numbers.is_empty() {
        return encode(value, style);
    }
    let next = Cell::new(0);
    let mismatch = Cell::new(false);
    let mut buf = Vec::with_capacity(original.len() + 16);
    let formatter = ExactFormatter {
        python: style == JsonStyle::Python,
        numbers: &numbers,
        next: &next,
        mismatch: &mismatch,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser)?;
    if mismatch.get() || next.get() != numbers.len() {
        return encode(value, style);
    }
    Ok(buf)
}

/// `value`, parsed from the JSON text `original`, as compact JSON for an
/// output line (`tail`, `consume`): numbers exactly as `original` writes
/// them, strings as UTF-8, no whitespace, so one line per message.
#[must_use]
pub fn exact_json(value: &Value, original: &[u8]) -> Box<RawValue> {
    let exact = encode_exact(value, original, JsonStyle::Compact)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| RawValue::from_string(text).ok());
    match exact {
        Some(raw) => raw,
        // Unreachable in practice: the encoder writes valid UTF-8 JSON.
        None => {
            serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
        }
    }
}

/// The number tokens of a JSON text, in order (strings skipped).
fn number_tokens(text: &[u8]) -> Vec<&str> {
    Tokens::new(text)
        .filter(|(kind, _)| *kind == Token::Number)
        .filter_map(|(_, tok)| std::str::from_utf8(tok).ok())
        .collect()
}

/// True for an integer token (no fraction, no exponent).
fn is_integer_token(tok: &str) -> bool {
    !tok.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// A number as `serde_json` hands it to a formatter.
#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

/// True when the token `tok` is where the parsed number `n` came from:
/// exact for integers within 64 bits, close for the floats `serde_json`
/// turns larger integers into (this only guards against misalignment).
fn lines_up(tok: &str, n: Num) -> bool {
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= a.abs().max(b.abs()) * 1e-12;
    let integer = is_integer_token(tok);
    match n {
        Num::U(v) => integer && tok.parse::<u64>() == Ok(v),
        Num::I(v) => integer && tok.parse::<i64>() == Ok(v),
        Num::F(v) => tok.parse::<f64>().is_ok_and(|t| close(t, v)),
    }
}

/// The formatter behind [`encode_exact`]: Python or compact layout, with
/// the numbers taken from the original text.
#[derive(Debug)]
struct ExactFormatter<'a> {
    python: bool,
    numbers: &'a [&'a str],
    next: &'a Cell<usize>,
    mismatch: &'a Cell<bool>,
}

impl ExactFormatter<'_> {
    fn number<W: ?Sized + io::Write>(&mut self, w: &mut W, n: Num) -> io::Result<()> {
        let at = self.next.get();
        self.next.set(at + 1);
        let Some(tok) = self.numbers.get(at).copied().filter(|t| lines_up(t, n)) else {
            self.mismatch.set(true);
            return match n {
                Num::U(v) => serde_json::ser::CompactFormatter.write_u64(w, v),
                Num::I(v) => serde_json::ser::CompactFormatter.write_i64(w, v),
                Num::F(v) if self.python => PythonFormatter.write_f64(w, v),
                Num::F(v) => serde_json::ser::CompactFormatter.write_f64(w, v),
            };
        };
        if !self.python {
            return w.write_all(tok.as_bytes());
        }
        if is_integer_token(tok) {
            // json.dumps(json.loads("-0")) is "0".
            let zero = tok.bytes().all(|b| matches!(b, b'-' | b'0'));
            return w.write_all(if zero { b"0" } else { tok.as_bytes() });
        }
        match tok.parse::<f64>() {
            Ok(v) => w.write_all(python_float_repr(v).as_bytes()),
            Err(_) => w.write_all(tok.as_bytes()),
        }
    }
}

impl serde_json::ser::Formatter for ExactFormatter<'_> {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if self.python {
            PythonFormatter.begin_array_value(w, first)
        } else {
            serde_json::ser::CompactFormatter.begin_array_value(w, first)
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if self.python {
            PythonFormatter.begin_object_key(w, first)
        } else {
            serde_json::ser::CompactFormatter.begin_object_key(w, first)
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.python {
            PythonFormatter.begin_object_value(w)
        } else {
            serde_json::ser::CompactFormatter.begin_object_value(w)
        }
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if self.python {
            PythonFormatter.write_string_fragment(w, fragment)
        } else {
            w.write_all(fragment.as_bytes())
        }
    }

    fn write_u64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: u64) -> io::Result<()> {
        self.number(w, Num::U(value))
    }

    fn write_i64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: i64) -> io::Result<()> {
        self.number(w, Num::I(value))
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        self.number(w, Num::F(value))
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.number(w, Num::F(f64::from(value)))
    }
}

/// What a lexical token of a JSON text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A string, quotes included.
    String,
    /// A number (`-`, digits, `.`, exponent).
    Number,
    /// A bare word: `true`, `false`, `null`, or Python's `NaN`,
    /// `Infinity`, `-Infinity`.
    Word,
    /// Anything else, one byte: `{`, `:`, garbage.
    Other,
}

/// A forgiving tokenizer of JSON text: it never fails, and knows Python's
/// bare words, so it can find numbers in valid JSON and the quirks of
/// Python's `json` in invalid JSON.
#[derive(Debug)]
struct Tokens<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self { text, at: 0 }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = (Token, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.text;
        let mut i = self.at;
        while t
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            i += 1;
        }
        let start = i;
        let first = *t.get(i)?;
        let alphabetic = |i: usize| t.get(i).is_some_and(u8::is_ascii_alphabetic);
        let kind = match first {
            b'"' => {
                i += 1;
                while let Some(&b) = t.get(i) {
                    i += if b == b'\\' { 2 } else { 1 };
                    if b == b'"' {
                        break;
                    }
                }
                Token::String
            }
            b'-' if alphabetic(i + 1) => {
                i += 1;
                while alphabetic(i) {
                    i += 1;
                }
                Token::Word
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while t
                    .get(i)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    i += 1;
                }
                Token::Number
            }
            b if b.is_ascii_alphabetic() => {
                while alphabetic(i) {
                    i += 1;
                }
                Token::Word
            }
            _ => {
                i += 1;
                Token::Other
            }
        };
        let end = i.min(t.len());
        self.at = end;
        Some((kind, &t[start..end]))
    }
}

/// What Python's `json` writes (or reads) that JSON does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PythonQuirk {
    /// `NaN`, `Infinity`, `-Infinity`, or a number beyond `f64`'s range.
    NonFiniteNumber,
    /// A `\uD800`-`\uDFFF` escape without its pair.
    LoneSurrogate,
}

/// `text` with Python's quirks replaced by valid JSON (`0` for a
/// non-finite number, `\ufffd` for a lone surrogate), and the first quirk
/// found, if any. Tokens are joined by single spaces.
fn without_python_quirks(text: &[u8]) -> (Vec<u8>, Option<PythonQuirk>) {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut first = None;
    for (kind, tok) in Tokens::new(text) {
        if !out.is_empty() {
            out.push(b' ');
        }
        match kind {
            Token::Word if matches!(tok, b"NaN" | b"Infinity" | b"-Infinity") => {
                first.get_or_insert(PythonQuirk::NonFiniteNumber);
                out.push(b'0');
            }
            Token::Number if !number_is_finite(tok) => {
                first.get_or_insert(PythonQuirk::NonFiniteNumber);
                out.push(b'0');
            }
            Token::String => {
                if replace_lone_surrogates(tok, &mut out) {
                    first.get_or_insert(PythonQuirk::LoneSurrogate);
                }
            }
            _ => out.extend_from_slice(tok),
        }
    }
    (out, first)
}

/// False for a number token that is out of `f64`'s range (`1e400`): Python
/// reads it as `inf`, JSON parsers refuse it.
fn number_is_finite(tok: &[u8]) -> bool {
    std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_none_or(f64::is_finite)
}

/// Copies a string token to `out`, each lone surrogate escape replaced by
/// `\ufffd`; true if there was one.
fn replace_lone_surrogates(tok: &[u8], out: &mut Vec<u8>) -> bool {
    let hex4 = |at: usize| -> Option<u32> {
        let digits = tok.get(at..at + 4)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut found = false;
    let mut i = 0;
    while let Some(&b) = tok.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        if tok.get(i + 1) == Some(&b'u') {
            match hex4(i + 2) {
                Some(0xD800..=0xDBFF)
                    if tok.get(i + 6..i + 8) == Some(b"\\u")
                        && hex4(i + 8).is_some_and(|n| (0xDC00..=0xDFFF).contains(&n)) =>
                {
                    out.extend_from_slice(&tok[i..i + 12]);
                    i += 12;
                    continue;
                }
                Some(0xD800..=0xDFFF) => {
                    found = true;
                    out.extend_from_slice(b"\\ufffd");
                    i += 6;
                    continue;
                }
                _ => {}
            }
        }
        out.extend_from_slice(&tok[i..(i + 2).min(tok.len())]);
        i += 2;
    }
    found
}

/// Parses a `data` payload the way Python's `json.loads` would accept it:
/// non-finite numbers read as `0`, lone surrogates as U+FFFD. For labels
/// only (the observer's `source`), never for delivering a message.
#[must_use]
pub fn parse_python_lenient(bytes: &[u8]) -> Option<Value> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Some(value);
    }
    let (text, quirk) = without_python_quirks(bytes);
    quirk?;
    serde_json::from_slice(&text).ok()
}

/// Why `bytes`, which `serde_json` refused with `error`, is not JSON: one
/// of Python's quirks when replacing them makes it valid, else plain
/// invalid JSON.
#[cold]
fn invalid_json(bytes: &[u8], error: &serde_json::Error) -> DecodeError {
    let message = error.to_string();
    let (text, quirk) = without_python_quirks(bytes);
    let Some(quirk) = quirk else {
        return DecodeError::InvalidJson(message);
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(&text).is_err() {
        return DecodeError::InvalidJson(message);
    }
    match quirk {
        PythonQuirk::NonFiniteNumber => DecodeError::NonFiniteNumber(message),
        PythonQuirk::LoneSurrogate => DecodeError::LoneSurrogate(message),
    }
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
    /// The `data` field holds `NaN`, `Infinity`, `-Infinity` or a number
    /// beyond the 64-bit float range (`1e400`): Python's `json` writes the
    /// first three and reads all of them, JSON allows none.
    #[error(
        "`data` is not valid JSON: it holds NaN, Infinity or a number beyond the 64-bit float range, which Python's json accepts and JSON does not ({0})"
    )]
    NonFiniteNumber(String),
    /// The `data` field holds a lone UTF-16 surrogate escape (`"\ud800"`):
    /// Python's `json` writes one for a string holding a lone surrogate;
    /// it is not a Unicode character.
    #[error(
        "`data` is not valid JSON: it holds a lone UTF-16 surrogate escape (such as \\ud800), which Python's json writes and is not a Unicode character ({0})"
    )]
    LoneSurrogate(String),
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
            Self::NonFiniteNumber(_) => "non_finite_number",
            Self::LoneSurrogate(_) => "lone_surrogate",
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
    serde_json::from_str(text).map_err(|e| invalid_json(bytes, &e))
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
    fn exact_encoding_keeps_every_number_of_the_original() {
        // Written by CPython 3 json.dumps; json.dumps(json.loads(x)) == x.
        let python = br#"{"a": [18446744073709551616, -9223372036854775809, 1000000000000000000000000000000, 1e-07, 0.30000000000000004, 1e+30, 1e+16, -0.0, 1.5, 42], "s": "\u00e9\n"}"#;
        let value: Value = serde_json::from_slice(python).expect("json");
        assert_eq!(
            encode_exact(&value, python, JsonStyle::Python).expect("enc"),
            python.to_vec()
        );
        // Without the text, integers beyond 64 bits become floats.
        let lossy =
            String::from_utf8(encode(&value, JsonStyle::Python).expect("enc")).expect("utf8");
        assert!(lossy.contains("1.8446744073709552e+19"), "{lossy}");
        // The compact style keeps each number's text as written.
        let compact = encode_exact(&value, python, JsonStyle::Compact).expect("enc");
        assert_eq!(
            String::from_utf8(compact).expect("utf8"),
            "{\"a\":[18446744073709551616,-9223372036854775809,1000000000000000000000000000000,1e-07,0.30000000000000004,1e+30,1e+16,-0.0,1.5,42],\"s\":\"\u{e9}\\n\"}"
        );
        // Other spellings get Python's spelling in the Python style, as
        // json.dumps(json.loads(...)) would write them.
        let other = br#"{"b":1E5,"c":-0,"d":1.10,"e":[1e-7]}"#;
        let value: Value = serde_json::from_slice(other).expect("json");
        assert_eq!(
            encode_exact(&value, other, JsonStyle::Python).expect("enc"),
            br#"{"b": 100000.0, "c": 0, "d": 1.1, "e": [1e-07]}"#.to_vec()
        );
        assert_eq!(
            exact_json(&value, other).get(),
            r#"{"b":1E5,"c":-0,"d":1.10,"e":[1e-7]}"#
        );
    }

    #[test]
    fn exact_encoding_falls_back_when_the_text_does_not_line_up() {
        // A repeated key: the parse kept the last value; so does the output.
        let dup = br#"{"a": 1, "b": 18446744073709551616, "a": 2}"#;
        let value: Value = serde_json::from_slice(dup).expect("json");
        assert_eq!(
            encode_exact(&value, dup, JsonStyle::Python).expect("enc"),
            encode(&value, JsonStyle::Python).expect("enc")
        );
        // Not the text of this value at all.
        let value = json!({"x": 5});
        assert_eq!(
            encode_exact(&value, b"[6]", JsonStyle::Python).expect("enc"),
            br#"{"x": 5}"#.to_vec()
        );
        assert_eq!(
            encode_exact(&value, b"{}", JsonStyle::Compact).expect("enc"),
            br#"{"x":5}"#.to_vec()
        );
        // Numbers inside strings are not numbers.
        let text = br#"{"s": "1 2 3", "n": 10000000000000000000000}"#;
        let value: Value = serde_json::from_slice(text).expect("json");
        assert_eq!(
            encode_exact(&value, text, JsonStyle::Python).expect("enc"),
            text.to_vec()
        );
    }

    #[test]
    fn python_quirks_get_reasons_of_their_own() {
        for (text, reason) in [
            (&br#"{"v": NaN}"#[..], "non_finite_number"),
            (br#"{"v": Infinity}"#, "non_finite_number"),
            (br#"{"v": [-Infinity]}"#, "non_finite_number"),
            (br#"{"v": 1e400}"#, "non_finite_number"),
            (br#"{"v": -1E+400}"#, "non_finite_number"),
            (br#"{"s": "\ud800"}"#, "lone_surrogate"),
            (br#"{"s": "a\udc00b"}"#, "lone_surrogate"),
            (br#"{"s": "\ud800\u0041"}"#, "lone_surrogate"),
            (br#"{"s": "\ud800", "v": NaN}"#, "lone_surrogate"),
            // Quirks together with other damage are just invalid JSON.
            (br#"{"v": NaN,,}"#, "invalid_json"),
            (br#"{"v": nan}"#, "invalid_json"),
            (br#"{"s": "\ud800"#, "invalid_json"),
        ] {
            let err = decode_data(text, 1000).expect_err("refused");
            assert_eq!(err.reason(), reason, "{}", String::from_utf8_lossy(text));
        }
        // A proper pair is fine.
        assert_eq!(
            decode_data(br#""\ud83d\ude00""#, 100),
            Ok(json!("\u{1f600}"))
        );
        let err = decode_data(br#"{"v": NaN}"#, 100).expect_err("refused");
        assert!(err.to_string().contains("NaN, Infinity"), "{err}");
    }

    #[test]
    fn lenient_parsing_reads_what_python_reads() {
        assert_eq!(
            parse_python_lenient(br#"{"source": "orion-x", "v": NaN, "s": "\ud800"}"#),
            Some(json!({"source": "orion-x", "v": 0, "s": "\u{fffd}"}))
        );
        assert_eq!(parse_python_lenient(br#"{"a": 1}"#), Some(json!({"a": 1})));
        assert_eq!(parse_python_lenient(b"not json"), None);
        assert_eq!(parse_python_lenient(b"1 2"), None);
    }

    #[test]
    fn id_millis_parses() {
        assert_eq!(id_millis("1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(id_millis("garbage"), None);
    }
}
