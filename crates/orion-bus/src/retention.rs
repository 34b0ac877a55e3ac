//! Stream retention: trimming that never drops what a group still needs,
//! and detection of entries lost to anyone's trimming.
//!
//! Owns [`Retention`] and the two checks run from publishers (after
//! writes, at most once per stream per [`TRIM_INTERVAL`]) and consumers
//! (every few seconds, for their own group):
//! - **safe trimming**: the oldest entry any group still needs is the
//!   smaller of its oldest pending entry and the entry after its
//!   last-delivered id; `XTRIM MINID ~` trims strictly below the smallest
//!   of those over all groups. Only the hard cap (`XTRIM MAXLEN ~`) can
//!   remove unread entries, as a last resort.
//! - **loss detection**: entries removed before a group read them are
//!   `entries-added - entries-read - unread` (Redis 7 `XINFO`; `unread` is
//!   the entries after the group's last-delivered id: the whole stream while
//!   the group is behind the first entry, else counted with a small
//!   `XRANGE`), also after the group has read past the gap, since trimming
//!   leaves Redis's read count short. Counted on
//!   `orion_bus_trimmed_unread_messages_total` and logged as a warning,
//!   each entry once per process.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;

use crate::metrics::Metrics;
use crate::reply::{field, int, text};
use crate::telemetry::{InternalEvent, LossCause, UnreadEntriesLost};

/// How often a publisher trims and checks one stream, at most.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// How a stream's length is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// `XADD ... MAXLEN ~ max_len`, as the Python bus. Entries a slow group
    /// has not read can be trimmed; such losses are detected and reported.
    Approximate,
    /// Never trim an entry some group has not had delivered and acked;
    /// `hard_cap` entries is the last resort (losses then reported).
    Safe {
        /// Largest length kept whatever the groups need.
        hard_cap: u64,
    },
}

/// A stream id as (ms, seq).
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What `XINFO STREAM` and `XINFO GROUPS` say, reduced to what we need.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StreamState {
    /// Entries in the stream now.
    pub length: u64,
    /// Entries ever added.
    pub entries_added: Option<u64>,
    /// Id of the first entry, if any.
    pub first_id: Option<String>,
    /// The id the stream gave its newest entry, deleted or not.
    pub last_generated_id: Option<String>,
    /// Each group (left empty by [`Self::read_without_groups`]).
    pub groups: Vec<GroupState>,
}

/// One group of a stream.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GroupState {
    /// Group name.
    pub name: String,
    /// Last entry delivered to the group.
    pub last_delivered: String,
    /// Entries the group has read (Redis 7), if known.
    pub entries_read: Option<u64>,
    /// Entries pending in the group.
    pub pending: u64,
    /// Entries not yet delivered to the group (Redis 7), if known.
    pub lag: Option<u64>,
}

impl StreamState {
    /// Reads the state; a missing stream is an empty state.
    ///
    /// # Errors
    /// Redis errors other than "no such key".
    pub async fn read(conn: &mut ConnectionManager, stream: &str) -> redis::RedisResult<Self> {
        let Some(mut state) = Self::read_stream(conn, stream).await? else {
            return Ok(Self::default());
        };
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(conn)
            .await?;
        if let Value::Array(items) = &groups {
            state.groups = items
                .iter()
                .map(|g| GroupState {
                    name: field(g, "name").and_then(text).unwrap_or_default(),
                    last_delivered: field(g, "last-delivered-id")
                        .and_then(text)
                        .unwrap_or_default(),
                    entries_read: field(g, "entries-read").and_then(int),
                    pending: field(g, "pending").and_then(int).unwrap_or(0),
                    lag: field(g, "lag").and_then(int),
                })
                .collect();
        }
        Ok(state)
    }

    /// As [`Self::read`], with `XINFO STREAM` alone: the counters and ids,
    /// no groups.
    ///
    /// # Errors
    /// Redis errors other than "no such key".
    pub async fn read_without_groups(
        conn: &mut ConnectionManager,
        stream: &str,
    ) -> redis::RedisResult<Self> {
        Ok(Self::read_stream(conn, stream).await?.unwrap_or_default())
    }

