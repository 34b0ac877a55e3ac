//! Typed contracts: the traits that tie generated Rust types to their
//! contracts, the lossless value types the generated code uses, and the
//! typed publish and consume calls.
//!
//! Owns [`ContractType`] (one type = one contract version), [`Accept`]
//! (what a typed consumer receives: one type, or an enum of several made
//! with [`message_enum!`](crate::message_enum)), [`Timestamp`] and [`Uuid`]
//! (the `date-time` and `uuid` formats, kept as the exact text that was on
//! the wire), [`Integer`] (a JSON Schema integer, `5.0` included), [`Bus::publish_typed`] and [`TypedConsumer`].
//!
//! Types come from `orion-bus codegen` (the `orion-bus-codegen` crate).
//! Runtime validation stays on at both boundaries: a type cannot express
//! every schema rule (`oneOf` exclusivity, for one), and other clients
//! write to the same streams.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CancellationToken;
use crate::bus::{Bus, PublishError};
use crate::consumer::{
    ConsumeError, Consumer, ConsumerOptions, ConsumerReport, Delivery, Handler, HandlerError,
};
use crate::contracts::{Violation, Violations};

/// A Rust type generated from one version of one contract.
pub trait ContractType: Serialize + DeserializeOwned + Send + 'static {
    /// The contract name (the schema file name without `.schema.json`).
    const CONTRACT: &'static str;
    /// The `version` const the schema pins, if it pins one.
    const VERSION: Option<&'static str>;
}

/// What a typed consumer can receive: one [`ContractType`] (which accepts
/// just its own contract version) or an enum of several, declared with
/// [`message_enum!`](crate::message_enum).
pub trait Accept: Sized + Send + 'static {
    /// Every `(contract, version)` accepted; `None` as the version accepts
    /// a contract that pins no version.
    fn accepted() -> Vec<(&'static str, Option<&'static str>)>;

    /// Builds the value from a message that passed its contract. `None`
    /// when this `(contract, version)` is not accepted.
    fn from_message(
        contract: &str,
        version: Option<&str>,
        message: Value,
    ) -> Option<Result<Self, serde_json::Error>>;
}

impl<T: ContractType> Accept for T {
    fn accepted() -> Vec<(&'static str, Option<&'static str>)> {
        vec![(T::CONTRACT, T::VERSION)]
    }

    fn from_message(
        contract: &str,
        version: Option<&str>,
        message: Value,
    ) -> Option<Result<Self, serde_json::Error>> {
        if contract != T::CONTRACT || (T::VERSION.is_some() && version != T::VERSION) {
            return None;
        }
        Some(serde_json::from_value(message))
    }
}

/// Declares an enum of [`ContractType`]s that a typed consumer accepts:
/// several versions of one contract, or several contracts (a module that
/// reads `decision` and `approval_decision`), or both.
///
/// ```
/// use orion_bus::examples::types::{Alert, Command};
///
/// orion_bus::message_enum! {
///     /// What the commander reacts to.
///     #[derive(Debug)]
///     pub enum Input {
///         Alert(Alert),
///         Command(Command),
///     }
/// }
/// # use orion_bus::typed::Accept;
/// assert_eq!(Input::accepted(), [("alert", Some("1.0")), ("command", Some("1.0"))]);
/// ```
#[macro_export]
macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $crate::typed::Accept for $name {
            fn accepted() -> ::std::vec::Vec<(&'static str, ::std::option::Option<&'static str>)> {
                ::std::vec![$( (
                    <$ty as $crate::typed::ContractType>::CONTRACT,
                    <$ty as $crate::typed::ContractType>::VERSION,
                ), )+]
            }

            fn from_message(
                contract: &str,
                version: ::std::option::Option<&str>,
                message: $crate::__private::Value,
            ) -> ::std::option::Option<::std::result::Result<Self, $crate::__private::JsonError>> {
                $(
                    if contract == <$ty as $crate::typed::ContractType>::CONTRACT
                        && (<$ty as $crate::typed::ContractType>::VERSION.is_none()
                            || version == <$ty as $crate::typed::ContractType>::VERSION)
                    {
                        return ::std::option::Option::Some(
                            $crate::__private::from_value::<$ty>(message).map($name::$variant),
                        );
                    }
                )+
                ::std::option::Option::None
            }
        }
    };
}

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

