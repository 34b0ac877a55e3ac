//! Reading streams without a consumer group, for operators.
//!
//! Owns `tail`'s logic: reading a range or following new entries with plain
//! `XRANGE`/`XREVRANGE`/`XREAD` (never a group, never an ack), and judging
//! each entry against its contract without trusting it. A record shows the
//! message with the numbers of the entry's own bytes (an integer beyond 64
//! bits stays exact; see [`wire::exact_json`]).

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::contracts::{Contract, Violation};
use crate::wire::{self, RawEntry};

/// One entry as `tail` shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TailRecord {
    /// The contract of the stream.
    pub contract: String,
    /// The stream key.
    pub stream: String,
    /// The entry id.
    pub id: String,
    /// True when the entry decodes and conforms to its contract.
    pub valid: bool,
    /// Why it is not valid (decode error), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Contract violations, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// The message, when it is JSON (as parsed: an integer beyond 64 bits
    /// is a float here; the serialized record carries `exact` instead).
    #[serde(skip)]
    pub data: Option<Value>,
    /// The message as compact JSON with the entry's own numbers, when it is
    /// JSON; serialized as `data`.
    #[serde(rename = "data")]
    pub exact: Option<Box<RawValue>>,
    /// The raw payload (lossy UTF-8), when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Judges one entry against `contract`.
#[must_use]
pub fn judge(contract: &Contract, stream: &str, entry: &RawEntry, max_bytes: usize) -> TailRecord {
    let mut record = TailRecord {
        contract: contract.name().to_owned(),
        stream: stream.to_owned(),
        id: entry.id.clone(),
        valid: false,
        error: None,
        violations: Vec::new(),
        data: None,
        exact: None,
        raw: None,
    };
    match entry.decode(max_bytes) {
        Ok(value) => {
            if let Err(v) = contract.validate(&value) {
                record.violations = v.0;
            } else {
                record.valid = true;
            }
            if let Ok(bytes) = entry.data() {
                record.exact = Some(wire::exact_json(&value, bytes));
            }
            record.data = Some(value);
        }
        Err(e) => {
            record.error = Some(e.to_string());
            record.raw = entry
                .data()
                .ok()
                .map(|b| String::from_utf8_lossy(b).into_owned());
        }
    }
    record
}

/// The last `count` entries of a stream, oldest first.
///
/// # Errors
/// Redis errors, or a reply of unexpected shape.
pub async fn last_entries(
    conn: &mut ConnectionManager,
    stream: &str,
    count: usize,
) -> Result<Vec<RawEntry>, redis::RedisError> {
    let raw: redis::Value = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let mut entries = wire::parse_entries(raw).map_err(shape_error)?;
    entries.reverse();
    Ok(entries)
}

/// Up to `count` entries with ids `>= from`, oldest first.
///
/// # Errors
/// Redis errors, or a reply of unexpected shape.
pub async fn range_from(
    conn: &mut ConnectionManager,
    stream: &str,
    from: &str,
    count: usize,
) -> Result<Vec<RawEntry>, redis::RedisError> {
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg(from)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    wire::parse_entries(raw).map_err(shape_error)
}

/// Entries after `after` (exclusive), waiting up to `block` for some.
///
/// # Errors
/// Redis errors, or a reply of unexpected shape.
pub async fn read_after(
    conn: &mut ConnectionManager,
    stream: &str,
    after: &str,
    count: usize,
    block: Duration,
) -> Result<Vec<RawEntry>, redis::RedisError> {
    let raw: redis::Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1))
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query_async(conn)
        .await?;
    Ok(wire::parse_read_reply(raw)
        .map_err(shape_error)?
        .into_iter()
        .flat_map(|s| s.entries)
        .collect())
}

/// The id of the newest entry, or `0-0` for an empty or missing stream.
///
/// # Errors
/// Redis errors.
pub async fn last_id(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Result<String, redis::RedisError> {
    Ok(last_entries(conn, stream, 1)
        .await?
        .pop()
        .map_or_else(|| "0-0".to_owned(), |e| e.id))
}

/// Follows `stream` after the id `after` on `conn` (a connection for
/// blocking reads), calling `on_entry` for each new entry, oldest first,
/// until it returns `false` or `shutdown` is cancelled. Each read waits up
/// to `block`; a failed read is logged and retried with backoff.
pub async fn follow(
    conn: &mut ConnectionManager,
    stream: &str,
    mut after: String,
    block: Duration,
    shutdown: &CancellationToken,
    mut on_entry: impl FnMut(&RawEntry) -> bool,
) {
    let mut backoff = Backoff::redis();
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = read_after(conn, stream, &after, 100, block) => r,
        };
        match read {
            Ok(entries) => {
                backoff.reset();
                for entry in &entries {
                    if !on_entry(entry) {
                        return;
                    }
                    after.clone_from(&entry.id);
                }
            }
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "XREAD failed; retrying");
                if !backoff.wait(shutdown).await {
                    return;
                }
            }
        }
    }
}

fn shape_error(e: wire::ReplyShapeError) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        e.0,
    ))
}
