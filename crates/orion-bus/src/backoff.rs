//! Exponential backoff with jitter, interruptible by shutdown.
//!
//! Owns the retry pacing used after Redis errors (reading, acking,
//! dead-lettering). Every wait selects on the shutdown token, so a process
//! never sleeps through a SIGTERM.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubling delays from `min` to `max`, each with up to ±25% jitter so that
/// many consumers reconnecting to a restarted Redis do not stampede it.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `min` up to `max`.
    #[must_use]
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The default for Redis errors: 50 ms up to 750 ms (under 1 s with
    /// jitter), so that work resumes within a second of Redis coming back.
    /// A retry against a dead Redis is one failed connect: cheap enough at
    /// that pace.
    #[must_use]
    pub fn redis() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_millis(750))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next delay (jittered), advancing the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(base)
    }

    /// Sleeps for the next delay. Returns `false` if shutdown came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Scales `d` by a random factor in `[0.75, 1.25)`.
#[must_use]
pub fn jitter(d: Duration) -> Duration {
    // RandomState is seeded randomly per instance: enough entropy for jitter
    // without pulling in an RNG crate.
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.75 + (r % 1000) as f64 / 2000.0;
    d.mul_f64(factor)
}

/// True for Redis failures that may go away by themselves: the connection
/// (I/O, timeout, refused, dropped) or a server that is loading, failing
/// over, out of memory or unable to persist. False for errors the same
/// command will always get (wrong type, syntax, a script error).
#[must_use]
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "READONLY" | "OOM" | "MISCONF")
        )
}

/// `now + d`, or about thirty years from now when `d` is too large to add
/// (a setting of "forever" must not overflow the clock).
#[must_use]
pub fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_of_forever_does_not_overflow() {
        let far = deadline_after(Duration::MAX);
        assert!(far > tokio::time::Instant::now() + Duration::from_secs(3600 * 24 * 365));
        let near = deadline_after(Duration::from_secs(1));
        assert!(near <= tokio::time::Instant::now() + Duration::from_secs(1));
    }

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        let within = |d: Duration, base: u64| {
            d >= Duration::from_millis(base * 3 / 4) && d < Duration::from_millis(base * 5 / 4)
        };
        assert!(within(d[0], 100), "{d:?}");
        assert!(within(d[1], 200), "{d:?}");
        assert!(within(d[2], 400), "{d:?}");
        assert!(within(d[3], 400), "{d:?}");
        b.reset();
        assert!(within(b.next_delay(), 100));
    }

    #[tokio::test]
    async fn wait_returns_early_on_shutdown() {
        let token = CancellationToken::new();
        token.cancel();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.wait(&token).await);
    }
}
