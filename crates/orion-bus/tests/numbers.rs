//! The bus never alters a number: integers of any size (2^64, -2^63-1,
//! 10^30) and floats (1e-7, 0.1 + 0.2) written by redis-py's `json.dumps`,
//! the Python bus's way, keep their exact bytes through orion-bus's
//! publishing of JSON text, `tail`, dead letters and `dlq redrive`; and a
//! Python reader gets back the integers the producer wrote.

mod common;

use std::collections::BTreeMap;

use orion_bus::{CancellationToken, Consumer, ConsumerOptions, Delivery, HandlerError, dlq};
use orion_bus::{inspect, wire};
use orion_bus_examples as examples;

const STREAM: &str = "orion:sensor.readings";
const DLQ: &str = "orion:sensor.readings:dlq";

/// The numbers, as a producer writes them in its JSON text, and as
/// CPython's `json.dumps` writes them (`0.30000000000000004` is 0.1 + 0.2).
const NUMBERS: [(&str, &str); 5] = [
    ("18446744073709551616", "18446744073709551616"),
    ("-9223372036854775809", "-9223372036854775809"),
    (
        "1000000000000000000000000000000",
        "1000000000000000000000000000000",
    ),
    ("1e-7", "1e-07"),
    ("0.30000000000000004", "0.30000000000000004"),
];

/// A `sensor.reading` whose `value` is `number`, as JSON text.
fn reading(n: u64, sensor: &str, number: &str) -> String {
    format!(
        r#"{{"version": "1.0", "reading_id": "{}", "timestamp": "2026-11-24T10:00:00Z", "source": "sensor-py", "sensor": "{sensor}", "value": {number}}}"#,
        examples::sample_uuid(n)
    )
}

