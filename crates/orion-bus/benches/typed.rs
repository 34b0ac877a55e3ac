//! What runtime validation costs a typed message, per example contract:
//! the publish side (serialise the typed value, validate, encode) with and
//! without validation, and the consume side (decode, validate, deserialise
//! into the type) with and without validation. Run with
//! `cargo bench -p orion-bus --bench typed`; docs/BENCHMARKS.md records
//! the figures.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orion_bus::wire::{self, JsonStyle};
use orion_bus::{ContractOptions, ContractType};
use orion_bus_examples::{self as examples, types};
use serde::de::DeserializeOwned;

const MAX_BYTES: usize = 1024 * 1024;

fn bench_type<T: ContractType>(c: &mut Criterion, registry: &orion_bus::ContractRegistry) {
    let name = T::CONTRACT;
    let contract = registry.get(name).expect("example contract");
    let message = examples::sample(name, 1).expect("sample");
    let typed: T = serde_json::from_value(message.clone()).expect("sample fits the type");
    let payload = wire::encode(&message, JsonStyle::Python).expect("encodes");

    let mut group = c.benchmark_group(format!("typed/{name}"));
    group.bench_function("publish_validated", |b| {
        b.iter(|| {
            let value = serde_json::to_value(black_box(&typed)).expect("serialises");
            contract.validate(&value).expect("valid");
            wire::encode(&value, JsonStyle::Python)
        });
    });
    group.bench_function("publish_unvalidated", |b| {
        b.iter(|| {
            let value = serde_json::to_value(black_box(&typed)).expect("serialises");
            wire::encode(&value, JsonStyle::Python)
        });
    });
    group.bench_function("consume_validated", |b| {
        b.iter(|| {
            let value = wire::decode_data(black_box(&payload), MAX_BYTES).expect("decodes");
            contract.validate(&value).expect("valid");
            decode::<T>(value)
        });
    });
    group.bench_function("consume_unvalidated", |b| {
        b.iter(|| {
            let value = wire::decode_data(black_box(&payload), MAX_BYTES).expect("decodes");
            decode::<T>(value)
        });
    });
    group.finish();
}

fn decode<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("fits")
}

fn typed(c: &mut Criterion) {
    let registry =
        examples::registry(ContractOptions::default()).expect("example contracts compile");
    bench_type::<types::SensorReading>(c, &registry);
    bench_type::<types::Alert>(c, &registry);
    bench_type::<types::Command>(c, &registry);
}

criterion_group!(benches, typed);
criterion_main!(benches);
