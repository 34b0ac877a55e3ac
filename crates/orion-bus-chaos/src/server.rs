//! The redis-server under test, shared between the nemesis and the run:
//! the harness's blocking controls (stop, SIGKILL, restart, SIGSTOP and
//! SIGCONT) run on tokio's blocking pool, and every outage is recorded.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orion_bus_harness::{HarnessError, RedisServer, RedisServerOptions};

use crate::context::Run;
use crate::error::ChaosError;
use crate::history::Event;

/// How often a failed start is tried again (the port may have been taken
/// by another process in between).
const START_TRIES: usize = 5;

/// The server under test.
#[derive(Debug, Clone)]
pub struct Server {
    inner: Arc<Mutex<RedisServer>>,
    url: String,
}

impl Server {
    /// Starts a private redis-server with AOF on.
    ///
    /// # Errors
    /// When it cannot be started.
    pub async fn start() -> Result<Self, ChaosError> {
        let server = tokio::task::spawn_blocking(|| {
            RedisServer::start_with(RedisServerOptions::default().appendonly(true))
        })
        .await
        .map_err(|e| ChaosError::Task(format!("starting redis-server: {e}")))??;
        Ok(Self {
            url: server.url(),
            inner: Arc::new(Mutex::new(server)),
        })
    }

    /// Its URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its log so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log()
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RedisServer) -> R + Send + 'static,
    ) -> Result<R, ChaosError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            f(&mut inner.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .map_err(|e| ChaosError::Task(format!("redis-server control: {e}")))
    }

    /// SIGSTOP.
    ///
    /// # Errors
    /// Only if the blocking task is lost.
    pub async fn pause(&self) -> Result<(), ChaosError> {
        self.blocking(|s| s.pause()).await
    }

    /// SIGCONT.
    ///
    /// # Errors
    /// Only if the blocking task is lost.
    pub async fn resume(&self) -> Result<(), ChaosError> {
        self.blocking(|s| s.resume()).await
    }

    /// Graceful `SHUTDOWN` (AOF flushed).
    ///
    /// # Errors
    /// Only if the blocking task is lost.
    pub async fn stop(&self) -> Result<(), ChaosError> {
        self.blocking(RedisServer::stop).await
    }

    /// SIGKILL (after SIGCONT, so that a frozen server dies at once).
    ///
    /// # Errors
    /// Only if the blocking task is lost.
    pub async fn kill(&self) -> Result<(), ChaosError> {
        self.blocking(|s| {
            s.resume();
            s.kill();
        })
        .await
    }

    /// Starts it again on the same port and data dir, trying a few times.
    ///
    /// # Errors
    /// When it does not come back.
    pub async fn start_again(&self, run: &Run) -> Result<(), ChaosError> {
        let mut last: Option<HarnessError> = None;
        for _ in 0..START_TRIES {
            match self.blocking(RedisServer::restart).await? {
                Ok(()) => return Ok(()),
                Err(e) => {
                    run.history
                        .record(Event::Redis(format!("restart failed, trying again: {e}")));
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(last.map_or_else(
            || ChaosError::Task("redis-server did not restart".to_owned()),
            ChaosError::from,
        ))
    }

    /// True when it runs and answers `PING`.
    ///
    /// # Errors
    /// Only if the blocking task is lost.
    pub async fn is_up(&self) -> Result<bool, ChaosError> {
        self.blocking(|s| s.is_up()).await
    }
}
