//! Micro-benchmarks of the per-message CPU work of the bus, for each
//! example contract: contract validation (the valid path and a rejected
//! message), encoding (Python-identical and compact JSON) and decoding of
//! the `data` field. Run with `cargo bench -p orion-bus --bench codec`;
//! docs/BENCHMARKS.md records the figures.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orion_bus::ContractOptions;
use orion_bus::wire::{self, JsonStyle};
use orion_bus_examples as examples;

const MAX_BYTES: usize = 1024 * 1024;

fn codec(c: &mut Criterion) {
    let registry =
        examples::registry(ContractOptions::default()).expect("example contracts compile");
    for name in ["sensor.reading", "alert", "command"] {
        let contract = registry.get(name).expect("example contract");
        let message = examples::sample(name, 1).expect("sample");
        let mut invalid = message.clone();
        invalid["version"] = serde_json::json!("2.0");
        invalid["unexpected"] = serde_json::json!(true);
        let python = wire::encode(&message, JsonStyle::Python).expect("encodes");
        let compact = wire::encode(&message, JsonStyle::Compact).expect("encodes");

        let mut group = c.benchmark_group(name);
        group.bench_function("validate", |b| {
            b.iter(|| contract.validate(black_box(&message)));
        });
        group.bench_function("validate_invalid", |b| {
            b.iter(|| contract.validate(black_box(&invalid)));
        });
        group.bench_function("encode_python", |b| {
            b.iter(|| wire::encode(black_box(&message), JsonStyle::Python));
        });
        group.bench_function("encode_compact", |b| {
            b.iter(|| wire::encode(black_box(&message), JsonStyle::Compact));
        });
        group.bench_function("decode_python", |b| {
            b.iter(|| wire::decode_data(black_box(&python), MAX_BYTES));
        });
        group.bench_function("decode_compact", |b| {
            b.iter(|| wire::decode_data(black_box(&compact), MAX_BYTES));
        });
        // What a publish costs without validation (encode only) and with
        // it (validate + encode), as `Bus::prepare` does it.
        group.bench_function("prepare_validated_python", |b| {
            b.iter(|| {
                contract.validate(black_box(&message)).expect("valid");
                wire::encode(black_box(&message), JsonStyle::Python)
            });
        });
        // What a consume costs: decode, then validate.
        group.bench_function("consume_decode_validate", |b| {
            b.iter(|| {
                let value = wire::decode_data(black_box(&python), MAX_BYTES).expect("decodes");
                contract.validate(&value).expect("valid");
                value
            });
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
