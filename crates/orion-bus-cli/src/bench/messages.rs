//! The messages a bench run publishes: samples of one contract, each with
//! a timestamp written into a string field the contract leaves free, and
//! padded to one encoded size.

use serde_json::{Value, json};

use orion_bus::{Contract, JsonStyle, wire};

use super::BenchError;

/// Distinct sample messages cycled through (different ids and values).
pub(super) const TEMPLATES: u64 = 64;

/// Width of the zero-padded nanosecond timestamp, so every message of a
/// run has the same encoded size.
const STAMP_WIDTH: usize = 20;

/// Builds messages of one contract, each carrying a timestamp and
/// padded to one encoded size.
#[derive(Debug)]
pub(super) struct Messages {
    pub(super) contract: String,
    /// Where the timestamp goes.
    pub(super) stamp: Stamp,
    /// `(sample, padding)` pairs, cycled through.
    templates: Vec<(Value, String)>,
    pub(super) payload_bytes: usize,
}

impl Messages {
    /// Messages of `contract`: from `sample` if given, else the example
    /// contract's own samples.
    pub(super) fn new(
        contract: &Contract,
        sample: Option<&Value>,
        payload_bytes: Option<usize>,
        style: JsonStyle,
    ) -> Result<Self, BenchError> {
        let name = contract.name();
        let samples: Vec<Value> = match sample {
            Some(s) => {
                if let Err(v) = contract.validate(s) {
                    return Err(BenchError::Options(format!(
                        "the sample is not a valid {name} message: {v}"
                    )));
                }
                vec![s.clone(); TEMPLATES as usize]
            }
            None => (0..TEMPLATES)
                .map(|n| orion_bus_examples::sample(name, n))
                .collect::<Option<_>>()
                .ok_or_else(|| BenchError::Options(format!("no sample for {name}")))?,
        };
        let stamp = Stamp::find(contract, &samples[0]).ok_or_else(|| {
            BenchError::Options(format!(
                "no string field of the {name} sample can carry the benchmark's timestamp \
                 (one that still validates with `bench-<digits>-<padding>` in it)"
            ))
        })?;
        let mut templates = Vec::new();
        let mut natural = Vec::new();
        for sample in samples {
            let size = encoded_len(&stamp.write(sample.clone(), 0, ""), style)?;
            natural.push(size);
            templates.push((sample, String::new()));
        }
        let largest = natural.iter().copied().max().unwrap_or(0);
        let target = payload_bytes.unwrap_or(largest);
        if target < largest {
            return Err(BenchError::Options(format!(
                "{name} messages with a timestamp take at least {largest} bytes; --payload-bytes {target} is too small"
            )));
        }
        for ((sample, pad), size) in templates.iter_mut().zip(natural) {
            *pad = "x".repeat(target - size);
            let check = encoded_len(&stamp.write(sample.clone(), 0, pad), style)?;
            if check != target {
                return Err(BenchError::Options(format!(
                    "cannot pad {name} messages to {target} bytes (got {check})"
                )));
            }
        }
        // The padded messages must still be valid (e.g. alert summaries
        // have a length limit).
        let (sample, pad) = &templates[0];
        if let Err(v) = contract.validate(&stamp.write(sample.clone(), 0, pad)) {
            return Err(BenchError::Options(format!(
                "{name} messages of {target} bytes break the contract: {v}"
            )));
        }
        Ok(Self {
            contract: name.to_owned(),
            stamp,
            templates,
            payload_bytes: target,
        })
    }

    /// Message `n`, stamped with `ns`.
    pub(super) fn make(&self, n: u64, ns: u64) -> Value {
        let (sample, pad) = &self.templates[(n % TEMPLATES) as usize];
        self.stamp.write(sample.clone(), ns, pad)
    }
}

/// Encoded size of `message` in `style`.
pub(super) fn encoded_len(message: &Value, style: JsonStyle) -> Result<usize, BenchError> {
    wire::encode(message, style)
        .map(|b| b.len())
        .map_err(|e| BenchError::Task(e.to_string()))
}

/// Where a message carries the benchmark's timestamp: a string field,
/// `{prefix}{digits}{sep}{padding}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    /// JSON Pointer to the string.
    pointer: String,
    prefix: &'static str,
    sep: &'static str,
    /// `sensor.reading`: the field is `tags.bench_t`, in a `tags` object
    /// made for it (with the padding beside it).
    tags: bool,
}

impl Stamp {
    /// The known place for the example contracts; for any other, the
    /// first string field of `sample` that still validates when it holds
    /// a timestamp and some padding.
    fn find(contract: &Contract, sample: &Value) -> Option<Self> {
        let field = |pointer: &str, prefix, sep| Self {
            pointer: pointer.to_owned(),
            prefix,
            sep,
            tags: false,
        };
        match contract.name() {
            "sensor.reading" => {
                return Some(Self {
                    pointer: "/tags/bench_t".to_owned(),
                    prefix: "",
                    sep: "",
                    tags: true,
                });
            }
            "alert" => return Some(field("/summary", "bench t=", " ")),
            "command" => return Some(field("/target", "bench-", "-")),
            _ => {}
        }
        let mut pointers = Vec::new();
        string_pointers(sample, String::new(), &mut pointers);
        pointers.into_iter().find_map(|pointer| {
            let stamp = field(&pointer, "bench-", "-");
            let probe = stamp.write(sample.clone(), u64::MAX, &"x".repeat(32));
            contract.is_valid(&probe).then_some(stamp)
        })
    }

