//! Consumer groups: reading, validating, dispatching to a bounded worker
//! pool, acking, dead-lettering poison, and draining on shutdown.
//!
//! Owns [`ConsumerOptions`], [`Consumer`] and [`ConsumeError`], the
//! consuming error boundary. The pieces:
//! - the **reader** (this file) runs `XREADGROUP` on a connection of its
//!   own, over every stream the consumer listens to, and only reads as many
//!   entries as it holds in-flight permits for (backpressure);
//! - a pool of `concurrency` **workers** ([`worker`]) takes entries in read
//!   order, decodes and validates each, and runs the handler;
//! - the **acker** ([`ack`]) batches `XACK`s for handlers that succeeded;
//! - poison entries, and entries that failed too often, go to [`dead_letter`];
//! - the **redeliverer** ([`redeliver`]) processes the consumer's own
//!   pending entries at start, redelivers failed entries after a backoff,
//!   takes over entries of dead consumers, and keeps in-flight entries from
//!   looking dead.
//!
//! **Invariant:** an entry is acked only after its handler returned `Ok`,
//! or after it was written to the dead-letter stream in the same `MULTI`.

mod ack;
mod dead_letter;
pub mod handler;
mod redeliver;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::backoff::Backoff;
use crate::bus::Bus;
use crate::connection::ConnectError;
use crate::contracts::{Contract, ContractError};
use crate::metrics::ConsumeCounters;
use crate::wire::{self, RawEntry};

pub use handler::{Delivery, Handler, HandlerError, HandlerErrorKind};

/// Where a new group starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartId {
    /// `0`: replay the whole stream (the Python bus's behaviour).
    Beginning,
    /// `$`: only entries added after the group is created.
    New,
    /// A specific entry id.
    Id(String),
}

impl StartId {
    fn as_arg(&self) -> &str {
        match self {
            Self::Beginning => "0",
            Self::New => "$",
            Self::Id(id) => id,
        }
    }
}

impl std::str::FromStr for StartId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" | "0-0" => Ok(Self::Beginning),
            "$" => Ok(Self::New),
            id if is_stream_id(id) => Ok(Self::Id(id.to_owned())),
            other => Err(format!(
                "invalid start id {other:?}: expected 0, $ or an entry id like 1700000000000-0"
            )),
        }
    }
}

fn is_stream_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let seq = parts.next();
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && seq.is_none_or(|q| !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()))
}

