//! Tests of settings resolution: precedence, defaults, every problem at
//! once, TLS files, and the README's settings table.
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
    let readme = include_str!("../../../../README.md");
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
    let err =
        resolve(&Given::new(), Some(Path::new("/nonexistent/orion.toml"))).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/orion.toml"));
}
