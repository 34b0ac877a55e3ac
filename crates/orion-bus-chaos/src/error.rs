//! The checker's error boundary: what stops a chaos run from completing.
//!
//! A run that completes returns a [`ChaosReport`](crate::ChaosReport),
//! whose failures are the checker's findings; a [`ChaosError`] means the
//! run itself could not be carried out (no `redis-server`, the binary
//! under test missing, the server not coming back after a restart).

use orion_bus::{ConnectError, ContractError};
use orion_bus_harness::HarnessError;

/// Why a chaos run could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// The private redis-server could not be started or restarted.
    #[error("redis-server under test: {0}")]
    Harness(#[from] HarnessError),
    /// The redis-server under test could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A command of the checker itself failed (not one under test).
    #[error("checker's redis command {what} failed: {source}")]
    Redis {
        /// Which command.
        what: &'static str,
        /// The Redis error.
        source: redis::RedisError,
    },
    /// The example contracts did not load.
    #[error(transparent)]
    Contracts(#[from] ContractError),
    /// Local I/O (run directory, logs).
    #[error("chaos run I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An environment setting is invalid.
    #[error("invalid {name}: {reason}")]
    Setting {
        /// The variable or option.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A task of the run panicked or was lost.
    #[error("chaos run task failed: {0}")]
    Task(String),
}
