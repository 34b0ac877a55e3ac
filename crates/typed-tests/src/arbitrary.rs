//! JSON from a JSON Schema, as proptest strategies, and JSON equality as
//! JSON Schema defines it.
//!
//! Owns [`values`]: a strategy that follows a schema's shape and rules
//! (types, `const`, `enum`, `required`, optional properties,
//! `additionalProperties`, `pattern`, `minLength`/`maxLength`, numeric
//! bounds, `minItems`/`maxItems`, `date-time` and `uuid` in several
//! spellings, integers written as `5` and as `5.0`, `oneOf`/`anyOf`
//! branches), and [`json_equal`].
//!
//! The strategy does not promise validity: `oneOf` exclusivity, for one, is
//! not followed. Callers that need schema-valid JSON filter with the
//! validator; the round-trip tests do exactly that.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value, json};

/// How many items or extra keys a generated collection gets at most,
/// beyond its minimum.
const SPREAD: usize = 3;

/// JSON following `schema`'s shape; local `$ref`s resolve against it.
pub fn values(schema: &Value) -> BoxedStrategy<Value> {
    node(schema, schema, 0)
}

fn node(schema: &Value, root: &Value, depth: usize) -> BoxedStrategy<Value> {
    let Value::Object(obj) = schema else {
        // `true` (or anything that is not an object): any JSON.
        return any_json(depth).boxed();
    };
    if let Some(target) = obj
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| root.pointer(p))
    {
        return node(target, root, depth + 1);
    }
    if let Some(c) = obj.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(Value::Array(options)) = obj.get("enum") {
        return select(options.clone()).boxed();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            let mut parent = obj.clone();
            parent.remove(key);
            let strategies: Vec<BoxedStrategy<Value>> = branches
                .iter()
                .map(|b| {
                    let mut merged = parent.clone();
                    if let Value::Object(b) = b {
                        for (k, v) in b {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                    node(&Value::Object(merged), root, depth + 1)
                })
                .collect();
            return proptest::strategy::Union::new(strategies).boxed();
        }
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if obj.contains_key("properties") => vec!["object"],
        _ => Vec::new(),
    };
    if types.is_empty() {
        return any_json(depth).boxed();
    }
    let strategies: Vec<BoxedStrategy<Value>> =
        types.iter().map(|t| typed(t, obj, root, depth)).collect();
    proptest::strategy::Union::new(strategies).boxed()
}

fn typed(t: &str, obj: &Map<String, Value>, root: &Value, depth: usize) -> BoxedStrategy<Value> {
    let num = |k: &str| obj.get(k).and_then(Value::as_f64);
    match t {
        "null" => Just(Value::Null).boxed(),
        "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
        "integer" => {
            let lo = num("minimum")
                .map(|m| m.ceil())
                .or(num("exclusiveMinimum").map(|m| m.floor() + 1.0))
                .unwrap_or(-1e12);
            let hi = num("maximum")
                .map(|m| m.floor())
                .or(num("exclusiveMaximum").map(|m| m.ceil() - 1.0))
                .unwrap_or(1e12);
            #[allow(clippy::cast_possible_truncation)]
            let (lo, hi) = (lo as i64, hi as i64);
            // JSON Schema counts `5.0` as an integer, and Python writes
            // one whenever a float holds a whole number: both spellings.
            (prop_oneof![Just(lo), Just(hi), lo..=hi], any::<bool>())
                .prop_map(|(i, as_float)| {
                    #[allow(clippy::cast_precision_loss)] // only below 2^53
                    let float = (as_float && i.unsigned_abs() < (1 << 53))
                        .then(|| Number::from_f64(i as f64))
                        .flatten();
                    Value::Number(float.unwrap_or_else(|| i.into()))
                })
                .boxed()
        }
        "number" => {
            let lo = num("minimum").or(num("exclusiveMinimum")).unwrap_or(-1e9);
            let hi = num("maximum").or(num("exclusiveMaximum")).unwrap_or(1e9);
            let exclusive_lo = num("exclusiveMinimum");
            let exclusive_hi = num("exclusiveMaximum");
            prop_oneof![
                // Whole numbers, written as JSON integers (`5`, as Python
                // writes an int), and fractions.
                #[allow(clippy::cast_possible_truncation)]
                (lo.ceil() as i64..=hi.floor() as i64).prop_map(|i| json!(i)),
                (lo..=hi).prop_map(|f| json!(f)),
                Just(json!(lo)),
                Just(json!(hi)),
            ]
            .prop_filter("exclusive bounds", move |v| {
                let f = v.as_f64().unwrap_or(f64::NAN);
                exclusive_lo.is_none_or(|m| f > m) && exclusive_hi.is_none_or(|m| f < m)
            })
            .boxed()
        }
        "string" => string(obj),
        "array" => {
            let items = obj.get("items").cloned().unwrap_or(Value::Bool(true));
            let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let min = usize::try_from(min).unwrap_or(0);
            let max = obj
                .get("maxItems")
                .and_then(Value::as_u64)
                .and_then(|m| usize::try_from(m).ok())
                .unwrap_or(min + SPREAD)
                .min(min + SPREAD);
            proptest::collection::vec(node(&items, root, depth + 1), min..=max)
                .prop_map(Value::Array)
                .boxed()
        }
        _ => object(obj, root, depth),
    }
}

