//! The consumer group's upkeep: creating it, recreating it where it stood
//! when it vanished, checking it for entries lost to trimming, and
//! removing its stale consumers.
//!
//! - **Create** (`XGROUP CREATE ... MKSTREAM`): `BUSYGROUP` counts as
//!   success, and so does any refusal (`OOM` at `maxmemory`, say) when
//!   `XINFO GROUPS` shows the group exists.
//! - **Recreate**: when a read answers `NOGROUP` (the stream was deleted,
//!   the group destroyed, or Redis restarted empty), the group is created
//!   again at the newest id this consumer knows the group had delivered,
//!   so that nothing is handled twice and nothing written since is
//!   skipped; at `0` when no such id is known. Logged, counted on
//!   `orion_bus_group_recreated_total`, and followed by a loss check.
//! - **Loss check** ([`retention::check_loss`]): before the first read,
//!   after each recreation and every `housekeeping_interval`.
//! - **Stale consumers**: consumers idle longer than
//!   `stale_consumer_after` with nothing pending are removed by a script
//!   that re-checks both conditions in the same step as the
//!   `XGROUP DELCONSUMER` (which would otherwise drop entries delivered in
//!   between). Each removal is logged, counted on
//!   `orion_bus_stale_consumers_removed_total` and recorded in the capped
//!   stream `{stream}:removed-consumers`, which `status` shows.

use std::sync::LazyLock;

use redis::Value;
use redis::aio::ConnectionManager;

use super::{ConsumeError, Shared, StartId};
use crate::reply::{field, int, text};
use crate::retention;
use crate::telemetry::{
    GroupRecreated, InternalEvent, LossCause, RedisCommandFailed, StaleConsumerRemoved,
    UnreadEntriesLost,
};

/// Removal records kept per stream (approximately).
const REMOVED_KEEP: u64 = 100;

/// The stream recording consumers removed from `stream`'s groups.
#[must_use]
pub(crate) fn removed_consumers_stream(stream: &str) -> String {
    format!("{stream}:removed-consumers")
}

/// `XGROUP CREATE <stream> <group> <start> MKSTREAM`. Returns whether it
/// was created (`false`: it existed).
pub(super) async fn create(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    start: &str,
    entries_read: Option<u64>,
) -> redis::RedisResult<bool> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM");
    if let Some(n) = entries_read {
        cmd.arg("ENTRIESREAD").arg(n);
    }
    let result: redis::RedisResult<()> = cmd.query_async(conn).await;
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        // Redis checks memory before it looks for the group: an existing
        // group must not fail a start at maxmemory.
        Err(e) => match exists(conn, stream, group).await {
            Ok(true) => Ok(false),
            _ => Err(e),
        },
    }
}

/// Whether `group` exists on `stream` (`XINFO GROUPS`).
async fn exists(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> redis::RedisResult<bool> {
    let groups: Value = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such key") => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(match &groups {
        Value::Array(items) => items
            .iter()
            .any(|g| field(g, "name").and_then(text).as_deref() == Some(group)),
        _ => false,
    })
}

/// Creates the group on every stream at start.
pub(super) async fn create_all(
    conn: &mut ConnectionManager,
    streams: impl Iterator<Item = &str>,
    group: &str,
    start: &StartId,
) -> Result<(), ConsumeError> {
    for stream in streams {
        create(conn, stream, group, start.as_arg(), None)
            .await
            .map_err(|source| ConsumeError::CreateGroup {
                stream: stream.to_owned(),
                group: group.to_owned(),
                source,
            })?;
    }
    Ok(())
}

