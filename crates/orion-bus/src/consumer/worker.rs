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

use super::handler::{Delivery, Handler, HandlerErrorKind};
use super::{ErrorPolicy, Idempotency};
use super::{Shared, Work, ack, dead_letter};
use crate::metrics::{DeadLetterReason, PoisonReason};
use crate::telemetry::{InternalEvent, RedisCommandFailed};

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
    let Work {
        idx,
        entry,
        permit,
        deliveries,
    } = work;
    let source = &shared.sources[idx];
    let message = match entry.decode(shared.max_message_bytes) {
        Ok(m) => m,
        Err(e) => {
            shared.budget.give_back(1);
            let reason = DeadLetterReason::Poison(e.poison_reason());
            dead_letter::write(shared, idx, &entry, reason, &e.to_string(), deliveries).await;
            shared.untrack(idx, &entry.id);
            return;
        }
    };
    if let Err(violations) = source.contract.validate(&message) {
        shared.budget.give_back(1);
        let text = format!("contract {} violated: {violations}", source.contract.name());
        let reason = DeadLetterReason::Poison(PoisonReason::ContractViolation);
        dead_letter::write(shared, idx, &entry, reason, &text, deliveries).await;
        shared.untrack(idx, &entry.id);
        return;
    }
    if let Some(accepted) = &source.accepted {
        let version = message.get("version").and_then(serde_json::Value::as_str);
        if !version.is_some_and(|v| accepted.iter().any(|a| a == v)) {
            shared.budget.give_back(1);
            let text = format!(
                "{} version {} is not accepted by this consumer (it accepts {})",
                source.contract.name(),
                version.map_or_else(|| "(none)".to_owned(), |v| format!("{v:?}")),
                accepted.join(", ")
            );
            dead_letter::write(
                shared,
                idx,
                &entry,
                DeadLetterReason::UnacceptedVersion,
                &text,
                deliveries,
            )
            .await;
            shared.untrack(idx, &entry.id);
            return;
        }
    }
    let idem_key = shared
        .options
        .idempotency
        .as_ref()
        .map(|i| idempotency_key(shared, idx, i, &entry.id, &message));
    if let Some(key) = &idem_key {
        let mut state = claim_key(shared, key, &source.stream, &entry.id).await;
        while matches!(state, KeyState::Busy) {
            // Another delivery with the same key is being handled right
            // now. Wait for it here, the entry staying in flight (the
            // heartbeat keeps it ours), rather than leave it pending: every
            // redelivery would count toward max_deliveries.
            tracing::debug!(stream = %source.stream, group = %shared.group, id = %entry.id, "same key in flight elsewhere; waiting for it");
            let step = (shared.options.claim_idle / 3).max(std::time::Duration::from_millis(10));
            tokio::select! {
                () = shared.stopping.cancelled() => {
                    shared.budget.give_back(1);
                    shared.untrack(idx, &entry.id);
                    return;
                }
                () = tokio::time::sleep(crate::backoff::jitter(step)) => {}
            }
            state = claim_key(shared, key, &source.stream, &entry.id).await;
        }
        if matches!(state, KeyState::Done) {
            tracing::debug!(stream = %source.stream, group = %shared.group, id = %entry.id, "duplicate: already handled; acking");
            shared.stats.duplicates.fetch_add(1, Ordering::AcqRel);
            shared.budget.give_back(1);
            let _ = acks.send(ack::Ack {
                idx,
                id: entry.id,
                permit,
                retried: deliveries > 1,
            });
            return;
        }
    }
    shared.stats.delivered.fetch_add(1, Ordering::AcqRel);
    shared.busy.inc();
    let started = Instant::now();
    let id = entry.id.clone();
    let delivery = Delivery {
        contract: source.contract.name_arc().clone(),
        stream: source.stream.clone(),
        id: id.clone(),
        deliveries,
        message,
        data: entry.data().map(<[u8]>::to_vec).unwrap_or_default(),
    };
    // The call itself goes inside the caught future: a handler may panic
    // before returning its future, not only while it is polled.
    let result = AssertUnwindSafe(async move { handler.handle(delivery).await })
        .catch_unwind()
        .await;
    shared.busy.dec();
    let ok = matches!(result, Ok(Ok(())));
    source.counters.handled(started.elapsed(), ok);
    let (error, permanent) = match result {
        Ok(Ok(())) => {
            // The key is marked done before the ack: a crash in between
            // means a redelivery that is acked without a second handling.
            if let Some(key) = &idem_key {
                mark_done(shared, key, &source.stream, &id).await;
            }
            // If the acker is gone (grace ran out) the entry stays pending.
            let _ = acks.send(ack::Ack {
                idx,
                id,
                permit,
                retried: deliveries > 1,
            });
            return;
        }
        Ok(Err(e)) => (e.to_string(), e.kind() == HandlerErrorKind::Permanent),
        Err(_panic) => ("handler panicked".to_owned(), false),
    };
    shared.stats.handler_errors.fetch_add(1, Ordering::AcqRel);
    if let Some(key) = &idem_key {
        release_key(shared, key, &source.stream, &id).await;
    }
    let dead_letter_now = permanent
        || shared.options.on_error == ErrorPolicy::DeadLetter
        || deliveries >= shared.options.max_deliveries;
    if dead_letter_now {
        let reason = if permanent {
            DeadLetterReason::HandlerPermanent
        } else if shared.options.on_error == ErrorPolicy::DeadLetter {
            DeadLetterReason::HandlerError
        } else {
            DeadLetterReason::MaxDeliveries
        };
        dead_letter::write(shared, idx, &entry, reason, &error, deliveries).await;
    } else {
        tracing::warn!(
            stream = %source.stream,
            group = %shared.group,
            id = %id,
            deliveries,
            error = %error,
            "handler failed; entry stays pending for redelivery"
        );
        shared.note_failed(idx, &id);
        dead_letter::record_failure(shared, idx, &id, &error).await;
    }
    shared.untrack(idx, &id);
    drop(permit);
}

