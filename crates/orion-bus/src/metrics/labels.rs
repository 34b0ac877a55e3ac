//! Label sets of every metric family, and the fixed label values as enums.
//!
//! A label that takes a value from a fixed set (`reason`, `outcome`) is an
//! enum here, so the set is a compile-time fact: each enum's `as_str()`
//! gives the exact value on the wire (listed in docs/OPERATIONS.md), and
//! `ALL` lists the values for the test that lists every series. The
//! free-form labels (`stream`, `contract`, `group`, `source`) stay strings,
//! bounded by their callers (known contracts only, sources capped).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Implements `Display` and `EncodeLabelValue` through `as_str()`.
macro_rules! label_value {
    ($ty:ty) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

/// What is wrong with an entry itself, whoever finds it: a consumer
/// dead-letters it, `dlq redrive` refuses it, the observer counts it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum PoisonReason {
    /// The entry has no `data` field.
    MissingData,
    /// The entry was deleted (`XDEL`) while it was pending.
    Deleted,
    /// `data` is not UTF-8.
    NotUtf8,
    /// `data` is over `max_message_bytes`.
    TooLarge,
    /// `data` is not JSON.
    InvalidJson,
    /// `data` holds `NaN`, `Infinity` or a number beyond the float range.
    NonFiniteNumber,
    /// `data` holds a lone UTF-16 surrogate escape.
    LoneSurrogate,
    /// The message does not conform to its contract.
    ContractViolation,
}

impl PoisonReason {
    /// Every variant.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 8] = [
        Self::MissingData,
        Self::Deleted,
        Self::NotUtf8,
        Self::TooLarge,
        Self::InvalidJson,
        Self::NonFiniteNumber,
        Self::LoneSurrogate,
        Self::ContractViolation,
    ];

    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::MissingData => "missing_data",
            Self::Deleted => "deleted",
            Self::NotUtf8 => "not_utf8",
            Self::TooLarge => "too_large",
            Self::InvalidJson => "invalid_json",
            Self::NonFiniteNumber => "non_finite_number",
            Self::LoneSurrogate => "lone_surrogate",
            Self::ContractViolation => "contract_violation",
        }
    }
}
label_value!(PoisonReason);

/// Why a consumer dead-lettered an entry (the dead letter's `reason`
/// field and the `reason` label of `dead_lettered_messages`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum DeadLetterReason {
    /// The entry itself is poison.
    Poison(PoisonReason),
    /// A valid message of a version the consumer does not accept.
    UnacceptedVersion,
    /// The handler failed with a permanent error.
    HandlerPermanent,
    /// The handler failed under the dead-letter error policy.
    HandlerError,
    /// Delivered `max_deliveries` times without success.
    MaxDeliveries,
}

impl DeadLetterReason {
    /// Every value.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 12] = [
        Self::Poison(PoisonReason::MissingData),
        Self::Poison(PoisonReason::Deleted),
        Self::Poison(PoisonReason::NotUtf8),
        Self::Poison(PoisonReason::TooLarge),
        Self::Poison(PoisonReason::InvalidJson),
        Self::Poison(PoisonReason::NonFiniteNumber),
        Self::Poison(PoisonReason::LoneSurrogate),
        Self::Poison(PoisonReason::ContractViolation),
        Self::UnacceptedVersion,
        Self::HandlerPermanent,
        Self::HandlerError,
        Self::MaxDeliveries,
    ];

    /// The label value (and the dead letter's `reason` field).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Poison(p) => p.as_str(),
            Self::UnacceptedVersion => "unaccepted_version",
            Self::HandlerPermanent => "handler_permanent",
            Self::HandlerError => "handler_error",
            Self::MaxDeliveries => "max_deliveries",
        }
    }
}
label_value!(DeadLetterReason);

/// Why a message was refused before anything was written: at publish, or
/// by `dlq redrive`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum RejectReason {
    /// What a consumer would dead-letter it for.
    Poison(PoisonReason),
    /// No contract of that name is loaded.
    UnknownContract,
    /// Redis failed.
    Redis,
}

impl RejectReason {
    /// Every value.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 10] = [
        Self::Poison(PoisonReason::MissingData),
        Self::Poison(PoisonReason::Deleted),
        Self::Poison(PoisonReason::NotUtf8),
        Self::Poison(PoisonReason::TooLarge),
        Self::Poison(PoisonReason::InvalidJson),
        Self::Poison(PoisonReason::NonFiniteNumber),
        Self::Poison(PoisonReason::LoneSurrogate),
        Self::Poison(PoisonReason::ContractViolation),
        Self::UnknownContract,
        Self::Redis,
    ];

    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Poison(p) => p.as_str(),
            Self::UnknownContract => "unknown_contract",
            Self::Redis => "redis",
        }
    }
}
label_value!(RejectReason);

/// What the observer made of an entry.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum ObservedOutcome {
    /// It conforms to its contract.
    Valid,
    /// A consumer would dead-letter it.
    Invalid,
    /// Trimmed or deleted before the observer read it.
    Missed,
}

impl ObservedOutcome {
    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Missed => "missed",
        }
    }
}
label_value!(ObservedOutcome);

/// Labels of publish-side series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PublishLabels {
    /// Contract name.
    pub(crate) contract: String,
}

/// Labels of rejected-message series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectLabels {
    /// Contract name.
    pub(crate) contract: String,
    /// Why.
    pub(crate) reason: RejectReason,
}

/// Labels of consume-side series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConsumeLabels {
    /// Stream key.
    pub(crate) stream: String,
    /// Contract name.
    pub(crate) contract: String,
    /// Consumer group.
    pub(crate) group: String,
}

/// Labels of dead-letter series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeadLetterLabels {
    /// Stream key.
    pub(crate) stream: String,
    /// Contract name.
    pub(crate) contract: String,
    /// Consumer group.
    pub(crate) group: String,
    /// Why.
    pub(crate) reason: DeadLetterReason,
}

/// Labels of per-group series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GroupLabels {
    /// Stream key.
    pub(crate) stream: String,
    /// Consumer group.
    pub(crate) group: String,
}

impl GroupLabels {
    /// The labels of one (stream, group).
    pub(crate) fn new(stream: &str, group: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            group: group.to_owned(),
        }
    }
}

/// Labels of per-stream series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StreamLabels {
    /// Stream key.
    pub(crate) stream: String,
}

/// Labels of observer series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ObservedLabels {
    /// Contract name.
    pub(crate) contract: String,
    /// `valid`, `invalid` or `missed`.
    pub(crate) outcome: ObservedOutcome,
}

/// Labels of observed violations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ViolationLabels {
    /// Contract name.
    pub(crate) contract: String,
    /// The message's `source` field (bounded; see the observer).
    pub(crate) source: String,
}

/// Labels of invalid entries the observer read, by reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ObservedInvalidLabels {
    /// Contract name.
    pub(crate) contract: String,
    /// Why the entry is invalid: the dead-letter reason a consumer would
    /// give it.
    pub(crate) reason: PoisonReason,
    /// The message's `source` field (bounded; see the observer).
    pub(crate) source: String,
}
