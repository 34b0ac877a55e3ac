//! Consumer-side events: dead letters, entries claimed from consumers
//! presumed dead, recreated groups, stale consumers removed, and entries
//! lost to a group (trimmed, deleted, or gone with the stream).

use super::InternalEvent;
use crate::metrics::{DeadLetterReason, Metrics};

/// An entry was copied to its dead-letter stream and acked.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct EntryDeadLettered<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Contract name.
    pub(crate) contract: &'a str,
    /// Consumer group.
    pub(crate) group: &'a str,
    /// Entry id.
    pub(crate) id: &'a str,
    /// Why.
    pub(crate) reason: DeadLetterReason,
}

impl InternalEvent for EntryDeadLettered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.dead_lettered(self.stream, self.contract, self.group, self.reason);
        // The warning with the error was logged when dead-lettering began.
        tracing::debug!(
            stream = self.stream,
            group = self.group,
            id = self.id,
            reason = %self.reason,
            "entry dead-lettered"
        );
    }
}

/// An entry was taken over (`XCLAIM`) from a consumer presumed dead.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct EntriesClaimed<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Consumer group.
    pub(crate) group: &'a str,
    /// Entry id.
    pub(crate) id: &'a str,
    /// The consumer it was taken from.
    pub(crate) from: &'a str,
}

impl InternalEvent for EntriesClaimed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.claimed(self.stream, self.group, 1);
        tracing::debug!(
            stream = self.stream,
            group = self.group,
            id = self.id,
            from = self.from,
            "entry taken over from a consumer presumed dead"
        );
    }
}

/// A consumer group vanished and was recreated where it last stood.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct GroupRecreated<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Consumer group.
    pub(crate) group: &'a str,
    /// The id it was recreated at.
    pub(crate) at: &'a str,
    /// Whether the stream itself is new (deleted, or Redis restarted).
    pub(crate) new_stream: bool,
}

impl InternalEvent for GroupRecreated<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.group_recreated(self.stream, self.group);
        tracing::warn!(
            stream = self.stream,
            group = self.group,
            at = self.at,
            new_stream = self.new_stream,
            "consumer group vanished (stream deleted, group destroyed or Redis restarted empty); recreated where it last stood"
        );
    }
}

/// A stale consumer (idle, nothing pending, no lease) was removed.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct StaleConsumerRemoved<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Consumer group.
    pub(crate) group: &'a str,
    /// The consumer removed.
    pub(crate) consumer: &'a str,
    /// How long it had been idle.
    pub(crate) idle_ms: u64,
}

impl InternalEvent for StaleConsumerRemoved<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.stale_consumers_removed(self.stream, self.group, 1);
        tracing::info!(
            stream = self.stream,
            group = self.group,
            consumer = self.consumer,
            idle_ms = self.idle_ms,
            "removed a stale consumer (idle, nothing pending)"
        );
    }
}

/// Why a group lost entries it had not read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LossCause<'a> {
    /// Trimmed or deleted before the group read them.
    Trimmed {
        /// The group's last-delivered id.
        last_delivered: &'a str,
        /// The stream's first entry now.
        first_entry: Option<&'a str>,
    },
    /// The stream was deleted or emptied (its group is being recreated).
    StreamGone,
}

/// Entries were removed before a group read them. Counted once per gap
/// (see `Metrics::trimmed_unread`); logged only when something new was
/// lost.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct UnreadEntriesLost<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Consumer group.
    pub(crate) group: &'a str,
    /// What identifies this gap, so repeated checks count it once.
    pub(crate) gap: &'a str,
    /// How many entries the group lost in this gap so far.
    pub(crate) lost: u64,
    /// How.
    pub(crate) cause: LossCause<'a>,
}

impl InternalEvent for UnreadEntriesLost<'_> {
    fn emit(self, metrics: &Metrics) {
        let new = metrics.trimmed_unread(self.stream, self.group, self.gap, self.lost);
        if new == 0 {
            return;
        }
        match self.cause {
            LossCause::Trimmed {
                last_delivered,
                first_entry,
            } => tracing::warn!(
                stream = self.stream,
                group = self.group,
                lost = new,
                last_delivered,
                first_entry = ?first_entry,
                "entries were trimmed before this group read them"
            ),
            LossCause::StreamGone => tracing::warn!(
                stream = self.stream,
                group = self.group,
                lost = new,
                "the stream was deleted or emptied with entries this group had not read (at least this many, from the last check)"
            ),
        }
    }
}
