//! The binary at the edges of its Redis connection, against real servers:
//! TLS settings from flags, the environment and the config file (right CA,
//! wrong CA, public roots, mutual TLS, verification off), exit codes (0,
//! 1 with a one-line message for a failed connection, 2 for unusable TLS
//! settings, never a panic), and timeouts that hold: `--connect-timeout`
//! against a frozen Redis, `--publish-retry-budget` covering the first
//! connection.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use orion_bus_harness::certs::TestPki;
use orion_bus_harness::{RedisServer, RedisServerOptions, free_port};

fn generate(name: &str) -> TestPki {
    TestPki::generate(name).unwrap_or_else(|e| panic!("cannot generate certificates: {e}"))
}

fn tls_server(pki: &TestPki, auth_clients: bool) -> RedisServer {
    RedisServer::start_with(RedisServerOptions::default().tls(pki.server_tls(auth_clients)))
        .unwrap_or_else(|e| panic!("cannot start a TLS redis-server: {e}"))
}

/// `orion-bus` with a clean environment, the example contracts, warnings
/// only, and `url`.
fn cmd(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orion-bus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ORION_BUS_") {
            c.env_remove(k);
        }
    }
    c.env(
        "ORION_BUS_CONTRACTS_DIR",
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts"),
    )
    .env("ORION_BUS_LOG_LEVEL", "warn")
    .env("ORION_BUS_REDIS_URL", url);
    c
}

