//! Generates Rust types at build time, the way a user's crate would:
//! - from ORION's contracts: `ORION_CONTRACTS_DIR`, or the workspace's
//!   sibling `../shared/orion-contracts`; when neither exists the crate
//!   builds without them and its tests say they were skipped;
//! - from `contracts/` here, a test set with two versions of `event`;
//! - from `clashes/` here, contracts whose names and titles collide.

use std::path::{Path, PathBuf};

fn generate(dir: &Path, out: &Path) {
    match orion_bus_codegen::generate_dir(dir) {
        Ok(code) => std::fs::write(out, code).expect("write generated types"),
        Err(e) => panic!("cannot generate types for {}: {e}", dir.display()),
    }
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(orion_contracts)");
    println!("cargo::rerun-if-env-changed=ORION_CONTRACTS_DIR");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let versioned = here.join("contracts");
    println!("cargo::rerun-if-changed={}", versioned.display());
    generate(&versioned, &out.join("versioned.rs"));
    let clashes = here.join("clashes");
    println!("cargo::rerun-if-changed={}", clashes.display());
    generate(&clashes, &out.join("clashes.rs"));

    let orion = std::env::var_os("ORION_CONTRACTS_DIR").map_or_else(
        || here.join("../../../shared/orion-contracts"),
        PathBuf::from,
    );
    println!("cargo::rerun-if-changed={}", orion.display());
    if !orion.is_dir() {
        println!(
            "cargo::warning=ORION contracts not found at {}: typed ORION tests are skipped",
            orion.display()
        );
        return;
    }
    generate(&orion, &out.join("orion.rs"));
    std::fs::write(out.join("orion_dir.txt"), orion.display().to_string())
        .expect("write contracts path");
    println!("cargo::rustc-cfg=orion_contracts");
}
