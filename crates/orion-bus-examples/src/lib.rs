//! The project's own example contracts, embedded.
//!
//! Owns the list of example schemas shipped in the repository's
//! `contracts/` directory (`sensor.reading`, `alert`, `command`), used by
//! the demo, the benchmarks, the docs and the tests, and a generator of
//! valid sample messages for them. [`types`] holds the Rust types generated
//! from them by `orion-bus codegen` (a test in `orion-bus-codegen` fails
//! when it goes stale). Not part of the bus: `orion-bus` does not depend on
//! this crate.

#[rustfmt::skip]
pub mod types;

use serde_json::{Value, json};

use orion_bus::{ContractError, ContractOptions, ContractRegistry};

/// `(contract name, schema text)` for every example contract.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "alert",
        include_str!("../../../contracts/alert.schema.json"),
    ),
    (
        "command",
        include_str!("../../../contracts/command.schema.json"),
    ),
    (
        "sensor.reading",
        include_str!("../../../contracts/sensor.reading.schema.json"),
    ),
];

/// A registry of the example contracts.
///
/// # Errors
/// Never for the shipped schemas (a test checks they compile).
pub fn registry(options: ContractOptions) -> Result<ContractRegistry, ContractError> {
    ContractRegistry::from_sources(SOURCES.iter().copied(), options)
}

/// A deterministic UUID-shaped id for sample `n` (version 4 layout).
#[must_use]
pub fn sample_uuid(n: u64) -> String {
    let hex = format!(
        "{:032x}",
        u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    );
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A valid `sensor.reading` message.
#[must_use]
pub fn sensor_reading(n: u64) -> Value {
    let sensors = ["temperature", "humidity", "power"];
    json!({
        "version": "1.0",
        "reading_id": sample_uuid(n),
        "timestamp": "2026-11-24T10:00:00Z",
        "source": format!("sensor-{}", n % 7),
        "sensor": sensors[(n % 3) as usize],
        "value": 20.5 + (n % 10) as f64,
        "tags": {"room": "lab"}
    })
}

/// A valid `alert` message.
#[must_use]
pub fn alert(n: u64) -> Value {
    json!({
        "version": "1.0",
        "alert_id": sample_uuid(1_000_000 + n),
        "timestamp": "2026-11-24T10:00:01Z",
        "severity": if n.is_multiple_of(5) { "critical" } else { "warning" },
        "reading_ids": [sample_uuid(n)],
        "summary": format!("reading {n} crossed its threshold"),
        "threshold": {"limit": 25.0, "observed": 26.5}
    })
}

/// A valid `command` message.
#[must_use]
pub fn command(n: u64) -> Value {
    json!({
        "version": "1.0",
        "command_id": sample_uuid(2_000_000 + n),
        "timestamp": "2026-11-24T10:00:02Z",
        "alert_id": sample_uuid(1_000_000 + n),
        "target": "hvac",
        "action": "notify",
        "timeout_s": 30
    })
}

/// A valid sample of the named example contract.
#[must_use]
pub fn sample(contract: &str, n: u64) -> Option<Value> {
    match contract {
        "sensor.reading" => Some(sensor_reading(n)),
        "alert" => Some(alert(n)),
        "command" => Some(command(n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_compile_and_samples_are_valid() {
        let reg = registry(ContractOptions::default()).expect("examples compile");
        assert_eq!(
            reg.names().collect::<Vec<_>>(),
            ["alert", "command", "sensor.reading"]
        );
        for name in ["sensor.reading", "alert", "command"] {
            let c = reg.get(name).expect("known");
            for n in 0..20 {
                let msg = sample(name, n).expect("sample");
                c.validate(&msg)
                    .unwrap_or_else(|v| panic!("{name} #{n}: {v}"));
            }
        }
    }

    #[test]
    fn embedded_list_covers_the_contracts_dir() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
        let on_disk = ContractRegistry::load_dir(&dir, ContractOptions::default()).expect("loads");
        let embedded = registry(ContractOptions::default()).expect("compiles");
        assert_eq!(
            on_disk.names().collect::<Vec<_>>(),
            embedded.names().collect::<Vec<_>>(),
            "every file in contracts/ must be listed in SOURCES"
        );
    }
}
