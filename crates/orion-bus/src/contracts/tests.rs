//! Tests of contracts: loading, versions, names and violations.

use super::contract::version_order;
use super::*;
use serde_json::json;

const SCHEMA: &str = r#"{
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "id", "at"],
    "additionalProperties": false,
    "properties": {
        "version": {"const": "1.0"},
        "id": {"type": "string", "format": "uuid"},
        "at": {"type": "string", "format": "date-time"}
    }
}"#;

fn registry(assert_formats: bool) -> ContractRegistry {
    ContractRegistry::from_sources(
        [("thing", SCHEMA)],
        ContractOptions::default().assert_formats(assert_formats),
    )
    .expect("compiles")
}

#[test]
fn reports_every_violation_with_its_path() {
    let reg = registry(true);
    let c = reg.get("thing").expect("known");
    assert_eq!(c.version(), Some("1.0"));
    let err = c
        .validate(&json!({"version": "2.0", "id": "nope", "at": "yesterday", "extra": 1}))
        .expect_err("invalid");
    let paths: Vec<&str> = err.iter().map(|v| v.instance_path.as_str()).collect();
    assert!(paths.contains(&"/version"), "{err}");
    assert!(paths.contains(&"/id"), "{err}");
    assert!(paths.contains(&"/at"), "{err}");
    assert!(paths.contains(&""), "additionalProperties at root: {err}");
    assert_eq!(err.len(), 4, "{err}");
}

#[test]
fn formats_can_be_relaxed() {
    let msg = json!({"version": "1.0", "id": "nope", "at": "yesterday"});
    assert!(
        registry(true)
            .get("thing")
            .expect("k")
            .validate(&msg)
            .is_err()
    );
    assert!(
        registry(false)
            .get("thing")
            .expect("k")
            .validate(&msg)
            .is_ok()
    );
}

#[test]
fn unknown_contract_names_the_known_ones() {
    let err = registry(true).get("nope").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown contract \"nope\"; known contracts: thing"
    );
}

#[test]
fn invalid_schema_names_its_origin() {
    let err =
        ContractRegistry::from_sources([("bad", r#"{"type": 12}"#)], ContractOptions::default())
            .expect_err("invalid schema");
    assert!(err.to_string().contains("bad.schema.json"), "{err}");
    let err = ContractRegistry::from_sources([("bad", "{")], ContractOptions::default())
        .expect_err("not json");
    assert!(matches!(err, ContractError::Parse { .. }), "{err}");
}

#[test]
fn names_must_be_key_safe() {
    let err = ContractRegistry::from_sources([("a b", SCHEMA)], ContractOptions::default())
        .expect_err("space");
    assert!(matches!(err, ContractError::BadName { .. }), "{err}");
}

fn event(version: &str, extra_required: bool) -> String {
    let required = if extra_required { r#", "origin""# } else { "" };
    format!(
        r#"{{"type": "object", "required": ["version", "id"{required}], "additionalProperties": false,
           "properties": {{"version": {{"const": "{version}"}}, "id": {{"type": "integer"}}, "origin": {{"type": "string"}}}}}}"#
    )
}

#[test]
fn versions_live_side_by_side_and_the_message_picks_one() {
    let (v1, v2) = (event("1.0", false), event("2.0", true));
    // Loading order must not matter.
    for sources in [
        [("event", v1.as_str()), ("event@2.0", v2.as_str())],
        [("event@2.0", v2.as_str()), ("event", v1.as_str())],
    ] {
        let reg =
            ContractRegistry::from_sources(sources, ContractOptions::default()).expect("compiles");
        assert_eq!(reg.len(), 1);
        let c = reg.get("event").expect("known");
        let names: Vec<_> = c.versions().iter().map(|v| v.version()).collect();
        assert_eq!(names, [Some("1.0"), Some("2.0")]);
        assert_eq!(c.version(), Some("2.0"), "newest");
        assert!(c.validate(&json!({"version": "1.0", "id": 1})).is_ok());
        let err = c
            .validate(&json!({"version": "2.0", "id": 1}))
            .expect_err("2.0 requires origin");
        assert!(err.to_string().contains("origin"), "{err}");
        assert!(
            c.validate(&json!({"version": "2.0", "id": 1, "origin": "x"}))
                .is_ok()
        );
        let err = c
            .validate(&json!({"version": "3.0", "id": 1}))
            .expect_err("unknown version");
        assert_eq!(err.len(), 1);
        assert_eq!(err.0[0].instance_path, "/version");
        assert!(
            err.to_string()
                .contains("\"3.0\" is not a known version of event (known: 1.0, 2.0)"),
            "{err}"
        );
        assert!(!c.is_valid(&json!({"id": 1})));
        let err = c.validate(&json!({"id": 1})).expect_err("no version");
        assert!(err.to_string().contains("\"version\" is required"), "{err}");
    }
}

#[test]
fn version_files_must_agree_and_be_unique() {
    let v1 = event("1.0", false);
    let err =
        ContractRegistry::from_sources([("event@2.0", v1.as_str())], ContractOptions::default())
            .expect_err("name says 2.0, schema says 1.0");
    assert!(err.to_string().contains("event@2.0.schema.json"), "{err}");
    assert!(err.to_string().contains("says version 2.0"), "{err}");
    let err = ContractRegistry::from_sources(
        [("event", v1.as_str()), ("event@1.0", v1.as_str())],
        ContractOptions::default(),
    )
    .expect_err("twice");
    assert!(err.to_string().contains("defined twice"), "{err}");
    let unpinned = r#"{"type": "object"}"#;
    let err = ContractRegistry::from_sources(
        [("event", unpinned), ("event@1.0", v1.as_str())],
        ContractOptions::default(),
    )
    .expect_err("unpinned sibling");
    assert!(err.to_string().contains("must pin"), "{err}");
}

#[test]
fn versions_sort_numerically() {
    assert!(version_order("1.10", "1.9").is_gt());
    assert!(version_order("2.0", "10.0").is_lt());
    assert!(version_order("1.0", "1.0.1").is_lt());
}

#[test]
fn long_messages_are_cut() {
    let s = truncate("é".repeat(400), MAX_VIOLATION_MESSAGE);
    assert!(s.len() <= MAX_VIOLATION_MESSAGE + 3);
    assert!(s.ends_with("..."));
}
