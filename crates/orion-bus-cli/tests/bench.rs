//! `orion-bus bench` end to end: the JSON report's shape, each scenario on
//! a short run, cleanup of its streams, and usage errors.

use std::process::{Command, Output};

use orion_bus_harness::RedisServer;
use serde_json::Value;

/// The binary with no `ORION_BUS_*` variable from the caller's environment.
fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orion-bus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ORION_BUS_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(args: &[&str]) -> Output {
    cmd().args(args).output().expect("run orion-bus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", text(&out.stdout)))
}

fn number(r: &Value, key: &str) -> f64 {
    r.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} missing or not a number in {r}"))
}

#[test]
fn publish_json_has_every_key_and_starts_its_own_server() {
    let out = run(&["bench", "publish", "--duration", "1s", "--json"]);
    let r = report(&out);
    for key in [
        "scenario",
        "messages",
        "throughput_msgs_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
        "peak_rss_bytes",
        "cpu_seconds",
    ] {
        assert!(r.get(key).is_some(), "{key} missing in {r}");
    }
    assert_eq!(r["scenario"], "publish");
    assert!(number(&r, "messages") > 0.0, "{r}");
    assert!(number(&r, "throughput_msgs_per_s") > 0.0, "{r}");
    assert!(number(&r, "p50_ms") <= number(&r, "p99_ms"), "{r}");
    assert!(number(&r, "p99_ms") <= number(&r, "p999_ms"), "{r}");
    assert!(number(&r, "peak_rss_bytes") > 1e6, "{r}");
    assert!(number(&r, "cpu_seconds") >= 0.0, "{r}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("throwaway redis-server"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("bench publish:"), "no progress: {stderr}");
}

#[test]
fn e2e_and_rate_handle_everything_and_clean_up() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let e2e = report(&run(&[
        "bench",
        "e2e",
        "--duration",
        "1s",
        "--consumers",
        "3",
        "--pipeline",
        "16",
        "--payload-bytes",
        "512",
        "--redis-url",
        &url,
        "--json",
    ]));
    assert_eq!(e2e["scenario"], "e2e");
    assert_eq!(e2e["consumers"], 3);
    assert_eq!(e2e["payload_bytes"], 512);
    assert!(number(&e2e, "messages") > 0.0, "{e2e}");
    assert_eq!(e2e["messages"], e2e["published"], "{e2e}");
    assert_eq!(e2e["acked"], e2e["messages"], "{e2e}");
    assert_eq!(e2e["unhandled"], 0, "{e2e}");

    let rate = report(&run(&[
        "bench",
        "rate",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--contract",
        "alert",
        "--redis-url",
        &url,
        "--json",
    ]));
    assert_eq!(rate["offered_rate_msgs_per_s"], 200);
    assert_eq!(rate["contract"], "alert");
    let handled = number(&rate, "messages");
    assert!((150.0..=250.0).contains(&handled), "{rate}");
    assert!(rate["send_lag_p99_ms"].is_number(), "{rate}");

    // Every key the runs wrote is gone.
    let keys = Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "--scan"])
        .output()
        .expect("redis-cli");
    assert_eq!(text(&keys.stdout).trim(), "", "left behind");
}

#[test]
fn the_table_names_what_it_measures() {
    let server = RedisServer::start().expect("redis-server");
    let out = run(&[
        "bench",
        "rate",
        "--rate",
        "100",
        "--consumers",
        "0",
        "--duration",
        "1s",
        "--redis-url",
        &server.url(),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let table = text(&out.stdout);
    for row in ["throughput", "p50 / p95 / p99", "peak RSS", "CPU time"] {
        assert!(table.contains(row), "{row} missing in:\n{table}");
    }
    assert!(table.contains("publish call"), "{table}");
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["bench", "load"][..],
        &[
            "bench",
            "rate",
            "--rate",
            "0",
            "--redis-url",
            "redis://127.0.0.1:1",
        ],
        &[
            "bench",
            "publish",
            "--payload-bytes",
            "10",
            "--redis-url",
            "redis://127.0.0.1:1",
        ],
        &[
            "bench",
            "publish",
            "--contract",
            "nope",
            "--redis-url",
            "redis://127.0.0.1:1",
        ],
        &["bench", "e2e", "--duration", "soon"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn any_contract_can_be_benched_from_a_sample() {
    let server = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("note.schema.json"),
        r#"{"type": "object", "additionalProperties": false,
            "required": ["version", "text"],
            "properties": {"version": {"const": "1.0"}, "text": {"type": "string"}}}"#,
    )
    .expect("write schema");
    let sample = dir.path().join("note.json");
    std::fs::write(&sample, r#"{"version": "1.0", "text": "hello"}"#).expect("write sample");
    let contracts = dir.path().to_string_lossy().into_owned();
    let sample = sample.to_string_lossy().into_owned();
    let r = report(&run(&[
        "bench",
        "e2e",
        "--consumers",
        "2",
        "--duration",
        "1s",
        "--contracts-dir",
        &contracts,
        "--contract",
        "note",
        "--sample",
        &sample,
        "--payload-bytes",
        "200",
        "--redis-url",
        &server.url(),
        "--json",
    ]));
    assert_eq!(r["contract"], "note");
    assert_eq!(r["payload_bytes"], 200);
    assert!(number(&r, "messages") > 0.0, "{r}");
    assert_eq!(r["acked"], r["messages"], "{r}");
    assert!(number(&r, "p50_ms") > 0.0, "timestamps were read: {r}");

    // Without a sample, a non-example contract is a usage error.
    let out = run(&[
        "bench",
        "publish",
        "--contracts-dir",
        &contracts,
        "--contract",
        "note",
        "--redis-url",
        &server.url(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("give a sample"),
        "{}",
        text(&out.stderr)
    );
}
