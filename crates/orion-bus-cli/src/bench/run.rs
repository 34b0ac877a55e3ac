//! One bench run: connect under a prefix of its own, start the consumers,
//! publish, let the consumers drain, measure, report, and delete the keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use orion_bus::{
    Bus, BusOptions, CancellationToken, Consumer, ContractRegistry, Delivery, HandlerError,
    JsonStyle, Metrics, RedisSettings, StartId, wire,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::messages::{Messages, Stamp};
use super::publishers::{publish_at_rate, publish_flat_out};
use super::report::{ms, new_histogram, record};
use super::resources::{peak_rss_bytes, process_cpu_time};
use super::{BenchError, BenchOptions, BenchReport, Progress, Scenario};

/// Most messages published but not yet handled in `e2e` (and at most half
/// the stream cap, so trimming never removes an unread entry).
const E2E_WINDOW: usize = 4096;

/// How long, after publishing stopped, the consumers get to handle the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by the publishers, the handler and the progress task.
#[derive(Debug)]
pub(super) struct Shared {
    origin: Instant,
    stamp: Stamp,
    pub(super) published: AtomicU64,
    pub(super) handled: AtomicU64,
    unstamped: AtomicU64,
    pub(super) latencies: Mutex<Histogram<u64>>,
    /// `e2e`: permits for messages that may be published and not handled.
    pub(super) window: Semaphore,
}

impl Shared {
    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs one bench against `redis`, with `options.contract` from
/// `registry` (the example contracts, or a user's set with a sample
/// message in `options.sample`). `progress` is called about once a
/// second; `shutdown` stops publishing early (what was measured is still
/// reported).
///
/// # Errors
/// See [`BenchError`].
pub async fn run(
    redis: RedisSettings,
    bus_options: BusOptions,
    registry: ContractRegistry,
    options: BenchOptions,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
    shutdown: CancellationToken,
) -> Result<BenchReport, BenchError> {
    options.check(&bus_options)?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let prefix = format!("orion-bench-{run_id}");
    let json_style = bus_options.json_style;
    let messages = Arc::new(Messages::new(
        registry.get(&options.contract)?,
        options.sample.as_ref(),
        options.payload_bytes,
        json_style,
    )?);
    // Only now, so that bad options are reported without a Redis.
    let bus = Bus::connect(redis, registry, bus_options.prefix(prefix), Metrics::new()).await?;
    let window = match bus.options().max_len {
        0 => E2E_WINDOW,
        cap => E2E_WINDOW.min(usize::try_from(cap / 2).unwrap_or(E2E_WINDOW)),
    }
    .max(options.pipeline() * options.publishers());
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        stamp: messages.stamp.clone(),
        published: AtomicU64::new(0),
        handled: AtomicU64::new(0),
        unstamped: AtomicU64::new(0),
        latencies: Mutex::new(new_histogram()?),
        window: Semaphore::new(window),
    });

    // On a runtime worker, not wherever the caller polls us (`block_on`
    // runs its future on the main thread, and every hand-over between it
    // and the workers would cost a thread wake-up the bus does not cause).
    let task = {
        let bus = bus.clone();
        let contract = options.contract.clone();
        tokio::spawn(async move {
            let result =
                run_scenario(&bus, &options, &messages, &shared, progress, &shutdown).await;
            cleanup(&bus, &contract).await;
            result
        })
    };
    let mut report = task.await.map_err(|e| BenchError::Task(e.to_string()))??;
    report.json_style = match json_style {
        JsonStyle::Compact => "compact",
        _ => "python",
    };
    Ok(report)
}

