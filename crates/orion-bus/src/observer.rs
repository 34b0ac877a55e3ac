//! Observer mode: watch every contract stream without joining a group.
//!
//! Owns `serve --observe`, phase 1 of a migration: it reads each stream
//! without a group (never an ack, so the Python bus is untouched), in
//! batches bounded by bytes as well as count: a read-only script walks the
//! stream one `XRANGE` at a time and returns at most 1 MiB of
//! entries, and an entry over `max_message_bytes` only as its id and size,
//! counted `too_large` without ever being transferred. It validates every
//! entry, counts outcomes by contract and
//! invalid entries by the message's `source` field and by reason (the
//! dead-letter reason a consumer would give the entry: `contract_violation`,
//! `invalid_json`, `non_finite_number`, `lone_surrogate`, ...; see
//! docs/MIGRATION.md), and logs a summary periodically. The `source` of an
//! entry that is not JSON only because of Python's quirks (`NaN`, lone
//! surrogates) is still read, so the module that writes them shows.
//! Entries trimmed (or deleted) before it could read them are counted as
//! missed, from Redis 7's `entries-added` counter, so a gap in what it saw
//! is never silent. Every group of the watched streams is checked for
//! entries trimmed before it read them, too. It keeps nothing it reads:
//! memory is constant, bounded by one batch, the number of contracts,
//! reasons and distinct sources (capped at
//! [`MAX_SOURCES`] per contract; the rest are counted as `other`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::bus::Bus;
use crate::metrics::PoisonReason;
use crate::retention::StreamState;
use crate::telemetry::{EntriesMissed, EntryObserved, InternalEvent, RedisCommandFailed};
use crate::wire;

/// Distinct `source` label values per contract before `other` is used.
pub const MAX_SOURCES: usize = 64;

/// Entries read per stream per batch, at most.
const BATCH: usize = 500;

/// Bytes of entries read per stream per batch, at most (plus one entry of
/// up to `max_message_bytes`): what bounds the observer's memory.
const BATCH_BYTES: usize = 1024 * 1024;

/// How long to wait before looking again when no stream had anything new.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Reads up to `ARGV[2]` entries after `ARGV[1]`, one at a time, until
/// `ARGV[3]` bytes are taken; an entry over `ARGV[4]` bytes is returned as
/// `{id, size}` without its fields, never held by the client.
/// `KEYS`: the stream. Returns `{id, size[, fields]}` rows.
static READ_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local out = {}
local after = ARGV[1]
local budget = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local used = 0
for _ = 1, tonumber(ARGV[2]) do
  local r = redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', 1)
  if #r == 0 then break end
  local id, fields = r[1][1], r[1][2]
  local size = 0
  for j = 1, #fields do size = size + #fields[j] end
  if size > max_bytes then
    out[#out + 1] = {id, size}
  else
    if used + size > budget and #out > 0 then break end
    out[#out + 1] = {id, size, fields}
    used = used + size
  end
  after = id
end
return out
",
    )
});

/// One entry as the observer read it.
enum Observed {
    /// An entry of a size it may hold.
    Entry(wire::RawEntry),
    /// Over `max_message_bytes`: counted, never transferred.
    TooLarge {
        /// The entry id.
        id: String,
    },
}

/// What one stream gave in one batch.
struct Batch {
    stream: String,
    entries: Vec<Observed>,
}

/// The entries of `stream` after `after`, bounded by count and bytes.
async fn read_bounded(
    conn: &mut redis::aio::ConnectionManager,
    stream: &str,
    after: &str,
    max_bytes: usize,
) -> redis::RedisResult<Vec<Observed>> {
    let rows: Vec<redis::Value> = READ_SCRIPT
        .key(stream)
        .arg(after)
        .arg(BATCH)
        .arg(BATCH_BYTES)
        .arg(max_bytes)
        .invoke_async(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let redis::Value::Array(mut parts) = row else {
            continue;
        };
        if parts.len() < 2 {
            continue;
        }
        let fields = (parts.len() >= 3).then(|| parts.remove(2));
        let id: String = redis::from_redis_value(parts.swap_remove(0))?;
        match fields {
            None => out.push(Observed::TooLarge { id }),
            Some(fields) => {
                let entry = redis::Value::Array(vec![redis::Value::Array(vec![
                    redis::Value::BulkString(id.into_bytes()),
                    fields,
                ])]);
                let mut parsed = wire::parse_entries(entry).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "observer read",
                        e.0,
                    ))
                })?;
                out.extend(parsed.pop().map(Observed::Entry));
            }
        }
    }
    Ok(out)
}

