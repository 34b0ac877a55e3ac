//! Shared helpers for the integration tests: a throwaway redis-server, a
//! bus on it, raw Redis access for asserting what is on the wire, and the
//! location of ORION's real contracts, waiting on pending entries, and one
//! way to start and stop a consumer.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use orion_bus::{
    Bus, BusOptions, CancellationToken, ConsumeError, Consumer, ConsumerReport, ContractOptions,
    ContractRegistry, Handler, Metrics, RedisSettings,
};
use orion_bus_harness::RedisServer;
use redis::aio::ConnectionManager;

/// Starts a private redis-server (panics with its log if it cannot).
pub fn server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

/// A bus on `server` with the example contracts and default options.
pub async fn bus(server: &RedisServer) -> Bus {
    bus_with(server, BusOptions::default()).await
}

/// A bus on `server` with the example contracts and the given options.
pub async fn bus_with(server: &RedisServer, options: BusOptions) -> Bus {
    let registry = orion_bus_examples::registry(ContractOptions::default()).expect("examples");
    Bus::connect(
        RedisSettings::new(server.url()),
        registry,
        options,
        Metrics::new(),
    )
    .await
    .expect("connect")
}

/// A bus on `server` with the given registry.
pub async fn bus_for(server: &RedisServer, registry: ContractRegistry) -> Bus {
    Bus::connect(
        RedisSettings::new(server.url()),
        registry,
        BusOptions::default(),
        Metrics::new(),
    )
    .await
    .expect("connect")
}

/// A raw connection for assertions and for writing garbage.
pub async fn raw(server: &RedisServer) -> ConnectionManager {
    redis::Client::open(server.url())
        .expect("client")
        .get_connection_manager()
        .await
        .expect("raw connection")
}

/// Ids of the entries pending in `group` on `stream`, in order.
pub async fn pending_ids(conn: &mut ConnectionManager, stream: &str, group: &str) -> Vec<String> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(10_000)
        .query_async(conn)
        .await
        .expect("XPENDING");
    rows.into_iter().map(|r| r.0).collect()
}

/// Every entry of a stream as (id, field/value pairs), raw bytes.
pub async fn entries(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)> {
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    orion_bus::wire::parse_entries(raw)
        .expect("entries")
        .into_iter()
        .map(|e| (e.id, e.fields.unwrap_or_default()))
        .collect()
}

/// Length of a stream (0 if missing).
pub async fn xlen(conn: &mut ConnectionManager, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .expect("XLEN")
}

/// ORION's real contracts (`../shared/orion-contracts` beside the repo, or
/// `$ORION_CONTRACTS_DIR`), or `None` with a message saying the tests using
/// them are skipped.
pub fn orion_contracts_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ORION_CONTRACTS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/orion-contracts"),
        PathBuf::from,
    );
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: ORION contracts not found at {} (set ORION_CONTRACTS_DIR); tests that need them did nothing",
            dir.display()
        );
        None
    }
}

/// True once nothing is pending in `group` on `stream`, false if that
/// does not happen within `timeout`.
pub async fn all_acked_within(
    raw: &ConnectionManager,
    stream: &str,
    group: &str,
    timeout: Duration,
) -> bool {
    eventually(timeout, || {
        let mut raw = raw.clone();
        async move { pending_ids(&mut raw, stream, group).await.is_empty() }
    })
    .await
}

/// Waits (up to 5 s) until exactly `n` entries are pending in `group` on
/// `stream`; panics with what is pending if that does not happen.
pub async fn wait_until_pending(conn: &ConnectionManager, stream: &str, group: &str, n: usize) {
    let reached = eventually(Duration::from_secs(5), || {
        let mut conn = conn.clone();
        async move { pending_ids(&mut conn, stream, group).await.len() == n }
    })
    .await;
    if !reached {
        let mut conn = conn.clone();
        let now = pending_ids(&mut conn, stream, group).await;
        panic!(
            "{group} on {stream}: {n} pending expected, {} are: {now:?}",
            now.len()
        );
    }
}

/// A consumer running on its own task: the one way the tests start one.
pub struct Running {
    /// Cancelled by [`Running::stop`]; a handler may watch it.
    pub shutdown: CancellationToken,
    /// The consumer's task.
    pub task: tokio::task::JoinHandle<Result<ConsumerReport, ConsumeError>>,
}

impl Running {
    /// Runs `consumer` with `handler` until stopped.
    pub fn spawn<H: Handler>(consumer: Consumer, handler: H) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer.run(handler, shutdown.clone()));
        Self { shutdown, task }
    }

    /// Cancels it and waits for its drain.
    pub async fn stop(self) -> ConsumerReport {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("run")
    }

    /// Drops it without a drain, as a crash would.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `XLEN` over a short-lived blocking connection, for polling closures.
pub fn xlen_blocking(server: &RedisServer, stream: &str) -> u64 {
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client.get_connection().expect("connection");
    redis::cmd("XLEN")
        .arg(stream)
        .query(&mut conn)
        .expect("XLEN")
}

/// A Python interpreter with redis-py: `$ORION_BUS_PYTHON`, or a virtualenv
/// made once under `target/pyenv` (`python3 -m venv` + `pip install redis`).
/// Panics with a clear message when python3 is missing: run
/// `scripts/install-deps.sh`.
pub fn python_with_redis() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("ORION_BUS_PYTHON") {
                return PathBuf::from(p);
            }
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
            let venv = target.join("pyenv");
            let python = venv.join("bin/python");
            let works = |p: &std::path::Path| {
                std::process::Command::new(p)
                    .args(["-c", "import redis"])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if works(&python) {
                return python;
            }
            // Build in a private dir, then rename: parallel test binaries
            // may race here, and a rename is atomic.
            std::fs::create_dir_all(&target).expect("target dir");
            let tmp = tempfile::Builder::new()
                .prefix("pyenv-")
                .tempdir_in(&target)
                .expect("temp venv dir");
            let status = std::process::Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(tmp.path())
                .status()
                .unwrap_or_else(|e| {
                    panic!(
                        "python3 is needed for the interop tests ({e}); run scripts/install-deps.sh"
                    )
                });
            assert!(
                status.success(),
                "python3 -m venv failed; run scripts/install-deps.sh"
            );
            let status = std::process::Command::new(tmp.path().join("bin/pip"))
                .args(["install", "--quiet", "redis>=5,<7"])
                .status()
                .expect("pip");
            assert!(status.success(), "pip install redis failed");
            let tmp = tmp.keep();
            if std::fs::rename(&tmp, &venv).is_err() {
                // Another process won the race; use its venv.
                let _ = std::fs::remove_dir_all(&tmp);
            }
            assert!(works(&python), "no usable redis-py in {}", venv.display());
            python
        })
        .clone()
}

/// Runs `common/python_bus.py` (the Python bus's way of using redis-py)
/// with `args`, feeding `stdin`; panics with its stderr if it fails.
pub fn python_bus(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/python_bus.py");
    let mut child = std::process::Command::new(python_with_redis())
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "python_bus.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}
