//! The metrics registry: every metric family the bus exposes, its name,
//! help text and label set, the counter and gauge updates, and `encode`.
//!
//! Owns the Prometheus registry (`prometheus-client`) and the families.
//! Names follow `orion_bus_<name>_<unit>[_total]`; labels are limited to
//! `stream`, `contract`, `group`, `reason`, `outcome` and `source`, never
//! message ids, so cardinality stays bounded by the number of contracts
//! and groups. The label sets and the enums of fixed label values live in
//! `labels.rs`; what is logged with each update lives in
//! [`crate::telemetry`], whose events are the way call sites update the
//! counters that come with a log line. `tests.rs` lists every series.
//!
//! Hot paths do not look labels up per message: [`Metrics::publisher`] and
//! [`Metrics::consumer`] hand out pre-resolved counter handles that share
//! their atomics with the registry.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod labels;
#[cfg(test)]
mod tests;

pub(crate) use labels::{
    ConsumeLabels, DeadLetterLabels, DeadLetterReason, GroupLabels, ObservedInvalidLabels,
    ObservedLabels, ObservedOutcome, PoisonReason, PublishLabels, RejectLabels, RejectReason,
    StreamLabels, ViolationLabels,
};

/// The registry and every metric family, shared by all bus components.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    published: Family<PublishLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    consumed: Family<ConsumeLabels, Counter>,
    acked: Family<ConsumeLabels, Counter>,
    handler_errors: Family<ConsumeLabels, Counter>,
    dead_lettered: Family<DeadLetterLabels, Counter>,
    handler_duration: Family<ConsumeLabels, Histogram>,
    end_to_end: Family<ConsumeLabels, Histogram>,
    group_pending: Family<GroupLabels, Gauge>,
    group_lag: Family<GroupLabels, Gauge>,
    group_idle_consumers: Family<GroupLabels, Gauge>,
    stream_length: Family<StreamLabels, Gauge>,
    dead_letter_length: Family<StreamLabels, Gauge>,
    observed: Family<ObservedLabels, Counter>,
    observed_violations: Family<ViolationLabels, Counter>,
    observed_invalid: Family<ObservedInvalidLabels, Counter>,
    redis_errors: Counter,
    redis_reconnects: Counter,
    workers_busy: Gauge,
    workers_capacity: Gauge,
    trimmed_unread: Family<GroupLabels, Counter>,
    group_recreated: Family<GroupLabels, Counter>,
    stale_consumers_removed: Family<GroupLabels, Counter>,
    claimed: Family<GroupLabels, Counter>,
    /// Loss already reported per (stream, group): (last-delivered id, count),
    /// so that repeated checks of the same gap count it once.
    loss_seen: std::sync::Mutex<std::collections::HashMap<(String, String), (String, u64)>>,
    /// Per (stream, group) that has not read anything yet: how many
    /// entries the stream had already lost when this process first saw it.
    removed_baseline: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the `orion_bus` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orion_bus");
        let published = Family::default();
        registry.register(
            "published_messages",
            "Messages validated and written to their stream",
            published.clone(),
        );
        let rejected = Family::default();
        registry.register(
            "rejected_messages",
            "Messages refused at publish, by reason; nothing was written",
            rejected.clone(),
        );
        let consumed = Family::default();
        registry.register(
            "consumed_messages",
            "Valid entries delivered to a handler",
            consumed.clone(),
        );
        let acked = Family::default();
        registry.register(
            "acked_messages",
            "Entries acknowledged after their handler succeeded",
            acked.clone(),
        );
        let handler_errors = Family::default();
        registry.register(
            "handler_errors",
            "Handler failures; the entry was left pending",
            handler_errors.clone(),
        );
        let dead_lettered = Family::default();
        registry.register(
            "dead_lettered_messages",
            "Entries copied to the dead-letter stream and acked, by reason",
            dead_lettered.clone(),
        );
        let handler_duration = Family::<ConsumeLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "handler_duration_seconds",
            "Time spent in the handler per delivered entry",
            handler_duration.clone(),
        );
        let end_to_end = Family::<ConsumeLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "end_to_end_latency_seconds",
            "From the entry id's timestamp (when Redis stored it) to its ack",
            end_to_end.clone(),
        );
        let group_pending = Family::default();
        registry.register(
            "group_pending_messages",
            "Entries delivered to the group and not yet acked (XPENDING)",
            group_pending.clone(),
        );
        let group_lag = Family::default();
        registry.register(
            "group_lag_messages",
            "Entries not yet delivered to the group (XINFO GROUPS lag)",
            group_lag.clone(),
        );
        let group_idle_consumers = Family::default();
        registry.register(
            "group_idle_consumers",
            "Consumers of the group that have not read for over a minute",
            group_idle_consumers.clone(),
        );
        let stream_length = Family::default();
        registry.register(
            "stream_length_messages",
            "Entries in the stream",
            stream_length.clone(),
        );
        let dead_letter_length = Family::default();
        registry.register(
            "dead_letter_length_messages",
            "Entries in the stream's dead-letter stream",
            dead_letter_length.clone(),
        );
        let observed = Family::default();
        registry.register(
            "observed_messages",
            "Entries the observer read, by outcome (valid or invalid), and entries it missed (outcome missed: trimmed or deleted before it read them)",
            observed.clone(),
        );
        let observed_violations = Family::default();
        registry.register(
            "observed_violations",
            "Invalid entries the observer read, by the message's source field",
            observed_violations.clone(),
        );
        let observed_invalid = Family::default();
        registry.register(
            "observed_invalid_messages",
            "Invalid entries the observer read, by reason (the dead-letter reason a consumer would give them) and the message's source field",
            observed_invalid.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis commands that failed (connection lost, timeout, server error)",
            redis_errors.clone(),
        );
        let redis_reconnects = Counter::default();
        registry.register(
            "redis_reconnects",
            "Connection-level Redis failures, each followed by a reconnect",
            redis_reconnects.clone(),
        );
        let workers_busy = Gauge::default();
        registry.register(
            "worker_pool_busy_workers",
            "Handlers running right now",
            workers_busy.clone(),
        );
        let workers_capacity = Gauge::default();
        registry.register(
            "worker_pool_capacity_workers",
            "Configured handler concurrency, summed over running consumers",
            workers_capacity.clone(),
        );
        let trimmed_unread = Family::default();
        registry.register(
            "trimmed_unread_messages",
            "Entries removed by trimming before a group had read them (lost to that group)",
            trimmed_unread.clone(),
        );
        let group_recreated = Family::default();
        registry.register(
            "group_recreated",
            "Consumer groups that vanished (stream deleted, group destroyed, Redis restarted empty) and were recreated where the group last stood",
            group_recreated.clone(),
        );
        let stale_consumers_removed = Family::default();
        registry.register(
            "stale_consumers_removed",
            "Consumers idle longer than stale_consumer_after with nothing pending, removed with XGROUP DELCONSUMER",
            stale_consumers_removed.clone(),
        );
        let claimed = Family::default();
        registry.register(
            "claimed_messages",
            "Entries taken over (XCLAIM) from a consumer presumed dead",
            claimed.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                published,
                rejected,
                consumed,
                acked,
                handler_errors,
                dead_lettered,
                handler_duration,
                end_to_end,
                group_pending,
                group_lag,
                group_idle_consumers,
                stream_length,
                dead_letter_length,
                observed,
                observed_violations,
                observed_invalid,
                redis_errors,
                redis_reconnects,
                workers_busy,
                workers_capacity,
                trimmed_unread,
                group_recreated,
                stale_consumers_removed,
                claimed,
                loss_seen: std::sync::Mutex::default(),
                removed_baseline: std::sync::Mutex::default(),
            }),
        }
    }

    /// The registry, in Prometheus text exposition format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// Counter handles for publishing one contract.
    #[must_use]
    pub(crate) fn publisher(&self, contract: &str) -> PublishCounters {
        let labels = PublishLabels {
            contract: contract.to_owned(),
        };
        PublishCounters {
            published: self.inner.published.get_or_create(&labels).clone(),
        }
    }

    /// Records a publish refused before anything was written.
    pub(crate) fn rejected(&self, contract: &str, reason: RejectReason) {
        self.inner
            .rejected
            .get_or_create(&RejectLabels {
                contract: contract.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counter handles for one (stream, contract, group).
    #[must_use]
    pub(crate) fn consumer(&self, stream: &str, contract: &str, group: &str) -> ConsumeCounters {
        let labels = ConsumeLabels {
            stream: stream.to_owned(),
            contract: contract.to_owned(),
            group: group.to_owned(),
        };
        ConsumeCounters {
            consumed: self.inner.consumed.get_or_create(&labels).clone(),
            acked: self.inner.acked.get_or_create(&labels).clone(),
            handler_errors: self.inner.handler_errors.get_or_create(&labels).clone(),
            handler_duration: self.inner.handler_duration.get_or_create(&labels).clone(),
            end_to_end: self.inner.end_to_end.get_or_create(&labels).clone(),
        }
    }

    /// Records an entry dead-lettered for `reason` (see
    /// [`crate::telemetry::EntryDeadLettered`]).
    pub(crate) fn dead_lettered(
        &self,
        stream: &str,
        contract: &str,
        group: &str,
        reason: DeadLetterReason,
    ) {
        self.inner
            .dead_lettered
            .get_or_create(&DeadLetterLabels {
                stream: stream.to_owned(),
                contract: contract.to_owned(),
                group: group.to_owned(),
                reason,
            })
            .inc();
    }

    /// Records a failed Redis command; connection-level failures also
    /// count as a reconnect (the connection manager reconnects after them).
    pub(crate) fn redis_error(&self, e: &redis::RedisError) {
        self.inner.redis_errors.inc();
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            self.inner.redis_reconnects.inc();
        }
    }

    /// Counts a consumer group recreated after it vanished.
    pub(crate) fn group_recreated(&self, stream: &str, group: &str) {
        self.inner
            .group_recreated
            .get_or_create(&GroupLabels::new(stream, group))
            .inc();
    }

    /// Counts `n` stale consumers removed from a group.
    pub(crate) fn stale_consumers_removed(&self, stream: &str, group: &str, n: u64) {
        self.inner
            .stale_consumers_removed
            .get_or_create(&GroupLabels::new(stream, group))
            .inc_by(n);
    }

    /// Counts `n` entries claimed from consumers presumed dead.
    pub(crate) fn claimed(&self, stream: &str, group: &str, n: u64) {
        self.inner
            .claimed
            .get_or_create(&GroupLabels::new(stream, group))
            .inc_by(n);
    }

    /// Records that `lost` entries were trimmed before `group` read them
    /// (the group's last-delivered id being `last_delivered`). Returns the
    /// newly lost count (0 when this gap was already reported).
    pub(crate) fn trimmed_unread(
        &self,
        stream: &str,
        group: &str,
        last_delivered: &str,
        lost: u64,
    ) -> u64 {
        let Ok(mut seen) = self.inner.loss_seen.lock() else {
            return 0;
        };
        let key = (stream.to_owned(), group.to_owned());
        let already = match seen.get(&key) {
            Some((id, n)) if id == last_delivered => *n,
            _ => 0,
        };
        let new = lost.saturating_sub(already);
        if new > 0 {
            seen.insert(key, (last_delivered.to_owned(), lost));
            self.inner
                .trimmed_unread
                .get_or_create(&GroupLabels::new(stream, group))
                .inc_by(new);
        }
        new
    }

    /// For a group that has read nothing yet: how many of the `removed`
    /// entries (added minus length) were removed while this process has
    /// been watching it. The first call for a group records the baseline.
    #[must_use]
    pub(crate) fn removed_since_first_seen(&self, stream: &str, group: &str, removed: u64) -> u64 {
        let Ok(mut base) = self.inner.removed_baseline.lock() else {
            return 0;
        };
        let first = *base
            .entry((stream.to_owned(), group.to_owned()))
            .or_insert(removed);
        removed.saturating_sub(first)
    }

    /// How many entries have been reported lost for a group so far (by
    /// this process, for the group's current life).
    pub(crate) fn reported_loss(&self, stream: &str, group: &str) -> u64 {
        self.inner
            .loss_seen
            .lock()
            .ok()
            .and_then(|seen| {
                seen.get(&(stream.to_owned(), group.to_owned()))
                    .map(|(_, n)| *n)
            })
            .unwrap_or(0)
    }

    /// Forgets what was reported lost for a group: after it was recreated
    /// its Redis counters start over, and new losses count from zero.
    pub(crate) fn forget_loss(&self, stream: &str, group: &str) {
        if let Ok(mut seen) = self.inner.loss_seen.lock() {
            seen.remove(&(stream.to_owned(), group.to_owned()));
        }
    }

    /// Forgets a group's [`Self::removed_since_first_seen`] baseline once it
    /// has read something (a later replay to `0` starts a new one).
    pub(crate) fn forget_removed_baseline(&self, stream: &str, group: &str) {
        if let Ok(mut base) = self.inner.removed_baseline.lock() {
            base.remove(&(stream.to_owned(), group.to_owned()));
        }
    }

    /// Sets a group's pending, lag and idle-consumer gauges.
    pub(crate) fn group_state(
        &self,
        stream: &str,
        group: &str,
        pending: u64,
        lag: Option<u64>,
        idle_consumers: u64,
    ) {
        let labels = GroupLabels::new(stream, group);
        let set = |f: &Family<GroupLabels, Gauge>, v: u64| {
            f.get_or_create(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.inner.group_pending, pending);
        if let Some(lag) = lag {
            set(&self.inner.group_lag, lag);
        }
        set(&self.inner.group_idle_consumers, idle_consumers);
    }

    /// Sets a stream's length and its dead-letter stream's length.
    pub(crate) fn stream_state(&self, stream: &str, length: u64, dead_letters: u64) {
        let labels = StreamLabels {
            stream: stream.to_owned(),
        };
        let v = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner
            .stream_length
            .get_or_create(&labels)
            .set(v(length));
        self.inner
            .dead_letter_length
            .get_or_create(&labels)
            .set(v(dead_letters));
    }

    /// Records one entry read by the observer.
    pub(crate) fn observed(&self, contract: &str, valid: bool, source: Option<&str>) {
        self.inner
            .observed
            .get_or_create(&ObservedLabels {
                contract: contract.to_owned(),
                outcome: if valid {
                    ObservedOutcome::Valid
                } else {
                    ObservedOutcome::Invalid
                },
            })
            .inc();
        if !valid {
            self.inner
                .observed_violations
                .get_or_create(&ViolationLabels {
                    contract: contract.to_owned(),
                    source: source.unwrap_or("unknown").to_owned(),
                })
                .inc();
        }
    }

    /// Records one invalid entry read by the observer, with its reason
    /// (alongside [`Self::observed`], which counts it by source only).
    pub(crate) fn observed_invalid(&self, contract: &str, reason: PoisonReason, source: &str) {
        self.inner
            .observed_invalid
            .get_or_create(&ObservedInvalidLabels {
                contract: contract.to_owned(),
                reason,
                source: source.to_owned(),
            })
            .inc();
    }

    /// Records `n` entries the observer missed (trimmed before it read them).
    pub(crate) fn observed_missed(&self, contract: &str, n: u64) {
        self.inner
            .observed
            .get_or_create(&ObservedLabels {
                contract: contract.to_owned(),
                outcome: ObservedOutcome::Missed,
            })
            .inc_by(n);
    }

    /// Handle on the busy-workers gauge.
    #[must_use]
    pub(crate) fn workers_busy(&self) -> Gauge {
        self.inner.workers_busy.clone()
    }

    /// Handle on the worker-capacity gauge.
    #[must_use]
    pub(crate) fn workers_capacity(&self) -> Gauge {
        self.inner.workers_capacity.clone()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 min.
    Histogram::new(exponential_buckets(0.0001, 2.0, 22))
}

fn duration_histogram() -> Histogram {
    // 100 µs .. ~105 s: covers fast handlers and 3-12 s LLM calls.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// Pre-resolved publish counters for one contract.
#[derive(Clone, Debug)]
pub(crate) struct PublishCounters {
    /// Messages written.
    pub(crate) published: Counter,
}

/// Pre-resolved consume counters for one (stream, contract, group).
#[derive(Clone, Debug)]
pub(crate) struct ConsumeCounters {
    /// Entries delivered to the handler.
    pub(crate) consumed: Counter,
    /// Entries acked.
    pub(crate) acked: Counter,
    /// Handler failures.
    pub(crate) handler_errors: Counter,
    /// Handler duration.
    pub(crate) handler_duration: Histogram,
    /// From the entry id's timestamp to its ack.
    pub(crate) end_to_end: Histogram,
}

impl ConsumeCounters {
    /// Records a handler run.
    pub(crate) fn handled(&self, took: Duration, ok: bool) {
        self.consumed.inc();
        self.handler_duration.observe(took.as_secs_f64());
        if !ok {
            self.handler_errors.inc();
        }
    }
}
