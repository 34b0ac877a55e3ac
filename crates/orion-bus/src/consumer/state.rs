//! The state one running consumer shares between its tasks: per-stream
//! [`Source`]s, counters, the `limit` [`Budget`], the set of entries in
//! flight, and the [`ConsumerReport`] built from them at the end.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::ConsumerOptions;
use super::lease::Lease;
use crate::bus::Bus;
use crate::contracts::Contract;
use crate::metrics::ConsumeCounters;
use crate::retention::parse_id;
use crate::wire::RawEntry;

/// What a consumer did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerReport {
    /// Entries delivered to the handler.
    pub delivered: u64,
    /// Entries acked after their handler succeeded.
    pub acked: u64,
    /// Handler failures (entries left pending).
    pub handler_errors: u64,
    /// Poison entries copied to a dead-letter stream and acked.
    pub dead_lettered: u64,
    /// Handlers still running when the grace period ran out; their entries
    /// stay pending.
    pub abandoned: u64,
    /// Entries acked without calling the handler because their idempotency
    /// key had already been handled by this group.
    pub duplicates: u64,
    /// Entries taken over from consumers presumed dead.
    pub claimed: u64,
}

/// Per-stream state shared by the reader and the entry tasks.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) stream: Arc<str>,
    pub(super) dead_letters: String,
    /// Hash of failure records (`{id}:first`, `{id}:last`, `{id}:error`)
    /// for entries of this stream that failed in this group.
    pub(super) failures: String,
    pub(super) contract: Arc<Contract>,
    /// The versions this consumer accepts; `None` accepts all.
    pub(super) accepted: Option<Vec<String>>,
    pub(super) counters: ConsumeCounters,
    /// The newest entry id this consumer knows the group had delivered
    /// (from its reads and from `XINFO GROUPS`): where a vanished group
    /// is recreated.
    pub(super) last_seen: Mutex<Option<String>>,
    /// At the last loss check: the stream's `entries-added` and the
    /// entries still in it that the group had not read (its lag less what
    /// was already reported lost), for counting what a deleted stream took
    /// with it.
    pub(super) last_counts: Mutex<Option<(u64, u64)>>,
}

impl Source {
    /// Raises the group's known position to `id` if it is newer.
    pub(super) fn note_delivered(&self, id: &str) {
        let Some(new) = parse_id(id) else { return };
        if let Ok(mut seen) = self.last_seen.lock()
            && seen
                .as_deref()
                .and_then(parse_id)
                .is_none_or(|old| new > old)
        {
            *seen = Some(id.to_owned());
        }
    }

    /// Where a vanished group restarts: the newest id it is known to have
    /// delivered, or `0` when none is known (the stream is new to it).
    pub(super) fn resume_id(&self) -> String {
        self.last_seen
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| "0".to_owned())
    }
}

#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) delivered: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) handler_errors: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    /// Entries read whose processing has not finished (queued or running).
    pub(super) unfinished: AtomicU64,
    /// Entries acked because their idempotency key was already handled.
    pub(super) duplicates: AtomicU64,
    /// Entries taken over from consumers presumed dead.
    pub(super) claimed: AtomicU64,
}

/// The `limit` budget: entries read (or claimed) and not known to be
/// poison, shared by the reader and the redeliverer.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) limit: Option<u64>,
    pub(super) reserved: AtomicU64,
}

impl Budget {
    /// Takes up to `want` from the budget; returns how many were granted.
    pub(super) fn take(&self, want: usize) -> usize {
        let Some(limit) = self.limit else { return want };
        let mut cur = self.reserved.load(Ordering::Acquire);
        loop {
            let grant = usize::try_from(limit.saturating_sub(cur))
                .unwrap_or(usize::MAX)
                .min(want);
            if grant == 0 {
                return 0;
            }
            match self.reserved.compare_exchange(
                cur,
                cur + grant as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return grant,
                Err(now) => cur = now,
            }
        }
    }

    /// Returns `n` unused units.
    pub(super) fn give_back(&self, n: usize) {
        if self.limit.is_some() && n > 0 {
            self.reserved.fetch_sub(n as u64, Ordering::AcqRel);
        }
    }

    pub(super) fn exhausted(&self) -> bool {
        self.limit
            .is_some_and(|l| self.reserved.load(Ordering::Acquire) >= l)
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) options: ConsumerOptions,
    pub(super) max_message_bytes: usize,
    pub(super) sources: Vec<Source>,
    /// Entries queued or being handled, by (source, id): the redeliverer
    /// must not claim them, and the heartbeat keeps them fresh.
    pub(super) in_flight_ids: Mutex<HashSet<(usize, String)>>,
    /// Idempotency keys this consumer holds while handling their entries;
    /// the heartbeat keeps the holds from expiring under a slow handler.
    pub(super) held_keys: Mutex<HashSet<String>>,
    /// Cancelled when the consumer starts shutting down.
    pub(super) stopping: CancellationToken,
    pub(super) budget: Budget,
    pub(super) conn: ConnectionManager,
    pub(super) stats: Stats,
    /// Signalled each time a worker finishes an entry.
    pub(super) progress: Notify,
    /// Handlers running now (gauge).
    pub(super) busy: prometheus_client::metrics::gauge::Gauge,
    pub(super) bus: Bus,
    /// When the read now in progress was sent, if one is: entries
    /// delivered since then may be in its reply, not yet tracked, and
    /// must not be taken for phantoms.
    pub(super) reading_since: Mutex<Option<Instant>>,
    /// This consumer's lease on its name.
    pub(super) lease: Lease,
    /// Entries whose handler failed here, and when: they wait out their
    /// backoff before they are taken back. An own pending entry that is
    /// neither here nor in flight is a phantom (its read reply was lost)
    /// and is taken back at once.
    pub(super) failed: Mutex<HashMap<(usize, String), Instant>>,
}

