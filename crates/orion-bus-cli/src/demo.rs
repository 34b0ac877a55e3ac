//! The end-to-end demo behind `orion-bus demo`.
//!
//! Owns one scripted run of the bus on the example contracts: create a
//! consumer group, publish a few thousand valid messages (single and
//! pipelined), try some invalid publishes (all rejected, nothing written),
//! slip in poison entries with raw commands the way a misbehaving client
//! would, consume everything with one multi-contract consumer, and report
//! what was published, rejected, consumed, dead-lettered and left pending.
//!
//! The demo uses its own stream prefix (`orion-demo`) and a fresh group,
//! so running it against a real Redis never touches ORION's streams.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use orion_bus::{
    Bus, ConsumeError, Consumer, ConsumerOptions, Delivery, PublishError, StartId, wire,
};
use orion_bus_examples as examples;

/// The stream prefix the demo writes under.
pub const DEMO_PREFIX: &str = "orion-demo";

/// The contracts the demo uses (the example set).
pub const DEMO_CONTRACTS: [&str; 3] = ["sensor.reading", "alert", "command"];

/// What the demo did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DemoReport {
    /// Messages published, by contract.
    pub published: BTreeMap<String, u64>,
    /// Invalid publishes refused, with the error each one got.
    pub rejected: Vec<String>,
    /// Poison entries written with raw commands.
    pub poison_written: u64,
    /// Messages delivered to the handler, by contract.
    pub consumed: BTreeMap<String, u64>,
    /// Dead-letter entries, by stream and reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Entries still pending in the demo group afterwards.
    pub pending: u64,
    /// Wall time of the consume phase.
    pub consume_time: Duration,
    /// Wall time of the publish phase.
    pub publish_time: Duration,
}

impl DemoReport {
    /// Total valid messages published.
    #[must_use]
    pub fn total_published(&self) -> u64 {
        self.published.values().sum()
    }

    /// Total messages consumed.
    #[must_use]
    pub fn total_consumed(&self) -> u64 {
        self.consumed.values().sum()
    }

    /// Total dead-letter entries.
    #[must_use]
    pub fn total_dead_lettered(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// True when every valid message was consumed, every poison entry was
    /// dead-lettered and nothing is left pending.
    #[must_use]
    pub fn is_consistent(&self) -> bool {
        self.total_published() == self.total_consumed()
            && self.total_dead_lettered() == self.poison_written
            && self.pending == 0
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        writeln!(f, "published (validated, then XADD):")?;
        for (c, n) in &self.published {
            writeln!(f, "  {c:<16} {n:>7}")?;
        }
        writeln!(
            f,
            "  {:<16} {:>7}  in {:.0?} ({:.0} msg/s)",
            "total",
            self.total_published(),
            self.publish_time,
            rate(self.total_published(), self.publish_time)
        )?;
        writeln!(
            f,
            "rejected at publish (nothing written): {}",
            self.rejected.len()
        )?;
        for r in &self.rejected {
            writeln!(f, "  - {r}")?;
        }
        writeln!(
            f,
            "poison entries written by a raw client: {}",
            self.poison_written
        )?;
        writeln!(f, "consumed (validated, handled, acked):")?;
        for (c, n) in &self.consumed {
            writeln!(f, "  {c:<16} {n:>7}")?;
        }
        writeln!(
            f,
            "  {:<16} {:>7}  in {:.0?} ({:.0} msg/s)",
            "total",
            self.total_consumed(),
            self.consume_time,
            rate(self.total_consumed(), self.consume_time)
        )?;
        writeln!(f, "dead-lettered (copied to <stream>:dlq, then acked):")?;
        for (k, n) in &self.dead_lettered {
            writeln!(f, "  {k:<40} {n:>3}")?;
        }
        writeln!(f, "left pending: {}", self.pending)?;
        write!(
            f,
            "{}",
            if self.is_consistent() {
                "OK: every valid message consumed once, every poison entry dead-lettered, nothing lost."
            } else {
                "MISMATCH: see the figures above."
            }
        )
    }
}

/// Errors the demo can hit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Publishing a valid message failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The consumer failed.
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    /// A raw Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An invalid message was accepted, which must never happen.
    #[error("an invalid message was accepted: {0}")]
    AcceptedInvalid(String),
}

