//! Observability against a real redis-server: `/metrics` after a known
//! workload, the observer's counts, `status`, and `replay`.

mod common;

use std::time::Duration;

use orion_bus::observer::{self, ObserveFrom};
use orion_bus::status::{self, ReplayFrom};
use orion_bus::{
    CancellationToken, Consumer, ConsumerOptions, Delivery, ErrorPolicy, HandlerError,
};
use orion_bus_examples as examples;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    body
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn metrics_report_a_known_workload() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    redis::cmd("XADD")
        .arg("orion:alerts")
        .arg("*")
        .arg("data")
        .arg("{\"version\": \"1.0\"}")
        .query_async::<String>(&mut raw)
        .await
        .expect("poison");
    let ids = bus
        .publish_batch("alert", &(0..10).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    let mut invalid = examples::alert(1);
    invalid["severity"] = json!("meh");
    bus.publish("alert", &invalid).await.expect_err("rejected");
    let failing = [ids[3].clone(), ids[7].clone()];
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("alert")
            .on_error(ErrorPolicy::DeadLetter)
            .limit(10),
    )
    .await
    .expect("consumer")
    .run(
        move |d: Delivery| {
            let fail = failing.contains(&d.id().to_owned());
            async move {
                if fail {
                    Err(HandlerError::retryable("nope"))
                } else {
                    Ok(())
                }
            }
        },
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!((report.acked, report.dead_lettered), (8, 3));

    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server_task = tokio::spawn(orion_bus::http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        bus.clone(),
        shutdown.clone(),
        move |addr| {
            let _ = tx.send(addr);
        },
    ));
    let addr = rx.await.expect("bound");
    let text = http_get(addr, "/metrics").await;
    let l = r#"{stream="orion:alerts",contract="alert",group="g"}"#;
    let expect = [
        (r#"orion_bus_published_messages_total{contract="alert"}"#.to_owned(), 10.0),
        (
            r#"orion_bus_rejected_messages_total{contract="alert",reason="contract_violation"}"#.to_owned(),
            1.0,
        ),
        (format!("orion_bus_consumed_messages_total{l}"), 10.0),
        (format!("orion_bus_acked_messages_total{l}"), 8.0),
        (format!("orion_bus_handler_errors_total{l}"), 2.0),
        (
            r#"orion_bus_dead_lettered_messages_total{stream="orion:alerts",contract="alert",group="g",reason="handler_error"}"#.to_owned(),
            2.0,
        ),
        (
            r#"orion_bus_dead_lettered_messages_total{stream="orion:alerts",contract="alert",group="g",reason="contract_violation"}"#.to_owned(),
            1.0,
        ),
        (format!("orion_bus_handler_duration_seconds_count{l}"), 10.0),
        (format!("orion_bus_end_to_end_latency_seconds_count{l}"), 8.0),
        (r#"orion_bus_group_pending_messages{stream="orion:alerts",group="g"}"#.to_owned(), 0.0),
        (r#"orion_bus_group_lag_messages{stream="orion:alerts",group="g"}"#.to_owned(), 0.0),
        (r#"orion_bus_group_idle_consumers{stream="orion:alerts",group="g"}"#.to_owned(), 0.0),
        (r#"orion_bus_stream_length_messages{stream="orion:alerts"}"#.to_owned(), 11.0),
        (r#"orion_bus_dead_letter_length_messages{stream="orion:alerts"}"#.to_owned(), 3.0),
        ("orion_bus_worker_pool_capacity_workers".to_owned(), 0.0),
        ("orion_bus_worker_pool_busy_workers".to_owned(), 0.0),
        ("orion_bus_redis_errors_total".to_owned(), 0.0),
        ("orion_bus_redis_reconnects_total".to_owned(), 0.0),
    ];
    for (series, want) in expect {
        assert_eq!(value(&text, &series), Some(want), "{series} in\n{text}");
    }
    shutdown.cancel();
    server_task.await.expect("join").expect("serve");
}

type ObserverTask =
    tokio::task::JoinHandle<Result<observer::ObserverReport, orion_bus::ConnectError>>;

/// An observer from now on, in a task of its own, given time to start.
async fn start_observer(bus: &orion_bus::Bus) -> (CancellationToken, ObserverTask) {
    let shutdown = CancellationToken::new();
    let (bus, token) = (bus.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        observer::run(
            &bus,
            ObserveFrom::Now,
            Duration::from_secs(60),
            Duration::from_millis(100),
            token,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    (shutdown, task)
}

#[tokio::test]
async fn the_observer_counts_every_entry_without_joining_a_group() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let (shutdown, task) = start_observer(&bus).await;
    bus.publish_batch("alert", &(0..5).map(examples::alert).collect::<Vec<_>>())
        .await
        .expect("publish");
    bus.publish("command", &examples::command(1))
        .await
        .expect("publish");
    for data in [
        r#"{"version": "2.0", "source": "orion-legacy"}"#,
        r#"{"source": "orion-legacy"}"#,
        "not json",
    ] {
        redis::cmd("XADD")
            .arg("orion:alerts")
            .arg("*")
            .arg("data")
            .arg(data)
            .query_async::<String>(&mut raw)
            .await
            .expect("XADD");
    }
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let text = bus.metrics().encode();
            async move {
                value(
                    &text,
                    r#"orion_bus_observed_messages_total{contract="alert",outcome="invalid"}"#,
                ) == Some(3.0)
            }
        })
        .await
    );
    shutdown.cancel();
    let report = task.await.expect("join").expect("observer");
    assert_eq!(report.by_contract["alert"], (5, 3));
    assert_eq!(report.by_contract["command"], (1, 0));
    assert_eq!(
        report.violations_by_source[&("alert".to_owned(), "orion-legacy".to_owned())],
        2
    );
    assert_eq!(
        report.violations_by_source[&("alert".to_owned(), "unknown".to_owned())],
        1
    );
    let text = bus.metrics().encode();
    assert_eq!(
        value(
            &text,
            r#"orion_bus_observed_violations_total{contract="alert",source="orion-legacy"}"#
        ),
        Some(2.0)
    );
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("orion:alerts")
        .query_async(&mut raw)
        .await
        .expect("XINFO");
    assert_eq!(
        groups,
        redis::Value::Array(vec![]),
        "the observer joined no group"
    );
}

#[tokio::test]
async fn the_observer_counts_entries_trimmed_before_it_read_them() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let (shutdown, task) = start_observer(&bus).await;
    // 50 entries in one transaction, trimmed to the last 10 as they go in:
    // the observer, blocked in XREAD, can only ever see those 10.
    let mut tx = redis::pipe();
    tx.atomic();
    for n in 0..50 {
        tx.cmd("XADD")
            .arg("orion:alerts")
            .arg("MAXLEN")
            .arg(10)
            .arg("*")
            .arg("data")
            .arg(examples::alert(n).to_string())
            .ignore();
    }
    tx.query_async::<()>(&mut raw).await.expect("MULTI");
    let missed = r#"orion_bus_observed_messages_total{contract="alert",outcome="missed"}"#;
    assert!(
        common::eventually(Duration::from_secs(15), || {
            let text = bus.metrics().encode();
            async move { value(&text, missed) == Some(40.0) }
        })
        .await,
        "{}",
        bus.metrics().encode()
    );
    shutdown.cancel();
    let report = task.await.expect("join").expect("observer");
    assert_eq!(report.by_contract["alert"], (10, 0));
    assert_eq!(report.missed["alert"], 40);
    assert!(!report.missed.contains_key("command"), "{report:?}");
}

#[tokio::test]
async fn status_shows_groups_and_replay_moves_them() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let ids = bus
        .publish_batch(
            "command",
            &(0..10).map(examples::command).collect::<Vec<_>>(),
        )
        .await
        .expect("publish");
    let consume = |limit: u64| {
        let bus = bus.clone();
        async move {
            Consumer::new(
                &bus,
                ConsumerOptions::new("g", "c1")
                    .contract("command")
                    .limit(limit),
            )
            .await
            .expect("consumer")
            .run(|_d: Delivery| async { Ok(()) }, CancellationToken::new())
            .await
            .expect("run")
        }
    };
    consume(4).await;
    let all = status::collect(&bus).await.expect("status");
    let commands = all
        .iter()
        .find(|s| s.contract == "command")
        .expect("command stream");
    assert_eq!(commands.length, 10);
    assert_eq!(commands.first_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(commands.last_id.as_deref(), Some(ids[9].as_str()));
    assert_eq!(commands.groups.len(), 1);
    let g = &commands.groups[0];
    assert_eq!((g.name.as_str(), g.pending, g.lag), ("g", 0, Some(6)));
    assert_eq!(g.last_delivered, ids[3]);
    assert_eq!(g.consumers[0].name, "c1");
    let table = status::render(&all);
    assert!(table.contains("orion:commands"), "{table}");
    assert!(table.contains("group g"), "{table}");
    let json = serde_json::to_value(&all).expect("json");
    assert!(json.as_array().is_some_and(|a| a.len() == 3), "{json}");

    // Replay from an id: the group re-reads everything after it.
    let set = status::replay(&bus, "command", "g", &ReplayFrom::Id(ids[1].clone()))
        .await
        .expect("replay");
    assert_eq!(set, ids[1]);
    let report = consume(8).await;
    assert_eq!(report.delivered, 8, "entries 2..10 are read again");
    // Replay from a time before everything: the whole stream again.
    let at = std::time::UNIX_EPOCH
        + Duration::from_millis(orion_bus::wire::id_millis(&ids[0]).expect("ms"));
    status::replay(&bus, "command", "g", &ReplayFrom::Time(at))
        .await
        .expect("replay");
    let report = consume(10).await;
    assert_eq!(report.delivered, 10);
    let err = status::replay(&bus, "command", "nope", &ReplayFrom::Id("0".into()))
        .await
        .expect_err("no such group");
    assert!(err.contains("nope"), "{err}");
}
