//! An in-process consumer instance: an `orion_bus::Consumer` of the group
//! running on its own task with a handler that records each message it
//! handled, sleeps (slow profile) and fails at random (failing profile).
//! Crashing it drops its run future, as a process crash would.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orion_bus::{Consumer, ConsumerOptions, Delivery, HandlerError, Idempotency};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::context::{CONTRACT, GROUP, ID_FIELD, Run, message_id, timings};
use crate::history::Event;
use crate::ledger::Handling;
use crate::options::LibraryProfile;
use crate::publisher::connect_bus;

/// Probability that a failing handler fails.
const FAILURE_RATE: f64 = 0.1;
/// The longest sleep of a slow handler.
const MAX_SLEEP_MS: u64 = 300;

/// A library consumer's options: the run's timings (the same as the CLI
/// consumers'), the profile's sizes.
#[must_use]
pub fn options(run: &Run, name: &str, profile: &LibraryProfile) -> ConsumerOptions {
    let mut options = ConsumerOptions::new(GROUP, name)
        .contract(CONTRACT)
        .concurrency(profile.concurrency)
        .max_in_flight(profile.max_in_flight)
        .read_count(profile.read_count)
        .claim_idle(timings::CLAIM_IDLE)
        .retry_backoff(timings::RETRY_BACKOFF, timings::RETRY_BACKOFF_MAX)
        .block(timings::BLOCK)
        .shutdown_grace(timings::SHUTDOWN_GRACE)
        .max_deliveries(timings::MAX_DELIVERIES)
        // A restart under the same name waits out the dead one's lease.
        .wait_for_name(true)
        .housekeeping_interval(run.options.housekeeping_interval)
        .stale_consumer_after(run.options.stale_consumer_after);
    if run.options.idempotency {
        options = options.idempotency(Idempotency::field(ID_FIELD));
    }
    options
}

/// One running library consumer.
#[derive(Debug)]
pub struct LibraryInstance {
    task: Option<AbortOnDropHandle<String>>,
    stop: CancellationToken,
}

impl LibraryInstance {
    /// Starts instance `id` under consumer name `name`.
    #[must_use]
    pub fn spawn(run: &Arc<Run>, id: Arc<str>, name: String, profile: LibraryProfile) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(body(run.clone(), id, name, profile, stop.clone()));
        Self {
            task: Some(AbortOnDropHandle::new(task)),
            stop,
        }
    }

    /// Waits until it ends by itself; says how.
    pub async fn exited(&mut self) -> String {
        match self.task.as_mut() {
            Some(task) => {
                let r = task.await;
                self.task = None;
                r.unwrap_or_else(|e| format!("task failed: {e}"))
            }
            None => std::future::pending().await,
        }
    }

    /// A crash: the run future is dropped wherever it is.
    pub async fn crash(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// A graceful stop: shutdown requested, drain within the grace period.
    pub async fn stop(mut self) -> String {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return "already ended".to_owned();
        };
        // The grace period is 2 s; allow for a Redis that just came back.
        match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(Ok(how)) => how,
            Ok(Err(e)) => format!("task failed: {e}"),
            Err(_) => "did not stop within 15 s; aborted".to_owned(),
        }
    }
}

async fn body(
    run: Arc<Run>,
    id: Arc<str>,
    name: String,
    profile: LibraryProfile,
    stop: CancellationToken,
) -> String {
    let Some(bus) = connect_bus(&run, &stop).await else {
        return "stopped before connecting".to_owned();
    };
    let consumer = match Consumer::new(&bus, options(&run, &name, &profile)).await {
        Ok(c) => c,
        Err(e) => return format!("Consumer::new failed: {e}"),
    };
    let seed = run.options.seed ^ fxhash(&id);
    let state = Arc::new(HandlerState {
        run: run.clone(),
        instance: id,
        rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        profile,
    });
    let handler = move |d: Delivery| {
        let state = state.clone();
        async move { state.handle(d).await }
    };
    match consumer.run(handler, stop).await {
        Ok(report) => format!("run returned {report:?}"),
        Err(e) => format!("run failed: {e}"),
    }
}

#[derive(Debug)]
struct HandlerState {
    run: Arc<Run>,
    instance: Arc<str>,
    rng: Mutex<fastrand::Rng>,
    profile: LibraryProfile,
}

impl HandlerState {
    async fn handle(&self, d: Delivery) -> Result<(), HandlerError> {
        let (sleep_ms, fail) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            let sleep = if self.profile.slow {
                rng.u64(0..=MAX_SLEEP_MS)
            } else {
                0
            };
            (sleep, self.profile.failing && rng.f64() < FAILURE_RATE)
        };
        if sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        }
        if fail {
            return Err(HandlerError::retryable("chaos: injected handler failure"));
        }
        let Some(msg) = message_id(d.message()) else {
            self.run.history.record(Event::Note(format!(
                "{} handled entry {} without a {ID_FIELD}",
                self.instance,
                d.id()
            )));
            return Ok(());
        };
        self.run.ledger.handled(Handling {
            msg,
            entry: d.id().to_owned(),
            instance: self.instance.clone(),
            at: self.run.history.now(),
        });
        Ok(())
    }
}

/// A stable hash of an instance name, to give each its own handler seed.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