/// After `NOGROUP`: creates the group again on source `idx` where it last
/// stood, then checks for losses. Returns false when Redis refused.
///
/// When the stream itself is new (empty, or deleted and written again, or
/// Redis restarted empty: fewer entries ever added than last seen), the
/// group starts with
/// `ENTRIESREAD 0`, so that Redis counts every entry of the new stream as
/// unread, and the entries the old stream still had undelivered at the
/// last loss check (its lag) are counted as lost with it.
pub(super) async fn recreate(shared: &Shared, idx: usize) -> bool {
    let source = &shared.sources[idx];
    let at = source.resume_id();
    let mut conn = shared.conn.clone();
    let state = match retention::StreamState::read_without_groups(&mut conn, &source.stream).await {
        Ok(s) => s,
        Err(e) => {
            RedisCommandFailed::warn(
                &e,
                "reading the stream before recreating its group failed; will retry",
            )
            .stream(&source.stream)
            .group(&shared.group)
            .emit(shared.bus.metrics());
            return false;
        }
    };
    let before = source.last_counts.lock().ok().and_then(|c| *c);
    let restarted = before.is_some_and(|(added, _)| state.entries_added.unwrap_or(0) < added);
    let new_stream = restarted || state.first_id.is_none();
    let entries_read = new_stream.then_some(0);
    match create(&mut conn, &source.stream, &shared.group, &at, entries_read).await {
        Ok(true) => {
            let metrics = shared.bus.metrics();
            GroupRecreated {
                stream: &source.stream,
                group: &shared.group,
                at: &at,
                new_stream,
            }
            .emit(metrics);
            // The new group's counters start over: so does what was
            // reported lost.
            metrics.forget_loss(&source.stream, &shared.group);
            if restarted
                && let Some((_, lag)) = before
                && lag > 0
            {
                UnreadEntriesLost {
                    stream: &source.stream,
                    group: &shared.group,
                    gap: &format!("recreated:{at}"),
                    lost: lag,
                    cause: LossCause::StreamGone,
                }
                .emit(metrics);
            }
        }
        Ok(false) => {} // another consumer recreated it first
        Err(e) => {
            RedisCommandFailed::warn(&e, "recreating the consumer group failed; will retry")
                .stream(&source.stream)
                .group(&shared.group)
                .emit(shared.bus.metrics());
            return false;
        }
    }
    check_loss(shared, &mut conn, idx).await;
    true
}

/// The loss check of source `idx`; also learns the group's position.
pub(super) async fn check_loss(shared: &Shared, conn: &mut ConnectionManager, idx: usize) {
    let source = &shared.sources[idx];
    match retention::check_loss(
        conn,
        shared.bus.metrics(),
        &source.stream,
        Some(&shared.group),
    )
    .await
    {
        Ok(check) => {
            let state = &check.state;
            if let Some(g) = state.groups.iter().find(|g| g.name == shared.group) {
                source.note_delivered(&g.last_delivered);
                // What is still in the stream, unread: counted when few
                // (Redis's lag is unknown after an XDEL, and also counts
                // entries already reported lost), else Redis's lag less
                // what was reported lost.
                // The loss check counted them already, unless the group has
                // read nothing yet.
                let unread = match check.unread_of(&shared.group) {
                    Some(n) => Ok(n),
                    None => retention::unread(conn, &source.stream, state, g).await,
                };
                let counted = match (g.entries_read, unread) {
                    (Some(_), Ok(Some(n))) => Some(n),
                    _ => g.lag.map(|lag| {
                        lag.saturating_sub(
                            shared
                                .bus
                                .metrics()
                                .reported_loss(&source.stream, &shared.group),
                        )
                    }),
                };
                if let (Some(added), Ok(mut counts)) =
                    (state.entries_added, source.last_counts.lock())
                {
                    *counts = counted.map(|unread| (added, unread));
                }
            }
        }
        Err(e) => {
            RedisCommandFailed::warn(&e, "loss check failed")
                .stream(&source.stream)
                .group(&shared.group)
                .emit(shared.bus.metrics());
        }
    }
}

/// Removes those of the named consumers (`ARGV[3..]`) that are, right
/// now, idle for at least `ARGV[2]` ms with nothing pending. `KEYS`: the
/// stream. `ARGV`: the group, the idle threshold, the names. Returns
/// `{name, idle}` pairs, flattened.
static SWEEP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local wanted = {}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local removed = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if wanted[name] and pending == 0 and idle >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed[#removed + 1] = name
    removed[#removed + 1] = idle
  end
end
return removed
",
    )
});

