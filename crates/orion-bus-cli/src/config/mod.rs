//! Settings: one table of every setting, resolved from flags, environment
//! variables (`ORION_BUS_*`) and an optional TOML file, in that order of
//! precedence, then defaults.
//!
//! Owns [`SETTINGS`] (the single source of names, env vars, defaults and
//! help text, which the CLI turns into flags and the README documents),
//! [`Settings`] (the typed result) and [`ConfigError`], which lists every
//! problem at once instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bus::BusOptions;
use crate::connection::{ConnectError, RedisSettings};
use crate::consumer::{ConsumerOptions, ErrorPolicy, Idempotency, StartId};
use crate::contracts::ContractOptions;
use crate::retention::Retention;
use crate::wire::JsonStyle;

/// One setting: its key (TOML key and `--flag` with `_` as `-`), its
/// environment variable, its default and its help text.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    /// Key in the TOML file; the flag is `--` plus the key with `-` for `_`.
    pub key: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Default, as text (`None`: unset).
    pub default: Option<&'static str>,
    /// What the setting does.
    pub help: &'static str,
}

impl SettingSpec {
    /// The command-line flag, without dashes (`redis-url`).
    #[must_use]
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }
}

macro_rules! spec {
    ($key:literal, $env:literal, $default:expr, $help:literal) => {
        SettingSpec {
            key: $key,
            env: $env,
            default: $default,
            help: $help,
        }
    };
}

