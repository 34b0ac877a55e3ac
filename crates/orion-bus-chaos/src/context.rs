//! What every part of one run shares: its options, the Redis URL, the
//! stream and group names, the history, the ledger, and the messages'
//! unique ids.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::history::History;
use crate::ledger::Ledger;
use crate::options::ChaosOptions;

/// The contract published and consumed.
pub const CONTRACT: &str = "sensor.reading";
/// The field that carries each message's unique id (a `uuid`, as the
/// contract requires); idempotent consumers key on it.
pub const ID_FIELD: &str = "reading_id";
/// The one consumer group of the run.
pub const GROUP: &str = "chaos";

/// Every consumer's timings, library and CLI alike: short, so that claims,
/// retries and drains happen many times in a run.
pub mod timings {
    use std::time::Duration;

    /// `claim_idle`.
    pub const CLAIM_IDLE: Duration = Duration::from_secs(1);
    /// First `retry_backoff`.
    pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
    /// `retry_backoff_max`.
    pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
    /// `block`.
    pub const BLOCK: Duration = Duration::from_millis(200);
    /// `shutdown_grace`.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
    /// `max_deliveries`: high enough that the handlers' random failures
    /// (1 in 10) never dead-letter, so that dead letters come only from
    /// the nemesis's deletions.
    pub const MAX_DELIVERIES: u64 = 50;
}

/// The shared state of one run.
#[derive(Debug)]
pub struct Run {
    /// The run's options.
    pub options: ChaosOptions,
    /// The redis-server under test.
    pub url: String,
    /// The stream of [`CONTRACT`].
    pub stream: String,
    /// Its dead-letter stream.
    pub dead_letters: String,
    /// Where logs and the timeline go.
    pub dir: PathBuf,
    /// Faults and lifecycle events.
    pub history: History,
    /// Publishes, handlings, removals.
    pub ledger: Ledger,
    next_message: AtomicU64,
}

impl Run {
    /// A run against `url`, writing its files to `dir`.
    #[must_use]
    pub fn new(options: ChaosOptions, url: String, dir: PathBuf) -> Self {
        let stream = orion_bus::wire::stream_name("orion", CONTRACT);
        Self {
            dead_letters: orion_bus::wire::dead_letter_stream(&stream),
            stream,
            options,
            url,
            dir,
            history: History::new(),
            ledger: Ledger::default(),
            next_message: AtomicU64::new(1),
        }
    }

    /// The next message to publish: a valid `sensor.reading` whose
    /// [`ID_FIELD`] is unique in the run, with that id.
    #[must_use]
    pub fn next_message(&self) -> (String, Value) {
        let n = self.next_message.fetch_add(1, Ordering::AcqRel);
        // Version-4 layout; the seed's low bits tell runs apart in logs.
        let msg = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.options.seed & 0xffff_ffff,
            n
        );
        let mut message = orion_bus_examples::sensor_reading(n);
        if let Some(obj) = message.as_object_mut() {
            obj.insert(ID_FIELD.to_owned(), Value::String(msg.clone()));
        }
        (msg, message)
    }
}

/// The unique id of a message, if it has one.
#[must_use]
pub fn message_id(message: &Value) -> Option<String> {
    message
        .get(ID_FIELD)
        .and_then(Value::as_str)
        .map(str::to_owned)
}