/// How a consumer reads and processes. Defaults are safe for production.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// The consumer group. Several processes in one group share the work.
    pub group: String,
    /// This consumer's name within the group; must be unique and stable
    /// across restarts of the same process (e.g. `guardian-1`).
    pub consumer: String,
    /// The contracts (hence streams) to listen to. At least one.
    pub contracts: Vec<String>,
    /// Handlers running at once. Default 8: ORION's handlers mostly wait on
    /// I/O (LLM calls of seconds), so a few more than the Pi's 4 cores keeps
    /// them busy without crowding the models that share the machine.
    pub concurrency: usize,
    /// Entries read but not yet acked, across all streams. When this many
    /// are in flight the reader stops reading: that is the backpressure.
    /// Default 64: enough to keep 8 workers fed through a whole read round
    /// trip, small enough that a crash leaves little to redeliver.
    pub max_in_flight: usize,
    /// `COUNT` per stream per read. Default 32.
    pub read_count: usize,
    /// `BLOCK` per read. Default 1 s (as the Python bus). Shutdown does not
    /// wait for it: the read is abandoned, and anything it returned stays
    /// pending, un-acked.
    pub block: Duration,
    /// Where a newly created group starts. Default `0`, as the Python bus.
    pub start_id: StartId,
    /// After shutdown is requested, how long in-flight handlers get to
    /// finish. Entries whose handler has not finished by then stay pending
    /// and are never acked. Default 25 s: under the 30 s systemd and
    /// Kubernetes leave between SIGTERM and SIGKILL.
    pub shutdown_grace: Duration,
    /// Stop after this many entries were delivered to the handler. The
    /// reader never reads more than it will deliver, so nothing is left
    /// pending by the limit.
    pub limit: Option<u64>,
    /// What a handler error does. Default [`ErrorPolicy::Retry`].
    pub on_error: ErrorPolicy,
    /// Deliveries (counted by Redis, so across restarts and consumers)
    /// after which a failing entry goes to the dead-letter stream.
    /// Default 5.
    pub max_deliveries: u64,
    /// Wait before the first redelivery of a failed entry; doubles with
    /// each further delivery (with ±25% jitter) up to `retry_backoff_max`.
    /// Default 1 s.
    pub retry_backoff: Duration,
    /// Longest wait between redeliveries. Default 60 s.
    pub retry_backoff_max: Duration,
    /// An entry pending on another consumer for this long is taken over
    /// (`XCLAIM`): that consumer is presumed dead. Live consumers refresh
    /// their in-flight entries every third of this, so slow handlers (LLM
    /// calls of 3-12 s, or minutes) are never taken from a live consumer.
    /// Default 30 s.
    pub claim_idle: Duration,
    /// Skip entries whose key this group already handled. Off by default.
    pub idempotency: Option<Idempotency>,
    /// For each contract listed here, the `version`s this consumer accepts.
    /// A valid message of any other version is dead-lettered with the
    /// reason `unaccepted_version` instead of reaching the handler.
    /// Contracts not listed accept every version their schemas define.
    pub accept_versions: BTreeMap<String, Vec<String>>,
}

/// What a handler error does to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Leave it pending; redeliver after an exponential backoff; dead-letter
    /// it after `max_deliveries` deliveries.
    Retry,
    /// Dead-letter it at once (the Python bus's "fail closed", without
    /// losing the message).
    DeadLetter,
}

impl std::str::FromStr for ErrorPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retry" => Ok(Self::Retry),
            "dead-letter" | "dead_letter" => Ok(Self::DeadLetter),
            other => Err(format!(
                "unknown error policy {other:?} (expected retry or dead-letter)"
            )),
        }
    }
}

/// Idempotent handling: an entry whose key was already handled
/// successfully by the same group is acked without calling the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Idempotency {
    /// The top-level message field that identifies it (e.g. `event_id`),
    /// or `None` for the stream entry id.
    pub field: Option<String>,
    /// How long handled keys are remembered. Default 24 h: about 100
    /// bytes of Redis memory per message handled in that window.
    pub ttl: Duration,
}

impl Idempotency {
    /// Keys from a message field.
    #[must_use]
    pub fn field(field: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Keys from the stream entry id.
    #[must_use]
    pub fn stream_id() -> Self {
        Self {
            field: None,
            ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets how long keys are remembered.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl ConsumerOptions {
    /// Options for `consumer` in `group` with production defaults.
    #[must_use]
    pub fn new(group: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            consumer: consumer.into(),
            contracts: Vec::new(),
            concurrency: 8,
            max_in_flight: 64,
            read_count: 32,
            block: Duration::from_secs(1),
            start_id: StartId::Beginning,
            shutdown_grace: Duration::from_secs(25),
            limit: None,
            on_error: ErrorPolicy::Retry,
            max_deliveries: 5,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
            claim_idle: Duration::from_secs(30),
            idempotency: None,
            accept_versions: BTreeMap::new(),
        }
    }

    /// Sets the handler-error policy.
    #[must_use]
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// Sets the delivery count after which a failing entry is dead-lettered.
    #[must_use]
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n;
        self
    }

    /// Sets the first redelivery wait and its cap.
    #[must_use]
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.retry_backoff = first;
        self.retry_backoff_max = max;
        self
    }

    /// Sets the idle time after which another consumer's entry is claimed.
    #[must_use]
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    /// Turns idempotent handling on.
    #[must_use]
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = Some(idempotency);
        self
    }

