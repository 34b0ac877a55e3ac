//! ORION's 14 real contracts, read from `../shared/orion-contracts` (never
//! copied here): every one loads, a hand-written valid message of each
//! passes, and every class of violation its schema can express is rejected
//! at the right JSON Pointer. The violations are derived from the schema
//! itself (required, additionalProperties, const, enum, format, pattern,
//! minLength, minItems, minimum, maximum, oneOf, type), so a keyword added
//! to a contract is exercised without editing this file.

mod common;

use std::collections::BTreeMap;

use orion_bus::{ContractError, ContractOptions, ContractRegistry};
use serde_json::{Value, json};

const UUID: &str = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b";
const UUID2: &str = "7d9e1f2a-3b4c-4d5e-9f6a-7b8c9d0e1f2a";
const TS: &str = "2026-11-24T10:15:30Z";

/// One valid message per contract, including optional fields in some.
fn samples() -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        (
            "action",
            json!({
                "version": "1.0", "action_id": UUID, "timestamp": TS, "source": "orion-brain",
                "decision_id": UUID2, "action_type": "restart_service", "safety_classification": "SAFE",
                "state": "pending", "parameters": {"service": "nginx"}, "approval_id": UUID,
                "rollback_enabled": true, "dry_run": false, "tags": {"host": "pi"}
            }),
        ),
        (
            "approval",
            json!({
                "version": "1.0", "approval_id": UUID, "timestamp": TS, "source": "orion-approval-telegram",
                "decision_id": UUID2, "status": "approved", "approved_by": "admin",
                "expiry_timestamp": "2026-11-24T11:00:00+01:00", "reason": "looks fine"
            }),
        ),
        (
            "approval_decision",
            json!({
                "version": "1.0", "approval_id": UUID, "timestamp": TS, "source": "orion-approval-cli",
                "approval_request_id": UUID2, "decision_id": UUID, "action_id": UUID2, "decision": "approve",
                "admin_identity": "admin@pi", "reason": "expected maintenance", "issued_at": TS,
                "expires_at": "2026-11-24T10:45:30Z", "override_circuit_breaker": false
            }),
        ),
        (
            "approval_request",
            json!({
                "version": "1.0", "approval_request_id": UUID, "timestamp": TS, "source": "orion-brain",
                "decision_id": UUID2, "action_type": "restart_service", "risk_level": "RISKY",
                "requested_action": {
                    "action_type": "restart_service", "parameters": {"service": "db"},
                    "reasoning": "database unresponsive for 5 minutes"
                },
                "expires_at": "2026-11-24T10:20:30Z", "incident_id": UUID
            }),
        ),
        (
            "decision",
            json!({
                "version": "1.0", "decision_id": UUID, "timestamp": TS, "source": "orion-brain",
                "incident_id": UUID2, "decision_type": "EXECUTE_SAFE_ACTION", "safety_classification": "SAFE",
                "requires_approval": false,
                "proposed_action": {"action_type": "restart_service", "parameters": {"service": "nginx"}},
                "reasoning": "nginx is down and restarting it is safe", "autonomy_level": "N2"
            }),
        ),
        (
            "edge.command",
            json!({
                "version": "1.0", "command_id": UUID, "timestamp": TS, "source": "orion-commander",
                "command_type": "MOVE", "device_id": "hexapod-1",
                "parameters": {"direction": "forward", "speed": 0.5, "duration_ms": 1000},
                "priority": "HIGH", "expires_at": "2026-11-24T10:16:00Z"
            }),
        ),
        (
            "edge.health",
            json!({
                "version": "1.0", "health_id": UUID, "timestamp": TS, "source": "orion-edge-hexapod-1",
                "device_id": "hexapod-1", "state": "RUNNING", "uptime_seconds": 3600,
                "last_command_id": UUID2,
                "connection_status": {"mqtt_connected": true, "redis_connected": true, "last_brain_contact": TS},
                "safety_state": {"dead_man_switch_active": true, "watchdog_remaining_ms": 500, "in_safe_position": false},
                "errors": []
            }),
        ),
        (
            "edge.telemetry",
            json!({
                "version": "1.0", "telemetry_id": UUID, "timestamp": TS, "source": "orion-edge-hexapod-1",
                "device_id": "hexapod-1", "telemetry_type": "BATTERY",
                "value": {"level": 80, "voltage": 7.4, "charging": false}
            }),
        ),
        (
            "event",
            json!({
                "version": "1.0", "event_id": UUID, "timestamp": TS, "source": "orion-guardian",
                "event_type": "service_down", "severity": "error", "data": {"service": "nginx"},
                "tags": {"host": "pi"}
            }),
        ),
        (
            "incident",
            json!({
                "version": "1.0", "incident_id": UUID, "timestamp": TS, "source": "orion-guardian",
                "incident_type": "service_outage", "severity": "high", "event_ids": [UUID2],
                "correlation_window": {"start": "2026-11-24T10:10:00Z", "end": TS},
                "state": "open", "description": "nginx down"
            }),
        ),
        (
            "inference.request",
            json!({
                "version": "1.0", "request_id": UUID, "model": "llama3",
                "messages": [{"role": "user", "content": "Is nginx down?"}],
                "timestamp": TS, "source": "orion-council", "keep_alive_seconds": 600
            }),
        ),
        (
            "inference.response",
            json!({
                "version": "1.0", "request_id": UUID, "model": "llama3", "timestamp": TS,
                "source": "orion-ollama", "response": "Yes.", "prompt_tokens": 12, "completion_tokens": 2,
                "load_duration_ms": 0, "total_duration_ms": 850
            }),
        ),
        (
            "outcome",
            json!({
                "version": "1.0", "outcome_id": UUID, "timestamp": TS, "source": "orion-commander",
                "action_id": UUID2, "status": "failed", "execution_time_ms": 1200,
                "error": {"code": "E_TIMEOUT", "message": "service did not come back"},
                "rollback_executed": false
            }),
        ),
        (
            "validation",
            json!({
                "version": "1.0", "validation_id": UUID, "decision_id": UUID2, "result": "APPROVED",
                "confidence": 0.92, "critique": "sound", "validators_used": ["local", "claude"],
                "timestamp": TS, "source": "orion-council", "escalated_to_admin": false
            }),
        ),
    ])
}

