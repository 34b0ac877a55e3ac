//! Publishers: each publishes a message with a unique id at a steady pace
//! through the library's `Bus::publish`, and records every outcome: an
//! entry id (acknowledged) or an error (unknown outcome).

use std::sync::Arc;
use std::time::Duration;

use orion_bus::{Bus, BusOptions, ContractOptions, Metrics, RedisSettings};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::{CONTRACT, Run};
use crate::history::Event;
use crate::ledger::{Publish, PublishOutcome};

/// Connects a bus with the example contracts, retrying until `stop`.
pub async fn connect_bus(run: &Run, stop: &CancellationToken) -> Option<Bus> {
    loop {
        let registry = match orion_bus_examples::registry(ContractOptions::default()) {
            Ok(r) => r,
            Err(e) => {
                run.history
                    .record(Event::Note(format!("example contracts do not load: {e}")));
                return None;
            }
        };
        let attempt = Bus::connect(
            RedisSettings::new(run.url.clone()),
            registry,
            BusOptions::default(),
            Metrics::new(),
        );
        match attempt.await {
            Ok(bus) => return Some(bus),
            Err(_) => {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

/// Starts the run's publishers; they stop when `stop` is cancelled.
pub fn spawn(run: &Arc<Run>, stop: &CancellationToken) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for idx in 0..run.options.publishers {
        set.spawn(publish_loop(run.clone(), idx, stop.clone()));
    }
    set
}

async fn publish_loop(run: Arc<Run>, idx: usize, stop: CancellationToken) {
    let Some(bus) = connect_bus(&run, &stop).await else {
        return;
    };
    let mut tick = tokio::time::interval(run.options.publish_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (msg, message) = run.next_message();
        let sent_at = run.history.now();
        let outcome = match bus.publish(CONTRACT, &message).await {
            Ok(entry) => PublishOutcome::Acked(entry),
            Err(e) => PublishOutcome::Unknown(e.to_string()),
        };
        run.ledger.published(Publish {
            msg,
            publisher: idx,
            sent_at,
            done_at: run.history.now(),
            outcome,
        });
    }
}
