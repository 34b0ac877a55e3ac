//! The reader: builds each `XREADGROUP` over the consumer's streams on a
//! connection of its own, reads no more than the in-flight permits it
//! holds, recreates a vanished group where the group last stood, and
//! survives Redis faults with backoff.

use crate::telemetry::{InternalEvent, RedisCommandFailed};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::{Shared, group};
use crate::backoff::Backoff;
use crate::wire::{self, RawEntry};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The reading half: builds each `XREADGROUP` and survives Redis faults.
pub(super) struct Reader {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    /// First stream of the next partial read, so no stream starves when
    /// there are fewer permits than streams.
    rotation: usize,
    backoff: Backoff,
}

impl Reader {
    /// A reader on its own blocking connection `conn`.
    pub fn new(shared: Arc<Shared>, conn: ConnectionManager) -> Self {
        Self {
            shared,
            conn,
            rotation: 0,
            backoff: Backoff::redis(),
        }
    }

    /// Reads at most `permits` entries in total, retrying Redis errors with
    /// backoff (forever: the caller's `select!` on shutdown ends it).
    ///
    /// Marks the read as in progress ([`Shared::set_reading`]); the caller
    /// clears the mark once the entries returned are tracked.
    pub async fn read(&mut self, permits: usize) -> Vec<(usize, RawEntry)> {
        let n = self.shared.sources.len();
        if permits >= n {
            // XREADGROUP's COUNT applies per stream: COUNT = permits / n
            // keeps the total within the permits held.
            let count = (permits / n).min(self.shared.options.read_count);
            let all: Vec<usize> = (0..n).collect();
            let block = self.shared.options.block;
            return self.read_group(&all, count, Some(block)).await;
        }
        // Fewer permits than streams: poll subsets of `permits` streams
        // without blocking, rotating so that no stream starves...
        for _ in 0..n.div_ceil(permits) {
            let picked: Vec<usize> = (0..permits).map(|i| (self.rotation + i) % n).collect();
            self.rotation = (self.rotation + permits) % n;
            let entries = self.read_group(&picked, 1, None).await;
            if !entries.is_empty() {
                return entries;
            }
        }
        // ...and when all are empty, wait (group-less, reading nothing) for
        // a new entry on any of them, then let the caller try again.
        self.wait_for_new().await;
        Vec::new()
    }

    /// One `XREADGROUP` over `picked` streams; retries errors with backoff.
    async fn read_group(
        &mut self,
        picked: &[usize],
        count: usize,
        block: Option<Duration>,
    ) -> Vec<(usize, RawEntry)> {
        loop {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.shared.group)
                .arg(&self.shared.consumer)
                .arg("COUNT")
                .arg(count);
            if let Some(block) = block {
                cmd.arg("BLOCK").arg(millis(block));
            }
            cmd.arg("STREAMS");
            for &i in picked {
                cmd.arg(&*self.shared.sources[i].stream);
            }
            for _ in picked {
                cmd.arg(">");
            }
            self.shared.set_reading(Some(Instant::now()));
            let result = cmd.query_async::<redis::Value>(&mut self.conn).await;
            match result {
                Ok(reply) => {
                    self.backoff.reset();
                    let entries = self.route(reply);
                    tracing::trace!(
                        group = %self.shared.group,
                        count,
                        streams = picked.len(),
                        got = entries.len(),
                        "XREADGROUP"
                    );
                    return entries;
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        RedisCommandFailed::counted_only(&e).emit(self.shared.bus.metrics());
                        // Stream or group deleted under us: recreate it
                        // where it stood and go on.
                        let mut all = true;
                        for &i in picked {
                            all &= group::recreate(&self.shared, i).await;
                        }
                        if all {
                            self.backoff.reset();
                            continue;
                        }
                    } else {
                        RedisCommandFailed::warn(&e, "XREADGROUP failed; backing off")
                            .stream(&self.shared.stream_names(Some(picked)))
                            .group(&self.shared.group)
                            .emit(self.shared.bus.metrics());
                    }
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        }
    }

    /// Blocks (up to `block`) until any stream gets a new entry, using a
    /// plain `XREAD ... $`, which delivers nothing to the group.
    async fn wait_for_new(&mut self) {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(millis(self.shared.options.block))
            .arg("STREAMS");
        for s in &self.shared.sources {
            cmd.arg(&*s.stream);
        }
        for _ in &self.shared.sources {
            cmd.arg("$");
        }
        if let Err(e) = cmd.query_async::<redis::Value>(&mut self.conn).await {
            RedisCommandFailed::warn(&e, "XREAD failed; backing off")
                .stream(&self.shared.stream_names(None))
                .group(&self.shared.group)
                .emit(self.shared.bus.metrics());
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }

    /// Maps a reply to (source index, entry) pairs, tolerating junk.
    fn route(&self, reply: redis::Value) -> Vec<(usize, RawEntry)> {
        let parsed = match wire::parse_read_reply(reply) {
            Ok(p) => p,
            Err(e) => {
                // Nothing can be attributed to an id; the entries (if any)
                // stay pending for redelivery rather than vanish.
                tracing::error!(stream = %self.shared.stream_names(None), group = %self.shared.group, error = %e, "unreadable XREADGROUP reply");
                return Vec::new();
            }
        };
        let index: HashMap<&str, usize> = self
            .shared
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (&*s.stream, i))
            .collect();
        let mut out = Vec::new();
        for stream in parsed {
            match index.get(stream.stream.as_str()) {
                Some(&i) => {
                    if let Some(last) = stream.entries.last() {
                        self.shared.sources[i].note_delivered(&last.id);
                    }
                    out.extend(stream.entries.into_iter().map(|e| (i, e)));
                }
                None => {
                    tracing::error!(stream = %stream.stream, "reply for a stream not asked for")
                }
            }
        }
        out
    }
}
