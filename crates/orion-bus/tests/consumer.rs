//! Consumer groups against a real redis-server: delivery, acks, group
//! creation, several streams per consumer, poison entries, backpressure,
//! shutdown with handlers in flight, and Redis restarts.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orion_bus::{CancellationToken, Consumer, ConsumerOptions, Delivery, HandlerError, StartId};
use orion_bus_examples as examples;
use serde_json::json;

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A handler that records (contract, id) and succeeds.
fn recorder(
    seen: &Seen,
) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    let seen = seen.clone();
    move |d: Delivery| {
        seen.lock()
            .expect("lock")
            .push((d.contract().to_owned(), d.id().to_owned()));
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn round_trip_delivers_validated_messages_and_acks_them() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let msgs: Vec<_> = (0..100).map(examples::sensor_reading).collect();
    let ids = bus
        .publish_batch("sensor.reading", &msgs)
        .await
        .expect("publish");

    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c1")
            .contract("sensor.reading")
            .limit(100),
    )
    .await
    .expect("consumer");
    let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let sink = got.clone();
    let report = consumer
        .run(
            move |d: Delivery| {
                sink.lock()
                    .expect("lock")
                    .push((d.id().to_owned(), d.message().clone()));
                async { Ok(()) }
            },
            CancellationToken::new(),
        )
        .await
        .expect("run");
    assert_eq!(report.delivered, 100);
    assert_eq!(report.acked, 100);
    assert_eq!(report.dead_lettered, 0);
    let got: std::collections::HashMap<String, serde_json::Value> =
        got.lock().expect("lock").iter().cloned().collect();
    assert_eq!(got.len(), 100, "no duplicates");
    for (id, sent) in ids.iter().zip(&msgs) {
        assert_eq!(got.get(id), Some(sent), "entry {id} delivered as published");
    }
    assert!(
        common::pending_ids(&mut raw, "orion:sensor.readings", "g")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn group_creation_is_idempotent_and_start_id_is_honoured() {
    let server = common::server();
    let bus = common::bus(&server).await;
    bus.publish_batch("alert", &(0..3).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    // The same group twice: BUSYGROUP counts as success.
    for _ in 0..2 {
        Consumer::new(&bus, ConsumerOptions::new("replay", "c").contract("alert"))
            .await
            .expect("idempotent");
    }
    let fresh = Consumer::new(
        &bus,
        ConsumerOptions::new("fresh", "c")
            .contract("alert")
            .start_id(StartId::New)
            .limit(1),
    )
    .await
    .expect("fresh");
    let new_id = bus
        .publish("alert", &examples::alert(9))
        .await
        .expect("publish");

    let seen: Seen = Arc::default();
    fresh
        .run(recorder(&seen), CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![("alert".to_owned(), new_id)],
        "a $ group only sees entries added after it was created"
    );

    let seen: Seen = Arc::default();
    Consumer::new(
        &bus,
        ConsumerOptions::new("replay", "c")
            .contract("alert")
            .limit(4),
    )
    .await
    .expect("replay")
    .run(recorder(&seen), CancellationToken::new())
    .await
    .expect("run");
    assert_eq!(
        seen.lock().expect("lock").len(),
        4,
        "a 0 group replays the whole stream"
    );

    // Groups were created with MKSTREAM even for streams with no entries.
    let mut raw = common::raw(&server).await;
    Consumer::new(&bus, ConsumerOptions::new("g", "c").contract("command"))
        .await
        .expect("mkstream");
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("orion:commands")
        .query_async(&mut raw)
        .await
        .expect("group exists");
    assert!(
        matches!(groups, redis::Value::Array(ref g) if g.len() == 1),
        "{groups:?}"
    );
}

#[tokio::test]
async fn one_consumer_reads_several_contracts() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let commands = bus
        .publish_batch(
            "command",
            &(0..20).map(examples::command).collect::<Vec<_>>(),
        )
        .await
        .expect("publish");
    let alerts = bus
        .publish_batch("alert", &(0..15).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");

    let seen: Seen = Arc::default();
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("commander", "commander-1")
            .contracts(["command", "alert"])
            .limit(35),
    )
    .await
    .expect("consumer")
    .run(recorder(&seen), CancellationToken::new())
    .await
    .expect("run");
    assert_eq!(report.acked, 35);
    let seen = seen.lock().expect("lock").clone();
    let got_commands: BTreeSet<_> = seen
        .iter()
        .filter(|(c, _)| c == "command")
        .map(|(_, id)| id.clone())
        .collect();
    let got_alerts: BTreeSet<_> = seen
        .iter()
        .filter(|(c, _)| c == "alert")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(got_commands, commands.into_iter().collect());
    assert_eq!(got_alerts, alerts.into_iter().collect());
    assert!(
        common::pending_ids(&mut raw, "orion:commands", "commander")
            .await
            .is_empty()
    );
    assert!(
        common::pending_ids(&mut raw, "orion:alerts", "commander")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn limit_over_several_streams_leaves_nothing_pending() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    for contract in ["command", "alert", "sensor.reading"] {
        let msgs: Vec<_> = (0..10)
            .filter_map(|n| examples::sample(contract, n))
            .collect();
        bus.publish_batch(contract, &msgs).await.expect("publish");
    }
    // Fewer than one entry per stream left, several times over.
    for round in 0..3 {
        let seen: Seen = Arc::default();
        let report = Consumer::new(
            &bus,
            ConsumerOptions::new("g", "c")
                .contracts(["command", "alert", "sensor.reading"])
                .limit(2),
        )
        .await
        .expect("consumer")
        .run(recorder(&seen), CancellationToken::new())
        .await
        .expect("run");
        assert_eq!(report.delivered, 2, "round {round}");
        for stream in ["orion:commands", "orion:alerts", "orion:sensor.readings"] {
            assert!(
                common::pending_ids(&mut raw, stream, "g").await.is_empty(),
                "round {round}: nothing read beyond the limit on {stream}"
            );
        }
    }
}

#[tokio::test]
async fn handler_errors_leave_exactly_those_entries_pending() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = bus
        .publish_batch(
            "command",
            &(0..10).map(examples::command).collect::<Vec<_>>(),
        )
        .await
        .expect("publish");
    let failing: BTreeSet<String> = [ids[1].clone(), ids[4].clone(), ids[9].clone()].into();
    let fail = failing.clone();
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c").contract("command").limit(10),
    )
    .await
    .expect("consumer")
    .run(
        move |d: Delivery| {
            let result = if fail.contains(d.id()) {
                Err(HandlerError::retryable("downstream unavailable"))
            } else {
                Ok(())
            };
            async move { result }
        },
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!(report.delivered, 10);
    assert_eq!(report.acked, 7);
    assert_eq!(report.handler_errors, 3);
    let pending: BTreeSet<String> = common::pending_ids(&mut raw, "orion:commands", "g")
        .await
        .into_iter()
        .collect();
    assert_eq!(pending, failing, "only the failed entries stay pending");
    let metrics = bus.metrics().encode();
    assert!(
        metrics.contains(r#"orion_bus_handler_errors_total{stream="orion:commands",contract="command",group="g"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn poison_entries_are_dead_lettered_with_their_raw_payload_and_acked() {
    let server = common::server();
    let bus = common::bus_with(
        &server,
        orion_bus::BusOptions::default().max_message_bytes(4096),
    )
    .await;
    let mut raw = common::raw(&server).await;
    let stream = "orion:sensor.readings";
    let mut invalid = examples::sensor_reading(5);
    invalid["sensor"] = json!("vibes");
    let invalid = serde_json::to_vec(&invalid).expect("json");
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(5000));
    let poison: Vec<(&[u8], Vec<u8>, &str)> = vec![
        (b"data", b"{\"broken".to_vec(), "invalid_json"),
        (b"payload", b"{}".to_vec(), "missing_data"),
        (b"data", b"\xc3\x28 not utf-8".to_vec(), "not_utf8"),
        (b"data", invalid, "contract_violation"),
        (b"data", oversized.into_bytes(), "too_large"),
    ];
    let valid_before = bus
        .publish("sensor.reading", &examples::sensor_reading(1))
        .await
        .expect("publish");
    let mut poison_ids = Vec::new();
    for (field, value, _) in &poison {
        let id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(*field)
            .arg(value.as_slice())
            .query_async(&mut raw)
            .await
            .expect("raw XADD");
        poison_ids.push(id);
    }
    let valid_after = bus
        .publish("sensor.reading", &examples::sensor_reading(2))
        .await
        .expect("publish");

    let seen: Seen = Arc::default();
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("sensor.reading")
            .limit(2),
    )
    .await
    .expect("consumer")
    .run(recorder(&seen), CancellationToken::new())
    .await
    .expect("run never fails on poison");
    assert_eq!(report.delivered, 2);
    assert_eq!(report.dead_lettered, 5);
    let delivered: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(
        delivered.into_iter().collect::<BTreeSet<_>>(),
        [valid_before, valid_after].into_iter().collect(),
        "the handler only ever sees valid messages"
    );
    assert!(
        common::pending_ids(&mut raw, stream, "g").await.is_empty(),
        "poison is acked"
    );

    let mut dead = common::entries(&mut raw, "orion:sensor.readings:dlq").await;
    assert_eq!(dead.len(), 5);
    // Workers write dead letters concurrently: match them by original id.
    let original = |fields: &[(Vec<u8>, Vec<u8>)]| {
        fields
            .iter()
            .find(|(k, _)| k.as_slice() == b"id")
            .and_then(|(_, v)| {
                poison_ids
                    .iter()
                    .position(|id| id.as_bytes() == v.as_slice())
            })
    };
    dead.sort_by_key(|(_, fields)| original(fields));
    for (((_, fields), (field, value, reason)), original_id) in
        dead.iter().zip(&poison).zip(&poison_ids)
    {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.as_slice() == name.as_bytes())
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("dead letter lacks {name}: {fields:?}"))
        };
        assert_eq!(get("id"), original_id.as_bytes());
        assert_eq!(get("stream"), stream.as_bytes());
        assert_eq!(get("contract"), b"sensor.reading");
        assert_eq!(get("group"), b"g");
        assert_eq!(get("consumer"), b"c");
        assert_eq!(get("reason"), reason.as_bytes());
        assert!(!get("error").is_empty());
        assert!(!get("first_failure").is_empty());
        assert!(!get("last_failure").is_empty());
        assert_eq!(get("deliveries"), b"1");
        if *field == b"data" {
            assert_eq!(&get("data"), value, "raw payload kept byte for byte");
        } else {
            assert_eq!(
                &get("field:payload"),
                value,
                "fields of a data-less entry kept"
            );
        }
    }
    let metrics = bus.metrics().encode();
    assert!(
        metrics.contains(r#"orion_bus_dead_lettered_messages_total{stream="orion:sensor.readings",contract="sensor.reading",group="g",reason="not_utf8"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn backpressure_stops_reading_at_the_in_flight_cap() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    bus.publish_batch(
        "command",
        &(0..50).map(examples::command).collect::<Vec<_>>(),
    )
    .await
    .expect("publish");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let (g, r, m) = (gate.clone(), running.clone(), max_running.clone());
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("command")
            .concurrency(2)
            .max_in_flight(5)
            .limit(50),
    )
    .await
    .expect("consumer");
    let task = tokio::spawn(consumer.run(
        move |_d: Delivery| {
            let (g, r, m) = (g.clone(), r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let permit = g.acquire().await.map_err(HandlerError::retryable)?;
                permit.forget();
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        },
        CancellationToken::new(),
    ));
    // With every handler blocked, exactly the in-flight cap is delivered.
    common::wait_until_pending(&raw, "orion:commands", "g", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        common::pending_ids(&mut raw, "orion:commands", "g")
            .await
            .len(),
        5,
        "the reader stopped at the cap"
    );
    assert_eq!(
        running.load(Ordering::SeqCst),
        2,
        "concurrency bounds running handlers"
    );
    gate.add_permits(50);
    let report = task.await.expect("join").expect("run");
    assert_eq!(report.acked, 50);
    assert!(max_running.load(Ordering::SeqCst) <= 2);
    assert!(
        common::pending_ids(&mut raw, "orion:commands", "g")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn shutdown_acks_finished_handlers_and_leaves_unfinished_ones_pending() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = bus
        .publish_batch("alert", &(0..6).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    // Entries 0-2 finish within the grace period; 3-5 never would.
    let slow: BTreeSet<String> = ids[3..].iter().cloned().collect();
    let fast: BTreeSet<String> = ids[..3].iter().cloned().collect();
    let started = Arc::new(AtomicUsize::new(0));
    let (s, st) = (slow.clone(), started.clone());
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("alert")
            .concurrency(6)
            .shutdown_grace(Duration::from_millis(800)),
    )
    .await
    .expect("consumer");
    let task = tokio::spawn(consumer.run(
        move |d: Delivery| {
            let wait = if s.contains(d.id()) {
                Duration::from_secs(3600)
            } else {
                Duration::from_millis(300)
            };
            st.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(wait).await;
                Ok(())
            }
        },
        shutdown.clone(),
    ));
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let n = started.load(Ordering::SeqCst);
            async move { n == 6 }
        })
        .await,
        "all six handlers start"
    );
    // Shut down while all six are in flight.
    let asked = Instant::now();
    shutdown.cancel();
    let report = task.await.expect("join").expect("run");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "bounded by the grace period, took {took:?}"
    );
    assert_eq!(report.acked, 3);
    assert_eq!(report.abandoned, 3);
    let pending: BTreeSet<String> = common::pending_ids(&mut raw, "orion:alerts", "g")
        .await
        .into_iter()
        .collect();
    assert_eq!(
        pending, slow,
        "unfinished handlers' entries stay pending, never acked"
    );
    assert!(
        pending.is_disjoint(&fast),
        "finished handlers were acked during the drain"
    );
}

