//! A driver for profilers (callgrind, perf): the TCA update of the `update/tca_16x256x256`
//! benchmark, encoded or decoded `reps` times from the state the first update left.
//!
//! `cargo run --profile profiling -p nnc-benches --example update_tca -- decode 3`
//! (`encode` or `decode`, then the repetitions; before them `--threads N` sets the threads and
//! `--keep F` zeroes each update value with probability 1 − F, as a sparse update).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use nnc_benches::{count_level_bins, TcaUpdate};
use nnc_tensor::{decode_stream, encode_incremental, DecodeOptions, EncodeInput};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let (mut threads, mut keep) = (Some(1), 1.0);
    loop {
        match args.first().map(String::as_str) {
            Some("--threads") => threads = args.get(1).and_then(|n| n.parse().ok()),
            Some("--keep") => keep = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1.0),
            _ => break,
        }
        args.drain(..2.min(args.len()));
    }
    let what = args.first().cloned().unwrap_or_else(|| "decode".into());
    let reps: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);

    let TcaUpdate {
        opts,
        update,
        enc_state,
        dec_state,
    } = TcaUpdate::sparse(threads, keep).unwrap();
    let dopts = DecodeOptions::new().with_threads(threads);
    let input = EncodeInput::from_tensors(&update).unwrap();
    let encoded = encode_incremental(&input, &opts, &mut enc_state.clone(), true).unwrap();
    let bytes = encoded.bytes;
    let values: usize = update.iter().map(|t| t.len()).sum();
    let (mut context, mut bypass) = (0, 0);
    for t in &encoded.tensors {
        let bins = count_level_bins(&t.levels, opts.use_dq, 11);
        context += bins.context;
        bypass += bins.bypass;
    }
    println!(
        "update: {values} values, {:.2} context-coded and {:.2} bypass bins a value",
        context as f64 / values as f64,
        bypass as f64 / values as f64
    );

    let t0 = Instant::now();
    for _ in 0..reps {
        match what.as_str() {
            "encode" => {
                let out = encode_incremental(&input, &opts, &mut enc_state.clone(), true).unwrap();
                assert_eq!(out.bytes, bytes);
            }
            "decode" => {
                decode_stream(&bytes, &mut dec_state.clone(), &dopts).unwrap();
            }
            other => panic!("encode or decode, not {other}"),
        }
    }
    println!(
        "{what} x{reps}: {:.4} s each, {} bytes",
        t0.elapsed().as_secs_f64() / reps as f64,
        bytes.len()
    );
}
