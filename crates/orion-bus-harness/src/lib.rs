//! Throwaway `redis-server` processes for tests, the demo and benchmarks.
//!
//! Owns: finding the `redis-server` binary, picking a free loopback port,
//! starting the server in a private temp dir, waiting until it answers
//! `PING`, and killing it on [`Drop`]. Fault tests use [`RedisServer::kill`],
//! [`RedisServer::stop`], [`RedisServer::restart`] and
//! [`RedisServer::crash_restart`], which keep the same port and data dir so
//! that an AOF-enabled server comes back with its data, and
//! [`RedisServer::pid`] for signalling the process directly.
//!
//! A server can also listen for TLS only ([`RedisServerOptions::tls`]:
//! `--tls-port P --port 0` with the given certificate, key and CA); the
//! `certs` feature adds `certs::TestPki`, which generates the CA and the
//! server and client certificates for it.
//!
//! Nothing here ever talks to a shared Redis: every server is private to
//! the process that started it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "certs")]
pub mod certs;

/// Environment variable that overrides the `redis-server` binary to run.
pub const REDIS_SERVER_ENV: &str = "ORION_BUS_REDIS_SERVER";

/// How long a server gets to answer `PING` after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors from starting or controlling a throwaway server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The binary could not be found or spawned.
    #[error(
        "cannot run {binary}: {source}. Install it with `apt-get install -y redis-server` \
         (or run scripts/install-deps.sh), or set {REDIS_SERVER_ENV} to its path"
    )]
    Spawn {
        /// The binary that was tried.
        binary: String,
        /// Why spawning failed.
        source: std::io::Error,
    },
    /// The server started but never answered `PING`.
    #[error("redis-server on port {port} was not ready after {waited:?}; its log:\n{log}")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The server's log file, for diagnosis.
        log: String,
    },
    /// Local I/O failed (temp dir, free port).
    #[error("harness I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Test certificates could not be generated.
    #[cfg(feature = "certs")]
    #[error("cannot generate test certificates: {0}")]
    Certs(#[from] rcgen::Error),
}

/// Options for a throwaway server.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RedisServerOptions {
    /// Turn on AOF persistence (`appendfsync everysec`, as ORION runs it),
    /// so that [`RedisServer::restart`] keeps the data.
    pub appendonly: bool,
    /// Extra `--flag value` arguments passed to redis-server verbatim.
    pub extra_args: Vec<String>,
    /// Listen for TLS only, with these files (`None`: plain TCP only).
    pub tls: Option<ServerTls>,
}

/// The TLS side of a throwaway server: `redis-server --port 0 --tls-port P
/// --tls-cert-file .. --tls-key-file .. --tls-ca-cert-file ..
/// --tls-auth-clients yes|no`. All files are PEM.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerTls {
    /// The server's certificate (its names must cover `127.0.0.1`).
    pub cert_file: PathBuf,
    /// The server certificate's private key.
    pub key_file: PathBuf,
    /// The CA that client certificates must chain to.
    pub ca_cert_file: PathBuf,
    /// Require a client certificate (mutual TLS): `--tls-auth-clients yes`.
    pub auth_clients: bool,
}

impl ServerTls {
    /// TLS with the given server certificate, key and client CA; client
    /// certificates not required.
    #[must_use]
    pub fn new(
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
        ca_cert_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_cert_file: ca_cert_file.into(),
            auth_clients: false,
        }
    }

    /// Requires (or not) a client certificate signed by the CA.
    #[must_use]
    pub fn auth_clients(mut self, on: bool) -> Self {
        self.auth_clients = on;
        self
    }
}

impl RedisServerOptions {
    /// Turns AOF persistence on or off.
    #[must_use]
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// Adds raw arguments for redis-server.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Listens for TLS only, on the server's port (see [`ServerTls`]).
    #[must_use]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A private redis-server on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: RedisServerOptions,
}

/// The `redis-server` binary to run: `$ORION_BUS_REDIS_SERVER` or the one on `PATH`.
#[must_use]
pub fn redis_server_binary() -> String {
    std::env::var(REDIS_SERVER_ENV).unwrap_or_else(|_| "redis-server".to_owned())
}

