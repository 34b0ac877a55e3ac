//! The command's settings: one table of every setting, resolved from flags, environment
//! variables (`ORION_BUS_*`) and an optional TOML file, in that order of
//! precedence, then defaults.
//!
//! Owns [`Settings`] (the typed result), [`resolve`] and [`ConfigError`],
//! which lists every problem at once instead of stopping at the first.
//! `table.rs` holds [`SETTINGS`] (names, env vars, defaults and help text,
//! which `main.rs` turns into flags and the README documents);
//! `resolver.rs` reads one value from its layers.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orion_bus::{
    BusOptions, ConnectError, ConsumerOptions, ContractOptions, ErrorPolicy, Idempotency,
    JsonStyle, RedisSettings, Retention, StartId,
};

use resolver::{Resolver, read_file};
#[cfg(test)]
pub use table::ALL;
pub use table::{SETTINGS, SettingSpec};

mod resolver;
mod table;
#[cfg(test)]
mod tests;

/// Where a value came from, for error messages and "was it given?" checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The TOML file.
    File,
    /// The built-in default.
    Default,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The resolved, typed settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Redis connection.
    pub redis: RedisSettings,
    /// True when the Redis URL was given (flag, env or file) rather than defaulted.
    pub redis_url_given: bool,
    /// Contracts directory.
    pub contracts_dir: PathBuf,
    /// True when the contracts directory was given rather than defaulted.
    pub contracts_dir_given: bool,
    /// Contract validation options.
    pub contracts: ContractOptions,
    /// Publishing options.
    pub bus: BusOptions,
    /// Consumer defaults (group, consumer and contracts left empty).
    pub consumer: ConsumerOptions,
    /// The keys set by a flag, the environment or the file (not defaulted).
    pub explicit: std::collections::BTreeSet<&'static str>,
    /// `serve` listen address.
    pub http_addr: SocketAddr,
    /// `serve --observe`: how often to check for missed entries.
    pub observe_check_interval: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Runtime worker threads; `None` is one per core.
    pub worker_threads: Option<usize>,
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Values given on the command line or in the environment, by key.
pub type Given = BTreeMap<&'static str, (String, Source)>;

