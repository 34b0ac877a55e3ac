//! Tests of the wire format: byte-identity with Python, exact numbers,
//! decoding and reply parsing.

use super::python::python_float_repr;
use super::*;
use redis::Value as RedisValue;
use serde_json::json;

#[test]
fn names_follow_the_python_bus() {
    assert_eq!(stream_name("orion", "event"), "orion:events");
    assert_eq!(
        stream_name("orion", "edge.telemetry"),
        "orion:edge.telemetrys"
    );
    assert_eq!(dead_letter_stream("orion:events"), "orion:events:dlq");
}

#[test]
fn python_style_matches_json_dumps() {
    // Expected strings produced by CPython 3.11 json.dumps.
    let v: Value =
        serde_json::from_str(r#"{"a": 1, "b": [1.5, "é", null, true], "c": {"d": "x\ny"}}"#)
            .expect("json");
    let out = String::from_utf8(encode(&v, JsonStyle::Python).expect("enc")).expect("utf8");
    assert_eq!(
        out,
        r#"{"a": 1, "b": [1.5, "\u00e9", null, true], "c": {"d": "x\ny"}}"#
    );
    let emoji = encode(&json!("😀"), JsonStyle::Python).expect("enc");
    assert_eq!(emoji, br#""\ud83d\ude00""#);
    // Controls and DEL: json.dumps({"a": "\x7f\x1f\t~"}).
    let controls = encode(&json!({"a": "\u{7f}\u{1f}\t~"}), JsonStyle::Python).expect("enc");
    assert_eq!(controls, br#"{"a": "\u007f\u001f\t~"}"#);
    assert_eq!(encode(&json!({}), JsonStyle::Python).expect("e"), b"{}");
    assert_eq!(encode(&json!([]), JsonStyle::Python).expect("e"), b"[]");
}

#[test]
fn float_repr_matches_python() {
    let cases = [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (123456789012345.6, "123456789012345.6"),
        (1e15, "1000000000000000.0"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (42.125, "42.125"),
    ];
    for (v, want) in cases {
        assert_eq!(python_float_repr(v), want, "{v}");
    }
}

#[test]
fn decode_reports_each_kind_of_garbage() {
    assert_eq!(
        decode_data(b"\xff\xfe", 100),
        Err(DecodeError::NotUtf8 { valid_up_to: 0 })
    );
    assert!(matches!(
        decode_data(b"{nope", 100),
        Err(DecodeError::InvalidJson(_))
    ));
    assert_eq!(
        decode_data(b"[1,2,3]", 3),
        Err(DecodeError::TooLarge { size: 7, limit: 3 })
    );
    assert_eq!(decode_data(br#"{"a": 1}"#, 100), Ok(json!({"a": 1})));
    let no_data = RawEntry {
        id: "1-0".into(),
        fields: Some(vec![(b"other".to_vec(), b"x".to_vec())]),
    };
    assert_eq!(no_data.decode(100), Err(DecodeError::MissingData));
    let deleted = RawEntry {
        id: "1-0".into(),
        fields: None,
    };
    assert_eq!(deleted.decode(100), Err(DecodeError::Deleted));
}

#[test]
fn parses_resp2_and_resp3_replies() {
    let entry = RedisValue::Array(vec![
        RedisValue::BulkString(b"1-0".to_vec()),
        RedisValue::Array(vec![
            RedisValue::BulkString(b"data".to_vec()),
            RedisValue::BulkString(b"{}".to_vec()),
        ]),
    ]);
    let deleted = RedisValue::Array(vec![
        RedisValue::BulkString(b"2-0".to_vec()),
        RedisValue::Nil,
    ]);
    let resp2 = RedisValue::Array(vec![RedisValue::Array(vec![
        RedisValue::BulkString(b"s".to_vec()),
        RedisValue::Array(vec![entry.clone(), deleted.clone()]),
    ])]);
    let resp3 = RedisValue::Map(vec![(
        RedisValue::BulkString(b"s".to_vec()),
        RedisValue::Array(vec![entry, deleted]),
    )]);
    for reply in [resp2, resp3] {
        let parsed = parse_read_reply(reply).expect("parses");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].stream, "s");
        assert_eq!(parsed[0].entries[0].data(), Ok(&b"{}"[..]));
        assert_eq!(parsed[0].entries[1].fields, None);
    }
    assert_eq!(parse_read_reply(RedisValue::Nil), Ok(vec![]));
    assert!(parse_read_reply(RedisValue::Int(3)).is_err());
}

#[test]
fn exact_encoding_keeps_every_number_of_the_original() {
    // Written by CPython 3 json.dumps; json.dumps(json.loads(x)) == x.
    let python = br#"{"a": [18446744073709551616, -9223372036854775809, 1000000000000000000000000000000, 1e-07, 0.30000000000000004, 1e+30, 1e+16, -0.0, 1.5, 42], "s": "\u00e9\n"}"#;
    let value: Value = serde_json::from_slice(python).expect("json");
    assert_eq!(
        encode_exact(&value, python, JsonStyle::Python).expect("enc"),
        python.to_vec()
    );
    // Without the text, integers beyond 64 bits become floats.
    let lossy = String::from_utf8(encode(&value, JsonStyle::Python).expect("enc")).expect("utf8");
    assert!(lossy.contains("1.8446744073709552e+19"), "{lossy}");
    // The compact style keeps each number's text as written.
    let compact = encode_exact(&value, python, JsonStyle::Compact).expect("enc");
    assert_eq!(
        String::from_utf8(compact).expect("utf8"),
        "{\"a\":[18446744073709551616,-9223372036854775809,1000000000000000000000000000000,1e-07,0.30000000000000004,1e+30,1e+16,-0.0,1.5,42],\"s\":\"\u{e9}\\n\"}"
    );
    // Other spellings get Python's spelling in the Python style, as
    // json.dumps(json.loads(...)) would write them.
    let other = br#"{"b":1E5,"c":-0,"d":1.10,"e":[1e-7]}"#;
    let value: Value = serde_json::from_slice(other).expect("json");
    assert_eq!(
        encode_exact(&value, other, JsonStyle::Python).expect("enc"),
        br#"{"b": 100000.0, "c": 0, "d": 1.1, "e": [1e-07]}"#.to_vec()
    );
    assert_eq!(
        exact_json(&value, other).get(),
        r#"{"b":1E5,"c":-0,"d":1.10,"e":[1e-7]}"#
    );
}

#[test]
fn exact_encoding_falls_back_when_the_text_does_not_line_up() {
    // A repeated key: the parse kept the last value; so does the output.
    let dup = br#"{"a": 1, "b": 18446744073709551616, "a": 2}"#;
    let value: Value = serde_json::from_slice(dup).expect("json");
    assert_eq!(
        encode_exact(&value, dup, JsonStyle::Python).expect("enc"),
        encode(&value, JsonStyle::Python).expect("enc")
    );
    // Not the text of this value at all.
    let value = json!({"x": 5});
    assert_eq!(
        encode_exact(&value, b"[6]", JsonStyle::Python).expect("enc"),
        br#"{"x": 5}"#.to_vec()
    );
    assert_eq!(
        encode_exact(&value, b"{}", JsonStyle::Compact).expect("enc"),
        br#"{"x":5}"#.to_vec()
    );
    // Numbers inside strings are not numbers.
    let text = br#"{"s": "1 2 3", "n": 10000000000000000000000}"#;
    let value: Value = serde_json::from_slice(text).expect("json");
    assert_eq!(
        encode_exact(&value, text, JsonStyle::Python).expect("enc"),
        text.to_vec()
    );
}

#[test]
fn python_quirks_get_reasons_of_their_own() {
    for (text, reason) in [
        (&br#"{"v": NaN}"#[..], "non_finite_number"),
        (br#"{"v": Infinity}"#, "non_finite_number"),
        (br#"{"v": [-Infinity]}"#, "non_finite_number"),
        (br#"{"v": 1e400}"#, "non_finite_number"),
        (br#"{"v": -1E+400}"#, "non_finite_number"),
        (br#"{"s": "\ud800"}"#, "lone_surrogate"),
        (br#"{"s": "a\udc00b"}"#, "lone_surrogate"),
        (br#"{"s": "\ud800\u0041"}"#, "lone_surrogate"),
        (br#"{"s": "\ud800", "v": NaN}"#, "lone_surrogate"),
        // Quirks together with other damage are just invalid JSON.
        (br#"{"v": NaN,,}"#, "invalid_json"),
        (br#"{"v": nan}"#, "invalid_json"),
        (br#"{"s": "\ud800"#, "invalid_json"),
    ] {
        let err = decode_data(text, 1000).expect_err("refused");
        assert_eq!(err.reason(), reason, "{}", String::from_utf8_lossy(text));
    }
    // A proper pair is fine.
    assert_eq!(
        decode_data(br#""\ud83d\ude00""#, 100),
        Ok(json!("\u{1f600}"))
    );
    let err = decode_data(br#"{"v": NaN}"#, 100).expect_err("refused");
    assert!(err.to_string().contains("NaN, Infinity"), "{err}");
}

#[test]
fn lenient_parsing_reads_what_python_reads() {
    assert_eq!(
        parse_python_lenient(br#"{"source": "orion-x", "v": NaN, "s": "\ud800"}"#),
        Some(json!({"source": "orion-x", "v": 0, "s": "\u{fffd}"}))
    );
    assert_eq!(parse_python_lenient(br#"{"a": 1}"#), Some(json!({"a": 1})));
    assert_eq!(parse_python_lenient(b"not json"), None);
    assert_eq!(parse_python_lenient(b"1 2"), None);
}

#[test]
fn id_millis_parses() {
    assert_eq!(id_millis("1700000000000-3"), Some(1_700_000_000_000));
    assert_eq!(id_millis("garbage"), None);
}
