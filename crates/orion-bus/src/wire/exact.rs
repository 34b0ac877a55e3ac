//! Encoding with the numbers of the original text: [`encode_exact`] and
//! [`exact_json`] write a parsed message with the number tokens of the
//! text it came from, so integers beyond 64 bits and floats keep their
//! bytes (see docs/ARCHITECTURE.md, "Numbers").

use std::cell::Cell;
use std::io;

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::Formatter as _;
use serde_json::value::RawValue;

use super::python::{PythonFormatter, python_float_repr};
use super::tokens::{Token, Tokens};
use super::{JsonStyle, encode};

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
