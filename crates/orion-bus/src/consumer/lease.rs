//! The consumer-name lease: one live process per consumer name.
//!
//! Owns [`Lease`]: the key `{prefix}:consumer-lease:{group}:{consumer}`
//! holds a string naming the process that runs the consumer (host, pid
//! and a random tag), with a TTL of `claim_idle` (1 s to 10 s). It is
//! taken with `SET NX PX` before the consumer reads anything, renewed by
//! the heartbeat thread, and deleted on a clean stop; a crashed process's
//! lease expires by itself. Two processes with one name would take each
//! other's in-flight entries for their own pending ones and handle them
//! twice; the lease turns that into a clear error at start. It is also
//! the proof of life other consumers check before they claim an entry
//! from its holder.
//!
//! Only a Redis that refuses the write for memory (`OOM` at `maxmemory`)
//! lets a consumer start without its lease: it warns, and the heartbeat
//! takes the lease as soon as Redis accepts it.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::ConsumeError;
use crate::backoff::{Backoff, is_transient};
use crate::metrics::Metrics;
use crate::telemetry::{InternalEvent, RedisCommandFailed};

/// The longest a lease outlives its last renewal.
const MAX_TTL: Duration = Duration::from_secs(10);

/// The shortest.
const MIN_TTL: Duration = Duration::from_secs(1);

/// One consumer's lease on its name.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    /// The lease key.
    pub key: String,
    /// What this process writes into it.
    pub holder: String,
    group: String,
    consumer: String,
    /// How long the lease outlives its last renewal: `claim_idle`, between
    /// 1 s and 10 s. A crashed consumer's name is free, and its entries
    /// claimable, that long after its last beat.
    ttl: Duration,
}

/// What a renewal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Renewal {
    /// Held (renewed, or taken again after it had expired).
    Held,
    /// Another process holds it now.
    TakenBy(String),
}

/// Renews the lease if this process holds it, takes it if nobody does.
/// `KEYS`: the lease. `ARGV`: the holder, the TTL in ms. Returns `1`, or
/// the other holder's name.
static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return v
",
    )
});

/// Deletes a hold (`KEYS[1]`) only if `ARGV[1]` still holds it: a name
/// lease, or a consumer's hold on an idempotency key.
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// This host's name, for the holder string.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

impl Lease {
    /// The lease for `consumer` in `group`, with a holder string unique to
    /// this run and a TTL of `claim_idle` (between 1 s and 10 s).
    pub fn new(prefix: &str, group: &str, consumer: &str, claim_idle: Duration) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self {
            key: format!("{prefix}:consumer-lease:{group}:{consumer}"),
            holder: format!(
                "{} pid {} run {}",
                host_name(),
                std::process::id(),
                &tag[..8]
            ),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            ttl: claim_idle.clamp(MIN_TTL, MAX_TTL),
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// How often the heartbeat renews the lease: four times per TTL.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 4
    }

    /// The lease key of another consumer of the same group.
    pub fn key_for(&self, consumer: &str) -> String {
        let own = &self.consumer;
        let prefix = self.key.strip_suffix(own.as_str()).unwrap_or(&self.key);
        format!("{prefix}{consumer}")
    }

    /// Takes the lease. If another process holds it: fails with
    /// [`ConsumeError::NameTaken`], or with `wait` polls until it is free.
    /// Transient Redis errors are retried until `shutdown` (then `Ok`: the
    /// consumer stops at once anyway).
    pub async fn acquire(
        &self,
        conn: &mut ConnectionManager,
        metrics: &Metrics,
        wait: bool,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let mut backoff = Backoff::redis();
        let mut told = false;
        loop {
            let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&self.key)
                .arg(&self.holder)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl_ms())
                .arg("GET")
                .query_async(conn)
                .await;
            match set {
                // SET ... NX GET: nil when it was set, the holder otherwise.
                Ok(None) => return Ok(()),
                Ok(Some(other)) if other == self.holder => return Ok(()),
                Ok(Some(other)) => {
                    if !wait {
                        return Err(ConsumeError::NameTaken {
                            group: self.group.clone(),
                            consumer: self.consumer.clone(),
                            holder: other,
                        });
                    }
                    if !told {
                        tracing::warn!(
                            group = %self.group,
                            consumer = %self.consumer,
                            holder = %other,
                            "consumer name held by another process; waiting for its lease to end"
                        );
                        told = true;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                Err(e) if e.code() == Some("OOM") => {
                    RedisCommandFailed::warn(
                        &e,
                        "Redis is full: starting without the name lease; the heartbeat takes it once Redis accepts writes",
                    )
                    .group(&self.group)
                    .consumer(&self.consumer)
                    .emit(metrics);
                    return Ok(());
                }
                Err(e) if is_transient(&e) => {
                    RedisCommandFailed::warn(&e, "taking the name lease failed; retrying")
                        .group(&self.group)
                        .consumer(&self.consumer)
                        .emit(metrics);
                    if !backoff.wait(shutdown).await {
                        return Ok(());
                    }
                }
                Err(e) => {
                    RedisCommandFailed::counted_only(&e).emit(metrics);
                    return Err(ConsumeError::Lease {
                        key: self.key.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Renews the lease (or takes it again after it expired).
    pub async fn renew(&self, conn: &mut ConnectionManager) -> redis::RedisResult<Renewal> {
        let reply: redis::Value = RENEW_SCRIPT
            .key(&self.key)
            .arg(&self.holder)
            .arg(self.ttl_ms())
            .invoke_async(conn)
            .await?;
        Ok(match reply {
            redis::Value::Int(_) => Renewal::Held,
            other => Renewal::TakenBy(
                redis::from_redis_value::<String>(other).unwrap_or_else(|_| "?".to_owned()),
            ),
        })
    }

    /// Gives the lease up, if this process still holds it.
    pub async fn release(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        release_if_held(conn, &self.key, &self.holder).await
    }
}

/// Deletes `key` only if its value is still `holder` (after an expiry,
/// someone else may hold it): for name leases and idempotency-key holds.
pub(super) async fn release_if_held(
    conn: &mut ConnectionManager,
    key: &str,
    holder: &str,
) -> redis::RedisResult<()> {
    RELEASE_SCRIPT
        .key(key)
        .arg(holder)
        .invoke_async::<i64>(conn)
        .await
        .map(|_| ())
}
