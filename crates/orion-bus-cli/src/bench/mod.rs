//! The load generator behind `orion-bus bench`.
//!
//! Owns the three scenarios, what they measure and how they report it:
//! - [`Scenario::Publish`]: validated publishing as fast as it goes, one
//!   message per call ([`Bus::publish`]) or `pipeline` per call
//!   ([`Bus::publish_batch`]), from `publishers` concurrent tasks. Latency
//!   is the duration of one call (validation, encoding and the Redis round
//!   trip), counted once for each message the call carried.
//! - [`Scenario::E2e`]: publish → `XREADGROUP` → decode → validate →
//!   handler → `XACK`, with `consumers` consumers in one group, as fast as
//!   it goes. Publishers keep at most a window of messages published but
//!   not yet handled (so `MAXLEN ~` never trims an unread entry); latency
//!   therefore includes the time a message waits in that window.
//! - [`Scenario::Rate`]: a fixed offered load (`rate` messages per second,
//!   one [`Bus::publish`] each, on a schedule that does not wait for
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

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusOptions, PublishError};
use crate::connection::{ConnectError, RedisSettings};
use crate::consumer::{ConsumeError, Consumer, ConsumerOptions, Delivery, HandlerError, StartId};
use crate::contracts::{Contract, ContractError, ContractRegistry};
use crate::metrics::Metrics;
use crate::wire::{self, JsonStyle};

/// Largest latency recorded exactly; longer ones are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Distinct sample messages cycled through (different ids and values).
const TEMPLATES: u64 = 64;

/// Width of the zero-padded nanosecond timestamp, so every message of a
/// run has the same encoded size.
const STAMP_WIDTH: usize = 20;

/// Most messages published but not yet handled in `e2e` (and at most half
/// the stream cap, so trimming never removes an unread entry).
const E2E_WINDOW: usize = 4096;

/// How long, after publishing stopped, the consumers get to handle the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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

    fn pipeline(&self) -> usize {
        match self.scenario {
            Scenario::Publish => self.pipeline.unwrap_or(1),
            Scenario::E2e => self.pipeline.unwrap_or(64),
            Scenario::Rate => 1,
        }
    }

    fn publishers(&self) -> usize {
        match self.scenario {
            Scenario::Publish => self.publishers.unwrap_or(1),
            Scenario::E2e => self.publishers.unwrap_or(4),
            Scenario::Rate => 1,
        }
    }

    fn consumers(&self) -> usize {
        match self.scenario {
            Scenario::Publish => 0,
            Scenario::E2e => self.consumers.unwrap_or(20),
            Scenario::Rate => self.consumers.unwrap_or(1),
        }
    }

    /// Every problem with the options, at once.
    fn check(&self, bus: &BusOptions) -> Result<(), BenchError> {
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
        if self.sample.is_none() && crate::examples::sample(&self.contract, 0).is_none() {
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

/// A progress sample, about once a second while a run goes on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Progress {
    /// The scenario.
    pub scenario: Scenario,
    /// Time since publishing started.
    pub elapsed: Duration,
    /// Planned publishing time.
    pub duration: Duration,
    /// Messages published so far.
    pub published: u64,
    /// Messages handled so far (0 for `publish`).
    pub handled: u64,
    /// True once publishing stopped and the consumers are catching up.
    pub draining: bool,
    /// True when the run has consumers (`handled` means something).
    pub consuming: bool,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "bench {}: {:>5.1}s/{:.0}s  published {:>9} ({:>7.0}/s)",
            self.scenario,
            self.elapsed.as_secs_f64(),
            self.duration.as_secs_f64(),
            self.published,
            self.published as f64 / secs
        )?;
        if self.consuming {
            write!(
                f,
                "  handled {:>9} ({:>7.0}/s)",
                self.handled,
                self.handled as f64 / secs
            )?;
        }
        if self.draining {
            f.write_str("  draining")?;
        }
        Ok(())
    }
}

