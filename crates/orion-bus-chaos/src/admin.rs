//! The checker's own Redis commands: the nemesis's data faults (each done
//! by a script of [`crate::scripts`] that returns exactly which entries
//! it removed) and the reads the final check needs (pending entries, dead
//! letters, what is left in the stream).

use std::time::Duration;

use orion_bus::RedisSettings;
use orion_bus::wire::{RawEntry, parse_entries};
use redis::aio::ConnectionManager;

use crate::context::{GROUP, message_id};
use crate::error::ChaosError;
use crate::scripts::{DELETE, DESTROY, TRIM, XDEL};

/// One dead letter, as far as the checker cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-lettered entry's id (field `id`).
    pub entry: String,
    /// Field `reason`.
    pub reason: String,
    /// The message's unique id, when the payload was kept.
    pub msg: Option<String>,
}

/// One row of `XPENDING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    /// Entry id.
    pub entry: String,
    /// Consumer holding it.
    pub consumer: String,
    /// Milliseconds since its last delivery.
    pub idle_ms: u64,
    /// Deliveries so far.
    pub deliveries: u64,
}

/// A connection for the checker's commands.
#[derive(Clone)]
pub struct Admin {
    conn: ConnectionManager,
    stream: String,
    dead_letters: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Tries of a command whose connection dropped (the connection manager
/// reconnects after the first failure following a Redis restart).
const TRIES: usize = 20;
/// Wait between those tries.
const RETRY_WAIT: Duration = Duration::from_millis(250);

fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("LOADING")
}

impl Admin {
    /// Connects (the connection reconnects by itself after a restart).
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn connect(url: &str, stream: &str, dead_letters: &str) -> Result<Self, ChaosError> {
        let mut settings = RedisSettings::new(url);
        settings.command_timeout = Duration::from_secs(10);
        Ok(Self {
            conn: settings.connect().await?,
            stream: stream.to_owned(),
            dead_letters: dead_letters.to_owned(),
        })
    }

    /// Runs `cmd`, again while the connection is being re-established.
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, ChaosError> {
        let mut tries = 0;
        loop {
            match cmd.query_async(&mut self.conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if tries + 1 < TRIES && transient(&e) => {
                    tries += 1;
                    tokio::time::sleep(RETRY_WAIT).await;
                }
                Err(source) => return Err(ChaosError::Redis { what, source }),
            }
        }
    }

    /// Runs a script on the stream, as [`Self::query`].
    async fn script<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &redis::Script,
        args: &[String],
    ) -> Result<T, ChaosError> {
        let mut tries = 0;
        loop {
            let mut invocation = script.key(&self.stream);
            for a in args {
                invocation.arg(a);
            }
            match invocation.invoke_async(&mut self.conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if tries + 1 < TRIES && transient(&e) => {
                    tries += 1;
                    tokio::time::sleep(RETRY_WAIT).await;
                }
                Err(source) => return Err(ChaosError::Redis { what, source }),
            }
        }
    }

    /// Deletes those of `ids` that exist; returns them, each with whether
    /// the group had acknowledged it.
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn xdel(&self, ids: &[String]) -> Result<Vec<(String, bool)>, ChaosError> {
        let mut args = vec![GROUP.to_owned()];
        args.extend_from_slice(ids);
        self.removing("XDEL", &XDEL, &args).await
    }

    /// `XTRIM MAXLEN ~ maxlen`; returns the ids removed, as [`Self::xdel`].
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn trim(&self, maxlen: u64) -> Result<Vec<(String, bool)>, ChaosError> {
        self.removing("XTRIM", &TRIM, &[GROUP.to_owned(), maxlen.to_string()])
            .await
    }

    /// `DEL`s the stream; returns the ids it held, as [`Self::xdel`].
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn delete_stream(&self) -> Result<Vec<(String, bool)>, ChaosError> {
        self.removing("DEL", &DELETE, &[GROUP.to_owned()]).await
    }

