//! Tests of Redis settings: URLs, redaction and TLS files.

use super::*;

#[test]
fn redacts_passwords() {
    assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(redact_url("rediss://:secret@h"), "rediss://:***@h");
    assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    let s = RedisSettings {
        password: Some("pw".into()),
        ..RedisSettings::new("redis://x:pw@h")
    };
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("pw"), "{dbg}");
}

#[test]
fn accepts_tls_urls_and_rejects_garbage() {
    assert!(RedisSettings::new("rediss://h:6380").client().is_ok());
    assert!(
        RedisSettings::new("rediss://h:6380/#insecure")
            .client()
            .is_ok()
    );
    assert!(RedisSettings::new("http://h").client().is_err());
}

fn tls_problem(settings: &RedisSettings) -> String {
    match settings.client() {
        Err(ConnectError::Tls { problem, .. }) => problem,
        Err(other) => panic!("not a TLS error: {other}"),
        Ok(_) => panic!("accepted: {settings:?}"),
    }
}

#[test]
fn unusable_tls_settings_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let missing = dir.path().join("missing.pem");

    let p = tls_problem(&RedisSettings::new("rediss://h").tls_ca_file(&missing));
    assert!(
        p.starts_with("tls_ca_file ") && p.contains("missing.pem"),
        "{p}"
    );
    let p = tls_problem(&RedisSettings::new("rediss://h").tls_ca_file(&empty));
    assert!(p.contains("no PEM certificate"), "{p}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let p = tls_problem(&RedisSettings::new("rediss://h").tls_ca_file(&garbage));
    assert!(p.contains("not a usable X.509 certificate"), "{p}");
    let p = tls_problem(&RedisSettings::new("redis://h").tls_insecure(true));
    assert!(p.contains("rediss://"), "{p}");
    let p = tls_problem(
        &RedisSettings::new("rediss://h")
            .tls_ca_file(&empty)
            .tls_insecure(true),
    );
    assert!(p.contains("set only one"), "{p}");
    let mut half = RedisSettings::new("rediss://h");
    half.tls_cert_file = Some(empty.clone());
    let p = tls_problem(&half);
    assert!(p.contains("needs tls_key_file"), "{p}");
    let p = tls_problem(&RedisSettings::new("rediss://h").tls_client_cert(&empty, &missing));
    assert!(p.contains("tls_cert_file"), "{p}");
}

#[test]
fn insecure_from_the_setting_or_the_url() {
    assert!(RedisSettings::new("rediss://h/#insecure").is_insecure());
    assert!(
        RedisSettings::new("rediss://h")
            .tls_insecure(true)
            .is_insecure()
    );
    assert!(!RedisSettings::new("rediss://h").is_insecure());
    assert!(
        RedisSettings::new("rediss://h")
            .tls_insecure(true)
            .client()
            .is_ok()
    );
}
