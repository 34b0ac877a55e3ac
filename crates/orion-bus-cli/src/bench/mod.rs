//! The load generator behind `orion-bus bench`, one file per concern:
//! `options.rs` (what to run), `messages.rs` (what is published),
//! `publishers.rs`, `run.rs` (one run from start to cleanup),
//! `report.rs` (progress, the report, latency histograms) and
//! `resources.rs` (CPU time and peak RSS from `/proc/self`).
//!
//! Owns the three scenarios, what they measure and how they report it:
//! - [`Scenario::Publish`]: validated publishing as fast as it goes, one
//!   message per call ([`orion_bus::Bus::publish`]) or `pipeline` per call
//!   ([`orion_bus::Bus::publish_batch`]), from `publishers` concurrent tasks. Latency
//!   is the duration of one call (validation, encoding and the Redis round
//!   trip), counted once for each message the call carried.
//! - [`Scenario::E2e`]: publish → `XREADGROUP` → decode → validate →
//!   handler → `XACK`, with `consumers` consumers in one group, as fast as
//!   it goes. Publishers keep at most a window of messages published but
//!   not yet handled (so `MAXLEN ~` never trims an unread entry); latency
//!   therefore includes the time a message waits in that window.
//! - [`Scenario::Rate`]: a fixed offered load (`rate` messages per second,
//!   one [`orion_bus::Bus::publish`] each, on a schedule that does not wait for
//!   earlier publishes), for latency under load and CPU cost.
//!
//! For `e2e` and `rate`, latency is **publish-to-handler**: the publisher
//! writes a monotonic timestamp into the message just before calling
//! `publish` (so validation and encoding are included), and the handler,
//! once the consumer has decoded and validated the entry, subtracts it from
//! the time it is called. Publisher and consumers run in this process, so
//! both read the same monotonic clock.
//!
//! The timestamp lives in a field the contract allows: `tags` of
//! `sensor.reading`, `summary` of `alert`, `target` of `command`, and for
//! any other contract (given with a sample message) the first string field
//! of the sample that still validates with the timestamp in it. Padding in
//! the same field brings every message to exactly `payload_bytes` encoded
//! bytes.
//!
//! Resource figures are the whole process's: CPU time (user + system,
//! from `/proc/self/stat`) spent during the run, and peak resident memory
//! (`VmHWM` from `/proc/self/status`) since the process started. They
//! include the load generator's own work (building messages, recording
//! latencies), so they overstate the bus's cost slightly.
//!
//! Each run writes under a stream prefix of its own
//! (`orion-bench-<ms since epoch>`) and deletes its keys at the end.

mod messages;
mod options;
mod publishers;
mod report;
mod resources;
mod run;

pub use options::{BenchError, BenchOptions, Scenario};
pub use report::{BenchReport, Progress};
pub use run::run;
