//! A CLI consumer instance: an `orion-bus consume` process of the group,
//! whose NDJSON lines on stdout (`{"contract","stream","id","data"}`) count
//! as handled. Its stderr goes to a log file in the run directory. Crashing
//! it is a SIGKILL; stopping it is a SIGTERM with a deadline.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::task::AbortOnDropHandle;

use crate::context::{CONTRACT, GROUP, ID_FIELD, Run, message_id, timings};
use crate::error::ChaosError;
use crate::history::Event;
use crate::ledger::Handling;

/// How long a stopped process gets before it is killed: its grace period
/// (2 s) and then some, for a Redis that just came back.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// One running `orion-bus consume`.
#[derive(Debug)]
pub struct CliInstance {
    child: Child,
    reader: Option<AbortOnDropHandle<()>>,
    exited: Option<String>,
}

/// The command line of a CLI consumer named `name`.
fn command(run: &Run, binary: &std::path::Path, name: &str) -> Command {
    let mut cmd = Command::new(binary);
    for (k, _) in std::env::vars() {
        if k.starts_with("ORION_BUS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ORION_BUS_LOG_LEVEL", "info")
        .env("NO_COLOR", "1")
        .arg("consume")
        .arg(CONTRACT)
        .args(["--group", GROUP, "--consumer", name])
        .arg("--redis-url")
        .arg(&run.url)
        .arg("--contracts-dir")
        .arg(&run.options.contracts_dir)
        .arg("--claim-idle")
        .arg(ms(timings::CLAIM_IDLE))
        .arg("--retry-backoff")
        .arg(ms(timings::RETRY_BACKOFF))
        .arg("--retry-backoff-max")
        .arg(ms(timings::RETRY_BACKOFF_MAX))
        .arg("--block")
        .arg(ms(timings::BLOCK))
        .arg("--shutdown-grace")
        .arg(ms(timings::SHUTDOWN_GRACE))
        .arg("--max-deliveries")
        .arg(timings::MAX_DELIVERIES.to_string())
        // A restart under the same name waits out the dead one's lease.
        .arg("--wait-for-name=true")
        .arg("--housekeeping-interval")
        .arg(ms(run.options.housekeeping_interval))
        .arg("--stale-consumer-after")
        .arg(ms(run.options.stale_consumer_after));
    if run.options.idempotency {
        cmd.args(["--idempotency-key", ID_FIELD]);
    }
    cmd
}

/// A duration as the CLI reads it.
fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl CliInstance {
    /// Starts instance `id` under consumer name `name`.
    ///
    /// # Errors
    /// When the process cannot be spawned.
    pub fn spawn(run: &Arc<Run>, id: Arc<str>, name: &str) -> Result<Self, ChaosError> {
        let binary = run
            .options
            .cli_binary
            .clone()
            .ok_or_else(|| ChaosError::Task("no CLI binary configured".to_owned()))?;
        let log_path = run.dir.join(format!("cli-{name}.log"));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        std::io::Write::write_all(
            &mut log,
            format!(
                "==== {id} started at {:.3}s\n",
                run.history.now().as_secs_f64()
            )
            .as_bytes(),
        )?;
        let mut child = command(run, &binary, name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ChaosError::Task("consume has no stdout pipe".to_owned()))?;
        let reader = tokio::spawn(read_lines(run.clone(), id, stdout));
        Ok(Self {
            child,
            reader: Some(AbortOnDropHandle::new(reader)),
            exited: None,
        })
    }

    /// Waits until it exits by itself; says how.
    pub async fn exited(&mut self) -> String {
        if self.exited.is_some() {
            return std::future::pending().await;
        }
        let how = match self.child.wait().await {
            Ok(status) => format!("exited with {status}"),
            Err(e) => format!("wait failed: {e}"),
        };
        self.finish_reading().await;
        self.exited = Some(how.clone());
        how
    }

    /// Reads what it printed before it went away.
    async fn finish_reading(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }

    /// A crash: SIGKILL.
    pub async fn crash(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.finish_reading().await;
    }

    /// A graceful stop: SIGTERM, then SIGKILL after [`STOP_LIMIT`].
    pub async fn stop(mut self) -> String {
        if let Some(how) = self.exited.take() {
            return how;
        }
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let how = match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(Ok(status)) => format!("stopped: {status}"),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                format!("did not stop within {STOP_LIMIT:?} of SIGTERM; killed")
            }
        };
        self.finish_reading().await;
        how
    }
}

async fn read_lines(run: Arc<Run>, id: Arc<str>, stdout: tokio::process::ChildStdout) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let at = run.history.now();
        let parsed: Option<(String, String)> = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| {
                let entry = v.get("id")?.as_str()?.to_owned();
                Some((message_id(v.get("data")?)?, entry))
            });
        match parsed {
            Some((msg, entry)) => run.ledger.handled(Handling {
                msg,
                entry,
                instance: id.clone(),
                at,
            }),
            None => run.history.record(Event::Note(format!(
                "{id} printed an unexpected line: {line}"
            ))),
        }
    }
}
