//! Each subcommand's `--help` lists exactly the settings it uses, and a
//! setting's flag given to a subcommand that does not use it is refused
//! with a note, while its environment variable is accepted.

mod common;

use common::{cmd, text};

/// The flags under the "Settings:" heading of `args... --help`.
fn settings_in_help(args: &[&str]) -> Vec<String> {
    let out = cmd(None).args(args).arg("--help").output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    let Some((_, section)) = help.split_once("\nSettings:\n") else {
        return Vec::new();
    };
    section
        .lines()
        .filter_map(|l| l.strip_prefix("      --"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

const CONNECTION: &[&str] = &[
    "redis-url",
    "redis-username",
    "redis-password",
    "redis-db",
    "connect-timeout",
    "command-timeout",
    "tls-ca-file",
    "tls-cert-file",
    "tls-key-file",
    "tls-insecure",
];
const PROCESS: &[&str] = &["worker-threads", "log-format", "log-level"];

fn expected(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| (*s).to_owned()))
        .collect()
}

#[test]
fn publish_help_lists_the_publishing_settings() {
    let found = settings_in_help(&["publish"]);
    assert_eq!(
        found,
        expected(&[
            CONNECTION,
            &[
                "contracts-dir",
                "assert-formats",
                "prefix",
                "max-len",
                "max-message-bytes",
                "retention",
                "hard-cap",
                "publish-retry-budget",
                "json-style",
            ],
            PROCESS,
        ])
    );
    assert!(!found.iter().any(|f| f == "claim-idle"));
}

#[test]
fn consume_help_lists_the_consumer_settings() {
    let found = settings_in_help(&["consume"]);
    assert_eq!(
        found,
        expected(&[
            CONNECTION,
            &[
                "contracts-dir",
                "assert-formats",
                "prefix",
                "max-message-bytes",
                "publish-retry-budget",
                "concurrency",
                "max-in-flight",
                "read-count",
                "block",
                "start-id",
                "on-error",
                "max-deliveries",
                "retry-backoff",
                "retry-backoff-max",
                "claim-idle",
                "stale-consumer-after",
                "housekeeping-interval",
                "wait-for-name",
                "idempotency-key",
                "idempotency-ttl",
                "shutdown-grace",
                "http-addr",
            ],
            PROCESS,
        ])
    );
}

#[test]
fn offline_and_operator_helps_are_short() {
    assert_eq!(
        settings_in_help(&["validate"]),
        expected(&[&["contracts-dir", "assert-formats"], PROCESS])
    );
    assert_eq!(
        settings_in_help(&["codegen"]),
        expected(&[&["contracts-dir"], PROCESS])
    );
    assert_eq!(
        settings_in_help(&["dlq", "show"]),
        expected(&[
            CONNECTION,
            &[
                "contracts-dir",
                "assert-formats",
                "prefix",
                "publish-retry-budget"
            ],
            PROCESS,
        ])
    );
    let serve = settings_in_help(&["serve"]);
    assert!(serve.iter().any(|f| f == "observe-check-interval"));
    assert!(serve.iter().any(|f| f == "http-addr"));
    assert!(!serve.iter().any(|f| f == "claim-idle"));
}

#[test]
fn another_subcommands_flag_is_refused_but_its_env_var_accepted() {
    // `validate` does not use --claim-idle: refused, with a note.
    let out = cmd(None)
        .args(["validate", "alert", "--claim-idle", "1s"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--claim-idle is a setting of: consume, bench"),
        "{err}"
    );
    // A setting before the subcommand's name is refused the same way.
    let out = cmd(None)
        .args(["--redis-url", "redis://x", "status"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--redis-url is a setting of:"));
    // From the environment it is accepted (and still checked).
    let out = common::run(
        cmd(None)
            .args(["validate", "alert"])
            .env("ORION_BUS_CLAIM_IDLE", "1s"),
        &common::sample("alert", 1),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = common::run(
        cmd(None)
            .args(["validate", "alert"])
            .env("ORION_BUS_CLAIM_IDLE", "soon"),
        &common::sample("alert", 1),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("ORION_BUS_CLAIM_IDLE"));
}