fn registry(dir: &std::path::Path, assert_formats: bool) -> ContractRegistry {
    ContractRegistry::load_dir(
        dir,
        ContractOptions::default().assert_formats(assert_formats),
    )
    .unwrap_or_else(|e| panic!("ORION contracts load: {e}"))
}

/// One derived violation: a mutated message and where it must be reported.
struct Case {
    class: &'static str,
    what: String,
    message: Value,
    path: String,
    keyword: &'static str,
}

/// Walks `schema` over the part of `sample` at `path` and derives one
/// violating message per applicable keyword.
fn derive(root: &Value, schema: &Value, path: &str, out: &mut Vec<Case>) {
    let Some(here) = root.pointer(path).and_then(Value::as_object) else {
        return;
    };
    let mut mutate = |class: &'static str,
                      keyword: &'static str,
                      at: String,
                      what: String,
                      f: &dyn Fn(&mut Value)| {
        let mut message = root.clone();
        if let Some(target) = message.pointer_mut(&at) {
            f(target);
        }
        out.push(Case {
            class,
            what,
            message,
            path: at,
            keyword,
        });
    };
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        mutate(
            "unknown field",
            "additionalProperties",
            path.to_owned(),
            format!("{path}/+unexpected"),
            &|v| {
                v["unexpected_field"] = json!(1);
            },
        );
    }
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(key) = req.as_str() else { continue };
        if here.contains_key(key) {
            let k = key.to_owned();
            mutate(
                "missing required field",
                "required",
                path.to_owned(),
                format!("{path}/-{key}"),
                &move |v| {
                    if let Some(o) = v.as_object_mut() {
                        o.remove(&k);
                    }
                },
            );
        }
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let mut nested = Vec::new();
    for (key, p) in props {
        if !here.contains_key(key) {
            continue;
        }
        let at = format!("{path}/{key}");
        if p.get("const").is_some() {
            mutate("wrong const", "const", at.clone(), at.clone(), &|v| {
                *v = json!("9.9")
            });
        }
        if p.get("enum").is_some() {
            mutate("value outside enum", "enum", at.clone(), at.clone(), &|v| {
                *v = json!("__not_in_enum__")
            });
        }
        match p.get("format").and_then(Value::as_str) {
            Some("uuid") => mutate("bad uuid", "format", at.clone(), at.clone(), &|v| {
                *v = json!("12345")
            }),
            Some("date-time") => {
                mutate("bad date-time", "format", at.clone(), at.clone(), &|v| {
                    *v = json!("yesterday")
                });
            }
            _ => {}
        }
        if p.get("pattern").is_some() {
            mutate(
                "pattern mismatch",
                "pattern",
                at.clone(),
                at.clone(),
                &|v| *v = json!("!! NO MATCH !!"),
            );
        }
        if p.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 0)
        {
            mutate("minLength", "minLength", at.clone(), at.clone(), &|v| {
                *v = json!("")
            });
        }
        if p.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 0)
        {
            mutate("minItems", "minItems", at.clone(), at.clone(), &|v| {
                *v = json!([])
            });
        }
        if let Some(min) = p.get("minimum").and_then(Value::as_f64) {
            let below = if p.get("type") == Some(&json!("integer")) {
                json!(min as i64 - 1)
            } else {
                json!(min - 0.5)
            };
            mutate("minimum", "minimum", at.clone(), at.clone(), &move |v| {
                *v = below.clone()
            });
        }
        if let Some(max) = p.get("maximum").and_then(Value::as_f64) {
            let above = if p.get("type") == Some(&json!("integer")) {
                json!(max as i64 + 1)
            } else {
                json!(max + 0.5)
            };
            mutate("maximum", "maximum", at.clone(), at.clone(), &move |v| {
                *v = above.clone()
            });
        }
        if p.get("oneOf").is_some() {
            mutate("oneOf mismatch", "oneOf", at.clone(), at.clone(), &|v| {
                *v = json!({"matches_no_branch": true})
            });
        }
        match p.get("type").and_then(Value::as_str) {
            Some("string") => mutate("wrong type", "type", at.clone(), at.clone(), &|v| {
                *v = json!(12345)
            }),
            Some("integer" | "number" | "boolean" | "array") => {
                mutate("wrong type", "type", at.clone(), at.clone(), &|v| {
                    *v = json!("a string")
                });
            }
            Some("object") if p.get("oneOf").is_none() => {
                mutate("wrong type", "type", at.clone(), at.clone(), &|v| {
                    *v = json!([1, 2])
                });
            }
            _ => {}
        }
        if p.get("properties").is_some() {
            nested.push((p, at.clone()));
        }
        if let Some(items) = p.get("items")
            && items.get("properties").is_some()
        {
            nested.push((items, format!("{at}/0")));
        }
    }
    for (sub, at) in nested {
        derive(root, sub, &at, out);
    }
}

