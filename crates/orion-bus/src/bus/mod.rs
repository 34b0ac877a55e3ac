//! The [`Bus`] handle and contract-validated publishing.
//!
//! Owns [`BusOptions`] (prefix, stream cap, encoding, size limit), the
//! shared publishing connection, and [`PublishError`], the publishing error
//! boundary. A publish validates first and writes
//! `XADD {prefix}:{contract}s MAXLEN ~ {max_len} * data <json>`, exactly as
//! the Python bus does; an invalid message writes nothing.
//!
//! A [`Bus`] is cheap to clone; clones share the connection, contracts and
//! metrics. Concurrent publishes on one bus are pipelined on the wire by
//! `redis-rs`'s multiplexed connection.
//!
//! `options.rs` holds [`BusOptions`], `error.rs` [`PublishError`].

use crate::connection::{ConnectError, RedisSettings};
use crate::contracts::{Contract, ContractError, ContractRegistry};
use crate::metrics::Metrics;
use crate::retention::{self, Retention, TRIM_INTERVAL};
use crate::telemetry::{InternalEvent, MessageRejected, RedisCommandFailed};
use crate::wire;
use redis::aio::ConnectionManager;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

mod error;
mod options;

pub use error::PublishError;
pub use options::BusOptions;

/// A message that passed validation and is encoded, ready to write.
#[derive(Debug, Clone)]
pub struct Prepared {
    contract: Arc<Contract>,
    route: Route,
    payload: Vec<u8>,
}

/// Where a contract's messages go, and the counter they bump.
#[derive(Debug, Clone)]
struct Route {
    stream: Arc<str>,
    published: prometheus_client::metrics::counter::Counter,
    /// When this stream was last trimmed/checked, in ms since the bus started.
    last_trim: Arc<AtomicU64>,
}

impl Prepared {
    /// The contract name.
    #[must_use]
    pub fn contract(&self) -> &str {
        self.contract.name()
    }

    /// The target stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.route.stream
    }

    /// The encoded JSON that will be the `data` field.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// A connected, contract-aware bus. Clone it freely.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<BusInner>,
}

#[derive(Debug)]
struct BusInner {
    registry: Arc<ContractRegistry>,
    settings: RedisSettings,
    options: BusOptions,
    conn: ConnectionManager,
    metrics: Metrics,
    /// Stream key and counters per contract, computed once.
    routes: std::collections::HashMap<String, Route>,
    /// Reference point for `Route::last_trim`.
    started: Instant,
}

impl Bus {
    /// Connects to Redis and returns a bus for the given contracts. With a
    /// [`BusOptions::retry_budget`], failures that may go away (refused,
    /// timed out) are retried within it ([`RedisSettings::connect_within`]).
    ///
    /// # Errors
    /// When Redis cannot be reached or the settings are invalid.
    pub async fn connect(
        settings: RedisSettings,
        registry: ContractRegistry,
        options: BusOptions,
        metrics: Metrics,
    ) -> Result<Self, ConnectError> {
        // The retry budget covers the first connection too.
        let conn = settings.connect_within(options.retry_budget).await?;
        let routes = registry
            .names()
            .map(|n| {
                let route = Route {
                    stream: Arc::from(wire::stream_name(&options.prefix, n)),
                    published: metrics.publisher(n).published,
                    last_trim: Arc::default(),
                };
                (n.to_owned(), route)
            })
            .collect();
        Ok(Self {
            inner: Arc::new(BusInner {
                registry: Arc::new(registry),
                settings,
                options,
                conn,
                metrics,
                routes,
                started: Instant::now(),
            }),
        })
    }

    /// The loaded contracts.
    #[must_use]
    pub fn registry(&self) -> &Arc<ContractRegistry> {
        &self.inner.registry
    }

    /// The bus options.
    #[must_use]
    pub fn options(&self) -> &BusOptions {
        &self.inner.options
    }

    /// The Redis settings (used to open dedicated reader connections).
    #[must_use]
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// The metrics registry this bus reports to.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A clone of the shared non-blocking connection.
    #[must_use]
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// The stream key of a contract.
    ///
    /// # Errors
    /// [`ContractError::Unknown`].
    pub fn stream_for(&self, contract: &str) -> Result<Arc<str>, ContractError> {
        self.route(contract).map(|r| r.stream.clone())
    }

    fn route(&self, contract: &str) -> Result<&Route, ContractError> {
        self.inner
            .routes
            .get(contract)
            .ok_or_else(|| self.inner.registry.unknown(contract))
    }