async fn run_scenario(
    bus: &Bus,
    options: &BenchOptions,
    messages: &Arc<Messages>,
    shared: &Arc<Shared>,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
    shutdown: &CancellationToken,
) -> Result<BenchReport, BenchError> {
    // Consumers first, their group starting at `$`: only this run counts.
    let stop_consumers = CancellationToken::new();
    let mut consumers = JoinSet::new();
    let group = "bench";
    for i in 0..options.consumers() {
        let mut opts = options.consumer.clone();
        opts.group = group.to_owned();
        opts.consumer = format!("bench-{i}");
        opts.contracts = vec![options.contract.clone()];
        opts.start_id = StartId::New;
        opts.limit = None;
        let consumer = Consumer::new(bus, opts).await?;
        let handler = handler(shared.clone());
        consumers.spawn(consumer.run(handler, stop_consumers.clone()));
    }

    let started = Instant::now();
    let cpu_before = process_cpu_time();
    let deadline = tokio::time::Instant::from_std(started) + options.duration;
    let stop_publishing = shutdown.child_token();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = tokio::spawn(progress_task(
        options.scenario,
        options.consumers(),
        options.duration,
        started,
        shared.clone(),
        draining.clone(),
        progress.clone(),
    ));
    let stop_at_deadline = {
        let stop = stop_publishing.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            stop.cancel();
        })
    };

    let published = match options.scenario {
        Scenario::Publish | Scenario::E2e => {
            publish_flat_out(bus, options, messages, shared, &stop_publishing).await
        }
        Scenario::Rate => publish_at_rate(bus, options, messages, shared, &stop_publishing).await,
    };
    stop_at_deadline.abort();
    let (published, send_lag) = match published {
        Ok(p) => p,
        Err(e) => {
            ticker.abort();
            stop_consumers.cancel();
            while consumers.join_next().await.is_some() {}
            return Err(e);
        }
    };
    let mut elapsed = started.elapsed();
    // A last line when publishing stops, however short the run.
    progress(&Progress {
        scenario: options.scenario,
        elapsed,
        duration: options.duration,
        published,
        handled: shared.handled.load(Ordering::Acquire),
        draining: options.consumers() > 0,
        consuming: options.consumers() > 0,
    });

    // Let the consumers finish what was published.
    let mut unhandled = 0;
    if options.consumers() > 0 {
        draining.store(true, Ordering::Release);
        let give_up = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let handled = shared.handled.load(Ordering::Acquire);
            if handled >= published {
                break;
            }
            if Instant::now() >= give_up || shutdown.is_cancelled() {
                unhandled = published - handled;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        elapsed = started.elapsed();
    }
    let cpu = cpu_before.and_then(|before| Some(process_cpu_time()?.saturating_sub(before)));
    ticker.abort();
    stop_consumers.cancel();
    let mut acked = 0;
    let mut concurrency = 0;
    while let Some(done) = consumers.join_next().await {
        match done {
            Ok(Ok(report)) => acked += report.acked,
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(BenchError::Task(e.to_string())),
        }
    }
    if options.consumers() > 0 {
        concurrency = options.consumer.concurrency;
    }
    let unstamped = shared.unstamped.load(Ordering::Acquire);
    if unstamped > 0 {
        return Err(BenchError::Task(format!(
            "{unstamped} handled message(s) carried no readable timestamp"
        )));
    }

    let messages_counted = if options.consumers() > 0 {
        shared.handled.load(Ordering::Acquire)
    } else {
        published
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let h = shared
        .latencies
        .lock()
        .map_err(|_| BenchError::Task("latency histogram lock poisoned".to_owned()))?
        .clone();
    Ok(BenchReport {
        scenario: options.scenario,
        contract: options.contract.clone(),
        payload_bytes: messages.payload_bytes,
        json_style: "python",
        messages: messages_counted,
        published,
        elapsed_s: secs,
        throughput_msgs_per_s: messages_counted as f64 / secs,
        latency: match options.consumers() {
            0 => "duration of one publish call (validate, encode, XADD round trip), per message",
            _ => {
                "publish-to-handler: timestamp taken before publish (validate, encode, XADD), \
                 read when the handler is called (after XREADGROUP, decode, validate)"
            }
        },
        p50_ms: ms(h.value_at_quantile(0.5)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1e6,
        peak_rss_bytes: peak_rss_bytes(),
        cpu_seconds: cpu.map(|c| c.as_secs_f64()),
        cpu_percent_of_one_core: cpu.map(|c| c.as_secs_f64() / secs * 100.0),
        publishers: options.publishers(),
        pipeline: options.pipeline(),
        consumers: options.consumers(),
        concurrency,
        max_in_flight: if options.consumers() > 0 {
            options.consumer.max_in_flight
        } else {
            0
        },
        offered_rate_msgs_per_s: (options.scenario == Scenario::Rate).then_some(options.rate),
        send_lag_p99_ms: send_lag.map(|h| ms(h.value_at_quantile(0.99))),
        acked,
        unhandled,
    })
}

/// The handler every consumer runs: reads the timestamp, records the
/// latency, and opens the `e2e` window by one.
fn handler(
    shared: Arc<Shared>,
) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    move |d: Delivery| {
        let now = shared.now_ns();
        match shared.stamp.read(d.message()) {
            Some(sent) => {
                let latency = Duration::from_nanos(now.saturating_sub(sent));
                if let Ok(mut h) = shared.latencies.lock() {
                    record(&mut h, latency, 1);
                }
            }
            None => {
                shared.unstamped.fetch_add(1, Ordering::AcqRel);
            }
        }
        shared.handled.fetch_add(1, Ordering::AcqRel);
        shared.window.add_permits(1);
        std::future::ready(Ok(()))
    }
}

async fn progress_task(
    scenario: Scenario,
    consumers: usize,
    duration: Duration,
    started: Instant,
    shared: Arc<Shared>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
) {
    let consuming = consumers > 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        progress(&Progress {
            scenario,
            elapsed: started.elapsed(),
            duration,
            published: shared.published.load(Ordering::Acquire),
            handled: shared.handled.load(Ordering::Acquire),
            draining: draining.load(Ordering::Acquire),
            consuming,
        });
    }
}

/// Deletes the run's stream, its dead-letter stream and failure records.
async fn cleanup(bus: &Bus, contract: &str) {
    let Ok(stream) = bus.stream_for(contract) else {
        return;
    };
    let mut conn = bus.connection();
    let result = redis::cmd("DEL")
        .arg(&*stream)
        .arg(wire::dead_letter_stream(&stream))
        .arg(format!("{stream}:failures:bench"))
        .query_async::<()>(&mut conn)
        .await;
    if let Err(e) = result {
        tracing::warn!(stream = %stream, error = %e, "could not delete the bench stream");
    }
}
