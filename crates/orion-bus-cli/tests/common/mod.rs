//! Helpers shared by the CLI's integration tests: the `orion-bus` binary
//! with a clean environment, running it with input, `redis-cli` against a
//! throwaway server, and sample messages of the example contracts.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use orion_bus_harness::RedisServer;

/// The repository's example contracts.
pub fn contracts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts")
}

/// The binary with a clean environment (no `ORION_BUS_*` from outside),
/// the example contracts, warnings-only logs, and `server`'s URL if given.
pub fn cmd<'a>(server: impl Into<Option<&'a RedisServer>>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orion-bus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ORION_BUS_") {
            c.env_remove(k);
        }
    }
    c.env("ORION_BUS_CONTRACTS_DIR", contracts_dir())
        .env("ORION_BUS_LOG_LEVEL", "warn");
    if let Some(s) = server.into() {
        c.env("ORION_BUS_REDIS_URL", s.url());
    }
    c
}

/// Runs `c` with `stdin` as its input; returns what it printed.
pub fn run(c: &mut Command, stdin: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orion-bus");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Bytes as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `redis-cli -p PORT args...`, its output trimmed.
pub fn redis_cli(server: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(server.port().to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    text(&out.stdout).trim().to_owned()
}

/// Sample message `n` of an example contract, as JSON text.
pub fn sample(contract: &str, n: u64) -> String {
    orion_bus_examples::sample(contract, n)
        .expect("example contract")
        .to_string()
}

/// `GET path` over HTTP/1.0 from `addr`; `None` while nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// `used_memory` from `INFO memory`, in bytes.
pub fn used_memory(server: &RedisServer) -> u64 {
    redis_cli(server, &["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// `maxmemory` at `headroom` bytes above what `server` uses now, with
/// `noeviction`: writes beyond that are refused with `OOM`.
pub fn limit_memory(server: &RedisServer, headroom: u64) {
    let used = used_memory(server);
    redis_cli(server, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_cli(
        server,
        &["CONFIG", "SET", "maxmemory", &(used + headroom).to_string()],
    );
}
