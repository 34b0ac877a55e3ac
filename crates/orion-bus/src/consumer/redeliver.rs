//! Redelivery: everything that happens to entries already delivered once.
//!
//! Owns four duties, all driven by what Redis records (`XPENDING` idle
//! times and delivery counts), never by process memory, so they hold across
//! restarts and across consumers:
//! - at start, the consumer's **own pending entries** (left by a crash or a
//!   restart) are claimed back and handled before any new entry, in
//!   batches as in-flight slots free up;
//! - while running, own pending entries that nothing is working on are
//!   taken back: **failed** ones once idle for their backoff
//!   (`retry_backoff * 2^(deliveries-1)`, capped, with a stable ±25% jitter
//!   per entry), and **phantoms** (delivered by a read whose reply was
//!   lost, e.g. to a timeout) at once;
//! - an entry pending on **another** consumer for `claim_idle` is taken
//!   over: that consumer is presumed dead;
//! - an entry delivered `max_deliveries` times goes to the dead-letter
//!   stream instead, and one deleted from the stream while pending goes
//!   there with reason `deleted`.
//!
//! Other consumers' entries are claimed only once this consumer has run,
//! and seen Redis answer promptly, for `claim_idle`, only when their owner's
//! name lease has expired, and only when seen idle on two passes a
//! heartbeat interval apart and untouched in between: after a Redis outage
//! or freeze every consumer's entries look idle until the heartbeats get
//! through again.
//!
//! Each pass reads the pending entries list to its end, a page at a time
//! (`XPENDING ... IDLE`), so no backlog hides an orphan. It takes
//! in-flight slots like the reader does, but waits for them in the
//! semaphore's FIFO queue, so a reader blocked in `XREADGROUP` (holding
//! slots for entries it may not get) hands them over when its read
//! returns: claims cannot be starved. The group's upkeep
//! ([`super::group::housekeeping`]) runs from here too; the heartbeat has
//! a thread of its own ([`super::heartbeat`]).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::claim::{
    PAGE, PendingRow, Sightings, sighted_twice, slot_wait, take_over, without_live_owners, xpending,
};
use super::{Shared, Work, group};
use crate::telemetry::{InternalEvent, RedisCommandFailed};

/// The wait before redelivering an entry delivered `deliveries` times.
fn backoff_for(shared: &Shared, id: &str, deliveries: u64) -> Duration {
    let o = &shared.options;
    backoff_delay(o.retry_backoff, o.retry_backoff_max, id, deliveries)
}

