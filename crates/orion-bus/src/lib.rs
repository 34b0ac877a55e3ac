//! orion-bus: a contract-validated event bus on Redis Streams,
//! wire-compatible with the ORION Python bus.
//!
//! # The API
//! - Publishing: [`Bus`] (connect with [`RedisSettings`], a
//!   [`ContractRegistry`] and [`BusOptions`]), [`PublishError`].
//! - Consuming: [`Consumer`] with [`ConsumerOptions`], a [`Handler`] (any
//!   `async Fn(Delivery) -> Result<(), HandlerError>`), [`ConsumeError`].
//! - Contracts: [`ContractRegistry`], [`Contract`], [`Violations`].
//! - The typed layer: [`typed`] ([`ContractType`], [`TypedConsumer`],
//!   `message_enum!`), for the types `orion-bus codegen` generates.
//! - Operator tools: [`status`] (and `replay`), [`dlq`], [`observer`],
//!   [`inspect`] (`tail`), and, with the `http` feature, `http`
//!   (`/healthz`, `/readyz`, `/metrics`).
//! - The wire format: [`wire`] (stream names, encoding, raw entries), and
//!   [`retention`] (how streams are trimmed, what trimming lost).
//!
//! # Layout
//! Private modules, re-exported above:
//! - `contracts`: loads `*.schema.json` files (JSON Schema Draft 2020-12),
//!   compiles each once, and validates messages with every violation
//!   reported.
//! - `connection`: Redis settings (URL, ACL, db, timeouts, TLS) and
//!   connections.
//! - `bus`: the [`Bus`] handle and validated, optionally pipelined
//!   publishing.
//! - `consumer`: consumer groups over several streams, a bounded worker
//!   pool with backpressure, batched acks, dead-lettering of poison
//!   entries, and graceful draining on shutdown.
//! - `metrics`: every metric family, its name and labels, and the enums of
//!   fixed label values (`DeadLetterReason`, `RejectReason`, ...).
//! - `telemetry`: typed internal events, each one log line and its metric.
//! - `backoff`: retry pacing for Redis errors.
//! - `reply`: fields out of `XINFO` replies.
//!
//! Shutdown is always a parameter (a [`CancellationToken`]); nothing in the
//! library installs signal handlers.

mod backoff;
mod bus;
mod connection;
mod consumer;
mod contracts;
pub mod dlq;
#[cfg(feature = "http")]
pub mod http;
pub mod inspect;
mod metrics;
pub mod observer;
mod reply;
pub mod retention;
pub mod status;
mod telemetry;
pub mod typed;
pub mod wire;

pub use bus::{Bus, BusOptions, Prepared, PublishError};
pub use connection::{ConnectError, RedisSettings};
pub use consumer::{
    ConsumeError, Consumer, ConsumerOptions, ConsumerReport, Delivery, ErrorPolicy, Handler,
    HandlerError, HandlerErrorKind, Idempotency, StartId,
};
pub use contracts::{
    Contract, ContractError, ContractOptions, ContractRegistry, ContractVersion, Violation,
    Violations,
};
pub use metrics::Metrics;
pub use retention::Retention;
pub use tokio_util::sync::CancellationToken;
pub use typed::{ContractType, TypedConsumer, TypedDelivery};
pub use wire::JsonStyle;

/// What [`message_enum!`] expands to needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json::{Error as JsonError, Value, from_value};
}

/// The README's code examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
