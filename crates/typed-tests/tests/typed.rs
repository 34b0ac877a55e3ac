//! Typed publishing and consuming against a real redis-server: typed
//! values on the wire, validation still on at both ends, unknown fields
//! refused both ways, contracts with two versions, and consumers that
//! accept some versions and dead-letter the rest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orion_bus::typed::{Timestamp, TypedConsumer, TypedDelivery, Uuid};
use orion_bus::{
    Bus, BusOptions, CancellationToken, ConsumerOptions, ContractOptions, ContractRegistry,
    ContractType, Metrics, PublishError, RedisSettings,
};
use orion_bus_examples::types::{Alert, Command, alert, command};
use orion_bus_harness::RedisServer;
use orion_bus_typed_tests::versioned::{EventAny, EventV1_0, EventV2_0, event_v1_0, event_v2_0};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

fn server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

async fn bus(server: &RedisServer, registry: ContractRegistry, options: BusOptions) -> Bus {
    Bus::connect(
        RedisSettings::new(server.url()),
        registry,
        options,
        Metrics::new(),
    )
    .await
    .expect("connect")
}

fn examples() -> ContractRegistry {
    orion_bus_examples::registry(ContractOptions::default()).expect("examples")
}

fn versioned() -> ContractRegistry {
    ContractRegistry::load_dir(
        &orion_bus_typed_tests::versioned_dir(),
        ContractOptions::default(),
    )
    .expect("versioned contracts")
}

async fn raw(server: &RedisServer) -> ConnectionManager {
    redis::Client::open(server.url())
        .expect("client")
        .get_connection_manager()
        .await
        .expect("raw connection")
}

