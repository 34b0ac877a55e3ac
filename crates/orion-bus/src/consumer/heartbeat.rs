//! The heartbeat: proof of life that does not depend on the handlers.
//!
//! Owns a dedicated OS thread with a one-thread runtime and a Redis
//! connection of its own, so that a handler that blocks its runtime's
//! threads (CPU-bound work, a blocking call) cannot stop it. Every
//! `claim_idle / 3` it resets the idle time of each entry this consumer is
//! working on and renews its holds on idempotency keys; four times per
//! lease TTL it renews the consumer-name lease. A live consumer's
//! entries therefore never look dead, however long a handler runs.
//!
//! The idle reset is the claim script in its `JUSTID` form (`claim::touch`),
//! which touches (not a delivery) only entries still pending on this
//! consumer and still in the stream: it never takes back an entry another
//! consumer claimed, and never makes Redis drop a deleted entry from the pending
//! list (Redis 7's `XCLAIM` does), so such an entry can still end in the
//! dead-letter stream.

use crate::telemetry::{InternalEvent, RedisCommandFailed};
use std::sync::{Arc, LazyLock};

use redis::aio::ConnectionManager;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::lease::Renewal;
use crate::backoff::Backoff;

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

/// The running heartbeat thread. Dropping it (the consumer's future was
/// dropped: a crash of sorts) stops the beats and keeps the lease, which
/// then expires; [`Heartbeat::finish`] stops it and releases the lease.
#[derive(Debug)]
pub(super) struct Heartbeat {
    stop: CancellationToken,
    release: Arc<std::sync::atomic::AtomicBool>,
    done: Option<oneshot::Receiver<()>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Heartbeat {
    /// Starts the thread. If the system cannot give it one (out of
    /// threads), the consumer runs without a heartbeat and logs an error:
    /// its slow entries may then be claimed and handled again elsewhere
    /// after `claim_idle`, and its name lease lapses.
    pub fn start(shared: Arc<Shared>) -> Self {
        let stop = CancellationToken::new();
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (done_tx, done_rx) = oneshot::channel();
        let (token, rel) = (stop.clone(), release.clone());
        let beat = async move {
            let conn = run(&shared, &token).await;
            if rel.load(std::sync::atomic::Ordering::Acquire)
                && let Some(mut conn) = conn
                && let Err(e) = shared.lease.release(&mut conn).await
            {
                tracing::warn!(group = %shared.group, consumer = %shared.consumer, error = %e, "releasing the name lease failed; it expires by itself");
            }
            let _ = done_tx.send(());
        };
        let spawned = std::thread::Builder::new()
            .name("orion-bus-heartbeat".to_owned())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(beat),
                    Err(e) => tracing::error!(error = %e, "cannot start the heartbeat runtime"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the heartbeat thread; running without a heartbeat");
        }
        Self {
            stop,
            release,
            done: Some(done_rx),
        }
    }

    /// Stops the beats, releases the lease, and waits for both until
    /// `deadline`.
    pub async fn finish(mut self, deadline: tokio::time::Instant) {
        self.release
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop.cancel();
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout_at(deadline, done).await;
        }
    }
}

/// Beats until `stop`; returns the connection for the lease release. The
/// thread's own connection is opened here, on the thread's runtime, so
/// that it never waits on the consumer's runtime.
async fn run(shared: &Shared, stop: &CancellationToken) -> Option<ConnectionManager> {
    let mut backoff = Backoff::redis();
    let mut conn = loop {
        match shared.bus.settings().connect().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(group = %shared.group, consumer = %shared.consumer, error = %e, "heartbeat cannot connect; retrying");
                if !backoff.wait(stop).await {
                    return None;
                }
            }
        }
    };
    let beat_every = shared.options.claim_idle / 3;
    let renew_every = shared.lease.renew_every();
    let tick = beat_every.min(renew_every);
    let mut last_beat = tokio::time::Instant::now();
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Some(conn),
            () = tokio::time::sleep(tick) => {}
        }
        if last_renewal.elapsed() + tick / 2 >= renew_every {
            renew_lease(shared, &mut conn).await;
            last_renewal = tokio::time::Instant::now();
        }
        if last_beat.elapsed() + tick / 2 >= beat_every {
            beat(shared, &mut conn).await;
            last_beat = tokio::time::Instant::now();
        }
    }
}

async fn renew_lease(shared: &Shared, conn: &mut ConnectionManager) {
    match shared.lease.renew(conn).await {
        Ok(Renewal::Held) => {}
        Ok(Renewal::TakenBy(other)) => tracing::error!(
            group = %shared.group,
            consumer = %shared.consumer,
            holder = %other,
            "another process took this consumer's name lease (this one was unreachable for over its TTL); two processes now share a name"
        ),
        Err(e) => {
            RedisCommandFailed::warn(&e, "renewing the name lease failed")
                .group(&shared.group)
                .consumer(&shared.consumer)
                .emit(shared.bus.metrics());
        }
    }
}

/// Resets the idle time of every entry this consumer is working on, and
/// extends its holds on their idempotency keys.
async fn beat(shared: &Shared, conn: &mut ConnectionManager) {
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
            RedisCommandFailed::warn(
                &e,
                "refreshing idempotency holds failed; a slow handler's key may be taken over",
            )
            .stream(&shared.stream_names(None))
            .group(&shared.group)
            .emit(shared.bus.metrics());
        }
    }
    let tracked: Vec<(usize, String)> = match shared.in_flight_ids.lock() {
        Ok(set) => set.iter().cloned().collect(),
        Err(_) => return,
    };
    for (idx, source) in shared.sources.iter().enumerate() {
        let ids: Vec<&str> = tracked
            .iter()
            .filter(|(i, _)| *i == idx)
            .map(|(_, id)| id.as_str())
            .collect();
        for chunk in ids.chunks(128) {
            let result =
                super::claim::touch(conn, &source.stream, &shared.group, &shared.consumer, chunk)
                    .await;
            match result {
                Ok(gone) => {
                    for id in gone {
                        tracing::debug!(stream = %source.stream, group = %shared.group, id = %id, "in-flight entry was deleted from the stream; left pending untouched");
                    }
                }
                Err(e) => {
                    RedisCommandFailed::warn(
                        &e,
                        "heartbeat failed; in-flight entries may look idle",
                    )
                    .stream(&source.stream)
                    .group(&shared.group)
                    .emit(shared.bus.metrics());
                }
            }
        }
    }
}