/// `first × 2^(deliveries-1)`, capped at `max`, times a jitter factor in
/// [0.75, 1.25) that is fixed for each entry id.
fn backoff_delay(first: Duration, max: Duration, id: &str, deliveries: u64) -> Duration {
    let doublings = u32::try_from(deliveries.saturating_sub(1).min(30)).unwrap_or(30);
    let base = first.saturating_mul(1u32 << doublings).min(max);
    // Stable jitter per entry, so the threshold does not move between passes.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    let factor = 0.75 + (h.finish() % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

/// At start: claims back and queues every entry pending on this consumer
/// (dead-lettering those past `max_deliveries`), before any new read. It
/// goes a page at a time and waits for slots as the workers free them,
/// so it never needs more slots than exist.
pub(super) async fn own_pending_first(
    shared: &Shared,
    queue: &mpsc::UnboundedSender<Work>,
    in_flight: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) {
    let mut conn = shared.conn.clone();
    for idx in 0..shared.sources.len() {
        let stream = &*shared.sources[idx].stream;
        let mut start = "-".to_owned();
        let mut total = 0;
        loop {
            if shutdown.is_cancelled() || shared.budget.exhausted() {
                return;
            }
            let rows = match xpending(
                &mut conn,
                stream,
                &shared.group,
                None,
                &start,
                Some(&shared.consumer),
            )
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    // The periodic pass takes them back later; do not
                    // block start-up.
                    RedisCommandFailed::warn(&e, "reading own pending entries failed")
                        .stream(stream)
                        .group(&shared.group)
                        .emit(shared.bus.metrics());
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            start = format!("({}", last.id);
            let full = rows.len() == PAGE;
            let rows: Vec<PendingRow> = rows
                .into_iter()
                .filter(|r| !shared.is_tracked(idx, &r.id))
                .collect();
            if total == 0 && !rows.is_empty() {
                tracing::info!(stream, group = %shared.group, "handling own pending entries first");
            }
            total += rows.len();
            match take_over(
                shared,
                &mut conn,
                idx,
                &rows,
                Duration::ZERO,
                Some(&shared.consumer),
                queue,
                in_flight,
                None,
                shutdown,
            )
            .await
            {
                Ok(true) => {}
                Ok(false) => return, // shutdown
                Err(e) => {
                    RedisCommandFailed::warn(&e, "claiming own pending entries failed")
                        .stream(stream)
                        .group(&shared.group)
                        .emit(shared.bus.metrics());
                    break;
                }
            }
            if !full {
                break;
            }
        }
        if total > 0 {
            tracing::info!(stream, group = %shared.group, entries = total, "own pending entries taken back");
        }
    }
}

/// The periodic pass and the group's upkeep, until `stop`, when it drops
/// its end of the work queue at once (so an idle consumer stops without
/// waiting for a tick).
pub(super) async fn run(
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Work>,
    in_flight: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let o = &shared.options;
    let tick = (o.retry_backoff / 2)
        .min(o.claim_idle / 3)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut conn = shared.conn.clone();
    let mut last_upkeep = tokio::time::Instant::now();
    // When this consumer started, or last saw Redis fail or stall: every
    // live consumer's entries may look idle then, until its heartbeat
    // (every claim_idle / 3) gets through again. Orphans are claimed only
    // claim_idle after that, so a Redis outage or freeze never makes live
    // consumers' entries look dead.
    let mut unsure_since = tokio::time::Instant::now();
    let seen = Sightings::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(crate::backoff::jitter(tick)) => {}
        }
        let probe = tokio::time::Instant::now();
        let ping_cmd = redis::cmd("PING");
        let ping = tokio::select! {
            () = stop.cancelled() => return,
            r = ping_cmd.query_async::<()>(&mut conn) => r,
        };
        if ping.is_err() || probe.elapsed() > o.claim_idle / 3 {
            unsure_since = tokio::time::Instant::now();
        }
        let claim_orphans = unsure_since.elapsed() >= o.claim_idle;
        if last_upkeep.elapsed() >= o.housekeeping_interval {
            // Whoever trims (a Python publisher too), this group notices.
            tokio::select! {
                () = stop.cancelled() => return,
                () = group::housekeeping(&shared, &mut conn) => {}
            }
            last_upkeep = tokio::time::Instant::now();
        }
        for idx in 0..shared.sources.len() {
            let result = tokio::select! {
                () = stop.cancelled() => return,
                r = pass(&shared, &mut conn, idx, &queue, &in_flight, &stop, claim_orphans, &seen) => r,
            };
            if let Err(e) = result
                && e.code() != Some("NOGROUP")
            {
                RedisCommandFailed::warn(&e, "redelivery pass failed; will retry")
                    .stream(&shared.sources[idx].stream)
                    .group(&shared.group)
                    .emit(shared.bus.metrics());
            }
        }
    }
}

/// Every row of `XPENDING stream group IDLE min_idle - +` (of `consumer`
/// alone, if given), page by page, passed to `visit` with each page; stops
/// when `visit` returns false.
async fn each_page<F, Fut>(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    min_idle: Duration,
    consumer: Option<&str>,
    mut visit: F,
) -> redis::RedisResult<()>
where
    F: FnMut(Vec<PendingRow>, ConnectionManager) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<bool>>,
{
    let mut start = "-".to_owned();
    loop {
        let rows = xpending(conn, stream, group, Some(min_idle), &start, consumer).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        start = format!("({}", last.id);
        let full = rows.len() == PAGE;
        if !visit(rows, conn.clone()).await? || !full {
            return Ok(());
        }
    }
}