/// One entry queued for the worker pool, with its in-flight slot.
#[derive(Debug)]
pub(super) struct Work {
    pub(super) idx: usize,
    pub(super) entry: RawEntry,
    pub(super) permit: OwnedSemaphorePermit,
    /// This delivery's number, as Redis counts it (1 for a first read).
    pub(super) deliveries: u64,
}

impl Shared {
    /// How long a hold on an idempotency key lasts (`claim_idle`): set when
    /// the key is claimed, renewed by the heartbeat.
    pub(super) fn key_hold_ms(&self) -> u64 {
        u64::try_from(self.options.claim_idle.as_millis()).unwrap_or(u64::MAX)
    }

    /// The stream keys of `picked` sources (all when `None`), for logs.
    pub(super) fn stream_names(&self, picked: Option<&[usize]>) -> String {
        let names: Vec<&str> = match picked {
            Some(p) => p.iter().map(|&i| &*self.sources[i].stream).collect(),
            None => self.sources.iter().map(|s| &*s.stream).collect(),
        };
        names.join(",")
    }

    /// One warning per entry still in flight, naming it: at shutdown,
    /// these are the entries left pending.
    pub(super) fn log_unacked(&self, what: &str) {
        if let Ok(set) = self.in_flight_ids.lock() {
            for (idx, id) in set.iter() {
                tracing::warn!(
                    stream = %self.sources[*idx].stream,
                    group = %self.group,
                    id = %id,
                    "{what}; the entry stays pending"
                );
            }
        }
    }

    pub(super) fn track(&self, idx: usize, id: &str) {
        if let Ok(mut set) = self.in_flight_ids.lock() {
            set.insert((idx, id.to_owned()));
        }
    }

    pub(super) fn untrack(&self, idx: usize, id: &str) {
        if let Ok(mut set) = self.in_flight_ids.lock() {
            set.remove(&(idx, id.to_owned()));
        }
    }

    pub(super) fn is_tracked(&self, idx: usize, id: &str) -> bool {
        self.in_flight_ids
            .lock()
            .is_ok_and(|set| set.contains(&(idx, id.to_owned())))
    }

    /// Notes that the handler of `id` failed just now.
    pub(super) fn note_failed(&self, idx: usize, id: &str) {
        if let Ok(mut f) = self.failed.lock() {
            // Entries another consumer took over are never taken back here;
            // forget them once far past any backoff.
            let keep = self.options.retry_backoff_max * 4 + self.options.claim_idle;
            f.retain(|_, at| at.elapsed() < keep);
            f.insert((idx, id.to_owned()), Instant::now());
        }
    }

    /// When the handler of `id` last failed here, if it did; `forget`
    /// drops the record.
    pub(super) fn failed_at(&self, idx: usize, id: &str, forget: bool) -> Option<Instant> {
        let mut f = self.failed.lock().ok()?;
        let key = (idx, id.to_owned());
        if forget {
            f.remove(&key)
        } else {
            f.get(&key).copied()
        }
    }

    /// Marks a read as sent (`Some(now)`) or as processed (`None`).
    pub(super) fn set_reading(&self, since: Option<Instant>) {
        if let Ok(mut r) = self.reading_since.lock() {
            *r = since;
        }
    }

    /// True when an own pending entry idle for `idle` cannot be part of
    /// the read in progress: it was delivered before that read was sent.
    pub(super) fn delivered_before_current_read(&self, idle: Duration) -> bool {
        match self.reading_since.lock().ok().and_then(|r| *r) {
            // 100 ms covers the round trip between the two clocks.
            Some(since) => idle > since.elapsed() + Duration::from_millis(100),
            None => true,
        }
    }

    /// The report of what this consumer did.
    pub(super) fn report(&self, abandoned: u64) -> ConsumerReport {
        let stats = &self.stats;
        ConsumerReport {
            delivered: stats.delivered.load(Ordering::Acquire),
            acked: stats.acked.load(Ordering::Acquire),
            handler_errors: stats.handler_errors.load(Ordering::Acquire),
            dead_lettered: stats.dead_lettered.load(Ordering::Acquire),
            abandoned,
            duplicates: stats.duplicates.load(Ordering::Acquire),
            claimed: stats.claimed.load(Ordering::Acquire),
        }
    }

    /// Queues an entry for the workers (it now counts as unfinished).
    pub(super) fn queue(&self, queue: &mpsc::UnboundedSender<Work>, work: Work) {
        self.track(work.idx, &work.entry.id);
        self.stats.unfinished.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(work)) = queue.send(work) {
            // Workers are gone (shutdown): the entry stays pending.
            self.untrack(work.idx, &work.entry.id);
            self.stats.unfinished.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
