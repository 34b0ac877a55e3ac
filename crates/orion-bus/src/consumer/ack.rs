//! The acker: batches `XACK`s for entries whose handler succeeded.
//!
//! Owns the ack channel's receiving end. Every ack request carries the
//! entry's in-flight permit, which is released only once Redis confirmed
//! the ack, so the in-flight cap counts un-acked entries. Batching is
//! opportunistic: whatever is queued when a batch starts goes in one
//! pipeline (one `XACK` per stream), so a lone ack is never delayed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::Shared;
use crate::backoff::Backoff;
use crate::telemetry::{InternalEvent, RedisCommandFailed};

/// Most acks sent in one pipeline.
const MAX_BATCH: usize = 512;

/// A request to ack one entry.
#[derive(Debug)]
pub(super) struct Ack {
    /// Index of the entry's source stream.
    pub idx: usize,
    /// The entry id.
    pub id: String,
    /// The entry's in-flight slot, freed after the ack.
    pub permit: OwnedSemaphorePermit,
    /// Delivered before: its failure record is removed with the ack.
    pub retried: bool,
}

/// Runs until the channel closes and everything queued has been acked.
/// Redis errors are retried with backoff; the consumer aborts this task
/// when the shutdown grace period runs out, leaving the rest pending.
pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Ack>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut conn = shared.conn.clone();
    let mut backoff = Backoff::redis();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let pipe = build(&shared, &mut batch);
        loop {
            match pipe.query_async::<redis::Value>(&mut conn).await {
                Ok(_) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    let first = batch.first();
                    RedisCommandFailed::warn(&e, "XACK failed; retrying")
                        .stream(first.map_or("", |a| &*shared.sources[a.idx].stream))
                        .group(&shared.group)
                        .id(first.map_or("", |a| a.id.as_str()))
                        .entries(batch.len())
                        .emit(shared.bus.metrics());
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for ack in batch.drain(..) {
            let counters = &shared.sources[ack.idx].counters;
            counters.acked.inc();
            if let Some(stored) = crate::wire::id_millis(&ack.id) {
                counters
                    .end_to_end
                    .observe(now_ms.saturating_sub(stored) as f64 / 1000.0);
            }
            shared.stats.acked.fetch_add(1, Ordering::AcqRel);
            shared.untrack(ack.idx, &ack.id);
            drop(ack.permit);
        }
    }
}

/// One `XACK stream group id...` per stream present in the batch, plus
/// the removal of failure records of entries that had failed before.
fn build(shared: &Shared, batch: &mut [Ack]) -> redis::Pipeline {
    batch.sort_by_key(|a| a.idx);
    let mut pipe = redis::pipe();
    for a in batch.iter() {
        if a.retried {
            pipe.cmd("HDEL")
                .arg(&shared.sources[a.idx].failures)
                .arg(&super::dead_letter::record_fields(&a.id))
                .ignore();
        }
    }
    let mut start = 0;
    while start < batch.len() {
        let idx = batch[start].idx;
        let end = start + batch[start..].iter().take_while(|a| a.idx == idx).count();
        let cmd = pipe
            .cmd("XACK")
            .arg(&*shared.sources[idx].stream)
            .arg(&shared.group);
        for a in &batch[start..end] {
            cmd.arg(&a.id);
        }
        start = end;
    }
    pipe
}