/// The result of a run. `--json` prints it as one JSON object.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BenchReport {
    /// `publish`, `e2e` or `rate`.
    pub scenario: Scenario,
    /// The contract published.
    pub contract: String,
    /// Encoded size of each message, in bytes.
    pub payload_bytes: usize,
    /// `python` or `compact`.
    pub json_style: &'static str,
    /// Messages published (`publish`) or handled (`e2e`, `rate`).
    pub messages: u64,
    /// Messages published.
    pub published: u64,
    /// Wall time the figures cover: the publishing time, plus for `e2e`
    /// and `rate` the time the consumers took to finish the backlog.
    pub elapsed_s: f64,
    /// `messages / elapsed_s`.
    pub throughput_msgs_per_s: f64,
    /// What the latency figures measure.
    pub latency: &'static str,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest latency seen.
    pub max_ms: f64,
    /// Mean latency.
    pub mean_ms: f64,
    /// Peak resident memory of this process (`VmHWM`), if readable.
    pub peak_rss_bytes: Option<u64>,
    /// CPU time (user + system) this process spent during the run.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds / elapsed_s`, in percent of one core.
    pub cpu_percent_of_one_core: Option<f64>,
    /// Concurrent publishing tasks.
    pub publishers: usize,
    /// Messages per publish call.
    pub pipeline: usize,
    /// Consumers in the group.
    pub consumers: usize,
    /// Handler concurrency of each consumer.
    pub concurrency: usize,
    /// In-flight cap of each consumer.
    pub max_in_flight: usize,
    /// Offered load, for `rate`.
    pub offered_rate_msgs_per_s: Option<u64>,
    /// `rate`: 99th percentile of how late a publish started against its
    /// schedule, in milliseconds (the load generator's own accuracy).
    pub send_lag_p99_ms: Option<f64>,
    /// Entries the consumers acked.
    pub acked: u64,
    /// Messages published but not handled when the run ended; anything
    /// but 0 is a failure.
    pub unhandled: u64,
}

impl BenchReport {
    /// True when nothing published went unhandled.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.unhandled == 0 && (self.consumers == 0 || self.acked == self.messages)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut setup = format!(
            "{} publisher(s) x pipeline {}",
            self.publishers, self.pipeline
        );
        if let Some(rate) = self.offered_rate_msgs_per_s {
            setup = format!("offered {rate} msg/s, one publish each");
        }
        if self.consumers > 0 {
            setup.push_str(&format!(
                ", {} consumer(s) x concurrency {} (max in flight {})",
                self.consumers, self.concurrency, self.max_in_flight
            ));
        }
        writeln!(
            f,
            "orion-bus bench {}: {}, {}-byte messages ({} JSON), {setup}",
            self.scenario, self.contract, self.payload_bytes, self.json_style
        )?;
        let row = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "  {k:<24} {v}");
        row(f, "messages", self.messages.to_string())?;
        row(f, "elapsed", format!("{:.2} s", self.elapsed_s))?;
        row(
            f,
            "throughput",
            format!("{:.0} msg/s", self.throughput_msgs_per_s),
        )?;
        row(f, "latency", self.latency.to_owned())?;
        row(
            f,
            "  p50 / p95 / p99",
            format!(
                "{:.3} / {:.3} / {:.3} ms",
                self.p50_ms, self.p95_ms, self.p99_ms
            ),
        )?;
        row(
            f,
            "  p99.9 / max / mean",
            format!(
                "{:.3} / {:.3} / {:.3} ms",
                self.p999_ms, self.max_ms, self.mean_ms
            ),
        )?;
        if let Some(lag) = self.send_lag_p99_ms {
            row(f, "send lag p99", format!("{lag:.3} ms"))?;
        }
        row(
            f,
            "peak RSS",
            self.peak_rss_bytes.map_or("unknown".to_owned(), |b| {
                format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
            }),
        )?;
        row(
            f,
            "CPU time",
            match (self.cpu_seconds, self.cpu_percent_of_one_core) {
                (Some(s), Some(p)) => format!("{s:.2} s ({p:.1}% of one core)"),
                _ => "unknown".to_owned(),
            },
        )?;
        if self.consumers > 0 {
            row(
                f,
                "acked / unhandled",
                format!("{} / {}", self.acked, self.unhandled),
            )?;
        }
        Ok(())
    }
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
#[must_use]
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_time(&stat)
}

