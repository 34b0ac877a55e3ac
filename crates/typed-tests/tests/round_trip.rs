//! Round trips between the generated types and their schemas, for every
//! ORION contract and every example contract:
//!
//! 1. any value of a generated type serialises to JSON its schema accepts;
//! 2. any schema-valid JSON deserialises into the type, and serialises
//!    back to equal JSON (equal as JSON Schema compares: `1` = `1.0`, key
//!    order ignored).
//!
//! Values come from proptest strategies built from each schema
//! (`orion_bus_typed_tests::arbitrary`), not from fixtures. For (1), the
//! values of a type are the values its deserialiser builds from JSON of
//! the schema's shape, with `oneOf` exclusivity not enforced, because the
//! type does not enforce it either.

use std::fmt::Debug;

use jsonschema::error::ValidationErrorKind;
use orion_bus::ContractType;
use orion_bus_typed_tests::arbitrary::{json_equal, values};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Cases per property per contract.
const CASES: u32 = 256;

struct Outcome {
    valid_round_trips: u32,
    typed_values: u32,
    /// Values the type holds that the schema rejects only because they
    /// match several `oneOf` branches.
    ambiguous: u32,
}

fn check<T: ContractType + Debug>(schema: &Value) -> Outcome {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .expect("schema compiles");
    let name = std::any::type_name::<T>();
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };

    // (2) schema-valid JSON → T → equal JSON.
    let valid_round_trips = std::cell::Cell::new(0u32);
    let v = validator.clone();
    let valid_json = values(schema).prop_filter("schema-valid", move |j| v.is_valid(j));
    TestRunner::new(config.clone())
        .run(&valid_json, |json| {
            let typed: T = serde_json::from_value(json.clone()).map_err(|e| {
                TestCaseError::fail(format!("valid JSON does not fit {name}: {e}\n{json:#}"))
            })?;
            let back = serde_json::to_value(&typed)
                .map_err(|e| TestCaseError::fail(format!("{name} does not serialise: {e}")))?;
            prop_assert!(
                json_equal(&json, &back),
                "{name} changed the message:\nin:  {json}\nout: {back}"
            );
            valid_round_trips.set(valid_round_trips.get() + 1);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", T::CONTRACT));

    // (1) any value of T → JSON the schema accepts.
    let typed_values = std::cell::Cell::new(0u32);
    let ambiguous = std::cell::Cell::new(0u32);
    let typed = values(schema).prop_filter_map("a value of the type", |j| {
        serde_json::from_value::<T>(j).ok()
    });
    TestRunner::new(config)
        .run(&typed, |value| {
            let json = serde_json::to_value(&value)
                .map_err(|e| TestCaseError::fail(format!("{name} does not serialise: {e}")))?;
            typed_values.set(typed_values.get() + 1);
            let errors: Vec<_> = validator.iter_errors(&json).collect();
            if errors.is_empty() {
                return Ok(());
            }
            if errors
                .iter()
                .all(|e| matches!(e.kind(), ValidationErrorKind::OneOfMultipleValid { .. }))
            {
                ambiguous.set(ambiguous.get() + 1);
                return Ok(());
            }
            let text: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {e}", e.instance_path().as_str()))
                .collect();
            Err(TestCaseError::fail(format!(
                "a {name} serialises to JSON its schema rejects: {text:?}\n{json:#}"
            )))
        })
        .unwrap_or_else(|e| panic!("{}: {e}", T::CONTRACT));
    Outcome {
        valid_round_trips: valid_round_trips.get(),
        typed_values: typed_values.get(),
        ambiguous: ambiguous.get(),
    }
}

fn report(contract: &str, o: &Outcome) {
    eprintln!(
        "{contract}: {} valid messages round-tripped, {} typed values serialised valid{}",
        o.valid_round_trips,
        o.typed_values - o.ambiguous,
        if o.ambiguous > 0 {
            format!(
                ", {} matched several oneOf branches (the schema's ambiguity)",
                o.ambiguous
            )
        } else {
            String::new()
        }
    );
    assert!(o.valid_round_trips >= CASES, "{contract}: too few cases");
    assert!(o.typed_values >= CASES, "{contract}: too few cases");
}

#[test]
fn example_contract_types_round_trip() {
    use orion_bus_examples::types::{Alert, Command, SensorReading};
    let registry =
        orion_bus_examples::registry(orion_bus::ContractOptions::default()).expect("examples load");
    macro_rules! each {
        ($($t:ty),+) => {{
            let mut seen = Vec::new();
            $(
                let contract = registry.get(<$t>::CONTRACT).expect("known");
                let outcome = check::<$t>(contract.schema());
                report(<$t>::CONTRACT, &outcome);
                assert_eq!(outcome.ambiguous, 0, "example contracts have no ambiguous oneOf");
                seen.push(<$t>::CONTRACT);
            )+
            seen
        }};
    }
    let mut seen = each!(Alert, Command, SensorReading);
    seen.sort_unstable();
    let names: Vec<&str> = registry.names().collect();
    assert_eq!(seen, names, "every example contract is covered");
}

#[cfg(orion_contracts)]
#[test]
fn orion_contract_types_round_trip() {
    use orion_bus_typed_tests::orion::*;
    let dir = orion_bus_typed_tests::ORION_CONTRACTS_DIR.expect("built with contracts");
    let registry = orion_bus::ContractRegistry::load_dir(
        std::path::Path::new(dir),
        orion_bus::ContractOptions::default(),
    )
    .expect("ORION contracts load");
    let mut ambiguous = Vec::new();
    macro_rules! each {
        ($($t:ty),+ $(,)?) => {{
            let mut seen = Vec::new();
            $(
                let contract = registry.get(<$t>::CONTRACT).expect("known");
                let outcome = check::<$t>(contract.schema());
                report(<$t>::CONTRACT, &outcome);
                if outcome.ambiguous > 0 {
                    ambiguous.push(<$t>::CONTRACT);
                }
                seen.push(<$t>::CONTRACT);
            )+
            seen
        }};
    }
    let mut seen = each!(
        OrionAction,
        OrionApproval,
        OrionApprovalDecision,
        OrionApprovalRequest,
        OrionDecision,
        OrionEdgeCommand,
        OrionEdgeHealth,
        OrionEdgeTelemetry,
        OrionEvent,
        OrionIncident,
        InferenceRequest,
        InferenceResponse,
        OrionOutcome,
        OrionCouncilValidation,
    );
    seen.sort_unstable();
    let names: Vec<&str> = registry.names().collect();
    assert_eq!(seen, names, "every ORION contract is covered");
    assert_eq!(seen.len(), 14);
    // Only edge.command's `parameters` is ambiguous: `{}` (and any object
    // of optional fields both branches allow) matches both the stop and
    // the status branch. Anything else would be a new finding.
    assert!(
        ambiguous.iter().all(|c| *c == "edge.command"),
        "unexpected oneOf ambiguity in {ambiguous:?}"
    );
}

#[cfg(not(orion_contracts))]
#[test]
fn orion_contract_types_round_trip() {
    eprintln!(
        "SKIPPED: the ORION contracts folder (../shared/orion-contracts or ORION_CONTRACTS_DIR) \
         was absent at build time, so their types were not generated"
    );
}
