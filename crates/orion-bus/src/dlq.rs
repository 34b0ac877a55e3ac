//! Operating on dead-letter streams: list, show, redrive, purge.
//!
//! Owns the reading of dead-letter entries into [`DeadLetter`] and the two
//! operations that change a dead-letter stream. **Invariant:** nothing is
//! removed from a dead-letter stream except by [`purge`] (what it is told
//! to, and only that) or by a successful [`redrive`], whose re-publish and
//! removal run in one `MULTI`/`EXEC`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::bus::{Bus, PublishError};
use crate::wire::{self, RawEntry};

/// One dead-letter entry, as written by the consumer (see docs/DELIVERY.md).
#[derive(Debug, Clone, Serialize)]
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
        }
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
/// Entries that are missing, have no `data`, or still fail their contract
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
        let prepared = match bus.prepare_json(contract, raw) {
            Ok(p) => p,
            Err(e) => {
                report.kept.push((id.clone(), e.to_string()));
                continue;
            }
        };
        let (key, payload) = Bus::parts(&prepared);
        let mut call = REDRIVE_SCRIPT.key(key);
        call.key(&dlq).arg(id).arg(payload);
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