#[test]
fn all_fourteen_contracts_load_by_file_name() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let reg = registry(&dir, true);
    assert_eq!(
        reg.names().collect::<Vec<_>>(),
        [
            "action",
            "approval",
            "approval_decision",
            "approval_request",
            "decision",
            "edge.command",
            "edge.health",
            "edge.telemetry",
            "event",
            "incident",
            "inference.request",
            "inference.response",
            "outcome",
            "validation",
        ]
    );
    for c in reg.iter() {
        assert_eq!(c.version(), Some("1.0"), "{} pins version 1.0", c.name());
    }
}

#[test]
fn every_contract_has_a_sample_here() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let reg = registry(&dir, true);
    let samples = samples();
    for name in reg.names() {
        assert!(
            samples.contains_key(name),
            "contract {name} has no valid sample in this test: add one"
        );
    }
}

#[test]
fn valid_samples_pass() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let reg = registry(&dir, true);
    for (name, msg) in samples() {
        let c = reg.get(name).expect("known contract");
        c.validate(&msg)
            .unwrap_or_else(|v| panic!("{name} sample should be valid: {v}"));
    }
}

#[test]
fn every_applicable_violation_is_rejected_at_its_path() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let reg = registry(&dir, true);
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, sample) in samples() {
        let c = reg.get(name).expect("known contract");
        let mut cases = Vec::new();
        derive(&sample, c.schema(), "", &mut cases);
        assert!(
            cases.len() >= 10,
            "{name}: only {} cases derived",
            cases.len()
        );
        for case in cases {
            let err = c.validate(&case.message).expect_err(&format!(
                "{name}: {} ({}) must be rejected",
                case.class, case.what
            ));
            assert!(
                err.iter()
                    .any(|v| v.instance_path == case.path && v.schema_path.ends_with(case.keyword)),
                "{name}: {} ({}) should be reported at {:?} by {:?}, got: {:?}",
                case.class,
                case.what,
                case.path,
                case.keyword,
                err.iter()
                    .map(|v| (&v.instance_path, &v.schema_path))
                    .collect::<Vec<_>>()
            );
            *classes.entry(case.class).or_default() += 1;
        }
    }
    for class in [
        "missing required field",
        "unknown field",
        "wrong const",
        "value outside enum",
        "bad uuid",
        "bad date-time",
        "pattern mismatch",
        "minLength",
        "minItems",
        "minimum",
        "maximum",
        "oneOf mismatch",
        "wrong type",
    ] {
        assert!(
            classes.get(class).copied().unwrap_or(0) > 0,
            "no {class} case was exercised: {classes:?}"
        );
    }
}

