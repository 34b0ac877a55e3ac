//! The run's history: every fault the nemesis injected and every change in
//! the life of a consumer, Redis or the run, with its time since the start.
//!
//! Publishes and handlings are kept by the [`Ledger`](crate::ledger::Ledger);
//! the report merges both into one timeline when a check fails.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The kinds of fault the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// SIGKILL an `orion-bus consume` process, then restart it.
    KillCli,
    /// Drop a library consumer's run future (a crash), then restart it.
    AbortLibrary,
    /// `SHUTDOWN` redis-server, then start it again (AOF on).
    RestartRedis,
    /// SIGKILL redis-server, then start it again (AOF on).
    CrashRedis,
    /// SIGSTOP redis-server for 1-8 s, then SIGCONT.
    FreezeRedis,
    /// `XDEL` random entries already published.
    Xdel,
    /// `XTRIM stream MAXLEN ~ N`.
    Trim,
    /// `XGROUP DESTROY` the group.
    DestroyGroup,
    /// `DEL` the stream.
    DeleteStream,
}

impl FaultKind {
    /// Every kind, with the nemesis's relative weight for it.
    pub const WEIGHTS: [(Self, u32); 9] = [
        (Self::KillCli, 3),
        (Self::AbortLibrary, 3),
        (Self::RestartRedis, 1),
        (Self::CrashRedis, 1),
        (Self::FreezeRedis, 2),
        (Self::Xdel, 2),
        (Self::Trim, 1),
        (Self::DestroyGroup, 1),
        (Self::DeleteStream, 1),
    ];

    /// A short label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::KillCli => "sigkill_cli_consumer",
            Self::AbortLibrary => "abort_library_consumer",
            Self::RestartRedis => "restart_redis",
            Self::CrashRedis => "sigkill_redis",
            Self::FreezeRedis => "freeze_redis",
            Self::Xdel => "xdel",
            Self::Trim => "xtrim_maxlen",
            Self::DestroyGroup => "xgroup_destroy",
            Self::DeleteStream => "del_stream",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One recorded happening.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A phase of the run began.
    Phase(String),
    /// The nemesis injected a fault.
    Fault {
        /// Which kind.
        kind: FaultKind,
        /// What exactly was done.
        detail: String,
    },
    /// A fault could not be injected (nothing to act on, or it failed).
    FaultSkipped {
        /// Which kind.
        kind: FaultKind,
        /// Why.
        why: String,
    },
    /// A consumer instance started, died or stopped.
    Consumer {
        /// The instance (`name#generation`).
        instance: String,
        /// What happened.
        what: String,
    },
    /// Redis became unavailable or available again.
    Redis(String),
    /// Anything else worth knowing when reading a failure.
    Note(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phase(p) => write!(f, "== {p}"),
            Self::Fault { kind, detail } => write!(f, "FAULT {kind}: {detail}"),
            Self::FaultSkipped { kind, why } => write!(f, "fault {kind} skipped: {why}"),
            Self::Consumer { instance, what } => write!(f, "consumer {instance}: {what}"),
            Self::Redis(what) => write!(f, "redis: {what}"),
            Self::Note(n) => write!(f, "note: {n}"),
        }
    }
}

/// The history of one run, and its clock.
#[derive(Debug)]
pub struct History {
    start: Instant,
    events: Mutex<Vec<(Duration, Event)>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// A history whose clock starts now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Time since the start of the run.
    #[must_use]
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records an event at the current time.
    pub fn record(&self, event: Event) {
        let at = self.now();
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((at, event));
    }

    /// Every event so far, in time order.
    #[must_use]
    pub fn events(&self) -> Vec<(Duration, Event)> {
        let mut v = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        v.sort_by_key(|(at, _)| *at);
        v
    }
}

/// `12.345s`, the way times appear in the history.
#[must_use]
pub fn at(d: Duration) -> String {
    format!("{:>8.3}s", d.as_secs_f64())
}
