//! Work resumes promptly once Redis is reachable again: after an outage
//! long enough to push every backoff to its cap, a consumer handles a new
//! entry within about a second of Redis coming back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orion_bus::{Consumer, ConsumerOptions, Delivery, HandlerError};
use orion_bus_examples as examples;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_consumer_resumes_within_about_a_second_of_redis_coming_back() {
    let mut server = common::server();
    let bus = common::bus(&server).await;
    let handled = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let log = handled.clone();
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("command")
            .block(Duration::from_millis(200)),
    )
    .await
    .expect("consumer");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(
        move |d: Delivery| {
            log.lock()
                .expect("lock")
                .push((d.id().to_owned(), Instant::now()));
            async { Ok::<(), HandlerError>(()) }
        },
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Down long enough for every backoff to reach its cap.
    server.stop();
    tokio::time::sleep(Duration::from_secs(8)).await;
    server.restart().expect("restart");
    let back = Instant::now();
    // Published by another process, whose connection is new.
    let id = common::bus(&server)
        .await
        .publish("command", &examples::command(1))
        .await
        .expect("publish after the restart");
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let done = handled.lock().expect("lock").iter().any(|(h, _)| *h == id);
            async move { done }
        })
        .await,
        "handled at all"
    );
    let at = handled
        .lock()
        .expect("lock")
        .iter()
        .find(|(h, _)| *h == id)
        .map(|(_, t)| *t)
        .expect("handled");
    let took = at.duration_since(back);
    // Under 1 s of backoff; the margin is for the reconnect and a loaded
    // test machine.
    assert!(
        took < Duration::from_millis(2500),
        "handled {took:?} after Redis came back"
    );
    shutdown.cancel();
    task.await.expect("join").expect("run");
}

#[tokio::test]
async fn an_idle_consumer_stops_at_once() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut took = Vec::new();
    for round in 0..5 {
        let consumer = Consumer::new(
            &bus,
            ConsumerOptions::new("g", format!("c{round}")).contract("command"),
        )
        .await
        .expect("consumer");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer.run(
            |_d: Delivery| async { Ok::<(), HandlerError>(()) },
            shutdown.clone(),
        ));
        // Idle: reading (blocked in XREADGROUP), nothing in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cancelled = Instant::now();
        shutdown.cancel();
        task.await.expect("join").expect("run");
        took.push(cancelled.elapsed());
    }
    eprintln!("idle consumer stop times: {took:?}");
    took.sort();
    // The median: 50 ms is the promise; a loaded test machine gets a margin.
    assert!(took[2] < Duration::from_millis(100), "stop times {took:?}");
}
