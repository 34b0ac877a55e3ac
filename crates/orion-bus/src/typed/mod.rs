//! Typed contracts: the traits that tie generated Rust types to their
//! contracts, the lossless value types the generated code uses, and the
//! typed publish and consume calls.
//!
//! Owns [`ContractType`] (one type = one contract version), [`Accept`]
//! (what a typed consumer receives: one type, or an enum of several made
//! with [`message_enum!`](crate::message_enum)), [`Timestamp`] and [`Uuid`]
//! (the `date-time` and `uuid` formats, kept as the exact text that was on
//! the wire), [`Integer`] (a JSON Schema integer, `5.0` included), [`Bus::publish_typed`](crate::Bus::publish_typed)
//! and [`TypedConsumer`].
//!
//! Types come from `orion-bus codegen` (the `orion-bus-codegen` crate).
//! Runtime validation stays on at both boundaries: a type cannot express
//! every schema rule (`oneOf` exclusivity, for one), and other clients
//! write to the same streams.
//!
//! `formats.rs` holds the value types, `consumer.rs` [`TypedConsumer`],
//! `publish.rs` the typed publish calls.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod consumer;
mod formats;
mod publish;
#[cfg(test)]
mod tests;

pub use consumer::{TypedConsumer, TypedDelivery};
pub use formats::{FormatError, Integer, Timestamp, Uuid};

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
/// use orion_bus_examples::types::{Alert, Command};
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
