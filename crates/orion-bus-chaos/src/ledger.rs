//! The ledger: what was published, what was handled by whom and when, what
//! the nemesis removed, when each consumer instance lived, and when Redis
//! was unavailable. The checker judges a run from a [`Snapshot`] of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishOutcome {
    /// `XADD` returned this entry id: the message must be accounted for.
    Acked(String),
    /// The publish returned an error: the message may or may not have been
    /// written.
    Unknown(String),
}

/// One publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The message's unique id (its `reading_id`).
    pub msg: String,
    /// Which publisher.
    pub publisher: usize,
    /// When `publish` was called.
    pub sent_at: Duration,
    /// When it returned.
    pub done_at: Duration,
    /// What it returned.
    pub outcome: PublishOutcome,
}

impl Publish {
    /// The entry id, for an acknowledged publish.
    #[must_use]
    pub fn entry(&self) -> Option<&str> {
        match &self.outcome {
            PublishOutcome::Acked(id) => Some(id),
            PublishOutcome::Unknown(_) => None,
        }
    }
}

/// One successful handling of a message by a consumer instance (a library
/// handler returning `Ok`, or a line a CLI consumer printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    /// The message's unique id.
    pub msg: String,
    /// The stream entry id it came from.
    pub entry: String,
    /// The consumer instance (`name#generation`).
    pub instance: Arc<str>,
    /// When it was handled (for the CLI: when its line was read).
    pub at: Duration,
}

/// How the nemesis removed an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Removal {
    /// `XDEL`.
    Xdel,
    /// `XTRIM MAXLEN ~`.
    Trim,
    /// `DEL` of the whole stream.
    StreamDeleted,
    /// Pending in the group when the group was destroyed.
    PendingAtDestroy,
    /// Acknowledged, then missing after a SIGKILL of redis-server.
    RedisCrash,
}

impl Removal {
    /// A short label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Xdel => "xdel",
            Self::Trim => "trimmed",
            Self::StreamDeleted => "stream_deleted",
            Self::PendingAtDestroy => "pending_at_group_destroy",
            Self::RedisCrash => "lost_in_redis_crash",
        }
    }
}

/// One entry's removal by the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// How.
    pub how: Removal,
    /// When.
    pub at: Duration,
    /// The group had already acknowledged the entry (delivered and not
    /// pending): it must have been handled or dead-lettered before, and
    /// its removal excuses nothing.
    pub acked: bool,
}

/// Whether an instance is a library consumer or a CLI process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    /// In-process `orion_bus::Consumer`.
    Library,
    /// `orion-bus consume` process.
    Cli,
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceEnd {
    /// The nemesis killed it (SIGKILL, or its future dropped).
    Killed,
    /// Stopped gracefully at the end of the run.
    Stopped,
    /// It exited by itself; the text says how.
    Exited(String),
}

/// One consumer instance's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its consumer name in the group.
    pub name: String,
    /// Library or CLI.
    pub kind: ConsumerKind,
    /// When it was started.
    pub started: Duration,
    /// When and how it ended.
    pub end: Option<(Duration, InstanceEnd)>,
}

/// A window when Redis was down or frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// When it began.
    pub from: Duration,
    /// When it ended; `None` while it lasts.
    pub to: Option<Duration>,
    /// `frozen`, `restarted` or `crashed`.
    pub what: &'static str,
}

/// Everything the checker needs, copied out of the ledger.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every publish, in completion order.
    pub publishes: Vec<Publish>,
    /// Every handling, in the order recorded.
    pub handlings: Vec<Handling>,
    /// Entries the nemesis removed: entry id to its first removal.
    pub removed: HashMap<String, Removed>,
    /// Every consumer instance.
    pub instances: HashMap<Arc<str>, Instance>,
    /// Windows when Redis was down or frozen.
    pub outages: Vec<Outage>,
}

/// The shared, append-only record of a run.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Snapshot>,
}

impl Ledger {
    fn with<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a publish.
    pub fn published(&self, publish: Publish) {
        self.with(|s| s.publishes.push(publish));
    }

    /// Records a handling.
    pub fn handled(&self, handling: Handling) {
        self.with(|s| s.handlings.push(handling));
    }

    /// Records entries the nemesis removed, each with whether the group
    /// had acknowledged it (an entry keeps its first removal).
    pub fn removed(&self, how: Removal, ids: &[(String, bool)], at: Duration) {
        self.with(|s| {
            for (id, acked) in ids {
                s.removed.entry(id.clone()).or_insert(Removed {
                    how,
                    at,
                    acked: *acked,
                });
            }
        });
    }

    /// Records an instance's start.
    pub fn instance_started(&self, id: &Arc<str>, name: &str, kind: ConsumerKind, at: Duration) {
        self.with(|s| {
            s.instances.insert(
                id.clone(),
                Instance {
                    name: name.to_owned(),
                    kind,
                    started: at,
                    end: None,
                },
            );
        });
    }

    /// Records an instance's end.
    pub fn instance_ended(&self, id: &Arc<str>, end: InstanceEnd, at: Duration) {
        self.with(|s| {
            if let Some(i) = s.instances.get_mut(id) {
                i.end = Some((at, end));
            }
        });
    }

    /// Records the start of an outage; returns its index.
    pub fn outage_began(&self, at: Duration, what: &'static str) -> usize {
        self.with(|s| {
            s.outages.push(Outage {
                from: at,
                to: None,
                what,
            });
            s.outages.len() - 1
        })
    }

    /// Records the end of an outage.
    pub fn outage_ended(&self, idx: usize, at: Duration) {
        self.with(|s| {
            if let Some(o) = s.outages.get_mut(idx) {
                o.to = Some(at);
            }
        });
    }

    /// Entry ids of acknowledged publishes, in completion order.
    #[must_use]
    pub fn acked_entries(&self) -> Vec<String> {
        self.with(|s| {
            s.publishes
                .iter()
                .filter_map(|p| p.entry().map(str::to_owned))
                .collect()
        })
    }

    /// Acknowledged publishes sent before `before`, with their entry ids.
    #[must_use]
    pub fn acked_sent_before(&self, before: Duration) -> Vec<String> {
        self.with(|s| {
            s.publishes
                .iter()
                .filter(|p| p.sent_at <= before)
                .filter_map(|p| p.entry().map(str::to_owned))
                .collect()
        })
    }

    /// A copy of everything recorded so far.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| s.clone())
    }
}

/// Orders stream ids (`ms-seq`) numerically; `None` for a malformed id.
#[must_use]
pub fn stream_id_key(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}