    /// Adds a contract to listen to.
    #[must_use]
    pub fn contract(mut self, contract: impl Into<String>) -> Self {
        self.contracts.push(contract.into());
        self
    }

    /// Sets the contracts to listen to.
    #[must_use]
    pub fn contracts<I, S>(mut self, contracts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.contracts = contracts.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts only these versions of `contract` (see
    /// [`Self::accept_versions`](ConsumerOptions::accept_versions)).
    #[must_use]
    pub fn accept_versions<I, S>(mut self, contract: impl Into<String>, versions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.accept_versions.insert(
            contract.into(),
            versions.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Sets handler concurrency.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the in-flight cap.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets `COUNT` per stream per read.
    #[must_use]
    pub fn read_count(mut self, n: usize) -> Self {
        self.read_count = n;
        self
    }

    /// Sets `BLOCK` per read.
    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Sets where a new group starts.
    #[must_use]
    pub fn start_id(mut self, start: StartId) -> Self {
        self.start_id = start;
        self
    }

    /// Sets the shutdown grace period.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Stops after `n` deliveries.
    #[must_use]
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    fn check(&self) -> Result<(), ConsumeError> {
        let mut problems = Vec::new();
        if self.group.is_empty() {
            problems.push("group is empty".to_owned());
        }
        if self.consumer.is_empty() {
            problems.push("consumer name is empty".to_owned());
        }
        if self.contracts.is_empty() {
            problems.push("no contract to consume".to_owned());
        }
        for (contract, versions) in &self.accept_versions {
            if !self.contracts.contains(contract) {
                problems.push(format!(
                    "accepted versions are set for {contract}, which this consumer does not consume"
                ));
            }
            if versions.is_empty() {
                problems.push(format!("no version of {contract} is accepted"));
            }
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_owned());
        }
        if self.max_in_flight == 0 {
            problems.push("max_in_flight must be at least 1".to_owned());
        }
        if self.read_count == 0 {
            problems.push("read_count must be at least 1".to_owned());
        }
        if self.block < Duration::from_millis(1) {
            problems.push("block must be at least 1ms (BLOCK 0 would wait forever)".to_owned());
        }
        if self.max_deliveries == 0 {
            problems.push("max_deliveries must be at least 1".to_owned());
        }
        if self.claim_idle < Duration::from_millis(100) {
            problems.push("claim_idle must be at least 100ms".to_owned());
        }
        if self.retry_backoff.is_zero() || self.retry_backoff_max < self.retry_backoff {
            problems
                .push("retry_backoff must be positive and at most retry_backoff_max".to_owned());
        }
        if let Some(Idempotency { field: Some(f), .. }) = &self.idempotency
            && f.is_empty()
        {
            problems.push("idempotency key field is empty".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConsumeError::Options(problems.join("; ")))
        }
    }
}

/// Errors of the consuming boundary. Redis errors while running are not
/// here: the consumer retries them with backoff until shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The options are invalid.
    #[error("invalid consumer options: {0}")]
    Options(String),
    /// A contract to consume is unknown.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The reader connection could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The group could not be created.
    #[error("cannot create group {group} on {stream}: {source}")]
    CreateGroup {
        /// The stream.
        stream: String,
        /// The group.
        group: String,
        /// The Redis error.
        source: redis::RedisError,
    },
}

/// Every accepted version must be one the registry knows, or nothing
/// could ever be delivered.
fn check_versions(contract: &Contract, accepted: &[String]) -> Result<(), ConsumeError> {
    let known: Vec<&str> = contract
        .versions()
        .iter()
        .filter_map(|v| v.version())
        .collect();
    let unknown: Vec<&str> = accepted
        .iter()
        .map(String::as_str)
        .filter(|v| !known.contains(v))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ConsumeError::Options(format!(
        "{} has no version {}; its versions are {}",
        contract.name(),
        unknown.join(", "),
        if known.is_empty() {
            "unpinned".to_owned()
        } else {
            known.join(", ")
        }
    )))
}

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
}

