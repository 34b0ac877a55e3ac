//! Regression tests for issue 11 through the `orion-bus` command, against
//! a real redis-server: `consume` claims a dead consumer's entry (case 1),
//! restarts with its own pending entries (case 3), starts at `maxmemory`
//! (case 10), and refuses (or waits for) a consumer name another process
//! holds (case 8). Each asserts the exact ids printed and left pending.

mod common;

use common::*;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orion_bus_harness::RedisServer;

/// Publishes `command` samples `from..from + n` with `orion-bus publish`;
/// returns their ids.
fn publish(server: &RedisServer, from: u64, n: u64) -> Vec<String> {
    let input: String = (from..from + n)
        .map(|k| {
            orion_bus_examples::sample("command", k)
                .expect("example")
                .to_string()
                + "\n"
        })
        .collect();
    let out = run(cmd(server).args(["publish", "command"]), &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ids: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), n as usize);
    ids
}

/// Pending ids of `group` on `orion:commands`, sorted.
fn pending(server: &RedisServer, group: &str) -> Vec<String> {
    let mut ids: Vec<String> = redis_cli(
        server,
        &["XPENDING", "orion:commands", group, "-", "+", "1000"],
    )
    .lines()
    .filter(|l| l.contains('-') && l.chars().all(|c| c.is_ascii_digit() || c == '-'))
    .map(str::to_owned)
    .collect();
    ids.sort();
    ids
}