    /// `XINFO STREAM`; `None` when the stream does not exist.
    async fn read_stream(
        conn: &mut ConnectionManager,
        stream: &str,
    ) -> redis::RedisResult<Option<Self>> {
        let info: Value = match redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(conn)
            .await
        {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Self {
            length: field(&info, "length").and_then(int).unwrap_or(0),
            entries_added: field(&info, "entries-added").and_then(int),
            first_id: field(&info, "first-entry").and_then(|e| match e {
                Value::Array(parts) => parts.first().and_then(text),
                _ => None,
            }),
            last_generated_id: field(&info, "last-generated-id").and_then(text),
            groups: Vec::new(),
        }))
    }

    /// Entries ever removed from the stream (trimmed or deleted): added
    /// minus length. `None` before Redis 7.
    #[must_use]
    pub fn removed(&self) -> Option<u64> {
        self.entries_added
            .map(|added| added.saturating_sub(self.length))
    }

    /// Entries removed before `group` read them, given `unread`: how many
    /// entries of the stream come after the group's last-delivered id (all
    /// of them while the group has not reached the first entry). Redis 7
    /// counts `entries-read` on as a group reads, and trimming leaves no
    /// trace in that count, so after a group has read past a trimmed gap
    /// its count stays short by exactly the entries it never got:
    /// `entries-added - entries-read - unread`. Without the counters, a
    /// group behind the first entry has lost at least one entry (`1`).
    #[must_use]
    pub fn lost_to(&self, group: &GroupState, unread: u64) -> u64 {
        let Some(last) = parse_id(&group.last_delivered) else {
            return 0;
        };
        // A group that never read anything (last-delivered 0-0) did not
        // lose history trimmed before it existed.
        if last == (0, 0) {
            return 0;
        }
        match (self.entries_added, group.entries_read) {
            (Some(added), Some(read)) => added.saturating_sub(read).saturating_sub(unread),
            _ => {
                let behind = self
                    .first_id
                    .as_deref()
                    .and_then(parse_id)
                    .is_some_and(|first| first > last);
                u64::from(behind)
            }
        }
    }

    /// Whether the group has not yet reached the stream's first entry.
    fn behind_first(&self, group: &GroupState) -> bool {
        match (
            self.first_id.as_deref().and_then(parse_id),
            parse_id(&group.last_delivered),
        ) {
            (Some(first), Some(last)) => first > last,
            _ => false,
        }
    }
}

/// Entries looked at, at most, to count a caught-up group's unread ones.
const UNREAD_PROBE: usize = 16;

/// How many entries come after `group`'s last-delivered id: the whole
/// stream while it is behind the first entry, else counted with one small
/// `XRANGE`; `None` when there are more than [`UNREAD_PROBE`] (a group
/// that far behind is checked again later).
pub(crate) async fn unread(
    conn: &mut ConnectionManager,
    stream: &str,
    state: &StreamState,
    group: &GroupState,
) -> redis::RedisResult<Option<u64>> {
    if state.behind_first(group) {
        return Ok(Some(state.length));
    }
    // Only worth a look when Redis's own count says more are unread than
    // the stream could hold after the group's position.
    let (Some(added), Some(read)) = (state.entries_added, group.entries_read) else {
        return Ok(Some(0));
    };
    if added.saturating_sub(read) == 0 {
        return Ok(Some(0));
    }
    let raw: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg(format!("({}", group.last_delivered))
        .arg("+")
        .arg("COUNT")
        .arg(UNREAD_PROBE + 1)
        .query_async(conn)
        .await?;
    let n = match raw {
        Value::Array(items) => items.len(),
        _ => 0,
    };
    Ok((n <= UNREAD_PROBE).then_some(n as u64))
}

/// Checks every group of `stream` (or only `only_group`) for entries lost
/// to trimming; reports new losses. Returns the state read.
///
/// # Errors
/// Redis errors.
pub(crate) async fn check_loss(
    conn: &mut ConnectionManager,
    metrics: &Metrics,
    stream: &str,
    only_group: Option<&str>,
) -> redis::RedisResult<LossCheck> {
    let state = StreamState::read(conn, stream).await?;
    let mut counted = Vec::new();
    for group in &state.groups {
        if only_group.is_some_and(|g| g != group.name) {
            continue;
        }
        let lost = if parse_id(&group.last_delivered) == Some((0, 0)) {
            // Nothing read yet, so Redis has no position to compare with:
            // whatever leaves the stream from now on, the group never had.
            state.removed().map_or(0, |removed| {
                metrics.removed_since_first_seen(stream, &group.name, removed)
            })
        } else {
            metrics.forget_removed_baseline(stream, &group.name);
            let n = unread(conn, stream, &state, group).await?;
            counted.push((group.name.clone(), n));
            match n {
                Some(n) => state.lost_to(group, n),
                None => continue,
            }
        };
        if lost > 0 {
            // Exact counts are cumulative for the group; the fallback (no
            // counters) counts one per gap, a gap being a last-delivered id.
            let gap = if group.entries_read.is_some() && state.entries_added.is_some() {
                ""
            } else {
                group.last_delivered.as_str()
            };
            UnreadEntriesLost {
                stream,
                group: &group.name,
                gap,
                lost,
                cause: LossCause::Trimmed {
                    last_delivered: &group.last_delivered,
                    first_entry: state.first_id.as_deref(),
                },
            }
            .emit(metrics);
        }
    }
    Ok(LossCheck {
        state,
        unread: counted,
    })
}

