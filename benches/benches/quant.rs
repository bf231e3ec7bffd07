//! Quantization of the 1 M-element tensor workload (values/s): TCQ (the trellis, DQ on) and URQ.
//!
//! `cargo bench -p nnc-benches --bench quant`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nnc_benches::{randn_f32, SEED, TENSOR_SHAPE};
use nnc_quant::{quantize_layer_into, QuantizeOptions};

fn quant(c: &mut Criterion) {
    let n: usize = TENSOR_SHAPE.iter().product();
    let weights = randn_f32(n, 1.0, SEED);
    let mut levels = vec![0i32; n];
    for (name, dq_flag) in [("quant/tcq", true), ("quant/urq", false)] {
        // The tensor pipeline's defaults: qp −32, qp_density 2, λ = 0, row-major scan.
        let opts = QuantizeOptions {
            dq_flag,
            ..QuantizeOptions::default()
        };
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("randn_1m_qp-32", |b| {
            b.iter(|| {
                quantize_layer_into(black_box(&weights), &TENSOR_SHAPE, &opts, &mut levels).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = quant
}
criterion_main!(benches);
