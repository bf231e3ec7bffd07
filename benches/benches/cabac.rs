//! CABAC engine (bins/s, context-coded and bypass), level coding (values/s), the DQ-state
//! scan (values/s) and the codebook search's trial sizes (trial values/s).
//!
//! `cargo bench -p nnc-benches --bench cabac`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nnc_benches::{laplacian_levels, random_words, EngineBins, ENGINE_CONTEXTS, SEED};
use nnc_cabac::{
    decode_layer, encode_layer, ArithDecoder, ArithEncoder, ContextModel, EncodeLayerOptions,
    LayerConfig, LayerHistory,
};

/// Context-coded bins per iteration.
const CTX_BINS: usize = 1 << 20;
/// Bypass words per iteration, and bins per word.
const BYPASS_WORDS: usize = 1 << 18;
const BYPASS_WORD_BITS: u32 = 16;
/// The level-coding tensor: 1024 × 1024 Laplacian levels, mean |level| ≈ 3.
const LEVEL_DIMS: [usize; 2] = [1024, 1024];

fn contexts() -> [ContextModel; ENGINE_CONTEXTS] {
    [ContextModel::new(0); ENGINE_CONTEXTS]
}

fn encode_ctx_bins(bins: &EngineBins) -> Vec<u8> {
    let mut ctx = contexts();
    let mut enc = ArithEncoder::new();
    for (&c, &b) in bins.ctx.iter().zip(&bins.bin) {
        enc.encode_bin(b, &mut ctx[usize::from(c) % ENGINE_CONTEXTS]);
    }
    enc.finish()
}

fn decode_ctx_bins(payload: &[u8], ctx_ids: &[u8]) -> u64 {
    let mut ctx = contexts();
    let mut dec = ArithDecoder::new(payload);
    let mut ones = 0u64;
    for &c in ctx_ids {
        ones += u64::from(dec.decode_bin(&mut ctx[usize::from(c) % ENGINE_CONTEXTS]));
    }
    ones
}

fn encode_bypass(words: &[u32]) -> Vec<u8> {
    let mut enc = ArithEncoder::new();
    for &w in words {
        enc.encode_bypass_bins(BYPASS_WORD_BITS, w);
    }
    enc.finish()
}

fn decode_bypass(payload: &[u8], n: usize) -> u64 {
    let mut dec = ArithDecoder::new(payload);
    let mut sum = 0u64;
    for _ in 0..n {
        sum += u64::from(dec.decode_bypass_bins(BYPASS_WORD_BITS));
    }
    sum
}

fn level_config() -> LayerConfig {
    LayerConfig {
        general_profile_idc: 1,
        ..LayerConfig::new(LEVEL_DIMS.to_vec())
    }
}

fn engine(c: &mut Criterion) {
    let bins = EngineBins::generate(CTX_BINS, SEED);
    let ctx_payload = encode_ctx_bins(&bins);
    let ones = bins.bin.iter().filter(|&&b| b).count() as u64;
    assert_eq!(decode_ctx_bins(&ctx_payload, &bins.ctx), ones);
    let words = random_words(BYPASS_WORDS, BYPASS_WORD_BITS, SEED);
    let bypass_payload = encode_bypass(&words);
    let sum: u64 = words.iter().map(|&w| u64::from(w)).sum();
    assert_eq!(decode_bypass(&bypass_payload, words.len()), sum);
    let bypass_bins = (BYPASS_WORDS as u64) * u64::from(BYPASS_WORD_BITS);
    // The same bins, all in one context: every bin then waits for the previous bin's context
    // update (the case of a run of sig flags in one context), which `context` hides.
    let one_ctx = EngineBins {
        ctx: vec![0; bins.len()],
        bin: bins.bin.clone(),
    };
    let one_ctx_payload = encode_ctx_bins(&one_ctx);
    assert_eq!(decode_ctx_bins(&one_ctx_payload, &one_ctx.ctx), ones);

    let mut g = c.benchmark_group("cabac/encode");
    g.throughput(Throughput::Elements(CTX_BINS as u64));
    g.bench_function("context", |b| b.iter(|| encode_ctx_bins(black_box(&bins))));
    g.throughput(Throughput::Elements(bypass_bins));
    g.bench_function("bypass", |b| b.iter(|| encode_bypass(black_box(&words))));
    g.finish();

    let mut g = c.benchmark_group("cabac/decode");
    g.throughput(Throughput::Elements(CTX_BINS as u64));
    g.bench_function("context", |b| {
        b.iter(|| decode_ctx_bins(black_box(&ctx_payload), &bins.ctx))
    });
    g.bench_function("context_one", |b| {
        b.iter(|| decode_ctx_bins(black_box(&one_ctx_payload), &one_ctx.ctx))
    });
    g.throughput(Throughput::Elements(bypass_bins));
    g.bench_function("bypass", |b| {
        b.iter(|| decode_bypass(black_box(&bypass_payload), BYPASS_WORDS))
    });
    g.finish();
}

