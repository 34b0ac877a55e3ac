//! `orion-bus dlq` and `tail` end to end, against a real redis-server:
//! `dlq list` cuts payloads to a readable length unless `--full`, and
//! numbers written in Python's spelling (integers beyond 64 bits, `1e-07`)
//! keep their exact bytes through `publish`, `tail` and `dlq redrive`.

mod common;

use common::*;

use orion_bus_harness::RedisServer;

fn conn(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .expect("client")
        .get_connection()
        .expect("connection")
}

/// `XADD stream * field value ...`; returns the id.
fn xadd(conn: &mut redis::Connection, stream: &str, fields: &[(&str, &[u8])]) -> String {
    let mut c = redis::cmd("XADD");
    c.arg(stream).arg("*");
    for (k, v) in fields {
        c.arg(*k).arg(*v);
    }
    c.query(conn).expect("XADD")
}

/// `(id, data bytes)` of every entry of a stream.
fn entries(conn: &mut redis::Connection, stream: &str) -> Vec<(String, Vec<u8>)> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .expect("XRANGE");
    orion_bus::wire::parse_entries(reply)
        .expect("entries")
        .into_iter()
        .map(|e| {
            let data = e.data().map(<[u8]>::to_vec).unwrap_or_default();
            (e.id, data)
        })
        .collect()
}

/// A `sensor.reading` with `value`, as Python's `json.dumps` writes it.
fn python_reading(n: u64, value: &str) -> String {
    format!(
        r#"{{"version": "1.0", "reading_id": "{}", "timestamp": "2026-11-24T10:00:00Z", "source": "sensor-py", "sensor": "power", "value": {value}}}"#,
        orion_bus_examples::sample_uuid(n)
    )
}

#[test]
fn dlq_list_cuts_payloads_to_a_readable_length_unless_full() {
    let server = RedisServer::start().expect("redis");
    let mut conn = conn(&server);
    let huge = format!(r#"{{"pad": "{}"}}"#, "é".repeat(1_500_000));
    let error = "x".repeat(1000);
    let small = r#"{"a": 1}"#;
    xadd(
        &mut conn,
        "orion:commands:dlq",
        &[
            ("reason", b"too_large"),
            ("error", error.as_bytes()),
            ("data", huge.as_bytes()),
        ],
    );
    xadd(
        &mut conn,
        "orion:commands:dlq",
        &[("reason", b"invalid_json"), ("data", small.as_bytes())],
    );

    let out = run(cmd(&server).args(["dlq", "list", "command"]), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.len() < 2000, "{} bytes listed", stdout.len());
    let letters: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters.len(), 2);
    let data = letters[0]["data"].as_str().expect("data");
    assert!(
        data.len() <= orion_bus::dlq::PREVIEW_BYTES,
        "{}",
        data.len()
    );
    assert!(
        huge.starts_with(data),
        "a prefix, cut at a character boundary"
    );
    assert_eq!(letters[0]["data_bytes"], huge.len());
    assert_eq!(
        letters[0]["truncated"],
        serde_json::json!(["error", "data"])
    );
    assert_eq!(
        letters[0]["fields"]["error"].as_str().map(str::len),
        Some(orion_bus::dlq::PREVIEW_BYTES)
    );
    assert_eq!(letters[0]["fields"]["reason"], "too_large");
    // What fits is shown as it is, with nothing added.
    assert_eq!(letters[1]["data"], small);
    assert!(letters[1].get("truncated").is_none(), "{}", letters[1]);
    assert!(letters[1].get("data_bytes").is_none(), "{}", letters[1]);

    // --full shows everything.
    let out = run(cmd(&server).args(["dlq", "list", "command", "--full"]), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let letters: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters[0]["data"], huge.as_str());
    assert_eq!(letters[0]["fields"]["error"], error.as_str());
    assert!(letters[0].get("truncated").is_none());
}

#[test]
fn python_numbers_keep_their_bytes_through_publish_tail_and_redrive() {
    let server = RedisServer::start().expect("redis");
    let mut conn = conn(&server);
    let stream = "orion:sensor.readings";
    let values = [
        "18446744073709551616",
        "-9223372036854775809",
        "1000000000000000000000000000000",
        "1e-07",
        "0.30000000000000004",
    ];

    // publish: compact input with big integers comes out as json.dumps
    // writes it, the integers unchanged.
    let input: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            python_reading(i as u64, v)
                .replace(", ", ",")
                .replace(": ", ":")
                + "\n"
        })
        .collect();
    let out = run(cmd(&server).args(["publish", "sensor.reading"]), &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let published = entries(&mut conn, stream);
    assert_eq!(published.len(), values.len());
    for ((_, data), (i, v)) in published.iter().zip(values.iter().enumerate()) {
        assert_eq!(text(data), python_reading(i as u64, v));
    }

    // tail: the numbers as they are on the wire.
    let out = run(
        cmd(&server).args(["tail", "sensor.reading", "--count", "10"]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), values.len());
    for (line, v) in lines.iter().zip(values) {
        assert!(line.contains(&format!(r#""value":{v}}}"#)), "{line}");
        assert!(line.contains(r#""valid":true"#), "{line}");
    }

    // consume: the numbers as they are on the wire, too.
    let out = run(
        cmd(&server).args([
            "consume",
            "sensor.reading",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            &values.len().to_string(),
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), values.len());
    for (line, v) in lines.iter().zip(values) {
        assert!(line.contains(&format!(r#""value":{v}}}"#)), "{line}");
    }

    // dlq redrive: the original bytes go back, in whatever spelling.
    let parked = [
        python_reading(10, values[0]),
        python_reading(11, "1e-07").replace(", ", ","),
        r#"{"value":12345678901234567890123,"version":"1.0","reading_id":"RID","timestamp":"2026-11-24T10:00:00Z","source":"x","sensor":"power"}"#
            .replace("RID", &orion_bus_examples::sample_uuid(12)),
    ];
    for data in &parked {
        xadd(
            &mut conn,
            &format!("{stream}:dlq"),
            &[
                ("stream", stream.as_bytes()),
                ("reason", b"handler_error"),
                ("data", data.as_bytes()),
            ],
        );
    }
    let out = run(
        cmd(&server).args(["dlq", "redrive", "sensor.reading", "--all"]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = entries(&mut conn, stream);
    assert_eq!(after.len(), values.len() + parked.len());
    for ((_, data), want) in after[values.len()..].iter().zip(&parked) {
        assert_eq!(text(data), *want, "re-published unchanged");
    }
    assert!(entries(&mut conn, &format!("{stream}:dlq")).is_empty());
}