/// A file holding one valid `alert`.
fn alert_file(dir: &Path) -> PathBuf {
    let path = dir.join("alert.json");
    std::fs::write(&path, orion_bus_examples::alert(1).to_string()).expect("write");
    path
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn run(mut c: Command) -> Run {
    let started = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run orion-bus");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn publish(url: &str, dir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let mut c = cmd(url);
    c.arg("publish").arg("alert").arg(alert_file(dir));
    for a in args {
        c.arg(a);
    }
    run(c)
}

/// Exit code 1 and exactly one line on stderr, naming the server; no panic.
fn failed_in_one_line(r: &Run, url: &str) -> String {
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {:?}", r.stderr);
    assert!(
        r.stderr
            .starts_with(&format!("orion-bus: cannot connect to Redis at {url}")),
        "{}",
        r.stderr
    );
    r.stderr.clone()
}

#[test]
fn the_ca_file_from_a_flag_the_environment_or_the_config_file_works() {
    let pki = generate("right");
    let server = tls_server(&pki, false);
    let dir = tempfile::tempdir().expect("tmp");
    let url = server.url();

    let r = publish(&url, dir.path(), &[&"--tls-ca-file", &pki.ca_file()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let id = r.stdout.trim().to_owned();
    assert!(id.contains('-'), "an id: {id:?}");

    let mut c = cmd(&url);
    c.env("ORION_BUS_TLS_CA_FILE", pki.ca_file());
    c.arg("publish").arg("alert").arg(alert_file(dir.path()));
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // consume panicked with exit code 101 before.
    let config = dir.path().join("orion-bus.toml");
    std::fs::write(
        &config,
        format!("tls_ca_file = {:?}\n", pki.ca_file().display().to_string()),
    )
    .expect("write config");
    let mut c = cmd(&url);
    c.arg("--config").arg(&config).args([
        "consume",
        "alert",
        "--group",
        "g",
        "--consumer",
        "c",
        "--count",
        "1",
    ]);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains(&id), "{}", r.stdout);
}

#[test]
fn a_wrong_ca_or_the_public_roots_exit_1_with_one_line() {
    let pki = generate("right");
    let other = generate("other");
    let server = tls_server(&pki, false);
    let dir = tempfile::tempdir().expect("tmp");
    let url = server.url();

    let r = publish(&url, dir.path(), &[&"--tls-ca-file", &other.ca_file()]);
    let line = failed_in_one_line(&r, &url);
    assert!(line.contains("certificate"), "{line}");

    // Before: every rediss:// URL panicked here.
    let r = publish(&url, dir.path(), &[]);
    failed_in_one_line(&r, &url);

    let mut c = cmd(&url);
    c.args(["consume", "alert", "--group", "g", "--consumer", "c"]);
    let r = run(c);
    failed_in_one_line(&r, &url);
}

#[test]
fn mutual_tls_with_and_without_the_client_certificate() {
    let pki = generate("right");
    let server = tls_server(&pki, true);
    let dir = tempfile::tempdir().expect("tmp");
    let url = server.url();

    let r = publish(
        &url,
        dir.path(),
        &[
            &"--tls-ca-file",
            &pki.ca_file(),
            &"--tls-cert-file",
            &pki.client_cert_file(),
            &"--tls-key-file",
            &pki.client_key_file(),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    let r = publish(&url, dir.path(), &[&"--tls-ca-file", &pki.ca_file()]);
    let line = failed_in_one_line(&r, &url);
    assert!(line.contains("client certificate"), "{line}");
}

#[test]
fn tls_insecure_connects_and_warns() {
    let pki = generate("right");
    let server = tls_server(&pki, false);
    let dir = tempfile::tempdir().expect("tmp");
    let r = publish(&server.url(), dir.path(), &[&"--tls-insecure"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("WARN"), "{}", r.stderr);
    assert!(r.stderr.contains("verification is off"), "{}", r.stderr);
}

#[test]
fn unusable_tls_settings_exit_2_before_connecting() {
    let pki = generate("right");
    let server = tls_server(&pki, false);
    let dir = tempfile::tempdir().expect("tmp");
    let url = server.url();
    let missing = dir.path().join("missing.pem");
    let plain_url = format!("redis://127.0.0.1:{}", server.port());

    for (url, args, needle) in [
        (
            &url,
            vec![&"--tls-ca-file" as &dyn AsRef<std::ffi::OsStr>, &missing],
            "missing.pem",
        ),
        (
            &url,
            vec![&"--tls-ca-file", &pki.client_key_file()],
            "no PEM certificate",
        ),
        (
            &url,
            vec![&"--tls-cert-file", &pki.client_cert_file()],
            "needs tls_key_file",
        ),
        (&plain_url, vec![&"--tls-insecure"], "rediss://"),
    ] {
        let r = publish(url, dir.path(), &args);
        assert_eq!(r.code, Some(2), "{needle}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn a_plain_url_to_the_tls_port_and_a_tls_url_to_a_plain_port_exit_1_within_the_connect_timeout() {
    let pki = generate("right");
    let tls = tls_server(&pki, false);
    let plain = RedisServer::start().expect("plain redis-server");
    let dir = tempfile::tempdir().expect("tmp");
    let limit = Duration::from_secs(3); // --connect-timeout 2s plus a margin

    let url = format!("redis://127.0.0.1:{}", tls.port());
    let r = publish(&url, dir.path(), &[&"--connect-timeout", &"2s"]);
    failed_in_one_line(&r, &url);
    assert!(r.elapsed < limit, "{:?}", r.elapsed);

    let url = format!("rediss://127.0.0.1:{}", plain.port());
    let r = publish(
        &url,
        dir.path(),
        &[
            &"--connect-timeout",
            &"2s",
            &"--tls-ca-file",
            &pki.ca_file(),
        ],
    );
    failed_in_one_line(&r, &url);
    assert!(r.elapsed < limit, "{:?}", r.elapsed);
}

#[test]
fn connect_timeout_holds_against_a_frozen_redis() {
    let server = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tmp");
    server.pause();
    // Before: 6.3 s for 2 s (15.3 s for 5 s), three attempts in a row.
    let r = publish(&server.url(), dir.path(), &[&"--connect-timeout", &"2s"]);
    server.resume();
    failed_in_one_line(&r, &server.url());
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
}

#[test]
fn the_publish_retry_budget_covers_the_first_connection() {
    let port = free_port().expect("port");
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tmp");
    // Before: "Connection refused" after 0.3 s whatever the budget.
    let r = publish(&url, dir.path(), &[&"--publish-retry-budget", &"3s"]);
    failed_in_one_line(&r, &url);
    assert!(
        r.elapsed >= Duration::from_millis(2400) && r.elapsed < Duration::from_secs(4),
        "{:?}",
        r.elapsed
    );
}
