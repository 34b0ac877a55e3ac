//! What a chaos run does: [`ChaosOptions`], with the environment variables
//! that set the seed and the length of a run.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ChaosError;

/// The seed of the nemesis's schedule (and of every other random choice).
/// Random when unset; always printed.
pub const SEED_ENV: &str = "ORION_BUS_CHAOS_SEED";
/// How long the nemesis acts, in seconds.
pub const SECS_ENV: &str = "ORION_BUS_CHAOS_SECS";
/// How long to wait for the consumers to become quiet afterwards, in seconds.
pub const QUIET_SECS_ENV: &str = "ORION_BUS_CHAOS_QUIET_SECS";

/// When set, the run directory (timeline, CLI logs, Redis log) is kept
/// even when the run passed.
pub const KEEP_ENV: &str = "ORION_BUS_CHAOS_KEEP";

/// Default nemesis time: two configurations run side by side in about two
/// minutes, start-up, quiet period and checks included.
pub const DEFAULT_NEMESIS_SECS: u64 = 90;
/// Default limit on the quiet period.
pub const DEFAULT_QUIET_SECS: u64 = 30;

/// How one consumer of the library is set up: its handler's behaviour and
/// its sizes. The sizes differ between consumers on purpose, so that a
/// reader holding every in-flight slot (`read_count` >= `max_in_flight`)
/// and a consumer with room to spare are both exercised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LibraryProfile {
    /// The handler sleeps a random 0-300 ms.
    pub slow: bool,
    /// The handler fails (retryable) with probability 1/10.
    pub failing: bool,
    /// `ConsumerOptions::concurrency`.
    pub concurrency: usize,
    /// `ConsumerOptions::max_in_flight`.
    pub max_in_flight: usize,
    /// `ConsumerOptions::read_count`.
    pub read_count: usize,
}

impl LibraryProfile {
    /// A profile.
    #[must_use]
    pub fn new(
        slow: bool,
        failing: bool,
        concurrency: usize,
        max_in_flight: usize,
        read_count: usize,
    ) -> Self {
        Self {
            slow,
            failing,
            concurrency,
            max_in_flight,
            read_count,
        }
    }
}

/// Everything a run needs. [`ChaosOptions::from_env`] gives the defaults
/// with the seed and durations from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChaosOptions {
    /// Seeds every random choice of the run (schedule, victims, handler
    /// sleeps and failures). Timing still varies between runs.
    pub seed: u64,
    /// A short name for the configuration, printed with the figures.
    pub label: String,
    /// How long publishers run and the nemesis acts.
    pub nemesis_for: Duration,
    /// How long to wait, after the nemesis stopped and everything was
    /// brought back, for the group to have nothing pending and every
    /// acknowledged publish accounted for.
    pub quiet_timeout: Duration,
    /// Consumers skip messages the group already handled, keyed by the
    /// unique id field; the checker then demands no duplicates.
    pub idempotency: bool,
    /// The in-process consumers, one per profile.
    pub library: Vec<LibraryProfile>,
    /// The `orion-bus` binary, for CLI consumers; `None` runs none.
    pub cli_binary: Option<PathBuf>,
    /// How many `orion-bus consume` processes run.
    pub cli_consumers: usize,
    /// The contracts directory given to the CLI consumers (it must hold
    /// the example `sensor.reading` contract).
    pub contracts_dir: PathBuf,
    /// Concurrent publishers.
    pub publishers: usize,
    /// Each publisher's pace: one publish per this interval.
    pub publish_every: Duration,
    /// Shortest and longest wait between two faults.
    pub fault_gap: (Duration, Duration),
    /// The consumers' housekeeping interval (loss checks, stale-consumer
    /// sweep).
    pub housekeeping_interval: Duration,
    /// Consumers idle this long with nothing pending are removed from the
    /// group by the others. Short, so that the sweep runs during the run
    /// (consumers renamed after a crash leave their old names behind).
    pub stale_consumer_after: Duration,
}

impl ChaosOptions {
    /// The default run with this seed: 3 library consumers (slow and
    /// failing, failing, slow), no CLI consumers until
    /// [`Self::cli`] names the binary, 2 publishers at 25 messages/s each.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            label: "chaos".to_owned(),
            nemesis_for: Duration::from_secs(DEFAULT_NEMESIS_SECS),
            quiet_timeout: Duration::from_secs(DEFAULT_QUIET_SECS),
            idempotency: false,
            library: vec![
                // The defaults: the reader can hold every slot.
                LibraryProfile::new(true, true, 8, 64, 32),
                LibraryProfile::new(false, true, 2, 4, 8),
                LibraryProfile::new(true, false, 4, 16, 4),
            ],
            cli_binary: None,
            cli_consumers: 2,
            contracts_dir: PathBuf::from("contracts"),
            publishers: 2,
            publish_every: Duration::from_millis(40),
            fault_gap: (Duration::from_secs(1), Duration::from_secs(4)),
            housekeeping_interval: Duration::from_millis(500),
            stale_consumer_after: Duration::from_secs(3),
        }
    }

    /// The defaults, with the seed from [`SEED_ENV`] (random when unset),
    /// the nemesis time from [`SECS_ENV`] and the quiet limit from
    /// [`QUIET_SECS_ENV`].
    ///
    /// # Errors
    /// [`ChaosError::Setting`] when a variable is not a number.
    pub fn from_env() -> Result<Self, ChaosError> {
        let seed = env_u64(SEED_ENV)?.unwrap_or_else(|| fastrand::u64(..));
        let mut options = Self::new(seed);
        if let Some(secs) = env_u64(SECS_ENV)? {
            options.nemesis_for = Duration::from_secs(secs);
        }
        if let Some(secs) = env_u64(QUIET_SECS_ENV)? {
            options.quiet_timeout = Duration::from_secs(secs);
        }
        Ok(options)
    }

    /// Names the configuration in the report.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Turns idempotency on or off for every consumer.
    #[must_use]
    pub fn idempotency(mut self, on: bool) -> Self {
        self.idempotency = on;
        self
    }

    /// Runs `count` CLI consumers from `binary`, with the contracts in
    /// `contracts_dir`.
    #[must_use]
    pub fn cli(
        mut self,
        binary: impl Into<PathBuf>,
        contracts_dir: impl Into<PathBuf>,
        count: usize,
    ) -> Self {
        self.cli_binary = Some(binary.into());
        self.contracts_dir = contracts_dir.into();
        self.cli_consumers = count;
        self
    }

    /// Sets the library consumers.
    #[must_use]
    pub fn library(mut self, profiles: Vec<LibraryProfile>) -> Self {
        self.library = profiles;
        self
    }

    /// Sets how long the nemesis acts.
    #[must_use]
    pub fn nemesis_for(mut self, d: Duration) -> Self {
        self.nemesis_for = d;
        self
    }

    /// Sets the limit on the quiet period.
    #[must_use]
    pub fn quiet_timeout(mut self, d: Duration) -> Self {
        self.quiet_timeout = d;
        self
    }

    /// Sets the publishers and their pace.
    #[must_use]
    pub fn publishers(mut self, count: usize, every: Duration) -> Self {
        self.publishers = count;
        self.publish_every = every;
        self
    }

    /// How many CLI consumers actually run.
    #[must_use]
    pub fn cli_count(&self) -> usize {
        if self.cli_binary.is_some() {
            self.cli_consumers
        } else {
            0
        }
    }
}

fn env_u64(name: &'static str) -> Result<Option<u64>, ChaosError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|e| ChaosError::Setting {
            name,
            reason: format!("{v:?} is not a whole number: {e}"),
        }),
        Err(_) => Ok(None),
    }
}
