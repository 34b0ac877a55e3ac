//! The `orion-bus` command end to end, against a real redis-server:
//! exit codes, all-or-nothing publishing, consuming with --count, tail,
//! serve's endpoints and signal handling, configuration errors and the demo.

mod common;

use common::*;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orion_bus_harness::RedisServer;

#[test]
fn validate_exit_codes() {
    let good = sample("alert", 1);
    let out = run(cmd(None).args(["validate", "alert", "-"]), &good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 message(s) valid"));

    // NDJSON, second line invalid in two ways.
    let mut bad: serde_json::Value = serde_json::from_str(&good).expect("json");
    bad["severity"] = "meh".into();
    bad["alert_id"] = "nope".into();
    let input = format!("{good}\n{bad}\n");
    let out = run(cmd(None).args(["validate", "alert"]), &input);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("line 2: /severity"), "{stdout}");
    assert!(stdout.contains("line 2: /alert_id"), "{stdout}");
    assert!(stdout.contains("1 of 2 message(s) invalid"), "{stdout}");

    let out = run(cmd(None).args(["validate", "no.such"]), &good);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown contract"),
        "{}",
        text(&out.stderr)
    );

    let out = run(cmd(None).args(["validate"]), "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing argument is a usage error"
    );
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let mut c = cmd(None);
    // `consume` takes --block and --concurrency; max_len, which it does not
    // use, is still checked when it comes from the environment.
    c.env("ORION_BUS_MAX_LEN", "lots").args([
        "consume",
        "alert",
        "--group",
        "g",
        "--consumer",
        "c",
        "--block",
        "soon",
        "--concurrency",
        "0",
    ]);
    let out = run(&mut c, "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for needle in [
        "ORION_BUS_MAX_LEN",
        "--block",
        "--concurrency",
        "3 problem(s)",
    ] {
        assert!(stderr.contains(needle), "{needle} missing: {stderr}");
    }
    let mut c = cmd(None);
    c.env("ORION_BUS_CONTRACTS_DIR", "/nonexistent")
        .args(["validate", "alert"]);
    let out = run(&mut c, "{}");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent"));
}

#[test]
fn config_file_and_precedence() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("orion.toml");
    std::fs::write(&file, "prefix = \"fromfile\"\nmax_len = 0\n").expect("write");
    let server = RedisServer::start().expect("redis");
    let mut c = cmd(&server);
    c.args(["--config"]).arg(&file).args(["publish", "command"]);
    let out = run(&mut c, &sample("command", 1));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(redis_cli(&server, &["XLEN", "fromfile:commands"]), "1");
    // The flag beats the file.
    let mut c = cmd(&server);
    c.args(["--config"])
        .arg(&file)
        .args(["publish", "command", "--prefix", "fromflag"]);
    let out = run(&mut c, &sample("command", 2));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(redis_cli(&server, &["XLEN", "fromflag:commands"]), "1");
}

#[test]
fn publish_is_all_or_nothing() {
    let server = RedisServer::start().expect("redis");
    let input: String = (0..3).map(|n| sample("command", n) + "\n").collect();
    let out = run(cmd(&server).args(["publish", "command"]), &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ids: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 3, "one id per message");
    let stored = redis_cli(&server, &["XRANGE", "orion:commands", "-", "+"]);
    for id in &ids {
        assert!(stored.contains(id.as_str()), "{id} not in {stored}");
    }

    let bad = format!(
        "{}\n{{\"version\": \"1.0\"}}\n{}\n",
        sample("command", 5),
        sample("command", 6)
    );
    let out = run(cmd(&server).args(["publish", "command"]), &bad);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2:"), "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(text(&out.stdout).is_empty());
    assert_eq!(
        redis_cli(&server, &["XLEN", "orion:commands"]),
        "3",
        "nothing written"
    );

    // A single pretty-printed document is one message.
    let pretty = serde_json::to_string_pretty(&orion_bus_examples::alert(1)).expect("json");
    let out = run(cmd(&server).args(["publish", "alert", "-"]), &pretty);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1);
}

