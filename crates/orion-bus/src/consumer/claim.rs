//! Taking entries over: the pending entries list read a page at a time,
//! the claim script (which checks, with the `XCLAIM`, that an entry is
//! still pending, idle, held by whom it should be and still in the
//! stream), in-flight slots for claimed entries (waited for in the
//! semaphore's FIFO queue), and the rules that tell a dead consumer from a
//! slow one (its name lease, and two sightings a heartbeat apart).
//!
//! [`take_over`] dead-letters entries past `max_deliveries` or deleted, and
//! queues the others for the workers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Shared, Work, dead_letter};
use crate::metrics::DeadLetterReason;
use crate::telemetry::{EntriesClaimed, InternalEvent};
use crate::wire::{self, RawEntry};

/// Pending entries looked at per stream per pass.
pub(super) const PAGE: usize = 128;

/// One row of `XPENDING ... IDLE`.
#[derive(Debug, Clone)]
pub(super) struct PendingRow {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) idle: Duration,
    pub(super) deliveries: u64,
    /// Idle time the entry must still have when claimed, if more than the
    /// pass's minimum.
    pub(super) min_idle: Option<Duration>,
}

pub(super) async fn xpending(
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
            min_idle: None,
        })
        .collect())
}

/// Claims the given entries for `ARGV[2]` in one step, each only if it is
/// still pending, idle for at least its own minimum, held by `ARGV[3]`
/// (when not empty) and still in the stream. Entries deleted from the
/// stream are not claimed (Redis 7's `XCLAIM` would drop them from the
/// pending list) but returned as gone, to be dead-lettered. With `ARGV[4]`
/// set, the `XCLAIM` is `JUSTID`: only the idle time is reset, no delivery
/// is counted (the heartbeat's touch). `KEYS`: the stream. `ARGV`: the
/// group, this consumer, the required owner, the `JUSTID` flag, then
/// `id, min idle ms` pairs. Returns `{XCLAIM reply, gone ids}`.
static CLAIM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local take = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], '0'}
local gone = {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 1 and p[1][3] >= tonumber(ARGV[i + 1]) and (ARGV[3] == '' or p[1][2] == ARGV[3]) then
    if #redis.call('XRANGE', KEYS[1], id, id) == 1 then
      take[#take + 1] = id
    else
      gone[#gone + 1] = id
    end
  end
end
local claimed = {}
if #take > 5 then
  if ARGV[4] ~= '' then take[#take + 1] = 'JUSTID' end
  claimed = redis.call(unpack(take))
end
return {claimed, gone}
",
    )
});

/// Claims `rows` (id, min idle) for this consumer (see [`CLAIM_SCRIPT`]):
/// entries still pending, idle for their minimum and, with `owner`, still
/// held by it.
/// Returns the entries claimed, plus, as entries without fields, those
/// deleted from the stream while pending (trimmed or `XDEL`ed), so that
/// they are dead-lettered as `deleted` rather than vanish; they stay
/// pending until their dead letter is written (once: the dead-letter
/// script skips entries no longer pending). Ids that someone else holds
/// now, or that were acked, are left out.
async fn claim(
    shared: &Shared,
    conn: &mut ConnectionManager,
    idx: usize,
    owner: Option<&str>,
    rows: &[(&str, Duration)],
) -> redis::RedisResult<Vec<RawEntry>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let stream = &*shared.sources[idx].stream;
    let mut call = CLAIM_SCRIPT.key(stream);
    call.arg(&shared.group)
        .arg(&shared.consumer)
        .arg(owner.unwrap_or(""))
        .arg("");
    for (id, min_idle) in rows {
        call.arg(*id).arg(millis(*min_idle));
    }
    let reply: (redis::Value, Vec<String>) = call.invoke_async(conn).await?;
    let (claimed, gone) = reply;
    let mut entries = wire::parse_entries(claimed).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "XCLAIM reply", e.0))
    })?;
    entries.extend(gone.into_iter().map(|id| RawEntry { id, fields: None }));
    Ok(entries)
}