/// Per-stream state shared by the reader and the entry tasks.
#[derive(Debug)]
struct Source {
    stream: Arc<str>,
    dead_letters: String,
    /// Hash of failure records (`{id}:first`, `{id}:last`, `{id}:error`)
    /// for entries of this stream that failed in this group.
    failures: String,
    contract: Arc<Contract>,
    /// The versions this consumer accepts; `None` accepts all.
    accepted: Option<Vec<String>>,
    counters: ConsumeCounters,
}

#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    acked: AtomicU64,
    handler_errors: AtomicU64,
    dead_lettered: AtomicU64,
    /// Entries read whose processing has not finished (queued or running).
    unfinished: AtomicU64,
    /// Entries acked because their idempotency key was already handled.
    duplicates: AtomicU64,
}

/// The `limit` budget: entries read (or claimed) and not known to be
/// poison, shared by the reader and the redeliverer.
#[derive(Debug)]
struct Budget {
    limit: Option<u64>,
    reserved: AtomicU64,
}

impl Budget {
    /// Takes up to `want` from the budget; returns how many were granted.
    fn take(&self, want: usize) -> usize {
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
    fn give_back(&self, n: usize) {
        if self.limit.is_some() && n > 0 {
            self.reserved.fetch_sub(n as u64, Ordering::AcqRel);
        }
    }

    fn exhausted(&self) -> bool {
        self.limit
            .is_some_and(|l| self.reserved.load(Ordering::Acquire) >= l)
    }
}

#[derive(Debug)]
struct Shared {
    group: String,
    consumer: String,
    options: ConsumerOptions,
    max_message_bytes: usize,
    sources: Vec<Source>,
    /// Entries queued or being handled, by (source, id): the redeliverer
    /// must not claim them, and the heartbeat keeps them fresh.
    in_flight_ids: std::sync::Mutex<HashSet<(usize, String)>>,
    /// Idempotency keys this consumer holds while handling their entries;
    /// the heartbeat keeps the holds from expiring under a slow handler.
    held_keys: std::sync::Mutex<HashSet<String>>,
    /// Cancelled when the consumer starts shutting down.
    stopping: CancellationToken,
    budget: Budget,
    conn: ConnectionManager,
    stats: Stats,
    /// Signalled each time a worker finishes an entry.
    progress: Notify,
    /// Handlers running now (gauge).
    busy: prometheus_client::metrics::gauge::Gauge,
    bus: Bus,
}

/// One entry queued for the worker pool, with its in-flight slot.
#[derive(Debug)]
struct Work {
    idx: usize,
    entry: RawEntry,
    permit: OwnedSemaphorePermit,
    /// This delivery's number, as Redis counts it (1 for a first read).
    deliveries: u64,
}

impl Shared {
    /// How long a hold on an idempotency key lasts (`claim_idle`): set when
    /// the key is claimed, renewed by the heartbeat.
    fn key_hold_ms(&self) -> u64 {
        u64::try_from(self.options.claim_idle.as_millis()).unwrap_or(u64::MAX)
    }

    /// The stream keys of `picked` sources (all when `None`), for logs.
    fn stream_names(&self, picked: Option<&[usize]>) -> String {
        let names: Vec<&str> = match picked {
            Some(p) => p.iter().map(|&i| &*self.sources[i].stream).collect(),
            None => self.sources.iter().map(|s| &*s.stream).collect(),
        };
        names.join(",")
    }

