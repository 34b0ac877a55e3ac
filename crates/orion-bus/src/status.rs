//! The operator's view of the bus: streams, groups, consumers and dead
//! letters, read from `XINFO`, and moving a group's position (`replay`).
//!
//! Owns [`collect`] (used by `orion-bus status` and by `/metrics`, which
//! refreshes the per-group and per-stream gauges on every scrape), the
//! table rendering of `status`, and [`replay`].

use std::fmt::Write as _;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::bus::Bus;
use crate::reply::{field, int, text};
use crate::retention::StreamState;
use crate::wire;

/// A consumer that has not read for this long counts as idle.
pub const IDLE_CONSUMER: Duration = Duration::from_secs(60);

/// One stream.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StreamStatus {
    /// Contract name.
    pub contract: String,
    /// Stream key.
    pub stream: String,
    /// Entries in the stream.
    pub length: u64,
    /// Id of the first entry.
    pub first_id: Option<String>,
    /// Id of the last entry.
    pub last_id: Option<String>,
    /// Entries in `{stream}:dlq`.
    pub dead_letters: u64,
    /// Consumer groups.
    pub groups: Vec<GroupStatus>,
}

/// One consumer group.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupStatus {
    /// Group name.
    pub name: String,
    /// Delivered, not yet acked.
    pub pending: u64,
    /// Not yet delivered (Redis 7), when Redis can tell.
    pub lag: Option<u64>,
    /// Last entry delivered to the group.
    pub last_delivered: String,
    /// Consumers.
    pub consumers: Vec<ConsumerStatus>,
    /// Stale consumers removed from the group lately (newest first, at
    /// most 10), from `{stream}:removed-consumers`.
    pub removed_consumers: Vec<RemovedConsumer>,
}

/// A stale consumer removed from a group (`XGROUP DELCONSUMER`).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RemovedConsumer {
    /// Consumer name.
    pub name: String,
    /// How long it had been idle, in milliseconds.
    pub idle_ms: u64,
    /// When it was removed (RFC 3339, UTC).
    pub removed_at: String,
    /// The consumer that removed it.
    pub removed_by: String,
}

/// The last removals recorded for `stream`, newest first.
async fn removed_consumers(
    conn: &mut ConnectionManager,
    stream: &str,
) -> redis::RedisResult<Vec<(String, RemovedConsumer)>> {
    let raw: Value = redis::cmd("XREVRANGE")
        .arg(crate::consumer::removed_consumers_stream(stream))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(100)
        .query_async(conn)
        .await?;
    let entries = wire::parse_entries(raw).unwrap_or_default();
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let fields = e.fields.as_ref()?;
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name.as_slice() == k.as_bytes())
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let at = wire::id_millis(&e.id).map_or_else(String::new, |ms| {
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string()
            });
            Some((
                get("group")?,
                RemovedConsumer {
                    name: get("consumer")?,
                    idle_ms: get("idle_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
                    removed_at: at,
                    removed_by: get("removed_by").unwrap_or_default(),
                },
            ))
        })
        .collect())
}

/// One consumer.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConsumerStatus {
    /// Consumer name.
    pub name: String,
    /// Entries pending on it.
    pub pending: u64,
    /// Milliseconds since it last read or claimed.
    pub idle_ms: u64,
}

/// Reads the state of every contract stream of `bus`.
///
/// # Errors
/// Redis errors.
pub async fn collect(bus: &Bus) -> redis::RedisResult<Vec<StreamStatus>> {
    let mut conn = bus.connection();
    let mut out = Vec::new();
    for contract in bus.registry().names() {
        let Ok(stream) = bus.stream_for(contract) else {
            continue;
        };
        out.push(stream_status(&mut conn, contract, &stream).await?);
    }
    Ok(out)
}

