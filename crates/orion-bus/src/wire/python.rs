//! What CPython's `json` does that JSON does not: `json.dumps`'s layout and
//! float repr ([`PythonFormatter`]), and the quirks of what it writes
//! (`NaN`, `Infinity`, lone surrogates), found and replaced so that
//! decoding can name them and the observer can still label the message.

use std::io;

use serde_json::Value;

use super::tokens::{Token, Tokens};

/// What Python's `json` writes (or reads) that JSON does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PythonQuirk {
    /// `NaN`, `Infinity`, `-Infinity`, or a number beyond `f64`'s range.
    NonFiniteNumber,
    /// A `\uD800`-`\uDFFF` escape without its pair.
    LoneSurrogate,
}

/// `text` with Python's quirks replaced by valid JSON (`0` for a
/// non-finite number, `\ufffd` for a lone surrogate), and the first quirk
/// found, if any. Tokens are joined by single spaces.
pub(super) fn without_python_quirks(text: &[u8]) -> (Vec<u8>, Option<PythonQuirk>) {
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

/// A `serde_json` formatter that writes what CPython's `json.dumps` writes.
#[derive(Debug, Clone, Copy)]
pub(super) struct PythonFormatter;

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
pub(super) fn python_float_repr(value: f64) -> String {
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
