//! The committed example types match the example contracts, and codegen
//! errors name what is wrong.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_example_types_are_current() {
    let generated =
        orion_bus_codegen::generate_dir(&root().join("contracts")).expect("examples generate");
    let committed = std::fs::read_to_string(root().join("crates/orion-bus-examples/src/types.rs"))
        .expect("committed types");
    assert!(
        generated == committed,
        "crates/orion-bus-examples/src/types.rs is stale: regenerate it with\n  \
         cargo run -p orion-bus-cli --features codegen -- codegen --contracts-dir contracts --out crates/orion-bus-examples/src/types.rs"
    );
}

#[test]
fn every_version_gets_a_type_and_several_get_an_enum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = |v: &str, extra: &str| {
        format!(
            r#"{{"title": "Ping", "description": "A ping.", "type": "object", "additionalProperties": false,
                "required": ["version"{extra}],
                "properties": {{"version": {{"const": "{v}"}}, "origin": {{"type": "string"}},
                               "hops": {{"type": "integer"}}}}}}"#
        )
    };
    std::fs::write(dir.path().join("ping.schema.json"), schema("1.0", "")).expect("write");
    std::fs::write(
        dir.path().join("ping@2.0.schema.json"),
        schema("2.0", r#", "origin""#),
    )
    .expect("write");
    let code = orion_bus_codegen::generate_dir(dir.path()).expect("generates");
    for needle in [
        "pub mod ping_v1_0",
        "pub mod ping_v2_0",
        "pub use self::ping_v1_0::Ping as PingV1_0;",
        "pub use self::ping_v2_0::Ping as PingV2_0;",
        "pub enum PingAny",
        "V2_0(PingV2_0)",
        "const VERSION: Option<&'static str> = Some(\"2.0\");",
        "/// A ping.",
        // JSON Schema integers take `5.0` too; a bare i64 would not.
        "pub hops: ::std::option::Option<::orion_bus::typed::Integer>",
    ] {
        assert!(code.contains(needle), "{needle} missing in:\n{code}");
    }
}

#[test]
fn a_broken_schema_is_an_error_naming_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.schema.json"), "{").expect("write");
    let err = orion_bus_codegen::generate_dir(dir.path()).expect_err("broken");
    assert!(err.to_string().contains("bad.schema.json"), "{err}");
}