fn until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit; kills it and returns `None` after `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `orion-bus consume`, its output collected as it comes.
struct Consume {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Consume {
    fn spawn(server: &RedisServer, args: &[&str]) -> Self {
        let mut child = cmd(server)
            .arg("consume")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn consume");
        let lines = Arc::<Mutex<Vec<String>>>::default();
        let stderr = Arc::<Mutex<String>>::default();
        let (out, l) = (child.stdout.take().expect("stdout"), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().expect("lock").push(line);
            }
        });
        let (mut err, e) = (child.stderr.take().expect("stderr"), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock().expect("lock").push_str(&text(&buf[..n]));
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// The ids of the entries printed so far, in order.
    fn ids(&self) -> Vec<String> {
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("an NDJSON line");
                v["id"].as_str().expect("id").to_owned()
            })
            .collect()
    }

    fn wait_for(&self, n: usize, limit: Duration) -> bool {
        until(limit, || self.ids().len() >= n)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGTERM, then its exit status (`None` if it had to be killed).
    fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            let status = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
        let status = exit_within(&mut self.child, limit);
        // Let the reader threads take the last output.
        std::thread::sleep(Duration::from_millis(100));
        status
    }
}

impl Drop for Consume {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------
// 1. consume claims a dead consumer's entry.
// ---------------------------------------------------------------------

fn consume_claims_a_dead_consumers_entry_with(extra: &[&str]) {
    let server = RedisServer::start().expect("redis");
    let ids = publish(&server, 1, 1);
    assert_eq!(
        redis_cli(&server, &["XGROUP", "CREATE", "orion:commands", "g", "0"]),
        "OK"
    );
    let read = redis_cli(
        &server,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "dead",
            "COUNT",
            "1",
            "STREAMS",
            "orion:commands",
            ">",
        ],
    );
    assert!(read.contains(&ids[0]), "{read}");
    // "dead" dies here, with the entry pending.
    let mut args = vec![
        "command",
        "--group",
        "g",
        "--consumer",
        "live",
        "--claim-idle",
        "1s",
        "--block",
        "200ms",
    ];
    args.extend_from_slice(extra);
    let mut live = Consume::spawn(&server, &args);
    live.wait_for(1, Duration::from_secs(1 + 5));
    assert_eq!(
        live.ids(),
        ids,
        "claimed and printed within claim_idle + 5 s; stderr: {}",
        live.stderr()
    );
    assert!(until(Duration::from_secs(3), || pending(&server, "g").is_empty()));
    let status = live.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        live.stderr()
    );
    assert_eq!(live.ids(), ids, "printed once");
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
}

#[test]
fn consume_claims_a_dead_consumers_entry() {
    consume_claims_a_dead_consumers_entry_with(&[]);
}

#[test]
fn consume_with_max_in_flight_claims_a_dead_consumers_entry() {
    consume_claims_a_dead_consumers_entry_with(&["--max-in-flight", "8"]);
}

// ---------------------------------------------------------------------
// 3. consume restarts with entries pending under its own name.
// ---------------------------------------------------------------------

#[test]
fn consume_restarted_with_two_own_pending_entries_handles_them_then_new_ones() {
    let server = RedisServer::start().expect("redis");
    let ids = publish(&server, 1, 3);
    assert_eq!(
        redis_cli(&server, &["XGROUP", "CREATE", "orion:commands", "g", "0"]),
        "OK"
    );
    // A previous run of "c" was delivered the first two and went away.
    redis_cli(
        &server,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "2",
            "STREAMS",
            "orion:commands",
            ">",
        ],
    );
    assert_eq!(pending(&server, "g"), ids[..2].to_vec());
    let mut c = Consume::spawn(
        &server,
        &[
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "3",
            "--block",
            "200ms",
        ],
    );
    let status = exit_within(&mut c.child, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        c.ids(),
        ids,
        "own pending first, then the new one ({status:?}); stderr: {}",
        c.stderr()
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 10. consume of an existing group starts at maxmemory.
// ---------------------------------------------------------------------

fn config_set(conn: &mut redis::Connection, key: &str, value: String) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query::<()>(conn)
        .expect("CONFIG SET");
}

/// `maxmemory` just above usage (`noeviction`), writes until OOM, then
/// `maxmemory` a little below usage so that no write gets through again.
fn fill_to_maxmemory(server: &RedisServer) {
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_connection()
        .expect("connection");
    config_set(&mut conn, "maxmemory-policy", "noeviction".to_owned());
    let used = used_memory(server);
    config_set(&mut conn, "maxmemory", (used + 1024 * 1024).to_string());
    let value = vec![b'x'; 1024];
    let full = (0..100_000).any(|n| {
        match redis::cmd("SET")
            .arg(format!("ballast:{n}"))
            .arg(&value)
            .query::<()>(&mut conn)
        {
            Ok(()) => false,
            Err(e) if e.code() == Some("OOM") => true,
            Err(e) => panic!("SET: {e}"),
        }
    });
    assert!(full, "Redis never reached maxmemory");
    let used = used_memory(server);
    config_set(&mut conn, "maxmemory", (used - 64 * 1024).to_string());
    let refused = redis::cmd("SET")
        .arg("probe")
        .arg("x")
        .query::<()>(&mut conn)
        .expect_err("Redis is full");
    assert_eq!(refused.code(), Some("OOM"), "{refused}");
}

#[test]
fn consume_of_an_existing_group_starts_at_maxmemory() {
    let server = RedisServer::start().expect("redis");
    let ids = publish(&server, 1, 1);
    assert_eq!(
        redis_cli(&server, &["XGROUP", "CREATE", "orion:commands", "g", "0"]),
        "OK"
    );
    fill_to_maxmemory(&server);
    let mut c = Consume::spawn(
        &server,
        &[
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "1",
            "--block",
            "200ms",
        ],
    );
    let status = exit_within(&mut c.child, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr: {}",
        c.stderr()
    );
    assert_eq!(c.ids(), ids);
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 8. Two processes with the same consumer name.
// ---------------------------------------------------------------------

const SAME: [&str; 7] = [
    "command",
    "--group",
    "g",
    "--consumer",
    "same",
    "--block",
    "200ms",
];

#[test]
fn a_second_consume_with_a_name_in_use_exits_naming_the_holder() {
    let server = RedisServer::start().expect("redis");
    let mut first = Consume::spawn(&server, &SAME);
    let ids = publish(&server, 1, 2);
    first.wait_for(2, Duration::from_secs(10));
    assert_eq!(first.ids(), ids, "stderr: {}", first.stderr());
    let mut second = Consume::spawn(&server, &SAME);
    let status = exit_within(&mut second.child, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    let stderr = second.stderr();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the second refuses to start; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&first.child.id().to_string()) && stderr.contains("same"),
        "the error names the holder (pid {}): {stderr}",
        first.child.id()
    );
    assert_eq!(second.ids(), Vec::<String>::new());
    // The first goes on alone.
    let more = publish(&server, 3, 2);
    first.wait_for(4, Duration::from_secs(10));
    let status = first.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let all: Vec<String> = ids.iter().chain(&more).cloned().collect();
    assert_eq!(first.ids(), all, "each printed once");
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
    // Stopped cleanly, the name is free again at once.
    let last = publish(&server, 5, 1);
    let mut third = Consume::spawn(&server, &[&SAME[..], &["--count", "1"]].concat());
    let status = exit_within(&mut third.child, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        third.stderr()
    );
    assert_eq!(third.ids(), last);
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
}

#[test]
fn a_second_consume_waiting_for_its_name_takes_over_when_the_first_stops() {
    let server = RedisServer::start().expect("redis");
    let mut first = Consume::spawn(&server, &SAME);
    let ids = publish(&server, 1, 2);
    first.wait_for(2, Duration::from_secs(10));
    assert_eq!(first.ids(), ids, "stderr: {}", first.stderr());
    let mut second = Consume::spawn(&server, &[&SAME[..], &["--wait-for-name"]].concat());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        second.is_running(),
        "it waits for the name: {}",
        second.stderr()
    );
    // Meanwhile the first handles everything.
    let during = publish(&server, 3, 1);
    first.wait_for(3, Duration::from_secs(10));
    let status = first.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let handled_first: Vec<String> = ids.iter().chain(&during).cloned().collect();
    assert_eq!(first.ids(), handled_first);
    assert_eq!(second.ids(), Vec::<String>::new(), "nothing taken");
    // Then the second has the name.
    let after = publish(&server, 4, 1);
    second.wait_for(1, Duration::from_secs(10));
    assert_eq!(second.ids(), after, "stderr: {}", second.stderr());
    let status = second.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(first.ids(), handled_first, "each printed once");
    assert_eq!(second.ids(), after);
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
}

// ---------------------------------------------------------------------
// consume with the flow settings given: nothing stalls, nothing repeats.
// ---------------------------------------------------------------------

#[test]
fn consume_with_concurrency_max_in_flight_and_read_count_given_handles_each_entry_once() {
    let server = RedisServer::start().expect("redis");
    let ids = publish(&server, 1, 40);
    let out = cmd(&server)
        .args([
            "consume",
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "40",
            "--concurrency",
            "4",
            "--max-in-flight",
            "8",
            "--read-count",
            "4",
            "--block",
            "100ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consume");
    let mut child = out;
    let status = exit_within(&mut child, Duration::from_secs(20)).expect("consume exits");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    assert!(status.success(), "{status:?}");
    let mut printed: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("an NDJSON line");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect();
    printed.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(printed, want, "each entry printed once");
    assert_eq!(pending(&server, "g"), Vec::<String>::new());
    // A bad value is refused before anything runs.
    let bad = cmd(&server)
        .args([
            "consume",
            "command",
            "--group",
            "g",
            "--consumer",
            "d",
            "--max-in-flight",
            "0",
        ])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}