    /// Validates and encodes a message without writing it.
    ///
    /// # Errors
    /// Unknown contract, contract violation or size limit.
    pub fn prepare(&self, contract: &str, message: &Value) -> Result<Prepared, PublishError> {
        self.prepare_at(contract, message, None)
    }

    fn prepare_at(
        &self,
        contract_name: &str,
        message: &Value,
        index: Option<usize>,
    ) -> Result<Prepared, PublishError> {
        self.prepare_with(contract_name, message, index, true)
    }

    /// [`Self::prepare`], with validation optional for typed messages.
    pub(crate) fn prepare_with(
        &self,
        contract_name: &str,
        message: &Value,
        index: Option<usize>,
        validate: bool,
    ) -> Result<Prepared, PublishError> {
        self.prepare_text(contract_name, message, None, index, validate)
    }

    /// [`Self::prepare_with`]; with `original`, the JSON text `message` was
    /// parsed from, its numbers are written as they were
    /// ([`wire::encode_exact`]: integers beyond 64 bits stay exact).
    fn prepare_text(
        &self,
        contract_name: &str,
        message: &Value,
        original: Option<&[u8]>,
        index: Option<usize>,
        validate: bool,
    ) -> Result<Prepared, PublishError> {
        let result = (|| {
            let contract = self.inner.registry.get(contract_name)?.clone();
            let route = self.route(contract_name)?.clone();
            if validate {
                contract
                    .validate(message)
                    .map_err(|violations| PublishError::Invalid {
                        contract: contract_name.to_owned(),
                        index,
                        violations,
                    })?;
            }
            let style = self.inner.options.json_style;
            let payload = match original {
                Some(text) => wire::encode_exact(message, text, style),
                None => wire::encode(message, style),
            }
            .map_err(|e| PublishError::NotJson {
                contract: contract_name.to_owned(),
                index,
                message: e.to_string(),
            })?;
            let limit = self.inner.options.max_message_bytes;
            if payload.len() > limit {
                return Err(PublishError::TooLarge {
                    contract: contract_name.to_owned(),
                    index,
                    size: payload.len(),
                    limit,
                });
            }
            Ok(Prepared {
                contract,
                route,
                payload,
            })
        })();
        if let Err(e) = &result {
            MessageRejected {
                contract: self.contract_label(contract_name),
                reason: e.reject_reason(),
                error: e,
            }
            .emit(&self.inner.metrics);
        }
        result
    }

