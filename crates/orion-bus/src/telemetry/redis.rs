//! The failed-Redis-command event: `redis_errors_total` (and
//! `redis_reconnects_total` for connection-level failures) with the log
//! line that says what was being done.

use super::InternalEvent;
use crate::metrics::Metrics;

/// How a [`RedisCommandFailed`] is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// The bus carries on (retries, or gives up something that can wait).
    Warn,
    /// Something stays undone until an operator acts or Redis changes.
    Error,
    /// Counted only: the error is reported another way (returned to the
    /// caller, or followed by what is done about it, which logs).
    CountedOnly,
}

/// A Redis command failed. Built with what was being done (the log
/// message) and the error, then the fields that apply.
#[must_use = "an event does nothing until emitted"]
#[derive(Debug)]
pub(crate) struct RedisCommandFailed<'a> {
    error: &'a redis::RedisError,
    doing: &'static str,
    level: Level,
    stream: Option<&'a str>,
    group: Option<&'a str>,
    consumer: Option<&'a str>,
    id: Option<&'a str>,
    key: Option<&'a str>,
    entries: Option<u64>,
}

impl<'a> RedisCommandFailed<'a> {
    fn new(error: &'a redis::RedisError, doing: &'static str, level: Level) -> Self {
        Self {
            error,
            doing,
            level,
            stream: None,
            group: None,
            consumer: None,
            id: None,
            key: None,
            entries: None,
        }
    }

    /// Logged as a warning: the bus carries on.
    pub(crate) fn warn(error: &'a redis::RedisError, doing: &'static str) -> Self {
        Self::new(error, doing, Level::Warn)
    }

    /// Logged as an error: something stays undone.
    pub(crate) fn error(error: &'a redis::RedisError, doing: &'static str) -> Self {
        Self::new(error, doing, Level::Error)
    }

    /// Counted, not logged: the error is reported another way (returned to
    /// the caller, or handled by a step that logs what it does).
    pub(crate) fn counted_only(error: &'a redis::RedisError) -> Self {
        Self::new(error, "", Level::CountedOnly)
    }

    /// The stream (or streams, comma-separated) concerned.
    pub(crate) fn stream(mut self, stream: &'a str) -> Self {
        self.stream = Some(stream);
        self
    }

    /// The consumer group.
    pub(crate) fn group(mut self, group: &'a str) -> Self {
        self.group = Some(group);
        self
    }

    /// The consumer name.
    pub(crate) fn consumer(mut self, consumer: &'a str) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// The entry id.
    pub(crate) fn id(mut self, id: &'a str) -> Self {
        self.id = Some(id);
        self
    }

    /// The Redis key concerned (an idempotency key, a dead-letter stream).
    pub(crate) fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    /// How many entries the command covered.
    pub(crate) fn entries(mut self, entries: usize) -> Self {
        self.entries = Some(entries as u64);
        self
    }
}

impl InternalEvent for RedisCommandFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.redis_error(self.error);
        macro_rules! log {
            ($macro:ident) => {
                tracing::$macro!(
                    stream = self.stream.map(tracing::field::display),
                    group = self.group.map(tracing::field::display),
                    consumer = self.consumer.map(tracing::field::display),
                    id = self.id.map(tracing::field::display),
                    key = self.key.map(tracing::field::display),
                    entries = self.entries,
                    error = %self.error,
                    "{}",
                    self.doing
                )
            };
        }
        match self.level {
            Level::Warn => log!(warn),
            Level::Error => log!(error),
            Level::CountedOnly => {}
        }
    }
}
