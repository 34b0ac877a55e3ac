//! The settings table: every setting's key, environment variable, default
//! and help text, in one place.
//!
//! Owns [`SettingSpec`] and [`SETTINGS`], the single source from which the
//! command builds its flags, [`super::resolve`] reads values, and the
//! README's settings table is checked.

/// One setting: its key (TOML key and `--flag` with `_` as `-`), its
/// environment variable, its default, its help text and the subcommands
/// that use it.
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
    /// The subcommands that use it, as their paths (`publish`,
    /// `dlq redrive`): only these take it as a flag and list it in their
    /// `--help`. From the environment or the TOML file it is accepted
    /// whatever the subcommand.
    pub used_by: &'static [&'static str],
}

impl SettingSpec {
    /// The command-line flag, without dashes (`redis-url`).
    #[must_use]
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }

    /// Whether the subcommand at `path` (`publish`, `dlq redrive`) uses it.
    #[must_use]
    pub fn used_by(&self, path: &str) -> bool {
        self.used_by.contains(&path)
    }
}

/// Every subcommand, by path.
pub const ALL: &[&str] = &[
    "codegen",
    "validate",
    "publish",
    "consume",
    "tail",
    "dlq list",
    "dlq show",
    "dlq redrive",
    "dlq purge",
    "serve",
    "status",
    "replay",
    "demo",
    "bench",
];
/// The subcommands that connect to Redis (all but `codegen` and `validate`).
const REDIS: &[&str] = &[
    "publish",
    "consume",
    "tail",
    "dlq list",
    "dlq show",
    "dlq redrive",
    "dlq purge",
    "serve",
    "status",
    "replay",
    "demo",
    "bench",
];
/// The subcommands that load contracts: `codegen` reads only the directory.
const CONTRACTS: &[&str] = &[
    "validate",
    "publish",
    "consume",
    "tail",
    "dlq list",
    "dlq show",
    "dlq redrive",
    "dlq purge",
    "serve",
    "status",
    "replay",
    "demo",
    "bench",
];
/// The subcommands that use the configured stream prefix (`demo` and
/// `bench` write under prefixes of their own).
const PREFIXED: &[&str] = &[
    "publish",
    "consume",
    "tail",
    "dlq list",
    "dlq show",
    "dlq redrive",
    "dlq purge",
    "serve",
    "status",
    "replay",
];
/// The subcommands that write to contract streams (and so trim them).
const WRITING: &[&str] = &["publish", "dlq redrive", "demo", "bench"];
/// The subcommands that decode entries, up to `max_message_bytes`.
const DECODING: &[&str] = &[
    "publish",
    "consume",
    "tail",
    "dlq redrive",
    "serve",
    "demo",
    "bench",
];
/// The subcommands that run consumers with the configured options.
const CONSUMING: &[&str] = &["consume", "bench"];

