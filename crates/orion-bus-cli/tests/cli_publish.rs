//! `orion-bus publish` of a batch against a real redis-server: each
//! transaction is written whole or not at all, only ids Redis confirmed are
//! printed, and the error is one line that says what happened.

mod common;

use common::*;

use std::process::Stdio;

use orion_bus_harness::RedisServer;

fn ndjson(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|k| {
            orion_bus_examples::sample("sensor.reading", k)
                .expect("example")
                .to_string()
                + "\n"
        })
        .collect()
}

fn publish(server: &RedisServer, input: &str) -> (Option<i32>, String, String) {
    let out = run(cmd(server).args(["publish", "sensor.reading"]), input);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_batch_refused_at_maxmemory_prints_no_id_writes_nothing_and_says_so_in_one_line() {
    let server = RedisServer::start().expect("redis");
    let (code, out, err) = publish(&server, &ndjson(0, 10));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 10);
    limit_memory(&server, 64 * 1024);
    // 500 messages (one transaction) cannot be queued in 64 KiB.
    let (code, out, err) = publish(&server, &ndjson(100, 500));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(out, "", "no id printed");
    assert_eq!(redis_cli(&server, &["XLEN", "orion:sensor.readings"]), "10");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("OOM")
            && lines[0].contains("messages 1-500")
            && lines[0].contains("not written"),
        "{err}"
    );
    assert!(lines[0].len() < 600, "readable: {} bytes", lines[0].len());
}

#[test]
fn a_large_input_stops_at_the_refused_transaction_and_prints_only_what_was_written() {
    let server = RedisServer::start().expect("redis");
    // Room for about the first transaction of 1,000, not for the second.
    limit_memory(&server, 900 * 1024);
    let (code, out, err) = publish(&server, &ndjson(0, 5000));
    assert_eq!(code, Some(1), "{err}");
    let printed = out.lines().count();
    let written: usize = redis_cli(&server, &["XLEN", "orion:sensor.readings"])
        .parse()
        .expect("XLEN");
    assert_eq!(printed, written, "exactly the ids written are printed");
    assert_eq!(printed % 1000, 0, "whole transactions only: {printed}");
    assert!(
        (1000..5000).contains(&printed),
        "some transactions went through: {printed}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{printed} message(s) written")) && err.contains("not sent")
            || printed == 4000,
        "{err}"
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let server = RedisServer::start().expect("redis");
    // A consumer logs its start at info level; stderr is a pipe.
    let mut child = cmd(&server)
        .env("ORION_BUS_LOG_LEVEL", "info")
        .args([
            "consume",
            "sensor.reading",
            "--group",
            "g",
            "--consumer",
            "c",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let _ = child.kill();
        child.wait_with_output().expect("output")
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("consumer started"), "logged: {err:?}");
    assert!(!err.contains('\u{1b}'), "no ANSI escape codes: {err:?}");
}
