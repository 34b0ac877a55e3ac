//! Interop with the ORION Python bus on a real redis-server: a redis-py
//! client written the Python bus's way publishes what orion-bus consumes,
//! consumes what orion-bus publishes, and both write the same bytes.

mod common;

use std::sync::{Arc, Mutex};

use orion_bus::{CancellationToken, Consumer, ConsumerOptions, Delivery};
use orion_bus_examples as examples;
use serde_json::{Value, json};

fn ndjson(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_publishes_and_orion_bus_consumes() {
    let server = common::server();
    let port = server.port().to_string();
    let bus = common::bus(&server).await;
    let msgs: Vec<Value> = (0..50).map(examples::sensor_reading).collect();
    let input = ndjson(&msgs);
    let ids: Vec<String> = tokio::task::spawn_blocking(move || {
        common::python_bus(&["publish", &port, "orion:sensor.readings"], &input)
    })
    .await
    .expect("python")
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(ids.len(), 50);

    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let g = got.clone();
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("rust", "rust-1")
            .contract("sensor.reading")
            .concurrency(1)
            .limit(50),
    )
    .await
    .expect("consumer")
    .run(
        move |d: Delivery| {
            g.lock()
                .expect("lock")
                .push((d.id().to_owned(), d.message().clone()));
            async { Ok(()) }
        },
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!(report.acked, 50);
    let got = got.lock().expect("lock").clone();
    let expected: Vec<(String, Value)> = ids.into_iter().zip(msgs).collect();
    assert_eq!(got, expected, "same ids, same messages, in order");
    let mut raw = common::raw(&server).await;
    assert!(
        common::pending_ids(&mut raw, "orion:sensor.readings", "rust")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orion_bus_publishes_and_python_consumes() {
    let server = common::server();
    let port = server.port().to_string();
    let bus = common::bus(&server).await;
    let mut sent = Vec::new();
    let mut ids = Vec::new();
    for n in 0..10 {
        let msg = examples::command(n);
        ids.push(bus.publish("command", &msg).await.expect("publish"));
        sent.push(msg);
    }
    let batch: Vec<Value> = (10..30).map(examples::command).collect();
    ids.extend(bus.publish_batch("command", &batch).await.expect("batch"));
    sent.extend(batch);

    let out = tokio::task::spawn_blocking(move || {
        common::python_bus(
            &[
                "subscribe",
                &port,
                "orion:commands",
                "commander",
                "commander-1",
                "30",
            ],
            "",
        )
    })
    .await
    .expect("python");
    let seen: Vec<(String, Value)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            (v["id"].as_str().expect("id").to_owned(), v["data"].clone())
        })
        .collect();
    let expected: Vec<(String, Value)> = ids.into_iter().zip(sent).collect();
    assert_eq!(
        seen, expected,
        "Python's json.loads reads exactly what was published"
    );
    let mut raw = common::raw(&server).await;
    assert!(
        common::pending_ids(&mut raw, "orion:commands", "commander")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_write_the_same_bytes() {
    let server = common::server();
    let port = server.port().to_string();
    let mut msg = examples::sensor_reading(3);
    msg["value"] = json!(0.00001234);
    msg["tags"] = json!({"room": "café ☕", "note": "line\nbreak \"quoted\" \\ tab\t", "emoji": "🦀", "big": "1e16"});
    let mut other = examples::sensor_reading(4);
    other["value"] = json!(1e16);
    let msgs = vec![msg, other, examples::sensor_reading(5)];

    let input = ndjson(&msgs);
    let p = port.clone();
    tokio::task::spawn_blocking(move || {
        common::python_bus(&["publish", &p, "py:sensor.readings"], &input)
    })
    .await
    .expect("python");
    let rust_bus = common::bus_with(&server, orion_bus::BusOptions::default().prefix("rs")).await;
    for m in &msgs {
        rust_bus
            .publish("sensor.reading", m)
            .await
            .expect("publish");
    }
    let mut raw = common::raw(&server).await;
    let py = common::entries(&mut raw, "py:sensor.readings").await;
    let rs = common::entries(&mut raw, "rs:sensor.readings").await;
    assert_eq!(py.len(), 3);
    assert_eq!(rs.len(), 3);
    for ((_, py_fields), (_, rs_fields)) in py.iter().zip(&rs) {
        assert_eq!(py_fields.len(), 1, "Python writes one field");
        assert_eq!(rs_fields.len(), 1, "orion-bus writes one field");
        assert_eq!(py_fields[0].0, b"data");
        assert_eq!(
            String::from_utf8_lossy(&rs_fields[0].1),
            String::from_utf8_lossy(&py_fields[0].1),
            "byte-for-byte the same data"
        );
        assert_eq!(rs_fields, py_fields);
    }
}