/// One typed delivery: the value and where it came from.
#[derive(Debug, Clone)]
pub struct TypedDelivery<M> {
    message: M,
    contract: Arc<str>,
    version: Option<String>,
    id: String,
    stream: Arc<str>,
    deliveries: u64,
}

impl<M> TypedDelivery<M> {
    /// The message.
    #[must_use]
    pub fn message(&self) -> &M {
        &self.message
    }

    /// Takes the message.
    #[must_use]
    pub fn into_message(self) -> M {
        self.message
    }

    /// The contract it conforms to.
    #[must_use]
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// Its `version` field.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The stream entry id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream it came from.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Deliveries so far, as Redis counts them (1 the first time).
    #[must_use]
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }
}

/// A consumer whose handler receives `M`: one generated contract type, or
/// an enum of several from [`message_enum!`](crate::message_enum).
///
/// It consumes exactly the contracts `M` names and accepts exactly the
/// versions `M` names; every entry is still validated against its schema
/// first, and a valid entry of any other version is dead-lettered with
/// the reason `unaccepted_version`.
#[derive(Debug)]
pub struct TypedConsumer<M> {
    inner: Consumer,
    _message: PhantomData<fn() -> M>,
}

impl<M: Accept> TypedConsumer<M> {
    /// Creates the groups, like [`Consumer::new`]. The contracts and
    /// accepted versions come from `M`; any set in `options` are replaced.
    ///
    /// # Errors
    /// See [`ConsumeError`].
    pub async fn new(bus: &Bus, mut options: ConsumerOptions) -> Result<Self, ConsumeError> {
        options.contracts.clear();
        options.accept_versions.clear();
        let mut unpinned = Vec::new();
        for (contract, version) in M::accepted() {
            if !options.contracts.iter().any(|c| c == contract) {
                options.contracts.push(contract.to_owned());
            }
            match version {
                Some(v) => options
                    .accept_versions
                    .entry(contract.to_owned())
                    .or_default()
                    .push(v.to_owned()),
                None => unpinned.push(contract),
            }
        }
        // A type for a contract that pins no version accepts all of it.
        for contract in unpinned {
            options.accept_versions.remove(contract);
        }
        Ok(Self {
            inner: Consumer::new(bus, options).await?,
            _message: PhantomData,
        })
    }

    /// Runs until `shutdown`, like [`Consumer::run`], handing each message
    /// to `handler` as an `M`. `Ok` acks it; errors follow the consumer's
    /// error policy.
    ///
    /// # Errors
    /// See [`ConsumeError`].
    pub async fn run<F, Fut>(
        self,
        handler: F,
        shutdown: CancellationToken,
    ) -> Result<ConsumerReport, ConsumeError>
    where
        F: Fn(TypedDelivery<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        let adapter = TypedHandler {
            handler,
            _message: PhantomData,
        };
        self.inner.run(adapter, shutdown).await
    }
}

struct TypedHandler<M, F> {
    handler: F,
    _message: PhantomData<fn() -> M>,
}

impl<M, F, Fut> Handler for TypedHandler<M, F>
where
    M: Accept,
    F: Fn(TypedDelivery<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Delivery {
            contract,
            stream,
            id,
            deliveries,
            message,
            ..
        } = delivery;
        let version = message
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let typed = match M::from_message(&contract, version.as_deref(), message) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(HandlerError::permanent(format!(
                    "message passed contract {contract} but does not fit {}: {e}",
                    std::any::type_name::<M>()
                )));
            }
            // The consumer's accepted versions are M's, so this only
            // happens if the two were changed apart.
            None => {
                return Err(HandlerError::permanent(format!(
                    "{contract} version {version:?} is not accepted by {}",
                    std::any::type_name::<M>()
                )));
            }
        };
        (self.handler)(TypedDelivery {
            message: typed,
            contract,
            version,
            id,
            stream,
            deliveries,
        })
        .await
    }
}

