//! The migration of docs/MIGRATION.md, walked against a real redis-server:
//! a redis-py publisher written the Python bus's way, the observer, a
//! Python-style consumer group and an orion-bus consumer group on the same
//! stream.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orion_bus::observer::{self, ObserveFrom};
use orion_bus::{CancellationToken, Consumer, ConsumerOptions, Delivery};
use orion_bus_examples as examples;

#[tokio::test(flavor = "multi_thread")]
async fn migration_walkthrough() {
    let server = common::server();
    let port = server.port().to_string();
    let bus = common::bus(&server).await;
    let stream = "orion:sensor.readings";

    // Step 1: the observer, from the start of the stream.
    let shutdown = CancellationToken::new();
    let observer_task = {
        let bus = bus.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            observer::run(
                &bus,
                ObserveFrom::Beginning,
                Duration::from_secs(60),
                Duration::from_millis(100),
                token,
            )
            .await
        })
    };

    // The Python publisher: 40 valid messages and 2 the Python bus lets
    // through invalid (it validates without a format checker).
    let mut lines = String::new();
    for n in 0..40 {
        lines.push_str(&examples::sensor_reading(n).to_string());
        lines.push('\n');
        if n == 10 || n == 30 {
            let mut bad = examples::sensor_reading(1000 + n);
            bad["reading_id"] = "not-a-uuid".into();
            lines.push_str(&bad.to_string());
            lines.push('\n');
        }
    }
    let published: Vec<String> = common::python_bus(&["publish", &port, stream], &lines)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(published.len(), 42);

    // Step 2: the Python group and an orion-bus group side by side.
    let py = {
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            common::python_bus(
                &[
                    "subscribe",
                    &port,
                    "orion:sensor.readings",
                    "guardian",
                    "guardian-1",
                    "42",
                ],
                "",
            )
        })
    };
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("guardian-rs", "guardian-rs-1")
            .contract("sensor.reading")
            .limit(40),
    )
    .await
    .expect("consumer")
    .run(
        move |d: Delivery| {
            s.lock().expect("lock").push(d.id().to_owned());
            async { Ok(()) }
        },
        CancellationToken::new(),
    )
    .await
    .expect("run");
    let py_out = py.await.expect("python subscriber");

    // Both groups saw every message, each once.
    let py_ids: Vec<String> = py_out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(
        py_ids, published,
        "the Python group got every entry, in order, once"
    );
    let rust_ids = seen.lock().expect("lock").clone();
    assert_eq!(
        rust_ids.iter().collect::<BTreeSet<_>>().len(),
        rust_ids.len(),
        "no duplicates in the orion-bus group"
    );
    assert_eq!(report.delivered, 40);
    assert_eq!(
        report.dead_lettered, 2,
        "the two invalid ones were dead-lettered, not lost"
    );
    let mut raw = common::raw(&server).await;
    let dead: BTreeSet<String> = common::entries(&mut raw, "orion:sensor.readings:dlq")
        .await
        .into_iter()
        .map(|(_, f)| {
            f.iter()
                .find(|(k, _)| k == b"id")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .expect("id field")
        })
        .collect();
    let all: BTreeSet<String> = rust_ids.iter().cloned().chain(dead).collect();
    assert_eq!(
        all,
        published.iter().cloned().collect(),
        "handled + dead-lettered = everything"
    );
    for group in ["guardian", "guardian-rs"] {
        assert!(
            common::pending_ids(&mut raw, stream, group)
                .await
                .is_empty(),
            "{group}"
        );
    }

    // The observer's counts match.
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let text = bus.metrics().encode();
            async move {
                text.contains(r#"orion_bus_observed_messages_total{contract="sensor.reading",outcome="valid"} 40"#)
                    && text.contains(r#"orion_bus_observed_messages_total{contract="sensor.reading",outcome="invalid"} 2"#)
            }
        })
        .await,
        "{}",
        bus.metrics().encode()
    );
    shutdown.cancel();
    let observed = observer_task.await.expect("join").expect("observer");
    assert_eq!(observed.by_contract["sensor.reading"], (40, 2));
    let by_source: BTreeMap<_, _> = observed.violations_by_source.into_iter().collect();
    assert_eq!(by_source.values().sum::<u64>(), 2);
}