/// Every setting the `orion-bus` command understands.
/// Environment variable names are the upper-cased keys with `ORION_BUS_`.
pub const SETTINGS: &[SettingSpec] = &[
    spec!(
        "redis_url",
        "ORION_BUS_REDIS_URL",
        Some("redis://127.0.0.1:6379"),
        "Redis URL: redis://[user:pass@]host:port[/db], or rediss:// for TLS"
    ),
    spec!(
        "redis_username",
        "ORION_BUS_REDIS_USERNAME",
        None,
        "ACL user name (overrides the URL's)"
    ),
    spec!(
        "redis_password",
        "ORION_BUS_REDIS_PASSWORD",
        None,
        "Password (overrides the URL's); prefer the environment variable"
    ),
    spec!(
        "redis_db",
        "ORION_BUS_REDIS_DB",
        None,
        "Database number (overrides the URL's)"
    ),
    spec!(
        "connect_timeout",
        "ORION_BUS_CONNECT_TIMEOUT",
        Some("5s"),
        "Limit on one attempt to connect to Redis (TCP, TLS handshake, AUTH, SELECT together)"
    ),
    spec!(
        "command_timeout",
        "ORION_BUS_COMMAND_TIMEOUT",
        Some("5s"),
        "Limit on one non-blocking Redis command's reply"
    ),
    spec!(
        "tls_ca_file",
        "ORION_BUS_TLS_CA_FILE",
        None,
        "PEM file of the CA certificate(s) to trust for rediss://, in place of the public roots"
    ),
    spec!(
        "tls_cert_file",
        "ORION_BUS_TLS_CERT_FILE",
        None,
        "PEM client certificate for mutual TLS (with --tls-key-file)"
    ),
    spec!(
        "tls_key_file",
        "ORION_BUS_TLS_KEY_FILE",
        None,
        "PEM private key of --tls-cert-file"
    ),
    spec!(
        "tls_insecure",
        "ORION_BUS_TLS_INSECURE",
        Some("false"),
        "Do not verify the server's TLS certificate (tests only; logged as a warning)"
    ),
    spec!(
        "contracts_dir",
        "ORION_BUS_CONTRACTS_DIR",
        Some("contracts"),
        "Directory of *.schema.json contracts"
    ),
    spec!(
        "assert_formats",
        "ORION_BUS_ASSERT_FORMATS",
        Some("true"),
        "Reject bad uuid/date-time formats; false mimics the Python bus's lenient validator"
    ),
    spec!(
        "prefix",
        "ORION_BUS_PREFIX",
        Some("orion"),
        "Stream key prefix: streams are {prefix}:{contract}s"
    ),
    spec!(
        "max_len",
        "ORION_BUS_MAX_LEN",
        Some("10000"),
        "Approximate stream cap at publish (MAXLEN ~); 0 disables trimming"
    ),
    spec!(
        "max_message_bytes",
        "ORION_BUS_MAX_MESSAGE_BYTES",
        Some("1048576"),
        "Largest encoded message accepted at publish and consume"
    ),
    spec!(
        "retention",
        "ORION_BUS_RETENTION",
        Some("approx"),
        "approx (MAXLEN ~ max_len at publish, as the Python bus) or safe (never trim what a group still needs)"
    ),
    spec!(
        "hard_cap",
        "ORION_BUS_HARD_CAP",
        Some("100000"),
        "In safe retention, the length kept whatever groups need (last resort)"
    ),
    spec!(
        "publish_retry_budget",
        "ORION_BUS_PUBLISH_RETRY_BUDGET",
        Some("0s"),
        "Retry failed publishes (connection lost, timeout), and the first connection, for up to this long; 0s fails fast with a retryable error"
    ),
    spec!(
        "json_style",
        "ORION_BUS_JSON_STYLE",
        Some("python"),
        "Encoding: python (byte-identical to json.dumps) or compact"
    ),
    spec!(
        "concurrency",
        "ORION_BUS_CONCURRENCY",
        Some("8"),
        "Handlers running at once per consumer"
    ),
    spec!(
        "max_in_flight",
        "ORION_BUS_MAX_IN_FLIGHT",
        Some("64"),
        "Entries read but not yet acked; reading pauses at this cap"
    ),
    spec!(
        "read_count",
        "ORION_BUS_READ_COUNT",
        Some("32"),
        "XREADGROUP COUNT per stream"
    ),
    spec!(
        "block",
        "ORION_BUS_BLOCK",
        Some("1s"),
        "XREADGROUP BLOCK per read"
    ),
    spec!(
        "start_id",
        "ORION_BUS_START_ID",
        Some("0"),
        "Where a new group starts: 0 (whole stream, as the Python bus), $ (new entries) or an id"
    ),
    spec!(
        "on_error",
        "ORION_BUS_ON_ERROR",
        Some("retry"),
        "Handler errors: retry (redeliver with backoff, dead-letter after max_deliveries) or dead-letter (at once)"
    ),
    spec!(
        "max_deliveries",
        "ORION_BUS_MAX_DELIVERIES",
        Some("5"),
        "Deliveries (counted by Redis) after which a failing entry is dead-lettered"
    ),
    spec!(
        "retry_backoff",
        "ORION_BUS_RETRY_BACKOFF",
        Some("1s"),
        "Wait before the first redelivery; doubles per delivery"
    ),
    spec!(
        "retry_backoff_max",
        "ORION_BUS_RETRY_BACKOFF_MAX",
        Some("60s"),
        "Longest wait between redeliveries"
    ),
    spec!(
        "claim_idle",
        "ORION_BUS_CLAIM_IDLE",
        Some("30s"),
        "Entries idle this long on another consumer are claimed (it is presumed dead)"
    ),
    spec!(
        "stale_consumer_after",
        "ORION_BUS_STALE_CONSUMER_AFTER",
        Some("1h"),
        "Consumers of the group idle this long with nothing pending are removed (XGROUP DELCONSUMER)"
    ),
    spec!(
        "housekeeping_interval",
        "ORION_BUS_HOUSEKEEPING_INTERVAL",
        Some("5s"),
        "How often a consumer checks for entries lost to trimming and removes stale consumers"
    ),
    spec!(
        "wait_for_name",
        "ORION_BUS_WAIT_FOR_NAME",
        Some("false"),
        "When another live process holds this consumer name, wait for its lease instead of failing"
    ),
    spec!(
        "idempotency_key",
        "ORION_BUS_IDEMPOTENCY_KEY",
        None,
        "Skip messages this group already handled, keyed by this field (e.g. event_id), or @id for the stream id"
    ),
    spec!(
        "idempotency_ttl",
        "ORION_BUS_IDEMPOTENCY_TTL",
        Some("24h"),
        "How long handled keys are remembered"
    ),
    spec!(
        "shutdown_grace",
        "ORION_BUS_SHUTDOWN_GRACE",
        Some("25s"),
        "After SIGTERM, how long in-flight handlers get before their entries are left pending"
    ),
    spec!(
        "http_addr",
        "ORION_BUS_HTTP_ADDR",
        Some("127.0.0.1:9464"),
        "Listen address of `serve` (/healthz, /readyz, /metrics)"
    ),
    spec!(
        "worker_threads",
        "ORION_BUS_WORKER_THREADS",
        Some("1"),
        "Runtime worker threads; 0 is one per core. One keeps the CPU low; raise it for CPU-heavy handlers (see docs/BENCHMARKS.md)"
    ),
    spec!(
        "log_format",
        "ORION_BUS_LOG_FORMAT",
        Some("human"),
        "Log format: human or json"
    ),
    spec!(
        "log_level",
        "ORION_BUS_LOG_LEVEL",
        Some("info"),
        "Log filter, e.g. info or orion_bus=debug"
    ),
];

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

