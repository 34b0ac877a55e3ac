//! The randomized fault checker (crate `orion-bus-chaos`) run against the
//! real `orion-bus consume` binary and library consumers, once without and
//! once with idempotency; cargo runs the two side by side.
//!
//! Without `ORION_BUS_CHAOS_SEED` each configuration replays a fixed seed,
//! so the test suite is reproducible; `ORION_BUS_CHAOS_SEED=N` runs
//! another schedule (longer explorations pick seeds at random and print
//! them),
//! `ORION_BUS_CHAOS_SECS` the nemesis time (default 90 s, about two
//! minutes in all), `ORION_BUS_CHAOS_QUIET_SECS` the limit on the quiet
//! period; `ORION_BUS_CHAOS_KEEP=1` keeps the run directory (timeline of
//! every publish, handling and fault, CLI and Redis logs) even on success. Run one configuration with its test name, e.g.
//! `cargo test -p orion-bus-cli --test chaos -- --nocapture with_idempotency`.

use std::path::PathBuf;

use orion_bus_chaos::{ChaosOptions, run_blocking};

fn check(label: &str, idempotency: bool, default_seed: u64) {
    if !orion_bus_harness::redis_server_available() {
        eprintln!("SKIPPED: redis-server not found; the chaos checker needs it");
        return;
    }
    let contracts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let mut options = ChaosOptions::from_env().expect("chaos settings from the environment");
    if std::env::var_os("ORION_BUS_CHAOS_SEED").is_none() {
        options.seed = default_seed;
    }
    let options = options.label(label).idempotency(idempotency).cli(
        env!("CARGO_BIN_EXE_orion-bus"),
        contracts,
        2,
    );
    eprintln!(
        "chaos [{label}]: seed {} (ORION_BUS_CHAOS_SEED={} reproduces the schedule), nemesis {} s",
        options.seed,
        options.seed,
        options.nemesis_for.as_secs()
    );
    let report = run_blocking(options).expect("the chaos run completes");
    assert!(report.passed(), "chaos checker failed [{label}]:\n{report}");
    println!("{report}");
}

#[test]
fn without_idempotency() {
    check("without idempotency", false, 1_488_872_533_871_478_873);
}

#[test]
fn with_idempotency() {
    check("with idempotency", true, 7_751_616_566_581_427_225);
}