fn levels(c: &mut Criterion) {
    let n: usize = LEVEL_DIMS.iter().product();
    let levels = laplacian_levels(n, 3.0, SEED);
    let cfg = level_config();
    let hist = LayerHistory::default();
    let encode = |levels: &[i32], param_opt: bool| {
        let opts = EncodeLayerOptions {
            param_opt,
            ..Default::default()
        };
        let mut enc = ArithEncoder::new();
        encode_layer(&mut enc, &cfg, &hist, &opts, levels).unwrap();
        enc.finish()
    };
    let payload = encode(&levels, false);
    // The same levels sorted within blocks of 4096: the same bins per value, but the decoder's
    // data-dependent branches (zero or not, where the greater-than flags stop) become
    // predictable, so the gap to `laplace3_1m` is what branch mispredictions cost.
    let mut sorted = levels.clone();
    for block in sorted.chunks_mut(4096) {
        block.sort_unstable();
    }
    let sorted_payload = encode(&sorted, false);
    let mut out = vec![0i32; n];
    for (p, expected) in [(&payload, &levels), (&sorted_payload, &sorted)] {
        let mut dec = ArithDecoder::new(p);
        decode_layer(&mut dec, &cfg, &hist, &mut out).unwrap();
        assert_eq!(&out, expected);
    }

    let mut g = c.benchmark_group("levels/decode");
    g.throughput(Throughput::Elements(n as u64));
    for (name, p) in [
        ("laplace3_1m", &payload),
        ("laplace3_1m_block_sorted", &sorted_payload),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut dec = ArithDecoder::new(black_box(p));
                decode_layer(&mut dec, &cfg, &hist, &mut out).unwrap();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("levels/encode");
    g.throughput(Throughput::Elements(n as u64));
    for param_opt in [false, true] {
        g.bench_with_input(
            BenchmarkId::new("laplace3_1m_param_opt", param_opt),
            &param_opt,
            |b, &p| b.iter(|| encode(&levels, p)),
        );
    }
    // The encoder's mirror of the sorted decode: its loops branch on the same things (zero or
    // not, how many greater-than flags), so the gap is mostly its share of mispredictions. The
    // sorted levels also code to about a sixth of the bytes, so fewer bytes are written out.
    g.bench_function("laplace3_1m_block_sorted_param_opt/false", |b| {
        b.iter(|| encode(&sorted, false))
    });
    g.finish();
}

/// The DQ-state scan the encoder runs before cutting a tensor for its workers
/// (`nnc_cabac::dq::advance_over`), over 1 Mi reconstruction indices of random sign.
fn dq_scan(c: &mut Criterion) {
    let n: usize = LEVEL_DIMS.iter().product();
    let indices = laplacian_levels(n, 3.0, SEED);
    let mut g = c.benchmark_group("dq");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("advance_over_1m", |b| {
        b.iter(|| nnc_cabac::dq::advance_over(0, black_box(&indices)))
    });
    g.finish();
}

/// The codebook zero-offset search's trial sizes (`nnc_cabac::payload_size` for one trial,
/// `nnc_cabac::shifted_payload_sizes` for a group of offsets counted together, in lanes where
/// the CPU has AVX-512 or AVX2; `NNC_NO_AVX512=1` and `NNC_NO_AVX2=1` rule those out) over
/// 64 Ki codebook indices around entry 150 of 300, with param_opt as the encoder's trials.
fn trials(c: &mut Criterion) {
    let n = 64 * 1024;
    let indices: Vec<i32> = laplacian_levels(n, 20.0, SEED)
        .into_iter()
        .map(|l| (l + 150).clamp(0, 299))
        .collect();
    let cfg = LayerConfig {
        cabac_unary_length: 10,
        general_profile_idc: 1,
        ..LayerConfig::new(vec![64, 1024])
    };
    let opts = EncodeLayerOptions {
        param_opt: true,
        ..Default::default()
    };
    let group = nnc_cabac::OFFSETS_PER_GROUP as u32;
    let mut g = c.benchmark_group("trials");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("payload_size_one_offset", |b| {
        let shifted: Vec<i32> = indices.iter().map(|&i| i - 150).collect();
        b.iter(|| {
            nnc_cabac::payload_size(&cfg, &LayerHistory::default(), &opts, black_box(&shifted))
        })
    });
    g.throughput(Throughput::Elements(n as u64 * u64::from(group)));
    g.bench_function("shifted_payload_sizes_32_offsets", |b| {
        b.iter(|| {
            nnc_cabac::shifted_payload_sizes(&cfg, &opts, black_box(&indices), 134..134 + group)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine, levels, dq_scan, trials
}
criterion_main!(benches);
