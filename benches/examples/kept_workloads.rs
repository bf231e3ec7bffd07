//! A driver for profilers and A/B runs on the files `cargo xtask bench-vs-ref --keep` leaves
//! in its work directory (the same inputs and streams as the side-by-side run).
//!
//! `cargo build --profile profiling -p nnc-benches --example kept_workloads`, then
//! `kept_workloads DIR WHAT NAME REPS [THREADS]` (no `THREADS`: all cores), with `WHAT`:
//! - `decode-stream NAME`: decodes the stream `DIR/NAME` (`ref_resnet50.nnc`, say) with a fresh
//!   state, as the harness times a model's decode;
//! - `encode-model NAME`: encodes the model `DIR/NAME` (`resnet50_random.npz`) at the defaults;
//! - `decode-update NAME`, `encode-update NAME`: the update workload `NAME`
//!   (`resnet50_update`, `minilm_sparse_update`): `NAME1.npz` is coded first, then `NAME2.npz`
//!   is timed from the states it left, with TCA and `compress_differences` as in the harness.
//!
//! Prints the fastest of `REPS` calls.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use nnc_nn::io::read_tensors;
use nnc_tensor::{
    decode_stream, encode, encode_incremental, DecodeOptions, DecoderState, EncodeInput,
    EncodeOptions, EncoderState,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, what, name, reps, ..] = args.as_slice() else {
        panic!("usage: kept_workloads DIR WHAT NAME REPS [THREADS] (see the file's doc)");
    };
    let dir = Path::new(dir);
    let reps: usize = reps.parse().unwrap();
    let threads: Option<usize> = args.get(4).and_then(|s| s.parse().ok());
    let decode_opts = |update_state| {
        DecodeOptions::new()
            .with_threads(threads)
            .with_keep_levels(false)
            .with_update_state(update_state)
    };
    let mut update_opts = EncodeOptions::default();
    update_opts.tca = true;
    update_opts.compress_differences = true;
    let update_opts = update_opts.with_threads(threads);
    let update = |name: &str| {
        let first = read_tensors(&dir.join(format!("{name}1.npz")), "t").unwrap();
        let second = read_tensors(&dir.join(format!("{name}2.npz")), "t").unwrap();
        let (mut enc, mut dec) = (EncoderState::default(), DecoderState::default());
        let input = EncodeInput::from_tensors(&first).unwrap();
        let bytes = encode_incremental(input, &update_opts, &mut enc, true)
            .unwrap()
            .bytes;
        decode_stream(&bytes, &mut dec, &decode_opts(true)).unwrap();
        (second, enc, dec)
    };
    let mut best = f64::INFINITY;
    let mut time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    };
    match what.as_str() {
        "decode-stream" => {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            for _ in 0..reps {
                let mut state = DecoderState::default();
                let mut out = None;
                time(&mut || out = Some(decode_stream(&bytes, &mut state, &decode_opts(false))));
                out.unwrap().unwrap();
            }
        }
        "encode-model" => {
            let model = read_tensors(&dir.join(name), "t").unwrap();
            let opts = EncodeOptions::default().with_threads(threads);
            for _ in 0..reps {
                let mut out = None;
                time(&mut || out = Some(encode(EncodeInput::from_tensors(&model).unwrap(), &opts)));
                out.unwrap().unwrap();
            }
        }
        "decode-update" => {
            let (second, mut enc, dec) = update(name);
            let input = EncodeInput::from_tensors(&second).unwrap();
            let bytes = encode_incremental(input, &update_opts, &mut enc, true)
                .unwrap()
                .bytes;
            for _ in 0..reps {
                let mut state = dec.clone();
                let mut out = None;
                time(&mut || out = Some(decode_stream(&bytes, &mut state, &decode_opts(true))));
                out.unwrap().unwrap();
            }
        }
        "encode-update" => {
            let (second, enc, _) = update(name);
            for _ in 0..reps {
                let mut state = enc.clone();
                let mut out = None;
                time(&mut || {
                    let input = EncodeInput::from_tensors(&second).unwrap();
                    out = Some(encode_incremental(input, &update_opts, &mut state, true));
                });
                out.unwrap().unwrap();
            }
        }
        other => panic!("unknown WHAT {other:?} (see the file's doc)"),
    }
    println!("{what} {name}: fastest of {reps}: {best:.4} s");
}
