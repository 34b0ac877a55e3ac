//! Typed internal events: each observable occurrence is one value whose
//! [`InternalEvent::emit`] writes its log line (at its level, with the
//! structured fields `stream`, `group`, `id`, `error` where they apply)
//! and updates its metric together, as vector's `internal_events` do.
//!
//! Call sites build an event and emit it; they neither log nor count by
//! hand, so a log line cannot go without its count or the other way round,
//! and the label values an event can carry are the enums of
//! [`crate::metrics`]. Metric names and families live in
//! [`crate::metrics`]; this module owns what is logged with them.
//!
//! - `redis.rs`: [`RedisCommandFailed`], a failed Redis command.
//! - `publish.rs`: [`MessageRejected`], a message refused before writing.
//! - `consumer.rs`: dead letters, claims, recreated groups, stale consumers
//!   removed, entries lost to trimming.
//! - `observer.rs`: entries the observer read, and those it missed.

mod consumer;
mod observer;
mod publish;
mod redis;

pub(crate) use consumer::{
    EntriesClaimed, EntryDeadLettered, GroupRecreated, LossCause, StaleConsumerRemoved,
    UnreadEntriesLost,
};
pub(crate) use observer::{EntriesMissed, EntryObserved};
pub(crate) use publish::MessageRejected;
pub(crate) use redis::RedisCommandFailed;

use crate::metrics::Metrics;

/// One observable occurrence: its log line and its metric update.
pub(crate) trait InternalEvent {
    /// Logs the event and updates its metric in `metrics`.
    fn emit(self, metrics: &Metrics);
}
