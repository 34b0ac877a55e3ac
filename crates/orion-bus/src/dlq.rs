//! Operating on dead-letter streams: list, show, redrive, purge.
//!
//! Owns the reading of dead-letter entries into [`DeadLetter`] (with a
//! short form for listings, [`DeadLetter::truncated`]) and the two
//! operations that change a dead-letter stream. **Invariant:** nothing is
//! removed from a dead-letter stream except by [`purge`] (what it is told
//! to, and only that) or by a successful [`redrive`], whose re-publish and
//! removal run in one script. **Invariant:** a redrive re-publishes the
//! dead letter's original bytes, after checking them as a consumer would;
//! it never re-encodes them (numbers and spelling stay as written).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::bus::{Bus, PublishError};
use crate::metrics::RejectReason;
use crate::telemetry::{InternalEvent, MessageRejected};
use crate::wire::{self, RawEntry};

/// One dead-letter entry, as written by the consumer (see docs/DELIVERY.md).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Id of the dead-letter entry in `{stream}:dlq`.
    pub dlq_id: String,
    /// The metadata fields (`stream`, `id`, `contract`, `group`, `reason`, ...).
    pub fields: BTreeMap<String, String>,
    /// The original `data` payload, when the entry had one (lossy UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The raw payload bytes, exactly as they were.
    #[serde(skip)]
    pub raw: Option<Vec<u8>>,
    /// The names of the values shortened by [`DeadLetter::truncated`]
    /// (`data` and metadata fields); empty when everything is whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
    /// The payload's full size in bytes, when `data` was shortened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<usize>,
}

/// How many bytes of each value `dlq list` shows by default (`--full`
/// shows everything): enough to recognise a message on a terminal line.
pub const PREVIEW_BYTES: usize = 256;

/// `text` cut to at most `max` bytes, at a character boundary; `None`
/// when it fits.
fn cut(text: &str, max: usize) -> Option<String> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

impl DeadLetter {
    fn from_entry(entry: RawEntry) -> Self {
        let mut fields = BTreeMap::new();
        let mut raw = None;
        for (k, v) in entry.fields.unwrap_or_default() {
            if k.as_slice() == wire::DATA_FIELD {
                raw = Some(v);
            } else {
                fields.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        Self {
            dlq_id: entry.id,
            data: raw
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            fields,
            raw,
            truncated: Vec::new(),
            data_bytes: None,
        }
    }

    /// This dead letter with `data` and every metadata value cut to at most
    /// `max` bytes (at a character boundary), for listings; the cut values
    /// are named in [`Self::truncated`] and the payload's full size is in
    /// [`Self::data_bytes`]. [`Self::raw`] keeps the whole payload.
    #[must_use]
    pub fn truncated(mut self, max: usize) -> Self {
        for (name, value) in &mut self.fields {
            if let Some(short) = cut(value, max) {
                *value = short;
                self.truncated.push(name.clone());
            }
        }
        if let Some(short) = self.data.as_deref().and_then(|d| cut(d, max)) {
            self.data = Some(short);
            self.data_bytes = self.raw.as_ref().map(Vec::len);
            self.truncated.push("data".to_owned());
        }
        self
    }

    /// A metadata field.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

fn shape(e: wire::ReplyShapeError) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        e.0,
    ))
}

/// Up to `count` dead letters from `start` (inclusive; `-` for the oldest).
///
/// # Errors
/// Redis errors.
pub async fn list(
    conn: &mut ConnectionManager,
    dlq: &str,
    start: &str,
    count: usize,
) -> redis::RedisResult<Vec<DeadLetter>> {
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(dlq)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(wire::parse_entries(raw)
        .map_err(shape)?
        .into_iter()
        .map(DeadLetter::from_entry)
        .collect())
}

/// One dead letter by its id.
///
/// # Errors
/// Redis errors.
pub async fn show(
    conn: &mut ConnectionManager,
    dlq: &str,
    id: &str,
) -> redis::RedisResult<Option<DeadLetter>> {
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(dlq)
        .arg(id)
        .arg(id)
        .query_async(conn)
        .await?;
    Ok(wire::parse_entries(raw)
        .map_err(shape)?
        .into_iter()
        .next()
        .map(DeadLetter::from_entry))
}

