//! Throughput of the level coder on a 1024×1024 Laplacian-like tensor (deepcabac.md §7 setup).
//!
//! `cargo run --release -p nnc-cabac --example throughput`
#![allow(clippy::unwrap_used)]

use std::time::Instant;

/// CPU time of this thread in seconds (Linux), so a busy machine does not distort the numbers.
fn cpu_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

/// Seconds since `start` (CPU time when available, else wall time).
struct Clock(Instant, Option<f64>);

impl Clock {
    fn start() -> Self {
        Clock(Instant::now(), cpu_time())
    }
    fn secs(&self) -> f64 {
        match (self.1, cpu_time()) {
            (Some(a), Some(b)) => b - a,
            _ => self.0.elapsed().as_secs_f64(),
        }
    }
}

use nnc_cabac::binarization::{encode_level, BinSink, LevelCoding, Neighbourhood};
use nnc_cabac::param_opt::{InitSetSearch, ShadowContexts};
use nnc_cabac::{
    decode_layer, encode_layer, ArithDecoder, ArithEncoder, ContextLayout, EncodeLayerOptions,
    LayerConfig, LayerHistory,
};

struct Count {
    ctx: u64,
    bypass: u64,
}

impl BinSink for Count {
    fn ctx_bin(&mut self, _ctx: usize, _bin: bool) {
        self.ctx += 1;
    }
    fn bypass_bins(&mut self, n: u32, _v: u32) {
        self.bypass += u64::from(n);
    }
}

fn main() {
    let (h, w) = (1024usize, 1024usize);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    // Laplacian with mean |x| ≈ 3, rounded: about 80 % non-zero.
    let levels: Vec<i32> = (0..h * w)
        .map(|_| {
            let u = uniform() - 0.5;
            let x = -3.0 * u.signum() * (1.0 - 2.0 * u.abs()).ln();
            x.round() as i32
        })
        .collect();
    let nz = levels.iter().filter(|&&v| v != 0).count() as f64 / levels.len() as f64;
    let mean_abs = levels
        .iter()
        .map(|v| f64::from(v.unsigned_abs()))
        .sum::<f64>()
        / levels.len() as f64;

    let layout = ContextLayout::new(11);
    let mut count = Count { ctx: 0, bypass: 0 };
    for &k in &levels {
        encode_level(
            &mut count,
            &layout,
            &Neighbourhood::default(),
            &LevelCoding::unbounded(11),
            k,
            0,
        );
    }
    println!(
        "{h}x{w}: {:.1}% non-zero, mean |level| {mean_abs:.2}, {} ctx bins, {} bypass bins",
        nz * 100.0,
        count.ctx,
        count.bypass
    );

    // The param_opt search alone, both implementations on one thread, alternated so load
    // changes hit both: per-bin shadows vs record-and-replay.
    let mut events = Vec::with_capacity(count.ctx as usize);
    struct Record<'a>(&'a mut Vec<(u8, bool)>);
    impl BinSink for Record<'_> {
        fn ctx_bin(&mut self, ctx: usize, bin: bool) {
            self.0.push((ctx as u8, bin));
        }
        fn bypass_bins(&mut self, _n: u32, _v: u32) {}
    }
    let mut nb = Neighbourhood::default();
    for &k in &levels {
        encode_level(
            &mut Record(&mut events),
            &layout,
            &nb,
            &LevelCoding::unbounded(11),
            k,
            0,
        );
        nb.nb = k;
    }
    let (mut shadow_s, mut replay_s) = (f64::MAX, f64::MAX);
    let mut agree = true;
    for _ in 0..5 {
        let t = Clock::start();
        let mut s = ShadowContexts::new(layout.len());
        for &(c, b) in &events {
            s.ctx_bin(usize::from(c), b);
        }
        let a: Vec<u8> = (0..layout.len()).map(|c| s.best_idx(c)).collect();
        shadow_s = shadow_s.min(t.secs());
        let t = Clock::start();
        let mut r = InitSetSearch::new(layout.len(), false);
        for &(c, b) in &events {
            r.ctx_bin(usize::from(c), b);
        }
        let b = r.best_indices();
        replay_s = replay_s.min(t.secs());
        agree &= a == b;
    }
    println!(
        "param_opt search, 1 thread: shadows {:.1} ms, record+replay {:.1} ms ({:.2}x), same choices: {agree}",
        shadow_s * 1e3,
        replay_s * 1e3,
        shadow_s / replay_s
    );

    // `throughput decode` times only the plain decode (for `perf stat`).
    let decode_only = std::env::args().nth(1).as_deref() == Some("decode");
    let cases: &[(&str, bool, u8, bool)] = if decode_only {
        &[("plain", false, 0, false)]
    } else {
        &[
            ("plain", false, 0, false),
            ("param_opt", false, 0, true),
            ("dq+scan1+param_opt", true, 1, true),
        ]
    };
    for &(name, dq, scan_order, param_opt) in cases {
        let cfg = LayerConfig {
            dq_flag: dq,
            scan_order,
            general_profile_idc: 1,
            ..LayerConfig::new(vec![h, w])
        };
        let hist = LayerHistory::default();
        let opts = EncodeLayerOptions {
            param_opt,
            ..Default::default()
        };
        let reps = 5;
        let t = Clock::start();
        let mut bytes = Vec::new();
        for _ in 0..if decode_only { 1 } else { reps } {
            let mut enc = ArithEncoder::new();
            encode_layer(&mut enc, &cfg, &hist, &opts, &levels).unwrap();
            bytes = enc.finish();
        }
        let enc_s = t.secs() / f64::from(reps);
        let mut out = vec![0; levels.len()];
        let dec_reps = if decode_only { 20 } else { reps };
        let t = Clock::start();
        for _ in 0..dec_reps {
            let mut dec = ArithDecoder::new(&bytes);
            decode_layer(&mut dec, &cfg, &hist, &mut out).unwrap();
            assert_eq!(dec.finish().unwrap(), bytes.len());
        }
        let dec_s = t.secs() / f64::from(dec_reps);
        if !dq {
            assert_eq!(out, levels);
        }
        let n = levels.len() as f64;
        println!(
            "{name:>20}: {:.3} bits/elem | encode {:6.1} M elem/s | decode {:6.1} M elem/s, {:6.1} M ctx bins/s",
            bytes.len() as f64 * 8.0 / n,
            n / enc_s / 1e6,
            n / dec_s / 1e6,
            count.ctx as f64 / dec_s / 1e6
        );
    }
}