#[tokio::test]
async fn shutdown_keeps_its_deadline_when_redis_hangs() {
    let server = common::server();
    let bus = common::bus(&server).await;
    bus.publish_batch("alert", &(0..3).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("alert")
            // Redelivery passes every 50 ms, so one is talking to Redis
            // when it freezes.
            .retry_backoff(Duration::from_millis(100), Duration::from_secs(1))
            .claim_idle(Duration::from_millis(300))
            .shutdown_grace(Duration::from_secs(1)),
    )
    .await
    .expect("consumer");
    let task = tokio::spawn(consumer.run(
        move |_: Delivery| {
            h.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        },
        shutdown.clone(),
    ));
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let n = handled.load(Ordering::SeqCst);
            async move { n == 3 }
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Redis stops answering (commands time out after 5 s each).
    server.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), task).await;
    let took = asked.elapsed();
    server.resume();
    result.expect("run returns").expect("join").expect("run");
    assert!(
        took < Duration::from_secs(4),
        "a 1 s grace period, but shutdown took {took:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_reading_and_drains_in_flight_work() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    bus.publish_batch("alert", &(0..100).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    let shutdown = CancellationToken::new();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("alert")
            .concurrency(4)
            .max_in_flight(8)
            .shutdown_grace(Duration::from_secs(10)),
    )
    .await
    .expect("consumer");
    let task = tokio::spawn(consumer.run(
        move |_d: Delivery| {
            let h = h.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                h.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        shutdown.clone(),
    ));
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let n = handled.load(Ordering::SeqCst);
            async move { n >= 8 }
        })
        .await
    );
    shutdown.cancel();
    let report = task.await.expect("join").expect("run");
    assert_eq!(
        report.abandoned, 0,
        "everything in flight finished within the grace"
    );
    assert_eq!(report.acked, report.delivered);
    assert!(report.delivered < 100, "reading stopped at shutdown");
    assert!(
        common::pending_ids(&mut raw, "orion:alerts", "g")
            .await
            .is_empty(),
        "all delivered entries were acked"
    );
}

