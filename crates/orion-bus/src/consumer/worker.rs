//! The worker pool: `concurrency` long-lived tasks sharing one queue.
//!
//! Owns one entry's life after it was read: decode, validate against the
//! contract, dead-letter it if it is poison, otherwise run the handler and
//! hand success to the acker. Workers take entries in read order, so a
//! consumer with concurrency 1 handles each stream's entries in order.
//! A panicking handler is caught: its entry stays pending and the worker
//! goes on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::{Mutex, mpsc};

use super::handler::{Delivery, Handler};
use super::{Shared, Work, ack, dead_letter};

/// Takes work until the queue is closed and empty.
pub(super) async fn run<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Work>>>,
    acks: mpsc::UnboundedSender<ack::Ack>,
) {
    loop {
        let next = queue.lock().await.recv().await;
        let Some(work) = next else { return };
        process(&shared, &*handler, &acks, work).await;
        shared.stats.unfinished.fetch_sub(1, Ordering::AcqRel);
        shared.progress.notify_one();
    }
}

async fn process<H: Handler>(
    shared: &Shared,
    handler: &H,
    acks: &mpsc::UnboundedSender<ack::Ack>,
    work: Work,
) {
    let Work { idx, entry, permit } = work;
    let source = &shared.sources[idx];
    let message = match entry.decode(shared.max_message_bytes) {
        Ok(m) => m,
        Err(e) => {
            shared.stats.reserved.fetch_sub(1, Ordering::AcqRel);
            dead_letter::poison(shared, idx, &entry, e.reason(), &e.to_string()).await;
            return;
        }
    };
    if let Err(violations) = source.contract.validate(&message) {
        shared.stats.reserved.fetch_sub(1, Ordering::AcqRel);
        let text = format!("contract {} violated: {violations}", source.contract.name());
        dead_letter::poison(shared, idx, &entry, "contract_violation", &text).await;
        return;
    }
    shared.stats.delivered.fetch_add(1, Ordering::AcqRel);
    shared.busy.inc();
    let started = Instant::now();
    let id = entry.id;
    let delivery = Delivery {
        contract: source.contract.name_arc().clone(),
        stream: source.stream.clone(),
        id: id.clone(),
        message,
    };
    // The call itself goes inside the caught future: a handler may panic
    // before returning its future, not only while it is polled.
    let result = AssertUnwindSafe(async move { handler.handle(delivery).await })
        .catch_unwind()
        .await;
    shared.busy.dec();
    let ok = matches!(result, Ok(Ok(())));
    source.counters.handled(started.elapsed(), ok);
    match result {
        Ok(Ok(())) => {
            // If the acker is gone (grace ran out) the entry stays pending.
            let _ = acks.send(ack::Ack { idx, id, permit });
        }
        Ok(Err(e)) => {
            shared.stats.handler_errors.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                stream = %source.stream,
                group = %shared.group,
                id = %id,
                kind = ?e.kind(),
                error = %e,
                "handler failed; entry left pending"
            );
        }
        Err(_panic) => {
            shared.stats.handler_errors.fetch_add(1, Ordering::AcqRel);
            tracing::error!(
                stream = %source.stream,
                group = %shared.group,
                id = %id,
                "handler panicked; entry left pending"
            );
        }
    }
}
