//! The settings table: every setting's key, environment variable, default
//! and help text, in one place.
//!
//! Owns [`SettingSpec`] and [`SETTINGS`], the single source from which the
//! command builds its flags, [`super::resolve`] reads values, and the
//! README's settings table is checked.

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
        "observe_check_interval",
        "ORION_BUS_OBSERVE_CHECK_INTERVAL",
        Some("5s"),
        "With `serve --observe`, how often each stream is checked for entries trimmed or deleted before the observer read them"
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
