//! Tests of the typed value types and `message_enum!`.

use super::*;

#[test]
fn formats_keep_their_text_and_reject_garbage() {
    for ok in [
        "2026-11-24T19:02:14.123456+00:00",
        "2026-11-24T19:02:14Z",
        "2026-11-24t19:02:14.1-07:30",
    ] {
        let t: Timestamp = ok.parse().expect(ok);
        assert_eq!(t.as_str(), ok);
        let json = serde_json::to_string(&t).expect("serialises");
        assert_eq!(json, format!("\"{ok}\""));
        let back: Timestamp = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, t);
    }
    for bad in ["yesterday", "2026-11-24", "2026-13-01T00:00:00Z", ""] {
        let err = bad.parse::<Timestamp>().expect_err(bad);
        assert!(err.to_string().contains("not a valid date-time"), "{err}");
        assert!(serde_json::from_value::<Timestamp>(Value::from(bad)).is_err());
    }
    let upper = "550E8400-E29B-41D4-A716-446655440000";
    let u: Uuid = upper.parse().expect("upper case is a uuid");
    assert_eq!(u.as_str(), upper, "case kept");
    assert_eq!(u.to_uuid().to_string(), upper.to_lowercase());
    for bad in ["nope", "550e8400-e29b-41d4-a716-44665544000", ""] {
        assert!(bad.parse::<Uuid>().is_err(), "{bad}");
    }
    assert!(serde_json::from_value::<Uuid>(Value::from(12)).is_err());
}

#[test]
fn integers_accept_whole_floats_as_json_schema_does() {
    let read = |text: &str| serde_json::from_str::<Integer>(text);
    assert_eq!(read("5").expect("int").get(), 5);
    assert_eq!(read("-5").expect("int").get(), -5);
    assert_eq!(read("5.0").expect("whole float").get(), 5);
    assert_eq!(read("1e3").expect("whole float").get(), 1000);
    for bad in ["5.5", "\"5\"", "1e300", "18446744073709551615", "null"] {
        assert!(read(bad).is_err(), "{bad}");
    }
    assert_eq!(serde_json::to_string(&Integer::new(5)).expect("ser"), "5");
}

#[test]
fn fresh_values_are_valid() {
    let now = Timestamp::now();
    assert!(now.as_str().parse::<Timestamp>().is_ok(), "{now}");
    let id = Uuid::new_v4();
    assert!(id.as_str().parse::<Uuid>().is_ok(), "{id}");
    assert_ne!(Uuid::new_v4(), id);
}
