//! The rejected-message event: `rejected_messages_total` by contract and
//! reason, with a debug line (the caller gets the error itself).

use std::fmt::Display;

use super::InternalEvent;
use crate::metrics::{Metrics, RejectReason};

/// A message refused before anything was written (at publish, or by
/// `dlq redrive`).
#[must_use = "an event does nothing until emitted"]
pub(crate) struct MessageRejected<'a> {
    /// The `contract` label: a loaded contract's name, or `unknown`.
    pub(crate) contract: &'a str,
    /// Why.
    pub(crate) reason: RejectReason,
    /// The full error, for the log line.
    pub(crate) error: &'a dyn Display,
}

impl InternalEvent for MessageRejected<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.rejected(self.contract, self.reason);
        tracing::debug!(
            contract = self.contract,
            reason = %self.reason,
            error = %self.error,
            "publish rejected"
        );
    }
}