    /// Writes the timestamp (and padding) into `message`.
    fn write(&self, mut message: Value, ns: u64, pad: &str) -> Value {
        let ts = format!("{ns:0STAMP_WIDTH$}");
        if self.tags {
            message["tags"] = json!({"room": "lab", "bench_t": ts, "pad": pad});
        } else if let Some(slot) = message.pointer_mut(&self.pointer) {
            *slot = Value::String(format!("{}{ts}{}{pad}", self.prefix, self.sep));
        }
        message
    }

    /// Overwrites the timestamp of a message made by [`Self::write`] in
    /// place, without allocating: the publishers re-use their messages, so
    /// the load generator's own cost stays out of the figures.
    pub(super) fn rewrite(&self, message: &mut Value, ns: u64) {
        let Some(Value::String(field)) = message.pointer_mut(&self.pointer) else {
            return;
        };
        let offset = self.prefix.len();
        let mut digits = [b'0'; STAMP_WIDTH];
        let mut rest = ns;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        if let (Ok(text), Some(_)) = (
            std::str::from_utf8(&digits),
            field.get(offset..offset + STAMP_WIDTH),
        ) {
            field.replace_range(offset..offset + STAMP_WIDTH, text);
        }
    }

    /// Reads back the timestamp [`Self::write`] wrote.
    pub(super) fn read(&self, message: &Value) -> Option<u64> {
        let digits = message
            .pointer(&self.pointer)?
            .as_str()?
            .strip_prefix(self.prefix)?;
        digits.get(..STAMP_WIDTH)?.parse().ok()
    }
}

/// JSON Pointers of every string in `value`, in document order.
fn string_pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match value {
        Value::String(_) => out.push(at),
        Value::Object(map) => {
            for (k, v) in map {
                string_pointers(v, format!("{at}/{}", escape(k)), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                string_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orion_bus::{ContractOptions, ContractRegistry};

    #[test]
    fn messages_are_padded_stamped_and_valid() {
        let registry = orion_bus_examples::registry(ContractOptions::default()).expect("compiles");
        for name in ["sensor.reading", "alert", "command"] {
            let contract = registry.get(name).expect("known");
            for style in [JsonStyle::Python, JsonStyle::Compact] {
                let m = Messages::new(contract, None, Some(400), style).expect("400 bytes fit");
                for n in 0..TEMPLATES {
                    let ns = 1_234_567_890 + n;
                    let msg = m.make(n, ns);
                    assert_eq!(encoded_len(&msg, style).expect("encodes"), 400, "{name}");
                    assert_eq!(m.stamp.read(&msg), Some(ns), "{name}");
                    let mut again = msg.clone();
                    m.stamp.rewrite(&mut again, u64::MAX);
                    assert_eq!(m.stamp.read(&again), Some(u64::MAX), "{name}");
                    assert_eq!(encoded_len(&again, style).expect("encodes"), 400);
                    contract
                        .validate(&msg)
                        .unwrap_or_else(|v| panic!("{name}: {v}"));
                }
            }
        }
        let reading = registry.get("sensor.reading").expect("known");
        assert!(Messages::new(reading, None, Some(10), JsonStyle::Python).is_err());
        // Alert summaries are limited to 500 characters.
        let alert = registry.get("alert").expect("known");
        assert!(Messages::new(alert, None, Some(4000), JsonStyle::Python).is_err());
    }

    #[test]
    fn any_contract_with_a_sample_gets_its_timestamp_in_a_free_string() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("note.schema.json"),
            r#"{"type": "object", "additionalProperties": false,
                "required": ["version", "id", "text"],
                "properties": {"version": {"const": "1.0"},
                               "id": {"type": "string", "format": "uuid"},
                               "text": {"type": "string", "minLength": 1}}}"#,
        )
        .expect("write");
        let registry =
            ContractRegistry::load_dir(dir.path(), ContractOptions::default()).expect("loads");
        let note = registry.get("note").expect("known");
        let sample =
            json!({"version": "1.0", "id": "550e8400-e29b-41d4-a716-446655440000", "text": "hi"});
        let m = Messages::new(note, Some(&sample), Some(300), JsonStyle::Python).expect("fits");
        // `version` is a const and `id` a uuid: only `text` can carry it.
        assert_eq!(m.stamp.pointer, "/text");
        let msg = m.make(3, 42);
        assert_eq!(m.stamp.read(&msg), Some(42));
        assert_eq!(encoded_len(&msg, JsonStyle::Python).expect("encodes"), 300);
        note.validate(&msg).expect("valid");
        // A sample that breaks the contract is refused, with the reason.
        let err = Messages::new(
            note,
            Some(&json!({"version": "1.0"})),
            None,
            JsonStyle::Python,
        )
        .expect_err("invalid sample")
        .to_string();
        assert!(err.contains("not a valid note message"), "{err}");
        // No free string at all: said so.
        let bare = json!({"text": "hi"});
        std::fs::write(
            dir.path().join("note.schema.json"),
            r#"{"type": "object", "required": ["text"],
                "properties": {"text": {"enum": ["hi"]}}}"#,
        )
        .expect("write");
        let registry =
            ContractRegistry::load_dir(dir.path(), ContractOptions::default()).expect("loads");
        let err = Messages::new(
            registry.get("note").expect("known"),
            Some(&bare),
            None,
            JsonStyle::Python,
        )
        .expect_err("nowhere to stamp")
        .to_string();
        assert!(err.contains("can carry the benchmark's timestamp"), "{err}");
    }
}
