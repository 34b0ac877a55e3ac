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
//! are kept: `encode_exact` (what a raw publish uses) writes the message with the numbers of the
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
//!
//! One file per concern: this one owns stream names and encoding;
//! `exact.rs` the encoding with the original text's numbers; `python.rs`
//! Python's float repr and quirks; `tokens.rs` the forgiving tokenizer
//! both use; `decode.rs` decoding an entry; `entries.rs` parsing `XREAD`
//! and `XRANGE` replies.

use serde::Serialize;
use serde_json::Value;

mod decode;
mod entries;
mod exact;
mod python;
#[cfg(test)]
mod tests;
mod tokens;

pub use decode::{DecodeError, RawEntry, decode_data};
pub use entries::{ReplyShapeError, StreamEntries, id_millis, parse_entries, parse_read_reply};
pub(crate) use exact::encode_exact;
pub use exact::exact_json;
use python::PythonFormatter;
pub(crate) use python::parse_python_lenient;

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
