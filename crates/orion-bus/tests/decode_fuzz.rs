//! Property tests of the decode path: whatever bytes and field layouts
//! another client writes, and whatever reply shape Redis returns, decoding
//! and validation return a value or an error, never a panic. Also: the
//! Python-style encoder round-trips any JSON value.

use orion_bus::ContractOptions;
use orion_bus::wire::{self, JsonStyle, RawEntry};
use orion_bus_examples as examples;
use proptest::prelude::*;
use redis::Value as R;
use serde_json::Value;

fn redis_value() -> impl Strategy<Value = R> {
    let leaf = prop_oneof![
        Just(R::Nil),
        any::<i64>().prop_map(R::Int),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(R::BulkString),
        "[a-z0-9-]{0,12}".prop_map(R::SimpleString),
        Just(R::Okay),
        any::<bool>().prop_map(R::Boolean),
        any::<f64>().prop_map(R::Double),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(R::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(R::Map),
            proptest::collection::vec(inner, 0..4).prop_map(R::Set),
        ]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_fields_never_panic(
        fields in proptest::collection::vec(
            (prop_oneof![Just(b"data".to_vec()), proptest::collection::vec(any::<u8>(), 0..8)],
             proptest::collection::vec(any::<u8>(), 0..200)),
            0..5),
        deleted in any::<bool>(),
    ) {
        let has_data = fields.iter().any(|(k, _)| k.as_slice() == b"data");
        let entry = RawEntry::new("1-0", if deleted { None } else { Some(fields) });
        let registry = examples::registry(ContractOptions::default()).expect("examples");
        match entry.decode(1024) {
            Ok(value) => {
                prop_assert!(has_data && !deleted);
                for c in registry.iter() {
                    let _ = c.validate(&value);
                }
            }
            Err(wire::DecodeError::Deleted) => prop_assert!(deleted),
            Err(wire::DecodeError::MissingData) => prop_assert!(!has_data && !deleted),
            Err(_) => prop_assert!(has_data && !deleted),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode_data(&bytes, 256);
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[\{\}\[\]":,0-9a-z\\ .eE+-]{0,120}"#) {
        if let Ok(v) = wire::decode_data(text.as_bytes(), 1 << 20) {
            let registry = examples::registry(ContractOptions::default()).expect("examples");
            for c in registry.iter() {
                let _ = c.validate(&v);
            }
        }
    }

    #[test]
    fn arbitrary_replies_never_panic(reply in redis_value()) {
        let _ = wire::parse_read_reply(reply.clone());
        let _ = wire::parse_entries(reply);
    }

    #[test]
    fn python_style_round_trips(value in json_value()) {
        for style in [JsonStyle::Python, JsonStyle::Compact] {
            let bytes = wire::encode(&value, style).expect("encode");
            let back = wire::decode_data(&bytes, usize::MAX).expect("decode");
            prop_assert_eq!(&back, &value);
            if style == JsonStyle::Python {
                prop_assert!(bytes.is_ascii(), "ensure_ascii output");
            }
        }
    }
}
