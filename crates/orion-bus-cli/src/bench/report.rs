//! What a bench run reports: [`Progress`] about once a second and the
//! final [`BenchReport`], each with its text form, and the latency
//! histograms they are computed from.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{BenchError, Scenario};

/// Largest latency recorded exactly; longer ones are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

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

pub(super) fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| BenchError::Task(e.to_string()))
}

/// Records `count` messages of `latency`, clamped into the histogram's range.
pub(super) fn record(h: &mut Histogram<u64>, latency: Duration, count: u64) {
    let ns = u64::try_from(latency.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_NS);
    // Cannot fail: the value is clamped into the histogram's range.
    let _ = h.record_n(ns, count);
}

/// Nanoseconds as milliseconds.
pub(super) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