/// What a redrive did, per dead-letter id.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct RedriveReport {
    /// `(dead-letter id, new stream id)` of each entry re-published and removed.
    pub redriven: Vec<(String, String)>,
    /// `(dead-letter id, why)` of each entry left where it was.
    pub kept: Vec<(String, String)>,
}

/// Re-publishes a dead letter and removes it, atomically and only if the
/// `XADD` succeeded (a `MULTI` would run the `XDEL` even after the `XADD`
/// failed, e.g. on a key of the wrong type, and lose the letter).
/// `KEYS`: the stream, the dead-letter stream. `ARGV`: the dead-letter id,
/// the payload, then `MAXLEN ~ N` if the bus trims that way.
static REDRIVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local id
if ARGV[3] then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
else
  id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[2])
end
redis.call('XDEL', KEYS[2], ARGV[1])
return id
",
    )
});

/// Re-validates each selected dead letter of `contract` and re-publishes it
/// to its original stream, removing it from the dead-letter stream in the
/// same atomic step (a script that deletes only after the `XADD` worked).
/// What is re-published is the original `data` bytes, unchanged, once they
/// pass what a consumer checks (size limit, UTF-8, JSON, contract).
/// Entries that are missing, have no `data`, or still fail those checks
/// are kept, with the reason.
///
/// # Errors
/// Only when Redis fails for the whole operation; per-entry problems are in
/// the report.
pub async fn redrive(
    bus: &Bus,
    contract: &str,
    ids: &[String],
) -> Result<RedriveReport, PublishError> {
    let stream = bus.stream_for(contract)?;
    let checked = bus.registry().get(contract)?.clone();
    let dlq = wire::dead_letter_stream(&stream);
    let mut conn = bus.connection();
    let redis_err = |source| PublishError::Redis {
        stream: dlq.clone(),
        source,
    };
    let mut report = RedriveReport::default();
    for id in ids {
        let Some(letter) = show(&mut conn, &dlq, id).await.map_err(redis_err)? else {
            report
                .kept
                .push((id.clone(), "no such dead letter".to_owned()));
            continue;
        };
        let Some(raw) = &letter.raw else {
            report
                .kept
                .push((id.clone(), "it has no data field to re-publish".to_owned()));
            continue;
        };
        // The checks a consumer makes, so that what goes back is delivered.
        let message = match wire::decode_data(raw, bus.options().max_message_bytes) {
            Ok(m) => m,
            Err(e) => {
                MessageRejected {
                    contract,
                    reason: RejectReason::Poison(e.poison_reason()),
                    error: &e,
                }
                .emit(bus.metrics());
                report.kept.push((id.clone(), e.to_string()));
                continue;
            }
        };
        if let Err(violations) = checked.validate(&message) {
            let error = PublishError::Invalid {
                contract: contract.to_owned(),
                index: None,
                violations,
            };
            MessageRejected {
                contract,
                reason: error.reject_reason(),
                error: &error,
            }
            .emit(bus.metrics());
            report.kept.push((id.clone(), error.to_string()));
            continue;
        }
        // The original bytes, never a re-encoding of the message: redriving
        // moves what was written (an integer beyond 64 bits stays one).
        let mut call = REDRIVE_SCRIPT.key(&*stream);
        call.key(&dlq).arg(id).arg(raw.as_slice());
        if let Some(max_len) = bus.approximate_max_len() {
            call.arg(max_len);
        }
        let new_id: String = call.invoke_async(&mut conn).await.map_err(redis_err)?;
        tracing::info!(dlq = %dlq, dlq_id = %id, new_id = %new_id, "redriven");
        report.redriven.push((id.clone(), new_id));
    }
    Ok(report)
}

/// Deletes exactly the given dead-letter ids; returns how many existed.
///
/// # Errors
/// Redis errors.
pub async fn purge(
    conn: &mut ConnectionManager,
    dlq: &str,
    ids: &[String],
) -> redis::RedisResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    redis::cmd("XDEL").arg(dlq).arg(ids).query_async(conn).await
}

/// Every id in a dead-letter stream (for `--all`).
///
/// # Errors
/// Redis errors.
pub async fn all_ids(conn: &mut ConnectionManager, dlq: &str) -> redis::RedisResult<Vec<String>> {
    let mut ids = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page = list(conn, dlq, &start, 1000).await?;
        let Some(last) = page.last() else { break };
        start = format!("({}", last.dlq_id);
        ids.extend(page.into_iter().map(|d| d.dlq_id));
    }
    Ok(ids)
}
