//! Publishing against a real redis-server: the wire format, validation
//! before writing, pipelined batches, trimming and size limits.

mod common;

use orion_bus::{BusOptions, JsonStyle, PublishError};
use orion_bus_examples as examples;
use serde_json::json;

#[tokio::test]
async fn publish_writes_the_python_wire_format() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let msg = examples::sensor_reading(1);
    let id = bus.publish("sensor.reading", &msg).await.expect("publish");

    let entries = common::entries(&mut raw, "orion:sensor.readings").await;
    assert_eq!(entries.len(), 1);
    let (got_id, fields) = &entries[0];
    assert_eq!(got_id, &id, "publish returns the stream id");
    assert_eq!(fields.len(), 1, "exactly one field");
    assert_eq!(fields[0].0, b"data");
    let text = String::from_utf8(fields[0].1.clone()).expect("utf8");
    // json.dumps style: ", " and ": " separators, keys in insertion order.
    assert!(
        text.starts_with(r#"{"version": "1.0", "reading_id": ""#),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("json"),
        msg
    );
}

#[tokio::test]
async fn compact_style_is_available() {
    let server = common::server();
    let bus = common::bus_with(
        &server,
        BusOptions::default().json_style(JsonStyle::Compact),
    )
    .await;
    let mut raw = common::raw(&server).await;
    bus.publish("command", &examples::command(1))
        .await
        .expect("publish");
    let entries = common::entries(&mut raw, "orion:commands").await;
    let text = String::from_utf8(entries[0].1[0].1.clone()).expect("utf8");
    assert!(
        text.starts_with(r#"{"version":"1.0","command_id":"#),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_publish_writes_nothing_and_names_every_violation() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let mut msg = examples::alert(1);
    msg["severity"] = json!("apocalyptic");
    msg["reading_ids"] = json!([]);
    msg["surprise"] = json!(1);
    let err = bus.publish("alert", &msg).await.expect_err("invalid");
    let PublishError::Invalid {
        violations, index, ..
    } = &err
    else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(*index, None);
    let paths: Vec<&str> = violations
        .iter()
        .map(|v| v.instance_path.as_str())
        .collect();
    assert!(paths.contains(&"/severity"), "{err}");
    assert!(paths.contains(&"/reading_ids"), "{err}");
    assert!(paths.contains(&""), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        common::xlen(&mut raw, "orion:alerts").await,
        0,
        "nothing written"
    );
    let metrics = bus.metrics().encode();
    assert!(
        metrics.contains(
            r#"orion_bus_rejected_messages_total{contract="alert",reason="contract_violation"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_contract_is_an_error_not_a_panic() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let err = bus.publish("nope", &json!({})).await.expect_err("unknown");
    assert!(matches!(err, PublishError::UnknownContract(_)), "{err:?}");
    assert!(
        err.to_string().contains("unknown contract \"nope\""),
        "{err}"
    );
    // Callers' names do not become label values: the series stay bounded.
    bus.publish("nope-2", &json!({}))
        .await
        .expect_err("unknown");
    let metrics = bus.metrics().encode();
    assert!(
        metrics.contains(
            r#"orion_bus_rejected_messages_total{contract="unknown",reason="unknown_contract"} 2"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("nope"), "{metrics}");
}

#[tokio::test]
async fn batch_is_all_or_nothing_and_pipelined() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let mut batch: Vec<_> = (0..5).map(examples::command).collect();
    batch[2]["action"] = json!("explode");
    let err = bus
        .publish_batch("command", &batch)
        .await
        .expect_err("one invalid");
    assert!(
        matches!(err, PublishError::Invalid { index: Some(2), .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("#2"), "{err}");
    assert_eq!(
        common::xlen(&mut raw, "orion:commands").await,
        0,
        "nothing written"
    );

    batch[2] = examples::command(2);
    let ids = bus
        .publish_batch("command", &batch)
        .await
        .expect("valid batch");
    assert_eq!(ids.len(), 5);
    let entries = common::entries(&mut raw, "orion:commands").await;
    let stored: Vec<&String> = entries.iter().map(|(id, _)| id).collect();
    assert_eq!(stored, ids.iter().collect::<Vec<_>>(), "ids in input order");

    // Mixed contracts in one pipeline.
    let prepared = vec![
        bus.prepare("alert", &examples::alert(1)).expect("valid"),
        bus.prepare("sensor.reading", &examples::sensor_reading(1))
            .expect("valid"),
    ];
    let ids = bus.publish_prepared(&prepared).await.expect("mixed");
    assert_eq!(ids.len(), 2);
    assert_eq!(common::xlen(&mut raw, "orion:alerts").await, 1);
    assert_eq!(common::xlen(&mut raw, "orion:sensor.readings").await, 1);
}

#[tokio::test]
async fn max_len_trims_approximately_and_zero_disables_it() {
    let server = common::server();
    let mut raw = common::raw(&server).await;
    let trimmed = common::bus_with(&server, BusOptions::default().max_len(100)).await;
    let msgs: Vec<_> = (0..2000).map(examples::sensor_reading).collect();
    for chunk in msgs.chunks(500) {
        trimmed
            .publish_batch("sensor.reading", chunk)
            .await
            .expect("publish");
    }
    let len = common::xlen(&mut raw, "orion:sensor.readings").await;
    assert!(
        (100..2000).contains(&len),
        "MAXLEN ~ 100 leaves about 100, got {len}"
    );

    let untrimmed =
        common::bus_with(&server, BusOptions::default().max_len(0).prefix("other")).await;
    for chunk in msgs.chunks(500) {
        untrimmed
            .publish_batch("sensor.reading", chunk)
            .await
            .expect("publish");
    }
    assert_eq!(common::xlen(&mut raw, "other:sensor.readings").await, 2000);
}

#[tokio::test]
async fn oversized_messages_are_rejected() {
    let server = common::server();
    let bus = common::bus_with(&server, BusOptions::default().max_message_bytes(1024)).await;
    let mut raw = common::raw(&server).await;
    let mut msg = examples::sensor_reading(1);
    msg["tags"] = json!({"blob": "x".repeat(2000)});
    let err = bus
        .publish("sensor.reading", &msg)
        .await
        .expect_err("too large");
    assert!(
        matches!(err, PublishError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert_eq!(common::xlen(&mut raw, "orion:sensor.readings").await, 0);
}

#[tokio::test]
async fn publishing_to_a_dead_redis_is_a_retryable_error() {
    let mut server = common::server();
    let bus = common::bus(&server).await;
    server.kill();
    let err = bus
        .publish("alert", &examples::alert(1))
        .await
        .expect_err("redis is down");
    assert!(matches!(err, PublishError::Redis { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn publishing_retries_within_its_budget_across_a_redis_restart() {
    let mut server = orion_bus_harness::RedisServer::start_with(
        orion_bus_harness::RedisServerOptions::default().appendonly(true),
    )
    .expect("start");
    let bus = common::bus_with(
        &server,
        BusOptions::default().retry_budget(Some(std::time::Duration::from_secs(15))),
    )
    .await;
    bus.publish("alert", &examples::alert(0))
        .await
        .expect("publish");
    server.kill();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        server.restart().expect("restart");
        server
    });
    // Redis is down now: within the budget, the publish waits it out.
    let id = bus
        .publish("alert", &examples::alert(1))
        .await
        .expect("publish succeeds once Redis is back");
    let server = restarter.join().expect("restarter");
    let mut raw = common::raw(&server).await;
    let entries = common::entries(&mut raw, "orion:alerts").await;
    assert!(entries.iter().any(|(i, _)| *i == id), "{id} written");
}