/// Where the observer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserveFrom {
    /// Only entries added from now on.
    Now,
    /// Every entry still in the streams, then new ones.
    Beginning,
}

/// Counts since the observer started (also on `/metrics`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObserverReport {
    /// `contract -> (valid, invalid)`.
    pub by_contract: BTreeMap<String, (u64, u64)>,
    /// `(contract, source) -> invalid entries`.
    pub violations_by_source: BTreeMap<(String, String), u64>,
    /// `(contract, reason, source) -> invalid entries`, the reason being
    /// the dead-letter reason a consumer would give the entry.
    pub invalid_by_reason: BTreeMap<(String, String, String), u64>,
    /// `contract -> entries` trimmed or deleted before the observer read
    /// them (counted only on Redis 7+, which reports `entries-added`).
    pub missed: BTreeMap<String, u64>,
}

impl ObserverReport {
    /// Total entries observed.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_contract.values().map(|(v, i)| v + i).sum()
    }
}

/// Where the observer is in one stream, and what it has seen there.
#[derive(Debug, Clone)]
struct Position {
    /// The last entry read (or the start point).
    last_id: String,
    /// `entries-added` before the first entry the observer could see.
    base: u64,
    /// Entries read since then.
    seen: u64,
    /// Missed entries already counted.
    missed: u64,
}