/// Parses `utime` and `stime` (fields 14 and 15, in clock ticks of
/// 1/100 s, Linux's fixed `USER_HZ`) out of a `/proc/<pid>/stat` line.
fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from after its last ')'. Field 3 is the first one there.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
#[must_use]
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| BenchError::Task(e.to_string()))
}

fn record(h: &mut Histogram<u64>, latency: Duration, count: u64) {
    let ns = u64::try_from(latency.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_NS);
    // Cannot fail: the value is clamped into the histogram's range.
    let _ = h.record_n(ns, count);
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Builds messages of one contract, each carrying a timestamp and
/// padded to one encoded size.
#[derive(Debug)]
struct Messages {
    contract: String,
    /// Where the timestamp goes.
    stamp: Stamp,
    /// `(sample, padding)` pairs, cycled through.
    templates: Vec<(Value, String)>,
    payload_bytes: usize,
}

impl Messages {
    /// Messages of `contract`: from `sample` if given, else the example
    /// contract's own samples.
    fn new(
        contract: &Contract,
        sample: Option<&Value>,
        payload_bytes: Option<usize>,
        style: JsonStyle,
    ) -> Result<Self, BenchError> {
        let name = contract.name();
        let samples: Vec<Value> = match sample {
            Some(s) => {
                if let Err(v) = contract.validate(s) {
                    return Err(BenchError::Options(format!(
                        "the sample is not a valid {name} message: {v}"
                    )));
                }
                vec![s.clone(); TEMPLATES as usize]
            }
            None => (0..TEMPLATES)
                .map(|n| crate::examples::sample(name, n))
                .collect::<Option<_>>()
                .ok_or_else(|| BenchError::Options(format!("no sample for {name}")))?,
        };
        let stamp = Stamp::find(contract, &samples[0]).ok_or_else(|| {
            BenchError::Options(format!(
                "no string field of the {name} sample can carry the benchmark's timestamp \
                 (one that still validates with `bench-<digits>-<padding>` in it)"
            ))
        })?;
        let mut templates = Vec::new();
        let mut natural = Vec::new();
        for sample in samples {
            let size = encoded_len(&stamp.write(sample.clone(), 0, ""), style)?;
            natural.push(size);
            templates.push((sample, String::new()));
        }
        let largest = natural.iter().copied().max().unwrap_or(0);
        let target = payload_bytes.unwrap_or(largest);
        if target < largest {
            return Err(BenchError::Options(format!(
                "{name} messages with a timestamp take at least {largest} bytes; --payload-bytes {target} is too small"
            )));
        }
        for ((sample, pad), size) in templates.iter_mut().zip(natural) {
            *pad = "x".repeat(target - size);
            let check = encoded_len(&stamp.write(sample.clone(), 0, pad), style)?;
            if check != target {
                return Err(BenchError::Options(format!(
                    "cannot pad {name} messages to {target} bytes (got {check})"
                )));
            }
        }
        // The padded messages must still be valid (e.g. alert summaries
        // have a length limit).
        let (sample, pad) = &templates[0];
        if let Err(v) = contract.validate(&stamp.write(sample.clone(), 0, pad)) {
            return Err(BenchError::Options(format!(
                "{name} messages of {target} bytes break the contract: {v}"
            )));
        }
        Ok(Self {
            contract: name.to_owned(),
            stamp,
            templates,
            payload_bytes: target,
        })
    }

    /// Message `n`, stamped with `ns`.
    fn make(&self, n: u64, ns: u64) -> Value {
        let (sample, pad) = &self.templates[(n % TEMPLATES) as usize];
        self.stamp.write(sample.clone(), ns, pad)
    }
}

fn encoded_len(message: &Value, style: JsonStyle) -> Result<usize, BenchError> {
    wire::encode(message, style)
        .map(|b| b.len())
        .map_err(|e| BenchError::Task(e.to_string()))
}

/// Where a message carries the benchmark's timestamp: a string field,
/// `{prefix}{digits}{sep}{padding}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    /// JSON Pointer to the string.
    pointer: String,
    prefix: &'static str,
    sep: &'static str,
    /// `sensor.reading`: the field is `tags.bench_t`, in a `tags` object
    /// made for it (with the padding beside it).
    tags: bool,
}

