//! Timeouts are what they say, against a real redis-server frozen with
//! SIGSTOP (it accepts TCP connections but answers nothing): a connection
//! attempt (plain or TLS) fails within `connect_timeout`, a command within
//! `command_timeout`, a blocking read within its block plus
//! `command_timeout`; the publish retry budget covers the first connection,
//! both to a closed port and to a frozen server, and a server that comes up
//! within the budget is used. Margins are generous: these check behaviour,
//! not speed.

use std::time::{Duration, Instant};

use orion_bus::{Bus, BusOptions, ConnectError, ContractOptions, Metrics, RedisSettings};
use orion_bus_examples as examples;
use orion_bus_harness::{RedisServer, RedisServerOptions, free_port};

/// Slack for scheduling and process start on a busy two-core machine.
const MARGIN: Duration = Duration::from_secs(1);

fn settings(url: String, connect: Duration, command: Duration) -> RedisSettings {
    let mut s = RedisSettings::new(url);
    s.connect_timeout = connect;
    s.command_timeout = command;
    s
}

async fn connect(settings: RedisSettings, options: BusOptions) -> Result<Bus, ConnectError> {
    Bus::connect(
        settings,
        examples::registry(ContractOptions::default()).expect("examples"),
        options,
        Metrics::new(),
    )
    .await
}

/// Runs `f`, which must end within `limit`; returns its output and how
/// long it took. A hard stop well past the limit keeps a regression from
/// hanging the suite.
async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(limit + Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("still waiting {limit:?} + 30 s later"));
    let elapsed = started.elapsed();
    assert!(elapsed < limit, "took {elapsed:?}, over {limit:?}");
    (out, elapsed)
}

#[tokio::test]
async fn connecting_to_a_frozen_redis_fails_within_the_connect_timeout() {
    let server = RedisServer::start().expect("redis-server");
    server.pause();
    let timeout = Duration::from_secs(2);
    let s = settings(server.url(), timeout, Duration::from_secs(2));

    // Before: the connection manager tried three times, 3 x the timeout.
    let (result, elapsed) = within(timeout + MARGIN, connect(s, BusOptions::default())).await;
    let e = result.expect_err("a frozen Redis does not answer");
    assert!(
        elapsed >= timeout - Duration::from_millis(100),
        "gave up early ({elapsed:?}): {e}"
    );
    assert!(e.is_retryable(), "a timeout may go away: {e}");
    server.resume();
}

#[tokio::test]
async fn a_tls_handshake_with_a_frozen_redis_fails_within_the_connect_timeout() {
    let pki = orion_bus_harness::certs::TestPki::generate("frozen").expect("certificates");
    let server = RedisServer::start_with(RedisServerOptions::default().tls(pki.server_tls(false)))
        .expect("TLS redis-server");
    server.pause();
    let timeout = Duration::from_secs(2);
    let s = settings(server.url(), timeout, Duration::from_secs(2)).tls_ca_file(pki.ca_file());
    let (result, _) = within(timeout + MARGIN, connect(s, BusOptions::default())).await;
    assert!(
        result.is_err(),
        "a frozen Redis does not finish the handshake"
    );
    server.resume();
}

#[tokio::test]
async fn commands_to_a_frozen_redis_fail_within_the_command_timeout() {
    let server = RedisServer::start().expect("redis-server");
    let connect_timeout = Duration::from_secs(2);
    let command_timeout = Duration::from_secs(1);
    let s = settings(server.url(), connect_timeout, command_timeout);
    let bus = connect(s, BusOptions::default()).await.expect("connects");
    server.pause();

    let (result, _) = within(
        command_timeout + MARGIN,
        bus.publish("alert", &examples::alert(1)),
    )
    .await;
    let e = result.expect_err("no reply from a frozen Redis");
    assert!(e.is_retryable(), "{e}");

    // The next command may first wait for one reconnection attempt: still
    // bounded, by connect_timeout + command_timeout.
    for n in 2..4 {
        let (result, _) = within(
            connect_timeout + command_timeout + MARGIN,
            bus.publish("alert", &examples::alert(n)),
        )
        .await;
        assert!(result.is_err());
    }

    server.resume();
    let message = examples::alert(9);
    let ok = eventually_ok(|| bus.publish("alert", &message)).await;
    assert!(ok, "publishing works again once Redis answers");
}

/// Retries `f` for up to 10 s until it succeeds.
async fn eventually_ok<T, E, F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_blocking_read_on_a_frozen_redis_fails_within_its_block_plus_the_command_timeout() {
    let server = RedisServer::start().expect("redis-server");
    let command_timeout = Duration::from_secs(1);
    let block = Duration::from_secs(1);
    let s = settings(server.url(), Duration::from_secs(2), command_timeout);
    let mut conn = s.connect_blocking(block).await.expect("connects");
    server.pause();
    let read = async {
        redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg("orion:alerts")
            .arg("$")
            .query_async::<redis::Value>(&mut conn)
            .await
    };
    let (result, _) = within(block + command_timeout + MARGIN, read).await;
    assert!(result.is_err(), "no reply from a frozen Redis");
    server.resume();
}

#[tokio::test]
async fn the_retry_budget_covers_the_first_connection_to_a_closed_port() {
    let port = free_port().expect("port");
    let budget = Duration::from_secs(3);
    let s = settings(
        format!("redis://127.0.0.1:{port}"),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );

    // Without a budget: one refused attempt, at once.
    let (result, _) = within(MARGIN, connect(s.clone(), BusOptions::default())).await;
    let e = result.expect_err("nothing listens");
    assert!(e.is_retryable(), "{e}");

    // With one: retried until the budget is spent (before: 0.3 s).
    let options = BusOptions::default().retry_budget(Some(budget));
    let (result, elapsed) = within(budget + MARGIN, connect(s, options)).await;
    assert!(result.is_err());
    assert!(
        elapsed >= budget - Duration::from_millis(600),
        "gave up after {elapsed:?}, before the {budget:?} budget"
    );
}

#[tokio::test]
async fn the_retry_budget_bounds_connecting_to_a_frozen_redis() {
    let server = RedisServer::start().expect("redis-server");
    server.pause();
    let budget = Duration::from_millis(3500);
    let s = settings(server.url(), Duration::from_secs(1), Duration::from_secs(1));
    let options = BusOptions::default().retry_budget(Some(budget));
    let (result, elapsed) = within(budget + MARGIN, connect(s, options)).await;
    assert!(result.is_err());
    assert!(elapsed >= Duration::from_secs(2), "retried: {elapsed:?}");
    server.resume();
}

#[tokio::test]
async fn a_redis_that_comes_up_within_the_budget_is_used() {
    let mut server = RedisServer::start().expect("redis-server");
    server.stop();
    let s = settings(server.url(), Duration::from_secs(1), Duration::from_secs(1));
    let options = BusOptions::default().retry_budget(Some(Duration::from_secs(20)));
    let connecting = tokio::spawn(connect(s, options));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!connecting.is_finished(), "still retrying");
    server.restart().expect("restart on the same port");
    let bus = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("connects soon after Redis is up")
        .expect("task")
        .expect("connects within the budget");
    bus.publish("alert", &examples::alert(1))
        .await
        .expect("publish");
}
