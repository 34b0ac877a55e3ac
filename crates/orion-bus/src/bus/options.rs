//! [`BusOptions`]: how a [`Bus`](super::Bus) publishes (prefix, stream
//! cap, retention, encoding, size limit, retry budget), with safe defaults.

use crate::retention::Retention;
use crate::wire::JsonStyle;

/// Publishing settings shared by everything built from one [`Bus`](super::Bus).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BusOptions {
    /// Stream key prefix: streams are `{prefix}:{contract}s`. Default `orion`.
    pub prefix: String,
    /// Approximate stream length cap (`MAXLEN ~`). `0` disables trimming.
    /// Default 10000, as the Python bus.
    pub max_len: u64,
    /// Largest encoded message accepted, in bytes, at publish and consume.
    /// Default 1 MiB: far above any ORION message, far below what would hurt
    /// a Raspberry Pi's Redis.
    pub max_message_bytes: usize,
    /// How messages are encoded. Default [`JsonStyle::Python`], byte-identical
    /// to the Python bus.
    pub json_style: JsonStyle,
    /// `None` (default): a failed write returns a retryable error at once.
    /// `Some(budget)`: retryable failures (connection lost, timeout, Redis
    /// loading) are retried with backoff for up to `budget`. A retried
    /// write may be applied twice if Redis applied it but the reply was
    /// lost; consumers with idempotency absorb that.
    pub retry_budget: Option<std::time::Duration>,
    /// How stream length is bounded. Default [`Retention::Approximate`]
    /// (`MAXLEN ~ max_len`, as the Python bus); [`Retention::Safe`] never
    /// trims what a group still needs.
    pub retention: Retention,
    /// Validate typed messages ([`Bus::publish_typed`](super::Bus::publish_typed)) against their
    /// schemas, as untyped ones always are. Default on: a generated type
    /// cannot express every schema rule. Turning it off saves the
    /// validation cost measured in docs/BENCHMARKS.md and nothing else.
    pub validate_typed: bool,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            prefix: "orion".to_owned(),
            max_len: 10_000,
            max_message_bytes: 1024 * 1024,
            json_style: JsonStyle::Python,
            retention: Retention::Approximate,
            retry_budget: None,
            validate_typed: true,
        }
    }
}

impl BusOptions {
    /// Turns schema validation of typed messages on or off (default on).
    #[must_use]
    pub fn validate_typed(mut self, on: bool) -> Self {
        self.validate_typed = on;
        self
    }

    /// Sets the stream prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the approximate stream cap (`0` = no trimming).
    #[must_use]
    pub fn max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// Sets the encoded-size limit.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Retries retryable publish failures for up to `budget` (`None`: fail fast).
    #[must_use]
    pub fn retry_budget(mut self, budget: Option<std::time::Duration>) -> Self {
        self.retry_budget = budget;
        self
    }

    /// Sets the retention mode.
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the JSON encoding style.
    #[must_use]
    pub fn json_style(mut self, style: JsonStyle) -> Self {
        self.json_style = style;
        self
    }
}