#[test]
fn consume_with_count_prints_ndjson_and_leaves_nothing_pending() {
    let server = RedisServer::start().expect("redis");
    let input: String = (0..5).map(|n| sample("alert", n) + "\n").collect();
    let out = run(cmd(&server).args(["publish", "alert"]), &input);
    let ids: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 5);

    let consume = |n: &str| {
        run(
            cmd(&server).args([
                "consume",
                "alert",
                "--group",
                "ops",
                "--consumer",
                "ops-1",
                "--count",
                n,
            ]),
            "",
        )
    };
    let out = consume("3");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for (line, id) in lines.iter().zip(&ids) {
        assert_eq!(line["contract"], "alert");
        assert_eq!(line["stream"], "orion:alerts");
        assert_eq!(line["id"], id.as_str(), "delivery order");
        assert_eq!(line["data"]["version"], "1.0");
    }
    assert_eq!(
        redis_cli(&server, &["XPENDING", "orion:alerts", "ops"])
            .lines()
            .next(),
        Some("0")
    );
    let out = consume("2");
    let rest: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["id"], ids[3].as_str(), "nothing was skipped");
    assert_eq!(rest[1]["id"], ids[4].as_str());
    assert_eq!(
        redis_cli(&server, &["XPENDING", "orion:alerts", "ops"])
            .lines()
            .next(),
        Some("0")
    );
}