/// `(id, field → value)` for every entry of a stream.
async fn entries(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Vec<(String, Vec<(String, String)>)> {
    let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    rows
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map_or_else(
        || panic!("no field {name} in {fields:?}"),
        |(_, v)| v.as_str(),
    )
}

async fn pending(conn: &mut ConnectionManager, stream: &str, group: &str) -> u64 {
    let (count, _, _, _): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XPENDING");
    count
}

/// Runs a typed consumer until it has handled `options.limit` entries;
/// returns what `describe` made of each, in handling order.
async fn collect<M, F>(bus: &Bus, options: ConsumerOptions, describe: F) -> Vec<String>
where
    M: orion_bus::typed::Accept,
    F: Fn(TypedDelivery<M>) -> String + Send + Sync + 'static,
{
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let describe = Arc::new(describe);
    TypedConsumer::<M>::new(bus, options)
        .await
        .expect("consumer")
        .run(
            move |d| {
                let (sink, describe) = (sink.clone(), describe.clone());
                async move {
                    sink.lock().expect("lock").push(describe(d));
                    Ok(())
                }
            },
            CancellationToken::new(),
        )
        .await
        .expect("run");
    std::mem::take(&mut *got.lock().expect("lock"))
}

/// The dead-letter stream's entries, once there is at least one (5 s at most).
async fn dead_letters(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Vec<(String, Vec<(String, String)>)> {
    for _ in 0..50 {
        let dead = entries(conn, stream).await;
        if !dead.is_empty() {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

fn an_alert(summary: &str) -> Alert {
    Alert {
        alert_id: Uuid::new_v4(),
        reading_ids: vec![Uuid::new_v4()],
        severity: alert::AlertSeverity::Critical,
        summary: summary.parse().expect("a non-empty summary"),
        threshold: Some(alert::AlertThreshold {
            limit: 80.0,
            observed: 91.5,
        }),
        timestamp: Timestamp::now(),
        version: Alert::VERSION.unwrap_or_default().to_owned(),
    }
}

fn options(group: &str) -> ConsumerOptions {
    ConsumerOptions::new(group, "c1").block(Duration::from_millis(100))
}

#[tokio::test]
async fn a_typed_message_goes_out_and_comes_back_typed() {
    let server = server();
    let bus = bus(&server, examples(), BusOptions::default()).await;
    let sent = an_alert("disk almost full on nas");
    let id = bus.publish_typed(&sent).await.expect("published");

    // On the wire: the Python bus's format, a single `data` field.
    let mut conn = raw(&server).await;
    let on_wire = entries(&mut conn, "orion:alerts").await;
    assert_eq!(on_wire.len(), 1);
    assert_eq!(on_wire[0].0, id);
    let data: Value = serde_json::from_str(field(&on_wire[0].1, "data")).expect("JSON");
    assert_eq!(data["alert_id"], sent.alert_id.as_str());
    assert_eq!(data["timestamp"], sent.timestamp.as_str(), "the exact text");
    assert_eq!(data["severity"], "critical");
    assert_eq!(data["threshold"], json!({"limit": 80.0, "observed": 91.5}));

    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let consumer = TypedConsumer::<Alert>::new(&bus, options("g").limit(1))
        .await
        .expect("consumer");
    let report = consumer
        .run(
            move |d| {
                let sink = sink.clone();
                async move {
                    assert_eq!(d.contract(), "alert");
                    assert_eq!(d.version(), Some("1.0"));
                    sink.lock()
                        .expect("lock")
                        .push((d.id().to_owned(), d.into_message()));
                    Ok(())
                }
            },
            CancellationToken::new(),
        )
        .await
        .expect("run");
    assert_eq!(report.acked, 1, "{report:?}");
    let got = std::mem::take(&mut *got.lock().expect("lock"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id);
    let back = &got[0].1;
    assert_eq!(back.alert_id, sent.alert_id);
    assert_eq!(back.timestamp, sent.timestamp);
    assert_eq!(*back.summary, *sent.summary);
    assert_eq!(pending(&mut conn, "orion:alerts", "g").await, 0);
}

#[tokio::test]
async fn typed_messages_are_still_validated_and_nothing_invalid_is_written() {
    let server = server();
    let bus = bus(&server, examples(), BusOptions::default()).await;
    let mut conn = raw(&server).await;

    // The version field must be the type's.
    let mut wrong = an_alert("x");
    wrong.version = "2.0".to_owned();
    let err = bus.publish_typed(&wrong).await.expect_err("wrong version");
    let PublishError::Invalid { violations, .. } = &err else {
        panic!("not a contract error: {err}");
    };
    assert_eq!(violations.0[0].instance_path, "/version", "{err}");

    // A rule the type cannot hold (minItems) is caught by validation.
    let mut empty = an_alert("no readings");
    empty.reading_ids.clear();
    let err = bus.publish_typed(&empty).await.expect_err("minItems");
    assert!(err.to_string().contains("/reading_ids"), "{err}");

    // In a batch, one bad message stops the batch and names its index.
    let err = bus
        .publish_typed_batch(&[an_alert("ok"), empty.clone()])
        .await
        .expect_err("batch");
    assert!(
        matches!(err, PublishError::Invalid { index: Some(1), .. }),
        "{err}"
    );
    let xlen: u64 = redis::cmd("XLEN")
        .arg("orion:alerts")
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert_eq!(xlen, 0, "nothing invalid was written");

    // With validation of typed messages turned off the type alone decides:
    // the same message goes out (the consumer side still validates).
    let lenient = self::bus(
        &server,
        examples(),
        BusOptions::default().validate_typed(false),
    )
    .await;
    lenient.publish_typed(&empty).await.expect("not validated");
    let ids = lenient
        .publish_typed_batch(&[an_alert("a"), an_alert("b")])
        .await
        .expect("batch");
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn unknown_fields_are_refused_both_ways() {
    // Out: a type has no place for them, and deserialising refuses them.
    let mut value = serde_json::to_value(an_alert("x")).expect("to JSON");
    value["extra"] = json!(1);
    let err = serde_json::from_value::<Alert>(value.clone()).expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");

    // In: another client writes one; it never reaches the typed handler
    // and lands in the dead-letter stream.
    let server = server();
    let bus = bus(&server, examples(), BusOptions::default()).await;
    let mut conn = raw(&server).await;
    let _: String = redis::cmd("XADD")
        .arg("orion:alerts")
        .arg("*")
        .arg("data")
        .arg(value.to_string())
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let handled = Arc::new(Mutex::new(0));
    let h = handled.clone();
    let shutdown = CancellationToken::new();
    let consumer = TypedConsumer::<Alert>::new(&bus, options("g"))
        .await
        .expect("consumer");
    let run = tokio::spawn(consumer.run(
        move |_d| {
            let h = h.clone();
            async move {
                *h.lock().expect("lock") += 1;
                Ok(())
            }
        },
        shutdown.clone(),
    ));
    let dead = dead_letters(&mut conn, "orion:alerts:dlq").await;
    shutdown.cancel();
    run.await.expect("join").expect("run");
    assert_eq!(dead.len(), 1);
    assert_eq!(field(&dead[0].1, "reason"), "contract_violation");
    assert!(field(&dead[0].1, "error").contains("extra"), "{dead:?}");
    assert_eq!(*handled.lock().expect("lock"), 0);
    assert_eq!(
        pending(&mut conn, "orion:alerts", "g").await,
        0,
        "acked once dead-lettered"
    );
}

fn event_v1(kind: event_v1_0::EventKind) -> EventV1_0 {
    EventV1_0 {
        event_id: Uuid::new_v4(),
        timestamp: Timestamp::now(),
        kind,
        version: "1.0".to_owned(),
    }
}

fn event_v2(host: &str) -> EventV2_0 {
    EventV2_0 {
        event_id: Uuid::new_v4(),
        timestamp: Timestamp::now(),
        kind: event_v2_0::EventKind::Restarted,
        host: host.parse().expect("a valid host"),
        version: "2.0".to_owned(),
    }
}

#[tokio::test]
async fn two_versions_share_a_stream_and_consumers_take_what_they_accept() {
    let server = server();
    let bus = bus(&server, versioned(), BusOptions::default()).await;
    let mut conn = raw(&server).await;
    // Publishers choose the version: an old and a migrated module.
    let id1 = bus
        .publish_typed(&event_v1(event_v1_0::EventKind::ServiceDown))
        .await
        .expect("v1");
    let id2 = bus.publish_typed(&event_v2("nas-1")).await.expect("v2");
    // Validation picks the schema by the message's version: a 2.0 without
    // the field 2.0 requires is refused, as is a version nobody defined.
    let err = bus
        .publish(
            "event",
            &json!({"version": "2.0", "event_id": Uuid::new_v4().as_str(),
                    "timestamp": Timestamp::now().as_str(), "kind": "service_up"}),
        )
        .await
        .expect_err("2.0 needs host");
    assert!(err.to_string().contains("host"), "{err}");
    let err = bus
        .publish(
            "event",
            &json!({"version": "3.0", "event_id": Uuid::new_v4().as_str(),
                    "timestamp": Timestamp::now().as_str(), "kind": "service_up"}),
        )
        .await
        .expect_err("no 3.0");
    assert!(
        err.to_string().contains("not a known version of event"),
        "{err}"
    );

    // A consumer that accepts both gets each as its own variant.
    let got = collect(
        &bus,
        options("both").limit(2),
        |d: TypedDelivery<EventAny>| {
            let what = match d.message() {
                EventAny::V1_0(e) => format!("1.0 {}", e.kind),
                EventAny::V2_0(e) => format!("2.0 {} on {}", e.kind, *e.host),
            };
            format!("{} {what}", d.id())
        },
    )
    .await;
    assert_eq!(
        got,
        [
            format!("{id1} 1.0 service_down"),
            format!("{id2} 2.0 restarted on nas-1")
        ]
    );

    // A consumer that accepts only 2.0 handles 2.0; the 1.0 goes to the
    // dead-letter stream with a reason that says why, and is acked.
    let got = collect(
        &bus,
        options("v2-only").limit(1),
        |d: TypedDelivery<EventV2_0>| d.id().to_owned(),
    )
    .await;
    assert_eq!(got, std::slice::from_ref(&id2));
    let dead = dead_letters(&mut conn, "orion:events:dlq").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let f = &dead[0].1;
    assert_eq!(field(f, "id"), id1);
    assert_eq!(field(f, "group"), "v2-only");
    assert_eq!(field(f, "reason"), "unaccepted_version");
    assert_eq!(
        field(f, "error"),
        "event version \"1.0\" is not accepted by this consumer (it accepts 2.0)"
    );
    assert_eq!(pending(&mut conn, "orion:events", "v2-only").await, 0);
}

#[tokio::test]
async fn accepting_a_version_no_schema_defines_is_refused_up_front() {
    let server = server();
    let bus = bus(&server, versioned(), BusOptions::default()).await;
    let err = orion_bus::Consumer::new(
        &bus,
        options("g")
            .contract("event")
            .accept_versions("event", ["4.0"]),
    )
    .await
    .expect_err("no 4.0");
    assert!(
        err.to_string()
            .contains("event has no version 4.0; its versions are 1.0, 2.0"),
        "{err}"
    );
}

orion_bus::message_enum! {
    /// What an executor reacts to: two contracts, one consumer.
    #[derive(Debug)]
    enum ExecutorInput {
        Alert(Alert),
        Command(Command),
    }
}

#[tokio::test]
async fn one_typed_consumer_reads_several_contracts() {
    let server = server();
    let bus = bus(&server, examples(), BusOptions::default()).await;
    bus.publish_typed(&an_alert("pump stopped"))
        .await
        .expect("alert");
    let cmd = Command {
        action: command::CommandAction::Restart,
        alert_id: Uuid::new_v4(),
        command_id: Uuid::new_v4(),
        target: "pump-1".parse().expect("target"),
        timeout_s: Some(command::CommandTimeoutS::new(30).expect("in range")),
        timestamp: Timestamp::now(),
        version: "1.0".to_owned(),
    };
    assert!(command::CommandTimeoutS::new(0).is_err(), "minimum 1");
    assert!(command::CommandTimeoutS::new(3601).is_err(), "maximum 3600");
    bus.publish_typed(&cmd).await.expect("command");

    let mut got = collect(
        &bus,
        options("exec").limit(2),
        |d: TypedDelivery<ExecutorInput>| match d.into_message() {
            ExecutorInput::Alert(a) => format!("alert {}", *a.summary),
            ExecutorInput::Command(c) => format!("command {} {}", c.action, *c.target),
        },
    )
    .await;
    got.sort();
    assert_eq!(got, ["alert pump stopped", "command restart pump-1"]);
}
