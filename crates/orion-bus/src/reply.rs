//! Reading fields out of `XINFO`-style replies, RESP2 (flat `[k, v, ...]`
//! arrays) and RESP3 (maps) alike, without trusting their shape.

use redis::Value;

/// A reply value as text (bulk, simple or integer).
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A reply value as a non-negative integer (`nil` and negatives are `None`).
pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// The value of `key` in a flat key/value array or a map.
pub(crate) fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(key))
            .and_then(|kv| kv.get(1)),
        Value::Map(kv) => kv
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_protocols() {
        let flat = Value::Array(vec![
            Value::BulkString(b"length".to_vec()),
            Value::Int(3),
            Value::BulkString(b"lag".to_vec()),
            Value::Nil,
        ]);
        let map = Value::Map(vec![(Value::SimpleString("length".into()), Value::Int(3))]);
        for v in [&flat, &map] {
            assert_eq!(field(v, "length").and_then(int), Some(3));
        }
        assert_eq!(field(&flat, "lag").and_then(int), None);
        assert_eq!(field(&flat, "missing"), None);
        assert_eq!(field(&Value::Int(1), "x"), None);
    }
}
