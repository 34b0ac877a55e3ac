//! What a consumer hands to user code, and what user code hands back.
//!
//! Owns [`Delivery`] (one validated entry), the [`Handler`] trait (with a
//! blanket impl for async closures) and [`HandlerError`], whose
//! [`HandlerErrorKind`] tells the consumer whether a failure is worth
//! retrying or the message is poison.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// One entry that passed decoding and contract validation.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) contract: Arc<str>,
    pub(crate) stream: Arc<str>,
    pub(crate) id: String,
    pub(crate) deliveries: u64,
    pub(crate) message: Value,
    pub(crate) data: Vec<u8>,
}

impl Delivery {
    /// The contract the message conforms to.
    #[must_use]
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// The stream it came from.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The stream entry id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many times this entry has been delivered, as Redis counts it:
    /// 1 on the first delivery, more after failures, crashes or claims.
    #[must_use]
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// The validated message.
    #[must_use]
    pub fn message(&self) -> &Value {
        &self.message
    }

    /// The message as it was stored: the entry's `data` field, byte for
    /// byte (UTF-8 JSON, validated). Unlike [`Self::message`], whose
    /// integers beyond 64 bits are floats (`serde_json::Value`), it keeps
    /// every number exactly as its producer wrote it; see
    /// [`crate::wire::exact_json`] to print the message with them.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the validated message.
    #[must_use]
    pub fn into_message(self) -> Value {
        self.message
    }

    /// Deserialises the message into a type (e.g. a generated contract type).
    ///
    /// # Errors
    /// A permanent [`HandlerError`] when the type does not fit the message.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        T::deserialize(&self.message).map_err(HandlerError::permanent)
    }
}

/// Whether a failed message might succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerErrorKind {
    /// A transient failure (a downstream service was down, a timeout):
    /// the entry stays pending and may be delivered again.
    Retryable,
    /// The message can never be handled: it is poison. The consumer's
    /// policy decides when it reaches the dead-letter stream; it is never
    /// acked as if it had succeeded.
    Permanent,
}

/// A handler's failure. The entry is **not** acked.
pub struct HandlerError {
    kind: HandlerErrorKind,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl HandlerError {
    /// A transient failure.
    pub fn retryable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            kind: HandlerErrorKind::Retryable,
            source: source.into(),
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            kind: HandlerErrorKind::Permanent,
            source: source.into(),
        }
    }

    /// Which kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> HandlerErrorKind {
        self.kind
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// User code that handles deliveries. Implemented for any
/// `Fn(Delivery) -> impl Future<Output = Result<(), HandlerError>>`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery. `Ok` acks it; `Err` is handled by the
    /// consumer's [`ErrorPolicy`](super::ErrorPolicy) and never acks it as
    /// a success.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(delivery)
    }
}
