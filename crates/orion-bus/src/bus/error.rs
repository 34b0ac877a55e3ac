//! [`PublishError`], the publishing error boundary: what failed, whether
//! it is worth retrying, and whether the message may have been written.

use crate::contracts::{ContractError, Violations};
use crate::metrics::{PoisonReason, RejectReason};

/// Errors of the publishing boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The contract name is unknown.
    #[error(transparent)]
    UnknownContract(#[from] ContractError),
    /// The message breaks its contract; nothing was written.
    #[error("{contract} message{} is invalid: {violations}", index_suffix(*.index))]
    Invalid {
        /// The contract.
        contract: String,
        /// Position in a batch, if the message was part of one.
        index: Option<usize>,
        /// Every violation.
        violations: Violations,
    },
    /// The message is not JSON (raw publishes only); nothing was written.
    #[error("{contract} message{} is not valid JSON: {message}", index_suffix(*.index))]
    NotJson {
        /// The contract.
        contract: String,
        /// Position in a batch.
        index: Option<usize>,
        /// The parse error.
        message: String,
    },
    /// The encoded message exceeds `max_message_bytes`; nothing was written.
    #[error("{contract} message{} is {size} bytes, over the {limit}-byte limit", index_suffix(*.index))]
    TooLarge {
        /// The contract.
        contract: String,
        /// Position in a batch.
        index: Option<usize>,
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Redis failed. The message may or may not have been written if the
    /// connection dropped after sending; see [`PublishError::is_retryable`].
    #[error("publishing to {stream} failed: {}", one_line(source))]
    Redis {
        /// The stream.
        stream: String,
        /// The Redis error.
        source: redis::RedisError,
    },
}

/// A Redis error as one readable line: an aborted transaction lists an
/// error per command, which for a large batch is thousands of repeats.
fn one_line(e: &redis::RedisError) -> String {
    const MAX: usize = 300;
    let text = e.to_string().replace('\n', " ");
    if text.len() <= MAX {
        return text;
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let repeats = text.matches("(Index ").count();
    if repeats > 1 {
        format!("{}… ({repeats} commands refused in all)", &text[..cut])
    } else {
        format!("{}… ({} bytes in all)", &text[..cut], text.len())
    }
}

fn index_suffix(index: Option<usize>) -> String {
    index.map(|i| format!(" #{i}")).unwrap_or_default()
}

impl PublishError {
    /// True for transient failures (connection, timeout) worth retrying;
    /// false for messages that will never be accepted.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Redis { source, .. } => crate::backoff::is_transient(source),
            _ => false,
        }
    }

    /// For a Redis failure: true when the write may have been applied
    /// even so (the connection dropped or the reply timed out after the
    /// command was sent); false when Redis refused it or it was never
    /// sent, and for every other error (nothing was written). A batch is
    /// one transaction: "may have been written" means all of it or none.
    #[must_use]
    pub fn may_have_been_written(&self) -> bool {
        match self {
            Self::Redis { source, .. } => {
                !source.is_connection_refusal()
                    && (source.is_timeout()
                        || source.is_connection_dropped()
                        || source.is_io_error())
            }
            _ => false,
        }
    }

    /// A short label for metrics.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reject_reason().as_str()
    }

    /// The reason as the label enum.
    pub(crate) fn reject_reason(&self) -> RejectReason {
        match self {
            Self::UnknownContract(_) => RejectReason::UnknownContract,
            Self::Invalid { .. } => RejectReason::Poison(PoisonReason::ContractViolation),
            Self::NotJson { .. } => RejectReason::Poison(PoisonReason::InvalidJson),
            Self::TooLarge { .. } => RejectReason::Poison(PoisonReason::TooLarge),
            Self::Redis { .. } => RejectReason::Redis,
        }
    }
}
