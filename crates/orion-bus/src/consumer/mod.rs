//! Consumer groups: reading, validating, dispatching to a bounded worker
//! pool, acking, dead-lettering poison, and draining on shutdown.
//!
//! Owns [`Consumer`] and [`ConsumeError`], the consuming error boundary,
//! and [`Consumer::run`], made of named phases: `Consumer::start`
//! (connections, name lease, worker pool, heartbeat, upkeep, own pending
//! entries), `read_loop` and `drain`. The pieces:
//! - `options`: what can be set, and the defaults;
//! - `state`: what the tasks of one running consumer share;
//! - the **reader** (`reader`) runs `XREADGROUP` on a connection of its
//!   own, over every stream the consumer listens to, and only reads as many
//!   entries as it holds in-flight permits for (backpressure);
//! - a pool of `concurrency` **workers** (`worker`) takes entries in read
//!   order, decodes and validates each, and runs the handler;
//! - the **acker** (`ack`) batches `XACK`s for handlers that succeeded;
//! - poison entries, and entries that failed too often, go to `dead_letter`;
//! - the **redeliverer** (`redeliver`) takes back own pending entries,
//!   redelivers failed entries after a backoff and claims entries of dead
//!   consumers;
//! - the **heartbeat** (`heartbeat`), on a thread of its own, keeps
//!   in-flight entries from looking dead and renews the name `lease`;
//! - the group's upkeep (`group`): creation, recreation, loss checks,
//!   stale consumers.
//!
//! **Invariant:** an entry is acked only after its handler returned `Ok`,
//! or in the same script that wrote its dead letter.

mod ack;
mod claim;
mod dead_letter;
mod group;
pub mod handler;
mod heartbeat;
mod lease;
mod options;
mod reader;
mod redeliver;
mod state;
mod worker;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::bus::Bus;
use crate::connection::ConnectError;
use crate::contracts::{Contract, ContractError};
use crate::wire;

pub(crate) use group::removed_consumers_stream;
pub use handler::{Delivery, Handler, HandlerError, HandlerErrorKind};
pub use options::{ConsumerOptions, ErrorPolicy, Idempotency, StartId};
pub use state::ConsumerReport;
use state::{Budget, Shared, Source, Stats, Work};

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
    /// Another live process runs a consumer with this name in this group
    /// (it holds the name's lease). Names must be unique among live
    /// processes; see [`ConsumerOptions::wait_for_name`].
    #[error(
        "consumer name {consumer:?} in group {group:?} is in use by another live process ({holder}); \
         give this one another name, stop the other, or wait for its lease (wait_for_name)"
    )]
    NameTaken {
        /// The group.
        group: String,
        /// The consumer name.
        consumer: String,
        /// Who holds it: host, pid and run tag.
        holder: String,
    },
    /// The name lease could not be taken for a reason other than a
    /// transient fault (e.g. the key holds another type, or ACLs forbid it).
    #[error("cannot take the consumer name lease {key}: {source}")]
    Lease {
        /// The lease key.
        key: String,
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

/// A consumer bound to a group and its streams; run it with [`Consumer::run`].
#[derive(Debug)]
pub struct Consumer {
    bus: Bus,
    options: ConsumerOptions,
    sources: Vec<Source>,
}

impl Consumer {
    /// Checks the options, resolves the contracts and creates the groups
    /// (`XGROUP CREATE ... MKSTREAM`; a group that exists is fine, also
    /// when Redis is at `maxmemory`).
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
                last_seen: std::sync::Mutex::new(None),
                last_counts: std::sync::Mutex::new(None),
            });
        }
        let consumer = Self {
            bus: bus.clone(),
            options,
            sources,
        };
        let mut conn = bus.connection();
        group::create_all(
            &mut conn,
            consumer.streams(),
            &consumer.options.group,
            &consumer.options.start_id,
        )
        .await?;
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
    /// At start only: the reader connection cannot be opened
    /// ([`ConsumeError::Connect`]), or another live process uses this
    /// consumer name ([`ConsumeError::NameTaken`]).
    pub async fn run<H: Handler>(
        self,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<ConsumerReport, ConsumeError> {
        let mut running = self.start(handler, &shutdown).await?;
        read_loop(&mut running, &shutdown).await;
        Ok(drain(running).await)
    }

    /// Start: the reader's connection, the name lease, the worker pool and
    /// acker, the heartbeat, one round of upkeep (loss check before the
    /// first read), own pending entries, then the redeliverer.
    async fn start<H: Handler>(
        self,
        handler: H,
        shutdown: &CancellationToken,
    ) -> Result<Running, ConsumeError> {
        let Self {
            bus,
            options,
            sources,
        } = self;
        let reader_conn = bus.settings().connect_blocking(options.block).await?;
        let lease = lease::Lease::new(
            &bus.options().prefix,
            &options.group,
            &options.consumer,
            options.claim_idle,
        );
        let mut conn = bus.connection();
        lease
            .acquire(&mut conn, bus.metrics(), options.wait_for_name, shutdown)
            .await?;
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
                reserved: std::sync::atomic::AtomicU64::new(0),
            },
            conn: bus.connection(),
            stats: Stats::default(),
            progress: tokio::sync::Notify::new(),
            busy: bus.metrics().workers_busy(),
            bus: bus.clone(),
            reading_since: std::sync::Mutex::new(None),
            lease,
            failed: std::sync::Mutex::default(),
        });
        // From here on the heartbeat runs, on its own thread: entries
        // taken back below are kept fresh while the rest wait their turn.
        let heartbeat = heartbeat::Heartbeat::start(shared.clone());
        let handler = Arc::new(handler);
        let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        // The acker outlives the shutdown signal: it must still ack what
        // finished during the drain. It is stopped by closing its channel,
        // or aborted when the grace period runs out.
        // Background tasks die with this future, should a caller drop it
        // (a crash of sorts): a task outliving its consumer would keep
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
        tracing::info!(
            group = %options.group,
            consumer = %options.consumer,
            streams = %shared.stream_names(None),
            "consumer started"
        );
        // Losses before the first read are seen before it reads past them.
        let mut upkeep_conn = shared.conn.clone();
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = group::housekeeping(&shared, &mut upkeep_conn) => {}
        }
        // Own pending entries first (left by a crash or a restart), then
        // new ones; meanwhile the redeliverer retries and claims.
        redeliver::own_pending_first(&shared, &work_tx, &in_flight, shutdown).await;
        let stop_claiming = CancellationToken::new();
        let redeliverer = AbortOnDropHandle::new(tokio::spawn(redeliver::run(
            shared.clone(),
            work_tx.clone(),
            in_flight.clone(),
            stop_claiming.clone(),
        )));
        Ok(Running {
            reader: reader::Reader::new(shared.clone(), reader_conn),
            shared,
            in_flight,
            work_tx,
            workers,
            acker,
            redeliverer,
            stop_claiming,
            heartbeat,
            capacity,
        })
    }
}

