//! The adjustments made to a schema before typify sees it: formats to
//! `Timestamp`/`Uuid`, integers to `Integer`, bounded numbers to checked
//! newtypes (whose code [`Bounded`] writes), `default` dropped.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::names::{doc_comment, pascal};

/// A number with bounds, generated as a checked newtype.
pub(super) struct Bounded {
    name: String,
    doc: String,
    integer: bool,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
}

impl Bounded {
    pub(super) fn code(&self) -> String {
        let inner = if self.integer { "i64" } else { "f64" };
        let integer = self.integer;
        #[allow(clippy::cast_possible_truncation)] // integer bounds are whole numbers here
        let lit = |x: f64| {
            if integer {
                format!("{}i64", x as i64)
            } else {
                format!("{x:?}f64")
            }
        };
        let mut checks = String::new();
        let mut rules = Vec::new();
        for (bound, op, word) in [
            (self.minimum, "<", ">="),
            (self.exclusive_minimum, "<=", ">"),
            (self.maximum, ">", "<="),
            (self.exclusive_maximum, ">=", "<"),
        ] {
            if let Some(b) = bound {
                let b_text = if self.integer && b.fract() != 0.0 {
                    // An integer bound of 0.5 means >= 1 (or <= 0): compare as float.
                    format!("{b:?}f64")
                } else {
                    lit(b)
                };
                let value = if self.integer && b.fract() != 0.0 {
                    "(value as f64)"
                } else {
                    "value"
                };
                let _ = write!(
                    checks,
                    "if {value} {op} {b_text} {{ return Err(concat!(\"must be {word} \", stringify!({b})).into()); }}"
                );
                rules.push(format!("{word} {b}"));
            }
        }
        let nan = if self.integer {
            ""
        } else {
            "if value.is_nan() { return Err(\"must be a number\".into()); }"
        };
        let name = &self.name;
        let derives = if self.integer {
            "Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize"
        } else {
            "Clone, Copy, Debug, PartialEq, PartialOrd, ::serde::Serialize"
        };
        format!(
            "{doc}#[doc = \"\\n\\nA number {rules}; out-of-range values are refused.\"]\n\
             #[derive({derives})]\n#[serde(transparent)]\n\
             pub struct {name}({inner});\n\
             impl {name} {{\n\
                 /// Checks the range.\n\
                 pub fn new(value: {inner}) -> ::std::result::Result<Self, self::error::ConversionError> {{ {nan}{checks} Ok(Self(value)) }}\n\
                 /// The number.\n\
                 pub fn get(self) -> {inner} {{ self.0 }}\n\
             }}\n\
             impl ::std::convert::TryFrom<{inner}> for {name} {{\n\
                 type Error = self::error::ConversionError;\n\
                 fn try_from(value: {inner}) -> ::std::result::Result<Self, self::error::ConversionError> {{ Self::new(value) }}\n\
             }}\n\
             impl ::std::ops::Deref for {name} {{ type Target = {inner}; fn deref(&self) -> &{inner} {{ &self.0 }} }}\n\
             impl ::std::fmt::Display for {name} {{ fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{ ::std::fmt::Display::fmt(&self.0, f) }} }}\n\
             impl<'de> ::serde::Deserialize<'de> for {name} {{\n\
                 fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {{\n\
                     Self::new({read})\n\
                         .map_err(|e| <D::Error as ::serde::de::Error>::custom(e.to_string()))\n\
                 }}\n\
             }}\n",
            doc = doc_comment(&self.doc),
            rules = rules.join(" and "),
            // An integer reads through `Integer`, which takes `5.0` too.
            read = if self.integer {
                "<::orion_bus::typed::Integer as ::serde::Deserialize>::deserialize(deserializer)?.get()"
            } else {
                "<f64 as ::serde::Deserialize>::deserialize(deserializer)?"
            },
        )
    }
}

/// Rewrites a schema in place before typify sees it (see the module docs).
/// `path` is the Pascal-case name prefix of the current node.
pub(super) fn adjust(
    node: &mut Value,
    path: &str,
    bounded: &mut Vec<Bounded>,
    names: &mut BTreeSet<String>,
) {
    let Value::Object(obj) = node else {
        if let Value::Array(items) = node {
            for (i, item) in items.iter_mut().enumerate() {
                adjust(item, &format!("{path}{i}"), bounded, names);
            }
        }
        return;
    };
    obj.remove("default");
    // `{"const": "1.0"}` or `{"enum": ["a", "b"]}` without a `type` can only
    // hold strings; say so, or typify falls back to `serde_json::Value`.
    let only_strings = obj.get("const").is_some_and(Value::is_string)
        || obj
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty() && v.iter().all(Value::is_string));
    if only_strings && !obj.contains_key("type") {
        obj.insert("type".to_owned(), Value::from("string"));
    }
    let types = instance_types(obj);
    if let Some(format) = obj.get("format").and_then(Value::as_str) {
        let rust = match format {
            "date-time" => Some("orion_bus::typed::Timestamp"),
            "uuid" => Some("orion_bus::typed::Uuid"),
            _ => None,
        };
        if let (Some(rust), true) = (rust, types == ["string"]) {
            obj.insert("x-rust-type".to_owned(), rust_type("orion-bus", rust));
        }
    }
    if types == ["integer"] {
        // Replaced below by a bounded newtype when there are bounds.
        obj.insert(
            "x-rust-type".to_owned(),
            rust_type("orion-bus", "orion_bus::typed::Integer"),
        );
    }
    let has_bounds = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(Value::is_number));
    if has_bounds && (types == ["number"] || types == ["integer"]) {
        let mut name = path.to_owned();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{path}{n}");
            n += 1;
        }
        let num = |k: &str| obj.get(k).and_then(Value::as_f64);
        bounded.push(Bounded {
            name: name.clone(),
            doc: obj
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            integer: types == ["integer"],
            minimum: num("minimum"),
            maximum: num("maximum"),
            exclusive_minimum: num("exclusiveMinimum"),
            exclusive_maximum: num("exclusiveMaximum"),
        });
        obj.insert(
            "x-rust-type".to_owned(),
            rust_type("self", &format!("self::{name}")),
        );
    }
    // Recurse, naming children like typify does: the property name for
    // properties, `Item` for array items, the title for branches.
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        let Some(child) = obj.get_mut(&key) else {
            continue;
        };
        match key.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Value::Object(props) = child {
                    for (prop, schema) in props.iter_mut() {
                        adjust(schema, &format!("{path}{}", pascal(prop)), bounded, names);
                    }
                }
            }
            "items" | "additionalProperties" | "contains" | "not" | "if" | "then" | "else" => {
                let suffix = if key == "items" { "Item" } else { "Value" };
                adjust(child, &format!("{path}{suffix}"), bounded, names);
            }
            "oneOf" | "anyOf" | "allOf" | "prefixItems" => {
                if let Value::Array(branches) = child {
                    for (i, b) in branches.iter_mut().enumerate() {
                        let name = b
                            .get("title")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("{path}{}", i + 1), pascal);
                        adjust(b, &name, bounded, names);
                    }
                }
            }
            _ => {}
        }
    }
}

fn instance_types(obj: &Map<String, Value>) -> Vec<String> {
    match obj.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn rust_type(krate: &str, path: &str) -> Value {
    serde_json::json!({"crate": krate, "version": "*", "path": path})
}
