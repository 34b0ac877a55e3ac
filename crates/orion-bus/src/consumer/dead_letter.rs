//! Dead letters: the entry format, failure records, and the atomic "copy
//! to `{stream}:dlq` then `XACK`" step.
//!
//! An entry is dead-lettered when it is poison (no `data` field,
//! non-UTF-8, invalid JSON, over the size limit, contract violation), when
//! its handler failed permanently or under the dead-letter policy, or when
//! it was delivered `max_deliveries` times. The copy, the ack and the
//! removal of its failure record run in one script, which acks only after
//! the copy was written: an entry is never acked without its dead letter,
//! nor dead-lettered twice. (A `MULTI` would not do: Redis runs the rest of
//! a transaction after a command in it fails, so a failed copy, e.g. on a
//! key of the wrong type, would still be acked.) When the copy cannot be
//! written at all, the entry stays pending, to be tried again.
//!
//! Dead-letter entry fields (all strings; see docs/DELIVERY.md):
//! `stream`, `id`, `contract`, `group`, `consumer`, `deliveries`, `reason`
//! (a short label), `error` (the full text), `first_failure` and
//! `last_failure` (RFC 3339, UTC), then the raw payload: `data` with the
//! original bytes when the entry had a `data` field, otherwise each
//! original field copied as `field:<name>`.
//!
//! Failure records live in the hash `{stream}:failures:{group}`, three
//! fields per failed entry (`<id>:first`, `<id>:last`, `<id>:error`), so
//! that the first failure time and the last error survive restarts and
//! reach the dead letter whichever consumer writes it.

use crate::metrics::DeadLetterReason;
use crate::telemetry::{EntryDeadLettered, InternalEvent, RedisCommandFailed};
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Shared;
use crate::backoff::{Backoff, is_transient};
use crate::wire::{DATA_FIELD, RawEntry};

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The three failure-record fields of an entry.
pub(super) fn record_fields(id: &str) -> [String; 3] {
    [
        format!("{id}:first"),
        format!("{id}:last"),
        format!("{id}:error"),
    ]
}

/// Records a handler failure (first time kept, last time and error replaced).
pub(super) async fn record_failure(shared: &Shared, idx: usize, id: &str, error: &str) {
    let source = &shared.sources[idx];
    let [first, last, err] = record_fields(id);
    let at = now();
    let mut pipe = redis::pipe();
    pipe.cmd("HSETNX")
        .arg(&source.failures)
        .arg(&first)
        .arg(&at)
        .ignore()
        .cmd("HSET")
        .arg(&source.failures)
        .arg(&last)
        .arg(&at)
        .arg(&err)
        .arg(error)
        .ignore();
    let mut conn = shared.conn.clone();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        // Only the dead letter's first/last times are at stake, not the entry.
        RedisCommandFailed::warn(&e, "recording a failure failed")
            .stream(&source.stream)
            .group(&shared.group)
            .id(id)
            .emit(shared.bus.metrics());
    }
}

/// `KEYS`: the stream, its dead-letter stream, its failure records.
/// `ARGV`: the group, the entry id, its three failure-record fields, then
/// the dead letter's field/value pairs. Does nothing (returns 0) when the
/// entry is no longer pending in the group: someone else dead-lettered or
/// acked it, or this is the retry of a call that did run. So each entry
/// gets one dead letter.
static DEAD_LETTER_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[3], ARGV[4], ARGV[5])
return 1
",
    )
});

/// Original fields copied into a dead letter at most: Lua's `unpack` takes
/// about 8,000 values, and a letter is for reading, not for replaying a
/// field-less entry. The count of those left out is in `fields_left_out`.
const MAX_COPIED_FIELDS: usize = 1000;

/// Writes the dead letter and acks the entry. Transient Redis errors are
/// retried until it succeeds (or the consumer aborts the task at the end of
/// its grace period); an error Redis will keep giving (the dead-letter key
/// holds another type) is logged and leaves the entry pending. Either way
/// nothing is acked that was not dead-lettered.
pub(super) async fn write(
    shared: &Shared,
    idx: usize,
    entry: &RawEntry,
    reason: DeadLetterReason,
    error: &str,
    deliveries: u64,
) {
    let source = &shared.sources[idx];
    tracing::warn!(
        stream = %source.stream,
        group = %shared.group,
        id = %entry.id,
        reason = %reason,
        deliveries,
        error,
        "dead-lettering entry"
    );
    let mut conn = shared.conn.clone();
    let fields = record_fields(&entry.id);
    let recorded: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&source.failures)
        .arg(&fields)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let at = now();
    let first = recorded
        .first()
        .cloned()
        .flatten()
        .unwrap_or_else(|| at.clone());
    let last = if reason == DeadLetterReason::MaxDeliveries {
        recorded
            .get(1)
            .cloned()
            .flatten()
            .unwrap_or_else(|| at.clone())
    } else {
        at.clone()
    };
    let error = match recorded.get(2).cloned().flatten() {
        Some(last_error) if reason == DeadLetterReason::MaxDeliveries => {
            format!("{error}; last error: {last_error}")
        }
        _ => error.to_owned(),
    };

    let mut call = DEAD_LETTER_SCRIPT.key(&*source.stream);
    call.key(&source.dead_letters)
        .key(&source.failures)
        .arg(&shared.group)
        .arg(&entry.id)
        .arg(&fields)
        .arg("stream")
        .arg(&*source.stream)
        .arg("id")
        .arg(&entry.id)
        .arg("contract")
        .arg(source.contract.name())
        .arg("group")
        .arg(&shared.group)
        .arg("consumer")
        .arg(&shared.consumer)
        .arg("deliveries")
        .arg(deliveries)
        .arg("reason")
        .arg(reason.as_str())
        .arg("error")
        .arg(&error)
        .arg("first_failure")
        .arg(&first)
        .arg("last_failure")
        .arg(&last);
    if let Some(original) = &entry.fields {
        if let Ok(data) = entry.data() {
            call.arg(DATA_FIELD).arg(data);
        } else {
            for (k, v) in original.iter().take(MAX_COPIED_FIELDS) {
                let mut name = b"field:".to_vec();
                name.extend_from_slice(k);
                call.arg(name).arg(v.as_slice());
            }
            if original.len() > MAX_COPIED_FIELDS {
                call.arg("fields_left_out")
                    .arg(original.len() - MAX_COPIED_FIELDS);
            }
        }
    }
    let mut backoff = Backoff::redis();
    loop {
        match call.invoke_async::<i64>(&mut conn).await {
            Ok(1) => break,
            Ok(_) => {
                tracing::debug!(
                    stream = %source.stream,
                    group = %shared.group,
                    id = %entry.id,
                    "no longer pending: already dead-lettered or acked elsewhere"
                );
                return;
            }
            Err(e) if is_transient(&e) => {
                RedisCommandFailed::warn(&e, "dead-lettering failed; retrying")
                    .stream(&source.stream)
                    .group(&shared.group)
                    .id(&entry.id)
                    .emit(shared.bus.metrics());
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                RedisCommandFailed::error(
                    &e,
                    "cannot dead-letter this entry; it stays pending and will be tried again",
                )
                .stream(&source.stream)
                .group(&shared.group)
                .id(&entry.id)
                .key(&source.dead_letters)
                .emit(shared.bus.metrics());
                return;
            }
        }
    }
    EntryDeadLettered {
        stream: &source.stream,
        contract: source.contract.name(),
        group: &shared.group,
        id: &entry.id,
        reason,
    }
    .emit(shared.bus.metrics());
    shared.stats.dead_lettered.fetch_add(1, Ordering::AcqRel);
}
