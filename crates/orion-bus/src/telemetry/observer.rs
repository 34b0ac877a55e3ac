//! Observer events: an entry read (valid, or invalid with the reason a
//! consumer would dead-letter it for and its bounded `source`), and
//! entries missed (trimmed or deleted before the observer read them).

use super::InternalEvent;
use crate::metrics::{Metrics, PoisonReason};

/// The observer read an entry.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct EntryObserved<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Contract name.
    pub(crate) contract: &'a str,
    /// Entry id.
    pub(crate) id: &'a str,
    /// `None` when valid; else why, and the message's `source` label.
    pub(crate) invalid: Option<(PoisonReason, &'a str)>,
}

impl InternalEvent for EntryObserved<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.observed(
            self.contract,
            self.invalid.is_none(),
            self.invalid.map(|(_, source)| source),
        );
        if let Some((reason, source)) = self.invalid {
            metrics.observed_invalid(self.contract, reason, source);
            tracing::debug!(
                stream = self.stream,
                id = self.id,
                reason = %reason,
                "observed an invalid entry"
            );
        }
    }
}

/// Entries were added to a stream and removed before the observer read
/// them.
#[must_use = "an event does nothing until emitted"]
pub(crate) struct EntriesMissed<'a> {
    /// Stream key.
    pub(crate) stream: &'a str,
    /// Contract name.
    pub(crate) contract: &'a str,
    /// How many, newly.
    pub(crate) missed: u64,
}

impl InternalEvent for EntriesMissed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.observed_missed(self.contract, self.missed);
        tracing::warn!(
            stream = self.stream,
            contract = self.contract,
            missed = self.missed,
            "observer missed entries: trimmed or deleted before it read them"
        );
    }
}