/// A consumer between its start and its drain.
struct Running {
    shared: Arc<Shared>,
    reader: reader::Reader,
    in_flight: Arc<Semaphore>,
    work_tx: mpsc::UnboundedSender<Work>,
    workers: JoinSet<()>,
    acker: AbortOnDropHandle<()>,
    redeliverer: AbortOnDropHandle<()>,
    stop_claiming: CancellationToken,
    heartbeat: heartbeat::Heartbeat,
    capacity: prometheus_client::metrics::gauge::Gauge,
}

/// Reads new entries until `shutdown` or the limit, holding one in-flight
/// slot per entry it may receive.
async fn read_loop(running: &mut Running, shutdown: &CancellationToken) {
    let Running {
        shared,
        reader,
        in_flight,
        work_tx,
        ..
    } = running;
    let options = &shared.options;
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
            r = reader.read(granted) => r,
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
                work_tx,
                Work {
                    idx,
                    entry,
                    permit: slot,
                    deliveries: 1,
                },
            );
        }
        // Every entry of that read is tracked now.
        shared.set_reading(None);
    }
}

/// Drain: no more reads or claims; queued and running entries get the
/// grace period, then whatever is unfinished is abandoned (left pending).
/// The heartbeat goes on until then, and releases the name lease last.
async fn drain(running: Running) -> ConsumerReport {
    let Running {
        shared,
        reader,
        in_flight: _,
        work_tx,
        mut workers,
        mut acker,
        mut redeliverer,
        stop_claiming,
        heartbeat,
        capacity,
    } = running;
    drop(reader);
    let options = &shared.options;
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
    // The redeliverer drops its end of the work queue as soon as it sees
    // the stop; a Redis call it is in may take up to the command timeout,
    // and it gets what is left of the grace period, no more.
    if tokio::time::timeout_at(deadline, &mut redeliverer)
        .await
        .is_err()
    {
        redeliverer.abort();
    }
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
    tokio::select! {
        _ = &mut acker => {}
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!(stream = %shared.stream_names(None), group = %options.group, "grace period ran out while acking; un-acked entries stay pending");
            shared.log_unacked("not acked at shutdown");
            acker.abort();
        }
    }
    heartbeat.finish(deadline).await;
    capacity.dec_by(options.concurrency as i64);
    let report = shared.report(abandoned);
    tracing::info!(?report, drained_in = ?drain_started.elapsed(), "consumer stopped");
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