/// `json.dumps(json.loads(line))` for each line, by CPython.
fn json_dumps(lines: &[String]) -> Vec<String> {
    common::python_bus(&["encode"], &lines.join("\n"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `data` bytes of every entry of a stream, by entry id.
async fn data_by_id(
    raw: &mut redis::aio::ConnectionManager,
    stream: &str,
) -> BTreeMap<String, Vec<u8>> {
    common::entries(raw, stream)
        .await
        .into_iter()
        .map(|(id, fields)| {
            let data = fields
                .into_iter()
                .find(|(k, _)| k.as_slice() == b"data")
                .map(|(_, v)| v)
                .unwrap_or_default();
            (id, data)
        })
        .collect()
}

/// Python's bytes in compact form (no string here holds `", "` or `": "`).
fn compact(python: &str) -> String {
    python.replace(", ", ",").replace(": ", ":")
}

#[tokio::test]
async fn python_numbers_keep_their_bytes_through_tail_dead_letters_and_redrive() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let port = server.port().to_string();

    // redis-py writes five valid readings, five that break the contract
    // (an unknown sensor), and a last valid one.
    let valid: Vec<String> = (0..5u64)
        .map(|i| reading(i, "power", NUMBERS[i as usize].0))
        .collect();
    let invalid: Vec<String> = (0..5u64)
        .map(|i| reading(10 + i, "vibes", NUMBERS[i as usize].0))
        .collect();
    let last = reading(20, "power", "1");
    let lines: Vec<String> = valid
        .iter()
        .chain(&invalid)
        .chain([&last])
        .cloned()
        .collect();
    let ids: Vec<String> = common::python_bus(&["publish", &port, STREAM], &lines.join("\n"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 11);
    let python = json_dumps(&lines);
    for (i, (_, dumped)) in NUMBERS.iter().enumerate() {
        assert!(
            python[i].ends_with(&format!(r#""value": {dumped}}}"#)),
            "{}",
            python[i]
        );
    }
    let on_wire = data_by_id(&mut raw, STREAM).await;
    for (id, want) in ids.iter().zip(&python) {
        assert_eq!(on_wire[id], want.as_bytes(), "redis-py wrote json.dumps");
    }

    // tail: each record's data has the entry's own numbers.
    let mut conn = bus.connection();
    let entries = inspect::range_from(&mut conn, STREAM, "-", 100)
        .await
        .expect("range");
    let contract = bus.registry().get("sensor.reading").expect("contract");
    for (entry, want) in entries.iter().zip(&python).take(5) {
        let record = inspect::judge(contract, STREAM, entry, 1 << 20);
        assert!(record.valid, "{:?}", record.violations);
        let line = serde_json::to_string(&record).expect("record");
        assert!(
            line.contains(&format!(r#""data":{}"#, compact(want))),
            "{line}"
        );
    }

    // A consumer dead-letters the five invalid ones with their raw bytes.
    let report = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("sensor.reading")
            .limit(6),
    )
    .await
    .expect("consumer")
    .run(
        |_: Delivery| std::future::ready(Ok::<(), HandlerError>(())),
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!((report.delivered, report.dead_lettered), (6, 5));
    let letters = dlq::list(&mut conn, DLQ, "-", 100).await.expect("list");
    let by_original: BTreeMap<&str, &dlq::DeadLetter> = letters
        .iter()
        .map(|l| (l.field("id").expect("id"), l))
        .collect();
    for (id, want) in ids[5..10].iter().zip(&python[5..10]) {
        let letter = by_original[id.as_str()];
        assert_eq!(letter.field("reason"), Some("contract_violation"));
        assert_eq!(letter.raw.as_deref(), Some(want.as_bytes()));
        assert_eq!(letter.data.as_deref(), Some(want.as_str()));
    }

    // Redrive: dead letters holding valid messages, in Python's spelling and
    // in another client's compact one, go back byte for byte; the invalid
    // ones stay.
    let mut parked = Vec::new();
    let other_client: Vec<String> = NUMBERS
        .iter()
        .enumerate()
        .map(|(i, (written, _))| compact(&reading(30 + i as u64, "power", written)))
        .collect();
    for data in python[..5].iter().chain(&other_client) {
        let id: String = redis::cmd("XADD")
            .arg(DLQ)
            .arg("*")
            .arg("stream")
            .arg(STREAM)
            .arg("reason")
            .arg("handler_error")
            .arg("data")
            .arg(data)
            .query_async(&mut raw)
            .await
            .expect("XADD");
        parked.push((id, data.clone()));
    }
    let mut to_redrive: Vec<String> = parked.iter().map(|(id, _)| id.clone()).collect();
    to_redrive.extend(letters.iter().map(|l| l.dlq_id.clone()));
    let before = data_by_id(&mut raw, STREAM).await;
    let redriven = dlq::redrive(&bus, "sensor.reading", &to_redrive)
        .await
        .expect("redrive");
    assert_eq!(redriven.redriven.len(), 10, "{:?}", redriven.kept);
    assert_eq!(redriven.kept.len(), 5);
    assert!(
        redriven.kept.iter().all(|(_, why)| why.contains("/sensor")),
        "{:?}",
        redriven.kept
    );
    let after = data_by_id(&mut raw, STREAM).await;
    let new: BTreeMap<&String, &Vec<u8>> = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .collect();
    assert_eq!(new.len(), 10);
    for ((dlq_id, data), (_, new_id)) in parked.iter().zip(&redriven.redriven) {
        assert_eq!(
            after[new_id],
            data.as_bytes(),
            "{dlq_id} re-published unchanged"
        );
    }
    assert_eq!(common::xlen(&mut raw, DLQ).await, 5);

    // A Python reader of the redriven entries gets the integers back.
    let seen = common::python_bus(&["subscribe", &port, STREAM, "py", "py-1", "21"], "");
    let read: BTreeMap<String, String> = seen
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("line");
            let id = v["id"].as_str().expect("id").to_owned();
            (id, l.to_owned())
        })
        .collect();
    for (i, (_, new_id)) in redriven.redriven.iter().take(5).enumerate() {
        let (_, dumped) = NUMBERS[i];
        assert!(
            read[new_id].contains(&format!(r#""value": {dumped}}}"#)),
            "{}",
            read[new_id]
        );
    }
}

#[tokio::test]
async fn publishing_json_text_writes_what_json_dumps_writes() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    // Each number in several spellings, from several kinds of producer.
    let mut numbers: Vec<&str> = NUMBERS.iter().map(|(written, _)| *written).collect();
    numbers.extend([
        "1e-07",
        "1E5",
        "1.10",
        "-0",
        "1e+30",
        "123456789012345678901234567890123",
        "-18446744073709551617",
        "9007199254740993",
        "2.5",
    ]);
    let texts: Vec<String> = numbers
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            let pretty = reading(i as u64, "power", n);
            [compact(&pretty), pretty.replace(": ", ":\n  ")]
        })
        .collect();
    let python = json_dumps(
        &texts
            .iter()
            .map(|t| t.replace('\n', " "))
            .collect::<Vec<_>>(),
    );
    let refs: Vec<&[u8]> = texts.iter().map(String::as_bytes).collect();
    let ids = bus
        .publish_json_batch("sensor.reading", &refs)
        .await
        .expect("publish");
    let on_wire = data_by_id(&mut raw, STREAM).await;
    for ((id, want), text) in ids.iter().zip(&python).zip(&texts) {
        assert_eq!(
            String::from_utf8_lossy(&on_wire[id]),
            *want,
            "published from {text}"
        );
    }
    // Python's own bytes, published again, are unchanged.
    let refs: Vec<&[u8]> = python.iter().map(String::as_bytes).collect();
    let ids = bus
        .publish_json_batch("sensor.reading", &refs)
        .await
        .expect("publish");
    let on_wire = data_by_id(&mut raw, STREAM).await;
    for (id, want) in ids.iter().zip(&python) {
        assert_eq!(on_wire[id], want.as_bytes());
    }
}

#[test]
fn decoding_and_encoding_agree_with_the_wire_module() {
    // The one-line form used by tail and consume keeps numbers as written.
    let text = reading(1, "power", "18446744073709551616");
    let value = wire::decode_data(text.as_bytes(), 1 << 20).expect("decodes");
    assert_eq!(
        wire::exact_json(&value, text.as_bytes()).get(),
        compact(&text)
    );
}

#[tokio::test]
async fn a_handler_gets_the_bytes_the_producer_wrote() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let written: Vec<String> = ["18446744073709551616", "-9223372036854775809", "1e-07"]
        .iter()
        .enumerate()
        .map(|(i, v)| reading(i as u64, "power", v))
        .collect();
    let mut ids = Vec::new();
    for data in &written {
        let id: String = redis::cmd("XADD")
            .arg("orion:sensor.readings")
            .arg("*")
            .arg("data")
            .arg(data)
            .query_async(&mut raw)
            .await
            .expect("XADD");
        ids.push(id);
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let report = orion_bus::Consumer::new(
        &bus,
        orion_bus::ConsumerOptions::new("g", "c")
            .contract("sensor.reading")
            .limit(3),
    )
    .await
    .expect("consumer")
    .run(
        move |d: orion_bus::Delivery| {
            log.lock().expect("lock").push((
                d.id().to_owned(),
                String::from_utf8_lossy(d.data()).into_owned(),
                orion_bus::wire::exact_json(d.message(), d.data())
                    .get()
                    .to_owned(),
            ));
            async { Ok::<(), orion_bus::HandlerError>(()) }
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!(report.acked, 3);
    let seen = seen.lock().expect("lock").clone();
    for ((id, data, exact), (want_id, want)) in seen.iter().zip(ids.iter().zip(&written)) {
        assert_eq!(id, want_id);
        assert_eq!(data, want, "the stored bytes");
        assert_eq!(exact, &compact(want), "exact_json keeps every number");
    }
}