#[test]
fn tail_marks_contract_violations_and_never_acks() {
    let server = RedisServer::start().expect("redis");
    let out = run(cmd(&server).args(["publish", "alert"]), &sample("alert", 1));
    assert_eq!(out.status.code(), Some(0));
    redis_cli(
        &server,
        &[
            "XADD",
            "orion:alerts",
            "*",
            "data",
            "{\"version\": \"2.0\"}",
        ],
    );
    redis_cli(&server, &["XADD", "orion:alerts", "*", "data", "not json"]);
    let out = run(cmd(&server).args(["tail", "alert", "--count", "10"]), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let records: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["valid"], true);
    assert_eq!(records[1]["valid"], false);
    assert!(
        records[1]["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .any(|v| v["instance_path"] == "/version"),
        "{}",
        records[1]
    );
    assert_eq!(records[2]["valid"], false);
    assert_eq!(records[2]["raw"], "not json");
    // --from and --count.
    let from = records[1]["id"].as_str().expect("id");
    let out = run(
        cmd(&server).args(["tail", "alert", "--from", from, "--count", "1"]),
        "",
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(text(&out.stdout).contains(from));
    assert_eq!(
        redis_cli(&server, &["XINFO", "GROUPS", "orion:alerts"]),
        "",
        "no group created"
    );
}

#[test]
fn tail_follow_shows_new_entries_live_and_stops_when_its_reader_goes() {
    use std::io::BufRead;
    let server = RedisServer::start().expect("redis");
    let mut child = cmd(&server)
        .args(["tail", "alert", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Entries written after tail started, by orion-bus and by another client.
    std::thread::sleep(Duration::from_millis(300));
    let out = run(cmd(&server).args(["publish", "alert"]), &sample("alert", 1));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    redis_cli(
        &server,
        &["XADD", "orion:alerts", "*", "data", "{\"version\": 7}"],
    );
    let mut next = || -> serde_json::Value {
        let line = lines.next().expect("a line").expect("readable");
        serde_json::from_str(&line).expect("json")
    };
    let first = next();
    assert_eq!(first["valid"], true, "{first}");
    assert_eq!(first["id"], text(&out.stdout).trim());
    let second = next();
    assert_eq!(second["valid"], false, "{second}");
    // The reader goes away; the next entry finds the pipe closed, and tail
    // exits cleanly instead of panicking.
    drop(lines);
    redis_cli(&server, &["XADD", "orion:alerts", "*", "data", "{}"]);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn consume_stops_without_acking_when_its_output_is_closed() {
    let server = RedisServer::start().expect("redis");
    let input: String = (0..5).map(|n| sample("alert", n) + "\n").collect();
    let out = run(cmd(&server).args(["publish", "alert"]), &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Three runs whose output is gone from the start.
    for attempt in 1..=3 {
        let mut child = cmd(&server)
            // No --count: only the closed output can end it.
            .args(["consume", "alert", "--group", "g", "--consumer", "c"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn consume");
        drop(child.stdout.take());
        let status = wait_exit(&mut child, Duration::from_secs(20));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("stderr");
        assert_eq!(
            status.code(),
            Some(1),
            "run {attempt}: a failed handler: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing acked, nothing dead-lettered, and only the one entry each run
    // tried to print was ever read: the other four were never delivered.
    let groups = redis_cli(&server, &["XINFO", "GROUPS", "orion:alerts"]);
    let field = |name: &str| -> u64 {
        let lines: Vec<&str> = groups.lines().collect();
        let i = lines.iter().position(|l| *l == name).expect(name);
        lines[i + 1].parse().expect("a number")
    };
    assert_eq!(field("pending"), 1, "{groups}");
    assert_eq!(field("lag"), 4, "{groups}");
    assert_eq!(redis_cli(&server, &["XLEN", "orion:alerts:dlq"]), "0");
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_exposes_health_readiness_and_metrics_and_stops_on_sigterm() {
    let server = RedisServer::start().expect("redis");
    let port = orion_bus_harness::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd(&server)
        .args(["serve", "--http-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let start = Instant::now();
    let mut health = None;
    while start.elapsed() < Duration::from_secs(10) && health.is_none() {
        health = http_get(&addr, "/healthz");
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = health.expect("serve answers /healthz");
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let ready = http_get(&addr, "/readyz").expect("readyz");
    assert!(ready.contains(" 200 "), "{ready}");
    assert!(ready.contains("3 contracts"), "{ready}");
    let metrics = http_get(&addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains("# TYPE orion_bus_published_messages counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("orion_bus_worker_pool_capacity_workers"),
        "{metrics}"
    );

    terminate(child.id());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
}

#[test]
fn consume_with_metrics_serves_its_own_figures() {
    let server = RedisServer::start().expect("redis");
    let input: String = (0..3).map(|n| sample("alert", n) + "\n").collect();
    let out = run(cmd(&server).args(["publish", "alert"]), &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let port = orion_bus_harness::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd(&server)
        .args([
            "consume",
            "alert",
            "--group",
            "g",
            "--consumer",
            "c",
            "--metrics",
            "--http-addr",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consume");
    let acked =
        r#"orion_bus_acked_messages_total{stream="orion:alerts",contract="alert",group="g"} 3"#;
    let start = Instant::now();
    let mut metrics = String::new();
    while start.elapsed() < Duration::from_secs(10) && !metrics.contains(acked) {
        metrics = http_get(&addr, "/metrics").unwrap_or_default();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metrics.contains(acked), "{metrics}");
    terminate(child.id());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
}

#[test]
fn readyz_fails_when_redis_is_down() {
    let mut server = RedisServer::start().expect("redis");
    let port = orion_bus_harness::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd(&server)
        .args(["serve", "--http-addr", &addr, "--command-timeout", "500ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let start = Instant::now();
    while http_get(&addr, "/healthz").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let ready = http_get(&addr, "/readyz").expect("readyz answers");
    assert!(ready.contains(" 503 "), "{ready}");
    let health = http_get(&addr, "/healthz").expect("healthz");
    assert!(
        health.contains(" 200 "),
        "the process is still up: {health}"
    );
    terminate(child.id());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn consume_stops_gracefully_on_sigterm() {
    let server = RedisServer::start().expect("redis");
    let mut child = cmd(&server)
        .args([
            "consume",
            "alert",
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consume");
    // Wait until the group exists, i.e. the consumer is reading.
    let start = Instant::now();
    while !redis_cli(&server, &["XINFO", "GROUPS", "orion:commands"]).contains('g') {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "consumer did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run(
        cmd(&server).args(["publish", "command"]),
        &sample("command", 1),
    );
    assert_eq!(out.status.code(), Some(0));
    let start = Instant::now();
    while redis_cli(&server, &["XPENDING", "orion:commands", "g"])
        .lines()
        .next()
        != Some("0")
        || !redis_cli(&server, &["XINFO", "GROUPS", "orion:commands"]).contains("entries-read\n1")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "message not consumed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(child.id());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn demo_runs_against_its_own_throwaway_server() {
    let out = run(cmd(None).args(["demo", "--messages", "600"]), "");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("started a throwaway redis-server"),
        "{stdout}"
    );
    assert!(
        stdout.contains("OK: every valid message consumed once"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopped the throwaway redis-server"),
        "{stdout}"
    );
}

#[test]
fn dead_letters_can_be_listed_shown_redriven_and_purged() {
    let server = RedisServer::start().expect("redis");
    let bad_json = redis_cli(&server, &["XADD", "orion:commands", "*", "data", "{oops"]);
    let invalid = redis_cli(
        &server,
        &[
            "XADD",
            "orion:commands",
            "*",
            "data",
            "{\"version\": \"9\"}",
        ],
    );
    let input: String = (0..2).map(|n| sample("command", n) + "\n").collect();
    let out = run(cmd(&server).args(["publish", "command"]), &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(
        cmd(&server).args([
            "consume",
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "2",
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A consumer elsewhere dead-lettered a valid message (say its handler
    // failed for good): redriving it must work.
    let valid = sample("command", 7);
    let parked = redis_cli(
        &server,
        &[
            "XADD",
            "orion:commands:dlq",
            "*",
            "stream",
            "orion:commands",
            "id",
            "1-1",
            "reason",
            "handler_error",
            "data",
            &valid,
        ],
    );

    let out = run(cmd(&server).args(["dlq", "list", "command"]), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let letters: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["fields"]["id"], bad_json.as_str());
    assert_eq!(letters[0]["fields"]["reason"], "invalid_json");
    assert_eq!(letters[0]["data"], "{oops");
    assert_eq!(letters[1]["fields"]["id"], invalid.as_str());
    assert_eq!(letters[1]["fields"]["reason"], "contract_violation");
    let dlq_ids: Vec<String> = letters
        .iter()
        .map(|l| l["dlq_id"].as_str().expect("dlq id").to_owned())
        .collect();

    let out = run(
        cmd(&server).args(["dlq", "show", "command", &dlq_ids[1]]),
        "",
    );
    assert!(
        text(&out.stdout).contains("\"version\\\": \\\"9\\\""),
        "{}",
        text(&out.stdout)
    );

    // Redrive all: only the valid one goes back; the others stay, with reasons.
    let out = run(
        cmd(&server).args(["dlq", "redrive", "command", "--all"]),
        "",
    );
    assert_eq!(out.status.code(), Some(1), "some were kept");
    assert!(
        text(&out.stdout).contains(&format!("redriven {}", dlq_ids[2])),
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("kept {}", dlq_ids[0])), "{stderr}");
    assert!(stderr.contains(&format!("kept {}", dlq_ids[1])), "{stderr}");
    assert_eq!(redis_cli(&server, &["XLEN", "orion:commands:dlq"]), "2");
    assert_eq!(
        redis_cli(&server, &["XLEN", "orion:commands"]),
        "5",
        "re-published"
    );
    assert!(!redis_cli(&server, &["XRANGE", "orion:commands:dlq", "-", "+"]).contains(&parked));

    // Purge deletes only what it is told to.
    let out = run(
        cmd(&server).args(["dlq", "purge", "command", &dlq_ids[0]]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(redis_cli(&server, &["XLEN", "orion:commands:dlq"]), "1");
    let out = run(cmd(&server).args(["dlq", "purge", "command", "--all"]), "");
    assert_eq!(out.status.code(), Some(2), "--all needs --yes");
    assert_eq!(redis_cli(&server, &["XLEN", "orion:commands:dlq"]), "1");
    let out = run(
        cmd(&server).args(["dlq", "purge", "command", "--all", "--yes"]),
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(redis_cli(&server, &["XLEN", "orion:commands:dlq"]), "0");
}

#[test]
fn consume_accepts_delivery_flags() {
    let server = RedisServer::start().expect("redis");
    let msg = sample("command", 1);
    let other = sample("command", 2);
    run(
        cmd(&server).args(["publish", "command"]),
        &format!("{msg}\n{msg}\n{other}\n"),
    );
    let out = run(
        cmd(&server).args([
            "consume",
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "2",
            "--on-error",
            "dead-letter",
            "--max-deliveries",
            "3",
            "--claim-idle",
            "5s",
            "--idempotency-key",
            "command_id",
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Three entries, the second a duplicate of the first: two printed.
    let printed: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let command_id =
        |m: &str| serde_json::from_str::<serde_json::Value>(m).expect("json")["command_id"].clone();
    assert_eq!(
        printed
            .iter()
            .map(|p| p["data"]["command_id"].clone())
            .collect::<Vec<_>>(),
        vec![command_id(&msg), command_id(&other)],
        "the duplicate was skipped"
    );
    assert_eq!(
        redis_cli(&server, &["XPENDING", "orion:commands", "g"])
            .lines()
            .next(),
        Some("0")
    );
    let out = run(
        cmd(&server).args([
            "consume",
            "command",
            "--group",
            "g",
            "--consumer",
            "c",
            "--on-error",
            "sometimes",
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(2), "bad policy is a config error");
}

#[test]
fn status_and_replay() {
    let server = RedisServer::start().expect("redis");
    let input: String = (0..4).map(|n| sample("alert", n) + "\n").collect();
    let out = run(cmd(&server).args(["publish", "alert"]), &input);
    let ids: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    run(
        cmd(&server).args([
            "consume",
            "alert",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "4",
        ]),
        "",
    );
    let out = run(cmd(&server).args(["status", "--json"]), "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let alerts = status
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["stream"] == "orion:alerts")
        .expect("alerts");
    assert_eq!(alerts["length"], 4);
    assert_eq!(alerts["groups"][0]["name"], "g");
    assert_eq!(alerts["groups"][0]["lag"], 0);
    assert_eq!(alerts["groups"][0]["consumers"][0]["name"], "c");
    let out = run(cmd(&server).args(["status"]), "");
    assert!(
        text(&out.stdout).contains("group g"),
        "{}",
        text(&out.stdout)
    );

    // Without --yes, a "no" changes nothing.
    let out = run(
        cmd(&server).args(["replay", "alert", "--group", "g", "--from-id", &ids[1]]),
        "n\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let prompt = text(&out.stderr);
    assert!(
        prompt.contains(&format!("to re-read after id {}?", ids[1])),
        "{prompt}"
    );
    assert!(redis_cli(&server, &["XINFO", "GROUPS", "orion:alerts"]).contains(&ids[3]));
    let out = run(
        cmd(&server).args([
            "replay",
            "alert",
            "--group",
            "g",
            "--from-time",
            "2026-11-24T10:00:00Z",
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(1), "no answer is a no");
    let prompt = text(&out.stderr);
    assert!(
        prompt.contains("to re-read from 2026-11-24T10:00:00.000Z?"),
        "{prompt}"
    );
    let out = run(
        cmd(&server).args([
            "replay",
            "alert",
            "--group",
            "g",
            "--from-id",
            &ids[1],
            "--yes",
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(
        cmd(&server).args([
            "consume",
            "alert",
            "--group",
            "g",
            "--consumer",
            "c",
            "--count",
            "2",
        ]),
        "",
    );
    let again: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0]["id"], ids[2].as_str());
    assert_eq!(again[1]["id"], ids[3].as_str());
}

#[test]
fn serve_observe_counts_violations() {
    let server = RedisServer::start().expect("redis");
    let port = orion_bus_harness::free_port().expect("port");
    let addr = format!("127.0.0.1:{port}");
    let mut child = cmd(&server)
        .args(["serve", "--observe", "--http-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let start = Instant::now();
    while http_get(&addr, "/healthz").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    run(cmd(&server).args(["publish", "alert"]), &sample("alert", 1));
    redis_cli(
        &server,
        &[
            "XADD",
            "orion:alerts",
            "*",
            "data",
            "{\"source\": \"orion-old\"}",
        ],
    );
    let series = "orion_bus_observed_violations_total{contract=\"alert\",source=\"orion-old\"} 1";
    let start = Instant::now();
    loop {
        let metrics = http_get(&addr, "/metrics").unwrap_or_default();
        if metrics.contains(series)
            && metrics.contains(
                "orion_bus_observed_messages_total{contract=\"alert\",outcome=\"valid\"} 1",
            )
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        redis_cli(&server, &["XINFO", "GROUPS", "orion:alerts"]),
        "",
        "no group joined"
    );
    terminate(child.id());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

/// Without the `codegen` feature the runtime binary has no code generator,
/// and says how to build one that has.
#[cfg(not(feature = "codegen"))]
#[test]
fn codegen_without_the_feature_says_how_to_get_it() {
    let out = run(cmd(None).arg("codegen"), "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--features codegen"), "{stderr}");
}

#[test]
fn validate_picks_the_version_a_message_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = |v: &str, required: &str| {
        format!(
            r#"{{"type": "object", "additionalProperties": false, "required": ["version"{required}],
                "properties": {{"version": {{"const": "{v}"}}, "host": {{"type": "string"}}}}}}"#
        )
    };
    std::fs::write(dir.path().join("ping.schema.json"), schema("1.0", "")).expect("write");
    std::fs::write(
        dir.path().join("ping@2.0.schema.json"),
        schema("2.0", r#", "host""#),
    )
    .expect("write");
    let validate = |input: &str| {
        run(
            cmd(None)
                .env("ORION_BUS_CONTRACTS_DIR", dir.path())
                .args(["validate", "ping"]),
            input,
        )
    };
    let ok = validate("{\"version\": \"1.0\"}\n{\"version\": \"2.0\", \"host\": \"nas\"}\n");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    let bad = validate("{\"version\": \"2.0\"}\n{\"version\": \"9.0\"}\n");
    assert_eq!(bad.status.code(), Some(1));
    let report = text(&bad.stdout) + &text(&bad.stderr);
    assert!(report.contains("host"), "{report}");
    assert!(report.contains("not a known version of ping"), "{report}");
}

#[test]
fn demo_is_consistent_for_small_runs_and_repeated_runs_on_one_server() {
    let server = RedisServer::start().expect("redis");
    for n in ["1", "5", "5", "250"] {
        let out = run(cmd(&server).args(["demo", "--messages", n]), "");
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{n}: {stdout}\n{}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains("OK: every valid message consumed once"),
            "{n}: {stdout}"
        );
    }
}