/// A `source` value safe to use as a label: short, plain, and one of the
/// first [`MAX_SOURCES`] seen for the contract; anything else is `other`.
/// A final newline is dropped first (`"orion-watcher\n"`, which Python's
/// `$` accepts, is labelled `orion-watcher`).
fn source_label(value: Option<&serde_json::Value>, seen: &mut HashSet<String>) -> String {
    let Some(s) = value.and_then(|v| v.as_str()) else {
        return "unknown".to_owned();
    };
    let s = s.strip_suffix('\n').unwrap_or(s);
    let plain = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        return "other".to_owned();
    }
    if seen.contains(s) || seen.len() < MAX_SOURCES {
        seen.insert(s.to_owned());
        s.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Observes until `shutdown`, logging a summary every `summary_every` and
/// checking each stream for entries it missed (trimmed or deleted before
/// it read them) every `check_every`.
///
/// # Errors
/// Only if the reading connection cannot be opened.
pub async fn run(
    bus: &Bus,
    from: ObserveFrom,
    summary_every: Duration,
    check_every: Duration,
    shutdown: CancellationToken,
) -> Result<ObserverReport, crate::connection::ConnectError> {
    let block = Duration::from_secs(1);
    let mut conn = bus.settings().connect_blocking(block).await?;
    let mut backoff = Backoff::redis();
    let contracts: Vec<_> = bus.registry().iter().cloned().collect();
    let streams: Vec<String> = contracts
        .iter()
        .filter_map(|c| bus.stream_for(c.name()).ok().map(|s| s.to_string()))
        .collect();
    // "$" is re-read at every XREAD, which would skip entries added to one
    // stream while another was being read: pin each start id instead. The
    // same XINFO gives the count of entries added before that point.
    let mut positions = Vec::with_capacity(streams.len());
    for s in &streams {
        let state = loop {
            match StreamState::read_without_groups(&mut conn, s).await {
                Ok(state) => break state,
                Err(e) => {
                    RedisCommandFailed::warn(&e, "observer start failed; retrying")
                        .stream(s)
                        .emit(bus.metrics());
                    if !backoff.wait(&shutdown).await {
                        return Ok(ObserverReport::default());
                    }
                }
            }
        };
        let added = state.entries_added.unwrap_or(0);
        positions.push(match from {
            ObserveFrom::Beginning => Position {
                last_id: "0-0".to_owned(),
                base: state.removed().unwrap_or(0),
                seen: 0,
                missed: 0,
            },
            ObserveFrom::Now => Position {
                last_id: state.last_generated_id.unwrap_or_else(|| "0-0".to_owned()),
                base: added,
                seen: 0,
                missed: 0,
            },
        });
    }
    let mut sources: Vec<HashSet<String>> = vec![HashSet::new(); streams.len()];
    let mut report = ObserverReport::default();
    let max_bytes = bus.options().max_message_bytes;
    let mut next_summary = crate::backoff::deadline_after(summary_every);
    let mut next_check = crate::backoff::deadline_after(check_every);
    tracing::info!(streams = ?streams, "observer started (no group, no acks)");
    loop {
        if tokio::time::Instant::now() >= next_summary {
            summarize(&report);
            next_summary = crate::backoff::deadline_after(summary_every);
        }
        if tokio::time::Instant::now() >= next_check {
            check_missed(
                bus,
                &mut conn,
                &streams,
                &contracts,
                &mut positions,
                &mut report,
            )
            .await;
            next_check = crate::backoff::deadline_after(check_every);
        }
        // Each stream in turn, a batch bounded by bytes (see READ_SCRIPT);
        // when none has anything new, wait a little.
        let mut read_any = false;
        let mut failed = None;
        let mut batches = Vec::with_capacity(streams.len());
        for (idx, stream) in streams.iter().enumerate() {
            let read = tokio::select! {
                () = shutdown.cancelled() => None,
                r = read_bounded(&mut conn, stream, &positions[idx].last_id, max_bytes) => Some(r),
            };
            match read {
                None => break,
                Some(Ok(entries)) => {
                    read_any |= !entries.is_empty();
                    batches.push((idx, entries));
                }
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        if let Some(e) = failed {
            RedisCommandFailed::warn(&e, "observer read failed; retrying")
                .stream(&streams.join(","))
                .emit(bus.metrics());
            if !backoff.wait(&shutdown).await {
                break;
            }
            continue;
        }
        backoff.reset();
        if !read_any {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let parsed = batches.into_iter().map(|(idx, entries)| Batch {
            stream: streams[idx].clone(),
            entries,
        });
        for read in parsed {
            let Some(idx) = streams.iter().position(|s| *s == read.stream) else {
                continue;
            };
            let contract = &contracts[idx];
            for observed in read.entries {
                let (entry, invalid) = match observed {
                    Observed::Entry(entry) => {
                        let invalid = judge(contract, &entry, max_bytes, &mut sources[idx]);
                        (entry, invalid)
                    }
                    // Never held: its size alone says it.
                    Observed::TooLarge { id, .. } => (
                        wire::RawEntry { id, fields: None },
                        Some((PoisonReason::TooLarge, "unknown".to_owned())),
                    ),
                };
                EntryObserved {
                    stream: &read.stream,
                    contract: contract.name(),
                    id: &entry.id,
                    invalid: invalid.as_ref().map(|(r, source)| (*r, source.as_str())),
                }
                .emit(bus.metrics());
                let counts = report
                    .by_contract
                    .entry(contract.name().to_owned())
                    .or_default();
                if let Some((reason, source)) = invalid {
                    counts.1 += 1;
                    *report
                        .invalid_by_reason
                        .entry((
                            contract.name().to_owned(),
                            reason.as_str().to_owned(),
                            source.clone(),
                        ))
                        .or_default() += 1;
                    *report
                        .violations_by_source
                        .entry((contract.name().to_owned(), source))
                        .or_default() += 1;
                } else {
                    counts.0 += 1;
                }
                positions[idx].last_id = entry.id;
                positions[idx].seen += 1;
            }
        }
    }
    check_missed(
        bus,
        &mut conn,
        &streams,
        &contracts,
        &mut positions,
        &mut report,
    )
    .await;
    summarize(&report);
    Ok(report)
}

/// `None` for a valid entry; else its reason (the dead-letter reason a
/// consumer would give it) and its `source` label.
fn judge(
    contract: &crate::contracts::Contract,
    entry: &wire::RawEntry,
    max_bytes: usize,
    sources: &mut HashSet<String>,
) -> Option<(PoisonReason, String)> {
    match entry.decode(max_bytes) {
        Ok(value) if contract.is_valid(&value) => None,
        Ok(value) => Some((
            PoisonReason::ContractViolation,
            source_label(value.get("source"), sources),
        )),
        Err(e) => {
            // What Python's json reads still has a source worth naming.
            let lenient = match &e {
                wire::DecodeError::NonFiniteNumber(_) | wire::DecodeError::LoneSurrogate(_) => {
                    entry.data().ok().and_then(wire::parse_python_lenient)
                }
                _ => None,
            };
            let source = source_label(lenient.as_ref().and_then(|v| v.get("source")), sources);
            Some((e.poison_reason(), source))
        }
    }
}

/// Counts entries that were added to a stream but never read by the
/// observer: trimmed by `MAXLEN` (or deleted) before it got to them. The
/// count is exact when the observer has read up to the stream's last
/// generated id; a stream it has not caught up with is checked next time.
async fn check_missed(
    bus: &Bus,
    conn: &mut redis::aio::ConnectionManager,
    streams: &[String],
    contracts: &[std::sync::Arc<crate::contracts::Contract>],
    positions: &mut [Position],
    report: &mut ObserverReport,
) {
    for ((stream, contract), p) in streams.iter().zip(contracts).zip(positions.iter_mut()) {
        // Every group on the stream (the Python bus's too): entries trimmed
        // before the group read them are counted and logged per group.
        if let Err(e) = crate::retention::check_loss(conn, bus.metrics(), stream, None).await {
            RedisCommandFailed::warn(&e, "observer could not check groups for losses")
                .stream(stream)
                .emit(bus.metrics());
        }
        let (added, last_generated) = match StreamState::read_without_groups(conn, stream).await {
            Ok(StreamState {
                entries_added: Some(added),
                last_generated_id,
                ..
            }) => (added, last_generated_id.unwrap_or_else(|| "0-0".to_owned())),
            // No stream, or Redis before 7 (no counter): nothing to compare.
            Ok(_) => continue,
            Err(e) => {
                RedisCommandFailed::warn(&e, "observer could not check for missed entries")
                    .stream(stream)
                    .emit(bus.metrics());
                continue;
            }
        };
        if added < p.base + p.seen {
            // The stream was deleted and created again: start counting anew.
            p.base = added;
            p.seen = 0;
            p.missed = 0;
            continue;
        }
        if last_generated != p.last_id {
            continue;
        }
        let missed = added - p.base - p.seen;
        if missed > p.missed {
            let new = missed - p.missed;
            p.missed = missed;
            *report.missed.entry(contract.name().to_owned()).or_default() += new;
            EntriesMissed {
                stream,
                contract: contract.name(),
                missed: new,
            }
            .emit(bus.metrics());
        }
    }
}

fn summarize(report: &ObserverReport) {
    for (contract, (valid, invalid)) in &report.by_contract {
        tracing::info!(contract, valid, invalid, "observer summary");
    }
    for (contract, missed) in &report.missed {
        tracing::info!(contract, missed, "observer summary: entries missed");
    }
    for ((contract, reason, source), n) in &report.invalid_by_reason {
        tracing::info!(
            contract,
            reason,
            source,
            invalid = n,
            "observer invalid entries by reason and source"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_labels_are_bounded() {
        let mut seen = HashSet::new();
        assert_eq!(
            source_label(Some(&json!("orion-guardian")), &mut seen),
            "orion-guardian"
        );
        assert_eq!(
            source_label(Some(&json!("orion-guardian\n")), &mut seen),
            "orion-guardian",
            "a final newline (Python's `$` accepts one) is not part of the label"
        );
        assert_eq!(source_label(Some(&json!("has space")), &mut seen), "other");
        assert_eq!(source_label(Some(&json!(3)), &mut seen), "unknown");
        assert_eq!(source_label(None, &mut seen), "unknown");
        for i in 0..200 {
            let _ = source_label(Some(&json!(format!("s{i}"))), &mut seen);
        }
        assert_eq!(seen.len(), MAX_SOURCES);
        assert_eq!(source_label(Some(&json!("s199")), &mut seen), "other");
        assert_eq!(
            source_label(Some(&json!("orion-guardian")), &mut seen),
            "orion-guardian"
        );
    }
}