/// Returns true when a `redis-server` binary can be spawned.
#[must_use]
pub fn redis_server_available() -> bool {
    Command::new(redis_server_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// Starts a server with default options (no persistence).
    ///
    /// # Errors
    /// See [`HarnessError`].
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(RedisServerOptions::default())
    }

    /// Starts a server with the given options. Retries with a new port if
    /// another process grabbed the free port first.
    ///
    /// # Errors
    /// See [`HarnessError`].
    pub fn start_with(options: RedisServerOptions) -> Result<Self, HarnessError> {
        let mut dir = tempfile::Builder::new()
            .prefix("orion-bus-redis-")
            .tempdir()?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = Self {
                child: None,
                port,
                dir,
                options: options.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e @ HarnessError::Spawn { .. }) => return Err(e),
                Err(e) => {
                    server.kill();
                    last_err = Some(e);
                    dir = std::mem::replace(
                        &mut server.dir,
                        tempfile::Builder::new()
                            .prefix("orion-bus-redis-")
                            .tempdir()?,
                    );
                }
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Io(std::io::Error::other("no port"))))
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let binary = redis_server_binary();
        let mut cmd = Command::new(&binary);
        match &self.options.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some(tls) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert_file)
                .arg("--tls-key-file")
                .arg(&tls.key_file)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca_cert_file)
                .args([
                    "--tls-auth-clients",
                    if tls.auth_clients { "yes" } else { "no" },
                ]),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args([
                "--appendonly",
                if self.options.appendonly { "yes" } else { "no" },
            ])
            .args(["--appendfsync", "everysec"])
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A restarted server appends to its log: readiness is read past here.
        let log_seen = self.log().len();
        let child = cmd
            .spawn()
            .map_err(|source| HarnessError::Spawn { binary, source })?;
        self.child = Some(child);
        self.wait_ready(log_seen)
    }

    fn wait_ready(&mut self, log_seen: usize) -> Result<(), HarnessError> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_status)) = child.try_wait()
            {
                break; // exited early (port taken, bad option): report the log.
            }
            if self.answers(log_seen) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(HarnessError::NotReady {
            port: self.port,
            waited: start.elapsed(),
            log: self.log(),
        })
    }

    /// The port the server listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of this server: `redis://127.0.0.1:P`, or `rediss://` when
    /// it listens for TLS.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// True when the server listens for TLS only.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.options.tls.is_some()
    }

    /// Ready: a plain server answers `PING`; a TLS one (which the harness
    /// cannot speak to) has logged that it accepts connections and takes
    /// TCP connections on its port.
    fn answers(&self, log_seen: usize) -> bool {
        if self.is_tls() {
            self.log()
                .get(log_seen..)
                .is_some_and(|new| new.contains("Ready to accept connections"))
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        } else {
            ping(self.port)
        }
    }

    /// The server's private data dir.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far (empty if unreadable).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server process's id, while it runs (also while paused).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs and answers `PING` (a TLS server:
    /// accepts TCP connections).
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.child.is_some()
            && if self.is_tls() {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                ping(self.port)
            }
    }

    /// SIGKILLs the server, as a crash would. Data not yet fsynced is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is
    /// answered, as with a hung or overloaded Redis.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`Self::pause`]d server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(which)
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Stops the server cleanly with `SHUTDOWN` (a TLS server: SIGTERM,
    /// which shuts down the same way; AOF is flushed), falling back to a
    /// kill.
    pub fn stop(&mut self) {
        if self.is_tls() {
            self.signal("-TERM");
        }
        if let Some(mut child) = self.child.take() {
            if !self.is_tls() {
                let _ = send_command(self.port, "SHUTDOWN\r\n");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data dir (after
    /// [`Self::kill`] or [`Self::stop`]).
    ///
    /// # Errors
    /// See [`HarnessError`].
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.spawn_and_wait()
    }

    /// A crash and a restart: SIGKILLs the server (after letting a paused
    /// one go on, so that it dies at once), then starts it again on the
    /// same port and data dir. With AOF, what Redis had written to the file
    /// comes back; a process kill (unlike a host crash) loses nothing that
    /// was acknowledged, since Redis writes the AOF before replying.
    ///
    /// # Errors
    /// See [`HarnessError`].
    pub fn crash_restart(&mut self) -> Result<(), HarnessError> {
        self.resume();
        self.kill();
        self.spawn_and_wait()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Asks the OS for a free loopback port.
///
/// # Errors
/// When no socket can be bound.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn send_command(port: u16, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(command.as_bytes())?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn ping(port: u16) -> bool {
    send_command(port, "PING\r\n").is_ok_and(|r| r.starts_with("+PONG"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_dies_on_drop() {
        let server = RedisServer::start().expect("redis-server starts");
        let port = server.port();
        assert!(server.is_up());
        drop(server);
        assert!(!ping(port), "server must be gone after drop");
    }

    #[cfg(feature = "certs")]
    #[test]
    fn a_tls_server_listens_for_tls_only_restarts_and_dies_on_drop() {
        let pki = certs::TestPki::generate("harness").expect("certificates");
        let mut server =
            RedisServer::start_with(RedisServerOptions::default().tls(pki.server_tls(true)))
                .expect("TLS redis-server");
        let port = server.port();
        assert!(server.url().starts_with("rediss://127.0.0.1:"));
        assert!(server.is_up());
        assert!(!ping(port), "plain RESP is not spoken on the TLS port");
        let before = server.pid();
        server.restart().expect("restart");
        assert_ne!(before, server.pid());
        assert!(server.is_up());
        drop(server);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "gone after drop"
        );
    }

    #[test]
    fn restart_keeps_aof_data() {
        let mut server =
            RedisServer::start_with(RedisServerOptions::default().appendonly(true)).expect("start");
        let reply = send_command(server.port(), "SET k v\r\n").expect("set");
        assert!(reply.starts_with("+OK"), "{reply}");
        server.restart().expect("restart");
        let reply = send_command(server.port(), "GET k\r\n").expect("get");
        assert!(
            reply.contains("\r\nv\r\n"),
            "value survives restart: {reply:?}"
        );
    }

    #[test]
    fn crash_restart_kills_and_comes_back_with_aof_data() {
        let mut server =
            RedisServer::start_with(RedisServerOptions::default().appendonly(true)).expect("start");
        let reply = send_command(server.port(), "SET k v\r\n").expect("set");
        assert!(reply.starts_with("+OK"), "{reply}");
        let before = server.pid().expect("running");
        server.pause();
        server.crash_restart().expect("crash restart");
        let after = server.pid().expect("running again");
        assert_ne!(before, after, "a new process");
        let reply = send_command(server.port(), "GET k\r\n").expect("get");
        assert!(
            reply.contains("\r\nv\r\n"),
            "an acknowledged write survives a SIGKILL: {reply:?}"
        );
    }
}
