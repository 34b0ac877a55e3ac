//! Redelivery: everything that happens to entries already delivered once.
//!
//! Owns four duties, all driven by what Redis records (`XPENDING` idle
//! times and delivery counts), never by process memory, so they hold across
//! restarts and across consumers:
//! - at start, the consumer's **own pending entries** (left by a crash or a
//!   restart) are claimed back and handled before any new entry;
//! - a **failed** entry of this consumer is redelivered once it has been
//!   idle for its backoff (`retry_backoff * 2^(deliveries-1)`, capped, with
//!   a stable ±25% jitter per entry);
//! - an entry pending on **another** consumer for `claim_idle` is taken
//!   over: that consumer is presumed dead;
//! - an entry delivered `max_deliveries` times goes to the dead-letter
//!   stream instead.
//!
//! And the **heartbeat**: every `claim_idle / 3`, entries this consumer is
//! still working on get their idle time reset (`XCLAIM ... JUSTID`, which
//! does not count as a delivery), so a slow handler on a live consumer is
//! never mistaken for a dead one.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Shared, Work, dead_letter};
use crate::retention;
use crate::wire::{self, RawEntry};

/// Pending entries looked at per stream per pass.
const PAGE: usize = 128;

/// How often a consumer checks its streams for entries its group lost to
/// trimming.
const LOSS_CHECK_EVERY: Duration = Duration::from_secs(5);

/// One row of `XPENDING ... IDLE`.
#[derive(Debug, Clone)]
struct PendingRow {
    id: String,
    owner: String,
    idle: Duration,
    deliveries: u64,
}

async fn xpending(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    min_idle: Option<Duration>,
    start: &str,
    consumer: Option<&str>,
) -> redis::RedisResult<Vec<PendingRow>> {
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(stream).arg(group);
    if let Some(idle) = min_idle {
        cmd.arg("IDLE").arg(millis(idle));
    }
    cmd.arg(start).arg("+").arg(PAGE);
    if let Some(c) = consumer {
        cmd.arg(c);
    }
    let rows: Vec<(String, String, u64, u64)> = cmd.query_async(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(id, owner, idle, deliveries)| PendingRow {
            id,
            owner,
            idle: Duration::from_millis(idle),
            deliveries,
        })
        .collect())
}

/// `XCLAIM`s `ids` for this consumer if still idle for `min_idle`; returns
/// the entries claimed, plus, as entries without fields, those deleted
/// from the stream while pending (trimmed or `XDEL`ed), so that they are
/// dead-lettered as `deleted` rather than vanish. They are found before
/// the `XCLAIM`, which on Redis 7 drops such ids from the pending list
/// without a word; they stay pending until their dead letter is written
/// (once: the dead-letter script skips entries no longer pending). Ids
/// grabbed by someone else in between are left out.
async fn claim(
    shared: &Shared,
    conn: &mut ConnectionManager,
    idx: usize,
    min_idle: Duration,
    ids: &[&str],
) -> redis::RedisResult<Vec<RawEntry>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let stream = &*shared.sources[idx].stream;
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XRANGE").arg(stream).arg(*id).arg(*id);
    }
    let found: Vec<redis::Value> = pipe.query_async(conn).await?;
    let (mut gone, mut present) = (Vec::new(), Vec::new());
    for (id, reply) in ids.iter().copied().zip(found) {
        if matches!(&reply, redis::Value::Array(rows) if rows.is_empty()) {
            gone.push(RawEntry {
                id: id.to_owned(),
                fields: None,
            });
        } else {
            present.push(id);
        }
    }
    let mut entries = Vec::new();
    if !present.is_empty() {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(stream)
            .arg(&shared.group)
            .arg(&shared.consumer)
            .arg(millis(min_idle))
            .arg(&present);
        let raw: redis::Value = cmd.query_async(conn).await?;
        entries = wire::parse_entries(raw).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "XCLAIM reply", e.0))
        })?;
        // Deleted between the check and the claim: Redis 7 has dropped it
        // from the pending list already; nothing left to dead-letter.
        for id in present {
            if !entries.iter().any(|e| e.id == id) {
                tracing::debug!(stream, group = %shared.group, id, "not claimed: taken by another consumer, or deleted just now");
            }
        }
    }
    entries.extend(gone);
    Ok(entries)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

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

