//! The observer's memory is bounded by bytes, not by what it reads:
//! `serve --observe --from-beginning` over 20 entries of 10 MB counts them
//! as too large without holding them, and its peak RSS stays small.

mod common;

use std::time::{Duration, Instant};

use common::*;
use orion_bus_harness::RedisServer;

/// Peak resident set size of `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn the_observer_reads_huge_entries_without_holding_them() {
    let server = RedisServer::start().expect("redis");
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_connection()
        .expect("connection");
    let huge = "x".repeat(10 * 1024 * 1024);
    for _ in 0..20 {
        redis::cmd("XADD")
            .arg("orion:alerts")
            .arg("*")
            .arg("data")
            .arg(&huge)
            .query::<String>(&mut conn)
            .expect("XADD");
    }
    let small = sample("alert", 1);
    redis::cmd("XADD")
        .arg("orion:alerts")
        .arg("*")
        .arg("data")
        .arg(&small)
        .query::<String>(&mut conn)
        .expect("XADD");
    let port = orion_bus_harness::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd(&server)
        .args([
            "serve",
            "--observe",
            "--from-beginning",
            "--http-addr",
            &addr,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let too_large = "orion_bus_observed_invalid_messages_total{contract=\"alert\",reason=\"too_large\",source=\"unknown\"} 20";
    let valid = "orion_bus_observed_messages_total{contract=\"alert\",outcome=\"valid\"} 1";
    let start = Instant::now();
    let mut metrics = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        metrics = http_get(&addr, "/metrics").unwrap_or_default();
        if metrics.contains(too_large) && metrics.contains(valid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let peak = peak_rss(child.id());
    terminate(child.id());
    let _ = child.wait();
    assert!(metrics.contains(too_large), "{metrics}");
    assert!(metrics.contains(valid), "{metrics}");
    assert!(
        peak < 64 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / 1024 / 1024
    );
}