/// What [`check_loss`] read: the stream's state, and for each group it
/// counted them, the entries after that group's last-delivered id
/// ([`unread`]'s answer).
#[derive(Debug)]
pub(crate) struct LossCheck {
    /// `XINFO STREAM` and `XINFO GROUPS`.
    pub state: StreamState,
    /// (group, unread entries if few enough to count).
    pub unread: Vec<(String, Option<u64>)>,
}

impl LossCheck {
    /// The unread entries counted for `group`, if they were counted.
    pub fn unread_of(&self, group: &str) -> Option<Option<u64>> {
        self.unread
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, n)| *n)
    }
}

/// Safe trimming of one stream, then the hard cap, then loss detection.
///
/// # Errors
/// Redis errors.
pub(crate) async fn trim_safely(
    conn: &mut ConnectionManager,
    metrics: &Metrics,
    stream: &str,
    hard_cap: u64,
) -> redis::RedisResult<()> {
    let state = StreamState::read(conn, stream).await?;
    // Before anything is trimmed, note where groups that have read nothing
    // stand, so that this trim's losses count for them.
    if let Some(removed) = state.removed() {
        for group in &state.groups {
            if parse_id(&group.last_delivered) == Some((0, 0)) {
                let _ = metrics.removed_since_first_seen(stream, &group.name, removed);
            }
        }
    }
    let mut needed: Option<(u64, u64)> = None;
    for group in &state.groups {
        let Some((ms, seq)) = parse_id(&group.last_delivered) else {
            continue;
        };
        let mut oldest = (ms, seq.saturating_add(1));
        if group.pending > 0 {
            let summary: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&group.name)
                .query_async(conn)
                .await?;
            if let Value::Array(parts) = &summary
                && let Some(min) = parts.get(1).and_then(text).as_deref().and_then(parse_id)
            {
                oldest = oldest.min(min);
            }
        }
        needed = Some(needed.map_or(oldest, |n| n.min(oldest)));
    }
    // No group yet: nobody has said what they need; keep everything up to
    // the hard cap.
    if let Some((ms, seq)) = needed {
        redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg("~")
            .arg(format!("{ms}-{seq}"))
            .query_async::<u64>(conn)
            .await?;
    }
    if state.length > hard_cap {
        redis::cmd("XTRIM")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(hard_cap)
            .query_async::<u64>(conn)
            .await?;
    }
    check_loss(conn, metrics, stream, None).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_needs_a_gap() {
        let mut state = StreamState {
            length: 5,
            entries_added: Some(20),
            first_id: Some("100-0".into()),
            last_generated_id: None,
            groups: Vec::new(),
        };
        let behind = GroupState {
            name: "g".into(),
            last_delivered: "50-3".into(),
            entries_read: Some(10),
            ..GroupState::default()
        };
        assert_eq!(
            state.lost_to(&behind, 5),
            5,
            "20 added - 10 read - 5 still there"
        );
        let caught_up = GroupState {
            last_delivered: "100-0".into(),
            entries_read: Some(16),
            ..behind.clone()
        };
        assert_eq!(state.lost_to(&caught_up, 4), 0);
        // Read past a trimmed gap: Redis's count stays short by what the
        // group never got.
        let past_gap = GroupState {
            last_delivered: "102-0".into(),
            entries_read: Some(13),
            ..behind.clone()
        };
        assert_eq!(state.lost_to(&past_gap, 2), 5, "20 - 13 - 2 unread");
        state.entries_added = None;
        assert_eq!(state.lost_to(&behind, 5), 1, "unknown count, but a loss");
        assert_eq!(state.lost_to(&past_gap, 2), 0, "no counters, no gap seen");
    }
}