/// Claims `rows` (all of one stream, all eligible at `min_idle`): entries
/// past `max_deliveries` are dead-lettered, the others queued for the
/// workers as far as in-flight slots and the limit allow. With `wait`, it
/// waits for slots (start-up); otherwise it takes only free ones.
#[allow(clippy::too_many_arguments)]
async fn take_over(
    shared: &Shared,
    conn: &mut ConnectionManager,
    idx: usize,
    rows: &[PendingRow],
    min_idle: Duration,
    queue: &mpsc::UnboundedSender<Work>,
    in_flight: &Arc<Semaphore>,
    wait: Option<&CancellationToken>,
) -> redis::RedisResult<()> {
    let max = shared.options.max_deliveries;
    let (exhausted, retry): (Vec<&PendingRow>, Vec<&PendingRow>) =
        rows.iter().partition(|r| r.deliveries >= max);

    if !exhausted.is_empty() {
        let ids: Vec<&str> = exhausted.iter().map(|r| r.id.as_str()).collect();
        for entry in claim(shared, conn, idx, min_idle, &ids).await? {
            let deliveries = exhausted
                .iter()
                .find(|r| r.id == entry.id)
                .map_or(max, |r| r.deliveries);
            if entry.fields.is_none() {
                let e = wire::DecodeError::Deleted;
                dead_letter::write(shared, idx, &entry, e.reason(), &e.to_string(), deliveries)
                    .await;
                continue;
            }
            let error =
                format!("delivered {deliveries} times (max_deliveries {max}) without success");
            dead_letter::write(shared, idx, &entry, "max_deliveries", &error, deliveries).await;
        }
    }

    let mut permits = Vec::new();
    for _ in &retry {
        let permit = match wait {
            Some(shutdown) => tokio::select! {
                () = shutdown.cancelled() => None,
                p = in_flight.clone().acquire_owned() => p.ok(),
            },
            None => in_flight.clone().try_acquire_owned().ok(),
        };
        match permit {
            Some(p) => permits.push(p),
            None => break,
        }
    }
    let granted = shared.budget.take(permits.len());
    permits.truncate(granted);
    let ids: Vec<&str> = retry.iter().take(granted).map(|r| r.id.as_str()).collect();
    let entries = match claim(shared, conn, idx, min_idle, &ids).await {
        Ok(e) => e,
        Err(e) => {
            shared.budget.give_back(granted);
            return Err(e);
        }
    };
    shared
        .budget
        .give_back(granted - entries.len().min(granted));
    for entry in entries {
        let Some(permit) = permits.pop() else { break };
        let deliveries = retry
            .iter()
            .find(|r| r.id == entry.id)
            .map_or(1, |r| r.deliveries)
            + 1;
        tracing::debug!(
            stream = %shared.sources[idx].stream,
            group = %shared.group,
            id = %entry.id,
            deliveries,
            "redelivering"
        );
        shared.queue(
            queue,
            Work {
                idx,
                entry,
                permit,
                deliveries,
            },
        );
    }
    Ok(())
}

/// At start: claim back and queue every entry pending on this consumer
/// (dead-lettering those past `max_deliveries`), before any new read.
pub(super) async fn own_pending_first(
    shared: &Shared,
    queue: &mpsc::UnboundedSender<Work>,
    in_flight: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) {
    let mut conn = shared.conn.clone();
    for idx in 0..shared.sources.len() {
        let mut start = "-".to_owned();
        loop {
            if shutdown.is_cancelled() || shared.budget.exhausted() {
                return;
            }
            let stream = &*shared.sources[idx].stream;
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
                    // The redeliverer will find them later; do not block start-up.
                    shared.bus.metrics().redis_error(&e);
                    tracing::warn!(stream, group = %shared.group, error = %e, "reading own pending entries failed");
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            start = format!("({}", last.id);
            let rows: Vec<PendingRow> = rows
                .into_iter()
                .filter(|r| !shared.is_tracked(idx, &r.id))
                .collect();
            tracing::info!(
                stream,
                group = %shared.group,
                entries = rows.len(),
                "handling own pending entries first"
            );
            if let Err(e) = take_over(
                shared,
                &mut conn,
                idx,
                &rows,
                Duration::ZERO,
                queue,
                in_flight,
                Some(shutdown),
            )
            .await
            {
                shared.bus.metrics().redis_error(&e);
                tracing::warn!(stream, group = %shared.group, error = %e, "claiming own pending entries failed");
                break;
            }
        }
    }
}

