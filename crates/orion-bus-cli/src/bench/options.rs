//! What a bench run is asked to do: the scenario, the counts and the
//! contract, with the scenario's defaults and every check at once; and
//! [`BenchError`], what stops a run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use orion_bus::{
    BusOptions, ConnectError, ConsumeError, ConsumerOptions, ContractError, PublishError,
};
use serde::Serialize;
use serde_json::Value;

/// Which load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scenario {
    /// Validated publishing only, as fast as possible.
    Publish,
    /// Publish, consume (validated), handle and ack, as fast as possible.
    E2e,
    /// A fixed offered load, for latency and CPU under load.
    Rate,
}

impl Scenario {
    /// The scenario's name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::E2e => "e2e",
            Self::Rate => "rate",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "publish" => Ok(Self::Publish),
            "e2e" => Ok(Self::E2e),
            "rate" => Ok(Self::Rate),
            other => Err(format!(
                "unknown scenario {other:?} (expected publish, e2e or rate)"
            )),
        }
    }
}

/// What to run. Start from [`BenchOptions::new`]; unset counts take the
/// scenario's defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// How long to publish. Default 10 s.
    pub duration: Duration,
    /// The contract to publish. Default `sensor.reading`. An example
    /// contract (`sensor.reading`, `alert`, `command`) brings its own
    /// samples; any other needs [`Self::sample`].
    pub contract: String,
    /// A valid message of `contract`, used for every published message
    /// (with a timestamp written into one of its string fields). Required
    /// for a contract that is not an example one.
    pub sample: Option<Value>,
    /// Encoded size of every message, in bytes; `None` for the sample's
    /// natural size plus the timestamp.
    pub payload_bytes: Option<usize>,
    /// Messages per publish call. Default 1 for `publish`, 64 for `e2e`;
    /// `rate` always publishes one message per call.
    pub pipeline: Option<usize>,
    /// Concurrent publishing tasks. Default 1 for `publish`, 4 for `e2e`;
    /// `rate` uses one scheduler and a task per message.
    pub publishers: Option<usize>,
    /// Consumers in the group (`e2e`, `rate`). Default 20 for `e2e`, 1 for
    /// `rate`; 0 makes `rate` publish only (latency is then the publish
    /// call's, and the CPU time the publisher's alone).
    pub consumers: Option<usize>,
    /// Offered load of `rate`, in messages per second. Default 1000.
    pub rate: u64,
    /// Template for every consumer: concurrency, in-flight cap, read count
    /// and block time are taken from it; group, name, contracts, start id
    /// and limit are set by the bench.
    pub consumer: ConsumerOptions,
}

impl BenchOptions {
    /// Defaults for `scenario`.
    #[must_use]
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            duration: Duration::from_secs(10),
            contract: "sensor.reading".to_owned(),
            sample: None,
            payload_bytes: None,
            pipeline: None,
            publishers: None,
            consumers: None,
            rate: 1000,
            consumer: ConsumerOptions::new("bench", "bench"),
        }
    }

    pub(super) fn pipeline(&self) -> usize {
        match self.scenario {
            Scenario::Publish => self.pipeline.unwrap_or(1),
            Scenario::E2e => self.pipeline.unwrap_or(64),
            Scenario::Rate => 1,
        }
    }

    pub(super) fn publishers(&self) -> usize {
        match self.scenario {
            Scenario::Publish => self.publishers.unwrap_or(1),
            Scenario::E2e => self.publishers.unwrap_or(4),
            Scenario::Rate => 1,
        }
    }

    pub(super) fn consumers(&self) -> usize {
        match self.scenario {
            Scenario::Publish => 0,
            Scenario::E2e => self.consumers.unwrap_or(20),
            Scenario::Rate => self.consumers.unwrap_or(1),
        }
    }

    /// Every problem with the options, at once.
    pub(super) fn check(&self, bus: &BusOptions) -> Result<(), BenchError> {
        let mut problems = Vec::new();
        if self.duration.is_zero() || self.duration > Duration::from_secs(3600) {
            problems.push("duration must be more than 0 and at most 1h".to_owned());
        }
        if !(1..=10_000).contains(&self.pipeline()) {
            problems.push("pipeline must be between 1 and 10000".to_owned());
        }
        if !(1..=256).contains(&self.publishers()) {
            problems.push("publishers must be between 1 and 256".to_owned());
        }
        if self.scenario == Scenario::E2e && !(1..=1000).contains(&self.consumers()) {
            problems.push("consumers must be between 1 and 1000".to_owned());
        }
        if self.scenario == Scenario::Rate && self.consumers() > 1000 {
            problems.push("consumers must be at most 1000".to_owned());
        }
        if self.scenario == Scenario::Rate && !(1..=1_000_000).contains(&self.rate) {
            problems.push("rate must be between 1 and 1000000 messages per second".to_owned());
        }
        if self.sample.is_none() && orion_bus_examples::sample(&self.contract, 0).is_none() {
            problems.push(format!(
                "contract {:?} is not an example contract (sensor.reading, alert or command): give a sample message of it",
                self.contract
            ));
        }
        if let Some(bytes) = self.payload_bytes
            && bytes > bus.max_message_bytes
        {
            problems.push(format!(
                "payload of {bytes} bytes is over max_message_bytes ({})",
                bus.max_message_bytes
            ));
        }
        if self.scenario == Scenario::E2e
            && bus.max_len > 0
            && (bus.max_len as usize) < 2 * self.pipeline() * self.publishers()
        {
            problems.push(format!(
                "max_len {} is too small for {} publishers x pipeline {}: unread entries would be trimmed",
                bus.max_len,
                self.publishers(),
                self.pipeline()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Options(problems.join("; ")))
        }
    }
}

/// Errors that stop a bench run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options are invalid.
    #[error("invalid bench options: {0}")]
    Options(String),
    /// The example contracts did not load.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// Redis could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A consumer failed to start.
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    /// A bench task failed.
    #[error("bench task failed: {0}")]
    Task(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse() {
        for s in ["publish", "e2e", "rate"] {
            assert_eq!(s.parse::<Scenario>().map(Scenario::name), Ok(s));
        }
        assert!("load".parse::<Scenario>().is_err());
    }

    #[test]
    fn options_are_checked() {
        let mut o = BenchOptions::new(Scenario::Rate);
        o.rate = 0;
        o.duration = Duration::ZERO;
        o.contract = "nope".to_owned();
        let err = o
            .check(&BusOptions::default())
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("rate"), "{err}");
        assert!(err.contains("duration"), "{err}");
        assert!(err.contains("nope"), "{err}");
        assert!(
            BenchOptions::new(Scenario::E2e)
                .check(&BusOptions::default())
                .is_ok()
        );
    }
}
