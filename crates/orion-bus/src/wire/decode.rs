//! Decoding one entry: the `data` field of a [`RawEntry`] into JSON, with
//! a size limit, and [`DecodeError`], which names what was wrong (Python's
//! quirks apart from other invalid JSON).

use serde_json::Value;

use super::DATA_FIELD;
use super::python::{PythonQuirk, without_python_quirks};
use crate::metrics::PoisonReason;

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
        self.poison_reason().as_str()
    }

    /// The reason as the label enum.
    pub(crate) fn poison_reason(&self) -> PoisonReason {
        match self {
            Self::MissingData => PoisonReason::MissingData,
            Self::Deleted => PoisonReason::Deleted,
            Self::NotUtf8 { .. } => PoisonReason::NotUtf8,
            Self::TooLarge { .. } => PoisonReason::TooLarge,
            Self::InvalidJson(_) => PoisonReason::InvalidJson,
            Self::NonFiniteNumber(_) => PoisonReason::NonFiniteNumber,
            Self::LoneSurrogate(_) => PoisonReason::LoneSurrogate,
        }
    }
}

/// One stream entry exactly as Redis returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawEntry {
    /// The entry id, e.g. `1700000000000-0`.
    pub id: String,
    /// The field/value pairs, or `None` when the entry was deleted.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl RawEntry {
    /// An entry with this id and these field/value pairs (`None`: deleted).
    #[must_use]
    pub fn new(id: impl Into<String>, fields: Option<Vec<(Vec<u8>, Vec<u8>)>>) -> Self {
        Self {
            id: id.into(),
            fields,
        }
    }

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
