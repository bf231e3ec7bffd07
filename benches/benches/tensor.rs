//! Whole-tensor decode and encode of the 1 M-element workload (`randn(256, 64, 64)`, seed 0) at the
//! tensor pipeline's defaults (qp −32, DQ, row skipping, param_opt), plus the entry-point decode
//! (scan_order 2) on one and two threads, a 16-tensor model (one NDU per tensor) encoded and
//! decoded on one thread and on all cores and summarised (`nnc stats`), and one call on a small
//! layer (64 × 16) with the default threads and with an explicit count, whose hand-off to a
//! pool's threads is most of the difference; and the second of two updates of that model (its
//! differences, as a federated client sends them) with temporal context adaptation (TCA),
//! encoded and decoded from the state the first left.
//!
//! `cargo bench -p nnc-benches --bench tensor`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nnc_benches::{
    count_level_bins, model_tensors, randn_f32, randn_tensor, TcaUpdate, SEED, TENSOR_SHAPE,
};
use nnc_cabac::{
    decode_layer_and_create_entry_points, decode_layer_with_entry_points, encode_layer,
    ArithDecoder, ArithEncoder, EncodeLayerOptions, LayerConfig, LayerHistory,
};
use nnc_quant::{quantize_layer, QuantizeOptions};
use nnc_tensor::{
    decode_stream, encode, encode_incremental, summarise_stream, DecodeOptions, DecoderState,
    EncodeInput, EncodeOptions, Tensor,
};

/// Greater-than flags at the default `cabac_unary_length_minus1` = 10.
const NUM_GTX_FLAGS: u32 = 11;

fn decode_all(bytes: &[u8]) -> usize {
    let mut state = DecoderState::default();
    let decoded = decode_stream(bytes, &mut state, &DecodeOptions::new()).unwrap();
    decoded.tensors.len()
}

fn encode_bytes(input: &EncodeInput, opts: &EncodeOptions) -> Vec<u8> {
    encode(input, opts).unwrap().bytes
}

fn tensor(c: &mut Criterion) {
    let t: Tensor = randn_tensor(SEED);
    let n = t.len() as u64;
    let input = EncodeInput::from_tensors(std::slice::from_ref(&t)).unwrap();
    let opts = EncodeOptions::default();
    let encoded = encode(&input, &opts).unwrap();
    let bins = count_level_bins(&encoded.tensors[0].levels, opts.use_dq, NUM_GTX_FLAGS);
    let bytes = encoded.bytes;
    assert_eq!(decode_all(&bytes), 1);
    eprintln!(
        "tensor/decode_1m: {} bytes, {} level bins ({} context, {} bypass), {:.2} bins/value",
        bytes.len(),
        bins.total(),
        bins.context,
        bins.bypass,
        bins.total() as f64 / n as f64
    );

    let mut g = c.benchmark_group("tensor/decode_1m");
    g.throughput(Throughput::Elements(n));
    g.bench_function("values", |b| b.iter(|| decode_all(black_box(&bytes))));
    g.throughput(Throughput::Elements(bins.total()));
    g.bench_function("bins", |b| b.iter(|| decode_all(black_box(&bytes))));
    g.finish();

    let mut g = c.benchmark_group("tensor/encode_1m");
    g.throughput(Throughput::Elements(n));
    g.bench_function("defaults", |b| {
        b.iter(|| encode_bytes(black_box(&input), &opts))
    });
    g.finish();
}

fn tensor_scan(c: &mut Criterion) {
    let t: Tensor = randn_tensor(SEED);
    let n = t.len();
    let input = EncodeInput::from_tensors(std::slice::from_ref(&t)).unwrap();
    let opts = EncodeOptions::default().with_scan_order(2);
    let bytes = encode_bytes(&input, &opts);
    assert_eq!(decode_all(&bytes), 1);

    // The same tensor at the level-coder API, where block rows can run on several threads.
    let weights = match &t.data {
        nnc_tensor::TensorData::F32(v) => v.clone(),
        _ => unreachable!("randn_tensor is f32"),
    };
    let q = quantize_layer(
        &weights,
        &TENSOR_SHAPE,
        &QuantizeOptions {
            scan_order: 2,
            ..QuantizeOptions::default()
        },
    )
    .unwrap();
    let cfg = LayerConfig {
        dq_flag: true,
        scan_order: 2,
        general_profile_idc: 1,
        cabac_unary_length: NUM_GTX_FLAGS,
        ..LayerConfig::new(TENSOR_SHAPE.to_vec())
    };
    let hist = LayerHistory::default();
    let mut enc = ArithEncoder::new();
    let layer_opts = EncodeLayerOptions {
        param_opt: true,
        row_skip_enabled_flag: true,
        ..Default::default()
    };
    encode_layer(&mut enc, &cfg, &hist, &layer_opts, &q.levels).unwrap();
    let payload = enc.finish();
    let mut out = vec![0i32; n];
    let mut dec = ArithDecoder::new(&payload);
    let (info, eps) =
        decode_layer_and_create_entry_points(&mut dec, &cfg, &hist, &mut out).unwrap();
    assert_eq!(out, q.levels);
    assert_eq!(eps.len() + 1, info.num_block_rows);

    let mut g = c.benchmark_group("tensor/decode_1m_scan");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("stream", |b| b.iter(|| decode_all(black_box(&bytes))));
    for threads in [1usize, 2] {
        g.bench_with_input(
            BenchmarkId::new("levels_entry_points_threads", threads),
            &threads,
            |b, &threads| {
                b.iter(|| {
                    let mut dec = ArithDecoder::new(black_box(&payload));
                    decode_layer_with_entry_points(&mut dec, &cfg, &hist, &eps, &mut out, threads)
                        .unwrap()
                })
            },
        );
    }
    g.finish();
}