/// Resolves settings: `given` (flags and env, as the CLI parsed them) over
/// the TOML `file` over defaults. Reports every problem at once.
///
/// # Errors
/// [`ConfigError`] listing each unreadable file, unknown key and bad value.
pub fn resolve(given: &Given, file: Option<&Path>) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let file_values = match file {
        Some(path) => read_file(path, &mut problems),
        None => BTreeMap::new(),
    };
    let mut r = Resolver {
        given,
        file: &file_values,
        problems,
    };

    let mut redis = RedisSettings::new(r.string("redis_url"));
    redis.username = r.opt_string("redis_username");
    redis.password = r.opt_string("redis_password");
    redis.db = r.opt_parse("redis_db");
    redis.connect_timeout = r.duration("connect_timeout");
    redis.command_timeout = r.duration("command_timeout");
    redis.tls_ca_file = r.opt_string("tls_ca_file").map(PathBuf::from);
    redis.tls_cert_file = r.opt_string("tls_cert_file").map(PathBuf::from);
    redis.tls_key_file = r.opt_string("tls_key_file").map(PathBuf::from);
    redis.tls_insecure = r.parse("tls_insecure", false);
    for (key, timeout) in [
        ("connect_timeout", redis.connect_timeout),
        ("command_timeout", redis.command_timeout),
    ] {
        if timeout.is_zero() {
            let origin = Resolver::origin(key, r.source(key));
            r.problems.push(format!("{origin}: must be more than 0s"));
        }
    }
    // Also reads the TLS files, so that a missing one is a usage error.
    match redis.client() {
        Ok(_) => {}
        Err(e @ ConnectError::Tls { .. }) => r.problems.push(e.to_string()),
        Err(e) => r.problems.push(format!("redis_url: {e}")),
    }
    let contracts = ContractOptions::default().assert_formats(r.parse("assert_formats", true));
    let bus = BusOptions::default()
        .prefix(r.string("prefix"))
        .max_len(r.parse("max_len", 10_000))
        .max_message_bytes(r.parse("max_message_bytes", 1024 * 1024))
        .json_style(r.parse("json_style", JsonStyle::Python))
        .retry_budget(Some(r.duration("publish_retry_budget")).filter(|d| !d.is_zero()))
        .retention(match r.string("retention").as_str() {
            "approx" => Retention::Approximate,
            "safe" => Retention::Safe {
                hard_cap: r.parse("hard_cap", 100_000),
            },
            other => {
                r.problems
                    .push(format!("retention: {other:?} is not approx or safe"));
                Retention::Approximate
            }
        });
    if bus.prefix.is_empty() {
        r.problems.push("prefix: must not be empty".to_owned());
    }
    let consumer = ConsumerOptions::new("", "")
        .concurrency(r.positive("concurrency", 8))
        .max_in_flight(r.positive("max_in_flight", 64))
        .read_count(r.positive("read_count", 32))
        .block(r.duration("block"))
        .start_id(r.parse("start_id", StartId::Beginning))
        .shutdown_grace(r.duration("shutdown_grace"))
        .on_error(r.parse("on_error", ErrorPolicy::Retry))
        .max_deliveries(r.positive("max_deliveries", 5) as u64)
        .retry_backoff(r.duration("retry_backoff"), r.duration("retry_backoff_max"))
        .claim_idle(r.duration("claim_idle"))
        .stale_consumer_after(r.duration("stale_consumer_after"))
        .housekeeping_interval(r.duration("housekeeping_interval"))
        .wait_for_name(r.parse("wait_for_name", false));
    let consumer = match r.opt_string("idempotency_key") {
        None => consumer,
        Some(key) => {
            let idem = if key == "@id" {
                Idempotency::stream_id()
            } else {
                Idempotency::field(key)
            };
            consumer.idempotency(idem.ttl(r.duration("idempotency_ttl")))
        }
    };
    if consumer.retry_backoff.is_zero() || consumer.retry_backoff_max < consumer.retry_backoff {
        r.problems
            .push("retry_backoff: must be positive and at most retry_backoff_max".to_owned());
    }
    if consumer.claim_idle < Duration::from_millis(100) {
        r.problems
            .push("claim_idle: must be at least 100ms".to_owned());
    }
    if consumer.stale_consumer_after < Duration::from_secs(1) {
        r.problems
            .push("stale_consumer_after: must be at least 1s".to_owned());
    }
    if consumer.housekeeping_interval < Duration::from_millis(10) {
        r.problems
            .push("housekeeping_interval: must be at least 10ms".to_owned());
    }
    if consumer.block < Duration::from_millis(1) {
        r.problems.push("block: must be at least 1ms".to_owned());
    }
    let http_addr = r.parse("http_addr", SocketAddr::from(([127, 0, 0, 1], 9464)));
    let observe_check_interval = r.duration("observe_check_interval");
    if observe_check_interval < Duration::from_millis(10) {
        r.problems
            .push("observe_check_interval: must be at least 10ms".to_owned());
    }
    let log_format = match r.string("log_format").as_str() {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => {
            r.problems
                .push(format!("log_format: {other:?} is not human or json"));
            LogFormat::Human
        }
    };
    let settings = Settings {
        explicit: SETTINGS
            .iter()
            .map(|spec| spec.key)
            .filter(|key| r.source(key) != Source::Default)
            .collect(),
        redis_url_given: r.source("redis_url") != Source::Default,
        contracts_dir_given: r.source("contracts_dir") != Source::Default,
        contracts_dir: PathBuf::from(r.string("contracts_dir")),
        redis,
        contracts,
        bus,
        consumer,
        http_addr,
        observe_check_interval,
        log_format,
        log_level: r.string("log_level"),
        worker_threads: match r.parse("worker_threads", 1usize) {
            0 => None,
            n => Some(n),
        },
    };
    if r.problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError {
            problems: r.problems,
        })
    }
}

/// The longest duration a setting takes: long enough for any timeout or
/// retention window, short enough that no clock arithmetic overflows.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
