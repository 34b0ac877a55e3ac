//! Typed contracts end to end, as a user's crate would use them: types
//! generated at build time by `orion-bus-codegen` (see `build.rs`) from
//! ORION's 14 contracts ([`orion`]) and from a test set with two versions
//! of one contract ([`versioned`]) and from contracts whose names clash
//! ([`clashes`]), plus [`arbitrary`]: proptest strategies
//! that produce JSON from a schema, for the round-trip tests.
//!
//! When ORION's contracts folder is absent, [`orion`] is absent too
//! ([`ORION_CONTRACTS_DIR`] is `None`) and the tests report that they
//! skipped.

pub mod arbitrary;

/// Where ORION's contracts were read from at build time, if found.
#[cfg(orion_contracts)]
pub const ORION_CONTRACTS_DIR: Option<&str> =
    Some(include_str!(concat!(env!("OUT_DIR"), "/orion_dir.txt")));
/// Where ORION's contracts were read from at build time, if found.
#[cfg(not(orion_contracts))]
pub const ORION_CONTRACTS_DIR: Option<&str> = None;

/// Types for ORION's contracts.
#[cfg(orion_contracts)]
pub mod orion {
    include!(concat!(env!("OUT_DIR"), "/orion.rs"));
}

/// Types for `contracts/` here: `event` 1.0 and 2.0.
pub mod versioned {
    include!(concat!(env!("OUT_DIR"), "/versioned.rs"));
}

/// Types for `clashes/` here: three contracts titled `Alert` (one with
/// two versions) and a contract named `type`.
pub mod clashes {
    include!(concat!(env!("OUT_DIR"), "/clashes.rs"));
}

/// The directory of the contracts whose names clash.
#[must_use]
pub fn clashes_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clashes")
}

/// The directory of the versioned test contracts.
#[must_use]
pub fn versioned_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")
}