/// 16 weight tensors of 256×256 (1 Mi values in all), std 0.05 like trained weights: a model whose
/// NDUs decode and encode in parallel.
fn model(c: &mut Criterion) {
    let tensors = model_tensors();
    let input = EncodeInput::from_tensors(&tensors).unwrap();
    let threads = [("1 thread", Some(1)), ("all cores", None)];
    encode_and_decode(c, "model/16x256x256", &input, &threads);

    // What `nnc stats` reads of the same stream: headers and each tensor's QP, no values.
    let bytes = encode(&input, &EncodeOptions::default()).unwrap().bytes;
    let mut g = c.benchmark_group("model/16x256x256");
    g.throughput(Throughput::Elements(tensors.len() as u64));
    g.bench_function("summary", |b| {
        b.iter(|| {
            summarise_stream(
                black_box(&bytes),
                &DecoderState::default(),
                &DecodeOptions::new(),
            )
            .unwrap()
            .len()
        })
    });
    g.finish();
}

/// Benches group `name`: `input` encoded and its stream decoded with each of `threads` (labelled),
/// after checking that every thread count gives the same bytes.
fn encode_and_decode(
    c: &mut Criterion,
    name: &str,
    input: &EncodeInput,
    threads: &[(&str, Option<usize>)],
) {
    let n: u64 = input.parameters.iter().map(|p| p.data.len() as u64).sum();
    let bytes = encode(input, &EncodeOptions::default()).unwrap().bytes;
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    for &(label, threads) in threads {
        let opts = EncodeOptions::default().with_threads(threads);
        assert_eq!(encode_bytes(input, &opts), bytes, "same bytes with {label}");
        g.bench_with_input(BenchmarkId::new("encode", label), &opts, |b, opts| {
            b.iter(|| encode_bytes(black_box(input), opts))
        });
        let dopts = DecodeOptions::new().with_threads(threads);
        g.bench_with_input(BenchmarkId::new("decode", label), &dopts, |b, dopts| {
            b.iter(|| {
                let mut state = DecoderState::default();
                decode_stream(black_box(&bytes), &mut state, dopts)
                    .unwrap()
                    .tensors
                    .len()
            })
        });
    }
    g.finish();
}

/// One encode and one decode call on a 64 × 16 layer of normals with σ = 0.05: the per-call cost
/// a federated client or a layer-by-layer caller pays, with `threads: None`, `Some(1)` and
/// `Some(2)`: one tensor this small runs on the calling thread with any of them.
fn small_call(c: &mut Criterion) {
    let t = Tensor {
        name: "0".into(),
        shape: vec![64, 16],
        data: nnc_tensor::TensorData::F32(randn_f32(64 * 16, 0.05, SEED)),
    };
    let input = EncodeInput::from_tensors(std::slice::from_ref(&t)).unwrap();
    let threads = [
        ("default", None),
        ("threads 1", Some(1)),
        ("threads 2", Some(2)),
    ];
    encode_and_decode(c, "tensor/small_64x16", &input, &threads);
}

/// The second of two updates of the 16-tensor model (`model_updates`) with TCA and
/// `compress_differences`: encoded from the encoder's state after the first, decoded from the
/// decoder's, on one thread and on all cores. Each iteration starts from a clone of the state
/// (the clone is timed too; it is small against the coding).
fn update_tca(c: &mut Criterion) {
    update_group(c, "update/tca_16x256x256", 1.0);
}

/// [`update_tca`] with sparse updates, each keeping a tenth of its values (its own positions):
/// most bins are then zero runs over positions whose base levels are mostly 0.
fn update_tca_sparse(c: &mut Criterion) {
    update_group(c, "update/tca_sparse_16x256x256", 0.1);
}

fn update_group(c: &mut Criterion, name: &str, keep: f64) {
    let TcaUpdate {
        opts,
        update,
        enc_state,
        dec_state,
    } = TcaUpdate::sparse(None, keep).unwrap();
    let input = EncodeInput::from_tensors(&update).unwrap();
    let bytes = encode_incremental(&input, &opts, &mut enc_state.clone(), true)
        .unwrap()
        .bytes;

    let n: u64 = update.iter().map(|t| t.len() as u64).sum();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    for (label, threads) in [("1 thread", Some(1)), ("all cores", None)] {
        let opts = opts.clone().with_threads(threads);
        g.bench_with_input(BenchmarkId::new("encode", label), &opts, |b, opts| {
            b.iter(|| {
                let mut state = enc_state.clone();
                let out = encode_incremental(black_box(&input), opts, &mut state, true).unwrap();
                assert_eq!(out.bytes, bytes);
            })
        });
        let dopts = DecodeOptions::new().with_threads(threads);
        g.bench_with_input(BenchmarkId::new("decode", label), &dopts, |b, dopts| {
            b.iter(|| {
                let mut state = dec_state.clone();
                decode_stream(black_box(&bytes), &mut state, dopts)
                    .unwrap()
                    .tensors
                    .len()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = tensor, tensor_scan, model, small_call, update_tca, update_tca_sparse
}
criterion_main!(benches);
