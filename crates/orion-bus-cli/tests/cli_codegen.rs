//! `orion-bus codegen` end to end, in a binary built with the `codegen`
//! feature (this test target requires it).

mod common;

use common::*;

use std::path::PathBuf;

#[test]
fn codegen_writes_the_types_of_a_contracts_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("contracts.rs");
    let out = run(
        cmd(None).args(["codegen", "--out", out_file.to_str().expect("utf-8 path")]),
        "",
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let written = std::fs::read_to_string(&out_file).expect("written");
    let committed = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../orion-bus-examples/src/types.rs"),
    )
    .expect("committed example types");
    assert_eq!(written, committed, "same generator, same contracts");
    assert!(!dir.path().join("contracts.rs.tmp").exists());

    // To standard output by default.
    let out = run(cmd(None).arg("codegen"), "");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), committed);

    // A contracts dir that does not load is a usage error naming the file.
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::write(bad.path().join("broken.schema.json"), "{").expect("write");
    let out = run(
        cmd(None)
            .env("ORION_BUS_CONTRACTS_DIR", bad.path())
            .arg("codegen"),
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("broken.schema.json"),
        "{}",
        text(&out.stderr)
    );
}
