//! orion-bus: a contract-validated event bus on Redis Streams,
//! wire-compatible with the ORION Python bus.
//!
//! # Layout
//! - [`contracts`]: loads `*.schema.json` files (JSON Schema Draft 2020-12),
//!   compiles each once, and validates messages with every violation reported.
//! - [`wire`]: the wire format shared with the Python bus: stream names,
//!   the single `data` field, Python-identical JSON encoding, and robust
//!   decoding of whatever another client wrote.
//! - [`connection`]: Redis settings (URL, ACL, db, timeouts) and connections.
//! - [`bus`]: the [`Bus`] handle and validated, optionally pipelined publishing.
//! - [`consumer`]: consumer groups over several streams, a bounded worker
//!   pool with backpressure, batched acks, dead-lettering of poison entries,
//!   and graceful draining on shutdown.
//! - [`metrics`]: every metric name, and the counters the other modules bump.
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` for the daemon.
//! - [`inspect`]: group-less reading for `tail`, and CLI input splitting.
//! - [`config`]: settings from flags, environment and a TOML file, with every
//!   problem reported at once.
//! - [`examples`]: the project's own example contracts, embedded.
//! - [`demo`]: the end-to-end demo behind `orion-bus demo`.
//! - [`dlq`]: listing, showing, redriving and purging dead letters.
//! - [`retention`]: safe trimming and detection of entries lost to trimming.
//! - [`status`]: streams, groups, consumers and dead letters for operators
//!   (`status`, the `/metrics` gauges) and moving a group (`replay`).
//! - [`observer`]: `serve --observe`, validating every stream without a group.
//! - [`typed`]: generated contract types ([`typed::ContractType`]), typed
//!   publishing and [`typed::TypedConsumer`], versions a consumer accepts.
//! - [`backoff`]: retry pacing for Redis errors.
//! - [`bench`]: the load generator behind `orion-bus bench` (throughput,
//!   latency percentiles, peak RSS and CPU time).
//!
//! Shutdown is always a parameter (a [`CancellationToken`]); nothing in the
//! library installs signal handlers.

pub mod backoff;
pub mod bench;
pub mod bus;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod contracts;
pub mod demo;
pub mod dlq;
pub mod examples;
pub mod http;
pub mod inspect;
pub mod metrics;
pub mod observer;
mod reply;
pub mod retention;
pub mod status;
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
pub use tokio_util::sync::CancellationToken;
pub use typed::{ContractType, TypedConsumer, TypedDelivery};
pub use wire::JsonStyle;

// Lets generated code name this crate as `orion_bus` from inside it too.
extern crate self as orion_bus;

/// What [`message_enum!`] expands to needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json::{Error as JsonError, Value, from_value};
}

/// The README's code examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