    /// One warning per entry still in flight, naming it: at shutdown,
    /// these are the entries left pending.
    fn log_unacked(&self, what: &str) {
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

    fn track(&self, idx: usize, id: &str) {
        if let Ok(mut set) = self.in_flight_ids.lock() {
            set.insert((idx, id.to_owned()));
        }
    }

    fn untrack(&self, idx: usize, id: &str) {
        if let Ok(mut set) = self.in_flight_ids.lock() {
            set.remove(&(idx, id.to_owned()));
        }
    }

    fn is_tracked(&self, idx: usize, id: &str) -> bool {
        self.in_flight_ids
            .lock()
            .is_ok_and(|set| set.contains(&(idx, id.to_owned())))
    }

    /// Queues an entry for the workers (it now counts as unfinished).
    fn queue(&self, queue: &mpsc::UnboundedSender<Work>, work: Work) {
        self.track(work.idx, &work.entry.id);
        self.stats.unfinished.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(work)) = queue.send(work) {
            // Workers are gone (shutdown): the entry stays pending.
            self.untrack(work.idx, &work.entry.id);
            self.stats.unfinished.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A consumer bound to a group and its streams; run it with [`Consumer::run`].
#[derive(Debug)]
pub struct Consumer {
    bus: Bus,
    options: ConsumerOptions,
    sources: Vec<Source>,
}

impl Consumer {
    /// Checks the options, resolves the contracts and creates the groups
    /// (idempotently: `MKSTREAM`, and `BUSYGROUP` counts as success).
    ///
    /// # Errors
    /// See [`ConsumeError`].
    pub async fn new(bus: &Bus, options: ConsumerOptions) -> Result<Self, ConsumeError> {
        options.check()?;
        let mut sources = Vec::with_capacity(options.contracts.len());
        for name in &options.contracts {
            if sources.iter().any(|s: &Source| s.contract.name() == name) {
                continue;
            }
            let contract = bus.registry().get(name)?.clone();
            let accepted = options.accept_versions.get(name).cloned();
            if let Some(accepted) = &accepted {
                check_versions(&contract, accepted)?;
            }
            let stream = bus.stream_for(name)?;
            sources.push(Source {
                dead_letters: wire::dead_letter_stream(&stream),
                failures: format!("{stream}:failures:{}", options.group),
                counters: bus.metrics().consumer(&stream, name, &options.group),
                stream,
                contract,
                accepted,
            });
        }
        let consumer = Self {
            bus: bus.clone(),
            options,
            sources,
        };
        let mut conn = bus.connection();
        for s in &consumer.sources {
            create_group(
                &mut conn,
                &s.stream,
                &consumer.options.group,
                &consumer.options.start_id,
            )
            .await?;
        }
        Ok(consumer)
    }

    /// The streams this consumer reads, in order.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|s| &*s.stream)
    }

    /// Runs until `shutdown` is cancelled (or `limit` is reached), then
    /// drains: in-flight handlers get [`ConsumerOptions::shutdown_grace`]
    /// to finish and be acked; the rest stay pending.
    ///
    /// # Errors
    /// Only if the reader connection cannot be opened at start.
    pub async fn run<H: Handler>(
        self,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<ConsumerReport, ConsumeError> {
        let Self {
            bus,
            options,
            sources,
        } = self;
        let mut reader_conn = bus.settings().connect_blocking(options.block).await?;
        let shared = Arc::new(Shared {
            group: options.group.clone(),
            consumer: options.consumer.clone(),
            options: options.clone(),
            max_message_bytes: bus.options().max_message_bytes,
            sources,
            in_flight_ids: std::sync::Mutex::default(),
            held_keys: std::sync::Mutex::default(),
            stopping: CancellationToken::new(),
            budget: Budget {
                limit: options.limit,
                reserved: AtomicU64::new(0),
            },
            conn: bus.connection(),
            stats: Stats::default(),
            progress: Notify::new(),
            busy: bus.metrics().workers_busy(),
            bus: bus.clone(),
        });
        let handler = Arc::new(handler);
        let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        // The acker outlives the shutdown signal: it must still ack what
        // finished during the drain. It is stopped by closing its channel,
        // or aborted when the grace period runs out.
        // Background tasks die with this future, should a caller drop it
        // (a crash of sorts): a heartbeat outliving its consumer would keep
        // the consumer's entries from ever being claimed.
        let acker = AbortOnDropHandle::new(tokio::spawn(ack::run(shared.clone(), ack_rx)));
        // The worker pool: `concurrency` tasks taking entries in read
        // order from one queue (so concurrency 1 handles them in order).
        // The queue needs no bound of its own: in-flight permits bound it.
        let (work_tx, work_rx) = mpsc::unbounded_channel::<Work>();
        let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
        let mut workers = JoinSet::new();
        for _ in 0..options.concurrency {
            workers.spawn(worker::run(
                shared.clone(),
                handler.clone(),
                work_rx.clone(),
                ack_tx.clone(),
            ));
        }
        drop(ack_tx);
        let capacity = bus.metrics().workers_capacity();
        capacity.inc_by(options.concurrency as i64);

        let mut reader = Reader {
            shared: shared.clone(),
            options: &options,
            rotation: 0,
            backoff: Backoff::redis(),
        };
        tracing::info!(
            group = %options.group,
            consumer = %options.consumer,
            streams = ?shared.sources.iter().map(|s| &*s.stream).collect::<Vec<_>>(),
            "consumer started"
        );
        // Own pending entries first (left by a crash or a restart), then
        // new ones; meanwhile the redeliverer retries and claims.
        redeliver::own_pending_first(&shared, &work_tx, &in_flight, &shutdown).await;
        let stop_claiming = CancellationToken::new();
        let stop_heartbeat = CancellationToken::new();
        let redeliverer = AbortOnDropHandle::new(tokio::spawn(redeliver::run(
            shared.clone(),
            work_tx.clone(),
            in_flight.clone(),
            stop_claiming.clone(),
            stop_heartbeat.clone(),
        )));
        loop {
            // The limit: deliver exactly `limit` entries, reading no more.
            if shared.budget.exhausted() {
                if shared.stats.unfinished.load(Ordering::Acquire) == 0 {
                    break;
                }
                // Poison among the unfinished would free budget again.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = shared.progress.notified() => {}
                }
                continue;
            }
            // Backpressure: wait for at least one free in-flight slot.
            let mut permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                p = in_flight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed; treated as shutdown
                },
            };
            let want = options.read_count * shared.sources.len();
            while permit.num_permits() < want {
                match in_flight.clone().try_acquire_owned() {
                    Ok(p) => permit.merge(p),
                    Err(_) => break,
                }
            }
            let granted = shared.budget.take(permit.num_permits());
            if granted == 0 {
                continue;
            }
            if granted < permit.num_permits() {
                drop(permit.split(permit.num_permits() - granted));
            }
            let entries = tokio::select! {
                () = shutdown.cancelled() => {
                    shared.budget.give_back(granted);
                    break;
                }
                r = reader.read(&mut reader_conn, granted) => r,
            };
            shared
                .budget
                .give_back(granted - entries.len().min(granted));
            for (idx, entry) in entries {
                let Some(slot) = permit.split(1) else {
                    // Cannot happen: reads never return more than the permits.
                    tracing::error!(stream = %shared.sources[idx].stream, group = %shared.group, id = %entry.id, "read returned more entries than permits");
                    break;
                };
                shared.queue(
                    &work_tx,
                    Work {
                        idx,
                        entry,
                        permit: slot,
                        deliveries: 1,
                    },
                );
            }
        }

        // Drain: no more reads or claims; queued and running entries get the
        // grace period, then whatever is unfinished is abandoned (left
        // pending). The heartbeat goes on until then.
        stop_claiming.cancel();
        shared.stopping.cancel();
        drop(work_tx);
        let deadline = crate::backoff::deadline_after(options.shutdown_grace);
        let drain_started = Instant::now();
        tracing::info!(
            unfinished = shared.stats.unfinished.load(Ordering::Acquire),
            grace = ?options.shutdown_grace,
            "consumer stopping: draining in-flight entries"
        );
        let mut abandoned = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    workers.shutdown().await;
                    abandoned = shared.stats.unfinished.load(Ordering::Acquire);
                    tracing::warn!(
                        stream = %shared.stream_names(None),
                        group = %options.group,
                        abandoned,
                        "grace period ran out: abandoning handlers; their entries stay pending"
                    );
                    shared.log_unacked("abandoned at shutdown");
                    break;
                }
                done = workers.join_next() => if done.is_none() { break },
            }
        }
        stop_heartbeat.cancel();
        // The redeliverer may be inside a Redis call (a dead Redis takes up
        // to the command timeout per call): it gets what is left of the
        // grace period, no more.
        let mut redeliverer = redeliverer;
        if tokio::time::timeout_at(deadline, &mut redeliverer)
            .await
            .is_err()
        {
            redeliverer.abort();
        }
        let mut acker = acker;
        tokio::select! {
            _ = &mut acker => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(stream = %shared.stream_names(None), group = %options.group, "grace period ran out while acking; un-acked entries stay pending");
                shared.log_unacked("not acked at shutdown");
                acker.abort();
            }
        }
        capacity.dec_by(options.concurrency as i64);
        let stats = &shared.stats;
        let report = ConsumerReport {
            delivered: stats.delivered.load(Ordering::Acquire),
            acked: stats.acked.load(Ordering::Acquire),
            handler_errors: stats.handler_errors.load(Ordering::Acquire),
            dead_lettered: stats.dead_lettered.load(Ordering::Acquire),
            abandoned,
            duplicates: stats.duplicates.load(Ordering::Acquire),
        };
        tracing::info!(?report, drained_in = ?drain_started.elapsed(), "consumer stopped");
        Ok(report)
    }
}