#[tokio::test]
async fn a_blocking_reader_does_not_stall_publishing_on_the_same_bus() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let seen: Seen = Arc::default();
    // A 30 s BLOCK on an empty stream: were the reader sharing the bus's
    // connection, every publish below would queue behind it.
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("command")
            .block(Duration::from_secs(30))
            .shutdown_grace(Duration::from_secs(1)),
    )
    .await
    .expect("consumer");
    let running = common::Running::spawn(consumer, recorder(&seen));
    tokio::time::sleep(Duration::from_millis(300)).await; // the reader is now blocked
    let started = Instant::now();
    for n in 0..20 {
        bus.publish("alert", &examples::alert(n))
            .await
            .expect("publish");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "20 publishes took {took:?} while a 30 s BLOCK was outstanding"
    );
    // The reader is not stuck either: it wakes for its own stream.
    bus.publish("command", &examples::command(1))
        .await
        .expect("publish");
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let n = seen.lock().expect("lock").len();
            async move { n == 1 }
        })
        .await
    );
    let report = running.stop().await;
    assert_eq!(report.acked, 1);
}

#[tokio::test]
async fn consumer_reconnects_after_redis_restarts() {
    let mut server = orion_bus_harness::RedisServer::start_with(
        orion_bus_harness::RedisServerOptions::default().appendonly(true),
    )
    .expect("start");
    let bus = common::bus(&server).await;
    let first = bus
        .publish_batch("alert", &(0..10).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    let seen: Seen = Arc::default();
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("alert")
            .block(Duration::from_millis(200))
            .limit(20),
    )
    .await
    .expect("consumer");
    let task = tokio::spawn(consumer.run(recorder(&seen), shutdown.clone()));
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let n = seen.lock().expect("lock").len();
            async move { n == 10 }
        })
        .await
    );
    // Give the acker a moment, then restart Redis under the consumer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().expect("restart");
    let mut second = Vec::new();
    for n in 10..20 {
        // The publisher's connection reconnects too; retry while it does.
        let msg = examples::alert(n);
        let mut attempts = 0;
        loop {
            match bus.publish("alert", &msg).await {
                Ok(id) => {
                    second.push(id);
                    break;
                }
                Err(e) if e.is_retryable() && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("publish after restart: {e}"),
            }
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("consumer finishes after the restart")
        .expect("join")
        .expect("run");
    assert_eq!(report.delivered, 20);
    let ids: BTreeSet<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    let expected: BTreeSet<String> = first.into_iter().chain(second).collect();
    assert_eq!(
        ids, expected,
        "every message delivered once across the restart"
    );
    let mut raw = common::raw(&server).await;
    assert!(
        common::pending_ids(&mut raw, "orion:alerts", "g")
            .await
            .is_empty()
    );
    let metrics = bus.metrics().encode();
    let reconnects: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("orion_bus_redis_reconnects_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("reconnect counter");
    assert!(reconnects > 0, "the restart was counted: {metrics}");
}

#[tokio::test]
async fn concurrency_one_handles_entries_in_order() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let ids = bus
        .publish_batch(
            "command",
            &(0..200).map(examples::command).collect::<Vec<_>>(),
        )
        .await
        .expect("publish");
    let seen: Seen = Arc::default();
    Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("command")
            .concurrency(1)
            .limit(200),
    )
    .await
    .expect("consumer")
    .run(recorder(&seen), CancellationToken::new())
    .await
    .expect("run");
    let got: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(got, ids, "stream order preserved");
}

#[tokio::test]
async fn a_panicking_handler_leaves_its_entry_pending_and_the_consumer_alive() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = bus
        .publish_batch("alert", &(0..5).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    let bad = ids[2].clone();
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("alert")
            .concurrency(1)
            .limit(5),
    )
    .await
    .expect("consumer")
    .run(
        move |d: Delivery| {
            assert_ne!(d.id(), bad, "handler bug");
            async { Ok(()) }
        },
        CancellationToken::new(),
    )
    .await
    .expect("run survives the panic");
    assert_eq!(report.acked, 4);
    assert_eq!(report.handler_errors, 1);
    assert_eq!(
        common::pending_ids(&mut raw, "orion:alerts", "g").await,
        vec![ids[2].clone()]
    );
}