impl Stamp {
    /// The known place for the example contracts; for any other, the
    /// first string field of `sample` that still validates when it holds
    /// a timestamp and some padding.
    fn find(contract: &Contract, sample: &Value) -> Option<Self> {
        let field = |pointer: &str, prefix, sep| Self {
            pointer: pointer.to_owned(),
            prefix,
            sep,
            tags: false,
        };
        match contract.name() {
            "sensor.reading" => {
                return Some(Self {
                    pointer: "/tags/bench_t".to_owned(),
                    prefix: "",
                    sep: "",
                    tags: true,
                });
            }
            "alert" => return Some(field("/summary", "bench t=", " ")),
            "command" => return Some(field("/target", "bench-", "-")),
            _ => {}
        }
        let mut pointers = Vec::new();
        string_pointers(sample, String::new(), &mut pointers);
        pointers.into_iter().find_map(|pointer| {
            let stamp = field(&pointer, "bench-", "-");
            let probe = stamp.write(sample.clone(), u64::MAX, &"x".repeat(32));
            contract.is_valid(&probe).then_some(stamp)
        })
    }

    /// Writes the timestamp (and padding) into `message`.
    fn write(&self, mut message: Value, ns: u64, pad: &str) -> Value {
        let ts = format!("{ns:0STAMP_WIDTH$}");
        if self.tags {
            message["tags"] = json!({"room": "lab", "bench_t": ts, "pad": pad});
        } else if let Some(slot) = message.pointer_mut(&self.pointer) {
            *slot = Value::String(format!("{}{ts}{}{pad}", self.prefix, self.sep));
        }
        message
    }

    /// Overwrites the timestamp of a message made by [`Self::write`] in
    /// place, without allocating: the publishers re-use their messages, so
    /// the load generator's own cost stays out of the figures.
    fn rewrite(&self, message: &mut Value, ns: u64) {
        let Some(Value::String(field)) = message.pointer_mut(&self.pointer) else {
            return;
        };
        let offset = self.prefix.len();
        let mut digits = [b'0'; STAMP_WIDTH];
        let mut rest = ns;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        if let (Ok(text), Some(_)) = (
            std::str::from_utf8(&digits),
            field.get(offset..offset + STAMP_WIDTH),
        ) {
            field.replace_range(offset..offset + STAMP_WIDTH, text);
        }
    }

    /// Reads back the timestamp [`Self::write`] wrote.
    fn read(&self, message: &Value) -> Option<u64> {
        let digits = message
            .pointer(&self.pointer)?
            .as_str()?
            .strip_prefix(self.prefix)?;
        digits.get(..STAMP_WIDTH)?.parse().ok()
    }
}