/// Resets the idle time of `ids` (`XCLAIM ... JUSTID`, not a delivery)
/// where they are still pending on `consumer` and still in `stream`;
/// returns the ids found deleted, left pending untouched.
pub(super) async fn touch(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    consumer: &str,
    ids: &[&str],
) -> redis::RedisResult<Vec<String>> {
    let mut call = CLAIM_SCRIPT.key(stream);
    call.arg(group).arg(consumer).arg(consumer).arg("1");
    for id in ids {
        call.arg(*id).arg(0);
    }
    let (_, gone): (redis::Value, Vec<String>) = call.invoke_async(conn).await?;
    Ok(gone)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long a periodic pass waits for a free in-flight slot before it
/// leaves the rest for the next pass: the reader's blocking read returns
/// (and frees its slots) within `block`.
pub(super) fn slot_wait(shared: &Shared) -> Duration {
    shared.options.block + Duration::from_millis(250)
}

/// Up to `want` in-flight slots (at most `max_in_flight`). With a `wait`
/// limit, waits in the semaphore's FIFO queue, at most that long, for all
/// of them, so that the reader cannot take the slots freed in between;
/// failing that, for one. Without (`None`: until `stop`), waits for one.
/// Then takes what else is free.
async fn slots(
    in_flight: &Arc<Semaphore>,
    want: usize,
    max_in_flight: usize,
    wait: Option<Duration>,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    let many = u32::try_from(want.clamp(1, max_in_flight.max(1))).unwrap_or(1);
    let timed = |n: u32| {
        let fut = in_flight.clone().acquire_many_owned(n);
        async move {
            match wait {
                Some(w) => tokio::time::timeout(w, fut).await.ok()?.ok(),
                None => fut.await.ok(),
            }
        }
    };
    // At start (no wait limit) nothing else competes: take slots as the
    // workers free them, one at least.
    let first = if wait.is_some() { many } else { 1 };
    let got = tokio::select! {
        () = stop.cancelled() => return None,
        p = timed(first) => p,
    };
    let mut permit = match got {
        Some(p) => p,
        None => tokio::select! {
            () = stop.cancelled() => return None,
            p = timed(1) => p?,
        },
    };
    while permit.num_permits() < want {
        match in_flight.clone().try_acquire_owned() {
            Ok(p) => permit.merge(p),
            Err(_) => break,
        }
    }
    Some(permit)
}

/// Takes over `rows` (all of one stream, all eligible at `min_idle`):
/// entries past `max_deliveries` are dead-lettered, the others claimed and
/// queued for the workers in batches, as in-flight slots and the limit
/// allow. Each batch waits for a slot up to `wait` (`None`: until `stop`).
/// Returns false when it stopped early for want of a slot.
#[allow(clippy::too_many_arguments)]
pub(super) async fn take_over(
    shared: &Shared,
    conn: &mut ConnectionManager,
    idx: usize,
    rows: &[PendingRow],
    min_idle: Duration,
    owner: Option<&str>,
    queue: &mpsc::UnboundedSender<Work>,
    in_flight: &Arc<Semaphore>,
    wait: Option<Duration>,
    stop: &CancellationToken,
) -> redis::RedisResult<bool> {
    let max = shared.options.max_deliveries;
    let (exhausted, retry): (Vec<&PendingRow>, Vec<&PendingRow>) =
        rows.iter().partition(|r| r.deliveries >= max);

    if !exhausted.is_empty() {
        let ids: Vec<(&str, Duration)> = exhausted
            .iter()
            .map(|r| (r.id.as_str(), r.min_idle.unwrap_or(min_idle).max(min_idle)))
            .collect();
        for entry in claim(shared, conn, idx, owner, &ids).await? {
            let deliveries = exhausted
                .iter()
                .find(|r| r.id == entry.id)
                .map_or(max, |r| r.deliveries);
            if entry.fields.is_none() {
                let e = wire::DecodeError::Deleted;
                let reason = DeadLetterReason::Poison(e.poison_reason());
                dead_letter::write(shared, idx, &entry, reason, &e.to_string(), deliveries).await;
                continue;
            }
            let error =
                format!("delivered {deliveries} times (max_deliveries {max}) without success");
            let reason = DeadLetterReason::MaxDeliveries;
            dead_letter::write(shared, idx, &entry, reason, &error, deliveries).await;
        }
    }

    let mut rest = retry.as_slice();
    while !rest.is_empty() {
        if shared.budget.exhausted() {
            return Ok(true);
        }
        let Some(mut permit) = slots(
            in_flight,
            rest.len(),
            shared.options.max_in_flight,
            wait,
            stop,
        )
        .await
        else {
            return Ok(false);
        };
        let granted = shared.budget.take(permit.num_permits());
        if granted == 0 {
            return Ok(true);
        }
        if granted < permit.num_permits() {
            drop(permit.split(permit.num_permits() - granted));
        }
        let (batch, later) = rest.split_at(granted.min(rest.len()));
        rest = later;
        let ids: Vec<(&str, Duration)> = batch
            .iter()
            .map(|r| (r.id.as_str(), r.min_idle.unwrap_or(min_idle).max(min_idle)))
            .collect();
        let entries = match claim(shared, conn, idx, owner, &ids).await {
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
            let Some(slot) = permit.split(1) else { break };
            let row = batch.iter().find(|r| r.id == entry.id);
            let deliveries = row.map_or(1, |r| r.deliveries) + 1;
            if let Some(row) = row.filter(|r| r.owner != shared.consumer) {
                shared.stats.claimed.fetch_add(1, Ordering::AcqRel);
                EntriesClaimed {
                    stream: &shared.sources[idx].stream,
                    group: &shared.group,
                    id: &entry.id,
                    from: &row.owner,
                }
                .emit(shared.bus.metrics());
            }
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
                    permit: slot,
                    deliveries,
                },
            );
        }
    }
    Ok(true)
}