/// Runs `XGROUP CREATE <stream> <group> <start> MKSTREAM`; `BUSYGROUP` is fine.
async fn create_group(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    start: &StartId,
) -> Result<(), ConsumeError> {
    let result: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start.as_arg())
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(source) => Err(ConsumeError::CreateGroup {
            stream: stream.to_owned(),
            group: group.to_owned(),
            source,
        }),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The reading half: builds each `XREADGROUP` and survives Redis faults.
struct Reader<'a> {
    shared: Arc<Shared>,
    options: &'a ConsumerOptions,
    /// First stream of the next partial read, so no stream starves when
    /// there are fewer permits than streams.
    rotation: usize,
    backoff: Backoff,
}

impl Reader<'_> {
    /// Reads at most `permits` entries in total, retrying Redis errors with
    /// backoff (forever: the caller's `select!` on shutdown ends it).
    async fn read(
        &mut self,
        conn: &mut ConnectionManager,
        permits: usize,
    ) -> Vec<(usize, RawEntry)> {
        let n = self.shared.sources.len();
        if permits >= n {
            // XREADGROUP's COUNT applies per stream: COUNT = permits / n
            // keeps the total within the permits held.
            let count = (permits / n).min(self.options.read_count);
            let all: Vec<usize> = (0..n).collect();
            return self
                .read_group(conn, &all, count, Some(self.options.block))
                .await;
        }
        // Fewer permits than streams: poll subsets of `permits` streams
        // without blocking, rotating so that no stream starves...
        for _ in 0..n.div_ceil(permits) {
            let picked: Vec<usize> = (0..permits).map(|i| (self.rotation + i) % n).collect();
            self.rotation = (self.rotation + permits) % n;
            let entries = self.read_group(conn, &picked, 1, None).await;
            if !entries.is_empty() {
                return entries;
            }
        }
        // ...and when all are empty, wait (group-less, reading nothing) for
        // a new entry on any of them, then let the caller try again.
        self.wait_for_new(conn).await;
        Vec::new()
    }

    /// One `XREADGROUP` over `picked` streams; retries errors with backoff.
    async fn read_group(
        &mut self,
        conn: &mut ConnectionManager,
        picked: &[usize],
        count: usize,
        block: Option<Duration>,
    ) -> Vec<(usize, RawEntry)> {
        loop {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.shared.group)
                .arg(&self.shared.consumer)
                .arg("COUNT")
                .arg(count);
            if let Some(block) = block {
                cmd.arg("BLOCK").arg(millis(block));
            }
            cmd.arg("STREAMS");
            for &i in picked {
                cmd.arg(&*self.shared.sources[i].stream);
            }
            for _ in picked {
                cmd.arg(">");
            }
            match cmd.query_async::<redis::Value>(conn).await {
                Ok(reply) => {
                    self.backoff.reset();
                    let entries = self.route(reply);
                    tracing::trace!(
                        group = %self.shared.group,
                        count,
                        streams = picked.len(),
                        got = entries.len(),
                        "XREADGROUP"
                    );
                    return entries;
                }
                Err(e) => {
                    self.shared.bus.metrics().redis_error(&e);
                    if e.code() == Some("NOGROUP") {
                        // Stream or group deleted under us: recreate and go on.
                        tracing::warn!(stream = %self.shared.stream_names(Some(picked)), group = %self.shared.group, error = %e, "group missing; recreating");
                        let mut c = self.shared.conn.clone();
                        for &i in picked {
                            let s = &self.shared.sources[i].stream;
                            if let Err(e) =
                                create_group(&mut c, s, &self.shared.group, &self.options.start_id)
                                    .await
                            {
                                tracing::warn!(stream = %s, error = %e, "recreating group failed");
                            }
                        }
                    } else {
                        tracing::warn!(stream = %self.shared.stream_names(Some(picked)), group = %self.shared.group, error = %e, "XREADGROUP failed; backing off");
                    }
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        }
    }

    /// Blocks (up to `block`) until any stream gets a new entry, using a
    /// plain `XREAD ... $`, which delivers nothing to the group.
    async fn wait_for_new(&mut self, conn: &mut ConnectionManager) {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(millis(self.options.block))
            .arg("STREAMS");
        for s in &self.shared.sources {
            cmd.arg(&*s.stream);
        }
        for _ in &self.shared.sources {
            cmd.arg("$");
        }
        if let Err(e) = cmd.query_async::<redis::Value>(conn).await {
            self.shared.bus.metrics().redis_error(&e);
            tracing::warn!(stream = %self.shared.stream_names(None), group = %self.shared.group, error = %e, "XREAD failed; backing off");
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }

    /// Maps a reply to (source index, entry) pairs, tolerating junk.
    fn route(&self, reply: redis::Value) -> Vec<(usize, RawEntry)> {
        let parsed = match wire::parse_read_reply(reply) {
            Ok(p) => p,
            Err(e) => {
                // Nothing can be attributed to an id; the entries (if any)
                // stay pending for redelivery rather than vanish.
                tracing::error!(stream = %self.shared.stream_names(None), group = %self.shared.group, error = %e, "unreadable XREADGROUP reply");
                return Vec::new();
            }
        };
        let index: HashMap<&str, usize> = self
            .shared
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (&*s.stream, i))
            .collect();
        let mut out = Vec::new();
        for stream in parsed {
            match index.get(stream.stream.as_str()) {
                Some(&i) => out.extend(stream.entries.into_iter().map(|e| (i, e))),
                None => {
                    tracing::error!(stream = %stream.stream, "reply for a stream not asked for")
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ids_parse() {
        assert_eq!("0".parse(), Ok(StartId::Beginning));
        assert_eq!("$".parse(), Ok(StartId::New));
        assert_eq!("12-3".parse(), Ok(StartId::Id("12-3".into())));
        assert_eq!("12".parse(), Ok(StartId::Id("12".into())));
        assert!("x-1".parse::<StartId>().is_err());
        assert!("12-".parse::<StartId>().is_err());
    }

    #[test]
    fn options_report_every_problem() {
        let err = ConsumerOptions::new("", "")
            .concurrency(0)
            .block(Duration::ZERO)
            .check()
            .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "group",
            "consumer name",
            "no contract",
            "concurrency",
            "block",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