/// JSON Pointers of every string in `value`, in document order.
fn string_pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match value {
        Value::String(_) => out.push(at),
        Value::Object(map) => {
            for (k, v) in map {
                string_pointers(v, format!("{at}/{}", escape(k)), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                string_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// State shared by the publishers, the handler and the progress task.
#[derive(Debug)]
struct Shared {
    origin: Instant,
    stamp: Stamp,
    published: AtomicU64,
    handled: AtomicU64,
    unstamped: AtomicU64,
    latencies: Mutex<Histogram<u64>>,
    /// `e2e`: permits for messages that may be published and not handled.
    window: Semaphore,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs one bench against `redis`, with `options.contract` from
/// `registry` (the example contracts, or a user's set with a sample
/// message in `options.sample`). `progress` is called about once a
/// second; `shutdown` stops publishing early (what was measured is still
/// reported).
///
/// # Errors
/// See [`BenchError`].
pub async fn run(
    redis: RedisSettings,
    bus_options: BusOptions,
    registry: ContractRegistry,
    options: BenchOptions,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
    shutdown: CancellationToken,
) -> Result<BenchReport, BenchError> {
    options.check(&bus_options)?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let prefix = format!("orion-bench-{run_id}");
    let json_style = bus_options.json_style;
    let messages = Arc::new(Messages::new(
        registry.get(&options.contract)?,
        options.sample.as_ref(),
        options.payload_bytes,
        json_style,
    )?);
    // Only now, so that bad options are reported without a Redis.
    let bus = Bus::connect(redis, registry, bus_options.prefix(prefix), Metrics::new()).await?;
    let window = match bus.options().max_len {
        0 => E2E_WINDOW,
        cap => E2E_WINDOW.min(usize::try_from(cap / 2).unwrap_or(E2E_WINDOW)),
    }
    .max(options.pipeline() * options.publishers());
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        stamp: messages.stamp.clone(),
        published: AtomicU64::new(0),
        handled: AtomicU64::new(0),
        unstamped: AtomicU64::new(0),
        latencies: Mutex::new(new_histogram()?),
        window: Semaphore::new(window),
    });

    // On a runtime worker, not wherever the caller polls us (`block_on`
    // runs its future on the main thread, and every hand-over between it
    // and the workers would cost a thread wake-up the bus does not cause).
    let task = {
        let bus = bus.clone();
        let contract = options.contract.clone();
        tokio::spawn(async move {
            let result =
                run_scenario(&bus, &options, &messages, &shared, progress, &shutdown).await;
            cleanup(&bus, &contract).await;
            result
        })
    };
    let mut report = task.await.map_err(|e| BenchError::Task(e.to_string()))??;
    report.json_style = match json_style {
        JsonStyle::Compact => "compact",
        _ => "python",
    };
    Ok(report)
}

async fn run_scenario(
    bus: &Bus,
    options: &BenchOptions,
    messages: &Arc<Messages>,
    shared: &Arc<Shared>,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
    shutdown: &CancellationToken,
) -> Result<BenchReport, BenchError> {
    // Consumers first, their group starting at `$`: only this run counts.
    let stop_consumers = CancellationToken::new();
    let mut consumers = JoinSet::new();
    let group = "bench";
    for i in 0..options.consumers() {
        let mut opts = options.consumer.clone();
        opts.group = group.to_owned();
        opts.consumer = format!("bench-{i}");
        opts.contracts = vec![options.contract.clone()];
        opts.start_id = StartId::New;
        opts.limit = None;
        let consumer = Consumer::new(bus, opts).await?;
        let handler = handler(shared.clone());
        consumers.spawn(consumer.run(handler, stop_consumers.clone()));
    }

    let started = Instant::now();
    let cpu_before = process_cpu_time();
    let deadline = tokio::time::Instant::from_std(started) + options.duration;
    let stop_publishing = shutdown.child_token();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = tokio::spawn(progress_task(
        options.scenario,
        options.consumers(),
        options.duration,
        started,
        shared.clone(),
        draining.clone(),
        progress.clone(),
    ));
    let stop_at_deadline = {
        let stop = stop_publishing.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            stop.cancel();
        })
    };

    let published = match options.scenario {
        Scenario::Publish | Scenario::E2e => {
            publish_flat_out(bus, options, messages, shared, &stop_publishing).await
        }
        Scenario::Rate => publish_at_rate(bus, options, messages, shared, &stop_publishing).await,
    };
    stop_at_deadline.abort();
    let (published, send_lag) = match published {
        Ok(p) => p,
        Err(e) => {
            ticker.abort();
            stop_consumers.cancel();
            while consumers.join_next().await.is_some() {}
            return Err(e);
        }
    };
    let mut elapsed = started.elapsed();
    // A last line when publishing stops, however short the run.
    progress(&Progress {
        scenario: options.scenario,
        elapsed,
        duration: options.duration,
        published,
        handled: shared.handled.load(Ordering::Acquire),
        draining: options.consumers() > 0,
        consuming: options.consumers() > 0,
    });

    // Let the consumers finish what was published.
    let mut unhandled = 0;
    if options.consumers() > 0 {
        draining.store(true, Ordering::Release);
        let give_up = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let handled = shared.handled.load(Ordering::Acquire);
            if handled >= published {
                break;
            }
            if Instant::now() >= give_up || shutdown.is_cancelled() {
                unhandled = published - handled;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        elapsed = started.elapsed();
    }
    let cpu = cpu_before.and_then(|before| Some(process_cpu_time()?.saturating_sub(before)));
    ticker.abort();
    stop_consumers.cancel();
    let mut acked = 0;
    let mut concurrency = 0;
    while let Some(done) = consumers.join_next().await {
        match done {
            Ok(Ok(report)) => acked += report.acked,
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(BenchError::Task(e.to_string())),
        }
    }
    if options.consumers() > 0 {
        concurrency = options.consumer.concurrency;
    }
    let unstamped = shared.unstamped.load(Ordering::Acquire);
    if unstamped > 0 {
        return Err(BenchError::Task(format!(
            "{unstamped} handled message(s) carried no readable timestamp"
        )));
    }

    let messages_counted = if options.consumers() > 0 {
        shared.handled.load(Ordering::Acquire)
    } else {
        published
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let h = shared
        .latencies
        .lock()
        .map_err(|_| BenchError::Task("latency histogram lock poisoned".to_owned()))?
        .clone();
    Ok(BenchReport {
        scenario: options.scenario,
        contract: options.contract.clone(),
        payload_bytes: messages.payload_bytes,
        json_style: "python",
        messages: messages_counted,
        published,
        elapsed_s: secs,
        throughput_msgs_per_s: messages_counted as f64 / secs,
        latency: match options.consumers() {
            0 => "duration of one publish call (validate, encode, XADD round trip), per message",
            _ => {
                "publish-to-handler: timestamp taken before publish (validate, encode, XADD), \
                 read when the handler is called (after XREADGROUP, decode, validate)"
            }
        },
        p50_ms: ms(h.value_at_quantile(0.5)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1e6,
        peak_rss_bytes: peak_rss_bytes(),
        cpu_seconds: cpu.map(|c| c.as_secs_f64()),
        cpu_percent_of_one_core: cpu.map(|c| c.as_secs_f64() / secs * 100.0),
        publishers: options.publishers(),
        pipeline: options.pipeline(),
        consumers: options.consumers(),
        concurrency,
        max_in_flight: if options.consumers() > 0 {
            options.consumer.max_in_flight
        } else {
            0
        },
        offered_rate_msgs_per_s: (options.scenario == Scenario::Rate).then_some(options.rate),
        send_lag_p99_ms: send_lag.map(|h| ms(h.value_at_quantile(0.99))),
        acked,
        unhandled,
    })
}

/// The handler every consumer runs: reads the timestamp, records the
/// latency, and opens the `e2e` window by one.
fn handler(
    shared: Arc<Shared>,
) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    move |d: Delivery| {
        let now = shared.now_ns();
        match shared.stamp.read(d.message()) {
            Some(sent) => {
                let latency = Duration::from_nanos(now.saturating_sub(sent));
                if let Ok(mut h) = shared.latencies.lock() {
                    record(&mut h, latency, 1);
                }
            }
            None => {
                shared.unstamped.fetch_add(1, Ordering::AcqRel);
            }
        }
        shared.handled.fetch_add(1, Ordering::AcqRel);
        shared.window.add_permits(1);
        std::future::ready(Ok(()))
    }
}

/// `publish` and `e2e`: `publishers` tasks publishing `pipeline` messages
/// per call until `stop`. Returns the number published.
async fn publish_flat_out(
    bus: &Bus,
    options: &BenchOptions,
    messages: &Arc<Messages>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<(u64, Option<Histogram<u64>>), BenchError> {
    let pipeline = options.pipeline();
    let windowed = options.scenario == Scenario::E2e;
    let mut tasks = JoinSet::new();
    let sequence = Arc::new(AtomicU64::new(0));
    for _ in 0..options.publishers() {
        let bus = bus.clone();
        let messages = messages.clone();
        let shared = shared.clone();
        let stop = stop.clone();
        let sequence = sequence.clone();
        tasks.spawn(async move {
            // Only `publish` records call latencies; `e2e` records
            // publish-to-handler in the handler.
            let mut calls = new_histogram()?;
            let batch_permits = u32::try_from(pipeline).unwrap_or(u32::MAX);
            // Each task re-uses its messages, only re-stamping them.
            let first = sequence.fetch_add(pipeline as u64, Ordering::AcqRel);
            let mut batch: Vec<Value> = (first..first + pipeline as u64)
                .map(|n| messages.make(n, 0))
                .collect();
            while !stop.is_cancelled() {
                if windowed {
                    let permit = tokio::select! {
                        () = stop.cancelled() => break,
                        p = shared.window.acquire_many(batch_permits) => p,
                    };
                    match permit {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                }
                let start = Instant::now();
                let ns = shared.now_ns();
                for message in &mut batch {
                    messages.stamp.rewrite(message, ns);
                }
                if let [message] = batch.as_slice() {
                    bus.publish(&messages.contract, message).await?;
                } else {
                    bus.publish_batch(&messages.contract, &batch).await?;
                }
                if !windowed {
                    record(&mut calls, start.elapsed(), pipeline as u64);
                }
                shared
                    .published
                    .fetch_add(pipeline as u64, Ordering::AcqRel);
            }
            Ok::<_, BenchError>(calls)
        });
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done
            .map_err(|e| BenchError::Task(e.to_string()))
            .and_then(|r| r);
        match outcome {
            Ok(calls) => {
                if !windowed && let Ok(mut h) = shared.latencies.lock() {
                    // Same bounds: cannot fail.
                    let _ = h.add(&calls);
                }
            }
            Err(e) => {
                stop.cancel();
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((shared.published.load(Ordering::Acquire), None)),
    }
}

/// `rate`: one publish per message on a fixed schedule; a slow publish
/// does not delay the next one. Returns the number published and the
/// histogram of how late each publish started.
async fn publish_at_rate(
    bus: &Bus,
    options: &BenchOptions,
    messages: &Arc<Messages>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<(u64, Option<Histogram<u64>>), BenchError> {
    let interval_ns = 1e9 / options.rate as f64;
    // Without consumers, the latency is that of the publish call.
    let record_calls = options.consumers() == 0;
    let start = tokio::time::Instant::now();
    let mut lag = new_histogram()?;
    let mut in_flight = JoinSet::new();
    let mut first_error = None;
    let mut n: u64 = 0;
    loop {
        let due = start + Duration::from_nanos((n as f64 * interval_ns) as u64);
        if tokio::time::Instant::now() < due {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        } else if stop.is_cancelled() {
            break;
        }
        record(&mut lag, tokio::time::Instant::now() - due, 1);
        // Stamped here, so the time to a task's first poll counts too.
        let ns = shared.now_ns();
        let bus = bus.clone();
        let messages = messages.clone();
        let shared = shared.clone();
        in_flight.spawn(async move {
            let message = messages.make(n, ns);
            let start = Instant::now();
            bus.publish(&messages.contract, &message).await?;
            if record_calls && let Ok(mut h) = shared.latencies.lock() {
                record(&mut h, start.elapsed(), 1);
            }
            shared.published.fetch_add(1, Ordering::AcqRel);
            Ok::<(), BenchError>(())
        });
        n += 1;
        while let Some(done) = in_flight.try_join_next() {
            if let Err(e) = done
                .map_err(|e| BenchError::Task(e.to_string()))
                .and_then(|r| r)
            {
                first_error.get_or_insert(e);
                stop.cancel();
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        if let Err(e) = done
            .map_err(|e| BenchError::Task(e.to_string()))
            .and_then(|r| r)
        {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((shared.published.load(Ordering::Acquire), Some(lag))),
    }
}

async fn progress_task(
    scenario: Scenario,
    consumers: usize,
    duration: Duration,
    started: Instant,
    shared: Arc<Shared>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
) {
    let consuming = consumers > 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        progress(&Progress {
            scenario,
            elapsed: started.elapsed(),
            duration,
            published: shared.published.load(Ordering::Acquire),
            handled: shared.handled.load(Ordering::Acquire),
            draining: draining.load(Ordering::Acquire),
            consuming,
        });
    }
}

/// Deletes the run's stream, its dead-letter stream and failure records.
async fn cleanup(bus: &Bus, contract: &str) {
    let Ok(stream) = bus.stream_for(contract) else {
        return;
    };
    let mut conn = bus.connection();
    let result = redis::cmd("DEL")
        .arg(&*stream)
        .arg(wire::dead_letter_stream(&stream))
        .arg(format!("{stream}:failures:bench"))
        .query_async::<()>(&mut conn)
        .await;
    if let Err(e) = result {
        tracing::warn!(stream = %stream, error = %e, "could not delete the bench stream");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::ContractOptions;

    #[test]
    fn scenarios_parse() {
        for s in ["publish", "e2e", "rate"] {
            assert_eq!(s.parse::<Scenario>().map(Scenario::name), Ok(s));
        }
        assert!("load".parse::<Scenario>().is_err());
    }

    #[test]
    fn proc_stat_cpu_time() {
        let line = "1234 (orion (bus) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 200 300";
        assert_eq!(parse_cpu_time(line), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu_time("garbage"), None);
        assert!(process_cpu_time().is_some());
    }

    #[test]
    fn proc_status_peak_rss() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn messages_are_padded_stamped_and_valid() {
        let registry = crate::examples::registry(ContractOptions::default()).expect("compiles");
        for name in ["sensor.reading", "alert", "command"] {
            let contract = registry.get(name).expect("known");
            for style in [JsonStyle::Python, JsonStyle::Compact] {
                let m = Messages::new(contract, None, Some(400), style).expect("400 bytes fit");
                for n in 0..TEMPLATES {
                    let ns = 1_234_567_890 + n;
                    let msg = m.make(n, ns);
                    assert_eq!(encoded_len(&msg, style).expect("encodes"), 400, "{name}");
                    assert_eq!(m.stamp.read(&msg), Some(ns), "{name}");
                    let mut again = msg.clone();
                    m.stamp.rewrite(&mut again, u64::MAX);
                    assert_eq!(m.stamp.read(&again), Some(u64::MAX), "{name}");
                    assert_eq!(encoded_len(&again, style).expect("encodes"), 400);
                    contract
                        .validate(&msg)
                        .unwrap_or_else(|v| panic!("{name}: {v}"));
                }
            }
        }
        let reading = registry.get("sensor.reading").expect("known");
        assert!(Messages::new(reading, None, Some(10), JsonStyle::Python).is_err());
        // Alert summaries are limited to 500 characters.
        let alert = registry.get("alert").expect("known");
        assert!(Messages::new(alert, None, Some(4000), JsonStyle::Python).is_err());
    }

    #[test]
    fn any_contract_with_a_sample_gets_its_timestamp_in_a_free_string() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("note.schema.json"),
            r#"{"type": "object", "additionalProperties": false,
                "required": ["version", "id", "text"],
                "properties": {"version": {"const": "1.0"},
                               "id": {"type": "string", "format": "uuid"},
                               "text": {"type": "string", "minLength": 1}}}"#,
        )
        .expect("write");
        let registry =
            ContractRegistry::load_dir(dir.path(), ContractOptions::default()).expect("loads");
        let note = registry.get("note").expect("known");
        let sample =
            json!({"version": "1.0", "id": "550e8400-e29b-41d4-a716-446655440000", "text": "hi"});
        let m = Messages::new(note, Some(&sample), Some(300), JsonStyle::Python).expect("fits");
        // `version` is a const and `id` a uuid: only `text` can carry it.
        assert_eq!(m.stamp.pointer, "/text");
        let msg = m.make(3, 42);
        assert_eq!(m.stamp.read(&msg), Some(42));
        assert_eq!(encoded_len(&msg, JsonStyle::Python).expect("encodes"), 300);
        note.validate(&msg).expect("valid");
        // A sample that breaks the contract is refused, with the reason.
        let err = Messages::new(
            note,
            Some(&json!({"version": "1.0"})),
            None,
            JsonStyle::Python,
        )
        .expect_err("invalid sample")
        .to_string();
        assert!(err.contains("not a valid note message"), "{err}");
        // No free string at all: said so.
        let bare = json!({"text": "hi"});
        std::fs::write(
            dir.path().join("note.schema.json"),
            r#"{"type": "object", "required": ["text"],
                "properties": {"text": {"enum": ["hi"]}}}"#,
        )
        .expect("write");
        let registry =
            ContractRegistry::load_dir(dir.path(), ContractOptions::default()).expect("loads");
        let err = Messages::new(
            registry.get("note").expect("known"),
            Some(&bare),
            None,
            JsonStyle::Python,
        )
        .expect_err("nowhere to stamp")
        .to_string();
        assert!(err.contains("can carry the benchmark's timestamp"), "{err}");
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