/// Runs the demo on `bus` (whose prefix should be [`DEMO_PREFIX`]) with
/// `messages` valid messages spread over the example contracts.
///
/// # Errors
/// See [`DemoError`].
pub async fn run(
    bus: &Bus,
    messages: u64,
    shutdown: CancellationToken,
) -> Result<DemoReport, DemoError> {
    let mut report = DemoReport::default();
    let group = format!(
        "demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    // Group first, starting at `$`, so only this run's entries count.
    let consumer = Consumer::new(
        bus,
        ConsumerOptions::new(&group, "demo-1")
            .contracts(DEMO_CONTRACTS)
            .start_id(StartId::New),
    )
    .await?;

    let started = Instant::now();
    let mut n = 0u64;
    let mut poison_done = false;
    while n < messages {
        let contract = DEMO_CONTRACTS[(n / 100 % 3) as usize];
        let chunk = (messages - n).min(100);
        let batch: Vec<Value> = (n..n + chunk)
            .filter_map(|i| examples::sample(contract, i))
            .collect();
        if chunk == 1 {
            bus.publish(contract, &batch[0]).await?;
        } else {
            bus.publish_batch(contract, &batch).await?;
        }
        *report.published.entry(contract.to_owned()).or_default() += chunk;
        n += chunk;
        if !poison_done && n >= messages / 2 {
            report.poison_written = write_poison(bus).await?;
            poison_done = true;
        }
    }
    if !poison_done {
        report.poison_written = write_poison(bus).await?;
    }
    report.publish_time = started.elapsed();
    report.rejected = try_invalid(bus).await?;

    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let seen = counts.clone();
    let started = Instant::now();
    // Done when every valid message was handled and every poison entry
    // dead-lettered (a `limit` would stop before poison read last), or
    // after a minute at most: the report then shows what is missing.
    let done = shutdown.child_token();
    let watcher = {
        let (done, counts, bus, group) = (done.clone(), counts.clone(), bus.clone(), group.clone());
        let poison = report.poison_written;
        tokio::spawn(async move {
            let deadline = Instant::now() + std::time::Duration::from_secs(60);
            while Instant::now() < deadline && !done.is_cancelled() {
                let consumed: u64 = counts.lock().map_or(0, |m| m.values().sum());
                if consumed >= messages && dead_letters(&bus, &group).await >= poison {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            done.cancel();
        })
    };
    let shutdown = done;
    consumer
        .run(
            move |d: Delivery| {
                let seen = seen.clone();
                async move {
                    if let Ok(mut m) = seen.lock() {
                        *m.entry(d.contract().to_owned()).or_default() += 1;
                    }
                    Ok(())
                }
            },
            shutdown,
        )
        .await?;
    report.consume_time = started.elapsed();
    let _ = watcher.await;
    report.consumed = counts.lock().map(|m| m.clone()).unwrap_or_default();

    let mut conn = bus.connection();
    for contract in DEMO_CONTRACTS {
        let stream = bus.stream_for(contract).map_err(PublishError::from)?;
        let dlq = wire::dead_letter_stream(&stream);
        let raw: redis::Value = redis::cmd("XRANGE")
            .arg(&dlq)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await?;
        for entry in wire::parse_entries(raw).unwrap_or_default() {
            let field = |name: &[u8]| {
                entry
                    .fields
                    .iter()
                    .flatten()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            // Only this run's letters (an earlier run may have left some).
            if field(b"group") != group {
                continue;
            }
            let reason = field(b"reason");
            *report
                .dead_lettered
                .entry(format!("{dlq} {reason}"))
                .or_default() += 1;
        }
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&*stream)
            .arg(&group)
            .query_async(&mut conn)
            .await?;
        if let redis::Value::Array(parts) = pending
            && let Some(redis::Value::Int(count)) = parts.first()
        {
            report.pending += u64::try_from(*count).unwrap_or(0);
        }
    }
    Ok(report)
}

/// This run's entries (those `group` wrote) in the demo streams'
/// dead-letter streams.
async fn dead_letters(bus: &Bus, group: &str) -> u64 {
    let mut conn = bus.connection();
    let mut total = 0;
    for contract in DEMO_CONTRACTS {
        let Ok(stream) = bus.stream_for(contract) else {
            continue;
        };
        let raw: redis::Value = redis::cmd("XRANGE")
            .arg(wire::dead_letter_stream(&stream))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        total += wire::parse_entries(raw)
            .unwrap_or_default()
            .iter()
            .filter(|e| {
                e.fields
                    .iter()
                    .flatten()
                    .any(|(k, v)| k == b"group" && v == group.as_bytes())
            })
            .count() as u64;
    }
    total
}

/// Writes the kinds of garbage other clients can leave in a stream.
async fn write_poison(bus: &Bus) -> Result<u64, DemoError> {
    let mut conn = bus.connection();
    let readings = bus
        .stream_for("sensor.reading")
        .map_err(PublishError::from)?;
    let alerts = bus.stream_for("alert").map_err(PublishError::from)?;
    let entries: [(&str, &[u8], &[u8]); 5] = [
        (&readings, b"data", b"{\"version\": \"1.0\", truncated"),
        (&readings, b"payload", b"{}"),
        (&alerts, b"data", b"\xff\xfe\x00garbage"),
        (
            &alerts,
            b"data",
            br#"{"version": "1.0", "alert_id": "not-a-uuid"}"#,
        ),
        (&alerts, b"data", b"[1, 2, 3]"),
    ];
    for (stream, field, value) in entries {
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async::<String>(&mut conn)
            .await?;
    }
    Ok(entries.len() as u64)
}

/// Tries one invalid publish per kind of mistake; every one must fail.
async fn try_invalid(bus: &Bus) -> Result<Vec<String>, DemoError> {
    let mut missing = examples::sensor_reading(1);
    if let Some(m) = missing.as_object_mut() {
        m.remove("value");
    }
    let mut extra = examples::alert(1);
    extra["escalate"] = json!(true);
    let mut bad_enum = examples::command(1);
    bad_enum["action"] = json!("reboot-everything");
    let mut bad_uuid = examples::sensor_reading(2);
    bad_uuid["reading_id"] = json!("12345");
    let mut oversized = examples::sensor_reading(3);
    oversized["tags"] = json!({"blob": "x".repeat(2 * bus.options().max_message_bytes)});
    let attempts = [
        ("sensor.reading", missing),
        ("alert", extra),
        ("command", bad_enum),
        ("sensor.reading", bad_uuid),
        ("sensor.reading", oversized),
        ("no.such.contract", json!({})),
    ];
    let mut out = Vec::new();
    for (contract, msg) in attempts {
        match bus.publish(contract, &msg).await {
            Ok(id) => return Err(DemoError::AcceptedInvalid(format!("{contract} as {id}"))),
            Err(e) => out.push(truncate(e.to_string(), 160)),
        }
    }
    Ok(out)
}

/// Cuts `s` to at most `max` bytes (on a char boundary), marking the cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