/// The Redis key that records "this group handled this message".
fn idempotency_key(
    shared: &Shared,
    idx: usize,
    idem: &Idempotency,
    id: &str,
    message: &serde_json::Value,
) -> String {
    let source = &shared.sources[idx];
    let key = idem
        .field
        .as_deref()
        .and_then(|f| message.get(f))
        .and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    match key {
        Some(k) => format!("{}:handled:{}:{k}", source.stream, shared.group),
        None => {
            if idem.field.is_some() {
                tracing::warn!(
                    stream = %source.stream,
                    group = %shared.group,
                    id,
                    "idempotency key field missing or not a string/number; using the entry id"
                );
            }
            format!("{}:handled:{}:id:{id}", source.stream, shared.group)
        }
    }
}

/// What the idempotency key says about a delivery.
enum KeyState {
    /// Nobody handled it: this delivery now holds the key.
    Claimed,
    /// Already handled successfully by this group.
    Done,
    /// Being handled by another delivery right now.
    Busy,
}

const KEY_DONE: &str = "done";

/// `SET key <consumer> NX PX claim_idle`: holds the key while handling.
/// The hold expires like an unresponsive consumer's entries do. Redis
/// errors are retried with backoff (handling without knowing could handle
/// a message twice); at shutdown the entry is left pending ([`KeyState::Busy`]
/// with `stopping` cancelled).
async fn claim_key(shared: &Shared, key: &str, stream: &str, id: &str) -> KeyState {
    let mut backoff = crate::backoff::Backoff::redis();
    loop {
        match try_claim_key(shared, key, stream, id).await {
            Some(state) => return state,
            None => {
                if !backoff.wait(&shared.stopping).await {
                    return KeyState::Busy;
                }
            }
        }
    }
}

/// One try of [`claim_key`]; `None` on a Redis error.
async fn try_claim_key(shared: &Shared, key: &str, stream: &str, id: &str) -> Option<KeyState> {
    let mut conn = shared.conn.clone();
    let result: redis::RedisResult<(Option<String>, Option<String>)> = redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg(&shared.consumer)
        .arg("NX")
        .arg("PX")
        .arg(shared.key_hold_ms())
        .cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await;
    let claimed = || {
        if let Ok(mut held) = shared.held_keys.lock() {
            held.insert(key.to_owned());
        }
        KeyState::Claimed
    };
    match result {
        Ok((Some(_), _)) => Some(claimed()),
        Ok((None, Some(v))) if v == KEY_DONE => Some(KeyState::Done),
        Ok((None, Some(_))) => Some(KeyState::Busy),
        Ok((None, None)) => Some(claimed()), // expired in between
        Err(e) => {
            RedisCommandFailed::warn(&e, "idempotency check failed; retrying")
                .stream(stream)
                .group(&shared.group)
                .id(id)
                .key(key)
                .emit(shared.bus.metrics());
            None
        }
    }
}

fn let_go(shared: &Shared, key: &str) {
    if let Ok(mut held) = shared.held_keys.lock() {
        held.remove(key);
    }
}

/// Records the key as handled, for the configured TTL.
///
/// Retried until Redis takes it (the worker is aborted when the shutdown
/// grace runs out, leaving the entry pending): acking without the record
/// would let a redelivery handle the message again. The hold stays renewed
/// by the heartbeat until the record is written.
async fn mark_done(shared: &Shared, key: &str, stream: &str, id: &str) {
    let ttl = shared
        .options
        .idempotency
        .as_ref()
        .map_or(1, |i| i.ttl.as_secs().max(1));
    let mut conn = shared.conn.clone();
    let mut backoff = crate::backoff::Backoff::redis();
    loop {
        match redis::cmd("SET")
            .arg(key)
            .arg(KEY_DONE)
            .arg("EX")
            .arg(ttl)
            .query_async::<()>(&mut conn)
            .await
        {
            Ok(()) => {
                let_go(shared, key);
                return;
            }
            Err(e) => {
                RedisCommandFailed::warn(&e, "recording an idempotency key failed; retrying")
                    .stream(stream)
                    .group(&shared.group)
                    .id(id)
                    .key(key)
                    .emit(shared.bus.metrics());
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Frees the key after a failure, so a retry can handle the message.
async fn release_key(shared: &Shared, key: &str, stream: &str, id: &str) {
    let_go(shared, key);
    let mut conn = shared.conn.clone();
    if let Err(e) = super::lease::release_if_held(&mut conn, key, &shared.consumer).await {
        // The hold expires after claim_idle anyway.
        RedisCommandFailed::warn(&e, "releasing an idempotency key failed")
            .stream(stream)
            .group(&shared.group)
            .id(id)
            .key(key)
            .emit(shared.bus.metrics());
    }
}