/// When each candidate orphan, by (source, id), was first seen idle.
pub(super) type Sightings =
    std::sync::Mutex<std::collections::HashMap<(usize, String), std::time::Instant>>;

/// Of `rows` (other consumers' entries idle for `claim_idle`), those first
/// seen at least a heartbeat interval (`claim_idle / 3`, plus 250 ms) ago,
/// each with the idle time it must still have to be claimed: `claim_idle`
/// plus the time since, less 100 ms. An owner that touched the entry since
/// makes that check fail. The rest are noted for a later pass.
pub(super) fn sighted_twice(
    seen: &Sightings,
    idx: usize,
    rows: Vec<PendingRow>,
    claim_idle: Duration,
) -> Vec<PendingRow> {
    let Ok(mut seen) = seen.lock() else {
        return Vec::new();
    };
    let now = std::time::Instant::now();
    let wait = claim_idle / 3 + Duration::from_millis(250);
    // Forget sightings too old to matter (claimed, acked, or gone).
    let keep = claim_idle * 10 + Duration::from_secs(10);
    seen.retain(|_, first| now.duration_since(*first) < keep);
    let mut ready = Vec::new();
    for mut row in rows {
        let first = *seen.entry((idx, row.id.clone())).or_insert(now);
        let since = now.duration_since(first);
        if since >= wait {
            seen.remove(&(idx, row.id.clone()));
            row.min_idle = Some((claim_idle + since).saturating_sub(Duration::from_millis(100)));
            ready.push(row);
        }
    }
    ready
}

/// `rows` less those whose owner holds its name lease (is alive).
pub(super) async fn without_live_owners(
    shared: &Shared,
    conn: &mut ConnectionManager,
    rows: Vec<PendingRow>,
) -> redis::RedisResult<Vec<PendingRow>> {
    let mut owners: Vec<&str> = rows.iter().map(|r| r.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    if owners.is_empty() {
        return Ok(rows);
    }
    let mut pipe = redis::pipe();
    for owner in &owners {
        pipe.cmd("EXISTS").arg(shared.lease.key_for(owner));
    }
    let alive: Vec<bool> = pipe.query_async(conn).await?;
    let live: std::collections::HashSet<String> = owners
        .iter()
        .zip(alive)
        .filter(|(_, a)| *a)
        .map(|(o, _)| (*o).to_owned())
        .collect();
    Ok(rows
        .into_iter()
        .filter(|r| !live.contains(&r.owner))
        .collect())
}