/// One look at a stream's whole pending entries list: own entries nothing
/// is working on, then (with `claim_orphans`) other consumers' entries
/// idle for `claim_idle`.
#[allow(clippy::too_many_arguments)]
async fn pass(
    shared: &Shared,
    conn: &mut ConnectionManager,
    idx: usize,
    queue: &mpsc::UnboundedSender<Work>,
    in_flight: &Arc<Semaphore>,
    stop: &CancellationToken,
    claim_orphans: bool,
    seen: &Sightings,
) -> redis::RedisResult<()> {
    let o = &shared.options;
    if shared.budget.exhausted() {
        return Ok(());
    }
    let stream = &*shared.sources[idx].stream;
    let wait = Some(slot_wait(shared));
    // Own entries: a page of this consumer's own list costs little (it
    // holds only what it works on, what failed and phantoms).
    each_page(
        conn,
        stream,
        &shared.group,
        Duration::ZERO,
        Some(&shared.consumer),
        |rows, mut c| async move {
            let mine: Vec<PendingRow> = rows
                .into_iter()
                .filter(|r| {
                    !shared.is_tracked(idx, &r.id)
                        && shared.delivered_before_current_read(r.idle)
                        && shared
                            .failed_at(idx, &r.id, false)
                            .is_none_or(|at| at.elapsed() >= backoff_for(shared, &r.id, r.deliveries))
                })
                .collect();
            for r in &mine {
                if shared.failed_at(idx, &r.id, true).is_none() {
                    tracing::info!(stream, group = %shared.group, id = %r.id, "taking back an entry delivered to this consumer whose read reply was lost");
                }
            }
            // Claimed only while still held by this consumer: one that
            // another consumer took over in the meantime stays with it.
            take_over(
                shared,
                &mut c,
                idx,
                &mine,
                Duration::ZERO,
                Some(&shared.consumer),
                queue,
                in_flight,
                wait,
                stop,
            )
            .await
        },
    )
    .await?;
    if !claim_orphans {
        return Ok(());
    }
    each_page(
        conn,
        stream,
        &shared.group,
        o.claim_idle,
        None,
        |rows, mut c| async move {
            let candidates: Vec<PendingRow> = rows
                .into_iter()
                .filter(|r| r.owner != shared.consumer)
                .collect();
            // An owner whose name lease is alive is not dead, only slow to
            // beat (a Redis outage, a failed entry waiting out a backoff
            // longer than claim_idle, an entry deleted while its handler
            // runs): its entries stay with it.
            let orphans = without_live_owners(shared, &mut c, candidates).await?;
            // Seen idle twice, a heartbeat interval apart, and untouched
            // in between (its idle time grew by all that time): a Redis
            // outage or freeze makes every entry look idle, but a live
            // owner's heartbeat touches its entries within claim_idle / 3
            // of Redis answering again.
            let orphans = sighted_twice(seen, idx, orphans, o.claim_idle);
            for row in &orphans {
                tracing::info!(
                    stream,
                    group = %shared.group,
                    id = %row.id,
                    owner = %row.owner,
                    idle = ?row.idle,
                    "claiming an entry from a consumer presumed dead"
                );
            }
            take_over(
                shared,
                &mut c,
                idx,
                &orphans,
                o.claim_idle,
                None,
                queue,
                in_flight,
                wait,
                stop,
            )
            .await
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_double_up_to_the_cap_with_stable_jitter() {
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let factor =
            |id: &str| backoff_delay(first, max, id, 1).as_secs_f64() / first.as_secs_f64();
        for id in ["1-0", "1700000000000-7", "x"] {
            let f = factor(id);
            assert!((0.75..1.25).contains(&f), "{id}: {f}");
            for (deliveries, base_ms) in [
                (1, 100),
                (2, 200),
                (3, 400),
                (5, 1600),
                (6, 2000),
                (60, 2000),
            ] {
                let d = backoff_delay(first, max, id, deliveries);
                let want = Duration::from_millis(base_ms).mul_f64(f);
                let diff = d.abs_diff(want);
                assert!(
                    diff < Duration::from_micros(10),
                    "{id} #{deliveries}: {d:?} vs {want:?}"
                );
                // The same entry gets the same wait every time.
                assert_eq!(d, backoff_delay(first, max, id, deliveries));
            }
        }
        assert_ne!(factor("1-0"), factor("2-0"), "entries are spread out");
    }
}
