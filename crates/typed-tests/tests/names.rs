//! Generated names stay distinct when contracts collide: three contracts
//! titled `Alert` get types named after their contracts, and a contract
//! named `type` gets the module `type_`. That this file compiles is half
//! the test; the other half checks each type maps to its own contract.

use orion_bus::typed::Accept;
use orion_bus::{ContractOptions, ContractRegistry, ContractType};
use orion_bus_typed_tests::clashes::{
    Alarm, Alert, BeaconAny, BeaconV1_0, BeaconV2_0, Record, alarm, type_,
};
use serde_json::json;

fn registry() -> ContractRegistry {
    ContractRegistry::load_dir(
        &orion_bus_typed_tests::clashes_dir(),
        ContractOptions::default(),
    )
    .expect("clashes contracts")
}

#[test]
fn each_clashing_type_names_its_own_contract() {
    assert_eq!(
        [
            (Alarm::CONTRACT, Alarm::VERSION),
            (Alert::CONTRACT, Alert::VERSION),
            (BeaconV1_0::CONTRACT, BeaconV1_0::VERSION),
            (BeaconV2_0::CONTRACT, BeaconV2_0::VERSION),
            (Record::CONTRACT, Record::VERSION),
        ],
        [
            ("alarm", Some("1.0")),
            ("alert", Some("1.0")),
            ("beacon", Some("1.0")),
            ("beacon", Some("2.0")),
            ("type", Some("1.0")),
        ]
    );
}

#[test]
fn clashing_types_carry_their_own_fields_and_validate() {
    let registry = registry();
    // The modules keep the schema's title inside; the export renames it.
    let renamed: alarm::Alert = Alarm {
        siren: "s".into(),
        version: "1.0".into(),
    };
    // A `const` without `"type": "string"` is still a string, not a Value.
    let _: &String = &renamed.version;
    let _: type_::Record = Record {
        kind: "k".into(),
        version: "1.0".into(),
    };
    let values = [
        (
            "alarm",
            serde_json::to_value(Alarm {
                siren: "loud".into(),
                version: "1.0".into(),
            }),
        ),
        (
            "alert",
            serde_json::to_value(Alert {
                text: "disk full".into(),
                version: "1.0".into(),
            }),
        ),
        (
            "beacon",
            serde_json::to_value(BeaconV2_0 {
                light: "red".into(),
                version: "2.0".into(),
            }),
        ),
        (
            "type",
            serde_json::to_value(Record {
                kind: "plain".into(),
                version: "1.0".into(),
            }),
        ),
    ];
    for (contract, value) in values {
        let value = value.expect("serialises");
        registry
            .get(contract)
            .map(|c| c.validate(&value))
            .expect("known contract")
            .unwrap_or_else(|e| panic!("{contract}: {value} is invalid: {e}"));
    }
    let any = BeaconAny::from_message(
        "beacon",
        Some("1.0"),
        json!({"version": "1.0", "light": "green"}),
    )
    .expect("beacon is accepted")
    .expect("version 1.0 decodes");
    assert!(matches!(any, BeaconAny::V1_0(BeaconV1_0 { ref light, .. }) if light == "green"));
}