    /// The `contract` label for a name a caller gave: a known contract, or
    /// `unknown`, so that callers' typos cannot grow the series without bound.
    fn contract_label<'a>(&self, name: &'a str) -> &'a str {
        if self.inner.registry.get(name).is_ok() {
            name
        } else {
            "unknown"
        }
    }

    /// Parses JSON text, then validates and encodes it (see [`Self::prepare`]).
    ///
    /// # Errors
    /// As [`Self::prepare`], plus [`PublishError::NotJson`].
    pub fn prepare_json(&self, contract: &str, json: &[u8]) -> Result<Prepared, PublishError> {
        self.prepare_json_at(contract, json, None)
    }

    fn prepare_json_at(
        &self,
        contract: &str,
        json: &[u8],
        index: Option<usize>,
    ) -> Result<Prepared, PublishError> {
        match serde_json::from_slice::<Value>(json) {
            Ok(value) => self.prepare_text(contract, &value, Some(json), index, true),
            Err(e) => {
                let err = PublishError::NotJson {
                    contract: contract.to_owned(),
                    index,
                    message: e.to_string(),
                };
                MessageRejected {
                    contract: self.contract_label(contract),
                    reason: err.reject_reason(),
                    error: &err,
                }
                .emit(&self.inner.metrics);
                Err(err)
            }
        }
    }

    /// Validates and publishes one message; returns its stream id.
    ///
    /// # Errors
    /// See [`PublishError`]. On a validation error nothing is written.
    pub async fn publish(&self, contract: &str, message: &Value) -> Result<String, PublishError> {
        let prepared = self.prepare(contract, message)?;
        self.write_one(&prepared).await
    }

    /// Validates every message first; if any is invalid nothing is written
    /// and the error names its index. Otherwise writes all of them in one
    /// transaction (see [`Self::publish_prepared`]) and returns their ids
    /// in order.
    ///
    /// # Errors
    /// See [`PublishError`].
    pub async fn publish_batch(
        &self,
        contract: &str,
        messages: &[Value],
    ) -> Result<Vec<String>, PublishError> {
        let prepared = messages
            .iter()
            .enumerate()
            .map(|(i, m)| self.prepare_at(contract, m, Some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish_prepared(&prepared).await
    }

    /// Like [`Self::publish_batch`] for raw JSON texts (e.g. NDJSON lines).
    ///
    /// # Errors
    /// See [`PublishError`].
    pub async fn publish_json_batch(
        &self,
        contract: &str,
        texts: &[&[u8]],
    ) -> Result<Vec<String>, PublishError> {
        let prepared = texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.prepare_json_at(contract, t, Some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish_prepared(&prepared).await
    }

    /// Writes already-prepared messages (any mix of contracts) in one
    /// transaction (`MULTI` … `EXEC`, one round trip) and returns their ids
    /// in order. All or nothing: a refusal of any command (`OOM` at
    /// `maxmemory`, say) aborts the whole transaction (`EXECABORT`), and
    /// nothing is written. The whole batch is held in Redis's memory until
    /// `EXEC`; keep batches to thousands, not millions.
    ///
    /// # Errors
    /// [`PublishError::Redis`]; [`PublishError::may_have_been_written`]
    /// tells a refusal (nothing written) from a lost reply (the whole
    /// batch, or none of it, was written).
    pub async fn publish_prepared(&self, batch: &[Prepared]) -> Result<Vec<String>, PublishError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        if batch.len() == 1 {
            return Ok(vec![self.write_one(first).await?]);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for p in batch {
            pipe.add_command(self.xadd(p));
        }
        let ids: Vec<String> = self
            .with_budget(&first.route.stream, |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        for p in batch {
            p.route.published.inc();
            self.after_write(&p.route);
        }
        Ok(ids)
    }

    async fn write_one(&self, p: &Prepared) -> Result<String, PublishError> {
        let cmd = self.xadd(p);
        let id: String = self
            .with_budget(&p.route.stream, |mut conn| {
                let cmd = cmd.clone();
                async move { cmd.query_async(&mut conn).await }
            })
            .await?;
        p.route.published.inc();
        self.after_write(&p.route);
        Ok(id)
    }

    pub(crate) fn xadd(&self, p: &Prepared) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&*p.route.stream);
        if let Some(max_len) = self.approximate_max_len() {
            cmd.arg("MAXLEN").arg("~").arg(max_len);
        }
        cmd.arg("*").arg(wire::DATA_FIELD).arg(&p.payload);
        cmd
    }

    /// The `MAXLEN ~` an `XADD` carries, if any.
    pub(crate) fn approximate_max_len(&self) -> Option<u64> {
        (self.inner.options.max_len > 0 && self.inner.options.retention == Retention::Approximate)
            .then_some(self.inner.options.max_len)
    }

    /// Runs a write; on a retryable failure retries with backoff while the
    /// configured budget lasts (none: fail fast).
    async fn with_budget<T, F, Fut>(&self, stream: &str, mut attempt: F) -> Result<T, PublishError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let deadline = self
            .inner
            .options
            .retry_budget
            .and_then(|b| Instant::now().checked_add(b));
        let mut backoff = crate::backoff::Backoff::new(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(1),
        );
        loop {
            match attempt(self.inner.conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(source) => {
                    RedisCommandFailed::counted_only(&source).emit(&self.inner.metrics);
                    let err = PublishError::Redis {
                        stream: stream.to_owned(),
                        source,
                    };
                    let delay = backoff.next_delay();
                    match deadline {
                        Some(d) if err.is_retryable() && Instant::now() + delay < d => {
                            tracing::debug!(stream, error = %err, "publish failed; retrying within budget");
                            tokio::time::sleep(delay).await;
                        }
                        _ => return Err(err),
                    }
                }
            }
        }
    }

    /// At most once per stream per [`TRIM_INTERVAL`], in the background:
    /// safe trimming (in safe mode) and detection of entries trimmed
    /// before some group read them (in both modes).
    fn after_write(&self, route: &Route) {
        let now = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = route.last_trim.load(Ordering::Relaxed);
        let interval = u64::try_from(TRIM_INTERVAL.as_millis()).unwrap_or(1000);
        if now.saturating_sub(last) < interval
            || route
                .last_trim
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mut conn = self.inner.conn.clone();
        let metrics = self.inner.metrics.clone();
        let stream = route.stream.clone();
        let retention = self.inner.options.retention;
        tokio::spawn(async move {
            let result = match retention {
                Retention::Safe { hard_cap } => {
                    retention::trim_safely(&mut conn, &metrics, &stream, hard_cap).await
                }
                _ => retention::check_loss(&mut conn, &metrics, &stream, None)
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = result {
                RedisCommandFailed::warn(&e, "retention check failed")
                    .stream(&stream)
                    .emit(&metrics);
            }
        });
    }

    /// Round-trips a `PING`, for readiness checks.
    ///
    /// # Errors
    /// The Redis error.
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }
}
