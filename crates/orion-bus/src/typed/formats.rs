//! The value types generated code uses for what Rust has no exact type
//! for: [`Timestamp`] and [`Uuid`] (the `date-time` and `uuid` formats,
//! kept as the exact text, checked by the bus's own validator) and
//! [`Integer`] (a JSON Schema integer, `5.0` included).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A one-field validator for a string format, compiled by the same
/// validator the contracts use, so a typed value and a validated message
/// can never disagree about what the format allows.
fn format_validator(format: &str) -> jsonschema::Validator {
    let schema = serde_json::json!({"type": "string", "format": format});
    #[allow(clippy::expect_used)] // a fixed, known-good schema
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("a two-keyword schema compiles")
}

static DATE_TIME: LazyLock<jsonschema::Validator> = LazyLock::new(|| format_validator("date-time"));
static UUID: LazyLock<jsonschema::Validator> = LazyLock::new(|| format_validator("uuid"));

/// A string that did not have the format its type requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {format}")]
pub struct FormatError {
    format: &'static str,
    value: String,
}

macro_rules! format_string {
    ($(#[$meta:meta])* $name:ident, $format:literal, $validator:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The text, exactly as it was written.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                if $validator.is_valid(&Value::String(s.to_owned())) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(FormatError {
                        format: $format,
                        value: crate::contracts::truncate(s.to_owned(), 80),
                    })
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = FormatError;
            fn try_from(s: &str) -> Result<Self, FormatError> {
                s.parse()
            }
        }

        impl TryFrom<String> for $name {
            type Error = FormatError;
            fn try_from(s: String) -> Result<Self, FormatError> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

format_string!(
    /// A JSON Schema `date-time` (RFC 3339), kept as the exact text. The
    /// Python modules write `datetime.isoformat()` (`+00:00`), others `Z`;
    /// both survive a typed round trip unchanged.
    Timestamp,
    "date-time",
    DATE_TIME
);

format_string!(
    /// A JSON Schema `uuid`, kept as the exact text (case included).
    Uuid,
    "uuid",
    UUID
);

impl Timestamp {
    /// The current time, UTC, with microseconds (`2026-11-24T19:02:14.123456Z`).
    #[must_use]
    pub fn now() -> Self {
        Self(humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string())
    }
}

impl Uuid {
    /// A new random (version 4) UUID, lower case, as Python's `uuid4()`.
    #[must_use]
    pub fn new_v4() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The parsed UUID.
    #[must_use]
    pub fn to_uuid(&self) -> uuid::Uuid {
        // Only valid UUID text gets in (`FromStr`, `Deserialize`), and the
        // format check accepts nothing `uuid` rejects.
        uuid::Uuid::parse_str(&self.0).unwrap_or_default()
    }
}

/// A JSON Schema `integer`. JSON Schema counts `5.0` as an integer (and
/// Python writes one whenever a float holds a whole number), so this
/// accepts a whole-number float as well as `5`; it always writes `5`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Integer(i64);

impl Integer {
    /// The integer `value`.
    #[must_use]
    pub const fn new(value: i64) -> Self {
        Self(value)
    }

    /// The value.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for Integer {
    fn from(value: i64) -> Self {
        Self(value)
    }
}

impl From<Integer> for i64 {
    fn from(value: Integer) -> Self {
        value.0
    }
}

impl std::ops::Deref for Integer {
    type Target = i64;
    fn deref(&self) -> &i64 {
        &self.0
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Integer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer (a whole number, within 64 bits)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Integer, E> {
                i64::try_from(v)
                    .map(Integer)
                    .map_err(|_| E::custom(format!("{v} does not fit in 64 signed bits")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Integer, E> {
                // Every whole f64 in [-2^63, 2^63) converts exactly.
                const LIMIT: f64 = 9_223_372_036_854_775_808.0;
                if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Integer(v as i64))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a whole number within 64 bits"
                    )))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}
