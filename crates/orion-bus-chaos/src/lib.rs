//! orion-bus-chaos: a randomized fault checker for orion-bus, in the
//! manner of Jepsen.
//!
//! A run starts a private `redis-server` with AOF, consumers of one group
//! (library consumers in this process, some with slow handlers, some with
//! handlers that fail at random, and `orion-bus consume` processes),
//! publishers that write messages with unique ids at a steady pace, and a
//! nemesis that, at times drawn from a seed, kills and restarts consumers
//! (under the same name or a new one), restarts, crashes and freezes
//! Redis, deletes and trims entries, destroys the group and deletes the
//! stream. Then it heals everything, waits for quiet, stops everything
//! cleanly and checks: every acknowledged publish was handled or
//! dead-lettered, or removed by the nemesis (counted apart, never
//! silently excused); nothing is left pending; with idempotency, no
//! message was handled twice unless its first consumer was killed right
//! after handling it.
//!
//! # Layout
//! - [`options`]: [`ChaosOptions`] and the environment variables
//!   (`ORION_BUS_CHAOS_SEED`, `ORION_BUS_CHAOS_SECS`, `ORION_BUS_CHAOS_QUIET_SECS`,
//!   `ORION_BUS_CHAOS_KEEP`).
//! - [`runner`]: one run from start to verdict ([`run`]).
//! - `context`: what a run's parts share (names, history, ledger, ids).
//! - [`history`]: faults, lifecycle events and phases, with times.
//! - [`ledger`]: publishes, handlings, removals, instance lives, outages.
//! - `server`: the redis-server under test, controlled from async code.
//! - `admin`: the checker's own Redis commands (faults on data, reads);
//!   `scripts`: the Lua behind the faults on data.
//! - `publisher`: the publishers.
//! - `lib_consumer`, `cli_consumer`: one consumer instance of each kind.
//! - `fleet`: the consumer slots that start, crash, restart and stop them.
//! - `nemesis`: the fault schedule.
//! - [`check`]: the verdict.
//! - [`report`]: [`ChaosReport`] and the timeline.
//! - [`error`]: the error boundary, [`ChaosError`].

mod admin;
pub mod check;
mod cli_consumer;
mod context;
pub mod error;
mod fleet;
pub mod history;
pub mod ledger;
mod lib_consumer;
mod nemesis;
pub mod options;
mod publisher;
pub mod report;
pub mod runner;
mod scripts;
mod server;

pub use admin::{DeadLetter, PendingRow};
pub use context::{CONTRACT, GROUP, ID_FIELD};
pub use error::ChaosError;
pub use options::{ChaosOptions, LibraryProfile};
pub use report::ChaosReport;
pub use runner::run;

/// [`run`] on a runtime of its own (two worker threads), for tests.
///
/// # Errors
/// As [`run`], or when the runtime cannot be built.
pub fn run_blocking(options: ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(options));
    // Whatever is still running (it should be nothing) dies with the
    // runtime; child processes are killed on drop.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    report
}