fn object(obj: &Map<String, Value>, root: &Value, depth: usize) -> BoxedStrategy<Value> {
    let required: Vec<String> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let properties = obj
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, schema) in &properties {
        let name2 = name.clone();
        let value = node(schema, root, depth + 1).prop_map(move |v| (name2.clone(), v));
        if required.contains(name) {
            fields.push(value.prop_map(Some).boxed());
        } else {
            fields.push(proptest::option::of(value).boxed());
        }
    }
    // Required names without a property schema: any value.
    for name in required.iter().filter(|n| !properties.contains_key(*n)) {
        let name = name.clone();
        fields.push(
            any_json(depth + 1)
                .prop_map(move |v| Some((name.clone(), v)))
                .boxed(),
        );
    }
    let extra: BoxedStrategy<Vec<(String, Value)>> = match obj.get("additionalProperties") {
        Some(Value::Bool(false)) => Just(Vec::new()).boxed(),
        Some(schema @ Value::Object(_)) => extra_keys(node(schema, root, depth + 1), &properties),
        // Absent or `true`: free-form, as ORION's `data` objects.
        _ if depth < 3 => extra_keys(any_json(depth + 1).boxed(), &properties),
        _ => Just(Vec::new()).boxed(),
    };
    (fields, extra)
        .prop_map(|(fields, extra)| {
            let mut map = Map::new();
            for (k, v) in extra {
                map.insert(k, v);
            }
            for (k, v) in fields.into_iter().flatten() {
                map.insert(k, v);
            }
            Value::Object(map)
        })
        .boxed()
}

fn extra_keys(
    values: BoxedStrategy<Value>,
    properties: &Map<String, Value>,
) -> BoxedStrategy<Vec<(String, Value)>> {
    let taken: Vec<String> = properties.keys().cloned().collect();
    proptest::collection::vec(
        (
            "[a-z_][a-z0-9_]{0,8}"
                .prop_filter("not a declared property", move |k| !taken.contains(k)),
            values,
        ),
        0..=SPREAD,
    )
    .boxed()
}

fn string(obj: &Map<String, Value>) -> BoxedStrategy<Value> {
    match obj.get("format").and_then(Value::as_str) {
        Some("date-time") => return date_time().prop_map(Value::String).boxed(),
        Some("uuid") => return uuid().prop_map(Value::String).boxed(),
        _ => {}
    }
    if let Some(pattern) = obj.get("pattern").and_then(Value::as_str) {
        // proptest generates from a regex without anchors; the patterns
        // here are anchored at both ends.
        let body = pattern.trim_start_matches('^').trim_end_matches('$');
        if let Ok(s) = proptest::string::string_regex(body) {
            return s.prop_map(Value::String).boxed();
        }
    }
    let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = obj
        .get("maxLength")
        .and_then(Value::as_u64)
        .unwrap_or(min + 24);
    let max = max.min(min + 24);
    // Letters, digits, punctuation, a non-ASCII letter and an escape-worthy
    // quote and backslash: lengths count characters, not bytes.
    proptest::string::string_regex(&format!("[a-zA-Z0-9 _.,:/\\-é\"\\\\]{{{min},{max}}}"))
        .map_or_else(
            |_| Just(Value::String("x".repeat(usize::try_from(min).unwrap_or(1)))).boxed(),
            |s| s.prop_map(Value::String).boxed(),
        )
}

/// RFC 3339 date-times as real clients write them: `Z` or an offset,
/// with or without fractions.
fn date_time() -> impl Strategy<Value = String> {
    (
        1970u32..=2199,
        1u32..=12,
        1u32..=28,
        0u32..=23,
        0u32..=59,
        0u32..=59,
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        prop_oneof![
            Just("Z".to_owned()),
            Just("+00:00".to_owned()),
            (
                0u32..=13,
                prop_oneof![Just(0u32), Just(30), Just(45)],
                any::<bool>()
            )
                .prop_map(|(h, m, plus)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' })),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, zone)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
}

/// UUIDs of any version, lower or upper case, as `format: uuid` allows.
fn uuid() -> impl Strategy<Value = String> {
    (any::<[u8; 16]>(), any::<bool>()).prop_map(|(b, upper)| {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let s = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        if upper { s.to_uppercase() } else { s }
    })
}

/// Small arbitrary JSON, for free-form objects.
fn any_json(depth: usize) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        (-1e6f64..1e6).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z é]{0,8}".prop_map(Value::String),
    ];
    let levels = if depth >= 3 { 0 } else { 2 };
    leaf.prop_recursive(levels, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Equality as JSON Schema defines it (`const`, `enum`): numbers by
/// mathematical value (`1` equals `1.0`), objects regardless of key order,
/// arrays item by item.
#[must_use]
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_is_json_schema_equality() {
        assert!(json_equal(
            &json!({"a": 1, "b": [2.0]}),
            &json!({"b": [2], "a": 1.0})
        ));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!json_equal(&json!("1"), &json!(1)));
        assert!(!json_equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_equal(&json!(1.5), &json!(1)));
    }
}