fn read_file(path: &Path, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("config file {}: {e}", path.display()));
            return BTreeMap::new();
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("config file {}: {e}", path.display()));
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (key, value) in table {
        if !SETTINGS.iter().any(|s| s.key == key) {
            problems.push(format!(
                "config file {}: unknown key {key:?}",
                path.display()
            ));
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                problems.push(format!(
                    "config file {}: {key} must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ));
                continue;
            }
        };
        out.insert(key, text);
    }
    out
}

struct Resolver<'a> {
    given: &'a Given,
    file: &'a BTreeMap<String, String>,
    problems: Vec<String>,
}

impl Resolver<'_> {
    fn spec(key: &str) -> &'static SettingSpec {
        let found = SETTINGS.iter().find(|s| s.key == key);
        debug_assert!(found.is_some(), "setting {key} is not in SETTINGS");
        found.unwrap_or(&SETTINGS[0])
    }

    fn raw(&self, key: &str) -> Option<(String, Source)> {
        if let Some((v, src)) = self.given.get(key) {
            return Some((v.clone(), *src));
        }
        if let Some(v) = self.file.get(key) {
            return Some((v.clone(), Source::File));
        }
        Self::spec(key)
            .default
            .map(|d| (d.to_owned(), Source::Default))
    }

    fn source(&self, key: &str) -> Source {
        self.raw(key).map_or(Source::Default, |(_, s)| s)
    }

    fn origin(key: &str, source: Source) -> String {
        let spec = Self::spec(key);
        match source {
            Source::Flag => format!("--{}", spec.flag()),
            Source::Env => spec.env.to_owned(),
            Source::File => format!("config file key {key}"),
            Source::Default => format!("default of {key}"),
        }
    }

    fn string(&self, key: &str) -> String {
        self.raw(key).map(|(v, _)| v).unwrap_or_default()
    }

    fn opt_string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|(v, _)| v).filter(|v| !v.is_empty())
    }

    fn opt_parse<T: std::str::FromStr>(&mut self, key: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let (v, src) = self.raw(key).filter(|(v, _)| !v.is_empty())?;
        match v.parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push(format!(
                    "{}: invalid value {v:?}: {e}",
                    Self::origin(key, src)
                ));
                None
            }
        }
    }

    fn parse<T: std::str::FromStr>(&mut self, key: &str, fallback: T) -> T
    where
        T::Err: fmt::Display,
    {
        self.opt_parse(key).unwrap_or(fallback)
    }

    fn positive(&mut self, key: &str, fallback: usize) -> usize {
        let v: usize = self.parse(key, fallback);
        if v == 0 {
            let src = self.source(key);
            self.problems
                .push(format!("{}: must be at least 1", Self::origin(key, src)));
            return fallback;
        }
        v
    }

    fn duration(&mut self, key: &str) -> Duration {
        let Some((v, src)) = self.raw(key) else {
            return Duration::ZERO;
        };
        let problem = match humantime::parse_duration(&v) {
            Ok(d) if d <= MAX_DURATION => return d,
            Ok(_) => format!("{v:?} is too long; at most 365 days"),
            Err(e) => format!("invalid duration {v:?} ({e}); write e.g. 500ms, 5s or 1m"),
        };
        self.problems
            .push(format!("{}: {problem}", Self::origin(key, src)));
        Self::spec(key)
            .default
            .and_then(|d| humantime::parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(1))
    }
}

