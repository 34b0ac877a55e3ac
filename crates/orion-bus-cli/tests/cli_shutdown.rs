//! Shutdown of `orion-bus consume` is bounded by the grace period, also
//! when nothing reads its output: what was not written out stays pending.
//! And an idle consumer stops at once.

mod common;

use common::*;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orion_bus_harness::RedisServer;

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_ends_consume_within_the_grace_even_when_its_output_blocks() {
    let server = RedisServer::start().expect("redis");
    // Far more than a pipe holds (64 KiB): the output blocks.
    let input: String = (0..1500)
        .map(|k| {
            orion_bus_examples::sample("sensor.reading", k)
                .expect("example")
                .to_string()
                + "\n"
        })
        .collect();
    let mut publish = cmd(&server)
        .args(["publish", "sensor.reading"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("publish");
    std::io::Write::write_all(&mut publish.stdin.take().expect("stdin"), input.as_bytes())
        .expect("write");
    assert!(publish.wait().expect("publish").success());
    let mut consume = cmd(&server)
        .args([
            "consume",
            "sensor.reading",
            "--group",
            "g",
            "--consumer",
            "c",
            "--shutdown-grace",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("consume");
    // Wait until the output is stuck: the group stops moving.
    let mut last = String::new();
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = redis_cli(&server, &["XINFO", "GROUPS", "orion:sensor.readings"]);
        if now == last || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = now;
    }
    terminate(consume.id());
    let took = wait_exit(&mut consume, Duration::from_secs(8));
    let Some(took) = took else {
        let _ = consume.kill();
        panic!("consume did not exit within 8 s of SIGTERM with a 1 s grace");
    };
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM"
    );
    // What reached the pipe was acked; the rest stays pending.
    let mut out = String::new();
    consume
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let printed = out.lines().count();
    assert!(printed > 0 && printed < 1500, "printed {printed}");
    let groups = redis_cli(&server, &["XINFO", "GROUPS", "orion:sensor.readings"]);
    let pending: usize = groups
        .lines()
        .skip_while(|l| *l != "pending")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("pending count");
    let read: usize = groups
        .lines()
        .skip_while(|l| *l != "entries-read")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("entries-read");
    assert_eq!(read - pending, printed, "acked exactly what was printed");
    assert!(pending >= 1, "the entry it could not print stays pending");
}

#[test]
fn an_idle_consume_stops_at_once_on_terminate() {
    let server = RedisServer::start().expect("redis");
    let mut consume = cmd(&server)
        .args([
            "consume",
            "sensor.reading",
            "--group",
            "g",
            "--consumer",
            "c",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("consume");
    // Started and idle: its group exists and nothing is pending.
    let start = Instant::now();
    while redis_cli(&server, &["EXISTS", "orion:consumer-lease:g:c"]) != "1" {
        assert!(start.elapsed() < Duration::from_secs(10), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    terminate(consume.id());
    let took = wait_exit(&mut consume, Duration::from_secs(5)).expect("exits");
    // The process itself stops within 50 ms of its consumer; the margin
    // here is for process teardown on a loaded test machine.
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert_eq!(
        redis_cli(&server, &["EXISTS", "orion:consumer-lease:g:c"]),
        "0",
        "the name lease is released on a clean stop"
    );
}
