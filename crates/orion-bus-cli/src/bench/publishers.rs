//! The publishers of a bench run: flat out (`publish`, `e2e`) or on a
//! fixed schedule (`rate`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use orion_bus::Bus;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::messages::Messages;
use super::report::{new_histogram, record};
use super::run::Shared;
use super::{BenchError, BenchOptions, Scenario};

/// `publish` and `e2e`: `publishers` tasks publishing `pipeline` messages
/// per call until `stop`. Returns the number published.
pub(super) async fn publish_flat_out(
    bus: &Bus,
    options: &BenchOptions,
    messages: &Arc<Messages>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<(u64, Option<Histogram<u64>>), BenchError> {
    let pipeline = options.pipeline();
    let windowed = options.scenario == Scenario::E2e;
    let mut tasks = JoinSet::new();
    let sequence = Arc::new(AtomicU64::new(0));
    for _ in 0..options.publishers() {
        let bus = bus.clone();
        let messages = messages.clone();
        let shared = shared.clone();
        let stop = stop.clone();
        let sequence = sequence.clone();
        tasks.spawn(async move {
            // Only `publish` records call latencies; `e2e` records
            // publish-to-handler in the handler.
            let mut calls = new_histogram()?;
            let batch_permits = u32::try_from(pipeline).unwrap_or(u32::MAX);
            // Each task re-uses its messages, only re-stamping them.
            let first = sequence.fetch_add(pipeline as u64, Ordering::AcqRel);
            let mut batch: Vec<Value> = (first..first + pipeline as u64)
                .map(|n| messages.make(n, 0))
                .collect();
            while !stop.is_cancelled() {
                if windowed {
                    let permit = tokio::select! {
                        () = stop.cancelled() => break,
                        p = shared.window.acquire_many(batch_permits) => p,
                    };
                    match permit {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                }
                let start = Instant::now();
                let ns = shared.now_ns();
                for message in &mut batch {
                    messages.stamp.rewrite(message, ns);
                }
                if let [message] = batch.as_slice() {
                    bus.publish(&messages.contract, message).await?;
                } else {
                    bus.publish_batch(&messages.contract, &batch).await?;
                }
                if !windowed {
                    record(&mut calls, start.elapsed(), pipeline as u64);
                }
                shared
                    .published
                    .fetch_add(pipeline as u64, Ordering::AcqRel);
            }
            Ok::<_, BenchError>(calls)
        });
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done
            .map_err(|e| BenchError::Task(e.to_string()))
            .and_then(|r| r);
        match outcome {
            Ok(calls) => {
                if !windowed && let Ok(mut h) = shared.latencies.lock() {
                    // Same bounds: cannot fail.
                    let _ = h.add(&calls);
                }
            }
            Err(e) => {
                stop.cancel();
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((shared.published.load(Ordering::Acquire), None)),
    }
}

/// `rate`: one publish per message on a fixed schedule; a slow publish
/// does not delay the next one. Returns the number published and the
/// histogram of how late each publish started.
pub(super) async fn publish_at_rate(
    bus: &Bus,
    options: &BenchOptions,
    messages: &Arc<Messages>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<(u64, Option<Histogram<u64>>), BenchError> {
    let interval_ns = 1e9 / options.rate as f64;
    // Without consumers, the latency is that of the publish call.
    let record_calls = options.consumers() == 0;
    let start = tokio::time::Instant::now();
    let mut lag = new_histogram()?;
    let mut in_flight = JoinSet::new();
    let mut first_error = None;
    let mut n: u64 = 0;
    loop {
        let due = start + Duration::from_nanos((n as f64 * interval_ns) as u64);
        if tokio::time::Instant::now() < due {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        } else if stop.is_cancelled() {
            break;
        }
        record(&mut lag, tokio::time::Instant::now() - due, 1);
        // Stamped here, so the time to a task's first poll counts too.
        let ns = shared.now_ns();
        let bus = bus.clone();
        let messages = messages.clone();
        let shared = shared.clone();
        in_flight.spawn(async move {
            let message = messages.make(n, ns);
            let start = Instant::now();
            bus.publish(&messages.contract, &message).await?;
            if record_calls && let Ok(mut h) = shared.latencies.lock() {
                record(&mut h, start.elapsed(), 1);
            }
            shared.published.fetch_add(1, Ordering::AcqRel);
            Ok::<(), BenchError>(())
        });
        n += 1;
        while let Some(done) = in_flight.try_join_next() {
            if let Err(e) = done
                .map_err(|e| BenchError::Task(e.to_string()))
                .and_then(|r| r)
            {
                first_error.get_or_insert(e);
                stop.cancel();
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        if let Err(e) = done
            .map_err(|e| BenchError::Task(e.to_string()))
            .and_then(|r| r)
        {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((shared.published.load(Ordering::Acquire), Some(lag))),
    }
}