#[test]
fn oneof_branches_of_edge_telemetry_and_edge_command() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let reg = registry(&dir, true);
    let telemetry = reg.get("edge.telemetry").expect("contract");
    let base = samples()["edge.telemetry"].clone();
    for value in [
        json!({"x": 1.0, "y": 2.0, "z": 0.1, "heading": 90}),
        json!({"level": 50, "voltage": 7.1, "charging": true}),
        json!({"cpu_temp": 55.0, "motor_temp": 40.5}),
        json!({"servo_id": 17, "angle": 12.5, "load": 0.3}),
        json!({"connected": true, "latency_ms": 12, "last_heartbeat": TS}),
    ] {
        let mut msg = base.clone();
        msg["value"] = value.clone();
        telemetry
            .validate(&msg)
            .unwrap_or_else(|v| panic!("{value} is a valid branch: {v}"));
    }
    for bad in [
        json!({"level": 101, "voltage": 7.1, "charging": true}),
        json!({"servo_id": 18, "angle": 0, "load": 0.5}),
        json!({"connected": true, "latency_ms": 1, "last_heartbeat": "never"}),
        json!({"level": 50, "voltage": 7.1, "charging": true, "extra": 1}),
    ] {
        let mut msg = base.clone();
        msg["value"] = bad.clone();
        let err = telemetry
            .validate(&msg)
            .expect_err(&format!("{bad} matches no branch"));
        assert!(
            err.iter().any(|v| v.instance_path == "/value"),
            "{bad}: {err}"
        );
    }
    // An empty `parameters` object matches both the STOP and the STATUS
    // branch of edge.command, so `oneOf` rejects it: as the contract is
    // written, a STATUS command must omit `parameters`.
    let command = reg.get("edge.command").expect("contract");
    let mut msg = samples()["edge.command"].clone();
    msg["parameters"] = json!({});
    assert!(
        command.validate(&msg).is_err(),
        "{{}} matches two oneOf branches"
    );
    msg["parameters"] = json!({"reason": "operator"});
    command.validate(&msg).expect("STOP parameters");
    msg.as_object_mut().expect("object").remove("parameters");
    command.validate(&msg).expect("parameters are optional");
}

#[test]
fn every_violation_is_reported_not_just_the_first() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let reg = registry(&dir, true);
    let mut msg = samples()["incident"].clone();
    msg["severity"] = json!("apocalyptic");
    msg["event_ids"] = json!([]);
    msg["correlation_window"]["start"] = json!("last tuesday");
    msg["source"] = json!("orion-brain");
    msg.as_object_mut().expect("object").remove("state");
    let err = reg
        .get("incident")
        .expect("contract")
        .validate(&msg)
        .expect_err("invalid");
    let paths: Vec<&str> = err.iter().map(|v| v.instance_path.as_str()).collect();
    for want in [
        "/severity",
        "/event_ids",
        "/correlation_window/start",
        "/source",
        "",
    ] {
        assert!(paths.contains(&want), "{want} missing from {err}");
    }
    assert!(err.len() >= 5, "{err}");
}

#[test]
fn formats_are_asserted_by_default_and_can_be_relaxed() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let strict = registry(&dir, true);
    let lenient = registry(&dir, false);
    let mut msg = samples()["event"].clone();
    msg["event_id"] = json!("12345");
    msg["timestamp"] = json!("yesterday");
    let err = strict
        .get("event")
        .expect("contract")
        .validate(&msg)
        .expect_err("strict");
    assert_eq!(err.len(), 2, "{err}");
    lenient
        .get("event")
        .expect("contract")
        .validate(&msg)
        .expect("lenient, like the Python bus's Draft202012Validator without a format checker");
    // Everything but formats is still enforced when lenient.
    msg["severity"] = json!("meh");
    assert!(
        lenient
            .get("event")
            .expect("contract")
            .validate(&msg)
            .is_err()
    );
}

#[test]
fn an_unknown_contract_is_an_error() {
    let Some(dir) = common::orion_contracts_dir() else {
        return;
    };
    let err = registry(&dir, true).get("events").expect_err("unknown");
    assert!(matches!(err, ContractError::Unknown { .. }), "{err:?}");
    assert!(err.to_string().contains("known contracts: action"), "{err}");
}