    async fn removing(
        &self,
        what: &'static str,
        script: &redis::Script,
        args: &[String],
    ) -> Result<Vec<(String, bool)>, ChaosError> {
        let rows: Vec<(String, i64)> = self.script(what, script, args).await?;
        Ok(rows
            .into_iter()
            .map(|(id, acked)| (id, acked == 1))
            .collect())
    }

    /// Destroys the group; returns the ids pending in it, or `None` when
    /// there was no group.
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn destroy_group(&self) -> Result<Option<Vec<String>>, ChaosError> {
        let reply: Vec<redis::Value> = self
            .script("XGROUP DESTROY", &DESTROY, &[GROUP.to_owned()])
            .await?;
        let mut it = reply.into_iter();
        match it.next() {
            Some(redis::Value::Int(1)) => Ok(Some(
                it.filter_map(|v| redis::from_redis_value::<String>(v).ok())
                    .collect(),
            )),
            _ => Ok(None),
        }
    }

    /// `XLEN`.
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn len(&self) -> Result<u64, ChaosError> {
        self.query("XLEN", redis::cmd("XLEN").arg(&self.stream))
            .await
    }

    /// How many entries are pending in the group; `None` when the group
    /// (or the stream) does not exist.
    ///
    /// # Errors
    /// On another Redis error.
    pub async fn pending_count(&self) -> Result<Option<u64>, ChaosError> {
        let reply = self
            .query::<redis::Value>(
                "XPENDING",
                redis::cmd("XPENDING").arg(&self.stream).arg(GROUP),
            )
            .await;
        match reply {
            Ok(redis::Value::Array(items)) => Ok(items
                .into_iter()
                .next()
                .and_then(|v| redis::from_redis_value::<u64>(v).ok())),
            Ok(_) => Ok(None),
            Err(ChaosError::Redis { source, .. }) if source.code() == Some("NOGROUP") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Up to `count` pending rows.
    ///
    /// # Errors
    /// On a Redis error other than a missing group.
    pub async fn pending_rows(&self, count: usize) -> Result<Vec<PendingRow>, ChaosError> {
        let reply = self
            .query::<Vec<(String, String, u64, u64)>>(
                "XPENDING",
                redis::cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(count),
            )
            .await;
        match reply {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(|(entry, consumer, idle_ms, deliveries)| PendingRow {
                    entry,
                    consumer,
                    idle_ms,
                    deliveries,
                })
                .collect()),
            Err(ChaosError::Redis { source, .. }) if source.code() == Some("NOGROUP") => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    async fn range(&self, key: &str) -> Result<Vec<RawEntry>, ChaosError> {
        let value: redis::Value = self
            .query("XRANGE", redis::cmd("XRANGE").arg(key).arg("-").arg("+"))
            .await?;
        parse_entries(value).map_err(|e| ChaosError::Task(format!("XRANGE {key}: {e}")))
    }

    /// Every dead letter of the stream.
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ChaosError> {
        let entries = self.range(&self.dead_letters).await?;
        Ok(entries
            .iter()
            .map(|e| {
                let field = |name: &str| {
                    e.fields.as_ref().and_then(|f| {
                        f.iter()
                            .find(|(k, _)| k.as_slice() == name.as_bytes())
                            .map(|(_, v)| v.as_slice())
                    })
                };
                DeadLetter {
                    entry: text(field("id")),
                    reason: text(field("reason")),
                    msg: field("data").and_then(payload_id),
                }
            })
            .collect())
    }

    /// Every entry left in the stream: its id and message id.
    ///
    /// # Errors
    /// On a Redis error.
    pub async fn stream_entries(&self) -> Result<Vec<(String, Option<String>)>, ChaosError> {
        let entries = self.range(&self.stream).await?;
        Ok(entries
            .iter()
            .map(|e| (e.id.clone(), e.data().ok().and_then(payload_id)))
            .collect())
    }
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn payload_id(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .as_ref()
        .and_then(message_id)
}
