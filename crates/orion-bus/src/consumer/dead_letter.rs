//! Dead-lettering poison entries.
//!
//! Owns the dead-letter entry format and the atomic "copy to `{stream}:dlq`
//! then `XACK`" step. Poison is an entry the consumer can never hand to a
//! handler: no `data` field, non-UTF-8 bytes, invalid JSON, over the size
//! limit, or a contract violation. The copy and the ack run in one
//! `MULTI`/`EXEC`, so an entry is never acked without its dead letter, nor
//! dead-lettered twice by a retry after a half-done step.
//!
//! Dead-letter entry fields (all strings):
//! `stream`, `id`, `contract`, `group`, `consumer`, `reason` (a short
//! label), `error` (the full text), `failed_at` (RFC 3339, UTC), then the
//! raw payload: `data` with the original bytes when the entry had a `data`
//! field, otherwise each original field copied as `field:<name>`.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Shared;
use crate::backoff::Backoff;
use crate::wire::{DATA_FIELD, RawEntry};

/// Dead-letters `entry` and acks it, retrying Redis errors until it
/// succeeds (or the consumer aborts the task at the end of its grace
/// period, in which case the entry simply stays pending).
pub(super) async fn poison(
    shared: &Shared,
    idx: usize,
    entry: &RawEntry,
    reason: &str,
    error: &str,
) {
    let source = &shared.sources[idx];
    tracing::warn!(
        stream = %source.stream,
        group = %shared.group,
        id = %entry.id,
        reason,
        error,
        "poison entry: dead-lettering"
    );
    let failed_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut pipe = redis::pipe();
    pipe.atomic();
    let xadd = pipe
        .cmd("XADD")
        .arg(&source.dead_letters)
        .arg("*")
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
        .arg("reason")
        .arg(reason)
        .arg("error")
        .arg(error)
        .arg("failed_at")
        .arg(&failed_at);
    if let Some(fields) = &entry.fields {
        if let Ok(data) = entry.data() {
            xadd.arg(DATA_FIELD).arg(data);
        } else {
            for (k, v) in fields {
                let mut name = b"field:".to_vec();
                name.extend_from_slice(k);
                xadd.arg(name).arg(v.as_slice());
            }
        }
    }
    pipe.ignore()
        .cmd("XACK")
        .arg(&*source.stream)
        .arg(&shared.group)
        .arg(&entry.id)
        .ignore();
    let mut conn = shared.conn.clone();
    let mut backoff = Backoff::redis();
    loop {
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => break,
            Err(e) => {
                shared.bus.metrics().redis_error();
                tracing::warn!(
                    stream = %source.stream,
                    group = %shared.group,
                    id = %entry.id,
                    error = %e,
                    "dead-lettering failed; retrying"
                );
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    source.counters.dead_lettered(reason);
    shared.stats.dead_lettered.fetch_add(1, Ordering::AcqRel);
}