macro_rules! spec {
    ($key:literal, $env:literal, $default:expr, $help:literal, $used_by:expr) => {
        SettingSpec {
            key: $key,
            env: $env,
            default: $default,
            help: $help,
            used_by: $used_by,
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
        "Redis URL: redis://[user:pass@]host:port[/db], or rediss:// for TLS",
        REDIS
    ),
    spec!(
        "redis_username",
        "ORION_BUS_REDIS_USERNAME",
        None,
        "ACL user name (overrides the URL's)",
        REDIS
    ),
    spec!(
        "redis_password",
        "ORION_BUS_REDIS_PASSWORD",
        None,
        "Password (overrides the URL's); prefer the environment variable",
        REDIS
    ),
    spec!(
        "redis_db",
        "ORION_BUS_REDIS_DB",
        None,
        "Database number (overrides the URL's)",
        REDIS
    ),
    spec!(
        "connect_timeout",
        "ORION_BUS_CONNECT_TIMEOUT",
        Some("5s"),
        "Limit on one attempt to connect to Redis (TCP, TLS handshake, AUTH, SELECT together)",
        REDIS
    ),
    spec!(
        "command_timeout",
        "ORION_BUS_COMMAND_TIMEOUT",
        Some("5s"),
        "Limit on one non-blocking Redis command's reply",
        REDIS
    ),
    spec!(
        "tls_ca_file",
        "ORION_BUS_TLS_CA_FILE",
        None,
        "PEM file of the CA certificate(s) to trust for rediss://, in place of the public roots",
        REDIS
    ),
    spec!(
        "tls_cert_file",
        "ORION_BUS_TLS_CERT_FILE",
        None,
        "PEM client certificate for mutual TLS (with --tls-key-file)",
        REDIS
    ),
    spec!(
        "tls_key_file",
        "ORION_BUS_TLS_KEY_FILE",
        None,
        "PEM private key of --tls-cert-file",
        REDIS
    ),
    spec!(
        "tls_insecure",
        "ORION_BUS_TLS_INSECURE",
        Some("false"),
        "Do not verify the server's TLS certificate (tests only; logged as a warning)",
        REDIS
    ),
    spec!(
        "contracts_dir",
        "ORION_BUS_CONTRACTS_DIR",
        Some("contracts"),
        "Directory of *.schema.json contracts",
        &[
            "codegen",
            "validate",
            "publish",
            "consume",
            "tail",
            "dlq list",
            "dlq show",
            "dlq redrive",
            "dlq purge",
            "serve",
            "status",
            "replay",
            "demo",
            "bench"
        ]
    ),
    spec!(
        "assert_formats",
        "ORION_BUS_ASSERT_FORMATS",
        Some("true"),
        "Reject bad uuid/date-time formats; false mimics the Python bus's lenient validator",
        CONTRACTS
    ),
    spec!(
        "prefix",
        "ORION_BUS_PREFIX",
        Some("orion"),
        "Stream key prefix: streams are {prefix}:{contract}s",
        PREFIXED
    ),
    spec!(
        "max_len",
        "ORION_BUS_MAX_LEN",
        Some("10000"),
        "Approximate stream cap at publish (MAXLEN ~); 0 disables trimming",
        WRITING
    ),
    spec!(
        "max_message_bytes",
        "ORION_BUS_MAX_MESSAGE_BYTES",
        Some("1048576"),
        "Largest encoded message accepted at publish and consume",
        DECODING
    ),
    spec!(
        "retention",
        "ORION_BUS_RETENTION",
        Some("approx"),
        "approx (MAXLEN ~ max_len at publish, as the Python bus) or safe (never trim what a group still needs)",
        WRITING
    ),
    spec!(
        "hard_cap",
        "ORION_BUS_HARD_CAP",
        Some("100000"),
        "In safe retention, the length kept whatever groups need (last resort)",
        WRITING
    ),
    spec!(
        "publish_retry_budget",
        "ORION_BUS_PUBLISH_RETRY_BUDGET",
        Some("0s"),
        "Retry failed publishes (connection lost, timeout), and the first connection, for up to this long; 0s fails fast with a retryable error",
        REDIS
    ),
    spec!(
        "json_style",
        "ORION_BUS_JSON_STYLE",
        Some("python"),
        "Encoding: python (byte-identical to json.dumps) or compact",
        &["publish", "demo", "bench"]
    ),
    spec!(
        "concurrency",
        "ORION_BUS_CONCURRENCY",
        Some("8"),
        "Handlers running at once per consumer",
        CONSUMING
    ),
    spec!(
        "max_in_flight",
        "ORION_BUS_MAX_IN_FLIGHT",
        Some("64"),
        "Entries read but not yet acked; reading pauses at this cap",
        CONSUMING
    ),
    spec!(
        "read_count",
        "ORION_BUS_READ_COUNT",
        Some("32"),
        "XREADGROUP COUNT per stream",
        CONSUMING
    ),
    spec!(
        "block",
        "ORION_BUS_BLOCK",
        Some("1s"),
        "XREADGROUP BLOCK per read",
        &["consume", "tail", "bench"]
    ),
    spec!(
        "start_id",
        "ORION_BUS_START_ID",
        Some("0"),
        "Where a new group starts: 0 (whole stream, as the Python bus), $ (new entries) or an id",
        CONSUMING
    ),
    spec!(
        "on_error",
        "ORION_BUS_ON_ERROR",
        Some("retry"),
        "Handler errors: retry (redeliver with backoff, dead-letter after max_deliveries) or dead-letter (at once)",
        CONSUMING
    ),
    spec!(
        "max_deliveries",
        "ORION_BUS_MAX_DELIVERIES",
        Some("5"),
        "Deliveries (counted by Redis) after which a failing entry is dead-lettered",
        CONSUMING
    ),
    spec!(
        "retry_backoff",
        "ORION_BUS_RETRY_BACKOFF",
        Some("1s"),
        "Wait before the first redelivery; doubles per delivery",
        CONSUMING
    ),
    spec!(
        "retry_backoff_max",
        "ORION_BUS_RETRY_BACKOFF_MAX",
        Some("60s"),
        "Longest wait between redeliveries",
        CONSUMING
    ),
    spec!(
        "claim_idle",
        "ORION_BUS_CLAIM_IDLE",
        Some("30s"),
        "Entries idle this long on another consumer are claimed (it is presumed dead)",
        CONSUMING
    ),
    spec!(
        "stale_consumer_after",
        "ORION_BUS_STALE_CONSUMER_AFTER",
        Some("1h"),
        "Consumers of the group idle this long with nothing pending are removed (XGROUP DELCONSUMER)",
        CONSUMING
    ),
    spec!(
        "housekeeping_interval",
        "ORION_BUS_HOUSEKEEPING_INTERVAL",
        Some("5s"),
        "How often a consumer checks for entries lost to trimming and removes stale consumers",
        CONSUMING
    ),
    spec!(
        "wait_for_name",
        "ORION_BUS_WAIT_FOR_NAME",
        Some("false"),
        "When another live process holds this consumer name, wait for its lease instead of failing",
        CONSUMING
    ),
    spec!(
        "idempotency_key",
        "ORION_BUS_IDEMPOTENCY_KEY",
        None,
        "Skip messages this group already handled, keyed by this field (e.g. event_id), or @id for the stream id",
        CONSUMING
    ),
    spec!(
        "idempotency_ttl",
        "ORION_BUS_IDEMPOTENCY_TTL",
        Some("24h"),
        "How long handled keys are remembered",
        CONSUMING
    ),
    spec!(
        "shutdown_grace",
        "ORION_BUS_SHUTDOWN_GRACE",
        Some("25s"),
        "After SIGTERM, how long in-flight handlers get before their entries are left pending",
        CONSUMING
    ),
    spec!(
        "http_addr",
        "ORION_BUS_HTTP_ADDR",
        Some("127.0.0.1:9464"),
        "Listen address of `serve` (/healthz, /readyz, /metrics)",
        &["consume", "serve"]
    ),
    spec!(
        "observe_check_interval",
        "ORION_BUS_OBSERVE_CHECK_INTERVAL",
        Some("5s"),
        "With `serve --observe`, how often each stream is checked for entries trimmed or deleted before the observer read them",
        &["serve"]
    ),
    spec!(
        "worker_threads",
        "ORION_BUS_WORKER_THREADS",
        Some("1"),
        "Runtime worker threads; 0 is one per core. One keeps the CPU low; raise it for CPU-heavy handlers (see docs/BENCHMARKS.md)",
        ALL
    ),
    spec!(
        "log_format",
        "ORION_BUS_LOG_FORMAT",
        Some("human"),
        "Log format: human or json",
        ALL
    ),
    spec!(
        "log_level",
        "ORION_BUS_LOG_LEVEL",
        Some("info"),
        "Log filter, e.g. info or orion_bus=debug",
        ALL
    ),
];