async fn stream_status(
    conn: &mut ConnectionManager,
    contract: &str,
    stream: &str,
) -> redis::RedisResult<StreamStatus> {
    let state = StreamState::read(conn, stream).await?;
    let last_id = if state.length > 0 {
        let raw: Value = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        wire::parse_entries(raw)
            .ok()
            .and_then(|e| e.into_iter().next())
            .map(|e| e.id)
    } else {
        None
    };
    let removed = removed_consumers(conn, stream).await?;
    let mut groups = Vec::new();
    for g in &state.groups {
        let raw: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(&g.name)
            .query_async(conn)
            .await?;
        let consumers = match &raw {
            Value::Array(items) => items
                .iter()
                .map(|c| ConsumerStatus {
                    name: field(c, "name").and_then(text).unwrap_or_default(),
                    pending: field(c, "pending").and_then(int).unwrap_or(0),
                    idle_ms: field(c, "idle").and_then(int).unwrap_or(0),
                })
                .collect(),
            _ => Vec::new(),
        };
        groups.push(GroupStatus {
            name: g.name.clone(),
            pending: g.pending,
            lag: g.lag,
            last_delivered: g.last_delivered.clone(),
            consumers,
            removed_consumers: removed
                .iter()
                .filter(|(group, _)| *group == g.name)
                .map(|(_, r)| r.clone())
                .take(10)
                .collect(),
        });
    }
    let dead_letters: u64 = redis::cmd("XLEN")
        .arg(wire::dead_letter_stream(stream))
        .query_async(conn)
        .await?;
    Ok(StreamStatus {
        contract: contract.to_owned(),
        stream: stream.to_owned(),
        length: state.length,
        first_id: state.first_id,
        last_id,
        dead_letters,
        groups,
    })
}

/// Sets the per-stream and per-group gauges from a status snapshot: what
/// `/metrics` does on each scrape, for a process that serves
/// [`Metrics::encode`](crate::Metrics::encode) its own way.
pub fn publish_gauges(bus: &Bus, status: &[StreamStatus]) {
    let m = bus.metrics();
    for s in status {
        m.stream_state(&s.stream, s.length, s.dead_letters);
        for g in &s.groups {
            let idle = g
                .consumers
                .iter()
                .filter(|c| Duration::from_millis(c.idle_ms) > IDLE_CONSUMER)
                .count() as u64;
            m.group_state(&s.stream, &g.name, g.pending, g.lag, idle);
        }
    }
}

/// Renders `status` as one human-readable table.
#[must_use]
pub fn render(status: &[StreamStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>8} {:>6} {:<22} {:<22}",
        "STREAM", "LENGTH", "DLQ", "FIRST", "LAST"
    );
    for s in status {
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>6} {:<22} {:<22}",
            s.stream,
            s.length,
            s.dead_letters,
            s.first_id.as_deref().unwrap_or("-"),
            s.last_id.as_deref().unwrap_or("-")
        );
        for g in &s.groups {
            let _ = writeln!(
                out,
                "  group {:<24} pending {:>6}  lag {:>6}  last delivered {}",
                g.name,
                g.pending,
                g.lag.map_or_else(|| "?".to_owned(), |l| l.to_string()),
                g.last_delivered
            );
            for c in &g.consumers {
                let _ = writeln!(
                    out,
                    "    consumer {:<21} pending {:>6}  idle {:>9.1?}",
                    c.name,
                    c.pending,
                    Duration::from_millis(c.idle_ms)
                );
            }
            for r in &g.removed_consumers {
                let _ = writeln!(
                    out,
                    "    removed  {:<21} idle {:>9.1?}  at {}  by {}",
                    r.name,
                    Duration::from_millis(r.idle_ms),
                    r.removed_at,
                    r.removed_by
                );
            }
        }
    }
    out
}

/// Where a replay moves a group to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayFrom {
    /// Re-read entries after this id (exclusive, as `XGROUP SETID`).
    Id(String),
    /// Re-read entries stored at or after this time.
    Time(std::time::SystemTime),
}

impl std::fmt::Display for ReplayFrom {
    /// `after id 1700000000000-0` or `from 2026-11-24T10:00:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "after id {id}"),
            Self::Time(t) => write!(f, "from {}", humantime::format_rfc3339_millis(*t)),
        }
    }
}

/// Moves `group` on `contract`'s stream so that its consumers re-read from
/// the given point. Returns the id the group was set to. Pending entries
/// are left as they are.
///
/// # Errors
/// Redis errors (e.g. no such group), or an unknown contract.
pub async fn replay(
    bus: &Bus,
    contract: &str,
    group: &str,
    from: &ReplayFrom,
) -> Result<String, String> {
    let stream = bus.stream_for(contract).map_err(|e| e.to_string())?;
    let id = match from {
        ReplayFrom::Id(id) => id.clone(),
        ReplayFrom::Time(t) => {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_millis();
            // SETID is exclusive: to re-read entries at `ms`, start just before.
            if ms == 0 {
                "0-0".to_owned()
            } else {
                format!("{}-{}", ms - 1, u64::MAX)
            }
        }
    };
    let mut conn = bus.connection();
    redis::cmd("XGROUP")
        .arg("SETID")
        .arg(&*stream)
        .arg(group)
        .arg(&id)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("cannot move group {group} on {stream}: {e}"))?;
    tracing::info!(stream = %stream, group, id = %id, "group moved");
    Ok(id)
}
