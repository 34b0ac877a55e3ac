//! Consumer settings: [`ConsumerOptions`] with its defaults and checks,
//! where a new group starts ([`StartId`]), what a handler error does
//! ([`ErrorPolicy`]) and idempotent handling ([`Idempotency`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConsumeError;

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
    pub(super) fn as_arg(&self) -> &str {
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
    /// This consumer's name within the group: stable across restarts of
    /// the same process (e.g. `guardian-1`), and unique among live
    /// processes. A running consumer holds a lease on its name (a Redis key
    /// with a 10 s TTL, renewed by its heartbeat); a second process with
    /// the same name refuses to start ([`ConsumeError::NameTaken`]) unless
    /// [`Self::wait_for_name`] is set.
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
    /// Consumers of the group idle (`XINFO CONSUMERS` idle time) longer
    /// than this with nothing pending are removed (`XGROUP DELCONSUMER`)
    /// by any live consumer of the group, in one script that re-checks
    /// both conditions. Default 1 h.
    pub stale_consumer_after: Duration,
    /// How often the consumer checks its streams for entries its group
    /// lost to trimming and sweeps stale consumers; both also run once
    /// before the first read and after a group is recreated. Default 5 s.
    pub housekeeping_interval: Duration,
    /// When another live process holds this consumer name, wait for its
    /// lease to end (it stops, or it died and the lease expires) instead
    /// of failing with [`ConsumeError::NameTaken`]. Default off.
    pub wait_for_name: bool,
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
            stale_consumer_after: Duration::from_secs(3600),
            housekeeping_interval: Duration::from_secs(5),
            wait_for_name: false,
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

    /// Sets the idle time after which a consumer with nothing pending is
    /// removed from the group.
    #[must_use]
    pub fn stale_consumer_after(mut self, idle: Duration) -> Self {
        self.stale_consumer_after = idle;
        self
    }

    /// Sets how often loss checks and the stale-consumer sweep run.
    #[must_use]
    pub fn housekeeping_interval(mut self, every: Duration) -> Self {
        self.housekeeping_interval = every;
        self
    }

    /// Waits for this consumer name's lease instead of failing when
    /// another live process holds it.
    #[must_use]
    pub fn wait_for_name(mut self, wait: bool) -> Self {
        self.wait_for_name = wait;
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

    pub(super) fn check(&self) -> Result<(), ConsumeError> {
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
        if self.housekeeping_interval < Duration::from_millis(10) {
            problems.push("housekeeping_interval must be at least 10ms".to_owned());
        }
        if self.stale_consumer_after < Duration::from_secs(1) {
            problems.push("stale_consumer_after must be at least 1s".to_owned());
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