/// The periodic pass and the heartbeat, until `stop_heartbeat`. Claiming
/// stops at `stop_claiming` (shutdown or limit reached), the heartbeat
/// goes on while in-flight entries drain.
pub(super) async fn run(
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Work>,
    in_flight: Arc<Semaphore>,
    stop_claiming: CancellationToken,
    stop_heartbeat: CancellationToken,
) {
    let o = &shared.options;
    let tick = (o.retry_backoff / 2)
        .min(o.claim_idle / 3)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let beat_every = o.claim_idle / 3;
    let mut conn = shared.conn.clone();
    let mut queue = Some(queue);
    let mut last_beat = tokio::time::Instant::now();
    let mut last_loss_check = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop_heartbeat.cancelled() => return,
            () = tokio::time::sleep(crate::backoff::jitter(tick)) => {}
        }
        if stop_claiming.is_cancelled() {
            // No more claims: let the workers see the queue close.
            queue = None;
        }
        if last_beat.elapsed() >= beat_every {
            heartbeat(&shared, &mut conn).await;
            last_beat = tokio::time::Instant::now();
        }
        if last_loss_check.elapsed() >= LOSS_CHECK_EVERY {
            // Whoever trims (a Python publisher too), this group notices.
            for s in &shared.sources {
                if let Err(e) = retention::check_loss(
                    &mut conn,
                    shared.bus.metrics(),
                    &s.stream,
                    Some(&shared.group),
                )
                .await
                {
                    shared.bus.metrics().redis_error(&e);
                    tracing::warn!(stream = %s.stream, group = %shared.group, error = %e, "loss check failed");
                }
            }
            last_loss_check = tokio::time::Instant::now();
        }
        if let Some(q) = &queue {
            for idx in 0..shared.sources.len() {
                if let Err(e) = pass(&shared, &mut conn, idx, q, &in_flight).await {
                    shared.bus.metrics().redis_error(&e);
                    tracing::warn!(
                        stream = %shared.sources[idx].stream,
                        group = %shared.group,
                        error = %e,
                        "redelivery pass failed; will retry"
                    );
                }
            }
        }
    }
}

/// One look at a stream's pending entries.
async fn pass(
    shared: &Shared,
    conn: &mut ConnectionManager,
    idx: usize,
    queue: &mpsc::UnboundedSender<Work>,
    in_flight: &Arc<Semaphore>,
) -> redis::RedisResult<()> {
    let o = &shared.options;
    if shared.budget.exhausted() || in_flight.available_permits() == 0 {
        return Ok(());
    }
    let threshold = o.retry_backoff.mul_f64(0.75).min(o.claim_idle);
    let stream = &*shared.sources[idx].stream;
    let rows = xpending(conn, stream, &shared.group, Some(threshold), "-", None).await?;
    let mut mine = Vec::new();
    let mut orphans = Vec::new();
    for row in rows {
        if row.owner == shared.consumer {
            if !shared.is_tracked(idx, &row.id)
                && row.idle >= backoff_for(shared, &row.id, row.deliveries)
            {
                mine.push(row);
            }
        } else if row.idle >= o.claim_idle {
            tracing::info!(
                stream,
                group = %shared.group,
                id = %row.id,
                owner = %row.owner,
                idle = ?row.idle,
                "claiming an entry from a consumer presumed dead"
            );
            orphans.push(row);
        }
    }
    take_over(shared, conn, idx, &mine, threshold, queue, in_flight, None).await?;
    take_over(
        shared,
        conn,
        idx,
        &orphans,
        o.claim_idle,
        queue,
        in_flight,
        None,
    )
    .await
}

/// Extends each hold on an idempotency key that this consumer still has.
/// `KEYS`: the keys. `ARGV`: the consumer, the hold in milliseconds.
static REFRESH_HOLDS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    n = n + 1
  end
end
return n
",
    )
});

/// Resets the idle time of every entry this consumer is working on, and
/// extends its holds on their idempotency keys.
async fn heartbeat(shared: &Shared, conn: &mut ConnectionManager) {
    let held: Vec<String> = shared
        .held_keys
        .lock()
        .map(|h| h.iter().cloned().collect())
        .unwrap_or_default();
    for chunk in held.chunks(256) {
        let mut call = REFRESH_HOLDS_SCRIPT.prepare_invoke();
        for key in chunk {
            call.key(key);
        }
        call.arg(&shared.consumer).arg(shared.key_hold_ms());
        if let Err(e) = call.invoke_async::<i64>(conn).await {
            shared.bus.metrics().redis_error(&e);
            tracing::warn!(
                stream = %shared.stream_names(None),
                group = %shared.group,
                error = %e,
                "refreshing idempotency holds failed; a slow handler's key may be taken over"
            );
        }
    }
    let tracked: Vec<(usize, String)> = match shared.in_flight_ids.lock() {
        Ok(set) => set.iter().cloned().collect(),
        Err(_) => return,
    };
    for idx in 0..shared.sources.len() {
        let ids: Vec<&str> = tracked
            .iter()
            .filter(|(i, _)| *i == idx)
            .map(|(_, id)| id.as_str())
            .collect();
        for chunk in ids.chunks(256) {
            let result: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
                .arg(&*shared.sources[idx].stream)
                .arg(&shared.group)
                .arg(&shared.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async(conn)
                .await;
            if let Err(e) = result {
                shared.bus.metrics().redis_error(&e);
                tracing::warn!(
                    stream = %shared.sources[idx].stream,
                    group = %shared.group,
                    error = %e,
                    "heartbeat failed; in-flight entries may look idle"
                );
            }
        }
    }
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