impl Bus {
    /// Publishes a typed message to its contract's stream. It is validated
    /// against the schema like any other message unless
    /// [`BusOptions::validate_typed`](crate::BusOptions::validate_typed) is
    /// off; its `version` must be the type's.
    ///
    /// # Errors
    /// See [`PublishError`].
    pub async fn publish_typed<T: ContractType>(
        &self,
        message: &T,
    ) -> Result<String, PublishError> {
        let value = typed_value(message, None)?;
        let prepared =
            self.prepare_with(T::CONTRACT, &value, None, self.options().validate_typed)?;
        let mut ids = self
            .publish_prepared(std::slice::from_ref(&prepared))
            .await?;
        Ok(ids.pop().unwrap_or_default())
    }

    /// Publishes many typed messages of one type in one round trip.
    ///
    /// # Errors
    /// See [`PublishError`]; nothing is written if any message fails.
    pub async fn publish_typed_batch<T: ContractType>(
        &self,
        messages: &[T],
    ) -> Result<Vec<String>, PublishError> {
        let mut batch = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let value = typed_value(m, Some(i))?;
            batch.push(self.prepare_with(
                T::CONTRACT,
                &value,
                Some(i),
                self.options().validate_typed,
            )?);
        }
        self.publish_prepared(&batch).await
    }
}

/// Serialises a typed message and checks its `version` is the type's.
fn typed_value<T: ContractType>(message: &T, index: Option<usize>) -> Result<Value, PublishError> {
    let value = serde_json::to_value(message).map_err(|e| PublishError::Invalid {
        contract: T::CONTRACT.to_owned(),
        index,
        violations: Violations(vec![Violation {
            instance_path: String::new(),
            schema_path: String::new(),
            message: format!("cannot serialise {}: {e}", std::any::type_name::<T>()),
        }]),
    })?;
    if let Some(expected) = T::VERSION {
        let got = value.get("version").and_then(Value::as_str);
        if got != Some(expected) {
            return Err(PublishError::Invalid {
                contract: T::CONTRACT.to_owned(),
                index,
                violations: Violations(vec![Violation {
                    instance_path: "/version".to_owned(),
                    schema_path: "/properties/version/const".to_owned(),
                    message: format!(
                        "{} is version {expected} of {}, but its version field says {got:?}",
                        std::any::type_name::<T>(),
                        T::CONTRACT
                    ),
                }]),
            });
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_keep_their_text_and_reject_garbage() {
        for ok in [
            "2026-11-24T19:02:14.123456+00:00",
            "2026-11-24T19:02:14Z",
            "2026-11-24t19:02:14.1-07:30",
        ] {
            let t: Timestamp = ok.parse().expect(ok);
            assert_eq!(t.as_str(), ok);
            let json = serde_json::to_string(&t).expect("serialises");
            assert_eq!(json, format!("\"{ok}\""));
            let back: Timestamp = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(back, t);
        }
        for bad in ["yesterday", "2026-11-24", "2026-13-01T00:00:00Z", ""] {
            let err = bad.parse::<Timestamp>().expect_err(bad);
            assert!(err.to_string().contains("not a valid date-time"), "{err}");
            assert!(serde_json::from_value::<Timestamp>(Value::from(bad)).is_err());
        }
        let upper = "550E8400-E29B-41D4-A716-446655440000";
        let u: Uuid = upper.parse().expect("upper case is a uuid");
        assert_eq!(u.as_str(), upper, "case kept");
        assert_eq!(u.to_uuid().to_string(), upper.to_lowercase());
        for bad in ["nope", "550e8400-e29b-41d4-a716-44665544000", ""] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Uuid>(Value::from(12)).is_err());
    }

    #[test]
    fn integers_accept_whole_floats_as_json_schema_does() {
        let read = |text: &str| serde_json::from_str::<Integer>(text);
        assert_eq!(read("5").expect("int").get(), 5);
        assert_eq!(read("-5").expect("int").get(), -5);
        assert_eq!(read("5.0").expect("whole float").get(), 5);
        assert_eq!(read("1e3").expect("whole float").get(), 1000);
        for bad in ["5.5", "\"5\"", "1e300", "18446744073709551615", "null"] {
            assert!(read(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&Integer::new(5)).expect("ser"), "5");
    }

    #[test]
    fn fresh_values_are_valid() {
        let now = Timestamp::now();
        assert!(now.as_str().parse::<Timestamp>().is_ok(), "{now}");
        let id = Uuid::new_v4();
        assert!(id.as_str().parse::<Uuid>().is_ok(), "{id}");
        assert_ne!(Uuid::new_v4(), id);
    }
}