/// The group's consumers on `stream` that look stale: idle for at least
/// `idle_ms` with nothing pending, other than `me`.
async fn stale_candidates(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    idle_ms: u64,
    me: &str,
) -> redis::RedisResult<Vec<String>> {
    let raw: Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    let Value::Array(items) = raw else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .filter(|c| {
            field(c, "pending").and_then(int) == Some(0)
                && field(c, "idle").and_then(int).is_some_and(|i| i >= idle_ms)
        })
        .filter_map(|c| field(c, "name").and_then(text))
        .filter(|name| name != me)
        .collect())
}

/// Removes the group's stale consumers on source `idx`: idle for
/// `stale_consumer_after`, nothing pending, and no live process holding
/// the name's lease (Redis 7.0 does not refresh a consumer's idle time on
/// reads that return nothing, so a quiet live consumer looks idle).
pub(super) async fn sweep_stale(shared: &Shared, conn: &mut ConnectionManager, idx: usize) {
    let source = &shared.sources[idx];
    let idle_ms =
        u64::try_from(shared.options.stale_consumer_after.as_millis()).unwrap_or(u64::MAX);
    let result = async {
        let candidates = stale_candidates(
            conn,
            &source.stream,
            &shared.group,
            idle_ms,
            &shared.consumer,
        )
        .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &candidates {
            pipe.cmd("EXISTS").arg(shared.lease.key_for(name));
        }
        let leased: Vec<bool> = pipe.query_async(conn).await?;
        let names: Vec<&String> = candidates
            .iter()
            .zip(leased)
            .filter(|(_, live)| !live)
            .map(|(n, _)| n)
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<Value> = SWEEP_SCRIPT
            .key(&*source.stream)
            .arg(&shared.group)
            .arg(idle_ms)
            .arg(&names)
            .invoke_async(conn)
            .await?;
        Ok::<_, redis::RedisError>(
            flat.chunks(2)
                .filter_map(|pair| match pair {
                    [name, idle] => Some((
                        redis::from_redis_value::<String>(name.clone()).ok()?,
                        redis::from_redis_value::<u64>(idle.clone()).unwrap_or(0),
                    )),
                    _ => None,
                })
                .collect(),
        )
    };
    let removed: redis::RedisResult<Vec<(String, u64)>> = result.await;
    let removed = match removed {
        Ok(r) => r,
        Err(e) => {
            // NOGROUP: the reader recreates the group; nothing to sweep.
            if e.code() != Some("NOGROUP") {
                RedisCommandFailed::warn(&e, "stale-consumer sweep failed")
                    .stream(&source.stream)
                    .group(&shared.group)
                    .emit(shared.bus.metrics());
            }
            return;
        }
    };
    if removed.is_empty() {
        return;
    }
    let log = removed_consumers_stream(&source.stream);
    let mut pipe = redis::pipe();
    for (name, idle) in &removed {
        StaleConsumerRemoved {
            stream: &source.stream,
            group: &shared.group,
            consumer: name,
            idle_ms: *idle,
        }
        .emit(shared.bus.metrics());
        pipe.cmd("XADD")
            .arg(&log)
            .arg("MAXLEN")
            .arg("~")
            .arg(REMOVED_KEEP)
            .arg("*")
            .arg("group")
            .arg(&shared.group)
            .arg("consumer")
            .arg(name)
            .arg("idle_ms")
            .arg(idle)
            .arg("removed_by")
            .arg(&shared.consumer)
            .ignore();
    }
    if let Err(e) = pipe.query_async::<()>(conn).await {
        RedisCommandFailed::warn(&e, "recording removed consumers failed")
            .stream(&source.stream)
            .group(&shared.group)
            .emit(shared.bus.metrics());
    }
}

/// One round of upkeep over every source: loss check, stale sweep.
pub(super) async fn housekeeping(shared: &Shared, conn: &mut ConnectionManager) {
    for idx in 0..shared.sources.len() {
        check_loss(shared, conn, idx).await;
        sweep_stale(shared, conn, idx).await;
    }
}
