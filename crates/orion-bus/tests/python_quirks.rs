//! What the Python bus writes that orion-bus rejects (docs/MIGRATION.md):
//! `NaN`, `Infinity` and `1e400`, lone surrogates, and a trailing newline
//! where the schema's pattern ends in `$`. Each is written the Python
//! bus's way (redis-py, `json.dumps`), counted by the observer under its own
//! reason with the module's `source`, and dead-lettered by a consumer with
//! that reason and its bytes unchanged.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use orion_bus::observer::{self, ObserveFrom};
use orion_bus::{
    CancellationToken, Consumer, ConsumerOptions, ContractOptions, Delivery, HandlerError,
};
use orion_bus_examples as examples;

const STREAM: &str = "orion:sensor.readings";

/// A `sensor.reading` from `source` (JSON string contents) with `value`
/// and a `room` tag (JSON string contents), as JSON text.
fn reading(n: u64, source: &str, value: &str, room: &str) -> String {
    format!(
        r#"{{"version": "1.0", "reading_id": "{}", "timestamp": "2026-11-24T10:00:00Z", "source": "{source}", "sensor": "power", "value": {value}, "tags": {{"room": "{room}"}}}}"#,
        examples::sample_uuid(n)
    )
}

#[tokio::test]
async fn each_python_quirk_is_counted_and_dead_lettered_under_its_own_reason() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let port = server.port().to_string();

    // What Python's json writes: json.dumps(json.loads(line)).
    let python_lines = [
        reading(1, "sensor-nan", "NaN", "lab"),
        reading(2, "sensor-nan", "Infinity", "lab"),
        reading(3, "sensor-nan", "-Infinity", "lab"),
        reading(4, "sensor-surrogate", "1.5", "\\ud800"),
        reading(5, "sensor-watcher\\n", "1.5", "lab"),
    ];
    let mut ids: Vec<String> =
        common::python_bus(&["publish", &port, STREAM], &python_lines.join("\n"))
            .lines()
            .map(str::to_owned)
            .collect();
    // What Python's json reads but cannot write (it writes inf as Infinity):
    // 1e400, from a producer that formats JSON itself.
    let big = reading(6, "sensor-big", "1e400", "lab");
    let id: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("data")
        .arg(&big)
        .query_async(&mut raw)
        .await
        .expect("XADD");
    ids.push(id);
    let valid = bus
        .publish("sensor.reading", &examples::sensor_reading(7))
        .await
        .expect("publish");
    let wire: BTreeMap<String, Vec<u8>> = common::entries(&mut raw, STREAM)
        .await
        .into_iter()
        .map(|(id, fields)| (id, fields.into_iter().next().expect("data").1))
        .collect();
    let text = |i: usize| String::from_utf8_lossy(&wire[&ids[i]]).into_owned();
    assert!(text(0).contains(r#""value": NaN"#), "{}", text(0));
    assert!(text(1).contains(r#""value": Infinity"#), "{}", text(1));
    assert!(text(2).contains(r#""value": -Infinity"#), "{}", text(2));
    assert!(text(3).contains(r#""room": "\ud800""#), "{}", text(3));
    assert!(
        text(4).contains(r#""source": "sensor-watcher\n""#),
        "{}",
        text(4)
    );

    // The observer: one reason each, with the module that wrote it.
    let shutdown = CancellationToken::new();
    let task = {
        let (bus, token) = (bus.clone(), shutdown.clone());
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
    let series = |reason: &str, source: &str| {
        format!(
            r#"orion_bus_observed_invalid_messages_total{{contract="sensor.reading",reason="{reason}",source="{source}"}}"#
        )
    };
    let expected = [
        ("non_finite_number", "sensor-nan", 3),
        ("non_finite_number", "sensor-big", 1),
        ("lone_surrogate", "sensor-surrogate", 1),
        ("contract_violation", "sensor-watcher", 1),
    ];
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let text = bus.metrics().encode();
            async move {
                text.contains(
                    r#"orion_bus_observed_messages_total{contract="sensor.reading",outcome="invalid"} 6"#,
                )
            }
        })
        .await,
        "{}",
        bus.metrics().encode()
    );
    shutdown.cancel();
    let report = task.await.expect("join").expect("observer");
    let metrics = bus.metrics().encode();
    for (reason, source, n) in expected {
        assert!(
            metrics.contains(&format!("{} {n}", series(reason, source))),
            "{reason} {source} in\n{metrics}"
        );
        assert_eq!(
            report.invalid_by_reason[&(
                "sensor.reading".to_owned(),
                reason.to_owned(),
                source.to_owned()
            )],
            n
        );
    }
    assert_eq!(report.invalid_by_reason.len(), expected.len());
    assert_eq!(report.by_contract["sensor.reading"], (1, 6));

    // A consumer dead-letters each with the same reason, bytes unchanged.
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("sensor.reading")
            .limit(1),
    )
    .await
    .expect("consumer")
    .run(
        |_: Delivery| std::future::ready(Ok::<(), HandlerError>(())),
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!((report.delivered, report.dead_lettered), (1, 6));
    let letters = orion_bus::dlq::list(&mut bus.connection(), &format!("{STREAM}:dlq"), "-", 10)
        .await
        .expect("list");
    let by_id: BTreeMap<&str, &orion_bus::dlq::DeadLetter> = letters
        .iter()
        .map(|l| (l.field("id").expect("id"), l))
        .collect();
    let reasons = [
        "non_finite_number",
        "non_finite_number",
        "non_finite_number",
        "lone_surrogate",
        "contract_violation",
        "non_finite_number",
    ];
    for (id, reason) in ids.iter().zip(reasons) {
        let letter = by_id[id.as_str()];
        assert_eq!(letter.field("reason"), Some(reason), "{id}");
        assert_eq!(letter.raw.as_deref(), Some(wire[id].as_slice()));
    }
    assert!(!by_id.contains_key(valid.as_str()));
}

#[test]
fn a_trailing_newline_passes_pythons_dollar_but_not_ecma_262() {
    // Python's re (which Python's jsonschema uses for `pattern`) lets `$`
    // match before a final newline.
    let out = std::process::Command::new(common::python_with_redis())
        .args([
            "-c",
            r#"import re; print(bool(re.search(r"^[a-z][a-z0-9-]*$", "sensor-watcher\n")))"#,
        ])
        .output()
        .expect("python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True");
    // orion-bus follows ECMA-262, with or without format assertion.
    let message: serde_json::Value =
        serde_json::from_str(&reading(1, "sensor-watcher\\n", "1.5", "lab")).expect("json");
    for assert_formats in [true, false] {
        let registry =
            examples::registry(ContractOptions::default().assert_formats(assert_formats))
                .expect("examples");
        let violations = registry
            .get("sensor.reading")
            .expect("contract")
            .validate(&message)
            .expect_err("refused");
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations.iter().next().expect("one").instance_path,
            "/source"
        );
    }
}