/// The longest duration a setting takes: long enough for any timeout or
/// retention window, short enough that no clock arithmetic overflows.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn given(pairs: &[(&'static str, &str, Source)]) -> Given {
        pairs
            .iter()
            .map(|(k, v, s)| (*k, ((*v).to_owned(), *s)))
            .collect()
    }

    #[test]
    fn defaults_resolve() {
        let s = resolve(&Given::new(), None).expect("defaults are valid");
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert!(!s.redis_url_given);
        assert_eq!(s.bus.prefix, "orion");
        assert_eq!(s.bus.max_len, 10_000);
        assert_eq!(s.consumer.shutdown_grace, Duration::from_secs(25));
        assert!(s.contracts.assert_formats);
        assert_eq!(s.consumer.start_id, StartId::Beginning);
        assert_eq!(s.worker_threads, Some(1), "one runtime thread by default");
    }

    #[test]
    fn worker_threads_zero_means_one_per_core() {
        let s = resolve(&given(&[("worker_threads", "0", Source::Env)]), None).expect("valid");
        assert_eq!(s.worker_threads, None);
        let s = resolve(&given(&[("worker_threads", "3", Source::Flag)]), None).expect("valid");
        assert_eq!(s.worker_threads, Some(3));
        let err = resolve(&given(&[("worker_threads", "many", Source::Flag)]), None)
            .expect_err("not a number");
        assert!(err.to_string().contains("--worker-threads"), "{err}");
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "prefix = \"fromfile\"\nmax_len = 5\nblock = \"2s\"").expect("write");
        let g = given(&[
            ("prefix", "fromflag", Source::Flag),
            ("max_len", "7", Source::Env),
        ]);
        let s = resolve(&g, Some(f.path())).expect("valid");
        assert_eq!(s.bus.prefix, "fromflag");
        assert_eq!(s.bus.max_len, 7);
        assert_eq!(s.consumer.block, Duration::from_secs(2));
        assert_eq!(s.bus.max_message_bytes, 1024 * 1024);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "bogus = 1\nconcurrency = 0").expect("write");
        let g = given(&[
            ("max_len", "lots", Source::Flag),
            ("block", "soon", Source::Env),
            ("json_style", "yaml", Source::Flag),
            ("redis_url", "http://nope", Source::Flag),
            ("log_format", "xml", Source::Flag),
            ("shutdown_grace", "100000000years", Source::Flag),
        ]);
        let err = resolve(&g, Some(f.path())).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "unknown key \"bogus\"",
            "config file key concurrency: must be at least 1",
            "--max-len: invalid value \"lots\"",
            "ORION_BUS_BLOCK",
            "--json-style",
            "redis_url",
            "log_format",
            "--shutdown-grace: \"100000000years\" is too long; at most 365 days",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert_eq!(err.problems.len(), 8, "{text}");
    }

    #[test]
    fn readme_documents_every_setting() {
        let readme = include_str!("../../../README.md");
        for spec in SETTINGS {
            let row = format!("| `--{}` | `{}` |", spec.flag(), spec.env);
            assert!(
                readme.contains(&row),
                "README lacks the row for {}",
                spec.key
            );
            if let Some(default) = spec.default {
                assert!(
                    readme.contains(&format!("{row} `{default}` |")),
                    "README gives the wrong default for {}",
                    spec.key
                );
            }
        }
    }

    #[test]
    fn tls_settings_come_from_flags_env_and_file() {
        let pki = orion_bus_harness::certs::TestPki::generate("config").expect("certificates");
        let ca = pki.ca_file();
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "tls_ca_file = {:?}", ca.display().to_string()).expect("write");
        let g = given(&[
            ("redis_url", "rediss://h:6380", Source::Flag),
            ("connect_timeout", "2s", Source::Env),
        ]);
        let s = resolve(&g, Some(f.path())).expect("valid");
        assert_eq!(s.redis.tls_ca_file.as_deref(), Some(ca.as_path()));
        assert!(!s.redis.tls_insecure);
        assert_eq!(s.redis.connect_timeout, Duration::from_secs(2));

        let g = given(&[
            ("redis_url", "rediss://h:6380", Source::Flag),
            ("tls_insecure", "true", Source::Env),
        ]);
        assert!(resolve(&g, None).expect("valid").redis.tls_insecure);
    }

    #[test]
    fn unusable_tls_settings_and_zero_timeouts_are_problems() {
        let g = given(&[
            ("redis_url", "rediss://h:6380", Source::Flag),
            ("tls_ca_file", "/nonexistent/ca.pem", Source::Flag),
            ("tls_cert_file", "/nonexistent/client.pem", Source::Env),
            ("connect_timeout", "0s", Source::Flag),
            ("command_timeout", "0ms", Source::Env),
        ]);
        let text = resolve(&g, None).expect_err("invalid").to_string();
        for needle in [
            "tls_ca_file /nonexistent/ca.pem",
            "--connect-timeout: must be more than 0s",
            "ORION_BUS_COMMAND_TIMEOUT: must be more than 0s",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        let g = given(&[("tls_insecure", "true", Source::Flag)]);
        let text = resolve(&g, None).expect_err("not TLS").to_string();
        assert!(text.contains("need a rediss:// URL"), "{text}");
    }

    #[test]
    fn missing_file_is_a_problem() {
        let err = resolve(&Given::new(), Some(Path::new("/nonexistent/orion.toml")))
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/orion.toml"));
    }
}
